//! End to end on the simulated Qubes host: smoltcp AppVMs behind the
//! firewall VM (the unikernel's event loop, drivers and engine), sys-net
//! with a smoltcp internet, dom0's QubesDB writing rules as Qubes does.
//!
//! Release builds only (`make vif-release`): in a debug build the smoltcp
//! endpoints are too slow for the probes' deadlines.
#![cfg(not(debug_assertions))]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use firewall::engine::build::build_udp;
use firewall::engine::{Drop, CLIENT_SIDE_MAC};
use firewall::lab::net::{Outcome, Probe};
use firewall::lab::topology::{client_ip6, ClientSpec, Lab, LabConfig, DNS1};

const T: Duration = Duration::from_secs(4);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn lab(clients: Vec<ClientSpec>) -> Lab {
    let cfg = LabConfig {
        clients,
        ..LabConfig::default()
    };
    let lab = Lab::start(cfg, None).expect("lab starts");
    assert!(lab.wait_fw(Duration::from_secs(10), |s| s.uplink_up));
    lab
}

fn outcome(lab: &Lab, vm: &str, p: Probe) -> Outcome {
    lab.client(vm).probe(p, T).expect("probe runs").outcome
}

const WEB: &str = "198.51.100.10";
const OTHER: &str = "203.0.113.7";

#[test]
fn tcp_udp_dns_and_ping_through_nat_v4_and_v6() {
    let lab = lab(vec![ClientSpec::new("work", 10, &["action=accept"])]);
    for p in [
        Probe::fetch(ip(WEB), 80, 300_000),
        Probe::dns_a(IpAddr::V4(DNS1), "example.com", &[ip(WEB)]),
        Probe::dns_aaaa(IpAddr::V4(DNS1), "example.com", &[ip("2001:db8::10")]),
        Probe::dns_nxdomain(IpAddr::V4(DNS1), "nothing.example"),
        Probe::echo(ip(WEB), 7, b"through the firewall"),
        Probe::ping(ip(WEB), 100),
        Probe::fetch(ip("2001:db8::10"), 443, 100_000),
        Probe::ping(ip("2001:db8::10"), 100),
    ] {
        let o = outcome(&lab, "work", p.clone());
        assert!(o.is_ok(), "{p:?}: {o:?}");
    }
    let me = Ipv4Addr::new(10, 137, 0, 10);
    assert!(
        lab.wait_fw(T, |s| s
            .client(me)
            .is_some_and(|c| c.stats.bytes_in > 400_000)),
        "{:?}",
        lab.snapshot()
    );
    let s = lab.snapshot();
    let c = s.client(me).unwrap();
    assert!(c.flows >= 6);
    assert_eq!(s.engine.total_drops(), 0, "{:?}", s.engine);
    lab.stop().unwrap();
}

#[test]
fn each_rule_field_allows_and_denies() {
    let lab = lab(vec![ClientSpec::new(
        "c",
        20,
        &[
            "action=accept dst4=198.51.100.0/24 proto=tcp dstports=443-443",
            "action=accept specialtarget=dns",
            "action=accept proto=icmp icmptype=8",
            "action=drop dst4=203.0.113.0/24",
            "action=accept proto=udp dstports=7-7",
        ],
    )]);
    // dst4 + proto + dstports.
    assert!(outcome(&lab, "c", Probe::fetch(ip(WEB), 443, 1000)).is_ok());
    assert!(outcome(&lab, "c", Probe::fetch(ip(WEB), 80, 1000)).is_admin_prohibited());
    // specialtarget=dns.
    assert!(outcome(
        &lab,
        "c",
        Probe::dns_a(IpAddr::V4(DNS1), "example.com", &[ip(WEB)])
    )
    .is_ok());
    // proto=icmp icmptype=8.
    assert!(outcome(&lab, "c", Probe::ping(ip(WEB), 32)).is_ok());
    // An earlier drop wins over a later accept.
    assert!(outcome(&lab, "c", Probe::echo(ip(OTHER), 7, b"x")).is_admin_prohibited());
    assert!(outcome(&lab, "c", Probe::echo(ip(WEB), 7, b"x")).is_ok());
    // policy drop: v6 rules are the same lines; dst4 rules do not match v6.
    assert!(outcome(&lab, "c", Probe::fetch(ip("2001:db8::10"), 443, 1000)).is_admin_prohibited());
    lab.stop().unwrap();
}

