//! A small Socket.IO v5 client (WebSocket transport, one namespace) that
//! speaks Noom's wire contract: used by `noom-load` and by the tests.
//!
//! It implements just what the contract needs: the Engine.IO v4 handshake and
//! heartbeat, CONNECT with `auth`, events, and acknowledgements. Each received
//! event is stamped with its arrival time, for latency measurements.
//!
//! [`turn`] is the other client here: a hand-built TURN client that can send
//! exactly the wrong thing, for the relay's tests and `noom-load turn-flood`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;

pub mod turn;

/// How long `request` waits for an acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the server refused the connection: {0}")]
    Refused(String),
    #[error("the connection is closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A server -> client event. `name` is `"disconnect"` when the connection ended.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
    pub received: Instant,
}

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>>;

/// How to connect, beyond the server's address.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The namespace, e.g. `/admin`; empty or `/`: the default one.
    pub namespace: String,
    /// The handshake `auth` object.
    pub auth: Option<Value>,
    /// Extra HTTP headers of the WebSocket handshake (e.g. `Cookie`, `Origin`).
    pub headers: Vec<(String, String)>,
    /// For an `https://` base: the TLS configuration of the wss connection.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

pub struct Client {
    /// The Socket.IO id of this connection (what others see as `Member.id`).
    pub sid: String,
    /// `"/ns,"` for a namespace other than `/`, else empty: every packet starts with it.
    prefix: String,
    out: mpsc::UnboundedSender<Frame>,
    acks: Acks,
    next_id: AtomicU64,
    events: mpsc::UnboundedReceiver<Event>,
    /// Events skipped by `wait_event`, handed out again by `next_event`.
    backlog: std::collections::VecDeque<Event>,
}

impl Client {
    /// Connects to `base` (`http://host:port`) with an optional handshake `auth` object.
    pub async fn connect(base: &str, auth: Option<Value>) -> Result<Client, ClientError> {
        let options = ConnectOptions {
            auth,
            ..ConnectOptions::default()
        };
        Self::connect_with(base, options).await
    }

    /// Connects to `base` with a namespace, `auth`, handshake headers and,
    /// for `https://` bases, TLS (wss) with the given rustls configuration.
    pub async fn connect_with(base: &str, options: ConnectOptions) -> Result<Client, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            base.trim_end_matches('/').replacen("http", "ws", 1)
        );
        let connect = |e: &dyn std::fmt::Display| ClientError::Connect(e.to_string());
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| connect(&e))?;
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| connect(&e))?;
            let value = HeaderValue::from_str(value).map_err(|e| connect(&e))?;
            request.headers_mut().append(name, value);
        }
        let prefix = match options.namespace.as_str() {
            "" | "/" => String::new(),
            ns => format!("{ns},"),
        };
        let auth = options.auth;
        match options.tls {
            None => {
                let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
                    .await
                    .map_err(|e| connect(&e))?;
                Self::handshake(ws, auth, prefix).await
            }
            Some(tls) => {
                let uri = request.uri().clone();
                let host = uri
                    .host()
                    .ok_or_else(|| ClientError::Connect(format!("no host in {url}")))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(|e| connect(&e))?;
                let _ = tcp.set_nodelay(true);
                let name = rustls_pki_types::ServerName::try_from(host).map_err(|e| connect(&e))?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect(&e))?;
                let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, None)
                    .await
                    .map_err(|e| connect(&e))?;
                Self::handshake(ws, auth, prefix).await
            }
        }
    }

    async fn handshake<S>(
        ws: tokio_tungstenite::WebSocketStream<S>,
        auth: Option<Value>,
        prefix: String,
    ) -> Result<Client, ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = ws.split();

        let open = next_text(&mut stream).await?;
        if !open.starts_with('0') {
            return Err(ClientError::Protocol(format!("expected OPEN, got {open}")));
        }
        let connect = match &auth {
            Some(auth) => format!("40{prefix}{auth}"),
            None => format!("40{prefix}"),
        };
        sink.send(Frame::text(connect))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let sid = loop {
            let text = without_namespace(&next_text(&mut stream).await?, &prefix);
            if let Some(body) = text.strip_prefix("40") {
                let v: Value = serde_json::from_str(body)
                    .map_err(|e| ClientError::Protocol(format!("bad CONNECT: {e}")))?;
                break v
                    .get("sid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
            } else if let Some(body) = text.strip_prefix("44") {
                return Err(ClientError::Refused(body.to_string()));
            } else if text == "2" {
                sink.send(Frame::text("3"))
                    .await
                    .map_err(|_| ClientError::Closed)?;
            }
        };

        let (out, mut out_rx) = mpsc::unbounded_channel::<Frame>();
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                let close = matches!(frame, Frame::Close(_));
                if sink.send(frame).await.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });

        let acks: Acks = Arc::default();
        let (events_tx, events) = mpsc::unbounded_channel();
        {
            let acks = acks.clone();
            let prefix_in = prefix.clone();
            // Weak: dropping the `Client` must end the writer, and so the connection.
            let out = out.downgrade();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    let Frame::Text(text) = frame else {
                        if matches!(frame, Frame::Close(_)) {
                            break;
                        }
                        continue;
                    };
                    let Some(out) = out.upgrade() else { break };
                    let text = without_namespace(text.as_str(), &prefix_in);
                    if !dispatch(&text, &out, &acks, &events_tx) {
                        break;
                    }
                }
                acks.lock().clear();
                let _ = events_tx.send(Event {
                    name: "disconnect".into(),
                    args: Vec::new(),
                    received: Instant::now(),
                });
            });
        }
        Ok(Client {
            sid,
            prefix,
            out,
            acks,
            next_id: AtomicU64::new(1),
            events,
            backlog: Default::default(),
        })
    }

    /// Sends an event with an acknowledgement and returns the ack's first argument.
    pub async fn request(&self, event: &str, args: &[Value]) -> Result<Value, ClientError> {
        let rx = self.send_with_ack(event, args)?;
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(mut values)) => Ok(if values.is_empty() {
                Value::Null
            } else {
                values.swap_remove(0)
            }),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout(ACK_TIMEOUT)),
        }
    }

    /// Sends an event with an acknowledgement; the receiver yields the ack's arguments.
    pub fn send_with_ack(
        &self,
        event: &str,
        args: &[Value],
    ) -> Result<oneshot::Receiver<Vec<Value>>, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().insert(id, tx);
        self.send_raw(format!("42{}{id}{}", self.prefix, encode(event, args)))?;
        Ok(rx)
    }

    /// Sends an event without asking for an acknowledgement.
    pub fn emit(&self, event: &str, args: &[Value]) -> Result<(), ClientError> {
        self.send_raw(format!("42{}{}", self.prefix, encode(event, args)))
    }

    /// Sends a raw Engine.IO text packet (for tests of malformed input).
    pub fn send_raw(&self, packet: String) -> Result<(), ClientError> {
        self.out
            .send(Frame::text(packet))
            .map_err(|_| ClientError::Closed)
    }

    /// The next server event, in arrival order.
    pub async fn next_event(&mut self) -> Option<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        self.events.recv().await
    }

    /// Waits for the next event named `name`, keeping the others for `next_event`.
    pub async fn wait_event(&mut self, name: &str, within: Duration) -> Result<Event, ClientError> {
        if let Some(i) = self.backlog.iter().position(|e| e.name == name) {
            return self.backlog.remove(i).ok_or(ClientError::Closed);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if e.name == name => return Ok(e),
                Ok(Some(e)) => self.backlog.push_back(e),
                Ok(None) => return Err(ClientError::Closed),
                Err(_) => return Err(ClientError::Timeout(within)),
            }
        }
    }

    /// Events received so far and not yet taken, without waiting.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out: Vec<Event> = self.backlog.drain(..).collect();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Closes the connection (the server sees a transport close).
    pub fn close(&self) {
        let _ = self.out.send(Frame::Close(None));
    }
}

