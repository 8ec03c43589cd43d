//! Benchmark: a client AppVM -> the firewall VM -> sys-net, on the
//! simulated Xen ([`integration_tests::fwbench`]).
//!
//! `cargo bench -p integration-tests --bench firewall` (`-- --quick` for
//! shorter runs). For 64-byte and 1500-byte UDP frames and 64 KiB TCP GSO
//! super-packets it prints what sys-net received through the firewall
//! (frames per second, Gbit/s of frame bytes), the same run's plain memcpy
//! of the same bytes and the ratio, and per frame the firewall domain's
//! grant-copy operations, bytes copied per byte carried, hypercalls,
//! notifications and heap allocations, plus frames per loop turn, and the
//! table's memory per tracked flow.
//!
//! As for the vif benchmark: the simulator is not Xen (a hypercall is a
//! function call, a notification a condition variable, and the three
//! domains share this host's cores); the per-frame counts carry over, the
//! throughput is what this host allows through the same code.

use assert_no_alloc::AllocDisabler;
use integration_tests::fwbench::{memcpy_gbps, run, FwBenchReport, FwBenchSpec};
use xen::sim::SimHost;

#[global_allocator]
static ALLOC: AllocDisabler = AllocDisabler;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let cases: [(&str, usize, u64); 3] = [
        ("64 B UDP", 64, 3_000_000 / scale),
        ("1500 B UDP", 1500, 1_000_000 / scale),
        ("64 KiB GSO", 65535, 200_000 / scale),
    ];
    let host = SimHost::new().expect("simulated host");
    println!(
        "firewall benchmark on xen::sim: client (netfront) -> firewall (netback, engine, netfront) -> sys-net (netback), 4 flows, all offloads"
    );
    println!(
        "{:<11} {:>10} {:>8} {:>8} {:>6} | per frame (firewall): {:>6} {:>6} {:>7} {:>7} {:>7} | {:>7} | {:>6} {:>6}",
        "frames",
        "frames/s",
        "Gbit/s",
        "memcpy",
        "ratio",
        "copies",
        "B/B",
        "hcalls",
        "notif",
        "allocs",
        "fr/turn",
        "B/flow",
        "drops"
    );
    for (name, size, frames) in cases {
        if let Ok(only) = std::env::var("FW_BENCH_ONLY") {
            if !name.contains(&only) {
                continue;
            }
        }
        let spec = FwBenchSpec::new(size, frames);
        match run(&host, &spec) {
            Ok(r) => {
                let mc = memcpy_gbps(size, r.frames, spec.pool_pages);
                print_row(name, &r, mc);
            }
            Err(e) => println!("{name:<11} FAILED: {e}"),
        }
    }
}

fn print_row(name: &str, r: &FwBenchReport, memcpy: f64) {
    let frames = r.frames.max(1) as f64;
    let c = &r.fw;
    println!(
        "{:<11} {:>10.0} {:>8.2} {:>8.2} {:>6.3} | per frame (firewall): {:>6.3} {:>6.3} {:>7.4} {:>7.4} {:>7.4} | {:>7.1} | {:>6} {:>6}",
        name,
        r.fps(),
        r.gbps(),
        memcpy,
        r.gbps() / memcpy.max(1e-9),
        c.grant_copies as f64 / frames,
        c.grant_copy_bytes as f64 / r.frame_bytes.max(1) as f64,
        c.hypercalls() as f64 / frames,
        c.notifications as f64 / frames,
        r.fw_allocs as f64 / frames,
        frames / r.fw_batches.max(1) as f64,
        r.memory_per_flow,
        r.fw_drops,
    );
    if r.fw_drops > 0 {
        println!("    engine drops by reason: {:?}", r.fw_drop_reasons);
    }
    if r.not_natted > 0 {
        println!(
            "    ERROR: {} frames reached sys-net without source NAT",
            r.not_natted
        );
    }
}
