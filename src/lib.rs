//! Noom: self-hosted video calls and chat in one binary.
//!
//! Read this file as the table of contents:
//! - [`config`]: settings, their defaults and the layers that override them;
//! - [`app`]: start and stop the whole server in-process ([`App::start`]);
//! - [`store`]: sessions, rooms and chat history in sled, with group commit;
//! - [`signaling`]: the Socket.IO wire contract (chat and call signaling);
//! - [`relay`]: the built-in STUN/TURN relay (UDP and TCP), its credentials and self-test;
//! - [`web`]: pages, JSON API, health, metrics and embedded static files; HTTPS
//!   listener and redirect port (`web::https`), client address behind proxies
//!   (`web::client_addr`);
//! - [`tls`]: the certificate (files reloaded on change, or self-signed) shared by
//!   HTTPS and TURNS;
//! - [`check`]: `noom check`, which validates a deployment and says how to fix it;
//! - [`admin`]: the admin page and API behind a login: inspect and manage everything;
//! - [`limit`]: rate limits keyed by source address, in bounded tables;
//! - [`metrics`]: counters and their Prometheus rendering;
//! - [`net`]: this host's addresses, and accept loops that survive running out of descriptors;
//! - [`client`]: a small Socket.IO client of the contract, for `noom-load` and tests.

pub mod admin;
pub mod app;
pub mod check;
pub mod client;
pub mod config;
pub mod limit;
pub mod metrics;
pub mod net;
pub mod relay;
pub mod signaling;
pub mod store;
pub mod tls;
pub mod web;

pub use app::{App, AppError, Running};
pub use config::Config;

/// The version of this build, as `noom --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
