//! [`SourceHarness`]: drives a source task through `start → poll → commit`,
//! crashes it and restarts it from the committed offsets, and checks that
//! no record was lost.

use std::collections::{BTreeMap, BTreeSet};

use connector_api::{ConnectorConfig, ConnectorError, Host, SourceConnector, SourceOffset, SourceRecord, SourceTask};

/// A record as polled, and by which run of the task.
#[derive(Debug, Clone)]
pub struct Polled {
    pub record: SourceRecord,
    /// 0 for the first task, +1 per crash or restart.
    pub run: u32,
}

/// Drives a source task as the worker does (invariant 3: offsets are
/// committed only for records acknowledged, and the task's `commit` comes
/// after). What was polled is kept as the topic would hold it.
///
/// ```
/// use connector_api::ConnectorConfig;
/// use connector_kit::harness::SourceHarness;
/// let config = ConnectorConfig::new().with("topic", "numbers").with("counter.interval.ms", "0")
///     .with("counter.batch.size", "5");
/// let mut h = SourceHarness::new(example_counter_source::CounterSource, config, &[]).unwrap();
/// h.poll(100).unwrap();
/// h.commit().unwrap();
/// h.poll(100).unwrap(); // polled, never committed
/// h.crash().unwrap();
/// h.poll(100).unwrap();
/// h.assert_no_record_lost();
/// assert_eq!(h.values(), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "5", "6", "7", "8", "9"]);
/// ```
pub struct SourceHarness<C: SourceConnector> {
    connector: C,
    config: ConnectorConfig,
    host: Host,
    task: Option<C::Task>,
    /// The offsets topic: source partition → last committed offset.
    committed: BTreeMap<String, String>,
    polled: Vec<Polled>,
    /// `polled[..acked]` were acknowledged and their offsets committed.
    acked: usize,
    /// At each crash: how many records had been polled and how many acknowledged.
    crashes: Vec<(usize, usize)>,
    run: u32,
}

impl<C: SourceConnector> SourceHarness<C> {
    /// Creates the task and starts it with `committed` (empty: a first start).
    pub fn new(connector: C, config: ConnectorConfig, committed: &[SourceOffset]) -> Result<Self, ConnectorError> {
        Self::with_host(connector, config, committed, Host::stderr())
    }

    pub fn with_host(
        connector: C,
        config: ConnectorConfig,
        committed: &[SourceOffset],
        host: Host,
    ) -> Result<Self, ConnectorError> {
        let mut h = SourceHarness {
            connector,
            config,
            host,
            task: None,
            committed: committed.iter().map(|o| (o.partition.to_string(), o.offset.to_string())).collect(),
            polled: Vec::new(),
            acked: 0,
            crashes: Vec::new(),
            run: 0,
        };
        h.start()?;
        Ok(h)
    }

    fn start(&mut self) -> Result<(), ConnectorError> {
        let mut task = self.connector.create_task(&self.config, self.host.clone())?;
        task.start(&self.committed_offsets())?;
        self.task = Some(task);
        Ok(())
    }

    pub fn task(&self) -> &C::Task {
        self.task.as_ref().unwrap_or_else(|| panic!("the task was stopped"))
    }
    pub fn task_mut(&mut self) -> &mut C::Task {
        self.task.as_mut().unwrap_or_else(|| panic!("the task was stopped"))
    }

    /// One poll; its records are kept (produced, not yet acknowledged).
    pub fn poll(&mut self, max_records: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
        let records = self.task_mut().poll(max_records)?;
        let run = self.run;
        self.polled.extend(records.iter().map(|r| Polled { record: r.clone(), run }));
        Ok(records)
    }

    /// Polls until `want` records came in this call or `max_polls` polls
    /// were made; returns them.
    pub fn poll_until(
        &mut self,
        want: usize,
        max_records: usize,
        max_polls: usize,
    ) -> Result<Vec<SourceRecord>, ConnectorError> {
        let mut out = Vec::new();
        for _ in 0..max_polls {
            if out.len() >= want {
                break;
            }
            out.extend(self.poll(max_records)?);
        }
        Ok(out)
    }

