//! The connector's keys and the settings a task runs with.
//!
//! [`Keys`] declares every key once (type, default, checks, group, doc);
//! [`Settings`] is built from it by a few cross-key steps, each blaming the
//! key it is about: the item types' mappings and the [`Backend`] the mode
//! chooses, with the keys that mode requires.

use std::time::Duration;

use connector_api::{
    config::typed::{config_error, ConfigEnum, Issues, Secret},
    config_enum, config_struct, ConfigIssue, ConnectorConfig, ConnectorError,
};

use crate::schema::{self, ItemMapping};

config_enum! {
    /// `hybris.mode`: which read path a connector uses.
    pub enum Mode { Jdbc = "jdbc", OData = "odata" }
}

config_enum! {
    /// `hybris.odata.auth`: how the Integration API authenticates.
    pub enum AuthMethod { Basic = "basic", OAuth2 = "oauth2" }
}

config_enum! {
    /// `hybris.odata.paging`: `$skip` pages of one delta query, or a new delta query per page.
    pub enum Paging { Skip = "skip", Keyset = "keyset" }
}

const CONNECTOR: &str = "Connector";
const DATABASE: &str = "Database";
const ODATA: &str = "OData";
const TOPICS: &str = "Topics";

config_struct! {
    /// Every key this connector understands, parsed and checked once;
    /// `Keys::jdbc_url` is the key's name (`hybris.jdbc.url`).
    #[derive(Debug)]
    pub struct Keys {
        /// How to read SAP Commerce: jdbc polls the Hybris database (on-premise or a replica); odata polls the
        /// Integration API (OData v2), the read path on Commerce Cloud.
        pub mode: Mode = key("hybris.mode").high().group(CONNECTOR).default(Mode::Jdbc),
        /// The Hybris database, PostgreSQL or MySQL/MariaDB: jdbc:postgresql://host:5432/db,
        /// jdbc:mysql://host:3306/db or jdbc:mariadb://host:3306/db (the jdbc: prefix is optional: postgres://,
        /// mysql://, mariadb://). Required with hybris.mode=jdbc.
        pub jdbc_url: Option<String> = key("hybris.jdbc.url").high().group(DATABASE),
        /// Database user (read-only is enough: SELECT on the item tables, composedtypes, enumerationvalues and the
        /// deletions table). Empty: the URL's user.
        pub jdbc_user: String = key("hybris.jdbc.user").high().group(DATABASE).default_text(""),
        /// Database password. Empty: the URL's, or none.
        pub jdbc_password: Secret = key("hybris.jdbc.password").high().group(DATABASE).default_text(""),
        /// Item types to stream, one source task each. Built in: Order, OrderEntry, Customer, Employee, User,
        /// Product, Address, Catalog, CatalogVersion; others need hybris.item.<Type>.table (and .key, .typecode,
        /// .where).
        pub item_types: Vec<String> = key("hybris.item.types").high().group(CONNECTOR)
            .default_text("Order,Customer,Product").non_empty().regex("[A-Za-z_][A-Za-z0-9_]*"),
        /// Rows read per query and item type.
        pub batch_max_rows: u32 = key("batch.max.rows").group(CONNECTOR).default(1000).range(1..=100_000),
        /// Pause between queries once a type has caught up.
        pub poll_interval_ms: Duration = key("poll.interval.ms").group(CONNECTOR)
            .default(Duration::from_millis(1000)).range(Duration::ZERO..=Duration::from_millis(3_600_000)),
        /// Only rows with modifiedTS older than the database clock minus this lag are read, so a transaction that
        /// commits late with an earlier modifiedTS is not skipped. Must exceed your longest write transaction.
        pub poll_lag_ms: i64 = key("hybris.poll.lag.ms").high().group(CONNECTOR).default(5000).range(0..=86_400_000),
        /// Topic = prefix + item type in lower case (hybris.order).
        pub topic_prefix: String = key("topic.prefix").group(TOPICS).default_text("hybris.").regex("[A-Za-z0-9._-]*"),
        /// An attribute (without p_, e.g. channel) whose value suffixes the topic: hybris.order.online. Enum
        /// references are resolved to their code through enumerationvalues. Items without the attribute go to the
        /// plain topic.
        pub topic_route_field: Option<String> =
            key("topic.route.field").group(TOPICS).regex("[A-Za-z_][A-Za-z0-9_]*"),
        /// A deletion-marker table (columns pk, modifiedts, p_itemtype, p_itempk, p_businesskey; see
        /// fixtures/hybris-schema.sql) read as tombstones keyed by the business key. Empty: deletions are not
        /// streamed.
        pub deletions_table: Option<String> =
            key("hybris.deletions.table").group(DATABASE).regex("[A-Za-z_][A-Za-z0-9_]*"),
        /// The time zone Hybris wrote createdTS/modifiedTS in (they carry none): the lag window compares them with
        /// the database clock read in this zone. UTC unless the Hybris JVM ran in another zone (e.g. Europe/Berlin).
        pub db_timezone: String = key("hybris.db.timezone").group(DATABASE).default_text("UTC").regex("[A-Za-z0-9_/+:-]+"),
        /// Timeout of a database connection attempt.
        pub jdbc_connect_timeout_ms: Duration = key("hybris.jdbc.connect.timeout.ms").low().group(DATABASE)
            .default(Duration::from_millis(5000)).range(Duration::from_millis(100)..=Duration::from_millis(600_000)),
        /// hybris.mode=odata: the Integration API's base URL, https://<host>/odata2webservices (required in odata
        /// mode).
        pub odata_url: Option<String> = key("hybris.odata.url").high().group(ODATA).regex(r"https?://[^\s?#]+"),
        /// hybris.mode=odata: the integration object's code (the service path after the base URL); it must model
        /// integrationKey, pk, creationtime, modifiedtime and the attributes to stream for every item type
        /// (required in odata mode).
        pub odata_integration_object: Option<String> =
            key("hybris.odata.integration.object").high().group(ODATA).regex("[A-Za-z0-9_]+"),
        /// hybris.mode=odata: basic (hybris.odata.user/password, a user in integrationadmingroup) or oauth2 (client
        /// credentials from hybris.odata.oauth.token.url).
        pub odata_auth: AuthMethod = key("hybris.odata.auth").high().group(ODATA).default(AuthMethod::Basic),
        /// hybris.odata.auth=basic: the Integration API user.
        pub odata_user: Option<String> = key("hybris.odata.user").high().group(ODATA),
        /// hybris.odata.auth=basic: that user's password.
        pub odata_password: Secret = key("hybris.odata.password").high().group(ODATA).default_text(""),
        /// hybris.odata.auth=oauth2: the token endpoint, https://<host>/authorizationserver/oauth/token.
        pub odata_oauth_token_url: Option<String> =
            key("hybris.odata.oauth.token.url").group(ODATA).regex(r"https?://[^\s#]+"),
        /// hybris.odata.auth=oauth2: the OAuth client id (an OAuthClientDetails with the client_credentials grant).
        pub odata_oauth_client_id: Option<String> = key("hybris.odata.oauth.client.id").group(ODATA),
        /// hybris.odata.auth=oauth2: the OAuth client secret.
        pub odata_oauth_client_secret: Secret = key("hybris.odata.oauth.client.secret").group(ODATA).default_text(""),
        /// hybris.mode=odata: timeout of one HTTP request (connect to end of body); a timed-out request is retried.
        pub odata_timeout_ms: Duration = key("hybris.odata.timeout.ms").low().group(ODATA)
            .default(Duration::from_millis(30_000)).range(Duration::from_millis(100)..=Duration::from_millis(600_000)),
        /// hybris.mode=odata: skip pages one delta query with $skip (guarded by __count); keyset starts every page
        /// as a new delta query after the last row read ($skip=0), whose cost does not grow with the backlog: better
        /// for large initial loads.
        pub odata_paging: Paging = key("hybris.odata.paging").group(ODATA).default(Paging::Skip),
    }
}

