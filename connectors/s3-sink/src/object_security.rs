//! What every object is created with: server-side encryption (Confluent's
//! `s3.ssea.name`, `s3.sse.kms.key.id`, `s3.sse.customer.key`) and a canned
//! ACL (`s3.acl.canned`).
//!
//! They go on the requests that create an object: CreateMultipartUpload and
//! PutObject. With a customer key (SSE-C) every UploadPart carries the key
//! as well: S3 encrypts each part's bytes with it, and a part sent without
//! it leaves an object that cannot be read back.

use aws_sdk_s3::{
    operation::{
        create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
        head_object::builders::HeadObjectFluentBuilder, put_object::builders::PutObjectFluentBuilder,
        upload_part::builders::UploadPartFluentBuilder,
    },
    types::{ObjectCannedAcl, ServerSideEncryption},
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use md5::{Digest, Md5};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// No header: the bucket's default encryption applies.
    BucketDefault,
    /// SSE-S3 (`AES256`) or SSE-KMS/DSSE-KMS with a key id, or without one
    /// for the account's AWS-managed key.
    Managed { algorithm: String, kms_key_id: Option<String> },
    /// SSE-C: the customer's 256-bit key and its MD5, both base64, as S3's
    /// headers carry them.
    CustomerKey { key: String, key_md5: String },
}

#[derive(Clone, PartialEq, Eq)]
pub struct ObjectSecurity {
    pub encryption: Encryption,
    pub acl: Option<String>,
}

impl std::fmt::Debug for ObjectSecurity {
    // The customer key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let encryption = match &self.encryption {
            Encryption::CustomerKey { .. } => "SSE-C".to_string(),
            other => format!("{other:?}"),
        };
        f.debug_struct("ObjectSecurity").field("encryption", &encryption).field("acl", &self.acl).finish()
    }
}

/// CreateMultipartUpload and PutObject take the same settings under the
/// same method names, on two builder types.
macro_rules! on_new_object {
    ($security:expr, $req:expr) => {{
        let security = $security;
        let mut req = $req;
        match &security.encryption {
            Encryption::BucketDefault => {}
            Encryption::Managed { algorithm, kms_key_id } => {
                req = req.server_side_encryption(ServerSideEncryption::from(algorithm.as_str()));
                if let Some(id) = kms_key_id {
                    req = req.ssekms_key_id(id);
                }
            }
            Encryption::CustomerKey { key, key_md5 } => {
                req = req.sse_customer_algorithm("AES256").sse_customer_key(key).sse_customer_key_md5(key_md5);
            }
        }
        if let Some(acl) = &security.acl {
            req = req.acl(ObjectCannedAcl::from(acl.as_str()));
        }
        req
    }};
}

