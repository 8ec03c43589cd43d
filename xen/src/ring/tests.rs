//! Unit tests of the front and back rings together: the push / publish /
//! consume cycle, notification decisions, a full ring, the final-check
//! race, and hostile producer indices. Property tests and the two-thread
//! test are in `model_tests`.

use core::sync::atomic::Ordering;

use super::sring::{REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use super::*;
use crate::abi::netif::*;
use crate::memory::{LocalPages, SharedMem};

/// A test entry of `N >= 16` bytes carrying a `u64`, written at both ends
/// of the entry so that a misplaced, truncated or overlapping copy shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Blob<const N: usize> {
    /// The value, at the first 8 bytes.
    pub v: u64,
    /// `!v`, at the last 8 bytes.
    pub tail: u64,
}

impl<const N: usize> Blob<N> {
    pub(super) fn new(v: u64) -> Self {
        Blob { v, tail: !v }
    }
}

impl<const N: usize> RingEntry for Blob<N> {
    const SIZE: usize = {
        assert!(N >= 16);
        N
    };
    // Byte copies: slots of odd sizes (500) are not 8-byte aligned, and
    // the `read_u64`-style accessors want natural alignment.
    fn read(mem: &SharedMem, off: usize) -> Self {
        let (mut v, mut tail) = ([0u8; 8], [0u8; 8]);
        mem.read_bytes(off, &mut v);
        mem.read_bytes(off + N - 8, &mut tail);
        Blob {
            v: u64::from_le_bytes(v),
            tail: u64::from_le_bytes(tail),
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_bytes(off, &self.v.to_le_bytes());
        mem.write_bytes(off + N - 8, &self.tail.to_le_bytes());
    }
}

/// 500-byte requests, 16-byte responses: 8 slots, so the ring fills and
/// its slots wrap often.
#[derive(Debug)]
pub(super) enum Big {}
impl RingProtocol for Big {
    type Req = Blob<500>;
    type Rsp = Blob<16>;
}

/// 16-byte requests, 24-byte responses: 168 fit, so 128 slots.
#[derive(Debug)]
pub(super) enum Seq {}
impl RingProtocol for Seq {
    type Req = Blob<16>;
    type Rsp = Blob<24>;
}

/// Build a protocol's entries from a sequence number, for the model tests.
pub(super) trait TestProto:
    RingProtocol<Req: PartialEq + core::fmt::Debug, Rsp: PartialEq + core::fmt::Debug>
{
    fn req(v: u64) -> Self::Req;
    fn rsp(v: u64) -> Self::Rsp;
}

impl TestProto for Big {
    fn req(v: u64) -> Blob<500> {
        Blob::new(v)
    }
    fn rsp(v: u64) -> Blob<16> {
        Blob::new(v.wrapping_mul(3))
    }
}

impl TestProto for Seq {
    fn req(v: u64) -> Blob<16> {
        Blob::new(v)
    }
    fn rsp(v: u64) -> Blob<24> {
        Blob::new(!v)
    }
}

impl TestProto for NetifTx {
    fn req(v: u64) -> NetifTxRequest {
        NetifTxRequest {
            gref: v as u32,
            offset: (v >> 32) as u16,
            flags: 0,
            id: v as u16,
            size: 60,
        }
    }
    fn rsp(v: u64) -> NetifTxResponse {
        NetifTxResponse {
            id: v as u16,
            status: (v >> 16) as i16,
        }
    }
}

impl TestProto for NetifRx {
    fn req(v: u64) -> NetifRxRequest {
        NetifRxRequest {
            id: v as u16,
            pad: 0,
            gref: (v >> 8) as u32,
        }
    }
    fn rsp(v: u64) -> NetifRxResponse {
        NetifRxResponse {
            id: v as u16,
            offset: (v >> 16) as u16,
            flags: 0,
            status: 1514,
        }
    }
}

fn tx_req(i: u32) -> NetifTxRequest {
    NetifTx::req(u64::from(i))
}

fn tx_rsp(i: u32) -> NetifTxResponse {
    NetifTx::rsp(u64::from(i))
}

fn header(m: &SharedMem) -> [u32; 4] {
    [REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT].map(|o| m.load_u32(o, Ordering::SeqCst))
}

#[test]
fn ring_sizes() {
    assert_eq!(FrontRing::<NetifTx>::SIZE, 256);
    assert_eq!(BackRing::<NetifTx>::SIZE, 256);
    assert_eq!(FrontRing::<NetifRx>::SIZE, 256);
    assert_eq!(BackRing::<NetifRx>::SIZE, 256);
    assert_eq!(FrontRing::<Big>::SIZE, 8);
    assert_eq!(FrontRing::<Seq>::SIZE, 128);
}

#[test]
fn need_notify_is_event_in_half_open_window() {
    assert!(need_notify(0, 3, 1));
    assert!(need_notify(0, 3, 3));
    assert!(!need_notify(0, 3, 0));
    assert!(!need_notify(0, 3, 4));
    assert!(!need_notify(5, 5, 5));
    assert!(!need_notify(5, 5, 6));
    // Across the wrap at 2^32: window (MAX - 1, 1] = {MAX, 0, 1}.
    let old = u32::MAX - 1;
    assert!(need_notify(old, 1, u32::MAX));
    assert!(need_notify(old, 1, 0));
    assert!(need_notify(old, 1, 1));
    assert!(!need_notify(old, 1, 2));
    assert!(!need_notify(old, 1, old));
}

#[test]
fn init_writes_header_and_attach_writes_nothing() {
    let p = LocalPages::new(1);
    let m = p.mem();
    m.fill(0, 4096, 0x5A);
    let _front = FrontRing::<NetifTx>::init_at(m, 0xFFFF_FFF0);
    assert_eq!(
        header(&m),
        [0xFFFF_FFF0, 0xFFFF_FFF1, 0xFFFF_FFF0, 0xFFFF_FFF1]
    );
    let mut b = [0u8; 64];
    m.read_bytes(0, &mut b);
    assert!(b[16..].iter().all(|&x| x == 0), "pvt and pad zeroed");
    let mut slots = [0u8; 64];
    m.read_bytes(64, &mut slots);
    assert!(slots.iter().all(|&x| x == 0x5A), "slots untouched");

    let _front = FrontRing::<NetifTx>::init(m);
    assert_eq!(header(&m), [0, 1, 0, 1]);

    let q = LocalPages::new(1);
    let n = q.mem();
    n.fill(0, 4096, 0xC3);
    let back = BackRing::<NetifTx>::attach(n);
    let mut all = [0u8; 4096];
    n.read_bytes(0, &mut all);
    assert!(all.iter().all(|&x| x == 0xC3));
    assert_eq!((back.req_cons(), back.rsp_prod_pvt()), (0, 0));
}

#[test]
#[should_panic(expected = "smaller than a page")]
fn ring_on_short_view_is_a_caller_bug() {
    let p = LocalPages::new(1);
    let _ = BackRing::<NetifTx>::attach(p.mem().sub(0, 2048));
}

#[test]
fn push_publish_consume_respond() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifTx>::init(p.mem());
    let mut back = BackRing::<NetifTx>::attach(p.mem());

