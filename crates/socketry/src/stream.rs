//! [`MaybeTlsStream`] and [`ServerStream`]: the transports of client and server connections.

use tokio::net::TcpStream;

/// A client's transport: a TCP stream, a TLS stream over TCP for `wss://`, or (feature
/// `http2`) one stream of a shared HTTP/2 connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    Rustls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// One stream of an HTTP/2 connection (`wss://` with ALPN `h2`, or `ws://` with prior
    /// knowledge), shared with the other sockets to the same origin.
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    H2(crate::H2Stream),
}

impl MaybeTlsStream {
    /// Whether the connection is one stream of an HTTP/2 connection.
    pub fn is_http2(&self) -> bool {
        #[cfg(feature = "http2")]
        if matches!(self, Self::H2(_)) {
            return true;
        }
        false
    }
}

forward_io!(MaybeTlsStream => [
    MaybeTlsStream::Plain,
    #[cfg(feature = "rustls")]
    MaybeTlsStream::Rustls,
    #[cfg(feature = "http2")]
    MaybeTlsStream::H2,
]);

/// The transport of a connection a [`Listener`](crate::Listener) accepted.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerStream {
    /// HTTP/1.1 over TCP.
    Tcp(TcpStream),
    /// HTTP/1.1 over TLS.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// One stream of an HTTP/2 connection (over TLS or cleartext), shared with other sockets.
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    H2(crate::H2Stream),
}

impl ServerStream {
    /// Whether the connection is one stream of an HTTP/2 connection.
    pub fn is_http2(&self) -> bool {
        #[cfg(feature = "http2")]
        if matches!(self, Self::H2(_)) {
            return true;
        }
        false
    }
}

forward_io!(ServerStream => [
    ServerStream::Tcp,
    #[cfg(feature = "rustls")]
    ServerStream::Tls,
    #[cfg(feature = "http2")]
    ServerStream::H2,
]);
