//! socketry's own compressor for level 1 (RFC 1951): greedy LZ77 with one probe of a small
//! hash table, static Huffman codes, stored blocks where those would be longer.
//!
//! Why not zlib at level 1: with context takeover a compressor lives as long as its
//! connection, and zlib-rs keeps about 300 KiB for one (a 64 Ki-entry hash head fixed at
//! 128 KiB whatever `memLevel` says, two windows, the `prev` chain, the pending and symbol
//! buffers). This one keeps the last `2^window_bits` bytes it compressed and a 4,096-entry
//! table of 16-bit positions (8 KiB), and does less work per byte; zlib-rs at level 1 also
//! emits static Huffman codes only (`deflate_quick`), so the ratio is close.
//!
//! Correctness does not depend on the table: an entry is only a guess, checked against the
//! bytes before a match is emitted, and a distance is emitted only if it lies inside both the
//! window and the bytes the peer has seen.

/// log2 of the hash table's entries.
const HASH_BITS: u32 = 12;
const HASH_SIZE: usize = 1 << HASH_BITS;
/// Matches are found through 4-byte hashes, so none is shorter.
const MIN_MATCH: usize = 4;
/// The longest match deflate can code.
const MAX_MATCH: usize = 258;
/// The longest stored block.
const MAX_STORED: usize = 65_535;

/// One connection's compressor (or one message's, without context takeover).
pub(crate) struct FastDeflate {
    /// `1 << window_bits`: the farthest back a match may reach.
    window: usize,
    keep_history: bool,
    /// Context takeover: the bytes compressed so far, of which the last `window` are what the
    /// peer's decompressor holds as its window. Small messages are appended here and
    /// compressed in place; once it would pass `window + window / 2` bytes the front is
    /// dropped (a copy of `window` bytes per `window / 2` appended). Always empty without
    /// context takeover.
    history: Vec<u8>,
    /// Stream position (mod 2^16) of `history[0]`, or of the next message's first byte.
    origin: u16,
    /// For each hash of 4 bytes, the stream position (mod 2^16) where it was last seen.
    table: Box<[u16; HASH_SIZE]>,
}

impl FastDeflate {
    /// A compressor with a window of `window_bits` (9–15); `keep_history` for context
    /// takeover.
    pub(crate) fn new(window_bits: u8, keep_history: bool) -> Self {
        debug_assert!((9..=15).contains(&window_bits));
        let table: Box<[u16]> = vec![0u16; HASH_SIZE].into_boxed_slice();
        Self {
            window: 1 << window_bits.clamp(9, 15),
            keep_history,
            history: Vec::new(),
            origin: 0,
            table: table.try_into().expect("HASH_SIZE entries"),
        }
    }

    /// Compresses one whole message into a raw deflate stream ending on a byte boundary after
    /// a sync flush, without the flush's `00 00 ff ff` (RFC 7692 §7.2.1). An empty message is
    /// the single byte `0x00` (§7.2.3.6).
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        let window = self.window;
        if !self.keep_history {
            let out = encode(payload, 0, self.origin, &mut self.table, window);
            // The next message starts a new stream: its positions begin past this one's, so
            // the distance check (no farther back than the buffer's start) keeps every match
            // inside it.
            self.origin = self.origin.wrapping_add(payload.len() as u16);
            return out;
        }
        let capacity = window + window / 2;
        if payload.len() <= window / 2 {
            if self.history.len() + payload.len() > capacity {
                let dropped = self.history.len() - window.min(self.history.len());
                self.history.drain(..dropped);
                self.origin = self.origin.wrapping_add(dropped as u16);
            }
            if self.history.capacity() < capacity {
                self.history.reserve_exact(capacity - self.history.len());
            }
            let start = self.history.len();
            self.history.extend_from_slice(payload);
            return encode(&self.history, start, self.origin, &mut self.table, window);
        }
        // A large message: compress it after a copy of the history, then keep its end.
        let kept = self.history.len().min(window);
        let skipped = self.history.len() - kept;
        let mut joined = Vec::with_capacity(kept + payload.len());
        joined.extend_from_slice(&self.history[skipped..]);
        joined.extend_from_slice(payload);
        let origin = self.origin.wrapping_add(skipped as u16);
        let out = encode(&joined, kept, origin, &mut self.table, window);
        let tail = joined.len().saturating_sub(window);
        self.history.clear();
        self.history.reserve_exact(capacity);
        self.history.extend_from_slice(&joined[tail..]);
        self.origin = origin.wrapping_add(tail as u16);
        out
    }
}

