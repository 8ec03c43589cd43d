//! Engine tests over hand-built frames: one client, the uplink, every
//! decision the engine makes, checksums verified by full recomputation.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rules::RuleSet;
use xen::frame::offload::{parse_bytes, L3, L4};
use xen::frame::{Checksum, Frame};
use xen::memory::pool::PagePool;
use xen::memory::LocalRam;

use super::build::{finish, pseudo_v4, pseudo_v6};
use super::*;

mod fakeip;

const FW_UP_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00];
const GW_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0x01];
const VM_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00];
const UP_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 5);
const UP_GW: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 1);
const UP_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 137, 0, 10);
const VM2_IP: Ipv4Addr = Ipv4Addr::new(10, 137, 0, 11);
const VM_IP6: Ipv6Addr = Ipv6Addr::new(0xfd09, 0x24ef, 0x4179, 0, 0, 0, 0xa89, 10);
const FW_IP: Ipv4Addr = Ipv4Addr::new(10, 137, 0, 1);
const FW_IP6: Ipv6Addr = Ipv6Addr::new(0xfd09, 0x24ef, 0x4179, 0, 0, 0, 0xa89, 1);
const NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 139, 1, 1);

#[derive(Default)]
struct Out(Vec<(Iface, Frame)>);

impl Output for Out {
    fn emit(&mut self, to: Iface, frame: Frame) -> Result<(), Frame> {
        self.0.push((to, frame));
        Ok(())
    }
}

struct Bed {
    _ram: alloc::boxed::Box<LocalRam>,
    pool: PagePool,
    e: Engine,
    vm: ClientId,
    now: u64,
}

impl Bed {
    fn new(rules: &[(&str, &str)]) -> Bed {
        let ram = alloc::boxed::Box::new(LocalRam::new(1024));
        let pool = PagePool::new(&*ram, 1024).unwrap();
        let mut e = Engine::new(EngineConfig::default());
        e.set_uplink(Some(UplinkConfig {
            ip: UP_IP,
            gateway: UP_GW,
            ip6: Some(UP_IP6),
            gateway6: None,
            dns: vec![IpAddr::V4(DNS)],
        }));
        e.set_uplink_link(Some((FW_UP_MAC, 1500)));
        let vm = e
            .add_client(ClientConfig {
                ip: VM_IP,
                ip6: Some(VM_IP6),
                mac: VM_MAC,
                gateway: FW_IP,
                gateway6: Some(FW_IP6),
            })
            .unwrap();
        let mut b = Bed {
            _ram: ram,
            pool,
            e,
            vm,
            now: 1_000_000_000,
        };
        b.set_rules(rules);
        b.resolve_gateway();
        b
    }

    fn set_rules(&mut self, rules: &[(&str, &str)]) -> Reload {
        let v4 = RuleSet::from_entries(&VM_IP.to_string(), rules).unwrap();
        let r = self.e.set_rules(self.vm, Family::V4, v4);
        let v6 = RuleSet::from_entries(&VM_IP6.to_string(), rules).unwrap();
        self.e.set_rules(self.vm, Family::V6, v6);
        r
    }

