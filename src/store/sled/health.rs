//! Whether the store can write and read, and why not: what `/healthz` and
//! `noom check` report, and what every write checks first.
//!
//! Three things make the store unhealthy:
//! - **little free space**: below `store.min_free_mb` on the data directory's
//!   filesystem, writes are refused before they reach the database (sled
//!   cannot take a full disk back without reopening), and accepted again as
//!   soon as space is freed;
//! - **a failed flush**: the database refuses writes until it is reopened
//!   (the committer does that, see `commit.rs`);
//! - **damaged data**: a read that finds a corrupt record. That does not heal:
//!   it stays reported, with the keys involved, until the next start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::StoreError;
use crate::store::model::StoreHealth;
use parking_lot::Mutex;

/// How long a free-space reading is reused (a reading costs about 0.5 us).
const SPACE_TTL: Duration = Duration::from_millis(5);
/// Damaged places remembered for reporting.
const DAMAGE_KEPT: usize = 16;

pub struct Health {
    dir: PathBuf,
    /// Writes are refused below this many free bytes (0: never).
    reserve: u64,
    /// Why the last flush failed, while the store has not reopened.
    failed: Mutex<Option<String>>,
    /// Corrupt places found by reads since start.
    damaged: Mutex<Vec<String>>,
    /// The last free-space reading and when it was taken.
    free: AtomicU64,
    read_at: Mutex<Option<Instant>>,
    low: AtomicBool,
}

impl Health {
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            failed: Mutex::new(None),
            damaged: Mutex::new(Vec::new()),
            free: AtomicU64::new(u64::MAX),
            read_at: Mutex::new(None),
            low: AtomicBool::new(false),
        }
    }

    /// Free bytes on the data directory's filesystem (re-read at most every
    /// 5 ms; `u64::MAX` when it cannot be read).
    pub fn free_bytes(&self) -> u64 {
        let mut at = self.read_at.lock();
        if at.is_none_or(|t| t.elapsed() >= SPACE_TTL) {
            let free = fs2::available_space(&self.dir).unwrap_or(u64::MAX);
            self.free.store(free, Ordering::Relaxed);
            self.low.store(free < self.reserve, Ordering::Relaxed);
            *at = Some(Instant::now());
        }
        self.free.load(Ordering::Relaxed)
    }

    /// `Ok` when a write may go to the database now.
    pub fn writable(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.failed.lock().clone() {
            return Err(StoreError::Unavailable { reason });
        }
        let free = self.free_bytes();
        if free < self.reserve {
            return Err(StoreError::DiskFull {
                path: self.dir.clone(),
                free_mib: free >> 20,
                reserve_mib: self.reserve >> 20,
            });
        }
        Ok(())
    }

    /// True when the filesystem has room for the database to reopen.
    pub fn room_to_reopen(&self) -> bool {
        // sled's recovery writes up to a segment (512 KiB) and a snapshot.
        self.free_bytes() >= self.reserve.max(2 << 20)
    }

    pub fn fail(&self, reason: String) {
        *self.failed.lock() = Some(reason);
    }

    pub fn recovered(&self) {
        *self.failed.lock() = None;
    }

    /// Records a read that found damaged data at `place`.
    pub fn damaged(&self, place: String) {
        let mut damaged = self.damaged.lock();
        if !damaged.contains(&place) {
            tracing::error!(%place, "the store holds damaged data here; restore it from a backup");
            if damaged.len() < DAMAGE_KEPT {
                damaged.push(place);
            }
        }
    }

    pub fn report(&self) -> StoreHealth {
        if let Some(reason) = self.failed.lock().clone() {
            return StoreHealth {
                status: "failing",
                detail: format!(
                    "writes are refused: {reason}; the store reopens by itself once {} has room",
                    self.dir.display()
                ),
            };
        }
        let free = self.free_bytes();
        if free < self.reserve {
            return StoreHealth {
                status: "disk_full",
                detail: format!(
                    "writes are refused: {} MiB free on the disk of {}, store.min_free_mb is {}; free some space",
                    free >> 20,
                    self.dir.display(),
                    self.reserve >> 20
                ),
            };
        }
        let damaged = self.damaged.lock();
        if !damaged.is_empty() {
            return StoreHealth {
                status: "damaged",
                detail: format!(
                    "unreadable data in the store ({}); restore {} from a backup",
                    damaged.join("; "),
                    self.dir.display()
                ),
            };
        }
        StoreHealth {
            status: "ok",
            detail: String::new(),
        }
    }
}
