//! [`Error`]: everything that can go wrong on a connection, with its cause kept.

use std::io;

use http::StatusCode;
use socketry_proto::{CloseCode, HandshakeError, ProtocolError};

/// An error of a WebSocket connection or handshake.
///
/// A normal close is not an error: [`WebSocket::recv`](crate::WebSocket::recv) returns `None`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455; the connection was failed with
    /// [`ProtocolError::close_code`] and is closed.
    #[error("websocket protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed. A server has already answered with
    /// [`HandshakeError::status`].
    #[error("websocket handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The transport failed.
    #[error("i/o error")]
    Io(#[from] io::Error),
    /// The peer closed the transport without a close frame (close code 1006).
    #[error("connection closed without a close frame")]
    AbnormalClosure,
    /// A message was sent after the close frame (gorilla's `ErrCloseSent`), or the connection
    /// is already closed.
    #[error("connection already closed")]
    AlreadyClosed,
    /// The message cannot be sent: a control payload over 125 bytes, or a reserved close code.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// A timeout passed: which one says [`Timeout`].
    #[error("{0} timed out")]
    Timeout(Timeout),
    /// A message was not the JSON expected (feature `json`); the connection stays usable.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    #[error("invalid json message")]
    Json(#[source] serde_json::Error),
    /// The HTTP proxy refused the `CONNECT`; carries its status.
    #[error("proxy answered {0} to CONNECT")]
    Proxy(http::StatusCode),
    /// The server answered the opening handshake with another status than 101 (a 401, a
    /// 403, a redirect): the whole response, with up to [`MAX_ERROR_BODY`] bytes of its body,
    /// to debug it (tungstenite's `Error::Http`).
    #[error("websocket handshake refused with {}", .0.status())]
    Http(Box<http::Response<bytes::Bytes>>),
    /// The URL is not a valid `ws://` or `wss://` URL (or proxy URL). Boxed: errors travel
    /// through every poll, so the enum stays small.
    #[error(transparent)]
    InvalidUrl(Box<UrlError>),
}

impl From<UrlError> for Error {
    fn from(err: UrlError) -> Self {
        Self::InvalidUrl(Box::new(err))
    }
}

/// The most bytes of a refused handshake's body [`Error::Http`] keeps: 64 KiB.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why a URL was refused, with its cause when there is one.
#[derive(Debug, Clone)]
pub struct UrlError {
    url: String,
    reason: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl UrlError {
    /// `url` (with any credentials already redacted) and why it was refused.
    pub(crate) fn new(url: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// The same, with the underlying error.
    pub(crate) fn caused_by(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// The URL (credentials redacted).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid url {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for UrlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Which timeout passed, in [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// Connecting the transport ([`Connector::dial_timeout`](crate::Connector)).
    Dial,
    /// The opening handshake.
    Handshake,
    /// Waiting for a message ([`WebSocketConfig::read_timeout`](crate::WebSocketConfig::read_timeout));
    /// the connection stays usable.
    Read,
    /// Waiting for the transport to take queued bytes
    /// ([`WebSocketConfig::write_timeout`](crate::WebSocketConfig::write_timeout)); the bytes
    /// stay queued.
    Write,
    /// No pong came within the keepalive timeout; the connection was failed with 1011.
    Keepalive,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dial => "dial",
            Self::Handshake => "websocket handshake",
            Self::Read => "read",
            Self::Write => "write",
            Self::Keepalive => "keepalive",
        })
    }
}

impl Error {
    /// The close code that was sent for this error, if it failed the connection.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(err) => Some(err.close_code()),
            _ => None,
        }
    }

    /// The HTTP status of a failed handshake: what the server answered (client side) or what
    /// was answered to the client (server side).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Handshake(err) => Some(err.status()),
            Self::Http(response) => Some(response.status()),
            _ => None,
        }
    }
}

impl From<socketry_proto::Error> for Error {
    fn from(err: socketry_proto::Error) -> Self {
        match err {
            socketry_proto::Error::Protocol(e) => Self::Protocol(e),
            socketry_proto::Error::Handshake(e) => Self::Handshake(e),
            socketry_proto::Error::AlreadyClosed => Self::AlreadyClosed,
            socketry_proto::Error::InvalidMessage(m) => Self::InvalidMessage(m),
            _ => Self::InvalidMessage("unknown protocol error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small_since_every_poll_returns_them() {
        let size = std::mem::size_of::<Error>();
        assert!(size <= 32, "Error is {size} bytes: box the large variant");
    }
}
