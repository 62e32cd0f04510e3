//! The envelope a publication travels in between nodes. One layout for every broker:
//!
//! ```text
//! byte 0      version (1)
//! byte 1      flags: bit 0 binary (else text), bit 1 an `except` follows,
//!             bits 2-3 overflow (0 the hub's default, 1 drop, 2 disconnect)
//! bytes 2-9   origin node, big-endian u64
//! bytes 10-25 except: its node and sequence, big-endian u64 each (only with bit 1)
//! the rest    the message's payload, unframed
//! ```
//!
//! The room is the channel or subject's name, not part of the envelope. The origin lets a
//! node skip its own publications, which it delivered at once when they were published.
//!
//! A publication the broker numbered for its room's history (Redis puts it together in the
//! script that keeps it) comes as version 2: byte 0 is 2, then `<offset> <epoch> ` in ASCII,
//! then the version 1 envelope. Every node delivers those, its own included.

use bytes::{BufMut, Bytes, BytesMut};
use socketry::{Message, PreparedMessage, Utf8Bytes};

use crate::{ConnId, NodeId, Overflow, Position, Publication, RoomName};

const VERSION: u8 = 1;
const NUMBERED: u8 = 2;
const BINARY: u8 = 1;
const EXCEPT: u8 = 1 << 1;
const OVERFLOW_SHIFT: u8 = 2;
const OVERFLOW_MASK: u8 = 0b11 << OVERFLOW_SHIFT;
const HEADER: usize = 10;
const EXCEPT_LEN: usize = 16;

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("envelope shorter than its header")]
    Short,
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("unknown envelope flags {0:#04x}")]
    Flags(u8),
    #[error("text payload is not UTF-8")]
    Utf8,
    #[error("malformed history position")]
    Position,
}

/// Encodes `publication`, published on `origin`.
pub(crate) fn encode(origin: NodeId, publication: &Publication) -> Bytes {
    let message = publication.message.message();
    let payload = message.as_payload();
    let mut flags = 0;
    if !message.is_text() {
        flags |= BINARY;
    }
    if publication.except.is_some() {
        flags |= EXCEPT;
    }
    flags |= match publication.overflow {
        None => 0,
        Some(Overflow::Drop) => 1,
        Some(Overflow::Disconnect) => 2,
    } << OVERFLOW_SHIFT;
    let mut out = BytesMut::with_capacity(HEADER + EXCEPT_LEN + payload.len());
    out.put_u8(VERSION);
    out.put_u8(flags);
    out.put_u64(origin.get());
    if let Some(except) = publication.except {
        out.put_u64(except.node().get());
        out.put_u64(except.seq());
    }
    out.put_slice(payload);
    out.freeze()
}

/// The node an envelope was published on, read without decoding it.
pub(crate) fn origin(envelope: &[u8]) -> Option<NodeId> {
    (envelope.len() >= HEADER && envelope[0] == VERSION)
        .then(|| NodeId::from_u64(u64_at(envelope, 2)))
}

/// Decodes an envelope that arrived for `room`. The message is framed here, once per node.
pub(crate) fn decode(room: RoomName, mut envelope: Bytes) -> Result<Publication, EnvelopeError> {
    if envelope.first() == Some(&NUMBERED) {
        let (position, rest) = numbered(&envelope).ok_or(EnvelopeError::Position)?;
        let rest = envelope.split_off(rest);
        // One position at most: a v1 envelope follows (no recursion on crafted input).
        return Ok(decode_plain(room, rest)?.with_position(position));
    }
    decode_plain(room, envelope)
}

/// Decodes a v1 envelope (no position).
fn decode_plain(room: RoomName, mut envelope: Bytes) -> Result<Publication, EnvelopeError> {
    if envelope.len() < HEADER {
        return Err(EnvelopeError::Short);
    }
    if envelope[0] != VERSION {
        return Err(EnvelopeError::Version(envelope[0]));
    }
    let flags = envelope[1];
    if flags & !(BINARY | EXCEPT | OVERFLOW_MASK) != 0 {
        return Err(EnvelopeError::Flags(flags));
    }
    let mut start = HEADER;
    let except = if flags & EXCEPT != 0 {
        if envelope.len() < HEADER + EXCEPT_LEN {
            return Err(EnvelopeError::Short);
        }
        start += EXCEPT_LEN;
        Some(ConnId::from_parts(
            NodeId::from_u64(u64_at(&envelope, HEADER)),
            u64_at(&envelope, HEADER + 8),
        ))
    } else {
        None
    };
    let overflow = match (flags & OVERFLOW_MASK) >> OVERFLOW_SHIFT {
        0 => None,
        1 => Some(Overflow::Drop),
        2 => Some(Overflow::Disconnect),
        _ => return Err(EnvelopeError::Flags(flags)),
    };
    let payload = envelope.split_off(start);
    let message = if flags & BINARY != 0 {
        Message::binary(payload)
    } else {
        Message::text(Utf8Bytes::try_from(payload).map_err(|_| EnvelopeError::Utf8)?)
    };
    let mut publication = Publication::new(room, PreparedMessage::new(message));
    publication.except = except;
    publication.overflow = overflow;
    Ok(publication)
}

