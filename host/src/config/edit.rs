//! Edits of the config document for the runtime API: endpoints added,
//! changed and removed in place, keeping the file's comments, order and
//! layout (`toml_edit`). Pools and endpoints may be written as arrays of
//! tables (`[[pools]]`) or as inline arrays; both are edited where they are.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// Why an edit was refused before the config was validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditRefused {
    /// No pool has this name.
    #[error("no pool is named `{0}`")]
    NoSuchPool(String),
    /// The pool has no endpoint with this address.
    #[error("pool `{pool}` has no endpoint {address}")]
    NoSuchEndpoint {
        /// The pool.
        pool: String,
        /// The address asked for.
        address: String,
    },
    /// The pool has an endpoint with this address already.
    #[error("pool `{pool}` has an endpoint {address} already")]
    EndpointExists {
        /// The pool.
        pool: String,
        /// The address.
        address: String,
    },
}

/// What an operator may set on an endpoint; every field optional in a patch.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointFields {
    /// Relative share of traffic, at least 1.
    pub weight: Option<u32>,
    /// Maximum in flight; 0 is unlimited.
    pub capacity: Option<u32>,
    /// Priority tier: 0 is the primary.
    pub tier: Option<u32>,
    /// Zone, shown to plugins.
    pub zone: Option<String>,
    /// Labels, shown to plugins (replaced whole).
    pub labels: Option<BTreeMap<String, String>>,
    /// `active`, `draining` (no new requests; those in flight finish) or
    /// `disabled` (no requests).
    #[schema(value_type = Option<String>, example = "draining")]
    pub state: Option<super::EndpointState>,
}

/// Adds an endpoint at `address` to pool `pool`.
pub fn add_endpoint(
    document: &mut DocumentMut,
    pool: &str,
    address: &str,
    fields: &EndpointFields,
) -> Result<(), EditRefused> {
    let table = pool_table(document, pool)?;
    if find_endpoint(table, address).is_some() {
        return Err(EditRefused::EndpointExists {
            pool: pool.into(),
            address: address.into(),
        });
    }
    let mut endpoint = InlineTable::new();
    endpoint.insert("address", address.into());
    set_fields(&mut endpoint, fields);
    match table.get_mut("endpoints") {
        Some(Item::ArrayOfTables(tables)) => {
            let mut as_table = Table::new();
            for (key, value) in endpoint.iter() {
                as_table.insert(key, Item::Value(value.clone()));
            }
            tables.push(as_table);
        }
        Some(Item::Value(Value::Array(array))) => array.push(endpoint),
        _ => {
            let mut array = Array::new();
            array.push(endpoint);
            table.insert("endpoints", Item::Value(Value::Array(array)));
        }
    }
    Ok(())
}

/// Changes the fields given in `fields` of pool `pool`'s endpoint `address`.
pub fn update_endpoint(
    document: &mut DocumentMut,
    pool: &str,
    address: &str,
    fields: &EndpointFields,
) -> Result<(), EditRefused> {
    let table = pool_table(document, pool)?;
    let endpoint = find_endpoint(table, address).ok_or_else(|| EditRefused::NoSuchEndpoint {
        pool: pool.into(),
        address: address.into(),
    })?;
    set_fields(endpoint, fields);
    Ok(())
}

