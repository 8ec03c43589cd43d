#![no_main]
//! Placeholder: replaced by the vchan_ring fuzz target.
use libfuzzer_sys::fuzz_target;
fuzz_target!(|_data: &[u8]| {});
