//! [`Conn`]: the connection a controller serves, with Goyave's closing methods.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use socketry::{
    CloseCode, CloseHandler, ControlHandle, Error, JoinedMessages, Message, MessageReader,
    MessageWriter, OpCode, PingHandler, PongHandler, PreparedMessage, State, WebSocket,
    WebSocketConfig, WebSocketReader, WebSocketWriter, upgrade::Upgraded,
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
/// [`ControlHandle`]s. Graceful shutdown ([`Shutdown`](crate::Shutdown)) closes the connection
/// from outside with 1001 "Going Away", so every way of reading sees it end, split or not; and
/// the connection is closed when `serve` returns, whoever holds its halves.
#[derive(Debug)]
pub struct Conn {
    /// The reader half, until the controller takes it ([`split`](Self::split)).
    reader: Option<ConnReader>,
    /// The writer half, until the controller takes it ([`split`](Self::split)) or gives it to
    /// a hub (`attach`).
    writer: Option<ConnWriter>,
    handle: ControlHandle,
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

impl Conn {
    pub(crate) fn new(ws: WebSocket<Upgraded>, debug: bool) -> Self {
        let config = *ws.config();
        let protocol = ws.protocol().map(str::to_owned);
        let compressed = ws.compression().is_some();
        let tcp = ws.get_ref().is_tcp();
        let (reader, writer) = ws.split();
        let handle = writer.handle();
        Self {
            reader: Some(reader),
            writer: Some(writer),
            handle,
            config,
            protocol,
            compressed,
            tcp,
            debug,
            closed: false,
            #[cfg(feature = "hub")]
            hub_writer: None,
        }
    }

    fn reader(&mut self) -> Option<&mut ConnReader> {
        self.reader.as_mut()
    }

    fn writer(&mut self) -> Result<&mut ConnWriter, Error> {
        self.writer.as_mut().ok_or(Error::AlreadyClosed)
    }

    /// Receives the next message, as [`WebSocket::recv`]: `None` once the connection closed
    /// (after the peer's close, which is handed out first, or after a graceful shutdown).
    /// `None` at once after [`split`](Self::split).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocket::recv`]: in a `select!` loop, a close that started
    /// (a shutdown, say) goes on with the next call.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.reader()?.recv().await
    }

    /// Sends a message and waits until the transport took it, as [`WebSocket::send`].
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`]; [`Error::AlreadyClosed`] after [`split`](Self::split) or once
    /// the close started (a send after a shutdown began is a normal end for the controller:
    /// returning that error is not logged as a failure).
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.writer()?.send(message).await
    }

    /// Queues a message, waiting only for room, as [`WebSocket::feed`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn feed(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.writer()?.feed(message).await
    }

    /// Writes everything queued, as [`WebSocket::flush`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.writer()?.flush().await
    }

    /// Sends a [`PreparedMessage`] (framed once for many connections).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.writer()?.send_prepared(message).await
    }

    /// Waits for the next data message and reads it frame by frame, as
    /// [`WebSocket::next_reader`]. `None` once the connection closed.
    pub async fn next_reader(&mut self) -> Option<Result<MessageReader<'_, Upgraded>, Error>> {
        self.reader()?.next_reader().await
    }

    /// Reads consecutive messages as one byte stream, as [`WebSocket::join_messages`].
    /// `None` after [`split`](Self::split).
    pub fn join_messages(
        &mut self,
        terminator: impl Into<bytes::Bytes>,
    ) -> Option<JoinedMessages<'_, Upgraded>> {
        Some(self.reader()?.join_messages(terminator))
    }

    /// Writes one message as fragments, as [`WebSocket::message_writer`].
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] after [`split`](Self::split).
    pub fn message_writer(&mut self, kind: OpCode) -> Result<MessageWriter<'_, Upgraded>, Error> {
        Ok(self.writer()?.message_writer(kind))
    }

    /// Receives a JSON message, as [`WebSocket::recv_json`].
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, Error>> {
        self.reader()?.recv_json().await
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
        self.writer()?.send_json(value).await
    }

    /// Takes the connection's halves, to read in one task and write from another (the
    /// canonical axum pattern: a sender task fed by a channel). `None` if they were taken.
    ///
    /// The halves still see graceful shutdown (the close comes from outside and the reader
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
        if self.reader.is_none() || self.writer.is_none() {
            return None;
        }
        self.reader.take().zip(self.writer.take())
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
        let writer = self.writer.take().ok_or(Error::AlreadyClosed)?;
        let member = hub.attach(writer, info);
        self.hub_writer = Some(member.writer());
        Ok(member)
    }

    /// A handle that sends pings and the close frame from any task.
    pub fn handle(&self) -> ControlHandle {
        self.handle.clone()
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
            return self.handle.start_close(code, reason);
        }
        let limit = self.config.get_close_timeout() + Duration::from_secs(1);
        #[cfg(feature = "hub")]
        if let Some(writer) = &self.hub_writer {
            // What the hub queued for this connection goes out before the close frame.
            writer.finish(limit).await;
        }
        self.handle.start_close(code, reason)?;
        self.closed = true;
        match self.reader.as_mut() {
            // Not split: the reader is ours; read the peer's answer here.
            Some(reader) => {
                let drain = async { while reader.recv().await.is_some() {} };
                let _ = tokio::time::timeout(limit, drain).await;
            }
            // Split: the halves' reader completes it, or, if it was dropped, `closed` does.
            // Bounded in case the reader lives on but is not polled.
            None => {
                let _ = tokio::time::timeout(limit, self.handle.closed()).await;
            }
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
        self.handle.set_close_timeout(timeout);
    }

    /// Whether a closing method ran, or the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed || self.handle.state() == State::Closed
    }

    /// The protocol state.
    pub fn state(&self) -> State {
        self.handle.state()
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
        if let Some(reader) = self.reader() {
            reader.set_ping_handler(handler);
        }
    }

    /// Sets the pong handler, as [`WebSocket::set_pong_handler`].
    pub fn set_pong_handler(&mut self, handler: Option<PongHandler>) {
        if let Some(reader) = self.reader() {
            reader.set_pong_handler(handler);
        }
    }

    /// Sets the close handler, as [`WebSocket::set_close_handler`].
    pub fn set_close_handler(&mut self, handler: Option<CloseHandler>) {
        if let Some(reader) = self.reader() {
            reader.set_close_handler(handler);
        }
    }
}

impl futures_core::Stream for Conn {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().reader() {
            Some(reader) => Pin::new(reader).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

impl futures_sink::Sink<Message> for Conn {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(self.get_mut().writer()?).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        Pin::new(self.get_mut().writer()?).start_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(self.get_mut().writer()?).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(self.get_mut().writer()?).poll_close(cx)
    }
}
