//! Property tests of the core: frames and messages survive encode → decode whatever their
//! shape, however they are fragmented and however the bytes are chunked on the way; the
//! masking fast path equals the scalar one.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use socketry_proto::{
    Config, Connection, Message, OpCode, Role,
    frame::{Decoder, encode_frame},
    mask::{apply_mask_at, apply_mask_scalar},
};

/// Cuts `bytes` into pieces at the given (sorted, deduplicated) boundaries.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.min(bytes.len());
        if cut > start {
            out.push(bytes[start..cut].to_vec());
            start = cut;
        }
    }
    out.push(bytes[start..].to_vec());
    out
}

fn boundaries(len: usize, count: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..=count).prop_map(|mut v| {
        v.sort_unstable();
        v.dedup();
        v
    })
}

fn frame_case() -> impl Strategy<Value = (bool, u8, OpCode, bool, Vec<u8>)> {
    prop_oneof![
        (
            any::<bool>(),
            0u8..8,
            prop_oneof![
                Just(OpCode::Text),
                Just(OpCode::Binary),
                Just(OpCode::Continuation)
            ],
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..70_000),
        ),
        (
            Just(true),
            Just(0u8),
            prop_oneof![Just(OpCode::Ping), Just(OpCode::Pong), Just(OpCode::Close)],
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..=125),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any frame decodes to itself, from any chunking of its bytes.
    #[test]
    fn frames_round_trip_under_any_chunking(
        (fin, rsv, opcode, masked, payload) in frame_case(),
        key in any::<[u8; 4]>(),
        cuts in boundaries(70_020, 8),
    ) {
        let (mask, role) = if masked { (Some(key), Role::Server) } else { (None, Role::Client) };
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, fin, rsv, opcode, mask, &payload);
        let mut decoder = Decoder::new(role);
        decoder.set_allowed_rsv(0b111);
        decoder.set_max_frame_size(None);
        let mut buf = BytesMut::new();
        let mut decoded = None;
        for piece in pieces(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            if let Some(frame) = decoder.decode(&mut buf).unwrap() {
                prop_assert!(decoded.is_none(), "one frame only");
                decoded = Some(frame);
            }
        }
        let frame = decoded.expect("the whole frame decodes");
        prop_assert_eq!(frame.fin, fin);
        prop_assert_eq!(frame.rsv, rsv);
        prop_assert_eq!(frame.opcode, opcode);
        prop_assert_eq!(&frame.payload[..], &payload[..]);
        prop_assert!(buf.is_empty());
    }

    /// A message sent as fragments split at random points (inside UTF-8 characters too),
    /// delivered in random chunks, arrives whole and equal, in both directions.
    #[test]
    fn fragmented_messages_arrive_whole_under_any_chunking(
        text in any::<bool>(),
        body in proptest::collection::vec(any::<char>(), 0..3000),
        splits in boundaries(12_000, 6),
        cuts in boundaries(12_100, 10),
        from_client in any::<bool>(),
    ) {
        let (sender_role, receiver_role) = if from_client {
            (Role::Client, Role::Server)
        } else {
            (Role::Server, Role::Client)
        };
        let payload: Vec<u8> = if text {
            body.iter().collect::<String>().into_bytes()
        } else {
            body.iter().map(|c| *c as u8).collect()
        };
        let mut sender = Connection::new(sender_role, Config::default());
        let fragments = pieces(&payload, &splits);
        let last = fragments.len() - 1;
        for (i, fragment) in fragments.into_iter().enumerate() {
            let opcode = match (i, text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            sender.send_frame(opcode, Bytes::from(fragment), i == last).unwrap();
        }
        let mut wire = Vec::new();
        while !sender.outgoing().is_empty() {
            let chunk = sender.outgoing().chunk().to_vec();
            sender.outgoing_mut().advance(chunk.len());
            wire.extend_from_slice(&chunk);
        }
        let mut receiver = Connection::new(receiver_role, Config::default());
        let mut received = None;
        for piece in pieces(&wire, &cuts) {
            receiver.receive_data(&piece);
            if let Some(message) = receiver.next_message().unwrap() {
                prop_assert!(received.is_none(), "one message only");
                received = Some(message);
            }
        }
        let expected = if text {
            Message::text(String::from_utf8(payload).unwrap())
        } else {
            Message::binary(payload)
        };
        prop_assert_eq!(received, Some(expected));
    }

    /// The 8-bytes-at-a-time mask equals the byte-by-byte reference at any offset.
    #[test]
    fn masking_fast_path_equals_scalar(
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        key in any::<[u8; 4]>(),
        offset in 0usize..16,
    ) {
        let mut fast = data.clone();
        let mut slow = data.clone();
        apply_mask_at(&mut fast, key, offset);
        apply_mask_scalar(&mut slow, key, offset);
        prop_assert_eq!(&fast, &slow);
        apply_mask_at(&mut fast, key, offset);
        prop_assert_eq!(fast, data, "masking twice restores the data");
    }

    /// Any sequence of messages compressed at level 1 (socketry's own compressor) at any
    /// window, with or without context takeover, inflates to itself in the peer (zlib-rs).
    /// Messages are drawn from a few-letter alphabet and from copies of each other, so that
    /// matches at every distance, overlapping ones and matches into earlier messages occur.
    #[test]
    fn level_one_compression_round_trips(
        messages in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(0u8..4, 0..3000),
                proptest::collection::vec(any::<u8>(), 0..300),
                (0usize..9000).prop_map(|n| b"abcabcabd".repeat(n / 9 + 1)),
            ],
            1..12,
        ),
        bits in 9u8..=15,
        no_context in any::<bool>(),
    ) {
        use socketry_proto::extensions::deflate::{Deflate, DeflateConfig, DeflateParams};
        let params = DeflateParams {
            server_no_context_takeover: no_context,
            client_no_context_takeover: no_context,
            server_max_window_bits: bits,
            client_max_window_bits: bits,
        };
        let config = DeflateConfig::default().threshold(0).compression_window_bits(bits);
        let mut sender = Deflate::new(Role::Server, params, &config);
        let mut receiver = Deflate::new(Role::Client, params, &config);
        for message in &messages {
            let compressed = sender.compress(message);
            let mut out = BytesMut::new();
            receiver.decompress(&compressed, true, &mut out, None).unwrap();
            prop_assert_eq!(&out[..], &message[..]);
        }
    }
}
