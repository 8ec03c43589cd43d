//! The packet page pool: pages of our own RAM that hold frames on their
//! way through the firewall, handed out as unique handles so that the code
//! which owns a page may read and write it as an ordinary byte slice.
//!
//! # Why this is the one place frames become `&[u8]`
//!
//! The rest of this module never forms references into memory a peer can
//! write. Pool pages are different: while a [`PoolPage`] handle exists, no
//! other domain can write the page, because
//! - the pool hands out each page at most once (a handle is neither `Clone`
//!   nor `Copy`, and [`PagePool::free`] takes it back by value);
//! - lending a page *writable* to a peer (netfront rx buffers) consumes the
//!   handle and yields a [`LentPage`], which has no byte accessors; the
//!   handle comes back only from [`crate::gnttab::GrantTable::reclaim`],
//!   after the grant was revoked (which fails while the peer holds it);
//! - read-only grants (netfront tx) leave the peer nothing to write.
//!
//! The one writer the borrow checker cannot see is Xen itself, copying into
//! a page named by its GFN during our own `GNTTABOP_copy`. That happens
//! only inside the hypercall, which callers issue while holding no slice of
//! the destination page (slices borrow the handle, and the copy batch is
//! built from [`PagePool::gfn`] before the call and read after it).
//!
//! Steady state allocates nothing: the free list is a pre-sized stack.
//!
//! # Dirty extents
//!
//! A read-only grant shows the peer a whole page, so before a page goes
//! out (netfront tx) everything around the frame's bytes must be zero: a
//! pool page may still hold an earlier packet, maybe one the rules denied.
//! Clearing the rest of every page costs a 4 KiB memset per 64-byte frame,
//! so the pool keeps for each page the extent `[lo, hi)` outside which it is known to
//! be zero, widened by every write path (whole-page access: the whole
//! page; a segment's bytes or a grant copy into it: that range; a page a
//! peer could write: the whole page) and narrowed only by
//! [`PagePool::scrub_outside`], which clears exactly the stale part.
//! New pools start with every page dirty, so nothing depends on the
//! platform handing out zeroed memory.

use alloc::vec::Vec;
use core::cell::Cell;
use core::num::NonZeroU16;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use super::{Gfn, GuestMemory, SharedMem};
use crate::abi::{GrantRef, PAGE_SIZE};

/// Pages per allocation from the platform: a pool is built from chunks so
/// that it does not need one large contiguous region.
const CHUNK_PAGES: usize = 64;

/// Distinguishes pools so a handle cannot be used with another pool
/// (ids cycle through 1..=65535: a check against misuse, not a secret).
static NEXT_POOL_ID: AtomicU32 = AtomicU32::new(0);

/// Most pages one pool holds (page indices are 16-bit, which keeps a
/// handle, and so a [`crate::frame::Frame`], small to move).
pub const MAX_POOL_PAGES: usize = 1 << 16;

const PAGE: u16 = PAGE_SIZE as u16;

/// A page of a [`PagePool`], owned exclusively by whoever holds the handle.
/// Return it with [`PagePool::free`]; dropping it leaks the page (counted by
/// [`PagePool::in_use`]).
#[derive(Debug, PartialEq, Eq)]
pub struct PoolPage {
    pool: NonZeroU16,
    idx: u16,
}

impl PoolPage {
    /// The page's index in its pool (stable identity for tables keyed by
    /// page).
    pub fn index(&self) -> u32 {
        u32::from(self.idx)
    }
}

/// A pool page granted writable to a peer: no byte access until the grant
/// is revoked and the page reclaimed
/// ([`crate::gnttab::GrantTable::reclaim`]).
#[derive(Debug, PartialEq, Eq)]
pub struct LentPage {
    pub(crate) pool: NonZeroU16,
    pub(crate) idx: u16,
    pub(crate) gref: GrantRef,
}

impl LentPage {
    /// The grant reference the peer was given.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }
    /// The page's index in its pool.
    pub fn index(&self) -> u32 {
        u32::from(self.idx)
    }
}

