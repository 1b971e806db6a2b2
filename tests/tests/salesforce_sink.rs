//! salesforce-sink through a real worker and broker, against the Salesforce
//! fake (`tests/src/salesforce.rs`): customers in three versions end as the
//! last version each, in requests of at most 200 rows with no External ID
//! twice; records failing a validation rule land on the rejected topic with
//! the error code, unmappable ones in the DLQ; a worker killed while a
//! request is unanswered commits nothing past it and the restarted worker
//! reaches the same final state; the daily limit pauses the task without
//! losing or committing anything; the JWT bearer flow signs in.
//!
//! Build first, in the test's profile: `cargo build -p sluice-runtime -p
//! sluice-salesforce-sink` (dev/test builds the workspace).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use serde_json::{json, Value};
use sluice_tests::{
    committed_offset, consume, create_topic, header, produce, salesforce::SalesforceFake, unique, wait_until,
    WorkerProcess,
};

const OBJECT: &str = "Contact";
const EXT: &str = "Customer_Id__c";
const FIELDS: &[&str] = &["LastName", "Email", "Version__c"];
const TIMEOUT: Duration = Duration::from_secs(240);

fn fake() -> SalesforceFake {
    SalesforceFake::start(OBJECT, EXT, FIELDS)
}

/// Customer `c`'s version `v`: customers with `c % 100 == 7` break the
/// org's validation rule (their Email is "invalid") in every version.
fn customer(c: usize, v: usize) -> String {
    let email = if c % 100 == 7 { "invalid".to_string() } else { format!("c{c}@example.com") };
    json!({"uid": format!("C-{c}"), "LastName": format!("Name {c} v{v}"), "Email": email, "Version__c": v}).to_string()
}

/// What was produced, per partition: offsets of each (customer, version),
/// and of the unmappable records.
#[derive(Default)]
struct Produced {
    versions: HashMap<(usize, usize), (i32, i64)>,
    unmappable: BTreeSet<(i32, i64)>,
    ends: BTreeMap<i32, i64>,
}

/// `customers` customers, 3 versions each, over `partitions` partitions
/// (customer c in partition c % partitions); in blocks of 100 customers,
/// version 1 of each, then 2, then 3, so one batch often holds several
/// versions of a customer. With `unmappable`, after every 99th record of a
/// partition one record without the External ID.
fn produce_customers(topic: &str, partitions: i32, customers: usize, unmappable: bool) -> Produced {
    let mut produced = Produced::default();
    for p in 0..partitions {
        let mine: Vec<usize> = (0..customers).filter(|c| c % partitions as usize == p as usize).collect();
        let mut values: Vec<(Option<(usize, usize)>, String)> = Vec::new();
        for block in mine.chunks(100) {
            for v in 1..=3 {
                for &c in block {
                    values.push((Some((c, v)), customer(c, v)));
                    if unmappable && values.len() % 100 == 99 {
                        values.push((None, json!({"uid": null, "LastName": "no id"}).to_string()));
                    }
                }
            }
        }
        let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|(_, v)| (None, Some(v.as_str()))).collect();
        let offsets = produce(topic, p, &records);
        for ((what, _), offset) in values.iter().zip(&offsets) {
            match what {
                Some(cv) => {
                    produced.versions.insert(*cv, (p, *offset));
                }
                None => {
                    produced.unmappable.insert((p, *offset));
                }
            }
        }
        produced.ends.insert(p, offsets.last().map(|o| o + 1).unwrap_or(0));
    }
    produced
}

fn create_connector(w: &WorkerProcess, name: &str, topic: &str, fake: &SalesforceFake, extra: &[(&str, &str)]) {
    let mut config = serde_json::Map::new();
    config.insert("connector.class".into(), "io.confluent.salesforce.SalesforceSObjectSinkConnector".into());
    config.insert("topics".into(), topic.into());
    for (k, v) in fake.config() {
        config.insert(k.into(), v.into());
    }
    config.insert("salesforce.field.mapping".into(), format!("uid:{EXT}").into());
    config.insert("offset.flush.interval.ms".into(), "300".into());
    for (k, v) in extra {
        config.insert(k.to_string(), Value::String(v.to_string()));
    }
    let body = json!({"name": name, "config": config});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
}

