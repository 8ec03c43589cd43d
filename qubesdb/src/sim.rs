//! dom0's QubesDB service in the simulated Xen: one [`Daemon`] per VM,
//! each served to its VM as the vchan server on port 111, from domain 0,
//! at `/local/domain/0/data/vchan/<vm>/111` — where the firewall's real
//! code ([`crate::link::Connection`]) looks for it.
//!
//! The vchan server is built from the `vchan` crate's sans-IO
//! [`Endpoint`] with libxenvchan's layout (orders 12/12 as
//! `libvchan_server_init(xid, 111, 4096, 4096)`: one granted page per ring,
//! control page with `cli_live = 2`), because the simulator's dom0 has no
//! xenstore ring of its own for [`vchan::Vchan::server`]: the keys are
//! published straight into xenstored as dom0's tools do, with libxenvchan's
//! permissions (`n0`, `r<vm>`).
//!
//! A service thread (dom0 code) moves bytes between each daemon and its
//! vchan ([`crate::stream::pump`]) every [`SERVICE_TICK`] and whenever the
//! toolstack side ([`Dom0QubesDb::with_db`]) changed a daemon. It notifies
//! the VM exactly as libxenvchan does (the endpoint says when), but does
//! not sleep on the VM's events: the simulator's dom0 already has an
//! `EventChannels` (SimHost's service thread), and mapping shared info a
//! second time would move the page under it, so this service uses the
//! event-channel hypercalls directly and cannot clear pending bits. The VM
//! side is fully event driven.
//!
//! When the VM breaks the protocol, the connection is closed (as dom0's
//! daemon exits); when the VM closes the vchan, the server end is torn
//! down. [`Dom0QubesDb::serve`] then starts a new server, as restarting
//! `qubesdb-daemon` would; the daemon's database survives.
//!
//! One `Dom0QubesDb` per [`SimHost`]: it owns dom0's grant table.

use std::collections::BTreeMap;
use std::io;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{format, vec};

use vchan::layout::RingOrders;
use vchan::rendezvous::key_perms;
use vchan::{Endpoint, PeerState, RendezvousPath, RingId, Role, VchanError};
use xen::abi::domid::DOMID_SELF;
use xen::abi::event_channel::{
    EvtchnAllocUnbound, EvtchnClose, EvtchnSend, EvtchnStatus, EvtchnUnmask, EVTCHNSTAT_INTERDOMAIN,
};
use xen::abi::{DomId, EvtchnPort, GrantRef, PAGE_SIZE};
use xen::gnttab::GrantTable;
use xen::hypervisor::{EvtchnOp, HvResult};
use xen::memory::Gfn;
use xen::sim::xenstored::Perm as XsPerm;
use xen::sim::{SimDomain, SimHost};
use xen::{GuestMemory, Hypervisor};

use crate::daemon::Daemon;
use crate::stream::{pump, ByteStream, PumpError};
use crate::{RING_SIZE, VCHAN_PORT};

/// Grant table frames dom0 sets up (512 entries each).
const GNTTAB_FRAMES: u32 = 4;

/// How often the service thread looks at every vchan when not kicked.
pub const SERVICE_TICK: Duration = Duration::from_millis(1);

/// dom0's event-channel operations, as hypercalls (see the module doc).
fn ev_alloc_unbound(d0: &SimDomain, remote: DomId) -> HvResult<EvtchnPort> {
    let mut a = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    d0.event_channel_op(EvtchnOp::AllocUnbound(&mut a))?;
    d0.event_channel_op(EvtchnOp::Unmask(&EvtchnUnmask { port: a.port }))?;
    Ok(a.port)
}

fn ev_send(d0: &SimDomain, port: EvtchnPort) -> HvResult {
    d0.event_channel_op(EvtchnOp::Send(&EvtchnSend { port }))
}

fn ev_close(d0: &SimDomain, port: EvtchnPort) -> HvResult {
    d0.event_channel_op(EvtchnOp::Close(&EvtchnClose { port }))
}

/// Whether `port` is still connected to its peer (a VM that died never
/// clears its liveness byte).
fn ev_connected(d0: &SimDomain, port: EvtchnPort) -> bool {
    let mut s = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    d0.event_channel_op(EvtchnOp::Status(&mut s)).is_ok() && s.status == EVTCHNSTAT_INTERDOMAIN
}

/// One served vchan: our end and what we granted for it.
struct ServerChan {
    ep: Endpoint,
    port: EvtchnPort,
    /// (first gfn, pages) of the control page and each ring.
    areas: Vec<(Gfn, usize)>,
    grants: Vec<GrantRef>,
    /// The VM connected (`cli_live` left 2) at some point.
    connected: bool,
}

