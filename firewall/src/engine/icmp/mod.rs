//! ICMP and ICMPv6: the messages the firewall originates, and reading and
//! NAT-translating the error messages it forwards.
//!
//! **Originating.** Linux sys-firewall parity: a `drop` rule answers with
//! "administratively prohibited" (what nftables `reject with
//! icmp(x) admin-prohibited` sends), an oversized DF packet with
//! "fragmentation needed"/"packet too big" (path MTU discovery depends on
//! it), an expiring TTL with "time exceeded", and the firewall's own
//! address answers pings. [`build_error`] and [`echo_reply`] write a
//! complete Ethernet frame into a caller buffer (no allocation) and return
//! its length. Errors quote the offending packet from its IP header: as
//! much as fits in a 576-byte IPv4 datagram (RFC 1812 4.3.2.3; at least the
//! IP header and 8 bytes, RFC 792) or a 1280-byte IPv6 packet (RFC 4443
//! 2.4 (c)). They are never sent about an ICMP error, a non-first
//! fragment, a multicast or broadcast destination (network or link), or a
//! source that names no single host (RFC 1812 4.3.2.7, RFC 4443 2.4 (e)):
//! such requests come back as [`BuildError::Suppressed`], so the caller
//! just drops the packet.
//!
//! **Forwarding.** An error from the uplink about a NATed flow carries the
//! translated packet it is about; [`parse_error`] finds the quoted IP
//! header and transport ports (the flow's tuple, as the firewall sent it)
//! and [`rewrite_error`] translates outer and inner headers back while
//! keeping every checksum right incrementally (so it works on a header
//! prefix of a frame).
//!
//! All parsing is bounds-checked against both the bytes given and the
//! lengths the headers claim; malformed input is a typed error.

use core::net::IpAddr;

use xen::frame::offload::{
    checksum_add, fold, ipv4_header_checksum, parse_bytes, Headers, OffloadError, L3, L4,
};
use xen::frame::Checksum;

use super::csum::{
    addr_bytes, get16, put16, rewrite as rewrite_l4, rewrite_with, Delta, NatRewrite, RewriteError,
    IPPROTO_ICMP, IPPROTO_ICMPV6,
};

#[cfg(test)]
mod tests;

/// Ethernet header length (untagged; the frames built here carry no VLAN
/// tag).
pub const ETH_HLEN: usize = 14;
/// The largest IPv4 datagram an ICMPv4 error is (RFC 1812 4.3.2.3).
pub const IPV4_ERROR_MAX: usize = 576;
/// The largest IPv6 packet an ICMPv6 error is (RFC 4443 2.4 (c)).
pub const IPV6_ERROR_MAX: usize = 1280;
/// TTL / hop limit of originated packets.
pub const HOP_LIMIT: u8 = 64;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ICMP_HLEN: usize = 8;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

/// ICMPv4 types used here.
pub mod v4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, RFC 6633; still translated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Destination unreachable: fragmentation needed and DF set.
    pub const CODE_FRAG_NEEDED: u8 = 4;
    /// Destination unreachable: communication administratively prohibited
    /// (RFC 1812).
    pub const CODE_ADMIN_PROHIBITED: u8 = 13;
}

/// ICMPv6 types used here.
pub mod v6 {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Destination unreachable: communication administratively prohibited.
    pub const CODE_ADMIN_PROHIBITED: u8 = 1;
}

/// The Ethernet addresses of a frame to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Source: the firewall's MAC on that interface.
    pub src: [u8; 6],
    /// Destination: the client's MAC, or the uplink gateway's.
    pub dst: [u8; 6],
}

/// Which error to send; the IP version is the offending packet's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A `drop` rule: ICMP destination unreachable code 13 / ICMPv6
    /// destination unreachable code 1.
    AdminProhibited,
    /// Too big for the next hop: ICMP destination unreachable code 4 with
    /// the next-hop MTU (RFC 1191; must fit 16 bits) / ICMPv6 packet too
    /// big with the MTU.
    TooBig {
        /// The next-hop MTU.
        mtu: u32,
    },
    /// TTL / hop limit reached 0 in transit (code 0).
    TimeExceeded,
}

