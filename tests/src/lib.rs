//! Shared helpers of the end-to-end tests in `tests/tests/`.
//!
//! The tests drive real processes and the real local services started by
//! `dev/services up`; they find them through the variables `dev/services env`
//! prints, and fail (never skip) when those are missing.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

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
        std::thread::sleep(Duration::from_millis(50));
    }
}
