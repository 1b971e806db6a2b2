//! Records per second of one salesforce-sink task when every Salesforce call
//! takes 50 ms (a realistic round trip), with one and with four requests in
//! flight: the same 60,000 records (20,000 customers × 3 versions) each time.
//! The test checks the outcome (the last version of every customer); the
//! rates are printed, not asserted (run with `--nocapture`), and recorded in
//! docs/decisions/0019-salesforce-sink-writes.md.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_tests::{
    committed_offset, create_topic, produce, salesforce::SalesforceFake, unique, wait_until, WorkerProcess,
};

fn run(in_flight: &str) -> f64 {
    const CUSTOMERS: usize = 20_000;
    let fake = SalesforceFake::start("Contact", "Customer_Id__c", &["LastName", "Version__c"]);
    fake.set_latency(Duration::from_millis(50));
    let topic = unique("sf-rate");
    create_topic(&topic, 1);
    let values: Vec<String> = (1..=3)
        .flat_map(|v| {
            (0..CUSTOMERS).map(move |c| json!({"uid": format!("C-{c}"), "LastName": "x", "Version__c": v}).to_string())
        })
        .collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    let end = produce(&topic, 0, &records).len() as i64;
    let w = WorkerProcess::start(&unique("sf-rate"), &[], &[]);
    let name = unique("sf-rate-sink");
    let mut config: serde_json::Map<String, serde_json::Value> =
        fake.config().into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
    config.insert("connector.class".into(), "salesforce-sink".into());
    config.insert("topics".into(), topic.clone().into());
    config.insert("salesforce.field.mapping".into(), "uid:Customer_Id__c".into());
    config.insert("salesforce.max.in.flight.requests".into(), in_flight.into());
    config.insert("consumer.max.poll.records".into(), "2000".into());
    config.insert("offset.flush.interval.ms".into(), "200".into());
    let started = Instant::now();
    let (code, created) = w.request("POST", "/connectors", Some(&json!({"name": name, "config": config}).to_string()));
    assert_eq!(code, 201, "{created}");
    let group = format!("connect-{name}");
    wait_until("the commit to reach the end", Duration::from_secs(600), || {
        (committed_offset(&group, &topic, 0) == Some(end)).then_some(())
    });
    let rate = end as f64 / started.elapsed().as_secs_f64();
    let all = fake.all();
    assert_eq!(all.len(), CUSTOMERS);
    assert!(all.values().all(|r| r["Version__c"] == 3), "the last version of every customer");
    println!("salesforce-sink, 50 ms per call, {in_flight} in flight: {end} records, {rate:.0} records/s");
    rate
}

#[test]
fn one_task_with_one_and_with_four_requests_in_flight_writes_the_last_versions() {
    let one = run("1");
    let four = run("4");
    println!("four in flight / one: {:.2}x", four / one);
}
