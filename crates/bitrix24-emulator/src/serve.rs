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
//!   are handed to axum through a channel, so a slow or stuck client cannot hold up others.
//!
//! The client's address (for the per-IP rate limit) travels in [`Conn`] too.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
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
    killed: Arc<AtomicBool>,
}

impl Conn {
    /// Close the connection without writing anything more (in particular, no response).
    pub fn reset(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, EmuListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, EmuListener>) -> Self {
        Conn {
            peer: *stream.remote_addr(),
            killed: stream.io().killed.clone(),
        }
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
    local: SocketAddr,
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
            local: listener.local_addr()?,
            source: Source::Plain(listener),
        })
    }

    /// Serve HTTPS on `listener`; handshakes run in their own tasks.
    pub fn tls(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_tls(listener, TlsAcceptor::from(config), tx));
        Ok(EmuListener {
            local,
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

impl Listener for EmuListener {
    type Io = Io;
    type Addr = SocketAddr;

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

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