/// Why an error must not be sent (RFC 1812 4.3.2.7, RFC 4443 2.4 (e)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suppress {
    /// The offending packet is itself an ICMP error (or an ICMPv4 type not
    /// known to be a query).
    IcmpError,
    /// A fragment other than the first.
    Fragment,
    /// Sent to an IP multicast address.
    MulticastDestination,
    /// Sent to the IPv4 limited broadcast address.
    BroadcastDestination,
    /// Sent to an Ethernet multicast or broadcast address.
    LinkMulticast,
    /// The source names no single host (unspecified, loopback, multicast,
    /// broadcast, class E).
    BadSource,
}

/// Why [`build_error`] or [`echo_reply`] wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The rules say no message for this packet.
    Suppressed(Suppress),
    /// The packet (or the bytes given of it) ends before its headers do.
    Truncated,
    /// Not IPv4 or IPv6: the ethertype.
    NotIp(u16),
    /// Malformed IP header (version, IHL, lengths).
    BadIpHeader,
    /// The source address given is not of the packet's IP version.
    FamilyMismatch,
    /// An IPv4 next-hop MTU beyond 16 bits.
    BadMtu,
    /// `out` too small: the bytes needed.
    BufferTooSmall(usize),
    /// [`echo_reply`]: not an echo request.
    NotEchoRequest,
    /// [`echo_reply`]: the request's checksum is wrong.
    BadChecksum,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Suppressed(s) => write!(f, "ICMP suppressed: {s:?}"),
            BuildError::Truncated => write!(f, "packet truncated"),
            BuildError::NotIp(t) => write!(f, "not IP (ethertype {t:#06x})"),
            BuildError::BadIpHeader => write!(f, "malformed IP header"),
            BuildError::FamilyMismatch => write!(f, "address family differs from the packet's"),
            BuildError::BadMtu => write!(f, "MTU does not fit 16 bits"),
            BuildError::BufferTooSmall(n) => write!(f, "output buffer too small ({n} needed)"),
            BuildError::NotEchoRequest => write!(f, "not an echo request"),
            BuildError::BadChecksum => write!(f, "bad ICMP checksum"),
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the packet an error is about

/// What the builders need to know of a received packet.
#[derive(Clone, Copy, Debug)]
struct Packet {
    l3: L3,
    /// Start of the IP header.
    l3_offset: usize,
    /// End of the IP packet within the bytes given (min of the length the
    /// header claims and the bytes there are).
    avail_end: usize,
    /// End of the IP packet as its header claims.
    claimed_end: usize,
    /// IPv4 header length, or 40.
    ip_hlen: usize,
    src: [u8; 16],
    dst: [u8; 16],
    /// The upper-layer protocol and where it starts, if this is the first
    /// (or only) fragment and the extension-header walk got there.
    upper: Option<(u8, usize)>,
    /// A fragment other than the first.
    later_fragment: bool,
    /// Any fragment (MF set, or an offset, or an IPv6 fragment header).
    fragment: bool,
}

fn eth_payload(frame: &[u8]) -> Result<(u16, usize), BuildError> {
    let et = frame.get(12..14).ok_or(BuildError::Truncated)?;
    let et = u16::from_be_bytes([et[0], et[1]]);
    if et == ETHERTYPE_VLAN {
        let et = frame.get(16..18).ok_or(BuildError::Truncated)?;
        return Ok((u16::from_be_bytes([et[0], et[1]]), 18));
    }
    Ok((et, ETH_HLEN))
}

fn read_packet(frame: &[u8]) -> Result<Packet, BuildError> {
    let (et, l3) = eth_payload(frame)?;
    match et {
        ETHERTYPE_IPV4 => read_v4(frame, l3),
        ETHERTYPE_IPV6 => read_v6(frame, l3),
        t => Err(BuildError::NotIp(t)),
    }
}

