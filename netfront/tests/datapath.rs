//! netfront against a scripted Linux-netback on the simulated Xen: the
//! handshake and the keys it writes, frames both ways (single and
//! multi-slot), checksum flags, GSO, and the degraded paths for a backend
//! without SG/GSO or with checksum offload off.

mod common;

use common::packets::*;
use common::*;
use netfront::{Features, LinkState};
use xen::abi::netif::*;
use xen::abi::PAGE_SIZE;
use xen::frame::{Checksum, Gso, GsoType};
use xen::xenbus::XenbusState;

fn gso4(mss: u16) -> Option<Gso> {
    Some(Gso {
        kind: GsoType::TcpV4,
        mss,
    })
}

#[test]
fn handshake_writes_the_keys_and_posts_buffers() {
    let mut h = Harness::new("fw-handshake", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-handshake", 0);
    // Backend still Initialising: the frontend adopts the device, waits,
    // writes nothing.
    let s = h.wait("device adopted", |s| s.devid == Some(0));
    assert_eq!(s.link, Some(LinkState::Down));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(b.front_key("tx-ring-ref"), None);
    assert_eq!(b.front_state(), XenbusState::Initialising);

    b.publish(LINUX_FEATURES);
    b.wait_front(XenbusState::Connected);
    for key in ["tx-ring-ref", "rx-ring-ref", "event-channel"] {
        let v = b.front_key(key).unwrap_or_else(|| panic!("{key}"));
        assert!(v.parse::<u32>().is_ok(), "{key} = {v}");
    }
    for (key, want) in [
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("feature-no-csum-offload", "0"),
    ] {
        assert_eq!(b.front_key(key).as_deref(), Some(want), "{key}");
    }
    // No multi-queue, no split channels.
    assert_eq!(b.front_key("multi-queue-num-queues"), None);
    assert_eq!(b.front_key("event-channel-tx"), None);
    // Waiting for the backend to connect. The frontend publishes its status
    // after the xenstore writes the backend just saw, so wait for it.
    let s = h.wait("link connecting", |s| s.link != Some(LinkState::Down));
    assert_eq!(s.link, Some(LinkState::Connecting));
    b.connect();
    let s = h.wait_up(1);
    assert_eq!(s.mac, Some([0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00]));
    assert_eq!(s.mtu, Some(1500));
    assert_eq!(s.devid, Some(0));
    assert_eq!(s.backend_id, Some(b.id));
    assert_eq!(s.negotiated, Some(Features::ALL));
    // Every rx slot gets a buffer, ids = slot index.
    b.wait_rx_requests(256);
    let c = b.conn.as_mut().unwrap();
    for i in 0..256u16 {
        let r = c.rx.next_request().unwrap();
        assert_eq!(r.id, i);
    }
    let s = h.status();
    assert_eq!(s.pool_available, POOL_PAGES - 256);
    assert!(s.stats.notifications_sent >= 1);
    assert_eq!(h.warnings(), Vec::<String>::new());
    // Stopping while the backend still maps the rings: the ring pages wait
    // in quarantine (their grants stay), every pool page is back.
    let r = h.stop();
    assert_eq!(r.pool_available, POOL_PAGES, "{r:?}");
    assert_eq!(r.quarantined, 0);
    assert_eq!(r.grants_free, r.grants_free_initially - 2, "{r:?}");
    assert_eq!(b.front_state(), XenbusState::Closed);
}

#[test]
fn frames_both_ways_single_and_multi_slot() {
    let mut h = Harness::new("fw-frames", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-frames", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);

    // TX: one slot, one full frame, a three-segment frame at odd offsets.
    let small = raw(60, 1);
    h.send(TxSpec::plain(small.clone()));
    let p = b.recv_tx();
    assert_eq!(
        (p.bytes.as_slice(), p.slots, p.flags),
        (small.as_slice(), 1, 0)
    );
    let full = tcp4(1460, 2);
    h.send(TxSpec::plain(full.clone()));
    assert_eq!(b.recv_tx().bytes, full);
    let big = raw(1000 + 4096 + 500, 3);
    h.send(TxSpec {
        layout: vec![(100, 1000), (0, 4096), (3000, 500)],
        ..TxSpec::plain(big.clone())
    });
    let (p, rsps) = b.recv_tx_with(NETIF_RSP_OKAY, false);
    assert_eq!(p.bytes, big);
    assert_eq!(p.slots, 3);
    assert_eq!(p.flags, NETTXF_MORE_DATA);
    // Distinct ids; the read-only grants expose nothing but the segments.
    let mut ids = p.ids.clone();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for (gref, (off, len)) in p.grefs.iter().zip([(100, 1000), (0, 4096), (3000, 500)]) {
        let page = b.peek_grant(*gref);
        assert!(
            page[..off].iter().all(|&x| x == 0),
            "bytes before the segment"
        );
        assert!(page[off + len..].iter().all(|&x| x == 0), "bytes after");
    }
    b.answer_tx(&rsps);
    // Answered frames' pages and grants come back.
    h.wait("tx pages back", |s| s.pool_available == POOL_PAGES - 256);

    // RX: one slot, three slots with an offset, many small slots.
    b.send_rx(&RxPacket::plain(small.clone()));
    let r = h.wait_received(1);
    assert_eq!(
        (r[0].bytes.as_slice(), r[0].segments),
        (small.as_slice(), 1)
    );
    assert_eq!(r[0].csum, Checksum::Unverified);
    let jumbo = raw(9000, 4);
    b.send_rx(&RxPacket {
        offset: 64,
        ..RxPacket::plain(jumbo.clone())
    });
    let r = h.wait_received(1);
    assert_eq!(r[0].bytes, jumbo);
    assert_eq!(r[0].segments, 3);
    let chopped = raw(18 * 100, 5);
    b.send_rx(&RxPacket {
        chunk: 100,
        ..RxPacket::plain(chopped.clone())
    });
    let r = h.wait_received(1);
    assert_eq!(
        (r[0].bytes.as_slice(), r[0].segments),
        (chopped.as_slice(), 18)
    );

    // A first segment shorter than an Ethernet header gets a pulled head.
    let tiny = tcp4(1000, 6);
    h.send(TxSpec {
        layout: vec![(4090, 6), (0, 500), (100, tiny.len() - 506)],
        ..TxSpec::plain(tiny.clone())
    });
    let p = b.recv_tx();
    assert_eq!(p.bytes, tiny);
    assert_eq!(p.slots, 3);
    assert_eq!(h.status().stats.tx_head_pulled, 1);

    // A burst both ways, more than the ring holds in flight.
    for i in 0..300u32 {
        h.send(TxSpec::plain(raw(64 + (i as usize % 1400), i as u8)));
    }
    for i in 0..300u32 {
        let p = b.recv_tx();
        assert_eq!(p.bytes, raw(64 + (i as usize % 1400), i as u8), "frame {i}");
    }
    for i in 0..300u32 {
        b.send_rx(&RxPacket::plain(raw(100 + i as usize, i as u8)));
    }
    let mut got = Vec::new();
    while got.len() < 300 {
        got.extend(h.wait_received(1));
    }
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.bytes, raw(100 + i, i as u8), "rx frame {i}");
    }
    let s = h.wait("counters", |s| {
        s.stats.tx_frames == 304 && s.stats.rx_frames == 303
    });
    assert_eq!(
        s.stats.tx_bytes,
        (60 + 1514 + 5596 + 1054) + (0..300).map(|i| 64 + i % 1400).sum::<u64>()
    );
    assert_eq!(s.stats.rx_dropped, Default::default());
    assert_eq!(s.stats.tx_dropped, Default::default());
    assert_eq!(h.warnings(), Vec::<String>::new());
    h.close_and_check_all_returned(&mut b);
}

