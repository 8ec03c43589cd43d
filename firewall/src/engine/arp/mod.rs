//! ARP for Ethernet/IPv4 (RFC 826): a checked view, a builder, the
//! client-side responder and the uplink gateway resolver.
//!
//! Qubes links are point-to-point: toward a client the firewall answers
//! every request with its own MAC except for the client's own address
//! (answering that would make the client see an address conflict) and
//! except gratuitous ARP and probes (RFC 5227), which announce rather than
//! ask. Toward the uplink the firewall needs one MAC, the gateway's:
//! [`ArpResolver`] learns it, refreshes it, and falls back to the MAC every
//! Qubes backend vif has ([`QUBES_FALLBACK_MAC`]) when nobody answers.

use core::net::Ipv4Addr;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// The MAC of every Qubes backend vif (sys-net's side of the uplink).
pub const QUBES_FALLBACK_MAC: Mac = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
/// The Ethernet broadcast address.
pub const BROADCAST: Mac = [0xff; 6];
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Length of an Ethernet/IPv4 ARP packet (after the Ethernet header).
pub const ARP_LEN: usize = 28;
/// Length of a built ARP frame (Ethernet header + ARP, no padding).
pub const FRAME_LEN: usize = 14 + ARP_LEN;

/// Why a packet is not an Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpError {
    /// Shorter than its headers.
    Truncated,
    /// Ethertype not ARP.
    NotArp(u16),
    /// Hardware type not Ethernet, protocol not IPv4, or wrong lengths.
    Unsupported,
    /// Output buffer shorter than [`FRAME_LEN`].
    BufferTooSmall,
}

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// 1.
    Request,
    /// 2.
    Reply,
    /// Anything else.
    Unknown(u16),
}

/// A zero-copy view of an Ethernet/IPv4 ARP packet (the 28 bytes after
/// the Ethernet header). Invariant: at least [`ARP_LEN`] bytes, hardware
/// type 1 / length 6, protocol 0x0800 / length 4.
#[derive(Clone, Copy, Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Check and wrap.
    pub fn new_checked(buf: T) -> Result<ArpPacket<T>, ArpError> {
        let b = buf.as_ref();
        if b.len() < ARP_LEN {
            return Err(ArpError::Truncated);
        }
        if b[0..2] != [0, 1] || b[2..4] != [8, 0] || b[4] != 6 || b[5] != 4 {
            return Err(ArpError::Unsupported);
        }
        Ok(ArpPacket { buf })
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    /// The operation.
    pub fn operation(&self) -> Operation {
        match u16::from_be_bytes([self.b()[6], self.b()[7]]) {
            1 => Operation::Request,
            2 => Operation::Reply,
            o => Operation::Unknown(o),
        }
    }
    fn mac(&self, at: usize) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.b()[at..at + 6]);
        m
    }
    fn ip(&self, at: usize) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }
    /// Sender hardware address.
    pub fn sender_mac(&self) -> Mac {
        self.mac(8)
    }
    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip(14)
    }
    /// Target hardware address.
    pub fn target_mac(&self) -> Mac {
        self.mac(18)
    }
    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip(24)
    }
    /// The fields.
    pub fn repr(&self) -> ArpRepr {
        ArpRepr {
            operation: self.operation(),
            sender_mac: self.sender_mac(),
            sender_ip: self.sender_ip(),
            target_mac: self.target_mac(),
            target_ip: self.target_ip(),
        }
    }
}

/// A received Ethernet frame's ARP packet, with the frame's source MAC.
pub fn parse_frame(frame: &[u8]) -> Result<(Mac, ArpRepr), ArpError> {
    if frame.len() < 14 {
        return Err(ArpError::Truncated);
    }
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    if et != ETHERTYPE_ARP {
        return Err(ArpError::NotArp(et));
    }
    let p = ArpPacket::new_checked(&frame[14..])?;
    let mut src = [0; 6];
    src.copy_from_slice(&frame[6..12]);
    Ok((src, p.repr()))
}

