//! Whole sessions: the client against the dom0 daemon model, directly and
//! over the in-memory stream pair; every malformed message dom0 could send.

use std::net::{IpAddr, Ipv4Addr};
use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use crate::client::MAX_DIAGNOSTIC_EVENTS;
use crate::stream::mem::{pipe, Closed, MemStream};
use crate::wire::{encode, encode_unchecked};
use crate::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

const C1: &str = "10.137.0.5";
const C2: &str = "10.137.0.9";
const C6: &str = "fd09:24ef:4179::a89:5";

fn fw_config() -> NetConfig {
    NetConfig {
        ip: Some(v4("10.137.0.23")),
        netmask: Some(v4("255.255.255.255")),
        gateway: Some(v4("10.137.0.4")),
        primary_dns: Some(v4("10.139.1.1")),
        secondary_dns: Some(v4("10.139.1.2")),
        mac: Some([0, 0x16, 0x3e, 0x5e, 0x6c, 0]),
        netvm_gateway: Some(v4("10.137.0.23")),
        netvm_netmask: Some(v4("255.255.255.255")),
        netvm_primary_dns: Some(v4("10.139.1.1")),
        netvm_secondary_dns: Some(v4("10.139.1.2")),
        ..NetConfig::default()
    }
}

/// A daemon holding what dom0 writes before the firewall starts: the
/// configuration, two clients with default rules, their addresses.
fn populated_daemon() -> Daemon {
    let mut d = Daemon::new();
    d.write("/name", b"sys-mirage").unwrap();
    d.write("/qubes-vm-type", b"ProxyVM").unwrap();
    d.write("/qubes-iptables-error", b"").unwrap();
    d.set_net_config(&fw_config()).unwrap();
    d.set_connected_ips(&[v4(C1), v4(C2)], &[]).unwrap();
    d.set_mapped_ip(v4(C1), Some(v4(C1)), Some(v4("10.137.0.23")))
        .unwrap();
    d.set_client_rules(ip(C1), "drop", &["action=accept"])
        .unwrap();
    d.set_client_rules(
        ip(C2),
        "drop",
        &[
            "action=accept proto=tcp dstports=443-443",
            "action=accept specialtarget=dns",
            "action=drop",
        ],
    )
    .unwrap();
    d
}

/// Move bytes between the two directly until both are quiet.
fn exchange(d: &mut Daemon, c: &mut Client) -> Result<(), QdbError> {
    loop {
        let to_c = d.output().to_vec();
        d.consume_output(to_c.len());
        let to_d = c.output().to_vec();
        c.consume_output(to_d.len());
        if to_c.is_empty() && to_d.is_empty() {
            return Ok(());
        }
        c.receive(&to_c)?;
        d.receive(&to_d)?;
    }
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn synced_pair() -> (Daemon, Client) {
    let mut d = populated_daemon();
    let mut c = Client::new();
    exchange(&mut d, &mut c).unwrap();
    assert!(c.is_synced() && d.is_synced());
    events(&mut c);
    (d, c)
}

/// Split a byte stream into whole frames (offsets), to deliver one by one.
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut dec = crate::decoder::Decoder::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        let (n, f) = dec.decode(&bytes[pos..]);
        pos += n;
        if let Some(f) = f {
            f.unwrap();
            out.push(&bytes[start..pos]);
            start = pos;
        }
    }
    out
}

fn raw(ty: MsgType, path: &str, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_unchecked(
        u8::from(ty),
        path.as_bytes(),
        data.len() as u32,
        data,
        &mut v,
    );
    v
}

/// The messages in a client's output, decoded.
fn answers(c: &mut Client) -> Vec<(MsgType, String)> {
    let out = c.output().to_vec();
    c.consume_output(out.len());
    let mut dec = crate::decoder::Decoder::new();
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let (n, f) = dec.decode(&out[pos..]);
        pos += n;
        if let Some(f) = f {
            let f = f.unwrap();
            assert!(f.data.is_empty() || f.header.ty() == MsgType::CmdWrite);
            v.push((f.header.ty(), String::from(f.header.path())));
        }
    }
    v
}

// ----- the normal session -----

#[test]
fn client_sends_exactly_one_multiread() {
    let mut c = Client::new();
    assert_eq!(c.phase(), Phase::Syncing);
    assert_eq!(answers(&mut c), [(MsgType::CmdMultiread, String::new())]);
    assert!(answers(&mut c).is_empty());
    c.receive(&raw(MsgType::RespMultiread, "", b"")).unwrap();
    assert!(answers(&mut c).is_empty(), "no second MULTIREAD");
    c.reconnect();
    assert_eq!(answers(&mut c), [(MsgType::CmdMultiread, String::new())]);
}