/// [`ServerChan`] as a [`ByteStream`]: notify the VM when it asked.
struct ChanStream<'a> {
    chan: &'a mut ServerChan,
    dom0: &'a SimDomain,
}

impl ByteStream for ChanStream<'_> {
    type Error = VchanError;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        let p = self.chan.ep.read(buf)?;
        if p.notify {
            ev_send(self.dom0, self.chan.port)?;
        }
        Ok(p.bytes)
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, VchanError> {
        let p = self.chan.ep.write(buf)?;
        if p.notify {
            ev_send(self.dom0, self.chan.port)?;
        }
        Ok(p.bytes)
    }
}

struct Vm {
    daemon: Daemon,
    chan: Option<ServerChan>,
    /// Why the last connection ended, if it did.
    ended: Option<String>,
    /// Servers started for this VM.
    connections: u32,
}

struct State {
    gnttab: GrantTable<SimDomain>,
    /// The toolstack changed something: service at once.
    kicked: bool,
    vms: BTreeMap<DomId, Vm>,
    /// Channels torn down whose pages the VM may still map: retried.
    retired: Vec<ServerChan>,
}

struct Shared {
    dom0: SimDomain,
    stop: AtomicBool,
    state: Mutex<State>,
    /// Signalled by [`Shared::kick`].
    wake: Condvar,
    /// Signalled after every service pass.
    passed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kick(&self) {
        self.lock().kicked = true;
        self.wake.notify_all();
    }
}

/// dom0's QubesDB service (see the module doc).
pub struct Dom0QubesDb {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn to_io(e: impl core::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Dom0QubesDb {
    /// Start the service in `host`'s dom0.
    pub fn start(host: &SimHost) -> io::Result<Dom0QubesDb> {
        let dom0 = host.dom0().clone();
        let gnttab = GrantTable::new(dom0.clone(), GNTTAB_FRAMES).map_err(to_io)?;
        let shared = Arc::new(Shared {
            dom0,
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                gnttab,
                kicked: false,
                vms: BTreeMap::new(),
                retired: Vec::new(),
            }),
            wake: Condvar::new(),
            passed: Condvar::new(),
        });
        let s2 = shared.clone();
        let thread = host.spawn(host.dom0(), move |_| service_loop(&s2));
        Ok(Dom0QubesDb {
            shared,
            thread: Some(thread),
        })
    }

    /// Create the (empty) database of `vm` if it has none, so the
    /// toolstack can fill it before the VM runs.
    pub fn add_vm(&self, vm: DomId) {
        self.shared.lock().vms.entry(vm).or_insert_with(|| Vm {
            daemon: Daemon::new(),
            chan: None,
            ended: None,
            connections: 0,
        });
    }

    /// Start serving `vm` (creating its database if needed): a new vchan
    /// server on port 111, its keys published in xenstore. An existing
    /// connection is closed first; the database is kept and the VM must
    /// synchronise again.
    pub fn serve(&self, host: &SimHost, vm: DomId) -> io::Result<()> {
        self.add_vm(vm);
        let sh = &self.shared;
        let mut st = sh.lock();
        let State {
            gnttab,
            vms,
            retired,
            ..
        } = &mut *st;
        let entry = vms.get_mut(&vm).ok_or_else(|| to_io("no such VM"))?;
        if let Some(old) = entry.chan.take() {
            close_chan(sh, old, retired);
        }
        let (chan, ring_ref) = build_chan(sh, gnttab, vm)?;
        let dir = RendezvousPath {
            server: 0,
            client: vm,
            port: VCHAN_PORT,
        }
        .absolute();
        let perms: Vec<XsPerm> = key_perms(0, vm).into_iter().map(XsPerm::from).collect();
        let port = chan.port;
        let published = host.with_xenstore(|xs| -> Result<(), String> {
            for (key, value) in [("ring-ref", ring_ref), ("event-channel", port)] {
                let path = format!("{dir}/{key}");
                xs.write(&path, value.to_string().as_bytes())
                    .map_err(|e| format!("{path}: {e:?}"))?;
                xs.set_perms(&path, &perms)
                    .map_err(|e| format!("{path}: {e:?}"))?;
            }
            Ok(())
        });
        if let Err(e) = published {
            close_chan(sh, chan, retired);
            return Err(to_io(e));
        }
        entry.daemon.reconnect();
        entry.chan = Some(chan);
        entry.ended = None;
        entry.connections += 1;
        drop(st);
        sh.kick();
        Ok(())
    }