fn wait_committed(group: &str, topic: &str, ends: &BTreeMap<i32, i64>, w: &WorkerProcess) {
    for (p, end) in ends {
        wait_until(&format!("the commit of partition {p} to reach {end}; log:\n{}", tail(w)), TIMEOUT, || {
            (committed_offset(group, topic, *p) == Some(*end)).then_some(())
        });
    }
}

fn tail(w: &WorkerProcess) -> String {
    let log = w.log_text();
    log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Every request the fake took held at most 200 rows and no key twice.
fn assert_requests_well_formed(fake: &SalesforceFake) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.keys.len() <= 200, "{} {} held {} rows", r.method, r.path, r.keys.len());
        let distinct: BTreeSet<&String> = r.keys.iter().collect();
        assert_eq!(distinct.len(), r.keys.len(), "{} {} held an External ID twice", r.method, r.path);
    }
}

/// The fake holds version 3 of every customer; with the validation `rule`
/// on, of every customer but the rule breakers, and none of those.
fn assert_last_versions(fake: &SalesforceFake, customers: usize, rule: bool) {
    let all = fake.all();
    let breakers = if rule { (0..customers).filter(|c| c % 100 == 7).count() } else { 0 };
    assert_eq!(all.len(), customers - breakers, "one record per customer (that passes the validation rule)");
    for c in 0..customers {
        let stored = all.get(&format!("C-{c}"));
        if rule && c % 100 == 7 {
            assert!(stored.is_none(), "C-{c} breaks the rule and is not written");
            continue;
        }
        let stored = stored.unwrap_or_else(|| panic!("C-{c} missing"));
        // Bulk API 2.0 uploads CSV: the fake keeps its text.
        assert_eq!(stored["Version__c"].to_string().trim_matches('"'), "3", "C-{c}: {stored:?}");
        assert_eq!(stored["LastName"], format!("Name {c} v3"));
    }
}

#[test]
fn twenty_thousand_customers_in_three_versions_end_as_the_last_version_with_refusals_routed() {
    const CUSTOMERS: usize = 20_000;
    let fake = fake();
    fake.add_validation_rule("Email", json!("invalid"), "Email must be a valid address");
    // Blips that must not change the outcome: locked rows (retried alone),
    // a few 503s, a token that expires mid-stream.
    for c in [11, 4_013, 15_999] {
        fake.inject_record_error(
            &format!("C-{c}"),
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access to this record",
            2,
        );
    }
    let topic = unique("sf-customers");
    let (dlq, rejected) = (unique("sf-dlq"), unique("sf-rejected"));
    create_topic(&topic, 2);
    let produced = produce_customers(&topic, 2, CUSTOMERS, true);

    let w = WorkerProcess::start(&unique("sf"), &[], &[]);
    let name = unique("sf-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", &dlq),
            ("errors.deadletterqueue.context.headers.enable", "true"),
            ("errors.rejected.topic.name", &rejected),
            ("salesforce.max.in.flight.requests", "4"),
        ],
    );
    wait_until("the first writes", TIMEOUT, || (fake.requests().len() >= 5).then_some(()));
    fake.expire_tokens();
    fake.fail_next(3);
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);

    assert_last_versions(&fake, CUSTOMERS, true);
    assert_requests_well_formed(&fake);
    assert!(fake.tokens_issued() >= 2, "the expired session was renewed");

    // Exactly the rule breakers' records on the rejected topic, with the code.
    let breaking: BTreeSet<(i32, i64)> =
        produced.versions.iter().filter(|((c, _), _)| c % 100 == 7).map(|(_, at)| *at).collect();
    let routed = consume(&rejected, 1, breaking.len(), Duration::from_secs(60));
    let at = |m: &rdkafka::message::OwnedMessage| -> (i32, i64) {
        let p = header(m, "__connect.errors.partition").unwrap().parse().unwrap();
        (p, header(m, "__connect.errors.offset").unwrap().parse().unwrap())
    };
    assert_eq!(routed.iter().map(at).collect::<BTreeSet<_>>(), breaking);
    let message = header(&routed[0], "__connect.errors.exception.message").unwrap();
    assert!(
        message.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION: Email must be a valid address [fields: Email]"),
        "{message}"
    );
    assert_eq!(header(&routed[0], "__connect.errors.exception.class.name").as_deref(), Some("Rejected"));
    for m in &routed {
        assert_target_headers(m, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Email must be a valid address", Some("Email"));
    }

    // Exactly the unmappable records in the DLQ, naming the field; Salesforce
    // never saw them, so no target headers.
    let dead = consume(&dlq, 1, produced.unmappable.len(), Duration::from_secs(60));
    assert_eq!(dead.iter().map(at).collect::<BTreeSet<_>>(), produced.unmappable);
    let message = header(&dead[0], "__connect.errors.exception.message").unwrap();
    assert!(message.contains("Customer_Id__c is missing"), "{message}");
    assert!(dead.iter().all(|m| header(m, "__sluice.errors.target.code").is_none()));
}