/// `work[start..]` compressed as one message (matches may reach back into `work[..start]`,
/// whose first byte is at stream position `origin`): a static-Huffman block, or stored blocks
/// where those are shorter.
fn encode(
    work: &[u8],
    start: usize,
    origin: u16,
    table: &mut [u16; HASH_SIZE],
    window: usize,
) -> Vec<u8> {
    let out = encode_static(work, start, origin, table, window);
    let payload = &work[start..];
    if out.len() > stored_len(payload.len()) {
        encode_stored(payload)
    } else {
        out
    }
}

/// The length of `len` bytes as stored blocks plus the closing empty block's first byte.
fn stored_len(len: usize) -> usize {
    len + 5 * len.div_ceil(MAX_STORED) + 1
}

/// `payload` as stored blocks, then the first byte of the sync flush's empty stored block.
fn encode_stored(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(payload.len()));
    for chunk in payload.chunks(MAX_STORED) {
        let len = chunk.len() as u16;
        // BFINAL 0, BTYPE 00, padded to the byte: 0x00; then LEN and NLEN.
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.push(0x00);
    out
}

/// One static-Huffman block for `work[start..]`, matches reaching back into `work[..start]`
/// (whose first byte is at stream position `origin`), then the sync flush's first byte.
fn encode_static(
    work: &[u8],
    start: usize,
    origin: u16,
    table: &mut [u16; HASH_SIZE],
    window: usize,
) -> Vec<u8> {
    let len = work.len() - start;
    // A literal costs at most 9 bits.
    let mut bits = BitWriter::with_capacity(len + len / 8 + 16);
    bits.put(0b010, 3); // BFINAL 0, BTYPE 01 (static codes)
    let end = work.len();
    let mut i = start;
    if end >= MIN_MATCH {
        let last = end - MIN_MATCH;
        while i <= last {
            let here = read_u32(work, i);
            let slot = hash(here);
            let position = origin.wrapping_add(i as u16);
            let seen = table[slot];
            table[slot] = position;
            // Modular: a stale entry gives some distance below 2^16, checked like any other;
            // 1 to `reach` is inside both the window and the buffer (0 wraps past it).
            let distance = usize::from(position.wrapping_sub(seen));
            let reach = i.min(window);
            if distance.wrapping_sub(1) < reach && read_u32(work, i - distance) == here {
                let most = (end - i).min(MAX_MATCH);
                let length = MIN_MATCH
                    + common_prefix(
                        work,
                        i - distance + MIN_MATCH,
                        i + MIN_MATCH,
                        most - MIN_MATCH,
                    );
                bits.put_match(length, distance);
                // Remember where the match ends, so the next repetition of what follows it
                // is found too.
                let tail = i + length - 1;
                if tail <= last {
                    table[hash(read_u32(work, tail))] = origin.wrapping_add(tail as u16);
                }
                i += length;
            } else {
                bits.put_literal(work[i]);
                i += 1;
            }
        }
    }
    for &byte in &work[i..] {
        bits.put_literal(byte);
    }
    let (code, count) = LITERALS[256]; // end of block
    bits.put(u64::from(code), u32::from(count));
    // Sync flush: an empty stored block, whose header and padding end the message; its
    // `00 00 ff ff` is left out.
    bits.put(0, 3);
    bits.finish()
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

fn hash(four: u32) -> usize {
    (four.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// How many bytes from `a` equal those from `b` (`a < b`), at most `most`.
fn common_prefix(bytes: &[u8], a: usize, b: usize, most: usize) -> usize {
    let mut n = 0;
    while n + 8 <= most {
        let diff = read_u64(bytes, a + n) ^ read_u64(bytes, b + n);
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < most && bytes[a + n] == bytes[b + n] {
        n += 1;
    }
    n
}

/// Bits packed least significant first, as deflate reads them.
struct BitWriter {
    out: Vec<u8>,
    pending: u64,
    count: u32,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            out: Vec::with_capacity(bytes),
            pending: 0,
            count: 0,
        }
    }

    /// Adds `count` (≤ 32) bits; fewer than 32 stay pending.
    #[inline]
    fn put(&mut self, value: u64, count: u32) {
        self.pending |= value << self.count;
        self.count += count;
        if self.count >= 32 {
            self.out
                .extend_from_slice(&(self.pending as u32).to_le_bytes());
            self.pending >>= 32;
            self.count -= 32;
        }
    }

    #[inline]
    fn put_literal(&mut self, byte: u8) {
        let (code, count) = LITERALS[usize::from(byte)];
        self.put(u64::from(code), u32::from(count));
    }

    #[inline]
    fn put_match(&mut self, length: usize, distance: usize) {
        let (code, count) = LENGTHS[length - 3];
        self.put(u64::from(code), u32::from(count));
        let (code, count) = DISTANCES[distance_code(distance)];
        let extra = (distance - usize::from(DISTANCE_BASE[distance_code(distance)])) as u64;
        self.put(u64::from(code) | extra << 5, 5 + u32::from(count));
    }

    /// The bytes, the last one padded with zero bits.
    fn finish(mut self) -> Vec<u8> {
        while self.count > 0 {
            self.out.push(self.pending as u8);
            self.pending >>= 8;
            self.count = self.count.saturating_sub(8);
        }
        self.out
    }
}

/// RFC 1951 §3.2.5: the first distance of each distance code.
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
/// The first length of each length code (257 + index).
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];

/// The distance code of `distance` (1–32,768).
#[inline]
fn distance_code(distance: usize) -> usize {
    let d = distance - 1;
    if d < 256 {
        usize::from(DISTANCE_CODE[d])
    } else {
        usize::from(DISTANCE_CODE[256 + (d >> 7)])
    }
}

/// zlib's two-part table: codes of distances 1–256 by `d - 1`, then of larger ones by
/// `(d - 1) >> 7`.
const DISTANCE_CODE: [u8; 512] = {
    let mut table = [0u8; 512];
    let mut code = 0;
    while code < 30 {
        let base = DISTANCE_BASE[code] as usize - 1;
        let extra = extra_distance_bits(code);
        let mut d = base;
        while d < base + (1 << extra) {
            if d < 256 {
                table[d] = code as u8;
            } else {
                table[256 + (d >> 7)] = code as u8;
            }
            d += 1;
        }
        code += 1;
    }
    table
};

const fn extra_distance_bits(code: usize) -> u32 {
    if code < 4 { 0 } else { (code as u32 - 2) / 2 }
}

const fn extra_length_bits(index: usize) -> u32 {
    if index < 8 || index == 28 {
        0
    } else {
        (index as u32 - 4) / 4
    }
}

/// `code`'s `len` low bits reversed: Huffman codes go out most significant bit first.
const fn reverse(code: u32, len: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < len {
        out |= ((code >> i) & 1) << (len - 1 - i);
        i += 1;
    }
    out
}

/// The static literal/length code (RFC 1951 §3.2.6) of each symbol 0–287, reversed, and its
/// length in bits.
const LITERALS: [(u16, u8); 288] = {
    let mut table = [(0u16, 0u8); 288];
    let mut symbol = 0;
    while symbol < 288 {
        let (code, len) = match symbol {
            0..=143 => (0x30 + symbol as u32, 8),
            144..=255 => (0x190 + symbol as u32 - 144, 9),
            256..=279 => (symbol as u32 - 256, 7),
            _ => (0xC0 + symbol as u32 - 280, 8),
        };
        table[symbol] = (reverse(code, len) as u16, len as u8);
        symbol += 1;
    }
    table
};

/// For each match length 3–258: its length code with the extra bits after it, and their
/// total length in bits.
const LENGTHS: [(u32, u8); 256] = {
    let mut table = [(0u32, 0u8); 256];
    let mut index = 0;
    while index < 29 {
        let (code, len) = LITERALS[257 + index];
        let extra = extra_length_bits(index);
        let base = LENGTH_BASE[index] as usize;
        let mut length = base;
        let top = if index == 28 {
            258
        } else {
            base + (1 << extra) - 1
        };
        while length <= top {
            let value = (length - base) as u32;
            table[length - 3] = (code as u32 | value << len, len + extra as u8);
            length += 1;
        }
        index += 1;
    }
    table
};

/// For each distance code: the static 5-bit code, reversed, and the number of extra bits.
const DISTANCES: [(u16, u8); 30] = {
    let mut table = [(0u16, 0u8); 30];
    let mut code = 0;
    while code < 30 {
        table[code] = (
            reverse(code as u32, 5) as u16,
            extra_distance_bits(code) as u8,
        );
        code += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    /// Inflates each message with one decompressor of `bits`, as a peer with context
    /// takeover does, appending the tail the sender left out. (zlib accepts any distance into
    /// what one call produced, whatever its window: [`inflate_strict`] checks the window.)
    fn inflate_all(messages: &[Vec<u8>], bits: u8) -> Vec<Vec<u8>> {
        let mut d = Decompress::new_with_window_bits(false, bits);
        messages
            .iter()
            .map(|m| {
                let mut input = m.clone();
                input.extend_from_slice(&[0, 0, 0xff, 0xff]);
                let mut out = Vec::with_capacity(1 << 22);
                d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
                    .expect("valid deflate");
                out
            })
            .collect()
    }

    /// As [`inflate_all`], one output byte per call, so that every match is resolved through
    /// zlib's window of `2^bits` bytes: a distance past the window (or past what the stream
    /// produced) fails ("invalid distance too far back").
    fn inflate_strict(messages: &[Vec<u8>], bits: u8) -> Result<Vec<Vec<u8>>, String> {
        let mut d = Decompress::new_with_window_bits(false, bits);
        let mut all = Vec::new();
        for m in messages {
            let mut input = m.clone();
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let start_in = d.total_in();
            let mut out = Vec::new();
            loop {
                let used = (d.total_in() - start_in) as usize;
                let mut byte = [0u8; 1];
                let before = d.total_out();
                d.decompress(&input[used..], &mut byte, FlushDecompress::Sync)
                    .map_err(|e| e.to_string())?;
                let produced = (d.total_out() - before) as usize;
                out.extend_from_slice(&byte[..produced]);
                let done = (d.total_in() - start_in) as usize == input.len();
                if produced == 0 && done {
                    break;
                }
            }
            all.push(out);
        }
        Ok(all)
    }

    #[test]
    fn every_distance_stays_inside_the_window_a_strict_peer_has() {
        // Repeats just past each window, and just inside it, in one message and across
        // messages: the encoder must use only the ones inside.
        for bits in 9..=15u8 {
            let window = 1usize << bits;
            let unit = noise(window + 40, u64::from(bits));
            let mut across = vec![unit.clone(), unit.clone()];
            across.push(noise(window - 100, 5));
            across.push(unit[..window / 2].to_vec());
            let mut within = unit[..window - 300].to_vec();
            within.extend_from_slice(&unit[..200]);
            across.push(within);
            for keep in [true, false] {
                let mut c = FastDeflate::new(bits, keep);
                let compressed: Vec<Vec<u8>> = across.iter().map(|m| c.compress(m)).collect();
                let decoded = if keep {
                    inflate_strict(&compressed, bits)
                } else {
                    compressed
                        .iter()
                        .map(|m| {
                            inflate_strict(std::slice::from_ref(m), bits).map(|mut v| v.remove(0))
                        })
                        .collect()
                };
                assert_eq!(decoded.as_ref(), Ok(&across), "bits {bits} keep {keep}");
            }
        }
    }

    fn json(n: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = seed;
        while out.len() < n {
            out.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"user\":\"user{}\",\"score\":{}}},",
                    i * 7919 % 1000,
                    i * 104_729 % 100_000
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(n);
        out
    }

    fn noise(n: usize, mut state: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn messages_round_trip_through_zlib_at_every_window_with_and_without_history() {
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            b"abc".to_vec(),
            b"abcd".to_vec(),
            b"abcdabcdabcdabcd".to_vec(),
            vec![0u8; 1000],
            json(16 * 1024, 0),
            noise(5000, 7),
            json(70_000, 3),
            vec![b'x'; 300_000],
            noise(140_000, 9),
            json(100, 1),
            json(40_000, 2),
        ];
        for bits in 9..=15u8 {
            for keep in [true, false] {
                let mut c = FastDeflate::new(bits, keep);
                let compressed: Vec<Vec<u8>> = inputs.iter().map(|m| c.compress(m)).collect();
                let decoded = if keep {
                    inflate_all(&compressed, bits)
                } else {
                    compressed
                        .iter()
                        .map(|m| inflate_all(std::slice::from_ref(m), bits).remove(0))
                        .collect()
                };
                for (k, (got, want)) in decoded.iter().zip(&inputs).enumerate() {
                    assert!(got == want, "bits {bits} keep {keep}: message {k} differs");
                }
            }
        }
    }

    #[test]
    fn an_empty_message_is_one_zero_byte() {
        assert_eq!(FastDeflate::new(15, true).compress(b""), [0x00]);
    }

    #[test]
    fn history_makes_a_repeated_message_tiny_and_its_absence_does_not() {
        let message = json(4000, 5);
        let mut with = FastDeflate::new(15, true);
        let mut without = FastDeflate::new(15, false);
        let first = with.compress(&message).len();
        let again = with.compress(&message).len();
        assert!(again * 10 < first, "{again} vs {first}");
        assert_eq!(without.compress(&message).len(), first);
        assert_eq!(without.compress(&message).len(), first);
    }

    #[test]
    fn no_match_reaches_past_the_window() {
        // A repeat 600 bytes back is out of reach of a 9-bit (512-byte) window: a peer whose
        // buffer is exactly that window would decode garbage from it.
        let unit = noise(600, 3);
        let mut message = unit.clone();
        message.extend_from_slice(&unit);
        let mut small = FastDeflate::new(9, true);
        let out = small.compress(&message);
        assert_eq!(inflate_all(std::slice::from_ref(&out), 9)[0], message);
        assert!(
            out.len() > 1100,
            "no match found, so nothing shrank: {}",
            out.len()
        );
        let mut large = FastDeflate::new(10, true);
        assert!(large.compress(&message).len() < 700);
    }

    #[test]
    fn incompressible_data_goes_out_stored() {
        let data = noise(100_000, 11);
        let out = FastDeflate::new(15, true).compress(&data);
        assert_eq!(out.len(), stored_len(data.len()));
        assert_eq!(inflate_all(&[out], 15)[0], data);
    }

    #[test]
    fn static_tables_match_rfc_1951() {
        // §3.2.6: literal 0 is 00110000, 144 is 110010000, 256 is 0000000, 280 is 11000000.
        assert_eq!(LITERALS[0], (reverse(0b0011_0000, 8) as u16, 8));
        assert_eq!(LITERALS[144], (reverse(0b1_1001_0000, 9) as u16, 9));
        assert_eq!(LITERALS[256], (0, 7));
        assert_eq!(LITERALS[280], (reverse(0b1100_0000, 8) as u16, 8));
        // Length 258 is code 285 with no extra bits; 227 is 284 with 5 extra bits of 0.
        assert_eq!(LENGTHS[258 - 3].1, LITERALS[285].1);
        assert_eq!(LENGTHS[227 - 3].1, LITERALS[284].1 + 5);
        assert_eq!(distance_code(1), 0);
        assert_eq!(distance_code(4), 3);
        assert_eq!(distance_code(5), 4);
        assert_eq!(distance_code(257), 16);
        assert_eq!(distance_code(24577), 29);
        assert_eq!(distance_code(32768), 29);
    }
}
