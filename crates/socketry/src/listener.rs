//! [`Listener`]: accepting WebSockets on a TCP listener, over HTTP/1.1, TLS (feature `rustls`)
//! and HTTP/2 (feature `http2`), each connection's handshake in its own task.

use std::{net::SocketAddr, sync::Arc};

use http::Request;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

#[cfg(feature = "http2")]
use crate::Http2Config;
use crate::{Acceptor, ServerStream, WebSocket};

/// How many accepted connections may wait for [`Incoming::accept`] before the handshakes that
/// complete wait too.
const BACKLOG: usize = 128;

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

/// What each connection's task shares.
#[derive(Debug)]
struct Shared {
    listener: Listener,
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
        #[allow(unused_mut)]
        let mut listener = self;
        #[cfg(feature = "rustls")]
        if let Some(config) = &mut listener.tls
            && config.alpn_protocols.is_empty()
        {
            let mut with_alpn = (**config).clone();
            #[cfg(feature = "http2")]
            if listener.http2.is_some() {
                with_alpn.alpn_protocols.push(b"h2".to_vec());
            }
            with_alpn.alpn_protocols.push(b"http/1.1".to_vec());
            *config = Arc::new(with_alpn);
        }
        let shared = Arc::new(Shared { listener });
        let task = tokio::spawn(accept_loop(tcp, shared, tx));
        Incoming {
            rx,
            task,
            local_addr,
        }
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
    /// whether it came over HTTP/2). `None` once the listener failed for good.
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

async fn accept_loop(tcp: TcpListener, shared: Arc<Shared>, tx: Sender) {
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = tx.closed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                failures = 0;
                tokio::spawn(connection(stream, shared.clone(), tx.clone()));
            }
            // Out of file descriptors and the like: wait, rather than spin or give up.
            Err(_) if failures < 1000 => {
                failures += 1;
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 * u64::from(failures.min(100)),
                ))
                .await;
            }
            Err(_) => return,
        }
    }
}

/// One TCP connection: TLS if configured, then HTTP/2 or the HTTP/1.1 upgrade.
async fn connection(stream: TcpStream, shared: Arc<Shared>, tx: Sender) {
    let _ = stream.set_nodelay(true);
    let listener = &shared.listener;
    #[cfg(feature = "rustls")]
    if let Some(config) = &listener.tls {
        let handshake = tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream);
        let timeout = listener.acceptor.handshake_timeout_get();
        let Ok(Ok(tls)) = tokio::time::timeout(timeout, handshake).await else {
            return;
        };
        #[cfg(feature = "http2")]
        if let Some(config) = &listener.http2
            && tls.get_ref().1.alpn_protocol() == Some(b"h2")
        {
            serve_http2(tls, &listener.acceptor, config, tx).await;
            return;
        }
        http1(ServerStream::Tls(Box::new(tls)), &listener.acceptor, tx).await;
        return;
    }
    #[cfg(feature = "http2")]
    if let Some(config) = &listener.http2 {
        let mut first = [0u8; 1];
        let timeout = listener.acceptor.handshake_timeout_get();
        match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
            Ok(Ok(1)) if crate::http2::starts_preface(first[0]) => {
                serve_http2(stream, &listener.acceptor, config, tx).await;
                return;
            }
            Ok(Ok(1)) => {}
            _ => return,
        }
    }
    http1(ServerStream::Tcp(stream), &listener.acceptor, tx).await;
}

async fn http1(stream: ServerStream, acceptor: &Acceptor, tx: Sender) {
    if let Ok(accepted) = acceptor.accept_with_request(stream).await {
        let _ = tx.send(accepted).await;
    }
}

#[cfg(feature = "http2")]
async fn serve_http2<T>(io: T, acceptor: &Acceptor, config: &Http2Config, tx: Sender)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let stop = tx.clone();
    let deliver = |ws, request| {
        // Spawned: waiting here for room in the backlog would stall every stream on the
        // connection, whose I/O this task drives. At most `max_streams` wait per connection.
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((ws, request)).await;
        });
    };
    let _ = crate::http2::serve(
        io,
        acceptor,
        config,
        ServerStream::H2,
        deliver,
        async move { stop.closed().await },
    )
    .await;
}
