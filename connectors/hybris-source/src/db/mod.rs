//! The SQL layer of jdbc mode: connecting, the keyset queries and the checks
//! `validate` runs, for PostgreSQL ([`postgres`]) and MySQL/MariaDB
//! ([`mysql`]), chosen by the URL ([`url`]). [`Db`] is the one face the task
//! and `validate` use; both databases give identical [`ChangeRow`]s for
//! identical data (the row types are in [`crate::rows`], shared with odata
//! mode).

mod mysql;
mod postgres;
mod tls;
mod url;

use std::fmt;

use connector_api::ConnectorError;

use self::mysql::MyDb;
pub use self::url::{dialect, ConnectFailure, Dialect};
use crate::{
    config::JdbcSettings,
    rows::{ChangeRow, Cursor, DeletionRow},
    schema::ItemMapping,
};

/// A query error from either driver.
#[derive(Debug)]
pub enum DbError {
    Pg(::postgres::Error),
    My(::mysql::Error),
}

impl From<::postgres::Error> for DbError {
    fn from(e: ::postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

impl From<::mysql::Error> for DbError {
    fn from(e: ::mysql::Error) -> DbError {
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
    Pg(Box<::postgres::Client>),
    My(MyDb),
}

pub struct Db {
    conn: Conn,
}

/// Whether an error is worth retrying (the connection or the server is
/// briefly unavailable) rather than a mistake that will not go away.
pub fn is_transient(e: &DbError) -> bool {
    match e {
        DbError::Pg(e) => postgres::is_transient(e),
        DbError::My(e) => mysql::is_transient(e),
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
        DbError::Pg(e) => postgres::describe(e),
        DbError::My(e) => mysql::describe(e),
    }
}

impl Db {
    pub fn connect(settings: &JdbcSettings) -> Result<Db, ConnectFailure> {
        let (url, dialect) = dialect(&settings.url)?;
        let conn = match dialect {
            Dialect::Postgres => Conn::Pg(Box::new(postgres::connect(settings, url)?)),
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
            Conn::Pg(client) => postgres::fetch_changes(client, item, after, lag_ms, limit)?,
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
            Conn::Pg(client) => postgres::fetch_deletions(client, table, typecodes, after, lag_ms, limit)?,
            Conn::My(db) => db.fetch_deletions(table, typecodes, after, lag_ms, limit)?,
        })
    }

    /// The code of an enumeration value (`online` for an OrderChannel PK).
    pub fn enum_code(&mut self, pk: i64) -> Result<Option<String>, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => postgres::enum_code(client, pk)?,
            Conn::My(db) => db.enum_code(pk)?,
        })
    }

    pub fn table_exists(&mut self, table: &str) -> Result<bool, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => postgres::table_exists(client, table)?,
            Conn::My(db) => db.table_exists(table)?,
        })
    }

    pub fn column_exists(&mut self, table: &str, column: &str) -> Result<bool, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => postgres::column_exists(client, table, column)?,
            Conn::My(db) => db.column_exists(table, column)?,
        })
    }

    /// Which of these codes `composedtypes` does not know.
    pub fn unknown_typecodes(&mut self, codes: &[String]) -> Result<Vec<String>, DbError> {
        Ok(match &mut self.conn {
            Conn::Pg(client) => postgres::unknown_typecodes(client, codes)?,
            Conn::My(db) => db.unknown_typecodes(codes)?,
        })
    }
}
