//! Fuzz the vchan ring core: a server and a client endpoint over one local
//! control page (plus ring pages), driven by operations from the input,
//! interleaved with a hostile peer's writes into the control page (any
//! index, order, liveness or notify byte) and the ring bytes. Nothing may
//! panic, and:
//! - a read or write moves at most the bytes asked for and at most a ring;
//! - while neither index of a ring has been overwritten, every byte read
//!   from it is the next byte written to it (FIFO), and no error names it;
//! - a protocol error only names a ring whose indices were overwritten,
//!   and once an endpoint reports one it reports the same on every later
//!   data operation;
//! - `PeerClosed` only when the peer's liveness byte is 0 (for a read: and
//!   nothing is left to read).
//!
//! Input layout: byte 0 picks the ring orders; then operations, each an
//! opcode byte followed by its arguments (missing bytes read as 0).
#![no_main]

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use vchan::layout::{CLI_LIVE, SRV_LIVE};
use vchan::{Endpoint, ProtocolError, RingId, RingOrders, Role, VchanError};
use xen::memory::LocalPages;

/// Order pairs to pick from: every placement, kept small.
const ORDERS: &[(u16, u16)] = &[(10, 11), (11, 10), (12, 12), (10, 12), (13, 11), (12, 14)];

/// Reads bytes from the input, 0 when exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// What the model knows about one ring.
struct RingModel {
    id: RingId,
    /// Bytes written and not yet read, while the model is valid.
    fifo: VecDeque<u8>,
    /// An index of this ring was overwritten: contents are unknown, errors
    /// naming it are allowed.
    poked: bool,
    /// Next byte value to write (a counter stream).
    next: u8,
    /// Bytes read so far (mod 2^32): `fifo[k]` is at ring offset
    /// `(consumed + k) mod size`.
    consumed: u32,
}

struct Side {
    ep: Endpoint,
    /// The sticky error, once reported.
    broken: Option<VchanError>,
}

