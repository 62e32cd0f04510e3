//! What each permessage-deflate setting trades: compressed size against the input, and the
//! compressing side's time per input byte, for two message streams a server sends.
//!
//! ```sh
//! cargo run --release -p socketry-bench --bin deflate_ratio [-- --rounds N]
//! ```
//!
//! Streams: `chat`, 200 small JSON chat events (about 150 B each, all different); `json16k`,
//! the 16 KiB JSON-like text `bench_load --text` sends, 20 times over, as the compressed-echo
//! benchmark's server sends it back. Every setting keeps its context between messages
//! (context takeover). Settings: socketry's compressor at level 1 with its default 12-bit
//! window and with zlib's usual 15 bits, and zlib-rs at level 1 (the compressor before) and
//! 6, both with 15-bit windows. Prints one JSON line per stream and setting.

use std::{hint::black_box, time::Instant};

#[path = "../shared/payload.rs"]
mod shared_payload;

use flate2::{Compress, Compression, FlushCompress};
use socketry_proto::{
    Role,
    extensions::deflate::{Deflate, DeflateConfig, DeflateParams},
};

fn chat() -> Vec<Vec<u8>> {
    (0..200u64)
        .map(|i| {
            format!(
                "{{\"type\":\"message\",\"room\":\"general\",\"user\":\"user{}\",\"id\":{},\"ts\":{},\
                 \"text\":\"hello number {} from the chat, how are you doing today?\"}}",
                i * 37 % 50,
                1000 + i,
                1_700_000_000_000u64 + i * 1733,
                i * i % 997
            )
            .into_bytes()
        })
        .collect()
}

/// The text `bench_load --text` sends, 16 KiB of it, 20 times.
fn json16k() -> Vec<Vec<u8>> {
    vec![shared_payload::payload(16384, true); 20]
}

/// One compressor with context takeover: socketry's codec, or zlib-rs through flate2 as
/// socketry used it at level 1 before it had its own.
enum Codec {
    Socketry(Box<Deflate>),
    Zlib(Box<Compress>),
}

impl Codec {
    fn new(setting: Option<DeflateConfig>) -> Self {
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        match setting {
            Some(config) => Self::Socketry(Box::new(Deflate::new(
                Role::Server,
                params,
                &config.threshold(0),
            ))),
            None => Self::Zlib(Box::new(Compress::new_with_window_bits(
                Compression::new(1),
                false,
                15,
            ))),
        }
    }

    /// One message's compressed length (sync flush, tail stripped, as RFC 7692 sends it).
    fn compress(&mut self, message: &[u8]) -> usize {
        match self {
            Self::Socketry(codec) => codec.compress(message).len(),
            Self::Zlib(zlib) => {
                let mut out = Vec::with_capacity(message.len() + 64);
                let before = zlib.total_in();
                loop {
                    let done = (zlib.total_in() - before) as usize;
                    zlib.compress_vec(&message[done..], &mut out, FlushCompress::Sync)
                        .expect("deflate");
                    if (zlib.total_in() - before) as usize == message.len()
                        && out.len() < out.capacity()
                    {
                        break;
                    }
                    out.reserve(out.capacity());
                }
                out.len() - 4
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(100, |v| v.parse().expect("--rounds N"));
    let settings = [
        (
            "socketry-level1-w12",
            Some(DeflateConfig::default().compression_window_bits(12)),
        ),
        ("socketry-level1-w15", Some(DeflateConfig::default())),
        ("zlib-rs-level1-w15", None),
        (
            "zlib-rs-level6-w15",
            Some(
                DeflateConfig::default()
                    .level(6)
                    .compression_window_bits(15),
            ),
        ),
    ];
    for (stream, messages) in [("chat", chat()), ("json16k", json16k())] {
        let input: usize = messages.iter().map(Vec::len).sum();
        for (name, setting) in settings {
            let mut codec = Codec::new(setting);
            let output: usize = messages.iter().map(|m| codec.compress(m)).sum();
            let started = Instant::now();
            for _ in 0..rounds {
                let mut codec = Codec::new(setting);
                for m in &messages {
                    black_box(codec.compress(m));
                }
            }
            let ns_per_byte = started.elapsed().as_nanos() as f64 / (rounds * input) as f64;
            println!(
                "{{\"kind\":\"deflate_ratio\",\"stream\":\"{stream}\",\"setting\":\"{name}\",\
                 \"input\":{input},\"output\":{output},\"ratio\":{:.4},\"ns_per_byte\":{ns_per_byte:.3}}}",
                output as f64 / input as f64
            );
        }
    }
}
