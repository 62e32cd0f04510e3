//! [`Core`]: the connection state the I/O layer keeps beside the protocol, and the poll
//! functions that move bytes between a transport and the protocol. `WebSocket` drives it
//! directly; the split halves drive it under a lock.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::BytesMut;
use socketry_proto::extensions::deflate::{Deflate, DeflateParams};
use socketry_proto::{CloseCode, Connection, Incoming, Message, Role, State};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::{Error, WebSocketConfig, pool};

/// A transport: what every connection runs over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin + ?Sized> Io for T {}

/// How many queued chunks one vectored write hands to the transport.
const MAX_IO_SLICES: usize = 64;
/// Reads never ask for more than this at once.
const MAX_READ_SIZE: usize = 256 * 1024;

/// How received data messages are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Whole messages.
    Whole,
    /// Frame by frame.
    Fragments,
}

/// Keepalive: a ping every `interval`, and the connection fails when its pong does not come
/// within `timeout`.
#[derive(Debug)]
struct Keepalive {
    interval: std::time::Duration,
    timeout: std::time::Duration,
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
}

/// Steps of closing the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Write what is queued (the close frame).
    Flush,
    /// A client waits for the server to end TCP first (RFC 6455 §7.1.1).
    AwaitEof,
    /// Shut the write side down.
    Shutdown,
}

/// Everything but the transport.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) conn: Connection,
    pub(crate) config: WebSocketConfig,
    pub(crate) protocol: Option<String>,
    /// The peer's close or the error that ended the connection, handed out once the transport
    /// is closed (kept here so that a cancelled receive loses nothing).
    ending: Option<Result<Message, Error>>,
    /// The transport reached end of file.
    read_eof: bool,
    /// Closing the transport, once started.
    closing: Option<Closing>,
    /// The transport is closed: receiving yields nothing more.
    done: bool,
    /// Bytes were written since the transport was last flushed.
    unflushed: bool,
    /// When the closing handshake gives up, once our close frame is queued.
    close_deadline: Option<Pin<Box<Sleep>>>,
    keepalive: Option<Keepalive>,
    /// How much the next read asks for.
    read_size: usize,
}

impl Core {
    pub(crate) fn new(
        role: Role,
        config: WebSocketConfig,
        leftover: &[u8],
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
    ) -> Self {
        let mut conn = Connection::new(role, *config.protocol());
        if let (Some(params), Some(preferences)) = (deflate, config.get_compression()) {
            conn.set_deflate(Some(Deflate::new(role, params, preferences)));
        }
        conn.receive_data(leftover);
        let keepalive = config.get_keepalive().map(|(interval, timeout)| Keepalive {
            interval,
            timeout,
            timer: Box::pin(tokio::time::sleep(interval)),
            awaiting_pong: false,
        });
        Self {
            conn,
            config,
            protocol,
            ending: None,
            read_eof: false,
            closing: None,
            done: false,
            unflushed: false,
            close_deadline: None,
            keepalive,
            read_size: config.get_read_buffer_size(),
        }
    }

    /// Whether the transport is closed.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Queues a message, taking a pooled write buffer if the queue has none.
    pub(crate) fn queue(&mut self, message: Message) -> Result<(), Error> {
        let starts_close = matches!(message, Message::Close(_));
        pool::lend(self.conn.outgoing_mut());
        self.conn.send(message)?;
        if starts_close {
            self.arm_close_deadline();
        }
        Ok(())
    }

    /// Runs `f` on the protocol to queue frames, with a pooled write buffer.
    pub(crate) fn queue_with(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<(), socketry_proto::Error>,
    ) -> Result<(), Error> {
        pool::lend(self.conn.outgoing_mut());
        f(&mut self.conn)?;
        Ok(())
    }

