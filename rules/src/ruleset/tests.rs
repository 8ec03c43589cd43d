//! Rule sets from entries as dom0 really writes them, and their decisions.

extern crate std;

use super::*;
use crate::flow::Transport;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const CLIENT4: &str = "10.137.0.5";
const CLIENT6: &str = "fd09:24ef:4179::a89:5";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(client: &str, entries: &[(&str, &str)]) -> RuleSet {
    RuleSet::from_entries(client, entries).unwrap_or_else(|e| panic!("{e}"))
}

fn error(client: &str, entries: &[(&str, &str)]) -> RuleError {
    match RuleSet::from_entries(client, entries) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e,
    }
}

fn tcp(dst: &str, port: u16) -> Flow {
    flow(dst, Transport::Tcp { dst_port: port })
}

fn udp(dst: &str, port: u16) -> Flow {
    flow(dst, Transport::Udp { dst_port: port })
}

fn icmp(dst: &str, ty: u8) -> Flow {
    let t = if dst.contains(':') {
        Transport::Icmpv6 { icmp_type: ty }
    } else {
        Transport::Icmp { icmp_type: ty }
    };
    flow(dst, t)
}

/// A flow from the client of the destination's family.
fn flow(dst: &str, transport: Transport) -> Flow {
    let src = if dst.contains(':') { CLIENT6 } else { CLIENT4 };
    Flow::new(ip(src), ip(dst), transport)
}

/// The Linux agent tests' DNS servers.
const DNS: [&str; 4] = ["1.1.1.1", "2.2.2.2", "2001::1", "2001::2"];

