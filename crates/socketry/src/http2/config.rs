//! [`Http2Config`]: the HTTP/2 settings of a connection that carries WebSockets.

use std::time::Duration;

/// HTTP/2 settings for connections that multiplex WebSockets, on both sides.
///
/// The defaults are sized for many sockets on one connection, which HTTP/2's own defaults
/// (64 KiB windows) and hyper's (1 MiB for the connection and each stream alike) are not:
///
/// - **Each stream's window, 128 KiB.** It bounds what one socket can have in flight towards
///   us and unread, as the socket's write queue bounds the other direction (128 KiB as well).
///   A socket whose application stops reading holds at most this much.
/// - **The connection's window, 16 MiB: the stream window times the stream limit** (unless
///   set, it follows them). With a smaller connection window, a few sockets whose applications do not read would use it up
///   and stall every other socket on the connection (head-of-line blocking across streams).
///   At this size, every stream could be full and the others would still flow. It is also the
///   worst case of what one connection holds unread, against 128 sockets × the kernel's TCP
///   buffers on HTTP/1.1.
/// - **128 concurrent streams** per connection (RFC 9113 recommends at least 100): a page's
///   sockets, with room to spare. A client that needs more opens a second connection.
/// - **A 128 KiB send buffer per stream**: what a stream may queue in HTTP/2, waiting for the
///   peer's window, before its writer waits.
/// - **16 KiB of request headers**, the limit HTTP/1.1 handshakes have.
///
/// So one connection holds at most 16 MiB received and not yet read by its sockets, plus
/// 128 × 128 KiB = 16 MiB queued to send in HTTP/2, on top of what each socket holds itself
/// (its read buffer and its 128 KiB write queue, as on HTTP/1.1). h2 itself bounds the rest:
/// header blocks, reset streams (a peer that opens and resets streams in a loop, the "rapid
/// reset" attack, is sent GOAWAY), pending pings and settings.
/// - **64 KiB DATA frames** accepted (HTTP/2's default is 16 KiB): a 16 KiB message and its
///   WebSocket header fit one frame, which saves a frame and often a write per message
///   between peers that honour it (ours do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Config {
    pub(crate) stream_window: u32,
    /// `None`: the stream window times the stream limit.
    pub(crate) connection_window: Option<u32>,
    pub(crate) max_streams: u32,
    pub(crate) max_send_buffer: usize,
    pub(crate) max_header_list_size: u32,
    pub(crate) max_frame_size: u32,
    pub(crate) idle_timeout: Option<Duration>,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self::new()
    }
}

/// The default window of each stream.
const STREAM_WINDOW: u32 = 128 * 1024;
/// The smallest stream window and send buffer: one frame.
const MIN_WINDOW: u32 = 16 * 1024;
/// The default limit of concurrent streams.
const MAX_STREAMS: u32 = 128;

impl Http2Config {
    /// The defaults above.
    pub const fn new() -> Self {
        Self {
            stream_window: STREAM_WINDOW,
            connection_window: None,
            max_streams: MAX_STREAMS,
            max_send_buffer: 128 * 1024,
            max_header_list_size: 16 * 1024,
            max_frame_size: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }

    /// The flow-control window of each stream, in bytes (between 16 KiB and 2³¹ − 1). The
    /// default value is 128 KiB.
    #[must_use]
    pub const fn stream_window(mut self, bytes: u32) -> Self {
        self.stream_window = clamp_window(if bytes < MIN_WINDOW {
            MIN_WINDOW
        } else {
            bytes
        });
        self
    }

    /// The flow-control window of the whole connection, in bytes (at most 2³¹ − 1, and never
    /// below a stream's). The default value is the stream window times the stream limit
    /// (16 MiB with their defaults).
    #[must_use]
    pub const fn connection_window(mut self, bytes: u32) -> Self {
        self.connection_window = Some(clamp_window(bytes));
        self
    }

    /// How many streams (sockets) one connection may have open at once, at least one. The
    /// default value is 128.
    #[must_use]
    pub const fn max_streams(mut self, streams: u32) -> Self {
        self.max_streams = if streams == 0 { 1 } else { streams };
        self
    }

    /// How many bytes one stream may queue in HTTP/2 for the peer's window to take, before
    /// its writer waits (between 16 KiB and 4 GiB − 1). The default value is 128 KiB.
    #[must_use]
    pub const fn max_send_buffer(mut self, bytes: usize) -> Self {
        self.max_send_buffer = if bytes < MIN_WINDOW as usize {
            MIN_WINDOW as usize
        } else if bytes > u32::MAX as usize {
            // h2 refuses more than a u32 (it panics).
            u32::MAX as usize
        } else {
            bytes
        };
        self
    }

    /// The largest header block accepted (request headers on the server, response headers on
    /// the client), at least 4 KiB. The default value is 16 KiB.
    #[must_use]
    pub const fn max_header_list_size(mut self, bytes: u32) -> Self {
        // Below this, browsers' own requests would be refused.
        self.max_header_list_size = if bytes < 4096 { 4096 } else { bytes };
        self
    }

    /// The largest DATA frame the peer may send, between 16 KiB and 16 MiB − 1 (RFC 9113
    /// §6.5.2). The default value is 64 KiB.
    #[must_use]
    pub const fn max_frame_size(mut self, bytes: u32) -> Self {
        self.max_frame_size = if bytes < 16_384 {
            16_384
        } else if bytes > 16_777_215 {
            16_777_215
        } else {
            bytes
        };
        self
    }

    /// How long a server keeps a connection with no open stream before it ends it with
    /// GOAWAY (it checks once per period, so the end comes between one and two periods after
    /// the last stream), at least 100 ms; `None` keeps it. The default value is 60 seconds.
    #[must_use]
    pub const fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        const MIN: Duration = Duration::from_millis(100);
        self.idle_timeout = match timeout {
            Some(t) if t.as_nanos() < MIN.as_nanos() => Some(MIN),
            other => other,
        };
        self
    }

