//! A hostile backend: every violation disconnects with exactly one warn
//! line naming the device, no panic, no page leak; a backend that then
//! restarts properly gets a fresh connection.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::packets::*;
use common::*;
use netfront::{Features, LinkState};
use xen::abi::netif::*;
use xen::xenbus::XenbusState;

/// Wait for the violation: link down, exactly one warn line naming the
/// device and containing `reason`; the frontend says Closed.
fn expect_violation(h: &Harness, b: &mut Backend, reason: &str) {
    let devid = b.spec.devid;
    wait_until("the warning", || !h.warnings().is_empty());
    h.wait_down();
    b.wait_front(XenbusState::Closed);
    // Nothing more comes (no second line, no loop).
    std::thread::sleep(Duration::from_millis(50));
    let w = h.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    let prefix = format!("vif {devid} (backend dom {}): ", b.id);
    assert!(w[0].starts_with(&prefix), "{w:?}");
    assert!(w[0].contains(reason), "{w:?} lacks {reason:?}");
    let s = h.status();
    assert_eq!(s.stats.violations, 1);
    assert_eq!(s.link, Some(LinkState::Down));
}

/// The backend restarts properly: lets go, Closed, InitWait, connects.
fn restart_properly(h: &Harness, b: &mut Backend, ups: u32) {
    b.disconnect();
    b.set_state(XenbusState::Closed);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(ups);
    let f = tcp4(300, 42);
    h.send(TxSpec::plain(f.clone()));
    assert_eq!(b.recv_tx().bytes, f);
    let r = raw(300, 43);
    b.send_rx(&RxPacket::plain(r.clone()));
    assert_eq!(h.wait_received(1)[0].bytes, r);
    assert_eq!(h.warnings().len(), 1, "still just the one line");
}

