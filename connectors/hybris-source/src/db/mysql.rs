//! MySQL/MariaDB's half of the SQL layer ([`crate::db`] dispatches to it):
//! the same keyset queries as PostgreSQL's, written so that both databases
//! give identical rows for identical data.
//!
//! - Timestamps: the cursor text comes from `DATE_FORMAT(…, '%Y-%m-%dT%H:%i:%s.%f')`,
//!   the very format PostgreSQL's `to_char` gives; attribute timestamps in the
//!   row document are formatted like PostgreSQL's `row_to_json` (fraction
//!   without trailing zeros), decimals keep their text, so the JSON is the same.
//! - The keyset predicate is the expanded form `ts >= ? AND (ts > ? OR pk > ?)`
//!   (why: docs/decisions/hybris-mysql-expanded-keyset-predicate.md).
//! - The record timestamp is computed from the stored value, not through the
//!   session zone (`UNIX_TIMESTAMP` would shift it), as PostgreSQL's `extract`
//!   does on a timestamp without zone.

use mysql::{prelude::Queryable, Column, Conn, DriverError, Opts, OptsBuilder, Params, Row, SslOpts, Value};

use super::{
    tls::{read_ca_file, tls_advice, tls_trouble, TlsTrouble},
    url::{mysql_tls, ConnectFailure, Dialect, Roots, TlsPlan, Verify},
};
use crate::{
    config::JdbcSettings,
    rows::{ChangeRow, Cursor, DeletionRow},
    schema::ItemMapping,
};

const TS_FORMAT: &str = "'%Y-%m-%dT%H:%i:%s.%f'";

/// A cursor timestamp as a DATETIME, whatever the server's date-format settings.
fn ts_param() -> String {
    format!("STR_TO_DATE(?, {TS_FORMAT})")
}

/// Milliseconds since the epoch of a stored (zone-less) DATETIME, rounded
/// like PostgreSQL's `(extract(epoch …) * 1000)::int8`.
fn epoch_ms(column: &str) -> String {
    format!("CAST(ROUND(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column}) / 1000) AS SIGNED)")
}

pub struct MyDb {
    conn: Conn,
}

/// `mysql://`, `mariadb://`, `jdbc:mysql://`, `jdbc:mariadb://` → options
/// (the `jdbc:` prefix is already gone).
fn opts(url: &str) -> Result<(Opts, TlsPlan), ConnectFailure> {
    let (url, plan) = mysql_tls(url)?;
    let rest = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
        .ok_or_else(|| ConnectFailure::Url(format!("\"{url}\" is not a MySQL/MariaDB URL")))?;
    let opts = Opts::from_url(&format!("mysql://{rest}")).map_err(|e| {
        ConnectFailure::Url(format!(
            "cannot parse the URL: {e} (expected jdbc:mysql://host:3306/database or mysql://user@host:3306/database)"
        ))
    })?;
    Ok((opts, plan))
}

/// The driver's TLS settings for a plan. The CA file is read here first so
/// that a wrong path is named as such, not reported as a failed connection.
fn ssl_opts(plan: &TlsPlan) -> Result<Option<SslOpts>, ConnectFailure> {
    Ok(match plan {
        TlsPlan::Plain => None,
        // PREFERRED checks nothing (as the MySQL client and Connector/J).
        TlsPlan::Opportunistic => Some(SslOpts::default().with_danger_accept_invalid_certs(true)),
        TlsPlan::Required { verify, roots, .. } => {
            let path = match roots {
                Some(Roots::File(path)) if *verify != Verify::Nothing => {
                    read_ca_file("serverSslCert", path)?;
                    Some(std::path::PathBuf::from(path))
                }
                _ => None,
            };
            Some(
                SslOpts::default()
                    .with_root_cert_path(path)
                    .with_danger_skip_domain_validation(*verify == Verify::Chain)
                    .with_danger_accept_invalid_certs(*verify == Verify::Nothing),
            )
        }
    })
}

