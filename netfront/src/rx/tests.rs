//! Every malformed receive case, and the well-formed ones.

use super::*;
use xen::memory::LocalPages;

const ALL: RxConfig = RxConfig {
    sg: true,
    gso_tcpv4: true,
    gso_tcpv6: true,
};

/// A data slot at ring index `i` (posted id `i`).
fn data(i: u16, offset: u16, status: i16, flags: u16) -> RxSlot {
    RxSlot {
        rsp: NetifRxResponse {
            id: i,
            offset,
            flags,
            status,
        },
        posted: Some(i),
    }
}

/// An extra slot at ring index `i` (the bytes of `e` overlaying a
/// response).
fn extra(i: u16, e: NetifExtraInfo) -> RxSlot {
    let p = LocalPages::new(1);
    let m = p.mem();
    xen::ring::RingEntry::write(&e, &m, 0);
    RxSlot {
        rsp: <NetifRxResponse as xen::ring::RingEntry>::read(&m, 0),
        posted: Some(i),
    }
}

fn gso(ty: u8, mss: u16, more: bool) -> NetifExtraInfo {
    NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_GSO,
        flags: if more { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 },
        gso: NetifExtraInfoGso {
            size: mss,
            r#type: ty,
            pad: 0,
            features: 0,
        },
    }
}

fn packet(out: Result<RxOutcome, RxError>) -> RxPacket {
    match out {
        Ok(RxOutcome::Packet(p)) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

#[test]
fn extra_overlay_matches_the_wire() {
    let e = gso(XEN_NETIF_GSO_TYPE_TCPV6, 1440, true);
    let s = extra(0, e);
    assert_eq!(extra_of(&s.rsp), e);
}

#[test]
fn single_slot_packet() {
    let w = [data(5, 10, 1500, NETRXF_DATA_VALIDATED)];
    let p = packet(parse_packet(&w, 5, &RxConfig::default()));
    assert_eq!(p.slots, 1);
    assert_eq!(p.len, 1500);
    assert_eq!(p.csum, Checksum::Validated);
    assert_eq!(p.gso, None);
    assert_eq!(
        p.data(),
        &[DataSlot {
            slot: 0,
            offset: 10,
            len: 1500
        }]
    );
}

#[test]
fn checksum_flags() {
    let f = |flags| packet(parse_packet(&[data(0, 0, 60, flags)], 0, &ALL)).csum;
    assert_eq!(f(0), Checksum::Unverified);
    assert_eq!(f(NETRXF_DATA_VALIDATED), Checksum::Validated);
    assert_eq!(f(NETRXF_CSUM_BLANK), Checksum::Partial);
    assert_eq!(
        f(NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED),
        Checksum::Partial
    );
    // Unknown high flag bits are ignored.
    assert_eq!(f(0x8000), Checksum::Unverified);
}

#[test]
fn multi_slot_gso_packet() {
    let w = [
        data(
            0,
            0,
            4096,
            NETRXF_MORE_DATA | NETRXF_EXTRA_INFO | NETRXF_CSUM_BLANK,
        ),
        extra(1, gso(XEN_NETIF_GSO_TYPE_TCPV4, 1448, false)),
        data(2, 0, 4096, NETRXF_MORE_DATA),
        data(3, 100, 0, NETRXF_MORE_DATA),
        data(4, 0, 808, 0),
    ];
    let p = packet(parse_packet(&w, 0, &ALL));
    assert_eq!(p.slots, 5);
    assert_eq!(p.len, 4096 * 2 + 808);
    assert_eq!(p.csum, Checksum::Partial);
    assert_eq!(
        p.gso,
        Some(Gso {
            kind: GsoType::TcpV4,
            mss: 1448
        })
    );
    let slots: alloc::vec::Vec<u8> = p.data().iter().map(|d| d.slot).collect();
    assert_eq!(slots, [0, 2, 3, 4]);
    assert_eq!(p.data()[2].len, 0);
}

#[test]
fn ignored_extra_types_and_chains() {
    let mcast = NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        flags: 0,
        gso: NetifExtraInfoGso::default(),
    };
    let w = [
        data(7, 0, 100, NETRXF_EXTRA_INFO),
        extra(8, gso(XEN_NETIF_GSO_TYPE_TCPV6, 1200, true)),
        extra(9, mcast),
    ];
    let p = packet(parse_packet(&w, 7, &ALL));
    assert_eq!(p.slots, 3);
    assert_eq!(p.gso.map(|g| g.kind), Some(GsoType::TcpV6));
}

#[test]
fn incomplete_packets_wait() {
    let cfg = ALL;
    assert_eq!(parse_packet(&[], 0, &cfg), Ok(RxOutcome::Incomplete));
    // more_data beyond what is published.
    let w = [data(0, 0, 4096, NETRXF_MORE_DATA)];
    assert_eq!(parse_packet(&w, 0, &cfg), Ok(RxOutcome::Incomplete));
    // extra_info, extra not there yet.
    let w = [data(0, 0, 60, NETRXF_EXTRA_INFO)];
    assert_eq!(parse_packet(&w, 0, &cfg), Ok(RxOutcome::Incomplete));
    // extra chain with MORE, next not there.
    let w = [
        data(0, 0, 60, NETRXF_EXTRA_INFO),
        extra(1, gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, true)),
    ];
    assert_eq!(parse_packet(&w, 0, &cfg), Ok(RxOutcome::Incomplete));
}

