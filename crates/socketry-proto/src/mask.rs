//! Payload masking (RFC 6455 §5.3).
//!
//! The fast path XORs 32-byte blocks (vectorised by LLVM), then eight bytes at a time through
//! `u64` words, all from safe slices: no `unsafe` is needed. The scalar path is kept as the
//! reference the fast path is tested against.

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
    // 32 bytes at a time through fixed-size arrays: LLVM turns the inner loop into 16-byte
    // vector XORs (SSE2, baseline on x86_64; NEON on aarch64).
    let mut key32 = [0u8; 32];
    for (i, k) in key32.iter_mut().enumerate() {
        *k = key[i & 3];
    }
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for (b, k) in block.iter_mut().zip(key32) {
            *b ^= k;
        }
    }
    // The rest starts at a multiple of 32, so the key phase is unchanged.
    let buf = blocks.into_remainder();
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key phase is unchanged.
    apply_mask_scalar(words.into_remainder(), key, 0);
}

/// The reference implementation: one byte at a time.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) & 3];
    }
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(offset & 3);
    rotated
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
                for len in (0..96).chain([255, 256, 257, 1000]) {
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
