//! Why a connection was dropped, and the errors of the public API.

use alloc::string::String;
use core::fmt;

use xen::ring::RingError;
use xen::store::StoreError;

use crate::rx::RxError;
use crate::tx::TxError;

/// Which ring a [`RingError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// The transmit ring.
    Tx,
    /// The receive ring.
    Rx,
}

/// Something the backend did that breaks the protocol. The connection is
/// torn down and the reason logged once as `vif <devid> (backend dom <B>):
/// <reason>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A ring index out of range.
    Ring(Ring, RingError),
    /// A bad receive response.
    Rx(RxError),
    /// A bad transmit response.
    Tx(TxError),
    /// A xenstore value that does not parse (`key` names it, `raw` is the
    /// value, truncated).
    BadValue {
        /// The key (path relative to the device or backend directory).
        key: &'static str,
        /// The value as read.
        raw: String,
    },
    /// The backend does not offer `feature-rx-copy` (we need it).
    NoRxCopy,
    /// More than [`crate::STORM_WAKEUPS`] notifications with no work.
    EventStorm {
        /// Idle wakeups counted.
        wakeups: u32,
    },
    /// The backend keeps too many of our pages mapped after answering.
    PagesHeld {
        /// Pages held.
        pages: usize,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Ring(Ring::Tx, e) => write!(f, "tx ring: {e}"),
            Violation::Ring(Ring::Rx, e) => write!(f, "rx ring: {e}"),
            Violation::Rx(e) => e.fmt(f),
            Violation::Tx(e) => e.fmt(f),
            Violation::BadValue { key, raw } => write!(f, "{key} does not parse: {raw:?}"),
            Violation::NoRxCopy => write!(f, "backend does not offer feature-rx-copy"),
            Violation::EventStorm { wakeups } => write!(
                f,
                "event storm: {wakeups} notifications without work within a second"
            ),
            Violation::PagesHeld { pages } => {
                write!(
                    f,
                    "backend keeps {pages} of our pages mapped after releasing them"
                )
            }
        }
    }
}

/// Errors of the public API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetfrontError {
    /// [`crate::Netfront::start`] was called twice.
    AlreadyStarted,
    /// A xenstore operation failed.
    Store(StoreError),
    /// The backend broke the protocol; the connection was torn down (the
    /// driver reconnects by itself if the backend restarts properly). Not
    /// fatal to the caller: the reason was logged already.
    Disconnected(Violation),
}

impl fmt::Display for NetfrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetfrontError::AlreadyStarted => write!(f, "netfront already started"),
            NetfrontError::Store(e) => write!(f, "xenstore: {e}"),
            NetfrontError::Disconnected(v) => write!(f, "disconnected: {v}"),
        }
    }
}

impl From<StoreError> for NetfrontError {
    fn from(e: StoreError) -> Self {
        NetfrontError::Store(e)
    }
}
