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

mod plan;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use axum::{
    body::Bytes,
    extract::{Path, State},
    Json,
};
use plan::{Cursor, Decision, Progress};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
    Offset, TopicPartitionList,
};
use serde::Deserialize;
use serde_json::Value;

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

/// Headers the worker added when it routed the record, dropped on replay:
/// Kafka Connect's context and the sink's error details (`dlq.rs`).
fn is_error_context(key: &str) -> bool {
    key.starts_with(ERRORS_PREFIX) || key.starts_with(crate::pipeline::dlq::TARGET_HEADER_PREFIX)
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
            key if is_error_context(key) => {}
            key => c.headers.push((key.to_string(), h.value.map(<[u8]>::to_vec))),
        }
    }
    c
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
    let stored = plan::stored_positions(&lease.positions);
    let cursor_of = |partition: i32| Cursor {
        topic: dlq.to_string(),
        partition,
        stage: request.stage.clone(),
        exception_class: request.exception_class.clone(),
    };
    let from = plan::start_offsets(&partitions, &stored, cursor_of);
    let mut tpl = TopicPartitionList::new();
    for (&p, &start) in &from {
        let offset = if start > 0 { Offset::Offset(start) } else { Offset::Beginning };
        tpl.add_partition_offset(dlq, p, offset).map_err(ApiError::internal)?;
    }
    // Lives until every delivery below is awaited: dropping a producer
    // purges what it has not sent yet.
    let producer: FutureProducer = kafka.producer().create().map_err(ApiError::internal)?;
    let mut replay = Replay {
        consumer: &consumer,
        producer: &producer,
        dlq,
        stored: &stored,
        cursor_of: &cursor_of,
        progress: Progress::new(from),
        deliveries: Vec::new(),
        origin_partitions: HashMap::new(),
    };
    let (read_to_end, blocked) = if partitions.is_empty() {
        (true, None)
    } else {
        consumer.assign(&tpl).map_err(ApiError::internal)?;
        replay.read(name, &partitions, request.max_records.unwrap_or(u64::MAX), lease)?
    };
    let Replay { deliveries, progress, .. } = replay;
    for (p, offset, topic, delivery) in deliveries {
        lease.check().map_err(ApiError::internal)?;
        wait_delivery(delivery).map_err(|e| {
            ApiError::internal(format!(
                "replaying the DLQ record at {dlq} partition {p} offset {offset} to {topic}: {e}; no replay \
                 position was stored, so a retry replays the records of this run again"
            ))
        })?;
    }
    store_positions(worker, name, &progress, cursor_of)?;
    if let Some(message) = blocked {
        return Err(ApiError::conflict(format!(
            "{message}; {} records before it were replayed and the position stored",
            progress.counts.replayed
        )));
    }
    Ok(progress.answer(dlq, read_to_end, request.max_records))
}

/// Invariant 8: called only once every record the run produced was acknowledged.
fn store_positions(
    worker: &crate::worker::Worker,
    name: &str,
    progress: &Progress,
    cursor_of: impl Fn(i32) -> Cursor,
) -> ApiResult<()> {
    let positions: Vec<(String, i64)> = progress
        .positions(cursor_of)
        .into_iter()
        .map(|(cursor, next)| serde_json::to_string(&cursor).map(|c| (c, next)))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;
    worker.cluster.write_replay_positions(name, &positions).map_err(|e| {
        ApiError::internal(anyhow!(
            "{} records were replayed but storing the replay position failed ({e}); a retry replays them again",
            progress.counts.replayed
        ))
    })
}

/// A delivery queued by a run: DLQ partition, DLQ offset, topic, future.
type Queued = (i32, i64, String, DeliveryFuture);

/// One run reading the DLQ and queueing what it replays.
struct Replay<'a, F: Fn(i32) -> Cursor> {
    consumer: &'a BaseConsumer,
    producer: &'a FutureProducer,
    dlq: &'a str,
    stored: &'a [(Cursor, i64)],
    cursor_of: &'a F,
    progress: Progress,
    deliveries: Vec<Queued>,
    /// Partition counts of the origin topics (`None`: the topic does not exist).
    origin_partitions: HashMap<String, Option<i32>>,
}

