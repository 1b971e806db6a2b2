//! Where a result comes from: the commit measured, and whether the measured
//! code had uncommitted changes (a result file says both).

use std::process::Command;

/// `git rev-parse --short HEAD`, or empty outside a repository.
pub fn commit() -> String {
    git(&["rev-parse", "--short", "HEAD"])
}

/// True when `paths` (the runtime, the sink measured, connector-api) hold
/// uncommitted changes.
pub fn dirty(paths: &[&str]) -> bool {
    let mut args = vec!["status", "--porcelain", "--"];
    args.extend_from_slice(paths);
    !git(&args).is_empty()
}

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
