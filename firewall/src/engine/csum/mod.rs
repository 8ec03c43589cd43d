//! Incremental Internet checksum updates for rewriting headers in place
//! (RFC 1071 arithmetic, RFC 1624 updates), full and partial.
//!
//! NAT changes a few 16-bit words of a packet (addresses, ports, the ICMP
//! echo identifier); recomputing a checksum over a 64 KiB GSO payload for
//! that would cost more than the rest of the forwarding path, so every
//! checksum is *adjusted* instead:
//!
//! - A **full** checksum field `HC` (the complement of the sum) becomes
//!   `HC' = ~(~HC + ~m + m')` for each changed word `m → m'` (RFC 1624
//!   eqn. 3). An adjusted checksum is right exactly when the original was:
//!   a corrupt packet stays detectably corrupt, so an [`Checksum::Unverified`]
//!   packet can be rewritten without verifying it first.
//! - A **partial** field (`csum_blank`, [`Checksum::Partial`]) holds the
//!   folded, *non*-complemented pseudo-header sum `S`, and whoever completes
//!   it sums the transport header and payload on top. Only pseudo-header
//!   words may change it: `S' = S + ~m + m'` for an address. A port lives in
//!   the transport header, which the completion sums later anyway, so a
//!   port change must leave a partial field alone.
//!
//! [`Delta`] accumulates `~m + m'` over any number of changes so a field is
//! adjusted once; [`rewrite`] applies a whole NAT rewrite ([`NatRewrite`])
//! to TCP, UDP, ICMPv4 or ICMPv6 over IPv4 or IPv6, IP header included.
//!
//! All changed words must sit at even offsets of the checksummed data
//! (true of every address, port, identifier and checksum field).

use core::net::IpAddr;

use xen::frame::offload::{checksum_add, fold, Headers, L3, L4};
use xen::frame::Checksum;

#[cfg(test)]
pub(crate) mod tests;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// `a + b` in one's complement over 64 bits (end-around carry).
#[inline]
fn add1c(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + u64::from(c)
}

/// A checksum adjustment: the one's-complement sum of `~m + m'` over every
/// changed 16-bit word. Zero (or negative zero) changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change yet.
    pub const fn new() -> Delta {
        Delta(0)
    }

    /// Record that the bytes `old` became `new` (same length, starting at
    /// an even offset of the checksummed data; an odd last byte counts as
    /// the high byte of a word, as RFC 1071 pads it).
    pub fn replace(&mut self, old: &[u8], new: &[u8]) {
        debug_assert_eq!(old.len(), new.len());
        // Σ~m_i ≡ ~Σm_i modulo 0xffff, so one complement per slice does.
        let neg_old = u64::from(!fold(checksum_add(0, old)));
        self.0 = checksum_add(add1c(self.0, neg_old), new);
    }

    /// Record that a region whose one's-complement sum (as from
    /// `checksum_add`, starting at an even offset) was `old` now sums to
    /// `new`: cheaper than keeping a copy when many scattered words of one
    /// region change.
    pub fn replace_sum(&mut self, old: u64, new: u64) {
        self.0 = add1c(add1c(self.0, u64::from(!fold(old))), new);
    }

    /// Record that the 16-bit word `old` became `new`.
    pub fn replace16(&mut self, old: u16, new: u16) {
        self.0 = add1c(self.0, u64::from(!old) + u64::from(new));
    }

    /// Combine two adjustments.
    pub fn merge(&mut self, other: Delta) {
        self.0 = add1c(self.0, other.0);
    }

    /// Adjust a full (complemented) checksum: `~(~HC + Δ)`.
    pub fn apply(self, checksum: u16) -> u16 {
        !fold(add1c(u64::from(!checksum), self.0))
    }

    /// Adjust a partial (non-complemented, folded pseudo-header) sum:
    /// `S + Δ`.
    pub fn apply_partial(self, sum: u16) -> u16 {
        fold(add1c(u64::from(sum), self.0))
    }

    /// True if nothing would change (the sum is zero modulo 0xffff).
    pub fn is_empty(self) -> bool {
        matches!(fold(self.0), 0 | 0xffff)
    }
}