#[test]
fn initial_sync_builds_replica_and_views() {
    let mut d = populated_daemon();
    let mut c = Client::new();
    assert!(!c.is_synced());
    exchange(&mut d, &mut c).unwrap();
    assert!(c.is_synced());
    assert_eq!(c.db(), d.db(), "replica equals dom0's database");
    let ev = events(&mut c);
    assert_eq!(ev.last(), Some(&Event::Synced));
    for e in [
        Event::ConfigChanged,
        Event::ClientsChanged,
        Event::RulesCommitted { client: ip(C1) },
        Event::RulesCommitted { client: ip(C2) },
    ] {
        assert!(ev.contains(&e), "{e:?} in {ev:?}");
    }
    assert_eq!(ev.len(), 5, "{ev:?}");

    let cfg = c.net_config();
    assert_eq!(*cfg, fw_config());
    let up = cfg.uplink().unwrap();
    assert_eq!(up.gateway, v4("10.137.0.4"));
    let cl = c.client_list();
    assert_eq!(cl.connected_ips, [v4(C1), v4(C2)]);
    assert_eq!(cl.mapped[&v4(C1)].visible_gateway, Some(v4("10.137.0.23")));

    let r1 = c.rules(ip(C1)).unwrap();
    assert_eq!(
        r1.str_entries().unwrap(),
        [("0000", "action=accept"), ("policy", "drop")]
    );
    let r2 = c.rules(ip(C2)).unwrap();
    assert_eq!(r2.len(), 4);
    assert_eq!(r2.get("0002"), Some(&b"action=drop"[..]));
    assert_eq!(c.committed_clients().collect::<Vec<_>>(), [ip(C1), ip(C2)]);
    assert_eq!(c.stats().syncs, 1);
    assert_eq!(c.read_str("/name"), Some("sys-mirage"));
}

#[test]
fn dump_comes_in_reverse_order_and_ends_with_the_marker() {
    let mut d = populated_daemon();
    d.receive(&raw(MsgType::CmdMultiread, "", b"")).unwrap();
    let out = d.output().to_vec();
    let fs = frames(&out);
    assert_eq!(fs.len(), d.db().len() + 1);
    let paths: Vec<String> = fs
        .iter()
        .map(|f| {
            let mut h = [0u8; HDR_SIZE];
            h.copy_from_slice(&f[..HDR_SIZE]);
            String::from(crate::wire::Header::parse(&h).unwrap().path())
        })
        .collect();
    let mut expected: Vec<String> = d.db().iter().rev().map(|(k, _)| String::from(k)).collect();
    expected.push(String::new());
    assert_eq!(paths, expected);
}

#[test]
fn live_rule_edit_commits_once_at_the_empty_write() {
    let (mut d, mut c) = synced_pair();
    let old = c.rules(ip(C1)).unwrap();
    d.set_client_rules(
        ip(C1),
        "drop",
        &["action=accept dst4=10.0.0.0/8", "action=drop proto=udp"],
    )
    .unwrap();
    let out = d.output().to_vec();
    d.consume_output(out.len());
    let fs = frames(&out);
    // RM subtree, policy, 0000, 0001, commit.
    assert_eq!(fs.len(), 5);
    for (i, f) in fs.iter().enumerate() {
        c.receive(f).unwrap();
        let ev = events(&mut c);
        if i + 1 < fs.len() {
            assert!(ev.is_empty(), "no event before the commit: {ev:?}");
            assert_eq!(c.rules(ip(C1)).unwrap(), old, "old rules stay in force");
        } else {
            assert_eq!(ev, [Event::RulesCommitted { client: ip(C1) }]);
        }
    }
    let new = c.rules(ip(C1)).unwrap();
    assert!(new.generation() > old.generation());
    assert_eq!(
        new.str_entries().unwrap(),
        [
            ("0000", "action=accept dst4=10.0.0.0/8"),
            ("0001", "action=drop proto=udp"),
            ("policy", "drop"),
        ]
    );
    // Each pushed message was answered RESP_OK with its path.
    let acks = answers(&mut c);
    assert_eq!(acks.len(), 5);
    assert!(acks.iter().all(|(t, _)| *t == MsgType::RespOk));
    assert_eq!(acks[0].1, format!("/qubes-firewall/{C1}/"));
    assert_eq!(acks[4].1, format!("/qubes-firewall/{C1}"));
    // The other client is untouched.
    assert_eq!(c.rules(ip(C2)).unwrap().generation(), 2);
}

#[test]
fn every_push_is_acknowledged() {
    let (mut d, mut c) = synced_pair();
    d.set_client_rules(ip(C2), "drop", &["action=accept"])
        .unwrap();
    d.write("/qubes-service/foo", b"1").unwrap();
    assert!(
        !d.rm("/does-not-exist").unwrap(),
        "nothing to remove, nothing pushed"
    );
    let pushed = d.stats().pushed;
    assert_eq!(d.pending_acks() as u64, pushed);
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(d.pending_acks(), 0);
    assert_eq!(d.stats().acks, pushed);
    assert_eq!(d.stats().errors_from_vm, 0);
    assert_eq!(c.db(), d.db());
}

