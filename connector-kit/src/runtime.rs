//! An async runtime of the plugin's own, for sinks whose client is async
//! (ARCHITECTURE.md, invariant 13: a plugin never touches the worker's
//! tokio). Build it in `create_task`, keep it in the task, block on it from
//! the task's calls; it stops with the task.
//!
//! ```
//! let rt = connector_kit::runtime::multi_thread("my-sink-io", 2).unwrap();
//! assert_eq!(rt.block_on(async { 1 + 1 }), 2);
//! ```

use connector_api::ConnectorError;
use tokio::runtime::{Builder, Runtime};

/// A runtime with `threads` worker threads named `name` (timers and I/O
/// enabled): background work (uploads) goes on while a call blocks on
/// another future.
pub fn multi_thread(name: &str, threads: usize) -> Result<Runtime, ConnectorError> {
    Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| ConnectorError::fatal(format!("cannot start the {name} runtime: {e}")))
}

/// A runtime that runs only while the task blocks on it: no thread of its
/// own, the cheapest choice when nothing must progress between calls.
pub fn current_thread(name: &str) -> Result<Runtime, ConnectorError> {
    Builder::new_current_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| ConnectorError::fatal(format!("cannot start the {name} runtime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_run_futures_on_named_threads() {
        let rt = multi_thread("kit-test-io", 2).unwrap();
        let name = rt.block_on(async {
            tokio::spawn(async { std::thread::current().name().map(str::to_string) }).await.unwrap()
        });
        assert_eq!(name.as_deref(), Some("kit-test-io"));
        let rt = current_thread("kit-test-one").unwrap();
        assert_eq!(rt.block_on(async { 40 + 2 }), 42);
    }
}
