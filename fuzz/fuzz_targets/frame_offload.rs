//! Fuzz the frame offload code (`xen::frame::offload`) with frames a
//! hostile peer could send: arbitrary bytes, split into pool-page segments
//! at arbitrary lengths and page offsets, with arbitrary checksum and GSO
//! metadata, through `parse_headers`, `complete_checksum`, the `Segmenter`
//! (every segment) and `segment_to_frames` (under pool pressure). Nothing
//! may panic, and:
//! - parsing does not depend on the segment layout (same result as over
//!   the contiguous bytes), and parsed offsets are ordered, inside the
//!   frame and within `MAX_HEADER_LEN`;
//! - `complete_checksum` either fails leaving the frame untouched, or
//!   changes only the checksum field, marks the frame validated, and the
//!   checksum verifies with a reference sum written here;
//! - the segmenter yields `segments_total` segments whose ranges lie inside
//!   the source segments, each at most MSS, together exactly the frame's
//!   payload in order; with `partial == false` each segment's TCP checksum
//!   and IPv4 header checksum verify;
//! - `segment_to_frames` hands out frames equal to the segmenter's
//!   segments (a prefix of them when the pool runs dry);
//! - every page goes back to the pool.
//!
//! Input layout (missing bytes read as 0): byte 0 flags (bits 0-1 checksum
//! state, bit 2 GSO, bit 3 GSO TCPv6, bit 4 `partial`, bit 5 fix up the
//! Ethernet type, IP version and IP length to match the frame); bytes 1-2
//! MSS; byte 3 pages to hold back from the pool; byte 4 number of explicit
//! segments (mod 19); byte 5 filler: `256 * n` bytes of pattern appended
//! to the data (big frames from small inputs); then 4 bytes per explicit
//! segment (length, page offset); the rest is the frame's bytes.
#![no_main]

use std::cell::{Cell, RefCell};

use libfuzzer_sys::fuzz_target;
use xen::abi::PAGE_SIZE;
use xen::frame::offload::{
    complete_checksum, parse_bytes, parse_headers, segment_to_frames, Headers, OffloadError,
    Segmenter, L3, L4, MAX_HEADER_LEN,
};
use xen::frame::{Checksum, Frame, Gso, GsoType, MAX_FRAME_LEN, MAX_SEGMENTS};
use xen::memory::pool::PagePool;
use xen::memory::{Gfn, GuestMemory, LocalPages, SharedMem};

/// Pages in the pool: a full frame plus room for some output frames.
const POOL_PAGES: usize = MAX_SEGMENTS + 160;

/// RAM for the pool: a bump allocator over local pages.
struct Ram {
    pages: LocalPages,
    next: Cell<usize>,
    total: usize,
}

impl GuestMemory for Ram {
    fn alloc_pages(&self, n: usize) -> Option<Gfn> {
        let at = self.next.get();
        (at + n <= self.total).then(|| {
            self.next.set(at + n);
            Gfn(at as u64)
        })
    }
    fn free_pages(&self, _: Gfn, _: usize) {}
    fn alloc_hole(&self, _: usize) -> Option<Gfn> {
        None
    }
    fn free_hole(&self, _: Gfn, _: usize) {}
    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        let i = gfn.0 as usize;
        (i + n <= self.total).then(|| self.pages.mem().sub(i * PAGE_SIZE, n * PAGE_SIZE))
    }
}

thread_local! {
    /// One pool for all runs (the RAM lives for the whole process).
    static POOL: RefCell<PagePool> = RefCell::new({
        let ram: &'static Ram = Box::leak(Box::new(Ram {
            pages: LocalPages::new(POOL_PAGES),
            next: Cell::new(0),
            total: POOL_PAGES,
        }));
        PagePool::new(ram, POOL_PAGES).expect("pool")
    });
}

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
}

// --- reference checksum (byte pairs, the obvious way) ---------------------

fn ref_sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| (u64::from(c[0]) << 8) | u64::from(*c.get(1).unwrap_or(&0)))
        .sum()
}

fn ref_fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The pseudo header of packet `b` (parsed as `h`) for `len` L4 bytes.
fn ref_pseudo(b: &[u8], h: &Headers, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let (src, alen) = match h.l3 {
        L3::V4 => (h.l3_offset + 12, 4),
        L3::V6 => (h.l3_offset + 8, 16),
    };
    v.extend_from_slice(&b[src..src + alen]);
    v.extend_from_slice(&b[h.pseudo_dst_offset..h.pseudo_dst_offset + alen]);
    match h.l3 {
        L3::V4 => {
            v.extend_from_slice(&[0, h.l4.protocol()]);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        }
        L3::V6 => {
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, h.l4.protocol()]);
        }
    }
    v
}