#[test]
fn subtree_rm_alone_keeps_the_committed_rules() {
    let (mut d, mut c) = synced_pair();
    d.rm(&format!("/qubes-firewall/{C1}/")).unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert!(events(&mut c).is_empty());
    assert_eq!(c.rules(ip(C1)).unwrap().len(), 2);
}

#[test]
fn client_removal() {
    let (mut d, mut c) = synced_pair();
    d.remove_client(ip(C1)).unwrap();
    d.set_connected_ips(&[v4(C2)], &[]).unwrap();
    exchange(&mut d, &mut c).unwrap();
    let ev = events(&mut c);
    assert_eq!(
        ev,
        [
            Event::ClientRemoved { client: ip(C1) },
            Event::ClientsChanged
        ]
    );
    assert!(c.rules(ip(C1)).is_none());
    assert!(c.rules(ip(C2)).is_some());
    assert_eq!(c.client_list().connected_ips, [v4(C2)]);
    assert!(c.client_list().mapped.is_empty());
    // Removing everything under /qubes-firewall/ removes C2 too.
    d.rm("/qubes-firewall/").unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::ClientRemoved { client: ip(C2) }]);
    assert_eq!(c.committed_clients().count(), 0);
}

#[test]
fn ipv6_clients_are_committed_too() {
    let (mut d, mut c) = synced_pair();
    d.set_client_rules(ip(C6), "drop", &["action=accept dst6=2000::/3"])
        .unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::RulesCommitted { client: ip(C6) }]);
    assert_eq!(
        c.rules(ip(C6)).unwrap().get("0000"),
        Some(&b"action=accept dst6=2000::/3"[..])
    );
}

#[test]
fn config_changes_are_reported_once_per_change() {
    let (mut d, mut c) = synced_pair();
    // Rewriting the same values changes nothing.
    d.set_net_config(&fw_config()).unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert!(events(&mut c).is_empty());
    // A netvm change rewrites several keys; events coalesce until polled.
    let mut cfg = fw_config();
    cfg.gateway = Some(v4("10.137.0.8"));
    cfg.ip = Some(v4("10.137.0.24"));
    cfg.ip6 = Some("fd09:24ef:4179::a89:18".parse().unwrap());
    d.set_net_config(&cfg).unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::ConfigChanged]);
    assert_eq!(*c.net_config(), cfg);
    // Removing a key is a change too.
    cfg.ip6 = None;
    d.set_net_config(&cfg).unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::ConfigChanged]);
    assert_eq!(c.net_config().ip6, None);
}

#[test]
fn rm_of_a_missing_key_is_answered_ok() {
    let (_, mut c) = synced_pair();
    c.receive(&raw(MsgType::CmdRm, "/not-there", b"")).unwrap();
    assert_eq!(
        answers(&mut c),
        [(MsgType::RespOk, String::from("/not-there"))]
    );
    assert!(c.is_synced());
}

#[test]
fn reconnect_resync_reports_only_differences() {
    let (mut d, mut c) = synced_pair();
    let r2 = c.rules(ip(C2)).unwrap();
    // The connection drops; meanwhile dom0 changes things.
    d.reconnect();
    c.reconnect();
    d.set_client_rules(ip(C1), "drop", &["action=drop"])
        .unwrap();
    d.remove_client(ip(C2)).unwrap();
    assert_eq!(d.stats().pushed, 0, "nothing pushed before the MULTIREAD");
    assert_eq!(c.phase(), Phase::Syncing);
    assert!(
        c.rules(ip(C1)).is_some(),
        "stale rules stay until the dump ends"
    );
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(c.db(), d.db());
    let ev = events(&mut c);
    assert_eq!(
        ev,
        [
            Event::ClientRemoved { client: ip(C2) },
            Event::RulesCommitted { client: ip(C1) },
            Event::Synced
        ]
    );
    assert_eq!(
        c.rules(ip(C1)).unwrap().get("0000"),
        Some(&b"action=drop"[..])
    );
    drop(r2);
    // A second identical resync reports nothing but Synced.
    d.reconnect();
    c.reconnect();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::Synced]);
}

