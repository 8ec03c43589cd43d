//! `net.fake-ip`: a client that believes it is `VIS_IP` behind `VIS_GW`
//! while its rules, flows and the uplink know it as `VM_IP`.

use super::*;

const VIS_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 10);
const VIS_GW: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const VIS2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 20);

const MAPPED: AddressMap = AddressMap::Mapped {
    visible_ip: VIS_IP,
    visible_gateway: VIS_GW,
};

fn mapped(rules: &[(&str, &str)]) -> Bed {
    let mut b = Bed::new(rules);
    assert!(b.e.set_address_map(b.vm, MAPPED));
    assert_eq!(b.e.address_map(b.vm), Some(MAPPED));
    b
}

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn from_vm(src: Ipv4Addr, proto: u8, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        v4(src),
        v4(NET),
        proto,
        sport,
        dport,
        flags,
        b"hello",
    )
}

fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut req = vec![0u8; 42];
    req[0..6].copy_from_slice(&[0xff; 6]);
    req[6..12].copy_from_slice(&VM_MAC);
    req[12..14].copy_from_slice(&[0x08, 0x06]);
    req[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    req[22..28].copy_from_slice(&VM_MAC);
    req[28..32].copy_from_slice(&sender.octets());
    req[38..42].copy_from_slice(&target.octets());
    req
}

/// Send from the client; the one frame that must come out on the uplink.
fn out_on_uplink(b: &mut Bed, f: &[u8]) -> Vec<u8> {
    let out = b.send(Iface::Client(b.vm), f);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    assert_eq!(out[0].0, Iface::Uplink);
    out[0].1.clone()
}

#[test]
fn tcp_and_udp_are_rewritten_both_ways_with_valid_checksums() {
    let mut b = mapped(ALLOW_ALL);
    for proto in [6u8, 17] {
        let flags = if proto == 6 { 0x02 } else { 0 };
        let f = out_on_uplink(&mut b, &from_vm(VIS_IP, proto, 40000, 80, flags));
        assert_eq!(&f[26..30], &UP_IP.octets(), "source NATed");
        assert_checksums(&f);
        let nat_port = u16::from_be_bytes([f[34], f[35]]);
        let reply = l4_frame(
            GW_MAC,
            FW_UP_MAC,
            v4(NET),
            v4(UP_IP),
            proto,
            80,
            nat_port,
            if proto == 6 { 0x12 } else { 0 },
            b"world",
        );
        let out = b.send(Iface::Uplink, &reply);
        assert_eq!(out.len(), 1, "{:?}", b.e.stats());
        let (to, g) = &out[0];
        assert_eq!(*to, Iface::Client(b.vm));
        assert_eq!(
            &g[30..34],
            &VIS_IP.octets(),
            "destination is the visible IP"
        );
        assert_eq!(u16::from_be_bytes([g[36], g[37]]), 40000);
        assert_checksums(g);
    }
    // The flows are the real address's.
    assert_eq!(b.e.client_flows(b.vm), 2);
    assert_eq!(b.e.client_by_ip(v4(VM_IP)), Some(b.vm));
    assert_eq!(b.e.client_by_ip(v4(VIS_IP)), None);
}

#[test]
fn partial_checksums_from_the_visible_address_complete_correctly() {
    let mut b = mapped(ALLOW_ALL);
    partial_udp_checksum_round_trip(&mut b, VIS_IP, &[9u8; 200]);
}

