//! [`AppVm`]: a client domain. Its `netfront` connects to whoever serves
//! its vif (the firewall in the lab; sys-net directly in this module's
//! tests), one smoltcp interface holds its address(es), and a traffic
//! driver runs batches of [`Probe`]s on command.
//!
//! Qubes gives a client `10.137.0.x/32` and a gateway it reaches by ARP
//! (the firewall answers). smoltcp ignores ARP replies from outside the
//! interface's subnet, so the client's prefix is configurable and
//! [`AppVmConfig::qubes`] uses /24: the gateway is on-link and every other
//! destination goes through it, as in Qubes (other 10.137.0.x addresses
//! are ARPed for directly, which a Qubes firewall also answers).
//!
//! Every frame received is checked for ICMP errors ([`icmperr`]), which
//! end the probe whose flow they quote and are kept for
//! [`AppVm::icmp_errors`]; with [`AppVmConfig::capture`] set, received
//! frames are also kept for [`AppVm::captured`]. [`AppVm::send_raw`] puts a
//! hand-made frame on the wire (spoofing tests).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};
use xen::abi::DomId;
use xen::frame::FrameQueue;
use xen::gnttab::GrantTable;
use xen::sim::{DomainConfig, SimDomain, SimHost};

use super::device::{DeviceStats, SmolDevice};
use super::icmperr::{self, IcmpError};
use super::probe::{Ports, ProbeResult, Running};
use super::runtime::{smol_delay, smol_now, Services};
use super::{NetError, Probe, COMMAND_SLACK};

/// Qubes' MAC for every VM's vif.
pub const QUBES_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00];
/// ICMP errors and captured frames kept at most.
const KEEP: usize = 4096;
/// How long a finished TCP probe's socket may take to close.
const LINGER: Duration = Duration::from_secs(3);

/// What a client looks like.
#[derive(Clone, Debug)]
pub struct AppVmConfig {
    /// Domain name.
    pub name: String,
    /// Our IPv4 address and prefix.
    pub ipv4: Ipv4Cidr,
    /// The IPv4 default gateway.
    pub gateway: Ipv4Addr,
    /// Our IPv6 address and its default gateway, if any.
    pub ipv6: Option<(Ipv6Cidr, Ipv6Addr)>,
    /// The MAC used until netfront reads the toolstack's (`mac` key).
    pub mac: [u8; 6],
    /// Offloads netfront offers. Default: scatter-gather only (no GSO, no
    /// partial checksums: smoltcp computes every checksum; frames the
    /// backend sends with partial checksums are completed on receipt).
    pub features: netfront::Features,
    /// The vif to use (`device/vif/<devid>`).
    pub devid: u32,
    /// Received frames to keep for [`AppVm::captured`] (0: none).
    pub capture: usize,
    /// Packet pool pages.
    pub pool_pages: usize,
}

impl AppVmConfig {
    /// A Qubes client `addr` (/24, see the module doc) behind a firewall
    /// at `10.137.0.1`, IPv4 only.
    pub fn qubes(name: &str, addr: [u8; 4]) -> AppVmConfig {
        AppVmConfig {
            name: name.into(),
            ipv4: Ipv4Cidr::new(Ipv4Addr::from(addr), 24),
            gateway: Ipv4Addr::new(10, 137, 0, 1),
            ipv6: None,
            mac: QUBES_MAC,
            features: netfront::Features {
                sg: true,
                ..Default::default()
            },
            devid: 0,
            capture: 0,
            pool_pages: 512,
        }
    }
}

/// A client's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppVmStats {
    /// The link is up now.
    pub link_up: bool,
    /// Times the link came up.
    pub link_ups: u64,
    /// Probes finished.
    pub probes: u64,
    /// Raw frames sent.
    pub raw_sent: u64,
    /// Raw frames refused (pool or queue full).
    pub raw_refused: u64,
    /// ICMP errors received.
    pub icmp_errors: u64,
    /// The smoltcp device.
    pub device: DeviceStats,
}

