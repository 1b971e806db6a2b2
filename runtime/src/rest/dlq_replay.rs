//! `POST /connectors/{name}/dlq/replay`: re-produces the records of a
//! connector's dead-letter queue to the topics they came from.
//!
//! What "replayed" means: per DLQ partition and filter, a *cursor* in the
//! cluster's offsets topic (`[REPLAY_KEY, connector, {topic, partition,
//! stage, exception_class}]` → next DLQ offset) says "every record below this
//! offset that matches this filter was re-produced". A run starts at the
//! furthest cursor whose filter covers the request's (an unfiltered cursor
//! covers every filter), reads to the end of each DLQ partition, skips a
//! record that another cursor already covers, and stores its own cursor only
//! after every record it produced was acknowledged (idempotent producer,
//! acks=all). So a replay run twice re-produces nothing the second time, and
//! replaying `stage=A` then everything re-produces the `A` records once. A
//! worker dying between the acknowledgements and the cursor write means the
//! next run produces those records again (at least once, as everywhere else).
//! Two replays of one connector at once are refused (409): on one worker by
//! a set of running replays, across workers by a lease in the offsets topic
//! (`cluster/replay_lease.rs`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use axum::{
    body::Bytes,
    extract::{Path, State},
    Json,
};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Header, Headers, Message, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
    Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{blocking, connectors::spec, ApiError, ApiResult, Shared};
use crate::{cluster::replay_lease::ReplayLease, kafka::wait_delivery, worker::class_and_runtime};

/// A run gives up reading a partition that neither delivers records nor
/// reports its end for this long (the broker is down or stalls a fetch); the
/// answer then says `"complete": false` and the cursor holds what was done.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const ERRORS_PREFIX: &str = "__connect.errors.";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    stage: Option<String>,
    exception_class: Option<String>,
    max_records: Option<u64>,
}

/// A replay position's identity; serialized as the last element of its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    topic: String,
    partition: i32,
    stage: Option<String>,
    exception_class: Option<String>,
}

impl Cursor {
    /// Whether `record`'s stage and class pass this cursor's filter.
    fn matches(&self, stage: Option<&str>, class: Option<&str>) -> bool {
        self.stage.as_deref().is_none_or(|s| Some(s) == stage)
            && self.exception_class.as_deref().is_none_or(|c| Some(c) == class)
    }

    /// Whether every record `other` selects is also selected by `self`.
    fn covers(&self, other: &Cursor) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && (self.stage.is_none() || self.stage == other.stage)
            && (self.exception_class.is_none() || self.exception_class == other.exception_class)
    }
}

/// Connectors with a replay running on this worker.
static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

struct RunningGuard(String);

impl RunningGuard {
    fn claim(name: &str) -> ApiResult<RunningGuard> {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        if !running.insert(name.to_string()) {
            return Err(ApiError::conflict(format!(
                "a DLQ replay of connector {name} is already running on this worker; wait for its answer"
            )));
        }
        Ok(RunningGuard(name.to_string()))
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

pub async fn replay(State(state): State<Shared>, Path(name): Path<String>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "Malformed replay request: {e}; expected a JSON object with the optional keys \"stage\", \
                 \"exception_class\" and \"max_records\""
            ))
        })?
    };
    if request.max_records == Some(0) {
        return Err(ApiError::bad_request("max_records: must be at least 1 (leave it out to replay everything)"));
    }
    blocking(move || {
        let worker = &state.worker;
        let spec = spec(worker, &name)?;
        let (_, runtime) = class_and_runtime(&worker.registry, &spec.config).map_err(ApiError::bad_request)?;
        let Some(dlq) = runtime.dlq_topic else {
            return Err(ApiError::bad_request(format!(
                "Connector {name} has no dead-letter queue (errors.deadletterqueue.topic.name is not set), so there \
                 is nothing to replay; set it (with errors.tolerance=all) to route failed records there"
            )));
        };
        let _guard = RunningGuard::claim(&name)?;
        let lease = match worker.cluster.claim_replay(&name).map_err(ApiError::internal)? {
            Ok(lease) => lease,
            Err(holder) => {
                return Err(ApiError::conflict(format!(
                    "a DLQ replay of connector {name} is running on worker {} (its claim lasts until {} ms since \
                     the epoch unless renewed); wait for its answer, then replay again to go on",
                    holder.worker, holder.until_ms
                )))
            }
        };
        run(worker, &name, &dlq, &request, &lease).map(Json)
    })
    .await
}

