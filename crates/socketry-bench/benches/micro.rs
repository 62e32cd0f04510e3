//! Micro-benchmarks of the core's hot paths: masking, frame decode and encode, UTF-8
//! validation, deflate. `cargo bench -p socketry-bench --bench micro`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::{hint::black_box, time::Duration};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use socketry_proto::{
    OpCode, Role,
    extensions::deflate::{Deflate, DeflateConfig, DeflateParams},
    frame::{Decoder, encode_frame},
    mask::{apply_mask, apply_mask_scalar},
    utf8::Utf8Validator,
};

const SIZES: [usize; 4] = [20, 1024, 16 * 1024, 1024 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn text(size: usize) -> Vec<u8> {
    // Mostly ASCII JSON-like text with a two-byte and a three-byte character now and then.
    let unit = "{\"user\":\"zoë\",\"msg\":\"héllo wörld ✓\",\"n\":12345},";
    unit.bytes().cycle().take(size).collect::<Vec<u8>>()
}

fn utf8_prefix(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && std::str::from_utf8(&bytes[..end]).is_err() {
        end -= 1;
    }
    &bytes[..end]
}

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in SIZES {
        let mut buf = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("fast", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY));
        });
        group.bench_with_input(BenchmarkId::new("scalar", size), &size, |b, _| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf), KEY, 0));
        });
    }
    group.finish();
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    for size in SIZES {
        let payload = vec![0x42u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode_server", size), &size, |b, _| {
            let mut dst = BytesMut::with_capacity(size + 16);
            b.iter(|| {
                dst.clear();
                encode_frame(&mut dst, true, 0, OpCode::Binary, None, black_box(&payload));
            });
        });
        group.bench_with_input(BenchmarkId::new("encode_client", size), &size, |b, _| {
            let mut dst = BytesMut::with_capacity(size + 16);
            b.iter(|| {
                dst.clear();
                encode_frame(
                    &mut dst,
                    true,
                    0,
                    OpCode::Binary,
                    Some(KEY),
                    black_box(&payload),
                );
            });
        });
        // A server decoding a masked client frame (unmasking included).
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, true, 0, OpCode::Binary, Some(KEY), &payload);
        let wire = wire.freeze();
        group.bench_with_input(BenchmarkId::new("decode_server", size), &size, |b, _| {
            let mut decoder = Decoder::new(Role::Server);
            b.iter(|| {
                let mut src = BytesMut::from(&wire[..]);
                black_box(decoder.decode(&mut src).unwrap().unwrap());
            });
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for size in SIZES {
        let bytes = text(size + 4);
        let valid = utf8_prefix(&bytes);
        group.throughput(Throughput::Bytes(valid.len() as u64));
        group.bench_with_input(BenchmarkId::new("whole", size), &size, |b, _| {
            b.iter(|| {
                let mut v = Utf8Validator::default();
                v.feed(black_box(valid)).unwrap();
                v.finish().unwrap();
            });
        });
        // The same text arriving in 1,000-byte pieces that split characters.
        group.bench_with_input(BenchmarkId::new("in_pieces", size), &size, |b, _| {
            b.iter(|| {
                let mut v = Utf8Validator::default();
                for piece in valid.chunks(1000) {
                    v.feed(black_box(piece)).unwrap();
                }
                v.finish().unwrap();
            });
        });
    }
    group.finish();
}

fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let config = DeflateConfig::default();
    for size in [1024, 16 * 1024, 1024 * 1024] {
        let payload = text(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("compress_level1", size), &size, |b, _| {
            let mut codec = Deflate::new(Role::Server, params, &config);
            b.iter(|| black_box(codec.compress(black_box(&payload))));
        });
        let mut sender = Deflate::new(Role::Client, params, &config);
        let compressed: Bytes = sender.compress(&payload);
        group.bench_with_input(BenchmarkId::new("decompress", size), &size, |b, _| {
            // Each iteration inflates the same message with a fresh context (the sender's
            // context carried over would need its whole history).
            b.iter(|| {
                let mut codec = Deflate::new(Role::Server, params, &config);
                let mut out = BytesMut::new();
                codec
                    .decompress(black_box(&compressed), true, &mut out, None)
                    .unwrap();
                black_box(out);
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // Short runs: about 40 benchmarks in a couple of minutes on 2 cores.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = masking, frames, utf8, deflate
}
criterion_main!(benches);
