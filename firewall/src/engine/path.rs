//! The per-frame data path: classify, check, track, translate, emit.
//!
//! One function per direction. Each reads the frame's first bytes once
//! into [`Hdr`], a stack buffer; all decisions are made on it; forwarded
//! frames get only their rewritten header bytes written back.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xen::frame::offload::{self, Headers, L3, L4};
use xen::frame::Frame;
use xen::memory::pool::PagePool;

use super::conntrack::{Dir, FlowKey};
use super::stats::Drop;
use super::{arp, csum, icmp, ndp, AddressMap, ClientId, Engine, Iface, Output};

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Largest generated packet (ICMP errors quote at most this much).
pub(crate) const GEN_MAX: usize = 1294;

/// The first bytes of a frame, read once.
pub(crate) struct Hdr {
    pub(crate) buf: [u8; offload::MAX_HEADER_LEN],
    pub(crate) n: usize,
}

impl Hdr {
    fn read(pool: &PagePool, frame: &Frame) -> Hdr {
        let mut h = Hdr {
            buf: [0; offload::MAX_HEADER_LEN],
            n: 0,
        };
        h.n = frame.read(pool, 0, &mut h.buf);
        h
    }
    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }
    fn mac(&self, at: usize) -> [u8; 6] {
        mac_at(&self.buf, at)
    }
}

/// The addresses and transport identifiers of an IP packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pkt {
    pub(crate) h: Headers,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) proto: u8,
    /// TCP/UDP source port; ICMP echo identifier.
    pub(crate) sport: u16,
    /// TCP/UDP destination port; ICMP echo identifier.
    pub(crate) dport: u16,
    /// ICMP type (ICMP and ICMPv6 only).
    pub(crate) icmp_type: Option<u8>,
    /// TCP flags (TCP only).
    pub(crate) tcp_flags: Option<u8>,
    /// TTL or hop limit.
    pub(crate) ttl: u8,
    /// IP packet length (header + payload) as its header says.
    pub(crate) ip_len: usize,
}

/// Whether an ICMP/ICMPv6 type is an echo request.
fn is_echo_request(proto: u8, ty: u8) -> bool {
    (proto == PROTO_ICMP && ty == 8) || (proto == PROTO_ICMPV6 && ty == 128)
}

/// Whether an ICMP/ICMPv6 type is an echo reply.
fn is_echo_reply(proto: u8, ty: u8) -> bool {
    (proto == PROTO_ICMP && ty == 0) || (proto == PROTO_ICMPV6 && ty == 129)
}

/// Whether an ICMP/ICMPv6 type is an error message (carries a quote).
fn is_icmp_error(proto: u8, ty: u8) -> bool {
    match proto {
        PROTO_ICMP => matches!(ty, 3 | 4 | 5 | 11 | 12),
        PROTO_ICMPV6 => matches!(ty, 1..=4),
        _ => false,
    }
}

fn classify(hdr: &Hdr, frame_len: usize) -> Result<Pkt, Drop> {
    let h = match offload::parse_prefix(&hdr.buf[..hdr.n], frame_len) {
        Ok(h) => h,
        Err(offload::OffloadError::Fragment) => return Err(Drop::Fragment),
        Err(_) => return Err(Drop::Malformed),
    };
    let l3 = h.l3_offset;
    let (src, dst, ttl, ip_len, std_dst) = match h.l3 {
        L3::V4 => {
            let a = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    hdr.buf[o],
                    hdr.buf[o + 1],
                    hdr.buf[o + 2],
                    hdr.buf[o + 3],
                ))
            };
            (
                a(l3 + 12),
                a(l3 + 16),
                hdr.buf[l3 + 8],
                usize::from(hdr.be16(l3 + 2)),
                l3 + 16,
            )
        }
        L3::V6 => {
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&hdr.buf[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (
                a(l3 + 8),
                a(l3 + 24),
                hdr.buf[l3 + 7],
                40 + usize::from(hdr.be16(l3 + 4)),
                l3 + 24,
            )
        }
    };
    if h.pseudo_dst_offset != std_dst {
        return Err(Drop::SourceRoute);
    }
    let l4 = h.l4_offset;
    let (proto, sport, dport, icmp_type, tcp_flags) = match h.l4 {
        L4::Tcp => (
            PROTO_TCP,
            hdr.be16(l4),
            hdr.be16(l4 + 2),
            None,
            Some(hdr.buf[l4 + 13]),
        ),
        L4::Udp => (PROTO_UDP, hdr.be16(l4), hdr.be16(l4 + 2), None, None),
        L4::Other(p @ (PROTO_ICMP | PROTO_ICMPV6)) => {
            if hdr.n < l4 + 8 || h.l3_offset + ip_len < l4 + 8 {
                return Err(Drop::Malformed);
            }
            let ty = hdr.buf[l4];
            let id = if is_echo_request(p, ty) || is_echo_reply(p, ty) {
                hdr.be16(l4 + 4)
            } else {
                0
            };
            (p, id, id, Some(ty), None)
        }
        L4::Other(_) => return Err(Drop::Unsupported),
    };
    Ok(Pkt {
        h,
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        tcp_flags,
        ttl,
        ip_len,
    })
}

