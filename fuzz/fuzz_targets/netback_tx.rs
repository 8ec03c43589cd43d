//! Fuzz netback's tx request parser over a real shared ring: the input is
//! a hostile frontend's tx ring page (request and extra-info slots, the
//! request producer, the starting index) plus the GSO types the backend
//! offered, and bytes it scribbles into the ring between packets (the
//! frontend races us). The backend loop is the one `Netback::poll` runs:
//! validate the producer index, then parse packets until the published
//! requests run out or the chain is refused. Nothing may panic, and:
//! - an index the ring refuses is refused before anything is consumed;
//! - a parsed packet consumed exactly `ring_slots()` slots, has 1 to 18
//!   data slots of 1..=4096 bytes that stay inside their page, lengths
//!   summing to its total, at most one extra per type, and GSO metadata
//!   only of an offered type with a non-zero MSS;
//! - no more slots are consumed than were published.
//!
//! Input layout: `start: u32`, `prod delta: u32`, `flags: u8` (bit 0/1:
//! GSO TCPv4/TCPv6 offered; bit 2: take `prod delta` as the absolute
//! producer), `scribble count: u8`, then the ring's slot bytes (up to
//! 256 × 12), then scribbles of (offset: u16, byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netback::tx::{parse_packet, TxOffered, MAX_EXTRAS};
use xen::frame::GsoType;
use xen::memory::LocalPages;
use xen::ring::{BackRing, NetifTx};

const SLOTS_BYTES: usize = 256 * 12;

fn u32_at(d: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, x) in b.iter_mut().enumerate() {
        *x = d.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let start = u32_at(data, 0);
    let delta = u32_at(data, 4);
    let flags = data.get(8).copied().unwrap_or(0);
    let scribbles = usize::from(data.get(9).copied().unwrap_or(0));
    let body = data.get(10..).unwrap_or(&[]);
    let (slots, rest) = body.split_at(body.len().min(SLOTS_BYTES));

    let pages = LocalPages::new(1);
    let mem = pages.mem();
    mem.write_bytes(64, slots);
    let prod = if flags & 4 != 0 {
        delta
    } else {
        start.wrapping_add(delta % 300)
    };
    mem.write_u32(0, prod);
    let offered = TxOffered {
        gso_tcpv4: flags & 1 != 0,
        gso_tcpv6: flags & 2 != 0,
    };

    let mut ring = BackRing::<NetifTx>::attach_at(mem, start);
    let available = match ring.poll_requests() {
        Ok(n) => n,
        Err(_) => {
            assert_eq!(ring.req_cons(), start, "a refused index consumes nothing");
            return;
        }
    };
    assert!(available <= BackRing::<NetifTx>::SIZE);
    assert_eq!(prod.wrapping_sub(start), available);

    let mut scribble = rest.chunks_exact(3).take(scribbles);
    let mut consumed: u32 = 0;
    while ring.unconsumed_requests() > 0 {
        let before = ring.unconsumed_requests();
        let result = parse_packet(&mut ring, offered);
        let used = before - ring.unconsumed_requests();
        consumed += used;
        let Ok(p) = result else { break };
        assert_eq!(p.ring_slots() as u32, used);
        let d = p.data();
        assert!(!d.is_empty() && d.len() <= 18);
        assert!(usize::from(p.extras) <= MAX_EXTRAS);
        let mut sum = 0usize;
        for s in d {
            assert!(s.len > 0);
            assert!(usize::from(s.offset) + usize::from(s.len) <= 4096);
            sum += usize::from(s.len);
        }
        assert_eq!(sum, usize::from(p.total));
        if let Some(g) = p.gso {
            assert!(g.mss > 0);
            match g.kind {
                GsoType::TcpV4 => assert!(offered.gso_tcpv4),
                GsoType::TcpV6 => assert!(offered.gso_tcpv6),
            }
        }
        // The frontend rewrites slots behind our back.
        if let Some(s) = scribble.next() {
            let off = 64 + usize::from(u16::from_le_bytes([s[0], s[1]])) % SLOTS_BYTES;
            mem.write_u8(off, s[2]);
        }
    }
    assert!(consumed <= available);
});
