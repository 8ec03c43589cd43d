//! The firewall unikernel (PVH): sets up the console and logging, reads
//! the kernel command line (qubes-mirage-firewall's options), sizes the
//! firewall for the VM's memory, and runs the firewall's event loop
//! ([`firewall::platform::Firewall`]) until dom0 asks for poweroff or
//! reboot (`control/shutdown`), which it then performs. A fatal error at
//! start-up (a bad option included) is logged and crashes the domain
//! (`SCHEDOP_shutdown(crash)`), so the toolstack sees it.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;

use firewall::engine::conntrack::{ConnTrack, Limits};
use firewall::kernelopts::{self, KernelOpts};
use firewall::platform::{Firewall, FirewallConfig, Stop};
use xen::abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use xen::abi::PAGE_SIZE;
use xen::console::Console;
use xen::evtchn::EventChannels;
use xen::pvh::{BootInfo, Pvh};
use xen::{Hypervisor, HypervisorExt};

xen::pvh_main!(main);

/// Packet pool pages (4 KiB each): 12 MiB of a 32 MiB VM. With 50 clients
/// and 20,000 flows the heap peaks about 5 MiB under the 32 MiB VM's
/// (`make bench-memory`).
const POOL_PAGES: usize = 3072;
/// Flows tracked at most (`--nat-table-size` overrides), and per client.
const MAX_FLOWS: usize = 20_000;
const MAX_FLOWS_PER_CLIENT: usize = 2_000;

fn main(boot: &'static BootInfo) -> ! {
    // `selftest=wx|nx|guard`: fault on purpose (tests/kernel/qemu-smoke.sh).
    // First, before anything needs Xen: without Xen main runs only for this.
    if let Some(test) = xen::pvh::selftest::from_cmdline(boot.cmdline()) {
        test();
    }
    let ev = EventChannels::new(Pvh).unwrap_or_else(|e| fatal("event channels", &e));
    let console = Console::from_params(ev).unwrap_or_else(|e| fatal("console ring", &e));
    xen::pvh::init_logging(console, log::LevelFilter::Info);
    log::info!(
        "mirage-firewall (rust) {} on Xen {}.{}",
        env!("CARGO_PKG_VERSION"),
        boot.xen_version.0,
        boot.xen_version.1
    );
    log::info!("command line: {:?}", boot.cmdline());
    let opts = kernelopts::parse(boot.cmdline()).unwrap_or_else(|e| fatal("command line", &e));
    apply_log_levels(&opts);
    for w in &opts.warnings {
        log::warn!("{w}");
    }

    let cfg = config(&opts);
    let heap = boot.heap_end - boot.heap_start;
    let pool = cfg.pool_pages * PAGE_SIZE;
    let per_flow = ConnTrack::memory_per_flow_for(cfg.engine.limits.max_flows);
    let flows = cfg.engine.limits.max_flows * per_flow;
    log::info!(
        "memory: heap {} KiB; packet pool {} pages ({} KiB); flow table {} flows, {} per client ({} KiB)",
        heap / 1024,
        cfg.pool_pages,
        pool / 1024,
        cfg.engine.limits.max_flows,
        cfg.engine.limits.max_flows_per_client,
        flows / 1024
    );
    if (pool + flows) as u64 > heap {
        fatal(
            "memory",
            &"the packet pool and flow table do not fit the heap (lower --nat-table-size or give the VM more memory)",
        );
    }
    let mut fw = match Firewall::start(Pvh, cfg) {
        Ok(fw) => fw,
        Err(e) => fatal("start", &e),
    };
    log::info!("firewall: ready");
    let mut report = Report::default();
    let stop = fw.run(|fw| {
        report.tick(fw);
        false
    });
    let reason = stop.shutdown_reason().unwrap_or(SHUTDOWN_POWEROFF);
    log::info!(
        "firewall: {}; shutting down",
        match stop {
            Stop::Reboot => "reboot requested",
            _ => "poweroff requested",
        }
    );
    let _ = Pvh.shutdown(reason);
    xen::pvh::cpu::halt()
}

