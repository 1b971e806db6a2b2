//! The Sales Cloud task: each put is written synchronously through sObject
//! Collections, several requests in flight, and returns once every row has
//! an answer. Nothing is buffered across puts, so `pre_commit` reports what
//! the worker delivered: an offset is never committed past a request whose
//! answer was not received.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
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
    bulk,
    config::{Matching, OnApiErrors, SalesforceConfig},
    mapping::{self, Op, Row, Spec},
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
    context: SinkContext,
    /// Bulk jobs (of an earlier run, or left running by a put that stopped
    /// waiting) that must finish before anything newer is sent.
    pending_jobs: BTreeSet<String>,
}

impl SalesforceTask {
    pub fn new(config: &ConnectorConfig, host: Host, context: SinkContext) -> Result<SalesforceTask, ConnectorError> {
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
        Ok(SalesforceTask { config, spec, shared, clients, host, paused: None, context, pending_jobs: BTreeSet::new() })
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

/// What a write did: rows written, records refused, the last API usage
/// (`Sforce-Limit-Info`) seen.
type Written = (usize, usize, Option<(u64, u64)>);

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
        let probe_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d + self.config.limit_probe).as_secs())
            .unwrap_or(0);
        self.context.report_status(Some(&plan::pause_status(probe_at, &why)));
        self.paused = Some((until, message.clone()));
        ConnectorError::retriable(message)
    }

    /// Fails `item`'s records per `verdict`, with the details of `errors`
    /// (the row's errors; none for a refusal of the whole request).
    fn route(
        &self,
        outcome: &mut PutOutcome,
        records: &[SinkRecord<'_>],
        item: &Item,
        verdict: &Verdict,
        errors: &[ApiError],
    ) -> usize {
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
        let details = plan::error_details(errors);
        let details: Vec<(&str, &str)> = details.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for &i in &item.records {
            let field = self.spec.key_field();
            outcome.fail_with_details(
                i,
                error(format!(
                    "Salesforce refused {} ({} {field}={key}): {why}",
                    records[i].position(),
                    self.config.object
                )),
                &details,
            );
        }
        item.records.len()
    }
}

impl SinkTask for SalesforceTask {
    /// Jobs an earlier owner of these partitions recorded are awaited
    /// before the first put sends anything.
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        for tp in partitions {
            if let Some(note) = self.context.note(tp) {
                let jobs = bulk::jobs_in(&note);
                if !jobs.is_empty() {
                    self.host.info("a Bulk job of an earlier run is awaited before sending", &[("jobs", &note)]);
                }
                self.pending_jobs.extend(jobs);
            }
        }
        Ok(())
    }

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
        self.await_pending_jobs()?;
        let bulk = self.config.bulk_threshold > 0
            && rows.len() >= self.config.bulk_threshold
            && self.external_field().is_some()
            && rows.iter().all(|(_, r)| r.op == Op::Upsert);
        let (written, refused, usage) = if bulk {
            self.bulk_put(records, &rows, &mut outcome)?
        } else {
            let planned = plan::plan(&rows, self.external_field().is_some(), self.config.batch_size);
            self.write_collections(records, planned, &mut outcome)?
        };
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
            self.context.report_status(None);
            self.host.gauge("salesforce_sink_paused", "1 while the task waits for the org's API allocation", &[], 0.0);
        }
        Ok(outcome)
    }

    /// Every put wrote synchronously: what was delivered is durable.
    fn pre_commit(&mut self, delivered: &[TopicPartitionOffset]) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        Ok(delivered.to_vec())
    }
}

impl SalesforceTask {
    /// Writes `planned` through sObject Collections, sending locked rows
    /// again: (rows written, records refused, the last API usage seen).
    fn write_collections(
        &mut self,
        records: &[SinkRecord<'_>],
        mut planned: Vec<Planned>,
        outcome: &mut PutOutcome,
    ) -> Result<Written, ConnectorError> {
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
                                _ => refused += self.route(outcome, records, item, &v, &errors),
                            }
                        }
                    }
                    Err(RequestFailure::Refused(Refusal::DailyLimit(why))) => return Err(self.pause(why)),
                    Err(RequestFailure::Refused(Refusal::Rows(why))) => {
                        for item in &p.items {
                            refused += self.route(outcome, records, item, &Verdict::Bad(why.clone()), &[]);
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
        Ok((written, refused, usage))
    }
}

