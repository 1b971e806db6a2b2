//! `salesforce-marketing-cloud-sink`: upserts rows into a Marketing Cloud
//! data extension through the async rows API
//! (`PUT /data/v1/async/dataextensions/key:{key}/rows`), polls the
//! request's status and results, and routes per-row errors.
//!
//! A put writes synchronously: one request at a time, each awaited to
//! completion, so a later version of a row is never sent while an earlier
//! request may still complete. Each request is announced in the durable note
//! of its partitions before it is sent (`sending@<incarnation>`) and its id
//! recorded once accepted; a task taking a partition waits for the request
//! a note names, and, for a request announced but never named (a crash
//! between sending and the answer), waits `sfmc.orphan.wait.ms` before
//! sending anything newer.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use connector_api::{config::typed::config_error, config::typed::Secret, config_struct, *};
use connector_kit::{
    classify::StatusPolicy,
    http::{Agent, HttpClient, HttpError, Method, Request, TokenSource},
    retry::RetryPolicy,
};
use serde_json::{json, Value};

use crate::{
    config::Matching,
    mapping::{self, Op, Row, Spec},
    plan,
};

config_struct! {
    /// The keys of `salesforce-marketing-cloud-sink`.
    #[derive(Debug)]
    pub struct McSettings {
        /// The tenant subdomain (`mc563885gzs27c5t9-63k636ttgm`): the token is
        /// asked from `https://{subdomain}.auth.marketingcloudapis.com`.
        pub subdomain: Option<String> = key("sfmc.subdomain").high().group("Marketing Cloud"),
        /// The authentication base URL, instead of the subdomain's.
        pub auth_url: Option<String> = key("sfmc.auth.url").group("Marketing Cloud").regex("https?://.+"),
        /// The installed package's API integration client id.
        pub client_id: String = key("sfmc.client.id").high().group("Marketing Cloud").non_empty(),
        /// Its client secret.
        pub client_secret: Secret = key("sfmc.client.secret").high().group("Marketing Cloud"),
        /// The business unit (MID) the token is for, when not the default.
        pub account_id: Option<String> = key("sfmc.account.id").group("Marketing Cloud"),
        /// The data extension's external key.
        pub data_extension: String = key("sfmc.data.extension.key").high().group("Data extension").non_empty(),
        /// Its primary-key columns (after renames); every row needs them.
        pub primary_keys: Vec<String> = key("sfmc.primary.keys").high().group("Data extension").non_empty(),
        /// Renames, `recordField:Column` pairs.
        pub field_mapping: Vec<String> = key("sfmc.field.mapping").group("Data extension").default_text("")
            .regex("[^:]+:[^:]+"),
        /// Record fields not sent.
        pub ignore_fields: Vec<String> = key("sfmc.ignore.fields").group("Data extension").default_text(""),
        /// Rows per async request (the API takes at most 32,000).
        pub batch_size: u32 = key("sfmc.batch.size").group("Writes").default(5000).range(1..=32_000),
        /// Between two status polls of a request.
        pub poll_interval: Duration = key("sfmc.poll.interval.ms").group("Writes").default(Duration::from_secs(2)),
        /// How long one put waits for a request to complete; then the batch
        /// goes back to the worker, and the next put waits for the same
        /// request first.
        pub request_wait: Duration = key("sfmc.request.wait.ms").group("Writes").default(Duration::from_secs(120)),
        /// A request announced in a partition's note by an earlier run but
        /// never named (its answer was lost): how long to wait for it to
        /// complete before sending newer rows.
        pub orphan_wait: Duration = key("sfmc.orphan.wait.ms").group("Writes").default(Duration::from_secs(600)),
        /// Per-row error codes routed to errors.rejected.topic.name; others
        /// go to the DLQ.
        pub rejected_codes: Vec<String> = key("sfmc.rejected.error.codes").group("Errors")
            .default_text("InvalidValue,RequiredValueMissing,ValueTooLong,InvalidEmailAddress"),
        /// Connect and answer timeout of one call.
        pub timeout: Duration = key("sfmc.connection.timeout").group("Connection").default(Duration::from_secs(30)),
    }
}

