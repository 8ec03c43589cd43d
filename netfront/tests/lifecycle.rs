//! netfront follows the backend: restarts (Closing → Closed → InitWait,
//! and Connected → InitWait directly), the backend domain destroyed and
//! replaced by a new one with a new device, toolstack detach, pages the
//! backend keeps mapped (quarantine). No firewall restart, no page leaks.

mod common;

use common::packets::*;
use common::*;
use netfront::{Features, LinkState};
use xen::gnttab::map_grant_refs;
use xen::sim::vif;
use xen::xenbus::XenbusState;

/// One frame each way.
fn traffic(h: &Harness, b: &mut Backend, seed: u8) {
    let f = tcp4(500, seed);
    h.send(TxSpec::plain(f.clone()));
    assert_eq!(b.recv_tx().bytes, f);
    let r = raw(700, seed);
    b.send_rx(&RxPacket::plain(r.clone()));
    assert_eq!(h.wait_received(1)[0].bytes, r);
}

#[test]
fn backend_restart_through_closed() {
    let h = Harness::new("fw-restart", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-restart", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    traffic(&h, &mut b, 1);
    // Frames in flight when the backend goes away are freed too.
    h.send(TxSpec::plain(raw(100, 9)));
    h.wait("in flight", |s| s.stats.tx_frames == 2);

    // Linux netback: disconnect (unmap, unbind), Closing, Closed.
    b.close();
    let s = h.wait_down();
    assert!(s.stats.disconnects >= 1);
    // We said Closed, then (online = 1) Initialising to invite a
    // reconnect.
    b.wait_front(XenbusState::Initialising);
    let s = h.wait("pages back", |s| s.pool_available == POOL_PAGES);
    assert_eq!(s.quarantined, 0);
    assert_eq!(s.stats.tx_dropped.disconnected, 1);

    // The backend comes back to InitWait: a fresh connection.
    b.bring_up(LINUX_FEATURES);
    let s = h.wait_up(2);
    assert_eq!(s.stats.connects, 2);
    traffic(&h, &mut b, 2);
    assert_eq!(h.warnings(), Vec::<String>::new());
}

#[test]
fn backend_straight_from_connected_to_initwait() {
    let h = Harness::new("fw-initwait", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-initwait", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    traffic(&h, &mut b, 1);
    // The backend restarts without passing through Closed.
    b.disconnect();
    b.set_state(XenbusState::InitWait);
    // We tear down and publish new rings at once.
    h.wait("reconnecting", |s| {
        s.stats.disconnects == 1 && s.link == Some(LinkState::Connecting)
    });
    b.connect();
    h.wait_up(2);
    traffic(&h, &mut b, 2);
    assert_eq!(h.warnings(), Vec::<String>::new());
}

#[test]
fn backend_domain_destroyed_and_replaced() {
    let mut h = Harness::new("fw-replaced", 0, Features::ALL);
    let mut b1 = Backend::new(&h, "net-old", 0);
    b1.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    traffic(&h, &mut b1, 1);

    // sys-net dies: its xenstore directory vanishes, its mappings go.
    h.host.destroy_domain(b1.id);
    h.wait_down();
    let s = h.wait("pages back", |s| s.pool_available == POOL_PAGES);
    assert_eq!(s.stats.quarantined, 0);
    // The toolstack removes the dead vif, then attaches the new sys-net's
    // as device 1 (a new device id and a new backend domain).
    vif::detach_vif(&h.host, &b1.spec, true).unwrap();
    h.wait("device released", |s| s.devid.is_none());
    let mut b2 = Backend::new(&h, "net-new", 1);
    b2.bring_up(LINUX_FEATURES);
    let s = h.wait_up(2);
    assert_eq!((s.devid, s.backend_id), (Some(1), Some(b2.id)));
    traffic(&h, &mut b2, 2);

    // Once more, back to device 0 with a third backend.
    h.host.destroy_domain(b2.id);
    h.wait_down();
    vif::detach_vif(&h.host, &b2.spec, true).unwrap();
    let mut b3 = Backend::new(&h, "net-third", 0);
    b3.bring_up(LINUX_FEATURES);
    let s = h.wait_up(3);
    assert_eq!((s.devid, s.backend_id), (Some(0), Some(b3.id)));
    traffic(&h, &mut b3, 3);
    assert_eq!(h.warnings(), Vec::<String>::new());
    h.close_and_check_all_returned(&mut b3);
}

#[test]
fn toolstack_detach_removes_the_device() {
    let h = Harness::new("fw-detach", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-detach", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    let spec = b.spec.clone();
    std::thread::scope(|sc| {
        let host = &h.host;
        let t = sc.spawn(move || vif::detach_vif(host, &spec, false));
        // Linux netback: the toolstack wrote online = 0 and Closing; the
        // frontend closes; the backend goes Closed and removes its
        // directory.
        let bstate = format!("{}/state", b.bdir());
        wait_until("toolstack Closing", || {
            b.xs.read(&bstate).map(|v| v == b"5").unwrap_or(false)
        });
        b.disconnect();
        b.wait_front(XenbusState::Closed);
        b.set_state(XenbusState::Closed);
        let bdir = b.bdir();
        b.xs.rm(&bdir).unwrap();
        t.join().unwrap().unwrap();
    });
    let s = h.wait("device gone", |s| s.devid.is_none());
    assert_eq!(s.link, Some(LinkState::Down));
    assert_eq!(s.pool_available, POOL_PAGES);
    // online = 0: no invitation to reconnect was written.
    assert_eq!(h.warnings(), Vec::<String>::new());
}

#[test]
fn pages_the_backend_keeps_are_quarantined_until_released() {
    let h = Harness::new("fw-quarantine", 0, Features::ALL);
    let mut b = Backend::new(&h, "net-quarantine", 0);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(1);
    // The backend maps one of our rx buffers and keeps it, and closes
    // without unmapping the rings.
    b.wait_rx_requests(1);
    let gref = b.conn.as_mut().unwrap().rx.next_request().unwrap().gref;
    let held = map_grant_refs(&b.dom, h.fid, &[gref], false).unwrap();
    b.set_state(XenbusState::Closing);
    b.set_state(XenbusState::Closed);
    h.wait_down();
    let s = h.wait("quarantine", |s| {
        s.stats.quarantined == 3 || s.stats.disconnects > s.stats.connects
    });
    assert_eq!(s.stats.quarantined, 3, "two ring pages and one buffer");
    assert_eq!(s.quarantined, 1);
    assert_eq!(s.pool_available, POOL_PAGES - 1);
    // Let go: the next retries release everything.
    held.unmap(&b.dom).unwrap();
    b.disconnect();
    let s = h.wait("released", |s| s.stats.quarantined == 0);
    assert_eq!(s.pool_available, POOL_PAGES);
    assert_eq!(s.stats.quarantine_released, 3);
    // And the backend can come back.
    b.wait_front(XenbusState::Initialising);
    b.bring_up(LINUX_FEATURES);
    h.wait_up(2);
    traffic(&h, &mut b, 1);
    assert_eq!(h.warnings(), Vec::<String>::new());
}
