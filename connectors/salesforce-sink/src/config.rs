//! Configuration: Confluent's SObject sink keys where they apply
//! (`salesforce.*`, `override.event.type`, `behavior.on.api.errors`,
//! `connection.timeout`, `request.max.retries.time.ms`), and sluice's own
//! keys for what Confluent's connector does not have (field renames, the
//! rejected error codes, requests in flight, the API-limit share).
//!
//! [`Settings`] declares every key once; [`SalesforceConfig::from_settings`]
//! does the cross-key checks, each blaming the key it is about.

use std::time::Duration;

pub use crate::auth::Auth;
use connector_api::{
    config::typed::{Issues, Secret},
    config_enum, config_struct, ConfigIssue, ConnectorConfig,
};

/// The username-password flow's end (Salesforce's retirement date).
pub const PASSWORD_FLOW_RETIRED: &str = "2027-02-20";

/// Error codes that are the record's fault (a business rule of the org),
/// routed to `errors.rejected.topic.name` by default: the SOAP API's
/// `StatusCode` values a valid request gets for a record the org refuses.
pub const DEFAULT_REJECTED_CODES: &str = "FIELD_CUSTOM_VALIDATION_EXCEPTION,REQUIRED_FIELD_MISSING,DUPLICATE_VALUE,\
INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST,FIELD_INTEGRITY_EXCEPTION,STRING_TOO_LONG,INVALID_EMAIL_ADDRESS,\
DUPLICATES_DETECTED,FIELD_FILTER_VALIDATION_EXCEPTION,INVALID_CROSS_REFERENCE_KEY,ENTITY_IS_DELETED,NUMBER_OUTSIDE_VALID_RANGE";

config_enum! {
    /// `salesforce.grant.type`.
    pub enum GrantType {
        JwtBearer = "JWT_BEARER",
        ClientCredentials = "CLIENT_CREDENTIALS",
        /// Accepted by the parser only to answer with what to use instead.
        Password = "PASSWORD",
    }
}

config_enum! {
    /// `salesforce.sink.object.operation`.
    pub enum Operation { Insert = "insert", Update = "update", Upsert = "upsert", Delete = "delete" }
}

config_enum! {
    /// `behavior.on.api.errors`: what a record the API refuses becomes.
    pub enum OnApiErrors {
        /// Routed by the worker (`errors.tolerance`, the rejected topic, the DLQ).
        Fail = "fail",
        /// Dropped silently (counted).
        Ignore = "ignore",
        /// Dropped with a warning in the log.
        Log = "log",
    }
}