fn up(name: &str, features: Features) -> (Harness, Backend) {
    let h = Harness::new(&format!("fw-{name}"), 0, features);
    let mut b = Backend::new(&h, &format!("net-{name}"), 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    (h, b)
}

fn rsp(offset: u16, flags: u16, status: i16) -> RawRx {
    RawRx::Rsp {
        id: None,
        offset,
        flags,
        status,
    }
}

#[test]
fn rx_index_beyond_the_ring() {
    let (h, mut b) = up("rx-index", Features::ALL);
    let mem = b.conn.as_ref().unwrap().rx_mem;
    let prod = mem.load_u32(8, Ordering::SeqCst);
    mem.store_u32(8, prod.wrapping_add(1000), Ordering::SeqCst);
    b.notify();
    expect_violation(&h, &mut b, "rx ring: shared ring rsp_prod");
    assert_eq!(h.poll_errors().len(), 1);
    // Our buffers were only ever written by grant copy: all back. The ring
    // pages wait in quarantine while the backend maps them.
    let s = h.wait("pages back", |s| s.pool_available == POOL_PAGES);
    assert_eq!(s.stats.quarantined, 2);
    restart_properly(&h, &mut b, 2);
    h.wait("ring pages released", |s| s.stats.quarantined == 0);
}

#[test]
fn tx_index_beyond_the_ring() {
    let (h, mut b) = up("tx-index", Features::ALL);
    let mem = b.conn.as_ref().unwrap().tx_mem;
    mem.store_u32(8, 0x8000_0000, Ordering::SeqCst);
    b.notify();
    expect_violation(&h, &mut b, "tx ring: shared ring rsp_prod");
    restart_properly(&h, &mut b, 2);
}

#[test]
fn tx_response_ids() {
    // Not outstanding, duplicate, beyond the ring, NULL for a data slot.
    for (case, reason) in [
        ("wrong", "id 7 is not outstanding"),
        ("dup", "is not outstanding"),
        ("beyond", "id 300 beyond the 256 ids"),
        ("null", "NULL response"),
    ] {
        let (h, mut b) = up(&format!("txid-{case}"), Features::ALL);
        h.send(TxSpec::plain(raw(100, 1)));
        h.send(TxSpec::plain(raw(100, 2)));
        let (p1, r1) = b.recv_tx_with(NETIF_RSP_OKAY, false);
        let (p2, _) = b.recv_tx_with(NETIF_RSP_OKAY, false);
        assert_ne!(p1.ids[0], p2.ids[0]);
        let bad = match case {
            "wrong" => vec![NetifTxResponse { id: 7, status: 0 }],
            "dup" => vec![r1[0], r1[0]],
            "beyond" => vec![NetifTxResponse { id: 300, status: 0 }],
            _ => vec![NetifTxResponse {
                id: p1.ids[0],
                status: NETIF_RSP_NULL,
            }],
        };
        b.answer_tx(&bad);
        expect_violation(&h, &mut b, reason);
        // In-flight frames were freed (or quarantined, none here: the
        // backend copies).
        let s = h.wait("pages back", |s| s.pool_available == POOL_PAGES);
        assert_eq!(
            s.stats.tx_dropped.disconnected,
            2 - u64::from(case == "dup")
        );
        if case == "wrong" {
            restart_properly(&h, &mut b, 2);
        }
    }
}

#[test]
fn rx_offset_past_the_page() {
    let (h, mut b) = up("rx-past", Features::ALL);
    b.send_rx_raw(&[rsp(4000, 0, 200)]);
    expect_violation(&h, &mut b, "offset 4000 + size 200 past the page");
    restart_properly(&h, &mut b, 2);
}

#[test]
fn rx_wrong_id_at_its_position() {
    let (h, mut b) = up("rx-id", Features::ALL);
    b.send_rx_raw(&[RawRx::Rsp {
        id: Some(77),
        offset: 0,
        flags: 0,
        status: 60,
    }]);
    expect_violation(&h, &mut b, "has id 77, the request there had id 0");
}

#[test]
fn rx_too_many_slots() {
    let (h, mut b) = up("rx-slots", Features::ALL);
    let mut raw: Vec<RawRx> = (0..19).map(|_| rsp(0, NETRXF_MORE_DATA, 100)).collect();
    raw.push(rsp(0, 0, 100));
    b.send_rx_raw(&raw);
    expect_violation(&h, &mut b, "more than 18 data slots");
    assert_eq!(h.status().pool_available, POOL_PAGES);
}

#[test]
fn rx_multi_slot_without_sg() {
    let h = Harness::new("fw-rx-nosg", 0, Features::default());
    let mut b = Backend::new(&h, "net-rx-nosg", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    assert_eq!(b.front_key("feature-sg").as_deref(), Some("0"));
    b.send_rx_raw(&[rsp(0, NETRXF_MORE_DATA, 100), rsp(0, 0, 100)]);
    expect_violation(&h, &mut b, "without feature-sg");
}

#[test]
fn rx_bad_extras() {
    let gso = |ty, mss, flags| {
        RawRx::Extra(NetifExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_GSO,
            flags,
            gso: NetifExtraInfoGso {
                size: mss,
                r#type: ty,
                pad: 0,
                features: 0,
            },
        })
    };
    let no_gso = Features {
        gso_tcpv4: false,
        gso_tcpv6: false,
        ..Features::ALL
    };
    let unknown = RawRx::Extra(NetifExtraInfo {
        r#type: 9,
        ..Default::default()
    });
    for (case, features, extras, reason) in [
        ("type", Features::ALL, vec![unknown], "unknown type 9"),
        (
            "gsotype",
            Features::ALL,
            vec![gso(3, 1448, 0)],
            "GSO extra type 3",
        ),
        ("mss", Features::ALL, vec![gso(1, 0, 0)], "mss 0"),
        ("unasked", no_gso, vec![gso(1, 1448, 0)], "GSO extra type 1"),
        (
            "twice",
            Features::ALL,
            vec![gso(1, 1448, XEN_NETIF_EXTRA_FLAG_MORE), gso(1, 1448, 0)],
            "type 1 twice",
        ),
    ] {
        let (h, mut b) = up(&format!("extra-{case}"), features);
        let mut raw = vec![rsp(0, NETRXF_EXTRA_INFO, 100)];
        raw.extend(extras);
        b.send_rx_raw(&raw);
        expect_violation(&h, &mut b, reason);
    }
}

#[test]
fn garbage_feature_value_then_fixed() {
    let h = Harness::new("fw-feature", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-feature", 0);
    let mut keys = LINUX_FEATURES.to_vec();
    keys[0] = ("feature-sg", "yes");
    b.publish(&keys);
    wait_until("the warning", || !h.warnings().is_empty());
    b.wait_front(XenbusState::Closed);
    std::thread::sleep(Duration::from_millis(50));
    let w = h.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        w[0],
        format!(
            "vif 0 (backend dom {}): feature-sg does not parse: \"yes\"",
            b.id
        )
    );
    assert_eq!(b.front_key("tx-ring-ref"), None, "nothing published");
    // Still InitWait with the bad key: we do not retry by ourselves.
    assert_eq!(h.status().link, Some(LinkState::Down));
    // The backend restarts with good keys.
    b.set_state(XenbusState::Closed);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    assert_eq!(h.warnings().len(), 1);
}

#[test]
fn no_rx_copy() {
    let h = Harness::new("fw-norxcopy", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-norxcopy", 0);
    b.publish(&[("feature-sg", "1")]);
    wait_until("the warning", || !h.warnings().is_empty());
    b.wait_front(XenbusState::Closed);
    let w = h.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].ends_with("backend does not offer feature-rx-copy"),
        "{w:?}"
    );
}