impl<F: Fn(i32) -> Cursor> Replay<'_, F> {
    /// Reads every partition to its end (or `limit` records replayed, or no
    /// progress for [`IDLE_TIMEOUT`]): whether it read to the end, and why
    /// it stopped before a record it cannot replay.
    fn read(
        &mut self,
        name: &str,
        partitions: &[i32],
        limit: u64,
        lease: &ReplayLease<'_>,
    ) -> ApiResult<(bool, Option<String>)> {
        let dlq = self.dlq;
        let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
        let mut last_progress = Instant::now();
        while !open.is_empty() && self.progress.counts.replayed < limit {
            lease.check().map_err(ApiError::internal)?;
            if last_progress.elapsed() > IDLE_TIMEOUT {
                tracing::warn!(connector = name, dlq, "DLQ replay: no progress for {IDLE_TIMEOUT:?}; stopping early");
                return Ok((false, None));
            }
            let message = match self.consumer.poll(Duration::from_millis(200)) {
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
            if !open.contains(&message.partition()) {
                continue;
            }
            if let Some(blocked) = self.one(&message)? {
                return Ok((true, Some(blocked)));
            }
        }
        Ok((true, None))
    }

    /// Decides on one DLQ record and queues it if it is replayed; `Some`:
    /// its origin topic does not exist, and the run stops before it.
    fn one(&mut self, message: &BorrowedMessage<'_>) -> ApiResult<Option<String>> {
        let (dlq, p, offset) = (self.dlq, message.partition(), message.offset());
        let c = context(message);
        let (stage, class) = (c.stage.as_deref(), c.class.as_deref());
        let decision = plan::decide(&(self.cursor_of)(p), self.stored, offset, stage, class, c.topic.is_some());
        let (Decision::Replay, Some(topic)) = (&decision, c.topic) else {
            self.progress.passed(p, offset, &decision);
            return Ok(None);
        };
        let partition = match self.origin_partitions.get(&topic) {
            Some(known) => *known,
            None => {
                let count = partition_count(self.consumer, &topic).map_err(ApiError::internal)?;
                self.origin_partitions.insert(topic.clone(), count);
                count
            }
        };
        let Some(count) = partition else {
            // Stop before this record: its cursor stays here, so a later
            // run (once the topic exists) replays it.
            return Ok(Some(format!(
                "the DLQ record at {dlq} partition {p} offset {offset} comes from topic {topic}, which does not \
                 exist: create it, or replay with a stage/exception_class filter that leaves that record out"
            )));
        };
        let mut headers = OwnedHeaders::new();
        for (key, value) in &c.headers {
            headers = headers.insert(Header { key, value: value.as_deref() });
        }
        let mut out = FutureRecord::to(&topic).headers(headers);
        if let Some(original) = plan::target_partition(c.partition, count) {
            out = out.partition(original);
        }
        if let Some(k) = message.key() {
            out = out.key(k);
        }
        if let Some(v) = message.payload() {
            out = out.payload(v);
        }
        let delivery = send(self.producer, out).map_err(|e| {
            ApiError::internal(format!(
                "queueing the DLQ record at {dlq} partition {p} offset {offset} to {topic}: {e}; \
                 no replay position was stored, so a retry replays it again"
            ))
        })?;
        self.deliveries.push((p, offset, topic, delivery));
        self.progress.passed(p, offset, &decision);
        Ok(None)
    }
}

/// Queues `out`, waiting while librdkafka's local queue is full.
fn send(producer: &FutureProducer, mut out: FutureRecord<'_, [u8], [u8]>) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(out) {
            Ok(d) => return Ok(d),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                // The local queue is full: let librdkafka drain it.
                std::thread::sleep(Duration::from_millis(5));
                out = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
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
    #[test]
    fn a_replay_drops_the_routing_headers_and_keeps_the_records_own() {
        for key in ["__connect.errors.offset", "__sluice.errors.target.code", "__sluice.errors.target.fields"] {
            assert!(super::is_error_context(key), "{key}");
        }
        for key in ["trace-id", "__sluice.source.offset", "__connect.other"] {
            assert!(!super::is_error_context(key), "{key}");
        }
    }
}
