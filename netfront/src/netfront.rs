//! The driver: the xenbus handshake as a state machine driven by watch
//! events, following the backend through restarts, and the public data
//! path calls.
//!
//! # States
//!
//! - *no device*: `device/vif` has no usable entry; we wait for one.
//! - *waiting*: we have a device (its `backend`, `backend-id`, `mac`, `mtu`
//!   read, the backend's `state` watched) and no connection. When the
//!   backend is in InitWait we connect.
//! - *failed*: waiting after a protocol violation. We write Closed and
//!   connect again only once the backend has been seen in another state
//!   and is back in InitWait (it restarted), or after a backoff: a backend
//!   found in InitWait all along is tried again (it may have restarted
//!   between two looks), and one that went Closed with `online = 1` is
//!   invited back by writing Initialising (Linux netback waits for that
//!   after an error). The backoff starts at 1 s and doubles with every
//!   violation and invitation up to 60 s; only a connection that stayed up
//!   for a minute resets it. So a backend sitting in InitWait with bad
//!   keys, or one that connects and misbehaves every time, costs at most
//!   one attempt (and one warn line) per backoff period — no loop.
//! - *connecting*: rings, grants and event channel are set up and
//!   published (`state = 4`); we wait for the backend to be Connected.
//! - *up*: the data path runs.
//!
//! # Following the backend (see `docs/netif.md`)
//!
//! - backend Closing, Closed, or gone (Unknown): tear down, write our
//!   `state = 6` (Closed). When the backend has reached Closed with
//!   `online = 1` (it wants to be reconnected, e.g. after an error), we
//!   write `state = 1` (Initialising): Linux netback then returns to
//!   InitWait and we connect again. With `online = 0` the toolstack is
//!   removing the device and we only wait.
//! - backend back in InitWait (or Initialising) while we are up: it
//!   restarted; tear down and connect again at once (InitWait) or when it
//!   gets there.
//! - our device directory vanishing, or its `backend`/`backend-id`
//!   changing, or another device id appearing when ours is gone: tear
//!   down, write Closed if our directory still exists, and adopt the new
//!   device.
//!
//! Teardown never frees a page the backend still holds: those wait in a
//! bounded quarantine ([`crate::quarantine`]), retried by
//! [`Netfront::tick`] and every watch event.

use alloc::format;
use alloc::string::String;
use core::fmt;

use xen::abi::{DomId, EvtchnPort};
use xen::evtchn::EventChannels;
use xen::frame::{Frame, FrameQueue};
use xen::gnttab::GrantTable;
use xen::memory::pool::PagePool;
use xen::store::wire::XsError;
use xen::store::{StoreError, WatchEvent, Xenstore};
use xen::xenbus::{self, XenbusState};
use xen::Platform;

use crate::conn::{Conn, DataPath};
use crate::error::{NetfrontError, Violation};
use crate::features::{parse_domid, parse_flag, parse_mac, parse_mtu, parse_u32};
use crate::rx::RxConfig;
use crate::{device_dir, Features, Stats, VIF_DEVICES_DIR};

/// How long [`Netfront::tick`] waits between retries of the quarantine.
const QUARANTINE_RETRY_NS: u64 = 1_000_000_000;
/// How long [`Netfront::tick`] waits before retrying a connection that
/// failed for lack of resources.
const RETRY_NS: u64 = 1_000_000_000;
/// MTU when the toolstack wrote none.
const DEFAULT_MTU: u16 = 1500;
/// After a violation, a backend found in InitWait without having been seen
/// in another state is retried after this long, doubling per violation.
const FIRST_BACKOFF_NS: u64 = 1_000_000_000;
/// The longest wait before such a retry.
const MAX_BACKOFF_NS: u64 = 60_000_000_000;
/// A connection up this long resets the backoff when it fails.
const STABLE_NS: u64 = 60_000_000_000;

/// Which device to use and what the driver may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetfrontConfig {
    /// The device id to prefer (`device/vif/<devid>`). If it is absent, the
    /// lowest-numbered device present is used: the firewall has one uplink,
    /// and Qubes may re-attach it under a new id.
    pub devid: u32,
    /// What we offer and use (see [`Features`]).
    pub features: Features,
}

/// The state of the link, as the engine sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No connection.
    Down,
    /// Rings published, waiting for the backend.
    Connecting,
    /// Frames flow.
    Up,
}