fn read_v4(frame: &[u8], l3: usize) -> Result<Packet, BuildError> {
    let ip = frame.get(l3..l3 + IPV4_HLEN).ok_or(BuildError::Truncated)?;
    if ip[0] >> 4 != 4 {
        return Err(BuildError::BadIpHeader);
    }
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(get16(ip, 2));
    if ihl < IPV4_HLEN || total < ihl {
        return Err(BuildError::BadIpHeader);
    }
    if frame.len() < l3 + ihl {
        return Err(BuildError::Truncated);
    }
    let frag = get16(ip, 6);
    let offset = frag & 0x1fff;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&ip[12..16]);
    dst[..4].copy_from_slice(&ip[16..20]);
    Ok(Packet {
        l3: L3::V4,
        l3_offset: l3,
        avail_end: frame.len().min(l3 + total),
        claimed_end: l3 + total,
        ip_hlen: ihl,
        src,
        dst,
        upper: (offset == 0).then_some((ip[9], l3 + ihl)),
        later_fragment: offset != 0,
        fragment: frag & 0x3fff != 0,
    })
}

/// Walk IPv6 extension headers from `next` at `off` (bounded by `end`):
/// the upper-layer protocol and offset, `None` if the walk ran off the
/// bytes, and whether a fragment header was seen and with which offset.
fn walk_v6(
    b: &[u8],
    mut next: u8,
    mut off: usize,
    end: usize,
) -> (Option<(u8, usize)>, Option<u16>) {
    let mut frag = None;
    // Each header is at least 8 bytes, so this terminates; bound it anyway.
    for _ in 0..64 {
        let len = match next {
            0 | 43 | 60 => b.get(off + 1).map(|&n| (usize::from(n) + 1) * 8),
            44 => {
                let Some(f) = b.get(off..off + 8).filter(|_| off + 8 <= end) else {
                    return (None, frag);
                };
                let fo = get16(f, 2) >> 3;
                frag = Some(fo);
                if fo != 0 {
                    return (None, frag);
                }
                Some(8)
            }
            51 => b.get(off + 1).map(|&n| (usize::from(n) + 2) * 4),
            _ => return (Some((next, off)), frag),
        };
        let Some(len) = len else {
            return (None, frag);
        };
        if off + len > end || off + len > b.len() {
            return (None, frag);
        }
        next = b[off];
        off += len;
    }
    (None, frag)
}

fn read_v6(frame: &[u8], l3: usize) -> Result<Packet, BuildError> {
    let ip = frame.get(l3..l3 + IPV6_HLEN).ok_or(BuildError::Truncated)?;
    if ip[0] >> 4 != 6 {
        return Err(BuildError::BadIpHeader);
    }
    let claimed_end = l3 + IPV6_HLEN + usize::from(get16(ip, 4));
    let avail_end = frame.len().min(claimed_end);
    let (upper, frag) = walk_v6(frame, ip[6], l3 + IPV6_HLEN, avail_end);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    Ok(Packet {
        l3: L3::V6,
        l3_offset: l3,
        avail_end,
        claimed_end,
        ip_hlen: IPV6_HLEN,
        src,
        dst,
        upper,
        later_fragment: frag.is_some_and(|o| o != 0),
        fragment: frag.is_some(),
    })
}

fn v4_bad_source(a: &[u8]) -> bool {
    a[0] == 0 || a[0] == 127 || a[0] >= 224
}

fn v6_bad_source(a: &[u8; 16]) -> bool {
    a[0] == 0xff || *a == [0; 16] || *a == core::net::Ipv6Addr::LOCALHOST.octets()
}

/// ICMPv4 types known to be queries (anything else counts as an error).
fn v4_is_query(ty: u8) -> bool {
    matches!(ty, 0 | 8 | 9 | 10 | 13..=18)
}