/// Salesforce's error code, message and fields in headers of their own
/// (`fields` absent when Salesforce named none).
fn assert_target_headers(m: &rdkafka::message::OwnedMessage, code: &str, message: &str, fields: Option<&str>) {
    assert_eq!(header(m, "__sluice.errors.target.code").as_deref(), Some(code));
    assert_eq!(header(m, "__sluice.errors.target.message").as_deref(), Some(message));
    assert_eq!(header(m, "__sluice.errors.target.fields").as_deref(), fields);
}

#[test]
fn a_refused_record_in_the_dlq_carries_salesforces_code_message_and_fields_as_headers_of_their_own() {
    const CUSTOMERS: usize = 300;
    let fake = fake();
    fake.add_validation_rule("Email", json!("invalid"), "Email must be a valid address");
    let topic = unique("sf-details");
    let dlq = unique("sf-details-dlq");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let w = WorkerProcess::start(&unique("sf-details"), &[], &[]);
    let name = unique("sf-details-sink");
    // No rejected topic: a business refusal goes to the DLQ.
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", &dlq),
            ("errors.deadletterqueue.context.headers.enable", "true"),
        ],
    );
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    let breaking: BTreeSet<i64> =
        produced.versions.iter().filter(|((c, _), _)| c % 100 == 7).map(|(_, (_, o))| *o).collect();
    let dead = consume(&dlq, 1, breaking.len(), Duration::from_secs(60));
    let offsets: BTreeSet<i64> =
        dead.iter().map(|m| header(m, "__connect.errors.offset").unwrap().parse().unwrap()).collect();
    assert_eq!(offsets, breaking);
    for m in &dead {
        assert_target_headers(m, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Email must be a valid address", Some("Email"));
        // Kafka Connect's headers are as they were, for existing DLQ tooling.
        assert_eq!(header(m, "__connect.errors.exception.class.name").as_deref(), Some("Rejected"));
        assert_eq!(header(m, "__connect.errors.stage").as_deref(), Some("TASK_PUT"));
        let message = header(m, "__connect.errors.exception.message").unwrap();
        assert!(
            message.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION: Email must be a valid address [fields: Email]"),
            "{message}"
        );
    }
}

