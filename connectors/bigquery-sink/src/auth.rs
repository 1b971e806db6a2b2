//! Google credentials for BigQuery: `keySource` FILE | JSON |
//! APPLICATION_DEFAULT, turned into OAuth 2 access tokens.
//!
//! - A service-account key signs an RS256 JWT assertion (RFC 7523) that its
//!   `token_uri` exchanges for an access token.
//! - An `authorized_user` file (`gcloud auth application-default login`)
//!   exchanges its refresh token at its `token_uri`.
//! - The metadata server (GCE, GKE workload identity, Cloud Run) hands out
//!   the attached account's token; its host is `GCE_METADATA_HOST` when
//!   set, as Google's client libraries read it.
//!
//! Application default credentials are looked up in Google's order:
//! `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known file
//! (`$CLOUDSDK_CONFIG/application_default_credentials.json`, else
//! `~/.config/gcloud/…`, `%APPDATA%\gcloud\…` on Windows), then the
//! metadata server.
//!
//! Tokens are cached until shortly before they expire (a tenth of their
//! lifetime, at least a minute) and renewed at once when BigQuery answers
//! 401. [`GoogleAuth`] is cheap to clone and its clones share one cache, so
//! the REST client and the Storage Write client ask once. The private key
//! and the refresh token never appear in `Debug`, logs or errors.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use connector_api::ConnectorError;
use connector_kit::{
    classify::{self, StatusPolicy},
    http::{transport_error, Agent, HttpClient, HttpError, Response, TokenSource},
};
use ring::{rand::SystemRandom, signature::RsaKeyPair};
use serde_json::Value;

/// The scope BigQuery's REST and Storage Write APIs accept.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Where tokens come from when a file names no `token_uri`.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's host when `GCE_METADATA_HOST` is not set.
pub const METADATA_HOST: &str = "metadata.google.internal";

/// `keySource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySource {
    /// `keyfile` is the path of a credentials file.
    #[default]
    File,
    /// `keyfile` is the credentials JSON itself.
    Json,
    /// Application default credentials (`keyfile` unused).
    ApplicationDefault,
}

impl KeySource {
    pub fn parse(s: &str) -> Option<KeySource> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "FILE" => KeySource::File,
            "JSON" => KeySource::Json,
            "APPLICATION_DEFAULT" => KeySource::ApplicationDefault,
            _ => return None,
        })
    }
}

impl From<crate::config::KeySource> for KeySource {
    fn from(k: crate::config::KeySource) -> KeySource {
        match k {
            crate::config::KeySource::File => KeySource::File,
            crate::config::KeySource::Json => KeySource::Json,
            crate::config::KeySource::ApplicationDefault => KeySource::ApplicationDefault,
        }
    }
}

/// Where an access token comes from. `Debug` shows who, never the secret.
enum Credentials {
    ServiceAccount { client_email: String, key_id: Option<String>, key: Arc<RsaKeyPair>, token_uri: String },
    AuthorizedUser { client_id: String, client_secret: String, refresh_token: String, token_uri: String },
    Metadata { host: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ServiceAccount { client_email, token_uri, .. } => f
                .debug_struct("ServiceAccount")
                .field("client_email", client_email)
                .field("token_uri", token_uri)
                .finish_non_exhaustive(),
            Credentials::AuthorizedUser { client_id, token_uri, .. } => f
                .debug_struct("AuthorizedUser")
                .field("client_id", client_id)
                .field("token_uri", token_uri)
                .finish_non_exhaustive(),
            Credentials::Metadata { host } => f.debug_struct("Metadata").field("host", host).finish(),
        }
    }
}