    for i in 0..3 {
        front.push_request(&tx_req(i)).unwrap();
    }
    assert_eq!(front.free_requests(), 253);
    // Unpublished requests are invisible to the backend.
    assert_eq!(back.poll_requests(), Ok(0));
    assert!(
        front.push_requests_and_check_notify(),
        "req_event 1 is in (0, 3]"
    );
    assert_eq!(header(&p.mem())[0], 3);

    assert_eq!(back.poll_requests(), Ok(3));
    for i in 0..3 {
        assert_eq!(back.next_request(), Some(tx_req(i)));
    }
    assert_eq!(back.next_request(), None);
    assert_eq!(back.pending_responses(), 3);
    for i in 0..3 {
        back.push_response(&tx_rsp(i)).unwrap();
    }
    assert!(
        back.push_responses_and_check_notify(),
        "rsp_event 1 is in (0, 3]"
    );

    assert_eq!(front.poll_responses(), Ok(3));
    assert_eq!(front.unconsumed_responses(), 3);
    for i in 0..3 {
        assert_eq!(front.next_response(), Some(tx_rsp(i)));
    }
    assert_eq!(front.next_response(), None);
    assert_eq!(front.free_requests(), 256);
    assert_eq!(front.outstanding(), 0);
}

#[test]
fn iterators_consume_one_poll() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifRx>::init(p.mem());
    let mut back = BackRing::<NetifRx>::attach(p.mem());
    for i in 0..5 {
        front.push_request(&NetifRx::req(i)).unwrap();
    }
    front.push_requests_and_check_notify();
    {
        let mut it = back.requests().unwrap();
        assert_eq!(it.len(), 5);
        assert_eq!(it.next(), Some(NetifRx::req(0)));
    }
    // The rest stays for the next poll.
    let rest: std::vec::Vec<_> = back.requests().unwrap().collect();
    assert_eq!(rest, (1..5).map(NetifRx::req).collect::<std::vec::Vec<_>>());
    for i in 0..5 {
        back.push_response(&NetifRx::rsp(i)).unwrap();
    }
    back.push_responses_and_check_notify();
    let got: std::vec::Vec<_> = front.responses().unwrap().collect();
    assert_eq!(got, (0..5).map(NetifRx::rsp).collect::<std::vec::Vec<_>>());
}

