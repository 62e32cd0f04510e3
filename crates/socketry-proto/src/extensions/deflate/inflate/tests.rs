//! The decoder on what zlib-rs (through flate2) writes: every level and window decodes to
//! what went in, whatever the input's and output's slicing; and the limits, windows, stream
//! ends and malformed headers. (Corrupted streams against zlib: `fuzz/harness.rs`'s
//! `inflate_against_zlib`, run on random mutations by `tests/fuzz_corpus.rs`.)

use flate2::{Compress, Compression, FlushCompress};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;

/// Decodes `input` fed `chunk` bytes at a time, with at most `budget` bytes of output per
/// call, committing after each call as the codec does.
fn decode_with(
    inflater: &mut Inflater,
    input: &[u8],
    chunk: usize,
    budget: usize,
    limit: usize,
) -> Result<Vec<u8>, ProtocolError> {
    let mut out = BytesMut::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        loop {
            let mut base = out.len();
            let stop_at = out.len().saturating_add(budget);
            let (used, done) = inflater.inflate(rest, &mut out, &mut base, limit, stop_at)?;
            inflater.commit(&out[base..]);
            rest = &rest[used..];
            if done {
                break;
            }
            assert!(used > 0 || out.len() >= stop_at, "no progress");
        }
    }
    Ok(out.to_vec())
}

fn decode(inflater: &mut Inflater, input: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    decode_with(inflater, input, usize::MAX, usize::MAX, usize::MAX)
}

/// zlib's raw deflate of each message with a sync flush, one stream for all of them.
fn zlib_messages(messages: &[&[u8]], level: u32, bits: u8) -> Vec<Vec<u8>> {
    let mut compress = Compress::new_with_window_bits(Compression::new(level), false, bits);
    messages
        .iter()
        .map(|message| {
            let mut out = Vec::with_capacity(message.len() + 1024);
            let start = compress.total_in();
            loop {
                let used = (compress.total_in() - start) as usize;
                if out.capacity() - out.len() < 64 {
                    out.reserve(out.capacity());
                }
                compress
                    .compress_vec(&message[used..], &mut out, FlushCompress::Sync)
                    .unwrap();
                let all_in = (compress.total_in() - start) as usize == message.len();
                if all_in && out.len() < out.capacity() {
                    break;
                }
            }
            out
        })
        .collect()
}

fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let words = [
        "\"event\":",
        "\"user\"",
        "{\"id\":",
        "presence",
        " ",
        ",",
        "}",
        "room-",
        "hello",
        "\"ts\":1700000000",
        "join",
        "leave",
    ];
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        if rng.random_bool(0.1) {
            out.extend((0..rng.random_range(1..8)).map(|_| rng.random::<u8>()));
        } else {
            out.extend_from_slice(words[rng.random_range(0..words.len())].as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn samples() -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(7);
    vec![
        Vec::new(),
        b"a".to_vec(),
        vec![0; 100_000],
        (0..=255u8).cycle().take(70_000).collect(),
        (0..50_000).map(|_| rng.random()).collect(),
        text(40_000, 1),
        text(300, 2),
    ]
}

#[test]
fn decodes_what_zlib_writes_at_every_level_and_window() {
    for data in samples() {
        for level in 0..=9 {
            for bits in 9..=15 {
                let stream = &zlib_messages(&[&data], level, bits)[0];
                let mut inflater = Inflater::new(bits);
                let decoded = decode(&mut inflater, stream)
                    .unwrap_or_else(|e| panic!("level {level}, {bits} bits, {}: {e}", data.len()));
                assert_eq!(
                    decoded,
                    data,
                    "level {level}, {bits} bits, {} bytes",
                    data.len()
                );
            }
        }
    }
}

#[test]
fn decodes_whatever_the_slicing_of_input_and_output() {
    let data = [text(20_000, 3), vec![b'z'; 3000], text(5000, 4)].concat();
    for level in [0, 1, 6, 9] {
        let stream = &zlib_messages(&[&data], level, 15)[0];
        for (chunk, budget) in [
            (1, usize::MAX),
            (2, 7),
            (3, 1),
            (7, 300),
            (1000, 1),
            (13, 4096),
        ] {
            let mut inflater = Inflater::new(15);
            let decoded = decode_with(&mut inflater, stream, chunk, budget, usize::MAX).unwrap();
            assert!(
                decoded == data,
                "level {level}, chunks of {chunk}, budget {budget}"
            );
        }
    }
}

#[test]
fn context_takeover_reaches_into_earlier_messages_in_every_window() {
    let messages: Vec<Vec<u8>> = (0..30).map(|i| text(200 + i * 97, i as u64 % 4)).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    for bits in 9..=15 {
        for level in [1, 6, 9] {
            let streams = zlib_messages(&refs, level, bits);
            let compressed: usize = streams.iter().map(Vec::len).sum();
            let plain: usize = messages.iter().map(Vec::len).sum();
            assert!(compressed < plain / 2, "the messages repeat each other");
            let mut inflater = Inflater::new(bits);
            for (i, (stream, message)) in streams.iter().zip(&messages).enumerate() {
                let decoded = decode_with(&mut inflater, stream, 5 + i, 50 + i, usize::MAX);
                assert_eq!(&decoded.unwrap(), message, "{bits} bits, message {i}");
                inflater.end_message(false);
            }
        }
    }
}

#[test]
fn output_never_passes_the_limit() {
    let bomb = &zlib_messages(&[&vec![0u8; 4 << 20]], 9, 15)[0];
    assert!(bomb.len() < 8192);
    for budget in [usize::MAX, 1000] {
        let mut inflater = Inflater::new(15);
        let mut out = BytesMut::new();
        let mut rest = &bomb[..];
        let err = loop {
            let mut base = out.len();
            let stop_at = out.len().saturating_add(budget);
            match inflater.inflate(rest, &mut out, &mut base, 65_536, stop_at) {
                Ok((used, _)) => rest = &rest[used..],
                Err(err) => break err,
            }
            assert!(out.len() <= 65_536);
            inflater.commit(&out[base..]);
        };
        assert!(
            matches!(err, ProtocolError::MessageTooBig { max: 65_536, .. }),
            "{err:?}"
        );
        assert!(out.capacity() <= 65_536 + MAX_MATCH, "{}", out.capacity());
    }
    // Exactly at the limit is fine.
    let exact = &zlib_messages(&[&vec![1u8; 10_000]], 6, 15)[0];
    assert_eq!(
        decode_with(&mut Inflater::new(15), exact, 100, 333, 10_000).unwrap(),
        vec![1u8; 10_000]
    );
}

#[test]
fn a_distance_past_the_negotiated_window_fails() {
    // Matches 1,000 bytes back, which a 9-bit (512-byte) window does not reach.
    let block: Vec<u8> = (0..1000).map(|_| rand::random::<u8>()).collect();
    let data = [block.clone(), block].concat();
    let stream = &zlib_messages(&[&data], 6, 15)[0];
    assert_eq!(decode(&mut Inflater::new(15), stream).unwrap(), data);
    assert_eq!(
        decode(&mut Inflater::new(9), stream),
        Err(ProtocolError::InvalidCompressedData)
    );
}

/// Writes deflate bits, least significant first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) -> &mut Self {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
        self
    }

    /// A Huffman code, which deflate writes most significant bit first.
    fn code(&mut self, code: u32, len: u32) -> &mut Self {
        self.put(code.reverse_bits() >> (32 - len), len)
    }

    /// A literal of the fixed code.
    fn literal(&mut self, byte: u8) -> &mut Self {
        if byte < 144 {
            self.code(0x30 + u32::from(byte), 8)
        } else {
            self.code(0x190 + u32::from(byte) - 144, 9)
        }
    }

    /// A match of length 3 (symbol 257) at distance `dist` (1-4, no extra bits), fixed code.
    fn match3(&mut self, dist: u32) -> &mut Self {
        self.code(1, 7).code(dist - 1, 5)
    }

    fn end_of_block(&mut self) -> &mut Self {
        self.code(0, 7)
    }

    /// The empty stored block of a sync flush, which ends a message on a byte boundary.
    fn sync(&mut self) -> &mut Self {
        self.put(0, 3);
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
        self.put(0, 16).put(0xffff, 16)
    }

    fn finish(&mut self) -> Vec<u8> {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
        std::mem::take(&mut self.out)
    }
}

