//! permessage-deflate: negotiation tables for both roles (RFC 7692 §7.1) and the codec.

use super::*;

const LEVEL: u32 = 6;

fn server(offer: &str) -> Option<(DeflateParams, String)> {
    negotiate_server([offer], &DeflateConfig::default())
}

#[test]
fn server_accepts_each_parameter_with_and_without_values() {
    let (p, r) = server("permessage-deflate").unwrap();
    assert_eq!(r, "permessage-deflate");
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (15, 15)
    );

    let (p, r) = server("permessage-deflate; server_no_context_takeover").unwrap();
    assert!(p.server_no_context_takeover);
    assert_eq!(r, "permessage-deflate; server_no_context_takeover");

    let (p, r) = server("permessage-deflate; client_no_context_takeover").unwrap();
    assert!(p.client_no_context_takeover);
    assert_eq!(r, "permessage-deflate; client_no_context_takeover");

    let (p, r) = server("permessage-deflate; server_max_window_bits=9").unwrap();
    assert_eq!(p.server_max_window_bits, 9);
    assert_eq!(r, "permessage-deflate; server_max_window_bits=9");

    // A client limits nothing by default: the server may pick any window for it.
    assert_eq!(
        DeflateConfig::default().offer(),
        "permessage-deflate; client_max_window_bits"
    );
    // Offered without a value, the client's window is ours to limit: 12 bits by default.
    let (p, r) = server("permessage-deflate; client_max_window_bits").unwrap();
    assert_eq!(p.client_max_window_bits, 12);
    assert_eq!(r, "permessage-deflate; client_max_window_bits=12");
    let wide = DeflateConfig::default().client_max_window_bits(15);
    let (p, r) = negotiate_server(["permessage-deflate; client_max_window_bits"], &wide).unwrap();
    assert_eq!(p.client_max_window_bits, 15);
    assert_eq!(r, "permessage-deflate");

    let (p, r) = server("permessage-deflate; client_max_window_bits=\"10\"").unwrap();
    assert_eq!(p.client_max_window_bits, 10);
    assert_eq!(r, "permessage-deflate; client_max_window_bits=10");
}

#[test]
fn server_declines_invalid_offers_and_takes_the_first_valid_one() {
    for bad in [
        "permessage-deflate; server_max_window_bits", // value required
        "permessage-deflate; server_max_window_bits=7", // out of range
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=010", // leading zero
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_param",
        "permessage-deflate; client_max_window_bits=\"1 0\"",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(server(bad), None, "{bad}");
    }
    let (p, _) = negotiate_server(
        [
            "permessage-deflate; server_max_window_bits=99",
            "permessage-deflate; client_no_context_takeover",
        ],
        &DeflateConfig::default(),
    )
    .unwrap();
    assert!(p.client_no_context_takeover, "the second offer was taken");
}

#[test]
fn server_configuration_narrows_the_agreement() {
    let config = DeflateConfig::default()
        .server_max_window_bits(10)
        .client_max_window_bits(11)
        .server_no_context_takeover(true);
    let (p, r) = negotiate_server(["permessage-deflate; client_max_window_bits"], &config).unwrap();
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (10, 11)
    );
    assert!(p.server_no_context_takeover);
    assert_eq!(
        r,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    );
    // Without client_max_window_bits in the offer the client window cannot be limited.
    let (p, _) = negotiate_server(["permessage-deflate"], &config).unwrap();
    assert_eq!(p.client_max_window_bits, 15);
}

#[test]
fn client_accepts_responses_within_its_offer() {
    let config = DeflateConfig::default();
    let ok = |response: &str| negotiate_client([response], Some(&config));
    assert_eq!(ok("").unwrap(), None, "declined: no compression, no error");
    let p = ok("permessage-deflate; server_no_context_takeover; client_max_window_bits=9")
        .unwrap()
        .unwrap();
    assert!(p.server_no_context_takeover);
    assert_eq!(p.client_max_window_bits, 9);
    let p = ok("permessage-deflate; client_max_window_bits=8")
        .unwrap()
        .unwrap();
    assert_eq!(
        p.client_max_window_bits, 8,
        "accepted; we then send uncompressed"
    );
}