#[test]
fn notify_follows_the_event_index() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifTx>::init(p.mem());
    let mut back = BackRing::<NetifTx>::attach(p.mem());

    front.push_request(&tx_req(0)).unwrap();
    assert!(front.push_requests_and_check_notify());
    // The backend has not asked again: req_event is still 1.
    front.push_request(&tx_req(1)).unwrap();
    assert!(!front.push_requests_and_check_notify());
    // Publishing nothing never notifies.
    assert!(!front.push_requests_and_check_notify());

    // The backend drains and goes idle: req_event = 3.
    assert_eq!(back.poll_requests(), Ok(2));
    while back.next_request().is_some() {}
    assert_eq!(back.final_check_for_requests(), Ok(false));
    assert_eq!(header(&p.mem())[1], 3);
    front.push_request(&tx_req(2)).unwrap();
    front.push_request(&tx_req(3)).unwrap();
    assert!(front.push_requests_and_check_notify(), "3 in (2, 4]");

    // Same on the response side.
    for i in 0..2 {
        back.push_response(&tx_rsp(i)).unwrap();
    }
    assert!(
        back.push_responses_and_check_notify(),
        "rsp_event 1 in (0, 2]"
    );
    assert_eq!(front.poll_responses(), Ok(2));
    while front.next_response().is_some() {}
    assert_eq!(front.final_check_for_responses(), Ok(false));
    assert_eq!(header(&p.mem())[3], 3);
    assert_eq!(back.poll_requests(), Ok(2));
    while back.next_request().is_some() {}
    back.push_response(&tx_rsp(2)).unwrap();
    assert!(
        back.push_responses_and_check_notify(),
        "rsp_event 3 in (2, 3]"
    );
    back.push_response(&tx_rsp(3)).unwrap();
    assert!(
        !back.push_responses_and_check_notify(),
        "rsp_event 3 not in (3, 4]"
    );
}