fn with_dns<R>(f: impl FnOnce(&Context<'_>) -> R) -> R {
    let dns: Vec<IpAddr> = DNS.iter().map(|s| ip(s)).collect();
    f(&Context::new(&dns))
}

#[test]
fn dom0_default_is_accept_everything() {
    // A new qube: Firewall.load_defaults() = [Rule(action='accept')],
    // policy always drop.
    let s = set(CLIENT4, &[("policy", "drop"), ("0000", "action=accept")]);
    assert_eq!(s.len(), 1);
    with_dns(|ctx| {
        for f in [
            tcp("8.8.8.8", 443),
            udp("1.1.1.1", 53),
            icmp("9.9.9.9", 8),
            flow("10.0.0.1", Transport::Other { protocol: 47 }),
        ] {
            assert_eq!(
                s.explain(&f, ctx),
                Decision {
                    verdict: Verdict::Accept,
                    reason: Reason::Rule(RuleKey::new(0))
                }
            );
        }
    });
}

/// One user list, written for both families as `qdb_entries` does:
/// dst6 rules are left out of the IPv4 set and dst4 rules out of the IPv6
/// set, keeping the original numbers.
fn user_list() -> [&'static str; 7] {
    [
        "action=accept dst4=192.168.1.0/24 proto=tcp dstports=22-22",
        "action=accept dst6=2001:db8::/32 proto=tcp dstports=22-22",
        "action=accept dsthost=qubes-os.org proto=tcp dstports=443-443",
        "action=drop proto=icmp icmptype=8",
        "action=accept specialtarget=dns",
        "action=accept proto=icmp",
        "action=drop",
    ]
}

fn qdb_entries(family6: bool) -> Vec<(std::string::String, &'static str)> {
    let mut entries = vec![("policy".to_string(), "drop")];
    for (n, line) in user_list().into_iter().enumerate() {
        let other = if family6 { "dst4=" } else { "dst6=" };
        if !line.contains(other) {
            entries.push((std::format!("{n:04}"), line));
        }
    }
    entries
}

fn borrow<'a>(entries: &'a [(std::string::String, &'static str)]) -> Vec<(&'a str, &'a str)> {
    entries.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

#[test]
fn dst6_rules_leave_gaps_in_the_ipv4_set() {
    let entries = qdb_entries(false);
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["policy", "0000", "0002", "0003", "0004", "0005", "0006"]
    );
    let mut s = set(CLIENT4, &borrow(&entries));
    let numbers: Vec<u32> = s.rules().map(|(k, _)| k.number()).collect();
    assert_eq!(numbers, [0, 2, 3, 4, 5, 6]);
    // Rules after the gap apply (mirage 0.9.5 stopped at the gap).
    with_dns(|ctx| {
        assert_eq!(s.decide(&icmp("8.8.8.8", 0), ctx), Verdict::Accept);
        assert_eq!(s.decide(&udp("2.2.2.2", 53), ctx), Verdict::Accept);
        assert_eq!(s.decide(&tcp("192.168.1.9", 22), ctx), Verdict::Accept);
    });
    assert!(s.set_resolved("qubes-os.org", &[ip("147.75.32.69"), ip("2604:1380::1")]));
    with_dns(|ctx| {
        assert_eq!(
            s.explain(&tcp("147.75.32.69", 443), ctx).reason,
            Reason::Rule(RuleKey::new(2))
        );
        assert_eq!(
            s.explain(&icmp("8.8.8.8", 8), ctx),
            Decision {
                verdict: Verdict::Reject,
                reason: Reason::Rule(RuleKey::new(3))
            }
        );
        assert_eq!(
            s.explain(&tcp("8.8.8.8", 80), ctx).reason,
            Reason::Rule(RuleKey::new(6))
        );
    });
}

#[test]
fn dst4_rules_leave_gaps_in_the_ipv6_set() {
    let entries = qdb_entries(true);
    let mut s = set(CLIENT6, &borrow(&entries));
    let numbers: Vec<u32> = s.rules().map(|(k, _)| k.number()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    assert!(s.set_resolved("qubes-os.org", &[ip("147.75.32.69"), ip("2604:1380::1")]));
    assert_eq!(
        s.host_state("qubes-os.org"),
        Some(&HostState::Resolved(vec![ip("2604:1380::1")]))
    );
    with_dns(|ctx| {
        assert_eq!(s.decide(&tcp("2001:db8::7", 22), ctx), Verdict::Accept);
        assert_eq!(s.decide(&tcp("2604:1380::1", 443), ctx), Verdict::Accept);
        // proto=icmp in an IPv6 set is ICMPv6: echo request is type 128
        // there, so icmptype=8 does not catch it.
        assert_eq!(s.decide(&icmp("2001:db8::7", 128), ctx), Verdict::Accept);
        assert_eq!(s.decide(&icmp("2001:db8::7", 8), ctx), Verdict::Reject);
        assert_eq!(s.decide(&udp("2001::2", 53), ctx), Verdict::Accept);
        assert_eq!(s.decide(&udp("1.1.1.1", 53), ctx), Verdict::Drop); // not this client
        assert_eq!(s.decide(&tcp("2001:db9::1", 22), ctx), Verdict::Reject);
    });
}

#[test]
fn keys_sort_numerically_whatever_the_entry_order() {
    let s = set(
        CLIENT4,
        &[
            ("10000", "action=drop proto=udp"),
            ("0010", "action=accept proto=tcp dstports=10-10"),
            ("policy", "accept"),
            ("9999", "action=accept proto=udp dstports=9999-9999"),
            ("0002", "action=drop proto=tcp"),
        ],
    );
    let numbers: Vec<u32> = s.rules().map(|(k, _)| k.number()).collect();
    assert_eq!(numbers, [2, 10, 9999, 10000]);
    with_dns(|ctx| {
        // 0002 comes before 0010 (a map's order would not tell).
        assert_eq!(s.decide(&tcp("8.8.8.8", 10), ctx), Verdict::Reject);
        // 9999 comes before 10000 (a string sort would not tell).
        assert_eq!(s.decide(&udp("8.8.8.8", 9999), ctx), Verdict::Accept);
        assert_eq!(s.decide(&udp("8.8.8.8", 1), ctx), Verdict::Reject);
        // The policy applies last.
        assert_eq!(
            s.explain(&icmp("8.8.8.8", 0), ctx),
            Decision {
                verdict: Verdict::Accept,
                reason: Reason::Policy
            }
        );
    });
}

#[test]
fn parsed_client_addresses_work_too() {
    let entries = [("policy", "drop"), ("0000", "action=accept proto=tcp")];
    let s = RuleSet::from_addr_entries(ip(CLIENT6), &entries).unwrap();
    assert_eq!(s.client(), Some(ip(CLIENT6)));
    assert!(s.same_rules(&set(CLIENT6, &entries)));
    let e = RuleSet::from_addr_entries(ip(CLIENT4), &[("0000", "action=accept")]).unwrap_err();
    assert_eq!(e.client(), CLIENT4);
}

#[test]
fn first_match_wins() {
    let s = set(
        CLIENT4,
        &[
            ("policy", "drop"),
            ("0000", "action=accept dst4=10.0.0.0/8"),
            ("0001", "action=drop dst4=10.1.0.0/16"),
        ],
    );
    with_dns(|ctx| {
        assert_eq!(s.decide(&tcp("10.1.2.3", 1), ctx), Verdict::Accept);
        assert_eq!(s.decide(&tcp("11.1.2.3", 1), ctx), Verdict::Reject);
    });
}

#[test]
fn empty_rule_list_is_just_the_policy() {
    for (policy, verdict) in [("drop", Verdict::Reject), ("accept", Verdict::Accept)] {
        let s = set(CLIENT4, &[("policy", policy)]);
        assert!(s.is_empty());
        assert_eq!(s.policy(), Action::parse(policy).unwrap());
        with_dns(|ctx| assert_eq!(s.decide(&tcp("1.2.3.4", 80), ctx), verdict));
    }
}

/// The Linux agent's own test (`test_002_prepare_rules4`), with
/// yum.qubes-os.org resolved as there.
#[test]
fn linux_agent_ipv4_test_vector() {
    let mut s = set(
        CLIENT4,
        &[
            ("policy", "drop"),
            (
                "0000",
                "action=accept dst4=1.2.3.0/24 proto=tcp dstports=80-80",
            ),
            (
                "0001",
                "action=accept dsthost=yum.qubes-os.org proto=udp dstports=443-1024",
            ),
            ("0002", "action=accept specialtarget=dns"),
            ("0003", "action=drop proto=udp specialtarget=dns"),
            ("0004", "action=drop proto=icmp"),
            ("0005", "action=drop"),
        ],
    );
    s.set_resolved("yum.qubes-os.org", &[ip("82.94.215.165")]);
    with_dns(|ctx| {
        let cases = [
            (
                tcp("1.2.3.4", 80),
                Verdict::Accept,
                Reason::Rule(RuleKey::new(0)),
            ),
            (
                tcp("1.2.3.4", 81),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(5)),
            ),
            (
                udp("1.2.3.4", 80),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(5)),
            ),
            (
                udp("82.94.215.165", 443),
                Verdict::Accept,
                Reason::Rule(RuleKey::new(1)),
            ),
            (
                udp("82.94.215.165", 1024),
                Verdict::Accept,
                Reason::Rule(RuleKey::new(1)),
            ),
            (
                udp("82.94.215.165", 1025),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(5)),
            ),
            (
                tcp("82.94.215.165", 443),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(5)),
            ),
            (
                tcp("1.1.1.1", 53),
                Verdict::Accept,
                Reason::Rule(RuleKey::new(2)),
            ),
            (
                udp("2.2.2.2", 53),
                Verdict::Accept,
                Reason::Rule(RuleKey::new(2)),
            ),
            (
                tcp("1.1.1.1", 54),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(5)),
            ),
            (
                tcp("3.3.3.3", 53),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(5)),
            ),
            (
                icmp("1.1.1.1", 8),
                Verdict::Reject,
                Reason::Rule(RuleKey::new(4)),
            ),
        ];
        for (f, verdict, reason) in cases {
            assert_eq!(s.explain(&f, ctx), Decision { verdict, reason }, "{f:?}");
        }
    });
}

