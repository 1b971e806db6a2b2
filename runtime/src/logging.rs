//! The worker's log output and its levels, changeable at run time through
//! `/admin/loggers` (Kafka Connect's `LoggingResource` over its `Loggers`).
//!
//! A Kafka Connect logger is a Java class or package name; here it is a
//! `tracing` target, a Rust module path (`sluice_runtime::pipeline`), and
//! `root` is the default level. Setting a logger sets its descendants too,
//! as log4j's hierarchy does. The filter is an `EnvFilter` behind
//! tracing-subscriber's reload layer: the start-up directives (`SLUICE_LOG`)
//! with the levels set since composed onto them.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use tracing_subscriber::{prelude::*, reload, EnvFilter, Registry};

/// Kafka Connect's name for the default level.
pub const ROOT: &str = "root";

/// A logger's level and when `/admin/loggers` last set it (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerLevel {
    pub level: String,
    pub last_modified: Option<u64>,
}

/// The levels: the default (`root`) and per target, as directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels {
    loggers: BTreeMap<String, LoggerLevel>,
    /// Start-up directives this module does not take apart (span or field
    /// filters); kept as they are.
    other: Vec<String>,
}

/// A log4j level name (any case) as the `tracing` level it becomes; `None`
/// when it is not one (Kafka Connect answers 400).
pub fn tracing_level(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_uppercase().as_str() {
        "OFF" => "off",
        "FATAL" | "ERROR" => "error",
        "WARN" => "warn",
        "INFO" => "info",
        "DEBUG" => "debug",
        "TRACE" => "trace",
        _ => return None,
    })
}

impl Levels {
    /// The levels of start-up directives such as `info,rdkafka=warn`.
    pub fn parse(directives: &str) -> Levels {
        let mut levels = Levels { loggers: BTreeMap::new(), other: Vec::new() };
        let mut root = "INFO".to_string();
        for directive in directives.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if directive.contains(['[', '{']) {
                levels.other.push(directive.to_string());
            } else if let Some((target, level)) = directive.split_once('=') {
                levels.loggers.insert(
                    target.trim().to_string(),
                    LoggerLevel { level: level.trim().to_ascii_uppercase(), last_modified: None },
                );
            } else if tracing_level(directive).is_some() {
                root = directive.to_ascii_uppercase();
            } else {
                // A bare target: every level of it.
                levels
                    .loggers
                    .insert(directive.to_string(), LoggerLevel { level: "TRACE".into(), last_modified: None });
            }
        }
        levels.loggers.insert(ROOT.to_string(), LoggerLevel { level: root, last_modified: None });
        levels
    }

    /// Every logger with a level of its own, `root` included.
    pub fn all(&self) -> &BTreeMap<String, LoggerLevel> {
        &self.loggers
    }

    /// A logger's level: its own, else its nearest ancestor's, else root's.
    pub fn level(&self, logger: &str) -> LoggerLevel {
        let mut name = logger;
        loop {
            if let Some(l) = self.loggers.get(name) {
                return l.clone();
            }
            match name.rfind("::") {
                Some(i) => name = &name[..i],
                None => {
                    return self
                        .loggers
                        .get(ROOT)
                        .cloned()
                        .unwrap_or(LoggerLevel { level: "INFO".into(), last_modified: None })
                }
            }
        }
    }

    /// Sets `logger` and every logger below it (all of them for `root`) to
    /// `level`; the loggers it set, as Kafka Connect's `Loggers.setLevel`
    /// answers.
    pub fn set(&mut self, logger: &str, level: &str, now_ms: u64) -> Vec<String> {
        let level = level.to_ascii_uppercase();
        let below = |name: &str| logger == ROOT || name == logger || name.starts_with(&format!("{logger}::"));
        let mut affected: Vec<String> = self.loggers.keys().filter(|n| below(n)).cloned().collect();
        if !affected.iter().any(|n| n == logger) {
            affected.push(logger.to_string());
        }
        for name in &affected {
            self.loggers.insert(name.clone(), LoggerLevel { level: level.clone(), last_modified: Some(now_ms) });
        }
        affected.sort();
        affected
    }

    /// The `EnvFilter` directives of these levels.
    pub fn directives(&self) -> String {
        let root = self.loggers.get(ROOT).map_or("INFO", |l| l.level.as_str());
        let mut out = vec![tracing_level(root).unwrap_or("info").to_string()];
        for (name, l) in self.loggers.iter().filter(|(n, _)| n.as_str() != ROOT) {
            out.push(format!("{name}={}", tracing_level(&l.level).unwrap_or("info")));
        }
        out.extend(self.other.iter().cloned());
        out.join(",")
    }
}

