//! Simulated grant table operations, checked as Xen 4.17 checks them for a
//! PVH guest (`xen/common/grant_table.c`, `xen/arch/x86/hvm/grant_table.c`).
//!
//! Each domain's own table lives in Xen-owned pages; Xen reads an entry's
//! `domid`/`frame` and pins it by setting `GTF_reading` (and `GTF_writing`
//! for a writable use) with a compare-exchange on `flags`, exactly the bits
//! the granting guest's revoke checks. A mapping keeps its pin until it is
//! unmapped; a copy pins for the duration of the copy. The status codes
//! returned for bad arguments are Xen's:
//!
//! | case | status |
//! |---|---|
//! | granting domain does not exist | `GNTST_bad_domain` |
//! | ref beyond the granter's table | `GNTST_bad_gntref` |
//! | entry not `permit_access` for the caller (never granted, revoked, other domid) | `GNTST_general_error` |
//! | writable use of a `GTF_readonly` grant | `GNTST_general_error` |
//! | no `host_map`/`device_map` bit in the map flags | `GNTST_bad_gntref` |
//! | map flags other than `host_map[|readonly]`, or `host_addr` outside the address space (an unaligned address maps its containing page) | `GNTST_general_error` |
//! | granted frame not RAM of the granter / own frame not RAM | `GNTST_bad_page` |
//! | unknown unmap handle | `GNTST_bad_handle` |
//! | copy with `offset + len > 4096` on either side | `GNTST_bad_copy_arg` |
//! | copy side addressed by frame with a domid other than `DOMID_SELF` | `GNTST_permission_denied` |

use core::sync::atomic::Ordering;
use std::collections::HashMap;

use std::sync::Arc;

use super::memory::{DomainMemory, XEN_GRANT_FRAME0};
use super::{Dom, State};
use crate::abi::domid::DOMID_SELF;
use crate::abi::grant_table::*;
use crate::abi::{DomId, Errno, GrantHandle, GrantRef, PAGE_SIZE};
use crate::hypervisor::HvResult;
use crate::memory::{Gfn, SharedMem};

/// The data movement of one checked, pinned grant copy.
pub(crate) struct CopyRun {
    src: SharedMem,
    dst: SharedMem,
    src_off: usize,
    dst_off: usize,
    len: usize,
    /// Both domains' memory stays mapped while the copy runs, even if a
    /// domain is destroyed meanwhile.
    _keep: (Arc<DomainMemory>, Arc<DomainMemory>),
}

/// A grant copy between [`State::prepare_copy`] and [`State::finish_copy`]:
/// the pins it holds, and the copy to run (none if it failed after
/// pinning).
pub(crate) struct PreparedCopy {
    src_pin: Option<(DomId, GrantRef)>,
    dst_pin: Option<(DomId, GrantRef)>,
    run: Option<CopyRun>,
}

impl PreparedCopy {
    /// Move the bytes (no lock held); the bytes moved.
    pub(crate) fn run(&self) -> usize {
        match &self.run {
            Some(r) => {
                r.dst.copy_from(r.dst_off, &r.src, r.src_off, r.len);
                r.len
            }
            None => 0,
        }
    }
}

/// A foreign page a domain has mapped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MapRecord {
    granter: DomId,
    gref: GrantRef,
    gfn: Gfn,
    writable: bool,
}

/// Grant state of one domain.
#[derive(Debug, Default)]
pub(crate) struct GrantState {
    /// Frames of its own table currently in use (grows on demand).
    pub(crate) nr_frames: u32,
    /// Frames it may grow to.
    pub(crate) max_frames: u32,
    /// Pins held by others on its entries: (readers, writers).
    pins: HashMap<GrantRef, (u32, u32)>,
    /// Foreign pages it has mapped, by handle.
    maps: HashMap<GrantHandle, MapRecord>,
    next_handle: GrantHandle,
    /// Where each table frame is placed in the domain's physmap.
    frame_gfns: HashMap<u32, u64>,
}

const ENTRY: usize = 8;

/// Copies checked and pinned together, then run without the lock.
pub(crate) const COPY_CHUNK: usize = 32;

impl GrantState {
    /// A table of `max_frames` frames, one of them in use.
    pub(crate) fn new(max_frames: u32) -> GrantState {
        GrantState {
            nr_frames: 1,
            max_frames,
            // A copy batch pins up to `COPY_CHUNK` entries of one granter
            // at once; reserved so the pins never allocate on a guest's
            // hot path (the simulated hypercall runs on its thread).
            pins: HashMap::with_capacity(2 * COPY_CHUNK),
            ..Default::default()
        }
    }
}

