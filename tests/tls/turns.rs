//! TURNS shares the web server's certificate, default port aside, and sees
//! its reloads.

use std::time::Duration;

use noom::client::turn::{TurnClient, is_success};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_client_allocates_over_tls_with_the_shared_certificate() {
    let ca = Ca::new();
    let first = ca.leaf(&[HOST], -1, 90);
    let s = server(|c, dir| {
        first.install(c, dir);
        c.tls.reload_secs = 1;
        // turn.tls_listen stays empty: [tls] turns TURNS on by itself.
        c.turn.public_host = HOST.into();
    })
    .await;
    let relay = s.running.relay().expect("relay");
    let tls = relay
        .tls_addr()
        .expect("TURNS listening without turn.tls_listen");
    let servers = relay.ice_servers("someone");
    let urls = servers[1]["urls"].as_array().expect("urls");
    assert!(
        urls.iter()
            .any(|u| u == &format!("turns:{HOST}:{}?transport=tcp", tls.port())),
        "{servers:?}"
    );

    let mut c = TurnClient::tls(tls, ca.der.clone(), HOST, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    let alloc = c.allocate().await;
    assert!(is_success(&alloc), "allocation over TLS: {alloc:?}");

    // A renewal on disk reaches the TURNS listener too.
    assert_eq!(handshake_fingerprint(tls).await, first.fingerprint());
    let second = ca.leaf(&[HOST], -1, 90);
    second.write(s.dir.path());
    let seen = eventually(Duration::from_secs(10), || async {
        let f = handshake_fingerprint(tls).await;
        (f == second.fingerprint()).then_some(f)
    })
    .await;
    assert_eq!(seen, Some(second.fingerprint()));
    let mut c = TurnClient::tls(tls, ca.der.clone(), HOST, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("bob", 600));
    assert!(is_success(&c.allocate().await));
}

#[test]
fn turns_defaults_to_port_5349_when_tls_is_on() {
    let mut c = noom::config::Config::default();
    assert_eq!(
        c.validate().expect("valid").turn.turns,
        None,
        "no TLS, no TURNS"
    );
    c.tls.self_signed = true;
    assert_eq!(
        c.validate().expect("valid").turn.turns,
        Some("0.0.0.0:5349".parse().expect("addr"))
    );
    c.turn.tls_listen = "0.0.0.0:443".into();
    assert_eq!(
        c.validate().expect("valid").turn.turns,
        Some("0.0.0.0:443".parse().expect("addr"))
    );
    c.turn.tls_listen = "off".into();
    assert_eq!(c.validate().expect("valid").turn.turns, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_turns_port_leaves_the_relay_running_without_turns() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr");
    let s = server(|c, _| {
        c.tls.self_signed = true;
        c.turn.tls_listen = taken.to_string();
    })
    .await;
    let relay = s.running.relay().expect("the relay still runs");
    assert_eq!(relay.tls_addr(), None);
    let servers = relay.ice_servers("someone");
    let urls = servers[1]["urls"].as_array().expect("urls");
    assert!(
        urls.iter()
            .all(|u| !u.as_str().unwrap_or("").starts_with("turns:")),
        "{servers:?}"
    );
    let mut c = TurnClient::udp(relay.udp_addr(), REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&c.allocate().await));
    drop(squatter);
}
