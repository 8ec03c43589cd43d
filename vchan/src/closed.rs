//! What a closed vchan server still holds, and giving it back.
//!
//! A server's pages cannot be reused while the client maps them: Xen
//! refuses to end a grant that is mapped, and a page freed behind a live
//! mapping would let the client write into whatever reuses it. So the
//! server keeps a list of its granted areas and revokes them one by one as
//! the client lets go; an area is freed only when all its grants are gone,
//! and whatever is still mapped when the caller gives up is leaked (kept
//! out of circulation), never freed.

use alloc::string::String;
use alloc::vec::Vec;

use xen::abi::GrantRef;
use xen::gnttab::{GrantError, GrantTable};
use xen::memory::Gfn;
use xen::store::wire::XsError;
use xen::store::{StoreError, Xenstore};
use xen::Platform;

use crate::error::VchanError;

/// Pages of ours granted to the client: the control page or one ring.
#[derive(Debug)]
pub(crate) struct Area {
    pub(crate) gfn: Gfn,
    pub(crate) pages: usize,
    /// Grants not yet revoked (one per page while all are active).
    pub(crate) grants: Vec<GrantRef>,
}

/// A xenstore directory to remove, and optionally its parent if that
/// became empty (the Qubes wrapper's `data/vchan/<client>`).
#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) path: String,
    pub(crate) prune_parent: Option<String>,
}

/// What a closed server still holds: grants the client may still map, the
/// pages behind them, and the xenstore directory. Empty for a client.
///
/// Dropping a `Closed` that is not released leaks its pages on purpose:
/// they stay granted (the client may still write them) and are never
/// reused.
#[derive(Debug, Default)]
#[must_use = "a closed server still holds grants and a xenstore directory: call Closed::release"]
pub struct Closed {
    pub(crate) areas: Vec<Area>,
    pub(crate) dirs: Vec<Dir>,
}

impl Closed {
    /// Whether everything has been given back.
    pub fn is_released(&self) -> bool {
        self.areas.is_empty() && self.dirs.is_empty()
    }

    /// Grants still active.
    pub fn grants_in_use(&self) -> usize {
        self.areas.iter().map(|a| a.grants.len()).sum()
    }

    /// Remove the xenstore directory (once; `ENOENT` is fine), revoke every
    /// grant the client no longer maps, and free each area whose grants are
    /// all revoked. `Ok(true)` once everything is released; `Ok(false)`
    /// while the client still maps some page (retry after its next event).
    pub fn release<P: Platform + Clone>(
        &mut self,
        gnttab: &mut GrantTable<P>,
        store: &mut Xenstore<P>,
    ) -> Result<bool, VchanError> {
        while let Some(d) = self.dirs.last() {
            remove_dir(store, d)?;
            self.dirs.pop();
        }
        self.release_grants(gnttab)
    }

    /// The grant part of [`Closed::release`].
    pub(crate) fn release_grants<P: Platform + Clone>(
        &mut self,
        gnttab: &mut GrantTable<P>,
    ) -> Result<bool, VchanError> {
        let mut err = None;
        for a in &mut self.areas {
            a.grants.retain(|&r| match gnttab.end_access(r) {
                // NotGranted: no longer active, so no longer reachable.
                Ok(()) | Err(GrantError::NotGranted(_)) => false,
                Err(GrantError::InUse(_)) => true,
                Err(e) => {
                    err.get_or_insert(e);
                    true
                }
            });
        }
        let p = gnttab.platform().clone();
        self.areas.retain(|a| {
            if a.grants.is_empty() {
                p.free_pages(a.gfn, a.pages);
                false
            } else {
                true
            }
        });
        match err {
            Some(e) => Err(e.into()),
            None => Ok(self.areas.is_empty()),
        }
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        let n = self.grants_in_use();
        if n > 0 {
            log::warn!(
                "vchan: {n} grants still in use at drop: their pages stay out of circulation"
            );
        }
    }
}

/// Remove `d.path`, then its parent if requested and now empty (in a
/// transaction, so a concurrent new child is not removed with it).
pub(crate) fn remove_dir<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    d: &Dir,
) -> Result<(), VchanError> {
    ignore_enoent(store.rm(&d.path))?;
    if let Some(parent) = &d.prune_parent {
        ignore_enoent(store.transaction(|tx| match tx.directory(parent) {
            Ok(children) if children.is_empty() => tx.rm(parent),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }))?;
    }
    Ok(())
}

fn ignore_enoent(r: Result<(), StoreError>) -> Result<(), VchanError> {
    match r {
        Ok(()) | Err(StoreError::Xs(XsError::Enoent)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
