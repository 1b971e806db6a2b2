//! A fault-injecting HTTP/1.1 proxy in front of the real S3 server.
//!
//! Tests point a connector's `store.url` at it to stop an upload at an exact
//! point (a part request, the completion request, the completion's answer)
//! and then kill the worker there, to make S3 unreachable for a while, or to
//! refuse object tagging as a bucket policy would.
//! Everything else passes through byte for byte, so the SDK talks to the real
//! SeaweedFS (signatures are computed on the Host header the SDK sends, which
//! the proxy does not rewrite; SeaweedFS does not check it against its port).
//!
//! Stopping the shared SeaweedFS instead would disturb the other tests that
//! run in parallel threads against it; from the worker's side a dropped
//! connection and a refused one are the same outage.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
    time::Duration,
};

/// Where the proxy stops an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// Holds the UploadPart request with this part number (the part never
    /// reaches S3): the worker is in the middle of a multipart upload.
    UploadPart(u32),
    /// Holds CompleteMultipartUpload: every part is uploaded, the object does
    /// not exist yet.
    CompleteRequest,
    /// Lets CompleteMultipartUpload through and holds its answer: the object
    /// exists in S3 but the worker does not know it (nor committed offsets).
    CompleteResponse,
}

/// S3's answer to a request the caller's policy does not allow.
fn access_denied() -> String {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>sluice-test-proxy</RequestId></Error>"#;
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[derive(Default)]
struct State {
    trap: Option<Trap>,
    /// The request line of the held request, once the trap has sprung.
    sprung: Option<String>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    sprung: Condvar,
    /// Bumped to drop every open connection (held ones included).
    generation: AtomicU64,
    down: AtomicBool,
    refuse_tagging: AtomicBool,
}

pub struct S3Proxy {
    pub url: String,
    shared: Arc<Shared>,
}

impl S3Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream_url`
    /// (`http://host:port`).
    pub fn start(upstream_url: &str) -> S3Proxy {
        let authority = upstream_url.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = authority.parse().expect("S3 endpoint as http://ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the S3 proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
            sprung: Condvar::new(),
            generation: AtomicU64::new(0),
            down: AtomicBool::new(false),
            refuse_tagging: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = accept_shared.clone();
                thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        S3Proxy { url, shared }
    }

    /// Arms a trap; the next matching request (or answer) is held.
    pub fn arm(&self, trap: Trap) {
        let mut state = self.shared.state.lock().expect("proxy state");
        state.trap = Some(trap);
        state.sprung = None;
    }

    /// Waits until the armed trap holds a request; returns its request line.
    pub fn wait_sprung(&self, timeout: Duration) -> String {
        let state = self.shared.state.lock().expect("proxy state");
        let (state, _) =
            self.shared.sprung.wait_timeout_while(state, timeout, |s| s.sprung.is_none()).expect("proxy state");
        match &state.sprung {
            Some(line) => line.clone(),
            None => panic!("the S3 proxy's trap {:?} did not spring within {timeout:?}", state.trap),
        }
    }

    /// Disarms the trap and drops every open connection, held ones included.
    pub fn reset(&self) {
        let mut state = self.shared.state.lock().expect("proxy state");
        state.trap = None;
        state.sprung = None;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// While on, every PutObjectTagging (`PUT ...?tagging`) is answered here
    /// with S3's 403 AccessDenied, as a bucket policy without
    /// s3:PutObjectTagging would; everything else passes.
    pub fn set_refuse_tagging(&self, on: bool) {
        self.shared.refuse_tagging.store(on, Ordering::SeqCst);
    }

    /// While down, open connections are dropped and new ones closed at once.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the client→server pump found at the start of a request.
enum Verdict {
    Forward,
    Hold,
    HoldAnswer,
    /// Answer it here with S3's 403 AccessDenied and close the connection.
    Refuse,
}

fn judge(shared: &Shared, request_line: &str) -> Verdict {
    let mut state = shared.state.lock().expect("proxy state");
    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, ""));
    let target = target.split(' ').next().unwrap_or("");
    let query_has = |name: &str| target.split_once('?').is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with(name)));
    if shared.refuse_tagging.load(Ordering::SeqCst) && method == "PUT" && query_has("tagging") {
        return Verdict::Refuse;
    }
    if state.sprung.is_some() {
        return Verdict::Forward;
    }
    let hit = match state.trap {
        // Whole parameters: `partNumber=1` must not match `partNumber=12`.
        Some(Trap::UploadPart(n)) => {
            method == "PUT" && target.split(['?', '&']).any(|p| p == format!("partNumber={n}"))
        }
        Some(Trap::CompleteRequest) | Some(Trap::CompleteResponse) => method == "POST" && query_has("uploadId="),
        None => false,
    };
    if !hit {
        return Verdict::Forward;
    }
    if state.trap == Some(Trap::CompleteResponse) {
        // Sprung once the answer arrives (the object then exists).
        return Verdict::HoldAnswer;
    }
    state.sprung = Some(request_line.to_string());
    shared.sprung.notify_all();
    Verdict::Hold
}

fn spring(shared: &Shared, line: &str) {
    let mut state = shared.state.lock().expect("proxy state");
    state.sprung = Some(line.to_string());
    shared.sprung.notify_all();
}

