//! The S3 side: a client built like the s3-sink's, the upload ceiling, and
//! listing what the sink wrote.

use std::{sync::Arc, time::Instant};

use anyhow::{anyhow, Context};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::{
    config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation},
    error::DisplayErrorContext,
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier},
    Client,
};
use bytes::Bytes;
use tokio::{runtime::Runtime, sync::Semaphore};

#[derive(Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

/// Path style, checksums only when required: what the s3-sink does.
pub async fn client(env: &S3Env) -> Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(env.region.clone()))
        .credentials_provider(Credentials::new(&env.access_key, &env.secret_key, None, None, "sluice-bench"))
        .endpoint_url(&env.endpoint)
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

pub fn runtime() -> anyhow::Result<Runtime> {
    // Two workers, as the s3-sink's own I/O runtime.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-s3")
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

pub async fn create_bucket(c: &Client, bucket: &str) -> anyhow::Result<()> {
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow!("creating bucket {bucket}: {}", DisplayErrorContext(e)))?;
    Ok(())
}

/// Deletes every object under `prefix` (best effort, returns how many).
pub async fn delete_prefix(c: &Client, bucket: &str, prefix: &str) -> anyhow::Result<usize> {
    let mut deleted = 0;
    loop {
        let objects = list(c, bucket, prefix).await?;
        if objects.is_empty() {
            return Ok(deleted);
        }
        for chunk in objects.chunks(1000) {
            let ids: Vec<ObjectIdentifier> =
                chunk.iter().filter_map(|o| ObjectIdentifier::builder().key(&o.key).build().ok()).collect();
            let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build().context("delete request")?;
            c.delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| anyhow!("deleting objects in {bucket}: {}", DisplayErrorContext(e)))?;
            deleted += chunk.len();
        }
    }
}

pub async fn delete_bucket(c: &Client, bucket: &str) -> anyhow::Result<()> {
    delete_prefix(c, bucket, "").await?;
    // Multipart uploads left open (a failed run) would keep the bucket alive.
    if let Ok(out) = c.list_multipart_uploads().bucket(bucket).send().await {
        for u in out.uploads() {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                let _ = c.abort_multipart_upload().bucket(bucket).key(k).upload_id(id).send().await;
            }
        }
    }
    c.delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow!("deleting bucket {bucket}: {}", DisplayErrorContext(e)))?;
    Ok(())
}

pub struct Object {
    pub key: String,
    pub size: u64,
    /// LastModified, ms since the epoch.
    pub modified_ms: Option<i64>,
}

pub async fn list(c: &Client, bucket: &str, prefix: &str) -> anyhow::Result<Vec<Object>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = c.list_objects_v2().bucket(bucket).prefix(prefix);
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let page = req.send().await.map_err(|e| anyhow!("listing {bucket}/{prefix}: {}", DisplayErrorContext(e)))?;
        for o in page.contents() {
            out.push(Object {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
            });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

pub struct Uploaded {
    pub objects: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// The upload ceiling: `shape.objects` multipart uploads of `object_bytes` each,
/// in parts of `part_size`, at most `concurrency` parts in flight overall
/// (the s3-sink's per-task semaphore). `sample` is record data repeated to
/// fill a part; every part sends those same bytes (no Kafka, no encoding).
pub struct Shape {
    pub objects: usize,
    pub object_bytes: u64,
    pub part_size: usize,
    pub concurrency: usize,
    /// Bodies sent as `UNSIGNED-PAYLOAD`, as the s3-sink does over HTTPS.
    pub unsigned: bool,
}

pub async fn upload_ceiling(
    c: &Client,
    bucket: &str,
    prefix: &str,
    shape: Shape,
    sample: Bytes,
) -> anyhow::Result<Uploaded> {
    let Shape { objects, object_bytes, part_size, concurrency, unsigned } = shape;
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..objects {
        let (c, bucket, permits, sample) = (c.clone(), bucket.to_string(), permits.clone(), sample.clone());
        let key = format!("{prefix}object-{i:05}");
        tasks.push(tokio::spawn(async move {
            let created = c
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| anyhow!("CreateMultipartUpload {key}: {}", DisplayErrorContext(e)))?;
            let id = created.upload_id().unwrap_or_default().to_string();
            let mut parts = Vec::new();
            let mut offset = 0u64;
            let mut number = 1;
            while offset < object_bytes {
                let len = (object_bytes - offset).min(part_size as u64) as usize;
                let body = sample.slice(0..len.min(sample.len()));
                let permit = permits.clone().acquire_owned().await.context("semaphore")?;
                let (c, bucket, key, id) = (c.clone(), bucket.clone(), key.clone(), id.clone());
                parts.push(tokio::spawn(async move {
                    let _permit = permit;
                    let mut req = c
                        .upload_part()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(&id)
                        .part_number(number)
                        .body(ByteStream::from(body))
                        .customize();
                    if unsigned {
                        req = req.disable_payload_signing();
                    }
                    let out = req
                        .send()
                        .await
                        .map_err(|e| anyhow!("UploadPart {number} of {key}: {}", DisplayErrorContext(e)))?;
                    anyhow::Ok(
                        CompletedPart::builder().part_number(number).e_tag(out.e_tag().unwrap_or_default()).build(),
                    )
                }));
                offset += len as u64;
                number += 1;
            }
            let mut done = Vec::new();
            for p in parts {
                done.push(p.await.context("part upload task")??);
            }
            c.complete_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
                .send()
                .await
                .map_err(|e| anyhow!("CompleteMultipartUpload {key}: {}", DisplayErrorContext(e)))?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("object upload task")??;
    }
    Ok(Uploaded { objects, bytes: objects as u64 * object_bytes, seconds: started.elapsed().as_secs_f64() })
}