#[test]
fn dropped_packets_consume_their_chain() {
    // A negative status on any slot drops the packet, chain included.
    let w = [
        data(0, 0, 4096, NETRXF_MORE_DATA),
        data(1, 0, NETIF_RSP_ERROR, NETRXF_MORE_DATA),
        data(2, 0, 10, 0),
        data(3, 0, 60, 0),
    ];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Ok(RxOutcome::Dropped {
            slots: 3,
            reason: RxDrop::Status(NETIF_RSP_ERROR)
        })
    );
    let w = [data(0, 9999, NETIF_RSP_DROPPED, 0)];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Ok(RxOutcome::Dropped {
            slots: 1,
            reason: RxDrop::Status(NETIF_RSP_DROPPED)
        })
    );
    // Empty.
    let w = [data(0, 0, 0, 0)];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Ok(RxOutcome::Dropped {
            slots: 1,
            reason: RxDrop::Empty
        })
    );
}

#[test]
fn linux_allowance_of_nineteen_slots_is_dropped() {
    let mut w = alloc::vec![data(0, 0, 128, NETRXF_MORE_DATA)];
    for i in 1..19 {
        let flags = if i < 18 { NETRXF_MORE_DATA } else { 0 };
        w.push(data(i, 0, 1000, flags));
    }
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Ok(RxOutcome::Dropped {
            slots: 19,
            reason: RxDrop::TooManySlots
        })
    );
    // 18 is fine.
    w.truncate(18);
    w[17].rsp.flags = 0;
    assert_eq!(packet(parse_packet(&w, 0, &ALL)).data().len(), 18);
}

#[test]
fn too_many_slots_is_a_violation() {
    // 19 slots with a big first slot.
    let mut w = alloc::vec![data(0, 0, 1000, NETRXF_MORE_DATA)];
    for i in 1..19 {
        w.push(data(i, 0, 1000, if i < 18 { NETRXF_MORE_DATA } else { 0 }));
    }
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::TooManySlots { slots: 19 })
    );
    // 20 with a small first slot.
    let mut w = alloc::vec![data(0, 0, 100, NETRXF_MORE_DATA)];
    for i in 1..30 {
        w.push(data(i, 0, 100, NETRXF_MORE_DATA));
    }
    assert_eq!(
        parse_packet(&w[..RX_WINDOW], 0, &ALL),
        Err(RxError::TooManySlots { slots: 20 })
    );
}

