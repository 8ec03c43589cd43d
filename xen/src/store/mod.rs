//! Xenstore: the wire format and the guest client.
//!
//! The client is built in three layers, each testable on its own:
//!
//! - [`client::Client`], a sans-IO core: it encodes requests (giving each a
//!   fresh `req_id`), remembers which requests are outstanding, and parses
//!   the reply stream from byte chunks of any size into typed replies
//!   matched by `req_id` and watch events. It performs no I/O and no
//!   hypercalls, so the parser can be fuzzed (`fuzz/fuzz_targets/
//!   xenstore_reply.rs`).
//! - [`transport::RingTransport`]: moves bytes between the core and the two
//!   1024-byte rings of the xenstore page, validating every index the server
//!   writes, and tells its caller when to notify the event channel.
//! - [`Xenstore`]: the blocking facade used by drivers: one call per
//!   operation, with a deadline, watch events queued by token, and a
//!   `transaction` helper that retries on `EAGAIN`.
//!
//! # Errors and the state of the stream
//!
//! Xenstore has no resynchronisation: once a header is malformed the byte
//! stream cannot be re-framed, and once a reply cannot be attributed to its
//! request (unknown `req_id`, wrong type) no later reply can be trusted to
//! belong where it claims. Such errors, and ring index violations, *break*
//! the connection: they are returned as [`StoreError::Broken`] and every
//! later use of the client returns the same error. A reply that is framed
//! and matched correctly but whose payload is malformed (missing NUL, not
//! UTF-8, unknown error name) only fails its own request, with
//! [`StoreError::Protocol`]; a malformed *watch event* cannot be attributed
//! to a request and breaks the connection, since dropping it could lose a
//! change notification silently. See [`error`].
pub mod client;
pub mod error;
pub mod frame;
pub mod perm;
pub mod reply;
pub mod request;
pub mod transport;
pub mod wire;
mod xenstore;

#[cfg(all(test, feature = "sim"))]
mod sim_tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use client::{Client, Incoming};
pub use error::{ProtocolError, RequestError, RingSide, StoreError};
pub use perm::{Access, Perm, PermError};
pub use reply::{Reply, WatchEvent};
pub use request::{ReqId, Request, TxId};
pub use transport::{RingTransport, Round, Transfer};
pub use xenstore::{Transaction, Xenstore, DEFAULT_TIMEOUT_NS, MAX_QUEUED_EVENTS, MAX_TX_ATTEMPTS};
