//! [`WebSocket`]: a connection over any `AsyncRead + AsyncWrite` transport.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use socketry_proto::extensions::deflate::DeflateParams;
use socketry_proto::{
    CloseCode, CloseFrame, Incoming, Message, MessageRef, OpCode, PreparedMessage, Role, State,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    Error, Replies, WebSocketConfig,
    closer::Closer,
    core::{Core, Io, Mode, Received, Timer},
    endpoint::{self, Endpoint},
    handlers::{CloseHandler, Handlers, PingHandler, PongHandler},
    split::{self, WebSocketReader, WebSocketWriter},
};

/// A WebSocket connection.
///
/// # Concurrency
///
/// A `WebSocket` is used from one task through `&mut self`: receiving and sending take turns.
/// Pings are answered and the peer's close is replied to automatically, as soon as the
/// transport accepts the bytes, also while the application only receives. To receive and
/// send from different tasks, [`split`](Self::split) it: one reader, one writer, and any
/// number of [`ControlHandle`](crate::ControlHandle)s that send pings and start the close from
/// anywhere. The types enforce this at compile time: nothing here panics on misuse.
///
/// It is also a [`Stream`](futures_core::Stream) of messages and a
/// [`Sink`](futures_sink::Sink) of messages, like tokio-tungstenite's `WebSocketStream`.
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
    pub(crate) io: S,
    pub(crate) core: Core,
    /// The sleep of whichever operation runs (one at a time: they take `&mut self`).
    pub(crate) timer: Timer,
    /// Boxed, made when one is set: most connections have none.
    pub(crate) handlers: Option<Box<Handlers>>,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.core.conn.role())
            .field("state", &self.core.state())
            .field("protocol", &self.core.protocol)
            .finish_non_exhaustive()
    }
}

