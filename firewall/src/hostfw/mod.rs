//! `hostfw`: the firewall engine on Linux TAP devices.
//!
//! The same [`crate::engine::Engine`] the unikernel runs, between one
//! uplink TAP and one TAP per client, so real Linux network stacks (iperf3,
//! ping, dnsmasq, tcpdump) talk through it. Its configuration is a file
//! laid out like QubesDB ([`config`]); rules are reloaded on `SIGHUP` and
//! when the file changes. See `docs/hostfw.md`.
//!
//! - [`config`]: the `KEY VALUE` file, checked line by line;
//! - [`vnet`]: the virtio-net header and its mapping onto frame metadata
//!   (checksum offload, TSO/GSO);
//! - [`tap`]: one TAP device, read and written with `readv`/`writev`
//!   straight into pool pages;
//! - this module: the event loop (poll on every TAP, each drained up to a
//!   batch, the engine in between, outputs flushed per batch).

pub mod config;
pub mod tap;
pub mod vnet;

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use xen::frame::Frame;
use xen::memory::pool::PagePool;
use xen::memory::LocalRam;

use crate::engine::{
    ClientConfig, ClientId, Drop as DropReason, Engine, EngineConfig, Family, Iface, Output,
    UplinkConfig,
};
use config::Config;
use tap::{Read, RxDrop, Tap};

/// How hostfw runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// Attach to existing TAP devices only (do not create them).
    pub attach: bool,
    /// Frames read from one TAP before the others get a turn.
    pub batch: usize,
    /// Pages in the packet pool (4 KiB each).
    pub pool_pages: usize,
    /// Create this file once every TAP is open (for scripts).
    pub ready_file: Option<PathBuf>,
    /// Log the counters this often.
    pub stats_every: Option<Duration>,
    /// How often the configuration file's metadata is checked.
    pub watch_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: PathBuf::new(),
            attach: false,
            batch: 64,
            pool_pages: 8192,
            ready_file: None,
            stats_every: None,
            watch_every: Duration::from_millis(250),
        }
    }
}

/// A fatal error, in words.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<config::ConfigError> for Error {
    fn from(e: config::ConfigError) -> Self {
        Error(e.to_string())
    }
}

impl From<tap::OpenError> for Error {
    fn from(e: tap::OpenError) -> Self {
        Error(e.0)
    }
}

/// Read and parse the configuration file.
pub fn load_config(path: &Path) -> Result<Config, Error> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| Error(format!("{name}: cannot read: {e}")))?;
    Ok(Config::parse(&name, &text)?)
}

/// Per-device output queues (device 0 is the uplink).
struct Queues {
    q: Vec<Vec<Frame>>,
    /// Client id -> device index.
    dev_of: Vec<Option<usize>>,
    cap: usize,
}

impl Output for Queues {
    fn emit(&mut self, to: Iface, frame: Frame) -> Result<(), Frame> {
        let i = match to {
            Iface::Uplink => 0,
            Iface::Client(ClientId(c)) => match self.dev_of.get(c as usize).copied().flatten() {
                Some(i) => i,
                None => return Err(frame),
            },
        };
        let q = &mut self.q[i];
        if q.len() >= self.cap {
            return Err(frame);
        }
        q.push(frame);
        Ok(())
    }
}

/// Counters of the TAP side (the engine keeps its own).
#[derive(Clone, Copy, Debug, Default)]
pub struct IoStats {
    /// Frames read.
    pub rx: u64,
    /// Frames written.
    pub tx: u64,
    /// Frames dropped before the engine ([`RxDrop`]).
    pub rx_dropped: u64,
    /// Frames the kernel would not take, or that could not be described.
    pub tx_dropped: u64,
    /// Reads skipped because the pool was empty.
    pub pool_empty: u64,
    /// poll(2) calls.
    pub polls: u64,
}

/// A file's identity and version, to notice edits and replacements.
fn file_stamp(p: &Path) -> Option<(i64, i64, u64, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.ino(), m.len()))
}

