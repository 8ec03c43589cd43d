//! [`Internet`]: the sys-net domain. It serves the firewall's uplink vif
//! with `netback` and plays, behind it, router and every host of "the
//! internet" with one smoltcp interface:
//!
//! - the uplink gateway ([`InternetConfig::gateway`], IPv6
//!   [`InternetConfig::gateway6`]): answers ARP/NDP and pings;
//! - the Qubes virtual DNS servers ([`InternetConfig::dns`]): UDP 53,
//!   answered from [`InternetConfig::zone`] ([`dns::respond`]);
//! - the hosts ([`InternetConfig::hosts`]): the HTTP-like service
//!   ([`super::http`]) on [`InternetConfig::http_ports`], UDP echo on port 7, ping.
//!
//! Addresses not configured are dropped before smoltcp (see the parent
//! module doc). Frames from several vifs are bridged: replies go to the vif
//! the destination MAC was last seen on, broadcasts and unknown MACs to
//! all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpListenEndpoint, Ipv4Cidr, Ipv6Cidr};
use xen::abi::DomId;
use xen::frame::{Frame, FrameQueue};
use xen::sim::vif::{self, VifSpec};
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::xenbus::XenbusState;

use super::device::{DeviceStats, SmolDevice};
use super::dns::{self, Zone};
use super::http::{HttpServer, HttpStats};
use super::runtime::{smol_delay, smol_now, Services};
use super::{attach, NetError};

/// Qubes' MAC for the backend side of every vif.
pub const BACKEND_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
/// How long a stopping sys-net waits for its frontends to close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// What sys-net and its internet look like.
#[derive(Clone, Debug)]
pub struct InternetConfig {
    /// Domain name.
    pub name: String,
    /// Our MAC on every vif.
    pub mac: [u8; 6],
    /// The uplink gateway address and subnet (the firewall's uplink
    /// address is in it).
    pub gateway: Ipv4Cidr,
    /// The IPv6 gateway address and subnet, if any.
    pub gateway6: Option<Ipv6Cidr>,
    /// The virtual DNS server addresses.
    pub dns: Vec<IpAddr>,
    /// The internet hosts (HTTP, echo, ping).
    pub hosts: Vec<IpAddr>,
    /// Ports of the HTTP-like service on every host.
    pub http_ports: Vec<u16>,
    /// Listening sockets per host and port (concurrent connections).
    pub http_pool: usize,
    /// The DNS zone.
    pub zone: Zone,
    /// Offloads netback offers. Default: scatter-gather and checksum
    /// offload (partial checksums from the firewall are completed before
    /// smoltcp sees them), no GSO (GSO frames would be cut in software).
    pub features: netback::Features,
    /// Packet pool pages.
    pub pool_pages: usize,
}

impl Default for InternetConfig {
    fn default() -> Self {
        let ip = |s: &str| -> IpAddr { s.parse().expect("literal address") };
        InternetConfig {
            name: "sys-net".into(),
            mac: BACKEND_MAC,
            gateway: Ipv4Cidr::new(Ipv4Addr::new(10, 138, 0, 1), 24),
            gateway6: Some(Ipv6Cidr::new(
                Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1),
                64,
            )),
            dns: vec![ip("10.139.1.1"), ip("10.139.1.2")],
            hosts: vec![ip("198.51.100.10"), ip("203.0.113.7"), ip("2001:db8::10")],
            http_ports: vec![80, 443],
            http_pool: 8,
            zone: Zone::new(300)
                .with("example.com", &[ip("198.51.100.10"), ip("2001:db8::10")])
                .with("other.example", &[ip("203.0.113.7")]),
            features: netback::Features {
                sg: true,
                gso_tcpv4: false,
                gso_tcpv6: false,
                csum_offload: true,
                ipv6_csum_offload: true,
            },
            pool_pages: 1024,
        }
    }
}

/// sys-net's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InternetStats {
    /// The HTTP-like service.
    pub http: HttpStats,
    /// DNS queries received.
    pub dns_queries: u64,
    /// Of which answered NXDOMAIN.
    pub dns_nxdomain: u64,
    /// Of which not answered or answered FORMERR/NOTIMP.
    pub dns_bad: u64,
    /// UDP echo datagrams echoed.
    pub echo_datagrams: u64,
    /// Their bytes.
    pub echo_bytes: u64,
    /// ICMP/ICMPv6 echo requests that reached a configured address.
    pub pings: u64,
    /// Vifs connected now.
    pub vifs_connected: usize,
    /// Connections made since start.
    pub connects: u64,
    /// Frames that could not be handed to netback.
    pub tx_dropped: u64,
    /// The smoltcp device.
    pub device: DeviceStats,
}