/// Apply RFC 1812 4.3.2.7 / RFC 4443 2.4 (e).
fn check_may_answer(frame: &[u8], p: &Packet, reason: Reason) -> Result<(), BuildError> {
    let sup = |s| Err(BuildError::Suppressed(s));
    if p.later_fragment {
        return sup(Suppress::Fragment);
    }
    match p.l3 {
        L3::V4 => {
            if v4_bad_source(&p.src) {
                return sup(Suppress::BadSource);
            }
            if p.dst[..4] == [255; 4] {
                return sup(Suppress::BroadcastDestination);
            }
            if (224..240).contains(&p.dst[0]) {
                return sup(Suppress::MulticastDestination);
            }
            if frame[0] & 1 != 0 {
                return sup(Suppress::LinkMulticast);
            }
            match p.upper {
                Some((IPPROTO_ICMP, at)) => {
                    let ty = *frame.get(at).ok_or(BuildError::Truncated)?;
                    if !v4_is_query(ty) {
                        return sup(Suppress::IcmpError);
                    }
                }
                Some(_) => {}
                None => return sup(Suppress::Fragment),
            }
        }
        L3::V6 => {
            if v6_bad_source(&p.src) {
                return sup(Suppress::BadSource);
            }
            // Packet Too Big is the exception: path MTU discovery for
            // multicast needs it (RFC 4443 2.4 (e.3)).
            let ptb = matches!(reason, Reason::TooBig { .. });
            if p.dst[0] == 0xff && !ptb {
                return sup(Suppress::MulticastDestination);
            }
            if frame[0] & 1 != 0 && !ptb {
                return sup(Suppress::LinkMulticast);
            }
            match p.upper {
                Some((IPPROTO_ICMPV6, at)) => {
                    let ty = *frame.get(at).ok_or(BuildError::Truncated)?;
                    if ty < 128 {
                        return sup(Suppress::IcmpError);
                    }
                }
                Some(_) => {}
                // The walk did not reach the upper layer within the bytes
                // given: we cannot rule out an ICMPv6 error, so stay quiet.
                None => return sup(Suppress::IcmpError),
            }
        }
    }
    Ok(())
}

fn write_eth(out: &mut [u8], link: Link, ethertype: u16) {
    out[0..6].copy_from_slice(&link.dst);
    out[6..12].copy_from_slice(&link.src);
    put16(out, 12, ethertype);
}

/// Write an IPv4 header (no options) at `out[..20]`.
fn write_ipv4(out: &mut [u8], total: usize, tos: u8, proto: u8, src: &[u8], dst: &[u8]) {
    out[0] = 0x45;
    out[1] = tos;
    put16(out, 2, total as u16);
    out[4..8].fill(0); // identification 0, no fragmentation flags
    out[8] = HOP_LIMIT;
    out[9] = proto;
    out[10..12].fill(0);
    out[12..16].copy_from_slice(&src[..4]);
    out[16..20].copy_from_slice(&dst[..4]);
    let c = ipv4_header_checksum(&out[..IPV4_HLEN]);
    put16(out, 10, c);
}

