//! WebSockets over HTTP/2 (RFC 8441; feature `http2`): the transport of one stream, the
//! settings, and the two roles.

pub(crate) mod client;
mod config;
mod server;
mod stream;

pub(crate) use client::{OpenFailed, Pool, handshake as client_handshake, open, refused};
pub use config::Http2Config;
pub(crate) use server::{Admission, serve, sniff_preface};
pub use stream::H2Stream;

/// The `:protocol` pseudo-header of an extended CONNECT served by `h2` directly.
pub(crate) fn h2_protocol<B>(request: &http::Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<h2::ext::Protocol>()
        .map(h2::ext::Protocol::as_str)
}
