//! What a librdkafka connection error asks the user to fix. librdkafka's
//! own text is precise but names OpenSSL and protocol states, not the
//! setting; a wrong CA, say, otherwise surfaces at start as a bare
//! "OperationTimedOut" (measured, docs/decisions/0023).

use std::sync::Mutex;

use rdkafka::{client::ClientContext, config::RDKafkaLogLevel, error::KafkaError};

/// The librdkafka log level of clients whose context diagnoses: a plaintext
/// client cut off by a TLS listener is logged at level 6 (info), below
/// rdkafka's default. Only contexts that filter get it (the others would
/// pass every info line to the log).
pub const LOG_LEVEL: RDKafkaLogLevel = RDKafkaLogLevel::Info;

/// The setting to check for a librdkafka error text, if it is a TLS or
/// SASL mistake Sluice knows.
pub fn hint(reason: &str) -> Option<&'static str> {
    let r = reason.to_ascii_lowercase();
    let has = |s: &str| r.contains(s);
    // The broker's alert about our certificate comes first: "certificate
    // expired" in it is the client certificate's, not the broker's.
    if has("alert certificate expired") {
        Some("the broker refused the client certificate as expired: renew the certificate in ssl.certificate.location (and its key in ssl.key.location)")
    } else if has("certificate has expired") {
        Some("the broker's certificate has expired: renew it on the broker (or check this machine's clock)")
    } else if has("certificate verify failed") || has("unable to get local issuer") || has("self-signed certificate") {
        // librdkafka does not pass on OpenSSL's reason (measured: an expired
        // broker certificate gives the same text as a wrong CA).
        Some(
            "the broker's certificate could not be verified: set ssl.ca.location to the PEM CA that signed it; if it is set right, the broker's certificate has expired or is not valid yet (check its dates and this machine's clock)",
        )
    } else if has("alert certificate required") || has("alert bad certificate") || has("alert unknown ca") {
        Some("the broker wants a client certificate it trusts: set ssl.certificate.location and ssl.key.location (signed by a CA the broker trusts)")
    } else if has("mechanism handshake failed") || has("unsupported sasl mechanism") {
        Some("the broker does not offer this sasl.mechanism: set one it lists (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
    } else if has("sasl authentication")
        || has("authentication failed")
        || has("unknown-user")
        || has("invalid credentials")
    {
        Some("the broker refused the login: check sasl.username and sasl.password (and sasl.mechanism)")
    } else if has("wrong version number") || has("packet length too long") || has("record layer failure") {
        Some("the broker did not answer in TLS: use security.protocol=PLAINTEXT or SASL_PLAINTEXT for a listener without TLS, or check the port")
    } else if has("apiversion_query") && (has("disconnected") || has("connection closed")) {
        Some("the broker closed the connection before answering: if its listener expects TLS, set security.protocol=SSL (or SASL_SSL) and ssl.ca.location")
    } else {
        None
    }
}

/// What makes two reports one problem: their hint, or their text without
/// the "(after 12ms in state X)" librdkafka appends.
fn problem(reason: &str) -> &str {
    if let Some(h) = hint(reason) {
        return h;
    }
    match reason.rfind(" (after ") {
        Some(i) => &reason[..i],
        None => reason,
    }
}

/// A client context that logs connection errors once per change, with the
/// setting to check, and keeps the last one for an error message.
#[derive(Default)]
pub struct Diagnosing {
    client: String,
    last: Mutex<Option<String>>,
}

impl Diagnosing {
    pub fn new(client: impl Into<String>) -> Diagnosing {
        Diagnosing { client: client.into(), last: Mutex::new(None) }
    }

    /// The last connection error with its hint, for the message of a call that failed.
    pub fn last_error(&self) -> Option<String> {
        let last = self.last.lock().ok()?.clone()?;
        Some(match hint(&last) {
            Some(h) => format!("{last} — {h}"),
            None => last,
        })
    }

    /// Notes an error; true when it is another problem than the one before
    /// (worth a log line). librdkafka words one problem several ways (its
    /// log line and its error event, with and without OpenSSL's detail), so
    /// errors with a hint are one problem per hint.
    pub fn note(&self, reason: &str) -> bool {
        let Ok(mut last) = self.last.lock() else { return true };
        let new = last.as_deref().map(problem) != Some(problem(reason));
        *last = Some(reason.to_string());
        new
    }
}

/// Logs a client's error event once per problem, with its hint (the worker
/// stays up; librdkafka retries). "All brokers down" follows every failed
/// connection and says nothing the failure's own line did not.
pub fn report_error(diagnosing: &Diagnosing, error: &KafkaError, reason: &str) {
    if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
        return;
    }
    if diagnosing.note(reason) {
        log_error(&diagnosing.client, error, reason);
    }
}

fn log_error(client: &str, error: &KafkaError, reason: &str) {
    match hint(reason) {
        Some(h) => tracing::error!(client, error = %error, reason, "Kafka connection failed: {h}"),
        None => tracing::warn!(client, error = %error, reason, "Kafka client error"),
    }
}

/// Whether an error is about reaching the brokers (reported by the client
/// context's log line), not about a message or the group.
pub fn is_connection_error(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::SSL
                | C::Authentication
                | C::Resolve
                | C::SaslAuthenticationFailed
        )
    )
}

/// Whether a librdkafka log line reports a failed connection worth telling
/// the user about: warnings and worse, and the quieter lines a hint knows
/// (a TLS listener closing a plaintext client's connection is logged at
/// level 6). Idle disconnects (level 6, no hint) stay out.
pub fn is_connection_failure(level: RDKafkaLogLevel, facility: &str, message: &str) -> bool {
    facility == "FAIL" && ((level as i32) <= (RDKafkaLogLevel::Warning as i32) || hint(message).is_some())
}

