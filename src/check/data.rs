//! The data directory, the store in it (read through, or asked through a
//! running server's `/healthz`) and the admin password file.

use std::path::Path;

use serde_json::Value;

use super::Report;
use crate::config::{Config, Resolved};

/// Checks the data directory; returns whether a running noom holds it.
pub(super) fn check_data_dir(dir: &Path, r: &mut Report) -> bool {
    if !dir.exists() {
        let mut parent = dir.parent();
        while let Some(p) = parent {
            if p.as_os_str().is_empty() {
                parent = Some(Path::new("."));
                break;
            }
            if p.exists() {
                break;
            }
            parent = p.parent();
        }
        let parent = parent.unwrap_or(Path::new("."));
        match probe_writable(parent) {
            Ok(()) => r.ok(
                "data",
                format!("{} does not exist yet; it will be created", dir.display()),
            ),
            Err(e) => r.fail(
                "data",
                format!(
                    "{} does not exist and cannot be created in {}: {e}",
                    dir.display(),
                    parent.display()
                ),
                "create it and give it to the user running noom (systemd: StateDirectory=noom)",
            ),
        }
        return false;
    }
    if !dir.is_dir() {
        r.fail(
            "data",
            format!("{} is not a directory", dir.display()),
            "point server.data_dir at a directory",
        );
        return false;
    }
    if let Err(e) = probe_writable(dir) {
        r.fail(
            "data",
            format!("{} is not writable: {e}", dir.display()),
            "give it to the user running noom (chown), or choose another server.data_dir",
        );
        return false;
    }
    // sled holds an exclusive lock on `db` while a server runs.
    let locked = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(crate::store::DB_DIR).join("db"))
        .ok()
        .is_some_and(|f| match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        });
    if locked {
        r.ok(
            "data",
            format!("{} is writable and in use by a running noom", dir.display()),
        );
    } else {
        r.ok("data", format!("{} is writable", dir.display()));
    }
    locked
}

/// The database: opened and read through when no server holds it, else as
/// the running server's `/healthz` reports it.
pub(super) async fn check_store(
    config: &Config,
    at: &Resolved,
    in_use: bool,
    noom_running: bool,
    r: &mut Report,
) {
    if config.store.backend == "postgres" {
        check_postgres(config, r).await;
        return;
    }
    let dir = config.server.data_dir.clone();
    if in_use {
        let http = Some(at.http);
        let health = match http {
            Some(http) if noom_running => {
                super::network::probe_json(http, config.tls_enabled(), "/healthz").await
            }
            _ => None,
        };
        match health {
            Some(h) if h.get("store").and_then(Value::as_str) == Some("ok") => {
                r.ok("store", "the running noom reports its store ok")
            }
            Some(h) => r.fail(
                "store",
                format!(
                    "the running noom reports its store {}: {}",
                    h.get("store").and_then(Value::as_str).unwrap_or("?"),
                    h.get("store_detail").and_then(Value::as_str).unwrap_or("")
                ),
                "see its log; free disk space, or restore the data directory from a backup",
            ),
            None => r.warn(
                "store",
                "in use by a running noom that did not answer /healthz",
                "check that process and its log",
            ),
        }
        return;
    }
    if !dir.join(crate::store::DB_DIR).exists() {
        r.ok("store", "none yet: created at first start");
        return;
    }
    let options = crate::store::StoreOptions {
        cache_bytes: config.store.cache_mb << 20,
        ..crate::store::StoreOptions::default()
    };
    let verified = async {
        let store = crate::store::Store::open(
            &dir,
            &options,
            std::sync::Arc::new(crate::metrics::Metrics::default()),
        )
        .await?;
        let health = store.health();
        let verified = store.verify().await?;
        Ok::<_, crate::store::StoreError>((health, verified))
    }
    .await;
    match verified {
        Ok((_, v)) if v.damaged.is_empty() => r.ok(
            "store",
            format!(
                "{} rooms, {} messages and {} session records, all readable",
                v.rooms, v.messages, v.sessions
            ),
        ),
        Ok((_, v)) => r.fail(
            "store",
            format!("damaged data: {}", v.damaged.join("; ")),
            "restore the data directory from a backup; the rest is still served",
        ),
        // A noom that started meanwhile holds it: not a fault of the store.
        Err(e @ crate::store::StoreError::Locked(_)) => r.warn(
            "store",
            format!("not read: {e}"),
            "run noom check again, or ask the running noom: curl its /healthz",
        ),
        Err(e) => r.fail(
            "store",
            format!("cannot be opened: {e}"),
            "restore the data directory from a backup, or move it aside to start empty",
        ),
    }
}

