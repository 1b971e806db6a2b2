//! `sluice-fake marketing-cloud STATE_FILE [DATA_EXTENSION_KEY]`: the
//! Marketing Cloud fake (`src/marketing_cloud.rs`) as a process of its own,
//! for `dev/demo` (no Marketing Cloud server runs locally). It listens on an
//! ephemeral port of 127.0.0.1 and rewrites STATE_FILE every second with the
//! connector keys that reach it and what it holds:
//! `{"config": {...}, "rows": N, "requests": N}`. It runs until killed.

use std::{fs, path::Path, process::ExitCode, thread, time::Duration};

use serde_json::{json, Map, Value};
use sluice_tests::marketing_cloud::MarketingCloudFake;

const USAGE: &str = "usage: sluice-fake marketing-cloud STATE_FILE [DATA_EXTENSION_KEY]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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

/// Readers never see a half-written file: write beside it, then rename.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}
