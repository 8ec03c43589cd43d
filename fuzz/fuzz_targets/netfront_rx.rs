//! Fuzz netfront's response parsers with a hostile backend: fuzz bytes
//! become ring slot contents and producer indices of a receive ring and a
//! transmit ring (shared pages in local memory), over requests posted as
//! the driver posts them. The receive side runs the driver's loop
//! (ingest, parse packet by packet, consume, repost); the transmit side
//! feeds every response to the id tracker. Nothing may panic, and:
//! - a delivered packet lies inside the responses consumed, has 1 to 18
//!   data slots in increasing positions, each inside its page, adding up
//!   to its length (1..=65535), GSO only of an advertised type with MSS > 0;
//! - a ring index error consumes nothing;
//! - a transmit response is accepted only for an outstanding id (and
//!   hands back exactly the value stored with it), a NULL response only
//!   while an extra-info slot is unanswered; ids are never issued twice.
//!
//! Input layout: byte 0 flags (advertised sg/gso), u32 ring start index,
//! u16 receive buffers to post, u16 transmit data slots, u8 extras; then
//! rounds, each an opcode byte and its arguments (missing bytes are 0).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use netfront::rx::{RxAssembler, RxConfig, RxOutcome, MAX_DATA_SLOTS, RX_WINDOW};
use netfront::tx::{TxAnswer, TxTracker};
use xen::abi::netif::{NetifExtraInfo, NetifRxRequest, NetifTxRequest};
use xen::abi::PAGE_SIZE;
use xen::frame::{GsoType, MAX_FRAME_LEN};
use xen::memory::{LocalPages, SharedMem};
use xen::ring::{FrontRing, NetifRx, NetifTx};

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
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

const RSP_PROD: usize = 8;
const ENTRIES: usize = 64;

/// The backend writes `n` slots of `slot` bytes from index `at` with input
/// bytes, then moves `rsp_prod`.
fn hostile_write(inp: &mut Input, mem: SharedMem, slot: usize, cur_prod: u32) {
    let n = usize::from(inp.u8() % 32);
    for k in 0..n {
        let i = (cur_prod.wrapping_add(k as u32) & 255) as usize;
        for b in 0..slot {
            mem.write_u8(ENTRIES + i * slot + b, inp.u8());
        }
    }
    let prod = match inp.u8() % 4 {
        // Publish what was written.
        0 | 1 => cur_prod.wrapping_add(n as u32),
        // Publish an arbitrary distance.
        2 => cur_prod.wrapping_add(u32::from(inp.u16())),
        // Anything.
        _ => inp.u32(),
    };
    mem.write_u32(RSP_PROD, prod);
}

fn rx_side(inp: &mut Input, mem: SharedMem, start: u32, cfg: RxConfig, posts: u16) {
    let mut ring = FrontRing::<NetifRx>::init_at(mem, start);
    let mut asm = RxAssembler::new(start);
    let post = |ring: &mut FrontRing<NetifRx>, asm: &mut RxAssembler, max: u16| {
        let mut n = 0;
        while n < max && !ring.is_full() && !asm.is_posted(ring.req_prod_pvt()) {
            let at = ring.req_prod_pvt();
            ring.push_request(&NetifRxRequest {
                id: (at & 255) as u16,
                pad: 0,
                gref: 8 + (at & 255),
            })
            .unwrap();
            asm.post(at);
            n += 1;
        }
        ring.push_requests_and_check_notify();
    };
    post(&mut ring, &mut asm, posts);
    for _round in 0..16 {
        if inp.done() {
            return;
        }
        // The backend's published index so far (it writes this itself).
        let cur = mem.read_u32(RSP_PROD);
        hostile_write(inp, mem, 8, cur);
        let before = asm.unparsed();
        let parse_at = asm.parse_index();
        let n = match asm.ingest(&mut ring) {
            Ok(n) => n,
            Err(_) => {
                assert_eq!(asm.unparsed(), before, "a ring error consumed responses");
                assert_eq!(asm.parse_index(), parse_at);
                return;
            }
        };
        assert_eq!(asm.unparsed(), before + n);
        assert!(asm.unparsed() as usize <= 256);
        loop {
            let avail = asm.unparsed() as usize;
            let out = match asm.next_packet(&cfg) {
                Ok(o) => o,
                // A violation: the driver disconnects.
                Err(e) => {
                    let _ = e.to_string();
                    return;
                }
            };
            match out {
                RxOutcome::Incomplete => break,
                RxOutcome::Dropped { slots, .. } => {
                    assert!(slots >= 1 && slots <= avail && slots <= RX_WINDOW);
                    asm.consume(slots);
                }
                RxOutcome::Packet(p) => {
                    assert!(p.slots >= 1 && p.slots <= avail && p.slots <= RX_WINDOW);
                    let d = p.data();
                    assert!(!d.is_empty() && d.len() <= MAX_DATA_SLOTS);
                    assert_eq!(d[0].slot, 0);
                    let mut last = None;
                    let mut total = 0;
                    for s in d {
                        assert!(usize::from(s.slot) < p.slots);
                        assert!(last.is_none_or(|l| s.slot > l));
                        last = Some(s.slot);
                        assert!(usize::from(s.offset) + usize::from(s.len) <= PAGE_SIZE);
                        total += usize::from(s.len);
                    }
                    assert_eq!(total, p.len);
                    assert!(p.len >= 1 && p.len <= MAX_FRAME_LEN);
                    if let Some(g) = p.gso {
                        assert!(g.mss > 0);
                        match g.kind {
                            GsoType::TcpV4 => assert!(cfg.gso_tcpv4),
                            GsoType::TcpV6 => assert!(cfg.gso_tcpv6),
                        }
                    }
                    if d.len() > 1 {
                        assert!(cfg.sg);
                    }
                    asm.consume(p.slots);
                }
            }
        }
        // Repost like the driver (some or all).
        let more = u16::from(inp.u8());
        post(&mut ring, &mut asm, more);
    }
}

