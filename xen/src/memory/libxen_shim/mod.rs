//! The C interfaces of Xen's userspace libraries that Debian's
//! `libxenvchan.a` calls (`xenevtchn_*`, `xengnttab_*`, `xengntshr_*`,
//! `xs_*`), implemented over the simulator, so that the real C library can
//! be linked into an interop test and talk to this project's vchan across
//! simulated domains.
//!
//! # How a C call finds its domain
//!
//! In a real system each process belongs to one domain. Here every
//! simulated domain runs on threads of one process, so the domain is chosen
//! per thread: a test calls [`enter_domain`] on the domain's thread before
//! calling into C, and every handle the C code then opens
//! (`xenevtchn_open`, `xengnttab_open`, `xengntshr_open`, `xs_open`) is
//! bound to that domain for the rest of its life; later calls on the handle
//! may come from any thread.
//!
//! All handles of one domain share one [`DomainCtx`]: its event channel
//! service (the shared info page is mapped once per domain), its grant
//! table, and its xenstore ring connection, exactly as the kernel drivers
//! of one Linux domain share them. A domain driven through this shim must
//! therefore not also map its shared info page or grant table elsewhere.
//!
//! # What is emulated, and how faithfully
//!
//! * `xenevtchn_*` behaves as Linux's `/dev/xen/evtchn`: a port that fires
//!   is masked for its handle and queued; [`xenevtchn_fd`](evtchn::xenevtchn_fd)
//!   is a real file descriptor (an eventfd) that is readable exactly while
//!   the queue is non-empty, `xenevtchn_pending` blocks until a port is
//!   queued and returns it, `xenevtchn_unmask` re-enables delivery. A
//!   helper thread per handle stands in for the kernel's interrupt handler.
//! * `xengntshr_*` behaves as `/dev/xen/gntalloc`: pages come from the
//!   domain's RAM and are granted with the domain's grant table; the
//!   returned pointer is the domain's own memory, so C reads and writes the
//!   bytes the peer sees. Unsharing fires the unmap notification (clear a
//!   byte, send an event) and then ends foreign access; a grant the peer
//!   still maps is revoked later (as Linux defers it), see [`reclaim`].
//! * `xengnttab_*` behaves as `/dev/xen/gntdev`: grants are mapped with
//!   `GNTTABOP_map_grant_ref` into the domain's address space; unmapping
//!   fires the notification (clear the byte while still mapped, unmap,
//!   then send the event).
//! * `libxenvchan_close` unmaps ring buffers with a plain `munmap`. The
//!   interop test's build script renames that one undefined symbol of the
//!   archive to [`libxen_shim_munmap`](gnt::libxen_shim_munmap), which
//!   releases a shim mapping as closing a gntdev/gntalloc mapping does (and
//!   refuses any other address, so the simulator's reserved address space
//!   can never be punched through).
//! * `xs_*` speaks the xenstore ring protocol as the domain, through one
//!   connection per domain, so xenstored applies the domain's permissions;
//!   relative paths are relative to `/local/domain/<domid>`.
//!
//! Every C entry point validates its pointers for NULL, never panics, and
//! reports failure the C way (NULL / -1 / false and `errno`).

pub mod evtchn;
pub mod gnt;
pub mod xs;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec::Vec;

use crate::abi::{Errno, GrantRef};
use crate::evtchn::EventChannels;
use crate::gnttab::{GrantError, GrantTable};
use crate::memory::{Gfn, GuestMemory};
use crate::sim::SimDomain;

/// Grant table frames each shimmed domain maps: 8 frames, 4096 entries,
/// enough for several vchans with 1 MiB rings at once.
const GRANT_FRAMES: u32 = 8;

/// Why a domain could not be set up for C callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShimError {
    /// Mapping the shared info page failed.
    EventChannels(Errno),
    /// Mapping the grant table failed.
    GrantTable(GrantError),
}

impl core::fmt::Display for ShimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShimError::EventChannels(e) => {
                write!(f, "libxen shim: cannot map the shared info page: {e}")
            }
            ShimError::GrantTable(e) => write!(f, "libxen shim: cannot map the grant table: {e}"),
        }
    }
}

impl std::error::Error for ShimError {}

