//! Property tests: `RuleSet::decide` against a naive reference evaluator.
//!
//! Rule sets are generated as a model (one struct per rule), rendered to
//! the lines dom0 writes, loaded with `RuleSet::from_entries` (entries
//! shuffled, numbers with gaps), and every decision is compared with
//! `reference`, an evaluator written from the Linux agent's translation
//! of each rule (`qubesagent/firewall.py`, nftables worker) plus the
//! documented `dsthost` semantics. It shares no code with the crate's
//! matcher.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rules::{Context, Field, Flow, HostState, Rule, RuleSet, Transport, Verdict};

const CLIENT4: &str = "10.137.0.5";
const CLIENT6: &str = "fd09:24ef:4179::a89:5";
const HOSTS: [&str; 3] = ["qubes-os.org", "ads.example", "ripe.net"];

/// Addresses flows, networks, DNS servers and hosts are drawn from: few,
/// so that they collide often.
fn pool(v6: bool) -> Vec<IpAddr> {
    if v6 {
        [
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8:1::1",
            "2001::1",
            "2001::2",
            "fe80::1",
            "2a00:1450:4000::5",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
    } else {
        [
            "10.0.0.1",
            "10.0.0.2",
            "10.0.1.1",
            "10.139.1.1",
            "10.139.1.2",
            "192.168.0.1",
            "8.8.8.8",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
    }
}

#[derive(Clone, Debug)]
enum MDst {
    None,
    /// Pool index and prefix length (scaled to the family).
    Net(usize, u8),
    /// Index into `HOSTS`.
    Host(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MProto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Clone, Debug)]
struct MRule {
    accept: bool,
    dst: MDst,
    proto: Option<MProto>,
    dns: bool,
    ports: Option<(u16, u16)>,
    /// Render a one-port range as `N` rather than `N-N`.
    short_ports: bool,
    icmp_type: Option<u8>,
}

#[derive(Clone, Debug)]
enum MHost {
    Pending,
    Failed,
    /// Pool indices of both families: (v4 indices, v6 indices).
    Resolved(Vec<usize>, Vec<usize>),
}

#[derive(Clone, Debug)]
struct Model {
    v6: bool,
    policy_accept: bool,
    /// (rule number, rule); numbers distinct.
    rules: Vec<(u32, MRule)>,
    hosts: [MHost; 3],
    /// Pool indices of the DNS servers, per family.
    dns4: Vec<usize>,
    dns6: Vec<usize>,
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(53u16),
        Just(52),
        Just(54),
        Just(80),
        Just(443),
        Just(0),
        Just(65535),
        any::<u16>()
    ]
}

fn icmp_type() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0u8),
        Just(3),
        Just(8),
        Just(128),
        Just(129),
        any::<u8>()
    ]
}

fn mrule() -> impl Strategy<Value = MRule> {
    let dst = prop_oneof![
        2 => Just(MDst::None),
        2 => (0..7usize, 0..=8u8).prop_map(|(i, p)| MDst::Net(i, p)),
        1 => (0..3usize).prop_map(MDst::Host),
    ];
    let proto = prop_oneof![
        Just(None),
        Just(Some(MProto::Tcp)),
        Just(Some(MProto::Udp)),
        Just(Some(MProto::Icmp)),
    ];
    (
        any::<bool>(),
        dst,
        proto,
        any::<bool>(),
        prop::option::of((port(), port())),
        any::<bool>(),
        prop::option::of(icmp_type()),
    )
        .prop_map(|(accept, dst, proto, dns, ports, short_ports, icmp)| {
            // Keep only combinations dom0 and the Linux agent accept.
            let icmp_proto = proto == Some(MProto::Icmp);
            let dns = dns && !icmp_proto;
            let ports = ports
                .filter(|_| !icmp_proto)
                .map(|(a, b)| (a.min(b), a.max(b)));
            let icmp_type = icmp.filter(|_| {
                !matches!(proto, Some(MProto::Tcp | MProto::Udp)) && ports.is_none() && !dns
            });
            MRule {
                accept,
                dst,
                proto,
                dns,
                ports,
                short_ports,
                icmp_type,
            }
        })
}

