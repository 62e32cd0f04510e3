//! permessage-deflate (RFC 7692): negotiation for both roles and the per-message codec.
//!
//! Window bits: zlib cannot compress with an 8-bit window (it silently uses 9, which a peer
//! with an 8-bit window cannot decode). So when the peer limits our window to 8 bits we accept
//! the agreement and send every message uncompressed, which RFC 7692 always allows. Inflating
//! uses at least 9 bits, which decodes 8-bit streams too; a distance past the negotiated
//! window (at least 9 bits) fails the message as invalid compressed data.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};

use super::{ExtensionOffer, parse_extensions};
use crate::{HandshakeError, ProtocolError, role::Role};

mod fast;
mod inflate;
use fast::FastDeflate;
use inflate::Inflater;

/// The extension's name.
pub const NAME: &str = "permessage-deflate";
/// The tail a sender strips and a receiver appends (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this endpoint wants from permessage-deflate; off unless set in the connection's
/// configuration.
///
/// # Examples
///
/// ```
/// use socketry_proto::extensions::deflate::DeflateConfig;
///
/// // Less memory per connection: small windows, no state kept between messages.
/// let frugal = DeflateConfig::default()
///     .server_max_window_bits(10)
///     .client_max_window_bits(10)
///     .server_no_context_takeover(true)
///     .client_no_context_takeover(true);
/// assert_eq!(frugal.offer(), "permessage-deflate; server_no_context_takeover; \
///     client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    /// `None`: not set, which a server reads as `DEFAULT_CLIENT_WINDOW_BITS` and a client
    /// as "any" (it offers the parameter without a value).
    client_max_window_bits: Option<u8>,
    compression_window_bits: u8,
    level: u32,
    threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: None,
            compression_window_bits: DEFAULT_COMPRESSION_WINDOW_BITS,
            level: 1,
            threshold: 64,
        }
    }
}

/// See [`DeflateConfig::compression_window_bits`].
const DEFAULT_COMPRESSION_WINDOW_BITS: u8 = 15;
/// A server's limit on the client's window unless configured: see
/// [`DeflateConfig::client_max_window_bits`].
const DEFAULT_CLIENT_WINDOW_BITS: u8 = 12;

impl DeflateConfig {
    /// Ask that the server compress each message on its own (no shared window), which frees
    /// its compressor between messages. The default value is `false`.
    #[must_use]
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Ask that the client compress each message on its own. The default value is `false`.
    #[must_use]
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// The largest LZ77 window the server may use, 9–15 bits (values are clamped). Smaller
    /// windows cost less memory and compress less. The default value is 15.
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// The largest window the client may use, 9–15 bits (clamped).
    ///
    /// As a server, the default value is 12 (4 KiB): a server asks for it when the client's
    /// offer allows (`client_max_window_bits` in the offer, as browsers, Node `ws` and Python
    /// `websockets` send it); without that the client keeps 15. With context takeover the
    /// server keeps the client's window between messages, so this is the memory a connection
    /// pays for what it receives: 4 KiB at 12 bits, 32 KiB at 15. What it trades is the
    /// client's ratio: on small, different JSON messages about 7 % more bytes than 15 bits; on
    /// a large message repeated whole, much more (its previous copy is out of a 4 KiB
    /// window's reach).
    ///
    /// As a client, this is the limit offered for our own window; by default none is (the
    /// parameter is offered without a value, so that the server may choose any).
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = Some(bits.clamp(9, 15));
        self
    }

    /// The window this endpoint compresses with, 9–15 bits (clamped), and never more than the
    /// handshake allowed. It is not negotiated: a smaller window than agreed is always valid,
    /// since it only makes matches shorter-reaching, and the peer decodes it with the window it
    /// has. With context takeover a connection keeps up to 1.5 × `2^bits` bytes of history,
    /// for as long as it lives. The default value is 15 (32 KiB, zlib's usual window): with the
    /// client's window at a server's default of 12 bits, a server connection with context
    /// takeover stays under 64 KiB in all (`docs/benchmarks.md`, "Compression, round five");
    /// about 90 KiB for a client that does not offer `client_max_window_bits`, whose 32 KiB
    /// window the server then keeps. 12 bits
    /// keeps 42 KiB less history for about 7 % more bytes on small, different JSON messages,
    /// and much more on a large message repeated whole (0.33 against 0.065 for 16 KiB sent
    /// again and again), whose previous copy is out of its reach.
    #[must_use]
    pub fn compression_window_bits(mut self, bits: u8) -> Self {
        self.compression_window_bits = bits.clamp(9, 15);
        self
    }

    /// The compression level, 0 (store) to 9 (best); clamped. The default value is 1 (fast,
    /// as gorilla).
    ///
    /// Level 1 uses socketry's own compressor (greedy matching, static Huffman codes, 56 KiB of
    /// state per connection with context takeover at the default window: 1.5 windows of
    /// history and an 8 KiB table; 14 KiB at 12 bits); the other
    /// levels use zlib-rs, which compresses better at 2 and above and keeps about 300 KiB per
    /// connection with context takeover.
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed. The default value is 64.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The compression level.
    pub fn get_level(&self) -> u32 {
        self.level
    }

    /// The size threshold.
    pub fn get_threshold(&self) -> usize {
        self.threshold
    }

    /// The client's offer for `Sec-WebSocket-Extensions`.
    ///
    /// `client_max_window_bits` is always offered (we honour any limit: below 9 bits by not
    /// compressing), with our own limit as its value when it is below 15.
    pub fn offer(&self) -> String {
        let mut offer = String::from(NAME);
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            offer.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if let Some(bits) = self.client_max_window_bits.filter(|&bits| bits < 15) {
            offer.push_str(&format!("; client_max_window_bits={bits}"));
        } else {
            offer.push_str("; client_max_window_bits");
        }
        offer
    }
}

