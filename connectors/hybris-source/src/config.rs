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
pub const ODATA_URL: &str = "hybris.odata.url";
pub const ODATA_INTEGRATION_OBJECT: &str = "hybris.odata.integration.object";
pub const ODATA_AUTH: &str = "hybris.odata.auth";
pub const ODATA_USER: &str = "hybris.odata.user";
pub const ODATA_PASSWORD: &str = "hybris.odata.password";
pub const ODATA_TOKEN_URL: &str = "hybris.odata.oauth.token.url";
pub const ODATA_CLIENT_ID: &str = "hybris.odata.oauth.client.id";
pub const ODATA_CLIENT_SECRET: &str = "hybris.odata.oauth.client.secret";
pub const ODATA_TIMEOUT_MS: &str = "hybris.odata.timeout.ms";
pub const ODATA_PAGING: &str = "hybris.odata.paging";

pub fn definition() -> ConfigDef {
    ConfigDef::new()
        .define(
            ConfigKey::new(MODE, ConfigType::String)
                .default_value("jdbc")
                .importance(Importance::High)
                .doc("How to read SAP Commerce: jdbc polls the Hybris database (on-premise or a replica); odata polls the Integration API (OData v2), the read path on Commerce Cloud.")
                .validator(Validator::one_of(["jdbc", "odata"])),
        )
        .define(
            ConfigKey::new(JDBC_URL, ConfigType::String)
                .default_value("")
                .importance(Importance::High)
                .doc("The Hybris database, PostgreSQL or MySQL/MariaDB: jdbc:postgresql://host:5432/db, jdbc:mysql://host:3306/db or jdbc:mariadb://host:3306/db (the jdbc: prefix is optional: postgres://, mysql://, mariadb://). Required with hybris.mode=jdbc."),
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
        .define(
            ConfigKey::new(ODATA_URL, ConfigType::String)
                .default_value("")
                .importance(Importance::High)
                .doc("hybris.mode=odata: the Integration API's base URL, https://<host>/odata2webservices (required in odata mode).")
                .validator(Validator::regex("(https?://[^\\s?#]+)?")),
        )
        .define(
            ConfigKey::new(ODATA_INTEGRATION_OBJECT, ConfigType::String)
                .default_value("")
                .importance(Importance::High)
                .doc("hybris.mode=odata: the integration object's code (the service path after the base URL); it must model integrationKey, pk, creationtime, modifiedtime and the attributes to stream for every item type (required in odata mode).")
                .validator(Validator::regex("([A-Za-z0-9_]+)?")),
        )
        .define(
            ConfigKey::new(ODATA_AUTH, ConfigType::String)
                .default_value("basic")
                .importance(Importance::High)
                .doc("hybris.mode=odata: basic (hybris.odata.user/password, a user in integrationadmingroup) or oauth2 (client credentials from hybris.odata.oauth.token.url).")
                .validator(Validator::one_of(["basic", "oauth2"])),
        )
        .define(
            ConfigKey::new(ODATA_USER, ConfigType::String)
                .default_value("")
                .importance(Importance::High)
                .doc("hybris.odata.auth=basic: the Integration API user."),
        )
        .define(
            ConfigKey::new(ODATA_PASSWORD, ConfigType::Password)
                .default_value("")
                .importance(Importance::High)
                .doc("hybris.odata.auth=basic: that user's password."),
        )
        .define(
            ConfigKey::new(ODATA_TOKEN_URL, ConfigType::String)
                .default_value("")
                .doc("hybris.odata.auth=oauth2: the token endpoint, https://<host>/authorizationserver/oauth/token.")
                .validator(Validator::regex("(https?://[^\\s#]+)?")),
        )
        .define(
            ConfigKey::new(ODATA_CLIENT_ID, ConfigType::String)
                .default_value("")
                .doc("hybris.odata.auth=oauth2: the OAuth client id (an OAuthClientDetails with the client_credentials grant)."),
        )
        .define(
            ConfigKey::new(ODATA_CLIENT_SECRET, ConfigType::Password)
                .default_value("")
                .doc("hybris.odata.auth=oauth2: the OAuth client secret."),
        )
        .define(
            ConfigKey::new(ODATA_TIMEOUT_MS, ConfigType::Long)
                .default_value("30000")
                .importance(Importance::Low)
                .doc("hybris.mode=odata: timeout of one HTTP request (connect to end of body); a timed-out request is retried.")
                .validator(Validator::range(Some(100.0), Some(600_000.0))),
        )
        .define(
            ConfigKey::new(ODATA_PAGING, ConfigType::String)
                .default_value("skip")
                .doc("hybris.mode=odata: skip pages one delta query with $skip (guarded by __count); keyset starts every page as a new delta query after the last row read ($skip=0), whose cost does not grow with the backlog: better for large initial loads.")
                .validator(Validator::one_of(["skip", "keyset"])),
        )
}

/// Which read path a connector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Jdbc,
    OData,
}

