//! Issue 22's whole chain in one worker, every link secured: hybris-source
//! reads PostgreSQL over TLS (`sslmode=verify-full` with the CA file of
//! `dev/services`), the worker's Kafka clients log in with SCRAM-SHA-512 over
//! SASL_SSL (a private Tansu with `--authentication` behind an haproxy TLS
//! front, docs/decisions/0044; the password from `${file:}`), the s3-sink
//! writes to the S3 server's HTTPS endpoint (trusting its CA through
//! `SSL_CERT_FILE`), and the test creates the connectors and reads their
//! status only through the REST API over HTTPS with a required client
//! certificate. Every order version of the Hybris database lands in S3
//! exactly once, each order on one partition in order, as in plain mode
//! (tests/tests/hybris_to_s3.rs, the same checks), and no
//! secret (SASL password, database password, S3 secret key) shows in the
//! worker's log or in any REST answer the test read.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use serde_json::{json, Value};
use sluice_tests::{
    hybris::{assert_every_version_once, assert_tiled_and_in_order, fixture, objects, HybrisDb},
    s3::{self, Bucket},
    secured_kafka::{free_port, tls_front, Tansu},
    service_env,
    tls::{make_ca, make_cert, HttpsClient},
    unique, wait_until, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(120);
const SASL_PASSWORD: &str = "chain-scram-pw-never-shown-4127";
const DB_PASSWORD: &str = "chain-db-pw-never-shown-9031";

/// The test database's URL over TLS, verifying the server's certificate
/// (issued to `localhost`) against `ca`: connect by name, at 127.0.0.1.
fn verify_full_url(db: &HybrisDb, ca: &str) -> String {
    assert!(db.url.contains("@127.0.0.1:") && !db.url.contains('?'), "PG_URL's shape changed: {}", db.url);
    let url = db.url.replacen("@127.0.0.1:", "@localhost:", 1);
    format!("{url}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}")
}

/// Whether the connector's newest session to this database is encrypted,
/// as the server sees it.
fn connector_session_uses_tls(db: &mut HybrisDb) -> Option<bool> {
    let sql = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
               WHERE a.application_name = 'sluice-hybris-source' AND a.datname = current_database() \
               ORDER BY a.backend_start DESC LIMIT 1";
    db.client.query_opt(sql, &[]).expect("pg_stat_ssl").map(|row| row.get(0))
}

/// The REST answers the test read, to check for secrets at the end.
struct Rest<'a> {
    worker: &'a WorkerProcess,
    answers: Vec<String>,
}

impl Rest<'_> {
    fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (code, answer) = self.worker.request(method, path, body);
        self.answers.push(format!("{method} {path}: {answer}"));
        (code, answer)
    }

    fn create(&mut self, name: &str, config: Value) {
        let body = json!({ "name": name, "config": config }).to_string();
        let (code, answer) = self.call("POST", "/connectors", Some(&body));
        assert_eq!(code, 201, "creating {name}: {answer}\nworker log:\n{}", self.worker.log_tail());
    }

    fn wait_running(&mut self, name: &str) {
        let path = format!("/connectors/{name}/status");
        wait_until(&format!("{name}'s task to run; worker log:\n{}", self.worker.log_tail()), TIMEOUT, || {
            let (code, status) = self.call("GET", &path, None);
            let running = code == 200
                && status["connector"]["state"] == "RUNNING"
                && status["tasks"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["state"] == "RUNNING"));
            running.then_some(())
        });
    }
}