    /// Stop serving `vm` (as dom0's daemon exiting): `srv_live = 0`, the
    /// VM is notified, the keys are removed. The database is kept.
    pub fn close(&self, host: &SimHost, vm: DomId) {
        let sh = &self.shared;
        {
            let mut st = sh.lock();
            let State { vms, retired, .. } = &mut *st;
            if let Some(entry) = vms.get_mut(&vm) {
                if let Some(chan) = entry.chan.take() {
                    close_chan(sh, chan, retired);
                    entry.ended = Some("closed by dom0".into());
                }
            }
        }
        let dir = RendezvousPath {
            server: 0,
            client: vm,
            port: VCHAN_PORT,
        }
        .absolute();
        host.with_xenstore(|xs| {
            let _ = xs.rm(&dir);
        });
        sh.kick();
    }

    /// Run `f` on `vm`'s daemon as dom0's tools would (write keys, set
    /// rules, inject garbage), then let the service thread push the
    /// result. `None` if the VM has no database.
    pub fn with_db<R>(&self, vm: DomId, f: impl FnOnce(&mut Daemon) -> R) -> Option<R> {
        let r = {
            let mut st = self.shared.lock();
            st.vms.get_mut(&vm).map(|v| f(&mut v.daemon))
        };
        self.shared.kick();
        r
    }

    /// Wait until `pred` holds for `vm`'s daemon (checked after each
    /// service pass), at most `timeout`. Returns whether it held.
    pub fn wait_for(&self, vm: DomId, timeout: Duration, pred: impl Fn(&Daemon) -> bool) -> bool {
        self.wait_until(vm, timeout, |v| pred(&v.daemon).then_some(()))
            .is_some()
    }

