//! Payload masking (RFC 6455 §5.3).
//!
//! The fast path XORs 64-byte blocks (vectorised by LLVM), then eight bytes at a time through
//! `u64` words, all from safe slices. On x86_64 CPUs with AVX2 (detected at run time) the same
//! code runs compiled for AVX2; the one `unsafe` is that call. The scalar path is kept as the
//! reference the fast path is tested against (at every length, alignment and offset, so on
//! such a CPU the AVX2 path is what the tests check).

/// Masks or unmasks `buf` in place with `key`, as if `buf` were the start of a payload.
///
/// Masking is its own inverse: applying the same key twice restores the data.
///
/// # Examples
///
/// ```
/// use socketry_proto::mask::apply_mask;
///
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// apply_mask(&mut data, key);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// apply_mask(&mut data, key);
/// assert_eq!(&data, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_at(buf, key, 0);
}

/// Masks or unmasks `buf` in place, as if `buf` started `offset` bytes into the payload.
///
/// This lets a payload that arrives in pieces be unmasked piece by piece.
#[inline]
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= AVX2_FROM && std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: `mask_avx2`'s only requirement beyond its safe signature is that the CPU
        // supports AVX2, which was detected at run time just above.
        unsafe {
            mask_avx2(buf, key);
        }
        return;
    }
    mask(buf, key);
}

/// [`apply_mask`] for a payload shorter than the AVX2 path's threshold (a small frame's),
/// inlined where it is called.
#[inline(always)]
pub(crate) fn apply_mask_short(buf: &mut [u8], key: [u8; 4]) {
    debug_assert!(buf.len() < 128);
    mask(buf, key);
}

/// From this many bytes on, the AVX2 path pays for its feature check.
#[cfg(target_arch = "x86_64")]
const AVX2_FROM: usize = 128;

/// [`mask`] compiled for AVX2: the same safe code, which LLVM vectorises with 32-byte
/// registers instead of SSE2's 16 (half the instructions per byte).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mask_avx2(buf: &mut [u8], key: [u8; 4]) {
    mask(buf, key);
}

/// Masks `buf` with `key` as if at the start of a payload.
#[inline(always)]
fn mask(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let buf = if buf.len() >= 64 {
        // 64 bytes at a time through fixed-size arrays: LLVM turns the inner loop into vector
        // XORs (SSE2, baseline on x86_64; NEON on aarch64; AVX2 in `mask_avx2`).
        let mut key64 = [0u8; 64];
        for chunk in key64.chunks_exact_mut(8) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let mut blocks = buf.chunks_exact_mut(64);
        for block in &mut blocks {
            for (b, k) in block.iter_mut().zip(key64) {
                *b ^= k;
            }
        }
        // The rest starts at a multiple of 64, so the key phase is unchanged.
        blocks.into_remainder()
    } else {
        buf
    };
    let mut words = buf.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key phase is unchanged: four at once, then
    // at most three (what a short message ends with).
    let rest = words.into_remainder();
    let rest = match rest.split_first_chunk_mut::<4>() {
        Some((four, tail)) => {
            *four = (u32::from_ne_bytes(*four) ^ u32::from_ne_bytes(key)).to_ne_bytes();
            tail
        }
        None => rest,
    };
    // (Zipped with the key rather than indexed: no bounds checks, no call.)
    for (byte, k) in rest.iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// The reference implementation: one byte at a time.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) & 3];
    }
}

/// The key as seen from `offset` bytes into the payload (a shift of one 32-bit word, not a
/// call to the slice rotation).
#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let shift = 8 * (offset & 3) as u32;
    u32::from_le_bytes(key).rotate_right(shift).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};

    #[test]
    fn fast_path_equals_scalar_at_every_alignment_length_and_offset() {
        let mut rng = rand::rng();
        let mut backing = vec![0u8; 1024 + 16];
        for _ in 0..20 {
            rng.fill_bytes(&mut backing);
            let key: [u8; 4] = rng.random();
            for start in 0..16 {
                for len in (0..96).chain([127, 128, 129, 200, 255, 256, 257, 1000]) {
                    for offset in 0..4 {
                        let mut fast = backing.clone();
                        let mut slow = backing.clone();
                        apply_mask_at(&mut fast[start..start + len], key, offset);
                        apply_mask_scalar(&mut slow[start..start + len], key, offset);
                        assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_path_equals_scalar_where_the_cpu_would_take_avx2() {
        let mut rng = rand::rng();
        let mut data = vec![0u8; 3000];
        rng.fill_bytes(&mut data);
        let key: [u8; 4] = rng.random();
        for len in [128, 129, 191, 192, 1000, 3000] {
            for offset in 0..4 {
                let mut portable = data[..len].to_vec();
                let mut slow = portable.clone();
                mask(&mut portable, rotate(key, offset));
                apply_mask_scalar(&mut slow, key, offset);
                assert_eq!(portable, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let mut rng = rand::rng();
        let mut data = vec![0u8; 777];
        rng.fill_bytes(&mut data);
        let key: [u8; 4] = rng.random();
        let mut whole = data.clone();
        apply_mask(&mut whole, key);
        for split in [1, 3, 5, 8, 13, 400] {
            let mut pieces = data.clone();
            let mut pos = 0;
            while pos < pieces.len() {
                let end = (pos + split).min(pieces.len());
                apply_mask_at(&mut pieces[pos..end], key, pos);
                pos = end;
            }
            assert_eq!(pieces, whole, "piece size {split}");
        }
    }
}
