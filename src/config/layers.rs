//! The layers of a configuration: defaults, file, environment, flags, merged
//! into one [`Config`] with each key checked against the defaults' shape.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, ConfigError, Overrides};

const ENV_PREFIX: &str = "NOOM_";
const DEFAULT_FILE: &str = "noom.toml";

/// Merges every layer; ranges are checked later, by `validate`.
pub fn merge<I>(overrides: &Overrides, env: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let defaults = defaults_table();
    let mut merged = defaults.clone();

    let file = match &overrides.config {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    if let Some(path) = file {
        let layer = read_file(&path)?;
        let origin = format!("in {}", path.display());
        merge_checked(&mut merged, &defaults, layer, "", &origin)?;
    }

    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (name, raw) in env {
        let (key, default) = env_key(&defaults, &name)?;
        let origin = format!("from {name}");
        let value = parse_scalar(&key, &origin, default, &raw)?;
        set_path(&mut merged, &key, value);
    }

    if let Some(http) = &overrides.http {
        set_path(&mut merged, "server.http", Value::String(http.clone()));
    }
    if let Some(dir) = &overrides.data_dir {
        let dir = dir.to_string_lossy().into_owned();
        set_path(&mut merged, "server.data_dir", Value::String(dir));
    }

    let config: Config = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::BadValue {
            key: "?".into(),
            origin: "merged configuration".into(),
            reason: e.to_string(),
        })?;
    Ok(config)
}

fn defaults_table() -> Table {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => t,
        // The defaults are plain structs of scalars: serialising them cannot fail.
        _ => Table::new(),
    }
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// Merges `layer` into `merged`, refusing keys the defaults do not have and
/// values whose type differs from the default's.
fn merge_checked(
    merged: &mut Table,
    defaults: &Table,
    layer: Table,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    for (name, value) in layer {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(default) = defaults.get(&name) else {
            return Err(ConfigError::UnknownKey {
                key,
                origin: origin.into(),
            });
        };
        match (default, value) {
            (Value::Table(d), Value::Table(v)) => {
                let slot = merged
                    .entry(name.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(m) = slot {
                    merge_checked(m, d, v, &key, origin)?;
                }
            }
            (d, v) => {
                check_type(&key, origin, d, &v)?;
                merged.insert(name, v);
            }
        }
    }
    Ok(())
}

fn check_type(key: &str, origin: &str, default: &Value, value: &Value) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadValue {
        key: key.into(),
        origin: origin.into(),
        reason,
    };
    if std::mem::discriminant(default) != std::mem::discriminant(value) {
        return Err(bad(format!(
            "expected {}, found {}",
            type_name(default),
            type_name(value)
        )));
    }
    if let Value::Integer(i) = value
        && *i < 0
    {
        return Err(bad(format!("must not be negative (got {i})")));
    }
    Ok(())
}

/// Maps `NOOM_SECTION_KEY` to `section.key` and its default value.
fn env_key<'a>(defaults: &'a Table, name: &str) -> Result<(String, &'a Value), ConfigError> {
    let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
    for (section, table) in defaults {
        let Value::Table(table) = table else { continue };
        if let Some(key) = rest.strip_prefix(&format!("{section}_"))
            && let Some(default) = table.get(key)
        {
            return Ok((format!("{section}.{key}"), default));
        }
    }
    Err(ConfigError::UnknownKey {
        key: name.into(),
        origin: "environment variable; expected NOOM_<SECTION>_<KEY>, e.g. NOOM_SERVER_HTTP".into(),
    })
}

fn parse_scalar(key: &str, origin: &str, default: &Value, raw: &str) -> Result<Value, ConfigError> {
    let bad = |reason: String| ConfigError::BadValue {
        key: key.into(),
        origin: origin.into(),
        reason,
    };
    let value = match default {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("expected an integer, found `{raw}`")))?,
        ),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => return Err(bad(format!("expected true or false, found `{raw}`"))),
        },
        Value::Float(_) => Value::Float(
            raw.trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("expected a number, found `{raw}`")))?,
        ),
        // Lists come as comma-separated strings: NOOM_TURN_ALLOW_PEERS=10.0.0.0/8,192.168.1.5
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        other => {
            return Err(bad(format!(
                "cannot be set from the environment ({})",
                type_name(other)
            )));
        }
    };
    check_type(key, origin, default, &value)?;
    Ok(value)
}

fn set_path(table: &mut Table, key: &str, value: Value) {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return;
        }
        let slot = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match slot {
            Value::Table(t) => current = t,
            _ => return,
        }
    }
}