#[test]
fn pings_out_and_to_the_visible_gateway() {
    let mut b = mapped(ALLOW_ALL);
    let ping = echo(VM_MAC, CLIENT_SIDE_MAC, v4(VIS_IP), v4(NET), 77);
    let f = out_on_uplink(&mut b, &ping);
    assert_eq!(&f[26..30], &UP_IP.octets());
    assert_checksums(&f);
    let id = u16::from_be_bytes([f[38], f[39]]);
    let mut reply = echo(GW_MAC, FW_UP_MAC, v4(NET), v4(UP_IP), id);
    reply[34] = 0;
    reply[36..38].copy_from_slice(&[0, 0]);
    let c = finish(0, &reply[34..]);
    reply[36..38].copy_from_slice(&c.to_be_bytes());
    let out = b.send(Iface::Uplink, &reply);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let g = &out[0].1;
    assert_eq!(&g[30..34], &VIS_IP.octets());
    assert_eq!(u16::from_be_bytes([g[38], g[39]]), 77);
    assert_checksums(g);
    // The visible gateway is the firewall: pings answered from it.
    for gw in [VIS_GW, FW_IP] {
        let ping = echo(VM_MAC, CLIENT_SIDE_MAC, v4(VIS_IP), v4(gw), 5);
        let out = b.send(Iface::Client(b.vm), &ping);
        assert_eq!(out.len(), 1);
        let (to, r) = &out[0];
        assert_eq!(*to, Iface::Client(b.vm));
        assert_eq!(r[34], 0, "echo reply");
        assert_eq!(&r[26..30], &gw.octets());
        assert_eq!(&r[30..34], &VIS_IP.octets());
        assert_checksums(r);
    }
    // Anything else to the visible gateway is for the firewall: dropped.
    let udp = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        v4(VIS_IP),
        v4(VIS_GW),
        17,
        1,
        53,
        0,
        b"q",
    );
    assert!(b.send(Iface::Client(b.vm), &udp).is_empty());
    assert_eq!(b.e.stats().drops_for(Drop::ToFirewall), 1);
}

#[test]
fn icmp_errors_from_the_uplink_reach_the_visible_address() {
    let mut b = mapped(ALLOW_ALL);
    let f = out_on_uplink(&mut b, &from_vm(VIS_IP, 6, 41000, 80, 0x02));
    let nat = u16::from_be_bytes([f[34], f[35]]);
    let sent = l4_frame(FW_UP_MAC, GW_MAC, v4(UP_IP), v4(NET), 6, nat, 80, 0x02, b"");
    let quote = &sent[14..14 + 28];
    let f = port_unreachable_from_router(quote);
    let out = b.send(Iface::Uplink, &f);
    assert_eq!(out.len(), 1, "{:?}", b.e.stats());
    let (to, g) = &out[0];
    assert_eq!(*to, Iface::Client(b.vm));
    assert_eq!(&g[30..34], &VIS_IP.octets(), "outer destination");
    assert_eq!(&g[42 + 12..42 + 16], &VIS_IP.octets(), "quoted source");
    assert_eq!(u16::from_be_bytes([g[62], g[63]]), 41000, "quoted port");
    assert_eq!(finish(0, &g[34..]), 0, "ICMP checksum");
    assert_eq!(finish(0, &g[14..34]), 0, "outer IP checksum");
    assert_eq!(finish(0, &g[42..62]), 0, "quoted IP checksum");
}

#[test]
fn rules_of_the_real_address_apply_and_errors_come_from_the_visible_gateway() {
    // Only UDP to port 53 is allowed: a TCP SYN is rejected.
    let mut b = mapped(&[
        ("policy", "drop"),
        ("0000", "action=accept proto=udp dstports=53-53"),
    ]);
    let out = b.send(Iface::Client(b.vm), &from_vm(VIS_IP, 6, 1234, 80, 0x02));
    assert_eq!(out.len(), 1);
    let (to, f) = &out[0];
    assert_eq!(*to, Iface::Client(b.vm));
    assert_eq!((f[34], f[35]), (3, 13), "admin prohibited");
    assert_eq!(&f[26..30], &VIS_GW.octets(), "from the visible gateway");
    assert_eq!(&f[30..34], &VIS_IP.octets(), "to the visible address");
    assert_eq!(
        &f[42 + 12..42 + 16],
        &VIS_IP.octets(),
        "quoting what it sent"
    );
    assert_checksums(f);
    assert_eq!(b.e.stats().drops_for(Drop::Rejected), 1);
    let f = out_on_uplink(&mut b, &from_vm(VIS_IP, 17, 1, 53, 0));
    assert_checksums(&f);
    // TTL 1: time exceeded from the visible gateway too.
    let mut t = from_vm(VIS_IP, 17, 2, 53, 0);
    t[22] = 1;
    t[24..26].copy_from_slice(&[0, 0]);
    let c = finish(0, &t[14..34]);
    t[24..26].copy_from_slice(&c.to_be_bytes());
    let out = b.send(Iface::Client(b.vm), &t);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1[34], 11);
    assert_eq!(&out[0].1[26..30], &VIS_GW.octets());
    assert_eq!(&out[0].1[30..34], &VIS_IP.octets());
}

