//! The source harness against the example counter source (a test binary of
//! its own: the file sink's plugin export would clash with this one's).

use connector_api::*;
use connector_kit::harness::SourceHarness;
use example_counter_source::CounterSource;

#[test]
fn counter_source_resumes_after_the_committed_number_when_acks_were_partial() {
    let config = ConnectorConfig::new()
        .with("topic", "numbers")
        .with("counter.interval.ms", "0")
        .with("counter.batch.size", "4");
    let mut h = SourceHarness::new(CounterSource, config.clone(), &[]).unwrap();
    h.poll(100).unwrap();
    h.poll(100).unwrap();
    let committed = h.commit_first(6).unwrap();
    assert_eq!(committed, [SourceOffset::new(r#"{"counter":"numbers"}"#, r#"{"n":5}"#)]);
    h.crash().unwrap();
    h.poll_until(4, 100, 10).unwrap();
    h.assert_no_record_lost();
    assert_eq!(h.values()[8..], ["6", "7", "8", "9"]);
    h.commit().unwrap();
    h.restart().unwrap();
    h.poll(2).unwrap();
    assert_eq!(h.values()[12..], ["10", "11"]);
    h.assert_no_record_lost();
    // Starting from an offsets topic of an earlier deployment.
    let h = SourceHarness::new(CounterSource, config, &h.committed_offsets()).unwrap();
    assert_eq!(h.committed_offsets()[0].offset.as_str(), r#"{"n":9}"#);
}

#[test]
fn a_source_that_skips_after_a_crash_is_caught() {
    struct Skipper;
    struct SkipperTask(u64);
    impl SourceConnector for Skipper {
        type Task = SkipperTask;
        fn info(&self) -> ConnectorInfo {
            ConnectorInfo { class: "skipper", aliases: &[], version: "0", documentation: "" }
        }
        fn config_def(&self) -> ConfigDef {
            ConfigDef::new()
        }
        fn create_task(&self, _: &ConnectorConfig, _: Host) -> Result<SkipperTask, ConnectorError> {
            Ok(SkipperTask(0))
        }
    }
    impl SourceTask for SkipperTask {
        // Resumes two past the committed offset: loses one record.
        fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError> {
            self.0 = committed.first().map_or(0, |o| o.offset.parse::<u64>().unwrap_or(0) + 2);
            Ok(())
        }
        fn poll(&mut self, _: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
            self.0 += 1;
            Ok(vec![SourceRecord::new("t", SourceOffset::new("p", (self.0 - 1).to_string())).with_value("x")])
        }
    }
    let mut h = SourceHarness::new(Skipper, ConnectorConfig::new(), &[]).unwrap();
    h.poll(1).unwrap();
    h.commit().unwrap();
    h.poll(1).unwrap();
    h.crash().unwrap();
    h.poll(1).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.assert_no_record_lost()));
    assert!(caught.is_err(), "offset 1 was polled, never acknowledged, and not polled again");
}
