//! Fuzz the Qubes rule parser and rule sets: rule lines and QubesDB
//! entries built from arbitrary bytes must never make the crate panic, and
//! whatever it accepts must behave:
//! - an accepted line renders (dom0's canonical form) and re-parses to the
//!   same rule, and the rendering is stable;
//! - an accepted rule set has one rule per numeric key, in strictly
//!   increasing order, and decides every flow without panicking;
//! - every decision's reason is consistent with its verdict (the matching
//!   rule's action, the policy, a pending host → silent drop, ...);
//! - resolving hosts only ever turns a silent drop into another verdict
//!   (a pending host never let anything through that resolution blocks);
//! - a refused rule set's error names the client and a key that was given.
//!
//! Input layout: byte 0 picks the mode. Even: structured, the rest drives
//! a generator of near-valid entries (field names and values mostly from
//! lists of interesting tokens, sometimes raw). Odd: raw, the rest is text
//! (lossy UTF-8), first line the client, then one entry per line as
//! `key<TAB>value`.
#![no_main]

use std::collections::BTreeSet;
use std::net::IpAddr;

use libfuzzer_sys::arbitrary::{Result as AResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use rules::{
    Action, Context, Destination, Flow, HostState, Reason, Rule, RuleKey, RuleSet, Transport,
    Verdict,
};

const CLIENTS: &[&str] = &["10.137.0.5", "fd09:24ef:4179::a89:5", "10.137.0", "", "::"];
const KEYS: &[&str] = &[
    "policy", "0000", "0001", "0002", "0003", "0010", "0042", "9999", "10000", "7", "00000", "",
    "policy/x", "0000/0",
];
const FIELDS: &[&str] = &[
    "action",
    "dst4",
    "dst6",
    "dsthost",
    "proto",
    "specialtarget",
    "dstports",
    "icmptype",
    "dpi",
    "comment",
    "expire",
    "",
];
const VALUES: &[&str] = &[
    "accept",
    "drop",
    "tcp",
    "udp",
    "icmp",
    "dns",
    "53",
    "53-53",
    "80-443",
    "443-80",
    "0-65535",
    "65536",
    "0",
    "8",
    "128",
    "255",
    "256",
    "10.0.0.0/8",
    "10.0.0.1",
    "10.139.1.1/32",
    "8.8.8.8/32",
    "0.0.0.0/0",
    "1.2.3.4/33",
    "::/0",
    "2000::/3",
    "2001::1/128",
    "a::b/128",
    "::ffff:1.2.3.4/128",
    "qubes-os.org",
    "ripe.net",
    "10.139.1.2",
    "a..b",
    ".",
    "NO",
    "",
];
/// Destinations flows go to: DNS servers, hosts' addresses, networks.
const ADDRS: &[&str] = &[
    "10.139.1.1",
    "10.139.1.2",
    "10.0.0.1",
    "8.8.8.8",
    "1.2.3.4",
    "147.75.32.69",
    "2001::1",
    "2001:db8::1",
    "a::b",
    "::ffff:1.2.3.4",
    "10.137.0.5",
    "fd09:24ef:4179::a89:5",
];

fn pick(u: &mut Unstructured<'_>, list: &[&str]) -> AResult<String> {
    if u.ratio(1u8, 8u8)? {
        Ok(String::from(u.arbitrary::<&str>()?))
    } else {
        Ok(String::from(*u.choose(list)?))
    }
}

fn rule_line(u: &mut Unstructured<'_>) -> AResult<String> {
    let mut line = String::new();
    let n = u.int_in_range(0..=6)?;
    for i in 0..n {
        if i > 0 {
            line += *u.choose(&[" ", " ", " ", " ", "  ", "\t", "="])?;
        }
        let field = if i == 0 && u.ratio(3u8, 4u8)? {
            String::from("action")
        } else {
            pick(u, FIELDS)?
        };
        line += &field;
        line.push('=');
        line += &pick(u, VALUES)?;
    }
    Ok(line)
}

fn structured(u: &mut Unstructured<'_>) -> AResult<(String, Vec<(String, String)>)> {
    let client = pick(u, CLIENTS)?;
    let mut entries = Vec::new();
    if u.ratio(7u8, 8u8)? {
        entries.push((String::from("policy"), pick(u, &["drop", "accept"])?));
    }
    let n = u.int_in_range(0..=12)?;
    for _ in 0..n {
        let key = if u.ratio(3u8, 4u8)? {
            format!("{:04}", u.int_in_range(0u32..=10_002)?)
        } else {
            pick(u, KEYS)?
        };
        entries.push((key, rule_line(u)?));
    }
    Ok((client, entries))
}

fn raw(data: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let client = String::from(lines.next().unwrap_or(""));
    let entries = lines
        .map(|l| match l.split_once('\t') {
            Some((k, v)) => (String::from(k), String::from(v)),
            None => (String::from(l), String::new()),
        })
        .collect();
    (client, entries)
}

fn check_line(line: &str) {
    if let Ok(rule) = Rule::parse(line) {
        let canonical = rule.to_string();
        let again = Rule::parse(&canonical).expect("canonical form re-parses");
        assert_eq!(again, rule, "{line:?} -> {canonical:?}");
        assert_eq!(again.to_string(), canonical);
    }
}

fn transport(u: &mut Unstructured<'_>) -> AResult<Transport> {
    let port = |u: &mut Unstructured<'_>| -> AResult<u16> {
        if u.ratio(1u8, 2u8)? {
            Ok(*u.choose(&[53u16, 52, 54, 80, 443, 0, 65535])?)
        } else {
            u.arbitrary()
        }
    };
    Ok(match u.int_in_range(0..=4)? {
        0 => Transport::Tcp { dst_port: port(u)? },
        1 => Transport::Udp { dst_port: port(u)? },
        2 => Transport::Icmp {
            icmp_type: u.arbitrary()?,
        },
        3 => Transport::Icmpv6 {
            icmp_type: u.arbitrary()?,
        },
        _ => Transport::Other {
            protocol: u.arbitrary()?,
        },
    })
}

