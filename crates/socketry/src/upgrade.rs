//! Upgrading hyper 1.x requests (feature `hyper`).
//!
//! Validate the request and answer 101 from the HTTP handler; the connection itself comes
//! from the returned [`UpgradeFut`] once hyper hands over the transport, so serve the
//! connection `with_upgrades()`.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::{Bytes, Incoming}};
//! use socketry::{Acceptor, upgrade};
//!
//! async fn handler(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
//!     let (response, websocket) = match Acceptor::new().upgrade(&mut request) {
//!         Ok(upgrade) => upgrade,
//!         Err(err) => return Ok(upgrade::reject(&err)),
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = websocket.await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_text() || msg.is_binary() {
//!                 let _ = ws.send(msg).await;
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//! # let _ = handler;
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use socketry_proto::{HandshakeError, Role, handshake};
use tokio::net::TcpStream;

use crate::{Acceptor, Error, WebSocket, WebSocketConfig};

/// The transport of an upgraded hyper connection.
///
/// When hyper served a plain [`TcpStream`] (as `axum::serve` and hyper-util's `TokioIo` over
/// a tokio listener do), the socket is taken back out of hyper's type-erased wrapper: reads
/// and writes go straight to it, and hyper's read buffer is freed (bytes already read are
/// handed to the connection first). Any other transport (TLS, a custom listener) stays
/// wrapped.
#[derive(Debug)]
pub struct Upgraded(Transport);

#[derive(Debug)]
enum Transport {
    Tcp(TcpStream),
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
}

impl Upgraded {
    /// Unwraps `upgraded`; returns the transport and the bytes hyper read past the request.
    fn new(upgraded: hyper::upgrade::Upgraded) -> (Self, Bytes) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (Self(Transport::Tcp(parts.io.into_inner())), parts.read_buf),
            Err(upgraded) => (Self(Transport::Hyper(TokioIo::new(upgraded))), Bytes::new()),
        }
    }

    /// Whether reads and writes go straight to a `TcpStream`.
    pub fn is_tcp(&self) -> bool {
        matches!(self.0, Transport::Tcp(_))
    }
}

forward_io!(Upgraded, .0 => [Transport::Tcp, Transport::Hyper]);

impl Acceptor {
    /// Validates an HTTP/1.1 upgrade, returning its key, or (feature `http2`) an HTTP/2
    /// extended CONNECT, which has none.
    fn validate_any<'r, B>(
        &self,
        request: &'r Request<B>,
    ) -> Result<Option<&'r str>, HandshakeError> {
        #[cfg(feature = "http2")]
        if request.version() == http::Version::HTTP_2 {
            return self
                .validate_http2(request, protocol_of(request))
                .map(|()| None);
        }
        self.validate(request).map(Some)
    }

    /// Validates a hyper request as a WebSocket opening handshake: an HTTP/1.1 upgrade, or
    /// with the `http2` feature an HTTP/2 extended CONNECT (RFC 8441; serve HTTP/2 with
    /// `enable_connect_protocol()`, as `axum::serve` does).
    ///
    /// Returns the response for the handler to return (101, or 200 on HTTP/2), and the future
    /// of the connection.
    ///
    /// # Errors
    ///
    /// The [`HandshakeError`] the request earned; answer it with [`reject`].
    pub fn upgrade<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<(Response<Full<Bytes>>, UpgradeFut), HandshakeError> {
        let key = self.validate_any(request)?;
        let (response, protocol, deflate) = self.response(request, key);
        let (parts, ()) = response.into_parts();
        let mut response = Response::from_parts(parts, Full::new(Bytes::new()));
        for (name, value) in self.headers_ref() {
            response.headers_mut().append(name, value.clone());
        }
        let fut = UpgradeFut {
            on_upgrade: hyper::upgrade::on(request),
            config: *self.config_ref(),
            protocol,
            deflate,
        };
        Ok((response, fut))
    }
}

/// Validates `request` with the default [`Acceptor`] settings; see [`Acceptor::upgrade`].
///
/// # Errors
///
/// As [`Acceptor::upgrade`].
pub fn upgrade<B>(
    request: &mut Request<B>,
) -> Result<(Response<Full<Bytes>>, UpgradeFut), HandshakeError> {
    Acceptor::new().upgrade(request)
}

/// The answer to a refused HTTP/1.1 upgrade: its status (400, 405, 426 with
/// `Sec-WebSocket-Version: 13`) and a plain-text reason. [`reject_for`] answers in the
/// request's HTTP version.
pub fn reject(err: &HandshakeError) -> Response<Full<Bytes>> {
    let (parts, body) = handshake::error_response(err).into_parts();
    Response::from_parts(parts, Full::new(Bytes::from(body)))
}

/// The answer to a refused upgrade of `request`: as [`reject`] on HTTP/1.1; on HTTP/2 a
/// wrong version is 400 rather than 426 (there is no `Upgrade` to require there) and no
/// connection-specific header is sent (RFC 9113 §8.2.2).
pub fn reject_for<B>(request: &Request<B>, err: &HandshakeError) -> Response<Full<Bytes>> {
    if request.version() != http::Version::HTTP_2 {
        return reject(err);
    }
    let (parts, body) = handshake::error_response_http2(err).into_parts();
    Response::from_parts(parts, Full::new(Bytes::from(body)))
}

/// Whether `request` asks for a WebSocket: an HTTP/1.1 upgrade (as
/// [`is_websocket_upgrade`](crate::is_websocket_upgrade)) or an HTTP/2 extended CONNECT
/// with `:protocol websocket` (RFC 8441 §4). It says nothing of the request's validity: route
/// on it, then let [`Acceptor::upgrade`] check the rest.
pub fn is_websocket_request<B>(request: &Request<B>) -> bool {
    if request.version() == http::Version::HTTP_2 {
        return request.method() == http::Method::CONNECT
            && protocol_of(request).is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    }
    handshake::is_upgrade_request(request)
}

/// The `:protocol` of an HTTP/2 extended CONNECT, served by hyper or by `h2` directly
/// (feature `http2`; without it no HTTP/2 request is a WebSocket one).
fn protocol_of<B>(request: &Request<B>) -> Option<&str> {
    #[cfg(feature = "http2")]
    {
        request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .map(hyper::ext::Protocol::as_str)
            .or_else(|| crate::http2::h2_protocol(request))
    }
    #[cfg(not(feature = "http2"))]
    {
        let _ = request;
        None
    }
}

/// The connection of an upgraded request; resolves once hyper hands over the transport.
#[derive(Debug)]
#[must_use = "the connection exists only once this future is awaited"]
pub struct UpgradeFut {
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: WebSocketConfig,
    protocol: Option<String>,
    deflate: Option<socketry_proto::extensions::deflate::DeflateParams>,
}

impl Future for UpgradeFut {
    type Output = Result<WebSocket<Upgraded>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = ready!(Pin::new(&mut self.on_upgrade).poll(cx))
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let protocol = self.protocol.take();
        let (io, read_ahead) = Upgraded::new(upgraded);
        Poll::Ready(Ok(WebSocket::from_parts(
            io,
            Role::Server,
            self.config,
            &read_ahead,
            protocol,
            self.deflate,
        )))
    }
}
