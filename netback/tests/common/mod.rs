//! Test bed for netback on the simulated Xen: a backend domain running
//! [`Netback`] in the loop a unikernel runs (pumped from the test thread),
//! and scripted raw frontends that do the Linux netfront side of the
//! handshake and the rings by hand with xen primitives, so that they can
//! also do everything a hostile client might.
#![allow(dead_code)]

use std::sync::{Mutex, Once};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use netback::{Netback, NetbackConfig, NetbackEvent, VifId};
use xen::abi::netif::*;
use xen::abi::{DomId, EvtchnPort, GrantRef};
use xen::evtchn::EventChannels;
use xen::frame::offload::{
    checksum_add, fold, ipv4_header_checksum, parse_bytes, pseudo_header_sum,
};
use xen::frame::{Checksum, Frame, FrameQueue, Gso};
use xen::gnttab::GrantTable;
use xen::memory::pool::PagePool;
use xen::memory::{Gfn, SharedMem};
use xen::ring::{FrontRing, NetifRx, NetifTx};
use xen::sim::vif::{self, VifSpec};
use xen::sim::{Counters, DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::xenbus::{self, XenbusState};
use xen::{GuestMemory, Hypervisor};

/// How long a test waits for anything. Generous: a wait returns as soon
/// as its condition holds, and a loaded CI machine can stall the
/// simulator's threads for seconds.
pub const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Log capture: warnings per test thread.

struct Capture;
static LINES: Mutex<Vec<(ThreadId, log::Level, String)>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let line = format!("{}", r.args());
        if std::env::var_os("NETBACK_TEST_LOG").is_some() {
            eprintln!("[{}] {line}", r.level());
        }
        LINES
            .lock()
            .unwrap()
            .push((std::thread::current().id(), r.level(), line));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Install the capturing logger (once per test binary).
pub fn init_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Warnings logged by this thread that start with `prefix`.
pub fn warns(prefix: &str) -> Vec<String> {
    let me = std::thread::current().id();
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, l, s)| *t == me && *l == log::Level::Warn && s.starts_with(prefix))
        .map(|(_, _, s)| s.clone())
        .collect()
}

/// Every warning of this thread.
pub fn all_warns() -> Vec<String> {
    warns("")
}

// ---------------------------------------------------------------------------
// The backend.

/// A frame the backend received from a client.
#[derive(Clone, Debug)]
pub struct Got {
    pub id: VifId,
    pub bytes: Vec<u8>,
    pub csum: Checksum,
    pub gso: Option<Gso>,
    /// (offset in page, length) of each segment.
    pub segs: Vec<(u16, u16)>,
}

pub struct Backend {
    pub dom: SimDomain,
    pub ev: EventChannels<SimDomain>,
    pub xs: Xenstore<SimDomain>,
    pub pool: PagePool,
    pub nb: Netback<SimDomain>,
    pub rxq: FrameQueue,
    pub got: Vec<Got>,
    pub events: Vec<NetbackEvent>,
    pub connected: Vec<VifId>,
    /// Poll connected vifs in `step` (off: the test polls by hand).
    pub auto_poll: bool,
    /// Drain `rxq` into `got` in `step`.
    pub auto_drain: bool,
    pub pool_pages: usize,
}

impl Backend {
    pub fn new(host: &SimHost, cfg: NetbackConfig) -> Backend {
        Self::with_pool(host, cfg, 1024)
    }

    pub fn with_pool(host: &SimHost, cfg: NetbackConfig, pool_pages: usize) -> Backend {
        init_log();
        let dom = host
            .create_domain(&DomainConfig {
                ram_mib: 32,
                ..DomainConfig::new("firewall")
            })
            .unwrap();
        let ev = EventChannels::new(dom.clone()).unwrap();
        let mut xs = Xenstore::from_params(ev.clone()).unwrap();
        let pool = PagePool::new(&dom, pool_pages).unwrap();
        let mut nb = Netback::new(ev.clone(), cfg);
        nb.start(&mut xs).unwrap();
        Backend {
            dom,
            ev,
            xs,
            pool,
            nb,
            rxq: FrameQueue::with_capacity(256),
            got: Vec::new(),
            events: Vec::new(),
            connected: Vec::new(),
            auto_poll: true,
            auto_drain: true,
            pool_pages,
        }
    }