#[test]
fn vm_writes_reach_dom0_and_errors_come_back() {
    let (mut d, mut c) = synced_pair();
    assert_eq!(
        Client::new().write("/qubes-iptables-error", b"x"),
        Err(QdbError::NotSynced)
    );
    c.write("/qubes-iptables-error", b"rules of 10.137.0.5 invalid")
        .unwrap();
    assert_eq!(
        c.read_str("/qubes-iptables-error"),
        Some("rules of 10.137.0.5 invalid")
    );
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(
        d.read("/qubes-iptables-error"),
        Some(&b"rules of 10.137.0.5 invalid"[..])
    );
    assert_eq!(d.stats().vm_writes, 1);
    assert!(events(&mut c).is_empty(), "RESP_OK is silent");
    // Refused locally, never sent.
    assert!(matches!(c.write("/a/", b""), Err(QdbError::BadKey { .. })));
    assert_eq!(
        c.write("/a", b"x\0"),
        Err(QdbError::Wire(WireError::NulInData { at: 1 }))
    );
    assert!(c.output().is_empty());
    // dom0 refusing a write comes back as an event.
    c.write("/x", b"1").unwrap();
    answers(&mut c);
    c.receive(&raw(MsgType::RespError, "/x", b"")).unwrap();
    assert_eq!(
        events(&mut c),
        [Event::WriteFailed {
            path: String::from("/x")
        }]
    );
}

#[test]
fn watches_follow_qubesdb_semantics() {
    let (mut d, mut c) = synced_pair();
    let fw = c.add_watch("/qubes-firewall/").unwrap();
    let exact = c.add_watch("/qubes-ip").unwrap();
    let other = c.add_watch("/qubes-ip/").unwrap();
    assert!(c.add_watch("relative").is_err());
    d.set_client_rules(ip(C1), "drop", &["action=accept"])
        .unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(
        events(&mut c),
        [Event::Watch(fw), Event::RulesCommitted { client: ip(C1) }],
        "one coalesced watch event for five changes"
    );
    d.write("/qubes-ip", b"10.137.0.99").unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::Watch(exact), Event::ConfigChanged]);
    assert!(c.remove_watch(exact));
    assert!(!c.remove_watch(exact));
    d.write("/qubes-ip", b"10.137.0.98").unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::ConfigChanged]);
    // A resync fires watches for keys that differ.
    d.reconnect();
    c.reconnect();
    d.write("/qubes-firewall/x", b"1").unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::Watch(fw), Event::Synced]);
    let _ = other;
}

#[test]
fn over_the_stream_pair_with_small_buffers() {
    // 97-byte buffers: every message crosses in pieces.
    let (mut a, mut b) = pipe(97);
    let mut d = populated_daemon();
    let mut c = Client::new();
    let mut spin = 0;
    loop {
        let p1 = pump(&mut c, &mut a).unwrap();
        let p2 = pump(&mut d, &mut b).unwrap();
        if !p1 && !p2 {
            break;
        }
        spin += 1;
        assert!(spin < 10_000);
    }
    assert!(c.is_synced());
    assert_eq!(c.db(), d.db());
    d.set_client_rules(ip(C2), "drop", &["action=drop"])
        .unwrap();
    while pump(&mut d, &mut b).unwrap() | pump(&mut c, &mut a).unwrap() {}
    assert_eq!(d.pending_acks(), 0);
    assert_eq!(c.rules(ip(C2)).unwrap().len(), 2);
    // Closing the stream is a stream error, not a protocol error.
    a.close();
    assert_eq!(pump(&mut c, &mut a), Err(PumpError::Stream(Closed)));
    assert!(c.broken().is_none());
}

/// Deterministic pseudo-random chunk sizes (xorshift).
struct Chunks(u64);
impl Chunks {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as usize % max) + 1
    }
}

