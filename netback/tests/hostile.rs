//! Hostile frontends on the simulated Xen: every protocol violation
//! disconnects only the offending vif (Closing then Closed, exactly one
//! warning naming it) while a second vif keeps moving frames, and nothing
//! leaks. Plus a randomized hostile frontend (proptest).

mod common;

use common::*;
use netback::{Features, NetbackConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use xen::abi::netif::*;
use xen::frame::Checksum;
use xen::sim::SimHost;
use xen::xenbus::XenbusState;

/// One good and one bad client on a fresh backend.
fn pair(cfg: NetbackConfig) -> (SimHost, Backend, Front, Front) {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, cfg);
    let (mut good, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    good.connect(&mut bk, 64);
    let (mut bad, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    bad.connect(&mut bk, 64);
    (host, bk, good, bad)
}

/// `good` still moves frames both ways.
fn still_works(bk: &mut Backend, good: &mut Front) {
    let n = bk.got_from(good.id).len();
    good.queue_simple(&raw_frame(300, 77), 0);
    good.push_tx();
    let want = good.tx_responses.len() + 1;
    good.pump_tx_responses(bk, want);
    assert_eq!(bk.got_from(good.id).len(), n + 1);
    let r = good.received.len();
    bk.send(good.id, &raw_frame(400, 78), Checksum::Unverified, None);
    good.pump_rx(bk, r + 1);
}

/// After `act`, `bad` is disconnected with one warning containing
/// `expect`; the good one is unaffected; the pool is whole again.
fn hostile(cfg: NetbackConfig, expect: &str, act: impl FnOnce(&mut Backend, &mut Front)) {
    let (_host, mut bk, mut good, mut bad) = pair(cfg);
    still_works(&mut bk, &mut good);
    act(&mut bk, &mut bad);
    let id = bad.id;
    bk.pump_until("bad vif disconnected", TIMEOUT, |b| !b.is_connected(id));
    bad.wait_backend(&mut bk, XenbusState::Closed);
    let prefix = format!("vif {}.{}:", id.domid, id.devid);
    let w = warns(&prefix);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(expect), "{:?} lacks {expect:?}", w[0]);
    assert_eq!(all_warns().len(), 1, "{:?}", all_warns());
    assert!(bk.is_connected(good.id));
    still_works(&mut bk, &mut good);
    bk.got.clear();
    bk.step();
    assert_eq!(bk.pool.in_use(), 0, "no pool page leaked");
    assert_eq!(bk.nb.vif(id).unwrap().state, XenbusState::Closed);
}

fn raw_tx(slots: Vec<Raw>) -> impl FnOnce(&mut Backend, &mut Front) {
    move |_bk, f| {
        let slots: Vec<Raw> = slots
            .into_iter()
            .map(|s| match s {
                Raw::Req(mut r) if r.gref == VALID => {
                    r.gref = f.valid_gref();
                    Raw::Req(r)
                }
                s => s,
            })
            .collect();
        f.queue_raw(&slots);
        f.push_tx();
    }
}

/// Stands for "a grant of a real page" in [`raw_tx`].
const VALID: u32 = u32::MAX;

#[test]
fn tx_index_beyond_the_ring() {
    hostile(NetbackConfig::default(), "tx ring", |_bk, f| {
        let ring = f.tx.as_ref().unwrap();
        ring.mem().store_u32(
            0,
            ring.req_prod_pvt().wrapping_add(300),
            core::sync::atomic::Ordering::SeqCst,
        );
        f.notify();
    });
}

#[test]
fn tx_index_behind() {
    hostile(NetbackConfig::default(), "tx ring", |bk, f| {
        f.queue_simple(&raw_frame(100, 1), 0);
        f.push_tx();
        f.pump_tx_responses(bk, 1);
        let ring = f.tx.as_ref().unwrap();
        ring.mem().store_u32(
            0,
            0u32.wrapping_sub(5),
            core::sync::atomic::Ordering::SeqCst,
        );
        f.notify();
    });
}

#[test]
fn rx_index_beyond_the_ring() {
    hostile(NetbackConfig::default(), "rx ring", |_bk, f| {
        let ring = f.rx.as_ref().unwrap();
        ring.mem().store_u32(
            0,
            ring.req_prod_pvt().wrapping_add(1000),
            core::sync::atomic::Ordering::SeqCst,
        );
        f.notify();
    });
}

#[test]
fn more_than_18_slots() {
    let mut s = vec![req(VALID, 0, NETTXF_MORE_DATA, 0, 19 * 10)];
    for i in 1..19u16 {
        s.push(req(
            VALID,
            0,
            if i < 18 { NETTXF_MORE_DATA } else { 0 },
            i,
            10,
        ));
    }
    hostile(NetbackConfig::default(), "more than 18 slots", raw_tx(s));
}

#[test]
fn chain_not_terminated() {
    let s = vec![
        req(VALID, 0, NETTXF_MORE_DATA, 0, 200),
        req(VALID, 0, NETTXF_MORE_DATA, 1, 100),
    ];
    hostile(NetbackConfig::default(), "not terminated", raw_tx(s));
}

#[test]
fn extras_not_terminated() {
    let s = vec![
        req(VALID, 0, NETTXF_EXTRA_INFO, 0, 200),
        extra(XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_FLAG_MORE, 0, 0),
    ];
    hostile(NetbackConfig::default(), "not terminated", raw_tx(s));
}

#[test]
fn slot_crosses_the_page() {
    hostile(
        NetbackConfig::default(),
        "crosses the page",
        raw_tx(vec![req(VALID, 4000, 0, 0, 200)]),
    );
}

#[test]
fn inconsistent_totals() {
    let s = vec![
        req(VALID, 0, NETTXF_MORE_DATA, 0, 100),
        req(VALID, 0, 0, 1, 200),
    ];
    hostile(
        NetbackConfig::default(),
        "is not more than its later slots",
        raw_tx(s),
    );
}

#[test]
fn zero_size() {
    hostile(
        NetbackConfig::default(),
        "zero bytes",
        raw_tx(vec![req(VALID, 0, 0, 0, 0)]),
    );
}

#[test]
fn unknown_extra_type() {
    let s = vec![req(VALID, 0, NETTXF_EXTRA_INFO, 0, 100), extra(7, 0, 0, 0)];
    hostile(
        NetbackConfig::default(),
        "unknown tx extra-info type 7",
        raw_tx(s),
    );
}

#[test]
fn gso_mss_zero() {
    let s = vec![
        req(VALID, 0, NETTXF_EXTRA_INFO, 0, 100),
        extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 0, XEN_NETIF_GSO_TYPE_TCPV4),
    ];
    hostile(NetbackConfig::default(), "MSS 0", raw_tx(s));
}

