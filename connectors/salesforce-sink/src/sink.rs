//! The Sales Cloud task: each put is written synchronously through sObject
//! Collections, several requests in flight, and returns once every row has
//! an answer. Nothing is buffered across puts, so `pre_commit` reports what
//! the worker delivered: an offset is never committed past a request whose
//! answer was not received.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use connector_api::{config::typed::config_error, *};
use connector_kit::{
    classify::StatusPolicy,
    http::{encode, HttpClient, HttpError, Method, Request},
    retry::RetryPolicy,
};
use serde_json::{json, Value};

use crate::{
    auth::{Shared, SharedToken},
    config::{Matching, OnApiErrors, SalesforceConfig},
    mapping::{self, Spec},
    plan::{self, ApiError, Item, Kind, Planned, Refusal, Verdict},
};

/// Retrying inside one put stops here even when request.max.retries.time.ms
/// is longer: a put must return well within max.poll.interval.ms (300 s);
/// the worker then retries the batch for as long as it takes.
const MAX_RETRY_IN_PUT: Duration = Duration::from_secs(120);

pub struct SalesforceTask {
    config: SalesforceConfig,
    spec: Spec,
    shared: Arc<Shared>,
    clients: Vec<HttpClient>,
    host: Host,
    /// Until when nothing is sent, and why (the daily allocation).
    paused: Option<(Instant, String)>,
}

impl SalesforceTask {
    pub fn new(config: &ConnectorConfig, host: Host) -> Result<SalesforceTask, ConnectorError> {
        let config = SalesforceConfig::parse(config).map_err(config_error)?;
        let shared = Shared::new(&config.login_url, &config.consumer_key, config.auth.clone())
            .map_err(ConnectorError::config)?;
        let retry =
            RetryPolicy::default().max_attempts(u32::MAX).max_elapsed(Some(config.retry_max.min(MAX_RETRY_IN_PUT)));
        let clients = (0..config.max_in_flight)
            .map(|_| {
                HttpClient::builder("")
                    .timeout(config.timeout)
                    .user_agent(concat!("sluice-salesforce-sink/", env!("CARGO_PKG_VERSION")))
                    .header("Accept", "application/json")
                    .retry(retry.clone())
                    .token_source(SharedToken::new(Arc::clone(&shared)))
                    .build()
            })
            .collect();
        let spec = Spec {
            operation: config.operation,
            override_event_type: config.override_event_type,
            matching: config.matching.clone(),
            ignore_fields: config.ignore_fields.clone(),
            renames: config.renames.clone(),
        };
        host.info("salesforce sink task started", &[("object", &config.object), ("version", &config.version)]);
        Ok(SalesforceTask { config, spec, shared, clients, host, paused: None })
    }

    fn external_field(&self) -> Option<&str> {
        match &self.config.matching {
            Matching::External(f) => Some(f),
            Matching::RecordId => None,
        }
    }

    /// The HTTP request of a planned request.
    fn request(&self, instance: &str, planned: &Planned) -> Request {
        let base = format!("{instance}/services/data/v{}", self.config.version);
        let object = &self.config.object;
        let records = || -> Value {
            let records: Vec<Value> = planned
                .items
                .iter()
                .map(|item| {
                    let mut fields = item.fields.clone();
                    fields.insert("attributes".into(), json!({"type": object}));
                    Value::Object(fields)
                })
                .collect();
            json!({"allOrNone": false, "records": records})
        };
        let with_body = |method: Method, url: String, body: Value| {
            Request::new(method, url).header("Content-Type", "application/json").body(body.to_string())
        };
        match planned.kind {
            Kind::Insert => with_body(Method::Post, format!("{base}/composite/sobjects"), records()),
            Kind::Update => with_body(Method::Patch, format!("{base}/composite/sobjects"), records()),
            Kind::Upsert => with_body(
                Method::Patch,
                format!("{base}/composite/sobjects/{object}/{}", self.external_field().unwrap_or("Id")),
                records(),
            ),
            Kind::DeleteByIds => {
                let ids: Vec<String> = planned.items.iter().filter_map(|i| i.key.as_deref().map(encode)).collect();
                Request::new(Method::Delete, format!("{base}/composite/sobjects?ids={}&allOrNone=false", ids.join(",")))
            }
            Kind::DeleteByExternalId => {
                let key = planned.items.first().and_then(|i| i.key.as_deref()).unwrap_or_default();
                Request::new(
                    Method::Delete,
                    format!("{base}/sobjects/{object}/{}/{}", self.external_field().unwrap_or("Id"), encode(key)),
                )
            }
        }
    }
}

