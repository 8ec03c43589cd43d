//! Errors of the driver API (a misbehaving client is not one of them: it
//! is disconnected and reported through a
//! [`NetbackEvent`](crate::NetbackEvent)).

use xen::gnttab::GrantError;
use xen::store::StoreError;

/// Why a [`Netback`](crate::Netback) call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetbackError {
    /// A xenstore operation of our own failed (dom0's store is trusted, so
    /// this is a local or dom0 problem).
    Store(StoreError),
    /// A grant-copy hypercall failed as a whole (not one operation: that
    /// is the client's fault and disconnects it).
    Hypercall(GrantError),
}

impl From<StoreError> for NetbackError {
    fn from(e: StoreError) -> Self {
        NetbackError::Store(e)
    }
}

impl core::fmt::Display for NetbackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetbackError::Store(e) => write!(f, "xenstore: {e}"),
            NetbackError::Hypercall(e) => write!(f, "grant copy: {e}"),
        }
    }
}