#[test]
fn gso_unknown_type() {
    let s = vec![
        req(VALID, 0, NETTXF_EXTRA_INFO, 0, 100),
        extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 1400, 9),
    ];
    hostile(NetbackConfig::default(), "unknown type 9", raw_tx(s));
}

#[test]
fn gso_not_offered() {
    let cfg = NetbackConfig {
        features: Features {
            gso_tcpv6: false,
            ..Features::ALL
        },
        ..Default::default()
    };
    let s = vec![
        req(VALID, 0, NETTXF_EXTRA_INFO, 0, 100),
        extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 1400, XEN_NETIF_GSO_TYPE_TCPV6),
    ];
    hostile(cfg, "not offered", raw_tx(s));
}

#[test]
fn tx_bad_grant_ref() {
    let s = vec![req(VALID, 0, 0, 0, 100), req(1999, 0, 0, 1, 100)];
    hostile(
        NetbackConfig::default(),
        "tx grant copy from gref 1999 failed",
        raw_tx(s),
    );
}

#[test]
fn tx_read_only_is_fine_but_revoked_grant_is_not() {
    hostile(NetbackConfig::default(), "tx grant copy", |_bk, f| {
        let gref = f.valid_gref();
        f.gt.end_access(gref).unwrap();
        f.queue_raw(&[req(gref, 0, 0, 0, 100)]);
        f.push_tx();
    });
}

#[test]
fn rx_bad_grant_ref() {
    hostile(
        NetbackConfig::default(),
        "rx grant copy into gref 1999 failed",
        |bk, f| {
            // Use up the good buffers, then post a bad one.
            let id = f.id;
            for i in 0..64 {
                bk.send(id, &raw_frame(100, i), Checksum::Unverified, None);
            }
            bk.pump_until("64 delivered", TIMEOUT, |b| {
                b.nb.stats(id).unwrap().rx_frames == 64
            });
            let idx = f.rx.as_ref().unwrap().req_prod_pvt();
            f.post_rx_raw(&[NetifRxRequest {
                id: (idx & 255) as u16,
                pad: 0,
                gref: 1999,
            }]);
            bk.send(id, &raw_frame(100, 99), Checksum::Unverified, None);
        },
    );
}

