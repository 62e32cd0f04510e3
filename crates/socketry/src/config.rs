//! [`WebSocketConfig`]: the settings of a connection.

use std::time::Duration;

/// Settings of a connection: the protocol limits plus the timeouts and buffer sizes the I/O
/// layer needs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use socketry::WebSocketConfig;
///
/// let config = WebSocketConfig::default()
///     .max_message_size(Some(1 << 20))
///     .close_timeout(Duration::from_secs(3));
/// assert_eq!(config.protocol().get_max_message_size(), Some(1 << 20));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WebSocketConfig {
    protocol: socketry_proto::Config,
    close_timeout: Duration,
    read_buffer_size: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            protocol: socketry_proto::Config::default(),
            close_timeout: Duration::from_secs(10),
            read_buffer_size: 8 * 1024,
        }
    }
}

impl WebSocketConfig {
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

    /// How long the closing handshake waits for the peer's close frame before the transport
    /// is closed anyway. The default value is 10 seconds.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How many bytes one read asks the transport for, at least. The default value is 8 KiB.
    #[must_use]
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.read_buffer_size = size.max(64);
        self
    }

    /// The protocol limits.
    pub fn protocol(&self) -> &socketry_proto::Config {
        &self.protocol
    }

    /// The closing handshake timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// The read size.
    pub fn get_read_buffer_size(&self) -> usize {
        self.read_buffer_size
    }
}
