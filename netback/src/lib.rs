//! netback: the Xen vif backend the firewall runs for its client AppVMs
//! (whose Linux or Windows netfront is the frontend).
//!
//! - Handshake ([`Netback::start`], [`Netback::handle_watch`]): watches
//!   `backend/vif`, and for each device the toolstack creates publishes
//!   its features and InitWait in one transaction, waits for the frontend
//!   to publish its rings, maps them, binds the event channel and goes
//!   Connected; closes and removes devices as Linux netback does (protocol
//!   notes, section 7.6). Windows PV drivers: one queue offered through
//!   `multi-queue-max-queues = 1`, flat or `queue-0/` keys accepted.
//! - Client → us ([`Netback::poll`]): the tx ring's chains are parsed by
//!   the pure [`tx::parse_packet`], copied into pool pages with one
//!   batched grant copy (one op per slot, same offsets, so a frame's
//!   segments mirror the slots), answered one response per slot.
//! - Us → client ([`Netback::send`], [`Netback::flush`]): frames queue per
//!   vif and are packed densely into the client's posted buffers, all
//!   vifs' copies in one hypercall; GSO frames for clients without GSO are
//!   cut in software ([`xen::frame::offload::Segmenter`]) with the payload
//!   copied straight from the frame's pages; partial checksums are
//!   completed for clients that do not take them.
//! - Hostile clients: every index, slot and key is copied once and
//!   validated; a violation disconnects that vif only, with one
//!   `warn!` line `vif <domid>.<devid>: <reason>`.
//!
//! Single-threaded; the event loop owns the [`xen::store::Xenstore`] and
//! the [`xen::memory::pool::PagePool`] and passes them in. `poll`, `send`
//! and `flush` do not allocate (scratch is sized when a vif connects).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod config;
mod error;
mod handshake;
pub mod keys;
mod netback;
pub mod rx;
mod rxpath;
mod stats;
pub mod tx;
mod txpath;
mod vif;

use alloc::format;
use alloc::string::String;
use xen::abi::DomId;

pub use config::{Features, NetbackConfig};
pub use error::NetbackError;
pub use netback::{Netback, NetbackEvent};
pub use stats::{RxDrops, Stats};
pub use vif::{Negotiated, VifId, VifInfo};

/// The directory (relative to our domain's home) under which the toolstack
/// creates `<frontend domid>/<devid>` for every vif we serve. It may not
/// exist yet when we start; watching a missing path is fine.
pub const VIF_BACKENDS_DIR: &str = "backend/vif";

/// Our backend directory for vif `devid` of domain `frontend`, relative to
/// our domain's home: `backend/vif/<frontend>/<devid>`.
pub fn backend_dir(frontend: DomId, devid: u32) -> String {
    format!("{VIF_BACKENDS_DIR}/{frontend}/{devid}")
}

/// The absolute backend directory in domain `backend`:
/// `/local/domain/<backend>/backend/vif/<frontend>/<devid>` (the value a
/// frontend finds in its `backend` key).
pub fn absolute_backend_dir(backend: DomId, frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{backend}/{}", backend_dir(frontend, devid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_backend_dir() {
        assert_eq!(backend_dir(5, 0), "backend/vif/5/0");
        assert_eq!(backend_dir(65, 3), "backend/vif/65/3");
    }

    #[test]
    fn absolute_backend_dir_names_both_domains() {
        assert_eq!(
            absolute_backend_dir(2, 5, 0),
            "/local/domain/2/backend/vif/5/0"
        );
    }
}