/// The device we use: the toolstack's keys in our directory.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Device {
    devid: u32,
    dir: String,
    backend: String,
    backend_id: DomId,
    mac: Option<[u8; 6]>,
    mtu: u16,
}

/// Where the handshake is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `start` not called (or `stop` called).
    Idle,
    /// No usable device.
    NoDevice,
    /// A device, no connection. `failed`: `Some(seen_other)` after a
    /// violation, `seen_other` once the backend was seen in a state other
    /// than InitWait (see the module doc: the failed state).
    Waiting { failed: Option<bool> },
    /// Published, waiting for the backend to connect.
    Connecting,
    /// Connected.
    Up,
}

/// The device keys that identify a device.
struct DeviceKeys {
    devid: u32,
    backend: String,
    backend_id: DomId,
}

/// Why no device could be chosen.
enum FindError {
    Store(StoreError),
    Bad {
        devid: u32,
        backend_id: Option<DomId>,
        v: Violation,
    },
}

/// `backend dom <B>` or `backend dom ?` in log lines.
struct Dom(Option<DomId>);

impl fmt::Display for Dom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{d}"),
            None => f.write_str("?"),
        }
    }
}

/// The vif frontend (see the crate doc and the module doc).
pub struct Netfront<P: Platform + Clone> {
    ev: EventChannels<P>,
    config: NetfrontConfig,
    dev_token: String,
    be_token: String,
    phase: Phase,
    dev: Option<Device>,
    /// The backend state path we watch.
    watched: Option<String>,
    /// What we last wrote to our `state` (None: not written by us).
    our_state: Option<XenbusState>,
    conn: Option<Conn>,
    data: DataPath,
    /// Re-evaluate at the next `tick` (after `next_eval`).
    dirty: bool,
    next_eval: u64,
    next_retry: u64,
    /// The last resource problem logged (logged once until it changes).
    last_problem: Option<&'static str>,
    /// The last bad device keys logged.
    bad_device: Option<(u32, Violation)>,
    /// The last xenstore error logged.
    last_store_error: Option<StoreError>,
    /// After a violation: the current backoff, and when a backend sitting
    /// in InitWait is tried again.
    backoff: u64,
    retry_at: u64,
    /// When the current connection came up.
    up_since: Option<u64>,
}

impl<P: Platform + Clone> Netfront<P> {
    /// A driver for the uplink; nothing happens until [`Netfront::start`].
    /// Allocates every table the data path needs, once.
    pub fn new(ev: EventChannels<P>, config: NetfrontConfig) -> Self {
        Netfront {
            ev,
            config,
            dev_token: format!("netfront-{}-devices", config.devid),
            be_token: format!("netfront-{}-backend", config.devid),
            phase: Phase::Idle,
            dev: None,
            watched: None,
            our_state: None,
            conn: None,
            data: DataPath::new(),
            dirty: false,
            next_eval: 0,
            next_retry: 0,
            last_problem: None,
            bad_device: None,
            last_store_error: None,
            backoff: 0,
            retry_at: 0,
            up_since: None,
        }
    }

    /// Watch `device/vif`. The watch's first event (and every later one)
    /// goes to [`Netfront::handle_watch`], which drives the handshake.
    pub fn start(&mut self, xs: &mut Xenstore<P>) -> Result<(), NetfrontError> {
        if self.phase != Phase::Idle {
            return Err(NetfrontError::AlreadyStarted);
        }
        xs.watch(VIF_DEVICES_DIR, &self.dev_token)?;
        self.phase = Phase::NoDevice;
        Ok(())
    }

    /// Shut down: tear the connection down, write our state Closed, drop
    /// the watches. [`Netfront::start`] may be called again afterwards.
    /// Pages the backend still holds stay in quarantine.
    pub fn stop(&mut self, xs: &mut Xenstore<P>, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        if self.phase == Phase::Idle {
            return;
        }
        self.drop_device(xs, gt, pool);
        let _ = xs.unwatch(VIF_DEVICES_DIR, &self.dev_token);
        self.phase = Phase::Idle;
    }

    /// Handle a watch event; true if it was one of ours (the state machine
    /// was re-evaluated).
    pub fn handle_watch(
        &mut self,
        xs: &mut Xenstore<P>,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        ev: &WatchEvent,
    ) -> bool {
        if ev.token == self.dev_token {
            if device_event_matters(&ev.path) {
                self.evaluate(xs, gt, pool);
            }
            true
        } else if ev.token == self.be_token {
            self.evaluate(xs, gt, pool);
            true
        } else {
            false
        }
    }