#[test]
fn hybris_over_tls_to_kafka_over_sasl_ssl_to_s3_over_https_with_rest_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();

    // Kafka: SASL_SSL with SCRAM-SHA-512. The user is created while
    // authentication is off, then the broker restarts with it on.
    let kafka_ca = make_ca(d, "kafka");
    let (broker_cert, broker_key) = make_cert(d, &kafka_ca, "broker", true);
    let tansu_bucket = Bucket::create(&unique("chain"));
    let front_port = free_port();
    let mut tansu = Tansu::on_s3(d, &tansu_bucket.name, Some(front_port));
    tansu.start(false);
    tansu.create_user("sluice", SASL_PASSWORD, "scram512");
    tansu.start(true);
    let _front = tls_front(d, front_port, tansu.port, &broker_cert, &broker_key, None);
    let kafka_secrets = d.join("kafka.properties");
    fs::write(&kafka_secrets, format!("password={SASL_PASSWORD}\n")).unwrap();

    // REST: HTTPS, client certificates from the operators' CA required.
    let rest_ca = make_ca(d, "rest");
    let (rest_cert, rest_key) = make_cert(d, &rest_ca, "worker", true);
    let (operator_cert, operator_key) = make_cert(d, &rest_ca, "operator", false);

    let args = [
        "--kafka".to_string(),
        "security.protocol=SASL_SSL".into(),
        "--kafka".into(),
        format!("ssl.ca.location={}", s(&kafka_ca)),
        "--kafka".into(),
        "sasl.mechanism=SCRAM-SHA-512".into(),
        "--kafka".into(),
        "sasl.username=sluice".into(),
        "--kafka".into(),
        format!("sasl.password=${{file:{}:password}}", s(&kafka_secrets)),
        "--rest-tls-cert".into(),
        s(&rest_cert),
        "--rest-tls-key".into(),
        s(&rest_key),
        "--rest-tls-client-ca".into(),
        s(&rest_ca),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s3_ca = service_env("S3_CA_FILE");
    let worker = WorkerProcess::start_https(
        &format!("127.0.0.1:{front_port}"),
        &unique("secured-chain"),
        &args,
        // The s3-sink's rustls trusts the S3 server's test CA through this.
        &[("SSL_CERT_FILE", s3_ca.as_str()), ("CHAIN_DB_PASSWORD", DB_PASSWORD)],
        HttpsClient::new(&rest_ca, Some((&operator_cert, &operator_key))),
    );
    assert!(worker.url.starts_with("https://"), "{}", worker.url);
    // The REST listener really wants the client certificate.
    let anonymous = HttpsClient::new(&rest_ca, None).request(worker.port, "GET", "/connectors", None);
    assert!(anonymous.is_err(), "a client without a certificate got an answer: {:?}", anonymous.map(|a| a.status_line));

    let mut db = HybrisDb::create("secured_chain", true);
    let prefix = format!("{}.", unique("chain"));
    let topic = format!("{prefix}order");
    let objects_dir = unique("secured-chain");
    let mut rest = Rest { worker: &worker, answers: Vec::new() };
    rest.create(
        "hybris",
        json!({
            "connector.class": "hybris-source",
            "tasks.max": "1",
            "hybris.mode": "jdbc",
            "hybris.jdbc.url": verify_full_url(&db, &service_env("DB_CA_FILE")),
            "hybris.jdbc.password": "${env:CHAIN_DB_PASSWORD}",
            "hybris.item.types": "Order",
            "hybris.poll.lag.ms": "500",
            "poll.interval.ms": "200",
            "topic.prefix": prefix,
            "topic.creation.default.partitions": "2",
        }),
    );
    rest.create(
        "s3",
        s3::sink_config(json!({
            "connector.class": "s3-sink",
            "tasks.max": "1",
            "store.url": service_env("S3_HTTPS_ENDPOINT"),
            "topics": topic,
            "topics.dir": objects_dir,
            "format.class": "json",
            "flush.size": "2",
            "rotate.schedule.interval.ms": "1000",
            "offset.flush.interval.ms": "1000",
        })),
    );
    rest.wait_running("hybris");
    rest.wait_running("s3");

    // The sample orders, then simulator steps (a new order, the oldest one
    // invoiced): before each step the source has emitted every version so
    // far, so a keyset poll sees each one (as in hybris_to_s3.rs).
    let mut expected: BTreeMap<(i64, String), String> = db.order_versions();
    let emitted = |n: usize| {
        wait_until(
            &format!("hybris-source to emit {n} order events; worker log:\n{}", worker.log_tail()),
            TIMEOUT,
            || (worker.metric_sum("sluice_records_written_total", "connector=\"hybris\"") as usize >= n).then_some(()),
        )
    };
    emitted(expected.len());
    let step = fixture("simulate-step.sql");
    for _ in 0..3 {
        db.exec(&step);
        expected.extend(db.order_versions());
        emitted(expected.len());
    }
    let orders: std::collections::BTreeSet<&String> = expected.values().collect();
    assert!(expected.len() > orders.len(), "the simulator updated no order: {expected:?}");
    assert_eq!(connector_session_uses_tls(&mut db), Some(true), "the connector's database session is not encrypted");

    let bucket = Bucket::new();
    let written = wait_until(
        &format!(
            "{} order events in s3://{}/{objects_dir}/; worker log:\n{}",
            expected.len(),
            bucket.name,
            worker.log_tail()
        ),
        TIMEOUT,
        || {
            let written = objects(&bucket, &objects_dir, &topic);
            (written.iter().map(|o| o.records.len()).sum::<usize>() >= expected.len()).then_some(written)
        },
    );
    assert_every_version_once(&expected, &written);
    assert_tiled_and_in_order(&written);

    // What an operator reads: nothing of it shows a secret.
    for path in [
        "/connectors?expand=info&expand=status",
        "/connectors/hybris",
        "/connectors/hybris/config",
        "/connectors/hybris/tasks",
        "/connectors/s3",
        "/connectors/s3/config",
        "/connectors/s3/tasks",
        "/connectors/s3/status",
    ] {
        let (code, answer) = rest.call("GET", path, None);
        assert_eq!(code, 200, "{path}: {answer}");
    }
    let (code, metrics) = worker.get_text("/metrics");
    assert_eq!(code, 200, "{metrics}");
    rest.answers.push(metrics);
    let s3_secret = service_env("S3_SECRET_KEY");
    let secrets = [SASL_PASSWORD, DB_PASSWORD, s3_secret.as_str()];
    for answer in &rest.answers {
        for secret in secrets {
            assert!(!answer.contains(secret), "a REST answer shows a secret: {answer}");
        }
    }
    let log = worker.log_text();
    for secret in secrets {
        assert!(!log.contains(secret), "the worker's log shows a secret:\n{log}");
    }
}
