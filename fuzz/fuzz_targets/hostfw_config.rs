//! The hostfw configuration parser (`firewall::hostfw::config`) on
//! arbitrary bytes: it must never panic, and every client it accepts must
//! have its rules checkable (errors with a line inside the file).
#![no_main]

use firewall::hostfw::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::parse("fuzz.conf", data) {
        Ok(cfg) => {
            let lines = data.split(|&b| b == b'\n').count();
            for c in &cfg.clients {
                assert!(c.line >= 1 && c.line <= lines);
                if let Err(e) = cfg.rule_set(std::net::IpAddr::V4(c.ip)) {
                    assert!(e.line <= lines);
                    let _ = e.to_string();
                }
            }
            for ip in cfg.rules.keys() {
                let _ = cfg.rule_set(*ip);
            }
            assert!(cfg.same_topology(&cfg));
        }
        Err(e) => {
            let lines = data.split(|&b| b == b'\n').count();
            assert!(e.line <= lines, "{e}");
            let _ = e.to_string();
        }
    }
});
