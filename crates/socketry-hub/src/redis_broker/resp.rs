//! Just enough RESP2 for a sharded subscriber connection: commands out, and the replies of
//! a subscribed connection in (arrays of bulk strings and integers, simple strings, errors).
//!
//! Why not the `redis` crate here: its multiplexed connection can send `SSUBSCRIBE` only
//! through its cluster client, which queues every push in an unbounded channel before the
//! application sees it. This reader hands each message on as it is parsed.

use bytes::{Buf, Bytes, BytesMut};

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    /// A bulk string (`None`: the null bulk string).
    Bulk(Option<Bytes>),
    /// An array (`None`: the null array).
    Array(Option<Vec<Self>>),
}

/// What cannot be a reply of a subscribed connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum ParseError {
    #[error("malformed RESP reply: {0}")]
    Malformed(&'static str),
    #[error("a {0}-byte reply is larger than the limit")]
    TooLarge(usize),
}

/// Arrays nest no deeper than this in what a subscribed connection is sent.
const MAX_DEPTH: usize = 4;
/// Elements in one array at most (a subscribed connection's replies have two or three).
const MAX_ELEMENTS: usize = 1024;

/// Takes one whole reply off the front of `buf`, if it holds one; a bulk string longer than
/// `max_bulk` is an error (the connection is then dropped).
pub(super) fn parse(buf: &mut BytesMut, max_bulk: usize) -> Result<Option<Frame>, ParseError> {
    let mut at = 0;
    match frame(buf, &mut at, max_bulk, 0)? {
        Some(spans) => {
            // Copied out: a payload kept in a member's queue must not pin the whole read
            // buffer (which grows to the largest frame seen).
            let bytes = Bytes::copy_from_slice(&buf[..at]);
            buf.advance(at);
            Ok(Some(spans.build(&bytes)))
        }
        None => Ok(None),
    }
}

/// A reply located in the buffer, before it is cut out (so that an incomplete one costs no
/// copy).
enum Span {
    Simple(usize, usize),
    Error(usize, usize),
    Integer(i64),
    Bulk(Option<(usize, usize)>),
    Array(Option<Vec<Self>>),
}

impl Span {
    fn build(self, bytes: &Bytes) -> Frame {
        match self {
            Self::Simple(from, to) => Frame::Simple(bytes.slice(from..to)),
            Self::Error(from, to) => Frame::Error(bytes.slice(from..to)),
            Self::Integer(n) => Frame::Integer(n),
            Self::Bulk(range) => Frame::Bulk(range.map(|(from, to)| bytes.slice(from..to))),
            Self::Array(items) => {
                Frame::Array(items.map(|items| items.into_iter().map(|s| s.build(bytes)).collect()))
            }
        }
    }
}

fn frame(
    buf: &[u8],
    at: &mut usize,
    max_bulk: usize,
    depth: usize,
) -> Result<Option<Span>, ParseError> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    let Some((from, to)) = line(buf, *at + 1) else {
        if buf.len() - *at > 64 * 1024 {
            return Err(ParseError::Malformed("a line without its end"));
        }
        return Ok(None);
    };
    let after_line = to + 2;
    let span = match kind {
        b'+' => Span::Simple(from, to),
        b'-' => Span::Error(from, to),
        b':' => Span::Integer(number(&buf[from..to])?),
        b'$' => {
            let len = number(&buf[from..to])?;
            if len < 0 {
                *at = after_line;
                return Ok(Some(Span::Bulk(None)));
            }
            let len = len as usize;
            // The bound holds for the whole reply too (an array of many large strings), with
            // room for the headers around a string at the bound.
            if len > max_bulk || after_line + len > max_bulk + 64 * 1024 {
                return Err(ParseError::TooLarge(after_line + len));
            }
            if buf.len() < after_line + len + 2 {
                return Ok(None);
            }
            if &buf[after_line + len..after_line + len + 2] != b"\r\n" {
                return Err(ParseError::Malformed("a bulk string without its end"));
            }
            *at = after_line + len + 2;
            return Ok(Some(Span::Bulk(Some((after_line, after_line + len)))));
        }
        b'*' => {
            let len = number(&buf[from..to])?;
            if len < 0 {
                *at = after_line;
                return Ok(Some(Span::Array(None)));
            }
            if depth >= MAX_DEPTH || len as usize > MAX_ELEMENTS {
                return Err(ParseError::Malformed("an array too deep or too long"));
            }
            let mut cursor = after_line;
            let mut items = Vec::with_capacity(len as usize);
            for _ in 0..len {
                match frame(buf, &mut cursor, max_bulk, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            *at = cursor;
            return Ok(Some(Span::Array(Some(items))));
        }
        _ => return Err(ParseError::Malformed("an unknown reply type")),
    };
    *at = after_line;
    Ok(Some(span))
}

/// The line that starts at `from`, without its CRLF.
fn line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((from, from + end))
}

