//! The s3-sink through a real worker: Tansu → sluice → SeaweedFS.
//!
//! What users of the Confluent S3 sink rely on, checked end to end: every
//! record lands exactly once under Confluent's object names; offsets are
//! committed only after the object completed — across `kill -9` at three
//! points of an upload and across an S3 outage; bad records go to the DLQ
//! with their context headers while the good ones' objects are unaffected;
//! over HTTPS as over plain HTTP; with server-side encryption.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sluice_tests::{
    committed_offset, consume, create_topic, header, produce_at, produce_bytes_at,
    s3::Bucket,
    s3_proxy::{S3Proxy, Trap},
    service_env, unique, wait_until, RawRecord, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(180);

/// One test's own topic (created with `partitions`), object directory,
/// connector name and that connector's consumer group, unique per run.
struct Case {
    topic: String,
    dir: String,
    name: String,
    group: String,
}

impl Case {
    fn new(label: &str, partitions: i32) -> Case {
        let name = unique(&format!("{label}-sink"));
        let case =
            Case { topic: unique(label), dir: unique(&format!("{label}-dir")), group: format!("connect-{name}"), name };
        create_topic(&case.topic, partitions);
        case
    }
}

/// An s3-sink config writing `topic` under `dir` through `store_url`.
fn s3_config(topic: &str, dir: &str, store_url: &str, extra: &[(&str, &str)]) -> Value {
    let mut config = sluice_tests::s3::sink_config(json!({
        "connector.class": "io.confluent.connect.s3.S3SinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "store.url": store_url,
        "topics.dir": dir,
        "format.class": "io.confluent.connect.s3.format.json.JsonFormat",
        // Quick commits, so a commit that should not happen would show.
        "offset.flush.interval.ms": "500",
    }));
    for (k, v) in extra {
        config[*k] = json!(v);
    }
    config
}

