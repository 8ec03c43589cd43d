//! Our netfront against our netback on the simulated Xen, in every
//! combination of offloads, both directions, with a verified stream
//! (integrity, order, checksums, GSO metadata), plus restarts of either
//! side in the middle of a stream. See `integration_tests::vifpair`.

use assert_no_alloc::AllocDisabler;
use integration_tests::traffic::Sizes;
use integration_tests::vifpair::{run_pair, Direction, Offloads, PairReport, PairSpec, Restart};
use xen::sim::SimHost;

#[global_allocator]
static ALLOC: AllocDisabler = AllocDisabler;

/// Frames per (combination, direction) in the matrix: in release builds
/// (`make test` runs this file with `--release`) 500,000, i.e. one million
/// frames per offload combination and eight million in all; debug builds
/// (the workspace test run) do 2,000 per case. `VIF_PAIR_FRAMES` overrides
/// it.
fn frames_per_case() -> u64 {
    std::env::var("VIF_PAIR_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            2_000
        } else {
            500_000
        })
}

fn check(r: &PairReport, spec: &PairSpec) {
    assert!(r.received.frames > 0);
    if spec.restart == Restart::None {
        assert_eq!(
            r.received.payload_bytes, r.sent_payload,
            "stream bytes lost or duplicated"
        );
        // Every stream byte arrived (frames may have been cut finer by
        // software segmentation, never fewer).
        assert!(
            r.received.frames >= r.sent_frames,
            "{} frames received, {} sent",
            r.received.frames,
            r.sent_frames
        );
    }
}

fn describe(o: Offloads) -> String {
    format!(
        "sg={} gso={} csum={}",
        o.sg as u8, o.gso as u8, o.csum as u8
    )
}

#[test]
fn every_offload_combination_both_directions() {
    let host = SimHost::new().unwrap();
    let n = frames_per_case();
    let mut total = 0;
    for o in Offloads::all_combinations() {
        for dir in [Direction::FrontToBack, Direction::BackToFront] {
            let mut spec = PairSpec::new(n, Sizes::LogUniform(60, 65535));
            spec.front = o;
            spec.back = o;
            spec.direction = dir;
            spec.seed = 11 + total;
            let r =
                run_pair(&host, &spec).unwrap_or_else(|e| panic!("{} {dir:?}: {e}", describe(o)));
            check(&r, &spec);
            // GSO super-packets carry partial checksums by definition, so
            // they travel whole only with csum offload too.
            if o.gso && o.sg && o.csum {
                assert!(
                    r.received.gso_frames > 0,
                    "{}: no GSO frame arrived whole",
                    describe(o)
                );
            } else {
                assert_eq!(
                    r.received.gso_frames,
                    0,
                    "{} {dir:?}: GSO frame delivered without the offloads it needs",
                    describe(o)
                );
            }
            if !o.csum {
                assert_eq!(
                    r.received.partial_frames, 0,
                    "partial checksum without csum offload"
                );
            }
            eprintln!(
                "{} {dir:?}: {} frames, {:.2} Gbit/s, {:.0} frames/s; copying side per frame: {:.3} grant copies, {} allocs",
                describe(o),
                r.received.frames,
                r.gbps(),
                r.fps(),
                match dir {
                    Direction::FrontToBack => r.receiver.counters.grant_copies,
                    Direction::BackToFront => r.sender.counters.grant_copies,
                } as f64
                    / r.received.frames as f64,
                r.sender.allocs + r.receiver.allocs,
            );
            total += r.sent_frames;
        }
    }
    eprintln!("{total} frames verified across the matrix");
}

#[test]
fn gso_frames_to_a_peer_without_gso_are_segmented_in_software() {
    let host = SimHost::new().unwrap();
    let no_gso = Offloads {
        sg: true,
        gso: false,
        csum: true,
    };
    for (front, back, dir) in [
        // netback -> a frontend without GSO: netback segments.
        (no_gso, Offloads::ALL, Direction::BackToFront),
        // netfront -> a backend without GSO: netfront segments.
        (Offloads::ALL, no_gso, Direction::FrontToBack),
    ] {
        for csum in [true, false] {
            let mut spec = PairSpec::new(300, Sizes::LogUniform(3000, 65535));
            spec.front = Offloads { csum, ..front };
            spec.back = Offloads { csum, ..back };
            spec.direction = dir;
            spec.gso_frames = Some(true);
            let r = run_pair(&host, &spec).unwrap_or_else(|e| panic!("{dir:?} csum={csum}: {e}"));
            assert_eq!(r.received.gso_frames, 0);
            assert!(
                r.received.frames > r.sent_frames * 2,
                "{dir:?}: {} frames from {} super-packets",
                r.received.frames,
                r.sent_frames
            );
        }
    }
}

#[test]
fn sys_net_restart_mid_stream_reconnects_by_itself() {
    let host = SimHost::new().unwrap();
    for dir in [Direction::FrontToBack, Direction::BackToFront] {
        let mut spec = PairSpec::new(2_000, Sizes::LogUniform(60, 9000));
        spec.direction = dir;
        spec.restart = Restart::Backend(500);
        let r = run_pair(&host, &spec).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        assert!(r.reconnects >= 1, "{dir:?}: no reconnection seen");
        assert_eq!(r.received.resyncs, 1);
        assert!(r.received.frames >= 2_000);
    }
}

#[test]
fn client_restart_mid_stream_is_served_again() {
    let host = SimHost::new().unwrap();
    for dir in [Direction::FrontToBack, Direction::BackToFront] {
        let mut spec = PairSpec::new(2_000, Sizes::LogUniform(60, 9000));
        spec.direction = dir;
        spec.restart = Restart::Frontend(500);
        let r = run_pair(&host, &spec).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        assert!(r.received.frames >= 2_000);
    }
}