fn mhost() -> impl Strategy<Value = MHost> {
    prop_oneof![
        1 => Just(MHost::Pending),
        1 => Just(MHost::Failed),
        3 => (
            prop::collection::vec(0..7usize, 0..3),
            prop::collection::vec(0..7usize, 0..3)
        )
            .prop_map(|(a, b)| MHost::Resolved(a, b)),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_map(
            prop_oneof![4 => 0..40u32, 1 => 9990..10010u32],
            mrule(),
            0..12,
        ),
        [mhost(), mhost(), mhost()],
        prop::collection::vec(0..7usize, 0..3),
        prop::collection::vec(0..7usize, 0..3),
    )
        .prop_map(|(v6, policy_accept, rules, hosts, dns4, dns6)| Model {
            v6,
            policy_accept,
            rules: rules.into_iter().collect(),
            hosts,
            dns4,
            dns6,
        })
}

impl Model {
    fn client(&self) -> &'static str {
        if self.v6 {
            CLIENT6
        } else {
            CLIENT4
        }
    }

    /// The network of an `MDst::Net`: address and prefix length.
    fn net(&self, i: usize, p: u8) -> (IpAddr, u8) {
        let len = if self.v6 {
            [0, 16, 32, 48, 64, 96, 112, 127, 128][usize::from(p)]
        } else {
            [0, 8, 16, 24, 28, 30, 31, 32, 32][usize::from(p)]
        };
        (pool(self.v6)[i], len)
    }

    fn line(&self, r: &MRule) -> String {
        let mut s = format!("action={}", if r.accept { "accept" } else { "drop" });
        match r.dst {
            MDst::None => {}
            MDst::Net(i, p) => {
                let (a, len) = self.net(i, p);
                let key = if self.v6 { "dst6" } else { "dst4" };
                s += &format!(" {key}={a}/{len}");
            }
            MDst::Host(h) => s += &format!(" dsthost={}", HOSTS[h]),
        }
        if let Some(p) = r.proto {
            s += match p {
                MProto::Tcp => " proto=tcp",
                MProto::Udp => " proto=udp",
                MProto::Icmp => " proto=icmp",
            };
        }
        if r.dns {
            s += " specialtarget=dns";
        }
        if let Some((a, b)) = r.ports {
            if a == b && r.short_ports {
                s += &format!(" dstports={a}");
            } else {
                s += &format!(" dstports={a}-{b}");
            }
        }
        if let Some(t) = r.icmp_type {
            s += &format!(" icmptype={t}");
        }
        s
    }

    fn entries(&self) -> Vec<(String, String)> {
        let mut e = vec![(
            "policy".to_string(),
            if self.policy_accept { "accept" } else { "drop" }.to_string(),
        )];
        for (n, r) in &self.rules {
            e.push((format!("{n:04}"), self.line(r)));
        }
        e
    }

    fn dns_servers(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.dns4.iter().map(|&i| pool(false)[i]).collect();
        v.extend(self.dns6.iter().map(|&i| pool(true)[i]));
        v
    }

    /// Addresses a resolved host has, both families (as a resolver
    /// answering A and AAAA would give them).
    fn host_addrs(&self, h: &MHost) -> Vec<IpAddr> {
        match h {
            MHost::Resolved(a, b) => {
                let mut v: Vec<IpAddr> = a.iter().map(|&i| pool(false)[i]).collect();
                v.extend(b.iter().map(|&i| pool(true)[i]));
                v
            }
            _ => Vec::new(),
        }
    }

    /// Loads the model into a rule set, entries in the given order, and
    /// reports every host's resolution.
    fn load(&self, order: &[usize]) -> RuleSet {
        let entries = self.entries();
        let shuffled: Vec<(&str, &str)> = order
            .iter()
            .map(|&i| (entries[i].0.as_str(), entries[i].1.as_str()))
            .collect();
        let mut set = RuleSet::from_entries(self.client(), &shuffled)
            .unwrap_or_else(|e| panic!("valid model refused: {e}"));
        for (name, state) in HOSTS.iter().zip(&self.hosts) {
            let used = set.host_state(name).is_some();
            let known = match state {
                MHost::Pending => used,
                MHost::Failed => set.set_failed(name),
                MHost::Resolved(..) => set.set_resolved(name, &self.host_addrs(state)),
            };
            assert_eq!(known, used);
        }
        set
    }
}

fn ip_protocol(t: Transport) -> u8 {
    match t {
        Transport::Tcp { .. } => 6,
        Transport::Udp { .. } => 17,
        Transport::Icmp { .. } => 1,
        Transport::Icmpv6 { .. } => 58,
        Transport::Other { protocol } => protocol,
    }
}

