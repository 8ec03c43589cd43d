//! Integration tests live in `tests/tests/`; this library holds shared
//! helpers: verifiable traffic ([`traffic`]), the netfront/netback pair
//! harness ([`vifpair`]), hostile peers ([`hostile`]), log capture
//! ([`logcap`]) and RAM for packet pools outside a simulated domain
//! ([`LocalRam`]).

pub mod fwbench;
pub mod hostile;
pub mod logcap;
pub mod traffic;
pub mod vifpair;

use std::cell::Cell;

use xen::memory::{Gfn, GuestMemory, LocalPages, SharedMem};

/// Guest RAM backed by local pages with a bump allocator, for packet
/// pools in tests that need no simulated domain.
pub struct LocalRam {
    pages: LocalPages,
    next: Cell<usize>,
    total: usize,
}

impl LocalRam {
    /// `total` pages.
    pub fn new(total: usize) -> LocalRam {
        LocalRam {
            pages: LocalPages::new(total),
            next: Cell::new(0),
            total,
        }
    }
}

impl GuestMemory for LocalRam {
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
        let i = usize::try_from(gfn.0).ok()?;
        (i + n <= self.total).then(|| self.pages.mem().sub(i * 4096, n * 4096))
    }
}
