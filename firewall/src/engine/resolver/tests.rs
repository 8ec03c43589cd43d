extern crate std;

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::engine::dns::testutil::{Msg, PTR_QNAME};
use crate::engine::dns::MAX_QUERY_LEN;

const S1: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(10, 139, 1, 1));
const S2: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(10, 139, 1, 2));
const S3: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 168, 7, 1));

fn s(secs: u64) -> u64 {
    secs * SECOND
}

fn host(name: &str) -> HostName {
    HostName::parse(name).unwrap()
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, d))
}

fn v6(d: u8) -> IpAddr {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    b[15] = d;
    IpAddr::V6(b.into())
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A query the resolver emitted, with its bytes.
#[derive(Clone, Debug)]
struct Sent {
    q: Query,
    msg: Vec<u8>,
}

impl Sent {
    fn qtype(&self) -> QType {
        let n = self.msg.len();
        match u16::from_be_bytes([self.msg[n - 4], self.msg[n - 3]]) {
            1 => QType::A,
            28 => QType::Aaaa,
            t => panic!("qtype {t}"),
        }
    }

    fn qname(&self) -> &[u8] {
        &self.msg[12..self.msg.len() - 4]
    }

    fn id(&self) -> u16 {
        u16::from_be_bytes([self.msg[0], self.msg[1]])
    }

    /// An empty answer to this query.
    fn answer(&self) -> Msg {
        Msg::answering(&self.msg)
    }

    /// A positive answer with these addresses (of the query's type).
    fn with(&self, ttl: u32, addrs: &[IpAddr]) -> Msg {
        let mut m = self.answer();
        for a in addrs {
            m = m.answer_raw(PTR_QNAME, self.qtype().code(), 1, ttl, &octets(*a));
        }
        m
    }
}

fn poll_all(r: &mut Resolver, now: u64) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_QUERY_LEN];
    while let Some(q) = r.poll(now, &mut buf) {
        out.push(Sent {
            q,
            msg: buf[..q.len].to_vec(),
        });
        assert!(out.len() <= 2 * MAX_NAMES, "poll does not stop");
    }
    out
}

fn deliver(r: &mut Resolver, sent: &Sent, m: &Msg, now: u64) -> Option<Update> {
    r.handle_response(sent.q.server, 53, sent.q.src_port, &m.buf, now)
}

fn resolver(names: &[&str]) -> Resolver {
    let mut r = Resolver::new(0x5eed);
    r.set_servers(&[S1, S2]);
    let hosts: Vec<HostName> = names.iter().map(|n| host(n)).collect();
    assert_eq!(r.want(&hosts), 0);
    r
}

/// Both lookups of one name, A first.
fn pair(sent: &[Sent]) -> (Sent, Sent) {
    assert_eq!(sent.len(), 2, "{sent:?}");
    let a = sent.iter().find(|s| s.qtype() == QType::A).unwrap().clone();
    let aaaa = sent
        .iter()
        .find(|s| s.qtype() == QType::Aaaa)
        .unwrap()
        .clone();
    (a, aaaa)
}

fn resolved(name: &str, addrs: &[IpAddr], ttl: u32) -> Option<Update> {
    Some(Update::Resolved {
        name: host(name),
        addrs: addrs.to_vec(),
        ttl,
    })
}

fn failed(name: &str) -> Option<Update> {
    Some(Update::Failed { name: host(name) })
}

#[test]
fn resolves_a_and_aaaa_into_one_update() {
    let mut r = resolver(&["example.com"]);
    assert_eq!(r.status("example.com"), Some(Status::Pending));
    assert_eq!(r.next_deadline(), Some(0));
    let (a, aaaa) = pair(&poll_all(&mut r, s(1)));
    for q in [&a, &aaaa] {
        assert_eq!(q.q.server, S1, "primary first");
        assert!(PORT_RANGE.contains(&q.q.src_port));
        assert!(r.owns_port(q.q.src_port));
        assert_eq!(q.qname(), b"\x07example\x03com\x00");
        assert_eq!(&q.msg[2..4], b"\x01\x00", "RD set");
    }
    assert_ne!(a.q.src_port, aaaa.q.src_port);
    assert_eq!(r.next_deadline(), Some(s(1) + TIMEOUT_NS));

    assert_eq!(
        deliver(&mut r, &a, &a.with(600, &[v4(2), v4(1)]), s(1)),
        None
    );
    assert!(!r.owns_port(a.q.src_port));
    assert_eq!(r.status("example.com"), Some(Status::Pending));
    let up = deliver(&mut r, &aaaa, &aaaa.with(300, &[v6(1)]), s(1));
    assert_eq!(up, resolved("example.com", &[v4(1), v4(2), v6(1)], 300));
    assert_eq!(
        r.status("example.com"),
        Some(Status::Resolved(&[v4(1), v4(2), v6(1)]))
    );
    assert_eq!(r.take_update(), None);
    assert_eq!(r.next_deadline(), Some(s(301)));
    assert_eq!(poll_all(&mut r, s(300)).len(), 0);
    let st = r.stats();
    assert_eq!((st.queries, st.answers), (2, 2));
}

