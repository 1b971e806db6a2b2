//! A private Tansu broker for tests of secured Kafka connections, and an
//! haproxy TLS front for it (Tansu 0.6.0 cannot terminate TLS itself,
//! docs/decisions/0023). SCRAM users need a broker on S3 storage: users are
//! created while authentication is off and a broker restarted with
//! `--authentication` on the same storage finds them (docs/decisions/0044).

use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{build_dir, service_env, unique, wait_until};

const TIMEOUT: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn port_open(port: u16) -> Option<()> {
    TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
}

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private Tansu on a free port, advertising `advertised` (a TLS front's
/// port, or its own).
pub struct Tansu {
    pub port: u16,
    advertised: u16,
    cluster: String,
    storage: String,
    envs: Vec<(&'static str, String)>,
    log: PathBuf,
    process: Option<Process>,
}

impl Tansu {
    /// A broker on the in-memory engine (nothing survives a restart).
    pub fn in_memory(dir: &Path, advertised: Option<u16>) -> Tansu {
        Tansu::new(dir, advertised, "memory://tansu/".into(), Vec::new())
    }

    /// A broker on a bucket of its own on `dev/services`' S3 server, so what
    /// it stores (SCRAM users) survives a restart.
    pub fn on_s3(dir: &Path, bucket: &str, advertised: Option<u16>) -> Tansu {
        let envs = vec![
            ("AWS_ENDPOINT", service_env("S3_ENDPOINT")),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", service_env("S3_ACCESS_KEY")),
            ("AWS_SECRET_ACCESS_KEY", service_env("S3_SECRET_KEY")),
            ("AWS_DEFAULT_REGION", service_env("S3_REGION")),
        ];
        Tansu::new(dir, advertised, format!("s3://{bucket}/"), envs)
    }

    fn new(dir: &Path, advertised: Option<u16>, storage: String, envs: Vec<(&'static str, String)>) -> Tansu {
        let port = free_port();
        Tansu {
            port,
            advertised: advertised.unwrap_or(port),
            cluster: unique("tansu"),
            storage,
            envs,
            log: dir.join(format!("tansu-{port}.log")),
            process: None,
        }
    }

    /// Starts the broker (again) and waits until it listens; with
    /// `authentication`, every client must log in with SASL/SCRAM.
    pub fn start(&mut self, authentication: bool) {
        self.stop();
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("tansu log");
        let mut command = Command::new(service_env("TANSU_BIN"));
        command
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{}", self.advertised)])
            .args(["--cluster-id", &self.cluster, "--storage-engine", &self.storage])
            .envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log);
        if authentication {
            command.arg("--authentication");
        }
        self.process = Some(Process(command.spawn().expect("start tansu")));
        let port = self.port;
        wait_until("the private Tansu to listen", TIMEOUT, || port_open(port));
    }

    pub fn stop(&mut self) {
        self.process = None;
    }

    /// `tansu user create` against the running broker (authentication off):
    /// a SCRAM credential for `mechanism` (`scram256` or `scram512`).
    pub fn create_user(&self, user: &str, password: &str, mechanism: &str) {
        let out = Command::new(service_env("TANSU_BIN"))
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--mechanism", mechanism, user, password])
            .output()
            .expect("run tansu user create");
        assert!(
            out.status.success(),
            "tansu user create {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// haproxy terminating TLS on `port` with `cert`/`key` in front of
/// 127.0.0.1:`backend`; with `client_ca`, a client must present a
/// certificate that chains to it (`verify required`).
pub fn tls_front(dir: &Path, port: u16, backend: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Process {
    let combined = dir.join(format!("front-{port}.pem"));
    let pem = [fs::read(cert).expect("read the certificate"), fs::read(key).expect("read the key")].concat();
    fs::write(&combined, pem).expect("write the combined PEM");
    let verify = client_ca.map(|ca| format!(" ca-file {} verify required", ca.display())).unwrap_or_default();
    let config = dir.join(format!("haproxy-{port}.cfg"));
    fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n\
             frontend kafka_tls\n  bind 127.0.0.1:{port} ssl crt {}{verify}\n  default_backend tansu\n\
             backend tansu\n  server t1 127.0.0.1:{backend}\n",
            combined.display()
        ),
    )
    .expect("write haproxy.cfg");
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join(format!("haproxy-{port}.log"))).expect("haproxy log"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting haproxy ({e}): install it with dev/deploy-check install"));
    let front = Process(child);
    wait_until("haproxy to listen", TIMEOUT, || port_open(port));
    front
}

/// Waits until a log file satisfies `check`; on timeout, fails showing it.
pub fn wait_log(what: &str, log: &Path, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if check(&text) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; log:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a log has a line of a failed connection of `client` saying `what`.
pub fn names(log: &str, client: &str, what: &str) -> bool {
    log.lines().any(|l| l.contains("Kafka connection failed") && l.contains(client) && l.contains(what))
}

/// Starts a worker with `args` against `bootstrap` that is expected not to
/// get through its start check, and waits for its first log line naming
/// `what` (it would stop after 30 s; the line comes at the first attempt).
/// Returns the log up to then.
pub fn start_check_names(dir: &Path, bootstrap: &str, args: &[String], envs: &[(&str, &str)], what: &str) -> String {
    let log = dir.join(format!("{}.log", unique("refused-worker")));
    let child = Command::new(build_dir().join("sluice"))
        .args(["worker", "--bootstrap-servers", bootstrap, "--cluster-id"])
        .arg(unique("kafka-refused"))
        .args(["--rest-listen", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .envs(envs.iter().copied())
        .env("SLUICE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("worker log"))
        .spawn()
        .expect("start sluice worker");
    let _worker = Process(child);
    wait_log(&format!("the start check to say {what}"), &log, |text| names(text, "worker", what))
}

/// An example-file-sink connector's create request with `overrides` added
/// to its config.
pub fn file_sink(name: &str, topic: &str, file: &Path, overrides: &[(&str, &str)]) -> String {
    let mut config = serde_json::json!({"connector.class": "example-file-sink", "topics": topic, "file": file});
    for (k, v) in overrides {
        config[*k] = serde_json::json!(v);
    }
    serde_json::json!({"name": name, "config": config}).to_string()
}
