//! The frame: one Ethernet packet as it travels between the vif drivers
//! and the engine, held in [`PagePool`] pages without being copied.
//!
//! A frame is up to [`MAX_SEGMENTS`] segments, each a byte range of one
//! pool page, in order; its bytes are the concatenation of the segments.
//! The drivers fill segments exactly as the ring slots describe them (one
//! segment per data slot), so a frame received from one ring can be handed
//! to another without moving its bytes. Offload metadata travels with it:
//! whether the L4 checksum is complete ([`Checksum`]) and whether it is a
//! GSO super-packet the receiver must segment ([`Gso`]).
//!
//! Invariants (upheld by the constructors): every segment lies inside its
//! page (`offset + len <= 4096`) and is non-empty; `len()` is the sum of the
//! segment lengths; at most [`MAX_SEGMENTS`] segments.
//!
//! A frame owns its pages: give it back with [`Frame::free`]. Frames and
//! [`FrameQueue`] never allocate after construction.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::abi::netif::XEN_NETIF_NR_SLOTS_MIN;
use crate::abi::PAGE_SIZE;
use crate::memory::pool::{PagePool, PoolPage};

pub mod offload;

/// Most segments in one frame: the most data slots a netif packet may use
/// (`XEN_NETIF_NR_SLOTS_MIN`), so any frame fits any peer's ring.
pub const MAX_SEGMENTS: usize = XEN_NETIF_NR_SLOTS_MIN;

/// Largest frame: the netif limit (`XEN_NETIF_MAX_TX_SIZE`).
pub const MAX_FRAME_LEN: usize = crate::abi::netif::XEN_NETIF_MAX_TX_SIZE;

/// The state of the frame's L4 (TCP/UDP) checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checksum {
    /// Nothing known: the checksum is whatever the sender put there and
    /// nobody vouched for it.
    #[default]
    Unverified,
    /// The data was checked (or generated) by a trusted party and is intact
    /// (`data_validated`, Linux CHECKSUM_UNNECESSARY).
    Validated,
    /// The L4 checksum field holds only the pseudo-header sum; whoever puts
    /// the frame on a wire or hands it to a stack that wants full checksums
    /// completes it (`csum_blank`, Linux CHECKSUM_PARTIAL).
    Partial,
}

/// Which protocol a GSO super-packet segments as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoType {
    /// TCP over IPv4 (`XEN_NETIF_GSO_TYPE_TCPV4`).
    TcpV4,
    /// TCP over IPv6 (`XEN_NETIF_GSO_TYPE_TCPV6`).
    TcpV6,
}

/// GSO metadata: this frame is one large TCP packet to be cut into
/// segments of at most `mss` payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// The protocol.
    pub kind: GsoType,
    /// Maximum segment size (TCP payload bytes per segment), non-zero.
    pub mss: u16,
}

/// One byte range of one pool page.
#[derive(Debug)]
pub struct Segment {
    page: PoolPage,
    offset: u16,
    len: u16,
}

impl Segment {
    /// The page.
    pub fn page(&self) -> &PoolPage {
        &self.page
    }
    /// Where the bytes start in the page.
    pub fn offset(&self) -> u16 {
        self.offset
    }
    /// How many bytes.
    pub fn len(&self) -> u16 {
        self.len
    }
    /// Never true (segments are non-empty); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The bytes.
    pub fn bytes<'a>(&'a self, pool: &'a PagePool) -> &'a [u8] {
        &pool.bytes(&self.page)[usize::from(self.offset)..][..usize::from(self.len)]
    }
    /// The bytes, writable (only they count as written: see the pool's
    /// dirty extents).
    pub fn bytes_mut<'a>(&'a mut self, pool: &'a PagePool) -> &'a mut [u8] {
        let (o, l) = (usize::from(self.offset), usize::from(self.len));
        pool.range_mut(&mut self.page, o, l)
    }
    /// Zero the rest of the page (what lies outside the segment and may
    /// hold stale bytes), before the page is shown to a peer whole.
    pub fn scrub_outside(&mut self, pool: &PagePool) {
        pool.scrub_outside(
            &mut self.page,
            usize::from(self.offset),
            usize::from(self.len),
        );
    }
    /// Give the page back.
    pub fn into_page(self) -> PoolPage {
        self.page
    }
}

