//! Config providers through a real worker (issue 17, item 8): references
//! are resolved before validation, so a typed key is checked with the value
//! it resolves to (Kafka Connect's `AbstractHerder.validateConnectorConfig`
//! runs after `ConfigTransformer.transform`); an unknown provider is a 400
//! naming the key (Kafka Connect would keep the text); and what a
//! reference resolved to appears in no REST answer, no log line and not in
//! the configs topic, which stores the reference.

use std::{fs, time::Duration};

use rdkafka::{consumer::Consumer, Message};
use serde_json::{json, Value};
use sluice_tests::{consume, reader, unique, WorkerProcess};

#[test]
fn references_are_resolved_before_validation_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("connector.properties");
    let secret = unique("s3cr3t");
    // `max` is a typed key of the counter source (a u64); `bad` resolves to
    // a secret that is not a number.
    fs::write(&secrets, format!("max=4\nbad={secret}\ntoken={secret}-token\n")).unwrap();
    let reference = |key: &str| format!("${{file:{}:{key}}}", secrets.display());
    let env_secret = format!("{secret}-env");
    let cluster = unique("providers");
    let w = WorkerProcess::start(
        &cluster,
        &[],
        &[("SLUICE_LOG", "debug"), ("SLUICE_E2E_TASKS", "1"), ("SLUICE_E2E_ENV_SECRET", &env_secret)],
    );
    let topic = unique("provided");
    let config = |max: String| {
        json!({
            "connector.class": "example-counter-source",
            "topic": topic,
            "counter.max": max,
            "tasks.max": "${env:SLUICE_E2E_TASKS}",
            "api.token": reference("token"),
            "note": "${env:SLUICE_E2E_ENV_SECRET}",
        })
    };
    let mut answers = Vec::new();

    // A typed key is validated with its resolved value; the message names
    // the key and hides the value.
    let name = unique("provided-src");
    let (code, refused) =
        w.request("PUT", &format!("/connectors/{name}/config"), Some(&config(reference("bad")).to_string()));
    assert_eq!(code, 400, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("counter.max"), "{message}");
    answers.push(refused.to_string());
    let (code, validated) = w.request(
        "PUT",
        "/connector-plugins/example-counter-source/config/validate",
        Some(&config(reference("bad")).to_string()),
    );
    assert_eq!(code, 200, "{validated}");
    let errors: Vec<&Value> = validated["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["value"]["name"] == "counter.max")
        .flat_map(|c| c["value"]["errors"].as_array().unwrap())
        .collect();
    assert!(!errors.is_empty(), "counter.max has no error in {validated}");
    answers.push(validated.to_string());

    // An unknown provider is refused naming the key, not passed on as text.
    let (code, unknown) = w.request(
        "PUT",
        &format!("/connectors/{name}/config"),
        Some(&config("${vault:secret/data:max}".into()).to_string()),
    );
    assert_eq!(code, 400, "{unknown}");
    let message = unknown["message"].as_str().unwrap_or_default();
    assert!(message.contains("counter.max") && message.contains("\"vault\""), "{message}");

    // With a good reference the connector runs with the resolved values:
    // four records (counter.max from the file), one task (tasks.max from
    // the environment).
    let (code, created) =
        w.request("PUT", &format!("/connectors/{name}/config"), Some(&config(reference("max")).to_string()));
    assert_eq!(code, 201, "{created}");
    answers.push(created.to_string());
    let records = consume(&topic, 1, 4, Duration::from_secs(60));
    let values: Vec<String> =
        records.iter().map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()).collect();
    assert_eq!(values, ["0", "1", "2", "3"]);
    let status = w.wait_tasks_state(&name, 1, "RUNNING", Duration::from_secs(60));
    answers.push(status.to_string());
    for path in ["", "/config", "/tasks", "/status"] {
        let (code, answer) = w.get(&format!("/connectors/{name}{path}"));
        assert_eq!(code, 200, "{path}: {answer}");
        answers.push(answer.to_string());
    }
    let (_, stored) = w.get(&format!("/connectors/{name}/config"));
    assert_eq!(stored["counter.max"], json!(reference("max")), "the reference is what is kept");
    let (_, tasks) = w.get(&format!("/connectors/{name}/tasks"));
    assert_eq!(tasks[0]["config"]["api.token"], json!(reference("token")), "task configs keep the reference: {tasks}");

    for answer in &answers {
        assert!(!answer.contains(&secret), "a REST answer shows a resolved value: {answer}");
    }
    let log = w.log_text();
    assert!(!log.contains(&secret), "the worker log shows a resolved value:\n{log}");

    // The configs topic holds the references, never what they resolved to.
    let configs_topic = format!("{cluster}-configs");
    let consumer = reader(&configs_topic, 1);
    let (_, high) = consumer.fetch_watermarks(&configs_topic, 0, Duration::from_secs(10)).unwrap();
    let records = consume(&configs_topic, 1, usize::try_from(high).unwrap(), Duration::from_secs(30));
    let text: String =
        records.iter().map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()).collect();
    assert!(text.contains(&secrets.display().to_string()), "the config record holds the reference");
    assert!(!text.contains(&secret), "the configs topic holds a resolved value");
}
