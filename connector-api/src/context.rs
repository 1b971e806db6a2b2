//! The sink context: what a sink task can ask of the worker about its
//! partitions (Kafka Connect's `SinkTaskContext`, plus a durable note).
//!
//! Requests (`seek`, `pause`, `resume`, `request_commit`) are queued and
//! applied by the worker when the current call into the task returns, on
//! the task's own thread, before the next `put`. The note is different: it
//! is committed at once, synchronously, so a sink can record what it is
//! about to start before starting it. The status message
//! ([`SinkContext::report_status`]) is shown by the worker's REST API.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString},
};

use crate::{record::TopicPartition, ConnectorError};

/// The worker's side of the context, as a stable trait object.
#[sabi_trait]
pub trait FfiSinkContext: Send + Sync {
    fn seek(&self, partition: &TopicPartition, offset: i64);
    fn pause(&self, partitions: RSlice<'_, TopicPartition>);
    fn resume(&self, partitions: RSlice<'_, TopicPartition>);
    fn request_commit(&self);
    fn incarnation(&self) -> u64;
    fn note(&self, partition: &TopicPartition) -> ROption<RString>;
    #[sabi(last_prefix_field)]
    fn commit_note(&self, partition: &TopicPartition, note: RStr<'_>) -> RResult<(), ConnectorError>;
}

/// The boxed trait object the worker passes at task creation.
pub type FfiSinkContextBox = FfiSinkContext_TO<'static, RBox<()>>;

/// The worker's side of a task's status message
/// ([`SinkContext::report_status`]). Not a method of [`FfiSinkContext`]:
/// that would refuse every plugin built before it; it reaches plugins
/// through `crate::ext` instead.
#[sabi_trait]
pub trait FfiTaskStatus: Send + Sync {
    /// `RSome`: what the task wants its status to say while it runs;
    /// `RNone`: nothing any more.
    #[sabi(last_prefix_field)]
    fn report(&self, message: ROption<RStr<'_>>);
}

pub type FfiTaskStatusBox = FfiTaskStatus_TO<'static, RBox<()>>;

/// What a sink task can ask of the worker. Cheap to clone; keep it in the
/// task.
#[derive(Clone)]
pub struct SinkContext {
    inner: Arc<FfiSinkContextBox>,
    /// Absent in a worker without plugin extensions (`crate::ext`).
    status: Option<Arc<FfiTaskStatusBox>>,
}

impl SinkContext {
    pub fn from_ffi(inner: FfiSinkContextBox) -> Self {
        SinkContext { inner: Arc::new(inner), status: None }
    }

    /// With the worker's status line (a worker with plugin extensions).
    pub fn from_ffi_with_status(inner: FfiSinkContextBox, status: FfiTaskStatusBox) -> Self {
        SinkContext { inner: Arc::new(inner), status: Some(Arc::new(status)) }
    }

    /// Wraps any implementation (the test harness's, or [`Recorded`]).
    pub fn from_impl(context: impl FfiSinkContext + 'static) -> Self {
        SinkContext::from_ffi(FfiSinkContext_TO::from_value(context, TD_Opaque))
    }

    /// [`Recorded`] as both the context and the status line: its requests
    /// include [`Request::Status`].
    pub fn recorded(context: Recorded) -> Self {
        let status = FfiTaskStatus_TO::from_value(context.clone(), TD_Opaque);
        SinkContext::from_ffi_with_status(FfiSinkContext_TO::from_value(context, TD_Opaque), status)
    }

    /// What the task's status should say while it runs, or `None` once
    /// there is nothing to say: shown as `message` beside `"state":
    /// "RUNNING"` in `GET /connectors/{name}/status` and
    /// `/connectors/{name}/tasks/{id}/status`, from any worker. For a
    /// condition the user should know of that is not a failure, such as a
    /// pause for the target's API allocation ("paused until …: …"). Cheap:
    /// the worker publishes it on its next pass, only when it changed. A
    /// worker older than this method shows nothing (the call does nothing);
    /// a task that ends has its message cleared.
    pub fn report_status(&self, message: Option<&str>) {
        if let Some(status) = &self.status {
            status.report(message.map(RStr::from).into());
        }
    }

    /// Re-reads `partition` from `offset`: records from there on are handed
    /// to `put` again, in order; records of the partition already fetched
    /// past it are dropped, never put. A sink that finds its target already
    /// holds records up to some offset seeks past them on `open`; one that
    /// lost buffered work seeks back to it.
    pub fn seek(&self, partition: &TopicPartition, offset: i64) {
        self.inner.seek(partition, offset)
    }

    /// Stops fetching these partitions until [`resume`](Self::resume) (the
    /// task stays in its group; other partitions go on).
    pub fn pause(&self, partitions: &[TopicPartition]) {
        self.inner.pause(partitions.into())
    }

    pub fn resume(&self, partitions: &[TopicPartition]) {
        self.inner.resume(partitions.into())
    }

    /// Asks for a `pre_commit` and offset commit soon, instead of waiting for
    /// `offset.flush.interval.ms`.
    pub fn request_commit(&self) {
        self.inner.request_commit()
    }

    /// This run of the task: distinct for every start of the task on any
    /// worker, and larger for a later start (milliseconds since the epoch at
    /// start, made unique on the worker). Useful to name what one run
    /// creates (a stream, a job) so that a later run can tell it apart.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation()
    }

    /// The note last committed for `partition` (read when the partition was
    /// assigned, or written since by this task), if any.
    pub fn note(&self, partition: &TopicPartition) -> Option<String> {
        self.inner.note(partition).into_option().map(String::from)
    }

    /// Commits `note` with `partition`'s last committed offset, and returns
    /// once the broker has it. Later offset commits carry it along until
    /// the next note. Fenced: a task that no longer owns the partition (a
    /// paused worker whose group membership lapsed) gets an error and must
    /// not start what the note announces. Keep it small (a stream name and a
    /// row offset, a job id): brokers limit commit metadata (Kafka: 4 KiB).
    pub fn commit_note(&self, partition: &TopicPartition, note: &str) -> Result<(), ConnectorError> {
        self.inner.commit_note(partition, note.into()).into_result()
    }
}

/// Everything a task asked of a [`Recorded`] context, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Seek(TopicPartition, i64),
    Pause(Vec<TopicPartition>),
    Resume(Vec<TopicPartition>),
    Commit,
    Note(TopicPartition, String),
    /// `report_status` (through [`SinkContext::recorded`]).
    Status(Option<String>),
}

/// A context that records requests and keeps notes in memory: for unit
/// tests outside the worker (the connector kit's harness builds on it).
#[derive(Clone, Default)]
pub struct Recorded {
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub notes: Arc<Mutex<std::collections::BTreeMap<TopicPartition, String>>>,
    /// When set, `commit_note` fails (retriable) with this message: a fenced task.
    pub fenced: Arc<Mutex<Option<String>>>,
    pub incarnation: u64,
}

impl Recorded {
    fn push(&self, request: Request) {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(request);
    }
    /// The requests so far, emptying the log.
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl FfiTaskStatus for Recorded {
    fn report(&self, message: ROption<RStr<'_>>) {
        self.push(Request::Status(message.into_option().map(|m| m.to_string())));
    }
}

impl FfiSinkContext for Recorded {
    fn seek(&self, partition: &TopicPartition, offset: i64) {
        self.push(Request::Seek(partition.clone(), offset));
    }
    fn pause(&self, partitions: RSlice<'_, TopicPartition>) {
        self.push(Request::Pause(partitions.to_vec()));
    }
    fn resume(&self, partitions: RSlice<'_, TopicPartition>) {
        self.push(Request::Resume(partitions.to_vec()));
    }
    fn request_commit(&self) {
        self.push(Request::Commit);
    }
    fn incarnation(&self) -> u64 {
        self.incarnation
    }
    fn note(&self, partition: &TopicPartition) -> ROption<RString> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).get(partition).map(|n| RString::from(n.as_str())).into()
    }
    fn commit_note(&self, partition: &TopicPartition, note: RStr<'_>) -> RResult<(), ConnectorError> {
        if let Some(why) = self.fenced.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            // As the worker answers a refused commit: retriable, the next
            // poll revokes what the task lost.
            return RResult::RErr(ConnectorError::retriable(why));
        }
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).insert(partition.clone(), note.to_string());
        self.push(Request::Note(partition.clone(), note.to_string()));
        RResult::ROk(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_context_logs_requests_and_fences_notes() {
        let recorded = Recorded { incarnation: 7, ..Recorded::default() };
        let ctx = SinkContext::from_impl(recorded.clone());
        let tp = TopicPartition::new("orders", 1);
        ctx.seek(&tp, 42);
        ctx.pause(std::slice::from_ref(&tp));
        ctx.commit_note(&tp, "stream-a@10").unwrap();
        ctx.request_commit();
        assert_eq!(ctx.incarnation(), 7);
        assert_eq!(ctx.note(&tp).as_deref(), Some("stream-a@10"));
        assert_eq!(
            recorded.take(),
            [
                Request::Seek(tp.clone(), 42),
                Request::Pause(vec![tp.clone()]),
                Request::Note(tp.clone(), "stream-a@10".into()),
                Request::Commit
            ]
        );
        *recorded.fenced.lock().unwrap() = Some("generation 3 is not current".into());
        assert!(ctx.commit_note(&tp, "stream-b@0").unwrap_err().to_string().contains("generation 3"));
        assert_eq!(ctx.note(&tp).as_deref(), Some("stream-a@10"), "a fenced note is not kept");
    }

    #[test]
    fn a_status_message_reaches_a_status_line_and_is_dropped_without_one() {
        let recorded = Recorded::default();
        let ctx = SinkContext::recorded(recorded.clone());
        ctx.report_status(Some("paused until 00:00 UTC"));
        ctx.report_status(None);
        assert_eq!(recorded.take(), [Request::Status(Some("paused until 00:00 UTC".into())), Request::Status(None)]);
        // A worker without extensions gives no status line: nothing happens.
        let without = Recorded::default();
        SinkContext::from_impl(without.clone()).report_status(Some("not shown"));
        assert_eq!(without.take(), []);
    }
}
