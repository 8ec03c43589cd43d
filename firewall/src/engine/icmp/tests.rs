//! Tests for ICMP building, parsing and error translation.

use core::net::IpAddr;

use proptest::prelude::*;
use xen::frame::offload::{checksum_add, fold, parse_bytes, L3};

use super::*;
use crate::engine::csum::tests::{
    build, full_l4, ip_csum, l4_field, spec_strategy, Proto, Spec, MAC_A, MAC_B,
};

const LINK: Link = Link {
    src: MAC_B,
    dst: MAC_A,
};

fn fw(v6: bool) -> IpAddr {
    if v6 {
        "fd00::fe".parse().unwrap()
    } else {
        "10.137.0.254".parse().unwrap()
    }
}

/// Every checksum of an ICMP frame is right.
fn check_icmp(f: &[u8]) {
    let h = parse_bytes(f).unwrap();
    if h.l3 == L3::V4 {
        let (a, b) = ip_csum(f, &h);
        assert_eq!(a, b, "outer IPv4 header checksum");
    }
    assert_eq!(l4_field(f, &h), full_l4(f, &h), "ICMP checksum");
}

#[test]
fn builds_each_error() {
    for v6 in [false, true] {
        let off = build(&Spec::simple(v6, Proto::Tcp));
        for (reason, ty, code, rest) in [
            (
                Reason::AdminProhibited,
                if v6 { 1 } else { 3 },
                if v6 { 1 } else { 13 },
                0,
            ),
            (
                Reason::TooBig { mtu: 1400 },
                if v6 { 2 } else { 3 },
                if v6 { 0 } else { 4 },
                1400,
            ),
            (Reason::TimeExceeded, if v6 { 3 } else { 11 }, 0, 0),
        ] {
            let mut out = [0u8; 1514];
            let n = build_error(&mut out, LINK, fw(v6), reason, &off).unwrap();
            let f = &out[..n];
            check_icmp(f);
            let h = parse_bytes(f).unwrap();
            let m = h.l4_offset;
            assert_eq!((f[m], f[m + 1]), (ty, code));
            assert_eq!(
                u32::from_be_bytes(f[m + 4..m + 8].try_into().unwrap()),
                rest
            );
            // The whole (small) offending packet is quoted.
            assert_eq!(&f[m + 8..], &off[14..]);
            assert_eq!(&f[0..12], &[MAC_A, MAC_B].concat()[..]);
            // TTL/hop limit 64, to the offender's source.
            let info = parse_error_frame(f).unwrap();
            assert_eq!(info.inner.dst, Spec::simple(v6, Proto::Tcp).dst_addr());
            if v6 {
                assert_eq!(f[21], 64);
            } else {
                assert_eq!(f[22], 64);
                assert_eq!(&f[30..34], &off[26..30]);
            }
        }
    }
}

#[test]
fn quote_is_bounded() {
    for v6 in [false, true] {
        let mut s = Spec::simple(v6, Proto::Udp);
        s.payload = vec![7; 1400];
        let off = build(&s);
        let mut out = [0u8; 2000];
        let n = build_error(&mut out, LINK, fw(v6), Reason::AdminProhibited, &off).unwrap();
        assert_eq!(n - 14, if v6 { IPV6_ERROR_MAX } else { IPV4_ERROR_MAX });
        check_icmp(&out[..n]);
        // A smaller buffer quotes less, down to the minimum.
        let mut small = [0u8; 120];
        let n = build_error(&mut small, LINK, fw(v6), Reason::AdminProhibited, &off).unwrap();
        assert_eq!(n, 120);
        check_icmp(&small[..n]);
        let mut tiny = [0u8; 60];
        assert!(matches!(
            build_error(&mut tiny, LINK, fw(v6), Reason::AdminProhibited, &off),
            Err(BuildError::BufferTooSmall(_))
        ));
        // Link padding is not quoted.
        let mut padded = build(&Spec::simple(v6, Proto::Udp));
        let len = padded.len();
        padded.extend_from_slice(&[0xaa; 30]);
        let n = build_error(&mut out, LINK, fw(v6), Reason::AdminProhibited, &padded).unwrap();
        assert_eq!(n, len + if v6 { 48 } else { 28 });
    }
}

