//! `sluice-hybris-source` (class `hybris-source`): streams SAP Commerce
//! (Hybris) items — orders, customers, products, custom types — into Kafka by
//! keyset polling the Hybris database on (modifiedTS, PK), one task per item
//! type. Records are keyed by the business key (order code, customer uid,
//! product code), so every event of one order lands on one partition in order.
//!
//! Modules: [`config`] (keys and settings), [`schema`] (item type → table,
//! key, type filter), [`db`] (the SQL layer), [`source`] (the task).

pub mod config;
pub mod db;
pub mod schema;
pub mod source;

use connector_api::*;

use crate::{
    config::{definition, Settings},
    db::{ConnectFailure, Db},
};

pub use source::HybrisTask;

pub struct HybrisSource;

impl HybrisSource {
    /// Checks that need the database: reachable, credentials, tables,
    /// columns and type codes. Only runs once the keys themselves are valid.
    fn validate_database(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        let settings = match Settings::parse(config) {
            Ok(s) => s,
            Err(e) => return vec![ConfigIssue::new(guess_key(e.message()), e.message())],
        };
        let mut db = match Db::connect(&settings) {
            Ok(db) => db,
            Err(ConnectFailure::Password(m)) => {
                return vec![ConfigIssue::new(
                    config::JDBC_PASSWORD,
                    format!("the database rejected the password ({m}): check hybris.jdbc.password"),
                )]
            }
            Err(ConnectFailure::TimeZone(m)) => {
                return vec![ConfigIssue::new(config::DB_TIMEZONE, format!("unknown time zone: {m}"))]
            }
            Err(ConnectFailure::User(m)) => {
                return vec![ConfigIssue::new(
                    config::JDBC_USER,
                    format!("the database rejected the user ({m}): check hybris.jdbc.user and its LOGIN right"),
                )]
            }
            Err(e) => {
                return vec![ConfigIssue::new(
                    config::JDBC_URL,
                    format!("cannot connect to the Hybris database: {}", e.message()),
                )]
            }
        };
        let mut issues = Vec::new();
        let mut check = |db: &mut Db| -> Result<(), postgres::Error> {
            for item in &settings.items {
                let custom_table = config.get(&schema::item_key(&item.type_name, "table")).is_some();
                let table_key = if custom_table {
                    schema::item_key(&item.type_name, "table")
                } else {
                    config::ITEM_TYPES.to_string()
                };
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
                    continue;
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
                        let key = if config.get(&schema::item_key(&item.type_name, "typecode")).is_some() {
                            schema::item_key(&item.type_name, "typecode")
                        } else {
                            config::ITEM_TYPES.to_string()
                        };
                        issues.push(ConfigIssue::new(
                            key,
                            format!(
                                "unknown item type {}: composedtypes has no type {}",
                                item.type_name,
                                unknown.join(", ")
                            ),
                        ));
                    }
                }
            }
            if let Some(table) = &settings.deletions_table {
                if !db.table_exists(table)? {
                    issues.push(ConfigIssue::new(
                        config::DELETIONS_TABLE,
                        format!("deletions table \"{table}\" does not exist"),
                    ));
                } else {
                    for column in ["pk", "modifiedts", "p_itemtype", "p_itempk", "p_businesskey"] {
                        if !db.column_exists(table, column)? {
                            issues.push(ConfigIssue::new(
                                config::DELETIONS_TABLE,
                                format!("deletions table \"{table}\" has no column {column}"),
                            ));
                        }
                    }
                }
            }
            Ok(())
        };
        if let Err(e) = check(&mut db) {
            issues.push(ConfigIssue::new(
                config::JDBC_URL,
                format!("checking the Hybris tables failed: {}", db::describe(&e)),
            ));
        }
        issues
    }
}

/// A settings error message starts with the quoted key it is about.
fn guess_key(message: &str) -> String {
    message.strip_prefix('"').and_then(|m| m.split('"').next()).unwrap_or(config::ITEM_TYPES).to_string()
}

impl SourceConnector for HybrisSource {
    type Task = HybrisTask;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            class: "hybris-source",
            aliases: &[],
            version: env!("CARGO_PKG_VERSION"),
            documentation:
                "Streams SAP Commerce (Hybris) item changes by keyset polling its database on (modifiedTS, PK).",
        }
    }

    fn config_def(&self) -> ConfigDef {
        definition()
    }

    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        let mut issues = self.config_def().validate(config);
        if config.get(config::MODE) == Some("odata") {
            issues.push(ConfigIssue::new(
                config::MODE,
                "hybris.mode=odata (the Integration API) is not supported yet; use hybris.mode=jdbc",
            ));
        }
        if issues.is_empty() {
            issues.extend(self.validate_database(config));
        }
        issues
    }

    /// One task per item type, so types poll in parallel and move between
    /// workers independently; with fewer tasks than types, types are dealt
    /// round-robin.
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        let types = config.list(&definition(), config::ITEM_TYPES)?;
        if types.is_empty() {
            return Err(ConnectorError::config(format!("\"{}\": name at least one item type", config::ITEM_TYPES)));
        }
        let tasks = types.len().min(max_tasks.max(1));
        let mut groups: Vec<Vec<String>> = vec![Vec::new(); tasks];
        for (i, t) in types.into_iter().enumerate() {
            groups[i % tasks].push(t);
        }
        Ok(groups.into_iter().map(|g| config.clone().with(config::ITEM_TYPES, g.join(","))).collect())
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
