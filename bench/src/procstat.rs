//! What the kernel says about a process: CPU time, peak RSS, per-thread CPU,
//! and the machine (cores, memory, load).

use std::{
    collections::BTreeMap,
    fs,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{anyhow, Context};

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (comm, utime + stime in seconds) from a `stat` file.
fn parse_stat(text: &str) -> Option<(String, f64)> {
    // comm is in parentheses and may contain spaces: split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the comm: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks_per_second()))
}

/// CPU seconds (user + system) a process used so far, all its threads.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&text).map(|(_, s)| s).ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat: {text}"))
}

/// A `kB` field of /proc/<pid>/status in MiB (VmHWM: peak RSS, VmRSS: now).
pub fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let text =
        fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    let kb: f64 =
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("unexpected line {line}"))?;
    Ok(kb / 1024.0)
}

/// CPU seconds per thread id (with the thread's name) right now.
fn threads(pid: u32) -> BTreeMap<u32, (String, f64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some(stat) = fs::read_to_string(entry.path().join("stat")).ok().and_then(|t| parse_stat(&t)) {
            out.insert(tid, stat);
        }
    }
    out
}

/// Thread id -> (name, CPU seconds at start (0 for threads born later), latest).
type Seen = Arc<Mutex<BTreeMap<u32, (String, f64, f64)>>>;

/// Samples a process's threads every `every` until stopped, so threads that
/// end before the measurement does are counted too. The result is CPU
/// seconds per thread name, used during the measurement.
pub struct ThreadSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    seen: Seen,
}

impl ThreadSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen =
            Arc::new(Mutex::new(threads(pid).into_iter().map(|(tid, (name, cpu))| (tid, (name, cpu, cpu))).collect()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let now = threads(pid);
                if let Ok(mut seen) = seen2.lock() {
                    for (tid, (name, cpu)) in now {
                        let e = seen.entry(tid).or_insert((name.clone(), 0.0, 0.0));
                        e.0 = name;
                        e.2 = cpu;
                    }
                }
            }
        });
        ThreadSampler { stop, handle: Some(handle), seen }
    }

    /// Stops sampling; CPU seconds by thread name, largest first.
    pub fn finish(mut self) -> Vec<(String, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
        if let Ok(seen) = self.seen.lock() {
            for (name, start, last) in seen.values() {
                // Threads of a pool share a name prefix plus a number: group them.
                let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '#').to_string();
                let base = if base.is_empty() { name.clone() } else { base };
                *by_name.entry(base).or_default() += (last - start).max(0.0);
            }
        }
        let mut out: Vec<(String, f64)> = by_name.into_iter().filter(|(_, s)| *s > 0.0).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// The 1-minute load average.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu_model: String,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory_mib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().into())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    Machine { cores, memory_mib, cpu_model, kernel }
}

/// The pid a service of `dev/services` wrote under its run directory
/// (`kafka`, `s3`, `bigquery`), when it is running.
pub fn service_pid(run_dir: &std::path::Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(run_dir.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
}

/// CPU seconds of `pid` so far, 0 when there is no such process (a phase
/// then reports no CPU for it rather than failing the whole run).
pub fn cpu_seconds_or_zero(pid: Option<u32>) -> f64 {
    pid.and_then(|p| cpu_seconds(p).ok()).unwrap_or(0.0)
}

/// A variable `dev/services env` exports, or an error saying how to get it.
pub fn services_env(name: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    std::env::var(name)
        .with_context(|| format!("{name} is not set: run through dev/bench, or `eval \"$(dev/services env)\"` first"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let line = "42 (s3 sink) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0 20 0 1 0";
        let (name, secs) = parse_stat(line).expect("parsed");
        assert_eq!(name, "s3 sink");
        assert!((secs - 500.0 / ticks_per_second()).abs() < 1e-9);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_ok());
        assert!(status_mib(pid, "VmHWM").is_ok_and(|m| m > 0.0));
    }
}
