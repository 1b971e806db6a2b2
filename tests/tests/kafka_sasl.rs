//! Kafka over SASL_SSL with SCRAM: a private Tansu on S3 storage (where the
//! patched broker keeps SCRAM credentials, docs/decisions/0044) with
//! `--authentication`, behind an haproxy TLS front. A worker logging in with
//! SCRAM-SHA-512, its password from `${file:}`, moves records; a connector
//! whose consumer has a wrong password, and a worker started with one, get a
//! log line naming `sasl.password` while the running worker stays up; no
//! password shows in a log or a REST answer.

use std::{fs, path::Path, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;
use sluice_tests::{
    s3::Bucket,
    secured_kafka::{file_sink, free_port, start_check_names, tls_front, wait_log, Tansu},
    tls::{make_ca, make_cert},
    unique, wait_until, WorkerProcess,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "scram-pw-never-shown-5813";
const WRONG_PASSWORD: &str = "wrong-pw-never-shown-2718";

fn sasl_client(bootstrap: &str, ca: &Path, mechanism: &str, user: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", ca.to_str().unwrap())
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", PASSWORD);
    c
}

#[test]
fn scram_over_sasl_ssl_moves_records_and_a_wrong_password_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = make_ca(d, "kafka");
    let (cert, key) = make_cert(d, &ca, "broker", true);

    // Users are created while authentication is off, then the broker
    // restarts with it on the same storage.
    let bucket = Bucket::create(&unique("sasl"));
    let front_port = free_port();
    let mut tansu = Tansu::on_s3(d, &bucket.name, Some(front_port));
    tansu.start(false);
    tansu.create_user("sluice", PASSWORD, "scram512");
    tansu.create_user("producer", PASSWORD, "scram256");
    tansu.start(true);
    let _front = tls_front(d, front_port, tansu.port, &cert, &key, None);
    let bootstrap = format!("127.0.0.1:{front_port}");

    // The test's own client logs in with SCRAM-SHA-256.
    let topic = unique("sasl-in");
    let admin: AdminClient<DefaultClientContext> =
        sasl_client(&bootstrap, &ca, "SCRAM-SHA-256", "producer").create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(-1));
    let created = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()));
    assert!(created.is_ok(), "creating {topic} over SASL_SSL: {created:?}; broker log:\n{}", tansu.log_text());
    let producer: FutureProducer = sasl_client(&bootstrap, &ca, "SCRAM-SHA-256", "producer").create().unwrap();
    for n in 0..3 {
        let value = format!("{{\"n\":{n}}}");
        futures::executor::block_on(
            producer.send(FutureRecord::<(), str>::to(&topic).payload(&value), Duration::from_secs(30)),
        )
        .map_err(|(e, _)| e)
        .expect("produced over SASL_SSL");
    }

    // The worker logs in with SCRAM-SHA-512, its password from a file.
    let secrets = d.join("kafka.properties");
    fs::write(&secrets, format!("password={PASSWORD}\n")).unwrap();
    let kafka_args = [
        "security.protocol=SASL_SSL".to_string(),
        format!("ssl.ca.location={}", ca.display()),
        "sasl.mechanism=SCRAM-SHA-512".into(),
        "sasl.username=sluice".into(),
        format!("sasl.password=${{file:{}:password}}", secrets.display()),
    ];
    let args: Vec<String> = kafka_args.iter().flat_map(|p| ["--kafka".to_string(), p.clone()]).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let w = WorkerProcess::start_on(
        &bootstrap,
        &unique("kafka-sasl"),
        &args,
        &[("KAFKA_SASL_TEST_WRONG_PASSWORD", WRONG_PASSWORD)],
    );
    let out = d.join("out.txt");
    let (code, body) = w.request("POST", "/connectors", Some(&file_sink("sasl-good", &topic, &out, &[])));
    assert_eq!(code, 201, "{body}");
    let lines = wait_until("three records in the file", TIMEOUT, || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        (text.lines().count() >= 3).then_some(text)
    });
    for n in 0..3 {
        assert!(lines.contains(&format!("{{\"n\":{n}}}")), "{lines}");
    }

    // A connector whose consumer logs in with a wrong password: its task's
    // log line names the setting; the worker and the good connector go on.
    let wrong = [("consumer.override.sasl.password", "${env:KAFKA_SASL_TEST_WRONG_PASSWORD}")];
    let (code, body) =
        w.request("POST", "/connectors", Some(&file_sink("sasl-wrong", &topic, &d.join("wrong.txt"), &wrong)));
    assert_eq!(code, 201, "{body}");
    let log = wait_log("the wrong password in the worker's log", &w.log, |log| {
        log.lines().any(|l| {
            l.contains("Kafka connection failed")
                && l.contains("connector-consumer-sasl-wrong-0")
                && l.contains("sasl.password")
        })
    });
    assert_eq!(w.get("/ready").0, 200, "the worker stays up; log:\n{log}");
    assert_eq!(w.get("/connectors/sasl-good/status").1["tasks"][0]["state"], "RUNNING");
    assert!(!fs::read_to_string(d.join("wrong.txt")).unwrap_or_default().contains("\"n\""));

    // A worker whose own password is wrong says so while it checks its
    // connection at start (it stops after 30 s; the line comes first).
    let mut bad_args = args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    bad_args.extend(["--kafka".to_string(), "sasl.password=${env:KAFKA_SASL_TEST_WRONG_PASSWORD}".to_string()]);
    let wrong_env = [("KAFKA_SASL_TEST_WRONG_PASSWORD", WRONG_PASSWORD)];
    let bad_log = start_check_names(d, &bootstrap, &bad_args, &wrong_env, "sasl.password");

    // Neither password shows anywhere.
    for path in ["/connectors/sasl-wrong", "/connectors/sasl-wrong/config", "/connectors?expand=info&expand=status"] {
        let (code, body): (u16, Value) = w.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        let body = body.to_string();
        assert!(!body.contains(PASSWORD) && !body.contains(WRONG_PASSWORD), "{path} shows a password: {body}");
    }
    for log in [w.log_text(), bad_log] {
        assert!(!log.contains(PASSWORD) && !log.contains(WRONG_PASSWORD), "a log shows a password:\n{log}");
    }
}