    /// The connection window, at least a stream's.
    pub(crate) fn effective_connection_window(&self) -> u32 {
        let window = match self.connection_window {
            Some(window) => window,
            None => clamp_window(self.stream_window.saturating_mul(self.max_streams)),
        };
        window.max(self.stream_window)
    }

    /// The stream window.
    pub fn get_stream_window(&self) -> u32 {
        self.stream_window
    }

    /// The connection window.
    pub fn get_connection_window(&self) -> u32 {
        self.effective_connection_window()
    }

    /// The stream limit.
    pub fn get_max_streams(&self) -> u32 {
        self.max_streams
    }

    /// The per-stream send buffer.
    pub fn get_max_send_buffer(&self) -> usize {
        self.max_send_buffer
    }

    /// The header limit.
    pub fn get_max_header_list_size(&self) -> u32 {
        self.max_header_list_size
    }

    /// The frame size limit.
    pub fn get_max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// The idle timeout of server connections.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// HTTP/2 windows are 31-bit (RFC 9113 §6.9.1).
const fn clamp_window(bytes: u32) -> u32 {
    if bytes > i32::MAX as u32 {
        i32::MAX as u32
    } else {
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::Http2Config;

    #[test]
    fn the_connection_window_follows_the_stream_window_and_limit_unless_set() {
        assert_eq!(Http2Config::new().get_connection_window(), 16 << 20);
        let config = Http2Config::new().stream_window(64 << 10).max_streams(10);
        assert_eq!(config.get_connection_window(), 640 << 10);
        // Saturates at HTTP/2's largest window.
        let config = Http2Config::new().stream_window(1 << 30).max_streams(1000);
        assert_eq!(config.get_connection_window(), i32::MAX as u32);
        // Set, it stays, but never below one stream's window.
        let config = Http2Config::new().connection_window(1 << 20);
        assert_eq!(config.get_connection_window(), 1 << 20);
        let config = Http2Config::new().connection_window(1);
        assert_eq!(config.get_connection_window(), 128 << 10);
    }

    #[test]
    fn values_that_would_stall_or_panic_are_clamped() {
        let config = Http2Config::new()
            .stream_window(0)
            .max_streams(0)
            .max_send_buffer(0);
        assert_eq!(config.get_stream_window(), 16 << 10);
        assert_eq!(config.get_max_streams(), 1);
        assert_eq!(config.get_max_send_buffer(), 16 << 10);
        let config = Http2Config::new().max_send_buffer(usize::MAX);
        assert_eq!(config.get_max_send_buffer(), u32::MAX as usize);
        let config = Http2Config::new()
            .max_header_list_size(0)
            .idle_timeout(Some(std::time::Duration::ZERO));
        assert_eq!(config.get_max_header_list_size(), 4096);
        assert_eq!(
            config.get_idle_timeout(),
            Some(std::time::Duration::from_millis(100))
        );
    }
}