#[test]
fn a_worker_killed_while_a_request_is_unanswered_commits_nothing_past_it_and_the_restart_ends_the_same() {
    const CUSTOMERS: usize = 3_000;
    let fake = fake();
    let topic = unique("sf-kill");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let mut w = WorkerProcess::start(&unique("sf-kill"), &[], &[]);
    let name = unique("sf-kill-sink");
    let group = format!("connect-{name}");
    // Eight requests are answered (some of them committed), the ninth is
    // held: set before the connector starts, so a fast sink cannot finish
    // before the hold.
    fake.hold_after(8);
    create_connector(&w, &name, &topic, &fake, &[]);

    let held = wait_until("a request to be held", TIMEOUT, || {
        let held = fake.held();
        (!held.is_empty()).then_some(held)
    });
    w.kill();
    let committed = committed_offset(&group, &topic, 0).unwrap_or(0);
    // The offsets of the versions the unanswered request carried.
    let unanswered: Vec<i64> = held
        .iter()
        .flatten()
        .map(|r| {
            let c: usize = r[EXT].as_str().unwrap()[2..].parse().unwrap();
            let v = r["Version__c"].as_u64().unwrap() as usize;
            produced.versions[&(c, v)].1
        })
        .collect();
    let first_unanswered = *unanswered.iter().min().unwrap();
    assert!(
        committed <= first_unanswered,
        "committed {committed} is past offset {first_unanswered}, carried by a request never answered"
    );

    fake.release();
    w.restart();
    wait_committed(&group, &topic, &produced.ends, &w);
    assert_last_versions(&fake, CUSTOMERS, false);
    assert_requests_well_formed(&fake);
}

#[test]
fn the_daily_limit_pauses_the_task_without_losing_or_committing_anything() {
    const CUSTOMERS: usize = 300;
    let fake = fake();
    fake.exceed_daily_limit_for(Duration::from_secs(30));
    let topic = unique("sf-limit");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let w = WorkerProcess::start(&unique("sf-limit"), &[], &[]);
    let name = unique("sf-limit-sink");
    let group = format!("connect-{name}");
    create_connector(&w, &name, &topic, &fake, &[("salesforce.api.limit.probe.ms", "2000")]);

    wait_until("two refused probes", TIMEOUT, || {
        (fake.requests().iter().filter(|r| r.status == 403).count() >= 2).then_some(())
    });
    assert!(fake.all().is_empty());
    assert_eq!(committed_offset(&group, &topic, 0).unwrap_or(0), 0, "nothing is committed while paused");
    assert!(w.log_text().contains("paused"), "the log says the task is paused");
    // The status says so too: still RUNNING (the user paused nothing), with
    // a message saying until when and why, on both status endpoints.
    let said = wait_until("the task status to say it is paused", TIMEOUT, || {
        let (code, status) = w.request("GET", &format!("/connectors/{name}/status"), None);
        assert_eq!(code, 200, "{status}");
        let task = status["tasks"][0].clone();
        task["message"].as_str().map(str::to_string).map(|m| (task, m))
    });
    let (task, message) = said;
    assert_eq!(task["state"], "RUNNING", "{task}");
    assert!(task.get("trace").is_none(), "a pause is not a failure: {task}");
    assert!(
        message.starts_with("paused until ") && message.contains(" UTC for the Salesforce API allocation"),
        "{message}"
    );
    assert!(message.contains("REQUEST_LIMIT_EXCEEDED"), "it says why: {message}");
    let (code, alone) = w.request("GET", &format!("/connectors/{name}/tasks/0/status"), None);
    assert_eq!(code, 200, "{alone}");
    assert!(alone["message"].as_str().is_some_and(|m| m.starts_with("paused until ")), "{alone}");

    wait_committed(&group, &topic, &produced.ends, &w);
    assert_last_versions(&fake, CUSTOMERS, false);
    // Resumed: the message is gone, the task still RUNNING.
    wait_until("the status message to clear once resumed", TIMEOUT, || {
        let (_, status) = w.request("GET", &format!("/connectors/{name}/tasks/0/status"), None);
        (status["state"] == "RUNNING" && status.get("message").is_none()).then_some(())
    });
}

#[test]
fn above_its_share_of_the_daily_allocation_the_task_writes_one_batch_per_probe_and_loses_nothing() {
    const CUSTOMERS: usize = 300;
    let fake = fake();
    // 79 of 100 used: the first answer's Sforce-Limit-Info reaches the 0.8 share.
    fake.set_api_usage(79, 100);
    // Sessions shorter than the test: renewed on the 401 they end in.
    fake.set_token_lifetime(Duration::from_secs(3));
    let topic = unique("sf-share");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let w = WorkerProcess::start(&unique("sf-share"), &[], &[]);
    let name = unique("sf-share-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("salesforce.api.limit.probe.ms", "1000"),
            ("salesforce.batch.size", "50"),
            ("consumer.max.poll.records", "100"),
        ],
    );
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    assert_last_versions(&fake, CUSTOMERS, false);
    assert!(w.log_text().contains("salesforce.api.limit.share"), "the log names the share it paused on");
    assert!(fake.requests().iter().all(|r| r.status == 200), "nothing was refused: the task kept within its share");
}

