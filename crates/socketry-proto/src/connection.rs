//! [`Connection`]: the RFC 6455 state machine, bytes in and events and bytes out.
//!
//! The connection owns a read buffer the I/O layer appends to ([`Connection::read_into`] or
//! [`Connection::receive_data`]) and an [`Outgoing`] queue it drains
//! ([`Connection::outgoing`]). After bytes arrive, call [`Connection::next_message`] until it
//! returns `Ok(None)`; after every call that may queue bytes (receiving a ping or a close, a
//! send, an error, a timeout), write out what [`Connection::outgoing`] holds. Its deadlines
//! (close timeout, keepalive, read deadline) come from [`Connection::poll_timeout`]; call
//! [`Connection::handle_timeout`] when one passes.

use std::{
    fmt,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use rand::{SeedableRng, rngs::StdRng};

use crate::{
    close::{CloseCode, CloseFrame},
    error::{Error, ProtocolError},
    extensions::deflate::{CheckedOut, Deflate},
    frame::{Decoder, DecoderConfig, Frame, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, RSV1},
    message::{Message, MessageRef},
    outgoing::Outgoing,
    prepared::PreparedMessage,
    role::Role,
    timers::{Deadline, Expired, Timers},
    utf8::Utf8Validator,
    utf8_bytes::Utf8Bytes,
};

/// The default limit on a message: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// The default limit on a frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
const UNFINISHED: Error =
    Error::InvalidMessage("a data message while a fragmented message is unfinished");

/// The most bytes one call inflates: a 16 MiB frame that inflates to 64 MiB is handed out
/// over many calls, each a fraction of a millisecond.
const INFLATE_BUDGET: usize = 256 * 1024;

/// A compressed frame being inflated.
#[derive(Debug)]
struct Inflating {
    /// The part of its payload not inflated yet.
    input: Bytes,
    fin: bool,
    first: bool,
    /// What it inflated to so far.
    out: BytesMut,
}

/// Above this many queued bytes pongs coalesce, by default.
const DEFAULT_QUEUE_LIMIT: usize = 128 * 1024;

/// The default close timeout: 10 seconds.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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
    close_timeout: Duration,
    keepalive: Option<(Duration, Duration)>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
            max_frame_size: Some(DEFAULT_MAX_FRAME_SIZE),
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            keepalive: None,
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

    /// How long the closing handshake may take, from our close frame, the peer's or a
    /// failure, before [`Connection::handle_timeout`] gives up on the peer. The default value
    /// is 10 seconds.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Keepalive as `(interval, timeout)`: a ping every `interval`, and the connection fails
    /// with 1011 "keepalive timeout" when a ping's pong has not come within `timeout`. The
    /// default value is `None`: no keepalive.
    #[must_use]
    pub fn keepalive(mut self, keepalive: Option<(Duration, Duration)>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// The close timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// The keepalive interval and timeout.
    pub fn get_keepalive(&self) -> Option<(Duration, Duration)> {
        self.keepalive
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
    /// Pings are answered here (else the application answers with `reply_to_ping`).
    auto_pong: bool,
    /// The peer's close is answered here (else the application answers with
    /// `reply_to_close`).
    auto_close_reply: bool,
    /// The peer's close came and the application owes the reply.
    close_reply_owed: bool,
    /// A message sent frame by frame is unfinished (its last frame is still to come).
    sending_fragmented: bool,
    /// A compressed frame being inflated a slice at a time.
    /// Boxed: rare, and an idle connection should not carry its room.
    inflating: Option<Box<Inflating>>,
    deflate: Option<Deflate>,
    timers: Timers,
    /// See [`Connection::set_write_buffer_source`].
    write_buffer_source: Option<fn() -> BytesMut>,
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

/// A small whole text or binary frame at the head of the read buffer (see
/// `Connection::small_frame`).
#[derive(Debug, Clone, Copy)]
struct SmallFrame {
    kind: OpCode,
    header_len: usize,
    len: usize,
    key: Option<[u8; 4]>,
}

impl SmallFrame {
    /// Where the frame ends in the read buffer.
    #[inline(always)]
    fn end(&self) -> usize {
        self.header_len + self.len
    }

    /// Unmasks the payload in place; a second call masks it again, as it came.
    #[inline(always)]
    fn unmask(&self, buf: &mut BytesMut) {
        if let Some(key) = self.key {
            crate::mask::apply_mask_short(&mut buf[self.header_len..self.end()], key);
        }
    }

    /// Unmasks the payload in place and, for text, validates it: `false` (the payload masked
    /// again, as it came) when it is not UTF-8, for the decoder's path to fail.
    #[inline(always)]
    fn open(&self, buf: &mut BytesMut) -> bool {
        self.unmask(buf);
        if self.kind == OpCode::Text
            && simdutf8::basic::from_utf8(&buf[self.header_len..self.end()]).is_err()
        {
            self.unmask(buf);
            return false;
        }
        true
    }
}

/// Consumes a lent message's frame from the read buffer when the borrow ends, however it
/// ends: a closure that unwinds cannot leave it to be handed out again.
struct Consumed<'a> {
    buf: &'a mut BytesMut,
    len: usize,
}

impl Drop for Consumed<'_> {
    #[inline]
    fn drop(&mut self) {
        // The last message of what a read brought (one at a time, every message): emptied
        // rather than advanced, which is cheaper and leaves the start where it is, so the
        // next read has the room behind it without a move.
        if self.len == self.buf.len() {
            self.buf.clear();
        } else {
            bytes::Buf::advance(self.buf, self.len);
        }
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
            out: Outgoing::with_coalescing_above(DEFAULT_QUEUE_LIMIT),
            failure: None,
            mask_rng: (role == Role::Client).then(|| Box::new(StdRng::from_os_rng())),
            auto_pong: true,
            auto_close_reply: true,
            close_reply_owed: false,
            sending_fragmented: false,
            inflating: None,
            deflate: None,
            timers: Timers::new(config.keepalive.is_some()),
            write_buffer_source: None,
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

    /// Whether pings are answered by the connection itself, with a pong carrying the same
    /// payload (gorilla's default; on by default). Off, the application answers the pings
    /// [`next_message`](Self::next_message) hands out with
    /// [`reply_to_ping`](Self::reply_to_ping). Pings are handed out either way.
    pub fn set_auto_pong(&mut self, enabled: bool) {
        self.auto_pong = enabled;
    }

    /// Whether the peer's close frame is answered by the connection itself, echoing its code
    /// without a reason (gorilla's default; on by default). Off, the application answers the
    /// close [`next_message`](Self::next_message) hands out with
    /// [`reply_to_close`](Self::reply_to_close).
    pub fn set_auto_close_reply(&mut self, enabled: bool) {
        self.auto_close_reply = enabled;
    }

    /// This endpoint's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> State {
        self.state
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the limits and timeouts; the limits apply from the next frame, a new close
    /// timeout to a closing handshake that has not started, a new keepalive from now.
    pub fn set_config(&mut self, config: Config) {
        if config.keepalive != self.config.keepalive {
            self.timers.ping = match config.keepalive {
                Some(_) if self.state == State::Open => Deadline::Due,
                _ => Deadline::Off,
            };
            self.timers.pong = None;
            self.timers.changed = true;
        }
        self.config = config;
        self.decoder.set_max_frame_size(config.max_frame_size);
    }

    // ----- time -----

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called, if
    /// any: the close timeout, the keepalive's next ping or pong deadline, the read deadline.
    /// `now` is the I/O layer's clock; it is called only when a timeout starts (a close was
    /// sent or received, keepalive was turned on).
    ///
    /// Call it after every call that may change the answer (see
    /// [`timeout_changed`](Self::timeout_changed)) and re-arm the timer when the answer moved.
    #[inline]
    pub fn poll_timeout(&mut self, now: impl FnMut() -> Instant) -> Option<Instant> {
        let ping_interval = self.config.keepalive.map(|(interval, _)| interval);
        self.timers
            .next(now, self.config.close_timeout, ping_interval)
    }

    /// Whether the answer of [`poll_timeout`](Self::poll_timeout) may have moved since it was
    /// last called: a task other than the one sleeping on the deadline changed it (by sending
    /// a close, say) and must wake the sleeper.
    #[inline]
    pub fn timeout_changed(&self) -> bool {
        self.timers.changed
    }

    /// Acts on the deadlines that passed by `now`: the close timeout closes the connection;
    /// a keepalive ping is queued, or the connection fails when the pong is late; a passed
    /// read deadline is cleared and reported. Then write out what is queued and call
    /// [`poll_timeout`](Self::poll_timeout) again.
    pub fn handle_timeout(&mut self, now: Instant) -> Expired {
        let mut expired = Expired::default();
        if self.timers.close_passed(now) {
            self.timers.close = Deadline::Off;
            self.close_receiving();
            expired.close = true;
        }
        if let (State::Open, Some((_, timeout))) = (self.state, self.config.keepalive) {
            if self.timers.pong_passed(now) {
                self.fail(CloseCode::INTERNAL_ERROR, "keepalive timeout");
                expired.keepalive = true;
            } else if self.timers.ping_passed(now) {
                // One ping at a time (python-websockets' keepalive): the next is due an
                // interval after its pong.
                self.queue_frame(OpCode::Ping, Bytes::new());
                self.timers.ping = Deadline::Off;
                self.timers.pong = now.checked_add(timeout);
            }
        }
        if self.timers.read_passed(now) {
            self.timers.read = None;
            expired.read = true;
        }
        if self.state != State::Open {
            self.timers.ping = Deadline::Off;
            self.timers.pong = None;
        }
        self.timers.changed = true;
        expired
    }

    /// When the closing handshake gives up, if its timeout started and was turned into an
    /// instant by [`poll_timeout`](Self::poll_timeout).
    pub fn close_deadline(&self) -> Option<Instant> {
        match self.timers.close {
            Deadline::At(at) => Some(at),
            _ => None,
        }
    }

    /// When the closing handshake gives up, if it started: its timeout runs from `now` if no
    /// [`poll_timeout`](Self::poll_timeout) turned it into an instant yet. For a task other
    /// than the one sleeping on `poll_timeout` (a writer held up by a peer that does not
    /// read): [`timeout_changed`](Self::timeout_changed) stays as it was, for that one.
    pub fn close_deadline_from(&mut self, now: impl FnMut() -> Instant) -> Option<Instant> {
        self.timers.close_at(now, self.config.close_timeout)
    }

    /// Sets the read deadline (gorilla's `SetReadDeadline`): once `at` passes,
    /// [`handle_timeout`](Self::handle_timeout) reports it. `None` clears it.
    pub fn set_read_deadline(&mut self, at: Option<Instant>) {
        if self.timers.read != at {
            self.timers.read = at;
            self.timers.changed = true;
        }
    }

    /// Sets the write deadline (gorilla's `SetWriteDeadline`), which the I/O layer's writes
    /// read back with [`write_deadline`](Self::write_deadline); it is not part of
    /// [`poll_timeout`](Self::poll_timeout), since the task that writes sleeps on it.
    pub fn set_write_deadline(&mut self, at: Option<Instant>) {
        self.timers.write = at;
    }

    /// The write deadline.
    #[inline]
    pub fn write_deadline(&self) -> Option<Instant> {
        self.timers.write
    }

    /// The transport ended (end of file, or a failure): nothing more can be received or sent.
    /// The state becomes [`State::Closed`]: call it once what was buffered was handed out.
    pub fn receive_eof(&mut self) {
        if self.state != State::Closed {
            self.close_receiving();
            self.timers.start_close();
        }
        self.inflating = None;
        self.out.drop_pending_pong();
    }

    // ----- receiving -----

    /// Lets `read` append received bytes to the read buffer in place (a transport reads
    /// straight into its spare capacity); then call [`next_message`](Self::next_message).
    ///
    /// The buffer is append-only: bytes already received were unmasked and partly validated
    /// in place, so nothing may change them.
    #[inline]
    pub fn read_into<R>(&mut self, read: impl FnOnce(&mut dyn BufMut) -> R) -> R {
        // `Limit` over `&mut BytesMut` only appends; behind `dyn BufMut` the closure cannot
        // reach the buffer itself.
        let mut append = (&mut self.read_buf).limit(usize::MAX);
        read(&mut append)
    }

    /// The read buffer's length and capacity, to size reads.
    #[inline]
    pub fn read_buffer_len(&self) -> (usize, usize) {
        (self.read_buf.len(), self.read_buf.capacity())
    }

    /// Makes room for at least `additional` more received bytes.
    #[inline]
    pub fn reserve_read(&mut self, additional: usize) {
        self.read_buf.reserve(additional);
    }

    /// Gives the read buffer an allocation (from a buffer pool) if it has none.
    #[inline]
    pub fn set_read_buffer(&mut self, mut buf: BytesMut) {
        if self.read_buf.capacity() == 0 {
            buf.clear();
            self.read_buf = buf;
        }
    }

    /// Takes the read buffer's allocation when it holds no bytes, so an idle connection holds
    /// none.
    #[inline]
    pub fn take_read_buffer(&mut self) -> Option<BytesMut> {
        (self.read_buf.is_empty() && self.read_buf.capacity() > 0)
            .then(|| std::mem::take(&mut self.read_buf))
    }

    /// Moves the bytes of a frame still arriving into a smaller allocation when the read
    /// buffer is mostly empty room (more than four times what it holds, plus `min`), so that a
    /// peer that stalls inside a frame holds about what it sent. Nothing changes for a buffer
    /// that is filling up: one that grows as bytes come is never more than twice as large.
    pub fn compact_read_buffer(&mut self, min: usize) {
        let len = self.read_buf.len();
        if len > 0 && self.read_buf.capacity() > 4 * len + min {
            let mut smaller = BytesMut::with_capacity((2 * len).max(min));
            smaller.extend_from_slice(&self.read_buf);
            self.read_buf = smaller;
        }
    }

    /// Drops received bytes and their buffer, once the transport is closed: the connection
    /// becomes [`State::Closed`] and receives nothing more (bytes of a frame in progress were
    /// unmasked and checked in place; new ones must never be taken for them).
    pub fn discard_received(&mut self) {
        self.read_buf = BytesMut::new();
        self.decoder.reset();
        self.close_receiving();
    }

    /// What every end of receiving shares: no message in progress, no inflation left.
    fn close_receiving(&mut self) {
        self.state = State::Closed;
        self.message = None;
        self.inflating = None;
        self.utf8 = Utf8Validator::default();
        self.utf8_fed = 0;
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
            if self.inflating.is_some() {
                match self.continue_inflating(mode) {
                    Ok(Some(incoming)) => return Ok(Some(incoming)),
                    // One slice per call: the caller may release its locks before the next.
                    Ok(None) if self.inflating.is_some() => return Ok(None),
                    Ok(None) => continue,
                    Err(err) => {
                        self.fail_with(err);
                        continue;
                    }
                }
            }
            if self.read_buf.is_empty() {
                // Nothing to decode, and a frame in progress (checked when its bytes came) has
                // nothing new to check: the answer is "need more", without the decoder.
                return Ok(None);
            }
            if let Some(fragment) = self.take_small_message() {
                return Ok(Some(Incoming::Fragment(fragment)));
            }
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(frame)) => match self.on_frame(frame, mode) {
                    Ok(Some(incoming)) => return Ok(Some(incoming)),
                    // A compressed frame started inflating: one slice per call.
                    Ok(None) if self.inflating.is_some() => return Ok(None),
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

    /// The common receive without the decoder: a whole text or binary message in one frame of
    /// at most 125 bytes, without RSV bits, masked as this role must receive it, with no frame
    /// or message in progress. It accepts only what the decoder's path accepts, and hands it
    /// out the same way (a fragment that is first and last); anything else, invalid text
    /// included, is left to that path, which then fails as it always did.
    #[inline]
    fn take_small_message(&mut self) -> Option<Fragment> {
        let frame = self.small_frame()?;
        if !frame.open(&mut self.read_buf) {
            return None;
        }
        // One split for the whole frame; dropping its header from the `Bytes` is a bump.
        let mut payload = self.read_buf.split_to(frame.end()).freeze();
        bytes::Buf::advance(&mut payload, frame.header_len);
        Some(Fragment {
            kind: frame.kind,
            first: true,
            fin: true,
            payload,
        })
    }

    /// The small whole message at the head of the read buffer that `take_small_message`
    /// would hand out, checked but not unmasked yet; `None` for anything else.
    #[inline(always)]
    fn small_frame(&self) -> Option<SmallFrame> {
        #[cfg(test)]
        if tests::NO_FAST_LANE.get() {
            return None;
        }
        if self.message.is_some() || !self.decoder.is_idle() {
            return None;
        }
        let [b0, b1, ..] = self.read_buf[..] else {
            return None;
        };
        let kind = match b0 {
            0x81 => OpCode::Text,
            0x82 => OpCode::Binary,
            _ => return None,
        };
        let masked = b1 & 0x80 != 0;
        let len = usize::from(b1 & 0x7f);
        if masked != (self.role == Role::Server) || len > 125 {
            return None;
        }
        let header_len = if masked { 6 } else { 2 };
        let limits = [self.config.max_frame_size, self.config.max_message_size];
        if self.read_buf.len() < header_len + len || limits.iter().flatten().any(|&max| len > max) {
            return None;
        }
        let key = masked.then(|| {
            let k = &self.read_buf[2..6];
            [k[0], k[1], k[2], k[3]]
        });
        Some(SmallFrame {
            kind,
            header_len,
            len,
            key,
        })
    }

    /// [`next_message`](Self::next_message)'s answer when it is a small whole message (see
    /// `take_small_message`), without the rest of its work; `None` when it is anything
    /// else, which `next_message` then finds as always. For an I/O layer's fast path: a
    /// message handed out here is exactly the one `next_message` would have handed out.
    #[inline]
    pub fn next_small_message(&mut self) -> Option<Message> {
        if self.state == State::Closed || self.inflating.is_some() {
            return None;
        }
        self.take_small_message().map(Fragment::into_message)
    }

    /// Whether [`with_small_message`](Self::with_small_message) would find a message to lend
    /// (it may still refuse one whose text is not UTF-8, which `next_message` then fails).
    #[inline]
    pub fn has_small_message(&self) -> bool {
        self.state != State::Closed && self.inflating.is_none() && self.small_frame().is_some()
    }

    /// Lends `f` the message [`next_small_message`](Self::next_small_message) would hand out
    /// (a whole text or binary message of at most 125 bytes in one frame, its text valid
    /// UTF-8),
    /// where it lies in the read buffer, with the connection's [`Replies`] to answer it while
    /// the borrow lasts; the message is consumed once `f` returns (or unwinds). Hands `f`
    /// back when that message is not there: receive with
    /// [`next_message`](Self::next_message) then, which finds what is.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_proto::{Config, Connection, MessageRef, Role};
    ///
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// // A masked text frame "hi" (key 0: the payload as it is).
    /// server.receive_data(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    /// let echoed = server.with_small_message(|message, replies| {
    ///     assert_eq!(message, MessageRef::Text("hi"));
    ///     replies.feed(message)
    /// });
    /// assert!(matches!(echoed, Ok(Ok(()))));
    /// assert_eq!(server.outgoing().chunk(), [0x81, 0x02, b'h', b'i']);
    /// ```
    #[inline]
    pub fn with_small_message<R, F>(&mut self, f: F) -> Result<R, F>
    where
        F: FnOnce(MessageRef<'_>, &mut Replies<'_>) -> R,
    {
        if self.state == State::Closed || self.inflating.is_some() {
            return Err(f);
        }
        let Some(frame) = self.small_frame() else {
            return Err(f);
        };
        let mut replies = Replies {
            out: &mut self.out,
            deflate: self.deflate.as_mut(),
            mask_rng: self.mask_rng.as_deref_mut(),
            state: self.state,
            sending_fragmented: self.sending_fragmented,
            buffer_source: self.write_buffer_source,
            source: None,
        };
        let mut consumed = Consumed {
            buf: &mut self.read_buf,
            len: frame.end(),
        };
        frame.unmask(consumed.buf);
        let payload = &consumed.buf[frame.header_len..frame.end()];
        let message = match frame.kind {
            OpCode::Text => match simdutf8::basic::from_utf8(payload) {
                Ok(text) => MessageRef::Text(text),
                Err(_) => {
                    // Left as it came, for `next_message` to fail the connection.
                    frame.unmask(consumed.buf);
                    consumed.len = 0;
                    return Err(f);
                }
            },
            _ => MessageRef::Binary(payload),
        };
        Ok(f(message, &mut replies))
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
                // Nothing after our close frame (RFC 6455 §5.5.1, §1.4: "after sending a
                // Close frame, the endpoint MUST NOT send any further data"); §5.5.2's "unless
                // it already received a Close frame" covers the peer's. As tungstenite does.
                if self.auto_pong && self.state == State::Open {
                    self.queue_pong(frame.payload.clone());
                }
                Message::Ping(frame.payload)
            }
            OpCode::Pong => {
                // Any pong answers keepalive: RFC 6455 §5.5.3 lets a peer answer only the
                // latest ping.
                if self.timers.pong.take().is_some() {
                    self.timers.ping = Deadline::Due;
                    self.timers.changed = true;
                }
                Message::Pong(frame.payload)
            }
            OpCode::Close => {
                let close = CloseFrame::parse(&frame.payload)?;
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: answer with a close frame; by default echo the code.
                    if self.auto_close_reply {
                        let reply = close.as_ref().map(|c| CloseFrame::new(c.code, ""));
                        self.queue_close(reply.as_ref());
                    } else {
                        self.close_reply_owed = true;
                    }
                }
                self.close_receiving();
                self.timers.start_close();
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
        if self.deflate.is_some() && message.compressed {
            self.inflating = Some(Box::new(Inflating {
                input: frame.payload,
                fin: frame.fin,
                first,
                out: BytesMut::new(),
            }));
            return self.continue_inflating(mode);
        }
        if message.kind == OpCode::Text {
            // Bytes of an uncompressed frame may have been checked as they arrived.
            self.utf8.feed(&frame.payload[self.utf8_fed..])?;
        }
        self.finish_data_frame(frame.payload, frame.fin, first, mode)
    }

    /// Inflates the compressed frame in progress by one slice of [`INFLATE_BUDGET`] bytes
    /// (validating text as it comes); `Ok(None)` with [`has_pending_work`] while more remains.
    ///
    /// [`has_pending_work`]: Self::has_pending_work
    fn continue_inflating(&mut self, mode: Mode) -> Result<Option<Incoming>, ProtocolError> {
        let (Some(inflating), Some(deflate), Some(message)) =
            (&mut self.inflating, &mut self.deflate, &self.message)
        else {
            self.inflating = None;
            return Ok(None);
        };
        let max = self
            .config
            .max_message_size
            .map(|max| max.saturating_sub(message.size as usize));
        let before = inflating.out.len();
        let step = deflate.decompress_some(
            &inflating.input,
            inflating.fin,
            &mut inflating.out,
            max,
            INFLATE_BUDGET,
        )?;
        bytes::Buf::advance(&mut inflating.input, step.consumed);
        if message.kind == OpCode::Text {
            // Fail fast: an invalid byte fails the connection before the rest is inflated.
            self.utf8.feed(&inflating.out[before..])?;
        }
        if !step.done {
            return Ok(None);
        }
        let Some(done) = self.inflating.take() else {
            return Ok(None);
        };
        self.finish_data_frame(done.out.freeze(), done.fin, done.first, mode)
    }

    /// Hands out (or assembles) a data frame's payload, checked and inflated.
    fn finish_data_frame(
        &mut self,
        payload: Bytes,
        fin: bool,
        first: bool,
        mode: Mode,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let Some(message) = &mut self.message else {
            return Ok(None);
        };
        if message.kind == OpCode::Text && fin {
            self.utf8.finish()?;
        }
        self.utf8_fed = 0;
        message.size += payload.len() as u64;
        let kind = message.kind;
        let fragment = |payload: Bytes, first: bool| {
            Some(Incoming::Fragment(Fragment {
                kind,
                first,
                fin,
                payload,
            }))
        };
        let out = match mode {
            _ if message.discard => None,
            Mode::Whole if first && fin => fragment(payload, true),
            Mode::Whole => match &mut message.data {
                Some(data) => {
                    data.extend_from_slice(&payload);
                    fin.then(|| data.split().freeze())
                        .and_then(|all| fragment(all, true))
                }
                None if first => {
                    // Room for a few frames, never more than the limit allows.
                    let room = payload.len().saturating_mul(2);
                    let room = self
                        .config
                        .max_message_size
                        .map_or(room, |max| room.min(max));
                    let mut data = BytesMut::with_capacity(room);
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
        if fin {
            self.message = None;
        }
        Ok(out)
    }

    /// Whether [`next_message`](Self::next_message) (or [`next_fragment`](Self::next_fragment))
    /// could hand anything out: bytes are buffered, a frame is being inflated, or the
    /// connection failed and its error is still to be returned. `false` means the answer
    /// would be `Ok(None)` without looking further, so an I/O layer may skip the call.
    #[inline]
    pub fn has_input(&self) -> bool {
        !self.read_buf.is_empty() || self.inflating.is_some() || self.state == State::Closed
    }

    /// Whether a received compressed frame is still being inflated: call
    /// [`next_message`](Self::next_message) again (inflation goes a slice at a time, so that
    /// one call's work stays bounded however much a frame inflates to; the I/O layer may
    /// release its locks between calls).
    pub fn has_pending_work(&self) -> bool {
        self.inflating.is_some() && self.state != State::Closed
    }

    /// Fails the connection: queue the close frame the error calls for, unless one was sent.
    #[cold]
    fn fail_with(&mut self, err: ProtocolError) {
        self.fail(err.close_code(), err.close_reason());
        self.read_buf.clear();
        self.decoder.reset();
        self.failure = Some(err);
    }

    /// Fails the connection for a reason of the application's (a keepalive timeout, say):
    /// queues a close frame with `code` and `reason` unless one was sent, and closes.
    pub fn fail(&mut self, code: CloseCode, reason: &str) {
        if self.state == State::Open || std::mem::take(&mut self.close_reply_owed) {
            self.queue_close(Some(&CloseFrame::new(code, reason)));
        }
        self.close_receiving();
        self.timers.start_close();
    }

    // ----- sending -----

    /// The bytes queued for the peer.
    #[inline]
    pub fn outgoing(&self) -> &Outgoing {
        &self.out
    }

    /// Sets the bound on queued bytes above which pongs coalesce: while more is queued and a
    /// pong waits unwritten, the pong to a newer ping replaces the one waiting behind it (RFC
    /// 6455 §5.5.3 lets an endpoint answer only the latest ping). The I/O layer sets its write
    /// buffer size; the default value is 128 KiB.
    pub fn set_queue_limit(&mut self, bytes: usize) {
        self.out.coalesce_above = bytes;
    }

    /// The bytes queued for the peer, to advance after a write.
    #[inline]
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
            Message::Text(text) => self.replies().send_data(OpCode::Text, text.into_bytes()),
            Message::Binary(data) => self.replies().send_data(OpCode::Binary, data),
            Message::Ping(data) => self.replies().send_control(OpCode::Ping, data),
            Message::Pong(data) => self.replies().send_control(OpCode::Pong, data),
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
        self.replies().ensure_open()?;
        // RFC 6455 §5.4: one message's frames in order, no other data frame between them.
        match (opcode, self.sending_fragmented) {
            (OpCode::Continuation, false) => {
                return Err(Error::InvalidMessage(
                    "continuation frame without an unfinished message",
                ));
            }
            (OpCode::Text | OpCode::Binary, true) => return Err(UNFINISHED),
            _ => {}
        }
        self.sending_fragmented = !fin;
        self.replies().queue_frame(opcode, payload, fin, 0);
        Ok(())
    }

    /// Queues a [`PreparedMessage`]: a server sends its frame bytes without encoding or
    /// copying them; a client masks a fresh copy.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        // Control messages are checked and sent as such: never compressed (RFC 7692 §6.1),
        // never over 125 bytes.
        if self.role == Role::Client || prepared.message().is_control() {
            return self.send(prepared.message().clone());
        }
        self.ensure_data_allowed()?;
        match &self.deflate {
            Some(deflate) if deflate.should_compress(prepared.message().len()) => {
                if !deflate.is_stateless_sender() {
                    // With context takeover the compressor's window must see every message
                    // this connection sends, so it compresses this one itself.
                    return self.send(prepared.message().clone());
                }
                let frame = prepared.compressed_frame(deflate.send_window_bits(), deflate.level());
                self.out.push_encoded(&frame);
            }
            _ => self.out.push_encoded(prepared.server_frame()),
        }
        Ok(())
    }

    /// [`send_prepared`](Self::send_prepared) for each of `messages`, in order, stopping at the
    /// first error (the messages before it are queued). A fan-out's hot path: for a server
    /// without compression the checks run once for the batch, not once per message.
    ///
    /// # Errors
    ///
    /// As [`send_prepared`](Self::send_prepared).
    pub fn send_prepared_all<'a, I>(&mut self, messages: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = &'a PreparedMessage>,
    {
        if self.role == Role::Client || self.deflate.is_some() {
            return messages
                .into_iter()
                .try_for_each(|message| self.send_prepared(message));
        }
        // Whether data may go out is checked at the first data message and again after each
        // control message (a close ends what may follow it), exactly as one by one.
        let mut checked = false;
        for prepared in messages {
            if prepared.message().is_control() {
                self.send(prepared.message().clone())?;
                checked = false;
            } else {
                if !checked {
                    self.ensure_data_allowed()?;
                    checked = true;
                }
                self.out.push_encoded(prepared.server_frame());
            }
        }
        Ok(())
    }

    /// The first half of sending a data message whose compression should run outside a lock
    /// around the connection: `Ok(None)` if it is not compressed (send it with
    /// [`send`](Self::send)), else the compressor, to compress the payload with and to give
    /// back with [`send_compressed`](Self::send_compressed) before anything else is sent.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn check_out_compressor(&mut self, len: usize) -> Result<Option<CheckedOut>, Error> {
        self.ensure_data_allowed()?;
        match &mut self.deflate {
            Some(deflate) if deflate.should_compress(len) => Ok(Some(deflate.check_out())),
            _ => Ok(None),
        }
    }

    /// The second half: gives the compressor back and queues the message `compressed` holds
    /// (a `Text` or `Binary` message's payload, compressed with it).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`Error::InvalidMessage`] for a control opcode or without
    /// permessage-deflate. On an error nothing is sent and the compressor is dropped (its
    /// window holds the message): the next message starts a fresh window.
    pub fn send_compressed(
        &mut self,
        compressor: CheckedOut,
        opcode: OpCode,
        compressed: Bytes,
    ) -> Result<(), Error> {
        if !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(Error::InvalidMessage("send_compressed takes data opcodes"));
        }
        self.ensure_data_allowed()?;
        let Some(deflate) = &mut self.deflate else {
            return Err(Error::InvalidMessage(
                "permessage-deflate was not negotiated",
            ));
        };
        deflate.check_in(compressor);
        self.replies().queue_frame(opcode, compressed, true, RSV1);
        Ok(())
    }

    /// The sending half, apart from the read buffer: what [`send`](Self::send) queues through.
    #[inline]
    pub fn replies(&mut self) -> Replies<'_> {
        Replies {
            out: &mut self.out,
            deflate: self.deflate.as_mut(),
            mask_rng: self.mask_rng.as_deref_mut(),
            state: self.state,
            sending_fragmented: self.sending_fragmented,
            buffer_source: self.write_buffer_source,
            source: None,
        }
    }

    /// [`replies`](Self::replies) while `message` (owned, received) is lent: a large reply
    /// that is a slice of it is queued by reference, as [`send`](Self::send) would queue it,
    /// not copied.
    pub fn replies_to<'a>(&'a mut self, message: &'a Message) -> Replies<'a> {
        let mut replies = self.replies();
        replies.source = match message {
            Message::Text(text) => Some(text.as_bytes()),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => Some(b),
            Message::Close(_) => None,
        };
        replies
    }

    /// Where [`Replies::feed`] gets a write buffer for a queue that has none (an I/O layer's
    /// pool: the buffer is taken at the first reply, so a message answered with nothing
    /// costs no buffer). `None` (the default): the queue allocates its own.
    pub fn set_write_buffer_source(&mut self, source: Option<fn() -> BytesMut>) {
        self.write_buffer_source = source;
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
            self.timers.start_close();
        }
        Ok(())
    }

    /// Answers a ping that [`next_message`](Self::next_message) handed out, when automatic
    /// pongs are off ([`set_auto_pong`](Self::set_auto_pong)). Pongs coalesce above the queue
    /// limit ([`set_queue_limit`](Self::set_queue_limit)), so a ping flood cannot grow the
    /// queue. Nothing is sent once the closing handshake started.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a payload over 125 bytes.
    pub fn reply_to_ping(&mut self, payload: Bytes) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidMessage("control payload over 125 bytes"));
        }
        if self.state == State::Open {
            self.queue_pong(payload);
        }
        Ok(())
    }

    /// Answers the peer's close frame, when automatic close replies are off
    /// ([`set_auto_close_reply`](Self::set_auto_close_reply)): `frame` is the reply (`None`:
    /// no status). Does nothing unless a reply is owed; an invalid code is replaced by a
    /// close without status, since a reply is due either way.
    pub fn reply_to_close(&mut self, frame: Option<&CloseFrame>) {
        if std::mem::take(&mut self.close_reply_owed) {
            self.queue_close(frame.filter(|f| f.code.is_valid()));
        }
    }

    /// Whether the peer's close came and awaits [`reply_to_close`](Self::reply_to_close).
    pub fn close_reply_owed(&self) -> bool {
        self.close_reply_owed
    }

    fn queue_pong(&mut self, payload: Bytes) {
        let header = self.replies().header(true, 0, OpCode::Pong, payload.len());
        self.out.push_pong(&header, payload);
    }

    fn ensure_data_allowed(&mut self) -> Result<(), Error> {
        self.replies().ensure_data_allowed()
    }

    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        // RFC 6455 §5.5.1: nothing after our close frame.
        self.out.drop_pending_pong();
        let mut payload = Vec::new();
        if let Some(frame) = frame {
            frame.encode(&mut payload);
        }
        self.queue_frame(OpCode::Close, Bytes::from(payload));
    }

    #[inline]
    fn queue_frame(&mut self, opcode: OpCode, payload: Bytes) {
        self.replies().queue_frame(opcode, payload, true, 0);
    }
}

mod replies;
#[cfg(test)]
mod tests;

pub use replies::Replies;

impl Fragment {
    /// A whole message from a fragment that is both first and last.
    fn into_message(self) -> Message {
        match self.kind {
            OpCode::Text => Message::Text(Utf8Bytes::from_validated(self.payload)),
            _ => Message::Binary(self.payload),
        }
    }
}
