//! [`H2Stream`]: one HTTP/2 stream as a byte transport for a WebSocket (RFC 8441 §5).

use std::{
    any::Any,
    fmt, io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one write hands to HTTP/2 at a time (h2 cuts them into frames of the peer's
/// largest size): a 16 KiB message with its header goes out in one write, and a large message
/// does not claim a whole connection window for one stream at once.
const MAX_WRITE: usize = 64 * 1024;

/// One HTTP/2 stream carrying a WebSocket: DATA frames in both directions, `END_STREAM` as
/// the orderly end of the transport and `RST_STREAM` (`CANCEL`) as the abrupt one (RFC 8441
/// §5).
///
/// Reading gives back the stream's flow-control window as the bytes are consumed, so a
/// socket whose application stops reading holds at most its stream window
/// ([`Http2Config::stream_window`](crate::Http2Config::stream_window)). Writing sends only
/// what the peer's windows allow, so nothing queues past them. Dropping the stream before both
/// sides ended it resets it: `CANCEL`, or on a server that already ended its half,
/// `NO_ERROR` (RFC 9113 §8.1).
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received, not read yet.
    pending: Bytes,
    /// `END_STREAM` sent.
    ended: bool,
    /// What must live as long as the stream: on the client, the connection's handle, so the
    /// connection closes when its last socket does.
    _keep: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Stream")
            .field("stream_id", &self.send.stream_id())
            .field("pending", &self.pending.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl H2Stream {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        keep: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        Self {
            send,
            recv,
            pending: Bytes::new(),
            ended: false,
            _keep: keep,
        }
    }

    /// The HTTP/2 stream's identifier on its connection.
    pub fn stream_id(&self) -> u32 {
        self.send.stream_id().as_u32()
    }

    /// Ends the stream abruptly with `RST_STREAM` (`CANCEL`), as dropping it does: the peer
    /// sees its transport reset (RFC 8441 §5).
    pub fn reset(&mut self) {
        self.send.send_reset(Reason::CANCEL);
    }

    /// Waits for capacity to send, returning how much is assigned.
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.send.reserve_capacity(want);
        loop {
            let capacity = self.send.capacity();
            if capacity > 0 {
                return Poll::Ready(Ok(capacity));
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(err)) => return Poll::Ready(Err(to_io_error(err))),
                // The stream can no longer send: the peer reset it, or it ended.
                None => return Poll::Ready(Err(self.closed_error(cx))),
            }
        }
    }

    /// Why the stream cannot send any more.
    fn closed_error(&mut self, cx: &mut Context<'_>) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => reset_error(reason),
            Poll::Ready(Err(err)) => to_io_error(err),
            Poll::Pending => io::ErrorKind::BrokenPipe.into(),
        }
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                // END_STREAM: the orderly end of the transport.
                None => return Poll::Ready(Ok(())),
                // h2 reports END_STREAM (above) before any later reset, so a reset here, even
                // with NO_ERROR, cut the peer's half short: an abort, never an orderly end.
                Some(Err(err)) => return Poll::Ready(Err(to_io_error(err))),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // Consumed: the peer may send as much again. An error means the stream is gone,
        // which the next read reports.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let capacity = ready!(this.poll_capacity(cx, buf.len().min(MAX_WRITE)))?;
        let n = capacity.min(buf.len());
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(to_io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let capacity = ready!(this.poll_capacity(cx, total.min(MAX_WRITE)))?;
        // One DATA frame for a frame header and its payload, not one per slice.
        let n = capacity.min(total);
        let mut data = BytesMut::with_capacity(n);
        for slice in bufs {
            let take = slice.len().min(n - data.len());
            data.extend_from_slice(&slice[..take]);
            if data.len() == n {
                break;
            }
        }
        this.send
            .send_data(data.freeze(), false)
            .map_err(to_io_error)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what was sent, in the order streams were given
        // capacity; there is nothing to flush per stream.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            this.ended = true;
            // An empty DATA frame with END_STREAM. If the peer reset the stream already, the
            // transport is closed anyway: not an error for a shutdown.
            let _ = this.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

/// A reset as an I/O error: `CANCEL` is the abrupt close of RFC 8441 §5.
fn reset_error(reason: Reason) -> io::Error {
    let kind = match reason {
        Reason::CANCEL | Reason::NO_ERROR => io::ErrorKind::ConnectionReset,
        Reason::REFUSED_STREAM => io::ErrorKind::ConnectionRefused,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("http/2 stream reset: {reason}"))
}

/// An HTTP/2 error as ours, with its reason.
pub(crate) fn h2_error(err: h2::Error) -> crate::Error {
    crate::Error::Io(to_io_error(err))
}

fn to_io_error(err: h2::Error) -> io::Error {
    if err.is_io() {
        return err.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    match err.reason() {
        Some(reason) if err.is_reset() => reset_error(reason),
        _ => io::Error::other(err),
    }
}
