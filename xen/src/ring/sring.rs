//! The shared page itself: where the header indices and the slots are, the
//! producer-index check both ends apply, and the publish step both ends
//! share. Private to the ring module.

use core::mem::offset_of;
use core::sync::atomic::Ordering;

use super::entry::{ring_size, slot_size, RingEntry, RingProtocol};
use super::error::{RingError, RingIndex};
use super::need_notify;
use crate::abi::ring::{SringHeader, SRING_ENTRIES_OFFSET};
use crate::abi::PAGE_SIZE;
use crate::memory::{mb, wmb, SharedMem};

/// Offset of `req_prod` in the page.
pub(super) const REQ_PROD: usize = offset_of!(SringHeader, req_prod);
/// Offset of `req_event`.
pub(super) const REQ_EVENT: usize = offset_of!(SringHeader, req_event);
/// Offset of `rsp_prod`.
pub(super) const RSP_PROD: usize = offset_of!(SringHeader, rsp_prod);
/// Offset of `rsp_event`.
pub(super) const RSP_EVENT: usize = offset_of!(SringHeader, rsp_event);

/// A view of one shared ring page with the geometry of its protocol.
///
/// Invariant: `size` is a non-zero power of two and `size * slot` bytes
/// fit after the header in `mem`, so every slot offset is in bounds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sring {
    mem: SharedMem,
    size: u32,
    slot: usize,
}

impl Sring {
    /// The ring page of protocol `P` at `mem`.
    ///
    /// # Panics
    /// If `mem` is shorter than a page: the caller passed the wrong view,
    /// a bug in this project, not peer input.
    pub(super) fn new<P: RingProtocol>(mem: SharedMem) -> Sring {
        const {
            assert!(
                ring_size::<P>() > 0,
                "ring entries do not fit in a page after the header"
            )
        };
        assert!(
            mem.len() >= PAGE_SIZE,
            "shared ring view of {:#x} bytes is smaller than a page",
            mem.len()
        );
        Sring {
            mem,
            size: ring_size::<P>(),
            slot: slot_size::<P>(),
        }
    }

    /// The page.
    pub(super) fn mem(&self) -> SharedMem {
        self.mem
    }

    /// Load a header index (acquire: entries written before the peer
    /// published it are visible after this load).
    pub(super) fn load(&self, off: usize) -> u32 {
        self.mem.load_u32(off, Ordering::Acquire)
    }

    /// Store a header index.
    pub(super) fn store(&self, off: usize, v: u32) {
        self.mem.store_u32(off, v, Ordering::Release)
    }

    /// Byte offset of the slot holding ring index `idx`.
    fn slot_off(&self, idx: u32) -> usize {
        SRING_ENTRIES_OFFSET + (idx & (self.size - 1)) as usize * self.slot
    }

    /// Copy the entry at ring index `idx` out of the page.
    pub(super) fn read<E: RingEntry>(&self, idx: u32) -> E {
        E::read(&self.mem, self.slot_off(idx))
    }

    /// Copy `e` into the slot of ring index `idx`.
    pub(super) fn write<E: RingEntry>(&self, idx: u32, e: &E) {
        e.write(&self.mem, self.slot_off(idx))
    }

    /// Publish producer index `new` at `prod_off` (the previous published
    /// value being `old`) and decide from the peer's event index at
    /// `event_off` whether it must be notified: write barrier (entries
    /// before index), store, full barrier (index before reading the event),
    /// read the event once, apply [`need_notify`].
    pub(super) fn publish(&self, prod_off: usize, event_off: usize, old: u32, new: u32) -> bool {
        wmb();
        self.store(prod_off, new);
        mb();
        let event = self.load(event_off);
        need_notify(old, new, event)
    }
}

/// Check a producer index read from the page against our consumer index:
/// at most `size` entries may be unconsumed. Returns how many are.
pub(super) fn check_producer(
    index: RingIndex,
    prod: u32,
    cons: u32,
    size: u32,
) -> Result<u32, RingError> {
    let unconsumed = prod.wrapping_sub(cons);
    if unconsumed <= size {
        Ok(unconsumed)
    } else if (unconsumed as i32) < 0 {
        Err(RingError::ProducerBehind { index, prod, cons })
    } else {
        Err(RingError::ProducerAhead {
            index,
            prod,
            cons,
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_offsets_match_io_ring_h() {
        assert_eq!((REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT), (0, 4, 8, 12));
        assert_eq!(core::mem::size_of::<SringHeader>(), SRING_ENTRIES_OFFSET);
    }

    #[test]
    fn producer_check_classifies_bad_indices() {
        let i = RingIndex::ReqProd;
        assert_eq!(check_producer(i, 5, 5, 8), Ok(0));
        assert_eq!(check_producer(i, 13, 5, 8), Ok(8));
        assert_eq!(check_producer(i, 3, u32::MAX - 4, 8), Ok(8));
        assert_eq!(
            check_producer(i, 14, 5, 8),
            Err(RingError::ProducerAhead {
                index: i,
                prod: 14,
                cons: 5,
                size: 8
            })
        );
        assert_eq!(
            check_producer(i, 4, 5, 8),
            Err(RingError::ProducerBehind {
                index: i,
                prod: 4,
                cons: 5
            })
        );
        assert_eq!(
            check_producer(i, u32::MAX, 0, 8),
            Err(RingError::ProducerBehind {
                index: i,
                prod: u32::MAX,
                cons: 0
            })
        );
    }
}
