//! Packet math for the vif drivers: header parsing, L4 checksum completion
//! and software GSO over [`Frame`]s.
//!
//! Frames come from hostile peers, so every parse is bounds-checked and
//! returns an [`OffloadError`]; nothing here panics on frame contents.
//! Nothing allocates: headers are read into a [`MAX_HEADER_LEN`] stack
//! buffer through [`Frame::read`] (so they may span segments), checksums
//! are summed straight from the segments' pages.
//!
//! - [`parse_headers`]: Ethernet (with at most one 802.1Q tag), IPv4 (with
//!   options) or IPv6 (with hop-by-hop, routing and destination-options
//!   extension headers), then TCP or UDP.
//! - [`checksum_add`], [`fold`], [`Csum`], [`pseudo_header_sum`]: the
//!   Internet checksum (RFC 1071), 8 bytes at a time.
//! - [`complete_checksum`]: turn a `csum_blank` frame ([`Checksum::Partial`])
//!   into one with a full TCP/UDP checksum.
//! - [`Segmenter`]: software GSO that describes each output segment as
//!   fresh header bytes plus byte ranges of the source frame (so a driver
//!   can grant-copy the payload straight from the source pages), and
//!   [`segment_to_frames`], which materialises the segments as new frames.
//!
//! The pseudo header uses the packet's *final* destination (RFC 8200 8.1,
//! RFC 9293 3.1): for a source-routed packet (IPv4 LSRR/SSRR with route
//! left, IPv6 routing header type 0, 2 or 4 with segments left) that is the
//! last address of the route, not the IP header's destination.

use core::fmt;

use super::{Checksum, Frame, FrameError, GsoType, MAX_SEGMENTS};
use crate::abi::PAGE_SIZE;
use crate::memory::pool::PagePool;

/// The most header bytes (Ethernet + IP with options or extension headers
/// + TCP with options) this module handles; longer headers are
///   [`OffloadError::HeaderTooLong`].
pub const MAX_HEADER_LEN: usize = 256;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_HIP: u8 = 139;
const IPPROTO_SHIM6: u8 = 140;
const IPPROTO_EXP1: u8 = 253;
const IPPROTO_EXP2: u8 = 254;

const IPOPT_END: u8 = 0;
const IPOPT_NOOP: u8 = 1;
const IPOPT_LSRR: u8 = 131;
const IPOPT_SSRR: u8 = 137;

const TCP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The network layer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The transport layer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Anything else, with its IP protocol number (IPv6: the first next
    /// header value that is not an extension header this module skips).
    Other(u8),
}

impl L4 {
    /// The IP protocol number.
    pub fn protocol(self) -> u8 {
        match self {
            L4::Tcp => IPPROTO_TCP,
            L4::Udp => IPPROTO_UDP,
            L4::Other(p) => p,
        }
    }
}

/// Where a frame's headers are (byte offsets from the start of the frame).
///
/// Always `l3_offset < l4_offset <= payload_offset <= l4_end <= len` and
/// `payload_offset <= MAX_HEADER_LEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// The network protocol.
    pub l3: L3,
    /// Start of the IP header (14, or 18 with a VLAN tag).
    pub l3_offset: usize,
    /// The transport protocol.
    pub l4: L4,
    /// Start of the transport header (after IPv4 options or IPv6
    /// extension headers).
    pub l4_offset: usize,
    /// First byte after the TCP/UDP header; `l4_offset` for
    /// [`L4::Other`].
    pub payload_offset: usize,
    /// End of the transport data: the end of the IP packet as its length
    /// field says (later bytes are link padding), or for UDP the end the
    /// UDP length field gives.
    pub l4_end: usize,
    /// Where the destination address for the pseudo header is (4 bytes for
    /// IPv4, 16 for IPv6): the IP header's destination, or the final
    /// destination of a source route.
    pub pseudo_dst_offset: usize,
}

impl Headers {
    /// Bytes of headers (Ethernet through TCP/UDP): `payload_offset`.
    pub fn header_len(&self) -> usize {
        self.payload_offset
    }
    /// Transport header plus payload (the pseudo header's length).
    pub fn l4_len(&self) -> usize {
        self.l4_end - self.l4_offset
    }
    /// Transport payload bytes.
    pub fn payload_len(&self) -> usize {
        self.l4_end - self.payload_offset
    }
    /// Offset of the TCP/UDP checksum field, if TCP or UDP.
    pub fn checksum_offset(&self) -> Option<usize> {
        match self.l4 {
            L4::Tcp => Some(self.l4_offset + 16),
            L4::Udp => Some(self.l4_offset + 6),
            L4::Other(_) => None,
        }
    }
}

/// Why a frame could not be parsed, checksummed or segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// The frame (or the IP packet, as its length field says) ends before
    /// a header does, or an IP length field claims more than the frame.
    Truncated,
    /// Not IPv4 or IPv6: the ethertype (after at most one VLAN tag).
    NotIp(u16),
    /// Malformed IP header: wrong version, IHL < 5, total length shorter
    /// than the header, bad options, hop-by-hop not first, duplicate or
    /// malformed routing header.
    BadIpHeader,
    /// An IPv6 extension header this module does not walk (AH, HIP, Shim6,
    /// experimental): its next header value.
    UnsupportedExtHeader(u8),
    /// An IPv6 routing header with segments left whose final destination
    /// this module cannot find: its routing type.
    UnsupportedRouting(u8),
    /// An IP fragment (IPv4 MF/offset, IPv6 fragment header): the L4
    /// header is not (all) here.
    Fragment,
    /// Neither TCP nor UDP: the protocol number.
    NotTcpUdp(u8),
    /// TCP data offset below 5.
    BadTcpHeader,
    /// UDP length below 8 or beyond the IP packet.
    BadUdpHeader,
    /// Headers longer than [`MAX_HEADER_LEN`].
    HeaderTooLong,
    /// Segmentation asked for a frame without GSO metadata.
    NotGso,
    /// GSO metadata with MSS 0.
    MssZero,
    /// The GSO type disagrees with the IP version.
    GsoMismatch,
    /// A GSO frame that is not TCP: its protocol number.
    GsoNotTcp(u8),
    /// The pool ran out of pages for an output frame.
    PoolExhausted,
    /// An output frame could not be built (cannot happen for segments of
    /// a valid frame; reported rather than assumed).
    Frame(FrameError),
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::Truncated => write!(f, "frame truncated inside its headers"),
            OffloadError::NotIp(t) => write!(f, "not IP (ethertype {t:#06x})"),
            OffloadError::BadIpHeader => write!(f, "malformed IP header"),
            OffloadError::UnsupportedExtHeader(n) => {
                write!(f, "unsupported IPv6 extension header {n}")
            }
            OffloadError::UnsupportedRouting(t) => {
                write!(
                    f,
                    "unsupported IPv6 routing header type {t} with segments left"
                )
            }
            OffloadError::Fragment => write!(f, "IP fragment"),
            OffloadError::NotTcpUdp(p) => write!(f, "not TCP or UDP (protocol {p})"),
            OffloadError::BadTcpHeader => write!(f, "malformed TCP header"),
            OffloadError::BadUdpHeader => write!(f, "malformed UDP header"),
            OffloadError::HeaderTooLong => {
                write!(f, "headers longer than {MAX_HEADER_LEN} bytes")
            }
            OffloadError::NotGso => write!(f, "not a GSO frame"),
            OffloadError::MssZero => write!(f, "GSO with MSS 0"),
            OffloadError::GsoMismatch => write!(f, "GSO type disagrees with the IP version"),
            OffloadError::GsoNotTcp(p) => write!(f, "GSO frame is not TCP (protocol {p})"),
            OffloadError::PoolExhausted => write!(f, "packet pool exhausted"),
            OffloadError::Frame(e) => write!(f, "building a segment: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The first bytes of a frame (at most [`MAX_HEADER_LEN`]) and its length.
struct View<'a> {
    buf: &'a [u8],
    len: usize,
}

impl<'a> View<'a> {
    /// `n` bytes at `off`, all before `end` (≤ the frame length).
    fn get(&self, off: usize, n: usize, end: usize) -> Result<&'a [u8], OffloadError> {
        let e = off.checked_add(n).ok_or(OffloadError::Truncated)?;
        if e > end.min(self.len) {
            return Err(OffloadError::Truncated);
        }
        self.buf.get(off..e).ok_or(OffloadError::HeaderTooLong)
    }
}

/// Parse the headers of a frame (see the module doc for what is
/// understood). Reads through [`Frame::read`] into a stack buffer, so
/// headers may span segments.
pub fn parse_headers(pool: &PagePool, frame: &Frame) -> Result<Headers, OffloadError> {
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = frame.read(pool, 0, &mut buf);
    parse_prefix(&buf[..n], frame.len())
}

/// [`parse_headers`] over contiguous packet bytes.
pub fn parse_bytes(data: &[u8]) -> Result<Headers, OffloadError> {
    parse_prefix(&data[..data.len().min(MAX_HEADER_LEN)], data.len())
}

/// Parse from `buf`, the first `min(len, MAX_HEADER_LEN)` bytes (or
/// more) of a packet of `len` bytes: for callers that already hold the
/// header bytes (the firewall engine reads them once into its own buffer).
pub fn parse_prefix(buf: &[u8], len: usize) -> Result<Headers, OffloadError> {
    let v = View { buf, len };
    let eth = v.get(0, ETH_HLEN, len)?;
    let mut ethertype = be16(eth, 12);
    let mut l3 = ETH_HLEN;
    if ethertype == ETHERTYPE_VLAN {
        let tag = v.get(ETH_HLEN, VLAN_HLEN, len)?;
        ethertype = be16(tag, 2);
        l3 += VLAN_HLEN;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_v4(&v, l3),
        ETHERTYPE_IPV6 => parse_v6(&v, l3),
        t => Err(OffloadError::NotIp(t)),
    }
}

