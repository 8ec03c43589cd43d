//! The firewall's event loop, generic over the hypervisor: the same code
//! runs as the PVH unikernel and as a domain of the simulated host.
//!
//! One thread, no async runtime. Each turn of [`Firewall::step`]:
//! 1. xenstore: watch events go to the netfront (uplink) and the netback
//!    (clients); the netback reports clients connecting and leaving;
//! 2. QubesDB: configuration and committed rule sets go to the engine;
//! 3. the uplink, then every client, is polled in a batch; each received
//!    frame goes through the engine, which queues what it forwards;
//! 4. the engine's timers run; the queued frames go to the drivers, which
//!    publish them with one notification per ring (`flush`);
//!
//! and when a turn moved nothing, [`Firewall::run`] sleeps on every event
//! channel until the earliest deadline (no busy polling).
//!
//! Besides, each turn services the qrexec agent ([`crate::qrexec`]: it
//! returns at once unless one of its ports fired) and the toolstack's
//! shutdown requests: at start the firewall writes
//! `control/feature-poweroff` and `control/feature-reboot` (`1`; Qubes'
//! libxl refuses a request unless the guest announced it) and watches
//! `control/shutdown`. On `poweroff`/`halt` or `reboot` it acknowledges
//! (writes the key empty), closes the drivers (netback vifs Closing then
//! Closed, netfront Closed), the qrexec vchans and QubesDB, and
//! [`Firewall::run`] returns [`Stop`] for the kernel's
//! `SCHEDOP_shutdown`. `suspend` (never announced, so libxl should not
//! send it) and anything else is logged and left unacknowledged, as
//! Linux does.
//!
//! What Qubes sees from us: the netback's and netfront's xenstore keys,
//! `/qubes-iptables-error` (empty, or why a client's rules failed) and
//! `/qubes-firewall-handled/<ip>` (a counter bumped after each reload, as
//! the Linux agent does) in QubesDB.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use netback::{Netback, NetbackConfig, NetbackEvent, VifId};
use netfront::{LinkState, Netfront, NetfrontConfig};
use qubesdb::link::Connection;
use qubesdb::{Client as QdbClient, Event as QdbEvent};
use xen::abi::EvtchnPort;
use xen::evtchn::EventChannels;
use xen::frame::{Frame, FrameQueue};
use xen::gnttab::GrantTable;
use xen::memory::pool::PagePool;
use xen::store::Xenstore;
use xen::Platform;

use crate::engine::{
    AddressMap, ClientConfig, ClientId, Engine, EngineConfig, Family, Iface, Output, UplinkConfig,
};
use crate::kernelopts::{KernelOpts, NetOverride};
use crate::qrexec::{Qrexec, QrexecConfig};

/// How the firewall is set up.
#[derive(Clone, Debug)]
pub struct FirewallConfig {
    /// Pages in the packet pool.
    pub pool_pages: usize,
    /// Grant table frames to set up.
    pub grant_frames: u32,
    /// The uplink driver.
    pub netfront: NetfrontConfig,
    /// The client driver.
    pub netback: NetbackConfig,
    /// The engine.
    pub engine: EngineConfig,
    /// Longest sleep when nothing is due (a safety net; every wake-up that
    /// matters is an event).
    pub max_sleep_ns: u64,
    /// How long start-up waits for QubesDB.
    pub qubesdb_timeout_ns: u64,
    /// Frames a turn takes from one interface at most.
    pub batch: usize,
    /// Uplink settings from the kernel command line, overriding QubesDB's.
    pub net_override: NetOverride,
    /// The qrexec agent.
    pub qrexec: QrexecConfig,
}

impl FirewallConfig {
    /// Take the kernel command line's settings: the network overrides,
    /// and `--nat-table-size` as the flow table's size (each client's
    /// quota keeps the default's proportion, a tenth, but at least 64
    /// flows or the whole table if smaller).
    ///
    /// qubes-mirage-firewall's `--nat-table-size` counts NAT entries, two
    /// per flow; here it counts flows, so a value gives at least the
    /// connections it gave there.
    pub fn apply(&mut self, opts: &KernelOpts) {
        self.net_override = opts.net;
        if let Some(n) = opts.nat_table_size {
            let limits = &mut self.engine.limits;
            limits.max_flows = n;
            limits.max_flows_per_client = (n / 10).max(n.min(64));
        }
    }
}

/// Why [`Firewall::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// dom0 asked for poweroff (`poweroff` or `halt`); the drivers are
    /// closed. Shut the domain down with `SHUTDOWN_poweroff`.
    Poweroff,
    /// dom0 asked for a reboot; the drivers are closed. Shut down with
    /// `SHUTDOWN_reboot`.
    Reboot,
    /// The caller's `stop` function said so; nothing was closed.
    Caller,
}

