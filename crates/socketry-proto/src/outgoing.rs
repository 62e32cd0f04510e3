//! [`Outgoing`]: the bytes a connection has queued for the peer.
//!
//! Small frames are copied into one contiguous tail so that many of them leave in one write;
//! a large unmasked payload is queued as its own chunk, without copying, for a vectored write.

use std::{collections::VecDeque, io::IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{FrameHeader, OpCode};

/// Payloads at least this large are queued by reference instead of copied.
const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

/// A payload to queue: owned `Bytes` (a large one is queued by reference) or a borrowed
/// slice (copied; a large one once, into `Bytes` of its own).
pub(crate) trait Payload: std::ops::Deref<Target = [u8]> {
    fn into_bytes(self) -> Bytes;

    /// This payload as a reference into `source`, when it is a large slice of it (that
    /// `push_frame` would otherwise copy into `Bytes` of its own).
    #[inline]
    fn shared_from(&self, _source: &Bytes) -> Option<Bytes> {
        None
    }
}

impl Payload for Bytes {
    #[inline]
    fn into_bytes(self) -> Bytes {
        self
    }
}

impl Payload for &[u8] {
    #[inline]
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }

    fn shared_from(&self, source: &Bytes) -> Option<Bytes> {
        let (start, at) = (source.as_ptr() as usize, self.as_ptr() as usize);
        let within = at >= start && at + self.len() <= start + source.len();
        (self.len() >= ZERO_COPY_THRESHOLD && within).then(|| source.slice_ref(self))
    }
}

/// A queue of bytes to write, in order: the chunks, then the tail.
#[derive(Debug, Default)]
pub struct Outgoing {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    /// Whether the tail's start moved past its allocation's (a partial write), so that
    /// draining it must reclaim the room in front.
    tail_advanced: bool,
    len: usize,
    /// Bytes written since the queue was made.
    written: u64,
    /// Where the last queued pong ends, counted like `written`.
    pong_end: u64,
    /// A newer pong, waiting until the queued one is written (pongs coalesce).
    /// Boxed: rare (a ping flood), and an idle connection should not carry its room.
    pending_pong: Option<Box<(FrameHeader, Bytes)>>,
    /// Above this many queued bytes, pongs coalesce.
    pub(crate) coalesce_above: usize,
}

impl Outgoing {
    /// Queues one frame. The payload is masked here when the header has a key.
    #[inline]
    pub(crate) fn push_frame<P: Payload>(&mut self, header: &FrameHeader, payload: P) {
        let total = header.encoded_len() + payload.len();
        self.len += total;
        if header.mask.is_none() && payload.len() >= ZERO_COPY_THRESHOLD {
            header.encode(&mut self.tail);
            self.chunks.push_back(self.tail.split().freeze());
            self.chunks.push_back(payload.into_bytes());
            return;
        }
        self.tail.reserve(total);
        let (bytes, header_len) = header.bytes();
        match header_len {
            // A small unmasked frame's header (a server's replies): a two-byte store, not a
            // call to copy two bytes.
            2 => self.tail.extend_from_slice(&bytes[..2]),
            // A small masked frame's (a client's).
            6 => self.tail.extend_from_slice(&bytes[..6]),
            n => self.tail.extend_from_slice(&bytes[..n]),
        }
        let start = self.tail.len();
        self.tail.extend_from_slice(&payload);
        if let Some(key) = header.mask {
            crate::mask::apply_mask(&mut self.tail[start..], key);
        }
    }

    /// Queues a whole unmasked frame of at most 125 bytes: what [`push_frame`](Self::push_frame)
    /// queues for it, with the header's two bytes written directly.
    #[inline]
    pub(crate) fn push_small_unmasked(&mut self, opcode: OpCode, payload: &[u8]) {
        debug_assert!(payload.len() <= crate::frame::MAX_CONTROL_PAYLOAD);
        let total = 2 + payload.len();
        self.len += total;
        self.tail.reserve(total);
        // FIN, no RSV bits, the opcode; no mask bit, the 7-bit length.
        self.tail
            .extend_from_slice(&[0x80 | opcode.as_u8(), payload.len() as u8]);
        self.tail.extend_from_slice(payload);
    }

