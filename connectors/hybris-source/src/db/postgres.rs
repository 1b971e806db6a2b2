//! PostgreSQL's half of the SQL layer ([`crate::db`] dispatches to it),
//! through the synchronous `postgres` client, which owns a private
//! current-thread tokio runtime per connection (a plugin must not use the
//! worker's runtime).

use std::{str::FromStr, sync::Arc};

use postgres::{config::SslMode, types::ToSql, Client, Config, NoTls};
use rustls::{
    client::{danger::ServerCertVerifier, WebPkiServerVerifier},
    ClientConfig,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    tls::{root_store, tls_advice, tls_trouble, ChainOnly, EncryptOnly},
    url::{postgres_tls, ConnectFailure, Dialect, Roots, TlsPlan, Verify},
};
use crate::{
    config::JdbcSettings,
    rows::{ChangeRow, Cursor, DeletionRow},
    schema::ItemMapping,
};

const TS_FORMAT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US'";

fn config(url: &str) -> Result<(Config, TlsPlan), ConnectFailure> {
    let (url, plan) = postgres_tls(url)?;
    let config = Config::from_str(&url).map_err(|e| ConnectFailure::Url(format!("cannot parse the URL: {e}")))?;
    Ok((config, plan))
}

/// The rustls client for a plan; ring explicitly, so the choice never
/// depends on which providers feature unification compiled in.
fn tls_connector(verify: &Verify, roots: Option<&Roots>) -> Result<MakeRustlsConnect, ConnectFailure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(EncryptOnly(provider.clone())),
        Verify::Chain | Verify::Full => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider.clone())
                .build()
                .map_err(|e| ConnectFailure::Url(format!("cannot use the CA certificates of sslrootcert: {e}")))?;
            if *verify == Verify::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectFailure::Other(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

pub fn is_transient(e: &postgres::Error) -> bool {
    match e.code() {
        // No SQLSTATE: I/O, a closed connection, a timeout.
        None => true,
        // 08 connection exception, 53 insufficient resources, 57 operator
        // intervention (shutdown, cancel), 40 serialization failure and
        // deadlock, 55P03 lock not available: connector-kit's table.
        Some(state) => connector_kit::classify::sqlstate_is_transient(state.code()),
    }
}

pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

pub fn connect(settings: &JdbcSettings, url: &str) -> Result<Client, ConnectFailure> {
    {
        let (user, password) = (&settings.user, &settings.password);
        let (mut config, plan) = config(url)?;
        if !user.is_empty() {
            config.user(user);
        }
        if !password.is_empty() {
            config.password(password.expose());
        }
        config.connect_timeout(settings.connect_timeout);
        config.application_name("sluice-hybris-source");
        let connected = match &plan {
            TlsPlan::Plain => config.ssl_mode(SslMode::Disable).connect(NoTls),
            TlsPlan::Opportunistic => config.ssl_mode(SslMode::Prefer).connect(tls_connector(&Verify::Nothing, None)?),
            TlsPlan::Required { verify, roots, .. } => {
                config.ssl_mode(SslMode::Require).connect(tls_connector(verify, roots.as_ref())?)
            }
        };
        let mut client = connected.map_err(|e| {
            if let (Some(trouble), TlsPlan::Required { option, roots, .. }) = (tls_trouble(&e), &plan) {
                return ConnectFailure::Tls(tls_advice(Dialect::Postgres, &trouble, option, roots.as_ref()));
            }
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            if code == "28P01" {
                ConnectFailure::Password(describe(&e))
            } else if code.starts_with("28") {
                ConnectFailure::User(describe(&e))
            } else {
                ConnectFailure::Other(describe(&e))
            }
        })?;
        // Hybris stores timestamps without a zone: read the database clock
        // (LOCALTIMESTAMP) in the zone they were written in, whatever the
        // server's default. The value is a validated identifier-like string,
        // and is passed as a literal.
        let zone = settings.timezone.replace('\'', "");
        client.batch_execute(&format!("SET TIME ZONE '{zone}'")).map_err(|e| ConnectFailure::TimeZone(describe(&e)))?;
        Ok(client)
    }
}

/// The code of an enumeration value (`online` for an OrderChannel PK).
pub fn enum_code(client: &mut Client, pk: i64) -> Result<Option<String>, postgres::Error> {
    let row = client.query_opt("SELECT code FROM enumerationvalues WHERE pk = $1::int8", &[&pk])?;
    row.map(|r| r.try_get(0)).transpose()
}

pub fn table_exists(client: &mut Client, table: &str) -> Result<bool, postgres::Error> {
    client.query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])?.try_get(0)
}

pub fn column_exists(client: &mut Client, table: &str, column: &str) -> Result<bool, postgres::Error> {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_schema = ANY(current_schemas(false)) AND table_name = $1::text \
             AND column_name = $2::text)",
            &[&table, &column],
        )?
        .try_get(0)
}

/// Which of these codes `composedtypes` does not know.
pub fn unknown_typecodes(client: &mut Client, codes: &[String]) -> Result<Vec<String>, postgres::Error> {
    let codes = codes.to_vec();
    let rows = client.query(
        "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS \
         (SELECT 1 FROM composedtypes ct WHERE ct.internalcode = c)",
        &[&codes],
    )?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

pub fn fetch_changes(
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

pub fn fetch_deletions(
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
    fn the_driver_parses_urls_with_every_sslmode_once_the_tls_options_are_taken_out() {
        for url in [
            "postgres://u@h:5432/hybris",
            "postgres://h:5432/hybris?sslmode=disable",
            "postgres://h:5432/hybris?sslmode=allow&application_name=x",
            "postgres://h/hybris?sslmode=verify-ca&sslrootcert=/ca.pem",
            "postgresql://h/hybris?sslmode=verify-full&sslrootcert=/ca.pem&hostaddr=127.0.0.1",
        ] {
            if let Err(e) = config(url) {
                panic!("{url}: {}", e.message());
            }
        }
    }
}
