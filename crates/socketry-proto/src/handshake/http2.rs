//! The opening handshake over HTTP/2 (RFC 8441): an extended CONNECT on one stream.
//!
//! On HTTP/2 a WebSocket is one stream: the client sends `:method CONNECT` with
//! `:protocol websocket` (allowed once the server's `SETTINGS_ENABLE_CONNECT_PROTOCOL` is 1),
//! and the server answers 200. There is no `Upgrade`, `Connection`, `Sec-WebSocket-Key` or
//! `Sec-WebSocket-Accept` (RFC 8441 §5): the stream is the connection. `Sec-WebSocket-Version`,
//! `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions` and `Origin` mean what they mean on
//! HTTP/1.1. The `:protocol` pseudo-header is not part of [`http::Request`]; HTTP/2 libraries
//! carry it in the request's extensions, so the caller passes it in.

use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};

use super::{HandshakeError, VERSION, header_contains_token, header_value};

/// The `:protocol` value that opens a WebSocket (RFC 8441 §4).
pub const PROTOCOL: &str = "websocket";

/// Whether an HTTP/2 request asks for a WebSocket: `CONNECT` with `:protocol websocket`.
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::is_extended_connect;
///
/// let request = http::Request::connect("https://example.com/chat")
///     .version(http::Version::HTTP_2)
///     .body(())
///     .unwrap();
/// assert!(is_extended_connect(&request, Some("websocket")));
/// assert!(!is_extended_connect(&request, None));
/// ```
pub fn is_extended_connect<B>(request: &Request<B>, protocol: Option<&str>) -> bool {
    request.version() == Version::HTTP_2
        && request.method() == Method::CONNECT
        && protocol.is_some_and(|p| p.eq_ignore_ascii_case(PROTOCOL))
}

/// Checks an HTTP/2 request that should open a WebSocket (RFC 8441 §4–5); `protocol` is its
/// `:protocol` pseudo-header.
///
/// A `Sec-WebSocket-Key` is ignored, as RFC 8441 §5 makes it meaningless on HTTP/2.
///
/// # Errors
///
/// [`HandshakeError::NotExtendedConnect`] for any method but `CONNECT`,
/// [`HandshakeError::MissingProtocol`] for a CONNECT without `:protocol` (a plain tunnel
/// request), [`HandshakeError::UnsupportedProtocol`] for a `:protocol` other than `websocket`,
/// [`HandshakeError::UnsupportedVersion`] when `Sec-WebSocket-Version` is not 13.
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::{HandshakeError, validate_extended_connect};
///
/// let request = http::Request::connect("https://example.com/chat")
///     .version(http::Version::HTTP_2)
///     .header("sec-websocket-version", "13")
///     .body(())
///     .unwrap();
/// assert_eq!(validate_extended_connect(&request, Some("websocket")), Ok(()));
/// assert_eq!(
///     validate_extended_connect(&request, Some("connect-udp")),
///     Err(HandshakeError::UnsupportedProtocol("connect-udp".into()))
/// );
/// ```
pub fn validate_extended_connect<B>(
    request: &Request<B>,
    protocol: Option<&str>,
) -> Result<(), HandshakeError> {
    if request.method() != Method::CONNECT {
        return Err(HandshakeError::NotExtendedConnect);
    }
    match protocol {
        None => return Err(HandshakeError::MissingProtocol),
        Some(p) if !p.eq_ignore_ascii_case(PROTOCOL) => {
            return Err(HandshakeError::UnsupportedProtocol(p.to_owned()));
        }
        Some(_) => {}
    }
    if !header_contains_token(request.headers(), header::SEC_WEBSOCKET_VERSION, VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(())
}

/// The 200 answer to a validated extended CONNECT, with the chosen subprotocol if any.
pub fn connect_response(protocol: Option<&str>) -> Response<()> {
    let mut response = Response::new(());
    *response.version_mut() = Version::HTTP_2;
    if let Some(protocol) = protocol {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, header_value(protocol));
    }
    response
}

/// Removes the headers HTTP/2 forbids (RFC 9113 §8.2.2) from a response written for
/// HTTP/1.1, such as [`error_response`](super::error_response)'s: `Connection`, `Upgrade`,
/// `Keep-Alive`, `Transfer-Encoding`, `Proxy-Connection`.
pub fn strip_connection_headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::TRANSFER_ENCODING,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// The request a client sends on a new HTTP/2 stream to open a WebSocket at `uri` (which
/// must have a scheme and an authority: `https://host/path`, or `http://` over cleartext
/// HTTP/2), offering `protocols`; the `:protocol` pseudo-header is the caller's to add.
///
/// `headers` are added as they are, but for what HTTP/2 forbids (RFC 9113 §8.2.2: `Connection`
/// and the headers it names, `Upgrade`, `Keep-Alive`, `Proxy-Connection`,
/// `Transfer-Encoding`, `TE`) and `Sec-WebSocket-Key`, which are dropped. A `Host` header
/// becomes the `:authority`, as it overrides the URL's authority on HTTP/1.1. A
/// `Sec-WebSocket-Protocol` header wins over `protocols`, as on HTTP/1.1.
pub fn connect_request(
    uri: http::Uri,
    headers: &http::HeaderMap,
    protocols: &[String],
) -> Request<()> {
    let uri = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => with_authority(&uri, host).unwrap_or(uri),
        None => uri,
    };
    let mut request = Request::new(());
    *request.method_mut() = Method::CONNECT;
    *request.version_mut() = Version::HTTP_2;
    *request.uri_mut() = uri;
    let named: Vec<String> = super::header_tokens(headers, header::CONNECTION)
        .map(str::to_ascii_lowercase)
        .collect();
    let out = request.headers_mut();
    for (name, value) in headers {
        if !is_connection_specific(name)
            && name != header::HOST
            && !named.iter().any(|n| n == name.as_str())
        {
            out.append(name, value.clone());
        }
    }
    out.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(VERSION),
    );
    if !protocols.is_empty() && !out.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        out.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header_value(&protocols.join(", ")),
        );
    }
    request
}

/// `uri` with its authority replaced by `authority`.
fn with_authority(uri: &http::Uri, authority: &str) -> Option<http::Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

fn is_connection_specific(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "upgrade" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te"
    ) || name == header::SEC_WEBSOCKET_KEY
}

/// The answer to a refused extended CONNECT: [`error_response`](super::error_response) made
/// fit for HTTP/2. The headers HTTP/2 forbids are removed, and a version mismatch is 400 (with
/// `Sec-WebSocket-Version: 13`) rather than 426, which requires an `Upgrade` header that
/// HTTP/2 does not have (RFC 9110 §15.5.22).
pub fn error_response_http2(err: &HandshakeError) -> Response<String> {
    let mut response = super::error_response(err);
    strip_connection_headers(&mut response);
    if response.status() == StatusCode::UPGRADE_REQUIRED {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// Whether the server's answer to an extended CONNECT accepts it: any 2xx (RFC 8441 §5 and
/// RFC 9113 §8.5: a CONNECT succeeds with a 2xx status).
pub fn is_connect_success(status: StatusCode) -> bool {
    status.is_success()
}
