//! A blocking HTTP client for connectors: ureq 3 (no async runtime inside the
//! plugin) with timeouts, a base URL, default headers, retries through
//! [`crate::retry`] (honouring `Retry-After`), a [`TokenSource`] asked again
//! once when the server answers 401, and failures classified through
//! [`crate::classify`].
//!
//! ```no_run
//! use std::time::Duration;
//! use connector_kit::{classify::StatusPolicy, http::{BasicAuth, HttpClient}, retry::RetryPolicy};
//!
//! let mut client = HttpClient::builder("https://commerce.example.com/odata2webservices")
//!     .timeout(Duration::from_secs(30))
//!     .user_agent("my-connector")
//!     .header("Accept", "application/json")
//!     .retry(RetryPolicy::default().max_elapsed(Some(Duration::from_secs(10))))
//!     .token_source(BasicAuth::new("admin", "nimda"))
//!     .build();
//! match client.get("InboundOrders/Orders?$top=1") {
//!     Ok(response) => println!("{}", response.text()),
//!     Err(e) => {
//!         let error = e.to_connector_error("reading orders", StatusPolicy::SOURCE);
//!         eprintln!("{error}");
//!     }
//! }
//! ```

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use connector_api::{ConnectorError, ErrorKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::{
    classify::{self, StatusPolicy},
    retry::{retry_sleeping, Decision, RetryPolicy},
};

pub use ureq::Agent;

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a query value (or a path segment): everything but
/// `A-Z a-z 0-9 - . _ ~`.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Standard base64 (with padding) of `bytes`, as Basic authentication wants it.
pub fn base64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete forms)
/// as milliseconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// A `Retry-After` value: seconds, or an HTTP-date (the time from `now_ms`).
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The server answered with a status that is not 2xx (after retries).
    Status { status: u16, url: String, body: String, retry_after: Option<Duration> },
    /// No answer: `transient` for timeouts, refused or reset connections,
    /// unknown hosts and broken answers; not for a bad URL or TLS refusal.
    Transport { url: String, message: String, transient: bool },
    /// An answer that is not what was expected (an unreadable body).
    Invalid { url: String, message: String },
    /// The [`TokenSource`] failed: its token endpoint's error.
    Token(Box<HttpError>),
}

