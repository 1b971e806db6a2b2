//! `sluice-hybris-source` (class `hybris-source`): streams SAP Commerce
//! (Hybris) items — orders, customers, products, custom types — into Kafka by
//! keyset polling the Hybris database on (modifiedTS, PK), one task per item
//! type. Records are keyed by the business key (order code, customer uid,
//! product code), so every event of one order lands on one partition in order.
//!
//! Modules: [`config`] (keys and settings), [`schema`] (item type → table,
//! key, type filter, entity set), [`rows`] (the row and cursor types both
//! read paths give), [`db`] (jdbc mode's SQL layer: PostgreSQL and
//! MySQL/MariaDB), [`odata`] (the Integration API client of
//! hybris.mode=odata), [`source`] (the task).

pub mod config;
pub mod db;
pub mod odata;
pub mod rows;
pub mod schema;
pub mod source;

#[cfg(test)]
mod harness_tests;

use connector_api::*;

use crate::{
    config::{Backend, JdbcSettings, Keys, ODataAuth, ODataSettings, Settings},
    db::{ConnectFailure, Db},
    odata::Failure,
};

pub use source::HybrisTask;

pub struct HybrisSource;

impl HybrisSource {
    /// hybris.mode=odata: credentials, the integration object, and for each
    /// item type its entity set, the properties the connector needs and one
    /// probe with the delta `$filter` (the Integration API supports a
    /// release-dependent subset of `$filter`; better to learn it at create).
    fn validate_odata(&self, config: &ConnectorConfig, settings: &Settings, o: &ODataSettings) -> Vec<ConfigIssue> {
        let mut client = odata::Client::new(o);
        let service = format!("{}/{}", o.url, o.integration_object);
        let metadata = match client.metadata() {
            Ok(m) => m.clone(),
            Err(f) => return vec![odata_issue(o, &service, f)],
        };
        let mut issues = Vec::new();
        for item in &settings.items {
            let set_key = schema::item_key(&item.type_name, "entity.set");
            let key = item_issue_key(config, &item.type_name, "entity.set");
            let Some(entity) = metadata.sets.get(&item.entity_set) else {
                let mut known: Vec<&str> = metadata.sets.keys().map(String::as_str).collect();
                known.sort();
                issues.push(ConfigIssue::new(
                    key,
                    format!(
                        "item type {}: integration object {} has no entity set {} (it has: {}); map it with {set_key}",
                        item.type_name,
                        o.integration_object,
                        item.entity_set,
                        known.join(", ")
                    ),
                ));
                continue;
            };
            let key_property = item.key_column.strip_prefix("p_").unwrap_or(&item.key_column).to_string();
            let mut missing: Vec<String> = ["integrationKey", "pk", "creationtime", "modifiedtime"]
                .iter()
                .map(|p| p.to_string())
                .chain(std::iter::once(key_property))
                .filter(|p| !entity.properties.contains_key(p))
                .collect();
            missing.dedup();
            if !missing.is_empty() {
                issues.push(ConfigIssue::new(
                    key,
                    format!(
                        "item type {}: entity type {} of {} lacks {}: model them in the integration object",
                        item.type_name,
                        entity.name,
                        item.entity_set,
                        missing.join(", ")
                    ),
                ));
                continue;
            }
            let probe = rows::Cursor { ts: "1970-01-01T00:00:00.000000".into(), pk: 0, key: Some(String::new()) };
            let filter = odata::delta_filter(Some(&probe), client.server_now_ms());
            if let Err(f) = client.fetch_page(&item.entity_set, &filter, 1, 0) {
                let issue = match f {
                    Failure::Other(m) | Failure::NotFound(m) => ConfigIssue::new(
                        key,
                        format!(
                            "item type {}: {} refused the delta query $filter={filter} ({m}); the integration object \
                             must let modifiedtime and integrationKey be filtered and ordered",
                            item.type_name, item.entity_set
                        ),
                    ),
                    f => odata_issue(o, &service, f),
                };
                issues.push(issue);
            }
        }
        issues
    }

