//! HTTP routes: pages, JSON API, health, metrics, static files.

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_api_and_fallbacks() {
    let s = TestServer::start().await;
    let a = s.client().await;
    a.enter("café <b>").await;
    for i in 1..=5 {
        a.say("café <b>", &format!("m{i}")).await;
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let home = http.get(s.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(
        home.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(home.headers().contains_key("content-security-policy"));
    assert!(home.text().await.unwrap().contains("/static/js/home.js"));

    let room = http
        .get(s.url("/r/caf%C3%A9%20%3Cb%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(room.status(), 200);
    let page = room.text().await.unwrap();
    assert!(
        page.contains("café &#60;b&#62;") || page.contains("café &lt;b&gt;"),
        "escaped room name"
    );
    assert!(!page.contains("café <b>"), "room name must be escaped");

    for (path, target) in [
        ("/nowhere", "/"),
        ("/r/", "/"),
        // A room name that breaks the rules: home, which says why.
        (&format!("/r/{}", "x".repeat(70)), "/?error=invalid_room"),
        ("/r/%20%20", "/?error=invalid_room"),
    ] {
        let resp = http.get(s.url(path)).send().await.unwrap();
        assert!(resp.status().is_redirection(), "{path}: {}", resp.status());
        assert_eq!(resp.headers()["location"], target);
    }
    let resp = http.get(s.url("/api/nothing/here")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "not_found");

    let (status, rooms) = get_json(&s.url("/api/rooms")).await;
    assert_eq!(status, 200);
    assert_eq!(rooms, json!([{ "name": "café <b>", "count": 1 }]));

    let base = "/api/rooms/caf%C3%A9%20%3Cb%3E/messages";
    let (status, msgs) = get_json(&s.url(base)).await;
    assert_eq!(status, 200);
    assert_eq!(msgs.as_array().unwrap().len(), 5);
    assert_eq!(msgs[0]["room"], "café <b>");
    let (_, msgs) = get_json(&s.url(&format!("{base}?before=4&limit=2"))).await;
    assert_eq!(
        msgs.as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let (_, msgs) = get_json(&s.url(&format!("{base}?after=3"))).await;
    assert_eq!(msgs.as_array().unwrap().len(), 2);
    let (status, err) = get_json(&s.url(&format!("{base}?limit=abc"))).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, err) = get_json(&s.url(&format!("{base}?sort=desc"))).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, err) = get_json(&s.url("/api/rooms/unknown/messages")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("invalid_room"))
    );

    let (status, health) = get_json(&s.url("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let metrics = http.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for name in [
        "noom_connections{transport=\"websocket\"} 1",
        "noom_rooms_live 1",
        "noom_messages_stored_total 5",
        "noom_messages_relayed_total 0",
        "noom_store_flush_seconds_count",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "metrics lack `{name}`:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_embedded_compressed_and_validated() {
    let s = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = s.url("/static/js/protocol.js");
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let etag = resp.headers()["etag"].clone();
    let full = resp.bytes().await.unwrap();
    assert_eq!(
        &full[..],
        &std::fs::read("static/js/protocol.js").unwrap()[..]
    );

    let again = http
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let gz = http
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert!(gz.bytes().await.unwrap().len() < full.len());

    let vendored = http
        .get(s.url("/static/vendor/socket.io/socket.io.esm.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(vendored.status(), 200);
    assert_eq!(
        http.get(s.url("/static/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// Each node names itself (`cluster.node_id`) in `/healthz` and `/metrics`;
/// without a configured name each start picks a new one from the host name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_names_itself_in_health_and_metrics() {
    async fn seen(s: &TestServer) -> (String, String) {
        let (status, health) = get_json(&s.url("/healthz")).await;
        assert_eq!(status, 200, "{health}");
        let metrics = get_text(&s.url("/metrics")).await;
        let info = metrics
            .lines()
            .find(|l| l.starts_with("noom_node_info{"))
            .unwrap_or_else(|| panic!("no noom_node_info in:\n{metrics}"))
            .to_string();
        (
            health["node"].as_str().unwrap_or_default().to_string(),
            info,
        )
    }

    let named = TestServer::start_with(|c| c.cluster.node_id = "edge-7.eu".into()).await;
    let (node, info) = seen(&named).await;
    assert_eq!(node, "edge-7.eu");
    assert_eq!(
        info,
        format!(
            "noom_node_info{{node=\"edge-7.eu\",version=\"{}\"}} 1",
            noom::VERSION
        )
    );

    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let ((node_a, info_a), (node_b, _)) = (seen(&a).await, seen(&b).await);
    assert!(noom::node::valid_id(&node_a), "{node_a}");
    assert_ne!(node_a, node_b, "two nodes, one name");
    assert!(info_a.contains(&format!("node=\"{node_a}\"")), "{info_a}");
}

/// Code that blocks the runtime's worker threads (here: the test itself,
/// sleeping on both) delays every task; the watchdog counts and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_runtime_is_counted_in_metrics() {
    let s = TestServer::start().await;
    let stalls = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("noom_runtime_stalls_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no noom_runtime_stalls_total in:\n{text}"))
    };
    let before = stalls(&get_text(&s.url("/metrics")).await);
    // Both workers blocked for 900 ms at once (as a synchronous disk call
    // on each would): the barrier holds the first until the other worker
    // has taken the second.
    let both = std::sync::Arc::new(std::sync::Barrier::new(2));
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let both = both.clone();
            tokio::spawn(async move {
                both.wait();
                std::thread::sleep(std::time::Duration::from_millis(900));
            })
        })
        .collect();
    for b in blockers {
        b.await.unwrap();
    }
    let text = get_text(&s.url("/metrics")).await;
    assert!(stalls(&text) > before, "{text}");
}
