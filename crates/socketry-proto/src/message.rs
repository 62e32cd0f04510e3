//! [`Message`]: what the application sends and receives.

use bytes::Bytes;

use crate::{close::CloseFrame, utf8_bytes::Utf8Bytes};

/// A whole WebSocket message, or a control frame.
///
/// # Examples
///
/// ```
/// use socketry_proto::Message;
///
/// let msg = Message::text("hello");
/// assert!(msg.is_text());
/// assert_eq!(msg.as_payload(), b"hello");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; its payload is valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with up to 125 bytes of payload.
    Ping(Bytes),
    /// A pong with up to 125 bytes of payload.
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Whether this is a ping, pong or close.
    pub fn is_control(&self) -> bool {
        matches!(self, Self::Ping(_) | Self::Pong(_) | Self::Close(_))
    }

    /// The payload bytes (empty for a close).
    #[inline]
    pub fn as_payload(&self) -> &[u8] {
        MessageRef::from(self).as_payload()
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as `Bytes`, without copying (a close gives its encoded payload).
    pub fn into_payload(self) -> Bytes {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(None) => Bytes::new(),
            Self::Close(Some(frame)) => {
                let mut buf = Vec::with_capacity(2 + frame.reason.len());
                frame.encode(&mut buf);
                Bytes::from(buf)
            }
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::text(s)
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Self::binary(v)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::binary(b)
    }
}

/// A message borrowed where it lies: the read buffer, for a small message handed out without
/// a copy, or a [`Message`]. What a borrowing receive hands out and what its replies take.
///
/// # Examples
///
/// ```
/// use socketry_proto::{Message, MessageRef};
///
/// let owned = Message::text("hello");
/// let borrowed = MessageRef::from(&owned);
/// assert_eq!(borrowed, MessageRef::Text("hello"));
/// assert_eq!(borrowed.as_payload(), b"hello");
/// assert_eq!(borrowed.to_message(), owned);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message; valid UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping with up to 125 bytes of payload.
    Ping(&'a [u8]),
    /// A pong with up to 125 bytes of payload.
    Pong(&'a [u8]),
    /// A close frame; `None` when it carried no status code.
    Close(Option<&'a CloseFrame>),
}

impl<'a> MessageRef<'a> {
    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Whether this is a ping, pong or close.
    pub fn is_control(&self) -> bool {
        matches!(self, Self::Ping(_) | Self::Pong(_) | Self::Close(_))
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&'a str> {
        match *self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The payload bytes (empty for a close).
    #[inline]
    pub fn as_payload(&self) -> &'a [u8] {
        match *self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(_) => &[],
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An owned copy, to keep past the borrow.
    pub fn to_message(&self) -> Message {
        match *self {
            Self::Text(t) => Message::text(t),
            Self::Binary(b) => Message::Binary(Bytes::copy_from_slice(b)),
            Self::Ping(b) => Message::Ping(Bytes::copy_from_slice(b)),
            Self::Pong(b) => Message::Pong(Bytes::copy_from_slice(b)),
            Self::Close(frame) => Message::Close(frame.cloned()),
        }
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    #[inline]
    fn from(message: &'a Message) -> Self {
        match message {
            Message::Text(t) => Self::Text(t.as_str()),
            Message::Binary(b) => Self::Binary(b),
            Message::Ping(b) => Self::Ping(b),
            Message::Pong(b) => Self::Pong(b),
            Message::Close(frame) => Self::Close(frame.as_ref()),
        }
    }
}

impl<'a> From<&'a str> for MessageRef<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(text)
    }
}

impl<'a> From<&'a [u8]> for MessageRef<'a> {
    fn from(data: &'a [u8]) -> Self {
        Self::Binary(data)
    }
}

impl<'a> From<&'a String> for MessageRef<'a> {
    fn from(text: &'a String) -> Self {
        Self::Text(text)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for MessageRef<'a> {
    fn from(data: &'a [u8; N]) -> Self {
        Self::Binary(data)
    }
}

impl<'a> From<&'a Vec<u8>> for MessageRef<'a> {
    fn from(data: &'a Vec<u8>) -> Self {
        Self::Binary(data)
    }
}

impl<'a> From<&'a Bytes> for MessageRef<'a> {
    fn from(data: &'a Bytes) -> Self {
        Self::Binary(data)
    }
}
