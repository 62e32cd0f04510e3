//! [`MaybeTlsStream`]: the transport of a client connection, plain TCP or TLS.

use tokio::net::TcpStream;

/// A TCP stream, or a TLS stream over TCP for `wss://`.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    Rustls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

forward_io!(MaybeTlsStream => [
    MaybeTlsStream::Plain,
    #[cfg(feature = "rustls")]
    MaybeTlsStream::Rustls,
]);
