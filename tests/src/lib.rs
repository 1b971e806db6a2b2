//! Shared helpers of the end-to-end tests in `tests/tests/`.
//!
//! The tests drive real processes and the real local services started by
//! `dev/services up`; they find them through the variables `dev/services env`
//! prints, and fail (never skip) when those are missing.

use std::{
    fs,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    message::OwnedMessage,
    producer::{FutureProducer, FutureRecord},
    Message, Offset, TopicPartitionList,
};
use serde_json::Value;
use tls::HttpsClient;

pub mod bigquery;
pub mod http_fake;
pub mod hybris;
pub mod marketing_cloud;
pub mod odata;
pub mod s3;
pub mod s3_proxy;
pub mod salesforce;
pub mod schema_registry;
pub mod secured_kafka;
pub mod seeded;
pub mod tls;

/// The directory holding the workspace's build outputs (the `sluice` binary
/// and the plugin libraries) of the profile these tests were built in.
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test binary>
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile> directory").to_path_buf()
}

/// Path of a plugin library built in this workspace, by crate name.
pub fn plugin_library(crate_name: &str) -> PathBuf {
    let file =
        format!("{}{}{}", std::env::consts::DLL_PREFIX, crate_name.replace('-', "_"), std::env::consts::DLL_SUFFIX);
    let path = build_dir().join(file);
    assert!(path.exists(), "{} is missing: build the workspace first (dev/test does)", path.display());
    path
}

/// The value of a variable `dev/services env` exports.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the services with `dev/services up` and `eval \"$(dev/services env)\"`")
    })
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst), nanos % 1_000_000_000)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A `sluice worker` process on a free loopback port, killed when dropped.
pub struct WorkerProcess {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// For a worker whose REST API speaks HTTPS: the client the test talks
    /// to it with.
    https: Option<HttpsClient>,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts a worker of cluster `cluster_id` with the workspace's plugins
    /// and waits until it is ready.
    pub fn start(cluster_id: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> WorkerProcess {
        WorkerProcess::start_on(&service_env("KAFKA_BOOTSTRAP"), cluster_id, extra_args, envs)
    }

    /// As [`WorkerProcess::start`], against the brokers at `bootstrap` (a
    /// private broker of the test).
    pub fn start_on(bootstrap: &str, cluster_id: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> WorkerProcess {
        WorkerProcess::start_with(bootstrap, cluster_id, extra_args, envs, None)
    }

    /// As [`WorkerProcess::start_on`], for a worker whose `extra_args` turn
    /// HTTPS on for its REST API: every request of the test goes through
    /// `https` (trusting the worker's CA, with a client certificate if the
    /// worker wants one).
    pub fn start_https(
        bootstrap: &str,
        cluster_id: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
        https: HttpsClient,
    ) -> WorkerProcess {
        WorkerProcess::start_with(bootstrap, cluster_id, extra_args, envs, Some(https))
    }

    fn start_with(
        bootstrap: &str,
        cluster_id: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
        https: Option<HttpsClient>,
    ) -> WorkerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "worker".into(),
            "--bootstrap-servers".into(),
            bootstrap.into(),
            "--cluster-id".into(),
            cluster_id.into(),
            "--rest-listen".into(),
            format!("127.0.0.1:{port}"),
            "--plugin-path".into(),
            build_dir().to_string_lossy().into(),
            // Tansu answers a group join after about half the session timeout.
            "--session-timeout-ms".into(),
            "6000".into(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut worker = WorkerProcess {
            child: None,
            url: format!("{}://127.0.0.1:{port}", if https.is_some() { "https" } else { "http" }),
            port,
            log: dir.path().join("worker.log"),
            args,
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            https,
            _dir: dir,
        };
        worker.spawn();
        worker
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("worker log");
        let child = Command::new(build_dir().join("sluice"))
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // SLUICE_TEST_LOG=debug (or a tracing filter) shows more when a test fails.
            .env("SLUICE_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()))
            // Quick automatic restarts in tests; a test may pass the flag to override.
            .env("SLUICE_TASK_RESTART_BACKOFF_MS", "500")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice worker");
        self.child = Some(child);
        let url = format!("{}/ready", self.url);
        let port = self.port;
        let https = self.https.clone();
        wait_until(
            &format!("the worker at {} to be ready; log:\n{}", self.url, self.log_text()),
            Duration::from_secs(60),
            || {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("the worker exited with {status}; log:\n{}", self.log_text());
                }
                match &https {
                    Some(client) => {
                        client.request(port, "GET", "/ready", None).ok().filter(|a| a.status == 200).map(|_| ())
                    }
                    None => ureq::get(&url).call().ok().map(|_| ()),
                }
            },
        );
    }

    /// Starts the same worker again (same port and settings) after a kill.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no chance to commit or leave the group.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The worker's process id while it runs (to SIGSTOP / SIGCONT it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, as ECS sends it; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running worker");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        child.wait().expect("worker exit status")
    }

    /// Sends a request; returns the status code and the JSON body (Null if none).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request_with(method, path, body, None)
    }