    /// Time-driven work; call it every loop iteration or at least every
    /// second: writes our state after a violation found by `poll` (which
    /// has no xenstore handle), retries connections that lacked resources,
    /// and retries the quarantine. Cheap when there is nothing to do.
    pub fn tick(&mut self, xs: &mut Xenstore<P>, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        if self.phase == Phase::Idle {
            return;
        }
        let due_retry = !self.data.quarantine.is_empty();
        if !due_retry && !self.dirty {
            return;
        }
        let now = self.now();
        if due_retry && now >= self.next_retry {
            self.next_retry = now + QUARANTINE_RETRY_NS;
            self.data.retry_quarantine(gt, pool);
        }
        if self.dirty && now >= self.next_eval {
            self.evaluate(xs, gt, pool);
        }
    }

    /// The link state.
    pub fn link(&self) -> LinkState {
        match self.phase {
            Phase::Up => LinkState::Up,
            Phase::Connecting => LinkState::Connecting,
            _ => LinkState::Down,
        }
    }

    /// Our event channel port while the link is up (for the event loop's
    /// wait set).
    pub fn port(&self) -> Option<EvtchnPort> {
        match (self.phase, &self.conn) {
            (Phase::Up, Some(c)) => Some(c.port),
            _ => None,
        }
    }