/// RFC 1624 eqn. 3 for one 16-bit word: the full checksum `checksum` after
/// the word `old` became `new`.
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    let mut d = Delta::new();
    d.replace16(old, new);
    d.apply(checksum)
}

/// [`update16`] for a 32-bit field (an IPv4 address).
pub fn update32(checksum: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let mut d = Delta::new();
    d.replace(&old, &new);
    d.apply(checksum)
}

/// [`update16`] for a 128-bit field (an IPv6 address).
pub fn update128(checksum: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    let mut d = Delta::new();
    d.replace(&old, &new);
    d.apply(checksum)
}

/// A partial (pseudo-header) sum after a pseudo-header word changed:
/// `S' = S + ~m + m'`.
pub fn partial_update16(sum: u16, old: u16, new: u16) -> u16 {
    let mut d = Delta::new();
    d.replace16(old, new);
    d.apply_partial(sum)
}

/// [`partial_update16`] for an IPv4 address.
pub fn partial_update32(sum: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let mut d = Delta::new();
    d.replace(&old, &new);
    d.apply_partial(sum)
}

/// [`partial_update16`] for an IPv6 address.
pub fn partial_update128(sum: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    let mut d = Delta::new();
    d.replace(&old, &new);
    d.apply_partial(sum)
}

/// What to change in a packet: new addresses and ports (or, for ICMP
/// echo, the identifier). `None` keeps a field. The old values are read
/// from the packet itself, so they cannot disagree with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatRewrite {
    /// New source address.
    pub src: Option<IpAddr>,
    /// New destination address.
    pub dst: Option<IpAddr>,
    /// New source port; for ICMP/ICMPv6 echo, the new identifier.
    pub sport: Option<u16>,
    /// New destination port; for ICMP/ICMPv6 echo, the new identifier
    /// (the identifier is both "ports": give it as either, or as both with
    /// the same value).
    pub dport: Option<u16>,
}

impl NatRewrite {
    /// The echo identifier to set, from `sport`/`dport`.
    fn echo_id(&self) -> Result<Option<u16>, RewriteError> {
        match (self.sport, self.dport) {
            (Some(a), Some(b)) if a != b => Err(RewriteError::ConflictingEchoId),
            (a, b) => Ok(a.or(b)),
        }
    }
}

/// Why [`rewrite`] refused (it writes nothing then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// The buffer ends before a field that must change.
    Truncated,
    /// A new address of the other IP version than the packet's.
    FamilyMismatch,
    /// A port change for a packet without ports: its protocol number
    /// (any protocol but TCP and UDP, ICMP messages other than echo).
    NoPorts(u8),
    /// ICMP echo with different `sport` and `dport` identifiers.
    ConflictingEchoId,
}

impl core::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RewriteError::Truncated => write!(f, "header buffer too short for the rewrite"),
            RewriteError::FamilyMismatch => write!(f, "address family differs from the packet's"),
            RewriteError::NoPorts(p) => write!(f, "protocol {p} has no ports to rewrite"),
            RewriteError::ConflictingEchoId => write!(f, "two different ICMP echo identifiers"),
        }
    }
}

/// Where a packet's source and destination addresses are, and how long.
pub(crate) fn address_offsets(l3: L3, l3_offset: usize) -> (usize, usize, usize) {
    match l3 {
        L3::V4 => (l3_offset + 12, l3_offset + 16, 4),
        L3::V6 => (l3_offset + 8, l3_offset + 24, 16),
    }
}

/// The bytes of `addr` if it is of version `l3`.
pub(crate) fn addr_bytes(addr: IpAddr, l3: L3) -> Result<[u8; 16], RewriteError> {
    let mut b = [0u8; 16];
    match (addr, l3) {
        (IpAddr::V4(a), L3::V4) => b[..4].copy_from_slice(&a.octets()),
        (IpAddr::V6(a), L3::V6) => b = a.octets(),
        _ => return Err(RewriteError::FamilyMismatch),
    }
    Ok(b)
}

pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// How the transport header reacts to a rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// TCP or UDP: ports at 0 and 2, checksum at `csum` with a pseudo
    /// header.
    Ports { csum: usize, udp: bool },
    /// ICMP (`pseudo` false) or ICMPv6 (`pseudo` true); `echo` if the
    /// message is an echo request or reply (identifier at 4).
    Icmp { pseudo: bool, echo: bool },
    /// Nothing this module adjusts.
    Opaque(u8),
}