/// The Linux agent's `test_003_prepare_rules6`.
#[test]
fn linux_agent_ipv6_test_vector() {
    let mut s = set(
        CLIENT6,
        &[
            ("policy", "drop"),
            (
                "0000",
                "action=accept dst6=a::b/128 proto=tcp dstports=80-80",
            ),
            ("0001", "action=accept dsthost=ripe.net proto=tcp"),
            ("0002", "action=accept specialtarget=dns"),
            ("0003", "action=drop proto=udp specialtarget=dns"),
            ("0004", "action=drop proto=icmp icmptype=128"),
            ("0005", "action=accept proto=icmp"),
        ],
    );
    s.set_resolved(
        "ripe.net",
        &[ip("193.0.6.139"), ip("2001:67c:2e8:22::c100:68b")],
    );
    with_dns(|ctx| {
        let cases = [
            (tcp("a::b", 80), Verdict::Accept),
            (tcp("a::c", 80), Verdict::Reject),
            (tcp("2001:67c:2e8:22::c100:68b", 12345), Verdict::Accept),
            (udp("2001:67c:2e8:22::c100:68b", 53), Verdict::Reject),
            (udp("2001::1", 53), Verdict::Accept),
            (icmp("2001::1", 128), Verdict::Reject),
            (icmp("2001::1", 129), Verdict::Accept),
            // ICMP (v4, protocol 1) inside IPv6 is not `proto=icmp` there.
            (
                flow("2001::1", Transport::Icmp { icmp_type: 129 }),
                Verdict::Reject,
            ),
        ];
        for (f, verdict) in cases {
            assert_eq!(s.decide(&f, ctx), verdict, "{f:?}");
        }
    });
}

