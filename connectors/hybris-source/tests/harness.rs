//! hybris-source under connector-kit's SourceHarness, against the real
//! PostgreSQL of `dev/services` (PG_URL, as tests/jdbc.rs): the worker's
//! crash between polling and committing, and the restart from the last
//! committed source offset, lose no row.

mod common;

use common::*;
use connector_api::SourceRecord;
use connector_kit::harness::SourceHarness;
use sluice_hybris_source::HybrisSource;

fn keys(records: &[SourceRecord]) -> Vec<String> {
    records.iter().map(key).collect()
}

/// Every key the harness saw polled, in order, by every run.
fn polled_keys(h: &SourceHarness<HybrisSource>) -> Vec<String> {
    h.polled().iter().map(|p| key(&p.record)).collect()
}

#[test]
fn harness_a_crash_before_the_commit_repolls_from_the_committed_offset_and_loses_no_row() {
    let db = TestDb::new("harness_crash", true);
    let config = db.config("Customer").with("batch.max.rows", "2");
    let all = keys(&drain(&mut task(&config, &[]), 100));
    assert_eq!(all.len(), 5);

    let mut h = SourceHarness::new(HybrisSource, config, &[]).unwrap();
    let head = h.poll_until(2, 2, 200).unwrap();
    assert_eq!(keys(&head), all[..2]);
    h.commit().unwrap();
    // Polled (so the cursor moved) but never acknowledged when the worker dies.
    let lost = h.poll_until(2, 2, 200).unwrap();
    assert_eq!(keys(&lost), all[2..4]);
    h.crash().unwrap();
    let tail = h.poll_until(3, 100, 200).unwrap();
    assert_eq!(keys(&tail), all[2..], "the new task starts right after the committed row");
    h.assert_no_record_lost();
    h.commit().unwrap();
    assert_eq!(h.committed_offsets().len(), 1);
    assert_eq!(h.committed_offsets()[0].offset, tail[2].source.offset, "the last row is committed");
    assert_eq!(polled_keys(&h).len(), 2 + 2 + 3, "at least once: the unacknowledged rows came twice");
}

#[test]
fn harness_a_partial_acknowledgement_resumes_after_the_last_acknowledged_row() {
    let db = TestDb::new("harness_partial", true);
    let config = db.config("Order").with("batch.max.rows", "100");
    let mut h = SourceHarness::new(HybrisSource, config.clone(), &[]).unwrap();
    let first = h.poll_until(3, 100, 200).unwrap();
    assert_eq!(first.len(), 3);
    // The producer acknowledged only the first record before the crash.
    h.commit_first(1).unwrap();
    h.crash().unwrap();
    let again = h.poll_until(2, 100, 200).unwrap();
    assert_eq!(keys(&again), keys(&first[1..]));
    h.assert_no_record_lost();
    h.commit().unwrap();

    // A clean restart from the offsets topic emits nothing new.
    h.restart().unwrap();
    assert!(h.poll_until(1, 100, 20).unwrap().is_empty());
    let fresh = SourceHarness::new(HybrisSource, config, &h.committed_offsets()).unwrap();
    assert!(fresh.polled().is_empty());
}
