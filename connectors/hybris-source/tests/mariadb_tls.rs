//! hybris-source over TLS to a real MariaDB (dev/services starts it with
//! `--ssl-cert/--ssl-key/--ssl-ca`, a certificate for `localhost` from the
//! throwaway CA in DB_CA_FILE): the same records as in clear text under the
//! JDBC spellings users paste, and each usual mistake refused with an error
//! naming the URL option to fix.

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    thread,
};

use common::{
    mariadb::{admin, MyTestDb},
    *,
};
use connector_api::{ConnectorConfig, ErrorKind, Host, SourceConnector};
use mysql::prelude::Queryable;
use sluice_hybris_source::HybrisSource;

fn ca_file() -> String {
    std::env::var("DB_CA_FILE").unwrap_or_else(|_| {
        panic!("DB_CA_FILE is not set: run the tests with `eval \"$(dev/services env)\"` (see dev/services)")
    })
}

const UNRELATED_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/unrelated-ca.pem");

/// A user the server lets in over TLS only (`REQUIRE SSL`): a connection
/// as this user that succeeds was encrypted, as the server sees it.
struct TlsOnlyUser {
    name: String,
}

impl TlsOnlyUser {
    fn new(db: &MyTestDb) -> TlsOnlyUser {
        let name = format!("tls_{}", db.name.trim_start_matches("hyb_"));
        let mut admin = admin();
        admin.query_drop(format!("DROP USER IF EXISTS '{name}'@'127.0.0.1'")).unwrap();
        admin.query_drop(format!("CREATE USER '{name}'@'127.0.0.1' REQUIRE SSL")).unwrap();
        admin.query_drop(format!("GRANT ALL ON {}.* TO '{name}'@'127.0.0.1'", db.name)).unwrap();
        TlsOnlyUser { name }
    }
}

impl Drop for TlsOnlyUser {
    fn drop(&mut self) {
        let _ = admin().query_drop(format!("DROP USER IF EXISTS '{}'@'127.0.0.1'", self.name));
    }
}

/// The test database's URL as `user`, with TLS options; `by_name` connects
/// to `localhost` (the name in the server's certificate).
fn tls_url(db: &MyTestDb, user: &str, by_name: bool, options: &str) -> String {
    let (_, rest) = db.url.split_once('@').unwrap_or_else(|| panic!("MYSQL_URL has a user: {}", db.url));
    let rest = if by_name { rest.replacen("127.0.0.1:", "localhost:", 1) } else { rest.to_string() };
    assert!(!rest.contains('?'), "MYSQL_URL has no query: {rest}");
    format!("jdbc:mysql://{user}@{rest}?{options}")
}

fn records(config: &ConnectorConfig) -> Vec<serde_json::Value> {
    let mut task = task(config, &[]);
    drain(&mut task, 100)
        .iter()
        .map(|r| serde_json::json!({"key": key(r), "value": value(r), "offset": offset(r)}))
        .collect()
}

fn issues(config: &ConnectorConfig) -> Vec<(String, String)> {
    HybrisSource.validate(config).into_iter().map(|i| (i.key.to_string(), i.message.to_string())).collect()
}

fn url_issue(config: &ConnectorConfig) -> String {
    let found = issues(config);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "hybris.jdbc.url", "{found:?}");
    found[0].1.clone()
}

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
fn mariadb_over_tls_gives_the_same_records_as_clear_text_for_each_jdbc_spelling() {
    let db = MyTestDb::new("tls_same", true);
    let plain = records(&db.config("Customer"));
    assert_eq!(plain.len(), 5, "the sample data's customers: {plain:?}");
    let user = TlsOnlyUser::new(&db);

    // The premise: this user cannot get in without TLS.
    let clear = db.config("Customer").with("hybris.jdbc.url", tls_url(&db, &user.name, true, "sslMode=DISABLED"));
    let found = issues(&clear);
    assert!(found.iter().any(|(k, _)| k == "hybris.jdbc.user"), "REQUIRE SSL refuses clear text: {found:?}");

    let ca = ca_file();
    for (by_name, options) in [
        (true, format!("sslMode=VERIFY_IDENTITY&serverSslCert={ca}")),
        (true, format!("sslMode=verify-full&serverSslCert={ca}")),
        (true, format!("root_cert_path={ca}")),
        // 127.0.0.1 is not in the certificate: these check the CA only.
        (false, format!("sslMode=VERIFY_CA&serverSslCert={ca}")),
        (false, format!("useSSL=true&requireSSL=true&verifyServerCertificate=true&serverSslCert={ca}")),
        (false, "sslMode=REQUIRED".to_string()),
        (false, "sslMode=trust".to_string()),
        (false, "sslMode=PREFERRED".to_string()),
        (false, "useSSL=true".to_string()),
    ] {
        let config = db.config("Customer").with("hybris.jdbc.url", tls_url(&db, &user.name, by_name, &options));
        assert_eq!(issues(&config), vec![], "{options}");
        assert_eq!(records(&config), plain, "{options}");
    }
}