/// The agreed parameters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses each message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The server's window, 8–15 bits.
    pub server_max_window_bits: u8,
    /// The client's window, 8–15 bits.
    pub client_max_window_bits: u8,
}

/// The parameters of one permessage-deflate offer or response, checked for RFC 7692 §7.1:
/// known names, no duplicates, window bits 8–15.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    fn parse(offer: &ExtensionOffer) -> Option<Self> {
        let mut p = Self::default();
        let mut seen = Vec::new();
        for (name, value) in &offer.params {
            if seen.contains(&name) {
                return None; // RFC 7692 §7.1: a duplicate parameter is an invalid offer
            }
            seen.push(name);
            let bits = |v: &Option<String>| {
                v.as_deref()
                    .filter(|v| !v.starts_with('0'))
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|b| (8..=15).contains(b))
            };
            match (name.as_str(), value) {
                ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
                ("server_max_window_bits", Some(_)) => {
                    p.server_max_window_bits = Some(bits(value)?)
                }
                ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(_)) => {
                    p.client_max_window_bits = Some(Some(bits(value)?));
                }
                _ => return None,
            }
        }
        Some(p)
    }
}

/// Server side: picks the first permessage-deflate offer it can accept from the request's
/// `Sec-WebSocket-Extensions` values, and returns the agreement and the response header
/// value. Offers it cannot accept are declined (skipped), which is not an error.
///
/// # Examples
///
/// ```
/// use socketry_proto::extensions::deflate::{DeflateConfig, negotiate_server};
///
/// let (params, response) = negotiate_server(
///     ["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
///     &DeflateConfig::default(),
/// )
/// .unwrap();
/// assert_eq!(params.server_max_window_bits, 10);
/// // The client allowed a limit on its window: 12 bits by default.
/// assert_eq!(params.client_max_window_bits, 12);
/// assert_eq!(
///     response,
///     "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
/// );
/// ```
pub fn negotiate_server<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(DeflateParams, String)> {
    parse_extensions(values)
        .iter()
        .filter(|offer| offer.name == NAME)
        .find_map(|offer| accept_offer(&Params::parse(offer)?, config))
}