#[test]
fn the_jwt_bearer_flow_signs_in_with_the_connected_app_key() {
    let pem_path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../connectors/salesforce-sink/tests/fixtures/jwt-test-key.pem");
    let pem_text = std::fs::read_to_string(pem_path).unwrap();
    let der = pem_der(&pem_text);
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let public = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
    let fake = SalesforceFake::start_with_jwt(OBJECT, EXT, FIELDS, public);
    let topic = unique("sf-jwt");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, 100, false);
    let w = WorkerProcess::start(&unique("sf-jwt"), &[], &[]);
    let name = unique("sf-jwt-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("salesforce.grant.type", "JWT_BEARER"),
            ("salesforce.consumer.secret", ""),
            ("salesforce.username", sluice_tests::salesforce::USERNAME),
            ("salesforce.jwt.private.key.path", pem_path),
        ],
    );
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    assert_last_versions(&fake, 100, false);
    assert_eq!(fake.tokens_issued(), 1, "one token, reused");
}

#[test]
fn the_password_flow_is_refused_at_submit_with_what_to_use() {
    let fake = fake();
    let w = WorkerProcess::start(&unique("sf-pw"), &[], &[]);
    let mut config: serde_json::Map<String, Value> =
        fake.config().into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect();
    config.insert("connector.class".into(), "salesforce-sink".into());
    config.insert("topics".into(), "anything".into());
    config.insert("salesforce.grant.type".into(), "PASSWORD".into());
    let body = json!({"name": unique("sf-pw"), "config": config});
    let (code, answer) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 400, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    for needle in ["salesforce.grant.type", "2027-02-20", "JWT_BEARER", "CLIENT_CREDENTIALS"] {
        assert!(message.contains(needle), "{message} lacks {needle}");
    }
}

/// The DER of a PEM text (one block).
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

#[test]
fn through_bulk_api_2_jobs_twenty_thousand_customers_end_as_the_last_version_with_refusals_rejected() {
    const CUSTOMERS: usize = 20_000;
    let fake = fake();
    fake.add_validation_rule("Email", json!("invalid"), "Email must be a valid address");
    let topic = unique("sf-bulk");
    let rejected = unique("sf-bulk-rejected");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let w = WorkerProcess::start(&unique("sf-bulk"), &[], &[]);
    let name = unique("sf-bulk-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("salesforce.bulk.threshold", "500"),
            ("salesforce.bulk.poll.ms", "100"),
            ("consumer.max.poll.records", "6000"),
            ("errors.tolerance", "all"),
            ("errors.rejected.topic.name", &rejected),
            ("errors.deadletterqueue.context.headers.enable", "true"),
        ],
    );
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    assert_last_versions(&fake, CUSTOMERS, true);
    let jobs = fake.bulk_jobs();
    assert!(!jobs.is_empty(), "the batches went through Bulk API 2.0");
    for job in &jobs {
        assert_eq!(job.state, "JobComplete");
        let distinct: BTreeSet<&String> = job.keys.iter().collect();
        assert_eq!(distinct.len(), job.keys.len(), "job {} holds an External ID twice", job.id);
    }
    let breaking: BTreeSet<i64> =
        produced.versions.iter().filter(|((c, _), _)| c % 100 == 7).map(|(_, (_, o))| *o).collect();
    let routed = consume(&rejected, 1, breaking.len(), Duration::from_secs(60));
    let offsets: BTreeSet<i64> =
        routed.iter().map(|m| header(m, "__connect.errors.offset").unwrap().parse().unwrap()).collect();
    assert_eq!(offsets, breaking);
    let message = header(&routed[0], "__connect.errors.exception.message").unwrap();
    assert!(
        message.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION: Email must be a valid address [fields: Email]"),
        "{message}"
    );
    // From the job's failedResults (`sf__Error`), the same separate headers.
    for m in &routed {
        assert_target_headers(m, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Email must be a valid address", Some("Email"));
    }
}

