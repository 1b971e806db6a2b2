//! examples/http-sink through a real worker and broker: an HTTP server in
//! the test refuses values mentioning "bad" with a 400 naming their indices
//! (`{"rejected":[…]}`); the good records reach it, the bad ones land in
//! the DLQ with their `__connect.errors.*` headers, and the commit reaches
//! the end of the topic.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use rdkafka::Message;
use serde_json::{json, Value};
use sluice_tests::{committed_offset, consume, create_topic, header, produce, unique, wait_until, WorkerProcess};

/// A loopback HTTP server: 400 with the indices of elements whose value
/// mentions "bad", else 200; it keeps the offsets it took.
struct Target {
    url: String,
    addr: SocketAddr,
    taken: Arc<Mutex<BTreeSet<i64>>>,
    requests: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let taken = Arc::new(Mutex::new(BTreeSet::new()));
        let requests = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, count, stopped) = (Arc::clone(&taken), Arc::clone(&requests), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Some(body) = read_body(&stream) else { continue };
                *count.lock().unwrap() += 1;
                let elements = body.as_array().cloned().unwrap_or_default();
                let bad: Vec<usize> =
                    (0..elements.len()).filter(|i| elements[*i]["value"].to_string().contains("bad")).collect();
                for (i, e) in elements.iter().enumerate() {
                    if !bad.contains(&i) {
                        kept.lock().unwrap().extend(e["offset"].as_i64());
                    }
                }
                let (status, answer) = if bad.is_empty() {
                    (200, "{}".to_string())
                } else {
                    (400, json!({ "rejected": bad }).to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = (&stream).write_all(response.as_bytes());
            }
        });
        Target { url: format!("http://{addr}/ingest"), addr, taken, requests, stop, thread: Some(thread) }
    }

    fn taken(&self) -> BTreeSet<i64> {
        self.taken.lock().unwrap().clone()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_body(stream: &TcpStream) -> Option<Value> {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

#[test]
fn records_the_server_rejects_by_index_go_to_the_dlq_and_the_rest_reach_it() {
    let target = Target::start();
    let topic = unique("http-in");
    let dlq = unique("http-dlq");
    create_topic(&topic, 1);
    const N: i64 = 50;
    let bad: BTreeSet<i64> = [7, 31].into();
    let values: Vec<String> =
        (0..N).map(|o| if bad.contains(&o) { format!("bad {o}") } else { format!("{{\"n\":{o}}}") }).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    produce(&topic, 0, &records);

    let w = WorkerProcess::start(&unique("http"), &[], &[]);
    let name = unique("http-sink");
    let body = json!({"name": name, "config": {
        "connector.class": "example-http-sink",
        "topics": topic,
        "http.url": target.url,
        "http.batch.size": "10",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.context.headers.enable": "true",
        "offset.flush.interval.ms": "200",
    }});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");

    let group = format!("connect-{name}");
    wait_until("the commit to reach the end of the topic", Duration::from_secs(60), || {
        (committed_offset(&group, &topic, 0) == Some(N)).then_some(())
    });
    let good: BTreeSet<i64> = (0..N).filter(|o| !bad.contains(o)).collect();
    assert_eq!(target.taken(), good, "the 48 good records reached the server");
    assert!(*target.requests.lock().unwrap() >= 5, "http.batch.size 10: at least five requests");

    let dead = consume(&dlq, 1, bad.len(), Duration::from_secs(30));
    let dead_offsets: BTreeSet<i64> =
        dead.iter().map(|m| header(m, "__connect.errors.offset").unwrap().parse().unwrap()).collect();
    assert_eq!(dead_offsets, bad);
    let first = &dead[0];
    assert_eq!(header(first, "__connect.errors.topic").as_deref(), Some(topic.as_str()));
    assert_eq!(header(first, "__connect.errors.connector.name").as_deref(), Some(name.as_str()));
    assert_eq!(header(first, "__connect.errors.stage").as_deref(), Some("TASK_PUT"));
    assert_eq!(header(first, "__connect.errors.class.name").as_deref(), Some("example-http-sink"));
    assert_eq!(header(first, "__connect.errors.exception.class.name").as_deref(), Some("BadRecord"));
    assert!(header(first, "__connect.errors.exception.message").unwrap().contains("HTTP 400"));
    assert_eq!(first.payload(), Some(b"bad 7".as_slice()), "the DLQ keeps the original value");
}