impl HttpError {
    /// The status of a [`HttpError::Status`] (of the token endpoint's too).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            HttpError::Token(inner) => inner.status(),
            _ => None,
        }
    }

    /// Worth trying again later: a transient transport failure or 408/429/5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => {
                classify::http_status(*status, StatusPolicy::SOURCE) == Some(ErrorKind::Retriable)
            }
            HttpError::Transport { transient, .. } => *transient,
            HttpError::Invalid { .. } => false,
            HttpError::Token(inner) => inner.is_transient(),
        }
    }

    /// A one-line description (with an excerpt of the body).
    pub fn message(&self) -> String {
        match self {
            HttpError::Status { status, url, body, .. } => {
                format!("HTTP {status} for {url}: {}", classify::excerpt(body, 300))
            }
            HttpError::Transport { url, message, .. } | HttpError::Invalid { url, message } => {
                format!("{url}: {message}")
            }
            HttpError::Token(inner) => format!("getting a token: {}", inner.message()),
        }
    }

    /// The error as the worker should act on it: statuses through
    /// [`classify::http_error`] with `policy`; transient transport failures
    /// `Retriable`; others `Fatal`. A token endpoint refusing the client
    /// (400/401/403) reads as refused credentials (`policy.auth`).
    pub fn to_connector_error(&self, what: &str, policy: StatusPolicy) -> ConnectorError {
        match self {
            HttpError::Status { status, url, body, .. } => {
                classify::http_error(*status, &format!("{what} ({url})"), body, policy)
            }
            HttpError::Token(inner) => match inner.status() {
                Some(400 | 401 | 403) => ConnectorError::new(
                    policy.auth,
                    format!(
                        "{what}: the token endpoint refused the client (check its id and secret): {}",
                        inner.message()
                    ),
                ),
                _ if inner.is_transient() => {
                    ConnectorError::retriable(format!("{what}: cannot get a token: {}", inner.message()))
                }
                _ => ConnectorError::fatal(format!("{what}: cannot get a token: {}", inner.message())),
            },
            e if e.is_transient() => ConnectorError::retriable(format!("{what}: {}", e.message())),
            e => ConnectorError::fatal(format!("{what}: {}", e.message())),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for HttpError {}

/// A transport error of ureq, classified.
pub fn transport_error(url: &str, e: ureq::Error) -> HttpError {
    let transient = matches!(
        e,
        ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::BodyStalled
            | ureq::Error::Protocol(_)
    );
    HttpError::Transport { url: url.to_string(), message: e.to_string(), transient }
}

/// Where the `Authorization` header comes from. Asked before every request;
/// asked again with `refresh` once when the server answers 401 (the token
/// may have expired or been revoked early).
pub trait TokenSource: Send {
    /// The `Authorization` header value. `agent` is the client's own, for a
    /// token endpoint.
    fn authorization(&mut self, agent: &Agent, refresh: bool) -> Result<String, HttpError>;
    /// Whether a 401 may be cured by asking again (false for fixed credentials).
    fn refreshable(&self) -> bool {
        true
    }
}

/// HTTP Basic authentication.
#[derive(Clone)]
pub struct BasicAuth(String);

impl BasicAuth {
    pub fn new(user: &str, password: &str) -> Self {
        BasicAuth(format!("Basic {}", base64(format!("{user}:{password}"))))
    }
}

impl TokenSource for BasicAuth {
    fn authorization(&mut self, _: &Agent, _: bool) -> Result<String, HttpError> {
        Ok(self.0.clone())
    }
    fn refreshable(&self) -> bool {
        false
    }
}

/// OAuth 2 client credentials (RFC 6749 §4.4) with `client_secret_basic`:
/// the token is cached and renewed shortly before `expires_in` ends (after
/// 90 % of it; an hour when the answer has none), or at once on a 401.
pub struct ClientCredentials {
    pub token_url: String,
    client_basic: String,
    scope: Option<String>,
    cached: Option<(String, Instant)>,
    fetched: Arc<AtomicU64>,
}

impl ClientCredentials {
    pub fn new(token_url: &str, client_id: &str, client_secret: &str) -> Self {
        ClientCredentials {
            token_url: token_url.to_string(),
            client_basic: format!("Basic {}", base64(format!("{client_id}:{client_secret}"))),
            scope: None,
            cached: None,
            fetched: Arc::new(AtomicU64::new(0)),
        }
    }
    /// Tokens fetched so far, shared (it can be read once the source is
    /// inside a client): for logs and tests of the refresh path.
    pub fn fetched(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.fetched)
    }
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_string());
        self
    }
}

impl TokenSource for ClientCredentials {
    fn authorization(&mut self, agent: &Agent, refresh: bool) -> Result<String, HttpError> {
        if let Some((header, refresh_at)) = &self.cached {
            if !refresh && Instant::now() < *refresh_at {
                return Ok(header.clone());
            }
        }
        self.cached = None;
        let url = self.token_url.as_str();
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = agent
            .post(url)
            .header("Authorization", &self.client_basic)
            .header("Accept", "application/json")
            .send_form(form)
            .map_err(|e| transport_error(url, e))?;
        let response = Response::read(url, response, DEFAULT_MAX_BODY)?;
        if !(200..300).contains(&response.status) {
            return Err(HttpError::Status {
                status: response.status,
                url: url.to_string(),
                retry_after: None,
                body: response.text().into_owned(),
            });
        }
        let invalid = |message: String| HttpError::Invalid { url: url.to_string(), message };
        let reply: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| invalid(format!("the token answer is not JSON ({e})")))?;
        let Some(token) = reply["access_token"].as_str() else {
            return Err(invalid(format!("no access_token in {}", classify::excerpt(&response.text(), 300))));
        };
        let lifetime = match &reply["expires_in"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3600);
        // Renew a little early so a request never leaves with a token that
        // expires on the way; a 401 renews it anyway.
        let refresh_at = Instant::now() + Duration::from_secs(lifetime.saturating_sub(lifetime / 10 + 1));
        let header = format!("Bearer {token}");
        self.cached = Some((header.clone(), refresh_at));
        self.fetched.fetch_add(1, Ordering::Relaxed);
        Ok(header)
    }
}