/// The `__connect.errors.*` context of a DLQ record and its other headers.
struct Context {
    topic: Option<String>,
    partition: Option<i32>,
    stage: Option<String>,
    class: Option<String>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn context<M: Message>(message: &M) -> Context {
    let mut c = Context { topic: None, partition: None, stage: None, class: None, headers: Vec::new() };
    let Some(headers) = message.headers() else { return c };
    for h in headers.iter() {
        let text = || h.value.map(|v| String::from_utf8_lossy(v).to_string());
        match h.key {
            "__connect.errors.topic" => c.topic = text(),
            "__connect.errors.partition" => c.partition = text().and_then(|p| p.parse().ok()),
            "__connect.errors.stage" => c.stage = text(),
            "__connect.errors.exception.class.name" => c.class = text(),
            key if key.starts_with(ERRORS_PREFIX) => {}
            key => c.headers.push((key.to_string(), h.value.map(<[u8]>::to_vec))),
        }
    }
    c
}

#[derive(Default)]
struct Counts {
    replayed: u64,
    by_filter: u64,
    already: u64,
    without_origin: u64,
}

fn run(
    worker: &crate::worker::Worker,
    name: &str,
    dlq: &str,
    request: &ReplayRequest,
    lease: &ReplayLease<'_>,
) -> ApiResult<Value> {
    let kafka = worker.cluster.kafka();
    let consumer: BaseConsumer = kafka
        .consumer(&format!("connect-{name}-dlq-replay"))
        // The end of each partition is where the broker reports EOF (never a
        // ListOffsets answer: not every broker gives it per record).
        .set("enable.partition.eof", "true")
        .create()
        .map_err(ApiError::internal)?;
    let metadata = consumer.fetch_metadata(Some(dlq), Duration::from_secs(10)).map_err(ApiError::internal)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == dlq && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();

    let stored: Vec<(Cursor, i64)> = lease
        .positions
        .iter()
        .filter_map(|(cursor, next)| Some((serde_json::from_str(cursor).ok()?, next.trim().parse().ok()?)))
        .collect();
    let cursor_of = |partition: i32| Cursor {
        topic: dlq.to_string(),
        partition,
        stage: request.stage.clone(),
        exception_class: request.exception_class.clone(),
    };
    // Start at the furthest stored cursor that covers this run's filter.
    let mut from: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let mine = cursor_of(p);
        let start = stored.iter().filter(|(c, _)| c.covers(&mine)).map(|(_, next)| *next).max().unwrap_or(0);
        from.insert(p, start);
        let offset = if start > 0 { Offset::Offset(start) } else { Offset::Beginning };
        tpl.add_partition_offset(dlq, p, offset).map_err(ApiError::internal)?;
    }
    let mut to = from.clone();
    let mut counts = Counts::default();
    let mut complete = true;
    let mut deliveries = Vec::new();
    let mut blocked: Option<String> = None;
    // Lives until every delivery below is awaited: dropping a producer
    // purges what it has not sent yet.
    let producer: FutureProducer = kafka.producer().create().map_err(ApiError::internal)?;
    if !partitions.is_empty() {
        consumer.assign(&tpl).map_err(ApiError::internal)?;
        let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
        let mut origin_partitions: HashMap<String, Option<i32>> = HashMap::new();
        let mut last_progress = Instant::now();
        let limit = request.max_records.unwrap_or(u64::MAX);
        while !open.is_empty() && counts.replayed < limit {
            lease.check().map_err(ApiError::internal)?;
            if last_progress.elapsed() > IDLE_TIMEOUT {
                tracing::warn!(connector = name, dlq, "DLQ replay: no progress for {IDLE_TIMEOUT:?}; stopping early");
                complete = false;
                break;
            }
            let message = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                    last_progress = Instant::now();
                    continue;
                }
                Some(Err(e)) => return Err(ApiError::internal(format!("reading the DLQ {dlq}: {e}"))),
                Some(Ok(m)) => m,
            };
            last_progress = Instant::now();
            let (p, offset) = (message.partition(), message.offset());
            if !open.contains(&p) {
                continue;
            }
            let c = context(&message);
            let (stage, class) = (c.stage.as_deref(), c.class.as_deref());
            if !cursor_of(p).matches(stage, class) {
                counts.by_filter += 1;
                to.insert(p, offset + 1);
                continue;
            }
            if stored
                .iter()
                .any(|(s, next)| s.topic == dlq && s.partition == p && offset < *next && s.matches(stage, class))
            {
                counts.already += 1;
                to.insert(p, offset + 1);
                continue;
            }
            let Some(topic) = c.topic else {
                // Written without errors.deadletterqueue.context.headers.enable:
                // nothing says where it came from.
                counts.without_origin += 1;
                to.insert(p, offset + 1);
                continue;
            };
            let partition = match origin_partitions.get(&topic) {
                Some(known) => *known,
                None => {
                    let count = partition_count(&consumer, &topic).map_err(ApiError::internal)?;
                    origin_partitions.insert(topic.clone(), count);
                    count
                }
            };
            let Some(count) = partition else {
                // Stop before this record: its cursor stays here, so a later
                // run (once the topic exists) replays it.
                blocked = Some(format!(
                    "the DLQ record at {dlq} partition {p} offset {offset} comes from topic {topic}, which does not \
                     exist: create it, or replay with a stage/exception_class filter that leaves that record out"
                ));
                break;
            };
            let mut headers = OwnedHeaders::new();
            for (key, value) in &c.headers {
                headers = headers.insert(Header { key, value: value.as_deref() });
            }
            let mut out = FutureRecord::to(&topic).headers(headers);
            // The original partition when it still exists; otherwise the
            // producer's partitioner picks one by key.
            if let Some(original) = c.partition.filter(|o| (0..count).contains(o)) {
                out = out.partition(original);
            }
            if let Some(k) = message.key() {
                out = out.key(k);
            }
            if let Some(v) = message.payload() {
                out = out.payload(v);
            }
            let delivery = loop {
                match producer.send_result(out) {
                    Ok(d) => break d,
                    Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        // The local queue is full: let librdkafka drain it.
                        std::thread::sleep(Duration::from_millis(5));
                        out = back;
                    }
                    Err((e, _)) => {
                        return Err(ApiError::internal(format!(
                            "queueing the DLQ record at {dlq} partition {p} offset {offset} to {topic}: {e}; \
                             no replay position was stored, so a retry replays it again"
                        )))
                    }
                }
            };
            deliveries.push((p, offset, topic, delivery));
            counts.replayed += 1;
            to.insert(p, offset + 1);
        }
    }
    for (p, offset, topic, delivery) in deliveries {
        lease.check().map_err(ApiError::internal)?;
        wait_delivery(delivery).map_err(|e| {
            ApiError::internal(format!(
                "replaying the DLQ record at {dlq} partition {p} offset {offset} to {topic}: {e}; no replay \
                 position was stored, so a retry replays the records of this run again"
            ))
        })?;
    }
    let positions: Vec<(String, i64)> = to
        .iter()
        .filter(|(p, next)| from.get(p) != Some(next))
        .map(|(p, next)| serde_json::to_string(&cursor_of(*p)).map(|c| (c, *next)))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    worker.cluster.write_replay_positions(name, &positions).map_err(|e| {
        ApiError::internal(anyhow!(
            "{} records were replayed but storing the replay position failed ({e}); a retry replays them again",
            counts.replayed
        ))
    })?;
    if let Some(message) = blocked {
        return Err(ApiError::conflict(format!(
            "{message}; {} records before it were replayed and the position stored",
            counts.replayed
        )));
    }
    let offsets = |m: &BTreeMap<i32, i64>| -> Value { m.iter().map(|(p, o)| (p.to_string(), json!(o))).collect() };
    Ok(json!({
        "topic": dlq,
        "replayed": counts.replayed,
        "skipped": counts.by_filter + counts.already + counts.without_origin,
        "skipped_by_filter": counts.by_filter,
        "skipped_already_replayed": counts.already,
        "skipped_without_origin": counts.without_origin,
        "complete": complete && counts.replayed < request.max_records.unwrap_or(u64::MAX),
        "from": offsets(&from),
        "to": offsets(&to),
    }))
}