#[test]
fn checksum_flags_both_ways() {
    let h = Harness::new("fw-csum", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-csum", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    for (flags, want) in [
        (0, Checksum::Unverified),
        (NETRXF_DATA_VALIDATED, Checksum::Validated),
        (NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED, Checksum::Partial),
        (NETRXF_CSUM_BLANK, Checksum::Partial),
    ] {
        b.send_rx(&RxPacket {
            flags,
            ..RxPacket::plain(tcp4(100, 1))
        });
        assert_eq!(h.wait_received(1)[0].csum, want, "flags {flags:#x}");
    }
    let mut partial4 = tcp4(1000, 2);
    make_partial(&mut partial4);
    let mut partial6 = tcp6(1000, 3);
    make_partial(&mut partial6);
    for (bytes, csum, want) in [
        (tcp4(100, 1), Checksum::Unverified, 0),
        (tcp4(100, 1), Checksum::Validated, NETTXF_DATA_VALIDATED),
        (
            partial4.clone(),
            Checksum::Partial,
            NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
        ),
        // The backend offers feature-ipv6-csum-offload.
        (
            partial6.clone(),
            Checksum::Partial,
            NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
        ),
    ] {
        h.send(TxSpec {
            csum,
            ..TxSpec::plain(bytes.clone())
        });
        let p = b.recv_tx();
        assert_eq!(p.flags, want, "{csum:?}");
        // Sent as is: a partial checksum stays partial.
        assert_eq!(p.bytes, bytes);
    }
    assert_eq!(h.status().stats.tx_csum_completed, 0);
}

