// The fuzzing harness: one function per target, each taking arbitrary bytes and driving the
// core with them; none may panic, loop forever or allocate without bound. Included (with
// `include!`) by the cargo-fuzz targets in `fuzz_targets/` and by the stable test
// `crates/socketry-proto/tests/fuzz_corpus.rs`, which replays `fuzz/corpus/` in CI.

use bytes::{Bytes, BytesMut};
use socketry_proto::{
    CloseFrame, Config, Connection, Role,
    extensions::deflate::{
        Deflate, DeflateConfig, DeflateParams, negotiate_client, negotiate_server,
    },
    frame::{Decoder, RSV1},
    handshake::{parse_request, parse_response, validate_request, validate_response},
};

/// A fuzz target: arbitrary bytes in, no panic out.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: [(&str, Target); 9] = [
    ("frame_decoder", frame_decoder),
    ("handshake_request", handshake_request),
    ("handshake_response", handshake_response),
    ("extensions", extensions),
    ("close_payload", close_payload),
    ("deflate_decoder", deflate_decoder),
    ("deflate_round_trip", deflate_round_trip),
    ("inflate_against_zlib", inflate_against_zlib),
    ("connection", connection),
];

/// Splits off a header byte that picks variants, and chunk sizes from the data itself.
fn split_first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// The frame decoder in either role, with or without RSV1 (compression) allowed, fed in
/// chunks whose sizes the first byte chooses; small frame limit so limits are exercised.
pub fn frame_decoder(data: &[u8]) {
    let (flags, data) = split_first(data);
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let mut decoder = Decoder::new(role);
    if flags & 2 != 0 {
        decoder.set_allowed_rsv(RSV1);
    }
    decoder.set_max_frame_size(Some(1 << 16));
    let chunk = usize::from(flags >> 2).max(1);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.payload.len() <= 1 << 16),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Request parsing and validation, as the server does it.
pub fn handshake_request(data: &[u8]) {
    if let Ok(Some((request, len))) = parse_request(data) {
        assert!(len <= data.len());
        let _ = validate_request(&request);
        let offers = request
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let _ = negotiate_server(offers, &DeflateConfig::default());
    }
}

/// Response parsing and validation, as the client does it (offering compression and a
/// subprotocol).
pub fn handshake_response(data: &[u8]) {
    if let Ok(Some((response, len))) = parse_response(data) {
        assert!(len <= data.len());
        let protocols = ["chat".to_owned()];
        let _ = validate_response(
            &response,
            "dGhlIHNhbXBsZSBub25jZQ==",
            &protocols,
            Some(&DeflateConfig::default()),
        );
    }
}

/// Extension header values (comma and semicolon lists) negotiated in both roles.
pub fn extensions(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values: Vec<&str> = text.split('\n').collect();
    let configs = [
        DeflateConfig::default(),
        DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_max_window_bits(9),
    ];
    for config in &configs {
        if let Some((params, response)) = negotiate_server(values.iter().copied(), config) {
            // What we answer, a client that offered `config` must accept.
            assert!(
                negotiate_client([response.as_str()], Some(config)).is_ok(),
                "our own response {response:?} is refused"
            );
            let _ = params;
        }
        let _ = negotiate_client(values.iter().copied(), Some(config));
    }
}

/// Close frame payloads.
pub fn close_payload(data: &[u8]) {
    if let Ok(Some(frame)) = CloseFrame::parse(data) {
        let mut encoded = Vec::new();
        frame.encode(&mut encoded);
        assert_eq!(CloseFrame::parse(&encoded).unwrap(), Some(frame));
    }
}

/// The inflater with a limit: output never passes limit + 1.
pub fn deflate_decoder(data: &[u8]) {
    let (flags, data) = split_first(data);
    let params = DeflateParams {
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        server_max_window_bits: 9 + (flags >> 2) % 7,
        client_max_window_bits: 15,
    };
    let mut codec = Deflate::new(Role::Server, params, &DeflateConfig::default());
    let limit = 64 * 1024;
    let mut out = BytesMut::new();
    // Two messages from the same data: the context carries over between them.
    for message in data.chunks(data.len() / 2 + 1) {
        out.clear();
        let chunk = usize::from(flags >> 4).max(1) * 16;
        let pieces: Vec<&[u8]> = message.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            match codec.decompress(piece, i + 1 == pieces.len(), &mut out, Some(limit)) {
                Ok(()) => assert!(out.len() <= limit),
                Err(_) => return,
            }
        }
    }
}

