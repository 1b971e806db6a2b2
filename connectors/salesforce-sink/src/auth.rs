//! OAuth 2.0 for Salesforce: the JWT bearer flow (RFC 7523, RS256) and the
//! client credentials flow, against `{salesforce.instance}/services/oauth2/token`.
//!
//! Salesforce's token answer has no `expires_in` (a token lives as long as
//! the org's session timeout, and can be revoked any time), so a token is
//! kept until a call answers `401 INVALID_SESSION_ID`; the HTTP client then
//! asks once for a new one. One token is shared by every client of a task:
//! the first client that sees the 401 renews it, the others pick the new one
//! up instead of asking again.

use std::{
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use connector_api::config::typed::Secret;
use connector_kit::http::{Agent, HttpError, TokenSource};
use ring::{rand::SystemRandom, signature::RsaKeyPair};
use serde_json::{json, Value};

/// How the task gets its token.
#[derive(Debug, Clone)]
pub enum Auth {
    ClientCredentials { secret: Secret },
    JwtBearer { username: String, key_pem: Secret },
}

/// The assertion's lifetime: Salesforce accepts at most 3 minutes.
const ASSERTION_SECONDS: u64 = 180;

/// The RSA key of a PEM text (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE
/// KEY`). The error never quotes the text (it is a secret).
pub fn signing_key(pem_text: &str) -> Result<RsaKeyPair, String> {
    let parsed = pem::parse(pem_text.trim())
        .map_err(|_| "not a PEM private key (expected -----BEGIN PRIVATE KEY----- or RSA PRIVATE KEY)".to_string())?;
    let der = parsed.contents();
    match parsed.tag() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(der),
        "ENCRYPTED PRIVATE KEY" => {
            return Err("the PEM key is encrypted: decrypt it (`openssl pkey -in key.pem -out plain.pem`)".into())
        }
        other => return Err(format!("a PEM {other} is not an RSA private key")),
    }
    .map_err(|e| format!("the PEM key is not a usable RSA key (2048 bits or more): {e}"))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The signed assertion of the JWT bearer flow: `iss` the consumer key,
/// `sub` the user, `aud` the login URL, `exp` three minutes from `now_secs`.
pub fn jwt_assertion(
    key: &RsaKeyPair,
    consumer_key: &str,
    username: &str,
    audience: &str,
    now_secs: u64,
) -> Result<String, String> {
    let header = b64url(br#"{"alg":"RS256"}"#);
    let claims = json!({"iss": consumer_key, "sub": username, "aud": audience, "exp": now_secs + ASSERTION_SECONDS});
    let signing_input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
        .map_err(|_| "signing the JWT assertion failed".to_string())?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

/// The audience of the assertion: Salesforce wants the login host
/// (`https://login.salesforce.com`, `https://test.salesforce.com`, or the
/// My Domain URL the token is asked from).
pub fn audience(login_url: &str) -> String {
    login_url.trim_end_matches('/').to_string()
}

struct State {
    header: Option<String>,
    instance_url: Option<String>,
    generation: u64,
    fetched: u64,
}

/// What a token request needs, and the token shared by a task's clients.
pub struct Shared {
    token_url: String,
    login_url: String,
    consumer_key: String,
    auth: Auth,
    key: Option<RsaKeyPair>,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(login_url: &str, consumer_key: &str, auth: Auth) -> Result<Arc<Shared>, String> {
        let key = match &auth {
            Auth::JwtBearer { key_pem, .. } => Some(signing_key(key_pem.expose())?),
            Auth::ClientCredentials { .. } => None,
        };
        Ok(Arc::new(Shared {
            token_url: format!("{}/services/oauth2/token", login_url.trim_end_matches('/')),
            login_url: login_url.to_string(),
            consumer_key: consumer_key.to_string(),
            auth,
            key,
            state: Mutex::new(State { header: None, instance_url: None, generation: 0, fetched: 0 }),
        }))
    }

    /// The `instance_url` of the last token answer.
    pub fn instance_url(&self) -> Option<String> {
        self.lock().instance_url.clone()
    }

    /// Tokens fetched so far.
    pub fn fetched(&self) -> u64 {
        self.lock().fetched
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn form(&self) -> Result<Vec<(&'static str, String)>, HttpError> {
        let invalid = |message: String| HttpError::Invalid { url: self.token_url.clone(), message };
        Ok(match (&self.auth, &self.key) {
            (Auth::ClientCredentials { secret }, _) => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", self.consumer_key.clone()),
                ("client_secret", Secret::expose(secret).to_string()),
            ],
            (Auth::JwtBearer { username, .. }, Some(key)) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let assertion = jwt_assertion(key, &self.consumer_key, username, &audience(&self.login_url), now)
                    .map_err(invalid)?;
                vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()), ("assertion", assertion)]
            }
            (Auth::JwtBearer { .. }, None) => return Err(invalid("no signing key".into())),
        })
    }

    fn fetch(&self, agent: &Agent) -> Result<(String, String), HttpError> {
        let url = self.token_url.as_str();
        let form = self.form()?;
        let mut response = agent
            .post(url)
            .header("Accept", "application/json")
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|e| connector_kit::http::transport_error(url, e))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|e| connector_kit::http::transport_error(url, e))?;
        if !(200..300).contains(&status) {
            return Err(HttpError::Status { status, url: url.to_string(), body, retry_after: None });
        }
        let invalid = |message: String| HttpError::Invalid { url: url.to_string(), message };
        let reply: Value =
            serde_json::from_str(&body).map_err(|e| invalid(format!("the token answer is not JSON ({e})")))?;
        match (reply["access_token"].as_str(), reply["instance_url"].as_str()) {
            (Some(token), Some(instance)) => {
                Ok((format!("Bearer {token}"), instance.trim_end_matches('/').to_string()))
            }
            _ => Err(invalid("the token answer lacks access_token or instance_url".into())),
        }
    }
}