#[test]
fn rx_read_only_grant() {
    hostile(NetbackConfig::default(), "rx grant copy", |bk, f| {
        let id = f.id;
        for i in 0..64 {
            bk.send(id, &raw_frame(100, i), Checksum::Unverified, None);
        }
        bk.pump_until("64 delivered", TIMEOUT, |b| {
            b.nb.stats(id).unwrap().rx_frames == 64
        });
        let ro = f.valid_gref();
        let idx = f.rx.as_ref().unwrap().req_prod_pvt();
        f.post_rx_raw(&[NetifRxRequest {
            id: (idx & 255) as u16,
            pad: 0,
            gref: ro,
        }]);
        bk.send(id, &raw_frame(100, 99), Checksum::Unverified, None);
    });
}

#[test]
fn event_storm() {
    let cfg = NetbackConfig {
        storm_wakeups: 300,
        ..Default::default()
    };
    hostile(cfg, "event storm", |bk, f| {
        for _ in 0..2000 {
            f.notify();
            bk.step();
            if !bk.is_connected(f.id) {
                break;
            }
        }
    });
}

#[test]
fn busy_but_honest_client_is_no_storm() {
    let cfg = NetbackConfig {
        storm_wakeups: 50,
        ..Default::default()
    };
    let (_host, mut bk, mut good, _bad) = pair(cfg);
    for i in 0..400 {
        good.queue_simple(&raw_frame(100, i), 0);
        good.push_tx();
        good.notify();
        bk.step();
        good.take_tx_responses();
    }
    assert!(bk.is_connected(good.id));
    assert!(all_warns().is_empty());
}

// ---------------------------------------------------------------------------
// A randomized hostile frontend.

#[derive(Clone, Debug)]
enum Op {
    /// Raw tx slots (published together).
    Slots(Vec<Slot>),
    /// A well-formed frame.
    Frame(usize, u16, usize),
    /// Overwrite the shared tx or rx request producer.
    Poke { rx: bool, delta: u32 },
    /// Post rx buffers (valid or bad grants).
    PostRx { n: usize, bad: bool },
    /// Notifications without work.
    Notify(u16),
    /// The backend sends the client a frame.
    Send(usize),
}

#[derive(Clone, Debug)]
struct Slot {
    valid: bool,
    offset: u16,
    flags: u16,
    size: u16,
    extra: Option<(u8, u8, u16, u8)>,
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        prop::bool::weighted(0.9),
        prop_oneof![Just(0u16), 0u16..4096, 4000u16..=u16::MAX],
        0u16..16,
        prop_oneof![Just(0u16), 1u16..200, 1u16..4097, 4096u16..=u16::MAX],
        prop::option::weighted(0.2, (0u8..7, 0u8..2, 0u16..3000, 0u8..4)),
    )
        .prop_map(|(valid, offset, flags, size, extra)| Slot {
            valid,
            offset,
            flags,
            size,
            extra,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop::collection::vec(slot(), 1..24).prop_map(Op::Slots),
        5 => (14usize..9000, 0u16..4000, 1usize..4096).prop_map(|(l, o, c)| Op::Frame(l, o, c)),
        1 => (any::<bool>(), prop_oneof![Just(1u32), 200u32..400, any::<u32>()])
            .prop_map(|(rx, delta)| Op::Poke { rx, delta }),
        1 => (1usize..40, prop::bool::weighted(0.2)).prop_map(|(n, bad)| Op::PostRx { n, bad }),
        1 => (1u16..50).prop_map(Op::Notify),
        2 => (14usize..20000).prop_map(Op::Send),
    ]
}

