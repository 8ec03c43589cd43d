//! The driver object: the API the event loop calls, the per-vif table and
//! the teardown every failure path shares.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use xen::abi::grant_table::GnttabCopy;
use xen::abi::netif::NetifTxResponse;
use xen::abi::EvtchnPort;
use xen::evtchn::EventChannels;
use xen::frame::{Checksum, Frame, Gso};
use xen::memory::pool::{PagePool, PoolPage};
use xen::ring::{BackRing, NetifTx};
use xen::store::{WatchEvent, Xenstore};
use xen::xenbus::XenbusState;
use xen::Platform;

use crate::config::NetbackConfig;
use crate::error::NetbackError;
use crate::stats::Stats;
use crate::vif::{Removal, Vif, VifId, VifInfo};

/// The token of our watch on `backend/vif`.
pub(crate) const BACKEND_TOKEN: &str = "netback";
/// Prefix of the tokens of frontend-state watches (`netback:<F>:<n>`).
pub(crate) const FRONTEND_TOKEN_PREFIX: &str = "netback:";

/// Slots in a netif ring (both rings have 256).
pub(crate) const RING_SLOTS: usize = BackRing::<NetifTx>::SIZE as usize;

/// What happened to a vif, for the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetbackEvent {
    /// The rings are up: poll it when its port fires, send to it.
    Connected(VifId),
    /// The data path is gone (client closed, went away, was removed, or
    /// broke the protocol); its port is closed.
    Disconnected(VifId),
}

/// A frame of the tx batch being built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxPending {
    pub(crate) nslots: u8,
    pub(crate) csum: Checksum,
    pub(crate) gso: Option<Gso>,
}

/// Scratch of a tx poll, sized once.
pub(crate) struct TxScratch {
    pub(crate) ops: Vec<GnttabCopy>,
    pub(crate) pages: Vec<PoolPage>,
    pub(crate) pkts: Vec<TxPending>,
    pub(crate) rsps: Vec<NetifTxResponse>,
}

/// A packet of the rx batch being built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RxPkt {
    pub(crate) vif: usize,
    pub(crate) rsp_start: usize,
    pub(crate) nrsp: usize,
    pub(crate) op_start: usize,
    pub(crate) op_end: usize,
    pub(crate) bytes: usize,
}

/// Scratch of a flush, sized once.
pub(crate) struct RxBatch {
    pub(crate) ops: Vec<GnttabCopy>,
    pub(crate) pkts: Vec<RxPkt>,
    /// Frames whose bytes the batch copies (freed after the hypercall).
    pub(crate) done: Vec<Frame>,
    /// Pages holding segment headers (freed after the hypercall).
    pub(crate) scratch: Vec<PoolPage>,
    /// Next free header slot in the last scratch page.
    pub(crate) scratch_off: usize,
}

/// The vif backend (see the crate doc).
pub struct Netback<P: Platform + Clone> {
    pub(crate) ev: EventChannels<P>,
    pub(crate) cfg: NetbackConfig,
    pub(crate) vifs: Vec<Vif>,
    pub(crate) events: VecDeque<NetbackEvent>,
    pub(crate) now: u64,
    pub(crate) started: bool,
    pub(crate) txs: TxScratch,
    pub(crate) batch: RxBatch,
}

