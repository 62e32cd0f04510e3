//! [`PreparedMessage`]: a message framed once, sent to many connections.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::{
    frame::{OpCode, encode_frame},
    message::Message,
};

/// A data message encoded once for broadcast (gorilla's `PreparedMessage`).
///
/// Servers send the frame bytes it holds as they are: sending it to a thousand connections
/// copies nothing and encodes nothing. Clients must mask every frame with a fresh key
/// (RFC 6455 §5.3), so a client connection encodes it again.
///
/// # Examples
///
/// ```
/// use socketry_proto::{Config, Connection, Message, PreparedMessage, Role};
///
/// let prepared = PreparedMessage::new(Message::text("tick"));
/// let mut a = Connection::new(Role::Server, Config::default());
/// let mut b = Connection::new(Role::Server, Config::default());
/// a.send_prepared(&prepared).unwrap();
/// b.send_prepared(&prepared).unwrap();
/// assert_eq!(a.outgoing().chunk(), b"\x81\x04tick");
/// assert_eq!(a.outgoing().chunk(), b.outgoing().chunk());
/// ```
///
/// With permessage-deflate, connections whose server compresses each message on its own
/// (`server_no_context_takeover`) share one compressed frame per window size, compressed on
/// first use. Connections with context takeover compress it themselves: their compressor's
/// window must have seen every message they sent, or the peer would resolve back-references
/// against different bytes.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    message: Message,
    server_frame: Bytes,
    /// Compressed frames for window bits 9..=15, made on first use.
    compressed: Arc<[OnceLock<Bytes>; 7]>,
}

impl PreparedMessage {
    /// Frames `message`, which must be a text or binary message (a control message is sent
    /// as is: it is small).
    pub fn new(message: Message) -> Self {
        let opcode = match &message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
            Message::Ping(_) => OpCode::Ping,
            Message::Pong(_) => OpCode::Pong,
            Message::Close(_) => OpCode::Close,
        };
        let payload = message.clone().into_payload();
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, true, 0, opcode, None, &payload);
        Self {
            message,
            server_frame: frame.freeze(),
            compressed: Arc::default(),
        }
    }

    /// The unmasked compressed frame for a window of `bits` (9–15), made once with `level`.
    pub(crate) fn compressed_frame(&self, bits: u8, level: u32) -> Bytes {
        let bits = bits.clamp(9, 15);
        self.compressed[usize::from(bits - 9)]
            .get_or_init(|| {
                let payload = self.message.as_payload();
                let compressed = crate::extensions::deflate::compress_once(payload, bits, level);
                let opcode = if self.message.is_text() {
                    OpCode::Text
                } else {
                    OpCode::Binary
                };
                let mut frame = BytesMut::new();
                encode_frame(
                    &mut frame,
                    true,
                    crate::frame::RSV1,
                    opcode,
                    None,
                    &compressed,
                );
                frame.freeze()
            })
            .clone()
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The unmasked frame, as a server sends it.
    pub fn server_frame(&self) -> &Bytes {
        &self.server_frame
    }
}