/// How the Integration API authenticates.
#[derive(Debug, Clone)]
pub enum ODataAuth {
    Basic { user: String, password: Secret },
    OAuth2 { token_url: String, client_id: String, client_secret: Secret },
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
    pub password: Secret,
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
    /// Parses a config for a task; a `Config` error lists every issue as `key: message`.
    pub fn parse(config: &ConnectorConfig) -> Result<Settings, ConnectorError> {
        Self::check(config).map_err(config_error)
    }

    /// Every key parsed and checked once, then the keys that only make
    /// sense together: every issue, each naming its key.
    pub fn check(config: &ConnectorConfig) -> Result<Settings, Vec<ConfigIssue>> {
        let k = Keys::parse(config)?;
        let mut issues = Issues::new();
        let odata = k.mode == Mode::OData;
        let items: Vec<ItemMapping> =
            k.item_types.iter().filter_map(|t| issues.take(schema::resolve(config, t, odata))).collect();
        let backend = match k.mode {
            Mode::Jdbc => issues.take(jdbc(&k)).map(Backend::Jdbc),
            Mode::OData => odata_settings(&k, &mut issues).map(Backend::OData),
        };
        let Some(backend) = backend else { return Err(issues.into_vec()) };
        issues.finish(|| Settings {
            backend,
            items,
            batch_max_rows: k.batch_max_rows as usize,
            poll_interval: k.poll_interval_ms,
            lag_ms: k.poll_lag_ms,
            topic_prefix: k.topic_prefix,
            route_field: k.topic_route_field.map(|f| f.trim().to_ascii_lowercase()),
        })
    }
}