    /// Answer the engine's ARP request for the uplink gateway.
    fn resolve_gateway(&mut self) {
        let out = self.poll();
        let req = out
            .iter()
            .find(|(to, f)| *to == Iface::Uplink && f[12..14] == [0x08, 0x06])
            .expect("an ARP request for the gateway");
        assert_eq!(&req.1[38..42], &UP_GW.octets());
        let mut reply = vec![0u8; 42];
        reply[0..6].copy_from_slice(&FW_UP_MAC);
        reply[6..12].copy_from_slice(&GW_MAC);
        reply[12..14].copy_from_slice(&[0x08, 0x06]);
        reply[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        reply[22..28].copy_from_slice(&GW_MAC);
        reply[28..32].copy_from_slice(&UP_GW.octets());
        reply[32..38].copy_from_slice(&FW_UP_MAC);
        reply[38..42].copy_from_slice(&UP_IP.octets());
        let out = self.send(Iface::Uplink, &reply);
        assert!(out.iter().all(|(to, _)| *to == Iface::Uplink));
    }

    fn send(&mut self, from: Iface, bytes: &[u8]) -> Vec<(Iface, Vec<u8>)> {
        self.send_frame(from, bytes, Checksum::Unverified)
    }

    fn send_frame(&mut self, from: Iface, bytes: &[u8], csum: Checksum) -> Vec<(Iface, Vec<u8>)> {
        let mut f = Frame::from_bytes(&mut self.pool, bytes).unwrap();
        f.csum = csum;
        let mut out = Out::default();
        self.now += 1_000_000;
        self.e.handle(self.now, from, f, &mut self.pool, &mut out);
        self.collect(out)
    }

    fn poll(&mut self) -> Vec<(Iface, Vec<u8>)> {
        let mut out = Out::default();
        self.now += 1_000_000;
        self.e.poll(self.now, &mut self.pool, &mut out);
        self.collect(out)
    }

    fn collect(&mut self, out: Out) -> Vec<(Iface, Vec<u8>)> {
        out.0
            .into_iter()
            .map(|(to, f)| {
                let v = f.to_vec(&self.pool);
                f.free(&mut self.pool);
                (to, v)
            })
            .collect()
    }
}

/// An Ethernet + IPv4/IPv6 + TCP/UDP frame with correct checksums.
#[allow(clippy::too_many_arguments)]
fn l4_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4h = if proto == 6 { 20 } else { 8 };
    let l4len = l4h + payload.len();
    let (iph, et) = if src.is_ipv4() {
        (20, 0x0800u16)
    } else {
        (40, 0x86dd)
    };
    let mut f = vec![0u8; 14 + iph + l4len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&et.to_be_bytes());
    let ps = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + l4len) as u16).to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = finish(0, ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            pseudo_v4(&s.octets(), &d.octets(), proto, l4len as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = &mut f[14..54];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            pseudo_v6(&s.octets(), &d.octets(), proto, l4len as u32)
        }
        _ => unreachable!(),
    };
    let l4 = &mut f[14 + iph..];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[12] = 5 << 4;
        l4[13] = flags;
        l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        l4[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
    }
    l4[l4h..].copy_from_slice(payload);
    let ck_at = if proto == 6 { 16 } else { 6 };
    let c = finish(ps, l4);
    l4[ck_at..ck_at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// An ICMP/ICMPv6 echo request.
fn echo(src_mac: [u8; 6], dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, id: u16) -> Vec<u8> {
    let v4 = src.is_ipv4();
    let (iph, et, proto, ty) = if v4 {
        (20, 0x0800u16, 1u8, 8u8)
    } else {
        (40, 0x86dd, 58, 128)
    };
    let l4len = 8 + 16;
    let mut f = vec![0u8; 14 + iph + l4len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&et.to_be_bytes());
    let ps = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + l4len) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = finish(0, ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            0
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = &mut f[14..54];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            pseudo_v6(&s.octets(), &d.octets(), proto, l4len as u32)
        }
        _ => unreachable!(),
    };
    let l4 = &mut f[14 + iph..];
    l4[0] = ty;
    l4[4..6].copy_from_slice(&id.to_be_bytes());
    l4[6..8].copy_from_slice(&1u16.to_be_bytes());
    for (i, b) in l4[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = finish(ps, l4);
    l4[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// Every checksum of a frame verifies (IPv4 header, TCP/UDP/ICMP).
fn assert_checksums(f: &[u8]) {
    let h = parse_bytes(f).unwrap();
    let l3 = h.l3_offset;
    let l4 = &f[h.l4_offset..h.l4_end];
    let ps = match h.l3 {
        L3::V4 => {
            assert_eq!(finish(0, &f[l3..h.l4_offset]), 0, "IPv4 header checksum");
            pseudo_v4(
                &f[l3 + 12..l3 + 16],
                &f[l3 + 16..l3 + 20],
                h.l4.protocol(),
                l4.len() as u16,
            )
        }
        L3::V6 => pseudo_v6(
            &f[l3 + 8..l3 + 24],
            &f[l3 + 24..l3 + 40],
            h.l4.protocol(),
            l4.len() as u32,
        ),
    };
    match h.l4 {
        L4::Tcp | L4::Udp => assert_eq!(finish(ps, l4), 0, "transport checksum"),
        L4::Other(1) => assert_eq!(finish(0, l4), 0, "ICMP checksum"),
        L4::Other(58) => assert_eq!(finish(ps, l4), 0, "ICMPv6 checksum"),
        L4::Other(_) => {}
    }
}

const ALLOW_ALL: &[(&str, &str)] = &[("policy", "drop"), ("0000", "action=accept")];

fn syn(sport: u16) -> Vec<u8> {
    l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        6,
        sport,
        80,
        0x02,
        b"",
    )
}

/// Send a SYN out and return the NAT port it got.
fn open_tcp(b: &mut Bed, sport: u16) -> u16 {
    let out = b.send(Iface::Client(b.vm), &syn(sport));
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let (to, f) = &out[0];
    assert_eq!(*to, Iface::Uplink);
    let h = parse_bytes(f).unwrap();
    u16::from_be_bytes([f[h.l4_offset], f[h.l4_offset + 1]])
}

/// An ICMPv4 port unreachable from a router on the internet (203.0.113.1)
/// to the firewall's uplink address, quoting `quote` (IP header + 8 bytes of
/// a packet the firewall sent), with valid checksums.
fn port_unreachable_from_router(quote: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + quote.len()];
    f[0..6].copy_from_slice(&FW_UP_MAC);
    f[6..12].copy_from_slice(&GW_MAC);
    f[12..14].copy_from_slice(&[0x08, 0]);
    let tot = (20 + 8 + quote.len()) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    f[22] = 64;
    f[23] = 1;
    f[26..30].copy_from_slice(&[203, 0, 113, 1]);
    f[30..34].copy_from_slice(&UP_IP.octets());
    let c = finish(0, &f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34] = 3;
    f[35] = 3;
    f[42..].copy_from_slice(quote);
    let c = finish(0, &f[34..]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn client_arp_for_gateway_is_answered_with_our_mac() {
    let mut b = Bed::new(ALLOW_ALL);
    let mut req = vec![0u8; 42];
    req[0..6].copy_from_slice(&[0xff; 6]);
    req[6..12].copy_from_slice(&VM_MAC);
    req[12..14].copy_from_slice(&[0x08, 0x06]);
    req[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    req[22..28].copy_from_slice(&VM_MAC);
    req[28..32].copy_from_slice(&VM_IP.octets());
    req[38..42].copy_from_slice(&FW_IP.octets());
    let out = b.send(Iface::Client(b.vm), &req);
    assert_eq!(out.len(), 1);
    let (to, f) = &out[0];
    assert_eq!(*to, Iface::Client(b.vm));
    assert_eq!(&f[0..6], &VM_MAC);
    assert_eq!(&f[20..22], &[0, 2]);
    assert_eq!(&f[22..28], &CLIENT_SIDE_MAC);
    assert_eq!(&f[28..32], &FW_IP.octets());
    // ARP spoofing: claiming another sender address is refused.
    req[28..32].copy_from_slice(&VM2_IP.octets());
    assert!(b.send(Iface::Client(b.vm), &req).is_empty());
    assert_eq!(b.e.stats().drops_for(Drop::SpoofedArp), 1);
}

#[test]
fn tcp_is_translated_both_ways_with_valid_checksums() {
    let mut b = Bed::new(ALLOW_ALL);
    let out = b.send(Iface::Client(b.vm), &syn(40000));
    assert_eq!(out.len(), 1);
    let (to, f) = &out[0];
    assert_eq!(*to, Iface::Uplink);
    assert_eq!(&f[0..6], &GW_MAC);
    assert_eq!(&f[6..12], &FW_UP_MAC);
    assert_eq!(&f[26..30], &UP_IP.octets(), "source NATed");
    assert_eq!(&f[30..34], &NET.octets());
    assert_eq!(f[22], 63, "TTL decremented");
    assert_checksums(f);
    let nat_port = u16::from_be_bytes([f[34], f[35]]);
    // The reply comes back to the client, translated back.
    let reply = l4_frame(
        GW_MAC,
        FW_UP_MAC,
        IpAddr::V4(NET),
        IpAddr::V4(UP_IP),
        6,
        80,
        nat_port,
        0x12,
        b"",
    );
    let out = b.send(Iface::Uplink, &reply);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let (to, f) = &out[0];
    assert_eq!(*to, Iface::Client(b.vm));
    assert_eq!(&f[0..6], &VM_MAC);
    assert_eq!(&f[6..12], &CLIENT_SIDE_MAC);
    assert_eq!(&f[30..34], &VM_IP.octets());
    assert_eq!(u16::from_be_bytes([f[36], f[37]]), 40000);
    assert_checksums(f);
    let s = b.e.client_stats(b.vm).unwrap();
    assert_eq!((s.flows_allowed, s.packets_out, s.packets_in), (1, 1, 1));
    assert_eq!(b.e.client_flows(b.vm), 1);
}

#[test]
fn an_expired_flow_gives_way_to_a_new_one() {
    let mut b = Bed::new(ALLOW_ALL);
    open_tcp(&mut b, 42000);
    // Past the opening timeout the same tuple opens a fresh flow.
    b.now += conntrack::TCP_OPENING_NS;
    open_tcp(&mut b, 42000);
    assert_eq!(b.e.client_flows(b.vm), 1);
    assert_eq!(b.e.flow_stats().inserted, 2);
    assert_eq!(b.e.stats().drops_for(Drop::BadState), 0);
}

/// Store in `f` a partial checksum, as a client with checksum offload
/// sends it: the folded IPv4 pseudo-header sum, at `csum_at` bytes into
/// the transport header.
fn make_partial_v4(f: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, csum_at: usize) {
    let h = parse_bytes(f).unwrap();
    let ps = pseudo_v4(&src.octets(), &dst.octets(), proto, h.l4_len() as u16);
    let partial = xen::frame::offload::fold(ps);
    let at = h.l4_offset + csum_at;
    f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
}

/// A UDP packet from wire source `src` with a partial checksum leaves
/// still partial, holding the pseudo-header sum of the NAT address, and
/// completing it gives a valid checksum.
fn partial_udp_checksum_round_trip(b: &mut Bed, src: Ipv4Addr, payload: &[u8]) {
    let mut f = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(src),
        IpAddr::V4(NET),
        17,
        5000,
        9999,
        0,
        payload,
    );
    make_partial_v4(&mut f, src, NET, 17, 6);
    let out = b.send_frame(Iface::Client(b.vm), &f, Checksum::Partial);
    assert_eq!(out.len(), 1);
    let mut g = out[0].1.clone();
    let h = parse_bytes(&g).unwrap();
    let want = xen::frame::offload::fold(pseudo_v4(
        &UP_IP.octets(),
        &NET.octets(),
        17,
        h.l4_len() as u16,
    ));
    assert_eq!(
        u16::from_be_bytes([g[h.l4_offset + 6], g[h.l4_offset + 7]]),
        want,
        "the pseudo-header sum of the NAT address"
    );
    // Completing it gives a valid checksum.
    g[h.l4_offset + 6..h.l4_offset + 8].copy_from_slice(&[0, 0]);
    let ps = pseudo_v4(&UP_IP.octets(), &NET.octets(), 17, h.l4_len() as u16);
    let c = finish(ps, &g[h.l4_offset..h.l4_end]);
    g[h.l4_offset + 6..h.l4_offset + 8].copy_from_slice(&c.to_be_bytes());
    assert_checksums(&g);
}

#[test]
fn partial_checksums_stay_partial_and_complete_correctly() {
    let mut b = Bed::new(ALLOW_ALL);
    partial_udp_checksum_round_trip(&mut b, VM_IP, &[7u8; 100]);
}

#[test]
fn spoofed_sources_are_dropped() {
    let mut b = Bed::new(ALLOW_ALL);
    let ip = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM2_IP),
        IpAddr::V4(NET),
        6,
        1,
        80,
        2,
        b"",
    );
    assert!(b.send(Iface::Client(b.vm), &ip).is_empty());
    let mac = l4_frame(
        [2, 0, 0, 0, 0, 9],
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        6,
        1,
        80,
        2,
        b"",
    );
    assert!(b.send(Iface::Client(b.vm), &mac).is_empty());
    // From the uplink with a client's or our own source address.
    let up = l4_frame(
        GW_MAC,
        FW_UP_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(UP_IP),
        6,
        1,
        80,
        2,
        b"",
    );
    assert!(b.send(Iface::Uplink, &up).is_empty());
    let st = b.e.stats();
    assert_eq!(st.drops_for(Drop::SpoofedIp), 2);
    assert_eq!(st.drops_for(Drop::SpoofedMac), 1);
    assert_eq!(b.e.client_stats(b.vm).unwrap().spoofed, 2);
}

