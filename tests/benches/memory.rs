//! Benchmark: how much memory the firewall needs in a 32 MiB VM serving
//! 50 clients with 20,000 tracked flows.
//!
//! `cargo bench -p integration-tests --bench memory [-- --image VMLINUZ]`
//! (`make bench-memory`). Not a timed test: it prints figures.
//!
//! # What is measured, and how
//!
//! On PVH the kernel gives all RAM after its image to one `talc` heap
//! (`xen/src/pvh/rt.rs`), and guest pages (the packet pool, the uplink's
//! rings) are page-aligned allocations from that same heap
//! (`Pvh::alloc_pages`). In `xen::sim` guest pages come from the simulated
//! domain's RAM instead, and the simulator's own bookkeeping runs on the
//! calling thread. So this benchmark:
//!
//! - installs a global allocator that sends every allocation made *by the
//!   firewall's thread* to a `talc` heap with the kernel's settings (the
//!   same `TalcLock<SpinMutex<()>, Manual>` over one claimed region), and
//!   everything else (other domains, the simulator, this harness) to the
//!   system allocator; a free goes wherever its address lies;
//! - runs the firewall on a `Platform` wrapper ([`Guest`]) that delegates
//!   to the simulated domain but (a) marks every hypercall as "outside the
//!   guest", so the simulator's allocations are not charged to the
//!   firewall, and (b) mirrors every `alloc_pages` with an allocation of
//!   the same layout from the talc heap, as `Pvh::alloc_pages` makes;
//! - runs the firewall's thread on a 256 KiB stack, the size of the PVH
//!   boot stack (the simulator's hypercall code runs on it too, so this is
//!   a conservative check);
//! - builds the host as the lab does (dom0 with QubesDB, sys-net with its
//!   smoltcp internet), attaches 50 light clients (bare netfronts driven
//!   from the main thread, no TCP/IP stack) and has each open 400 UDP
//!   flows to an address sys-net never answers (20,000 flows, unreplied, so
//!   nothing expires during the run: unreplied UDP lives 30 s).
//!
//! Each case runs in a child process (a fresh heap each): first with a
//! heap too large to run out (what the firewall *needs*), then with
//! exactly the heap a 32 MiB VM has (32 MiB minus the end of the kernel
//! image, read from the ELF given with `--image`; Xen's PVH memory map for
//! `memory=32` is one RAM region ending at 32 MiB) with the default
//! configuration and with the largest packet pool that leaves a margin.
//! An allocation the exact-size heap cannot serve falls back to the system
//! allocator and is counted: on PVH it would have failed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firewall::engine::build::build_udp;
use firewall::engine::conntrack::{ConnTrack, Limits};
use firewall::engine::CLIENT_SIDE_MAC;
use firewall::lab::net::{Internet, InternetConfig};
use firewall::platform::{Firewall, FirewallConfig};
use qubesdb::sim::Dom0QubesDb;
use qubesdb::NetConfig;
use xen::abi::DomId;
use xen::evtchn::EventChannels;
use xen::frame::{Frame, FrameQueue};
use xen::gnttab::GrantTable;
use xen::hypervisor::{
    ConsoleIoOp, EvtchnOp, GnttabOp, HvResult, HvmOp, MemoryOp, SchedOp, VcpuOp,
};
use xen::memory::pool::PagePool;
use xen::memory::{Gfn, GuestMemory, SharedMem};
use xen::sim::vif::{self, VifSpec};
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::Hypervisor;

// ---------------------------------------------------------------------------
// The allocator.

type Heap = talc::TalcLock<spin::mutex::SpinMutex<()>, talc::source::Manual>;

/// The firewall's heap (what the PVH kernel has after its image).
static HEAP: Heap = Heap::new(talc::source::Manual);
static ARENA_BASE: AtomicUsize = AtomicUsize::new(0);
static ARENA_END: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the firewall's thread: its allocations go to [`HEAP`].
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    /// Set while the simulator runs a hypercall for the firewall.
    static OUTSIDE: Cell<bool> = const { Cell::new(false) };
    /// Set while [`Guest`] mirrors guest pages.
    static PAGES: Cell<bool> = const { Cell::new(false) };
}

