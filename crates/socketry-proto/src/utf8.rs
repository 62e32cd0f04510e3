//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! RFC 6455 §8.1 asks an endpoint to fail the connection as soon as a text message is known to
//! be invalid, which may be in the middle of a frame or a fragment. The validator keeps the at
//! most three bytes of an unfinished code point between pieces and rejects a piece as soon as no
//! continuation could make it valid.

use crate::error::ProtocolError;

/// Validates a byte stream as UTF-8, piece by piece.
///
/// # Examples
///
/// ```
/// use socketry_proto::utf8::Utf8Validator;
///
/// let mut v = Utf8Validator::default();
/// let euro = "€".as_bytes(); // three bytes
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..]).unwrap();
/// v.finish().unwrap();
///
/// assert!(Utf8Validator::default().feed(&[0xff]).is_err()); // fails at once
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// Validates the next piece.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::InvalidUtf8`] as soon as the bytes seen so far cannot start valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let width = char_width(self.pending[0]);
            let take = (width - have).min(data.len());
            self.pending[have..have + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            let have = have + take;
            self.pending_len = have as u8; // have <= 4
            let unfinished = check_prefix(&self.pending[..have])?;
            if unfinished {
                return Ok(());
            }
            self.pending_len = 0;
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        let err = simdutf8::compat::from_utf8(data).unwrap_err();
        if err.error_len().is_some() {
            return Err(ProtocolError::InvalidUtf8);
        }
        // Only an unfinished code point at the end: keep it for the next piece.
        let tail = &data[err.valid_up_to()..];
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len() as u8; // at most 3
        Ok(())
    }

    /// Ends the stream.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::InvalidUtf8`] if the stream stopped inside a code point.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let unfinished = self.pending_len > 0;
        self.pending_len = 0;
        if unfinished {
            Err(ProtocolError::InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Forgets any state, ready for a new message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// Checks a byte sequence of one code point; `Ok(true)` if it is a valid but unfinished prefix.
fn check_prefix(bytes: &[u8]) -> Result<bool, ProtocolError> {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => Ok(false),
        Err(err) if err.error_len().is_none() => Ok(true),
        Err(_) => Err(ProtocolError::InvalidUtf8),
    }
}

/// The width of the code point a lead byte starts. Only called on bytes that `simdutf8` left
/// as an unfinished code point, so they are valid lead bytes of multi-byte sequences.
fn char_width(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_in_pieces(data: &[u8], piece: usize) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::default();
        for chunk in data.chunks(piece.max(1)) {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let samples: Vec<Vec<u8>> = vec![
            "κόσμε".into(),
            "Hello-µ@ßöäüàá-UTF-8!!".into(),
            "\u{10FFFF}\u{FFFF}\u{0800}\u{007F}\u{0080}".into(),
            vec![
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
            vec![0xf4, 0x90, 0x80, 0x80],
            vec![0xc0, 0xaf],
            vec![0xe0, 0x80, 0xaf],
            vec![0xed, 0xbf, 0xbf],
            vec![0xf0, 0x9f, 0x98],
            vec![0xc2],
            vec![0x80],
            "a€b𝄞c".into(),
        ];
        for sample in &samples {
            let expected = std::str::from_utf8(sample).is_ok();
            for piece in 1..=sample.len() {
                assert_eq!(
                    validate_in_pieces(sample, piece).is_ok(),
                    expected,
                    "{sample:x?} in pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_before_the_end_of_the_stream() {
        // Autobahn 6.4.x: the bad byte arrives long before the message ends.
        let mut v = Utf8Validator::default();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert!(v.feed(&[0xf4, 0x90]).is_err());
    }

    #[test]
    fn fails_fast_inside_a_split_code_point() {
        let mut v = Utf8Validator::default();
        v.feed(&[0xf4]).unwrap();
        assert!(v.feed(&[0x90]).is_err(), "U+110000 and above are invalid");
    }

    #[test]
    fn unfinished_code_point_fails_at_finish() {
        let mut v = Utf8Validator::default();
        v.feed(&[b'a', 0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
    }
}
