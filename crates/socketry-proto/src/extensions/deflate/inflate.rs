//! socketry's own raw-deflate decoder (RFC 1951), shaped for permessage-deflate.
//!
//! Why not zlib: zlib-rs allocates a 32 KiB window whatever the negotiated window bits and
//! keeps about 13 KiB of code tables per stream, so a connection with context takeover held
//! about 46 KiB for its decompressor alone; and its `inflate_fast` spends about 48
//! instructions per symbol. This decoder keeps only the negotiated window (a ring of
//! `2^bits` bytes, allocated on first use) between messages, borrows its code tables from a
//! per-thread spare while a message inflates, and decodes a symbol with one table lookup
//! from a bit buffer refilled eight bytes at a time.
//!
//! Output goes straight into the caller's buffer. Back-references reach into what this
//! message produced so far there, and past it into the ring, which takes a copy of each
//! call's output afterwards ([`Inflater::commit`]). Input may stop anywhere (a frame
//! boundary, a budget): the decoder stops before any element (a literal, a match, a header
//! field) whose bits it does not have in full, and keeps the bits it read ahead (at most 63)
//! for the next call.

use std::{cell::Cell, sync::OnceLock};

use bytes::BytesMut;

use crate::ProtocolError;

/// Bits of the literal/length code resolved by the first table lookup.
const LITLEN_ROOT: u32 = 10;
/// Bits of the distance code resolved by the first table lookup.
const DIST_ROOT: u32 = 8;
/// The longest Huffman code deflate allows.
const MAX_CODE: usize = 15;

// A table entry (u32): bits 0-3 how many bits the code takes (for a subtable pointer: the
// root bits), 4-7 flags, 8-15 extra bits to read (for a pointer: the subtable's bits), 16-31
// the value (a literal, a length or distance base, or the subtable's start).
const LITERAL: u32 = 0x10;
const SUBTABLE: u32 = 0x20;
const END_OF_BLOCK: u32 = 0x40;
const INVALID: u32 = 0x80;

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic header lists the code-length code's lengths.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// The longest match.
const MAX_MATCH: usize = 258;

/// What the literal/length symbol `sym` decodes to.
fn litlen_entry(sym: usize) -> u32 {
    match sym {
        0..=255 => LITERAL | (sym as u32) << 16,
        256 => END_OF_BLOCK,
        257..=285 => {
            let i = sym - 257;
            u32::from(LENGTH_EXTRA[i]) << 8 | u32::from(LENGTH_BASE[i]) << 16
        }
        _ => INVALID,
    }
}

/// What the distance symbol `sym` decodes to.
fn dist_entry(sym: usize) -> u32 {
    match sym {
        0..=29 => u32::from(DIST_EXTRA[sym]) << 8 | u32::from(DIST_BASE[sym]) << 16,
        _ => INVALID,
    }
}

/// The code-length symbol `sym` (0-18) as an entry.
fn code_length_entry(sym: usize) -> u32 {
    (sym as u32) << 16
}

/// Which codes may be incomplete, as zlib allows them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CodeKind {
    /// The code-length code: must be complete.
    CodeLengths,
    /// Literal/length or distance: complete, or a single code of one bit.
    Symbols,
}

