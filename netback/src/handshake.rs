//! The xenbus side of each vif (Linux netback's state machine, section
//! 7.6 of the protocol notes): discovering devices under `backend/vif`,
//! publishing features and InitWait, connecting when the frontend is
//! ready, closing and removing.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use xen::abi::DomId;
use xen::frame::FrameQueue;
use xen::gnttab::map_grant_refs;
use xen::memory::pool::PagePool;
use xen::ring::{BackRing, NetifRx, NetifTx};
use xen::store::{StoreError, Xenstore};
use xen::xenbus::{self, XenbusState};
use xen::Platform;

use crate::keys::{parse_domid, parse_mac, parse_u32, read_frontend_keys, KeyError};
use crate::netback::{token_for, Netback, NetbackEvent, RING_SLOTS};
use crate::rx::Peer;
use crate::stats::Stats;
use crate::tx::TxOffered;
use crate::vif::{Conn, Negotiated, Removal, Vif, VifId, VifInfo};

type Res = Result<(), StoreError>;

/// Which part of `backend/vif` an event names.
enum Scope<'a> {
    All,
    Frontend(DomId),
    Device(VifId, Option<&'a str>),
    Other,
}

fn scope(rel: &str) -> Scope<'_> {
    let mut it = rel.split('/').filter(|s| !s.is_empty());
    let Some(f) = it.next() else {
        return Scope::All;
    };
    let Some(domid) = parse_domid(f.as_bytes()) else {
        return Scope::Other;
    };
    let Some(n) = it.next() else {
        return Scope::Frontend(domid);
    };
    let Some(devid) = parse_u32(n.as_bytes()) else {
        return Scope::Other;
    };
    Scope::Device(VifId { domid, devid }, it.next())
}

impl<P: Platform + Clone> Netback<P> {
    /// An event of our `backend/vif` watch.
    pub(crate) fn backend_event(
        &mut self,
        xs: &mut Xenstore<P>,
        pool: &mut PagePool,
        path: &str,
    ) -> Res {
        // Relative watch: relative paths. Tolerate an absolute one.
        let rel = match path.find(crate::VIF_BACKENDS_DIR) {
            Some(at) => &path[at + crate::VIF_BACKENDS_DIR.len()..],
            None => return Ok(()),
        };
        if !rel.is_empty() && !rel.starts_with('/') {
            return Ok(());
        }
        match scope(rel) {
            Scope::All => self.rescan_all(xs, pool),
            Scope::Frontend(f) => self.rescan_frontend(xs, pool, f),
            Scope::Device(id, key) => self.device_event(xs, pool, id, key),
            Scope::Other => Ok(()),
        }
    }

    fn rescan_all(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool) -> Res {
        let fronts = list(xs, crate::VIF_BACKENDS_DIR)?;
        let mut seen: Vec<DomId> = Vec::with_capacity(fronts.len());
        for f in &fronts {
            if let Some(d) = parse_domid(f.as_bytes()) {
                seen.push(d);
                self.rescan_frontend(xs, pool, d)?;
            }
        }
        let mut i = 0;
        while i < self.vifs.len() {
            if !seen.contains(&self.vifs[i].info.id.domid) {
                self.forget_vif(xs, pool, i);
                continue;
            }
            i += 1;
        }
        Ok(())
    }

    fn rescan_frontend(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool, f: DomId) -> Res {
        let devs = list(xs, &format!("{}/{f}", crate::VIF_BACKENDS_DIR))?;
        let mut seen: Vec<u32> = Vec::with_capacity(devs.len());
        for n in &devs {
            if let Some(devid) = parse_u32(n.as_bytes()) {
                seen.push(devid);
                self.device_event(xs, pool, VifId { domid: f, devid }, None)?;
            }
        }
        let mut i = 0;
        while i < self.vifs.len() {
            let id = self.vifs[i].info.id;
            if id.domid == f && !seen.contains(&id.devid) {
                self.forget_vif(xs, pool, i);
                continue;
            }
            i += 1;
        }
        Ok(())
    }

    fn device_event(
        &mut self,
        xs: &mut Xenstore<P>,
        pool: &mut PagePool,
        id: VifId,
        key: Option<&str>,
    ) -> Res {
        match self.index(id) {
            Some(i) => match key {
                None | Some("online") | Some("state") => self.check_toolstack(xs, pool, i),
                // Our own feature keys, hotplug-status, ...
                Some(_) => Ok(()),
            },
            None => self.new_device(xs, id),
        }
    }

