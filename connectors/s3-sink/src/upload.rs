//! S3 access: the client (checksums only when required, path style for
//! custom endpoints) and one object's streaming upload.
//!
//! An object is written as parts are filled: the first full part creates a
//! multipart upload and every full part is sent in the background (bounded by
//! a per-task semaphore) while the task keeps consuming. `finish` sends the
//! tail and completes; an object that never filled a part is a single PUT.
//! Every step keeps its input until it succeeded, so a failed `finish` can be
//! retried later without losing data.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_sdk_s3::{
    config::{http::HttpResponse, Credentials, RequestChecksumCalculation, ResponseChecksumValidation},
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart},
    Client,
};
use bytes::Bytes;
use connector_api::ConnectorError;
use tokio::{
    runtime::Runtime,
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};

use crate::{
    config::{uses_tls, S3SinkConfig},
    object_security::ObjectSecurity,
    recovery::{OffsetRange, META_RANGE_ID},
    tagging::{OnTaggingError, Tagging},
};

pub async fn client(cfg: &S3SinkConfig) -> Client {
    // The SDK's standard retry strategy is exponential backoff with jitter:
    // `s3.part.retries` retries after the first attempt, starting at
    // `s3.retry.backoff.ms` (as Confluent configures the Java SDK).
    let retry = RetryConfig::standard().with_max_attempts(cfg.part_retries + 1).with_initial_backoff(cfg.retry_backoff);
    // Without a read timeout a hung connection would block `put` forever;
    // an attempt that stalls is retried like any network error.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .operation_attempt_timeout(Duration::from_secs(300))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some((id, secret)) = &cfg.access_key {
        loader =
            loader.credentials_provider(Credentials::new(id, secret.expose(), None, None, "sluice-s3-sink-config"));
    }
    if let Some(url) = &cfg.endpoint {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(cfg.endpoint.is_some() && cfg.path_style)
        // The SDK's default (checksums on every request since 2025-01) breaks
        // several S3-compatible stores; AWS itself needs them only where required.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

/// What a failed request means for the runtime.
pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    err: &SdkError<E, HttpResponse>,
) -> ConnectorError {
    let status = status(err);
    let detail = DisplayErrorContext(err);
    let message = format!("S3 {what} failed: {detail}");
    match err {
        SdkError::ConstructionFailure(_) => ConnectorError::fatal(message),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let transient = matches!(status, Some(s) if s >= 500 || s == 429)
                || matches!(
                    code,
                    "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "Throttling"
                );
            if transient {
                ConnectorError::retriable(message)
            } else if matches!(status, Some(401 | 403)) || code == "AccessDenied" || code == "NoSuchBucket" {
                ConnectorError::config(format!(
                    "{message} (check s3.bucket.name, s3.region, store.url and the credentials: aws.access.key.id or the AWS default chain)"
                ))
            } else {
                ConnectorError::fatal(message)
            }
        }
        // Timeouts, connection failures, truncated responses: the network.
        _ => ConnectorError::retriable(message),
    }
}

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// "The object already exists": a conditional create lost to an earlier
/// write of the same name (whose range [`finish`](ObjectUpload::finish) compares).
fn already_exists<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(412) || matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("PreconditionFailed"))
}

/// Shared by all objects of a task.
#[derive(Clone)]
pub struct Uploader {
    pub client: Client,
    pub bucket: String,
    /// Bounds part uploads in flight per task (and so their memory).
    pub permits: Arc<Semaphore>,
    /// `If-None-Match: *` on object creation, and every object's offset
    /// range in its metadata (`enable.conditional.writes`).
    pub conditional: bool,
    /// Where multipart objects' range markers go: the prefix of
    /// [`Naming::range_marker_key`](crate::naming::Naming::range_marker_key).
    pub marker_prefix: String,
    /// `s3.object.tagging=true`.
    pub tagging: Option<Arc<Tagging>>,
    /// Part and object bodies go without their SHA-256 in the signature
    /// (`UNSIGNED-PAYLOAD`); see [`signs_payloads`].
    pub unsigned_payloads: bool,
    /// Encryption and ACL headers of object creations (and SSE-C parts).
    pub security: Arc<ObjectSecurity>,
}

/// Whether request bodies to `endpoint` (none: AWS) need their SHA-256 in
/// the signature. Over TLS every record is already authenticated (AEAD), so
/// the hash only costs CPU: 12-17% of the worker's in `dev/bench`'s JSON runs.
/// AWS's Java SDK v1, which Confluent's connector uses, sends
/// `UNSIGNED-PAYLOAD` over HTTPS too. Over plain HTTP the signed hash is the
/// only check that the server got the bytes that were sent, so it stays.
pub fn signs_payloads(endpoint: Option<&str>) -> bool {
    !uses_tls(endpoint)
}