/// Why a pool could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The platform had no RAM for the requested pages.
    OutOfMemory {
        /// Pages requested.
        pages: usize,
    },
    /// More pages than a pool can index ([`MAX_POOL_PAGES`]).
    TooLarge {
        /// Pages requested.
        pages: usize,
    },
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PoolError::OutOfMemory { pages } => {
                write!(f, "no RAM for a packet pool of {pages} pages")
            }
            PoolError::TooLarge { pages } => {
                write!(
                    f,
                    "a packet pool of {pages} pages is more than {MAX_POOL_PAGES}"
                )
            }
        }
    }
}

struct Chunk {
    gfn: Gfn,
    mem: SharedMem,
}

/// A fixed set of RAM pages for packet buffers.
pub struct PagePool {
    id: NonZeroU16,
    chunks: Vec<Chunk>,
    pages: u32,
    free: Vec<u16>,
    /// Each page's extent `lo..hi` outside which it is known to be zero
    /// (module doc). A `Cell`: writers hold the page's unique handle, so
    /// only they touch its entry, but through `&self`.
    dirty: Vec<Cell<(u16, u16)>>,
    low_water: usize,
}

impl PagePool {
    /// A pool of `pages` pages from `mem` (at most [`MAX_POOL_PAGES`]).
    pub fn new<M: GuestMemory + ?Sized>(mem: &M, pages: usize) -> Result<PagePool, PoolError> {
        if pages > MAX_POOL_PAGES {
            return Err(PoolError::TooLarge { pages });
        }
        let mut chunks: Vec<Chunk> = Vec::with_capacity(pages.div_ceil(CHUNK_PAGES));
        let mut left = pages;
        while left > 0 {
            let n = left.min(CHUNK_PAGES);
            let got = mem
                .alloc_pages(n)
                .and_then(|gfn| mem.pages(gfn, n).map(|m| (gfn, m)));
            let Some((gfn, m)) = got else {
                for c in chunks.drain(..) {
                    mem.free_pages(c.gfn, c.mem.len() / PAGE_SIZE);
                }
                return Err(PoolError::OutOfMemory { pages });
            };
            chunks.push(Chunk { gfn, mem: m });
            left -= n;
        }
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed) % 0xffff + 1;
        let id = NonZeroU16::new(id as u16).expect("1..=65535");
        Ok(PagePool {
            id,
            chunks,
            pages: pages as u32,
            // Pop from the end: hand out low indices first.
            free: (0..pages).rev().map(|i| i as u16).collect(),
            dirty: (0..pages).map(|_| Cell::new((0, PAGE))).collect(),
            low_water: pages,
        })
    }

    /// Pages in the pool.
    pub fn capacity(&self) -> usize {
        self.pages as usize
    }

    /// Pages free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Pages handed out and not yet returned (lent pages included).
    pub fn in_use(&self) -> usize {
        self.capacity() - self.available()
    }

    /// The fewest pages that were ever free at once.
    pub fn low_water(&self) -> usize {
        self.low_water
    }

    /// Take a page; `None` when the pool is exhausted. The page holds
    /// whatever its previous user left in it.
    pub fn alloc(&mut self) -> Option<PoolPage> {
        let idx = self.free.pop()?;
        self.low_water = self.low_water.min(self.free.len());
        Some(PoolPage { pool: self.id, idx })
    }

    /// Take a page and zero it (for buffers a peer will read).
    pub fn alloc_zeroed(&mut self) -> Option<PoolPage> {
        let mut p = self.alloc()?;
        self.bytes_mut(&mut p).fill(0);
        self.dirty[usize::from(p.idx)].set((0, 0));
        Some(p)
    }

    /// Return a page.
    ///
    /// # Panics
    /// If the page belongs to another pool (a bug in the caller).
    pub fn free(&mut self, page: PoolPage) {
        self.check(page.pool);
        debug_assert!(!self.free.contains(&page.idx), "double free of pool page");
        self.free.push(page.idx);
    }

    /// The page's guest frame number, as the destination of a grant copy
    /// of `len` bytes at `off` (recorded in the page's dirty extent).
    pub fn gfn_for_write(&self, page: &mut PoolPage, off: usize, len: usize) -> Gfn {
        self.mark_written(page, off, len);
        self.gfn(page)
    }

    /// The extent `lo..hi` outside which the page is known to be zero.
    pub fn dirty(&self, page: &PoolPage) -> (usize, usize) {
        self.check(page.pool);
        let (lo, hi) = self.dirty[usize::from(page.idx)].get();
        (usize::from(lo), usize::from(hi))
    }

    /// Note that `off..off + len` of the page may have been written.
    pub fn mark_written(&self, page: &mut PoolPage, off: usize, len: usize) {
        self.check(page.pool);
        if len == 0 {
            return;
        }
        let end = off.saturating_add(len).min(PAGE_SIZE) as u16;
        let off = off.min(PAGE_SIZE) as u16;
        let e = &self.dirty[usize::from(page.idx)];
        let (lo, hi) = e.get();
        e.set(if lo >= hi {
            (off, end)
        } else {
            (lo.min(off), hi.max(end))
        });
    }

    /// Zero everything of the page outside `off..off + len` that may be
    /// non-zero (module doc), so the page can be shown to a peer whole.
    pub fn scrub_outside(&self, page: &mut PoolPage, off: usize, len: usize) {
        self.check(page.pool);
        let end = off.saturating_add(len).min(PAGE_SIZE);
        let off = off.min(end);
        let (lo, hi) = self.dirty(page);
        if lo < hi {
            let p = self.ptr(page.idx);
            // SAFETY: as for `bytes_mut`: the exclusive borrow of the
            // unique handle makes this the only reference to the page.
            let b = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), PAGE_SIZE) };
            if lo < off {
                b[lo..off.min(hi)].fill(0);
            }
            if hi > end {
                b[end.max(lo)..hi].fill(0);
            }
        }
        self.dirty[usize::from(page.idx)].set((off as u16, end as u16));
    }

    /// The page's guest frame number (for grants and grant copies).
    pub fn gfn(&self, page: &PoolPage) -> Gfn {
        self.check(page.pool);
        self.gfn_of(page.idx)
    }

    /// The frame number of a lent page.
    pub fn lent_gfn(&self, page: &LentPage) -> Gfn {
        self.check(page.pool);
        self.gfn_of(page.idx)
    }

    /// The page's bytes.
    pub fn bytes<'a>(&'a self, page: &'a PoolPage) -> &'a [u8] {
        self.check(page.pool);
        let p = self.ptr(page.idx);
        // SAFETY: `ptr` points at a live page of this pool (chunks are
        // never freed while the pool lives, and the returned borrow keeps
        // the pool alive). The handle is unique (module doc), so no `&mut`
        // to this page exists while `page` is borrowed shared, and no peer
        // can write it while it is a `PoolPage`.
        unsafe { core::slice::from_raw_parts(p.as_ptr(), PAGE_SIZE) }
    }

    /// The page's bytes, writable (the whole page counts as written; see
    /// [`crate::frame::Segment::bytes_mut`] for a segment's bytes).
    pub fn bytes_mut<'a>(&'a self, page: &'a mut PoolPage) -> &'a mut [u8] {
        self.check(page.pool);
        self.dirty[usize::from(page.idx)].set((0, PAGE));
        let p = self.ptr(page.idx);
        // SAFETY: as for `bytes`; the exclusive borrow of the unique handle
        // makes this the only reference to the page.
        unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), PAGE_SIZE) }
    }

    /// Bytes `off..off + len` of the page, writable; only they count as
    /// written. Panics if the range is not inside the page.
    pub fn range_mut<'a>(&'a self, page: &'a mut PoolPage, off: usize, len: usize) -> &'a mut [u8] {
        self.check(page.pool);
        assert!(
            off.checked_add(len).is_some_and(|e| e <= PAGE_SIZE),
            "range outside the page"
        );
        self.mark_written(page, off, len);
        let p = self.ptr(page.idx);
        // SAFETY: as for `bytes_mut`; the range is inside the page.
        unsafe { core::slice::from_raw_parts_mut(p.as_ptr().add(off), len) }
    }

    /// A volatile view of the page (for code that shares it, e.g. tests
    /// acting as a peer).
    pub fn shared(&self, page: &PoolPage) -> SharedMem {
        self.check(page.pool);
        self.view(page.idx)
    }

    /// Turn a handle into a lent page (crate-internal: only the grant table
    /// does this, after granting it writable).
    pub(crate) fn lend(&self, page: PoolPage, gref: GrantRef) -> LentPage {
        self.check(page.pool);
        LentPage {
            pool: page.pool,
            idx: page.idx,
            gref,
        }
    }

    /// Turn a lent page back into a handle (crate-internal: only after the
    /// grant was revoked).
    pub(crate) fn unlend(&self, page: LentPage) -> PoolPage {
        self.check(page.pool);
        // The peer could write any of it.
        self.dirty[usize::from(page.idx)].set((0, PAGE));
        PoolPage {
            pool: page.pool,
            idx: page.idx,
        }
    }

    /// True if `page` belongs to this pool.
    pub fn owns(&self, page: &PoolPage) -> bool {
        page.pool == self.id
    }

    fn check(&self, pool: NonZeroU16) {
        assert_eq!(pool, self.id, "pool page used with another pool");
    }

    fn gfn_of(&self, idx: u16) -> Gfn {
        let (c, o) = (idx as usize / CHUNK_PAGES, idx as usize % CHUNK_PAGES);
        self.chunks[c].gfn.add(o as u64)
    }

    fn view(&self, idx: u16) -> SharedMem {
        let (c, o) = (idx as usize / CHUNK_PAGES, idx as usize % CHUNK_PAGES);
        self.chunks[c].mem.page(o)
    }

    fn ptr(&self, idx: u16) -> NonNull<u8> {
        let v = self.view(idx);
        NonNull::new(v.addr() as *mut u8).expect("pool page address is non-null")
    }
}

