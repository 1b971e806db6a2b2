//! HTTPS on the REST listener (docs/decisions/0022): a PEM certificate and
//! key, optionally client certificates checked against a CA (Kafka Connect's
//! `ssl.client.auth`), reloaded on SIGHUP and when the files change, so a
//! renewed certificate needs no restart. Handshakes run in their own tasks
//! and finished connections are handed to axum, so a slow or hostile client
//! cannot hold up the others.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{bail, Context};
use rustls::{server::WebPkiClientVerifier, ServerConfig};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

use crate::tls;

/// The settings' names, as errors show them: the file key, the flag, the variable.
pub const CERT: &str = "rest_tls_cert (--rest-tls-cert, SLUICE_REST_TLS_CERT)";
pub const KEY: &str = "rest_tls_key (--rest-tls-key, SLUICE_REST_TLS_KEY)";
pub const CLIENT_CA: &str = "rest_tls_client_ca (--rest-tls-client-ca, SLUICE_REST_TLS_CLIENT_CA)";
pub const CLIENT_AUTH: &str = "rest_tls_client_auth (--rest-tls-client-auth, SLUICE_REST_TLS_CLIENT_AUTH)";

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are compared with what is served.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Kafka Connect's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// One is asked for and checked if given; a client without one is let in.
    Requested,
    /// A client without a certificate signed by the client CA is refused.
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> anyhow::Result<ClientAuth> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => bail!("{CLIENT_AUTH}={other:?}: expected required, requested or none"),
        }
    }
}

/// The REST listener's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl RestTls {
    /// The TLS settings from the four keys, or None for plain HTTP. A client
    /// CA without `client_auth` means `required`: a CA given for client
    /// certificates that then let everyone in would be a silent surprise.
    pub fn from_keys(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
        client_auth: Option<&str>,
    ) -> anyhow::Result<Option<RestTls>> {
        let client_auth = client_auth.map(ClientAuth::parse).transpose()?;
        let (cert, key) = match (cert, key) {
            (None, None) => {
                if client_ca.is_some() || client_auth.is_some_and(|a| a != ClientAuth::None) {
                    bail!("{CLIENT_CA} and {CLIENT_AUTH} need HTTPS: set {CERT} and {KEY} too");
                }
                return Ok(None);
            }
            (Some(_), None) => bail!("{CERT} is set but {KEY} is not: give the PEM private key of the certificate"),
            (None, Some(_)) => bail!("{KEY} is set but {CERT} is not: give the PEM certificate chain"),
            (Some(cert), Some(key)) => (cert, key),
        };
        let client_auth =
            client_auth.unwrap_or(if client_ca.is_some() { ClientAuth::Required } else { ClientAuth::None });
        if client_auth != ClientAuth::None && client_ca.is_none() {
            bail!("{CLIENT_AUTH}={client_auth:?} needs {CLIENT_CA}: the PEM CA bundle client certificates are checked against");
        }
        Ok(Some(RestTls { cert, key, client_ca, client_auth }))
    }
}

/// The bytes of the files, what a reload compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read_material(settings: &RestTls) -> anyhow::Result<Material> {
    Ok(Material {
        cert: tls::read(CERT, &settings.cert)?,
        key: tls::read(KEY, &settings.key)?,
        client_ca: settings.client_ca.as_ref().map(|p| tls::read(CLIENT_CA, p)).transpose()?,
    })
}

