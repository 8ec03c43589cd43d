//! QubesDB client: talks the QubesDB wire protocol to dom0's
//! `qubesdb-daemon` over a vchan (this VM is the client, dom0 serves port
//! 111), keeps a local replica of the database and turns it into typed,
//! immutable snapshots (network configuration, per-client firewall rules)
//! for the firewall. A model of dom0's daemon is included for the
//! simulator and the tests.
//!
//! Layers, bottom up, each testable on its own:
//! - [`wire`]: `struct qdb_hdr` (72 bytes) with dom0's checks
//!   (`verify_hdr`), and the encoder; [`decoder`]: bytes in any chunking to
//!   whole frames.
//! - [`db`]: the sorted key/value store with QubesDB's prefix removal.
//! - [`config`], [`snapshot`]: typed views — [`NetConfig`] (our uplink and
//!   what we offer clients), [`ClientList`] (`/connected-ips`,
//!   `/mapped-ip`), [`RuleSnapshot`] (the entries under
//!   `/qubes-firewall/<ip>/` at each commit).
//! - [`client`]: the VM side, sans-IO: one MULTIREAD per connection, the
//!   dump, then pushed WRITE/RM each answered `RESP_OK`; events
//!   ([`Event`]) for every change of a view; local watches.
//! - [`daemon`]: dom0's side, sans-IO, plus a toolstack API that writes
//!   keys the way Qubes 4.2 does.
//! - [`stream`]: a non-blocking byte-stream trait and [`stream::pump`],
//!   which joins either endpoint to a vchan (or an in-memory pipe).
//! - [`link`]: the client over a real [`vchan::Vchan`] to dom0
//!   ([`link::Connection`]).
//! - `sim` (feature `sim`): dom0's QubesDB service in the simulated Xen,
//!   serving each VM's daemon model over a vchan from domain 0.
//!
//! dom0 is trusted, but every message is still validated as dom0 validates
//! ours, so a desynchronised or corrupted stream is an error, never a
//! panic (see [`client`] for which errors are answered and which break the
//! connection).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod client;
pub mod config;
pub mod daemon;
pub mod db;
pub mod decoder;
pub mod error;
pub mod link;
pub mod snapshot;
pub mod stream;
pub mod wire;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(test)]
mod session_tests;
#[cfg(all(test, feature = "sim"))]
mod sim_tests;

pub use client::{Client, Event, Phase, Stats, WatchId};
pub use config::{ClientList, InvalidMapping, MappedIp, NetConfig, Uplink};
pub use daemon::{Daemon, DaemonStats};
pub use db::Db;
pub use error::{QdbError, WireError};
pub use link::Connection;
pub use snapshot::{RuleSnapshot, SnapshotError};
pub use stream::{pump, ByteStream, Endpoint, PumpError};
pub use wire::{MsgType, DATA_LEN_OFFSET, HDR_SIZE, MAX_DATA, MAX_PATH, PATH_OFFSET};

/// The vchan port QubesDB uses: dom0 serves it, the VM connects to dom0.
pub const VCHAN_PORT: u32 = 111;

/// The domain that serves QubesDB to every VM.
pub const SERVER_DOMID: xen::abi::DomId = 0;

/// Ring sizes dom0 asks for (`libvchan_server_init(xid, 111, 4096, 4096)`):
/// one page each way. Every QubesDB message (at most 72 + 3071 bytes) fits.
pub const RING_SIZE: usize = 4096;