/// The L4 checksum of `b[l4_offset..end]` verifies.
fn l4_verifies(b: &[u8], h: &Headers, end: usize) -> bool {
    let l4 = &b[h.l4_offset..end];
    ref_fold(ref_sum(&ref_pseudo(b, h, l4.len())) + ref_sum(l4)) == 0xffff
}

/// Build the frame described by the input in `pool`.
fn build(pool: &mut PagePool, inp: &mut Input<'_>, nsegs: usize, data: &[u8]) -> Frame {
    let mut specs = [(0usize, 0usize); MAX_SEGMENTS];
    for s in specs.iter_mut().take(nsegs) {
        *s = (usize::from(inp.u16()), usize::from(inp.u16()));
    }
    let mut f = Frame::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() && i < MAX_SEGMENTS {
        let left = data.len() - at;
        let (len, off) = if i < nsegs {
            let len = (1 + specs[i].0 % PAGE_SIZE).min(left);
            (len, specs[i].1 % (PAGE_SIZE - len + 1))
        } else {
            (left.min(PAGE_SIZE), 0)
        };
        let mut p = pool.alloc().expect("pool holds a whole frame");
        pool.bytes_mut(&mut p)[off..off + len].copy_from_slice(&data[at..at + len]);
        if let Err((p, e)) = f.push(p, off, len) {
            panic!("push {len}@{off}: {e}; page {p:?}");
        }
        at += len;
        i += 1;
    }
    f
}

fn check_headers(h: &Headers, len: usize) {
    assert!(h.l3_offset < h.l4_offset, "{h:?}");
    assert!(h.l4_offset <= h.payload_offset, "{h:?}");
    assert!(h.payload_offset <= h.l4_end && h.l4_end <= len, "{h:?}");
    assert!(h.payload_offset <= MAX_HEADER_LEN, "{h:?}");
    let alen = if h.l3 == L3::V4 { 4 } else { 16 };
    assert!(h.pseudo_dst_offset + alen <= h.l4_offset, "{h:?}");
    match h.l4 {
        L4::Tcp => assert!(h.payload_offset - h.l4_offset >= 20),
        L4::Udp => assert_eq!(h.payload_offset - h.l4_offset, 8),
        L4::Other(_) => assert_eq!(h.payload_offset, h.l4_offset),
    }
}

