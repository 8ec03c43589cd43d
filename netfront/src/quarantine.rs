//! Pages whose grant the backend still holds.
//!
//! Revoking a grant fails while the peer has the page mapped (or a copy
//! is in flight). Such a page must not be reused — the peer could still
//! read or write it — so it waits here and revocation is retried later
//! ([`Quarantine::retry`]). The quarantine is bounded: at most
//! [`QUARANTINE_CAP`] pages, which is two connections' worth of grants
//! (ring pages, every receive buffer, every transmit slot). A new
//! connection is only made while at least one connection's worth of room
//! is left ([`Quarantine::has_room_for_connection`]), so tearing down the
//! current connection always fits; a page that does not fit anyway (never
//! expected) is abandoned: its grant stays active and the page is never
//! reused (counted in [`Stats::abandoned`](crate::Stats)).

use alloc::vec::Vec;

use xen::abi::GrantRef;
use xen::gnttab::GrantTable;
use xen::memory::pool::{LentPage, PagePool, PoolPage};
use xen::memory::Gfn;
use xen::Platform;

use crate::rx::RX_RING_SIZE;
use crate::tx::TX_RING_SIZE;
use crate::Stats;

/// The most grants one connection holds: two ring pages, every receive
/// buffer, a page per transmit id.
pub const CONNECTION_GRANTS: usize = 2 + RX_RING_SIZE + TX_RING_SIZE;

/// The most pages held in quarantine.
pub const QUARANTINE_CAP: usize = 2 * CONNECTION_GRANTS;

/// A page whose grant could not be revoked yet.
#[derive(Debug)]
pub(crate) enum Held {
    /// A shared ring page (platform RAM, granted writable).
    Ring {
        /// The grant.
        gref: GrantRef,
        /// The page.
        gfn: Gfn,
    },
    /// A receive buffer lent writable.
    Lent(LentPage),
    /// A transmit page granted read-only.
    Granted {
        /// The grant.
        gref: GrantRef,
        /// The page.
        page: PoolPage,
    },
}

/// The quarantine (see the module doc).
#[derive(Debug)]
pub(crate) struct Quarantine {
    held: Vec<Held>,
}

impl Quarantine {
    pub(crate) fn new() -> Quarantine {
        Quarantine {
            held: Vec::with_capacity(QUARANTINE_CAP),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Pool pages held (ring pages are platform RAM, not pool pages).
    pub(crate) fn pool_pages(&self) -> usize {
        self.held
            .iter()
            .filter(|h| !matches!(h, Held::Ring { .. }))
            .count()
    }

    /// Whether a new connection may be made: tearing it down later must
    /// fit.
    pub(crate) fn has_room_for_connection(&self) -> bool {
        self.held.len() + CONNECTION_GRANTS <= QUARANTINE_CAP
    }

    /// Whether the backend holds more pages than one connection may leave
    /// behind (a reason to disconnect it).
    pub(crate) fn over_limit(&self) -> bool {
        !self.has_room_for_connection()
    }

    /// Hold a page. Beyond the cap it is abandoned (never reused).
    pub(crate) fn push(&mut self, h: Held, stats: &mut Stats) {
        if self.held.len() < QUARANTINE_CAP {
            self.held.push(h);
            stats.quarantined_total += 1;
        } else {
            // `h` goes out of scope here: the handle is lost, so the page
            // stays granted and is never handed out again.
            stats.abandoned += 1;
        }
        stats.quarantined = self.held.len() as u64;
    }

    /// Try to revoke every held grant; release the pages that come free.
    pub(crate) fn retry<P: Platform + Clone>(
        &mut self,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        stats: &mut Stats,
    ) {
        let mut i = 0;
        while i < self.held.len() {
            let h = self.held.swap_remove(i);
            match release(h, gt, pool) {
                Ok(()) => stats.quarantine_released += 1,
                Err(h) => {
                    // Put it back where it was (the last element moved to
                    // `i` goes to the end again).
                    self.held.push(h);
                    let last = self.held.len() - 1;
                    self.held.swap(i, last);
                    i += 1;
                }
            }
        }
        stats.quarantined = self.held.len() as u64;
    }
}

/// Revoke the grant of `h` and give its page back; the page is handed back
/// if the peer still holds it.
pub(crate) fn release<P: Platform + Clone>(
    h: Held,
    gt: &mut GrantTable<P>,
    pool: &mut PagePool,
) -> Result<(), Held> {
    match h {
        Held::Ring { gref, gfn } => match gt.end_access(gref) {
            Ok(()) => {
                gt.platform().free_pages(gfn, 1);
                Ok(())
            }
            Err(_) => Err(Held::Ring { gref, gfn }),
        },
        Held::Lent(lent) => match gt.reclaim(pool, lent) {
            Ok(page) => {
                pool.free(page);
                Ok(())
            }
            Err((lent, _)) => Err(Held::Lent(lent)),
        },
        Held::Granted { gref, page } => match gt.end_access(gref) {
            Ok(()) => {
                pool.free(page);
                Ok(())
            }
            Err(_) => Err(Held::Granted { gref, page }),
        },
    }
}
