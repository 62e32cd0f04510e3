//! [`serve`]: axum's router over HTTP/1.1 and HTTP/2 (feature `http2`), directly over TLS
//! (feature `tls`), with WebSockets on both (RFC 8441 extended CONNECT on HTTP/2).

use std::{
    convert::Infallible,
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socketry::Http2Config;
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tower_service::Service;

/// Serves `router` on `listener`, as `axum::serve` does, with HTTP/2 on by default and
/// sized for WebSockets, and optionally TLS.
///
/// - **HTTP/1.1** always; **HTTP/2** unless [`http2(None)`](Serve::http2): over TLS when
///   ALPN picks `h2`, on cleartext when the client speaks it from the first byte. HTTP/2
///   advertises `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so browsers open their WebSockets as
///   streams of the page's connection (RFC 8441); an [`Upgrader`](crate::Upgrader)'s route
///   takes every method, so those CONNECT requests reach it (a `get(…)` route would refuse
///   them with 405, the trap axum users fall into).
/// - The HTTP/2 windows and limits are [`Http2Config`]'s (128 KiB per stream, 16 MiB per
///   connection, 128 streams): why, in its documentation.
/// - [`tls`](Serve::tls) (feature `tls`): `https://` and `wss://` straight from this
///   process; see [`socketry::tls`] to load a certificate and key.
/// - Each request carries [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), the peer's
///   address: on HTTP/2, the page and its sockets share it.
/// - Bounds: a connection has the [handshake timeout](Serve::handshake_timeout) for TLS and
///   its first request, at most 1024 are at that stage at once (accepting waits beyond), and
///   HTTP/2 peers are pinged every 20 s and dropped when they do not answer within 20 s.
///
/// ```no_run
/// use socketry_axum::{Upgrader, handler_fn};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = Upgrader::new(handler_fn(|conn, _| {
///     Box::pin(async move {
///         while let Some(message) = conn.recv().await {
///             conn.send(message?).await?;
///         }
///         Ok::<(), socketry::Error>(())
///     })
/// }));
/// let app = echo.route(axum::Router::new(), "/ws");
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// let tls = socketry::tls::server_config_from_pem_files("cert.pem", "key.pem")?;
/// socketry_axum::serve(listener, app).tls(tls).await?;
/// # Ok(()) }
/// # let _ = run;
/// ```
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        http2: Some(Http2Config::new()),
        #[cfg(feature = "tls")]
        tls: None,
        handshake_timeout: Duration::from_secs(10),
        signal: None,
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How often an HTTP/2 connection is pinged, and how long the answer may take.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How many connections may be in their handshake (TLS, then the first request) at once:
/// beyond, `serve` stops accepting until one is done, and the kernel's backlog holds the rest.
const MAX_HANDSHAKES: usize = 1024;

/// A server being set up; `.await` it to run. See [`serve`].
#[must_use = "a server does nothing until awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    http2: Option<Http2Config>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    handshake_timeout: Duration,
    signal: Option<Signal>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Serve");
        debug
            .field("listener", &self.listener)
            .field("http2", &self.http2);
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls.is_some());
        debug.finish_non_exhaustive()
    }
}

impl Serve {
    /// The HTTP/2 settings; `None` serves HTTP/1.1 only (and no ALPN `h2`). The default value
    /// is [`Http2Config::new`].
    pub fn http2(mut self, config: Option<Http2Config>) -> Self {
        self.http2 = config;
        self
    }