/// A config problem: the key it is about and what is wrong (never the secret).
pub type Issue = (&'static str, String);

impl ObjectSecurity {
    /// From the four settings: the algorithm and the ACL as the config's
    /// canonical names (None: unset), the key id and the customer key as
    /// written (empty: unset). `tls` says whether requests go over HTTPS
    /// (AWS, or an `https://` store.url).
    pub fn parse(
        algorithm: Option<&str>,
        kms_key_id: &str,
        customer_key: &str,
        acl: Option<&str>,
        tls: bool,
    ) -> Result<Self, Issue> {
        let (kms_key_id, customer_key) = (kms_key_id.trim(), customer_key.trim());
        let kms = algorithm.is_some_and(|a| a.starts_with("aws:kms"));
        // Confluent ignores these two keys without the matching algorithm and
        // writes objects encrypted otherwise (or not at all): refused here.
        if !kms_key_id.is_empty() && !kms {
            return Err((
                "s3.sse.kms.key.id",
                "applies only with s3.ssea.name=aws:kms (or aws:kms:dsse); set that, or remove the key id".into(),
            ));
        }
        let encryption = if !customer_key.is_empty() {
            if algorithm != Some("AES256") {
                return Err((
                    "s3.sse.customer.key",
                    "a customer key (SSE-C) needs s3.ssea.name=AES256; set that, or remove the key".into(),
                ));
            }
            if !tls {
                return Err((
                    "s3.sse.customer.key",
                    "SSE-C sends the key with every request: store.url must be https:// (AWS refuses SSE-C over plain HTTP)".into(),
                ));
            }
            let bytes = BASE64.decode(customer_key).map_err(|_| {
                (
                    "s3.sse.customer.key",
                    "must be a base64-encoded 256-bit key (e.g. from `openssl rand -base64 32`)".to_string(),
                )
            })?;
            if bytes.len() != 32 {
                return Err((
                    "s3.sse.customer.key",
                    format!("must be a 256-bit key: it decodes to {} bytes, not 32", bytes.len()),
                ));
            }
            Encryption::CustomerKey { key: customer_key.to_string(), key_md5: BASE64.encode(Md5::digest(&bytes)) }
        } else {
            match algorithm {
                None => Encryption::BucketDefault,
                Some(a) => Encryption::Managed {
                    algorithm: a.to_string(),
                    kms_key_id: (!kms_key_id.is_empty()).then(|| kms_key_id.to_string()),
                },
            }
        };
        let acl = acl.map(str::to_string);
        Ok(ObjectSecurity { encryption, acl })
    }

    pub fn none() -> Self {
        ObjectSecurity { encryption: Encryption::BucketDefault, acl: None }
    }

    pub fn create(&self, req: CreateMultipartUploadFluentBuilder) -> CreateMultipartUploadFluentBuilder {
        on_new_object!(self, req)
    }

    pub fn put(&self, req: PutObjectFluentBuilder) -> PutObjectFluentBuilder {
        on_new_object!(self, req)
    }

    /// Reading an SSE-C object's metadata needs its key too.
    pub fn head(&self, req: HeadObjectFluentBuilder) -> HeadObjectFluentBuilder {
        match &self.encryption {
            Encryption::CustomerKey { key, key_md5 } => {
                req.sse_customer_algorithm("AES256").sse_customer_key(key).sse_customer_key_md5(key_md5)
            }
            _ => req,
        }
    }

    /// A part carries the customer key (SSE-C) and nothing else: S3 refuses
    /// the other encryption headers on UploadPart.
    pub fn part(&self, req: UploadPartFluentBuilder) -> UploadPartFluentBuilder {
        match &self.encryption {
            Encryption::CustomerKey { key, key_md5 } => {
                req.sse_customer_algorithm("AES256").sse_customer_key(key).sse_customer_key_md5(key_md5)
            }
            _ => req,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use aws_sdk_s3::{
        config::{interceptors::BeforeTransmitInterceptorContextRef, ConfigBag, Intercept, RuntimeComponents},
        error::BoxError,
        Client,
    };

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of "0123456789abcdef0123456789abcdef"

    /// `parse` with "" for an unset algorithm or ACL (the config hands over
    /// their canonical names; unknown ones are refused there, see config.rs).
    fn parse(
        algorithm: &str,
        kms_key_id: &str,
        customer_key: &str,
        acl: &str,
        tls: bool,
    ) -> Result<ObjectSecurity, Issue> {
        fn set(v: &str) -> Option<&str> {
            (!v.is_empty()).then_some(v)
        }
        ObjectSecurity::parse(set(algorithm), kms_key_id, customer_key, set(acl), tls)
    }

    #[test]
    fn settings_parse_into_what_s3_is_sent() {
        assert_eq!(parse("", "", "", "", false).unwrap(), ObjectSecurity::none());
        let s = parse("AES256", "", "", "bucket-owner-full-control", false).unwrap();
        assert_eq!(s.encryption, Encryption::Managed { algorithm: "AES256".into(), kms_key_id: None });
        assert_eq!(s.acl.as_deref(), Some("bucket-owner-full-control"));
        let s = parse("aws:kms", "alias/orders", "", "", false).unwrap();
        assert_eq!(
            s.encryption,
            Encryption::Managed { algorithm: "aws:kms".into(), kms_key_id: Some("alias/orders".into()) }
        );
        let s = parse("AES256", "", KEY, "", true).unwrap();
        // MD5 of the decoded key, as `openssl dgst -md5 -binary | base64` gives it.
        assert_eq!(
            s.encryption,
            Encryption::CustomerKey { key: KEY.into(), key_md5: "hRasmdxgYDKV3nvbahU1MA==".into() }
        );
        assert!(!format!("{s:?}").contains(KEY), "the key stays out of Debug output");
    }

    #[test]
    fn each_refusal_names_its_key_and_never_echoes_the_secret() {
        let refused = |a: &str, k: &str, c: &str, acl: &str, tls: bool| parse(a, k, c, acl, tls).unwrap_err();
        assert_eq!(refused("AES256", "alias/x", "", "", true).0, "s3.sse.kms.key.id");
        assert_eq!(refused("", "", KEY, "", true).0, "s3.sse.customer.key");
        assert_eq!(refused("aws:kms", "", KEY, "", true).0, "s3.sse.customer.key");
        let (key, msg) = refused("AES256", "", KEY, "", false);
        assert!(key == "s3.sse.customer.key" && msg.contains("https://"), "{msg}");
        for bad in ["not base64!", "c2hvcnQ="] {
            let (key, msg) = refused("AES256", "", bad, "", true);
            assert_eq!(key, "s3.sse.customer.key");
            assert!(!msg.contains(bad), "{msg}");
        }
    }

    /// Records each request's operation and headers, then stops it before
    /// it is sent (no server needed).
    #[derive(Debug, Default, Clone)]
    struct Capture(Arc<Mutex<Vec<Headers>>>);

    /// One request's headers, names in lower case.
    type Headers = Vec<(String, String)>;

    impl Intercept for Capture {
        fn name(&self) -> &'static str {
            "capture"
        }
        fn read_before_transmit(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let headers =
                context.request().headers().iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
            self.0.lock().map_err(|_| "poisoned")?.push(headers);
            Err("captured".into())
        }
    }

    /// The `x-amz-server-side-encryption*` and `x-amz-acl` headers of a
    /// CreateMultipartUpload, an UploadPart and a PutObject built with `s`.
    fn headers_sent(s: &ObjectSecurity) -> Vec<Headers> {
        let capture = Capture::default();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url("https://127.0.0.1:9")
            .credentials_provider(aws_sdk_s3::config::Credentials::new("id", "secret", None, None, "test"))
            .interceptor(capture.clone())
            .build();
        let client = Client::from_conf(conf);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let _ = s.create(client.create_multipart_upload().bucket("b").key("k")).send().await;
            let _ = s.part(client.upload_part().bucket("b").key("k").upload_id("u").part_number(1)).send().await;
            let _ = s.put(client.put_object().bucket("b").key("k")).send().await;
        });
        let all = capture.0.lock().unwrap().clone();
        all.into_iter()
            .map(|h| {
                h.into_iter()
                    .filter(|(k, _)| k.starts_with("x-amz-server-side-encryption") || k == "x-amz-acl")
                    .collect()
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Headers {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn managed_encryption_and_the_acl_go_on_object_creation_only() {
        let s = parse("aws:kms", "alias/orders", "", "bucket-owner-full-control", true).unwrap();
        let create = pairs(&[
            ("x-amz-acl", "bucket-owner-full-control"),
            ("x-amz-server-side-encryption", "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "alias/orders"),
        ]);
        let mut sent = headers_sent(&s);
        sent.iter_mut().for_each(|h| h.sort());
        assert_eq!(sent, vec![create.clone(), vec![], create]);
    }

    #[test]
    fn a_customer_key_goes_on_every_request_that_carries_bytes() {
        let s = parse("AES256", "", KEY, "", true).unwrap();
        let ssec = pairs(&[
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-server-side-encryption-customer-key", KEY),
            ("x-amz-server-side-encryption-customer-key-md5", "hRasmdxgYDKV3nvbahU1MA=="),
        ]);
        let mut sent = headers_sent(&s);
        sent.iter_mut().for_each(|h| h.sort());
        assert_eq!(sent, vec![ssec.clone(), ssec.clone(), ssec]);
        assert_eq!(headers_sent(&ObjectSecurity::none()), vec![Headers::new(); 3]);
    }
}
