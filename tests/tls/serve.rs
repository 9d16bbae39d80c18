//! HTTPS with a self-signed and a given certificate, reloads, the redirect
//! port, HSTS, and Socket.IO over wss.

use std::time::Duration;

use noom::client::Client;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_is_generated_once_kept_and_served() {
    let s = server(|c, _| {
        c.tls.self_signed = true;
        c.tls.hosts = vec![HOST.into()];
    })
    .await;
    assert!(s.running.is_https());
    assert!(s.running.url().starts_with("https://127.0.0.1:"));
    let data = s.dir.path().join("data");
    let pem = std::fs::read(data.join(noom::tls::SELF_SIGNED_CERT)).expect("cert kept");
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .expect("PEM cert");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(noom::tls::SELF_SIGNED_KEY))
            .expect("key kept")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }
    let fingerprint = noom::tls::fingerprint(&der);
    assert_eq!(s.running.cert().expect("cert").fingerprint(), fingerprint);

    // Trusting the generated certificate itself, the name noom.test checks out.
    let resp = trusting(&der, s.addr())
        .get(s.named("/healthz"))
        .send()
        .await
        .expect("HTTPS request with the name noom.test");
    assert_eq!(resp.status(), 200);
    assert_eq!(served_fingerprint(&resp), fingerprint);
    assert!(
        resp.headers().get("strict-transport-security").is_none(),
        "no HSTS with a self-signed certificate"
    );
    // And by address (127.0.0.1 is among its names).
    let resp = trusting(&der, s.addr())
        .get(format!("https://{}/", s.addr()))
        .send()
        .await
        .expect("HTTPS request by address");
    assert_eq!(resp.status(), 200);

    // A restart keeps the same certificate.
    let TestServer { running, dir, .. } = s;
    running.shutdown().await.expect("clean shutdown");
    let again = server_in(dir.path(), |c, _| {
        c.tls.self_signed = true;
        c.tls.hosts = vec![HOST.into()];
    })
    .await;
    assert_eq!(again.cert().expect("cert").fingerprint(), fingerprint);
    let resp = insecure()
        .get(format!("https://{}/healthz", again.http_addr()))
        .send()
        .await
        .expect("HTTPS after restart");
    assert_eq!(served_fingerprint(&resp), fingerprint);
    again.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_certificate_is_served_and_replaced_on_disk_without_restart() {
    let ca = Ca::new();
    let first = ca.leaf(&[HOST], -1, 90);
    let s = server(|c, dir| {
        first.install(c, dir);
        c.tls.reload_secs = 1;
    })
    .await;
    let client = || trusting(&ca.der, s.addr());
    let resp = client()
        .get(s.named("/healthz"))
        .send()
        .await
        .expect("HTTPS with the CA's leaf");
    assert_eq!(resp.status(), 200);
    assert_eq!(served_fingerprint(&resp), first.fingerprint());
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000"),
        "HSTS with a real certificate"
    );

    // A broken new file is refused: the old certificate stays.
    replace(
        &s.dir.path().join("cert.pem"),
        b"-----BEGIN CERTIFICATE-----\nnonsense\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = client()
        .get(s.named("/healthz"))
        .send()
        .await
        .expect("still served");
    assert_eq!(served_fingerprint(&resp), first.fingerprint());

    // A certificate with a key of its own replaces it, seen by a fresh connection.
    let second = ca.leaf(&[HOST], -1, 90);
    second.write(s.dir.path());
    let seen = eventually(Duration::from_secs(10), || async {
        let resp = client().get(s.named("/healthz")).send().await.ok()?;
        let f = served_fingerprint(&resp);
        (f == second.fingerprint()).then_some(f)
    })
    .await;
    assert_eq!(
        seen,
        Some(second.fingerprint()),
        "new certificate picked up"
    );
    assert_eq!(
        s.running.cert().expect("cert").fingerprint(),
        second.fingerprint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_port_redirects_to_https_and_answers_acme_challenges() {
    let s = server(|c, _| {
        c.tls.self_signed = true;
        c.tls.http_redirect = "127.0.0.1:0".into();
    })
    .await;
    let redirect = s.running.redirect_addr().expect("redirect port");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = http
        .get(format!("http://{redirect}/r/lobby?x=1"))
        .header("host", format!("{HOST}:{}", redirect.port()))
        .send()
        .await
        .expect("plain HTTP");
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://{HOST}:{}/r/lobby?x=1", s.addr().port()).as_str()
    );

    // certbot --webroot <data_dir>: its token is served, anything else redirects.
    let acme = s.dir.path().join("data/.well-known/acme-challenge");
    std::fs::create_dir_all(&acme).expect("acme dir");
    std::fs::write(acme.join("tok_en-1"), "tok_en-1.thumbprint").expect("token");
    let resp = http
        .get(format!(
            "http://{redirect}/.well-known/acme-challenge/tok_en-1"
        ))
        .send()
        .await
        .expect("challenge");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "tok_en-1.thumbprint");
    let resp = http
        .get(format!(
            "http://{redirect}/.well-known/acme-challenge/..%2fturn_secret"
        ))
        .send()
        .await
        .expect("challenge");
    assert_eq!(resp.status(), 404);

    // Plain HTTP on the HTTPS port itself is redirected too, instead of
    // failing as a broken TLS handshake.
    let resp = http
        .get(format!("http://{}/r/lobby", s.addr()))
        .send()
        .await
        .expect("plain HTTP on the HTTPS port");
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://127.0.0.1:{}/r/lobby", s.addr().port()).as_str()
    );
    // And HTTPS still works there.
    let resp = insecure()
        .get(format!("https://{}/healthz", s.addr()))
        .send()
        .await
        .expect("HTTPS");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_is_made_again_when_the_configured_names_change() {
    let dir = tempfile::TempDir::new().expect("dir");
    let with_hosts = |hosts: &[&str]| {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        move |c: &mut noom::config::Config, _: &std::path::Path| {
            c.tls.self_signed = true;
            c.tls.hosts = hosts;
        }
    };
    let first = server_in(dir.path(), with_hosts(&["a.test"])).await;
    let a = first.cert().expect("cert").fingerprint();
    first.shutdown().await.expect("shutdown");
    // A subset of the names: the same certificate.
    let again = server_in(dir.path(), with_hosts(&[])).await;
    assert_eq!(again.cert().expect("cert").fingerprint(), a);
    again.shutdown().await.expect("shutdown");
    // A new name: a new certificate that covers it.
    let other = server_in(dir.path(), with_hosts(&["b.test"])).await;
    let b = other.cert().expect("cert").current();
    assert_ne!(b.fingerprint, a);
    let info = noom::tls::inspect(b.leaf()).expect("parses");
    assert!(info.names.iter().any(|n| n == "b.test"), "{:?}", info.names);
    assert!(
        info.names.iter().any(|n| n == "localhost"),
        "{:?}",
        info.names
    );
    other.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_goes_to_the_public_url_when_set() {
    let s = server(|c, _| {
        c.tls.self_signed = true;
        c.tls.http_redirect = "127.0.0.1:0".into();
        c.server.public_url = "https://calls.example.org/".into();
    })
    .await;
    assert_eq!(s.running.url(), "https://calls.example.org");
    let redirect = s.running.redirect_addr().expect("redirect port");
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://{redirect}/r/x"))
        .send()
        .await
        .expect("plain HTTP");
    assert_eq!(resp.status(), 308);
    assert_eq!(resp.headers()["location"], "https://calls.example.org/r/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_works_over_wss() {
    let ca = Ca::new();
    let leaf = ca.leaf(&[HOST, "127.0.0.1"], -1, 90);
    let s = server(|c, dir| {
        leaf.install(c, dir);
    })
    .await;
    let base = format!("https://127.0.0.1:{}", s.addr().port());
    let tls = rustls_trusting(&ca.der);
    let wait = Duration::from_secs(5);
    let mut a = Client::connect_with(&base, wss(tls.clone()))
        .await
        .expect("wss connects");
    a.wait_event("session", wait).await.expect("session");
    let mut b = Client::connect_with(&base, wss(tls))
        .await
        .expect("wss connects");
    b.wait_event("session", wait).await.expect("session");
    for c in [&a, &b] {
        let ack = c
            .request("enter_room", &[json!("secure")])
            .await
            .expect("ack");
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = a
        .request("new_message", &[json!("secure"), json!("over TLS")])
        .await
        .expect("ack");
    assert_eq!(ack["ok"], true, "{ack}");
    let got = b
        .wait_event("new_message", wait)
        .await
        .expect("message arrives");
    assert_eq!(
        got.args[0]["text"],
        Value::from("over TLS"),
        "{:?}",
        got.args
    );

    // A client that does not trust the certificate is refused.
    let stranger = Ca::new();
    assert!(
        Client::connect_with(&base, wss(rustls_trusting(&stranger.der)))
            .await
            .is_err()
    );
}

/// Options of a Socket.IO connection over wss with `tls`.
fn wss(tls: std::sync::Arc<tokio_rustls::rustls::ClientConfig>) -> noom::client::ConnectOptions {
    noom::client::ConnectOptions {
        tls: Some(tls),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_show_when_the_certificate_expires() {
    let ca = Ca::new();
    let soon = ca.leaf(&[HOST], -80, 5);
    let s = server(|c, dir| {
        soon.install(c, dir);
    })
    .await;
    let client = trusting(&ca.der, s.addr());
    let health: Value = client
        .get(s.named("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["status"], "ok", "expiring is a warning: {health}");
    assert_eq!(health["tls"]["status"], "expiring", "{health}");
    assert_eq!(health["tls"]["self_signed"], false, "{health}");
    assert!(
        matches!(health["tls"]["days_left"].as_i64(), Some(4 | 5)),
        "{health}"
    );
    assert_eq!(health["tls"]["fingerprint"], soon.fingerprint().as_str());
    let metrics = client
        .get(s.named("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("noom_tls_certificate_expiry_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge:\n{metrics}"));
    let secs: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!((4.0 * 86_400.0..=5.0 * 86_400.0).contains(&secs), "{line}");
}
