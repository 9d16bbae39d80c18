//! Retention: drop the oldest messages beyond a per-room count or age.
//!
//! Runs in the background. For a room within its limits the pass costs one
//! forward seek; messages go oldest first, in batches, after the room's seq floor
//! has been raised so that their seqs are never handed out again.

use super::messages;
use super::rooms::Rooms;
use crate::store::StoreError;
use crate::store::model::Retention;

/// At most this many deletions per room and pass, so one pass never stalls writers.
const BATCH: usize = 10_000;

pub fn enforce(rooms: &Rooms, policy: &Retention, now_ms: i64) -> Result<u64, StoreError> {
    if policy.max_messages == 0 && policy.max_age_ms == 0 {
        return Ok(0);
    }
    let expired_before = if policy.max_age_ms > 0 {
        now_ms.saturating_sub(policy.max_age_ms)
    } else {
        i64::MIN
    };
    let mut removed = 0u64;
    for room in rooms.all() {
        let cutoff = if policy.max_messages > 0 {
            room.last_seq.saturating_sub(policy.max_messages)
        } else {
            0
        };
        let doomed = |key: &[u8], value: &[u8]| -> Result<bool, StoreError> {
            Ok(messages::seq_of(key)? <= cutoff || messages::ts_of(value)? < expired_before)
        };
        let (start, end) = messages::room_range(&room.name);
        let Some(first) = rooms.messages.range(start.clone()..end.clone()).next() else {
            continue;
        };
        let (k, v) = first?;
        if !doomed(&k, &v)? {
            continue;
        }
        rooms.raise_floor(&room.name)?;
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        for item in rooms.messages.range(start..end).take(BATCH) {
            let (k, v) = item?;
            if !doomed(&k, &v)? {
                break;
            }
            batch.remove(k);
            n += 1;
        }
        rooms.messages.apply_batch(batch)?;
        rooms.expired(&room.name, n as u64);
        removed += n as u64;
    }
    Ok(removed)
}