#[test]
fn client_fails_responses_it_did_not_offer() {
    let narrow = DeflateConfig::default()
        .server_max_window_bits(10)
        .client_max_window_bits(12);
    for (response, offered) in [
        ("permessage-deflate", None),
        ("x-unknown", Some(&DeflateConfig::default())),
        (
            "permessage-deflate, permessage-deflate",
            Some(&DeflateConfig::default()),
        ),
        ("permessage-deflate; bogus", Some(&DeflateConfig::default())),
        (
            "permessage-deflate; server_max_window_bits=12",
            Some(&narrow),
        ),
        (
            "permessage-deflate; client_max_window_bits=13",
            Some(&narrow),
        ),
        ("permessage-deflate; client_max_window_bits", Some(&narrow)),
    ] {
        assert!(
            matches!(
                negotiate_client([response], offered),
                Err(HandshakeError::UnexpectedExtension(_))
            ),
            "{response}"
        );
    }
}

fn pair(params: DeflateParams) -> (Deflate, Deflate) {
    pair_at(params, LEVEL)
}

/// A server and a client codec at `level`, compressing with the whole negotiated window.
fn pair_at(params: DeflateParams, level: u32) -> (Deflate, Deflate) {
    let config = DeflateConfig::default()
        .threshold(0)
        .level(level)
        .compression_window_bits(15);
    (
        Deflate::new(Role::Server, params, &config),
        Deflate::new(Role::Client, params, &config),
    )
}

fn params(no_context: bool, bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context,
        client_no_context_takeover: no_context,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

#[test]
fn round_trips_with_and_without_context_takeover_at_every_window_size() {
    // Words in a pseudo-random order: little repetition inside one message, a lot across them.
    let words = [
        "socket", "frame", "deflate", "window", "context", "message", "peer", "close",
    ];
    let mut seed = 7u32;
    let text: Vec<&str> = (0..400)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            words[(seed >> 16) as usize % words.len()]
        })
        .collect();
    let text = text.join(" ");
    // Level 1 is socketry's own compressor, 6 zlib-rs.
    for (level, no_context) in [(1, false), (1, true), (6, false), (6, true)] {
        for bits in 9..=15 {
            let (mut server, mut client) = pair_at(params(no_context, bits), level);
            let mut sizes = Vec::new();
            for round in 0..3 {
                let message = format!("{round}: {text}");
                let compressed = server.compress(message.as_bytes());
                sizes.push(compressed.len());
                let mut out = BytesMut::new();
                client
                    .decompress(&compressed, true, &mut out, None)
                    .unwrap();
                assert_eq!(
                    &out[..],
                    message.as_bytes(),
                    "level {level} bits {bits} round {round}"
                );
                assert_eq!(
                    server.holds_state(),
                    !no_context,
                    "state dropped without takeover"
                );
            }
            // (Level 1 probes one earlier position per byte, which is usually a nearer,
            // shorter repeat than the whole message before: it gains less from the window.)
            if !no_context && bits == 15 {
                let factor = if level == 1 { 1 } else { 2 };
                assert!(
                    sizes[1] < sizes[0] / factor,
                    "context takeover reuses the window: {sizes:?}"
                );
            }
        }
    }
}

#[test]
fn fragments_of_a_compressed_message_inflate_one_by_one() {
    let (mut server, mut client) = pair(params(false, 15));
    let message = vec![42u8; 100_000];
    let compressed = server.compress(&message);
    let mut out = BytesMut::new();
    let pieces: Vec<&[u8]> = compressed.chunks(7).collect();
    for (i, piece) in pieces.iter().enumerate() {
        client
            .decompress(piece, i + 1 == pieces.len(), &mut out, None)
            .unwrap();
    }
    assert_eq!(out.len(), message.len());
}

#[test]
fn empty_message_compresses_to_a_single_zero_byte() {
    let (mut server, mut client) = pair(params(true, 15));
    let compressed = server.compress(b"");
    assert_eq!(&compressed[..], &[0x00]);
    let mut out = BytesMut::new();
    client
        .decompress(&compressed, true, &mut out, None)
        .unwrap();
    assert!(out.is_empty());
}

#[test]
fn eight_bit_window_means_sending_uncompressed() {
    let (server, _) = pair(params(false, 8));
    assert!(!server.should_compress(1000));
}

#[test]
fn garbage_is_invalid_compressed_data() {
    let (_, mut client) = pair(params(false, 15));
    let mut out = BytesMut::new();
    assert_eq!(
        client.decompress(&[0xff, 0xff, 0xff, 0xff, 0x12], true, &mut out, None),
        Err(ProtocolError::InvalidCompressedData)
    );
}

