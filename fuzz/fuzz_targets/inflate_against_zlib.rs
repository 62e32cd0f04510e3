#![no_main]
#![allow(dead_code)] // the harness holds every target; this one uses one

include!("../harness.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| inflate_against_zlib(data));
