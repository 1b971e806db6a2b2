//! Helper processes for tests and `dev/demo`, each running until killed:
//!
//! `sluice-fake marketing-cloud STATE_FILE [DATA_EXTENSION_KEY]`: the
//! Marketing Cloud fake (`src/marketing_cloud.rs`) as a process of its own,
//! for `dev/demo` (no Marketing Cloud server runs locally). It listens on an
//! ephemeral port of 127.0.0.1 and rewrites STATE_FILE every second with the
//! connector keys that reach it and what it holds:
//! `{"config": {...}, "rows": N, "requests": N}`.
//!
//! `sluice-fake group-member TOPIC KEY=VALUE...`: a consumer-group member
//! with the given librdkafka settings, subscribed to TOPIC, as a process a
//! test can SIGKILL or SIGSTOP (a worker dying or pausing without leaving its
//! group: `tests/tests/broker_contract.rs`). It prints `assigned P,Q,...`
//! (partition numbers, empty for none) each time its assignment changes.

use std::{fs, path::Path, process::ExitCode, thread, time::Duration};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::{json, Map, Value};
use sluice_tests::marketing_cloud::MarketingCloudFake;

const USAGE: &str =
    "usage: sluice-fake marketing-cloud STATE_FILE [DATA_EXTENSION_KEY] | sluice-fake group-member TOPIC KEY=VALUE...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let (Some("group-member"), Some(topic)) = (args.first().map(String::as_str), args.get(1)) {
        return group_member(topic, &args[2..]);
    }
    let (Some("marketing-cloud"), Some(state)) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let key = args.get(2).map(String::as_str).unwrap_or("Customers_DE");
    let fake = MarketingCloudFake::start(key, &["CustomerId"]);
    loop {
        let config: Map<String, Value> = fake.config().into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        let doc = json!({"config": config, "rows": fake.rows().len(), "requests": fake.requests().len()});
        if let Err(e) = write_atomically(Path::new(state), &doc.to_string()) {
            eprintln!("sluice-fake: writing {state}: {e}");
            return ExitCode::FAILURE;
        }
        thread::sleep(Duration::from_secs(1));
    }
}

fn group_member(topic: &str, settings: &[String]) -> ExitCode {
    let mut config = ClientConfig::new();
    for setting in settings {
        let Some((key, value)) = setting.split_once('=') else {
            eprintln!("sluice-fake group-member: {setting:?} is not KEY=VALUE\n{USAGE}");
            return ExitCode::from(2);
        };
        config.set(key, value);
    }
    let consumer: BaseConsumer = match config.create() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-fake group-member: creating the consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = consumer.subscribe(&[topic]) {
        eprintln!("sluice-fake group-member: subscribing to {topic}: {e}");
        return ExitCode::FAILURE;
    }
    let mut reported: Option<Vec<i32>> = None;
    loop {
        // Records are read and dropped: only the assignment matters here.
        let _ = consumer.poll(Duration::from_millis(100));
        let mut now: Vec<i32> =
            consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
        now.sort_unstable();
        if reported.as_ref() != Some(&now) {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            println!("assigned {}", list.join(","));
            reported = Some(now);
        }
    }
}

/// Readers never see a half-written file: write beside it, then rename.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}
