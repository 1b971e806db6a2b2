//! Test-side access to the real S3 server of `dev/services`, with the same
//! client settings as the s3-sink (path style, checksums only when required).

use aws_sdk_s3::{
    config::{
        interceptors::BeforeDeserializationInterceptorContextMut, ConfigBag, Credentials, Intercept,
        RequestChecksumCalculation, ResponseChecksumValidation, RuntimeComponents,
    },
    error::{BoxError, DisplayErrorContext},
    Client,
};

use crate::service_env;

/// The test bucket, through a client with its own single-threaded runtime.
pub struct Bucket {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub name: String,
}

impl Default for Bucket {
    fn default() -> Self {
        Self::new()
    }
}

impl Bucket {
    pub fn new() -> Bucket {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new(service_env("S3_REGION")))
            .endpoint_url(service_env("S3_ENDPOINT"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                service_env("S3_ACCESS_KEY"),
                service_env("S3_SECRET_KEY"),
                None,
                None,
                "test",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Bucket { rt, client: Client::from_conf(conf), name: service_env("S3_BUCKET") }
    }

    /// A new bucket `name` (S3 naming rules) on the same server, for a test
    /// that needs a bucket to itself.
    pub fn create(name: &str) -> Bucket {
        let mut bucket = Bucket::new();
        let req = bucket.client.create_bucket().bucket(name);
        bucket.rt.block_on(req.send()).unwrap_or_else(|e| panic!("create bucket {name}: {}", DisplayErrorContext(e)));
        bucket.name = name.to_string();
        bucket
    }

    /// Every object key under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.name).prefix(prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = self.rt.block_on(req.send()).expect("list objects");
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        keys
    }

    /// An object's bytes and ETag.
    pub fn get(&self, key: &str) -> (Vec<u8>, String) {
        self.fetch(key, None).unwrap_or_else(|e| panic!("get {key}: {e}"))
    }

    /// An object's bytes and ETag, or the store's refusal. `customer_key`
    /// (SSE-C): the base64 key and the base64 MD5 of its bytes.
    pub fn fetch(&self, key: &str, customer_key: Option<(&str, &str)>) -> Result<(Vec<u8>, String), String> {
        let mut req = self.client.get_object().bucket(&self.name).key(key);
        if let Some((k, md5)) = customer_key {
            req = req.sse_customer_algorithm("AES256").sse_customer_key(k).sse_customer_key_md5(md5);
        }
        let send = req.customize().interceptor(OneCustomerKeyMd5).send();
        let out = self.rt.block_on(send).map_err(|e| format!("{}", DisplayErrorContext(e)))?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = self.rt.block_on(out.body.collect()).map_err(|e| e.to_string())?.into_bytes();
        Ok((body.to_vec(), etag))
    }

    /// An object's tags, sorted by key.
    pub fn tags(&self, key: &str) -> Vec<(String, String)> {
        let req = self.client.get_object_tagging().bucket(&self.name).key(key);
        let out = self.rt.block_on(req.send()).expect("get object tagging");
        let mut tags: Vec<(String, String)> =
            out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
        tags.sort();
        tags
    }

    /// The server-side encryption S3 reports for an object (`AES256`,
    /// `aws:kms`), if any.
    pub fn encryption(&self, key: &str) -> Option<String> {
        let out = self.rt.block_on(self.client.head_object().bucket(&self.name).key(key).send()).expect("head object");
        out.server_side_encryption().map(|e| e.as_str().to_string())
    }

    pub fn text(&self, key: &str) -> String {
        String::from_utf8(self.get(key).0).expect("UTF-8 object")
    }

    /// Keys of the multipart uploads still open under `prefix`.
    pub fn open_uploads(&self, prefix: &str) -> Vec<String> {
        let req = self.client.list_multipart_uploads().bucket(&self.name).prefix(prefix);
        let out = self.rt.block_on(req.send()).expect("list multipart uploads");
        out.uploads().iter().filter_map(|u| u.key().map(str::to_string)).collect()
    }
}

/// SeaweedFS 4.48 answers a GET of a multipart SSE-C object with its
/// `x-amz-server-side-encryption-customer-key-MD5` header twice (the same
/// value), which the SDK cannot parse into one string. Keeps the first.
#[derive(Debug)]
struct OneCustomerKeyMd5;

impl Intercept for OneCustomerKeyMd5 {
    fn name(&self) -> &'static str {
        "one-customer-key-md5"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        const HEADER: &str = "x-amz-server-side-encryption-customer-key-md5";
        let headers = context.response_mut().headers_mut();
        let first = headers.get_all(HEADER).next().map(str::to_string);
        if let Some(value) = first {
            headers.remove(HEADER);
            headers.insert(HEADER, value);
        }
        Ok(())
    }
}

/// An s3-sink connector config: the connection to `dev/services`' S3 server
/// (bucket, region, endpoint, path style, credentials) with `rest` on top
/// (a key in `rest` wins).
pub fn sink_config(rest: serde_json::Value) -> serde_json::Value {
    let mut config = serde_json::json!({
        "s3.bucket.name": service_env("S3_BUCKET"),
        "s3.region": service_env("S3_REGION"),
        "store.url": service_env("S3_ENDPOINT"),
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": service_env("S3_ACCESS_KEY"),
        "aws.secret.access.key": service_env("S3_SECRET_KEY"),
    });
    if let (Some(base), serde_json::Value::Object(rest)) = (config.as_object_mut(), rest) {
        base.extend(rest);
    }
    config
}