/// Compressed blocks that each inflate to 2 MiB of zeros; repeated they make a bomb.
fn zero_blocks() -> Vec<u8> {
    let mut compressor = Compress::new_with_window_bits(Compression::best(), false, 15);
    let mut blocks = compress_with(&mut compressor, &vec![0u8; 2 << 20]).to_vec();
    blocks.extend_from_slice(&TAIL); // end on a block boundary so that copies can follow
    blocks
}

#[test]
fn a_bomb_stops_at_the_limit_without_allocating_past_it() {
    let block = zero_blocks();
    assert!(
        block.len() < 4096,
        "2 MiB of zeros deflate to {} bytes",
        block.len()
    );
    // 512 blocks: about 1 MiB on the wire that would inflate to 1 GiB.
    let bomb: Vec<u8> = block
        .iter()
        .copied()
        .cycle()
        .take(block.len() * 512)
        .collect();
    let (_, mut client) = pair(params(false, 15));
    let mut out = BytesMut::new();
    let limit = 16 << 20;
    let err = client
        .decompress(&bomb, true, &mut out, Some(limit))
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::MessageTooBig { .. }),
        "{err:?}"
    );
    assert!(out.len() <= limit + 1, "inflated {} bytes", out.len());
    assert!(
        out.capacity() <= limit + (64 << 10) + 1,
        "allocated {} bytes",
        out.capacity()
    );
}

#[test]
fn a_peer_without_context_takeover_cannot_reach_into_its_previous_message() {
    // The server inflates each message of this peer with a fresh (reused, reset) stream; a
    // peer that breaks the agreement and refers back to its last message must fail, not be
    // decoded from what the reused state still holds.
    let agreed = params(true, 15);
    let lying = DeflateParams {
        client_no_context_takeover: false,
        ..agreed
    };
    let config = DeflateConfig::default()
        .threshold(0)
        .compression_window_bits(15);
    let mut server = Deflate::new(Role::Server, agreed, &config);
    let mut client = Deflate::new(Role::Client, lying, &config);
    let message = b"a message long enough to be found again in the window, twice over".repeat(4);
    for round in 0..3 {
        let compressed = client.compress(&message);
        let mut out = BytesMut::new();
        let result = server.decompress(&compressed, true, &mut out, None);
        if round == 0 {
            result.unwrap();
            assert_eq!(&out[..], &message[..]);
        } else {
            assert!(
                matches!(result, Err(ProtocolError::InvalidCompressedData)),
                "round {round}: {result:?}"
            );
        }
    }
}

#[test]
fn the_compression_window_is_the_negotiated_one_narrowed_by_the_configuration() {
    let window = |negotiated: u8, config: DeflateConfig| {
        Deflate::new(Role::Server, params(false, negotiated), &config).send_window_bits()
    };
    let default = DeflateConfig::default();
    assert_eq!(window(15, default), 15, "the default is zlib's window");
    assert_eq!(window(15, default.compression_window_bits(12)), 12);
    assert_eq!(window(10, default), 10, "never more than negotiated");
    assert_eq!(window(8, default), 8, "8 stays 8: sent uncompressed");
    assert_eq!(window(15, default.compression_window_bits(15)), 15);
    assert_eq!(window(13, default.compression_window_bits(9)), 9);
    // Each role compresses with its own side's window.
    let sides = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 10,
        client_max_window_bits: 13,
    };
    let wide = default;
    assert_eq!(
        Deflate::new(Role::Server, sides, &wide).send_window_bits(),
        10
    );
    assert_eq!(
        Deflate::new(Role::Client, sides, &wide).send_window_bits(),
        13
    );
    assert_eq!(
        Deflate::new(Role::Client, sides, &default.compression_window_bits(12)).send_window_bits(),
        12
    );
}

#[test]
fn a_zero_budget_still_makes_progress() {
    let (mut sender, mut receiver) = pair(params(false, 15));
    let message = b"hello hello hello hello, a zero budget counts as one byte".repeat(20);
    let compressed = sender.compress(&message);
    let mut out = BytesMut::new();
    let mut rest = &compressed[..];
    for _ in 0..100_000 {
        let step = receiver
            .decompress_some(rest, true, &mut out, None, 0)
            .unwrap();
        rest = &rest[step.consumed..];
        if step.done {
            assert_eq!(&out[..], &message[..]);
            return;
        }
    }
    panic!("no end after 100,000 calls");
}