fn number(digits: &[u8]) -> Result<i64, ParseError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::Malformed("not a number"))
}

/// A command as RESP2 puts it on the wire.
pub(super) fn command(out: &mut BytesMut, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// What a subscribed connection tells: a message, a (un)subscription, a pong, an error.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    Subscribed(Bytes),
    Unsubscribed(Bytes),
    Pong,
    /// An error reply (`MOVED 1234 host:port`, say).
    Error(Bytes),
    /// A reply that a subscribed connection is not sent (`+OK` to `AUTH`, say).
    Other,
}

impl Event {
    pub(super) fn of(frame: Frame) -> Self {
        match frame {
            Frame::Error(text) => Self::Error(text),
            Frame::Array(Some(items)) => {
                let mut items = items.into_iter();
                let Some(Frame::Bulk(Some(kind))) = items.next() else {
                    return Self::Other;
                };
                let second = match items.next() {
                    Some(Frame::Bulk(Some(second))) => Some(second),
                    _ => None,
                };
                match (&kind.to_ascii_lowercase()[..], second, items.next()) {
                    (b"smessage" | b"message", Some(channel), Some(Frame::Bulk(Some(payload)))) => {
                        Self::Message { channel, payload }
                    }
                    (b"ssubscribe", Some(channel), _) => Self::Subscribed(channel),
                    (b"sunsubscribe", Some(channel), _) => Self::Unsubscribed(channel),
                    (b"pong", _, _) => Self::Pong,
                    _ => Self::Other,
                }
            }
            Frame::Simple(text) if text.eq_ignore_ascii_case(b"pong") => Self::Pong,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(frame) = parse(&mut buf, 1 << 20).unwrap() {
            out.push(frame);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn subscribed_connection_replies_parse_and_read_as_events() {
        let input = b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n\
                      *3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\n\
                      *2\r\n$4\r\npong\r\n$0\r\n\r\n\
                      -MOVED 3999 127.0.0.1:6381\r\n\
                      *3\r\n$12\r\nsunsubscribe\r\n$2\r\nch\r\n:0\r\n+OK\r\n$-1\r\n*-1\r\n";
        let frames = all(input);
        assert_eq!(
            frames[1],
            Frame::Array(Some(vec![bulk("smessage"), bulk("ch"), bulk("he\r\no")]))
        );
        let events: Vec<Event> = frames.into_iter().map(Event::of).collect();
        assert_eq!(
            events,
            [
                Event::Subscribed("ch".into()),
                Event::Message {
                    channel: "ch".into(),
                    payload: "he\r\no".into()
                },
                Event::Pong,
                Event::Error("MOVED 3999 127.0.0.1:6381".into()),
                Event::Unsubscribed("ch".into()),
                Event::Other,
                Event::Other,
                Event::Other,
            ]
        );
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_the_rest_and_then_parses_whole() {
        let input: &[u8] = b"*3\r\n$8\r\nsmessage\r\n$4\r\nroom\r\n$11\r\nhello world\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(parse(&mut buf, 1 << 20).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
            buf.extend_from_slice(&input[cut..]);
            let frame = parse(&mut buf, 1 << 20).unwrap().expect("whole");
            assert!(matches!(Event::of(frame), Event::Message { .. }));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn malformed_or_oversized_replies_are_errors_not_panics() {
        for input in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$3\r\nabcd\r\n",
            b"*99999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            let mut buf = BytesMut::from(input);
            assert!(parse(&mut buf, 1 << 20).is_err(), "{input:?}");
        }
        let mut buf = BytesMut::from(&b"$100\r\n"[..]);
        assert_eq!(parse(&mut buf, 10), Err(ParseError::TooLarge(106)));
        // Each string under the bound, the whole reply far over it.
        let mut many = BytesMut::from(&b"*100\r\n"[..]);
        for _ in 0..100 {
            many.extend_from_slice(b"$1000\r\n");
            many.extend_from_slice(&[b'x'; 1000]);
            many.extend_from_slice(b"\r\n");
        }
        assert!(matches!(
            parse(&mut many, 1000),
            Err(ParseError::TooLarge(_))
        ));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        command(&mut out, &[b"SSUBSCRIBE", b"a:room:x"]);
        assert_eq!(&out[..], b"*2\r\n$10\r\nSSUBSCRIBE\r\n$8\r\na:room:x\r\n");
    }
}