#[test]
fn position_and_id_violations() {
    // No buffer posted at the first position.
    let mut s = data(3, 0, 60, 0);
    s.posted = None;
    assert_eq!(
        parse_packet(&[s], 3, &ALL),
        Err(RxError::NoBuffer { index: 3 })
    );
    // Wrong id.
    let mut s = data(3, 0, 60, 0);
    s.rsp.id = 4;
    assert_eq!(
        parse_packet(&[s], 3, &ALL),
        Err(RxError::WrongId {
            index: 3,
            id: 4,
            posted: 3
        })
    );
    // Wrong id on a later slot.
    let mut w = [data(0, 0, 100, NETRXF_MORE_DATA), data(1, 0, 100, 0)];
    w[1].rsp.id = 200;
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::WrongId {
            index: 1,
            id: 200,
            posted: 1
        })
    );
    // No buffer at the extra's position.
    let mut e = extra(1, gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, false));
    e.posted = None;
    let w = [data(0, 0, 100, NETRXF_EXTRA_INFO), e];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::NoBuffer { index: 1 })
    );
    // Indices wrap.
    let mut s = data(0, 0, 60, 0);
    s.rsp.id = 1;
    assert_eq!(
        parse_packet(&[s], u32::MAX, &ALL),
        Err(RxError::WrongId {
            index: u32::MAX,
            id: 1,
            posted: 0
        })
    );
}

#[test]
fn offsets_past_the_page() {
    for (off, len) in [(0u16, 4097i16), (4096, 1), (4000, 97), (u16::MAX, 1)] {
        let w = [data(0, off, len, 0)];
        assert_eq!(
            parse_packet(&w, 0, &ALL),
            Err(RxError::PastPage {
                index: 0,
                offset: off,
                len: len as u16
            })
        );
    }
    // Also on a later slot, and even when another slot has a negative
    // status.
    let w = [
        data(0, 0, NETIF_RSP_ERROR, NETRXF_MORE_DATA),
        data(1, 4000, 200, 0),
    ];
    assert!(matches!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::PastPage { index: 1, .. })
    ));
    // Exactly to the end is fine.
    assert_eq!(
        packet(parse_packet(&[data(0, 4000, 96, 0)], 0, &ALL)).len,
        96
    );
}

#[test]
fn multi_slot_needs_sg() {
    let w = [data(0, 0, 100, NETRXF_MORE_DATA), data(1, 0, 100, 0)];
    assert_eq!(
        parse_packet(&w, 0, &RxConfig::default()),
        Err(RxError::NotSg)
    );
}

#[test]
fn bad_flags() {
    assert_eq!(
        parse_packet(&[data(0, 0, 60, NETRXF_GSO_PREFIX)], 0, &ALL),
        Err(RxError::GsoPrefix { index: 0 })
    );
    let w = [
        data(0, 0, 100, NETRXF_MORE_DATA),
        data(1, 0, 100, NETRXF_EXTRA_INFO),
    ];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::LateExtra { index: 1 })
    );
    let w = [
        data(0, 0, 100, NETRXF_MORE_DATA),
        data(1, 0, 100, NETRXF_GSO_PREFIX),
    ];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::GsoPrefix { index: 1 })
    );
}

#[test]
fn bad_extras() {
    let with = |e: NetifExtraInfo, cfg: RxConfig| {
        parse_packet(&[data(0, 0, 100, NETRXF_EXTRA_INFO), extra(1, e)], 0, &cfg)
    };
    let mut e = gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, false);
    for ty in [XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_EXTRA_TYPE_MAX, 200] {
        e.r#type = ty;
        assert_eq!(with(e, ALL), Err(RxError::UnknownExtra { ty }));
    }
    // GSO types we did not advertise, unknown GSO types, MSS 0.
    let only_v4 = RxConfig {
        gso_tcpv6: false,
        ..ALL
    };
    assert_eq!(
        with(gso(XEN_NETIF_GSO_TYPE_TCPV6, 1000, false), only_v4),
        Err(RxError::BadGso { ty: 2, mss: 1000 })
    );
    assert_eq!(
        with(
            gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, false),
            RxConfig::default()
        ),
        Err(RxError::BadGso { ty: 1, mss: 1000 })
    );
    for ty in [XEN_NETIF_GSO_TYPE_NONE, 3, 255] {
        assert_eq!(
            with(gso(ty, 1000, false), ALL),
            Err(RxError::BadGso { ty, mss: 1000 })
        );
    }
    assert_eq!(
        with(gso(XEN_NETIF_GSO_TYPE_TCPV4, 0, false), ALL),
        Err(RxError::BadGso { ty: 1, mss: 0 })
    );
    // Twice the same type.
    let w = [
        data(0, 0, 100, NETRXF_EXTRA_INFO),
        extra(1, gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, true)),
        extra(2, gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, false)),
    ];
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::DuplicateExtra { ty: 1 })
    );
}