impl Stop {
    /// The `SCHEDOP_shutdown` reason (`SHUTDOWN_*`), for the requests
    /// from dom0.
    pub fn shutdown_reason(self) -> Option<u32> {
        match self {
            Stop::Poweroff => Some(xen::abi::sched::SHUTDOWN_POWEROFF),
            Stop::Reboot => Some(xen::abi::sched::SHUTDOWN_REBOOT),
            Stop::Caller => None,
        }
    }
}

/// The toolstack's shutdown request key (relative to our home).
pub const SHUTDOWN_KEY: &str = "control/shutdown";
/// The keys announcing which requests we handle.
pub const FEATURE_KEYS: [&str; 2] = ["control/feature-poweroff", "control/feature-reboot"];
const SHUTDOWN_TOKEN: &str = "firewall:shutdown";

/// What a value of `control/shutdown` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// Empty: no request (or ours acknowledged).
    None,
    /// One we handle.
    Stop(Stop),
    /// One we do not (`suspend`, `crash`, ...): left unacknowledged.
    Unsupported(String),
}

impl ShutdownRequest {
    /// Parse the key's value (trailing NULs and whitespace ignored).
    pub fn parse(v: &[u8]) -> ShutdownRequest {
        let s = String::from_utf8_lossy(v);
        let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        match s {
            "" => ShutdownRequest::None,
            "poweroff" | "halt" => ShutdownRequest::Stop(Stop::Poweroff),
            "reboot" => ShutdownRequest::Stop(Stop::Reboot),
            other => ShutdownRequest::Unsupported(other.into()),
        }
    }
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            pool_pages: 4096,
            grant_frames: 8,
            netfront: NetfrontConfig {
                devid: 0,
                features: netfront::Features::ALL,
            },
            netback: NetbackConfig {
                features: netback::Features::ALL,
                ..NetbackConfig::default()
            },
            engine: EngineConfig::default(),
            max_sleep_ns: 1_000_000_000,
            qubesdb_timeout_ns: 30_000_000_000,
            batch: 256,
            net_override: NetOverride::default(),
            qrexec: QrexecConfig::default(),
        }
    }
}

/// Why the firewall could not start or stopped.
#[derive(Debug)]
pub enum FirewallError {
    /// A Xen service failed to initialise: which one and why.
    Setup(&'static str, String),
    /// QubesDB did not answer.
    QubesDb(String),
}

impl core::fmt::Display for FirewallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FirewallError::Setup(what, why) => write!(f, "{what}: {why}"),
            FirewallError::QubesDb(why) => write!(f, "QubesDB: {why}"),
        }
    }
}

/// The queues the engine emits into (no allocation after start-up).
struct Queues {
    uplink: FrameQueue,
    clients: Vec<FrameQueue>,
    cap: usize,
}

impl Output for Queues {
    fn emit(&mut self, to: Iface, frame: Frame) -> Result<(), Frame> {
        match to {
            Iface::Uplink => self.uplink.push(frame),
            Iface::Client(ClientId(i)) => match self.clients.get_mut(i as usize) {
                Some(q) => q.push(frame),
                None => Err(frame),
            },
        }
    }
}

/// Which way a tapped frame crosses the firewall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapDir {
    /// Received from the interface.
    In,
    /// Sent to the interface.
    Out,
}

/// A hook that sees every frame crossing the firewall (the lab's pcap).
/// Costs nothing when unset.
pub type Tap = alloc::boxed::Box<dyn FnMut(Iface, TapDir, &Frame, &PagePool) + Send>;

/// One attached client.
struct Attached {
    vif: VifId,
    id: ClientId,
    ip: Ipv4Addr,
}

/// The firewall VM (see the module doc).
pub struct Firewall<P: Platform + Clone> {
    platform: P,
    cfg: FirewallConfig,
    ev: EventChannels<P>,
    xs: Xenstore<P>,
    gt: GrantTable<P>,
    pool: PagePool,
    qdb: Option<Connection<P>>,
    /// The QubesDB client kept across a vchan failure.
    qdb_saved: Option<QdbClient>,
    qdb_retry_at: u64,
    nf: Netfront<P>,
    nb: Netback<P>,
    engine: Engine,
    attached: Vec<Attached>,
    queues: Queues,
    rxq: FrameQueue,
    ports: Vec<EvtchnPort>,
    link_up: bool,
    /// A frame the uplink ring refused (full): sent first next turn,
    /// and until then no client is polled (backpressure, see `step`).
    uplink_held: Option<Frame>,
    /// The client polled first next turn (fair rotation under
    /// backpressure).
    next_client: usize,
    handled: BTreeMap<IpAddr, u64>,
    tap: Option<Tap>,
    qrexec: Qrexec<P>,
    /// A shutdown request from dom0, once seen.
    stop: Option<Stop>,
    /// Turns and sleeps, for the benchmark's report.
    pub turns: u64,
    /// Sleeps.
    pub sleeps: u64,
    /// Frames the engine forwarded that the uplink driver refused (ring
    /// full, link down) and that were dropped.
    pub uplink_send_dropped: u64,
    /// The same toward clients (a client's receive queue full).
    pub client_send_dropped: u64,
    /// Sleeps that ran to the safety-net deadline ([`FirewallConfig::max_sleep_ns`])
    /// after which the next turn found frames to move: a notification that
    /// never came (a peer not signalling, or us not asking it to).
    pub lost_wakeups: u64,
    /// The last sleep ran to the safety-net deadline.
    slept_to_safety_net: bool,
}

