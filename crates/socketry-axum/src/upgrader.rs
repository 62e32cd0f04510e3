//! [`Upgrader`] and [`Settings`]: the axum handler that upgrades requests and runs the
//! controller, closing the connection when it returns.

use std::{
    any::Any,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    response::{IntoResponse, Response},
    routing::{MethodRouter, any},
};
use futures_util::FutureExt;
use http::{HeaderValue, StatusCode, header};
use socketry::{Acceptor, OriginPolicy, WebSocketConfig, upgrade::UpgradeFut};

use crate::{
    Conn, Controller, PanicError, Request, ServeError, Shutdown, UpgradeError, error,
    shutdown::Guard,
};

/// Decides whether a request may be upgraded at all (Fiber's `Filter`); the requests it skips
/// go to the [fallback](Upgrader::fallback), or get 426.
pub type Filter = Arc<dyn Fn(&http::Request<Body>) -> bool + Send + Sync>;
/// Serves the requests that are not upgraded (see [`Upgrader::fallback`]).
pub type Fallback = Arc<
    dyn Fn(axum::extract::Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync,
>;
/// Handles a panic instead of [`Controller::on_error`] (Fiber's `RecoverHandler`).
pub type RecoverHandler = Arc<dyn Fn(&Request, &PanicError) + Send + Sync>;

/// The settings of an [`Upgrader`] (Goyave's `Settings` and Fiber's `Config`).
#[derive(Clone)]
pub struct Settings {
    acceptor: Acceptor,
    origin: OriginPolicy,
    debug: bool,
    filter: Option<Filter>,
    handshake_timeout: Duration,
    recover: Option<RecoverHandler>,
    shutdown: Option<Shutdown>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("acceptor", &self.acceptor)
            .field("origin", &self.origin)
            .field("debug", &self.debug)
            .field("filter", &self.filter.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("recover", &self.recover.is_some())
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // The origin is checked here, after the controller's `check_origin` hook.
            acceptor: Acceptor::new()
                .config(WebSocketConfig::production())
                .origin_policy(OriginPolicy::any()),
            origin: OriginPolicy::default(),
            debug: false,
            filter: None,
            handshake_timeout: Duration::from_secs(10),
            recover: None,
            shutdown: None,
        }
    }
}