#[test]
fn rejected_flows_get_admin_prohibited() {
    let mut b = Bed::new(&[("policy", "drop"), ("0000", "action=accept proto=udp")]);
    let out = b.send(Iface::Client(b.vm), &syn(1234));
    assert_eq!(out.len(), 1);
    let (to, f) = &out[0];
    assert_eq!(*to, Iface::Client(b.vm));
    // ICMP type 3 code 13 from our gateway address, quoting the SYN.
    assert_eq!(f[23], 1);
    assert_eq!(&f[26..30], &FW_IP.octets());
    assert_eq!(&f[30..34], &VM_IP.octets());
    assert_eq!((f[34], f[35]), (3, 13));
    assert_checksums(f);
    assert_eq!(b.e.stats().drops_for(Drop::Rejected), 1);
    assert_eq!(b.e.client_stats(b.vm).unwrap().flows_denied, 1);
    // The UDP the rules allow passes.
    let udp = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        17,
        1,
        53,
        0,
        b"q",
    );
    assert_eq!(b.send(Iface::Client(b.vm), &udp)[0].0, Iface::Uplink);
}

#[test]
fn nothing_enters_without_a_flow_and_clients_cannot_reach_each_other() {
    let mut b = Bed::new(ALLOW_ALL);
    let inbound = l4_frame(
        GW_MAC,
        FW_UP_MAC,
        IpAddr::V4(NET),
        IpAddr::V4(UP_IP),
        6,
        80,
        40000,
        0x02,
        b"",
    );
    assert!(b.send(Iface::Uplink, &inbound).is_empty());
    assert_eq!(b.e.stats().drops_for(Drop::NoFlow), 1);
    b.e.add_client(ClientConfig {
        ip: VM2_IP,
        ip6: None,
        mac: VM_MAC,
        gateway: FW_IP,
        gateway6: None,
    })
    .unwrap();
    let c2c = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(VM2_IP),
        6,
        1,
        22,
        2,
        b"",
    );
    assert!(b.send(Iface::Client(b.vm), &c2c).is_empty());
    assert_eq!(b.e.stats().drops_for(Drop::ClientToClient), 1);
    // A mid-stream segment with no flow does not open one.
    let ack = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        6,
        1,
        80,
        0x10,
        b"",
    );
    assert!(b.send(Iface::Client(b.vm), &ack).is_empty());
    assert_eq!(b.e.flow_count(), 0);
}