impl Dom {
    fn grant_entry(&self, r: GrantRef) -> Option<SharedMem> {
        if r >= self.gnt.nr_frames * GRANT_ENTRIES_PER_FRAME {
            return None;
        }
        let frame = (r / GRANT_ENTRIES_PER_FRAME) as usize;
        let off = (r % GRANT_ENTRIES_PER_FRAME) as usize * ENTRY;
        Some(self.mem.xen.page(XEN_GRANT_FRAME0 + frame).sub(off, ENTRY))
    }

    /// Pin entry `r` for `grantee`: check it and set `GTF_reading` (and
    /// `GTF_writing` if `write`). Returns the granted frame.
    fn pin(&mut self, r: GrantRef, grantee: DomId, write: bool) -> Result<u64, i16> {
        let e = self.grant_entry(r).ok_or(status::BAD_GNTREF)?;
        loop {
            let flags = e.load_u16(0, Ordering::SeqCst);
            let domid = e.read_u16(2);
            if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || domid != grantee {
                return Err(status::GENERAL_ERROR);
            }
            if write && flags & GTF_READONLY != 0 {
                return Err(status::GENERAL_ERROR);
            }
            let new = flags | GTF_READING | if write { GTF_WRITING } else { 0 };
            if e.cas_u16(0, flags, new).is_ok() {
                break;
            }
        }
        let frame = e.read_u32(4) as u64;
        let pins = self.gnt.pins.entry(r).or_default();
        pins.0 += 1;
        if write {
            pins.1 += 1;
        }
        Ok(frame)
    }

    /// Drop one pin taken by [`Dom::pin`], clearing the in-use flags when
    /// the last reader/writer goes.
    fn unpin(&mut self, r: GrantRef, write: bool) {
        let Some(pins) = self.gnt.pins.get_mut(&r) else {
            return;
        };
        pins.0 = pins.0.saturating_sub(1);
        if write {
            pins.1 = pins.1.saturating_sub(1);
        }
        let (readers, writers) = *pins;
        if readers == 0 {
            self.gnt.pins.remove(&r);
        }
        let mut clear = 0;
        if writers == 0 {
            clear |= GTF_WRITING;
        }
        if readers == 0 {
            clear |= GTF_READING;
        }
        if let Some(e) = self.grant_entry(r) {
            e.and_u16(0, !clear);
        }
    }
}

impl State {
    pub(crate) fn query_size(&mut self, caller: DomId, q: &mut GnttabQuerySize) -> HvResult {
        let d = if q.dom == DOMID_SELF { caller } else { q.dom };
        let privileged = self.dom(caller)?.privileged;
        match self.doms.get(&d) {
            None => q.status = status::BAD_DOMAIN,
            Some(_) if d != caller && !privileged => q.status = status::PERMISSION_DENIED,
            Some(dom) => {
                q.nr_frames = dom.gnt.nr_frames;
                q.max_nr_frames = dom.gnt.max_frames;
                q.status = status::OKAY;
            }
        }
        Ok(())
    }

    pub(crate) fn map_grant_refs(
        &mut self,
        caller: DomId,
        ops: &mut [GnttabMapGrantRef],
    ) -> HvResult {
        for op in ops.iter_mut() {
            op.status = match self.map_one(caller, op) {
                Ok(handle) => {
                    op.handle = handle;
                    op.dev_bus_addr = 0;
                    self.dom_mut(caller)?.counters.grant_maps += 1;
                    status::OKAY
                }
                Err(st) => st,
            };
        }
        Ok(())
    }

