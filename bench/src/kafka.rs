//! The Kafka side: topics, producing the data set, the consume ceiling and
//! the committed offsets of the sink's group.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, bail, Context};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::Message,
    producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer},
    ClientContext, Offset, TopicPartitionList,
};
use sluice_runtime::kafka::KafkaSettings;

use crate::data;

pub const PARTITIONS: i32 = 8;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The settings the worker gives its sink consumers (as `tests/` starts
/// workers: a 6 s session so Tansu's group join takes ~3 s; the worker's
/// default fetch wait of 10 ms).
pub fn worker_settings(bootstrap: &str) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: bootstrap.to_string(),
        properties: Vec::new(),
        session_timeout_ms: 6000,
        fetch_wait_max_ms: 10,
        ..KafkaSettings::default()
    }
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .with_context(|| format!("creating a Kafka admin client for {bootstrap}"))
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
        .with_context(|| format!("creating topic {name}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => bail!("creating topic {t}: {code}"),
        }
    }
    Ok(())
}

/// Best effort: the memory broker keeps every byte until a topic is deleted.
pub fn delete_topics(bootstrap: &str, names: &[String]) {
    let Ok(admin) = admin(bootstrap) else { return };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    match futures::executor::block_on(admin.delete_topics(&refs, &opts)) {
        Ok(results) => {
            for r in results {
                if let Err((t, code)) = r {
                    eprintln!("[bench] could not delete topic {t}: {code}");
                }
            }
        }
        Err(e) => eprintln!("[bench] could not delete topics {names:?}: {e}"),
    }
}

/// Delivery reports: acknowledged count, errors, and per partition the
/// highest offset (the end of each partition, from the producer's side:
/// ListOffsets cannot be trusted on Tansu) and, when asked, every record's
/// (offset, timestamp).
#[derive(Default)]
pub struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    ends: Mutex<Vec<i64>>,
    keep_times: bool,
    times: Mutex<Vec<Vec<(i64, i64)>>>,
}

pub struct Reports(Arc<Deliveries>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                let (p, o) = (m.partition() as usize, m.offset());
                if let Ok(mut ends) = self.0.ends.lock() {
                    if ends.len() <= p {
                        ends.resize(p + 1, 0);
                    }
                    ends[p] = ends[p].max(o + 1);
                }
                if self.0.keep_times {
                    if let (Ok(mut t), Some(ts)) = (self.0.times.lock(), m.timestamp().to_millis()) {
                        if t.len() <= p {
                            t.resize(p + 1, Vec::new());
                        }
                        t[p].push((o, ts));
                    }
                }
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.0.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

pub struct Producing {
    producer: ThreadedProducer<Reports>,
    reports: Arc<Deliveries>,
    topic: String,
    size: usize,
    line: String,
    pub sent: u64,
    pub bytes: u64,
}

pub struct Produced {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Next offset per partition (the end the sink must commit).
    pub ends: Vec<i64>,
    /// Per partition, (offset, timestamp ms) of every record, when kept.
    pub times: Vec<Vec<(i64, i64)>>,
}

impl Producing {
    pub fn new(bootstrap: &str, topic: &str, size: usize, keep_times: bool) -> anyhow::Result<Self> {
        let reports = Arc::new(Deliveries { keep_times, ..Default::default() });
        // As fast as the broker takes them: large batches, a little linger,
        // and the worker's own delivery guarantees (idempotent, acks=all).
        let producer: ThreadedProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("queue.buffering.max.messages", "500000")
            .create_with_context(Reports(reports.clone()))
            .context("creating the producer")?;
        Ok(Producing { producer, reports, topic: topic.to_string(), size, line: String::new(), sent: 0, bytes: 0 })
    }

    /// Queues order `seq` to `partition` with `timestamp` (ms), waiting while
    /// librdkafka's queue is full.
    pub fn send(&mut self, seq: u64, partition: i32, timestamp: i64) -> anyhow::Result<()> {
        data::order(seq, self.size, timestamp, &mut self.line);
        let key = format!("ORD-{seq:012}");
        loop {
            let record = BaseRecord::to(&self.topic)
                .partition(partition)
                .key(key.as_str())
                .payload(self.line.as_str())
                .timestamp(timestamp);
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(anyhow!("queueing a record to {}: {e}", self.topic)),
            }
        }
        self.sent += 1;
        self.bytes += self.line.len() as u64;
        Ok(())
    }

    /// Queues `value` under `key` to `partition`, timestamped now, waiting
    /// while librdkafka's queue is full (data sets other than orders).
    pub fn send_value(&mut self, partition: i32, key: &str, value: &str) -> anyhow::Result<()> {
        loop {
            let record = BaseRecord::to(&self.topic).partition(partition).key(key).payload(value).timestamp(now_ms());
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(anyhow!("queueing a record to {}: {e}", self.topic)),
            }
        }
        self.sent += 1;
        self.bytes += value.len() as u64;
        Ok(())
    }

    /// Waits until everything queued so far is acknowledged.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.producer.flush(Duration::from_secs(60)).context("flushing the producer")
    }

    pub fn acked(&self) -> u64 {
        self.reports.acked.load(Ordering::Relaxed)
    }

    /// Waits for every acknowledgement.
    pub fn finish(self, started: Instant) -> anyhow::Result<Produced> {
        self.producer.flush(Duration::from_secs(300)).context("flushing the producer")?;
        let seconds = started.elapsed().as_secs_f64();
        let failed = self.reports.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self.reports.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
            bail!("{failed} records were not acknowledged; first error: {first}");
        }
        let acked = self.acked();
        if acked != self.sent {
            bail!("{} records sent but {acked} acknowledged", self.sent);
        }
        let mut ends = self.reports.ends.lock().map(|e| e.clone()).unwrap_or_default();
        ends.resize(PARTITIONS as usize, 0);
        let mut times = self.reports.times.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        times.resize(PARTITIONS as usize, Vec::new());
        for t in &mut times {
            t.sort_unstable();
        }
        Ok(Produced { records: self.sent, bytes: self.bytes, seconds, ends, times })
    }
}