#[test]
fn reload_cuts_only_the_flows_the_new_rules_deny() {
    let mut b = Bed::new(ALLOW_ALL);
    let web = open_tcp(&mut b, 40000);
    let udp = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        17,
        5353,
        53,
        0,
        b"q",
    );
    assert_eq!(b.send(Iface::Client(b.vm), &udp).len(), 1);
    assert_eq!(b.e.client_flows(b.vm), 2);
    let r = b.set_rules(&[("policy", "drop"), ("0000", "action=accept proto=udp")]);
    assert_eq!((r.kept, r.cut), (1, 1));
    // The TCP flow's replies no longer enter.
    let reply = l4_frame(
        GW_MAC,
        FW_UP_MAC,
        IpAddr::V4(NET),
        IpAddr::V4(UP_IP),
        6,
        80,
        web,
        0x12,
        b"",
    );
    assert!(b.send(Iface::Uplink, &reply).is_empty());
    assert_eq!(b.e.client_stats(b.vm).unwrap().rule_loads, 2 + 2);
}

#[test]
fn icmp_echo_is_translated_and_pings_to_the_firewall_answered() {
    let mut b = Bed::new(ALLOW_ALL);
    let ping = echo(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        77,
    );
    let out = b.send(Iface::Client(b.vm), &ping);
    assert_eq!(out.len(), 1);
    let f = &out[0].1;
    assert_checksums(f);
    let id = u16::from_be_bytes([f[38], f[39]]);
    // The reply.
    let mut reply = echo(GW_MAC, FW_UP_MAC, IpAddr::V4(NET), IpAddr::V4(UP_IP), id);
    reply[34] = 0;
    reply[36..38].copy_from_slice(&[0, 0]);
    let c = finish(0, &reply[34..]);
    reply[36..38].copy_from_slice(&c.to_be_bytes());
    let out = b.send(Iface::Uplink, &reply);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let f = &out[0].1;
    assert_eq!(u16::from_be_bytes([f[38], f[39]]), 77);
    assert_checksums(f);
    // Ping the gateway.
    let ping = echo(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(FW_IP),
        5,
    );
    let out = b.send(Iface::Client(b.vm), &ping);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1[34], 0, "echo reply");
    assert_checksums(&out[0].1);
}

