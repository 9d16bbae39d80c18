//! Delivering stored chat messages to their rooms, in `seq` order, on one
//! node or several.
//!
//! The store settles a node's own messages in seq order; this task sends
//! them to the room's sockets on this node and, in a cluster, publishes them
//! on the `<cluster>:messages.mp` channel for the other nodes (a batch per
//! publish, in MessagePack: every node decodes every other node's
//! messages, so their encoding is the cluster's cost). Each node puts
//! its own and the others' messages of a room back in seq order before its
//! sockets see them (the contract: copies go out in seq order): a message
//! that arrives ahead of a missing seq waits for it, at most
//! [`REORDER_WAIT`] (a missing seq may never come: a message whose fate the
//! store could not tell, delivered late if it was stored).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use socketioxide::socket::Sid;
use socketioxide_redis::drivers::Driver;
use tokio_util::sync::CancellationToken;

use super::SocketIo;
use super::hub::{self, Delivery, Hub};
use super::protocol::events;
use crate::cluster::Bus;
use crate::store::Message;

/// The longest a message waits for the seqs before it.
pub const REORDER_WAIT: Duration = Duration::from_millis(250);
/// A room whose delivery has been quiet this long is forgotten (its next
/// message is taken as it comes).
const ROOM_IDLE: Duration = Duration::from_secs(60);
/// How many of this node's messages one publish to Redis carries at most.
const BATCH_MAX: usize = 256;

/// One publish on the messages channel: a node's messages, each with its
/// sender's socket id (the sender has its message from its ack).
#[derive(Deserialize)]
struct Batch {
    node: String,
    items: Vec<(String, Message)>,
}

/// A [`Batch`] as published (borrowing the messages; the same encoding).
#[derive(Serialize)]
struct BatchOut<'a> {
    node: &'a str,
    items: Vec<(String, &'a Message)>,
}

/// A message held for its order, with who sent it and since when it waits.
type Held = (Option<Sid>, Message, Instant);

/// One room's order: the next seq to deliver and what waits for it.
struct RoomOrder {
    next: u64,
    held: BTreeMap<u64, Held>,
    last: Instant,
}

/// What this node delivers to its sockets, room by room, in seq order.
#[derive(Default)]
struct Order {
    rooms: HashMap<String, RoomOrder>,
}

type Due = Vec<(Option<Sid>, Message)>;

impl Order {
    /// Takes a message in; returns those now due, in order.
    fn offer(&mut self, from: Option<Sid>, message: Message, now: Instant) -> Due {
        let seq = message.seq;
        let room = self
            .rooms
            .entry(message.room.clone())
            .or_insert_with(|| RoomOrder {
                next: seq,
                held: BTreeMap::new(),
                last: now,
            });
        room.last = now;
        if seq < room.next {
            // Behind the order (a message confirmed late, or one that
            // waited too long): it goes now.
            return vec![(from, message)];
        }
        room.held.insert(seq, (from, message, now));
        room.release()
    }

    /// Starts `room`'s order at `next`, unless it has one.
    fn seed(&mut self, room: String, next: u64, now: Instant) {
        self.rooms.entry(room).or_insert_with(|| RoomOrder {
            next,
            held: BTreeMap::new(),
            last: now,
        });
    }

    /// Gives up on the missing seqs in front of messages that waited
    /// [`REORDER_WAIT`]; forgets idle rooms. Returns what is now due.
    fn expire(&mut self, now: Instant) -> Due {
        let mut out = Vec::new();
        for room in self.rooms.values_mut() {
            while let Some((&first, (_, _, since))) = room.held.first_key_value() {
                if now.duration_since(*since) < REORDER_WAIT {
                    break;
                }
                room.next = first;
                out.extend(room.release());
            }
        }
        self.rooms
            .retain(|_, r| !r.held.is_empty() || now.duration_since(r.last) < ROOM_IDLE);
        out
    }
}

impl RoomOrder {
    fn release(&mut self) -> Due {
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let (from, message, _) = entry.remove();
            out.push((from, message));
            self.next += 1;
        }
        out
    }
}