/// A server config from the files' bytes; errors name the setting to fix.
fn server_config(settings: &RestTls, material: &Material) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = tls::certificates(CERT, &settings.cert, &material.cert)?;
    let key = tls::private_key(KEY, &settings.key, &material.key)?;
    let builder = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no protocol version")?;
    let builder = match (&settings.client_ca, &material.client_ca, settings.client_auth) {
        (Some(path), Some(pem), auth) if auth != ClientAuth::None => {
            let roots = Arc::new(tls::roots(CLIENT_CA, path, pem)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, tls::provider());
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().context(CLIENT_CA)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{CERT} and {KEY}: {} and {} do not make a usable pair",
            settings.cert.display(),
            settings.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a reload check does with what it read.
#[derive(Debug, PartialEq, Eq)]
enum Reload {
    /// Nothing changed (and no SIGHUP): keep serving.
    Keep,
    /// Build a config from the new bytes and serve it if it loads.
    Load,
}

/// SIGHUP always loads; a timer tick loads only bytes not seen before, so a
/// broken file is reported once, not on every tick, and the last good
/// certificate stays in service meanwhile.
fn reload_decision(last_seen: &Material, now: &Material, sighup: bool) -> Reload {
    if sighup || last_seen != now {
        Reload::Load
    } else {
        Reload::Keep
    }
}

/// The served config, swapped whole on a reload.
pub struct Certified {
    settings: RestTls,
    current: std::sync::RwLock<Arc<ServerConfig>>,
}

impl Certified {
    /// Loads the files: a start-up error names the setting that is wrong.
    pub fn load(settings: RestTls) -> anyhow::Result<(Arc<Certified>, LastSeen)> {
        let material = read_material(&settings)?;
        let config = server_config(&settings, &material)?;
        Ok((Arc::new(Certified { settings, current: std::sync::RwLock::new(config) }), LastSeen(material)))
    }

    fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn check(&self, last_seen: &mut LastSeen, sighup: bool) {
        let material = match read_material(&self.settings) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "REST TLS: reloading failed; the previous certificate stays in service");
                return;
            }
        };
        if reload_decision(&last_seen.0, &material, sighup) == Reload::Keep {
            return;
        }
        match server_config(&self.settings, &material) {
            Ok(config) => {
                match self.current.write() {
                    Ok(mut c) => *c = config,
                    Err(poisoned) => *poisoned.into_inner() = config,
                }
                tracing::info!(cert = %self.settings.cert.display(), "REST TLS: certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "REST TLS: reloading failed; the previous certificate stays in service")
            }
        }
        last_seen.0 = material;
    }

    /// Re-reads the files on SIGHUP and every few seconds, for the life of the process.
    pub fn watch(self: Arc<Self>, mut last_seen: LastSeen) {
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "REST TLS: no SIGHUP handler; certificates reload when their files change");
                    None
                }
            };
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let sighup = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                #[cfg(not(unix))]
                let sighup = {
                    tick.tick().await;
                    false
                };
                self.check(&mut last_seen, sighup);
            }
        });
    }
}

/// The file contents the served config was last compared with.
pub struct LastSeen(Material);

/// A listener handing axum connections whose TLS handshake has finished.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, certified: Arc<Certified>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum's own listener does.
                        tracing::warn!(error = %e, "REST API: accepting a connection failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let acceptor = TlsAcceptor::from(certified.config());
                let handed = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "REST API: TLS handshake refused"),
                        Err(_) => tracing::info!(%peer, "REST API: TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends once axum has dropped this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn plain_http_unless_a_certificate_is_given() {
        assert_eq!(RestTls::from_keys(None, None, None, None).unwrap(), None);
        assert_eq!(RestTls::from_keys(None, None, None, Some("none")).unwrap(), None);
        let tls = RestTls::from_keys(p("c.pem"), p("k.pem"), None, None).unwrap().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::None);
    }

    #[test]
    fn a_client_ca_means_required_unless_said_otherwise() {
        let tls = RestTls::from_keys(p("c"), p("k"), p("ca"), None).unwrap().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Required);
        let tls = RestTls::from_keys(p("c"), p("k"), p("ca"), Some("REQUESTED")).unwrap().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Requested);
    }

    #[test]
    fn incomplete_settings_name_the_missing_key() {
        let e = RestTls::from_keys(p("c"), None, None, None).unwrap_err().to_string();
        assert!(e.contains("rest_tls_key") && e.contains("SLUICE_REST_TLS_KEY"), "{e}");
        let e = RestTls::from_keys(None, p("k"), None, None).unwrap_err().to_string();
        assert!(e.contains("rest_tls_cert is set") || e.contains("rest_tls_cert"), "{e}");
        let e = RestTls::from_keys(p("c"), p("k"), None, Some("required")).unwrap_err().to_string();
        assert!(e.contains("needs rest_tls_client_ca"), "{e}");
        let e = RestTls::from_keys(None, None, p("ca"), None).unwrap_err().to_string();
        assert!(e.contains("need HTTPS"), "{e}");
        let e = RestTls::from_keys(p("c"), p("k"), None, Some("want")).unwrap_err().to_string();
        assert!(e.contains("rest_tls_client_auth") && e.contains("\"want\""), "{e}");
    }

    #[test]
    fn a_reload_loads_only_new_bytes_or_on_sighup() {
        let m = |cert: &str| Material { cert: cert.into(), key: b"k".to_vec(), client_ca: None };
        assert_eq!(reload_decision(&m("a"), &m("a"), false), Reload::Keep);
        assert_eq!(reload_decision(&m("a"), &m("b"), false), Reload::Load);
        assert_eq!(reload_decision(&m("a"), &m("a"), true), Reload::Load);
        let with_ca = Material { client_ca: Some(b"ca2".to_vec()), ..m("a") };
        assert_eq!(reload_decision(&m("a"), &with_ca, false), Reload::Load);
    }
}