/// The partition count of `topic`, `None` when it does not exist.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Option<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0))
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    fn cursor(stage: Option<&str>, class: Option<&str>) -> Cursor {
        Cursor {
            topic: "dlq".into(),
            partition: 0,
            stage: stage.map(String::from),
            exception_class: class.map(String::from),
        }
    }

    #[test]
    fn an_unfiltered_cursor_covers_every_filter_and_a_filter_only_itself() {
        let all = cursor(None, None);
        let put = cursor(Some("TASK_PUT"), None);
        let put_bad = cursor(Some("TASK_PUT"), Some("BadRecord"));
        assert!(all.covers(&put) && all.covers(&put_bad) && put.covers(&put_bad));
        assert!(!put.covers(&all) && !put_bad.covers(&put));
        assert!(!put.covers(&cursor(Some("TRANSFORMATION"), None)));
        let mut other_partition = put.clone();
        other_partition.partition = 1;
        assert!(!all.covers(&other_partition));
    }

    #[test]
    fn a_filter_matches_on_stage_and_class() {
        let put = cursor(Some("TASK_PUT"), None);
        assert!(put.matches(Some("TASK_PUT"), Some("BadRecord")));
        assert!(!put.matches(Some("TRANSFORMATION"), Some("BadRecord")));
        assert!(!put.matches(None, None));
        assert!(cursor(None, None).matches(None, None));
        assert!(!cursor(None, Some("Retriable")).matches(Some("TASK_PUT"), Some("BadRecord")));
    }
}
