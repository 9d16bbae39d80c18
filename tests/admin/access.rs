//! Nothing of the admin side without a login; logins, cookies, throttling,
//! forgery checks; the generated and the hashed password.

use std::process::{Command, Stdio};
use std::time::Duration;

use noom::client::ClientError;
use reqwest::header::{AUTHORIZATION, COOKIE, ORIGIN, SET_COOKIE};

use crate::admin::{self, API_TOKEN, Admin, PASSWORD, http, live, login_as};
use crate::common::WAIT;

/// Every admin route a script or the page uses, with its method.
const ROUTES: [(&str, &str); 12] = [
    ("GET", "/admin/api/overview"),
    ("GET", "/admin/api/rooms/lobby"),
    ("GET", "/admin/api/rooms/lobby/messages"),
    ("GET", "/admin/api/allocations"),
    ("GET", "/admin/api/metrics"),
    ("GET", "/admin/api/no-such-thing"),
    ("DELETE", "/admin/api/rooms/lobby/messages"),
    ("DELETE", "/admin/api/rooms/lobby/messages/1"),
    ("POST", "/admin/api/rooms/lobby/end-call"),
    ("POST", "/admin/api/rooms/lobby/close"),
    ("POST", "/admin/api/connections/abc/disconnect"),
    ("POST", "/admin/api/users/abcd/revoke"),
];

