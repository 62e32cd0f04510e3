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
    /// peer's decompressor holds as its window. A message is coded where it lies, after
    /// these, then appended ([`FastDeflate::remember`]); once that would take it past one and
    /// a half windows, the front is dropped so that the message ends a window of bytes.
    /// Always empty without context takeover.
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
            let out = encode(
                Stream::new(&[], payload),
                self.origin,
                &mut self.table,
                window,
            );
            // The next message starts a new stream: its positions begin past this one's, so
            // the distance check (no farther back than the buffer's start) keeps every match
            // inside it.
            self.origin = self.origin.wrapping_add(payload.len() as u16);
            return out;
        }
        // The message is coded where it lies, after the history (matches reach into both), so
        // that neither is copied to join them; then the history takes the message's end.
        let out = encode(
            Stream::new(&self.history, payload),
            self.origin,
            &mut self.table,
            window,
        );
        self.remember(payload);
        out
    }

    /// Appends `payload` to the history, dropping its front once it would pass `window +
    /// window / 2` bytes so that the message ends a window of bytes: the peer's whole window
    /// stays in reach of the next message, and the next drop is as far off as it can be (a
    /// copy of at most `window` bytes per `window / 2` appended).
    fn remember(&mut self, payload: &[u8]) {
        let window = self.window;
        let capacity = window + window / 2;
        if self.history.capacity() < capacity {
            self.history.reserve_exact(capacity - self.history.len());
        }
        let total = self.history.len() + payload.len();
        if payload.len() >= window {
            self.history.clear();
            self.history
                .extend_from_slice(&payload[payload.len() - window..]);
            self.origin = self.origin.wrapping_add((total - window) as u16);
            return;
        }
        if total > capacity {
            let dropped = total - window; // below the history's length: the payload is shorter than a window
            self.history.drain(..dropped);
            self.origin = self.origin.wrapping_add(dropped as u16);
        }
        self.history.extend_from_slice(payload);
    }
}

/// What a message is coded over: the bytes before it (the history, whose first byte is at
/// stream position `origin`) and the message, as one run of positions `0..len` without a
/// copy that joins them. Symbols are coded for the message's positions only; a match may
/// start in the history and run on into the message.
#[derive(Clone, Copy)]
struct Stream<'a> {
    history: &'a [u8],
    message: &'a [u8],
}

impl<'a> Stream<'a> {
    fn new(history: &'a [u8], message: &'a [u8]) -> Self {
        Self { history, message }
    }

    /// Where the message starts.
    fn start(&self) -> usize {
        self.history.len()
    }

    /// The four bytes at `at`, in the history (`at` before the message starts), perhaps
    /// running on into the message; `at + 4 <= len`.
    #[inline(always)]
    fn read_u32_before(&self, at: usize) -> u32 {
        let start = self.start();
        if at + 4 <= start {
            return read_u32(self.history, at);
        }
        let mut four = [0u8; 4];
        for (k, byte) in four.iter_mut().enumerate() {
            *byte = match (at + k).checked_sub(start) {
                Some(m) => self.message[m],
                None => self.history[at + k],
            };
        }
        u32::from_le_bytes(four)
    }

    /// The length of the match of the bytes at message position `j` with those at `from` in
    /// the history (perhaps running on into the message), whose first `MIN_MATCH` are known
    /// equal: at most `MAX_MATCH`, and not past the end.
    #[inline(always)]
    fn match_from_history(&self, from: usize, j: usize) -> usize {
        let here = &self.message[j..];
        let most = here.len().min(MAX_MATCH);
        let earlier = &self.history[from..];
        let part = earlier.len().min(most);
        let n = same_prefix(&earlier[..part], &here[..part], MIN_MATCH.min(part));
        if n < part || part == most {
            return n;
        }
        let rest = most - part;
        part + same_prefix(&self.message[..rest], &here[part..most], 0)
    }
}