#[test]
fn icmp_errors_reach_the_flows_client_translated() {
    let mut b = Bed::new(ALLOW_ALL);
    let nat = open_tcp(&mut b, 41000);
    // What we sent, as the uplink sees it.
    let sent = l4_frame(
        FW_UP_MAC,
        GW_MAC,
        IpAddr::V4(UP_IP),
        IpAddr::V4(NET),
        6,
        nat,
        80,
        0x02,
        b"",
    );
    // An ICMP port unreachable from a router, quoting it.
    let quote = &sent[14..14 + 28];
    let f = port_unreachable_from_router(quote);
    let out = b.send(Iface::Uplink, &f);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let (to, g) = &out[0];
    assert_eq!(*to, Iface::Client(b.vm));
    assert_eq!(&g[30..34], &VM_IP.octets(), "outer destination");
    assert_eq!(&g[42 + 12..42 + 16], &VM_IP.octets(), "quoted source");
    assert_eq!(u16::from_be_bytes([g[62], g[63]]), 41000, "quoted port");
    assert_eq!(finish(0, &g[34..]), 0, "ICMP checksum");
    assert_eq!(finish(0, &g[14..34]), 0, "outer IP checksum");
    assert_eq!(finish(0, &g[42..62]), 0, "quoted IP checksum");
}

