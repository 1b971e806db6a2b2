//! The worker's side of a sink task's [`connector_api::SinkContext`]:
//! requests queued by the plugin (seek, pause, resume, commit) that the
//! poll loop applies between calls into the plugin, the incarnation number,
//! and durable notes carried in the offset commit's metadata.
//!
//! Notes are committed synchronously with the partition's last committed
//! offset, through the task's own consumer, so the commit carries the
//! consumer group's generation: a task whose membership lapsed (a paused
//! worker) is refused by the broker and learns it before it starts what the
//! note announces.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock, Weak,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString};
use connector_api::{context::FfiSinkContext, ConnectorError, TopicPartition};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    Offset, TopicPartitionList,
};

use super::ConsumerCallbacks;

type Key = (String, i32);

fn key(tp: &TopicPartition) -> Key {
    (tp.topic.to_string(), tp.partition)
}

/// What the plugin asked for since the poll loop last looked.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Requests {
    /// The last seek asked per partition wins.
    pub seeks: BTreeMap<Key, i64>,
    pub pause: BTreeSet<Key>,
    pub resume: BTreeSet<Key>,
    pub commit: bool,
}

#[derive(Default)]
struct Shared {
    requests: Requests,
    /// The note last committed per partition (read on assignment).
    notes: BTreeMap<Key, String>,
    /// The offset last committed per partition (read on assignment, kept by
    /// every commit; before any, the first offset consumed).
    committed: BTreeMap<Key, i64>,
}

/// Shared between the plugin's context object and the poll loop.
#[derive(Clone, Default)]
pub(super) struct ContextState {
    shared: Arc<Mutex<Shared>>,
    consumer: Arc<OnceLock<Weak<BaseConsumer<ConsumerCallbacks>>>>,
}

