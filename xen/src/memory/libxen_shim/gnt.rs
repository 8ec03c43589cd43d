//! `libxengnttab` (mapping a peer's grants, as `/dev/xen/gntdev`) and
//! `libxengntshr` (granting pages to a peer, as `/dev/xen/gntalloc`) over
//! the simulator, plus the `munmap` that `libxenvchan_close` calls.
//!
//! Every mapping and share handed to C is a *region*: its first byte's
//! address (the domain's own memory, so C sees what the peer sees), its
//! size, the handle that made it, and what releasing it involves. Regions
//! live in one process-wide table keyed by address (each simulated domain
//! has its own address range, so addresses never collide), which is how
//! [`libxen_shim_munmap`] finds what C unmaps without knowing the handle.
//!
//! Unmap notifications follow Linux: for a mapping (gntdev), the byte is
//! cleared while the page is still mapped, the grant unmapped, then the
//! event sent; for a share (gntalloc), the byte is cleared in our own page,
//! the event sent, then foreign access ended, the revocation being
//! deferred while the peer still maps the page.

use core::ffi::{c_int, c_void};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::{current, lock, set_errno, DomainCtx};
use crate::abi::{DomId, EvtchnPort, GrantRef, PAGE_SIZE};
use crate::gnttab::{map_grant_refs, ForeignMapping, GrantError};
use crate::memory::{Gfn, GuestMemory};

/// Most pages one call may map or share: a 1 MiB vchan ring is 256.
const MAX_PAGES: usize = 1024;

/// An open grant mapping handle (`xengnttab_handle *` in C).
pub struct XengnttabHandle {
    id: u64,
    ctx: Arc<DomainCtx>,
}

