//! The client against dom0's QubesDB service over real vchans in the
//! simulated Xen: the VM's code on its own thread ([`Connection`] exactly
//! as the firewall uses it), the daemon model served from domain 0.

use std::string::{String, ToString};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;
use std::vec::Vec;
use std::{format, vec};

use xen::evtchn::EventChannels;
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::Hypervisor;

use crate::link::{connect_vchan, Connection};
use crate::sim::Dom0QubesDb;
use crate::*;

const T: Duration = Duration::from_secs(20);
const T_NS: u64 = 20_000_000_000;

const C1: &str = "10.137.0.5";
const C2: &str = "10.137.0.9";

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn populate(d: &mut Daemon) {
    let v4 = |s: &str| s.parse().unwrap();
    d.write("/name", b"sys-firewall").unwrap();
    d.write("/qubes-vm-type", b"ProxyVM").unwrap();
    d.set_net_config(&NetConfig {
        ip: Some(v4("10.137.0.23")),
        netmask: Some(v4("255.255.255.255")),
        gateway: Some(v4("10.137.0.4")),
        primary_dns: Some(v4("10.139.1.1")),
        secondary_dns: Some(v4("10.139.1.2")),
        netvm_gateway: Some(v4("10.137.0.23")),
        ..NetConfig::default()
    })
    .unwrap();
    d.set_connected_ips(&[v4(C1), v4(C2)], &[]).unwrap();
    d.set_client_rules(ip(C1), "drop", &["action=accept"])
        .unwrap();
    d.set_client_rules(ip(C2), "drop", &["action=accept proto=tcp", "action=drop"])
        .unwrap();
}

/// What the VM reports to the test.
#[derive(Debug)]
enum Obs {
    Event(Event, Option<Arc<RuleSnapshot>>, Arc<NetConfig>),
    Failed(String),
}

/// What the test tells the VM.
enum Ctl {
    Write(&'static str, &'static [u8]),
    /// Connect again after a failure.
    Resume,
    Stop,
}

