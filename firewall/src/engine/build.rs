//! Building the few packets the firewall originates itself on the uplink
//! (its resolver's DNS queries) and the checksum sums they need.
//!
//! Everything writes into a caller's buffer and returns the length: no
//! allocation.

use core::net::IpAddr;

use xen::frame::offload::{checksum_add, fold};

/// Why a packet could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer is too small.
    BufferTooSmall,
    /// Source and destination are of different families.
    FamilyMismatch,
}

/// The IPv4 pseudo-header sum (RFC 768/793).
pub fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, len: u16) -> u64 {
    let s = checksum_add(0, src);
    let s = checksum_add(s, dst);
    checksum_add(s, &[0, proto, (len >> 8) as u8, len as u8])
}

/// The IPv6 pseudo-header sum (RFC 8200 8.1).
pub fn pseudo_v6(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u64 {
    let s = checksum_add(0, src);
    let s = checksum_add(s, dst);
    let l = len.to_be_bytes();
    checksum_add(s, &[l[0], l[1], l[2], l[3], 0, 0, 0, proto])
}

/// The checksum to store for `data` (checksum field zero, or already
/// holding the value: then the result is 0) on top of `sum`.
pub fn finish(sum: u64, data: &[u8]) -> u16 {
    !fold(checksum_add(sum, data))
}

/// An Ethernet + IPv4/IPv6 + UDP frame carrying `payload`, TTL 64, full
/// checksums.
#[allow(clippy::too_many_arguments)]
pub fn build_udp(
    buf: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Result<usize, BuildError> {
    let (iplen, ethertype) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (20, 0x0800u16),
        (IpAddr::V6(_), IpAddr::V6(_)) => (40, 0x86dd),
        _ => return Err(BuildError::FamilyMismatch),
    };
    let udp_len = 8 + payload.len();
    let total = 14 + iplen + udp_len;
    if buf.len() < total || udp_len > usize::from(u16::MAX) - iplen {
        return Err(BuildError::BufferTooSmall);
    }
    let buf = &mut buf[..total];
    buf.fill(0);
    buf[0..6].copy_from_slice(&dst_mac);
    buf[6..12].copy_from_slice(&src_mac);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let u = 14 + iplen;
    let psum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &mut buf[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let ck = finish(0, ip);
            ip[10..12].copy_from_slice(&ck.to_be_bytes());
            pseudo_v4(&s.octets(), &d.octets(), 17, udp_len as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = &mut buf[14..54];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            pseudo_v6(&s.octets(), &d.octets(), 17, udp_len as u32)
        }
        _ => return Err(BuildError::FamilyMismatch),
    };
    buf[u..u + 2].copy_from_slice(&sport.to_be_bytes());
    buf[u + 2..u + 4].copy_from_slice(&dport.to_be_bytes());
    buf[u + 4..u + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    buf[u + 8..].copy_from_slice(payload);
    let mut ck = finish(psum, &buf[u..]);
    if ck == 0 {
        ck = 0xffff;
    }
    buf[u + 6..u + 8].copy_from_slice(&ck.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen::frame::offload::parse_bytes;

    #[test]
    fn udp_v4_and_v6_parse_and_verify() {
        for (s, d) in [("10.137.0.5", "10.139.1.1"), ("fd00:1::5", "fd00:1::1")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let mut buf = [0u8; 200];
            let n = build_udp(&mut buf, [2; 6], [4; 6], s, d, 40000, 53, b"hello").unwrap();
            let h = parse_bytes(&buf[..n]).unwrap();
            assert_eq!(h.payload_len(), 5);
            let l4 = &buf[h.l4_offset..n];
            let ps = match (s, d) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    assert_eq!(finish(0, &buf[14..34]), 0);
                    pseudo_v4(&a.octets(), &b.octets(), 17, l4.len() as u16)
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    pseudo_v6(&a.octets(), &b.octets(), 17, l4.len() as u32)
                }
                _ => unreachable!(),
            };
            assert_eq!(finish(ps, l4), 0);
        }
        let mut small = [0u8; 20];
        assert_eq!(
            build_udp(
                &mut small,
                [0; 6],
                [0; 6],
                "1.2.3.4".parse().unwrap(),
                "1.2.3.5".parse().unwrap(),
                1,
                2,
                b""
            ),
            Err(BuildError::BufferTooSmall)
        );
        assert_eq!(
            build_udp(
                &mut [0u8; 100],
                [0; 6],
                [0; 6],
                "1.2.3.4".parse().unwrap(),
                "::1".parse().unwrap(),
                1,
                2,
                b""
            ),
            Err(BuildError::FamilyMismatch)
        );
    }
}