#[test]
fn specialtarget_dns_combinations() {
    let s = set(
        CLIENT4,
        &[
            ("policy", "accept"),
            ("0000", "action=drop proto=tcp specialtarget=dns"),
            ("0001", "action=drop dst4=2.2.2.2/32 specialtarget=dns"),
            // dstports other than exactly 53: matches nothing.
            (
                "0002",
                "action=drop proto=udp specialtarget=dns dstports=50-60",
            ),
            ("0003", "action=drop specialtarget=dns dstports=53-53"),
        ],
    );
    with_dns(|ctx| {
        // 0000: TCP to a DNS server, port 53 only.
        assert_eq!(
            s.explain(&tcp("1.1.1.1", 53), ctx).reason,
            Reason::Rule(RuleKey::new(0))
        );
        assert_eq!(s.decide(&tcp("1.1.1.1", 443), ctx), Verdict::Accept);
        assert_eq!(s.decide(&tcp("8.8.8.8", 53), ctx), Verdict::Accept);
        // 0001: both the network and the DNS list must hold.
        assert_eq!(
            s.explain(&udp("2.2.2.2", 53), ctx).reason,
            Reason::Rule(RuleKey::new(1))
        );
        // 0002 is inert; 0003 catches UDP to 1.1.1.1:53.
        assert_eq!(
            s.explain(&udp("1.1.1.1", 53), ctx).reason,
            Reason::Rule(RuleKey::new(3))
        );
        assert_eq!(s.decide(&udp("1.1.1.1", 55), ctx), Verdict::Accept);
        assert_eq!(s.decide(&icmp("1.1.1.1", 8), ctx), Verdict::Accept);
    });
    // Without DNS servers, specialtarget=dns rules match nothing.
    assert_eq!(
        s.explain(&tcp("1.1.1.1", 53), &Context::default()).reason,
        Reason::Policy
    );
    // IPv6 servers do not make an IPv4 flow match, and vice versa.
    let v6_only = [ip("2001::1")];
    assert_eq!(
        s.decide(&udp("1.1.1.1", 53), &Context::new(&v6_only)),
        Verdict::Accept
    );
}

