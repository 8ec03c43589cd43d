#![no_main]
//! Placeholder: replaced by the qubesdb_msg fuzz target.
use libfuzzer_sys::fuzz_target;
fuzz_target!(|_data: &[u8]| {});