impl core::fmt::Debug for PagePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PagePool")
            .field("id", &self.id)
            .field("capacity", &self.pages)
            .field("available", &self.free.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::LocalPages;
    use core::cell::RefCell;

    /// RAM for pool tests: a bump allocator over local pages.
    struct TestRam {
        pages: LocalPages,
        next: RefCell<usize>,
        total: usize,
    }

    impl TestRam {
        fn new(total: usize) -> TestRam {
            TestRam {
                pages: LocalPages::new(total),
                next: RefCell::new(0),
                total,
            }
        }
    }

    impl GuestMemory for TestRam {
        fn alloc_pages(&self, n: usize) -> Option<Gfn> {
            let mut next = self.next.borrow_mut();
            if *next + n > self.total {
                return None;
            }
            let g = Gfn(0x1000 + *next as u64);
            *next += n;
            Some(g)
        }
        fn free_pages(&self, _gfn: Gfn, _n: usize) {}
        fn alloc_hole(&self, _n: usize) -> Option<Gfn> {
            None
        }
        fn free_hole(&self, _gfn: Gfn, _n: usize) {}
        fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
            let i = usize::try_from(gfn.0.checked_sub(0x1000)?).ok()?;
            (i + n <= self.total).then(|| self.pages.mem().sub(i * PAGE_SIZE, n * PAGE_SIZE))
        }
    }

    /// Stale bytes never survive a scrub, however the page was written
    /// before (a whole-page write, a range, a grant-copy destination),
    /// and bytes already known to be zero are not cleared again.
    #[test]
    fn scrub_clears_exactly_the_stale_bytes() {
        let ram = TestRam::new(8);
        // Memory that is not zero before the pool exists: new pages are
        // dirty whole.
        ram.pages.mem().fill(0, 8 * PAGE_SIZE, 0xee);
        let mut pool = PagePool::new(&ram, 4).unwrap();
        let mut p = pool.alloc().unwrap();
        assert_eq!(pool.dirty(&p), (0, PAGE_SIZE));
        pool.range_mut(&mut p, 100, 50).fill(7);
        pool.scrub_outside(&mut p, 100, 50);
        let b = pool.bytes(&p);
        assert!(b[..100].iter().all(|&x| x == 0));
        assert!(b[100..150].iter().all(|&x| x == 7));
        assert!(b[150..].iter().all(|&x| x == 0));
        assert_eq!(pool.dirty(&p), (100, 150));
        // Freed and taken again: the extent comes back with the page.
        let idx = p.index();
        pool.free(p);
        let mut p = pool.alloc().unwrap();
        assert_eq!((p.index(), pool.dirty(&p)), (idx, (100, 150)));
        // A grant-copy destination widens the extent; a later, shorter
        // frame at offset 0 gets the old tail cleared.
        let _ = pool.gfn_for_write(&mut p, 0, 1500);
        pool.shared(&p).fill(0, 1500, 9);
        assert_eq!(pool.dirty(&p), (0, 1500));
        pool.range_mut(&mut p, 0, 64).fill(1);
        pool.scrub_outside(&mut p, 0, 64);
        let b = pool.bytes(&p);
        assert!(b[..64].iter().all(|&x| x == 1));
        assert!(b[64..].iter().all(|&x| x == 0));
        // Whole-page access makes it all dirty again.
        pool.bytes_mut(&mut p)[4000] = 5;
        assert_eq!(pool.dirty(&p), (0, PAGE_SIZE));
        pool.scrub_outside(&mut p, 0, 64);
        assert_eq!(pool.bytes(&p)[4000], 0);
        pool.free(p);
    }

    #[test]
    fn oversized_pool_is_refused() {
        let ram = TestRam::new(1);
        assert_eq!(
            PagePool::new(&ram, MAX_POOL_PAGES + 1).unwrap_err(),
            PoolError::TooLarge {
                pages: MAX_POOL_PAGES + 1
            }
        );
    }

    #[test]
    fn pages_are_unique_distinct_and_recycled() {
        let ram = TestRam::new(200);
        let mut pool = PagePool::new(&ram, 130).unwrap();
        assert_eq!(pool.capacity(), 130);
        let mut pages: Vec<PoolPage> = (0..130).map(|_| pool.alloc().unwrap()).collect();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.in_use(), 130);
        assert_eq!(pool.low_water(), 0);
        // Every page is its own memory and its own frame.
        for (i, p) in pages.iter_mut().enumerate() {
            let b = i as u8;
            pool.bytes_mut(p).fill(b);
        }
        let mut gfns: Vec<u64> = pages.iter().map(|p| pool.gfn(p).0).collect();
        for (i, p) in pages.iter().enumerate() {
            assert!(pool.bytes(p).iter().all(|&x| x == i as u8));
            assert_eq!(pool.shared(p).read_u8(4095), i as u8);
        }
        gfns.sort_unstable();
        gfns.dedup();
        assert_eq!(gfns.len(), 130);
        for p in pages.drain(..) {
            pool.free(p);
        }
        assert_eq!(pool.available(), 130);
        let mut z = pool.alloc_zeroed().unwrap();
        assert!(pool.bytes_mut(&mut z).iter().all(|&x| x == 0));
        pool.free(z);
    }

    #[test]
    fn exhausted_platform_is_an_error() {
        let ram = TestRam::new(10);
        assert_eq!(
            PagePool::new(&ram, 11).unwrap_err(),
            PoolError::OutOfMemory { pages: 11 }
        );
    }

    #[test]
    #[should_panic(expected = "another pool")]
    fn foreign_handle_is_refused() {
        let ram = TestRam::new(4);
        let mut a = PagePool::new(&ram, 2).unwrap();
        let b = PagePool::new(&ram, 2).unwrap();
        let p = a.alloc().unwrap();
        let _ = b.gfn(&p);
    }
}