#[test]
fn garbage_backend_state() {
    let (h, mut b) = up("state", Features::ALL);
    let path = format!("{}/state", b.bdir());
    b.xs.write(&path, "banana").unwrap();
    expect_violation(&h, &mut b, "backend state does not parse: \"banana\"");
    restart_properly(&h, &mut b, 2);
}

#[test]
fn garbage_backend_id() {
    let (h, mut b) = up("backendid", Features::ALL);
    let key = format!("{}/backend-id", b.fdir());
    h.host.with_xenstore(|xs| xs.write(&key, b"x1")).unwrap();
    wait_until("the warning", || !h.warnings().is_empty());
    h.wait("device dropped", |s| {
        s.devid.is_none() && s.link == Some(LinkState::Down)
    });
    b.wait_front(XenbusState::Closed);
    std::thread::sleep(Duration::from_millis(50));
    let w = h.warnings();
    assert_eq!(
        w,
        [r#"vif 0 (backend dom ?): backend-id does not parse: "x1""#]
    );
    // The toolstack repairs the key; the backend restarts.
    let id = b.id.to_string();
    h.host
        .with_xenstore(|xs| xs.write(&key, id.as_bytes()))
        .unwrap();
    restart_properly(&h, &mut b, 2);
}

#[test]
fn event_storm() {
    let (h, mut b) = up("storm", Features::ALL);
    let end = Instant::now() + TIMEOUT;
    let port = b.conn.as_ref().unwrap().port;
    while h.status().link == Some(LinkState::Up) {
        assert!(
            Instant::now() < end,
            "no storm detected: {:?}",
            h.status().stats
        );
        for _ in 0..100 {
            let _ = b.ev.send(port);
        }
    }
    expect_violation(&h, &mut b, "event storm");
    let s = h.status();
    assert!(s.stats.idle_wakeups > u64::from(netfront::STORM_WAKEUPS));
    restart_properly(&h, &mut b, 2);
}

#[test]
fn legitimate_traffic_is_not_a_storm() {
    let (h, mut b) = up("nostorm", Features::ALL);
    // Many notified batches, each with work.
    for i in 0..2000u32 {
        b.send_rx(&RxPacket::plain(raw(60, i as u8)));
        if i % 64 == 63 {
            h.wait_received(64);
        }
    }
    h.wait_received(2000 % 64);
    assert_eq!(h.status().link, Some(LinkState::Up));
    assert!(h.warnings().is_empty());
}

#[test]
fn backend_stuck_in_initwait_with_bad_keys_is_retried_with_backoff() {
    let h = Harness::new("fw-backoff", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-backoff", 0);
    b.publish(&[("feature-rx-copy", "maybe")]);
    wait_until("third warning", || h.warnings().len() >= 3);
    // When the firewall logged them, not when this thread happened to
    // look (a loaded machine can delay the test thread by a lot).
    let w = h.warnings_timed();
    let (t1, t2, t3) = (w[0].0, w[1].0, w[2].0);
    // 1 s, then 2 s: bounded, no loop.
    assert!(t2 - t1 >= Duration::from_millis(900), "{:?}", t2 - t1);
    assert!(t3 - t2 >= Duration::from_millis(1900), "{:?}", t3 - t2);
    assert!(h
        .warnings()
        .iter()
        .all(|w| w.contains("feature-rx-copy does not parse")));
    assert_eq!(b.front_key("tx-ring-ref"), None);
    assert_eq!(h.status().stats.violations, 3);
}

#[test]
fn linux_netback_is_invited_back_after_a_violation() {
    let (h, mut b) = up("invite", Features::ALL);
    b.send_rx_raw(&[rsp(4000, 0, 200)]);
    expect_violation(&h, &mut b, "past the page");
    // The backoff (1 s) runs from the violation: time it from when the
    // firewall logged it, not from when this thread got here.
    let t = h.warnings_timed()[0].0;
    // Linux netback: sees us Closed, disconnects, goes Closed (online = 1)
    // and waits for the frontend to return to Initialising.
    b.disconnect();
    b.set_state(XenbusState::Closed);
    b.wait_front(XenbusState::Initialising);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "after the backoff: {:?}",
        t.elapsed()
    );
    b.bring_up(LINUX_FEATURES);
    h.wait_up(2);
    let f = raw(200, 1);
    h.send(TxSpec::plain(f.clone()));
    assert_eq!(b.recv_tx().bytes, f);
    assert_eq!(h.warnings().len(), 1);
}
