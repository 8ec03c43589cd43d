//! Grant tables (v1): granting our pages to peers, mapping and copying
//! theirs.
//!
//! * Own table: [`GrantTable::new`] maps the table's frames into hole frames
//!   with `XENMEM_add_to_physmap` (the PVH way) and keeps a free list of
//!   references; the first [`GNTTAB_NR_RESERVED_ENTRIES`] are never handed
//!   out (console and xenstore live there). [`GrantTable::grant`] writes an
//!   entry in the order Xen requires (domid and frame, write barrier,
//!   flags). [`GrantTable::end_access`] revokes with a compare-exchange that
//!   fails while Xen marks the entry in use (`GTF_reading`/`GTF_writing`):
//!   a peer holding a mapping cannot have the page pulled away, and the page
//!   must stay out of circulation until revocation succeeds.
//! * Foreign grants: [`map_grant_refs`] maps a batch of a peer's refs into
//!   contiguous hole frames with one `GNTTABOP_map_grant_ref`, checking the
//!   per-entry status; [`ForeignMapping::unmap`] undoes it.
//! * Copies: [`grant_copy`] submits a whole batch of `GNTTABOP_copy`
//!   operations in one hypercall and reports the first failing element.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::abi::domid::DOMID_SELF;
use crate::abi::grant_table::*;
use crate::abi::memory::{XenAddToPhysmap, XENMAPSPACE_GRANT_TABLE};
use crate::abi::{DomId, Errno, GrantHandle, GrantRef};
use crate::hypervisor::{GnttabOp, MemoryOp};
use crate::memory::pool::{LentPage, PagePool, PoolPage};
use crate::memory::{wmb, Gfn, SharedMem};
use crate::Platform;

/// Bytes per v1 entry.
const ENTRY_SIZE: usize = 8;

/// What went wrong with a grant operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The hypercall itself failed.
    Hypercall(Errno),
    /// Every grant reference is in use.
    NoFreeRefs,
    /// The peer still has the grant mapped or is copying: the page cannot
    /// be reclaimed yet.
    InUse(GrantRef),
    /// The reference is reserved, out of range, or not granted by us.
    NotGranted(GrantRef),
    /// No hole frames left to map foreign pages into.
    NoAddressSpace,
    /// Element `index` of a batch failed with `GNTST_*` `status`.
    Status {
        /// Position in the batch.
        index: usize,
        /// The `GNTST_*` code.
        status: i16,
    },
}

impl From<Errno> for GrantError {
    fn from(e: Errno) -> Self {
        GrantError::Hypercall(e)
    }
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::Hypercall(e) => write!(f, "grant table hypercall failed: {e}"),
            GrantError::NoFreeRefs => write!(f, "no free grant references"),
            GrantError::InUse(r) => write!(f, "grant {r} still in use by the peer"),
            GrantError::NotGranted(r) => write!(f, "grant {r} is not an active grant of ours"),
            GrantError::NoAddressSpace => write!(f, "no address space left for foreign mappings"),
            GrantError::Status { index, status } => {
                write!(f, "grant op {index} failed: {}", status::name(*status))
            }
        }
    }
}

/// Our own grant table.
pub struct GrantTable<P: Platform + Clone> {
    p: P,
    table: SharedMem,
    first_gfn: Gfn,
    nr_entries: u32,
    free: Vec<GrantRef>,
    active: Vec<bool>,
}