/// Why a segment could not be added to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Already [`MAX_SEGMENTS`] segments.
    TooManySegments,
    /// `offset + len` beyond the page, or `len == 0`.
    BadRange {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
    /// The frame would exceed [`MAX_FRAME_LEN`].
    TooLong,
    /// The pool ran out of pages.
    PoolExhausted,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} segments"),
            FrameError::BadRange { offset, len } => {
                write!(f, "segment {offset:#x}+{len:#x} does not fit a page")
            }
            FrameError::TooLong => write!(f, "frame longer than {MAX_FRAME_LEN} bytes"),
            FrameError::PoolExhausted => write!(f, "packet pool exhausted"),
        }
    }
}

/// A packet in pool pages (see the module doc).
#[derive(Debug, Default)]
pub struct Frame {
    segs: [Option<Segment>; MAX_SEGMENTS],
    nsegs: u8,
    len: u32,
    /// The L4 checksum state.
    pub csum: Checksum,
    /// GSO metadata, if this is a super-packet.
    pub gso: Option<Gso>,
}

impl Frame {
    /// An empty frame.
    pub fn new() -> Frame {
        Frame::default()
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True with no segments.
    pub fn is_empty(&self) -> bool {
        self.nsegs == 0
    }

    /// Number of segments.
    pub fn num_segments(&self) -> usize {
        usize::from(self.nsegs)
    }

    /// Segment `i`.
    pub fn segment(&self, i: usize) -> Option<&Segment> {
        self.segs.get(i)?.as_ref()
    }

    /// Segment `i`, mutable.
    pub fn segment_mut(&mut self, i: usize) -> Option<&mut Segment> {
        self.segs.get_mut(i)?.as_mut()
    }

    /// The segments in order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segs[..self.num_segments()].iter().flatten()
    }

    /// Append `len` bytes of `page` at `offset`. On error the page is
    /// handed back with the reason.
    pub fn push(
        &mut self,
        page: PoolPage,
        offset: usize,
        len: usize,
    ) -> Result<(), (PoolPage, FrameError)> {
        if self.num_segments() == MAX_SEGMENTS {
            return Err((page, FrameError::TooManySegments));
        }
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > PAGE_SIZE) {
            return Err((page, FrameError::BadRange { offset, len }));
        }
        if self.len() + len > MAX_FRAME_LEN {
            return Err((page, FrameError::TooLong));
        }
        self.segs[self.num_segments()] = Some(Segment {
            page,
            offset: offset as u16,
            len: len as u16,
        });
        self.nsegs += 1;
        self.len += len as u32;
        Ok(())
    }

    /// Remove and return the last segment.
    pub fn pop(&mut self) -> Option<Segment> {
        let i = self.num_segments().checked_sub(1)?;
        let s = self.segs[i].take()?;
        self.nsegs -= 1;
        self.len -= u32::from(s.len);
        Some(s)
    }

    /// Narrow segment `i` to `len` bytes starting `skip` bytes further into
    /// the page (dropping bytes at either end); the segment must stay
    /// non-empty.
    pub fn trim_segment(&mut self, i: usize, skip: usize, len: usize) -> Result<(), FrameError> {
        let n = self.num_segments();
        let s = self
            .segs
            .get_mut(i)
            .filter(|_| i < n)
            .and_then(Option::as_mut)
            .ok_or(FrameError::BadRange { offset: skip, len })?;
        if len == 0 || skip.checked_add(len).is_none_or(|e| e > usize::from(s.len)) {
            return Err(FrameError::BadRange { offset: skip, len });
        }
        self.len -= u32::from(s.len) - len as u32;
        s.offset += skip as u16;
        s.len = len as u16;
        Ok(())
    }

    /// Return every page to `pool`.
    pub fn free(mut self, pool: &mut PagePool) {
        while let Some(s) = self.pop() {
            pool.free(s.page);
        }
    }

    /// A frame holding a copy of `data`, packed into whole pages (for
    /// frames the firewall generates itself and for tests). On failure the
    /// pages taken so far go back to the pool.
    pub fn from_bytes(pool: &mut PagePool, data: &[u8]) -> Result<Frame, FrameError> {
        if data.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLong);
        }
        let mut f = Frame::new();
        for chunk in data.chunks(PAGE_SIZE) {
            let Some(mut page) = pool.alloc() else {
                f.free(pool);
                return Err(FrameError::PoolExhausted);
            };
            pool.range_mut(&mut page, 0, chunk.len())
                .copy_from_slice(chunk);
            if let Err((page, e)) = f.push(page, 0, chunk.len()) {
                pool.free(page);
                f.free(pool);
                return Err(e);
            }
        }
        Ok(f)
    }

    /// Copy `out.len()` bytes starting at byte `off` of the frame into
    /// `out`; returns how many were available (fewer at the end).
    pub fn read(&self, pool: &PagePool, mut off: usize, out: &mut [u8]) -> usize {
        let mut done = 0;
        for s in self.segments() {
            let b = s.bytes(pool);
            if off >= b.len() {
                off -= b.len();
                continue;
            }
            let n = (b.len() - off).min(out.len() - done);
            out[done..done + n].copy_from_slice(&b[off..off + n]);
            done += n;
            off = 0;
            if done == out.len() {
                break;
            }
        }
        done
    }

    /// Overwrite bytes starting at byte `off` of the frame with `data`;
    /// returns how many fitted.
    pub fn write(&mut self, pool: &PagePool, mut off: usize, data: &[u8]) -> usize {
        let mut done = 0;
        let n = self.num_segments();
        for s in self.segs[..n].iter_mut().flatten() {
            let b = s.bytes_mut(pool);
            if off >= b.len() {
                off -= b.len();
                continue;
            }
            let k = (b.len() - off).min(data.len() - done);
            b[off..off + k].copy_from_slice(&data[done..done + k]);
            done += k;
            off = 0;
            if done == data.len() {
                break;
            }
        }
        done
    }

    /// All bytes as one vector (tests and diagnostics only: allocates).
    pub fn to_vec(&self, pool: &PagePool) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for s in self.segments() {
            v.extend_from_slice(s.bytes(pool));
        }
        v
    }
}