fn accept_offer(offer: &Params, config: &DeflateConfig) -> Option<(DeflateParams, String)> {
    let server_no_context_takeover =
        offer.server_no_context_takeover || config.server_no_context_takeover;
    let server_bits = offer
        .server_max_window_bits
        .map_or(config.server_max_window_bits, |b| {
            b.min(config.server_max_window_bits)
        });
    // We may limit the client's window only if it offered client_max_window_bits.
    let client_bits = match offer.client_max_window_bits {
        Some(offered) => offered.unwrap_or(15).min(
            config
                .client_max_window_bits
                .unwrap_or(DEFAULT_CLIENT_WINDOW_BITS),
        ),
        None => 15,
    };
    let client_no_context_takeover =
        offer.client_no_context_takeover || config.client_no_context_takeover;
    let mut response = String::from(NAME);
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if server_bits < 15 || offer.server_max_window_bits.is_some() {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    if client_bits < 15 {
        response.push_str(&format!("; client_max_window_bits={client_bits}"));
    }
    let params = DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    Some((params, response))
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` against what `offered` asked
/// for. `Ok(None)` when the server declined compression.
///
/// # Errors
///
/// [`HandshakeError::UnexpectedExtension`] for an extension we did not offer, or a
/// permessage-deflate response with unknown, duplicate or out-of-range parameters, or limits
/// we did not allow (RFC 7692 §7.1: the client fails the connection).
pub fn negotiate_client<'a>(
    values: impl IntoIterator<Item = &'a str>,
    offered: Option<&DeflateConfig>,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let responses = parse_extensions(values);
    let unexpected = |what: &str| Err(HandshakeError::UnexpectedExtension(what.to_owned()));
    let [response] = responses.as_slice() else {
        return match responses.first() {
            None => Ok(None),
            Some(first) => unexpected(&first.name),
        };
    };
    let Some(config) = offered.filter(|_| response.name == NAME) else {
        return unexpected(&response.name);
    };
    let Some(p) = Params::parse(response) else {
        return unexpected("permessage-deflate with invalid parameters");
    };
    let server_bits = p.server_max_window_bits.unwrap_or(15);
    if config.server_max_window_bits < 15 && server_bits > config.server_max_window_bits {
        return unexpected("permessage-deflate with a larger server window than offered");
    }
    let our_limit = config.client_max_window_bits.unwrap_or(15);
    let client_bits = match p.client_max_window_bits {
        Some(Some(bits)) if bits <= our_limit => bits,
        Some(_) => return unexpected("permessage-deflate with an invalid client window"),
        None => our_limit,
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }))
}

/// The per-connection codec: a compressor for what we send and a decompressor for what we
/// receive (socketry's own, `inflate.rs`), each holding memory only once used and, without
/// context takeover, only while a message is in progress, so that an idle connection holds
/// no compression state. With context takeover the decompressor keeps the peer's negotiated
/// window: `2^client_max_window_bits` bytes on a server (at least 512).
pub struct Deflate {
    send_bits: u8,
    send_reset: bool,
    recv_bits: u8,
    recv_reset: bool,
    level: u32,
    threshold: usize,
    enabled: bool,
    compressor: Option<Compressor>,
    inflater: Inflater,
    /// Counts check-outs: a compressor comes back into use only if no other was checked out
    /// since (its window must have seen exactly the messages sent).
    generation: u64,
}

/// A connection's compressor, checked out to compress one message away from the connection
/// (outside a lock around it); give it back with [`Deflate::check_in`] before the next
/// message is compressed.
pub struct CheckedOut {
    compressor: Compressor,
    generation: u64,
}

impl std::fmt::Debug for CheckedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedOut").finish_non_exhaustive()
    }
}

impl CheckedOut {
    /// Compresses one whole message payload, as [`Deflate::compress`] would.
    pub fn compress(&mut self, payload: &[u8]) -> Bytes {
        self.compressor.compress(payload)
    }
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("send_bits", &self.send_bits)
            .field("send_reset", &self.send_reset)
            .field("recv_bits", &self.recv_bits)
            .field("recv_reset", &self.recv_reset)
            .field("level", &self.level)
            .field("threshold", &self.threshold)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Deflate {
    /// The codec for `role` under `params`, with the level and threshold of `config`.
    pub fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (ours, theirs) = match role {
            Role::Server => (
                (
                    params.server_max_window_bits,
                    params.server_no_context_takeover,
                ),
                (
                    params.client_max_window_bits,
                    params.client_no_context_takeover,
                ),
            ),
            Role::Client => (
                (
                    params.client_max_window_bits,
                    params.client_no_context_takeover,
                ),
                (
                    params.server_max_window_bits,
                    params.server_no_context_takeover,
                ),
            ),
        };
        Self {
            send_bits: compression_bits(ours.0, config),
            send_reset: ours.1,
            recv_bits: theirs.0.max(9),
            recv_reset: theirs.1,
            level: config.level,
            threshold: config.threshold,
            enabled: true,
            compressor: None,
            inflater: Inflater::new(theirs.0),
            generation: 0,
        }
    }

    /// Turns compression of outgoing messages on or off (receiving is unaffected).
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Whether a message of `len` bytes would be compressed.
    pub fn should_compress(&self, len: usize) -> bool {
        // zlib cannot honour an 8-bit window: such messages go out uncompressed.
        self.enabled && self.send_bits >= 9 && len >= self.threshold
    }

    /// Whether we compress each message on its own (a shared pre-compressed frame fits).
    pub fn is_stateless_sender(&self) -> bool {
        self.send_reset
    }

    /// The window we compress with: the negotiated one, narrowed by
    /// [`DeflateConfig::compression_window_bits`].
    pub fn send_window_bits(&self) -> u8 {
        self.send_bits
    }

    /// The compression level.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Compresses one whole message payload (RFC 7692 §7.2.1).
    pub fn compress(&mut self, payload: &[u8]) -> Bytes {
        let mut checked_out = self.check_out();
        let out = checked_out.compress(payload);
        self.check_in(checked_out);
        out
    }

    /// Takes the compressor out, to compress one message elsewhere; give it back with
    /// [`check_in`](Self::check_in) once that message is queued. With context takeover its
    /// window must have seen exactly the messages sent, in order, so a compressor comes back
    /// into use only if no other was checked out meanwhile; otherwise (or if one never comes
    /// back) the next message starts a fresh window, which the peer always decodes.
    pub fn check_out(&mut self) -> CheckedOut {
        let (level, bits, keep) = (self.level, self.send_bits, !self.send_reset);
        let compressor = self
            .compressor
            .take()
            .unwrap_or_else(|| Compressor::new(level, bits, keep));
        self.generation += 1;
        CheckedOut {
            compressor,
            generation: self.generation,
        }
    }

    /// Gives the compressor back after the message it compressed was queued. (If that message
    /// was not sent after all, drop the `CheckedOut` instead: its window holds it.)
    pub fn check_in(&mut self, checked_out: CheckedOut) {
        // Without context takeover each message starts afresh: drop the window.
        if !self.send_reset && checked_out.generation == self.generation {
            self.compressor = Some(checked_out.compressor);
        }
    }

    /// Appends the decompressed form of one frame's payload of a compressed message to `out`;
    /// `fin` ends the message. Stops with [`ProtocolError::MessageTooBig`] as soon as `out`
    /// would pass `max` bytes, so a small message that inflates hugely never allocates more.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::MessageTooBig`] past the limit, [`ProtocolError::InvalidCompressedData`]
    /// for data that does not inflate.
    pub fn decompress(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max: Option<usize>,
    ) -> Result<(), ProtocolError> {
        let done = self.decompress_some(payload, fin, out, max, usize::MAX)?;
        debug_assert!(done.done, "an unbounded budget inflates everything");
        Ok(())
    }

    /// [`decompress`](Self::decompress) a slice at a time: inflates `payload` (the rest of one
    /// frame's payload) until about `budget` more bytes were appended to `out` or the payload
    /// is used up (then, with `fin`, the message ends). Call it again with
    /// `&payload[consumed..]` until it is [`done`](Inflated::done): the output per call stays
    /// bounded however much the frame inflates to (the work too, but for input that inflates
    /// to nothing, such as empty blocks, which only the frame's size bounds). A budget of 0
    /// counts as 1.
    ///
    /// # Errors
    ///
    /// As [`decompress`](Self::decompress).
    pub fn decompress_some(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max: Option<usize>,
        budget: usize,
    ) -> Result<Inflated, ProtocolError> {
        let limit = max.unwrap_or(usize::MAX);
        // What this call decodes starts here; back-references before it go to the window.
        let mut base = out.len();
        let stop_at = base.saturating_add(budget.max(1));
        let (consumed, finished) = self
            .inflater
            .inflate(payload, out, &mut base, limit, stop_at)?;
        let ends = finished && fin;
        if ends {
            // RFC 7692 §7.2.2: the sender's flush marker, stripped, ends the message.
            self.inflater
                .inflate(&TAIL, out, &mut base, limit, usize::MAX)?;
        }
        if !(ends && self.recv_reset) {
            // (A message of a peer without context takeover needs no history past its end.)
            self.inflater.commit(&out[base..]);
        }
        if ends {
            self.inflater.end_message(self.recv_reset);
        }
        Ok(Inflated {
            consumed,
            done: finished,
        })
    }

    /// Whether compression state is allocated (for measuring the cost of idle connections).
    pub fn holds_state(&self) -> bool {
        self.compressor.is_some() || self.inflater.holds_state()
    }
}

