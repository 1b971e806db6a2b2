//! Throwaway certificates for TLS tests, made with the `openssl` command (as
//! `dev/services` makes the services' own): a CA, and server or client
//! certificates it signs. And an HTTPS client for a worker's REST API over
//! TLS, with a client certificate if given.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A CA in `dir`: `<name>-ca.pem` (returned) and `<name>-ca.key`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-ca.key")));
    let subject = format!("/CN={name} test CA");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subject,
        "-keyout",
        s(&key),
        "-out",
        s(&pem),
    ]);
    pem
}

/// A certificate `<file>.pem` with its key `<file>.key` in `dir`, signed by
/// the CA `ca` (from [`make_ca`]): for 127.0.0.1 as a server, or a client's.
pub fn make_cert(dir: &Path, ca: &Path, file: &str, server: bool) -> (PathBuf, PathBuf) {
    make_cert_for_days(dir, ca, file, server, 2)
}

/// As [`make_cert`], valid from now for `days`; `-1` makes a certificate
/// that has already expired (its end a day before its start).
pub fn make_cert_for_days(dir: &Path, ca: &Path, file: &str, server: bool, days: i32) -> (PathBuf, PathBuf) {
    let (pem, key) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
    let (csr, ext) = (dir.join(format!("{file}.csr")), dir.join(format!("{file}.ext")));
    let ext_text = if server {
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(&ext, ext_text).expect("write the extensions file");
    let subject = format!("/CN={file}");
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &subject,
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
    ]);
    let ca_key = ca.with_file_name(ca.file_name().and_then(|n| n.to_str()).unwrap_or_default().replace(".pem", ".key"));
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string();
    openssl(&[
        "x509",
        "-req",
        "-days",
        &days.to_string(),
        "-in",
        s(&csr),
        "-CA",
        s(ca),
        "-CAkey",
        s(&ca_key),
        "-set_serial",
        &serial,
        "-extfile",
        s(&ext),
        "-out",
        s(&pem),
    ]);
    (pem, key)
}

/// A certificate's DER from its PEM file.
pub fn der(pem: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(pem).unwrap_or_else(|e| panic!("{}: {e}", pem.display()))
}

/// An answer over HTTPS: the status, the status line, the body, and the
/// certificate the server presented.
pub struct HttpsAnswer {
    pub status: u16,
    pub status_line: String,
    pub body: String,
    pub served: CertificateDer<'static>,
}

/// An HTTPS client of 127.0.0.1 trusting `ca` only, presenting a client
/// certificate when given one.
#[derive(Clone)]
pub struct HttpsClient {
    config: Arc<rustls::ClientConfig>,
}

impl HttpsClient {
    pub fn new(ca: &Path, client: Option<(&Path, &Path)>) -> HttpsClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(ca)).expect("the CA certificate");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![der(cert)],
                    PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("{}: {e}", key.display())),
                )
                .expect("the client certificate and key"),
            None => builder.with_no_client_auth(),
        };
        HttpsClient { config: Arc::new(config) }
    }

    /// One request on a connection of its own (`Connection: close`); the
    /// handshake's or the connection's error as text.
    pub fn request(&self, port: u16, method: &str, path: &str, body: Option<&str>) -> Result<HttpsAnswer, String> {
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).and_then(|()| tls.write_all(body.as_bytes())).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                // A server that closes without close_notify after a whole answer.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        let served = tls.conn.peer_certificates().and_then(|c| c.first()).cloned().ok_or("no server certificate")?;
        let text = String::from_utf8_lossy(&answer).to_string();
        let (head, raw_body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
        let status_line = head.lines().next().unwrap_or_default().to_string();
        if status_line.is_empty() {
            return Err("the server closed the connection without answering".into());
        }
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status code")?;
        let chunked = head.lines().any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        let body = if chunked { dechunk(raw_body) } else { raw_body.to_string() };
        Ok(HttpsAnswer { status, status_line, body, served: served.into_owned() })
    }
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        raw = rest[size..].trim_start_matches("\r\n");
    }
    out
}
