//! Guest memory: frame numbers, the allocator interface, and the volatile
//! view through which all memory shared with Xen or a peer is accessed.
//!
//! # The rule this module enforces
//!
//! Memory another domain (or Xen) can write is never turned into a Rust
//! reference (`&T`, `&[u8]`, `&mut [u8]`): the compiler may assume such
//! memory does not change behind its back, and a hostile peer changing it
//! between two reads would turn that assumption into a time-of-check /
//! time-of-use bug. Instead, [`SharedMem`] is a raw pointer and a length;
//! every access is bounds-checked and performed with a volatile or atomic
//! operation, so each access really happens once, where the code says.
//! Callers copy peer-controlled values into locals once, validate the copies,
//! and act only on the copies.
//!
//! This module and `crate::memory::host` (the simulator's memory backing)
//! are, with the real unikernel backend, the only places with `unsafe`.

#![allow(unsafe_code)]

pub mod bitmap;
#[cfg(feature = "sim")]
pub mod host;
#[cfg(feature = "libxen-shim")]
pub mod libxen_shim;
pub mod pool;

use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::abi::{PAGE_SHIFT, PAGE_SIZE};

/// A guest frame number: guest-physical address >> 12. PVH guests are
/// auto-translated, so every Xen interface that says "frame" takes a GFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The guest-physical address of the first byte of this frame.
    pub const fn gpa(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
    /// The frame containing guest-physical address `gpa`.
    pub const fn containing(gpa: u64) -> Gfn {
        Gfn(gpa >> PAGE_SHIFT)
    }
    /// The frame `n` frames after this one.
    pub const fn add(self, n: u64) -> Gfn {
        Gfn(self.0 + n)
    }
}

/// Where a guest's pages come from.
///
/// RAM pages are what a guest grants to peers or hands to Xen by GFN (ring
/// pages, packet buffers). Hole frames are guest-physical addresses with no
/// RAM behind them, where Xen places pages on request: the shared info page
/// and grant table frames (`XENMEM_add_to_physmap`) and foreign grant
/// mappings (`GNTTABOP_map_grant_ref`).
pub trait GuestMemory {
    /// Allocate `n` contiguous zeroed pages of RAM; `None` when exhausted.
    fn alloc_pages(&self, n: usize) -> Option<Gfn>;
    /// Return pages from [`GuestMemory::alloc_pages`]. The caller guarantees
    /// no grant of them is still active.
    fn free_pages(&self, gfn: Gfn, n: usize);
    /// Reserve `n` contiguous frames in an unpopulated hole.
    fn alloc_hole(&self, n: usize) -> Option<Gfn>;
    /// Release frames from [`GuestMemory::alloc_hole`]. The caller guarantees
    /// nothing is mapped there any more.
    fn free_hole(&self, gfn: Gfn, n: usize);
    /// A view of `n` pages starting at `gfn`, if they lie in this guest's
    /// address space (RAM or hole). Accessing a hole frame that has nothing
    /// mapped is a bug of the caller (it faults in the simulator).
    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem>;
    /// A view of one page.
    fn page(&self, gfn: Gfn) -> Option<SharedMem> {
        self.pages(gfn, 1)
    }
}