enum Cmd {
    Run {
        probes: Vec<Probe>,
        timeout: Duration,
        reply: Sender<Vec<ProbeResult>>,
    },
    Raw(Vec<u8>),
    Stop,
}

#[derive(Default)]
struct Observed {
    stats: AppVmStats,
    mac: Option<[u8; 6]>,
    errors: Vec<IcmpError>,
    captured: Vec<Vec<u8>>,
    result: Option<Result<(), NetError>>,
}

/// Handle of a running client (see the module doc).
pub struct AppVm {
    cfg: AppVmConfig,
    domid: DomId,
    cmds: Sender<Cmd>,
    shared: Arc<Mutex<Observed>>,
    thread: Option<JoinHandle<()>>,
}

impl AppVm {
    /// Create the client domain and start it; its netfront connects once
    /// the toolstack attaches a vif (see [`attach`](super::attach)).
    pub fn start(host: &SimHost, cfg: AppVmConfig) -> Result<AppVm, NetError> {
        let dom = host
            .create_domain(&DomainConfig {
                ram_mib: (cfg.pool_pages / 256 + 16).max(32),
                ..DomainConfig::new(&cfg.name)
            })
            .map_err(|e| NetError::CreateDomain(e.to_string()))?;
        let shared = Arc::new(Mutex::new(Observed::default()));
        let (tx, rx) = mpsc::channel();
        let (c, s) = (cfg.clone(), shared.clone());
        let thread = host.spawn(&dom, move |d| {
            let r = run(d, &c, &s, &rx);
            if let Err(e) = &r {
                log::error!("{}: {e}", c.name);
            }
            lock(&s).result = Some(r);
        });
        Ok(AppVm {
            cfg,
            domid: dom.domid(),
            cmds: tx,
            shared,
            thread: Some(thread),
        })
    }

    /// The client domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The configuration.
    pub fn config(&self) -> &AppVmConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> AppVmStats {
        lock(&self.shared).stats
    }

    /// The MAC netfront uses (the toolstack's), once the link was up.
    pub fn mac(&self) -> Option<[u8; 6]> {
        lock(&self.shared).mac
    }

    /// Every ICMP error received so far (at most 4096 kept).
    pub fn icmp_errors(&self) -> Vec<IcmpError> {
        lock(&self.shared).errors.clone()
    }