/// The rules' view of a flow's original tuple.
pub(crate) fn rules_flow(k: &FlowKey) -> rules::Flow {
    let transport = match k.proto {
        PROTO_TCP => rules::Transport::Tcp { dst_port: k.dport },
        PROTO_UDP => rules::Transport::Udp { dst_port: k.dport },
        PROTO_ICMP => rules::Transport::Icmp { icmp_type: 8 },
        PROTO_ICMPV6 => rules::Transport::Icmpv6 { icmp_type: 128 },
        p => rules::Transport::Other { protocol: p },
    };
    rules::Flow::new(k.src, k.dst, transport)
}

fn rules_flow_of(p: &Pkt) -> rules::Flow {
    let transport = match (p.proto, p.icmp_type) {
        (PROTO_TCP, _) => rules::Transport::Tcp { dst_port: p.dport },
        (PROTO_UDP, _) => rules::Transport::Udp { dst_port: p.dport },
        (PROTO_ICMP, Some(t)) => rules::Transport::Icmp { icmp_type: t },
        (PROTO_ICMPV6, Some(t)) => rules::Transport::Icmpv6 { icmp_type: t },
        (p, _) => rules::Transport::Other { protocol: p },
    };
    rules::Flow::new(p.src, p.dst, transport)
}

fn is_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    }
}

impl Engine {
    /// Process one frame received on `from`: forward it (rewritten in
    /// place), answer it, or drop it (counted). Never panics on any input.
    pub fn handle<O: Output>(
        &mut self,
        now: u64,
        from: Iface,
        frame: Frame,
        pool: &mut PagePool,
        out: &mut O,
    ) {
        let r = match from {
            Iface::Uplink => self.handle_uplink(now, frame, pool, out),
            Iface::Client(id) => self.handle_client(now, id, frame, pool, out),
        };
        if let Err((frame, why)) = r {
            self.stats.drop(why);
            if let Iface::Client(id) = from {
                if let Some(c) = self.client_mut(id) {
                    c.stats.dropped += 1;
                    if matches!(why, Drop::SpoofedIp | Drop::SpoofedMac | Drop::SpoofedArp) {
                        c.stats.spoofed += 1;
                    }
                }
            }
            if let Some(f) = frame {
                f.free(pool);
            }
        }
    }

