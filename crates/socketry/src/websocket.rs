//! [`WebSocket`]: a connection over any `AsyncRead + AsyncWrite` transport.

use std::{
    fmt,
    future::poll_fn,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use socketry_proto::{CloseCode, CloseFrame, Connection, Message, OpCode, Role, State};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, WebSocketConfig};

/// How many queued chunks one vectored write hands to the transport.
const MAX_IO_SLICES: usize = 64;

/// A WebSocket connection.
///
/// Reading and writing go through `&mut self`: one task owns the connection. Pings are
/// answered and the peer's close is replied to automatically, as soon as the transport
/// accepts the bytes, also while the application only reads.
///
/// # Examples
///
/// An echo handler:
///
/// ```no_run
/// # async fn handle(stream: tokio::net::TcpStream) -> Result<(), socketry::Error> {
/// let mut ws = socketry::accept(stream).await?;
/// while let Some(message) = ws.recv().await {
///     let message = message?;
///     if message.is_text() || message.is_binary() {
///         ws.send(message).await?;
///     }
/// }
/// # Ok(()) }
/// # let _ = handle;
/// ```
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    config: WebSocketConfig,
    protocol: Option<String>,
    /// The peer's close or the error that ended the connection, handed out once the transport
    /// is closed (kept here so that a cancelled `recv` loses nothing).
    ending: Option<Result<Message, Error>>,
    /// The transport reached end of file.
    read_eof: bool,
    /// The transport is closed: `recv` returns `None` from now on.
    done: bool,
    /// Bytes were written since the transport was last flushed.
    unflushed: bool,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.conn.role())
            .field("state", &self.conn.state())
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a transport on which the opening handshake already happened.
    pub fn from_raw(io: S, role: Role, config: WebSocketConfig) -> Self {
        Self::from_parts(io, role, config, &[], None)
    }

    /// Wraps a transport after a handshake: `leftover` are bytes read past the handshake.
    pub(crate) fn from_parts(
        io: S,
        role: Role,
        config: WebSocketConfig,
        leftover: &[u8],
        protocol: Option<String>,
    ) -> Self {
        let mut conn = Connection::new(role, *config.protocol());
        conn.receive_data(leftover);
        Self {
            io,
            conn,
            config,
            protocol,
            ending: None,
            read_eof: false,
            done: false,
            unflushed: false,
        }
    }

    /// The subprotocol the handshake selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.conn.role()
    }

    /// The protocol state.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// The settings in force.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the connection.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Receives the next message.
    ///
    /// Data messages, pings and pongs come back as they arrive (a ping is answered before it is
    /// returned). When the peer closes, its close frame comes back once as
    /// [`Message::Close`], after the reply was sent and the transport closed; then `recv`
    /// returns `None`. A normal close is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the peer broke the protocol: the close frame with the code
    /// the RFC requires (1002, 1007, 1009) was sent and the transport closed first.
    /// [`Error::AbnormalClosure`] when the transport ended without a close frame, and
    /// [`Error::Io`] when it failed. After an error, `recv` returns `None`.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel-safe: if it is dropped before completing (in `tokio::select!`,
    /// say), no message is lost; the next call continues where it stopped.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        if self.ending.is_none() && !self.done {
            match poll_fn(|cx| self.poll_next_message(cx)).await {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(err) => self.ending = Some(Err(err)),
            }
        }
        if !self.done {
            self.close_transport().await;
        }
        self.ending.take()
    }

    /// Sends a message and waits until the transport took it.
    ///
    /// Sending [`Message::Close`] starts the closing handshake without waiting for the peer;
    /// [`close`](Self::close) does the whole handshake.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] after a close frame was sent or received,
    /// [`Error::InvalidMessage`] for a control payload over 125 bytes, [`Error::Io`].
    ///
    /// # Cancel safety
    ///
    /// If cancelled, the message may be partly written; it stays queued and the rest goes out
    /// with the next send, flush or receive.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.conn.send(message.into())?;
        self.flush().await
    }

    /// Sends one frame of a data message: the first with `OpCode::Text` or `OpCode::Binary`,
    /// the rest with `OpCode::Continuation`, the last with `fin` set. Control frames may be
    /// sent between them. The caller keeps the order (RFC 6455 §5.4) and, for text, the
    /// message's UTF-8 valid as a whole.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`Error::InvalidMessage`] for a control opcode.
    pub async fn send_frame(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        self.conn.send_frame(opcode, payload, fin)?;
        self.flush().await
    }

    /// Queues a message without writing it, to send several with one write; see
    /// [`flush`](Self::flush).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), without the I/O errors.
    pub fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.conn.send(message.into())?;
        Ok(())
    }

    /// Writes everything queued.
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_write_queued(cx)).await?;
        Ok(())
    }

    /// Closes the connection: sends a close frame with `code` and `reason` (truncated on a char
    /// boundary to 123 bytes), waits for the peer's close frame up to the close timeout
    /// (default 10 s), then closes the transport — always, also when a step failed.
    ///
    /// Messages that arrive meanwhile are dropped. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent (1005, 1006, 1015, reserved
    /// ranges); nothing is sent then.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.close_with(Some(CloseFrame::new(code, reason))).await
    }

    /// [`close`](Self::close) with an optional frame: `None` sends a close without status.
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close).
    pub async fn close_with(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.conn.send_close(frame.as_ref())?;
        let timeout = self.config.get_close_timeout();
        let wait_for_peer = async {
            // Messages still arriving are dropped; `Ok(None)` comes once the peer's close
            // frame did.
            while let Ok(Some(_)) = poll_fn(|cx| self.poll_next_message(cx)).await {}
        };
        let _ = tokio::time::timeout(timeout, wait_for_peer).await;
        self.close_transport().await;
        // The close was ours: the peer's reply is not news to the caller.
        self.ending = None;
        Ok(())
    }

    /// Writes what is queued, then ends the transport (RFC 6455 §7.1.1: the server closes TCP
    /// first, so a client waits for the server's end of file before closing its side), all
    /// bounded by the close timeout.
    async fn close_transport(&mut self) {
        let timeout = self.config.get_close_timeout();
        let role = self.conn.role();
        let orderly = async {
            poll_fn(|cx| self.poll_write_queued(cx)).await?;
            if role == Role::Client {
                let mut scratch = [0u8; 256];
                while !self.read_eof {
                    self.read_eof = self.io.read(&mut scratch).await? == 0;
                }
            }
            self.io.shutdown().await
        };
        let _ = tokio::time::timeout(timeout, orderly).await;
        self.done = true;
    }

    /// Reads and decodes until a message is complete, writing queued replies meanwhile.
    /// `Ok(None)` means the connection ended without a message to return (closed).
    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>, Error>> {
        loop {
            // Replies (pongs, the close reply) go out as soon as the transport takes them; a
            // transport that is not writable does not hold up reading.
            if let Poll::Ready(Err(err)) = self.poll_write_queued(cx) {
                return Poll::Ready(Err(err.into()));
            }
            match self.conn.next_message() {
                Ok(Some(message @ Message::Close(_))) => {
                    self.ending = Some(Ok(message));
                    return Poll::Ready(Ok(None));
                }
                Ok(Some(message)) => return Poll::Ready(Ok(Some(message))),
                Ok(None) if self.conn.state() == State::Closed => return Poll::Ready(Ok(None)),
                Ok(None) => {}
                Err(err) => return Poll::Ready(Err(err.into())),
            }
            if self.read_eof {
                return Poll::Ready(Err(Error::AbnormalClosure));
            }
            let want = self
                .conn
                .bytes_wanted()
                .clamp(self.config.get_read_buffer_size(), 1 << 20);
            let buf = self.conn.read_buffer();
            if buf.capacity() - buf.len() < want / 2 {
                buf.reserve(want);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                buf
            ))?;
            if n == 0 {
                self.read_eof = true;
            }
        }
    }

    /// Writes every queued byte and flushes the transport.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.conn.outgoing().is_empty() {
            let out = self.conn.outgoing();
            let n = if self.io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
                let count = out.chunks_vectored(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?
            } else {
                ready!(Pin::new(&mut self.io).poll_write(cx, out.chunk()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.outgoing_mut().advance(n);
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}
