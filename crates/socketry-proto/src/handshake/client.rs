//! The client side of the opening handshake (RFC 6455 §4.1).

use http::{Request, Response, StatusCode, header};

use super::{
    HandshakeError, MAX_HEAD_LEN, MAX_HEADERS, accept_key, header_contains_token,
    server::map_httparse_error,
};
use crate::extensions::deflate::{DeflateConfig, DeflateParams, negotiate_client};

/// Serializes a client's opening request head.
///
/// The caller's request supplies the method (GET), URI (path and query are sent), and headers;
/// this writes `Host` from the URI when the request has none, and the WebSocket headers from
/// `key` and `protocols` unless the request already has them.
pub fn write_request<B>(request: &Request<B>, key: &str, protocols: &[String], dst: &mut Vec<u8>) {
    let uri = request.uri();
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    dst.extend_from_slice(b"GET ");
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    let mut put = |name: &str, value: &[u8]| {
        dst.extend_from_slice(name.as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value);
        dst.extend_from_slice(b"\r\n");
    };
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
    {
        // Never the userinfo: `ws://user:pass@host` sends its credentials as
        // `Authorization: Basic` (the I/O layer's job), not in `Host`.
        let host = authority.as_str();
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        put("host", host.as_bytes());
    }
    put("upgrade", b"websocket");
    put("connection", b"Upgrade");
    put("sec-websocket-key", key.as_bytes());
    put("sec-websocket-version", b"13");
    if !protocols.is_empty() && !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        put("sec-websocket-protocol", protocols.join(", ").as_bytes());
    }
    for (name, value) in headers {
        if matches!(
            *name,
            header::UPGRADE
                | header::CONNECTION
                | header::SEC_WEBSOCKET_KEY
                | header::SEC_WEBSOCKET_VERSION
        ) {
            continue;
        }
        put(name.as_str(), value.as_bytes());
    }
    dst.extend_from_slice(b"\r\n");
}

/// Parses an HTTP/1.1 response head from the start of `buf`; `Ok(None)` if incomplete.
///
/// # Errors
///
/// [`HandshakeError::MalformedHttp`] or [`HandshakeError::HeadTooLarge`].
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(buf).map_err(map_httparse_error)? else {
        return if buf.len() > MAX_HEAD_LEN {
            Err(HandshakeError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HandshakeError::MalformedHttp("invalid status"))?;
    let mut response = Response::builder().status(status);
    for h in parsed.headers.iter() {
        response = response.header(h.name, h.value);
    }
    let response = response
        .body(())
        .map_err(|_| HandshakeError::MalformedHttp("invalid header"))?;
    Ok(Some((response, len)))
}

/// What a server agreed to in its answer to our opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate agreement, if compression was offered and accepted.
    pub deflate: Option<DeflateParams>,
}

/// Checks a server's answer to our opening handshake (RFC 6455 §4.1, RFC 7692 §7.1) against
/// the subprotocols and the permessage-deflate offer we sent.
///
/// # Errors
///
/// [`HandshakeError::UnexpectedStatus`] (carrying the status) for anything but 101, and the
/// other variants for a 101 that breaks the rules; an extension we did not offer is
/// [`HandshakeError::UnexpectedExtension`] (close code 1010).
pub fn validate_response<B>(
    response: &Response<B>,
    key: &str,
    protocols: &[String],
    deflate: Option<&DeflateConfig>,
) -> Result<Accepted, HandshakeError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::UnexpectedStatus(response.status()));
    }
    let headers = response.headers();
    if !header_contains_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError::NoUpgradeWebSocket);
    }
    if !header_contains_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    let expected = accept_key(key.as_bytes());
    if headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .is_none_or(|v| v.as_bytes() != expected.as_bytes())
    {
        return Err(HandshakeError::InvalidAccept);
    }
    accepted(headers, protocols, deflate)
}

/// Checks a server's answer to our extended CONNECT over HTTP/2 (RFC 8441 §5): a 2xx status,
/// then the subprotocol and extensions as [`validate_response`] does (there is no accept key
/// on HTTP/2).
///
/// # Errors
///
/// [`HandshakeError::UnexpectedStatus`] for a status other than 2xx, and as
/// [`validate_response`] for the subprotocol and the extensions.
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::validate_connect_response;
///
/// let ok = http::Response::builder().status(200).header("sec-websocket-protocol", "chat").body(()).unwrap();
/// let accepted = validate_connect_response(&ok, &["chat".to_owned()], None).unwrap();
/// assert_eq!(accepted.protocol.as_deref(), Some("chat"));
/// let refused = http::Response::builder().status(403).body(()).unwrap();
/// assert!(validate_connect_response(&refused, &[], None).is_err());
/// ```
pub fn validate_connect_response<B>(
    response: &Response<B>,
    protocols: &[String],
    deflate: Option<&DeflateConfig>,
) -> Result<Accepted, HandshakeError> {
    if !super::is_connect_success(response.status()) {
        return Err(HandshakeError::UnexpectedStatus(response.status()));
    }
    accepted(response.headers(), protocols, deflate)
}

/// The subprotocol and extensions of an accepting answer, checked against what we offered.
fn accepted(
    headers: &http::HeaderMap,
    protocols: &[String],
    deflate: Option<&DeflateConfig>,
) -> Result<Accepted, HandshakeError> {
    // RFC 6455 §4.1: an extension the client did not request fails the connection.
    let extensions = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let deflate = negotiate_client(extensions, deflate)?;
    let protocol = match headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().unwrap_or("").trim())
    {
        None => None,
        Some(chosen) if protocols.iter().any(|p| p == chosen) => Some(chosen.to_owned()),
        Some(chosen) => return Err(HandshakeError::UnexpectedSubprotocol(chosen.to_owned())),
    };
    Ok(Accepted { protocol, deflate })
}