enum Cmd {
    Stop,
}

struct Shared {
    stats: Mutex<InternetStats>,
    result: Mutex<Option<Result<(), NetError>>>,
}

/// Handle of a running sys-net (see the module doc).
pub struct Internet {
    cfg: InternetConfig,
    domid: DomId,
    cmds: Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    attached: Vec<VifSpec>,
}

impl Internet {
    /// Create the sys-net domain and start it. Its netback watches for
    /// vifs at once; attach them with [`Internet::attach`] (or
    /// [`attach`]).
    pub fn start(host: &SimHost, cfg: InternetConfig) -> Result<Internet, NetError> {
        let dom = host
            .create_domain(&DomainConfig {
                ram_mib: (cfg.pool_pages / 256 + 16).max(32),
                ..DomainConfig::new(&cfg.name)
            })
            .map_err(|e| NetError::CreateDomain(e.to_string()))?;
        let shared = Arc::new(Shared {
            stats: Mutex::new(InternetStats::default()),
            result: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let (c, s) = (cfg.clone(), shared.clone());
        let thread = host.spawn(&dom, move |d| {
            let r = run(d, &c, &s, &rx);
            if let Err(e) = &r {
                log::error!("{}: {e}", c.name);
            }
            *s.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
        Ok(Internet {
            cfg,
            domid: dom.domid(),
            cmds: tx,
            shared,
            thread: Some(thread),
            attached: Vec::new(),
        })
    }

    /// The sys-net domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The configuration.
    pub fn config(&self) -> &InternetConfig {
        &self.cfg
    }

    /// Attach vif `devid` of `frontend` (the firewall's uplink; `ip` its
    /// address as Qubes writes it) to this sys-net, and remember it for
    /// [`Internet::restart`].
    pub fn attach(
        &mut self,
        host: &SimHost,
        frontend: DomId,
        devid: u32,
        ip: &str,
    ) -> Result<VifSpec, NetError> {
        let spec = attach(host, frontend, self.domid, devid, ip)?;
        self.attached.push(spec.clone());
        Ok(spec)
    }

    /// The counters.
    pub fn stats(&self) -> InternetStats {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until `n` vifs are connected.
    pub fn wait_connected(&self, n: usize, timeout: Duration) -> Result<(), NetError> {
        let end = Instant::now() + timeout;
        while self.stats().vifs_connected < n {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(self.failure());
            }
            if Instant::now() >= end {
                return Err(NetError::Timeout("sys-net vifs to connect"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn failure(&self) -> NetError {
        match &*self.shared.result.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Err(e)) => e.clone(),
            _ => NetError::Stopped,
        }
    }

    /// Shut sys-net down as Linux does: every vif's backend state goes
    /// Closing then Closed (netback's own close path), the frontends get
    /// up to 3 s to close, the domain is destroyed and the vif directories
    /// it served through [`Internet::attach`] are removed, as libxl does
    /// for a dead backend. Returns the final counters and the vifs that
    /// were attached.
    pub fn stop(mut self, host: &SimHost) -> Result<(InternetStats, Vec<VifSpec>), NetError> {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        host.destroy_domain(self.domid);
        for spec in &self.attached {
            vif::remove_vif(host, spec);
        }
        let stats = self.stats();
        let r = self
            .shared
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match r {
            Some(Err(e)) => Err(e),
            _ => Ok((stats, std::mem::take(&mut self.attached))),
        }
    }

    /// [`Internet::stop`], then a new sys-net with the same configuration
    /// (a new domain id), with every vif re-attached to it.
    pub fn restart(self, host: &SimHost) -> Result<Internet, NetError> {
        let cfg = self.cfg.clone();
        let (_, specs) = self.stop(host)?;
        let mut inet = Internet::start(host, cfg)?;
        for s in specs {
            inet.attach(host, s.frontend, s.devid, &s.ip)?;
        }
        Ok(inet)
    }
}

impl Drop for Internet {
    /// Stops the domain's loop (without destroying the domain: that needs
    /// the host; use [`Internet::stop`]).
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.cmds.send(Cmd::Stop);
            let _ = t.join();
        }
    }
}

/// Everything the ingress filter checks and counts.
struct Filter {
    mine: Vec<IpAddr>,
    pings: u64,
}

impl Filter {
    /// Keep ARP, multicast/broadcast and packets to configured addresses.
    fn keep(&mut self, f: &[u8]) -> bool {
        let Some(ty) = f.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return false;
        };
        let (dst, icmp_echo) = match ty {
            0x0806 => return true,
            0x0800 if f.len() >= 34 => {
                let d = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
                if d.is_multicast() || d.is_broadcast() {
                    return true;
                }
                let ihl = usize::from(f[14] & 0xf) * 4;
                (IpAddr::V4(d), f[23] == 1 && f.get(14 + ihl) == Some(&8))
            }
            0x86dd if f.len() >= 54 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&f[38..54]);
                let d = Ipv6Addr::from(o);
                if d.is_multicast() {
                    return true;
                }
                (IpAddr::V6(d), f[20] == 58 && f.get(54) == Some(&128))
            }
            _ => return false,
        };
        let keep = self.mine.contains(&dst);
        if keep && icmp_echo {
            self.pings += 1;
        }
        keep
    }
}

struct Udp {
    dns: Vec<SocketHandle>,
    echo: SocketHandle,
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * 1024]),
    )
}

