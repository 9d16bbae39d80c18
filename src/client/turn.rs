//! A hand-built TURN client that can send exactly the wrong thing, for the
//! tests and the load tool.
//!
//! Real TURN clients (the `turn` crate's, a browser's) only send well-formed
//! requests in the right order, so they cannot probe how the relay handles a
//! stale nonce, a stolen one, a retransmitted transaction or a flood of
//! unauthenticated Allocates. Here every request is assembled attribute by
//! attribute by the caller: [`TurnClient::request`] sends what it is given,
//! [`TurnClient::authed`] adds the long-term credentials, and the usual TURN
//! methods are thin wrappers on top. [`allocate_request`] builds the bytes of
//! an unauthenticated Allocate without allocating, for floods (`noom-load
//! turn-flood`).
//!
//! Over UDP, TCP or TLS (RFC 6062 framing on a stream). Failures of the
//! connection are errors ([`TurnError`]), never panics; what the relay
//! answers (an error response included) is the caller's to judge, with
//! [`is_success`], [`error_code`] and [`relayed`], which read a [`Message`]
//! or the whole outcome of a request alike (see [`Reply`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_SEND, Message, MessageType, Method,
    Setter,
};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls;

/// How long [`TurnClient::request`] waits for each packet of its response.
pub const RESPONSE_WAIT: Duration = Duration::from_secs(3);

/// What went wrong on the client's side of an exchange.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] stun::Error),
    #[error("no response from the relay within {0:?}")]
    NoResponse(Duration),
    #[error("the first round trip is not a 401 challenge (error code {0:?})")]
    NotChallenged(Option<u16>),
    #[error("the 401 challenge carries no NONCE")]
    NoNonce,
}

/// A byte stream TURN can be framed on: TCP or TLS.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

enum Link {
    Udp(UdpSocket),
    /// The stream, bytes read past the last whole packet.
    Tcp(Box<dyn Stream>, Vec<u8>),
}

/// One TURN client connection with its long-term credentials. The fields are
/// public so a caller can send the wrong ones on purpose.
pub struct TurnClient {
    link: Link,
    local: SocketAddr,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: Option<String>,
    /// Packets that were not the awaited response (indications, ChannelData).
    pub inbox: VecDeque<Vec<u8>>,
}

/// What a request gave: the response, or the failure that left none. The
/// readers below take either, so `is_success(&client.allocate().await)`
/// judges an exchange as it is: no response is neither a success nor an
/// error code.
pub trait Reply {
    /// The response, if one came.
    fn message(&self) -> Option<&Message>;
}

impl Reply for Message {
    fn message(&self) -> Option<&Message> {
        Some(self)
    }
}

impl Reply for Result<Message, TurnError> {
    fn message(&self) -> Option<&Message> {
        self.as_ref().ok()
    }
}

/// Decodes a STUN message, or `None` when `packet` is not one.
pub fn decode(packet: &[u8]) -> Option<Message> {
    let mut m = Message::new();
    m.raw = packet.to_vec();
    m.decode().ok()?;
    Some(m)
}

/// The ERROR-CODE of a response, if there is a response and it has one.
pub fn error_code(reply: &impl Reply) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(reply.message()?).ok()?;
    Some(e.code.0)
}

/// True for a success response; false for an error response or none.
pub fn is_success(reply: &impl Reply) -> bool {
    reply
        .message()
        .is_some_and(|m| m.typ.class == CLASS_SUCCESS_RESPONSE)
}

/// The XOR-RELAYED-ADDRESS of an Allocate success.
pub fn relayed(reply: &impl Reply) -> Option<SocketAddr> {
    let mut a = ::turn::proto::relayaddr::RelayedAddress::default();
    a.get_from(reply.message()?).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

/// coturn-style REST credentials for `user` under `secret`, valid for
/// `ttl_secs` (negative: expired). Computed here on purpose, apart from the
/// relay's own `relay::auth`, so a mistake in one is caught by the other.
pub fn credentials(secret: &str, user: &str, ttl_secs: i64) -> (String, String) {
    use base64::Engine as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let username = format!("{}:{user}", now + ttl_secs);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    (
        username,
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    )
}

/// The 28 bytes of an unauthenticated Allocate request (REQUESTED-TRANSPORT
/// UDP) with the transaction id `id`: the 20-byte header and one attribute,
/// written directly, so a flood costs the sender next to nothing.
pub fn allocate_request(id: [u8; 12]) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&0x0003u16.to_be_bytes());
    p[2..4].copy_from_slice(&8u16.to_be_bytes());
    p[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    p[8..20].copy_from_slice(&id);
    p[20..22].copy_from_slice(&0x0019u16.to_be_bytes());
    p[22..24].copy_from_slice(&4u16.to_be_bytes());
    p[24] = 17;
    p
}