/// The VM's code: connect, synchronise, then service the connection,
/// reporting every event. After a failure it reports it, closes its end
/// and waits for `Resume` to connect again with the same client.
fn vm_main(d: SimDomain, tx: Sender<Obs>, ctl: Receiver<Ctl>) -> Result<Client, String> {
    let ev = EventChannels::new(d.clone()).map_err(|e| e.to_string())?;
    let mut store = Xenstore::from_params(ev.clone()).map_err(|e| e.to_string())?;
    let dl = |d: &SimDomain| Some(d.now_ns() + T_NS);
    let mut conn = Connection::connect(&ev, &mut store, dl(&d)).map_err(|e| e.to_string())?;
    loop {
        let mut failed = match conn.service() {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        while let Some(e) = conn.client_mut().poll_event() {
            let rules = match &e {
                Event::RulesCommitted { client } => conn.client().rules(*client),
                _ => None,
            };
            let _ = tx.send(Obs::Event(e, rules, conn.client().net_config()));
        }
        match ctl.try_recv() {
            Ok(Ctl::Stop) => return Ok(conn.into_client()),
            Ok(Ctl::Write(k, v)) => {
                if let Err(e) = conn.client_mut().write(k, v) {
                    failed = Some(e.to_string());
                }
            }
            Ok(Ctl::Resume) | Err(_) => {}
        }
        if let Some(why) = failed {
            let _ = tx.send(Obs::Failed(why));
            let client = conn.into_client();
            loop {
                match ctl.recv_timeout(T) {
                    Ok(Ctl::Resume) => break,
                    Ok(Ctl::Stop) => return Ok(client),
                    Ok(Ctl::Write(..)) => {}
                    Err(_) => return Err("no Resume".into()),
                }
            }
            let v = connect_vchan(&ev, &mut store, dl(&d)).map_err(|e| e.to_string())?;
            conn = Connection::resume(v, client);
            continue;
        }
        let _ = conn.vchan().wait(Some(d.now_ns() + 10_000_000));
    }
}

struct Lab {
    host: SimHost,
    qdb: Dom0QubesDb,
    vm: xen::abi::DomId,
    obs: Receiver<Obs>,
    ctl: Sender<Ctl>,
    thread: Option<std::thread::JoinHandle<Result<Client, String>>>,
}

impl Lab {
    fn start() -> Lab {
        let host = SimHost::new().expect("host");
        let mut cfg = DomainConfig::new("sys-firewall");
        cfg.ram_mib = 16;
        let fw = host.create_domain(&cfg).expect("firewall domain");
        let vm = fw.domid();
        let qdb = Dom0QubesDb::start(&host).expect("dom0 qubesdb");
        qdb.add_vm(vm);
        qdb.with_db(vm, populate).unwrap();
        qdb.serve(&host, vm).expect("serve");
        let (tx, obs) = channel();
        let (ctl, crx) = channel();
        let thread = host.spawn(&fw, move |d| vm_main(d, tx, crx));
        Lab {
            host,
            qdb,
            vm,
            obs,
            ctl,
            thread: Some(thread),
        }
    }

    fn next(&self) -> Obs {
        match self.obs.recv_timeout(T) {
            Ok(o) => o,
            Err(RecvTimeoutError::Timeout) => panic!("no observation from the VM within {T:?}"),
            Err(e) => panic!(
                "VM thread gone: {e}; {:?}",
                self.host.console_output(self.vm)
            ),
        }
    }

    fn next_event(&self) -> (Event, Option<Arc<RuleSnapshot>>, Arc<NetConfig>) {
        match self.next() {
            Obs::Event(e, r, c) => (e, r, c),
            Obs::Failed(why) => panic!("VM connection failed: {why}"),
        }
    }

    /// Events until (and including) `Synced`.
    fn until_synced(&self) -> Vec<Event> {
        let mut v = Vec::new();
        loop {
            let (e, _, _) = self.next_event();
            let done = e == Event::Synced;
            v.push(e);
            if done {
                return v;
            }
        }
    }

    fn stop(mut self) -> Client {
        self.ctl.send(Ctl::Stop).unwrap();
        let t = self.thread.take().unwrap();
        t.join()
            .expect("VM thread panicked")
            .expect("VM code failed")
    }
}

fn db_of(lab: &Lab) -> Db {
    lab.qdb.with_db(lab.vm, |d| d.db().clone()).unwrap()
}

#[test]
fn sim_initial_sync_live_edit_commit_and_removal() {
    let lab = Lab::start();
    // Initial sync: everything dom0 wrote before the VM ran.
    let ev = lab.until_synced();
    for e in [
        Event::ConfigChanged,
        Event::ClientsChanged,
        Event::RulesCommitted { client: ip(C1) },
        Event::RulesCommitted { client: ip(C2) },
    ] {
        assert!(ev.contains(&e), "{e:?} missing from {ev:?}");
    }
    assert!(lab.qdb.wait_idle(lab.vm, T));

    // Live rule edit: one event, at the commit, with the new rules.
    lab.qdb
        .with_db(lab.vm, |d| {
            d.set_client_rules(
                ip(C1),
                "drop",
                &["action=accept dst4=10.0.0.0/8", "action=drop"],
            )
        })
        .unwrap()
        .unwrap();
    let (e, rules, cfg) = lab.next_event();
    assert_eq!(e, Event::RulesCommitted { client: ip(C1) });
    let rules = rules.unwrap();
    assert_eq!(
        rules.str_entries().unwrap(),
        [
            ("0000", "action=accept dst4=10.0.0.0/8"),
            ("0001", "action=drop"),
            ("policy", "drop")
        ]
    );
    assert_eq!(
        cfg.uplink().unwrap().gateway,
        "10.137.0.4".parse::<std::net::Ipv4Addr>().unwrap()
    );

    // Removal of a client.
    lab.qdb
        .with_db(lab.vm, |d| {
            d.remove_client(ip(C2)).unwrap();
            d.set_connected_ips(&["10.137.0.5".parse().unwrap()], &[])
                .unwrap();
        })
        .unwrap();
    assert_eq!(lab.next_event().0, Event::ClientRemoved { client: ip(C2) });
    assert_eq!(lab.next_event().0, Event::ClientsChanged);

    // A configuration change (netvm switched).
    lab.qdb
        .with_db(lab.vm, |d| d.write("/qubes-gateway", b"10.137.0.8"))
        .unwrap()
        .unwrap();
    let (e, _, cfg) = lab.next_event();
    assert_eq!(e, Event::ConfigChanged);
    assert_eq!(cfg.gateway, Some("10.137.0.8".parse().unwrap()));

    // The VM publishes a key: it reaches dom0's database.
    lab.ctl
        .send(Ctl::Write(
            "/qubes-iptables-error",
            b"rules of 10.137.0.5 invalid",
        ))
        .unwrap();
    assert!(lab.qdb.wait_for(lab.vm, T, |d| {
        d.read("/qubes-iptables-error") == Some(&b"rules of 10.137.0.5 invalid"[..])
    }));

    assert!(lab.qdb.wait_idle(lab.vm, T));
    let stats = lab.qdb.with_db(lab.vm, |d| d.stats()).unwrap();
    assert_eq!(stats.acks, stats.pushed, "every push answered RESP_OK");
    assert_eq!(stats.errors_from_vm, 0);
    assert_eq!(stats.vm_writes, 1);
    assert!(lab.qdb.ended(lab.vm).is_none());
    let dom0_db = db_of(&lab);
    let client = lab.stop();
    assert_eq!(client.db(), &dom0_db, "the replica equals dom0's database");
}

#[test]
fn sim_malformed_messages_and_reconnect() {
    let lab = Lab::start();
    lab.until_synced();
    assert!(lab.qdb.wait_idle(lab.vm, T));

    // A write with a NUL in its value: refused with RESP_ERROR, session on.
    lab.qdb
        .with_db(lab.vm, |d| d.inject_message(1, b"/qubes-ip", b"10.0.0.1\0"))
        .unwrap();
    let (e, _, _) = lab.next_event();
    assert!(
        matches!(e, Event::Rejected(QdbError::NulInValue { .. })),
        "{e:?}"
    );
    assert!(lab
        .qdb
        .wait_for(lab.vm, T, |d| d.stats().errors_from_vm == 1));

    // An unknown message type: the VM's session breaks, it closes the
    // vchan, and dom0 sees the connection end.
    lab.qdb
        .with_db(lab.vm, |d| d.inject_message(42, b"/x", b""))
        .unwrap();
    match lab.next() {
        Obs::Failed(why) => assert!(why.contains("unknown message type 42"), "{why}"),
        o => panic!("expected a failure, got {o:?}"),
    }
    let why = lab.qdb.wait_ended(lab.vm, T).expect("dom0 sees the end");
    assert!(why.contains("closed"), "{why}");

    // Meanwhile dom0 changes the rules; then its daemon is restarted and
    // the VM connects again: one MULTIREAD, and only the difference is
    // reported.
    lab.qdb
        .with_db(lab.vm, |d| {
            d.set_client_rules(ip(C1), "drop", &["action=drop"])
        })
        .unwrap()
        .unwrap();
    lab.qdb.serve(&lab.host, lab.vm).expect("serve again");
    lab.ctl.send(Ctl::Resume).unwrap();
    let (e, rules, _) = lab.next_event();
    assert_eq!(e, Event::RulesCommitted { client: ip(C1) });
    assert_eq!(rules.unwrap().get("0000"), Some(&b"action=drop"[..]));
    assert_eq!(lab.next_event().0, Event::Synced);
    assert!(lab.qdb.wait_idle(lab.vm, T));
    assert_eq!(lab.qdb.connections(lab.vm), 2);

    // dom0's daemon goes away: the VM sees the vchan closed.
    lab.qdb.close(&lab.host, lab.vm);
    match lab.next() {
        Obs::Failed(why) => assert!(why.contains("closed"), "{why}"),
        o => panic!("expected a failure, got {o:?}"),
    }
    lab.qdb
        .serve(&lab.host, lab.vm)
        .expect("serve a third time");
    lab.ctl.send(Ctl::Resume).unwrap();
    assert_eq!(lab.next_event().0, Event::Synced);
    let dom0_db = db_of(&lab);
    let client = lab.stop();
    assert_eq!(client.db(), &dom0_db);
    assert_eq!(client.stats().syncs, 3);
}

#[test]
fn sim_keys_are_published_where_the_vm_looks_with_libxenvchan_perms() {
    let host = SimHost::new().expect("host");
    let fw = host
        .create_domain(&DomainConfig::new("fw"))
        .expect("domain");
    let vm = fw.domid();
    let qdb = Dom0QubesDb::start(&host).expect("dom0 qubesdb");
    qdb.serve(&host, vm).expect("serve");
    let dir = format!("/local/domain/0/data/vchan/{vm}/111");
    host.with_xenstore(|xs| {
        for key in ["ring-ref", "event-channel"] {
            let path = format!("{dir}/{key}");
            let v = xs.read(&path).expect("key present");
            let n: u32 = String::from_utf8(v).unwrap().parse().unwrap();
            assert!(n > 0);
            let perms: Vec<String> = xs
                .get_perms(&path)
                .unwrap()
                .iter()
                .map(|p| p.to_string())
                .collect();
            assert_eq!(perms, vec![String::from("n0"), format!("r{vm}")]);
        }
    });
    qdb.close(&host, vm);
    host.with_xenstore(|xs| assert!(!xs.exists(&dir)));
}