fn open_udp(sockets: &mut SocketSet<'static>, cfg: &InternetConfig) -> Result<Udp, NetError> {
    let mut dns = Vec::new();
    for a in &cfg.dns {
        let mut s = udp_socket();
        s.bind(IpListenEndpoint {
            addr: Some(IpAddress::from(*a)),
            port: 53,
        })
        .map_err(|e| NetError::Setup("DNS socket", e.to_string()))?;
        dns.push(sockets.add(s));
    }
    let mut s = udp_socket();
    s.bind(7)
        .map_err(|e| NetError::Setup("echo socket", e.to_string()))?;
    Ok(Udp {
        dns,
        echo: sockets.add(s),
    })
}

/// Answer queued DNS queries and echo datagrams.
fn serve_udp(sockets: &mut SocketSet<'static>, u: &Udp, zone: &Zone, st: &mut InternetStats) {
    let mut buf = vec![0u8; 32 * 1024];
    for &h in &u.dns {
        let s = sockets.get_mut::<udp::Socket>(h);
        while let Ok((n, meta)) = s.recv_slice(&mut buf) {
            st.dns_queries += 1;
            match dns::respond(zone, &buf[..n]) {
                Some(r) => {
                    let rcode = r.get(3).map_or(0, |b| b & 0xf);
                    if rcode == dns::RCODE_NXDOMAIN {
                        st.dns_nxdomain += 1;
                    } else if rcode != dns::RCODE_NOERROR {
                        st.dns_bad += 1;
                    }
                    let _ = s.send_slice(&r, meta.endpoint);
                }
                None => st.dns_bad += 1,
            }
        }
    }
    let s = sockets.get_mut::<udp::Socket>(u.echo);
    while let Ok((n, meta)) = s.recv_slice(&mut buf) {
        st.echo_datagrams += 1;
        st.echo_bytes += n as u64;
        let reply = udp::UdpMetadata {
            endpoint: meta.endpoint,
            local_address: meta.local_address,
            meta: Default::default(),
        };
        let _ = s.send_slice(&buf[..n], reply);
    }
}

fn mac_at(f: &Frame, dev: &mut SmolDevice, at: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    f.read(dev.pool_mut(), at, &mut m);
    m
}