impl TurnClient {
    /// A UDP client on an ephemeral port of `ip` (another loopback address,
    /// say: 127.0.0.0/8 is all local), connected to `server`.
    pub async fn udp_from(server: SocketAddr, ip: &str, realm: &str) -> Result<Self, TurnError> {
        let sock = UdpSocket::bind(format!("{ip}:0")).await?;
        sock.connect(server).await?;
        let local = sock.local_addr()?;
        Ok(Self::with(Link::Udp(sock), local, realm))
    }

    /// A UDP client on an ephemeral loopback port, connected to `server`.
    pub async fn udp(server: SocketAddr, realm: &str) -> Result<Self, TurnError> {
        Self::udp_from(server, "127.0.0.1", realm).await
    }

    /// A TCP client connected to `server` (TURN over TCP, RFC 6062 framing).
    pub async fn tcp(server: SocketAddr, realm: &str) -> Result<Self, TurnError> {
        let stream = TcpStream::connect(server).await?;
        let local = stream.local_addr()?;
        Ok(Self::with(
            Link::Tcp(Box::new(stream), Vec::new()),
            local,
            realm,
        ))
    }

    /// TURN over TLS, trusting only `root` (DER) and checking the name `host`.
    pub async fn tls(
        server: SocketAddr,
        root: Vec<u8>,
        host: &str,
        realm: &str,
    ) -> Result<Self, TurnError> {
        let tls_error = |e: &dyn std::fmt::Display| TurnError::Tls(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(root))
            .map_err(|e| tls_error(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name =
            rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| tls_error(&e))?;
        let tcp = TcpStream::connect(server).await?;
        let local = tcp.local_addr()?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(&e))?;
        Ok(Self::with(
            Link::Tcp(Box::new(tls), Vec::new()),
            local,
            realm,
        ))
    }

    fn with(link: Link, local: SocketAddr, realm: &str) -> Self {
        TurnClient {
            link,
            local,
            username: String::new(),
            password: String::new(),
            realm: realm.into(),
            nonce: None,
            inbox: VecDeque::new(),
        }
    }

    /// Sets the username and password of authenticated requests.
    pub fn creds(mut self, (username, password): (String, String)) -> Self {
        self.username = username;
        self.password = password;
        self
    }

    /// This end's address, as the relay sees it on loopback.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// True over TCP or TLS.
    pub fn is_stream(&self) -> bool {
        matches!(self.link, Link::Tcp(..))
    }