/// Removes pool `pool`'s endpoint `address`.
pub fn remove_endpoint(
    document: &mut DocumentMut,
    pool: &str,
    address: &str,
) -> Result<(), EditRefused> {
    let table = pool_table(document, pool)?;
    let missing = || EditRefused::NoSuchEndpoint {
        pool: pool.into(),
        address: address.into(),
    };
    match table.get_mut("endpoints") {
        Some(Item::ArrayOfTables(tables)) => {
            let index = (0..tables.len())
                .find(|&i| tables.get(i).is_some_and(|t| has_address(t, address)))
                .ok_or_else(missing)?;
            tables.remove(index);
        }
        Some(Item::Value(Value::Array(array))) => {
            let index = array
                .iter()
                .position(|v| v.as_inline_table().is_some_and(|t| has_address(t, address)))
                .ok_or_else(missing)?;
            array.remove(index);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

fn has_address(table: &dyn TableLike, address: &str) -> bool {
    table
        .get("address")
        .and_then(|a| a.as_str())
        .is_some_and(|a| a == address)
}

/// The table of pool `name`, however the pools are written.
fn pool_table<'a>(
    document: &'a mut DocumentMut,
    name: &str,
) -> Result<&'a mut dyn TableLike, EditRefused> {
    let missing = || EditRefused::NoSuchPool(name.into());
    let has_name = |table: &dyn TableLike| {
        table
            .get("name")
            .and_then(|n| n.as_str())
            .is_some_and(|n| n == name)
    };
    match document.get_mut("pools") {
        Some(Item::ArrayOfTables(tables)) => tables
            .iter_mut()
            .find(|t| has_name(*t))
            .map(|t| t as &mut dyn TableLike)
            .ok_or_else(missing),
        Some(Item::Value(Value::Array(array))) => array
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut())
            .find(|t| has_name(*t))
            .map(|t| t as &mut dyn TableLike)
            .ok_or_else(missing),
        _ => Err(missing()),
    }
}

/// The endpoint `address` of a pool's table, however the endpoints are
/// written.
fn find_endpoint<'a>(pool: &'a mut dyn TableLike, address: &str) -> Option<&'a mut dyn TableLike> {
    match pool.get_mut("endpoints")? {
        Item::ArrayOfTables(tables) => tables
            .iter_mut()
            .find(|t| has_address(*t, address))
            .map(|t| t as &mut dyn TableLike),
        Item::Value(Value::Array(array)) => array
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut())
            .find(|t| has_address(*t, address))
            .map(|t| t as &mut dyn TableLike),
        _ => None,
    }
}

