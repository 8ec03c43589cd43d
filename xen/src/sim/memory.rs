//! A simulated domain's guest-physical memory and its page allocators.
//!
//! Layout of every simulated domain's guest-physical address space:
//!
//! | GFNs | what |
//! |---|---|
//! | `0 .. ram_pages` | RAM (a `memfd`); the toolstack reserves the top two pages for the xenstore and console rings |
//! | `HOLE_FIRST .. HOLE_FIRST + HOLE_PAGES` | unpopulated hole: shared info, grant table frames and foreign mappings are placed here |
//!
//! Xen-owned pages (shared info, the domain's grant table frames) live in a
//! second `memfd`; Xen (the simulator) reads and writes them through its own
//! mapping, and the guest sees them once it maps them with
//! `XENMEM_add_to_physmap`.

use std::io;
use std::sync::Mutex;

use crate::abi::PAGE_SIZE;
use crate::memory::bitmap::PageBitmap;
use crate::memory::host::{AddressSpace, Backing};
use crate::memory::{Gfn, GuestMemory, SharedMem};

/// First GFN of the hole (1 GiB).
pub const HOLE_FIRST: u64 = 0x4_0000;
/// Frames in the hole (1 GiB).
pub const HOLE_PAGES: usize = 0x4_0000;
/// Page index of shared info in the Xen-owned backing.
pub const XEN_SHARED_INFO_PAGE: usize = 0;
/// Page index of grant frame 0 in the Xen-owned backing.
pub const XEN_GRANT_FRAME0: usize = 1;

/// One domain's memory: address space, RAM, Xen-owned pages, allocators.
#[derive(Debug)]
pub struct DomainMemory {
    pub(crate) space: AddressSpace,
    pub(crate) ram: Backing,
    pub(crate) xen: Backing,
    ram_alloc: Mutex<PageBitmap>,
    hole_alloc: Mutex<PageBitmap>,
}

impl DomainMemory {
    pub(crate) fn new(
        name: &str,
        ram_pages: usize,
        grant_frames: usize,
    ) -> io::Result<DomainMemory> {
        let space = AddressSpace::reserve((HOLE_FIRST as usize + HOLE_PAGES) * PAGE_SIZE)?;
        if ram_pages as u64 > HOLE_FIRST {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let ram = Backing::new(&format!("{name}-ram"), ram_pages)?;
        space.place(0, &ram, 0, ram_pages)?;
        let xen = Backing::new(&format!("{name}-xen"), XEN_GRANT_FRAME0 + grant_frames)?;
        Ok(DomainMemory {
            space,
            ram,
            xen,
            ram_alloc: Mutex::new(PageBitmap::new(ram_pages)),
            hole_alloc: Mutex::new(PageBitmap::new(HOLE_PAGES)),
        })
    }

    /// Pages of RAM.
    pub fn ram_pages(&self) -> usize {
        self.ram.pages()
    }

    /// Whether `gfn` is a RAM frame.
    pub fn is_ram(&self, gfn: u64) -> bool {
        gfn < self.ram.pages() as u64
    }

    /// Whether `gfn` lies in the address space at all.
    pub fn in_space(&self, gfn: u64) -> bool {
        gfn < HOLE_FIRST + HOLE_PAGES as u64
    }

    /// Keep `n` RAM pages at `first` out of the allocator (special pages).
    pub(crate) fn reserve_ram(&self, first: u64, n: usize) {
        self.ram_alloc.lock().unwrap().reserve(first as usize, n);
    }

    /// Xen's view of one of this domain's RAM pages.
    pub(crate) fn ram_page(&self, gfn: u64) -> SharedMem {
        self.ram.page(gfn as usize)
    }
}

impl GuestMemory for DomainMemory {
    fn alloc_pages(&self, n: usize) -> Option<Gfn> {
        let first = self.ram_alloc.lock().unwrap().alloc(n)?;
        self.ram
            .mem()
            .sub(first * PAGE_SIZE, n * PAGE_SIZE)
            .fill(0, n * PAGE_SIZE, 0);
        Some(Gfn(first as u64))
    }

    fn free_pages(&self, gfn: Gfn, n: usize) {
        self.ram_alloc.lock().unwrap().free(gfn.0 as usize, n);
    }

    fn alloc_hole(&self, n: usize) -> Option<Gfn> {
        let first = self.hole_alloc.lock().unwrap().alloc(n)?;
        Some(Gfn(HOLE_FIRST + first as u64))
    }

    fn free_hole(&self, gfn: Gfn, n: usize) {
        if let Some(i) = gfn.0.checked_sub(HOLE_FIRST) {
            self.hole_alloc.lock().unwrap().free(i as usize, n);
        }
    }

    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        let gpa = usize::try_from(gfn.gpa()).ok()?;
        self.space.mem(gpa, n.checked_mul(PAGE_SIZE)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_and_hole() {
        let m = DomainMemory::new("t", 16, 4).unwrap();
        let g = m.alloc_pages(2).unwrap();
        assert!(m.is_ram(g.0));
        m.pages(g, 2).unwrap().write_u32(4096, 7);
        assert_eq!(m.ram_page(g.0 + 1).read_u32(0), 7);
        let h = m.alloc_hole(1).unwrap();
        assert!(!m.is_ram(h.0) && m.in_space(h.0));
        // Freed RAM comes back zeroed.
        m.free_pages(g, 2);
        let g2 = m.alloc_pages(2).unwrap();
        assert_eq!(m.pages(g2, 2).unwrap().read_u32(4096), 0);
    }
}