#[test]
fn mariadb_a_certificate_from_another_ca_is_refused_naming_server_ssl_cert() {
    let db = MyTestDb::new("tls_wrong_ca", false);
    for mode in ["VERIFY_IDENTITY", "VERIFY_CA", "REQUIRED"] {
        let url = tls_url(&db, "root", true, &format!("sslMode={mode}&serverSslCert={UNRELATED_CA}"));
        let config = db.config("Customer").with("hybris.jdbc.url", url);
        let why = url_issue(&config);
        assert!(
            why.contains(&format!(
                "sslMode={mode}: the server's certificate is not trusted by the CA in serverSslCert={UNRELATED_CA}"
            )) && why.contains("set serverSslCert to the PEM file of the CA"),
            "{why}"
        );
        assert!(task_fails(&config).contains("serverSslCert"), "{mode}");
    }
}

#[test]
fn mariadb_a_host_name_the_certificate_does_not_hold_fails_verify_identity_naming_verify_ca() {
    let db = MyTestDb::new("tls_wrong_name", false);
    let url = tls_url(&db, "root", false, &format!("sslMode=VERIFY_IDENTITY&serverSslCert={}", ca_file()));
    let config = db.config("Customer").with("hybris.jdbc.url", url);
    let why = url_issue(&config);
    assert!(
        why.contains("sslMode=VERIFY_IDENTITY: the server's certificate is not valid for the host in the URL")
            && why.contains("sslMode=VERIFY_CA"),
        "{why}"
    );
    assert!(task_fails(&config).contains("not valid for the host"));
}

#[test]
fn mariadb_a_ca_file_that_is_missing_or_a_java_key_store_is_named() {
    let db = MyTestDb::new("tls_bad_file", false);
    let missing = "/nonexistent/sluice-ca.pem";
    let config = db
        .config("Customer")
        .with("hybris.jdbc.url", tls_url(&db, "root", true, &format!("sslMode=VERIFY_CA&serverSslCert={missing}")));
    let why = url_issue(&config);
    assert!(why.contains(&format!("serverSslCert={missing}: cannot read the CA certificates")), "{why}");

    let config = db.config("Customer").with(
        "hybris.jdbc.url",
        tls_url(&db, "root", true, "sslMode=VERIFY_CA&trustCertificateKeyStoreUrl=file:/etc/truststore.jks"),
    );
    let why = url_issue(&config);
    assert!(why.contains("trustCertificateKeyStoreUrl") && why.contains("serverSslCert=/path/to/ca.pem"), "{why}");
}

/// A MySQL server without TLS: its initial handshake (protocol 10, the
/// documented "Protocol::HandshakeV10" layout) leaves CLIENT_SSL out of the
/// capability flags. No server of dev/services runs without TLS, so this
/// stand-in sends exactly that greeting to every connection; a client that
/// requires TLS hangs up on reading it.
fn server_without_tls() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("local_addr: {e}"));
    // LONG_PASSWORD | PROTOCOL_41 | TRANSACTIONS | SECURE_CONNECTION | PLUGIN_AUTH; no SSL (0x800).
    let caps: u32 = 0x1 | 0x200 | 0x2000 | 0x8000 | 0x8_0000;
    let mut body = vec![10u8];
    body.extend_from_slice(b"10.11.0-stand-in\0");
    body.extend_from_slice(&7u32.to_le_bytes());
    body.extend_from_slice(b"abcdefgh\0");
    body.extend_from_slice(&(caps as u16).to_le_bytes());
    body.push(45); // utf8mb4_general_ci
    body.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
    body.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    body.push(21);
    body.extend_from_slice(&[0; 10]);
    body.extend_from_slice(b"ijklmnopqrst\0");
    body.extend_from_slice(b"mysql_native_password\0");
    let mut packet = (body.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(&body);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if stream.write_all(&packet).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
    });
    port
}

#[test]
fn mariadb_a_server_without_tls_fails_ssl_mode_required_naming_the_fallbacks() {
    let port = server_without_tls();
    let config = ConnectorConfig::new()
        .with("hybris.mode", "jdbc")
        .with("hybris.jdbc.url", format!("jdbc:mysql://root@127.0.0.1:{port}/hybris?sslMode=REQUIRED"))
        .with("hybris.item.types", "Customer");
    let why = url_issue(&config);
    assert!(
        why.contains("sslMode=REQUIRED asks for TLS but the MySQL/MariaDB server does not offer it")
            && why.contains("sslMode=PREFERRED"),
        "{why}"
    );
    assert!(task_fails(&config).contains("does not offer it"));
}