config_struct! {
    /// The keys of `salesforce-sink`.
    #[derive(Debug)]
    pub struct Settings {
        /// The sObject records are written to (`Account`, `Contact`, `Order__c`).
        pub object: String = key("salesforce.object").high().group("Salesforce").non_empty(),
        /// Login and token endpoint: `https://login.salesforce.com`,
        /// `https://test.salesforce.com` (sandboxes) or the org's My Domain
        /// (`https://acme.my.salesforce.com`, required for CLIENT_CREDENTIALS).
        /// Data calls go to the `instance_url` the token answer names.
        pub instance: String = key("salesforce.instance").high().group("Salesforce")
            .default_text("https://login.salesforce.com").regex("https?://[^/]+/?"),
        /// The REST API version every call is pinned to (at least 46.0, where
        /// sObject Collections upsert begins).
        pub version: String = key("salesforce.version").group("Salesforce").default_text("62.0")
            .check("a version 46.0 or later, like 62.0", |v: &String| match v.parse::<f64>() {
                Ok(n) if n >= 46.0 && v.contains('.') => Ok(()),
                _ => Err(format!("Invalid value {v}: must be an API version like 62.0, at least 46.0")),
            }),
        /// JWT_BEARER or CLIENT_CREDENTIALS (PASSWORD is refused: Salesforce
        /// retires that flow on 2027-02-20).
        pub grant_type: GrantType = key("salesforce.grant.type").high().group("Authentication"),
        /// The connected app's consumer key (client id).
        pub consumer_key: String = key("salesforce.consumer.key").high().group("Authentication").non_empty(),
        /// The connected app's consumer secret (CLIENT_CREDENTIALS).
        pub consumer_secret: Option<Secret> = key("salesforce.consumer.secret").group("Authentication"),
        /// The user the JWT bearer flow acts as (the assertion's `sub`).
        pub username: Option<String> = key("salesforce.username").group("Authentication"),
        /// JWT_BEARER: the connected app certificate's RSA private key, PEM
        /// (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`), unencrypted.
        pub jwt_private_key: Option<Secret> = key("salesforce.jwt.private.key").group("Authentication"),
        /// JWT_BEARER: a file holding that PEM key (instead of the key itself).
        pub jwt_private_key_path: Option<String> = key("salesforce.jwt.private.key.path").group("Authentication"),
        /// Confluent's JKS keystore: not read; convert the key to PEM.
        pub jwt_keystore_path: Option<String> = key("salesforce.jwt.keystore.path").low().group("Authentication"),
        /// Confluent's keystore password: not read (see salesforce.jwt.keystore.path).
        pub jwt_keystore_password: Option<Secret> = key("salesforce.jwt.keystore.password").low().group("Authentication"),
        /// What is done with each record when override.event.type=true, or
        /// when a record has no `_EventType`.
        pub operation: Operation = key("salesforce.sink.object.operation").group("Writes").default(Operation::Insert),
        /// true: records are matched by salesforce.custom.id.field.name (an
        /// External ID field) instead of the org-local `Id`.
        pub use_custom_id: bool = key("salesforce.use.custom.id.field").group("Writes").default(false),
        /// The External ID field (`Customer_Id__c`), after renames.
        pub custom_id_field: Option<String> = key("salesforce.custom.id.field.name").group("Writes"),
        /// Fields of the record not sent (names as in the record).
        pub ignore_fields: Vec<String> = key("salesforce.ignore.fields").group("Writes").default_text(""),
        /// Renames, `recordField:SalesforceField` pairs, comma-separated; a
        /// dotted target sets a relationship by the parent's External ID
        /// (`accountCode:Account__r.Account_Code__c`).
        pub field_mapping: Vec<String> = key("salesforce.field.mapping").group("Writes").default_text("")
            .regex("[^:]+:[^:]+"),
        /// false: a record's `_EventType` (created/updated/deleted) decides
        /// insert/update/delete; true: salesforce.sink.object.operation does.
        pub override_event_type: bool = key("override.event.type").group("Writes").default(false),
        /// sObject Collections records per request (Salesforce allows 200).
        pub batch_size: u32 = key("salesforce.batch.size").group("Writes").default(200).range(1..=200),
        /// Requests in flight per task. The org allows 25 long-running
        /// requests at once (5 in developer orgs), shared by every client.
        pub max_in_flight: u32 = key("salesforce.max.in.flight.requests").group("Writes").default(2).range(1..=25),
        /// Upserts of at least this many rows in one put go through a Bulk API
        /// 2.0 ingest job instead of sObject Collections (a job costs a few
        /// calls and minutes of latency, and saves one call per 200 rows).
        /// 0: never.
        pub bulk_threshold: u32 = key("salesforce.bulk.threshold").group("Bulk API 2.0").default(0),
        /// Between two polls of a Bulk job's state.
        pub bulk_poll: Duration = key("salesforce.bulk.poll.ms").group("Bulk API 2.0").default(Duration::from_secs(5)),
        /// fail: a refused record is routed by the worker (rejected topic or
        /// DLQ, per errors.tolerance); ignore / log: it is dropped.
        pub on_api_errors: OnApiErrors = key("behavior.on.api.errors").group("Errors").default(OnApiErrors::Fail),
        /// Per-record error codes that are the record's fault: to
        /// errors.rejected.topic.name. Other codes go to the DLQ.
        pub rejected_codes: Vec<String> = key("salesforce.rejected.error.codes").group("Errors")
            .default_text(DEFAULT_REJECTED_CODES),
        /// Connect and answer timeout of one call.
        pub timeout: Duration = key("connection.timeout").group("Connection").default(Duration::from_secs(30)),
        /// How long a put retries 503s, timeouts and locked rows before the
        /// batch goes back to the worker (capped at 120 s inside one put).
        pub retry_max: Duration = key("request.max.retries.time.ms").group("Connection")
            .default(Duration::from_secs(900)),
        /// The share of the org's daily API allocation (Sforce-Limit-Info)
        /// this connector may use; above it the task pauses.
        pub limit_share: f64 = key("salesforce.api.limit.share").group("Limits").default(0.8).range(0.01..=1.0),
        /// While paused on the daily limit, how often one request probes
        /// whether the rolling 24-hour window has freed up.
        pub limit_probe: Duration = key("salesforce.api.limit.probe.ms").group("Limits")
            .default(Duration::from_secs(300)),
    }
}

/// How a record is matched in Salesforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matching {
    /// By `Id` (org-local).
    RecordId,
    /// By this External ID field.
    External(String),
}

/// The task's settings after the cross-key checks.
#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    pub object: String,
    pub login_url: String,
    pub version: String,
    pub consumer_key: String,
    pub auth: Auth,
    pub operation: Operation,
    pub matching: Matching,
    pub ignore_fields: Vec<String>,
    /// (record field, Salesforce field), in the order given.
    pub renames: Vec<(String, String)>,
    pub override_event_type: bool,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub on_api_errors: OnApiErrors,
    pub rejected_codes: Vec<String>,
    pub timeout: Duration,
    pub retry_max: Duration,
    pub limit_share: f64,
    pub limit_probe: Duration,
    pub bulk_threshold: usize,
    pub bulk_poll: Duration,
}

