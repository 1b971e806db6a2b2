//! The sink through connector-kit's harness against an in-process HTTP
//! server on a loopback port.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use connector_kit::harness::{RecordBuilder, SinkHarness};

use super::*;

/// One request the server got.
#[derive(Debug, Clone)]
struct Seen {
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn offsets(&self) -> Vec<i64> {
        self.body.as_array().map_or(vec![], |a| a.iter().filter_map(|e| e["offset"].as_i64()).collect())
    }
}

/// A loopback HTTP server answering each request (one per connection) with
/// what `respond` says, recording every request.
struct Server {
    url: String,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(mut respond: impl FnMut(&Seen) -> (u16, String) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else { continue };
                log.lock().unwrap().push(request.clone());
                let (status, body) = respond(&request);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
        Server { url: format!("http://{addr}/ingest"), addr, seen, stop, thread: Some(thread) }
    }

    /// Answers 200 to everything.
    fn ok() -> Server {
        Server::start(|_| (200, "{}".into()))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every offset of every request, in order of arrival.
    fn offsets(&self) -> Vec<i64> {
        self.seen().iter().flat_map(Seen::offsets).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).ok()?; // the request line
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen { headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) })
}

/// The indices of the elements whose value mentions "bad".
fn bad_indices(seen: &Seen) -> Vec<usize> {
    let elements = seen.body.as_array().cloned().unwrap_or_default();
    (0..elements.len()).filter(|i| elements[*i]["value"].to_string().contains("bad")).collect()
}

/// 400 with `{"rejected":[…]}` for values mentioning "bad", else 200.
fn rejecting_bad(seen: &Seen) -> (u16, String) {
    match bad_indices(seen) {
        bad if bad.is_empty() => (200, "{}".into()),
        bad => (400, json!({ "rejected": bad }).to_string()),
    }
}

fn config(url: &str) -> ConnectorConfig {
    ConnectorConfig::new().with("http.url", url).with("http.retry.max.ms", "0").with("http.timeout.ms", "5000")
}

fn harness(config: ConnectorConfig, partitions: &[TopicPartition]) -> SinkHarness<HttpSink> {
    let mut h = SinkHarness::new(HttpSink, config).unwrap();
    h.open(partitions).unwrap();
    h
}

fn orders(partition: i32) -> TopicPartition {
    TopicPartition::new("orders", partition)
}

#[test]
fn a_batch_reaches_the_server_once_as_json_with_its_offsets_and_token() {
    let server = Server::ok();
    let mut h =
        harness(config(&server.url).with("http.auth.token", "s3cr3t").with("http.batch.size", "2"), &[orders(0)]);
    let mut b = RecordBuilder::new("orders", 0);
    b.key("k0").value(r#"{"id":0}"#).push().value("plain text").push().tombstone().push();
    let outcome = h.put(&b.take()).unwrap();
    assert_eq!(outcome, PutOutcome::accepted());
    h.commit().unwrap();
    h.assert_durable("orders", 0, 3);
    h.never_past_unsettled();

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "http.batch.size 2: two requests");
    assert_eq!(server.offsets(), [0, 1, 2], "each record exactly once");
    assert_eq!(seen[0].header("x-sluice-offsets"), Some("orders/0/0-1"));
    assert_eq!(seen[1].header("x-sluice-offsets"), Some("orders/0/2-2"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cr3t"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].body,
        json!([
            {"topic": "orders", "partition": 0, "offset": 0, "key": "k0", "value": {"id": 0}},
            {"topic": "orders", "partition": 0, "offset": 1, "key": null, "value": "plain text"},
        ])
    );
    assert_eq!(seen[1].body[0]["value"], Value::Null, "a tombstone is null");
}

#[test]
fn a_503_fails_the_batch_retriably_nothing_is_durable_until_it_is_put_again() {
    let mut answers = vec![(503, "busy".to_string())].into_iter();
    let server = Server::start(move |_| answers.next().unwrap_or((200, "{}".into())));
    let mut h = harness(config(&server.url), &[orders(0)]);
    let batch = RecordBuilder::new("orders", 0).values(["a", "b", "c"]);

    let error = h.put(&batch).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Retriable, "{error}");
    assert!(error.message().contains("503"), "{error}");
    assert_eq!(h.commit().unwrap(), [], "nothing durable while the batch failed");
    assert!(h.durable().is_empty());

    // The worker puts the same batch again.
    assert_eq!(h.put(&batch).unwrap(), PutOutcome::accepted());
    h.commit().unwrap();
    h.assert_durable("orders", 0, 3);
    h.never_past_unsettled();
    assert_eq!(server.offsets(), [0, 1, 2, 0, 1, 2], "the batch was sent twice");
}

#[test]
fn the_client_rides_out_one_503_within_http_retry_max_ms() {
    let mut answers = vec![(503, "busy".to_string())].into_iter();
    let server = Server::start(move |_| answers.next().unwrap_or((200, "{}".into())));
    let mut h = harness(config(&server.url).with("http.retry.max.ms", "5000"), &[orders(0)]);
    assert_eq!(h.put(&RecordBuilder::new("orders", 0).values(["a", "b"])).unwrap(), PutOutcome::accepted());
    h.commit().unwrap();
    h.assert_durable("orders", 0, 2);
    assert_eq!(server.seen().len(), 2, "one failed attempt, one taken");
}

