//! The hot path (`poll`, `send`, `flush`) does not allocate: every path
//! is exercised — frames both ways, multi-slot, GSO both ways, software
//! segmentation, checksum completion, linearising, drops — with an
//! allocator that counts allocations made on the firewall thread while it
//! is inside those calls.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::packets::*;
use common::*;
use netfront::Features;
use xen::abi::netif::*;
use xen::frame::{Checksum, Gso, GsoType};

struct Counting;

static HOT_ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if IN_HOT_PATH.try_with(|c| c.get()).unwrap_or(false) {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if IN_HOT_PATH.try_with(|c| c.get()).unwrap_or(false) {
            HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn exercise(features: &[(&str, &str)], name: &str) {
    let h = Harness::new(&format!("fw-{name}"), 0, Features::ALL);
    let mut b = Backend::new(&h, &format!("net-{name}"), 0);
    b.bring_up(features);
    h.wait_up(1);
    let gso = |mss| {
        Some(Gso {
            kind: GsoType::TcpV4,
            mss,
        })
    };
    let mut big = tcp4(20_000, 1);
    make_partial(&mut big);
    let mut p6 = tcp6(600, 2);
    make_partial(&mut p6);
    let specs = vec![
        TxSpec::plain(raw(60, 1)),
        TxSpec {
            layout: vec![(4000, 96), (0, 1418)],
            ..TxSpec::plain(tcp4(1460, 3))
        },
        TxSpec {
            csum: Checksum::Partial,
            gso: gso(1448),
            ..TxSpec::plain(big.clone())
        },
        TxSpec {
            csum: Checksum::Partial,
            ..TxSpec::plain(p6)
        },
        TxSpec::plain(raw(9000, 4)),
    ];
    for s in specs {
        h.send(s);
    }
    h.send(TxSpec::plain(raw(61, 5)));
    loop {
        if b.recv_tx().bytes == raw(61, 5) {
            break;
        }
    }
    b.send_rx(&RxPacket::plain(raw(60, 6)));
    b.send_rx(&RxPacket {
        gso: Some((XEN_NETIF_GSO_TYPE_TCPV4, 1448)),
        flags: NETRXF_CSUM_BLANK,
        ..RxPacket::plain(big)
    });
    b.send_rx_raw(&[RawRx::Rsp {
        id: None,
        offset: 0,
        flags: 0,
        status: NETIF_RSP_ERROR,
    }]);
    b.send_rx(&RxPacket::plain(raw(60, 7)));
    h.wait_received(3);
    let s = h.status();
    assert!(s.stats.tx_frames >= 4, "{:?}", s.stats);
}

#[test]
fn hot_path_does_not_allocate() {
    // The counter works.
    IN_HOT_PATH.with(|c| c.set(true));
    let v = std::hint::black_box(vec![1u8; 10]);
    IN_HOT_PATH.with(|c| c.set(false));
    drop(v);
    assert_eq!(HOT_ALLOCS.swap(0, Ordering::Relaxed), 1);
    exercise(LINUX_FEATURES, "noalloc-linux");
    exercise(MINIMAL_FEATURES, "noalloc-minimal");
    assert_eq!(HOT_ALLOCS.load(Ordering::Relaxed), 0);
}
