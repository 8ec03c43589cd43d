//! The sans-IO xenstore client core.
//!
//! [`Client`] turns requests into bytes and bytes into replies; moving the
//! bytes (ring, socket, test vector) is the caller's job:
//!
//! 1. [`Client::request`] encodes a request with a fresh `req_id` into the
//!    output buffer and records it as outstanding.
//! 2. The caller sends [`Client::output`] and reports how much went out
//!    with [`Client::consume_output`] (a message may go out in pieces).
//! 3. The caller passes whatever bytes it received to [`Client::receive`],
//!    in chunks of any size, then takes [`Incoming`] items from
//!    [`Client::poll`]: replies matched to their request, and watch events.
//!
//! # Invariants
//! - Every reply handed out answers an outstanding request, and has that
//!   request's type (or is an `XS_ERROR`); the request is then no longer
//!   outstanding.
//! - Once a fatal [`ProtocolError`] has been seen the client is *broken*:
//!   [`Client::receive`] and [`Client::request`] return
//!   [`StoreError::Broken`] with the original error and touch no state.
//!   Items already queued before the error stay available from
//!   [`Client::poll`].
//! - Nothing here panics on any input bytes.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::error::{lossy_prefix, ProtocolError, StoreError};
use super::frame::{Framer, Message};
use super::reply::{parse_reply, parse_watch_event, Reply, WatchEvent};
use super::request::{ReqId, Request, TxId};
use super::wire::XsError;
use crate::abi::xs_wire::msg;

/// Something that came from xenstored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The reply to request `req_id`: success, `XS_ERROR`, or a malformed
    /// payload ([`StoreError::Protocol`]).
    Reply {
        /// The request answered.
        req_id: ReqId,
        /// Its outcome.
        result: Result<Reply, StoreError>,
    },
    /// A watch fired.
    Watch(WatchEvent),
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    /// `XS_*` type of the request, which the reply must echo.
    ty: u32,
    /// The caller gave up waiting: swallow the reply when it comes.
    abandoned: bool,
}

/// The client state machine (see the module doc).
#[derive(Debug)]
pub struct Client {
    out: Vec<u8>,
    /// Bytes of `out` already sent.
    out_pos: usize,
    outstanding: BTreeMap<u32, Pending>,
    next_id: u32,
    framer: Framer,
    incoming: VecDeque<Incoming>,
    broken: Option<ProtocolError>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with nothing outstanding. Request ids start at 1.
    pub fn new() -> Client {
        Client {
            out: Vec::new(),
            out_pos: 0,
            outstanding: BTreeMap::new(),
            next_id: 1,
            framer: Framer::new(),
            incoming: VecDeque::new(),
            broken: None,
        }
    }

