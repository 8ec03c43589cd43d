//! Fuzz the kernel command line parser: arbitrary bytes (lossily UTF-8,
//! as `BootInfo::cmdline` hands them over). Nothing may panic; an error
//! or warning is one console line; what parses stays within its bounds
//! and, applied to an empty QubesDB configuration, never invents an
//! address that was not given.
#![no_main]

use firewall::kernelopts::{self, MAX_NAT_TABLE_SIZE};
use libfuzzer_sys::fuzz_target;
use qubesdb::NetConfig;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    match kernelopts::parse(&line) {
        Ok(o) => {
            for w in &o.warnings {
                let s = w.to_string();
                assert!(s.starts_with("kernel option") && !s.contains('\n'), "{s}");
            }
            if let Some(n) = o.nat_table_size {
                assert!((1..=MAX_NAT_TABLE_SIZE).contains(&n));
            }
            for ip in [o.net.ip, o.net.gateway, o.net.dns, o.net.dns2]
                .into_iter()
                .flatten()
            {
                assert!(!ip.is_unspecified());
            }
            let mut net = NetConfig::default();
            o.apply_to(&mut net);
            assert_eq!(net.ip, o.net.ip);
            assert_eq!(net.gateway, o.net.gateway);
            let _ = o.logs.max_level();
            assert!(o.logs.threshold("firewall::engine") <= o.logs.max_level());
        }
        Err(e) => {
            let s = e.to_string();
            assert!(s.starts_with("kernel option") && !s.contains('\n'), "{s}");
        }
    }
});
