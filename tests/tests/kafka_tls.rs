//! Kafka over TLS: a private Tansu behind an haproxy TLS front (Tansu 0.6.0
//! cannot terminate TLS itself, docs/decisions/0023), a worker whose client
//! settings say `security.protocol=SSL` with the test CA. Records flow; a
//! connector whose clients are set up wrong (wrong CA, plaintext against the
//! TLS listener) gets a log line naming the setting while the worker and the
//! other connector stay up; a SASL password given as `${env:}` shows in no
//! log line and no REST answer. Mutual TLS through one front that requires
//! client certificates, and expired client and broker certificates
//! (docs/decisions/0044).

use std::{fs, path::Path, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use sluice_tests::{
    secured_kafka::{file_sink, free_port, names, start_check_names, tls_front, wait_log, Process, Tansu},
    tls::{make_ca, make_cert, make_cert_for_days},
    unique, wait_until, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A private in-memory Tansu advertising, and behind, an haproxy TLS front
/// (which asks for client certificates chaining to `client_ca`, if given).
struct TlsKafka {
    bootstrap: String,
    tansu: Tansu,
    _front: Process,
}

impl TlsKafka {
    fn start(dir: &Path, cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsKafka {
        let front_port = free_port();
        let mut tansu = Tansu::in_memory(dir, Some(front_port));
        tansu.start(false);
        let front = tls_front(dir, front_port, tansu.port, cert, key, client_ca);
        TlsKafka { bootstrap: format!("127.0.0.1:{front_port}"), tansu, _front: front }
    }

    /// A client of the test over TLS (with `client` as its certificate and key).
    fn client(&self, ca: &Path, client: Option<(&Path, &Path)>) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", ca.to_str().unwrap());
        if let Some((cert, key)) = client {
            c.set("ssl.certificate.location", cert.to_str().unwrap()).set("ssl.key.location", key.to_str().unwrap());
        }
        c
    }

    /// Creates `topic` and produces `{"n":0}`, `{"n":1}`, `{"n":2}` into it.
    fn produce_three(&self, topic: &str, ca: &Path, client: Option<(&Path, &Path)>) {
        let admin: AdminClient<DefaultClientContext> = self.client(ca, client).create().unwrap();
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
        let created = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()));
        assert!(created.is_ok(), "creating {topic} over TLS: {created:?}; broker log:\n{}", self.tansu.log_text());
        let producer: FutureProducer = self.client(ca, client).create().unwrap();
        for n in 0..3 {
            let value = format!("{{\"n\":{n}}}");
            futures::executor::block_on(
                producer.send(FutureRecord::<(), str>::to(topic).payload(&value), Duration::from_secs(30)),
            )
            .map_err(|(e, _)| e)
            .expect("produced over TLS");
        }
    }

    /// A worker whose own clients use TLS with `ca` (and `client` as their certificate).
    fn worker(&self, ca: &Path, client: Option<(&Path, &Path)>, envs: &[(&str, &str)]) -> WorkerProcess {
        let args = kafka_args(ca, client);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        WorkerProcess::start_on(&self.bootstrap, &unique("kafka-tls"), &args, envs)
    }
}

fn kafka_args(ca: &Path, client: Option<(&Path, &Path)>) -> Vec<String> {
    let mut props = vec!["security.protocol=SSL".to_string(), format!("ssl.ca.location={}", ca.display())];
    if let Some((cert, key)) = client {
        props.push(format!("ssl.certificate.location={}", cert.display()));
        props.push(format!("ssl.key.location={}", key.display()));
    }
    props.into_iter().flat_map(|p| ["--kafka".to_string(), p]).collect()
}

fn three_records_in(file: &Path) {
    let lines = wait_until("three records in the file", TIMEOUT, || {
        let text = fs::read_to_string(file).unwrap_or_default();
        (text.lines().count() >= 3).then_some(text)
    });
    for n in 0..3 {
        assert!(lines.contains(&format!("{{\"n\":{n}}}")), "{lines}");
    }
}