fn setup<E: core::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> FirewallError {
    move |e| FirewallError::Setup(what, format!("{e}"))
}

impl<P: Platform + Clone> Firewall<P> {
    /// Initialise Xen services, connect QubesDB and wait for the first
    /// complete dump (the configuration), start both drivers.
    pub fn start(platform: P, cfg: FirewallConfig) -> Result<Firewall<P>, FirewallError> {
        let ev = EventChannels::new(platform.clone()).map_err(setup("event channels"))?;
        let mut xs = Xenstore::from_params(ev.clone()).map_err(setup("xenstore"))?;
        let mut gt =
            GrantTable::new(platform.clone(), cfg.grant_frames).map_err(setup("grant table"))?;
        let pool = PagePool::new(&platform, cfg.pool_pages).map_err(setup("packet pool"))?;
        announce_shutdown_features(&mut xs);
        // qrexec first: dom0 may wait for its handshake (the `qrexec`
        // feature), and our HELLO waits in the ring meanwhile.
        let mut qrexec = Qrexec::new(cfg.qrexec);
        qrexec.start(platform.now_ns(), &ev, &mut gt, &mut xs);
        let now = platform.now_ns();
        let mut conn = Connection::connect(&ev, &mut xs, Some(now + cfg.qubesdb_timeout_ns))
            .map_err(|e| FirewallError::QubesDb(format!("connect: {e}")))?;
        conn.wait_synced(Some(platform.now_ns() + cfg.qubesdb_timeout_ns))
            .map_err(|e| FirewallError::QubesDb(format!("initial dump: {e}")))?;
        let mut nf = Netfront::new(ev.clone(), cfg.netfront);
        nf.start(&mut xs).map_err(setup("netfront"))?;
        let mut nb = Netback::new(ev.clone(), cfg.netback);
        nb.start(&mut xs).map_err(setup("netback"))?;
        let qcap = cfg.netback.rx_queue.max(64);
        let mut fw = Firewall {
            engine: Engine::new(cfg.engine.clone()),
            queues: Queues {
                uplink: FrameQueue::with_capacity(cfg.batch.max(256) * 2),
                clients: Vec::new(),
                cap: qcap,
            },
            rxq: FrameQueue::with_capacity(cfg.batch),
            platform,
            cfg,
            ev,
            xs,
            gt,
            pool,
            qdb: Some(conn),
            qdb_saved: None,
            qdb_retry_at: 0,
            nf,
            nb,
            attached: Vec::new(),
            ports: Vec::with_capacity(64),
            link_up: false,
            uplink_held: None,
            next_client: 0,
            handled: BTreeMap::new(),
            tap: None,
            qrexec,
            stop: None,
            turns: 0,
            sleeps: 0,
            uplink_send_dropped: 0,
            client_send_dropped: 0,
            lost_wakeups: 0,
            slept_to_safety_net: false,
        };
        fw.apply_net_config();
        if let Some(c) = fw.qdb.as_mut() {
            let _ = c.client_mut().write("/qubes-iptables-error", b"");
        }
        log::info!("firewall: started; waiting for the uplink and clients");
        Ok(fw)
    }

    /// Install a frame tap (see [`Tap`]).
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// The engine (counters, tables).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The packet pool (for reports).
    pub fn pool(&self) -> &PagePool {
        &self.pool
    }

    /// The uplink driver's counters.
    pub fn uplink_stats(&self) -> &netfront::Stats {
        self.nf.stats()
    }

    /// A client driver's counters.
    pub fn client_stats(&self, vif: VifId) -> Option<&netback::Stats> {
        self.nb.stats(vif)
    }

