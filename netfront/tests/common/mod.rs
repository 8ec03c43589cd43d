//! Shared sim-test machinery: a log capture, our netfront running in a
//! firewall domain (driven by a loop like the engine's), and a scripted
//! backend — the test thread itself acting as sys-net's Linux netback,
//! step by step, able to misbehave.
#![allow(dead_code)]

pub mod packets;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netfront::{Features, LinkState, Netfront, NetfrontConfig, Stats};
use xen::abi::netif::*;
use xen::abi::{DomId, EvtchnPort, GrantRef, PAGE_SIZE};
use xen::evtchn::EventChannels;
use xen::frame::{Checksum, Frame, FrameQueue, Gso};
use xen::gnttab::{
    copy_from_grant, copy_to_grant, grant_copy, map_grant_refs, ForeignMapping, GrantTable,
};
use xen::memory::pool::PagePool;
use xen::memory::{Gfn, SharedMem};
use xen::ring::{BackRing, NetifRx, NetifTx};
use xen::sim::vif::{self, VifSpec};
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::xenbus::{self, XenbusState};
use xen::{GuestMemory, Hypervisor};

thread_local! {
    /// Set while the firewall thread is inside `poll`, `send` or `flush`
    /// (a counting allocator in a test binary looks at it).
    pub static IN_HOT_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` marked as hot path.
fn hot<R>(f: impl FnOnce() -> R) -> R {
    IN_HOT_PATH.with(|c| c.set(true));
    let r = f();
    IN_HOT_PATH.with(|c| c.set(false));
    r
}

/// How long a test waits for anything. Generous: a wait returns as soon
/// as its condition holds, and a loaded CI machine can stall a thread for
/// seconds.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Pages in the firewall's packet pool.
pub const POOL_PAGES: usize = 700;

// ---- log capture -------------------------------------------------------

struct Capture {
    /// Thread name, level, when it was logged, line.
    records: Mutex<Vec<(String, log::Level, Instant, String)>>,
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let at = Instant::now();
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        let line = format!("{}", r.args());
        if std::env::var_os("NETFRONT_TEST_LOG").is_some() {
            eprintln!("[{thread}] {} {line}", r.level());
        }
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((thread, r.level(), at, line));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture {
    records: Mutex::new(Vec::new()),
};
static INIT: Once = Once::new();

/// Install the capturing logger (once per test binary).
pub fn init_log() {
    INIT.call_once(|| {
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Warn lines logged by thread `thread`.
pub fn warnings(thread: &str) -> Vec<String> {
    warnings_timed(thread).into_iter().map(|(_, m)| m).collect()
}

/// Warn lines logged by thread `thread`, with when each was logged (for
/// timing checks that must not depend on when the test thread looked).
pub fn warnings_timed(thread: &str) -> Vec<(Instant, String)> {
    CAPTURE
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(t, l, _, _)| t == thread && *l == log::Level::Warn)
        .map(|(_, _, at, m)| (*at, m.clone()))
        .collect()
}

/// Wait until `f` holds, or panic after [`TIMEOUT`] naming `what`.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

// ---- the firewall domain running netfront ------------------------------

/// A frame to send, as segments of a frame.
#[derive(Clone, Debug)]
pub struct TxSpec {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// `(page offset, length)` of each segment; empty: packed into pages
    /// from offset 0.
    pub layout: Vec<(usize, usize)>,
    /// Checksum state.
    pub csum: Checksum,
    /// GSO metadata.
    pub gso: Option<Gso>,
}

impl TxSpec {
    /// `bytes` packed into pages, unverified checksum, no GSO.
    pub fn plain(bytes: Vec<u8>) -> TxSpec {
        TxSpec {
            bytes,
            layout: Vec::new(),
            csum: Checksum::Unverified,
            gso: None,
        }
    }
}

/// A frame netfront delivered.
#[derive(Clone, Debug)]
pub struct RxRecord {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its checksum state.
    pub csum: Checksum,
    /// Its GSO metadata.
    pub gso: Option<Gso>,
    /// Segments.
    pub segments: usize,
}

/// What the firewall loop publishes after every iteration.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Link state.
    pub link: Option<LinkState>,
    /// Transitions to Up seen.
    pub ups: u32,
    /// Counters.
    pub stats: Stats,
    /// Pool pages free.
    pub pool_available: usize,
    /// Pool pages held in quarantine.
    pub quarantined: usize,
    /// MAC.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: Option<u16>,
    /// Negotiated features.
    pub negotiated: Option<Features>,
    /// Device in use.
    pub devid: Option<u32>,
    /// Its backend.
    pub backend_id: Option<DomId>,
    /// Our port while up.
    pub port: Option<EvtchnPort>,
}

/// Shared between the test and the firewall loop.
#[derive(Default)]
pub struct Ctl {
    stop: AtomicBool,
    inner: Mutex<CtlInner>,
}

#[derive(Default)]
struct CtlInner {
    to_send: VecDeque<TxSpec>,
    received: Vec<RxRecord>,
    status: Status,
    poll_errors: Vec<String>,
}

/// What the firewall loop reports when it stops.
#[derive(Debug)]
pub struct FrontReport {
    /// Pool pages free after `stop`.
    pub pool_available: usize,
    /// Pool pages held in quarantine after `stop`.
    pub quarantined: usize,
    /// Grant references free after `stop`, and in all.
    pub grants_free: usize,
    /// Grant references free right after the grant table was made.
    pub grants_free_initially: usize,
}

/// A simulated host with a firewall domain running netfront.
pub struct Harness {
    /// The host.
    pub host: SimHost,
    /// The firewall domain.
    pub fw: SimDomain,
    /// Its domid.
    pub fid: DomId,
    /// Its thread's name (for log lines).
    pub thread: String,
    ctl: Arc<Ctl>,
    join: Option<JoinHandle<FrontReport>>,
}

impl Harness {
    /// Boot a host and a firewall domain called `name` running netfront
    /// with `features`, preferring device `devid`.
    pub fn new(name: &str, devid: u32, features: Features) -> Harness {
        init_log();
        let host = SimHost::new().expect("sim host");
        let fw = host
            .create_domain(&DomainConfig::new(name))
            .expect("firewall domain");
        let fid = fw.domid();
        let ctl = Arc::new(Ctl::default());
        let c2 = ctl.clone();
        let cfg = NetfrontConfig { devid, features };
        let join = host.spawn(&fw, move |d| firewall(d, cfg, &c2));
        Harness {
            host,
            fw,
            fid,
            thread: format!("d{fid}-{name}"),
            ctl,
            join: Some(join),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CtlInner> {
        self.ctl.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// Wait until the status satisfies `f`.
    pub fn wait(&self, what: &str, f: impl Fn(&Status) -> bool) -> Status {
        let mut last = Status::default();
        wait_until(what, || {
            last = self.status();
            f(&last)
        });
        last
    }

    /// Wait for the link to be up (for the `n`th time).
    pub fn wait_up(&self, n: u32) -> Status {
        self.wait("link up", |s| s.link == Some(LinkState::Up) && s.ups >= n)
    }

    /// Wait for the link to be down.
    pub fn wait_down(&self) -> Status {
        self.wait("link down", |s| s.link == Some(LinkState::Down))
    }

    /// Queue a frame for netfront to send.
    pub fn send(&self, spec: TxSpec) {
        self.lock().to_send.push_back(spec);
    }

    /// Frames received so far (taken).
    pub fn take_received(&self) -> Vec<RxRecord> {
        std::mem::take(&mut self.lock().received)
    }

    /// Wait for `n` received frames and take them.
    pub fn wait_received(&self, n: usize) -> Vec<RxRecord> {
        wait_until("received frames", || self.lock().received.len() >= n);
        self.take_received()
    }

    /// Errors `poll` returned.
    pub fn poll_errors(&self) -> Vec<String> {
        self.lock().poll_errors.clone()
    }

    /// Warn lines of the firewall thread.
    pub fn warnings(&self) -> Vec<String> {
        warnings(&self.thread)
    }

    /// Warn lines of the firewall thread, with when each was logged.
    pub fn warnings_timed(&self) -> Vec<(Instant, String)> {
        warnings_timed(&self.thread)
    }

    /// Stop the firewall loop (netfront stops cleanly) and report. The
    /// host keeps running.
    pub fn stop(&mut self) -> FrontReport {
        self.ctl.stop.store(true, Ordering::SeqCst);
        let j = self.join.take().expect("running");
        j.join().expect("firewall thread panicked")
    }

    /// The backend lets go first (Closing, Closed); then netfront's link
    /// goes down, it stops, and every pool page and grant has come back.
    pub fn close_and_check_all_returned(&mut self, b: &mut Backend) -> FrontReport {
        b.close();
        self.wait_down();
        let r = self.stop();
        assert_eq!(r.pool_available, POOL_PAGES, "pool pages not returned");
        assert_eq!(
            r.grants_free, r.grants_free_initially,
            "grants not returned"
        );
        r
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn build_frame(pool: &mut PagePool, spec: &TxSpec) -> Frame {
    let mut f = if spec.layout.is_empty() {
        Frame::from_bytes(pool, &spec.bytes).expect("frame")
    } else {
        let mut f = Frame::new();
        let mut at = 0;
        for &(off, len) in &spec.layout {
            let mut page = pool.alloc().expect("pool page");
            // Garbage around the segment: netfront must clear it.
            pool.bytes_mut(&mut page).fill(0xEE);
            pool.bytes_mut(&mut page)[off..off + len].copy_from_slice(&spec.bytes[at..at + len]);
            f.push(page, off, len).expect("segment");
            at += len;
        }
        assert_eq!(at, spec.bytes.len(), "layout covers the bytes");
        f
    };
    f.csum = spec.csum;
    f.gso = spec.gso;
    f
}

/// The firewall's loop: like the engine's, single-threaded.
fn firewall(d: SimDomain, cfg: NetfrontConfig, ctl: &Ctl) -> FrontReport {
    let ev = EventChannels::new(d.clone()).expect("event channels");
    let mut xs = Xenstore::from_params(ev.clone()).expect("xenstore");
    let mut gt = GrantTable::new(d.clone(), 4).expect("grant table");
    let grants_free_initially = gt.free_count();
    let mut pool = PagePool::new(&d, POOL_PAGES).expect("pool");
    let mut nf = Netfront::new(ev.clone(), cfg);
    nf.start(&mut xs).expect("start");
    let mut rxq = FrameQueue::with_capacity(64);
    let mut pending: Option<Frame> = None;
    let mut ups = 0;
    let mut was_up = false;
    while !ctl.stop.load(Ordering::SeqCst) {
        if let Err(e) = xs.handle_notification() {
            panic!("xenstore: {e}");
        }
        while let Some(e) = xs.poll_event() {
            nf.handle_watch(&mut xs, &mut gt, &mut pool, &e);
        }
        nf.tick(&mut xs, &mut gt, &mut pool);
        let up = nf.link() == LinkState::Up;
        if up && !was_up {
            ups += 1;
        }
        was_up = up;
        if up {
            if let Err(e) = hot(|| nf.poll(&mut gt, &mut pool, &mut rxq)) {
                ctl.inner.lock().unwrap().poll_errors.push(e.to_string());
            }
        }
        let mut got = Vec::new();
        while let Some(f) = rxq.pop() {
            got.push(RxRecord {
                bytes: f.to_vec(&pool),
                csum: f.csum,
                gso: f.gso,
                segments: f.num_segments(),
            });
            f.free(&mut pool);
        }
        {
            let mut g = ctl.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.received.extend(got);
            if nf.link() == LinkState::Up {
                loop {
                    let f = match pending.take() {
                        Some(f) => f,
                        None => match g.to_send.pop_front() {
                            Some(spec) => build_frame(&mut pool, &spec),
                            None => break,
                        },
                    };
                    if let Err(f) = hot(|| nf.send(&mut gt, &mut pool, f)) {
                        pending = Some(f);
                        break;
                    }
                }
                hot(|| nf.flush());
            }
            g.status = Status {
                link: Some(nf.link()),
                ups,
                stats: *nf.stats(),
                pool_available: pool.available() + pending.as_ref().map_or(0, |f| f.num_segments()),
                quarantined: nf.quarantined_pool_pages(),
                mac: nf.mac(),
                mtu: nf.mtu(),
                negotiated: nf.negotiated(),
                devid: nf.devid(),
                backend_id: nf.backend_id(),
                port: nf.port(),
            };
        }
        if !nf.needs_poll() {
            let mut ports = vec![xs.port()];
            ports.extend(nf.port());
            let _ = ev.wait(&ports, Some(d.now_ns() + 2_000_000));
        }
    }
    if let Some(f) = pending.take() {
        f.free(&mut pool);
    }
    nf.stop(&mut xs, &mut gt, &mut pool);
    FrontReport {
        pool_available: pool.available(),
        quarantined: nf.quarantined_pool_pages(),
        grants_free: gt.free_count(),
        grants_free_initially,
    }
}

// ---- the scripted backend ----------------------------------------------

/// What Linux netback offers.
pub const LINUX_FEATURES: &[(&str, &str)] = &[
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-gso-tcpv6", "1"),
    ("feature-ipv6-csum-offload", "1"),
    ("feature-rx-copy", "1"),
    ("feature-rx-flip", "0"),
    ("feature-multicast-control", "1"),
    ("feature-dynamic-multicast-control", "1"),
    ("feature-split-event-channels", "1"),
    ("multi-queue-max-queues", "4"),
    ("feature-ctrl-ring", "1"),
];

/// A minimal backend: only rx-copy.
pub const MINIMAL_FEATURES: &[(&str, &str)] = &[("feature-rx-copy", "1")];

/// One transmitted packet as the backend parsed it.
#[derive(Clone, Debug)]
pub struct TxPacket {
    /// The bytes (grant-copied out).
    pub bytes: Vec<u8>,
    /// Slot 0's flags.
    pub flags: u16,
    /// GSO extra: (type, mss).
    pub gso: Option<(u8, u16)>,
    /// Data slots.
    pub slots: usize,
    /// Data slots' ids.
    pub ids: Vec<u16>,
    /// Data slots' grant references.
    pub grefs: Vec<GrantRef>,
}

/// A packet for the backend to deliver.
#[derive(Clone, Debug)]
pub struct RxPacket {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Largest slot.
    pub chunk: usize,
    /// Offset of the first slot's data.
    pub offset: u16,
    /// Checksum flags of the first slot (`NETRXF_*`).
    pub flags: u16,
    /// GSO extra: (type, mss).
    pub gso: Option<(u8, u16)>,
}

impl RxPacket {
    /// `bytes` in full pages, no flags.
    pub fn plain(bytes: Vec<u8>) -> RxPacket {
        RxPacket {
            bytes,
            chunk: PAGE_SIZE,
            offset: 0,
            flags: 0,
            gso: None,
        }
    }
}

/// One raw rx response slot for hostile tests: each consumes one request.
#[derive(Clone, Copy, Debug)]
pub enum RawRx {
    /// A response; `id: None` echoes the request's id.
    Rsp {
        /// Id override.
        id: Option<u16>,
        /// Offset.
        offset: u16,
        /// Flags.
        flags: u16,
        /// Status.
        status: i16,
    },
    /// An extra-info slot.
    Extra(NetifExtraInfo),
}

/// The mapped rings of a connection.
pub struct BackConn {
    map: ForeignMapping,
    /// Transmit ring (backend side).
    pub tx: BackRing<NetifTx>,
    /// Receive ring (backend side).
    pub rx: BackRing<NetifRx>,
    /// Our port.
    pub port: EvtchnPort,
    /// Ring refs read from the frontend.
    pub refs: (GrantRef, GrantRef),
    /// tx ring page.
    pub tx_mem: SharedMem,
    /// rx ring page.
    pub rx_mem: SharedMem,
}

/// The test thread acting as sys-net's netback.
pub struct Backend {
    /// The backend domain.
    pub dom: SimDomain,
    /// Its domid.
    pub id: DomId,
    /// Its event channels.
    pub ev: EventChannels<SimDomain>,
    /// Its xenstore connection.
    pub xs: Xenstore<SimDomain>,
    /// The vif.
    pub spec: VifSpec,
    /// The connection, once made.
    pub conn: Option<BackConn>,
    scratch: Gfn,
    scratch_mem: SharedMem,
}

const SCRATCH_PAGES: usize = 20;

impl Backend {
    /// A backend domain `name` for vif `devid` of `h`'s firewall; the
    /// toolstack creates the vif (both directories, state 1).
    pub fn new(h: &Harness, name: &str, devid: u32) -> Backend {
        let dom = h
            .host
            .create_domain(&DomainConfig::new(name))
            .expect("backend domain");
        let id = dom.domid();
        let ev = EventChannels::new(dom.clone()).expect("event channels");
        let xs = Xenstore::from_params(ev.clone()).expect("xenstore");
        let scratch = dom.alloc_pages(SCRATCH_PAGES).expect("scratch");
        let scratch_mem = dom.pages(scratch, SCRATCH_PAGES).expect("scratch view");
        let spec = VifSpec::new(h.fid, id, devid);
        vif::create_vif(&h.host, &spec).expect("create vif");
        Backend {
            dom,
            id,
            ev,
            xs,
            spec,
            conn: None,
            scratch,
            scratch_mem,
        }
    }

    /// Backend directory (absolute).
    pub fn bdir(&self) -> String {
        self.spec.backend_dir()
    }

    /// Frontend directory (absolute).
    pub fn fdir(&self) -> String {
        self.spec.frontend_dir()
    }

    /// Write keys into our directory.
    pub fn write_keys(&mut self, keys: &[(&str, &str)]) {
        let b = self.bdir();
        for (k, v) in keys {
            self.xs.write(&format!("{b}/{k}"), v).expect("write key");
        }
    }

    /// Our state.
    pub fn set_state(&mut self, s: XenbusState) {
        let b = self.bdir();
        xenbus::write_state(&mut self.xs, &b, s).expect("write state");
    }

    /// Publish features and go to InitWait, as Linux netback's probe does.
    pub fn publish(&mut self, features: &[(&str, &str)]) {
        self.write_keys(features);
        self.set_state(XenbusState::InitWait);
    }

    /// The frontend's state.
    pub fn front_state(&mut self) -> XenbusState {
        let f = self.fdir();
        xenbus::read_state(&mut self.xs, &f).unwrap_or(XenbusState::Unknown)
    }

    /// A frontend key.
    pub fn front_key(&mut self, key: &str) -> Option<String> {
        let f = self.fdir();
        self.xs
            .read_opt(&format!("{f}/{key}"))
            .expect("read")
            .map(|v| String::from_utf8(v).expect("utf8"))
    }

    /// Wait for the frontend's state.
    pub fn wait_front(&mut self, s: XenbusState) {
        let end = Instant::now() + TIMEOUT;
        loop {
            let now = self.front_state();
            if now == s {
                return;
            }
            assert!(Instant::now() < end, "frontend state {now:?}, want {s:?}");
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    /// Map the rings, bind the channel, go Connected (Linux netback's
    /// `connect`), after the frontend reached Connected.
    pub fn connect(&mut self) {
        self.wait_front(XenbusState::Connected);
        let num = |s: Option<String>, what: &str| -> u32 {
            s.unwrap_or_else(|| panic!("no {what}"))
                .parse()
                .expect(what)
        };
        let tx_ref = num(self.front_key("tx-ring-ref"), "tx-ring-ref");
        let rx_ref = num(self.front_key("rx-ring-ref"), "rx-ring-ref");
        let port = num(self.front_key("event-channel"), "event-channel");
        let fid = self.spec.frontend;
        let map = map_grant_refs(&self.dom, fid, &[tx_ref, rx_ref], false).expect("map rings");
        let (tx_mem, rx_mem) = (map.mem().page(0), map.mem().page(1));
        let local = self.ev.bind_interdomain(fid, port).expect("bind");
        self.conn = Some(BackConn {
            tx: BackRing::attach(tx_mem),
            rx: BackRing::attach(rx_mem),
            map,
            port: local,
            refs: (tx_ref, rx_ref),
            tx_mem,
            rx_mem,
        });
        self.set_state(XenbusState::Connected);
    }

    /// Publish, wait for the frontend, connect.
    pub fn bring_up(&mut self, features: &[(&str, &str)]) {
        self.publish(features);
        self.connect();
    }

    /// Unmap and unbind (Linux netback's `backend_disconnect`).
    pub fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            c.map.unmap(&self.dom).expect("unmap");
            let _ = self.ev.close(c.port);
        }
    }

    /// Disconnect, Closing, then Closed.
    pub fn close(&mut self) {
        self.disconnect();
        self.set_state(XenbusState::Closing);
        self.set_state(XenbusState::Closed);
    }

    fn conn(&mut self) -> &mut BackConn {
        self.conn.as_mut().expect("connected")
    }

    /// Notify the frontend.
    pub fn notify(&mut self) {
        let p = self.conn().port;
        self.ev.send(p).expect("notify");
    }

    /// Wait until at least `n` requests are unconsumed on the rx ring.
    pub fn wait_rx_requests(&mut self, n: u32) {
        let end = Instant::now() + TIMEOUT;
        loop {
            let c = self.conn();
            let have = c.rx.poll_requests().expect("rx requests");
            if have >= n {
                return;
            }
            assert!(Instant::now() < end, "only {have} rx requests posted");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Deliver a packet as Linux netback does (grant copies into the posted
    /// buffers, responses at the requests' positions).
    pub fn send_rx(&mut self, p: &RxPacket) {
        let mut chunks = Vec::new();
        let mut at = 0;
        let mut room = PAGE_SIZE - usize::from(p.offset);
        while at < p.bytes.len() || chunks.is_empty() {
            let n = (p.bytes.len() - at).min(p.chunk).min(room);
            chunks.push((at, n));
            at += n;
            room = PAGE_SIZE;
        }
        let need = chunks.len() + usize::from(p.gso.is_some());
        self.wait_rx_requests(need as u32);
        let fid = self.spec.frontend;
        let scratch = self.scratch;
        let sm = self.scratch_mem;
        let c = self.conn.as_mut().expect("connected");
        let mut ops = Vec::new();
        let mut rsps: Vec<RawRx> = Vec::new();
        for (i, &(start, n)) in chunks.iter().enumerate() {
            let req = c.rx.next_request().expect("request");
            let off = if i == 0 { p.offset } else { 0 };
            sm.write_bytes(i * PAGE_SIZE + usize::from(off), &p.bytes[start..start + n]);
            if n > 0 {
                ops.push(copy_to_grant(
                    scratch.add(i as u64),
                    off,
                    fid,
                    req.gref,
                    off,
                    n as u16,
                ));
            }
            let mut flags = if i == 0 { p.flags } else { 0 };
            if i + 1 < chunks.len() {
                flags |= NETRXF_MORE_DATA;
            }
            if i == 0 && p.gso.is_some() {
                flags |= NETRXF_EXTRA_INFO;
            }
            rsps.push(RawRx::Rsp {
                id: Some(req.id),
                offset: off,
                flags,
                status: n as i16,
            });
            if i == 0 {
                if let Some((ty, mss)) = p.gso {
                    let _ = c.rx.next_request().expect("request for the extra");
                    rsps.push(RawRx::Extra(NetifExtraInfo {
                        r#type: XEN_NETIF_EXTRA_TYPE_GSO,
                        flags: 0,
                        gso: NetifExtraInfoGso {
                            size: mss,
                            r#type: ty,
                            pad: 0,
                            features: 0,
                        },
                    }));
                }
            }
        }
        grant_copy(&self.dom, &mut ops).expect("grant copy into rx buffers");
        let c = self.conn.as_mut().expect("connected");
        for r in rsps {
            match r {
                RawRx::Rsp {
                    id,
                    offset,
                    flags,
                    status,
                } => {
                    c.rx.push_response(&NetifRxResponse {
                        id: id.unwrap_or(0),
                        offset,
                        flags,
                        status,
                    })
                    .expect("response")
                }
                RawRx::Extra(e) => c.rx.push_response_as(&e).expect("extra"),
            }
        }
        if c.rx.push_responses_and_check_notify() {
            self.notify();
        }
    }

    /// Hostile: consume one request per entry and write the given raw
    /// responses (no data copied), publish and notify.
    pub fn send_rx_raw(&mut self, raw: &[RawRx]) {
        self.wait_rx_requests(raw.len() as u32);
        let c = self.conn.as_mut().expect("connected");
        for r in raw {
            let req = c.rx.next_request().expect("request");
            match *r {
                RawRx::Rsp {
                    id,
                    offset,
                    flags,
                    status,
                } => {
                    c.rx.push_response(&NetifRxResponse {
                        id: id.unwrap_or(req.id),
                        offset,
                        flags,
                        status,
                    })
                    .expect("response")
                }
                RawRx::Extra(e) => c.rx.push_response_as(&e).expect("extra"),
            }
        }
        c.rx.push_responses_and_check_notify();
        self.notify();
    }

    /// Parse the next transmitted packet (waiting for it), copy its data
    /// out with one batched grant copy; answer it with `status` unless
    /// `answer` is false (then [`Backend::answer_tx`] later).
    pub fn recv_tx_with(&mut self, status: i16, answer: bool) -> (TxPacket, Vec<NetifTxResponse>) {
        let end = Instant::now() + TIMEOUT;
        loop {
            let have = self.conn().tx.poll_requests().expect("tx requests");
            if have > 0 {
                break;
            }
            assert!(Instant::now() < end, "no tx request");
            std::thread::sleep(Duration::from_micros(200));
        }
        let fid = self.spec.frontend;
        let scratch = self.scratch;
        let sm = self.scratch_mem;
        let c = self.conn.as_mut().expect("connected");
        let first = c.tx.next_request().expect("slot 0");
        let mut rsps = vec![NetifTxResponse {
            id: first.id,
            status,
        }];
        let mut gso = None;
        if first.flags & NETTXF_EXTRA_INFO != 0 {
            loop {
                let e: NetifExtraInfo = c.tx.next_request_as().expect("extra");
                rsps.push(NetifTxResponse {
                    id: 0,
                    status: NETIF_RSP_NULL,
                });
                if e.r#type == XEN_NETIF_EXTRA_TYPE_GSO {
                    gso = Some((e.gso.r#type, e.gso.size));
                }
                if e.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                    break;
                }
            }
        }
        let mut slots = vec![first];
        let mut more = first.flags & NETTXF_MORE_DATA != 0;
        while more {
            let r = c.tx.next_request().expect("more data");
            rsps.push(NetifTxResponse { id: r.id, status });
            more = r.flags & NETTXF_MORE_DATA != 0;
            slots.push(r);
        }
        let rest: usize = slots[1..].iter().map(|s| usize::from(s.size)).sum();
        let first_len = usize::from(first.size) - rest;
        let mut ops = Vec::new();
        let mut lens = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            let len = if i == 0 {
                first_len
            } else {
                usize::from(s.size)
            };
            assert!(
                usize::from(s.offset) + len <= PAGE_SIZE,
                "slot past the page"
            );
            lens.push(len);
            if len > 0 {
                ops.push(copy_from_grant(
                    fid,
                    s.gref,
                    s.offset,
                    scratch.add(i as u64),
                    0,
                    len as u16,
                ));
            }
        }
        grant_copy(&self.dom, &mut ops).expect("grant copy from tx slots");
        let mut bytes = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let mut b = vec![0u8; len];
            sm.read_bytes(i * PAGE_SIZE, &mut b);
            bytes.extend_from_slice(&b);
        }
        let pkt = TxPacket {
            bytes,
            flags: first.flags,
            gso,
            slots: slots.len(),
            ids: slots.iter().map(|s| s.id).collect(),
            grefs: slots.iter().map(|s| s.gref).collect(),
        };
        if answer {
            self.answer_tx(&rsps);
        }
        (pkt, rsps)
    }

    /// Receive one packet and answer OKAY.
    pub fn recv_tx(&mut self) -> TxPacket {
        self.recv_tx_with(NETIF_RSP_OKAY, true).0
    }

    /// Write tx responses, publish, notify.
    pub fn answer_tx(&mut self, rsps: &[NetifTxResponse]) {
        let c = self.conn.as_mut().expect("connected");
        for r in rsps {
            c.tx.push_response(r).expect("tx response");
        }
        c.tx.push_responses_and_check_notify();
        self.notify();
    }

    /// Whether the frontend's grant `gref` can be copied from (still
    /// granted to us).
    pub fn grant_valid(&mut self, gref: GrantRef) -> bool {
        let fid = self.spec.frontend;
        let mut ops = [copy_from_grant(fid, gref, 0, self.scratch.add(19), 0, 1)];
        grant_copy(&self.dom, &mut ops).is_ok()
    }

    /// Read a whole page of the frontend's tx grant `gref` (to check what
    /// a read-only grant exposes).
    pub fn peek_grant(&mut self, gref: GrantRef) -> Vec<u8> {
        let fid = self.spec.frontend;
        let mut ops = [copy_from_grant(
            fid,
            gref,
            0,
            self.scratch.add(19),
            0,
            PAGE_SIZE as u16,
        )];
        grant_copy(&self.dom, &mut ops).expect("peek");
        let mut b = vec![0u8; PAGE_SIZE];
        self.scratch_mem.read_bytes(19 * PAGE_SIZE, &mut b);
        b
    }
}
