//! `RuleSet::decide` must not allocate: checked with `assert_no_alloc`'s
//! allocator (it counts every allocator call made inside
//! `assert_no_alloc(..)`; the test requires the count to stay 0) over rule
//! sets that use every kind of condition.

use std::net::IpAddr;

use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count, AllocDisabler};
use rules::{Context, Flow, RuleSet, Transport, Verdict};

#[global_allocator]
static ALLOC: AllocDisabler = AllocDisabler;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn decide_does_not_allocate() {
    let entries = [
        ("policy", "drop"),
        (
            "0000",
            "action=accept dst4=192.168.0.0/24 proto=tcp dstports=22-22",
        ),
        (
            "0002",
            "action=accept dsthost=qubes-os.org proto=tcp dstports=443-443",
        ),
        ("0003", "action=drop dsthost=pending.example"),
        ("0004", "action=drop proto=icmp icmptype=8"),
        ("0005", "action=accept specialtarget=dns"),
        (
            "0006",
            "action=drop proto=udp specialtarget=dns dstports=50-60",
        ),
        ("0007", "action=accept dstports=1000-2000"),
        ("0008", "action=accept proto=icmp"),
    ];
    let mut set = RuleSet::from_entries("10.137.0.5", &entries).unwrap();
    set.set_resolved("qubes-os.org", &[ip("147.75.32.69")]);
    let deny = RuleSet::deny_all();
    let dns = [ip("10.139.1.1"), ip("10.139.1.2")];
    let ctx = Context::new(&dns);
    let client = ip("10.137.0.5");
    let flows = [
        Flow::new(client, ip("192.168.0.9"), Transport::Tcp { dst_port: 22 }),
        Flow::new(client, ip("147.75.32.69"), Transport::Tcp { dst_port: 443 }),
        Flow::new(client, ip("10.139.1.1"), Transport::Udp { dst_port: 53 }),
        Flow::new(client, ip("8.8.8.8"), Transport::Icmp { icmp_type: 8 }),
        Flow::new(client, ip("8.8.8.8"), Transport::Udp { dst_port: 1500 }),
        Flow::new(client, ip("8.8.8.8"), Transport::Other { protocol: 47 }),
        Flow::new(
            ip("10.137.0.6"),
            ip("8.8.8.8"),
            Transport::Tcp { dst_port: 1 },
        ),
    ];

    // Any allocation or deallocation inside the closure is counted.
    reset_violation_count();
    let accepted = assert_no_alloc(|| {
        let mut accepted = 0;
        for _ in 0..1000 {
            for f in &flows {
                if set.decide(f, &ctx) == Verdict::Accept {
                    accepted += 1;
                }
                let _ = set.explain(f, &ctx);
                let _ = deny.decide(f, &ctx);
            }
        }
        accepted
    });
    assert!(accepted > 0);
    assert_eq!(violation_count(), 0, "decide allocated");
}

/// The counter really counts: an allocation planted in the region shows.
#[test]
fn planted_allocation_is_counted() {
    reset_violation_count();
    let v = assert_no_alloc(|| std::hint::black_box(vec![1u8; 64]).len());
    assert_eq!(v, 64);
    assert!(violation_count() >= 1);
}
