//! [`WebSocketConfig`]: the settings of a connection.

use std::time::Duration;

use socketry_proto::extensions::deflate::DeflateConfig;

/// Settings of a connection: the protocol limits plus the timeouts, keepalive and buffer sizes
/// the I/O layer needs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use socketry::WebSocketConfig;
///
/// let config = WebSocketConfig::default()
///     .max_message_size(Some(1 << 20))
///     .close_timeout(Duration::from_secs(3))
///     .keepalive(Some((Duration::from_secs(30), Duration::from_secs(10))));
/// assert_eq!(config.protocol().get_max_message_size(), Some(1 << 20));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// The limits, the close timeout and the keepalive: the deadlines live in the protocol
    /// core.
    protocol: socketry_proto::Config,
    read_buffer_size: usize,
    write_buffer_size: usize,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    compression: Option<DeflateConfig>,
}

/// The largest initial read size [`WebSocketConfig::read_buffer_size`] takes: 16 MiB.
pub const MAX_READ_BUFFER_SIZE: usize = 16 << 20;

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            protocol: socketry_proto::Config::default(),
            read_buffer_size: 4 * 1024,
            write_buffer_size: 128 * 1024,
            read_timeout: None,
            write_timeout: None,
            compression: None,
        }
    }
}

/// The keepalive of [`WebSocketConfig::production`]: a ping every 20 s, and the connection
/// fails when its pong has not come 20 s later (python-websockets' defaults).
pub const PRODUCTION_KEEPALIVE: (Duration, Duration) =
    (Duration::from_secs(20), Duration::from_secs(20));

impl WebSocketConfig {
    /// The defaults for a server facing the internet: [`default`](Self::default) plus
    /// keepalive ([`PRODUCTION_KEEPALIVE`]), so that a peer that vanished without a FIN (a
    /// phone that lost its network, a crashed host) is closed within 40 s instead of holding
    /// its connection forever. socketry-axum uses these by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry::{PRODUCTION_KEEPALIVE, WebSocketConfig};
    ///
    /// let config = WebSocketConfig::production();
    /// assert_eq!(config.get_keepalive(), Some(PRODUCTION_KEEPALIVE));
    /// ```
    pub fn production() -> Self {
        Self::default().keepalive(Some(PRODUCTION_KEEPALIVE))
    }

    /// The largest message accepted, in bytes, or `None` for no limit; a larger one fails the
    /// connection with close code 1009. The default value is 64 MiB.
    #[must_use]
    pub fn max_message_size(mut self, max: Option<usize>) -> Self {
        self.protocol = self.protocol.max_message_size(max);
        self
    }

    /// The largest frame payload accepted, in bytes, or `None` for no limit; a larger one fails
    /// the connection with close code 1009. The default value is 16 MiB.
    #[must_use]
    pub fn max_frame_size(mut self, max: Option<usize>) -> Self {
        self.protocol = self.protocol.max_frame_size(max);
        self
    }

    /// How long the closing handshake waits for the peer's close frame (and a client for the
    /// server to end TCP) before the transport is closed anyway, wherever the close started:
    /// [`close`](crate::WebSocket::close), the writer half, a
    /// [`ControlHandle`](crate::ControlHandle), the peer, or a failure. The default value is
    /// 10 seconds.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.protocol = self.protocol.close_timeout(timeout);
        self
    }

    /// How many bytes one read asks the transport for at first; reads grow while they come
    /// back full and shrink back when the connection goes quiet. Values are clamped to 64 B
    /// ..= [`MAX_READ_BUFFER_SIZE`]. The default value is 4 KiB.
    #[must_use]
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.read_buffer_size = size.clamp(64, MAX_READ_BUFFER_SIZE);
        self
    }

    /// The bound on bytes queued for the peer. [`feed`](crate::WebSocket::feed) waits for room
    /// once this much is queued (and [`recv_with`](crate::WebSocket::recv_with) after replies
    /// that filled it, before it receives again: the queue holds at most this plus one
    /// message's replies), and above it pongs coalesce (the reply to the latest ping replaces
    /// the one waiting), so a peer that does not read cannot make the queue grow, not even
    /// with a ping flood, while receiving goes on. The default value is 128 KiB.
    #[must_use]
    pub fn write_buffer_size(mut self, size: usize) -> Self {
        self.write_buffer_size = size.max(1);
        self
    }

    /// How long [`recv`](crate::WebSocket::recv) waits for a message before it returns
    /// [`Error::Timeout`](crate::Error::Timeout); the connection stays usable. The default
    /// value is `None`: no timeout.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long a send or flush (or a [`recv_with`](crate::WebSocket::recv_with) waiting for
    /// room) waits for the transport to take the bytes before it returns
    /// [`Error::Timeout`](crate::Error::Timeout); unwritten bytes stay queued. The default
    /// value is `None`: no timeout.
    #[must_use]
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Keepalive as `(interval, timeout)`: a ping is sent every `interval`, and when no pong
    /// arrives within `timeout` of it the connection is closed with 1011 "keepalive timeout"
    /// and the read side returns [`Error::Timeout`](crate::Error::Timeout). Runs while the
    /// connection is being read, and while [`recv_with`](crate::WebSocket::recv_with) waits
    /// for room. The default value is `None`: no keepalive.
    #[must_use]
    pub fn keepalive(mut self, keepalive: Option<(Duration, Duration)>) -> Self {
        self.protocol = self.protocol.keepalive(keepalive);
        self
    }

    /// permessage-deflate (RFC 7692): `Some(config)` offers it (client) or accepts offers
    /// (server) with these preferences, window sizes, level and threshold. Inflated sizes
    /// count against the message limit. The default value is `None`: no compression.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry::{WebSocketConfig, proto::extensions::deflate::DeflateConfig};
    ///
    /// let config = WebSocketConfig::default().compression(Some(DeflateConfig::default().level(6)));
    /// assert!(config.get_compression().is_some());
    /// ```
    #[must_use]
    pub fn compression(mut self, compression: Option<DeflateConfig>) -> Self {
        self.compression = compression;
        self
    }

    /// The compression preferences, if compression is on.
    pub fn get_compression(&self) -> Option<&DeflateConfig> {
        self.compression.as_ref()
    }

    /// The protocol limits.
    pub fn protocol(&self) -> &socketry_proto::Config {
        &self.protocol
    }

    /// The closing handshake timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.protocol.get_close_timeout()
    }

    /// The initial read size.
    pub fn get_read_buffer_size(&self) -> usize {
        self.read_buffer_size
    }

    /// The bound on queued bytes.
    pub fn get_write_buffer_size(&self) -> usize {
        self.write_buffer_size
    }

    /// The read timeout.
    pub fn get_read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The write timeout.
    pub fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The keepalive interval and timeout.
    pub fn get_keepalive(&self) -> Option<(Duration, Duration)> {
        self.protocol.get_keepalive()
    }
}
