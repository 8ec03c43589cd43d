//! Ring arithmetic: unit tests and property tests against a model (a
//! `VecDeque` of the bytes in flight), with indices starting anywhere
//! (including just below 2^32), random chunkings, and hostile index values
//! written into the peer's slot.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use proptest::prelude::*;
use xen::memory::LocalPages;

use super::*;
use crate::layout::{LEFT_CONS, LEFT_PROD};

/// A control page plus `2^order` ring bytes (in the page for orders 10 and
/// 11, in the following pages otherwise), with both indices of the left
/// ring set to `start`.
struct Fixture {
    _pages: LocalPages,
    ctrl: SharedMem,
    buf: SharedMem,
}

impl Fixture {
    fn new(order: u16, start: u32) -> Fixture {
        let size = 1usize << order;
        let extra = if order >= 12 { size / 4096 } else { 0 };
        let pages = LocalPages::new(1 + extra);
        let mem = pages.mem();
        let ctrl = mem.sub(0, 4096);
        let buf = match order {
            10 => ctrl.sub(1024, 1024),
            11 => ctrl.sub(2048, 2048),
            _ => mem.sub(4096, size),
        };
        ctrl.store_u32(LEFT_PROD, start, Ordering::SeqCst);
        ctrl.store_u32(LEFT_CONS, start, Ordering::SeqCst);
        Fixture {
            _pages: pages,
            ctrl,
            buf,
        }
    }

    fn ends(&self) -> (RingWriter, RingReader) {
        (
            RingWriter::new(self.ctrl, RingId::Left, self.buf).unwrap(),
            RingReader::new(self.ctrl, RingId::Left, self.buf).unwrap(),
        )
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn rejects_bad_buffer_sizes() {
    let pages = LocalPages::new(1);
    let m = pages.mem();
    assert!(RingReader::new(m, RingId::Left, m.sub(1024, 1000)).is_none());
    assert!(RingReader::new(m, RingId::Left, m.sub(0, 512)).is_none());
    assert!(RingWriter::new(m.sub(0, 16), RingId::Left, m.sub(1024, 1024)).is_none());
    assert!(RingWriter::new(m, RingId::Right, m.sub(2048, 2048)).is_some());
}

#[test]
fn fill_drain_and_wrap() {
    let f = Fixture::new(10, u32::MAX - 100);
    let (mut w, mut r) = f.ends();
    assert_eq!(w.space(), Ok(1024));
    assert_eq!(r.available(), Ok(0));
    let data = pattern(1, 3000);
    assert_eq!(w.write(&data), Ok(1024));
    assert_eq!(w.write(&data[1024..]), Ok(0));
    assert_eq!(w.space(), Ok(0));
    let mut out = vec![0u8; 3000];
    assert_eq!(r.read(&mut out[..600]), Ok(600));
    assert_eq!(w.write(&data[1024..]), Ok(600));
    assert_eq!(r.read(&mut out[600..]), Ok(1024));
    assert_eq!(&out[..1624], &data[..1624]);
    // The indices wrapped past 2^32.
    assert_eq!(w.prod(), (u32::MAX - 100).wrapping_add(1624));
    assert_eq!(r.cons(), w.prod());
    assert_eq!(f.ctrl.load_u32(LEFT_PROD, Ordering::SeqCst), w.prod());
    assert_eq!(f.ctrl.load_u32(LEFT_CONS, Ordering::SeqCst), r.cons());
}

#[test]
fn producer_beyond_the_ring_is_an_error_and_changes_nothing() {
    let f = Fixture::new(11, 0);
    let (_, mut r) = f.ends();
    f.ctrl.store_u32(LEFT_PROD, 2049, Ordering::SeqCst);
    let e = ProtocolError::RingIndex {
        ring: RingId::Left,
        index: IndexKind::Prod,
        value: 2049,
        min: 0,
        max: 2048,
    };
    assert_eq!(r.available(), Err(e.clone()));
    let mut out = [0u8; 16];
    assert_eq!(r.read(&mut out), Err(e));
    assert_eq!(r.cons(), 0);
    // A full ring is fine.
    f.ctrl.store_u32(LEFT_PROD, 2048, Ordering::SeqCst);
    assert_eq!(r.available(), Ok(2048));
}

#[test]
fn producer_moving_backwards_is_an_error() {
    let f = Fixture::new(12, 1000);
    let (mut w, mut r) = f.ends();
    w.write(&[7; 100]).unwrap();
    assert_eq!(r.available(), Ok(100));
    // Still ahead of cons, but behind what was already seen.
    f.ctrl.store_u32(LEFT_PROD, 1050, Ordering::SeqCst);
    assert!(matches!(
        r.available(),
        Err(ProtocolError::RingIndex {
            index: IndexKind::Prod,
            value: 1050,
            min: 1100,
            ..
        })
    ));
    // Behind cons.
    f.ctrl.store_u32(LEFT_PROD, 999, Ordering::SeqCst);
    assert!(r.available().is_err());
}

#[test]
fn consumer_outside_its_window_is_an_error() {
    let f = Fixture::new(10, 5);
    let (mut w, _) = f.ends();
    w.write(&[1; 500]).unwrap();
    // cons ahead of prod.
    f.ctrl.store_u32(LEFT_CONS, 506, Ordering::SeqCst);
    assert_eq!(
        w.space(),
        Err(ProtocolError::RingIndex {
            ring: RingId::Left,
            index: IndexKind::Cons,
            value: 506,
            min: 5,
            max: 505,
        })
    );
    assert!(w.write(&[1; 10]).is_err());
    // cons more than a ring behind prod (or "behind" 0 after wrapping).
    f.ctrl.store_u32(LEFT_CONS, u32::MAX, Ordering::SeqCst);
    assert!(w.space().is_err());
    f.ctrl.store_u32(LEFT_CONS, 300, Ordering::SeqCst);
    assert_eq!(w.space(), Ok(1024 - 205));
    // Moving backwards after that is a violation too.
    f.ctrl.store_u32(LEFT_CONS, 299, Ordering::SeqCst);
    assert!(w.space().is_err());
    assert_eq!(w.prod(), 505);
}

/// One step of a scenario: write a chunk or read a chunk.
#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..5000).prop_map(Op::Write),
        (0usize..5000).prop_map(Op::Read),
    ]
}

