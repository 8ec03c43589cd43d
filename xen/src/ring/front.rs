//! The frontend end of a shared ring: initialises the page, produces
//! requests, consumes responses.

use core::fmt;
use core::marker::PhantomData;

use super::entry::{ring_size, slot_size, RingEntry, RingProtocol};
use super::error::{RingError, RingFull, RingIndex};
use super::sring::{check_producer, Sring, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::abi::ring::SRING_ENTRIES_OFFSET;
use crate::memory::{mb, rmb, SharedMem};

/// The frontend's view of a shared ring of protocol `P`
/// (`struct <name>_front_ring`).
///
/// Private state: `req_prod_pvt` (next request slot to fill), the request
/// producer last published, `rsp_cons` (next response to consume) and the
/// validated snapshot of `rsp_prod` taken by the last poll.
///
/// Invariants, all in wrapping `u32` arithmetic:
/// `rsp_cons <= rsp_seen <= req_prod_pub <= req_prod_pvt` and
/// `req_prod_pvt - rsp_cons <= size`.
pub struct FrontRing<P: RingProtocol> {
    sring: Sring,
    req_prod_pvt: u32,
    req_prod_pub: u32,
    rsp_cons: u32,
    rsp_seen: u32,
    _p: PhantomData<fn() -> P>,
}

impl<P: RingProtocol> FrontRing<P> {
    /// Slots in the ring.
    pub const SIZE: u32 = ring_size::<P>();

    /// Initialise the ring page at `mem` (`SHARED_RING_INIT` +
    /// `FRONT_RING_INIT`): zero the header, set both event indices to 1, and
    /// start all indices at 0. Only the frontend does this, on a page it
    /// owns and has not yet granted (or whose backend is disconnected).
    ///
    /// # Panics
    /// If `mem` is smaller than a page (a caller bug).
    pub fn init(mem: SharedMem) -> Self {
        Self::init_at(mem, 0)
    }

    /// [`FrontRing::init`] with every index starting at `start` instead of
    /// 0 (event indices at `start + 1`). Xen's peers start at 0, but nothing
    /// in the protocol depends on it; tests use this to exercise the wrap at
    /// 2^32. The backend must attach with the same `start`.
    pub fn init_at(mem: SharedMem, start: u32) -> Self {
        let sring = Sring::new::<P>(mem);
        mem.fill(0, SRING_ENTRIES_OFFSET, 0);
        sring.store(REQ_PROD, start);
        sring.store(RSP_PROD, start);
        sring.store(REQ_EVENT, start.wrapping_add(1));
        sring.store(RSP_EVENT, start.wrapping_add(1));
        mb();
        FrontRing {
            sring,
            req_prod_pvt: start,
            req_prod_pub: start,
            rsp_cons: start,
            rsp_seen: start,
            _p: PhantomData,
        }
    }

    /// The ring page.
    pub fn mem(&self) -> SharedMem {
        self.sring.mem()
    }

    /// The next request index to fill (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// The next response index to consume (`rsp_cons`).
    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    /// Requests pushed (published or not) whose responses have not been
    /// consumed.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Slots free for new requests (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        Self::SIZE - self.outstanding()
    }

    /// Whether no request slot is free (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Write `req` into the next request slot. It becomes visible to the
    /// backend at the next [`FrontRing::push_requests_and_check_notify`].
    pub fn push_request(&mut self, req: &P::Req) -> Result<(), RingFull> {
        self.push_request_as(req)
    }

    /// [`FrontRing::push_request`] for an entry of another type sharing the
    /// request slots (netif: a [`NetifExtraInfo`] after a request flagged
    /// `NETTXF_extra_info`). `E` must fit in a slot (checked at compile
    /// time).
    ///
    /// [`NetifExtraInfo`]: crate::abi::netif::NetifExtraInfo
    pub fn push_request_as<E: RingEntry>(&mut self, req: &E) -> Result<(), RingFull> {
        const {
            assert!(
                E::SIZE <= slot_size::<P>(),
                "entry larger than the ring's slots"
            )
        };
        if self.is_full() {
            return Err(RingFull);
        }
        self.sring.write(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publish the pushed requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`)
    /// and return whether the backend must be notified over the event
    /// channel: true iff its `req_event` lies in (old `req_prod`, new
    /// `req_prod`].
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let (old, new) = (self.req_prod_pub, self.req_prod_pvt);
        self.req_prod_pub = new;
        self.sring.publish(REQ_PROD, REQ_EVENT, old, new)
    }

    /// Read `rsp_prod` once, validate it, and take it as the snapshot that
    /// [`FrontRing::next_response`] consumes up to. Returns the number of
    /// responses available. On error nothing changes.
    pub fn poll_responses(&mut self) -> Result<u32, RingError> {
        let rsp_prod = self.sring.load(RSP_PROD);
        let n = check_producer(RingIndex::RspProd, rsp_prod, self.rsp_cons, Self::SIZE)?;
        if n > self.req_prod_pub.wrapping_sub(self.rsp_cons) {
            return Err(RingError::ResponsesBeyondRequests {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                req_prod: self.req_prod_pub,
            });
        }
        // The responses up to `rsp_prod` are read only after the index.
        rmb();
        self.rsp_seen = rsp_prod;
        Ok(n)
    }

    /// Responses in the current snapshot not yet consumed.
    pub fn unconsumed_responses(&self) -> u32 {
        self.rsp_seen.wrapping_sub(self.rsp_cons)
    }

    /// Copy the next response of the snapshot out of the ring and consume
    /// it; `None` when the snapshot is exhausted (poll again).
    pub fn next_response(&mut self) -> Option<P::Rsp> {
        self.next_response_as()
    }

    /// [`FrontRing::next_response`] reading the slot as another entry type
    /// (netif: a [`NetifExtraInfo`] after a response flagged
    /// `NETRXF_extra_info`).
    ///
    /// [`NetifExtraInfo`]: crate::abi::netif::NetifExtraInfo
    pub fn next_response_as<E: RingEntry>(&mut self) -> Option<E> {
        const {
            assert!(
                E::SIZE <= slot_size::<P>(),
                "entry larger than the ring's slots"
            )
        };
        if self.rsp_cons == self.rsp_seen {
            return None;
        }
        let rsp = self.sring.read(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Some(rsp)
    }

    /// Poll, then iterate over copies of the available responses, consuming
    /// each as it is yielded (responses left when the iterator is dropped
    /// stay for later).
    pub fn responses(&mut self) -> Result<Responses<'_, P>, RingError> {
        self.poll_responses()?;
        Ok(Responses { ring: self })
    }

    /// Before going idle (`RING_FINAL_CHECK_FOR_RESPONSES`): poll; if no
    /// response is pending, ask for a notification at the next one
    /// (`rsp_event = rsp_cons + 1`), full barrier, and poll again, so that
    /// a response published in between is not missed. Returns whether
    /// responses are available; both polls are validated.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.poll_responses()? > 0 {
            return Ok(true);
        }
        self.sring.store(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        mb();
        Ok(self.poll_responses()? > 0)
    }
}

impl<P: RingProtocol> fmt::Debug for FrontRing<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontRing")
            .field("mem", &self.sring.mem())
            .field("size", &Self::SIZE)
            .field("req_prod_pvt", &self.req_prod_pvt)
            .field("req_prod_pub", &self.req_prod_pub)
            .field("rsp_cons", &self.rsp_cons)
            .field("rsp_seen", &self.rsp_seen)
            .finish()
    }
}

/// Copies of the responses of one poll, from [`FrontRing::responses`].
pub struct Responses<'a, P: RingProtocol> {
    ring: &'a mut FrontRing<P>,
}

impl<P: RingProtocol> Iterator for Responses<'_, P> {
    type Item = P::Rsp;
    fn next(&mut self) -> Option<P::Rsp> {
        self.ring.next_response()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.ring.unconsumed_responses() as usize;
        (n, Some(n))
    }
}

impl<P: RingProtocol> ExactSizeIterator for Responses<'_, P> {}