#[test]
fn arp_for_the_visible_gateway_is_answered_and_the_real_address_is_a_spoof() {
    let mut b = mapped(ALLOW_ALL);
    for target in [VIS_GW, FW_IP] {
        let out = b.send(Iface::Client(b.vm), &arp_request(VIS_IP, target));
        assert_eq!(out.len(), 1);
        let (to, f) = &out[0];
        assert_eq!(*to, Iface::Client(b.vm));
        assert_eq!(&f[0..6], &VM_MAC);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[22..28], &CLIENT_SIDE_MAC);
        assert_eq!(&f[28..32], &target.octets());
        assert_eq!(&f[38..42], &VIS_IP.octets());
    }
    // Its own (visible) address is not answered (duplicate detection).
    assert!(b
        .send(Iface::Client(b.vm), &arp_request(VIS_IP, VIS_IP))
        .is_empty());
    // Claiming the real address is a spoof now.
    assert!(b
        .send(Iface::Client(b.vm), &arp_request(VM_IP, VIS_GW))
        .is_empty());
    assert_eq!(b.e.stats().drops_for(Drop::SpoofedArp), 1);
}

#[test]
fn sources_other_than_the_visible_address_are_dropped() {
    let mut b = mapped(ALLOW_ALL);
    for src in [VM_IP, VM2_IP, VIS2_IP, UP_IP, FW_IP] {
        assert!(b
            .send(Iface::Client(b.vm), &from_vm(src, 17, 7, 53, 0))
            .is_empty());
    }
    assert_eq!(b.e.stats().drops_for(Drop::SpoofedIp), 5);
    assert_eq!(b.e.client_stats(b.vm).unwrap().spoofed, 5);
    assert_eq!(b.e.flow_count(), 0);
}

#[test]
fn mapping_added_changed_removed_live() {
    let mut b = Bed::new(ALLOW_ALL);
    let udp = |src| from_vm(src, 17, 7, 53, 0);
    // Unmapped: the real address.
    out_on_uplink(&mut b, &udp(VM_IP));
    assert_eq!(b.e.client_flows(b.vm), 1);
    // Added: the flows go, the real address is a spoof.
    assert!(b.e.set_address_map(b.vm, MAPPED));
    assert!(!b.e.set_address_map(b.vm, MAPPED), "unchanged");
    assert_eq!(b.e.client_flows(b.vm), 0);
    assert!(b.send(Iface::Client(b.vm), &udp(VM_IP)).is_empty());
    out_on_uplink(&mut b, &udp(VIS_IP));
    // Changed.
    let moved = AddressMap::Mapped {
        visible_ip: VIS2_IP,
        visible_gateway: VIS_GW,
    };
    assert!(b.e.set_address_map(b.vm, moved));
    assert_eq!(b.e.client_flows(b.vm), 0);
    assert!(b.send(Iface::Client(b.vm), &udp(VIS_IP)).is_empty());
    out_on_uplink(&mut b, &udp(VIS2_IP));
    // Invalid: everything from the client is dropped, ARP too.
    assert!(b.e.set_address_map(b.vm, AddressMap::Invalid));
    for f in [
        udp(VIS2_IP),
        udp(VM_IP),
        arp_request(VM_IP, FW_IP),
        echo(VM_MAC, CLIENT_SIDE_MAC, v4(VM_IP), v4(FW_IP), 1),
    ] {
        assert!(b.send(Iface::Client(b.vm), &f).is_empty());
    }
    assert_eq!(b.e.stats().drops_for(Drop::BadAddressMap), 4);
    // Mapped to its own address is no mapping.
    let same = AddressMap::Mapped {
        visible_ip: VM_IP,
        visible_gateway: VIS_GW,
    };
    assert!(b.e.set_address_map(b.vm, same));
    assert_eq!(b.e.address_map(b.vm), Some(AddressMap::Identity));
    out_on_uplink(&mut b, &udp(VM_IP));
    // Removed (from mapped).
    b.e.set_address_map(b.vm, MAPPED);
    assert!(b.e.set_address_map(b.vm, AddressMap::Identity));
    assert!(b.send(Iface::Client(b.vm), &udp(VIS_IP)).is_empty());
    out_on_uplink(&mut b, &udp(VM_IP));
}

