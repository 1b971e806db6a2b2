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

/// TLS to the database is not implemented: a URL asking for it is refused
/// by name, not left to a parse error about the option or, worse, to a
/// connection in clear text. The options are those of libpq and pgjdbc
/// (`sslmode`, `ssl`), MySQL's and MariaDB's JDBC drivers (`useSSL`,
/// `requireSSL`, `sslMode`) and the mysql crate (`root_cert_path`).
pub fn refuse_tls(url: &str) -> Result<(), ConnectFailure> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    for (option, value) in query.split('&').filter_map(|p| p.split_once('=')) {
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
                "{option}={value}: this connector does not speak TLS to the database yet; reach it over a private \
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
            "postgres://h:5432/hybris?sslmode=require",
            "postgresql://h/hybris?application_name=x&sslmode=verify-full",
            "postgres://h/hybris?ssl=true",
            "mysql://h:3306/hybris?useSSL=true",
            "mysql://h:3306/hybris?sslMode=VERIFY_IDENTITY",
            "mysql://h:3306/hybris?root_cert_path=/etc/ca.pem",
        ] {
            let Err(ConnectFailure::Url(why)) = refuse_tls(url) else { panic!("{url} must be refused") };
            let option = url.split_once('?').and_then(|(_, q)| q.split('&').next_back()).unwrap_or_default();
            assert!(why.contains("TLS") && why.starts_with(option), "{why}");
        }
    }
}
