//! The whole firewall under load on the simulated Xen: a client AppVM
//! sends to the internet through the firewall VM, and sys-net receives.
//!
//! Three domains, each in its own thread, wired as Qubes wires them (dom0's
//! QubesDB serves the firewall its configuration and the client's rules):
//!
//! - **client**: our netfront, sending frames from one or more flows
//!   (UDP, or TCP opened with a real handshake and then sent as GSO
//!   super-packets). Frames are built from per-flow header templates; the
//!   payload bytes are whatever the recycled pool pages hold, since nothing
//!   on the path reads them (checksums are partial, as a Linux sender's
//!   are). The client's own cost is thereby kept small: it is not what is
//!   measured.
//! - **firewall**: [`firewall::platform::Firewall`], the event loop the
//!   unikernel runs, unmodified: netback toward the client, engine (anti-
//!   spoofing, conntrack, NAT, rules), netfront toward sys-net.
//! - **sys-net**: our netback (it grant-copies every frame, as Linux
//!   netback does), answering ARP and TCP SYNs, checking that every frame
//!   arrives source-NATed to the firewall's uplink address, counting.
//!
//! The measurement window opens after a warm-up and spans `frames` frames
//! received by sys-net. Over it the report gives the firewall domain's
//! hypercalls, notifications and grant copies (from the simulator's
//! counters), and the heap allocations made inside its loop (counted by
//! `assert_no_alloc`, which the bench binary installs as the allocator).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_no_alloc::assert_no_alloc;
use firewall::engine::build::pseudo_v4;
use firewall::platform::{Firewall, FirewallConfig};
use qubesdb::sim::Dom0QubesDb;
use qubesdb::NetConfig;
use xen::evtchn::EventChannels;
use xen::frame::offload::{checksum_add, fold};
use xen::frame::{Checksum, Frame, FrameQueue, Gso, GsoType};
use xen::gnttab::GrantTable;
use xen::memory::pool::PagePool;
use xen::sim::vif::{self, VifSpec};
use xen::sim::{Counters, DomainConfig, SimDomain, SimHost, SimXen};
use xen::store::Xenstore;
use xen::Hypervisor;