fn mysql_tls_trouble(e: &mysql::Error) -> Option<TlsTrouble> {
    match e {
        mysql::Error::DriverError(DriverError::TlsNotSupported) => Some(TlsTrouble::NotOffered),
        // mysql::Error names its inner errors through the old `cause`, not
        // `source`: look inside by hand. A failed handshake is an I/O error
        // carrying the rustls error.
        mysql::Error::CodecError(e) => tls_trouble(e),
        mysql::Error::IoError(e) => tls_trouble(e),
        mysql::Error::TlsError(e) => tls_trouble(e),
        _ => None,
    }
}

/// The server's code and message when there is one.
pub fn describe(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(m) => format!("{} ({}, SQLSTATE {})", m.message, m.code, m.state),
        other => other.to_string(),
    }
}

/// Whether an error is worth retrying: the connection or the server is
/// briefly unavailable, or a lock conflict, rather than a mistake.
pub fn is_transient(e: &mysql::Error) -> bool {
    use mysql::DriverError::*;
    match e {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) => true,
        mysql::Error::DriverError(d) => {
            matches!(d, ConnectTimeout | CouldNotConnect(_) | PacketOutOfSync | UnexpectedPacket | Timeout)
        }
        mysql::Error::MySqlError(m) => {
            m.state.starts_with("08") // connection exception
                || m.state.starts_with("40") // transaction rollback (deadlock)
                || matches!(
                    m.code,
                    1040 // too many connections
                    | 1053 // server shutdown in progress
                    | 1152..=1161 // aborted connection, network read/write errors
                    | 1205 // lock wait timeout
                    | 1213 // deadlock
                    | 1317 // query interrupted
                    | 1927 // MariaDB: connection killed
                    | 1969 // MariaDB: max_statement_time exceeded
                    | 2006 // server has gone away
                    | 2013 // lost connection during query
                    | 3024 // MySQL: max_execution_time exceeded
                )
        }
        _ => false,
    }
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Takes one column's value out of a row (NULL past its end), leaving NULL.
fn cell(values: &mut [Value], i: usize) -> Value {
    values.get_mut(i).map(|v| std::mem::replace(v, Value::NULL)).unwrap_or(Value::NULL)
}

/// A number the query selects (pk, epoch ms); anything else is a driver
/// value error (not transient: the table's column is not what Hybris has).
fn required_int(values: &[Value], i: usize) -> Result<i64, mysql::Error> {
    values
        .get(i)
        .and_then(int)
        .ok_or_else(|| mysql::Error::FromValueError(values.get(i).cloned().unwrap_or(Value::NULL)))
}

/// `.123` of 123000 µs, nothing for 0: PostgreSQL's fraction in JSON.
fn fraction(us: u32) -> String {
    if us == 0 {
        return String::new();
    }
    format!(".{}", format!("{us:06}").trim_end_matches('0'))
}

/// PostgreSQL's `row_to_json` text of a timestamp: ISO with a `T`, the
/// fraction only when there is one, without trailing zeros.
fn pg_json_timestamp(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> String {
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}", fraction(us))
}