/// A bounded FIFO of frames that never allocates after construction.
#[derive(Debug)]
pub struct FrameQueue {
    q: VecDeque<Frame>,
    cap: usize,
}

impl FrameQueue {
    /// A queue holding at most `cap` frames.
    pub fn with_capacity(cap: usize) -> FrameQueue {
        FrameQueue {
            q: VecDeque::with_capacity(cap),
            cap,
        }
    }
    /// Frames queued.
    pub fn len(&self) -> usize {
        self.q.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
    /// True when full.
    pub fn is_full(&self) -> bool {
        self.q.len() >= self.cap
    }
    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }
    /// Append; a full queue hands the frame back.
    pub fn push(&mut self, f: Frame) -> Result<(), Frame> {
        if self.is_full() {
            return Err(f);
        }
        self.q.push_back(f);
        Ok(())
    }
    /// Put a frame back at the head (after a failed send).
    pub fn push_front(&mut self, f: Frame) -> Result<(), Frame> {
        if self.is_full() {
            return Err(f);
        }
        self.q.push_front(f);
        Ok(())
    }
    /// Take the oldest frame.
    pub fn pop(&mut self) -> Option<Frame> {
        self.q.pop_front()
    }
    /// The oldest frame.
    pub fn front(&self) -> Option<&Frame> {
        self.q.front()
    }
    /// Free every queued frame.
    pub fn clear(&mut self, pool: &mut PagePool) {
        while let Some(f) = self.q.pop_front() {
            f.free(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Gfn, GuestMemory, LocalPages, SharedMem};

    /// A frame moves by value through every queue on the data path, several
    /// times per packet: keep it small (4-byte page handles, niche-packed
    /// segments).
    #[test]
    fn frame_stays_small() {
        assert_eq!(core::mem::size_of::<Segment>(), 8);
        assert_eq!(core::mem::size_of::<Option<Segment>>(), 8);
        assert!(
            core::mem::size_of::<Frame>() <= 160,
            "{}",
            core::mem::size_of::<Frame>()
        );
    }

    struct Ram(LocalPages, core::cell::Cell<usize>, usize);
    impl GuestMemory for Ram {
        fn alloc_pages(&self, n: usize) -> Option<Gfn> {
            let at = self.1.get();
            (at + n <= self.2).then(|| {
                self.1.set(at + n);
                Gfn(at as u64)
            })
        }
        fn free_pages(&self, _: Gfn, _: usize) {}
        fn alloc_hole(&self, _: usize) -> Option<Gfn> {
            None
        }
        fn free_hole(&self, _: Gfn, _: usize) {}
        fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
            Some(self.0.mem().sub(gfn.0 as usize * PAGE_SIZE, n * PAGE_SIZE))
        }
    }
    fn pool(n: usize) -> (Ram, PagePool) {
        let ram = Ram(LocalPages::new(n), core::cell::Cell::new(0), n);
        let p = PagePool::new(&ram, n).unwrap();
        (ram, p)
    }

    #[test]
    fn bytes_round_trip_across_segments() {
        let (_ram, mut pool) = pool(40);
        let data: Vec<u8> = (0..65535u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut f = Frame::from_bytes(&mut pool, &data).unwrap();
        assert_eq!(f.len(), 65535);
        assert_eq!(f.num_segments(), 16);
        assert_eq!(f.to_vec(&pool), data);
        let mut buf = [0u8; 100];
        assert_eq!(f.read(&pool, 4090, &mut buf), 100);
        assert_eq!(&buf[..], &data[4090..4190]);
        assert_eq!(f.read(&pool, 65500, &mut buf), 35);
        assert_eq!(f.write(&pool, 4095, &[1, 2, 3]), 3);
        assert_eq!(f.read(&pool, 4094, &mut buf[..5]), 5);
        assert_eq!(&buf[..5], &[data[4094], 1, 2, 3, data[4098]]);
        f.trim_segment(0, 10, 100).unwrap();
        assert_eq!(f.len(), 65535 - 4096 + 100);
        assert_eq!(f.segment(0).unwrap().bytes(&pool), &data[10..110]);
        assert!(f.trim_segment(0, 1, 100).is_err());
        assert!(f.trim_segment(16, 0, 1).is_err());
        f.free(&mut pool);
        assert_eq!(pool.available(), 40);
        assert_eq!(
            Frame::from_bytes(&mut pool, &[0; 65536]).unwrap_err(),
            FrameError::TooLong
        );
    }

    #[test]
    fn push_checks_ranges_and_limits() {
        let (_ram, mut pool) = pool(20);
        let mut f = Frame::new();
        let p = pool.alloc().unwrap();
        let (p, e) = f.push(p, 4000, 97).unwrap_err();
        assert_eq!(
            e,
            FrameError::BadRange {
                offset: 4000,
                len: 97
            }
        );
        let (p, e) = f.push(p, 0, 0).unwrap_err();
        assert!(matches!(e, FrameError::BadRange { .. }));
        f.push(p, 4000, 96).unwrap();
        for _ in 1..MAX_SEGMENTS {
            f.push(pool.alloc().unwrap(), 0, 1).unwrap();
        }
        let (p, e) = f.push(pool.alloc().unwrap(), 0, 1).unwrap_err();
        assert_eq!(e, FrameError::TooManySegments);
        pool.free(p);
        assert_eq!(f.len(), 96 + 17);
        f.free(&mut pool);
        assert_eq!(pool.available(), 20);
    }

    #[test]
    fn exhausted_pool_gives_everything_back() {
        let (_ram, mut pool) = pool(3);
        assert_eq!(
            Frame::from_bytes(&mut pool, &[1; 4 * 4096]).unwrap_err(),
            FrameError::PoolExhausted
        );
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn queue_is_bounded() {
        let (_ram, mut pool) = pool(4);
        let mut q = FrameQueue::with_capacity(2);
        q.push(Frame::from_bytes(&mut pool, b"a").unwrap()).unwrap();
        q.push(Frame::from_bytes(&mut pool, b"b").unwrap()).unwrap();
        let f = q
            .push(Frame::from_bytes(&mut pool, b"c").unwrap())
            .unwrap_err();
        f.free(&mut pool);
        let a = q.pop().unwrap();
        assert_eq!(a.to_vec(&pool), b"a");
        a.free(&mut pool);
        q.clear(&mut pool);
        assert_eq!(pool.available(), 4);
    }
}
