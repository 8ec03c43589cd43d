//! A minimal qrexec agent: enough for dom0 to see the firewall as a
//! running qube (`qubes.WaitForSession`), to sync its clock
//! (`qubes.SetDateTime`), and to get a clean refusal for anything else.
//!
//! - [`wire`]: checked views and encoders of the messages;
//! - [`agent`]: the sans-IO state machines ([`Control`], [`Session`]);
//! - [`Qrexec`] (here): the vchans that carry them, serviced by the
//!   firewall's event loop.
//!
//! As the Linux agent, we serve the control vchan on port 512 to dom0
//! (rings 4096/4096), where `qrexec-daemon` connects; our HELLO waits in
//! the ring until it does. For each exec request we connect, as the
//! client, to the data vchan the request names (`connect_domain`,
//! `connect_port`: dom0's `qrexec-client` serves it, possibly a moment
//! after the request arrives, so we watch for it with back-off up to
//! [`QrexecConfig::connect_timeout_ns`]), run the [`Session`], close the
//! data vchan, and send `MSG_CONNECTION_TERMINATED` on the control one.
//!
//! If the control stream breaks or the daemon goes away, the server is
//! closed and a new one published (what restarting the Linux agent does).
//!
//! Cost: nothing per packet. The event loop calls [`Qrexec::service`]
//! once per turn; it returns at once unless one of its ports fired or one
//! of its timers is due.

pub mod agent;
pub mod wire;

use alloc::string::String;
use alloc::vec::Vec;

use vchan::rendezvous::{self, RendezvousPath};
use vchan::{Closed, PeerState, Vchan, VchanError};
use xen::abi::{DomId, EvtchnPort};
use xen::evtchn::EventChannels;
use xen::gnttab::GrantTable;
use xen::store::Xenstore;
use xen::Platform;

pub use agent::{
    AgentError, Command, Control, ControlEvent, ExecKind, ExecRequest, Session, SessionEvent,
};

/// How the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QrexecConfig {
    /// Serve qrexec at all.
    pub enabled: bool,
    /// The domain of `qrexec-daemon` (dom0).
    pub daemon: DomId,
    /// How long to wait for a data vchan to appear.
    pub connect_timeout_ns: u64,
    /// Service calls handled at once; more are answered by freeing their
    /// port at once (never happens with dom0's own tools).
    pub max_sessions: usize,
}