/// One column of the item row as the JSON PostgreSQL's `row_to_json` gives
/// for the same column there.
fn json_value(v: Value, column: &Column) -> serde_json::Value {
    use mysql::consts::ColumnType::*;
    use serde_json::Value as J;
    let kind = column.column_type();
    match v {
        Value::NULL => J::Null,
        Value::Int(i) => J::from(i),
        Value::UInt(u) => J::from(u),
        Value::Float(f) => serde_json::Number::from_f64(f64::from(f)).map_or(J::Null, J::Number),
        Value::Double(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        Value::Date(y, mo, d, ..) if kind == MYSQL_TYPE_DATE => J::String(format!("{y:04}-{mo:02}-{d:02}")),
        Value::Date(y, mo, d, h, mi, s, us) => J::String(pg_json_timestamp(y, mo, d, h, mi, s, us)),
        Value::Time(neg, days, h, mi, s, us) => J::String(format!(
            "{}{:02}:{mi:02}:{s:02}{}",
            if neg { "-" } else { "" },
            days * 24 + u32::from(h),
            fraction(us)
        )),
        Value::Bytes(b) => match kind {
            // The decimal's text is a JSON number, as PostgreSQL writes numerics.
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
                let s = String::from_utf8_lossy(&b);
                serde_json::from_str::<serde_json::Number>(&s).map_or_else(|_| J::String(s.into_owned()), J::Number)
            }
            MYSQL_TYPE_JSON => serde_json::from_slice(&b).unwrap_or(J::Null),
            // Binary strings as PostgreSQL prints bytea.
            _ if column.character_set() == 63 && kind != MYSQL_TYPE_BIT => {
                let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
                J::String(format!("\\x{hex}"))
            }
            _ => J::String(String::from_utf8_lossy(&b).into_owned()),
        },
    }
}

impl MyDb {
    pub fn connect(settings: &JdbcSettings, url: &str) -> Result<MyDb, ConnectFailure> {
        let (opts, plan) = opts(url)?;
        let mut builder = OptsBuilder::from_opts(opts)
            // The URL's host and port, never a socket the server reports
            // (the default for 127.0.0.1): that path is the server's, not ours.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(settings.connect_timeout))
            .stmt_cache_size(Some(64));
        if !settings.user.is_empty() {
            builder = builder.user(Some(settings.user.clone()));
        }
        if !settings.password.is_empty() {
            builder = builder.pass(Some(settings.password.expose().to_string()));
        }
        // The driver builds its rustls config with the process-wide default
        // provider (this plugin's copy of rustls): make it ring, which the
        // plugin compiles in anyway, whatever feature unification adds.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let has_password = Opts::from(builder.clone()).get_pass().is_some_and(|p| !p.is_empty());
        let mut connected = Conn::new(Opts::from(builder.clone().ssl_opts(ssl_opts(&plan)?)));
        if plan == TlsPlan::Opportunistic
            && matches!(connected, Err(mysql::Error::DriverError(DriverError::TlsNotSupported)))
        {
            // PREFERRED: clear text when the server offers no TLS.
            connected = Conn::new(Opts::from(builder));
        }
        if let (Err(e), TlsPlan::Required { option, roots, .. }) = (&connected, &plan) {
            if let Some(trouble) = mysql_tls_trouble(e) {
                return Err(ConnectFailure::Tls(tls_advice(Dialect::MySql, &trouble, option, roots.as_ref())));
            }
        }
        let mut conn = connected.map_err(|e| match &e {
            // MySQL answers 1045 for an unknown user and for a wrong password alike.
            mysql::Error::MySqlError(m) if m.code == 1045 && has_password => ConnectFailure::Password(format!(
                "{}; MySQL/MariaDB does not tell a wrong password from an unknown user, so check hybris.jdbc.user too",
                describe(&e)
            )),
            mysql::Error::MySqlError(m) if matches!(m.code, 1044 | 1045 | 1226 | 1698 | 3118 | 4151) => {
                ConnectFailure::User(describe(&e))
            }
            _ => ConnectFailure::Other(describe(&e)),
        })?;
        set_time_zone(&mut conn, &settings.timezone)?;
        Ok(MyDb { conn })
    }