impl Settings {
    /// The connection settings: limits, buffers, timeouts (close handshake, read, write),
    /// keepalive, compression. The default value is [`WebSocketConfig::production`]: the
    /// defaults plus keepalive (a ping every 20 s, closed after 20 s without a pong), so a
    /// peer that went silent does not hold its connection forever.
    #[must_use]
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.acceptor = self.acceptor.config(config);
        self
    }

    /// The subprotocols supported, the first in the client's order being selected
    /// ([`socketry::WebSocket::protocol`] shows it). The default value is none.
    #[must_use]
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.acceptor = self.acceptor.protocols(protocols);
        self
    }

    /// The origin policy, checked when the controller's
    /// [`check_origin`](Controller::check_origin) has no opinion; refused requests get 403.
    /// The default value is [`OriginPolicy::same_host`]: host and port of the page equal
    /// those the request was sent to (forwarded headers are trusted only when the policy
    /// says so).
    #[must_use]
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// Origins allowed instead of the same-host default: exact `scheme://host[:port]`
    /// values, or `*` for any (a shorthand for [`OriginPolicy::allow`]).
    #[must_use]
    pub fn allowed_origins<I, O>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.origin = OriginPolicy::allow(origins).allow_missing(self.origin.allows_missing());
        self
    }

    /// Whether a request without an `Origin` header (not from a browser) passes. The
    /// default value is `true`.
    #[must_use]
    pub fn allow_missing_origin(mut self, allow: bool) -> Self {
        self.origin = self.origin.allow_missing(allow);
        self
    }

    /// Debug mode: error texts go into close frames and upgrade error bodies, and panics carry
    /// a backtrace. The default value is `false`.
    #[must_use]
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// A filter (Fiber's `Filter`): requests it rejects are skipped, as Fiber's `c.Next()`:
    /// they go to the upgrader's [fallback](Upgrader::fallback) (the page on the same path,
    /// say), or get 426 without one. The default value is none.
    #[must_use]
    pub fn filter(
        mut self,
        filter: impl Fn(&http::Request<Body>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// How long the upgrade may take from the 101 response being handed to the server until
    /// the connection is ours (hyper writes the response and gives up the socket only once the
    /// request is complete). A connection that takes longer is dropped without reaching the
    /// controller. The default value is 10 seconds. (Reading the request itself is the HTTP
    /// server's job: see hyper's `header_read_timeout`.)
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// A recover handler called for panics instead of [`Controller::on_error`]. The default
    /// value is none.
    #[must_use]
    pub fn recover(
        mut self,
        recover: impl Fn(&Request, &PanicError) + Send + Sync + 'static,
    ) -> Self {
        self.recover = Some(Arc::new(recover));
        self
    }

    /// Tracks the connections for graceful shutdown. The default value is none.
    #[must_use]
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

/// The default response to a failed upgrade: its [status](UpgradeError::status) and
/// `{"error": "<status text>"}` (the error's text in debug mode), with
/// `Sec-WebSocket-Version: 13`.
pub fn default_upgrade_error(error: &UpgradeError, debug: bool) -> Response {
    let status = error.status();
    let message = if debug {
        error.to_string()
    } else {
        status.canonical_reason().unwrap_or("error").to_owned()
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    response
}

/// Upgrades requests to WebSocket connections served by a [`Controller`] (Goyave's
/// `Upgrader`). The HTTP handler returns as soon as the 101 is ready, so logging middleware
/// sees the request complete; the connection runs in its own task.
///
/// # Examples
///
/// ```no_run
/// use socketry_axum::{Conn, Controller, Request, Upgrader};
///
/// struct Echo;
///
/// impl Controller for Echo {
///     type Error = socketry::Error;
///
///     async fn serve(&self, conn: &mut Conn, _request: &Request) -> Result<(), Self::Error> {
///         while let Some(message) = conn.recv().await {
///             conn.send(message?).await?;
///         }
///         Ok(())
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Upgrader::new(Echo).route(axum::Router::new(), "/echo");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// # let _ = run;
/// ```
pub struct Upgrader<C> {
    controller: Arc<C>,
    settings: Arc<Settings>,
    fallback: Option<Fallback>,
}

impl<C> Clone for Upgrader<C> {
    fn clone(&self) -> Self {
        Self {
            controller: self.controller.clone(),
            settings: self.settings.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<C> fmt::Debug for Upgrader<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrader")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<C: Controller> Upgrader<C> {
    /// An upgrader with default [`Settings`].
    pub fn new(controller: C) -> Self {
        Self {
            controller: Arc::new(controller),
            settings: Arc::new(Settings::default()),
            fallback: None,
        }
    }

    /// Serves the requests that are not upgraded with `handler`: those the
    /// [filter](Settings::filter) skips and those that are no WebSocket handshake at all (no
    /// `Upgrade: websocket`), so that a page and its socket share a path. Without a fallback
    /// they get the upgrade error (426).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_axum::{Upgrader, handler_fn};
    ///
    /// let chat = Upgrader::new(handler_fn(|conn, _| {
    ///     Box::pin(async move {
    ///         while let Some(message) = conn.recv().await {
    ///             conn.send(message?).await?;
    ///         }
    ///         Ok::<(), socketry::Error>(())
    ///     })
    /// }))
    /// .fallback(|| async { axum::response::Html("<h1>the chat page</h1>") });
    /// let app: axum::Router = chat.route(axum::Router::new(), "/chat");
    /// # let _ = app;
    /// ```
    #[must_use]
    pub fn fallback<H, T>(mut self, handler: H) -> Self
    where
        H: axum::handler::Handler<T, ()>,
        T: 'static,
    {
        self.fallback = Some(Arc::new(move |request| {
            let handler = handler.clone();
            Box::pin(async move { axum::handler::Handler::call(handler, request, ()).await })
        }));
        self
    }

    /// Replaces the settings.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// The handler, to mount anywhere (`router.route("/ws", upgrader.handler())`). It takes
    /// every method so that a non-GET request gets the JSON 405 of
    /// [`Controller::on_upgrade_error`] rather than axum's bare one.
    pub fn handler(&self) -> MethodRouter {
        let upgrader = self.clone();
        any(move |request: axum::extract::Request| {
            let upgrader = upgrader.clone();
            async move { upgrader.upgrade(request).await }
        })
    }

    /// Registers the upgrade route into `router` through [`Controller::register_route`]
    /// (by default every method at `path`, so that HTTP/2's CONNECT reaches it).
    pub fn route(self, router: Router, path: &str) -> Router {
        let handler = self.handler();
        self.controller.register_route(router, path, handler)
    }

    async fn upgrade(&self, mut request: axum::extract::Request) -> Response {
        let settings = &self.settings;
        let passes_filter = settings
            .filter
            .as_ref()
            .is_none_or(|filter| filter(&request));
        if let Some(fallback) = &self.fallback
            && (!passes_filter || !socketry::is_websocket_request(&request))
        {
            return fallback(request).await;
        }
        let upgrade = passes_filter.then(|| settings.acceptor.upgrade(&mut request));
        let policy_allows = settings.origin.check(&request).is_ok();
        let http2 = request.version() == http::Version::HTTP_2;
        let (parts, _body) = request.into_parts();
        let context = Request::from_parts(parts).await;
        let fail = |error: UpgradeError| {
            let mut response = self
                .controller
                .on_upgrade_error(&context, &error, settings.debug);
            // 426 requires an `Upgrade` header, which HTTP/2 forbids: a wrong version or a
            // filtered request is a plain 400 there.
            if http2 && response.status() == StatusCode::UPGRADE_REQUIRED {
                *response.status_mut() = StatusCode::BAD_REQUEST;
            }
            response
        };
        if settings
            .shutdown
            .as_ref()
            .is_some_and(Shutdown::is_shutting_down)
        {
            return fail(UpgradeError::ShuttingDown);
        }
        let (response, connection) = match upgrade {
            None => return fail(UpgradeError::Filtered),
            Some(Err(err)) => return fail(UpgradeError::Handshake(err)),
            Some(Ok(upgrade)) => upgrade,
        };
        let origin_ok = self
            .controller
            .check_origin(&context)
            .unwrap_or(policy_allows);
        if !origin_ok {
            return fail(UpgradeError::OriginRejected);
        }
        let (mut parts, body) = response.into_parts();
        parts
            .headers
            .extend(self.controller.upgrade_headers(&context));
        // Counted from now, so that a shutdown starting before the task runs still waits.
        let tracked = settings.shutdown.as_ref().map(Shutdown::enter);
        tokio::spawn(run(
            self.controller.clone(),
            self.settings.clone(),
            connection,
            context,
            tracked,
        ));
        Response::from_parts(parts, Body::new(body))
    }
}

/// `work`'s output, or `None` if `cancel` resolved first (`work` is dropped then).
async fn unless<F: Future>(work: F, cancel: impl Future<Output = ()>) -> Option<F::Output> {
    let (mut work, mut cancel) = (std::pin::pin!(work), std::pin::pin!(cancel));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        cancel.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Runs one connection: the controller, then the automatic close.
async fn run<C: Controller>(
    controller: Arc<C>,
    settings: Arc<Settings>,
    connection: UpgradeFut,
    request: Request,
    tracked: Option<Guard>,
) {
    let upgrade = Box::pin(tokio::time::timeout(settings.handshake_timeout, connection));
    // In a block of its own: `ws` is borrowed, so the task's future would otherwise keep room
    // for it (a kilobyte) across every later await.
    let mut conn = {
        let Ok(Ok(mut ws)) = upgrade.await else {
            return;
        };
        if let Some(guard) = &tracked {
            // A closer, not a handle: the connection stays whole (no lock shared by halves).
            guard.attach(ws.closer());
        }
        Conn::new(ws, settings.debug)
    };
    if settings.debug {
        error::install_backtrace_hook();
    }
    let serve = CaptureBacktraces {
        inner: Box::pin(controller.serve(&mut conn, &request)),
        on: settings.debug,
    };
    let serving = AssertUnwindSafe(serve).catch_unwind();
    let outcome = match &tracked {
        // A controller that neither uses its connection nor returns on the shutdown signal
        // would hold the 1001 back past the deadline: it is cancelled after a grace.
        Some(guard) => unless(serving, guard.grace_over()).await,
        None => Some(serving.await),
    };
    let Some(outcome) = outcome else {
        tracing::debug!(path = %request.uri().path(), "websocket controller cancelled by shutdown");
        let _ = Box::pin(conn.close_normal()).await;
        drop(tracked);
        return;
    };
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => match ended_connection(&err) {
            // The peer left, broke the protocol or went silent, or the server's own close
            // (a shutdown) ended the connection: not the controller's failure, and not worth
            // more than a debug line (a client could otherwise flood the logs at will).
            Some(ending) => {
                tracing::debug!(path = %request.uri().path(), %ending, "websocket connection ended");
                None
            }
            None => Some(ServeError::Handler(Box::new(err))),
        },
        Err(payload) => Some(ServeError::Panic(PanicError::from_payload(
            &*payload,
            settings.debug,
        ))),
    };
    match failure {
        // The closing futures are boxed: awaited inline, their state would take room in the
        // connection's task for its whole life (see `run`'s size in the idle-memory figures).
        None => {
            let _ = Box::pin(conn.close_normal()).await;
        }
        Some(error) => {
            match (&error, &settings.recover) {
                (ServeError::Panic(panic), Some(recover)) => recover(&request, panic),
                _ => controller.on_error(&request, &error),
            }
            // The error need not be `Sync`: only its text is held across the close.
            let text = error.to_string();
            drop(error);
            let _ = Box::pin(conn.close_with_error(text)).await;
        }
    }
    drop(tracked);
}

/// The connection's end that `err` reports, if it is one (not a failure of the controller):
/// the peer's close, an abnormal closure, a protocol violation by the peer, the keepalive, or
/// a send after the close began.
fn ended_connection<E: Any>(err: &E) -> Option<&socketry::Error> {
    let err = (err as &dyn Any).downcast_ref::<socketry::Error>()?;
    matches!(
        err,
        socketry::Error::AbnormalClosure
            | socketry::Error::Io(_)
            | socketry::Error::Protocol(_)
            | socketry::Error::AlreadyClosed
            | socketry::Error::Timeout(socketry::Timeout::Keepalive)
    )
    .then_some(err)
}

/// Polls the controller with panic backtraces captured where the panic happens.
struct CaptureBacktraces<F> {
    /// Boxed, so that this wrapper is `Unpin`.
    inner: Pin<Box<F>>,
    on: bool,
}

impl<F: Future> Future for CaptureBacktraces<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.on {
            error::capturing(|| this.inner.as_mut().poll(cx))
        } else {
            this.inner.as_mut().poll(cx)
        }
    }
}
