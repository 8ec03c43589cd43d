//! The xenbus side of netback on the simulated Xen: devices created and
//! removed the way libxl does it, Linux- and Windows-style frontends,
//! reconnection, removal of dead clients, broken keys.

mod common;

use std::time::Duration;

use common::*;
use netback::{NetbackConfig, NetbackEvent, VifId};
use xen::sim::vif::{self, VifSpec};
use xen::sim::{DomainConfig, SimHost};
use xen::xenbus::XenbusState;

fn bdir(id: VifId) -> String {
    netback::backend_dir(id.domid, id.devid)
}

#[test]
fn initwait_within_libxl_timeout_then_connect() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, took) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    eprintln!("InitWait after {took:?} (libxl allows 10 s)");
    assert!(took < Duration::from_secs(2), "InitWait took {took:?}");
    let d = bdir(f.id);
    // Features and InitWait, as one transaction wrote them.
    for (k, v) in [
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("multi-queue-max-queues", "1"),
        ("state", "2"),
    ] {
        assert_eq!(bk.read(&format!("{d}/{k}")).as_deref(), Some(v), "{k}");
    }
    let info = bk.nb.vif(f.id).unwrap();
    assert_eq!(info.mac, Some(CLIENT_MAC));
    assert_eq!(info.ip, format!("10.137.0.{}", f.id.domid));
    assert_eq!(info.state, XenbusState::InitWait);

    f.connect(&mut bk, 64);
    assert_eq!(
        bk.read(&format!("{d}/hotplug-status")).as_deref(),
        Some("connected")
    );
    assert_eq!(bk.events, vec![NetbackEvent::Connected(f.id)]);
    let info = bk.nb.vif(f.id).unwrap();
    assert_eq!(info.state, XenbusState::Connected);
    let neg = info.negotiated.unwrap();
    assert!(neg.peer.sg && neg.peer.gso_tcpv4 && neg.rx_notify);
    assert!(bk.nb.port(f.id).is_some());
    assert_eq!(bk.nb.vif_for_port(bk.nb.port(f.id).unwrap()), Some(f.id));
    assert!(all_warns().is_empty(), "{:?}", all_warns());
}

#[test]
fn features_follow_the_config() {
    let host = SimHost::new().unwrap();
    let cfg = NetbackConfig {
        features: netback::Features::NONE,
        ..Default::default()
    };
    let mut bk = Backend::new(&host, cfg);
    let (f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    let d = bdir(f.id);
    for k in [
        "feature-sg",
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-ipv6-csum-offload",
    ] {
        assert_eq!(bk.read(&format!("{d}/{k}")).as_deref(), Some("0"), "{k}");
    }
    assert_eq!(
        bk.read(&format!("{d}/feature-rx-copy")).as_deref(),
        Some("1")
    );
}

#[test]
fn windows_style_queue_keys() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let mut keys = FrontKeys::LINUX;
    keys.layout = Layout::Windows(1);
    let (mut win, _) = Front::create(&host, &mut bk, 0, keys);
    win.connect(&mut bk, 32);
    // Linux against a multi-queue offer: flat keys plus num-queues = 1.
    let mut keys = FrontKeys::LINUX;
    keys.layout = Layout::LinuxMq;
    let (mut lin, _) = Front::create(&host, &mut bk, 0, keys);
    lin.connect(&mut bk, 32);
    // Two queues: refused, only that vif.
    keys.layout = Layout::Windows(2);
    let (mut two, _) = Front::create(&host, &mut bk, 0, keys);
    two.wait_backend(&mut bk, XenbusState::InitWait);
    two.make_rings();
    two.publish(&[]);
    two.wait_backend(&mut bk, XenbusState::Closed);
    let prefix = format!("vif {}.0:", two.id.domid);
    assert_eq!(
        warns(&prefix),
        vec![format!("{prefix} frontend asks for 2 queues, we offer 1")]
    );
    assert!(!bk.is_connected(two.id));
    // The others move data.
    for f in [&mut win, &mut lin] {
        f.queue_simple(&raw_frame(100, 1), 0);
        f.push_tx();
        f.pump_tx_responses(&mut bk, 1);
    }
    assert_eq!(bk.got.len(), 2);
}