/// The position of a version 2 envelope, and where its version 1 envelope starts.
fn numbered(envelope: &[u8]) -> Option<(Position, usize)> {
    let text = envelope.get(1..envelope.len().min(1 + 64))?;
    let first = text.iter().position(|&b| b == b' ')?;
    let second = first + 1 + text[first + 1..].iter().position(|&b| b == b' ')?;
    let offset: u64 = std::str::from_utf8(&text[..first]).ok()?.parse().ok()?;
    let epoch = std::str::from_utf8(&text[first + 1..second]).ok()?;
    let position = format!("{offset}:{epoch}").parse::<Position>().ok()?;
    Some((position, 1 + second + 1))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomName {
        RoomName::new("lobby").unwrap()
    }

    #[test]
    fn a_publication_comes_back_as_it_went_out() {
        let node = NodeId::from_u64(0xfeed);
        let except = ConnId::from_parts(NodeId::from_u64(7), 42);
        let sent = Publication::new(room(), PreparedMessage::new(Message::text("héllo")))
            .except(except)
            .overflow(Overflow::Drop);
        let envelope = encode(node, &sent);
        assert_eq!(origin(&envelope), Some(node));
        let received = decode(room(), envelope).unwrap();
        assert_eq!(received.except, Some(except));
        assert_eq!(received.overflow, Some(Overflow::Drop));
        assert_eq!(received.message.message(), &Message::text("héllo"));
        assert_eq!(
            received.message.server_frame(),
            sent.message.server_frame(),
            "framed the same on both nodes"
        );

        let binary = Publication::new(room(), PreparedMessage::new(Message::binary(vec![0, 255])));
        let received = decode(room(), encode(node, &binary)).unwrap();
        assert_eq!(received.message.message(), &Message::binary(vec![0, 255]));
        assert_eq!(received.except, None);
        assert_eq!(received.overflow, None);
    }

    #[test]
    fn a_malformed_envelope_is_refused_with_its_reason() {
        let ok = encode(
            NodeId::from_u64(1),
            &Publication::new(room(), PreparedMessage::new(Message::text("x"))),
        );
        assert_eq!(
            decode(room(), ok.slice(..5)).unwrap_err(),
            EnvelopeError::Short
        );
        let mut bad = ok.to_vec();
        bad[0] = 9;
        assert_eq!(
            decode(room(), bad.into()).unwrap_err(),
            EnvelopeError::Version(9)
        );
        let mut bad = ok.to_vec();
        bad[1] = 0x80;
        assert_eq!(
            decode(room(), bad.into()).unwrap_err(),
            EnvelopeError::Flags(0x80)
        );
        let mut bad = ok.to_vec();
        bad[1] = 0b1100;
        assert_eq!(
            decode(room(), bad.into()).unwrap_err(),
            EnvelopeError::Flags(0b1100)
        );
        let mut bad = ok.to_vec();
        bad[1] = EXCEPT;
        assert_eq!(
            decode(room(), bad.into()).unwrap_err(),
            EnvelopeError::Short,
            "an except that is not there"
        );
        let mut bad = ok[..HEADER].to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(decode(room(), bad.into()).unwrap_err(), EnvelopeError::Utf8);
        for bad in [
            &b"\x02"[..],
            b"\x02x y ",
            b"\x0212 ",
            b"\x0212 a-b ",
            b"\x02 ab ",
        ] {
            assert_eq!(
                decode(room(), Bytes::copy_from_slice(bad)).unwrap_err(),
                EnvelopeError::Position,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_numbered_envelope_carries_its_position_and_is_not_skipped_by_its_origin() {
        let node = NodeId::from_u64(3);
        let inner = encode(
            node,
            &Publication::new(room(), PreparedMessage::new(Message::text("hi"))),
        );
        let mut numbered = b"\x0242 9f3a ".to_vec();
        numbered.extend_from_slice(&inner);
        assert_eq!(origin(&numbered), None, "its origin delivers it too");
        let received = decode(room(), numbered.into()).unwrap();
        assert_eq!(received.position, Some(Position::new(42, "9f3a")));
        assert_eq!(received.message.message(), &Message::text("hi"));
    }
}
