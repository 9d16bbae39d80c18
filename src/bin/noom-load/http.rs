//! Plain HTTP to the server under test: is it there, and what its `/metrics`
//! say; and Janus's JSON API for `sfu --target janus`. Raw HTTP/1.0 over a
//! TCP stream: the body ends with the connection, and the tool needs no HTTP
//! client library.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Res;

/// Timeout of one plain HTTP request (metrics, health, room list).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` of an `http://host[:port]` URL.
pub fn authority(url: &str) -> Res<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, not `{url}`"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("no host in `{url}`").into());
    }
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

/// A plain `GET` over HTTP/1.0 (so the body ends with the connection): status and body.
pub async fn http_get(addr: &str, path: &str) -> Res<(u16, String)> {
    http_request(addr, "GET", path, None, HTTP_TIMEOUT).await
}

/// One HTTP/1.0 request with an optional JSON body, answered within `within`
/// (a long poll needs longer than [`HTTP_TIMEOUT`]): status and body.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    within: Duration,
) -> Res<(u16, String)> {
    let request = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(body) = json_body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(json_body.unwrap_or_default());
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(within, request)
        .await
        .map_err(|_| format!("{method} {path}: no answer within {within:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: malformed response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in the response"))?;
    Ok((status, body.to_string()))
}

/// What `/metrics` says at one moment.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ServerSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub open_fds: u64,
    pub ws_connections: u64,
    pub messages_stored: u64,
    pub messages_relayed: u64,
    pub rate_limited: u64,
}

pub async fn scrape(addr: &str) -> Res<ServerSample> {
    let (status, body) = http_get(addr, "/metrics").await?;
    if status != 200 {
        return Err(format!("GET /metrics answered {status}").into());
    }
    let get = |name: &str| metric(&body, name).unwrap_or(0.0);
    Ok(ServerSample {
        cpu_seconds: get("process_cpu_seconds_total"),
        rss_bytes: get("process_resident_memory_bytes") as u64,
        peak_rss_bytes: get("noom_process_peak_resident_memory_bytes") as u64,
        open_fds: get("process_open_fds") as u64,
        ws_connections: get("noom_connections{transport=\"websocket\"}") as u64,
        messages_stored: get("noom_messages_stored_total") as u64,
        messages_relayed: get("noom_messages_relayed_total") as u64,
        rate_limited: get("noom_rate_limited_total") as u64,
    })
}

/// A scrape that only warns when it fails (the run goes on without the figure).
pub async fn try_scrape(addr: &str, when: &str) -> Option<ServerSample> {
    match scrape(addr).await {
        Ok(sample) => Some(sample),
        Err(e) => {
            eprintln!("warning: cannot read /metrics {when}: {e}");
            None
        }
    }
}

/// The value of `name` (with its labels, if any) in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// Fails early, with a clear message, when nothing answers at `addr`.
pub async fn check_server(addr: &str) -> Res<()> {
    match http_get(addr, "/healthz").await {
        Ok((200, _)) => Ok(()),
        Ok((status, _)) => Err(format!("GET /healthz at {addr} answered {status}").into()),
        Err(e) => Err(format!("no Noom server at {addr}: {e}").into()),
    }
}