/// The fields of an ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: Operation,
    /// Sender MAC.
    pub sender_mac: Mac,
    /// Sender IP.
    pub sender_ip: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_mac: Mac,
    /// Target IP.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// A request from `mac`/`ip` for `target`.
    pub fn request(mac: Mac, ip: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: Operation::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip: target,
        }
    }
    /// The reply to request `req`: `mac` has `req.target_ip`.
    pub fn reply_to(req: &ArpRepr, mac: Mac) -> ArpRepr {
        ArpRepr {
            operation: Operation::Reply,
            sender_mac: mac,
            sender_ip: req.target_ip,
            target_mac: req.sender_mac,
            target_ip: req.sender_ip,
        }
    }
    /// Write an Ethernet frame (source `sender_mac`, destination
    /// `eth_dst`) carrying this packet; returns [`FRAME_LEN`].
    pub fn emit(&self, eth_dst: Mac, out: &mut [u8]) -> Result<usize, ArpError> {
        let out = out.get_mut(..FRAME_LEN).ok_or(ArpError::BufferTooSmall)?;
        out[0..6].copy_from_slice(&eth_dst);
        out[6..12].copy_from_slice(&self.sender_mac);
        out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        out[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        let op = match self.operation {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(o) => o,
        };
        out[20..22].copy_from_slice(&u16::to_be_bytes(op));
        out[22..28].copy_from_slice(&self.sender_mac);
        out[28..32].copy_from_slice(&self.sender_ip.octets());
        out[32..38].copy_from_slice(&self.target_mac);
        out[38..42].copy_from_slice(&self.target_ip.octets());
        Ok(FRAME_LEN)
    }
}

/// An ARP frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Ethernet destination.
    pub eth_dst: Mac,
    /// The packet (its sender MAC is the Ethernet source).
    pub arp: ArpRepr,
}

impl Outgoing {
    /// Write the frame ([`ArpRepr::emit`]).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, ArpError> {
        self.arp.emit(self.eth_dst, out)
    }
}

/// What to do about an ARP frame from a client (see [`respond_client`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientArp {
    /// Send this reply to the client.
    Reply(Outgoing),
    /// A request whose sender (IP, ARP MAC or Ethernet MAC) is not the
    /// client's: drop it and count it.
    Spoofed(ArpRepr),
}

/// The client-side responder: `frame` came from the client whose
/// addresses are `client_ip`/`client_mac`; `our_mac` is the firewall's MAC
/// toward it. Answers requests for any address but the client's own;
/// `None` for replies, malformed packets, probes (sender 0.0.0.0),
/// gratuitous ARP (target == sender) and requests for the client's own IP.
pub fn respond_client(
    frame: &[u8],
    our_mac: Mac,
    client_ip: Ipv4Addr,
    client_mac: Mac,
) -> Option<ClientArp> {
    let (eth_src, req) = parse_frame(frame).ok()?;
    if req.operation != Operation::Request {
        return None;
    }
    let ip_ok = req.sender_ip == client_ip || req.sender_ip.is_unspecified();
    if !ip_ok || req.sender_mac != client_mac || eth_src != client_mac {
        return Some(ClientArp::Spoofed(req));
    }
    if req.sender_ip.is_unspecified()
        || req.target_ip == req.sender_ip
        || req.target_ip == client_ip
    {
        return None;
    }
    Some(ClientArp::Reply(Outgoing {
        eth_dst: req.sender_mac,
        arp: ArpRepr::reply_to(&req, our_mac),
    }))
}

/// Requests sent without an answer before [`ArpResolver::gateway_mac`]
/// falls back to [`QUBES_FALLBACK_MAC`].
pub const FALLBACK_AFTER: u32 = 3;
/// Retry interval for the first [`FALLBACK_AFTER`] requests.
pub const RETRY_NS: u64 = 1_000_000_000;
/// Longest retry interval (doubling from [`RETRY_NS`] after the fallback).
pub const MAX_RETRY_NS: u64 = 32_000_000_000;
/// How long a learned MAC counts as fresh.
pub const ENTRY_LIFETIME_NS: u64 = 60_000_000_000;
/// When refreshing starts (unicast requests to the known MAC).
pub const REFRESH_AFTER_NS: u64 = 45_000_000_000;