fn create(worker: &WorkerProcess, name: &str, config: Value) {
    let body = json!({ "name": name, "config": config }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    assert!(code == 201, "creating {name}: HTTP {code} {reply}\nworker log:\n{}", tail(worker));
}

fn tail(worker: &WorkerProcess) -> String {
    let log = worker.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A ~1 KiB order-like JSON document with a sequence number.
fn order(seq: usize) -> String {
    json!({ "seq": seq, "order": format!("ORD-{:06}", seq % 977), "status": "CREATED", "pad": "x".repeat(960) })
        .to_string()
}

/// Produces `values` (keyed by order) to one partition; returns the end offset.
fn produce_values(topic: &str, partition: i32, values: &[String], timestamp: Option<i64>) -> i64 {
    let keys: Vec<String> = values.iter().map(|v| format!("k{}", v.len() % 7)).collect();
    let records: Vec<(Option<&str>, Option<&str>)> =
        keys.iter().zip(values).map(|(k, v)| (Some(k.as_str()), Some(v.as_str()))).collect();
    produce_at(topic, partition, &records, timestamp).last().map_or(0, |o| o + 1)
}

/// The `seq` of every JSON line in every object under `dir`, per object key.
fn sequences(s3: &Bucket, dir: &str) -> BTreeMap<String, Vec<u64>> {
    s3.keys(dir)
        .into_iter()
        .map(|key| {
            let seqs = s3
                .text(&key)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["seq"].as_u64().expect("seq"))
                .collect();
            (key, seqs)
        })
        .collect()
}

/// Polls the group's committed offset until it reaches `end`; on timeout the
/// panic shows the worker's log.
fn wait_committed(worker: &WorkerProcess, group: &str, topic: &str, partition: i32, end: i64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let committed = committed_offset(group, topic, partition);
        if committed == Some(end) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} committed {committed:?} on {topic}/{partition}, not {end}, within {TIMEOUT:?}\nworker log:\n{}",
            tail(worker)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs one crash scenario: the proxy holds the upload at `trap`, the worker
/// is killed there, a new worker process takes over, and the bucket must
/// end up with every record exactly once and no open multipart upload.
fn kill_at(trap: Trap, timed_partitioner: bool) {
    let s3 = Bucket::new();
    let proxy = S3Proxy::start(&service_env("S3_ENDPOINT"));
    let Case { topic, dir, name, group } = Case::new("s3-kill", 1);
    // 1 KiB records, 5 MiB parts, 11,000 records an object: three parts each.
    let values: Vec<String> = (0..22_000).map(order).collect();
    // A fixed record time (2026-11-20 13:45 UTC) so time-based paths are
    // known in advance and must be the same after the restart.
    let record_time = 1_795_182_300_000;
    let end = produce_values(&topic, 0, &values, Some(record_time));
    assert_eq!(end, 22_000);

    proxy.arm(trap);
    let mut worker = WorkerProcess::start(&unique("s3-kill-cluster"), &[], &[]);
    let mut extra = vec![("flush.size", "11000"), ("s3.part.size", "5242880")];
    if timed_partitioner {
        extra.extend([
            ("partitioner.class", "io.confluent.connect.storage.partitioner.TimeBasedPartitioner"),
            ("path.format", "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"),
            ("partition.duration.ms", "3600000"),
            ("timestamp.extractor", "Record"),
            ("locale", "en-US"),
            // A named zone, as Confluent configs have them: 13:45 UTC is 14:45
            // in Berlin in November (+01:00).
            ("timezone", "Europe/Berlin"),
        ]);
    }
    create(&worker, &name, s3_config(&topic, &dir, &proxy.url, &extra));
    let held = proxy.wait_sprung(TIMEOUT);
    let first_key = if timed_partitioner {
        format!("{dir}/{topic}/year=2026/month=11/day=20/hour=14/{topic}+0+0000000000.json")
    } else {
        format!("{dir}/{topic}/partition=0/{topic}+0+0000000000.json")
    };
    match trap {
        Trap::UploadPart(_) | Trap::CompleteRequest => {
            assert!(s3.keys(&dir).is_empty(), "no object may exist while {held} is held");
            // The task goes on with the next object while the first completes
            // in the background: its upload may be open too.
            let open = s3.open_uploads(&dir);
            assert!(open.contains(&first_key), "the held object's upload is open: {open:?}");
        }
        Trap::CompleteResponse => {
            assert_eq!(s3.keys(&dir), vec![first_key.clone()], "the object completed in S3 before the answer was held");
        }
    }
    // However long the answer is held, the offset must not pass the object
    // the worker has not seen complete.
    let committed = committed_offset(&group, &topic, 0);
    assert!(committed.unwrap_or(0) == 0, "committed {committed:?} before the worker saw its object complete");

    worker.kill();
    proxy.reset();
    worker.restart();
    wait_committed(&worker, &group, &topic, 0, end);

    let objects = sequences(&s3, &dir);
    let second_key = first_key.replace("+0000000000.json", "+0000011000.json");
    assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), vec![first_key.clone(), second_key.clone()]);
    assert_eq!(objects[&first_key], (0..11_000).collect::<Vec<u64>>(), "first object holds 0..11000 once, in order");
    assert_eq!(objects[&second_key], (11_000..22_000).collect::<Vec<u64>>(), "second object holds 11000..22000");
    let (_, etag) = s3.get(&first_key);
    assert!(etag.trim_matches('"').ends_with("-3"), "a three-part object expected, ETag {etag}");
    assert!(s3.open_uploads(&dir).is_empty(), "a multipart upload was left open: {:?}", s3.open_uploads(&dir));
}

#[test]
fn kill_9_mid_part_upload_then_restart_writes_every_record_once() {
    kill_at(Trap::UploadPart(2), false);
}

#[test]
fn kill_9_before_completion_then_restart_writes_every_record_once() {
    kill_at(Trap::CompleteRequest, false);
}

#[test]
fn kill_9_after_completion_before_commit_rewrites_the_same_time_partitioned_object() {
    kill_at(Trap::CompleteResponse, true);
}

/// The end offsets of completed objects, per Kafka partition, contiguous from 0.
fn durable_end(s3: &Bucket, dir: &str, partitions: i32) -> Vec<i64> {
    let objects = sequences(s3, dir);
    (0..partitions)
        .map(|p| {
            let mut end = 0i64;
            let mut starts: Vec<(i64, usize)> = objects
                .iter()
                .filter(|(k, _)| k.contains(&format!("/partition={p}/")))
                .map(|(k, v)| {
                    let start = k.rsplit('+').next().and_then(|s| s.strip_suffix(".json")).expect("offset");
                    (start.parse().expect("offset digits"), v.len())
                })
                .collect();
            starts.sort();
            for (start, len) in starts {
                if start == end {
                    end += len as i64;
                }
            }
            end
        })
        .collect()
}

