//! Tests for the checksum module, and packet builders the ICMP tests share.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use xen::frame::offload::{
    checksum_add, fold, ipv4_header_checksum, parse_bytes, pseudo_header_sum, Headers, L3, L4,
};
use xen::frame::Checksum;

use super::*;

/// The transport of a test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    /// UDP over IPv4 without a checksum (field 0).
    UdpNoCsum,
    /// ICMP/ICMPv6 echo request (identifier `sport`, sequence `dport`).
    Echo,
}

/// A test packet.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub v6: bool,
    pub proto: Proto,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
    /// IPv4 option bytes (a multiple of 4); ignored for IPv6.
    pub v4_opts: Vec<u8>,
    /// IPv6: put an 8-byte hop-by-hop header first.
    pub hbh: bool,
    pub ttl: u8,
}

impl Spec {
    pub fn simple(v6: bool, proto: Proto) -> Spec {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        if v6 {
            src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
            dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        } else {
            src[..4].copy_from_slice(&[10, 137, 0, 5]);
            dst[..4].copy_from_slice(&[93, 184, 216, 34]);
        }
        Spec {
            v6,
            proto,
            src,
            dst,
            sport: 40000,
            dport: 443,
            payload: b"hello, world".to_vec(),
            v4_opts: Vec::new(),
            hbh: false,
            ttl: 64,
        }
    }
    pub fn dst_addr(&self) -> IpAddr {
        addr(self.v6, self.dst)
    }
}

pub(crate) fn addr(v6: bool, b: [u8; 16]) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

pub(crate) const MAC_A: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x01];
pub(crate) const MAC_B: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];