#[test]
fn rule_edit_applies_live_and_cuts_denied_flows() {
    let mut lab = lab(vec![ClientSpec::new("c", 30, &["action=accept"])]);
    assert!(outcome(&lab, "c", Probe::fetch(ip(OTHER), 80, 1000)).is_ok());
    let me = Ipv4Addr::new(10, 137, 0, 30);
    lab.set_rules(me, &["action=accept dst4=198.51.100.0/24"])
        .unwrap();
    assert!(lab.wait_fw(T, |s| s.client(me).is_some_and(|c| c.stats.rule_loads >= 4)));
    assert!(outcome(&lab, "c", Probe::fetch(ip(OTHER), 80, 1000)).is_admin_prohibited());
    assert!(outcome(&lab, "c", Probe::fetch(ip(WEB), 80, 1000)).is_ok());
    assert!(
        lab.wait_fw(T, |s| s.engine.flows_cut_by_reload >= 1),
        "{:?}",
        lab.snapshot().engine
    );
    // Rules that do not parse block the client (fail closed).
    lab.set_rules(me, &["action=accept dst4=not-an-address"])
        .unwrap();
    assert!(lab.wait_fw(T, |s| s.client(me).is_some_and(|c| c.stats.rule_loads >= 6)));
    assert!(outcome(&lab, "c", Probe::fetch(ip(WEB), 80, 1000)).is_admin_prohibited());
    // A client restart keeps working.
    lab.stop_client("c").unwrap();
    assert!(lab.wait_fw(T, |s| s.clients.is_empty()));
    lab.set_rules(me, &["action=accept"]).unwrap();
    lab.start_client(ClientSpec::new("c", 30, &["action=accept"]))
        .unwrap();
    assert!(outcome(&lab, "c", Probe::fetch(ip(WEB), 80, 1000)).is_ok());
    lab.stop().unwrap();
}

#[test]
fn spoofing_and_client_to_client_are_blocked() {
    let lab = lab(vec![
        ClientSpec::new("a", 40, &["action=accept"]),
        ClientSpec::new("b", 41, &["action=accept"]),
    ]);
    let a = lab.client("a");
    assert!(outcome(&lab, "a", Probe::ping(ip(WEB), 8)).is_ok());
    let mac = a.mac().unwrap();
    let mut f = [0u8; 200];
    // Spoofed source IP (b's address).
    let n = build_udp(
        &mut f,
        mac,
        CLIENT_SIDE_MAC,
        ip("10.137.0.41"),
        ip(WEB),
        5000,
        7,
        b"spoof",
    )
    .unwrap();
    a.send_raw(f[..n].to_vec()).unwrap();
    // Spoofed MAC.
    let n = build_udp(
        &mut f,
        [2, 0, 0, 0, 0, 7],
        CLIENT_SIDE_MAC,
        ip("10.137.0.40"),
        ip(WEB),
        5000,
        7,
        b"spoof",
    )
    .unwrap();
    a.send_raw(f[..n].to_vec()).unwrap();
    // ARP claiming b's address.
    let mut arp = vec![0u8; 42];
    arp[0..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&mac);
    arp[12..14].copy_from_slice(&[8, 6]);
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp[22..28].copy_from_slice(&mac);
    arp[28..32].copy_from_slice(&[10, 137, 0, 41]);
    arp[38..42].copy_from_slice(&[10, 137, 0, 1]);
    a.send_raw(arp).unwrap();
    assert!(lab.wait_fw(T, |s| s.engine.drops_for(Drop::SpoofedIp) >= 1
        && s.engine.drops_for(Drop::SpoofedMac) >= 1
        && s.engine.drops_for(Drop::SpoofedArp) >= 1));
    // Client to client: nothing arrives.
    let o = outcome(&lab, "a", Probe::fetch(ip("10.137.0.41"), 80, 10));
    assert!(!o.is_ok(), "{o:?}");
    assert!(lab.snapshot().engine.drops_for(Drop::ClientToClient) >= 1);
    // The sys-net echo service never saw the spoofed datagrams.
    let s = lab.snapshot();
    let row = s.client(Ipv4Addr::new(10, 137, 0, 40)).unwrap();
    assert!(row.stats.spoofed >= 3, "{row:?}");
    lab.stop().unwrap();
}