impl ContextState {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The consumer notes are committed through, once it exists.
    pub fn attach(&self, consumer: &Arc<BaseConsumer<ConsumerCallbacks>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    pub fn take_requests(&self) -> Requests {
        std::mem::take(&mut self.lock().requests)
    }

    /// The note to carry with a commit of this partition.
    pub fn note_of(&self, topic: &str, partition: i32) -> Option<String> {
        self.lock().notes.get(&(topic.to_string(), partition)).cloned()
    }

    pub fn committed(&self, commits: &[(String, i32, i64)]) {
        let mut shared = self.lock();
        for (t, p, o) in commits {
            shared.committed.insert((t.clone(), *p), *o);
        }
    }

    /// A partition's first consumed offset stands for its committed one
    /// until it has one.
    pub fn seen(&self, topic: &str, partition: i32, offset: i64) {
        self.lock().committed.entry((topic.to_string(), partition)).or_insert(offset);
    }

    /// What the broker holds for newly assigned partitions: committed
    /// offsets and their notes (empty metadata is no note).
    pub fn assigned(&self, committed: &TopicPartitionList) {
        let mut shared = self.lock();
        for e in committed.elements() {
            let k = (e.topic().to_string(), e.partition());
            if let Offset::Offset(o) = e.offset() {
                shared.committed.insert(k.clone(), o);
            }
            if e.metadata().is_empty() {
                shared.notes.remove(&k);
            } else {
                shared.notes.insert(k, e.metadata().to_string());
            }
        }
    }

    pub fn revoked(&self, partitions: &BTreeSet<Key>) {
        let mut shared = self.lock();
        for k in partitions {
            shared.notes.remove(k);
            shared.committed.remove(k);
            shared.requests.seeks.remove(k);
            shared.requests.pause.remove(k);
            shared.requests.resume.remove(k);
        }
    }

    pub fn plugin_context(&self) -> TaskSinkContext {
        TaskSinkContext { state: self.clone(), incarnation: next_incarnation() }
    }
}

/// Milliseconds since the epoch at start, made strictly increasing within
/// this process (two tasks starting in one millisecond differ).
fn next_incarnation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// The object handed to the plugin.
pub(super) struct TaskSinkContext {
    state: ContextState,
    incarnation: u64,
}

impl FfiSinkContext for TaskSinkContext {
    fn seek(&self, partition: &TopicPartition, offset: i64) {
        self.state.lock().requests.seeks.insert(key(partition), offset);
    }
    fn pause(&self, partitions: RSlice<'_, TopicPartition>) {
        let mut shared = self.state.lock();
        for tp in partitions.iter() {
            shared.requests.resume.remove(&key(tp));
            shared.requests.pause.insert(key(tp));
        }
    }
    fn resume(&self, partitions: RSlice<'_, TopicPartition>) {
        let mut shared = self.state.lock();
        for tp in partitions.iter() {
            shared.requests.pause.remove(&key(tp));
            shared.requests.resume.insert(key(tp));
        }
    }
    fn request_commit(&self) {
        self.state.lock().requests.commit = true;
    }
    fn incarnation(&self) -> u64 {
        self.incarnation
    }
    fn note(&self, partition: &TopicPartition) -> ROption<RString> {
        self.state.lock().notes.get(&key(partition)).map(|n| RString::from(n.as_str())).into()
    }
    fn commit_note(&self, partition: &TopicPartition, note: RStr<'_>) -> RResult<(), ConnectorError> {
        self.commit_note_now(partition, note.as_str()).into()
    }
}

impl TaskSinkContext {
    fn commit_note_now(&self, partition: &TopicPartition, note: &str) -> Result<(), ConnectorError> {
        let k = key(partition);
        let Some(offset) = self.state.lock().committed.get(&k).copied() else {
            return Err(ConnectorError::fatal(format!(
                "commit_note for topic {} partition {}: the task has no position there (the partition is not \
                 assigned to it, or none of its records was consumed yet); write notes for partitions whose records \
                 you were handed",
                partition.topic, partition.partition
            )));
        };
        let consumer = self.state.consumer.get().and_then(Weak::upgrade).ok_or_else(|| {
            ConnectorError::retriable("commit_note: the task's consumer is gone (the task is stopping)")
        })?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&k.0, k.1, Offset::Offset(offset))
            .map_err(|e| ConnectorError::fatal(format!("commit_note: {e}")))?;
        for mut e in tpl.elements() {
            e.set_metadata(note);
        }
        // A refused commit (the group moved on without this task, or the
        // broker is away) is retriable: the poll that follows revokes the
        // partitions of a task that lost them.
        consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
            ConnectorError::retriable(format!(
                "committing the note for topic {} partition {} was refused ({e}); the task may no longer own the \
                 partition, so it must not start what the note announces",
                partition.topic, partition.partition
            ))
        })?;
        self.state.lock().notes.insert(k, note.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_increase_within_the_process() {
        let a = next_incarnation();
        let b = next_incarnation();
        assert!(b > a, "{a} then {b}");
    }

    #[test]
    fn pause_and_resume_requests_cancel_each_other_and_the_last_seek_wins() {
        let state = ContextState::default();
        let ctx = state.plugin_context();
        let tp = TopicPartition::new("orders", 0);
        ctx.pause(std::slice::from_ref(&tp).into());
        ctx.resume(std::slice::from_ref(&tp).into());
        ctx.seek(&tp, 10);
        ctx.seek(&tp, 5);
        ctx.request_commit();
        let r = state.take_requests();
        assert_eq!(r.seeks, BTreeMap::from([(("orders".to_string(), 0), 5)]));
        assert!(r.pause.is_empty() && r.resume.len() == 1 && r.commit);
        assert_eq!(state.take_requests(), Requests::default(), "taking empties the queue");
    }

    #[test]
    fn a_note_needs_a_position_and_revocation_forgets_notes() {
        let state = ContextState::default();
        let ctx = state.plugin_context();
        let tp = TopicPartition::new("orders", 2);
        let e = ctx.commit_note_now(&tp, "stream@1").unwrap_err();
        assert!(e.to_string().contains("no position"), "{e}");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 2, Offset::Offset(40)).unwrap();
        for mut e in tpl.elements() {
            e.set_metadata("stream@7");
        }
        state.assigned(&tpl);
        assert_eq!(ctx.note(&tp).into_option().map(String::from).as_deref(), Some("stream@7"));
        assert_eq!(state.note_of("orders", 2).as_deref(), Some("stream@7"));
        state.seen("orders", 2, 99);
        assert_eq!(state.lock().committed.get(&("orders".to_string(), 2)), Some(&40), "seen does not move a commit");
        state.revoked(&BTreeSet::from([("orders".to_string(), 2)]));
        assert_eq!(state.note_of("orders", 2), None);
    }
}