#[test]
fn records_flow_over_tls_and_client_mistakes_name_their_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "kafka");
    let (cert, key) = make_cert(d, &ca, "broker", true);
    let other_ca = make_ca(d, "other");
    let kafka = TlsKafka::start(d, &cert, &key, None);
    let secret = "pw-never-shown-4711";
    let w = kafka.worker(&ca, None, &[("KAFKA_TLS_TEST_PASSWORD", secret)]);

    // Records in over TLS, through the worker's TLS consumer, out to a file.
    let topic = unique("tls-in");
    kafka.produce_three(&topic, &ca, None);
    let out = d.join("out.txt");
    let (code, body) = w.request("POST", "/connectors", Some(&file_sink("tls-good", &topic, &out, &[])));
    assert_eq!(code, 201, "{body}");
    three_records_in(&out);

    // A connector whose consumer trusts the wrong CA, one that talks plain
    // to the TLS listener, and one with a SASL password from ${env:}: each
    // task's consumer fails to connect and the log names the setting; the
    // worker keeps answering and the first connector keeps running.
    let wrong_ca = ("consumer.override.ssl.ca.location", other_ca.to_str().unwrap());
    let (code, body) =
        w.request("POST", "/connectors", Some(&file_sink("tls-wrong-ca", &topic, &d.join("a.txt"), &[wrong_ca])));
    assert_eq!(code, 201, "{body}");
    let plain = ("consumer.override.security.protocol", "PLAINTEXT");
    let (code, body) =
        w.request("POST", "/connectors", Some(&file_sink("tls-plaintext", &topic, &d.join("b.txt"), &[plain])));
    assert_eq!(code, 201, "{body}");
    let sasl = [
        ("consumer.override.security.protocol", "SASL_SSL"),
        ("consumer.override.sasl.mechanism", "SCRAM-SHA-512"),
        ("consumer.override.sasl.username", "sluice"),
        ("consumer.override.sasl.password", "${env:KAFKA_TLS_TEST_PASSWORD}"),
    ];
    let (code, body) = w.request("POST", "/connectors", Some(&file_sink("tls-sasl", &topic, &d.join("c.txt"), &sasl)));
    assert_eq!(code, 201, "{body}");

    let log = wait_log("both mistakes in the worker's log", &w.log, |log| {
        names(log, "connector-consumer-tls-wrong-ca-0", "set ssl.ca.location")
            && names(log, "connector-consumer-tls-plaintext-0", "set security.protocol=SSL")
    });
    assert_eq!(w.get("/ready").0, 200, "the worker stays up; log:\n{log}");
    assert_eq!(w.get("/connectors/tls-good/status").1["tasks"][0]["state"], "RUNNING");
    // The SASL consumer got as far as trying to log in (Tansu without
    // --authentication does not offer SCRAM); the failure is logged.
    wait_log("the SASL consumer's failure in the log", &w.log, |log| {
        log.lines().any(|l| l.contains("connector-consumer-tls-sasl-0") && l.contains("Kafka"))
    });

    // The password itself is nowhere: not in the log, not in REST answers.
    for path in [
        "/connectors/tls-sasl",
        "/connectors/tls-sasl/config",
        "/connectors/tls-sasl/status",
        "/connectors?expand=info&expand=status",
    ] {
        let (code, body) = w.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(!body.to_string().contains(secret), "{path} shows the password: {body}");
    }
    assert!(!w.log_text().contains(secret), "the log shows the password");
}

/// Mutual TLS: the front asks for a client certificate from the clients' CA.
/// A worker presenting one moves records; a connector whose consumer
/// presents none, one from another CA, or an expired one, and a worker
/// without one, get a line naming `ssl.certificate.location`. A broker
/// certificate that has expired is named as a possible cause too.
#[test]
fn mutual_tls_needs_a_trusted_unexpired_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "kafka");
    let (cert, key) = make_cert(d, &ca, "broker", true);
    let clients_ca = make_ca(d, "clients");
    let (client_cert, client_key) = make_cert(d, &clients_ca, "worker-client", false);
    let other_ca = make_ca(d, "other");
    let (stranger_cert, stranger_key) = make_cert(d, &other_ca, "stranger", false);
    let (expired_cert, expired_key) = make_cert_for_days(d, &clients_ca, "expired-client", false, -1);
    let kafka = TlsKafka::start(d, &cert, &key, Some(&clients_ca));
    let client = Some((client_cert.as_path(), client_key.as_path()));
    let w = kafka.worker(&ca, client, &[]);

    let topic = unique("mtls-in");
    kafka.produce_three(&topic, &ca, client);
    let out = d.join("out.txt");
    let (code, body) = w.request("POST", "/connectors", Some(&file_sink("mtls-good", &topic, &out, &[])));
    assert_eq!(code, 201, "{body}");
    three_records_in(&out);

    let certificate = |cert: &Path, key: &Path| {
        [
            ("consumer.override.ssl.certificate.location", cert.to_str().unwrap().to_string()),
            ("consumer.override.ssl.key.location", key.to_str().unwrap().to_string()),
        ]
    };
    let cases = [
        (
            "mtls-none",
            [
                ("consumer.override.ssl.certificate.location", String::new()),
                ("consumer.override.ssl.key.location", String::new()),
            ],
        ),
        ("mtls-stranger", certificate(&stranger_cert, &stranger_key)),
        ("mtls-expired", certificate(&expired_cert, &expired_key)),
    ];
    for (name, overrides) in &cases {
        let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let file = d.join(format!("{name}.txt"));
        let (code, body) = w.request("POST", "/connectors", Some(&file_sink(name, &topic, &file, &overrides)));
        assert_eq!(code, 201, "{name}: {body}");
    }
    let log = wait_log("the three client certificate mistakes in the log", &w.log, |log| {
        names(log, "connector-consumer-mtls-none-0", "ssl.certificate.location")
            && names(log, "connector-consumer-mtls-stranger-0", "ssl.certificate.location")
            && names(log, "connector-consumer-mtls-expired-0", "expired")
    });
    assert!(names(&log, "connector-consumer-mtls-expired-0", "ssl.certificate.location"), "{log}");
    assert_eq!(w.get("/ready").0, 200, "the worker stays up; log:\n{log}");
    assert_eq!(w.get("/connectors/mtls-good/status").1["tasks"][0]["state"], "RUNNING");

    // A worker without a client certificate is told at its start check.
    start_check_names(d, &kafka.bootstrap, &kafka_args(&ca, None), &[], "ssl.certificate.location");

    // A broker whose certificate has expired (librdkafka says only that it
    // could not be verified: the line names the CA setting and expiry).
    let (expired_broker, expired_broker_key) = make_cert_for_days(d, &ca, "expired-broker", true, -1);
    let expired_port = free_port();
    let _expired_front = tls_front(d, expired_port, kafka.tansu.port, &expired_broker, &expired_broker_key, None);
    let log = start_check_names(d, &format!("127.0.0.1:{expired_port}"), &kafka_args(&ca, client), &[], "expired");
    assert!(names(&log, "worker", "ssl.ca.location"), "{log}");
}