#[test]
fn an_s3_outage_holds_offsets_back_and_the_task_recovers_without_loss_or_duplicates() {
    let s3 = Bucket::new();
    let proxy = S3Proxy::start(&service_env("S3_ENDPOINT"));
    let Case { topic, dir, name, group } = Case::new("s3-outage", 2);
    let small = |seq: usize| json!({ "seq": seq, "order": format!("ORD-{seq}") }).to_string();
    let first: Vec<Vec<String>> =
        (0..2).map(|p| (0..5_000).map(|i| small(p * 1_000_000 + i)).collect::<Vec<_>>()).collect();
    for (p, values) in first.iter().enumerate() {
        produce_values(&topic, p as i32, values, None);
    }
    let worker = WorkerProcess::start(&unique("s3-outage-cluster"), &[], &[]);
    create(&worker, &name, s3_config(&topic, &dir, &proxy.url, &[("flush.size", "1000")]));
    wait_until("objects of both partitions and a first commit", TIMEOUT, || {
        let ok = (0..2).all(|p| committed_offset(&group, &topic, p).unwrap_or(0) > 0);
        ok.then_some(())
    });

    proxy.set_down(true);
    let second: Vec<Vec<String>> =
        (0..2).map(|p| (5_000..10_000).map(|i| small(p * 1_000_000 + i)).collect::<Vec<_>>()).collect();
    for (p, values) in second.iter().enumerate() {
        produce_values(&topic, p as i32, values, None);
    }
    // 30 s without S3: the commits never pass what S3 holds, and the
    // task keeps retrying instead of failing or routing records to a DLQ.
    let outage = Instant::now();
    let mut checks = 0;
    while outage.elapsed() < Duration::from_secs(30) {
        let durable = durable_end(&s3, &dir, 2);
        for (p, bound) in durable.iter().enumerate() {
            let committed = committed_offset(&group, &topic, p as i32).unwrap_or(0);
            assert!(committed <= *bound, "partition {p}: committed {committed} passes the objects in S3 (end {bound})");
            assert!(*bound < 10_000, "partition {p}: objects beyond the outage's start were written ({bound})");
        }
        checks += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(checks > 10, "the outage was checked only {checks} times");
    let (_, status) = worker.get(&format!("/connectors/{name}/status"));
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "the task must ride out the outage: {status}");

    proxy.set_down(false);
    for p in 0..2 {
        wait_committed(&worker, &group, &topic, p, 10_000);
    }
    let objects = sequences(&s3, &dir);
    for p in 0..2u64 {
        let mut seen: Vec<u64> = objects
            .iter()
            .filter(|(k, _)| k.contains(&format!("/partition={p}/")))
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        let expected: Vec<u64> = (0..10_000).map(|i| p * 1_000_000 + i).collect();
        seen.sort();
        assert_eq!(seen.len(), expected.len(), "partition {p}: {} records in S3, 10000 expected", seen.len());
        assert!(seen == expected, "partition {p}: records lost or duplicated across the outage");
    }
    assert!(s3.open_uploads(&dir).is_empty(), "uploads left open: {:?}", s3.open_uploads(&dir));
}

#[test]
fn invalid_and_null_records_go_to_the_dlq_with_context_and_good_objects_are_unaffected() {
    // The s3-sink's json format checks each value itself.
    bad_records_reach_the_dlq_and_good_objects_are_unaffected(&[], "TASK_PUT");
}

#[test]
fn with_the_json_converter_bad_values_are_caught_once_by_the_runtime_and_still_reach_the_dlq() {
    // The runtime's JsonConverter checks them, so the s3-sink does not check
    // again: a bad value must still never reach an object.
    let converter = [
        ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
        ("value.converter.schemas.enable", "false"),
    ];
    bad_records_reach_the_dlq_and_good_objects_are_unaffected(&converter, "VALUE_CONVERTER");
}