/// How the Integration API authenticates.
#[derive(Debug, Clone)]
pub enum ODataAuth {
    Basic { user: String, password: String },
    OAuth2 { token_url: String, client_id: String, client_secret: String },
}

/// hybris.mode=odata settings.
#[derive(Debug, Clone)]
pub struct ODataSettings {
    /// The base URL without a trailing slash.
    pub url: String,
    pub integration_object: String,
    pub auth: ODataAuth,
    pub timeout: Duration,
    /// `hybris.odata.paging=keyset`: every page a new keyset query, no `$skip`.
    pub keyset_paging: bool,
}

/// hybris.mode=jdbc settings: the database and what is read from it besides items.
#[derive(Debug, Clone)]
pub struct JdbcSettings {
    pub url: String,
    pub user: String,
    pub password: String,
    pub connect_timeout: Duration,
    pub timezone: String,
    pub deletions_table: Option<String>,
}

/// The read path with its own settings: one or the other, never a mix
/// (odata mode has no database to read deletion markers from).
#[derive(Debug, Clone)]
pub enum Backend {
    Jdbc(JdbcSettings),
    OData(ODataSettings),
}

impl Backend {
    pub fn mode(&self) -> Mode {
        match self {
            Backend::Jdbc(_) => Mode::Jdbc,
            Backend::OData(_) => Mode::OData,
        }
    }

    /// The deletions table (jdbc mode only).
    pub fn deletions_table(&self) -> Option<&str> {
        match self {
            Backend::Jdbc(j) => j.deletions_table.as_deref(),
            Backend::OData(_) => None,
        }
    }
}

/// Everything a task needs, parsed once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub backend: Backend,
    pub items: Vec<ItemMapping>,
    pub batch_max_rows: usize,
    pub poll_interval: Duration,
    pub lag_ms: i64,
    pub topic_prefix: String,
    pub route_field: Option<String>,
}