    /// Every record polled so far is acknowledged: their offsets are
    /// committed (the last one per source partition), then the task's `commit`.
    pub fn commit(&mut self) -> Result<Vec<SourceOffset>, ConnectorError> {
        self.commit_first(self.polled.len() - self.acked)
    }

    /// Only the next `n` polled records are acknowledged (the producer still
    /// waits for the rest): their offsets are committed, then the task's `commit`.
    pub fn commit_first(&mut self, n: usize) -> Result<Vec<SourceOffset>, ConnectorError> {
        let end = (self.acked + n).min(self.polled.len());
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for p in &self.polled[self.acked..end] {
            last.insert(p.record.source.partition.to_string(), p.record.source.offset.to_string());
        }
        self.acked = end;
        self.committed.extend(last.clone());
        let offsets: Vec<SourceOffset> = last.into_iter().map(|(p, o)| SourceOffset::new(p, o)).collect();
        if !offsets.is_empty() {
            self.task_mut().commit(&offsets)?;
        }
        Ok(offsets)
    }

    /// The worker dies: the task is dropped without `stop`; a new one starts
    /// from the committed offsets. Records polled and not acknowledged may
    /// or may not be in Kafka: the new task must produce them again.
    pub fn crash(&mut self) -> Result<(), ConnectorError> {
        self.task = None;
        self.crashes.push((self.polled.len(), self.acked));
        // What was not acknowledged counts as possibly lost: the next run
        // starts acknowledging after it.
        self.acked = self.polled.len();
        self.run += 1;
        self.start()
    }

    /// A clean restart: `stop`, then a new task from the committed offsets.
    pub fn restart(&mut self) -> Result<(), ConnectorError> {
        if let Some(mut task) = self.task.take() {
            task.stop()?;
        }
        self.crashes.push((self.polled.len(), self.acked));
        self.acked = self.polled.len();
        self.run += 1;
        self.start()
    }

    /// The committed offsets, as the next start gets them.
    pub fn committed_offsets(&self) -> Vec<SourceOffset> {
        self.committed.iter().map(|(p, o)| SourceOffset::new(p.clone(), o.clone())).collect()
    }

    /// Everything polled, in order, by every run.
    pub fn polled(&self) -> &[Polled] {
        &self.polled
    }

    /// The values of everything polled, as text (`""` for none).
    pub fn values(&self) -> Vec<String> {
        self.polled
            .iter()
            .map(|p| p.record.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default())
            .collect()
    }

    /// Panics unless every record polled before a crash and not
    /// acknowledged was polled again after it (same topic, key, value and
    /// source position): nothing is lost between the committed offset and
    /// the crash.
    #[track_caller]
    pub fn assert_no_record_lost(&self) {
        fn identity(r: &SourceRecord) -> (String, Option<Vec<u8>>, Option<Vec<u8>>, String, String) {
            (
                r.topic.to_string(),
                r.key.as_ref().map(|k| k.to_vec()).into_option(),
                r.value.as_ref().map(|v| v.to_vec()).into_option(),
                r.source.partition.to_string(),
                r.source.offset.to_string(),
            )
        }
        for (i, (polled, acked)) in self.crashes.iter().enumerate() {
            let later: BTreeSet<_> = self.polled[*polled..].iter().map(|p| identity(&p.record)).collect();
            let lost: Vec<&SourceRecord> = self.polled[*acked..*polled]
                .iter()
                .map(|p| &p.record)
                .filter(|r| !later.contains(&identity(r)))
                .collect();
            assert!(
                lost.is_empty(),
                "records polled before crash #{} and never acknowledged were not polled again: {lost:#?}",
                i + 1
            );
        }
    }
}