/// Requested bytes live in the heap: Rust objects, guest pages; peaks.
static RUST_LIVE: AtomicUsize = AtomicUsize::new(0);
static RUST_PEAK: AtomicUsize = AtomicUsize::new(0);
static PAGES_LIVE: AtomicUsize = AtomicUsize::new(0);
static PAGES_PEAK: AtomicUsize = AtomicUsize::new(0);
static BOTH_PEAK: AtomicUsize = AtomicUsize::new(0);
/// Fewest free bytes the heap ever had (its high-water mark, with talc's
/// own overhead and alignment padding).
static MIN_FREE: AtomicUsize = AtomicUsize::new(usize::MAX);
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
/// Allocations the heap could not serve (served by the system instead).
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);
static OVERFLOW_BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn flag(f: &'static std::thread::LocalKey<Cell<bool>>) -> bool {
    f.try_with(Cell::get).unwrap_or(false)
}

/// Whether an allocation made now belongs to the firewall's heap.
fn to_heap() -> bool {
    flag(&COUNTED) && !flag(&OUTSIDE)
}

fn in_heap(p: *mut u8) -> bool {
    let a = p as usize;
    a >= ARENA_BASE.load(Relaxed) && a < ARENA_END.load(Relaxed)
}

fn account(grow: usize, shrink: usize) {
    let (live, peak) = if flag(&PAGES) {
        (&PAGES_LIVE, &PAGES_PEAK)
    } else {
        (&RUST_LIVE, &RUST_PEAK)
    };
    let now = if grow >= shrink {
        live.fetch_add(grow - shrink, Relaxed) + grow - shrink
    } else {
        live.fetch_sub(shrink - grow, Relaxed) - (shrink - grow)
    };
    peak.fetch_max(now, Relaxed);
    BOTH_PEAK.fetch_max(RUST_LIVE.load(Relaxed) + PAGES_LIVE.load(Relaxed), Relaxed);
}

fn note_free(free: usize) {
    MIN_FREE.fetch_min(free, Relaxed);
}

fn overflow(size: usize) {
    OVERFLOWS.fetch_add(1, Relaxed);
    OVERFLOW_BYTES.fetch_add(size as u64, Relaxed);
}

struct Routed;

// SAFETY: every pointer handed out comes from `HEAP` (inside the claimed
// arena) or from `System`, and is returned to the one it came from, chosen
// by address; layouts are passed through unchanged.
unsafe impl GlobalAlloc for Routed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if to_heap() {
            ALLOCS.fetch_add(1, Relaxed);
            let mut h = HEAP.lock();
            // SAFETY: `GlobalAlloc` callers never pass a zero size.
            if let Some(p) = unsafe { h.allocate(layout) } {
                let free = h.counters().available_bytes;
                drop(h);
                note_free(free);
                account(layout.size(), 0);
                return p.as_ptr();
            }
            drop(h);
            overflow(layout.size());
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_heap(ptr) {
            // SAFETY: `ptr` came from `HEAP` (it lies in its arena) with
            // this layout.
            unsafe { HEAP.lock().deallocate(ptr, layout) };
            account(0, layout.size());
        } else {
            // SAFETY: not in the arena, so it came from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` forms a valid layout
        // with the old alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if in_heap(ptr) {
            let mut h = HEAP.lock();
            // SAFETY: `ptr` is a live allocation of `HEAP` with `layout`.
            if unsafe { h.try_realloc_in_place(ptr, layout, new_size) } {
                let free = h.counters().available_bytes;
                drop(h);
                note_free(free);
                account(new_size, layout.size());
                return ptr;
            }
            // SAFETY: non-zero size (caller's contract).
            let moved = unsafe { h.allocate(new_layout) };
            let new = match moved {
                Some(p) => p.as_ptr(),
                None => {
                    overflow(new_size);
                    // SAFETY: a valid non-zero layout.
                    unsafe { System.alloc(new_layout) }
                }
            };
            if new.is_null() {
                return new;
            }
            // SAFETY: both are live and distinct; copy the common prefix.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                h.deallocate(ptr, layout);
            }
            let free = h.counters().available_bytes;
            drop(h);
            note_free(free);
            if in_heap(new) {
                account(new_size, layout.size());
            } else {
                account(0, layout.size());
            }
            new
        } else if to_heap() {
            // A system block grown by the firewall moves into its heap, where
            // every allocation lives on PVH.
            // SAFETY: a valid non-zero layout.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both live and distinct; `ptr` is a system block.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    System.dealloc(ptr, layout);
                }
            }
            new
        } else {
            // SAFETY: forwarded contract (`ptr` is a system block).
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: Routed = Routed;

/// Give the firewall a heap of `size` bytes (page aligned, as on PVH).
fn claim_heap(size: usize) {
    let layout = Layout::from_size_align(size, 4096).expect("heap layout");
    // SAFETY: non-zero size; the block is never freed (the process ends).
    let base = unsafe { System.alloc(layout) };
    assert!(!base.is_null(), "no host memory for a {size}-byte heap");
    ARENA_BASE.store(base as usize, Relaxed);
    ARENA_END.store(base as usize + size, Relaxed);
    let mut h = HEAP.lock();
    // SAFETY: the block is ours, unused and lives as long as the process.
    let r = unsafe { h.claim(base, size) };
    assert!(r.is_some(), "talc refused the heap");
    CLAIMED.store(h.counters().claimed_bytes, Relaxed);
    MIN_FREE.store(h.counters().available_bytes, Relaxed);
}

/// The heap's state now.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rust: usize,
    pages: usize,
    /// Claimed minus free: objects, pages and talc's overhead.
    used: usize,
}