/// A Socket.IO packet of namespace `prefix` (`"/ns,"`) rewritten as if it
/// were of the default namespace, so one parser serves both.
fn without_namespace(text: &str, prefix: &str) -> String {
    if prefix.is_empty() || !text.starts_with('4') || text.len() < 2 {
        return text.to_string();
    }
    match text[2..].strip_prefix(prefix) {
        Some(rest) => format!("{}{rest}", &text[..2]),
        None => text.to_string(),
    }
}

fn encode(event: &str, args: &[Value]) -> String {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(Value::String(event.to_string()));
    all.extend_from_slice(args);
    Value::Array(all).to_string()
}

async fn next_text<S>(stream: &mut S) -> Result<String, ClientError>
where
    S: futures_util::Stream<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Frame::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Frame::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
        }
    }
}

/// Handles one Engine.IO packet; false when the connection is over.
fn dispatch(
    text: &str,
    out: &mpsc::UnboundedSender<Frame>,
    acks: &Acks,
    events: &mpsc::UnboundedSender<Event>,
) -> bool {
    let received = Instant::now();
    match text.as_bytes().first() {
        Some(b'2') => {
            let _ = out.send(Frame::text("3"));
            true
        }
        Some(b'1') => false,
        Some(b'4') => match text.get(1..2) {
            Some("2") => {
                let body = &text[2..];
                // An event may carry an ack id before the array; the server never asks for one.
                let start = body.find('[').unwrap_or(body.len());
                if let Ok(Value::Array(mut all)) = serde_json::from_str::<Value>(&body[start..])
                    && let Some(Value::String(name)) = (!all.is_empty()).then(|| all.remove(0))
                {
                    let _ = events.send(Event {
                        name,
                        args: all,
                        received,
                    });
                }
                true
            }
            Some("3") => {
                let body = &text[2..];
                let start = body.find('[').unwrap_or(body.len());
                if let (Ok(id), Ok(Value::Array(args))) = (
                    body[..start].parse::<u64>(),
                    serde_json::from_str::<Value>(&body[start..]),
                ) && let Some(tx) = acks.lock().remove(&id)
                {
                    let _ = tx.send(args);
                }
                true
            }
            Some("1") => false,
            _ => true,
        },
        _ => true,
    }
}