/// Write an IPv6 header at `out[..40]`.
fn write_ipv6(out: &mut [u8], payload: usize, src: &[u8; 16], dst: &[u8; 16]) {
    out[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    put16(out, 4, payload as u16);
    out[6] = IPPROTO_ICMPV6;
    out[7] = HOP_LIMIT;
    out[8..24].copy_from_slice(src);
    out[24..40].copy_from_slice(dst);
}

/// The ICMPv6 pseudo-header sum (RFC 8200 8.1) for `len` bytes.
fn icmpv6_pseudo(src: &[u8; 16], dst: &[u8; 16], len: usize) -> u64 {
    let s = checksum_add(checksum_add(0, src), dst);
    checksum_add(
        s,
        &[0, 0, (len >> 8) as u8, len as u8, 0, 0, 0, IPPROTO_ICMPV6],
    )
}

/// Store the checksum of the ICMP message `msg` (field at 2 zeroed first),
/// with pseudo-header sum `pseudo` (0 for ICMPv4).
fn finish_icmp(msg: &mut [u8], pseudo: u64) {
    msg[2..4].fill(0);
    let c = !fold(checksum_add(pseudo, msg));
    put16(msg, 2, c);
}

/// Build an ICMP/ICMPv6 error about `offending` (the Ethernet frame as
/// received, or at least its first bytes: through the IP header and 8
/// bytes) into `out`, from the firewall's address `src` (of the offending
/// packet's IP version) to the offending packet's source. Returns the
/// frame length.
///
/// The quote is as much of the offending IP packet as fits both the
/// protocol limit ([`IPV4_ERROR_MAX`], [`IPV6_ERROR_MAX`]) and `out`, and
/// at least (IPv4) the IP header and 8 bytes or (IPv6) 48 bytes, or the
/// whole packet if shorter; with less room that is
/// [`BuildError::BufferTooSmall`]. Link padding is never quoted.
pub fn build_error(
    out: &mut [u8],
    link: Link,
    src: IpAddr,
    reason: Reason,
    offending: &[u8],
) -> Result<usize, BuildError> {
    let p = read_packet(offending)?;
    let our = addr_bytes(src, p.l3).map_err(|_| BuildError::FamilyMismatch)?;
    check_may_answer(offending, &p, reason)?;
    let (hlen, limit, min_quote) = match p.l3 {
        L3::V4 => (IPV4_HLEN, IPV4_ERROR_MAX, p.ip_hlen + 8),
        L3::V6 => (IPV6_HLEN, IPV6_ERROR_MAX, IPV6_HLEN + 8),
    };
    let ip_len = p.claimed_end - p.l3_offset;
    let min_quote = min_quote.min(ip_len);
    let avail = p.avail_end - p.l3_offset;
    if avail < min_quote {
        return Err(BuildError::Truncated);
    }
    let head = ETH_HLEN + hlen + ICMP_HLEN;
    let room = out.len().saturating_sub(head);
    if room < min_quote {
        return Err(BuildError::BufferTooSmall(head + min_quote));
    }
    let quote = avail.min(limit - hlen - ICMP_HLEN).min(room);
    let (ty, code, rest) = match (p.l3, reason) {
        (L3::V4, Reason::AdminProhibited) => (v4::DEST_UNREACHABLE, v4::CODE_ADMIN_PROHIBITED, 0),
        (L3::V4, Reason::TooBig { mtu }) => {
            let mtu = u16::try_from(mtu).map_err(|_| BuildError::BadMtu)?;
            (v4::DEST_UNREACHABLE, v4::CODE_FRAG_NEEDED, u32::from(mtu))
        }
        (L3::V4, Reason::TimeExceeded) => (v4::TIME_EXCEEDED, 0, 0),
        (L3::V6, Reason::AdminProhibited) => (v6::DEST_UNREACHABLE, v6::CODE_ADMIN_PROHIBITED, 0),
        (L3::V6, Reason::TooBig { mtu }) => (v6::PACKET_TOO_BIG, 0, mtu),
        (L3::V6, Reason::TimeExceeded) => (v6::TIME_EXCEEDED, 0, 0),
    };
    let icmp_len = ICMP_HLEN + quote;
    let msg_at = ETH_HLEN + hlen;
    {
        let msg = &mut out[msg_at..msg_at + icmp_len];
        msg[0] = ty;
        msg[1] = code;
        msg[4..8].copy_from_slice(&rest.to_be_bytes());
        msg[ICMP_HLEN..].copy_from_slice(&offending[p.l3_offset..p.l3_offset + quote]);
    }
    match p.l3 {
        L3::V4 => {
            write_eth(out, link, ETHERTYPE_IPV4);
            // Precedence "internetwork control", as Linux sends errors.
            write_ipv4(
                &mut out[ETH_HLEN..],
                hlen + icmp_len,
                0xc0,
                IPPROTO_ICMP,
                &our,
                &p.src,
            );
            finish_icmp(&mut out[msg_at..msg_at + icmp_len], 0);
        }
        L3::V6 => {
            write_eth(out, link, ETHERTYPE_IPV6);
            write_ipv6(&mut out[ETH_HLEN..], icmp_len, &our, &p.src);
            let pseudo = icmpv6_pseudo(&our, &p.src, icmp_len);
            finish_icmp(&mut out[msg_at..msg_at + icmp_len], pseudo);
        }
    }
    Ok(msg_at + icmp_len)
}

/// Answer the echo request `request` (an Ethernet frame, whole) with an
/// echo reply into `out`: from the address the request was sent to, same
/// identifier, sequence and data, IP options and IPv6 extension headers
/// dropped. The caller decides whether the request is for the firewall.
/// Refuses fragments, requests to multicast/broadcast addresses or from
/// sources that name no host ([`BuildError::Suppressed`]), and requests
/// with a wrong checksum.
pub fn echo_reply(out: &mut [u8], link: Link, request: &[u8]) -> Result<usize, BuildError> {
    let p = read_packet(request)?;
    if p.avail_end < p.claimed_end {
        return Err(BuildError::Truncated);
    }
    let sup = |s| Err(BuildError::Suppressed(s));
    if p.fragment {
        return sup(Suppress::Fragment);
    }
    let Some((proto, at)) = p.upper else {
        return Err(BuildError::Truncated);
    };
    let end = p.claimed_end;
    let (want_proto, want_type) = match p.l3 {
        L3::V4 => (IPPROTO_ICMP, v4::ECHO_REQUEST),
        L3::V6 => (IPPROTO_ICMPV6, v6::ECHO_REQUEST),
    };
    if proto != want_proto || end < at + ICMP_HLEN || request[at] != want_type {
        return Err(BuildError::NotEchoRequest);
    }
    match p.l3 {
        L3::V4 => {
            if v4_bad_source(&p.src) {
                return sup(Suppress::BadSource);
            }
            if p.dst[..4] == [255; 4] {
                return sup(Suppress::BroadcastDestination);
            }
            if p.dst[0] >= 224 {
                return sup(Suppress::MulticastDestination);
            }
        }
        L3::V6 => {
            if v6_bad_source(&p.src) {
                return sup(Suppress::BadSource);
            }
            if p.dst[0] == 0xff {
                return sup(Suppress::MulticastDestination);
            }
        }
    }
    let msg = &request[at..end];
    let pseudo = match p.l3 {
        L3::V4 => 0,
        L3::V6 => icmpv6_pseudo(&p.src, &p.dst, msg.len()),
    };
    if fold(checksum_add(pseudo, msg)) != 0xffff {
        return Err(BuildError::BadChecksum);
    }
    let hlen = match p.l3 {
        L3::V4 => IPV4_HLEN,
        L3::V6 => IPV6_HLEN,
    };
    let msg_at = ETH_HLEN + hlen;
    let total = msg_at + msg.len();
    if out.len() < total {
        return Err(BuildError::BufferTooSmall(total));
    }
    let reply = &mut out[msg_at..total];
    reply.copy_from_slice(msg);
    match p.l3 {
        L3::V4 => {
            reply[0] = v4::ECHO_REPLY;
            finish_icmp(reply, 0);
            write_eth(out, link, ETHERTYPE_IPV4);
            let tos = request[p.l3_offset + 1];
            write_ipv4(
                &mut out[ETH_HLEN..],
                hlen + msg.len(),
                tos,
                IPPROTO_ICMP,
                &p.dst,
                &p.src,
            );
        }
        L3::V6 => {
            reply[0] = v6::ECHO_REPLY;
            finish_icmp(reply, icmpv6_pseudo(&p.dst, &p.src, msg.len()));
            write_eth(out, link, ETHERTYPE_IPV6);
            write_ipv6(&mut out[ETH_HLEN..], msg.len(), &p.dst, &p.src);
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// Received errors

/// The transport part of the flow an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerTransport {
    /// TCP or UDP ports, as in the quoted packet.
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP/ICMPv6 echo request or reply: the identifier.
    Echo {
        /// The identifier.
        id: u16,
    },
    /// Another protocol (or another ICMP message): addresses only.
    Other,
}

/// The flow an error is about: the quoted packet's protocol, addresses and
/// ports, exactly as quoted (so, for an error from the uplink about a
/// NATed flow, the translated side of the flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerTuple {
    /// IP protocol (IPv6: the upper-layer header).
    pub proto: u8,
    /// Source address of the quoted packet.
    pub src: IpAddr,
    /// Destination address of the quoted packet.
    pub dst: IpAddr,
    /// Ports or echo identifier.
    pub transport: InnerTransport,
}

/// A received ICMP/ICMPv6 error, located.
///
/// Invariants: `outer.l4_offset + 8 == inner_l3_offset`,
/// `inner_l3_offset < inner_l4_offset`, and the quoted bytes through
/// `inner_l4_offset + 8` were present in the buffer parsed and lie within
/// the ICMP message (`message_end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The outer headers (the ICMP message at `outer.l4_offset`).
    pub outer: Headers,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// End of the ICMP message (`outer.l4_end`).
    pub message_end: usize,
    /// Start of the quoted IP header.
    pub inner_l3_offset: usize,
    /// Start of the quoted transport header.
    pub inner_l4_offset: usize,
    /// The flow.
    pub inner: InnerTuple,
}

/// Why [`parse_error`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The outer headers are malformed.
    Outer(OffloadError),
    /// Not ICMP over IPv4 / ICMPv6 over IPv6: the protocol.
    NotIcmp(u8),
    /// An ICMP type that is not an error handled here (dest unreachable,
    /// source quench (IPv4), time exceeded, parameter problem, packet too
    /// big (IPv6)).
    NotError(u8),
    /// The message (or the bytes given) ends before the quoted IP header
    /// and 8 transport bytes do.
    Truncated,
    /// The quoted packet's IP version differs from the outer one: the
    /// version nibble.
    InnerVersion(u8),
    /// The quoted IP header is malformed (IHL, total length).
    InnerBadHeader,
    /// The quoted packet is a non-first fragment: no transport header.
    InnerFragment,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParseError::Outer(e) => write!(f, "outer headers: {e}"),
            ParseError::NotIcmp(p) => write!(f, "not ICMP (protocol {p})"),
            ParseError::NotError(t) => write!(f, "ICMP type {t} is not an error"),
            ParseError::Truncated => write!(f, "quoted packet truncated"),
            ParseError::InnerVersion(v) => write!(f, "quoted IP version {v}"),
            ParseError::InnerBadHeader => write!(f, "malformed quoted IP header"),
            ParseError::InnerFragment => write!(f, "quoted packet is a later fragment"),
        }
    }
}

