//! Integration tests of the built-in STUN/TURN relay, through real UDP and TCP
//! sockets: the hand-built TURN client of `noom::client::turn` (exact control
//! over every attribute) and the `turn` crate's client (a second, independent
//! implementation).

#[path = "../common/mod.rs"]
mod common;
mod support;

mod auth;
mod data;
mod limits;
mod signaling;