/// Ten good records with a value that is not JSON, a tombstone and a value
/// that is not UTF-8 between them; `bad_stage` is where the two bad values
/// are caught (the tombstone always at the sink's put).
fn bad_records_reach_the_dlq_and_good_objects_are_unaffected(converter: &[(&str, &str)], bad_stage: &str) {
    let s3 = Bucket::new();
    let Case { topic, dir, name, group } = Case::new("s3-dlq", 1);
    let dlq = unique("s3-dlq-errors");
    let good = |seq: u64| json!({ "seq": seq }).to_string().into_bytes();
    type Owned = (Option<Vec<u8>>, Option<Vec<u8>>);
    let mut records: Vec<Owned> = Vec::new();
    for seq in 0..10u64 {
        records.push((Some(format!("k{seq}").into_bytes()), Some(good(seq))));
        if seq == 3 {
            records.push((Some(b"bad-json".to_vec()), Some(b"{\"seq\": 99, oops".to_vec())));
        }
        if seq == 6 {
            records.push((Some(b"tombstone".to_vec()), None));
        }
        if seq == 8 {
            // Well-formed but for its text: JSON is UTF-8.
            records.push((Some(b"bad-utf8".to_vec()), Some(b"{\"seq\": \"\xff\"}".to_vec())));
        }
    }
    let refs: Vec<RawRecord<'_>> = records.iter().map(|(k, v)| (k.as_deref(), v.as_deref())).collect();
    let end = produce_bytes_at(&topic, 0, &refs, None).last().map_or(0, |o| o + 1);
    assert_eq!(end, 13);

    let worker = WorkerProcess::start(&unique("s3-dlq-cluster"), &[], &[]);
    let mut extra = vec![
        ("flush.size", "10"),
        ("behavior.on.null.values", "fail"),
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", dlq.as_str()),
        ("errors.deadletterqueue.context.headers.enable", "true"),
    ];
    extra.extend_from_slice(converter);
    create(&worker, &name, s3_config(&topic, &dir, &service_env("S3_ENDPOINT"), &extra));
    wait_committed(&worker, &group, &topic, 0, end);

    let objects = sequences(&s3, &dir);
    let key = format!("{dir}/{topic}/partition=0/{topic}+0+0000000000.json");
    assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), vec![key.clone()]);
    assert_eq!(objects[&key], (0..10).collect::<Vec<u64>>(), "the good records, once and in order");

    let dead = consume(&dlq, 1, 3, TIMEOUT);
    let by_key: BTreeMap<String, &rdkafka::message::OwnedMessage> = dead
        .iter()
        .map(|m| (String::from_utf8_lossy(rdkafka::Message::key(m).unwrap_or_default()).to_string(), m))
        .collect();
    for (key, offset, words, stage) in [
        ("bad-json", "4", "not JSON", bad_stage),
        ("tombstone", "8", "null value", "TASK_PUT"),
        ("bad-utf8", "11", "invalid UTF-8 at byte 9", bad_stage),
    ] {
        let m = by_key.get(key).unwrap_or_else(|| panic!("{key} is not in the DLQ: {:?}", by_key.keys()));
        assert_eq!(header(m, "__connect.errors.topic").as_deref(), Some(topic.as_str()));
        assert_eq!(header(m, "__connect.errors.partition").as_deref(), Some("0"));
        assert_eq!(header(m, "__connect.errors.offset").as_deref(), Some(offset));
        assert_eq!(header(m, "__connect.errors.connector.name").as_deref(), Some(name.as_str()));
        assert_eq!(header(m, "__connect.errors.stage").as_deref(), Some(stage), "{key}");
        let message = header(m, "__connect.errors.exception.message").unwrap_or_default();
        assert!(message.contains(words), "{key}: the error message {message:?} should say {words:?}");
    }
    assert_eq!(rdkafka::Message::payload(by_key["bad-json"]), Some(&b"{\"seq\": 99, oops"[..]));
    assert_eq!(rdkafka::Message::payload(by_key["tombstone"]), None);
    assert_eq!(rdkafka::Message::payload(by_key["bad-utf8"]), Some(&b"{\"seq\": \"\xff\"}"[..]), "as it came");
}