    /// Wait until `f` gives a value for `vm`'s entry (checked after each
    /// service pass), at most `timeout`.
    fn wait_until<R>(
        &self,
        vm: DomId,
        timeout: Duration,
        f: impl Fn(&Vm) -> Option<R>,
    ) -> Option<R> {
        let end = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(r) = st.vms.get(&vm).and_then(&f) {
                return Some(r);
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            st = self
                .shared
                .passed
                .wait_timeout(st, end - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wait until `vm` has synchronised and answered every push, with
    /// nothing left to send, at most `timeout`.
    pub fn wait_idle(&self, vm: DomId, timeout: Duration) -> bool {
        self.wait_for(vm, timeout, |d| {
            d.is_synced() && d.pending_acks() == 0 && d.output().is_empty()
        })
    }

    /// Why `vm`'s last connection ended (the VM closed it, broke the
    /// protocol, or dom0 closed it), if it did.
    pub fn ended(&self, vm: DomId) -> Option<String> {
        self.shared
            .lock()
            .vms
            .get(&vm)
            .and_then(|v| v.ended.clone())
    }

    /// Wait until `vm`'s connection has ended, at most `timeout`; returns
    /// why.
    pub fn wait_ended(&self, vm: DomId, timeout: Duration) -> Option<String> {
        self.wait_until(vm, timeout, |v| v.ended.clone())
    }

    /// How many servers were started for `vm`.
    pub fn connections(&self, vm: DomId) -> u32 {
        self.shared.lock().vms.get(&vm).map_or(0, |v| v.connections)
    }
}

impl Drop for Dom0QubesDb {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.kick();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let sh = &self.shared;
        let mut st = sh.lock();
        let State { vms, retired, .. } = &mut *st;
        for v in vms.values_mut() {
            if let Some(chan) = v.chan.take() {
                close_chan(sh, chan, retired);
            }
        }
    }
}

/// Allocate, zero and grant the control page and the two one-page rings,
/// and an unbound port for `vm`, as `libxenvchan_server_init` does.
fn build_chan(
    sh: &Shared,
    gnttab: &mut GrantTable<SimDomain>,
    vm: DomId,
) -> io::Result<(ServerChan, GrantRef)> {
    let orders = RingOrders::for_server(RING_SIZE, RING_SIZE).map_err(to_io)?;
    let d0 = &sh.dom0;
    let mut chan_areas: Vec<(Gfn, usize)> = Vec::new();
    let mut grants: Vec<GrantRef> = Vec::new();
    let result = (|| -> io::Result<(Endpoint, EvtchnPort, GrantRef)> {
        let ctrl_gfn = d0.alloc_pages(1).ok_or_else(|| to_io("out of memory"))?;
        chan_areas.push((ctrl_gfn, 1));
        let ctrl = d0.page(ctrl_gfn).ok_or_else(|| to_io("no control page"))?;
        Endpoint::init_server_page(&ctrl, orders);
        let ring_ref = gnttab.grant(vm, ctrl_gfn, false).map_err(to_io)?;
        grants.push(ring_ref);
        let mut bufs = vec![];
        for ring in [RingId::Left, RingId::Right] {
            let n = orders.location(ring).pages();
            let gfn = d0.alloc_pages(n).ok_or_else(|| to_io("out of memory"))?;
            chan_areas.push((gfn, n));
            let mem = d0.pages(gfn, n).ok_or_else(|| to_io("no ring pages"))?;
            mem.fill(0, n * PAGE_SIZE, 0);
            let first = orders.first_grant(ring);
            for i in 0..n {
                let r = gnttab.grant(vm, gfn.add(i as u64), false).map_err(to_io)?;
                grants.push(r);
                Endpoint::set_grant(&ctrl, first + i, r);
            }
            bufs.push(mem);
        }
        let (left, right) = Endpoint::ring_buffers(&ctrl, orders, Some(bufs[0]), Some(bufs[1]))
            .ok_or_else(|| to_io("ring buffers"))?;
        let ep = Endpoint::new(Role::Server, ctrl, left, right).ok_or_else(|| to_io("endpoint"))?;
        let port = ev_alloc_unbound(d0, vm).map_err(to_io)?;
        Ok((ep, port, ring_ref))
    })();
    match result {
        Ok((ep, port, ring_ref)) => Ok((
            ServerChan {
                ep,
                port,
                areas: chan_areas,
                grants,
                connected: false,
            },
            ring_ref,
        )),
        Err(e) => {
            for g in grants {
                let _ = gnttab.end_access(g);
            }
            for (gfn, n) in chan_areas {
                d0.free_pages(gfn, n);
            }
            Err(e)
        }
    }
}

/// Close our end (`srv_live = 0`, notify, close the port) and give the
/// pages back once the VM no longer maps them (else keep retrying).
fn close_chan(sh: &Shared, chan: ServerChan, retired: &mut Vec<ServerChan>) {
    chan.ep.mark_closed();
    let _ = ev_send(&sh.dom0, chan.port);
    let _ = ev_close(&sh.dom0, chan.port);
    retired.push(chan);
}

/// Revoke the grants of retired channels the VM has unmapped; free their
/// pages once every grant is gone.
fn reap(sh: &Shared, gnttab: &mut GrantTable<SimDomain>, retired: &mut Vec<ServerChan>) {
    retired.retain_mut(|chan| {
        chan.grants.retain(|&g| gnttab.end_access(g).is_err());
        if chan.grants.is_empty() {
            for &(gfn, n) in &chan.areas {
                sh.dom0.free_pages(gfn, n);
            }
            false
        } else {
            true
        }
    });
}

/// dom0's thread: every tick, or at once when kicked, service every VM.
fn service_loop(sh: &Shared) {
    let mut st = sh.lock();
    while !sh.stop.load(Ordering::SeqCst) {
        if !st.kicked {
            st = sh
                .wake
                .wait_timeout(st, SERVICE_TICK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.kicked = false;
        let State {
            gnttab,
            vms,
            retired,
            ..
        } = &mut *st;
        for (&vm, v) in vms.iter_mut() {
            service_vm(sh, vm, v, retired);
        }
        reap(sh, gnttab, retired);
        sh.passed.notify_all();
    }
}

fn service_vm(sh: &Shared, vm: DomId, v: &mut Vm, retired: &mut Vec<ServerChan>) {
    let Some(chan) = v.chan.as_mut() else {
        return;
    };
    let mut state = chan.ep.peer_state();
    if state == PeerState::Connected {
        chan.connected = true;
        if !ev_connected(&sh.dom0, chan.port) {
            state = PeerState::Closed;
        }
    }
    let why = if state == PeerState::Closed && chan.ep.data_ready().unwrap_or(0) == 0 {
        Some(String::from("the VM closed the vchan"))
    } else {
        let mut stream = ChanStream {
            chan,
            dom0: &sh.dom0,
        };
        match pump(&mut v.daemon, &mut stream) {
            Ok(_) => None,
            Err(PumpError::Stream(VchanError::PeerClosed)) => {
                Some(String::from("the VM closed the vchan"))
            }
            Err(PumpError::Stream(e)) => Some(format!("vchan: {e}")),
            Err(PumpError::Protocol(e)) => Some(format!("protocol: {e}")),
        }
    };
    if let Some(why) = why {
        log::info!("dom0 qubesdb: connection to domain {vm} ended: {why}");
        if let Some(chan) = v.chan.take() {
            close_chan(sh, chan, retired);
        }
        v.ended = Some(why);
    }
}