/// A bounds-checked, volatile view of memory that Xen or another domain may
/// read and write concurrently (see the module doc).
///
/// A `SharedMem` does not own the memory and carries no lifetime: it is valid
/// for as long as the mapping it was made from, which the creator of the
/// mapping tracks (a granted page until the grant is revoked and the page
/// freed, a foreign mapping until it is unmapped).
///
/// # Panics
/// Accessors panic on an out-of-bounds offset or a misaligned atomic access.
/// Offsets come from this project's own code (ABI offsets, indices already
/// masked into range), so such a panic is a bug here, never peer input.
#[derive(Clone, Copy)]
pub struct SharedMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `SharedMem` is a pointer to memory that is by definition accessed
// concurrently (by Xen, peers and other threads), and every access it offers
// is volatile or atomic; sending or sharing the view across threads adds no
// access pattern that the memory does not already tolerate.
unsafe impl Send for SharedMem {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedMem {}

impl core::fmt::Debug for SharedMem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SharedMem({:p}, {:#x})", self.ptr, self.len)
    }
}

macro_rules! volatile_rw {
    ($read:ident, $write:ident, $t:ty) => {
        #[doc = concat!("Volatile read of a `", stringify!($t), "` at `off` (any alignment).")]
        #[inline]
        pub fn $read(&self, off: usize) -> $t {
            const N: usize = core::mem::size_of::<$t>();
            let p = self.at(off, N);
            // SAFETY: `at` checked that `off..off+N` lies inside the
            // mapping, which the creator of this view keeps valid; the
            // access is of a byte array (alignment 1), valid for any bits.
            <$t>::from_ne_bytes(unsafe { core::ptr::read_volatile(p as *const [u8; N]) })
        }
        #[doc = concat!("Volatile write of a `", stringify!($t), "` at `off` (any alignment).")]
        #[inline]
        pub fn $write(&self, off: usize, v: $t) {
            const N: usize = core::mem::size_of::<$t>();
            let p = self.at(off, N);
            // SAFETY: as for the read: in bounds, valid mapping, byte array.
            unsafe { core::ptr::write_volatile(p as *mut [u8; N], v.to_ne_bytes()) }
        }
    };
}

macro_rules! atomic_ops {
    ($atomic:ty, $t:ty, $load:ident, $store:ident, $swap:ident, $cas:ident, $or:ident, $and:ident) => {
        #[doc = concat!("Atomic load of a `", stringify!($t), "` (aligned).")]
        #[inline]
        pub fn $load(&self, off: usize, order: Ordering) -> $t {
            self.atomic::<$atomic>(off).load(order)
        }
        #[doc = concat!("Atomic store of a `", stringify!($t), "` (aligned).")]
        #[inline]
        pub fn $store(&self, off: usize, v: $t, order: Ordering) {
            self.atomic::<$atomic>(off).store(v, order)
        }
        #[doc = concat!("Atomic swap of a `", stringify!($t), "` (aligned), returning the old value.")]
        #[inline]
        pub fn $swap(&self, off: usize, v: $t, order: Ordering) -> $t {
            self.atomic::<$atomic>(off).swap(v, order)
        }
        #[doc = concat!("Atomic compare-exchange of a `", stringify!($t), "` (aligned, SeqCst).")]
        #[inline]
        pub fn $cas(&self, off: usize, current: $t, new: $t) -> Result<$t, $t> {
            self.atomic::<$atomic>(off)
                .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
        }
        #[doc = concat!("Atomic OR into a `", stringify!($t), "` (aligned, SeqCst), returning the old value.")]
        #[inline]
        pub fn $or(&self, off: usize, v: $t) -> $t {
            self.atomic::<$atomic>(off).fetch_or(v, Ordering::SeqCst)
        }
        #[doc = concat!("Atomic AND into a `", stringify!($t), "` (aligned, SeqCst), returning the old value.")]
        #[inline]
        pub fn $and(&self, off: usize, v: $t) -> $t {
            self.atomic::<$atomic>(off).fetch_and(v, Ordering::SeqCst)
        }
    };
}

impl SharedMem {
    /// Make a view of `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be mapped, readable and writable memory for as
    /// long as the view (or any copy of it) is used, and every other user of
    /// that memory must also access it only through volatile or atomic
    /// operations (or be another domain or Xen).
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> SharedMem {
        SharedMem { ptr, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte, for handing to Xen (a guest virtual
    /// address in the real backend) or for identity checks. Never
    /// dereferenced outside this module.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// A sub-view of `len` bytes at `off`.
    pub fn sub(&self, off: usize, len: usize) -> SharedMem {
        let p = self.at(off, len);
        SharedMem {
            // SAFETY: `at` returned a pointer inside this non-null mapping.
            ptr: unsafe { NonNull::new_unchecked(p) },
            len,
        }
    }

    /// Page `i` of a multi-page view.
    pub fn page(&self, i: usize) -> SharedMem {
        self.sub(i * PAGE_SIZE, PAGE_SIZE)
    }

    #[inline]
    fn at(&self, off: usize, size: usize) -> *mut u8 {
        match off.checked_add(size) {
            Some(end) if end <= self.len => {}
            _ => out_of_bounds(off, size, self.len),
        }
        // SAFETY: `off + size <= len`, so the result stays inside the mapping.
        unsafe { self.ptr.as_ptr().add(off) }
    }

    #[inline]
    fn atomic<A>(&self, off: usize) -> &A {
        let size = core::mem::size_of::<A>();
        let p = self.at(off, size);
        assert!(
            (p as usize) % size == 0,
            "misaligned atomic access at {off:#x}"
        );
        // SAFETY: in bounds and aligned for `A`, which is one of the
        // `Atomic*` integer types: those are interior-mutable and made for
        // memory that other agents modify concurrently, so a shared
        // reference to one is sound even over peer-writable memory (this is
        // the one kind of reference into shared memory we form, and it lives
        // only for the duration of one atomic operation).
        unsafe { &*(p as *const A) }
    }

    volatile_rw!(read_u8, write_u8, u8);
    volatile_rw!(read_u16, write_u16, u16);
    volatile_rw!(read_u32, write_u32, u32);
    volatile_rw!(read_u64, write_u64, u64);

    atomic_ops!(AtomicU8, u8, load_u8, store_u8, swap_u8, cas_u8, or_u8, and_u8);
    atomic_ops!(AtomicU16, u16, load_u16, store_u16, swap_u16, cas_u16, or_u16, and_u16);
    atomic_ops!(AtomicU32, u32, load_u32, store_u32, swap_u32, cas_u32, or_u32, and_u32);
    atomic_ops!(AtomicU64, u64, load_u64, store_u64, swap_u64, cas_u64, or_u64, and_u64);

    /// Copy `dst.len()` bytes starting at `off` out of shared memory, each
    /// byte read exactly once (volatile).
    pub fn read_bytes(&self, off: usize, dst: &mut [u8]) {
        let p = self.at(off, dst.len());
        let mut i = 0;
        // Word-sized volatile reads for the bulk, bytes for the tail.
        while i + 8 <= dst.len() {
            // SAFETY: in bounds (checked by `at`); unaligned volatile read of
            // plain data.
            let w = unsafe { core::ptr::read_volatile(p.add(i) as *const [u8; 8]) };
            dst[i..i + 8].copy_from_slice(&w);
            i += 8;
        }
        while i < dst.len() {
            // SAFETY: in bounds (checked by `at`).
            dst[i] = unsafe { core::ptr::read_volatile(p.add(i)) };
            i += 1;
        }
    }

    /// Copy `src` into shared memory at `off` (volatile writes).
    pub fn write_bytes(&self, off: usize, src: &[u8]) {
        let p = self.at(off, src.len());
        let mut i = 0;
        while i + 8 <= src.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&src[i..i + 8]);
            // SAFETY: in bounds (checked by `at`); plain data.
            unsafe { core::ptr::write_volatile(p.add(i) as *mut [u8; 8], w) };
            i += 8;
        }
        while i < src.len() {
            // SAFETY: in bounds (checked by `at`).
            unsafe { core::ptr::write_volatile(p.add(i), src[i]) };
            i += 1;
        }
    }

    /// Copy `out.len()` bytes out of a byte ring of `size` bytes (a power of
    /// two) at `base`, starting at the free-running index `start`, wrapping
    /// at the end of the ring. `out.len()` must not exceed `size`.
    pub fn read_ring(&self, base: usize, size: usize, start: u32, out: &mut [u8]) {
        debug_assert!(size.is_power_of_two() && out.len() <= size);
        let first = start as usize & (size - 1);
        let n1 = out.len().min(size - first);
        let (a, b) = out.split_at_mut(n1);
        self.read_bytes(base + first, a);
        self.read_bytes(base, b);
    }

    /// Copy `data` into a byte ring of `size` bytes (a power of two) at
    /// `base`, starting at the free-running index `start`, wrapping at the
    /// end of the ring. `data.len()` must not exceed `size`.
    pub fn write_ring(&self, base: usize, size: usize, start: u32, data: &[u8]) {
        debug_assert!(size.is_power_of_two() && data.len() <= size);
        let first = start as usize & (size - 1);
        let n1 = data.len().min(size - first);
        self.write_bytes(base + first, &data[..n1]);
        self.write_bytes(base, &data[n1..]);
    }

    /// Set `len` bytes at `off` to `byte`.
    pub fn fill(&self, off: usize, len: usize, byte: u8) {
        let p = self.at(off, len);
        for i in 0..len {
            // SAFETY: in bounds (checked by `at`).
            unsafe { core::ptr::write_volatile(p.add(i), byte) };
        }
    }

    /// Copy `len` bytes from `src` at `src_off` to `self` at `off`: the data
    /// movement of a grant copy. Both sides are shared memory, so this is a
    /// plain memory copy with no reads of the result: the bytes are moved,
    /// never interpreted. Overlap is allowed.
    pub fn copy_from(&self, off: usize, src: &SharedMem, src_off: usize, len: usize) {
        let d = self.at(off, len);
        let s = src.at(src_off, len);
        // SAFETY: both ranges are in bounds of valid mappings (checked by
        // `at`); `copy` tolerates overlap. A concurrent writer can only make
        // the copied bytes inconsistent, which is what a grant copy of a page
        // the peer is writing yields on Xen too; no value is interpreted.
        unsafe { core::ptr::copy(s, d, len) }
    }
}

#[cold]
#[inline(never)]
fn out_of_bounds(off: usize, size: usize, len: usize) -> ! {
    panic!("SharedMem access {off:#x}+{size:#x} beyond {len:#x}")
}

/// Full memory barrier (`mb()` in Xen's ring macros).
#[inline]
pub fn mb() {
    fence(Ordering::SeqCst)
}
/// Read barrier (`rmb()`): later reads are not satisfied before earlier ones.
#[inline]
pub fn rmb() {
    fence(Ordering::Acquire)
}
/// Write barrier (`wmb()`): earlier writes are visible before later ones.
#[inline]
pub fn wmb() {
    fence(Ordering::Release)
}

/// A page-sized, page-aligned buffer owned by Rust code, for tests that
/// need a [`SharedMem`] without a guest (ring unit tests, parsers).
#[cfg(any(test, feature = "std"))]
pub struct LocalPages {
    buf: alloc::boxed::Box<[PageBuf]>,
}

#[cfg(any(test, feature = "std"))]
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct PageBuf([u8; PAGE_SIZE]);

#[cfg(any(test, feature = "std"))]
impl LocalPages {
    /// `n` zeroed pages.
    pub fn new(n: usize) -> LocalPages {
        LocalPages {
            buf: alloc::vec![PageBuf([0; PAGE_SIZE]); n].into_boxed_slice(),
        }
    }
    /// The view of all pages. Valid while `self` lives.
    pub fn mem(&self) -> SharedMem {
        let ptr = NonNull::new(self.buf.as_ptr() as *mut u8).expect("non-null box");
        // SAFETY: the boxed pages are live for as long as `self`; all access
        // after this point goes through `SharedMem` (no references are
        // handed out), so it is the only accessor.
        unsafe { SharedMem::from_raw(ptr, self.buf.len() * PAGE_SIZE) }
    }
}

/// Guest memory backed by [`LocalPages`]: a bump allocator over a fixed
/// number of pages, for tests and fuzz targets of code that needs a
/// [`GuestMemory`] (a packet pool) without a guest. Frees are ignored.
#[cfg(any(test, feature = "std"))]
pub struct LocalRam {
    pages: LocalPages,
    next: core::cell::Cell<usize>,
    total: usize,
}

#[cfg(any(test, feature = "std"))]
impl LocalRam {
    /// First frame number handed out (arbitrary, non-zero).
    const BASE: u64 = 0x1000;