/// The answer to one request: per item, its errors; or the refusal.
type Answer = Result<(Vec<Vec<ApiError>>, Option<(u64, u64)>), RequestFailure>;

enum RequestFailure {
    Refused(Refusal),
    Other(ConnectorError),
}

fn answer(planned: &Planned, result: Result<connector_kit::http::Response, HttpError>, what: &str) -> Answer {
    match result {
        Ok(response) => {
            let usage = response.header("sforce-limit-info").and_then(plan::limit_info);
            let errors = match planned.kind {
                // 204 No Content: deleted.
                Kind::DeleteByExternalId => vec![Vec::new()],
                _ => {
                    let body = response.json().map_err(|e| {
                        RequestFailure::Other(ConnectorError::fatal(format!("{what}: the answer is not JSON: {e}")))
                    })?;
                    plan::results(&body, planned.items.len())
                        .map_err(|e| RequestFailure::Other(ConnectorError::fatal(format!("{what}: {e}"))))?
                }
            };
            Ok((errors, usage))
        }
        // Already gone: a replayed delete.
        Err(HttpError::Status { status: 404, body, .. })
            if planned.kind == Kind::DeleteByExternalId && body.contains("NOT_FOUND") =>
        {
            Ok((vec![Vec::new()], None))
        }
        Err(HttpError::Status { status, body, .. }) => Err(RequestFailure::Refused(plan::refusal(status, &body))),
        Err(e) => Err(RequestFailure::Other(e.to_connector_error(what, StatusPolicy::SINK))),
    }
}

/// Sends every planned request, at most one per client at a time.
fn send_all(task: &mut SalesforceTask, instance: &str, planned: &[Planned]) -> Vec<Answer> {
    let requests: Vec<Request> = planned.iter().map(|p| task.request(instance, p)).collect();
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..planned.len()).collect());
    let answers: Mutex<Vec<Option<Answer>>> = Mutex::new((0..planned.len()).map(|_| None).collect());
    let object = task.config.object.clone();
    std::thread::scope(|scope| {
        for client in task.clients.iter_mut().take(planned.len().max(1)) {
            let (queue, answers, requests, object) = (&queue, &answers, &requests, &object);
            scope.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(n) = next else { break };
                let what = format!("{:?} of {} {object} rows", planned[n].kind, planned[n].items.len());
                let result = client.send(requests[n].clone());
                let a = answer(&planned[n], result, &what);
                answers.lock().unwrap_or_else(|p| p.into_inner())[n] = Some(a);
            });
        }
    });
    answers
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(RequestFailure::Other(ConnectorError::fatal("a request was not sent")))))
        .collect()
}

impl SalesforceTask {
    fn pause(&mut self, why: String) -> ConnectorError {
        let until = Instant::now() + self.config.limit_probe;
        let message = format!(
            "{why}; the task sends nothing for {} s (salesforce.api.limit.probe.ms), then one request probes \
             the rolling 24-hour window; the batch waits (nothing is lost or committed)",
            self.config.limit_probe.as_secs()
        );
        self.host.warn("salesforce API allocation exhausted: paused", &[("reason", &message)]);
        self.host.gauge("salesforce_sink_paused", "1 while the task waits for the org's API allocation", &[], 1.0);
        self.paused = Some((until, message.clone()));
        ConnectorError::retriable(message)
    }

