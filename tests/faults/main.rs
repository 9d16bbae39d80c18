//! The fault suite: one hostile visitor, a full disk or a damaged database
//! must not take Noom down, and nothing it reports may be a lie.
//!
//! Each test drives the real app from outside over real sockets (or the real
//! binary, where a process-wide limit or an exit code is the point) and checks
//! one finding of the hardening review: the relay's own addresses, per-address
//! relay quotas, idle TURN connections, slow HTTP clients, binary attachments,
//! slow consumers, the room list's cost, a full disk, a damaged store, session
//! expiry and the content security policy. Tests that need root (network
//! namespaces, tmpfs mounts) say so and skip where they cannot run; CI runs
//! them as root.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../relay/support.rs"]
mod support;

#[allow(dead_code)]
mod env;

mod http;
mod relay;
mod rooms;
mod socketio;
mod store;