/// The message of `stream` compressed: a static-Huffman block, or stored blocks where those
/// are shorter.
fn encode(stream: Stream<'_>, origin: u16, table: &mut [u16; HASH_SIZE], window: usize) -> Vec<u8> {
    let message = stream.message;
    let mut sink = block_sink(message.len());
    let mut bits = BitWriter::new(&mut sink);
    bits.put(0b010, 3); // BFINAL 0, BTYPE 01 (static codes)
    let end = code_symbols(&mut bits, stream, origin, table, window);
    end_block(bits, &message[end - stream.start()..]);
    let out = sink.out;
    if out.len() > stored_len(message.len()) {
        encode_stored(message)
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

/// The output of a block for `len` bytes: a literal costs at most 9 bits, a match of 4
/// bytes or more at most 31.
fn block_sink(len: usize) -> Sink {
    Sink::with_capacity(len + len / 8 + 16)
}

/// Codes the message of `stream`, literals and matches, until fewer than `MIN_MATCH` bytes
/// are left; matches may reach back into the history. Returns where it stopped (a position
/// of the stream).
fn code_symbols(
    bits: &mut BitWriter<'_>,
    stream: Stream<'_>,
    origin: u16,
    table: &mut [u16; HASH_SIZE],
    window: usize,
) -> usize {
    let start = stream.start();
    let message = stream.message;
    // Positions of the message's bytes (`j`) are counted from its first byte, so that the
    // common case, a match inside the message, reads one slice.
    let first = origin.wrapping_add(start as u16);
    let mut j = 0;
    while j + MIN_MATCH <= message.len() {
        let here = read_u32(message, j);
        let slot = hash(here);
        let position = first.wrapping_add(j as u16);
        let seen = table[slot];
        table[slot] = position;
        // Modular: a stale entry gives some distance below 2^16, checked like any other;
        // 1 to `reach` is inside both the window and the bytes before (0 wraps past it).
        let distance = usize::from(position.wrapping_sub(seen));
        let reach = (start + j).min(window);
        let length = if distance.wrapping_sub(1) >= reach {
            0
        } else if distance <= j {
            let from = j - distance;
            if read_u32(message, from) == here {
                let most = (message.len() - j).min(MAX_MATCH);
                same_prefix(
                    &message[from..from + most],
                    &message[j..j + most],
                    MIN_MATCH,
                )
            } else {
                0
            }
        } else {
            let from = start + j - distance;
            if stream.read_u32_before(from) == here {
                stream.match_from_history(from, j)
            } else {
                0
            }
        };
        if length == 0 {
            bits.put_literal(message[j]);
            j += 1;
            continue;
        }
        bits.put_match(length, distance);
        // Remember where the match ends, so the next repetition of what follows it is
        // found too.
        let tail = j + length - 1;
        if tail + MIN_MATCH <= message.len() {
            table[hash(read_u32(message, tail))] = first.wrapping_add(tail as u16);
        }
        j += length;
    }
    start + j
}

/// The block's last literals (fewer than `MIN_MATCH` bytes), its end, and the sync flush's
/// first byte.
fn end_block(mut bits: BitWriter<'_>, rest: &[u8]) {
    for &byte in rest {
        bits.put_literal(byte);
    }
    let (code, count) = LITERALS[256]; // end of block
    bits.put(u64::from(code), u32::from(count));
    // Sync flush: an empty stored block, whose header and padding end the message; its
    // `00 00 ff ff` is left out.
    bits.put(0, 3);
    bits.finish();
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn hash(four: u32) -> usize {
    (four.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// How many bytes `earlier` and `here` (of the same length) have in common from the start,
/// the first `known` of them known equal.
#[inline(always)]
fn same_prefix(earlier: &[u8], here: &[u8], known: usize) -> usize {
    let most = earlier.len().min(here.len());
    let (earlier, here) = (&earlier[..most], &here[..most]);
    let mut n = known;
    while n + 8 <= most {
        let a = u64::from_le_bytes(earlier[n..n + 8].try_into().expect("eight bytes"));
        let b = u64::from_le_bytes(here[n..n + 8].try_into().expect("eight bytes"));
        if a != b {
            return n + ((a ^ b).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < most && earlier[n] == here[n] {
        n += 1;
    }
    n
}

/// Bytes staged before they join the output: whole 32-bit words go here, and from here to
/// the output in runs, so that coding a symbol calls nothing.
const STAGE: usize = 256;

/// Where a [`BitWriter`] puts its bytes.
struct Sink {
    out: Vec<u8>,
    stage: [u8; STAGE],
    /// Bytes of `stage` in use: a multiple of 4 below `STAGE`.
    staged: usize,
}

impl Sink {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            out: Vec::with_capacity(bytes),
            stage: [0; STAGE],
            staged: 0,
        }
    }

    #[inline(always)]
    fn word(&mut self, word: u32) {
        // The mask keeps the index where it is (a multiple of 4 below `STAGE`) and lets the
        // compiler see that four bytes fit.
        let at = self.staged & (STAGE - 4);
        self.stage[at..at + 4].copy_from_slice(&word.to_le_bytes());
        self.staged = at + 4;
        if self.staged == STAGE {
            self.out.extend_from_slice(&self.stage);
            self.staged = 0;
        }
    }
}

/// Bits packed least significant first, as deflate reads them. (Apart from its sink, so that
/// the pending bits stay in registers while a block is coded.)
struct BitWriter<'a> {
    sink: &'a mut Sink,
    pending: u64,
    /// Bits pending: below 32 between calls.
    count: u32,
}

impl<'a> BitWriter<'a> {
    fn new(sink: &'a mut Sink) -> Self {
        Self {
            sink,
            pending: 0,
            count: 0,
        }
    }

    /// Adds `count` (≤ 32) bits; fewer than 32 stay pending.
    #[inline(always)]
    fn put(&mut self, value: u64, count: u32) {
        self.pending |= value << self.count;
        self.count += count;
        if self.count >= 32 {
            self.sink.word(self.pending as u32);
            self.pending >>= 32;
            self.count -= 32;
        }
    }

    #[inline(always)]
    fn put_literal(&mut self, byte: u8) {
        let (code, count) = LITERALS[usize::from(byte)];
        self.put(u64::from(code), u32::from(count));
    }

    /// A length (4–258) and distance (1–32,768) as one put of at most 31 bits.
    #[inline(always)]
    fn put_match(&mut self, length: usize, distance: usize) {
        debug_assert!((MIN_MATCH..=MAX_MATCH).contains(&length));
        debug_assert!((1..=1 << 15).contains(&distance));
        let (length_code, length_bits) = LENGTHS[usize::from((length - 3) as u8)];
        let (distance_code, distance_count) = distance_bits(distance);
        self.put(
            u64::from(length_code) | distance_code << length_bits,
            u32::from(length_bits) + distance_count,
        );
    }

    /// Pads the last byte with zero bits.
    fn finish(mut self) {
        let sink = &mut *self.sink;
        sink.out.extend_from_slice(&sink.stage[..sink.staged]);
        sink.staged = 0;
        while self.count > 0 {
            sink.out.push(self.pending as u8);
            self.pending >>= 8;
            self.count = self.count.saturating_sub(8);
        }
    }
}

/// A distance's code followed by its extra bits, and how many bits they take.
#[inline(always)]
fn distance_bits(distance: usize) -> (u64, u32) {
    let d = distance - 1;
    // (As `u8`, the indexes need no bounds checks; distances stay within 2^15.)
    let entry = if d < 256 {
        DISTANCE_CODES[usize::from(d as u8)]
    } else {
        DISTANCE_CODES[256 + usize::from((d >> 7) as u8)]
    };
    let extra = (d - (entry >> 16) as usize) as u64;
    (
        u64::from(entry & 0x1f) | extra << 5,
        5 + ((entry >> 8) & 0xf),
    )
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

/// zlib's two-part table, by `d = distance - 1`: for `d` below 256 at `d`, above at
/// `256 + (d >> 7)`. Each entry holds the distance code's static 5-bit code reversed (bits
/// 0–4), its number of extra bits (8–11) and its first `d` (16–31).
const DISTANCE_CODES: [u32; 512] = {
    let mut table = [0u32; 512];
    let mut code = 0;
    while code < 30 {
        let base = DISTANCE_BASE[code] as usize - 1;
        let extra = extra_distance_bits(code);
        let entry = reverse(code as u32, 5) | extra << 8 | (base as u32) << 16;
        let mut d = base;
        while d < base + (1 << extra) {
            if d < 256 {
                table[d] = entry;
            } else {
                table[256 + (d >> 7)] = entry;
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
            // Longer than a window and a match, the repeats reaching into the history.
            across.push([unit.clone(), unit.clone(), unit.clone()].concat());
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
    fn a_match_may_start_in_the_history_and_run_on_into_the_message() {
        // Each message continues the one before's period, so its first match starts a few
        // bytes before it (in the history), and reads across where the two meet.
        let period = b"abcdefg";
        let mut c = FastDeflate::new(15, true);
        let mut messages: Vec<Vec<u8>> = Vec::new();
        let mut offset = 0;
        for len in [5usize, 9, 3, 40, 300, 2, 1000] {
            messages.push(
                period
                    .iter()
                    .cycle()
                    .skip(offset % 7)
                    .take(len)
                    .copied()
                    .collect(),
            );
            offset += len;
        }
        let compressed: Vec<Vec<u8>> = messages.iter().map(|m| c.compress(m)).collect();
        assert_eq!(inflate_strict(&compressed, 15).as_ref(), Ok(&messages));
        // 40 bytes of the period after it: one match, not 40 literals.
        assert!(compressed[3].len() < 8, "{:?}", compressed[3]);
        assert!(compressed[6].len() < 16, "{}", compressed[6].len());
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
        // Distance codes (§3.2.5), reversed, then their extra bits: 1 is code 0; 5 is code 4
        // with one extra bit; 257 code 16 with 7; 24,577 and 32,768 code 29 with 13.
        let code = |c: u32| u64::from(reverse(c, 5));
        assert_eq!(distance_bits(1), (code(0), 5));
        assert_eq!(distance_bits(4), (code(3), 5));
        assert_eq!(distance_bits(5), (code(4), 6));
        assert_eq!(distance_bits(6), (code(4) | 1 << 5, 6));
        assert_eq!(distance_bits(257), (code(16), 12));
        assert_eq!(distance_bits(300), (code(16) | 43 << 5, 12));
        assert_eq!(distance_bits(24577), (code(29), 18));
        assert_eq!(distance_bits(32768), (code(29) | 8191 << 5, 18));
    }
}
