//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use crate::error::ProtocolError;

/// The most bytes a close reason may take: 125 bytes of control payload minus the 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// A close status code (RFC 6455 §7.4).
///
/// A thin wrapper over the `u16` on the wire, with the registered codes as constants.
///
/// # Examples
///
/// ```
/// use socketry_proto::CloseCode;
///
/// assert_eq!(u16::from(CloseCode::PROTOCOL_ERROR), 1002);
/// assert!(CloseCode::from(4000).is_valid());
/// assert!(!CloseCode::NO_STATUS.is_valid()); // 1005 must never be sent
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a message of a type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no code was present in the close frame. Never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text message or close reason was not valid UTF-8.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message or frame was larger than the endpoint accepts.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// The code `code` (for constants: `const SLOW: CloseCode = CloseCode::new(3008);`).
    /// Whether it may be sent is checked when it is: see [`is_valid`](Self::is_valid).
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Valid are the registered codes 1000–1003 and 1007–1014, and 3000–4999 (registered
    /// and private use). 1004–1006 and 1015 are reserved for local use, everything below 1000 and
    /// 1016–2999 is reserved by the RFC, and anything from 5000 up is undefined.
    pub fn is_valid(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The code and reason of a close frame.
///
/// # Examples
///
/// ```
/// use socketry_proto::{CloseCode, CloseFrame};
///
/// let frame = CloseFrame::new(CloseCode::NORMAL, "bye");
/// assert_eq!(frame.code, CloseCode::NORMAL);
/// assert_eq!(frame.reason, "bye");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most [`MAX_REASON_LEN`] bytes of UTF-8.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`, the reason truncated on a char boundary to
    /// [`MAX_REASON_LEN`] bytes.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        reason.truncate(floor_char_boundary(&reason, MAX_REASON_LEN));
        Self { code, reason }
    }

    /// Parses a received close payload (RFC 6455 §5.5.1).
    ///
    /// An empty payload means "no status" and gives `None`.
    ///
    /// # Errors
    ///
    /// A one-byte payload, a payload over 125 bytes (no control frame carries one; found by
    /// the `close_payload` fuzz target, where such a reason did not survive re-encoding) or an
    /// invalid code is a protocol error (1002); a reason that is not UTF-8 is an invalid
    /// payload (1007).
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        if payload.len() > 125 {
            return Err(ProtocolError::ControlFrameTooLong(payload.len() as u64));
        }
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason =
                    simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Self {
                    code,
                    reason: reason.to_owned(),
                }))
            }
        }
    }

    /// Appends the wire form of this frame's payload to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.code.0.to_be_bytes());
        let end = floor_char_boundary(&self.reason, MAX_REASON_LEN);
        dst.extend_from_slice(&self.reason.as_bytes()[..end]);
    }
}

/// The largest index `<= max` that lies on a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_codes_match_rfc_6455_section_7_4() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_valid(), expected, "code {code}");
        }
    }

    #[test]
    fn parse_empty_payload_is_no_status() {
        assert_eq!(CloseFrame::parse(&[]).unwrap(), None);
    }

    #[test]
    fn parse_one_byte_payload_is_protocol_error() {
        let err = CloseFrame::parse(&[3]).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn parse_reserved_code_is_protocol_error() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let err = CloseFrame::parse(&code.to_be_bytes()).unwrap_err();
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR, "code {code}");
        }
    }

    #[test]
    fn parse_invalid_utf8_reason_is_invalid_payload() {
        let err = CloseFrame::parse(&[0x03, 0xe8, 0xff, 0xfe]).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn parse_code_and_reason() {
        let frame = CloseFrame::parse(b"\x03\xe9bye").unwrap().unwrap();
        assert_eq!(frame, CloseFrame::new(CloseCode::GOING_AWAY, "bye"));
    }

    #[test]
    fn long_reason_is_truncated_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes of two-byte chars
        let frame = CloseFrame::new(CloseCode::NORMAL, reason);
        assert_eq!(frame.reason.len(), 122);
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        assert!(wire.len() <= 125);
        assert_eq!(CloseFrame::parse(&wire).unwrap().unwrap(), frame);
    }

    #[test]
    fn encode_truncates_a_reason_set_directly() {
        let frame = CloseFrame {
            code: CloseCode::NORMAL,
            reason: "x".repeat(500),
        };
        let mut wire = Vec::new();
        frame.encode(&mut wire);
        assert_eq!(wire.len(), 125);
    }
}