    /// Checks that need the database: reachable, credentials, tables,
    /// columns and type codes. Only runs once the keys themselves are valid.
    fn validate_database(
        &self,
        config: &ConnectorConfig,
        settings: &Settings,
        jdbc: &JdbcSettings,
    ) -> Vec<ConfigIssue> {
        let mut db = match Db::connect(jdbc) {
            Ok(db) => db,
            Err(failure) => return vec![connect_issue(failure)],
        };
        let mut issues = Vec::new();
        let mut check = |db: &mut Db| -> Result<(), db::DbError> {
            for item in &settings.items {
                check_item(db, config, item, &mut issues)?;
            }
            match &jdbc.deletions_table {
                Some(table) => check_deletions(db, table, &mut issues),
                None => Ok(()),
            }
        };
        if let Err(e) = check(&mut db) {
            issues.push(ConfigIssue::new(
                Keys::jdbc_url,
                format!("checking the Hybris tables failed: {}", db::describe(&e)),
            ));
        }
        issues
    }
}

/// The key a problem with an item type's `attribute` is blamed on: its
/// `hybris.item.<Type>.<attribute>` key when set, else `hybris.item.types`.
fn item_issue_key(config: &ConnectorConfig, type_name: &str, attribute: &str) -> String {
    let custom = schema::item_key(type_name, attribute);
    if config.get(&custom).is_some() {
        custom
    } else {
        Keys::item_types.to_string()
    }
}

/// A refused connection, on the key to fix.
fn connect_issue(failure: ConnectFailure) -> ConfigIssue {
    match failure {
        ConnectFailure::Password(m) => ConfigIssue::new(
            Keys::jdbc_password,
            format!("the database rejected the password ({m}): check hybris.jdbc.password"),
        ),
        ConnectFailure::TimeZone(m) => ConfigIssue::new(Keys::db_timezone, format!("unknown time zone: {m}")),
        ConnectFailure::User(m) => ConfigIssue::new(
            Keys::jdbc_user,
            format!("the database rejected the user ({m}): check hybris.jdbc.user and its right to log in"),
        ),
        e => ConfigIssue::new(Keys::jdbc_url, format!("cannot connect to the Hybris database: {}", e.message())),
    }
}

