//! The blocking xenstore facade used by drivers.
//!
//! [`Xenstore`] glues the tested pieces together and adds only waiting:
//! every operation queues one request in the [`Client`], then loops
//! *clear the port's pending bit → move bytes both ways through the
//! [`RingTransport`] (notifying the port if an index moved) → return if the
//! reply is in → sleep in `SCHEDOP_poll` until the port fires or the
//! deadline passes*. Clearing before looking is the race-free order
//! described in [`crate::evtchn`]. At most one request is awaited at a time;
//! one that timed out is abandoned in the client, which swallows its late
//! reply.
//!
//! Watch events that arrive meanwhile are queued (coalescing duplicates, at
//! most [`MAX_QUEUED_EVENTS`]; events for tokens not registered here are
//! dropped and counted) and handed out by [`Xenstore::poll_event`],
//! [`Xenstore::poll_event_for`] and [`Xenstore::next_event`]. An event loop
//! that waits on many ports calls [`Xenstore::handle_notification`] when
//! the store port fires, then polls events without blocking.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use super::client::{Client, Incoming};
use super::error::{ProtocolError, StoreError};
use super::perm::{parse_decimal_u16, Perm};
use super::reply::{Reply, WatchEvent};
use super::request::{ReqId, Request, TxId};
use super::transport::RingTransport;
use super::wire::XsError;
use crate::abi::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
use crate::abi::xs_wire::XENSTORE_RING_SIZE;
use crate::abi::{DomId, Errno, EvtchnPort};
use crate::evtchn::{EventChannels, Wake};
use crate::hypervisor::HypervisorExt;
use crate::memory::{Gfn, SharedMem};
use crate::Platform;

/// Default time an operation may wait for its reply: 10 s.
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;
/// How often [`Xenstore::transaction`] runs its closure before giving up
/// on repeated `EAGAIN` commits.
pub const MAX_TX_ATTEMPTS: u32 = 16;
/// Most watch events held for the caller; more are dropped and counted.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// A blocking xenstore client (see the module doc).
pub struct Xenstore<P: Platform + Clone> {
    ev: EventChannels<P>,
    port: EvtchnPort,
    ring: RingTransport,
    client: Client,
    timeout_ns: u64,
    /// The request being waited for, and its reply once routed.
    awaiting: Option<ReqId>,
    ready: Option<Result<Reply, StoreError>>,
    /// Registered (path, token) pairs; duplicates allowed.
    watches: Vec<(String, String)>,
    events: VecDeque<WatchEvent>,
    dropped_events: u64,
}

impl<P: Platform + Clone> Xenstore<P> {
    /// Attach to the xenstore page `page`, signalled through `port` (bound
    /// already, as the domain builder leaves it). Unmasks the port.
    pub fn new(
        ev: EventChannels<P>,
        page: SharedMem,
        port: EvtchnPort,
    ) -> Result<Self, StoreError> {
        let ring = RingTransport::new(page).ok_or(StoreError::Hypercall(Errno::EFAULT))?;
        ev.unmask(port)?;
        Ok(Xenstore {
            ev,
            port,
            ring,
            client: Client::new(),
            timeout_ns: DEFAULT_TIMEOUT_NS,
            awaiting: None,
            ready: None,
            watches: Vec::new(),
            events: VecDeque::new(),
            dropped_events: 0,
        })
    }

    /// Attach to the page and port named by `HVM_PARAM_STORE_PFN` and
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub fn from_params(ev: EventChannels<P>) -> Result<Self, StoreError> {
        let p = ev.platform();
        let gfn = Gfn(p.get_param(HVM_PARAM_STORE_PFN)?);
        let port = EvtchnPort::try_from(p.get_param(HVM_PARAM_STORE_EVTCHN)?)
            .map_err(|_| Errno::EINVAL)?;
        let page = p.page(gfn).ok_or(Errno::EFAULT)?;
        Self::new(ev, page, port)
    }

    /// The xenstore event channel port (for an event loop's wait set).
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// The per-operation timeout in ns.
    pub fn timeout(&self) -> u64 {
        self.timeout_ns
    }