/// Builds the two-level decoding table of the canonical Huffman code with `lengths` into
/// `table`. `Err` for an over-subscribed code, or an incomplete one that zlib refuses. A code
/// with no symbols at all builds a table of invalid entries (a block without distances), or
/// for the code-length code what zlib makes of it.
fn build_table(
    lengths: &[u8],
    root: u32,
    kind: CodeKind,
    entry: fn(usize) -> u32,
    table: &mut Vec<u32>,
) -> Result<(), ()> {
    let mut count = [0u16; MAX_CODE + 1];
    for &len in lengths {
        count[usize::from(len)] += 1;
    }
    count[0] = 0;
    let mut left: i32 = 1;
    let mut max = 0;
    for (len, &n) in count.iter().enumerate().skip(1) {
        left = (left << 1) - i32::from(n);
        if left < 0 {
            return Err(()); // over-subscribed
        }
        if n > 0 {
            max = len;
        }
    }
    table.clear();
    // What no code reaches is invalid, decided by one bit: only an incomplete code (a single
    // one-bit code) or an empty one leaves entries unfilled, as in zlib.
    table.resize(1 << root, INVALID | 1);
    if max == 0 {
        if kind == CodeKind::CodeLengths {
            // As zlib: a code-length code without codes reads every length as 0, one bit
            // each (and the block then fails for want of an end-of-block code).
            table.fill(entry(0) | 1);
        }
        return Ok(());
    }
    if left > 0 && (kind == CodeKind::CodeLengths || max != 1) {
        return Err(()); // incomplete
    }
    let mut next = [0u32; MAX_CODE + 2];
    let mut code = 0u32;
    for len in 1..=MAX_CODE {
        code = (code + u32::from(count[len - 1])) << 1;
        next[len] = code;
    }
    // Subtables: one per root prefix of the longer codes, as deep as its longest code.
    let root_mask = (1u32 << root) - 1;
    let mut depth = [0u8; 1 << LITLEN_ROOT];
    let mut codes = [0u16; 320];
    for (sym, &len) in lengths.iter().enumerate() {
        if len == 0 {
            continue;
        }
        let len = usize::from(len);
        let reversed = next[len].reverse_bits() >> (32 - len);
        next[len] += 1;
        codes[sym] = reversed as u16;
        if len as u32 > root {
            let prefix = (reversed & root_mask) as usize;
            depth[prefix] = depth[prefix].max(len as u8 - root as u8);
        }
    }
    for (prefix, &bits) in depth.iter().enumerate().take(1 << root) {
        if bits > 0 {
            let start = table.len() as u32;
            table[prefix] = SUBTABLE | root | u32::from(bits) << 8 | start << 16;
            table.resize(table.len() + (1 << bits), INVALID);
        }
    }
    for (sym, &len) in lengths.iter().enumerate() {
        if len == 0 {
            continue;
        }
        let len = u32::from(len);
        let reversed = u32::from(codes[sym]);
        let value = entry(sym);
        if len <= root {
            let mut i = reversed;
            while i < 1 << root {
                table[i as usize] = value | len;
                i += 1 << len;
            }
        } else {
            let pointer = table[(reversed & root_mask) as usize];
            let start = pointer >> 16;
            let bits = (pointer >> 8) & 0xff;
            let mut i = reversed >> root;
            while i < 1 << bits {
                table[(start + i) as usize] = value | (len - root);
                i += 1 << (len - root);
            }
        }
    }
    Ok(())
}

/// The fixed codes of block type 1, built once.
struct FixedTables {
    litlen: Vec<u32>,
    dist: Vec<u32>,
}

fn fixed_tables() -> &'static FixedTables {
    static FIXED: OnceLock<FixedTables> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut lengths = [0u8; 288];
        lengths[..144].fill(8);
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        lengths[280..].fill(8);
        let mut litlen = Vec::new();
        build_table(
            &lengths,
            LITLEN_ROOT,
            CodeKind::Symbols,
            litlen_entry,
            &mut litlen,
        )
        .expect("the fixed literal/length code is complete");
        let mut dist = Vec::new();
        build_table(
            &[5; 32],
            DIST_ROOT,
            CodeKind::Symbols,
            dist_entry,
            &mut dist,
        )
        .expect("the fixed distance code is complete");
        FixedTables { litlen, dist }
    })
}

/// The tables of a dynamic block, and the lengths its header lists.
#[derive(Default)]
struct DynamicTables {
    litlen: Vec<u32>,
    dist: Vec<u32>,
    code_lengths: Vec<u32>,
    lengths: Vec<u8>,
}

thread_local! {
    /// Dynamic tables kept between messages, so that a message does not allocate them and a
    /// connection holds none while idle.
    static SPARE_TABLES: Cell<Option<Box<DynamicTables>>> = const { Cell::new(None) };
}

/// Makes room for `room` more bytes in `out`, growing by doubling but never past `limit`: a
/// bomb must not make us allocate twice what we accept.
fn reserve_within(out: &mut BytesMut, room: usize, limit: usize) {
    let needed = out.len() + room;
    if out.capacity() >= needed {
        return;
    }
    let cap = (out.capacity() * 2).clamp(needed, limit.max(needed));
    if cap == out.capacity() * 2 {
        // Exactly what `reserve` gives: it can grow the allocation in place.
        out.reserve(cap - out.len());
    } else {
        // (`reserve` could round up past the limit; an exact allocation cannot.)
        let mut bigger = BytesMut::with_capacity(cap);
        bigger.extend_from_slice(out);
        *out = bigger;
    }
}

/// The last `2^bits` bytes of output: what back-references of later calls may reach.
struct Window {
    ring: Vec<u8>,
    bits: u8,
    /// Where the next byte goes.
    pos: usize,
    /// How many bytes of it are history (at most its size).
    filled: usize,
}

impl Window {
    fn size(&self) -> usize {
        1 << self.bits
    }