/// The full checksum of an L4 field after `d`, for UDP (`udp`): 0 stays 0
/// (IPv4 "no checksum"; over IPv6 an invalid value the receiver drops, kept
/// invalid), a result of 0 is sent as `0xffff` (RFC 768).
fn adjust_full(old: u16, d: Delta, udp: bool) -> u16 {
    if udp && old == 0 {
        return 0;
    }
    let new = d.apply(old);
    if udp && new == 0 {
        0xffff
    } else {
        new
    }
}

/// Apply `rw` to the packet whose first bytes are `buf` (the bytes
/// `parse_bytes` parsed into `h`): write the new addresses and ports and
/// adjust the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum
/// for the frame's checksum state `state`.
///
/// - [`Checksum::Partial`] TCP/UDP (including GSO): addresses adjust the
///   pseudo-header sum, ports leave it alone.
/// - Otherwise (validated or not) the full checksum is adjusted; UDP 0
///   stays 0 and a result of 0 becomes `0xffff`.
/// - ICMP checksums are never offloaded, so `state` does not apply to
///   them; ICMPv4 has no pseudo header (addresses do not touch it), ICMPv6
///   does. Ports mean the echo identifier (echo request/reply only).
/// - A destination change enters the pseudo header only if it is the
///   pseudo-header destination (not for a source-routed packet, whose
///   pseudo header uses the final hop, [`Headers::pseudo_dst_offset`]).
/// - Other protocols: only the IP header changes; ports are refused.
///
/// Everything is checked before anything is written: on error the buffer
/// is untouched.
pub fn rewrite(
    buf: &mut [u8],
    h: &Headers,
    state: Checksum,
    rw: &NatRewrite,
) -> Result<(), RewriteError> {
    rewrite_with(buf, h, state, rw, true)
}

