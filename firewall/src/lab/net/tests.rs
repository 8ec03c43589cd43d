//! End to end without the firewall: an AppVM's netfront straight on
//! sys-net's netback, the AppVM on sys-net's uplink subnet with sys-net's
//! gateway as its own.

use std::net::IpAddr;
use std::time::Duration;

use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};
use xen::sim::SimHost;

use super::*;

const T: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// sys-net, and a client attached directly to it.
fn direct(host: &SimHost) -> (Internet, AppVm) {
    let mut inet = Internet::start(host, InternetConfig::default()).unwrap();
    let cfg = AppVmConfig {
        ipv4: Ipv4Cidr::new([10, 138, 0, 5].into(), 24),
        gateway: [10, 138, 0, 1].into(),
        ipv6: Some((
            Ipv6Cidr::new("fd00:1::5".parse().unwrap(), 64),
            "fd00:1::1".parse().unwrap(),
        )),
        ..AppVmConfig::qubes("client", [10, 138, 0, 5])
    };
    let vm = AppVm::start(host, cfg).unwrap();
    inet.attach(host, vm.domid(), 0, "10.138.0.5").unwrap();
    vm.wait_link_up(T).unwrap();
    inet.wait_connected(1, T).unwrap();
    (inet, vm)
}

/// sys-net's counters once `pred` holds (or after `T`, for the caller's
/// assertions to report). sys-net publishes them after its turn, that is
/// after the frames that turn sent: a client can see the answer first.
fn inet_stats(inet: &Internet, pred: impl Fn(&InternetStats) -> bool) -> InternetStats {
    let end = std::time::Instant::now() + T;
    loop {
        let s = inet.stats();
        if pred(&s) || std::time::Instant::now() >= end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn assert_ok(results: &[ProbeResult]) {
    for r in results {
        eprintln!("{:?} -> {:?} ({} received)", r.probe, r.outcome, r.received);
    }
    for r in results {
        assert!(r.outcome.is_ok(), "{:?}: {:?}", r.probe, r.outcome);
    }
}

#[test]
fn every_probe_kind_works_end_to_end() {
    let host = SimHost::new().unwrap();
    let (inet, vm) = direct(&host);
    let dns = ip("10.139.1.1");
    let probes = vec![
        Probe::fetch(ip("198.51.100.10"), 80, 100 * 1024),
        Probe::fetch(ip("203.0.113.7"), 443, 1),
        Probe::fetch(ip("2001:db8::10"), 80, 20_000),
        Probe::dns_a(dns, "example.com", &[ip("198.51.100.10")]),
        Probe::dns_aaaa(ip("10.139.1.2"), "Example.com", &[ip("2001:db8::10")]),
        Probe::dns_nxdomain(dns, "no-such.example"),
        Probe::echo(ip("198.51.100.10"), 7, b"hello, echo"),
        Probe::echo(ip("2001:db8::10"), 7, &[0xa5; 1000]),
        Probe::ping(ip("198.51.100.10"), 56),
        Probe::ping(ip("10.138.0.1"), 1000),
        Probe::ping(ip("2001:db8::10"), 56),
    ];
    let results = vm.run(probes, T).unwrap();
    assert_ok(&results);
    assert_eq!(results.len(), 11);
    let Outcome::Ok { bytes, .. } = results[0].outcome else {
        unreachable!()
    };
    assert_eq!(bytes, 100 * 1024);

    let s = inet_stats(&inet, |s| {
        s.http.requests >= 3
            && s.http.bytes >= 100 * 1024 + 1 + 20_000
            && s.dns_queries >= 3
            && s.dns_nxdomain >= 1
            && s.echo_datagrams >= 2
            && s.echo_bytes >= 11 + 1000
            && s.pings >= 3
    });
    assert_eq!(s.http.connections, 3);
    assert_eq!(s.http.requests, 3);
    assert_eq!(s.http.bytes, 100 * 1024 + 1 + 20_000);
    // Datagram probes retransmit after a second without an answer (the
    // first IPv6 packets wait for neighbour discovery), so these are
    // lower bounds.
    assert!(s.dns_queries >= 3 && s.dns_nxdomain >= 1, "{s:?}");
    assert!(s.echo_datagrams >= 2 && s.echo_bytes >= 11 + 1000, "{s:?}");
    assert!(s.pings >= 3, "{s:?}");
    assert_eq!(vm.stats().probes, 11);
    vm.stop(&host).unwrap();
    inet.stop(&host).unwrap();
}

#[test]
fn closed_ports_refuse_and_unknown_hosts_are_silent() {
    let host = SimHost::new().unwrap();
    let (inet, vm) = direct(&host);
    // What gets an answer may take its time on a loaded machine; what is
    // silent is given half a second (a batch lasts as long as its slowest
    // probe).
    let answered = vm
        .run(
            vec![
                Probe::fetch(ip("198.51.100.10"), 8080, 10),
                Probe::dns_a(ip("10.139.1.1"), "other.example", &[ip("1.2.3.4")]),
            ],
            T,
        )
        .unwrap();
    let silent = vm
        .run(
            vec![
                Probe::fetch(ip("198.51.100.99"), 80, 10),
                Probe::ping(ip("198.51.100.99"), 8),
            ],
            Duration::from_millis(500),
        )
        .unwrap();
    assert_eq!(answered[0].outcome, Outcome::Refused);
    assert_eq!(silent[0].outcome, Outcome::Timeout);
    assert_eq!(silent[1].outcome, Outcome::Timeout);
    assert!(
        matches!(answered[1].outcome, Outcome::Wrong(_)),
        "{:?}",
        answered[1]
    );
    assert_eq!(
        answered[1].answer.as_ref().unwrap().addrs,
        vec![ip("203.0.113.7")]
    );
    let s = inet_stats(&inet, |s| s.device.rx_filtered >= 2);
    assert!(s.device.rx_filtered >= 2, "{s:?}");
    // Several fetches at once use the socket pool.
    let many = (0..6)
        .map(|i| Probe::fetch(ip("198.51.100.10"), 80, 5000 + i))
        .collect();
    assert_ok(&vm.run(many, T).unwrap());
    vm.stop(&host).unwrap();
    inet.stop(&host).unwrap();
}

#[test]
fn raw_frames_and_capture() {
    let host = SimHost::new().unwrap();
    let mut inet = Internet::start(&host, InternetConfig::default()).unwrap();
    let cfg = AppVmConfig {
        ipv4: Ipv4Cidr::new([10, 138, 0, 6].into(), 24),
        gateway: [10, 138, 0, 1].into(),
        capture: 64,
        ..AppVmConfig::qubes("client", [10, 138, 0, 6])
    };
    let vm = AppVm::start(&host, cfg).unwrap();
    inet.attach(&host, vm.domid(), 0, "10.138.0.6").unwrap();
    vm.wait_link_up(T).unwrap();
    // A hand-made ARP request for the gateway from a spoofed MAC and IP:
    // sys-net learns the spoofed MAC on our vif and answers it there.
    let spoof_mac = [0x02, 0, 0, 0, 0, 0x42];
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&spoof_mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&spoof_mac);
    arp.extend_from_slice(&[10, 138, 0, 77]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 138, 0, 1]);
    vm.send_raw(arp).unwrap();
    let end = std::time::Instant::now() + T;
    let reply = loop {
        let got = vm.captured();
        if let Some(f) = got
            .into_iter()
            .find(|f| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[0..6] == spoof_mac)
        {
            break f;
        }
        assert!(std::time::Instant::now() < end, "no ARP reply captured");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(&reply[20..22], &[0, 2]); // reply
    assert_eq!(&reply[28..32], &[10, 138, 0, 1]);
    assert_eq!(vm.stats().raw_sent, 1);
    vm.stop(&host).unwrap();
    inet.stop(&host).unwrap();
}

#[test]
fn sys_net_restart_closes_the_vif_and_the_client_reconnects() {
    let host = SimHost::new().unwrap();
    let (inet, vm) = direct(&host);
    let fetch = || Probe::fetch(ip("198.51.100.10"), 80, 3000);
    assert_ok(&vm.run(vec![fetch()], T).unwrap());
    let old = inet.domid();
    let inet = inet.restart(&host).unwrap();
    assert_ne!(inet.domid(), old);
    inet.wait_connected(1, T).unwrap();
    vm.wait_link_up(T).unwrap();
    assert!(vm.stats().link_ups >= 2, "{:?}", vm.stats());
    // The new sys-net has a new neighbour cache entry to learn: allow a
    // retransmission.
    assert_ok(
        &vm.run(vec![fetch(), Probe::ping(ip("10.138.0.1"), 8)], T)
            .unwrap(),
    );
    vm.stop(&host).unwrap();
    inet.stop(&host).unwrap();
}
