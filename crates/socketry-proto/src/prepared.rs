//! [`PreparedMessage`]: a message framed once, sent to many connections.

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
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    message: Message,
    server_frame: Bytes,
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
        }
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