    /// Our MAC, from the device's `mac` key.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.dev.as_ref().and_then(|d| d.mac)
    }

    /// The MTU from the device's `mtu` key (1500 if absent).
    pub fn mtu(&self) -> Option<u16> {
        self.dev.as_ref().map(|d| d.mtu)
    }

    /// The device id in use.
    pub fn devid(&self) -> Option<u32> {
        self.dev.as_ref().map(|d| d.devid)
    }

    /// The backend domain of the device in use.
    pub fn backend_id(&self) -> Option<DomId> {
        self.dev.as_ref().map(|d| d.backend_id)
    }

    /// What both sides agreed (connecting or up): each feature is used in
    /// both directions only if both have it; the backend always takes
    /// IPv4 partial checksums.
    pub fn negotiated(&self) -> Option<Features> {
        self.conn.as_ref().map(|c| c.both)
    }

    /// What the backend offered (connecting or up).
    pub fn backend_features(&self) -> Option<Features> {
        self.conn.as_ref().map(|c| c.theirs)
    }

    /// Consume tx and rx responses (received frames go to `rx` while it
    /// has room), refill the rx ring (at most one notification), final
    /// checks. Clears our port's pending bit first. Does nothing unless
    /// the link is up.
    ///
    /// `Err(Disconnected)`: the backend broke the protocol; the connection
    /// was torn down (logged once). Not fatal: the driver writes our state
    /// Closed at the next [`Netfront::tick`] or watch event, and connects
    /// again when the backend restarts properly.
    pub fn poll(
        &mut self,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        rx: &mut FrameQueue,
    ) -> Result<(), NetfrontError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if self.phase != Phase::Up {
            self.ev.clear_pending(conn.port);
            return Ok(());
        }
        let woke = self.ev.clear_pending(conn.port);
        match self.data.poll(conn, &self.ev, gt, pool, rx, woke) {
            Ok(()) => Ok(()),
            Err(v) => {
                self.fail(gt, pool, &v);
                Err(NetfrontError::Disconnected(v))
            }
        }
    }

    /// Place a frame's slots in the tx ring (published by
    /// [`Netfront::flush`]). `Err(frame)` when the link is not up or the
    /// ring is full for now. Frames that can never be sent (malformed,
    /// too big for the backend) are dropped and counted.
    ///
    /// Offloads: a partial checksum goes as `csum_blank` when both sides
    /// do checksum offload (for IPv6 also IPv6 offload), else it is
    /// completed here; a GSO frame goes as one super-packet when both do
    /// that GSO type and SG, else it is segmented here (copies); a
    /// multi-page frame to a backend without SG is copied into one page.
    pub fn send(
        &mut self,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        frame: Frame,
    ) -> Result<(), Frame> {
        match (self.phase, self.conn.as_mut()) {
            (Phase::Up, Some(conn)) => self.data.send(conn, gt, pool, frame),
            _ => Err(frame),
        }
    }

    /// Publish the placed requests; at most one notification.
    pub fn flush(&mut self) {
        if let (Phase::Up, Some(conn)) = (self.phase, self.conn.as_mut()) {
            if conn.tx.push_requests_and_check_notify() {
                let _ = self.ev.send(conn.port);
                self.data.stats.notifications_sent += 1;
            }
        }
    }

    /// True if [`Netfront::poll`] should run again without waiting for an
    /// event: received packets wait because `rx` was full.
    pub fn needs_poll(&self) -> bool {
        self.phase == Phase::Up && self.data.rx_backlog()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.data.stats
    }

    /// Pool pages held in quarantine (their grants are still held by a
    /// backend; they return to the pool when it lets go).
    pub fn quarantined_pool_pages(&self) -> usize {
        self.data.quarantine.pool_pages()
    }

    // ---- the state machine --------------------------------------------

    fn now(&self) -> u64 {
        self.ev.platform().now_ns()
    }

    /// Log a violation once and count it.
    fn report(&mut self, devid: u32, backend: Option<DomId>, v: &Violation) {
        self.data.stats.violations += 1;
        log::warn!("vif {devid} (backend dom {}): {v}", Dom(backend));
    }

    /// A violation on the current device: report, tear down, mark failed;
    /// our state is written at the next evaluation.
    fn fail(&mut self, gt: &mut GrantTable<P>, pool: &mut PagePool, v: &Violation) {
        let (devid, backend) = match &self.dev {
            Some(d) => (d.devid, Some(d.backend_id)),
            None => (self.config.devid, None),
        };
        self.report(devid, backend, v);
        self.teardown(gt, pool);
        self.mark_failed();
    }

    /// Enter the failed state after a violation: our state is written
    /// Closed at the next evaluation (at once), and a backend that sits in
    /// InitWait is retried only after a backoff unless it is seen to
    /// restart (see [`Phase::Waiting`]).
    fn mark_failed(&mut self) {
        self.phase = Phase::Waiting {
            failed: Some(false),
        };
        let now = self.now();
        if self
            .up_since
            .take()
            .is_some_and(|t| now.saturating_sub(t) >= STABLE_NS)
        {
            // The last connection worked for a while: start over.
            self.backoff = 0;
        }
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF_NS, MAX_BACKOFF_NS);
        self.retry_at = now + self.backoff;
        self.dirty = true;
        self.next_eval = 0;
    }

    fn teardown(&mut self, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        if let Some(conn) = self.conn.take() {
            self.data.teardown(conn, &self.ev, gt, pool);
        }
    }

    /// Log a problem that is not the backend's fault, once until another
    /// one occurs; retry from `tick` later.
    fn problem(&mut self, what: &'static str) {
        if self.last_problem != Some(what) {
            let (devid, backend) = match &self.dev {
                Some(d) => (d.devid, Some(d.backend_id)),
                None => (self.config.devid, None),
            };
            log::warn!("vif {devid} (backend dom {}): {what}", Dom(backend));
            self.last_problem = Some(what);
        }
        self.dirty = true;
        self.next_eval = self.now() + RETRY_NS;
    }

    /// Look at xenstore and move the state machine: the core of the driver,
    /// run on every relevant watch event. Idempotent: it writes nothing
    /// when nothing changed, so the events of our own writes settle.
    fn evaluate(&mut self, xs: &mut Xenstore<P>, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        if self.phase == Phase::Idle {
            return;
        }
        self.dirty = false;
        self.data.retry_quarantine(gt, pool);

        // Which device.
        let found = match self.find_device(xs) {
            Ok(found) => {
                self.bad_device = None;
                found
            }
            Err(FindError::Store(e)) => return self.store_problem(&e),
            Err(FindError::Bad {
                devid,
                backend_id,
                v,
            }) => {
                if self.dev.is_some() {
                    self.drop_device(xs, gt, pool);
                }
                if self.bad_device.as_ref() != Some(&(devid, v.clone())) {
                    self.report(devid, backend_id, &v);
                    self.bad_device = Some((devid, v));
                }
                return;
            }
        };
        let same = matches!((&self.dev, &found), (Some(d), Some(k))
            if d.devid == k.devid && d.backend == k.backend && d.backend_id == k.backend_id);
        if !same {
            if self.dev.is_some() {
                self.drop_device(xs, gt, pool);
            }
            match found {
                Some(k) => {
                    if !self.adopt(xs, k) {
                        return;
                    }
                }
                None => return,
            }
        }
        let Some(dev) = self.dev.as_ref() else {
            return;
        };

        // The backend's state. As Linux's `xenbus_read_driver_state`, a
        // node we cannot read is Unknown: a vanished backend directory
        // answers ENOENT, or EACCES once its domain's directory is gone.
        let state = match xenbus::read_state(xs, &dev.backend) {
            Ok(s) => Some(s),
            Err(StoreError::Xs(XsError::Enoent | XsError::Eacces)) => Some(XenbusState::Unknown),
            Err(StoreError::BadValue { raw, .. }) => {
                match self.phase {
                    Phase::Waiting { failed: Some(_) } => {
                        self.phase = Phase::Waiting { failed: Some(true) };
                    }
                    _ => {
                        let v = Violation::BadValue {
                            key: "backend state",
                            raw,
                        };
                        let (devid, b) = (dev.devid, dev.backend_id);
                        self.report(devid, Some(b), &v);
                        self.teardown(gt, pool);
                        self.mark_failed();
                        // A state other than InitWait was seen.
                        self.phase = Phase::Waiting { failed: Some(true) };
                    }
                }
                self.set_state(xs, XenbusState::Closed);
                return;
            }
            Err(e) => return self.store_problem(&e),
        };
        let Some(s) = state else {
            return;
        };
        self.last_store_error = None;
        self.step(xs, gt, pool, s);
    }

    /// The transitions for backend state `s`.
    fn step(
        &mut self,
        xs: &mut Xenstore<P>,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        s: XenbusState,
    ) {
        use XenbusState::*;
        if matches!(self.phase, Phase::Connecting | Phase::Up) {
            let up = self.phase == Phase::Up;
            match s {
                Connected if !up => return self.go_up(gt, pool),
                Connected | Reconfiguring | Reconfigured => return,
                InitWait | Initialised if !up => return,
                Initialising | InitWait => {
                    // The backend restarted under us: its end is gone.
                    self.info(format_args!(
                        "backend restarted ({}), reconnecting",
                        s.name()
                    ));
                    self.teardown(gt, pool);
                    self.phase = Phase::Waiting { failed: None };
                }
                _ => {
                    self.info(format_args!("backend {}, disconnecting", s.name()));
                    self.teardown(gt, pool);
                    self.phase = Phase::Waiting { failed: None };
                    self.set_state(xs, Closed);
                }
            }
        }
        let Phase::Waiting { failed } = self.phase else {
            return;
        };
        let failed = failed.map(|seen| seen || s != InitWait);
        self.phase = Phase::Waiting { failed };
        let may_connect = match failed {
            None | Some(true) => true,
            Some(false) => self.now() >= self.retry_at,
        };
        if s == InitWait && may_connect {
            return self.connect(xs, gt, pool);
        }
        if failed.is_some() {
            return self.step_failed(xs, s);
        }
        match s {
            Connected | Closing => self.set_state(xs, Closed),
            Closed if self.our_state != Some(Initialising) => {
                // Say Closed (the backend may wait for it), then, unless
                // the toolstack is removing the device (`online = 0`),
                // invite a Linux netback back to InitWait.
                self.set_state(xs, Closed);
                if self.our_state == Some(Closed) && self.backend_online(xs) {
                    self.set_state(xs, Initialising);
                }
            }
            _ => {}
        }
    }

    /// Waiting after a violation, backend in state `s` (not connectable
    /// yet): we say Closed; once the backoff passed, a backend that went
    /// Closed (and is not being removed) is invited back with
    /// Initialising, as a Linux netback waits for that; a backend sitting
    /// in InitWait is tried again.
    fn step_failed(&mut self, xs: &mut Xenstore<P>, s: XenbusState) {
        use XenbusState::*;
        let now = self.now();
        if matches!(s, InitWait | Closed) {
            self.dirty = true;
            self.next_eval = self.retry_at;
        }
        if s == Closed && now >= self.retry_at && self.backend_online(xs) {
            self.set_state(xs, Closed);
            self.set_state(xs, Initialising);
            // The next invitation waits longer.
            self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF_NS, MAX_BACKOFF_NS);
            self.retry_at = now + self.backoff;
            self.next_eval = self.retry_at;
            return;
        }
        if s == Closed && self.our_state == Some(Initialising) {
            // Our invitation stands.
            return;
        }
        // After a violation (possibly found by `poll`, which cannot
        // write): tell the backend we are closed.
        self.set_state(xs, Closed);
    }

    fn info(&self, what: fmt::Arguments<'_>) {
        if let Some(d) = &self.dev {
            log::info!("vif {} (backend dom {}): {what}", d.devid, d.backend_id);
        }
    }

    /// A xenstore operation failed (dom0's problem, not the backend's):
    /// log it once until it changes, retry from `tick`.
    fn store_problem(&mut self, e: &StoreError) {
        if self.last_store_error.as_ref() != Some(e) {
            let devid = self.dev.as_ref().map_or(self.config.devid, |d| d.devid);
            log::warn!("vif {devid}: xenstore: {e}");
            self.last_store_error = Some(e.clone());
        }
        self.dirty = true;
        self.next_eval = self.now() + RETRY_NS;
    }

    /// Write our `state` if it differs from what we last wrote.
    fn set_state(&mut self, xs: &mut Xenstore<P>, s: XenbusState) {
        if self.our_state == Some(s) {
            return;
        }
        let Some(dev) = &self.dev else {
            return;
        };
        match xenbus::write_state(xs, &dev.dir, s) {
            Ok(()) => self.our_state = Some(s),
            Err(e) => self.store_problem(&e),
        }
    }

    /// The backend's `online` key is 1.
    fn backend_online(&mut self, xs: &mut Xenstore<P>) -> bool {
        let Some(dev) = &self.dev else {
            return false;
        };
        matches!(xs.read_opt(&format!("{}/online", dev.backend)), Ok(Some(v)) if parse_flag(&v) == Some(true))
    }

    /// Pick the device: the configured id if present, else the lowest id.
    /// `Ok(None)` if there is none, or its keys are not all written yet.
    fn find_device(&mut self, xs: &mut Xenstore<P>) -> Result<Option<DeviceKeys>, FindError> {
        let names = match xs.directory(VIF_DEVICES_DIR) {
            Ok(n) => n,
            Err(StoreError::Xs(XsError::Enoent)) => return Ok(None),
            Err(e) => return Err(FindError::Store(e)),
        };
        let ids = names.iter().filter_map(|n| parse_u32(n.as_bytes()));
        let devid = if ids.clone().any(|i| i == self.config.devid) {
            self.config.devid
        } else {
            match ids.min() {
                Some(i) => i,
                None => return Ok(None),
            }
        };
        let dir = device_dir(devid);
        let read = |xs: &mut Xenstore<P>, key: &str| {
            xs.read_opt(&format!("{dir}/{key}"))
                .map_err(FindError::Store)
        };
        let (Some(backend), Some(backend_id)) = (read(xs, "backend")?, read(xs, "backend-id")?)
        else {
            return Ok(None);
        };
        let Some(backend_id) = parse_domid(&backend_id) else {
            return Err(FindError::Bad {
                devid,
                backend_id: None,
                v: bad_value("backend-id", &backend_id),
            });
        };
        let backend = match String::from_utf8(backend) {
            Ok(b) if b.starts_with('/') && b.len() > 1 && b.len() < 3072 => b,
            Ok(b) => {
                return Err(FindError::Bad {
                    devid,
                    backend_id: Some(backend_id),
                    v: bad_value("backend", b.as_bytes()),
                })
            }
            Err(e) => {
                return Err(FindError::Bad {
                    devid,
                    backend_id: Some(backend_id),
                    v: bad_value("backend", e.as_bytes()),
                })
            }
        };
        Ok(Some(DeviceKeys {
            devid,
            backend,
            backend_id,
        }))
    }

    /// Take a device: read `mac` and `mtu`, watch the backend's state.
    fn adopt(&mut self, xs: &mut Xenstore<P>, k: DeviceKeys) -> bool {
        let dir = device_dir(k.devid);
        self.info_adopt(&k);
        self.dev = Some(Device {
            devid: k.devid,
            dir: dir.clone(),
            backend: k.backend.clone(),
            backend_id: k.backend_id,
            mac: None,
            mtu: DEFAULT_MTU,
        });
        self.our_state = None;
        self.last_problem = None;
        self.phase = Phase::Waiting { failed: None };
        let path = xenbus::state_path(&k.backend);
        if let Err(e) = xs.watch(&path, &self.be_token) {
            self.store_problem(&e);
            self.dev = None;
            self.phase = Phase::NoDevice;
            return false;
        }
        self.watched = Some(path);
        match read_parsed(xs, &dir, "mac", parse_mac) {
            Ok(Some(Ok(mac))) => {
                if let Some(d) = self.dev.as_mut() {
                    d.mac = Some(mac);
                }
            }
            // dom0's keys, not the backend's: warn, use the defaults.
            Ok(Some(Err(v))) => log::warn!("vif {} (backend dom {}): {v}", k.devid, k.backend_id),
            Ok(None) => {}
            Err(e) => self.store_problem(&e),
        }
        match read_parsed(xs, &dir, "mtu", parse_mtu) {
            Ok(Some(Ok(mtu))) => {
                if let Some(d) = self.dev.as_mut() {
                    d.mtu = mtu;
                }
            }
            Ok(Some(Err(v))) => log::warn!("vif {} (backend dom {}): {v}", k.devid, k.backend_id),
            Ok(None) => {}
            Err(e) => self.store_problem(&e),
        }
        true
    }

    fn info_adopt(&self, k: &DeviceKeys) {
        log::info!(
            "vif {} (backend dom {}): using device, backend {}",
            k.devid,
            k.backend_id,
            k.backend
        );
    }

    /// Let go of the current device: tear down, write Closed if our
    /// directory still exists, unwatch the backend.
    fn drop_device(&mut self, xs: &mut Xenstore<P>, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        self.teardown(gt, pool);
        if let Some(dev) = &self.dev {
            if matches!(xs.read_opt(&dev.dir), Ok(Some(_)))
                && self.our_state != Some(XenbusState::Closed)
            {
                let _ = xenbus::write_state(xs, &dev.dir, XenbusState::Closed);
            }
            log::info!(
                "vif {} (backend dom {}): device released",
                dev.devid,
                dev.backend_id
            );
        }
        if let Some(path) = self.watched.take() {
            let _ = xs.unwatch(&path, &self.be_token);
        }
        self.dev = None;
        self.our_state = None;
        self.phase = Phase::NoDevice;
    }

    /// Read the backend's features and set up and publish a connection.
    fn connect(&mut self, xs: &mut Xenstore<P>, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        let Some(dev) = self.dev.clone() else {
            return;
        };
        let theirs = match read_backend_features(xs, &dev.backend) {
            Ok(Ok(f)) => f,
            Ok(Err(v)) => {
                self.report(dev.devid, Some(dev.backend_id), &v);
                self.mark_failed();
                self.set_state(xs, XenbusState::Closed);
                return;
            }
            Err(e) => return self.store_problem(&e),
        };
        if !self.data.quarantine.has_room_for_connection() {
            self.data.retry_quarantine(gt, pool);
            if !self.data.quarantine.has_room_for_connection() {
                return self.problem("quarantine full: waiting for the backend to release pages");
            }
        }
        let ours = self.config.features.effective();
        let conn = match Conn::setup(&self.ev, gt, dev.backend_id, ours, theirs) {
            Ok(c) => c,
            Err(what) => return self.problem(what),
        };
        let (tx_ref, rx_ref) = conn.ring_refs();
        let port = conn.port;
        let flag = |b: bool| if b { "1" } else { "0" };
        let dir = &dev.dir;
        let r = xs.transaction(|tx| {
            tx.write(&format!("{dir}/tx-ring-ref"), format!("{tx_ref}"))?;
            tx.write(&format!("{dir}/rx-ring-ref"), format!("{rx_ref}"))?;
            tx.write(&format!("{dir}/event-channel"), format!("{port}"))?;
            tx.write(&format!("{dir}/request-rx-copy"), "1")?;
            tx.write(&format!("{dir}/feature-rx-notify"), "1")?;
            tx.write(&format!("{dir}/feature-sg"), flag(ours.sg))?;
            tx.write(&format!("{dir}/feature-gso-tcpv4"), flag(ours.gso_tcpv4))?;
            tx.write(&format!("{dir}/feature-gso-tcpv6"), flag(ours.gso_tcpv6))?;
            tx.write(
                &format!("{dir}/feature-ipv6-csum-offload"),
                flag(ours.ipv6_csum_offload),
            )?;
            tx.write(
                &format!("{dir}/feature-no-csum-offload"),
                flag(!ours.csum_offload),
            )
        });
        if let Err(e) = r {
            self.data.teardown(conn, &self.ev, gt, pool);
            return self.store_problem(&e);
        }
        self.data.rx_cfg = RxConfig {
            sg: ours.sg,
            gso_tcpv4: ours.gso_tcpv4,
            gso_tcpv6: ours.gso_tcpv6,
        };
        self.conn = Some(conn);
        self.phase = Phase::Connecting;
        self.last_problem = None;
        self.our_state = None;
        self.set_state(xs, XenbusState::Connected);
        if self.our_state != Some(XenbusState::Connected) {
            // Could not publish: undo.
            self.teardown(gt, pool);
            self.phase = Phase::Waiting { failed: None };
            return;
        }
        self.info(format_args!(
            "published tx-ring-ref {tx_ref} rx-ring-ref {rx_ref} event-channel {port}"
        ));
    }

    /// The backend connected: post receive buffers and go up.
    fn go_up(&mut self, gt: &mut GrantTable<P>, pool: &mut PagePool) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        self.phase = Phase::Up;
        self.up_since = Some(self.ev.platform().now_ns());
        self.data.stats.connects += 1;
        if self.data.refill(conn, gt, pool) && conn.rx.push_requests_and_check_notify() {
            let _ = self.ev.send(conn.port);
            self.data.stats.notifications_sent += 1;
        }
        let f = conn.both;
        self.info(format_args!(
            "connected (sg {}, gso v4 {} v6 {}, csum offload {} v6 {})",
            f.sg, f.gso_tcpv4, f.gso_tcpv6, f.csum_offload, f.ipv6_csum_offload
        ));
    }
}

