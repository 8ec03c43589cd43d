//! Benchmark: our netfront → our netback (and back) on the simulated Xen.
//!
//! `cargo bench -p integration-tests --bench vif` (optionally followed by
//! `-- --quick` for shorter runs). For 64-byte frames, 1500-byte frames and
//! 64 KiB GSO super-packets, in both directions, it prints frames per
//! second and Gbit/s of frame bytes, and per frame the grant-copy
//! operations, bytes copied per byte carried, hypercalls, notifications and
//! heap allocator calls of the drivers' hot path, and per batch the
//! grant-copy hypercalls and notifications of the copying side.
//!
//! The simulator is not Xen: a hypercall here is a function call and a
//! notification a condition variable, and both domains share the host's
//! cores. The figures that carry over are the per-frame and per-batch
//! counts; the throughput is what this host's memory system allows through
//! the same code.

use assert_no_alloc::AllocDisabler;
use integration_tests::traffic::Sizes;
use integration_tests::vifpair::{run_pair, Direction, PairReport, PairSpec};
use xen::sim::SimHost;

#[global_allocator]
static ALLOC: AllocDisabler = AllocDisabler;

struct Case {
    name: &'static str,
    size: usize,
    frames: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let cases = [
        Case {
            name: "64 B",
            size: 64,
            frames: 2_000_000 / scale,
        },
        Case {
            name: "1500 B",
            size: 1500,
            frames: 1_000_000 / scale,
        },
        Case {
            name: "64 KiB GSO",
            size: 65535,
            frames: 100_000 / scale,
        },
    ];
    let host = SimHost::new().expect("simulated host");
    println!(
        "vif benchmark on xen::sim (netfront and netback each in its own domain and thread, all offloads negotiated)"
    );
    println!(
        "{:<11} {:<22} {:>10} {:>9} | per frame: {:>7} {:>7} {:>9} {:>7} {:>7} | per batch ({:>6} fr): {:>8} {:>7}",
        "frames",
        "direction",
        "frames/s",
        "Gbit/s",
        "copies",
        "B/B",
        "hcalls",
        "notif",
        "allocs",
        "size",
        "gcopy hc",
        "notif"
    );
    for case in &cases {
        for dir in [Direction::FrontToBack, Direction::BackToFront] {
            // `VIF_BENCH_ONLY="64 B/BackToFront"` runs matching cases only.
            if let Ok(only) = std::env::var("VIF_BENCH_ONLY") {
                if !format!("{}/{dir:?}", case.name).contains(&only) {
                    continue;
                }
            }
            let mut spec = PairSpec::new(case.frames, Sizes::Fixed(case.size));
            spec.direction = dir;
            spec.v6_every = 0;
            spec.pool_pages = 4096;
            spec.timeout = std::time::Duration::from_secs(600);
            match run_pair(&host, &spec) {
                Ok(r) => {
                    print_row(case.name, dir, &r);
                    if std::env::var_os("VIF_BENCH_DEBUG").is_some() {
                        println!(
                            "    sleeps ended by timeout: sender {} receiver {}; batches sender {} receiver {}",
                            r.sender.timeouts, r.receiver.timeouts, r.sender.batches, r.receiver.batches
                        );
                    }
                }
                Err(e) => println!("{:<11} {dir:?}: FAILED: {e}", case.name),
            }
        }
    }
}

fn print_row(name: &str, dir: Direction, r: &PairReport) {
    let frames = r.received.frames.max(1) as f64;
    // The copying side is netback in both directions.
    let (copier, other, label) = match dir {
        Direction::FrontToBack => (&r.receiver, &r.sender, "netfront -> netback"),
        Direction::BackToFront => (&r.sender, &r.receiver, "netback -> netfront"),
    };
    let copies = copier.counters.grant_copies as f64 / frames;
    let bytes_ratio =
        copier.counters.grant_copy_bytes as f64 / r.received.frame_bytes.max(1) as f64;
    let hcalls = (copier.counters.hypercalls() + other.counters.hypercalls()) as f64 / frames;
    let notif = (copier.counters.notifications + other.counters.notifications) as f64 / frames;
    let allocs = (copier.allocs + other.allocs) as f64 / frames;
    let batches = copier.batches.max(1) as f64;
    println!(
        "{:<11} {:<22} {:>10.0} {:>9.2} | per frame: {:>7.3} {:>7.3} {:>9.4} {:>7.4} {:>7.4} | per batch ({:>6.1} fr): {:>8.3} {:>7.3}",
        name,
        label,
        r.fps(),
        r.gbps(),
        copies,
        bytes_ratio,
        hcalls,
        notif,
        allocs,
        frames / batches,
        copier.counters.grant_table_op as f64 / batches,
        copier.counters.notifications as f64 / batches,
    );
}