fn run(
    d: SimDomain,
    cfg: &InternetConfig,
    shared: &Shared,
    cmds: &Receiver<Cmd>,
) -> Result<(), NetError> {
    let (mut sv, pool) = Services::new(d, cfg.pool_pages)?;
    let mut nb = netback::Netback::new(
        sv.ev.clone(),
        netback::NetbackConfig {
            features: cfg.features,
            ..Default::default()
        },
    );
    nb.start(&mut sv.xs)
        .map_err(|e| NetError::Setup("netback", e.to_string()))?;
    let mut dev = SmolDevice::new(pool);
    let mut icfg = Config::new(EthernetAddress(cfg.mac).into());
    icfg.random_seed = 0x5eed_0000 ^ u64::from(sv.dom.domid());
    let mut iface = Interface::new(icfg, &mut dev, smol_now(sv.now()));
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::Ipv4(cfg.gateway));
        if let Some(g6) = cfg.gateway6 {
            let _ = a.push(IpCidr::Ipv6(g6));
        }
    });
    // "Any IP": accept every destination routed via one of our addresses.
    iface.set_any_ip(true);
    let _ = iface
        .routes_mut()
        .add_default_ipv4_route(cfg.gateway.address());
    if let Some(g6) = cfg.gateway6 {
        let _ = iface.routes_mut().add_default_ipv6_route(g6.address());
    }
    let mut mine = vec![IpAddr::V4(cfg.gateway.address())];
    mine.extend(cfg.gateway6.map(|g| IpAddr::V6(g.address())));
    mine.extend(cfg.dns.iter().copied());
    mine.extend(cfg.hosts.iter().copied());
    let mut filter = Filter { mine, pings: 0 };

    let mut sockets = SocketSet::new(Vec::new());
    let endpoints: Vec<IpListenEndpoint> = cfg
        .hosts
        .iter()
        .flat_map(|h| {
            cfg.http_ports.iter().map(move |&port| IpListenEndpoint {
                addr: Some(IpAddress::from(*h)),
                port,
            })
        })
        .collect();
    let mut http = HttpServer::new(&mut sockets, &endpoints, cfg.http_pool.max(1));
    let udp = open_udp(&mut sockets, cfg)?;

    let mut st = InternetStats::default();
    let mut vifs: Vec<netback::VifId> = Vec::new();
    let mut bridge: HashMap<[u8; 6], netback::VifId> = HashMap::new();
    let mut rxq = FrameQueue::with_capacity(256);
    let mut ports = Vec::with_capacity(8);
    let mut stop_by: Option<u64> = None;
    loop {
        match cmds.try_recv() {
            Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) if stop_by.is_none() => {
                // Linux netback on shutdown: Closing, then Closed once the
                // frontend has seen it; netback handles a state of Closing
                // written into its directory exactly so.
                for v in nb.vifs() {
                    let dir = netback::backend_dir(v.id.domid, v.id.devid);
                    let _ = sv
                        .xs
                        .write(&format!("{dir}/state"), XenbusState::Closing.as_value());
                }
                stop_by = Some(sv.now() + CLOSE_WAIT.as_nanos() as u64);
            }
            _ => {}
        }
        sv.xs
            .handle_notification()
            .map_err(|e| NetError::Store(e.to_string()))?;
        while let Some(e) = sv.xs.poll_event() {
            nb.handle_watch(&mut sv.xs, dev.pool_mut(), &e);
        }
        while let Some(e) = nb.next_event() {
            match e {
                netback::NetbackEvent::Connected(id) => {
                    vifs.push(id);
                    st.connects += 1;
                }
                netback::NetbackEvent::Disconnected(id) => {
                    vifs.retain(|v| *v != id);
                    bridge.retain(|_, v| *v != id);
                }
            }
        }
        let now = sv.now();
        nb.tick(&mut sv.xs, dev.pool_mut(), now);
        if let Some(t) = stop_by {
            let closed = nb.vifs().all(|v| v.state == XenbusState::Closed);
            if closed || now >= t {
                break;
            }
        }

        let mut moved = false;
        for &id in &vifs {
            if let Err(e) = nb.poll(id, dev.pool_mut(), &mut rxq) {
                log::info!("{}: vif {id}: {e}", cfg.name);
            }
            while let Some(f) = rxq.pop() {
                moved = true;
                bridge.insert(mac_at(&f, &mut dev, 6), id);
                dev.ingest_filtered(f, &mut |b| filter.keep(b));
            }
        }
        let smol = smol_now(now);
        iface.poll(smol, &mut dev, &mut sockets);
        http.serve(&mut sockets);
        serve_udp(&mut sockets, &udp, &cfg.zone, &mut st);
        iface.poll(smol, &mut dev, &mut sockets);

        while let Some(f) = dev.take_tx() {
            moved = true;
            let dst = mac_at(&f, &mut dev, 0);
            let target = bridge.get(&dst).copied().filter(|_| dst[0] & 1 == 0);
            let outs: Vec<netback::VifId> = match target {
                Some(id) => vec![id],
                None => vifs.clone(),
            };
            let Some((&last, rest)) = outs.split_last() else {
                f.free(dev.pool_mut());
                continue;
            };
            if rest.iter().chain([&last]).any(|&id| nb.queued(id) >= 255) {
                // A full rx queue: retry after the next flush.
                dev.untake_tx(f);
                break;
            }
            for &id in rest {
                let bytes = f.to_vec(dev.pool_mut());
                if let Ok(c) = Frame::from_bytes(dev.pool_mut(), &bytes) {
                    if let Err(c) = nb.send(id, dev.pool_mut(), c) {
                        c.free(dev.pool_mut());
                        st.tx_dropped += 1;
                    }
                }
            }
            if let Err(f) = nb.send(last, dev.pool_mut(), f) {
                f.free(dev.pool_mut());
                st.tx_dropped += 1;
            }
        }
        nb.flush(dev.pool_mut());

        st.http = http.stats();
        st.pings = filter.pings;
        st.vifs_connected = vifs.len();
        st.device = dev.stats();
        *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = st;

        let busy = vifs.iter().any(|&id| nb.needs_poll(id)) || dev.has_rx() || dev.has_tx();
        if !moved && !busy {
            nb.ports(&mut ports);
            sv.sleep(&mut ports, smol_delay(iface.poll_delay(smol, &sockets)));
        }
    }
    dev.clear();
    Ok(())
}