/// An Ethernet frame per `s`, all checksums right.
pub(crate) fn build(s: &Spec) -> Vec<u8> {
    let mut l4 = Vec::new();
    let proto = match s.proto {
        Proto::Tcp => {
            l4.extend_from_slice(&s.sport.to_be_bytes());
            l4.extend_from_slice(&s.dport.to_be_bytes());
            l4.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            6
        }
        Proto::Udp | Proto::UdpNoCsum => {
            l4.extend_from_slice(&s.sport.to_be_bytes());
            l4.extend_from_slice(&s.dport.to_be_bytes());
            l4.extend_from_slice(&((8 + s.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            17
        }
        Proto::Echo => {
            l4.extend_from_slice(&[if s.v6 { 128 } else { 8 }, 0, 0, 0]);
            l4.extend_from_slice(&s.sport.to_be_bytes());
            l4.extend_from_slice(&s.dport.to_be_bytes());
            if s.v6 {
                58
            } else {
                1
            }
        }
    };
    l4.extend_from_slice(&s.payload);
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    if s.v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        let ext = if s.hbh { 8 } else { 0 };
        f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
        f.push(if s.hbh { 0 } else { proto });
        f.push(s.ttl);
        f.extend_from_slice(&s.src);
        f.extend_from_slice(&s.dst);
        if s.hbh {
            f.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
        }
    } else {
        assert_eq!(s.v4_opts.len() % 4, 0);
        let hl = 20 + s.v4_opts.len();
        f.extend_from_slice(&[0x08, 0x00, 0x40 | (hl / 4) as u8, 0]);
        f.extend_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, s.ttl, proto, 0, 0]);
        f.extend_from_slice(&s.src[..4]);
        f.extend_from_slice(&s.dst[..4]);
        f.extend_from_slice(&s.v4_opts);
        let c = ipv4_header_checksum(&f[14..14 + hl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&l4);
    let h = parse_bytes(&f).expect("test packet parses");
    if s.proto != Proto::UdpNoCsum {
        let c = full_l4(&f, &h);
        let at = h.l4_offset + csum_field(&h);
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

/// Offset of the L4 checksum within the transport header.
pub(crate) fn csum_field(h: &Headers) -> usize {
    match h.l4 {
        L4::Tcp => 16,
        L4::Udp => 6,
        L4::Other(_) => 2,
    }
}

fn has_pseudo(h: &Headers) -> bool {
    !matches!(h.l4, L4::Other(IPPROTO_ICMP))
}

/// The L4 checksum computed from scratch.
pub(crate) fn full_l4(pkt: &[u8], h: &Headers) -> u16 {
    let mut l4 = pkt[h.l4_offset..h.l4_end].to_vec();
    let at = csum_field(h);
    l4[at..at + 2].fill(0);
    let base = if has_pseudo(h) {
        pseudo_header_sum(pkt, h, h.l4_len()).unwrap()
    } else {
        0
    };
    let c = !fold(checksum_add(base, &l4));
    if h.l4 == L4::Udp && c == 0 {
        0xffff
    } else {
        c
    }
}

/// The L4 checksum field.
pub(crate) fn l4_field(pkt: &[u8], h: &Headers) -> u16 {
    get16(pkt, h.l4_offset + csum_field(h))
}

/// The IPv4 header checksum as stored, and as it should be.
pub(crate) fn ip_csum(pkt: &[u8], h: &Headers) -> (u16, u16) {
    let ihl = usize::from(pkt[h.l3_offset] & 15) * 4;
    let hdr = &pkt[h.l3_offset..h.l3_offset + ihl];
    (get16(hdr, 10), ipv4_header_checksum(hdr))
}

/// Make the TCP/UDP checksum field partial (`csum_blank`).
fn make_partial(pkt: &mut [u8], h: &Headers) {
    let s = fold(pseudo_header_sum(pkt, h, h.l4_len()).unwrap());
    let at = h.l4_offset + csum_field(h);
    pkt[at..at + 2].copy_from_slice(&s.to_be_bytes());
}

/// Complete a partial checksum the way a NIC or Linux does: sum the
/// transport bytes with the field as it is, complement.
fn complete(pkt: &mut [u8], h: &Headers) {
    let c = !fold(checksum_add(0, &pkt[h.l4_offset..h.l4_end]));
    let c = if h.l4 == L4::Udp && c == 0 { 0xffff } else { c };
    let at = h.l4_offset + csum_field(h);
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn rfc1624_example() {
    // RFC 1624 section 4: m = 0x5555 -> 0x3285 with HC = 0xdd2f gives 0.
    assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    // And back again.
    assert_eq!(update16(0x0000, 0x3285, 0x5555), 0xdd2f);
}

#[test]
fn update16_matches_ipv4_header_recompute() {
    let mut f = build(&Spec::simple(false, Proto::Tcp));
    let h = parse_bytes(&f).unwrap();
    let old = get16(&f, 22);
    f[22] = 1;
    let new = get16(&f, 22);
    let c = update16(get16(&f, 24), old, new);
    put16(&mut f, 24, c);
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
}

#[test]
fn update32_and_128_match_recompute() {
    let mut f = build(&Spec::simple(false, Proto::Tcp));
    let h = parse_bytes(&f).unwrap();
    let old: [u8; 4] = f[26..30].try_into().unwrap();
    let new = [192, 168, 1, 1];
    let c = update32(get16(&f, 24), old, new);
    put16(&mut f, 24, c);
    let at = h.l4_offset + 16;
    let c = update32(get16(&f, at), old, new);
    put16(&mut f, at, c);
    f[26..30].copy_from_slice(&new);
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
    assert_eq!(l4_field(&f, &h), full_l4(&f, &h));

    let mut f = build(&Spec::simple(true, Proto::Udp));
    let h = parse_bytes(&f).unwrap();
    let old: [u8; 16] = f[22..38].try_into().unwrap();
    let new = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let at = h.l4_offset + 6;
    let c = update128(get16(&f, at), old, new);
    put16(&mut f, at, c);
    f[22..38].copy_from_slice(&new);
    assert_eq!(l4_field(&f, &h), full_l4(&f, &h));
}

#[test]
fn partial_updates_track_the_pseudo_header() {
    let mut f = build(&Spec::simple(false, Proto::Tcp));
    let h = parse_bytes(&f).unwrap();
    make_partial(&mut f, &h);
    let at = h.l4_offset + 16;
    let old: [u8; 4] = f[30..34].try_into().unwrap();
    let new = [1, 1, 1, 1];
    let c = partial_update32(get16(&f, at), old, new);
    put16(&mut f, at, c);
    f[30..34].copy_from_slice(&new);
    let want = fold(pseudo_header_sum(&f, &h, h.l4_len()).unwrap());
    assert_eq!(get16(&f, at), want);
    // A 16-bit pseudo-header word (the length) likewise.
    let len = h.l4_len() as u16;
    assert_eq!(
        partial_update16(want, len, len + 4),
        fold(pseudo_header_sum(&f, &h, h.l4_len() + 4).unwrap())
    );

    let mut f = build(&Spec::simple(true, Proto::Tcp));
    let h = parse_bytes(&f).unwrap();
    make_partial(&mut f, &h);
    let at = h.l4_offset + 16;
    let old: [u8; 16] = f[22..38].try_into().unwrap();
    let new = [9; 16];
    let c = partial_update128(get16(&f, at), old, new);
    put16(&mut f, at, c);
    f[22..38].copy_from_slice(&new);
    let want = fold(pseudo_header_sum(&f, &h, h.l4_len()).unwrap());
    assert_eq!(get16(&f, at), want);
}

#[test]
fn delta_is_empty() {
    let mut d = Delta::new();
    assert!(d.is_empty());
    d.replace(&[1, 2, 3, 4], &[1, 2, 3, 4]);
    assert!(d.is_empty());
    d.replace16(7, 8);
    assert!(!d.is_empty());
    d.replace16(8, 7);
    assert!(d.is_empty());
}

#[test]
fn udp_without_checksum_stays_without() {
    let s = Spec::simple(false, Proto::UdpNoCsum);
    let mut f = build(&s);
    let h = parse_bytes(&f).unwrap();
    let rw = NatRewrite {
        src: Some("10.138.1.1".parse().unwrap()),
        sport: Some(1),
        ..NatRewrite::default()
    };
    rewrite(&mut f, &h, Checksum::Unverified, &rw).unwrap();
    assert_eq!(l4_field(&f, &h), 0);
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
    assert_eq!(&f[26..30], &[10, 138, 1, 1]);
    assert_eq!(get16(&f, h.l4_offset), 1);
}

#[test]
fn udp_computed_zero_is_sent_as_ffff() {
    for v6 in [false, true] {
        let s = Spec::simple(v6, Proto::Udp);
        let mut f = build(&s);
        let h = parse_bytes(&f).unwrap();
        let c = l4_field(&f, &h);
        // The source port that makes the adjusted sum negative zero.
        let m = s.sport;
        let p = !fold(u64::from(!c) + u64::from(!m));
        let rw = NatRewrite {
            sport: Some(p),
            ..NatRewrite::default()
        };
        rewrite(&mut f, &h, Checksum::Validated, &rw).unwrap();
        assert_eq!(l4_field(&f, &h), 0xffff, "v6={v6}");
        assert_eq!(full_l4(&f, &h), 0xffff);
    }
}

#[test]
fn partial_port_change_leaves_the_field() {
    for v6 in [false, true] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let mut f = build(&Spec::simple(v6, proto));
            let h = parse_bytes(&f).unwrap();
            make_partial(&mut f, &h);
            let before = l4_field(&f, &h);
            let rw = NatRewrite {
                sport: Some(1234),
                dport: Some(5678),
                ..NatRewrite::default()
            };
            rewrite(&mut f, &h, Checksum::Partial, &rw).unwrap();
            assert_eq!(l4_field(&f, &h), before);
            assert_eq!(get16(&f, h.l4_offset), 1234);
            assert_eq!(get16(&f, h.l4_offset + 2), 5678);
            complete(&mut f, &h);
            assert_eq!(l4_field(&f, &h), full_l4(&f, &h));
        }
    }
}

#[test]
fn icmpv4_address_change_leaves_the_icmp_checksum() {
    let mut f = build(&Spec::simple(false, Proto::Echo));
    let h = parse_bytes(&f).unwrap();
    let before = l4_field(&f, &h);
    let rw = NatRewrite {
        src: Some("10.0.0.1".parse().unwrap()),
        dst: Some("10.0.0.2".parse().unwrap()),
        ..NatRewrite::default()
    };
    rewrite(&mut f, &h, Checksum::Unverified, &rw).unwrap();
    assert_eq!(l4_field(&f, &h), before);
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
    // The identifier does change it.
    let rw = NatRewrite {
        dport: Some(77),
        ..NatRewrite::default()
    };
    rewrite(&mut f, &h, Checksum::Unverified, &rw).unwrap();
    assert_eq!(get16(&f, h.l4_offset + 4), 77);
    assert_eq!(l4_field(&f, &h), full_l4(&f, &h));
}

#[test]
fn source_routed_destination_is_not_in_the_pseudo_header() {
    // LSRR with one address left: the pseudo header uses 1.2.3.4.
    let mut s = Spec::simple(false, Proto::Tcp);
    s.v4_opts = vec![131, 7, 4, 1, 2, 3, 4, 1];
    let mut f = build(&s);
    let h = parse_bytes(&f).unwrap();
    assert_ne!(h.pseudo_dst_offset, 30);
    let before = l4_field(&f, &h);
    let rw = NatRewrite {
        dst: Some("8.8.8.8".parse().unwrap()),
        ..NatRewrite::default()
    };
    rewrite(&mut f, &h, Checksum::Validated, &rw).unwrap();
    assert_eq!(l4_field(&f, &h), before);
    assert_eq!(l4_field(&f, &h), full_l4(&f, &h));
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
}

#[test]
fn errors_leave_the_buffer_untouched() {
    let f4 = build(&Spec::simple(false, Proto::Tcp));
    let h4 = parse_bytes(&f4).unwrap();
    let f6 = build(&Spec::simple(true, Proto::Echo));
    let h6 = parse_bytes(&f6).unwrap();
    let v6addr: IpAddr = "fd00::1".parse().unwrap();
    let v4addr: IpAddr = "10.0.0.1".parse().unwrap();
    let cases: [(&[u8], &Headers, NatRewrite, RewriteError); 5] = [
        (
            &f4,
            &h4,
            NatRewrite {
                sport: Some(9),
                src: Some(v6addr),
                ..NatRewrite::default()
            },
            RewriteError::FamilyMismatch,
        ),
        (
            &f6,
            &h6,
            NatRewrite {
                dst: Some(v4addr),
                ..NatRewrite::default()
            },
            RewriteError::FamilyMismatch,
        ),
        (
            &f4[..h4.l4_offset + 10],
            &h4,
            NatRewrite {
                sport: Some(9),
                ..NatRewrite::default()
            },
            RewriteError::Truncated,
        ),
        (
            &f6,
            &h6,
            NatRewrite {
                sport: Some(9),
                dport: Some(10),
                ..NatRewrite::default()
            },
            RewriteError::ConflictingEchoId,
        ),
        (
            &f4[..30],
            &h4,
            NatRewrite::default(),
            RewriteError::Truncated,
        ),
    ];
    for (pkt, h, rw, err) in cases {
        let mut b = pkt.to_vec();
        assert_eq!(rewrite(&mut b, h, Checksum::Validated, &rw), Err(err));
        assert_eq!(b, pkt);
    }
}

#[test]
fn ports_on_portless_packets_are_refused() {
    // ICMPv6 echo reply turned into a destination unreachable (type 1).
    let mut f = build(&Spec::simple(true, Proto::Echo));
    let h = parse_bytes(&f).unwrap();
    f[h.l4_offset] = 1;
    let rw = NatRewrite {
        sport: Some(9),
        ..NatRewrite::default()
    };
    assert_eq!(
        rewrite(&mut f, &h, Checksum::Validated, &rw),
        Err(RewriteError::NoPorts(58))
    );
    // Some other protocol (GRE).
    let mut f = build(&Spec::simple(false, Proto::Echo));
    f[23] = 47;
    let c = ipv4_header_checksum(&f[14..34]);
    put16(&mut f, 24, c);
    let h = parse_bytes(&f).unwrap();
    assert_eq!(h.l4, L4::Other(47));
    assert_eq!(
        rewrite(&mut f, &h, Checksum::Validated, &rw),
        Err(RewriteError::NoPorts(47))
    );
    let rw = NatRewrite {
        src: Some("1.2.3.4".parse().unwrap()),
        ..NatRewrite::default()
    };
    rewrite(&mut f, &h, Checksum::Validated, &rw).unwrap();
    assert_eq!(&f[26..30], &[1, 2, 3, 4]);
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
}

#[test]
fn hop_limit() {
    let mut f = build(&Spec::simple(false, Proto::Udp));
    let h = parse_bytes(&f).unwrap();
    assert_eq!(decrement_hop_limit(&mut f, &h), Ok(true));
    assert_eq!(f[22], 63);
    assert_eq!(ip_csum(&f, &h).0, ip_csum(&f, &h).1);
    f[22] = 1;
    let before = f.clone();
    assert_eq!(decrement_hop_limit(&mut f, &h), Ok(false));
    assert_eq!(f, before);

    let mut s = Spec::simple(true, Proto::Udp);
    s.ttl = 2;
    let mut f = build(&s);
    let h = parse_bytes(&f).unwrap();
    assert_eq!(decrement_hop_limit(&mut f, &h), Ok(true));
    assert_eq!(f[21], 1);
    assert_eq!(decrement_hop_limit(&mut f, &h), Ok(false));
    assert_eq!(
        decrement_hop_limit(&mut f[..20], &h),
        Err(RewriteError::Truncated)
    );
}

pub(crate) fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        0u8..4,
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<(u16, u16)>(),
        vec(any::<u8>(), 0..80),
        0usize..3,
        any::<bool>(),
        2u8..=255,
    )
        .prop_map(
            |(v6, p, src, dst, (sport, dport), payload, nopts, hbh, ttl)| Spec {
                v6,
                proto: match p {
                    0 => Proto::Tcp,
                    1 => Proto::Udp,
                    2 if !v6 => Proto::UdpNoCsum,
                    2 => Proto::Udp,
                    _ => Proto::Echo,
                },
                src,
                dst,
                sport,
                dport,
                payload,
                v4_opts: vec![1; 4 * nopts],
                hbh,
                ttl,
            },
        )
}

type Change = (Option<[u8; 16]>, Option<[u8; 16]>, Option<u16>, Option<u16>);

fn nat(s: &Spec, c: Change) -> NatRewrite {
    let (src, dst, sport, dport) = c;
    NatRewrite {
        src: src.map(|a| addr(s.v6, a)),
        dst: dst.map(|a| addr(s.v6, a)),
        sport,
        // ICMP echo has one identifier.
        dport: if s.proto == Proto::Echo { None } else { dport },
    }
}

proptest! {
    #[test]
    fn rewrite_equals_recompute(s in spec_strategy(), c in any::<Change>(), validated in any::<bool>()) {
        let mut f = build(&s);
        let h = parse_bytes(&f).unwrap();
        let rw = nat(&s, c);
        let state = if validated { Checksum::Validated } else { Checksum::Unverified };
        rewrite(&mut f, &h, state, &rw).unwrap();
        // The fields changed as asked.
        let (src_at, dst_at, alen) = address_offsets(h.l3, h.l3_offset);
        if let Some(a) = rw.src {
            prop_assert_eq!(&f[src_at..src_at + alen], &addr_bytes(a, h.l3).unwrap()[..alen]);
        }
        if let Some(a) = rw.dst {
            prop_assert_eq!(&f[dst_at..dst_at + alen], &addr_bytes(a, h.l3).unwrap()[..alen]);
        }
        if s.proto == Proto::Echo {
            prop_assert_eq!(get16(&f, h.l4_offset + 4), rw.sport.unwrap_or(s.sport));
        } else {
            prop_assert_eq!(get16(&f, h.l4_offset), rw.sport.unwrap_or(s.sport));
            prop_assert_eq!(get16(&f, h.l4_offset + 2), rw.dport.unwrap_or(s.dport));
        }
        if h.l3 == L3::V4 {
            let (got, want) = ip_csum(&f, &h);
            prop_assert_eq!(got, want);
        }
        if s.proto == Proto::UdpNoCsum {
            prop_assert_eq!(l4_field(&f, &h), 0);
        } else {
            prop_assert_eq!(l4_field(&f, &h), full_l4(&f, &h));
        }
    }

    #[test]
    fn partial_rewrite_then_complete_equals_complete_then_rewrite(
        s in spec_strategy(), c in any::<Change>()
    ) {
        prop_assume!(matches!(s.proto, Proto::Tcp | Proto::Udp));
        let mut f = build(&s);
        let h = parse_bytes(&f).unwrap();
        make_partial(&mut f, &h);
        let rw = nat(&s, c);

        let mut a = f.clone();
        rewrite(&mut a, &h, Checksum::Partial, &rw).unwrap();
        // Still a valid partial field: the new pseudo-header sum.
        let want = fold(pseudo_header_sum(&a, &h, h.l4_len()).unwrap());
        prop_assert_eq!(l4_field(&a, &h), want);
        complete(&mut a, &h);

        let mut b = f.clone();
        complete(&mut b, &h);
        rewrite(&mut b, &h, Checksum::Validated, &rw).unwrap();

        prop_assert_eq!(&a, &b);
        prop_assert_eq!(l4_field(&a, &h), full_l4(&a, &h));
    }
}