fn set_fields(endpoint: &mut dyn TableLike, fields: &EndpointFields) {
    let mut set = |key: &str, value: Value| {
        endpoint.insert(key, Item::Value(value));
    };
    if let Some(weight) = fields.weight {
        set("weight", i64::from(weight).into());
    }
    if let Some(capacity) = fields.capacity {
        set("capacity", i64::from(capacity).into());
    }
    if let Some(tier) = fields.tier {
        set("tier", i64::from(tier).into());
    }
    if let Some(zone) = &fields.zone {
        set("zone", zone.as_str().into());
    }
    if let Some(labels) = &fields.labels {
        let mut table = InlineTable::new();
        for (key, value) in labels {
            table.insert(key, value.as_str().into());
        }
        set("labels", Value::InlineTable(table));
    }
    if let Some(state) = fields.state {
        if state == super::EndpointState::Active {
            endpoint.remove("state");
        } else {
            set("state", state.as_str().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The web pool.
[[pools]]
name = "web" # front
endpoints = [
  { address = "10.0.0.1:80" },   # first
]

[[pools]]
name = "api"

[[pools.endpoints]]
address = "10.0.1.1:80"
weight = 2

[[routes]]
pool = "web"
"#;

    #[test]
    fn endpoints_are_edited_in_place_keeping_comments_and_layout() {
        let mut document: DocumentMut = FILE.parse().unwrap();
        let fields = EndpointFields {
            weight: Some(3),
            ..EndpointFields::default()
        };
        add_endpoint(&mut document, "web", "10.0.0.2:80", &fields).unwrap();
        add_endpoint(&mut document, "api", "10.0.1.2:80", &fields).unwrap();
        update_endpoint(
            &mut document,
            "api",
            "10.0.1.1:80",
            &EndpointFields {
                state: Some(crate::config::EndpointState::Draining),
                ..EndpointFields::default()
            },
        )
        .unwrap();
        remove_endpoint(&mut document, "web", "10.0.0.1:80").unwrap();
        let text = document.to_string();
        assert!(
            text.starts_with("# The web pool.\n[[pools]]\nname = \"web\" # front\n"),
            "{text}"
        );
        assert!(
            text.contains("address = \"10.0.0.2:80\", weight = 3"),
            "{text}"
        );
        assert!(!text.contains("10.0.0.1:80"), "{text}");
        assert!(
            text.contains("[[pools.endpoints]]\naddress = \"10.0.1.2:80\"\nweight = 3"),
            "{text}"
        );
        assert!(text.contains("weight = 2\nstate = \"draining\""), "{text}");
        let config = crate::config::Config::parse(&text, "edited").unwrap();
        assert_eq!(config.pools[1].endpoints.len(), 2);
    }

    #[test]
    fn missing_pools_and_endpoints_and_duplicates_are_refused() {
        let mut document: DocumentMut = FILE.parse().unwrap();
        let none = EndpointFields::default();
        assert_eq!(
            add_endpoint(&mut document, "nope", "1.2.3.4:80", &none),
            Err(EditRefused::NoSuchPool("nope".into()))
        );
        assert!(matches!(
            add_endpoint(&mut document, "web", "10.0.0.1:80", &none),
            Err(EditRefused::EndpointExists { .. })
        ));
        assert!(matches!(
            remove_endpoint(&mut document, "api", "9.9.9.9:80"),
            Err(EditRefused::NoSuchEndpoint { .. })
        ));
        assert_eq!(document.to_string(), FILE, "a refused edit changes nothing");
    }

    #[test]
    fn a_pool_a_route_splits_to_or_mirrors_to_is_not_removed() {
        let file = "[[pools]]\nname = \"a\"\n[[pools]]\nname = \"b\"\n[[pools]]\nname = \"c\"\n\
                    [[pools]]\nname = \"d\"\n\n[[routes]]\n\
                    split = [{ pool = \"a\", weight = 9 }, { pool = \"b\", weight = 1 }]\n\
                    mirror = { pool = \"c\", percent = 5 }\n";
        for used in ["a", "b", "c"] {
            let mut document: DocumentMut = file.parse().unwrap();
            assert_eq!(
                remove_pool(&mut document, used),
                Err(PoolEditRefused::PoolInUse(used.into())),
                "{used}"
            );
        }
        let mut document: DocumentMut = file.parse().unwrap();
        remove_pool(&mut document, "d").unwrap();
    }
}

/// Why a pool or route edit was refused before validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolEditRefused {
    /// As for endpoints.
    #[error(transparent)]
    Endpoint(#[from] EditRefused),
    /// A pool has this name already.
    #[error("a pool is named `{0}` already")]
    PoolExists(String),
    /// Routes lead to the pool.
    #[error("routes lead to pool `{0}`: change them first (PUT /v1/routes)")]
    PoolInUse(String),
    /// The body is not a table of config keys.
    #[error("{0}")]
    NotATable(String),
}

/// `value` (from JSON) as a TOML item: tables inline, so a pool's keys
/// stay on its lines.
fn item(value: &serde_json::Value) -> Result<Item, PoolEditRefused> {
    use serde::Deserialize as _;
    let toml = toml::Value::deserialize(value.clone())
        .map_err(|e| PoolEditRefused::NotATable(format!("not a config value: {e}")))?;
    let text = toml::to_string(&toml::toml! { x = toml })
        .map_err(|e| PoolEditRefused::NotATable(format!("not a config value: {e}")))?;
    let mut document: DocumentMut = text
        .parse()
        .map_err(|e| PoolEditRefused::NotATable(format!("not a config value: {e}")))?;
    let item = document.remove("x").unwrap_or(Item::None);
    Ok(match item {
        Item::Table(table) => Item::Value(Value::InlineTable(table.into_inline_table())),
        Item::ArrayOfTables(tables) => {
            let mut array = Array::new();
            for table in tables {
                array.push(table.into_inline_table());
            }
            Item::Value(Value::Array(array))
        }
        other => other,
    })
}

/// Adds the pool `pool` (a JSON object of its keys, `name` among them).
pub fn add_pool(
    document: &mut DocumentMut,
    pool: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), PoolEditRefused> {
    let name = pool
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| PoolEditRefused::NotATable("a pool needs a `name`".into()))?;
    if pool_table(document, name).is_ok() {
        return Err(PoolEditRefused::PoolExists(name.into()));
    }
    let mut table = Table::new();
    for (key, value) in pool {
        table.insert(key, item(value)?);
    }
    match document.get_mut("pools") {
        Some(Item::ArrayOfTables(tables)) => tables.push(table),
        Some(Item::Value(Value::Array(array))) => array.push(table.into_inline_table()),
        _ => {
            let mut tables = toml_edit::ArrayOfTables::new();
            tables.push(table);
            document.insert("pools", Item::ArrayOfTables(tables));
        }
    }
    Ok(())
}

/// Sets the keys of pool `name` given in `changes` (`null` removes one);
/// its name and endpoints are not changed here.
pub fn update_pool(
    document: &mut DocumentMut,
    name: &str,
    changes: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), PoolEditRefused> {
    if let Some(key) = changes.keys().find(|k| *k == "name" || *k == "endpoints") {
        return Err(PoolEditRefused::NotATable(format!(
            "`{key}` is not changed here: endpoints have their own routes, and a pool keeps its name"
        )));
    }
    let mut items = Vec::new();
    for (key, value) in changes {
        items.push((key, (!value.is_null()).then(|| item(value)).transpose()?));
    }
    let table = pool_table(document, name)?;
    for (key, item) in items {
        match item {
            Some(item) => {
                table.insert(key, item);
            }
            None => {
                table.remove(key);
            }
        }
    }
    Ok(())
}

/// Whether `route` sends requests to pool `name`: as its `pool`, in its
/// `split` or as its `mirror`.
fn leads_to(route: &dyn TableLike, name: &str) -> bool {
    let table_names = |value: &Value| {
        value
            .as_inline_table()
            .is_some_and(|t| t.get("pool").and_then(|p| p.as_str()) == Some(name))
    };
    let split = match route.get("split") {
        Some(Item::Value(Value::Array(targets))) => targets.iter().any(table_names),
        Some(Item::ArrayOfTables(targets)) => targets
            .iter()
            .any(|t| t.get("pool").and_then(|p| p.as_str()) == Some(name)),
        _ => false,
    };
    let mirror = match route.get("mirror") {
        Some(Item::Value(value)) => table_names(value),
        Some(Item::Table(table)) => table.get("pool").and_then(|p| p.as_str()) == Some(name),
        _ => false,
    };
    route.get("pool").and_then(|p| p.as_str()) == Some(name) || split || mirror
}

/// Removes pool `name`, unless a route leads to it.
pub fn remove_pool(document: &mut DocumentMut, name: &str) -> Result<(), PoolEditRefused> {
    let routed = match document.get("routes") {
        Some(Item::ArrayOfTables(routes)) => routes.iter().any(|r| leads_to(r, name)),
        Some(Item::Value(Value::Array(routes))) => routes
            .iter()
            .filter_map(|r| r.as_inline_table())
            .any(|r| leads_to(r, name)),
        _ => false,
    };
    if routed {
        return Err(PoolEditRefused::PoolInUse(name.into()));
    }
    pool_table(document, name)?;
    let is_named = |table: &dyn TableLike| table.get("name").and_then(|n| n.as_str()) == Some(name);
    match document.get_mut("pools") {
        Some(Item::ArrayOfTables(tables)) => {
            if let Some(index) =
                (0..tables.len()).find(|&i| tables.get(i).is_some_and(|t| is_named(t)))
            {
                tables.remove(index);
            }
        }
        Some(Item::Value(Value::Array(array))) => {
            let index = array
                .iter()
                .position(|v| v.as_inline_table().is_some_and(|t| is_named(t)));
            if let Some(index) = index {
                array.remove(index);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces the route table with `routes` (JSON objects of route keys).
pub fn replace_routes(
    document: &mut DocumentMut,
    routes: &[serde_json::Map<String, serde_json::Value>],
) -> Result<(), PoolEditRefused> {
    let mut tables = toml_edit::ArrayOfTables::new();
    for route in routes {
        let mut table = Table::new();
        for (key, value) in route {
            table.insert(key, item(value)?);
        }
        tables.push(table);
    }
    document.remove("routes");
    if !tables.is_empty() {
        document.insert("routes", Item::ArrayOfTables(tables));
    }
    Ok(())
}
