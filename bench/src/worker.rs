//! A `sluice worker` process started the way `tests/` starts one, its REST
//! API, and an optional `perf` recording of it.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// What a benchmark run's poll found.
pub enum Poll<T> {
    Done(T),
    /// Not yet; how far it got (e.g. "committed 120 of 4000").
    Pending(String),
}

pub struct Worker {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("finding a free port")?.port())
}

/// Sends a signal to a process we started.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid of a child this program spawned.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

impl Worker {
    /// Starts a worker of its own cluster with only the s3-sink plugin
    /// (`plugin_dir`) and waits until `/ready` answers.
    pub fn start(
        bin: &Path,
        plugin_dir: &Path,
        bootstrap: &str,
        cluster: &str,
        kafka: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(bin);
        command.args(["worker", "--bootstrap-servers", bootstrap, "--cluster-id", cluster]);
        for prop in kafka {
            command.arg("--kafka").arg(prop);
        }
        let child = command
            .arg("--rest-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--plugin-path")
            .arg(plugin_dir)
            // Tansu answers a group join after about half the session timeout.
            .args(["--session-timeout-ms", "6000"])
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut worker = Worker { child, url: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = worker.child.try_wait()? {
                bail!("the worker exited with {status}; log:\n{}", worker.log_tail());
            }
            if ureq::get(&format!("{}/ready", worker.url)).call().is_ok() {
                return Ok(worker);
            }
            if Instant::now() > deadline {
                bail!("the worker did not become ready in 60 s; log:\n{}", worker.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// POST /connectors; fails unless 201.
    pub fn create_connector(&self, name: &str, config: &Value) -> anyhow::Result<()> {
        let body = serde_json::json!({ "name": name, "config": config });
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp = agent
            .post(&format!("{}/connectors", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .context("POST /connectors")?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status != 201 {
            bail!("creating connector {name}: HTTP {status}: {text}");
        }
        Ok(())
    }

    /// The connector's task states, e.g. ["RUNNING"]; a FAILED task's trace is returned as an error.
    pub fn task_states(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp = agent.get(&format!("{}/connectors/{name}/status", self.url)).call().context("GET status")?;
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default();
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        for t in &tasks {
            if t["state"] == "FAILED" {
                return Err(anyhow!("task of {name} FAILED: {}", t["trace"].as_str().unwrap_or("")));
            }
        }
        Ok(tasks.iter().filter_map(|t| t["state"].as_str().map(str::to_string)).collect())
    }

    /// Polls `poll` every `every` until it returns the run's result
    /// (typically: the connector's committed offsets reached the end and
    /// the target holds everything); fails when the worker dies, a task
    /// fails or an hour passes, and prints the pending state every 5 s.
    pub fn run_until<T>(
        &mut self,
        connector: &str,
        started: Instant,
        every: Duration,
        mut poll: impl FnMut() -> anyhow::Result<Poll<T>>,
    ) -> anyhow::Result<T> {
        let (mut last_print, mut last_status) = (Instant::now(), Instant::now());
        loop {
            if !self.alive() {
                bail!("the worker died; log:\n{}", self.log_tail());
            }
            if started.elapsed() > Duration::from_secs(3600) {
                bail!("{connector} did not finish within an hour; log:\n{}", self.log_tail());
            }
            if last_status.elapsed() > Duration::from_secs(2) {
                last_status = Instant::now();
                self.task_states(connector)?;
            }
            let progress = match poll()? {
                Poll::Done(result) => return Ok(result),
                Poll::Pending(progress) => progress,
            };
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = Instant::now();
                eprintln!(
                    "[bench]   {progress} after {:.0} s, worker RSS {:.0} MiB",
                    started.elapsed().as_secs_f64(),
                    crate::procstat::status_mib(self.pid(), "VmRSS").unwrap_or(0.0)
                );
            }
            std::thread::sleep(every);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `perf record` of the whole machine (cpu-clock samples, no call graphs:
/// Rust's release code has no frame pointers and DWARF unwinding costs too
/// much CPU on a 2-core machine), reported for one process. System-wide
/// because `-p` missed threads the worker started after the attach.
pub struct Perf {
    child: Child,
    pid: u32,
    pub data: PathBuf,
}

impl Perf {
    /// None (with the reason printed) when perf is missing or cannot sample here.
    pub fn start(pid: u32, data: PathBuf) -> Option<Perf> {
        let child = Command::new("perf")
            .args(["record", "-q", "-a", "-F", "199", "-e", "cpu-clock", "-o"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(Perf { child, pid, data }),
            Err(e) => {
                eprintln!("[bench] perf is not available ({e}); the profile is per thread only");
                None
            }
        }
    }

    /// Stops recording; the top symbols by self time (`perf report`), as text.
    pub fn finish(mut self, limit: usize) -> Option<String> {
        signal(self.child.id(), libc::SIGINT);
        let _ = self.child.wait();
        let out = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--percentage", "relative", "--sort", "comm,dso,symbol"])
            .args(["--percent-limit", "0.7"])
            .arg("--pid")
            .arg(self.pid.to_string())
            .arg("-i")
            .arg(&self.data)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .take(limit)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if lines.is_empty() {
            eprintln!("[bench] perf recorded no samples ({})", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(lines.join("\n"))
    }
}
