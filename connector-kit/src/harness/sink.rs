//! [`SinkHarness`]: drives a sink task the way the worker does and keeps the
//! books the worker keeps (runtime/src/pipeline/watermark.rs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use connector_api::{
    context::{Recorded, Request},
    ConnectorConfig, ConnectorError, ErrorKind, Host, PutOutcome, SinkConnector, SinkContext, SinkTask, TopicPartition,
    TopicPartitionOffset,
};

use super::records::{borrow, OwnedRecord};

/// The worker's bookkeeping of one assigned partition (invariant 1): the
/// committable offset is the lowest one not settled.
#[derive(Debug, Default, Clone)]
struct Marks {
    /// Handed to the sink, not yet reported durable.
    in_sink: BTreeSet<i64>,
    /// Failed and routed (DLQ, rejected topic), or awaiting a retry: acknowledged?
    routed: BTreeMap<i64, bool>,
    /// Everything below has been handed or routed.
    next: i64,
    /// The first offset seen since the partition was assigned.
    first: i64,
}

impl Marks {
    fn new(first: i64) -> Self {
        Marks { first, next: first, ..Marks::default() }
    }
    fn watermark(&self) -> i64 {
        let mut w = self.next;
        if let Some(o) = self.in_sink.first() {
            w = w.min(*o);
        }
        if let Some((o, _)) = self.routed.iter().find(|(_, acked)| !**acked) {
            w = w.min(*o);
        }
        w
    }
}

/// A put the harness makes fail: the task takes the first `after` records of
/// the batch, then the put fails with `error` as a whole.
#[derive(Debug, Clone)]
struct PutFault {
    after: usize,
    error: ConnectorError,
}

/// One commit the harness made: what the task reported and what was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub partition: TopicPartition,
    /// What `pre_commit` reported for the partition (if it named it).
    pub reported: Option<i64>,
    /// The committed offset: the settled watermark.
    pub committed: i64,
    /// The lowest offset unsettled at the time (not durable, or routed and
    /// not acknowledged), if any: `committed` never passes it.
    pub lowest_unsettled: Option<i64>,
}

/// Drives a sink task through `open → put → pre_commit → close` as the
/// worker does, and checks what the task reports durable.
///
/// - Every record given to [`put`](Self::put) is kept, as Kafka keeps it:
///   after [`crash`](Self::crash) or [`revoke`](Self::revoke) +
///   [`open`](Self::open) + [`redeliver`](Self::redeliver) the task gets
///   everything from the last committed offset again.
/// - [`commit`](Self::commit) calls `pre_commit` with the delivered offsets
///   (per partition, the offset after the last record put, failed ones
///   included) and commits the settled watermark: never past a record not
///   reported durable, nor past a failed record not yet routed and
///   acknowledged ([`hold_routing`](Self::hold_routing)).
/// - Failures can be injected: a record the worker fails before the task
///   sees it ([`fail_record`](Self::fail_record), as a converter would), and
///   a put that fails as a whole after the task took part of the batch
///   ([`fail_next_put`](Self::fail_next_put)).
///
/// ```
/// use connector_api::ConnectorConfig;
/// use connector_kit::harness::{RecordBuilder, SinkHarness};
/// # let dir = tempfile::tempdir().unwrap();
/// let file = dir.path().join("out.txt");
/// let config = ConnectorConfig::new().with("file", file.to_str().unwrap());
/// let mut h = SinkHarness::new(example_file_sink::FileSink, config).unwrap();
/// h.open(&[connector_api::TopicPartition::new("orders", 0)]).unwrap();
/// h.put(&RecordBuilder::new("orders", 0).values(["a", "b", "c"])).unwrap();
/// h.commit().unwrap();
/// h.assert_durable("orders", 0, 3);
/// h.never_past_unsettled();
/// ```
pub struct SinkHarness<C: SinkConnector> {
    connector: C,
    config: ConnectorConfig,
    host: Host,
    context: Recorded,
    task: Option<C::Task>,
    assigned: BTreeSet<TopicPartition>,
    /// Every record given, per partition, by offset (the "topic").
    log: BTreeMap<TopicPartition, BTreeMap<i64, OwnedRecord>>,
    marks: BTreeMap<TopicPartition, Marks>,
    delivered: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    awaiting_retry: BTreeMap<TopicPartition, BTreeMap<i64, ConnectorError>>,
    routed: Vec<(OwnedRecord, ConnectorError)>,
    hold_routing: bool,
    failing_records: BTreeMap<(TopicPartition, i64), ConnectorError>,
    put_faults: VecDeque<PutFault>,
    commits: Vec<Commit>,
    violations: Vec<String>,
    max_batch: usize,
    crashes: u32,
}

