extern crate std;

use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::engine::dns::build_query;
use crate::engine::dns::testutil::{wire, Msg, PTR_QNAME};

const ID: u16 = 0x4242;

fn name(text: &str) -> Name {
    Name::parse(text).unwrap()
}

fn parse(msg: &Msg, qname: &str, qtype: QType) -> Result<Response, ResponseError> {
    parse_response(&msg.buf, ID, &name(qname), qtype)
}

fn addrs(r: Result<Response, ResponseError>) -> (Vec<IpAddr>, u32) {
    match r {
        Ok(Response::Addresses(a)) => (a.addrs().to_vec(), a.ttl()),
        other => panic!("expected addresses, got {other:?}"),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn q(text: &str, qtype: QType) -> Msg {
    Msg::response(ID, &wire(text), qtype)
}

#[test]
fn a_records_with_compression() {
    let m = q("example.com", QType::A)
        .a(PTR_QNAME, 300, [192, 0, 2, 1])
        .a(&wire("example.com"), 200, [192, 0, 2, 2]);
    let (got, ttl) = addrs(parse(&m, "example.com", QType::A));
    assert_eq!(got, [v4(192, 0, 2, 1), v4(192, 0, 2, 2)]);
    assert_eq!(ttl, 200);
}

#[test]
fn aaaa_records() {
    let ip6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let m = q("example.com", QType::Aaaa)
        .a(PTR_QNAME, 300, [192, 0, 2, 1]) // other type: ignored
        .aaaa(PTR_QNAME, 60, ip6);
    let (got, ttl) = addrs(parse(&m, "example.com", QType::Aaaa));
    assert_eq!(got, [IpAddr::V6(Ipv6Addr::from(ip6))]);
    assert_eq!(ttl, 60);
}

#[test]
fn names_compare_case_insensitively() {
    let m = q("ExAmPle.COM", QType::A).a(&wire("EXAMPLE.com"), 5, [1, 2, 3, 4]);
    let (got, _) = addrs(parse(&m, "example.COM.", QType::A));
    assert_eq!(got, [v4(1, 2, 3, 4)]);
}

#[test]
fn round_trip_with_the_builder() {
    let n = name("qubes-os.org");
    let mut buf = [0u8; crate::engine::dns::MAX_QUERY_LEN];
    let len = build_query(&mut buf, 77, &n, QType::A).unwrap();
    let m = Msg::answering(&buf[..len]).a(PTR_QNAME, 30, [10, 0, 0, 1]);
    let r = parse_response(&m.buf, 77, &n, QType::A).unwrap();
    let Response::Addresses(a) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (a.addrs(), a.ttl(), a.overflowed()),
        (&[v4(10, 0, 0, 1)][..], 30, false)
    );
    // The query itself is not an answer.
    assert_eq!(
        parse_response(&buf[..len], 77, &n, QType::A),
        Err(ResponseError::NotResponse)
    );
}

#[test]
fn not_our_answer() {
    use ResponseError::*;
    let good = || q("example.com", QType::A).a(PTR_QNAME, 5, [1, 2, 3, 4]);
    let check = |m: &[u8], want: ResponseError| {
        let got = parse_response(m, ID, &name("example.com"), QType::A);
        assert_eq!(got, Err(want));
        assert!(want.is_unmatched(), "{want:?}");
    };
    for n in 0..12 {
        check(&good().buf[..n], ShortHeader);
    }
    let m = good();
    assert_eq!(
        parse_response(&m.buf, ID ^ 1, &name("example.com"), QType::A),
        Err(IdMismatch)
    );
    check(&good().flags(0x0100).buf, NotResponse);
    check(&good().flags(0x8000 | 4 << 11).buf, Opcode(4));
    let mut two = good().buf;
    two[5] = 2;
    check(&two, QuestionCount(2));
    let mut none = good().buf;
    none[5] = 0;
    check(&none, QuestionCount(0));
    check(&q("example.org", QType::A).buf, QuestionMismatch);
    check(&q("www.example.com", QType::A).buf, QuestionMismatch);
    check(&q("example.com", QType::Aaaa).buf, QuestionMismatch);
    let mut chaos = q("example.com", QType::A).buf;
    let last = chaos.len() - 1;
    chaos[last] = 3; // class CH
    check(&chaos, QuestionMismatch);
    // Question cut short, or with a pointer (nothing before it to point to).
    let full = q("example.com", QType::A).buf;
    check(&full[..full.len() - 1], BadQuestion(NameFault::OutOfBounds));
    check(&full[..16], BadQuestion(NameFault::OutOfBounds));
    let mut ptr = full[..12].to_vec();
    ptr.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
    check(&ptr, BadQuestion(NameFault::ForwardPointer));
}

#[test]
fn server_failures() {
    use ResponseError::*;
    let cases = [
        (1, Rcode::FormErr),
        (2, Rcode::ServFail),
        (4, Rcode::NotImp),
        (5, Rcode::Refused),
        (9, Rcode::Other(9)),
        (15, Rcode::Other(15)),
    ];
    for (code, rcode) in cases {
        let m = q("example.com", QType::A).rcode(code);
        let err = parse(&m, "example.com", QType::A).unwrap_err();
        assert_eq!(err, Server(rcode));
        assert!(!err.is_unmatched());
    }
    let m = q("example.com", QType::A)
        .flags(0x8380)
        .a(PTR_QNAME, 5, [1, 2, 3, 4]);
    assert_eq!(parse(&m, "example.com", QType::A), Err(Truncated));
    assert!(!Truncated.is_unmatched());
}

#[test]
fn nxdomain_and_nodata() {
    let m = q("nope.example", QType::A)
        .rcode(3)
        .soa(&wire("example"), 900, 60);
    assert_eq!(
        parse(&m, "nope.example", QType::A),
        Ok(Response::NxDomain {
            negative_ttl: Some(60)
        })
    );
    let m = q("nope.example", QType::A)
        .rcode(3)
        .soa(&wire("example"), 30, 3600);
    assert_eq!(
        parse(&m, "nope.example", QType::A),
        Ok(Response::NxDomain {
            negative_ttl: Some(30)
        })
    );
    let m = q("nope.example", QType::A).rcode(3);
    assert_eq!(
        parse(&m, "nope.example", QType::A),
        Ok(Response::NxDomain { negative_ttl: None })
    );
    // NXDOMAIN wins over any address in the message.
    let m = q("nope.example", QType::A)
        .rcode(3)
        .a(PTR_QNAME, 5, [1, 2, 3, 4]);
    assert_eq!(
        parse(&m, "nope.example", QType::A),
        Ok(Response::NxDomain { negative_ttl: None })
    );

    // NODATA: no records; records of another type or name or class.
    let nodata = |m: &Msg| parse(m, "v4only.example", QType::Aaaa);
    let m = q("v4only.example", QType::Aaaa);
    assert_eq!(nodata(&m), Ok(Response::NoData { negative_ttl: None }));
    let m = q("v4only.example", QType::Aaaa)
        .a(PTR_QNAME, 5, [1, 2, 3, 4])
        .aaaa(&wire("other.example"), 5, [1; 16])
        .answer_raw(PTR_QNAME, QType::Aaaa.code(), 3, 5, &[2; 16])
        .soa(&wire("example"), 100, 200)
        .soa(&wire("example"), 300, 50);
    assert_eq!(
        nodata(&m),
        Ok(Response::NoData {
            negative_ttl: Some(50)
        })
    );
    // A record of another type in the authority section is skipped.
    let m = q("v4only.example", QType::Aaaa).authority_raw(&wire("example"), 2, 5, &wire("ns"));
    assert_eq!(nodata(&m), Ok(Response::NoData { negative_ttl: None }));
}

#[test]
fn bad_soa() {
    let m = q("x.example", QType::A).rcode(3).authority_raw(
        &wire("example"),
        TYPE_SOA,
        5,
        b"\x00\x00\x01",
    );
    assert_eq!(
        parse(&m, "x.example", QType::A),
        Err(ResponseError::BadRdata)
    );
    let mut rdata = wire("ns");
    rdata.extend_from_slice(&wire("h"));
    rdata.extend_from_slice(&[0; 21]);
    let m = q("x.example", QType::A)
        .rcode(3)
        .authority_raw(&wire("example"), TYPE_SOA, 5, &rdata);
    assert_eq!(
        parse(&m, "x.example", QType::A),
        Err(ResponseError::BadRdata)
    );
}

#[test]
fn cname_chains() {
    // www -> cdn.example.net -> edge.example.net (A), in order.
    let m = q("www.example.com", QType::A)
        .cname(PTR_QNAME, 3600, &wire("cdn.example.net"))
        .cname(&wire("cdn.example.net"), 120, &wire("edge.example.net"))
        .a(&wire("edge.example.net"), 600, [198, 51, 100, 7])
        .a(&wire("edge.example.net"), 600, [198, 51, 100, 8]);
    let (got, ttl) = addrs(parse(&m, "www.example.com", QType::A));
    assert_eq!(got, [v4(198, 51, 100, 7), v4(198, 51, 100, 8)]);
    assert_eq!(ttl, 120, "the chain's links count toward the TTL");

    // Out of order, targets compressed, addresses on an intermediate name
    // and on unrelated names ignored.
    let mut m = q("www.example.com", QType::A);
    let edge_at = m.buf.len();
    m = m.a(&wire("edge.example.net"), 50, [198, 51, 100, 9]);
    let ptr_edge = [0xc0, edge_at as u8];
    m = m
        .a(&wire("cdn.example.net"), 50, [6, 6, 6, 6])
        .a(&wire("evil.example"), 50, [6, 6, 6, 7])
        .cname(&wire("cdn.example.net"), 70, &ptr_edge)
        .cname(PTR_QNAME, 80, &wire("cdn.example.net"));
    let (got, ttl) = addrs(parse(&m, "www.example.com", QType::A));
    assert_eq!(got, [v4(198, 51, 100, 9)]);
    assert_eq!(ttl, 50);

    // A chain without addresses at its end: NODATA.
    let m = q("www.example.com", QType::A)
        .cname(PTR_QNAME, 80, &wire("cdn.example.net"))
        .a(PTR_QNAME, 80, [6, 6, 6, 6]);
    assert_eq!(
        parse(&m, "www.example.com", QType::A),
        Ok(Response::NoData { negative_ttl: None })
    );
    // A CNAME of another class is not followed.
    let m = q("www.example.com", QType::A)
        .answer_raw(PTR_QNAME, TYPE_CNAME, 3, 80, &wire("cdn.example.net"))
        .a(&wire("cdn.example.net"), 50, [6, 6, 6, 6]);
    assert_eq!(
        parse(&m, "www.example.com", QType::A),
        Ok(Response::NoData { negative_ttl: None })
    );
}

fn chain(links: usize) -> Msg {
    let mut m = q("n0.example", QType::A);
    for i in 0..links {
        let owner = wire(&std::format!("n{i}.example"));
        let target = wire(&std::format!("n{}.example", i + 1));
        m = m.cname(&owner, 10, &target);
    }
    let end = wire(&std::format!("n{links}.example"));
    m.a(&end, 10, [10, 0, 0, links as u8])
}

#[test]
fn cname_chain_length_is_bounded() {
    let (got, _) = addrs(parse(&chain(MAX_CNAME_CHAIN), "n0.example", QType::A));
    assert_eq!(got, [v4(10, 0, 0, MAX_CNAME_CHAIN as u8)]);
    assert_eq!(
        parse(&chain(MAX_CNAME_CHAIN + 1), "n0.example", QType::A),
        Err(ResponseError::CnameChainTooLong)
    );
    // Loops: to itself, and between two names.
    let m = q("a.example", QType::A).cname(PTR_QNAME, 5, PTR_QNAME);
    assert_eq!(
        parse(&m, "a.example", QType::A),
        Err(ResponseError::CnameChainTooLong)
    );
    let m = q("a.example", QType::A)
        .cname(PTR_QNAME, 5, &wire("b.example"))
        .cname(&wire("b.example"), 5, PTR_QNAME)
        .a(PTR_QNAME, 5, [1, 1, 1, 1]);
    assert_eq!(
        parse(&m, "a.example", QType::A),
        Err(ResponseError::CnameChainTooLong)
    );
}

#[test]
fn malformed_records() {
    use ResponseError::*;
    let base = || q("example.com", QType::A);
    // An address of the wrong length for our name; fine for another.
    let m = base().answer_raw(PTR_QNAME, 1, CLASS_IN, 5, &[1, 2, 3, 4, 5]);
    assert_eq!(parse(&m, "example.com", QType::A), Err(BadRdata));
    let m = base()
        .answer_raw(&wire("other.example"), 1, CLASS_IN, 5, &[1, 2, 3])
        .a(PTR_QNAME, 5, [1, 2, 3, 4]);
    assert_eq!(
        addrs(parse(&m, "example.com", QType::A)).0,
        [v4(1, 2, 3, 4)]
    );
    // A CNAME whose target does not fill its data.
    let mut target = wire("cdn.example");
    target.push(0);
    let m = base().cname(PTR_QNAME, 5, &target);
    assert_eq!(parse(&m, "example.com", QType::A), Err(BadRdata));
    let m = base().cname(PTR_QNAME, 5, b"\x03cdn");
    assert_eq!(
        parse(&m, "example.com", QType::A),
        Err(BadName(NameFault::OutOfBounds))
    );
    // Counted records that are not there, or cut short.
    let m = base().answer_count(1);
    assert_eq!(
        parse(&m, "example.com", QType::A),
        Err(BadName(NameFault::OutOfBounds))
    );
    let full = base().a(PTR_QNAME, 5, [1, 2, 3, 4]).buf;
    for cut in 1..=13 {
        let got = parse_response(
            &full[..full.len() - cut],
            ID,
            &name("example.com"),
            QType::A,
        );
        assert!(
            matches!(got, Err(RecordOverrun) | Err(BadName(_))),
            "cut {cut}: {got:?}"
        );
    }
    // A forward pointer, a pointer loop, a bad label type in an owner.
    let m = base().a(b"\xc0\xff", 5, [1, 2, 3, 4]);
    assert_eq!(
        parse(&m, "example.com", QType::A),
        Err(BadName(NameFault::ForwardPointer))
    );
    let m = base().a(b"\x80", 5, [1, 2, 3, 4]);
    assert_eq!(
        parse(&m, "example.com", QType::A),
        Err(BadName(NameFault::BadLabelType))
    );
    // A record after a valid answer that runs off the end.
    let mut m = base()
        .a(PTR_QNAME, 5, [1, 2, 3, 4])
        .a(PTR_QNAME, 5, [5, 6, 7, 8]);
    m.buf.truncate(m.buf.len() - 2);
    assert_eq!(parse(&m, "example.com", QType::A), Err(RecordOverrun));
}

#[test]
fn at_most_max_addrs_deduplicated() {
    let mut m = q("pool.example", QType::A);
    m = m
        .a(PTR_QNAME, 100, [10, 0, 0, 0])
        .a(PTR_QNAME, 40, [10, 0, 0, 0]);
    for i in 1..=20u8 {
        m = m.a(PTR_QNAME, 100 + u32::from(i), [10, 0, 0, i]);
    }
    let r = parse(&m, "pool.example", QType::A).unwrap();
    let Response::Addresses(a) = r else {
        panic!("{r:?}")
    };
    assert_eq!(a.addrs().len(), MAX_ADDRS);
    assert!(a.overflowed());
    assert_eq!(a.addrs()[0], v4(10, 0, 0, 0));
    assert_eq!(a.addrs()[MAX_ADDRS - 1], v4(10, 0, 0, MAX_ADDRS as u8 - 1));
    assert_eq!(
        a.ttl(),
        40,
        "a duplicate's TTL still counts; dropped ones do not"
    );
}

#[test]
fn ttl_top_bit_means_zero() {
    let m = q("example.com", QType::A).a(PTR_QNAME, 0x8000_0000, [1, 2, 3, 4]);
    assert_eq!(addrs(parse(&m, "example.com", QType::A)).1, 0);
    let m = q("example.com", QType::A).a(PTR_QNAME, 0x7fff_ffff, [1, 2, 3, 4]);
    assert_eq!(addrs(parse(&m, "example.com", QType::A)).1, 0x7fff_ffff);
}

#[test]
fn additional_section_is_never_read() {
    // ARCOUNT lies and the bytes after the answers are garbage.
    let mut m = q("example.com", QType::A).a(PTR_QNAME, 5, [1, 2, 3, 4]);
    m.buf[11] = 9;
    m.buf.extend_from_slice(&[0xc0; 7]);
    assert_eq!(
        addrs(parse(&m, "example.com", QType::A)).0,
        [v4(1, 2, 3, 4)]
    );
}

fn valid_response() -> Vec<u8> {
    q("www.example.com", QType::A)
        .cname(PTR_QNAME, 3600, &wire("cdn.example.net"))
        .a(&wire("cdn.example.net"), 600, [198, 51, 100, 7])
        .a(&[0xc0, 0x2d], 600, [198, 51, 100, 8])
        .soa(&wire("example.net"), 5, 5)
        .buf
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let n = name("www.example.com");
        let _ = parse_response(&bytes, ID, &n, QType::A);
        // With a header that passes the id and question checks.
        let mut msg = q("www.example.com", QType::A).buf;
        msg[6] = bytes.first().copied().unwrap_or(0);
        msg[7] = bytes.get(1).copied().unwrap_or(1);
        msg[8] = bytes.get(2).copied().unwrap_or(0);
        msg[9] = bytes.get(3).copied().unwrap_or(1);
        msg.extend_from_slice(&bytes);
        if let Ok(Response::Addresses(a)) = parse_response(&msg, ID, &n, QType::A) {
            prop_assert!(!a.addrs().is_empty() && a.addrs().len() <= MAX_ADDRS);
        }
    }

    #[test]
    fn mutations_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut msg = valid_response();
        for (at, b) in edits {
            let i = at.index(msg.len());
            msg[i] = b;
        }
        let len = cut.index(msg.len() + 1);
        let n = name("www.example.com");
        if let Ok(Response::Addresses(a)) = parse_response(&msg[..len], ID, &n, QType::A) {
            prop_assert!(a.addrs().iter().all(|a| a.is_ipv4()));
        }
    }
}

#[test]
fn valid_response_parses() {
    let msg = valid_response();
    let (got, ttl) = addrs(parse_response(&msg, ID, &name("www.example.com"), QType::A));
    assert_eq!(got, [v4(198, 51, 100, 7), v4(198, 51, 100, 8)]);
    assert_eq!(ttl, 600);
}