/// The class `salesforce-marketing-cloud-sink`.
pub struct MarketingCloudSink;

impl SinkConnector for MarketingCloudSink {
    type Task = McTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "salesforce-marketing-cloud-sink",
            aliases: &[],
            version: env!("CARGO_PKG_VERSION"),
            documentation: "Upserts records into a Marketing Cloud data extension through the async rows API.",
        }
    }

    fn config_def(&self) -> ConfigDef {
        McSettings::definition()
    }

    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        let issues = self.config_def().validate(config);
        if !issues.is_empty() {
            return issues;
        }
        match McSettings::parse(config) {
            Ok(s) if s.subdomain.is_none() && s.auth_url.is_none() => {
                vec![ConfigIssue::new(McSettings::subdomain, "set the tenant subdomain (or sfmc.auth.url)")]
            }
            Ok(_) => vec![],
            Err(issues) => issues,
        }
    }

    fn create_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<McTask, ConnectorError> {
        McTask::new(config, host, context)
    }
}

/// The v2 token, reused until a minute before `expires_in` ends (Salesforce
/// asks for one token per 20 minutes per client), renewed on a 401.
pub struct McToken {
    url: String,
    body: String,
    cached: Option<(String, Instant)>,
    /// The `rest_instance_url` of the last answer, shared with the task.
    rest: Arc<Mutex<Option<String>>>,
}

impl McToken {
    fn fetch(&mut self, agent: &Agent) -> Result<(), HttpError> {
        let url = self.url.as_str();
        let mut response = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(self.body.as_str())
            .map_err(|e| connector_kit::http::transport_error(url, e))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|e| connector_kit::http::transport_error(url, e))?;
        if !(200..300).contains(&status) {
            return Err(HttpError::Status { status, url: url.to_string(), body, retry_after: None });
        }
        let invalid = |message: String| HttpError::Invalid { url: url.to_string(), message };
        let reply: Value =
            serde_json::from_str(&body).map_err(|e| invalid(format!("the token answer is not JSON ({e})")))?;
        let (Some(token), Some(rest)) = (reply["access_token"].as_str(), reply["rest_instance_url"].as_str()) else {
            return Err(invalid("the token answer lacks access_token or rest_instance_url".into()));
        };
        let lifetime = reply["expires_in"].as_u64().unwrap_or(1079);
        let refresh_at = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(lifetime / 2));
        self.cached = Some((format!("Bearer {token}"), refresh_at));
        *self.rest.lock().unwrap_or_else(|p| p.into_inner()) = Some(rest.trim_end_matches('/').to_string());
        Ok(())
    }
}

impl TokenSource for McToken {
    fn authorization(&mut self, agent: &Agent, refresh: bool) -> Result<String, HttpError> {
        match &self.cached {
            Some((header, at)) if !refresh && Instant::now() < *at => Ok(header.clone()),
            _ => {
                self.fetch(agent)?;
                Ok(self.cached.as_ref().map(|c| c.0.clone()).unwrap_or_default())
            }
        }
    }
}

/// What a partition's note says about requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A request was about to be sent by run `incarnation`; its id unknown.
    Sending(u64),
    /// This request was accepted.
    Request(String),
}

impl Note {
    pub fn parse(text: &str) -> Option<Note> {
        if let Some(inc) = text.strip_prefix("sfmc:sending@") {
            return inc.parse().ok().map(Note::Sending);
        }
        text.strip_prefix("sfmc:request=").filter(|id| !id.is_empty()).map(|id| Note::Request(id.to_string()))
    }
    pub fn render(&self) -> String {
        match self {
            Note::Sending(inc) => format!("sfmc:sending@{inc}"),
            Note::Request(id) => format!("sfmc:request={id}"),
        }
    }
}

