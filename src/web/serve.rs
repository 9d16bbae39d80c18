//! The HTTP/1.1 server loop (hyper), for the web app on HTTP or HTTPS and for
//! the redirect port.
//!
//! Our own loop rather than `axum::serve`, because a server on a public
//! address needs limits that `axum::serve` does not set:
//! - a request head (and, on a kept-alive connection, the next one) must
//!   arrive within `server.header_timeout_secs`, so a client that sends
//!   nothing, or its headers a byte at a time, cannot hold a connection;
//! - a request body must arrive within `server.body_timeout_secs`, counted
//!   from the first read, not between reads;
//! - connections per source address are capped, and slow consumers closed
//!   ([`super::conn`]);
//! - running out of file descriptors pauses accepting ([`crate::net::accept`]).
//!
//! A stop signal lets the open connections finish their current request
//! (hyper's graceful shutdown) and returns once they are all closed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::conn::{Gate, Guarded};

/// Timeouts of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head must arrive within this long (also the idle keep-alive time).
    pub header: Duration,
    /// A request body must arrive within this long from its first read.
    pub body: Duration,
}

/// Where connections come from.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection; `None` once the source is closed.
    fn accept(&mut self) -> impl Future<Output = Option<(Self::Io, SocketAddr)>> + Send;
}

/// Plain TCP connections, held to the gate's limits.
pub struct Tcp {
    listener: TcpListener,
    gate: Arc<Gate>,
}

impl Tcp {
    pub fn new(listener: TcpListener, gate: Arc<Gate>) -> Self {
        Self { listener, gate }
    }
}

impl Accept for Tcp {
    type Io = Guarded;

    async fn accept(&mut self) -> Option<(Self::Io, SocketAddr)> {
        loop {
            let (tcp, from) = crate::net::accept(&self.listener).await;
            let Some(permit) = self.gate.admit(from.ip()) else {
                continue;
            };
            // Chat frames are small and latency-bound: no Nagle delay.
            let _ = tcp.set_nodelay(true);
            return Some((self.gate.guard(tcp, permit), from));
        }
    }
}

/// Serves `router` on every connection from `source` until `stop`, then
/// waits for the open connections to finish.
pub async fn serve<A: Accept>(
    mut source: A,
    router: Router,
    timeouts: Timeouts,
    metrics: Arc<crate::metrics::Metrics>,
    stop: CancellationToken,
) {
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    loop {
        let (io, from) = tokio::select! {
            next = source.accept() => match next {
                Some(c) => c,
                None => break,
            },
            _ = stop.cancelled() => break,
        };
        let router = router.clone();
        let stop = stop.clone();
        let open = open_rx.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            serve_connection(io, from, router, timeouts, metrics, stop).await;
            drop(open);
        });
    }
    drop(open_rx);
    open_tx.closed().await;
}

async fn serve_connection<Io>(
    io: Io,
    from: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    metrics: Arc<crate::metrics::Metrics>,
    stop: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(from));
        let req = req.map(|body| Body::new(Deadline::new(body, timeouts.body)));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            crate::metrics::Metrics::inc(&metrics.http_timeouts);
            tracing::debug!(%from, "HTTP connection closed: request head not received in time");
        } else {
            tracing::trace!(%from, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// A request body that must arrive whole within a deadline counted from its
/// first read; past it, reading fails (the handler answers 400 and the
/// connection closes).
struct Deadline {
    inner: Incoming,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
        }
    }
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