/// One client's handle on the shared token.
pub struct SharedToken {
    shared: Arc<Shared>,
    /// The generation of the token this client last used.
    seen: u64,
}

impl SharedToken {
    pub fn new(shared: Arc<Shared>) -> Self {
        SharedToken { shared, seen: 0 }
    }
}

impl TokenSource for SharedToken {
    fn authorization(&mut self, agent: &Agent, refresh: bool) -> Result<String, HttpError> {
        // Held across the fetch: clients that see the 401 at once wait for
        // the one renewal instead of each asking for a token.
        let mut state = self.shared.lock();
        if let Some(header) = &state.header {
            if !refresh || state.generation != self.seen {
                self.seen = state.generation;
                return Ok(header.clone());
            }
        }
        let (header, instance) = self.shared.fetch(agent)?;
        state.header = Some(header.clone());
        state.instance_url = Some(instance);
        state.generation += 1;
        state.fetched += 1;
        self.seen = state.generation;
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit test key (generated for these tests only, never used anywhere).
    pub const TEST_KEY: &str = include_str!("../tests/fixtures/jwt-test-key.pem");

    #[test]
    fn an_assertion_is_rs256_over_the_documented_claims_and_verifies() {
        let key = signing_key(TEST_KEY).unwrap();
        let jwt = jwt_assertion(&key, "3MVG9", "integration@acme.com", "https://login.salesforce.com", 1_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(header, json!({"alg": "RS256"}));
        assert_eq!(
            claims,
            json!({"iss": "3MVG9", "sub": "integration@acme.com", "aud": "https://login.salesforce.com", "exp": 1_180})
        );
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            ring::signature::KeyPair::public_key(&key).as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &decode(parts[2])).expect("the signature verifies with the public key");
        assert!(public.verify(b"tampered", &decode(parts[2])).is_err());
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_with_what_is_wrong() {
        assert!(signing_key("hello").unwrap_err().contains("not a PEM"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(signing_key(cert).unwrap_err().contains("CERTIFICATE is not an RSA private key"));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(signing_key(garbage).unwrap_err().contains("not a usable RSA key"));
    }
}
