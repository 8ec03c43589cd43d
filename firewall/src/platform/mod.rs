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
    ClientConfig, ClientId, Engine, EngineConfig, Family, Iface, Output, UplinkConfig,
};

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
    handled: BTreeMap<IpAddr, u64>,
    tap: Option<Tap>,
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
        let gt =
            GrantTable::new(platform.clone(), cfg.grant_frames).map_err(setup("grant table"))?;
        let pool = PagePool::new(&platform, cfg.pool_pages).map_err(setup("packet pool"))?;
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
            handled: BTreeMap::new(),
            tap: None,
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

    /// Run until `stop()` says so.
    pub fn run(&mut self, mut stop: impl FnMut(&Self) -> bool) {
        while !stop(self) {
            if !self.step() {
                self.sleep();
            }
        }
    }

    /// One turn (see the module doc). True if it moved any frame.
    pub fn step(&mut self) -> bool {
        self.turns += 1;
        let now = self.platform.now_ns();
        self.service_xenstore();
        self.service_qubesdb(now);
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
        // Clients.
        for i in 0..self.attached.len() {
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

    /// Sleep on every port until the next deadline.
    pub fn sleep(&mut self) {
        if self.nf.needs_poll()
            || self.attached.iter().any(|a| self.nb.needs_poll(a.vif))
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
        self.ports.clear();
        self.ports.push(self.xs.port());
        self.ports.extend(self.nf.port());
        self.nb.ports(&mut self.ports);
        if let Some(c) = &self.qdb {
            self.ports.push(c.port());
        }
        self.sleeps += 1;
        let woke = self.ev.wait(&self.ports, Some(deadline));
        self.slept_to_safety_net =
            deadline == safety_net && matches!(woke, Ok(xen::evtchn::Wake::Timeout));
    }

    fn drain_queues(&mut self) -> bool {
        let mut moved = false;
        while let Some(f) = self.queues.uplink.pop() {
            moved = true;
            if let Some(t) = self.tap.as_mut() {
                t(Iface::Uplink, TapDir::Out, &f, &self.pool);
            }
            if let Err(f) = self.nf.send(&mut self.gt, &mut self.pool, f) {
                // Ring full or link down: drop (TCP retransmits), as a NIC
                // queue overflow would.
                self.uplink_send_dropped += 1;
                f.free(&mut self.pool);
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
            }
        }
    }

    fn service_xenstore(&mut self) {
        if let Err(e) = self.xs.handle_notification() {
            log::warn!("xenstore: {e}");
        }
        while let Some(e) = self.xs.poll_event() {
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
        let net = self
            .qdb_client()
            .map(|c| c.net_config())
            .unwrap_or_default();
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
                self.load_rules(IpAddr::V4(ip));
                if let Some(v6) = ip6 {
                    self.load_rules(IpAddr::V6(v6));
                }
            }
            Err(e) => log::warn!("client dom{}: {e}; ignored", vif.domid),
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
                QdbEvent::ClientsChanged => {}
                QdbEvent::WriteFailed { path } => log::warn!("QubesDB: write of {path} failed"),
                QdbEvent::Rejected(e) => log::warn!("QubesDB: {e}"),
                QdbEvent::Watch(_) => {}
            }
        }
    }

    fn apply_net_config(&mut self) {
        let Some(c) = self.qdb_client() else { return };
        let net = c.net_config();
        let ip6 = c.read_str("/qubes-ip6").and_then(|s| s.trim().parse().ok());
        let gateway6 = c
            .read_str("/qubes-gateway6")
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