    /// Serves TLS with `config` ([`socketry::tls::server_config`] and friends). When its ALPN
    /// list is empty, it is set to `h2` (unless HTTP/2 is off) and `http/1.1`. The default
    /// value is cleartext.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long a new connection has for its TLS handshake and its first request together;
    /// one that takes longer is dropped. Later requests are hyper's to time (30 s for the
    /// headers of an HTTP/1.1 request); [`Http2Config::idle_timeout`] is the
    /// [`Listener`](socketry::Listener)'s and does not apply here. The default value is 10
    /// seconds.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Stops accepting once `signal` resolves, then waits for the open connections: HTTP/1.1
    /// ones after their current request, HTTP/2 ones after their streams, WebSockets over
    /// HTTP/2 included. A WebSocket upgraded from HTTP/1.1 has left hyper and is not waited
    /// for: close those with a [`Shutdown`](crate::Shutdown) (as
    /// [`Shutdown::on`](crate::Shutdown::on) does), which also closes the HTTP/2 ones. An
    /// HTTP/2 peer that stops answering is pinged out within 40 seconds.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// The address listened on.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    async fn run(self) -> io::Result<()> {
        let builders = Arc::new(self.builders());
        #[cfg(feature = "tls")]
        let tls = self
            .tls
            .map(|config| socketry::tls::with_alpn(config, self.http2.is_some()));
        // Every connection holds a receiver; shutdown says so, then waits for them all.
        let (shutdown, _) = watch::channel(false);
        let mut signal = self
            .signal
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let mut failures = 0u32;
        loop {
            let next = async {
                let permit = handshakes.clone().acquire_owned().await;
                (permit, self.listener.accept().await)
            };
            let (permit, accepted) = tokio::select! {
                next = next => next,
                () = &mut signal => break,
            };
            let Ok(permit) = permit else { break };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    failures = 0;
                    accepted
                }
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => {
                    failures = (failures + 1).min(100);
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(failures))).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let now = tokio::time::Instant::now();
            // TLS, the preface and the first request share the handshake timeout; one too
            // large for the clock means none.
            let deadline = now
                .checked_add(self.handshake_timeout)
                .unwrap_or(now + Duration::from_secs(86_400 * 365));
            let connection = Connection {
                builders: builders.clone(),
                router: self.router.clone(),
                peer,
                shutdown: shutdown.subscribe(),
                permit,
                deadline,
            };
            #[cfg(feature = "tls")]
            if let Some(tls) = &tls {
                let tls = tokio_rustls::TlsAcceptor::from(tls.clone());
                tokio::spawn(async move {
                    let mut connection = connection;
                    let accept = tls.accept(stream);
                    let Some(Ok(stream)) = connection.before_serving(accept).await else {
                        return;
                    };
                    // HTTP/2 over TLS is chosen by ALPN only, as browsers and clients do.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    connection.serve(stream, h2).await;
                });
                continue;
            }
            tokio::spawn(async move {
                let mut connection = connection;
                let h2 = match connection.builders.http2 {
                    Some(_) => {
                        let peek = socketry::peek_http2_preface(&stream);
                        match connection.before_serving(peek).await {
                            Some(Ok(h2)) => h2,
                            _ => return,
                        }
                    }
                    None => false,
                };
                connection.serve(stream, h2).await;
            });
        }
        drop(self.listener);
        let _ = shutdown.send(true);
        shutdown.closed().await;
        Ok(())
    }

    /// hyper's two servers, each used on its own: the auto-detecting one wraps the socket in
    /// a private type (hyper-util's `Rewind`) that an upgraded WebSocket cannot unwrap, so
    /// every read and write went through hyper's boxed `Upgraded`; with the version told
    /// first, an HTTP/1.1 WebSocket gets its `TcpStream` back.
    fn builders(&self) -> Builders {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new());
        let http2 = self.http2.as_ref().map(|config| {
            let mut http2 = http2::Builder::new(TokioExecutor::new());
            http2
                .timer(TokioTimer::new())
                .enable_connect_protocol()
                // A peer that vanished, or never answers the PING of a graceful shutdown
                // (which h2 waits for), is found out and its connection ended.
                .keep_alive_interval(Some(KEEPALIVE))
                .keep_alive_timeout(KEEPALIVE)
                .initial_stream_window_size(config.get_stream_window())
                .initial_connection_window_size(config.get_connection_window())
                .max_concurrent_streams(config.get_max_streams())
                .max_send_buf_size(config.get_max_send_buffer())
                .max_header_list_size(config.get_max_header_list_size())
                .max_frame_size(config.get_max_frame_size());
            http2
        });
        Builders { http1, http2 }
    }
}