/// Bodies above this are refused rather than buffered, unless the builder says otherwise.
pub const DEFAULT_MAX_BODY: u64 = 64 * 1024 * 1024;

/// A successful answer (or, inside [`HttpError::Status`], a failed one's body).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn read(url: &str, mut response: ureq::http::Response<ureq::Body>, limit: u64) -> Result<Response, HttpError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| transport_error(url, e))?;
        Ok(Response { status, headers, body })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }

    /// The server's `Date`, in milliseconds since the epoch.
    pub fn date_ms(&self) -> Option<i64> {
        self.header("date").and_then(parse_http_date)
    }
}

/// Request methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Delete,
    Post,
    Put,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// One request: a method, a URL (absolute, or relative to the client's
/// base URL), headers and an optional body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request { method, url: url.into(), headers: Vec::new(), body: None }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Request::new(Method::Post, url).body(body)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// Builds an [`HttpClient`].
pub struct HttpClientBuilder {
    base_url: String,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    user_agent: String,
    headers: Vec<(String, String)>,
    retry: RetryPolicy,
    token: Option<Box<dyn TokenSource>>,
    max_body: u64,
}

impl HttpClientBuilder {
    /// The whole request, connect to last body byte (ureq's global timeout).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Connecting (default 10 s; `None`: only the global timeout).
    pub fn connect_timeout(mut self, d: Option<Duration>) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Waiting for the answer's head, and then for its body (default 60 s
    /// each; `None`: only the global timeout).
    pub fn read_timeout(mut self, d: Option<Duration>) -> Self {
        self.read_timeout = d;
        self
    }
    pub fn user_agent(mut self, ua: &str) -> Self {
        self.user_agent = ua.to_string();
        self
    }
    /// A header sent with every request (a request's own header of the same
    /// name is sent too; use distinct names).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// Retries of transient failures (default: none, the worker retries the call).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    pub fn token_source(mut self, source: impl TokenSource + 'static) -> Self {
        self.token = Some(Box::new(source));
        self
    }
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    pub fn build(self) -> HttpClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(self.timeout)
            .timeout_connect(self.connect_timeout)
            .timeout_recv_response(self.read_timeout)
            .timeout_recv_body(self.read_timeout)
            .http_status_as_error(false)
            .user_agent(&self.user_agent)
            .build()
            .into();
        HttpClient {
            agent,
            base_url: self.base_url.trim_end_matches('/').to_string(),
            headers: self.headers,
            retry: self.retry,
            token: self.token,
            max_body: self.max_body,
            server_clock: None,
        }
    }
}

/// A blocking HTTP client; see the [module docs](self).
pub struct HttpClient {
    agent: Agent,
    base_url: String,
    headers: Vec<(String, String)>,
    retry: RetryPolicy,
    token: Option<Box<dyn TokenSource>>,
    max_body: u64,
    server_clock: Option<(i64, Instant)>,
}

