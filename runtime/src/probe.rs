//! `sluice health`: asks a worker's REST API whether it is alive, for a
//! container `HEALTHCHECK` (the runtime image has no curl). HTTP/1.0 over
//! `std::net`, through blocking rustls when the API speaks HTTPS, so the
//! probe needs neither the async runtime nor Kafka.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use rustls::pki_types::ServerName;

/// HTTPS for the probe: the CA the worker's certificate chains to, a client
/// certificate when the worker requires one, and the name to check the
/// worker's certificate against (default: the probed host).
#[derive(Debug, Clone, Default)]
pub struct ProbeTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

const CA: &str = "--tls-ca (SLUICE_HEALTH_TLS_CA)";
const CERT: &str = "--tls-cert (SLUICE_HEALTH_TLS_CERT)";
const KEY: &str = "--tls-key (SLUICE_HEALTH_TLS_KEY)";

impl ProbeTls {
    fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        use crate::tls;
        let roots = tls::roots(CA, &self.ca, &tls::read(CA, &self.ca)?)?;
        let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    tls::certificates(CERT, cert, &tls::read(CERT, cert)?)?,
                    tls::private_key(KEY, key, &tls::read(KEY, key)?)?,
                )
                .with_context(|| format!("{CERT} and {KEY} do not make a usable pair"))?,
            (None, None) => builder.with_no_client_auth(),
            _ => bail!("{CERT} and {KEY} go together: give both or neither"),
        };
        Ok(Arc::new(config))
    }

    /// The name the worker's certificate must carry: the one given, or the probed host.
    fn name(&self, target: &str) -> anyhow::Result<ServerName<'static>> {
        let host = match &self.server_name {
            Some(name) => name.as_str(),
            None => target.rsplit_once(':').map_or(target, |(h, _)| h).trim_start_matches('[').trim_end_matches(']'),
        };
        ServerName::try_from(host.to_string()).map_err(|_| {
            anyhow!("`{host}` is not a host name or address to check the certificate against (--tls-server-name)")
        })
    }
}

/// The address to probe for a worker listening on `listen`: a wildcard
/// listener (`0.0.0.0`, `[::]`, as in a container) is reached on loopback.
pub fn probe_target(listen: &str) -> anyhow::Result<String> {
    let (host, port) = listen
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("SLUICE_REST_LISTEN `{listen}` has no port; expected host:port, e.g. 0.0.0.0:8083"))?;
    let port: u16 =
        port.parse().map_err(|_| anyhow!("SLUICE_REST_LISTEN `{listen}`: `{port}` is not a port number"))?;
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("{host}:{port}"))
}

/// Judges the head of an HTTP response: healthy only on a 2xx status line.
pub fn judge_response(head: &str) -> anyhow::Result<u16> {
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("not an HTTP response: `{status_line}`");
    };
    if !version.starts_with("HTTP/") {
        bail!("not an HTTP response: `{status_line}`");
    }
    let code: u16 = code.parse().map_err(|_| anyhow!("not an HTTP status: `{status_line}`"))?;
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        bail!("the worker answered `{status_line}`")
    }
}

/// GETs `path` from the worker at `target` (host:port) within `timeout`,
/// over HTTPS when `tls` is given.
pub fn probe(target: &str, path: &str, timeout: Duration, tls: Option<&ProbeTls>) -> anyhow::Result<u16> {
    let addr: SocketAddr = target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .next()
        .ok_or_else(|| anyhow!("{target} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {target}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match tls {
        None => exchange(&mut stream, target, path),
        Some(tls) => {
            let connection = rustls::ClientConnection::new(tls.client_config()?, tls.name(target)?)?;
            let mut stream = rustls::StreamOwned::new(connection, stream);
            exchange(&mut stream, target, path).context("over HTTPS")
        }
    }
}

fn exchange(stream: &mut (impl Read + Write), target: &str, path: &str) -> anyhow::Result<u16> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    // The status line is all that is judged; the body is not needed.
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).with_context(|| format!("reading the answer of {target}{path}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            break;
        }
    }
    judge_response(&String::from_utf8_lossy(&head)).with_context(|| format!("GET {target}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(probe_target("0.0.0.0:8083").unwrap(), "127.0.0.1:8083");
        assert_eq!(probe_target("[::]:9000").unwrap(), "[::1]:9000");
        assert_eq!(probe_target("10.0.1.7:8083").unwrap(), "10.0.1.7:8083");
    }

    #[test]
    fn a_listener_without_a_port_is_named_in_the_error() {
        let e = probe_target("localhost").unwrap_err().to_string();
        assert!(e.contains("SLUICE_REST_LISTEN") && e.contains("localhost"), "{e}");
        let e = probe_target("localhost:http").unwrap_err().to_string();
        assert!(e.contains("`http` is not a port"), "{e}");
    }

    #[test]
    fn only_2xx_is_healthy() {
        assert_eq!(judge_response("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n").unwrap(), 200);
        let e = judge_response("HTTP/1.1 503 Service Unavailable\r\n").unwrap_err().to_string();
        assert!(e.contains("503"), "{e}");
        assert!(judge_response("").is_err());
        assert!(judge_response("SSH-2.0-OpenSSH_9.2\r\n").is_err());
        assert!(judge_response("HTTP/1.1 abc\r\n").is_err());
    }

    #[test]
    fn probing_a_live_listener_reads_its_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n{}", "HTTP/1.1 500 Internal Server Error\r\n\r\n"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 256];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "the probe closed before its request ended");
                    req.extend_from_slice(&buf[..n]);
                }
                assert!(req.starts_with(b"GET /health HTTP/1.0\r\n"));
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        assert_eq!(probe(&target, "/health", Duration::from_secs(5), None).unwrap(), 200);
        assert!(probe(&target, "/health", Duration::from_secs(5), None).is_err());
        server.join().unwrap();
    }
}