impl<S> Endpoint for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Core, &mut dyn Io, &mut Timer, &mut Context<'_>) -> R,
    ) -> R {
        self.core.poll_close_request(Some(cx));
        f(&mut self.core, &mut self.io, &mut self.timer, cx)
    }

    fn with_core<R>(&mut self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.core)
    }

    fn handlers(&mut self) -> Option<&mut Handlers> {
        self.handlers.as_deref_mut()
    }

    /// Skipped while a `Closer`'s request waits: the poll acts on it first. (A request made
    /// just after this check is as one made just after the poll's: its wake brings the task
    /// back.)
    #[inline]
    fn buffered_small_message(&mut self) -> Option<Message> {
        if self.core.has_close_request() {
            return None;
        }
        self.core.buffered_small_message(&self.timer)
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a transport on which the opening handshake already happened.
    pub fn from_raw(io: S, role: Role, config: WebSocketConfig) -> Self {
        Self::from_parts(io, role, config, &[], None, None)
    }

    /// Wraps a transport after a handshake: `leftover` are bytes read past the handshake.
    pub(crate) fn from_parts(
        io: S,
        role: Role,
        config: WebSocketConfig,
        leftover: &[u8],
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
    ) -> Self {
        Self {
            io,
            core: Core::new(role, config, leftover, protocol, deflate),
            timer: Timer::default(),
            handlers: None,
        }
    }

    /// A [`Closer`]: asks this connection to close from any task, without
    /// [`split`](Self::split)ting it (a split connection shares a lock between its halves;
    /// a whole one with closers pays one atomic load per poll). The close starts at the
    /// connection's next poll, which the request wakes, or with a close its owner starts,
    /// which then sends the request's frame.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut ws: socketry::WebSocket<tokio::net::TcpStream>) {
    /// let closer = ws.closer();
    /// let shutdown = tokio::spawn(async move {
    ///     let _ = tokio::signal::ctrl_c().await;
    ///     closer.close(socketry::CloseCode::GOING_AWAY, "server restart")
    /// });
    /// // Ends after the peer's answer to the close: `recv` completes the handshake.
    /// while let Some(message) = ws.recv().await {
    ///     let Ok(message) = message else { break };
    ///     if message.is_text() || message.is_binary() {
    ///         // Fails once the close started; the next `recv` reads the peer's answer.
    ///         let _ = ws.send(message).await;
    ///     }
    /// }
    /// # drop(shutdown);
    /// # }
    /// # let _ = run;
    /// ```
    pub fn closer(&mut self) -> Closer {
        self.core.closer()
    }

    /// Whether permessage-deflate was negotiated, and its parameters.
    pub fn compression(&self) -> Option<&socketry_proto::extensions::deflate::Deflate> {
        self.core.conn.deflate()
    }

    /// Turns compression of the messages sent from now on off or on (gorilla's
    /// `EnableWriteCompression`); has no effect when permessage-deflate was not negotiated.
    /// Received compressed messages are always inflated.
    pub fn set_compression(&mut self, enabled: bool) {
        if let Some(deflate) = self.core.conn.deflate_mut() {
            deflate.set_enabled(enabled);
        }
    }

    /// The subprotocol the handshake selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.core.protocol.as_deref()
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.core.conn.role()
    }

    /// The protocol state. [`State::Closed`] once both close frames were exchanged, the
    /// connection failed, the close timeout passed, or the transport ended or failed; sends
    /// fail with [`Error::AlreadyClosed`] from then on.
    pub fn state(&self) -> State {
        self.core.state()
    }

    /// The settings in force.
    pub fn config(&self) -> &WebSocketConfig {
        &self.core.config
    }

    /// Changes the close-handshake timeout of this connection (for a closing handshake that
    /// has not started yet).
    pub fn set_close_timeout(&mut self, timeout: std::time::Duration) {
        self.core
            .set_config(self.core.config.close_timeout(timeout));
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the connection.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The protocol core, to inspect (its state, what is queued). It is not handed out
    /// mutably: the I/O layer keeps its invariants (the read buffer is append-only).
    pub fn connection(&self) -> &socketry_proto::Connection {
        &self.core.conn
    }

    /// Sets the ping handler, which chooses the pong (`Some(payload)`) or none. The default
    /// answers every ping with a pong of the same payload. Handlers run in the receiving
    /// task, never under a lock: they may use the connection's handles.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run(ws: &mut socketry::WebSocket<tokio::net::TcpStream>) {
    /// ws.set_ping_handler(Some(Box::new(|payload| {
    ///     println!("ping {payload:?}");
    ///     Some(payload.clone())
    /// })));
    /// # }
    /// # let _ = run;
    /// ```
    pub fn set_ping_handler(&mut self, handler: Option<PingHandler>) {
        self.core.conn.set_auto_pong(handler.is_none());
        self.handlers.get_or_insert_default().ping = handler;
    }

    /// Sets a handler that sees every pong (the default does nothing).
    pub fn set_pong_handler(&mut self, handler: Option<PongHandler>) {
        self.handlers.get_or_insert_default().pong = handler;
    }

    /// Sets the close handler, which chooses the reply to the peer's close frame (`None`: a
    /// close without status). The default echoes the peer's code without a reason.
    pub fn set_close_handler(&mut self, handler: Option<CloseHandler>) {
        self.core.conn.set_auto_close_reply(handler.is_none());
        self.handlers.get_or_insert_default().close = handler;
    }

    /// Splits the connection into a reader and a writer for two tasks; see
    /// [`WebSocketReader`] and [`WebSocketWriter`].
    pub fn split(self) -> (WebSocketReader<S>, WebSocketWriter<S>) {
        split::split(self)
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
    /// [`Error::AbnormalClosure`] when the transport ended without a close frame,
    /// [`Error::Io`] when it failed, [`Error::Timeout`] for the keepalive. After these,
    /// `recv` returns `None`: the connection is over. A read timeout
    /// ([`WebSocketConfig::read_timeout`]) returns [`Error::Timeout`] and leaves the
    /// connection usable.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel-safe: if it is dropped before completing (in `tokio::select!`,
    /// say), no message is lost; the next call continues where it stopped.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        endpoint::recv(self).await
    }

    /// Receives the next message and lends it to `f`, with the [`Replies`] to answer it:
    /// the borrowing receive, beside [`recv`](Self::recv)'s owned one. A small message (up to
    /// 125 bytes in one frame) is lent where it lies in the read buffer, unmasked in place:
    /// no allocation, no reference count, and a reply is copied straight into the write
    /// queue. Any other message is received as `recv` receives it and lent from there.
    /// Returns what `f` returned, or `None` once the connection is over, as `recv`.
    ///
    /// Replies are queued, not written: as with [`feed`](Self::feed), the next receive
    /// writes them (after every message one read brought, so a batch is answered with one
    /// write), and [`flush`](Self::flush) does at once. Replies that filled the queue to the
    /// write buffer size ([`WebSocketConfig::write_buffer_size`]) make the next `recv_with`
    /// wait for room before it receives, as the next `feed` would: bounded by the write
    /// timeout and by keepalive, ended by a close (after which no reply may follow); nothing
    /// is read meanwhile. So a peer that sends without reading holds the queue at the write
    /// buffer size plus what one message's replies add, and a `recv_with` whose messages are
    /// not answered never waits.
    ///
    /// `f` runs on this task, holding no lock; it should not block.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); while waiting for room, as [`feed`](Self::feed)
    /// ([`Error::Timeout`] for the write timeout, the queue kept). What [`Replies::feed`]
    /// refuses is `f`'s to hand back.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel-safe, as `recv`: `f` runs only once a message is there, and
    /// then without a wait.
    ///
    /// # Examples
    ///
    /// An echo server that allocates nothing per small message:
    ///
    /// ```no_run
    /// # async fn handle(stream: tokio::net::TcpStream) -> Result<(), socketry::Error> {
    /// let mut ws = socketry::accept(stream).await?;
    /// while let Some(echoed) = ws
    ///     .recv_with(|message, replies| {
    ///         if message.is_text() || message.is_binary() {
    ///             replies.feed(message)
    ///         } else {
    ///             Ok(())
    ///         }
    ///     })
    ///     .await
    /// {
    ///     echoed??; // the receive's error, then the reply's (both `socketry::Error`)
    /// }
    /// # Ok(()) }
    /// # let _ = handle;
    /// ```
    pub async fn recv_with<R, F>(&mut self, f: F) -> Option<Result<R, Error>>
    where
        F: FnOnce(MessageRef<'_>, &mut Replies<'_>) -> R,
    {
        if self.core.owes_room
            && let Err(err) = endpoint::wait_for_replies_room(self).await
        {
            return Some(Err(err));
        }
        let mut f = f;
        // The second and later messages of a batch one read brought: no poll. (Skipped while
        // a `Closer`'s request waits: the poll acts on it first.)
        if !self.core.has_close_request() && self.core.may_skip_poll(&self.timer) {
            match self.core.lend(f) {
                Ok(result) => return Some(Ok(result)),
                Err(back) => f = back,
            }
        }
        let mut mode = Mode::Lend;
        loop {
            match endpoint::received(self, mode).await? {
                Ok(Received::Lendable) => match self.core.lend(f) {
                    Ok(result) => return Some(Ok(result)),
                    // Text that is not UTF-8: received as `recv` would, which fails it.
                    Err(back) => {
                        f = back;
                        mode = Mode::Whole;
                    }
                },
                Ok(Received::Incoming(Incoming::Control(message))) => {
                    return Some(Ok(self.core.lend_owned(&message, f)));
                }
                Ok(_) => unreachable!("whole messages are asked for"),
                Err(err) => return Some(Err(err)),
            }
        }
    }

    /// Sends a message and waits until the transport took it.
    ///
    /// Sending [`Message::Close`] starts the closing handshake without waiting for the peer;
    /// [`close`](Self::close) does the whole handshake.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] after a close frame was sent or received,
    /// [`Error::InvalidMessage`] for a control payload over 125 bytes, [`Error::Io`],
    /// [`Error::Timeout`] after the write timeout (the rest stays queued).
    ///
    /// # Cancel safety
    ///
    /// If cancelled, the message may be partly written; it stays queued and the rest goes out
    /// with the next send, flush or receive.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        endpoint::send(self, message.into()).await
    }

    /// Queues a message, to send many with few writes; [`flush`](Self::flush) writes them.
    /// Waits only when the queue holds more than the write buffer size
    /// ([`WebSocketConfig::write_buffer_size`]), so memory stays bounded.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Cancel safety
    ///
    /// If cancelled while waiting for room, the message was not queued.
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        endpoint::feed(self, message.into()).await
    }

    /// Writes everything queued.
    ///
    /// # Errors
    ///
    /// [`Error::Io`], [`Error::Timeout`] after the write timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: unwritten bytes stay queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        endpoint::flush(self).await
    }

    /// Sends one frame of a data message: the first with `OpCode::Text` or `OpCode::Binary`,
    /// the rest with `OpCode::Continuation`, the last with `fin` set. Control frames may be
    /// sent between them. The caller keeps the order (RFC 6455 §5.4) and, for text, the
    /// message's UTF-8 valid as a whole; [`message_writer`](Self::message_writer) does both.
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
        let queued = self
            .core
            .queue_with(|conn| conn.send_frame(opcode, payload, fin));
        endpoint::flush_queued(self, queued).await
    }

    /// Sends a [`PreparedMessage`]: a server writes its frame bytes, framed once for all
    /// connections, without copying them.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        let queued = self.core.queue_with(|conn| conn.send_prepared(message));
        endpoint::flush_queued(self, queued).await
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
        if self.core.is_done() {
            return Ok(());
        }
        self.core.start_close(frame)?;
        // Whatever still arrives, the peer's close included, is not news to the caller.
        endpoint::drain(self).await;
        Ok(())
    }
}

impl<S> futures_core::Stream for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let ws = self.get_mut();
        // As `recv`: a batch's later small messages without the poll.
        if let Some(message) = ws.buffered_small_message() {
            return Poll::Ready(Some(Ok(message)));
        }
        endpoint::poll_recv_message(ws, cx)
    }
}

impl<S> futures_sink::Sink<Message> for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        endpoint::poll_ready(self.get_mut(), cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.get_mut().core.queue(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        endpoint::poll_flush(self.get_mut(), cx)
    }

    /// Sends a close frame (1000) if none was sent and flushes; the peer's close arrives
    /// through the stream.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.core.state() == State::Open {
            this.core
                .start_close(Some(CloseFrame::new(CloseCode::NORMAL, "")))?;
        }
        endpoint::poll_flush(this, cx)
    }
}