    /// Take the frames captured so far (see [`AppVmConfig::capture`]).
    pub fn captured(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut lock(&self.shared).captured)
    }

    fn failure(&self) -> NetError {
        match &lock(&self.shared).result {
            Some(Err(e)) => e.clone(),
            _ => NetError::Stopped,
        }
    }

    /// Wait until netfront's link is up.
    pub fn wait_link_up(&self, timeout: Duration) -> Result<(), NetError> {
        let end = Instant::now() + timeout;
        while !self.stats().link_up {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(self.failure());
            }
            if Instant::now() >= end {
                return Err(NetError::Timeout("the AppVM's link"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Run `probes` concurrently, each with `timeout`; results in the
    /// probes' order. Batches run one after another.
    pub fn run(&self, probes: Vec<Probe>, timeout: Duration) -> Result<Vec<ProbeResult>, NetError> {
        let (reply, results) = mpsc::channel();
        self.cmds
            .send(Cmd::Run {
                probes,
                timeout,
                reply,
            })
            .map_err(|_| self.failure())?;
        // Earlier batches may be queued ahead: wait generously.
        results
            .recv_timeout(timeout * 4 + COMMAND_SLACK)
            .map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => NetError::Timeout("probe results"),
                mpsc::RecvTimeoutError::Disconnected => self.failure(),
            })
    }

    /// [`AppVm::run`] for one probe.
    pub fn probe(&self, probe: Probe, timeout: Duration) -> Result<ProbeResult, NetError> {
        self.run(vec![probe], timeout)?
            .pop()
            .ok_or(NetError::Stopped)
    }

    /// Send `frame` (Ethernet, as is) on the vif, past smoltcp.
    pub fn send_raw(&self, frame: Vec<u8>) -> Result<(), NetError> {
        self.cmds.send(Cmd::Raw(frame)).map_err(|_| self.failure())
    }

    /// Close netfront (state Closed), end the loop, destroy the domain.
    /// The vif's directories are the toolstack's to remove
    /// (`xen::sim::vif::detach_vif`).
    pub fn stop(mut self, host: &SimHost) -> Result<AppVmStats, NetError> {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        host.destroy_domain(self.domid);
        let mut o = lock(&self.shared);
        match o.result.take() {
            Some(Err(e)) => Err(e),
            _ => Ok(o.stats),
        }
    }
}

impl Drop for AppVm {
    /// Stops the loop (the domain stays: [`AppVm::stop`] destroys it).
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.cmds.send(Cmd::Stop);
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Observed>) -> std::sync::MutexGuard<'_, Observed> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A batch of probes in flight.
struct Batch {
    running: Vec<Option<Running>>,
    results: Vec<Option<ProbeResult>>,
    reply: Sender<Vec<ProbeResult>>,
}

fn run(
    d: SimDomain,
    cfg: &AppVmConfig,
    shared: &Mutex<Observed>,
    cmds: &Receiver<Cmd>,
) -> Result<(), NetError> {
    let (mut sv, pool) = Services::new(d.clone(), cfg.pool_pages)?;
    let mut gt =
        GrantTable::new(d, 8).map_err(|e| NetError::Setup("grant table", e.to_string()))?;
    let mut nf = netfront::Netfront::new(
        sv.ev.clone(),
        netfront::NetfrontConfig {
            devid: cfg.devid,
            features: cfg.features,
        },
    );
    nf.start(&mut sv.xs)
        .map_err(|e| NetError::Setup("netfront", e.to_string()))?;
    let mut dev = SmolDevice::new(pool);
    let mut icfg = Config::new(EthernetAddress(cfg.mac).into());
    icfg.random_seed = 0xa99_0000 ^ u64::from(sv.dom.domid());
    let mut iface = Interface::new(icfg, &mut dev, smol_now(sv.now()));
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::Ipv4(cfg.ipv4));
        if let Some((c, _)) = cfg.ipv6 {
            let _ = a.push(IpCidr::Ipv6(c));
        }
    });
    let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway);
    if let Some((_, gw)) = cfg.ipv6 {
        let _ = iface.routes_mut().add_default_ipv6_route(gw);
    }
    let v6_src = cfg.ipv6.map(|(c, _)| c.address());
    let mut sockets = SocketSet::new(Vec::new());
    let mut ports = Ports::new(sv.dom.domid());
    let mut batches: VecDeque<Batch> = VecDeque::new();
    let mut linger: Vec<(SocketHandle, u64)> = Vec::new();
    let mut rxq = FrameQueue::with_capacity(256);
    let mut wait_ports = Vec::with_capacity(4);
    let mut st = AppVmStats::default();
    let mut was_up = false;
    let mut new_errors: Vec<IcmpError> = Vec::new();
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let mut captured_total = 0usize;
    loop {
        let now = sv.now();
        let mut stop = false;
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Run {
                    probes,
                    timeout,
                    reply,
                }) => {
                    let mut running = Vec::with_capacity(probes.len());
                    let mut results = Vec::with_capacity(probes.len());
                    for p in probes {
                        match Running::start(
                            p,
                            &mut iface,
                            &mut sockets,
                            &mut ports,
                            now,
                            timeout,
                            v6_src,
                        ) {
                            Ok(r) => {
                                running.push(Some(r));
                                results.push(None);
                            }
                            Err(res) => {
                                running.push(None);
                                results.push(Some(res));
                            }
                        }
                    }
                    batches.push_back(Batch {
                        running,
                        results,
                        reply,
                    });
                }
                Ok(Cmd::Raw(f)) => {
                    if dev.inject(&f) {
                        st.raw_sent += 1;
                    } else {
                        st.raw_refused += 1;
                    }
                }
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => {
                    stop = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if stop {
            break;
        }
        sv.xs
            .handle_notification()
            .map_err(|e| NetError::Store(e.to_string()))?;
        while let Some(e) = sv.xs.poll_event() {
            nf.handle_watch(&mut sv.xs, &mut gt, dev.pool_mut(), &e);
        }
        nf.tick(&mut sv.xs, &mut gt, dev.pool_mut());
        let up = nf.link() == netfront::LinkState::Up;
        if up && !was_up {
            st.link_ups += 1;
            if let Some(m) = nf.mac() {
                iface.set_hardware_addr(EthernetAddress(m).into());
                lock(shared).mac = Some(m);
            }
        }
        if !up && was_up {
            dev.clear();
        }
        was_up = up;
        st.link_up = up;

        let mut moved = false;
        if up {
            if let Err(e) = nf.poll(&mut gt, dev.pool_mut(), &mut rxq) {
                log::info!("{}: {e}", cfg.name);
            }
            while let Some(f) = rxq.pop() {
                moved = true;
                dev.ingest_filtered(f, &mut |b| {
                    if let Some(e) = icmperr::parse(b) {
                        new_errors.push(e);
                    }
                    if captured_total < cfg.capture {
                        captured_total += 1;
                        captured.push(b.to_vec());
                    }
                    true
                });
            }
        }
        let smol = smol_now(now);
        iface.poll(smol, &mut dev, &mut sockets);
        st.icmp_errors += new_errors.len() as u64;
        // Step every running probe of the oldest batch first; a batch
        // finishes when all its probes have.
        for b in &mut batches {
            for (slot, res) in b.running.iter_mut().zip(b.results.iter_mut()) {
                let Some(r) = slot else { continue };
                if let Some(out) = r.step(&mut sockets, now, &new_errors) {
                    let h = r.handle();
                    if r.is_tcp() && sockets.get_mut::<tcp::Socket>(h).is_open() {
                        linger.push((h, now + LINGER.as_nanos() as u64));
                    } else {
                        sockets.remove(h);
                    }
                    *res = Some(out);
                    *slot = None;
                    st.probes += 1;
                }
            }
        }
        while batches
            .front()
            .is_some_and(|b| b.running.iter().all(Option::is_none))
        {
            let b = batches.pop_front().expect("front exists");
            // Counters first, so a caller woken by the results sees them.
            lock(shared).stats.probes = st.probes;
            let results = b.results.into_iter().flatten().collect();
            let _ = b.reply.send(results);
        }
        linger.retain(|&(h, until)| {
            let done = !sockets.get_mut::<tcp::Socket>(h).is_open() || now >= until;
            if done {
                sockets.remove(h);
            }
            !done
        });
        iface.poll(smol, &mut dev, &mut sockets);

        if up {
            while let Some(f) = dev.take_tx() {
                moved = true;
                if let Err(f) = nf.send(&mut gt, dev.pool_mut(), f) {
                    dev.untake_tx(f);
                    break;
                }
            }
            nf.flush();
        }
        {
            let mut o = lock(shared);
            o.stats = AppVmStats {
                device: dev.stats(),
                ..st
            };
            let room = KEEP.saturating_sub(o.errors.len());
            o.errors.extend(new_errors.drain(..).take(room));
            let room = KEEP.saturating_sub(o.captured.len());
            o.captured.extend(captured.drain(..).take(room));
        }
        new_errors.clear();
        if !moved && !nf.needs_poll() {
            wait_ports.extend(nf.port());
            sv.sleep(
                &mut wait_ports,
                smol_delay(iface.poll_delay(smol, &sockets)),
            );
        }
    }
    nf.stop(&mut sv.xs, &mut gt, dev.pool_mut());
    dev.clear();
    Ok(())
}