/// Logs a failed connection once per change, naming the setting to check.
/// librdkafka calls this from its own threads, whether or not the client is
/// polled (an admin client's errors reach no error callback otherwise).
pub fn log_connection_failure(diagnosing: &Diagnosing, level: RDKafkaLogLevel, facility: &str, message: &str) {
    if is_connection_failure(level, facility, message) && diagnosing.note(message) {
        match hint(message) {
            Some(h) => tracing::error!(client = %diagnosing.client, reason = message, "Kafka connection failed: {h}"),
            None => tracing::warn!(client = %diagnosing.client, reason = message, "Kafka connection failed"),
        }
    }
}

impl ClientContext for Diagnosing {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_connection_failure(self, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_error(self, &error, reason);
    }
}

/// The start-up probe is a producer that sends nothing: nothing is delivered.
impl rdkafka::producer::ProducerContext for Diagnosing {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    // The texts are librdkafka 2.x's, as measured against Tansu behind an
    // haproxy TLS front and Tansu with --authentication (docs/decisions/0023).
    #[test]
    fn the_usual_mistakes_name_their_setting() {
        let wrong_ca = "ssl://127.0.0.1:29093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 10ms in state SSL_HANDSHAKE)";
        assert!(hint(wrong_ca).unwrap().contains("ssl.ca.location"));
        let plaintext_to_tls = "127.0.0.1:29093/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 0ms in state APIVERSION_QUERY)";
        assert!(hint(plaintext_to_tls).unwrap().contains("security.protocol=SSL"));
        let no_client_cert = "ssl://127.0.0.1:29093/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: SSL alert number 116 (after 0ms in state APIVERSION_QUERY)";
        assert!(hint(no_client_cert).unwrap().contains("ssl.certificate.location"));
        let bad_login = "sasl_plaintext://127.0.0.1:29092/bootstrap: SASL authentication error: SASL SCRAM authentication failed: broker responded with unknown-user (after 14ms in state AUTH_REQ)";
        assert!(hint(bad_login).unwrap().contains("sasl.password"));
        // A known user with a wrong password (the patched Tansu, 0044).
        let wrong_password = "sasl_plaintext://127.0.0.1:39320/bootstrap: SASL authentication error: SASL SCRAM authentication failed: broker responded with invalid-proof (after 13ms in state AUTH_REQ)";
        assert!(hint(wrong_password).unwrap().contains("sasl.password"));
        let no_mechanism = "sasl_plaintext://127.0.0.1:29092/bootstrap: SASL PLAIN mechanism handshake failed: Local: Broker transport failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)";
        assert!(hint(no_mechanism).unwrap().contains("sasl.mechanism"));
        let expired =
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: certificate has expired";
        assert!(hint(expired).unwrap().contains("broker's certificate has expired"));
        // Measured through haproxy (docs/decisions/0044): the broker refusing
        // an expired client certificate, and an expired broker certificate.
        let client_expired = "ssl://127.0.0.1:39301/bootstrap: Receive failed: error:0A000415:SSL routines::ssl/tls alert certificate expired: SSL alert number 45 (after 0ms in state APIVERSION_QUERY)";
        let h = hint(client_expired).unwrap();
        assert!(h.contains("client certificate as expired") && h.contains("ssl.certificate.location"), "{h}");
        let broker_expired = "ssl://127.0.0.1:39302/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 4ms in state SSL_HANDSHAKE)";
        let h = hint(broker_expired).unwrap();
        assert!(h.contains("ssl.ca.location") && h.contains("expired"), "{h}");
        assert_eq!(hint("127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"), None);
    }

    #[test]
    fn connection_errors_are_told_from_others() {
        use rdkafka::types::RDKafkaErrorCode as C;
        assert!(is_connection_error(&KafkaError::MessageConsumption(C::SSL)));
        assert!(is_connection_error(&KafkaError::MessageConsumption(C::AllBrokersDown)));
        assert!(!is_connection_error(&KafkaError::MessageConsumption(C::UnknownTopicOrPartition)));
    }

    #[test]
    fn idle_disconnects_are_not_failures() {
        let idle = "127.0.0.1:9092/1: Disconnected (after 600000ms in state UP)";
        assert!(!is_connection_failure(RDKafkaLogLevel::Info, "FAIL", idle));
        let plaintext_to_tls = "127.0.0.1:29093/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 0ms in state APIVERSION_QUERY)";
        assert!(is_connection_failure(RDKafkaLogLevel::Info, "FAIL", plaintext_to_tls));
        assert!(is_connection_failure(
            RDKafkaLogLevel::Error,
            "FAIL",
            "Connect to ipv4#127.0.0.1:9 failed: Connection refused"
        ));
        assert!(!is_connection_failure(RDKafkaLogLevel::Error, "CONFWARN", "Configuration property x is ignored"));
    }

    #[test]
    fn one_problem_is_logged_once_however_often_it_repeats() {
        let d = Diagnosing::new("cluster-admin");
        assert!(d.note("x: SSL handshake failed (after 1ms in state SSL_HANDSHAKE)"));
        assert!(!d.note("x: SSL handshake failed (after 7ms in state SSL_HANDSHAKE)"));
        assert!(d.note(
            "[thrd:x]: x: error:0A000086:SSL routines::certificate verify failed (after 1ms in state SSL_HANDSHAKE)"
        ));
        assert!(!d.note("x: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified (after 2ms in state SSL_HANDSHAKE)"));
        assert!(d.note("x: Connection refused"));
        assert_eq!(d.last_error().as_deref(), Some("x: Connection refused"));
    }
}