    /// `total` zeroed pages.
    pub fn new(total: usize) -> LocalRam {
        LocalRam {
            pages: LocalPages::new(total),
            next: core::cell::Cell::new(0),
            total,
        }
    }
}

#[cfg(any(test, feature = "std"))]
impl GuestMemory for LocalRam {
    fn alloc_pages(&self, n: usize) -> Option<Gfn> {
        let next = self.next.get();
        if next + n > self.total {
            return None;
        }
        self.next.set(next + n);
        Some(Gfn(Self::BASE + next as u64))
    }
    fn free_pages(&self, _gfn: Gfn, _n: usize) {}
    fn alloc_hole(&self, _n: usize) -> Option<Gfn> {
        None
    }
    fn free_hole(&self, _gfn: Gfn, _n: usize) {}
    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        let i = usize::try_from(gfn.0.checked_sub(Self::BASE)?).ok()?;
        (i + n <= self.total).then(|| self.pages.mem().sub(i * PAGE_SIZE, n * PAGE_SIZE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_roundtrip_and_bounds() {
        let p = LocalPages::new(1);
        let m = p.mem();
        m.write_u32(8, 0xdead_beef);
        assert_eq!(m.read_u32(8), 0xdead_beef);
        assert_eq!(m.read_u16(8), 0xbeef);
        m.write_bytes(100, b"hello, world!");
        let mut b = [0u8; 13];
        m.read_bytes(100, &mut b);
        assert_eq!(&b, b"hello, world!");
        assert_eq!(m.or_u64(16, 0b101), 0);
        assert_eq!(m.and_u64(16, !0b1), 0b101);
        assert_eq!(m.load_u64(16, Ordering::SeqCst), 0b100);
        assert_eq!(m.cas_u16(24, 0, 7), Ok(0));
        assert_eq!(m.cas_u16(24, 0, 9), Err(7));
        let s = m.sub(4000, 96);
        s.write_u8(95, 1);
        assert_eq!(m.read_u8(4095), 1);
        assert!(std::panic::catch_unwind(|| m.read_u32(4094)).is_err());
        assert!(std::panic::catch_unwind(|| m.read_u8(usize::MAX)).is_err());
        // Unaligned volatile accesses are fine.
        m.write_u64(1001, 0x0102_0304_0506_0708);
        assert_eq!(m.read_u64(1001), 0x0102_0304_0506_0708);
        assert_eq!(m.read_u16(1001), 0x0708);
        assert!(std::panic::catch_unwind(|| m.load_u32(2, Ordering::SeqCst)).is_err());
    }

    #[test]
    fn ring_copies_wrap() {
        let p = LocalPages::new(1);
        let m = p.mem();
        m.write_ring(64, 16, u32::MAX - 2, b"abcdefgh");
        let mut out = [0u8; 8];
        m.read_ring(64, 16, u32::MAX - 2, &mut out);
        assert_eq!(&out, b"abcdefgh");
        // The first three bytes went to the end of the ring, the rest to its start.
        assert_eq!(m.read_u8(64 + 13), b'a');
        assert_eq!(m.read_u8(64), b'd');
    }

    #[test]
    fn copy_between_views() {
        let a = LocalPages::new(1);
        let b = LocalPages::new(1);
        a.mem().write_bytes(10, b"abcdef");
        b.mem().copy_from(100, &a.mem(), 10, 6);
        let mut out = [0u8; 6];
        b.mem().read_bytes(100, &mut out);
        assert_eq!(&out, b"abcdef");
    }
}