fn run(pool: &mut PagePool, data: &[u8]) {
    let mut inp = Input(data);
    let flags = inp.u8();
    let mss = inp.u16();
    let hold = usize::from(inp.u8());
    let nsegs = usize::from(inp.u8()) % (MAX_SEGMENTS + 1);
    let filler = usize::from(inp.u8()) * 256;
    let partial = flags & 0x10 != 0;
    // The frame's bytes: what is left after the segment specs, plus filler.
    let mut spec_bytes = Input(inp.0);
    let body = inp.0.get(nsegs * 4..).unwrap_or(&[]);
    let mut bytes: Vec<u8> = body.to_vec();
    bytes.extend((0..filler).map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8));
    bytes.truncate(MAX_FRAME_LEN);
    let v6 = flags & 0x08 != 0;
    if flags & 0x20 != 0 && bytes.len() >= 14 + 40 {
        // Make it look like IP so the fuzzer reaches the deeper layers.
        bytes[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        if v6 {
            bytes[14] = 0x60 | (bytes[14] & 0x0f);
            let plen = (bytes.len() - 54) as u16;
            bytes[18..20].copy_from_slice(&plen.to_be_bytes());
        } else {
            bytes[14] = 0x40 | (bytes[14] & 0x0f);
            let tot = (bytes.len() - 14) as u16;
            bytes[16..18].copy_from_slice(&tot.to_be_bytes());
        }
    }
    let mut f = build(pool, &mut spec_bytes, nsegs, &bytes);
    f.csum = match flags & 3 {
        0 => Checksum::Unverified,
        1 => Checksum::Validated,
        _ => Checksum::Partial,
    };
    if flags & 0x04 != 0 {
        f.gso = Some(Gso {
            kind: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
            mss,
        });
    }
    let orig = f.to_vec(pool);
    assert!(orig.len() <= bytes.len());

    // Parsing: layout-independent, well-formed offsets.
    let parsed = parse_headers(pool, &f);
    assert_eq!(parsed, parse_bytes(&orig));
    if let Ok(h) = &parsed {
        check_headers(h, orig.len());
    }

    // Checksum completion.
    let state = f.csum;
    match complete_checksum(pool, &mut f) {
        Ok(()) => {
            let h = parsed.expect("completed a frame that does not parse");
            let at = h.checksum_offset().expect("completed a non-TCP/UDP frame");
            let now = f.to_vec(pool);
            assert_eq!(now[..at], orig[..at]);
            assert_eq!(now[at + 2..], orig[at + 2..]);
            assert_eq!(f.csum, Checksum::Validated);
            assert!(l4_verifies(&now, &h, h.l4_end), "completed checksum");
            if h.l4 == L4::Udp {
                assert_ne!(&now[at..at + 2], &[0, 0]);
            }
        }
        Err(e) => {
            if let Ok(h) = parsed {
                assert_eq!(e, OffloadError::NotTcpUdp(h.l4.protocol()));
            }
            assert_eq!(f.to_vec(pool), orig, "failed completion wrote");
            assert_eq!(f.csum, state);
        }
    }
    let src = f.to_vec(pool);

    // Segmentation, described.
    let mut segs: Vec<Vec<u8>> = Vec::new();
    if let Ok(mut s) = Segmenter::new(pool, &f, partial) {
        let h = parsed.expect("segmenting a frame that does not parse");
        assert_eq!(h.l4, L4::Tcp);
        let mss = usize::from(mss);
        let total = s.segments_total();
        assert_eq!(total, h.payload_len().div_ceil(mss).max(1));
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let mut payload = 0;
        while let Some(plan) = s.next(pool, &f, &mut hdr) {
            assert_eq!(plan.header_len, h.payload_offset);
            assert!(plan.payload_len <= mss);
            let mut seg = hdr[..plan.header_len].to_vec();
            for r in plan.ranges() {
                let b = f
                    .segment(usize::from(r.segment))
                    .expect("range segment")
                    .bytes(pool);
                let (o, n) = (usize::from(r.offset), usize::from(r.len));
                assert!(n > 0 && o + n <= b.len(), "range {r:?} outside its segment");
                seg.extend_from_slice(&b[o..o + n]);
            }
            assert_eq!(seg.len(), plan.len());
            // The payload is the source's, in order.
            let from = h.payload_offset + payload;
            assert_eq!(seg[plan.header_len..], src[from..from + plan.payload_len]);
            payload += plan.payload_len;
            if !partial {
                assert!(l4_verifies(&seg, &h, seg.len()), "segment checksum");
                if h.l3 == L3::V4 {
                    let ihl = usize::from(seg[h.l3_offset] & 0x0f) * 4;
                    assert_eq!(
                        ref_fold(ref_sum(&seg[h.l3_offset..h.l3_offset + ihl])),
                        0xffff
                    );
                }
            }
            if segs.len() < POOL_PAGES {
                segs.push(seg);
            }
        }
        assert_eq!(payload, h.payload_len(), "segments carry the whole payload");
    }

    // Segmentation, materialised, with some pages held back.
    let held: Vec<_> = (0..hold.min(pool.available()))
        .map_while(|_| pool.alloc())
        .collect();
    let mut frames = Vec::new();
    let r = segment_to_frames(pool, &f, partial, &mut |fr| frames.push(fr));
    match r {
        Ok(n) => {
            assert_eq!(n, frames.len());
            assert!(segs.len() == n || segs.len() == POOL_PAGES);
        }
        Err(OffloadError::PoolExhausted) => assert!(frames.len() <= segs.len()),
        Err(_) => assert!(frames.is_empty() && segs.is_empty()),
    }
    for (fr, seg) in frames
        .into_iter()
        .zip(segs.iter().map(Some).chain(std::iter::repeat(None)))
    {
        assert!(fr.gso.is_none());
        if let Some(seg) = seg {
            assert_eq!(&fr.to_vec(pool), seg, "materialised segment");
        }
        fr.free(pool);
    }
    for p in held {
        pool.free(p);
    }
    f.free(pool);
    assert_eq!(pool.available(), POOL_PAGES, "page leak");
}

fuzz_target!(|data: &[u8]| {
    POOL.with(|p| run(&mut p.borrow_mut(), data));
});