/// The firewall's uplink address.
pub const FW_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 5);
/// sys-net's address (the firewall's gateway).
pub const SYSNET_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 1);
/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 137, 0, 9);
/// Where the client sends (an internet host behind sys-net).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The server port.
pub const SERVER_PORT: u16 = 5201;
/// The MAC of the firewall's client-side interface (Qubes' backend MAC).
const FW_CLIENT_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
/// The client's MAC (Qubes gives every frontend this one).
const CLIENT_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00];
/// sys-net's MAC on the firewall's uplink vif.
const SYSNET_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
/// TCP maximum segment size of the GSO frames (Ethernet MTU 1500).
const MSS: u16 = 1448;
const ETH: usize = 14;
const IP4: usize = 20;
const UDP: usize = 8;
const TCP: usize = 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct FwBenchSpec {
    /// Ethernet frame length. Up to 4096: UDP frames; above: TCP GSO
    /// super-packets (65535 is the netif maximum).
    pub size: usize,
    /// Frames measured (received by sys-net inside the window).
    pub frames: u64,
    /// Frames received before the window opens.
    pub warmup: u64,
    /// Flows the client spreads its frames over (round robin).
    pub flows: u16,
    /// Pages in each domain's packet pool.
    pub pool_pages: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

impl FwBenchSpec {
    /// `frames` frames of `size` bytes over 4 flows.
    pub fn new(size: usize, frames: u64) -> FwBenchSpec {
        FwBenchSpec {
            size,
            frames,
            warmup: (frames / 10).clamp(100, 20_000),
            flows: 4,
            pool_pages: 4096,
            timeout: Duration::from_secs(300),
        }
    }

    fn tcp(&self) -> bool {
        self.size > 4096
    }
}

/// What a run measured over its window.
#[derive(Clone, Debug, Default)]
pub struct FwBenchReport {
    /// Frames sys-net received in the window.
    pub frames: u64,
    /// Their bytes.
    pub frame_bytes: u64,
    /// The window's length.
    pub elapsed: Duration,
    /// The firewall domain's counters over the window.
    pub fw: Counters,
    /// Heap allocations inside the firewall's loop over the window.
    pub fw_allocs: u64,
    /// Firewall loop turns that moved frames, over the window.
    pub fw_batches: u64,
    /// Firewall sleeps over the window.
    pub fw_sleeps: u64,
    /// Frames sys-net saw that were not correctly source-NATed (should
    /// be zero: anything else is a firewall bug).
    pub not_natted: u64,
    /// Frames the engine dropped (any reason) inside the window.
    pub fw_drops: u64,
    /// The reasons, with their counts.
    pub fw_drop_reasons: Vec<(&'static str, u64)>,
    /// Flows in the firewall's table at the end.
    pub flows: usize,
    /// Bytes the engine's table spends per tracked flow.
    pub memory_per_flow: usize,
}

impl FwBenchReport {
    /// Frames per second.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Gbit/s of frame bytes.
    pub fn gbps(&self) -> f64 {
        self.frame_bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Set by sys-net while the window is open: the firewall counts.
    measuring: AtomicBool,
    fw_allocs: AtomicU64,
    fw_batches: AtomicU64,
    fw_sleeps: AtomicU64,
    error: Mutex<Option<String>>,
    report: Mutex<Option<FwBenchReport>>,
    fw_final: Mutex<Option<(firewall::engine::EngineStats, usize, usize)>>,
}

impl Shared {
    fn fail(&self, e: String) {
        let mut g = self.error.lock().unwrap();
        if g.is_none() {
            *g = Some(e);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Run one benchmark case on `host` (domains are created and destroyed
/// here).
pub fn run(host: &SimHost, spec: &FwBenchSpec) -> Result<FwBenchReport, String> {
    let shared = Arc::new(Shared::default());
    let xen = host.xen().clone();
    let ram = (spec.pool_pages / 256 + 16).max(32);
    let dc = |name: &str| DomainConfig {
        ram_mib: ram,
        ..DomainConfig::new(name)
    };
    let sysnet = host.create_domain(&dc("sys-net")).map_err(ctx("sys-net"))?;
    let fw_d = host.create_domain(&dc("sys-firewall")).map_err(ctx("fw"))?;
    let client = host.create_domain(&dc("work")).map_err(ctx("client"))?;
    let fw_dom = fw_d.domid();

    let qdb = Dom0QubesDb::start(host).map_err(ctx("dom0 QubesDB"))?;
    qdb.add_vm(fw_dom);
    qdb.with_db(fw_dom, |d| -> Result<(), String> {
        d.write("/name", b"sys-firewall").map_err(ctx("qdb"))?;
        d.write("/qubes-vm-type", b"ProxyVM").map_err(ctx("qdb"))?;
        d.set_net_config(&NetConfig {
            ip: Some(FW_UPLINK_IP),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            gateway: Some(SYSNET_IP),
            primary_dns: Some(Ipv4Addr::new(10, 139, 1, 1)),
            secondary_dns: Some(Ipv4Addr::new(10, 139, 1, 2)),
            netvm_gateway: Some(Ipv4Addr::new(10, 137, 0, 1)),
            netvm_netmask: Some(Ipv4Addr::new(255, 255, 255, 255)),
            netvm_primary_dns: Some(Ipv4Addr::new(10, 139, 1, 1)),
            netvm_secondary_dns: Some(Ipv4Addr::new(10, 139, 1, 2)),
            ..NetConfig::default()
        })
        .map_err(ctx("qdb"))?;
        d.set_connected_ips(&[CLIENT_IP], &[]).map_err(ctx("qdb"))?;
        d.set_client_rules(CLIENT_IP.into(), "drop", &["action=accept"])
            .map_err(ctx("qdb"))?;
        Ok(())
    })
    .ok_or("no QubesDB for the firewall")??;
    qdb.serve(host, fw_dom).map_err(ctx("QubesDB serve"))?;

    let mut threads = Vec::new();
    {
        let (s, sp, x) = (shared.clone(), spec.clone(), xen.clone());
        threads.push(host.spawn(&sysnet, move |d| {
            if let Err(e) = sysnet_side(d, &sp, &s, &x, fw_dom) {
                s.fail(format!("sys-net: {e}"));
            }
        }));
    }
    let mut uplink = VifSpec::new(fw_dom, sysnet.domid(), 0);
    uplink.ip = FW_UPLINK_IP.to_string();
    vif::attach_vif(host, &uplink).map_err(ctx("uplink vif"))?;
    {
        let mut cfg = FirewallConfig {
            pool_pages: spec.pool_pages,
            ..FirewallConfig::default()
        };
        cfg.engine.limits.max_flows = 4096;
        cfg.engine.limits.max_flows_per_client = 1024;
        let s = shared.clone();
        threads.push(host.spawn(&fw_d, move |d| {
            if let Err(e) = firewall_side(d, cfg, &s) {
                s.fail(format!("firewall: {e}"));
            }
        }));
    }
    {
        let (s, sp) = (shared.clone(), spec.clone());
        threads.push(host.spawn(&client, move |d| {
            if let Err(e) = client_side(d, &sp, &s) {
                s.fail(format!("client: {e}"));
            }
        }));
    }
    let mut cvif = VifSpec::new(client.domid(), fw_dom, 0);
    cvif.ip = CLIENT_IP.to_string();
    let attached = vif::attach_vif(host, &cvif).map_err(ctx("client vif"));

    let deadline = Instant::now() + spec.timeout;
    let outcome = attached.and_then(|_| loop {
        if shared.report.lock().unwrap().is_some() {
            break Ok(());
        }
        if let Some(e) = shared.error.lock().unwrap().clone() {
            break Err(e);
        }
        if Instant::now() > deadline {
            break Err("timed out".to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    });
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    for d in [client.domid(), fw_dom, sysnet.domid()] {
        host.destroy_domain(d);
    }
    vif::remove_vif(host, &cvif);
    vif::remove_vif(host, &uplink);
    outcome?;
    if let Some(e) = shared.error.lock().unwrap().clone() {
        return Err(e);
    }
    let mut r = shared.report.lock().unwrap().take().unwrap_or_default();
    if let Some((stats, flows, per_flow)) = shared.fw_final.lock().unwrap().take() {
        r.fw_drops = stats.total_drops();
        r.fw_drop_reasons = firewall::engine::Drop::ALL
            .iter()
            .filter(|&&d| stats.drops_for(d) > 0)
            .map(|&d| (d.name(), stats.drops_for(d)))
            .collect();
        r.flows = flows;
        r.memory_per_flow = per_flow;
    }
    Ok(r)
}

/// The firewall VM: the unikernel's loop, counting allocations inside it
/// while the window is open.
fn firewall_side(d: SimDomain, cfg: FirewallConfig, shared: &Shared) -> Result<(), String> {
    let mut fw = Firewall::start(d, cfg).map_err(|e| e.to_string())?;
    // Engine counters when the window opened and when it closed.
    let mut at_open: Option<firewall::engine::EngineStats> = None;
    let mut at_close: Option<firewall::engine::EngineStats> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.measuring.load(Ordering::Relaxed) {
            if at_open.is_none() {
                at_open = Some(fw.engine().stats().clone());
            }
            let a0 = assert_no_alloc::violation_count();
            let moved = assert_no_alloc(|| fw.step());
            if moved {
                shared.fw_batches.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.fw_sleeps.fetch_add(1, Ordering::Relaxed);
                assert_no_alloc(|| fw.sleep());
            }
            let a = assert_no_alloc::violation_count().saturating_sub(a0);
            shared.fw_allocs.fetch_add(u64::from(a), Ordering::Relaxed);
        } else {
            if at_open.is_some() && at_close.is_none() {
                at_close = Some(fw.engine().stats().clone());
            }
            if !fw.step() {
                fw.sleep();
            }
        }
    }
    let e = fw.engine();
    // Drops inside the window only (frames sent before the uplink came
    // up are no part of the measurement).
    let mut window = at_close.unwrap_or_else(|| e.stats().clone());
    if let Some(o) = &at_open {
        for (w, o) in window.drops.iter_mut().zip(o.drops.iter()) {
            *w -= o;
        }
    }
    *shared.fw_final.lock().unwrap() = Some((window, e.flow_count(), e.memory_per_flow()));
    Ok(())
}

/// Ethernet + IPv4 header (34 bytes) into the front of `h`.
fn eth_ip4(h: &mut [u8], dst_mac: [u8; 6], src_mac: [u8; 6], ip: (Ipv4Addr, Ipv4Addr, u8, usize)) {
    let (src, dst, proto, total) = ip;
    h[0..6].copy_from_slice(&dst_mac);
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut h[ETH..ETH + IP4];
    ip.fill(0);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = !fold(checksum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// One flow's frame template.
struct FlowTemplate {
    head: [u8; ETH + IP4 + TCP],
    head_len: usize,
    seq: u32,
}

fn template(spec: &FwBenchSpec, flow: u16) -> FlowTemplate {
    let mut head = [0u8; ETH + IP4 + TCP];
    let sport = 40_000 + flow;
    let tcp = spec.tcp();
    let l4 = if tcp { TCP } else { UDP };
    let total = spec.size - ETH;
    let proto = if tcp { 6 } else { 17 };
    eth_ip4(
        &mut head,
        FW_CLIENT_MAC,
        CLIENT_MAC,
        (CLIENT_IP, SERVER_IP, proto, total),
    );
    let l = &mut head[ETH + IP4..ETH + IP4 + l4];
    l[0..2].copy_from_slice(&sport.to_be_bytes());
    l[2..4].copy_from_slice(&SERVER_PORT.to_be_bytes());
    let pseudo = fold(pseudo_v4(
        &CLIENT_IP.octets(),
        &SERVER_IP.octets(),
        proto,
        (total - IP4) as u16,
    ));
    if tcp {
        l[12] = 5 << 4;
        l[13] = 0x18; // PSH ACK
        l[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        l[16..18].copy_from_slice(&pseudo.to_be_bytes());
    } else {
        l[4..6].copy_from_slice(&((total - IP4) as u16).to_be_bytes());
        l[6..8].copy_from_slice(&pseudo.to_be_bytes());
    }
    FlowTemplate {
        head,
        head_len: ETH + IP4 + l4,
        seq: 1_000_000 * u32::from(flow) + 1,
    }
}

/// A complete (fully checksummed) TCP segment without payload: the
/// handshake frames.
fn tcp_control(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
) -> [u8; ETH + IP4 + TCP] {
    let mut f = [0u8; ETH + IP4 + TCP];
    eth_ip4(&mut f, macs.0, macs.1, (src.0, dst.0, 6, IP4 + TCP));
    let t = &mut f[ETH + IP4..];
    t[0..2].copy_from_slice(&src.1.to_be_bytes());
    t[2..4].copy_from_slice(&dst.1.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let c = !fold(checksum_add(
        pseudo_v4(&src.0.octets(), &dst.0.octets(), 6, TCP as u16),
        &f[ETH + IP4..],
    ));
    f[ETH + IP4 + 16..ETH + IP4 + 18].copy_from_slice(&c.to_be_bytes());
    f
}

/// A frame of `len` bytes whose first bytes are `head` (the rest is what
/// the recycled pages hold).
fn frame_from(pool: &mut PagePool, head: &[u8], len: usize) -> Option<Frame> {
    if pool.available() < len.div_ceil(4096) + 32 {
        return None;
    }
    let mut f = Frame::new();
    let mut left = len;
    while left > 0 {
        let page = pool.alloc()?;
        let n = left.min(4096);
        if f.push(page, 0, n).is_err() {
            f.free(pool);
            return None;
        }
        left -= n;
    }
    f.write(pool, 0, head);
    Some(f)
}

fn client_side(d: SimDomain, spec: &FwBenchSpec, shared: &Shared) -> Result<(), String> {
    let ev = EventChannels::new(d.clone()).map_err(ctx("event channels"))?;
    let mut xs = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
    let mut gt = GrantTable::new(d.clone(), 8).map_err(ctx("grant table"))?;
    let mut pool = PagePool::new(&d, spec.pool_pages).map_err(ctx("pool"))?;
    let mut nf = netfront::Netfront::new(
        ev.clone(),
        netfront::NetfrontConfig {
            devid: 0,
            features: netfront::Features::ALL,
        },
    );
    nf.start(&mut xs).map_err(ctx("netfront start"))?;
    let mut flows: Vec<FlowTemplate> = (0..spec.flows.max(1)).map(|i| template(spec, i)).collect();
    // TCP: each flow is opened by a handshake (SYN until a SYN-ACK).
    let mut open: Vec<bool> = vec![!spec.tcp(); flows.len()];
    let mut syn_at = 0u64;
    let mut rxq = FrameQueue::with_capacity(256);
    let mut pending: Option<Frame> = None;
    let mut next = 0usize;
    let payload = spec.size - flows[0].head_len;
    let mut ports = Vec::with_capacity(4);
    while !shared.stop.load(Ordering::Relaxed) {
        xs.handle_notification().map_err(ctx("xenstore"))?;
        while let Some(e) = xs.poll_event() {
            nf.handle_watch(&mut xs, &mut gt, &mut pool, &e);
        }
        nf.tick(&mut xs, &mut gt, &mut pool);
        let mut moved = false;
        if nf.link() == netfront::LinkState::Up {
            nf.poll(&mut gt, &mut pool, &mut rxq)
                .map_err(ctx("netfront poll"))?;
            while let Some(f) = rxq.pop() {
                moved = true;
                let mut h = [0u8; ETH + IP4 + TCP];
                let n = f.read(&pool, 0, &mut h);
                f.free(&mut pool);
                // A SYN-ACK for one of our flows (back through the NAT).
                if n == h.len() && h[23] == 6 && h[ETH + IP4 + 13] == 0x12 {
                    let dport = u16::from_be_bytes([h[36], h[37]]);
                    let srv_seq = u32::from_be_bytes([h[38], h[39], h[40], h[41]]);
                    if let Some(i) = dport.checked_sub(40_000).map(usize::from) {
                        if i < flows.len() && !open[i] {
                            open[i] = true;
                            let ack = tcp_control(
                                (FW_CLIENT_MAC, CLIENT_MAC),
                                (CLIENT_IP, dport),
                                (SERVER_IP, SERVER_PORT),
                                flows[i].seq,
                                srv_seq.wrapping_add(1),
                                0x10,
                            );
                            flows[i].head[ETH + IP4 + 8..ETH + IP4 + 12]
                                .copy_from_slice(&srv_seq.wrapping_add(1).to_be_bytes());
                            if let Some(fr) = frame_from(&mut pool, &ack, ack.len()) {
                                let _ = nf.send(&mut gt, &mut pool, fr).map(|_| ());
                            }
                        }
                    }
                }
            }
            if open.iter().any(|o| !o) {
                let now = d.now_ns();
                if now >= syn_at {
                    syn_at = now + 200_000_000;
                    for (i, fl) in flows.iter().enumerate() {
                        if !open[i] {
                            let syn = tcp_control(
                                (FW_CLIENT_MAC, CLIENT_MAC),
                                (CLIENT_IP, 40_000 + i as u16),
                                (SERVER_IP, SERVER_PORT),
                                fl.seq.wrapping_sub(1),
                                0,
                                0x02,
                            );
                            if let Some(fr) = frame_from(&mut pool, &syn, syn.len()) {
                                let _ = nf.send(&mut gt, &mut pool, fr).map(|_| ());
                            }
                        }
                    }
                }
            } else {
                loop {
                    let f = match pending.take() {
                        Some(f) => f,
                        None => {
                            let fl = &mut flows[next];
                            if spec.tcp() {
                                let s = fl.seq.to_be_bytes();
                                fl.head[ETH + IP4 + 4..ETH + IP4 + 8].copy_from_slice(&s);
                            }
                            let Some(mut f) =
                                frame_from(&mut pool, &fl.head[..fl.head_len], spec.size)
                            else {
                                break;
                            };
                            f.csum = Checksum::Partial;
                            if spec.tcp() {
                                f.gso = Some(Gso {
                                    kind: GsoType::TcpV4,
                                    mss: MSS,
                                });
                                fl.seq = fl.seq.wrapping_add(payload as u32);
                            }
                            next = (next + 1) % flows.len();
                            f
                        }
                    };
                    if let Err(f) = nf.send(&mut gt, &mut pool, f) {
                        pending = Some(f);
                        break;
                    }
                    moved = true;
                }
            }
            nf.flush();
        }
        if !moved && !nf.needs_poll() {
            ports.clear();
            ports.push(xs.port());
            ports.extend(nf.port());
            let _ = ev.wait(&ports, Some(d.now_ns() + 5_000_000));
        }
    }
    if let Some(f) = pending {
        f.free(&mut pool);
    }
    Ok(())
}

/// What sys-net does with one received frame.
enum Seen {
    /// A data frame (UDP, or TCP with payload), correctly NATed or not.
    Data { natted: bool },
    /// Something to answer.
    Reply([u8; ETH + IP4 + TCP], usize),
    /// Anything else (the firewall's own chatter).
    Other,
}

fn inspect(h: &[u8], n: usize) -> Seen {
    if n < ETH + 28 {
        return Seen::Other;
    }
    let ethertype = u16::from_be_bytes([h[12], h[13]]);
    if ethertype == 0x0806 {
        // ARP request for sys-net's address: answer.
        let a = &h[ETH..];
        if a[6..8] == [0, 1] && a[24..28] == SYSNET_IP.octets() {
            let mut r = [0u8; ETH + IP4 + TCP];
            r[0..6].copy_from_slice(&h[6..12]);
            r[6..12].copy_from_slice(&SYSNET_MAC);
            r[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
            let o = &mut r[ETH..ETH + 28];
            o[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            o[6..8].copy_from_slice(&[0, 2]);
            o[8..14].copy_from_slice(&SYSNET_MAC);
            o[14..18].copy_from_slice(&SYSNET_IP.octets());
            o[18..28].copy_from_slice(&a[8..18]);
            return Seen::Reply(r, ETH + 28);
        }
        return Seen::Other;
    }
    if ethertype != 0x0800 || n < ETH + IP4 + UDP {
        return Seen::Other;
    }
    let ip = &h[ETH..];
    let natted = ip[12..16] == FW_UPLINK_IP.octets() && ip[16..20] == SERVER_IP.octets();
    match ip[9] {
        17 => Seen::Data { natted },
        6 if n >= ETH + IP4 + TCP => {
            let t = &ip[IP4..];
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if t[13] == 0x02 {
                // SYN: answer SYN-ACK to the (NATed) source.
                let sport = u16::from_be_bytes([t[0], t[1]]);
                let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
                let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&h[6..12]);
                let r = tcp_control(
                    (mac, SYSNET_MAC),
                    (SERVER_IP, SERVER_PORT),
                    (src, sport),
                    7_000,
                    seq.wrapping_add(1),
                    0x12,
                );
                Seen::Reply(r, r.len())
            } else if total > IP4 + TCP {
                Seen::Data { natted }
            } else {
                Seen::Other
            }
        }
        _ => Seen::Other,
    }
}

fn sysnet_side(
    d: SimDomain,
    spec: &FwBenchSpec,
    shared: &Shared,
    xen: &SimXen,
    fw_dom: xen::abi::DomId,
) -> Result<(), String> {
    let ev = EventChannels::new(d.clone()).map_err(ctx("event channels"))?;
    let mut xs = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
    let mut pool = PagePool::new(&d, spec.pool_pages).map_err(ctx("pool"))?;
    let mut nb = netback::Netback::new(
        ev.clone(),
        netback::NetbackConfig {
            features: netback::Features::ALL,
            ..Default::default()
        },
    );
    nb.start(&mut xs).map_err(ctx("netback start"))?;
    let mut vif = None;
    let mut rxq = FrameQueue::with_capacity(256);
    let mut ports = Vec::with_capacity(8);
    let mut seen = 0u64;
    let mut r = FwBenchReport::default();
    let mut window: Option<(Instant, Counters)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        xs.handle_notification().map_err(ctx("xenstore"))?;
        while let Some(e) = xs.poll_event() {
            nb.handle_watch(&mut xs, &mut pool, &e);
        }
        while let Some(e) = nb.next_event() {
            match e {
                netback::NetbackEvent::Connected(id) => vif = Some(id),
                netback::NetbackEvent::Disconnected(_) => vif = None,
            }
        }
        nb.tick(&mut xs, &mut pool, d.now_ns());
        let mut moved = false;
        if let Some(id) = vif {
            nb.poll(id, &mut pool, &mut rxq)
                .map_err(ctx("netback poll"))?;
            while let Some(f) = rxq.pop() {
                moved = true;
                let mut h = [0u8; ETH + IP4 + TCP];
                let n = f.read(&pool, 0, &mut h);
                let len = f.len() as u64;
                f.free(&mut pool);
                match inspect(&h, n) {
                    Seen::Data { natted } => {
                        seen += 1;
                        if window.is_some() {
                            r.frames += 1;
                            r.frame_bytes += len;
                            r.not_natted += u64::from(!natted);
                        } else if seen >= spec.warmup && r.frames == 0 {
                            let c = xen.counters(fw_dom).unwrap_or_default();
                            window = Some((Instant::now(), c));
                            shared.measuring.store(true, Ordering::SeqCst);
                        }
                    }
                    Seen::Reply(bytes, len) => {
                        if let Some(fr) = frame_from(&mut pool, &bytes[..len], len) {
                            let _ = nb.send(id, &mut pool, fr).map(|_| ());
                        }
                    }
                    Seen::Other => {}
                }
                if r.frames >= spec.frames.max(1) {
                    if let Some((t0, c0)) = window.take() {
                        shared.measuring.store(false, Ordering::SeqCst);
                        r.elapsed = t0.elapsed();
                        r.fw = xen.counters(fw_dom).unwrap_or_default().since(&c0);
                        r.fw_allocs = shared.fw_allocs.load(Ordering::SeqCst);
                        r.fw_batches = shared.fw_batches.load(Ordering::SeqCst);
                        r.fw_sleeps = shared.fw_sleeps.load(Ordering::SeqCst);
                        *shared.report.lock().unwrap() = Some(r.clone());
                    }
                }
            }
            nb.flush(&mut pool);
        }
        let busy = vif.is_some_and(|id| nb.needs_poll(id));
        if !moved && !busy {
            ports.clear();
            ports.push(xs.port());
            nb.ports(&mut ports);
            let _ = ev.wait(&ports, Some(d.now_ns() + 5_000_000));
        }
    }
    Ok(())
}

/// Plain memcpy of the same bytes, the reference: `frames` copies of
/// `size` bytes from one buffer into destinations spread over a
/// pool-sized region (so the caches see what the firewall's pool does).
/// Returns Gbit/s.
pub fn memcpy_gbps(size: usize, frames: u64, pool_pages: usize) -> f64 {
    let src = vec![0x5au8; size];
    let slots = (pool_pages * 4096 / size.max(1)).max(1);
    let mut dst = vec![0u8; slots * size];
    let t = Instant::now();
    for i in 0..frames as usize {
        let o = (i % slots) * size;
        dst[o..o + size].copy_from_slice(&src);
        std::hint::black_box(&mut dst[o]);
    }
    let el = t.elapsed().as_secs_f64().max(1e-9);
    std::hint::black_box(&dst);
    (frames as f64 * size as f64 * 8.0) / el / 1e9
}