fn parse_v4(v: &View<'_>, l3: usize) -> Result<Headers, OffloadError> {
    let ip = v.get(l3, IPV4_HLEN, v.len)?;
    if ip[0] >> 4 != 4 {
        return Err(OffloadError::BadIpHeader);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < IPV4_HLEN || total < ihl {
        return Err(OffloadError::BadIpHeader);
    }
    let end = l3 + total;
    if end > v.len {
        return Err(OffloadError::Truncated);
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(OffloadError::Fragment);
    }
    let hdr = v.get(l3, ihl, end)?;
    let pseudo_dst = match v4_final_destination(&hdr[IPV4_HLEN..])? {
        Some(at) => l3 + IPV4_HLEN + at,
        None => l3 + 16,
    };
    parse_l4(v, L3::V4, l3, ip[9], l3 + ihl, end, pseudo_dst)
}

/// The offset (within `opts`) of the final destination of a loose or
/// strict source route with addresses left, if there is one.
fn v4_final_destination(opts: &[u8]) -> Result<Option<usize>, OffloadError> {
    let mut i = 0;
    let mut route = false;
    let mut dst = None;
    while let Some(&kind) = opts.get(i) {
        match kind {
            IPOPT_END => break,
            IPOPT_NOOP => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1).ok_or(OffloadError::BadIpHeader)?);
                if len < 2 || i + len > opts.len() {
                    return Err(OffloadError::BadIpHeader);
                }
                if kind == IPOPT_LSRR || kind == IPOPT_SSRR {
                    // type, length, pointer, then 4-byte addresses; the
                    // pointer (1-based, ≥ 4) names the next one, and is past
                    // the end once the route is used up.
                    if route || len < 3 || (len - 3) % 4 != 0 {
                        return Err(OffloadError::BadIpHeader);
                    }
                    let ptr = usize::from(opts[i + 2]);
                    if ptr < 4 {
                        return Err(OffloadError::BadIpHeader);
                    }
                    route = true;
                    if len >= 7 && ptr <= len {
                        dst = Some(i + len - 4);
                    }
                }
                i += len;
            }
        }
    }
    Ok(dst)
}

fn parse_v6(v: &View<'_>, l3: usize) -> Result<Headers, OffloadError> {
    let ip = v.get(l3, IPV6_HLEN, v.len)?;
    if ip[0] >> 4 != 6 {
        return Err(OffloadError::BadIpHeader);
    }
    let end = l3 + IPV6_HLEN + usize::from(be16(ip, 4));
    if end > v.len {
        return Err(OffloadError::Truncated);
    }
    let mut next = ip[6];
    let mut off = l3 + IPV6_HLEN;
    let mut pseudo_dst = l3 + 24;
    let mut routing = false;
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                if next == IPPROTO_HOPOPTS && off != l3 + IPV6_HLEN {
                    return Err(OffloadError::BadIpHeader);
                }
                let first = v.get(off, 8, end)?;
                let len = (usize::from(first[1]) + 1) * 8;
                let ext = v.get(off, len, end)?;
                if next == IPPROTO_ROUTING {
                    if routing {
                        return Err(OffloadError::BadIpHeader);
                    }
                    routing = true;
                    if let Some(at) = v6_final_destination(ext)? {
                        pseudo_dst = off + at;
                    }
                }
                next = ext[0];
                off += len;
            }
            IPPROTO_FRAGMENT => return Err(OffloadError::Fragment),
            IPPROTO_AH | IPPROTO_HIP | IPPROTO_SHIM6 | IPPROTO_EXP1 | IPPROTO_EXP2 => {
                return Err(OffloadError::UnsupportedExtHeader(next))
            }
            _ => break,
        }
    }
    parse_l4(v, L3::V6, l3, next, off, end, pseudo_dst)
}

/// The offset (within the routing header `ext`) of the final destination,
/// if segments are left.
fn v6_final_destination(ext: &[u8]) -> Result<Option<usize>, OffloadError> {
    let (units, kind, left) = (usize::from(ext[1]), ext[2], usize::from(ext[3]));
    if left == 0 {
        return Ok(None);
    }
    match kind {
        // Type 0 (deprecated, RFC 5095) lists n addresses, the last final.
        0 => {
            let n = units / 2;
            if units % 2 != 0 || n == 0 || left > n {
                return Err(OffloadError::BadIpHeader);
            }
            Ok(Some(8 + 16 * (n - 1)))
        }
        // Type 2 (Mobile IPv6): one address, the home address.
        2 => {
            if units != 2 || left != 1 {
                return Err(OffloadError::BadIpHeader);
            }
            Ok(Some(8))
        }
        // Type 4 (SRv6, RFC 8754): Segment List[0] is the last segment.
        4 => {
            let last = usize::from(ext[4]);
            if units < 2 || 8 + 16 * (last + 1) > ext.len() || left > last {
                return Err(OffloadError::BadIpHeader);
            }
            Ok(Some(8))
        }
        t => Err(OffloadError::UnsupportedRouting(t)),
    }
}

fn parse_l4(
    v: &View<'_>,
    l3: L3,
    l3_offset: usize,
    proto: u8,
    l4_offset: usize,
    end: usize,
    pseudo_dst_offset: usize,
) -> Result<Headers, OffloadError> {
    let (l4, payload_offset, l4_end) = match proto {
        IPPROTO_TCP => {
            let tcp = v.get(l4_offset, TCP_HLEN, end)?;
            let doff = usize::from(tcp[12] >> 4) * 4;
            if doff < TCP_HLEN {
                return Err(OffloadError::BadTcpHeader);
            }
            v.get(l4_offset, doff, end)?;
            (L4::Tcp, l4_offset + doff, end)
        }
        IPPROTO_UDP => {
            let udp = v.get(l4_offset, UDP_HLEN, end)?;
            let ulen = usize::from(be16(udp, 4));
            if ulen < UDP_HLEN || l4_offset + ulen > end {
                return Err(OffloadError::BadUdpHeader);
            }
            (L4::Udp, l4_offset + UDP_HLEN, l4_offset + ulen)
        }
        p => (L4::Other(p), l4_offset, end),
    };
    Ok(Headers {
        l3,
        l3_offset,
        l4,
        l4_offset,
        payload_offset,
        l4_end,
        pseudo_dst_offset,
    })
}

// ---------------------------------------------------------------------------
// Checksums

#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + u64::from(c)
}

/// Add `data` to a one's-complement sum (RFC 1071), as if `data` started
/// at an even offset of the summed stream; an odd last byte is padded with
/// a zero. `sum` is any earlier result (or 0, or a pseudo-header sum). The
/// accumulator is 64 bits wide (one's complement mod 2^64 - 1), summed 8
/// bytes at a time; [`fold`] reduces it to 16 bits. For chunks that may
/// start at odd offsets use [`Csum`].
pub fn checksum_add(mut sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        sum = add_carry(sum, u64::from_be_bytes(b));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        sum = add_carry(sum, u64::from_be_bytes(b));
    }
    sum
}

/// Reduce a 64-bit one's-complement sum to 16 bits (not complemented: the
/// value to store as a checksum is `!fold(sum)`; a buffer that includes a
/// correct checksum folds to `0xffff`).
pub fn fold(sum: u64) -> u16 {
    let s = (sum >> 32) + (sum & 0xffff_ffff);
    let s = (s >> 32) + (s & 0xffff_ffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// A one's-complement sum over a byte stream fed in chunks of any length
/// (chunks starting at odd offsets are rotated into place).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Csum {
    sum: u64,
    odd: bool,
}

impl Csum {
    /// An empty sum.
    pub const fn new() -> Csum {
        Csum { sum: 0, odd: false }
    }
    /// A sum starting from `sum` (e.g. a pseudo-header sum), at offset 0.
    pub const fn with_sum(sum: u64) -> Csum {
        Csum { sum, odd: false }
    }
    /// Append `data` to the stream.
    pub fn add(&mut self, data: &[u8]) {
        let s = checksum_add(0, data);
        // A byte at an odd offset weighs 1 instead of 256: multiply by
        // 2^8, which is 2^-8 modulo 0xffff (a factor of 2^64 - 1).
        let s = if self.odd { s.rotate_left(8) } else { s };
        self.sum = add_carry(self.sum, s);
        self.odd ^= data.len() % 2 == 1;
    }
    /// The 64-bit sum so far.
    pub fn sum(&self) -> u64 {
        self.sum
    }
    /// The folded 16-bit sum so far ([`fold`]).
    pub fn fold(&self) -> u16 {
        fold(self.sum)
    }
}

/// The checksum to store in an IPv4 header: over `header` (the whole
/// header, options included) with the checksum field (bytes 10..12) taken
/// as zero. `header` shorter than 12 bytes sums what is there.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let head = &header[..header.len().min(10)];
    let tail = header.get(12..).unwrap_or(&[]);
    !fold(checksum_add(checksum_add(0, head), tail))
}

/// The pseudo-header sum (addresses and protocol, not yet the length).
fn pseudo_base(hdr: &[u8], h: &Headers) -> Result<u64, OffloadError> {
    let alen = match h.l3 {
        L3::V4 => 4,
        L3::V6 => 16,
    };
    let src_at = h.l3_offset + if h.l3 == L3::V4 { 12 } else { 8 };
    let src = hdr
        .get(src_at..src_at + alen)
        .ok_or(OffloadError::Truncated)?;
    let dst = hdr
        .get(h.pseudo_dst_offset..h.pseudo_dst_offset + alen)
        .ok_or(OffloadError::Truncated)?;
    Ok(add_carry(
        checksum_add(checksum_add(0, src), dst),
        u64::from(h.l4.protocol()),
    ))
}

/// The TCP/UDP pseudo-header sum (unfolded) for `l4_len` bytes of
/// transport header and payload: IPv4 (RFC 9293 3.1, RFC 768) or IPv6
/// (RFC 8200 8.1), with the final destination ([`Headers::pseudo_dst_offset`])
/// and the protocol of `h.l4`. `hdr` is the packet from its first byte,
/// at least through the addresses (the buffer [`parse_bytes`] parsed);
/// shorter is [`OffloadError::Truncated`].
///
/// A `csum_blank` packet carries `fold(pseudo_header_sum(..))` in its
/// checksum field.
pub fn pseudo_header_sum(hdr: &[u8], h: &Headers, l4_len: usize) -> Result<u64, OffloadError> {
    Ok(add_carry(pseudo_base(hdr, h)?, l4_len as u64))
}

