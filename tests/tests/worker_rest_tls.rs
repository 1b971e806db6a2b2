//! HTTPS on the REST API against a real worker: certificates from a
//! throwaway CA made with openssl, client certificates required, `sluice
//! health` over HTTPS, reload on SIGHUP and on file change, and a bad path
//! refused at start naming its setting.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rustls::pki_types::CertificateDer;
use sluice_tests::{
    build_dir, service_env,
    tls::{der, make_ca, make_cert, HttpsClient},
    unique, wait_until,
};

/// GETs `path` over HTTPS trusting `ca`, with a client certificate if given:
/// the status line and the certificate the worker served, or the error.
fn https_get(
    port: u16,
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
    path: &str,
) -> Result<(String, CertificateDer<'static>), String> {
    let client = HttpsClient::new(ca, client.map(|(cert, key)| (cert.as_path(), key.as_path())));
    client.request(port, "GET", path, None).map(|a| (a.status_line, a.served))
}

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, port: u16, args: &[&str]) -> Worker {
        let log = dir.join("worker.log");
        let child = Command::new(build_dir().join("sluice"))
            .args(["worker", "--bootstrap-servers", &service_env("KAFKA_BOOTSTRAP"), "--cluster-id"])
            .arg(unique("rest-tls"))
            .args(["--rest-listen", &format!("127.0.0.1:{port}"), "--session-timeout-ms", "6000"])
            .arg("--plugin-path")
            .arg(build_dir())
            .args(args)
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sluice worker");
        Worker { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn health(port: u16, args: &[&str]) -> std::process::Output {
    Command::new(build_dir().join("sluice"))
        .args(["health", "--rest-listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .output()
        .expect("run sluice health")
}

#[test]
fn https_with_a_required_client_certificate_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "rest");
    let (cert, key) = make_cert(d, &ca, "server-1", true);
    let client = make_cert(d, &ca, "operator", false);
    let other_ca = make_ca(d, "other");
    let stranger = make_cert(d, &other_ca, "stranger", false);
    let port = free_port();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let w = Worker::start(
        d,
        port,
        &["--rest-tls-cert", &s(&cert), "--rest-tls-key", &s(&key), "--rest-tls-client-ca", &s(&ca)],
    );

    let (status, served) = wait_until(
        &format!("the worker to answer /ready over HTTPS; log:\n{}", w.log_text()),
        Duration::from_secs(60),
        || https_get(port, &ca, Some(&client), "/ready").ok().filter(|(status, _)| status.contains(" 200 ")),
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(served, der(&cert));
    assert!(https_get(port, &ca, Some(&client), "/connectors").unwrap().0.contains(" 200 "));

    // No client certificate, or one from another CA: refused in the handshake.
    let e = https_get(port, &ca, None, "/health").unwrap_err();
    assert!(e.contains("CertificateRequired") || e.contains("alert"), "{e}");
    assert!(https_get(port, &ca, Some(&stranger), "/health").is_err());
    // A client that does not trust the worker's CA gets no answer either.
    assert!(https_get(port, &other_ca, Some(&client), "/health").is_err());

    // The container health check over HTTPS.
    let out = health(port, &["--tls-ca", &s(&ca), "--tls-cert", &s(&client.0), "--tls-key", &s(&client.1)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("https://127.0.0.1:{port}/health: 200"));
    let out = health(port, &["--tls-ca", &s(&ca)]);
    assert!(!out.status.success(), "no client certificate must fail the probe");
    let out = health(port, &[]);
    assert!(!out.status.success(), "plain HTTP to the HTTPS listener must fail the probe");

    // SIGHUP loads a renewed certificate.
    let (renewed, renewed_key) = make_cert(d, &ca, "server-2", true);
    std::fs::copy(&renewed, &cert).unwrap();
    std::fs::copy(&renewed_key, &key).unwrap();
    let hup = Command::new("kill").args(["-HUP", &w.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    wait_until("the renewed certificate to be served", Duration::from_secs(30), || {
        https_get(port, &ca, Some(&client), "/health").ok().filter(|(_, served)| *served == der(&renewed))
    });

    // A changed file is picked up without a signal.
    let (third, third_key) = make_cert(d, &ca, "server-3", true);
    std::fs::copy(&third_key, &key).unwrap();
    std::fs::copy(&third, &cert).unwrap();
    wait_until("the changed certificate file to be served", Duration::from_secs(30), || {
        https_get(port, &ca, Some(&client), "/health").ok().filter(|(_, served)| *served == der(&third))
    });

    // A broken file is reported, naming the setting, and the last good
    // certificate stays in service.
    std::fs::write(&cert, "not a certificate").unwrap();
    let hup = Command::new("kill").args(["-HUP", &w.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let log = wait_until("the failed reload in the log", Duration::from_secs(30), || {
        Some(w.log_text()).filter(|l| l.contains("reloading failed"))
    });
    assert!(log.contains("rest_tls_cert") && log.contains(cert.to_str().unwrap()), "{log}");
    let (status, served) = https_get(port, &ca, Some(&client), "/health").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(served, der(&third));
}

#[test]
fn a_bad_certificate_path_stops_the_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "rest");
    let (_, key) = make_cert(d, &ca, "server", true);
    let missing = d.join("missing.pem");
    let mut w = Worker::start(
        d,
        free_port(),
        &["--rest-tls-cert", missing.to_str().unwrap(), "--rest-tls-key", key.to_str().unwrap()],
    );
    let status = wait_until("the worker to exit", Duration::from_secs(30), || w.child.try_wait().unwrap());
    assert!(!status.success());
    let log = w.log_text();
    assert!(log.contains("rest_tls_cert") && log.contains(missing.to_str().unwrap()), "{log}");

    // A key that is not the certificate's: refused at start too.
    let (cert, _) = make_cert(d, &ca, "server-a", true);
    let (_, other_key) = make_cert(d, &ca, "server-b", true);
    let mut w = Worker::start(
        d,
        free_port(),
        &["--rest-tls-cert", cert.to_str().unwrap(), "--rest-tls-key", other_key.to_str().unwrap()],
    );
    let status = wait_until("the worker to exit", Duration::from_secs(30), || w.child.try_wait().unwrap());
    assert!(!status.success());
    let log = w.log_text();
    assert!(log.contains("rest_tls_key"), "{log}");
}

#[test]
fn a_connect_worker_file_with_a_pem_keystore_and_requested_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "rest");
    let (cert, key) = make_cert(d, &ca, "server", true);
    let client = make_cert(d, &ca, "operator", false);
    let stranger = make_cert(d, &make_ca(d, "other"), "stranger", false);
    // Kafka's PEM keystore: one file with the key and the chain.
    let keystore = d.join("rest-keystore.pem");
    std::fs::write(&keystore, [std::fs::read(&key).unwrap(), std::fs::read(&cert).unwrap()].concat()).unwrap();
    let port = free_port();
    let properties = d.join("connect-distributed.properties");
    std::fs::write(
        &properties,
        format!(
            "listeners=https://127.0.0.1:{port}\nlisteners.https.ssl.keystore.type=PEM\n\
             listeners.https.ssl.keystore.location={}\nlisteners.https.ssl.truststore.type=PEM\n\
             listeners.https.ssl.truststore.location={}\nlisteners.https.ssl.client.auth=requested\n",
            keystore.display(),
            ca.display()
        ),
    )
    .unwrap();
    let w = Worker::start(d, port, &["--config", properties.to_str().unwrap()]);
    let (status, served) = wait_until(
        &format!("the worker to answer /ready over HTTPS; log:\n{}", w.log_text()),
        Duration::from_secs(60),
        || https_get(port, &ca, None, "/ready").ok().filter(|(status, _)| status.contains(" 200 ")),
    );
    assert!(status.contains(" 200 "), "requested: a client without a certificate is let in");
    assert_eq!(served, der(&cert));
    assert!(https_get(port, &ca, Some(&client), "/connectors").unwrap().0.contains(" 200 "));
    assert!(https_get(port, &ca, Some(&stranger), "/health").is_err(), "a certificate given is checked");
}
