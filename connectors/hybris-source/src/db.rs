//! The SQL layer: connecting, the keyset queries and the checks `validate`
//! runs, for PostgreSQL and MySQL/MariaDB (chosen by the URL). [`Db`] is the
//! one face the task and `validate` use; PostgreSQL's queries are here, through
//! the synchronous `postgres` client, which owns a private current-thread
//! tokio runtime per connection (a plugin must not use the worker's runtime);
//! MySQL/MariaDB's are in [`crate::mysql_db`] (the synchronous `mysql` client).
//!
//! Timestamps cross this layer as text in one fixed format
//! (`YYYY-MM-DDTHH:MM:SS.ffffff`, the stored value, no zone): exact to the
//! microsecond both ways, and ordered as text the way they are as timestamps.
//! Both databases give identical [`ChangeRow`]s for identical data.

use std::{fmt, str::FromStr};

use connector_api::ConnectorError;
use postgres::{types::ToSql, Client, Config, NoTls};

use crate::{config::Settings, mysql_db::MyDb, schema::ItemMapping};

const TS_FORMAT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US'";

/// A keyset position: the last (modifiedTS, PK) read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub ts: String,
    pub pk: i64,
    /// hybris.mode=odata: the row's integrationKey, its tie-break at equal
    /// modifiedtime (jdbc mode breaks ties by PK and leaves it `None`).
    pub key: Option<String>,
}

/// One changed item row.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub cursor: Cursor,
    pub created_ts: Option<String>,
    pub modified_ms: i64,
    /// The whole row as a JSON object (lower-case column names).
    pub doc: serde_json::Map<String, serde_json::Value>,
}

/// One deletion marker.
#[derive(Debug, Clone)]
pub struct DeletionRow {
    pub cursor: Cursor,
    pub modified_ms: i64,
    pub item_pk: i64,
    pub business_key: String,
}

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

/// A query error from either driver.
#[derive(Debug)]
pub enum DbError {
    Pg(postgres::Error),
    My(mysql::Error),
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

impl From<mysql::Error> for DbError {
    fn from(e: mysql::Error) -> DbError {
        DbError::My(e)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self))
    }
}

/// Boxed: the PostgreSQL client is large, and the enum is moved around.
enum Conn {
    Pg(Box<Client>),
    My(MyDb),
}