    /// Appends `data`, keeping the last `size` bytes.
    fn push(&mut self, data: &[u8]) {
        let size = self.size();
        if self.ring.is_empty() {
            self.ring = vec![0; size];
        }
        let data = &data[data.len().saturating_sub(size)..];
        let first = data.len().min(size - self.pos);
        self.ring[self.pos..self.pos + first].copy_from_slice(&data[..first]);
        self.ring[..data.len() - first].copy_from_slice(&data[first..]);
        self.pos = (self.pos + data.len()) & (size - 1);
        self.filled = (self.filled + data.len()).min(size);
    }

    /// Appends to `out` the `len` bytes that start `back` bytes before the ring's end
    /// (`len <= back <= filled`).
    fn copy_out(&self, back: usize, len: usize, out: &mut [u8]) {
        let size = self.size();
        let start = (self.pos + size - back) & (size - 1);
        let first = len.min(size - start);
        out[..first].copy_from_slice(&self.ring[start..start + first]);
        out[first..len].copy_from_slice(&self.ring[..len - first]);
    }

    fn clear(&mut self) {
        self.pos = 0;
        self.filled = 0;
    }
}

/// Where the decoder is between elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a block's three header bits.
    BlockHeader,
    /// A stored block's LEN and NLEN, after the header's byte alignment.
    StoredLength,
    /// Inside a stored block.
    Stored { remaining: u16 },
    /// A dynamic block's HLIT, HDIST and HCLEN.
    DynamicCounts,
    /// Reading the code-length code's lengths.
    CodeLengthCode {
        litlen: u16,
        dist: u8,
        count: u8,
        read: u8,
    },
    /// Reading the literal/length and distance code lengths.
    CodeLengths { litlen: u16, dist: u8, read: u16 },
    /// Inside a Huffman-coded block.
    Codes { fixed: bool },
}

/// Why a decoding pass stopped.
enum Stop {
    /// The input is used up before the next element.
    Input,
    /// The next element does not fit in the output room.
    Output(usize),
}

/// A raw-deflate stream decoder that keeps its window between messages.
pub(crate) struct Inflater {
    window: Window,
    state: State,
    last_block: bool,
    /// Bits read ahead, least significant first. Between calls those above `bit_count` are
    /// zero; within a pass they may also be the input's next bits, read ahead.
    bit_buf: u64,
    bit_count: u32,
    tables: Option<Box<DynamicTables>>,
}

impl Inflater {
    /// A decoder for a peer that compresses with a window of `bits` (9 to 15).
    pub(crate) fn new(bits: u8) -> Self {
        Self {
            window: Window {
                ring: Vec::new(),
                bits: bits.clamp(9, 15),
                pos: 0,
                filled: 0,
            },
            state: State::BlockHeader,
            last_block: false,
            bit_buf: 0,
            bit_count: 0,
            tables: None,
        }
    }

    /// Whether it holds memory (its window or a block's tables).
    pub(crate) fn holds_state(&self) -> bool {
        !self.window.ring.is_empty() || self.tables.is_some()
    }

    /// Ends a message. With `reset` (no context takeover) the next starts a new stream and
    /// the window is let go; otherwise the window stays and, between blocks, the tables go
    /// back to the thread's spare.
    pub(crate) fn end_message(&mut self, reset: bool) {
        if reset {
            self.window = Window {
                ring: Vec::new(),
                bits: self.window.bits,
                pos: 0,
                filled: 0,
            };
            self.state = State::BlockHeader;
            self.last_block = false;
            self.bit_buf = 0;
            self.bit_count = 0;
        }
        if self.state == State::BlockHeader
            && let Some(tables) = self.tables.take()
        {
            let _ = SPARE_TABLES.try_with(|spare| spare.set(Some(tables)));
        }
    }

    /// Records `produced` (everything decoded since the last commit, in order) as history.
    pub(crate) fn commit(&mut self, produced: &[u8]) {
        if !produced.is_empty() {
            self.window.push(produced);
        }
    }