#[test]
fn any_chunking_gives_the_same_result() {
    let mut d = populated_daemon();
    d.receive(&raw(MsgType::CmdMultiread, "", b"")).unwrap();
    let mut d2 = Daemon::new();
    d2.receive(&raw(MsgType::CmdMultiread, "", b"")).unwrap();
    let _ = d2.output();
    // Dump + a live edit, as one byte stream.
    let mut stream = d.output().to_vec();
    d.consume_output(stream.len());
    d.set_client_rules(ip(C1), "drop", &["action=drop proto=tcp"])
        .unwrap();
    d.remove_client(ip(C2)).unwrap();
    stream.extend_from_slice(d.output());

    let mut reference = Client::new();
    reference.receive(&stream).unwrap();
    let ref_events = events(&mut reference);
    let ref_out = reference.output().to_vec();
    for seed in 1..200u64 {
        let mut ch = Chunks(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut c = Client::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = ch.next(200).min(rest.len());
            c.receive(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
        assert_eq!(c.db(), reference.db());
        assert_eq!(events(&mut c), ref_events, "seed {seed}");
        assert_eq!(c.output(), &ref_out[..]);
    }
}

// ----- malformed messages from dom0 -----

/// Feed `bytes` to a synced client and return the outcome.
fn live_client_gets(bytes: &[u8]) -> (Client, Result<(), QdbError>) {
    let (_, mut c) = synced_pair();
    answers(&mut c);
    let r = c.receive(bytes);
    (c, r)
}

fn assert_fatal(mut c: Client, r: Result<(), QdbError>, expected: QdbError) {
    assert_eq!(r, Err(expected.clone()));
    assert_eq!(c.broken(), Some(&expected));
    assert!(!c.is_synced());
    // Broken stays broken and touches nothing; views are kept.
    let before = c.db().clone();
    let again = c.receive(&raw(MsgType::CmdWrite, "/qubes-ip", b"1.2.3.4"));
    assert_eq!(again, Err(QdbError::Broken(std::boxed::Box::new(expected))));
    assert_eq!(c.db(), &before);
    assert!(c.rules(ip(C1)).is_some());
    assert!(answers(&mut c).is_empty(), "nothing answered");
    assert_eq!(
        c.write("/x", b""),
        Err(QdbError::Broken(std::boxed::Box::new(
            c.broken().unwrap().clone()
        )))
    );
}

fn assert_refused(mut c: Client, r: Result<(), QdbError>, path: &str, expected: QdbError) {
    assert_eq!(r, Ok(()));
    assert!(c.is_synced(), "session goes on");
    assert_eq!(answers(&mut c), [(MsgType::RespError, String::from(path))]);
    assert_eq!(events(&mut c), [Event::Rejected(expected)]);
    assert_eq!(c.stats().rejected, 1);
    // And the next message is processed normally.
    c.receive(&raw(MsgType::CmdWrite, "/after", b"ok")).unwrap();
    assert_eq!(c.read_str("/after"), Some("ok"));
}

#[test]
fn oversized_data_len_is_fatal() {
    let mut m = Vec::new();
    encode_unchecked(1, b"/a", 3072, &[], &mut m);
    let (c, r) = live_client_gets(&m);
    assert_fatal(
        c,
        r,
        QdbError::Wire(WireError::DataLenTooLarge { len: 3072 }),
    );
    let mut m = Vec::new();
    encode_unchecked(11, b"/a", u32::MAX, &[], &mut m);
    let (c, r) = live_client_gets(&m);
    assert_fatal(
        c,
        r,
        QdbError::Wire(WireError::DataLenTooLarge { len: u32::MAX }),
    );
}

#[test]
fn largest_value_is_accepted() {
    let v = vec![b'x'; MAX_DATA - 1];
    let (mut c, r) = live_client_gets(&raw(MsgType::CmdWrite, "/big", &v));
    r.unwrap();
    assert_eq!(c.read("/big").map(<[u8]>::len), Some(MAX_DATA - 1));
    assert_eq!(answers(&mut c), [(MsgType::RespOk, String::from("/big"))]);
}

#[test]
fn unknown_and_local_only_types_are_fatal() {
    let (c, r) = live_client_gets(&raw_ty(42, "/a"));
    assert_fatal(c, r, QdbError::Wire(WireError::UnknownType(42)));
    for (ty, t) in [
        (0u8, MsgType::CmdRead),
        (3, MsgType::CmdList),
        (5, MsgType::CmdWatch),
        (8, MsgType::RespErrorNoent),
        (13, MsgType::RespWatch),
    ] {
        let (c, r) = live_client_gets(&raw_ty(ty, "/a"));
        assert_fatal(c, r, QdbError::Wire(WireError::NotOnVchan(t)));
    }
}

fn raw_ty(ty: u8, path: &str) -> Vec<u8> {
    let mut v = Vec::new();
    encode_unchecked(ty, path.as_bytes(), 0, &[], &mut v);
    v
}

#[test]
fn bad_paths_are_fatal() {
    let mut m = Vec::new();
    encode_unchecked(1, &[b'/'; 64], 0, &[], &mut m);
    let (c, r) = live_client_gets(&m);
    assert_fatal(c, r, QdbError::Wire(WireError::PathNotTerminated));
    let (c, r) = live_client_gets(&raw(MsgType::CmdWrite, "/a b", b"1"));
    assert_fatal(
        c,
        r,
        QdbError::Wire(WireError::PathByte { at: 2, byte: b' ' }),
    );
    let (c, r) = live_client_gets(&raw(MsgType::CmdRm, "/\u{e9}", b""));
    assert_fatal(
        c,
        r,
        QdbError::Wire(WireError::PathByte { at: 1, byte: 0xc3 }),
    );
}

#[test]
fn nul_in_a_pushed_write_is_answered_with_an_error() {
    let (c, r) = live_client_gets(&raw(MsgType::CmdWrite, "/qubes-ip", b"10.0\0.0.1"));
    let expected = QdbError::NulInValue {
        ty: MsgType::CmdWrite,
        path: String::from("/qubes-ip"),
        at: 4,
    };
    let before = c.read("/qubes-ip").map(<[u8]>::to_vec);
    assert_eq!(before.as_deref(), Some(&b"10.137.0.23"[..]), "not applied");
    assert_refused(c, r, "/qubes-ip", expected);
}

#[test]
fn nul_in_a_dump_entry_is_fatal() {
    let mut c = Client::new();
    answers(&mut c);
    let r = c.receive(&raw(MsgType::RespMultiread, "/a", b"\0"));
    assert_eq!(
        r,
        Err(QdbError::NulInValue {
            ty: MsgType::RespMultiread,
            path: String::from("/a"),
            at: 0
        })
    );
    assert!(c.broken().is_some());
}

#[test]
fn dump_entries_must_be_keys() {
    for bad in ["a", "/a/"] {
        let mut c = Client::new();
        let r = c.receive(&raw(MsgType::RespMultiread, bad, b"1"));
        assert_eq!(
            r,
            Err(QdbError::BadKey {
                ty: MsgType::RespMultiread,
                path: String::from(bad)
            })
        );
    }
    let mut c = Client::new();
    let r = c.receive(&raw(MsgType::RespMultiread, "", b"x"));
    assert!(matches!(r, Err(QdbError::UnexpectedData { len: 1, .. })));
}

#[test]
fn pushed_writes_to_non_keys_are_answered_with_an_error() {
    for bad in ["/a/", "a", ""] {
        let (c, r) = live_client_gets(&raw(MsgType::CmdWrite, bad, b"1"));
        let e = QdbError::BadKey {
            ty: MsgType::CmdWrite,
            path: String::from(bad),
        };
        assert_refused(c, r, bad, e);
    }
}

#[test]
fn rm_with_data_or_a_relative_path_is_answered_with_an_error() {
    let (c, r) = live_client_gets(&raw(MsgType::CmdRm, "/qubes-ip", b"x"));
    let e = QdbError::UnexpectedData {
        ty: MsgType::CmdRm,
        path: String::from("/qubes-ip"),
        len: 1,
    };
    assert!(c.read("/qubes-ip").is_some(), "not removed");
    assert_refused(c, r, "/qubes-ip", e);
    for bad in ["", "qubes-ip"] {
        let (c, r) = live_client_gets(&raw(MsgType::CmdRm, bad, b""));
        let e = QdbError::BadKey {
            ty: MsgType::CmdRm,
            path: String::from(bad),
        };
        assert_refused(c, r, bad, e);
    }
}

#[test]
fn unexpected_messages_are_fatal() {
    let (c, r) = live_client_gets(&raw(MsgType::RespMultiread, "/a", b"1"));
    assert_fatal(
        c,
        r,
        QdbError::Unexpected {
            ty: MsgType::RespMultiread,
            path: String::from("/a"),
            during: "after the dump ended",
        },
    );
    let (c, r) = live_client_gets(&raw(MsgType::CmdMultiread, "", b""));
    assert!(matches!(
        r,
        Err(QdbError::Unexpected {
            ty: MsgType::CmdMultiread,
            ..
        })
    ));
    drop(c);
    for ty in [MsgType::CmdWrite, MsgType::CmdRm] {
        let mut c = Client::new();
        let r = c.receive(&raw(ty, "/a", b""));
        assert_eq!(
            r,
            Err(QdbError::Unexpected {
                ty,
                path: String::from("/a"),
                during: "before the dump ended",
            })
        );
    }
    let (c, r) = live_client_gets(&raw(MsgType::RespOk, "/a", b"x"));
    assert!(matches!(
        r,
        Err(QdbError::UnexpectedData {
            ty: MsgType::RespOk,
            ..
        })
    ));
    drop(c);
    let (c, r) = live_client_gets(&raw(MsgType::RespError, "/a", b"x"));
    assert!(matches!(
        r,
        Err(QdbError::UnexpectedData {
            ty: MsgType::RespError,
            ..
        })
    ));
    drop(c);
}

#[test]
fn spurious_responses_are_ignored() {
    let (mut c, r) = live_client_gets(&raw(MsgType::RespOk, "/a", b""));
    r.unwrap();
    c.receive(&raw(MsgType::RespError, "/b", b"")).unwrap();
    assert!(c.is_synced());
    assert!(events(&mut c).is_empty());
    assert!(answers(&mut c).is_empty());
}

#[test]
fn truncated_messages_wait_without_effect() {
    let (_, mut c) = synced_pair();
    answers(&mut c);
    let m = raw(MsgType::CmdWrite, "/qubes-ip", b"10.0.0.1");
    for cut in [1, HDR_SIZE - 1, HDR_SIZE, m.len() - 1] {
        let (_, mut c) = synced_pair();
        c.receive(&m[..cut]).unwrap();
        assert!(events(&mut c).is_empty());
        assert!(answers(&mut c).is_empty());
        assert_eq!(c.read_str("/qubes-ip"), Some("10.137.0.23"));
        c.receive(&m[cut..]).unwrap();
        assert_eq!(c.read_str("/qubes-ip"), Some("10.0.0.1"));
    }
    // Over a stream that closes mid-message: a stream error, no change.
    let (mut a, mut b) = pipe(4096);
    let mut c = Client::new();
    let mut dump = Vec::new();
    encode(MsgType::RespMultiread, "/a", b"1", &mut dump).unwrap();
    use crate::stream::ByteStream;
    b.write(&dump[..HDR_SIZE - 1]).unwrap();
    assert!(pump(&mut c, &mut a).is_ok(), "partial header delivered");
    b.close();
    assert_eq!(pump(&mut c, &mut a), Err(PumpError::Stream(Closed)));
    assert!(c.db().is_empty());
    assert!(c.broken().is_none());
}

#[test]
fn many_rejections_are_capped_not_queued_forever() {
    let (_, mut c) = synced_pair();
    let mut bytes = Vec::new();
    for _ in 0..(MAX_DIAGNOSTIC_EVENTS + 10) {
        bytes.extend(raw(MsgType::CmdWrite, "/a", b"\0"));
    }
    c.receive(&bytes).unwrap();
    assert_eq!(c.stats().rejected, (MAX_DIAGNOSTIC_EVENTS + 10) as u64);
    assert_eq!(c.stats().dropped_events, 10);
    assert_eq!(events(&mut c).len(), MAX_DIAGNOSTIC_EVENTS);
    // Room again once polled.
    c.receive(&raw(MsgType::CmdWrite, "/a", b"\0")).unwrap();
    assert_eq!(events(&mut c).len(), 1);
}

#[test]
fn backpressure_when_dom0_does_not_read_answers() {
    let (_, mut c) = synced_pair();
    answers(&mut c);
    let mut n = 0;
    while c.wants_input() {
        c.receive(&raw(MsgType::CmdWrite, "/k", b"v")).unwrap();
        n += 1;
        assert!(n < 10_000);
    }
    assert!(c.output().len() > crate::client::MAX_OUTPUT_BACKLOG);
    answers(&mut c);
    assert!(c.wants_input());
}

#[test]
fn replica_bound_refuses_writes_and_breaks_oversized_dumps() {
    let mut c = Client::with_db(Db::with_limit(200));
    c.receive(&raw(MsgType::RespMultiread, "/a", &[b'x'; 100]))
        .unwrap();
    let r = c.receive(&raw(MsgType::RespMultiread, "/b", &[b'x'; 100]));
    assert_eq!(
        r,
        Err(QdbError::DatabaseFull {
            path: String::from("/b")
        })
    );

    let mut c = Client::with_db(Db::with_limit(200));
    c.receive(&raw(MsgType::RespMultiread, "", b"")).unwrap();
    answers(&mut c);
    c.receive(&raw(MsgType::CmdWrite, "/a", &[b'x'; 100]))
        .unwrap();
    c.receive(&raw(MsgType::CmdWrite, "/b", &[b'x'; 100]))
        .unwrap();
    assert_eq!(
        answers(&mut c),
        [
            (MsgType::RespOk, String::from("/a")),
            (MsgType::RespError, String::from("/b"))
        ]
    );
    assert!(c.is_synced());
}

#[test]
fn commit_edge_cases() {
    let (mut d, mut c) = synced_pair();
    // A non-empty value on a commit key is not a commit.
    d.write(&format!("/qubes-firewall/{C1}"), b"x").unwrap();
    // A commit key that is not an address is ignored.
    d.write("/qubes-firewall/not-an-ip", b"").unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert!(events(&mut c).is_empty());
    // Committing an empty subtree gives an empty snapshot (the firewall
    // then has no policy: fail closed).
    d.set_client_entries(ip("10.137.0.77"), &[]).unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(
        events(&mut c),
        [Event::RulesCommitted {
            client: ip("10.137.0.77")
        }]
    );
    assert!(c.rules(ip("10.137.0.77")).unwrap().is_empty());
    // Re-committing identical rules live is still a commit (dom0 asked).
    let g = c.rules(ip(C2)).unwrap().generation();
    d.write(&format!("/qubes-firewall/{C2}"), b"").unwrap();
    exchange(&mut d, &mut c).unwrap();
    assert_eq!(events(&mut c), [Event::RulesCommitted { client: ip(C2) }]);
    assert!(c.rules(ip(C2)).unwrap().generation() > g);
}

// ----- the daemon model's own checks -----

fn synced_daemon() -> Daemon {
    let mut d = populated_daemon();
    d.receive(&raw(MsgType::CmdMultiread, "", b"")).unwrap();
    let n = d.output().len();
    d.consume_output(n);
    d
}

fn daemon_answers(d: &mut Daemon) -> Vec<(MsgType, String)> {
    let out = d.output().to_vec();
    d.consume_output(out.len());
    frames(&out)
        .iter()
        .map(|f| {
            let mut h = [0u8; HDR_SIZE];
            h.copy_from_slice(&f[..HDR_SIZE]);
            let h = crate::wire::Header::parse(&h).unwrap();
            (h.ty(), String::from(h.path()))
        })
        .collect()
}

#[test]
fn daemon_refuses_a_second_multiread() {
    let mut d = synced_daemon();
    let r = d.receive(&raw(MsgType::CmdMultiread, "", b""));
    assert!(matches!(r, Err(QdbError::Unexpected { .. })));
    assert_eq!(
        daemon_answers(&mut d),
        [(MsgType::RespError, String::new())]
    );
    assert!(d.broken().is_some());
}

#[test]
fn daemon_multiread_with_data_counts_but_sends_no_dump() {
    let mut d = populated_daemon();
    d.receive(&raw(MsgType::CmdMultiread, "", b"x")).unwrap();
    assert_eq!(
        daemon_answers(&mut d),
        [(MsgType::RespError, String::new())]
    );
    assert!(d.is_synced());
}

#[test]
fn daemon_prefix_multiread_is_in_key_order() {
    let mut d = populated_daemon();
    d.receive(&raw(
        MsgType::CmdMultiread,
        "/qubes-firewall/10.137.0.9/",
        b"",
    ))
    .unwrap();
    let paths: Vec<String> = daemon_answers(&mut d).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        paths,
        [
            "/qubes-firewall/10.137.0.9/0000",
            "/qubes-firewall/10.137.0.9/0001",
            "/qubes-firewall/10.137.0.9/0002",
            "/qubes-firewall/10.137.0.9/policy",
            ""
        ]
    );
}

#[test]
fn daemon_handles_vm_commands_like_dom0() {
    let mut d = synced_daemon();
    d.receive(&raw(MsgType::CmdWrite, "/x", b"a\0")).unwrap();
    assert_eq!(
        daemon_answers(&mut d),
        [(MsgType::RespError, String::from("/x"))]
    );
    d.receive(&raw(MsgType::CmdRm, "/name", b"x")).unwrap();
    assert_eq!(
        daemon_answers(&mut d),
        [(MsgType::RespError, String::from("/name"))]
    );
    d.receive(&raw(MsgType::CmdRm, "/name", b"")).unwrap();
    assert_eq!(
        daemon_answers(&mut d),
        [(MsgType::RespOk, String::from("/name"))]
    );
    assert_eq!(d.stats().refused, 2);
    let r = d.receive(&raw(MsgType::CmdRm, "/name", b""));
    assert_eq!(
        r,
        Err(QdbError::NoEntry {
            path: String::from("/name")
        })
    );
    let out = d.output().to_vec();
    assert_eq!(out[0], u8::from(MsgType::RespErrorNoent));

    let mut d = synced_daemon();
    let r = d.receive(&raw(MsgType::CmdWrite, "/x/", b"1"));
    assert!(matches!(r, Err(QdbError::BadKey { .. })));
    assert_eq!(
        daemon_answers(&mut d),
        [(MsgType::RespError, String::from("/x/"))]
    );

    let mut d = synced_daemon();
    assert!(d.receive(&raw(MsgType::RespMultiread, "/a", b"")).is_err());
    let mut d = synced_daemon();
    assert!(d.receive(&raw(MsgType::RespError, "/a", b"x")).is_err());
    let mut d = synced_daemon();
    assert!(d.receive(&raw_ty(5, "/a")).is_err());
}

#[test]
fn daemon_toolstack_validates_like_qubesdb_write() {
    let mut d = Daemon::new();
    assert!(matches!(d.write("a", b""), Err(QdbError::BadKey { .. })));
    assert!(matches!(d.write("/a/", b""), Err(QdbError::BadKey { .. })));
    assert!(d.write("/a", b"\0").is_err());
    assert!(matches!(d.rm(""), Err(QdbError::BadKey { .. })));
    assert_eq!(d.rm("/nothing"), Ok(false));
    assert!(d.output().is_empty(), "nothing pushed before the MULTIREAD");
}

#[test]
fn injected_garbage_reaches_the_client_as_an_error() {
    let (mut d, mut c) = synced_pair();
    d.inject_message(1, b"/qubes-ip", b"1.2.3.4\0");
    d.inject_message(77, b"/x", b"");
    let r = exchange(&mut d, &mut c);
    assert_eq!(r, Err(QdbError::Wire(WireError::UnknownType(77))));
    // The first was refused (and the refusal reached dom0's counters only
    // if delivered; here the exchange stopped at the fatal one).
    assert_eq!(c.stats().rejected, 1);
}

#[test]
fn stream_end_pair_helper_is_clonable() {
    let (a, _b): (MemStream, MemStream) = pipe(8);
    let a2 = a.clone();
    assert_eq!(a2.readable(), 0);
}