impl SalesforceConfig {
    /// Every problem of `config`, each naming its key.
    pub fn parse(config: &ConnectorConfig) -> Result<SalesforceConfig, Vec<ConfigIssue>> {
        let settings = Settings::parse(config)?;
        Self::from_settings(settings, &|path| std::fs::read_to_string(path).map_err(|e| e.to_string()))
    }

    /// The cross-key checks; `read` reads the PEM file (a parameter so the
    /// checks stay testable without files).
    pub fn from_settings(
        s: Settings,
        read: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<SalesforceConfig, Vec<ConfigIssue>> {
        let mut issues = Issues::new();
        if s.jwt_keystore_path.is_some() || s.jwt_keystore_password.is_some() {
            let key = if s.jwt_keystore_path.is_some() {
                Settings::jwt_keystore_path
            } else {
                Settings::jwt_keystore_password
            };
            issues.blame(
                key,
                "keystores are not read: export the private key as PEM (`openssl pkcs12 -in keystore.p12 -nocerts \
                 -nodes`, after `keytool -importkeystore -deststoretype PKCS12` for a JKS) and set \
                 salesforce.jwt.private.key or salesforce.jwt.private.key.path",
            );
        }
        let auth = match s.grant_type {
            GrantType::Password => {
                issues.blame(
                    Settings::grant_type,
                    format!(
                        "PASSWORD is not supported: Salesforce retires the OAuth username-password flow on \
                         {PASSWORD_FLOW_RETIRED} (orgs created since Summer '26 already refuse it); use JWT_BEARER \
                         (salesforce.username + salesforce.jwt.private.key) or CLIENT_CREDENTIALS \
                         (salesforce.consumer.secret, with salesforce.instance set to the org's My Domain)"
                    ),
                );
                None
            }
            GrantType::ClientCredentials => match &s.consumer_secret {
                Some(secret) if !secret.is_empty() => Some(Auth::ClientCredentials { secret: secret.clone() }),
                _ => {
                    issues.blame(
                        Settings::consumer_secret,
                        "CLIENT_CREDENTIALS needs the connected app's consumer secret",
                    );
                    None
                }
            },
            GrantType::JwtBearer => {
                let username = s.username.clone().filter(|u| !u.trim().is_empty());
                if username.is_none() {
                    issues.blame(
                        Settings::username,
                        "JWT_BEARER needs the user the connector acts as (the assertion's subject)",
                    );
                }
                let key = match (&s.jwt_private_key, &s.jwt_private_key_path) {
                    (Some(k), None) => Some(k.clone()),
                    (None, Some(path)) => match read(path) {
                        Ok(text) => Some(Secret::new(text)),
                        Err(e) => {
                            issues.blame(Settings::jwt_private_key_path, format!("cannot read {path}: {e}"));
                            None
                        }
                    },
                    (Some(_), Some(_)) => {
                        issues.blame(
                            Settings::jwt_private_key_path,
                            "set salesforce.jwt.private.key or salesforce.jwt.private.key.path, not both",
                        );
                        None
                    }
                    (None, None) => {
                        issues.blame(
                            Settings::jwt_private_key,
                            "JWT_BEARER needs the connected app certificate's private key (PEM) here or in \
                             salesforce.jwt.private.key.path",
                        );
                        None
                    }
                };
                if let Some(key) = &key {
                    if let Err(e) = crate::auth::signing_key(key.expose()) {
                        let blamed = if s.jwt_private_key.is_some() {
                            Settings::jwt_private_key
                        } else {
                            Settings::jwt_private_key_path
                        };
                        issues.blame(blamed, e);
                    }
                }
                match (username, key) {
                    (Some(username), Some(key_pem)) => Some(Auth::JwtBearer { username, key_pem }),
                    _ => None,
                }
            }
        };
        let renames = parse_renames(&s.field_mapping);
        let matching = if s.use_custom_id {
            match s.custom_id_field.as_deref().map(str::trim) {
                Some(f) if !f.is_empty() => Some(Matching::External(f.to_string())),
                _ => {
                    issues.blame(
                        Settings::custom_id_field,
                        "salesforce.use.custom.id.field=true needs the External ID field's API name (like Customer_Id__c)",
                    );
                    None
                }
            }
        } else {
            Some(Matching::RecordId)
        };
        if matching == Some(Matching::RecordId) && s.operation == Operation::Upsert {
            issues.blame(
                Settings::operation,
                "upsert matches records by an External ID field: set salesforce.use.custom.id.field=true and \
                 salesforce.custom.id.field.name",
            );
        }
        if matches!(matching, Some(Matching::External(_))) && s.operation == Operation::Update && s.override_event_type
        {
            issues.blame(
                Settings::operation,
                "update by an External ID field is not offered (sObject Collections update by Id only): use upsert",
            );
        }
        let (Some(auth), Some(matching)) = (auth, matching) else {
            return Err(issues.into_vec());
        };
        issues.finish(|| SalesforceConfig {
            object: s.object,
            login_url: s.instance.trim_end_matches('/').to_string(),
            version: s.version,
            consumer_key: s.consumer_key,
            auth,
            operation: s.operation,
            matching,
            ignore_fields: s.ignore_fields,
            renames,
            override_event_type: s.override_event_type,
            batch_size: s.batch_size as usize,
            max_in_flight: s.max_in_flight as usize,
            on_api_errors: s.on_api_errors,
            rejected_codes: s.rejected_codes.iter().map(|c| c.trim().to_ascii_uppercase()).collect(),
            timeout: s.timeout,
            retry_max: s.retry_max,
            limit_share: s.limit_share,
            limit_probe: s.limit_probe,
            bulk_threshold: s.bulk_threshold as usize,
            bulk_poll: s.bulk_poll,
        })
    }
}

/// `a:B,c:D.e` (already split on commas and checked by the key's regex).
fn parse_renames(pairs: &[String]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter_map(|p| p.split_once(':'))
        .map(|(from, to)| (from.trim().to_string(), to.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConnectorConfig {
        ConnectorConfig::new()
            .with("salesforce.object", "Contact")
            .with("salesforce.consumer.key", "3MVG9")
            .with("salesforce.instance", "https://acme.my.salesforce.com")
    }

    fn issues(config: &ConnectorConfig) -> Vec<(String, String)> {
        match SalesforceConfig::parse(config) {
            Ok(_) => vec![],
            Err(issues) => issues.into_iter().map(|i| (i.key.to_string(), i.message.to_string())).collect(),
        }
    }

    #[test]
    fn the_password_flow_is_refused_with_its_retirement_date_and_what_to_use() {
        let found = issues(&base().with("salesforce.grant.type", "PASSWORD"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "salesforce.grant.type");
        for needle in ["2027-02-20", "JWT_BEARER", "CLIENT_CREDENTIALS"] {
            assert!(found[0].1.contains(needle), "{} lacks {needle}", found[0].1);
        }
    }

    #[test]
    fn client_credentials_with_upsert_by_external_id_parses() {
        let config = SalesforceConfig::parse(
            &base()
                .with("salesforce.grant.type", "client_credentials")
                .with("salesforce.consumer.secret", "s3cret")
                .with("salesforce.sink.object.operation", "upsert")
                .with("salesforce.use.custom.id.field", "true")
                .with("salesforce.custom.id.field.name", "Customer_Id__c")
                .with("salesforce.field.mapping", "uid:Customer_Id__c, email:Email, account:Account.Code__c"),
        )
        .unwrap();
        assert_eq!(config.matching, Matching::External("Customer_Id__c".into()));
        assert_eq!(config.renames[2], ("account".to_string(), "Account.Code__c".to_string()));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn each_missing_piece_is_blamed_on_its_key() {
        let found = issues(
            &base().with("salesforce.grant.type", "JWT_BEARER").with("salesforce.sink.object.operation", "upsert"),
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["salesforce.username", "salesforce.jwt.private.key", "salesforce.sink.object.operation"]);
        let found = issues(
            &base()
                .with("salesforce.grant.type", "CLIENT_CREDENTIALS")
                .with("salesforce.use.custom.id.field", "true")
                .with("salesforce.version", "45.0"),
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["salesforce.version"], "{found:?}");
    }

    #[test]
    fn a_keystore_is_refused_with_how_to_convert_it() {
        let found = issues(
            &base()
                .with("salesforce.grant.type", "CLIENT_CREDENTIALS")
                .with("salesforce.consumer.secret", "x")
                .with("salesforce.jwt.keystore.path", "/etc/ks.jks"),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "salesforce.jwt.keystore.path");
        assert!(found[0].1.contains("openssl pkcs12"));
    }

    #[test]
    fn a_bad_pem_key_is_blamed_on_the_key() {
        let found = issues(
            &base()
                .with("salesforce.grant.type", "JWT_BEARER")
                .with("salesforce.username", "integration@acme.com")
                .with("salesforce.jwt.private.key", "not a key"),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "salesforce.jwt.private.key");
        assert!(!found[0].1.contains("not a key"), "the secret is not echoed");
    }
}
