//! hybris-source over TLS to a real PostgreSQL (dev/services starts it with
//! `ssl=on` and a certificate for `localhost` from the throwaway CA in
//! DB_CA_FILE): the same records as in clear text, and each usual mistake
//! refused with an error naming the URL option to fix.

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    thread,
};

use common::*;
use connector_api::{ConnectorConfig, ErrorKind, Host, SourceConnector};
use sluice_hybris_source::HybrisSource;

fn ca_file() -> String {
    std::env::var("DB_CA_FILE").unwrap_or_else(|_| {
        panic!("DB_CA_FILE is not set: run the tests with `eval \"$(dev/services env)\"` (see dev/services)")
    })
}

const UNRELATED_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/unrelated-ca.pem");

/// The test database's URL with TLS options; `by_name` connects as
/// `localhost` (the name in the server's certificate) at 127.0.0.1.
fn tls_url(db: &TestDb, by_name: bool, options: &str) -> String {
    let url = if by_name { db.url.replacen("@127.0.0.1:", "@localhost:", 1) } else { db.url.clone() };
    assert!(!url.contains('?'), "PG_URL has no query: {url}");
    let hostaddr = if by_name { "hostaddr=127.0.0.1&" } else { "" };
    format!("{url}?{hostaddr}{options}")
}

fn records(config: &ConnectorConfig) -> Vec<serde_json::Value> {
    let mut task = task(config, &[]);
    drain(&mut task, 100)
        .iter()
        .map(|r| serde_json::json!({"key": key(r), "value": value(r), "offset": offset(r)}))
        .collect()
}

/// Whether the connector's session to this database is encrypted, as the
/// server sees it.
fn connector_session_uses_tls(db: &mut TestDb) -> bool {
    let row = db
        .client
        .query_one(
            // The newest session: an earlier task's may not have ended yet.
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
             WHERE a.application_name = 'sluice-hybris-source' AND a.datname = current_database() \
             ORDER BY a.backend_start DESC LIMIT 1",
            &[],
        )
        .unwrap_or_else(|e| panic!("pg_stat_ssl: {e}"));
    row.get(0)
}

fn issues(config: &ConnectorConfig) -> Vec<(String, String)> {
    HybrisSource.validate(config).into_iter().map(|i| (i.key.to_string(), i.message.to_string())).collect()
}

/// The one issue of a config, which must be on hybris.jdbc.url.
fn url_issue(config: &ConnectorConfig) -> String {
    let found = issues(config);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "hybris.jdbc.url", "{found:?}");
    found[0].1.clone()
}

/// A running task with this config fails (Fatal, not retried forever) with
/// the same message validate gives.
fn task_fails(config: &ConnectorConfig) -> String {
    let mut task = HybrisSource.create_task(config, Host::stderr()).unwrap_or_else(|e| panic!("create_task: {e}"));
    let err = match task.start(&[]).and_then(|()| task.poll(100)) {
        Ok(got) => panic!("the task must fail, it polled {} records", got.len()),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Fatal, "{err}");
    err.to_string()
}

#[test]
fn verified_tls_gives_the_same_records_as_clear_text_and_is_really_encrypted() {
    let mut db = TestDb::new("tls_same", true);
    let plain = records(&db.config("Customer"));
    assert_eq!(plain.len(), 5, "the sample data's customers: {plain:?}");

    let ca = ca_file();
    for options in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        // pgjdbc's spelling: ssl=true alone means verify-full.
        format!("ssl=true&sslrootcert={ca}"),
    ] {
        let config = db.config("Customer").with("hybris.jdbc.url", tls_url(&db, true, &options));
        assert_eq!(issues(&config), vec![], "{options}");
        let mut task = task(&config, &[]);
        let got: Vec<_> = drain(&mut task, 100)
            .iter()
            .map(|r| serde_json::json!({"key": key(r), "value": value(r), "offset": offset(r)}))
            .collect();
        assert_eq!(got, plain, "{options}");
        assert!(connector_session_uses_tls(&mut db), "{options}: the session is encrypted");
    }
}