/// Messages cut from the data, compressed by socketry's level-1 compressor (or zlib-rs at the
/// level the first byte picks) at every window, with and without context takeover, and
/// inflated by the peer's codec: each must come back as it was sent.
pub fn deflate_round_trip(data: &[u8]) {
    let (flags, data) = split_first(data);
    let no_context = flags & 1 != 0;
    let bits = 9 + (flags >> 1) % 7;
    let level = if flags & 0x10 != 0 { u32::from(flags >> 5) } else { 1 };
    let params = DeflateParams {
        server_no_context_takeover: no_context,
        client_no_context_takeover: no_context,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    let config = DeflateConfig::default()
        .threshold(0)
        .level(level)
        .compression_window_bits(bits);
    let mut sender = Deflate::new(Role::Server, params, &config);
    let mut receiver = Deflate::new(Role::Client, params, &config);
    // Message lengths from the data itself, so short repeats and long ones both occur; a
    // small alphabet makes matches likely.
    let mut rest = data;
    while !rest.is_empty() {
        let len = (usize::from(rest[0]) * 37).min(rest.len());
        let (message, tail) = rest.split_at(len);
        rest = if len == 0 { &rest[1..] } else { tail };
        let message: Vec<u8> = message.iter().map(|b| b % 8 + b'a').collect();
        let compressed = sender.compress(&message);
        let mut out = BytesMut::new();
        receiver
            .decompress(&compressed, true, &mut out, None)
            .expect("our own output inflates");
        assert_eq!(&out[..], &message[..], "round trip");
    }
}

/// The codec's inflater against zlib-rs on arbitrary bytes, taken as two compressed messages
/// of one stream with context takeover (the same bytes twice), 32 KiB windows, each fed in
/// pieces and inflated within a budget per call that the first byte picks, under a 1 MiB or a
/// 1,000-byte limit: where zlib decodes, the codec decodes the same bytes; where zlib fails,
/// the codec fails (or passes the limit first).
pub fn inflate_against_zlib(data: &[u8]) {
    let (flags, data) = split_first(data);
    let chunk = usize::from(flags & 0x3f).max(1) * 3;
    let budget = [usize::MAX, 1, 100, 5000][usize::from(flags >> 6)];
    let limit = if flags & 1 != 0 { 1000 } else { 1 << 20 };
    let ours = codec_inflate(data, chunk, budget, limit);
    let tail: &[u8] = &[0, 0, 0xff, 0xff];
    let (theirs, zlib_failed) = zlib_inflate(&[data, tail, data, tail].concat(), 2 * limit);
    match ours {
        Ok(ours) => {
            assert!(!zlib_failed, "zlib failed where the codec decodes");
            assert_eq!(ours, theirs, "both decode, alike");
        }
        Err(socketry_proto::ProtocolError::MessageTooBig { .. }) => {
            // Each message may be as long as the limit.
            assert!(theirs.len() > limit || zlib_failed, "too big at {}", theirs.len());
        }
        Err(err) => assert!(zlib_failed, "the codec failed ({err:?}) where zlib decodes"),
    }
}

/// Two messages of `data` each through a server's codec with 15-bit windows and context
/// takeover, `budget` bytes of output per call: both outputs.
fn codec_inflate(
    data: &[u8],
    chunk: usize,
    budget: usize,
    limit: usize,
) -> Result<Vec<u8>, socketry_proto::ProtocolError> {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut codec = Deflate::new(Role::Server, params, &DeflateConfig::default());
    let mut all = Vec::new();
    for _ in 0..2 {
        let mut out = BytesMut::new();
        let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut rest = piece;
            loop {
                let step = codec.decompress_some(rest, i == last, &mut out, Some(limit), budget)?;
                assert!(out.len() <= limit, "past the limit");
                rest = &rest[step.consumed..];
                if step.done {
                    break;
                }
            }
        }
        all.extend_from_slice(&out);
    }
    Ok(all)
}

/// zlib-rs's raw inflate of `data` with a 32 KiB window, a new stream after each final block
/// (as a codec built on zlib does): what it produced (up to a little past `limit`) and
/// whether it failed.
fn zlib_inflate(data: &[u8], limit: usize) -> (Vec<u8>, bool) {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut decompress = Decompress::new_with_window_bits(false, 15);
    let mut out = Vec::new();
    let mut rest = data;
    let mut chunk = vec![0u8; 64 * 1024];
    while out.len() <= limit {
        let (before_in, before_out) = (decompress.total_in(), decompress.total_out());
        let status = decompress.decompress(rest, &mut chunk, FlushDecompress::Sync);
        let produced = (decompress.total_out() - before_out) as usize;
        let used = (decompress.total_in() - before_in) as usize;
        out.extend_from_slice(&chunk[..produced]);
        rest = &rest[used..];
        match status {
            Err(_) => return (out, true),
            Ok(Status::StreamEnd) => decompress.reset(false),
            Ok(_) if produced < chunk.len() && (rest.is_empty() || used == 0) => break,
            Ok(_) => {}
        }
    }
    (out, false)
}

/// A whole server connection (compression negotiated) fed arbitrary bytes in chunks,
/// alternating whole-message and fragment reads, its replies drained as a socket would.
pub fn connection(data: &[u8]) {
    let (flags, data) = split_first(data);
    let config = Config::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 18));
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let mut conn = Connection::new(role, config);
    if flags & 2 != 0 {
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: flags & 4 != 0,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        conn.set_deflate(Some(Deflate::new(role, params, &DeflateConfig::default())));
    }
    let chunk = usize::from(flags >> 3).max(1) * 7;
    let mut fragments = false;
    for piece in data.chunks(chunk) {
        conn.receive_data(piece);
        loop {
            let progressed = if fragments {
                matches!(conn.next_fragment(), Ok(Some(_)))
            } else {
                matches!(conn.next_message(), Ok(Some(_)))
            };
            // Replies (pongs, close) leave as a socket would take them: in writes of a size
            // the input picks, so partial writes are exercised too.
            let mut queued = conn.outgoing().len();
            assert!(queued < 4 << 20, "outgoing grew to {queued}");
            while queued > 0 {
                let n = queued.min(chunk * 3);
                conn.outgoing_mut().advance(n);
                queued -= n;
            }
            assert!(conn.outgoing().is_empty());
            if !progressed {
                break;
            }
        }
        fragments = !fragments;
        // The application may send whenever it likes; it must never panic.
        let _ = conn.send(socketry_proto::Message::Binary(Bytes::from_static(b"x")));
    }
}
