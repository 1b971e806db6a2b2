//! The connector's keys and the settings a task runs with.

use std::time::Duration;

use connector_api::{ConfigDef, ConfigKey, ConfigType, ConnectorConfig, ConnectorError, Importance, Validator};

use crate::schema::{self, ItemMapping};

pub const MODE: &str = "hybris.mode";
pub const JDBC_URL: &str = "hybris.jdbc.url";
pub const JDBC_USER: &str = "hybris.jdbc.user";
pub const JDBC_PASSWORD: &str = "hybris.jdbc.password";
pub const ITEM_TYPES: &str = "hybris.item.types";
pub const BATCH_MAX_ROWS: &str = "batch.max.rows";
pub const POLL_INTERVAL_MS: &str = "poll.interval.ms";
pub const POLL_LAG_MS: &str = "hybris.poll.lag.ms";
pub const TOPIC_PREFIX: &str = "topic.prefix";
pub const TOPIC_ROUTE_FIELD: &str = "topic.route.field";
pub const DELETIONS_TABLE: &str = "hybris.deletions.table";
pub const CONNECT_TIMEOUT_MS: &str = "hybris.jdbc.connect.timeout.ms";
pub const DB_TIMEZONE: &str = "hybris.db.timezone";

pub fn definition() -> ConfigDef {
    ConfigDef::new()
        .define(
            ConfigKey::new(MODE, ConfigType::String)
                .default_value("jdbc")
                .importance(Importance::High)
                .doc("How to read SAP Commerce: jdbc polls the Hybris database (on-premise or a replica). odata (the Integration API, for Commerce Cloud) is not supported yet.")
                .validator(Validator::one_of(["jdbc", "odata"])),
        )
        .define(
            ConfigKey::new(JDBC_URL, ConfigType::String)
                .importance(Importance::High)
                .doc("The Hybris database: postgres://host:5432/db or jdbc:postgresql://host:5432/db (PostgreSQL; MySQL/MariaDB URLs are refused in this version).")
                .validator(Validator::NonEmpty),
        )
        .define(
            ConfigKey::new(JDBC_USER, ConfigType::String)
                .default_value("")
                .importance(Importance::High)
                .doc("Database user (read-only is enough: SELECT on the item tables, composedtypes, enumerationvalues and the deletions table). Empty: the URL's user."),
        )
        .define(
            ConfigKey::new(JDBC_PASSWORD, ConfigType::Password)
                .default_value("")
                .importance(Importance::High)
                .doc("Database password. Empty: the URL's, or none."),
        )
        .define(
            ConfigKey::new(ITEM_TYPES, ConfigType::List)
                .default_value("Order,Customer,Product")
                .importance(Importance::High)
                .doc("Item types to stream, one source task each. Built in: Order, OrderEntry, Customer, Employee, User, Product, Address, Catalog, CatalogVersion; others need hybris.item.<Type>.table (and .key, .typecode, .where).")
                .validator(Validator::regex("[A-Za-z_][A-Za-z0-9_]*")),
        )
        .define(
            ConfigKey::new(BATCH_MAX_ROWS, ConfigType::Int)
                .default_value("1000")
                .doc("Rows read per query and item type.")
                .validator(Validator::range(Some(1.0), Some(100000.0))),
        )
        .define(
            ConfigKey::new(POLL_INTERVAL_MS, ConfigType::Long)
                .default_value("1000")
                .doc("Pause between queries once a type has caught up.")
                .validator(Validator::range(Some(0.0), Some(3_600_000.0))),
        )
        .define(
            ConfigKey::new(POLL_LAG_MS, ConfigType::Long)
                .default_value("5000")
                .importance(Importance::High)
                .doc("Only rows with modifiedTS older than the database clock minus this lag are read, so a transaction that commits late with an earlier modifiedTS is not skipped. Must exceed your longest write transaction.")
                .validator(Validator::range(Some(0.0), Some(86_400_000.0))),
        )
        .define(
            ConfigKey::new(TOPIC_PREFIX, ConfigType::String)
                .default_value("hybris.")
                .doc("Topic = prefix + item type in lower case (hybris.order).")
                .validator(Validator::regex("[A-Za-z0-9._-]*")),
        )
        .define(
            ConfigKey::new(TOPIC_ROUTE_FIELD, ConfigType::String)
                .default_value("")
                .doc("An attribute (without p_, e.g. channel) whose value suffixes the topic: hybris.order.online. Enum references are resolved to their code through enumerationvalues. Items without the attribute go to the plain topic.")
                .validator(Validator::regex("([A-Za-z_][A-Za-z0-9_]*)?")),
        )
        .define(
            ConfigKey::new(DELETIONS_TABLE, ConfigType::String)
                .default_value("")
                .doc("A deletion-marker table (columns pk, modifiedts, p_itemtype, p_itempk, p_businesskey; see fixtures/hybris-schema.sql) read as tombstones keyed by the business key. Empty: deletions are not streamed.")
                .validator(Validator::regex("([A-Za-z_][A-Za-z0-9_]*)?")),
        )
        .define(
            ConfigKey::new(DB_TIMEZONE, ConfigType::String)
                .default_value("UTC")
                .doc("The time zone Hybris wrote createdTS/modifiedTS in (they carry none): the lag window compares them with the database clock read in this zone. UTC unless the Hybris JVM ran in another zone (e.g. Europe/Berlin).")
                .validator(Validator::regex("[A-Za-z0-9_/+:-]+")),
        )
        .define(
            ConfigKey::new(CONNECT_TIMEOUT_MS, ConfigType::Long)
                .default_value("5000")
                .importance(Importance::Low)
                .doc("Timeout of a database connection attempt.")
                .validator(Validator::range(Some(100.0), Some(600_000.0))),
        )
}