fn addr(u: &mut Unstructured<'_>) -> AResult<IpAddr> {
    if u.ratio(3u8, 4u8)? {
        Ok(u.choose(ADDRS)?.parse().expect("valid address"))
    } else if u.arbitrary()? {
        Ok(IpAddr::V4(u.arbitrary::<u32>()?.into()))
    } else {
        Ok(IpAddr::V6(u.arbitrary::<u128>()?.into()))
    }
}

fn flows(u: &mut Unstructured<'_>, set: &RuleSet) -> AResult<Vec<Flow>> {
    let n = u.int_in_range(1..=16)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let src = match set.client() {
            Some(c) if u.ratio(7u8, 8u8)? => c,
            _ => addr(u)?,
        };
        out.push(Flow::new(src, addr(u)?, transport(u)?));
    }
    Ok(out)
}

/// Checks that a decision's reason fits its verdict and the rule set.
fn check_decision(set: &RuleSet, flow: &Flow, ctx: &Context<'_>) -> Verdict {
    let d = set.explain(flow, ctx);
    assert_eq!(set.decide(flow, ctx), d.verdict);
    let rule = |key: RuleKey| {
        set.rules()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| r)
            .expect("reason names a rule of the set")
    };
    let host_state = |key: RuleKey| match rule(key).destination() {
        Destination::Host(h) => set.host_state(h.as_str()).expect("host is known").clone(),
        other => panic!("host reason for a rule without dsthost: {other:?}"),
    };
    match d.reason {
        Reason::Rule(key) => {
            let want = match rule(key).action() {
                Action::Accept => Verdict::Accept,
                Action::Drop => Verdict::Reject,
            };
            assert_eq!(d.verdict, want);
        }
        Reason::Policy => {
            let want = match set.policy() {
                Action::Accept => Verdict::Accept,
                Action::Drop => Verdict::Reject,
            };
            assert_eq!(d.verdict, want);
        }
        Reason::DenyAll => {
            assert!(set.is_deny_all());
            assert_eq!(d.verdict, Verdict::Reject);
        }
        Reason::HostPending(key) => {
            assert_eq!(d.verdict, Verdict::Drop);
            assert_eq!(host_state(key), HostState::Pending);
        }
        Reason::HostFailed(key) => {
            assert_eq!(d.verdict, Verdict::Reject);
            assert_eq!(host_state(key), HostState::Failed);
        }
        Reason::OtherSource => {
            assert_eq!(d.verdict, Verdict::Drop);
            assert_ne!(Some(flow.src), set.client());
        }
    }
    d.verdict
}

