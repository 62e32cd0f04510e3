//! Errors of the protocol core. Each protocol error knows the close code the RFC requires.

use crate::close::CloseCode;

/// Any error of the protocol core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455; the connection is failed with [`ProtocolError::close_code`].
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error(transparent)]
    Handshake(#[from] crate::handshake::HandshakeError),
    /// A message was sent after the close frame was sent (gorilla's `ErrCloseSent`).
    #[error("connection already closed")]
    AlreadyClosed,
    /// The application asked to send something the protocol forbids.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
}

/// A violation of RFC 6455 by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode the RFC reserves (3–7, 11–15).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV1–3 set while no extension defines them.
    #[error("reserved bits set without an extension")]
    ReservedBits,
    /// A client sent an unmasked frame (RFC 6455 §5.1).
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server sent a masked frame (RFC 6455 §5.1).
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// A control frame with FIN clear (RFC 6455 §5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload (RFC 6455 §5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A 64-bit payload length with the most significant bit set (RFC 6455 §5.2).
    #[error("payload length has its most significant bit set")]
    InvalidPayloadLength,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message was unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// A close payload of exactly one byte.
    #[error("close payload of one byte")]
    InvalidClosePayload,
    /// A close code that may not appear on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message or close reason that is not UTF-8 (close code 1007).
    #[error("invalid utf-8 in text payload")]
    InvalidUtf8,
    /// A compressed message that does not inflate (RFC 7692).
    #[error("invalid compressed data")]
    InvalidCompressedData,
    /// RSV1 on a continuation or control frame (RFC 7692 §6.1).
    #[error("compressed bit on a continuation or control frame")]
    MisplacedCompressedBit,
    /// A frame larger than the configured maximum (close code 1009).
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// The size announced by the frame header.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message larger than the configured maximum (close code 1009).
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooBig {
        /// The size the message reached.
        size: u64,
        /// The configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The close code RFC 6455 §7.4.1 prescribes for failing the connection with this error.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketry_proto::{CloseCode, ProtocolError};
    ///
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// ```
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame, free of peer-controlled data.
    pub fn close_reason(&self) -> &'static str {
        match self {
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::ReservedBits => "reserved bits set",
            Self::UnmaskedClientFrame => "unmasked client frame",
            Self::MaskedServerFrame => "masked server frame",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::ControlFrameTooLong(_) => "control frame too long",
            Self::InvalidPayloadLength => "invalid payload length",
            Self::UnexpectedContinuation => "unexpected continuation frame",
            Self::ExpectedContinuation => "expected continuation frame",
            Self::InvalidClosePayload => "invalid close payload",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::InvalidUtf8 => "invalid utf-8",
            Self::InvalidCompressedData => "invalid compressed data",
            Self::MisplacedCompressedBit => "misplaced compressed bit",
            Self::FrameTooBig { .. } => "frame too big",
            Self::MessageTooBig { .. } => "message too big",
        }
    }
}
