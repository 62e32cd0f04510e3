//! gorilla's close helpers: [`CloseError`], [`is_close_error`], [`is_unexpected_close_error`],
//! [`format_close_message`].

use bytes::Bytes;
use socketry_proto::{CloseCode, CloseFrame, Message};

use crate::Error;

/// How a connection ended, as a code and a text (gorilla's `CloseError`).
///
/// Built from the peer's close ([`Message::Close`]) or from the error that ended the
/// connection: an abnormal closure is 1006, a protocol violation the code that was sent for it.
///
/// # Examples
///
/// ```
/// use socketry::{CloseCode, CloseError, CloseFrame, Message};
///
/// let message = Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "bye")));
/// let err = CloseError::from_message(&message).unwrap();
/// assert_eq!((err.code, err.text.as_str()), (CloseCode::GOING_AWAY, "bye"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("websocket closed: {code} {text}")]
pub struct CloseError {
    /// The close code; 1005 when the peer's close had none, 1006 when there was no close frame.
    pub code: CloseCode,
    /// The reason.
    pub text: String,
}

impl CloseError {
    /// The close a message carries, if it is a close.
    pub fn from_message(message: &Message) -> Option<Self> {
        match message {
            Message::Close(Some(CloseFrame { code, reason })) => Some(Self {
                code: *code,
                text: reason.clone(),
            }),
            Message::Close(None) => Some(Self {
                code: CloseCode::NO_STATUS,
                text: String::new(),
            }),
            _ => None,
        }
    }

    /// The close an error amounts to, if it ended the connection.
    pub fn from_error(err: &Error) -> Option<Self> {
        match err {
            Error::AbnormalClosure | Error::Io(_) => Some(Self {
                code: CloseCode::ABNORMAL,
                text: err.to_string(),
            }),
            Error::Protocol(e) => Some(Self {
                code: e.close_code(),
                text: e.close_reason().to_owned(),
            }),
            Error::Timeout(crate::Timeout::Keepalive) => Some(Self {
                code: CloseCode::INTERNAL_ERROR,
                text: "keepalive timeout".to_owned(),
            }),
            _ => None,
        }
    }

    /// The close a received item amounts to: a close message or an ending error.
    pub fn from_result(result: &Result<Message, Error>) -> Option<Self> {
        match result {
            Ok(message) => Self::from_message(message),
            Err(err) => Self::from_error(err),
        }
    }
}

/// Whether `received` is a close with one of `codes` (gorilla's `IsCloseError`).
///
/// # Examples
///
/// ```
/// use socketry::{CloseCode, CloseFrame, Message, is_close_error};
///
/// let bye = Ok(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))));
/// assert!(is_close_error(&bye, &[CloseCode::NORMAL, CloseCode::GOING_AWAY]));
/// ```
pub fn is_close_error(received: &Result<Message, Error>, codes: &[CloseCode]) -> bool {
    CloseError::from_result(received).is_some_and(|c| codes.contains(&c.code))
}

/// Whether `received` is a close whose code is not one of `expected` (gorilla's
/// `IsUnexpectedCloseError`): log these, not the normal ones.
///
/// # Examples
///
/// ```
/// use socketry::{CloseCode, Error, is_unexpected_close_error};
///
/// let vanished: Result<socketry::Message, Error> = Err(Error::AbnormalClosure);
/// assert!(is_unexpected_close_error(&vanished, &[CloseCode::NORMAL, CloseCode::GOING_AWAY]));
/// ```
pub fn is_unexpected_close_error(
    received: &Result<Message, Error>,
    expected: &[CloseCode],
) -> bool {
    CloseError::from_result(received).is_some_and(|c| !expected.contains(&c.code))
}

/// The payload of a close frame with `code` and `text`, the text truncated on a char boundary
/// to 123 bytes (gorilla's `FormatCloseMessage`).
///
/// # Examples
///
/// ```
/// let payload = socketry::format_close_message(socketry::CloseCode::NORMAL, "bye");
/// assert_eq!(&payload[..], b"\x03\xe8bye");
/// ```
pub fn format_close_message(code: CloseCode, text: &str) -> Bytes {
    Message::Close(Some(CloseFrame::new(code, text))).into_payload()
}