fn serve(client: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let generation = shared.generation.load(Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return client.shutdown(Shutdown::Both);
    }
    let server = TcpStream::connect(shared.upstream)?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        s.set_nodelay(true)?;
    }
    // Set by the request pump when the answer to the current request must be
    // held (Trap::CompleteResponse).
    let hold_answer = Arc::new(AtomicBool::new(false));
    let answer_line = Arc::new(Mutex::new(String::new()));
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let (mut s_read, mut c_write) = (server.try_clone()?, client.try_clone()?);
    let mut refusal = client.try_clone()?;
    let up_shared = shared.clone();
    let up_hold = hold_answer.clone();
    let up_line = answer_line.clone();
    let upward = thread::spawn(move || {
        let alive = || up_shared.generation.load(Ordering::SeqCst) == generation;
        let mut requests = RequestReader::default();
        let mut buf = vec![0u8; 64 * 1024];
        while alive() {
            let n = match c_read.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if is_timeout(&e) => continue,
                Err(_) => break,
            };
            for event in requests.feed(&buf[..n]) {
                let RequestStart { at, line } = event;
                match judge(&up_shared, &line) {
                    Verdict::Forward => {}
                    Verdict::HoldAnswer => {
                        *up_line.lock().expect("answer line") = line;
                        up_hold.store(true, Ordering::SeqCst);
                    }
                    Verdict::Refuse => {
                        // Forward what preceded it, then answer in S3's
                        // place and close (the rest of its body is dropped).
                        if s_write.write_all(&buf[..at]).is_err() {
                            return;
                        }
                        let _ = refusal.write_all(access_denied().as_bytes());
                        let _ = refusal.shutdown(Shutdown::Both);
                        return;
                    }
                    Verdict::Hold => {
                        // Forward what preceded the held request, then stall
                        // until the test resets the proxy.
                        if s_write.write_all(&buf[..at]).is_err() {
                            return;
                        }
                        while alive() {
                            thread::sleep(Duration::from_millis(20));
                        }
                        return;
                    }
                }
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let alive = || shared.generation.load(Ordering::SeqCst) == generation;
    while alive() {
        let n = match s_read.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                if upward.is_finished() {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        if hold_answer.load(Ordering::SeqCst) {
            let line = answer_line.lock().expect("answer line").clone();
            spring(shared, &line);
            while alive() {
                thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = upward.join();
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

struct RequestStart {
    /// Byte index in the fed chunk where the request begins.
    at: usize,
    line: String,
}

/// Finds request boundaries in a client's byte stream: request line and
/// headers, then a body of `Content-Length` bytes or chunked encoding.
#[derive(Default)]
struct RequestReader {
    phase: Phase,
    head: Vec<u8>,
    head_at: Option<usize>,
}

#[derive(Default)]
enum Phase {
    #[default]
    Head,
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers(Vec<u8>),
}

impl RequestReader {
    fn feed(&mut self, chunk: &[u8]) -> Vec<RequestStart> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i < chunk.len() {
            match &mut self.phase {
                Phase::Head => {
                    if self.head.is_empty() {
                        self.head_at = Some(i);
                    }
                    self.head.push(chunk[i]);
                    i += 1;
                    if self.head.ends_with(b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&self.head).to_string();
                        let line = head.lines().next().unwrap_or("").to_string();
                        let header = |name: &str| {
                            head.lines().skip(1).find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                            })
                        };
                        // A request whose head started in an earlier chunk is
                        // reported at 0: it can only be held from here on.
                        starts.push(RequestStart { at: self.head_at.take().unwrap_or(0), line });
                        let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                        let length: u64 = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        self.head.clear();
                        self.phase = if chunked {
                            Phase::ChunkSize(Vec::new())
                        } else if length > 0 {
                            Phase::Body(length)
                        } else {
                            Phase::Head
                        };
                    }
                }
                Phase::Body(left) => {
                    let take = (*left).min((chunk.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        self.phase = Phase::Head;
                    }
                }
                Phase::ChunkSize(line) => {
                    line.push(chunk[i]);
                    i += 1;
                    if line.ends_with(b"\r\n") {
                        let text = String::from_utf8_lossy(line).to_string();
                        let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                        self.phase = if size == 0 { Phase::Trailers(Vec::new()) } else { Phase::ChunkData(size) };
                    }
                }
                Phase::ChunkData(left) => {
                    let take = (*left).min((chunk.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        self.phase = Phase::ChunkDataEnd(2);
                    }
                }
                Phase::ChunkDataEnd(left) => {
                    *left -= 1;
                    i += 1;
                    if *left == 0 {
                        self.phase = Phase::ChunkSize(Vec::new());
                    }
                }
                Phase::Trailers(seen) => {
                    seen.push(chunk[i]);
                    i += 1;
                    if seen.ends_with(b"\r\n") && (seen.len() == 2 || seen.ends_with(b"\r\n\r\n")) {
                        self.phase = Phase::Head;
                    }
                }
            }
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_requests_with_lengths_and_chunks_across_feeds() {
        let mut r = RequestReader::default();
        let a = b"PUT /b/k?partNumber=1&uploadId=x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let b = b"POST /b/k?uploadId=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let c = b"GET /b?list-type=2 HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut all = Vec::new();
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        all.extend_from_slice(c);
        let (first, second) = all.split_at(30);
        let mut lines: Vec<String> = r.feed(first).into_iter().map(|s| s.line).collect();
        lines.extend(r.feed(second).into_iter().map(|s| s.line));
        assert_eq!(
            lines,
            vec![
                "PUT /b/k?partNumber=1&uploadId=x HTTP/1.1",
                "POST /b/k?uploadId=x HTTP/1.1",
                "GET /b?list-type=2 HTTP/1.1"
            ]
        );
    }
}