/// Everything a task needs, parsed once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub user: String,
    pub password: String,
    pub connect_timeout: Duration,
    pub timezone: String,
    pub items: Vec<ItemMapping>,
    pub batch_max_rows: usize,
    pub poll_interval: Duration,
    pub lag_ms: i64,
    pub topic_prefix: String,
    pub route_field: Option<String>,
    pub deletions_table: Option<String>,
}

impl Settings {
    pub fn parse(config: &ConnectorConfig) -> Result<Settings, ConnectorError> {
        let def = definition();
        let mode = config.string(&def, MODE)?;
        if mode != "jdbc" {
            return Err(ConnectorError::config(format!(
                "\"{MODE}\": {mode} is not supported yet; use hybris.mode=jdbc"
            )));
        }
        let mut items = Vec::new();
        for type_name in config.list(&def, ITEM_TYPES)? {
            items.push(
                schema::resolve(config, &type_name)
                    .map_err(|(k, m)| ConnectorError::config(format!("\"{k}\": {m}")))?,
            );
        }
        if items.is_empty() {
            return Err(ConnectorError::config(format!("\"{ITEM_TYPES}\": name at least one item type")));
        }
        let optional = |key: &str| -> Result<Option<String>, ConnectorError> {
            Ok(Some(config.string(&def, key)?.trim().to_string()).filter(|v| !v.is_empty()))
        };
        Ok(Settings {
            url: config.string(&def, JDBC_URL)?,
            user: config.string(&def, JDBC_USER)?,
            password: config.string(&def, JDBC_PASSWORD)?,
            connect_timeout: Duration::from_millis(config.long(&def, CONNECT_TIMEOUT_MS)?.max(100) as u64),
            timezone: config.string(&def, DB_TIMEZONE)?.trim().to_string(),
            items,
            batch_max_rows: config.long(&def, BATCH_MAX_ROWS)?.max(1) as usize,
            poll_interval: Duration::from_millis(config.long(&def, POLL_INTERVAL_MS)?.max(0) as u64),
            lag_ms: config.long(&def, POLL_LAG_MS)?.max(0),
            topic_prefix: config.string(&def, TOPIC_PREFIX)?,
            route_field: optional(TOPIC_ROUTE_FIELD)?.map(|f| f.to_ascii_lowercase()),
            deletions_table: optional(DELETIONS_TABLE)?.map(|t| t.to_ascii_lowercase()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_api::ErrorKind;

    #[test]
    fn defaults_and_refusals() {
        let base = ConnectorConfig::new().with(JDBC_URL, "postgres://h/db");
        let s = Settings::parse(&base).unwrap();
        let types: Vec<_> = s.items.iter().map(|i| i.type_name.as_str()).collect();
        assert_eq!(types, vec!["Order", "Customer", "Product"]);
        assert_eq!((s.lag_ms, s.topic_prefix.as_str(), s.batch_max_rows), (5000, "hybris.", 1000));
        assert_eq!((s.route_field, s.deletions_table), (None, None));

        let odata = Settings::parse(&base.clone().with(MODE, "odata")).unwrap_err();
        assert_eq!(odata.kind(), ErrorKind::Config);
        assert!(odata.message().contains("hybris.mode") && odata.message().contains("not supported yet"));

        let unknown = Settings::parse(&base.clone().with(ITEM_TYPES, "Order,Nope")).unwrap_err();
        assert!(unknown.message().starts_with("\"hybris.item.types\""), "{unknown}");
    }

    #[test]
    fn the_password_is_a_password() {
        let def = definition();
        assert!(def.infos().iter().any(|i| i.name == JDBC_PASSWORD && i.is_password()));
        assert!(def.infos().iter().any(|i| i.name == JDBC_URL && i.required));
    }
}