impl<P: Platform + Clone> GrantTable<P> {
    /// Map `nr_frames` frames of our grant table (at most the maximum Xen
    /// reports) and set up the free list.
    pub fn new(p: P, nr_frames: u32) -> Result<Self, GrantError> {
        let mut q = GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        };
        p.grant_table_op(GnttabOp::QuerySize(&mut q))?;
        if q.status != status::OKAY {
            return Err(GrantError::Status {
                index: 0,
                status: q.status,
            });
        }
        let nr_frames = nr_frames.clamp(1, q.max_nr_frames.max(1));
        let first_gfn = p
            .alloc_hole(nr_frames as usize)
            .ok_or(GrantError::NoAddressSpace)?;
        for i in 0..nr_frames {
            p.memory_op(MemoryOp::AddToPhysmap(&XenAddToPhysmap {
                domid: DOMID_SELF,
                size: 0,
                space: XENMAPSPACE_GRANT_TABLE,
                idx: i as u64,
                gpfn: first_gfn.0 + i as u64,
            }))?;
        }
        let table = p
            .pages(first_gfn, nr_frames as usize)
            .ok_or(GrantError::Hypercall(Errno::EFAULT))?;
        let nr_entries = nr_frames * GRANT_ENTRIES_PER_FRAME;
        // Hand out low refs first (pop from the end).
        let free = (GNTTAB_NR_RESERVED_ENTRIES..nr_entries).rev().collect();
        Ok(GrantTable {
            p,
            table,
            first_gfn,
            nr_entries,
            free,
            active: alloc::vec![false; nr_entries as usize],
        })
    }

    /// The platform this table belongs to.
    pub fn platform(&self) -> &P {
        &self.p
    }

    /// Where the table frames are mapped.
    pub fn table_gfn(&self) -> Gfn {
        self.first_gfn
    }

    /// Entries in the table (including the reserved ones).
    pub fn capacity(&self) -> u32 {
        self.nr_entries
    }

    /// References available for [`GrantTable::grant`].
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Let `domid` access our page `gfn` (read-only if `readonly`).
    pub fn grant(
        &mut self,
        domid: DomId,
        gfn: Gfn,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let r = self.free.pop().ok_or(GrantError::NoFreeRefs)?;
        let off = r as usize * ENTRY_SIZE;
        self.table.store_u16(off + 2, domid, Ordering::Relaxed);
        self.table
            .store_u32(off + 4, gfn.0 as u32, Ordering::Relaxed);
        wmb();
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.table.store_u16(off, flags, Ordering::Release);
        self.active[r as usize] = true;
        Ok(r)
    }

    /// Revoke a grant. Fails with [`GrantError::InUse`] while the peer has
    /// the page mapped (or a copy is in flight); retry later and keep the
    /// page out of circulation meanwhile. On success the reference is free
    /// again.
    pub fn end_access(&mut self, r: GrantRef) -> Result<(), GrantError> {
        if r < GNTTAB_NR_RESERVED_ENTRIES || r >= self.nr_entries || !self.active[r as usize] {
            return Err(GrantError::NotGranted(r));
        }
        let off = r as usize * ENTRY_SIZE;
        loop {
            let f = self.table.load_u16(off, Ordering::SeqCst);
            if f & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::InUse(r));
            }
            if self.table.cas_u16(off, f, 0).is_ok() {
                break;
            }
        }
        self.active[r as usize] = false;
        self.free.push(r);
        Ok(())
    }

    /// Grant a pool page writable to `domid` (a receive buffer the peer
    /// fills). The handle becomes a [`LentPage`] with no byte access until
    /// [`GrantTable::reclaim`] gets it back. On failure the page is handed
    /// back untouched.
    pub fn lend_writable(
        &mut self,
        pool: &PagePool,
        page: PoolPage,
        domid: DomId,
    ) -> Result<LentPage, (PoolPage, GrantError)> {
        match self.grant(domid, pool.gfn(&page), false) {
            Ok(r) => Ok(pool.lend(page, r)),
            Err(e) => Err((page, e)),
        }
    }

    /// Revoke a lent page's grant and return its handle. While the peer
    /// still holds the grant (mapped, or a copy in flight) the revocation
    /// fails and the lent page is handed back: keep it out of circulation
    /// and retry later.
    pub fn reclaim(
        &mut self,
        pool: &PagePool,
        page: LentPage,
    ) -> Result<PoolPage, (LentPage, GrantError)> {
        match self.end_access(page.gref) {
            Ok(()) => Ok(pool.unlend(page)),
            Err(e) => Err((page, e)),
        }
    }

    /// Read an entry as Xen sees it (flags, domid, frame); for tests and
    /// diagnostics.
    pub fn entry(&self, r: GrantRef) -> Option<GrantEntryV1> {
        if r >= self.nr_entries {
            return None;
        }
        let off = r as usize * ENTRY_SIZE;
        Some(GrantEntryV1 {
            flags: self.table.load_u16(off, Ordering::SeqCst),
            domid: self.table.read_u16(off + 2),
            frame: self.table.read_u32(off + 4),
        })
    }
}

/// A peer's pages mapped into contiguous hole frames of ours.
#[derive(Debug)]
pub struct ForeignMapping {
    gfn: Gfn,
    handles: Vec<GrantHandle>,
    mem: SharedMem,
}

impl ForeignMapping {
    /// The mapped pages, in the order of the refs given to
    /// [`map_grant_refs`]. Valid until [`ForeignMapping::unmap`].
    pub fn mem(&self) -> SharedMem {
        self.mem
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.handles.len()
    }