#[test]
fn a_bulk_job_left_running_by_a_killed_worker_finishes_before_the_restarted_task_sends_anything() {
    const CUSTOMERS: usize = 2_000;
    let fake = fake();
    // The first job runs for 40 polls (4 s at 100 ms): longer than the kill.
    fake.set_job_polls(40);
    let topic = unique("sf-bulk-kill");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let mut w = WorkerProcess::start(&unique("sf-bulk-kill"), &[], &[]);
    let name = unique("sf-bulk-kill-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("salesforce.bulk.threshold", "500"),
            ("salesforce.bulk.poll.ms", "100"),
            ("consumer.max.poll.records", "2000"),
        ],
    );
    // Closed: its id is in the partition's note (recorded before the close).
    let first = wait_until("the first job to be closed", TIMEOUT, || {
        fake.events().into_iter().find(|(kind, _)| *kind == "job-closed").map(|(_, id)| id)
    });
    fake.set_job_polls(1);
    w.kill();
    let before_restart = fake.events().len();
    w.restart();
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    let events = fake.events();
    let completed = events.iter().position(|(kind, id)| *kind == "job-complete" && *id == first);
    let completed = completed.expect("the restarted task saw the killed run's job finish");
    let sent = events[before_restart..].iter().position(|(kind, _)| *kind == "job-created" || *kind == "collection");
    let sent = before_restart + sent.expect("the restarted task sent");
    assert!(completed < sent, "the restarted task sent before job {first} of the killed run finished: {events:?}");
    assert_last_versions(&fake, CUSTOMERS, false);
}

#[test]
fn with_the_daily_bulk_batches_at_its_share_the_task_writes_through_collections() {
    const CUSTOMERS: usize = 1_000;
    let fake = fake();
    fake.set_bulk_batches(12_000, 15_000);
    let topic = unique("sf-bulk-share");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let w = WorkerProcess::start(&unique("sf-bulk-share"), &[], &[]);
    let name = unique("sf-bulk-share-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[("salesforce.bulk.threshold", "100"), ("consumer.max.poll.records", "1000")],
    );
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    assert_last_versions(&fake, CUSTOMERS, false);
    assert!(fake.bulk_jobs().is_empty(), "no job past the share of the daily Bulk batches");
    assert_requests_well_formed(&fake);
}

#[test]
fn a_bulk_job_counts_its_records_as_daily_batches_and_never_passes_the_share() {
    // 36,000 records, 12,000 rows once a put folds the versions: more than
    // the one batch (10,000 records) left under the share of 12,000.
    const CUSTOMERS: usize = 12_000;
    let fake = fake();
    fake.set_bulk_batches(11_999, 15_000);
    let topic = unique("sf-bulk-records");
    create_topic(&topic, 1);
    let produced = produce_customers(&topic, 1, CUSTOMERS, false);
    let w = WorkerProcess::start(&unique("sf-bulk-records"), &[], &[]);
    let name = unique("sf-bulk-records-sink");
    create_connector(
        &w,
        &name,
        &topic,
        &fake,
        &[
            ("salesforce.bulk.threshold", "100"),
            ("salesforce.bulk.poll.ms", "100"),
            ("consumer.max.poll.records", "36000"),
        ],
    );
    wait_committed(&format!("connect-{name}"), &topic, &produced.ends, &w);
    assert_last_versions(&fake, CUSTOMERS, false);
    assert!(
        fake.bulk_batches_used() <= 12_000,
        "the jobs took {} of 15,000 daily batches, past the share of 12,000",
        fake.bulk_batches_used()
    );
    for job in fake.bulk_jobs() {
        assert!(job.keys.len() <= 10_000, "job {} of {} rows needed two batches", job.id, job.keys.len());
    }
    assert_requests_well_formed(&fake);
}