/// What one domain's C handles hold right now (see [`stats`]). After every
/// vchan of the domain closed, everything is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShimStats {
    /// Open `xenevtchn` handles.
    pub evtchn_handles: usize,
    /// Ports bound through them (the helper's kick channel not counted).
    pub bound_ports: usize,
    /// Open `xengnttab` handles.
    pub gnttab_handles: usize,
    /// Open `xengntshr` handles.
    pub gntshr_handles: usize,
    /// Open `xs` handles.
    pub xs_handles: usize,
    /// Foreign pages mapped through `xengnttab`.
    pub mapped_pages: usize,
    /// Pages shared through `xengntshr` and not yet unshared.
    pub shared_pages: usize,
    /// Unshared pages whose grants the peer still maps (revocation
    /// deferred; see [`reclaim`]).
    pub deferred_pages: usize,
}

/// Unshared pages still mapped by the peer: their remaining grants are
/// revoked, and the pages freed, once the peer lets go.
struct Deferred {
    gfn: Gfn,
    pages: usize,
    refs: Vec<GrantRef>,
}

/// Open handle counters of one domain.
#[derive(Default)]
struct Counts {
    evtchn: AtomicUsize,
    ports: AtomicUsize,
    gnttab: AtomicUsize,
    gntshr: AtomicUsize,
    xs: AtomicUsize,
    /// Loopback events sent to wake event channel helpers (cumulative).
    kicks: AtomicU64,
}

/// Everything the C handles of one simulated domain share: the role the
/// kernel's drivers play for a Linux domain.
pub struct DomainCtx {
    dom: SimDomain,
    ev: EventChannels<SimDomain>,
    gt: Mutex<GrantTable<SimDomain>>,
    store: Mutex<Option<xs::StoreConn>>,
    deferred: Mutex<Vec<Deferred>>,
    counts: Counts,
}

impl DomainCtx {
    fn new(dom: &SimDomain) -> Result<DomainCtx, ShimError> {
        let ev = EventChannels::new(dom.clone()).map_err(ShimError::EventChannels)?;
        let gt = GrantTable::new(dom.clone(), GRANT_FRAMES).map_err(ShimError::GrantTable)?;
        Ok(DomainCtx {
            dom: dom.clone(),
            ev,
            gt: Mutex::new(gt),
            store: Mutex::new(None),
            deferred: Mutex::new(Vec::new()),
            counts: Counts::default(),
        })
    }

    /// The domain this context belongs to.
    pub fn domain(&self) -> &SimDomain {
        &self.dom
    }

    fn grants(&self) -> MutexGuard<'_, GrantTable<SimDomain>> {
        lock(&self.gt)
    }

    /// End access to `refs` (granted pages `gfn..gfn+pages`) and free the
    /// pages; grants the peer still maps are kept for [`reclaim`].
    fn revoke_or_defer(&self, gfn: Gfn, pages: usize, refs: Vec<GrantRef>) {
        let left = {
            let mut gt = self.grants();
            refs.into_iter()
                .filter(|&r| match gt.end_access(r) {
                    Ok(()) => false,
                    Err(GrantError::InUse(_)) => true,
                    Err(e) => {
                        log::warn!("libxen shim: d{}: ending grant {r}: {e}", self.dom.domid());
                        false
                    }
                })
                .collect::<Vec<_>>()
        };
        if left.is_empty() {
            self.dom.free_pages(gfn, pages);
        } else {
            lock(&self.deferred).push(Deferred {
                gfn,
                pages,
                refs: left,
            });
        }
    }

    /// Retry deferred revocations; returns the pages still deferred.
    fn retry_deferred(&self) -> usize {
        let mut deferred = lock(&self.deferred);
        if deferred.is_empty() {
            return 0;
        }
        let mut gt = self.grants();
        deferred.retain_mut(|d| {
            d.refs
                .retain(|&r| matches!(gt.end_access(r), Err(GrantError::InUse(_))));
            if d.refs.is_empty() {
                self.dom.free_pages(d.gfn, d.pages);
                false
            } else {
                true
            }
        });
        deferred.iter().map(|d| d.pages).sum()
    }
}

