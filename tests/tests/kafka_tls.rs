//! Kafka over TLS: a private Tansu behind an haproxy TLS front (Tansu 0.6.0
//! cannot terminate TLS itself, docs/decisions/0023), a worker whose client
//! settings say `security.protocol=SSL` with the test CA. Records flow; a
//! connector whose clients are set up wrong (wrong CA, plaintext against the
//! TLS listener) gets a log line naming the setting while the worker and the
//! other connector stay up; a SASL password given as `${env:}` shows in no
//! log line and no REST answer.

use std::{
    fs,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{json, Value};
use sluice_tests::{
    build_dir, service_env,
    tls::{make_ca, make_cert},
    unique, wait_until,
};

const TIMEOUT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn port_open(port: u16) -> Option<()> {
    TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tansu listening in plain on a private port and advertising the TLS
/// front's address, and haproxy terminating TLS in front of it.
struct TlsKafka {
    bootstrap: String,
    _tansu: Process,
    _haproxy: Process,
}

impl TlsKafka {
    fn start(dir: &Path, cert: &Path, key: &Path) -> TlsKafka {
        let (plain, tls) = (free_port(), free_port());
        let tansu = Command::new(service_env("TANSU_BIN"))
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{plain}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{tls}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("tansu.log")).unwrap())
            .spawn()
            .expect("start tansu");
        let tansu = Process(tansu);
        wait_until("the private Tansu to listen", TIMEOUT, || port_open(plain));
        let combined = dir.join("broker-combined.pem");
        fs::write(&combined, [fs::read(cert).unwrap(), fs::read(key).unwrap()].concat()).unwrap();
        let config = dir.join("haproxy.cfg");
        fs::write(
            &config,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n\
                 frontend kafka_tls\n  bind 127.0.0.1:{tls} ssl crt {}\n  default_backend tansu\n\
                 backend tansu\n  server t1 127.0.0.1:{plain}\n",
                combined.display()
            ),
        )
        .unwrap();
        let haproxy = Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting haproxy ({e}): install it with dev/deploy-check install"));
        let haproxy = Process(haproxy);
        wait_until("haproxy to listen", TIMEOUT, || port_open(tls));
        TlsKafka { bootstrap: format!("127.0.0.1:{tls}"), _tansu: tansu, _haproxy: haproxy }
    }

    fn client(&self, ca: &Path) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", ca.to_str().unwrap());
        c
    }
}

struct Worker {
    process: Process,
    url: String,
    log: std::path::PathBuf,
}