#[test]
fn full_ring() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<Big>::init_at(p.mem(), u32::MAX - 3);
    let mut back = BackRing::<Big>::attach_at(p.mem(), u32::MAX - 3);
    for i in 0..8 {
        front.push_request(&Big::req(i)).unwrap();
    }
    assert!(front.is_full());
    assert_eq!(front.free_requests(), 0);
    assert_eq!(front.push_request(&Big::req(8)), Err(RingFull));
    front.push_requests_and_check_notify();

    // Consumed requests free nothing for the front until answered and the
    // answers consumed.
    assert_eq!(back.poll_requests(), Ok(8));
    for i in 0..8 {
        assert_eq!(back.next_request(), Some(Big::req(i)));
    }
    assert_eq!(front.push_request(&Big::req(8)), Err(RingFull));
    back.push_response(&Big::rsp(0)).unwrap();
    back.push_responses_and_check_notify();
    assert_eq!(front.push_request(&Big::req(8)), Err(RingFull));
    assert_eq!(front.poll_responses(), Ok(1));
    assert_eq!(front.next_response(), Some(Big::rsp(0)));
    assert_eq!(front.free_requests(), 1);
    front.push_request(&Big::req(8)).unwrap();
    assert_eq!(front.push_request(&Big::req(9)), Err(RingFull));
}

#[test]
fn back_cannot_answer_more_than_it_consumed() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifTx>::init(p.mem());
    let mut back = BackRing::<NetifTx>::attach(p.mem());
    assert_eq!(back.push_response(&tx_rsp(0)), Err(RingFull));
    front.push_request(&tx_req(0)).unwrap();
    front.push_requests_and_check_notify();
    // Published but not consumed: still nothing to answer.
    assert_eq!(back.push_response(&tx_rsp(0)), Err(RingFull));
    back.poll_requests().unwrap();
    back.next_request().unwrap();
    back.push_response(&tx_rsp(0)).unwrap();
    assert_eq!(back.push_response(&tx_rsp(1)), Err(RingFull));
}

#[test]
fn final_check_for_requests_closes_the_race() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifTx>::init(p.mem());
    let mut back = BackRing::<NetifTx>::attach(p.mem());
    front.push_request(&tx_req(0)).unwrap();
    assert!(front.push_requests_and_check_notify());
    assert_eq!(back.poll_requests(), Ok(1));
    back.next_request().unwrap();

    // The backend sees an empty ring and decides to sleep; before it
    // re-arms req_event, the frontend publishes. req_event (1) is stale,
    // so the frontend does not notify...
    assert_eq!(back.poll_requests(), Ok(0));
    front.push_request(&tx_req(1)).unwrap();
    assert!(!front.push_requests_and_check_notify());
    // ...and the final check finds the request instead of sleeping.
    assert_eq!(back.final_check_for_requests(), Ok(true));
    assert_eq!(back.next_request(), Some(tx_req(1)));

    // The other order: the backend re-arms first, then the frontend
    // publishes and sees the new event index, so it notifies.
    assert_eq!(back.final_check_for_requests(), Ok(false));
    front.push_request(&tx_req(2)).unwrap();
    assert!(front.push_requests_and_check_notify());
    assert_eq!(back.final_check_for_requests(), Ok(true));
}