#[test]
fn suppressed_and_malformed() {
    let mut out = [0u8; 1514];
    let sup = |f: &[u8], v6: bool| {
        build_error(&mut [0u8; 1514], LINK, fw(v6), Reason::AdminProhibited, f)
    };
    // An ICMP error about an ICMP error.
    let base = build(&Spec::simple(false, Proto::Tcp));
    let n = build_error(&mut out, LINK, fw(false), Reason::AdminProhibited, &base).unwrap();
    assert_eq!(
        sup(&out[..n], false),
        Err(BuildError::Suppressed(Suppress::IcmpError))
    );
    let base6 = build(&Spec::simple(true, Proto::Tcp));
    let n = build_error(&mut out, LINK, fw(true), Reason::AdminProhibited, &base6).unwrap();
    assert_eq!(
        sup(&out[..n], true),
        Err(BuildError::Suppressed(Suppress::IcmpError))
    );
    // But about an echo request, yes.
    assert!(sup(&build(&Spec::simple(false, Proto::Echo)), false).is_ok());
    // Later fragment.
    let mut f = base.clone();
    f[20] = 0x20;
    f[21] = 0x10;
    assert_eq!(
        sup(&f, false),
        Err(BuildError::Suppressed(Suppress::Fragment))
    );
    // Multicast / broadcast destination, bad source, link multicast.
    for (at, val, why) in [
        (30, 224, Suppress::MulticastDestination),
        (26, 0, Suppress::BadSource),
        (26, 127, Suppress::BadSource),
        (0, 1, Suppress::LinkMulticast),
    ] {
        let mut f = base.clone();
        f[at] = val;
        assert_eq!(sup(&f, false), Err(BuildError::Suppressed(why)));
    }
    let mut f = base.clone();
    f[30..34].fill(255);
    assert_eq!(
        sup(&f, false),
        Err(BuildError::Suppressed(Suppress::BroadcastDestination))
    );
    let mut f = base6.clone();
    f[38] = 0xff;
    assert_eq!(
        sup(&f, true),
        Err(BuildError::Suppressed(Suppress::MulticastDestination))
    );
    // Packet too big is allowed to a multicast destination (RFC 4443).
    assert!(build_error(&mut out, LINK, fw(true), Reason::TooBig { mtu: 1280 }, &f).is_ok());
    let mut f = base6.clone();
    f[22..38].fill(0);
    assert_eq!(
        sup(&f, true),
        Err(BuildError::Suppressed(Suppress::BadSource))
    );
    // Malformed.
    assert_eq!(sup(&base[..30], false), Err(BuildError::Truncated));
    assert_eq!(sup(&base[..40], false), Err(BuildError::Truncated));
    let mut f = base.clone();
    f[14] = 0x65;
    assert_eq!(sup(&f, false), Err(BuildError::BadIpHeader));
    let mut f = base.clone();
    f[13] = 0x06;
    assert_eq!(sup(&f, false), Err(BuildError::NotIp(0x0806)));
    assert_eq!(sup(&base, true), Err(BuildError::FamilyMismatch));
    assert_eq!(
        build_error(
            &mut out,
            LINK,
            fw(false),
            Reason::TooBig { mtu: 70000 },
            &base
        ),
        Err(BuildError::BadMtu)
    );
}

#[test]
fn echo_replies() {
    for v6 in [false, true] {
        let s = Spec::simple(v6, Proto::Echo);
        let req = build(&s);
        let mut out = [0u8; 1514];
        let n = echo_reply(&mut out, LINK, &req).unwrap();
        assert_eq!(n, req.len());
        let f = out[..n].to_vec();
        let f = &f[..];
        check_icmp(f);
        let h = parse_bytes(f).unwrap();
        assert_eq!(f[h.l4_offset], if v6 { 129 } else { 0 });
        assert_eq!(&f[h.l4_offset + 4..], &req[h.l4_offset + 4..]);
        let mut bad = req.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            echo_reply(&mut out, LINK, &bad),
            Err(BuildError::BadChecksum)
        );
        assert_eq!(
            echo_reply(&mut out, LINK, f),
            Err(BuildError::NotEchoRequest)
        );
        assert_eq!(
            echo_reply(&mut out, LINK, &req[..req.len() - 1]),
            Err(BuildError::Truncated)
        );
        assert!(matches!(
            echo_reply(&mut out[..40], LINK, &req),
            Err(BuildError::BufferTooSmall(_))
        ));
    }
}