impl HttpClient {
    /// A client for `base_url` (may be empty when every request is absolute).
    pub fn builder(base_url: &str) -> HttpClientBuilder {
        HttpClientBuilder {
            base_url: base_url.to_string(),
            timeout: None,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: "sluice-connector".to_string(),
            headers: Vec::new(),
            retry: RetryPolicy::none(),
            token: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The underlying agent (connection pool, timeouts), for what this
    /// client does not cover.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// `url` resolved against the base URL (absolute URLs stay as they are).
    pub fn url(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") || self.base_url.is_empty() {
            url.to_string()
        } else {
            format!("{}/{}", self.base_url, url.trim_start_matches('/'))
        }
    }

    /// The server's clock now: the `Date` of its latest answer plus the
    /// time since, or this machine's clock before any answer carried one.
    pub fn server_now_ms(&self) -> i64 {
        match self.server_clock {
            Some((ms, at)) => ms + at.elapsed().as_millis() as i64,
            None => now_ms(),
        }
    }

    /// The `Authorization` header the next request would carry (`None`
    /// without a token source); `refresh` asks the source for a new one.
    pub fn authorization(&mut self, refresh: bool) -> Result<Option<String>, HttpError> {
        match self.token.as_mut() {
            Some(token) => token.authorization(&self.agent, refresh).map(Some),
            None => Ok(None),
        }
    }

    pub fn get(&mut self, url: &str) -> Result<Response, HttpError> {
        self.send(Request::get(url))
    }

    /// Sends `request`: a 2xx answer is `Ok`; transient failures are retried
    /// per the policy (waiting at least a `Retry-After`); a 401 asks the
    /// token source for a new token once (not counted as an attempt).
    pub fn send(&mut self, request: Request) -> Result<Response, HttpError> {
        let url = self.url(&request.url);
        let mut backoff = self.retry.backoff();
        let mut refreshed = false;
        retry_sleeping(
            &mut backoff,
            |_| loop {
                match self.send_once(&request, &url, refreshed) {
                    Err(HttpError::Status { status: 401, .. })
                        if !refreshed && self.token.as_ref().is_some_and(|t| t.refreshable()) =>
                    {
                        refreshed = true;
                    }
                    other => return other,
                }
            },
            |e| match e {
                HttpError::Status { retry_after: Some(d), .. } if e.is_transient() => Decision::RetryAfter(*d),
                e if e.is_transient() => Decision::Retry,
                _ => Decision::Stop,
            },
            std::thread::sleep,
        )
    }

    fn send_once(&mut self, request: &Request, url: &str, refresh: bool) -> Result<Response, HttpError> {
        let mut builder = ureq::http::Request::builder().method(request.method.as_str()).uri(url);
        for (k, v) in self.headers.iter().chain(&request.headers) {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(token) = self.token.as_mut() {
            let authorization = token.authorization(&self.agent, refresh).map_err(|e| HttpError::Token(Box::new(e)))?;
            builder = builder.header("Authorization", authorization);
        }
        let invalid = |e: ureq::http::Error| HttpError::Invalid { url: url.to_string(), message: e.to_string() };
        let result = match &request.body {
            Some(body) => self.agent.run(builder.body(body.as_slice()).map_err(invalid)?),
            None => self.agent.run(builder.body(()).map_err(invalid)?),
        };
        let response = result.map_err(|e| transport_error(url, e))?;
        // The clock first: an answer whose body cannot be read still tells the time.
        let date = response.headers().get("date").and_then(|v| parse_http_date(v.to_str().ok()?));
        if let Some(ms) = date {
            self.server_clock = Some((ms, Instant::now()));
        }
        let response = Response::read(url, response, self.max_body)?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        let retry_after = response.header("retry-after").and_then(|v| parse_retry_after(v, self.server_now_ms()));
        Err(HttpError::Status {
            status: response.status,
            url: url.to_string(),
            body: response.text().into_owned(),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        sync::{Arc, Mutex},
        thread::JoinHandle,
    };

    use super::*;

    /// A loopback HTTP server answering each connection with the next canned
    /// answer (`connection: close`), recording the request heads.
    struct Canned {
        url: String,
        requests: Arc<Mutex<Vec<String>>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Canned {
        fn start(answers: Vec<String>) -> Canned {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&requests);
            let thread = std::thread::spawn(move || {
                for answer in answers {
                    let (stream, _) = listener.accept().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut head = String::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" || line.is_empty() {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    head.push_str(&String::from_utf8_lossy(&body));
                    log.lock().unwrap().push(head);
                    let mut stream = reader.into_inner();
                    stream.write_all(answer.as_bytes()).unwrap();
                }
            });
            Canned { url, requests, thread: Some(thread) }
        }

        fn requests(mut self) -> Vec<String> {
            self.thread.take().unwrap().join().unwrap();
            self.requests.lock().unwrap().clone()
        }
    }

    fn answer(status: &str, headers: &[&str], body: &str) -> String {
        let mut a = format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
        for h in headers {
            a.push_str(h);
            a.push_str("\r\n");
        }
        a.push_str("\r\n");
        a.push_str(body);
        a
    }

    fn no_wait() -> RetryPolicy {
        RetryPolicy::default().initial(Duration::ZERO).max_attempts(3)
    }

    #[test]
    fn encodings_and_dates() {
        let table =
            [("a b'c/$", "a%20b%27c%2F%24"), ("modifiedtime asc,k", "modifiedtime%20asc%2Ck"), ("-._~", "-._~")];
        for (raw, want) in table {
            assert_eq!(encode(raw), want);
        }
        assert_eq!(encode("ä"), "%C3%A4");
        assert_eq!(base64("integrationadmin:nimda"), "aW50ZWdyYXRpb25hZG1pbjpuaW1kYQ==");
        assert_eq!(base64("ab"), "YWI=");
        assert_eq!(parse_http_date("Mon, 03 Mar 2025 12:00:00 GMT"), Some(1_741_003_200_000));
        assert_eq!(parse_http_date("yesterday"), None);
        let now = 1_741_003_200_000;
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Mon, 03 Mar 2025 12:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Mon, 03 Mar 2025 11:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_classify_by_status_transport_and_token() {
        let status = |s: u16| HttpError::Status { status: s, url: "u".into(), body: "b".into(), retry_after: None };
        let transport = |t: bool| HttpError::Transport { url: "u".into(), message: "m".into(), transient: t };
        let table: Vec<(HttpError, bool, ErrorKind)> = vec![
            (status(503), true, ErrorKind::Retriable),
            (status(429), true, ErrorKind::Retriable),
            (status(401), false, ErrorKind::Fatal),
            (status(404), false, ErrorKind::Fatal),
            (transport(true), true, ErrorKind::Retriable),
            (transport(false), false, ErrorKind::Fatal),
            (HttpError::Invalid { url: "u".into(), message: "m".into() }, false, ErrorKind::Fatal),
            (HttpError::Token(Box::new(status(401))), false, ErrorKind::Fatal),
            (HttpError::Token(Box::new(status(502))), true, ErrorKind::Retriable),
            (HttpError::Token(Box::new(transport(true))), true, ErrorKind::Retriable),
        ];
        for (e, transient, kind) in table {
            assert_eq!(e.is_transient(), transient, "{e}");
            assert_eq!(e.to_connector_error("reading", StatusPolicy::SOURCE).kind(), kind, "{e}");
        }
        let e = HttpError::Token(Box::new(status(400))).to_connector_error("reading", StatusPolicy::VALIDATE);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("refused the client"), "{e}");
    }

    #[test]
    fn urls_resolve_against_the_base() {
        let c = HttpClient::builder("http://h/api/").build();
        assert_eq!(c.url("Orders"), "http://h/api/Orders");
        assert_eq!(c.url("/Orders"), "http://h/api/Orders");
        assert_eq!(c.url("https://other/x"), "https://other/x");
        assert_eq!(HttpClient::builder("").build().url("http://h/x"), "http://h/x");
    }

    #[test]
    fn transient_statuses_are_retried_honouring_retry_after_and_headers_are_sent() {
        let server = Canned::start(vec![
            answer("503 Service Unavailable", &["retry-after: 0"], "busy"),
            answer("200 OK", &["date: Mon, 03 Mar 2025 12:00:00 GMT"], "{\"ok\":true}"),
        ]);
        let mut client = HttpClient::builder(&server.url).header("Accept", "application/json").retry(no_wait()).build();
        let response = client.send(Request::post("items", "x=1").header("X-Test", "yes")).unwrap();
        assert_eq!(response.json().unwrap()["ok"], true);
        assert!(client.server_now_ms() >= 1_741_003_200_000 && client.server_now_ms() < 1_741_003_260_000);
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        for r in &requests {
            assert!(r.starts_with("POST /items HTTP/1.1"), "{r}");
            let lower = r.to_ascii_lowercase();
            assert!(lower.contains("accept: application/json") && lower.contains("x-test: yes"), "{r}");
            assert!(r.ends_with("x=1"), "{r}");
        }
    }

    #[test]
    fn a_refusal_is_not_retried_and_keeps_the_body() {
        let server = Canned::start(vec![answer("404 Not Found", &[], "no such set")]);
        let mut client = HttpClient::builder(&server.url).retry(no_wait()).build();
        let e = client.get("x").unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert!(e.message().contains("no such set"), "{e}");
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn a_401_refreshes_the_token_once() {
        struct Counting(Arc<Mutex<Vec<bool>>>);
        impl TokenSource for Counting {
            fn authorization(&mut self, _: &Agent, refresh: bool) -> Result<String, HttpError> {
                let mut asked = self.0.lock().unwrap();
                asked.push(refresh);
                Ok(format!("Bearer t{}", asked.len()))
            }
        }
        let asked = Arc::new(Mutex::new(Vec::new()));
        let server = Canned::start(vec![
            answer("401 Unauthorized", &[], "expired"),
            answer("200 OK", &[], "fine"),
            answer("401 Unauthorized", &[], "expired"),
            answer("401 Unauthorized", &[], "still"),
        ]);
        let mut client = HttpClient::builder(&server.url).token_source(Counting(Arc::clone(&asked))).build();
        assert_eq!(HttpClient::builder("").build().authorization(false).unwrap(), None);
        assert_eq!(client.get("a").unwrap().text(), "fine");
        let e = client.get("b").unwrap_err();
        assert_eq!(e.status(), Some(401), "refreshed once, then given up");
        let requests = server.requests();
        let auth: Vec<&str> = requests
            .iter()
            .map(|r| r.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization")).unwrap())
            .collect();
        assert_eq!(
            auth.iter().map(|l| &l[15..]).collect::<Vec<_>>(),
            ["Bearer t1", "Bearer t2", "Bearer t3", "Bearer t4"]
        );
        assert_eq!(*asked.lock().unwrap(), [false, true, false, true]);
    }

    #[test]
    fn client_credentials_fetch_cache_and_renew_tokens() {
        let server = Canned::start(vec![
            answer("200 OK", &[], r#"{"access_token":"abc","expires_in":"3600"}"#),
            answer("200 OK", &[], r#"{"access_token":"def","expires_in":3600}"#),
            answer("401 Unauthorized", &[], "bad client"),
        ]);
        let agent = HttpClient::builder("").build().agent().clone();
        let mut source = ClientCredentials::new(&format!("{}/token", server.url), "id", "secret");
        assert_eq!(source.authorization(&agent, false).unwrap(), "Bearer abc");
        assert_eq!(source.authorization(&agent, false).unwrap(), "Bearer abc", "cached");
        assert_eq!(source.authorization(&agent, true).unwrap(), "Bearer def", "renewed");
        assert_eq!(source.fetched().load(Ordering::Relaxed), 2);
        assert_eq!(source.authorization(&agent, true).unwrap_err().status(), Some(401));
        let requests = server.requests();
        assert!(requests[0].starts_with("POST /token"), "{}", requests[0]);
        assert!(requests[0].contains(&format!("Basic {}", base64("id:secret"))));
        assert!(requests[0].ends_with("grant_type=client_credentials"), "{}", requests[0]);
    }
}