    fn route(&self, outcome: &mut PutOutcome, records: &[SinkRecord<'_>], item: &Item, verdict: &Verdict) -> usize {
        let (error, why) = match verdict {
            Verdict::Written | Verdict::Again(_) => return 0,
            Verdict::Rejected(why) => (ConnectorError::rejected as fn(String) -> ConnectorError, why),
            Verdict::Bad(why) => (ConnectorError::bad_record as fn(String) -> ConnectorError, why),
        };
        match self.config.on_api_errors {
            OnApiErrors::Ignore => return 0,
            OnApiErrors::Log => {
                self.host.warn("salesforce refused a record (behavior.on.api.errors=log)", &[("error", why)]);
                return 0;
            }
            OnApiErrors::Fail => {}
        }
        let key = item.key.as_deref().unwrap_or("(insert)");
        for &i in &item.records {
            let field = self.spec.key_field();
            outcome.fail(
                i,
                error(format!(
                    "Salesforce refused {} ({} {field}={key}): {why}",
                    records[i].position(),
                    self.config.object
                )),
            );
        }
        item.records.len()
    }
}

impl SinkTask for SalesforceTask {
    fn put(&mut self, records: &[SinkRecord<'_>]) -> Result<PutOutcome, ConnectorError> {
        if let Some((until, why)) = &self.paused {
            if Instant::now() < *until {
                return Err(ConnectorError::retriable(why.clone()));
            }
        }
        let mut outcome = PutOutcome::accepted();
        let mut rows = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match mapping::map_record(&self.spec, record.key(), record.value()) {
                Ok(row) => rows.push((i, row)),
                Err(why) => outcome.fail(
                    i,
                    ConnectorError::bad_record(format!(
                        "cannot map {} to {}: {why}",
                        record.position(),
                        self.config.object
                    )),
                ),
            }
        }
        let mut planned = plan::plan(&rows, self.external_field().is_some(), self.config.batch_size);
        let deadline = Instant::now() + self.config.retry_max.min(MAX_RETRY_IN_PUT);
        let mut backoff = RetryPolicy::default().backoff();
        let (mut written, mut refused) = (0usize, 0usize);
        let mut usage = None;
        while !planned.is_empty() {
            // The token first: its answer names the instance to call.
            let what = format!("getting a token from {}", self.config.login_url);
            self.clients[0].authorization(false).map_err(|e| e.to_connector_error(&what, StatusPolicy::SINK))?;
            let instance = self.shared.instance_url().ok_or_else(|| ConnectorError::fatal("no instance_url"))?;
            let answers = send_all(self, &instance, &planned);
            let mut again = Vec::new();
            for (p, answer) in planned.iter().zip(answers) {
                match answer {
                    Ok((errors, u)) => {
                        usage = u.or(usage);
                        for (item, errors) in p.items.iter().zip(errors) {
                            let v = plan::verdict(&errors, &self.config.rejected_codes);
                            match &v {
                                Verdict::Again(why) => {
                                    self.host.debug("row sent again", &[("error", why)]);
                                    again.push((p.kind, item.clone()));
                                }
                                Verdict::Written => written += item.records.len(),
                                _ => refused += self.route(&mut outcome, records, item, &v),
                            }
                        }
                    }
                    Err(RequestFailure::Refused(Refusal::DailyLimit(why))) => return Err(self.pause(why)),
                    Err(RequestFailure::Refused(Refusal::Rows(why))) => {
                        for item in &p.items {
                            refused += self.route(&mut outcome, records, item, &Verdict::Bad(why.clone()));
                        }
                    }
                    Err(RequestFailure::Refused(Refusal::Transient(why))) => {
                        return Err(ConnectorError::retriable(format!("{}: {why}", self.config.object)))
                    }
                    Err(RequestFailure::Refused(Refusal::Access(why))) => return Err(ConnectorError::fatal(why)),
                    Err(RequestFailure::Refused(Refusal::Fatal(why))) => return Err(ConnectorError::fatal(why)),
                    Err(RequestFailure::Other(e)) => return Err(e),
                }
            }
            if again.is_empty() {
                break;
            }
            let wait = backoff.next_delay(None).unwrap_or(Duration::from_secs(1));
            if Instant::now() + wait > deadline {
                // Upserts make the whole batch safe to send again.
                return Err(ConnectorError::retriable(format!(
                    "{} rows of {} still locked (UNABLE_TO_LOCK_ROW) after request.max.retries.time.ms",
                    again.len(),
                    self.config.object
                )));
            }
            std::thread::sleep(wait);
            planned = plan::replan(again, self.config.batch_size);
        }
        self.host.counter("salesforce_sink_records_total", "Records written to Salesforce", &[], written as f64);
        self.host.counter("salesforce_sink_records_refused_total", "Records Salesforce refused", &[], refused as f64);
        if let Some((used, allocation)) = usage {
            self.host.gauge("salesforce_sink_api_usage", "Sforce-Limit-Info api-usage, used", &[], used as f64);
            if plan::over_share(used, allocation, self.config.limit_share) {
                // This batch is written; the next one waits.
                let _ = self.pause(format!(
                    "the org has used {used} of its {allocation} daily API requests, the connector's share is {} \
                     (salesforce.api.limit.share)",
                    self.config.limit_share
                ));
                return Ok(outcome);
            }
        }
        if self.paused.take().is_some() {
            self.host.info("salesforce API allocation available again: resumed", &[]);
            self.host.gauge("salesforce_sink_paused", "1 while the task waits for the org's API allocation", &[], 0.0);
        }
        Ok(outcome)
    }

    /// Every put wrote synchronously: what was delivered is durable.
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(delivered.to_vec())
    }
}

/// Tokens fetched by the task's clients (for logs and tests).
impl SalesforceTask {
    pub fn tokens_fetched(&self) -> u64 {
        self.shared.fetched()
    }
}