#[test]
fn dstports_without_proto_is_tcp_and_udp_and_icmptype_without_proto_is_icmp() {
    let s = set(
        CLIENT4,
        &[
            ("policy", "accept"),
            ("0000", "action=drop dstports=1000-2000"),
            ("0001", "action=drop icmptype=3"),
        ],
    );
    with_dns(|ctx| {
        assert_eq!(s.decide(&tcp("8.8.8.8", 1500), ctx), Verdict::Reject);
        assert_eq!(s.decide(&udp("8.8.8.8", 1000), ctx), Verdict::Reject);
        assert_eq!(s.decide(&udp("8.8.8.8", 2001), ctx), Verdict::Accept);
        // Ports unknown (e.g. protocol given by number only): no match.
        let other = flow("8.8.8.8", Transport::Other { protocol: 6 });
        assert_eq!(s.decide(&other, ctx), Verdict::Accept);
        let sctp = flow("8.8.8.8", Transport::Other { protocol: 132 });
        assert_eq!(s.decide(&sctp, ctx), Verdict::Accept);
        assert_eq!(s.decide(&icmp("8.8.8.8", 3), ctx), Verdict::Reject);
        assert_eq!(s.decide(&icmp("8.8.8.8", 4), ctx), Verdict::Accept);
    });
}

#[test]
fn proto_by_number_matches_port_less_flows() {
    let s = set(
        CLIENT4,
        &[("policy", "accept"), ("0000", "action=drop proto=tcp")],
    );
    let other = flow("8.8.8.8", Transport::Other { protocol: 6 });
    assert_eq!(s.decide(&other, &Context::default()), Verdict::Reject);
}

#[test]
fn dsthost_fails_closed_until_resolved() {
    let mut s = set(
        CLIENT4,
        &[
            ("policy", "drop"),
            ("0000", "action=accept dst4=10.0.0.0/8"),
            ("0001", "action=drop dsthost=ads.example proto=tcp"),
            (
                "0002",
                "action=accept dsthost=qubes-os.org proto=tcp dstports=443-443",
            ),
            ("0003", "action=accept dsthost=ads.example proto=udp"),
            ("0004", "action=accept"),
        ],
    );
    let pending: Vec<&str> = s.pending_hosts().map(HostName::as_str).collect();
    assert_eq!(pending, ["ads.example", "qubes-os.org"]);
    assert!(!s.is_resolved());
    let ctx = Context::default();

    // Decided before any dsthost rule: as usual.
    assert_eq!(s.decide(&tcp("10.1.1.1", 80), &ctx), Verdict::Accept);
    // Reaches 0001 and meets its other conditions: blocked, silently.
    assert_eq!(
        s.explain(&tcp("8.8.8.8", 80), &ctx),
        Decision {
            verdict: Verdict::Drop,
            reason: Reason::HostPending(RuleKey::new(1))
        }
    );
    // Could not match 0001 or 0002 (UDP), but 0003 is pending too.
    assert_eq!(
        s.explain(&udp("8.8.8.8", 80), &ctx).reason,
        Reason::HostPending(RuleKey::new(3))
    );
    // ICMP cannot match any dsthost rule here: decided by 0004.
    assert_eq!(s.decide(&icmp("8.8.8.8", 8), &ctx), Verdict::Accept);

    assert!(s.set_resolved(
        "ads.example",
        &[ip("6.6.6.6"), ip("6.6.6.7"), ip("6.6.6.6")]
    ));
    assert_eq!(
        s.host_state("ads.example"),
        Some(&HostState::Resolved(vec![ip("6.6.6.6"), ip("6.6.6.7")]))
    );
    assert_eq!(s.decide(&tcp("6.6.6.7", 80), &ctx), Verdict::Reject);
    assert_eq!(s.decide(&udp("6.6.6.7", 80), &ctx), Verdict::Accept);
    assert_eq!(
        s.explain(&tcp("8.8.8.8", 443), &ctx).reason,
        Reason::HostPending(RuleKey::new(2))
    );
    // TCP not to port 443 cannot match 0002: decided by 0004.
    assert_eq!(s.decide(&tcp("8.8.8.8", 80), &ctx), Verdict::Accept);

    // Resolution failure: flows that depend on the name are rejected.
    assert!(s.set_failed("qubes-os.org"));
    assert!(s.is_resolved());
    assert_eq!(
        s.explain(&tcp("8.8.8.8", 443), &ctx),
        Decision {
            verdict: Verdict::Reject,
            reason: Reason::HostFailed(RuleKey::new(2))
        }
    );
    // A later answer replaces the failure.
    assert!(s.set_resolved("qubes-os.org", &[ip("147.75.32.69")]));
    assert_eq!(s.decide(&tcp("147.75.32.69", 443), &ctx), Verdict::Accept);
    assert_eq!(s.decide(&tcp("8.8.8.8", 443), &ctx), Verdict::Accept);

    // Names the rules do not use are refused.
    assert!(!s.set_resolved("other.example", &[ip("1.1.1.1")]));
    assert!(!s.set_failed("other.example"));
}

