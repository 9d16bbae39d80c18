//! Integration tests of HTTPS built in, through real TLS connections on
//! loopback: certificates generated here (rcgen: a CA and leaves, expired
//! ones too), the server started in-process, reqwest (rustls, ring) and
//! hand-built TLS clients, the TURN client of `noom::client::turn` over TLS, and the
//! real `noom` binary for `noom check`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod check;
mod proxy;
mod serve;
mod turns;
