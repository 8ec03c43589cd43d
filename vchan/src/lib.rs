//! vchan: libxenvchan-compatible byte streams between two domains (server
//! and client) over one shared control page, two byte rings, one event
//! channel and two XenStore keys, built on the `xen` crate.
//!
//! It must interoperate with Debian's libxenvchan (C): QubesDB and qrexec
//! peers in dom0 use it, so the wire behaviour (page layout, order choice,
//! notify bits, liveness bytes, xenstore keys and permissions) is exactly
//! libxenvchan's (`tools/libs/vchan/{init,io}.c`). What differs is only
//! what a peer cannot observe: every index the peer can write is read
//! once, checked against its window, and only then used, and a violation
//! breaks the connection with a typed error instead of stalling it.
//!
//! Layers, bottom up:
//! - [`layout`]: control page offsets, ring placement, the server's order
//!   choice and the client's checks.
//! - [`ring`]: one direction's byte ring ([`RingReader`], [`RingWriter`]),
//!   validating the peer's index (sans-IO).
//! - [`endpoint`]: one end's two rings plus notify and liveness bytes
//!   ([`Endpoint`], sans-IO: it says when to notify, never does).
//! - [`rendezvous`]: the xenstore directory ([`RendezvousPath`] for the
//!   Qubes form) and the client's wait for the keys.
//! - [`channel`]: [`Vchan`], the endpoint wired to event channels, grant
//!   table and xenstore, with setup and close as libxenvchan.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod channel;
mod closed;
pub mod endpoint;
pub mod error;
pub mod layout;
pub mod rendezvous;
pub mod ring;
mod setup;

pub use channel::{Closed, Vchan, LIVENESS_POLL_NS};
pub use endpoint::{Endpoint, PeerState, Progress, Role};
pub use error::{IndexKind, ProtocolError, RingId, VchanError};
pub use layout::{
    ring_location, RingLocation, RingOrders, MAX_RING_ORDER, MAX_RING_SIZE, MIN_RING_ORDER,
    PAGE_RING_ORDER,
};
pub use rendezvous::{RendezvousPath, QUBESDB_PORT};
pub use ring::{RingReader, RingWriter};