    /// The attached clients' vifs.
    pub fn client_vifs(&self) -> impl Iterator<Item = VifId> + '_ {
        self.attached.iter().map(|a| a.vif)
    }

    /// Whether the uplink is up.
    pub fn uplink_up(&self) -> bool {
        self.link_up
    }

    /// The attached clients: engine id and address.
    pub fn clients(&self) -> impl Iterator<Item = (ClientId, Ipv4Addr)> + '_ {
        self.attached.iter().map(|a| (a.id, a.ip))
    }

    /// The qrexec agent (counters, state).
    pub fn qrexec(&self) -> &Qrexec<P> {
        &self.qrexec
    }

    /// The shutdown request from dom0, once one came (the drivers are
    /// closed by [`Firewall::shut_down`], which [`Firewall::run`] calls).
    pub fn stop_requested(&self) -> Option<Stop> {
        self.stop
    }

    /// Run until dom0 asks for poweroff or reboot (then close the drivers
    /// and return which), or until `stop()` says so ([`Stop::Caller`]:
    /// nothing closed). The unikernel runs `fw.run(|_| false)` and shuts
    /// the domain down with [`Stop::shutdown_reason`].
    pub fn run(&mut self, mut stop: impl FnMut(&Self) -> bool) -> Stop {
        loop {
            if let Some(s) = self.stop {
                self.shut_down();
                return s;
            }
            if stop(self) {
                return Stop::Caller;
            }
            if !self.step() && self.stop.is_none() {
                self.sleep();
            }
        }
    }

    /// Close everything as a domain that goes away should: the qrexec
    /// vchans; every client vif Closing then Closed and the uplink Closed
    /// (so the peers disconnect now, not when the toolstack notices);
    /// QubesDB (its vchan closes); the watch on `control/shutdown`.
    /// Frames in flight are dropped. Idempotent.
    pub fn shut_down(&mut self) {
        self.qrexec.shutdown(&mut self.gt, &mut self.xs);
        self.nb.stop(&mut self.xs, &mut self.pool);
        while let Some(e) = self.nb.next_event() {
            if let NetbackEvent::Disconnected(vif) = e {
                self.client_gone(vif);
            }
        }
        for a in core::mem::take(&mut self.attached) {
            self.engine.remove_client(a.id);
        }
        self.nf.stop(&mut self.xs, &mut self.gt, &mut self.pool);
        self.link_up = false;
        self.engine.set_uplink_link(None);
        self.queues.uplink.clear(&mut self.pool);
        for q in &mut self.queues.clients {
            q.clear(&mut self.pool);
        }
        if let Some(c) = self.qdb.take() {
            // Dropping the connection closes its vchan (liveness byte,
            // event, unmap), as a Linux process's end does.
            self.qdb_saved = Some(c.into_client());
        }
        self.qdb_retry_at = u64::MAX;
        let _ = self.xs.unwatch(SHUTDOWN_KEY, SHUTDOWN_TOKEN);
    }

    /// One turn (see the module doc). True if it moved any frame.
    pub fn step(&mut self) -> bool {
        self.turns += 1;
        let now = self.platform.now_ns();
        self.service_xenstore();
        if self.stop.is_some() {
            return false;
        }
        self.service_qubesdb(now);
        self.qrexec
            .service(now, &self.ev, &mut self.gt, &mut self.xs);
        self.nf.tick(&mut self.xs, &mut self.gt, &mut self.pool);
        self.nb.tick(&mut self.xs, &mut self.pool, now);
        self.track_link();
        let mut moved = false;
        // Uplink.
        if self.link_up {
            if let Err(e) = self.nf.poll(&mut self.gt, &mut self.pool, &mut self.rxq) {
                log::warn!("uplink: {e}");
            }
            while let Some(f) = self.rxq.pop() {
                moved = true;
                if let Some(t) = self.tap.as_mut() {
                    t(Iface::Uplink, TapDir::In, &f, &self.pool);
                }
                self.engine
                    .handle(now, Iface::Uplink, f, &mut self.pool, &mut self.queues);
            }
        }
        // Clients, while the uplink can take what they send: a client's
        // frames stay in its own tx ring (which then fills and stops it)
        // rather than being copied here only to be dropped at a full
        // uplink ring. The client polled first rotates.
        let n = self.attached.len();
        let first = if n == 0 { 0 } else { self.next_client % n };
        self.next_client = first + 1;
        for k in 0..n {
            if self.uplink_congested() {
                break;
            }
            let i = (first + k) % n;
            let (vif, id) = (self.attached[i].vif, self.attached[i].id);
            if let Err(e) = self.nb.poll(vif, &mut self.pool, &mut self.rxq) {
                log::warn!("client {}: {e}", self.attached[i].ip);
            }
            while let Some(f) = self.rxq.pop() {
                moved = true;
                if let Some(t) = self.tap.as_mut() {
                    t(Iface::Client(id), TapDir::In, &f, &self.pool);
                }
                self.engine
                    .handle(now, Iface::Client(id), f, &mut self.pool, &mut self.queues);
            }
        }
        self.engine.poll(now, &mut self.pool, &mut self.queues);
        moved |= self.drain_queues();
        if core::mem::take(&mut self.slept_to_safety_net) && moved {
            self.lost_wakeups += 1;
        }
        moved
    }

    /// True while the uplink cannot take another batch: a refused frame
    /// is held, or the queue toward it lacks room for a full batch.
    /// Clients are not polled then (only while the link is up: a down
    /// link drops, it does not hold).
    fn uplink_congested(&self) -> bool {
        self.link_up
            && (self.uplink_held.is_some()
                || self.queues.uplink.len() + self.cfg.batch > self.queues.uplink.capacity())
    }

    /// Sleep on every port until the next deadline. Under uplink
    /// backpressure the clients' ports are left out: their work waits
    /// for the uplink, whose tx completions (its port) end the sleep.
    pub fn sleep(&mut self) {
        let congested = self.uplink_congested();
        if self.nf.needs_poll()
            || (!congested && self.attached.iter().any(|a| self.nb.needs_poll(a.vif)))
            || !self.rxq.is_empty()
        {
            return;
        }
        let now = self.platform.now_ns();
        let safety_net = now + self.cfg.max_sleep_ns;
        let mut deadline = safety_net;
        if let Some(d) = self.engine.next_deadline() {
            deadline = deadline.min(d.max(now));
        }
        if self.qdb.is_none() {
            deadline = deadline.min(self.qdb_retry_at.max(now));
        }
        if let Some(d) = self.qrexec.next_deadline() {
            deadline = deadline.min(d.max(now));
        }
        self.ports.clear();
        self.ports.push(self.xs.port());
        self.ports.extend(self.nf.port());
        if !congested {
            self.nb.ports(&mut self.ports);
        }
        if let Some(c) = &self.qdb {
            self.ports.push(c.port());
        }
        self.qrexec.ports(&mut self.ports);
        self.sleeps += 1;
        let woke = self.ev.wait(&self.ports, Some(deadline));
        self.slept_to_safety_net =
            deadline == safety_net && matches!(woke, Ok(xen::evtchn::Wake::Timeout));
    }

    fn drain_queues(&mut self) -> bool {
        let mut moved = false;
        if let Some(f) = self.uplink_held.take() {
            match self.nf.send(&mut self.gt, &mut self.pool, f) {
                Ok(()) => moved = true,
                Err(f) if self.link_up => self.uplink_held = Some(f),
                Err(f) => f.free(&mut self.pool),
            }
        }
        while self.uplink_held.is_none() {
            let Some(f) = self.queues.uplink.pop() else {
                break;
            };
            moved = true;
            if let Some(t) = self.tap.as_mut() {
                t(Iface::Uplink, TapDir::Out, &f, &self.pool);
            }
            if let Err(f) = self.nf.send(&mut self.gt, &mut self.pool, f) {
                if self.link_up {
                    // Ring full: hold it (and so stop polling clients)
                    // until sys-net completes some of what it has.
                    self.uplink_held = Some(f);
                } else {
                    self.uplink_send_dropped += 1;
                    f.free(&mut self.pool);
                }
            }
        }
        self.nf.flush();
        for a in &self.attached {
            let Some(q) = self.queues.clients.get_mut(a.id.0 as usize) else {
                continue;
            };
            while let Some(f) = q.pop() {
                moved = true;
                if let Some(t) = self.tap.as_mut() {
                    t(Iface::Client(a.id), TapDir::Out, &f, &self.pool);
                }
                if let Err(f) = self.nb.send(a.vif, &mut self.pool, f) {
                    self.client_send_dropped += 1;
                    f.free(&mut self.pool);
                }
            }
        }
        self.nb.flush(&mut self.pool);
        moved
    }

    fn track_link(&mut self) {
        let up = self.nf.link() == LinkState::Up;
        if up != self.link_up {
            self.link_up = up;
            if up {
                let mac = self.nf.mac().unwrap_or([0; 6]);
                let mtu = self.nf.mtu().unwrap_or(1500);
                log::info!(
                    "uplink: connected to backend dom{} (mac {}, mtu {mtu})",
                    self.nf.backend_id().unwrap_or(0),
                    Mac(mac)
                );
                self.engine.set_uplink_link(Some((mac, mtu)));
            } else {
                log::warn!("uplink: down; waiting for sys-net");
                self.engine.set_uplink_link(None);
                self.queues.uplink.clear(&mut self.pool);
                if let Some(f) = self.uplink_held.take() {
                    f.free(&mut self.pool);
                }
            }
        }
    }

    fn service_xenstore(&mut self) {
        if let Err(e) = self.xs.handle_notification() {
            log::warn!("xenstore: {e}");
        }
        while let Some(e) = self.xs.poll_event() {
            if e.token == SHUTDOWN_TOKEN {
                self.check_shutdown();
                continue;
            }
            self.nf
                .handle_watch(&mut self.xs, &mut self.gt, &mut self.pool, &e);
            self.nb.handle_watch(&mut self.xs, &mut self.pool, &e);
        }
        while let Some(e) = self.nb.next_event() {
            match e {
                NetbackEvent::Connected(vif) => self.client_connected(vif),
                NetbackEvent::Disconnected(vif) => self.client_gone(vif),
            }
        }
    }

    /// `control/shutdown` changed: read it, acknowledge a request we
    /// handle (empty write, in the same transaction), remember it.
    fn check_shutdown(&mut self) {
        let r = self.xs.transaction(|tx| {
            let v = tx.read_opt(SHUTDOWN_KEY)?.unwrap_or_default();
            let req = ShutdownRequest::parse(&v);
            if matches!(req, ShutdownRequest::Stop(_)) {
                tx.write(SHUTDOWN_KEY, b"")?;
            }
            Ok(req)
        });
        match r {
            Ok(ShutdownRequest::None) => {}
            Ok(ShutdownRequest::Stop(s)) => {
                log::info!("shutdown: dom0 requests {s:?}; closing the drivers");
                self.stop.get_or_insert(s);
            }
            Ok(ShutdownRequest::Unsupported(what)) => {
                log::warn!(
                    "shutdown: ignoring request {what:?} (only poweroff and reboot are handled)"
                )
            }
            Err(e) => log::warn!("shutdown: reading {SHUTDOWN_KEY}: {e}"),
        }
    }

    /// QubesDB's network keys with the command line's overrides.
    fn net_config(&self) -> alloc::sync::Arc<qubesdb::NetConfig> {
        let mut net = self
            .qdb_client()
            .map(|c| c.net_config())
            .unwrap_or_default();
        if !self.cfg.net_override.is_empty() {
            self.cfg
                .net_override
                .apply_to(alloc::sync::Arc::make_mut(&mut net));
        }
        net
    }

    fn client_connected(&mut self, vif: VifId) {
        let Some(info) = self.nb.vif(vif) else { return };
        let ip = info
            .ip
            .split_whitespace()
            .find_map(|s| s.parse::<Ipv4Addr>().ok());
        let (Some(ip), Some(mac)) = (ip, info.mac) else {
            log::warn!(
                "client dom{} vif {}: no IPv4 address or MAC in its backend keys; ignored",
                vif.domid,
                vif.devid
            );
            return;
        };
        let net = self.net_config();
        let gateway = net
            .netvm_gateway
            .or(net.ip)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let ip6 = info
            .ip
            .split_whitespace()
            .find_map(|s| s.parse::<core::net::Ipv6Addr>().ok());
        let gateway6 = self
            .qdb_client()
            .and_then(|c| c.read_str("/qubes-netvm-gateway6"))
            .and_then(|s| s.trim().parse().ok());
        let cfg = ClientConfig {
            ip,
            ip6,
            mac,
            gateway,
            gateway6,
        };
        match self.engine.add_client(cfg) {
            Ok(id) => {
                while self.queues.clients.len() <= id.0 as usize {
                    self.queues
                        .clients
                        .push(FrameQueue::with_capacity(self.queues.cap));
                }
                self.attached.push(Attached { vif, id, ip });
                log::info!(
                    "client {ip} (dom{} vif {}): connected",
                    vif.domid,
                    vif.devid
                );
                self.apply_address_map(id, ip);
                self.load_rules(IpAddr::V4(ip));
                if let Some(v6) = ip6 {
                    self.load_rules(IpAddr::V6(v6));
                }
            }
            Err(e) => log::warn!("client dom{}: {e}; ignored", vif.domid),
        }
    }

    /// Give every attached client its `net.fake-ip` mapping from
    /// QubesDB (`/mapped-ip/...` changed).
    fn apply_address_maps(&mut self) {
        for i in 0..self.attached.len() {
            let (id, ip) = (self.attached[i].id, self.attached[i].ip);
            self.apply_address_map(id, ip);
        }
    }

    /// Give one client its `net.fake-ip` mapping: `/mapped-ip/<ip>/...`.
    /// A value that does not parse blocks the client (fail closed) until
    /// dom0 writes a valid one or removes it.
    fn apply_address_map(&mut self, id: ClientId, ip: Ipv4Addr) {
        let list = self.qdb_client().map(|c| c.client_list());
        let gateway = self
            .engine
            .client_config(id)
            .map_or(Ipv4Addr::UNSPECIFIED, |c| c.gateway);
        let map = list.map_or(AddressMap::Identity, |l| address_map(&l, ip, gateway));
        if !self.engine.set_address_map(id, map) {
            return;
        }
        match map {
            AddressMap::Identity => log::info!("client {ip}: no address mapping (net.fake-ip)"),
            AddressMap::Mapped {
                visible_ip,
                visible_gateway,
            } => log::info!(
                "client {ip}: seen by itself as {visible_ip}, gateway {visible_gateway} (net.fake-ip)"
            ),
            AddressMap::Invalid => log::error!(
                "client {ip}: /mapped-ip/{ip}/: {}; all its traffic blocked until fixed",
                qubesdb::InvalidMapping
            ),
        }
    }

    fn client_gone(&mut self, vif: VifId) {
        if let Some(i) = self.attached.iter().position(|a| a.vif == vif) {
            let a = self.attached.swap_remove(i);
            self.engine.remove_client(a.id);
            if let Some(q) = self.queues.clients.get_mut(a.id.0 as usize) {
                q.clear(&mut self.pool);
            }
            log::info!("client {} (dom{}): disconnected", a.ip, vif.domid);
        }
    }

    fn qdb_client(&self) -> Option<&QdbClient> {
        self.qdb
            .as_ref()
            .map(|c| c.client())
            .or(self.qdb_saved.as_ref())
    }

    fn service_qubesdb(&mut self, now: u64) {
        if self.qdb.is_none() {
            if now < self.qdb_retry_at {
                return;
            }
            match qubesdb::link::connect_vchan(&self.ev, &mut self.xs, Some(now + 1_000_000)) {
                Ok(v) => {
                    let client = self.qdb_saved.take().unwrap_or_default();
                    self.qdb = Some(Connection::resume(v, client));
                    log::info!("QubesDB: reconnected");
                }
                Err(_) => {
                    self.qdb_retry_at = now + 1_000_000_000;
                    return;
                }
            }
        }
        let Some(conn) = self.qdb.as_mut() else {
            return;
        };
        // The pump reads what is there; the event only says "look".
        self.ev.clear_pending(conn.port());
        if let Err(e) = conn.service() {
            log::warn!("QubesDB: {e}; reconnecting (rules stay as they are)");
            if let Some(c) = self.qdb.take() {
                self.qdb_saved = Some(c.into_client());
            }
            self.qdb_retry_at = now + 1_000_000_000;
            return;
        }
        let mut events = Vec::new();
        while let Some(e) = conn.client_mut().poll_event() {
            events.push(e);
        }
        for e in events {
            match e {
                QdbEvent::Synced | QdbEvent::ConfigChanged => self.apply_net_config(),
                QdbEvent::RulesCommitted { client } | QdbEvent::ClientRemoved { client } => {
                    self.load_rules(client)
                }
                QdbEvent::ClientsChanged => self.apply_address_maps(),
                QdbEvent::WriteFailed { path } => log::warn!("QubesDB: write of {path} failed"),
                QdbEvent::Rejected(e) => log::warn!("QubesDB: {e}"),
                QdbEvent::Watch(_) => {}
            }
        }
    }

    fn apply_net_config(&mut self) {
        if self.qdb_client().is_none() && self.cfg.net_override.is_empty() {
            return;
        }
        let net = self.net_config();
        let c = self.qdb_client();
        let ip6 = c
            .and_then(|c| c.read_str("/qubes-ip6"))
            .and_then(|s| s.trim().parse().ok());
        let gateway6 = c
            .and_then(|c| c.read_str("/qubes-gateway6"))
            .and_then(|s| s.trim().parse().ok());
        let cfg = net.uplink().map(|u| UplinkConfig {
            ip: u.ip,
            gateway: u.gateway,
            ip6,
            gateway6,
            dns: u.dns.iter().flatten().map(|a| IpAddr::V4(*a)).collect(),
        });
        if cfg.is_none() {
            log::warn!("QubesDB: no complete uplink configuration yet");
        }
        self.engine.set_uplink(cfg);
    }

    /// Load the committed rules for client address `ip` (either family)
    /// into the engine, fail closed on error.
    fn load_rules(&mut self, ip: IpAddr) {
        let owner = self.engine.client_by_ip(ip);
        let Some(id) = owner else {
            return; // rules arrive before the vif: loaded when it connects
        };
        let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
        let snapshot = self.qdb_client().and_then(|c| c.rules(ip));
        let (set, err) = match snapshot {
            Some(s) => s.rule_set_or_deny_all(),
            None => (rules::RuleSet::deny_all(), None),
        };
        let n = set.len();
        let r = self.engine.set_rules(id, family, set);
        let count = {
            let c = self.handled.entry(ip).or_insert(0);
            *c += 1;
            *c
        };
        match &err {
            None => log::info!(
                "client {ip}: {n} rules loaded ({} flows kept, {} cut)",
                r.kept,
                r.cut
            ),
            Some(e) => log::warn!("client {ip}: rules rejected, all traffic blocked: {e}"),
        }
        if let Some(conn) = self.qdb.as_mut() {
            let c = conn.client_mut();
            let _ = c.write(
                &format!("/qubes-firewall-handled/{ip}"),
                format!("{count}").as_bytes(),
            );
            let msg = err.map(|e| format!("{e}")).unwrap_or_default();
            let _ = c.write("/qubes-iptables-error", msg.as_bytes());
        }
    }
}