#[test]
fn spoofed_responses_are_ignored_and_counted() {
    let mut r = resolver(&["example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    let good = a.with(600, &[v4(1)]);
    let port = a.q.src_port;

    // Wrong server, wrong source port.
    assert_eq!(r.handle_response(S2, 53, port, &good.buf, 0), None);
    assert_eq!(r.handle_response(S3, 53, port, &good.buf, 0), None);
    assert_eq!(r.handle_response(S1, 5353, port, &good.buf, 0), None);
    assert_eq!(r.stats().wrong_source, 3);
    // Wrong destination port.
    let other = if port == 65535 { 49152 } else { port + 1 };
    let other = if other == aaaa.q.src_port {
        other + 1
    } else {
        other
    };
    assert_eq!(r.handle_response(S1, 53, other, &good.buf, 0), None);
    assert_eq!(r.stats().unknown_port, 1);
    // Wrong id, wrong question (the AAAA query's answer to the A port),
    // another name, a query, garbage.
    let mut wrong_id = good.buf.clone();
    wrong_id[1] ^= 1;
    let aaaa_answer = aaaa.with(600, &[v6(1)]);
    let mut other_name = good.buf.clone();
    other_name[13] = b'x';
    let mut query = good.buf.clone();
    query[2] = 0x01;
    for bad in [
        &wrong_id,
        &aaaa_answer.buf,
        &other_name,
        &query,
        &vec![0u8; 5],
    ] {
        assert_eq!(r.handle_response(S1, 53, port, bad, 0), None);
    }
    assert_eq!(r.stats().mismatched, 5);
    assert_eq!(r.stats().answers, 0);
    // Still waiting: the real answer is accepted.
    assert!(r.owns_port(port));
    assert_eq!(deliver(&mut r, &a, &good, 0), None);
    let up = deliver(&mut r, &aaaa, &aaaa.with(600, &[]), 0);
    assert_eq!(up, resolved("example.com", &[v4(1)], 600));
    // A replay after the answer: the port is closed.
    assert_eq!(deliver(&mut r, &a, &good, 0), None);
    assert_eq!(r.stats().unknown_port, 2);
}

#[test]
fn ids_and_ports_are_unpredictable() {
    let mut seen_ids = Vec::new();
    let mut seen_ports = Vec::new();
    for seed in 0..8u64 {
        let mut r = Resolver::new(seed);
        r.set_servers(&[S1]);
        r.want(&[host("example.com")]);
        for q in poll_all(&mut r, 0) {
            seen_ids.push(q.id());
            seen_ports.push(q.q.src_port);
        }
    }
    seen_ids.sort_unstable();
    seen_ids.dedup();
    seen_ports.sort_unstable();
    seen_ports.dedup();
    assert!(seen_ids.len() >= 14 && seen_ports.len() >= 14);
    let mut r = Resolver::new(0);
    r.add_entropy(1);
    r.set_servers(&[S1]);
    r.want(&[host("example.com")]);
    let ids: Vec<u16> = poll_all(&mut r, 0).iter().map(Sent::id).collect();
    let mut plain = Resolver::new(0);
    plain.set_servers(&[S1]);
    plain.want(&[host("example.com")]);
    let plain_ids: Vec<u16> = poll_all(&mut plain, 0).iter().map(Sent::id).collect();
    assert_ne!(ids, plain_ids);
}

#[test]
fn timeouts_retry_rotating_servers_then_fail() {
    let mut r = resolver(&["slow.example"]);
    let mut t = 0;
    for attempt in 0..MAX_ATTEMPTS {
        let sent = poll_all(&mut r, t);
        assert_eq!(sent.len(), 2, "attempt {attempt}");
        let want = if attempt % 2 == 0 { S1 } else { S2 };
        assert!(sent.iter().all(|q| q.q.server == want));
        assert_eq!(r.next_deadline(), Some(t + TIMEOUT_NS));
        assert_eq!(poll_all(&mut r, t + TIMEOUT_NS - 1).len(), 0);
        assert_eq!(r.take_update(), None);
        t += TIMEOUT_NS;
    }
    assert_eq!(poll_all(&mut r, t).len(), 0);
    assert_eq!(r.take_update(), failed("slow.example"));
    assert_eq!(r.take_update(), None);
    assert_eq!(r.status("slow.example"), Some(Status::Failed));
    assert_eq!(r.stats().timeouts, 2 * u64::from(MAX_ATTEMPTS));
    // Asked again after RETRY_AFTER_FAILURE; a late answer to an old
    // query is not accepted.
    let retry = t + s(RETRY_AFTER_FAILURE.into());
    assert_eq!(r.next_deadline(), Some(retry));
    let (a, aaaa) = pair(&poll_all(&mut r, retry));
    assert_eq!(deliver(&mut r, &a, &a.with(100, &[v4(9)]), retry), None);
    let up = deliver(&mut r, &aaaa, &aaaa.answer(), retry);
    assert_eq!(up, resolved("slow.example", &[v4(9)], 100));
}

#[test]
fn late_answer_before_the_timeout_is_processed_is_taken() {
    let mut r = resolver(&["example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    // The engine was slow: the deadline passed but poll did not run.
    let late = TIMEOUT_NS + 5;
    assert_eq!(deliver(&mut r, &a, &a.with(60, &[v4(1)]), late), None);
    let up = deliver(&mut r, &aaaa, &aaaa.answer(), late);
    assert_eq!(up, resolved("example.com", &[v4(1)], 60));
}

#[test]
fn server_failures_retry_at_once_on_the_next_server() {
    let mut r = resolver(&["example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    assert_eq!(deliver(&mut r, &a, &a.answer().rcode(2), s(1)), None);
    assert_eq!(r.stats().bad_answers, 1);
    assert_eq!(r.next_deadline(), Some(s(1)));
    let retry = poll_all(&mut r, s(1));
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].qtype(), retry[0].q.server), (QType::A, S2));
    assert_ne!(retry[0].id(), a.id());
    // REFUSED, truncated, malformed: each one attempt.
    assert_eq!(
        deliver(&mut r, &retry[0], &retry[0].answer().rcode(5), s(1)),
        None
    );
    let third = poll_all(&mut r, s(1));
    assert_eq!(third[0].q.server, S1);
    let tc = third[0].answer().flags(0x8380);
    assert_eq!(deliver(&mut r, &third[0], &tc, s(1)), None);
    let fourth = poll_all(&mut r, s(1));
    let bad = fourth[0]
        .answer()
        .answer_raw(PTR_QNAME, 1, 1, 5, &[1, 2, 3]);
    assert_eq!(deliver(&mut r, &fourth[0], &bad, s(1)), None);
    assert_eq!(r.stats().bad_answers, 4);
    // A failed for good; AAAA answers: resolved to the AAAA addresses,
    // refreshed soon because A failed.
    assert_eq!(poll_all(&mut r, s(1)).len(), 0);
    let up = deliver(&mut r, &aaaa, &aaaa.with(3600, &[v6(3)]), s(1));
    assert_eq!(up, resolved("example.com", &[v6(3)], RETRY_AFTER_FAILURE));
}

#[test]
fn nxdomain_and_nodata_fail_the_name() {
    let mut r = resolver(&["gone.example", "v4only.example", "nothing.example"]);
    let sent = poll_all(&mut r, 0);
    assert_eq!(sent.len(), 6);
    let of = |name: &[u8], t: QType| {
        sent.iter()
            .find(|q| q.qname().starts_with(name) && q.qtype() == t)
            .unwrap()
            .clone()
    };
    // NXDOMAIN for A alone settles the name (it does not exist), with
    // the SOA's negative TTL clamped.
    let gone_a = of(b"\x04gone", QType::A);
    let gone_aaaa = of(b"\x04gone", QType::Aaaa);
    let nx = gone_a.answer().rcode(3).soa(b"\x07example\x00", 3600, 10);
    assert_eq!(deliver(&mut r, &gone_a, &nx, 0), None);
    let up = deliver(&mut r, &gone_aaaa, &gone_aaaa.answer().rcode(2), 0);
    assert_eq!(up, None, "AAAA lookup retries");
    let retry = poll_all(&mut r, 0);
    let up = deliver(&mut r, &retry[0], &retry[0].answer().rcode(3), 0);
    assert_eq!(up, failed("gone.example"));
    // NODATA for AAAA, addresses for A.
    let v4a = of(b"\x06v4only", QType::A);
    let v4aaaa = of(b"\x06v4only", QType::Aaaa);
    let soa = v4aaaa.answer().soa(b"\x07example\x00", 100, 100);
    assert_eq!(deliver(&mut r, &v4aaaa, &soa, 0), None);
    let up = deliver(&mut r, &v4a, &v4a.with(7200, &[v4(4)]), 0);
    assert_eq!(up, resolved("v4only.example", &[v4(4)], 100));
    // NODATA for both.
    let na = of(b"\x07nothing", QType::A);
    let naaaa = of(b"\x07nothing", QType::Aaaa);
    assert_eq!(deliver(&mut r, &na, &na.answer(), 0), None);
    let up = deliver(&mut r, &naaaa, &naaaa.answer().soa(b"\x00", 9999, 9999), 0);
    assert_eq!(up, failed("nothing.example"));
    assert_eq!(r.status("nothing.example"), Some(Status::Failed));
    // Refresh times: gone after MIN_TTL (10 s clamped up), nothing after
    // MAX_NEGATIVE_TTL (clamped down), v4only after 100 s.
    assert_eq!(r.next_deadline(), Some(s(MIN_TTL.into())));
    let again = poll_all(&mut r, s(MIN_TTL.into()));
    assert!(again.iter().all(|q| q.qname().starts_with(b"\x04gone")));
    assert_eq!(again.len(), 2);
    r.forget("gone.example");
    assert_eq!(poll_all(&mut r, s(100) - 1).len(), 0);
    assert_eq!(poll_all(&mut r, s(100)).len(), 2);
    r.forget("v4only.example");
    assert_eq!(poll_all(&mut r, s(MAX_NEGATIVE_TTL.into()) - 1).len(), 0);
    assert_eq!(poll_all(&mut r, s(MAX_NEGATIVE_TTL.into())).len(), 2);
}

#[test]
fn ttl_is_clamped() {
    for (ttl, want) in [
        (0, MIN_TTL),
        (29, MIN_TTL),
        (31, 31),
        (10 * MAX_TTL, MAX_TTL),
    ] {
        let mut r = resolver(&["example.com"]);
        let (a, aaaa) = pair(&poll_all(&mut r, 0));
        deliver(&mut r, &a, &a.with(ttl, &[v4(1)]), 0);
        let up = deliver(&mut r, &aaaa, &aaaa.with(ttl, &[v6(1)]), 0);
        assert_eq!(up, resolved("example.com", &[v4(1), v6(1)], want));
        assert_eq!(r.next_deadline(), Some(s(want.into())));
    }
}

#[test]
fn refresh_keeps_addresses_until_answered() {
    let mut r = resolver(&["example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    deliver(&mut r, &a, &a.with(300, &[v4(1)]), 0);
    deliver(&mut r, &aaaa, &aaaa.answer(), 0);
    // TTL 300 (a NODATA without SOA does not shorten it).
    assert_eq!(r.next_deadline(), Some(s(300)));
    assert_eq!(poll_all(&mut r, s(300) - 1).len(), 0);
    let (a, aaaa) = pair(&poll_all(&mut r, s(300)));
    assert_eq!(r.status("example.com"), Some(Status::Resolved(&[v4(1)])));
    // The same A answer, and now an AAAA address: an update.
    assert_eq!(deliver(&mut r, &a, &a.with(300, &[v4(1)]), s(31)), None);
    assert_eq!(
        deliver(&mut r, &aaaa, &aaaa.with(300, &[v6(1)]), s(31)),
        resolved("example.com", &[v4(1), v6(1)], 300)
    );
    // Next refresh at 31 + 300: the same addresses give no update.
    let (a, aaaa) = pair(&poll_all(&mut r, s(331)));
    assert_eq!(deliver(&mut r, &a, &a.with(300, &[v4(1)]), s(331)), None);
    assert_eq!(
        deliver(&mut r, &aaaa, &aaaa.with(300, &[v6(1)]), s(331)),
        None
    );
    assert_eq!(r.take_update(), None);
    // A changed address set: an update.
    let (a, aaaa) = pair(&poll_all(&mut r, s(631)));
    deliver(&mut r, &a, &a.with(300, &[v4(2)]), s(631));
    let up = deliver(&mut r, &aaaa, &aaaa.with(300, &[v6(1)]), s(631));
    assert_eq!(up, resolved("example.com", &[v4(2), v6(1)], 300));
}

#[test]
fn failing_refreshes_keep_stale_addresses_for_a_while() {
    let mut r = resolver(&["example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    deliver(&mut r, &a, &a.with(60, &[v4(1)]), 0);
    deliver(&mut r, &aaaa, &aaaa.with(60, &[v6(1)]), 0);
    let expiry = s(60);
    // From then on the servers never answer.
    let mut t = expiry;
    let mut rounds = 0;
    loop {
        let sent = poll_all(&mut r, t);
        if let Some(up) = r.take_update() {
            assert_eq!(Some(up), failed("example.com"));
            break;
        }
        assert_eq!(
            r.status("example.com"),
            Some(Status::Resolved(&[v4(1), v6(1)])),
            "at {t}"
        );
        if !sent.is_empty() {
            rounds += 1;
        }
        t = r.next_deadline().unwrap();
        assert!(t <= expiry + MAX_STALE_NS, "{t}");
    }
    assert_eq!(t, expiry + MAX_STALE_NS);
    assert_eq!(r.status("example.com"), Some(Status::Failed));
    assert!(rounds > 100, "rounds {rounds}");
    // And once it answers again, the name resolves again.
    loop {
        let sent = poll_all(&mut r, t);
        if !sent.is_empty() {
            let (a, aaaa) = pair(&sent);
            deliver(&mut r, &a, &a.with(60, &[v4(5)]), t);
            let up = deliver(&mut r, &aaaa, &aaaa.answer(), t);
            assert_eq!(up, resolved("example.com", &[v4(5)], 60));
            break;
        }
        t = r.next_deadline().unwrap();
    }
}

#[test]
fn stale_addresses_are_dropped_even_during_a_round() {
    let mut r = resolver(&["example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    deliver(&mut r, &a, &a.with(60, &[v4(1)]), 0);
    deliver(&mut r, &aaaa, &aaaa.with(60, &[v6(1)]), 0);
    // The engine polls next only when the stale window is nearly over.
    let t = s(60) + MAX_STALE_NS - 1;
    let (a, aaaa) = pair(&poll_all(&mut r, t));
    assert_eq!(r.take_update(), None);
    assert_eq!(r.next_deadline(), Some(t + 1));
    assert_eq!(poll_all(&mut r, t + 1).len(), 0);
    assert_eq!(r.take_update(), failed("example.com"));
    assert_eq!(r.status("example.com"), Some(Status::Failed));
    // The round still runs, and its answer restores the name.
    assert_eq!(deliver(&mut r, &a, &a.with(60, &[v4(1)]), t + 2), None);
    let up = deliver(&mut r, &aaaa, &aaaa.answer(), t + 2);
    assert_eq!(up, resolved("example.com", &[v4(1)], 60));
}

#[test]
fn server_changes() {
    let mut r = resolver(&["example.com", "other.example"]);
    let first = poll_all(&mut r, 0);
    assert_eq!(first.len(), 4);
    // Same servers again: nothing changes.
    r.set_servers(&[S1, S2, S1]);
    assert_eq!(r.servers(), &[S1, S2]);
    assert_eq!(poll_all(&mut r, 0).len(), 0);
    // Answer other.example, then switch to another netvm.
    let (oa, oaaaa) = pair(
        &first
            .iter()
            .filter(|q| q.qname().starts_with(b"\x05other"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    deliver(&mut r, &oa, &oa.with(3600, &[v4(7)]), 0);
    let up = deliver(&mut r, &oaaaa, &oaaaa.answer().soa(b"\x00", 3600, 3600), 0);
    assert_eq!(up, resolved("other.example", &[v4(7)], 3600));
    r.set_servers(&[S3]);
    // In-flight queries for example.com are re-sent, and other.example
    // asked again, all to the new server.
    let again = poll_all(&mut r, s(1));
    assert_eq!(again.len(), 4);
    assert!(again.iter().all(|q| q.q.server == S3));
    assert_eq!(r.status("other.example"), Some(Status::Resolved(&[v4(7)])));
    // Answers from the old server to the old queries are not taken.
    let old = first
        .iter()
        .find(|q| q.qname().starts_with(b"\x07example"))
        .unwrap();
    assert_eq!(deliver(&mut r, old, &old.with(60, &[v4(6)]), s(1)), None);
    assert_eq!(r.stats().answers, 2);
    // No servers at all: nothing is sent, nothing to wait for.
    r.set_servers(&[]);
    assert_eq!(poll_all(&mut r, s(2)).len(), 0);
    assert_eq!(
        r.next_deadline(),
        Some(s(3600) + MAX_STALE_NS),
        "only the stale expiry"
    );
    r.forget("other.example");
    assert_eq!(r.next_deadline(), None);
    r.set_servers(&[S2]);
    assert_eq!(r.next_deadline(), Some(0));
    let sent = poll_all(&mut r, s(3));
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|q| q.q.server == S2));
}

#[test]
fn want_and_forget() {
    let mut r = resolver(&[]);
    assert!(r.is_empty());
    let names = [
        host("a.example"),
        host("b.example"),
        host("a.example"),
        host("10.1.2.3"),
    ];
    assert_eq!(r.want(&names), 0);
    assert_eq!(r.len(), 2, "duplicates and IPv4 literals are not resolved");
    assert!(r.is_wanted("a.example") && !r.is_wanted("10.1.2.3"));
    assert_eq!(r.status("10.1.2.3"), None);
    let sent = poll_all(&mut r, 0);
    assert_eq!(sent.len(), 4);
    assert!(r.forget("a.example"));
    assert!(!r.forget("a.example"));
    for q in sent.iter().filter(|q| q.qname().starts_with(b"\x01a")) {
        assert!(!r.owns_port(q.q.src_port));
        assert_eq!(deliver(&mut r, q, &q.with(60, &[v4(1)]), 0), None);
    }
    assert_eq!(r.stats().unknown_port, 2);
    assert_eq!(r.take_update(), None);
    // Wanted again: a fresh start.
    r.want(&[host("a.example")]);
    assert_eq!(r.status("a.example"), Some(Status::Pending));
    assert_eq!(poll_all(&mut r, 0).len(), 2);
}

#[test]
fn names_are_bounded() {
    let hosts: Vec<HostName> = (0..MAX_NAMES + 3)
        .map(|i| host(&std::format!("h{i}.example")))
        .collect();
    let mut r = Resolver::new(1);
    r.set_servers(&[S1]);
    assert_eq!(r.want(&hosts), 3);
    assert_eq!(r.len(), MAX_NAMES);
    assert!(!r.is_wanted(&std::format!("h{MAX_NAMES}.example")));
}

#[test]
fn outstanding_queries_are_bounded() {
    let hosts: Vec<HostName> = (0..40)
        .map(|i| host(&std::format!("h{i}.example")))
        .collect();
    let mut r = Resolver::new(1);
    r.set_servers(&[S1]);
    r.want(&hosts);
    let first = poll_all(&mut r, 0);
    assert_eq!(first.len(), MAX_OUTSTANDING);
    let mut ports: Vec<u16> = first.iter().map(|q| q.q.src_port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), MAX_OUTSTANDING, "ports in flight are distinct");
    // Blocked: the next deadline is the first timeout, not "now".
    assert_eq!(r.next_deadline(), Some(TIMEOUT_NS));
    // Each answer frees a slot.
    let q = &first[0];
    deliver(&mut r, q, &q.with(60, &[]), 0);
    assert_eq!(r.next_deadline(), Some(0));
    let next = poll_all(&mut r, 0);
    assert_eq!(next.len(), 1);
    // Everyone gets answered eventually.
    let mut pending = first[1..].to_vec();
    pending.extend(next);
    let mut updates = 0;
    let mut t = 0;
    while let Some(q) = pending.pop() {
        let a = if q.qtype() == QType::A {
            vec![v4(1)]
        } else {
            vec![]
        };
        if deliver(&mut r, &q, &q.with(60, &a), t).is_some() {
            updates += 1;
        }
        t += 1;
        pending.extend(poll_all(&mut r, t));
    }
    // first[0] was one lookup of a name whose other lookup is answered too.
    assert_eq!(updates, 40);
    assert_eq!(r.stats().queries, 80);
}

#[test]
fn small_buffer_sends_nothing() {
    let mut r = resolver(&["example.com"]);
    let mut buf = [0u8; 20];
    assert_eq!(r.poll(0, &mut buf), None);
    assert_eq!(r.stats().queries, 0);
    assert_eq!(poll_all(&mut r, 0).len(), 2);
}

#[test]
fn cnames_resolve_through_the_chain() {
    let mut r = resolver(&["www.example.com"]);
    let (a, aaaa) = pair(&poll_all(&mut r, 0));
    let m = a
        .answer()
        .cname(PTR_QNAME, 120, b"\x03cdn\x07example\x03net\x00")
        .a(b"\x03cdn\x07example\x03net\x00", 600, [192, 0, 2, 80]);
    assert_eq!(deliver(&mut r, &a, &m, 0), None);
    let up = deliver(&mut r, &aaaa, &aaaa.answer(), 0);
    assert_eq!(up, resolved("www.example.com", &[v4(80)], 120));
}

#[derive(Clone, Debug)]
enum Op {
    Poll(u64),
    Answer(usize, u8, u32, u8),
    Raw(usize, Vec<u8>),
    Servers(u8),
    Want(u8),
    Forget(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..5_000_000_000).prop_map(Op::Poll),
        (any::<usize>(), 0u8..6, any::<u32>(), any::<u8>())
            .prop_map(|(i, k, t, a)| Op::Answer(i, k, t, a)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(i, b)| Op::Raw(i, b)),
        (0u8..8).prop_map(Op::Servers),
        (0u8..6).prop_map(Op::Want),
        (0u8..6).prop_map(Op::Forget),
    ]
}

proptest! {
    /// Any interleaving of polls, answers (good, negative, failures,
    /// garbage), server and name changes keeps the invariants.
    #[test]
    fn random_operations_keep_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut r = Resolver::new(3);
        let mut now = 0u64;
        let mut sent: Vec<Sent> = Vec::new();
        for op in ops {
            match op {
                Op::Poll(dt) => {
                    now += dt;
                    let new = poll_all(&mut r, now);
                    for q in &new {
                        prop_assert!(r.servers().contains(&q.q.server));
                    }
                    sent.extend(new);
                }
                Op::Answer(i, kind, ttl, d) if !sent.is_empty() => {
                    let q = sent[i % sent.len()].clone();
                    let addr = if q.qtype() == QType::A { v4(d) } else { v6(d) };
                    let m = match kind {
                        0 => q.with(ttl, &[addr]),
                        1 => q.answer(),
                        2 => q.answer().rcode(3),
                        3 => q.answer().rcode(2),
                        4 => q.answer().flags(0x8380),
                        _ => q.with(ttl, &[addr, v4(1), v6(1)]),
                    };
                    if let Some(Update::Resolved { addrs, ttl, .. }) = deliver(&mut r, &q, &m, now) {
                        prop_assert!(!addrs.is_empty());
                        prop_assert!(addrs.windows(2).all(|w| w[0] < w[1]));
                        prop_assert!((MIN_TTL..=MAX_TTL).contains(&ttl));
                    }
                }
                Op::Answer(..) => {}
                Op::Raw(i, bytes) if !sent.is_empty() => {
                    let q = &sent[i % sent.len()];
                    let mut m = q.msg.clone();
                    m[2] |= 0x80;
                    m.extend_from_slice(&bytes);
                    let _ = r.handle_response(q.q.server, 53, q.q.src_port, &m, now);
                    let _ = r.handle_response(q.q.server, 53, q.q.src_port, &bytes, now);
                }
                Op::Raw(..) => {}
                Op::Servers(k) => {
                    let all = [S1, S2, S3];
                    let list: Vec<IpAddr> =
                        (0..3).filter(|b| k & (1 << b) != 0).map(|b| all[b]).collect();
                    r.set_servers(&list);
                }
                Op::Want(k) => {
                    r.want(&[host(&std::format!("n{k}.example"))]);
                }
                Op::Forget(k) => {
                    r.forget(&std::format!("n{k}.example"));
                }
            }
            while r.take_update().is_some() {}
            prop_assert!(r.in_flight().count() <= MAX_OUTSTANDING);
            if let Some(t) = r.next_deadline() {
                // Nothing is due before the next deadline.
                if t > now {
                    prop_assert!(poll_all(&mut r, now).is_empty());
                }
            }
        }
    }
}
