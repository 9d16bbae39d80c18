//! Several nodes sharing Redis and PostgreSQL (docs/cluster.md), in one
//! process: each node is a whole [`noom::App`] on its own ports, data
//! directory and node name; clients connect to the node a test chooses.
//!
//! The servers come from `scripts/test-cluster.sh` (as `.ci/run` runs it),
//! which sets `TEST_NOOM_REDIS_URL` and `TEST_NOOM_POSTGRES_URL`. Without
//! them each test says it did not run and passes: plain `cargo test` needs
//! no services.

#[path = "../common/mod.rs"]
mod common;

mod support;

mod chat;
mod failover;
mod members;
mod outage;
