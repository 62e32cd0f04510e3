//! [`Request`]: the snapshot of the upgraded HTTP request a controller receives.

use std::{collections::HashMap, net::SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
use http::{HeaderMap, Method, Uri, request::Parts};

/// The upgraded request: method, URI, headers, path parameters, query values, cookies, the
/// remote address and the request's extensions (typed locals that middleware put there).
#[derive(Debug)]
pub struct Request {
    parts: Parts,
    params: Vec<(String, String)>,
    query: HashMap<String, String>,
    cookies: HashMap<String, String>,
}

impl Request {
    pub(crate) async fn from_parts(mut parts: Parts) -> Self {
        detach(&mut parts);
        let params = RawPathParams::from_request_parts(&mut parts, &())
            .await
            .map(|raw| {
                raw.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let query = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (percent_decode(k), percent_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cookies = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self {
            parts,
            params,
            query,
            cookies,
        }
    }

    /// The request method: GET for an HTTP/1.1 upgrade, CONNECT for an HTTP/2 extended
    /// CONNECT (RFC 8441).
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    /// The HTTP version the socket arrived over: 1.1, or 2 for a stream of an HTTP/2
    /// connection shared with the page and other sockets.
    pub fn version(&self) -> http::Version {
        self.parts.version
    }

    /// The request URI.
    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// A path parameter of the route (`/rooms/{room}` → `param("room")`).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A path parameter, or `default` (Fiber's `Params(key, default)`).
    pub fn param_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.param(key).unwrap_or(default)
    }

    /// A query value, percent-decoded.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// A query value, or `default` (Fiber's `Query(key, default)`).
    pub fn query_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.query(key).unwrap_or(default)
    }

    /// The history position a reconnecting client sent back: the `since` query parameter
    /// (`?since=<offset>:<epoch>`, the last position it saw), for
    /// [`Member::join_since`](socketry_hub::Member::join_since). `None` without one, or for
    /// one that is no position.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn serve(conn: &mut socketry_axum::Conn, request: &socketry_axum::Request, hub: &socketry_axum::hub::Hub) -> Result<(), socketry_axum::hub::HubError> {
    /// let member = conn.attach(hub, socketry_axum::hub::ClientInfo::new("ann"))?;
    /// // Joins, sending first what the client missed since its last position.
    /// let recovery = member.join_since("chat:lobby", request.since()).await?;
    /// # let _ = recovery;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "hub")]
    pub fn since(&self) -> Option<socketry_hub::Position> {
        self.query("since")?.parse().ok()
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// A cookie's value, or `default` (Fiber's `Cookies(key, default)`).
    pub fn cookie_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.cookie(name).unwrap_or(default)
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The peer's address, when the server was started with
    /// `into_make_service_with_connect_info::<SocketAddr>()` or by
    /// [`socketry_axum::serve`](crate::serve) (feature `http2`).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    }

    /// A typed local that middleware stored in the request's extensions (Fiber's `Locals`).
    pub fn local<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts.extensions.get::<T>()
    }

    /// The request parts, for anything else.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Gives `parts` their own copies of the header values and the URI. hyper's HTTP/1.1 parser
/// hands them out as slices of the connection's read buffer (8 KiB and more), and the snapshot
/// lives as long as the WebSocket: kept as they came, every connection would hold that whole
/// buffer for a few hundred bytes of headers. (Middleware that keeps cloned header values in
/// the extensions keeps the buffer too; nothing here can copy those.)
fn detach(parts: &mut Parts) {
    for value in parts.headers.values_mut() {
        let sensitive = value.is_sensitive();
        if let Ok(mut copy) = http::HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(sensitive);
            *value = copy;
        }
    }
    let copy = |uri: &Uri| Uri::try_from(uri.to_string()).ok();
    if let Some(uri) = copy(&parts.uri) {
        parts.uri = uri;
    }
    // axum's router keeps a clone of the URI as it came, sharing the same buffer.
    if let Some(original) = parts.extensions.get_mut::<axum::extract::OriginalUri>()
        && let Some(uri) = copy(&original.0)
    {
        original.0 = uri;
    }
    // On HTTP/2, `:protocol` is a slice of the frame h2 decoded it from.
    #[cfg(feature = "http2")]
    if let Some(protocol) = parts.extensions.get_mut::<hyper::ext::Protocol>() {
        let copied = std::str::from_utf8(protocol.as_ref())
            .ok()
            .map(hyper::ext::Protocol::from);
        if let Some(copied) = copied {
            *protocol = copied;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_holds_no_slice_of_the_connections_read_buffer() {
        // As hyper's parser does: the URI and every value are slices of one read buffer.
        let mut raw = b"/ws?room=a".to_vec();
        raw.resize(8192, b'x');
        let buffer = bytes::Bytes::from(raw);
        let within = |p: *const u8| buffer.as_ptr_range().contains(&p);
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let mut token = http::HeaderValue::from_maybe_shared(buffer.slice(10..26)).unwrap();
        token.set_sensitive(true);
        parts.headers.insert(http::header::AUTHORIZATION, token);
        parts.uri = Uri::from_maybe_shared(buffer.slice(0..10)).unwrap();
        parts
            .extensions
            .insert(axum::extract::OriginalUri(parts.uri.clone()));
        assert!(within(
            parts.headers[http::header::AUTHORIZATION]
                .as_bytes()
                .as_ptr()
        ));
        detach(&mut parts);
        let value = &parts.headers[http::header::AUTHORIZATION];
        assert!(!within(value.as_bytes().as_ptr()));
        assert_eq!(value.as_bytes(), &[b'x'; 16]);
        assert!(value.is_sensitive());
        assert_eq!(parts.uri, "/ws?room=a");
        assert!(!within(parts.uri.path().as_ptr()));
        let original = &parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .unwrap()
            .0;
        assert_eq!(original, "/ws?room=a");
        assert!(!within(original.path().as_ptr()));
    }
}