impl Default for QrexecConfig {
    fn default() -> Self {
        QrexecConfig {
            enabled: true,
            daemon: 0,
            connect_timeout_ns: 10_000_000_000,
            max_sessions: 8,
        }
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QrexecStats {
    /// Control servers published.
    pub servers: u64,
    /// Handshakes with the daemon.
    pub handshakes: u64,
    /// Exec requests received.
    pub requests: u64,
    /// Sessions answered with exit code 0.
    pub served: u64,
    /// Sessions answered with a refusal (non-zero exit code).
    pub refused: u64,
    /// Sessions that ended without an answer (no data vchan, broken peer).
    pub failed: u64,
    /// Control messages skipped.
    pub rejected: u64,
    /// Control connections broken (and served again).
    pub resets: u64,
}

/// Retry of a failed control server, and the back-off of a data vchan
/// that is not there yet.
const SERVER_RETRY_NS: u64 = 1_000_000_000;
const CONNECT_FIRST_NS: u64 = 1_000_000;
const CONNECT_MAX_NS: u64 = 100_000_000;
/// Bytes read from a vchan per call.
const READ_CHUNK: usize = 4096;

struct Ctrl<P: Platform + Clone> {
    chan: Vchan<P>,
    proto: Control,
    /// The daemon showed up (and the rendezvous keys were removed).
    connected: bool,
}

struct DataConn<P: Platform + Clone> {
    domain: DomId,
    port: u32,
    chan: Option<Vchan<P>>,
    session: Session,
    give_up_at: u64,
    next_try: u64,
    backoff: u64,
}

/// The agent's vchans (see the module doc).
pub struct Qrexec<P: Platform + Clone> {
    cfg: QrexecConfig,
    me: Option<DomId>,
    ctrl: Option<Ctrl<P>>,
    retry_at: u64,
    /// Closed control servers whose pages the daemon may still map.
    retired: Vec<Closed>,
    sessions: Vec<DataConn<P>>,
    scratch: Vec<u8>,
    events: Vec<ControlEvent>,
    stats: QrexecStats,
    time: Option<String>,
}

impl<P: Platform + Clone> Qrexec<P> {
    /// An agent; nothing happens before [`Qrexec::start`].
    pub fn new(cfg: QrexecConfig) -> Self {
        Qrexec {
            cfg,
            me: None,
            ctrl: None,
            retry_at: u64::MAX,
            retired: Vec::new(),
            sessions: Vec::new(),
            scratch: alloc::vec![0; READ_CHUNK],
            events: Vec::new(),
            stats: QrexecStats::default(),
            time: None,
        }
    }

    /// Publish the control server (our HELLO goes into its ring at once).
    /// A failure is logged and retried from [`Qrexec::service`].
    pub fn start(
        &mut self,
        now: u64,
        ev: &EventChannels<P>,
        gt: &mut GrantTable<P>,
        xs: &mut Xenstore<P>,
    ) {
        if !self.cfg.enabled {
            return;
        }
        self.retry_at = now;
        self.serve(now, ev, gt, xs);
    }

    /// Counters.
    pub fn stats(&self) -> QrexecStats {
        self.stats
    }

    /// Whether the daemon has done its handshake on the current server.
    pub fn handshaken(&self) -> bool {
        self.ctrl
            .as_ref()
            .is_some_and(|c| c.proto.version().is_some())
    }

    /// The time dom0 last sent with `qubes.SetDateTime`, as sent.
    pub fn last_time(&self) -> Option<&str> {
        self.time.as_deref()
    }

    /// Service calls in progress.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Append our event-channel ports (for the loop's sleep).
    pub fn ports(&self, out: &mut Vec<EvtchnPort>) {
        if let Some(c) = &self.ctrl {
            out.push(c.chan.port());
        }
        out.extend(
            self.sessions
                .iter()
                .filter_map(|s| s.chan.as_ref().map(|c| c.port())),
        );
    }

    /// The earliest time [`Qrexec::service`] has work without an event.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut d = (self.cfg.enabled && self.ctrl.is_none()).then_some(self.retry_at);
        for s in self.sessions.iter().filter(|s| s.chan.is_none()) {
            d = Some(d.map_or(s.next_try, |d: u64| d.min(s.next_try)));
        }
        d
    }

    /// One turn: a new server if one is due; the control vchan and each
    /// data vchan whose port fired; data vchans being waited for. Returns
    /// at once when none of that applies.
    pub fn service(
        &mut self,
        now: u64,
        ev: &EventChannels<P>,
        gt: &mut GrantTable<P>,
        xs: &mut Xenstore<P>,
    ) {
        if !self.cfg.enabled {
            return;
        }
        if self.ctrl.is_none() {
            if now < self.retry_at {
                return;
            }
            self.serve(now, ev, gt, xs);
        }
        if let Some(c) = self.ctrl.as_ref() {
            if ev.clear_pending(c.chan.port()) {
                self.pump_control(now, gt, xs);
            }
        }
        let mut i = 0;
        while i < self.sessions.len() {
            let fired = match &self.sessions[i].chan {
                Some(c) => ev.clear_pending(c.port()),
                None if now >= self.sessions[i].next_try => {
                    self.try_connect(i, now, ev, xs);
                    true
                }
                None => false,
            };
            if fired && self.pump_session(i) {
                let s = self.sessions.swap_remove(i);
                self.end_session(s);
                continue;
            }
            i += 1;
        }
        self.flush_control(now, gt, xs);
        if !self.retired.is_empty() {
            self.retired
                .retain_mut(|c| !matches!(c.release(gt, xs), Ok(true)));
        }
    }

    /// Close everything (at shutdown).
    pub fn shutdown(&mut self, gt: &mut GrantTable<P>, xs: &mut Xenstore<P>) {
        for s in self.sessions.drain(..) {
            if let Some(c) = s.chan {
                let _ = c.close();
            }
        }
        if let Some(c) = self.ctrl.take() {
            if let Ok(mut closed) = c.chan.close() {
                let _ = closed.release(gt, xs);
                self.retired.push(closed);
            }
        }
        self.retry_at = u64::MAX;
        self.cfg.enabled = false;
    }

    // ---- control ------------------------------------------------------------

    fn serve(
        &mut self,
        now: u64,
        ev: &EventChannels<P>,
        gt: &mut GrantTable<P>,
        xs: &mut Xenstore<P>,
    ) {
        let size = wire::CONTROL_RING_SIZE;
        match Vchan::server_qubes(ev, gt, xs, self.cfg.daemon, wire::CONTROL_PORT, size, size) {
            Ok(chan) => {
                self.stats.servers += 1;
                let mut c = Ctrl {
                    chan,
                    proto: Control::new(),
                    connected: false,
                };
                // Our HELLO waits in the ring for the daemon (a failure
                // shows again at the next write).
                let _ = write_out(&mut c.chan, &mut c.proto);
                self.ctrl = Some(c);
                self.retry_at = u64::MAX;
            }
            Err(e) => {
                log::warn!(
                    "qrexec: cannot serve port {} to dom{}: {e}; retrying",
                    wire::CONTROL_PORT,
                    self.cfg.daemon
                );
                self.retry_at = now.saturating_add(SERVER_RETRY_NS);
            }
        }
    }

    fn pump_control(&mut self, now: u64, gt: &mut GrantTable<P>, xs: &mut Xenstore<P>) {
        let Some(c) = self.ctrl.as_mut() else { return };
        let mut broken: Option<String> = None;
        loop {
            match c.chan.read(&mut self.scratch) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = c.proto.receive(&self.scratch[..n], &mut self.events) {
                        broken = Some(alloc::format!("{e}"));
                        break;
                    }
                }
                Err(VchanError::PeerClosed) => {
                    broken = Some("the daemon closed the connection".into());
                    break;
                }
                Err(e) => {
                    broken = Some(alloc::format!("{e}"));
                    break;
                }
            }
        }
        if !c.connected && c.chan.peer_state() != PeerState::Waiting {
            c.connected = true;
            if let Err(e) = c.chan.remove_rendezvous(xs) {
                log::debug!("qrexec: removing the rendezvous keys: {e}");
            }
        }
        let events = core::mem::take(&mut self.events);
        for e in &events {
            self.control_event(now, e);
        }
        self.events = events;
        self.events.clear();
        if broken.is_none() && !self.ctrl.as_ref().is_some_and(|c| c.chan.is_open()) {
            broken = Some("the daemon closed the connection".into());
        }
        if let Some(why) = broken {
            self.reset(now, &why, gt, xs);
        }
    }

    fn control_event(&mut self, now: u64, e: &ControlEvent) {
        match e {
            ControlEvent::Ready { version } => {
                self.stats.handshakes += 1;
                log::info!(
                    "qrexec: dom{} connected (protocol version {version})",
                    self.cfg.daemon
                );
            }
            ControlEvent::Exec(r) => {
                self.stats.requests += 1;
                if self.sessions.len() >= self.cfg.max_sessions {
                    log::warn!(
                        "qrexec: {} calls in progress; dropping {:?}",
                        self.sessions.len(),
                        r.cmdline
                    );
                    self.stats.failed += 1;
                    if let Some(c) = self.ctrl.as_mut() {
                        c.proto
                            .connection_terminated(r.connect_domain, r.connect_port);
                    }
                    return;
                }
                self.sessions.push(DataConn {
                    domain: r.connect_domain,
                    port: r.connect_port,
                    chan: None,
                    session: Session::new(r.kind, &r.cmdline),
                    give_up_at: now.saturating_add(self.cfg.connect_timeout_ns),
                    next_try: now,
                    backoff: CONNECT_FIRST_NS,
                });
            }
            ControlEvent::Refused { ident } => {
                log::info!("qrexec: dom0 refused service call {ident:?} (we make none)")
            }
            ControlEvent::UnexpectedConnect => {
                self.stats.rejected += 1;
                log::warn!("qrexec: MSG_SERVICE_CONNECT for a call we never made; ignored")
            }
            ControlEvent::Rejected(e) => {
                self.stats.rejected += 1;
                log::warn!("qrexec: from dom0: {e}; ignored");
            }
        }
    }

    /// Write what the control connection has queued.
    fn flush_control(&mut self, now: u64, gt: &mut GrantTable<P>, xs: &mut Xenstore<P>) {
        let Some(c) = self.ctrl.as_mut() else { return };
        if c.proto.output().is_empty() {
            return;
        }
        if let Err(e) = write_out(&mut c.chan, &mut c.proto) {
            let why = alloc::format!("{e}");
            self.reset(now, &why, gt, xs);
        }
    }

    /// The control connection is broken: close it and serve a new one.
    fn reset(&mut self, now: u64, why: &str, gt: &mut GrantTable<P>, xs: &mut Xenstore<P>) {
        let Some(c) = self.ctrl.take() else { return };
        self.stats.resets += 1;
        if c.proto.version().is_some() || c.connected {
            log::info!("qrexec: control connection ended ({why}); serving a new one");
        } else {
            log::warn!("qrexec: control connection failed ({why}); serving a new one");
        }
        match c.chan.close() {
            Ok(mut closed) => {
                if !matches!(closed.release(gt, xs), Ok(true)) {
                    self.retired.push(closed);
                }
            }
            Err(e) => log::warn!("qrexec: closing the control vchan: {e}"),
        }
        // Calls in progress go on: their data vchans do not depend on it,
        // but their MSG_CONNECTION_TERMINATED would go to a daemon that is
        // gone.
        self.retry_at = now;
    }

    // ---- data connections ---------------------------------------------------

    fn try_connect(&mut self, i: usize, now: u64, ev: &EventChannels<P>, xs: &mut Xenstore<P>) {
        let me = match self.me {
            Some(d) => d,
            None => match xs.domid() {
                Ok(d) => {
                    self.me = Some(d);
                    d
                }
                Err(e) => {
                    log::warn!("qrexec: reading our domid: {e}; call dropped");
                    self.sessions[i].next_try = u64::MAX;
                    return;
                }
            },
        };
        let s = &mut self.sessions[i];
        let dir = RendezvousPath {
            server: s.domain,
            client: me,
            port: s.port,
        }
        .absolute();
        let found = match rendezvous::read_keys(xs, &dir) {
            Ok(Some(_)) => Vchan::client(ev, xs, s.domain, &dir, Some(now)).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(chan)) => {
                let mut chan = chan;
                if let Err(e) = write_out(&mut chan, &mut s.session) {
                    log::warn!("qrexec: data vchan {dir}: {e}");
                }
                s.chan = Some(chan);
            }
            Ok(None) | Err(VchanError::Timeout) if now < s.give_up_at => {
                s.next_try = now.saturating_add(s.backoff);
                s.backoff = (s.backoff * 2).min(CONNECT_MAX_NS);
            }
            Ok(None) | Err(VchanError::Timeout) => {
                log::warn!(
                    "qrexec: no data vchan at {dir} for {}; call dropped",
                    s.session.command()
                );
                s.next_try = u64::MAX;
            }
            Err(e) => {
                log::warn!("qrexec: connecting to {dir}: {e}; call dropped");
                s.next_try = u64::MAX;
            }
        }
    }

    /// Move bytes of session `i`; true when it is over.
    fn pump_session(&mut self, i: usize) -> bool {
        let s = &mut self.sessions[i];
        let mut time = None;
        let Some(chan) = s.chan.as_mut() else {
            // Not connected: over once we gave up.
            return s.next_try == u64::MAX;
        };
        loop {
            match chan.read(&mut self.scratch) {
                Ok(0) => break,
                Ok(n) => match s.session.receive(&self.scratch[..n]) {
                    Ok(Some(SessionEvent::DateTime(t))) => time = Some(t),
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!(
                            "qrexec: {} from dom{}: {e}; call dropped",
                            s.session.command(),
                            s.domain
                        );
                        return true;
                    }
                },
                Err(VchanError::PeerClosed) => {
                    if let Some(SessionEvent::DateTime(t)) = s.session.peer_closed() {
                        time = Some(t);
                    }
                    break;
                }
                Err(e) => {
                    log::warn!("qrexec: data vchan to dom{}: {e}; call dropped", s.domain);
                    return true;
                }
            }
        }
        if let Some(t) = time {
            // Logged only: the firewall keeps no wall clock (its flows and
            // timers run on Xen's monotonic time).
            log::info!("qrexec: dom{} says the time is {t}", s.domain);
            self.time = Some(t);
        }
        let s = &mut self.sessions[i];
        let Some(chan) = s.chan.as_mut() else {
            return true;
        };
        match write_out(chan, &mut s.session) {
            Ok(()) => {}
            Err(VchanError::PeerClosed) => return true,
            Err(e) => {
                log::warn!("qrexec: data vchan to dom{}: {e}; call dropped", s.domain);
                return true;
            }
        }
        s.session.is_done() && s.session.output().is_empty() || !chan.is_open()
    }

    fn end_session(&mut self, s: DataConn<P>) {
        match s.session.exit_code() {
            Some(0) => {
                self.stats.served += 1;
                log::info!("qrexec: {} from dom{}: done", s.session.command(), s.domain);
            }
            Some(code) => {
                self.stats.refused += 1;
                log::info!(
                    "qrexec: {} from dom{}: refused (exit code {code})",
                    s.session.command(),
                    s.domain
                );
            }
            None => self.stats.failed += 1,
        }
        if let Some(c) = s.chan {
            if let Err(e) = c.close() {
                log::debug!("qrexec: closing a data vchan: {e}");
            }
        }
        if let Some(c) = self.ctrl.as_mut() {
            c.proto.connection_terminated(s.domain, s.port);
        }
    }
}

/// A protocol state machine with bytes waiting to go out: the control
/// connection or one service session.
trait Outbox {
    fn output(&self) -> &[u8];
    fn consume_output(&mut self, n: usize);
}

impl Outbox for Control {
    fn output(&self) -> &[u8] {
        Control::output(self)
    }
    fn consume_output(&mut self, n: usize) {
        Control::consume_output(self, n)
    }
}

impl Outbox for Session {
    fn output(&self) -> &[u8] {
        Session::output(self)
    }
    fn consume_output(&mut self, n: usize) {
        Session::consume_output(self, n)
    }
}

/// Write as much of `proto`'s output as fits in the vchan.
fn write_out<P: Platform + Clone>(
    chan: &mut Vchan<P>,
    proto: &mut impl Outbox,
) -> Result<(), VchanError> {
    while !proto.output().is_empty() {
        let n = chan.write(proto.output())?;
        if n == 0 {
            break;
        }
        proto.consume_output(n);
    }
    Ok(())
}