/// A key the mode needs: its trimmed value, or an issue blaming it.
fn required(value: &Option<String>, key: &'static str, mode: Mode) -> Result<String, ConfigIssue> {
    let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty());
    value
        .map(str::to_string)
        .ok_or_else(|| ConfigIssue::new(key, format!("required with {}={}", Keys::mode, mode.config_name())))
}

fn jdbc(k: &Keys) -> Result<JdbcSettings, ConfigIssue> {
    Ok(JdbcSettings {
        url: required(&k.jdbc_url, Keys::jdbc_url, Mode::Jdbc)?,
        user: k.jdbc_user.clone(),
        password: k.jdbc_password.clone(),
        connect_timeout: k.jdbc_connect_timeout_ms,
        timezone: k.db_timezone.trim().to_string(),
        deletions_table: k.deletions_table.as_deref().map(|t| t.trim().to_ascii_lowercase()),
    })
}

/// The odata settings, or `None` with every missing key blamed.
fn odata_settings(k: &Keys, issues: &mut Issues) -> Option<ODataSettings> {
    if k.deletions_table.is_some() {
        issues.blame(
            Keys::deletions_table,
            "deletion markers are a database table; hybris.mode=odata cannot read them (leave it empty, or use \
             hybris.mode=jdbc)",
        );
    }
    let need = |value: &Option<String>, key| required(value, key, Mode::OData);
    let auth = match k.odata_auth {
        AuthMethod::Basic => issues
            .take(need(&k.odata_user, Keys::odata_user))
            .map(|user| ODataAuth::Basic { user, password: k.odata_password.clone() }),
        AuthMethod::OAuth2 => {
            let token_url = issues.take(need(&k.odata_oauth_token_url, Keys::odata_oauth_token_url));
            let client_id = issues.take(need(&k.odata_oauth_client_id, Keys::odata_oauth_client_id));
            let client_secret = k.odata_oauth_client_secret.clone();
            token_url.zip(client_id).map(|(token_url, client_id)| ODataAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
            })
        }
    };
    let url = issues.take(need(&k.odata_url, Keys::odata_url));
    let integration_object = issues.take(need(&k.odata_integration_object, Keys::odata_integration_object));
    Some(ODataSettings {
        url: url?.trim_end_matches('/').to_string(),
        integration_object: integration_object?,
        auth: auth?,
        timeout: k.odata_timeout_ms,
        keyset_paging: k.odata_paging == Paging::Keyset,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_schema_blames_the_item_types_key_by_its_declared_name() {
        assert_eq!(crate::schema::ITEM_TYPES, Keys::item_types);
    }

    use super::*;

    fn keys(issues: &[ConfigIssue]) -> Vec<&str> {
        issues.iter().map(|i| i.key.as_str()).collect()
    }

    fn base() -> ConnectorConfig {
        ConnectorConfig::new().with(Keys::jdbc_url, "postgres://h/db")
    }

    fn odata() -> ConnectorConfig {
        base()
            .with(Keys::mode, "odata")
            .with(Keys::odata_url, "https://h/odata2webservices/")
            .with(Keys::odata_integration_object, "Sluice")
            .with(Keys::odata_user, "u")
            .with(Keys::item_types, "Order,Enrollment")
    }

    #[test]
    fn defaults() {
        let s = Settings::check(&base()).unwrap();
        let types: Vec<_> = s.items.iter().map(|i| i.type_name.as_str()).collect();
        assert_eq!(types, vec!["Order", "Customer", "Product"]);
        assert_eq!((s.lag_ms, s.topic_prefix.as_str(), s.batch_max_rows), (5000, "hybris.", 1000));
        assert_eq!((s.route_field, s.backend.deletions_table()), (None, None));
        assert_eq!(s.poll_interval, Duration::from_secs(1));
        let Backend::Jdbc(jdbc) = &s.backend else { panic!("jdbc is the default mode") };
        assert_eq!((jdbc.url.as_str(), jdbc.timezone.as_str()), ("postgres://h/db", "UTC"));
        assert_eq!((jdbc.user.as_str(), jdbc.password.expose()), ("", ""));
        assert_eq!(jdbc.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn odata_settings_are_built_from_their_keys() {
        let s = Settings::check(&odata().with(Keys::odata_paging, "keyset")).unwrap();
        assert_eq!(s.backend.mode(), Mode::OData);
        let Backend::OData(o) = &s.backend else { panic!("odata mode") };
        assert_eq!((o.url.as_str(), o.integration_object.as_str()), ("https://h/odata2webservices", "Sluice"));
        assert_eq!((o.timeout, o.keyset_paging), (Duration::from_secs(30), true));
        assert!(matches!(&o.auth, ODataAuth::Basic { user, password } if user == "u" && password.is_empty()));
        let sets: Vec<_> = s.items.iter().map(|i| i.entity_set.as_str()).collect();
        assert_eq!(sets, vec!["Orders", "Enrollments"], "custom types need no table in odata mode");
        let oauth = odata()
            .with(Keys::odata_auth, "oauth2")
            .with(Keys::odata_oauth_token_url, "https://h/token")
            .with(Keys::odata_oauth_client_id, "c")
            .with(Keys::odata_oauth_client_secret, "s");
        let Backend::OData(o) = Settings::check(&oauth).unwrap().backend else { panic!("odata mode") };
        let ODataAuth::OAuth2 { token_url, client_id, client_secret } = o.auth else { panic!("oauth2") };
        assert_eq!((token_url.as_str(), client_id.as_str(), client_secret.expose()), ("https://h/token", "c", "s"));
    }

    #[test]
    fn the_published_keys_are_those_of_before_with_groups() {
        // (key, type, default, importance), in definition order.
        let table = [
            ("hybris.mode", "STRING", "jdbc", "HIGH"),
            ("hybris.jdbc.url", "STRING", "", "HIGH"),
            ("hybris.jdbc.user", "STRING", "", "HIGH"),
            ("hybris.jdbc.password", "PASSWORD", "", "HIGH"),
            ("hybris.item.types", "LIST", "Order,Customer,Product", "HIGH"),
            ("batch.max.rows", "INT", "1000", "MEDIUM"),
            ("poll.interval.ms", "LONG", "1000", "MEDIUM"),
            ("hybris.poll.lag.ms", "LONG", "5000", "HIGH"),
            ("topic.prefix", "STRING", "hybris.", "MEDIUM"),
            ("topic.route.field", "STRING", "", "MEDIUM"),
            ("hybris.deletions.table", "STRING", "", "MEDIUM"),
            ("hybris.db.timezone", "STRING", "UTC", "MEDIUM"),
            ("hybris.jdbc.connect.timeout.ms", "LONG", "5000", "LOW"),
            ("hybris.odata.url", "STRING", "", "HIGH"),
            ("hybris.odata.integration.object", "STRING", "", "HIGH"),
            ("hybris.odata.auth", "STRING", "basic", "HIGH"),
            ("hybris.odata.user", "STRING", "", "HIGH"),
            ("hybris.odata.password", "PASSWORD", "", "HIGH"),
            ("hybris.odata.oauth.token.url", "STRING", "", "MEDIUM"),
            ("hybris.odata.oauth.client.id", "STRING", "", "MEDIUM"),
            ("hybris.odata.oauth.client.secret", "PASSWORD", "", "MEDIUM"),
            ("hybris.odata.timeout.ms", "LONG", "30000", "LOW"),
            ("hybris.odata.paging", "STRING", "skip", "MEDIUM"),
        ];
        let infos = Keys::definition().infos();
        assert_eq!(infos.len(), table.len());
        for (info, (name, ty, default, importance)) in infos.iter().zip(table) {
            let shown = (info.name.as_str(), info.type_name.as_str(), info.importance.as_str());
            assert_eq!(shown, (name, ty, importance));
            assert_eq!(info.default_value.as_ref().map(|d| d.as_str()).into_option(), Some(default), "{name}");
            assert!(!info.required && !info.documentation.is_empty() && !info.group.is_empty(), "{name}");
        }
        let recommended = |name: &str| -> Vec<String> {
            let info = infos.iter().find(|i| i.name.as_str() == name);
            info.map(|i| i.recommended_values.iter().map(|v| v.to_string()).collect()).unwrap_or_default()
        };
        assert_eq!(recommended(Keys::mode), ["jdbc", "odata"]);
        assert_eq!(recommended(Keys::odata_auth), ["basic", "oauth2"]);
        assert_eq!(recommended(Keys::odata_paging), ["skip", "keyset"]);
    }

    #[test]
    fn each_key_accepts_and_refuses_what_it_did() {
        // (key, value, accepted); every refusal names the key alone.
        let table: &[(&str, &str, bool)] = &[
            ("hybris.mode", "odata", true),
            ("hybris.mode", "jdbc", true),
            ("hybris.mode", "rest", false),
            ("batch.max.rows", "0", false),
            ("batch.max.rows", "100000", true),
            ("batch.max.rows", "100001", false),
            ("batch.max.rows", "ten", false),
            ("poll.interval.ms", "0", true),
            ("poll.interval.ms", "-1", false),
            ("poll.interval.ms", "3600000", true),
            ("poll.interval.ms", "3600001", false),
            ("hybris.poll.lag.ms", "0", true),
            ("hybris.poll.lag.ms", "-1", false),
            ("hybris.poll.lag.ms", "86400001", false),
            ("hybris.jdbc.connect.timeout.ms", "99", false),
            ("hybris.jdbc.connect.timeout.ms", "600000", true),
            ("hybris.odata.timeout.ms", "100", true),
            ("hybris.odata.timeout.ms", "600001", false),
            ("hybris.item.types", "Order, B2BUnit ,_x", true),
            ("hybris.item.types", "Order,1x", false),
            ("hybris.item.types", " , ", false),
            ("topic.prefix", "", true),
            ("topic.prefix", "acme.hybris-", true),
            ("topic.prefix", "a b", false),
            ("topic.route.field", "channel", true),
            ("topic.route.field", "", true),
            ("topic.route.field", "1x", false),
            ("topic.route.field", " channel", false),
            ("hybris.deletions.table", "itemdeletionmarkers", true),
            ("hybris.deletions.table", "a;b", false),
            ("hybris.db.timezone", "Europe/Berlin", true),
            ("hybris.db.timezone", "+01:00", true),
            ("hybris.db.timezone", "", false),
            ("hybris.db.timezone", "Mars Time", false),
            ("hybris.odata.url", "https://h/odata2webservices", true),
            ("hybris.odata.url", "ftp://h", false),
            ("hybris.odata.url", "https://h/x?y", false),
            ("hybris.odata.integration.object", "Sluice_1", true),
            ("hybris.odata.integration.object", "a-b", false),
            ("hybris.odata.auth", "oauth2", true),
            ("hybris.odata.auth", "digest", false),
            ("hybris.odata.oauth.token.url", "https://h/token?x=1", true),
            ("hybris.odata.oauth.token.url", "h/token", false),
            ("hybris.odata.paging", "keyset", true),
            ("hybris.odata.paging", "page", false),
        ];
        for (key, value, accepted) in table {
            let c = base().with(*key, *value);
            let issues = Keys::validate(&c);
            let want: &[&str] = if *accepted { &[] } else { &[key] };
            assert_eq!(keys(&issues), want, "{key}={value}: {issues:?}");
            // The published definition judges with the same parser.
            assert_eq!(Keys::definition().validate(&c), issues, "{key}={value}");
        }
    }

    #[test]
    fn enum_names_match_in_any_case() {
        // Decided with the typed config: Kafka Connect's CaseInsensitiveValidString.
        assert_eq!(Settings::check(&base().with(Keys::mode, "JDBC")).unwrap().backend.mode(), Mode::Jdbc);
        let s = Settings::check(&odata().with(Keys::mode, " OData ").with(Keys::odata_paging, "KEYSET")).unwrap();
        assert!(matches!(s.backend, Backend::OData(ODataSettings { keyset_paging: true, .. })));
    }

    #[test]
    fn cross_key_issues_name_their_key_all_at_once() {
        let no_url = Settings::check(&ConnectorConfig::new()).unwrap_err();
        assert_eq!(no_url, vec![ConfigIssue::new("hybris.jdbc.url", "required with hybris.mode=jdbc")]);
        let e = Settings::parse(&ConnectorConfig::new()).unwrap_err();
        assert_eq!(e.kind(), connector_api::ErrorKind::Config);
        assert_eq!(e.message(), "hybris.jdbc.url: required with hybris.mode=jdbc");

        let bare_odata = Settings::check(&base().with(Keys::mode, "odata")).unwrap_err();
        assert_eq!(keys(&bare_odata), ["hybris.odata.user", "hybris.odata.url", "hybris.odata.integration.object"]);
        assert!(bare_odata.iter().all(|i| i.message == "required with hybris.mode=odata"), "{bare_odata:?}");
        let oauth = odata().with(Keys::odata_auth, "oauth2");
        assert_eq!(
            keys(&Settings::check(&oauth).unwrap_err()),
            ["hybris.odata.oauth.token.url", "hybris.odata.oauth.client.id"]
        );
        let oauth = oauth.with(Keys::odata_oauth_token_url, "https://h/token");
        assert_eq!(keys(&Settings::check(&oauth).unwrap_err()), ["hybris.odata.oauth.client.id"]);
        let deletions = odata().with(Keys::deletions_table, "itemdeletionmarkers");
        assert_eq!(keys(&Settings::check(&deletions).unwrap_err()), ["hybris.deletions.table"]);

        // Item types: each unknown type, each bad custom mapping key.
        let c = base().with(Keys::item_types, "Order,Nope,X").with("hybris.item.X.table", "x; drop table y");
        assert_eq!(keys(&Settings::check(&c).unwrap_err()), ["hybris.item.types", "hybris.item.X.table"]);
        let c = ConnectorConfig::new().with(Keys::item_types, "Order,Nope");
        assert_eq!(keys(&Settings::check(&c).unwrap_err()), ["hybris.item.types", "hybris.jdbc.url"]);
        let e = Settings::parse(&c).unwrap_err();
        assert!(e.message().starts_with("hybris.item.types: unknown item type \"Nope\""), "{e}");
        assert!(e.message().contains("; hybris.jdbc.url: required"), "{e}");

        // Per-key issues first; then the combinations can be judged.
        let c = ConnectorConfig::new().with(Keys::batch_max_rows, "0").with(Keys::mode, "odata");
        assert_eq!(keys(&Settings::check(&c).unwrap_err()), ["batch.max.rows"]);
    }

    #[test]
    fn passwords_are_passwords_and_stay_out_of_debug() {
        let infos = Keys::definition().infos();
        for key in [Keys::jdbc_password, Keys::odata_password, Keys::odata_oauth_client_secret] {
            assert!(infos.iter().any(|i| i.name == key && i.is_password()), "{key}");
        }
        let c = base().with(Keys::jdbc_password, "hunter2");
        let shown = format!("{:?} {:?}", Settings::check(&c).unwrap(), Keys::parse(&c).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        let c = odata().with(Keys::odata_password, "hunter2");
        assert!(!format!("{:?}", Settings::check(&c).unwrap()).contains("hunter2"));
    }
}