/// Add the frame's bytes `start..end` to `acc` (the stream starts at
/// `start`).
fn sum_frame(pool: &PagePool, frame: &Frame, start: usize, end: usize, acc: &mut Csum) {
    let mut pos = 0;
    for s in frame.segments() {
        let b = s.bytes(pool);
        let (a, e) = (pos, pos + b.len());
        pos = e;
        if e <= start {
            continue;
        }
        if a >= end {
            break;
        }
        acc.add(&b[start.saturating_sub(a)..end.min(e) - a]);
    }
}

/// Compute the full TCP/UDP checksum from scratch (zero the field, sum
/// pseudo header and transport header plus payload), store it and mark the
/// frame [`Checksum::Validated`]. For a [`Checksum::Partial`] frame this is
/// completing `csum_blank` (whatever the field held is ignored); for any
/// other state it recomputes and overwrites. A UDP result of 0 is stored
/// as `0xffff` (0 means "no checksum" over IPv4 and is forbidden over
/// IPv6). A GSO frame is summed as the one large packet it is.
///
/// Frames that are not TCP/UDP are [`OffloadError::NotTcpUdp`] (the caller
/// decides); nothing is written on error.
pub fn complete_checksum(pool: &PagePool, frame: &mut Frame) -> Result<(), OffloadError> {
    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = frame.read(pool, 0, &mut buf);
    let h = parse_prefix(&buf[..n], frame.len())?;
    let field = h
        .checksum_offset()
        .ok_or(OffloadError::NotTcpUdp(h.l4.protocol()))?;
    let mut acc = Csum::with_sum(pseudo_header_sum(&buf[..n], &h, h.l4_len())?);
    frame.write(pool, field, &[0, 0]);
    sum_frame(pool, frame, h.l4_offset, h.l4_end, &mut acc);
    let mut c = !acc.fold();
    if h.l4 == L4::Udp && c == 0 {
        c = 0xffff;
    }
    frame.write(pool, field, &c.to_be_bytes());
    frame.csum = Checksum::Validated;
    Ok(())
}

// ---------------------------------------------------------------------------
// Segmentation

/// A byte range of one segment of the source frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadRange {
    /// Index of the source frame's segment.
    pub segment: u8,
    /// Offset within that segment's bytes (relative to
    /// [`Segment::offset`](super::Segment::offset)).
    pub offset: u16,
    /// Bytes.
    pub len: u16,
}

/// One output segment: `header_len` header bytes (written by
/// [`Segmenter::next`]) followed by the payload ranges in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPlan {
    /// Header bytes (Ethernet through TCP, options included).
    pub header_len: usize,
    /// The payload, as ranges of the source frame; `ranges[..nranges]`.
    pub ranges: [PayloadRange; MAX_SEGMENTS],
    /// Ranges in use.
    pub nranges: usize,
    /// Payload bytes (the sum of the ranges' lengths).
    pub payload_len: usize,
}

impl SegmentPlan {
    /// The ranges in use.
    pub fn ranges(&self) -> &[PayloadRange] {
        &self.ranges[..self.nranges.min(MAX_SEGMENTS)]
    }
    /// Header plus payload bytes.
    pub fn len(&self) -> usize {
        self.header_len + self.payload_len
    }
    /// True if there is nothing at all (never for a real plan).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Software GSO: cuts a TCP GSO frame into segments of at most `mss`
/// payload bytes, each described by fresh header bytes and payload ranges
/// of the source frame (see [`Segmenter::next`]).
///
/// Every segment's headers are fixed up: IPv4 total length, id (`id + i`)
/// and header checksum, or IPv6 payload length; TCP sequence number (+ the
/// payload offset), flags (FIN and PSH only on the last segment, CWR only
/// on the first) and checksum: with `partial` only the pseudo-header sum
/// (the segment stays `csum_blank`), otherwise the full checksum over
/// header and payload (read from the source frame's pages). A frame whose
/// payload fits in one MSS yields exactly one segment, fixed up the same
/// way.
#[derive(Clone, Debug)]
pub struct Segmenter {
    hdr: [u8; MAX_HEADER_LEN],
    h: Headers,
    mss: usize,
    partial: bool,
    total: usize,
    index: usize,
    payload_len: usize,
    emitted: usize,
    seg: usize,
    seg_off: usize,
    ip_id: u16,
    seq: u32,
    flags: u8,
    pseudo: u64,
}

impl Segmenter {
    /// Prepare to segment `frame`, which must carry GSO metadata whose type
    /// matches its IP version, and be TCP.
    pub fn new(pool: &PagePool, frame: &Frame, partial: bool) -> Result<Segmenter, OffloadError> {
        let gso = frame.gso.ok_or(OffloadError::NotGso)?;
        if gso.mss == 0 {
            return Err(OffloadError::MssZero);
        }
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let n = frame.read(pool, 0, &mut hdr);
        let h = parse_prefix(&hdr[..n], frame.len())?;
        match (gso.kind, h.l3) {
            (GsoType::TcpV4, L3::V4) | (GsoType::TcpV6, L3::V6) => {}
            _ => return Err(OffloadError::GsoMismatch),
        }
        if h.l4 != L4::Tcp {
            return Err(OffloadError::GsoNotTcp(h.l4.protocol()));
        }
        let mss = usize::from(gso.mss);
        let payload_len = h.payload_len();
        // Find the payload's first byte.
        let (mut seg, mut skip) = (0, h.payload_offset);
        while let Some(s) = frame.segment(seg) {
            if skip < usize::from(s.len()) {
                break;
            }
            skip -= usize::from(s.len());
            seg += 1;
        }
        let l4 = h.l4_offset;
        Ok(Segmenter {
            ip_id: match h.l3 {
                L3::V4 => be16(&hdr, h.l3_offset + 4),
                L3::V6 => 0,
            },
            seq: u32::from_be_bytes([hdr[l4 + 4], hdr[l4 + 5], hdr[l4 + 6], hdr[l4 + 7]]),
            flags: hdr[l4 + 13],
            pseudo: pseudo_base(&hdr[..n], &h)?,
            hdr,
            h,
            mss,
            partial,
            total: payload_len.div_ceil(mss).max(1),
            index: 0,
            payload_len,
            emitted: 0,
            seg,
            seg_off: skip,
        })
    }

    /// How many segments in all.
    pub fn segments_total(&self) -> usize {
        self.total
    }

    /// The source frame's headers.
    pub fn headers(&self) -> &Headers {
        &self.h
    }

