//! Property tests of the ring index arithmetic against a reference model,
//! and a two-thread exchange through one page.
//!
//! The model keeps every index as a `u64` that never wraps (starting at the
//! ring's `u32` start value), queues of the values in flight, and the event
//! indices; the notify reference is "event in (old, new]" compared in
//! `u64`. The rings themselves run in wrapping `u32`, started near
//! `u32::MAX` so that random interleavings cross 2^32.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::sring::{REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use super::tests::{Big, Seq, TestProto};
use super::*;

/// One step of a random interleaving.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Front pushes up to n requests (trying once more after a full ring).
    FrontPush(u8),
    /// Front publishes its requests.
    FrontPublish,
    /// Front polls `rsp_prod`.
    FrontPoll,
    /// Front takes up to n responses of its snapshot.
    FrontNext(u8),
    /// Front's final check for responses.
    FrontFinal,
    /// Back polls `req_prod`.
    BackPoll,
    /// Back takes up to n requests of its snapshot.
    BackNext(u8),
    /// Back answers up to n consumed requests.
    BackRespond(u8),
    /// Back publishes its responses.
    BackPublish,
    /// Back's final check for requests.
    BackFinal,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..40).prop_map(Op::FrontPush),
        2 => Just(Op::FrontPublish),
        1 => Just(Op::FrontPoll),
        2 => (1u8..40).prop_map(Op::FrontNext),
        1 => Just(Op::FrontFinal),
        1 => Just(Op::BackPoll),
        2 => (1u8..40).prop_map(Op::BackNext),
        2 => (1u8..40).prop_map(Op::BackRespond),
        2 => Just(Op::BackPublish),
        1 => Just(Op::BackFinal),
    ]
}

fn start() -> impl Strategy<Value = u32> {
    prop_oneof![3 => (u32::MAX - 300)..=u32::MAX, 1 => any::<u32>()]
}

/// The reference: unwrapped indices and the values in flight.
#[derive(Debug, Default)]
struct Model {
    size: u64,
    req_pvt: u64,
    req_pub: u64,
    req_seen: u64,
    req_cons: u64,
    rsp_pvt: u64,
    rsp_pub: u64,
    rsp_seen: u64,
    rsp_cons: u64,
    req_event: u64,
    rsp_event: u64,
    next: u64,
    /// Values of requests `req_cons..req_pvt`.
    reqs: VecDeque<u64>,
    /// Values of consumed requests `rsp_pvt..req_cons` awaiting a response.
    owed: VecDeque<u64>,
    /// Values answered, `rsp_cons..rsp_pvt`.
    rsps: VecDeque<u64>,
}

impl Model {
    fn new(start: u32, size: u32) -> Model {
        let s = u64::from(start);
        Model {
            size: u64::from(size),
            req_pvt: s,
            req_pub: s,
            req_seen: s,
            req_cons: s,
            rsp_pvt: s,
            rsp_pub: s,
            rsp_seen: s,
            rsp_cons: s,
            req_event: s + 1,
            rsp_event: s + 1,
            ..Model::default()
        }
    }
}

/// The notify reference: `event` in `(old, new]`, no wrapping.
fn notify_ref(old: u64, new: u64, event: u64) -> bool {
    old < event && event <= new
}