/// The running firewall.
pub struct HostFw {
    opts: Options,
    cfg: Config,
    engine: Engine,
    pool: PagePool,
    // The pool's memory; declared after the pool so it outlives it.
    _ram: LocalRam,
    taps: Vec<Tap>,
    /// Device index -> engine interface.
    ifaces: Vec<Iface>,
    /// Device index of each client (in `cfg.clients` order) and its id.
    ids: Vec<ClientId>,
    out: Queues,
    start: Instant,
    stamp: Option<(i64, i64, u64, u64)>,
    io: IoStats,
}

impl HostFw {
    /// Parse the configuration, open every TAP and set up the engine.
    pub fn new(opts: Options) -> Result<HostFw, Error> {
        let cfg = load_config(&opts.config)?;
        for w in &cfg.warnings {
            log::warn!("{w}");
        }
        // Check every client's rules before touching any device.
        for c in &cfg.clients {
            cfg.rule_set(IpAddr::V4(c.ip))?;
        }
        let stamp = file_stamp(&opts.config);

        let mut taps = vec![Tap::open(&cfg.uplink.tap, opts.attach)?];
        for c in &cfg.clients {
            taps.push(Tap::open(&c.tap, opts.attach)?);
        }

        let mut seed = [0u8; 16];
        match std::fs::File::open("/dev/urandom") {
            Ok(mut f) => {
                use std::io::Read as _;
                if f.read_exact(&mut seed).is_err() {
                    return Err(Error("/dev/urandom: short read".into()));
                }
            }
            Err(e) => return Err(Error(format!("/dev/urandom: {e}"))),
        }
        let mtu = taps[0].mtu().unwrap_or(1500);
        let mut engine = Engine::new(EngineConfig {
            seed,
            uplink_mtu: mtu,
            ..EngineConfig::default()
        });
        let up = &cfg.uplink;
        engine.set_uplink(Some(UplinkConfig {
            ip: up.ip,
            gateway: up.gateway,
            ip6: up.ip6,
            gateway6: up.gateway6,
            dns: up.dns.clone(),
        }));
        engine.set_uplink_link(Some((up.mac, mtu)));

        let mut ifaces = vec![Iface::Uplink];
        let mut ids = Vec::new();
        let mut dev_of = Vec::new();
        for (i, c) in cfg.clients.iter().enumerate() {
            let id = engine
                .add_client(ClientConfig {
                    ip: c.ip,
                    ip6: c.ip6,
                    mac: c.mac,
                    gateway: up.client_gateway,
                    gateway6: up.client_gateway6,
                })
                .map_err(|e| Error(format!("{}:{}: client {}: {e}", cfg.file, c.line, c.name)))?;
            ifaces.push(Iface::Client(id));
            ids.push(id);
            let k = id.0 as usize;
            if dev_of.len() <= k {
                dev_of.resize(k + 1, None);
            }
            dev_of[k] = Some(i + 1);
        }

        let ram = LocalRam::new(opts.pool_pages);
        let pool = PagePool::new(&ram, opts.pool_pages)
            .map_err(|e| Error(format!("packet pool of {} pages: {e}", opts.pool_pages)))?;
        let out = Queues {
            q: (0..taps.len())
                .map(|_| Vec::with_capacity(opts.batch * 2))
                .collect(),
            dev_of,
            cap: opts.batch * 4,
        };
        let mut fw = HostFw {
            opts,
            cfg,
            engine,
            pool,
            _ram: ram,
            taps,
            ifaces,
            ids,
            out,
            start: Instant::now(),
            stamp,
            io: IoStats::default(),
        };
        fw.apply_rules(None);
        Ok(fw)
    }