    /// A device directory we do not know yet: read what the toolstack
    /// wrote, publish our features and InitWait in one transaction, watch
    /// the frontend's state.
    fn new_device(&mut self, xs: &mut Xenstore<P>, id: VifId) -> Res {
        let dir = crate::backend_dir(id.domid, id.devid);
        let key = |k: &str| format!("{dir}/{k}");
        let (Some(online), Some(state)) =
            (xs.read_opt(&key("online"))?, xs.read_opt(&key("state"))?)
        else {
            // Not (completely) there yet, or already gone.
            return Ok(());
        };
        if parse_u32(&online) == Some(0) {
            // Leftovers of a removal (the toolstack writing online/state
            // after we removed the directory): finish it.
            log::info!("vif {id}: offline device directory, removing it");
            return xs.rm(&dir).or_else(crate::netback::ignore_enoent);
        }
        let (Some(frontend), Some(fid), Some(mac)) = (
            xs.read_opt(&key("frontend"))?,
            xs.read_opt(&key("frontend-id"))?,
            xs.read_opt(&key("mac"))?,
        ) else {
            return Ok(());
        };
        let ip = xs.read_opt(&key("ip"))?.unwrap_or_default();
        let frontend = String::from_utf8(frontend).unwrap_or_default();
        let mut vif = Vif {
            info: VifInfo {
                id,
                mac: parse_mac(&mac),
                ip: String::from_utf8_lossy(&ip).into_owned(),
                frontend: frontend.clone(),
                state: xenbus::XenbusState::parse(&state).unwrap_or(XenbusState::Unknown),
                negotiated: None,
            },
            fe_state: xenbus::state_path(&frontend),
            dir: dir.clone(),
            token: token_for(id),
            online: true,
            conn: None,
            close_pending: false,
            removal: Removal::No,
            broken: false,
            warned: false,
            stats: Stats::default(),
        };
        let problem = if parse_domid(&fid) != Some(id.domid) {
            Some(format!(
                "frontend-id {:?} does not match the directory",
                String::from_utf8_lossy(&fid)
            ))
        } else if frontend.is_empty() || !frontend.starts_with('/') {
            Some("frontend path unusable".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            log::warn!("vif {id}: {p}");
            vif.broken = true;
            vif.warned = true;
            self.vifs.push(vif);
            return Ok(());
        }
        let f = self.cfg.features;
        let b = |on: bool| if on { "1" } else { "0" };
        let state_path = xenbus::state_path(&dir);
        let written = xs.transaction(|tx| {
            if tx.read_opt(&state_path)?.is_none() {
                return Ok(false);
            }
            for (k, v) in [
                ("feature-rx-copy", "1"),
                ("feature-rx-flip", "0"),
                ("feature-sg", b(f.sg)),
                ("feature-gso-tcpv4", b(f.gso_tcpv4)),
                ("feature-gso-tcpv6", b(f.gso_tcpv6)),
                ("feature-ipv6-csum-offload", b(f.ipv6_csum_offload)),
                // Windows PV drivers wait for this key; one queue only.
                ("multi-queue-max-queues", "1"),
            ] {
                tx.write(&key(k), v)?;
            }
            tx.write(&state_path, XenbusState::InitWait.as_value())?;
            Ok(true)
        })?;
        if !written {
            return Ok(());
        }
        vif.info.state = XenbusState::InitWait;
        xs.watch(&vif.fe_state, &vif.token)?;
        log::info!("vif {id}: InitWait (frontend {frontend})");
        self.vifs.push(vif);
        Ok(())
    }

    /// `online` or our `state` changed (or the directory went).
    fn check_toolstack(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool, i: usize) -> Res {
        let dir = self.vifs[i].dir.clone();
        let online = xs.read_opt(&format!("{dir}/online"))?;
        let state = xs.read_opt(&xenbus::state_path(&dir))?;
        if online.is_none() && state.is_none() {
            self.forget_vif(xs, pool, i);
            return Ok(());
        }
        if online.as_deref().and_then(parse_u32) == Some(0) {
            if self.vifs[i].broken {
                // Never served: just let the toolstack have it gone.
                self.vifs[i].online = false;
                return self.remove_vif(xs, pool, i);
            }
            if self.vifs[i].removal == Removal::No {
                log::info!("vif {}: toolstack removal", self.vifs[i].info.id);
                self.vifs[i].online = false;
                self.teardown(i, pool);
                self.close_xenbus(xs, i)?;
                let fe = self.frontend_state(xs, i)?;
                if matches!(fe, Some(XenbusState::Initialised | XenbusState::Connected)) {
                    // Let the frontend see Closed first (bounded by tick).
                    let deadline =
                        (self.now != 0).then(|| self.now.saturating_add(self.cfg.close_grace_ns));
                    self.vifs[i].removal = Removal::Waiting(deadline);
                } else {
                    self.remove_vif(xs, pool, i)?;
                }
            }
            return Ok(());
        }
        if self.vifs[i].broken {
            return Ok(());
        }
        let ours = self.vifs[i].info.state;
        if state.as_deref().and_then(XenbusState::parse) == Some(XenbusState::Closing)
            && ours != XenbusState::Closing
            && ours != XenbusState::Closed
        {
            // The toolstack asks us to close (online stays 1: the frontend
            // may reconnect later).
            log::info!("vif {}: toolstack closing", self.vifs[i].info.id);
            self.teardown(i, pool);
            self.vifs[i].info.state = XenbusState::Closing;
            self.close_xenbus(xs, i)?;
        }
        Ok(())
    }

    /// The frontend's state, `None` if unparsable (already reported).
    fn frontend_state(
        &mut self,
        xs: &mut Xenstore<P>,
        i: usize,
    ) -> Result<Option<XenbusState>, StoreError> {
        match xs.read_opt(&self.vifs[i].fe_state) {
            Ok(None) => Ok(Some(XenbusState::Unknown)),
            Ok(Some(v)) => Ok(XenbusState::parse(&v)),
            // Unreadable (permissions): as good as gone.
            Err(StoreError::Xs(_)) => Ok(Some(XenbusState::Unknown)),
            Err(e) => Err(e),
        }
    }

    /// An event of vif `i`'s frontend-state watch.
    pub(crate) fn frontend_changed(
        &mut self,
        xs: &mut Xenstore<P>,
        pool: &mut PagePool,
        i: usize,
    ) -> Res {
        if self.vifs[i].broken {
            return Ok(());
        }
        let Some(fe) = self.frontend_state(xs, i)? else {
            let raw = xs.read_opt(&self.vifs[i].fe_state)?.unwrap_or_default();
            let why = KeyError::bad("state", &raw);
            return self.fail_handshake(xs, pool, i, &why.to_string());
        };
        let online = self.vifs[i].online;
        let ours = self.vifs[i].info.state;
        let waiting_removal = self.vifs[i].removal != Removal::No;
        match fe {
            XenbusState::Unknown => {
                // The frontend (its domain) is gone.
                log::info!("vif {}: frontend gone", self.vifs[i].info.id);
                self.remove_vif(xs, pool, i)?;
            }
            XenbusState::Initialising | XenbusState::InitWait => {
                if !online || waiting_removal {
                    return self.remove_vif(xs, pool, i);
                }
                if ours != XenbusState::InitWait {
                    self.teardown(i, pool);
                    if ours == XenbusState::Closing {
                        self.set_state(xs, i, XenbusState::Closed)?;
                    }
                    log::info!("vif {}: frontend reinitialising", self.vifs[i].info.id);
                    self.set_state(xs, i, XenbusState::InitWait)?;
                }
            }
            XenbusState::Initialised | XenbusState::Connected => {
                if online && ours == XenbusState::InitWait && self.vifs[i].conn.is_none() {
                    self.connect(xs, pool, i)?;
                }
            }
            XenbusState::Closing => {
                self.teardown(i, pool);
                if waiting_removal {
                    return self.remove_vif(xs, pool, i);
                }
                if ours != XenbusState::Closing && ours != XenbusState::Closed {
                    self.set_state(xs, i, XenbusState::Closing)?;
                }
            }
            XenbusState::Closed => {
                self.teardown(i, pool);
                self.close_xenbus(xs, i)?;
                if !online || waiting_removal {
                    return self.remove_vif(xs, pool, i);
                }
            }
            XenbusState::Reconfiguring | XenbusState::Reconfigured => {}
        }
        Ok(())
    }

    /// The frontend published its rings: map them, bind the channel,
    /// go Connected.
    fn connect(&mut self, xs: &mut Xenstore<P>, pool: &mut PagePool, i: usize) -> Res {
        let id = self.vifs[i].info.id;
        let fe = self.vifs[i].info.frontend.clone();
        let keys = read_frontend_keys(|k: &str| match xs.read_opt(&format!("{fe}/{k}")) {
            Err(StoreError::Xs(e)) => Ok(Some(format!("<{e:?}>").into_bytes())),
            r => r,
        })?;
        let keys = match keys {
            Ok(k) => k,
            Err(e) => return self.fail_handshake(xs, pool, i, &e.to_string()),
        };
        // The toolstack's view of the client, re-read now that it is
        // certainly complete.
        let dir = self.vifs[i].dir.clone();
        if let Some(mac) = xs.read_opt(&format!("{dir}/mac"))? {
            self.vifs[i].info.mac = parse_mac(&mac);
        }
        if let Some(ip) = xs.read_opt(&format!("{dir}/ip"))? {
            self.vifs[i].info.ip = String::from_utf8_lossy(&ip).into_owned();
        }
        let p = self.ev.platform().clone();
        let map = match map_grant_refs(&p, id.domid, &[keys.tx_ring_ref, keys.rx_ring_ref], false) {
            Ok(m) => m,
            Err(e) => {
                let why = format!(
                    "cannot map ring grants {}/{}: {e}",
                    keys.tx_ring_ref, keys.rx_ring_ref
                );
                return self.fail_handshake(xs, pool, i, &why);
            }
        };
        let port = match self.ev.bind_interdomain(id.domid, keys.event_channel) {
            Ok(port) => port,
            Err(e) => {
                if let Err(e) = map.unmap(&p) {
                    log::error!("vif {id}: unmapping rings: {e}");
                }
                let why = format!("cannot bind event channel {}: {e}", keys.event_channel);
                return self.fail_handshake(xs, pool, i, &why);
            }
        };
        let f = self.cfg.features;
        let neg = Negotiated {
            peer: Peer {
                sg: f.sg && keys.sg,
                gso_tcpv4: f.gso_tcpv4 && keys.gso_tcpv4,
                gso_tcpv6: f.gso_tcpv6 && keys.gso_tcpv6,
                partial_v4: f.csum_offload && !keys.no_csum_offload,
                partial_v6: f.csum_offload
                    && f.ipv6_csum_offload
                    && keys.ipv6_csum_offload
                    && !keys.no_csum_offload,
            },
            offered: TxOffered {
                gso_tcpv4: f.gso_tcpv4,
                gso_tcpv6: f.gso_tcpv6,
            },
            rx_notify: keys.rx_notify,
        };
        let mem = map.mem();
        let conn = Conn {
            tx: BackRing::<NetifTx>::attach(mem.page(0)),
            rx: BackRing::<NetifRx>::attach(mem.page(1)),
            map: Some(map),
            port,
            neg,
            queue: FrameQueue::with_capacity(self.cfg.rx_queue),
            rsps: Vec::with_capacity(RING_SLOTS),
            unpublished: false,
            seg: None,
            tx_blocked: false,
            // Look at the rings once: requests may be there already.
            tx_more: true,
            rx_seen: 0,
            rx_refused: false,
            rx_room: false,
            idle: 0,
            storm_start: self.now,
            stall_since: None,
            rx_progress: false,
            failed: None,
        };
        self.vifs[i].conn = Some(conn);
        self.vifs[i].info.negotiated = Some(neg);
        xs.write(&format!("{dir}/hotplug-status"), "connected")?;
        self.set_state(xs, i, XenbusState::Connected)?;
        log::info!(
            "vif {id}: connected (sg {} gso {}/{} partial csum {}/{} rx-notify {})",
            neg.peer.sg as u8,
            neg.peer.gso_tcpv4 as u8,
            neg.peer.gso_tcpv6 as u8,
            neg.peer.partial_v4 as u8,
            neg.peer.partial_v6 as u8,
            neg.rx_notify as u8
        );
        self.vifs[i].warned = false;
        self.events.push_back(NetbackEvent::Connected(id));
        Ok(())
    }

    /// The frontend's xenstore side is broken: one warning, close.
    fn fail_handshake(
        &mut self,
        xs: &mut Xenstore<P>,
        pool: &mut PagePool,
        i: usize,
        why: &str,
    ) -> Res {
        self.complain(i, true, why);
        self.teardown(i, pool);
        self.close_xenbus(xs, i)?;
        if !self.vifs[i].online {
            self.remove_vif(xs, pool, i)?;
        }
        Ok(())
    }
}

/// The children of `path`, none if it does not exist.
fn list<P: Platform + Clone>(xs: &mut Xenstore<P>, path: &str) -> Result<Vec<String>, StoreError> {
    match xs.directory(path) {
        Ok(v) => Ok(v),
        Err(StoreError::Xs(xen::store::wire::XsError::Enoent)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