#[test]
fn ipv6_is_forwarded_through_nat66() {
    let mut b = Bed::new(ALLOW_ALL);
    let f = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V6(VM_IP6),
        IpAddr::V6(NET6),
        6,
        40000,
        443,
        2,
        b"",
    );
    let out = b.send(Iface::Client(b.vm), &f);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let g = &out[0].1;
    assert_eq!(&g[22..38], &UP_IP6.octets());
    assert_eq!(g[21], 63, "hop limit decremented");
    assert_checksums(g);
    let nat = u16::from_be_bytes([g[54], g[55]]);
    let r = l4_frame(
        GW_MAC,
        FW_UP_MAC,
        IpAddr::V6(NET6),
        IpAddr::V6(UP_IP6),
        6,
        443,
        nat,
        0x12,
        b"",
    );
    let out = b.send(Iface::Uplink, &r);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[38..54], &VM_IP6.octets());
    assert_checksums(&out[0].1);
}

#[test]
fn ttl_one_gets_time_exceeded() {
    let mut b = Bed::new(ALLOW_ALL);
    let mut f = syn(1);
    f[22] = 1;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = finish(0, &f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let out = b.send(Iface::Client(b.vm), &f);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].1[34], out[0].1[35]), (11, 0));
    assert_checksums(&out[0].1);
}

#[test]
fn oversized_df_packets_get_fragmentation_needed() {
    let mut b = Bed::new(ALLOW_ALL);
    let big = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM_IP),
        IpAddr::V4(NET),
        17,
        1,
        2,
        0,
        &[0u8; 1600],
    );
    let out = b.send(Iface::Client(b.vm), &big);
    assert_eq!(out.len(), 1);
    let g = &out[0].1;
    assert_eq!((g[34], g[35]), (3, 4));
    assert_eq!(u16::from_be_bytes([g[40], g[41]]), 1500);
    assert_eq!(b.e.stats().drops_for(Drop::TooBig), 1);
}

