//! hybris.mode=odata under connector-kit's SourceHarness, against a small
//! in-process Integration API on a loopback port (no database, no
//! services): a crash between polling and committing re-reads from the
//! committed source offset and loses no row.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use connector_api::{ConnectorConfig, SourceRecord};
use connector_kit::harness::SourceHarness;

use crate::{odata::parse_ts, HybrisSource};

const METADATA: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">
 <edmx:DataServices><Schema Namespace="HybrisCommerceOData">
  <EntityType Name="Order"><Key><PropertyRef Name="integrationKey"/></Key>
   <Property Name="integrationKey" Type="Edm.String"/><Property Name="pk" Type="Edm.Int64"/>
   <Property Name="code" Type="Edm.String"/><Property Name="modifiedtime" Type="Edm.DateTime"/>
   <Property Name="creationtime" Type="Edm.DateTime"/>
  </EntityType>
  <EntityContainer Name="Container"><EntitySet Name="Orders" EntityType="HybrisCommerceOData.Order"/></EntityContainer>
 </Schema></edmx:DataServices>
</edmx:Edmx>"#;

/// (integrationKey = code, pk, modifiedtime ms); two share a modifiedtime.
const ORDERS: [(&str, i64, i64); 5] = [
    ("O1", 101, 1_741_000_000_000),
    ("O2", 102, 1_741_000_001_000),
    ("O3", 103, 1_741_000_001_000),
    ("O4", 104, 1_741_000_002_500),
    ("O5", 105, 1_741_000_003_000),
];

/// The Integration API: `$metadata`, and `Orders` with the connector's
/// keyset `$filter` (after `(modifiedtime, integrationKey)`), `$top`,
/// `$skip` and `__count`. One request per connection.
struct FakeApi {
    url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/odata2webservices", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (Arc::clone(&stop), Arc::clone(&requests));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream, &log);
                }
            }
        });
        FakeApi { url, stop, requests, thread: Some(thread) }
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::new()
            .with("hybris.mode", "odata")
            .with("hybris.odata.url", self.url.clone())
            .with("hybris.odata.integration.object", "Sluice")
            .with("hybris.odata.user", "integrationadmin")
            .with("hybris.odata.password", "nimda")
            .with("hybris.item.types", "Order")
            .with("poll.interval.ms", "10")
            .with("hybris.poll.lag.ms", "1000")
    }

    fn order_reads(&self) -> usize {
        self.requests.lock().unwrap().iter().filter(|r| r.contains("/Orders?")).count()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://").split('/').next().unwrap_or(""));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    Some(&s[from..from + s[from..].find(end)?])
}

fn answer(stream: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    log.lock().unwrap().push(path.clone());
    let (content_type, body) = if path.ends_with("/$metadata") {
        ("application/xml", METADATA.to_string())
    } else {
        ("application/json", orders(&path))
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// The JSON page the connector's query asks for.
fn orders(path: &str) -> String {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)).map(decode);
    let filter = param("$filter=").unwrap_or_default();
    let after_ts = between(&filter, "modifiedtime gt datetime'", "'").and_then(parse_ts);
    let after_key = between(&filter, "integrationKey gt '", "'").map(str::to_string);
    let top: usize = param("$top=").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let skip: usize = param("$skip=").and_then(|v| v.parse().ok()).unwrap_or(0);
    let matching: Vec<_> = ORDERS
        .iter()
        .filter(|(key, _, ms)| match (after_ts, &after_key) {
            (Some(ts), Some(k)) => *ms > ts || (*ms == ts && *key > k.as_str()),
            _ => true,
        })
        .collect();
    let results: Vec<serde_json::Value> = matching
        .iter()
        .skip(skip)
        .take(top)
        .map(|(key, pk, ms)| {
            serde_json::json!({
                "integrationKey": key, "code": key, "pk": pk.to_string(),
                "modifiedtime": format!("/Date({ms})/"), "creationtime": format!("/Date({ms})/"),
            })
        })
        .collect();
    serde_json::json!({ "d": { "results": results, "__count": matching.len().to_string() } }).to_string()
}

fn keys(records: &[SourceRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8(r.key.as_ref().into_option().unwrap().to_vec()).unwrap()).collect()
}

#[test]
fn a_crash_before_the_commit_rereads_from_the_committed_offset_and_loses_no_row() {
    let api = FakeApi::start();
    let config = api.config().with("batch.max.rows", "2");
    let mut h = SourceHarness::new(HybrisSource, config, &[]).unwrap();
    let head = h.poll_until(2, 100, 50).unwrap();
    assert_eq!(keys(&head), ["O1", "O2"]);
    h.commit().unwrap();
    // O3 shares O2's modifiedtime: the keyset's integrationKey tie-break.
    let unacknowledged = h.poll_until(2, 100, 50).unwrap();
    assert_eq!(keys(&unacknowledged), ["O3", "O4"]);
    h.crash().unwrap();
    let tail = h.poll_until(3, 100, 50).unwrap();
    assert_eq!(keys(&tail), ["O3", "O4", "O5"], "resumed right after the committed O2");
    h.assert_no_record_lost();
    h.commit().unwrap();
    let committed = h.committed_offsets();
    let offset: serde_json::Value = serde_json::from_str(&committed[0].offset).unwrap();
    assert_eq!(offset["integrationKey"], "O5");
    assert!(api.order_reads() >= 4, "each page is a query");
}

#[test]
fn a_partial_acknowledgement_resumes_after_the_last_acknowledged_row_and_a_restart_adds_nothing() {
    let api = FakeApi::start();
    let config = api.config().with("batch.max.rows", "100").with("hybris.odata.paging", "keyset");
    let mut h = SourceHarness::new(HybrisSource, config.clone(), &[]).unwrap();
    assert_eq!(h.poll_until(5, 100, 50).unwrap().len(), 5);
    h.commit_first(3).unwrap();
    h.crash().unwrap();
    let again = h.poll_until(2, 100, 50).unwrap();
    assert_eq!(keys(&again), ["O4", "O5"]);
    h.assert_no_record_lost();
    h.commit().unwrap();
    h.restart().unwrap();
    assert!(h.poll_until(1, 100, 5).unwrap().is_empty(), "nothing after the committed O5");
}