/// The `net.fake-ip` mapping QubesDB gives the client whose real address
/// is `real` and whose gateway is otherwise `gateway`: none without a
/// `visible-ip` or with one equal to `real`; `visible-gateway` defaults to
/// `gateway`; a value that does not parse is [`AddressMap::Invalid`].
pub fn address_map(list: &qubesdb::ClientList, real: Ipv4Addr, gateway: Ipv4Addr) -> AddressMap {
    match list.mapping(real) {
        Err(qubesdb::InvalidMapping) => AddressMap::Invalid,
        Ok(None) => AddressMap::Identity,
        Ok(Some(m)) => match m.visible_ip {
            Some(visible_ip) if visible_ip != real => AddressMap::Mapped {
                visible_ip,
                visible_gateway: m.visible_gateway.unwrap_or(gateway),
            },
            _ => AddressMap::Identity,
        },
    }
}

/// Say which shutdown requests we handle (Qubes' libxl refuses the others
/// up front) and watch for them. Failures are logged, not fatal: the
/// firewall forwards all the same, only `qvm-shutdown` would not be clean.
fn announce_shutdown_features<P: Platform + Clone>(xs: &mut Xenstore<P>) {
    for k in FEATURE_KEYS {
        if let Err(e) = xs.write(k, b"1") {
            log::warn!("shutdown: writing {k}: {e}; dom0 may refuse to shut us down cleanly");
        }
    }
    if let Err(e) = xs.watch(SHUTDOWN_KEY, SHUTDOWN_TOKEN) {
        log::warn!("shutdown: cannot watch {SHUTDOWN_KEY}: {e}; shutdown requests will be missed");
    }
}

