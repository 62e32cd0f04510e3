//! Frame codec tests, grouped by RFC 6455 section; every length boundary x role x chunking.

use super::*;

const BOUNDARIES: [usize; 7] = [0, 1, 125, 126, 127, 65535, 65536];

fn config(role: Role, max_frame_size: Option<usize>) -> DecoderConfig {
    DecoderConfig {
        role,
        max_frame_size,
        allowed_rsv: 0,
    }
}

/// What the peer of `role` would send: clients mask, servers don't.
fn peer_mask(receiver: Role) -> Option<[u8; 4]> {
    match receiver {
        Role::Server => Some([0x12, 0x34, 0x56, 0x78]),
        Role::Client => None,
    }
}

/// Feeds `wire` to a fresh decoder in chunks of `chunk` bytes; collects every frame.
fn decode_chunked(role: Role, wire: &[u8], chunk: usize) -> Result<Vec<Frame>, ProtocolError> {
    let mut decoder = Decoder::with_config(config(role, None));
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    Ok(frames)
}

// RFC 6455 §5.2: payload length encodings.

#[test]
fn every_length_boundary_round_trips_for_both_roles_and_all_chunkings() {
    for role in [Role::Server, Role::Client] {
        for len in BOUNDARIES {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut wire = BytesMut::new();
            encode_frame(
                &mut wire,
                true,
                0,
                OpCode::Binary,
                peer_mask(role),
                &payload,
            );
            let header_len =
                2 + match len {
                    0..=125 => 0,
                    126..=65535 => 2,
                    _ => 8,
                } + if role == Role::Server { 4 } else { 0 };
            assert_eq!(wire.len(), header_len + len, "{role:?} len {len}");
            for chunk in [1, wire.len() / 2, wire.len()] {
                if chunk == 1 && len > 1000 {
                    continue; // byte-at-a-time over 64 KiB is slow and adds nothing
                }
                let frames = decode_chunked(role, &wire, chunk).unwrap();
                assert_eq!(frames.len(), 1);
                assert_eq!(
                    frames[0].payload, payload,
                    "{role:?} len {len} chunk {chunk}"
                );
                assert!(frames[0].fin);
                assert_eq!(frames[0].opcode, OpCode::Binary);
            }
        }
    }
}

#[test]
fn length_with_most_significant_bit_is_rejected() {
    let mut wire = vec![0x82, 0xff];
    wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    let err = Decoder::new(Role::Server)
        .decode(&mut BytesMut::from(&wire[..]))
        .unwrap_err();
    assert_eq!(err, ProtocolError::InvalidPayloadLength);
}

#[test]
fn largest_legal_length_is_refused_by_the_frame_limit_before_any_payload() {
    // 2^63 - 1 is legal framing but must never be buffered: 1009 at the header.
    for role in [Role::Server, Role::Client] {
        let mut wire = vec![0x82, 0x7f];
        if role == Role::Server {
            wire[1] |= 0x80;
        }
        wire.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        if role == Role::Server {
            wire.extend_from_slice(&[1, 2, 3, 4]);
        }
        let err = Decoder::new(role)
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooBig { .. }), "{err:?}");
        assert_eq!(err.close_code(), crate::CloseCode::MESSAGE_TOO_BIG);
    }
}

#[test]
fn frame_limit_is_inclusive() {
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, true, 0, OpCode::Binary, None, &[0; 100]);
    let mut exact = Decoder::with_config(config(Role::Client, Some(100)));
    assert!(exact.decode(&mut wire.clone()).unwrap().is_some());
    let mut smaller = Decoder::with_config(config(Role::Client, Some(99)));
    assert!(smaller.decode(&mut wire).is_err());
}

#[test]
fn several_frames_in_one_buffer_are_all_decoded() {
    let mut wire = BytesMut::new();
    for i in 0..10u8 {
        encode_frame(&mut wire, true, 0, OpCode::Text, None, &[b'a' + i; 3]);
    }
    let frames = decode_chunked(Role::Client, &wire, wire.len()).unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(&frames[9].payload[..], b"jjj");
}

// RFC 6455 §5.1: masking rules.