#[test]
fn a_distance_past_the_history_fails_and_a_final_block_starts_afresh() {
    // Fixed block: "ab", then 3 bytes from 2 back: "ababa".
    let ok = Bits::default()
        .put(0b010, 3)
        .literal(b'a')
        .literal(b'b')
        .match3(2)
        .end_of_block()
        .finish();
    assert_eq!(decode(&mut Inflater::new(15), &ok).unwrap(), b"ababa");
    let far = Bits::default()
        .put(0b010, 3)
        .literal(b'a')
        .match3(2)
        .finish();
    assert_eq!(
        decode(&mut Inflater::new(15), &far),
        Err(ProtocolError::InvalidCompressedData)
    );
    // A final block ("abc"), then a new stream that refers 3 back: in the same call or in
    // the next one, nothing before the stream's start is in reach.
    let first = Bits::default()
        .put(0b011, 3)
        .literal(b'a')
        .literal(b'b')
        .literal(b'c')
        .end_of_block()
        .finish();
    let second = Bits::default()
        .put(0b010, 3)
        .match3(3)
        .end_of_block()
        .finish();
    let together = [first.clone(), second.clone()].concat();
    assert_eq!(
        decode(&mut Inflater::new(15), &together),
        Err(ProtocolError::InvalidCompressedData)
    );
    let mut inflater = Inflater::new(15);
    assert_eq!(decode(&mut inflater, &first).unwrap(), b"abc");
    inflater.end_message(false);
    assert_eq!(
        decode(&mut inflater, &second),
        Err(ProtocolError::InvalidCompressedData)
    );
    // Without a final block, the next message reaches back (context takeover).
    let mut inflater = Inflater::new(15);
    let open = Bits::default()
        .put(0b010, 3)
        .literal(b'x')
        .literal(b'y')
        .literal(b'z')
        .end_of_block()
        .sync()
        .finish();
    assert_eq!(decode(&mut inflater, &open).unwrap(), b"xyz");
    inflater.end_message(false);
    assert_eq!(decode(&mut inflater, &second).unwrap(), b"xyz");
    // And with a reset (no context takeover), it does not.
    inflater.end_message(true);
    assert_eq!(
        decode(&mut inflater, &second),
        Err(ProtocolError::InvalidCompressedData)
    );
}

#[test]
fn malformed_headers_fail() {
    let invalid = Err(ProtocolError::InvalidCompressedData);
    // Block type 3.
    assert_eq!(decode(&mut Inflater::new(15), &[0b111]), invalid);
    // A stored block whose NLEN is not LEN's complement.
    assert_eq!(
        decode(
            &mut Inflater::new(15),
            &[0, 5, 0, 0xfa, 0xfe, 1, 2, 3, 4, 5]
        ),
        invalid
    );
    assert_eq!(
        decode(
            &mut Inflater::new(15),
            &[0, 5, 0, 0xfa, 0xff, 1, 2, 3, 4, 5]
        )
        .unwrap(),
        [1, 2, 3, 4, 5]
    );
    // Dynamic: 287 literal/length codes (HLIT 30) are more than deflate has.
    let too_many = Bits::default()
        .put(0b101, 3)
        .put(30, 5)
        .put(0, 5)
        .put(0, 4)
        .finish();
    assert_eq!(decode(&mut Inflater::new(15), &too_many), invalid);
    // An over-subscribed code-length code: three codes of one bit.
    let over = Bits::default()
        .put(0b101, 3)
        .put(0, 5)
        .put(0, 5)
        .put(0, 4)
        .put(1, 3)
        .put(1, 3)
        .put(1, 3)
        .put(0, 3)
        .put(0, 3)
        .finish();
    assert_eq!(decode(&mut Inflater::new(15), &over), invalid);
}

#[test]
fn the_tables_are_lent_while_a_message_inflates_and_the_window_only_with_takeover() {
    let data = text(5000, 9);
    let stream = &zlib_messages(&[&data], 6, 12)[0];
    let mut inflater = Inflater::new(12);
    assert!(!inflater.holds_state());
    assert_eq!(decode(&mut inflater, stream).unwrap(), data);
    inflater.end_message(false);
    assert!(inflater.tables.is_none(), "between blocks: tables back");
    assert_eq!(inflater.window.ring.len(), 4096, "the 12-bit window only");
    inflater.end_message(true);
    assert!(!inflater.holds_state());
}

#[test]
fn a_bad_distance_is_invalid_data_even_where_the_match_would_pass_the_limit() {
    // "a", then 3 bytes from 2 back: too far back. With room for the literal only, the error
    // must still be the data's, not the limit's.
    let far = Bits::default()
        .put(0b010, 3)
        .literal(b'a')
        .match3(2)
        .finish();
    for limit in [1, 2, 100] {
        assert_eq!(
            decode_with(&mut Inflater::new(15), &far, 1, 1, limit),
            Err(ProtocolError::InvalidCompressedData),
            "limit {limit}"
        );
    }
}