/// What a task that takes partitions with these notes must wait for before
/// sending: request ids to see complete, and whether a request of an
/// earlier run may exist unnamed.
pub fn inherited(notes: &[Option<String>], incarnation: u64) -> (BTreeSet<String>, bool) {
    let mut ids = BTreeSet::new();
    let mut orphan = false;
    for note in notes.iter().flatten().filter_map(|n| Note::parse(n)) {
        match note {
            Note::Request(id) => {
                ids.insert(id);
            }
            Note::Sending(inc) if inc != incarnation => orphan = true,
            Note::Sending(_) => {}
        }
    }
    (ids, orphan)
}

pub struct McTask {
    client: HttpClient,
    de_key: String,
    spec: Spec,
    primary_keys: Vec<String>,
    batch_size: usize,
    poll_interval: Duration,
    request_wait: Duration,
    orphan_wait: Duration,
    rejected_codes: Vec<String>,
    context: SinkContext,
    host: Host,
    /// Requests that must complete before anything newer is sent.
    pending: BTreeSet<String>,
    /// Until when nothing is sent (an unnamed request of an earlier run).
    orphan_until: Option<Instant>,
    rest_url: Arc<Mutex<Option<String>>>,
}

impl McTask {
    fn new(config: &ConnectorConfig, host: Host, context: SinkContext) -> Result<McTask, ConnectorError> {
        let s = McSettings::parse(config).map_err(config_error)?;
        let auth = match (&s.auth_url, &s.subdomain) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(sub)) => format!("https://{sub}.auth.marketingcloudapis.com"),
            (None, None) => return Err(ConnectorError::config("sfmc.subdomain: set the tenant subdomain")),
        };
        let mut body = json!({"grant_type": "client_credentials", "client_id": s.client_id, "client_secret": s.client_secret.expose()});
        if let Some(mid) = &s.account_id {
            body["account_id"] = Value::String(mid.clone());
        }
        let rest_url = Arc::new(Mutex::new(None));
        let token = McToken {
            url: format!("{auth}/v2/token"),
            body: body.to_string(),
            cached: None,
            rest: Arc::clone(&rest_url),
        };
        let client = HttpClient::builder("")
            .timeout(s.timeout)
            .user_agent(concat!("sluice-salesforce-marketing-cloud-sink/", env!("CARGO_PKG_VERSION")))
            .header("Accept", "application/json")
            .retry(RetryPolicy::default().max_attempts(u32::MAX).max_elapsed(Some(Duration::from_secs(60))))
            .token_source(token)
            .build();
        let renames: Vec<(String, String)> = s
            .field_mapping
            .iter()
            .filter_map(|p| p.split_once(':'))
            .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
            .collect();
        let spec = Spec {
            operation: crate::config::Operation::Upsert,
            override_event_type: true,
            // The first primary-key column stands in for the match key; the
            // full key is checked per row.
            matching: Matching::External(s.primary_keys[0].clone()),
            ignore_fields: s.ignore_fields.clone(),
            renames,
        };
        Ok(McTask {
            client,
            de_key: s.data_extension,
            spec,
            primary_keys: s.primary_keys,
            batch_size: s.batch_size as usize,
            poll_interval: s.poll_interval,
            request_wait: s.request_wait,
            orphan_wait: s.orphan_wait,
            rejected_codes: s.rejected_codes,
            context,
            host,
            pending: BTreeSet::new(),
            orphan_until: None,
            rest_url,
        })
    }

    fn rest(&mut self) -> Result<String, ConnectorError> {
        self.client
            .authorization(false)
            .map_err(|e| e.to_connector_error("getting a Marketing Cloud token", StatusPolicy::SINK))?;
        let rest = self.rest_url.lock().unwrap_or_else(|p| p.into_inner()).clone();
        rest.ok_or_else(|| ConnectorError::fatal("the token answer named no rest_instance_url"))
    }

    /// Polls `id` until it is no longer Pending or `wait` passed: the
    /// status object, or None when still pending.
    fn await_request(&mut self, rest: &str, id: &str, wait: Duration) -> Result<Option<Value>, ConnectorError> {
        let deadline = Instant::now() + wait;
        loop {
            let url = format!("{rest}/data/v1/async/{id}/status");
            let answer =
                self.client.get(&url).map_err(|e| e.to_connector_error(&format!("GET {url}"), StatusPolicy::SOURCE))?;
            let body = answer.json().map_err(|e| ConnectorError::fatal(format!("GET {url}: not JSON: {e}")))?;
            let status = &body["status"];
            if status.is_null() {
                // AsyncRequestStatusNotFound (a long-gone request): nothing to wait for.
                return Ok(Some(json!({"requestStatus": "Unknown", "hasErrors": false})));
            }
            if status["requestStatus"] != "Pending" {
                return Ok(Some(status.clone()));
            }
            if Instant::now() + self.poll_interval > deadline {
                return Ok(None);
            }
            std::thread::sleep(self.poll_interval);
        }
    }

    /// The per-row results of a completed request, in request order.
    fn results(&mut self, rest: &str, id: &str, rows: usize) -> Result<Vec<Option<(String, String)>>, ConnectorError> {
        let mut out = Vec::with_capacity(rows);
        let mut page = 1;
        while out.len() < rows {
            let url = format!("{rest}/data/v1/async/{id}/results?page={page}&pageSize=2500");
            let answer =
                self.client.get(&url).map_err(|e| e.to_connector_error(&format!("GET {url}"), StatusPolicy::SOURCE))?;
            let body = answer.json().map_err(|e| ConnectorError::fatal(format!("GET {url}: not JSON: {e}")))?;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            for item in items {
                let failed = item["status"].as_str().is_some_and(|s| !s.eq_ignore_ascii_case("OK"));
                out.push(failed.then(|| {
                    (
                        item["errorCode"].as_str().unwrap_or("Error").to_string(),
                        item["message"].as_str().unwrap_or("").to_string(),
                    )
                }));
            }
            page += 1;
        }
        if out.len() != rows {
            return Err(ConnectorError::fatal(format!(
                "the results of request {id} list {} rows for {rows} sent: cannot tell which rows failed",
                out.len()
            )));
        }
        Ok(out)
    }

    fn note_all(&self, partitions: &BTreeSet<TopicPartition>, note: &Note) -> Result<(), ConnectorError> {
        for tp in partitions {
            self.context.commit_note(tp, &note.render())?;
        }
        Ok(())
    }
}