fn mem_now() -> Mem {
    let h = HEAP.lock();
    let c = h.counters();
    Mem {
        rust: RUST_LIVE.load(Relaxed),
        pages: PAGES_LIVE.load(Relaxed),
        used: c.claimed_bytes - c.available_bytes,
    }
}

// ---------------------------------------------------------------------------
// The firewall's platform: the simulated domain, as PVH would charge it.

/// Runs `f` as a hypercall: the simulator's allocations are not the guest's.
fn outside<R>(f: impl FnOnce() -> R) -> R {
    let was = OUTSIDE.with(|o| o.replace(true));
    let r = f();
    OUTSIDE.with(|o| o.set(was));
    r
}

fn as_pages<R>(f: impl FnOnce() -> R) -> R {
    PAGES.with(|p| p.set(true));
    let r = f();
    PAGES.with(|p| p.set(false));
    r
}

/// Mirrors of guest pages: (gfn, heap address, pages).
type Mirrors = Arc<Mutex<Vec<(u64, usize, usize)>>>;

#[derive(Clone)]
struct Guest {
    dom: SimDomain,
    mirrors: Mirrors,
}

impl Hypervisor for Guest {
    fn memory_op(&self, op: MemoryOp<'_>) -> HvResult {
        outside(|| self.dom.memory_op(op))
    }
    fn grant_table_op(&self, op: GnttabOp<'_>) -> HvResult {
        outside(|| self.dom.grant_table_op(op))
    }
    fn event_channel_op(&self, op: EvtchnOp<'_>) -> HvResult {
        outside(|| self.dom.event_channel_op(op))
    }
    fn sched_op(&self, op: SchedOp<'_>) -> HvResult {
        outside(|| self.dom.sched_op(op))
    }
    fn hvm_op(&self, op: HvmOp<'_>) -> HvResult {
        outside(|| self.dom.hvm_op(op))
    }
    fn vcpu_op(&self, op: VcpuOp<'_>) -> HvResult {
        outside(|| self.dom.vcpu_op(op))
    }
    fn console_io(&self, op: ConsoleIoOp<'_>) -> HvResult {
        outside(|| self.dom.console_io(op))
    }
    fn now_ns(&self) -> u64 {
        self.dom.now_ns()
    }
    fn shared_info(&self) -> Option<(Gfn, SharedMem)> {
        outside(|| self.dom.shared_info())
    }
}

fn page_layout(n: usize) -> Option<Layout> {
    Layout::from_size_align(n.checked_mul(4096)?, 4096).ok()
}

impl GuestMemory for Guest {
    fn alloc_pages(&self, n: usize) -> Option<Gfn> {
        let layout = page_layout(n)?;
        // What `Pvh::alloc_pages` does: a zeroed, page-aligned heap block.
        // SAFETY: a non-zero-sized layout.
        let mirror = as_pages(|| unsafe { std::alloc::alloc_zeroed(layout) });
        if mirror.is_null() {
            return None;
        }
        let Some(gfn) = outside(|| self.dom.alloc_pages(n)) else {
            // SAFETY: just allocated with this layout.
            as_pages(|| unsafe { std::alloc::dealloc(mirror, layout) });
            return None;
        };
        outside(|| {
            self.mirrors
                .lock()
                .unwrap()
                .push((gfn.0, mirror as usize, n))
        });
        Some(gfn)
    }

    fn free_pages(&self, gfn: Gfn, n: usize) {
        let m = outside(|| {
            let mut v = self.mirrors.lock().unwrap();
            let i = v.iter().position(|e| e.0 == gfn.0)?;
            Some(v.swap_remove(i))
        });
        if let Some((_, p, pages)) = m {
            let layout = page_layout(pages).expect("layout of a live mirror");
            // SAFETY: allocated in `alloc_pages` with this layout.
            as_pages(|| unsafe { std::alloc::dealloc(p as *mut u8, layout) });
        }
        outside(|| self.dom.free_pages(gfn, n))
    }

