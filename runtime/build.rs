//! Records the commit the worker is built from for `GET /` (`commit`, as
//! Kafka Connect's `ServerInfo`): `SLUICE_GIT_COMMIT` when set (builds from
//! a source archive), else `git rev-parse HEAD`, else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_GIT_COMMIT");
    let commit = std::env::var("SLUICE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Build again when HEAD moves: the HEAD file (branch switches) and the
    // branch's ref (commits), in a worktree or not.
    // (A path that does not exist would make every build run this again.)
    let mut watched = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watched.push(format!("{dir}/HEAD"));
    }
    if let (Some(common), Some(reference)) =
        (git(&["rev-parse", "--git-common-dir"]), git(&["symbolic-ref", "-q", "HEAD"]))
    {
        watched.push(format!("{common}/{reference}"));
        watched.push(format!("{common}/packed-refs"));
    }
    for path in watched.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=SLUICE_GIT_COMMIT={commit}");
}