    pub(crate) fn with_coalescing_above(bytes: usize) -> Self {
        Self {
            coalesce_above: bytes,
            ..Self::default()
        }
    }

    /// Queues a pong. While the queue holds more than its bound and a pong is still queued
    /// unwritten, a new pong waits instead, replacing any that waited before it, until the
    /// queue drains below the bound or that pong is written: a ping flood from a peer that
    /// does not read grows the queue by two pongs at most.
    pub(crate) fn push_pong(&mut self, header: &FrameHeader, payload: Bytes) {
        if self.len > self.coalesce_above && self.written < self.pong_end {
            self.pending_pong = Some(Box::new((*header, payload)));
        } else {
            self.push_frame(header, payload);
            self.pong_end = self.written + self.len as u64;
        }
    }

    /// Drops everything queued and the buffer (the transport is gone: nothing will be
    /// written).
    pub fn discard(&mut self) {
        *self = Self::with_coalescing_above(self.coalesce_above);
    }

    /// Forgets the waiting pong (our close frame is being queued: nothing may follow it).
    pub(crate) fn drop_pending_pong(&mut self) {
        self.pending_pong = None;
    }

    /// Queues bytes that are already whole frames (a prepared message), by reference.
    pub(crate) fn push_encoded(&mut self, frames: &Bytes) {
        self.len += frames.len();
        if frames.len() < ZERO_COPY_THRESHOLD {
            // Small: a copy keeps many of them in one contiguous write (and costs no
            // reference count, which a broadcast would pay once per member).
            self.tail.extend_from_slice(frames);
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.chunks.push_back(frames.clone());
    }

    /// Whether the queue holds a write buffer (allocated memory).
    pub fn has_buffer(&self) -> bool {
        self.tail.capacity() > 0
    }

    /// Gives the queue a buffer to build frames in, if it has none (from a buffer pool).
    pub fn set_buffer(&mut self, mut buf: BytesMut) {
        if !self.has_buffer() {
            buf.clear();
            self.tail = buf;
            self.tail_advanced = false;
        }
    }

    /// Takes the queue's buffer when nothing is queued, so an idle connection holds none.
    pub fn take_buffer(&mut self) -> Option<BytesMut> {
        (self.is_empty() && self.has_buffer()).then(|| {
            self.tail_advanced = false;
            std::mem::take(&mut self.tail)
        })
    }

    /// The number of bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the queued bytes are one contiguous run: [`chunk`](Self::chunk) is all of them.
    pub fn is_contiguous(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The first contiguous run of queued bytes.
    pub fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&self.tail[..], |c| &c[..])
    }

