//! The database URL: which database it names, the TLS options it must not
//! ask for, and why connecting failed. Both drivers' modules use these.

/// Why connecting failed, so `validate` can name the right key.
#[derive(Debug)]
pub enum ConnectFailure {
    /// Bad URL syntax or an unsupported database.
    Url(String),
    /// The server rejected the password (28P01).
    Password(String),
    /// The server rejected the user: unknown role, no login right (28000).
    User(String),
    /// The TLS handshake failed: no TLS on the server, an untrusted or
    /// misnamed certificate. Retrying cannot help.
    Tls(String),
    /// The server does not know the configured time zone.
    TimeZone(String),
    /// Unreachable, timed out, database missing, …
    Other(String),
}

impl ConnectFailure {
    pub fn message(&self) -> &str {
        match self {
            ConnectFailure::Url(m)
            | ConnectFailure::Password(m)
            | ConnectFailure::User(m)
            | ConnectFailure::Tls(m)
            | ConnectFailure::TimeZone(m)
            | ConnectFailure::Other(m) => m,
        }
    }
}

/// Which database a URL names (`jdbc:` prefix optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// The URL without `jdbc:` and the database it is for.
pub fn dialect(url: &str) -> Result<(&str, Dialect), ConnectFailure> {
    let url = url.trim();
    let url = url.strip_prefix("jdbc:").unwrap_or(url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((url, Dialect::Postgres))
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok((url, Dialect::MySql))
    } else {
        Err(ConnectFailure::Url(format!(
            "\"{url}\" is neither a PostgreSQL nor a MySQL/MariaDB URL: expected jdbc:postgresql://host:5432/database, \
             jdbc:mysql://host:3306/database or jdbc:mariadb://host:3306/database (the jdbc: prefix is optional)"
        )))
    }
}

/// How far the client checks the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt only: any certificate (libpq's `require`, `prefer`).
    Nothing,
    /// The chain must lead to the CA, whatever the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// A PEM file (`sslrootcert=/path`).
    File(String),
    /// The public web CAs (`sslrootcert=system`).
    System,
}

/// What the URL asks for on the wire, decided before any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPlan {
    /// Clear text (no option, `disable`).
    Plain,
    /// TLS, unless the server does not offer it (`allow`, `prefer`).
    Opportunistic,
    /// TLS or no connection.
    Required { verify: Verify, roots: Option<Roots>, option: String },
}

fn unsupported(option: &str, value: &str) -> ConnectFailure {
    ConnectFailure::Url(format!(
        "{option}={value}: this connector does not support this TLS setting of the database URL yet (client \
         certificates, key stores, custom factories); remove {option} from the URL, or reach the database over a TLS \
         tunnel (e.g. stunnel)"
    ))
}

/// The URL's query as (option, value) pairs, in order.
fn options(url: &str) -> Vec<(&str, &str)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect()
}