/// The command line's log levels (`-l`, `--logs`): the most verbose one
/// as `log`'s threshold, each source's own in the console's filter.
fn apply_log_levels(opts: &KernelOpts) {
    let spec = opts.logs.clone();
    let max = spec.max_level();
    let filter: xen::console::LogFilter = Box::leak(Box::new(move |m: &log::Metadata<'_>| {
        spec.enabled(m.target(), m.level())
    }));
    xen::pvh::set_log_filter(max, filter);
}

/// Every [`REPORT_NS`], if traffic moved: one line of counters (what the
/// engine forwarded and dropped, what the drivers refused).
const REPORT_NS: u64 = 10_000_000_000;

#[derive(Default)]
struct Report {
    next: u64,
    last: (u64, u64),
}

impl Report {
    fn tick(&mut self, fw: &Firewall<Pvh>) {
        let now = Pvh.now_ns();
        if now < self.next {
            return;
        }
        self.next = now + REPORT_NS;
        let e = fw.engine().stats();
        let moved = (e.forwarded_out, e.forwarded_in);
        if moved == self.last {
            return;
        }
        self.last = moved;
        let nf = fw.uplink_stats();
        let mut drops = alloc::string::String::new();
        for why in firewall::engine::Drop::ALL {
            let n = e.drops_for(why);
            if n > 0 {
                use core::fmt::Write;
                let _ = write!(drops, " {why}={n}");
            }
        }
        log::info!(
            "stats: uplink tx drops {:?}, rx drops {:?}",
            nf.tx_dropped,
            nf.rx_dropped
        );
        log::info!(
            "stats: out {} frames {} B, in {} frames {} B; dropped by engine:{}; refused by drivers: uplink {} clients {}; uplink tx {} rx {} notify {}; lost wakeups {}",
            e.forwarded_out,
            e.bytes_out,
            e.forwarded_in,
            e.bytes_in,
            if drops.is_empty() { " none" } else { &drops },
            fw.uplink_send_dropped,
            fw.client_send_dropped,
            nf.tx_frames,
            nf.rx_frames,
            nf.notifications_sent,
            fw.lost_wakeups
        );
        for vif in fw.client_vifs() {
            if let Some(c) = fw.client_stats(vif) {
                log::info!(
                    "stats: client dom{} vif {}: tx {} frames (backpressure {}), rx {} frames (queue full {}, dropped {})",
                    vif.domid,
                    vif.devid,
                    c.tx_frames,
                    c.tx_backpressure,
                    c.rx_frames,
                    c.rx_queue_full,
                    c.rx_drops.total()
                );
            }
        }
    }
}

/// The firewall's configuration for a 32 MiB VM, with the command line's
/// overrides (addresses, `--nat-table-size`).
fn config(opts: &KernelOpts) -> FirewallConfig {
    let mut cfg = FirewallConfig {
        pool_pages: POOL_PAGES,
        ..FirewallConfig::default()
    };
    cfg.engine.limits = Limits {
        max_flows: MAX_FLOWS,
        max_flows_per_client: MAX_FLOWS_PER_CLIENT,
        ..Limits::default()
    };
    cfg.apply(opts);
    cfg.engine.seed = seed();
    cfg
}

/// Key material for the flow hash and NAT ports: the TSC and Xen's clock at
/// boot, mixed (not secret against a local observer, but not the same on
/// every boot).
fn seed() -> [u8; 16] {
    let a = xen::pvh::cpu::rdtsc();
    let b = Pvh.now_ns();
    let mut x = a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    out
}

/// Log a fatal error (console if up, and the debug port) and crash the
/// domain.
fn fatal(what: &str, why: &dyn core::fmt::Display) -> ! {
    use core::fmt::Write;
    let _ = writeln!(xen::pvh::early::Port, "FATAL: {what}: {why}");
    log::error!("FATAL: {what}: {why}; crashing the domain");
    let _ = Pvh.shutdown(SHUTDOWN_CRASH);
    xen::pvh::cpu::halt()
}