/// Whether an event under `device/vif` can change which device we use or
/// its backend: the directory itself, a device directory, or its
/// `backend`/`backend-id` keys. Our own key writes fire this watch too and
/// are ignored here.
fn device_event_matters(path: &str) -> bool {
    let Some(rest) = path.strip_prefix(VIF_DEVICES_DIR) else {
        // Not the relative form we registered: look anyway.
        return true;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return true;
    };
    match rest.split_once('/') {
        None => true,
        Some((_, key)) => key == "backend" || key == "backend-id",
    }
}

/// A key's value parsed: `None` if absent, `Some(Err)` if it does not
/// parse.
type Parsed<T> = Result<Option<Result<T, Violation>>, StoreError>;

/// Read `<dir>/<key>` and parse it.
fn read_parsed<P: Platform + Clone, T>(
    xs: &mut Xenstore<P>,
    dir: &str,
    key: &'static str,
    parse: fn(&[u8]) -> Option<T>,
) -> Parsed<T> {
    Ok(xs
        .read_opt(&format!("{dir}/{key}"))?
        .map(|v| parse(&v).ok_or_else(|| bad_value(key, &v))))
}

fn bad_value(key: &'static str, raw: &[u8]) -> Violation {
    let mut s = String::from_utf8_lossy(raw).into_owned();
    if s.len() > 32 {
        let mut end = 32;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    Violation::BadValue { key, raw: s }
}

/// Read the backend's feature keys: `Ok(Err(..))` for a value that does
/// not parse or a backend without `feature-rx-copy`.
fn read_backend_features<P: Platform + Clone>(
    xs: &mut Xenstore<P>,
    backend: &str,
) -> Result<Result<Features, Violation>, StoreError> {
    let mut flag = |key: &'static str| -> Result<Result<bool, Violation>, StoreError> {
        Ok(match xs.read_opt(&format!("{backend}/{key}"))? {
            None => Ok(false),
            Some(v) => parse_flag(&v).ok_or_else(|| bad_value(key, &v)),
        })
    };
    macro_rules! get {
        ($key:literal) => {
            match flag($key)? {
                Ok(b) => b,
                Err(v) => return Ok(Err(v)),
            }
        };
    }
    if !get!("feature-rx-copy") {
        return Ok(Err(Violation::NoRxCopy));
    }
    Ok(Ok(Features {
        sg: get!("feature-sg"),
        gso_tcpv4: get!("feature-gso-tcpv4"),
        gso_tcpv6: get!("feature-gso-tcpv6"),
        csum_offload: true,
        ipv6_csum_offload: get!("feature-ipv6-csum-offload"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_events_that_matter() {
        for p in [
            "device/vif",
            "device/vif/0",
            "device/vif/12",
            "device/vif/0/backend",
            "device/vif/3/backend-id",
            "/local/domain/5/device/vif/0/state",
        ] {
            assert!(device_event_matters(p), "{p}");
        }
        for p in [
            "device/vif/0/state",
            "device/vif/0/tx-ring-ref",
            "device/vif/0/feature-sg",
            "device/vif/0/backend/x",
        ] {
            assert!(!device_event_matters(p), "{p}");
        }
    }

    #[test]
    fn bad_values_are_truncated() {
        let v = bad_value("mac", &[b'x'; 100]);
        assert_eq!(
            v,
            Violation::BadValue {
                key: "mac",
                raw: "x".repeat(32)
            }
        );
    }
}