    pub fn domid(&self) -> DomId {
        self.dom.domid()
    }

    pub fn counters(&self) -> Counters {
        self.dom.xen().counters(self.domid()).unwrap()
    }

    /// Watch events and connection changes only.
    pub fn step_control(&mut self) {
        self.xs.handle_notification().unwrap();
        while let Some(e) = self.xs.poll_event() {
            assert!(
                self.nb.handle_watch(&mut self.xs, &mut self.pool, &e),
                "{e:?}"
            );
        }
        self.take_events();
        let now = self.dom.now_ns();
        self.nb.tick(&mut self.xs, &mut self.pool, now);
        self.take_events();
    }

    fn take_events(&mut self) {
        while let Some(e) = self.nb.next_event() {
            match e {
                NetbackEvent::Connected(id) => self.connected.push(id),
                NetbackEvent::Disconnected(id) => self.connected.retain(|&c| c != id),
            }
            self.events.push(e);
        }
    }

    /// One iteration of the event loop, without sleeping.
    pub fn step(&mut self) {
        self.step_control();
        if self.auto_poll {
            for id in self.connected.clone() {
                self.nb.poll(id, &mut self.pool, &mut self.rxq).unwrap();
                if self.auto_drain {
                    self.drain(id);
                }
            }
        }
        self.nb.flush(&mut self.pool);
        self.take_events();
    }

    /// Move frames from `rxq` to `got`, tagged `id`.
    pub fn drain(&mut self, id: VifId) {
        while let Some(f) = self.rxq.pop() {
            self.got.push(Got {
                id,
                bytes: f.to_vec(&self.pool),
                csum: f.csum,
                gso: f.gso,
                segs: f.segments().map(|s| (s.offset(), s.len())).collect(),
            });
            f.free(&mut self.pool);
        }
    }

    /// Step and sleep briefly on our ports until `cond` or `timeout`.
    pub fn pump_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&mut Backend) -> bool,
    ) {
        let end = Instant::now() + timeout;
        loop {
            self.step();
            if cond(self) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            let mut ports = vec![self.xs.port()];
            self.nb.ports(&mut ports);
            let _ = self.ev.wait(&ports, Some(self.dom.now_ns() + 1_000_000));
        }
    }

    /// Pump for a while (lets things settle).
    pub fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        self.pump_until("nothing", d + Duration::from_secs(1), |_| {
            Instant::now() >= end
        });
    }

    /// Frames received so far from `id`.
    pub fn got_from(&self, id: VifId) -> Vec<&Got> {
        self.got.iter().filter(|g| g.id == id).collect()
    }

    /// Queue `bytes` for `id`.
    pub fn send(&mut self, id: VifId, bytes: &[u8], csum: Checksum, gso: Option<Gso>) {
        let mut f = Frame::from_bytes(&mut self.pool, bytes).unwrap();
        f.csum = csum;
        f.gso = gso;
        if let Err(f) = self.nb.send(id, &mut self.pool, f) {
            f.free(&mut self.pool);
            panic!("send to {id} refused");
        }
    }

    /// Read a key in our own backend tree (relative).
    pub fn read(&mut self, path: &str) -> Option<String> {
        self.xs
            .read_opt(path)
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub fn is_connected(&self, id: VifId) -> bool {
        self.connected.contains(&id)
    }

    /// Pool pages in use besides frames held in `rxq`.
    pub fn pool_in_use(&self) -> usize {
        self.pool.in_use()
    }
}

/// `attach_vif` (as libxl: create the device, wait ≤ 10 s for InitWait)
/// while the backend runs; returns how long the backend took.
pub fn attach(host: &SimHost, bk: &mut Backend, spec: &VifSpec) -> Duration {
    std::thread::scope(|s| {
        let h = s.spawn(|| vif::attach_vif(host, spec));
        while !h.is_finished() {
            bk.step();
            std::thread::sleep(Duration::from_micros(200));
        }
        h.join().unwrap().unwrap()
    })
}