/// The window we compress with: what the handshake allowed us, narrowed by our configuration
/// (an 8-bit agreement stays 8: such messages go out uncompressed).
fn compression_bits(negotiated: u8, config: &DeflateConfig) -> u8 {
    if negotiated < 9 {
        negotiated
    } else {
        negotiated.min(config.compression_window_bits)
    }
}

/// A compressor: socketry's own at level 1, zlib-rs at the others.
pub(crate) enum Compressor {
    Fast(FastDeflate),
    Zlib(Box<Compress>),
}

impl Compressor {
    /// A compressor for `bits` of window at `level`; `keep_history` for context takeover.
    fn new(level: u32, bits: u8, keep_history: bool) -> Self {
        if level == 1 {
            Self::Fast(FastDeflate::new(bits, keep_history))
        } else {
            Self::Zlib(Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            )))
        }
    }

    /// Compresses one whole message payload (RFC 7692 §7.2.1).
    fn compress(&mut self, payload: &[u8]) -> Bytes {
        match self {
            Self::Fast(fast) => exact(fast.compress(payload)),
            Self::Zlib(zlib) => compress_with(zlib, payload),
        }
    }
}

/// `out` as `Bytes` without much more allocation than its length: the output buffer was sized
/// for the worst case, and a large queued frame would otherwise hold all of it (`Bytes` keeps
/// a `Vec`'s whole capacity) while the peer is slow to read.
fn exact(mut out: Vec<u8>) -> Bytes {
    if out.capacity() > out.len() + out.len() / 4 + 64 {
        out.shrink_to_fit();
    }
    Bytes::from(out)
}