fn run_ops(bk: &mut Backend, f: &mut Front, ops: &[Op]) {
    let id = f.id;
    for op in ops {
        if !bk.is_connected(id) {
            break;
        }
        match op {
            Op::Slots(slots) => {
                let tx = f.tx.as_ref().unwrap();
                if (tx.free_requests() as usize) < slots.len() * 2 {
                    continue;
                }
                let mut raw = Vec::new();
                for (k, s) in slots.iter().enumerate() {
                    let gref = if s.valid {
                        f.valid_gref()
                    } else {
                        3000 + k as u32
                    };
                    raw.push(req(gref, s.offset, s.flags, k as u16, s.size));
                    if let Some((t, fl, sz, gt)) = s.extra {
                        raw.push(extra(t, fl, sz, gt));
                    }
                }
                f.queue_raw(&raw);
                f.push_tx();
            }
            Op::Frame(len, off, chunk) => {
                let tx = f.tx.as_ref().unwrap();
                if tx.free_requests() < 20 {
                    continue;
                }
                let first = (4096 - usize::from(*off)).min(*chunk);
                let slots = 1 + len.saturating_sub(first).div_ceil(*chunk);
                if slots > 18 {
                    continue;
                }
                f.queue_tx(&raw_frame(*len, *len as u32), 0, None, *off, first, *chunk);
                f.push_tx();
            }
            Op::Poke { rx, delta } => {
                let ring = if *rx {
                    f.rx.as_ref().unwrap().mem()
                } else {
                    f.tx.as_ref().unwrap().mem()
                };
                let cur = ring.load_u32(0, core::sync::atomic::Ordering::SeqCst);
                ring.store_u32(
                    0,
                    cur.wrapping_add(*delta),
                    core::sync::atomic::Ordering::SeqCst,
                );
                f.notify();
            }
            Op::PostRx { n, bad } => {
                if *bad {
                    let rx = f.rx.as_ref().unwrap();
                    if rx.is_full() {
                        continue;
                    }
                    let idx = rx.req_prod_pvt();
                    f.post_rx_raw(&[NetifRxRequest {
                        id: (idx & 255) as u16,
                        pad: 0,
                        gref: 2999,
                    }]);
                } else {
                    f.post_rx(*n);
                }
            }
            Op::Notify(n) => {
                for _ in 0..*n {
                    f.notify();
                    bk.step();
                }
            }
            Op::Send(len) => {
                let mut fr =
                    xen::frame::Frame::from_bytes(&mut bk.pool, &raw_frame(*len, 5)).unwrap();
                fr.csum = Checksum::Unverified;
                if let Err(fr) = bk.nb.send(id, &mut bk.pool, fr) {
                    fr.free(&mut bk.pool);
                }
            }
        }
        for _ in 0..3 {
            bk.step();
        }
        // The frontend's own view may be wrecked by its pokes: ignore.
        if let Some(tx) = f.tx.as_mut() {
            if let Ok(r) = tx.responses() {
                let _ = r.count();
            }
        }
    }
}

#[test]
fn randomized_hostile_frontend() {
    let host = SimHost::new().unwrap();
    let cfg = NetbackConfig {
        storm_wakeups: 500,
        ..Default::default()
    };
    let mut bk = Backend::new(&host, cfg);
    let (mut good, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    good.connect(&mut bk, 64);
    let cases: u32 = std::env::var("NETBACK_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let bk = std::cell::RefCell::new(bk);
    let good = std::cell::RefCell::new(good);
    let mut disconnected = 0;
    let stats = std::cell::RefCell::new(&mut disconnected);
    runner
        .run(&prop::collection::vec(op(), 1..12), |ops| {
            let mut bk = bk.borrow_mut();
            let mut good = good.borrow_mut();
            let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
            f.connect(&mut bk, 32);
            run_ops(&mut bk, &mut f, &ops);
            let id = f.id;
            let w = warns(&format!("vif {}.{}:", id.domid, id.devid));
            if bk.is_connected(id) {
                prop_assert!(w.is_empty(), "{:?}", w);
            } else {
                prop_assert_eq!(w.len(), 1, "{:?}", w);
                **stats.borrow_mut() += 1;
            }
            // Every frame handed on is well formed.
            for g in bk.got_from(id) {
                let sum: usize = g.segs.iter().map(|&(_, l)| usize::from(l)).sum();
                prop_assert_eq!(sum, g.bytes.len());
                prop_assert!(g.segs.len() <= 18);
                prop_assert!(g
                    .segs
                    .iter()
                    .all(|&(o, l)| usize::from(o) + usize::from(l) <= 4096 && l > 0));
            }
            bk.got.retain(|g| g.id != id);
            // The client dies; everything of it goes.
            drop(f);
            host.destroy_domain(id.domid);
            bk.pump_until("dead client forgotten", TIMEOUT, |b| b.nb.vif(id).is_none());
            still_works(&mut bk, &mut good);
            bk.got.clear();
            bk.step();
            prop_assert_eq!(bk.pool.in_use(), 0);
            let good_prefix = format!("vif {}.0:", good.id.domid);
            prop_assert!(warns(&good_prefix).is_empty());
            Ok(())
        })
        .unwrap();
    eprintln!("randomized hostile frontend: {cases} cases, {disconnected} disconnected");
}