#[test]
fn a_hundred_thousand_records_over_four_partitions_land_exactly_once_under_confluent_names() {
    let s3 = Bucket::new();
    let Case { topic, dir, name, group } = Case::new("s3-100k", 4);
    // 30k + 30k + 20k + 20k: whole objects of flush.size=10000 each.
    let counts = [30_000u64, 30_000, 20_000, 20_000];
    for (p, count) in counts.iter().enumerate() {
        let values: Vec<String> =
            (0..*count).map(|i| json!({ "seq": p as u64 * 1_000_000 + i, "order": i % 113 }).to_string()).collect();
        produce_values(&topic, p as i32, &values, None);
    }
    let worker = WorkerProcess::start(&unique("s3-100k-cluster"), &[], &[]);
    let config = s3_config(&topic, &dir, &service_env("S3_ENDPOINT"), &[("flush.size", "10000"), ("tasks.max", "2")]);
    create(&worker, &name, config);
    for (p, count) in counts.iter().enumerate() {
        wait_committed(&worker, &group, &topic, p as i32, *count as i64);
    }
    let objects = sequences(&s3, &dir);
    let mut expected_keys = Vec::new();
    for (p, count) in counts.iter().enumerate() {
        for start in (0..*count).step_by(10_000) {
            let key = format!("{dir}/{topic}/partition={p}/{topic}+{p}+{start:010}.json");
            let want: Vec<u64> = (start..start + 10_000).map(|i| p as u64 * 1_000_000 + i).collect();
            assert!(objects.get(&key) == Some(&want), "{key}: missing, or not exactly its records in order");
            expected_keys.push(key);
        }
    }
    expected_keys.sort();
    assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), expected_keys, "no other object may exist");
}

/// Records for two objects of one topic: partition 0 gets ~6.2 MB of ~1 KiB
/// orders, more than one 5 MiB part (a multipart upload of two parts);
/// partition 1 small ones, below one part (a single PUT). With
/// [`TwoObjects::SETTINGS`] each partition's records make one object.
struct TwoObjects {
    topic: String,
    dir: String,
    multipart_bytes: usize,
}

impl TwoObjects {
    const COUNT: usize = 6_000;
    const SETTINGS: [(&'static str, &'static str); 2] = [("flush.size", "6000"), ("s3.part.size", "5242880")];

    fn produce(case: &Case) -> TwoObjects {
        let big: Vec<String> = (0..Self::COUNT).map(order).collect();
        let small: Vec<String> = (0..Self::COUNT).map(|i| json!({ "seq": 1_000_000 + i }).to_string()).collect();
        let bytes = |values: &[String]| values.iter().map(|v| v.len() + 1).sum::<usize>();
        assert!(
            bytes(&big) > 5 << 20 && bytes(&small) < 5 << 20,
            "partition 0 must fill more than one 5 MiB part and partition 1 less than one"
        );
        produce_values(&case.topic, 0, &big, None);
        produce_values(&case.topic, 1, &small, None);
        TwoObjects { topic: case.topic.clone(), dir: case.dir.clone(), multipart_bytes: bytes(&big) }
    }

    /// The multipart object's key, then the single PUT's.
    fn keys(&self) -> [String; 2] {
        let (dir, topic) = (&self.dir, &self.topic);
        [0, 1].map(|p| format!("{dir}/{topic}/partition={p}/{topic}+{p}+0000000000.json"))
    }

    fn wait_committed(&self, worker: &WorkerProcess, group: &str) {
        for partition in [0, 1] {
            wait_committed(worker, group, &self.topic, partition, Self::COUNT as i64);
        }
    }

