//! The opening handshake (RFC 6455 §4): key and accept computation, request and response
//! parsing, validation, and subprotocol selection, for both roles.
//!
//! Everything here works on `http` types and byte buffers; reading and writing them is the I/O
//! layer's job.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};

mod client;
mod http2;
mod origin;
mod server;

pub use client::{
    Accepted, parse_response, validate_connect_response, validate_response, write_request,
};
pub use http2::{
    PROTOCOL, connect_request, connect_response, error_response_http2, is_connect_success,
    is_extended_connect, strip_connection_headers, validate_extended_connect,
};
pub use origin::{OriginCheck, OriginPolicy};
pub use server::{
    error_response, parse_request, response, select_subprotocol, select_subprotocol_by_server,
    validate_request, write_response,
};

/// The GUID every accept value is derived from (RFC 6455 §1.3).
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version RFC 6455 defines.
pub const VERSION: &str = "13";

/// The most header fields a handshake may carry.
pub const MAX_HEADERS: usize = 64;

/// The most bytes the head of a handshake request or response may take.
pub const MAX_HEAD_LEN: usize = 16 * 1024;

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded.
///
/// # Examples
///
/// ```
/// let key = socketry_proto::handshake::generate_key();
/// assert_eq!(key.len(), 24);
/// ```
pub fn generate_key() -> String {
    BASE64.encode(rand::random::<[u8; 16]>())
}

/// The `Sec-WebSocket-Accept` value for a key (RFC 6455 §4.2.2).
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::accept_key;
///
/// // RFC 6455 §1.3
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    BASE64.encode(sha1.digest().bytes())
}

/// Why an opening handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not a well-formed HTTP/1.1 head.
    #[error("malformed http head: {0}")]
    MalformedHttp(&'static str),
    /// The head is longer than [`MAX_HEAD_LEN`] or has more than [`MAX_HEADERS`] fields.
    #[error("http head too large")]
    HeadTooLarge,
    /// The request method is not GET.
    #[error("request method must be GET")]
    MethodNotGet,
    /// The HTTP version is older than 1.1.
    #[error("http version must be at least 1.1")]
    OldHttpVersion,
    /// The request has no `Host` header.
    #[error("missing host header")]
    MissingHost,
    /// `Upgrade` lacks the `websocket` token: not a WebSocket request at all.
    #[error("'websocket' token not found in 'Upgrade' header")]
    NoUpgradeWebSocket,
    /// `Connection` lacks the `upgrade` token.
    #[error("'upgrade' token not found in 'Connection' header")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported websocket version: 13 not found in 'Sec-WebSocket-Version' header")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or is not base64 of 16 bytes.
    #[error("'Sec-WebSocket-Key' header is missing or not base64 of 16 bytes")]
    InvalidKey,
    /// The response status is not 101 (or, over HTTP/2, not 2xx); carries the status.
    #[error("server answered {0} instead of accepting the upgrade")]
    UnexpectedStatus(StatusCode),
    /// `Sec-WebSocket-Accept` does not match the key.
    #[error("'Sec-WebSocket-Accept' does not match the key")]
    InvalidAccept,
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnexpectedSubprotocol(String),
    /// The server answered with an extension the client did not offer (RFC 6455 §4.1).
    #[error("server answered with extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// The origin check refused the request.
    #[error("origin not allowed")]
    OriginRejected,
    /// An HTTP/2 request that is not a CONNECT: not a WebSocket request at all (RFC 8441 §4).
    #[error(
        "http/2 websocket requests must be an extended CONNECT (:method CONNECT, :protocol websocket)"
    )]
    NotExtendedConnect,
    /// An HTTP/2 CONNECT without the `:protocol` pseudo-header: a tunnel request, not a
    /// WebSocket (RFC 8441 §4).
    #[error("CONNECT without a :protocol pseudo-header")]
    MissingProtocol,
    /// An HTTP/2 extended CONNECT for another protocol than `websocket`.
    #[error(":protocol {0:?} is not websocket")]
    UnsupportedProtocol(String),
    /// The server's HTTP/2 settings do not allow extended CONNECT
    /// (`SETTINGS_ENABLE_CONNECT_PROTOCOL` is not 1, RFC 8441 §3), so no WebSocket can be
    /// opened over that connection.
    #[error("the http/2 server does not allow extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)")]
    ExtendedConnectDisabled,
}

impl HandshakeError {
    /// The HTTP status a server answers this failure with.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_proto::handshake::HandshakeError;
    /// use http::StatusCode;
    ///
    /// assert_eq!(HandshakeError::MethodNotGet.status(), StatusCode::METHOD_NOT_ALLOWED);
    /// assert_eq!(HandshakeError::UnsupportedVersion.status(), StatusCode::UPGRADE_REQUIRED);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotGet | Self::NotExtendedConnect => StatusCode::METHOD_NOT_ALLOWED,
            Self::NoUpgradeWebSocket | Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::OriginRejected => StatusCode::FORBIDDEN,
            Self::UnexpectedStatus(status) => *status,
            Self::UnsupportedProtocol(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Whether a comma-separated header (over all its lines) holds `token`, case-insensitively.
pub fn header_contains_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The comma-separated tokens of a header over all its lines, trimmed, empty ones skipped.
pub fn header_tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a request asks for a WebSocket upgrade (gorilla's `IsWebSocketUpgrade`).
///
/// # Examples
///
/// ```
/// let req = http::Request::get("/chat")
///     .header("connection", "keep-alive, Upgrade")
///     .header("upgrade", "websocket")
///     .body(())
///     .unwrap();
/// assert!(socketry_proto::handshake::is_upgrade_request(&req));
/// ```
pub fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    header_contains_token(request.headers(), header::CONNECTION, "upgrade")
        && header_contains_token(request.headers(), header::UPGRADE, "websocket")
}

/// The subprotocols a client request offers, in its order (gorilla's `Subprotocols`).
pub fn requested_subprotocols<B>(request: &Request<B>) -> impl Iterator<Item = &str> {
    header_tokens(request.headers(), header::SEC_WEBSOCKET_PROTOCOL)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn version_ok(version: Version) -> bool {
    version != Version::HTTP_09 && version != Version::HTTP_10
}

fn is_get(method: &Method) -> bool {
    method == Method::GET
}

#[cfg(test)]
mod tests;