    pub fn request_with(&self, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> (u16, Value) {
        if let Some(client) = &self.https {
            assert!(auth.is_none(), "the HTTPS test client sends no Authorization header");
            let answer = client
                .request(self.port, method, path, body)
                .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.url));
            return (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url);
        let mut builder =
            ureq::http::Request::builder().method(method).uri(&url).header("Content-Type", "application/json");
        if let Some(a) = auth {
            builder = builder.header("Authorization", a);
        }
        let request = builder.body(body.unwrap_or("").to_string()).expect("request");
        let mut response = agent.run(request).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends a request with any content type; returns the status, the
    /// headers (names in lower case) and the JSON body (Null if none).
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: Option<&str>,
    ) -> (u16, Vec<(String, String)>, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = content_type {
            builder = builder.header("Content-Type", t);
        }
        let request = builder.body(body.unwrap_or("").to_string()).expect("request");
        let mut response = agent.run(request).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// This worker's id in statuses: `host:port`, as Kafka Connect's.
    pub fn worker_id(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None)
    }

    /// The sum of a Prometheus counter family of `/metrics` over the samples
    /// whose labels contain `selector`.
    pub fn metric_sum(&self, family: &str, selector: &str) -> u64 {
        let (_, text) = self.get_text("/metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(selector))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The last 40 lines of the worker's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// GETs a text answer (`/metrics`): the status and the body.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        if let Some(client) = &self.https {
            let answer =
                client.request(self.port, "GET", path, None).unwrap_or_else(|e| panic!("GET {}{path}: {e}", self.url));
            return (answer.status, answer.body);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url);
        let mut response = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
    }

    /// Polls a connector's status until every task (at least `tasks`) reads `state`.
    pub fn wait_tasks_state(&self, connector: &str, tasks: usize, state: &str, timeout: Duration) -> Value {
        wait_until(&format!("{connector} tasks to be {state}"), timeout, || {
            let (code, status) = self.get(&format!("/connectors/{connector}/status"));
            let list = status["tasks"].as_array()?;
            (code == 200 && list.len() >= tasks && list.iter().all(|t| t["state"] == state)).then_some(status)
        })
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"));
    c
}

/// The Kafka cluster's id, as the brokers report it.
pub fn kafka_cluster_id() -> String {
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("admin client");
    admin.inner().fetch_cluster_id(Duration::from_secs(30)).expect("the broker's cluster id")
}

/// Creates a topic (if missing) with `partitions`.
pub fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let _ = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new())).expect("create topic");
}

/// Produces records (key, value) to `partition` of `topic`; returns their offsets.
pub fn produce(topic: &str, partition: i32, records: &[(Option<&str>, Option<&str>)]) -> Vec<i64> {
    produce_at(topic, partition, records, None)
}

/// [`produce`] with an explicit record timestamp (ms since the epoch) for all.
pub fn produce_at(
    topic: &str,
    partition: i32,
    records: &[(Option<&str>, Option<&str>)],
    timestamp: Option<i64>,
) -> Vec<i64> {
    let records: Vec<_> = records.iter().map(|(k, v)| (k.map(str::as_bytes), v.map(str::as_bytes))).collect();
    produce_bytes_at(topic, partition, &records, timestamp)
}

/// A record's key and value as bytes (either may be absent).
pub type RawRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// [`produce_at`] of keys and values that need not be text.
pub fn produce_bytes_at(topic: &str, partition: i32, records: &[RawRecord<'_>], timestamp: Option<i64>) -> Vec<i64> {
    let producer: FutureProducer = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|(k, v)| {
            let mut r = FutureRecord::<[u8], [u8]>::to(topic).partition(partition);
            if let Some(ts) = timestamp {
                r = r.timestamp(ts);
            }
            if let Some(k) = k {
                r = r.key(*k);
            }
            if let Some(v) = v {
                r = r.payload(*v);
            }
            producer.send_result(r).map_err(|(e, _)| e).expect("queue a record")
        })
        .collect();
    deliveries
        .into_iter()
        .map(|d| futures::executor::block_on(d).expect("delivery").map_err(|(e, _)| e).expect("acknowledged").offset)
        .collect()
}

/// A consumer of partitions 0..partitions of `topic`, from the start, in a
/// group of its own that commits nothing.
pub fn reader(topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = client_config()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Reads `count` records from partition 0..partitions of `topic` from the start.
pub fn consume(topic: &str, partitions: i32, count: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let consumer = reader(topic, partitions);
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count} records from {topic} before the deadline", out.len());
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.detach());
        }
    }
    out
}

/// The committed offset of a consumer group on one partition.
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    committed_with_metadata(group, topic, partition).map(|(o, _)| o)
}

/// The committed offset of a consumer group on one partition, with the
/// commit's metadata (empty when none).
pub fn committed_with_metadata(group: &str, topic: &str, partition: i32) -> Option<(i64, String)> {
    let consumer: BaseConsumer = client_config().set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    let e = committed.elements().into_iter().next()?;
    match e.offset() {
        Offset::Offset(o) => Some((o, e.metadata().to_string())),
        _ => None,
    }
}

/// The text of a message header, if present.
pub fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).to_string())
}