/// A background part upload: its ETag, or why it failed and the part's bytes
/// to send again. The bytes live in the future only, so they are freed the
/// moment S3 has them, not when the task next looks (dev/bench: parts kept
/// until then were a quarter of the worker's memory).
type PartHandle = JoinHandle<Result<String, (ConnectorError, Bytes)>>;

/// One object being written.
pub struct ObjectUpload {
    pub key: String,
    upload_id: Option<String>,
    next_part: i32,
    /// Full parts not yet handed to a background upload.
    queued: Vec<Bytes>,
    /// Parts being uploaded: number, length, the upload (which hands the
    /// bytes back only if it failed).
    in_flight: Vec<(i32, usize, PartHandle)>,
    /// A part's bytes were lost with its upload future (it panicked).
    lost: bool,
    /// Parts that failed past the SDK's retries, to send again.
    failed: Vec<(i32, Bytes)>,
    done: BTreeMap<i32, String>,
    /// The last bytes, once the stream was finished.
    tail: Option<Bytes>,
    /// The object exists in S3 (only its tagging may be left to do).
    completed: bool,
    /// Why the object is not tagged (s3.object.behavior.on.tagging.error=ignore).
    pub tagging_skipped: Option<String>,
    pub bytes_uploaded: u64,
    /// Names this object's range marker (a multipart object's metadata is
    /// fixed when the upload is created, before its last offset is known).
    pub range_id: Option<String>,
}

/// How a completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The object is in S3 with this task's records (or an earlier write of
    /// the same name holds exactly the same offsets).
    Written,
    /// A conditional create lost to an object holding other offsets (a
    /// former owner's late completion): the partition must be re-checked.
    Conflict(Option<OffsetRange>),
}

impl ObjectUpload {
    pub fn new(key: String) -> Self {
        ObjectUpload {
            key,
            upload_id: None,
            next_part: 1,
            queued: Vec::new(),
            in_flight: Vec::new(),
            lost: false,
            failed: Vec::new(),
            done: BTreeMap::new(),
            tail: None,
            completed: false,
            tagging_skipped: None,
            bytes_uploaded: 0,
            range_id: None,
        }
    }

    /// An object already in S3: finishing it only tags it.
    pub fn existing(key: String) -> Self {
        ObjectUpload { completed: true, ..ObjectUpload::new(key) }
    }

    /// Parts started so far (S3 allows at most 10 000 per object).
    pub fn parts(&self) -> usize {
        (self.next_part - 1) as usize + self.queued.len()
    }

    pub fn is_multipart(&self) -> bool {
        self.upload_id.is_some() || !self.queued.is_empty()
    }

    /// Queues a full part; `pump` sends it.
    pub fn push_part(&mut self, part: Vec<u8>) {
        self.queued.push(Bytes::from(part));
    }

    pub fn set_tail(&mut self, tail: Vec<u8>) {
        self.tail = Some(Bytes::from(tail));
    }

    pub fn has_tail(&self) -> bool {
        self.tail.is_some()
    }

    /// Starts background uploads of queued parts, waiting for a permit when
    /// too many are in flight (backpressure on `put`).
    pub fn pump(&mut self, rt: &Runtime, up: &Uploader) -> Result<(), ConnectorError> {
        self.reap(rt);
        if self.queued.is_empty() {
            return Ok(());
        }
        rt.block_on(self.send_queued(up))
    }