/// A credentials file's content, parsed. `what` says where it came from
/// (for errors: a path, "keyfile", "GOOGLE_APPLICATION_CREDENTIALS").
fn parse_credentials(json: &str, what: &str) -> Result<Credentials, ConnectorError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| ConnectorError::config(format!("{what} is not a Google credentials JSON file ({e})")))?;
    let field = |k: &str| -> Result<String, ConnectorError> {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .ok_or_else(|| ConnectorError::config(format!("{what}: the credentials have no `{k}`")))
    };
    let token_uri = v.get("token_uri").and_then(Value::as_str).unwrap_or(GOOGLE_TOKEN_URI).to_string();
    match v.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            let pem = field("private_key")?;
            let der = pem_to_der(&pem).ok_or_else(|| {
                ConnectorError::config(format!("{what}: `private_key` is not a PEM \"PRIVATE KEY\" block"))
            })?;
            // The reason ring gives says nothing about the key's bytes.
            let key = RsaKeyPair::from_pkcs8(&der)
                .map_err(|e| ConnectorError::config(format!("{what}: `private_key` is not a PKCS#8 RSA key ({e})")))?;
            Ok(Credentials::ServiceAccount {
                client_email: field("client_email")?,
                key_id: v.get("private_key_id").and_then(Value::as_str).map(String::from),
                key: Arc::new(key),
                token_uri,
            })
        }
        Some("authorized_user") => Ok(Credentials::AuthorizedUser {
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
            refresh_token: field("refresh_token")?,
            token_uri,
        }),
        Some(other) => Err(ConnectorError::config(format!(
            "{what}: credentials of type `{other}` are not supported (service_account, authorized_user); on GKE use \
             workload identity through the metadata server (keySource=APPLICATION_DEFAULT without a file)"
        ))),
        None => Err(ConnectorError::config(format!("{what}: the credentials have no `type`"))),
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body = pem.split("-----BEGIN PRIVATE KEY-----").nth(1)?.split("-----END PRIVATE KEY-----").next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The signed JWT assertion of a service account (RFC 7523 §2.1): valid
/// for an hour from `now_s`, for `audience` (its token URI).
fn jwt_assertion(
    key: &RsaKeyPair,
    key_id: Option<&str>,
    issuer: &str,
    scope: &str,
    audience: &str,
    now_s: u64,
) -> Result<String, String> {
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = Value::from(kid);
    }
    let claims = serde_json::json!({
        "iss": issuer, "scope": scope, "aud": audience, "iat": now_s, "exp": now_s + 3600,
    });
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
        .map_err(|_| "signing the token request failed".to_string())?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

/// Where application default credentials come from (pure: the caller
/// passes the environment and a file-exists check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdcSource {
    /// `GOOGLE_APPLICATION_CREDENTIALS` names this file.
    EnvFile(PathBuf),
    /// gcloud's well-known file.
    WellKnownFile(PathBuf),
    /// The metadata server at this host.
    Metadata(String),
}

/// Google's lookup order for application default credentials.
pub fn adc_source(env: &dyn Fn(&str) -> Option<String>, exists: &dyn Fn(&Path) -> bool) -> AdcSource {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
        return AdcSource::EnvFile(PathBuf::from(path));
    }
    let dir = env("CLOUDSDK_CONFIG").map(PathBuf::from).or_else(|| {
        if cfg!(windows) {
            env("APPDATA").map(|d| Path::new(&d).join("gcloud"))
        } else {
            env("HOME").map(|h| Path::new(&h).join(".config").join("gcloud"))
        }
    });
    if let Some(file) = dir.map(|d| d.join("application_default_credentials.json")) {
        if exists(&file) {
            return AdcSource::WellKnownFile(file);
        }
    }
    AdcSource::Metadata(env("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.to_string()))
}

struct State {
    credentials: Credentials,
    scope: String,
    cached: Option<(String, Instant)>,
    fetched: u64,
}

/// An access-token source for BigQuery; see the [module docs](self).
#[derive(Clone)]
pub struct GoogleAuth {
    state: Arc<Mutex<State>>,
    agent: Agent,
}

impl fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state.lock() {
            Ok(state) => f.debug_struct("GoogleAuth").field("credentials", &state.credentials).finish_non_exhaustive(),
            Err(_) => f.write_str("GoogleAuth { .. }"),
        }
    }
}

impl GoogleAuth {
    fn with(credentials: Credentials) -> GoogleAuth {
        GoogleAuth {
            state: Arc::new(Mutex::new(State {
                credentials,
                scope: BIGQUERY_SCOPE.to_string(),
                cached: None,
                fetched: 0,
            })),
            agent: HttpClient::builder("")
                .timeout(Duration::from_secs(30))
                .user_agent("sluice-bigquery-sink")
                .build()
                .agent()
                .clone(),
        }
    }

    /// The credentials `keySource` and `keyfile` name. Errors are `Config`
    /// and name the key to fix; they never quote the key file.
    pub fn from_config(source: KeySource, keyfile: Option<&str>) -> Result<GoogleAuth, ConnectorError> {
        Self::from_config_with_env(source, keyfile, &|k| std::env::var(k).ok())
    }

