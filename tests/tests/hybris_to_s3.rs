//! End to end: Hybris database → hybris-source → Kafka → s3-sink → S3, through
//! a real worker process and the real services of `dev/services up`.
//!
//! Every order event (the sample orders, orders created by the simulator,
//! orders invoiced by it) must land in S3 exactly once, identified by
//! `(pk, modifiedTS)`; the events of one order must sit on one partition in
//! the order they happened (increasing offsets in the object names); object
//! keys must follow Confluent's naming.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde_json::{json, Value};
use sluice_tests::{
    hybris::{
        assert_every_version_once, assert_tiled_and_in_order, fixture, objects as order_objects, HybrisDb, Object,
    },
    s3::Bucket,
    unique, wait_until, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(120);

fn create(worker: &WorkerProcess, name: &str, config: Value) {
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert!(code == 201 || code == 200, "creating {name}: HTTP {code} {reply}\nworker log:\n{}", worker.log_tail());
}

#[test]
fn hybris_orders_reach_s3_exactly_once_and_in_order() {
    let mut db = HybrisDb::create("hybris_e2e", true);
    let worker = WorkerProcess::start(&unique("e2e-hybris-s3"), &[], &[]);
    let prefix = format!("{}.", unique("e2e-hybris"));
    let topic = format!("{prefix}order");
    let dir = unique("e2e-hybris-s3");

    create(
        &worker,
        "hybris",
        json!({
            "connector.class": "hybris-source",
            "tasks.max": "1",
            "hybris.mode": "jdbc",
            "hybris.jdbc.url": db.url,
            "hybris.item.types": "Order",
            "hybris.poll.lag.ms": "500",
            "poll.interval.ms": "200",
            "topic.prefix": prefix,
            "topic.creation.default.partitions": "4",
        }),
    );
    create(
        &worker,
        "s3",
        sluice_tests::s3::sink_config(json!({
            "connector.class": "s3-sink",
            "tasks.max": "2",
            "topics": topic,
            "topics.dir": dir,
            "format.class": "json",
            "flush.size": "2",
            "rotate.schedule.interval.ms": "1000",
            "offset.flush.interval.ms": "1000",
        })),
    );
    worker.wait_tasks_state("hybris", 1, "RUNNING", TIMEOUT);
    worker.wait_tasks_state("s3", 1, "RUNNING", TIMEOUT);

    // Every version of every order the database ever held: the sample data,
    // then after each simulator step (one transaction: a new order, the oldest
    // CREATED order invoiced). A keyset poller sees only the versions it
    // polls, so before the next step the test waits until the source has
    // emitted every version so far (its records-written counter), so no
    // version is overwritten unseen.
    let mut expected: BTreeMap<(i64, String), String> = db.order_versions();
    let emitted = |n: usize| {
        wait_until(
            &format!("hybris-source to emit {n} order events; worker log:\n{}", worker.log_tail()),
            TIMEOUT,
            || (worker.metric_sum("sluice_records_written_total", "connector=\"hybris\"") as usize >= n).then_some(()),
        )
    };
    emitted(expected.len());
    let step = fixture("simulate-step.sql");
    for _ in 0..6 {
        db.exec(&step);
        expected.extend(db.order_versions());
        emitted(expected.len());
    }
    let codes: BTreeSet<&String> = expected.values().collect();
    assert!(expected.len() > codes.len(), "the simulator updated no order: {expected:?}");

    // Wait until S3 holds as many order records as there were events.
    let bucket = Bucket::new();
    let objects: Vec<Object> = wait_until(
        &format!("{} order events in s3://{}/{dir}/; worker log:\n{}", expected.len(), bucket.name, worker.log_tail()),
        TIMEOUT,
        || {
            let objects = order_objects(&bucket, &dir, &topic);
            let total: usize = objects.iter().map(|o| o.records.len()).sum();
            (total >= expected.len()).then_some(objects)
        },
    );

    // Exactly once: every (pk, modifiedTS) once, nothing else.
    assert_every_version_once(&expected, &objects);

    // Offsets tiled per partition; each order on one partition, in order.
    assert_tiled_and_in_order(&objects);
}