#[test]
fn ipv6_of_a_mapped_client_is_unchanged() {
    let mut b = mapped(ALLOW_ALL);
    let f = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        IpAddr::V6(VM_IP6),
        IpAddr::V6(NET6),
        17,
        4000,
        53,
        0,
        b"x",
    );
    let g = out_on_uplink(&mut b, &f);
    assert_eq!(&g[22..38], &UP_IP6.octets());
    assert_checksums(&g);
}

#[test]
fn gso_super_packets_from_the_visible_address_segment_with_valid_checksums() {
    let mut b = mapped(ALLOW_ALL);
    let f = out_on_uplink(&mut b, &from_vm(VIS_IP, 6, 42000, 80, 0x02));
    let nat = u16::from_be_bytes([f[34], f[35]]);
    let synack = l4_frame(GW_MAC, FW_UP_MAC, v4(NET), v4(UP_IP), 6, 80, nat, 0x12, b"");
    assert_eq!(b.send(Iface::Uplink, &synack).len(), 1);
    // A 6000-byte TCP super-packet with a partial checksum, as a Linux
    // client with TSO sends it.
    let payload: Vec<u8> = (0..6000u32).map(|i| (i * 7) as u8).collect();
    let mut g = l4_frame(
        VM_MAC,
        CLIENT_SIDE_MAC,
        v4(VIS_IP),
        v4(NET),
        6,
        42000,
        80,
        0x18,
        &payload,
    );
    make_partial_v4(&mut g, VIS_IP, NET, 6, 16);
    let mut f = Frame::from_bytes(&mut b.pool, &g).unwrap();
    f.csum = Checksum::Partial;
    f.gso = Some(xen::frame::Gso {
        kind: xen::frame::GsoType::TcpV4,
        mss: 1448,
    });
    let mut out = Out::default();
    b.now += 1_000_000;
    b.e.handle(b.now, Iface::Client(b.vm), f, &mut b.pool, &mut out);
    assert_eq!(out.0.len(), 1, "{:?}", b.e.stats());
    let (to, sent) = out.0.pop().unwrap();
    assert_eq!(to, Iface::Uplink);
    assert_eq!(sent.len(), g.len(), "kept whole");
    assert!(sent.gso.is_some());
    let mut segs = Vec::new();
    let n =
        xen::frame::offload::segment_to_frames(&mut b.pool, &sent, false, &mut |s| segs.push(s))
            .unwrap();
    assert_eq!(n, 5);
    let mut got = Vec::new();
    for s in segs {
        let bytes = s.to_vec(&b.pool);
        s.free(&mut b.pool);
        assert_eq!(&bytes[26..30], &UP_IP.octets());
        assert_eq!(u16::from_be_bytes([bytes[34], bytes[35]]), nat);
        assert_checksums(&bytes);
        let h = parse_bytes(&bytes).unwrap();
        got.extend_from_slice(&bytes[h.payload_offset..h.l4_end]);
    }
    sent.free(&mut b.pool);
    assert_eq!(got, payload);
}