/// The store in PostgreSQL: reachable, its version, the schema's version
/// and what it holds (read only: the schema is made by the first start).
async fn check_postgres(config: &Config, r: &mut Report) {
    let settings = crate::store::PgSettings {
        url: config.store.postgres_url.clone(),
        pool: 1,
        schema: config.store.postgres_schema.clone(),
    };
    let schema = &settings.schema;
    match crate::store::probe_postgres(&settings).await {
        Ok(p) => match (p.schema_version, p.counts) {
            (_, Some(v)) => r.ok(
                "store",
                format!(
                    "PostgreSQL {} at {}, schema `{schema}` (version {}): {} rooms, {} messages, {} sessions",
                    p.server_version, p.place, p.expected, v.rooms, v.messages, v.sessions
                ),
            ),
            (None, None) => r.ok(
                "store",
                format!(
                    "PostgreSQL {} at {}; schema `{schema}` is created at first start",
                    p.server_version, p.place
                ),
            ),
            (Some(found), None) if found > p.expected => r.fail(
                "store",
                format!(
                    "schema `{schema}` at {} is version {found}, newer than this noom reads ({})",
                    p.place, p.expected
                ),
                "run the noom version that wrote it, or point store.postgres_schema elsewhere",
            ),
            (Some(found), None) => r.ok(
                "store",
                format!(
                    "PostgreSQL {} at {}, schema `{schema}` version {found}: migrated to {} at next start",
                    p.server_version, p.place, p.expected
                ),
            ),
        },
        Err(e) => r.fail(
            "store",
            e.to_string(),
            "start PostgreSQL, or check store.postgres_url (user, password, host, port, database)",
        ),
    }
}

/// The admin password: configured, generated earlier, or to be generated.
pub(super) fn check_admin(config: &Config, r: &mut Report) {
    let admin = &config.admin;
    if !admin.enabled {
        r.ok("admin", "the admin page is off (admin.enabled = false)");
        return;
    }
    let token = if admin.api_token.is_empty() {
        ""
    } else {
        "; API token set"
    };
    if !admin.password_hash.is_empty() {
        match crate::admin::password::check_hash(&admin.password_hash, "admin.password_hash") {
            Ok(()) => r.ok("admin", format!("password from admin.password_hash{token}")),
            Err(e) => r.fail(
                "admin",
                e.to_string(),
                "put the line `noom hash-password` prints in admin.password_hash",
            ),
        }
        return;
    }
    let file = config
        .server
        .data_dir
        .join(crate::admin::password::PASSWORD_FILE);
    let origin = file.display().to_string();
    match std::fs::read_to_string(&file) {
        Ok(text) if crate::admin::password::check_hash(text.trim(), &origin).is_ok() => r.ok(
            "admin",
            format!(
                "password generated at first start (hash in {}; printed in the log of that start){token}",
                file.display()
            ),
        ),
        Ok(_) => r.fail(
            "admin",
            format!("{} does not hold an Argon2id hash", file.display()),
            "delete it to have a new password generated and printed at the next start, \
             or set admin.password_hash (`noom hash-password`)",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.ok(
            "admin",
            format!(
                "a password will be generated at the first start and printed once in the log{token}"
            ),
        ),
        Err(e) => r.fail(
            "admin",
            format!("cannot read {}: {e}", file.display()),
            "let the user running noom read the data directory",
        ),
    }
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".noom-check-{}", std::process::id()));
    std::fs::write(&probe, b"check")?;
    std::fs::remove_file(&probe)
}