#[test]
fn sys_net_restart_restores_connectivity_without_a_firewall_restart() {
    let mut lab = lab(vec![ClientSpec::new("c", 50, &["action=accept"])]);
    assert!(outcome(&lab, "c", Probe::fetch(ip(WEB), 80, 10_000)).is_ok());
    lab.restart_sysnet().unwrap();
    assert!(lab.wait_fw(Duration::from_secs(20), |s| s.uplink_up));
    let mut ok = false;
    for _ in 0..5 {
        if outcome(&lab, "c", Probe::fetch(ip(WEB), 80, 10_000)).is_ok() {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "no connectivity after sys-net restart: {:?}",
        lab.snapshot().engine
    );
    lab.stop().unwrap();
}

#[test]
fn per_client_nat_exhaustion_does_not_affect_another_client() {
    let mut cfg = LabConfig {
        clients: vec![
            ClientSpec::new("greedy", 60, &["action=accept"]),
            ClientSpec::new("other", 61, &["action=accept"]),
        ],
        ..LabConfig::default()
    };
    cfg.firewall.engine.limits.max_flows_per_client = 16;
    let lab = Lab::start(cfg, None).unwrap();
    assert!(lab.wait_fw(Duration::from_secs(10), |s| s.uplink_up));
    let g = lab.client("greedy");
    let mac = g.mac().unwrap();
    let mut f = [0u8; 200];
    for port in 0..40u16 {
        let n = build_udp(
            &mut f,
            mac,
            CLIENT_SIDE_MAC,
            ip("10.137.0.60"),
            ip(WEB),
            10_000 + port,
            9,
            b"x",
        )
        .unwrap();
        g.send_raw(f[..n].to_vec()).unwrap();
    }
    let me = Ipv4Addr::new(10, 137, 0, 60);
    assert!(lab.wait_fw(T, |s| s
        .client(me)
        .is_some_and(|c| c.stats.table_full >= 20)));
    assert!(outcome(&lab, "other", Probe::fetch(ip(WEB), 80, 1000)).is_ok());
    assert_eq!(lab.snapshot().client(me).unwrap().flows, 16);
    lab.stop().unwrap();
}

#[test]
fn icmp_errors_reach_the_right_client() {
    let lab = lab(vec![
        ClientSpec::new("a", 70, &["action=accept"]),
        ClientSpec::new("b", 71, &["action=accept"]),
    ]);
    // A TCP port with no listener: sys-net answers RST (smoltcp), which the
    // firewall must route back to the client that connected.
    let o = outcome(&lab, "b", Probe::fetch(ip(WEB), 8080, 10));
    assert_eq!(o, Outcome::Refused);
    // Admin-prohibited from the firewall itself goes to the sender only.
    lab.set_rules(Ipv4Addr::new(10, 137, 0, 70), &[]).unwrap();
    let me = Ipv4Addr::new(10, 137, 0, 70);
    assert!(lab.wait_fw(T, |s| s.client(me).is_some_and(|c| c.stats.rule_loads >= 4)));
    assert!(outcome(&lab, "a", Probe::ping(ip(WEB), 8)).is_admin_prohibited());
    assert!(lab.client("b").icmp_errors().is_empty());
    let _ = client_ip6;
    lab.stop().unwrap();
}

/// `dsthost` rules: the firewall resolves the name (A and AAAA) through
/// the uplink with the DNS servers from its own QubesDB, fails closed
/// until the answer lands, then allows exactly the resolved addresses.
#[test]
fn dsthost_rules_are_resolved_through_the_uplink() {
    let lab = lab(vec![ClientSpec::new(
        "d",
        40,
        &["action=accept dsthost=example.com"],
    )]);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = outcome(&lab, "d", Probe::fetch(ip(WEB), 80, 1000));
        if o.is_ok() {
            break;
        }
        // Until resolved: refused, never let through.
        assert!(o.is_admin_prohibited(), "{o:?}");
        assert!(std::time::Instant::now() < end, "never resolved: {o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(outcome(&lab, "d", Probe::fetch(ip("2001:db8::10"), 443, 1000)).is_ok());
    assert!(outcome(&lab, "d", Probe::fetch(ip(OTHER), 80, 1000)).is_admin_prohibited());
    // The client's own DNS is not allowed by these rules; the firewall's
    // queries (A and AAAA) went to sys-net's resolver.
    assert!(outcome(
        &lab,
        "d",
        Probe::dns_a(IpAddr::V4(DNS1), "example.com", &[ip(WEB)])
    )
    .is_admin_prohibited());
    let q = lab.inet.as_ref().unwrap().stats().dns_queries;
    assert!(q >= 2, "sys-net saw {q} DNS queries");
    lab.stop().unwrap();
}

/// Rule reload is atomic under load: while dom0 swaps the client's rules
/// back and forth as fast as Qubes Manager could, traffic that both rule
/// sets allow never fails (no window without rules, no flow cut wrongly),
/// and traffic that neither allows never passes.
#[test]
fn rule_reload_is_atomic_under_concurrent_traffic() {
    let r1 = ["action=accept dst4=198.51.100.10/32"];
    let r2 = [
        "action=accept dst4=198.51.100.10/32",
        "action=accept dst4=203.0.113.7/32 proto=tcp",
    ];
    let lab = lab(vec![ClientSpec::new("r", 50, &r1)]);
    let me = Ipv4Addr::new(10, 137, 0, 50);
    let loads0 = lab.snapshot().client(me).map_or(0, |c| c.stats.rule_loads);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let done = std::sync::atomic::AtomicU64::new(0);
    let reloads = std::thread::scope(|s| {
        let reloader = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rules: &[&str] = if n % 2 == 0 { &r2 } else { &r1 };
                lab.set_rules(me, rules).unwrap();
                n += 1;
                done.store(n, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        });
        // At least 25 rounds, and until 20 reloads happened among them.
        for round in 0.. {
            if round >= 25 && done.load(std::sync::atomic::Ordering::Relaxed) >= 20 {
                break;
            }
            assert!(round < 500, "the reloader is stuck");
            let res = lab
                .client("r")
                .run(
                    vec![
                        Probe::echo(ip(WEB), 7, b"allowed by both"),
                        Probe::fetch(ip(WEB), 80, 50_000),
                        Probe::echo(ip(OTHER), 7, b"allowed by neither"),
                        Probe::fetch(ip(OTHER), 80, 1000),
                    ],
                    T,
                )
                .expect("probes run");
            assert!(res[0].outcome.is_ok(), "round {round}: {:?}", res[0]);
            assert!(res[1].outcome.is_ok(), "round {round}: {:?}", res[1]);
            assert!(!res[2].outcome.is_ok(), "round {round}: {:?}", res[2]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reloader.join().unwrap()
    });
    assert!(reloads >= 20, "only {reloads} reloads");
    // Every committed change was loaded (v4 and v6 rules each count).
    assert!(
        lab.wait_fw(T, |s| s
            .client(me)
            .is_some_and(|c| c.stats.rule_loads >= loads0 + reloads)),
        "{:?} after {reloads} reloads",
        lab.snapshot().client(me)
    );
    assert_eq!(lab.snapshot().engine.drops_for(Drop::Malformed), 0);
    lab.stop().unwrap();
}

#[test]
fn fake_ip_client_reaches_the_internet_by_its_visible_address_under_its_real_rules() {
    // Qubes' net.fake-ip: dom0 writes /mapped-ip/10.137.0.40/... before
    // the vif appears; the AppVM is configured as 192.168.7.40 behind
    // 192.168.7.1. Its rules are keyed by the real address.
    let real = Ipv4Addr::new(10, 137, 0, 40);
    let (vis, vis_gw) = (
        Ipv4Addr::new(192, 168, 7, 40),
        Ipv4Addr::new(192, 168, 7, 1),
    );
    let lab = lab(vec![ClientSpec::new(
        "fake",
        40,
        &[
            "action=accept dst4=198.51.100.0/24 proto=tcp dstports=80-80",
            "action=accept specialtarget=dns",
            "action=accept proto=icmp",
        ],
    )
    .with_fake_ip(vis, vis_gw)]);
    assert!(lab.wait_fw(T, |s| s.client(real).is_some_and(|c| c.map
        == firewall::engine::AddressMap::Mapped {
            visible_ip: vis,
            visible_gateway: vis_gw
        })));
    for p in [
        Probe::fetch(ip(WEB), 80, 100_000),
        Probe::dns_a(IpAddr::V4(DNS1), "example.com", &[ip(WEB)]),
        Probe::ping(ip(WEB), 100),
        // The visible gateway is the firewall.
        Probe::ping(IpAddr::V4(vis_gw), 32),
    ] {
        let o = outcome(&lab, "fake", p.clone());
        assert!(o.is_ok(), "{p:?}: {o:?}");
    }
    // The real address's rules apply: port 443 and other hosts are denied.
    assert!(outcome(&lab, "fake", Probe::fetch(ip(WEB), 443, 1000)).is_admin_prohibited());
    assert!(outcome(&lab, "fake", Probe::fetch(ip(OTHER), 80, 1000)).is_admin_prohibited());
    let s = lab.snapshot();
    let c = s.client(real).expect("the client, by its real address");
    assert!(c.flows >= 3, "{c:?}");
    assert_eq!(c.stats.spoofed, 0, "{c:?}");
    assert_eq!(s.engine.drops_for(Drop::SpoofedIp), 0);
    // A value that does not parse blocks the client (fail closed) ...
    lab.write_qubesdb("/mapped-ip/10.137.0.40/visible-ip", b"192.168.7.400")
        .unwrap();
    assert!(lab.wait_fw(T, |s| s
        .client(real)
        .is_some_and(|c| c.map == firewall::engine::AddressMap::Invalid)));
    assert!(!outcome(&lab, "fake", Probe::ping(ip(WEB), 32)).is_ok());
    assert!(lab.snapshot().engine.drops_for(Drop::BadAddressMap) >= 1);
    // ... until dom0 writes a valid one again.
    lab.set_fake_ip(real, Some((vis, vis_gw))).unwrap();
    assert!(lab.wait_fw(T, |s| s.client(real).is_some_and(|c| matches!(
        c.map,
        firewall::engine::AddressMap::Mapped { .. }
    ))));
    let o = outcome(&lab, "fake", Probe::ping(ip(WEB), 32));
    assert!(o.is_ok(), "{o:?}");
    lab.stop().unwrap();
}