    fn alloc_hole(&self, n: usize) -> Option<Gfn> {
        outside(|| self.dom.alloc_hole(n))
    }

    fn free_hole(&self, gfn: Gfn, n: usize) {
        outside(|| self.dom.free_hole(gfn, n))
    }

    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        outside(|| self.dom.pages(gfn, n))
    }
}

// ---------------------------------------------------------------------------
// The scenario.

const CLIENTS: usize = 50;
const FIRST_STEP: usize = 10;
const FLOWS_PER_CLIENT: usize = 400;
/// sys-net's internet has no host here: flows stay unreplied and silent.
const SILENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const FW_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 5);
const SYSNET_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 1);
const FW_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 137, 0, 1);
const DNS1: Ipv4Addr = Ipv4Addr::new(10, 139, 1, 1);
const DNS2: Ipv4Addr = Ipv4Addr::new(10, 139, 1, 2);
/// A typical short rule set (policy drop), as Qubes Manager writes it.
const RULES: &[&str] = &[
    "action=accept proto=tcp dstports=80-80",
    "action=accept proto=tcp dstports=443-443",
    "action=accept specialtarget=dns",
    "action=accept proto=icmp",
    "action=accept proto=udp",
];
const WAIT: Duration = Duration::from_secs(30);
/// Frames in the PVH hole window (`xen::pvh::HOLE_PAGES`, 1 GiB).
const PVH_HOLE_PAGES: usize = 0x4_0000;

fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 137, 0, 10 + i as u8)
}

/// What the firewall's thread publishes after every turn (no allocation).
#[derive(Default)]
struct Published {
    up: AtomicBool,
    clients: AtomicUsize,
    flows: AtomicUsize,
    stop: AtomicBool,
}

/// One light client: a netfront and nothing above it.
struct Client {
    xs: Xenstore<SimDomain>,
    gt: GrantTable<SimDomain>,
    pool: PagePool,
    nf: netfront::Netfront<SimDomain>,
    rxq: FrameQueue,
    queued: usize,
    sent: usize,
    ip: Ipv4Addr,
}

impl Client {
    fn start(host: &SimHost, fw: DomId, i: usize) -> Result<Client, String> {
        let d = host
            .create_domain(&DomainConfig {
                ram_mib: 4,
                ..DomainConfig::new(&format!("client{i}"))
            })
            .map_err(|e| format!("client domain: {e}"))?;
        let ip = client_ip(i);
        let mut spec = VifSpec::new(d.domid(), fw, 0);
        spec.ip = ip.to_string();
        vif::attach_vif(host, &spec).map_err(|e| format!("client vif: {e}"))?;
        let ev = EventChannels::new(d.clone()).map_err(|e| e.to_string())?;
        let mut xs = Xenstore::from_params(ev.clone()).map_err(|e| e.to_string())?;
        let gt = GrantTable::new(d.clone(), 2).map_err(|e| e.to_string())?;
        let pool = PagePool::new(&d, 600).map_err(|e| e.to_string())?;
        let mut nf = netfront::Netfront::new(
            ev.clone(),
            netfront::NetfrontConfig {
                devid: 0,
                features: netfront::Features {
                    sg: true,
                    ..Default::default()
                },
            },
        );
        nf.start(&mut xs).map_err(|e| e.to_string())?;
        Ok(Client {
            xs,
            gt,
            pool,
            nf,
            rxq: FrameQueue::with_capacity(256),
            queued: 0,
            sent: 0,
            ip,
        })
    }

    /// One turn of the client's driver; true if the link is up.
    fn pump(&mut self) -> Result<bool, String> {
        self.xs.handle_notification().map_err(|e| e.to_string())?;
        while let Some(e) = self.xs.poll_event() {
            self.nf
                .handle_watch(&mut self.xs, &mut self.gt, &mut self.pool, &e);
        }
        self.nf.tick(&mut self.xs, &mut self.gt, &mut self.pool);
        if self.nf.link() != netfront::LinkState::Up {
            return Ok(false);
        }
        self.nf
            .poll(&mut self.gt, &mut self.pool, &mut self.rxq)
            .map_err(|e| e.to_string())?;
        while let Some(f) = self.rxq.pop() {
            f.free(&mut self.pool);
        }
        while self.sent < self.queued {
            let Some(f) = self.datagram(self.sent)? else {
                break; // pool pages still in the tx ring
            };
            if let Err(f) = self.nf.send(&mut self.gt, &mut self.pool, f) {
                f.free(&mut self.pool);
                break;
            }
            self.sent += 1;
        }
        self.nf.flush();
        Ok(true)
    }