fn tx_side(inp: &mut Input, mem: SharedMem, start: u32, data: u16, extras: u8) {
    let mut ring = FrontRing::<NetifTx>::init_at(mem, start);
    let mut t: TxTracker<u16> = TxTracker::new();
    let mut model: HashSet<u16> = HashSet::new();
    let mut model_extras = 0u32;
    let issue = |ring: &mut FrontRing<NetifTx>,
                 t: &mut TxTracker<u16>,
                 model: &mut HashSet<u16>,
                 model_extras: &mut u32,
                 data: u16,
                 extras: u8| {
        for _ in 0..data {
            if ring.is_full() {
                break;
            }
            let Ok(id) = t.alloc(0) else { break };
            assert!(model.insert(id), "id {id} issued twice");
            *t.get_mut(id).unwrap() = id;
            ring.push_request(&NetifTxRequest {
                gref: 8,
                offset: 0,
                flags: 0,
                id,
                size: 60,
            })
            .unwrap();
        }
        for _ in 0..extras {
            if ring.is_full() {
                break;
            }
            ring.push_request_as(&NetifExtraInfo::default()).unwrap();
            t.sent_extra();
            *model_extras += 1;
        }
        ring.push_requests_and_check_notify();
    };
    issue(
        &mut ring,
        &mut t,
        &mut model,
        &mut model_extras,
        data,
        extras,
    );
    for _round in 0..16 {
        if inp.done() {
            return;
        }
        let cur = mem.read_u32(RSP_PROD);
        hostile_write(inp, mem, 12, cur);
        if ring.poll_responses().is_err() {
            return;
        }
        while let Some(rsp) = ring.next_response() {
            match t.on_response(rsp) {
                Ok(TxAnswer::Extra) => {
                    assert!(model_extras > 0);
                    model_extras -= 1;
                }
                Ok(TxAnswer::Data { id, value, .. }) => {
                    assert_eq!(id, rsp.id);
                    assert_eq!(value, id, "value of another id");
                    assert!(model.remove(&id), "id {id} was not outstanding");
                }
                Err(e) => {
                    let _ = e.to_string();
                    return;
                }
            }
        }
        assert_eq!(t.outstanding(), model.len());
        assert_eq!(t.extras_outstanding(), model_extras);
        let (d, e) = (u16::from(inp.u8()), inp.u8() % 4);
        issue(&mut ring, &mut t, &mut model, &mut model_extras, d, e);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.u8();
    let cfg = RxConfig {
        sg: flags & 1 != 0,
        gso_tcpv4: flags & 2 != 0,
        gso_tcpv6: flags & 4 != 0,
    };
    let start = inp.u32();
    let posts = inp.u16() % 300;
    let tx_data = inp.u16() % 300;
    let tx_extras = inp.u8() % 8;
    let pages = LocalPages::new(2);
    let (rx_mem, tx_mem) = (pages.mem().page(0), pages.mem().page(1));
    if flags & 0x80 == 0 {
        rx_side(&mut inp, rx_mem, start, cfg, posts);
    } else {
        tx_side(&mut inp, tx_mem, start, tx_data, tx_extras);
    }
});