    /// Exactly these two objects exist, each holds its records once and in
    /// order, the first as two parts and the second as a single PUT, and no
    /// upload stays open. `read` gets an object's bytes and ETag.
    fn assert_exact(&self, s3: &Bucket, read: impl Fn(&str) -> (Vec<u8>, String)) {
        let [multipart, single] = self.keys();
        assert_eq!(s3.keys(&self.dir), vec![multipart.clone(), single.clone()]);
        let seqs = |body: &[u8]| -> Vec<u64> {
            let text = std::str::from_utf8(body).expect("UTF-8 object");
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["seq"].as_u64().expect("seq"))
                .collect()
        };
        let (body, etag) = read(&multipart);
        assert_eq!(seqs(&body), (0..Self::COUNT as u64).collect::<Vec<u64>>(), "every record once, in order");
        assert_eq!(body.len(), self.multipart_bytes, "the object holds exactly the records");
        // A multipart object's ETag ends in -<parts>; a single PUT's does not.
        assert!(etag.trim_matches('"').ends_with("-2"), "{multipart} should be two parts, ETag {etag}");
        let (body, etag) = read(&single);
        assert_eq!(seqs(&body), (1_000_000..1_000_000 + Self::COUNT as u64).collect::<Vec<u64>>());
        assert!(!etag.contains('-'), "{single} should be a single PUT, ETag {etag}");
        assert!(s3.open_uploads(&self.dir).is_empty(), "no multipart upload may stay open");
    }
}

/// A worker that trusts the local server's test CA (rustls reads SSL_CERT_FILE).
fn worker_trusting_the_test_ca(label: &str) -> WorkerProcess {
    let ca = service_env("S3_CA_FILE");
    WorkerProcess::start(&unique(label), &[], &[("SSL_CERT_FILE", ca.as_str())])
}

/// The path every AWS user runs: S3 over HTTPS, where the sink sends bodies
/// as `UNSIGNED-PAYLOAD` (TLS authenticates them). A multipart object (one
/// 5 MiB part and the tail) and a single-PUT object must land exactly once,
/// with the offsets committed and no upload left open.
#[test]
fn over_https_a_multipart_and_a_single_put_object_land_exactly_once() {
    let s3 = Bucket::new();
    let case = Case::new("s3-https", 2);
    let objects = TwoObjects::produce(&case);
    let worker = worker_trusting_the_test_ca("s3-https-cluster");
    create(
        &worker,
        &case.name,
        s3_config(&case.topic, &case.dir, &service_env("S3_HTTPS_ENDPOINT"), &TwoObjects::SETTINGS),
    );
    objects.wait_committed(&worker, &case.group);
    objects.assert_exact(&s3, |key| s3.get(key));
}

/// SSE-C test key: base64 of "0123456789abcdef0123456789abcdef", and the
/// base64 MD5 of those bytes (`openssl dgst -md5 -binary | base64`).
const CUSTOMER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const CUSTOMER_KEY_MD5: &str = "hRasmdxgYDKV3nvbahU1MA==";

/// Confluent's encryption settings reach every object, multipart or not.
/// SSE-S3 objects report AES256. SSE-C objects (over HTTPS, as S3 requires)
/// cannot be read without the customer's key and hold exactly the records
/// with it, which needs the key on every part too. The key never shows in
/// the REST API, and a config that would send it over plain HTTP is a 400
/// naming the key.
#[test]
fn server_side_encryption_covers_multipart_and_single_put_objects() {
    let s3 = Bucket::new();
    let worker = worker_trusting_the_test_ca("s3-sse-cluster");

    let managed = Case::new("s3-sse-s3", 2);
    let managed_objects = TwoObjects::produce(&managed);
    let mut settings = TwoObjects::SETTINGS.to_vec();
    settings.push(("s3.ssea.name", "AES256"));
    create(&worker, &managed.name, s3_config(&managed.topic, &managed.dir, &service_env("S3_ENDPOINT"), &settings));

    let customer = Case::new("s3-sse-c", 2);
    let customer_objects = TwoObjects::produce(&customer);
    settings.push(("s3.sse.customer.key", CUSTOMER_KEY));
    let plain_http = s3_config(&customer.topic, &customer.dir, &service_env("S3_ENDPOINT"), &settings);
    let body = json!({ "name": customer.name, "config": plain_http }).to_string();
    let (code, reply) = worker.request("POST", "/connectors", Some(&body));
    let message = reply["message"].as_str().unwrap_or_default();
    assert_eq!(code, 400, "{reply}");
    assert!(message.contains("s3.sse.customer.key") && !message.contains(CUSTOMER_KEY), "{message}");
    create(
        &worker,
        &customer.name,
        s3_config(&customer.topic, &customer.dir, &service_env("S3_HTTPS_ENDPOINT"), &settings),
    );
    let (_, shown) = worker.get(&format!("/connectors/{}/config", customer.name));
    assert_eq!(shown["s3.sse.customer.key"], "[hidden]", "{shown}");

    managed_objects.wait_committed(&worker, &managed.group);
    for key in managed_objects.keys() {
        assert_eq!(s3.encryption(&key).as_deref(), Some("AES256"), "{key}");
    }
    managed_objects.assert_exact(&s3, |key| s3.get(key));

    customer_objects.wait_committed(&worker, &customer.group);
    for key in customer_objects.keys() {
        assert!(s3.fetch(&key, None).is_err(), "{key} must not be readable without the customer key");
    }
    customer_objects.assert_exact(&s3, |key| {
        s3.fetch(key, Some((CUSTOMER_KEY, CUSTOMER_KEY_MD5))).unwrap_or_else(|e| panic!("{key} with the key: {e}"))
    });
}