    /// The next segment: writes its header bytes into
    /// `header[..plan.header_len]` and returns where its payload is; `None`
    /// when done. `frame` must be the frame given to [`Segmenter::new`],
    /// unchanged (another frame yields `None` or meaningless segments, never
    /// a panic).
    pub fn next(
        &mut self,
        pool: &PagePool,
        frame: &Frame,
        header: &mut [u8; MAX_HEADER_LEN],
    ) -> Option<SegmentPlan> {
        if self.index >= self.total {
            return None;
        }
        let len = self.mss.min(self.payload_len - self.emitted);
        let mut plan = SegmentPlan {
            header_len: self.h.payload_offset,
            ranges: [PayloadRange::default(); MAX_SEGMENTS],
            nranges: 0,
            payload_len: len,
        };
        let mut need = len;
        while need > 0 {
            let slen = usize::from(frame.segment(self.seg)?.len());
            let take = (slen - self.seg_off.min(slen)).min(need);
            if take > 0 {
                *plan.ranges.get_mut(plan.nranges)? = PayloadRange {
                    segment: self.seg as u8,
                    offset: self.seg_off as u16,
                    len: take as u16,
                };
                plan.nranges += 1;
                need -= take;
                self.seg_off += take;
            }
            if self.seg_off >= slen {
                self.seg += 1;
                self.seg_off = 0;
            }
        }

        let hl = self.h.payload_offset;
        header[..hl].copy_from_slice(&self.hdr[..hl]);
        let l3 = self.h.l3_offset;
        match self.h.l3 {
            L3::V4 => {
                let ihl = usize::from(header[l3] & 0x0f) * 4;
                let total = (hl - l3 + len) as u16;
                header[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                let id = self.ip_id.wrapping_add(self.index as u16);
                header[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
                let c = ipv4_header_checksum(&header[l3..l3 + ihl]);
                header[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            }
            L3::V6 => {
                let plen = (hl - l3 - IPV6_HLEN + len) as u16;
                header[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
            }
        }
        let l4 = self.h.l4_offset;
        let seq = self.seq.wrapping_add(self.emitted as u32);
        header[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = self.flags;
        if self.index + 1 < self.total {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if self.index > 0 {
            flags &= !TCP_CWR;
        }
        header[l4 + 13] = flags;
        header[l4 + 16..l4 + 18].fill(0);
        let pseudo = add_carry(self.pseudo, (hl - l4 + len) as u64);
        let c = if self.partial {
            fold(pseudo)
        } else {
            let mut acc = Csum::with_sum(pseudo);
            acc.add(&header[l4..hl]);
            for r in plan.ranges() {
                let b = frame.segment(usize::from(r.segment))?.bytes(pool);
                let (o, n) = (usize::from(r.offset), usize::from(r.len));
                acc.add(b.get(o..o + n)?);
            }
            !acc.fold()
        };
        header[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());

        self.emitted += len;
        self.index += 1;
        Some(plan)
    }
}

/// Materialise the segments of a GSO frame as new frames (copying the
/// payload: the degraded path for a peer without GSO/SG, and for tests),
/// handing each to `out` in order; returns how many. Each output frame has
/// its header and payload packed into whole pages, `csum`
/// [`Checksum::Partial`] (if `partial`) or [`Checksum::Validated`], and no
/// GSO. On error, frames already handed to `out` stay there and no page is
/// leaked.
pub fn segment_to_frames(
    pool: &mut PagePool,
    frame: &Frame,
    partial: bool,
    out: &mut dyn FnMut(Frame),
) -> Result<usize, OffloadError> {
    let mut seg = Segmenter::new(pool, frame, partial)?;
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut n = 0;
    while let Some(plan) = seg.next(pool, frame, &mut header) {
        let mut f = build_frame(pool, frame, &header[..plan.header_len], &plan)?;
        f.csum = if partial {
            Checksum::Partial
        } else {
            Checksum::Validated
        };
        out(f);
        n += 1;
    }
    Ok(n)
}

/// A new frame holding `header` then the plan's payload ranges of `src`.
fn build_frame(
    pool: &mut PagePool,
    src: &Frame,
    header: &[u8],
    plan: &SegmentPlan,
) -> Result<Frame, OffloadError> {
    let mut f = Frame::new();
    let mut left = header.len() + plan.payload_len;
    while left > 0 {
        let Some(page) = pool.alloc() else {
            f.free(pool);
            return Err(OffloadError::PoolExhausted);
        };
        let n = left.min(PAGE_SIZE);
        if let Err((page, e)) = f.push(page, 0, n) {
            pool.free(page);
            f.free(pool);
            return Err(OffloadError::Frame(e));
        }
        left -= n;
    }
    let pool = &*pool;
    let mut at = f.write(pool, 0, header);
    for r in plan.ranges() {
        let bytes = src
            .segment(usize::from(r.segment))
            .map(|s| s.bytes(pool))
            .and_then(|b| b.get(usize::from(r.offset)..usize::from(r.offset) + usize::from(r.len)))
            .unwrap_or(&[]);
        at += f.write(pool, at, bytes);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Gso, MAX_FRAME_LEN};
    use crate::memory::{Gfn, GuestMemory, LocalPages, SharedMem};
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    // --- RAM and pool -------------------------------------------------------

    struct Ram(LocalPages, core::cell::Cell<usize>, usize);
    impl GuestMemory for Ram {
        fn alloc_pages(&self, n: usize) -> Option<Gfn> {
            let at = self.1.get();
            (at + n <= self.2).then(|| {
                self.1.set(at + n);
                Gfn(at as u64)
            })
        }
        fn free_pages(&self, _: Gfn, _: usize) {}
        fn alloc_hole(&self, _: usize) -> Option<Gfn> {
            None
        }
        fn free_hole(&self, _: Gfn, _: usize) {}
        fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
            Some(self.0.mem().sub(gfn.0 as usize * PAGE_SIZE, n * PAGE_SIZE))
        }
    }
    fn pool(n: usize) -> (Ram, PagePool) {
        let ram = Ram(LocalPages::new(n), core::cell::Cell::new(0), n);
        let p = PagePool::new(&ram, n).unwrap();
        (ram, p)
    }

    /// A frame holding `data` in segments of `sizes` bytes (which must add
    /// up), each at a page offset derived from `seed`.
    fn frame_of(pool: &mut PagePool, data: &[u8], sizes: &[usize], seed: u64) -> Frame {
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        let mut f = Frame::new();
        let mut at = 0;
        for (i, &n) in sizes.iter().enumerate() {
            let room = PAGE_SIZE - n + 1;
            let off = (seed.rotate_left(7 * i as u32) as usize).wrapping_mul(2654435761) % room;
            let mut p = pool.alloc().unwrap();
            pool.bytes_mut(&mut p)[off..off + n].copy_from_slice(&data[at..at + n]);
            f.push(p, off, n).unwrap();
            at += n;
        }
        f
    }

    /// Segment sizes for `len` bytes: up to `heads` small leading segments
    /// (as many as still leave room), then `chunk`-byte segments (grown if
    /// needed to stay within MAX_SEGMENTS).
    fn layout(len: usize, heads: &[usize], chunk: usize) -> Vec<usize> {
        for k in (0..=heads.len()).rev() {
            let mut v = Vec::new();
            let mut left = len;
            for &h in &heads[..k] {
                if left == 0 {
                    break;
                }
                let h = h.clamp(1, PAGE_SIZE).min(left);
                v.push(h);
                left -= h;
            }
            let slots = MAX_SEGMENTS - v.len();
            if left.div_ceil(PAGE_SIZE) > slots {
                continue;
            }
            let chunk = chunk.clamp(1, PAGE_SIZE).max(left.div_ceil(slots.max(1)));
            while left > 0 {
                let c = chunk.min(left);
                v.push(c);
                left -= c;
            }
            return v;
        }
        unreachable!("a frame of {len} bytes always fits whole pages")
    }

    // --- an independent reference implementation ----------------------------

    /// Sum of big-endian 16-bit words, odd byte padded: the textbook way.
    fn ref_sum(data: &[u8]) -> u64 {
        data.chunks(2)
            .map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0)))
            .sum()
    }
    fn ref_fold(mut s: u64) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }
    fn rbe16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    fn rbe32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    const SRC4: [u8; 4] = [10, 137, 0, 5];
    const DST4: [u8; 4] = [10, 138, 2, 9];
    const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];

    /// A test packet with its layout as the builder knows it.
    #[derive(Clone, Debug)]
    struct Pkt {
        b: Vec<u8>,
        v6: bool,
        proto: u8,
        l3: usize,
        l4: usize,
        pay: usize,
        end: usize,
        /// The final destination address (pseudo header).
        fdst: Vec<u8>,
    }

    impl Pkt {
        fn src(&self) -> &[u8] {
            if self.v6 {
                &self.b[self.l3 + 8..self.l3 + 24]
            } else {
                &self.b[self.l3 + 12..self.l3 + 16]
            }
        }
        /// The pseudo header for `len` L4 bytes.
        fn pseudo(&self, len: usize) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend_from_slice(self.src());
            v.extend_from_slice(&self.fdst);
            if self.v6 {
                v.extend_from_slice(&(len as u32).to_be_bytes());
                v.extend_from_slice(&[0, 0, 0, self.proto]);
            } else {
                v.extend_from_slice(&[0, self.proto]);
                v.extend_from_slice(&(len as u16).to_be_bytes());
            }
            v
        }
        /// The L4 checksum of `b` (the packet or a segment of it) verifies.
        fn l4_ok(&self, b: &[u8], end: usize) -> bool {
            let l4 = &b[self.l4..end];
            ref_fold(ref_sum(&self.pseudo(l4.len())) + ref_sum(l4)) == 0xffff
        }
    }

