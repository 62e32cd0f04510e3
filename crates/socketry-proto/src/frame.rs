//! The base framing protocol (RFC 6455 §5.2): headers, the incremental decoder, and encoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{error::ProtocolError, mask, role::Role};

/// The largest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved values.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The RSV1 bit, used by permessage-deflate (RFC 7692).
pub const RSV1: u8 = 0b100;
/// The RSV2 bit.
pub const RSV2: u8 = 0b010;
/// The RSV3 bit.
pub const RSV3: u8 = 0b001;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final frame of a message.
    pub fin: bool,
    /// The RSV1–3 bits, as the low three bits ([`RSV1`], [`RSV2`], [`RSV3`]).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns the header and its length in bytes, or `Ok(None)` if `buf` holds too few bytes.
    /// Only the checks that need no context are done here: reserved opcodes, the length's most
    /// significant bit, and the control frame rules of RFC 6455 §5.5.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for a header no endpoint may accept.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7f {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut bytes = [0; 8];
                bytes.copy_from_slice(ext);
                let n = u64::from_be_bytes(bytes);
                // RFC 6455 §5.2: the most significant bit MUST be 0.
                if n >> 63 != 0 {
                    return Err(ProtocolError::InvalidPayloadLength);
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            // RFC 6455 §5.5: control frames must not be fragmented and carry at most 125 bytes.
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong(payload_len));
            }
        }
        let mask = if masked {
            let Some(key) = buf.get(len..len + 4) else {
                return Ok(None);
            };
            len += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = Self {
            fin,
            rsv: (b0 >> 4) & 0b111,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, len)))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends this header to `dst`.
    #[inline]
    pub fn encode(&self, dst: &mut impl BufMut) {
        let (bytes, len) = self.bytes();
        dst.put_slice(&bytes[..len]);
    }

    /// This header's bytes (the first `len` of the array): built in place, so that queueing
    /// a frame appends them with one copy.
    #[inline]
    pub(crate) fn bytes(&self) -> ([u8; 14], usize) {
        let mut out = [0u8; 14];
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        (out, len)
    }
}

/// A whole frame with an unmasked payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Whether this is the final frame of a message.
    pub fin: bool,
    /// The RSV1–3 bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The unmasked payload.
    pub payload: Bytes,
}

/// Limits and extension bits the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    /// The role of the endpoint that receives the frames.
    pub role: Role,
    /// The largest payload accepted in one frame, or `None` for no limit.
    pub max_frame_size: Option<usize>,
    /// The RSV bits an extension has claimed; any other set bit is an error.
    pub allowed_rsv: u8,
}

/// An incremental frame decoder.
///
/// Feed it a buffer that grows as bytes arrive; it consumes whole frames from the front. While a
/// frame's payload is still arriving, the part that did arrive is unmasked in place, so that a
/// text message can be validated before its frame is complete ([`Decoder::partial_payload`]).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use socketry_proto::frame::{Decoder, OpCode};
/// use socketry_proto::Role;
///
/// let mut decoder = Decoder::new(Role::Client);
/// let mut buf = BytesMut::from(&[0x81, 0x05, b'H', b'e'][..]);
/// assert!(decoder.decode(&mut buf).unwrap().is_none()); // need more bytes
/// buf.extend_from_slice(b"llo");
/// let frame = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame.opcode, OpCode::Text);
/// assert_eq!(&frame.payload[..], b"Hello");
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    config: DecoderConfig,
    /// The header of the frame whose payload is arriving, and how much of it is unmasked.
    current: Option<(FrameHeader, usize)>,
}

impl Decoder {
    /// A decoder for `role` with the default frame limit (16 MiB) and no extension bits.
    pub fn new(role: Role) -> Self {
        Self::with_config(DecoderConfig {
            role,
            max_frame_size: Some(crate::DEFAULT_MAX_FRAME_SIZE),
            allowed_rsv: 0,
        })
    }

    /// A decoder with explicit limits.
    pub fn with_config(config: DecoderConfig) -> Self {
        Self {
            config,
            current: None,
        }
    }

    /// Changes the RSV bits an extension may use.
    pub fn set_allowed_rsv(&mut self, rsv: u8) {
        self.config.allowed_rsv = rsv;
    }

    /// Changes the frame size limit.
    pub fn set_max_frame_size(&mut self, max: Option<usize>) {
        self.config.max_frame_size = max;
    }

    /// Decodes the next frame from the front of `src`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when `src` holds no complete frame yet; call again once more bytes
    /// were appended. The payload is split off `src` without copying.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for a frame the RFC or the limits forbid. The decoder must not be
    /// used after an error.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if self.start_frame(src)?.is_none() {
            return Ok(None);
        }
        let Some((header, unmasked)) = &mut self.current else {
            return Ok(None);
        };
        let len = header.payload_len as usize; // bounded by the frame limit or by the buffer
        let available = src.len().min(len);
        if let Some(key) = header.mask {
            mask::apply_mask_at(&mut src[*unmasked..available], key, *unmasked);
        }
        *unmasked = available;
        if available < len {
            return Ok(None);
        }
        let header = *header;
        self.current = None;
        Ok(Some(Frame {
            fin: header.fin,
            rsv: header.rsv,
            opcode: header.opcode,
            payload: src.split_to(len).freeze(),
        }))
    }

    /// The header of the frame being received and the unmasked part of its payload that has
    /// arrived so far, if a frame was started. Used to validate text before the frame ends.
    pub fn partial_payload<'a>(&self, src: &'a BytesMut) -> Option<(&FrameHeader, &'a [u8])> {
        let (header, unmasked) = self.current.as_ref()?;
        // `get`: a caller that dropped the buffered bytes (after a failure) gets `None`, not a
        // panic.
        Some((header, src.get(..*unmasked)?))
    }

    /// Whether no frame is in progress (the next byte starts a header).
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.current.is_none()
    }

    /// Forgets the frame in progress (its bytes were dropped).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Parses and checks the next header if no frame is in progress; `Ok(None)` if more bytes
    /// are needed.
    fn start_frame(&mut self, src: &mut BytesMut) -> Result<Option<()>, ProtocolError> {
        if self.current.is_some() {
            return Ok(Some(()));
        }
        let Some((header, header_len)) = FrameHeader::parse(src)? else {
            return Ok(None);
        };
        self.check(&header)?;
        src.advance(header_len);
        self.current = Some((header, 0));
        Ok(Some(()))
    }

    fn check(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.1: clients mask every frame, servers none.
        match (self.config.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        // RFC 6455 §5.2: RSV bits must be 0 unless an extension defines them.
        if header.rsv & !self.config.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        if let Some(max) = self.config.max_frame_size
            && header.payload_len > max as u64
        {
            return Err(ProtocolError::FrameTooBig {
                size: header.payload_len,
                max,
            });
        }
        Ok(())
    }
}

/// Appends a whole frame to `dst`, masking the payload when `mask` is given.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use socketry_proto::frame::{encode_frame, OpCode};
///
/// let mut buf = BytesMut::new();
/// encode_frame(&mut buf, true, 0, OpCode::Text, None, b"Hello");
/// assert_eq!(&buf[..], b"\x81\x05Hello"); // RFC 6455 §5.7
/// ```
pub fn encode_frame(
    dst: &mut BytesMut,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    dst.reserve(header.encoded_len() + payload.len());
    header.encode(dst);
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        mask::apply_mask(&mut dst[start..], key);
    }
}

#[cfg(test)]
mod tests;