    /// `Err(Broken)` once a fatal error has been seen.
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.broken {
            Some(e) => Err(StoreError::Broken(e.clone())),
            None => Ok(()),
        }
    }

    /// The fatal error that broke the connection, if any.
    pub fn broken(&self) -> Option<&ProtocolError> {
        self.broken.as_ref()
    }

    /// Mark the connection broken by `e` (e.g. a ring index violation seen
    /// by the transport). The first error sticks. Returns the error to
    /// report.
    pub fn poison(&mut self, e: ProtocolError) -> StoreError {
        let e = self.broken.get_or_insert(e).clone();
        StoreError::Broken(e)
    }

    /// Queue `req` (in transaction `tx`) for sending; returns its id.
    pub fn request(&mut self, tx: TxId, req: &Request<'_>) -> Result<ReqId, StoreError> {
        self.check()?;
        let id = self.fresh_id();
        req.encode(id, tx, &mut self.out)?;
        self.outstanding.insert(
            id.0,
            Pending {
                ty: req.ty(),
                abandoned: false,
            },
        );
        Ok(id)
    }

    /// A non-zero id not currently outstanding (0 is what watch events
    /// carry, so it is never used for a request).
    fn fresh_id(&mut self) -> ReqId {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if id != 0 && !self.outstanding.contains_key(&id) {
                return ReqId(id);
            }
        }
    }

    /// Bytes waiting to be sent.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// Record that the first `n` bytes of [`Client::output`] were sent.
    /// `n` is clamped to what is waiting.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos += n.min(self.out.len() - self.out_pos);
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Whether `id` is awaiting its reply (abandoned ones included).
    pub fn is_outstanding(&self, id: ReqId) -> bool {
        self.outstanding.contains_key(&id.0)
    }

    /// How many requests await replies (abandoned ones included).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Give up on `id`: its reply, when it comes, is checked and dropped
    /// instead of being queued. (Xenstore cannot cancel a request; it may
    /// still take effect.)
    pub fn abandon(&mut self, id: ReqId) {
        if let Some(p) = self.outstanding.get_mut(&id.0) {
            p.abandoned = true;
        }
    }

    /// Whether a partly received message is buffered.
    pub fn mid_message(&self) -> bool {
        !self.framer.is_idle()
    }

    /// Feed bytes received from xenstored. Complete messages become
    /// [`Incoming`] items for [`Client::poll`]. A fatal error breaks the
    /// client (see the module doc); items parsed before it are kept.
    pub fn receive(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        loop {
            let m = match self.framer.feed(&mut bytes) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.poison(ProtocolError::Header(e))),
            };
            if let Err(e) = self.handle(m) {
                return Err(self.poison(e));
            }
        }
    }

    /// The next reply or watch event, in arrival order.
    pub fn poll(&mut self) -> Option<Incoming> {
        self.incoming.pop_front()
    }

    /// Route one framed message; `Err` is fatal.
    fn handle(&mut self, m: Message) -> Result<(), ProtocolError> {
        let h = m.header;
        if h.ty == msg::WATCH_EVENT {
            let ev = parse_watch_event(&m.payload)?;
            self.incoming.push_back(Incoming::Watch(ev));
            return Ok(());
        }
        let p = self
            .outstanding
            .remove(&h.req_id)
            .ok_or(ProtocolError::UnknownReqId {
                req_id: h.req_id,
                ty: h.ty,
            })?;
        if h.ty != p.ty && h.ty != msg::ERROR {
            return Err(ProtocolError::TypeMismatch {
                req_id: h.req_id,
                expected: p.ty,
                got: h.ty,
            });
        }
        if p.abandoned {
            return Ok(());
        }
        let result = if h.ty == msg::ERROR {
            Err(match XsError::from_payload(&m.payload) {
                Some(e) => StoreError::Xs(e),
                None => {
                    let name = m.payload.strip_suffix(b"\0").unwrap_or(&m.payload);
                    StoreError::Protocol(ProtocolError::UnknownErrorName(lossy_prefix(name, 32)))
                }
            })
        } else {
            parse_reply(p.ty, &m.payload).map_err(StoreError::Protocol)
        };
        self.incoming.push_back(Incoming::Reply {
            req_id: ReqId(h.req_id),
            result,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::RequestError;
    use crate::store::testutil::{message, parse_requests};
    use crate::store::wire::{Header, WireError};

    fn reply(req_id: ReqId, result: Result<Reply, StoreError>) -> Option<Incoming> {
        Some(Incoming::Reply { req_id, result })
    }

    fn watch(path: &str, token: &str) -> Option<Incoming> {
        Some(Incoming::Watch(WatchEvent {
            path: path.into(),
            token: token.into(),
        }))
    }

    #[test]
    fn requests_get_fresh_ids_and_are_encoded() {
        let mut c = Client::new();
        let a = c
            .request(TxId::NONE, &Request::Read { path: "domid" })
            .unwrap();
        let b = c
            .request(
                TxId(5),
                &Request::Write {
                    path: "x",
                    value: b"1",
                },
            )
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(c.outstanding(), 2);
        let reqs = parse_requests(c.output());
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            reqs[0].0,
            Header {
                ty: msg::READ,
                req_id: a.0,
                tx_id: 0,
                len: 6
            }
        );
        assert_eq!(reqs[0].1, b"domid\0");
        assert_eq!(reqs[1].0.tx_id, 5);
        assert_eq!(reqs[1].1, b"x\x001");
        // Partial sends.
        let total = c.output().len();
        c.consume_output(10);
        assert_eq!(c.output().len(), total - 10);
        c.consume_output(usize::MAX);
        assert!(c.output().is_empty());
        // A refused request leaves no trace.
        assert_eq!(
            c.request(TxId::NONE, &Request::Rm { path: "a\0" }),
            Err(StoreError::Request(RequestError::Nul { field: "path" }))
        );
        assert_eq!(c.outstanding(), 2);
        assert!(c.output().is_empty());
    }

    #[test]
    fn ids_skip_zero_and_outstanding() {
        let mut c = Client::new();
        c.next_id = u32::MAX;
        let a = c.request(TxId::NONE, &Request::Read { path: "a" }).unwrap();
        assert_eq!(a, ReqId(u32::MAX));
        // Wraps past 0 to 1.
        let b = c.request(TxId::NONE, &Request::Read { path: "a" }).unwrap();
        assert_eq!(b, ReqId(1));
        c.next_id = u32::MAX;
        let d = c.request(TxId::NONE, &Request::Read { path: "a" }).unwrap();
        assert_eq!(d, ReqId(2), "skips MAX and 1, which are outstanding, and 0");
    }

    #[test]
    fn replies_out_of_order_split_and_interleaved_with_events() {
        let mut c = Client::new();
        let r = c.request(TxId::NONE, &Request::Read { path: "a" }).unwrap();
        let d = c
            .request(TxId::NONE, &Request::Directory { path: "b" })
            .unwrap();
        let w = c
            .request(
                TxId::NONE,
                &Request::Watch {
                    path: "c",
                    token: "t",
                },
            )
            .unwrap();
        let mut stream = message(msg::WATCH, w.0, b"OK\0");
        stream.extend(message(msg::WATCH_EVENT, 0, b"c\0t\0"));
        stream.extend(message(msg::DIRECTORY, d.0, b"x\0y\0"));
        stream.extend(message(msg::WATCH_EVENT, 0, b"c/x\0t\0"));
        stream.extend(message(msg::READ, r.0, b"val"));
        // Three chunks with cuts inside a header and inside a payload.
        for chunk in [&stream[..7], &stream[7..40], &stream[40..]] {
            c.receive(chunk).unwrap();
        }
        assert_eq!(c.poll(), reply(w, Ok(Reply::Ok)));
        assert_eq!(c.poll(), watch("c", "t"));
        assert_eq!(
            c.poll(),
            reply(d, Ok(Reply::Children(vec!["x".into(), "y".into()])))
        );
        assert_eq!(c.poll(), watch("c/x", "t"));
        assert_eq!(c.poll(), reply(r, Ok(Reply::Value(b"val".to_vec()))));
        assert_eq!(c.poll(), None);
        assert_eq!(c.outstanding(), 0);
        assert!(!c.mid_message());
    }

    #[test]
    fn every_request_type_roundtrips() {
        use crate::store::perm::{Access, Perm};
        let perms = [Perm::new(3, Access::None)];
        let cases: Vec<(Request<'_>, TxId, &[u8], Reply)> = vec![
            (
                Request::Read { path: "a" },
                TxId(2),
                b"v",
                Reply::Value(b"v".to_vec()),
            ),
            (
                Request::Write {
                    path: "a",
                    value: b"v",
                },
                TxId(2),
                b"OK\0",
                Reply::Ok,
            ),
            (Request::Mkdir { path: "a" }, TxId::NONE, b"OK\0", Reply::Ok),
            (Request::Rm { path: "a" }, TxId::NONE, b"OK\0", Reply::Ok),
            (
                Request::Directory { path: "a" },
                TxId::NONE,
                b"",
                Reply::Children(vec![]),
            ),
            (
                Request::GetPerms { path: "a" },
                TxId::NONE,
                b"n3\0",
                Reply::Perms(perms.to_vec()),
            ),
            (
                Request::SetPerms {
                    path: "a",
                    perms: &perms,
                },
                TxId::NONE,
                b"OK\0",
                Reply::Ok,
            ),
            (
                Request::Watch {
                    path: "a",
                    token: "t",
                },
                TxId::NONE,
                b"OK\0",
                Reply::Ok,
            ),
            (
                Request::Unwatch {
                    path: "a",
                    token: "t",
                },
                TxId::NONE,
                b"OK\0",
                Reply::Ok,
            ),
            (
                Request::TransactionStart,
                TxId::NONE,
                b"9\0",
                Reply::Transaction(TxId(9)),
            ),
            (
                Request::TransactionEnd { commit: true },
                TxId(9),
                b"OK\0",
                Reply::Ok,
            ),
            (
                Request::GetDomainPath { domid: 4 },
                TxId::NONE,
                b"/l/4\0",
                Reply::Path("/l/4".into()),
            ),
            (Request::ResetWatches, TxId::NONE, b"OK\0", Reply::Ok),
        ];
        let mut c = Client::new();
        for (req, tx, payload, want) in cases {
            let id = c.request(tx, &req).unwrap();
            let sent = parse_requests(c.output());
            assert_eq!(sent[0].0.ty, req.ty());
            assert_eq!(sent[0].0.tx_id, tx.0);
            c.consume_output(usize::MAX);
            c.receive(&message(req.ty(), id.0, payload)).unwrap();
            assert_eq!(c.poll(), reply(id, Ok(want)), "{req:?}");
        }
    }

    #[test]
    fn xs_errors_and_unknown_error_names() {
        let mut c = Client::new();
        let a = c.request(TxId::NONE, &Request::Read { path: "a" }).unwrap();
        let b = c.request(TxId::NONE, &Request::Read { path: "b" }).unwrap();
        let d = c.request(TxId::NONE, &Request::Read { path: "c" }).unwrap();
        c.receive(&message(msg::ERROR, a.0, b"ENOENT\0")).unwrap();
        c.receive(&message(msg::ERROR, b.0, b"EWHATEVER\0"))
            .unwrap();
        assert_eq!(c.poll(), reply(a, Err(StoreError::Xs(XsError::Enoent))));
        let unknown = ProtocolError::UnknownErrorName("EWHATEVER".into());
        assert_eq!(c.poll(), reply(b, Err(StoreError::Protocol(unknown))));
        // Not fatal: the connection goes on.
        c.receive(&message(msg::READ, d.0, b"ok")).unwrap();
        assert_eq!(c.poll(), reply(d, Ok(Reply::Value(b"ok".to_vec()))));
    }

    #[test]
    fn malformed_payloads_fail_only_their_request() {
        let mut c = Client::new();
        let a = c
            .request(TxId::NONE, &Request::Directory { path: "a" })
            .unwrap();
        let b = c
            .request(TxId::NONE, &Request::GetDomainPath { domid: 1 })
            .unwrap();
        let e = c
            .request(TxId::NONE, &Request::Mkdir { path: "e" })
            .unwrap();
        c.receive(&message(msg::DIRECTORY, a.0, b"x\0y")).unwrap();
        c.receive(&message(msg::GET_DOMAIN_PATH, b.0, b"\xff\0"))
            .unwrap();
        c.receive(&message(msg::MKDIR, e.0, b"OK\0")).unwrap();
        let ty = msg::DIRECTORY;
        assert_eq!(
            c.poll(),
            reply(
                a,
                Err(StoreError::Protocol(ProtocolError::MissingNul { ty }))
            )
        );
        let ty = msg::GET_DOMAIN_PATH;
        assert_eq!(
            c.poll(),
            reply(b, Err(StoreError::Protocol(ProtocolError::NotUtf8 { ty })))
        );
        assert_eq!(c.poll(), reply(e, Ok(Reply::Ok)));
        assert!(c.check().is_ok());
    }

    /// Feed `bad` after a good reply; the error must be fatal and sticky.
    fn assert_fatal(mut c: Client, good: ReqId, bad: &[u8], want: ProtocolError) {
        let mut stream = message(msg::READ, good.0, b"v");
        stream.extend_from_slice(bad);
        assert_eq!(c.receive(&stream), Err(StoreError::Broken(want.clone())));
        assert_eq!(c.broken(), Some(&want));
        // Items before the error survive.
        assert_eq!(c.poll(), reply(good, Ok(Reply::Value(b"v".to_vec()))));
        // Everything afterwards is refused.
        assert_eq!(c.receive(b""), Err(StoreError::Broken(want.clone())));
        assert_eq!(
            c.request(TxId::NONE, &Request::Read { path: "a" }),
            Err(StoreError::Broken(want.clone()))
        );
        assert_eq!(c.check(), Err(StoreError::Broken(want)));
    }

    fn client_with(reqs: &[Request<'_>]) -> (Client, Vec<ReqId>) {
        let mut c = Client::new();
        let ids = reqs
            .iter()
            .map(|r| c.request(TxId::NONE, r).unwrap())
            .collect();
        (c, ids)
    }

    #[test]
    fn fatal_errors() {
        let read = Request::Read { path: "a" };
        // Oversized header.
        let (c, ids) = client_with(&[read, read]);
        let mut big = Header {
            ty: msg::READ,
            req_id: ids[1].0,
            tx_id: 0,
            len: 4097,
        }
        .encode();
        assert_fatal(
            c,
            ids[0],
            &big,
            ProtocolError::Header(WireError::Oversized(4097)),
        );
        // Unknown type.
        let (c, ids) = client_with(&[read, read]);
        big[0..4].copy_from_slice(&20u32.to_le_bytes());
        big[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_fatal(
            c,
            ids[0],
            &big,
            ProtocolError::Header(WireError::UnknownType(20)),
        );
        // Unknown req_id.
        let (c, ids) = client_with(&[read, read]);
        let m = message(msg::READ, 999, b"");
        assert_fatal(
            c,
            ids[0],
            &m,
            ProtocolError::UnknownReqId {
                req_id: 999,
                ty: msg::READ,
            },
        );
        // A req_id answered twice is no longer outstanding the second time.
        let (c, ids) = client_with(&[read, read]);
        let m = message(msg::READ, ids[0].0, b"");
        let want = ProtocolError::UnknownReqId {
            req_id: ids[0].0,
            ty: msg::READ,
        };
        assert_fatal(c, ids[0], &m, want);
        // Type mismatch.
        let (c, ids) = client_with(&[read, Request::Mkdir { path: "m" }]);
        let m = message(msg::WRITE, ids[1].0, b"OK\0");
        let want = ProtocolError::TypeMismatch {
            req_id: ids[1].0,
            expected: msg::MKDIR,
            got: msg::WRITE,
        };
        assert_fatal(c, ids[0], &m, want);
        // Malformed watch events.
        let ty = msg::WATCH_EVENT;
        let (c, ids) = client_with(&[read]);
        assert_fatal(
            c,
            ids[0],
            &message(ty, 0, b"p\0t"),
            ProtocolError::MissingNul { ty },
        );
        let (c, ids) = client_with(&[read]);
        assert_fatal(
            c,
            ids[0],
            &message(ty, 0, b"\x80\0t\0"),
            ProtocolError::NotUtf8 { ty },
        );
        // `poison` from the transport.
        let (mut c, _) = client_with(&[read]);
        let e = ProtocolError::RingIndex {
            ring: crate::store::RingSide::Rsp,
            prod: 5000,
            cons: 0,
        };
        assert_eq!(c.poison(e.clone()), StoreError::Broken(e.clone()));
        let other = ProtocolError::UnknownReqId { req_id: 1, ty: 1 };
        assert_eq!(c.poison(other), StoreError::Broken(e), "first error sticks");
    }

    #[test]
    fn short_header_is_not_an_error_but_waits() {
        let (mut c, ids) = client_with(&[Request::Read { path: "a" }]);
        let m = message(msg::READ, ids[0].0, b"xyz");
        c.receive(&m[..15]).unwrap();
        assert!(c.mid_message());
        assert_eq!(c.poll(), None);
        c.receive(&m[15..]).unwrap();
        assert_eq!(c.poll(), reply(ids[0], Ok(Reply::Value(b"xyz".to_vec()))));
    }

    /// A stream of valid replies to `ids` (READ requests), each id once,
    /// with watch events between them.
    fn valid_stream(ids: &[ReqId]) -> Vec<u8> {
        let mut s = Vec::new();
        for (i, id) in ids.iter().enumerate().rev() {
            s.extend(message(msg::READ, id.0, format!("v{i}").as_bytes()));
            s.extend(message(msg::WATCH_EVENT, 0, b"p\0t\0"));
        }
        s
    }

    proptest::proptest! {
        /// Any chunking of a valid stream gives the same items.
        #[test]
        fn any_chunking_of_valid_replies(cuts in proptest::collection::vec(0usize..400, 0..20)) {
            let reqs = [Request::Read { path: "a" }; 6];
            let (mut whole, ids) = client_with(&reqs);
            let stream = valid_stream(&ids);
            whole.receive(&stream).unwrap();
            let want: Vec<Incoming> = core::iter::from_fn(|| whole.poll()).collect();
            proptest::prop_assert_eq!(want.len(), 12);
            let (mut c, _) = client_with(&reqs);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|x| x.min(stream.len())).collect();
            cuts.sort();
            let mut at = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                c.receive(&stream[at..cut]).unwrap();
                at = cut;
            }
            let got: Vec<Incoming> = core::iter::from_fn(|| c.poll()).collect();
            proptest::prop_assert_eq!(got, want);
        }

        /// Arbitrary bytes never panic; errors are fatal and sticky; replies
        /// answer outstanding requests only.
        #[test]
        fn arbitrary_bytes_never_panic(
            prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            chunk in 1usize..50,
        ) {
            let reqs = [
                Request::Read { path: "a" },
                Request::Directory { path: "a" },
                Request::GetPerms { path: "a" },
                Request::TransactionStart,
                Request::GetDomainPath { domid: 1 },
                Request::Watch { path: "a", token: "t" },
            ];
            let (mut c, ids) = client_with(&reqs);
            // A valid start so the garbage lands mid-stream too.
            let mut stream = message(msg::READ, ids[0].0, &prefix);
            stream.extend(&garbage);
            let mut broken = false;
            for piece in stream.chunks(chunk) {
                match c.receive(piece) {
                    Ok(()) => proptest::prop_assert!(!broken),
                    Err(e) => {
                        proptest::prop_assert!(e.is_fatal());
                        broken = true;
                    }
                }
                while let Some(item) = c.poll() {
                    if let Incoming::Reply { req_id, .. } = item {
                        proptest::prop_assert!(ids.contains(&req_id));
                        proptest::prop_assert!(!c.is_outstanding(req_id));
                    }
                }
            }
        }
    }

    #[test]
    fn abandoned_replies_are_dropped_but_checked() {
        let (mut c, ids) = client_with(&[Request::Read { path: "a" }, Request::Rm { path: "b" }]);
        c.abandon(ids[0]);
        c.abandon(ReqId(12345)); // unknown: ignored
        assert!(c.is_outstanding(ids[0]));
        c.receive(&message(msg::READ, ids[0].0, b"late")).unwrap();
        assert_eq!(c.poll(), None);
        assert!(!c.is_outstanding(ids[0]));
        // An abandoned request answered with the wrong type is still fatal.
        c.abandon(ids[1]);
        let e = c.receive(&message(msg::READ, ids[1].0, b"")).unwrap_err();
        assert!(e.is_fatal());
    }
}