#[test]
fn server_receives_unmasked_frame() {
    let err = decode_chunked(Role::Server, b"\x81\x02hi", 4).unwrap_err();
    assert_eq!(err, ProtocolError::UnmaskedClientFrame);
}

#[test]
fn client_receives_masked_frame() {
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, true, 0, OpCode::Text, Some([1, 2, 3, 4]), b"hi");
    let err = decode_chunked(Role::Client, &wire, wire.len()).unwrap_err();
    assert_eq!(err, ProtocolError::MaskedServerFrame);
}

#[test]
fn rfc_example_masked_hello() {
    // RFC 6455 §5.7: a single-frame masked text message.
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let frames = decode_chunked(Role::Server, &wire, 1).unwrap();
    assert_eq!(&frames[0].payload[..], b"Hello");
}

// RFC 6455 §5.2: opcodes and reserved bits.

#[test]
fn reserved_opcodes_are_rejected() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let wire = [0x80 | op, 0x00];
        let err = decode_chunked(Role::Client, &wire, 2).unwrap_err();
        assert_eq!(err, ProtocolError::ReservedOpcode(op));
    }
}

#[test]
fn reserved_bits_without_extension_are_rejected() {
    for rsv in [RSV1, RSV2, RSV3] {
        let wire = [0x80 | (rsv << 4) | 0x1, 0x00];
        let err = decode_chunked(Role::Client, &wire, 2).unwrap_err();
        assert_eq!(err, ProtocolError::ReservedBits);
    }
}

#[test]
fn rsv1_is_accepted_once_an_extension_claims_it() {
    let mut decoder = Decoder::with_config(DecoderConfig {
        allowed_rsv: RSV1,
        ..config(Role::Client, None)
    });
    let frame = decoder
        .decode(&mut BytesMut::from(&[0xc1, 0x00][..]))
        .unwrap()
        .unwrap();
    assert_eq!(frame.rsv, RSV1);
}

// RFC 6455 §5.5: control frames.

#[test]
fn fragmented_control_frame_is_rejected() {
    let err = decode_chunked(Role::Client, &[0x09, 0x00], 2).unwrap_err();
    assert_eq!(err, ProtocolError::FragmentedControlFrame);
}

#[test]
fn control_frame_over_125_bytes_is_rejected_at_the_header() {
    let err = decode_chunked(Role::Client, &[0x89, 0x7e, 0x00, 0x7e], 4).unwrap_err();
    assert_eq!(err, ProtocolError::ControlFrameTooLong(126));
}

// Partial payloads (RFC 6455 §8.1 fail-fast needs them).

#[test]
fn partial_payload_is_unmasked_as_it_arrives() {
    let mut wire = BytesMut::new();
    encode_frame(
        &mut wire,
        true,
        0,
        OpCode::Text,
        Some([9, 8, 7, 6]),
        b"hello world",
    );
    let mut decoder = Decoder::new(Role::Server);
    let mut buf = BytesMut::from(&wire[..2 + 4 + 5]);
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    let (header, arrived) = decoder.partial_payload(&buf).unwrap();
    assert_eq!(header.opcode, OpCode::Text);
    assert_eq!(arrived, b"hello");
    buf.extend_from_slice(&wire[11..]);
    let frame = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(&frame.payload[..], b"hello world");
    assert!(decoder.partial_payload(&buf).is_none());
}

#[test]
fn header_encoding_matches_parse_for_all_bits() {
    for fin in [false, true] {
        for rsv in 0..8u8 {
            for mask in [None, Some([1, 2, 3, 4])] {
                for len in BOUNDARIES.iter().map(|&l| l as u64).chain([u64::MAX >> 1]) {
                    let header = FrameHeader {
                        fin,
                        rsv,
                        opcode: OpCode::Binary,
                        mask,
                        payload_len: len,
                    };
                    let mut buf = Vec::new();
                    header.encode(&mut buf);
                    assert_eq!(buf.len(), header.encoded_len());
                    let (parsed, n) = FrameHeader::parse(&buf).unwrap().unwrap();
                    assert_eq!((parsed, n), (header, buf.len()));
                    for short in 0..buf.len() {
                        assert_eq!(FrameHeader::parse(&buf[..short]), Ok(None));
                    }
                }
            }
        }
    }
}