/// The HTTP/1.1 server, and the HTTP/2 one unless it is off.
struct Builders {
    http1: http1::Builder,
    http2: Option<http2::Builder<TokioExecutor>>,
}

/// One accepted connection and what serving it needs.
struct Connection {
    builders: Arc<Builders>,
    router: Router,
    peer: SocketAddr,
    /// Turns `true` when the server shuts down; dropped when the connection ends.
    shutdown: watch::Receiver<bool>,
    /// Its place among the connections in their handshake (TLS, the first request), given
    /// back with the first request.
    permit: OwnedSemaphorePermit,
    /// When the first request must have come.
    deadline: tokio::time::Instant,
}

impl Connection {
    /// Runs `step` (TLS, the preface) within the deadline; `None` past it or once the server
    /// shuts down, as a connection with no request yet has nothing to finish.
    async fn before_serving<F: Future>(&mut self, step: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            done = tokio::time::timeout_at(self.deadline, step) => done.ok(),
            _ = self.shutdown.wait_for(|stopping| *stopping) => None,
        }
    }

    /// Serves the connection, in HTTP/2 if `h2`; one that brings no request by the deadline
    /// (a client that connects and says nothing, before hyper has a timeout of its own
    /// running) is dropped.
    async fn serve<T>(self, io: T, h2: bool)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            builders,
            router,
            peer,
            shutdown,
            permit,
            deadline,
        } = self;
        let seen = Arc::new(AtomicBool::new(false));
        let saw = seen.clone();
        let permit = Arc::new(std::sync::Mutex::new(Some(permit)));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if !saw.swap(true, Ordering::Relaxed) {
                drop(permit.lock().unwrap_or_else(|p| p.into_inner()).take());
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { Ok::<_, Infallible>(router.call(request).await.unwrap_or_else(|e| match e {})) }
        });
        let io = TokioIo::new(io);
        // The peer's errors (a reset, a bad request) end its connection only.
        match &builders.http2 {
            Some(http2) if h2 => {
                let connection = http2.serve_connection(io, service);
                drive(connection, shutdown, deadline, &seen, |c| {
                    c.graceful_shutdown()
                })
                .await;
            }
            _ => {
                let connection = builders.http1.serve_connection(io, service).with_upgrades();
                drive(connection, shutdown, deadline, &seen, |c| {
                    c.graceful_shutdown()
                })
                .await;
            }
        }
    }
}

/// Runs `connection` until it ends: dropped if no request came by `deadline`, shut down
/// gracefully (`start_shutdown`) once `shutdown` turns `true`.
async fn drive<C, F>(
    connection: C,
    mut shutdown: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    seen: &AtomicBool,
    start_shutdown: F,
) where
    C: Future,
    F: FnOnce(Pin<&mut C>),
{
    let mut connection = std::pin::pin!(connection);
    let mut first = true;
    loop {
        tokio::select! {
            // Served first: a connection whose request came with its last moment is kept.
            biased;
            _ = &mut connection => return,
            _ = shutdown.wait_for(|stopping| *stopping) => break,
            () = tokio::time::sleep_until(deadline), if first => {
                if !seen.load(Ordering::Relaxed) {
                    return;
                }
                first = false;
            }
        }
    }
    start_shutdown(connection.as_mut());
    if first && !seen.load(Ordering::Relaxed) {
        // No request yet: the deadline still holds (hyper waits up to 30 s for the headers of
        // a request that has begun).
        let _ = tokio::time::timeout_at(deadline, connection).await;
    } else {
        let _ = connection.await;
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