impl SinkTask for McTask {
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        let notes: Vec<Option<String>> = partitions.iter().map(|tp| self.context.note(tp)).collect();
        let (ids, orphan) = inherited(&notes, self.context.incarnation());
        if !ids.is_empty() {
            self.host
                .info("waiting for requests of an earlier run before sending", &[("requests", &format!("{ids:?}"))]);
        }
        self.pending.extend(ids);
        if orphan {
            self.host.warn(
                "an earlier run announced a request whose id was never recorded; waiting sfmc.orphan.wait.ms before sending",
                &[],
            );
            self.orphan_until = Some(Instant::now() + self.orphan_wait);
        }
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        if let Some(until) = self.orphan_until {
            if Instant::now() < until {
                return Err(ConnectorError::retriable(
                    "waiting for a request an earlier run may have sent (sfmc.orphan.wait.ms) before sending newer rows",
                ));
            }
            self.orphan_until = None;
        }
        let rest = self.rest()?;
        for id in self.pending.clone() {
            match self.await_request(&rest, &id, self.request_wait)? {
                Some(_) => {
                    self.pending.remove(&id);
                }
                None => return Err(ConnectorError::retriable(format!("request {id} is still pending"))),
            }
        }
        let mut outcome = PutOutcome::accepted();
        let mut rows: Vec<(usize, Row)> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let mapped = mapping::map_record(&self.spec, record.key(), record.value()).and_then(|row| {
                let missing: Vec<&String> =
                    self.primary_keys.iter().filter(|k| row.fields.get(*k).is_none_or(Value::is_null)).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "primary-key column(s) {missing:?} missing (sfmc.primary.keys, after sfmc.field.mapping)"
                    ));
                }
                let key: Vec<String> = self.primary_keys.iter().map(|k| row.fields[k].to_string()).collect();
                Ok(Row {
                    op: if row.op == Op::Delete { Op::Delete } else { Op::Upsert },
                    key: Some(key.join("\u{1f}")),
                    fields: row.fields,
                })
            });
            match mapped {
                Ok(row) if row.op == Op::Delete => outcome.fail(
                    i,
                    ConnectorError::bad_record(format!(
                        "{}: deletes are not offered by the async rows API",
                        record.position()
                    )),
                ),
                Ok(row) => rows.push((i, row)),
                Err(why) => {
                    outcome.fail(i, ConnectorError::bad_record(format!("cannot map {}: {why}", record.position())))
                }
            }
        }
        let planned = plan::plan(&rows, true, self.batch_size);
        for request in planned {
            let partitions: BTreeSet<TopicPartition> = request
                .items
                .iter()
                .flat_map(|item| {
                    item.records.iter().map(|&i| TopicPartition::new(records[i].topic(), records[i].partition()))
                })
                .collect();
            self.note_all(&partitions, &Note::Sending(self.context.incarnation()))?;
            let items: Vec<Value> = request.items.iter().map(|i| Value::Object(i.fields.clone())).collect();
            let url = format!("{rest}/data/v1/async/dataextensions/key:{}/rows", self.de_key);
            let sent = Request::new(Method::Put, url.clone())
                .header("Content-Type", "application/json")
                .body(json!({"items": items}).to_string());
            let answer = self
                .client
                .send(sent)
                .map_err(|e| e.to_connector_error(&format!("PUT {url}"), StatusPolicy::SOURCE))?;
            let body = answer.json().map_err(|e| ConnectorError::fatal(format!("PUT {url}: not JSON: {e}")))?;
            let Some(id) = body["requestId"].as_str().map(str::to_string) else {
                return Err(ConnectorError::fatal(format!("PUT {url}: no requestId in {body}")));
            };
            self.note_all(&partitions, &Note::Request(id.clone()))?;
            let Some(status) = self.await_request(&rest, &id, self.request_wait)? else {
                self.pending.insert(id.clone());
                return Err(ConnectorError::retriable(format!(
                    "request {id} is still pending after sfmc.request.wait.ms"
                )));
            };
            if status["requestStatus"] == "Error" {
                return Err(ConnectorError::fatal(format!("request {id} failed as a whole: {status}")));
            }
            if status["hasErrors"].as_bool() == Some(true) {
                let results = self.results(&rest, &id, request.items.len())?;
                for (item, result) in request.items.iter().zip(results) {
                    let Some((code, message)) = result else { continue };
                    let why = format!("{code}: {message}");
                    for &i in &item.records {
                        let text = format!(
                            "Marketing Cloud refused {} (data extension {}): {why}",
                            records[i].position(),
                            self.de_key
                        );
                        let error = if self.rejected_codes.contains(&code) {
                            ConnectorError::rejected(text)
                        } else {
                            ConnectorError::bad_record(text)
                        };
                        // Marketing Cloud's row results name no fields.
                        outcome.fail_with_details(i, error, &[("code", &code), ("message", &message)]);
                    }
                }
            }
        }
        Ok(outcome)
    }

    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(delivered.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_tell_what_to_wait_for() {
        for note in [Note::Sending(17), Note::Request("9b13d627".into())] {
            assert_eq!(Note::parse(&note.render()), Some(note));
        }
        assert_eq!(Note::parse("stream-a@1"), None);
        let notes =
            vec![Some("sfmc:request=a".into()), None, Some("sfmc:sending@5".into()), Some("sfmc:request=b".into())];
        let (ids, orphan) = inherited(&notes, 9);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(orphan, "run 5 announced a request it never named");
        let (_, orphan) = inherited(&[Some("sfmc:sending@9".into())], 9);
        assert!(!orphan, "our own announcement is not an orphan");
    }
}