impl Worker {
    fn start(dir: &Path, kafka: &TlsKafka, ca: &Path, envs: &[(&str, &str)]) -> Worker {
        let port = free_port();
        let log = dir.join("worker.log");
        let child = Command::new(build_dir().join("sluice"))
            .args(["worker", "--bootstrap-servers", &kafka.bootstrap, "--cluster-id"])
            .arg(unique("kafka-tls"))
            .args(["--rest-listen", &format!("127.0.0.1:{port}"), "--session-timeout-ms", "6000"])
            .arg("--plugin-path")
            .arg(build_dir())
            .args(["--kafka", "security.protocol=SSL", "--kafka", &format!("ssl.ca.location={}", ca.display())])
            .envs(envs.iter().copied())
            .env("SLUICE_LOG", "info")
            .env("SLUICE_TASK_RESTART_BACKOFF_MS", "500")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sluice worker");
        let mut w = Worker { process: Process(child), url: format!("http://127.0.0.1:{port}"), log };
        let ready = format!("{}/ready", w.url);
        wait_until("the worker to be ready over TLS", TIMEOUT, || {
            if let Some(status) = w.process.0.try_wait().ok().flatten() {
                panic!("the worker exited with {status}; log:\n{}", w.log_text());
            }
            ureq::get(&ready).call().ok().map(|_| ())
        });
        w
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log satisfies `check`; on timeout, fails showing the log.
    fn wait_log(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let log = self.log_text();
            if check(&log) {
                return log;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; log:\n{log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = match (method, body) {
            ("POST", Some(b)) => agent.post(&url).send_json(b),
            ("GET", _) => agent.get(&url).call(),
            _ => panic!("unsupported {method}"),
        }
        .expect("REST call");
        let code = response.status().as_u16();
        (code, response.into_body().read_to_string().unwrap_or_default())
    }

    fn status(&self, connector: &str) -> Value {
        serde_json::from_str(&self.call("GET", &format!("/connectors/{connector}/status"), None).1)
            .unwrap_or(Value::Null)
    }
}

fn file_sink(name: &str, topic: &str, file: &Path, overrides: &[(&str, &str)]) -> Value {
    let mut config = json!({"connector.class": "example-file-sink", "topics": topic, "file": file.to_str().unwrap()});
    for (k, v) in overrides {
        config[*k] = json!(v);
    }
    json!({"name": name, "config": config})
}

#[test]
fn records_flow_over_tls_and_client_mistakes_name_their_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "kafka");
    let (cert, key) = make_cert(d, &ca, "broker", true);
    let other_ca = make_ca(d, "other");
    let kafka = TlsKafka::start(d, &cert, &key);
    let secret = "pw-never-shown-4711";
    let mut w = Worker::start(d, &kafka, &ca, &[("KAFKA_TLS_TEST_PASSWORD", secret)]);

    // Records in over TLS, through the worker's TLS consumer, out to a file.
    let topic = unique("tls-in");
    let admin: AdminClient<DefaultClientContext> = kafka.client(&ca).create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(-1));
    futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap();
    let producer: FutureProducer = kafka.client(&ca).create().unwrap();
    for n in 0..3 {
        let value = format!("{{\"n\":{n}}}");
        futures::executor::block_on(
            producer.send(FutureRecord::<(), str>::to(&topic).payload(&value), Duration::from_secs(30)),
        )
        .map_err(|(e, _)| e)
        .expect("produced over TLS");
    }
    let out = d.join("out.txt");
    let (code, body) = w.call("POST", "/connectors", Some(file_sink("tls-good", &topic, &out, &[])));
    assert_eq!(code, 201, "{body}");
    let lines = wait_until("three records in the file", TIMEOUT, || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        (text.lines().count() >= 3).then_some(text)
    });
    for n in 0..3 {
        assert!(lines.contains(&format!("{{\"n\":{n}}}")), "{lines}");
    }

    // A connector whose consumer trusts the wrong CA, one that talks plain
    // to the TLS listener, and one with a SASL password from ${env:}: each
    // task's consumer fails to connect and the log names the setting; the
    // worker keeps answering and the first connector keeps running.
    let wrong_ca = ("consumer.override.ssl.ca.location", other_ca.to_str().unwrap());
    let (code, body) =
        w.call("POST", "/connectors", Some(file_sink("tls-wrong-ca", &topic, &d.join("a.txt"), &[wrong_ca])));
    assert_eq!(code, 201, "{body}");
    let plain = ("consumer.override.security.protocol", "PLAINTEXT");
    let (code, body) =
        w.call("POST", "/connectors", Some(file_sink("tls-plaintext", &topic, &d.join("b.txt"), &[plain])));
    assert_eq!(code, 201, "{body}");
    let sasl = [
        ("consumer.override.security.protocol", "SASL_SSL"),
        ("consumer.override.sasl.mechanism", "SCRAM-SHA-512"),
        ("consumer.override.sasl.username", "sluice"),
        ("consumer.override.sasl.password", "${env:KAFKA_TLS_TEST_PASSWORD}"),
    ];
    let (code, body) = w.call("POST", "/connectors", Some(file_sink("tls-sasl", &topic, &d.join("c.txt"), &sasl)));
    assert_eq!(code, 201, "{body}");

    let log = w.wait_log("both mistakes in the worker's log", |log| {
        let named = |client: &str, setting: &str| {
            log.lines().any(|l| l.contains("Kafka connection failed") && l.contains(client) && l.contains(setting))
        };
        named("connector-consumer-tls-wrong-ca-0", "set ssl.ca.location")
            && named("connector-consumer-tls-plaintext-0", "set security.protocol=SSL")
    });
    assert_eq!(w.call("GET", "/ready", None).0, 200, "the worker stays up");
    assert_eq!(w.status("tls-good")["tasks"][0]["state"], "RUNNING");
    assert!(w.process.0.try_wait().unwrap().is_none(), "the worker exited; log:\n{log}");
    // The SASL consumer got as far as trying to log in (Tansu without
    // --authentication does not offer SCRAM); the failure is logged.
    w.wait_log("the SASL consumer's failure in the log", |log| {
        log.lines().any(|l| l.contains("connector-consumer-tls-sasl-0") && l.contains("Kafka"))
    });

    // The password itself is nowhere: not in the log, not in REST answers.
    for path in [
        "/connectors/tls-sasl",
        "/connectors/tls-sasl/config",
        "/connectors/tls-sasl/status",
        "/connectors?expand=info&expand=status",
    ] {
        let (code, body) = w.call("GET", path, None);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(!body.contains(secret), "{path} shows the password: {body}");
    }
    assert!(!w.log_text().contains(secret), "the log shows the password");
}
