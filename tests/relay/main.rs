//! Integration tests of the built-in STUN/TURN relay, through real UDP and TCP
//! sockets: a hand-built TURN client (exact control over every attribute) and
//! the `turn` crate's client (a second, independent implementation).

mod raw;
mod support;

mod auth;
mod data;
mod limits;
mod signaling;
