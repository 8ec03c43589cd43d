//! Why a ring operation failed: a peer index that cannot be trusted, or no
//! free slot.

use core::fmt;

/// Which shared producer index a [`RingError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingIndex {
    /// `req_prod`, written by the frontend, checked by the backend.
    ReqProd,
    /// `rsp_prod`, written by the backend, checked by the frontend.
    RspProd,
}

impl RingIndex {
    fn name(self) -> &'static str {
        match self {
            RingIndex::ReqProd => "req_prod",
            RingIndex::RspProd => "rsp_prod",
        }
    }
}

/// A producer index written by the peer that breaks the ring protocol.
///
/// Returned by the polling functions; when one is returned nothing was
/// consumed and the ring's private state is unchanged. A peer that produces
/// one is misbehaving (buggy or hostile): the driver should report it and
/// disconnect, as Linux does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The producer claims more unconsumed entries than the ring has slots:
    /// `prod - cons > size` (wrapping), with `prod` ahead of `cons`.
    ProducerAhead {
        /// The index concerned.
        index: RingIndex,
        /// The producer index as read (once).
        prod: u32,
        /// Our consumer index.
        cons: u32,
        /// Slots in the ring.
        size: u32,
    },
    /// The producer index moved behind our consumer index (`cons - prod`
    /// is below 2^31, wrapping): the peer took back entries already
    /// consumed.
    ProducerBehind {
        /// The index concerned.
        index: RingIndex,
        /// The producer index as read (once).
        prod: u32,
        /// Our consumer index.
        cons: u32,
    },
    /// Backend check: the frontend produced requests into slots whose
    /// responses are still owed, `req_prod - rsp_prod_pvt > size`.
    RequestsOverrunResponses {
        /// `req_prod` as read (once).
        req_prod: u32,
        /// The backend's private response producer.
        rsp_prod_pvt: u32,
        /// Slots in the ring.
        size: u32,
    },
    /// Frontend check: the backend produced more responses than requests
    /// were published, `rsp_prod - rsp_cons > req_prod - rsp_cons`.
    ResponsesBeyondRequests {
        /// `rsp_prod` as read (once).
        rsp_prod: u32,
        /// The frontend's response consumer.
        rsp_cons: u32,
        /// The request producer index the frontend last published.
        req_prod: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingError::ProducerAhead { index, prod, cons, size } => write!(
                f,
                "shared ring {} {prod:#x} is {} entries past consumer {cons:#x}, ring holds {size}",
                index.name(),
                prod.wrapping_sub(cons)
            ),
            RingError::ProducerBehind { index, prod, cons } => write!(
                f,
                "shared ring {} {prod:#x} went back {} entries behind consumer {cons:#x}",
                index.name(),
                cons.wrapping_sub(prod)
            ),
            RingError::RequestsOverrunResponses { req_prod, rsp_prod_pvt, size } => write!(
                f,
                "shared ring req_prod {req_prod:#x} is {} entries past rsp_prod {rsp_prod_pvt:#x}, \
                 ring holds {size}: requests overwrite unanswered slots",
                req_prod.wrapping_sub(rsp_prod_pvt)
            ),
            RingError::ResponsesBeyondRequests { rsp_prod, rsp_cons, req_prod } => write!(
                f,
                "shared ring rsp_prod {rsp_prod:#x} claims {} responses after rsp_cons {rsp_cons:#x} \
                 but only {} requests are outstanding (req_prod {req_prod:#x})",
                rsp_prod.wrapping_sub(rsp_cons),
                req_prod.wrapping_sub(rsp_cons)
            ),
        }
    }
}

/// No free slot: the frontend has as many requests outstanding as the ring
/// has slots, or the backend has answered every request it consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFull;

impl fmt::Display for RingFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shared ring has no free slot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_names_the_values() {
        let e = RingError::ProducerAhead {
            index: RingIndex::ReqProd,
            prod: 300,
            cons: 0,
            size: 256,
        };
        let s = e.to_string();
        assert!(
            s.contains("req_prod") && s.contains("0x12c") && s.contains("300 entries"),
            "{s}"
        );
        let e = RingError::ProducerBehind {
            index: RingIndex::RspProd,
            prod: 5,
            cons: 7,
        };
        assert!(e.to_string().contains("rsp_prod 0x5 went back 2"));
        let e = RingError::RequestsOverrunResponses {
            req_prod: 260,
            rsp_prod_pvt: 0,
            size: 256,
        };
        assert!(e.to_string().contains("260 entries past rsp_prod 0x0"));
        let e = RingError::ResponsesBeyondRequests {
            rsp_prod: 3,
            rsp_cons: 0,
            req_prod: 2,
        };
        assert!(e.to_string().contains("claims 3 responses") && e.to_string().contains("only 2"));
        assert_eq!(RingFull.to_string(), "shared ring has no free slot");
    }
}
