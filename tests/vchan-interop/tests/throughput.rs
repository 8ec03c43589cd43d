//! 64 MiB each way through every pairing of libxenvchan and our vchan,
//! verified byte for byte, closed from each side in turn; prints the
//! throughput of each, measured in the same run (`cargo test -p
//! vchan-interop --test throughput -- --nocapture`). One test, so the
//! sessions run one after the other and do not compete for the CPUs.

use vchan_interop::{run, End, Impl, Session};
use xen::sim::SimHost;

/// Every session runs on a host of its own, so that none depends on dom0's
/// services after another session destroyed its domains.
fn fresh_host() -> SimHost {
    SimHost::new().expect("simulated host")
}

/// Bytes each way.
const BYTES: u64 = 64 << 20;
/// Ring minimums: 64 KiB each way, as qrexec data connections.
const RINGS: usize = 64 << 10;

#[test]
fn sixty_four_mib_each_way_every_pairing() {
    let sessions = [
        (Impl::Libxenvchan, Impl::Libxenvchan, End::Server),
        (Impl::Ours, Impl::Ours, End::Client),
        (Impl::Libxenvchan, Impl::Ours, End::Server),
        (Impl::Libxenvchan, Impl::Ours, End::Client),
        (Impl::Ours, Impl::Libxenvchan, End::Server),
        (Impl::Ours, Impl::Libxenvchan, End::Client),
    ];
    println!(
        "vchan throughput, {} MiB each way at once, rings {} KiB, {} build:",
        BYTES >> 20,
        RINGS >> 10,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (i, (server, client, closer)) in sessions.into_iter().enumerate() {
        let s = Session {
            server,
            client,
            read_min: RINGS,
            write_min: RINGS,
            bytes: BYTES,
            closer,
            seed: 100 + i as u64,
            port: 513,
        };
        let o = run(&fresh_host(), &s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let mib = (BYTES >> 20) as f64;
        println!(
            "  server {:<11} client {:<11} ({:?} closes): {:7.1} MiB/s each way ({:.2} s); \
             events sent per MiB: server {:.1}, client {:.1}",
            format!("{server:?}"),
            format!("{client:?}"),
            closer,
            o.mib_per_s(),
            o.elapsed.as_secs_f64(),
            o.events.0 as f64 / mib,
            o.events.1 as f64 / mib,
        );
    }
}

/// The ring indices are free-running `u32`s: past 4 GiB they wrap. Too
/// slow for a debug run (about 10 s in release):
/// `cargo test --release -p vchan-interop --test throughput -- --ignored`.
#[test]
#[ignore = "moves 4.25 GiB each way; run in release"]
fn indices_wrap_past_four_gib_both_pairings() {
    for (server, client) in [
        (Impl::Libxenvchan, Impl::Ours),
        (Impl::Ours, Impl::Libxenvchan),
    ] {
        let s = Session {
            server,
            client,
            read_min: RINGS,
            write_min: RINGS,
            bytes: (4 << 30) + (256 << 20),
            closer: End::Client,
            seed: 4242,
            port: 514,
        };
        let o = run(&fresh_host(), &s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        println!(
            "  server {server:?} client {client:?}: 4.25 GiB each way, {:.1} MiB/s",
            o.mib_per_s()
        );
    }
}
