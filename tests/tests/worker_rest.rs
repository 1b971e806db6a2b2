//! The REST API against a real worker and broker: routes, status codes and
//! Kafka Connect's JSON shapes, including the 400/404/409 paths, secrets and
//! authentication.

use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::{consume, create_topic, kafka_cluster_id, produce, unique, wait_until, WorkerProcess};

fn file_sink(name: &str, topic: &str, file: &str) -> String {
    json!({
        "name": name,
        "config": {
            "connector.class": "example-file-sink",
            "topics": topic,
            "file": file,
            "file.token": "p4ssw0rd-in-config",
        }
    })
    .to_string()
}

#[test]
fn the_rest_api_speaks_kafka_connect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt").to_string_lossy().to_string();
    let w = WorkerProcess::start(&unique("rest"), &[], &[]);

    // `RootResource.serverInfo`: the version, the build's commit and the
    // Kafka cluster's id (not Sluice's cluster name).
    let (code, root) = w.get("/");
    assert_eq!(code, 200);
    assert!(root["version"].is_string(), "{root}");
    assert_eq!(root["kafka_cluster_id"], kafka_cluster_id().as_str(), "{root}");
    let commit = root["commit"].as_str().unwrap_or_default();
    assert!(commit == "unknown" || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{root}");
    assert_eq!(
        w.get("/health"),
        (200, json!({"status": "healthy", "message": "Worker has completed startup and is ready to handle requests."}))
    );
    assert_eq!(w.get("/ready").0, 200);

    // Plugins.
    let (code, plugins) = w.get("/connector-plugins");
    assert_eq!(code, 200);
    assert!(plugins
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == &json!({"class": "example-file-sink", "type": "sink", "version": "0.1.0"})));
    // Kafka Connect's ConnectorPluginsResource: the Java class names a
    // connector answers to are listed; with connectorsOnly=false also the
    // transforms, predicates and converters; a plugin's simple name (with
    // or without `Connector`) stands for it (PluginUtils' aliases).
    let listed = |plugins: &Value, class: &str, kind: &str| {
        plugins.as_array().unwrap().iter().any(|p| p["class"] == class && p["type"] == kind)
    };
    assert!(listed(&plugins, "org.apache.kafka.connect.file.FileStreamSinkConnector", "sink"), "{plugins}");
    assert!(!listed(&plugins, "org.apache.kafka.connect.transforms.InsertField$Value", "transformation"));
    let (code, all) = w.get("/connector-plugins?connectorsOnly=false");
    assert_eq!(code, 200);
    assert!(listed(&all, "org.apache.kafka.connect.transforms.InsertField$Value", "transformation"), "{all}");
    assert!(listed(&all, "org.apache.kafka.connect.transforms.predicates.TopicNameMatches", "predicate"), "{all}");
    assert!(listed(&all, "org.apache.kafka.connect.json.JsonConverter", "converter"), "{all}");
    for short in ["FileStreamSinkConnector", "FileStreamSink"] {
        assert_eq!(w.get(&format!("/connector-plugins/{short}/config")).0, 200, "{short}");
    }
    let (code, keys) = w.get("/connector-plugins/example-file-sink/config");
    assert_eq!(code, 200);
    let token = keys.as_array().unwrap().iter().find(|k| k["name"] == "file.token").expect("file.token defined");
    assert_eq!(token["type"], "PASSWORD");
    assert_eq!(w.get("/connector-plugins/no-such-class/config").0, 404);
    let (code, validation) = w.request(
        "PUT",
        "/connector-plugins/example-file-sink/config/validate",
        Some(r#"{"connector.class":"example-file-sink","file":"","file.token":"hush","topics":"t"}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(validation["error_count"], 1, "{validation}");
    let file = validation["configs"].as_array().unwrap().iter().find(|c| c["value"]["name"] == "file").unwrap();
    assert!(!file["value"]["errors"].as_array().unwrap().is_empty());
    assert!(!validation.to_string().contains("hush"), "a password came back from validate: {validation}");

    // Create: 201 + Location, then 409 for the same name.
    let name = unique("files");
    let topic = unique("rest-topic");
    create_topic(&topic, 1);
    let (code, created) = w.request("POST", "/connectors", Some(&file_sink(&name, &topic, &out)));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["type"], "sink");
    assert_eq!(created["tasks"], json!([{"connector": name, "task": 0}]));
    assert_eq!(created["config"]["file.token"], "[hidden]");
    let (code, conflict) = w.request("POST", "/connectors", Some(&file_sink(&name, &topic, &out)));
    assert_eq!(code, 409, "{conflict}");
    assert_eq!(conflict["error_code"], 409);

    // 400s name the problem.
    let (code, body) = w.request("POST", "/connectors", Some("{not json"));
    assert_eq!(code, 400);
    assert_eq!(body["error_code"], 400);
    let (code, body) =
        w.request("POST", "/connectors", Some(r#"{"name":"x","config":{"connector.class":"nope","topics":"t"}}"#));
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("connector.class"), "{body}");
    let (code, body) = w.request(
        "POST",
        "/connectors",
        Some(r#"{"name":"y","config":{"connector.class":"example-file-sink","topics":"t","tasks.max":"zero"}}"#),
    );
    assert_eq!(code, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("tasks.max") && message.contains("file"), "{message}");

    // Reads.
    assert_eq!(w.get(&format!("/connectors/{name}")).0, 200);
    assert_eq!(w.get("/connectors/nope").0, 404);
    assert_eq!(w.get("/connectors/nope/status").0, 404);
    let (_, list) = w.get("/connectors");
    assert!(list.as_array().unwrap().contains(&json!(name)));
    let (_, expanded) = w.get("/connectors?expand=status&expand=info");
    assert!(
        expanded[&name]["status"]["connector"].is_object() && expanded[&name]["info"]["config"].is_object(),
        "{expanded}"
    );
    let (code, config) = w.get(&format!("/connectors/{name}/config"));
    assert_eq!(code, 200);
    assert_eq!(config["file.token"], "[hidden]");
    let status = w.wait_tasks_state(&name, 1, "RUNNING", Duration::from_secs(30));
    assert_eq!(status["connector"]["state"], "RUNNING");
    // `host:port`, as Kafka Connect's (`RestServer.advertisedUrl`).
    assert_eq!(status["tasks"][0]["worker_id"], w.worker_id().as_str());
    assert_eq!(status["connector"]["worker_id"], w.worker_id().as_str());
    let (code, tasks) = w.get(&format!("/connectors/{name}/tasks"));
    assert_eq!(code, 200);
    assert_eq!(tasks[0]["id"], json!({"connector": name, "task": 0}));
    assert_eq!(tasks[0]["config"]["file.token"], "[hidden]");
    assert_eq!(w.get(&format!("/connectors/{name}/tasks/0/status")).1["state"], "RUNNING");
    assert_eq!(w.get(&format!("/connectors/{name}/tasks/5/status")).0, 404);
    // Active topics are those records came from: none yet.
    assert_eq!(w.get(&format!("/connectors/{name}/topics")).1, json!({ name.clone(): {"topics": []} }));
    assert_eq!(w.get(&format!("/connectors/{name}/offsets")).0, 200);

    // Updates: PUT replaces (a [hidden] password keeps the stored one), PATCH merges.
    let mut new_config = config.clone();
    new_config["offset.flush.interval.ms"] = json!("1000");
    let (code, body) = w.request("PUT", &format!("/connectors/{name}/config"), Some(&new_config.to_string()));
    assert_eq!(code, 200, "{body}");
    let (code, body) = w.request(
        "PATCH",
        &format!("/connectors/{name}/config"),
        Some(r#"{"offset.flush.interval.ms":null,"tasks.max":"1"}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body["config"].get("offset.flush.interval.ms").is_none(), "{body}");
    // `ConnectorsResource.putConnectorConfig`: 201 + Location when it created.
    let put_created = unique("put-created");
    let (code, headers, _) = w.exchange(
        "PUT",
        &format!("/connectors/{put_created}/config"),
        Some(&json!({"connector.class": "example-file-sink", "topics": topic, "file": out}).to_string()),
        Some("application/json"),
    );
    assert_eq!(code, 201);
    assert!(headers.contains(&("location".to_string(), format!("/connectors/{put_created}"))), "{headers:?}");

    // Lifecycle: pause, resume, stop; offsets change only while STOPPED.
    assert_eq!(w.request("PUT", &format!("/connectors/{name}/pause"), None).0, 202);
    w.wait_tasks_state(&name, 1, "PAUSED", Duration::from_secs(30));
    assert_eq!(w.request("PUT", &format!("/connectors/{name}/resume"), None).0, 202);
    w.wait_tasks_state(&name, 1, "RUNNING", Duration::from_secs(30));
    let (code, body) = w.request("DELETE", &format!("/connectors/{name}/offsets"), None);
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("STOPPED"));
    assert_eq!(w.request("POST", &format!("/connectors/{name}/tasks/0/restart"), None).0, 204);
    assert_eq!(w.request("POST", &format!("/connectors/{name}/tasks/9/restart"), None).0, 404);
    assert_eq!(w.request("POST", &format!("/connectors/{name}/restart"), None).0, 204);
    let (code, body) = w.request("POST", &format!("/connectors/{name}/restart?includeTasks=true"), None);
    assert_eq!(code, 202);
    assert_eq!(body["connector"]["state"], "RESTARTING");
    assert_eq!(body["tasks"][0]["state"], "RESTARTING");
    // `ConnectorsResource.stopConnector` returns nothing: 204.
    assert_eq!(w.request("PUT", &format!("/connectors/{name}/stop"), None).0, 204);
    wait_until("the connector to be STOPPED", Duration::from_secs(30), || {
        let (_, s) = w.get(&format!("/connectors/{name}/status"));
        (s["connector"]["state"] == "STOPPED" && s["tasks"] == json!([])).then_some(())
    });
    let patch = json!({"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0}, "offset": {"kafka_offset": 0}}]});
    // Taken once the stopped task has left the consumer group.
    wait_until("the offsets to be alterable", Duration::from_secs(60), || {
        let (code, body) = w.request("PATCH", &format!("/connectors/{name}/offsets"), Some(&patch.to_string()));
        match code {
            200 => Some(()),
            400 if body["message"].as_str().is_some_and(|m| m.contains("still stopping")) => None,
            _ => panic!("{code}: {body}"),
        }
    });
    let (_, offsets) = w.get(&format!("/connectors/{name}/offsets"));
    assert_eq!(offsets["offsets"][0]["offset"]["kafka_offset"], 0, "{offsets}");
    let (code, body) = w.request("DELETE", &format!("/connectors/{name}/offsets"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(w.get(&format!("/connectors/{name}/offsets")).1, json!({"offsets": []}));

    // Delete.
    assert_eq!(w.request("DELETE", &format!("/connectors/{name}"), None).0, 204);
    assert_eq!(w.get(&format!("/connectors/{name}")).0, 404);
    assert_eq!(w.request("DELETE", &format!("/connectors/{name}"), None).0, 404);

    // The OpenAPI document lists every route exercised above.
    let (code, doc) = w.get("/openapi.json");
    assert_eq!(code, 200);
    for path in [
        "/connectors/{name}/offsets",
        "/connector-plugins/{class}/config/validate",
        "/connectors/{name}/stop",
        "/admin/loggers/{logger}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from /openapi.json");
    }

    // The password value appeared in no response above; it must not be logged either.
    assert!(!w.log_text().contains("p4ssw0rd-in-config"), "a password value was logged");
    let metrics = ureq::get(&format!("{}/metrics", w.url)).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.contains("sluice_rest_requests_total"), "{metrics}");
}

#[test]
fn env_references_are_resolved_at_task_start_and_never_shown() {
    // The secret is the counter source's topic: the records prove the task
    // got the resolved value, and no config, status or log line may show it.
    // (The source's own offsets name its topic; that is the plugin's data.)
    let secret_topic = unique("SECRET-VALUE-9f2");
    let w = WorkerProcess::start(&unique("secrets"), &[], &[("SLUICE_TEST_SECRET_TOPIC", secret_topic.as_str())]);
    let name = unique("env-ref");
    let body = json!({"name": name, "config": {
        "connector.class": "example-counter-source", "topic": "${env:SLUICE_TEST_SECRET_TOPIC}", "counter.max": "5",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    w.wait_tasks_state(&name, 1, "RUNNING", Duration::from_secs(30));
    assert_eq!(consume(&secret_topic, 1, 5, Duration::from_secs(60)).len(), 5);
    for path in [
        format!("/connectors/{name}"),
        format!("/connectors/{name}/config"),
        format!("/connectors/{name}/tasks"),
        format!("/connectors/{name}/status"),
        "/connectors?expand=info&expand=status".to_string(),
    ] {
        let (_, body) = w.get(&path);
        assert!(!body.to_string().contains("SECRET-VALUE-9f2"), "{path} showed the resolved secret: {body}");
    }
    let (_, config) = w.get(&format!("/connectors/{name}/config"));
    assert_eq!(config["topic"], "${env:SLUICE_TEST_SECRET_TOPIC}", "the reference itself is what is stored");
    assert!(!w.log_text().contains("SECRET-VALUE-9f2"), "the resolved secret was logged");
}

#[test]
fn with_tokens_configured_requests_need_one_and_health_stays_open() {
    let w = WorkerProcess::start(&unique("auth"), &["--rest-auth-tokens", "t0ken", "--rest-basic-auth", "ops:pw"], &[]);
    assert_eq!(w.request_with("GET", "/connectors", None, None).0, 401);
    assert_eq!(w.request_with("GET", "/connectors", None, Some("Bearer wrong")).0, 401);
    assert_eq!(w.request_with("GET", "/connectors", None, Some("Bearer t0ken")).0, 200);
    // ops:pw in base64
    assert_eq!(w.request_with("GET", "/connectors", None, Some("Basic b3BzOnB3")).0, 200);
    assert_eq!(w.request_with("GET", "/health", None, None).0, 200);
}

#[test]
fn active_topics_are_the_topics_used_and_a_reset_forgets_them() {
    let w = WorkerProcess::start(&unique("topics"), &[], &[]);
    let (used, idle, out_topic) = (unique("topics-used"), unique("topics-idle"), unique("topics-out"));
    create_topic(&used, 1);
    create_topic(&idle, 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("out.txt");
    let (sink, source) = (unique("topics-sink"), unique("topics-source"));
    let body = file_sink(&sink, &format!("{used},{idle}"), &file.to_string_lossy());
    assert_eq!(w.request("POST", "/connectors", Some(&body)).0, 201);
    let body = json!({"name": source, "config": {
        "connector.class": "example-counter-source", "topic": out_topic, "counter.max": "5",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    produce(&used, 0, &[(None, Some("a"))]);

    let topics_of = |name: &str| w.get(&format!("/connectors/{name}/topics")).1[name]["topics"].clone();
    // The sink consumed from one of its two topics; the source produced to its one.
    wait_until("the sink's active topics to be the one it consumed", Duration::from_secs(60), || {
        (topics_of(&sink) == json!([used])).then_some(())
    });
    wait_until("the source's active topics to be the one it produced to", Duration::from_secs(60), || {
        (topics_of(&source) == json!([out_topic])).then_some(())
    });

    let (code, answer) = w.request("PUT", &format!("/connectors/{sink}/topics/reset"), None);
    assert_eq!(code, 202, "{answer}");
    wait_until("the reset to empty the sink's active topics", Duration::from_secs(30), || {
        (topics_of(&sink) == json!([])).then_some(())
    });
    assert_eq!(topics_of(&source), json!([out_topic]), "a reset touches one connector only");
    // Records from the topic again make it active again.
    produce(&used, 0, &[(None, Some("b"))]);
    wait_until("the topic to be active again", Duration::from_secs(60), || {
        (topics_of(&sink) == json!([used])).then_some(())
    });
    assert_eq!(w.request("PUT", "/connectors/nope/topics/reset", None).0, 404);
}

#[test]
fn topic_tracking_settings_turn_the_topics_endpoints_off_with_a_403() {
    // topic.tracking.allow.reset=false: the set is kept and answered, a reset refused.
    let w = WorkerProcess::start(&unique("topics-noreset"), &["--topic-tracking-allow-reset", "false"], &[]);
    let used = unique("topics-noreset-in");
    create_topic(&used, 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = unique("topics-noreset-sink");
    let body = file_sink(&sink, &used, &dir.path().join("out.txt").to_string_lossy());
    assert_eq!(w.request("POST", "/connectors", Some(&body)).0, 201);
    produce(&used, 0, &[(None, Some("a"))]);
    let topics_of = |w: &WorkerProcess, name: &str| w.get(&format!("/connectors/{name}/topics"));
    wait_until("the sink's active topics", Duration::from_secs(60), || {
        (topics_of(&w, &sink).1[&sink]["topics"] == json!([used])).then_some(())
    });
    let (code, answer) = w.request("PUT", &format!("/connectors/{sink}/topics/reset"), None);
    assert_eq!(code, 403, "{answer}");
    assert_eq!(answer["message"], "Topic tracking reset is disabled.");
    assert_eq!(topics_of(&w, &sink).1[&sink]["topics"], json!([used]), "the set is kept");

    // topic.tracking.enable=false: neither endpoint answers; the sink still runs.
    let off = WorkerProcess::start(&unique("topics-off"), &["--topic-tracking-enable", "false"], &[]);
    let input = unique("topics-off-in");
    create_topic(&input, 1);
    let out = dir.path().join("off.txt");
    let sink = unique("topics-off-sink");
    assert_eq!(off.request("POST", "/connectors", Some(&file_sink(&sink, &input, &out.to_string_lossy()))).0, 201);
    produce(&input, 0, &[(None, Some("b"))]);
    wait_until("the record in the sink's file", Duration::from_secs(60), || {
        std::fs::read_to_string(&out).ok().filter(|t| t.contains('b')).map(|_| ())
    });
    let (code, answer) = topics_of(&off, &sink);
    assert_eq!(code, 403, "{answer}");
    assert_eq!(answer["message"], "Topic tracking is disabled.");
    let (code, answer) = off.request("PUT", &format!("/connectors/{sink}/topics/reset"), None);
    assert_eq!((code, &answer["message"]), (403, &json!("Topic tracking is disabled.")), "{answer}");
}

/// A log line without its ANSI colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// How many times task `task` of `connector` started in the worker's log.
fn task_starts(w: &WorkerProcess, connector: &str, task: i32) -> usize {
    let span = format!("task{{connector={connector} task={task}}}");
    w.log_text().lines().map(plain).filter(|l| l.contains(&span) && l.contains("task starting")).count()
}

/// `POST /connectors/{name}/restart` for the four flag combinations, on a
/// connector whose task 0 is FAILED and task 1 RUNNING. Reproduces Kafka
/// Connect's `ConnectorsResource.restartConnector` (204 with neither flag,
/// else 202 with the status) and `RestartRequest.shouldRestartConnector` /
/// `shouldRestartTask` as `AbstractHerder.buildRestartPlan` applies them.
#[test]
fn restart_restarts_what_include_tasks_and_only_failed_select() {
    // No automatic restarts: task 0 stays FAILED until a request restarts it.
    let w = WorkerProcess::start(&unique("restart"), &["--task-restart-backoff-ms", "0"], &[]);
    let topic = unique("restart-in");
    create_topic(&topic, 1);
    let name = unique("restart-matrix");
    let body = json!({"name": name, "config": {
        "connector.class": "test-panicky-sink", "topics": topic, "tasks.max": "2", "fail.task": "0",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    let settled = |starts: (usize, usize)| {
        wait_until(
            &format!("task 0 FAILED, task 1 RUNNING, started {starts:?} times"),
            Duration::from_secs(60),
            || {
                let (_, s) = w.get(&format!("/connectors/{name}/status"));
                (s["connector"]["state"] == "RUNNING"
                    && s["tasks"][0]["state"] == "FAILED"
                    && s["tasks"][1]["state"] == "RUNNING"
                    && (task_starts(&w, &name, 0), task_starts(&w, &name, 1)) >= starts)
                    .then_some(())
            },
        );
    };
    settled((1, 1));
    let restart = |query: &str| w.request("POST", &format!("/connectors/{name}/restart{query}"), None);
    let states = |body: &serde_json::Value| {
        (body["connector"]["state"].clone(), body["tasks"][0]["state"].clone(), body["tasks"][1]["state"].clone())
    };

    // onlyFailed alone: the connector is not FAILED and tasks are not included.
    let (code, body) = restart("?onlyFailed=true");
    assert_eq!(code, 202, "{body}");
    assert_eq!(states(&body), (json!("RUNNING"), json!("FAILED"), json!("RUNNING")), "{body}");

    // includeTasks & onlyFailed: the FAILED task alone.
    let (code, body) = restart("?includeTasks=true&onlyFailed=true");
    assert_eq!(code, 202, "{body}");
    assert_eq!(states(&body), (json!("RUNNING"), json!("RESTARTING"), json!("RUNNING")), "{body}");
    settled((2, 1));

    // Neither flag: the connector object alone, 204 and no body.
    assert_eq!(restart(""), (204, serde_json::Value::Null));
    assert_eq!(restart("?includeTasks=false&onlyFailed=false").0, 204);

    // includeTasks alone: the connector and every task.
    let (code, body) = restart("?includeTasks=true");
    assert_eq!(code, 202, "{body}");
    assert_eq!(states(&body), (json!("RESTARTING"), json!("RESTARTING"), json!("RESTARTING")), "{body}");
    settled((3, 2));
    // Each task started once per request that selected it, no more.
    assert_eq!((task_starts(&w, &name, 0), task_starts(&w, &name, 1)), (3, 2), "log:\n{}", w.log_text());

    assert_eq!(w.request("POST", "/connectors/nope/restart?includeTasks=true", None).0, 404);
}

/// Kafka Connect's smaller rules: connector names trimmed
/// (`ConnectorsResource.createConnector`) and refused with control characters
/// (`ConfigDef.NonEmptyStringWithoutControlChars`), `initial_state` in any
/// case (`CreateConnectorRequest.InitialState.forValue`), 415 for a body that
/// is not JSON (Jersey's `@Consumes(APPLICATION_JSON)`), and every error,
/// routing ones included, with the `{error_code, message}` body
/// (`ConnectExceptionMapper`).
#[test]
fn names_states_media_types_and_errors_follow_kafka_connect() {
    let w = WorkerProcess::start(&unique("rules"), &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt").to_string_lossy().to_string();
    let topic = unique("rules-topic");
    create_topic(&topic, 1);

    let name = unique("trimmed");
    let body = json!({"name": format!("  {name}\t"), "initial_state": "paused",
        "config": {"connector.class": "example-file-sink", "topics": topic, "file": out}});
    let (code, created) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["name"], name.as_str());
    w.wait_tasks_state(&name, 1, "PAUSED", Duration::from_secs(30));
    let body = json!({"name": "bad\u{7}name", "config": {"connector.class": "example-file-sink", "topics": topic, "file": out}});
    let (code, refused) = w.request("POST", "/connectors", Some(&body.to_string()));
    assert_eq!((code, &refused["error_code"]), (400, &json!(400)), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("control characters"), "{refused}");
    assert_eq!(w.get("/connectors/bad%0Aname/config").0, 404);
    let (code, _) =
        w.request("PUT", "/connectors/bad%0Aname/config", Some(r#"{"connector.class":"example-file-sink"}"#));
    assert_eq!(code, 400);

    // Not JSON: 415, whatever the body.
    let (code, _, body) = w.exchange("POST", "/connectors", Some("name=x"), Some("application/x-www-form-urlencoded"));
    assert_eq!((code, &body["error_code"]), (415, &json!(415)), "{body}");
    let (code, _, body) = w.exchange("PUT", &format!("/connectors/{name}/config"), Some("{}"), None);
    assert_eq!((code, &body["error_code"]), (415, &json!(415)), "{body}");
    let (code, _, body) = w.exchange("POST", "/connectors", Some("{not json"), Some("application/json; charset=utf-8"));
    assert_eq!((code, &body["error_code"]), (400, &json!(400)), "{body}");

    // Routing errors carry the error body too.
    for (method, path, expected) in [
        ("GET", "/no/such/route", 404),
        ("DELETE", "/connectors", 405),
        ("POST", &format!("/connectors/{name}/pause") as &str, 405),
        ("GET", &format!("/connectors/{name}/tasks/abc/status") as &str, 400),
    ] {
        let (code, _, body) = w.exchange(method, path, None, None);
        assert_eq!(code, expected, "{method} {path}: {body}");
        assert_eq!(body["error_code"], expected, "{method} {path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {body}");
    }
}

/// The offsets API as Kafka Connect's (KIP-875): a `topics.regex` sink's
/// committed offsets in GET (`Worker.sinkConnectorOffsets`), changes only
/// while STOPPED (`modifyConnectorOffsetsChecks`: 400), an empty list refused
/// (`ConnectorsResource.alterConnectorOffsets`), offsets given as strings
/// (`SinkUtils.parseSinkConnectorOffsets`), and `"offset": null` resetting
/// that one partition (`Worker.alterSinkConnectorOffsets`).
#[test]
fn sink_offsets_follow_kafka_connect() {
    let w = WorkerProcess::start(&unique("offsets"), &[], &[]);
    let prefix = unique("offsets-rx");
    let topic = format!("{prefix}-a");
    create_topic(&topic, 2);
    for p in 0..2 {
        produce(&topic, p, &[(None, Some("a")), (None, Some("b")), (None, Some("c"))]);
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("offsets-sink");
    let body = json!({"name": name, "config": {
        "connector.class": "example-file-sink", "topics.regex": format!("{prefix}-.*"),
        "file": dir.path().join("out.txt").to_string_lossy(), "offset.flush.interval.ms": "200",
    }});
    assert_eq!(w.request("POST", "/connectors", Some(&body.to_string())).0, 201);
    let offsets = |w: &WorkerProcess| {
        let (_, body) = w.get(&format!("/connectors/{name}/offsets"));
        let mut list: Vec<(String, i64, i64)> = body["offsets"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|e| {
                        let p = &e["partition"];
                        (
                            p["kafka_topic"].as_str().unwrap_or_default().to_string(),
                            p["kafka_partition"].as_i64().unwrap_or(-1),
                            e["offset"]["kafka_offset"].as_i64().unwrap_or(-1),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort();
        list
    };
    wait_until("the regex sink's committed offsets in GET", Duration::from_secs(60), || {
        (offsets(&w) == vec![(topic.clone(), 0, 3), (topic.clone(), 1, 3)]).then_some(())
    });

    let patch =
        |body: serde_json::Value| w.request("PATCH", &format!("/connectors/{name}/offsets"), Some(&body.to_string()));
    let one = |partition: i32, offset: serde_json::Value| json!({"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": partition}, "offset": offset}]});
    let (code, body) = patch(one(0, json!({"kafka_offset": 1})));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("STOPPED"), "{body}");

    assert_eq!(w.request("PUT", &format!("/connectors/{name}/stop"), None).0, 204);
    // Once its tasks have left the group, a change is taken; "1" as a string.
    wait_until("the stopped connector's offsets to be alterable", Duration::from_secs(60), || {
        let (code, body) = patch(one(0, json!({"kafka_offset": "1"})));
        match code {
            200 => Some(()),
            400 if body["message"].as_str().is_some_and(|m| m.contains("still stopping")) => None,
            _ => panic!("{code}: {body}"),
        }
    });
    assert_eq!(offsets(&w), vec![(topic.clone(), 0, 1), (topic.clone(), 1, 3)]);

    let (code, body) = patch(json!({"offsets": []}));
    assert_eq!(code, 400, "{body}");
    assert_eq!(patch(json!({})).0, 400);

    // null resets partition 1 alone (to where the task would start: the log start).
    let (code, body) = patch(one(1, serde_json::Value::Null));
    assert_eq!(code, 200, "{body}");
    assert_eq!(offsets(&w), vec![(topic.clone(), 0, 1), (topic.clone(), 1, 0)]);
}

/// `/admin/loggers` as Kafka Connect's `LoggingResource`: list, one logger,
/// and a PUT that changes what the running worker logs (a logger here is a
/// module path; `root` the default level).
#[test]
fn admin_loggers_change_what_a_running_worker_logs() {
    let w = WorkerProcess::start(&unique("loggers"), &[], &[]);
    let (code, all) = w.get("/admin/loggers");
    assert_eq!(code, 200);
    assert_eq!(all["root"], json!({"level": "INFO", "last_modified": null}), "{all}");
    let logged = |path: &str| {
        w.log_text().lines().map(plain).any(|l| l.contains("REST request") && l.contains(&format!("path={path} ")))
    };

    // At INFO, requests are not logged.
    assert_eq!(w.get("/connectors/before-marker").0, 404);
    assert!(!logged("/connectors/before-marker"), "{}", w.log_text());

    // `LoggingResource.setLevel`, worker scope: 200 with the loggers set.
    let (code, affected) = w.request("PUT", "/admin/loggers/sluice_runtime::rest", Some(r#"{"level":"debug"}"#));
    assert_eq!((code, affected), (200, json!(["sluice_runtime::rest"])));
    assert_eq!(w.get("/connectors/debug-marker").0, 404);
    wait_until("the request logged at DEBUG", Duration::from_secs(10), || {
        logged("/connectors/debug-marker").then_some(())
    });
    let (code, one) = w.get("/admin/loggers/sluice_runtime::rest");
    assert_eq!(code, 200);
    assert_eq!(one["level"], "DEBUG");
    assert!(one["last_modified"].is_u64(), "{one}");
    assert_eq!(w.get("/admin/loggers/sluice_runtime::rest::loggers").1["level"], "DEBUG", "inherited");
    assert_eq!(w.get("/admin/loggers").1["sluice_runtime::rest"]["level"], "DEBUG");

    // Refusals, as Kafka Connect's.
    let put =
        |body: &str, query: &str| w.request("PUT", &format!("/admin/loggers/sluice_runtime::rest{query}"), Some(body));
    assert_eq!(put(r#"{"level":"LOUD"}"#, "").0, 400);
    assert_eq!(put(r#"{}"#, "").0, 400);
    assert_eq!(put(r#"{"level":"INFO"}"#, "?scope=galaxy").0, 400);
    let (code, body) = w.request("PUT", "/admin/loggers/a,b=trace", Some(r#"{"level":"INFO"}"#));
    assert_eq!(code, 400, "a name that would read as several directives: {body}");

    // Cluster scope: 204, applied on this worker.
    assert_eq!(put(r#"{"level":"INFO"}"#, "?scope=cluster"), (204, serde_json::Value::Null));
    assert_eq!(w.get("/connectors/after-marker").0, 404);
    assert!(!logged("/connectors/after-marker"), "back at INFO");
}