fn order() -> impl Strategy<Value = u16> {
    prop_oneof![Just(10u16), Just(11), Just(12), Just(13)]
}

fn start() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..5000).prop_map(|d| u32::MAX - d),
        Just(0u32)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any interleaving of partial writes and reads delivers exactly the
    /// bytes written, in order, and the space and availability always add
    /// up to the ring size.
    #[test]
    fn model_roundtrip(order in order(), start in start(), ops in prop::collection::vec(op(), 1..64)) {
        let f = Fixture::new(order, start);
        let (mut w, mut r) = f.ends();
        let size = 1usize << order;
        let mut model: VecDeque<u8> = VecDeque::new();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Write(n) => {
                    let data = pattern(seq, n);
                    seq += 1;
                    let k = w.write(&data).unwrap();
                    prop_assert_eq!(k, n.min(size - model.len()));
                    model.extend(&data[..k]);
                }
                Op::Read(n) => {
                    let mut out = vec![0u8; n];
                    let k = r.read(&mut out).unwrap();
                    prop_assert_eq!(k, n.min(model.len()));
                    let want: Vec<u8> = model.drain(..k).collect();
                    prop_assert_eq!(&out[..k], &want[..]);
                }
            }
            let avail = r.available().unwrap() as usize;
            let space = w.space().unwrap() as usize;
            prop_assert_eq!(avail, model.len());
            prop_assert_eq!(avail + space, size);
            prop_assert_eq!(w.prod().wrapping_sub(start) as usize % size, (r.cons().wrapping_sub(start) as usize + model.len()) % size);
        }
    }

    /// Whatever the peer writes as its producer index, the reader either
    /// reports exactly the window violation or reads at most a ring's worth
    /// of bytes; it never panics or accesses outside the buffer.
    #[test]
    fn hostile_producer(order in order(), start in start(), consumed in 0u32..3000, values in prop::collection::vec(any::<u32>(), 1..32), near in any::<bool>()) {
        let f = Fixture::new(order, start);
        let (mut w, mut r) = f.ends();
        let size = 1u32 << order;
        let consumed = consumed % (size + 1);
        w.write(&pattern(3, consumed as usize)).unwrap();
        let mut out = vec![0u8; consumed as usize];
        prop_assert_eq!(r.read(&mut out).unwrap(), consumed as usize);
        for v in values {
            // Half the time pick values near the legal window.
            let v = if near { r.cons().wrapping_add(v % (2 * size + 2)).wrapping_sub(size / 2) } else { v };
            // Every round starts with everything seen consumed, so the
            // window is [cons, cons + size].
            f.ctrl.store_u32(LEFT_PROD, v, Ordering::SeqCst);
            let legal = v.wrapping_sub(r.cons()) <= size;
            let mut buf = vec![0u8; 2 * size as usize];
            let cons_before = r.cons();
            match r.read(&mut buf) {
                Ok(n) => {
                    prop_assert!(legal, "value {v:#x} accepted");
                    prop_assert_eq!(n as u32, v.wrapping_sub(cons_before));
                    prop_assert!(n <= size as usize);
                }
                Err(ProtocolError::RingIndex { value, .. }) => {
                    prop_assert!(!legal, "value {v:#x} rejected");
                    prop_assert_eq!(value, v);
                    prop_assert_eq!(r.cons(), cons_before);
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
            // Restore a legal producer for the next round.
            f.ctrl.store_u32(LEFT_PROD, r.cons(), Ordering::SeqCst);
        }
    }

    /// Whatever the peer writes as its consumer index, the writer either
    /// reports the violation or writes at most the free space it computed.
    #[test]
    fn hostile_consumer(order in order(), start in start(), produced in 0u32..3000, values in prop::collection::vec(any::<u32>(), 1..32), near in any::<bool>()) {
        let f = Fixture::new(order, start);
        let (mut w, _) = f.ends();
        let size = 1u32 << order;
        let produced = produced % (size + 1);
        prop_assert_eq!(w.write(&pattern(5, produced as usize)).unwrap(), produced as usize);
        let mut last_ok = start;
        for v in values {
            let v = if near { w.prod().wrapping_sub(v % (2 * size + 2)).wrapping_add(size / 2) } else { v };
            f.ctrl.store_u32(LEFT_CONS, v, Ordering::SeqCst);
            let legal = v.wrapping_sub(last_ok) <= w.prod().wrapping_sub(last_ok);
            let prod_before = w.prod();
            match w.space() {
                Ok(space) => {
                    prop_assert!(legal, "value {v:#x} accepted");
                    prop_assert_eq!(space, size - prod_before.wrapping_sub(v));
                    last_ok = v;
                    let n = w.write(&vec![9u8; 2 * size as usize]).unwrap();
                    prop_assert_eq!(n as u32, space);
                }
                Err(ProtocolError::RingIndex { value, .. }) => {
                    prop_assert!(!legal, "value {v:#x} rejected");
                    prop_assert_eq!(value, v);
                    prop_assert_eq!(w.prod(), prod_before);
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
    }
}
