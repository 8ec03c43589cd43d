//! IPv6 neighbour discovery (RFC 4861), the part a point-to-point router
//! needs: answer a neighbour solicitation for an address we stand for with
//! a solicited neighbour advertisement carrying our MAC.
//!
//! Toward a client the firewall stands for every address but the client's
//! own (as ARP does for IPv4); toward the uplink only for its own address.
//! The uplink gateway's MAC is the one ARP learned: sys-net's vif has one
//! MAC for both families.

use core::net::{IpAddr, Ipv6Addr};

use xen::frame::offload::Headers;

use super::build;

const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;
const NA_LEN: usize = 14 + 40 + 32;

/// Whether `a` is an IPv6 link-local address (fe80::/10).
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Answer a neighbour solicitation in `frame` (Ethernet + IPv6 + ICMPv6,
/// parsed as `h`) when `stands_for(target)`. Returns the advertisement
/// frame. Anything else (other ND messages, DAD probes from `::`, hop
/// limit not 255, truncated) gets `None`.
pub fn respond(
    frame: &[u8],
    h: &Headers,
    our_mac: [u8; 6],
    stands_for: impl Fn(Ipv6Addr) -> bool,
    src: IpAddr,
) -> Option<([u8; NA_LEN], usize)> {
    let IpAddr::V6(src) = src else { return None };
    let l3 = h.l3_offset;
    let l4 = h.l4_offset;
    let icmp = frame.get(l4..h.l4_end.min(frame.len()))?;
    if icmp.len() < 24 || icmp[0] != ICMPV6_NS || icmp[1] != 0 {
        return None;
    }
    if *frame.get(l3 + 7)? != 255 || src.is_unspecified() {
        return None;
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&icmp[8..24]);
    let target = Ipv6Addr::from(t);
    if target.is_multicast() || !stands_for(target) {
        return None;
    }
    let mut out = [0u8; NA_LEN];
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&our_mac);
    out[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut out[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&src.octets());
    let na = &mut out[54..86];
    na[0] = ICMPV6_NA;
    na[4] = 0x60; // solicited + override
    na[8..24].copy_from_slice(&target.octets());
    na[24] = 2; // target link-layer address option
    na[25] = 1;
    na[26..32].copy_from_slice(&our_mac);
    let sum = build::pseudo_v6(&target.octets(), &src.octets(), 58, 32);
    let ck = build::finish(sum, &out[54..86]);
    out[56..58].copy_from_slice(&ck.to_be_bytes());
    Some((out, NA_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen::frame::offload::parse_bytes;

    fn ns(src: Ipv6Addr, target: Ipv6Addr, hop: u8) -> alloc::vec::Vec<u8> {
        let mut f = alloc::vec![0u8; 14 + 40 + 24];
        f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 1]);
        f[6..12].copy_from_slice(&[0, 0x16, 0x3e, 0x5e, 0x6c, 0]);
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&24u16.to_be_bytes());
        f[20] = 58;
        f[21] = hop;
        f[22..38].copy_from_slice(&src.octets());
        f[38..54].copy_from_slice(&"ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap().octets());
        f[54] = ICMPV6_NS;
        f[62..78].copy_from_slice(&target.octets());
        f
    }

    #[test]
    fn answers_for_other_addresses_only() {
        let me: Ipv6Addr = "fd09:24ef:4179::a89:5".parse().unwrap();
        let gw: Ipv6Addr = "fd09:24ef:4179::a89:1".parse().unwrap();
        let f = ns(me, gw, 255);
        let h = parse_bytes(&f).unwrap();
        let mac = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
        let (na, n) = respond(&f, &h, mac, |t| t != me, IpAddr::V6(me)).unwrap();
        assert_eq!(n, NA_LEN);
        assert_eq!(&na[0..6], &f[6..12]);
        assert_eq!(na[54], ICMPV6_NA);
        assert_eq!(&na[80..86], &mac);
        // Checksum verifies.
        let sum = build::pseudo_v6(&na[22..38], &na[38..54], 58, 32);
        assert_eq!(build::finish(sum, &na[54..86]), 0);
        // Not for the client's own address, not with a forged hop limit,
        // not for DAD probes.
        let own = ns(me, me, 255);
        let h = parse_bytes(&own).unwrap();
        assert!(respond(&own, &h, mac, |t| t != me, IpAddr::V6(me)).is_none());
        let hop = ns(me, gw, 64);
        let h = parse_bytes(&hop).unwrap();
        assert!(respond(&hop, &h, mac, |t| t != me, IpAddr::V6(me)).is_none());
        let dad = ns(Ipv6Addr::UNSPECIFIED, gw, 255);
        let h = parse_bytes(&dad).unwrap();
        assert!(respond(&dad, &h, mac, |_| true, IpAddr::V6(Ipv6Addr::UNSPECIFIED)).is_none());
    }
}