/// Delivers the stored messages to their rooms until `shutdown` (what is
/// queued then still goes out).
pub async fn deliver_messages(hub: Arc<Hub>, io: SocketIo, bus: Bus, shutdown: CancellationToken) {
    let (Some(mut queue), Some(mut seeds)) = (hub.take_deliveries(), hub.take_seeds()) else {
        return;
    };
    let node = hub.config.cluster.node_id.clone();
    let channel = format!("{}:messages.mp", hub.config.cluster.name);
    // Weak: connections that outlive a shutdown never keep the store open.
    let hub = Arc::downgrade(&hub);
    let redis = match &bus {
        Bus::Alone => None,
        Bus::Redis(r) => Some(r.clone()),
    };
    let mut remote = match &redis {
        None => None,
        Some(_) => loop {
            match bus.subscribe(channel.clone(), 65_536).await {
                Ok(s) => break Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the other nodes' messages yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        },
    };
    let mut order = Order::default();
    let mut tick = tokio::time::interval(REORDER_WAIT / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Delivery> = Vec::new();
    loop {
        let due = tokio::select! {
            biased;
            d = queue.recv() => {
                let Some(d) = d else { return };
                batch.push(d);
                while batch.len() < BATCH_MAX {
                    match queue.try_recv() {
                        Ok(d) => batch.push(d),
                        Err(_) => break,
                    }
                }
                if let Some(r) = &redis {
                    publish(r, &channel, &node, &batch).await;
                }
                let now = Instant::now();
                let mut due = Vec::new();
                for d in batch.drain(..) {
                    due.extend(order.offer(Some(d.from.id), d.message, now));
                }
                due
            }
            m = async {
                match remote.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((_, body)) = m else {
                    tracing::error!("the subscription to the other nodes' messages ended");
                    remote = None;
                    continue;
                };
                match rmp_serde::from_slice::<Batch>(&body) {
                    Ok(b) if b.node == node => continue,
                    Ok(b) => {
                        let now = Instant::now();
                        let mut due = Vec::new();
                        for (from, message) in b.items {
                            due.extend(order.offer(from.parse().ok(), message, now));
                        }
                        due
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "messages from another node that are not ours");
                        continue;
                    }
                }
            }
            Some((room, next)) = seeds.recv() => {
                order.seed(room, next, Instant::now());
                continue;
            }
            _ = tick.tick() => order.expire(Instant::now()),
            _ = shutdown.cancelled() => match queue.try_recv() {
                Ok(d) => order.offer(Some(d.from.id), d.message, Instant::now()),
                Err(_) => return,
            },
        };
        for (from, message) in due {
            // Its sender has it (its ack), and so has a socket whose
            // `enter_room` returned it.
            let mut except: Vec<String> = hub
                .upgrade()
                .map(|h| h.already_have(&message.room, message.seq))
                .unwrap_or_default()
                .into_iter()
                .map(|sid| sid.to_string())
                .collect();
            except.extend(from.map(|sid| sid.to_string()));
            let _ = io
                .local()
                .to(hub::chat_group(&message.room))
                .except(except)
                .emit(events::NEW_MESSAGE, &message)
                .await;
        }
    }
}

/// Publishes this node's messages to the others, in one round trip.
async fn publish(redis: &crate::cluster::RedisBus, channel: &str, node: &str, batch: &[Delivery]) {
    if redis.is_down() {
        return;
    }
    let out = BatchOut {
        node,
        items: batch
            .iter()
            .map(|d| (d.from.id.to_string(), &d.message))
            .collect(),
    };
    let body = match rmp_serde::to_vec(&out) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode messages for the other nodes");
            return;
        }
    };
    let mut conn = redis.conn();
    if let Err(e) = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(body)
        .exec_async(&mut conn)
        .await
    {
        redis.mark(false);
        tracing::warn!(error = %e, "messages could not reach the other nodes (they fetch them when they notice the gap)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64) -> Message {
        Message {
            room: "r".into(),
            seq,
            user: "u".into(),
            nickname: "n".into(),
            text: "t".into(),
            ts: 0,
        }
    }

    fn seqs(out: Due) -> Vec<u64> {
        out.into_iter().map(|(_, m)| m.seq).collect()
    }

    #[test]
    fn a_batch_as_published_is_read_back_whole() {
        let (a, b) = (m(1), m(2));
        let out = BatchOut {
            node: "n1",
            items: vec![("sid-a".into(), &a), ("sid-b".into(), &b)],
        };
        let body = rmp_serde::to_vec(&out).expect("encodes");
        let back: Batch = rmp_serde::from_slice(&body).expect("decodes");
        assert_eq!(back.node, "n1");
        assert_eq!(back.items, vec![("sid-a".into(), a), ("sid-b".into(), b)]);
    }

    #[test]
    fn a_message_ahead_waits_for_the_one_before_it() {
        let mut o = Order::default();
        let t = Instant::now();
        assert_eq!(seqs(o.offer(None, m(5), t)), [5]);
        assert_eq!(seqs(o.offer(None, m(7), t)), Vec::<u64>::new());
        assert_eq!(seqs(o.offer(None, m(6), t)), [6, 7]);
        assert_eq!(seqs(o.offer(None, m(8), t)), [8]);
    }

    #[test]
    fn a_seq_that_never_comes_holds_the_others_at_most_reorder_wait() {
        let mut o = Order::default();
        let t = Instant::now();
        o.offer(None, m(1), t);
        assert!(o.offer(None, m(3), t).is_empty());
        assert!(o.offer(None, m(4), t).is_empty());
        assert!(o.expire(t + REORDER_WAIT / 2).is_empty());
        assert_eq!(seqs(o.expire(t + REORDER_WAIT)), [3, 4]);
        // The missing one, late after all, goes at once.
        assert_eq!(seqs(o.offer(None, m(2), t + REORDER_WAIT)), [2]);
        assert_eq!(seqs(o.offer(None, m(5), t + REORDER_WAIT)), [5]);
    }

    #[test]
    fn a_seeded_room_waits_for_its_first_seq() {
        let mut o = Order::default();
        let t = Instant::now();
        o.seed("r".into(), 1, t);
        assert!(o.offer(None, m(2), t).is_empty());
        assert_eq!(seqs(o.offer(None, m(1), t)), [1, 2]);
        // A seed does not move an order that exists.
        o.seed("r".into(), 10, t);
        assert_eq!(seqs(o.offer(None, m(3), t)), [3]);
    }

    #[test]
    fn many_missing_seqs_cost_one_wait_not_one_each() {
        let mut o = Order::default();
        let t = Instant::now();
        o.offer(None, m(1), t);
        // Every other seq lost (another node's, while Redis was away).
        for seq in (3..40).step_by(2) {
            assert!(o.offer(None, m(seq), t).is_empty());
        }
        let due = seqs(o.expire(t + REORDER_WAIT));
        assert_eq!(due, (3..40).step_by(2).collect::<Vec<_>>());
    }
}