    /// [`Self::from_config`] with the environment given (tests).
    pub fn from_config_with_env(
        source: KeySource,
        keyfile: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GoogleAuth, ConnectorError> {
        let keyfile = keyfile.map(str::trim).filter(|k| !k.is_empty());
        let credentials = match (source, keyfile) {
            (KeySource::File, Some(path)) => read_file(Path::new(path), "keyfile")?,
            (KeySource::Json, Some(json)) => parse_credentials(json, "keyfile (keySource=JSON)")?,
            (KeySource::File | KeySource::Json, None) => {
                return Err(ConnectorError::config(
                    "keyfile is empty: set it to the service-account key file (keySource=FILE) or its JSON \
                     (keySource=JSON), or set keySource=APPLICATION_DEFAULT",
                ))
            }
            (KeySource::ApplicationDefault, _) => match adc_source(env, &|p| p.is_file()) {
                AdcSource::EnvFile(path) => read_file(&path, "GOOGLE_APPLICATION_CREDENTIALS")?,
                AdcSource::WellKnownFile(path) => read_file(&path, "gcloud's application default credentials")?,
                AdcSource::Metadata(host) => Credentials::Metadata { host },
            },
        };
        Ok(GoogleAuth::with(credentials))
    }

    /// The credentials of a parsed connector config: `None` when the
    /// endpoints are plain HTTP and no keyfile is set (a local emulator,
    /// which checks none).
    pub fn for_config(config: &crate::config::BigQuerySinkConfig) -> Result<Option<GoogleAuth>, ConnectorError> {
        let keyfile = config.keyfile.as_ref().map(|k| k.expose()).filter(|k| !k.trim().is_empty());
        let local = !config.rest_endpoint.starts_with("https://") && !config.storage_endpoint.starts_with("https://");
        match (keyfile, config.key_source) {
            (None, _) if local => Ok(None),
            (keyfile, source) => GoogleAuth::from_config(source.into(), keyfile).map(Some),
        }
    }

    /// Asks for `scope` instead of BigQuery's (service accounts and the
    /// metadata server).
    pub fn scope(self, scope: &str) -> GoogleAuth {
        if let Ok(mut state) = self.state.lock() {
            state.scope = scope.to_string();
        }
        self
    }

    /// Who the tokens are for (the service account's e-mail, the user's
    /// client id, or "metadata server at …"), for logs.
    pub fn principal(&self) -> String {
        match self.state.lock().as_deref() {
            Ok(State { credentials: Credentials::ServiceAccount { client_email, .. }, .. }) => client_email.clone(),
            Ok(State { credentials: Credentials::AuthorizedUser { client_id, .. }, .. }) => {
                format!("user of {client_id}")
            }
            Ok(State { credentials: Credentials::Metadata { host }, .. }) => format!("metadata server at {host}"),
            Err(_) => "unknown".into(),
        }
    }

    /// Tokens fetched so far (tests and logs of the refresh path).
    pub fn fetched(&self) -> u64 {
        self.state.lock().map(|s| s.fetched).unwrap_or(0)
    }

    /// A bearer token, from the cache unless `refresh` or near expiry.
    pub fn token(&self, refresh: bool) -> Result<String, HttpError> {
        let mut state = self.state.lock().map_err(|_| HttpError::Invalid {
            url: "token".into(),
            message: "the token cache was poisoned by a panic".into(),
        })?;
        if let Some((token, renew_at)) = &state.cached {
            if !refresh && Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        state.cached = None;
        let (token, lifetime) = fetch(&self.agent, &state.credentials, &state.scope)?;
        // Renew early so no request leaves with a token that expires on
        // the way; a 401 renews it anyway.
        let margin = (lifetime / 10).max(60).min(lifetime / 2);
        state.cached = Some((token.clone(), Instant::now() + Duration::from_secs(lifetime - margin)));
        state.fetched += 1;
        Ok(token)
    }

    /// The error a failed token fetch is to the worker: refused credentials
    /// are `Config` naming keyfile/keySource; outages are `Retriable`.
    pub fn to_connector_error(e: &HttpError) -> ConnectorError {
        match e.status() {
            Some(400 | 401 | 403) => ConnectorError::config(format!(
                "Google refused the credentials (check keyfile and keySource; the key may be revoked or the \
                 account deleted): {}",
                e.message()
            )),
            _ => e.to_connector_error("getting a Google access token", StatusPolicy::SINK),
        }
    }
}

impl TokenSource for GoogleAuth {
    fn authorization(&mut self, _: &Agent, refresh: bool) -> Result<String, HttpError> {
        self.token(refresh).map(|t| format!("Bearer {t}"))
    }
}

fn read_file(path: &Path, what: &str) -> Result<Credentials, ConnectorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConnectorError::config(format!("{what}: cannot read {}: {e}", path.display())))?;
    parse_credentials(&text, &format!("{what} ({})", path.display()))
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One token fetch: the token and its lifetime in seconds.
fn fetch(agent: &Agent, credentials: &Credentials, scope: &str) -> Result<(String, u64), HttpError> {
    let (url, response) = match credentials {
        Credentials::ServiceAccount { client_email, key_id, key, token_uri } => {
            let assertion = jwt_assertion(key, key_id.as_deref(), client_email, scope, token_uri, now_s())
                .map_err(|message| HttpError::Invalid { url: token_uri.clone(), message })?;
            let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)];
            (token_uri.clone(), agent.post(token_uri).header("Accept", "application/json").send_form(form))
        }
        Credentials::AuthorizedUser { client_id, client_secret, refresh_token, token_uri } => {
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("client_secret", client_secret.as_str()),
                ("refresh_token", refresh_token.as_str()),
            ];
            (token_uri.clone(), agent.post(token_uri).header("Accept", "application/json").send_form(form))
        }
        Credentials::Metadata { host } => {
            let base = if host.starts_with("http://") || host.starts_with("https://") {
                host.trim_end_matches('/').to_string()
            } else {
                format!("http://{host}")
            };
            let url = format!(
                "{base}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
                connector_kit::http::encode(scope)
            );
            let response = agent.get(&url).header("Metadata-Flavor", "Google").call();
            (url, response)
        }
    };
    let response = response.map_err(|e| transport_error(&url, e))?;
    let status = response.status().as_u16();
    let mut response = response;
    let body = response.body_mut().read_to_vec().map_err(|e| transport_error(&url, e))?;
    let response = Response { status, headers: Vec::new(), body };
    if !(200..300).contains(&status) {
        return Err(HttpError::Status { status, url, body: response.text().into_owned(), retry_after: None });
    }
    let invalid = |message: String| HttpError::Invalid { url: url.clone(), message };
    let reply = response.json().map_err(|e| invalid(format!("the token answer is not JSON ({e})")))?;
    let Some(token) = reply.get("access_token").and_then(Value::as_str) else {
        return Err(invalid(format!("no access_token in the answer: {}", classify::excerpt(&response.text(), 200))));
    };
    let lifetime = match reply.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3600)
    .max(1);
    Ok((token.to_string(), lifetime))
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        sync::mpsc,
    };

    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    use super::*;

    const KEY_FILE: &str = include_str!("../tests/fixtures/test-service-account.json");

    /// One request as the token endpoint saw it.
    #[derive(Debug)]
    struct Seen {
        line: String,
        headers: HashMap<String, String>,
        body: String,
    }

    /// A loopback token endpoint answering each request with `answer(seen)`
    /// (status, body); every request is sent back through the channel.
    fn endpoint(answer: impl Fn(&Seen) -> (u16, String) + Send + 'static) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let length: usize = headers.get("content-length").map(|l| l.parse().unwrap()).unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let seen = Seen { line: line.trim().to_string(), headers, body: String::from_utf8(body).unwrap() };
                let (status, reply) = answer(&seen);
                let mut stream = reader.into_inner();
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                    reply.len()
                )
                .unwrap();
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        (url, rx)
    }

    fn form(body: &str) -> HashMap<String, String> {
        body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), percent_decode(v))).collect()
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// The key file with its token_uri pointed at `url`.
    fn key_file(url: &str) -> String {
        let mut v: Value = serde_json::from_str(KEY_FILE).unwrap();
        v["token_uri"] = Value::from(format!("{url}/token"));
        v.to_string()
    }

    /// What a token endpoint checks of a JWT-bearer grant: the grant type,
    /// RS256 over header.claims with the account's public key, and the claims.
    fn check_assertion(seen: &Seen, public_key: &[u8], token_uri: &str) -> Result<(), String> {
        let f = form(&seen.body);
        if f.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return Err(format!("grant_type {:?}", f.get("grant_type")));
        }
        let jwt = f.get("assertion").ok_or("no assertion")?;
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err("not three parts".into());
        }
        let decode = |p: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).map_err(|e| e.to_string());
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &decode(parts[2])?)
            .map_err(|_| "bad signature".to_string())?;
        let header: Value = serde_json::from_slice(&decode(parts[0])?).map_err(|e| e.to_string())?;
        let claims: Value = serde_json::from_slice(&decode(parts[1])?).map_err(|e| e.to_string())?;
        let now = now_s();
        let (iat, exp) = (claims["iat"].as_u64().unwrap_or(0), claims["exp"].as_u64().unwrap_or(0));
        let checks = [
            (header["alg"] == "RS256", "alg"),
            (header["kid"] == "test-key-1", "kid"),
            (claims["iss"] == "sluice-sink@sluice-test.iam.gserviceaccount.com", "iss"),
            (claims["aud"] == token_uri, "aud"),
            (claims["scope"] == BIGQUERY_SCOPE, "scope"),
            (iat <= now + 1 && iat + 60 >= now, "iat"),
            (exp == iat + 3600, "exp"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("claim {what}: {header} {claims}")),
            None => Ok(()),
        }
    }

    fn public_key() -> Vec<u8> {
        let v: Value = serde_json::from_str(KEY_FILE).unwrap();
        let der = pem_to_der(v["private_key"].as_str().unwrap()).unwrap();
        RsaKeyPair::from_pkcs8(&der).unwrap().public().as_ref().to_vec()
    }

    #[test]
    fn a_service_account_key_mints_a_signed_assertion_and_the_token_is_cached() {
        let key = public_key();
        let counter = Arc::new(Mutex::new(0));
        let n = Arc::clone(&counter);
        let (url, seen) = endpoint(move |s| {
            let token_uri = format!("http://{}/token", s.headers["host"]);
            match check_assertion(s, &key, &token_uri) {
                Ok(()) => {
                    let mut n = n.lock().unwrap();
                    *n += 1;
                    (200, format!(r#"{{"access_token":"tok-{n}","expires_in":3599,"token_type":"Bearer"}}"#))
                }
                Err(why) => (400, format!(r#"{{"error":"invalid_grant","error_description":"{why}"}}"#)),
            }
        });
        let auth = GoogleAuth::from_config(KeySource::Json, Some(&key_file(&url))).unwrap();
        assert_eq!(auth.token(false).unwrap(), "tok-1");
        assert_eq!(auth.clone().token(false).unwrap(), "tok-1", "clones share the cache");
        assert_eq!(auth.fetched(), 1);
        let mut source = auth.clone();
        let agent = HttpClient::builder("").build().agent().clone();
        assert_eq!(source.authorization(&agent, true).unwrap(), "Bearer tok-2", "a 401 renews");
        let request = seen.recv().unwrap();
        assert_eq!(request.line, "POST /token HTTP/1.1");
        assert!(request.headers["content-type"].starts_with("application/x-www-form-urlencoded"));

        // The same file read from disk (keySource=FILE).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(&path, key_file(&url)).unwrap();
        let auth = GoogleAuth::from_config(KeySource::File, path.to_str()).unwrap();
        assert_eq!(auth.token(false).unwrap(), "tok-3");
    }

    #[test]
    fn a_refused_key_is_a_config_error_and_the_key_never_shows() {
        let (url, _seen) =
            endpoint(|_| (400, r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into()));
        let auth = GoogleAuth::from_config(KeySource::Json, Some(&key_file(&url))).unwrap();
        let e = auth.token(false).unwrap_err();
        let c = GoogleAuth::to_connector_error(&e);
        assert_eq!(c.kind(), connector_api::ErrorKind::Config);
        assert!(c.message().contains("keyfile") && c.message().contains("Invalid JWT Signature"), "{c}");
        let v: Value = serde_json::from_str(KEY_FILE).unwrap();
        let secret_line = v["private_key"].as_str().unwrap().lines().nth(1).unwrap().to_string();
        for shown in [format!("{auth:?}"), c.to_string(), e.to_string()] {
            assert!(!shown.contains(&secret_line) && !shown.contains("PRIVATE KEY"), "{shown}");
        }
        assert!(format!("{auth:?}").contains("sluice-sink@sluice-test.iam.gserviceaccount.com"));

        let (url, _seen) = endpoint(|_| (503, "{}".into()));
        let auth = GoogleAuth::from_config(KeySource::Json, Some(&key_file(&url))).unwrap();
        let c = GoogleAuth::to_connector_error(&auth.token(false).unwrap_err());
        assert_eq!(c.kind(), connector_api::ErrorKind::Retriable, "{c}");
    }

    #[test]
    fn bad_keyfiles_are_config_errors_naming_the_key() {
        let cases: [(KeySource, Option<&str>, &str); 6] = [
            (KeySource::File, None, "keyfile is empty"),
            (KeySource::Json, Some("  "), "keyfile is empty"),
            (KeySource::Json, Some("{not json"), "not a Google credentials JSON"),
            (KeySource::Json, Some(r#"{"type":"external_account"}"#), "external_account"),
            (KeySource::Json, Some(r#"{"type":"service_account","client_email":"a@b","private_key":"nope"}"#), "PEM"),
            (KeySource::File, Some("/no/such/key.json"), "/no/such/key.json"),
        ];
        for (source, keyfile, says) in cases {
            let e = GoogleAuth::from_config(source, keyfile).unwrap_err();
            assert_eq!(e.kind(), connector_api::ErrorKind::Config);
            assert!(e.message().contains(says), "{keyfile:?}: {e}");
            assert!(e.message().contains("keyfile"), "{e}");
        }
    }

    #[test]
    fn application_default_credentials_follow_googles_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let yes = |_: &Path| true;
        let no = |_: &Path| false;
        let all =
            env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"), ("HOME", "/home/u"), ("GCE_METADATA_HOST", "m:80")]);
        assert_eq!(adc_source(&all, &yes), AdcSource::EnvFile("/k.json".into()));
        let home = env(&[("HOME", "/home/u"), ("GCE_METADATA_HOST", "127.0.0.1:9")]);
        assert_eq!(
            adc_source(&home, &yes),
            AdcSource::WellKnownFile("/home/u/.config/gcloud/application_default_credentials.json".into())
        );
        let sdk = env(&[("HOME", "/home/u"), ("CLOUDSDK_CONFIG", "/etc/gc")]);
        assert_eq!(
            adc_source(&sdk, &yes),
            AdcSource::WellKnownFile("/etc/gc/application_default_credentials.json".into())
        );
        assert_eq!(adc_source(&home, &no), AdcSource::Metadata("127.0.0.1:9".into()));
        assert_eq!(adc_source(&env(&[]), &no), AdcSource::Metadata(METADATA_HOST.into()));
    }

    #[test]
    fn authorized_user_files_refresh_and_the_metadata_server_is_asked_with_its_header() {
        let (url, seen) = endpoint(|s| {
            let f = form(&s.body);
            if s.line.starts_with("POST /token")
                && f.get("grant_type").map(String::as_str) == Some("refresh_token")
                && f.get("refresh_token").map(String::as_str) == Some("1//rt")
                && f.get("client_secret").map(String::as_str) == Some("cs")
            {
                (200, r#"{"access_token":"user-tok","expires_in":"3600"}"#.into())
            } else if s.line.starts_with("GET /computeMetadata/v1/instance/service-accounts/default/token?scopes=")
                && s.headers.get("metadata-flavor").map(String::as_str) == Some("Google")
            {
                (200, r#"{"access_token":"gce-tok","expires_in":120,"token_type":"Bearer"}"#.into())
            } else {
                (403, "{}".into())
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("application_default_credentials.json");
        std::fs::write(
            &file,
            format!(r#"{{"type":"authorized_user","client_id":"cid","client_secret":"cs","refresh_token":"1//rt","token_uri":"{url}/token"}}"#),
        )
        .unwrap();
        let sdk = dir.path().to_str().unwrap().to_string();
        let env = move |k: &str| (k == "CLOUDSDK_CONFIG").then(|| sdk.clone());
        let auth = GoogleAuth::from_config_with_env(KeySource::ApplicationDefault, None, &env).unwrap();
        assert_eq!(auth.token(false).unwrap(), "user-tok");
        assert!(!format!("{auth:?}").contains("1//rt") && !format!("{auth:?}").contains("\"cs\""));
        assert_eq!(seen.recv().unwrap().line, "POST /token HTTP/1.1");

        let host = url.trim_start_matches("http://").to_string();
        let env = move |k: &str| (k == "GCE_METADATA_HOST").then(|| host.clone());
        let auth = GoogleAuth::from_config_with_env(KeySource::ApplicationDefault, None, &env).unwrap();
        assert!(auth.principal().starts_with("metadata server at 127.0.0.1:"));
        assert_eq!(auth.token(false).unwrap(), "gce-tok");
        assert_eq!(auth.token(false).unwrap(), "gce-tok", "cached for its short life too");
        assert_eq!(auth.fetched(), 1);
        let request = seen.recv().unwrap();
        assert!(request.line.contains("scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fbigquery"), "{request:?}");
    }
}
