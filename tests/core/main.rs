//! Integration tests of the server core, through its real interfaces: an
//! in-process server on ephemeral ports (or the real binary, for crashes),
//! real Socket.IO connections, and real HTTP requests.

#[path = "../common/mod.rs"]
mod common;

mod call;
mod chat;
mod config;
mod crash;
mod http;
mod junk;
mod moderation;
mod polling;
mod restart;
mod store;