    fn handle_client<O: Output>(
        &mut self,
        now: u64,
        id: ClientId,
        frame: Frame,
        pool: &mut PagePool,
        out: &mut O,
    ) -> Result<(), (Option<Frame>, Drop)> {
        let Some(c) = self.client(id) else {
            return Err((Some(frame), Drop::NoClient));
        };
        // `net.fake-ip`: the addresses the client believes it has (its
        // real ones when unmapped); a broken mapping blocks it.
        let map = c.map;
        if map == AddressMap::Invalid {
            return Err((Some(frame), Drop::BadAddressMap));
        }
        let (vis_ip, vis_gw) = (c.visible_ip(), c.visible_gateway());
        let cfg = c.cfg.clone();
        let mut hdr = Hdr::read(pool, &frame);
        if hdr.n < ETH_HLEN {
            return Err((Some(frame), Drop::Malformed));
        }
        if hdr.mac(6) != cfg.mac {
            return Err((Some(frame), Drop::SpoofedMac));
        }
        let dst_mac = hdr.mac(0);
        let ethertype = hdr.be16(12);
        if ethertype == ETHERTYPE_ARP {
            let reply =
                arp::respond_client(&hdr.buf[..hdr.n], super::CLIENT_SIDE_MAC, vis_ip, cfg.mac);
            frame.free(pool);
            return match reply {
                Some(arp::ClientArp::Reply(o)) => {
                    self.emit_arp(Iface::Client(id), &o, pool, out);
                    Ok(())
                }
                Some(arp::ClientArp::Spoofed(_)) => Err((None, Drop::SpoofedArp)),
                None => Err((None, Drop::ToFirewall)),
            };
        }
        if dst_mac != super::CLIENT_SIDE_MAC && dst_mac != BROADCAST && dst_mac[0] & 1 == 0 {
            return Err((Some(frame), Drop::NotOurMac));
        }
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err((Some(frame), Drop::Unsupported));
        }
        let mut p = match classify(&hdr, frame.len()) {
            Ok(p) => p,
            Err(why) => return Err((Some(frame), why)),
        };
        let own = match p.src {
            IpAddr::V4(a) => a == vis_ip,
            IpAddr::V6(a) => cfg.ip6 == Some(a) || ndp::is_link_local(a),
        };
        if !own {
            return Err((Some(frame), Drop::SpoofedIp));
        }
        // A mapped client: from here on (rules, flows, NAT) its packet is
        // from its real address. The wire still holds the visible one;
        // the NAT rewrite reads the old address from the packet, so the
        // checksums go from visible to NAT address in one update.
        if matches!(map, AddressMap::Mapped { .. }) && p.src.is_ipv4() {
            p.src = IpAddr::V4(cfg.ip);
        }
        // Neighbour discovery toward the gateway: answer it.
        if p.proto == PROTO_ICMPV6 && matches!(p.icmp_type, Some(133..=137)) {
            let own6 = cfg.ip6;
            let reply = ndp::respond(
                &hdr.buf[..hdr.n],
                &p.h,
                super::CLIENT_SIDE_MAC,
                |t| Some(t) != own6 && t != ip6_of(p.src),
                p.src,
            );
            frame.free(pool);
            if let Some((buf, len)) = reply {
                self.emit_bytes(Iface::Client(id), &buf[..len], pool, out);
            }
            return Ok(());
        }
        if is_multicast(p.dst) {
            return Err((Some(frame), Drop::Multicast));
        }
        // To the firewall itself: pings are answered, the rest dropped.
        let to_us = match p.dst {
            IpAddr::V4(a) => a == cfg.gateway || a == vis_gw || self.is_uplink_address(p.dst),
            IpAddr::V6(a) => cfg.gateway6 == Some(a) || self.is_uplink_address(p.dst),
        };
        if to_us {
            if matches!(p.icmp_type, Some(t) if is_echo_request(p.proto, t)) {
                self.echo_reply(Iface::Client(id), &frame, pool, out);
                frame.free(pool);
                return Ok(());
            }
            return Err((Some(frame), Drop::ToFirewall));
        }
        if self.client_by_ip(p.dst).is_some() {
            return Err((Some(frame), Drop::ClientToClient));
        }
        if p.icmp_type.is_some_and(|t| is_icmp_error(p.proto, t)) {
            // No inbound flows exist, so a client never legitimately sends
            // an ICMP error about one.
            return Err((Some(frame), Drop::NoFlow));
        }
        // The uplink must be usable.
        let Some(up) = self.uplink.as_ref() else {
            return Err((Some(frame), Drop::NoUplink));
        };
        let Some(up_mac) = up.mac else {
            return Err((Some(frame), Drop::NoUplink));
        };
        let nat_ip = match p.src {
            IpAddr::V4(_) => IpAddr::V4(up.cfg.ip),
            IpAddr::V6(_) => match up.cfg.ip6 {
                Some(a) => IpAddr::V6(a),
                None => return Err((Some(frame), Drop::NoUplink)),
            },
        };
        let Some(gw_mac) = up.arp.gateway_mac() else {
            return Err((Some(frame), Drop::NoUplink));
        };
        let mtu = usize::from(up.mtu);
        if p.ttl <= 1 {
            self.icmp_error(
                now,
                Iface::Client(id),
                &frame,
                &p,
                icmp::Reason::TimeExceeded,
                pool,
                out,
            );
            return Err((Some(frame), Drop::TtlExceeded));
        }
        if frame.gso.is_none() && p.ip_len > mtu {
            let df = p.h.l3 == L3::V6 || hdr.buf[p.h.l3_offset + 6] & 0x40 != 0;
            if df {
                let e = icmp::Reason::TooBig { mtu: mtu as u32 };
                self.icmp_error(now, Iface::Client(id), &frame, &p, e, pool, out);
            }
            return Err((Some(frame), Drop::TooBig));
        }
        if p.icmp_type.is_some_and(|t| !is_echo_request(p.proto, t)) {
            return Err((Some(frame), Drop::Unsupported));
        }
        let key = FlowKey {
            proto: p.proto,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
        };
        let live = self
            .flows
            .lookup_outbound(&key)
            .filter(|&f| !self.flows.reap_if_expired(f, now));
        let fid = match live {
            Some(fid) => fid,
            None => {
                // A new flow: TCP must open with a SYN.
                if let Some(fl) = p.tcp_flags {
                    if fl & 0x02 == 0 || fl & 0x10 != 0 || fl & 0x04 != 0 {
                        return Err((Some(frame), Drop::NoFlow));
                    }
                }
                let ctx = rules::Context::new(&up.cfg.dns);
                let c = self.client(id).expect("checked above");
                let set = if p.src.is_ipv4() {
                    &c.rules_v4
                } else {
                    &c.rules_v6
                };
                let verdict = set.decide(&rules_flow_of(&p), &ctx);
                match verdict {
                    rules::Verdict::Accept => {}
                    rules::Verdict::Reject => {
                        self.client_mut(id)
                            .expect("checked above")
                            .stats
                            .flows_denied += 1;
                        let e = icmp::Reason::AdminProhibited;
                        self.icmp_error(now, Iface::Client(id), &frame, &p, e, pool, out);
                        return Err((Some(frame), Drop::Rejected));
                    }
                    rules::Verdict::Drop => {
                        self.client_mut(id)
                            .expect("checked above")
                            .stats
                            .flows_denied += 1;
                        return Err((Some(frame), Drop::Denied));
                    }
                }
                let r = self.flows.insert(id, key, nat_ip, now);
                let c = self.client_mut(id).expect("checked above");
                match r {
                    Ok(fid) => {
                        c.stats.flows_allowed += 1;
                        fid
                    }
                    Err(_) => {
                        c.stats.table_full += 1;
                        return Err((Some(frame), Drop::TableFull));
                    }
                }
            }
        };
        let len = frame.len();
        if !self
            .flows
            .on_packet(fid, Dir::Original, p.tcp_flags, len, now)
        {
            return Err((Some(frame), Drop::BadState));
        }
        let Some(e) = self.flows.entry(fid) else {
            return Err((Some(frame), Drop::NoFlow));
        };
        let (new_ip, new_port) = (e.nat_addr(), e.nat_port());
        let rw = csum::NatRewrite {
            src: Some(new_ip),
            sport: Some(new_port),
            ..Default::default()
        };
        let mut frame = frame;
        if forward_rewrite(&mut hdr, &p, &mut frame, pool, (gw_mac, up_mac), &rw).is_err() {
            return Err((Some(frame), Drop::Malformed));
        }
        let c = self.client_mut(id).expect("checked above");
        c.stats.packets_out += 1;
        c.stats.bytes_out += len as u64;
        self.stats.forwarded_out += 1;
        self.stats.bytes_out += len as u64;
        match out.emit(Iface::Uplink, frame) {
            Ok(()) => Ok(()),
            Err(f) => Err((Some(f), Drop::QueueFull)),
        }
    }

    fn handle_uplink<O: Output>(
        &mut self,
        now: u64,
        frame: Frame,
        pool: &mut PagePool,
        out: &mut O,
    ) -> Result<(), (Option<Frame>, Drop)> {
        let mut hdr = Hdr::read(pool, &frame);
        if hdr.n < ETH_HLEN {
            return Err((Some(frame), Drop::Malformed));
        }
        let Some(up) = self.uplink.as_mut() else {
            return Err((Some(frame), Drop::NoUplink));
        };
        let Some(our_mac) = up.mac else {
            return Err((Some(frame), Drop::NoUplink));
        };
        let dst_mac = hdr.mac(0);
        if dst_mac != our_mac && dst_mac[0] & 1 == 0 {
            return Err((Some(frame), Drop::NotOurMac));
        }
        let ethertype = hdr.be16(12);
        if ethertype == ETHERTYPE_ARP {
            let reply = up.arp.handle(&hdr.buf[..hdr.n], now);
            frame.free(pool);
            if let Some(o) = reply {
                self.emit_arp(Iface::Uplink, &o, pool, out);
            }
            return Ok(());
        }
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err((Some(frame), Drop::Unsupported));
        }
        let p = match classify(&hdr, frame.len()) {
            Ok(p) => p,
            Err(why) => return Err((Some(frame), why)),
        };
        if self.client_by_ip(p.src).is_some() || self.is_uplink_address(p.src) {
            return Err((Some(frame), Drop::SpoofedIp));
        }
        let up = self.uplink.as_ref().expect("checked above");
        if p.proto == PROTO_ICMPV6 && matches!(p.icmp_type, Some(133..=137)) {
            let ours = up.cfg.ip6;
            let reply = ndp::respond(&hdr.buf[..hdr.n], &p.h, our_mac, |t| Some(t) == ours, p.src);
            frame.free(pool);
            if let Some((buf, len)) = reply {
                self.emit_bytes(Iface::Uplink, &buf[..len], pool, out);
            }
            return Ok(());
        }
        if !self.is_uplink_address(p.dst) {
            return Err((
                Some(frame),
                if is_multicast(p.dst) {
                    Drop::Multicast
                } else {
                    Drop::NotOurMac
                },
            ));
        }
        // Our own resolver's answers.
        if p.proto == PROTO_UDP {
            let start = p.h.payload_offset;
            let end = p.h.l4_end;
            if self.resolver.owns_port(p.dport) {
                let mut buf = [0u8; 1500];
                let n = frame.read(pool, start, &mut buf[..(end - start).min(1500)]);
                frame.free(pool);
                if let Some(u) =
                    self.resolver
                        .handle_response(p.src, p.sport, p.dport, &buf[..n], now)
                {
                    self.apply_resolution(u);
                }
                return Ok(());
            }
        }
        if let Some(t) = p.icmp_type {
            if is_icmp_error(p.proto, t) {
                return self.icmp_error_inbound(frame, &p, pool, out);
            }
            if is_echo_request(p.proto, t) {
                self.echo_reply(Iface::Uplink, &frame, pool, out);
                frame.free(pool);
                return Ok(());
            }
        }
        let key = FlowKey {
            proto: p.proto,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
        };
        let live = self
            .flows
            .lookup_inbound(&key)
            .filter(|&f| !self.flows.reap_if_expired(f, now));
        let Some(fid) = live else {
            return Err((Some(frame), Drop::NoFlow));
        };
        let len = frame.len();
        if !self.flows.on_packet(fid, Dir::Reply, p.tcp_flags, len, now) {
            return Err((Some(frame), Drop::BadState));
        }
        let Some(e) = self.flows.entry(fid) else {
            return Err((Some(frame), Drop::NoFlow));
        };
        let owner = e.client();
        let (cip, cport) = (e.original().src, e.original().sport);
        let Some(c) = self.client_mut(owner) else {
            return Err((Some(frame), Drop::NoClient));
        };
        let cip = c.to_visible(cip);
        if p.ttl <= 1 {
            return Err((Some(frame), Drop::TtlExceeded));
        }
        let rw = csum::NatRewrite {
            dst: Some(cip),
            dport: Some(cport),
            ..Default::default()
        };
        let macs = (c.cfg.mac, super::CLIENT_SIDE_MAC);
        let mut frame = frame;
        if forward_rewrite(&mut hdr, &p, &mut frame, pool, macs, &rw).is_err() {
            return Err((Some(frame), Drop::Malformed));
        }
        c.stats.packets_in += 1;
        c.stats.bytes_in += len as u64;
        self.stats.forwarded_in += 1;
        self.stats.bytes_in += len as u64;
        match out.emit(Iface::Client(owner), frame) {
            Ok(()) => Ok(()),
            Err(f) => Err((Some(f), Drop::QueueFull)),
        }
    }

    /// An ICMP error from the uplink about one of our flows: translate the
    /// quoted packet back and hand it to the flow's client.
    fn icmp_error_inbound<O: Output>(
        &mut self,
        frame: Frame,
        p: &Pkt,
        pool: &mut PagePool,
        out: &mut O,
    ) -> Result<(), (Option<Frame>, Drop)> {
        let mut buf = [0u8; GEN_MAX];
        let n = frame.read(pool, 0, &mut buf);
        let info = match icmp::parse_error(&buf[..n], &p.h) {
            Ok(q) => q,
            Err(_) => return Err((Some(frame), Drop::Malformed)),
        };
        let q = info.inner;
        let (qs, qd) = match q.transport {
            icmp::InnerTransport::Ports { sport, dport } => (sport, dport),
            icmp::InnerTransport::Echo { id } => (id, id),
            icmp::InnerTransport::Other => return Err((Some(frame), Drop::NoFlow)),
        };
        // The quote is a packet we sent: NAT address -> remote. Its reply
        // tuple is the key the table indexes inbound packets by.
        let key = FlowKey {
            proto: q.proto,
            src: q.dst,
            dst: q.src,
            sport: qd,
            dport: qs,
        };
        let Some(fid) = self.flows.lookup_inbound(&key) else {
            return Err((Some(frame), Drop::NoFlow));
        };
        let Some(e) = self.flows.entry(fid) else {
            return Err((Some(frame), Drop::NoFlow));
        };
        let owner = e.client();
        let (cip, cport) = (e.original().src, e.original().sport);
        let Some(c) = self.client(owner) else {
            return Err((Some(frame), Drop::NoClient));
        };
        let cip = c.to_visible(cip);
        let cmac = c.cfg.mac;
        let outer_rw = csum::NatRewrite {
            dst: Some(cip),
            ..Default::default()
        };
        let inner_rw = csum::NatRewrite {
            src: Some(cip),
            sport: Some(cport),
            ..Default::default()
        };
        if icmp::rewrite_error(&mut buf[..n], &info, &outer_rw, &inner_rw).is_err() {
            return Err((Some(frame), Drop::Malformed));
        }
        buf[0..6].copy_from_slice(&cmac);
        buf[6..12].copy_from_slice(&super::CLIENT_SIDE_MAC);
        let len = frame.len().min(n);
        frame.free(pool);
        self.stats.icmp_errors_translated += 1;
        self.emit_bytes(Iface::Client(owner), &buf[..len], pool, out);
        Ok(())
    }

    /// Answer an echo request addressed to the firewall.
    fn echo_reply<O: Output>(
        &mut self,
        to: Iface,
        frame: &Frame,
        pool: &mut PagePool,
        out: &mut O,
    ) {
        let mut req = [0u8; GEN_MAX];
        let n = frame.read(pool, 0, &mut req);
        if n < frame.len() {
            return; // larger than we answer
        }
        let mut buf = [0u8; GEN_MAX];
        let link = icmp::Link {
            src: mac_at(&req, 0),
            dst: mac_at(&req, 6),
        };
        if let Ok(len) = icmp::echo_reply(&mut buf, link, &req[..n]) {
            self.emit_bytes(to, &buf[..len], pool, out);
        }
    }

    /// Send an ICMP error about `frame` back to where it came from
    /// (rate-limited).
    #[allow(clippy::too_many_arguments)]
    fn icmp_error<O: Output>(
        &mut self,
        now: u64,
        to: Iface,
        frame: &Frame,
        p: &Pkt,
        kind: icmp::Reason,
        pool: &mut PagePool,
        out: &mut O,
    ) {
        if !self.icmp_limit.allow(now) {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        let Iface::Client(id) = to else { return };
        let Some(c) = self.client(id) else { return };
        let src = match p.src {
            IpAddr::V4(_) => IpAddr::V4(c.visible_gateway()),
            IpAddr::V6(_) => match c.cfg.gateway6 {
                Some(g) => IpAddr::V6(g),
                None => return,
            },
        };
        let mut quote = [0u8; GEN_MAX];
        let n = frame.read(pool, 0, &mut quote);
        let mut buf = [0u8; GEN_MAX];
        let link = icmp::Link {
            src: super::CLIENT_SIDE_MAC,
            dst: c.cfg.mac,
        };
        if let Ok(len) = icmp::build_error(&mut buf, link, src, kind, &quote[..n]) {
            self.emit_bytes(to, &buf[..len], pool, out);
        }
    }

    /// Emit an ARP packet.
    fn emit_arp<O: Output>(
        &mut self,
        to: Iface,
        o: &arp::Outgoing,
        pool: &mut PagePool,
        out: &mut O,
    ) {
        let mut buf = [0u8; 60];
        if let Ok(n) = o.emit(&mut buf) {
            // Pad to the Ethernet minimum, as a NIC would.
            self.emit_bytes(to, &buf[..n.max(60)], pool, out);
        }
    }

    /// Emit a generated packet.
    pub(crate) fn emit_bytes<O: Output>(
        &mut self,
        to: Iface,
        bytes: &[u8],
        pool: &mut PagePool,
        out: &mut O,
    ) {
        match Frame::from_bytes(pool, bytes) {
            Ok(f) => {
                self.stats.generated += 1;
                if let Err(f) = out.emit(to, f) {
                    self.stats.drop(Drop::QueueFull);
                    f.free(pool);
                }
            }
            Err(_) => self.stats.drop(Drop::PoolExhausted),
        }
    }

    /// Apply a resolver answer to every client whose rules name the host.
    fn apply_resolution(&mut self, u: super::resolver::Update) {
        use super::resolver::Update;
        let name = match &u {
            Update::Resolved { name, .. } | Update::Failed { name } => name.clone(),
        };
        for i in 0..self.clients.len() {
            let id = ClientId(i as u32);
            let mut changed = false;
            if let Some(c) = self.client_mut(id) {
                for set in [&mut c.rules_v4, &mut c.rules_v6] {
                    if set.host_state(name.as_str()).is_none() {
                        continue;
                    }
                    let s = alloc::sync::Arc::make_mut(set);
                    changed |= match &u {
                        Update::Resolved { addrs, .. } => s.set_resolved(name.as_str(), addrs),
                        Update::Failed { .. } => s.set_failed(name.as_str()),
                    };
                }
            }
            if changed {
                self.recheck_flows(id);
            }
        }
    }

    pub(crate) fn poll_timers<O: Output>(&mut self, now: u64, pool: &mut PagePool, out: &mut O) {
        self.flows.expire(now, 256);
        let Some(up) = self.uplink.as_mut() else {
            return;
        };
        let Some(our_mac) = up.mac else { return };
        if let Some(o) = up.arp.poll(now) {
            self.emit_arp(Iface::Uplink, &o, pool, out);
        }
        let up = self.uplink.as_ref().expect("checked above");
        let Some(gw_mac) = up.arp.gateway_mac() else {
            return;
        };
        let our_ip = up.cfg.ip;
        let our_ip6 = up.cfg.ip6;
        while let Some(u) = self.resolver.take_update() {
            self.apply_resolution(u);
        }
        let mut payload = [0u8; 512];
        while let Some(q) = self.resolver.poll(now, &mut payload) {
            let src = match q.server {
                IpAddr::V4(_) => IpAddr::V4(our_ip),
                IpAddr::V6(_) => match our_ip6 {
                    Some(a) => IpAddr::V6(a),
                    None => continue,
                },
            };
            let mut buf = [0u8; 600];
            if let Ok(len) = super::build::build_udp(
                &mut buf,
                our_mac,
                gw_mac,
                src,
                q.server,
                q.src_port,
                53,
                &payload[..q.len],
            ) {
                self.emit_bytes(Iface::Uplink, &buf[..len], pool, out);
            }
        }
    }
}

/// Prepare a forwarded frame: set its Ethernet (destination, source)
/// MACs, rewrite the NAT fields and decrement the TTL in the header buffer
/// (every checksum updated incrementally; partial checksums keep their
/// meaning), then write the changed header bytes back into the frame.
/// The payload is never touched.
fn forward_rewrite(
    hdr: &mut Hdr,
    p: &Pkt,
    frame: &mut Frame,
    pool: &PagePool,
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
    rw: &csum::NatRewrite,
) -> Result<(), csum::RewriteError> {
    let n = hdr.n;
    hdr.buf[0..6].copy_from_slice(&dst_mac);
    hdr.buf[6..12].copy_from_slice(&src_mac);
    csum::rewrite(&mut hdr.buf[..n], &p.h, frame.csum, rw)?;
    csum::decrement_hop_limit(&mut hdr.buf[..n], &p.h)?;
    let end = p.h.payload_offset.max(p.h.l4_offset + 8).min(n);
    frame.write(pool, 0, &hdr.buf[..end]);
    Ok(())
}

fn ip6_of(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    }
}

/// The MAC at byte `at` of a frame (0: destination, 6: source).
fn mac_at(frame: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&frame[at..at + 6]);
    m
}