/// Bulk API 2.0 (ingest jobs) and the jobs of earlier runs.
impl SalesforceTask {
    fn base(&mut self) -> Result<String, ConnectorError> {
        let what = format!("getting a token from {}", self.config.login_url);
        self.clients[0].authorization(false).map_err(|e| e.to_connector_error(&what, StatusPolicy::SINK))?;
        let instance = self.shared.instance_url().ok_or_else(|| ConnectorError::fatal("no instance_url"))?;
        Ok(format!("{instance}/services/data/v{}", self.config.version))
    }

    /// One call of the Bulk API; a refusal as the task must act on it.
    fn bulk_call(&mut self, request: Request) -> Result<connector_kit::http::Response, ConnectorError> {
        let what = format!("{:?} {}", request.method, request.url);
        match self.clients[0].send(request) {
            Ok(r) => Ok(r),
            Err(HttpError::Status { status, body, .. }) => Err(match plan::refusal(status, &body) {
                Refusal::DailyLimit(why) => self.pause(why),
                Refusal::Transient(why) => ConnectorError::retriable(format!("{what}: {why}")),
                Refusal::Rows(why) | Refusal::Access(why) | Refusal::Fatal(why) => {
                    ConnectorError::fatal(format!("{what}: {why}"))
                }
            }),
            Err(e) => Err(e.to_connector_error(&what, StatusPolicy::SOURCE)),
        }
    }

    /// Polls job `id` until it no longer runs, or `wait` passed (None).
    fn await_job(&mut self, base: &str, id: &str, wait: Duration) -> Result<Option<Value>, ConnectorError> {
        let deadline = Instant::now() + wait;
        loop {
            let url = format!("{base}/jobs/ingest/{id}");
            let info = match self.clients[0].send(Request::get(url.clone())) {
                // Salesforce deletes job records after seven days: a job it
                // no longer knows cannot write any more.
                Err(HttpError::Status { status: 404, .. }) => return Ok(Some(json!({"state": "Deleted"}))),
                _ => self.bulk_call(Request::get(url))?,
            };
            let info = info.json().map_err(|e| ConnectorError::fatal(format!("job {id}: not JSON: {e}")))?;
            let state = info["state"].as_str().unwrap_or("").to_string();
            if !bulk::unfinished(&state) {
                return Ok(Some(info));
            }
            if Instant::now() + self.config.bulk_poll > deadline {
                return Ok(None);
            }
            std::thread::sleep(self.config.bulk_poll);
        }
    }

