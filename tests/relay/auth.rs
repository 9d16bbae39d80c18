//! Credentials: the 401 dance, wrong, expired and missing credentials, stale nonces.

use noom::client::turn::{TurnClient, error_code, is_success};
use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_binding_reports_the_mapped_address() {
    let r = start(|_| {}).await;
    let mut c = TurnClient::udp(r.turn, REALM).await.unwrap();
    let resp = c
        .request(METHOD_BINDING, vec![], false)
        .await
        .expect("a response from the relay");
    assert!(is_success(&resp));
    let mut mapped = stun::xoraddr::XorMappedAddress::default();
    mapped.get_from(&resp).unwrap();
    assert_eq!(
        std::net::SocketAddr::new(mapped.ip, mapped.port),
        c.local_addr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_rest_credentials_allocate_and_bad_ones_get_401() {
    let r = start(|_| {}).await;

    // No MESSAGE-INTEGRITY: 401 with a realm and a nonce.
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    let challenge = c
        .request(
            METHOD_ALLOCATE,
            vec![Box::new(turn::proto::reqtrans::RequestedTransport {
                protocol: turn::proto::PROTO_UDP,
            })],
            false,
        )
        .await
        .expect("a response from the relay");
    assert_eq!(error_code(&challenge), Some(401));
    assert_eq!(
        TextAttribute::get_from_as(&challenge, ATTR_REALM)
            .unwrap()
            .text,
        REALM
    );
    assert!(
        !TextAttribute::get_from_as(&challenge, ATTR_NONCE)
            .unwrap()
            .text
            .is_empty()
    );

    // Valid credentials: allocated, on the relay's address, integrity-protected.
    let ok = c.allocate().await.expect("a response from the relay");
    assert!(is_success(&ok), "allocate: {:?}", error_code(&ok));
    assert!(ok.contains(ATTR_MESSAGE_INTEGRITY));
    assert_eq!(relayed(&ok).ip(), r.turn.ip());

    // Wrong password.
    let (user, _) = rest_credentials("bob", 600);
    let mut wrong = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds((user, "bm90IHRoZSBwYXNzd29yZA==".into()));
    assert_eq!(error_code(&wrong.allocate().await), Some(401));

    // Expired credentials, with a correct password for them.
    let mut expired = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("carol", -5));
    let refused = expired.allocate().await.expect("a response from the relay");
    assert_eq!(error_code(&refused), Some(401));
    assert!(
        refused.contains(ATTR_NONCE),
        "a refusal carries a fresh nonce"
    );

    // A username that is not `expiry:user`.
    let mut plain = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(("dave".into(), "x".into()));
    assert_eq!(error_code(&plain.allocate().await), Some(401));

    // Another realm.
    let mut realm = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("erin", 600));
    realm.realm = "elsewhere".into();
    assert_eq!(error_code(&realm.allocate().await), Some(401));

    // A nonce the server never issued: 438 Stale Nonce with a fresh one.
    let mut forged = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("frank", 600));
    forged.nonce = Some("0-0000".into());
    let stale = forged.allocate().await.expect("a response from the relay");
    assert_eq!(error_code(&stale), Some(438));
    forged.nonce = Some(TextAttribute::get_from_as(&stale, ATTR_NONCE).unwrap().text);
    assert!(is_success(&forged.allocate().await));

    // A nonce issued to another client address is stale for this one.
    let mut thief = TurnClient::udp_from(r.turn, "127.0.0.3", REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    thief.nonce = c.nonce.clone();
    assert_eq!(error_code(&thief.allocate().await), Some(438));

    let metrics = reqwest::get(format!("{}/metrics", r.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("noom_relay_auth_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(failures >= 5, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_an_allocation_need_its_own_credentials() {
    let r = start(allow_loopback).await;
    let peer = echo_peer().await;
    let mut c = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert!(is_success(&c.allocate().await));
    // Same client address, another user's (valid) credentials: 441.
    let nonce = c.nonce.clone();
    let mut c = c.creds(rest_credentials("mallory", 600));
    c.nonce = nonce;
    assert_eq!(error_code(&c.create_permission(&[peer]).await), Some(441));
    // No allocation at all: 437.
    let mut none = TurnClient::udp(r.turn, REALM)
        .await
        .unwrap()
        .creds(rest_credentials("alice", 600));
    assert_eq!(
        error_code(&none.create_permission(&[peer]).await),
        Some(437)
    );
}
