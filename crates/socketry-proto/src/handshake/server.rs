//! The server side of the opening handshake (RFC 6455 §4.2).

use base64::Engine;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::{
    BASE64, HandshakeError, MAX_HEAD_LEN, MAX_HEADERS, VERSION, accept_key, header_contains_token,
    header_value, is_get, version_ok,
};

/// Parses an HTTP/1.1 request head from the start of `buf`.
///
/// Returns the request and the length of its head, or `Ok(None)` if the head is incomplete.
/// Bytes after the head (a frame the client pipelined) are left to the caller.
///
/// # Errors
///
/// [`HandshakeError::MalformedHttp`] or [`HandshakeError::HeadTooLarge`].
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(buf).map_err(map_httparse_error)?;
    let httparse::Status::Complete(len) = status else {
        return if buf.len() > MAX_HEAD_LEN {
            Err(HandshakeError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if len > MAX_HEAD_LEN {
        return Err(HandshakeError::HeadTooLarge);
    }
    let mut request = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(if parsed.version == Some(0) {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for h in parsed.headers.iter() {
        request = request.header(h.name, h.value);
    }
    let request = request
        .body(())
        .map_err(|_| HandshakeError::MalformedHttp("invalid request line or header"))?;
    Ok(Some((request, len)))
}

pub(super) fn map_httparse_error(err: httparse::Error) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders => HandshakeError::HeadTooLarge,
        httparse::Error::HeaderName => HandshakeError::MalformedHttp("invalid header name"),
        httparse::Error::HeaderValue => HandshakeError::MalformedHttp("invalid header value"),
        httparse::Error::Version => HandshakeError::MalformedHttp("invalid http version"),
        httparse::Error::Status => HandshakeError::MalformedHttp("invalid status"),
        _ => HandshakeError::MalformedHttp("invalid request line"),
    }
}

/// Checks a client's opening handshake (RFC 6455 §4.2.1) and returns its `Sec-WebSocket-Key`.
///
/// # Errors
///
/// The first rule the request breaks, as a [`HandshakeError`] whose
/// [`status`](HandshakeError::status) is the answer to send.
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::validate_request;
///
/// let req = http::Request::get("/")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .body(())
///     .unwrap();
/// assert_eq!(validate_request(&req).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
/// ```
pub fn validate_request<B>(request: &Request<B>) -> Result<&str, HandshakeError> {
    let headers = request.headers();
    if !is_get(request.method()) {
        return Err(HandshakeError::MethodNotGet);
    }
    if !version_ok(request.version()) {
        return Err(HandshakeError::OldHttpVersion);
    }
    if !header_contains_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError::NoUpgradeWebSocket);
    }
    if !header_contains_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    // HTTP/2 extended CONNECT has no Host; here we only serve HTTP/1.1, which requires it.
    if !headers.contains_key(header::HOST) {
        return Err(HandshakeError::MissingHost);
    }
    if !header_contains_token(headers, header::SEC_WEBSOCKET_VERSION, VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // RFC 6455 §11.3.1: the key header must not appear more than once.
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().filter(|_| keys.next().is_none());
    let key = key
        .and_then(|k| k.to_str().ok())
        .map(str::trim)
        .ok_or(HandshakeError::InvalidKey)?;
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => Ok(key),
        _ => Err(HandshakeError::InvalidKey),
    }
}

/// Picks the subprotocol: the first one in the client's order that the server supports.
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::select_subprotocol;
///
/// let offered = ["v2.chat", "v1.chat"];
/// assert_eq!(select_subprotocol(offered, &["v1.chat", "v2.chat"]), Some("v2.chat"));
/// assert_eq!(select_subprotocol(offered, &["mqtt"]), None);
/// ```
pub fn select_subprotocol<'a, S: AsRef<str>>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[S],
) -> Option<&'a str> {
    offered
        .into_iter()
        .find(|o| supported.iter().any(|s| s.as_ref() == *o))
}

/// Picks the subprotocol in the server's order: the first one in `supported` that the client
/// offered (python-websockets' default; [`select_subprotocol`] is gorilla's).
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::select_subprotocol_by_server;
///
/// let offered = ["v2.chat", "v1.chat"];
/// assert_eq!(select_subprotocol_by_server(offered, &["v1.chat", "v2.chat"]), Some("v1.chat"));
/// ```
pub fn select_subprotocol_by_server<'a, S: AsRef<str>>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[S],
) -> Option<&'a str> {
    let offered: Vec<&'a str> = offered.into_iter().collect();
    supported
        .iter()
        .find_map(|s| offered.iter().find(|o| **o == s.as_ref()).copied())
}

/// The 101 response for a validated key, with the chosen subprotocol if any.
pub fn response(key: &str, protocol: Option<&str>) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        header_value(&accept_key(key.as_bytes())),
    );
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, header_value(protocol));
    }
    response
}

/// The answer to a refused handshake: its status, a plain-text body, and for a version
/// mismatch `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
pub fn error_response(err: &HandshakeError) -> Response<String> {
    let body = format!("{err}\n");
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(body);
    *response.status_mut() = err.status();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, length);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    match err {
        HandshakeError::UnsupportedVersion => {
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(VERSION),
            );
        }
        HandshakeError::NoUpgradeWebSocket => {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(VERSION),
            );
        }
        HandshakeError::MethodNotGet => {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        HandshakeError::NotExtendedConnect => {
            headers.insert(header::ALLOW, HeaderValue::from_static("CONNECT"));
        }
        _ => {}
    }
    response
}

/// Serializes a response head as HTTP/1.1; the body, if any, is the caller's to write after it.
pub fn write_response<B>(response: &Response<B>, dst: &mut Vec<u8>) {
    let status = response.status();
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}