pub struct Db {
    conn: Conn,
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

fn pg_config(url: &str) -> Result<Config, ConnectFailure> {
    refuse_tls(url)?;
    Config::from_str(url).map_err(|e| ConnectFailure::Url(format!("cannot parse the URL: {e}")))
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

/// Whether an error is worth retrying (the connection or the server is
/// briefly unavailable) rather than a mistake that will not go away.
pub fn is_transient(e: &DbError) -> bool {
    match e {
        DbError::Pg(e) => pg_is_transient(e),
        DbError::My(e) => crate::mysql_db::is_transient(e),
    }
}

fn pg_is_transient(e: &postgres::Error) -> bool {
    match e.code() {
        // No SQLSTATE: I/O, a closed connection, a timeout.
        None => true,
        Some(state) => {
            let code = state.code();
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57") // operator intervention (shutdown, cancel)
                || code.starts_with("40") // serialization failure, deadlock
                || code == "55P03" // lock not available
        }
    }
}

/// A running query's error as the runtime should act on it.
pub fn to_connector_error(context: &str, e: &DbError) -> ConnectorError {
    let message = format!("{context}: {}", describe(e));
    if is_transient(e) {
        ConnectorError::retriable(message)
    } else {
        ConnectorError::fatal(message)
    }
}

/// The server's message when there is one (postgres::Error's Display is terse).
pub fn describe(e: &DbError) -> String {
    match e {
        DbError::Pg(e) => pg_describe(e),
        DbError::My(e) => crate::mysql_db::describe(e),
    }
}

fn pg_describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Db {
    pub fn connect(settings: &Settings) -> Result<Db, ConnectFailure> {
        let (url, dialect) = dialect(&settings.url)?;
        let conn = match dialect {
            Dialect::Postgres => Conn::Pg(Box::new(pg_connect(settings, url)?)),
            Dialect::MySql => Conn::My(MyDb::connect(settings, url)?),
        };
        Ok(Db { conn })
    }

    pub fn is_closed(&self) -> bool {
        match &self.conn {
            Conn::Pg(client) => client.is_closed(),
            // The task drops the connection on any transient error instead.
            Conn::My(_) => false,
        }
    }

    /// Rows of one item type after `after`, older than the database clock
    /// minus `lag_ms`, in (modifiedts, pk) order.
    pub fn fetch_changes(
        &mut self,
        item: &ItemMapping,
        after: Option<&Cursor>,
        lag_ms: i64,
        limit: usize,
    ) -> Result<Vec<ChangeRow>, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => pg_fetch_changes(client, item, after, lag_ms, limit)?,
            Conn::My(db) => db.fetch_changes(item, after, lag_ms, limit)?,
        })
    }

    /// Deletion markers of the given type codes after `after`, same rules.
    pub fn fetch_deletions(
        &mut self,
        table: &str,
        typecodes: &[String],
        after: Option<&Cursor>,
        lag_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeletionRow>, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => pg_fetch_deletions(client, table, typecodes, after, lag_ms, limit)?,
            Conn::My(db) => db.fetch_deletions(table, typecodes, after, lag_ms, limit)?,
        })
    }

    /// The code of an enumeration value (`online` for an OrderChannel PK).
    pub fn enum_code(&mut self, pk: i64) -> Result<Option<String>, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => {
                let row = client.query_opt("SELECT code FROM enumerationvalues WHERE pk = $1::int8", &[&pk])?;
                row.map(|r| r.try_get(0)).transpose()?
            }
            Conn::My(db) => db.enum_code(pk)?,
        })
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => client.query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])?.try_get(0)?,
            Conn::My(db) => db.table_exists(table)?,
        })
    }

    pub fn column_exists(&mut self, table: &str, column: &str) -> Result<bool, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
                     WHERE table_schema = ANY(current_schemas(false)) AND table_name = $1::text \
                     AND column_name = $2::text)",
                    &[&table, &column],
                )?
                .try_get(0)?,
            Conn::My(db) => db.column_exists(table, column)?,
        })
    }

    /// Which of these codes `composedtypes` does not know.
    pub fn unknown_typecodes(&mut self, codes: &[String]) -> Result<Vec<String>, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => {
                let codes = codes.to_vec();
                let rows = client.query(
                    "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS \
                     (SELECT 1 FROM composedtypes ct WHERE ct.internalcode = c)",
                    &[&codes],
                )?;
                rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?
            }
            Conn::My(db) => db.unknown_typecodes(codes)?,
        })
    }
}

fn pg_connect(settings: &Settings, url: &str) -> Result<Client, ConnectFailure> {
    {
        let (user, password) = (&settings.user, &settings.password);
        let mut config = pg_config(url)?;
        if !user.is_empty() {
            config.user(user);
        }
        if !password.is_empty() {
            config.password(password);
        }
        config.connect_timeout(settings.connect_timeout);
        config.application_name("sluice-hybris-source");
        let mut client = config.connect(NoTls).map_err(|e| {
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            if code == "28P01" {
                ConnectFailure::Password(pg_describe(&e))
            } else if code.starts_with("28") {
                ConnectFailure::User(pg_describe(&e))
            } else {
                ConnectFailure::Other(pg_describe(&e))
            }
        })?;
        // Hybris stores timestamps without a zone: read the database clock
        // (LOCALTIMESTAMP) in the zone they were written in, whatever the
        // server's default. The value is a validated identifier-like string,
        // and is passed as a literal.
        let zone = settings.timezone.replace('\'', "");
        client
            .batch_execute(&format!("SET TIME ZONE '{zone}'"))
            .map_err(|e| ConnectFailure::TimeZone(pg_describe(&e)))?;
        Ok(client)
    }
}