impl<C: SinkConnector> SinkHarness<C> {
    /// Creates a task from `config` with a [`Recorded`] context and
    /// `Host::stderr()`.
    pub fn new(connector: C, config: ConnectorConfig) -> Result<Self, ConnectorError> {
        Self::with_host(connector, config, Host::stderr())
    }

    /// Same, with a host of the test's (a [`super::RecordingHost`]).
    pub fn with_host(connector: C, config: ConnectorConfig, host: Host) -> Result<Self, ConnectorError> {
        let context = Recorded { incarnation: 1, ..Recorded::default() };
        let task = connector.create_task(&config, host.clone(), SinkContext::recorded(context.clone()))?;
        Ok(SinkHarness {
            connector,
            config,
            host,
            context,
            task: Some(task),
            assigned: BTreeSet::new(),
            log: BTreeMap::new(),
            marks: BTreeMap::new(),
            delivered: BTreeMap::new(),
            committed: BTreeMap::new(),
            awaiting_retry: BTreeMap::new(),
            routed: Vec::new(),
            hold_routing: false,
            failing_records: BTreeMap::new(),
            put_faults: VecDeque::new(),
            commits: Vec::new(),
            violations: Vec::new(),
            max_batch: 500,
            crashes: 0,
        })
    }

    /// Records per batch when re-delivering (default 500).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    pub fn task(&self) -> &C::Task {
        self.task.as_ref().unwrap_or_else(|| panic!("the task was stopped"))
    }
    /// The task, for calls the worker does not make (a sink's own wait).
    pub fn task_mut(&mut self) -> &mut C::Task {
        self.task.as_mut().unwrap_or_else(|| panic!("the task was stopped"))
    }
    /// The task's context: its requests and notes (notes survive a crash,
    /// as they are committed with the offsets).
    pub fn context(&self) -> &Recorded {
        &self.context
    }
    pub fn host(&self) -> &Host {
        &self.host
    }
    pub fn assigned(&self) -> Vec<TopicPartition> {
        self.assigned.iter().cloned().collect()
    }
    /// How many times the task was crashed and re-created.
    pub fn crashes(&self) -> u32 {
        self.crashes
    }

    /// Assigns `partitions`: the task's `open`. Their records are then
    /// handed from the committed offset by [`redeliver`](Self::redeliver)
    /// or by [`put`](Self::put).
    pub fn open(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        self.assigned.extend(partitions.iter().cloned());
        self.task_mut().open(partitions)
    }

    /// The record at `offset` of `topic`/`partition` fails before the task
    /// sees it (as a converter or transform failing it would): it is routed
    /// like a failed put and unsettled until acknowledged.
    pub fn fail_record(&mut self, topic: &str, partition: i32, offset: i64, error: ConnectorError) {
        self.failing_records.insert((TopicPartition::new(topic, partition), offset), error);
    }

    /// The next put hands only its first `after` records to the task (none
    /// with 0) and then fails as a whole with `error` (a `Retriable` one:
    /// the target went down mid-batch; put the batch again to retry it).
    pub fn fail_next_put(&mut self, after: usize, error: ConnectorError) {
        self.put_faults.push_back(PutFault { after, error });
    }

    /// While on, routed records (DLQ) are not acknowledged until
    /// [`ack_routed`](Self::ack_routed): the commit must wait for them.
    pub fn hold_routing(&mut self, hold: bool) {
        self.hold_routing = hold;
    }

    /// The DLQ acknowledges every routed record.
    pub fn ack_routed(&mut self) {
        for marks in self.marks.values_mut() {
            for acked in marks.routed.values_mut() {
                *acked = true;
            }
        }
        // Records awaiting a retry are not routed yet: they stay unsettled.
        for (tp, waiting) in &self.awaiting_retry {
            if let Some(marks) = self.marks.get_mut(tp) {
                for o in waiting.keys() {
                    marks.routed.insert(*o, false);
                }
            }
        }
    }

    /// Records routed to the DLQ / rejected topic so far, with their errors.
    pub fn routed(&self) -> &[(OwnedRecord, ConnectorError)] {
        &self.routed
    }

    fn route(&mut self, record: &OwnedRecord, error: ConnectorError) {
        let tp = record.topic_partition();
        let marks = self.marks.entry(tp).or_insert_with(|| Marks::new(record.offset));
        marks.in_sink.remove(&record.offset);
        marks.routed.insert(record.offset, !self.hold_routing);
        marks.next = marks.next.max(record.offset + 1);
        self.routed.push((record.clone(), error));
    }

    fn log(&mut self, records: &[OwnedRecord]) {
        for r in records {
            self.log.entry(r.topic_partition()).or_default().insert(r.offset, r.clone());
        }
    }

    /// Hands a batch to the task as the worker does: records of partitions
    /// not assigned are dropped (a partition revoked mid-batch), injected
    /// record failures are routed, the rest goes to `put`. Returns the
    /// task's outcome (indexes into the records handed: those of assigned
    /// partitions, minus injected failures), or its error.
    pub fn put(&mut self, records: &[OwnedRecord]) -> Result<PutOutcome, ConnectorError> {
        self.log(records);
        let mut handed = Vec::with_capacity(records.len());
        for r in records {
            let tp = r.topic_partition();
            if !self.assigned.contains(&tp) {
                continue;
            }
            if let Some(error) = self.failing_records.get(&(tp.clone(), r.offset)).cloned() {
                self.route(r, error);
                continue;
            }
            let marks = self.marks.entry(tp).or_insert_with(|| Marks::new(r.offset));
            marks.in_sink.insert(r.offset);
            marks.next = marks.next.max(r.offset + 1);
            handed.push(r.clone());
        }
        if handed.is_empty() {
            return Ok(PutOutcome::accepted());
        }
        if let Some(fault) = self.put_faults.pop_front() {
            let prefix = &handed[..fault.after.min(handed.len())];
            if !prefix.is_empty() {
                let task = self.task_mut();
                borrow(prefix, |batch| task.put(batch))?;
            }
            return Err(fault.error);
        }
        let task = self.task_mut();
        let result = borrow(&handed, |batch| task.put(batch));
        match &result {
            Ok(outcome) => {
                for r in &handed {
                    let d = self.delivered.entry(r.topic_partition()).or_insert(r.offset + 1);
                    *d = (*d).max(r.offset + 1);
                }
                for failure in outcome.failures() {
                    let Some(r) = handed.get(failure.index as usize) else {
                        self.violations.push(format!(
                            "put reported a failure at index {} of a batch of {}",
                            failure.index,
                            handed.len()
                        ));
                        continue;
                    };
                    self.failed(r, failure.error.clone());
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::BadRecord | ErrorKind::Rejected) => {
                for r in &handed {
                    self.route(r, e.clone());
                }
            }
            // Retriable: the batch is to be put again (the test does it);
            // Fatal/Config: the task failed (crash() restarts it).
            Err(_) => {}
        }
        result
    }

    fn failed(&mut self, r: &OwnedRecord, error: ConnectorError) {
        if error.kind() == ErrorKind::Retriable {
            let tp = r.topic_partition();
            if let Some(marks) = self.marks.get_mut(&tp) {
                marks.in_sink.remove(&r.offset);
                marks.routed.insert(r.offset, false);
            }
            self.awaiting_retry.entry(tp).or_default().insert(r.offset, error);
        } else {
            self.route(r, error);
        }
    }

    /// Records that failed retriably and wait for [`retry_failed`](Self::retry_failed)
    /// or [`give_up_failed`](Self::give_up_failed).
    pub fn awaiting_retry(&self) -> Vec<(TopicPartition, i64)> {
        self.awaiting_retry.iter().flat_map(|(tp, m)| m.keys().map(move |o| (tp.clone(), *o))).collect()
    }

    /// Puts the records that failed retriably again (the worker's retry);
    /// those taken are back in the sink's hands.
    pub fn retry_failed(&mut self) -> Result<PutOutcome, ConnectorError> {
        let waiting = std::mem::take(&mut self.awaiting_retry);
        let log = &self.log;
        let records: Vec<OwnedRecord> = waiting
            .iter()
            .flat_map(|(tp, m)| m.keys().filter_map(move |o| log.get(tp).and_then(|l| l.get(o))))
            .cloned()
            .collect();
        if records.is_empty() {
            return Ok(PutOutcome::accepted());
        }
        let task = self.task_mut();
        let result = borrow(&records, |batch| task.put(batch));
        match &result {
            Ok(outcome) => {
                let failed: BTreeMap<usize, ConnectorError> =
                    outcome.failures().iter().map(|f| (f.index as usize, f.error.clone())).collect();
                for (i, r) in records.iter().enumerate() {
                    match failed.get(&i) {
                        Some(e) => self.failed(r, e.clone()),
                        None => {
                            if let Some(marks) = self.marks.get_mut(&r.topic_partition()) {
                                marks.routed.remove(&r.offset);
                                marks.in_sink.insert(r.offset);
                            }
                        }
                    }
                }
            }
            Err(_) => self.awaiting_retry = waiting,
        }
        result
    }

    /// The retry timeout passed: records awaiting a retry are routed.
    pub fn give_up_failed(&mut self) {
        let waiting = std::mem::take(&mut self.awaiting_retry);
        for (tp, m) in waiting {
            for (o, e) in m {
                if let Some(r) = self.log.get(&tp).and_then(|l| l.get(&o)).cloned() {
                    self.route(&r, e);
                }
            }
        }
    }

    fn delivered_offsets(&self) -> Vec<TopicPartitionOffset> {
        self.delivered
            .iter()
            .filter(|(tp, _)| self.assigned.contains(*tp))
            .map(|(tp, o)| TopicPartitionOffset::new(tp.topic.to_string(), tp.partition, *o))
            .collect()
    }

    /// `pre_commit` with the delivered offsets, then commits the settled
    /// watermark of each assigned partition that moved. Returns the new
    /// commits (also in [`durable`](Self::durable)); an error of
    /// `pre_commit` is returned and nothing is committed.
    pub fn commit(&mut self) -> Result<Vec<TopicPartitionOffset>, ConnectorError> {
        let delivered = self.delivered_offsets();
        let task = self.task_mut();
        let reported = task.pre_commit(&delivered)?;
        let mut by_partition = BTreeMap::new();
        for r in &reported {
            let tp = TopicPartition::new(r.topic.to_string(), r.partition);
            if !self.assigned.contains(&tp) {
                self.violations.push(format!(
                    "pre_commit reported {}/{} at {}, a partition the task does not own",
                    tp.topic, tp.partition, r.offset
                ));
                continue;
            }
            let handed_up_to = self.marks.get(&tp).map(|m| m.next);
            if handed_up_to.is_none_or(|next| r.offset > next) {
                self.violations.push(format!(
                    "pre_commit reported {}/{} durable up to {} but was handed records only below {:?}",
                    tp.topic, tp.partition, r.offset, handed_up_to
                ));
                continue;
            }
            if let Some(marks) = self.marks.get_mut(&tp) {
                marks.in_sink = marks.in_sink.split_off(&r.offset);
            }
            by_partition.insert(tp, r.offset);
        }
        let mut commits = Vec::new();
        for (tp, marks) in &self.marks {
            if !self.assigned.contains(tp) {
                continue;
            }
            let watermark = marks.watermark();
            let base = self.committed.get(tp).copied().unwrap_or(marks.first);
            if watermark <= base {
                continue;
            }
            let lowest_unsettled = marks
                .in_sink
                .first()
                .copied()
                .into_iter()
                .chain(marks.routed.iter().filter(|(_, a)| !**a).map(|(o, _)| *o))
                .min();
            self.commits.push(Commit {
                partition: tp.clone(),
                reported: by_partition.get(tp).copied(),
                committed: watermark,
                lowest_unsettled,
            });
            commits.push((tp.clone(), watermark));
        }
        for (tp, offset) in &commits {
            self.committed.insert(tp.clone(), *offset);
            if let Some(marks) = self.marks.get_mut(tp) {
                marks.routed.retain(|o, _| o >= offset);
            }
        }
        Ok(commits
            .into_iter()
            .map(|(tp, o)| TopicPartitionOffset::new(tp.topic.to_string(), tp.partition, o))
            .collect())
    }

    fn forget(&mut self, tp: &TopicPartition) {
        self.marks.remove(tp);
        self.delivered.remove(tp);
        self.awaiting_retry.remove(tp);
    }

    /// Revokes `partitions` as a rebalance does: `pre_commit` and a commit
    /// of the settled watermark (a `Retriable` error only skips it), then
    /// `close`; what was not committed is abandoned and re-delivered after
    /// [`open`](Self::open) + [`redeliver`](Self::redeliver).
    pub fn revoke(&mut self, partitions: &[TopicPartition]) -> Result<(), ConnectorError> {
        match self.commit() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Retriable => {}
            Err(e) => return Err(e),
        }
        let result = self.task_mut().close(partitions);
        for tp in partitions {
            self.assigned.remove(tp);
            self.forget(tp);
        }
        result
    }

    /// Hands every kept record of the assigned partitions from the
    /// committed offset on (all of a partition never committed), in batches.
    pub fn redeliver(&mut self) -> Result<Vec<PutOutcome>, ConnectorError> {
        let mut records = Vec::new();
        for tp in &self.assigned {
            let from = self.committed.get(tp).copied().unwrap_or(i64::MIN);
            if let Some(log) = self.log.get(tp) {
                records.extend(log.range(from..).map(|(_, r)| r.clone()));
            }
        }
        let mut outcomes = Vec::new();
        for batch in records.chunks(self.max_batch) {
            outcomes.push(self.put(batch)?);
        }
        Ok(outcomes)
    }

    fn restart(&mut self, destructors: bool) -> Result<Vec<PutOutcome>, ConnectorError> {
        if let Some(task) = self.task.take() {
            if destructors {
                drop(task);
            } else {
                std::mem::forget(task);
            }
        }
        self.crashes += 1;
        let assigned: Vec<TopicPartition> = self.assigned.iter().cloned().collect();
        for tp in &assigned {
            self.forget(tp);
        }
        self.marks.clear();
        self.put_faults.clear();
        self.context.take();
        self.context.incarnation += 1;
        let context = SinkContext::recorded(self.context.clone());
        self.task = Some(self.connector.create_task(&self.config, self.host.clone(), context)?);
        self.task_mut().open(&assigned)?;
        self.redeliver()
    }

    /// The worker dies: the task is dropped without `pre_commit`, `close`
    /// or `stop`; a new one is created (next incarnation), re-opened with
    /// the same partitions and handed everything from the last committed
    /// offset. Returns the outcomes of the re-delivery.
    pub fn crash(&mut self) -> Result<Vec<PutOutcome>, ConnectorError> {
        self.restart(true)
    }

    /// [`crash`](Self::crash), closer to a killed process: the old task's
    /// destructors never run (it is leaked), so buffers it did not flush are
    /// lost and threads it started keep whatever they were doing.
    pub fn crash_without_destructors(&mut self) -> Result<Vec<PutOutcome>, ConnectorError> {
        self.restart(false)
    }

    /// A clean stop: final commit, `close` of every partition, `stop`.
    pub fn stop(&mut self) -> Result<(), ConnectorError> {
        let assigned = self.assigned();
        self.revoke(&assigned)?;
        match self.task.take() {
            Some(mut task) => task.stop(),
            None => Ok(()),
        }
    }

    /// The committed offsets: what was reported durable and settled.
    pub fn durable(&self) -> BTreeMap<TopicPartition, i64> {
        self.committed.clone()
    }

    /// Every commit made, in order.
    pub fn commits(&self) -> &[Commit] {
        &self.commits
    }

    /// Panics unless the committed offset of `topic`/`partition` is `offset`.
    #[track_caller]
    pub fn assert_durable(&self, topic: &str, partition: i32, offset: i64) {
        let got = self.committed.get(&TopicPartition::new(topic, partition)).copied();
        assert_eq!(got, Some(offset), "committed offset of {topic}/{partition} (all: {:?})", self.committed);
    }

    /// The records the target must hold: every kept record below its
    /// partition's committed offset that was not routed elsewhere.
    pub fn durable_records(&self) -> Vec<&OwnedRecord> {
        let routed: BTreeSet<(TopicPartition, i64)> =
            self.routed.iter().map(|(r, _)| (r.topic_partition(), r.offset)).collect();
        self.committed
            .iter()
            .flat_map(|(tp, committed)| {
                self.log.get(tp).into_iter().flat_map(move |l| l.range(..*committed).map(|(_, r)| r))
            })
            .filter(|r| !routed.contains(&(r.topic_partition(), r.offset)))
            .collect()
    }

    /// What the harness found wrong with the task's reports: a partition it
    /// does not own, an offset past what it was handed, a failure index out
    /// of its batch.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Panics if a commit ever passed a record that was not settled (not
    /// reported durable, or failed and not routed-and-acknowledged) — the
    /// worker's watermark rule — or if the task reported what it could not
    /// know ([`violations`](Self::violations)).
    #[track_caller]
    pub fn never_past_unsettled(&self) {
        for c in &self.commits {
            if let Some(u) = c.lowest_unsettled {
                assert!(c.committed <= u, "committed {:?} past the unsettled offset {u}", c);
            }
        }
        assert!(self.violations.is_empty(), "the task's reports were wrong: {:#?}", self.violations);
    }

    /// The seeks the task asked for since the last call (the harness does
    /// not re-deliver on a seek; the test does what it means).
    pub fn take_seeks(&self) -> Vec<(TopicPartition, i64)> {
        self.context
            .take()
            .into_iter()
            .filter_map(|r| match r {
                Request::Seek(tp, o) => Some((tp, o)),
                _ => None,
            })
            .collect()
    }
}