fn in_net(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The naive evaluator: each rule as the Linux agent translates it, in
/// number order, first match wins, then the policy.
fn reference(m: &Model, flow: &Flow) -> Verdict {
    let client: IpAddr = m.client().parse().unwrap();
    if flow.src != client {
        return Verdict::Drop;
    }
    let icmp_number = if m.v6 { 58 } else { 1 };
    let dns: Vec<IpAddr> = m
        .dns_servers()
        .into_iter()
        .filter(|a| a.is_ipv6() == m.v6)
        .collect();
    let proto = ip_protocol(flow.transport);
    let port = match flow.transport {
        Transport::Tcp { dst_port } | Transport::Udp { dst_port } => Some(dst_port),
        _ => None,
    };
    let icmp_type = match flow.transport {
        Transport::Icmp { icmp_type } | Transport::Icmpv6 { icmp_type } => Some(icmp_type),
        _ => None,
    };
    let action = |accept: bool| {
        if accept {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    };

    let mut rules = m.rules.clone();
    rules.sort_by_key(|(n, _)| *n);
    for (_, r) in &rules {
        // `if 'dstports' in rule: ...; if specialtarget == 'dns': if
        // dstports not in ('53', None): continue; dstports = '53'; if not
        // dns: continue`
        let mut ports = r.ports;
        if r.dns {
            if ports.is_some() && ports != Some((53, 53)) {
                continue;
            }
            ports = Some((53, 53));
            if dns.is_empty() {
                continue;
            }
        }
        // ' ip protocol X' / ' ip6 nexthdr X' (icmp -> icmpv6)
        if let Some(p) = r.proto {
            let n = match p {
                MProto::Tcp => 6,
                MProto::Udp => 17,
                MProto::Icmp => icmp_number,
            };
            if proto != n {
                continue;
            }
        }
        // ' ip daddr NET'
        if let MDst::Net(i, p) = r.dst {
            let (net, len) = m.net(i, p);
            if !in_net(flow.dst, net, len) {
                continue;
            }
        }
        // ' ip daddr { dns }'
        if r.dns && !dns.contains(&flow.dst) {
            continue;
        }
        // ' icmp type N' (implies the ICMP protocol)
        if let Some(t) = r.icmp_type {
            if proto != icmp_number || icmp_type != Some(t) {
                continue;
            }
        }
        // ' tcp dport P' + ' udp dport P', or ' <proto> dport P'
        if let Some((lo, hi)) = ports {
            let proto_ok = match r.proto {
                Some(MProto::Tcp) => proto == 6,
                Some(MProto::Udp) => proto == 17,
                Some(MProto::Icmp) => false,
                None => proto == 6 || proto == 17,
            };
            if !proto_ok || !port.is_some_and(|p| lo <= p && p <= hi) {
                continue;
            }
        }
        // ' ip daddr { resolved }', with the documented fail-closed states.
        if let MDst::Host(h) = r.dst {
            let state = &m.hosts[h];
            match state {
                MHost::Pending => return Verdict::Drop,
                MHost::Failed => return Verdict::Reject,
                MHost::Resolved(..) => {
                    let own: Vec<IpAddr> = m
                        .host_addrs(state)
                        .into_iter()
                        .filter(|a| a.is_ipv6() == m.v6)
                        .collect();
                    if own.is_empty() {
                        return Verdict::Reject; // getaddrinfo fails for the family
                    }
                    if !own.contains(&flow.dst) {
                        continue;
                    }
                }
            }
        }
        return action(r.accept);
    }
    action(m.policy_accept)
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        port().prop_map(|p| Transport::Tcp { dst_port: p }),
        port().prop_map(|p| Transport::Udp { dst_port: p }),
        icmp_type().prop_map(|t| Transport::Icmp { icmp_type: t }),
        icmp_type().prop_map(|t| Transport::Icmpv6 { icmp_type: t }),
        prop_oneof![
            Just(1u8),
            Just(6),
            Just(17),
            Just(58),
            Just(47),
            any::<u8>()
        ]
        .prop_map(|p| Transport::Other { protocol: p }),
    ]
}

/// Flows of the model's family: (from the client?, pool index, transport).
fn flows() -> impl Strategy<Value = Vec<(bool, usize, Transport)>> {
    prop::collection::vec((prop::bool::weighted(0.9), 0..7usize, transport()), 1..24)
}

fn flow_of(m: &Model, (own, dst, t): (bool, usize, Transport)) -> Flow {
    let src: IpAddr = if own {
        m.client().parse().unwrap()
    } else if m.v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd09, 0x24ef, 0x4179, 0, 0, 0, 0xa89, 6))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 137, 0, 6))
    };
    Flow::new(src, pool(m.v6)[dst], t)
}