    /// Decodes `input` onto `out`. Back-references reach `out[*base..]` (this message's
    /// output since the last [`commit`](Self::commit)) and then the window; a stream that
    /// ends moves `base` up to its end, and `out[*base..]` is what to commit afterwards.
    /// Stops once the input is used up (`Ok((input.len(), true))`) or `out` reached
    /// `stop_at` bytes (`Ok((consumed, false))`; it may pass it by one match, or by what the
    /// bits already read decode to); `out` never passes `limit` bytes: an element that would
    /// take it there fails with [`ProtocolError::MessageTooBig`].
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        base: &mut usize,
        limit: usize,
        stop_at: usize,
    ) -> Result<(usize, bool), ProtocolError> {
        let mut pos = 0;
        // The least room for the next pass: more each time the room ran out.
        let mut at_least = 0;
        loop {
            let start = out.len();
            if start >= stop_at && pos < input.len() {
                return Ok((pos, false));
            }
            // Room is zeroed before it is written, so not much more than the output: about
            // what the rest inflates to (deflate rarely beats 4:1 on a frame's worth of
            // input), at most 64 KiB, never past the limit or (beyond one match) the budget.
            let want = (input.len() - pos)
                .saturating_mul(4)
                .max(at_least)
                .min(64 * 1024)
                .min(stop_at.saturating_sub(start).saturating_add(MAX_MATCH));
            let room = want.min(limit.saturating_sub(start));
            reserve_within(out, room, limit);
            out.resize(start + room, 0);
            let result = self.decode(input, &mut pos, &mut out[..], base, start);
            match result {
                Ok((end, Stop::Input)) => {
                    out.truncate(end);
                    return Ok((input.len(), true));
                }
                Ok((end, Stop::Output(needed))) => {
                    out.truncate(end);
                    if end + needed > limit {
                        return Err(ProtocolError::MessageTooBig {
                            size: (end + needed) as u64,
                            max: limit,
                        });
                    }
                    at_least = at_least
                        .saturating_mul(2)
                        .clamp(needed.max(1024), 64 * 1024);
                }
                Err(err) => {
                    out.truncate(start);
                    return Err(err);
                }
            }
        }
    }

    /// One pass over `input[*pos..]` into `out[start..]` (its room): returns how far the
    /// output got and why it stopped.
    fn decode(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut [u8],
        base: &mut usize,
        start: usize,
    ) -> Result<(usize, Stop), ProtocolError> {
        let mut o = start;
        let result = loop {
            let step = match self.state {
                State::Codes { fixed } => {
                    let tables = match (fixed, &self.tables) {
                        (true, _) => {
                            let fixed = fixed_tables();
                            (&fixed.litlen[..], &fixed.dist[..])
                        }
                        (false, Some(tables)) => (&tables.litlen[..], &tables.dist[..]),
                        (false, None) => unreachable!("a dynamic block has tables"),
                    };
                    let mut codes = Codes {
                        input,
                        pos: *pos,
                        bit_buf: self.bit_buf,
                        bit_count: self.bit_count,
                        out: &mut *out,
                        o,
                        base: *base,
                        window: &self.window,
                        litlen: tables.0,
                        dist: tables.1,
                    };
                    let step = codes.run();
                    (*pos, self.bit_buf, self.bit_count, o) =
                        (codes.pos, codes.bit_buf, codes.bit_count, codes.o);
                    match step {
                        Ok(Some(stop)) => Err(stop),
                        Ok(None) => {
                            self.end_block(base, o);
                            Ok(())
                        }
                        Err(err) => break Err(err),
                    }
                }
                State::Stored { remaining } => {
                    self.stored(input, pos, out, &mut o, base, remaining)
                }
                _ => match self.header_step(input, pos) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Stop::Input),
                    Err(err) => break Err(err),
                },
            };
            if let Err(stop) = step {
                break Ok((o, stop));
            }
        };
        // Whatever stopped the pass, keep only the bits still owed (zero above them).
        if self.bit_count < 64 {
            self.bit_buf &= (1u64 << self.bit_count) - 1;
        }
        result
    }

    /// After the block that ended with the output at `o`.
    fn end_block(&mut self, base: &mut usize, o: usize) {
        self.state = State::BlockHeader;
        if self.last_block {
            // A final block ends the stream: what follows starts a new one, which cannot
            // refer to anything before it (as zlib, reset after the stream's end), neither
            // in the window nor in this message's output so far.
            self.last_block = false;
            self.window.clear();
            *base = o;
            // The next stream starts at the next byte (zlib counts the last one as used).
            let skip = self.bit_count % 8;
            self.take_bits(skip);
        }
    }

    /// Reads bytes into the bit buffer until it holds `n` bits; `false` if the input ends
    /// first (what was read stays in the buffer).
    fn need(&mut self, input: &[u8], pos: &mut usize, n: u32) -> bool {
        while self.bit_count < n {
            let Some(&byte) = input.get(*pos) else {
                return false;
            };
            self.bit_buf |= u64::from(byte) << self.bit_count;
            self.bit_count += 8;
            *pos += 1;
        }
        true
    }

    fn take_bits(&mut self, n: u32) -> u32 {
        let value = (self.bit_buf & ((1u64 << n) - 1)) as u32;
        self.bit_buf >>= n;
        self.bit_count -= n;
        value
    }

    /// One header element of a block; `Ok(false)` when its bits have not all arrived.
    fn header_step(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, ProtocolError> {
        match self.state {
            State::BlockHeader => {
                if !self.need(input, pos, 3) {
                    return Ok(false);
                }
                let header = self.take_bits(3);
                self.last_block = header & 1 != 0;
                self.state = match header >> 1 {
                    0 => {
                        // To the byte boundary.
                        let skip = self.bit_count % 8;
                        self.take_bits(skip);
                        State::StoredLength
                    }
                    1 => State::Codes { fixed: true },
                    2 => State::DynamicCounts,
                    _ => return Err(ProtocolError::InvalidCompressedData),
                };
            }
            State::StoredLength => {
                if !self.need(input, pos, 32) {
                    return Ok(false);
                }
                let len = self.take_bits(16);
                let nlen = self.take_bits(16);
                if len != !nlen & 0xffff {
                    return Err(ProtocolError::InvalidCompressedData);
                }
                self.state = State::Stored {
                    remaining: len as u16,
                };
            }
            State::DynamicCounts => {
                if !self.need(input, pos, 14) {
                    return Ok(false);
                }
                let litlen = self.take_bits(5) as u16 + 257;
                let dist = self.take_bits(5) as u8 + 1;
                let count = self.take_bits(4) as u8 + 4;
                if litlen > 286 || dist > 30 {
                    return Err(ProtocolError::InvalidCompressedData);
                }
                let tables = self.tables.get_or_insert_with(|| {
                    SPARE_TABLES
                        .try_with(Cell::take)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                });
                tables.lengths.clear();
                tables.lengths.resize(19, 0);
                self.state = State::CodeLengthCode {
                    litlen,
                    dist,
                    count,
                    read: 0,
                };
            }
            State::CodeLengthCode {
                litlen,
                dist,
                count,
                read,
            } => {
                if read < count {
                    if !self.need(input, pos, 3) {
                        return Ok(false);
                    }
                    let len = self.take_bits(3) as u8;
                    let tables = self.tables.as_mut().expect("tables of the header");
                    tables.lengths[CODE_LENGTH_ORDER[usize::from(read)]] = len;
                    self.state = State::CodeLengthCode {
                        litlen,
                        dist,
                        count,
                        read: read + 1,
                    };
                } else {
                    let tables = self.tables.as_mut().expect("tables of the header");
                    let DynamicTables {
                        code_lengths,
                        lengths,
                        ..
                    } = &mut **tables;
                    build_table(
                        lengths,
                        7,
                        CodeKind::CodeLengths,
                        code_length_entry,
                        code_lengths,
                    )
                    .map_err(|()| ProtocolError::InvalidCompressedData)?;
                    lengths.clear();
                    lengths.resize(usize::from(litlen) + usize::from(dist), 0);
                    self.state = State::CodeLengths {
                        litlen,
                        dist,
                        read: 0,
                    };
                }
            }
            State::CodeLengths { litlen, dist, read } => {
                let total = usize::from(litlen) + usize::from(dist);
                if usize::from(read) < total {
                    return self.code_length(input, pos, litlen, dist, read);
                }
                let tables = self.tables.as_mut().expect("tables of the header");
                let DynamicTables {
                    litlen: litlen_table,
                    dist: dist_table,
                    lengths,
                    ..
                } = &mut **tables;
                let (litlen_lengths, dist_lengths) = lengths.split_at(usize::from(litlen));
                if litlen_lengths[256] == 0 {
                    return Err(ProtocolError::InvalidCompressedData); // no end-of-block code
                }
                build_table(
                    litlen_lengths,
                    LITLEN_ROOT,
                    CodeKind::Symbols,
                    litlen_entry,
                    litlen_table,
                )
                .map_err(|()| ProtocolError::InvalidCompressedData)?;
                build_table(
                    dist_lengths,
                    DIST_ROOT,
                    CodeKind::Symbols,
                    dist_entry,
                    dist_table,
                )
                .map_err(|()| ProtocolError::InvalidCompressedData)?;
                self.state = State::Codes { fixed: false };
            }
            State::Stored { .. } | State::Codes { .. } => unreachable!("not a header state"),
        }
        Ok(true)
    }

    /// One code length (with its repeat count) of a dynamic header.
    fn code_length(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        litlen: u16,
        dist: u8,
        read: u16,
    ) -> Result<bool, ProtocolError> {
        // The longest: a 7-bit code and 7 extra bits.
        let complete = self.need(input, pos, 14);
        let tables = self.tables.as_ref().expect("tables of the header");
        let entry = tables.code_lengths[(self.bit_buf & 0x7f) as usize];
        if entry & INVALID != 0 {
            return if complete || self.bit_count >= 7 {
                Err(ProtocolError::InvalidCompressedData)
            } else {
                Ok(false)
            };
        }
        let code_bits = entry & 0xf;
        let symbol = entry >> 16;
        let (extra, repeat_base) = match symbol {
            16 => (2, 3),
            17 => (3, 3),
            18 => (7, 11),
            _ => (0, 1),
        };
        if self.bit_count < code_bits + extra {
            return Ok(false);
        }
        self.take_bits(code_bits);
        let repeat = (self.take_bits(extra) + repeat_base) as usize;
        let at = usize::from(read);
        let tables = self.tables.as_mut().expect("tables of the header");
        let value = match symbol {
            16 if at == 0 => return Err(ProtocolError::InvalidCompressedData),
            16 => tables.lengths[at - 1],
            17 | 18 => 0,
            len => len as u8,
        };
        let total = usize::from(litlen) + usize::from(dist);
        if at + repeat > total {
            return Err(ProtocolError::InvalidCompressedData);
        }
        tables.lengths[at..at + repeat].fill(value);
        self.state = State::CodeLengths {
            litlen,
            dist,
            read: (at + repeat) as u16,
        };
        Ok(true)
    }

    /// Copies what it can of a stored block.
    fn stored(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut [u8],
        o: &mut usize,
        base: &mut usize,
        remaining: u16,
    ) -> Result<(), Stop> {
        let mut remaining = usize::from(remaining);
        // The input is about to be copied past whatever the buffer read ahead of it.
        self.bit_buf &= (1u64 << self.bit_count) - 1;
        // Whole bytes already in the bit buffer come first.
        while remaining > 0 && self.bit_count >= 8 {
            if *o == out.len() {
                break;
            }
            out[*o] = self.take_bits(8) as u8;
            *o += 1;
            remaining -= 1;
        }
        let n = remaining
            .min(input.len() - *pos)
            .min(out.len() - *o)
            .min(if self.bit_count >= 8 { 0 } else { usize::MAX });
        out[*o..*o + n].copy_from_slice(&input[*pos..*pos + n]);
        *o += n;
        *pos += n;
        remaining -= n;
        if remaining == 0 {
            self.end_block(base, *o);
            return Ok(());
        }
        self.state = State::Stored {
            remaining: remaining as u16,
        };
        if *o == out.len() {
            Err(Stop::Output(1))
        } else {
            Err(Stop::Input)
        }
    }
}