/// The uplink gateway's MAC, sans-IO.
///
/// Policy: while no MAC was ever learned, requests are broadcast every
/// second; after [`FALLBACK_AFTER`] unanswered ones `gateway_mac` returns
/// [`QUBES_FALLBACK_MAC`] (the MAC Qubes gives sys-net's vif, which
/// accepts frames sent to it whatever ARP says, as qubes-mirage-firewall
/// does) and requests continue with a doubling interval up to
/// [`MAX_RETRY_NS`], so a late answer is still learned. A learned MAC is
/// refreshed from [`REFRESH_AFTER_NS`] with unicast requests (broadcast
/// once it is older than [`ENTRY_LIFETIME_NS`]); it stays in use until a
/// different answer or [`ArpResolver::set_gateway`], because a stale MAC
/// is the best guess there is. Only packets whose sender IP is the
/// gateway teach (replies, requests, gratuitous ARP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpResolver {
    our_ip: Ipv4Addr,
    our_mac: Mac,
    gateway_ip: Ipv4Addr,
    mac: Option<Mac>,
    learned_ns: u64,
    /// Requests sent since the last answer.
    attempts: u32,
    /// When the next request may go (0: at once).
    next_tx_ns: u64,
}

impl ArpResolver {
    /// Start resolving `gateway_ip` (0.0.0.0: no uplink, idle).
    pub fn new(our_ip: Ipv4Addr, our_mac: Mac, gateway_ip: Ipv4Addr) -> ArpResolver {
        ArpResolver {
            our_ip,
            our_mac,
            gateway_ip,
            mac: None,
            learned_ns: 0,
            attempts: 0,
            next_tx_ns: 0,
        }
    }

    /// The uplink configuration changed (sys-net restarted or replaced):
    /// forget the MAC and resolve again at once.
    pub fn set_gateway(&mut self, gateway_ip: Ipv4Addr) {
        *self = ArpResolver::new(self.our_ip, self.our_mac, gateway_ip);
    }

    /// The MAC to send uplink frames to (see the type's policy), `None`
    /// while the first requests are still unanswered.
    pub fn gateway_mac(&self) -> Option<Mac> {
        self.mac
            .or((self.attempts >= FALLBACK_AFTER).then_some(QUBES_FALLBACK_MAC))
    }

    fn idle(&self) -> bool {
        self.gateway_ip.is_unspecified()
    }

