//! A hand-built TURN client: every request is assembled attribute by
//! attribute, so tests can send exactly the wrong thing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const WAIT: Duration = Duration::from_secs(3);

/// A byte stream TURN can be framed on: TCP or TLS.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

enum Link {
    Udp(UdpSocket),
    Tcp(Box<dyn Stream>, Vec<u8>, SocketAddr),
}

pub struct Raw {
    link: Link,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: Option<String>,
    /// Packets that were not the awaited response (indications, ChannelData).
    pub inbox: VecDeque<Vec<u8>>,
}

pub fn decode(packet: &[u8]) -> Option<Message> {
    let mut m = Message::new();
    m.raw = packet.to_vec();
    m.decode().ok()?;
    Some(m)
}

pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    Some(e.code.0)
}

pub fn is_success(m: &Message) -> bool {
    m.typ.class == CLASS_SUCCESS_RESPONSE
}

impl Raw {
    pub async fn udp(server: SocketAddr) -> Raw {
        Self::udp_from(server, "127.0.0.1").await
    }

    /// A UDP client on another loopback address (127.0.0.0/8 is all local).
    pub async fn udp_from(server: SocketAddr, ip: &str) -> Raw {
        let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        sock.connect(server).await.unwrap();
        Self::with(Link::Udp(sock))
    }

    pub async fn tcp(server: SocketAddr) -> Raw {
        let stream = TcpStream::connect(server).await.unwrap();
        let local = stream.local_addr().unwrap();
        Self::with(Link::Tcp(Box::new(stream), Vec::new(), local))
    }

    /// TURN over TLS, trusting only `root` (DER) and checking the name `host`.
    pub async fn tls(server: SocketAddr, root: Vec<u8>, host: &str) -> Raw {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(root))
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(server).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the relay");
        Self::with(Link::Tcp(Box::new(tls), Vec::new(), local))
    }

    fn with(link: Link) -> Raw {
        Raw {
            link,
            username: String::new(),
            password: String::new(),
            realm: crate::support::REALM.into(),
            nonce: None,
            inbox: VecDeque::new(),
        }
    }

    pub fn creds(mut self, (username, password): (String, String)) -> Self {
        self.username = username;
        self.password = password;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        match &self.link {
            Link::Udp(s) => s.local_addr().unwrap(),
            Link::Tcp(_, _, local) => *local,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(s) => {
                s.send(bytes).await.unwrap();
            }
            Link::Tcp(s, _, _) => s.write_all(bytes).await.unwrap(),
        }
    }

    /// The next packet from the server, or `None` after `wait`.
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
            Link::Tcp(s, pending, _) => loop {
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

    /// Sends a request and returns the response with the same transaction id.
    pub async fn request(
        &mut self,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        integrity: bool,
    ) -> Message {
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
    ) -> Message {
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
        m.build(&setters).unwrap();
        self.send_raw(&m.raw.clone()).await;
        loop {
            let packet = self.recv(WAIT).await.expect("a response from the relay");
            match decode(&packet) {
                Some(r) if r.transaction_id == m.transaction_id => return r,
                _ => self.inbox.push_back(packet),
            }
        }
    }

    /// An authenticated request, fetching a nonce first when needed (the 401 dance).
    pub async fn authed(
        &mut self,
        method: Method,
        attrs: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> Message {
        if self.nonce.is_none() {
            let challenge = self.request(method, attrs(), false).await;
            assert_eq!(
                error_code(&challenge),
                Some(401),
                "first round trip is a challenge"
            );
            self.nonce = Some(
                TextAttribute::get_from_as(&challenge, ATTR_NONCE)
                    .unwrap()
                    .text,
            );
        }
        self.request(method, attrs(), true).await
    }

    pub async fn allocate(&mut self) -> Message {
        self.authed(METHOD_ALLOCATE, || {
            vec![Box::new(turn::proto::reqtrans::RequestedTransport {
                protocol: turn::proto::PROTO_UDP,
            })]
        })
        .await
    }

    pub async fn create_permission(&mut self, peers: &[SocketAddr]) -> Message {
        let peers = peers.to_vec();
        self.authed(METHOD_CREATE_PERMISSION, move || {
            peers
                .iter()
                .map(|p| {
                    Box::new(turn::proto::peeraddr::PeerAddress {
                        ip: p.ip(),
                        port: p.port(),
                    }) as Box<dyn Setter>
                })
                .collect()
        })
        .await
    }

    pub async fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> Message {
        self.authed(METHOD_CHANNEL_BIND, move || {
            vec![
                Box::new(turn::proto::channum::ChannelNumber(number)),
                Box::new(turn::proto::peeraddr::PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ]
        })
        .await
    }

    pub async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(turn::proto::peeraddr::PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(turn::proto::data::Data(data.to_vec())),
        ])
        .unwrap();
        self.send_raw(&m.raw.clone()).await;
    }

    pub async fn channel_data(&mut self, number: u16, data: &[u8]) {
        let mut frame = number.to_be_bytes().to_vec();
        frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
        frame.extend_from_slice(data);
        if matches!(self.link, Link::Tcp(..)) {
            frame.resize(frame.len().div_ceil(4) * 4, 0);
        }
        self.send_raw(&frame).await;
    }
}

/// The XOR-RELAYED-ADDRESS of an Allocate success.
pub fn relayed(m: &Message) -> SocketAddr {
    let mut a = turn::proto::relayaddr::RelayedAddress::default();
    a.get_from(m).unwrap();
    SocketAddr::new(a.ip, a.port)
}

/// coturn-style REST credentials for `user` under `secret`, valid for
/// `ttl_secs` (negative: expired), computed here independently of the server.
pub fn credentials(secret: &str, user: &str, ttl_secs: i64) -> (String, String) {
    use base64::Engine as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let username = format!("{}:{user}", now + ttl_secs);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    (
        username,
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    )
}