    /// Starts the closing handshake: queue our close frame and start the close timeout.
    pub(crate) fn start_close(
        &mut self,
        frame: Option<socketry_proto::CloseFrame>,
    ) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.queue(Message::Close(frame))
    }

    fn arm_close_deadline(&mut self) {
        if self.close_deadline.is_none() {
            let at = Instant::now() + self.config.get_close_timeout();
            self.close_deadline = Some(Box::pin(tokio::time::sleep_until(at)));
        }
    }

    fn close_deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        self.close_deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }

    /// Receives the next message or fragment; once the connection ended, closes the transport
    /// and hands out the peer's close or the error, then `None`.
    pub(crate) fn poll_recv(
        &mut self,
        io: &mut dyn Io,
        cx: &mut Context<'_>,
        mode: Mode,
    ) -> Poll<Option<Result<Incoming, Error>>> {
        while !self.done {
            if self.ending.is_none() && self.closing.is_none() {
                match ready!(self.poll_next(io, cx, mode)) {
                    Ok(Some(incoming)) => return Poll::Ready(Some(Ok(incoming))),
                    Ok(None) => {}
                    Err(err) => self.ending = Some(Err(err)),
                }
            }
            ready!(self.poll_close_transport(io, cx));
        }
        Poll::Ready(
            self.ending
                .take()
                .map(|ending| ending.map(Incoming::Control)),
        )
    }

    /// Reads and decodes until something is complete, writing queued replies meanwhile.
    /// `Ok(None)` means the connection ended without anything to hand out but `ending`.
    fn poll_next(
        &mut self,
        io: &mut dyn Io,
        cx: &mut Context<'_>,
        mode: Mode,
    ) -> Poll<Result<Option<Incoming>, Error>> {
        loop {
            self.poll_keepalive(cx)?;
            let next = match mode {
                Mode::Whole => self.conn.next_message().map(|m| m.map(Incoming::Control)),
                Mode::Fragments => self.conn.next_fragment(),
            };
            match next {
                Ok(Some(Incoming::Control(message @ Message::Close(_)))) => {
                    self.ending = Some(Ok(message));
                    return Poll::Ready(Ok(None));
                }
                Ok(Some(incoming)) => {
                    if let Incoming::Control(Message::Pong(_)) = incoming {
                        self.on_pong();
                    }
                    return Poll::Ready(Ok(Some(incoming)));
                }
                Ok(None) if self.conn.state() == State::Closed => return Poll::Ready(Ok(None)),
                Ok(None) => {}
                Err(err) => return Poll::Ready(Err(err.into())),
            }
            if self.close_deadline_passed(cx) {
                // The peer never answered our close frame.
                return Poll::Ready(Ok(None));
            }
            // Nothing complete is buffered: before waiting for the peer, write what is queued
            // (replies to pings, the close reply, keepalive pings, messages the application
            // fed). Writing here rather than before each message hands out every message a
            // read brought first, so that the replies to them leave in one write. A transport
            // that is not writable does not hold up reading.
            if let Poll::Ready(Err(err)) = self.poll_write_queued(io, cx) {
                return Poll::Ready(Err(err.into()));
            }
            if self.read_eof {
                return Poll::Ready(Err(Error::AbnormalClosure));
            }
            // Backpressure: while the peer does not take what we queued (pongs included), stop
            // reading what would make us queue more.
            if self.conn.outgoing().len() > self.config.get_write_buffer_size() {
                return Poll::Pending;
            }
            ready!(self.poll_read(io, cx))?;
        }
    }

    fn poll_read(&mut self, io: &mut dyn Io, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let want = self
            .conn
            .bytes_wanted()
            .clamp(self.read_size, MAX_READ_SIZE);
        let buf = self.conn.read_buffer();
        if buf.capacity() == 0 {
            *buf = pool::take();
        }
        if buf.capacity() - buf.len() < want / 2 {
            buf.reserve(want);
        }
        let room = buf.capacity() - buf.len();
        let n = match tokio_util::io::poll_read_buf(Pin::new(io), cx, buf) {
            Poll::Ready(result) => result?,
            Poll::Pending => {
                if buf.is_empty() {
                    // Idle: hold no read buffer while waiting (a large one is freed, a small
                    // one pooled for the next connection that has bytes to read).
                    pool::give(std::mem::take(buf));
                }
                return Poll::Pending;
            }
        };
        if n == 0 {
            self.read_eof = true;
        } else if n == room {
            self.read_size = (self.read_size * 2).min(MAX_READ_SIZE);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(self.config.get_read_buffer_size());
        }
        Poll::Ready(Ok(()))
    }

    fn on_pong(&mut self) {
        if let Some(k) = &mut self.keepalive {
            k.awaiting_pong = false;
            k.timer.as_mut().reset(Instant::now() + k.interval);
        }
    }

    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        let Some(k) = &mut self.keepalive else {
            return Ok(());
        };
        while k.timer.as_mut().poll(cx).is_ready() {
            if k.awaiting_pong {
                self.conn
                    .fail(CloseCode::INTERNAL_ERROR, "keepalive timeout");
                return Err(Error::Timeout("keepalive"));
            }
            k.awaiting_pong = true;
            let at = Instant::now() + k.timeout;
            k.timer.as_mut().reset(at);
            pool::lend(self.conn.outgoing_mut());
            // A ping can only fail once our close was sent; then keepalive is moot.
            let _ = self.conn.send(Message::Ping(bytes::Bytes::new()));
        }
        Ok(())
    }

    /// Writes what is queued, then ends the transport, bounded by the close timeout.
    fn poll_close_transport(&mut self, io: &mut dyn Io, cx: &mut Context<'_>) -> Poll<()> {
        self.arm_close_deadline();
        while !self.done {
            let step = *self.closing.get_or_insert(Closing::Flush);
            let progress = match step {
                Closing::Flush => self.poll_write_queued(io, cx).map_ok(|()| {
                    if self.conn.role() == Role::Client && !self.read_eof {
                        Closing::AwaitEof
                    } else {
                        Closing::Shutdown
                    }
                }),
                Closing::AwaitEof => {
                    let mut scratch = [0u8; 256];
                    let mut buf = ReadBuf::new(&mut scratch);
                    let read = Pin::new(&mut *io).poll_read(cx, &mut buf);
                    let eof = buf.filled().is_empty();
                    read.map_ok(|()| {
                        self.read_eof = eof;
                        if eof {
                            Closing::Shutdown
                        } else {
                            Closing::AwaitEof
                        }
                    })
                }
                Closing::Shutdown => Pin::new(&mut *io).poll_shutdown(cx).map_ok(|()| {
                    self.done = true;
                    Closing::Shutdown
                }),
            };
            match progress {
                Poll::Ready(Ok(next)) => self.closing = Some(next),
                // A failed transport is as closed as it gets.
                Poll::Ready(Err(_)) => self.done = true,
                Poll::Pending if self.close_deadline_passed(cx) => self.done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        *self.conn.read_buffer() = BytesMut::new();
        pool::reclaim(self.conn.outgoing_mut());
        Poll::Ready(())
    }

    /// Waits until the queue is below the write buffer bound.
    pub(crate) fn poll_room(
        &mut self,
        io: &mut dyn Io,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        if self.conn.outgoing().len() >= self.config.get_write_buffer_size() {
            ready!(self.poll_write_queued(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes every queued byte and flushes the transport.
    pub(crate) fn poll_write_queued(
        &mut self,
        io: &mut dyn Io,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.outgoing().is_empty() && !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        while !self.conn.outgoing().is_empty() {
            let out = self.conn.outgoing();
            // One run (the usual case: small frames are copied together) needs no slice array.
            let n = if !out.is_contiguous() && io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
                let count = out.chunks_vectored(&mut slices);
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            } else {
                ready!(Pin::new(&mut *io).poll_write(cx, out.chunk()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.outgoing_mut().advance(n);
            self.unflushed = true;
        }
        pool::reclaim(self.conn.outgoing_mut());
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}