/// An open grant sharing handle (`xengntshr_handle *` in C).
pub struct XengntshrHandle {
    id: u64,
    ctx: Arc<DomainCtx>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What to do when a region goes away (`UNMAP_NOTIFY_*`).
#[derive(Clone, Copy, Debug, Default)]
struct Notify {
    /// Byte offset (from the region's start) to set to 0.
    clear: Option<usize>,
    /// Port of the region's domain to signal.
    port: Option<EvtchnPort>,
}

impl Notify {
    /// libxengnttab's encoding: an offset inside the page asks for the
    /// byte to be cleared, a port other than -1 for an event.
    fn from_c(offset: u32, port: u32) -> Notify {
        Notify {
            clear: (offset < PAGE_SIZE as u32).then_some(offset as usize),
            port: (port != u32::MAX).then_some(port),
        }
    }
}

enum Kind {
    /// Foreign pages mapped through gntdev.
    Map {
        mapping: ForeignMapping,
        writable: bool,
    },
    /// Our pages granted through gntalloc.
    Share { gfn: Gfn, refs: Vec<GrantRef> },
}

struct Region {
    owner: u64,
    ctx: Arc<DomainCtx>,
    pages: usize,
    notify: Notify,
    kind: Kind,
}

/// Every live region, by start address.
static REGIONS: Mutex<BTreeMap<usize, Region>> = Mutex::new(BTreeMap::new());

/// Pages mapped and pages shared by `ctx`'s handles.
pub(super) fn region_pages(ctx: &Arc<DomainCtx>) -> (usize, usize) {
    let regions = lock(&REGIONS);
    let mine = regions.values().filter(|r| Arc::ptr_eq(&r.ctx, ctx));
    mine.fold((0, 0), |(m, s), r| match r.kind {
        Kind::Map { .. } => (m + r.pages, s),
        Kind::Share { .. } => (m, s + r.pages),
    })
}

impl Region {
    /// Release the region as closing its gntdev/gntalloc mapping does,
    /// firing the unmap notification. Returns an errno on failure.
    fn release(self) -> Result<(), i32> {
        let Region {
            ctx,
            pages,
            notify,
            kind,
            ..
        } = self;
        match kind {
            Kind::Map { mapping, writable } => {
                if let (Some(off), true) = (notify.clear, writable) {
                    mapping.mem().store_u8(off, 0, Ordering::SeqCst);
                }
                let r = mapping.unmap(&ctx.dom);
                if let Some(port) = notify.port {
                    let _ = ctx.ev.send(port);
                }
                r.map_err(|e| {
                    log::warn!("libxen shim: d{}: unmapping grants: {e}", ctx.dom.domid());
                    libc::EINVAL
                })
            }
            Kind::Share { gfn, refs } => {
                if let Some(off) = notify.clear {
                    if let Some(mem) = ctx.dom.pages(gfn, pages) {
                        mem.store_u8(off, 0, Ordering::SeqCst);
                    }
                }
                if let Some(port) = notify.port {
                    let _ = ctx.ev.send(port);
                }
                ctx.revoke_or_defer(gfn, pages, refs);
                Ok(())
            }
        }
    }
}

/// Remove the region at `addr` of `count` pages, if `owner` (any owner if
/// `None`) made it.
fn take_region(addr: usize, count: usize, owner: Option<u64>) -> Result<Region, i32> {
    let mut regions = lock(&REGIONS);
    match regions.get(&addr) {
        Some(r) if r.pages == count && owner.is_none_or(|o| o == r.owner) => {
            Ok(regions.remove(&addr).expect("present"))
        }
        _ => Err(libc::EINVAL),
    }
}

/// Release every region `owner` still holds (closing its handle).
fn release_all(owner: u64) {
    let mine: Vec<Region> = {
        let mut regions = lock(&REGIONS);
        let addrs: Vec<usize> = regions
            .iter()
            .filter(|(_, r)| r.owner == owner)
            .map(|(&a, _)| a)
            .collect();
        addrs.iter().filter_map(|a| regions.remove(a)).collect()
    };
    for r in mine {
        let _ = r.release();
    }
}

fn null(e: i32) -> *mut c_void {
    set_errno(e);
    core::ptr::null_mut()
}

fn grant_errno(e: &GrantError) -> i32 {
    match e {
        GrantError::NoFreeRefs | GrantError::NoAddressSpace => libc::ENOMEM,
        GrantError::Hypercall(e) => e.0,
        _ => libc::EINVAL,
    }
}

/// Read `count` grant refs from C (count already bounded).
///
/// # Safety
/// `refs` points to `count` readable `u32`s.
unsafe fn read_refs(refs: *const u32, count: usize) -> Vec<GrantRef> {
    // SAFETY: per the contract; the refs are private C memory, copied out
    // at once.
    unsafe { core::slice::from_raw_parts(refs, count) }.to_vec()
}

// ---- xengnttab ------------------------------------------------------------

/// Open a grant mapping handle for the calling thread's domain; NULL
/// (`ENOENT`) if it has none.
#[unsafe(no_mangle)]
pub extern "C" fn xengnttab_open(_logger: *mut c_void, _flags: u32) -> *mut XengnttabHandle {
    let Some(ctx) = current() else {
        set_errno(libc::ENOENT);
        return core::ptr::null_mut();
    };
    ctx.counts.gnttab.fetch_add(1, Ordering::SeqCst);
    Box::into_raw(Box::new(XengnttabHandle {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        ctx,
    }))
}

/// Close a handle, unmapping (and notifying for) everything it still maps.
///
/// # Safety
/// `h` is NULL or a live handle from [`xengnttab_open`], not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengnttab_close(h: *mut XengnttabHandle) -> c_int {
    if h.is_null() {
        return 0;
    }
    // SAFETY: per the contract, `h` came from `Box::into_raw` and is
    // handed back exactly once.
    let h = unsafe { Box::from_raw(h) };
    release_all(h.id);
    h.ctx.counts.gnttab.fetch_sub(1, Ordering::SeqCst);
    0
}

/// Map `refs` of `domid` contiguously; the common part of the map calls.
fn map(
    h: &XengnttabHandle,
    domid: u32,
    refs: &[GrantRef],
    prot: c_int,
    notify: Notify,
) -> *mut c_void {
    let Ok(dom) = DomId::try_from(domid) else {
        return null(libc::EINVAL);
    };
    let writable = prot & libc::PROT_WRITE != 0;
    if notify.clear.is_some() && !writable {
        // gntdev refuses to clear a byte in a read-only mapping.
        return null(libc::EINVAL);
    }
    let mapping = match map_grant_refs(&h.ctx.dom, dom, refs, !writable) {
        Ok(m) => m,
        Err(e) => return null(grant_errno(&e)),
    };
    let addr = mapping.mem().addr();
    lock(&REGIONS).insert(
        addr,
        Region {
            owner: h.id,
            ctx: h.ctx.clone(),
            pages: refs.len(),
            notify,
            kind: Kind::Map { mapping, writable },
        },
    );
    addr as *mut c_void
}