#[test]
fn weaker_modes_encrypt_without_checking_the_host_name_or_the_certificate() {
    let mut db = TestDb::new("tls_modes", true);
    let plain = records(&db.config("Customer"));
    let ca = ca_file();
    for (options, encrypted) in [
        // 127.0.0.1 is not in the certificate: verify-ca checks the CA only.
        (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        ("sslmode=require".to_string(), true),
        ("sslmode=prefer".to_string(), true),
        ("sslmode=disable".to_string(), false),
    ] {
        let config = db.config("Customer").with("hybris.jdbc.url", tls_url(&db, false, &options));
        let mut task = task(&config, &[]);
        let got: Vec<_> = drain(&mut task, 100)
            .iter()
            .map(|r| serde_json::json!({"key": key(r), "value": value(r), "offset": offset(r)}))
            .collect();
        assert_eq!(got, plain, "{options}");
        assert_eq!(connector_session_uses_tls(&mut db), encrypted, "{options}");
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused_naming_sslrootcert() {
    let db = TestDb::new("tls_wrong_ca", false);
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = tls_url(&db, true, &format!("sslmode={mode}&sslrootcert={UNRELATED_CA}"));
        let config = db.config("Customer").with("hybris.jdbc.url", url);
        let why = url_issue(&config);
        assert!(
            why.contains(&format!(
                "sslmode={mode}: the server's certificate is not trusted by the CA in sslrootcert={UNRELATED_CA}"
            )) && why.contains("set sslrootcert to the PEM file of the CA"),
            "{why}"
        );
        assert!(task_fails(&config).contains("sslrootcert"), "{mode}");
    }
}

#[test]
fn a_host_name_the_certificate_does_not_hold_fails_verify_full_naming_verify_ca() {
    let db = TestDb::new("tls_wrong_name", false);
    let url = tls_url(&db, false, &format!("sslmode=verify-full&sslrootcert={}", ca_file()));
    let config = db.config("Customer").with("hybris.jdbc.url", url);
    let why = url_issue(&config);
    assert!(
        why.contains("sslmode=verify-full: the server's certificate is not valid for the host in the URL")
            && why.contains("sslmode=verify-ca"),
        "{why}"
    );
    assert!(task_fails(&config).contains("not valid for the host"));
}

#[test]
fn a_ca_file_that_is_missing_or_not_pem_is_named() {
    let db = TestDb::new("tls_bad_file", false);
    let missing = "/nonexistent/sluice-ca.pem";
    let config = db
        .config("Customer")
        .with("hybris.jdbc.url", tls_url(&db, true, &format!("sslmode=verify-full&sslrootcert={missing}")));
    let why = url_issue(&config);
    assert!(why.contains(&format!("sslrootcert={missing}: cannot read the CA certificates")), "{why}");

    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hybris-schema.sql");
    let config = db
        .config("Customer")
        .with("hybris.jdbc.url", tls_url(&db, true, &format!("sslmode=verify-full&sslrootcert={not_pem}")));
    let why = url_issue(&config);
    assert!(why.contains(&format!("sslrootcert={not_pem} holds no usable PEM certificate")), "{why}");
}

/// A PostgreSQL server with `ssl=off` answers the SSLRequest (length 8,
/// code 80877103) with the single byte `N` (protocol docs, "SSL Session
/// Encryption"). No server of dev/services runs without TLS, so this
/// stand-in answers exactly that, for every connection.
fn server_without_tls() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("local_addr: {e}"));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 8];
            if stream.read_exact(&mut request).is_ok() && request == [0, 0, 0, 8, 4, 210, 22, 47] {
                let _ = stream.write_all(b"N");
                // The client hangs up; drain until it does.
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
    });
    port
}

#[test]
fn a_server_without_tls_fails_sslmode_require_naming_the_fallbacks() {
    let port = server_without_tls();
    let config = ConnectorConfig::new()
        .with("hybris.mode", "jdbc")
        .with("hybris.jdbc.url", format!("postgres://postgres@127.0.0.1:{port}/hybris?sslmode=require"))
        .with("hybris.item.types", "Customer");
    let why = url_issue(&config);
    assert!(
        why.contains("sslmode=require asks for TLS but the PostgreSQL server does not offer it")
            && why.contains("sslmode=prefer"),
        "{why}"
    );
    assert!(task_fails(&config).contains("does not offer it"));
}

#[test]
fn tls_settings_not_supported_yet_are_refused_by_name() {
    let config = ConnectorConfig::new()
        .with("hybris.mode", "jdbc")
        .with("hybris.jdbc.url", "postgres://postgres@127.0.0.1:1/hybris?sslmode=verify-full&sslcert=/client.pem")
        .with("hybris.item.types", "Customer");
    let why = url_issue(&config);
    assert!(why.contains("sslcert=/client.pem") && why.contains("remove sslcert"), "{why}");
}
