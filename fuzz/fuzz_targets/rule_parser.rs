#![no_main]
//! Placeholder: replaced by the rule_parser fuzz target.
use libfuzzer_sys::fuzz_target;
fuzz_target!(|_data: &[u8]| {});
