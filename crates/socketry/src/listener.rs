//! [`Listener`]: accepting WebSockets on a TCP listener, over HTTP/1.1, TLS (feature `rustls`)
//! and HTTP/2 (feature `http2`), each connection's handshake in its own task.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::Request;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinHandle,
};

#[cfg(feature = "http2")]
use crate::Http2Config;
use crate::{Acceptor, ServerStream, WebSocket};

/// How many accepted connections may wait for [`Incoming::accept`]. An HTTP/1.1 connection
/// that completes its handshake when the backlog is full waits for room (up to the handshake
/// timeout); an HTTP/2 CONNECT is answered 503 at once instead.
const BACKLOG: usize = 128;

/// How many connections may be between `accept()` and [`Incoming`] (TLS, the HTTP/2 preface,
/// the HTTP/1.1 handshake, waiting for the backlog) at once: beyond, the listener stops
/// accepting until one is done, and the kernel's backlog holds the rest.
const MAX_HANDSHAKES: usize = 1024;

/// Serves WebSockets on a [`TcpListener`]: each TCP connection's handshake runs in its own
/// task (a slow client holds up no other), and the connections that complete come out of
/// [`Incoming::accept`].
///
/// - Plain: the HTTP/1.1 upgrade, with the [`Acceptor`]'s checks.
/// - [`tls`](Self::tls) (feature `rustls`): `wss://`, with ALPN offering `h2` (when HTTP/2 is
///   on) and `http/1.1`.
/// - [`http2`](Self::http2) (feature `http2`): every HTTP/2 stream that is an extended
///   CONNECT (RFC 8441) becomes a WebSocket, many on one connection: over TLS when ALPN picks
///   `h2`, and on plain TCP when the client speaks HTTP/2 with prior knowledge.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use socketry::{Acceptor, Listener};
///
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let mut incoming = Listener::new(Acceptor::new()).serve(tcp);
/// while let Some((mut ws, request)) = incoming.accept().await {
///     tokio::spawn(async move {
///         println!("{} over {:?}", request.uri(), request.version());
///         while let Some(Ok(message)) = ws.recv().await {
///             if message.is_text() || message.is_binary() {
///                 let _ = ws.send(message).await;
///             }
///         }
///     });
/// }
/// # Ok(()) }
/// # let _ = run;
/// ```
#[derive(Debug, Clone)]
pub struct Listener {
    acceptor: Acceptor,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    #[cfg(feature = "http2")]
    http2: Option<Http2Config>,
}

impl Listener {
    /// Serves with `acceptor`'s settings, HTTP/1.1 on plain TCP until told otherwise.
    pub fn new(acceptor: Acceptor) -> Self {
        Self {
            acceptor,
            #[cfg(feature = "rustls")]
            tls: None,
            #[cfg(feature = "http2")]
            http2: None,
        }
    }

    /// Serves TLS with `config` (see [`tls::server_config`](crate::tls::server_config)). When
    /// its ALPN list is empty, it is set to `h2` (if HTTP/2 is on) and `http/1.1`. The
    /// handshake timeout bounds the TLS handshake too. The default value is plain TCP.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    #[must_use]
    pub fn tls(mut self, config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Accepts WebSockets over HTTP/2 with `config`'s settings, beside HTTP/1.1. The default
    /// value is HTTP/1.1 only.
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    #[must_use]
    pub fn http2(mut self, config: Http2Config) -> Self {
        self.http2 = Some(config);
        self
    }

    /// Starts accepting on `tcp` in a task of its own; the connections come out of the
    /// returned [`Incoming`]. Dropping it stops accepting: HTTP/2 connections then take no
    /// new stream and end with their last socket.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn serve(self, tcp: TcpListener) -> Incoming {
        let local_addr = tcp.local_addr().ok();
        let (tx, rx) = mpsc::channel(BACKLOG);
        #[cfg(feature = "rustls")]
        let mut this = self;
        #[cfg(feature = "rustls")]
        if let Some(config) = this.tls.take() {
            this.tls = Some(crate::tls::with_alpn(config, this.serves_http2()));
        }
        #[cfg(not(feature = "rustls"))]
        let this = self;
        let task = tokio::spawn(accept_loop(tcp, Arc::new(this), tx));
        Incoming {
            rx,
            task,
            local_addr,
        }
    }