    /// Set the per-operation timeout in ns.
    pub fn set_timeout(&mut self, ns: u64) {
        self.timeout_ns = ns;
    }

    /// Watch events dropped: for unregistered tokens, or on queue overflow.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// The connection's fatal error, if it is broken.
    pub fn broken(&self) -> Option<&ProtocolError> {
        self.client.broken()
    }

    // ---- operations ---------------------------------------------------

    /// A node's value.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, StoreError> {
        self.op_read(TxId::NONE, path)
    }

    /// A node's value, `None` if the node does not exist.
    pub fn read_opt(&mut self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        optional(self.read(path))
    }

    /// A node's value as UTF-8 text ([`StoreError::BadValue`] if it is not).
    pub fn read_string(&mut self, path: &str) -> Result<String, StoreError> {
        let v = self.read(path)?;
        String::from_utf8(v).map_err(|e| StoreError::bad_value("UTF-8 text", e.as_bytes()))
    }

    /// Set a node's value, creating it and missing parents.
    pub fn write(&mut self, path: &str, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.op_write(TxId::NONE, path, value.as_ref())
    }

    /// Create a node with an empty value (no error if it exists).
    pub fn mkdir(&mut self, path: &str) -> Result<(), StoreError> {
        self.op_ok(TxId::NONE, &Request::Mkdir { path })
    }

    /// Remove a node and its subtree.
    pub fn rm(&mut self, path: &str) -> Result<(), StoreError> {
        self.op_ok(TxId::NONE, &Request::Rm { path })
    }

    /// A node's children (leaf names).
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreError> {
        self.op_directory(TxId::NONE, path)
    }

    /// A node's permission list, owner first.
    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>, StoreError> {
        self.op_get_perms(TxId::NONE, path)
    }

    /// Replace a node's permission list (owner first).
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.op_ok(TxId::NONE, &Request::SetPerms { path, perms })
    }

    /// `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: DomId) -> Result<String, StoreError> {
        match self.call(TxId::NONE, &Request::GetDomainPath { domid })? {
            Reply::Path(p) => Ok(p),
            r => Err(unexpected(r)),
        }
    }

    /// Our own domid, from the `domid` node.
    pub fn domid(&mut self) -> Result<DomId, StoreError> {
        let v = self.read("domid")?;
        parse_decimal_u16(&v).ok_or_else(|| StoreError::bad_value("a decimal domid", &v))
    }

    /// Watch `path` and its subtree; events carry `token`. xenstored fires
    /// the watch once right away.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreError> {
        // Registered before sending, so that the initial event is accepted
        // whichever order it arrives in relative to the reply.
        self.watches.push((path.into(), token.into()));
        let r = self.op_ok(TxId::NONE, &Request::Watch { path, token });
        if let Err(StoreError::Xs(_) | StoreError::Request(_) | StoreError::Protocol(_)) = r {
            self.forget_watch(path, token);
        }
        r
    }

    /// Remove a watch; its queued events are discarded.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreError> {
        self.forget_watch(path, token);
        self.op_ok(TxId::NONE, &Request::Unwatch { path, token })
    }

    /// Drop all watches (and server-side transactions) of this domain.
    pub fn reset_watches(&mut self) -> Result<(), StoreError> {
        self.watches.clear();
        self.events.clear();
        self.op_ok(TxId::NONE, &Request::ResetWatches)
    }

    /// Run `f` in a transaction and commit it. If the commit fails with
    /// `EAGAIN` (something `f` read changed meanwhile), the whole closure
    /// runs again in a new transaction, at most [`MAX_TX_ATTEMPTS`] times,
    /// then [`StoreError::TransactionConflict`]. If `f` fails the
    /// transaction is aborted and `f`'s error returned (an `EAGAIN` from an
    /// operation inside `f` is not retried).
    pub fn transaction<T>(
        &mut self,
        mut f: impl FnMut(&mut Transaction<'_, P>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..MAX_TX_ATTEMPTS {
            let id = match self.call(TxId::NONE, &Request::TransactionStart)? {
                Reply::Transaction(id) => id,
                r => return Err(unexpected(r)),
            };
            match f(&mut Transaction { store: self, id }) {
                Ok(v) => match self.op_ok(id, &Request::TransactionEnd { commit: true }) {
                    Ok(()) => return Ok(v),
                    Err(StoreError::Xs(XsError::Eagain)) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    if !e.is_fatal() && e != StoreError::Timeout {
                        // Best effort: the caller's error is the one that
                        // matters.
                        let _ = self.op_ok(id, &Request::TransactionEnd { commit: false });
                    }
                    return Err(e);
                }
            }
        }
        Err(StoreError::TransactionConflict {
            attempts: MAX_TX_ATTEMPTS,
        })
    }

    // ---- events ---------------------------------------------------------

    /// Drain the rings without blocking: call when the store port fired.
    /// Events become available to the `poll_event*` methods.
    pub fn handle_notification(&mut self) -> Result<(), StoreError> {
        self.ev.clear_pending(self.port);
        self.pump()
    }

    /// The oldest queued watch event, without blocking or touching the ring.
    pub fn poll_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// The oldest queued watch event with `token`, without blocking.
    pub fn poll_event_for(&mut self, token: &str) -> Option<WatchEvent> {
        let i = self.events.iter().position(|e| e.token == token)?;
        self.events.remove(i)
    }

    /// Wait for a watch event (any token) until the absolute Xen time
    /// `deadline` (ns; `None` = forever). `Ok(None)` on timeout.
    pub fn next_event(&mut self, deadline: Option<u64>) -> Result<Option<WatchEvent>, StoreError> {
        self.next_matching(deadline, |_| true)
    }

    /// Wait for a watch event with `token`; other events stay queued.
    pub fn next_event_for(
        &mut self,
        token: &str,
        deadline: Option<u64>,
    ) -> Result<Option<WatchEvent>, StoreError> {
        self.next_matching(deadline, |e| e.token == token)
    }

    fn next_matching(
        &mut self,
        deadline: Option<u64>,
        want: impl Fn(&WatchEvent) -> bool,
    ) -> Result<Option<WatchEvent>, StoreError> {
        loop {
            self.ev.clear_pending(self.port);
            self.pump()?;
            if let Some(i) = self.events.iter().position(&want) {
                return Ok(self.events.remove(i));
            }
            if self.ev.wait(&[self.port], deadline)? == Wake::Timeout {
                return Ok(None);
            }
        }
    }

    // ---- machinery --------------------------------------------------------

    fn op_read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, StoreError> {
        match self.call(tx, &Request::Read { path })? {
            Reply::Value(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    fn op_write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), StoreError> {
        self.op_ok(tx, &Request::Write { path, value })
    }

    fn op_directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, StoreError> {
        match self.call(tx, &Request::Directory { path })? {
            Reply::Children(c) => Ok(c),
            r => Err(unexpected(r)),
        }
    }

    fn op_get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Perm>, StoreError> {
        match self.call(tx, &Request::GetPerms { path })? {
            Reply::Perms(p) => Ok(p),
            r => Err(unexpected(r)),
        }
    }

    fn op_ok(&mut self, tx: TxId, req: &Request<'_>) -> Result<(), StoreError> {
        match self.call(tx, req)? {
            Reply::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Send `req` and wait for its reply until the timeout.
    fn call(&mut self, tx: TxId, req: &Request<'_>) -> Result<Reply, StoreError> {
        let deadline = self.ev.platform().now_ns().saturating_add(self.timeout_ns);
        let id = self.client.request(tx, req)?;
        self.awaiting = Some(id);
        self.ready = None;
        let r = self.wait_reply(deadline);
        self.awaiting = None;
        if self.client.is_outstanding(id) {
            self.client.abandon(id);
        }
        r
    }

    fn wait_reply(&mut self, deadline: u64) -> Result<Reply, StoreError> {
        loop {
            self.ev.clear_pending(self.port);
            let pumped = self.pump();
            // A reply that arrived counts even if the notify after it failed.
            if let Some(r) = self.ready.take() {
                return r;
            }
            pumped?;
            if self.ev.wait(&[self.port], Some(deadline))? == Wake::Timeout {
                return Err(StoreError::Timeout);
            }
        }
    }

    /// Move bytes both ways until neither ring makes progress, route what
    /// arrived, then notify the server once if any index moved.
    fn pump(&mut self) -> Result<(), StoreError> {
        self.client.check()?;
        let mut notify = false;
        let mut buf = [0u8; XENSTORE_RING_SIZE];
        loop {
            let round = self.ring.exchange(&mut self.client, &mut buf)?;
            notify |= round.notify;
            let received = self.client.receive(&buf[..round.read]);
            self.route();
            received?;
            if round.idle() {
                break;
            }
        }
        if notify {
            self.ev.send(self.port)?;
        }
        Ok(())
    }

    fn route(&mut self) {
        while let Some(item) = self.client.poll() {
            match item {
                Incoming::Reply { req_id, result } if Some(req_id) == self.awaiting => {
                    self.ready = Some(result);
                }
                Incoming::Reply { req_id, .. } => {
                    // Unreachable: only the awaited request is not abandoned.
                    log::warn!("xenstore: dropping reply to unawaited request {}", req_id.0);
                }
                Incoming::Watch(ev) => self.queue_event(ev),
            }
        }
    }

    fn queue_event(&mut self, ev: WatchEvent) {
        if !self.watches.iter().any(|(_, t)| *t == ev.token) {
            self.dropped_events += 1;
            log::debug!(
                "xenstore: event for unregistered token {:?} dropped",
                ev.token
            );
        } else if self.events.contains(&ev) {
            // Already queued: one re-read covers both.
        } else if self.events.len() >= MAX_QUEUED_EVENTS {
            self.dropped_events += 1;
            log::warn!(
                "xenstore: event queue full, dropped event for {:?}",
                ev.path
            );
        } else {
            self.events.push_back(ev);
        }
    }

    fn forget_watch(&mut self, path: &str, token: &str) {
        if let Some(i) = self
            .watches
            .iter()
            .position(|(p, t)| p == path && t == token)
        {
            self.watches.remove(i);
        }
        if !self.watches.iter().any(|(_, t)| t == token) {
            self.events.retain(|e| e.token != token);
        }
    }
}

/// Operations inside a transaction started by [`Xenstore::transaction`].
pub struct Transaction<'a, P: Platform + Clone> {
    store: &'a mut Xenstore<P>,
    id: TxId,
}

impl<P: Platform + Clone> Transaction<'_, P> {
    /// The transaction id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// A node's value.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, StoreError> {
        self.store.op_read(self.id, path)
    }

    /// A node's value, `None` if the node does not exist.
    pub fn read_opt(&mut self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        optional(self.read(path))
    }

    /// Set a node's value.
    pub fn write(&mut self, path: &str, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.store.op_write(self.id, path, value.as_ref())
    }

    /// Create a node.
    pub fn mkdir(&mut self, path: &str) -> Result<(), StoreError> {
        self.store.op_ok(self.id, &Request::Mkdir { path })
    }

    /// Remove a node and its subtree.
    pub fn rm(&mut self, path: &str) -> Result<(), StoreError> {
        self.store.op_ok(self.id, &Request::Rm { path })
    }

    /// A node's children.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreError> {
        self.store.op_directory(self.id, path)
    }

    /// A node's permission list.
    pub fn get_perms(&mut self, path: &str) -> Result<Vec<Perm>, StoreError> {
        self.store.op_get_perms(self.id, path)
    }

    /// Replace a node's permission list.
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), StoreError> {
        self.store
            .op_ok(self.id, &Request::SetPerms { path, perms })
    }
}

