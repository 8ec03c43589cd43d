//! Recognising ICMP and ICMPv6 error messages in received frames and the
//! flow they complain about, so a probe can tell "denied with an ICMP
//! error" from "silently dropped".
//!
//! Why sniff frames instead of using a smoltcp socket: smoltcp's TCP
//! sockets ignore ICMP errors, and its ICMP sockets match errors only for
//! UDP; reading the quoted header of every error frame the AppVM receives
//! covers TCP, UDP and echo probes the same way. The frame still goes to
//! smoltcp afterwards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the probes use.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// The flow an error quotes, from the quoted packet's point of view (its
/// source is us). For echo requests `src_port` is the identifier and
/// `dst_port` 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// IP protocol (ICMP echo: 1 or 58).
    pub proto: u8,
    /// Quoted source address.
    pub src: IpAddr,
    /// Quoted destination address.
    pub dst: IpAddr,
    /// Quoted source port (echo: identifier).
    pub src_port: u16,
    /// Quoted destination port (echo: 0).
    pub dst_port: u16,
}

/// One ICMP error received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// Who sent it.
    pub from: IpAddr,
    /// ICMPv6 rather than ICMP.
    pub v6: bool,
    /// ICMP type.
    pub kind: u8,
    /// ICMP code.
    pub code: u8,
    /// What it is about.
    pub flow: Flow,
}

impl IcmpError {
    /// Destination unreachable, administratively prohibited (ICMP 3/13,
    /// ICMPv6 1/1): what a firewall's reject rule sends.
    pub fn is_admin_prohibited(&self) -> bool {
        if self.v6 {
            (self.kind, self.code) == (1, 1)
        } else {
            (self.kind, self.code) == (3, 13)
        }
    }

    /// Port unreachable (ICMP 3/3, ICMPv6 1/4).
    pub fn is_port_unreachable(&self) -> bool {
        if self.v6 {
            (self.kind, self.code) == (1, 4)
        } else {
            (self.kind, self.code) == (3, 3)
        }
    }
}

fn ip4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn ip6(b: &[u8]) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    IpAddr::V6(Ipv6Addr::from(o))
}

/// The IP packet of an Ethernet frame (one VLAN tag skipped) and whether
/// it is IPv6.
fn ip_payload(frame: &[u8]) -> Option<(&[u8], bool)> {
    let mut ty = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut at = 14;
    if ty == 0x8100 {
        ty = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        at = 18;
    }
    match ty {
        0x0800 => Some((frame.get(at..)?, false)),
        0x86dd => Some((frame.get(at..)?, true)),
        _ => None,
    }
}

/// The quoted flow of an error's payload (`q` starts at the quoted IP
/// header).
fn quoted(q: &[u8], v6: bool) -> Option<Flow> {
    let (proto, src, dst, l4) = if v6 {
        if q.len() < 40 || q[0] >> 4 != 6 {
            return None;
        }
        (q[6], ip6(&q[8..24]), ip6(&q[24..40]), &q[40..])
    } else {
        let ihl = usize::from(q.first()? & 0xf) * 4;
        if q.len() < 20 || q[0] >> 4 != 4 || ihl < 20 {
            return None;
        }
        (q[9], ip4(&q[12..16]), ip4(&q[16..20]), q.get(ihl..)?)
    };
    let word =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*l4.get(i)?, *l4.get(i + 1)?])) };
    let (src_port, dst_port) = match proto {
        PROTO_TCP | PROTO_UDP => (word(0)?, word(2)?),
        PROTO_ICMP | PROTO_ICMPV6 => (word(4)?, 0),
        _ => (0, 0),
    };
    Some(Flow {
        proto,
        src,
        dst,
        src_port,
        dst_port,
    })
}

/// The ICMP error `frame` carries, if it is one (IPv6: only when ICMPv6
/// directly follows the fixed header).
pub fn parse(frame: &[u8]) -> Option<IcmpError> {
    let (ip, v6) = ip_payload(frame)?;
    if v6 {
        if ip.len() < 48 || ip[0] >> 4 != 6 || ip[6] != PROTO_ICMPV6 {
            return None;
        }
        let icmp = &ip[40..];
        let (kind, code) = (icmp[0], icmp[1]);
        if !(1..=4).contains(&kind) {
            return None;
        }
        Some(IcmpError {
            from: ip6(&ip[8..24]),
            v6,
            kind,
            code,
            flow: quoted(&icmp[8..], true)?,
        })
    } else {
        let ihl = usize::from(ip.first()? & 0xf) * 4;
        if ip.len() < ihl + 8 || ihl < 20 || ip[0] >> 4 != 4 || ip[9] != PROTO_ICMP {
            return None;
        }
        let icmp = &ip[ihl..];
        let (kind, code) = (icmp[0], icmp[1]);
        if !matches!(kind, 3 | 11 | 12) {
            return None;
        }
        Some(IcmpError {
            from: ip4(&ip[12..16]),
            v6,
            kind,
            code,
            flow: quoted(&icmp[8..], false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_prohibited_for_a_tcp_syn() {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 137, 0, 1, 10, 137, 0, 10,
        ];
        ip.extend_from_slice(&[3, 13, 0, 0, 0, 0, 0, 0]);
        let mut q = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 63, 6, 0, 0, 10, 137, 0, 10, 198, 51, 100, 10,
        ];
        q.extend_from_slice(&[0xc0, 0x00, 0, 80, 0, 0, 0, 1]);
        ip.extend_from_slice(&q);
        f.extend_from_slice(&ip);
        let e = parse(&f).unwrap();
        assert!(e.is_admin_prohibited());
        assert_eq!(e.from, "10.137.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(e.flow.proto, PROTO_TCP);
        assert_eq!((e.flow.src_port, e.flow.dst_port), (0xc000, 80));
        assert_eq!(e.flow.dst, "198.51.100.10".parse::<IpAddr>().unwrap());
        // Cut the quote short: not an error we can attribute.
        assert_eq!(parse(&f[..f.len() - 8]), None);
    }
}