/// Tagging comes after an object exists, so it can fail on its own (here a
/// proxy refuses PutObjectTagging with 403, as credentials without
/// s3:PutObjectTagging would). With Confluent's default `ignore` the objects
/// count as written, untagged, with a warning naming each. With `fail`
/// their records stay uncommitted and the task fails; once tagging is
/// allowed again, a restart writes the objects with all their tags.
#[test]
fn a_refused_tagging_is_ignored_by_default_and_fails_the_task_when_asked() {
    let s3 = Bucket::new();
    let proxy = S3Proxy::start(&service_env("S3_ENDPOINT"));
    proxy.set_refuse_tagging(true);
    let worker = WorkerProcess::start(&unique("s3-tags-cluster"), &[], &[]);
    let settings = |on_error| {
        let mut settings = TwoObjects::SETTINGS.to_vec();
        settings.extend([
            ("s3.object.tagging", "true"),
            ("s3.object.tagging.key.value.pairs", "team:data platform"),
            ("s3.object.behavior.on.tagging.error", on_error),
        ]);
        settings
    };
    let expected_tags = |end: usize| -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = [
            ("endOffset", (end - 1).to_string()),
            ("recordCount", end.to_string()),
            ("startOffset", "0".to_string()),
            ("team", "data platform".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        tags.sort();
        tags
    };

    let ignore = Case::new("s3-tags-ignore", 2);
    let ignored = TwoObjects::produce(&ignore);
    create(&worker, &ignore.name, s3_config(&ignore.topic, &ignore.dir, &proxy.url, &settings("ignore")));
    ignored.wait_committed(&worker, &ignore.group);
    ignored.assert_exact(&s3, |key| s3.get(key));
    let log = worker.log_text();
    for key in ignored.keys() {
        assert_eq!(s3.tags(&key), vec![], "the refused tagging left {key} untagged");
        assert!(
            log.lines().any(|l| l.contains("not tagged") && l.contains(&key)),
            "a warning names the untagged {key}\n{}",
            tail(&worker)
        );
    }

    let fail = Case::new("s3-tags-fail", 2);
    let failing = TwoObjects::produce(&fail);
    create(&worker, &fail.name, s3_config(&fail.topic, &fail.dir, &proxy.url, &settings("fail")));
    let status = worker.wait_tasks_state(&fail.name, 1, "FAILED", TIMEOUT);
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("s3:PutObjectTagging") && trace.contains(&fail.dir), "{status}");
    for partition in [0, 1] {
        assert_ne!(
            committed_offset(&fail.group, &fail.topic, partition),
            Some(TwoObjects::COUNT as i64),
            "the untagged objects' records must stay uncommitted"
        );
    }

    proxy.set_refuse_tagging(false);
    let (code, reply) = worker.request("POST", &format!("/connectors/{}/tasks/0/restart", fail.name), None);
    assert!((200..300).contains(&code), "restart: HTTP {code} {reply}");
    failing.wait_committed(&worker, &fail.group);
    failing.assert_exact(&s3, |key| s3.get(key));
    for key in failing.keys() {
        assert_eq!(s3.tags(&key), expected_tags(TwoObjects::COUNT), "{key}");
    }
}