fn pg_fetch_changes(
    client: &mut Client,
    item: &ItemMapping,
    after: Option<&Cursor>,
    lag_ms: i64,
    limit: usize,
) -> Result<Vec<ChangeRow>, postgres::Error> {
    let limit = limit as i64;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lag_ms, &limit];
    let mut sql = format!(
        "SELECT to_char(t.modifiedts, {TS_FORMAT}), to_char(t.createdts, {TS_FORMAT}), t.pk, \
             (extract(epoch FROM t.modifiedts) * 1000)::int8, row_to_json(t)::text \
             FROM {table} t",
        table = item.table
    );
    if !item.typecodes.is_empty() {
        sql.push_str(" JOIN composedtypes ct ON ct.pk = t.typepkstring");
    }
    sql.push_str(" WHERE t.modifiedts < LOCALTIMESTAMP - $1::int8 * interval '1 millisecond'");
    if !item.typecodes.is_empty() {
        params.push(&item.typecodes);
        sql.push_str(&format!(" AND ct.internalcode = ANY(${}::text[])", params.len()));
    }
    if let Some(c) = after {
        params.push(&c.ts);
        params.push(&c.pk);
        sql.push_str(&format!(
            " AND (t.modifiedts, t.pk) > (CAST(${}::text AS timestamp), ${}::int8)",
            params.len() - 1,
            params.len()
        ));
    }
    if let Some(filter) = &item.filter {
        sql.push_str(&format!(" AND ({filter})"));
    }
    sql.push_str(" ORDER BY t.modifiedts, t.pk LIMIT $2::int8");
    let rows = client.query(&sql, &params)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let doc: String = row.try_get(4)?;
        // row_to_json always gives an object; anything else is skipped
        // rather than trusted.
        let doc = match serde_json::from_str::<serde_json::Value>(&doc) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        out.push(ChangeRow {
            cursor: Cursor { ts: row.try_get(0)?, pk: row.try_get(2)?, key: None },
            created_ts: row.try_get(1)?,
            modified_ms: row.try_get(3)?,
            doc,
        });
    }
    Ok(out)
}

fn pg_fetch_deletions(
    client: &mut Client,
    table: &str,
    typecodes: &[String],
    after: Option<&Cursor>,
    lag_ms: i64,
    limit: usize,
) -> Result<Vec<DeletionRow>, postgres::Error> {
    let limit = limit as i64;
    let typecodes = typecodes.to_vec();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lag_ms, &limit, &typecodes];
    let mut sql = format!(
        "SELECT to_char(d.modifiedts, {TS_FORMAT}), d.pk, (extract(epoch FROM d.modifiedts) * 1000)::int8, \
             d.p_itempk, d.p_businesskey FROM {table} d \
             WHERE d.modifiedts < LOCALTIMESTAMP - $1::int8 * interval '1 millisecond' \
             AND d.p_itemtype = ANY($3::text[])"
    );
    if let Some(c) = after {
        params.push(&c.ts);
        params.push(&c.pk);
        sql.push_str(" AND (d.modifiedts, d.pk) > (CAST($4::text AS timestamp), $5::int8)");
    }
    sql.push_str(" ORDER BY d.modifiedts, d.pk LIMIT $2::int8");
    let rows = client.query(&sql, &params)?;
    rows.iter()
        .map(|row| {
            Ok(DeletionRow {
                cursor: Cursor { ts: row.try_get(0)?, pk: row.try_get(1)?, key: None },
                modified_ms: row.try_get(2)?,
                item_pk: row.try_get(3)?,
                business_key: row.try_get(4)?,
            })
        })
        .collect()
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
        assert!(pg_config("postgres://h:5432/hybris?sslmode=disable").is_ok());
        assert!(pg_config("postgres://h/hybris?ssl=true").is_err());
        assert!(pg_config("postgres://u@h:5432/hybris").is_ok());
    }
}
