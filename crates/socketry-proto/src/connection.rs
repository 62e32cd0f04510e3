//! [`Connection`]: the RFC 6455 state machine, bytes in and events and bytes out.
//!
//! The connection owns a read buffer the I/O layer fills ([`Connection::read_buffer`] or
//! [`Connection::receive_data`]) and an [`Outgoing`] queue it drains
//! ([`Connection::outgoing`]). After bytes arrive, call [`Connection::next_message`] until it
//! returns `Ok(None)`; after every call that may queue bytes (receiving a ping or a close, a
//! send, an error), write out what [`Connection::outgoing`] holds.

use std::fmt;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    close::{CloseCode, CloseFrame},
    error::{Error, ProtocolError},
    extensions::deflate::Deflate,
    frame::{Decoder, DecoderConfig, Frame, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, RSV1},
    message::Message,
    outgoing::Outgoing,
    prepared::PreparedMessage,
    role::Role,
    utf8::Utf8Validator,
    utf8_bytes::Utf8Bytes,
};

/// The default limit on a message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// The default limit on a frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// Limits and options of a connection.
///
/// # Examples
///
/// ```
/// use socketry_proto::Config;
///
/// let config = Config::default().max_message_size(Some(1 << 20));
/// assert_eq!(config.get_max_message_size(), Some(1 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    max_message_size: Option<usize>,
    max_frame_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
            max_frame_size: Some(DEFAULT_MAX_FRAME_SIZE),
        }
    }
}

impl Config {
    /// The largest message accepted, in bytes, or `None` for no limit. A larger one fails the
    /// connection with 1009. The default value is 64 MiB.
    #[must_use]
    pub fn max_message_size(mut self, max: Option<usize>) -> Self {
        self.max_message_size = max;
        self
    }

    /// The largest frame payload accepted, in bytes, or `None` for no limit. A larger one fails
    /// the connection with 1009. The default value is 16 MiB.
    #[must_use]
    pub fn max_frame_size(mut self, max: Option<usize>) -> Self {
        self.max_frame_size = max;
        self
    }

    /// The message limit.
    pub fn get_max_message_size(&self) -> Option<usize> {
        self.max_message_size
    }

    /// The frame limit.
    pub fn get_max_frame_size(&self) -> Option<usize> {
        self.max_frame_size
    }
}

/// Where the connection is in its life (RFC 6455 §4, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Both close frames were exchanged, or the connection failed: only the transport remains
    /// to be closed.
    Closed,
}

/// A data message being received.
#[derive(Debug)]
struct InProgress {
    /// `Text` or `Binary`.
    kind: OpCode,
    /// Payload bytes received so far, for the message limit.
    size: u64,
    /// The payload so far when the message is read whole; `None` when it is handed out
    /// fragment by fragment.
    data: Option<BytesMut>,
    /// The reader gave up on this message: its remaining frames are dropped.
    discard: bool,
    /// The first frame had RSV1: the payload is deflated (RFC 7692).
    compressed: bool,
}

/// How received data messages are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Fragments,
}

/// One data frame of a message that is read fragment by fragment
/// ([`Connection::next_fragment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The message's type: [`OpCode::Text`] or [`OpCode::Binary`].
    pub kind: OpCode,
    /// Whether this is the first fragment of its message.
    pub first: bool,
    /// Whether this is the last fragment of its message.
    pub fin: bool,
    /// The payload. For text, the message's bytes so far are a valid UTF-8 prefix; a code
    /// point may be split between fragments.
    pub payload: Bytes,
}

/// What [`Connection::next_fragment`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A ping, pong or close.
    Control(Message),
    /// A frame of a data message.
    Fragment(Fragment),
}

/// Decides the pong for a ping: `Some(payload)` to answer, `None` not to.
pub type PingHandler = Box<dyn FnMut(&Bytes) -> Option<Bytes> + Send>;
/// Sees every pong.
pub type PongHandler = Box<dyn FnMut(&Bytes) + Send>;
/// Decides the reply to the peer's close frame (`None`: a close without status).
pub type CloseHandler = Box<dyn FnMut(Option<&CloseFrame>) -> Option<CloseFrame> + Send>;