    async fn send_queued(&mut self, up: &Uploader) -> Result<(), ConnectorError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        if self.upload_id.is_none() {
            let mut req = up.client.create_multipart_upload().bucket(&up.bucket).key(&self.key);
            if let Some(id) = &self.range_id {
                req = req.metadata(META_RANGE_ID, id);
            }
            let res = up.security.create(req).send().await;
            let out = res.map_err(|e| classify(&format!("CreateMultipartUpload of {}", self.key), &e))?;
            let id = out.upload_id().unwrap_or_default().to_string();
            if id.is_empty() {
                return Err(ConnectorError::retriable(format!(
                    "S3 CreateMultipartUpload of {} returned no upload id",
                    self.key
                )));
            }
            self.upload_id = Some(id);
        }
        for part in std::mem::take(&mut self.queued) {
            let number = self.next_part;
            self.next_part += 1;
            self.spawn(up, number, part, None).await;
        }
        Ok(())
    }

    /// Sends one part in the background under `permit`, or under one waited
    /// for here (not inside the spawned future: that is the backpressure).
    async fn spawn(&mut self, up: &Uploader, number: i32, part: Bytes, permit: Option<OwnedSemaphorePermit>) {
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let permit = match permit {
            Some(p) => Some(p),
            // The semaphore is never closed, so acquiring cannot fail.
            None => up.permits.clone().acquire_owned().await.ok(),
        };
        let (client, bucket, key, len) = (up.client.clone(), up.bucket.clone(), self.key.clone(), part.len());
        let (unsigned, security) = (up.unsigned_payloads, Arc::clone(&up.security));
        let handle = tokio::spawn(async move {
            let _permit = permit;
            let req = client
                .upload_part()
                .bucket(bucket)
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part.clone()));
            let mut req = security.part(req).customize();
            if unsigned {
                req = req.disable_payload_signing();
            }
            let res = req.send().await;
            match res {
                Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
                Err(e) => Err((classify(&format!("UploadPart {number} of {key}"), &e), part)),
            }
        });
        self.in_flight.push((number, len, handle));
    }

    /// Collects part uploads that already ended: their ETags, or failed
    /// parts to send again.
    fn reap(&mut self, rt: &Runtime) {
        if !self.in_flight.iter().any(|(_, _, h)| h.is_finished()) {
            return;
        }
        let (ended, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.in_flight).into_iter().partition(|(_, _, h)| h.is_finished());
        self.in_flight = running;
        // Errors are kept with their part in `failed`; `finish` retries them.
        let _ = rt.block_on(self.collect(ended));
    }

    async fn collect(&mut self, handles: Vec<(i32, usize, PartHandle)>) -> Result<(), ConnectorError> {
        let mut first_error = None;
        for (number, len, handle) in handles {
            match handle.await {
                Ok(Ok(etag)) => {
                    self.bytes_uploaded += len as u64;
                    self.done.insert(number, etag);
                }
                Ok(Err((e, part))) => {
                    self.failed.push((number, part));
                    first_error.get_or_insert(e);
                }
                Err(join) => {
                    // The part's bytes went with the future: this object can
                    // no longer be completed; its records come again from
                    // the committed offset once the task restarts.
                    self.lost = true;
                    first_error.get_or_insert(ConnectorError::fatal(format!(
                        "part {number} upload of {} stopped ({join}); the task must restart from the committed offset",
                        self.key
                    )));
                }
            }
        }
        if self.lost {
            return Err(first_error.unwrap_or_else(|| {
                ConnectorError::fatal(format!(
                    "{} lost a part; the task must restart from the committed offset",
                    self.key
                ))
            }));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends what is left, makes the object visible and tags it. Resumable:
    /// on error the state is kept and a later call continues where this one
    /// stopped (after a completion, only the tagging is left).
    /// Runs on the task's I/O runtime (in the background or blocked on).
    /// `reserved` is a part permit taken for the last part before the object
    /// was handed over, so waiting tails count against the permits too.
    pub async fn finish(
        &mut self,
        up: &Uploader,
        tags: &[(String, String)],
        reserved: Option<OwnedSemaphorePermit>,
        range: &OffsetRange,
    ) -> Result<Finished, ConnectorError> {
        if !self.completed {
            let created = if self.is_multipart() {
                self.complete(up, reserved, range).await?
            } else {
                let tail = self.tail.clone().unwrap_or_default();
                let result = self.put_single(up, tail, range).await;
                drop(reserved);
                result?
            };
            if !created {
                // Re-check what the existing object holds: the same offsets
                // (our own earlier attempt, or the same cut) count as written.
                match head_range(up, &self.key).await? {
                    Some(theirs) if theirs == *range => {}
                    // Written before objects recorded their range: as before,
                    // the same name is taken to hold the same records.
                    None => {}
                    theirs => return Ok(Finished::Conflict(theirs)),
                }
            }
            self.completed = true;
        }
        // Tags follow the object in their own request, as in Confluent's
        // connector, also for a single PUT: AWS refuses a PUT that carries
        // tags when the credentials lack s3:PutObjectTagging, and `ignore`
        // must still write the object then.
        let Some(tagging) = &up.tagging else { return Ok(Finished::Written) };
        match self.tag(up, tags).await {
            Ok(()) => Ok(Finished::Written),
            Err(e) if tagging.on_error == OnTaggingError::Ignore => {
                self.tagging_skipped = Some(e.message().to_string());
                Ok(Finished::Written)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends the last parts and completes the multipart upload; false when a
    /// conditional completion found the name taken.
    async fn complete(
        &mut self,
        up: &Uploader,
        reserved: Option<OwnedSemaphorePermit>,
        range: &OffsetRange,
    ) -> Result<bool, ConnectorError> {
        let tail = self.tail.clone().unwrap_or_default();
        self.send_queued(up).await?;
        if !tail.is_empty() || self.next_part == 1 {
            let number = self.next_part;
            self.next_part += 1;
            self.spawn(up, number, tail, reserved).await;
            self.tail = Some(Bytes::new());
        }
        for (number, part) in std::mem::take(&mut self.failed) {
            self.spawn(up, number, part, None).await;
        }
        let all = std::mem::take(&mut self.in_flight);
        self.collect(all).await?;
        if let Some(id) = &self.range_id {
            // The marker goes first: an object that exists always has one.
            // A marker whose completion never happened names an id no object
            // carries, and is never read.
            let marker = format!("{}{id}", up.marker_prefix);
            // Encrypted like the objects, so that one HEAD works for both.
            let mut req = up
                .security
                .put(up.client.put_object().bucket(&up.bucket).key(&marker).body(ByteStream::from_static(b"")));
            for (k, v) in range.to_metadata() {
                req = req.metadata(k, v);
            }
            req.send().await.map_err(|e| classify(&format!("PutObject of the range marker {marker}"), &e))?;
        }
        let parts: Vec<CompletedPart> =
            self.done.iter().map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build()).collect();
        let mut req = up
            .client
            .complete_multipart_upload()
            .bucket(&up.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        if up.conditional {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if already_exists(&e) => {
                // The earlier object stands (`finish` compares its range;
                // its tags are written again when it holds the same records:
                // a crash may have come between its completion and its
                // tagging). Drop our parts.
                let _ = up
                    .client
                    .abort_multipart_upload()
                    .bucket(&up.bucket)
                    .key(&self.key)
                    .upload_id(self.upload_id.clone().unwrap_or_default())
                    .send()
                    .await;
                Ok(false)
            }
            Err(e) => {
                let what = format!("CompleteMultipartUpload of {}", self.key);
                let err = classify(&what, &e);
                // The upload is gone (aborted elsewhere): its parts cannot
                // come back, the records must be re-delivered: fail the task.
                if matches!(&e, SdkError::ServiceError(s) if s.err().code() == Some("NoSuchUpload")) {
                    return Err(ConnectorError::fatal(format!(
                        "{}; the task must restart from the committed offset",
                        err.message()
                    )));
                }
                Err(err)
            }
        }
    }

    /// A single PUT; false when a conditional create found the name taken.
    async fn put_single(&mut self, up: &Uploader, body: Bytes, range: &OffsetRange) -> Result<bool, ConnectorError> {
        let len = body.len() as u64;
        let mut req =
            up.security.put(up.client.put_object().bucket(&up.bucket).key(&self.key).body(ByteStream::from(body)));
        if up.conditional {
            req = req.if_none_match("*");
            for (k, v) in range.to_metadata() {
                req = req.metadata(k, v);
            }
        }
        let mut req = req.customize();
        if up.unsigned_payloads {
            req = req.disable_payload_signing();
        }
        match req.send().await {
            Ok(_) => {
                self.bytes_uploaded += len;
                Ok(true)
            }
            Err(e) if already_exists(&e) => Ok(false),
            Err(e) => Err(classify(&format!("PutObject of {}", self.key), &e)),
        }
    }

    async fn tag(&self, up: &Uploader, tags: &[(String, String)]) -> Result<(), ConnectorError> {
        use aws_sdk_s3::types::{Tag, Tagging};
        let mut set = Vec::new();
        for (k, v) in tags {
            let tag =
                Tag::builder().key(k).value(v).build().map_err(|e| ConnectorError::fatal(format!("tag {k}: {e}")))?;
            set.push(tag);
        }
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| ConnectorError::fatal(format!("tagging: {e}")))?;
        up.client
            .put_object_tagging()
            .bucket(&up.bucket)
            .key(&self.key)
            .tagging(tagging)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let what = format!("PutObjectTagging of {}", self.key);
                match classify(&what, &e) {
                    // Writing worked with these credentials: only tagging is refused.
                    refused if refused.kind() == connector_api::ErrorKind::Config => ConnectorError::config(format!(
                        "S3 {what} failed: {} (the credentials need s3:PutObjectTagging, or set s3.object.behavior.on.tagging.error=ignore)",
                        DisplayErrorContext(&e)
                    )),
                    other => other,
                }
            })
    }

    /// Drops the object: stops part uploads and aborts the multipart upload
    /// (best effort: a leftover is cleaned when the partition is next opened).
    pub fn abort(&mut self, rt: &Runtime, up: &Uploader) -> Result<(), ConnectorError> {
        for (_, _, handle) in self.in_flight.drain(..) {
            handle.abort();
        }
        self.queued.clear();
        self.failed.clear();
        let Some(id) = self.upload_id.take() else { return Ok(()) };
        abort_upload(rt, up, &self.key, &id)
    }
}

pub fn abort_upload(rt: &Runtime, up: &Uploader, key: &str, upload_id: &str) -> Result<(), ConnectorError> {
    match rt.block_on(up.client.abort_multipart_upload().bucket(&up.bucket).key(key).upload_id(upload_id).send()) {
        Ok(_) => Ok(()),
        Err(e) if matches!(&e, SdkError::ServiceError(s) if s.err().code() == Some("NoSuchUpload")) => Ok(()),
        Err(e) => Err(classify(&format!("AbortMultipartUpload of {key}"), &e)),
    }
}

/// The offset range an object records: in its own metadata (a single PUT),
/// or in the marker its range id names (a multipart object). `None` for an
/// object written without ranges.
pub async fn head_range(up: &Uploader, key: &str) -> Result<Option<OffsetRange>, ConnectorError> {
    let head = |key: String| async move {
        let req = up.security.head(up.client.head_object().bucket(&up.bucket).key(&key));
        let out = req.send().await.map_err(|e| classify(&format!("HeadObject of {key}"), &e))?;
        Ok::<_, ConnectorError>(out.metadata().cloned().unwrap_or_default())
    };
    let meta: BTreeMap<String, String> = head(key.to_string()).await?.into_iter().collect();
    if let Some(range) = OffsetRange::from_metadata(&meta) {
        return Ok(Some(range));
    }
    let Some(id) = meta.get(META_RANGE_ID) else { return Ok(None) };
    let marker: BTreeMap<String, String> = head(format!("{}{id}", up.marker_prefix)).await?.into_iter().collect();
    Ok(OffsetRange::from_metadata(&marker))
}

/// Every object key under `prefix` (ListObjectsV2, all pages).
pub fn list_keys(rt: &Runtime, up: &Uploader, prefix: &str) -> Result<Vec<String>, ConnectorError> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = up.client.list_objects_v2().bucket(&up.bucket).prefix(prefix);
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let out = rt.block_on(req.send()).map_err(|e| classify(&format!("ListObjectsV2 under {prefix}"), &e))?;
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        match out.next_continuation_token() {
            Some(next) if out.is_truncated().unwrap_or(false) && token.as_deref() != Some(next) => {
                token = Some(next.to_string())
            }
            _ => break,
        }
    }
    Ok(keys)
}

