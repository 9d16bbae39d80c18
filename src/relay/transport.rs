//! The relay's sockets: binding UDP and TCP on one port, and the loops that
//! read them (UDP datagrams; TURN over TCP and TLS, RFC 6062 framing) and
//! hand every packet to the [`Server`], which owns what they mean.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RelayError;
use super::allocation::{ClientKey, Sink, Transport};
use super::server::{self, Server};

/// Largest TURN-over-TCP frame: a STUN message or ChannelData of 64 KiB.
const TCP_FRAME_MAX: usize = 65_535 + 20;
/// Frames queued for one TCP client before packets are dropped.
const TCP_QUEUE: usize = 1024;
/// Longest TLS handshake a TURNS client gets.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Binds UDP and (when asked) TCP on the same port. With port 0 the UDP port
/// is picked by the kernel and may be taken for TCP: then another is tried.
pub fn bind_listeners(
    listen: SocketAddr,
    tcp: bool,
) -> Result<(UdpSocket, Option<TcpListener>), RelayError> {
    let attempts = if listen.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = server::udp_socket(listen).map_err(|source| RelayError::Bind {
            addr: listen,
            transport: "udp",
            source,
        })?;
        if !tcp {
            return Ok((udp, None));
        }
        let addr = udp.local_addr().map_err(|source| RelayError::Bind {
            addr: listen,
            transport: "udp",
            source,
        })?;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std);
        match listener {
            Ok(l) => return Ok((udp, Some(l))),
            Err(source) => {
                last = Some(RelayError::Bind {
                    addr,
                    transport: "tcp",
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(RelayError::Bind {
        addr: listen,
        transport: "tcp",
        source: std::io::Error::other("no free port"),
    }))
}

pub async fn serve_udp(server: Arc<Server>, socket: Arc<UdpSocket>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    let sink = Sink::Udp(socket.clone());
    loop {
        let first = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = stop.cancelled() => return,
        };
        // Drain what is queued before waiting again: one wake-up, many packets.
        let mut next = first.ok();
        let mut handled = 0;
        while let Some((n, from)) = next {
            let client = ClientKey {
                transport: Transport::Udp,
                addr: from,
            };
            if let Some(reply) = server.handle(&buf[..n], client, &sink) {
                let _ = crate::net::send_now(&socket, &reply, from);
            }
            handled += 1;
            next = if handled < 64 {
                socket.try_recv_from(&mut buf).ok()
            } else {
                None
            };
        }
    }
}

pub async fn serve_tcp(server: Arc<Server>, listener: TcpListener, stop: CancellationToken) {
    loop {
        let (stream, from) = tokio::select! {
            accepted = crate::net::accept(&listener) => accepted,
            _ = stop.cancelled() => return,
        };
        let Some(held) = server.admit_stream(from) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            serve_stream(server, stream, from, Transport::Tcp, stop).await;
            drop(held);
        });
    }
}

/// Accepts TURN-over-TLS clients; the handshake gets a deadline so half-open
/// connections cannot pile up.
pub async fn serve_tls(
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    stop: CancellationToken,
) {
    loop {
        let (stream, from) = tokio::select! {
            accepted = crate::net::accept(&listener) => accepted,
            _ = stop.cancelled() => return,
        };
        let Some(held) = server.admit_stream(from) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (server, acceptor, stop) = (server.clone(), acceptor.clone(), stop.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_stream(server, tls, from, Transport::Tls, stop).await,
                Ok(Err(e)) => tracing::debug!(%from, error = %e, "TURNS handshake failed"),
                Err(_) => tracing::debug!(%from, "TURNS handshake timed out"),
            }
            drop(held);
        });
    }
}

pub fn tls_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, RelayError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| RelayError::Tls(format!("{cert}: {e}")))?;
    if certs.is_empty() {
        return Err(RelayError::Tls(format!(
            "{cert}: no certificate in the file"
        )));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| RelayError::Tls(format!("{key}: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| RelayError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One TURN client on a stream (TCP or TLS): RFC 8656 framing (STUN messages
/// and padded ChannelData). A connection that has no allocation for
/// `turn.tcp_idle_secs` (from its start, half-sent frames included, or from
/// the end of its allocation) is closed, like coturn does, so idle or silent
/// connections cannot pile up.
async fn serve_stream<S>(
    server: Arc<Server>,
    stream: S,
    from: SocketAddr,
    transport: Transport,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let client = ClientKey {
        transport,
        addr: from,
    };
    let sink = Sink::Tcp(tx.clone());
    let idle = server.settings.tcp_idle;
    // Checked twice per idle period: a connection goes within 1.5 of them.
    let mut last_allocated = tokio::time::Instant::now();
    let mut check = tokio::time::interval_at(last_allocated + idle / 2, idle / 2);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = tokio::select! {
            r = reader.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            now = check.tick() => {
                if server.table.get(&client).is_some() {
                    last_allocated = now;
                } else if now.duration_since(last_allocated) >= idle {
                    tracing::debug!(%from, "closing a TURN connection without an allocation");
                    server.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                continue;
            }
            _ = stop.cancelled() => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(size) = tcp_frame_size(&buf) {
            if size > TCP_FRAME_MAX {
                break 'conn;
            }
            if buf.len() < size {
                break;
            }
            let frame: Vec<u8> = buf.drain(..size).collect();
            if let Some(reply) = server.handle(&frame, client, &sink)
                && tx.send(reply).await.is_err()
            {
                break 'conn;
            }
        }
    }
    server.table.remove_client(&client);
    drop(sink);
    drop(tx);
    let _ = writer_task.await;
}

/// Length of the frame at the start of `buf`, once its header is there.
fn tcp_frame_size(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if server::is_channel_data(buf) {
        Some(4 + len.div_ceil(4) * 4)
    } else {
        Some(20 + len)
    }
}