#[test]
fn dsthost_without_an_address_of_the_family_counts_as_failed() {
    let mut s = set(
        CLIENT6,
        &[
            ("policy", "drop"),
            ("0000", "action=drop dsthost=v4only.example"),
            ("0001", "action=accept"),
        ],
    );
    assert!(s.set_resolved("v4only.example", &[ip("192.0.2.1")]));
    assert_eq!(s.host_state("v4only.example"), Some(&HostState::Failed));
    assert_eq!(
        s.decide(&tcp("2001:db8::1", 80), &Context::default()),
        Verdict::Reject
    );
    assert!(s.set_resolved("v4only.example", &[]));
    assert_eq!(s.host_state("v4only.example"), Some(&HostState::Failed));
}

#[test]
fn a_literal_dsthost_needs_no_resolution() {
    let s = set(
        CLIENT4,
        &[
            ("policy", "drop"),
            ("0000", "action=accept dsthost=192.0.2.7"),
        ],
    );
    assert!(s.is_resolved());
    assert_eq!(
        s.decide(&tcp("192.0.2.7", 1), &Context::default()),
        Verdict::Accept
    );
    assert_eq!(
        s.decide(&tcp("192.0.2.8", 1), &Context::default()),
        Verdict::Reject
    );
    let s6 = set(
        CLIENT6,
        &[
            ("policy", "drop"),
            ("0000", "action=accept dsthost=192.0.2.7"),
        ],
    );
    assert_eq!(s6.host_state("192.0.2.7"), Some(&HostState::Failed));
}

#[test]
fn reloads_can_adopt_resolutions_and_compare_rules() {
    let entries = [
        ("policy", "drop"),
        ("0000", "action=accept dsthost=qubes-os.org"),
        ("0001", "action=accept dsthost=ads.example"),
    ];
    let mut old = set(CLIENT4, &entries);
    old.set_resolved("qubes-os.org", &[ip("147.75.32.69")]);
    let mut new = set(CLIENT4, &entries);
    assert!(new.same_rules(&old));
    new.adopt_resolutions(&old);
    assert_eq!(
        new.host_state("qubes-os.org"),
        Some(&HostState::Resolved(vec![ip("147.75.32.69")]))
    );
    assert_eq!(new.host_state("ads.example"), Some(&HostState::Pending));

    let changed = set(CLIENT4, &[("policy", "drop"), ("0000", "action=accept")]);
    assert!(!changed.same_rules(&old));
    let mut other_client = set("10.137.0.6", &entries);
    other_client.adopt_resolutions(&old);
    assert_eq!(
        other_client.host_state("qubes-os.org"),
        Some(&HostState::Pending)
    );
}

#[test]
fn deny_all_rejects_everything() {
    let s = RuleSet::deny_all();
    assert!(s.is_deny_all() && s.is_empty() && s.client().is_none());
    with_dns(|ctx| {
        for f in [
            tcp("8.8.8.8", 443),
            udp("1.1.1.1", 53),
            icmp("2001::1", 128),
        ] {
            assert_eq!(
                s.explain(&f, ctx),
                Decision {
                    verdict: Verdict::Reject,
                    reason: Reason::DenyAll
                }
            );
        }
    });
}

#[test]
fn flows_from_another_source_are_dropped() {
    let s = set(CLIENT4, &[("policy", "accept")]);
    let f = Flow::new(
        ip("10.137.0.6"),
        ip("8.8.8.8"),
        Transport::Tcp { dst_port: 1 },
    );
    assert_eq!(
        s.explain(&f, &Context::default()),
        Decision {
            verdict: Verdict::Drop,
            reason: Reason::OtherSource
        }
    );
}

