//! `example-http-sink`: a Sluice sink connector that POSTs records to an
//! HTTP endpoint as JSON arrays of
//! `{"topic":…,"partition":…,"offset":…,"key":…,"value":…}` (the key as
//! text, the value as the JSON it holds when it parses, else as text; `null`
//! when absent), at most `http.batch.size` records per request. Built on
//! `connector-kit`: its HTTP client (timeouts, retries of a blip per
//! [`RetryPolicy`]) and its classification of statuses.
//!
//! What each answer does:
//!
//! | answer | the batch |
//! |---|---|
//! | 2xx | durable: `pre_commit` reports it |
//! | 5xx, 408, 429, a timeout, a refused connection (after the client's retries) | `Retriable` as a whole: the worker puts it again with backoff |
//! | 401, 403 | `Config`: the task fails, the message names `http.auth.token` |
//! | another 4xx with a body `{"rejected":[i, …]}` | those records (indices into the request's array) `BadRecord`, routed to the DLQ; the rest are durable |
//! | another 4xx | every record of the request `BadRecord` |
//!
//! Delivery is **at least once**: after a crash, a revoke or a retried
//! batch, records the server already acknowledged are sent again. Each
//! request carries header `X-Sluice-Offsets` (`topic/partition/first-last`
//! per partition, comma-separated) and each element its topic, partition
//! and offset, so a server can drop what it already holds.

use std::{collections::BTreeMap, time::Duration};

use connector_api::{config::typed::config_error, *};
use connector_kit::{
    classify::{self, StatusPolicy},
    http::{HttpClient, HttpError, Request},
    retry::RetryPolicy,
};
use serde_json::{json, Value};

/// The header naming the offsets a request carries, for servers that dedupe.
pub const OFFSETS_HEADER: &str = "X-Sluice-Offsets";

config_struct! {
    /// The settings of `example-http-sink`.
    #[derive(Debug)]
    pub struct HttpSinkConfig {
        /// Where batches are POSTed (http:// or https://).
        pub url: String = key("http.url").high().regex("https?://.+"),
        /// Records per request, at most.
        pub batch_size: u32 = key("http.batch.size").default(100).range(1..=10_000),
        /// One request, connect to the last byte of the answer.
        pub timeout: Duration = key("http.timeout.ms").default(Duration::from_secs(30)),
        /// How long one put retries a failed request (5xx, 429, timeouts)
        /// before the batch goes back to the worker, which retries it with
        /// backoff. 0: no retry inside the put.
        pub retry_max: Duration = key("http.retry.max.ms").default(Duration::from_secs(10)),
        /// Sent as `Authorization: Bearer <token>` when set.
        pub auth_token: Option<Secret> = key("http.auth.token"),
    }
}

/// The connector class `example-http-sink`.
pub struct HttpSink;

/// One task: a consumer of some of the connector's partitions.
pub struct HttpSinkTask {
    client: HttpClient,
    url: String,
    batch_size: usize,
    /// Whether `http.auth.token` is set (for the message of a 401).
    has_token: bool,
    /// Per partition, the first offset of a batch that failed as a whole
    /// (`Retriable`) and was not taken since: nothing from there on is
    /// reported durable.
    failing: BTreeMap<TopicPartition, i64>,
    host: Host,
}

impl SinkConnector for HttpSink {
    type Task = HttpSinkTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "example-http-sink",
            aliases: &[],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "POSTs records as JSON arrays to an HTTP endpoint, at least once.",
        }
    }

    fn config_def(&self) -> ConfigDef {
        HttpSinkConfig::definition()
    }

    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        _context: SinkContext,
    ) -> Result<HttpSinkTask, ConnectorError> {
        let config = HttpSinkConfig::parse(config).map_err(config_error)?;
        let retry = if config.retry_max.is_zero() {
            RetryPolicy::none()
        } else {
            RetryPolicy::default().max_attempts(u32::MAX).max_elapsed(Some(config.retry_max))
        };
        let mut builder = HttpClient::builder("")
            .timeout(config.timeout)
            .user_agent(concat!("sluice-example-http-sink/", env!("CARGO_PKG_VERSION")))
            .header("Content-Type", "application/json")
            .retry(retry);
        if let Some(token) = &config.auth_token {
            builder = builder.header("Authorization", &format!("Bearer {}", token.expose()));
        }
        host.info("http sink task started", &[("url", &config.url)]);
        Ok(HttpSinkTask {
            client: builder.build(),
            url: config.url,
            batch_size: config.batch_size as usize,
            has_token: config.auth_token.is_some(),
            failing: BTreeMap::new(),
            host,
        })
    }
}

/// What the server made of one request.
enum Answer {
    /// Taken: every record is durable.
    Taken,
    /// These indices (into the request) are bad records; the rest are taken.
    Refused(Vec<(usize, ConnectorError)>),
}

