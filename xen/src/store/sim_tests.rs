//! The xenstore client against the simulator's xenstored, over a real ring
//! page, event channels and dom0's service thread. The test thread runs the
//! domain's code (a `SimDomain` may issue hypercalls from any thread) and,
//! for concurrent changes, plays dom0's toolstack through
//! [`SimHost::with_xenstore`].

use alloc::format;
use alloc::string::String;

use crate::evtchn::EventChannels;
use crate::hypervisor::Hypervisor;
use crate::sim::{DomainConfig, SimDomain, SimHost};
use crate::store::wire::XsError;
use crate::store::{Access, Perm, StoreError, WatchEvent, Xenstore};
use crate::xenbus::{read_state, write_state, XenbusState};

fn boot(name: &str) -> (SimHost, SimDomain, Xenstore<SimDomain>) {
    let host = SimHost::new().expect("sim host");
    let dom = host
        .create_domain(&DomainConfig::new(name))
        .expect("domain");
    let ev = EventChannels::new(dom.clone()).expect("event channels");
    let xs = Xenstore::from_params(ev).expect("xenstore");
    (host, dom, xs)
}

fn soon(dom: &SimDomain) -> Option<u64> {
    Some(dom.now_ns() + 5_000_000_000)
}

#[test]
fn sim_basic_operations() {
    let (host, dom, mut xs) = boot("store-basic");
    let d = dom.domid();
    assert_eq!(xs.domid(), Ok(d));
    assert_eq!(xs.read_string("name").unwrap(), "store-basic");
    let home = xs.get_domain_path(d).unwrap();
    assert_eq!(home, format!("/local/domain/{d}"));

    xs.write("data/x", "hello").unwrap();
    assert_eq!(xs.read(&format!("{home}/data/x")).unwrap(), b"hello");
    assert_eq!(
        host.with_xenstore(|x| x.read(&format!("{home}/data/x"))),
        Ok(b"hello".to_vec())
    );
    assert_eq!(xs.read_opt("data/none"), Ok(None));
    xs.mkdir("data/dir").unwrap();
    xs.write("data/dir/a", "1").unwrap();
    let mut names = xs.directory("data").unwrap();
    names.sort();
    assert_eq!(names, ["dir", "x"]);
    xs.rm("data/dir").unwrap();
    assert_eq!(xs.directory("data").unwrap(), ["x"]);

    // The node we created is ours; we may let dom0 read it.
    assert_eq!(xs.get_perms("data/x").unwrap()[0].domid, d);
    let perms = [Perm::new(d, Access::None), Perm::new(0, Access::Read)];
    xs.set_perms("data/x", &perms).unwrap();
    assert_eq!(xs.get_perms("data/x").unwrap(), perms);

    // Errors from xenstored come back typed and leave the client usable.
    assert_eq!(
        xs.write("/local/domain/0/x", "no"),
        Err(StoreError::Xs(XsError::Eacces))
    );
    assert_eq!(
        xs.write("bad//path", "no"),
        Err(StoreError::Xs(XsError::Einval))
    );
    assert_eq!(xs.domid(), Ok(d));
}

#[test]
fn sim_watches_see_our_and_dom0_changes() {
    let (host, dom, mut xs) = boot("store-watch");
    let d = dom.domid();
    xs.watch("data", "tok").unwrap();
    let ev = |p: &str| {
        Some(WatchEvent {
            path: p.into(),
            token: "tok".into(),
        })
    };
    assert_eq!(xs.next_event(soon(&dom)), Ok(ev("data")));
    // A change by dom0 reaches us while we block on events.
    host.with_xenstore(|x| x.write(&format!("/local/domain/{d}/data/k"), b"v"))
        .unwrap();
    assert_eq!(xs.next_event_for("tok", soon(&dom)), Ok(ev("data/k")));
    // Our own write fires the watch while we wait for the reply; the event
    // is queued.
    xs.write("data/m", "1").unwrap();
    assert_eq!(xs.poll_event_for("tok"), ev("data/m"));
    // Nothing more: next_event times out.
    let deadline = dom.now_ns() + 20_000_000;
    assert_eq!(xs.next_event(Some(deadline)), Ok(None));
    xs.unwatch("data", "tok").unwrap();
    xs.write("data/n", "1").unwrap();
    assert_eq!(xs.poll_event(), None);
}

#[test]
fn sim_transaction_retries_after_conflict() {
    let (host, dom, mut xs) = boot("store-tx");
    let d = dom.domid();
    xs.write("data/counter", "0").unwrap();
    let mut attempts = 0;
    let value = xs
        .transaction(|tx| {
            attempts += 1;
            let v: String = String::from_utf8(tx.read("data/counter")?).unwrap();
            if attempts == 1 {
                // dom0 changes what we read: the commit must fail with
                // EAGAIN and the closure run again.
                let p = format!("/local/domain/{d}/data/counter");
                host.with_xenstore(|x| x.write(&p, b"10")).unwrap();
            }
            let n: u32 = v.parse().unwrap();
            tx.write("data/counter", format!("{}", n + 1))?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(value, 11);
    assert_eq!(xs.read("data/counter").unwrap(), b"11");
    // An error inside aborts: nothing written.
    let r: Result<(), StoreError> = xs.transaction(|tx| {
        tx.write("data/aborted", "1")?;
        tx.read("data/missing")?;
        Ok(())
    });
    assert_eq!(r, Err(StoreError::Xs(XsError::Enoent)));
    assert_eq!(xs.read_opt("data/aborted"), Ok(None));
}

#[test]
fn sim_xenbus_state_roundtrip() {
    let (_host, _dom, mut xs) = boot("store-xenbus");
    let dir = "device/vif/0";
    assert_eq!(read_state(&mut xs, dir), Ok(XenbusState::Unknown));
    write_state(&mut xs, dir, XenbusState::InitWait).unwrap();
    assert_eq!(read_state(&mut xs, dir), Ok(XenbusState::InitWait));
    assert_eq!(xs.read("device/vif/0/state").unwrap(), b"2");
}
