//! Two domains exchanging messages over a Xen shared ring, connected the
//! way split drivers connect: the frontend grants a ring page and offers an
//! event channel, publishes both in xenstore and switches to Connected; the
//! backend watches that state, maps the grant, binds the channel and serves
//! requests until it has answered them all, then unmaps and says so; only
//! then does the frontend revoke its grant (which would fail while the
//! backend still had the page mapped).
//!
//! Every step goes through the guest-side `xen` services over the
//! [`Hypervisor`](xen::Hypervisor) trait, so the exchange exercises exactly
//! the hypercalls a unikernel would issue. The frontend checks that every
//! response arrives once, in order, with the value the backend must compute.

use std::time::{Duration, Instant};

use xen::abi::DomId;
use xen::console::Console;
use xen::evtchn::EventChannels;
use xen::gnttab::{map_grant_refs, GrantTable};
use xen::memory::SharedMem;
use xen::ring::{BackRing, FrontRing, RingEntry, RingProtocol};
use xen::sim::xenstored::Perm as XsPerm;
use xen::sim::{Counters, DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::xenbus::{self, XenbusState};
use xen::GuestMemory;

/// How long either side waits for the other before giving up.
const PEER_TIMEOUT_NS: u64 = 10_000_000_000;

/// A request: a sequence number and a value to transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReq {
    /// Sequence number, 0-based.
    pub seq: u64,
    /// Value the backend transforms.
    pub value: u32,
}

/// A response: the request's sequence number and [`transform`] of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoRsp {
    /// Sequence number of the request answered.
    pub seq: u64,
    /// `transform(seq, value)`.
    pub value: u32,
}