    /// Fills `dst` with the queued bytes in order; returns how many slices it filled.
    pub fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let all = self.chunks.iter().map(|c| &c[..]).chain([&self.tail[..]]);
        for (slot, chunk) in dst.iter_mut().zip(all.filter(|c| !c.is_empty())) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Drops the first `n` queued bytes, which were written.
    ///
    /// # Panics
    ///
    /// If `n` is more than [`len`](Self::len).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len, "advanced past the queued bytes");
        self.written += n as u64;
        self.drop_front(n);
        if self.pending_pong.is_some()
            && (self.written >= self.pong_end || self.len <= self.coalesce_above)
            && let Some(pending) = self.pending_pong.take()
        {
            let (header, payload) = *pending;
            self.push_pong(&header, payload);
        }
    }

    fn drop_front(&mut self, mut n: usize) {
        if n == self.len && self.chunks.is_empty() && !self.tail_advanced {
            // The common case, everything written at once from an unmoved tail: its start is
            // still the allocation's, so clearing it is all it takes to reuse it whole.
            self.len = 0;
            self.tail.clear();
            return;
        }
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                self.tail_advanced = true;
                break;
            };
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
        if self.len == 0 {
            // Reuse the tail's allocation from its start instead of growing it forever. After
            // `advance` the buffer's start moved to its end, so its capacity reads 0 though it
            // still owns the allocation: reclaim it all (asking for one byte more than it has
            // makes `try_reclaim` move the start back; no copy, no allocation; it fails only
            // while a zero-copy chunk still shares the buffer), so it is pooled, not freed.
            self.tail.clear();
            self.tail_advanced = !self.tail.try_reclaim(self.tail.capacity() + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::OpCode;

    #[test]
    fn a_drained_queue_keeps_its_whole_buffer() {
        let mut out = Outgoing::default();
        out.set_buffer(BytesMut::with_capacity(4096));
        let capacity = out.tail.capacity();
        out.push_frame(&header(20), Bytes::from_static(&[7; 20]));
        out.advance(10);
        out.advance(out.len());
        assert!(out.is_empty());
        assert!(out.has_buffer(), "the allocation is still ours");
        assert_eq!(out.tail.capacity(), capacity, "from its start again");
    }

    #[test]
    fn whole_and_partial_writes_in_any_order_reuse_the_buffer_from_its_start() {
        let mut out = Outgoing::default();
        out.set_buffer(BytesMut::with_capacity(4096));
        let capacity = out.tail.capacity();
        let pointer = out.tail.as_ptr();
        // Three frames a round, written in partial writes of these sizes, then the rest.
        let rounds: [&[usize]; 5] = [&[], &[7], &[], &[3, 3, 40], &[]];
        for writes in rounds {
            for _ in 0..3 {
                out.push_frame(&header(20), Bytes::from_static(&[7; 20]));
            }
            for &n in writes {
                out.advance(n);
            }
            out.advance(out.len());
            assert!(out.is_empty());
            assert_eq!(out.tail.capacity(), capacity, "after {writes:?}");
            assert_eq!(
                out.tail.as_ptr(),
                pointer,
                "the same allocation, from its start"
            );
        }
    }

    #[test]
    fn a_small_unmasked_frame_is_queued_as_the_general_path_queues_it() {
        for opcode in [OpCode::Text, OpCode::Binary] {
            for len in 0..=125 {
                let payload: Vec<u8> = (0..len as u8).collect();
                let mut general = Outgoing::default();
                let header = FrameHeader {
                    opcode,
                    ..header(len)
                };
                general.push_frame(&header, Bytes::from(payload.clone()));
                let mut small = Outgoing::default();
                small.push_small_unmasked(opcode, &payload);
                assert_eq!(small.len(), general.len(), "{opcode:?} {len}");
                assert_eq!(
                    drain(&mut small, 7),
                    drain(&mut general, 7),
                    "{opcode:?} {len}"
                );
            }
        }
    }

    fn header(len: usize) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: None,
            payload_len: len as u64,
        }
    }

    fn drain(out: &mut Outgoing, step: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 8];
            let n = out.chunks_vectored(&mut slices);
            let mut written = 0;
            for s in &slices[..n] {
                let take = s.len().min(step - written);
                all.extend_from_slice(&s[..take]);
                written += take;
                if written == step {
                    break;
                }
            }
            out.advance(written);
        }
        all
    }

    #[test]
    fn large_and_small_frames_come_out_in_order_under_partial_writes() {
        let big = Bytes::from(vec![7u8; ZERO_COPY_THRESHOLD + 5]);
        for step in [1, 3, 1000, usize::MAX] {
            let mut out = Outgoing::default();
            out.push_frame(&header(2), Bytes::from_static(b"ab"));
            out.push_frame(&header(big.len()), big.clone());
            out.push_frame(&header(1), Bytes::from_static(b"z"));
            let mut expected = Vec::new();
            for (h, p) in [
                (header(2), &b"ab"[..]),
                (header(big.len()), &big[..]),
                (header(1), b"z"),
            ] {
                h.encode(&mut expected);
                expected.extend_from_slice(p);
            }
            assert_eq!(out.len(), expected.len());
            if step == 1 {
                // One byte per write through `chunk` alone.
                let mut all = Vec::new();
                while !out.is_empty() {
                    all.push(out.chunk()[0]);
                    out.advance(1);
                }
                assert_eq!(all, expected);
            } else {
                assert_eq!(drain(&mut out, step), expected, "step {step}");
            }
        }
    }
}
