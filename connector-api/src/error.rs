//! Errors a connector reports, with the kind the runtime acts on.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// What the runtime does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Transient (network, throttling): retried with exponential backoff up to
    /// `errors.retry.timeout`, then handled per `errors.tolerance`.
    Retriable,
    /// The record itself cannot be written (malformed, wrong type): it goes to
    /// the dead-letter queue when one is configured.
    BadRecord,
    /// A business failure reported by the target: the record goes to the
    /// rejected-records topic for the upstream application to reprocess.
    Rejected,
    /// The task cannot continue: it becomes FAILED (and may be restarted).
    Fatal,
    /// The configuration is wrong: a 400 at submit time.
    Config,
}

impl ErrorKind {
    // The wire codes never change meaning; unknown codes read as Fatal so an
    // older worker treats a newer kind conservatively.
    const fn code(self) -> u8 {
        match self {
            ErrorKind::Retriable => 1,
            ErrorKind::BadRecord => 2,
            ErrorKind::Rejected => 3,
            ErrorKind::Fatal => 4,
            ErrorKind::Config => 5,
        }
    }

    const fn from_code(code: u8) -> ErrorKind {
        match code {
            1 => ErrorKind::Retriable,
            2 => ErrorKind::BadRecord,
            3 => ErrorKind::Rejected,
            5 => ErrorKind::Config,
            _ => ErrorKind::Fatal,
        }
    }

    /// The name used in logs, status traces and DLQ headers.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Retriable => "Retriable",
            ErrorKind::BadRecord => "BadRecord",
            ErrorKind::Rejected => "Rejected",
            ErrorKind::Fatal => "Fatal",
            ErrorKind::Config => "Config",
        }
    }
}

/// An error crossing the plugin boundary: a kind and a message.
///
/// The kind travels as a byte (not an exhaustive enum) so that adding a kind
/// later does not break the layout check of older plugins.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct ConnectorError {
    kind: u8,
    message: RString,
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError { kind: kind.code(), message: RString::from(message.into()) }
    }
    pub fn retriable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retriable, message)
    }
    pub fn bad_record(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRecord, message)
    }
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.kind)
    }
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl fmt::Debug for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind().name(), self.message)
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind().name(), self.message)
    }
}

impl std::error::Error for ConnectorError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_codes_are_fatal() {
        for kind in
            [ErrorKind::Retriable, ErrorKind::BadRecord, ErrorKind::Rejected, ErrorKind::Fatal, ErrorKind::Config]
        {
            assert_eq!(ConnectorError::new(kind, "x").kind(), kind);
        }
        let future = ConnectorError { kind: 200, message: "from a newer plugin".into() };
        assert_eq!(future.kind(), ErrorKind::Fatal);
    }
}