    /// Jobs named in the notes of partitions this task took, or left
    /// running by an earlier put: each must finish before anything newer is
    /// sent (an older version must not land after a newer one).
    fn await_pending_jobs(&mut self) -> Result<(), ConnectorError> {
        if self.pending_jobs.is_empty() {
            return Ok(());
        }
        let base = self.base()?;
        let wait = self.config.retry_max.min(MAX_RETRY_IN_PUT);
        for id in self.pending_jobs.clone() {
            match self.await_job(&base, &id, wait)? {
                Some(_) => {
                    self.pending_jobs.remove(&id);
                }
                None => {
                    return Err(ConnectorError::retriable(format!(
                        "waiting for Bulk API 2.0 job {id} (sent earlier) to finish before sending newer versions"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Upserts `rows` through one Bulk API 2.0 ingest job: create, upload
    /// the CSV, record the job id in the partitions' notes, close, poll,
    /// read the failed results.
    fn bulk_put(
        &mut self,
        records: &[SinkRecord<'_>],
        rows: &[(usize, Row)],
        outcome: &mut PutOutcome,
    ) -> Result<Written, ConnectorError> {
        let items: Vec<Item> = plan::plan(rows, true, usize::MAX).into_iter().flat_map(|p| p.items).collect();
        let ext = self.external_field().unwrap_or("Id").to_string();
        let base = self.base()?;
        // The org's 24-hour Bulk allocation (batches of ≤ 10,000 records,
        // shared with Bulk API 1.0 and every other client): a job that would
        // pass the connector's share goes through sObject Collections instead.
        let limits = self.bulk_call(Request::get(format!("{base}/limits")))?;
        let limits = limits.json().map_err(|e| ConnectorError::fatal(format!("GET /limits: not JSON: {e}")))?;
        if let bulk::BulkPace::Collections { reason } = bulk::pace(&limits, self.config.limit_share, items.len()) {
            self.host.warn("writing through sObject Collections instead of a Bulk API 2.0 job", &[("why", &reason)]);
            let planned = plan::replan(items.into_iter().map(|i| (Kind::Upsert, i)).collect(), self.config.batch_size);
            return self.write_collections(records, planned, outcome);
        }
        let create = json!({"object": self.config.object, "externalIdFieldName": ext, "contentType": "CSV",
                            "operation": "upsert", "lineEnding": "LF", "columnDelimiter": "COMMA"});
        let created = self.bulk_call(
            Request::post(format!("{base}/jobs/ingest"), create.to_string()).header("Content-Type", "application/json"),
        )?;
        let created = created.json().map_err(|e| ConnectorError::fatal(format!("creating a job: not JSON: {e}")))?;
        let Some(id) = created["id"].as_str().map(str::to_string) else {
            return Err(ConnectorError::fatal(format!("creating a job: no id in {created}")));
        };
        let fields: Vec<&serde_json::Map<String, Value>> = items.iter().map(|i| &i.fields).collect();
        let upload = Request::new(Method::Put, format!("{base}/jobs/ingest/{id}/batches"))
            .header("Content-Type", "text/csv")
            .body(bulk::csv(&fields));
        self.bulk_call(upload)?;
        // Durable before the job can run: a later owner of these partitions
        // finds the job and waits for it.
        let partitions: BTreeSet<TopicPartition> =
            records.iter().map(|r| TopicPartition::new(r.topic(), r.partition())).collect();
        let note = bulk::note(&[id.clone()].into());
        for tp in &partitions {
            self.context.commit_note(tp, &note)?;
        }
        let close = Request::new(Method::Patch, format!("{base}/jobs/ingest/{id}"))
            .header("Content-Type", "application/json")
            .body(json!({"state": "UploadComplete"}).to_string());
        self.bulk_call(close)?;
        self.host.info("bulk job closed", &[("job", &id), ("rows", &items.len().to_string())]);
        let Some(info) = self.await_job(&base, &id, self.config.retry_max.min(MAX_RETRY_IN_PUT))? else {
            self.pending_jobs.insert(id.clone());
            return Err(ConnectorError::retriable(format!(
                "Bulk API 2.0 job {id} still running; the batch waits for it"
            )));
        };
        match info["state"].as_str().unwrap_or("") {
            "JobComplete" => {}
            "Aborted" => return Err(ConnectorError::retriable(format!("Bulk API 2.0 job {id} was aborted"))),
            state => {
                return Err(ConnectorError::fatal(format!(
                    "Bulk API 2.0 job {id} ended {state}: {}",
                    info["errorMessage"].as_str().unwrap_or("")
                )))
            }
        }
        let failed = self.bulk_call(Request::get(format!("{base}/jobs/ingest/{id}/failedResults")))?;
        let (header, failed_rows) = bulk::parse_csv(&failed.text());
        let column = |name: &str| header.iter().position(|h| h == name);
        let (Some(error_at), Some(key_at)) = (column("sf__Error"), column(&ext)) else {
            return Err(ConnectorError::fatal(format!("job {id}: failedResults lacks sf__Error or {ext}")));
        };
        let errors: HashMap<&str, &str> =
            failed_rows.iter().filter_map(|r| Some((r.get(key_at)?.as_str(), r.get(error_at)?.as_str()))).collect();
        let (mut written, mut refused) = (0, 0);
        let mut again = Vec::new();
        for item in &items {
            let Some(text) = item.key.as_deref().and_then(|k| errors.get(k)) else {
                written += item.records.len();
                continue;
            };
            let errors = [bulk::bulk_error(text)];
            match plan::verdict(&errors, &self.config.rejected_codes) {
                Verdict::Again(_) => again.push((Kind::Upsert, item.clone())),
                v => refused += self.route(outcome, records, item, &v, &errors),
            }
        }
        if !again.is_empty() {
            let (w, r, _) = self.write_collections(records, plan::replan(again, self.config.batch_size), outcome)?;
            written += w;
            refused += r;
        }
        Ok((written, refused, None))
    }
}

/// Tokens fetched by the task's clients (for logs and tests).
impl SalesforceTask {
    pub fn tokens_fetched(&self) -> u64 {
        self.shared.fetched()
    }
}
