//! Error classification: what the worker should do with a failure, from an
//! HTTP status, an I/O error or an SQLSTATE — one answer for every connector
//! instead of one "is this transient" per connector.
//!
//! The kinds and what the worker does with them are in
//! [`connector_api::SinkTask`]'s error table. In short: `Retriable` is an
//! outage (retried with backoff, never dead-lettered), `BadRecord` and
//! `Rejected` are about one record (routed), `Fatal` and `Config` fail the
//! task.

use std::io;

use connector_api::{ConnectorError, ErrorKind};

/// How a connector wants the statuses that depend on who is asking read:
/// a refused credential and a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPolicy {
    /// 401 and 403: `Config` (validation, or a sink whose key is wrong) or
    /// `Fatal` (a running task).
    pub auth: ErrorKind,
    /// 400, 404, 409, 410, 413, 415, 422 and other 4xx: `BadRecord` for a
    /// sink writing one record per request, `Fatal` for a source (a query
    /// it cannot make will not heal), or what the caller says.
    pub client: ErrorKind,
}

impl StatusPolicy {
    /// A sink writing records: a refused record is a bad record, refused
    /// credentials a configuration error.
    pub const SINK: StatusPolicy = StatusPolicy { auth: ErrorKind::Config, client: ErrorKind::BadRecord };
    /// A source (or anything not about one record): every refusal fails the task.
    pub const SOURCE: StatusPolicy = StatusPolicy { auth: ErrorKind::Fatal, client: ErrorKind::Fatal };
    /// At validation: every refusal is about the configuration.
    pub const VALIDATE: StatusPolicy = StatusPolicy { auth: ErrorKind::Config, client: ErrorKind::Config };
}

/// The kind of an HTTP status that is not a success (2xx answers `None`).
///
/// | status | kind |
/// |---|---|
/// | 408, 429, 5xx | `Retriable` |
/// | 401, 403 | `policy.auth` |
/// | other 4xx | `policy.client` |
/// | 1xx, 3xx (a redirect not followed) | `Fatal` |
pub fn http_status(status: u16, policy: StatusPolicy) -> Option<ErrorKind> {
    Some(match status {
        200..=299 => return None,
        408 | 429 | 500..=599 => ErrorKind::Retriable,
        401 | 403 => policy.auth,
        400..=499 => policy.client,
        _ => ErrorKind::Fatal,
    })
}

/// A [`ConnectorError`] for a failed HTTP answer: `what` says what was asked
/// (`"GET https://…/Orders"`), `body` is the answer (an excerpt is kept). A
/// 401/403 message names the credentials, so the user knows what to fix.
pub fn http_error(status: u16, what: &str, body: &str, policy: StatusPolicy) -> ConnectorError {
    let kind = http_status(status, policy).unwrap_or(ErrorKind::Fatal);
    let body = excerpt(body, 300);
    let message = match status {
        401 => format!("{what}: HTTP 401 (the credentials were refused: check the user, password or token): {body}"),
        403 => format!(
            "{what}: HTTP 403 (the credentials lack the right to do this: check the user's or client's \
             authorities): {body}"
        ),
        _ => format!("{what}: HTTP {status}: {body}"),
    };
    ConnectorError::new(kind, message)
}

/// The kind of an I/O error: network trouble, timeouts and interruptions
/// are `Retriable`; a missing path or a refused permission is `Config` (the
/// configuration names a file or directory that does not work); data the
/// other side could not read is `BadRecord`; anything else `Fatal`.
pub fn io_kind(kind: io::ErrorKind) -> ErrorKind {
    use io::ErrorKind as K;
    match kind {
        K::TimedOut
        | K::Interrupted
        | K::WouldBlock
        | K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::AddrNotAvailable
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::ResourceBusy
        | K::StorageFull
        | K::OutOfMemory => ErrorKind::Retriable,
        K::NotFound
        | K::PermissionDenied
        | K::AlreadyExists
        | K::NotADirectory
        | K::IsADirectory
        | K::ReadOnlyFilesystem
        | K::InvalidFilename
        | K::AddrInUse => ErrorKind::Config,
        K::InvalidData => ErrorKind::BadRecord,
        _ => ErrorKind::Fatal,
    }
}

/// A [`ConnectorError`] for an I/O error while doing `what`.
pub fn io_error(what: &str, e: &io::Error) -> ConnectorError {
    ConnectorError::new(io_kind(e.kind()), format!("{what}: {e}"))
}

/// The kind of an SQLSTATE (five characters; the class is the first two):
///
/// | SQLSTATE | meaning | kind |
/// |---|---|---|
/// | `08…` | connection exception | `Retriable` |
/// | `40…` (40001 serialization failure, 40P01 deadlock) | transaction rollback | `Retriable` |
/// | `53…`, `57…`, `55P03`, `HY…T0`/`HYT00` | resources, operator intervention, lock not available, timeout | `Retriable` |
/// | `22…`, `23…` | data exception, integrity violation | `BadRecord` |
/// | `28…` | invalid authorization | `Config` |
/// | `3D…`, `3F…` | no such database or schema | `Config` |
/// | `42…` | syntax error or access rule violation | `Fatal` |
/// | anything else | | `Fatal` |
pub fn sqlstate(state: &str) -> ErrorKind {
    let class = state.get(..2).unwrap_or(state);
    match class {
        "08" | "40" | "53" | "57" => ErrorKind::Retriable,
        _ if state == "55P03" || state == "HYT00" || state == "HYT01" => ErrorKind::Retriable,
        "22" | "23" => ErrorKind::BadRecord,
        "28" | "3D" | "3F" => ErrorKind::Config,
        _ => ErrorKind::Fatal,
    }
}