/// Run `ops` on a real front/back pair and on the model, comparing after
/// every step; then drain both and check everything came through.
fn run<P: TestProto>(start: u32, ops: &[Op]) -> Result<(), TestCaseError> {
    let page = crate::memory::LocalPages::new(1);
    let m = page.mem();
    let mut front = FrontRing::<P>::init_at(m, start);
    let mut back = BackRing::<P>::attach_at(m, start);
    let mut md = Model::new(start, FrontRing::<P>::SIZE);

    let check =
        |front: &FrontRing<P>, back: &BackRing<P>, md: &Model| -> Result<(), TestCaseError> {
            let w = |x: u64| x as u32;
            prop_assert_eq!(front.req_prod_pvt(), w(md.req_pvt));
            prop_assert_eq!(front.rsp_cons(), w(md.rsp_cons));
            prop_assert_eq!(
                u64::from(front.free_requests()),
                md.size - (md.req_pvt - md.rsp_cons)
            );
            prop_assert_eq!(
                u64::from(front.unconsumed_responses()),
                md.rsp_seen - md.rsp_cons
            );
            prop_assert_eq!(back.req_cons(), w(md.req_cons));
            prop_assert_eq!(back.rsp_prod_pvt(), w(md.rsp_pvt));
            prop_assert_eq!(
                u64::from(back.pending_responses()),
                md.req_cons - md.rsp_pvt
            );
            prop_assert_eq!(
                u64::from(back.unconsumed_requests()),
                md.req_seen - md.req_cons
            );
            let h = |o| m.load_u32(o, Ordering::SeqCst);
            prop_assert_eq!(h(REQ_PROD), w(md.req_pub));
            prop_assert_eq!(h(RSP_PROD), w(md.rsp_pub));
            prop_assert_eq!(h(REQ_EVENT), w(md.req_event));
            prop_assert_eq!(h(RSP_EVENT), w(md.rsp_event));
            prop_assert_eq!(md.reqs.len() as u64, md.req_pvt - md.req_cons);
            prop_assert_eq!(md.owed.len() as u64, md.req_cons - md.rsp_pvt);
            prop_assert_eq!(md.rsps.len() as u64, md.rsp_pvt - md.rsp_cons);
            Ok(())
        };

    for &op in ops {
        match op {
            Op::FrontPush(n) => {
                for _ in 0..=n {
                    let ok = front.push_request(&P::req(md.next)).is_ok();
                    prop_assert_eq!(ok, md.req_pvt - md.rsp_cons < md.size);
                    if !ok {
                        break;
                    }
                    md.reqs.push_back(md.next);
                    md.next += 1;
                    md.req_pvt += 1;
                }
            }
            Op::FrontPublish => {
                let want = notify_ref(md.req_pub, md.req_pvt, md.req_event);
                prop_assert_eq!(front.push_requests_and_check_notify(), want);
                md.req_pub = md.req_pvt;
            }
            Op::FrontPoll => {
                prop_assert_eq!(
                    u64::from(front.poll_responses().unwrap()),
                    md.rsp_pub - md.rsp_cons
                );
                md.rsp_seen = md.rsp_pub;
            }
            Op::FrontNext(n) => {
                for _ in 0..n {
                    let got = front.next_response();
                    if md.rsp_cons == md.rsp_seen {
                        prop_assert!(got.is_none());
                        break;
                    }
                    let v = md.rsps.pop_front().unwrap();
                    prop_assert_eq!(got, Some(P::rsp(v)));
                    md.rsp_cons += 1;
                }
            }
            Op::FrontFinal => {
                let work = md.rsp_pub > md.rsp_cons;
                if !work {
                    md.rsp_event = md.rsp_cons + 1;
                }
                prop_assert_eq!(front.final_check_for_responses(), Ok(work));
                md.rsp_seen = md.rsp_pub;
            }
            Op::BackPoll => {
                prop_assert_eq!(
                    u64::from(back.poll_requests().unwrap()),
                    md.req_pub - md.req_cons
                );
                md.req_seen = md.req_pub;
            }
            Op::BackNext(n) => {
                for _ in 0..n {
                    let got = back.next_request();
                    if md.req_cons == md.req_seen {
                        prop_assert!(got.is_none());
                        break;
                    }
                    let v = md.reqs.pop_front().unwrap();
                    prop_assert_eq!(got, Some(P::req(v)));
                    md.owed.push_back(v);
                    md.req_cons += 1;
                }
            }
            Op::BackRespond(n) => {
                for _ in 0..n {
                    let v = md.owed.front().copied();
                    let ok = back.push_response(&P::rsp(v.unwrap_or(0))).is_ok();
                    prop_assert_eq!(ok, v.is_some());
                    if !ok {
                        break;
                    }
                    md.owed.pop_front();
                    md.rsps.push_back(v.unwrap());
                    md.rsp_pvt += 1;
                }
            }
            Op::BackPublish => {
                let want = notify_ref(md.rsp_pub, md.rsp_pvt, md.rsp_event);
                prop_assert_eq!(back.push_responses_and_check_notify(), want);
                md.rsp_pub = md.rsp_pvt;
            }
            Op::BackFinal => {
                let work = md.req_pub > md.req_cons;
                if !work {
                    md.req_event = md.req_cons + 1;
                }
                prop_assert_eq!(back.final_check_for_requests(), Ok(work));
                md.req_seen = md.req_pub;
            }
        }
        check(&front, &back, &md)?;
    }

    // Drain: every pushed request comes back as its response, in order.
    let pushed = md.next;
    let mut answered = md.next - md.rsps.len() as u64 - md.owed.len() as u64 - md.reqs.len() as u64;
    front.push_requests_and_check_notify();
    back.poll_requests().unwrap();
    while let Some(r) = back.next_request() {
        let v = md.reqs.pop_front().unwrap();
        prop_assert_eq!(r, P::req(v));
        md.owed.push_back(v);
    }
    while let Some(v) = md.owed.pop_front() {
        back.push_response(&P::rsp(v)).unwrap();
        md.rsps.push_back(v);
    }
    back.push_responses_and_check_notify();
    front.poll_responses().unwrap();
    while let Some(r) = front.next_response() {
        let v = md.rsps.pop_front().unwrap();
        prop_assert_eq!(v, answered);
        prop_assert_eq!(r, P::rsp(v));
        answered += 1;
    }
    prop_assert_eq!(answered, pushed);
    prop_assert!(md.reqs.is_empty() && md.owed.is_empty() && md.rsps.is_empty());
    prop_assert_eq!(front.free_requests(), FrontRing::<P>::SIZE);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn model_small_ring(start in start(), ops in prop::collection::vec(op(), 1..400)) {
        run::<Big>(start, &ops)?;
    }

    #[test]
    fn model_seq_ring(start in start(), ops in prop::collection::vec(op(), 1..400)) {
        run::<Seq>(start, &ops)?;
    }

    #[test]
    fn model_netif_tx_ring(start in start(), ops in prop::collection::vec(op(), 1..400)) {
        run::<NetifTx>(start, &ops)?;
    }

    #[test]
    fn model_netif_rx_ring(start in start(), ops in prop::collection::vec(op(), 1..400)) {
        run::<NetifRx>(start, &ops)?;
    }

    /// The wrapping formula equals the unwrapped reference whenever the
    /// distances involved are those a ring can produce (below 2^31).
    #[test]
    fn need_notify_matches_unwrapped_reference(
        base in (u32::MAX - (1 << 20))..=u32::MAX,
        old_off in 0u64..1 << 20,
        batch in 0u64..1 << 20,
        near in 0usize..6,
        delta in 0u64..1 << 21,
    ) {
        let base = u64::from(base);
        let old = base + old_off;
        let new = old + batch;
        // The event at a window boundary, or anywhere from `base` (before
        // `old`) to well past `new`; the whole range straddles 2^32.
        let event = [old, old + 1, new, new + 1, old.saturating_sub(1).max(base), base + delta][near];
        prop_assert_eq!(
            need_notify(old as u32, new as u32, event as u32),
            notify_ref(old, new, event)
        );
    }
}