    /// UDP datagram `k` (mod the flows per client): source port
    /// 20000 + k, so each is a flow of its own.
    fn datagram(&mut self, k: usize) -> Result<Option<Frame>, String> {
        let mac = self.nf.mac().ok_or("no MAC")?;
        let mut buf = [0u8; 128];
        let len = build_udp(
            &mut buf,
            mac,
            CLIENT_SIDE_MAC,
            IpAddr::V4(self.ip),
            IpAddr::V4(SILENT),
            20_000 + (k % FLOWS_PER_CLIENT) as u16,
            9,
            b"memory",
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(Frame::from_bytes(&mut self.pool, &buf[..len]).ok())
    }

    /// Send `n` more datagrams (one flow each, the first time).
    fn queue_flows(&mut self, n: usize) {
        self.queued += n;
    }

    fn idle(&self) -> bool {
        self.sent == self.queued
    }
}

fn pump_all(clients: &mut [Client]) -> Result<usize, String> {
    let mut up = 0;
    for c in clients.iter_mut() {
        up += usize::from(c.pump()?);
    }
    Ok(up)
}

/// Pump the clients until `done()` or [`WAIT`].
fn pump_until(
    clients: &mut [Client],
    what: &str,
    done: impl Fn(&[Client]) -> bool,
) -> Result<(), String> {
    let end = Instant::now() + WAIT;
    loop {
        pump_all(clients)?;
        if done(clients) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One case's settings.
#[derive(Clone, Copy, Debug)]
struct Case {
    heap: usize,
    pool_pages: usize,
    stack: usize,
    /// Per-client frame queues (`NetbackConfig::rx_queue`).
    rx_queue: usize,
}

/// One case's figures.
#[derive(Debug, Default)]
struct Report {
    started: Mem,
    step: Mem,
    all: Mem,
    flows: Mem,
    flows_seen: usize,
    table_bytes: usize,
    seconds: f64,
}

fn setup_qubesdb(qdb: &Dom0QubesDb, fw: DomId) -> Result<(), String> {
    let e = |err: qubesdb::QdbError| err.to_string();
    qdb.with_db(fw, |d| -> Result<(), String> {
        d.write("/name", b"sys-mirage-firewall").map_err(e)?;
        d.write("/qubes-vm-type", b"ProxyVM").map_err(e)?;
        d.set_net_config(&NetConfig {
            ip: Some(FW_UPLINK_IP),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            gateway: Some(SYSNET_IP),
            primary_dns: Some(DNS1),
            secondary_dns: Some(DNS2),
            netvm_gateway: Some(FW_CLIENT_IP),
            netvm_netmask: Some(Ipv4Addr::new(255, 255, 255, 255)),
            netvm_primary_dns: Some(DNS1),
            netvm_secondary_dns: Some(DNS2),
            ..NetConfig::default()
        })
        .map_err(e)?;
        let ips: Vec<Ipv4Addr> = (0..CLIENTS).map(client_ip).collect();
        d.set_connected_ips(&ips, &[]).map_err(e)?;
        for ip in &ips {
            d.set_client_rules(IpAddr::V4(*ip), "drop", RULES)
                .map_err(e)?;
        }
        Ok(())
    })
    .ok_or("no QubesDB for the firewall")?
}

fn run_case(case: Case) -> Result<Report, String> {
    claim_heap(case.heap);
    let t0 = Instant::now();
    let mut report = Report::default();

    // The flow table alone, built the way the engine builds it.
    COUNTED.with(|c| c.set(true));
    let before = RUST_LIVE.load(Relaxed);
    let table = ConnTrack::new(Limits::default(), [7; 16]);
    report.table_bytes = RUST_LIVE.load(Relaxed) - before;
    drop(table);
    COUNTED.with(|c| c.set(false));
    RUST_PEAK.store(RUST_LIVE.load(Relaxed), Relaxed);
    BOTH_PEAK.store(RUST_LIVE.load(Relaxed), Relaxed);
    let h = HEAP.lock();
    MIN_FREE.store(h.counters().available_bytes, Relaxed);
    drop(h);

    let host = SimHost::new().map_err(|e| format!("host: {e}"))?;
    let mut inet = Internet::start(&host, InternetConfig::default()).map_err(|e| e.to_string())?;
    let dom = host
        .create_domain(&DomainConfig {
            // Room for any pool size tried; the heap is the limit measured.
            ram_mib: 64,
            ..DomainConfig::new("sys-mirage-firewall")
        })
        .map_err(|e| e.to_string())?;
    let fw_dom = dom.domid();
    let qdb = Dom0QubesDb::start(&host).map_err(|e| e.to_string())?;
    qdb.add_vm(fw_dom);
    setup_qubesdb(&qdb, fw_dom)?;
    qdb.serve(&host, fw_dom).map_err(|e| e.to_string())?;
    inet.attach(&host, fw_dom, 0, &FW_UPLINK_IP.to_string())
        .map_err(|e| e.to_string())?;

    let mut cfg = FirewallConfig {
        pool_pages: case.pool_pages,
        ..FirewallConfig::default()
    };
    cfg.netback.rx_queue = case.rx_queue;
    let guest = Guest {
        dom,
        mirrors: Arc::new(Mutex::new(Vec::with_capacity(256))),
    };
    let publ = Arc::new(Published::default());
    let p2 = publ.clone();
    let fw = std::thread::Builder::new()
        .name("firewall".into())
        .stack_size(case.stack)
        .spawn(move || -> Result<String, String> {
            COUNTED.with(|c| c.set(true));
            // Allocated by the PVH start code before main: the bitmap of the
            // 1 GiB hole window for foreign mappings.
            let hole = xen::memory::bitmap::PageBitmap::new(PVH_HOLE_PAGES);
            let mut fw = Firewall::start(guest, cfg).map_err(|e| e.to_string())?;
            fw.run(|fw| {
                p2.up.store(fw.uplink_up(), Relaxed);
                p2.clients.store(fw.clients().count(), Relaxed);
                p2.flows.store(fw.engine().flow_count(), Relaxed);
                p2.stop.load(Relaxed)
            });
            let stats = format!("{:?}", fw.engine().stats());
            drop(fw);
            drop(hole);
            COUNTED.with(|c| c.set(false));
            Ok(stats)
        })
        .map_err(|e| e.to_string())?;

    let wait_fw = |what: &str, pred: &dyn Fn() -> bool| -> Result<(), String> {
        let end = Instant::now() + WAIT;
        while !pred() {
            if fw.is_finished() {
                return Err(format!("the firewall stopped while waiting for {what}"));
            }
            if Instant::now() > end {
                return Err(format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    wait_fw("the uplink", &|| publ.up.load(Relaxed))?;
    // Let start-up settle (ARP for the gateway, QubesDB writes).
    std::thread::sleep(Duration::from_millis(200));
    report.started = mem_now();

    let mut clients: Vec<Client> = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        clients.push(Client::start(&host, fw_dom, i)?);
        let n = clients.len();
        let end = Instant::now() + WAIT;
        loop {
            let up = pump_all(&mut clients)?;
            if up == n && publ.clients.load(Relaxed) == n {
                break;
            }
            if fw.is_finished() || Instant::now() > end {
                return Err(format!(
                    "client {i}: {up} links up, firewall sees {}",
                    publ.clients.load(Relaxed)
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if n == FIRST_STEP {
            std::thread::sleep(Duration::from_millis(100));
            report.step = mem_now();
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    report.all = mem_now();

    for c in clients.iter_mut() {
        c.queue_flows(FLOWS_PER_CLIENT);
    }
    let want = CLIENTS * FLOWS_PER_CLIENT;
    pump_until(&mut clients, "the flows", |c| {
        c.iter().all(Client::idle) && publ.flows.load(Relaxed) >= want
    })?;
    report.flows_seen = publ.flows.load(Relaxed);
    // The same datagrams again: the flows exist, steady state.
    for c in clients.iter_mut() {
        c.queue_flows(FLOWS_PER_CLIENT);
    }
    pump_until(&mut clients, "the second round", |c| {
        c.iter().all(Client::idle)
    })?;
    std::thread::sleep(Duration::from_millis(200));
    pump_all(&mut clients)?;
    report.flows = mem_now();
    report.seconds = t0.elapsed().as_secs_f64();

    publ.stop.store(true, Relaxed);
    // The loop sleeps at most `max_sleep_ns`; a notification ends it sooner.
    let stats = fw
        .join()
        .map_err(|_| "the firewall thread panicked".to_string())??;
    if report.flows_seen < want {
        return Err(format!(
            "only {} of {want} flows: {stats}",
            report.flows_seen
        ));
    }
    drop(clients);
    let _ = inet.stop(&host);
    Ok(report)
}

// ---------------------------------------------------------------------------
// Reporting and the driver.

const MIB: f64 = 1024.0 * 1024.0;
const VM_BYTES: usize = 32 << 20;
/// Image end assumed without `--image` (a firewall-linking image of this
/// version ends at 0x1a8000).
const DEFAULT_IMAGE_END: usize = 0x1a8000;
/// Heap left free at the worst moment, for what the benchmark does not
/// exercise (rule reloads, DNS answers for `dsthost`, a sys-net restart).
const MARGIN: usize = 1 << 20;

fn kib(b: usize) -> String {
    format!("{} KiB", b.div_ceil(1024))
}

fn mib(b: usize) -> String {
    format!("{:.2} MiB", b as f64 / MIB)
}

/// The end of the PT_LOAD segments of an ELF64 image (page aligned): where
/// the PVH kernel's heap starts.
fn image_end(path: &str) -> Result<usize, String> {
    let b = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
    };
    if b.get(..5) != Some(b"\x7fELF\x02") {
        return Err(format!("{path}: not an ELF64 image"));
    }
    let bad = || format!("{path}: truncated ELF header");
    let phoff = u64_at(0x20).ok_or_else(bad)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(0x38).ok_or_else(bad)? as usize;
    let mut end = 0u64;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let ty = b
            .get(ph..ph + 4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
            .ok_or_else(bad)?;
        if ty == 1 {
            let vaddr = u64_at(ph + 0x10).ok_or_else(bad)?;
            let memsz = u64_at(ph + 0x28).ok_or_else(bad)?;
            end = end.max(vaddr + memsz);
        }
    }
    Ok((end as usize).next_multiple_of(4096))
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn child(args: &[String]) -> ! {
    let num = |name: &str| -> usize {
        arg_value(args, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child needs {name}"))
    };
    let case = Case {
        heap: num("--heap"),
        pool_pages: num("--pool-pages"),
        stack: num("--stack"),
        rx_queue: num("--rx-queue"),
    };
    match run_case(case) {
        Ok(r) => {
            let peak_used = CLAIMED.load(Relaxed) - MIN_FREE.load(Relaxed);
            println!(
                "RESULT rust_peak={} pages_peak={} both_peak={} used_peak={} overflows={} overflow_bytes={} allocs={} \
                 started_rust={} started_pages={} started_used={} step_rust={} all_rust={} flows_rust={} flows_used={} \
                 flows_seen={} table_bytes={} seconds={:.1}",
                RUST_PEAK.load(Relaxed),
                PAGES_PEAK.load(Relaxed),
                BOTH_PEAK.load(Relaxed),
                peak_used,
                OVERFLOWS.load(Relaxed),
                OVERFLOW_BYTES.load(Relaxed),
                ALLOCS.load(Relaxed),
                r.started.rust,
                r.started.pages,
                r.started.used,
                r.step.rust,
                r.all.rust,
                r.flows.rust,
                r.flows.used,
                r.flows_seen,
                r.table_bytes,
                r.seconds,
            );
            std::process::exit(0)
        }
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(1)
        }
    }
}

type Fields = std::collections::HashMap<String, f64>;

fn spawn_case(case: Case) -> Result<Fields, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([
            "--child",
            "--heap",
            &case.heap.to_string(),
            "--pool-pages",
            &case.pool_pages.to_string(),
            "--stack",
            &case.stack.to_string(),
            "--rx-queue",
            &case.rx_queue.to_string(),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(l) = text.lines().find(|l| l.starts_with("RESULT ")) {
        return Ok(l[7..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect());
    }
    let err = text
        .lines()
        .find_map(|l| l.strip_prefix("ERROR "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "child exited with {} (stderr: {})",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        });
    Err(err)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child") {
        child(&args);
    }
    let (end, source) = match arg_value(&args, "--image") {
        Some(p) => match image_end(&p) {
            Ok(e) => (e, format!("end of {p}")),
            Err(e) => {
                eprintln!("memory bench: {e}");
                std::process::exit(2);
            }
        },
        None => (DEFAULT_IMAGE_END, "assumed image end (no --image)".into()),
    };
    if end < DEFAULT_IMAGE_END {
        println!(
            "note: the image ends at {end:#x}, before {DEFAULT_IMAGE_END:#x} where an image that links \
             the firewall loop ends: using {DEFAULT_IMAGE_END:#x}"
        );
    }
    let end = end.max(DEFAULT_IMAGE_END);
    let heap = VM_BYTES - end;
    let stack = 256 * 1024;
    let default_pool = FirewallConfig::default().pool_pages;
    // `--rx-queue N` measures another per-client queue length.
    let rx_queue = arg_value(&args, "--rx-queue")
        .and_then(|v| v.parse().ok())
        .unwrap_or(FirewallConfig::default().netback.rx_queue);
    println!(
        "memory benchmark on xen::sim: the firewall with {CLIENTS} clients and {} flows",
        CLIENTS * FLOWS_PER_CLIENT
    );
    println!(
        "PVH heap of a 32 MiB VM: 32 MiB - {end:#x} ({source}) = {} ({}); firewall thread stack {}",
        kib(heap),
        mib(heap),
        kib(stack)
    );
    println!(
        "one Frame (inline, queued by value): {} B; netback rx_queue: {rx_queue} frames per client",
        std::mem::size_of::<Frame>(),
    );
    println!(
        "flow table: memory_per_flow() = {} B, x {} = {}",
        ConnTrack::memory_per_flow(),
        Limits::default().max_flows,
        kib(ConnTrack::memory_per_flow() * Limits::default().max_flows)
    );

    // 1. What the firewall needs (a heap it cannot exhaust).
    let big = Case {
        heap: 256 << 20,
        pool_pages: default_pool,
        stack,
        rx_queue,
    };
    let need = match spawn_case(big) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("memory bench: measuring run failed: {e}");
            std::process::exit(1);
        }
    };
    let g = |k: &str| need.get(k).copied().unwrap_or(0.0) as usize;
    let per_client = (g("all_rust").saturating_sub(g("step_rust"))) / (CLIENTS - FIRST_STEP);
    let flow_delta = g("flows_rust") as isize - g("all_rust") as isize;
    println!();
    println!(
        "measured (pool {default_pool} pages, heap large enough), {:.1} s, {} flows tracked:",
        need.get("seconds").copied().unwrap_or(0.0),
        g("flows_seen")
    );
    println!(
        "  flow table as allocated (ConnTrack::new, default limits): {} = {} B per flow",
        kib(g("table_bytes")),
        g("table_bytes") / Limits::default().max_flows
    );
    println!("  Rust heap live: started {}, {FIRST_STEP} clients {}, {CLIENTS} clients {}, with flows {}", kib(g("started_rust")), kib(g("step_rust")), kib(g("all_rust")), kib(g("flows_rust")));
    println!("  per client (from {FIRST_STEP} to {CLIENTS} clients): {per_client} B; flows added after start-up: {flow_delta} B");
    println!(
        "  Rust heap peak: {} ({})",
        kib(g("rust_peak")),
        mib(g("rust_peak"))
    );
    println!(
        "  guest pages (pool and rings) peak: {} pages = {}",
        g("pages_peak") / 4096,
        kib(g("pages_peak"))
    );
    println!(
        "  sum at the worst moment: {} ({})",
        kib(g("both_peak")),
        mib(g("both_peak"))
    );
    println!(
        "  heap used at its high-water mark (with talc overhead): {} ({})",
        kib(g("used_peak")),
        mib(g("used_peak"))
    );
    let fits = g("used_peak") <= heap;
    println!(
        "  => pool {default_pool} pages, rx_queue {rx_queue}: {} a 32 MiB VM's heap of {} ({} {})",
        if fits { "FITS" } else { "DOES NOT FIT" },
        mib(heap),
        if fits { "spare" } else { "short by" },
        mib(heap.abs_diff(g("used_peak")))
    );

    // 2. The largest pool that leaves MARGIN free at the worst moment.
    let rest = g("used_peak").saturating_sub(default_pool * 4096);
    let room = heap.saturating_sub(rest + MARGIN) / 4096;
    let pool_fit = room / 64 * 64;
    println!(
        "  everything but the pool: {}; largest pool leaving {} free: {pool_fit} pages ({})",
        kib(rest),
        kib(MARGIN),
        mib(pool_fit * 4096)
    );

    // 3. Both on the exact heap.
    println!();
    println!("on the exact heap of a 32 MiB VM ({}):", kib(heap));
    for pool in [default_pool, pool_fit] {
        let case = Case {
            heap,
            pool_pages: pool,
            stack,
            rx_queue,
        };
        match spawn_case(case) {
            Ok(f) => {
                let g = |k: &str| f.get(k).copied().unwrap_or(0.0) as usize;
                let overflows = g("overflows");
                println!(
                    "  pool {pool:>5} pages: {}; heap high-water {} of {}, {} flows, {:.1} s",
                    if overflows == 0 {
                        "every allocation served".to_string()
                    } else {
                        format!(
                            "{overflows} allocations ({}) FAILED",
                            kib(g("overflow_bytes"))
                        )
                    },
                    kib(g("used_peak")),
                    kib(heap),
                    g("flows_seen"),
                    f.get("seconds").copied().unwrap_or(0.0),
                );
            }
            Err(e) => println!("  pool {pool:>5} pages: run failed: {e}"),
        }
    }
}