/// Map one grant; see [`xengnttab_map_domain_grant_refs`].
///
/// # Safety
/// `h` is NULL or a live handle from [`xengnttab_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengnttab_map_grant_ref(
    h: *mut XengnttabHandle,
    domid: u32,
    r: u32,
    prot: c_int,
) -> *mut c_void {
    // SAFETY: forwarded contract; `&r` is one readable ref.
    unsafe { xengnttab_map_domain_grant_refs(h, 1, domid, &r, prot) }
}

/// Map `count` grants of `domid` into contiguous memory, writable if
/// `prot` has `PROT_WRITE`; NULL and `errno` on failure.
///
/// # Safety
/// `h` is NULL or a live handle from [`xengnttab_open`]; `refs` points to
/// `count` readable `u32`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengnttab_map_domain_grant_refs(
    h: *mut XengnttabHandle,
    count: u32,
    domid: u32,
    refs: *const u32,
    prot: c_int,
) -> *mut c_void {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return null(libc::EBADF);
    };
    let count = count as usize;
    if count == 0 || count > MAX_PAGES || refs.is_null() {
        return null(libc::EINVAL);
    }
    // SAFETY: `refs` has `count` elements, per the contract.
    let refs = unsafe { read_refs(refs, count) };
    map(h, domid, &refs, prot, Notify::default())
}

/// Map one grant with an unmap notification: when it is unmapped (or the
/// handle closed), the byte at `notify_offset` is cleared (if < 4096) and
/// an event sent on `notify_port` (if not -1).
///
/// # Safety
/// `h` is NULL or a live handle from [`xengnttab_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengnttab_map_grant_ref_notify(
    h: *mut XengnttabHandle,
    domid: u32,
    r: u32,
    prot: c_int,
    notify_offset: u32,
    notify_port: u32,
) -> *mut c_void {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return null(libc::EBADF);
    };
    map(
        h,
        domid,
        &[r],
        prot,
        Notify::from_c(notify_offset, notify_port),
    )
}

/// Unmap `count` pages mapped by this handle at `start`.
///
/// # Safety
/// `h` is NULL or a live handle from [`xengnttab_open`]; C must not touch
/// the pages afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengnttab_unmap(
    h: *mut XengnttabHandle,
    start: *mut c_void,
    count: u32,
) -> c_int {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        set_errno(libc::EBADF);
        return -1;
    };
    match take_region(start as usize, count as usize, Some(h.id)).and_then(Region::release) {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

// ---- xengntshr ------------------------------------------------------------

/// Open a grant sharing handle for the calling thread's domain; NULL
/// (`ENOENT`) if it has none.
#[unsafe(no_mangle)]
pub extern "C" fn xengntshr_open(_logger: *mut c_void, _flags: u32) -> *mut XengntshrHandle {
    let Some(ctx) = current() else {
        set_errno(libc::ENOENT);
        return core::ptr::null_mut();
    };
    ctx.counts.gntshr.fetch_add(1, Ordering::SeqCst);
    Box::into_raw(Box::new(XengntshrHandle {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        ctx,
    }))
}

/// Close a handle, unsharing (and notifying for) everything it still
/// shares.
///
/// # Safety
/// `h` is NULL or a live handle from [`xengntshr_open`], not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengntshr_close(h: *mut XengntshrHandle) -> c_int {
    if h.is_null() {
        return 0;
    }
    // SAFETY: per the contract, `h` came from `Box::into_raw` and is
    // handed back exactly once.
    let h = unsafe { Box::from_raw(h) };
    release_all(h.id);
    h.ctx.retry_deferred();
    h.ctx.counts.gntshr.fetch_sub(1, Ordering::SeqCst);
    0
}