#[test]
fn a_timeout_fails_the_batch_retriably() {
    // Connections complete in the kernel's backlog; nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ingest", silent.local_addr().unwrap());
    let mut h = harness(config(&url).with("http.timeout.ms", "300"), &[orders(0)]);
    let error = h.put(&RecordBuilder::new("orders", 0).values(["a"])).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Retriable, "{error}");
    assert_eq!(h.commit().unwrap(), []);
}

#[test]
fn a_400_naming_rejected_indices_fails_only_those_records() {
    let server = Server::start(rejecting_bad);
    // Two records per request: the indices the server names are the
    // request's, the outcome's are the batch's.
    let mut h = harness(config(&server.url).with("http.batch.size", "2"), &[orders(0)]);
    let batch = RecordBuilder::new("orders", 0).values(["a", "bad 1", "c", "d", "bad 4"]);
    let outcome = h.put(&batch).unwrap();
    let failed: Vec<(u32, ErrorKind)> = outcome.failures().iter().map(|f| (f.index, f.error.kind())).collect();
    assert_eq!(failed, [(1, ErrorKind::BadRecord), (4, ErrorKind::BadRecord)]);
    assert!(
        outcome.failures()[0].error.message().contains("topic orders partition 0 offset 1"),
        "{}",
        outcome.failures()[0].error
    );
    let routed: Vec<i64> = h.routed().iter().map(|(r, _)| r.offset).collect();
    assert_eq!(routed, [1, 4], "to the DLQ");
    h.commit().unwrap();
    h.assert_durable("orders", 0, 5);
    h.never_past_unsettled();
}

#[test]
fn a_400_without_a_list_fails_every_record_of_the_request() {
    for body in ["no", r#"{"rejected":[]}"#, r#"{"rejected":[7]}"#] {
        let server = Server::start(move |_| (400, body.into()));
        let mut h = harness(config(&server.url), &[orders(0)]);
        let outcome = h.put(&RecordBuilder::new("orders", 0).values(["a", "b"])).unwrap();
        let failed: Vec<(u32, ErrorKind)> = outcome.failures().iter().map(|f| (f.index, f.error.kind())).collect();
        assert_eq!(failed, [(0, ErrorKind::BadRecord), (1, ErrorKind::BadRecord)], "{body}");
    }
}

#[test]
fn a_401_fails_the_task_naming_the_token_setting() {
    for status in [401, 403] {
        let server = Server::start(move |_| (status, "denied".into()));
        let mut h = harness(config(&server.url), &[orders(0)]);
        let error = h.put(&RecordBuilder::new("orders", 0).values(["a"])).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        assert!(error.message().contains("http.auth.token"), "{error}");
    }
}

#[test]
fn after_a_crash_records_not_committed_reach_the_server_again_at_least_once() {
    let server = Server::ok();
    let mut h = harness(config(&server.url), &[orders(0)]);
    h.put(&RecordBuilder::new("orders", 0).values(["a", "b", "c"])).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 3);
    h.put(&RecordBuilder::new("orders", 0).at(3).values(["d", "e"])).unwrap(); // taken by the server, never committed
    h.crash().unwrap(); // the next task gets 3.. again
    h.commit().unwrap();
    h.assert_durable("orders", 0, 5);
    h.never_past_unsettled();

    assert_eq!(server.offsets(), [0, 1, 2, 3, 4, 3, 4], "at least once: 3 and 4 twice");
    let headers: Vec<Option<String>> =
        server.seen().iter().map(|s| s.header("x-sluice-offsets").map(str::to_string)).collect();
    assert_eq!(headers[1], headers[2], "a duplicate request carries the same idempotency key");
}

#[test]
fn a_partition_revoked_while_its_batch_failed_is_re_delivered_to_its_next_owner() {
    let mut answers = vec![(503, "busy".to_string())].into_iter();
    let server = Server::start(move |_| answers.next().unwrap_or((200, "{}".into())));
    let mut h = harness(config(&server.url), &[orders(0), orders(1)]);
    let mut batch = RecordBuilder::new("orders", 0).values(["a0", "b0"]);
    batch.extend(RecordBuilder::new("orders", 1).values(["a1", "b1"]));

    assert_eq!(h.put(&batch).unwrap_err().kind(), ErrorKind::Retriable);
    h.revoke(&[orders(1)]).unwrap(); // mid-batch: the batch was not taken
    assert!(h.durable().is_empty());
    // The worker puts the batch again: partition 1's records are dropped.
    h.put(&batch).unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 0, 2);
    assert_eq!(h.durable().get(&orders(1)), None);

    // Partition 1 comes back (to this task, or to another owner).
    h.open(&[orders(1)]).unwrap();
    h.redeliver().unwrap();
    h.commit().unwrap();
    h.assert_durable("orders", 1, 2);
    h.never_past_unsettled();
    let tail: Vec<String> =
        server.seen().iter().skip(1).filter_map(|s| s.header("x-sluice-offsets").map(str::to_string)).collect();
    assert_eq!(tail, ["orders/0/0-1", "orders/1/0-1"]);
}

#[test]
fn settings_are_checked_by_name() {
    let issues = HttpSink.validate(&ConnectorConfig::new());
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, [HttpSinkConfig::url]);
    let issues = HttpSink.validate(&ConnectorConfig::new().with("http.url", "ftp://x").with("http.batch.size", "0"));
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, [HttpSinkConfig::url, HttpSinkConfig::batch_size]);
    let def = HttpSink.config_def();
    assert_eq!(def.key("http.batch.size").and_then(|k| k.default()), Some("100"));
}
