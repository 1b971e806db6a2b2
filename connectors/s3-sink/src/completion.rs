//! Rotated objects being completed. Completing an object (its last parts,
//! CompleteMultipartUpload, tagging) runs on the task's I/O runtime while the
//! task keeps consuming: waiting for it on the task thread left the uploads
//! idle at every rotation (dev/bench: JSON at 0.55× the upload ceiling).
//! Until an object is confirmed, it holds its partition's offset back exactly
//! like an open one (`sink.rs`).

use connector_api::{ConnectorError, Host};
use tokio::{runtime::Runtime, task::JoinHandle};

use crate::{
    recovery::OffsetRange,
    upload::{Finished, ObjectUpload, Uploader},
};

pub struct Completing {
    pub start_offset: i64,
    range: OffsetRange,
    records: u64,
    pub key: String,
    /// Rotation order, to wait for the oldest when too many run.
    pub seq: u64,
    state: State,
}

enum State {
    /// Finishing in the background; the future hands the upload back.
    Running(JoinHandle<(ObjectUpload, Result<Finished, ConnectorError>)>),
    /// Failed: retried, blocking, before the task takes more records.
    Waiting(ObjectUpload),
    /// In S3.
    Done,
    /// Its name was taken by an object holding other offsets (a former
    /// owner's late completion): the sink re-checks the partition.
    Conflict(Option<OffsetRange>),
    /// Can never complete (its body failed, or the background future died
    /// and took the upload's state): only a restart from the committed
    /// offset writes these records again.
    Lost(ConnectorError),
}

impl Completing {
    /// Hands a finished object (its last bytes set as the upload's tail) to
    /// the background. What waits in memory outside the open objects stays
    /// bounded by the part permits: full parts still queued are sent now
    /// (waiting for permits here, like any part), and the last part takes
    /// its permit before the object leaves the task thread. A failure to
    /// start the upload is left to the background completion, which retries it.
    pub fn start(
        rt: &Runtime,
        up: &Uploader,
        mut upload: ObjectUpload,
        range: OffsetRange,
        records: u64,
        seq: u64,
    ) -> Completing {
        let _ = upload.pump(rt, up);
        let reserved = rt.block_on(up.permits.clone().acquire_owned()).ok();
        let (up, tags) = (up.clone(), tags(up, &range, records));
        let key = upload.key.clone();
        let theirs = range.clone();
        let handle = rt.spawn(async move {
            let result = upload.finish(&up, &tags, reserved, &theirs).await;
            (upload, result)
        });
        Completing { start_offset: range.first, range, records, key, seq, state: State::Running(handle) }
    }

    /// An object that cannot complete; it stays listed so its offset is held.
    pub fn lost(key: String, range: OffsetRange, records: u64, seq: u64, error: ConnectorError) -> Self {
        Completing { start_offset: range.first, range, records, key, seq, state: State::Lost(error) }
    }

    /// The object lost its name to one holding other offsets: what that one holds, if known.
    pub fn conflict(&self) -> Option<Option<&OffsetRange>> {
        match &self.state {
            State::Conflict(theirs) => Some(theirs.as_ref()),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes the background result if the completion ended, or waits for it
    /// when `wait`: a completed object is counted, a failed one waits for `retry`.
    pub fn collect(&mut self, rt: &Runtime, host: &Host, wait: bool) {
        let ended = match &self.state {
            State::Running(h) => wait || h.is_finished(),
            _ => false,
        };
        if !ended {
            return;
        }
        let State::Running(handle) = std::mem::replace(&mut self.state, State::Done) else { return };
        self.state = match rt.block_on(handle) {
            Ok((upload, Ok(Finished::Written))) => {
                self.count(host, &upload);
                State::Done
            }
            Ok((_, Ok(Finished::Conflict(theirs)))) => State::Conflict(theirs),
            Ok((upload, Err(e))) => {
                self.warn(host, &e);
                State::Waiting(upload)
            }
            Err(join) => State::Lost(ConnectorError::fatal(format!(
                "completing {} stopped ({join}); the task must restart from the committed offset",
                self.key
            ))),
        };
    }

    /// Completes a failed object now (blocking); an error means its records
    /// must keep waiting.
    pub fn retry(&mut self, rt: &Runtime, up: &Uploader, host: &Host) -> Result<(), ConnectorError> {
        let tags = tags(up, &self.range, self.records);
        match &mut self.state {
            State::Waiting(upload) => {
                let result = rt.block_on(upload.finish(up, &tags, None, &self.range));
                match result {
                    Err(e) => {
                        self.warn(host, &e);
                        return Err(e);
                    }
                    Ok(Finished::Conflict(theirs)) => {
                        self.state = State::Conflict(theirs);
                        return Ok(());
                    }
                    Ok(Finished::Written) => {}
                }
                let State::Waiting(upload) = std::mem::replace(&mut self.state, State::Done) else { return Ok(()) };
                self.count(host, &upload);
                Ok(())
            }
            State::Lost(e) => Err(e.clone()),
            // A conflict is the sink's to resolve (it re-checks the partition).
            State::Running(_) | State::Done | State::Conflict(_) => Ok(()),
        }
    }

    /// The upload to abort when the partition is dropped. A running
    /// completion is waited for (cancelling it could leave an upload a later
    /// owner must clean); an object it completed holds records this task
    /// never committed, which the next owner writes again under the same name.
    pub fn into_abandoned(self, rt: &Runtime) -> Option<ObjectUpload> {
        match self.state {
            State::Running(handle) => match rt.block_on(handle) {
                Ok((upload, Err(_))) => Some(upload),
                _ => None,
            },
            State::Waiting(upload) => Some(upload),
            // A conflicting completion already dropped its parts.
            State::Done | State::Lost(_) | State::Conflict(_) => None,
        }
    }

    fn warn(&self, host: &Host, e: &ConnectorError) {
        host.warn(
            "S3 object not completed yet; its records stay uncommitted",
            &[("key", &self.key), ("error", e.message())],
        );
    }

    fn count(&self, host: &Host, upload: &ObjectUpload) {
        if let Some(why) = &upload.tagging_skipped {
            host.warn(
                "S3 object written but not tagged (s3.object.behavior.on.tagging.error=ignore)",
                &[("key", &self.key), ("error", why)],
            );
        }
        let (records, bytes) = (self.records.to_string(), upload.bytes_uploaded.to_string());
        host.debug("S3 object written", &[("key", &self.key), ("records", &records), ("bytes", &bytes)]);
        host.counter("s3_sink_objects_total", "Objects completed in S3", &[], 1.0);
        host.counter("s3_sink_records_total", "Records in completed S3 objects", &[], self.records as f64);
        host.counter("s3_sink_bytes_total", "Bytes in completed S3 objects", &[], upload.bytes_uploaded as f64);
    }
}

/// The object's tags (none without `s3.object.tagging`).
fn tags(up: &Uploader, range: &OffsetRange, records: u64) -> Vec<(String, String)> {
    up.tagging.as_ref().map(|t| t.for_object(range.first, range.last, records)).unwrap_or_default()
}
