//! [`Replies`]: what a lending receive ([`WebSocket::recv_with`](crate::WebSocket::recv_with))
//! answers its message with.

use bytes::Bytes;
use socketry_proto::{Message, MessageRef, Utf8Bytes};

use crate::Error;

/// Queues replies to a lent message, in order, while the borrow lasts: from
/// [`WebSocket::recv_with`](crate::WebSocket::recv_with) straight into the connection's write
/// queue (what [`WebSocket::feed`](crate::WebSocket::feed) would queue for each, byte for
/// byte: compressed when permessage-deflate says so, masked by a client).
///
/// Queuing does not wait: replies that fill the queue make the next lending receive wait for
/// room first, as the next `feed` would.
#[derive(Debug)]
pub struct Replies<'a> {
    to: To<'a>,
}

#[derive(Debug)]
enum To<'a> {
    /// The connection's own queue.
    Queue(socketry_proto::Replies<'a>),
    /// Copies, for a sender elsewhere (a split connection's writer, fed once the borrow
    /// ended: its lock is never held while the application's code runs); a large slice of
    /// the message answered is kept by reference.
    Copies {
        into: &'a mut Vec<Message>,
        answering: Option<&'a Bytes>,
    },
}

/// Large payloads are shared rather than copied: from the size from which the queue keeps a
/// payload by reference (socketry-proto's zero-copy threshold).
const SHARE_FROM: usize = 16 * 1024;

impl<'a> Replies<'a> {
    pub(crate) fn queue(replies: socketry_proto::Replies<'a>) -> Self {
        Self {
            to: To::Queue(replies),
        }
    }

    /// Replies kept as owned messages in `into`, for the caller to send after the borrow. The
    /// checks of the queue that do not depend on the connection's state are made here (a
    /// close or a control payload over 125 bytes is refused); the rest when they are sent.
    /// A large reply that is a slice of `answering` (the owned message being answered) is
    /// kept by reference into it, not copied.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry::{Message, MessageRef, Replies};
    ///
    /// let mut copies = Vec::new();
    /// let mut replies = Replies::collect(&mut copies, None);
    /// replies.feed("hi").unwrap();
    /// assert!(replies.feed(MessageRef::Close(None)).is_err());
    /// assert!(replies.feed(MessageRef::Ping(&[0; 126])).is_err());
    /// assert_eq!(copies, [Message::text("hi")]);
    /// ```
    pub fn collect(into: &'a mut Vec<Message>, answering: Option<&'a Message>) -> Self {
        let answering = answering.and_then(|message| match message {
            Message::Text(text) => Some(text.as_bytes()),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => Some(b),
            Message::Close(_) => None,
        });
        Self {
            to: To::Copies { into, answering },
        }
    }

    /// Queues a text, binary, ping or pong message, copying its payload (a large reply that
    /// is a slice of an owned message being answered is queued by reference).
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`](crate::WebSocket::send): [`Error::AlreadyClosed`] after our
    /// close frame was sent (for collected copies: when they are sent), and
    /// [`Error::InvalidMessage`] for a control payload over 125 bytes or while a message
    /// written frame by frame is unfinished. A close is refused with
    /// [`Error::InvalidMessage`]: the closing handshake starts with `close`, after the borrow.
    #[inline]
    pub fn feed<'m>(&mut self, message: impl Into<MessageRef<'m>>) -> Result<(), Error> {
        let message = message.into();
        match &mut self.to {
            To::Queue(replies) => Ok(replies.feed(message)?),
            To::Copies { into, answering } => {
                match message {
                    MessageRef::Close(_) => {
                        return Err(Error::InvalidMessage(
                            "a close is not a reply: start the closing handshake after the borrow",
                        ));
                    }
                    MessageRef::Ping(b) | MessageRef::Pong(b)
                        if b.len() > socketry_proto::frame::MAX_CONTROL_PAYLOAD =>
                    {
                        return Err(Error::InvalidMessage("control payload over 125 bytes"));
                    }
                    _ => {}
                }
                let shared = |payload: &[u8]| {
                    let source = answering.filter(|_| payload.len() >= SHARE_FROM)?;
                    let (start, at) = (source.as_ptr() as usize, payload.as_ptr() as usize);
                    let within = at >= start && at + payload.len() <= start + source.len();
                    within.then(|| source.slice_ref(payload))
                };
                into.push(match message {
                    MessageRef::Binary(data) => Message::Binary(
                        shared(data).unwrap_or_else(|| Bytes::copy_from_slice(data)),
                    ),
                    MessageRef::Text(text) => match shared(text.as_bytes()) {
                        Some(bytes) => Message::Text(
                            Utf8Bytes::try_from(bytes).expect("a slice of a str is UTF-8"),
                        ),
                        None => Message::text(text),
                    },
                    other => other.to_message(),
                });
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_large_replies_share_the_answered_message_and_small_ones_are_copied() {
        let message = Message::binary(vec![5; 40_000]);
        let payload = message.as_payload();
        let mut copies = Vec::new();
        let mut replies = Replies::collect(&mut copies, Some(&message));
        replies.feed(MessageRef::Binary(&payload[1000..])).unwrap();
        replies.feed(MessageRef::Binary(&payload[..10])).unwrap();
        assert_eq!(copies[0].as_payload().as_ptr(), payload[1000..].as_ptr());
        assert_eq!(copies[0].len(), 39_000);
        assert_ne!(copies[1].as_payload().as_ptr(), payload.as_ptr());
        // Text sliced from a text message: shared too, and text still.
        let message = Message::text("é".repeat(20_000));
        let text = std::str::from_utf8(message.as_payload()).unwrap();
        let mut copies = Vec::new();
        let mut replies = Replies::collect(&mut copies, Some(&message));
        replies.feed(&text[2000..]).unwrap();
        assert!(copies[0].is_text());
        assert_eq!(copies[0].as_payload().as_ptr(), text[2000..].as_ptr());
        assert_eq!(copies[0].len(), 38_000);
    }
}