/// The decoding loop of a Huffman-coded block, on local copies of the decoder's state.
struct Codes<'a> {
    input: &'a [u8],
    pos: usize,
    bit_buf: u64,
    bit_count: u32,
    out: &'a mut [u8],
    o: usize,
    base: usize,
    window: &'a Window,
    litlen: &'a [u32],
    dist: &'a [u32],
}

impl Codes<'_> {
    /// Decodes until the block ends (`Ok(None)`) or the input or output room runs out.
    fn run(&mut self) -> Result<Option<Stop>, ProtocolError> {
        loop {
            if self.fast()? {
                return Ok(None);
            }
            // Near the end of the input or of the room: a byte at a time, each element only
            // if it has all its bits and fits.
            while self.bit_count < 56 {
                let Some(&byte) = self.input.get(self.pos) else {
                    break;
                };
                self.bit_buf |= u64::from(byte) << self.bit_count;
                self.bit_count += 8;
                self.pos += 1;
            }
            match self.element()? {
                Element::Done => {}
                Element::EndOfBlock => return Ok(None),
                Element::Starved => return Ok(Some(Stop::Input)),
                Element::NoRoom(needed) => return Ok(Some(Stop::Output(needed))),
            }
        }
    }

    /// The fast loop: while eight input bytes remain to refill from and the room holds the
    /// longest match and a word more, no element needs a check of either, and the state
    /// lives in locals. `Ok(true)` once the block ended.
    fn fast(&mut self) -> Result<bool, ProtocolError> {
        const LITLEN_MASK: u64 = (1 << LITLEN_ROOT) - 1;
        const DIST_MASK: u64 = (1 << DIST_ROOT) - 1;
        let input = self.input;
        let (litlen, dist_table) = (self.litlen, self.dist);
        let litlen_root: &[u32; 1 << LITLEN_ROOT] =
            litlen[..1 << LITLEN_ROOT].try_into().expect("a root table");
        let dist_root: &[u32; 1 << DIST_ROOT] = dist_table[..1 << DIST_ROOT]
            .try_into()
            .expect("a root table");
        let (window, base, max_dist) = (self.window, self.base, self.window.size());
        let out = &mut *self.out;
        let (mut pos, mut o, mut buf, mut count) = (self.pos, self.o, self.bit_buf, self.bit_count);
        let in_last = input.len().wrapping_sub(8);
        let out_last = out.len().wrapping_sub(MAX_MATCH + 8);
        let mut ended = Ok(false);
        while input.len() >= 8 && pos <= in_last && out.len() >= MAX_MATCH + 8 && o <= out_last {
            let word = u64::from_le_bytes(input[pos..pos + 8].try_into().expect("eight bytes"));
            // Bits above `count` are zero or the very bits this word brings again.
            buf |= word << count;
            pos += ((63 - count) >> 3) as usize;
            count |= 56;
            // 56 bits at least: one element takes at most 48 (a 15-bit length code and 5
            // extra bits, a 15-bit distance code and 13 extra bits).
            let mut entry = litlen_root[(buf & LITLEN_MASK) as usize];
            if entry & SUBTABLE != 0 {
                buf >>= LITLEN_ROOT;
                count -= LITLEN_ROOT;
                let bits = (entry >> 8) & 0xff;
                entry = litlen[((entry >> 16) + (buf as u32 & ((1 << bits) - 1))) as usize];
            }
            if entry & LITERAL != 0 {
                buf >>= entry & 0xf;
                count -= entry & 0xf;
                out[o] = (entry >> 16) as u8;
                o += 1;
                // 41 bits at least are left: a second literal needs no refill.
                let next = litlen_root[(buf & LITLEN_MASK) as usize];
                if next & LITERAL != 0 {
                    buf >>= next & 0xf;
                    count -= next & 0xf;
                    out[o] = (next >> 16) as u8;
                    o += 1;
                }
                continue;
            }
            if entry & (END_OF_BLOCK | INVALID) != 0 {
                if entry & INVALID != 0 {
                    ended = Err(ProtocolError::InvalidCompressedData);
                } else {
                    buf >>= entry & 0xf;
                    count -= entry & 0xf;
                    ended = Ok(true);
                }
                break;
            }
            buf >>= entry & 0xf;
            count -= entry & 0xf;
            let extra = (entry >> 8) & 0xff;
            let len = ((entry >> 16) + (buf as u32 & ((1 << extra) - 1))) as usize;
            buf >>= extra;
            count -= extra;
            let mut entry = dist_root[(buf & DIST_MASK) as usize];
            if entry & SUBTABLE != 0 {
                buf >>= DIST_ROOT;
                count -= DIST_ROOT;
                let bits = (entry >> 8) & 0xff;
                entry = dist_table[((entry >> 16) + (buf as u32 & ((1 << bits) - 1))) as usize];
            }
            if entry & INVALID != 0 {
                ended = Err(ProtocolError::InvalidCompressedData);
                break;
            }
            buf >>= entry & 0xf;
            count -= entry & 0xf;
            let extra = (entry >> 8) & 0xff;
            let dist = ((entry >> 16) + (buf as u32 & ((1 << extra) - 1))) as usize;
            buf >>= extra;
            count -= extra;
            if dist > max_dist {
                // Past the negotiated window. (zlib checks a distance only against the history
                // it has, this call's output and its window, so it takes some of these.)
                ended = Err(ProtocolError::InvalidCompressedData);
                break;
            }
            if dist <= o - base && dist >= 8 && len <= 16 {
                // The usual short match: two words, whatever its length. Each word read lies
                // wholly before the one written (the distance is at least 8), and the copy
                // may run up to 13 bytes past the match, into room that later output
                // overwrites or the end truncates. (No loop: a loop here is vectorised
                // behind run-time overlap checks that cost more than the copy.)
                // (One slice from the source to the end of the copy: one bounds check.)
                let span = &mut out[o - dist..][..dist + 16];
                let first: [u8; 8] = span[..8].try_into().expect("eight bytes");
                span[dist..dist + 8].copy_from_slice(&first);
                let second: [u8; 8] = span[8..16].try_into().expect("eight bytes");
                span[dist + 8..dist + 16].copy_from_slice(&second);
            } else if let Err(err) = copy_match(out, o, base, window, dist, len) {
                ended = Err(err);
                break;
            }
            o += len;
        }
        (self.pos, self.o, self.bit_buf, self.bit_count) = (pos, o, buf, count);
        ended
    }

    /// Decodes one literal, match or end of block when the bits and the room may be short:
    /// nothing is consumed unless the whole element is there.
    fn element(&mut self) -> Result<Element, ProtocolError> {
        let Some((entry, mut buf, mut count)) =
            checked_lookup(self.litlen, LITLEN_ROOT, self.bit_buf, self.bit_count)?
        else {
            return Ok(Element::Starved);
        };
        if entry & LITERAL != 0 {
            if self.o == self.out.len() {
                return Ok(Element::NoRoom(1));
            }
            self.out[self.o] = (entry >> 16) as u8;
            self.o += 1;
            (self.bit_buf, self.bit_count) = (buf, count);
            return Ok(Element::Done);
        }
        if entry & END_OF_BLOCK != 0 {
            (self.bit_buf, self.bit_count) = (buf, count);
            return Ok(Element::EndOfBlock);
        }
        let extra = (entry >> 8) & 0xff;
        if count < extra {
            return Ok(Element::Starved);
        }
        let len = ((entry >> 16) + (buf as u32 & ((1 << extra) - 1))) as usize;
        buf >>= extra;
        count -= extra;
        let Some((entry, mut buf, mut count)) = checked_lookup(self.dist, DIST_ROOT, buf, count)?
        else {
            return Ok(Element::Starved);
        };
        let extra = (entry >> 8) & 0xff;
        if count < extra {
            return Ok(Element::Starved);
        }
        let dist = ((entry >> 16) + (buf as u32 & ((1 << extra) - 1))) as usize;
        buf >>= extra;
        count -= extra;
        // A bad distance is invalid data whatever the room (else the error would depend on
        // how the output was sliced).
        if dist > self.window.size() || dist > self.o - self.base + self.window.filled {
            return Err(ProtocolError::InvalidCompressedData);
        }
        if self.out.len() - self.o < len {
            return Ok(Element::NoRoom(len));
        }
        copy_match(self.out, self.o, self.base, self.window, dist, len)?;
        self.o += len;
        (self.bit_buf, self.bit_count) = (buf, count);
        Ok(Element::Done)
    }
}