/// A backend that needs several requests for one packet (netif rx: a
/// 64 KiB GSO frame takes 17 slots) while fewer are already unconsumed
/// must arm `req_event` at the one that completes the packet: arming
/// `req_cons + 1` (already passed) would leave the frontend's next
/// publish silent and the backend asleep with requests in the ring.
#[test]
fn final_check_for_several_requests_arms_at_the_last_one() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifRx>::init(p.mem());
    let mut back = BackRing::<NetifRx>::attach(p.mem());
    // Two buffers posted; the backend needs 17 for its next packet.
    for i in 0..2 {
        front.push_request(&NetifRx::req(i)).unwrap();
    }
    assert!(front.push_requests_and_check_notify());
    assert_eq!(back.final_check_for_requests_min(17), Ok(false));
    assert_eq!(header(&p.mem())[1], 17, "req_event = req_cons + 17");
    assert_eq!(back.unconsumed_requests(), 2, "nothing consumed");
    // Buffers trickle in: no notification until the 17th...
    for i in 2..16 {
        front.push_request(&NetifRx::req(i)).unwrap();
        assert!(!front.push_requests_and_check_notify(), "request {i}");
    }
    front.push_request(&NetifRx::req(16)).unwrap();
    assert!(front.push_requests_and_check_notify(), "the 17th notifies");
    assert_eq!(back.final_check_for_requests_min(17), Ok(true));
    for i in 0..17 {
        assert_eq!(back.next_request(), Some(NetifRx::req(i)));
    }

    // One unconsumed, two needed: armed at the second, whose publish
    // notifies.
    front.push_request(&NetifRx::req(17)).unwrap();
    front.push_requests_and_check_notify();
    assert_eq!(back.final_check_for_requests_min(2), Ok(false));
    front.push_request(&NetifRx::req(18)).unwrap();
    assert!(front.push_requests_and_check_notify());
    assert_eq!(back.final_check_for_requests_min(2), Ok(true));

    // Degenerate minimums: 0 behaves as 1; more than the ring holds is
    // clamped to the ring size.
    assert_eq!(back.final_check_for_requests_min(0), Ok(true));
    back.next_request().unwrap();
    back.next_request().unwrap();
    assert_eq!(back.final_check_for_requests_min(0), Ok(false));
    assert_eq!(header(&p.mem())[1], back.req_cons().wrapping_add(1));
    assert_eq!(back.final_check_for_requests_min(u32::MAX), Ok(false));
    let size = BackRing::<NetifRx>::SIZE;
    assert_eq!(header(&p.mem())[1], back.req_cons().wrapping_add(size));
}

#[test]
fn final_check_for_responses_closes_the_race() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifRx>::init(p.mem());
    let mut back = BackRing::<NetifRx>::attach(p.mem());
    for i in 0..3 {
        front.push_request(&NetifRx::req(i)).unwrap();
    }
    front.push_requests_and_check_notify();
    back.poll_requests().unwrap();
    while back.next_request().is_some() {}
    back.push_response(&NetifRx::rsp(0)).unwrap();
    assert!(back.push_responses_and_check_notify());
    assert_eq!(front.poll_responses(), Ok(1));
    front.next_response().unwrap();

    assert_eq!(front.poll_responses(), Ok(0));
    back.push_response(&NetifRx::rsp(1)).unwrap();
    assert!(
        !back.push_responses_and_check_notify(),
        "rsp_event 1 is stale"
    );
    assert_eq!(front.final_check_for_responses(), Ok(true));
    assert_eq!(front.next_response(), Some(NetifRx::rsp(1)));

    assert_eq!(front.final_check_for_responses(), Ok(false));
    back.push_response(&NetifRx::rsp(2)).unwrap();
    assert!(back.push_responses_and_check_notify());
    assert_eq!(front.final_check_for_responses(), Ok(true));
}

#[test]
fn extra_info_shares_the_slots() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifTx>::init(p.mem());
    let mut back = BackRing::<NetifTx>::attach(p.mem());
    let req = NetifTxRequest {
        flags: NETTXF_EXTRA_INFO,
        ..tx_req(9)
    };
    let gso = NetifExtraInfo {
        r#type: XEN_NETIF_EXTRA_TYPE_GSO,
        flags: 0,
        gso: NetifExtraInfoGso {
            size: 1448,
            r#type: XEN_NETIF_GSO_TYPE_TCPV4,
            pad: 0,
            features: 0,
        },
    };
    front.push_request(&req).unwrap();
    front.push_request_as(&gso).unwrap();
    front.push_requests_and_check_notify();
    assert_eq!(back.poll_requests(), Ok(2));
    assert_eq!(back.next_request(), Some(req));
    assert_eq!(back.next_request_as::<NetifExtraInfo>(), Some(gso));
    back.push_response(&NetifTxResponse {
        id: 9,
        status: NETIF_RSP_OKAY,
    })
    .unwrap();
    back.push_response(&NetifTxResponse {
        id: 0,
        status: NETIF_RSP_NULL,
    })
    .unwrap();
    back.push_responses_and_check_notify();
    assert_eq!(front.poll_responses(), Ok(2));
    assert_eq!(
        front.next_response().map(|r| r.status),
        Some(NETIF_RSP_OKAY)
    );
    assert_eq!(
        front.next_response().map(|r| r.status),
        Some(NETIF_RSP_NULL)
    );
}

