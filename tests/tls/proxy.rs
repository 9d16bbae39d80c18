//! Reverse-proxy mode: `X-Forwarded-For` / `X-Forwarded-Proto` count only
//! from a trusted peer. Observed through `/api/whoami`, the documented way
//! to check a proxy set-up from outside, and through the admin side (its login
//! limit, member addresses and the `Secure` cookie flag).

use serde_json::Value;

use crate::common::TestServer;
use crate::support::*;

async fn whoami(s: &TestServer, headers: &[(&str, &str)]) -> Value {
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
    let trusted = server(|c, _| {
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
        let untrusted = server(|c, _| c.server.trusted_proxies = list).await;
        let seen = whoami(&untrusted, &forwarded).await;
        assert_eq!(seen["ip"], "127.0.0.1", "{seen}");
        assert_eq!(seen["https"], false, "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_says_https_when_served_over_tls() {
    let s = server(|c, _| c.tls.self_signed = true).await;
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

const ADMIN_PASSWORD: &str = "proxy admin password";

async fn admin_login(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    password: &str,
) -> reqwest::Response {
    let mut req = client.post(url).form(&[("password", password)]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("login")
}

fn set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cookie_is_secure_when_the_browser_came_over_https() {
    let hash = noom::admin::password::hash(ADMIN_PASSWORD).expect("hash");
    let tls = server({
        let hash = hash.clone();
        move |c, _| {
            c.tls.self_signed = true;
            c.admin.password_hash = hash;
        }
    })
    .await;
    let url = format!("https://{}/admin/login", tls.addr());
    let resp = admin_login(&insecure(), &url, &[], ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 303);
    assert!(
        set_cookie(&resp).contains("; Secure"),
        "{}",
        set_cookie(&resp)
    );

    // Behind a trusted proxy that terminated TLS: Secure too; plain HTTP: not.
    let proxied = server(move |c, _| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.admin.password_hash = hash;
    })
    .await;
    let url = format!("http://{}/admin/login", proxied.addr());
    let client = insecure();
    let https = [("x-forwarded-proto", "https")];
    let resp = admin_login(&client, &url, &https, ADMIN_PASSWORD).await;
    assert!(
        set_cookie(&resp).contains("; Secure"),
        "{}",
        set_cookie(&resp)
    );
    let resp = admin_login(&client, &url, &[], ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 303);
    assert!(
        !set_cookie(&resp).contains("Secure"),
        "{}",
        set_cookie(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_admin_sees_and_limits_real_addresses() {
    let hash = noom::admin::password::hash(ADMIN_PASSWORD).expect("hash");
    let s = server(move |c, _| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.admin.password_hash = hash;
        c.admin.login_failures_max = 2;
    })
    .await;
    let base = format!("http://{}", s.addr());
    let url = format!("{base}/admin/login");
    let client = insecure();
    let guesser = [("x-forwarded-for", "198.51.100.7")];
    for _ in 0..2 {
        let resp = admin_login(&client, &url, &guesser, "guess").await;
        assert_eq!(resp.status(), 401);
    }
    let resp = admin_login(&client, &url, &guesser, ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 429, "the guesser's address is locked out");
    // Everyone else behind the same proxy is not.
    let admin = [("x-forwarded-for", "198.51.100.8")];
    let resp = admin_login(&client, &url, &admin, ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 303);
    let cookie = set_cookie(&resp)
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();

    // A member connecting through the proxy shows with its own address.
    let member = noom::client::Client::connect_with(
        &base,
        noom::client::ConnectOptions {
            headers: vec![("x-forwarded-for".into(), "203.0.113.9".into())],
            ..Default::default()
        },
    )
    .await
    .expect("member connects");
    let ack = member
        .request("enter_room", &[serde_json::json!("lobby")])
        .await
        .expect("ack");
    assert_eq!(ack["ok"], true);
    let room: Value = client
        .get(format!("{base}/admin/api/rooms/lobby"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("room")
        .json()
        .await
        .expect("JSON");
    assert_eq!(room["members"][0]["address"], "203.0.113.9", "{room}");
}
