//! What sluice relies on from the Kafka-protocol broker, checked against the
//! test broker itself: where Tansu differed from Kafka, dev/services patches
//! it (dev/tansu/patch.py), and this test fails if that patch goes missing.

use std::time::Duration;

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use sluice_tests::{create_topic, produce, service_env, unique, wait_until};

/// A consumer resuming inside a record batch (a committed offset, a resume
/// after a pause, a new owner after a rebalance) gets the rest of the batch.
#[test]
fn a_fetch_from_inside_a_record_batch_returns_the_rest_of_it() {
    let topic = unique("broker-mid-batch");
    create_topic(&topic, 1);
    let values: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    // One producer call lingers the records into one or a few batches.
    assert_eq!(produce(&topic, 0, &records), (0..100).collect::<Vec<i64>>());
    for start in [50i64, 99] {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
            .set("group.id", unique("broker-mid-batch-reader"))
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start)).expect("partition");
        consumer.assign(&tpl).expect("assign");
        let mut offsets = Vec::new();
        wait_until(&format!("records {start}..100 from a fetch at {start}"), Duration::from_secs(20), || {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                offsets.push(m.offset());
            }
            (offsets.len() == (100 - start) as usize).then_some(())
        });
        assert_eq!(offsets, (start..100).collect::<Vec<i64>>());
    }
}
