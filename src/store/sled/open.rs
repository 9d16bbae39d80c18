//! Opening the database: waiting for a previous instance's lock, turning
//! sled's panics and corruption errors into a named damage, checking the
//! schema, and building the in-memory indexes from the trees.

use std::path::Path;

use super::{DB_DIR, Open, rooms, sessions};
use crate::store::StoreError;
use crate::store::model::StoreOptions;

/// Version of the on-disk layout. Bumped when keys or values change shape.
pub const SCHEMA_VERSION: u64 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";

/// Opens the database and builds the index, waiting up to a second for the
/// file lock of a previous instance in this process (sled's helper threads
/// release it a few ms after the drop). A panic inside sled on damaged files
/// becomes [`StoreError::Damaged`].
pub fn open_db(data_dir: &Path, options: &StoreOptions) -> Result<(Open, Vec<String>), StoreError> {
    let path = data_dir.join(DB_DIR);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let db = loop {
        let attempt = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(&path)
                .cache_capacity(options.cache_bytes)
                // Durability comes from the committer; this is only a backstop.
                .flush_every_ms(Some(1000))
                .open()
        });
        match attempt {
            Ok(Ok(db)) => break db,
            Ok(Err(sled::Error::Io(io))) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked(data_dir.to_path_buf()));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(Err(sled::Error::Corruption { at, .. })) => {
                return Err(StoreError::Damaged {
                    path: path.clone(),
                    reason: match at {
                        Some(at) => format!("corrupt data at {at}"),
                        None => "a corrupt snapshot or log".into(),
                    },
                });
            }
            Ok(Err(other)) => return Err(other.into()),
            Err(_) => {
                return Err(StoreError::Damaged {
                    path: path.clone(),
                    reason: "the database engine failed while reading its files".into(),
                });
            }
        }
    };
    let damaged = |e: StoreError| match e {
        StoreError::Corrupt { .. } => StoreError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        },
        other => other,
    };
    check_schema(&db).map_err(damaged)?;
    let sessions =
        sessions::SessionTrees::open(db.open_tree("sessions")?, db.open_tree("sessions_seen")?)
            .map_err(damaged)?;
    let (rooms, bad_rooms) = rooms::Rooms::open(
        db.open_tree("rooms")?,
        db.open_tree("messages")?,
        db.open_tree("room_passwords")?,
        db.open_tree("room_moderation")?,
    )
    .map_err(damaged)?;
    Ok((
        Open {
            db,
            sessions,
            rooms,
        },
        bad_rooms,
    ))
}

fn check_schema(db: &sled::Db) -> Result<(), StoreError> {
    match db.get(SCHEMA_KEY)? {
        Some(raw) => {
            let found = <[u8; 8]>::try_from(raw.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "default",
                    reason: "schema version is not 8 bytes".into(),
                })?;
            if found != SCHEMA_VERSION {
                return Err(StoreError::Schema {
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        None => {
            db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
        }
    }
    Ok(())
}