impl RingEntry for EchoReq {
    const SIZE: usize = 16;
    fn read(mem: &SharedMem, off: usize) -> Self {
        EchoReq {
            seq: mem.read_u64(off),
            value: mem.read_u32(off + 8),
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_u64(off, self.seq);
        mem.write_u32(off + 8, self.value);
    }
}

impl RingEntry for EchoRsp {
    const SIZE: usize = 16;
    fn read(mem: &SharedMem, off: usize) -> Self {
        EchoRsp {
            seq: mem.read_u64(off),
            value: mem.read_u32(off + 8),
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_u64(off, self.seq);
        mem.write_u32(off + 8, self.value);
    }
}

/// The echo ring protocol: 16-byte slots, 128 per page.
#[derive(Debug)]
pub enum Echo {}

impl RingProtocol for Echo {
    type Req = EchoReq;
    type Rsp = EchoRsp;
}

/// What the backend computes for a request.
pub fn transform(seq: u64, value: u32) -> u32 {
    value.rotate_left(7) ^ (seq as u32).wrapping_mul(0x9E37_79B9)
}

/// The value the frontend sends with request `seq`.
fn value_for(seq: u64) -> u32 {
    (seq as u32).wrapping_mul(2_654_435_761).wrapping_add(12345)
}

/// The outcome of one exchange.
#[derive(Clone, Debug)]
pub struct Report {
    /// Messages exchanged (requests, each answered once).
    pub messages: u64,
    /// Wall time of the exchange itself (after both sides connected).
    pub elapsed: Duration,
    /// The frontend's hypercalls etc. during the exchange.
    pub front: Counters,
    /// The backend's.
    pub back: Counters,
    /// What each side wrote to its PV console.
    pub consoles: Vec<(String, String)>,
}

impl Report {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Run an exchange of `messages` requests between two new domains of
/// `host`; they are destroyed afterwards.
pub fn run(host: &SimHost, messages: u64) -> Result<Report, String> {
    let front = host
        .create_domain(&DomainConfig::new("echo-front"))
        .map_err(|e| e.to_string())?;
    let back = host
        .create_domain(&DomainConfig::new("echo-back"))
        .map_err(|e| e.to_string())?;
    let (fid, bid) = (front.domid(), back.domid());
    // As libxl does for a device: the toolstack creates the frontend's
    // directory, owned by the frontend and readable by the backend.
    // The backend's directory likewise, owned by the backend.
    let (fpath, bpath) = (dir(fid), backend_dir(bid, fid));
    host.with_xenstore(|xs| {
        xs.write(&fpath, b"")?;
        xs.set_perms(&fpath, &[XsPerm::none(fid), XsPerm::read(bid)])?;
        xs.write(&bpath, b"")?;
        xs.set_perms(&bpath, &[XsPerm::none(bid), XsPerm::read(fid)])
    })
    .map_err(|e| format!("toolstack: {e:?}"))?;
    let xen = host.xen().clone();
    let x2 = xen.clone();
    let ft = host.spawn(&front, move |d| frontend(d, bid, messages, &x2));
    let x3 = xen.clone();
    let bt = host.spawn(&back, move |d| backend(d, fid, messages, &x3));
    let fr = ft.join().map_err(|_| "frontend panicked".to_string())?;
    let br = bt.join().map_err(|_| "backend panicked".to_string())?;
    let consoles = vec![
        (
            "echo-front".to_string(),
            String::from_utf8_lossy(&host.console_output(fid)).into_owned(),
        ),
        (
            "echo-back".to_string(),
            String::from_utf8_lossy(&host.console_output(bid)).into_owned(),
        ),
    ];
    host.destroy_domain(fid);
    host.destroy_domain(bid);
    let (elapsed, front, back) = match (fr, br) {
        (Ok((t, f)), Ok((_, b))) => (t, f, b),
        (f, b) => {
            let why: Vec<String> = [("frontend", f.err()), ("backend", b.err())]
                .into_iter()
                .filter_map(|(side, e)| e.map(|e| format!("{side}: {e}")))
                .collect();
            return Err(why.join("; "));
        }
    };
    Ok(Report {
        messages,
        elapsed,
        front,
        back,
        consoles,
    })
}

type Side = Result<(Duration, Counters), String>;

fn dir(front: DomId) -> String {
    format!("/local/domain/{front}/device/echo/0")
}

fn backend_dir(back: DomId, front: DomId) -> String {
    format!("/local/domain/{back}/backend/echo/{front}/0")
}

fn frontend(d: SimDomain, back: DomId, n: u64, xen: &xen::sim::SimXen) -> Side {
    let ev = EventChannels::new(d.clone()).map_err(ctx("event channels"))?;
    let console = Console::from_params(ev.clone()).map_err(ctx("console"))?;
    let mut store = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
    let mut gt = GrantTable::new(d.clone(), 1).map_err(ctx("grant table"))?;
    let me = store.domid().map_err(ctx("domid"))?;
    let page = d.alloc_pages(1).ok_or("out of memory")?;
    let mut ring = FrontRing::<Echo>::init(d.page(page).ok_or("ring page")?);
    let gref = gt.grant(back, page, false).map_err(ctx("grant"))?;
    let port = ev.alloc_unbound(back).map_err(ctx("alloc_unbound"))?;
    let path = dir(me);
    store
        .transaction(|tx| {
            tx.write(&format!("{path}/ring-ref"), gref.to_string())?;
            tx.write(&format!("{path}/event-channel"), port.to_string())?;
            tx.write(
                &xenbus::state_path(&path),
                XenbusState::Connected.as_value(),
            )
        })
        .map_err(ctx("publish"))?;
    console.write(
        format!(
            "echo frontend d{me}: ring-ref {gref}, event-channel {port}, sending {n} requests\n"
        )
        .as_bytes(),
    );

    let before = xen.counters(me).unwrap_or_default();
    let start = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    while received < n {
        ev.clear_pending(port);
        let mut progress = false;
        while sent < n && !ring.is_full() {
            let req = EchoReq {
                seq: sent,
                value: value_for(sent),
            };
            ring.push_request(&req).map_err(ctx("push"))?;
            sent += 1;
            progress = true;
        }
        if progress && ring.push_requests_and_check_notify() {
            ev.send(port).map_err(ctx("send"))?;
        }
        loop {
            for rsp in ring.responses().map_err(ctx("responses"))? {
                if rsp.seq != received || rsp.value != transform(rsp.seq, value_for(rsp.seq)) {
                    return Err(format!("response {received} wrong: {rsp:?}"));
                }
                received += 1;
                progress = true;
            }
            if !ring
                .final_check_for_responses()
                .map_err(ctx("final check"))?
            {
                break;
            }
        }
        if !progress {
            let deadline = d.now_ns_checked() + PEER_TIMEOUT_NS;
            if ev.wait(&[port], Some(deadline)).map_err(ctx("wait"))? == xen::evtchn::Wake::Timeout
            {
                return Err(format!("backend silent after {received} responses"));
            }
        }
    }
    let elapsed = start.elapsed();
    let counters = xen.counters(me).unwrap_or_default().since(&before);

    // Wait for the backend to let go of the page (state Closed), then
    // take it back.
    let bpath = backend_dir(back, me);
    store
        .watch(&xenbus::state_path(&bpath), "back")
        .map_err(ctx("watch"))?;
    let deadline = d.now_ns_checked() + PEER_TIMEOUT_NS;
    while xenbus::read_state(&mut store, &bpath).map_err(ctx("backend state"))?
        != XenbusState::Closed
    {
        store
            .next_event_for("back", Some(deadline))
            .map_err(ctx("backend close"))?;
    }
    gt.end_access(gref).map_err(ctx("end access"))?;
    ev.close(port).map_err(ctx("close"))?;
    d.free_pages(page, 1);
    xenbus::write_state(&mut store, &path, XenbusState::Closed).map_err(ctx("state"))?;
    console
        .write(format!("echo frontend: {received} responses verified in {elapsed:?}\n").as_bytes());
    Ok((elapsed, counters))
}

fn backend(d: SimDomain, front: DomId, n: u64, xen: &xen::sim::SimXen) -> Side {
    let ev = EventChannels::new(d.clone()).map_err(ctx("event channels"))?;
    let console = Console::from_params(ev.clone()).map_err(ctx("console"))?;
    let mut store = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
    let me = store.domid().map_err(ctx("domid"))?;
    let path = dir(front);
    let state = xenbus::state_path(&path);
    store.watch(&state, "fe").map_err(ctx("watch"))?;
    let deadline = d.now_ns_checked() + PEER_TIMEOUT_NS;
    while xenbus::read_state(&mut store, &path).map_err(ctx("state"))? != XenbusState::Connected {
        store
            .next_event_for("fe", Some(deadline))
            .map_err(ctx("frontend connect"))?;
    }
    let gref: u32 = parse(
        &store
            .read_string(&format!("{path}/ring-ref"))
            .map_err(ctx("ring-ref"))?,
    )?;
    let remote_port: u32 = parse(
        &store
            .read_string(&format!("{path}/event-channel"))
            .map_err(ctx("event-channel"))?,
    )?;
    let map = map_grant_refs(&d, front, &[gref], false).map_err(ctx("map"))?;
    let mut ring = BackRing::<Echo>::attach(map.mem());
    let port = ev
        .bind_interdomain(front, remote_port)
        .map_err(ctx("bind"))?;
    console.write(
        format!("echo backend d{me}: mapped ring-ref {gref} of d{front}, bound port {port}\n")
            .as_bytes(),
    );

    let before = xen.counters(me).unwrap_or_default();
    let start = Instant::now();
    let mut answered = 0u64;
    while answered < n {
        ev.clear_pending(port);
        let mut progress = false;
        loop {
            ring.poll_requests().map_err(ctx("requests"))?;
            while let Some(req) = ring.next_request() {
                let rsp = EchoRsp {
                    seq: req.seq,
                    value: transform(req.seq, req.value),
                };
                // Each consumed request owns a response slot: this cannot fail.
                ring.push_response(&rsp).map_err(ctx("respond"))?;
                answered += 1;
                progress = true;
            }
            if ring.push_responses_and_check_notify() {
                ev.send(port).map_err(ctx("send"))?;
            }
            if !ring
                .final_check_for_requests()
                .map_err(ctx("final check"))?
            {
                break;
            }
        }
        if !progress && answered < n {
            let deadline = d.now_ns_checked() + PEER_TIMEOUT_NS;
            if ev.wait(&[port], Some(deadline)).map_err(ctx("wait"))? == xen::evtchn::Wake::Timeout
            {
                return Err(format!("frontend silent after {answered} requests"));
            }
        }
    }
    let elapsed = start.elapsed();
    let counters = xen.counters(me).unwrap_or_default().since(&before);
    map.unmap(&d).map_err(ctx("unmap"))?;
    ev.close(port).map_err(ctx("close"))?;
    xenbus::write_state(&mut store, &backend_dir(me, front), XenbusState::Closed)
        .map_err(ctx("state"))?;
    console
        .write(format!("echo backend: answered {answered} requests, ring unmapped\n").as_bytes());
    Ok((elapsed, counters))
}

/// Map an error to a message naming the step that failed.
fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("bad number in xenstore: {s:?}"))
}

/// `now_ns` through the `Hypervisor` trait (named to avoid ambiguity with
/// `SimXen::now_ns`).
trait NowNs {
    fn now_ns_checked(&self) -> u64;
}

impl NowNs for SimDomain {
    fn now_ns_checked(&self) -> u64 {
        xen::Hypervisor::now_ns(self)
    }
}