fn ring_of(e: &VchanError) -> Option<RingId> {
    match e {
        VchanError::Protocol(ProtocolError::RingIndex { ring, .. }) => Some(*ring),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (lo, ro) = ORDERS[input.u8() as usize % ORDERS.len()];
    let orders = RingOrders::validate(lo, ro).expect("valid orders");
    let lp = orders.location(RingId::Left).pages();
    let rp = orders.location(RingId::Right).pages();
    let pages = LocalPages::new(1 + lp + rp);
    let mem = pages.mem();
    let ctrl = mem.sub(0, 4096);
    let lmem = (lp > 0).then(|| mem.sub(4096, lp * 4096));
    let rmem = (rp > 0).then(|| mem.sub(4096 * (1 + lp), rp * 4096));
    Endpoint::init_server_page(&ctrl, orders);
    let (lbuf, rbuf) = Endpoint::ring_buffers(&ctrl, orders, lmem, rmem).expect("buffers");
    let ring_mem = [lbuf, rbuf];
    let mut sides = [
        Side {
            ep: Endpoint::new(Role::Server, ctrl, lbuf, rbuf).expect("server"),
            broken: None,
        },
        Side {
            ep: Endpoint::new(Role::Client, ctrl, rbuf, lbuf).expect("client"),
            broken: None,
        },
    ];
    sides[1].ep.client_connect();
    let mut rings = [
        RingModel {
            id: RingId::Left,
            fifo: VecDeque::new(),
            poked: false,
            next: 0,
            consumed: 0,
        },
        RingModel {
            id: RingId::Right,
            fifo: VecDeque::new(),
            poked: false,
            next: 0,
            consumed: 0,
        },
    ];
    let ring_index = |r: RingId| match r {
        RingId::Left => 0,
        RingId::Right => 1,
    };
    let mut buf = vec![0u8; 1 << 15];

    for _ in 0..512 {
        if input.0.is_empty() {
            break;
        }
        let op = input.u8();
        let who = (op & 1) as usize; // 0 = server, 1 = client
        let role = if who == 0 { Role::Server } else { Role::Client };
        let peer_live = if who == 0 { CLI_LIVE } else { SRV_LIVE };
        match op >> 1 {
            // Write `n` bytes of the ring's counter stream.
            0 | 1 => {
                let n = input.u16() as usize % buf.len();
                let ri = ring_index(role.write_ring());
                let start = rings[ri].next;
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = start.wrapping_add(i as u8);
                }
                let peer_gone = ctrl.load_u8(peer_live, Ordering::SeqCst) == 0;
                let side = &mut sides[who];
                let r = side.ep.write(&buf[..n]);
                check_sticky(side, &r);
                match r {
                    Ok(p) => {
                        assert!(!peer_gone, "wrote to a closed peer");
                        assert!(p.bytes <= n && p.bytes <= side.ep.write_size());
                        let m = &mut rings[ri];
                        m.next = start.wrapping_add(p.bytes as u8);
                        if !m.poked {
                            m.fifo.extend(&buf[..p.bytes]);
                            assert!(m.fifo.len() <= side.ep.write_size());
                        }
                    }
                    Err(VchanError::PeerClosed) => assert!(peer_gone),
                    Err(e) => allowed(&e, &rings),
                }
            }
            // Read up to `n` bytes.
            2 | 3 => {
                let n = input.u16() as usize % buf.len();
                let ri = ring_index(role.read_ring());
                let peer_gone = ctrl.load_u8(peer_live, Ordering::SeqCst) == 0;
                let side = &mut sides[who];
                let r = side.ep.read(&mut buf[..n]);
                check_sticky(side, &r);
                match r {
                    Ok(p) => {
                        assert!(p.bytes <= n && p.bytes <= side.ep.read_size());
                        let m = &mut rings[ri];
                        if !m.poked {
                            assert_eq!(p.bytes, n.min(m.fifo.len()), "ring {:?}", m.id);
                            for &b in &buf[..p.bytes] {
                                assert_eq!(Some(b), m.fifo.pop_front(), "ring {:?}", m.id);
                            }
                            m.consumed = m.consumed.wrapping_add(p.bytes as u32);
                        }
                    }
                    Err(VchanError::PeerClosed) => {
                        assert!(peer_gone);
                        assert!(rings[ri].poked || rings[ri].fifo.is_empty());
                    }
                    Err(e) => allowed(&e, &rings),
                }
            }
            // Peek at the counters.
            4 | 5 => {
                let side = &mut sides[who];
                let r = side.ep.data_ready();
                check_sticky(side, &r);
                match r {
                    Ok(n) => {
                        assert!(n <= side.ep.read_size());
                        let m = &rings[ring_index(role.read_ring())];
                        if !m.poked {
                            assert_eq!(n, m.fifo.len());
                        }
                    }
                    Err(e) => allowed(&e, &rings),
                }
                let r = side.ep.buffer_space();
                check_sticky(side, &r);
                match r {
                    Ok(n) => {
                        assert!(n <= side.ep.write_size());
                        let m = &rings[ring_index(role.write_ring())];
                        if !m.poked {
                            assert_eq!(n, side.ep.write_size() - m.fifo.len());
                        }
                    }
                    Err(e) => allowed(&e, &rings),
                }
            }
            // The hostile peer overwrites an index.
            6 => {
                let slot = input.u8() as usize % 4;
                let v = input.u32();
                ctrl.store_u32(4 * slot, v, Ordering::SeqCst);
                rings[slot / 2].poked = true;
            }
            // ... or a header byte past the indices (orders, liveness,
            // notify bytes: the orders are only read at attach).
            7 => {
                let off = 16 + input.u8() as usize % 8;
                let v = input.u8();
                ctrl.store_u8(off, v, Ordering::SeqCst);
            }
            // ... or ring contents (never read as anything but data: the
            // model follows the change).
            8 => {
                let ri = (input.u8() & 1) as usize;
                let size = ring_mem[ri].len();
                let off = input.u16() as usize % size;
                let v = input.u8();
                ring_mem[ri].write_u8(off, v);
                let m = &mut rings[ri];
                let k = off.wrapping_sub(m.consumed as usize) & (size - 1);
                if let Some(b) = m.fifo.get_mut(k) {
                    *b = v;
                }
            }
            // An orderly close by one side.
            9 => sides[who].ep.mark_closed(),
            // Notification requests.
            _ => sides[who].ep.request_notify(input.u8() & 3),
        }
    }
});

/// A protocol error must name a ring whose indices were overwritten.
fn allowed(e: &VchanError, rings: &[RingModel; 2]) {
    match ring_of(e) {
        Some(r) => assert!(
            rings.iter().any(|m| m.id == r && m.poked),
            "error {e} on an untouched ring"
        ),
        None => panic!("unexpected error {e:?}"),
    }
}

/// Once broken, always broken with the same error.
fn check_sticky<T: std::fmt::Debug>(side: &mut Side, r: &Result<T, VchanError>) {
    if let Some(b) = &side.broken {
        assert_eq!(r.as_ref().err(), Some(b), "broken endpoint recovered");
        return;
    }
    if let Err(e) = r {
        if ring_of(e).is_some() {
            side.broken = Some(e.clone());
            assert!(side.ep.broken().is_some());
        }
    }
}
