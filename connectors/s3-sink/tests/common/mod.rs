//! What the S3 sink's integration tests share: the SeaweedFS of
//! `dev/services` (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET,
//! S3_REGION), a base connector config, a bucket reader and the records'
//! JSON. Each test binary uses part of it.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::{
    config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation},
    Client,
};
use connector_api::ConnectorConfig;

pub struct Env {
    pub endpoint: String,
    pub access: String,
    pub secret: String,
    pub bucket: String,
    pub region: String,
}

pub fn env() -> Env {
    let get = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run `dev/services up` and then `eval \"$(dev/services env)\"` before these tests")
        })
    };
    Env {
        endpoint: get("S3_ENDPOINT"),
        access: get("S3_ACCESS_KEY"),
        secret: get("S3_SECRET_KEY"),
        bucket: get("S3_BUCKET"),
        region: get("S3_REGION"),
    }
}

/// A unique prefix per test run and test.
pub fn unique_dir(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("it-{test}-{nanos}")
}

pub fn config(dir: &str, extra: &[(&str, &str)]) -> ConnectorConfig {
    let e = env();
    let mut c = ConnectorConfig::new()
        .with("connector.class", "io.confluent.connect.s3.S3SinkConnector")
        .with("topics", "orders")
        .with("s3.bucket.name", e.bucket)
        .with("s3.region", e.region)
        .with("store.url", e.endpoint)
        .with("aws.access.key.id", e.access)
        .with("aws.secret.access.key", e.secret)
        .with("topics.dir", dir)
        .with("format.class", "io.confluent.connect.s3.format.json.JsonFormat")
        .with("flush.size", "3");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

/// Test-side S3 access, with its own runtime.
pub struct Bucket {
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    pub bucket: String,
}

impl Bucket {
    pub fn new() -> Self {
        let e = env();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new(e.region))
            .endpoint_url(e.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(e.access, e.secret, None, None, "test"))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Bucket { rt, client: Client::from_conf(conf), bucket: e.bucket }
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = self.rt.block_on(req.send()).unwrap();
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        keys
    }

    pub fn get(&self, key: &str) -> (Vec<u8>, String) {
        let out = self.rt.block_on(self.client.get_object().bucket(&self.bucket).key(key).send()).unwrap();
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = self.rt.block_on(out.body.collect()).unwrap().into_bytes().to_vec();
        (body, etag)
    }

    pub fn text(&self, key: &str) -> String {
        String::from_utf8(self.get(key).0).unwrap()
    }

    pub fn open_uploads(&self, prefix: &str) -> Vec<String> {
        let out =
            self.rt.block_on(self.client.list_multipart_uploads().bucket(&self.bucket).prefix(prefix).send()).unwrap();
        out.uploads().iter().filter_map(|u| u.key().map(str::to_string)).collect()
    }
}

pub fn json(n: i64) -> String {
    format!("{{\"id\":{n},\"name\":\"order-{n}\"}}")
}

pub fn lines(range: std::ops::Range<i64>) -> String {
    range.map(|o| json(o) + "\n").collect()
}