#[test]
fn entries_are_copied_out() {
    let p = LocalPages::new(1);
    let mut front = FrontRing::<NetifTx>::init(p.mem());
    let mut back = BackRing::<NetifTx>::attach(p.mem());
    front.push_request(&tx_req(1)).unwrap();
    front.push_requests_and_check_notify();
    back.poll_requests().unwrap();
    let got = back.next_request().unwrap();
    // The frontend rewrites the slot after the backend copied it.
    p.mem().write_u16(64 + 10, 0xFFFF);
    assert_eq!(got.size, 60);
}

// ---- Hostile producer indices: typed errors, nothing consumed. ----

/// Check that `back` is exactly where it was and consumes nothing.
fn assert_back_untouched(
    back: &mut BackRing<NetifTx>,
    req_cons: u32,
    rsp_prod_pvt: u32,
    left: u32,
) {
    assert_eq!(back.req_cons(), req_cons);
    assert_eq!(back.rsp_prod_pvt(), rsp_prod_pvt);
    assert_eq!(back.unconsumed_requests(), left);
    for _ in 0..left {
        back.next_request().unwrap();
    }
    assert_eq!(back.next_request(), None);
}

#[test]
fn back_rejects_req_prod_far_ahead() {
    let p = LocalPages::new(1);
    let m = p.mem();
    let _front = FrontRing::<NetifTx>::init_at(m, u32::MAX - 10);
    let mut back = BackRing::<NetifTx>::attach_at(m, u32::MAX - 10);
    for bad in [(u32::MAX - 10).wrapping_add(257), 1000, 0x7FFF_0000] {
        m.store_u32(REQ_PROD, bad, Ordering::SeqCst);
        assert_eq!(
            back.poll_requests(),
            Err(RingError::ProducerAhead {
                index: RingIndex::ReqProd,
                prod: bad,
                cons: u32::MAX - 10,
                size: 256
            })
        );
        assert!(back.final_check_for_requests().is_err());
        assert_back_untouched(&mut back, u32::MAX - 10, u32::MAX - 10, 0);
    }
    // Exactly a full ring is fine.
    m.store_u32(
        REQ_PROD,
        (u32::MAX - 10).wrapping_add(256),
        Ordering::SeqCst,
    );
    assert_eq!(back.poll_requests(), Ok(256));
}

#[test]
fn back_rejects_req_prod_behind_cons() {
    let p = LocalPages::new(1);
    let m = p.mem();
    let mut front = FrontRing::<NetifTx>::init(m);
    let mut back = BackRing::<NetifTx>::attach(m);
    for i in 0..5 {
        front.push_request(&tx_req(i)).unwrap();
    }
    front.push_requests_and_check_notify();
    back.poll_requests().unwrap();
    for _ in 0..5 {
        back.next_request().unwrap();
    }
    m.store_u32(REQ_PROD, 3, Ordering::SeqCst);
    assert_eq!(
        back.poll_requests(),
        Err(RingError::ProducerBehind {
            index: RingIndex::ReqProd,
            prod: 3,
            cons: 5
        })
    );
    assert_back_untouched(&mut back, 5, 0, 0);
}