#[test]
fn detach_removes_the_backend_directory() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    let (mut g, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    g.connect(&mut bk, 16);
    let in_use = bk.pool_in_use();
    // Queue frames for f that will never be delivered.
    for i in 0..40 {
        bk.send(
            f.id,
            &raw_frame(1000, i),
            xen::frame::Checksum::Unverified,
            None,
        );
    }
    let spec = f.spec.clone();
    let t = std::time::Instant::now();
    detach(&host, &mut bk, Some(&mut f), &spec, false).unwrap();
    eprintln!("detach took {:?}", t.elapsed());
    assert!(bk.read(&bdir(f.id)).is_none());
    // `backend/vif/<F>` is gone or empty (it is the toolstack's when it
    // inherited our home's read-only permissions).
    let parent = format!("backend/vif/{}", f.id.domid);
    assert!(bk.xs.directory(&parent).map_or(true, |c| c.is_empty()));
    assert!(bk.nb.vif(f.id).is_none());
    assert!(bk.events.contains(&NetbackEvent::Disconnected(f.id)));
    bk.step();
    assert!(bk.pool_in_use() <= in_use, "queued frames freed");
    assert!(all_warns().is_empty(), "{:?}", all_warns());
    // g is untouched.
    assert!(bk.is_connected(g.id));
    g.queue_simple(&raw_frame(100, 1), 0);
    g.push_tx();
    g.pump_tx_responses(&mut bk, 1);
}

#[test]
fn detach_with_a_frontend_that_never_closes() {
    let host = SimHost::new().unwrap();
    let cfg = NetbackConfig {
        close_grace_ns: 300_000_000,
        ..Default::default()
    };
    let mut bk = Backend::new(&host, cfg);
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    let spec = f.spec.clone();
    let t = std::time::Instant::now();
    detach(&host, &mut bk, None, &spec, false).unwrap();
    let took = t.elapsed();
    eprintln!("detach (frontend ignoring it) took {took:?}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5));
    assert!(bk.nb.vif(f.id).is_none());
}

#[test]
fn frontend_domain_destroyed() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    let (mut g, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    g.connect(&mut bk, 16);
    for i in 0..10 {
        bk.send(
            f.id,
            &raw_frame(1000, i),
            xen::frame::Checksum::Unverified,
            None,
        );
    }
    let id = f.id;
    let spec = f.spec.clone();
    drop(f);
    host.destroy_domain(id.domid);
    bk.pump_until("backend dir removed", TIMEOUT, |b| {
        b.nb.vif(id).is_none() && b.read(&bdir(id)).is_none()
    });
    assert!(bk.events.contains(&NetbackEvent::Disconnected(id)));
    // libxl's cleanup of the dead domain's device finds nothing to wait for.
    detach(&host, &mut bk, None, &spec, false).unwrap();
    assert!(all_warns().is_empty(), "{:?}", all_warns());
    g.queue_simple(&raw_frame(100, 1), 0);
    g.push_tx();
    g.pump_tx_responses(&mut bk, 1);
}

#[test]
fn frontend_closes_and_reconnects() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    // Driver unload: Closing, Closed.
    f.set_state(XenbusState::Closing);
    f.wait_backend(&mut bk, XenbusState::Closing);
    assert!(!bk.is_connected(f.id));
    f.set_state(XenbusState::Closed);
    f.wait_backend(&mut bk, XenbusState::Closed);
    // Driver reload: Initialising → InitWait → a new handshake.
    f.set_state(XenbusState::Initialising);
    f.connect(&mut bk, 16);
    f.queue_simple(&raw_frame(200, 3), 0);
    f.push_tx();
    f.pump_tx_responses(&mut bk, 1);
    assert_eq!(bk.got.len(), 1);
    bk.send(
        f.id,
        &raw_frame(300, 4),
        xen::frame::Checksum::Unverified,
        None,
    );
    f.pump_rx(&mut bk, 1);
    let ev: Vec<_> = bk.events.clone();
    assert_eq!(
        ev,
        vec![
            NetbackEvent::Connected(f.id),
            NetbackEvent::Disconnected(f.id),
            NetbackEvent::Connected(f.id)
        ]
    );
    assert!(all_warns().is_empty(), "{:?}", all_warns());
}

