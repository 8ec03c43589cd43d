//! netfront: the Xen vif frontend the firewall uses for its uplink to
//! sys-net, whose Linux netback is the backend — and, being sys-net,
//! untrusted.
//!
//! - The xenbus handshake is a state machine ([`Netfront::start`],
//!   [`Netfront::handle_watch`], [`Netfront::tick`]) that follows the
//!   backend: it tears down and reconnects by itself when sys-net
//!   restarts, when Qubes re-attaches the uplink (new device id or new
//!   backend domain), or when the backend goes straight from Connected back
//!   to InitWait. A backend that breaks the protocol is disconnected and
//!   reconnected only when it restarts, or after a bounded backoff.
//! - The data path ([`Netfront::poll`], [`Netfront::send`],
//!   [`Netfront::flush`]) moves [`Frame`](xen::frame::Frame)s without
//!   copying: received packets are the pool pages we lent the backend
//!   writable, transmitted frames' pages are granted read-only. It does not
//!   allocate, and sends at most one notification per call.
//! - Everything the backend writes is copied once and validated; the
//!   response parsers are sans-IO ([`rx`], [`tx`], [`ids`]) and fuzzed
//!   (`fuzz/fuzz_targets/netfront_rx.rs`). Any violation tears the
//!   connection down with exactly one `warn!` line
//!   `vif <devid> (backend dom <B>): <reason>` ([`Violation`]).
//!
//! # Driving it
//!
//! ```text
//! nf.start(&mut xs)?;                          // watches device/vif
//! loop {
//!     xs.handle_notification()?;
//!     while let Some(e) = xs.poll_event() {
//!         nf.handle_watch(&mut xs, &mut gt, &mut pool, &e);
//!     }
//!     nf.tick(&mut xs, &mut gt, &mut pool);    // every iteration (cheap)
//!     if nf.link() == LinkState::Up {
//!         let _ = nf.poll(&mut gt, &mut pool, &mut rxq); // Err: peer dropped, logged
//!         // ... nf.send(&mut gt, &mut pool, frame) for each frame ...
//!         nf.flush();
//!     }
//!     if !nf.needs_poll() { wait on [xs.port(), nf.port()?] with a deadline }
//! }
//! ```
//!
//! `tick` matters: `poll` has no xenstore handle, so after a violation it
//! finds, our `state = Closed` is written by the next `tick` (or watch
//! event); `tick` also runs the reconnect backoff and the quarantine
//! retries.
//!
//! # Decisions
//!
//! - One queue, one event channel, flat keys (multi-queue and split
//!   channels offered by Linux netback are ignored).
//! - Receive buffers: every free rx slot gets a zeroed pool page lent
//!   writable, id = slot index; up to 256 pool pages are held while up.
//! - Transmit: each segment's page is granted read-only; the bytes of the
//!   page outside the segment are zeroed first (the grant exposes the whole
//!   page; a pool page may hold an earlier packet). A first segment shorter
//!   than an Ethernet header gets a copied head (Linux netback drops such
//!   packets).
//! - Offloads are symmetric: a feature is used in either direction only if
//!   both sides have it ([`Netfront::negotiated`]); the degraded paths
//!   (software checksum, software GSO, linearising) copy.
//! - Receive: Linux's "19 slots if the first is ≤ 256 bytes" allowance is
//!   dropped (counted), not delivered: a frame holds 18 segments (see
//!   [`rx`]). A `csum_blank` packet is delivered as
//!   [`Checksum::Partial`](xen::frame::Checksum) even if we wrote
//!   `feature-no-csum-offload` (harmless: the engine completes partial
//!   checksums from clients anyway). A packet whose slots are not all
//!   published yet waits (Linux would drop it).
//!
//! Protocol facts: `shared/docs/xen-qubes-protocols.md` sections 7 and 8;
//! the driver contract: `docs/netif.md`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use xen::abi::DomId;

mod conn;
pub mod error;
pub mod features;
pub mod ids;
mod netfront;
mod quarantine;
pub mod rx;
pub mod stats;
pub mod tx;

pub use error::{NetfrontError, Ring, Violation};
pub use features::Features;
pub use netfront::{LinkState, Netfront, NetfrontConfig};
pub use quarantine::{CONNECTION_GRANTS, QUARANTINE_CAP};
pub use stats::{RxDrops, Stats, TxDrops};

/// An event storm: more than this many notifications that brought no work
/// (no response on either ring), with no work in between, within one
/// second, disconnect the backend.
pub const STORM_WAKEUPS: u32 = 10_000;

/// The directory (relative to our domain's home) under which the toolstack
/// creates one entry per vif; watch it rather than one device, because a
/// netvm change re-attaches the vif under a new device id.
pub const VIF_DEVICES_DIR: &str = "device/vif";

/// Our frontend directory for vif `devid`, relative to our domain's home:
/// `device/vif/<devid>`.
pub fn device_dir(devid: u32) -> String {
    format!("{VIF_DEVICES_DIR}/{devid}")
}

/// The absolute frontend directory of vif `devid` in domain `frontend`:
/// `/local/domain/<frontend>/device/vif/<devid>` (the value a backend finds
/// in its `frontend` key).
pub fn absolute_device_dir(frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{frontend}/{}", device_dir(devid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_device_dir() {
        assert_eq!(device_dir(0), "device/vif/0");
        assert_eq!(device_dir(12), "device/vif/12");
    }

    #[test]
    fn absolute_device_dir_names_the_domain() {
        assert_eq!(absolute_device_dir(7, 0), "/local/domain/7/device/vif/0");
    }
}
