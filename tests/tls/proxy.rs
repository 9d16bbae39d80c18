//! Reverse-proxy mode: `X-Forwarded-For` / `X-Forwarded-Proto` count only
//! from a trusted peer. Observed through `/api/whoami`, the documented way
//! to check a proxy set-up from outside.

use serde_json::Value;

use crate::support::*;

async fn whoami(s: &Server, headers: &[(&str, &str)]) -> Value {
    let mut req = reqwest::Client::new().get(format!("http://{}/api/whoami", s.addr()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_address_is_used_only_from_a_trusted_peer() {
    let forwarded = [
        ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
        ("x-forwarded-proto", "https"),
    ];
    // The test connects from 127.0.0.1: trusted here...
    let trusted = Server::start(|c, _| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let seen = whoami(&trusted, &forwarded).await;
    assert_eq!(seen["ip"], "198.51.100.7", "{seen}");
    assert_eq!(seen["https"], true, "{seen}");
    let seen = whoami(&trusted, &[]).await;
    assert_eq!(seen["ip"], "127.0.0.1", "{seen}");
    assert_eq!(seen["https"], false, "{seen}");

    // ...and not here (only 10.0.0.0/8 is), nor with no proxies at all.
    for list in [vec!["10.0.0.0/8".to_string()], vec![]] {
        let untrusted = Server::start(|c, _| c.server.trusted_proxies = list).await;
        let seen = whoami(&untrusted, &forwarded).await;
        assert_eq!(seen["ip"], "127.0.0.1", "{seen}");
        assert_eq!(seen["https"], false, "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_says_https_when_served_over_tls() {
    let s = Server::start(|c, _| c.tls.self_signed = true).await;
    let seen: Value = insecure()
        .get(format!("https://{}/api/whoami", s.addr()))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(seen["ip"], "127.0.0.1", "{seen}");
    assert_eq!(seen["https"], true, "{seen}");
}