#[tokio::test]
async fn nothing_is_reachable_without_a_login() {
    let server = admin::server().await;
    let member = server.client().await;
    member.enter("lobby").await;
    member.say("lobby", "secret plans").await;
    let http = http();

    let page = http.get(server.url("/admin")).send().await.expect("GET");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/admin/login");

    for (method, path) in ROUTES {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token-wrong"),
            Some("Basic YWRtaW46YWRtaW4="),
        ] {
            let mut req = http.request(method.clone(), server.url(path));
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            let body: serde_json::Value = resp.json().await.expect("JSON error");
            assert_eq!(body["error"]["code"], "unauthenticated");
            assert!(!body.to_string().contains("secret plans"));
        }
        // A forged cookie is no session.
        let resp = http
            .request(method.clone(), server.url(path))
            .header(
                COOKIE,
                "noom_admin=0000000000000000000000000000000000000000000000000000000000000000",
            )
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 401, "{method} {path} with a forged cookie");
    }

    match live(&server.base, None, Some(&server.base)).await {
        Err(ClientError::Refused(why)) => assert!(why.contains("not logged in"), "{why}"),
        Ok(_) => panic!("the admin namespace accepted a connection without a session"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    let forged = "noom_admin=1111111111111111111111111111111111111111111111111111111111111111";
    assert!(matches!(
        live(&server.base, Some(forged), Some(&server.base)).await,
        Err(ClientError::Refused(_))
    ));
    // The member's own connection was never disturbed.
    member.say("lobby", "still here").await;
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_logout_ends_it() {
    let server = admin::server().await;
    let wrong = login_as(&server.base, "incorrect horse").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let page = wrong.text().await.expect("page");
    assert!(page.contains("Wrong password"));
    // The code the page translates the refusal by (admin-login.js).
    assert!(page.contains(r#"data-code="wrong_password""#), "{page}");

    let ok = login_as(&server.base, PASSWORD).await;
    assert_eq!(ok.status(), 303);
    let set = ok.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_string();
    for part in [
        "noom_admin=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(part), "{part} in {set}");
    }
    // Plain HTTP: a Secure cookie would never be sent back.
    assert!(!set.contains("Secure"), "{set}");

    let admin = Admin::login(&server).await;
    let (status, overview) = admin.get("/admin/api/overview").await;
    assert_eq!(status, 200);
    assert_eq!(overview["version"], noom::VERSION);

    let mut live_page = admin.live().await.expect("live page");
    live_page
        .wait_event("overview", WAIT)
        .await
        .expect("overview");

    // Logout needs the CSRF token too.
    let forged = admin
        .http
        .post(server.url("/admin/logout"))
        .header(COOKIE, &admin.cookie)
        .form(&[("csrf", "nope")])
        .send()
        .await
        .expect("logout");
    assert_eq!(forged.status(), 403);
    assert_eq!(admin.get("/admin/api/overview").await.0, 200);

    let out = admin
        .http
        .post(server.url("/admin/logout"))
        .header(COOKIE, &admin.cookie)
        .header(ORIGIN, &server.base)
        .form(&[("csrf", admin.csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
    assert_eq!(admin.get("/admin/api/overview").await.0, 401);
    assert!(matches!(admin.live().await, Err(ClientError::Refused(_))));
    // The page that was open loses its live connection too.
    live_page
        .wait_event("disconnect", WAIT)
        .await
        .expect("the live page is disconnected after logout");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let server = admin::server_with(|c| {
        c.admin.login_failures_max = 3;
        c.admin.login_lockout_secs = 60;
    })
    .await;
    // Ten guesses at once: only three get their password checked.
    let guesses = (0..10).map(|i| {
        let base = server.base.clone();
        async move {
            login_as(&base, &format!("guess {i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures_util::future::join_all(guesses).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    // Locked: even the right password waits, and says how long.
    let locked = login_as(&server.base, PASSWORD).await;
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");

    // Another address is not locked out.
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().expect("ip"))
        .build()
        .expect("client");
    let resp = other
        .post(server.url("/admin/login"))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .expect("login from 127.0.0.2");
    assert_eq!(resp.status(), 303);
}

#[tokio::test]
async fn cross_site_requests_are_refused() {
    let server = admin::server().await;
    let mut member = server.client().await;
    member.enter("lobby").await;
    member.say("lobby", "keep me").await;
    let admin = Admin::login(&server).await;
    let close = server.url("/admin/api/rooms/lobby/close");

    // What a forged form or fetch from another site can send: the cookie
    // (if the browser attaches it at all), but not the page's CSRF token.
    let attempts = [
        vec![(COOKIE.as_str(), admin.cookie.clone())],
        vec![
            (COOKIE.as_str(), admin.cookie.clone()),
            ("x-csrf-token", "guessed".to_string()),
        ],
        vec![
            (COOKIE.as_str(), admin.cookie.clone()),
            ("x-csrf-token", admin.csrf.clone()),
            (ORIGIN.as_str(), "http://evil.example".to_string()),
        ],
        vec![
            (COOKIE.as_str(), admin.cookie.clone()),
            ("x-csrf-token", admin.csrf.clone()),
            ("sec-fetch-site", "cross-site".to_string()),
        ],
    ];
    for headers in attempts {
        let mut req = admin.http.post(&close);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 403, "{headers:?}");
    }
    // Nothing happened.
    assert!(
        member
            .c
            .drain_events()
            .iter()
            .all(|e| e.name != "room_closed")
    );
    let (_, room) = admin.get("/admin/api/rooms/lobby").await;
    assert_eq!(room["messages"], 1);

    // A cross-site login and a cross-site live connection are refused too.
    let resp = http()
        .post(server.url("/admin/login"))
        .header(ORIGIN, "http://evil.example")
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(matches!(
        live(
            &server.base,
            Some(&admin.cookie),
            Some("http://evil.example")
        )
        .await,
        Err(ClientError::Refused(_))
    ));

    // The page itself may.
    let (status, _) = admin.post("/admin/api/rooms/lobby/close").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_api_token_works_without_cookie_or_csrf() {
    let server = admin::server().await;
    let mut member = server.client().await;
    member.enter("lobby").await;
    let http = http();
    let (status, overview) = {
        let resp = http
            .get(server.url("/admin/api/overview"))
            .header(AUTHORIZATION, format!("Bearer {API_TOKEN}"))
            .send()
            .await
            .expect("request");
        (
            resp.status(),
            resp.json::<serde_json::Value>().await.expect("json"),
        )
    };
    assert_eq!(status, 200);
    assert_eq!(overview["rooms"][0]["name"], "lobby");
    let resp = http
        .post(server.url(&format!(
            "/admin/api/connections/{}/disconnect",
            member.c.sid
        )))
        .header(AUTHORIZATION, format!("Bearer {API_TOKEN}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    member.event("kicked").await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs the real binary until `/healthz` answers; returns it and its log so far.
async fn run_binary(dir: &std::path::Path, port: u16) -> (std::process::Child, String) {
    let log = dir.join(format!("log-{}.txt", rand_suffix()));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_noom"))
        .args(["--http", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .env("NOOM_TURN_LISTEN", "127.0.0.1:0")
        .env("NOOM_SFU_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .spawn()
        .expect("noom starts");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (child, std::fs::read_to_string(&log).expect("log"))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test]
async fn a_generated_password_is_printed_once_and_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (child, log) = run_binary(dir.path(), port).await;
    let password = log
        .split("admin password generated: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the log shows the generated password:\n{log}"))
        .to_string();
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(login_as(&base, &password).await.status(), 303);
    let stored =
        std::fs::read_to_string(dir.path().join("data/admin_password")).expect("hash file");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&password));
    stop(child);

    let (child, log) = run_binary(dir.path(), port).await;
    assert!(!log.contains("admin password generated"), "{log}");
    assert!(!log.contains(&password));
    assert_eq!(login_as(&base, &password).await.status(), 303);
    assert_eq!(login_as(&base, "not it").await.status(), 401);
    stop(child);
}

#[tokio::test]
async fn hash_password_prints_a_hash_the_server_accepts() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_noom"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("noom hash-password");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"my admin secret\n").expect("write");
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let server = crate::common::TestServer::start_with(|c| c.admin.password_hash = hash).await;
    assert_eq!(
        login_as(&server.base, "my admin secret").await.status(),
        303
    );
    assert_eq!(
        login_as(&server.base, "my admin secret ").await.status(),
        401
    );

    // Too short a password is refused with a reason.
    let out = Command::new(env!("CARGO_BIN_EXE_noom"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(b"short\n")?;
            c.wait_with_output()
        })
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
}

#[tokio::test]
async fn a_login_without_a_password_field_is_refused_clearly() {
    let server = admin::server().await;
    let resp = http()
        .post(server.url("/admin/login"))
        .form(&[("pass", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(resp.text().await.expect("page").contains("password field"));
}

#[tokio::test]
async fn a_disabled_admin_side_is_not_there_at_all() {
    let server = crate::common::TestServer::start_with(|c| c.admin.enabled = false).await;
    let http = http();
    for path in ["/admin", "/admin/login", "/admin/api/overview"] {
        let resp = http.get(server.url(path)).send().await.expect("GET");
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/", "{path}");
    }
    let resp = login_as(&server.base, "anything").await;
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(matches!(
        live(&server.base, None, Some(&server.base)).await,
        Err(ClientError::Refused(_))
    ));
    // No password was generated for a page that does not exist.
    assert!(!server.dir.path().join("data/admin_password").exists());
}
