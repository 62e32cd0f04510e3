//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same harness the
//! cargo-fuzz targets run (`fuzz/harness.rs`), so that every input that ever crashed, and the
//! seeds, are checked in every `cargo test` on stable Rust.

#![allow(dead_code)] // the harness's helpers are used by the fuzz targets too

include!("../../../fuzz/harness.rs");

#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            target(&data);
            count += 1;
        }
        assert!(count > 0, "no corpus for {name}");
        replayed += count;
    }
    assert!(replayed >= TARGETS.len());
}

#[test]
fn an_overlong_close_payload_is_refused_not_truncated() {
    // Found by the close_payload target: 2 + 126 bytes parsed, and re-encoding cut the reason.
    let mut payload = vec![0x0f, 0x14];
    payload.extend(std::iter::repeat_n(b'a', 126));
    assert!(CloseFrame::parse(&payload).is_err());
    payload.truncate(125);
    assert!(CloseFrame::parse(&payload).unwrap().is_some());
}

#[test]
fn random_corruptions_of_compressed_messages_inflate_as_zlib_inflates_them() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/inflate_against_zlib");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .filter(|seed| seed.len() > 8)
        .collect();
    assert!(seeds.len() >= 5);
    let mut rng = StdRng::seed_from_u64(16);
    for round in 0..3000 {
        let mut input = seeds[round % seeds.len()].clone();
        input[0] = rng.random(); // the piece size
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(1..input.len());
            match rng.random_range(0..3) {
                0 => input[at] ^= 1 << rng.random_range(0..8),
                1 => input[at] = rng.random(),
                _ => input.truncate(at.max(2)),
            }
        }
        if std::panic::catch_unwind(|| inflate_against_zlib(&input)).is_err() {
            let keep = std::env::temp_dir().join("inflate_against_zlib.failing");
            std::fs::write(&keep, &input).unwrap();
            panic!("round {round}: input kept in {}", keep.display());
        }
    }
}