    /// When [`poll`](Self::poll) next has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.idle() {
            return None;
        }
        match self.mac {
            Some(_) if self.attempts == 0 => Some(self.learned_ns.saturating_add(REFRESH_AFTER_NS)),
            _ => Some(self.next_tx_ns),
        }
    }

    fn interval(attempts: u32) -> u64 {
        if attempts < FALLBACK_AFTER {
            RETRY_NS
        } else {
            let shift = (attempts - FALLBACK_AFTER + 1).min(6);
            (RETRY_NS << shift).min(MAX_RETRY_NS)
        }
    }

    /// A request to send now, if one is due.
    pub fn poll(&mut self, now_ns: u64) -> Option<Outgoing> {
        let due = self.next_deadline()?;
        if now_ns < due {
            return None;
        }
        let age = now_ns.saturating_sub(self.learned_ns);
        let eth_dst = match self.mac {
            Some(m) if age < ENTRY_LIFETIME_NS => m,
            _ => BROADCAST,
        };
        self.attempts = self.attempts.saturating_add(1);
        self.next_tx_ns = now_ns.saturating_add(Self::interval(self.attempts));
        Some(Outgoing {
            eth_dst,
            arp: ArpRepr::request(self.our_mac, self.our_ip, self.gateway_ip),
        })
    }

    /// A received uplink ARP frame: learn the gateway's MAC from it, and
    /// return the reply if it asks for our IP.
    pub fn handle(&mut self, frame: &[u8], now_ns: u64) -> Option<Outgoing> {
        let (_, p) = parse_frame(frame).ok()?;
        let unicast = p.sender_mac[0] & 1 == 0 && p.sender_mac != [0; 6];
        if !self.idle() && p.sender_ip == self.gateway_ip && unicast {
            self.mac = Some(p.sender_mac);
            self.learned_ns = now_ns;
            self.attempts = 0;
        }
        let asks_us = p.operation == Operation::Request
            && p.target_ip == self.our_ip
            && p.sender_ip != p.target_ip
            && p.sender_mac != self.our_mac
            && unicast;
        asks_us.then(|| Outgoing {
            eth_dst: p.sender_mac,
            arp: ArpRepr::reply_to(&p, self.our_mac),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FW: Mac = QUBES_FALLBACK_MAC;
    const CLIENT: Mac = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x01];
    const GW: Mac = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x99];
    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn frame(r: &ArpRepr, dst: Mac) -> [u8; FRAME_LEN] {
        let mut b = [0; FRAME_LEN];
        assert_eq!(r.emit(dst, &mut b), Ok(FRAME_LEN));
        b
    }

    #[test]
    fn view_round_trip_and_errors() {
        let r = ArpRepr::request(CLIENT, ip("10.137.0.5"), ip("10.137.0.1"));
        let f = frame(&r, BROADCAST);
        assert_eq!(parse_frame(&f), Ok((CLIENT, r)));
        let p = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.target_ip(), ip("10.137.0.1"));
        assert_eq!(
            ArpPacket::new_checked(&f[14..41]).err(),
            Some(ArpError::Truncated)
        );
        let mut bad = f;
        bad[18] = 16;
        assert_eq!(parse_frame(&bad), Err(ArpError::Unsupported));
        let mut bad = f;
        bad[13] = 0;
        assert_eq!(parse_frame(&bad), Err(ArpError::NotArp(0x0800)));
        assert_eq!(parse_frame(&f[..10]), Err(ArpError::Truncated));
        assert_eq!(
            r.emit(BROADCAST, &mut [0; 41]),
            Err(ArpError::BufferTooSmall)
        );
    }

    #[test]
    fn client_responder() {
        let me = ip("10.137.0.5");
        let ask = |sender_mac, sender_ip, target| {
            let r = ArpRepr::request(sender_mac, sender_ip, target);
            respond_client(&frame(&r, BROADCAST), FW, me, CLIENT)
        };
        // Any other address: answered with our MAC.
        for t in ["10.137.0.1", "10.139.1.1", "8.8.8.8"] {
            let Some(ClientArp::Reply(o)) = ask(CLIENT, me, ip(t)) else {
                panic!("no reply for {t}");
            };
            assert_eq!(o.eth_dst, CLIENT);
            assert_eq!(o.arp.operation, Operation::Reply);
            assert_eq!((o.arp.sender_mac, o.arp.sender_ip), (FW, ip(t)));
            assert_eq!((o.arp.target_mac, o.arp.target_ip), (CLIENT, me));
        }
        // Own address, probe, gratuitous: silence.
        assert_eq!(ask(CLIENT, me, me), None);
        assert_eq!(ask(CLIENT, Ipv4Addr::UNSPECIFIED, ip("10.137.0.1")), None);
        // Spoofed sender IP or MAC.
        assert!(matches!(
            ask(CLIENT, ip("10.137.0.6"), ip("10.137.0.1")),
            Some(ClientArp::Spoofed(_))
        ));
        assert!(matches!(
            ask(GW, me, ip("10.137.0.1")),
            Some(ClientArp::Spoofed(_))
        ));
        // Replies and junk.
        let reply = ArpRepr::reply_to(&ArpRepr::request(FW, ip("10.137.0.1"), me), CLIENT);
        assert_eq!(respond_client(&frame(&reply, FW), FW, me, CLIENT), None);
        assert_eq!(respond_client(&[0; 20], FW, me, CLIENT), None);
    }

    #[test]
    fn resolver_learns_from_reply_and_refreshes() {
        let (me, gw) = (ip("10.138.0.7"), ip("10.138.0.1"));
        let mut r = ArpResolver::new(me, FW, gw);
        assert_eq!(r.gateway_mac(), None);
        assert_eq!(r.next_deadline(), Some(0));
        let o = r.poll(5).unwrap();
        assert_eq!(o.eth_dst, BROADCAST);
        assert_eq!(o.arp, ArpRepr::request(FW, me, gw));
        assert_eq!(r.poll(6), None);
        assert_eq!(r.next_deadline(), Some(5 + S));
        let ans = ArpRepr::reply_to(&o.arp, GW);
        assert_eq!(r.handle(&frame(&ans, FW), 10), None);
        assert_eq!(r.gateway_mac(), Some(GW));
        assert_eq!(r.next_deadline(), Some(10 + REFRESH_AFTER_NS));
        assert_eq!(r.poll(10 + REFRESH_AFTER_NS - 1), None);
        let o = r.poll(10 + REFRESH_AFTER_NS).unwrap();
        assert_eq!(o.eth_dst, GW);
        // No answer: still GW, later broadcast once aged out.
        let mut t = 10 + REFRESH_AFTER_NS;
        let mut last = o;
        while t < 10 + ENTRY_LIFETIME_NS + MAX_RETRY_NS {
            t = r.next_deadline().unwrap();
            last = r.poll(t).unwrap();
        }
        assert_eq!(last.eth_dst, BROADCAST);
        assert_eq!(r.gateway_mac(), Some(GW));
    }

    #[test]
    fn resolver_falls_back_and_still_learns() {
        let (me, gw) = (ip("10.138.0.7"), ip("10.138.0.1"));
        let mut r = ArpResolver::new(me, FW, gw);
        let mut times = Vec::new();
        for _ in 0..8 {
            let t = r.next_deadline().unwrap();
            times.push(t);
            assert!(r.poll(t).is_some());
            if times.len() < FALLBACK_AFTER as usize {
                assert_eq!(r.gateway_mac(), None);
            }
        }
        assert_eq!(r.gateway_mac(), Some(QUBES_FALLBACK_MAC));
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [S, S, 2 * S, 4 * S, 8 * S, 16 * S, 32 * S]);
        // A request from the gateway teaches too.
        let req = ArpRepr::request(GW, gw, ip("10.138.0.99"));
        assert_eq!(r.handle(&frame(&req, BROADCAST), 100 * S), None);
        assert_eq!(r.gateway_mac(), Some(GW));
    }

    #[test]
    fn resolver_answers_for_our_ip_and_resets_on_gateway_change() {
        let (me, gw) = (ip("10.138.0.7"), ip("10.138.0.1"));
        let mut r = ArpResolver::new(me, FW, gw);
        let req = ArpRepr::request(GW, gw, me);
        let o = r.handle(&frame(&req, BROADCAST), 1).unwrap();
        assert_eq!(o.eth_dst, GW);
        assert_eq!(o.arp, ArpRepr::reply_to(&req, FW));
        // Someone else's address, or a stranger claiming the gateway's
        // IP with a multicast MAC: nothing learned or answered.
        let other = ArpRepr::request([1, 2, 3, 4, 5, 6], gw, ip("10.138.0.8"));
        assert_eq!(r.handle(&frame(&other, BROADCAST), 2), None);
        assert_eq!(r.gateway_mac(), Some(GW));
        r.set_gateway(ip("10.138.0.2"));
        assert_eq!(r.gateway_mac(), None);
        assert_eq!(r.poll(3).unwrap().arp.target_ip, ip("10.138.0.2"));
        r.set_gateway(Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.poll(10 * S), None);
    }
}
