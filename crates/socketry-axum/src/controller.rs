//! [`Controller`]: what serves a WebSocket endpoint, with Goyave's optional hooks as provided
//! methods.

use std::{fmt, future::Future, pin::Pin};

use axum::{Router, response::Response, routing::MethodRouter};
use http::HeaderMap;

use crate::{Conn, Request, ServeError, UpgradeError, upgrader::default_upgrade_error};

/// Serves WebSocket connections (Goyave's `Controller`).
///
/// Only [`serve`](Self::serve) is required. When it returns, the connection is closed for you:
/// `Ok` (or a normal close by the peer) closes with 1000 "Server closed connection"; an error
/// goes to [`on_error`](Self::on_error) and closes with 1011 "Internal server error" (the
/// error's text in debug mode). A panic is caught and handled like an error.
///
/// # Examples
///
/// ```
/// use socketry_axum::{Conn, Controller, Request};
///
/// struct Echo;
///
/// impl Controller for Echo {
///     type Error = socketry::Error;
///
///     async fn serve(&self, conn: &mut Conn, _request: &Request) -> Result<(), Self::Error> {
///         while let Some(message) = conn.recv().await {
///             let message = message?;
///             if message.is_text() || message.is_binary() {
///                 conn.send(message).await?;
///             }
///         }
///         Ok(())
///     }
/// }
///
/// let app: axum::Router = socketry_axum::Upgrader::new(Echo).route(axum::Router::new(), "/echo");
/// # drop(app);
/// ```
pub trait Controller: Send + Sync + 'static {
    /// What `serve` fails with.
    type Error: fmt::Display + fmt::Debug + Send + 'static;

    /// Runs one connection until it is done.
    fn serve<'a>(
        &'a self,
        conn: &'a mut Conn,
        request: &'a Request,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;

    /// Called with the error `serve` returned or the panic it raised, before the connection
    /// closes with 1011. The default logs it with `tracing` at error level (Goyave's
    /// `ErrorHandler`). Endings that are not the controller's failure never come here: a
    /// [`socketry::Error`] that reports the peer's close, an abnormal closure, a protocol
    /// violation by the peer, a keepalive timeout or a send after the close began is logged
    /// at debug level and closes normally. (Only a `socketry::Error` itself is recognised: an
    /// error type that wraps one reaches `on_error`, which can look inside.)
    fn on_error(&self, request: &Request, error: &ServeError) {
        tracing::error!(path = %request.uri().path(), %error, "websocket controller failed");
    }

    /// Decides whether the request's origin is acceptable (Goyave's `OriginChecker`); `None`
    /// applies the configured policy (by default, same origin). A rejected origin gets 403.
    fn check_origin(&self, request: &Request) -> Option<bool> {
        let _ = request;
        None
    }

    /// Extra headers for the 101 response (Goyave's `HeaderUpgrader`).
    fn upgrade_headers(&self, request: &Request) -> HeaderMap {
        let _ = request;
        HeaderMap::new()
    }

    /// The response to a failed upgrade (Goyave's `UpgradeErrorHandler`), given why it
    /// failed (its [`status`](UpgradeError::status) is the usual answer). The default is
    /// [`default_upgrade_error`]: `{"error": "<status text>"}` (the error's text in debug
    /// mode) with `Sec-WebSocket-Version: 13`.
    fn on_upgrade_error(&self, request: &Request, error: &UpgradeError, debug: bool) -> Response {
        let _ = request;
        default_upgrade_error(error, debug)
    }

    /// Registers the upgrade route (Goyave's `Registrer`); the default routes every method at
    /// `path`, so that HTTP/2's extended CONNECT reaches the handler beside HTTP/1.1's GET
    /// (other methods get the JSON 405 of [`Controller::on_upgrade_error`]). A router of
    /// your own must do the same: `get(handler)` alone refuses every browser's socket over
    /// HTTP/2.
    fn register_route(&self, router: Router, path: &str, handler: MethodRouter) -> Router {
        router.route(path, handler)
    }
}

/// A boxed future borrowing the connection, as [`handler_fn`] closures return.
pub type BoxServe<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// A controller made of a closure (Fiber's `websocket.New(handler)`); see [`handler_fn`].
pub struct FnController<F>(F);

impl<F> fmt::Debug for FnController<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnController")
    }
}

/// Makes a controller of a closure. The closure borrows the connection and the request, so
/// it returns a boxed future:
///
/// ```
/// use socketry_axum::{Upgrader, handler_fn};
///
/// let upgrader = Upgrader::new(handler_fn(|conn, _request| {
///     Box::pin(async move {
///         while let Some(Ok(message)) = conn.recv().await {
///             conn.send(message).await?;
///         }
///         Ok::<(), socketry::Error>(())
///     })
/// }));
/// let app: axum::Router = upgrader.route(axum::Router::new(), "/ws");
/// # drop(app);
/// ```
pub fn handler_fn<F, E>(f: F) -> FnController<F>
where
    F: for<'a> Fn(&'a mut Conn, &'a Request) -> BoxServe<'a, E> + Send + Sync + 'static,
    E: fmt::Display + fmt::Debug + Send + 'static,
{
    FnController(f)
}

impl<F, E> Controller for FnController<F>
where
    F: for<'a> Fn(&'a mut Conn, &'a Request) -> BoxServe<'a, E> + Send + Sync + 'static,
    E: fmt::Display + fmt::Debug + Send + 'static,
{
    type Error = E;

    fn serve<'a>(
        &'a self,
        conn: &'a mut Conn,
        request: &'a Request,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a {
        (self.0)(conn, request)
    }
}
