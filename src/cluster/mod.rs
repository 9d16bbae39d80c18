//! Several nodes behind a load balancer (docs/cluster.md): what they share
//! through Redis. Alone (no `cluster.redis_url`) none of it talks to anyone.
//!
//! - [`bus`]: the pub/sub that the Socket.IO adapter carries broadcasts on;
//! - [`media`]: where each call's media server is, and the media requests
//!   carried to it;
//! - [`roster`]: live membership (who is in which room and call, on which
//!   node), written by each node for its own connections and followed by all.

pub mod bus;
pub mod media;
pub mod roster;

pub use bus::{Bus, BusError, RedisBus};
pub use media::MediaLink;
pub use roster::{NodeConns, NodeHealth, Order, Presence, Roster, RosterEvent};
