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

/// TLS options of MySQL/MariaDB URLs, refused until the MySQL half speaks
/// TLS: by name, not left to a parse error about the option or, worse, to a
/// connection in clear text. The options are MySQL's and MariaDB's JDBC
/// drivers' (`useSSL`, `requireSSL`, `sslMode`) and the mysql crate's
/// (`root_cert_path`).
pub fn refuse_tls(url: &str) -> Result<(), ConnectFailure> {
    for (option, value) in options(url) {
        let asks = match option.to_ascii_lowercase().as_str() {
            "sslmode" => {
                !["disable", "disabled", "allow", "prefer", "preferred"].contains(&value.to_ascii_lowercase().as_str())
            }
            "ssl" | "usessl" | "requiressl" => value.eq_ignore_ascii_case("true"),
            "root_cert_path" => true,
            _ => false,
        };
        if asks {
            return Err(ConnectFailure::Url(format!(
                "{option}={value}: this connector does not speak TLS to MySQL/MariaDB yet; reach it over a private \
                 network or a TLS tunnel (e.g. stunnel) and remove {option} from the URL"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_asking_for_tls_is_refused_by_name_not_connected_in_clear_text_or_left_to_a_parse_error() {
        for url in [
            "mysql://h:3306/hybris?useSSL=true",
            "mysql://h:3306/hybris?sslMode=VERIFY_IDENTITY",
            "mysql://h:3306/hybris?root_cert_path=/etc/ca.pem",
        ] {
            let Err(ConnectFailure::Url(why)) = refuse_tls(url) else { panic!("{url} must be refused") };
            let option = url.split_once('?').and_then(|(_, q)| q.split('&').next_back()).unwrap_or_default();
            assert!(why.contains("TLS") && why.starts_with(option), "{why}");
        }
    }

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
}