/// [`rewrite`], optionally (`tcp_csum` false) leaving the TCP checksum
/// alone: for a header quoted in an ICMP error, whose first 8 transport
/// bytes are all that is guaranteed to be there.
pub(crate) fn rewrite_with(
    buf: &mut [u8],
    h: &Headers,
    state: Checksum,
    rw: &NatRewrite,
    tcp_csum: bool,
) -> Result<(), RewriteError> {
    let (src_at, dst_at, alen) = address_offsets(h.l3, h.l3_offset);
    let new_src = rw.src.map(|a| addr_bytes(a, h.l3)).transpose()?;
    let new_dst = rw.dst.map(|a| addr_bytes(a, h.l3)).transpose()?;
    let ip_end = match h.l3 {
        L3::V4 => h.l3_offset + 20,
        L3::V6 => h.l3_offset + 40,
    };
    if buf.len() < ip_end || buf.len() < h.l4_offset {
        return Err(RewriteError::Truncated);
    }
    let l4 = h.l4_offset;
    let transport = match (h.l4, h.l3) {
        (L4::Tcp, _) => Transport::Ports {
            csum: 16,
            udp: false,
        },
        (L4::Udp, _) => Transport::Ports { csum: 6, udp: true },
        (L4::Other(IPPROTO_ICMP), L3::V4) | (L4::Other(IPPROTO_ICMPV6), L3::V6) => {
            let v6 = h.l3 == L3::V6;
            let ty = *buf.get(l4).ok_or(RewriteError::Truncated)?;
            let echo = if v6 {
                matches!(ty, 128 | 129)
            } else {
                matches!(ty, 0 | 8)
            };
            Transport::Icmp { pseudo: v6, echo }
        }
        (L4::Other(p), _) => Transport::Opaque(p),
    };
    let dst_in_pseudo = h.pseudo_dst_offset == dst_at;

    // Deltas: the IP header (IPv4 only), the pseudo header, the ports.
    let mut ip = Delta::new();
    let mut pseudo = Delta::new();
    let mut ports = Delta::new();
    if let Some(a) = &new_src {
        let mut d = Delta::new();
        d.replace(&buf[src_at..src_at + alen], &a[..alen]);
        ip.merge(d);
        pseudo.merge(d);
    }
    if let Some(a) = &new_dst {
        let mut d = Delta::new();
        d.replace(&buf[dst_at..dst_at + alen], &a[..alen]);
        ip.merge(d);
        if dst_in_pseudo {
            pseudo.merge(d);
        }
    }

    // Check and plan the transport writes.
    let mut port_writes: [Option<(usize, u16)>; 2] = [None, None];
    let csum_at = match transport {
        Transport::Ports { csum, udp } => {
            let has_csum = udp || tcp_csum;
            let need = if has_csum { l4 + csum + 2 } else { l4 + 4 };
            if buf.len() < need {
                return Err(RewriteError::Truncated);
            }
            for (slot, (new, at)) in port_writes
                .iter_mut()
                .zip([(rw.sport, l4), (rw.dport, l4 + 2)])
            {
                if let Some(p) = new {
                    ports.replace16(get16(buf, at), p);
                    *slot = Some((at, p));
                }
            }
            has_csum.then_some(l4 + csum)
        }
        Transport::Icmp { pseudo: v6, echo } => {
            let id = rw.echo_id()?;
            if id.is_some() && !echo {
                return Err(RewriteError::NoPorts(h.l4.protocol()));
            }
            if id.is_some() || (v6 && !pseudo.is_empty()) {
                if buf.len() < l4 + 8 {
                    return Err(RewriteError::Truncated);
                }
                if let Some(id) = id {
                    ports.replace16(get16(buf, l4 + 4), id);
                    port_writes[0] = Some((l4 + 4, id));
                }
                Some(l4 + 2)
            } else {
                None
            }
        }
        Transport::Opaque(p) => {
            if rw.sport.is_some() || rw.dport.is_some() {
                return Err(RewriteError::NoPorts(p));
            }
            None
        }
    };

    // Everything is in bounds: write.
    if let Some(at) = csum_at {
        let old = get16(buf, at);
        let new = match transport {
            Transport::Ports { .. } if state == Checksum::Partial => pseudo.apply_partial(old),
            Transport::Ports { udp, .. } => {
                let mut d = pseudo;
                d.merge(ports);
                adjust_full(old, d, udp)
            }
            Transport::Icmp { pseudo: v6, .. } => {
                let mut d = ports;
                if v6 {
                    d.merge(pseudo);
                }
                d.apply(old)
            }
            Transport::Opaque(_) => old,
        };
        put16(buf, at, new);
    }
    for (at, p) in port_writes.into_iter().flatten() {
        put16(buf, at, p);
    }
    if let Some(a) = &new_src {
        buf[src_at..src_at + alen].copy_from_slice(&a[..alen]);
    }
    if let Some(a) = &new_dst {
        buf[dst_at..dst_at + alen].copy_from_slice(&a[..alen]);
    }
    if h.l3 == L3::V4 {
        let at = h.l3_offset + 10;
        put16(buf, at, ip.apply(get16(buf, at)));
    }
    Ok(())
}

/// Decrement the IPv4 TTL (adjusting the header checksum) or the IPv6 hop
/// limit of a packet being forwarded. Returns `false`, changing nothing,
/// if it is 0 or 1: the packet must not be forwarded (answer with ICMP
/// time exceeded, RFC 1812 5.3.1, RFC 8200 3).
pub fn decrement_hop_limit(buf: &mut [u8], h: &Headers) -> Result<bool, RewriteError> {
    let at = h.l3_offset
        + match h.l3 {
            L3::V4 => 8,
            L3::V6 => 7,
        };
    let end = match h.l3 {
        L3::V4 => h.l3_offset + 20,
        L3::V6 => at + 1,
    };
    if buf.len() < end {
        return Err(RewriteError::Truncated);
    }
    let ttl = buf[at];
    if ttl <= 1 {
        return Ok(false);
    }
    if h.l3 == L3::V4 {
        // TTL is the high byte of the word it shares with the protocol.
        let c = h.l3_offset + 10;
        let word = get16(buf, at);
        put16(buf, c, update16(get16(buf, c), word, word - 0x100));
    }
    buf[at] = ttl - 1;
    Ok(true)
}
