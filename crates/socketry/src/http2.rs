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

/// Whether a cleartext connection starts with HTTP/2's preface (prior knowledge, RFC 9113
/// §3.3) rather than an HTTP/1.1 request; it peeks and consumes nothing, so either protocol's
/// server reads the connection from its first byte. A `GET` tells at once, the preface's 24
/// bytes usually come in one segment; bound the wait with a timeout.
///
/// # Errors
///
/// The connection's, and [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof) when it
/// ends before it tells.
pub async fn peek_http2_preface(stream: &tokio::net::TcpStream) -> std::io::Result<bool> {
    let mut peeked = [0u8; 24];
    let mut seen = 0;
    let mut wait = std::time::Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut peeked).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(is_h2) = sniff_preface(&peeked[..n]) {
            return Ok(is_h2);
        }
        // peek returns at once while the bytes it saw are still there: wait for more, backing
        // off so that a client that stalls mid-preface costs a few syscalls, not a thousand a
        // second.
        if n == seen {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_millis(100));
        }
        seen = n;
    }
}