#[test]
fn packets_over_64k_are_violations() {
    let mut w = alloc::vec::Vec::new();
    for i in 0..17 {
        let flags = if i < 16 { NETRXF_MORE_DATA } else { 0 };
        w.push(data(i, 0, 4096, flags));
    }
    assert_eq!(
        parse_packet(&w, 0, &ALL),
        Err(RxError::TooLong { len: 17 * 4096 })
    );
}

#[test]
fn assembler_tracks_posted_slots_and_wraps() {
    let pages = LocalPages::new(1);
    let start = u32::MAX - 2;
    let mut ring = FrontRing::<NetifRx>::init_at(pages.mem(), start);
    let mut back = xen::ring::BackRing::<NetifRx>::attach_at(pages.mem(), start);
    let mut asm = RxAssembler::new(start);
    for k in 0..6u32 {
        let at = ring.req_prod_pvt();
        assert_eq!(at, start.wrapping_add(k));
        assert!(!asm.is_posted(at));
        ring.push_request(&NetifRxRequest {
            id: (at & MASK) as u16,
            pad: 0,
            gref: 100 + k,
        })
        .unwrap();
        asm.post(at);
    }
    ring.push_requests_and_check_notify();
    back.poll_requests().unwrap();
    // Two packets: one slot, then two slots.
    let ids: alloc::vec::Vec<u16> = (0..3).map(|_| back.next_request().unwrap().id).collect();
    back.push_response(&NetifRxResponse {
        id: ids[0],
        offset: 0,
        flags: 0,
        status: 60,
    })
    .unwrap();
    back.push_response(&NetifRxResponse {
        id: ids[1],
        offset: 0,
        flags: NETRXF_MORE_DATA,
        status: 4096,
    })
    .unwrap();
    back.push_responses_and_check_notify();
    assert_eq!(asm.ingest(&mut ring), Ok(2));
    let p = packet(asm.next_packet(&ALL));
    assert_eq!(p.slots, 1);
    asm.consume(1);
    assert!(!asm.is_posted(start));
    assert_eq!(asm.next_packet(&ALL), Ok(RxOutcome::Incomplete));
    back.push_response(&NetifRxResponse {
        id: ids[2],
        offset: 0,
        flags: 0,
        status: 10,
    })
    .unwrap();
    back.push_responses_and_check_notify();
    assert_eq!(asm.ingest(&mut ring), Ok(1));
    let p = packet(asm.next_packet(&ALL));
    assert_eq!((p.slots, p.len), (2, 4106));
    assert_eq!(asm.parse_index(), start.wrapping_add(1));
    asm.consume(p.slots);
    assert_eq!(asm.unparsed(), 0);
    // Consuming more than there is stops at what there is.
    asm.consume(5);
    assert_eq!(asm.parse_index(), start.wrapping_add(3));
    // A response beyond the requests is a ring error, nothing consumed.
    pages.mem().store_u32(
        8,
        start.wrapping_add(7),
        core::sync::atomic::Ordering::SeqCst,
    );
    assert!(asm.ingest(&mut ring).is_err());
    assert_eq!(asm.unparsed(), 0);
}