    #[cfg(feature = "rustls")]
    fn serves_http2(&self) -> bool {
        #[cfg(feature = "http2")]
        return self.http2.is_some();
        #[cfg(not(feature = "http2"))]
        false
    }
}

/// The connections a [`Listener`] accepted, with their requests.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<(WebSocket<ServerStream>, Request<()>)>,
    task: JoinHandle<()>,
    local_addr: Option<SocketAddr>,
}

impl Incoming {
    /// The next connection whose handshake completed, with its request (`version()` says
    /// whether it came over HTTP/2). The listener keeps accepting through errors (out of file
    /// descriptors, say: it waits and tries again), so `None` comes only if its task
    /// panicked.
    ///
    /// Refused handshakes were answered (400, 403, 405, 426…) and are not returned.
    pub async fn accept(&mut self) -> Option<(WebSocket<ServerStream>, Request<()>)> {
        self.rx.recv().await
    }

    /// The address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Sender = mpsc::Sender<(WebSocket<ServerStream>, Request<()>)>;

async fn accept_loop(tcp: TcpListener, listener: Arc<Listener>, tx: Sender) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut failures = 0u32;
    loop {
        let next = async {
            let permit = handshakes.clone().acquire_owned().await;
            (permit, tcp.accept().await)
        };
        let (permit, accepted) = tokio::select! {
            next = next => next,
            () = tx.closed() => return,
        };
        let Ok(permit) = permit else { return };
        match accepted {
            Ok((stream, _)) => {
                failures = 0;
                tokio::spawn(connection(stream, listener.clone(), tx.clone(), permit));
            }
            // Out of file descriptors and the like: wait (up to a second) and try again,
            // rather than spin or give up.
            Err(_) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(10 * u64::from(failures.min(100)));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One TCP connection: TLS if configured, then HTTP/2 or the HTTP/1.1 upgrade. `permit`
/// counts it among the handshakes in progress until it is delivered or serves HTTP/2.
async fn connection(
    stream: TcpStream,
    listener: Arc<Listener>,
    tx: Sender,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    // TLS, the preface and HTTP/2's own handshake share one deadline; HTTP/1.1's handshake
    // has the acceptor's.
    #[cfg(any(feature = "rustls", feature = "http2"))]
    let deadline = crate::time::after(listener.acceptor.handshake_timeout_get());
    #[cfg(feature = "rustls")]
    if let Some(config) = &listener.tls {
        let handshake = tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream);
        let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, handshake).await else {
            return;
        };
        #[cfg(feature = "http2")]
        if let Some(config) = &listener.http2
            && tls.get_ref().1.alpn_protocol() == Some(b"h2")
        {
            serve_http2(tls, &listener.acceptor, config, &tx, deadline, permit).await;
            return;
        }
        http1(ServerStream::Tls(Box::new(tls)), &listener.acceptor, tx).await;
        drop(permit);
        return;
    }
    #[cfg(feature = "http2")]
    if let Some(config) = &listener.http2 {
        match tokio::time::timeout_at(deadline, crate::peek_http2_preface(&stream)).await {
            Ok(Ok(true)) => {
                serve_http2(stream, &listener.acceptor, config, &tx, deadline, permit).await;
                return;
            }
            Ok(Ok(false)) => {}
            _ => return,
        }
    }
    http1(ServerStream::Tcp(stream), &listener.acceptor, tx).await;
    drop(permit);
}

async fn http1(stream: ServerStream, acceptor: &Acceptor, tx: Sender) {
    if let Ok(accepted) = acceptor.accept_with_request(stream).await {
        // A server that does not accept for this long drops the connection rather than
        // hold it (and its handshake slot) forever.
        let _ = tx
            .send_timeout(accepted, acceptor.handshake_timeout_get())
            .await;
    }
}

#[cfg(feature = "http2")]
async fn serve_http2<T>(
    io: T,
    acceptor: &Acceptor,
    config: &Http2Config,
    tx: &Sender,
    deadline: tokio::time::Instant,
    permit: OwnedSemaphorePermit,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let admission = crate::http2::Admission {
        deadline,
        permit: Some(permit),
    };
    let serve = crate::http2::serve(
        io,
        acceptor,
        config,
        ServerStream::H2,
        tx,
        admission,
        tx.closed(),
    );
    let _ = serve.await;
}
