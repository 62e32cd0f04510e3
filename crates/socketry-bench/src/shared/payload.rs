//! The payloads the load generator sends, shared by the tools that must measure the same bytes.

use std::fmt::Write as _;

/// `size` bytes of JSON-like text (compressible about as well as real JSON), or of
/// pseudo-random bytes.
pub(crate) fn payload(size: usize, text: bool) -> Vec<u8> {
    if text {
        let mut out = String::with_capacity(size + 64);
        let mut i = 0u64;
        while out.len() < size {
            let _ = write!(
                out,
                "{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"tags\":[\"a{}\",\"b\"]}},",
                i * 7919 % 1000,
                i * 104_729 % 100_000,
                i % 17
            );
            i += 1;
        }
        out.truncate(size);
        out.into_bytes()
    } else {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }
}
