//! [`Replies`]: the sending half of a [`Connection`](super::Connection), on its own so that a
//! message borrowed from the read buffer can be answered while the borrow lasts. Every send
//! of the connection goes through it: one logic for owned and borrowed payloads.

use bytes::{Bytes, BytesMut};
use rand::{Rng, rngs::StdRng};

use super::{State, UNFINISHED};
use crate::{
    error::Error,
    extensions::deflate::Deflate,
    frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, RSV1},
    message::MessageRef,
    outgoing::{Outgoing, Payload},
};

/// Queues messages on a connection while a received message is borrowed from its read
/// buffer ([`Connection::with_small_message`](super::Connection::with_small_message)).
/// Messages queued here are what [`Connection::send`](super::Connection::send) would queue for
/// them, byte for byte: compressed when permessage-deflate says so, masked by a client.
pub struct Replies<'a> {
    pub(super) out: &'a mut Outgoing,
    pub(super) deflate: Option<&'a mut Deflate>,
    pub(super) mask_rng: Option<&'a mut StdRng>,
    pub(super) state: State,
    pub(super) sending_fragmented: bool,
    /// Where a queue without a buffer gets one, at the first reply
    /// ([`Connection::set_write_buffer_source`](super::Connection::set_write_buffer_source)).
    pub(super) buffer_source: Option<fn() -> BytesMut>,
    /// The owned message being answered: a large reply that is a slice of it is queued by
    /// reference, as `send` would queue the message, instead of copied.
    pub(super) source: Option<&'a Bytes>,
}

impl std::fmt::Debug for Replies<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("state", &self.state)
            .field("queued", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Replies<'_> {
    /// Queues a text, binary, ping or pong message, copying its payload (a large slice of the
    /// owned message being answered, from [`Connection::replies_to`](super::Connection::replies_to),
    /// is queued by reference).
    ///
    /// # Errors
    ///
    /// As [`Connection::send`](super::Connection::send): [`Error::AlreadyClosed`] after our
    /// close frame was sent, [`Error::InvalidMessage`] for a control payload over 125 bytes
    /// or while a message sent frame by frame is unfinished. A close is refused with
    /// [`Error::InvalidMessage`]: the closing handshake starts with `send_close`, after the
    /// borrow.
    #[inline]
    pub fn feed<'m>(&mut self, message: impl Into<MessageRef<'m>>) -> Result<(), Error> {
        match message.into() {
            MessageRef::Text(text) => self.send_data(OpCode::Text, text.as_bytes()),
            MessageRef::Binary(data) => self.send_data(OpCode::Binary, data),
            MessageRef::Ping(data) => self.send_control(OpCode::Ping, data),
            MessageRef::Pong(data) => self.send_control(OpCode::Pong, data),
            MessageRef::Close(_) => Err(Error::InvalidMessage(
                "a close is not a reply: start the closing handshake after the borrow",
            )),
        }
    }

    /// The same replies for a shorter borrow (to wrap them by value).
    #[inline]
    pub fn reborrow(&mut self) -> Replies<'_> {
        Replies {
            out: self.out,
            deflate: self.deflate.as_deref_mut(),
            mask_rng: self.mask_rng.as_deref_mut(),
            state: self.state,
            sending_fragmented: self.sending_fragmented,
            buffer_source: self.buffer_source,
            source: self.source,
        }
    }

    #[inline]
    pub(super) fn send_data<P: Payload>(
        &mut self,
        opcode: OpCode,
        payload: P,
    ) -> Result<(), Error> {
        self.ensure_data_allowed()?;
        self.ensure_buffer();
        match self.deflate.as_deref_mut() {
            Some(deflate) if deflate.should_compress(payload.len()) => {
                let compressed = deflate.compress(&payload);
                self.queue_frame(opcode, compressed, true, RSV1);
            }
            // A server's small reply: its two header bytes need no `FrameHeader`.
            _ if payload.len() <= MAX_CONTROL_PAYLOAD && self.mask_rng.is_none() => {
                self.out.push_small_unmasked(opcode, &payload);
            }
            _ => self.queue_frame(opcode, payload, true, 0),
        }
        Ok(())
    }

    pub(super) fn send_control<P: Payload>(
        &mut self,
        opcode: OpCode,
        payload: P,
    ) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidMessage("control payload over 125 bytes"));
        }
        self.ensure_open()?;
        self.ensure_buffer();
        self.queue_frame(opcode, payload, true, 0);
        Ok(())
    }

    /// A queue without a buffer takes one from the source, once a frame is sure to go in (a
    /// refused reply leaves none taken).
    #[inline]
    fn ensure_buffer(&mut self) {
        if let Some(take) = self.buffer_source
            && !self.out.has_buffer()
        {
            self.out.set_buffer(take());
        }
    }

    pub(super) fn ensure_open(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(Error::AlreadyClosed),
        }
    }

    /// A whole data message may be queued: the connection is open and no message sent frame
    /// by frame is unfinished.
    pub(super) fn ensure_data_allowed(&self) -> Result<(), Error> {
        self.ensure_open()?;
        if self.sending_fragmented {
            return Err(UNFINISHED);
        }
        Ok(())
    }

    #[inline]
    pub(super) fn queue_frame<P: Payload>(
        &mut self,
        opcode: OpCode,
        payload: P,
        fin: bool,
        rsv: u8,
    ) {
        let header = self.header(fin, rsv, opcode, payload.len());
        match self.source.and_then(|source| payload.shared_from(source)) {
            Some(shared) => self.out.push_frame(&header, shared),
            None => self.out.push_frame(&header, payload),
        }
    }

    #[inline]
    pub(super) fn header(&mut self, fin: bool, rsv: u8, opcode: OpCode, len: usize) -> FrameHeader {
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask: self.mask_rng.as_deref_mut().map(|rng| rng.random()),
            payload_len: len as u64,
        }
    }
}