/// `detach_vif` (as `xl network-detach` against a driver domain) while the
/// backend (and `front`, if given, reacting to Closing) runs.
pub fn detach(
    host: &SimHost,
    bk: &mut Backend,
    mut front: Option<&mut Front>,
    spec: &VifSpec,
    force: bool,
) -> Result<(), vif::VifError> {
    std::thread::scope(|s| {
        let h = s.spawn(|| vif::detach_vif(host, spec, force));
        while !h.is_finished() {
            bk.step();
            if let Some(f) = front.as_deref_mut() {
                f.follow_backend_close();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        h.join().unwrap()
    })
}

// ---------------------------------------------------------------------------
// A scripted raw frontend.

/// What the frontend writes in its directory.
#[derive(Clone, Copy, Debug)]
pub struct FrontKeys {
    pub sg: bool,
    pub gso_tcpv4: bool,
    pub gso_tcpv6: bool,
    pub no_csum_offload: bool,
    pub ipv6_csum_offload: bool,
    pub rx_notify: bool,
    /// Key layout.
    pub layout: Layout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Linux: flat keys, no `multi-queue-num-queues`.
    Linux,
    /// Linux against a backend offering multi-queue: flat keys and
    /// `multi-queue-num-queues = 1`.
    LinuxMq,
    /// Windows PV drivers: `multi-queue-num-queues = n`, keys under
    /// `queue-<i>/`.
    Windows(u32),
}

impl FrontKeys {
    pub const LINUX: FrontKeys = FrontKeys {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        no_csum_offload: false,
        ipv6_csum_offload: true,
        rx_notify: true,
        layout: Layout::Linux,
    };
    pub const PLAIN: FrontKeys = FrontKeys {
        sg: false,
        gso_tcpv4: false,
        gso_tcpv6: false,
        no_csum_offload: true,
        ipv6_csum_offload: false,
        rx_notify: true,
        layout: Layout::Linux,
    };
}

/// A raw slot for hostile tx tests.
#[derive(Clone, Copy, Debug)]
pub enum Raw {
    Req(NetifTxRequest),
    Extra(NetifExtraInfo),
}

/// A packet the frontend received.
#[derive(Clone, Debug, Default)]
pub struct RxPacket {
    pub bytes: Vec<u8>,
    pub flags: u16,
    pub gso: Option<NetifExtraInfoGso>,
    pub slots: usize,
    pub error: bool,
}

/// A data page of the frontend, granted to the backend.
#[derive(Clone, Copy, Debug)]
struct Buf {
    gfn: Gfn,
    gref: GrantRef,
}

pub struct Front {
    pub dom: SimDomain,
    pub ev: EventChannels<SimDomain>,
    pub xs: Xenstore<SimDomain>,
    pub gt: GrantTable<SimDomain>,
    pub spec: VifSpec,
    pub id: VifId,
    pub keys: FrontKeys,
    pub tx: Option<FrontRing<NetifTx>>,
    pub rx: Option<FrontRing<NetifRx>>,
    pub port: Option<EvtchnPort>,
    pub ring_refs: (GrantRef, GrantRef),
    ring_gfns: Option<Gfn>,
    /// Tx pages by request id (ro grants), returned on response.
    tx_bufs: Vec<Option<Buf>>,
    tx_free: Vec<Buf>,
    /// Rx buffers by ring index & 255.
    rx_posted: Vec<Option<Buf>>,
    rx_free: Vec<Buf>,
    pub tx_responses: Vec<NetifTxResponse>,
    pub received: Vec<RxPacket>,
}

impl Front {
    /// A new client domain with vif `devid` to `bk`, attached the libxl
    /// way (returns the time the backend took to reach InitWait).
    pub fn create(
        host: &SimHost,
        bk: &mut Backend,
        devid: u32,
        keys: FrontKeys,
    ) -> (Front, Duration) {
        let dom = host.create_domain(&DomainConfig::new("client")).unwrap();
        let mut spec = VifSpec::new(dom.domid(), bk.domid(), devid);
        spec.ip = format!("10.137.0.{}", dom.domid());
        let took = attach(host, bk, &spec);
        (Front::on(dom, spec, keys), took)
    }

    /// A frontend for an existing domain and attached vif.
    pub fn on(dom: SimDomain, spec: VifSpec, keys: FrontKeys) -> Front {
        let ev = EventChannels::new(dom.clone()).unwrap();
        let xs = Xenstore::from_params(ev.clone()).unwrap();
        let gt = GrantTable::new(dom.clone(), 4).unwrap();
        Front {
            id: VifId {
                domid: spec.frontend,
                devid: spec.devid,
            },
            dom,
            ev,
            xs,
            gt,
            spec,
            keys,
            tx: None,
            rx: None,
            port: None,
            ring_refs: (0, 0),
            ring_gfns: None,
            tx_bufs: vec![None; 256],
            tx_free: Vec::new(),
            rx_posted: vec![None; 256],
            rx_free: Vec::new(),
            tx_responses: Vec::new(),
            received: Vec::new(),
        }
    }

    pub fn backend_state(&mut self) -> XenbusState {
        xenbus::read_state(&mut self.xs, &self.spec.backend_dir()).unwrap_or(XenbusState::Unknown)
    }

    pub fn set_state(&mut self, s: XenbusState) {
        xenbus::write_state(&mut self.xs, &self.spec.frontend_dir(), s).unwrap();
    }

    pub fn write(&mut self, key: &str, v: &str) {
        let p = format!("{}/{key}", self.spec.frontend_dir());
        self.xs.write(&p, v).unwrap();
    }

    /// Rings and channel, fresh.
    pub fn make_rings(&mut self) {
        let b = self.spec.backend;
        let gfn = self.dom.alloc_pages(2).unwrap();
        self.tx = Some(FrontRing::init(self.dom.page(gfn).unwrap()));
        self.rx = Some(FrontRing::init(self.dom.page(gfn.add(1)).unwrap()));
        let t = self.gt.grant(b, gfn, false).unwrap();
        let r = self.gt.grant(b, gfn.add(1), false).unwrap();
        self.ring_refs = (t, r);
        self.ring_gfns = Some(gfn);
        self.port = Some(self.ev.alloc_unbound(b).unwrap());
    }

    /// Write the connection keys (`over` replaces values by key) and go
    /// Connected, without waiting.
    pub fn publish(&mut self, over: &[(&str, &str)]) {
        let (t, r) = self.ring_refs;
        let port = self.port.unwrap();
        let k = self.keys;
        let b = |on: bool| if on { "1" } else { "0" }.to_string();
        let mut kv: Vec<(String, String)> = Vec::new();
        let q = match k.layout {
            Layout::Linux => "".to_string(),
            Layout::LinuxMq => {
                kv.push(("multi-queue-num-queues".into(), "1".into()));
                "".to_string()
            }
            Layout::Windows(n) => {
                kv.push(("multi-queue-num-queues".into(), n.to_string()));
                "queue-0/".to_string()
            }
        };
        kv.push((format!("{q}tx-ring-ref"), t.to_string()));
        kv.push((format!("{q}rx-ring-ref"), r.to_string()));
        kv.push((format!("{q}event-channel"), port.to_string()));
        kv.push(("request-rx-copy".into(), "1".into()));
        kv.push(("feature-rx-notify".into(), b(k.rx_notify)));
        kv.push(("feature-sg".into(), b(k.sg)));
        kv.push(("feature-gso-tcpv4".into(), b(k.gso_tcpv4)));
        kv.push(("feature-gso-tcpv6".into(), b(k.gso_tcpv6)));
        kv.push(("feature-ipv6-csum-offload".into(), b(k.ipv6_csum_offload)));
        if k.no_csum_offload {
            kv.push(("feature-no-csum-offload".into(), "1".into()));
        }
        for (key, v) in over {
            match kv.iter_mut().find(|(k2, _)| k2 == key) {
                Some(e) => e.1 = v.to_string(),
                None => kv.push((key.to_string(), v.to_string())),
            }
        }
        let dir = self.spec.frontend_dir();
        self.xs
            .transaction(|tx| {
                for (key, v) in &kv {
                    tx.write(&format!("{dir}/{key}"), v)?;
                }
                tx.write(&xenbus::state_path(&dir), XenbusState::Connected.as_value())
            })
            .unwrap();
    }

    /// The whole Linux netfront handshake: wait for InitWait, publish,
    /// wait for the backend to connect, post `rx` receive buffers.
    pub fn connect(&mut self, bk: &mut Backend, rx: usize) {
        self.wait_backend(bk, XenbusState::InitWait);
        self.make_rings();
        self.publish(&[]);
        self.wait_backend(bk, XenbusState::Connected);
        let id = self.id;
        bk.pump_until("Connected event", TIMEOUT, |b| b.is_connected(id));
        self.post_rx(rx);
    }

    /// Pump the backend until its state for our vif is `s`.
    pub fn wait_backend(&mut self, bk: &mut Backend, s: XenbusState) {
        let path = format!(
            "{}/state",
            netback::backend_dir(self.id.domid, self.id.devid)
        );
        bk.pump_until(&format!("backend state {}", s.name()), TIMEOUT, |b| {
            b.read(&path).as_deref() == Some(s.as_value())
        });
    }

    /// As Linux netfront: on backend Closing/Closed, close too.
    pub fn follow_backend_close(&mut self) {
        let b = self.backend_state();
        let me = xenbus::read_state(&mut self.xs, &self.spec.frontend_dir())
            .unwrap_or(XenbusState::Unknown);
        if matches!(b, XenbusState::Closing | XenbusState::Closed) && me != XenbusState::Closed {
            if me != XenbusState::Closing {
                self.set_state(XenbusState::Closing);
            }
            self.set_state(XenbusState::Closed);
        }
    }

    pub fn notify(&self) {
        let _ = self.ev.send(self.port.unwrap());
    }

    fn tx_ring(&mut self) -> &mut FrontRing<NetifTx> {
        self.tx.as_mut().unwrap()
    }

    fn new_buf(&mut self, readonly: bool) -> Buf {
        let gfn = self.dom.alloc_pages(1).unwrap();
        let gref = self.gt.grant(self.spec.backend, gfn, readonly).unwrap();
        Buf { gfn, gref }
    }

    fn page(&self, b: Buf) -> SharedMem {
        self.dom.page(b.gfn).unwrap()
    }

    /// A granted page (for raw requests that should copy fine).
    pub fn valid_gref(&mut self) -> GrantRef {
        let b = self.tx_free.pop().unwrap_or_else(|| self.new_buf(true));
        self.tx_free.push(b);
        b.gref
    }

    /// Queue a frame in the tx ring: slot 0 holds `first` bytes at
    /// `offset`, later slots `chunk` bytes each at offset 0. `flags`
    /// are slot 0's checksum flags; `gso` adds an extra. Not published.
    pub fn queue_tx(
        &mut self,
        bytes: &[u8],
        flags: u16,
        gso: Option<(u8, u16)>,
        offset: u16,
        first: usize,
        chunk: usize,
    ) {
        let mut pieces: Vec<(u16, &[u8])> = Vec::new();
        let (a, mut rest) = bytes.split_at(first.min(bytes.len()));
        pieces.push((offset, a));
        while !rest.is_empty() {
            let (c, r) = rest.split_at(chunk.min(rest.len()));
            pieces.push((0, c));
            rest = r;
        }
        let n = pieces.len();
        for (k, (off, data)) in pieces.into_iter().enumerate() {
            let buf = self.tx_free.pop().unwrap_or_else(|| self.new_buf(true));
            self.page(buf).write_bytes(usize::from(off), data);
            let idx = self.tx_ring().req_prod_pvt();
            let id = (idx & 255) as u16;
            self.tx_bufs[usize::from(id)] = Some(buf);
            let mut fl = if k + 1 < n { NETTXF_MORE_DATA } else { 0 };
            if k == 0 {
                fl |= flags;
                if gso.is_some() {
                    fl |= NETTXF_EXTRA_INFO;
                }
            }
            let size = if k == 0 { bytes.len() } else { data.len() } as u16;
            self.tx_ring()
                .push_request(&NetifTxRequest {
                    gref: buf.gref,
                    offset: off,
                    flags: fl,
                    id,
                    size,
                })
                .unwrap();
            if k == 0 {
                if let Some((ty, mss)) = gso {
                    self.tx_ring()
                        .push_request_as(&NetifExtraInfo {
                            r#type: XEN_NETIF_EXTRA_TYPE_GSO,
                            flags: 0,
                            gso: NetifExtraInfoGso {
                                size: mss,
                                r#type: ty,
                                pad: 0,
                                features: 0,
                            },
                        })
                        .unwrap();
                }
            }
        }
    }

    /// A frame in one slot at offset 0 (or pages of 4096 if larger).
    pub fn queue_simple(&mut self, bytes: &[u8], flags: u16) {
        self.queue_tx(bytes, flags, None, 0, 4096, 4096);
    }

    /// Raw slots, not published.
    pub fn queue_raw(&mut self, slots: &[Raw]) {
        for s in slots {
            match s {
                Raw::Req(r) => self.tx_ring().push_request(r).unwrap(),
                Raw::Extra(e) => self.tx_ring().push_request_as(e).unwrap(),
            }
        }
    }

    /// Publish tx requests; notify if the ring says so.
    pub fn push_tx(&mut self) {
        if self.tx_ring().push_requests_and_check_notify() {
            self.notify();
        }
    }

    /// Consume tx responses (recorded in `tx_responses`).
    pub fn take_tx_responses(&mut self) -> Vec<NetifTxResponse> {
        let mut out = Vec::new();
        let ring = self.tx.as_mut().unwrap();
        for r in ring.responses().unwrap() {
            out.push(r);
        }
        for r in &out {
            if r.status != NETIF_RSP_NULL {
                if let Some(b) = self.tx_bufs[usize::from(r.id & 255)].take() {
                    self.tx_free.push(b);
                }
            }
        }
        self.tx_responses.extend(out.iter().copied());
        out
    }

    /// Post `n` rx buffers (as many as fit), publish, notify if needed.
    pub fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            if self.rx.as_ref().unwrap().is_full() {
                break;
            }
            let buf = self.rx_free.pop().unwrap_or_else(|| self.new_buf(false));
            let rx = self.rx.as_mut().unwrap();
            let idx = rx.req_prod_pvt();
            self.rx_posted[(idx & 255) as usize] = Some(buf);
            rx.push_request(&NetifRxRequest {
                id: (idx & 255) as u16,
                pad: 0,
                gref: buf.gref,
            })
            .unwrap();
        }
        if self.rx.as_mut().unwrap().push_requests_and_check_notify() {
            self.notify();
        }
    }

    /// Raw rx requests (hostile), published.
    pub fn post_rx_raw(&mut self, reqs: &[NetifRxRequest]) {
        let rx = self.rx.as_mut().unwrap();
        for r in reqs {
            rx.push_request(r).unwrap();
        }
        if rx.push_requests_and_check_notify() {
            self.notify();
        }
    }

    /// Parse rx responses as Linux netfront does (pairing by position),
    /// checking every invariant a frontend checks; repost the buffers.
    pub fn take_rx(&mut self) -> Vec<RxPacket> {
        let mut out = Vec::new();
        let mut freed = 0;
        loop {
            let rx = self.rx.as_mut().unwrap();
            rx.poll_responses().unwrap();
            if rx.unconsumed_responses() == 0 {
                break;
            }
            let mut pkt = RxPacket::default();
            let mut first = true;
            loop {
                let rx = self.rx.as_mut().unwrap();
                let idx = rx.rsp_cons();
                let rsp = rx
                    .next_response()
                    .expect("packet continues in a published response");
                let buf = self.rx_posted[(idx & 255) as usize].take().expect("posted");
                freed += 1;
                self.rx_free.push(buf);
                assert_eq!(
                    rsp.id,
                    (idx & 255) as u16,
                    "response in the slot of its request"
                );
                if rsp.status < 0 {
                    pkt.error = true;
                } else {
                    let n = rsp.status as usize;
                    assert!(
                        usize::from(rsp.offset) + n <= 4096,
                        "offset + status within the page"
                    );
                    let mut data = vec![0u8; n];
                    self.page(buf)
                        .read_bytes(usize::from(rsp.offset), &mut data);
                    pkt.bytes.extend_from_slice(&data);
                }
                pkt.slots += 1;
                if first {
                    pkt.flags = rsp.flags;
                    if rsp.flags & NETRXF_EXTRA_INFO != 0 {
                        let rx = self.rx.as_mut().unwrap();
                        let idx = rx.rsp_cons();
                        let e: NetifExtraInfo = rx.next_response_as().expect("extra published");
                        let buf = self.rx_posted[(idx & 255) as usize].take().expect("posted");
                        freed += 1;
                        self.rx_free.push(buf);
                        assert_eq!(e.r#type, XEN_NETIF_EXTRA_TYPE_GSO);
                        assert_eq!(e.flags & XEN_NETIF_EXTRA_FLAG_MORE, 0);
                        pkt.gso = Some(e.gso);
                    }
                    first = false;
                }
                if rsp.flags & NETRXF_MORE_DATA == 0 {
                    break;
                }
            }
            assert!(pkt.slots <= 18, "at most 18 slots");
            if !self.keys.sg {
                assert_eq!(pkt.slots, 1, "multi-slot packet to a frontend without sg");
            }
            if pkt.gso.is_some() {
                assert!(
                    self.keys.gso_tcpv4 || self.keys.gso_tcpv6,
                    "GSO to a frontend without it"
                );
            }
            out.push(pkt);
        }
        if freed > 0 {
            self.post_rx(freed);
        }
        self.received.extend(out.iter().cloned());
        out
    }

    /// Pump `bk` until this frontend received `n` packets in all.
    pub fn pump_rx(&mut self, bk: &mut Backend, n: usize) {
        let end = Instant::now() + TIMEOUT;
        while self.received.len() < n {
            bk.step();
            self.take_rx();
            assert!(
                Instant::now() < end,
                "timed out: {} of {n} packets",
                self.received.len()
            );
        }
    }

    /// Pump `bk` until this frontend has `n` tx responses in all.
    pub fn pump_tx_responses(&mut self, bk: &mut Backend, n: usize) {
        let end = Instant::now() + TIMEOUT;
        while self.tx_responses.len() < n {
            bk.step();
            self.take_tx_responses();
            assert!(
                Instant::now() < end,
                "timed out: {} of {n} tx responses",
                self.tx_responses.len()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Packets.

pub const CLIENT_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00];
pub const GW_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];

fn payload(n: usize, seed: u32) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect()
}

/// An Ethernet frame of an IPv4 (or IPv6) TCP segment with `n` payload
/// bytes; its checksum full, or partial (pseudo header only).
pub fn tcp(v6: bool, n: usize, seed: u32, partial: bool) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&GW_MAC);
    let l4_len = 20 + n;
    if v6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = (20 + l4_len) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&(seed as u16).to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&[10, 137, 0, 5, 10, 138, 0, 1]);
        let c = ipv4_header_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    }
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes());
    t.extend_from_slice(&80u16.to_be_bytes());
    t.extend_from_slice(&seed.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(&t);
    f.extend_from_slice(&payload(n, seed));
    let h = parse_bytes(&f).unwrap();
    let pseudo = pseudo_header_sum(&f, &h, h.l4_len()).unwrap();
    let at = h.checksum_offset().unwrap();
    let c = if partial {
        fold(pseudo)
    } else {
        !fold(checksum_add(pseudo, &f[h.l4_offset..h.l4_end]))
    };
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// True if the frame's TCP/UDP checksum is complete and right.
pub fn csum_ok(f: &[u8]) -> bool {
    let h = parse_bytes(f).unwrap();
    let pseudo = pseudo_header_sum(f, &h, h.l4_len()).unwrap();
    fold(checksum_add(pseudo, &f[h.l4_offset..h.l4_end])) == 0xffff
}

/// True if the frame carries the partial checksum (pseudo header only).
pub fn csum_partial_ok(f: &[u8]) -> bool {
    let h = parse_bytes(f).unwrap();
    let pseudo = pseudo_header_sum(f, &h, h.l4_len()).unwrap();
    let at = h.checksum_offset().unwrap();
    u16::from_be_bytes([f[at], f[at + 1]]) == fold(pseudo)
}

/// The TCP payload of a frame.
pub fn tcp_payload(f: &[u8]) -> &[u8] {
    let h = parse_bytes(f).unwrap();
    &f[h.payload_offset..h.l4_end]
}

/// A non-IP frame of `n` bytes.
pub fn raw_frame(n: usize, seed: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(n);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.extend_from_slice(&payload(n.saturating_sub(14), seed));
    f.truncate(n);
    f
}

pub fn req(gref: GrantRef, offset: u16, flags: u16, id: u16, size: u16) -> Raw {
    Raw::Req(NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    })
}

pub fn extra(ty: u8, flags: u8, gso_size: u16, gso_type: u8) -> Raw {
    Raw::Extra(NetifExtraInfo {
        r#type: ty,
        flags,
        gso: NetifExtraInfoGso {
            size: gso_size,
            r#type: gso_type,
            pad: 0,
            features: 0,
        },
    })
}
