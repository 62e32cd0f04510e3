//! [`Conn`]: the connection a controller serves, with Goyave's closing methods.

use std::{
    pin::Pin,
    sync::{Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::Either;
use socketry::{
    CloseCode, CloseHandler, Closer, ControlHandle, Error, JoinedMessages, Message, MessageReader,
    MessageRef, MessageWriter, OpCode, PingHandler, PongHandler, PreparedMessage, Replies, State,
    WebSocket, WebSocketConfig, WebSocketReader, WebSocketWriter, upgrade::Upgraded,
};

/// The close reason of a normal close (Goyave's `NormalClosureMessage`).
pub const NORMAL_CLOSURE_MESSAGE: &str = "Server closed connection";
/// The close reason of a close after a server error, outside debug mode.
pub const INTERNAL_ERROR_MESSAGE: &str = "Internal server error";

/// The receiving half of a [`Conn`] after [`Conn::split`].
pub type ConnReader = WebSocketReader<Upgraded>;
/// The sending half of a [`Conn`] after [`Conn::split`].
pub type ConnWriter = WebSocketWriter<Upgraded>;

/// A WebSocket connection served by a [`Controller`](crate::Controller).
///
/// It has the methods of [`socketry::WebSocket`] a controller needs (`recv`, `send`, `feed`,
/// `flush`, `send_prepared`, streaming, JSON with the `json` feature, `Stream` + `Sink`) and
/// Goyave's closing methods, which are idempotent, wait for the peer's close frame up to the
/// close-handshake timeout, and then close the socket, always.
///
/// [`split`](Self::split) gives owned halves for a reader loop and a writer task (the
/// canonical "server push plus client commands" shape), and [`handle`](Self::handle) gives
/// [`ControlHandle`]s; until one of them is used, the `Conn` is one unsplit socket, with no
/// lock on its calls. Graceful shutdown ([`Shutdown`](crate::Shutdown)) asks for the close
/// with 1001 "Going Away" from outside (a [`Closer`], [`closer`](Self::closer)), so every way
/// of reading sees it end, split or not; and the connection is closed when `serve` returns,
/// whoever holds its halves.
#[derive(Debug)]
pub struct Conn {
    /// Whole until something needs halves: a split connection shares a lock between its
    /// halves on every poll, which a controller that reads and writes in one task need not
    /// pay. Behind a mutex only so that [`handle`](Self::handle) can split through `&self`;
    /// everything else reaches it through `&mut self`, without locking.
    halves: Mutex<Halves>,
    config: WebSocketConfig,
    protocol: Option<String>,
    compressed: bool,
    tcp: bool,
    debug: bool,
    /// A closing method ran.
    closed: bool,
    /// The hub's writer task, once the writer went to a hub: closing lets it write what was
    /// queued first.
    #[cfg(feature = "hub")]
    hub_writer: Option<socketry_hub::WriterHandle>,
}

/// The connection, whole or split.
#[derive(Debug)]
enum Halves {
    /// Boxed: inline, the connection task's future grew by twice its size (the generator
    /// layout keeps more than one copy's room), and idle connections paid for it.
    Whole(Box<WebSocket<Upgraded>>),
    /// After [`Conn::split`], [`Conn::handle`] or `attach`: the halves this `Conn` still holds.
    Split {
        /// Until the controller takes it ([`Conn::split`]).
        reader: Option<ConnReader>,
        /// Until the controller takes it ([`Conn::split`]) or gives it to a hub (`attach`).
        writer: Option<ConnWriter>,
        handle: ControlHandle,
    },
    /// Only inside [`Halves::split`], while the whole connection moves into halves.
    Moving,
}

impl Halves {
    /// Splits a whole connection in place; the halves stay here.
    fn split(
        &mut self,
    ) -> (
        &mut Option<ConnReader>,
        &mut Option<ConnWriter>,
        &ControlHandle,
    ) {
        if let Self::Whole(_) = self
            && let Self::Whole(ws) = std::mem::replace(self, Self::Moving)
        {
            let (reader, writer) = (*ws).split();
            let handle = writer.handle();
            *self = Self::Split {
                reader: Some(reader),
                writer: Some(writer),
                handle,
            };
        }
        match self {
            Self::Split {
                reader,
                writer,
                handle,
            } => (reader, writer, handle),
            Self::Whole(_) | Self::Moving => unreachable!("split just above"),
        }
    }

    fn state(&self) -> State {
        match self {
            Self::Whole(ws) => ws.state(),
            Self::Split { handle, .. } => handle.state(),
            Self::Moving => State::Closed,
        }
    }
}

/// The side a call reads or writes through: the whole connection or one of its halves.
enum Side<'a, H> {
    Whole(&'a mut WebSocket<Upgraded>),
    Half(&'a mut H),
}

/// Runs `$body` with `$s` bound to whichever side `$side` is (the two have the same methods).
macro_rules! on_side {
    ($side:expr, $s:ident => $body:expr) => {
        match $side {
            Side::Whole($s) => $body,
            Side::Half($s) => $body,
        }
    };
}

fn get_mut(halves: &mut Mutex<Halves>) -> &mut Halves {
    // No user code runs under this lock and nothing in it panics midway: never poisoned in a
    // way that matters.
    halves.get_mut().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    pub(crate) fn new(ws: WebSocket<Upgraded>, debug: bool) -> Self {
        Self {
            config: *ws.config(),
            protocol: ws.protocol().map(str::to_owned),
            compressed: ws.compression().is_some(),
            tcp: ws.get_ref().is_tcp(),
            halves: Mutex::new(Halves::Whole(Box::new(ws))),
            debug,
            closed: false,
            #[cfg(feature = "hub")]
            hub_writer: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Halves> {
        self.halves.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn reader(&mut self) -> Option<Side<'_, ConnReader>> {
        match get_mut(&mut self.halves) {
            Halves::Whole(ws) => Some(Side::Whole(ws)),
            Halves::Split { reader, .. } => reader.as_mut().map(Side::Half),
            Halves::Moving => None,
        }
    }

    #[inline]
    fn writer(&mut self) -> Result<Side<'_, ConnWriter>, Error> {
        match get_mut(&mut self.halves) {
            Halves::Whole(ws) => Ok(Side::Whole(ws)),
            Halves::Split { writer, .. } => {
                writer.as_mut().map(Side::Half).ok_or(Error::AlreadyClosed)
            }
            Halves::Moving => Err(Error::AlreadyClosed),
        }
    }

    /// Receives the next message, as [`WebSocket::recv`]: `None` once the connection closed
    /// (after the peer's close, which is handed out first, or after a graceful shutdown).
    /// `None` at once after [`split`](Self::split).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocket::recv`]: in a `select!` loop, a close that started
    /// (a shutdown, say) goes on with the next call.
    // Not `async`: the side's own future is returned, so that no state machine of this
    // method's sits between a controller's loop and the socket on every message.
    #[inline]
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> {
        match self.reader() {
            Some(Side::Whole(ws)) => Either::Left(ws.recv()),
            Some(Side::Half(reader)) => Either::Right(Either::Left(reader.recv())),
            None => Either::Right(Either::Right(std::future::ready(None))),
        }
    }

    /// Receives the next message and lends it to `f` with the [`Replies`] to answer it, as
    /// [`WebSocket::recv_with`]: a small message is lent where it lies in the read buffer and
    /// a reply is copied straight into the write queue. `None` at once after
    /// [`split`](Self::split). While a [`handle`](Self::handle) holds the connection split in
    /// place, the message is received through the reader half, as `recv` receives it, and the
    /// replies are collected ([`Replies::collect`]) and fed through the writer half once `f`
    /// returned (no lock is held while `f` runs): a reply refused because the close started
    /// is dropped, as the whole connection's would be (`f` does not see that refusal then);
    /// replies with no writer left here (it went to the controller or a hub) are refused
    /// with [`Error::AlreadyClosed`], and one that fails otherwise (the write timeout, the
    /// transport) is the receive's error; either way `f`'s result is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe while unsplit, as [`WebSocket::recv_with`]. Split in place, a cancel while
    /// the replies are being fed (waiting for room) drops the replies not fed yet and `f`'s
    /// result.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn serve(conn: &mut socketry_axum::Conn) -> Result<(), socketry::Error> {
    /// while let Some(echoed) = conn
    ///     .recv_with(|message, replies| {
    ///         if message.is_text() || message.is_binary() {
    ///             replies.feed(message)
    ///         } else {
    ///             Ok(())
    ///         }
    ///     })
    ///     .await
    /// {
    ///     echoed??;
    /// }
    /// # Ok(()) }
    /// # let _ = serve;
    /// ```
    // Not `async`, as `recv`.
    #[inline]
    pub fn recv_with<R, F>(&mut self, f: F) -> impl Future<Output = Option<Result<R, Error>>>
    where
        F: FnOnce(MessageRef<'_>, &mut Replies<'_>) -> R,
    {
        match get_mut(&mut self.halves) {
            Halves::Whole(ws) => Either::Left(ws.recv_with(f)),
            Halves::Split {
                reader: Some(reader),
                writer,
                ..
            } => Either::Right(Either::Left(async move {
                let message = match reader.recv().await? {
                    Ok(message) => message,
                    Err(err) => return Some(Err(err)),
                };
                let mut replies = Vec::new();
                let lent = MessageRef::from(&message);
                let result = f(lent, &mut Replies::collect(&mut replies, Some(&message)));
                if !replies.is_empty() && writer.is_none() {
                    // The writer went to the controller or a hub: nothing here can answer.
                    return Some(Err(Error::AlreadyClosed));
                }
                for reply in replies {
                    let Some(writer) = writer.as_mut() else { break };
                    match writer.feed(reply).await {
                        Ok(()) => {}
                        // The close started: no reply may follow, as the whole connection's
                        // `Replies` would have said; the next receive goes on with the close.
                        Err(Error::AlreadyClosed) => break,
                        Err(err) => return Some(Err(err)),
                    }
                }
                Some(Ok(result))
            })),
            _ => Either::Right(Either::Right(std::future::ready(None))),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        match self.reader() {
            Some(side) => on_side!(side, s => futures_core::Stream::poll_next(Pin::new(s), cx)),
            None => Poll::Ready(None),
        }
    }

    /// Sends a message and waits until the transport took it, as [`WebSocket::send`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`]; [`Error::AlreadyClosed`] after [`split`](Self::split) or once
    /// the close started (a send after a shutdown began is a normal end for the controller:
    /// returning that error is not logged as a failure).
    #[inline]
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        on_side!(self.writer()?, s => s.send(message).await)
    }

    /// Queues a message, waiting only for room, as [`WebSocket::feed`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Cancel safety
    ///
    /// If cancelled while waiting for room, the message was not queued.
    // Not `async`, as `recv`.
    #[inline]
    pub fn feed(&mut self, message: impl Into<Message>) -> impl Future<Output = Result<(), Error>> {
        match self.writer() {
            Ok(Side::Whole(ws)) => Either::Left(ws.feed(message)),
            Ok(Side::Half(writer)) => Either::Right(Either::Left(writer.feed(message))),
            Err(err) => Either::Right(Either::Right(std::future::ready(Err(err)))),
        }
    }

    /// Writes everything queued, as [`WebSocket::flush`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    #[inline]
    pub async fn flush(&mut self) -> Result<(), Error> {
        on_side!(self.writer()?, s => s.flush().await)
    }

    /// Sends a [`PreparedMessage`] (framed once for many connections).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        on_side!(self.writer()?, s => s.send_prepared(message).await)
    }

    /// Waits for the next data message and reads it frame by frame, as
    /// [`WebSocket::next_reader`]. `None` once the connection closed.
    pub async fn next_reader(&mut self) -> Option<Result<MessageReader<'_, Upgraded>, Error>> {
        on_side!(self.reader()?, s => s.next_reader().await)
    }

    /// Reads consecutive messages as one byte stream, as [`WebSocket::join_messages`].
    /// `None` after [`split`](Self::split).
    pub fn join_messages(
        &mut self,
        terminator: impl Into<bytes::Bytes>,
    ) -> Option<JoinedMessages<'_, Upgraded>> {
        Some(on_side!(self.reader()?, s => s.join_messages(terminator)))
    }

    /// Writes one message as fragments, as [`WebSocket::message_writer`].
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] after [`split`](Self::split).
    pub fn message_writer(&mut self, kind: OpCode) -> Result<MessageWriter<'_, Upgraded>, Error> {
        Ok(on_side!(self.writer()?, s => s.message_writer(kind)))
    }

    /// Receives a JSON message, as [`WebSocket::recv_json`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, Error>> {
        on_side!(self.reader()?, s => s.recv_json().await)
    }

    /// Sends a value as a JSON text message, as [`WebSocket::send_json`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_json`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn send_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), Error> {
        on_side!(self.writer()?, s => s.send_json(value).await)
    }

    /// Takes the connection's halves, to read in one task and write from another (the
    /// canonical axum pattern: a sender task fed by a channel). `None` if they were taken.
    ///
    /// The halves still see graceful shutdown (the reader starts the close the shutdown
    /// requested, or the writer's next send does once the reader is dropped, and the reader
    /// hands out the peer's answer, then `None`), and the connection is closed when `serve`
    /// returns, wherever the halves went: keep the reader polled until then, as the
    /// [`WebSocketReader`] docs say, or drop it (the close then reads the peer's answer
    /// itself). After `split`, this `Conn`'s own reading and sending methods end at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use socketry_axum::{Conn, Controller, Request};
    ///
    /// struct Ticker;
    ///
    /// impl Controller for Ticker {
    ///     type Error = socketry::Error;
    ///
    ///     async fn serve(&self, conn: &mut Conn, _: &Request) -> Result<(), Self::Error> {
    ///         let (mut reader, mut writer) = conn.split().expect("not split before");
    ///         let ticks = tokio::spawn(async move {
    ///             let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    ///             loop {
    ///                 every.tick().await;
    ///                 if writer.send("tick").await.is_err() {
    ///                     return; // closed: shutdown, or the peer left
    ///                 }
    ///             }
    ///         });
    ///         while let Some(command) = reader.recv().await {
    ///             println!("command: {:?}", command?);
    ///         }
    ///         ticks.abort();
    ///         Ok(())
    ///     }
    /// }
    /// # let _ = socketry_axum::Upgrader::new(Ticker);
    /// ```
    pub fn split(&mut self) -> Option<(ConnReader, ConnWriter)> {
        let (reader, writer, _) = get_mut(&mut self.halves).split();
        if reader.is_none() || writer.is_none() {
            return None;
        }
        reader.take().zip(writer.take())
    }

    /// Puts the connection in `hub`: the hub's writer task takes this connection's writer
    /// and sends it everything the hub queues for it (rooms it joins, messages to it), a
    /// backlog in one write, under the hub's bounds. Keep reading with [`recv`](Self::recv);
    /// send through the returned member ([`Member::send`](socketry_hub::Member::send)), as
    /// this `Conn`'s own sending methods end with [`Error::AlreadyClosed`] from now on. The
    /// member leaves the hub when dropped, at the latest when `serve` returns; closing the
    /// connection (the automatic close after `serve`, or a closing method) takes it out of the
    /// hub and lets the writer send what was queued before the close frame.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] if the writer was taken before ([`split`](Self::split), or an
    /// earlier `attach`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use socketry_axum::{Conn, Controller, Request, hub::{ClientInfo, Hub}};
    ///
    /// struct Chat(Hub);
    ///
    /// impl Controller for Chat {
    ///     type Error = Box<dyn std::error::Error + Send + Sync>;
    ///
    ///     async fn serve(&self, conn: &mut Conn, request: &Request) -> Result<(), Self::Error> {
    ///         let member = conn.attach(&self.0, ClientInfo::new(request.query_or("name", "guest")))?;
    ///         member.join("lobby")?;
    ///         while let Some(message) = conn.recv().await {
    ///             let message = message?;
    ///             if message.is_text() || message.is_binary() {
    ///                 member.publish("lobby", message)?;
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// # let _ = socketry_axum::Upgrader::new(Chat(Hub::default()));
    /// ```
    #[cfg(feature = "hub")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
    pub fn attach(
        &mut self,
        hub: &socketry_hub::Hub,
        info: socketry_hub::ClientInfo,
    ) -> Result<socketry_hub::Member, Error> {
        let (_, writer, _) = get_mut(&mut self.halves).split();
        let writer = writer.take().ok_or(Error::AlreadyClosed)?;
        let member = hub.attach(writer, info);
        self.hub_writer = Some(member.writer());
        Ok(member)
    }

    /// A [`Closer`]: asks this connection to close from any task or thread, without the
    /// halves' lock (`handle` splits the connection; this does not). The connection's task
    /// acts on it at its next read or send, which the request wakes; a close after `serve`
    /// returns sends the request's frame. Graceful shutdown ([`Shutdown`](crate::Shutdown))
    /// works this way.
    pub fn closer(&self) -> Closer {
        match &mut *self.lock() {
            Halves::Whole(ws) => ws.closer(),
            Halves::Split { handle, .. } => handle.closer(),
            Halves::Moving => unreachable!("only inside Halves::split"),
        }
    }

    /// A handle that sends pings and the close frame from any task.
    ///
    /// The first call splits the connection inside this `Conn` (its methods keep working):
    /// from then on every read and write takes the lock the halves share, a cost of about a
    /// fifth of the instructions per small message. To close from another task only,
    /// [`closer`](Self::closer) avoids that.
    pub fn handle(&self) -> ControlHandle {
        self.lock().split().2.clone()
    }

    /// Performs the closing handshake with `code` and `reason` (truncated on a char boundary
    /// to 123 bytes). Idempotent: only the first call sends a close frame.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        if !code.is_valid() {
            // Fails here, and leaves the automatic close to be done.
            return Err(Error::InvalidMessage("close code may not be sent"));
        }
        let limit = self.config.get_close_timeout() + Duration::from_secs(1);
        #[cfg(feature = "hub")]
        if let Some(writer) = &self.hub_writer {
            // What the hub queued for this connection goes out before the close frame.
            writer.finish(limit).await;
        }
        self.closed = true;
        match get_mut(&mut self.halves) {
            // Sends the close frame, reads the peer's answer (up to the close timeout), then
            // closes the transport; bounded again in case the transport does not end.
            Halves::Whole(ws) => {
                let _ = tokio::time::timeout(limit, ws.close(code, reason)).await;
            }
            Halves::Split { reader, handle, .. } => {
                handle.start_close(code, reason)?;
                match reader {
                    // The reader is ours; read the peer's answer here.
                    Some(reader) => {
                        let drain = async { while reader.recv().await.is_some() {} };
                        let _ = tokio::time::timeout(limit, drain).await;
                    }
                    // The controller took it: it completes the close, or, if it was dropped,
                    // `closed` does. Bounded in case the reader lives on but is not polled.
                    None => {
                        let _ = tokio::time::timeout(limit, handle.closed()).await;
                    }
                }
            }
            Halves::Moving => {}
        }
        Ok(())
    }

    /// Closes with 1000 "Server closed connection".
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches [`close`](Self::close).
    pub async fn close_normal(&mut self) -> Result<(), Error> {
        self.close(CloseCode::NORMAL, NORMAL_CLOSURE_MESSAGE).await
    }

    /// Closes with 1011 "Internal server error", or in debug mode with the error's text.
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches [`close`](Self::close).
    pub async fn close_with_error(&mut self, err: impl std::fmt::Display) -> Result<(), Error> {
        let reason = if self.debug {
            err.to_string()
        } else {
            INTERNAL_ERROR_MESSAGE.to_owned()
        };
        self.close(CloseCode::INTERNAL_ERROR, &reason).await
    }

    /// How long closing waits for the peer's close frame. The default value is 10 seconds.
    pub fn close_handshake_timeout(&self) -> Duration {
        self.config.get_close_timeout()
    }

    /// Changes the close-handshake timeout of this connection.
    pub fn set_close_handshake_timeout(&mut self, timeout: Duration) {
        self.config = self.config.close_timeout(timeout);
        match get_mut(&mut self.halves) {
            Halves::Whole(ws) => ws.set_close_timeout(timeout),
            Halves::Split { handle, .. } => handle.set_close_timeout(timeout),
            Halves::Moving => {}
        }
    }

    /// Whether a closing method ran, or the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed || self.state() == State::Closed
    }

    /// The protocol state.
    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// The subprotocol the handshake selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Whether permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Whether reads and writes go straight to the `TcpStream` (HTTP/1.1 without TLS, served
    /// by [`serve`](crate::serve) or a plain hyper server), rather than through hyper's boxed
    /// upgraded I/O (TLS, HTTP/2 streams, servers that wrap the socket, as `axum::serve`
    /// does).
    pub fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// The connection's settings.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// Sets the ping handler, as [`WebSocket::set_ping_handler`]; before
    /// [`split`](Self::split) (after it, set it on the reader).
    pub fn set_ping_handler(&mut self, handler: Option<PingHandler>) {
        if let Some(side) = self.reader() {
            on_side!(side, s => s.set_ping_handler(handler));
        }
    }

    /// Sets the pong handler, as [`WebSocket::set_pong_handler`].
    pub fn set_pong_handler(&mut self, handler: Option<PongHandler>) {
        if let Some(side) = self.reader() {
            on_side!(side, s => s.set_pong_handler(handler));
        }
    }

    /// Sets the close handler, as [`WebSocket::set_close_handler`].
    pub fn set_close_handler(&mut self, handler: Option<CloseHandler>) {
        if let Some(side) = self.reader() {
            on_side!(side, s => s.set_close_handler(handler));
        }
    }
}

impl futures_core::Stream for Conn {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl futures_sink::Sink<Message> for Conn {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        on_side!(self.get_mut().writer()?, s => Pin::new(s).poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        on_side!(self.get_mut().writer()?, s => Pin::new(s).start_send(message))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        on_side!(self.get_mut().writer()?, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        on_side!(self.get_mut().writer()?, s => Pin::new(s).poll_close(cx))
    }
}