    fn rows(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, mysql::Error> {
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        self.conn.exec(sql, params)
    }

    pub fn fetch_changes(
        &mut self,
        item: &ItemMapping,
        after: Option<&Cursor>,
        lag_ms: i64,
        limit: usize,
    ) -> Result<Vec<ChangeRow>, mysql::Error> {
        let mut params: Vec<Value> = vec![Value::from(lag_ms.saturating_mul(1000))];
        let mut sql = format!(
            "SELECT DATE_FORMAT(t.modifiedts, {TS_FORMAT}), DATE_FORMAT(t.createdts, {TS_FORMAT}), t.pk, {ms}, t.* \
             FROM {table} t",
            ms = epoch_ms("t.modifiedts"),
            table = item.table
        );
        if !item.typecodes.is_empty() {
            sql.push_str(" JOIN composedtypes ct ON ct.pk = t.typepkstring");
        }
        // NOW(6) is the database clock in the session's zone (set at connect).
        sql.push_str(" WHERE t.modifiedts < NOW(6) - INTERVAL ? MICROSECOND");
        if !item.typecodes.is_empty() {
            let marks = vec!["?"; item.typecodes.len()].join(", ");
            sql.push_str(&format!(" AND ct.internalcode IN ({marks})"));
            params.extend(item.typecodes.iter().map(|c| Value::from(c.as_str())));
        }
        if let Some(c) = after {
            let ts = ts_param();
            sql.push_str(&format!(" AND t.modifiedts >= {ts} AND (t.modifiedts > {ts} OR t.pk > ?)"));
            params.extend([Value::from(c.ts.as_str()), Value::from(c.ts.as_str()), Value::from(c.pk)]);
        }
        if let Some(filter) = &item.filter {
            sql.push_str(&format!(" AND ({filter})"));
        }
        sql.push_str(" ORDER BY t.modifiedts, t.pk LIMIT ?");
        params.push(Value::from(limit as u64));
        let rows = self.rows(&sql, params)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let columns = row.columns();
            let mut values = row.unwrap();
            let pk = required_int(&values, 2)?;
            let modified_ms = required_int(&values, 3)?;
            let ts = text(cell(&mut values, 0)).ok_or(mysql::Error::FromValueError(Value::NULL))?;
            let created_ts = text(cell(&mut values, 1));
            // Lower-case names, as PostgreSQL folds unquoted identifiers
            // (Hybris on MySQL has PK, modifiedTS, TypePkString).
            let doc = values
                .into_iter()
                .zip(columns.iter())
                .skip(4)
                .map(|(v, column)| (column.name_str().to_ascii_lowercase(), json_value(v, column)))
                .collect();
            out.push(ChangeRow { cursor: Cursor { ts, pk, key: None }, created_ts, modified_ms, doc });
        }
        Ok(out)
    }