/// Looks the code at the bottom of `buf` (`count` bits of it arrived) up in `table` (a root
/// of `root` bits, then its subtable): the entry and the bits after its code; `Ok(None)` if
/// not all the bits it takes have arrived. The lookup runs on whatever stands in place of
/// the missing bits (zeros, or bits read ahead), so an entry counts only once its own bits
/// are there; an invalid one carries the bits that decide it, so it fails where zlib does.
fn checked_lookup(
    table: &[u32],
    root: u32,
    mut buf: u64,
    mut count: u32,
) -> Result<Option<(u32, u64, u32)>, ProtocolError> {
    let mut entry = table[(buf & ((1 << root) - 1)) as usize];
    if entry & SUBTABLE != 0 {
        if count < root {
            return Ok(None);
        }
        buf >>= root;
        count -= root;
        let bits = (entry >> 8) & 0xff;
        entry = table[((entry >> 16) + (buf as u32 & ((1 << bits) - 1))) as usize];
    }
    let code_bits = entry & 0xf;
    if count < code_bits {
        return Ok(None);
    }
    if entry & INVALID != 0 {
        return Err(ProtocolError::InvalidCompressedData);
    }
    Ok(Some((entry, buf >> code_bits, count - code_bits)))
}

/// Writes at `out[o..o + len]` the `len` bytes that start `dist` back, in this call's output
/// (from `base`) and before it in the window; room was checked, the window size too.
fn copy_match(
    out: &mut [u8],
    o: usize,
    base: usize,
    window: &Window,
    dist: usize,
    len: usize,
) -> Result<(), ProtocolError> {
    let here = o - base;
    if dist <= here {
        let from = o - dist;
        if dist >= len {
            out.copy_within(from..from + len, o);
        } else if dist == 1 {
            let byte = out[from];
            out[o..o + len].fill(byte);
        } else {
            // Overlapping: each byte may be one this copy just wrote.
            for i in 0..len {
                out[o + i] = out[from + i];
            }
        }
        return Ok(());
    }
    let back = dist - here;
    if back > window.filled {
        return Err(ProtocolError::InvalidCompressedData); // too far back
    }
    let from_window = len.min(back);
    window.copy_out(back, from_window, &mut out[o..o + from_window]);
    // The rest continues from the start of this call's output.
    for i in from_window..len {
        out[o + i] = out[base + i - from_window];
    }
    Ok(())
}

/// What [`Codes::element`] did.
enum Element {
    Done,
    EndOfBlock,
    /// Its bits have not all arrived.
    Starved,
    /// It needs this much room.
    NoRoom(usize),
}

#[cfg(test)]
mod tests;