/// Allocate `count` zeroed pages and grant them to `domid`; the common
/// part of the share calls. Writes the refs to `refs_out`.
///
/// # Safety
/// `refs_out` points to `count` writable `u32`s.
unsafe fn share(
    h: &XengntshrHandle,
    domid: u32,
    count: usize,
    refs_out: *mut u32,
    writable: bool,
    notify: Notify,
) -> *mut c_void {
    let ctx = &h.ctx;
    ctx.retry_deferred();
    let Ok(peer) = DomId::try_from(domid) else {
        return null(libc::EINVAL);
    };
    let Some(gfn) = ctx.dom.alloc_pages(count) else {
        return null(libc::ENOMEM);
    };
    let Some(mem) = ctx.dom.pages(gfn, count) else {
        ctx.dom.free_pages(gfn, count);
        return null(libc::EFAULT);
    };
    let mut refs = Vec::with_capacity(count);
    {
        let mut gt = ctx.grants();
        for i in 0..count {
            match gt.grant(peer, gfn.add(i as u64), !writable) {
                Ok(r) => refs.push(r),
                Err(e) => {
                    for r in refs {
                        // Never mapped: revocation cannot fail.
                        let _ = gt.end_access(r);
                    }
                    drop(gt);
                    ctx.dom.free_pages(gfn, count);
                    return null(grant_errno(&e));
                }
            }
        }
    }
    // SAFETY: `refs_out` has room for `count` refs, per the contract.
    unsafe { core::ptr::copy_nonoverlapping(refs.as_ptr(), refs_out, count) };
    let addr = mem.addr();
    lock(&REGIONS).insert(
        addr,
        Region {
            owner: h.id,
            ctx: ctx.clone(),
            pages: count,
            notify,
            kind: Kind::Share { gfn, refs },
        },
    );
    addr as *mut c_void
}

/// Allocate `count` pages, grant them to `domid` (writable if `writable`),
/// store the refs in `refs`, and return the pages; NULL and `errno` on
/// failure (nothing allocated).
///
/// # Safety
/// `h` is NULL or a live handle from [`xengntshr_open`]; `refs` points to
/// `count` writable `u32`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengntshr_share_pages(
    h: *mut XengntshrHandle,
    domid: u32,
    count: c_int,
    refs: *mut u32,
    writable: c_int,
) -> *mut c_void {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return null(libc::EBADF);
    };
    let count = match usize::try_from(count) {
        Ok(n) if (1..=MAX_PAGES).contains(&n) && !refs.is_null() => n,
        _ => return null(libc::EINVAL),
    };
    // SAFETY: `refs` has room for `count` refs, per the contract.
    unsafe { share(h, domid, count, refs, writable != 0, Notify::default()) }
}

/// Share one page with an unmap notification: when it is unshared (or the
/// handle closed), the byte at `notify_offset` is cleared (if < 4096) and
/// an event sent on `notify_port` (if not -1).
///
/// # Safety
/// `h` is NULL or a live handle from [`xengntshr_open`]; `r` points to one
/// writable `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengntshr_share_page_notify(
    h: *mut XengntshrHandle,
    domid: u32,
    r: *mut u32,
    writable: c_int,
    notify_offset: u32,
    notify_port: u32,
) -> *mut c_void {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return null(libc::EBADF);
    };
    if r.is_null() {
        return null(libc::EINVAL);
    }
    let notify = Notify::from_c(notify_offset, notify_port);
    // SAFETY: `r` has room for one ref, per the contract.
    unsafe { share(h, domid, 1, r, writable != 0, notify) }
}

/// Unshare `count` pages shared by this handle at `start`, firing the
/// notification; the grants are revoked now, or once the peer unmaps.
///
/// # Safety
/// `h` is NULL or a live handle from [`xengntshr_open`]; C must not touch
/// the pages afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xengntshr_unshare(
    h: *mut XengntshrHandle,
    start: *mut c_void,
    count: u32,
) -> c_int {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        set_errno(libc::EBADF);
        return -1;
    };
    h.ctx.retry_deferred();
    match take_region(start as usize, count as usize, Some(h.id)).and_then(Region::release) {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

// ---- munmap ---------------------------------------------------------------

/// What `libxenvchan_close` calls instead of `munmap` (the interop test's
/// build script renames the archive's reference): release the shim region
/// starting at `addr` of exactly `len` bytes, as unmapping a gntdev or
/// gntalloc mapping does on Linux. Any other range is refused (`EINVAL`)
/// rather than unmapped: it would lie in a simulated domain's reserved
/// address space, which must never be punched through.
///
/// # Safety
/// C must not touch the range afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn libxen_shim_munmap(addr: *mut c_void, len: usize) -> c_int {
    let pages = len.div_ceil(PAGE_SIZE);
    match take_region(addr as usize, pages, None).and_then(Region::release) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("libxen shim: munmap({addr:p}, {len:#x}) of no shim region refused");
            set_errno(e);
            -1
        }
    }
}