    struct Spec<'a> {
        v6: bool,
        vlan: bool,
        proto: u8,
        ip_opts: &'a [u8],
        ext: &'a [(u8, &'a [u8])],
        tcp_opts: usize,
        payload: &'a [u8],
        flags: u8,
        seq: u32,
        id: u16,
        fdst: Option<&'a [u8]>,
    }

    impl Default for Spec<'_> {
        fn default() -> Self {
            Spec {
                v6: false,
                vlan: false,
                proto: 6,
                ip_opts: &[],
                ext: &[],
                tcp_opts: 0,
                payload: &[],
                flags: 0x18,
                seq: 0xfffff000,
                id: 0xfff0,
                fdst: None,
            }
        }
    }

    /// Build a packet with correct lengths and checksums (reference sums).
    fn build(s: &Spec<'_>) -> Pkt {
        let mut b = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if s.vlan {
            b.extend_from_slice(&[0x81, 0x00, 0x20, 0x05]);
        }
        b.extend_from_slice(if s.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        let l3 = b.len();
        if s.v6 {
            let first = s.ext.first().map_or(s.proto, |e| e.0);
            b.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, first, 64]);
            b.extend_from_slice(&SRC6);
            b.extend_from_slice(&DST6);
            for (i, (_, bytes)) in s.ext.iter().enumerate() {
                let at = b.len();
                b.extend_from_slice(bytes);
                b[at] = s.ext.get(i + 1).map_or(s.proto, |e| e.0);
            }
        } else {
            assert_eq!(s.ip_opts.len() % 4, 0);
            let ihl = (20 + s.ip_opts.len()) / 4;
            b.extend_from_slice(&[0x40 | ihl as u8, 0, 0, 0]);
            b.extend_from_slice(&s.id.to_be_bytes());
            b.extend_from_slice(&[0x40, 0, 64, s.proto, 0, 0]);
            b.extend_from_slice(&SRC4);
            b.extend_from_slice(&DST4);
            b.extend_from_slice(s.ip_opts);
        }
        let l4 = b.len();
        match s.proto {
            6 => {
                assert_eq!(s.tcp_opts % 4, 0);
                b.extend_from_slice(&[0xc0, 0x01, 0x01, 0xbb]);
                b.extend_from_slice(&s.seq.to_be_bytes());
                b.extend_from_slice(&[0x01, 0x02, 0x03, 0x04]);
                b.extend_from_slice(&[(((20 + s.tcp_opts) / 4) << 4) as u8, s.flags]);
                b.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
                for i in 0..s.tcp_opts {
                    b.push(if i < 4 { [2, 4, 0x05, 0xb4][i] } else { 1 });
                }
            }
            17 => b.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0, 0, 0, 0]),
            _ => {}
        }
        let pay = b.len();
        b.extend_from_slice(s.payload);
        let end = b.len();
        if s.v6 {
            let plen = (end - l3 - 40) as u16;
            b[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        } else {
            let tot = (end - l3) as u16;
            b[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
        }
        if s.proto == 17 {
            let ulen = (end - l4) as u16;
            b[l4 + 4..l4 + 6].copy_from_slice(&ulen.to_be_bytes());
        }
        let fdst = match (s.fdst, s.v6) {
            (Some(d), _) => d.to_vec(),
            (None, true) => DST6.to_vec(),
            (None, false) => DST4.to_vec(),
        };
        let p = Pkt {
            b,
            v6: s.v6,
            proto: s.proto,
            l3,
            l4,
            pay,
            end,
            fdst,
        };
        let mut b = p.b.clone();
        let field = match s.proto {
            6 => Some(l4 + 16),
            17 => Some(l4 + 6),
            _ => None,
        };
        if let Some(at) = field {
            let c = !ref_fold(ref_sum(&p.pseudo(end - l4)) + ref_sum(&b[l4..end]));
            let c = if s.proto == 17 && c == 0 { 0xffff } else { c };
            b[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        if !s.v6 {
            let c = !ref_fold(ref_sum(&b[l3..l4]));
            b[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        Pkt { b, ..p }
    }

    fn pattern(n: usize, k: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(k) >> 13) as u8)
            .collect()
    }

    // --- checksum vectors ---------------------------------------------------

    #[test]
    fn rfc1071_example_and_chunking() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(checksum_add(0, &d)), 0xddf2);
        assert_eq!(!fold(checksum_add(0, &d)), 0x220d);
        for split in 0..=d.len() {
            let mut c = Csum::new();
            c.add(&d[..split]);
            c.add(&d[split..]);
            assert_eq!(c.fold(), 0xddf2, "split at {split}");
        }
        // Odd length: the last byte is the high half of a word.
        assert_eq!(fold(checksum_add(0, &[0xab])), 0xab00);
        assert_eq!(fold(checksum_add(0, &[])), 0);
        // Carries out of 64 bits wrap around.
        // u64::MAX - 3 is -3 (mod 2^64 - 1, hence mod 0xffff): 0xfffc.
        let ff = [0xff; 64];
        assert_eq!(
            fold(checksum_add(u64::MAX - 3, &ff)),
            ref_fold(ref_sum(&ff) + 0xfffc)
        );
        let d = pattern(999, 1);
        assert_eq!(
            fold(checksum_add(u64::MAX - 3, &d)),
            ref_fold(ref_sum(&d) + 0xfffc)
        );
        assert_eq!(fold(0x1_0000_fffe), 0xffff);
    }

    #[test]
    fn checksum_matches_reference_on_any_chunking() {
        let data = pattern(5000, 7);
        let mut cuts = [
            0usize, 1, 2, 3, 7, 8, 9, 15, 17, 100, 1001, 2048, 4095, 4999, 5000,
        ];
        for len in [
            0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1500, 4999, 5000,
        ] {
            let want = ref_fold(ref_sum(&data[..len]));
            assert_eq!(fold(checksum_add(0, &data[..len])), want, "len {len}");
            // Feed in pieces at every cut (odd and even starts).
            for stride in 1..=9 {
                let mut c = Csum::new();
                for chunk in data[..len].chunks(stride) {
                    c.add(chunk);
                }
                assert_eq!(c.fold(), want, "len {len} stride {stride}");
            }
            cuts.rotate_left(1);
            let mut c = Csum::new();
            let mut at = 0;
            for &cut in cuts.iter().filter(|&&c| c <= len) {
                if cut >= at {
                    c.add(&data[at..cut]);
                    at = cut;
                }
            }
            c.add(&data[at..len]);
            assert_eq!(c.fold(), want, "len {len} cuts");
        }
    }

    #[test]
    fn ipv4_header_checksum_vectors() {
        // A captured header (20.42.65.85 -> 192.168.0.21, TCP) and the
        // classic 192.168.0.1 -> 192.168.0.199 UDP example.
        let a = [
            0x45, 0x00, 0x01, 0xf9, 0x34, 0x64, 0x40, 0x00, 0x70, 0x06, 0xbe, 0x5e, 0x14, 0x2a,
            0x41, 0x55, 0xc0, 0xa8, 0x00, 0x15,
        ];
        let b = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&a), 0xbe5e);
        assert_eq!(ipv4_header_checksum(&b), 0xb861);
        assert_eq!(ref_fold(ref_sum(&a)), 0xffff);
    }

    /// Ethernet + IPv4 (20 bytes) around an L4 segment.
    fn wrap_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut b = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        let tot = (20 + l4.len()) as u16;
        b.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        b[16..18].copy_from_slice(&tot.to_be_bytes());
        b.extend_from_slice(&src);
        b.extend_from_slice(&dst);
        b.extend_from_slice(l4);
        b
    }

    /// Complete the checksum of `pkt` (after setting the field to `field`
    /// and the state to `state`), in a frame split at `split`, and return
    /// the stored checksum.
    fn completed(pkt: &[u8], at: usize, field: u16, state: Checksum, split: usize) -> u16 {
        let (_ram, mut pool) = pool(4);
        let mut b = pkt.to_vec();
        b[at..at + 2].copy_from_slice(&field.to_be_bytes());
        let sizes: Vec<usize> = [split, b.len() - split]
            .into_iter()
            .filter(|&n| n > 0)
            .collect();
        let mut f = frame_of(&mut pool, &b, &sizes, split as u64);
        f.csum = state;
        complete_checksum(&pool, &mut f).unwrap();
        assert_eq!(f.csum, Checksum::Validated);
        let out = f.to_vec(&pool);
        // Nothing but the field changed.
        assert_eq!(out[..at], b[..at]);
        assert_eq!(out[at + 2..], b[at + 2..]);
        f.free(&mut pool);
        assert_eq!(pool.available(), 4);
        rbe16(&out, at)
    }

    #[test]
    fn known_tcp_and_udp_checksums() {
        // TCP and UDP segments with known-good checksums (smoltcp's wire
        // test vectors, 192.168.1.1 -> 192.168.1.2).
        let tcp = [
            0xbf, 0x00, 0x00, 0x50, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x50, 0x35,
            0x01, 0x23, 0x20, 0xbe, 0x02, 0x01, 0xaa, 0x00, 0x00, 0xff,
        ];
        let udp = [
            0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x4d, 0xaa, 0x00, 0x00, 0xff,
        ];
        let (s, d) = ([192, 168, 1, 1], [192, 168, 1, 2]);
        let t = wrap_v4(s, d, 6, &tcp);
        let u = wrap_v4(s, d, 17, &udp);
        let ht = parse_bytes(&t).unwrap();
        let hu = parse_bytes(&u).unwrap();
        let pt = fold(pseudo_header_sum(&t, &ht, ht.l4_len()).unwrap());
        let pu = fold(pseudo_header_sum(&u, &hu, hu.l4_len()).unwrap());
        for split in [1, 13, 14, 35, 49, 50, 51, t.len() - 1, t.len()] {
            assert_eq!(completed(&t, 50, pt, Checksum::Partial, split), 0x20be);
            assert_eq!(
                completed(&t, 50, 0xdead, Checksum::Unverified, split),
                0x20be
            );
            let split = split.min(u.len());
            assert_eq!(completed(&u, 40, pu, Checksum::Partial, split), 0x124d);
            assert_eq!(completed(&u, 40, 0, Checksum::Validated, split), 0x124d);
        }
    }

    #[test]
    fn captured_linux_syn_carries_the_pseudo_header_sum() {
        // A Linux SYN (172.17.0.1 -> 172.17.0.2:8080) captured on a veth
        // with checksum offload: the TCP field holds the pseudo-header sum
        // (csum_blank), exactly what `pseudo_header_sum` gives.
        let ip = [
            0x45, 0x00, 0x00, 0x3c, 0xe0, 0x92, 0x40, 0x00, 0x40, 0x06, 0x02, 0x04, 0xac, 0x11,
            0x00, 0x01, 0xac, 0x11, 0x00, 0x02, 0xea, 0x22, 0x1f, 0x90, 0x9e, 0x9c, 0x61, 0xff,
            0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0x72, 0x10, 0x58, 0x54, 0x00, 0x00, 0x02, 0x04,
            0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0xd3, 0xeb, 0x39, 0xc4, 0x00, 0x00, 0x00, 0x00,
            0x01, 0x03, 0x03, 0x07,
        ];
        let mut pkt = vec![
            0x02, 0x42, 0xac, 0x11, 0, 2, 0x02, 0x42, 0x3b, 0, 0, 1, 0x08, 0,
        ];
        pkt.extend_from_slice(&ip);
        assert_eq!(ipv4_header_checksum(&ip[..20]), 0x0204);
        let h = parse_bytes(&pkt).unwrap();
        assert_eq!(
            (h.l4, h.l4_offset, h.payload_offset, h.l4_end),
            (L4::Tcp, 34, 74, 74)
        );
        assert_eq!(fold(pseudo_header_sum(&pkt, &h, 40).unwrap()), 0x5854);
        // The full checksum, per the reference.
        let mut z = ip[20..].to_vec();
        z[16..18].fill(0);
        let ph = [0xac, 0x11, 0, 1, 0xac, 0x11, 0, 2, 0, 6, 0, 40];
        let want = !ref_fold(ref_sum(&ph) + ref_sum(&z));
        assert_eq!(want, 0x65cb);
        for split in [1, 20, 33, 34, 51, 52, 53, 73] {
            assert_eq!(completed(&pkt, 50, 0x5854, Checksum::Partial, split), want);
        }
    }

    #[test]
    fn known_ipv6_tcp_checksum() {
        // A captured IPv6 SYN (2400:e037:9:26cb:4a04::58 -> 2001:4838:0:1b::201,
        // port 80) with its known-good checksum ca84.
        let ip = [
            0x60, 0x04, 0x88, 0xff, 0x00, 0x28, 0x06, 0x3f, 0x24, 0x0e, 0x03, 0x79, 0x26, 0xcb,
            0x4a, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x58, 0x20, 0x01, 0x48, 0x38,
            0x00, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0xe5, 0x60,
            0x00, 0x50, 0xab, 0x0d, 0xb0, 0x14, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfb, 0xb8,
            0xca, 0x84, 0x00, 0x00, 0x02, 0x04, 0x05, 0x98, 0x04, 0x02, 0x08, 0x0a, 0xfc, 0xcc,
            0x41, 0x3b, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
        ];
        let mut pkt = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
        pkt.extend_from_slice(&ip);
        let h = parse_bytes(&pkt).unwrap();
        assert_eq!(
            (h.l3, h.l4, h.l4_offset, h.l4_len()),
            (L3::V6, L4::Tcp, 54, 40)
        );
        let ps = fold(pseudo_header_sum(&pkt, &h, 40).unwrap());
        for split in [1, 14, 22, 53, 54, 70, 71, 93] {
            assert_eq!(completed(&pkt, 70, ps, Checksum::Partial, split), 0xca84);
            assert_eq!(completed(&pkt, 70, 0, Checksum::Unverified, split), 0xca84);
        }
    }

    #[test]
    fn udp_zero_checksum_is_sent_as_ffff() {
        for v6 in [false, true] {
            // Choose the last two payload bytes so that the sum is ffff.
            let mut payload = pattern(33, 3);
            payload.extend_from_slice(&[0, 0]);
            let p = build(&Spec {
                v6,
                proto: 17,
                payload: &payload,
                ..Spec::default()
            });
            let mut b = p.b.clone();
            b[p.l4 + 6..p.l4 + 8].fill(0);
            let s = ref_fold(ref_sum(&p.pseudo(p.end - p.l4)) + ref_sum(&b[p.l4..p.end]));
            // payload starts at an even L4 offset and is 35 bytes: the last
            // two bytes are at odd offsets 8+33, so rotate the fix-up.
            let fix = (!s).rotate_left(8);
            b[p.end - 2..p.end].copy_from_slice(&fix.to_be_bytes());
            let s = ref_fold(ref_sum(&p.pseudo(p.end - p.l4)) + ref_sum(&b[p.l4..p.end]));
            assert_eq!(s, 0xffff, "the computed checksum is 0");
            assert_eq!(
                completed(&b, p.l4 + 6, 0x1234, Checksum::Partial, 20),
                0xffff
            );
        }
    }

    // --- parsing ------------------------------------------------------------

    /// Routing header type 0 with two addresses, one segment left.
    fn rh0() -> Vec<u8> {
        let mut v = vec![0, 4, 0, 1, 0, 0, 0, 0];
        v.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42,
        ]);
        v
    }
    const FINAL6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42,
    ];

    /// A varied set of valid packets.
    fn samples() -> Vec<Pkt> {
        let pay = pattern(301, 1);
        let hbh: &[u8] = &[0, 0, 1, 4, 0, 0, 0, 0];
        let dst: &[u8] = &[0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let rh = rh0();
        let lsrr: &[u8] = &[1, 131, 11, 4, 10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0];
        vec![
            build(&Spec {
                payload: &pay,
                ..Spec::default()
            }),
            build(&Spec {
                vlan: true,
                ip_opts: &[1, 1, 1, 0],
                tcp_opts: 12,
                payload: &pay,
                ..Spec::default()
            }),
            build(&Spec {
                proto: 17,
                payload: &pay[..7],
                ..Spec::default()
            }),
            build(&Spec {
                v6: true,
                ext: &[(0, hbh), (43, &rh), (60, dst)],
                tcp_opts: 40,
                payload: &pay,
                fdst: Some(&FINAL6),
                ..Spec::default()
            }),
            build(&Spec {
                v6: true,
                vlan: true,
                proto: 17,
                payload: &pay[..100],
                ..Spec::default()
            }),
            build(&Spec {
                ip_opts: lsrr,
                tcp_opts: 40,
                payload: &pay[..3],
                fdst: Some(&[10, 0, 0, 2]),
                ..Spec::default()
            }),
        ]
    }

    fn check_headers(p: &Pkt, h: &Headers) {
        assert_eq!(h.l3, if p.v6 { L3::V6 } else { L3::V4 });
        assert_eq!(h.l3_offset, p.l3);
        assert_eq!(h.l4.protocol(), p.proto);
        assert_eq!(h.l4_offset, p.l4);
        assert_eq!(h.payload_offset, p.pay);
        assert_eq!(h.l4_end, p.end);
        assert_eq!(p.b[h.pseudo_dst_offset..][..p.fdst.len()], p.fdst[..]);
    }

    #[test]
    fn parses_samples_in_any_layout() {
        for p in samples() {
            check_headers(&p, &parse_bytes(&p.b).unwrap());
            assert!(p.l4_ok(&p.b, p.end));
            let (_ram, mut pool) = pool(MAX_SEGMENTS);
            // Two segments, split anywhere.
            for split in 1..p.b.len() {
                let mut f = frame_of(&mut pool, &p.b, &[split, p.b.len() - split], 3);
                check_headers(&p, &parse_headers(&pool, &f).unwrap());
                // Break the checksum, complete it across the split.
                f.write(
                    &pool,
                    p.l4 + 6 + 10 * usize::from(p.proto == 6),
                    &[0x55, 0xaa],
                );
                f.csum = Checksum::Partial;
                complete_checksum(&pool, &mut f).unwrap();
                assert_eq!(f.to_vec(&pool), p.b, "split at {split}");
                f.free(&mut pool);
            }
            // Seventeen 1..3-byte segments, then the rest.
            let mut sizes: Vec<usize> = (0..17).map(|i| 1 + i % 3).collect();
            sizes.push(p.b.len() - sizes.iter().sum::<usize>());
            let f = frame_of(&mut pool, &p.b, &sizes, 9);
            assert_eq!(f.num_segments(), MAX_SEGMENTS);
            check_headers(&p, &parse_headers(&pool, &f).unwrap());
            f.free(&mut pool);
            assert_eq!(pool.available(), MAX_SEGMENTS);
        }
    }

    #[test]
    fn source_routes_use_the_final_destination() {
        let pay = pattern(50, 9);
        // IPv4 LSRR, route used up (pointer past the end): the header's
        // destination is final.
        let used: &[u8] = &[131, 7, 8, 10, 0, 0, 1, 0];
        let p = build(&Spec {
            ip_opts: used,
            payload: &pay,
            ..Spec::default()
        });
        check_headers(&p, &parse_bytes(&p.b).unwrap());
        // SSRR with two hops left: the last one is final.
        let ssrr: &[u8] = &[137, 11, 4, 10, 0, 0, 1, 10, 0, 0, 7, 0];
        let p = build(&Spec {
            ip_opts: ssrr,
            payload: &pay,
            fdst: Some(&[10, 0, 0, 7]),
            ..Spec::default()
        });
        check_headers(&p, &parse_bytes(&p.b).unwrap());
        // IPv6 type 2 (home address), type 4 (SRH), type 0 with no
        // segments left (header destination final).
        let mut t2 = vec![0, 2, 2, 1, 0, 0, 0, 0];
        t2.extend_from_slice(&FINAL6);
        let mut t4 = vec![0, 4, 4, 1, 1, 0, 0, 0];
        t4.extend_from_slice(&FINAL6);
        t4.extend_from_slice(&SRC6);
        let mut t0 = rh0();
        t0[3] = 0;
        for (rh, fdst) in [
            (&t2, Some(&FINAL6[..])),
            (&t4, Some(&FINAL6[..])),
            (&t0, None),
        ] {
            let p = build(&Spec {
                v6: true,
                ext: &[(43, rh)],
                payload: &pay,
                fdst,
                ..Spec::default()
            });
            check_headers(&p, &parse_bytes(&p.b).unwrap());
            let (_ram, mut pool) = pool(2);
            let mut f = frame_of(&mut pool, &p.b, &[p.b.len()], 0);
            f.write(&pool, p.l4 + 16, &[0, 0]);
            complete_checksum(&pool, &mut f).unwrap();
            assert_eq!(f.to_vec(&pool), p.b);
            f.free(&mut pool);
        }
    }

    #[test]
    fn link_padding_is_not_summed() {
        let p = build(&Spec {
            proto: 17,
            payload: &[1, 2, 3],
            ..Spec::default()
        });
        let mut b = p.b.clone();
        b.resize(60, 0xee);
        let h = parse_bytes(&b).unwrap();
        assert_eq!((h.l4_end, h.payload_len()), (p.end, 3));
        let (_ram, mut pool) = pool(1);
        b[p.l4 + 6..p.l4 + 8].fill(0);
        let mut f = frame_of(&mut pool, &b, &[60], 0);
        complete_checksum(&pool, &mut f).unwrap();
        let out = f.to_vec(&pool);
        assert_eq!(out[..p.end], p.b[..]);
        assert!(out[p.end..].iter().all(|&x| x == 0xee));
        f.free(&mut pool);
    }

    fn set(b: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = b.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        use OffloadError::*;
        let pay = pattern(40, 5);
        let t4 = build(&Spec {
            payload: &pay,
            ..Spec::default()
        });
        let u4 = build(&Spec {
            proto: 17,
            payload: &pay,
            ..Spec::default()
        });
        let short = build(&Spec {
            payload: &pay[..39],
            ..Spec::default()
        });
        let t6 = build(&Spec {
            v6: true,
            payload: &pay,
            ..Spec::default()
        });
        let (l3, l4) = (t4.l3, t4.l4);
        let v6opts = |ext: &[(u8, &[u8])]| {
            build(&Spec {
                v6: true,
                ext,
                payload: &pay,
                ..Spec::default()
            })
            .b
        };
        let v4opts = |opts: &[u8]| {
            build(&Spec {
                ip_opts: opts,
                payload: &pay,
                ..Spec::default()
            })
            .b
        };
        let z8: &[u8] = &[0; 8];
        let mut rh3 = rh0();
        rh3[2] = 3;
        let mut rh0odd = rh0();
        rh0odd[1] = 3;
        rh0odd.extend_from_slice(&[0; 8]);
        let mut rh2bad = rh0();
        rh2bad[2] = 2;
        let mut long = vec![0u8; 256];
        long[1] = 31;
        let cases: Vec<(&str, Vec<u8>, OffloadError)> = vec![
            ("empty", vec![], Truncated),
            ("short ethernet", t4.b[..13].to_vec(), Truncated),
            ("arp", set(&t4.b, 12, &[0x08, 0x06]), NotIp(0x0806)),
            (
                "double vlan",
                build(&Spec {
                    vlan: true,
                    ..Spec::default()
                })
                .b
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if i == 16 {
                        0x81
                    } else if i == 17 {
                        0
                    } else {
                        x
                    }
                })
                .collect(),
                NotIp(0x8100),
            ),
            ("ip version", set(&t4.b, l3, &[0x55]), BadIpHeader),
            ("ihl 4", set(&t4.b, l3, &[0x44]), BadIpHeader),
            ("total < ihl", set(&t4.b, l3 + 2, &[0, 19]), BadIpHeader),
            (
                "total > frame",
                set(&t4.b, l3 + 2, &[0x0f, 0xff]),
                Truncated,
            ),
            ("more fragments", set(&t4.b, l3 + 6, &[0x20, 0]), Fragment),
            ("fragment offset", set(&t4.b, l3 + 6, &[0x40, 1]), Fragment),
            ("option len 1", v4opts(&[7, 1, 0, 0]), BadIpHeader),
            ("option past end", v4opts(&[7, 5, 0, 0]), BadIpHeader),
            ("option len missing", v4opts(&[1, 1, 1, 7]), BadIpHeader),
            ("lsrr len 4", v4opts(&[131, 4, 4, 0]), BadIpHeader),
            (
                "lsrr ptr 3",
                v4opts(&[131, 7, 3, 1, 2, 3, 4, 0]),
                BadIpHeader,
            ),
            (
                "two lsrr",
                v4opts(&[131, 3, 4, 137, 7, 4, 1, 2, 3, 4, 0, 0]),
                BadIpHeader,
            ),
            ("tcp doff 4", set(&t4.b, l4 + 12, &[0x40]), BadTcpHeader),
            (
                "tcp doff beyond ip",
                set(&short.b, l4 + 12, &[0xf0]),
                Truncated,
            ),
            ("udp len 7", set(&u4.b, l4 + 4, &[0, 7]), BadUdpHeader),
            ("udp len > ip", set(&u4.b, l4 + 4, &[0, 49]), BadUdpHeader),
            ("ip6 version", set(&t6.b, l3, &[0x40]), BadIpHeader),
            ("ip6 plen > frame", set(&t6.b, l3 + 4, &[1, 0]), Truncated),
            ("ip6 fragment", v6opts(&[(44, z8)]), Fragment),
            ("ip6 ah", v6opts(&[(51, z8)]), UnsupportedExtHeader(51)),
            (
                "ip6 hip",
                v6opts(&[(60, z8), (139, z8)]),
                UnsupportedExtHeader(139),
            ),
            ("hbh not first", v6opts(&[(60, z8), (0, z8)]), BadIpHeader),
            (
                "two routing",
                v6opts(&[(43, &rh0()), (43, &rh0())]),
                BadIpHeader,
            ),
            (
                "routing type 3",
                v6opts(&[(43, &rh3)]),
                UnsupportedRouting(3),
            ),
            ("routing type 0 odd", v6opts(&[(43, &rh0odd)]), BadIpHeader),
            ("routing type 2 long", v6opts(&[(43, &rh2bad)]), BadIpHeader),
            (
                "ext past ip",
                set(&v6opts(&[(60, z8)]), l3 + 41, &[200]),
                Truncated,
            ),
            ("ext too long", v6opts(&[(60, &long)]), HeaderTooLong),
        ];
        let (_ram, mut pool) = pool(2);
        for (what, b, want) in cases {
            assert_eq!(parse_bytes(&b), Err(want), "{what}");
            if b.is_empty() {
                continue;
            }
            let mut f = frame_of(&mut pool, &b, &[b.len()], 0);
            assert_eq!(parse_headers(&pool, &f), Err(want), "{what}");
            assert_eq!(complete_checksum(&pool, &mut f), Err(want), "{what}");
            assert_eq!(f.csum, Checksum::Unverified);
            assert_eq!(f.to_vec(&pool), b, "{what}: untouched");
            f.gso = Some(Gso {
                kind: if b[12] == 0x86 {
                    GsoType::TcpV6
                } else {
                    GsoType::TcpV4
                },
                mss: 100,
            });
            assert_eq!(Segmenter::new(&pool, &f, false).err(), Some(want), "{what}");
            f.free(&mut pool);
        }
        assert_eq!(pool.available(), 2);
        let mut s = alloc::string::String::new();
        for e in [
            Truncated,
            NotIp(1),
            BadIpHeader,
            UnsupportedExtHeader(51),
            UnsupportedRouting(3),
            Fragment,
            NotTcpUdp(1),
            BadTcpHeader,
            BadUdpHeader,
            HeaderTooLong,
            NotGso,
            MssZero,
            GsoMismatch,
            GsoNotTcp(17),
            PoolExhausted,
            Frame(FrameError::TooLong),
        ] {
            use core::fmt::Write;
            s.clear();
            write!(s, "{e}").unwrap();
            assert!(!s.is_empty());
        }
    }

    #[test]
    fn non_tcp_udp_and_gso_misuse() {
        use OffloadError::*;
        let (_ram, mut pool) = pool(2);
        let icmp = build(&Spec {
            proto: 1,
            payload: &[8, 0, 0, 0],
            ..Spec::default()
        });
        let h = parse_bytes(&icmp.b).unwrap();
        assert_eq!((h.l4, h.payload_offset, h.l4_end), (L4::Other(1), 34, 38));
        let esp = build(&Spec {
            v6: true,
            ext: &[(60, &[0; 8])],
            proto: 50,
            payload: &[0; 16],
            ..Spec::default()
        });
        assert_eq!(parse_bytes(&esp.b).unwrap().l4, L4::Other(50));
        for (b, p) in [(&icmp.b, 1), (&esp.b, 50)] {
            let mut f = frame_of(&mut pool, b, &[b.len()], 0);
            assert_eq!(complete_checksum(&pool, &mut f), Err(NotTcpUdp(p)));
            f.free(&mut pool);
        }
        let t = build(&Spec {
            payload: &[1; 10],
            ..Spec::default()
        });
        let u = build(&Spec {
            proto: 17,
            payload: &[1; 10],
            ..Spec::default()
        });
        let mut f = frame_of(&mut pool, &t.b, &[t.b.len()], 0);
        assert_eq!(Segmenter::new(&pool, &f, false).err(), Some(NotGso));
        let mut noop = |fr: crate::frame::Frame| panic!("unexpected frame {fr:?}");
        assert_eq!(
            segment_to_frames(&mut pool, &f, false, &mut noop),
            Err(NotGso)
        );
        let gso = |kind, mss| Some(Gso { kind, mss });
        f.gso = gso(GsoType::TcpV4, 0);
        assert_eq!(Segmenter::new(&pool, &f, false).err(), Some(MssZero));
        f.gso = gso(GsoType::TcpV6, 100);
        assert_eq!(Segmenter::new(&pool, &f, false).err(), Some(GsoMismatch));
        f.free(&mut pool);
        let mut f = frame_of(&mut pool, &u.b, &[u.b.len()], 0);
        f.gso = gso(GsoType::TcpV4, 100);
        assert_eq!(Segmenter::new(&pool, &f, true).err(), Some(GsoNotTcp(17)));
        f.free(&mut pool);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn truncation_at_every_byte_is_an_error() {
        let (_ram, mut pool) = pool(4);
        for p in samples() {
            let kind = if p.v6 { GsoType::TcpV6 } else { GsoType::TcpV4 };
            for cut in 0..p.b.len() {
                let b = &p.b[..cut];
                assert!(parse_bytes(b).is_err(), "cut {cut}");
                // As stored, and with the IP length made to agree with the
                // cut (headers cut short inside a consistent packet).
                let mut fixed = b.to_vec();
                if cut < p.pay && cut >= p.l3 + 6 {
                    let at = p.l3 + if p.v6 { 4 } else { 2 };
                    let n = cut - p.l3 - if p.v6 { 40.min(cut - p.l3) } else { 0 };
                    fixed[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
                    assert!(parse_bytes(&fixed).is_err(), "fixed cut {cut}");
                }
                for b in [b, &fixed[..]] {
                    let sizes: Vec<usize> = [cut / 2, cut - cut / 2]
                        .into_iter()
                        .filter(|&n| n > 0)
                        .collect();
                    let mut f = frame_of(&mut pool, b, &sizes, cut as u64);
                    assert!(parse_headers(&pool, &f).is_err());
                    assert!(complete_checksum(&pool, &mut f).is_err());
                    assert_eq!(f.to_vec(&pool), b);
                    f.gso = Some(Gso { kind, mss: 7 });
                    assert!(Segmenter::new(&pool, &f, false).is_err());
                    let mut none = |fr: Frame| panic!("unexpected frame {fr:?}");
                    assert!(segment_to_frames(&mut pool, &f, true, &mut none).is_err());
                    f.free(&mut pool);
                }
                assert_eq!(pool.available(), 4);
            }
        }
    }

    // --- segmentation ---------------------------------------------------------

    /// Check one segment (`seg` = header + payload) of packet `p`.
    fn verify_segment(p: &Pkt, seg: &[u8], i: usize, total: usize, mss: usize, partial: bool) {
        let (l3, l4, hl, o) = (p.l3, p.l4, p.pay, &p.b);
        let want_len = mss.min(p.end - p.pay - (i * mss).min(p.end - p.pay));
        assert_eq!(seg.len() - hl, want_len, "segment {i} length");
        assert_eq!(seg[..l3], o[..l3], "ethernet");
        if p.v6 {
            assert_eq!(usize::from(rbe16(seg, l3 + 4)), seg.len() - l3 - 40);
            assert_eq!(seg[l3..l3 + 4], o[l3..l3 + 4]);
            assert_eq!(seg[l3 + 6..l4], o[l3 + 6..l4], "ip6 header and ext headers");
        } else {
            assert_eq!(usize::from(rbe16(seg, l3 + 2)), seg.len() - l3);
            assert_eq!(rbe16(seg, l3 + 4), rbe16(o, l3 + 4).wrapping_add(i as u16));
            assert_eq!(ref_fold(ref_sum(&seg[l3..l4])), 0xffff, "ip checksum");
            assert_eq!(seg[l3..l3 + 2], o[l3..l3 + 2]);
            assert_eq!(seg[l3 + 6..l3 + 10], o[l3 + 6..l3 + 10]);
            assert_eq!(seg[l3 + 12..l4], o[l3 + 12..l4]);
        }
        assert_eq!(seg[l4..l4 + 4], o[l4..l4 + 4], "ports");
        let seq = rbe32(o, l4 + 4).wrapping_add((i * mss) as u32);
        assert_eq!(rbe32(seg, l4 + 4), seq, "seq of segment {i}");
        assert_eq!(seg[l4 + 8..l4 + 13], o[l4 + 8..l4 + 13]);
        let mut flags = o[l4 + 13];
        if i + 1 < total {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        assert_eq!(seg[l4 + 13], flags, "flags of segment {i}/{total}");
        assert_eq!(seg[l4 + 14..l4 + 16], o[l4 + 14..l4 + 16]);
        assert_eq!(seg[l4 + 18..hl], o[l4 + 18..hl], "tcp options");
        if partial {
            let ps = ref_fold(ref_sum(&p.pseudo(seg.len() - l4)));
            assert_eq!(rbe16(seg, l4 + 16), ps, "pseudo-header sum");
        } else {
            assert!(p.l4_ok(seg, seg.len()), "tcp checksum of segment {i}");
        }
    }

    /// Segment `p` (in a frame laid out as `sizes`) both ways, with and
    /// without `partial`, and check everything.
    fn check_gso(p: &Pkt, sizes: &[usize], seed: u64, mss: u16, flags_note: &str) {
        let mssz = usize::from(mss);
        let plen = p.end - p.pay;
        let total = plen.div_ceil(mssz).max(1);
        let out_pages: usize = (0..total)
            .map(|i| (p.pay + mssz.min(plen - (i * mssz).min(plen))).div_ceil(PAGE_SIZE))
            .sum();
        let frames_path = out_pages <= 1500;
        let cap = MAX_SEGMENTS + if frames_path { out_pages } else { 0 };
        let (_ram, mut pool) = pool(cap);
        let mut f = frame_of(&mut pool, &p.b, sizes, seed);
        f.gso = Some(Gso {
            kind: if p.v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
            mss,
        });
        f.csum = Checksum::Partial;
        let mut full_segments = Vec::new();
        for partial in [false, true] {
            let mut s = Segmenter::new(&pool, &f, partial).unwrap();
            assert_eq!(s.segments_total(), total, "{flags_note}");
            let mut hdr = [0u8; MAX_HEADER_LEN];
            let mut payload = Vec::with_capacity(plen);
            let mut segs = Vec::new();
            let mut i = 0;
            while let Some(plan) = s.next(&pool, &f, &mut hdr) {
                assert_eq!(plan.header_len, p.pay);
                let mut seg = hdr[..plan.header_len].to_vec();
                let mut n = 0;
                for r in plan.ranges() {
                    assert!(r.len > 0);
                    let b = f.segment(usize::from(r.segment)).unwrap().bytes(&pool);
                    let (o, l) = (usize::from(r.offset), usize::from(r.len));
                    assert!(o + l <= b.len());
                    seg.extend_from_slice(&b[o..o + l]);
                    n += l;
                }
                assert_eq!(n, plan.payload_len);
                assert!(plan.nranges <= MAX_SEGMENTS);
                payload.extend_from_slice(&seg[p.pay..]);
                verify_segment(p, &seg, i, total, mssz, partial);
                segs.push(seg);
                i += 1;
            }
            assert_eq!(i, total);
            assert!(s.next(&pool, &f, &mut hdr).is_none());
            assert_eq!(payload, p.b[p.pay..p.end], "reassembled payload");
            if !partial {
                full_segments = segs.clone();
            }
            if !frames_path {
                continue;
            }
            let mut frames = Vec::new();
            let n = segment_to_frames(&mut pool, &f, partial, &mut |fr| frames.push(fr)).unwrap();
            assert_eq!(n, total);
            assert_eq!(frames.len(), total);
            for (k, mut fr) in frames.into_iter().enumerate() {
                assert!(fr.gso.is_none());
                let want = if partial {
                    Checksum::Partial
                } else {
                    Checksum::Validated
                };
                assert_eq!(fr.csum, want);
                assert_eq!(fr.to_vec(&pool), segs[k], "frame {k}");
                if partial {
                    complete_checksum(&pool, &mut fr).unwrap();
                    let done = fr.to_vec(&pool);
                    verify_segment(p, &done, k, total, mssz, false);
                    assert_eq!(done, full_segments[k]);
                }
                fr.free(&mut pool);
            }
        }
        f.free(&mut pool);
        assert_eq!(pool.available(), cap, "no page leaked");
    }

    fn big(v6: bool, tcp_opts: usize, flags: u8, total_len: usize) -> Pkt {
        let hl = 14 + if v6 { 40 } else { 20 } + 20 + tcp_opts;
        let payload = pattern(total_len - hl, 77);
        build(&Spec {
            v6,
            tcp_opts,
            payload: &payload,
            flags,
            ..Spec::default()
        })
    }

    #[test]
    fn segments_64k_frames() {
        for v6 in [false, true] {
            // ACK|PSH|FIN|CWR: PSH/FIN on the last only, CWR on the first.
            let p = big(v6, 12, 0x99, MAX_FRAME_LEN);
            assert_eq!(p.b.len(), 65535);
            assert!(p.l4_ok(&p.b, p.end));
            let len = p.b.len();
            let layouts = [
                layout(len, &[], PAGE_SIZE),
                layout(len, &[1, 13], PAGE_SIZE),
                layout(len, &[70], 3900),
                layout(len, &[], 3641),
                layout(len, &[99, 1], 3999),
            ];
            for (li, sizes) in layouts.iter().enumerate() {
                assert!(sizes.len() <= MAX_SEGMENTS && sizes.iter().all(|&s| s <= PAGE_SIZE));
                for mss in [1448, 1447, 1449, 536, 1, 7, 4095, 9000, 65535] {
                    check_gso(&p, sizes, li as u64 * 31 + 5, mss, "64k");
                }
            }
        }
    }

    #[test]
    fn small_gso_frames_give_one_fixed_segment() {
        for v6 in [false, true] {
            for plen in [0usize, 1, 100, 1448] {
                let pay = pattern(plen, 4);
                let p = build(&Spec {
                    v6,
                    payload: &pay,
                    flags: 0x99,
                    ..Spec::default()
                });
                let sizes = layout(p.b.len(), &[3, 50], 64);
                check_gso(&p, &sizes, 1, 1448, "small");
                let (_ram, mut pool) = pool(MAX_SEGMENTS);
                let mut f = frame_of(&mut pool, &p.b, &sizes, 2);
                f.gso = Some(Gso {
                    kind: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
                    mss: 1448,
                });
                let mut s = Segmenter::new(&pool, &f, false).unwrap();
                assert_eq!(s.segments_total(), 1);
                let mut hdr = [0; MAX_HEADER_LEN];
                let plan = s.next(&pool, &f, &mut hdr).unwrap();
                // The one segment keeps FIN, PSH and CWR.
                assert_eq!(hdr[p.l4 + 13], 0x99);
                assert_eq!(plan.payload_len, plen);
                f.free(&mut pool);
            }
        }
    }

    #[test]
    fn gso_with_link_padding_drops_the_padding() {
        let p = build(&Spec {
            payload: &[7; 3],
            ..Spec::default()
        });
        let mut b = p.b.clone();
        b.resize(64, 0xee);
        let (_ram, mut pool) = pool(4);
        let mut f = frame_of(&mut pool, &b, &[64], 0);
        f.gso = Some(Gso {
            kind: GsoType::TcpV4,
            mss: 2,
        });
        let mut frames = Vec::new();
        assert_eq!(
            segment_to_frames(&mut pool, &f, false, &mut |fr| frames.push(fr)),
            Ok(2)
        );
        let lens: Vec<usize> = frames.iter().map(Frame::len).collect();
        assert_eq!(lens, [p.pay + 2, p.pay + 1]);
        for fr in frames {
            fr.free(&mut pool);
        }
        f.free(&mut pool);
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn pool_exhaustion_keeps_delivered_frames_and_leaks_nothing() {
        let p = big(false, 0, 0x10, 20000);
        let sizes = layout(p.b.len(), &[], PAGE_SIZE);
        for spare in 0..10 {
            let cap = sizes.len() + spare;
            let (_ram, mut pool) = pool(cap);
            let mut f = frame_of(&mut pool, &p.b, &sizes, 0);
            f.gso = Some(Gso {
                kind: GsoType::TcpV4,
                mss: 5000,
            });
            let mut frames = Vec::new();
            let r = segment_to_frames(&mut pool, &f, false, &mut |fr| frames.push(fr));
            // 20000 - 54 bytes of payload: four segments of two pages.
            if spare >= 8 {
                assert_eq!(r, Ok(4));
            } else {
                assert_eq!(r, Err(OffloadError::PoolExhausted));
                assert_eq!(frames.len(), spare / 2);
            }
            for (i, fr) in frames.into_iter().enumerate() {
                verify_segment(&p, &fr.to_vec(&pool), i, 4, 5000, false);
                fr.free(&mut pool);
            }
            f.free(&mut pool);
            assert_eq!(pool.available(), cap);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_segmentation(
            v6 in any::<bool>(),
            vlan in any::<bool>(),
            tcp_opts in 0usize..=10,
            payload_len in prop_oneof![0usize..=3000, 0usize..=65400],
            mss in prop_oneof![1u16..=64, 65u16..=2000, 2001u16..=u16::MAX],
            heads in proptest::collection::vec(1usize..=300, 0..8),
            chunk in 1usize..=PAGE_SIZE,
            seed in any::<u64>(),
            flags in any::<u8>(),
            seq in any::<u32>(),
            id in any::<u16>(),
        ) {
            let hl = 14 + 4 * usize::from(vlan) + if v6 { 40 } else { 20 } + 20 + 4 * tcp_opts;
            let payload = pattern(payload_len.min(MAX_FRAME_LEN - hl), seed as u32);
            let p = build(&Spec {
                v6,
                vlan,
                tcp_opts: 4 * tcp_opts,
                payload: &payload,
                flags,
                seq,
                id,
                ..Spec::default()
            });
            let sizes = layout(p.b.len(), &heads, chunk);
            check_gso(&p, &sizes, seed, mss, "prop");
        }

        #[test]
        fn prop_checksum_chunks(data in proptest::collection::vec(any::<u8>(), 0..3000),
                                cuts in proptest::collection::vec(0usize..3000, 0..20),
                                start in any::<u64>()) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
            cuts.sort_unstable();
            let mut c = Csum::with_sum(start);
            let mut at = 0;
            for cut in cuts {
                c.add(&data[at..cut]);
                at = cut;
            }
            c.add(&data[at..]);
            let want = ref_fold(ref_fold(start) as u64 + ref_sum(&data));
            // 0 and ffff are the same one's-complement number.
            prop_assert_eq!(c.fold() % 0xffff, want % 0xffff);
        }
    }
}