/// Produces `count` records round-robin over the partitions, each partition
/// getting exactly `count / PARTITIONS` (the caller makes `count` a multiple).
pub fn produce_all(bootstrap: &str, topic: &str, count: u64, size: usize) -> anyhow::Result<Produced> {
    let mut p = Producing::new(bootstrap, topic, size, false)?;
    let started = Instant::now();
    let mut last = Instant::now();
    for seq in 0..count {
        p.send(seq, (seq % PARTITIONS as u64) as i32, now_ms())?;
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            eprintln!("[bench]   produced {} of {count} ({} acknowledged)", p.sent, p.acked());
        }
    }
    p.finish(started)
}

pub struct Consumed {
    pub records: u64,
    pub bytes: u64,
    /// From subscribe to the last record (group join included, as for sluice).
    pub seconds: f64,
    /// From the first record to the last (steady state).
    pub seconds_after_first: f64,
}

/// The consume ceiling: a plain consumer with the sink's consumer settings
/// (same group protocol) reads every record and drops it.
pub fn consume_all(bootstrap: &str, topic: &str, ends: &[i64], group: &str) -> anyhow::Result<Consumed> {
    let consumer: BaseConsumer =
        worker_settings(bootstrap).consumer(group).create().context("creating the consumer")?;
    let started = Instant::now();
    consumer.subscribe(&[topic]).with_context(|| format!("subscribing to {topic}"))?;
    let total: i64 = ends.iter().sum();
    let mut next = vec![0i64; ends.len()];
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last_print = Instant::now();
    let deadline = Duration::from_secs(1800);
    while next.iter().zip(ends).any(|(n, e)| n < e) {
        if started.elapsed() > deadline {
            bail!("the consumer read {records} of {total} records in {deadline:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += m.payload_len() as u64;
                if let Some(n) = next.get_mut(m.partition() as usize) {
                    *n = (*n).max(m.offset() + 1);
                }
            }
            Some(Err(e)) => bail!("consuming {topic}: {e}"),
            None => {}
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!("[bench]   consumed {records} of {total}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let seconds_after_first = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(seconds);
    Ok(Consumed { records, bytes, seconds, seconds_after_first })
}

/// Reads a group's committed offsets (OffsetFetch; it does not join the group).
pub struct CommittedReader {
    consumer: BaseConsumer,
    topic: String,
}

impl CommittedReader {
    pub fn new(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the offset reader")?;
        Ok(CommittedReader { consumer, topic: topic.to_string() })
    }

    /// Committed offset per partition (-1 where none).
    pub fn committed(&self) -> anyhow::Result<Vec<i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topic, p);
        }
        let got = self.consumer.committed_offsets(tpl, Duration::from_secs(10)).context("reading committed offsets")?;
        let mut out = vec![-1; PARTITIONS as usize];
        for e in got.elements() {
            if let (Offset::Offset(o), Some(slot)) = (e.offset(), out.get_mut(e.partition() as usize)) {
                *slot = o;
            }
        }
        Ok(out)
    }
}