/// Multipart uploads open under `prefix` whose key passes `keep`: leftovers
/// of a previous owner of the same partitions.
pub fn list_uploads(
    rt: &Runtime,
    up: &Uploader,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, ConnectorError> {
    let mut found = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let mut req = up.client.list_multipart_uploads().bucket(&up.bucket).prefix(prefix);
        if let Some(k) = &key_marker {
            req = req.key_marker(k);
        }
        if let Some(i) = &id_marker {
            req = req.upload_id_marker(i);
        }
        let out = rt.block_on(req.send()).map_err(|e| classify(&format!("ListMultipartUploads under {prefix}"), &e))?;
        for u in out.uploads() {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                if keep(k) {
                    found.push((k.to_string(), id.to_string()));
                }
            }
        }
        let truncated = out.is_truncated().unwrap_or(false);
        let (nk, ni) = (out.next_key_marker().map(str::to_string), out.next_upload_id_marker().map(str::to_string));
        if !truncated || (nk.is_none() && ni.is_none()) || (nk == key_marker && ni == id_marker) {
            break;
        }
        key_marker = nk;
        id_marker = ni;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::signs_payloads;

    #[test]
    fn payloads_are_signed_exactly_when_the_connection_is_not_tls() {
        // AWS (no store.url) is always HTTPS.
        assert!(!signs_payloads(None));
        assert!(!signs_payloads(Some("https://minio.internal:9000")));
        assert!(!signs_payloads(Some("HTTPS://s3.example.com")));
        assert!(signs_payloads(Some("http://127.0.0.1:8333")));
        // Anything that is not clearly TLS keeps the integrity check.
        assert!(signs_payloads(Some("127.0.0.1:8333")));
        assert!(signs_payloads(Some("https:/broken")));
    }
}