#[test]
fn same_client_comes_back_on_a_new_vif() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    let spec = f.spec.clone();
    detach(&host, &mut bk, Some(&mut f), &spec, false).unwrap();
    // Same domain, same device id, re-attached.
    let dom = f.dom.clone();
    drop(f);
    let took = attach(&host, &mut bk, &spec);
    assert!(took < Duration::from_secs(2));
    let mut f = Front::on(dom, spec, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    f.queue_simple(&raw_frame(100, 1), 0);
    f.push_tx();
    f.pump_tx_responses(&mut bk, 1);
    assert_eq!(bk.got.len(), 1);
}

#[test]
fn toolstack_force_removal() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.connect(&mut bk, 16);
    let id = f.id;
    // The toolstack removes both directories outright.
    host.with_xenstore(|xs| {
        let _ = xs.rm(&f.spec.backend_dir());
        let _ = xs.rm(&f.spec.frontend_dir());
    });
    bk.pump_until("vif forgotten", TIMEOUT, |b| b.nb.vif(id).is_none());
    assert!(bk.events.contains(&NetbackEvent::Disconnected(id)));
    assert!(bk.read(&bdir(id)).is_none());
}

fn garbage_case(over: &[(&str, &str)], expect: &str) {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut good, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    good.connect(&mut bk, 16);
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.wait_backend(&mut bk, XenbusState::InitWait);
    f.make_rings();
    f.publish(over);
    f.wait_backend(&mut bk, XenbusState::Closed);
    let prefix = format!("vif {}.0:", f.id.domid);
    let w = warns(&prefix);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(expect), "{w:?} lacks {expect:?}");
    assert!(!bk.is_connected(f.id));
    assert_eq!(all_warns().len(), 1);
    good.queue_simple(&raw_frame(100, 1), 0);
    good.push_tx();
    good.pump_tx_responses(&mut bk, 1);
    // The broken client may try again (driver reload) and succeed.
    f.set_state(XenbusState::Initialising);
    f.connect(&mut bk, 16);
}

#[test]
fn garbage_ring_ref() {
    garbage_case(&[("tx-ring-ref", "12abc")], "tx-ring-ref");
}

#[test]
fn garbage_event_channel() {
    garbage_case(&[("event-channel", "-1")], "event-channel");
}

#[test]
fn ring_ref_not_granted() {
    garbage_case(&[("rx-ring-ref", "1999")], "cannot map ring grants");
}

#[test]
fn event_channel_not_offered() {
    garbage_case(&[("event-channel", "1000")], "cannot bind event channel");
}

#[test]
fn no_rx_copy() {
    garbage_case(&[("request-rx-copy", "0")], "rx-copy");
}

#[test]
fn garbage_feature_flag() {
    garbage_case(&[("feature-sg", "yes please")], "feature-sg");
}

#[test]
fn garbage_frontend_state() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut f, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    f.wait_backend(&mut bk, XenbusState::InitWait);
    f.write("state", "connected!");
    f.wait_backend(&mut bk, XenbusState::Closed);
    let w = warns(&format!("vif {}.0:", f.id.domid));
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn many_clients_come_and_go_without_leaking_watches() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let mut specs = Vec::new();
    let mut waits = Vec::new();
    for round in 0..3 {
        let mut fronts = Vec::new();
        for _ in 0..6 {
            let (mut f, took) = Front::create(&host, &mut bk, round, FrontKeys::LINUX);
            assert!(took < Duration::from_secs(2));
            waits.push(took);
            f.connect(&mut bk, 8);
            fronts.push(f);
        }
        for mut f in fronts {
            let spec = f.spec.clone();
            detach(&host, &mut bk, Some(&mut f), &spec, false).unwrap();
            specs.push(spec);
        }
        assert_eq!(bk.nb.vifs().count(), 0);
    }
    waits.sort();
    eprintln!(
        "InitWait over {} attaches: median {:?}, max {:?}",
        waits.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    // Every watch of ours is gone but the one on backend/vif: exactly
    // MAX - 1 more fit (the simulated xenstored's per-domain bound).
    let max = xen::sim::xenstored::MAX_WATCHES_PER_DOMAIN;
    for i in 0..max - 1 {
        bk.xs
            .watch(&format!("probe/{i}"), "probe")
            .unwrap_or_else(|e| panic!("watch {i}: {e} (leaked watches)"));
    }
    assert!(bk.xs.watch("probe/last", "probe").is_err());
    assert_eq!(bk.pool.in_use(), 0);
    let _ = (
        specs,
        DomainConfig::new("x"),
        VifSpec::new(1, 0, 0),
        vif::LIBXL_TIMEOUT,
    );
}