/// `ENOENT` as `None`.
fn optional<T>(r: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Xs(XsError::Enoent)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A reply of the wrong variant. The client only produces the variant of
/// the request's type, so this is unreachable; it is an error, not a panic.
fn unexpected(r: Reply) -> StoreError {
    log::error!("xenstore: reply {r:?} of the wrong kind");
    StoreError::Protocol(ProtocolError::BadPayload {
        ty: 0,
        what: "reply of the wrong kind",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::xs_wire::msg;
    use crate::hypervisor::Hypervisor;
    use crate::store::perm::Access;
    use crate::store::testutil::{message, FakePlatform, STORE_PORT};

    fn store() -> (FakePlatform, Xenstore<FakePlatform>) {
        let p = FakePlatform::new(7);
        let ev = EventChannels::new(p.clone()).unwrap();
        let xs = Xenstore::from_params(ev).unwrap();
        (p, xs)
    }

    #[test]
    fn basic_operations() {
        let (p, mut xs) = store();
        assert_eq!(xs.port(), STORE_PORT);
        assert_eq!(xs.domid(), Ok(7));
        xs.write("data/x", "hello").unwrap();
        assert_eq!(xs.read("data/x").unwrap(), b"hello");
        assert_eq!(xs.read_string("/local/domain/7/data/x").unwrap(), "hello");
        assert_eq!(xs.read_opt("data/none"), Ok(None));
        assert_eq!(xs.read("data/none"), Err(StoreError::Xs(XsError::Enoent)));
        xs.mkdir("data/dir").unwrap();
        xs.write("data/dir/a", b"1").unwrap();
        assert_eq!(xs.directory("data").unwrap(), vec!["dir", "x"]);
        xs.rm("data/dir").unwrap();
        assert_eq!(xs.directory("data").unwrap(), vec!["x"]);
        let perms = [Perm::new(7, Access::None), Perm::new(0, Access::Read)];
        xs.set_perms("data/x", &perms).unwrap();
        assert_eq!(xs.get_perms("data/x").unwrap(), perms);
        assert_eq!(xs.get_domain_path(3).unwrap(), "/local/domain/3");
        assert!(p.inner().sends.get() > 0);
        // Every request went out with tx 0 and distinct ids.
        let log = &p.inner().server.borrow().log;
        let mut ids: Vec<u32> = log.iter().map(|(h, _)| h.req_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), log.len());
        assert!(log.iter().all(|(h, _)| h.tx_id == 0));
    }

    #[test]
    fn bad_values_and_request_errors() {
        let (p, mut xs) = store();
        p.inner()
            .server
            .borrow_mut()
            .nodes
            .insert("/local/domain/7/domid".into(), b"x7".to_vec());
        assert!(matches!(xs.domid(), Err(StoreError::BadValue { .. })));
        xs.write("bin", [0xffu8]).unwrap();
        assert!(matches!(
            xs.read_string("bin"),
            Err(StoreError::BadValue { .. })
        ));
        assert!(matches!(xs.read("a\0b"), Err(StoreError::Request(_))));
        // Still usable.
        assert_eq!(xs.read("bin").unwrap(), [0xff]);
    }

    #[test]
    fn replies_delivered_in_small_chunks() {
        let (p, mut xs) = store();
        p.inner().server.borrow_mut().chunk = 5;
        let big = vec![b'z'; 3000];
        xs.write("big", &big).unwrap();
        assert_eq!(xs.read("big").unwrap(), big);
        // Each 5-byte chunk was consumed, and the consumption notified.
        assert!(
            p.inner().sends.get() > 3000 / 5,
            "{}",
            p.inner().sends.get()
        );
    }

    #[test]
    fn slow_server_is_waited_for() {
        let (p, mut xs) = store();
        p.inner().lazy.set(true);
        p.inner().server.borrow_mut().chunk = 7;
        xs.write("w", vec![b'q'; 2500]).unwrap();
        assert_eq!(xs.read("w").unwrap(), vec![b'q'; 2500]);
        // The guest slept in SCHEDOP_poll for each chunk.
        assert!(
            p.inner().polls.get() > 2500 / 7,
            "{}",
            p.inner().polls.get()
        );
        // A slow server is still bounded by the timeout.
        xs.set_timeout(3_000_000);
        p.inner().server.borrow_mut().chunk = 1;
        assert_eq!(xs.read("w"), Err(StoreError::Timeout));
        xs.set_timeout(DEFAULT_TIMEOUT_NS);
        p.inner().server.borrow_mut().chunk = 0;
        assert_eq!(xs.domid(), Ok(7), "the late reply was swallowed");
    }

    #[test]
    fn watches_queue_events_by_token() {
        let (_p, mut xs) = store();
        xs.watch("device", "dev").unwrap();
        xs.watch("/local/domain/7/control", "ctl").unwrap();
        // Initial events are queued.
        assert_eq!(
            xs.poll_event_for("ctl"),
            Some(WatchEvent {
                path: "/local/domain/7/control".into(),
                token: "ctl".into()
            })
        );
        assert_eq!(
            xs.poll_event(),
            Some(WatchEvent {
                path: "device".into(),
                token: "dev".into()
            })
        );
        assert_eq!(xs.poll_event(), None);
        // Events arriving while waiting for replies are queued.
        xs.write("device/vif/0/state", "1").unwrap();
        xs.write("control/shutdown", "poweroff").unwrap();
        xs.write("device/vif/0/state", "4").unwrap(); // same event: coalesced
        assert_eq!(
            xs.poll_event_for("ctl"),
            Some(WatchEvent {
                path: "/local/domain/7/control/shutdown".into(),
                token: "ctl".into()
            })
        );
        assert_eq!(
            xs.poll_event(),
            Some(WatchEvent {
                path: "device/vif/0/state".into(),
                token: "dev".into()
            })
        );
        assert_eq!(xs.poll_event(), None);
        // next_event with a deadline: nothing pending → None at the deadline.
        let now = xs.ev.platform().now_ns();
        assert_eq!(xs.next_event(Some(now + 5_000_000)), Ok(None));
        // Unwatch drops queued events and later ones.
        xs.write("device/x", "1").unwrap();
        xs.unwatch("device", "dev").unwrap();
        assert_eq!(xs.poll_event(), None);
        xs.write("device/y", "1").unwrap();
        assert_eq!(xs.poll_event(), None);
        assert_eq!(
            xs.unwatch("device", "dev"),
            Err(StoreError::Xs(XsError::Enoent))
        );
        xs.reset_watches().unwrap();
        xs.write("control/x", "1").unwrap();
        assert_eq!(xs.poll_event(), None);
    }

    #[test]
    fn event_loop_drives_the_client_without_blocking() {
        let (p, mut xs) = store();
        xs.watch("data", "d").unwrap();
        assert!(xs.poll_event().is_some());
        // Another party changes the store; the server publishes an event.
        {
            let mut s = p.inner().server.borrow_mut();
            s.inject = message(msg::WATCH_EVENT, 0, b"data/k\0d\0");
        }
        p.run_server();
        assert!(xs.ev.is_pending(STORE_PORT));
        xs.handle_notification().unwrap();
        assert!(!xs.ev.is_pending(STORE_PORT));
        assert_eq!(
            xs.poll_event(),
            Some(WatchEvent {
                path: "data/k".into(),
                token: "d".into()
            })
        );
        // A blocking wait for a specific token.
        p.inner().server.borrow_mut().inject = message(msg::WATCH_EVENT, 0, b"data/z\0d\0");
        let got = xs.next_event_for("d", None).unwrap();
        assert_eq!(
            got,
            Some(WatchEvent {
                path: "data/z".into(),
                token: "d".into()
            })
        );
        // Events for tokens never registered are dropped and counted.
        p.inner().server.borrow_mut().inject = message(msg::WATCH_EVENT, 0, b"x\0stray\0");
        p.run_server();
        xs.handle_notification().unwrap();
        assert_eq!(xs.poll_event(), None);
        assert_eq!(xs.dropped_events(), 1);
    }

    #[test]
    fn transaction_retries_on_eagain() {
        let (p, mut xs) = store();
        p.inner().server.borrow_mut().eagain_commits = 2;
        let mut runs = 0;
        let v = xs
            .transaction(|tx| {
                runs += 1;
                assert_ne!(tx.id(), TxId::NONE);
                let old = tx.read_opt("counter")?.unwrap_or_default();
                tx.write("counter", [old.as_slice(), b"+"].concat())?;
                Ok(runs)
            })
            .unwrap();
        assert_eq!(v, 3);
        let log = &p.inner().server.borrow().log;
        let ends: Vec<&Vec<u8>> = log
            .iter()
            .filter(|(h, _)| h.ty == msg::TRANSACTION_END)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(ends, vec![b"T\0", b"T\0", b"T\0"]);
        // Operations inside carry the transaction id.
        assert!(log
            .iter()
            .filter(|(h, _)| h.ty == msg::WRITE)
            .all(|(h, _)| h.tx_id != 0));
    }

    #[test]
    fn transaction_gives_up_and_aborts_on_error() {
        let (p, mut xs) = store();
        p.inner().server.borrow_mut().eagain_commits = u32::MAX;
        let r = xs.transaction(|tx| tx.write("a", "1"));
        assert_eq!(
            r,
            Err(StoreError::TransactionConflict {
                attempts: MAX_TX_ATTEMPTS
            })
        );
        p.inner().server.borrow_mut().eagain_commits = 0;
        p.inner().server.borrow_mut().log.clear();
        let r: Result<(), _> = xs.transaction(|tx| {
            tx.read("missing")?;
            Ok(())
        });
        assert_eq!(r, Err(StoreError::Xs(XsError::Enoent)));
        let log = &p.inner().server.borrow().log;
        assert_eq!(
            log.last().map(|(h, p)| (h.ty, p.clone())),
            Some((msg::TRANSACTION_END, b"F\0".to_vec()))
        );
    }

    #[test]
    fn timeout_abandons_the_request() {
        let (p, mut xs) = store();
        xs.set_timeout(50_000_000);
        assert_eq!(xs.timeout(), 50_000_000);
        p.inner().server.borrow_mut().silent = true;
        let t0 = p.now_ns();
        assert_eq!(xs.read("domid"), Err(StoreError::Timeout));
        assert!(p.now_ns() >= t0 + 50_000_000);
        // The server wakes up and answers the old request late, then the
        // new one: the late reply is swallowed, not mistaken.
        let late = p.inner().server.borrow().log.clone();
        assert!(late.is_empty(), "silent server logs nothing");
        p.inner().server.borrow_mut().silent = false;
        p.inner().server.borrow_mut().inject = message(msg::READ, 1, b"late");
        assert_eq!(xs.domid(), Ok(7));
    }

    #[test]
    fn fatal_errors_break_the_facade() {
        let (p, mut xs) = store();
        p.inner().server.borrow_mut().inject = message(msg::READ, 4242, b"");
        let want = ProtocolError::UnknownReqId {
            req_id: 4242,
            ty: msg::READ,
        };
        assert_eq!(xs.read("domid"), Err(StoreError::Broken(want.clone())));
        assert_eq!(xs.broken(), Some(&want));
        assert_eq!(xs.write("a", "b"), Err(StoreError::Broken(want.clone())));
        assert_eq!(xs.handle_notification(), Err(StoreError::Broken(want)));
    }

    #[test]
    fn ring_index_violation_breaks_the_facade() {
        let (p, mut xs) = store();
        let rsp_prod =
            core::mem::offset_of!(crate::abi::xs_wire::XenstoreDomainInterface, rsp_prod);
        p.store_page().write_u32(rsp_prod, 5000);
        assert!(matches!(
            xs.handle_notification(),
            Err(StoreError::Broken(ProtocolError::RingIndex { .. }))
        ));
        assert!(xs.read("domid").unwrap_err().is_fatal());
    }

    #[test]
    fn notify_failure_is_a_hypercall_error() {
        let (p, mut xs) = store();
        p.inner().send_error.set(Some(Errno::EINVAL));
        xs.set_timeout(10_000_000);
        assert_eq!(xs.read("domid"), Err(StoreError::Hypercall(Errno::EINVAL)));
        p.inner().send_error.set(None);
        assert_eq!(xs.domid(), Ok(7));
    }
}