fn run(u: &mut Unstructured<'_>, client: &str, entries: &[(String, String)]) -> AResult<()> {
    for (_, value) in entries {
        check_line(value);
    }
    let borrowed: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut set = match RuleSet::from_entries(client, &borrowed) {
        Ok(set) => set,
        Err(e) => {
            assert!(client.starts_with(e.client()));
            if let Some(key) = e.key() {
                assert!(
                    key == "policy" || entries.iter().any(|(k, _)| k.starts_with(key)),
                    "{e}"
                );
            }
            assert!(!e.to_string().is_empty());
            let (deny, err) = RuleSet::from_entries_or_deny_all(client, &borrowed);
            assert!(deny.is_deny_all() && err.is_some());
            let set = deny;
            let dns: Vec<IpAddr> = vec![addr(u)?, addr(u)?];
            for f in flows(u, &set)? {
                assert_eq!(
                    check_decision(&set, &f, &Context::new(&dns)),
                    Verdict::Reject
                );
            }
            return Ok(());
        }
    };

    // One rule per numeric key, strictly increasing.
    let numeric = entries.iter().filter(|(k, _)| k != "policy").count();
    assert_eq!(set.len(), numeric);
    let keys: Vec<RuleKey> = set.rules().map(|(k, _)| k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    for (_, rule) in set.rules() {
        check_line(&rule.to_string());
    }
    let names: BTreeSet<String> = set.hosts().map(|(h, _)| h.to_string()).collect();
    // Only pending names are the firewall's to resolve (a literal starts
    // out settled).
    let pending: BTreeSet<String> = set.pending_hosts().map(|h| h.to_string()).collect();
    assert!(pending.is_subset(&names));
    assert_eq!(
        set.pending_hosts().count(),
        set.hosts()
            .filter(|(_, s)| **s == HostState::Pending)
            .count()
    );

    let dns: Vec<IpAddr> = (0..u.int_in_range(0..=3)?)
        .map(|_| addr(u))
        .collect::<AResult<_>>()?;
    let ctx = Context::new(&dns);
    let fs = flows(u, &set)?;
    let before: Vec<Verdict> = fs.iter().map(|f| check_decision(&set, f, &ctx)).collect();

    // Resolve some pending hosts (A and AAAA mixed), fail others.
    for name in &pending {
        match u.int_in_range(0..=2)? {
            0 => {}
            1 => assert!(set.set_failed(name)),
            _ => {
                let addrs: Vec<IpAddr> = (0..u.int_in_range(0..=4)?)
                    .map(|_| addr(u))
                    .collect::<AResult<_>>()?;
                assert!(set.set_resolved(name, &addrs));
                match set.host_state(name) {
                    Some(HostState::Resolved(a)) => {
                        assert!(!a.is_empty());
                        assert!(a.windows(2).all(|w| w[0] < w[1]));
                    }
                    Some(HostState::Failed) => {}
                    other => panic!("after set_resolved: {other:?}"),
                }
            }
        }
    }
    assert!(!set.set_resolved("not-a-rule-host.invalid", &[]));
    for (f, was) in fs.iter().zip(before) {
        let now = check_decision(&set, f, &ctx);
        assert!(
            now == was || was == Verdict::Drop,
            "{f:?}: {was:?} became {now:?} after resolution"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 1 {
        let (client, entries) = raw(rest);
        // Raw mode: drive flows and resolution from the same bytes.
        let mut u = Unstructured::new(rest);
        let _ = run(&mut u, &client, &entries);
    } else {
        let mut u = Unstructured::new(rest);
        let Ok((client, entries)) = structured(&mut u) else {
            return;
        };
        let _ = run(&mut u, &client, &entries);
    }
});