/// The sans-I/O WebSocket connection for one role.
///
/// # Examples
///
/// A server receives a masked ping and answers it with a pong:
///
/// ```
/// use socketry_proto::{Config, Connection, Message, Role};
///
/// let mut server = Connection::new(Role::Server, Config::default());
/// server.receive_data(&[0x89, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
/// let msg = server.next_message().unwrap().unwrap();
/// assert_eq!(msg, Message::Ping("hi".into()));
/// assert_eq!(server.outgoing().chunk(), b"\x8a\x02hi"); // the pong, queued
/// ```
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    read_buf: BytesMut,
    decoder: Decoder,
    message: Option<InProgress>,
    utf8: Utf8Validator,
    /// Payload bytes of the frame in progress already fed to `utf8`.
    utf8_fed: usize,
    out: Outgoing,
    /// The error that failed the connection, returned once.
    failure: Option<ProtocolError>,
    /// Only clients mask; a CSPRNG because RFC 6455 §5.3 wants unpredictable keys.
    mask_rng: Option<Box<StdRng>>,
    ping_handler: Option<PingHandler>,
    pong_handler: Option<PongHandler>,
    close_handler: Option<CloseHandler>,
    deflate: Option<Deflate>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("config", &self.config)
            .field("buffered", &self.read_buf.len())
            .field("queued", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection in the open state, as after a successful handshake.
    pub fn new(role: Role, config: Config) -> Self {
        Self {
            role,
            config,
            state: State::Open,
            read_buf: BytesMut::new(),
            decoder: Decoder::with_config(DecoderConfig {
                role,
                max_frame_size: config.max_frame_size,
                allowed_rsv: 0,
            }),
            message: None,
            utf8: Utf8Validator::default(),
            utf8_fed: 0,
            out: Outgoing::default(),
            failure: None,
            mask_rng: (role == Role::Client).then(|| Box::new(StdRng::from_os_rng())),
            ping_handler: None,
            pong_handler: None,
            close_handler: None,
            deflate: None,
        }
    }

    /// Turns permessage-deflate on with the codec of the negotiated parameters (or off):
    /// received messages with RSV1 are inflated, and sent messages compressed as the codec
    /// decides. Call it right after the handshake.
    pub fn set_deflate(&mut self, deflate: Option<Deflate>) {
        self.decoder
            .set_allowed_rsv(if deflate.is_some() { RSV1 } else { 0 });
        self.deflate = deflate;
    }

    /// The permessage-deflate codec, if negotiated: to turn compression of sent messages off
    /// and on ([`Deflate::set_enabled`], gorilla's `EnableWriteCompression`).
    pub fn deflate_mut(&mut self) -> Option<&mut Deflate> {
        self.deflate.as_mut()
    }

    /// The permessage-deflate codec, if negotiated.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.as_ref()
    }

    /// Replaces the ping handler. The default answers every ping with a pong carrying the same
    /// payload (gorilla's default); the handler returns the pong payload, or `None` to send
    /// none. Pings are handed out by [`next_message`](Self::next_message) either way.
    pub fn set_ping_handler(&mut self, handler: Option<PingHandler>) {
        self.ping_handler = handler;
    }

    /// Sets a handler that sees every pong (the default does nothing).
    pub fn set_pong_handler(&mut self, handler: Option<PongHandler>) {
        self.pong_handler = handler;
    }

    /// Replaces the close handler, which chooses the reply to the peer's close frame. The
    /// default echoes the peer's code without a reason (gorilla's default).
    pub fn set_close_handler(&mut self, handler: Option<CloseHandler>) {
        self.close_handler = handler;
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the limits; they apply from the next frame.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
        self.decoder.set_max_frame_size(config.max_frame_size);
    }

    // ----- receiving -----

    /// The buffer received bytes go into. The I/O layer may read straight into it (then call
    /// [`next_message`](Self::next_message)); it must only append.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.read_buf
    }

    /// Appends received bytes; then call [`next_message`](Self::next_message).
    pub fn receive_data(&mut self, data: &[u8]) {
        self.read_buf.extend_from_slice(data);
    }

    /// The next complete message from the received bytes, or `Ok(None)` if more bytes are
    /// needed (or the connection is closed).
    ///
    /// Pings are answered and a close is replied to here: check
    /// [`outgoing`](Self::outgoing) after every call. Every message is still handed back, so
    /// the application sees pings, pongs and the peer's close. If a message was being read
    /// with [`next_fragment`](Self::next_fragment), its remaining frames are dropped.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the peer breaks the protocol. A close frame with the error's
    /// [`close_code`](ProtocolError::close_code) is then queued, the state becomes
    /// [`State::Closed`], and later calls return `Ok(None)`.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        Ok(self
            .next_incoming(Mode::Whole)?
            .map(|incoming| match incoming {
                Incoming::Control(message) => message,
                // In `Mode::Whole` a data message comes back as one fragment, first and last.
                Incoming::Fragment(fragment) => fragment.into_message(),
            }))
    }

    /// Like [`next_message`](Self::next_message), but hands out data messages frame by frame,
    /// without assembling them. Limits and UTF-8 validation apply as for whole messages.
    ///
    /// # Errors
    ///
    /// As [`next_message`](Self::next_message).
    pub fn next_fragment(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        self.next_incoming(Mode::Fragments)
    }

    /// Drops the rest of the message being read fragment by fragment, if any: its remaining
    /// frames are discarded as they arrive.
    pub fn discard_message(&mut self) {
        if let Some(message) = &mut self.message {
            message.discard = true;
            message.data = None;
        }
    }

    fn next_incoming(&mut self, mode: Mode) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            if self.state == State::Closed {
                return match self.failure.take() {
                    Some(err) => Err(err),
                    None => Ok(None),
                };
            }
            if self.read_buf.is_empty() {
                // Nothing to decode, and a frame in progress (checked when its bytes came) has
                // nothing new to check: the answer is "need more", without the decoder.
                return Ok(None);
            }
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(frame)) => match self.on_frame(frame, mode) {
                    Ok(Some(incoming)) => return Ok(Some(incoming)),
                    Ok(None) => {}
                    Err(err) => self.fail_with(err),
                },
                Ok(None) => match self.check_partial_frame() {
                    Ok(()) => return Ok(None),
                    Err(err) => self.fail_with(err),
                },
                Err(err) => self.fail_with(err),
            }
        }
    }

    /// How many more bytes the frame in progress needs, to size the next read; 0 if unknown.
    pub fn bytes_wanted(&self) -> usize {
        match self.decoder.partial_payload(&self.read_buf) {
            Some((header, arrived)) => (header.payload_len as usize).saturating_sub(arrived.len()),
            None => 0,
        }
    }

    /// Checks the frame whose payload is still arriving, so that a too-large message or
    /// invalid text fails the connection before the frame ends (RFC 6455 §8.1 "fail fast").
    fn check_partial_frame(&mut self) -> Result<(), ProtocolError> {
        let Some((header, arrived)) = self.decoder.partial_payload(&self.read_buf) else {
            return Ok(());
        };
        let header = *header;
        if header.opcode.is_control() {
            return Ok(());
        }
        self.check_data_header(&header)?;
        let compressed = match header.opcode {
            OpCode::Continuation => self.message.as_ref().is_some_and(|m| m.compressed),
            _ => header.rsv & RSV1 != 0,
        };
        // Compressed text is checked once inflated, frame by frame.
        if !compressed && self.is_text(&header) && arrived.len() > self.utf8_fed {
            self.utf8.feed(&arrived[self.utf8_fed..])?;
            self.utf8_fed = arrived.len();
        }
        Ok(())
    }

    fn is_text(&self, header: &FrameHeader) -> bool {
        match header.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self
                .message
                .as_ref()
                .is_some_and(|m| m.kind == OpCode::Text),
            _ => false,
        }
    }

    /// Fragmentation order (RFC 6455 §5.4) and the message limit, from a data frame's header.
    fn check_data_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let received = match (header.opcode, &self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            // The limit counts inflated bytes; `Deflate::decompress` enforces it.
            (OpCode::Continuation, Some(message)) if message.compressed => return Ok(()),
            (OpCode::Continuation, Some(message)) => message.size,
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (_, None) if header.rsv & RSV1 != 0 => return Ok(()),
            (_, None) => 0,
        };
        let size = received + header.payload_len;
        match self.config.max_message_size {
            Some(max) if size > max as u64 => Err(ProtocolError::MessageTooBig { size, max }),
            _ => Ok(()),
        }
    }

    fn on_frame(&mut self, frame: Frame, mode: Mode) -> Result<Option<Incoming>, ProtocolError> {
        if frame.opcode.is_control() && frame.rsv & RSV1 != 0 {
            return Err(ProtocolError::MisplacedCompressedBit);
        }
        let control = match frame.opcode {
            OpCode::Ping => {
                let pong = match &mut self.ping_handler {
                    Some(handler) => handler(&frame.payload),
                    None => Some(frame.payload.clone()),
                };
                let allowed = |p: &Bytes| p.len() <= MAX_CONTROL_PAYLOAD;
                if let Some(pong) = pong.filter(allowed).filter(|_| self.state == State::Open) {
                    self.queue_frame(OpCode::Pong, pong);
                }
                Message::Ping(frame.payload)
            }
            OpCode::Pong => {
                if let Some(handler) = &mut self.pong_handler {
                    handler(&frame.payload);
                }
                Message::Pong(frame.payload)
            }
            OpCode::Close => {
                let close = CloseFrame::parse(&frame.payload)?;
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: answer with a close frame; by default echo the code.
                    let reply = match &mut self.close_handler {
                        Some(handler) => handler(close.as_ref()),
                        None => close.as_ref().map(|c| CloseFrame::new(c.code, "")),
                    };
                    let reply = reply.filter(|r| r.code.is_valid());
                    self.queue_close(reply.as_ref());
                }
                self.state = State::Closed;
                self.message = None;
                Message::Close(close)
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                return self.on_data_frame(frame, mode);
            }
        };
        Ok(Some(Incoming::Control(control)))
    }

    fn on_data_frame(
        &mut self,
        frame: Frame,
        mode: Mode,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let header = FrameHeader {
            fin: frame.fin,
            rsv: frame.rsv,
            opcode: frame.opcode,
            mask: None,
            payload_len: frame.payload.len() as u64,
        };
        self.check_data_header(&header)?;
        let first = frame.opcode != OpCode::Continuation;
        let compressed_bit = frame.rsv & RSV1 != 0;
        if !first && compressed_bit {
            return Err(ProtocolError::MisplacedCompressedBit);
        }
        let message = self.message.get_or_insert(InProgress {
            kind: frame.opcode,
            size: 0,
            data: None,
            discard: false,
            compressed: compressed_bit,
        });
        let payload = match (&mut self.deflate, message.compressed) {
            (Some(deflate), true) => {
                let max = self
                    .config
                    .max_message_size
                    .map(|max| max.saturating_sub(message.size as usize));
                let mut inflated = BytesMut::new();
                deflate.decompress(&frame.payload, frame.fin, &mut inflated, max)?;
                inflated.freeze()
            }
            _ => frame.payload,
        };
        if message.kind == OpCode::Text {
            // Bytes of an uncompressed frame may have been checked as they arrived.
            let fed = if message.compressed { 0 } else { self.utf8_fed };
            self.utf8.feed(&payload[fed..])?;
            if frame.fin {
                self.utf8.finish()?;
            }
        }
        self.utf8_fed = 0;
        message.size += payload.len() as u64;
        let kind = message.kind;
        let fragment = |payload: Bytes, first: bool| {
            Some(Incoming::Fragment(Fragment {
                kind,
                first,
                fin: frame.fin,
                payload,
            }))
        };
        let out = match mode {
            _ if message.discard => None,
            Mode::Whole if first && frame.fin => fragment(payload, true),
            Mode::Whole => match &mut message.data {
                Some(data) => {
                    data.extend_from_slice(&payload);
                    frame
                        .fin
                        .then(|| data.split().freeze())
                        .and_then(|all| fragment(all, true))
                }
                None if first => {
                    let mut data = BytesMut::with_capacity(payload.len() * 2);
                    data.extend_from_slice(&payload);
                    message.data = Some(data);
                    None
                }
                // The message was being streamed and the reader moved on: drop the rest.
                None => {
                    message.discard = true;
                    None
                }
            },
            Mode::Fragments => match message.data.take() {
                // A message started whole (a cancelled read) continues as fragments.
                Some(mut data) => {
                    data.extend_from_slice(&payload);
                    fragment(data.freeze(), true)
                }
                None => fragment(payload, first),
            },
        };
        if frame.fin {
            self.message = None;
        }
        Ok(out)
    }

    /// Fails the connection: queue the close frame the error calls for, unless one was sent.
    fn fail_with(&mut self, err: ProtocolError) {
        if self.state == State::Open {
            let frame = CloseFrame::new(err.close_code(), err.close_reason());
            self.queue_close(Some(&frame));
        }
        self.state = State::Closed;
        self.message = None;
        self.read_buf.clear();
        self.failure = Some(err);
    }

    /// Fails the connection for a reason of the application's (a keepalive timeout, say):
    /// queues a close frame with `code` and `reason` unless one was sent, and closes.
    pub fn fail(&mut self, code: CloseCode, reason: &str) {
        if self.state == State::Open {
            self.queue_close(Some(&CloseFrame::new(code, reason)));
        }
        self.state = State::Closed;
        self.message = None;
    }

    // ----- sending -----

    /// The bytes queued for the peer.
    pub fn outgoing(&self) -> &Outgoing {
        &self.out
    }

    /// The bytes queued for the peer, to advance after a write.
    pub fn outgoing_mut(&mut self) -> &mut Outgoing {
        &mut self.out
    }

    /// Queues a message.
    ///
    /// A close message starts the closing handshake ([`send_close`](Self::send_close)).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] for a data message or ping after our close frame was sent;
    /// [`Error::InvalidMessage`] for a control payload over 125 bytes or an invalid close code.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(text) => self.send_data(OpCode::Text, text.into_bytes()),
            Message::Binary(data) => self.send_data(OpCode::Binary, data),
            Message::Ping(data) => self.send_control(OpCode::Ping, data),
            Message::Pong(data) => self.send_control(OpCode::Pong, data),
            Message::Close(frame) => self.send_close(frame.as_ref()),
        }
    }

    /// Queues one frame of a data message: `opcode` is `Text` or `Binary` for the first frame
    /// and `Continuation` for the others; `fin` ends the message. The caller keeps the order
    /// right (RFC 6455 §5.4) and, for text, UTF-8 valid as a whole.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyClosed`] after our close frame was sent; [`Error::InvalidMessage`] for
    /// a control opcode.
    pub fn send_frame(&mut self, opcode: OpCode, payload: Bytes, fin: bool) -> Result<(), Error> {
        if opcode.is_control() {
            return Err(Error::InvalidMessage("send_frame takes data opcodes"));
        }
        self.ensure_open()?;
        self.queue_frame_fin(opcode, payload, fin);
        Ok(())
    }

    /// Queues a [`PreparedMessage`]: a server sends its frame bytes without encoding or
    /// copying them; a client masks a fresh copy.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        if self.role == Role::Client || matches!(prepared.message(), Message::Close(_)) {
            return self.send(prepared.message().clone());
        }
        self.ensure_open()?;
        let frame = match &self.deflate {
            Some(deflate) if deflate.should_compress(prepared.message().len()) => {
                if !deflate.is_stateless_sender() {
                    // With context takeover the compressor's window must see every message
                    // this connection sends, so it compresses this one itself.
                    return self.send(prepared.message().clone());
                }
                prepared.compressed_frame(deflate.send_window_bits(), deflate.level())
            }
            _ => prepared.server_frame().clone(),
        };
        self.out.push_encoded(frame);
        Ok(())
    }

    fn send_data(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.ensure_open()?;
        match &mut self.deflate {
            Some(deflate) if deflate.should_compress(payload.len()) => {
                let compressed = deflate.compress(&payload);
                self.queue_frame_rsv(opcode, compressed, true, RSV1);
            }
            _ => self.queue_frame(opcode, payload),
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidMessage("control payload over 125 bytes"));
        }
        self.ensure_open()?;
        self.queue_frame(opcode, payload);
        Ok(())
    }

    /// Starts the closing handshake by queuing a close frame (`None`: no status code).
    ///
    /// Idempotent: once a close frame was sent, this does nothing. After it, keep reading until
    /// [`next_message`](Self::next_message) yields the peer's close (or a timeout passes), then
    /// close the transport.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent (1005, 1006, 1015, reserved).
    pub fn send_close(&mut self, frame: Option<&CloseFrame>) -> Result<(), Error> {
        if frame.is_some_and(|f| !f.code.is_valid()) {
            return Err(Error::InvalidMessage("close code may not be sent"));
        }
        if self.state == State::Open {
            self.queue_close(frame);
            self.state = State::CloseSent;
        }
        Ok(())
    }

    fn ensure_open(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(Error::AlreadyClosed),
        }
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = Vec::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        self.queue_frame(OpCode::Close, Bytes::from(payload));
    }

    fn queue_frame(&mut self, opcode: OpCode, payload: Bytes) {
        self.queue_frame_fin(opcode, payload, true);
    }

    fn queue_frame_fin(&mut self, opcode: OpCode, payload: Bytes, fin: bool) {
        self.queue_frame_rsv(opcode, payload, fin, 0);
    }

    fn queue_frame_rsv(&mut self, opcode: OpCode, payload: Bytes, fin: bool, rsv: u8) {
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask: self.mask_rng.as_mut().map(|rng| rng.random()),
            payload_len: payload.len() as u64,
        };
        self.out.push_frame(&header, payload);
    }
}

#[cfg(test)]
mod tests;

impl Fragment {
    /// A whole message from a fragment that is both first and last.
    fn into_message(self) -> Message {
        match self.kind {
            OpCode::Text => Message::Text(Utf8Bytes::from_validated(self.payload)),
            _ => Message::Binary(self.payload),
        }
    }
}