#[test]
fn gso_both_ways() {
    let h = Harness::new("fw-gso", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-gso", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    // TX: one super-packet with a GSO extra.
    let mut big4 = tcp4(20_000, 7);
    make_partial(&mut big4);
    h.send(TxSpec {
        csum: Checksum::Partial,
        gso: gso4(1448),
        ..TxSpec::plain(big4.clone())
    });
    let p = b.recv_tx();
    assert_eq!(p.bytes, big4);
    assert_eq!(p.gso, Some((XEN_NETIF_GSO_TYPE_TCPV4, 1448)));
    assert_eq!(p.slots, big4.len().div_ceil(PAGE_SIZE));
    assert_eq!(
        p.flags,
        NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED | NETTXF_MORE_DATA | NETTXF_EXTRA_INFO
    );
    let mut big6 = tcp6(30_000, 8);
    make_partial(&mut big6);
    h.send(TxSpec {
        csum: Checksum::Partial,
        gso: Some(Gso {
            kind: GsoType::TcpV6,
            mss: 1428,
        }),
        ..TxSpec::plain(big6.clone())
    });
    let p = b.recv_tx();
    assert_eq!(
        (p.bytes == big6, p.gso),
        (true, Some((XEN_NETIF_GSO_TYPE_TCPV6, 1428)))
    );

    // RX: a super-packet with its extra after the first slot.
    b.send_rx(&RxPacket {
        flags: NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED,
        gso: Some((XEN_NETIF_GSO_TYPE_TCPV4, 1448)),
        ..RxPacket::plain(big4.clone())
    });
    let r = h.wait_received(1);
    assert_eq!(r[0].bytes, big4);
    assert_eq!(r[0].gso, gso4(1448));
    assert_eq!(r[0].csum, Checksum::Partial);
    assert_eq!(r[0].segments, big4.len().div_ceil(PAGE_SIZE));
    // The extra's buffer came back too.
    h.wait("buffers reposted", |s| s.pool_available == POOL_PAGES - 256);
    assert_eq!(h.status().stats.tx_segmented, 0);
    assert_eq!(h.warnings(), Vec::<String>::new());
}

#[test]
fn backend_without_sg_or_gso_gets_degraded_frames() {
    let mut h = Harness::new("fw-degraded", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-degraded", 0);
    b.bring_up(MINIMAL_FEATURES);
    let s = h.wait_up(1);
    assert_eq!(
        s.negotiated,
        Some(Features {
            sg: false,
            gso_tcpv4: false,
            gso_tcpv6: false,
            csum_offload: true,
            ipv6_csum_offload: false,
        })
    );
    // GSO: cut in software, each segment one slot, still csum_blank (IPv4).
    let mut big = tcp4(20_000, 9);
    make_partial(&mut big);
    h.send(TxSpec {
        csum: Checksum::Partial,
        gso: gso4(1448),
        ..TxSpec::plain(big.clone())
    });
    let mut payload = Vec::new();
    for i in 0..20_000usize.div_ceil(1448) {
        let p = b.recv_tx();
        assert_eq!((p.slots, p.gso), (1, None), "segment {i}");
        assert_eq!(p.flags, NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED);
        assert!(p.bytes.len() <= 14 + 20 + 20 + 1448);
        assert!(is_partial(&p.bytes), "segment {i} keeps a partial checksum");
        payload.extend_from_slice(tcp_payload(&p.bytes));
    }
    assert_eq!(payload, tcp_payload(&big));
    // IPv6 partial checksum: the backend has no IPv6 offload → completed.
    let mut p6 = tcp6(500, 10);
    make_partial(&mut p6);
    h.send(TxSpec {
        csum: Checksum::Partial,
        ..TxSpec::plain(p6)
    });
    let p = b.recv_tx();
    assert_eq!(p.flags, NETTXF_DATA_VALIDATED);
    assert!(l4_checksum_ok(&p.bytes));
    assert_eq!(p.bytes, tcp6(500, 10));
    // A two-page frame of 1514 bytes: copied into one page.
    let f = tcp4(1460, 11);
    h.send(TxSpec {
        layout: vec![(4000, 96), (0, f.len() - 96)],
        ..TxSpec::plain(f.clone())
    });
    let p = b.recv_tx();
    assert_eq!((p.bytes.as_slice(), p.slots), (f.as_slice(), 1));
    // Larger than a page without GSO: dropped, counted.
    h.send(TxSpec::plain(raw(9000, 12)));
    h.send(TxSpec::plain(raw(70, 13)));
    assert_eq!(b.recv_tx().bytes, raw(70, 13));
    let s = h.status();
    assert_eq!(s.stats.tx_segmented, 1);
    assert_eq!(s.stats.tx_csum_completed, 1);
    assert_eq!(s.stats.tx_linearized, 1);
    assert_eq!(s.stats.tx_dropped.too_big, 1);
    assert_eq!(h.warnings(), Vec::<String>::new());
    let r = h.stop();
    assert_eq!(r.pool_available, POOL_PAGES);
}

#[test]
fn checksums_completed_in_software_when_offload_is_off() {
    let features = Features {
        csum_offload: false,
        ..Features::ALL
    };
    let h = Harness::new("fw-nocsum", 0, features);
    let mut b = Backend::new(&h, "net-nocsum", 0);
    b.bring_up(LINUX_FEATURES);
    let s = h.wait_up(1);
    assert_eq!(b.front_key("feature-no-csum-offload").as_deref(), Some("1"));
    assert_eq!(
        b.front_key("feature-ipv6-csum-offload").as_deref(),
        Some("0")
    );
    // GSO implies partial checksums: not offered either.
    assert_eq!(b.front_key("feature-gso-tcpv4").as_deref(), Some("0"));
    assert_eq!(b.front_key("feature-gso-tcpv6").as_deref(), Some("0"));
    let n = s.negotiated.unwrap();
    assert!(!n.csum_offload && !n.ipv6_csum_offload && !n.gso_tcpv4 && n.sg);
    for full in [tcp4(700, 1), udp4(300, 2), tcp6(900, 3)] {
        let mut partial = full.clone();
        make_partial(&mut partial);
        h.send(TxSpec {
            csum: Checksum::Partial,
            ..TxSpec::plain(partial)
        });
        let p = b.recv_tx();
        assert_eq!(p.flags, NETTXF_DATA_VALIDATED);
        assert!(l4_checksum_ok(&p.bytes));
        assert_eq!(p.bytes, full);
    }
    // GSO needs csum_blank: segmented in software with full checksums.
    let mut big = tcp4(5000, 4);
    make_partial(&mut big);
    h.send(TxSpec {
        csum: Checksum::Partial,
        gso: gso4(1000),
        ..TxSpec::plain(big)
    });
    for _ in 0..5 {
        let p = b.recv_tx();
        assert_eq!((p.flags, p.gso), (NETTXF_DATA_VALIDATED, None));
        assert!(l4_checksum_ok(&p.bytes));
    }
    let s = h.status();
    assert_eq!(s.stats.tx_csum_completed, 3);
    assert_eq!(s.stats.tx_segmented, 1);
    // A partial frame that is not TCP/UDP cannot be completed: dropped.
    h.send(TxSpec {
        csum: Checksum::Partial,
        ..TxSpec::plain(raw(100, 5))
    });
    h.send(TxSpec::plain(raw(80, 6)));
    assert_eq!(b.recv_tx().bytes, raw(80, 6));
    assert_eq!(h.status().stats.tx_dropped.malformed, 1);
}

#[test]
fn backend_errors_and_drops_are_counted() {
    let h = Harness::new("fw-drops", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-drops", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    h.send(TxSpec::plain(raw(100, 1)));
    b.recv_tx_with(NETIF_RSP_ERROR, true);
    h.send(TxSpec::plain(raw(100, 2)));
    b.recv_tx_with(NETIF_RSP_DROPPED, true);
    // An rx packet the backend marks dropped, with a chain, then an
    // empty one: both consumed, nothing delivered, buffers reposted.
    b.send_rx_raw(&[
        RawRx::Rsp {
            id: None,
            offset: 0,
            flags: NETRXF_MORE_DATA,
            status: NETIF_RSP_ERROR,
        },
        RawRx::Rsp {
            id: None,
            offset: 0,
            flags: 0,
            status: 100,
        },
        RawRx::Rsp {
            id: None,
            offset: 0,
            flags: 0,
            status: 0,
        },
    ]);
    b.send_rx(&RxPacket::plain(raw(64, 3)));
    assert_eq!(h.wait_received(1)[0].bytes, raw(64, 3));
    let s = h.wait("counters", |s| s.stats.tx_dropped.backend_dropped == 1);
    assert_eq!(s.stats.tx_dropped.backend_error, 1);
    assert_eq!(s.stats.rx_dropped.backend_status, 1);
    assert_eq!(s.stats.rx_dropped.empty, 1);
    assert_eq!(s.link, Some(LinkState::Up));
    h.wait("buffers back", |s| s.pool_available == POOL_PAGES - 256);
    assert_eq!(h.warnings(), Vec::<String>::new());
}

/// Linux netback answers a packet's first slot (copied into the skb head)
/// at once and the other slots (mapped) only when sys-net's stack frees
/// the skb. The first slot's id is then free and reissued while the packet
/// is in flight: the late answers must finish the old packet, not the one
/// that now has that id. (Seen on Xen 4.17 with Linux 6.1 netback: "Grant
/// copy of header failed! status: -1" for packets whose grants we had
/// revoked early, each a lost TCP segment.)
#[test]
fn tx_first_slot_answered_before_the_rest_as_linux_netback_does() {
    let mut h = Harness::new("fw-order", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-order", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    let big = raw(1000 + 4096 + 500, 1);
    h.send(TxSpec {
        layout: vec![(100, 1000), (0, 4096), (3000, 500)],
        ..TxSpec::plain(big.clone())
    });
    let (a, a_rsps) = b.recv_tx_with(NETIF_RSP_OKAY, false);
    assert_eq!((a.bytes.as_slice(), a.slots), (big.as_slice(), 3));
    // The head first; the frontend revokes its grant.
    b.answer_tx(&a_rsps[..1]);
    wait_until("head grant revoked", || !b.grant_valid(a.grefs[0]));
    // The next packet, in flight while the first one's frags still are.
    let small = raw(60, 2);
    h.send(TxSpec::plain(small.clone()));
    let (p, p_rsps) = b.recv_tx_with(NETIF_RSP_OKAY, false);
    assert_eq!(p.bytes, small);
    // The frags' answers: only the first packet's grants go.
    b.answer_tx(&a_rsps[1..]);
    wait_until("frag grants revoked", || {
        !b.grant_valid(a.grefs[1]) && !b.grant_valid(a.grefs[2])
    });
    assert!(
        b.grant_valid(p.grefs[0]),
        "the second packet's grant was revoked by the first one's answers"
    );
    b.answer_tx(&p_rsps);
    let s = h.wait("pages back", |s| {
        s.pool_available == POOL_PAGES - 256 && s.stats.tx_frames == 2
    });
    assert_eq!(s.stats.tx_dropped, Default::default());
    assert_eq!(h.warnings(), Vec::<String>::new());
    h.close_and_check_all_returned(&mut b);
}