/// True when the SQLSTATE is worth retrying (`sqlstate(state) == Retriable`).
pub fn sqlstate_is_transient(state: &str) -> bool {
    sqlstate(state) == ErrorKind::Retriable
}

/// The start of a body for an error message: trimmed, at most `chars`
/// characters, an ellipsis when cut.
pub fn excerpt(body: &str, chars: usize) -> String {
    let body = body.trim();
    match body.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorKind::*;

    #[test]
    fn http_statuses_by_policy() {
        let table: &[(u16, StatusPolicy, Option<ErrorKind>)] = &[
            (200, StatusPolicy::SINK, None),
            (204, StatusPolicy::SOURCE, None),
            (408, StatusPolicy::SINK, Some(Retriable)),
            (429, StatusPolicy::SOURCE, Some(Retriable)),
            (500, StatusPolicy::SINK, Some(Retriable)),
            (503, StatusPolicy::VALIDATE, Some(Retriable)),
            (599, StatusPolicy::SINK, Some(Retriable)),
            (401, StatusPolicy::SINK, Some(Config)),
            (403, StatusPolicy::SOURCE, Some(Fatal)),
            (400, StatusPolicy::SINK, Some(BadRecord)),
            (404, StatusPolicy::SINK, Some(BadRecord)),
            (409, StatusPolicy::SINK, Some(BadRecord)),
            (422, StatusPolicy::SINK, Some(BadRecord)),
            (422, StatusPolicy::SOURCE, Some(Fatal)),
            (422, StatusPolicy { auth: Config, client: Rejected }, Some(Rejected)),
            (404, StatusPolicy::VALIDATE, Some(Config)),
            (301, StatusPolicy::SINK, Some(Fatal)),
            (100, StatusPolicy::SINK, Some(Fatal)),
        ];
        for (status, policy, want) in table {
            assert_eq!(http_status(*status, *policy), *want, "HTTP {status} with {policy:?}");
        }
    }

    #[test]
    fn http_errors_name_the_credentials_and_keep_an_excerpt() {
        let e = http_error(401, "GET https://x/y", "  denied\n", StatusPolicy::SOURCE);
        assert_eq!(e.kind(), Fatal);
        assert!(e.message().contains("credentials were refused") && e.message().ends_with("denied"), "{e}");
        let e = http_error(403, "GET https://x/y", "", StatusPolicy::SINK);
        assert_eq!(e.kind(), Config);
        assert!(e.message().contains("authorities"), "{e}");
        let long = "x".repeat(1000);
        let e = http_error(500, "POST /a", &long, StatusPolicy::SINK);
        assert_eq!(e.kind(), Retriable);
        assert_eq!(e.message().chars().count(), "POST /a: HTTP 500: ".len() + 301);
    }

    #[test]
    fn io_kinds() {
        use io::ErrorKind as K;
        let table = [
            (K::TimedOut, Retriable),
            (K::ConnectionRefused, Retriable),
            (K::ConnectionReset, Retriable),
            (K::BrokenPipe, Retriable),
            (K::Interrupted, Retriable),
            (K::UnexpectedEof, Retriable),
            (K::StorageFull, Retriable),
            (K::NotFound, Config),
            (K::PermissionDenied, Config),
            (K::IsADirectory, Config),
            (K::InvalidData, BadRecord),
            (K::InvalidInput, Fatal),
            (K::Other, Fatal),
        ];
        for (kind, want) in table {
            assert_eq!(io_kind(kind), want, "{kind:?}");
        }
        let e = io_error("writing /tmp/x", &io::Error::new(K::TimedOut, "slow disk"));
        assert_eq!((e.kind(), e.message()), (Retriable, "writing /tmp/x: slow disk"));
    }

    #[test]
    fn sqlstates() {
        let table = [
            ("08006", Retriable), // connection failure
            ("08001", Retriable),
            ("40001", Retriable), // serialization failure
            ("40P01", Retriable), // deadlock
            ("53300", Retriable), // too many connections
            ("57P01", Retriable), // admin shutdown
            ("57014", Retriable), // query canceled
            ("55P03", Retriable), // lock not available
            ("HYT00", Retriable),
            ("55000", Fatal),
            ("22001", BadRecord), // string data right truncation
            ("22P02", BadRecord), // invalid text representation
            ("23505", BadRecord), // unique violation
            ("28P01", Config),    // invalid password
            ("28000", Config),
            ("3D000", Config), // invalid catalog name
            ("42601", Fatal),  // syntax error
            ("42P01", Fatal),  // undefined table
            ("XX000", Fatal),
            ("", Fatal),
        ];
        for (state, want) in table {
            assert_eq!(sqlstate(state), want, "{state}");
            assert_eq!(sqlstate_is_transient(state), want == Retriable);
        }
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("  ab  ", 5), "ab");
        assert_eq!(excerpt("äöü", 2), "äö…");
    }
}