#[test]
fn fallback_helper_denies_all_on_error() {
    let (s, e) = RuleSet::from_entries_or_deny_all(CLIENT4, &[("0000", "action=accept")]);
    assert!(s.is_deny_all());
    assert_eq!(e.unwrap().kind(), &RuleErrorKind::MissingPolicy);
    let (s, e) = RuleSet::from_entries_or_deny_all(CLIENT4, &[("policy", "accept")]);
    assert!(!s.is_deny_all() && e.is_none());
}

/// Client, entries, expected key, expected field.
type ErrorCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<&'a str>,
    Option<Field>,
);

#[test]
fn errors_name_client_key_and_field() {
    let good = ("0000", "action=accept");
    let cases: Vec<ErrorCase<'_>> = vec![
        ("10.137.0", vec![("policy", "drop")], None, None),
        ("", vec![("policy", "drop")], None, None),
        (CLIENT4, vec![good], Some("policy"), None),
        (
            CLIENT4,
            vec![("policy", "reject"), good],
            Some("policy"),
            None,
        ),
        (CLIENT4, vec![("policy", "")], Some("policy"), None),
        (
            CLIENT4,
            vec![("policy", "drop"), ("policy", "drop")],
            Some("policy"),
            None,
        ),
        (
            CLIENT4,
            vec![("policy", "drop"), ("7", "action=accept")],
            Some("7"),
            None,
        ),
        (CLIENT4, vec![("policy", "drop"), ("", "")], Some(""), None),
        (
            CLIENT4,
            vec![("policy", "drop"), ("00a0", "action=accept")],
            Some("00a0"),
            None,
        ),
        (
            CLIENT4,
            vec![("policy", "drop"), ("0000/x", "action=accept")],
            Some("0000/x"),
            None,
        ),
        (
            CLIENT4,
            vec![("policy", "drop"), good, good],
            Some("0000"),
            None,
        ),
        (
            CLIENT4,
            vec![("policy", "drop"), good, ("0001", "action=accept dpi=NO")],
            Some("0001"),
            None,
        ),
        (
            CLIENT4,
            vec![("policy", "drop"), ("0003", "proto=tcp")],
            Some("0003"),
            Some(Field::Action),
        ),
        (
            CLIENT4,
            vec![
                ("policy", "drop"),
                good,
                ("0042", "action=accept proto=tcp dstports=80-"),
            ],
            Some("0042"),
            Some(Field::DstPorts),
        ),
        (
            CLIENT4,
            vec![("policy", "drop"), ("0001", "action=accept dst6=2000::/3")],
            Some("0001"),
            Some(Field::Dst6),
        ),
        (
            CLIENT6,
            vec![
                ("policy", "drop"),
                ("0000", "action=accept dst4=3.3.3.3/32"),
            ],
            Some("0000"),
            Some(Field::Dst4),
        ),
    ];
    for (client, entries, key, field) in cases {
        let e = error(client, &entries);
        assert_eq!(e.client(), client, "{e}");
        assert_eq!(e.key(), key, "{e}");
        assert_eq!(e.field(), field, "{e}");
        let text = e.to_string();
        assert!(text.contains(&std::format!("{client:?}")), "{text}");
        if let Some(key) = key {
            assert!(text.contains(&std::format!("{key:?}")), "{text}");
        }
        if let Some(field) = field {
            assert!(text.contains(field.name()), "{text}");
        }
    }
}

#[test]
fn the_first_bad_rule_by_number_is_reported() {
    let e = error(
        CLIENT4,
        &[
            ("0009", "action=bogus"),
            ("policy", "drop"),
            ("0003", "action=accept proto=xyz"),
        ],
    );
    assert_eq!(e.key(), Some("0003"));
    assert_eq!(e.field(), Some(Field::Proto));
}

#[test]
fn issue_6290_host_names_fail_closed() {
    for host in [".", ".anything", "anything..", "anything..anything"] {
        let line = std::format!("action=accept dsthost={host}");
        let e = error(CLIENT4, &[("policy", "drop"), ("0000", &line)]);
        assert_eq!(e.field(), Some(Field::DstHost), "{e}");
    }
}
