//! Transmit-side bookkeeping: sans-IO, no hypercalls.
//!
//! Every data slot we put in the tx ring gets an id from an [`IdTable`];
//! the backend answers each data slot with a response naming that id, and
//! each extra-info slot with a `NETIF_RSP_NULL` response. Responses may
//! come in any order (modern Linux netback maps our pages and answers a
//! packet only when sys-net's stack lets go of it), so they are paired by
//! id, as Linux netfront does. [`TxTracker::on_response`] validates one
//! response: the id must be in range and outstanding (a duplicate or
//! invented id is a protocol violation), and a `NULL` response must
//! answer an extra-info slot we actually sent (counted), so a backend
//! cannot make us forget ids by answering data slots with `NULL`.

use core::fmt;

use xen::abi::netif::*;
use xen::frame::Checksum;
use xen::ring::{FrontRing, NetifTx};

use crate::ids::{IdError, IdTable};

/// Slots in the transmit ring (and ids).
pub const TX_RING_SIZE: usize = FrontRing::<NetifTx>::SIZE as usize;

/// A transmit response that breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// The id is not one we have outstanding.
    Id(IdError),
    /// A `NETIF_RSP_NULL` response with no extra-info slot left to answer.
    UnexpectedNull,
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Id(e) => write!(f, "tx response {e}"),
            TxError::UnexpectedNull => {
                write!(f, "tx NULL response with no extra-info slot outstanding")
            }
        }
    }
}

/// What a valid transmit response answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAnswer<T> {
    /// An extra-info slot (`NETIF_RSP_NULL`).
    Extra,
    /// A data slot: its id (now free again), the value it carried, and the
    /// status (`NETIF_RSP_OKAY`, `_ERROR`, `_DROPPED`, or anything else a
    /// backend wrote, which counts as an error).
    Data {
        /// The id.
        id: u16,
        /// What was recorded with the id.
        value: T,
        /// The response status.
        status: i16,
    },
}

/// Outstanding transmit ids and extra-info slots.
#[derive(Debug)]
pub struct TxTracker<T> {
    ids: IdTable<T>,
    extras: u32,
}

impl<T> TxTracker<T> {
    /// A tracker with one id per ring slot.
    pub fn new() -> TxTracker<T> {
        TxTracker {
            ids: IdTable::new(TX_RING_SIZE),
            extras: 0,
        }
    }

    /// Ids free.
    pub fn available(&self) -> usize {
        self.ids.available()
    }

    /// Data slots awaiting a response.
    pub fn outstanding(&self) -> usize {
        self.ids.outstanding()
    }

    /// Extra-info slots awaiting a `NULL` response.
    pub fn extras_outstanding(&self) -> u32 {
        self.extras
    }

    /// Issue an id for a data slot carrying `value` (`Err(value)` if none
    /// is free).
    pub fn alloc(&mut self, value: T) -> Result<u16, T> {
        self.ids.alloc(value)
    }

    /// The value of an outstanding id.
    pub fn get_mut(&mut self, id: u16) -> Option<&mut T> {
        self.ids.get_mut(id)
    }

    /// Record that an extra-info slot was sent.
    pub fn sent_extra(&mut self) {
        self.extras += 1;
    }

    /// Validate one response and retire what it answers.
    pub fn on_response(&mut self, rsp: NetifTxResponse) -> Result<TxAnswer<T>, TxError> {
        if rsp.status == NETIF_RSP_NULL {
            if self.extras == 0 {
                return Err(TxError::UnexpectedNull);
            }
            self.extras -= 1;
            return Ok(TxAnswer::Extra);
        }
        let value = self.ids.take(rsp.id).map_err(TxError::Id)?;
        Ok(TxAnswer::Data {
            id: rsp.id,
            value,
            status: rsp.status,
        })
    }

    /// Forget everything (teardown), handing each outstanding value to `f`.
    pub fn drain(&mut self, f: impl FnMut(u16, T)) {
        self.ids.drain(f);
        self.extras = 0;
    }
}

impl<T> Default for TxTracker<T> {
    fn default() -> Self {
        TxTracker::new()
    }
}

/// The `NETTXF_*` checksum flags for a frame's checksum state: partial →
/// `csum_blank | data_validated`, validated → `data_validated`.
pub fn tx_csum_flags(csum: Checksum) -> u16 {
    match csum {
        Checksum::Partial => NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
        Checksum::Validated => NETTXF_DATA_VALIDATED,
        Checksum::Unverified => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsp(id: u16, status: i16) -> NetifTxResponse {
        NetifTxResponse { id, status }
    }

    #[test]
    fn data_responses_retire_their_ids() {
        let mut t = TxTracker::new();
        let a = t.alloc('a').unwrap();
        let b = t.alloc('b').unwrap();
        assert_eq!(t.outstanding(), 2);
        // Out of order is fine.
        assert_eq!(
            t.on_response(rsp(b, NETIF_RSP_DROPPED)),
            Ok(TxAnswer::Data {
                id: b,
                value: 'b',
                status: NETIF_RSP_DROPPED
            })
        );
        assert_eq!(
            t.on_response(rsp(a, NETIF_RSP_OKAY)),
            Ok(TxAnswer::Data {
                id: a,
                value: 'a',
                status: NETIF_RSP_OKAY
            })
        );
        assert_eq!(t.available(), TX_RING_SIZE);
    }

    #[test]
    fn wrong_duplicate_and_unknown_ids_are_violations() {
        let mut t = TxTracker::new();
        let a = t.alloc(1u8).unwrap();
        // Never issued.
        assert_eq!(
            t.on_response(rsp(a + 1, 0)),
            Err(TxError::Id(IdError::NotOutstanding { id: a + 1 }))
        );
        // Beyond the ring.
        assert_eq!(
            t.on_response(rsp(256, 0)),
            Err(TxError::Id(IdError::OutOfRange {
                id: 256,
                capacity: TX_RING_SIZE
            }))
        );
        assert!(t.on_response(rsp(a, NETIF_RSP_ERROR)).is_ok());
        // Duplicate.
        assert_eq!(
            t.on_response(rsp(a, 0)),
            Err(TxError::Id(IdError::NotOutstanding { id: a }))
        );
    }

    #[test]
    fn null_responses_only_answer_extras() {
        let mut t = TxTracker::new();
        let a = t.alloc(()).unwrap();
        assert_eq!(
            t.on_response(rsp(a, NETIF_RSP_NULL)),
            Err(TxError::UnexpectedNull)
        );
        t.sent_extra();
        // The id of a NULL response is irrelevant.
        assert_eq!(t.on_response(rsp(999, NETIF_RSP_NULL)), Ok(TxAnswer::Extra));
        assert_eq!(t.extras_outstanding(), 0);
        assert!(t.on_response(rsp(a, NETIF_RSP_NULL)).is_err());
        // The data id is still outstanding.
        assert!(t.on_response(rsp(a, NETIF_RSP_OKAY)).is_ok());
    }

    #[test]
    fn drain_forgets_everything() {
        let mut t = TxTracker::new();
        for i in 0..10 {
            t.alloc(i).unwrap();
        }
        t.sent_extra();
        let mut n = 0;
        t.drain(|_, _| n += 1);
        assert_eq!(n, 10);
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.extras_outstanding(), 0);
    }

    #[test]
    fn csum_flags() {
        assert_eq!(tx_csum_flags(Checksum::Partial), 3);
        assert_eq!(tx_csum_flags(Checksum::Validated), 2);
        assert_eq!(tx_csum_flags(Checksum::Unverified), 0);
    }
}