/// [`parse_error`] over a whole frame (parses the outer headers).
pub fn parse_error_frame(frame: &[u8]) -> Result<ErrorInfo, ParseError> {
    let outer = parse_bytes(frame).map_err(ParseError::Outer)?;
    parse_error(frame, &outer)
}

/// Locate the quoted packet of the ICMP error whose frame starts with
/// `data` (a prefix of the frame is enough: through the quoted transport
/// header's first 8 bytes) and whose headers `outer` describes (as
/// `parse_headers` gives them for the whole frame).
pub fn parse_error(data: &[u8], outer: &Headers) -> Result<ErrorInfo, ParseError> {
    let icmp = outer.l4_offset;
    let (ok, v) = match (outer.l3, outer.l4) {
        (L3::V4, L4::Other(IPPROTO_ICMP)) => (true, 4),
        (L3::V6, L4::Other(IPPROTO_ICMPV6)) => (true, 6),
        (_, l4) => (false, l4.protocol()),
    };
    if !ok {
        return Err(ParseError::NotIcmp(v));
    }
    let end = outer.l4_end.min(data.len());
    let hdr = data
        .get(icmp..icmp + ICMP_HLEN)
        .filter(|_| icmp + ICMP_HLEN <= end);
    let hdr = hdr.ok_or(ParseError::Truncated)?;
    let (ty, code) = (hdr[0], hdr[1]);
    let is_error = match outer.l3 {
        L3::V4 => matches!(
            ty,
            v4::DEST_UNREACHABLE | v4::SOURCE_QUENCH | v4::TIME_EXCEEDED | v4::PARAMETER_PROBLEM
        ),
        L3::V6 => matches!(
            ty,
            v6::DEST_UNREACHABLE | v6::PACKET_TOO_BIG | v6::TIME_EXCEEDED | v6::PARAMETER_PROBLEM
        ),
    };
    if !is_error {
        return Err(ParseError::NotError(ty));
    }
    let q = icmp + ICMP_HLEN;
    let b = &data[..end];
    let first = *b.get(q).ok_or(ParseError::Truncated)?;
    let (proto, l4, src, dst) = match outer.l3 {
        L3::V4 => {
            let ip = b.get(q..q + IPV4_HLEN).ok_or(ParseError::Truncated)?;
            if first >> 4 != 4 {
                return Err(ParseError::InnerVersion(first >> 4));
            }
            let ihl = usize::from(first & 15) * 4;
            if ihl < IPV4_HLEN || usize::from(get16(ip, 2)) < ihl {
                return Err(ParseError::InnerBadHeader);
            }
            if get16(ip, 6) & 0x1fff != 0 {
                return Err(ParseError::InnerFragment);
            }
            let mut s = [0u8; 4];
            let mut d = [0u8; 4];
            s.copy_from_slice(&ip[12..16]);
            d.copy_from_slice(&ip[16..20]);
            (ip[9], q + ihl, IpAddr::from(s), IpAddr::from(d))
        }
        L3::V6 => {
            let ip = b.get(q..q + IPV6_HLEN).ok_or(ParseError::Truncated)?;
            if first >> 4 != 6 {
                return Err(ParseError::InnerVersion(first >> 4));
            }
            let (upper, frag) = walk_v6(b, ip[6], q + IPV6_HLEN, b.len());
            if frag.is_some_and(|o| o != 0) {
                return Err(ParseError::InnerFragment);
            }
            let (proto, l4) = upper.ok_or(ParseError::Truncated)?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (proto, l4, IpAddr::from(s), IpAddr::from(d))
        }
    };
    let t = b.get(l4..l4 + 8).ok_or(ParseError::Truncated)?;
    let transport = match (proto, outer.l3) {
        (6 | 17, _) => InnerTransport::Ports {
            sport: get16(t, 0),
            dport: get16(t, 2),
        },
        (IPPROTO_ICMP, L3::V4) if matches!(t[0], v4::ECHO_REQUEST | v4::ECHO_REPLY) => {
            InnerTransport::Echo { id: get16(t, 4) }
        }
        (IPPROTO_ICMPV6, L3::V6) if matches!(t[0], v6::ECHO_REQUEST | v6::ECHO_REPLY) => {
            InnerTransport::Echo { id: get16(t, 4) }
        }
        _ => InnerTransport::Other,
    };
    Ok(ErrorInfo {
        outer: *outer,
        icmp_type: ty,
        code,
        message_end: outer.l4_end,
        inner_l3_offset: q,
        inner_l4_offset: l4,
        inner: InnerTuple {
            proto,
            src,
            dst,
            transport,
        },
    })
}