    /// The engine (for counters).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The TAP counters.
    pub fn io_stats(&self) -> IoStats {
        self.io
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Load every client's rules from `self.cfg` into the engine; on a
    /// reload (`Some(previous)`) say what changed.
    fn apply_rules(&mut self, previous: Option<&Config>) {
        for (i, c) in self.cfg.clients.iter().enumerate() {
            let ip = IpAddr::V4(c.ip);
            if let Some(p) = previous {
                if p.rules.get(&ip) == self.cfg.rules.get(&ip) {
                    continue;
                }
            }
            let (set, err) = match self.cfg.rule_set(ip) {
                Ok(s) => (s, None),
                Err(e) => (rules::RuleSet::deny_all(), Some(e)),
            };
            let n = set.len();
            let r = self.engine.set_rules(self.ids[i], Family::V4, set);
            match err {
                None => log::info!(
                    "client {} ({}): {n} rules loaded ({} flows kept, {} cut)",
                    c.name,
                    c.ip,
                    r.kept,
                    r.cut
                ),
                Some(e) => log::error!(
                    "{e}; client {} ({}): all traffic blocked ({} flows cut)",
                    c.name,
                    c.ip,
                    r.cut
                ),
            }
        }
    }

    /// Re-read the configuration file and apply its rules. A file that no
    /// longer parses blocks every client (fail closed, as a QubesDB rule
    /// error does) until it is fixed.
    pub fn reload(&mut self) {
        self.stamp = file_stamp(&self.opts.config);
        match load_config(&self.opts.config) {
            Ok(new) => {
                if !new.same_topology(&self.cfg) {
                    log::warn!(
                        "{}: uplink or client settings changed: only rules are reloaded, restart hostfw for the rest",
                        new.file
                    );
                }
                let mut merged = new.clone();
                merged.uplink = self.cfg.uplink.clone();
                merged.clients = self.cfg.clients.clone();
                let old = std::mem::replace(&mut self.cfg, merged);
                log::info!("{}: reloaded", self.cfg.file);
                self.apply_rules(Some(&old));
            }
            Err(e) => {
                log::error!("reload: {e}; blocking every client until the file is fixed");
                for (i, c) in self.cfg.clients.iter().enumerate() {
                    let r =
                        self.engine
                            .set_rules(self.ids[i], Family::V4, rules::RuleSet::deny_all());
                    log::warn!("client {} ({}): blocked, {} flows cut", c.name, c.ip, r.cut);
                }
                self.cfg.rules.clear();
            }
        }
    }

    /// Write every queued frame.
    fn flush(&mut self) -> io::Result<()> {
        for (i, tap) in self.taps.iter_mut().enumerate() {
            for f in self.out.q[i].drain(..) {
                if tap.write(&mut self.pool, f)? {
                    self.io.tx += 1;
                } else {
                    self.io.tx_dropped += 1;
                }
            }
        }
        Ok(())
    }

    /// Drain up to one batch from device `i`; true if the batch was full
    /// (more may be waiting).
    fn drain(&mut self, i: usize) -> io::Result<bool> {
        let iface = self.ifaces[i];
        for _ in 0..self.opts.batch {
            match self.taps[i].read(&mut self.pool)? {
                Read::Frame(f) => {
                    self.io.rx += 1;
                    let now = self.now();
                    self.engine
                        .handle(now, iface, f, &mut self.pool, &mut self.out);
                }
                Read::Empty => return Ok(false),
                Read::NoPages => {
                    self.io.pool_empty += 1;
                    return Ok(false);
                }
                Read::Dropped(why) => {
                    self.io.rx_dropped += 1;
                    log::debug!("{}: dropped a frame: {why:?}", self.taps[i].name());
                    if let RxDrop::Vnet(_) = why {
                        log::debug!("(UDP GSO frames are not supported)");
                    }
                }
            }
        }
        Ok(true)
    }

    /// One line of counters.
    pub fn stats_line(&self) -> String {
        let s = self.engine.stats();
        let mut drops = String::new();
        for d in DropReason::ALL {
            let n = s.drops_for(d);
            if n > 0 {
                drops.push_str(&format!(" {d}={n}"));
            }
        }
        format!(
            "out {} pkts {} B, in {} pkts {} B, flows {}, generated {}, tap rx {} tx {} rx-drop {} tx-drop {} pool-empty {}, drops:{}",
            s.forwarded_out,
            s.bytes_out,
            s.forwarded_in,
            s.bytes_in,
            self.engine.flow_count(),
            s.generated,
            self.io.rx,
            self.io.tx,
            self.io.rx_dropped,
            self.io.tx_dropped,
            self.io.pool_empty,
            if drops.is_empty() { " none".into() } else { drops }
        )
    }

    /// Run until `stop` is set. `hup` asks for a reload.
    pub fn run(&mut self, stop: &AtomicBool, hup: &AtomicBool) -> Result<(), Error> {
        let fatal = |e: io::Error, what: &str| Error(format!("{what}: {e}"));
        if let Some(p) = &self.opts.ready_file {
            std::fs::write(p, format!("{}\n", std::process::id()))
                .map_err(|e| Error(format!("{}: {e}", p.display())))?;
        }
        log::info!(
            "hostfw running: uplink {} ({}), {} client(s)",
            self.cfg.uplink.tap,
            self.cfg.uplink.ip,
            self.cfg.clients.len()
        );
        let mut next_watch = Instant::now() + self.opts.watch_every;
        let mut next_stats = self.opts.stats_every.map(|d| Instant::now() + d);
        let mut busy = vec![false; self.taps.len()];
        let mut ready = vec![false; self.taps.len()];
        while !stop.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                log::info!("SIGHUP: reloading {}", self.opts.config.display());
                self.reload();
            }
            let wall = Instant::now();
            if wall >= next_watch {
                next_watch = wall + self.opts.watch_every;
                if file_stamp(&self.opts.config) != self.stamp {
                    log::info!("{} changed: reloading", self.opts.config.display());
                    self.reload();
                }
            }
            if let Some(t) = next_stats {
                if wall >= t {
                    log::info!("{}", self.stats_line());
                    next_stats = self.opts.stats_every.map(|d| wall + d);
                }
            }

            // Sleep until a TAP is readable, the engine's next deadline
            // or the next file check; not at all if a TAP had more.
            let timeout = if busy.iter().any(|&b| b) {
                Duration::ZERO
            } else {
                let mut t = next_watch.saturating_duration_since(wall);
                if let Some(d) = self.engine.next_deadline() {
                    t = t.min(Duration::from_nanos(d.saturating_sub(self.now())));
                }
                t
            };
            let ts = Timespec {
                tv_sec: timeout.as_secs() as _,
                tv_nsec: timeout.subsec_nanos() as _,
            };
            {
                let mut fds: Vec<PollFd<'_>> = self
                    .taps
                    .iter()
                    .map(|t| PollFd::from_borrowed_fd(t.fd(), PollFlags::IN))
                    .collect();
                self.io.polls += 1;
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(fatal(e.into(), "poll")),
                }
                for (i, fd) in fds.iter().enumerate() {
                    let r = fd.revents();
                    if r.intersects(PollFlags::ERR | PollFlags::NVAL) {
                        return Err(Error(format!(
                            "TAP device {}: error on its descriptor ({r:?})",
                            self.taps[i].name()
                        )));
                    }
                    ready[i] = r.contains(PollFlags::IN);
                }
            }
            for i in 0..self.taps.len() {
                busy[i] = false;
                if ready[i] {
                    busy[i] = self.drain(i).map_err(|e| {
                        Error(format!("TAP device {}: read: {e}", self.taps[i].name()))
                    })?;
                    self.flush().map_err(|e| fatal(e, "TAP write"))?;
                }
            }
            let now = self.now();
            self.engine.poll(now, &mut self.pool, &mut self.out);
            self.flush().map_err(|e| fatal(e, "TAP write"))?;
        }
        log::info!("stopping: {}", self.stats_line());
        Ok(())
    }
}

impl Drop for HostFw {
    fn drop(&mut self) {
        for q in &mut self.out.q {
            for f in q.drain(..) {
                f.free(&mut self.pool);
            }
        }
        for t in &mut self.taps {
            t.release(&mut self.pool);
        }
    }
}

/// Parse, open, run until SIGTERM or SIGINT; reload on SIGHUP.
pub fn run(opts: Options) -> Result<(), Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &hup),
    ] {
        signal_hook::flag::register(sig, Arc::clone(flag))
            .map_err(|e| Error(format!("signal {sig}: {e}")))?;
    }
    let mut fw = HostFw::new(opts)?;
    fw.run(&stop, &hup)
}