#[test]
fn parse_errors() {
    let off = build(&Spec::simple(false, Proto::Udp));
    let mut out = [0u8; 1514];
    let n = build_error(&mut out, LINK, fw(false), Reason::AdminProhibited, &off).unwrap();
    let f = out[..n].to_vec();
    let info = parse_error_frame(&f).unwrap();
    assert_eq!(
        info.inner.transport,
        InnerTransport::Ports {
            sport: 40000,
            dport: 443
        }
    );
    assert_eq!(info.inner.proto, 17);
    assert_eq!(info.inner_l3_offset, 42);
    assert_eq!(info.inner_l4_offset, 62);
    // A prefix suffices for parse_error with the whole frame's headers.
    assert_eq!(parse_error(&f[..70], &info.outer), Ok(info));
    assert_eq!(
        parse_error(&f[..69], &info.outer),
        Err(ParseError::Truncated)
    );
    assert_eq!(
        parse_error(&f[..50], &info.outer),
        Err(ParseError::Truncated)
    );
    assert!(matches!(
        parse_error_frame(&off),
        Err(ParseError::NotIcmp(17))
    ));
    assert!(matches!(
        parse_error_frame(&build(&Spec::simple(false, Proto::Echo))),
        Err(ParseError::NotError(8))
    ));
    assert!(matches!(
        parse_error_frame(&f[..20]),
        Err(ParseError::Outer(_))
    ));
    let mut g = f.clone();
    g[42] = 0x65;
    assert_eq!(parse_error_frame(&g), Err(ParseError::InnerVersion(6)));
    let mut g = f.clone();
    g[42] = 0x44;
    assert_eq!(parse_error_frame(&g), Err(ParseError::InnerBadHeader));
    let mut g = f.clone();
    g[49] = 1;
    assert_eq!(parse_error_frame(&g), Err(ParseError::InnerFragment));
    // Echo inside.
    let off = build(&Spec::simple(true, Proto::Echo));
    let n = build_error(&mut out, LINK, fw(true), Reason::TimeExceeded, &off).unwrap();
    let info = parse_error_frame(&out[..n]).unwrap();
    assert_eq!(info.inner.transport, InnerTransport::Echo { id: 40000 });
}

proptest! {
    #[test]
    fn rewrite_error_keeps_every_checksum(
        s in spec_strategy(), nsrc in any::<[u8; 16]>(), ndst in any::<[u8; 16]>(),
        port in any::<u16>(), short in any::<bool>()
    ) {
        let mut s = s;
        // A quotable, answerable packet.
        s.src[0] = 10;
        s.dst[0] = 11;
        let off = build(&s);
        let mut out = [0u8; 1514];
        let room = if short { 14 + 40 + 8 + 48 + 8 } else { 1514 };
        let n = build_error(&mut out[..room], LINK, fw(s.v6), Reason::AdminProhibited, &off).unwrap();
        let mut f = out[..n].to_vec();
        let info = parse_error_frame(&f).unwrap();
        let mut nsrc = nsrc;
        nsrc[0] = 10;
        let outer = NatRewrite { dst: Some(crate::engine::csum::tests::addr(s.v6, nsrc)), ..NatRewrite::default() };
        let inner = NatRewrite {
            src: Some(crate::engine::csum::tests::addr(s.v6, nsrc)),
            dst: Some(crate::engine::csum::tests::addr(s.v6, ndst)),
            sport: Some(port),
            ..NatRewrite::default()
        };
        rewrite_error(&mut f, &info, &outer, &inner).unwrap();
        check_icmp(&f);
        let info2 = parse_error_frame(&f).unwrap();
        prop_assert_eq!(info2.inner.src, inner.src.unwrap());
        prop_assert_eq!(info2.inner.dst, inner.dst.unwrap());
        let q = info.inner_l3_offset;
        if !s.v6 {
            let ihl = usize::from(f[q] & 15) * 4;
            prop_assert_eq!(fold(checksum_add(0, &f[q..q + ihl])), 0xffff);
        }
        // With the whole packet quoted, the inner transport checksum too.
        if n - q == off.len() - 14 {
            let inner_pkt = [&off[..14], &f[q..]].concat();
            let h = parse_bytes(&inner_pkt).unwrap();
            if s.proto == Proto::UdpNoCsum {
                prop_assert_eq!(l4_field(&inner_pkt, &h), 0);
            } else {
                prop_assert_eq!(l4_field(&inner_pkt, &h), full_l4(&inner_pkt, &h));
            }
        }
    }
}