/// A MAC for log lines.
struct Mac([u8; 6]);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_requests() {
        use ShutdownRequest as R;
        for (v, want) in [
            (&b""[..], R::None),
            (b"\0", R::None),
            (b"poweroff", R::Stop(Stop::Poweroff)),
            (b"poweroff\0", R::Stop(Stop::Poweroff)),
            (b"halt", R::Stop(Stop::Poweroff)),
            (b"reboot\n", R::Stop(Stop::Reboot)),
            (b"suspend", R::Unsupported("suspend".into())),
            (b"crash", R::Unsupported("crash".into())),
            (b"\xff", R::Unsupported("\u{fffd}".into())),
        ] {
            assert_eq!(R::parse(v), want, "{v:?}");
        }
        assert_eq!(Stop::Poweroff.shutdown_reason(), Some(0));
        assert_eq!(Stop::Reboot.shutdown_reason(), Some(1));
        assert_eq!(Stop::Caller.shutdown_reason(), None);
    }

    #[test]
    fn address_maps_from_qubesdb() {
        let real = Ipv4Addr::new(10, 137, 0, 5);
        let gw = Ipv4Addr::new(10, 137, 0, 1);
        let map = |entries: &[(&str, &str)]| {
            let mut db = qubesdb::db::Db::new();
            for (k, v) in entries {
                db.write(k, v.as_bytes()).unwrap();
            }
            address_map(&qubesdb::ClientList::from_db(&db), real, gw)
        };
        const IP: &str = "/mapped-ip/10.137.0.5/visible-ip";
        const GW: &str = "/mapped-ip/10.137.0.5/visible-gateway";
        assert_eq!(map(&[]), AddressMap::Identity);
        assert_eq!(
            map(&[(IP, "10.137.0.5"), (GW, "10.137.0.1")]),
            AddressMap::Identity
        );
        assert_eq!(map(&[(GW, "192.168.1.1")]), AddressMap::Identity);
        assert_eq!(
            map(&[(IP, "192.168.1.5"), (GW, "192.168.1.1")]),
            AddressMap::Mapped {
                visible_ip: Ipv4Addr::new(192, 168, 1, 5),
                visible_gateway: Ipv4Addr::new(192, 168, 1, 1),
            }
        );
        assert_eq!(
            map(&[(IP, "192.168.1.5")]),
            AddressMap::Mapped {
                visible_ip: Ipv4Addr::new(192, 168, 1, 5),
                visible_gateway: gw,
            }
        );
        // Another client's mapping is not ours.
        assert_eq!(
            map(&[("/mapped-ip/10.137.0.6/visible-ip", "192.168.1.6")]),
            AddressMap::Identity
        );
        for bad in [
            &[(IP, "192.168.1.256"), (GW, "192.168.1.1")][..],
            &[(IP, "192.168.1.5"), (GW, "gateway")],
            &[(IP, "")],
            &[(IP, "fd09::5")],
            &[(IP, "192.168.1.5 ")],
            &[(GW, "1.2.3")],
        ] {
            assert_eq!(map(bad), AddressMap::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn kernel_options_apply_to_the_config() {
        let mut cfg = FirewallConfig::default();
        let before = cfg.engine.limits.clone();
        cfg.apply(&crate::kernelopts::parse("").unwrap());
        assert_eq!(cfg.engine.limits, before);
        assert!(cfg.net_override.is_empty());

        let opts = crate::kernelopts::parse("--nat-table-size=5000 --ipv4-gw=10.0.0.1").unwrap();
        cfg.apply(&opts);
        assert_eq!(cfg.engine.limits.max_flows, 5000);
        assert_eq!(cfg.engine.limits.max_flows_per_client, 500);
        assert_eq!(cfg.net_override.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        for (n, per_client) in [(1, 1), (50, 50), (100, 64), (1000, 100)] {
            let opts = crate::kernelopts::parse(&format!("--nat-table-size={n}")).unwrap();
            cfg.apply(&opts);
            assert_eq!(cfg.engine.limits.max_flows_per_client, per_client, "{n}");
        }
    }
}