#[test]
fn unusable_toolstack_keys_are_refused_and_removable() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let dom = host.create_domain(&DomainConfig::new("client")).unwrap();
    let spec = VifSpec::new(dom.domid(), bk.domid(), 0);
    vif::create_vif(&host, &spec).unwrap();
    // The toolstack's frontend-id disagrees with the directory.
    host.with_xenstore(|xs| xs.write(&format!("{}/frontend-id", spec.backend_dir()), b"77"))
        .unwrap();
    let id = VifId {
        domid: dom.domid(),
        devid: 0,
    };
    // The change reaches us through dom0's service thread: wait for the
    // warning, then pump a while longer to see that no second one comes.
    bk.pump_until("the warning", TIMEOUT, |_| {
        !warns(&format!("vif {id}:")).is_empty()
    });
    bk.pump_for(Duration::from_millis(50));
    assert_eq!(warns(&format!("vif {id}:")).len(), 1);
    assert!(!bk.is_connected(id));
    detach(&host, &mut bk, None, &spec, false).unwrap();
    assert!(bk.nb.vif(id).is_none());
    assert_eq!(all_warns().len(), 1);
}

#[test]
fn stop_closes_every_vif_and_drops_the_watches() {
    let host = SimHost::new().unwrap();
    let mut bk = Backend::new(&host, NetbackConfig::default());
    let (mut a, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    a.connect(&mut bk, 16);
    let (b, _) = Front::create(&host, &mut bk, 0, FrontKeys::LINUX);
    assert_eq!(bk.nb.vif(b.id).unwrap().state, XenbusState::InitWait);
    assert!(bk.nb.port(a.id).is_some());
    bk.nb.stop(&mut bk.xs, &mut bk.pool);
    // Both backends say Closed (a connected one passed through Closing).
    for id in [a.id, b.id] {
        assert_eq!(
            bk.read(&format!("{}/state", bdir(id))).as_deref(),
            Some("6"),
            "{id}"
        );
        // The toolstack's directory stays.
        assert!(bk.read(&format!("{}/frontend", bdir(id))).is_some());
    }
    assert!(bk.nb.vif(a.id).is_none() && bk.nb.vifs().next().is_none());
    assert!(bk.nb.port(a.id).is_none());
    assert_eq!(bk.pool.in_use(), 0);
    assert_eq!(bk.nb.next_event(), Some(NetbackEvent::Disconnected(a.id)));
    // The frontend follows.
    a.follow_backend_close();
    // No watch left: a new device goes unnoticed until start again.
    let (c_dom, c_spec) = {
        let d = host.create_domain(&DomainConfig::new("late")).unwrap();
        let s = VifSpec::new(d.domid(), bk.domid(), 0);
        (d, s)
    };
    vif::create_vif(&host, &c_spec).unwrap();
    bk.pump_for(Duration::from_millis(30));
    let late = VifId {
        domid: c_dom.domid(),
        devid: 0,
    };
    assert!(bk.nb.vif(late).is_none());
    bk.nb.start(&mut bk.xs).unwrap();
    // Found through the new watch's first event (delivered by dom0's
    // service thread, at its own pace).
    bk.pump_until("the late vif", TIMEOUT, |b| b.nb.vif(late).is_some());
    assert!(all_warns().is_empty(), "{:?}", all_warns());
}