/// A stand-in for an event channel: a pending flag the producer sets when
/// the ring says to notify, which the consumer clears before looking at the
/// ring and otherwise waits on. A lost notification shows as a timeout.
struct Evt(AtomicBool);

impl Evt {
    fn send(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    fn wait(&self, who: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.0.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "{who}: lost notification");
            std::thread::yield_now();
        }
    }
}

#[test]
fn two_threads_exchange_100k() {
    const N: u64 = 100_000;
    let page = crate::memory::LocalPages::new(1);
    let m = page.mem();
    let start = u32::MAX - 1000;
    let mut front = FrontRing::<Seq>::init_at(m, start);
    let mut back = BackRing::<Seq>::attach_at(m, start);
    let (to_front, to_back) = (Evt(AtomicBool::new(false)), Evt(AtomicBool::new(false)));

    std::thread::scope(|s| {
        s.spawn(|| {
            let mut seen = 0u64;
            while seen < N {
                to_back.clear();
                let mut work = false;
                while let Some(req) = back.requests().unwrap().next() {
                    assert_eq!(req, Seq::req(seen));
                    back.push_response(&Seq::rsp(seen)).unwrap();
                    seen += 1;
                    work = true;
                }
                if back.push_responses_and_check_notify() {
                    to_front.send();
                }
                if !work && !back.final_check_for_requests().unwrap() {
                    to_back.wait("backend");
                }
            }
        });
        s.spawn(|| {
            let (mut sent, mut got) = (0u64, 0u64);
            while got < N {
                to_front.clear();
                while sent < N && front.push_request(&Seq::req(sent)).is_ok() {
                    sent += 1;
                }
                if front.push_requests_and_check_notify() {
                    to_back.send();
                }
                let mut work = false;
                for rsp in front.responses().unwrap() {
                    assert_eq!(rsp, Seq::rsp(got));
                    got += 1;
                    work = true;
                }
                let more_to_send = sent < N && !front.is_full();
                if !work && !more_to_send && !front.final_check_for_responses().unwrap() {
                    to_front.wait("frontend");
                }
            }
        });
    });
    assert_eq!(front.rsp_cons(), start.wrapping_add(N as u32));
    assert_eq!(back.req_cons(), start.wrapping_add(N as u32));
    assert_eq!(front.free_requests(), FrontRing::<Seq>::SIZE);
}
