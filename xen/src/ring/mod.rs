//! The generic Xen shared ring of `public/io/ring.h`, front and back end.
//!
//! # What `io/ring.h` defines
//!
//! A split driver (netif, blkif, ...) exchanges fixed-size requests and
//! responses through one shared page per ring. The page starts with a
//! 64-byte header ([`SringHeader`]): four free-running `u32` indices
//! `req_prod`, `req_event`, `rsp_prod`, `rsp_event`, then padding. From
//! offset 64 on come the slots: each slot holds either a request or a
//! response (a C union), so its size is the larger of the two, and the
//! number of slots is the largest power of two that fits in the rest of the
//! page ([`const_ring_size`]). Index `i` lives in slot `i & (size - 1)`;
//! all index arithmetic is wrapping `u32`, so indices may start anywhere and
//! wrap at 2^32 without any special case.
//!
//! The frontend allocates and grants the page, initialises it
//! (`SHARED_RING_INIT`: indices 0, both event indices 1) and produces
//! requests; the backend attaches to the page without initialising it,
//! consumes requests and produces one response per consumed request, written
//! into the slot the request came from. Each side keeps its private
//! indices ([`FrontRing`]: `req_prod_pvt`, `rsp_cons`; [`BackRing`]:
//! `req_cons`, `rsp_prod_pvt`), and publishes a producer index only when a
//! batch is complete.
//!
//! # The notify rule
//!
//! A consumer that is about to go idle writes `event = cons + 1` ("wake me
//! when you produce entry `cons`") and then re-checks the producer index.
//! A producer publishing a batch moves the shared producer index from `old`
//! to `new` and must send an event-channel notification exactly when the
//! peer's event index lies in the half-open window `(old, new]`. In wrapping
//! `u32` arithmetic that is [`need_notify`]: `new - event < new - old`.
//! The orderings that make this race-free: the producer issues a write
//! barrier between writing the entries and publishing the index (the peer
//! must see the entries before the index) and a full barrier between
//! publishing the index and reading the event index; the consumer issues a
//! full barrier between writing its event index and re-reading the producer
//! index ([`FrontRing::final_check_for_responses`],
//! [`BackRing::final_check_for_requests`]). Whatever the interleaving,
//! either the producer sees the new event index and notifies, or the
//! consumer's re-check sees the new entries.
//!
//! # Validation: the peer's indices are never trusted
//!
//! The page is writable by the peer at any time, so every index the peer
//! writes is read **once** per poll into a local, validated, and only the
//! local is used afterwards; reading it twice would let a hostile peer pass
//! the check with one value and have us act on another. The checks:
//!
//! * frontend, on `rsp_prod`: the unconsumed responses `rsp_prod - rsp_cons`
//!   must be at most the ring size, and at most the requests outstanding
//!   `req_prod - rsp_cons` (a backend cannot answer requests it was never
//!   given; `req_prod` is the frontend's own private copy of what it
//!   published);
//! * backend, on `req_prod`: the unconsumed requests `req_prod - req_cons`
//!   must be at most the ring size, and `req_prod - rsp_prod_pvt` must be at
//!   most the ring size too (a frontend that produces more requests than
//!   there are free slots for their responses is overwriting slots the
//!   backend still owes a response in).
//!
//! A violation is a [`RingError`] naming the values; nothing is consumed and
//! the ring's private state is unchanged, so the driver can report the peer
//! and disconnect. After the index check, a read barrier orders the entry
//! reads after the index read, and every entry is *copied out* of the page
//! ([`RingEntry::read`]) before anyone looks at it: the peer may rewrite a
//! slot after we read it, and only the copy is acted upon.
//!
//! The shared producer index a side publishes itself is also kept privately
//! (`req_prod` for the front, `rsp_prod` for the back): the peer can scribble
//! over the shared copy, so the notify decision and the validation above use
//! the private one.
//!
//! No Rust reference into the page is ever formed: the indices are atomic
//! loads and stores through [`SharedMem`](crate::memory::SharedMem), entries are volatile copies, and
//! nothing is allocated per entry.

mod back;
mod entry;
mod error;
mod front;
mod sring;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use crate::abi::ring::{const_ring_size, SringHeader, SRING_ENTRIES_OFFSET};
pub use back::{BackRing, Requests};
pub use entry::{ring_size, slot_size, NetifRx, NetifTx, RingEntry, RingProtocol};
pub use error::{RingError, RingFull, RingIndex};
pub use front::{FrontRing, Responses};

/// The event-index notification rule of `io/ring.h`
/// (`RING_PUSH_*_AND_CHECK_NOTIFY`): after moving a producer index from
/// `old` to `new`, the peer must be notified iff its event index `event`
/// lies in the half-open window `(old, new]`, computed in wrapping `u32`
/// arithmetic as `new - event < new - old`.
///
/// Publishing nothing (`old == new`) never notifies.
#[inline]
pub const fn need_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}
