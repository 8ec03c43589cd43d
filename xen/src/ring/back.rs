//! The backend end of a shared ring: attaches to the frontend's page,
//! consumes requests, produces responses.

use core::fmt;
use core::marker::PhantomData;

use super::entry::{ring_size, slot_size, RingEntry, RingProtocol};
use super::error::{RingError, RingFull, RingIndex};
use super::sring::{check_producer, Sring, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use crate::memory::{mb, rmb, SharedMem};

/// The backend's view of a shared ring of protocol `P`
/// (`struct <name>_back_ring`).
///
/// Private state: `req_cons` (next request to consume), the validated
/// snapshot of `req_prod` taken by the last poll, `rsp_prod_pvt` (next
/// response slot to fill) and the response producer last published.
///
/// Invariants, in wrapping `u32` arithmetic:
/// `rsp_prod_pub <= rsp_prod_pvt <= req_cons <= req_seen` and
/// `req_seen - rsp_prod_pvt <= size`.
pub struct BackRing<P: RingProtocol> {
    sring: Sring,
    req_cons: u32,
    req_seen: u32,
    rsp_prod_pvt: u32,
    rsp_prod_pub: u32,
    _p: PhantomData<fn() -> P>,
}

impl<P: RingProtocol> BackRing<P> {
    /// Slots in the ring.
    pub const SIZE: u32 = ring_size::<P>();

    /// Attach to a ring page the frontend initialised (`BACK_RING_INIT`),
    /// indices starting at 0. The page is not written.
    ///
    /// # Panics
    /// If `mem` is smaller than a page (a caller bug).
    pub fn attach(mem: SharedMem) -> Self {
        Self::attach_at(mem, 0)
    }

    /// [`BackRing::attach`] with the private indices starting at `start`
    /// (`BACK_RING_ATTACH`): for a frontend that initialised its ring at
    /// `start`, or a reconnect at a known position.
    pub fn attach_at(mem: SharedMem, start: u32) -> Self {
        BackRing {
            sring: Sring::new::<P>(mem),
            req_cons: start,
            req_seen: start,
            rsp_prod_pvt: start,
            rsp_prod_pub: start,
            _p: PhantomData,
        }
    }

    /// The ring page.
    pub fn mem(&self) -> SharedMem {
        self.sring.mem()
    }

    /// The next request index to consume (`req_cons`).
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// The next response index to fill (`rsp_prod_pvt`).
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    /// Requests consumed that have no response yet.
    pub fn pending_responses(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Read `req_prod` once, validate it, and take it as the snapshot that
    /// [`BackRing::next_request`] consumes up to. Returns the number of
    /// requests available. On error nothing changes.
    pub fn poll_requests(&mut self) -> Result<u32, RingError> {
        let req_prod = self.sring.load(REQ_PROD);
        let n = check_producer(RingIndex::ReqProd, req_prod, self.req_cons, Self::SIZE)?;
        // Every request needs a slot for its response: requests beyond
        // `rsp_prod_pvt + size` overwrite slots whose response we still owe.
        if req_prod.wrapping_sub(self.rsp_prod_pvt) > Self::SIZE {
            return Err(RingError::RequestsOverrunResponses {
                req_prod,
                rsp_prod_pvt: self.rsp_prod_pvt,
                size: Self::SIZE,
            });
        }
        // The requests up to `req_prod` are read only after the index.
        rmb();
        self.req_seen = req_prod;
        Ok(n)
    }

    /// Requests in the current snapshot not yet consumed.
    pub fn unconsumed_requests(&self) -> u32 {
        self.req_seen.wrapping_sub(self.req_cons)
    }

    /// Copy the next request of the snapshot out of the ring
    /// (`RING_COPY_REQUEST`) and consume it; `None` when the snapshot is
    /// exhausted (poll again).
    pub fn next_request(&mut self) -> Option<P::Req> {
        self.next_request_as()
    }

    /// [`BackRing::next_request`] reading the slot as another entry type
    /// (netif: a [`NetifExtraInfo`] after a request flagged
    /// `NETTXF_extra_info`).
    ///
    /// [`NetifExtraInfo`]: crate::abi::netif::NetifExtraInfo
    pub fn next_request_as<E: RingEntry>(&mut self) -> Option<E> {
        const {
            assert!(
                E::SIZE <= slot_size::<P>(),
                "entry larger than the ring's slots"
            )
        };
        if self.req_cons == self.req_seen {
            return None;
        }
        let req = self.sring.read(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Some(req)
    }

    /// Poll, then iterate over copies of the available requests, consuming
    /// each as it is yielded (requests left when the iterator is dropped
    /// stay for later).
    pub fn requests(&mut self) -> Result<Requests<'_, P>, RingError> {
        self.poll_requests()?;
        Ok(Requests { ring: self })
    }

    /// Write `rsp` into the next response slot. Responses fill the slots
    /// of consumed requests in order, so this fails with [`RingFull`] when
    /// every consumed request already has a response. It becomes visible
    /// at the next [`BackRing::push_responses_and_check_notify`].
    pub fn push_response(&mut self, rsp: &P::Rsp) -> Result<(), RingFull> {
        self.push_response_as(rsp)
    }

    /// [`BackRing::push_response`] for an entry of another type sharing
    /// the response slots (netif RX: a [`NetifExtraInfo`]).
    ///
    /// [`NetifExtraInfo`]: crate::abi::netif::NetifExtraInfo
    pub fn push_response_as<E: RingEntry>(&mut self, rsp: &E) -> Result<(), RingFull> {
        const {
            assert!(
                E::SIZE <= slot_size::<P>(),
                "entry larger than the ring's slots"
            )
        };
        if self.pending_responses() == 0 {
            return Err(RingFull);
        }
        self.sring.write(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publish the pushed responses (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`)
    /// and return whether the frontend must be notified: true iff its
    /// `rsp_event` lies in (old `rsp_prod`, new `rsp_prod`].
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let (old, new) = (self.rsp_prod_pub, self.rsp_prod_pvt);
        self.rsp_prod_pub = new;
        self.sring.publish(RSP_PROD, RSP_EVENT, old, new)
    }

    /// Before going idle (`RING_FINAL_CHECK_FOR_REQUESTS`): poll; if no
    /// request is pending, ask for a notification at the next one
    /// (`req_event = req_cons + 1`), full barrier, and poll again, so that
    /// a request published in between is not missed. Returns whether
    /// requests are available; both polls are validated.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        self.final_check_for_requests_min(1)
    }

    /// [`BackRing::final_check_for_requests`] for a consumer that needs
    /// `min` requests before it can make progress (a multi-slot packet):
    /// poll; if fewer than `min` are unconsumed, ask for a notification
    /// when the `min`-th arrives (`req_event = req_cons + min`, as Linux
    /// netback's `xenvif_rx_ring_slots_available` does), full barrier, and
    /// poll again. Returns whether `min` requests are available.
    ///
    /// Arming `req_cons + 1` instead would be wrong whenever some requests
    /// are already unconsumed: that event index is already passed, so the
    /// frontend's next publish would not notify and the backend would
    /// sleep with the requests it waits for sitting in the ring.
    ///
    /// `min` is clamped to `1..=SIZE` (more can never be outstanding).
    pub fn final_check_for_requests_min(&mut self, min: u32) -> Result<bool, RingError> {
        let min = min.clamp(1, Self::SIZE);
        if self.poll_requests()? >= min {
            return Ok(true);
        }
        self.sring.store(REQ_EVENT, self.req_cons.wrapping_add(min));
        mb();
        Ok(self.poll_requests()? >= min)
    }
}

impl<P: RingProtocol> fmt::Debug for BackRing<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackRing")
            .field("mem", &self.sring.mem())
            .field("size", &Self::SIZE)
            .field("req_cons", &self.req_cons)
            .field("req_seen", &self.req_seen)
            .field("rsp_prod_pvt", &self.rsp_prod_pvt)
            .field("rsp_prod_pub", &self.rsp_prod_pub)
            .finish()
    }
}

/// Copies of the requests of one poll, from [`BackRing::requests`].
pub struct Requests<'a, P: RingProtocol> {
    ring: &'a mut BackRing<P>,
}

impl<P: RingProtocol> Iterator for Requests<'_, P> {
    type Item = P::Req;
    fn next(&mut self) -> Option<P::Req> {
        self.ring.next_request()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.ring.unconsumed_requests() as usize;
        (n, Some(n))
    }
}

impl<P: RingProtocol> ExactSizeIterator for Requests<'_, P> {}