impl<P: Platform + Clone> Netback<P> {
    /// A backend using `ev` for its event channels. Nothing happens until
    /// [`Netback::start`].
    pub fn new(ev: EventChannels<P>, config: NetbackConfig) -> Self {
        let ops = config.copy_batch.max(64);
        Netback {
            ev,
            cfg: config,
            vifs: Vec::new(),
            events: VecDeque::with_capacity(16),
            now: 0,
            started: false,
            txs: TxScratch {
                ops: Vec::with_capacity(RING_SLOTS),
                pages: Vec::with_capacity(RING_SLOTS),
                pkts: Vec::with_capacity(RING_SLOTS),
                rsps: Vec::with_capacity(RING_SLOTS),
            },
            batch: RxBatch {
                ops: Vec::with_capacity(ops),
                pkts: Vec::with_capacity(ops),
                done: Vec::with_capacity(RING_SLOTS),
                scratch: Vec::with_capacity(64),
                scratch_off: 0,
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetbackConfig {
        &self.cfg
    }

    /// Watch `backend/vif` (relative to our home). The watch fires at once
    /// and covers devices that existed before we started.
    pub fn start(&mut self, xs: &mut Xenstore<P>) -> Result<(), NetbackError> {
        if !self.started {
            xs.watch(crate::VIF_BACKENDS_DIR, BACKEND_TOKEN)?;
            self.started = true;
        }
        Ok(())
    }

    /// Shut down (the backend domain is going away): every vif's data path
    /// torn down, its state written Closing then Closed so that its
    /// frontend disconnects now rather than when the toolstack notices,
    /// and every watch dropped. The backend directories stay: the
    /// toolstack owns them. [`Netback::start`] may be called again; the
    /// vifs are then found afresh.
    pub fn stop(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool) {
        for i in 0..self.vifs.len() {
            self.teardown(i, pool);
            if let Err(e) = self.close_xenbus(xs, i) {
                log::warn!("vif {}: writing Closed: {e}", self.vifs[i].info.id);
            }
            let v = &self.vifs[i];
            let _ = xs.unwatch(&v.fe_state, &v.token);
        }
        self.vifs.clear();
        if self.started {
            let _ = xs.unwatch(crate::VIF_BACKENDS_DIR, BACKEND_TOKEN);
            self.started = false;
        }
    }

    /// Handle a watch event; true if it was one of ours. Handshake steps
    /// run here (xenstore round trips to dom0).
    pub fn handle_watch(
        &mut self,
        xs: &mut Xenstore<P>,
        pool: &mut PagePool,
        ev: &WatchEvent,
    ) -> bool {
        let r = if ev.token == BACKEND_TOKEN {
            self.backend_event(xs, pool, &ev.path)
        } else if ev.token.starts_with(FRONTEND_TOKEN_PREFIX) {
            match self.vifs.iter().position(|v| v.token == ev.token) {
                Some(i) => self.frontend_changed(xs, pool, i),
                // A vif already removed; its late event is ours all the same.
                None => Ok(()),
            }
        } else {
            return false;
        };
        if let Err(e) = r {
            log::error!("netback: xenstore: {e}");
        }
        self.finish_closes(xs, pool);
        true
    }

    /// The next connection change, oldest first.
    pub fn next_event(&mut self) -> Option<NetbackEvent> {
        self.events.pop_front()
    }

    /// Facts about a vif we know (connected or not).
    pub fn vif(&self, id: VifId) -> Option<&VifInfo> {
        self.vifs.iter().find(|v| v.info.id == id).map(|v| &v.info)
    }

    /// Every vif we know.
    pub fn vifs(&self) -> impl Iterator<Item = &VifInfo> {
        self.vifs.iter().map(|v| &v.info)
    }

    /// The connected vif whose event channel is `port`.
    pub fn vif_for_port(&self, port: EvtchnPort) -> Option<VifId> {
        self.vifs
            .iter()
            .find(|v| v.conn.as_ref().is_some_and(|c| c.port == port))
            .map(|v| v.info.id)
    }

    /// Our event-channel port of a connected vif.
    pub fn port(&self, id: VifId) -> Option<EvtchnPort> {
        self.vif_ref(id)?.conn.as_ref().map(|c| c.port)
    }

    /// Append the ports of all connected vifs to `out`.
    pub fn ports(&self, out: &mut Vec<EvtchnPort>) {
        out.extend(
            self.vifs
                .iter()
                .filter_map(|v| v.conn.as_ref().map(|c| c.port)),
        );
    }

    /// True if the event loop should go round again for `id` without
    /// waiting for an event: tx requests were left in the ring
    /// ([`Netback::poll`] again), or [`Netback::send`] refused a frame
    /// because the queue was full and the last [`Netback::flush`] has
    /// since made room (send again, then flush). In the second case no
    /// event would come: the flush drained the queue into the client's
    /// buffers, so there was nothing left to ask the client for.
    pub fn needs_poll(&self, id: VifId) -> bool {
        self.vif_ref(id)
            .and_then(|v| v.conn.as_ref())
            .is_some_and(|c| c.tx_blocked || c.tx_more || c.rx_room)
    }

    /// Frames queued for `id`'s rx ring (0 if not connected).
    pub fn queued(&self, id: VifId) -> usize {
        self.vif_ref(id)
            .and_then(|v| v.conn.as_ref())
            .map_or(0, |c| c.queue.len() + usize::from(c.seg.is_some()))
    }

    /// Counters of a vif we know.
    pub fn stats(&self, id: VifId) -> Option<&Stats> {
        self.vif_ref(id).map(|v| &v.stats)
    }

    /// Queue `frame` for the client's rx ring (sent at the next
    /// [`Netback::flush`]). A full queue or a vif that is not connected
    /// hands the frame back.
    pub fn send(&mut self, id: VifId, _pool: &mut PagePool, frame: Frame) -> Result<(), Frame> {
        let Some(i) = self.index(id) else {
            return Err(frame);
        };
        let v = &mut self.vifs[i];
        let Some(c) = v.conn.as_mut() else {
            return Err(frame);
        };
        c.rx_room = false;
        c.queue.push(frame).inspect_err(|_| {
            c.rx_refused = true;
            v.stats.rx_queue_full += 1;
        })
    }

    /// Time-driven work: storm windows, rx drain timeouts, removals the
    /// toolstack asked for, xenstore state writes for vifs that failed in
    /// `poll`/`flush`. `now` is `Hypervisor::now_ns()`; call it at least a
    /// few times a second.
    pub fn tick(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool, now: u64) {
        self.now = now;
        let (window, drain) = (self.cfg.storm_window_ns, self.cfg.rx_drain_timeout_ns);
        for v in &mut self.vifs {
            let Some(c) = v.conn.as_mut() else { continue };
            if now.wrapping_sub(c.storm_start) >= window {
                c.storm_start = now;
                c.idle = 0;
            }
            if c.queue.is_empty() && c.seg.is_none() {
                c.stall_since = None;
            } else if core::mem::take(&mut c.rx_progress) {
                c.stall_since = Some(now);
            } else {
                match c.stall_since {
                    None => c.stall_since = Some(now),
                    Some(t) if now.saturating_sub(t) >= drain => {
                        let mut n = c.queue.len() as u64;
                        c.queue.clear(pool);
                        if let Some(s) = c.seg.take() {
                            s.frame.free(pool);
                            n += 1;
                        }
                        v.stats.rx_drops.drain_timeout += n;
                        c.stall_since = None;
                        log::info!(
                            "vif {}: dropped {n} frames queued without receive buffers",
                            v.info.id
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        self.finish_closes(xs, pool);
        let grace = self.cfg.close_grace_ns;
        let mut i = 0;
        while i < self.vifs.len() {
            match self.vifs[i].removal {
                Removal::Waiting(None) => {
                    self.vifs[i].removal = Removal::Waiting(Some(now.saturating_add(grace)));
                }
                Removal::Waiting(Some(t)) if now >= t => {
                    if let Err(e) = self.remove_vif(xs, pool, i) {
                        log::error!("netback: xenstore: {e}");
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    // ---- shared internals ----------------------------------------------

    pub(crate) fn index(&self, id: VifId) -> Option<usize> {
        self.vifs.iter().position(|v| v.info.id == id)
    }

    fn vif_ref(&self, id: VifId) -> Option<&Vif> {
        self.vifs.iter().find(|v| v.info.id == id)
    }

    /// Tear down vif `i`'s data path (if connected): close the port, unmap
    /// the rings, free queued frames, report it.
    pub(crate) fn teardown(&mut self, i: usize, pool: &mut PagePool) {
        let v = &mut self.vifs[i];
        let Some(mut c) = v.conn.take() else { return };
        if let Err(e) = self.ev.close(c.port) {
            log::error!("vif {}: closing port {}: {e}", v.info.id, c.port);
        }
        if let Some(m) = c.map.take() {
            if let Err(e) = m.unmap(self.ev.platform()) {
                log::error!("vif {}: unmapping rings: {e}", v.info.id);
            }
        }
        let mut n = c.queue.len() as u64;
        c.queue.clear(pool);
        if let Some(s) = c.seg.take() {
            s.frame.free(pool);
            n += 1;
        }
        v.stats.rx_drops.disconnected += n;
        v.info.negotiated = None;
        self.events.push_back(NetbackEvent::Disconnected(v.info.id));
    }

    /// The client broke the protocol in `poll`/`flush`: one warning, tear
    /// down the data path now, write Closing/Closed at the next
    /// xenstore-capable call.
    pub(crate) fn fail_datapath(&mut self, i: usize, pool: &mut PagePool, reason: &str) {
        self.fail_datapath_as(i, pool, reason, true);
    }

    /// [`Netback::fail_datapath`]; `hostile` false for a client that is
    /// merely gone (its domain died under us): logged as info.
    pub(crate) fn fail_datapath_as(
        &mut self,
        i: usize,
        pool: &mut PagePool,
        reason: &str,
        hostile: bool,
    ) {
        self.complain(i, hostile, reason);
        self.teardown(i, pool);
        self.vifs[i].close_pending = true;
    }

    /// Log a complaint about vif `i`: a warning for the first hostile one
    /// since it connected, info otherwise (see `Vif::warned`).
    pub(crate) fn complain(&mut self, i: usize, hostile: bool, reason: &str) {
        let v = &mut self.vifs[i];
        if hostile && !v.warned {
            v.warned = true;
            log::warn!("vif {}: {reason}", v.info.id);
        } else {
            log::info!("vif {}: {reason}", v.info.id);
        }
    }

    /// Write Closing then Closed for vifs whose data path failed.
    pub(crate) fn finish_closes(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool) {
        let mut i = 0;
        while i < self.vifs.len() {
            if core::mem::take(&mut self.vifs[i].close_pending) {
                let r = self.close_xenbus(xs, i).and_then(|()| {
                    if !self.vifs[i].online {
                        self.remove_vif(xs, pool, i).map(|()| true)
                    } else {
                        Ok(false)
                    }
                });
                match r {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => log::error!("netback: xenstore: {e}"),
                }
            }
            i += 1;
        }
    }

    /// Write `state` for vif `i` unless its directory is gone.
    pub(crate) fn set_state(
        &mut self,
        xs: &mut Xenstore<P>,
        i: usize,
        state: XenbusState,
    ) -> Result<(), xen::store::StoreError> {
        let path = xen::xenbus::state_path(&self.vifs[i].dir);
        let written = xs.transaction(|tx| {
            if tx.read_opt(&path)?.is_none() {
                return Ok(false);
            }
            tx.write(&path, state.as_value())?;
            Ok(true)
        })?;
        if written {
            self.vifs[i].info.state = state;
        }
        Ok(())
    }

    /// Closing then Closed (each only if not yet written).
    pub(crate) fn close_xenbus(
        &mut self,
        xs: &mut Xenstore<P>,
        i: usize,
    ) -> Result<(), xen::store::StoreError> {
        let s = self.vifs[i].info.state;
        if s == XenbusState::Closed {
            return Ok(());
        }
        if s != XenbusState::Closing {
            self.set_state(xs, i, XenbusState::Closing)?;
        }
        self.set_state(xs, i, XenbusState::Closed)?;
        // Even if the directory is gone, we are closed.
        self.vifs[i].info.state = XenbusState::Closed;
        Ok(())
    }

    /// Close vif `i`, remove its backend directory (and the frontend
    /// domain's directory above it if empty), forget it.
    pub(crate) fn remove_vif(
        &mut self,
        xs: &mut Xenstore<P>,
        pool: &mut PagePool,
        i: usize,
    ) -> Result<(), xen::store::StoreError> {
        self.teardown(i, pool);
        let r = self.close_xenbus(xs, i);
        let v = self.vifs.remove(i);
        let _ = xs.unwatch(&v.fe_state, &v.token);
        r?;
        xs.rm(&v.dir).or_else(ignore_enoent)?;
        // Best effort: the toolstack usually owns `backend/vif/<F>` (it
        // inherits our home's read-only permissions), and then it is the
        // toolstack's to clean up.
        let parent = parent_dir(&v.dir);
        let r = xs.transaction(|tx| match tx.directory(parent) {
            Ok(children) if children.is_empty() => tx.rm(parent),
            Ok(_) => Ok(()),
            Err(e) => ignore_enoent(e),
        });
        match r {
            Ok(()) | Err(xen::store::StoreError::Xs(_)) => {}
            Err(e) => return Err(e),
        }
        log::info!("vif {}: removed", v.info.id);
        Ok(())
    }

    /// Forget vif `i` whose directory vanished (no xenstore writes).
    pub(crate) fn forget_vif(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool, i: usize) {
        self.teardown(i, pool);
        let v = self.vifs.remove(i);
        let _ = xs.unwatch(&v.fe_state, &v.token);
        log::info!("vif {}: backend directory gone", v.info.id);
    }
}

pub(crate) fn ignore_enoent(e: xen::store::StoreError) -> Result<(), xen::store::StoreError> {
    match e {
        xen::store::StoreError::Xs(xen::store::wire::XsError::Enoent) => Ok(()),
        e => Err(e),
    }
}

fn parent_dir(p: &str) -> &str {
    p.rsplit_once('/').map_or(p, |(a, _)| a)
}

pub(crate) fn token_for(id: VifId) -> String {
    alloc::format!("{FRONTEND_TOKEN_PREFIX}{}:{}", id.domid, id.devid)
}