/// NAT-translate a received ICMP error in place: `outer` changes the outer
/// IP addresses (ports are refused), `inner` the quoted packet's addresses
/// and ports (or echo identifier). `data` and `info` are what
/// [`parse_error`] was given and returned.
///
/// Every checksum is adjusted incrementally: the outer IPv4 header, the
/// ICMP/ICMPv6 checksum (for the changed quote bytes and, for ICMPv6, the
/// outer pseudo header), the quoted IPv4 header, and the quoted transport
/// checksum where the quote holds it (UDP and ICMP always, in the first 8
/// bytes; TCP only if at least 18 bytes of it are quoted, as Linux does; a
/// UDP checksum of 0 stays 0). Nothing is written on error.
///
/// Limitation: a quoted source-routed packet's transport pseudo header is
/// taken to use its IP destination.
pub fn rewrite_error(
    data: &mut [u8],
    info: &ErrorInfo,
    outer: &NatRewrite,
    inner: &NatRewrite,
) -> Result<(), RewriteError> {
    let l3 = info.outer.l3;
    // Validate the outer rewrite up front so nothing fails half-way.
    for a in [outer.src, outer.dst].into_iter().flatten() {
        addr_bytes(a, l3)?;
    }
    if outer.sport.is_some() || outer.dport.is_some() {
        return Err(RewriteError::NoPorts(info.outer.l4.protocol()));
    }
    let end = info.message_end.min(data.len());
    let (q, l4) = (info.inner_l3_offset, info.inner_l4_offset);
    if end < l4 + 8 || q != info.outer.l4_offset + ICMP_HLEN {
        return Err(RewriteError::Truncated);
    }
    let ip_dst = q + if l3 == L3::V4 { 16 } else { 24 };
    let ih = Headers {
        l3,
        l3_offset: q,
        l4: match info.inner.proto {
            6 => L4::Tcp,
            17 => L4::Udp,
            p => L4::Other(p),
        },
        l4_offset: l4,
        payload_offset: l4,
        l4_end: end,
        pseudo_dst_offset: ip_dst,
    };
    let tcp_csum = l4 + 18 <= info.message_end;
    let region_end = end.min(l4 + 20);
    let before = checksum_add(0, &data[q..region_end]);
    rewrite_with(&mut data[..end], &ih, Checksum::Validated, inner, tcp_csum)?;
    let after = checksum_add(0, &data[q..region_end]);
    let mut d = Delta::new();
    d.replace_sum(before, after);
    let c = info.outer.l4_offset + 2;
    let v = d.apply(get16(data, c));
    put16(data, c, v);
    // The outer header: IPv4 checksum, ICMPv6 pseudo header.
    rewrite_l4(data, &info.outer, Checksum::Validated, outer)
}
