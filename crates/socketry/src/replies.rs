//! [`Replies`]: what a lending receive ([`WebSocket::recv_with`](crate::WebSocket::recv_with))
//! answers its message with.

use socketry_proto::{Message, MessageRef};

use crate::Error;

/// Queues replies to a lent message, in order, while the borrow lasts: from
/// [`WebSocket::recv_with`](crate::WebSocket::recv_with) straight into the connection's write
/// queue (what [`WebSocket::feed`](crate::WebSocket::feed) would queue for each, byte for
/// byte: compressed when permessage-deflate says so, masked by a client).
///
/// Queuing does not wait: the receive that lent the message waited for room before it
/// handed the message out, as `feed` waits before it queues.
#[derive(Debug)]
pub struct Replies<'a> {
    to: To<'a>,
}

#[derive(Debug)]
enum To<'a> {
    /// The connection's own queue.
    Queue(socketry_proto::Replies<'a>),
    /// Copies, for a sender elsewhere (a split connection's writer, fed once the borrow
    /// ended: its lock is never held while the application's code runs).
    Copies(&'a mut Vec<Message>),
}

impl<'a> Replies<'a> {
    pub(crate) fn queue(replies: socketry_proto::Replies<'a>) -> Self {
        Self {
            to: To::Queue(replies),
        }
    }

    /// Replies kept as owned copies in `into`, for the caller to send after the borrow (with
    /// the checks the queue would make, but the closed state, which the sending does).
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry::{Message, MessageRef, Replies};
    ///
    /// let mut copies = Vec::new();
    /// let mut replies = Replies::collect(&mut copies);
    /// replies.feed("hi").unwrap();
    /// assert!(replies.feed(MessageRef::Close(None)).is_err());
    /// assert!(replies.feed(MessageRef::Ping(&[0; 126])).is_err());
    /// assert_eq!(copies, [Message::text("hi")]);
    /// ```
    pub fn collect(into: &'a mut Vec<Message>) -> Self {
        Self {
            to: To::Copies(into),
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
            To::Copies(into) => {
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
                into.push(message.to_message());
                Ok(())
            }
        }
    }
}