impl HttpSinkTask {
    fn post(&mut self, records: &[SinkRecord<'_>]) -> Result<Answer, ConnectorError> {
        let body = Value::Array(records.iter().map(element).collect()).to_string();
        let request = Request::post(self.url.as_str(), body).header(OFFSETS_HEADER, &offsets_header(records));
        let what = format!("POST {}", self.url);
        match self.client.send(request) {
            Ok(_) => Ok(Answer::Taken),
            Err(HttpError::Status { status: status @ (401 | 403), body, .. }) => Err(ConnectorError::config(format!(
                "{what}: HTTP {status}: the server refused the credentials: check http.auth.token{}: {}",
                if self.has_token { "" } else { " (not set)" },
                classify::excerpt(&body, 300)
            ))),
            Err(HttpError::Status { status, body, .. })
                if classify::http_status(status, StatusPolicy::SINK) == Some(ErrorKind::BadRecord) =>
            {
                Ok(Answer::Refused(refused(status, &what, &body, records)))
            }
            Err(e) => Err(e.to_connector_error(&what, StatusPolicy::SINK)),
        }
    }
}

/// Which records a 4xx refused: those the body lists as
/// `{"rejected":[indices]}` when it does (indices out of range are ignored),
/// otherwise (no list, or none in range) all of them.
fn refused(status: u16, what: &str, body: &str, records: &[SinkRecord<'_>]) -> Vec<(usize, ConnectorError)> {
    let listed: Option<Vec<usize>> = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let indices = v.get("rejected")?.as_array()?;
        Some(indices.iter().filter_map(Value::as_u64).map(|i| i as usize).filter(|i| *i < records.len()).collect())
    });
    let indices: Vec<usize> = match listed {
        Some(listed) if !listed.is_empty() => listed,
        // No list, or an empty one (a refusal that names no record): all.
        _ => (0..records.len()).collect(),
    };
    indices
        .into_iter()
        .map(|i| {
            let error =
                classify::http_error(status, &format!("{what} {}", records[i].position()), body, StatusPolicy::SINK);
            (i, error)
        })
        .collect()
}

impl SinkTask for HttpSinkTask {
    /// POSTs the records in requests of at most `http.batch.size`. A
    /// request that fails retriably fails the whole put: the worker puts the
    /// same batch again (requests already taken are sent again).
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        let mut outcome = PutOutcome::accepted();
        let mut refused = 0;
        for (n, chunk) in records.chunks(self.batch_size).enumerate() {
            let start = n * self.batch_size;
            match self.post(chunk) {
                Ok(Answer::Taken) => self.taken(chunk),
                Ok(Answer::Refused(failures)) => {
                    self.taken(chunk);
                    refused += failures.len();
                    for (i, error) in failures {
                        outcome.fail(start + i, error);
                    }
                }
                Err(e) => {
                    for record in &records[start..] {
                        let tp = TopicPartition::new(record.topic(), record.partition());
                        let first = self.failing.entry(tp).or_insert(record.offset());
                        *first = (*first).min(record.offset());
                    }
                    self.host.warn("a batch failed", &[("error", e.message())]);
                    return Err(e);
                }
            }
        }
        self.host.counter(
            "example_http_sink_records_total",
            "Records the server took",
            &[],
            (records.len() - refused) as f64,
        );
        Ok(outcome)
    }

    /// The server answered every request handed so far (failed records are
    /// settled by the worker when routed), except batches that failed as a
    /// whole and were not put again.
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(delivered
            .iter()
            .map(|d| {
                let tp = TopicPartition::new(d.topic.to_string(), d.partition);
                match self.failing.get(&tp) {
                    Some(first) if *first < d.offset => {
                        TopicPartitionOffset::new(d.topic.to_string(), d.partition, *first)
                    }
                    _ => d.clone(),
                }
            })
            .collect())
    }

    /// Nothing is buffered: only the record of a failed batch is forgotten
    /// (the next owner gets it from the committed offset).
    fn close(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        for tp in partitions {
            self.failing.remove(tp);
        }
        Ok(())
    }
}

impl HttpSinkTask {
    /// The server answered `chunk`: a failed batch covering it was put again.
    fn taken(&mut self, chunk: &[SinkRecord<'_>]) {
        for record in chunk {
            let tp = TopicPartition::new(record.topic(), record.partition());
            if self.failing.get(&tp).is_some_and(|first| *first <= record.offset()) {
                self.failing.remove(&tp);
            }
        }
    }
}

/// One record as the server gets it.
fn element(record: &SinkRecord<'_>) -> Value {
    let value = record.value().map(|bytes| match serde_json::from_slice::<Value>(bytes) {
        Ok(parsed) => parsed,
        Err(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    });
    json!({
        "topic": record.topic(),
        "partition": record.partition(),
        "offset": record.offset(),
        "key": record.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "value": value,
    })
}

/// `topic/partition/first-last` per partition of the request, in order of
/// first appearance.
pub fn offsets_header(records: &[SinkRecord<'_>]) -> String {
    let mut ranges: Vec<(&str, i32, i64, i64)> = Vec::new();
    for r in records {
        match ranges.iter_mut().find(|(t, p, _, _)| *t == r.topic() && *p == r.partition()) {
            Some(range) => {
                range.2 = range.2.min(r.offset());
                range.3 = range.3.max(r.offset());
            }
            None => ranges.push((r.topic(), r.partition(), r.offset(), r.offset())),
        }
    }
    ranges.iter().map(|(t, p, first, last)| format!("{t}/{p}/{first}-{last}")).collect::<Vec<_>>().join(",")
}

connector_api::export_plugin! { sinks: [HttpSink], sources: [] }

#[cfg(test)]
mod tests;