/// The installed filter and its levels.
pub struct Loggers {
    levels: Mutex<Levels>,
    handle: reload::Handle<EnvFilter, Registry>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Loggers {
    fn levels(&self) -> std::sync::MutexGuard<'_, Levels> {
        self.levels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn all(&self) -> BTreeMap<String, LoggerLevel> {
        self.levels().all().clone()
    }

    pub fn level(&self, logger: &str) -> LoggerLevel {
        self.levels().level(logger)
    }

    /// Sets a level (a log4j name, checked by the caller) and applies it to
    /// the running filter; the loggers it set.
    pub fn set(&self, logger: &str, level: &str) -> Result<Vec<String>, String> {
        let mut levels = self.levels();
        let mut next = levels.clone();
        let affected = next.set(logger, level, now_ms());
        let filter = EnvFilter::try_new(next.directives()).map_err(|e| format!("invalid logger {logger:?}: {e}"))?;
        self.handle.reload(filter).map_err(|e| e.to_string())?;
        *levels = next;
        Ok(affected)
    }
}

/// Installs the global subscriber writing to stderr (text or JSON) with the
/// directives of `SLUICE_LOG`, or `default_level`.
pub fn init(json: bool, default_level: &str) -> std::sync::Arc<Loggers> {
    let directives = std::env::var("SLUICE_LOG").ok().filter(|d| EnvFilter::try_new(d).is_ok());
    let levels = Levels::parse(directives.as_deref().unwrap_or(default_level));
    let filter = EnvFilter::try_new(levels.directives()).unwrap_or_else(|_| EnvFilter::new(default_level));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        Registry::default().with(filter).with(fmt.json()).init();
    } else {
        Registry::default().with(filter).with(fmt).init();
    }
    std::sync::Arc::new(Loggers { levels: Mutex::new(levels), handle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_directives_become_levels_and_back() {
        let levels = Levels::parse("info,rdkafka=warn,sluice_runtime::pipeline=debug");
        assert_eq!(levels.level(ROOT).level, "INFO");
        assert_eq!(levels.level("rdkafka::client").level, "WARN");
        assert_eq!(levels.level("sluice_runtime::pipeline::sink").level, "DEBUG");
        assert_eq!(levels.level("sluice_runtime::rest").level, "INFO");
        assert_eq!(levels.directives(), "info,rdkafka=warn,sluice_runtime::pipeline=debug");
    }

    /// Kafka Connect's `Loggers.setLevel`: a logger and its descendants,
    /// every logger for root, each with its time of change.
    #[test]
    fn setting_a_logger_sets_those_below_it() {
        let mut levels = Levels::parse("info,sluice_runtime::pipeline::sink=trace,rdkafka=warn");
        let affected = levels.set("sluice_runtime::pipeline", "debug", 7);
        assert_eq!(affected, vec!["sluice_runtime::pipeline", "sluice_runtime::pipeline::sink"]);
        assert_eq!(
            levels.level("sluice_runtime::pipeline::sink"),
            LoggerLevel { level: "DEBUG".into(), last_modified: Some(7) }
        );
        assert_eq!(levels.level("rdkafka").level, "WARN");
        let affected = levels.set(ROOT, "ERROR", 8);
        assert_eq!(affected.len(), 4, "{affected:?}");
        assert_eq!(
            levels.directives(),
            "error,rdkafka=error,sluice_runtime::pipeline=error,sluice_runtime::pipeline::sink=error"
        );
    }

    #[test]
    fn log4j_levels_map_to_tracing_levels() {
        assert_eq!(tracing_level("fatal"), Some("error"));
        assert_eq!(tracing_level("Warn"), Some("warn"));
        assert_eq!(tracing_level("OFF"), Some("off"));
        assert_eq!(tracing_level("verbose"), None);
    }
}
