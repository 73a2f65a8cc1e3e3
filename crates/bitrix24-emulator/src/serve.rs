//! The serving loop: accepting connections (plain or TLS) and closing them without an answer.
//!
//! Two things need the connection itself rather than a request handler:
//!
//! - **Closing a connection without an answer** (the `reset_before` / `reset_after` faults).
//!   hyper always writes a response, so every accepted stream is wrapped in [`Io`], which
//!   carries a kill switch shared with the requests on that connection ([`Conn`], a request
//!   extension via axum's `ConnectInfo`). A handler that trips the switch still returns a
//!   response, but the wrapper fails every write from then on: hyper gives up on the
//!   connection and drops it, so the client sees the socket close with no HTTP response bytes.
//! - **TLS handshakes off the accept loop.** With TLS, a background task accepts TCP
//!   connections and runs each handshake in its own task (with a timeout); finished streams
//!   are handed to the serving loop through a channel, so a slow or stuck client cannot hold
//!   up others.
//!
//! The client's address (for the per-IP rate limit) travels in [`Conn`] too.
//!
//! Connections are served by hyper directly (not `axum::serve`) so that hyper's header-read
//! timer runs: it starts when a connection opens and again after each answer, and closes a
//! connection that has not sent a complete request head by then. That one timer bounds idle
//! keep-alive connections, connections that never send, and slowloris clients; a request
//! being read or answered is never cut by it. Bodies have their own timeout in the handler.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection facts handed to every request on it.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is HTTPS: the scheme the portal's own URLs carry.
    pub tls: bool,
    killed: Arc<AtomicBool>,
}

impl Conn {
    /// Close the connection without writing anything more (in particular, no response).
    pub fn reset(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection with a kill switch.
pub struct Io {
    stream: Stream,
    killed: Arc<AtomicBool>,
}

impl Io {
    fn new(stream: Stream) -> Self {
        Io {
            stream,
            killed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection closed by fault injection",
    )
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            // No TLS close_notify either: the peer must see an abrupt close.
            return Poll::Ready(Ok(()));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connections from a bound socket, plain or through TLS.
pub struct EmuListener {
    source: Source,
}

enum Source {
    Plain(TcpListener),
    /// Streams whose handshake finished; the acceptor task stops when this is dropped.
    Tls(mpsc::Receiver<(Io, SocketAddr)>),
}

impl EmuListener {
    /// Serve plain HTTP on `listener`.
    pub fn plain(listener: TcpListener) -> io::Result<Self> {
        Ok(EmuListener {
            source: Source::Plain(listener),
        })
    }

    /// Serve HTTPS on `listener`; handshakes run in their own tasks.
    pub fn tls(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_tls(listener, TlsAcceptor::from(config), tx));
        Ok(EmuListener {
            source: Source::Tls(rx),
        })
    }
}

async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(Io, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((Io::new(Stream::Tls(Box::new(tls))), peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Out of file descriptors and the like: wait instead of spinning (as axum does).
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl EmuListener {
    async fn accept(&mut self) -> (Io, SocketAddr) {
        match &mut self.source {
            Source::Plain(listener) => loop {
                match TcpListener::accept(listener).await {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        return (Io::new(Stream::Plain(tcp)), peer);
                    }
                    Err(e) => accept_error(e).await,
                }
            },
            Source::Tls(rx) => match rx.recv().await {
                Some(pair) => pair,
                // The acceptor task is gone (it only stops when we are dropped).
                None => std::future::pending().await,
            },
        }
    }
}

/// Serve `router` on `listener` until `shutdown` resolves, then finish open connections
/// gracefully (idle ones close at once) and return when all are done.
pub async fn run(
    mut listener: EmuListener,
    router: Router,
    idle_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (io, peer) = listener.accept() => {
                let tls = matches!(io.stream, Stream::Tls(_));
                let conn = Conn { peer, tls, killed: io.killed.clone() };
                let router = router.clone();
                let stop = stop_rx.clone();
                connections.spawn(serve_connection(io, conn, router, idle_timeout, stop));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    io: Io,
    conn: Conn,
    router: Router,
    idle_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let peer = conn.peer;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(conn.clone()));
        let mut router = router.clone();
        // Router is always ready; its error type is Infallible.
        tower_service::Service::call(&mut router, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let done = tokio::select! {
        done = connection.as_mut() => done,
        _ = async { stop.wait_for(|stop| *stop).await.map(|_| ()) } => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = done {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