    /// Sends `bytes` as they are (one datagram over UDP).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TurnError> {
        match &mut self.link {
            Link::Udp(s) => {
                s.send(bytes).await?;
            }
            Link::Tcp(s, _) => s.write_all(bytes).await?,
        }
        Ok(())
    }

    /// The next packet from the server, or `None` after `wait` (or when the
    /// connection failed or closed).
    pub async fn recv(&mut self, wait: Duration) -> Option<Vec<u8>> {
        if let Some(p) = self.inbox.pop_front() {
            return Some(p);
        }
        tokio::time::timeout(wait, self.recv_link())
            .await
            .ok()
            .flatten()
    }

    async fn recv_link(&mut self) -> Option<Vec<u8>> {
        match &mut self.link {
            Link::Udp(s) => {
                let mut buf = vec![0u8; 65_536];
                let n = s.recv(&mut buf).await.ok()?;
                buf.truncate(n);
                Some(buf)
            }
            Link::Tcp(s, pending) => loop {
                if pending.len() >= 4 {
                    let len = u16::from_be_bytes([pending[2], pending[3]]) as usize;
                    let size = if pending[0] & 0xC0 == 0x40 {
                        4 + len.div_ceil(4) * 4
                    } else {
                        20 + len
                    };
                    if pending.len() >= size {
                        return Some(pending.drain(..size).collect());
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                pending.extend_from_slice(&chunk[..n]);
            },
        }
    }

    /// Sends a request and returns the response with the same transaction id;
    /// other packets meanwhile go to the inbox.
    pub async fn request(
        &mut self,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        integrity: bool,
    ) -> Result<Message, TurnError> {
        self.request_as(TransactionId::new(), method, attrs, integrity)
            .await
    }

    /// `request` with a chosen transaction id (to retransmit one).
    pub async fn request_as(
        &mut self,
        id: TransactionId,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        integrity: bool,
    ) -> Result<Message, TurnError> {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(id),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        if integrity {
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())));
            setters.push(Box::new(TextAttribute::new(
                ATTR_NONCE,
                self.nonce.clone().unwrap_or_default(),
            )));
            setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                self.realm.clone(),
                self.password.clone(),
            )));
        }
        let mut m = Message::new();
        m.build(&setters)?;
        self.send_raw(&m.raw.clone()).await?;
        loop {
            let packet = self
                .recv(RESPONSE_WAIT)
                .await
                .ok_or(TurnError::NoResponse(RESPONSE_WAIT))?;
            match decode(&packet) {
                Some(r) if r.transaction_id == m.transaction_id => return Ok(r),
                _ => self.inbox.push_back(packet),
            }
        }
    }

    /// An authenticated request, fetching a nonce first when there is none
    /// (the 401 dance): `attrs` makes the request's own attributes each time.
    pub async fn authed(
        &mut self,
        method: Method,
        attrs: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> Result<Message, TurnError> {
        if self.nonce.is_none() {
            let challenge = self.request(method, attrs(), false).await?;
            let code = error_code(&challenge);
            if code != Some(401) {
                return Err(TurnError::NotChallenged(code));
            }
            let nonce = TextAttribute::get_from_as(&challenge, ATTR_NONCE)
                .map_err(|_| TurnError::NoNonce)?;
            self.nonce = Some(nonce.text);
        }
        self.request(method, attrs(), true).await
    }

    /// An authenticated Allocate of a UDP relay address.
    pub async fn allocate(&mut self) -> Result<Message, TurnError> {
        self.authed(METHOD_ALLOCATE, || {
            vec![Box::new(::turn::proto::reqtrans::RequestedTransport {
                protocol: ::turn::proto::PROTO_UDP,
            })]
        })
        .await
    }

    /// One CreatePermission with an XOR-PEER-ADDRESS per peer.
    pub async fn create_permission(&mut self, peers: &[SocketAddr]) -> Result<Message, TurnError> {
        let peers = peers.to_vec();
        self.authed(METHOD_CREATE_PERMISSION, move || {
            peers
                .iter()
                .map(|p| {
                    Box::new(::turn::proto::peeraddr::PeerAddress {
                        ip: p.ip(),
                        port: p.port(),
                    }) as Box<dyn Setter>
                })
                .collect()
        })
        .await
    }

    /// A ChannelBind of channel `number` to `peer`.
    pub async fn channel_bind(
        &mut self,
        number: u16,
        peer: SocketAddr,
    ) -> Result<Message, TurnError> {
        self.authed(METHOD_CHANNEL_BIND, move || {
            vec![
                Box::new(::turn::proto::channum::ChannelNumber(number)),
                Box::new(::turn::proto::peeraddr::PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ]
        })
        .await
    }

    /// A Send indication of `data` to `peer`.
    pub async fn send_indication(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
    ) -> Result<(), TurnError> {
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(::turn::proto::peeraddr::PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(::turn::proto::data::Data(data.to_vec())),
        ])?;
        self.send_raw(&m.raw.clone()).await
    }

    /// A ChannelData message (padded to 4 bytes on a stream, as RFC 6062 asks).
    pub async fn channel_data(&mut self, number: u16, data: &[u8]) -> Result<(), TurnError> {
        let mut frame = number.to_be_bytes().to_vec();
        frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
        frame.extend_from_slice(data);
        if self.is_stream() {
            frame.resize(frame.len().div_ceil(4) * 4, 0);
        }
        self.send_raw(&frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_built_allocate_decodes_as_one() {
        let id = [7u8; 12];
        let m = decode(&allocate_request(id)).expect("a STUN message");
        assert_eq!(m.typ, MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST));
        assert_eq!(m.transaction_id.0, id);
        let mut transport = ::turn::proto::reqtrans::RequestedTransport::default();
        transport.get_from(&m).expect("REQUESTED-TRANSPORT");
        assert_eq!(transport.protocol, ::turn::proto::PROTO_UDP);
    }
}