    pub fn fetch_deletions(
        &mut self,
        table: &str,
        typecodes: &[String],
        after: Option<&Cursor>,
        lag_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeletionRow>, mysql::Error> {
        let marks = vec!["?"; typecodes.len().max(1)].join(", ");
        let mut params: Vec<Value> = vec![Value::from(lag_ms.saturating_mul(1000))];
        if typecodes.is_empty() {
            params.push(Value::NULL);
        }
        params.extend(typecodes.iter().map(|c| Value::from(c.as_str())));
        let mut sql = format!(
            "SELECT DATE_FORMAT(d.modifiedts, {TS_FORMAT}), d.pk, {ms}, d.p_itempk, d.p_businesskey FROM {table} d \
             WHERE d.modifiedts < NOW(6) - INTERVAL ? MICROSECOND AND d.p_itemtype IN ({marks})",
            ms = epoch_ms("d.modifiedts")
        );
        if let Some(c) = after {
            let ts = ts_param();
            sql.push_str(&format!(" AND d.modifiedts >= {ts} AND (d.modifiedts > {ts} OR d.pk > ?)"));
            params.extend([Value::from(c.ts.as_str()), Value::from(c.ts.as_str()), Value::from(c.pk)]);
        }
        sql.push_str(" ORDER BY d.modifiedts, d.pk LIMIT ?");
        params.push(Value::from(limit as u64));
        let rows = self.rows(&sql, params)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = row.unwrap();
            out.push(DeletionRow {
                cursor: Cursor {
                    ts: text(cell(&mut values, 0)).ok_or(mysql::Error::FromValueError(Value::NULL))?,
                    pk: required_int(&values, 1)?,
                    key: None,
                },
                modified_ms: required_int(&values, 2)?,
                item_pk: required_int(&values, 3)?,
                business_key: text(cell(&mut values, 4)).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    pub fn enum_code(&mut self, pk: i64) -> Result<Option<String>, mysql::Error> {
        let rows = self.rows("SELECT code FROM enumerationvalues WHERE pk = ?", vec![Value::from(pk)])?;
        Ok(rows.into_iter().next().and_then(|r| r.unwrap().into_iter().next()).and_then(text))
    }

    fn count(&mut self, sql: &str, params: Vec<Value>) -> Result<i64, mysql::Error> {
        let rows = self.rows(sql, params)?;
        let first = rows.into_iter().next().and_then(|r| r.unwrap().into_iter().next()).unwrap_or(Value::NULL);
        Ok(int(&first).unwrap_or(0))
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, mysql::Error> {
        let n = self.count(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
            vec![Value::from(table)],
        )?;
        Ok(n > 0)
    }

    /// Column names compare without case, as MySQL resolves them.
    pub fn column_exists(&mut self, table: &str, column: &str) -> Result<bool, mysql::Error> {
        let n = self.count(
            "SELECT COUNT(*) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND LOWER(column_name) = LOWER(?)",
            vec![Value::from(table), Value::from(column)],
        )?;
        Ok(n > 0)
    }

    /// Which of these codes `composedtypes` does not know, compared exactly
    /// (the default collation would match `order` to `Order`; PostgreSQL does not).
    pub fn unknown_typecodes(&mut self, codes: &[String]) -> Result<Vec<String>, mysql::Error> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; codes.len()].join(", ");
        let rows = self.rows(
            &format!("SELECT internalcode FROM composedtypes WHERE internalcode IN ({marks})"),
            codes.iter().map(|c| Value::from(c.as_str())).collect(),
        )?;
        let known: Vec<String> =
            rows.into_iter().filter_map(|r| r.unwrap().into_iter().next()).filter_map(text).collect();
        Ok(codes.iter().filter(|c| !known.contains(c)).cloned().collect())
    }
}

/// Reads the database clock (`NOW(6)`) in the zone Hybris wrote its
/// timestamps in. Named zones need the server's zone tables, which a fresh
/// MySQL/MariaDB does not load: UTC then falls back to the offset `+00:00`.
fn set_time_zone(conn: &mut Conn, zone: &str) -> Result<(), ConnectFailure> {
    let set = |conn: &mut Conn, z: &str| conn.exec_drop("SET time_zone = ?", (z,));
    match set(conn, zone) {
        Ok(()) => Ok(()),
        Err(e) => {
            let utc =
                matches!(zone.to_ascii_uppercase().as_str(), "UTC" | "ETC/UTC" | "GMT" | "ETC/GMT" | "Z" | "ZULU");
            if utc && set(conn, "+00:00").is_ok() {
                return Ok(());
            }
            Err(ConnectFailure::TimeZone(format!(
                "{zone}: {} (named zones need the server's zone tables: load them with mariadb-tzinfo-to-sql, \
                 or give an offset such as +01:00)",
                describe(&e)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_like_row_to_json() {
        assert_eq!(pg_json_timestamp(2025, 3, 1, 9, 0, 0, 100_000), "2025-03-01T09:00:00.1");
        assert_eq!(pg_json_timestamp(2025, 3, 1, 9, 0, 0, 0), "2025-03-01T09:00:00");
        assert_eq!(pg_json_timestamp(2025, 3, 1, 9, 0, 0, 123_456), "2025-03-01T09:00:00.123456");
    }

    #[test]
    fn url_forms() {
        for url in ["mysql://root@127.0.0.1:53306/hybris", "mariadb://u:p@db:3306/hybris"] {
            assert!(opts(url).is_ok(), "{url}");
        }
        assert!(matches!(opts("mysql://[bad/hybris"), Err(ConnectFailure::Url(_))));
        assert!(matches!(opts("postgres://x/y"), Err(ConnectFailure::Url(_))));
    }
}