#[test]
fn per_client_quota_does_not_starve_another_client() {
    let mut cfg = EngineConfig::default();
    cfg.limits.max_flows_per_client = 8;
    let ram = alloc::boxed::Box::new(LocalRam::new(256));
    let mut pool = PagePool::new(&*ram, 256).unwrap();
    let mut b = Bed::new(ALLOW_ALL);
    b.e = Engine::new(cfg);
    core::mem::swap(&mut b.pool, &mut pool);
    b.e.set_uplink(Some(UplinkConfig {
        ip: UP_IP,
        gateway: UP_GW,
        ip6: None,
        gateway6: None,
        dns: vec![],
    }));
    b.e.set_uplink_link(Some((FW_UP_MAC, 1500)));
    b.vm =
        b.e.add_client(ClientConfig {
            ip: VM_IP,
            ip6: None,
            mac: VM_MAC,
            gateway: FW_IP,
            gateway6: None,
        })
        .unwrap();
    let other =
        b.e.add_client(ClientConfig {
            ip: VM2_IP,
            ip6: None,
            mac: VM_MAC,
            gateway: FW_IP,
            gateway6: None,
        })
        .unwrap();
    for id in [b.vm, other] {
        let ip = b.e.client_config(id).unwrap().ip;
        let set = RuleSet::from_entries(&ip.to_string(), ALLOW_ALL).unwrap();
        b.e.set_rules(id, Family::V4, set);
    }
    b.resolve_gateway();
    for p in 0..20u16 {
        b.send(Iface::Client(b.vm), &syn(1000 + p));
    }
    assert_eq!(b.e.client_flows(b.vm), 8);
    assert!(b.e.client_stats(b.vm).unwrap().table_full >= 12);
    let f = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V4(VM2_IP),
        IpAddr::V4(NET),
        6,
        1000,
        80,
        2,
        b"",
    );
    assert_eq!(b.send(Iface::Client(other), &f).len(), 1);
    assert_eq!(b.e.client_flows(other), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Arbitrary bytes from either side never panic, and everything the
    /// engine emits is a parseable frame or ARP.
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), side in any::<bool>(), ip in any::<bool>()) {
        let mut b = Bed::new(ALLOW_ALL);
        let mut bytes = bytes;
        if ip && bytes.len() > 14 {
            // Steer toward IP headers so the parsers get exercised.
            bytes[12] = 0x08;
            bytes[13] = 0;
            bytes[14] = 0x45;
            if side {
                bytes[0..6].copy_from_slice(&FW_UP_MAC);
            } else {
                bytes[6..12].copy_from_slice(&VM_MAC);
                bytes[0..6].copy_from_slice(&CLIENT_SIDE_MAC);
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let from = if side { Iface::Uplink } else { Iface::Client(b.vm) };
        for (_, f) in b.send(from, &bytes) {
            prop_assert!(f.len() >= 14);
        }
        prop_assert_eq!(b.pool.in_use(), 0);
    }
}

/// Clients are found by either address among many, duplicates are
/// refused, and a removed client's addresses (and slot) are free again.
#[test]
fn clients_are_indexed_by_both_addresses() {
    let mut e = Engine::new(EngineConfig::default());
    let cfg = |n: u8| ClientConfig {
        ip: Ipv4Addr::new(10, 137, 0, n),
        ip6: (n % 2 == 0)
            .then(|| Ipv6Addr::new(0xfd09, 0x24ef, 0x4179, 0, 0, 0, 0xa89, u16::from(n))),
        mac: [0, 0x16, 0x3e, 0x5e, 0x6c, 0],
        gateway: Ipv4Addr::new(10, 137, 0, 1),
        gateway6: None,
    };
    let ids: Vec<ClientId> = (2..60).map(|n| e.add_client(cfg(n)).unwrap()).collect();
    for (k, n) in (2..60u8).enumerate() {
        let c = cfg(n);
        assert_eq!(e.client_by_ip(IpAddr::V4(c.ip)), Some(ids[k]));
        if let Some(v6) = c.ip6 {
            assert_eq!(e.client_by_ip(IpAddr::V6(v6)), Some(ids[k]));
        }
    }
    assert_eq!(e.client_by_ip("10.137.0.99".parse().unwrap()), None);
    assert!(matches!(
        e.add_client(cfg(7)),
        Err(ClientError::DuplicateAddress(_))
    ));
    e.remove_client(ids[10]);
    let gone = cfg(12);
    assert_eq!(e.client_by_ip(IpAddr::V4(gone.ip)), None);
    assert_eq!(e.client_by_ip(IpAddr::V6(gone.ip6.unwrap())), None);
    assert_eq!(e.add_client(gone).unwrap(), ids[10]);
    assert_eq!(
        e.client_by_ip(IpAddr::V4(Ipv4Addr::new(10, 137, 0, 12))),
        Some(ids[10])
    );
}