/// One item type's table, its Hybris columns, business key and type codes.
fn check_item(
    db: &mut Db,
    config: &ConnectorConfig,
    item: &schema::ItemMapping,
    issues: &mut Vec<ConfigIssue>,
) -> Result<(), db::DbError> {
    let table_key = item_issue_key(config, &item.type_name, "table");
    if !db.table_exists(&item.table)? {
        issues.push(ConfigIssue::new(
            table_key,
            format!(
                "item type {}: table \"{}\" does not exist (or is not visible to this user); map it with {}",
                item.type_name,
                item.table,
                schema::item_key(&item.type_name, "table")
            ),
        ));
        return Ok(());
    }
    for column in ["pk", "modifiedts", "createdts", "typepkstring"] {
        if !db.column_exists(&item.table, column)? {
            issues.push(ConfigIssue::new(
                table_key.clone(),
                format!("table \"{}\" has no column {column}: not a Hybris item table", item.table),
            ));
        }
    }
    if !db.column_exists(&item.table, &item.key_column)? {
        issues.push(ConfigIssue::new(
            schema::item_key(&item.type_name, "key"),
            format!("table \"{}\" has no business key column \"{}\"", item.table, item.key_column),
        ));
    }
    if !item.typecodes.is_empty() {
        let unknown = db.unknown_typecodes(&item.typecodes)?;
        if !unknown.is_empty() {
            issues.push(ConfigIssue::new(
                item_issue_key(config, &item.type_name, "typecode"),
                format!("unknown item type {}: composedtypes has no type {}", item.type_name, unknown.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The deletion-marker table and its columns.
fn check_deletions(db: &mut Db, table: &str, issues: &mut Vec<ConfigIssue>) -> Result<(), db::DbError> {
    if !db.table_exists(table)? {
        issues.push(ConfigIssue::new(Keys::deletions_table, format!("deletions table \"{table}\" does not exist")));
        return Ok(());
    }
    for column in ["pk", "modifiedts", "p_itemtype", "p_itempk", "p_businesskey"] {
        if !db.column_exists(table, column)? {
            issues.push(ConfigIssue::new(
                Keys::deletions_table,
                format!("deletions table \"{table}\" has no column {column}"),
            ));
        }
    }
    Ok(())
}

/// An Integration API failure at validation, on the key to fix.
fn odata_issue(o: &ODataSettings, service: &str, f: Failure) -> ConfigIssue {
    match (f, &o.auth) {
        (Failure::Auth(m), ODataAuth::Basic { .. }) => ConfigIssue::new(
            Keys::odata_user,
            format!(
                "the Integration API rejected the credentials ({m}): check hybris.odata.user and \
                 hybris.odata.password (a user in integrationadmingroup)"
            ),
        ),
        (Failure::Auth(m), ODataAuth::OAuth2 { .. }) => ConfigIssue::new(
            Keys::odata_oauth_client_id,
            format!(
                "the Integration API refused the OAuth token ({m}): check the authorities of \
                 hybris.odata.oauth.client.id"
            ),
        ),
        (Failure::TokenClient(m), _) => ConfigIssue::new(
            Keys::odata_oauth_client_id,
            format!(
                "the token endpoint rejected the client ({m}): check hybris.odata.oauth.client.id and \
                 hybris.odata.oauth.client.secret"
            ),
        ),
        (Failure::TokenUnavailable(m), _) => {
            ConfigIssue::new(Keys::odata_oauth_token_url, format!("cannot get an OAuth token: {m}"))
        }
        (Failure::NotFound(m), _) => ConfigIssue::new(
            Keys::odata_integration_object,
            format!("no integration object at {service} ({m}): check hybris.odata.integration.object"),
        ),
        (Failure::Transient(m) | Failure::Other(m), _) => {
            ConfigIssue::new(Keys::odata_url, format!("cannot read {service}/$metadata: {m}"))
        }
    }
}

impl SourceConnector for HybrisSource {
    type Task = HybrisTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "hybris-source",
            aliases: &[],
            version: env!("CARGO_PKG_VERSION"),
            documentation:
                "Streams SAP Commerce (Hybris) item changes by keyset polling its database on (modifiedTS, PK) or its Integration API (OData v2) on (modifiedtime, integrationKey).",
        }
    }

    fn config_def(&self) -> ConfigDef {
        Keys::definition()
    }

    /// Every key and combination first (each issue naming its key); the
    /// database or the Integration API only once they are valid.
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        match Settings::check(config) {
            Err(issues) => issues,
            Ok(settings) => match &settings.backend {
                Backend::OData(o) => self.validate_odata(config, &settings, o),
                Backend::Jdbc(jdbc) => self.validate_database(config, &settings, jdbc),
            },
        }
    }

    /// One task per item type, so types poll in parallel and move between
    /// workers independently; with fewer tasks than types, types are dealt
    /// round-robin.
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        // At least one: the key is declared non-empty.
        let types = Keys::parse(config).map_err(connector_api::config::typed::config_error)?.item_types;
        let tasks = types.len().min(max_tasks.max(1));
        let mut groups: Vec<Vec<String>> = vec![Vec::new(); tasks];
        for (i, t) in types.into_iter().enumerate() {
            groups[i % tasks].push(t);
        }
        Ok(groups.into_iter().map(|g| config.clone().with(Keys::item_types, g.join(","))).collect())
    }

    fn create_task(&self, config: &ConnectorConfig, host: Host) -> Result<HybrisTask, ConnectorError> {
        Ok(HybrisTask::new(Settings::parse(config)?, host))
    }
}

impl SourceTask for HybrisTask {
    fn start(&mut self, committed: &[SourceOffset]) -> Result<(), ConnectorError> {
        HybrisTask::start(self, committed)
    }

    fn poll(&mut self, max_records: usize) -> Result<Vec<SourceRecord>, ConnectorError> {
        HybrisTask::poll(self, max_records)
    }
}

connector_api::export_plugin! { sinks: [], sources: [HybrisSource] }
