//! Fuzz the DNS response reader (`firewall::engine::dns`) and the
//! `dsthost` resolver (`firewall::engine::resolver`) with what a hostile
//! sys-net could send. Nothing may panic, and:
//! - an accepted positive answer has 1 to `MAX_ADDRS` distinct addresses,
//!   all of the type asked;
//! - an error that says "not our answer" is given only when the header or
//!   question really differs from the query (checked for the structured
//!   inputs, whose header and question are the query's own);
//! - the resolver only ever hands out updates for the name it was asked,
//!   with sorted, distinct, non-empty addresses and a TTL within its
//!   clamp.
//!
//! Input layout (missing bytes read as 0): byte 0 flags (bit 0: ask AAAA
//! rather than A; bits 1-2: which name; bit 3: structured, i.e. the bytes
//! follow the query's own header and question; bit 4: patch the real id
//! into the raw bytes); bytes 1-2 the id for the raw reader call, bytes
//! 3-4 the flags word and bytes 5-8 ANCOUNT and NSCOUNT for structured
//! messages, byte 9 the resolver's seed; the rest is the message body,
//! also split on 0xff into successive messages for the resolver.
#![no_main]

use std::net::IpAddr;

use firewall::engine::dns::{
    build_query, parse_response, Name, QType, Response, ResponseError, MAX_ADDRS, MAX_QUERY_LEN,
};
use firewall::engine::resolver::{Resolver, Update, MAX_TTL, MIN_TTL};
use libfuzzer_sys::fuzz_target;
use rules::HostName;

const NAMES: [&str; 4] = ["example.com", "a", "www.qubes-os.org", "x-y_z.example."];
const SERVER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 139, 1, 1));

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

fn check(result: &Result<Response, ResponseError>, qtype: QType) {
    if let Ok(Response::Addresses(a)) = result {
        let addrs = a.addrs();
        assert!(!addrs.is_empty() && addrs.len() <= MAX_ADDRS);
        assert!(addrs
            .iter()
            .all(|ip| ip.is_ipv6() == (qtype == QType::Aaaa)));
        for (i, x) in addrs.iter().enumerate() {
            assert!(!addrs[..i].contains(x), "duplicate {x}");
        }
    }
}

/// The query's header and question with the fuzzer's flags and counts,
/// then `body`.
fn structured(query: &[u8], data: &[u8], body: &[u8]) -> Vec<u8> {
    let mut msg = query.to_vec();
    msg[2] = byte(data, 3) | 0x80;
    msg[3] = byte(data, 4);
    msg[6..10].copy_from_slice(&[byte(data, 5), byte(data, 6), byte(data, 7), byte(data, 8)]);
    msg.extend_from_slice(body);
    msg
}

fn reader(data: &[u8], name: &Name, qtype: QType, body: &[u8]) {
    let id = u16::from_be_bytes([byte(data, 1), byte(data, 2)]);
    check(&parse_response(body, id, name, qtype), qtype);

    let mut query = [0u8; MAX_QUERY_LEN];
    let len = build_query(&mut query, id, name, qtype).expect("buffer is big enough");
    let msg = structured(&query[..len], data, body);
    let result = parse_response(&msg, id, name, qtype);
    check(&result, qtype);
    if let Err(e) = result {
        // Same id, QR set, one question equal to ours: only a nonzero
        // opcode can make it unmatched.
        if e.is_unmatched() {
            assert!(matches!(e, ResponseError::Opcode(op) if op != 0), "{e:?}");
        }
    }
}

fn resolver(data: &[u8], host: &HostName, body: &[u8]) {
    let mut r = Resolver::new(u64::from(byte(data, 9)));
    r.set_servers(&[SERVER]);
    assert_eq!(r.want([host]), 0);
    let mut buf = [0u8; MAX_QUERY_LEN];
    let mut sent = Vec::new();
    while let Some(q) = r.poll(0, &mut buf) {
        sent.push((q, buf[..q.len].to_vec()));
    }
    assert_eq!(sent.len(), 2);
    let flags = byte(data, 0);
    let mut now = 0;
    for (i, part) in body.split(|&b| b == 0xff).enumerate() {
        let (q, query) = &sent[i % sent.len()];
        let msg = if flags & 0x08 != 0 {
            structured(query, data, part)
        } else {
            let mut m = part.to_vec();
            if flags & 0x10 != 0 && m.len() >= 2 {
                m[..2].copy_from_slice(&query[..2]);
            }
            m
        };
        now += 1_000_000;
        let update = r.handle_response(q.server, 53, q.src_port, &msg, now);
        let mut updates: Vec<Update> = update.into_iter().collect();
        // Re-send what is due (retries after bad answers), so later parts
        // may answer them.
        while let Some(q) = r.poll(now, &mut buf) {
            sent.push((q, buf[..q.len].to_vec()));
            assert!(sent.len() < 10_000);
        }
        updates.extend(std::iter::from_fn(|| r.take_update()));
        for u in updates {
            match u {
                Update::Resolved { name, addrs, ttl } => {
                    assert_eq!(&name, host);
                    assert!(!addrs.is_empty());
                    assert!(addrs.windows(2).all(|w| w[0] < w[1]));
                    assert!((MIN_TTL..=MAX_TTL).contains(&ttl));
                }
                Update::Failed { name } => assert_eq!(&name, host),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let flags = byte(data, 0);
    let qtype = if flags & 1 == 0 {
        QType::A
    } else {
        QType::Aaaa
    };
    let text = NAMES[usize::from(flags >> 1) & 3];
    let name = Name::parse(text).expect("valid name");
    let host = HostName::parse(text).expect("valid host");
    let body = data.get(10..).unwrap_or(&[]);
    reader(data, &name, qtype, body);
    resolver(data, &host, body);
});