/// A model with a shuffled entry order.
fn shuffled_model() -> impl Strategy<Value = (Model, Vec<usize>)> {
    model().prop_flat_map(|m| {
        let n = m.rules.len() + 1;
        (Just(m), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    })
}

proptest! {
    // The main property: many cases.
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn decide_agrees_with_the_reference((m, order) in shuffled_model(), fs in flows()) {
        let set = m.load(&order);
        let dns = m.dns_servers();
        let ctx = Context::new(&dns);
        for f in fs {
            let f = flow_of(&m, f);
            prop_assert_eq!(set.decide(&f, &ctx), reference(&m, &f), "flow {:?}\nrules {:#?}", f, m.entries());
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A pending host can only turn a verdict into a silent drop: for any
    /// later resolution, the verdict is either unchanged or was Drop.
    #[test]
    fn pending_hosts_only_ever_block((m, order) in shuffled_model(), fs in flows()) {
        let resolved = m.load(&order);
        let mut pending_model = m.clone();
        pending_model.hosts = [MHost::Pending, MHost::Pending, MHost::Pending];
        let pending = pending_model.load(&order);
        let dns = m.dns_servers();
        let ctx = Context::new(&dns);
        for f in fs {
            let f = flow_of(&m, f);
            let before = pending.decide(&f, &ctx);
            let after = resolved.decide(&f, &ctx);
            prop_assert!(before == after || before == Verdict::Drop, "{:?}: {:?} then {:?}", f, before, after);
        }
    }

    /// Every rendered line parses, and renders back to itself in dom0's
    /// canonical form.
    #[test]
    fn lines_round_trip((m, _) in shuffled_model()) {
        for (_, r) in &m.rules {
            let line = m.line(r);
            let rule = Rule::parse(&line).unwrap();
            let canonical = rule.to_string();
            prop_assert_eq!(Rule::parse(&canonical).unwrap(), rule.clone());
            if !r.short_ports {
                prop_assert_eq!(canonical, line);
            }
        }
    }

    /// One corrupted rule anywhere fails the whole set, and the error
    /// names the client and that rule's key (and the field when there is
    /// one).
    #[test]
    fn one_bad_rule_fails_the_set((m, order) in shuffled_model(), which in any::<prop::sample::Index>(), how in 0..8usize) {
        prop_assume!(!m.rules.is_empty());
        let i = which.index(m.rules.len());
        let (n, r) = &m.rules[i];
        let line = m.line(r);
        let wrong_family = if m.v6 { "dst4=1.2.3.4/32" } else { "dst6=2000::/3" };
        let (bad, field) = match how {
            0 => (format!("{line} dpi=NO"), None),
            1 => (format!("{line} action=accept"), Some(Field::Action)),
            2 => (line.replacen("action=", "action=x", 1), Some(Field::Action)),
            3 => (line.replacen("action=accept", "proto=tcp", 1).replacen("action=drop", "proto=udp", 1), None),
            4 => (format!("{line} icmptype=256"), Some(Field::IcmpType)),
            5 => (format!("{line}  "), None),
            6 => (format!("{line} comment=x"), None),
            _ => (
                if matches!(r.dst, MDst::None) { format!("{line} {wrong_family}") } else { format!("{line} dsthost=x..y") },
                Some(if matches!(r.dst, MDst::None) { if m.v6 { Field::Dst4 } else { Field::Dst6 } } else { Field::DstHost }),
            ),
        };
        let mut entries = m.entries();
        entries[i + 1].1 = bad;
        let shuffled: Vec<(&str, &str)> = order.iter().map(|&j| (entries[j].0.as_str(), entries[j].1.as_str())).collect();
        let e = RuleSet::from_entries(m.client(), &shuffled).unwrap_err();
        let key = format!("{n:04}");
        prop_assert_eq!(e.client(), m.client());
        prop_assert_eq!(e.key(), Some(key.as_str()));
        if let Some(field) = field {
            // Duplicate/invalid checks may trip over another field first
            // only when the line has that field; these do not.
            prop_assert_eq!(e.field(), Some(field), "{}", e);
        }
    }
}

#[test]
fn resolved_hosts_keep_only_their_family() {
    let mut set = RuleSet::from_entries(
        CLIENT4,
        &[
            ("policy", "drop"),
            ("0000", "action=accept dsthost=ripe.net"),
        ],
    )
    .unwrap();
    set.set_resolved(
        "ripe.net",
        &[
            "2001:67c:2e8:22::c100:68b".parse().unwrap(),
            "193.0.6.139".parse().unwrap(),
        ],
    );
    assert_eq!(
        set.host_state("ripe.net"),
        Some(&HostState::Resolved(vec!["193.0.6.139".parse().unwrap()]))
    );
}