#[test]
fn back_rejects_requests_overrunning_unanswered_slots() {
    let p = LocalPages::new(1);
    let m = p.mem();
    let mut front = FrontRing::<NetifTx>::init(m);
    let mut back = BackRing::<NetifTx>::attach(m);
    for i in 0..256 {
        front.push_request(&tx_req(i)).unwrap();
    }
    front.push_requests_and_check_notify();
    back.poll_requests().unwrap();
    for _ in 0..10 {
        back.next_request().unwrap();
    }
    // 251 unconsumed (within the ring), but 261 past the response
    // producer: 5 requests overwrite slots whose responses are owed.
    m.store_u32(REQ_PROD, 261, Ordering::SeqCst);
    assert_eq!(
        back.poll_requests(),
        Err(RingError::RequestsOverrunResponses {
            req_prod: 261,
            rsp_prod_pvt: 0,
            size: 256
        })
    );
    // The previous snapshot (up to 256) is kept; nothing more is taken.
    assert_back_untouched(&mut back, 10, 0, 246);
    // Once answered, the same index is legitimate.
    for i in 0..10 {
        back.push_response(&tx_rsp(i)).unwrap();
    }
    assert_eq!(back.poll_requests(), Ok(5));
}

#[test]
fn front_rejects_bad_rsp_prod() {
    let p = LocalPages::new(1);
    let m = p.mem();
    let start = u32::MAX - 1;
    let mut front = FrontRing::<NetifTx>::init_at(m, start);
    let _back = BackRing::<NetifTx>::attach_at(m, start);
    for i in 0..2 {
        front.push_request(&tx_req(i)).unwrap();
    }
    front.push_requests_and_check_notify();
    // Pushed but unpublished requests cannot be answered either.
    front.push_request(&tx_req(2)).unwrap();

    let three = start.wrapping_add(3);
    m.store_u32(RSP_PROD, three, Ordering::SeqCst);
    let want = RingError::ResponsesBeyondRequests {
        rsp_prod: three,
        rsp_cons: start,
        req_prod: start.wrapping_add(2),
    };
    assert_eq!(front.poll_responses(), Err(want));
    assert_eq!(front.final_check_for_responses(), Err(want));
    assert!(front.responses().is_err());

    let far = start.wrapping_add(257);
    m.store_u32(RSP_PROD, far, Ordering::SeqCst);
    assert_eq!(
        front.poll_responses(),
        Err(RingError::ProducerAhead {
            index: RingIndex::RspProd,
            prod: far,
            cons: start,
            size: 256
        })
    );
    m.store_u32(RSP_PROD, start.wrapping_sub(1), Ordering::SeqCst);
    assert_eq!(
        front.poll_responses(),
        Err(RingError::ProducerBehind {
            index: RingIndex::RspProd,
            prod: start.wrapping_sub(1),
            cons: start
        })
    );
    // Nothing consumed through any of it.
    assert_eq!(front.rsp_cons(), start);
    assert_eq!(front.next_response(), None);
    assert_eq!(front.outstanding(), 3);

    // A legitimate index is accepted again.
    m.store_u32(RSP_PROD, start.wrapping_add(2), Ordering::SeqCst);
    assert_eq!(front.poll_responses(), Ok(2));
}

#[test]
fn scribbled_own_index_does_not_change_notify_decision() {
    let p = LocalPages::new(1);
    let m = p.mem();
    let mut front = FrontRing::<NetifTx>::init(m);
    front.push_request(&tx_req(0)).unwrap();
    assert!(front.push_requests_and_check_notify());
    // The peer rewrites req_prod and req_event; the frontend's notify
    // decision uses its own record of what it published.
    m.store_u32(REQ_PROD, 1000, Ordering::SeqCst);
    m.store_u32(REQ_EVENT, 2, Ordering::SeqCst);
    front.push_request(&tx_req(1)).unwrap();
    assert!(front.push_requests_and_check_notify(), "2 in (1, 2]");
    assert_eq!(header(&m)[0], 2);
}