    /// Unmap every page (one batched hypercall) and release the frames.
    pub fn unmap<P: Platform>(self, p: &P) -> Result<(), GrantError> {
        let mut ops: Vec<GnttabUnmapGrantRef> = self
            .handles
            .iter()
            .enumerate()
            .map(|(i, &handle)| GnttabUnmapGrantRef {
                host_addr: self.gfn.add(i as u64).gpa(),
                dev_bus_addr: 0,
                handle,
                status: 0,
            })
            .collect();
        p.grant_table_op(GnttabOp::UnmapGrantRef(&mut ops))?;
        let bad = ops.iter().position(|o| o.status != status::OKAY);
        if let Some(index) = bad {
            // Leave the frames reserved: something may still be mapped.
            return Err(GrantError::Status {
                index,
                status: ops[index].status,
            });
        }
        p.free_hole(self.gfn, self.handles.len());
        Ok(())
    }
}

/// Map `refs` granted by `dom` into contiguous frames, writable unless
/// `readonly`, with one hypercall. On any failure nothing stays mapped.
pub fn map_grant_refs<P: Platform>(
    p: &P,
    dom: DomId,
    refs: &[GrantRef],
    readonly: bool,
) -> Result<ForeignMapping, GrantError> {
    let n = refs.len();
    let gfn = p.alloc_hole(n).ok_or(GrantError::NoAddressSpace)?;
    let flags = GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 };
    let mut ops: Vec<GnttabMapGrantRef> = refs
        .iter()
        .enumerate()
        .map(|(i, &r)| GnttabMapGrantRef {
            host_addr: gfn.add(i as u64).gpa(),
            flags,
            r#ref: r,
            dom,
            ..Default::default()
        })
        .collect();
    if let Err(e) = p.grant_table_op(GnttabOp::MapGrantRef(&mut ops)) {
        p.free_hole(gfn, n);
        return Err(e.into());
    }
    if let Some(index) = ops.iter().position(|o| o.status != status::OKAY) {
        let mut undo: Vec<GnttabUnmapGrantRef> = ops
            .iter()
            .filter(|o| o.status == status::OKAY)
            .map(|o| GnttabUnmapGrantRef {
                host_addr: o.host_addr,
                dev_bus_addr: 0,
                handle: o.handle,
                status: 0,
            })
            .collect();
        if !undo.is_empty() {
            let undone = p.grant_table_op(GnttabOp::UnmapGrantRef(&mut undo));
            if undone.is_err() || undo.iter().any(|o| o.status != status::OKAY) {
                // Keep the frames reserved: a mapping may remain there.
                return Err(GrantError::Status {
                    index,
                    status: ops[index].status,
                });
            }
        }
        p.free_hole(gfn, n);
        return Err(GrantError::Status {
            index,
            status: ops[index].status,
        });
    }
    let mem = p
        .pages(gfn, n)
        .ok_or(GrantError::Hypercall(Errno::EFAULT))?;
    Ok(ForeignMapping {
        gfn,
        handles: ops.iter().map(|o| o.handle).collect(),
        mem,
    })
}

/// Build a copy from our page `gfn` at `offset` into `dom`'s granted page
/// `gref` at `dest_offset`.
pub fn copy_to_grant(
    gfn: Gfn,
    offset: u16,
    dom: DomId,
    gref: GrantRef,
    dest_offset: u16,
    len: u16,
) -> GnttabCopy {
    GnttabCopy {
        source: GnttabCopyPtr {
            u: gfn.0,
            domid: DOMID_SELF,
            offset,
        },
        dest: GnttabCopyPtr {
            u: gref as u64,
            domid: dom,
            offset: dest_offset,
        },
        len,
        flags: GNTCOPY_DEST_GREF,
        status: 0,
    }
}

/// Build a copy from `dom`'s granted page `gref` at `offset` into our page
/// `gfn` at `dest_offset`.
pub fn copy_from_grant(
    dom: DomId,
    gref: GrantRef,
    offset: u16,
    gfn: Gfn,
    dest_offset: u16,
    len: u16,
) -> GnttabCopy {
    GnttabCopy {
        source: GnttabCopyPtr {
            u: gref as u64,
            domid: dom,
            offset,
        },
        dest: GnttabCopyPtr {
            u: gfn.0,
            domid: DOMID_SELF,
            offset: dest_offset,
        },
        len,
        flags: GNTCOPY_SOURCE_GREF,
        status: 0,
    }
}

/// Submit a batch of grant copies in one hypercall. Returns the first
/// failing element as [`GrantError::Status`]; every element's `status` is
/// left in `ops` for callers that handle partial failure.
pub fn grant_copy<P: Platform>(p: &P, ops: &mut [GnttabCopy]) -> Result<(), GrantError> {
    if ops.is_empty() {
        return Ok(());
    }
    p.grant_table_op(GnttabOp::Copy(ops))?;
    match ops.iter().position(|o| o.status != status::OKAY) {
        Some(index) => Err(GrantError::Status {
            index,
            status: ops[index].status,
        }),
        None => Ok(()),
    }
}
