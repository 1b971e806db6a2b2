//! Item type → deployment table, business key and composed-type filter.
//!
//! Hybris maps every item type through `items.xml` `<deployment table=…>` to
//! a table; subtypes share their supertype's table (Customer and Employee
//! both live in `users`), so a type's rows are the rows of its table whose
//! `typepkstring` points at a `composedtypes` row with that `internalcode`.

use connector_api::{ConfigIssue, ConnectorConfig};

/// The key naming the item types (declared in `config.rs`; its tests check
/// the two agree). An unknown type is blamed on it.
pub const ITEM_TYPES: &str = "hybris.item.types";

/// How one item type is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMapping {
    /// The item type's name, as configured (`Order`): topic, header, offsets.
    pub type_name: String,
    /// Deployment table (`orders`).
    pub table: String,
    /// Business key column (`p_code`): the record key.
    pub key_column: String,
    /// `composedtypes.internalcode` values the rows must have; empty: every
    /// row of the table (no join).
    pub typecodes: Vec<String>,
    /// An extra SQL predicate on the table (alias `t`), e.g. live orders only.
    pub filter: Option<String>,
    /// hybris.mode=odata: the entity set of the integration object
    /// (`hybris.item.<Type>.entity.set`, default `<Type>s`: `Orders`).
    pub entity_set: String,
}

/// The built-in mappings (standard Hybris deployments).
fn builtin(type_name: &str) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    Some(match type_name {
        // Order snapshots (order versioning) share `orders`: stream live orders only.
        "Order" => ("orders", "p_code", Some("t.p_versionid IS NULL")),
        "OrderEntry" => ("orderentries", "pk", None),
        "Customer" | "Employee" | "User" => ("users", "p_uid", None),
        "Product" => ("products", "p_code", None),
        "Address" => ("addresses", "pk", None),
        "Catalog" => ("catalogs", "p_id", None),
        "CatalogVersion" => ("catalogversions", "pk", None),
        _ => return None,
    })
}

/// Table and column names are spliced into SQL: accept plain identifiers only.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// The config key of a custom mapping attribute (`hybris.item.Order.table`).
pub fn item_key(type_name: &str, attribute: &str) -> String {
    format!("hybris.item.{type_name}.{attribute}")
}

/// Resolves one item type from the built-ins and the `hybris.item.<Type>.*`
/// keys (which override them). Errors name the key to fix. In odata mode a
/// type needs no table: the integration object's entity set stands for it.
pub fn resolve(config: &ConnectorConfig, type_name: &str, odata: bool) -> Result<ItemMapping, ConfigIssue> {
    let custom = |attr: &str| config.get(&item_key(type_name, attr)).map(str::trim).filter(|v| !v.is_empty());
    let base = builtin(type_name);
    let entity_set = custom("entity.set").map(str::to_string).unwrap_or_else(|| format!("{type_name}s"));
    if !entity_set.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ConfigIssue::new(
            item_key(type_name, "entity.set"),
            format!("\"{entity_set}\" is not an entity set name"),
        ));
    }
    let table = match (custom("table"), base) {
        (Some(t), _) => t.to_ascii_lowercase(),
        (None, Some((t, _, _))) => t.to_string(),
        (None, None) if odata => type_name.to_ascii_lowercase(),
        (None, None) => {
            return Err(ConfigIssue::new(
                ITEM_TYPES,
                format!(
                    "unknown item type \"{type_name}\": it has no built-in mapping (Order, OrderEntry, Customer, \
                     Employee, User, Product, Address, Catalog, CatalogVersion); map it with {}",
                    item_key(type_name, "table")
                ),
            ))
        }
    };
    if !is_identifier(&table) {
        return Err(ConfigIssue::new(item_key(type_name, "table"), format!("\"{table}\" is not a plain table name")));
    }
    let key_column = custom("key").map(str::to_ascii_lowercase).or(base.map(|(_, k, _)| k.to_string()));
    let key_column = key_column.unwrap_or_else(|| "pk".to_string());
    if !is_identifier(&key_column) {
        return Err(ConfigIssue::new(
            item_key(type_name, "key"),
            format!("\"{key_column}\" is not a plain column name"),
        ));
    }
    // `*` switches the composed-type filter off (a table holding one type only).
    let typecodes = match custom("typecode") {
        Some("*") => Vec::new(),
        Some(codes) => codes.split('|').map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect(),
        None => vec![type_name.to_string()],
    };
    let filter = match custom("where") {
        Some(w) => Some(w.to_string()),
        None if custom("table").is_none() => base.and_then(|(_, _, f)| f).map(str::to_string),
        None => None,
    };
    Ok(ItemMapping { type_name: type_name.to_string(), table, key_column, typecodes, filter, entity_set })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_custom_mappings() {
        let c = ConnectorConfig::new()
            .with("hybris.item.Enrollment.table", "EventRegistrations")
            .with("hybris.item.Enrollment.key", "p_code")
            .with("hybris.item.Customer.typecode", "Customer|B2BCustomer");
        let order = resolve(&c, "Order", false).unwrap();
        assert_eq!((order.table.as_str(), order.key_column.as_str()), ("orders", "p_code"));
        assert_eq!(order.typecodes, vec!["Order"]);
        assert!(order.filter.is_some());
        let e = resolve(&c, "Enrollment", false).unwrap();
        assert_eq!((e.table.as_str(), e.key_column.as_str()), ("eventregistrations", "p_code"));
        assert_eq!(resolve(&c, "Customer", false).unwrap().typecodes, vec!["Customer", "B2BCustomer"]);
        assert_eq!(resolve(&c, "Nope", false).unwrap_err().key, "hybris.item.types");
        let bad = ConnectorConfig::new().with("hybris.item.X.table", "x; drop table y");
        assert_eq!(resolve(&bad, "X", false).unwrap_err().key, "hybris.item.X.table");
    }
}