impl Settings {
    pub fn parse(config: &ConnectorConfig) -> Result<Settings, ConnectorError> {
        let def = definition();
        let mode = match config.string(&def, MODE)?.trim() {
            "jdbc" => Mode::Jdbc,
            "odata" => Mode::OData,
            other => {
                return Err(ConnectorError::config(format!("\"{MODE}\": {other} is not a mode; use jdbc or odata")))
            }
        };
        let mut items = Vec::new();
        for type_name in config.list(&def, ITEM_TYPES)? {
            items.push(
                schema::resolve(config, &type_name, mode == Mode::OData)
                    .map_err(|(k, m)| ConnectorError::config(format!("\"{k}\": {m}")))?,
            );
        }
        if items.is_empty() {
            return Err(ConnectorError::config(format!("\"{ITEM_TYPES}\": name at least one item type")));
        }
        let optional = |key: &str| -> Result<Option<String>, ConnectorError> {
            Ok(Some(config.string(&def, key)?.trim().to_string()).filter(|v| !v.is_empty()))
        };
        let required = |key: &str| -> Result<String, ConnectorError> {
            match optional(key)? {
                Some(v) => Ok(v),
                None => Err(ConnectorError::config(format!(
                    "\"{key}\": required with {MODE}={}",
                    if mode == Mode::Jdbc { "jdbc" } else { "odata" }
                ))),
            }
        };
        let odata = match mode {
            Mode::Jdbc => {
                required(JDBC_URL)?;
                None
            }
            Mode::OData => {
                if optional(DELETIONS_TABLE)?.is_some() {
                    return Err(ConnectorError::config(format!(
                        "\"{DELETIONS_TABLE}\": deletion markers are a database table; hybris.mode=odata cannot \
                         read them (leave it empty, or use hybris.mode=jdbc)"
                    )));
                }
                let auth = match config.string(&def, ODATA_AUTH)?.trim() {
                    "oauth2" => ODataAuth::OAuth2 {
                        token_url: required(ODATA_TOKEN_URL)?,
                        client_id: required(ODATA_CLIENT_ID)?,
                        client_secret: config.string(&def, ODATA_CLIENT_SECRET)?,
                    },
                    _ => {
                        ODataAuth::Basic { user: required(ODATA_USER)?, password: config.string(&def, ODATA_PASSWORD)? }
                    }
                };
                Some(ODataSettings {
                    url: required(ODATA_URL)?.trim_end_matches('/').to_string(),
                    integration_object: required(ODATA_INTEGRATION_OBJECT)?,
                    auth,
                    timeout: Duration::from_millis(config.long(&def, ODATA_TIMEOUT_MS)?.max(100) as u64),
                    keyset_paging: config.string(&def, ODATA_PAGING)?.trim() == "keyset",
                })
            }
        };
        // Read in the order they always were, so the first error reported stays the same.
        let (url, user, password) =
            (config.string(&def, JDBC_URL)?, config.string(&def, JDBC_USER)?, config.string(&def, JDBC_PASSWORD)?);
        let connect_timeout = Duration::from_millis(config.long(&def, CONNECT_TIMEOUT_MS)?.max(100) as u64);
        let timezone = config.string(&def, DB_TIMEZONE)?.trim().to_string();
        let batch_max_rows = config.long(&def, BATCH_MAX_ROWS)?.max(1) as usize;
        let poll_interval = Duration::from_millis(config.long(&def, POLL_INTERVAL_MS)?.max(0) as u64);
        let lag_ms = config.long(&def, POLL_LAG_MS)?.max(0);
        let topic_prefix = config.string(&def, TOPIC_PREFIX)?;
        let route_field = optional(TOPIC_ROUTE_FIELD)?.map(|f| f.to_ascii_lowercase());
        let deletions_table = optional(DELETIONS_TABLE)?.map(|t| t.to_ascii_lowercase());
        let backend = match odata {
            Some(o) => Backend::OData(o),
            None => Backend::Jdbc(JdbcSettings { url, user, password, connect_timeout, timezone, deletions_table }),
        };
        Ok(Settings { backend, items, batch_max_rows, poll_interval, lag_ms, topic_prefix, route_field })
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
        assert_eq!((s.route_field, s.backend.deletions_table()), (None, None));
        let Backend::Jdbc(jdbc) = &s.backend else { panic!("jdbc is the default mode") };
        assert_eq!((jdbc.url.as_str(), jdbc.timezone.as_str()), ("postgres://h/db", "UTC"));

        let odata = Settings::parse(&base.clone().with(MODE, "odata")).unwrap_err();
        assert_eq!(odata.kind(), ErrorKind::Config);
        assert!(odata.message().starts_with("\"hybris.odata.user\": required"), "{odata}");
        let no_url = Settings::parse(&ConnectorConfig::new()).unwrap_err();
        assert!(no_url.message().starts_with("\"hybris.jdbc.url\": required"), "{no_url}");

        let odata = base
            .clone()
            .with(MODE, "odata")
            .with(ODATA_URL, "https://h/odata2webservices/")
            .with(ODATA_INTEGRATION_OBJECT, "Sluice")
            .with(ODATA_USER, "u")
            .with(ITEM_TYPES, "Order,Enrollment");
        let s = Settings::parse(&odata).unwrap();
        assert_eq!(s.backend.mode(), Mode::OData);
        let Backend::OData(o) = &s.backend else { panic!("odata mode") };
        assert_eq!(o.url, "https://h/odata2webservices");
        let sets: Vec<_> = s.items.iter().map(|i| i.entity_set.as_str()).collect();
        assert_eq!(sets, vec!["Orders", "Enrollments"], "custom types need no table in odata mode");
        let oauth = odata.clone().with(ODATA_AUTH, "oauth2").with(ODATA_TOKEN_URL, "https://h/token");
        let e = Settings::parse(&oauth).unwrap_err();
        assert!(e.message().starts_with("\"hybris.odata.oauth.client.id\""), "{e}");
        let e = Settings::parse(&odata.clone().with(DELETIONS_TABLE, "itemdeletionmarkers")).unwrap_err();
        assert!(e.message().starts_with("\"hybris.deletions.table\""), "{e}");

        let unknown = Settings::parse(&base.clone().with(ITEM_TYPES, "Order,Nope")).unwrap_err();
        assert!(unknown.message().starts_with("\"hybris.item.types\""), "{unknown}");
    }

    #[test]
    fn the_password_is_a_password() {
        let def = definition();
        for key in [JDBC_PASSWORD, ODATA_PASSWORD, ODATA_CLIENT_SECRET] {
            assert!(def.infos().iter().any(|i| i.name == key && i.is_password()), "{key}");
        }
    }
}