/// Compresses `payload` as one message with a fresh or continuing zlib compressor.
pub(crate) fn compress_with(compressor: &mut Compress, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let start_in = compressor.total_in();
    loop {
        let consumed = (compressor.total_in() - start_in) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        // A sync flush ends the output on a byte boundary with the empty stored block
        // 00 00 ff ff, stripped below.
        let status = compressor
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate on a valid stream does not fail");
        // Done once every input byte went in and zlib stopped short of the room it had (the
        // flush is complete) or could make no more progress.
        let consumed_all = (compressor.total_in() - start_in) as usize == payload.len();
        let done = consumed_all && (out.len() < out.capacity() || status == Status::BufError);
        if done {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if out.is_empty() {
        out.push(0x00); // RFC 7692 §7.2.3.6: an empty message is one 0x00 byte
    }
    exact(out)
}

/// A compressor as used for a [`crate::PreparedMessage`]: no context, `bits` of window.
pub(crate) fn compress_once(payload: &[u8], bits: u8, level: u32) -> Bytes {
    Compressor::new(level, bits, false).compress(payload)
}

/// How far [`Deflate::decompress_some`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Payload bytes used.
    pub consumed: usize,
    /// The whole payload was inflated (and, for the last frame, the message ended).
    pub done: bool,
}

#[cfg(test)]
mod tests;