/// Lock a mutex, ignoring poisoning: every critical section here leaves
/// its data consistent, and a C caller must not be aborted because some
/// other thread panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The contexts of every domain entered so far, so that all threads of a
/// domain share one.
static DOMAINS: Mutex<Vec<Arc<DomainCtx>>> = Mutex::new(Vec::new());

std::thread_local! {
    static CURRENT: RefCell<Option<Arc<DomainCtx>>> = const { RefCell::new(None) };
}

/// Whether two handles name the same simulated domain: each domain owns
/// its memory object, which lives as long as any handle of the domain.
fn same_domain(a: &SimDomain, b: &SimDomain) -> bool {
    core::ptr::eq(a.memory(), b.memory())
}

fn context_of(dom: &SimDomain) -> Option<Arc<DomainCtx>> {
    lock(&DOMAINS)
        .iter()
        .find(|c| same_domain(&c.dom, dom))
        .cloned()
}

/// The current thread's domain, if [`enter_domain`] chose one.
fn current() -> Option<Arc<DomainCtx>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Makes the calling thread act as a domain for C calls, until dropped.
/// Not `Send`: it restores the thread's previous domain when dropped.
#[must_use = "the thread leaves the domain when the guard is dropped"]
pub struct Entered {
    prev: Option<Arc<DomainCtx>>,
    ctx: Arc<DomainCtx>,
    _not_send: PhantomData<*const ()>,
}

impl Entered {
    /// The context of the entered domain.
    pub fn context(&self) -> &Arc<DomainCtx> {
        &self.ctx
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// Make the calling thread act as `dom` for the C handles it opens from now
/// on. The first call for a domain maps its shared info page and grant
/// table (once per domain, shared by all its threads and handles).
pub fn enter_domain(dom: &SimDomain) -> Result<Entered, ShimError> {
    let ctx = {
        let mut all = lock(&DOMAINS);
        match all.iter().find(|c| same_domain(&c.dom, dom)) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(DomainCtx::new(dom)?);
                all.push(c.clone());
                c
            }
        }
    };
    let prev = CURRENT.with(|c| c.borrow_mut().replace(ctx.clone()));
    Ok(Entered {
        prev,
        ctx,
        _not_send: PhantomData,
    })
}

/// Drop the shim's context of `dom` (call after its C handles are closed,
/// before destroying the domain). Handles still open keep it alive.
/// Returns whether the domain was known.
pub fn forget_domain(dom: &SimDomain) -> bool {
    let mut all = lock(&DOMAINS);
    let before = all.len();
    all.retain(|c| !same_domain(&c.dom, dom));
    all.len() != before
}

/// Retry revoking grants of unshared pages that the peer still mapped;
/// returns the number of pages still waiting. (Every shim call that shares
/// or unshares pages retries too.)
pub fn reclaim(dom: &SimDomain) -> usize {
    context_of(dom).map_or(0, |c| c.retry_deferred())
}

/// What `dom`'s C handles hold now; `None` if the domain was never entered.
pub fn stats(dom: &SimDomain) -> Option<ShimStats> {
    let ctx = context_of(dom)?;
    let (mapped_pages, shared_pages) = gnt::region_pages(&ctx);
    let deferred_pages = lock(&ctx.deferred).iter().map(|d| d.pages).sum();
    let c = &ctx.counts;
    Some(ShimStats {
        evtchn_handles: c.evtchn.load(Ordering::SeqCst),
        bound_ports: c.ports.load(Ordering::SeqCst),
        gnttab_handles: c.gnttab.load(Ordering::SeqCst),
        gntshr_handles: c.gntshr.load(Ordering::SeqCst),
        xs_handles: c.xs.load(Ordering::SeqCst),
        mapped_pages,
        shared_pages,
        deferred_pages,
    })
}

/// Events `dom`'s shim has sent to itself so far to wake its event channel
/// helper threads. The simulator counts them among the domain's
/// notifications; subtract them to count what the C code sent.
pub fn helper_kicks(dom: &SimDomain) -> u64 {
    context_of(dom).map_or(0, |c| c.counts.kicks.load(Ordering::SeqCst))
}

/// Set the calling thread's `errno`.
fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns the address of the calling
    // thread's `errno`, valid for the thread's lifetime; writing an int
    // there is what every libc function does on failure.
    unsafe { *libc::__errno_location() = e };
}