    /// One `GNTTABOP_map_grant_ref`, with Xen's checks in Xen's order:
    /// mapping kind, granting domain, ref range, the entry itself, the
    /// granted frame, then the HVM-specific flag and address checks.
    fn map_one(&mut self, caller: DomId, op: &GnttabMapGrantRef) -> Result<GrantHandle, i16> {
        if op.flags & (GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP) == 0 {
            return Err(status::BAD_GNTREF);
        }
        if op.flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
            return Err(status::GENERAL_ERROR);
        }
        let readonly = op.flags & GNTMAP_READONLY != 0;
        let granter_id = if op.dom == DOMID_SELF { caller } else { op.dom };
        let my_mem = self
            .doms
            .get(&caller)
            .ok_or(status::GENERAL_ERROR)?
            .mem
            .clone();
        let granter = self.doms.get_mut(&granter_id).ok_or(status::BAD_DOMAIN)?;
        let frame = granter.pin(op.r#ref, caller, !readonly)?;
        let gfn = op.host_addr >> 12;
        let fail = if !granter.mem.is_ram(frame) {
            Some(status::BAD_PAGE)
        } else if op.flags & !GNTMAP_READONLY != GNTMAP_HOST_MAP
            || !my_mem.in_space(gfn)
            || my_mem
                .space
                .place((gfn << 12) as usize, &granter.mem.ram, frame as usize, 1)
                .is_err()
        {
            Some(status::GENERAL_ERROR)
        } else {
            None
        };
        if let Some(st) = fail {
            granter.unpin(op.r#ref, !readonly);
            return Err(st);
        }
        let me = self.doms.get_mut(&caller).ok_or(status::GENERAL_ERROR)?;
        me.gnt.next_handle = me.gnt.next_handle.wrapping_add(1);
        let handle = me.gnt.next_handle;
        me.gnt.maps.insert(
            handle,
            MapRecord {
                granter: granter_id,
                gref: op.r#ref,
                gfn: Gfn(gfn),
                writable: !readonly,
            },
        );
        Ok(handle)
    }

    pub(crate) fn unmap_grant_refs(
        &mut self,
        caller: DomId,
        ops: &mut [GnttabUnmapGrantRef],
    ) -> HvResult {
        for op in ops.iter_mut() {
            op.status = match self.unmap_one(caller, op.handle, Some(op.host_addr)) {
                Ok(()) => {
                    self.dom_mut(caller)?.counters.grant_unmaps += 1;
                    status::OKAY
                }
                Err(st) => st,
            };
        }
        Ok(())
    }

    /// Unmap one handle of `caller` (`host_addr` must match when given).
    pub(crate) fn unmap_one(
        &mut self,
        caller: DomId,
        handle: GrantHandle,
        host_addr: Option<u64>,
    ) -> Result<(), i16> {
        let me = self.doms.get_mut(&caller).ok_or(status::GENERAL_ERROR)?;
        let rec = *me.gnt.maps.get(&handle).ok_or(status::BAD_HANDLE)?;
        // Xen skips the host unmap for address 0 (and keeps the mapping),
        // and compares addresses by frame.
        match host_addr {
            Some(0) => return Ok(()),
            Some(a) if a >> 12 != rec.gfn.0 => return Err(status::GENERAL_ERROR),
            _ => {}
        }
        me.gnt.maps.remove(&handle);
        me.mem
            .space
            .clear(rec.gfn.gpa() as usize, 1)
            .map_err(|_| status::GENERAL_ERROR)?;
        if let Some(g) = self.doms.get_mut(&rec.granter) {
            g.unpin(rec.gref, rec.writable);
        }
        Ok(())
    }

    /// Handles of every mapping `d` holds (for teardown).
    pub(crate) fn map_handles(&self, d: DomId) -> Vec<GrantHandle> {
        self.doms
            .get(&d)
            .map(|x| x.gnt.maps.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Check and pin one copy (under the hypervisor lock). On success the
    /// bytes are moved by [`PreparedCopy::run`] with the lock released,
    /// as on Xen, where copies of different vCPUs run in parallel while
    /// their grants are pinned; then [`State::finish_copy`] unpins.
    pub(crate) fn prepare_copy(
        &mut self,
        caller: DomId,
        op: &GnttabCopy,
    ) -> Result<PreparedCopy, i16> {
        // Xen tests only these two bits; other flag bits are ignored.
        let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
        let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
        // Xen's order: both domids, then source and destination claimed,
        // then the bounds of the copy.
        for (side, gref) in [(&op.source, src_gref), (&op.dest, dst_gref)] {
            if side.domid != DOMID_SELF && !gref {
                return Err(status::PERMISSION_DENIED);
            }
        }
        let (sd, sf) = self.copy_side(caller, &op.source, src_gref, false)?;
        let mut pins = PreparedCopy {
            src_pin: src_gref.then_some((sd, op.source.u as GrantRef)),
            dst_pin: None,
            run: None,
        };
        let (dd, df) = match self.copy_side(caller, &op.dest, dst_gref, true) {
            Ok(d) => d,
            Err(e) => {
                self.finish_copy(caller, pins, 0);
                return Err(e);
            }
        };
        pins.dst_pin = dst_gref.then_some((dd, op.dest.u as GrantRef));
        let in_bounds = op.source.offset as usize + op.len as usize <= PAGE_SIZE
            && op.dest.offset as usize + op.len as usize <= PAGE_SIZE;
        if !in_bounds {
            self.finish_copy(caller, pins, 0);
            return Err(status::BAD_COPY_ARG);
        }
        let (Some(sm), Some(dm)) = (
            self.doms.get(&sd).map(|d| d.mem.clone()),
            self.doms.get(&dd).map(|d| d.mem.clone()),
        ) else {
            self.finish_copy(caller, pins, 0);
            return Err(status::GENERAL_ERROR);
        };
        Ok(PreparedCopy {
            run: Some(CopyRun {
                src: sm.ram_page(sf),
                dst: dm.ram_page(df),
                src_off: op.source.offset as usize,
                dst_off: op.dest.offset as usize,
                len: op.len as usize,
                _keep: (sm, dm),
            }),
            ..pins
        })
    }

    /// Unpin a prepared copy and count `bytes` moved (0: it failed).
    pub(crate) fn finish_copy(&mut self, caller: DomId, c: PreparedCopy, bytes: usize) {
        if let Some((d, r)) = c.src_pin {
            if let Some(g) = self.doms.get_mut(&d) {
                g.unpin(r, false);
            }
        }
        if let Some((d, r)) = c.dst_pin {
            if let Some(g) = self.doms.get_mut(&d) {
                g.unpin(r, true);
            }
        }
        if c.run.is_some() {
            if let Ok(me) = self.dom_mut(caller) {
                me.counters.grant_copies += 1;
                me.counters.grant_copy_bytes += bytes as u64;
            }
        }
    }

    /// Resolve one side of a copy to (owner domid, frame), pinning a gref.
    fn copy_side(
        &mut self,
        caller: DomId,
        side: &GnttabCopyPtr,
        is_gref: bool,
        write: bool,
    ) -> Result<(DomId, u64), i16> {
        if is_gref {
            let owner = if side.domid == DOMID_SELF {
                caller
            } else {
                side.domid
            };
            let g = self.doms.get_mut(&owner).ok_or(status::BAD_DOMAIN)?;
            let frame = g.pin(side.u as GrantRef, caller, write)?;
            if !g.mem.is_ram(frame) {
                g.unpin(side.u as GrantRef, write);
                return Err(status::BAD_PAGE);
            }
            Ok((owner, frame))
        } else {
            let me = self.doms.get(&caller).ok_or(status::GENERAL_ERROR)?;
            if !me.mem.is_ram(side.u) {
                return Err(status::BAD_PAGE);
            }
            Ok((caller, side.u))
        }
    }

    /// `XENMAPSPACE_grant_table`: make frame `idx` of the caller's table
    /// appear at `gfn`, growing the table up to its maximum.
    pub(crate) fn map_grant_frame(&mut self, caller: DomId, idx: u64, gfn: u64) -> HvResult {
        let me = self.dom_mut(caller)?;
        if idx >= me.gnt.max_frames as u64 || !me.mem.in_space(gfn) {
            return Err(Errno::EINVAL);
        }
        me.mem
            .space
            .place(
                (gfn << 12) as usize,
                &me.mem.xen,
                XEN_GRANT_FRAME0 + idx as usize,
                1,
            )
            .map_err(|_| Errno::EINVAL)?;
        // A frame appears at one GFN at a time: Xen removes its old place.
        if let Some(old) = me.gnt.frame_gfns.insert(idx as u32, gfn) {
            if old != gfn {
                let _ = me.mem.space.clear((old << 12) as usize, 1);
                me.xen_placed.remove(&old);
            }
        }
        me.gnt.nr_frames = me.gnt.nr_frames.max(idx as u32 + 1);
        me.xen_placed.insert(gfn);
        Ok(())
    }

    /// The toolstack's write of a reserved entry (console, xenstore) in
    /// `d`'s table, granting `frame` to `grantee`.
    pub(crate) fn toolstack_grant(
        &mut self,
        d: DomId,
        r: GrantRef,
        grantee: DomId,
        frame: u64,
    ) -> HvResult {
        let dom = self.dom_mut(d)?;
        let e = dom.grant_entry(r).ok_or(Errno::EINVAL)?;
        e.write_u16(2, grantee);
        e.write_u32(4, frame as u32);
        crate::memory::wmb();
        e.store_u16(0, GTF_PERMIT_ACCESS, Ordering::SeqCst);
        Ok(())
    }
}