/// The URL without the named options (what the driver parses).
fn without(url: &str, drop: impl Fn(&str) -> bool) -> String {
    let Some((base, _)) = url.split_once('?') else { return url.to_string() };
    let kept: Vec<String> =
        options(url).into_iter().filter(|(k, _)| !drop(k)).map(|(k, v)| format!("{k}={v}")).collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

const PG_TLS_OPTIONS: [&str; 3] = ["sslmode", "sslrootcert", "ssl"];

/// A PostgreSQL URL's TLS options (libpq's and pgjdbc's names), and the URL
/// without them for the driver, which knows neither `verify-ca`,
/// `verify-full` nor `sslrootcert`. The meaning of each mode is in
/// docs/decisions/0021-hybris-database-tls.md.
pub fn postgres_tls(url: &str) -> Result<(String, TlsPlan), ConnectFailure> {
    let (mut mode, mut root, mut jdbc_ssl) = (None, None, false);
    for (option, value) in options(url) {
        match option.to_ascii_lowercase().as_str() {
            "sslmode" => mode = Some((option.to_string(), value.to_string())),
            "sslrootcert" => root = Some((option.to_string(), value.to_string())),
            // pgjdbc: ssl=true without sslmode means verify-full.
            "ssl" => jdbc_ssl = value.eq_ignore_ascii_case("true"),
            "sslcert"
            | "sslkey"
            | "sslpassword"
            | "sslfactory"
            | "sslfactoryarg"
            | "sslcrl"
            | "sslhostnameverifier"
            | "sslpasswordcallback"
            | "sslnegotiation"
            | "sslcompression"
            | "sslsni" => return Err(unsupported(option, value)),
            _ => {}
        }
    }
    let stripped = without(url, |k| PG_TLS_OPTIONS.iter().any(|o| o.eq_ignore_ascii_case(k)));
    let (option, value) = match (mode, jdbc_ssl) {
        (Some(m), _) => m,
        (None, true) => ("ssl".to_string(), "true".to_string()),
        (None, false) => ("sslmode".to_string(), String::new()),
    };
    let roots =
        root.as_ref().map(
            |(_, v)| {
                if v.eq_ignore_ascii_case("system") {
                    Roots::System
                } else {
                    Roots::File(v.clone())
                }
            },
        );
    let shown = if value.is_empty() { "no sslmode".to_string() } else { format!("{option}={value}") };
    let plan = match value.to_ascii_lowercase().as_str() {
        "" | "disable" | "allow" | "prefer" if root.is_some() => {
            return Err(ConnectFailure::Url(format!(
                "sslrootcert is set but with {shown} the CA would not be used: add sslmode=verify-full (CA and \
                 host name checked) or sslmode=verify-ca (CA only) to the URL"
            )))
        }
        "" | "disable" => TlsPlan::Plain,
        "allow" | "prefer" => TlsPlan::Opportunistic,
        // libpq: require with a root certificate checks it as verify-ca.
        "require" if roots.is_some() => TlsPlan::Required { verify: Verify::Chain, roots, option: shown },
        "require" => TlsPlan::Required { verify: Verify::Nothing, roots: None, option: shown },
        "verify-ca" | "verify-full" | "true" => {
            let verify = if value.eq_ignore_ascii_case("verify-ca") { Verify::Chain } else { Verify::Full };
            if roots.is_none() {
                return Err(ConnectFailure::Url(format!(
                    "{shown} checks the server certificate but the URL names no CA: add sslrootcert=/path/to/ca.pem \
                     (the CA that signed the server's certificate, PEM) or sslrootcert=system for the public web CAs"
                )));
            }
            TlsPlan::Required { verify, roots, option: shown }
        }
        _ => {
            return Err(ConnectFailure::Url(format!(
                "{option}={value} is not a PostgreSQL sslmode: use disable, allow, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    Ok((stripped, plan))
}

/// TLS options the mysql crate would parse itself or reject as unknown;
/// they are taken out and applied through [`TlsPlan`].
const MYSQL_TLS_OPTIONS: [&str; 10] = [
    "sslmode",
    "usessl",
    "ssl",
    "requiressl",
    "verifyservercertificate",
    "trustservercertificate",
    "serversslcert",
    "root_cert_path",
    "danger_skip_domain_validation",
    "danger_accept_invalid_certs",
];

fn is_true(value: &str) -> bool {
    value.eq_ignore_ascii_case("true") || value == "1" || value.eq_ignore_ascii_case("yes")
}

/// A MySQL/MariaDB URL's TLS options, by the names users paste: MySQL
/// Connector/J's (`sslMode`, `useSSL`, `requireSSL`,
/// `verifyServerCertificate`), MariaDB Connector/J's (`sslMode=trust|
/// verify-ca|verify-full`, `serverSslCert`, `trustServerCertificate`) and
/// the mysql crate's (`root_cert_path`, `danger_*`); and the URL without
/// them. Meanings: docs/decisions/0021-hybris-database-tls.md.
pub fn mysql_tls(url: &str) -> Result<(String, TlsPlan), ConnectFailure> {
    let mut mode = None;
    let (mut use_ssl, mut require_ssl, mut verify_cert, mut trust) = (None, None, None, None);
    let (mut ca, mut crate_ca, mut skip_domain, mut accept_any) = (None, None, None, None);
    for (option, value) in options(url) {
        let pair = || Some((option.to_string(), value.to_string()));
        match option.to_ascii_lowercase().as_str() {
            "sslmode" => mode = pair(),
            "usessl" | "ssl" => use_ssl = pair(),
            "requiressl" => require_ssl = pair(),
            "verifyservercertificate" => verify_cert = pair(),
            "trustservercertificate" => trust = pair(),
            "serversslcert" => ca = pair(),
            "root_cert_path" => crate_ca = pair(),
            "danger_skip_domain_validation" => skip_domain = pair(),
            "danger_accept_invalid_certs" => accept_any = pair(),
            "trustcertificatekeystoreurl" => {
                return Err(ConnectFailure::Url(format!(
                    "{option}={value}: Java key stores are not read here: export the CA certificate as PEM \
                     (keytool -exportcert -rfc -keystore <store> -alias <ca>) and give its path as \
                     serverSslCert=/path/to/ca.pem instead"
                )))
            }
            "trustcertificatekeystoretype"
            | "trustcertificatekeystorepassword"
            | "clientcertificatekeystoreurl"
            | "clientcertificatekeystoretype"
            | "clientcertificatekeystorepassword"
            | "keystore"
            | "keystorepassword"
            | "keystoretype"
            | "enabledsslciphersuites"
            | "enabledtlsprotocols"
            | "fallbacktosystemtruststore"
            | "fallbacktosystemkeystore"
            | "cert_chain_path"
            | "priv_key_path"
            | "pkcs12_path"
            | "pkcs12_pass"
            | "cipher_suites" => return Err(unsupported(option, value)),
            _ => {}
        }
    }
    let stripped = without(url, |k| MYSQL_TLS_OPTIONS.iter().any(|o| o.eq_ignore_ascii_case(k)));
    let shown = |(o, v): &(String, String)| format!("{o}={v}");
    let set = |o: &Option<(String, String)>| o.as_ref().is_some_and(|(_, v)| is_true(v));
    let ca = match (&ca, &crate_ca) {
        (Some(a), Some(b)) if a.1 != b.1 => {
            return Err(ConnectFailure::Url(format!(
                "{} and {} name different CA files: keep one of them",
                shown(a),
                shown(b)
            )))
        }
        (Some(c), _) | (None, Some(c)) => Some(c.clone()),
        (None, None) => None,
    };
    if let Some((o, v)) = &ca {
        if v.starts_with("classpath:") || v.starts_with("-----BEGIN") {
            return Err(ConnectFailure::Url(format!(
                "{o}: only a file path is read here (not a classpath resource or inline certificate): save the CA \
                 certificate as PEM and give its path, {o}=/path/to/ca.pem"
            )));
        }
    }
    let required = |verify: Verify, option: String| TlsPlan::Required {
        verify,
        roots: Some(
            ca.as_ref().map_or(Roots::System, |(_, v)| Roots::File(v.strip_prefix("file:").unwrap_or(v).to_string())),
        ),
        option,
    };
    // Like the mysql client (and libpq's require): a CA given with REQUIRED
    // is checked, as VERIFY_CA.
    let encrypted =
        |option: String| if ca.is_some() { required(Verify::Chain, option) } else { required(Verify::Nothing, option) };
    let plan = if let Some(m) = &mode {
        match m.1.to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" | "disable" => TlsPlan::Plain,
            "preferred" | "prefer" => TlsPlan::Opportunistic,
            "required" | "require" | "trust" => encrypted(shown(m)),
            "verify_ca" => required(Verify::Chain, shown(m)),
            "verify_identity" | "verify_full" => required(Verify::Full, shown(m)),
            _ => {
                return Err(ConnectFailure::Url(format!(
                    "{} is not an SSL mode: use DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY \
                     (MariaDB's disable, trust, verify-ca and verify-full are understood too)",
                    shown(m)
                )))
            }
        }
    } else if use_ssl.as_ref().is_some_and(|(_, v)| !is_true(v)) {
        TlsPlan::Plain
    } else if set(&verify_cert) {
        // Connector/J: verifyServerCertificate=true is VERIFY_CA.
        required(Verify::Chain, verify_cert.as_ref().map(shown).unwrap_or_default())
    } else if set(&require_ssl) || set(&trust) {
        encrypted(require_ssl.as_ref().filter(|_| set(&require_ssl)).or(trust.as_ref()).map(shown).unwrap_or_default())
    } else if set(&use_ssl) {
        // Connector/J 8: useSSL=true without sslMode is PREFERRED.
        TlsPlan::Opportunistic
    } else if set(&accept_any) {
        required(Verify::Nothing, accept_any.as_ref().map(shown).unwrap_or_default())
    } else if set(&skip_domain) {
        required(Verify::Chain, skip_domain.as_ref().map(shown).unwrap_or_default())
    } else if let Some(c) = &crate_ca {
        // The mysql crate: root_cert_path alone turns on verified TLS.
        required(Verify::Full, shown(c))
    } else {
        TlsPlan::Plain
    };
    if let (Some(c), TlsPlan::Plain | TlsPlan::Opportunistic) = (&ca, &plan) {
        return Err(ConnectFailure::Url(format!(
            "{} is set but the SSL mode does not check the server with it: add sslMode=VERIFY_IDENTITY (CA and host \
             name checked) or sslMode=VERIFY_CA (CA only) to the URL",
            shown(c)
        )));
    }
    Ok((stripped, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(url: &str) -> TlsPlan {
        match postgres_tls(url) {
            Ok((_, plan)) => plan,
            Err(e) => panic!("{url}: {}", e.message()),
        }
    }

    fn refused(url: &str) -> String {
        match postgres_tls(url) {
            Ok(p) => panic!("{url} must be refused, got {p:?}"),
            Err(e) => e.message().to_string(),
        }
    }

    #[test]
    fn each_sslmode_means_what_libpq_users_expect() {
        let file = Some(Roots::File("/ca.pem".into()));
        assert_eq!(plan("postgres://h/db"), TlsPlan::Plain);
        assert_eq!(plan("postgres://h/db?sslmode=disable"), TlsPlan::Plain);
        assert_eq!(plan("postgres://h/db?sslmode=allow"), TlsPlan::Opportunistic);
        assert_eq!(plan("postgres://h/db?sslmode=prefer"), TlsPlan::Opportunistic);
        let TlsPlan::Required { verify: Verify::Nothing, roots: None, .. } = plan("postgres://h/db?sslmode=require")
        else {
            panic!("require encrypts without checking")
        };
        let TlsPlan::Required { verify: Verify::Chain, roots, .. } =
            plan("postgres://h/db?sslmode=require&sslrootcert=/ca.pem")
        else {
            panic!("require with a CA checks the chain, as libpq does")
        };
        assert_eq!(roots, file);
        let TlsPlan::Required { verify: Verify::Chain, .. } =
            plan("postgres://h/db?sslmode=verify-ca&sslrootcert=/ca.pem")
        else {
            panic!("verify-ca")
        };
        let TlsPlan::Required { verify: Verify::Full, roots, option } =
            plan("postgres://h/db?sslmode=VERIFY-FULL&sslrootcert=system")
        else {
            panic!("verify-full")
        };
        assert_eq!((roots, option.as_str()), (Some(Roots::System), "sslmode=VERIFY-FULL"));
        // pgjdbc: ssl=true alone is verify-full.
        let TlsPlan::Required { verify: Verify::Full, .. } =
            plan("jdbc:postgresql://h/db?ssl=true&sslrootcert=/ca.pem")
        else {
            panic!("ssl=true")
        };
        assert_eq!(plan("postgres://h/db?ssl=false"), TlsPlan::Plain);
    }

    #[test]
    fn the_driver_gets_the_url_without_the_tls_options_it_does_not_know() {
        let (url, _) =
            postgres_tls("postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=/ca.pem&hostaddr=127.0.0.1")
                .unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(url, "postgres://u@h:5432/db?hostaddr=127.0.0.1");
        let (url, _) = postgres_tls("postgres://u@h/db?ssl=true&sslrootcert=/ca.pem")
            .unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(url, "postgres://u@h/db");
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused_naming_the_option_to_fix() {
        let why = refused("postgres://h/db?sslmode=verify-full");
        assert!(why.contains("sslrootcert=/path/to/ca.pem") && why.starts_with("sslmode=verify-full"), "{why}");
        let why = refused("postgres://h/db?sslrootcert=/ca.pem");
        assert!(why.contains("sslmode=verify-full"), "{why}");
        let why = refused("postgres://h/db?sslmode=prefer&sslrootcert=/ca.pem");
        assert!(why.contains("with sslmode=prefer the CA"), "{why}");
        let why = refused("postgres://h/db?sslmode=strict");
        assert!(why.starts_with("sslmode=strict is not") && why.contains("verify-full"), "{why}");
        let why = refused("postgres://h/db?sslmode=require&sslcert=/client.pem");
        assert!(why.starts_with("sslcert=/client.pem") && why.contains("remove sslcert"), "{why}");
    }

    fn my(url: &str) -> TlsPlan {
        match mysql_tls(url) {
            Ok((_, plan)) => plan,
            Err(e) => panic!("{url}: {}", e.message()),
        }
    }

    fn required(verify: Verify, roots: Option<Roots>, option: &str) -> TlsPlan {
        TlsPlan::Required { verify, roots, option: option.to_string() }
    }

    #[test]
    fn mysql_and_mariadb_jdbc_ssl_settings_map_to_what_their_drivers_do() {
        let ca = || Some(Roots::File("/ca.pem".into()));
        let public = || Some(Roots::System);
        assert_eq!(my("mysql://h/db"), TlsPlan::Plain);
        assert_eq!(my("jdbc:mysql://h/db?useSSL=false&characterEncoding=utf8"), TlsPlan::Plain);
        assert_eq!(my("mysql://h/db?sslMode=DISABLED"), TlsPlan::Plain);
        assert_eq!(my("mysql://h/db?sslMode=PREFERRED"), TlsPlan::Opportunistic);
        assert_eq!(my("mysql://h/db?useSSL=true"), TlsPlan::Opportunistic);
        assert_eq!(my("mysql://h/db?sslMode=REQUIRED"), required(Verify::Nothing, public(), "sslMode=REQUIRED"));
        assert_eq!(my("mariadb://h/db?sslMode=trust"), required(Verify::Nothing, public(), "sslMode=trust"));
        assert_eq!(
            my("mysql://h/db?useSSL=true&requireSSL=true"),
            required(Verify::Nothing, public(), "requireSSL=true")
        );
        assert_eq!(
            my("mysql://h/db?sslMode=REQUIRED&serverSslCert=/ca.pem"),
            required(Verify::Chain, ca(), "sslMode=REQUIRED"),
            "a CA given with REQUIRED is checked, as the mysql client does"
        );
        assert_eq!(
            my("mysql://h/db?useSSL=true&verifyServerCertificate=true&serverSslCert=file:/ca.pem"),
            required(Verify::Chain, ca(), "verifyServerCertificate=true")
        );
        assert_eq!(
            my("mysql://h/db?sslMode=VERIFY_CA&serverSslCert=/ca.pem"),
            required(Verify::Chain, ca(), "sslMode=VERIFY_CA")
        );
        assert_eq!(
            my("mariadb://h/db?sslMode=verify-full&serverSslCert=/ca.pem"),
            required(Verify::Full, ca(), "sslMode=verify-full")
        );
        assert_eq!(
            my("mysql://h/db?sslMode=VERIFY_IDENTITY"),
            required(Verify::Full, public(), "sslMode=VERIFY_IDENTITY"),
            "without a CA file, the public CAs (Connector/J: the JVM's trust store)"
        );
        assert_eq!(my("mysql://h/db?root_cert_path=/ca.pem"), required(Verify::Full, ca(), "root_cert_path=/ca.pem"));
        assert_eq!(
            my("mysql://h/db?root_cert_path=/ca.pem&danger_skip_domain_validation=true"),
            required(Verify::Chain, ca(), "danger_skip_domain_validation=true")
        );
    }

    #[test]
    fn the_mysql_driver_gets_the_url_without_the_jdbc_ssl_options() {
        let (url, _) =
            mysql_tls("mysql://u@h:3306/db?useSSL=true&sslMode=VERIFY_CA&serverSslCert=/ca.pem&compress=true")
                .unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(url, "mysql://u@h:3306/db?compress=true");
    }

    #[test]
    fn mysql_tls_settings_that_cannot_work_are_refused_naming_the_option() {
        let refused = |url: &str| match mysql_tls(url) {
            Ok(p) => panic!("{url} must be refused, got {p:?}"),
            Err(e) => e.message().to_string(),
        };
        let why = refused("mysql://h/db?sslMode=STRICT");
        assert!(why.starts_with("sslMode=STRICT is not an SSL mode") && why.contains("VERIFY_IDENTITY"), "{why}");
        let why = refused("mysql://h/db?serverSslCert=/ca.pem");
        assert!(why.starts_with("serverSslCert=/ca.pem is set") && why.contains("sslMode=VERIFY_IDENTITY"), "{why}");
        let why = refused("mysql://h/db?sslMode=VERIFY_CA&trustCertificateKeyStoreUrl=file:/ts.jks");
        assert!(why.contains("keytool") && why.contains("serverSslCert=/path/to/ca.pem"), "{why}");
        let why = refused("mysql://h/db?sslMode=VERIFY_CA&serverSslCert=classpath:ca.pem");
        assert!(why.starts_with("serverSslCert: only a file path"), "{why}");
        let why = refused("mysql://h/db?sslMode=VERIFY_CA&cert_chain_path=/c.pem");
        assert!(why.starts_with("cert_chain_path=/c.pem") && why.contains("remove cert_chain_path"), "{why}");
    }
}
