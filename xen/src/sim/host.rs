//! The simulated Qubes host's toolstack and dom0 services.
//!
//! [`SimHost`] plays the part of dom0's tools: it creates domains the way
//! libxl does (ring pages at the top of RAM, their event channels allocated
//! by dom0, the reserved grant entries 0 and 1 filled for dom0, HVM params
//! set, the domain introduced to xenstored and its xenstore directory
//! written with libxl's permissions), and it runs dom0's services on a
//! thread of dom0's own: a xenstore server that speaks the ring protocol to
//! every domain (through the guest-side grant and event channel services,
//! as the real xenstored maps each domain's ring with grant ref 1), and a
//! console backend that drains every domain's console ring.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering as AtOrd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use core::mem::offset_of;
use core::sync::atomic::Ordering;

use super::xenstored::{ConnId, Perm as XsPerm, Xenstored};
use super::{DomainConfig, SimDomain, SimXen};
use crate::abi::console::{XenconsInterface, XENCONS_OUT_SIZE};
use crate::abi::event_channel::EvtchnAllocUnbound;
use crate::abi::grant_table::{GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE};
use crate::abi::hvm::*;
use crate::abi::xs_wire::XENSTORE_RING_SIZE;
use crate::abi::{DomId, EvtchnPort};
use crate::evtchn::EventChannels;
use crate::gnttab::{map_grant_refs, ForeignMapping};
use crate::hypervisor::{EvtchnOp, Hypervisor};
use crate::memory::{mb, rmb, wmb};
use crate::store::wire::{Header, HEADER_LEN};

use crate::store::transport::layout::{REQ, REQ_CONS, REQ_PROD, RSP, RSP_CONS, RSP_PROD};
const OUT: usize = offset_of!(XenconsInterface, out);
const OUT_CONS: usize = offset_of!(XenconsInterface, out_cons);
const OUT_PROD: usize = offset_of!(XenconsInterface, out_prod);

/// Pending output a domain that never reads its ring may accumulate.
const MAX_PENDING_OUTPUT: usize = 1 << 20;
/// Console bytes kept per domain.
const MAX_CONSOLE_LOG: usize = 4 << 20;

/// A domain's xenstore ring as seen by the server.
struct StoreConn {
    conn: ConnId,
    ring: ForeignMapping,
    port: EvtchnPort,
    inbuf: Vec<u8>,
    outbuf: VecDeque<u8>,
    broken: bool,
}

/// A domain's console ring as seen by the backend.
struct ConsoleConn {
    ring: ForeignMapping,
    port: EvtchnPort,
    log: Vec<u8>,
    line: Vec<u8>,
}

struct Services {
    xenstored: Xenstored,
    stores: BTreeMap<DomId, StoreConn>,
    consoles: BTreeMap<DomId, ConsoleConn>,
    names: BTreeMap<DomId, String>,
}

struct Shared {
    svc: Mutex<Services>,
    ev: EventChannels<SimDomain>,
    /// dom0's two ends of its loopback channel: sending on `kick_tx` wakes
    /// the service thread polling `kick_rx`.
    kick_tx: EvtchnPort,
    kick_rx: EvtchnPort,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Services> {
        self.svc.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn kick(&self) {
        let _ = self.ev.send(self.kick_tx);
    }
}

/// A simulated Qubes host: the hypervisor, dom0 with xenstored and the
/// console backend running, and a toolstack to create and destroy domains.
pub struct SimHost {
    xen: SimXen,
    dom0: SimDomain,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SimHost {
    /// Boot the host: the hypervisor and dom0 with its services.
    pub fn new() -> io::Result<SimHost> {
        let xen = SimXen::new();
        let dom0 = xen.create_domain(&DomainConfig {
            name: "dom0".into(),
            ram_mib: 64,
            max_grant_frames: 64,
        })?;
        let ev = EventChannels::new(dom0.clone()).map_err(to_io)?;
        let kick_rx = ev.alloc_unbound(0).map_err(to_io)?;
        let kick_tx = ev.bind_interdomain(0, kick_rx).map_err(to_io)?;
        let mut xenstored = Xenstored::new();
        xenstored.introduce_domain(0);
        let shared = Arc::new(Shared {
            svc: Mutex::new(Services {
                xenstored,
                stores: BTreeMap::new(),
                consoles: BTreeMap::new(),
                names: BTreeMap::from([(0, "dom0".to_string())]),
            }),
            ev,
            kick_tx,
            kick_rx,
            stop: AtomicBool::new(false),
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dom0-services".into())
            .spawn(move || service_loop(&s2))?;
        Ok(SimHost {
            xen,
            dom0,
            shared,
            thread: Some(thread),
        })
    }

    /// The hypervisor.
    pub fn xen(&self) -> &SimXen {
        &self.xen
    }

    /// dom0's handle.
    pub fn dom0(&self) -> &SimDomain {
        &self.dom0
    }

    /// dom0's event channel service (shared with the dom0 service thread).
    pub fn dom0_events(&self) -> EventChannels<SimDomain> {
        self.shared.ev.clone()
    }

    /// Create a domain as libxl does, with xenstore and console set up,
    /// ready for its code to run (see [`SimHost::spawn`]).
    pub fn create_domain(&self, cfg: &DomainConfig) -> io::Result<SimDomain> {
        let dom = self.xen.create_domain(cfg)?;
        let d = dom.domid();
        let ram = dom.memory().ram_pages() as u64;
        let (store_gfn, console_gfn) = (ram - 1, ram - 2);
        dom.memory().reserve_ram(ram - 2, 2);
        let alloc = |remote| -> io::Result<EvtchnPort> {
            let mut a = EvtchnAllocUnbound {
                dom: d,
                remote_dom: remote,
                port: 0,
            };
            self.dom0
                .event_channel_op(EvtchnOp::AllocUnbound(&mut a))
                .map_err(to_io)?;
            Ok(a.port)
        };
        let store_port = alloc(0)?;
        let console_port = alloc(0)?;
        for (idx, v) in [
            (HVM_PARAM_STORE_PFN, store_gfn),
            (HVM_PARAM_STORE_EVTCHN, store_port as u64),
            (HVM_PARAM_CONSOLE_PFN, console_gfn),
            (HVM_PARAM_CONSOLE_EVTCHN, console_port as u64),
        ] {
            self.xen.set_param(d, idx, v).map_err(to_io)?;
        }
        self.xen
            .toolstack_grant(d, GNTTAB_RESERVED_CONSOLE, 0, console_gfn)
            .map_err(to_io)?;
        self.xen
            .toolstack_grant(d, GNTTAB_RESERVED_XENSTORE, 0, store_gfn)
            .map_err(to_io)?;

        // dom0 maps both rings through grants and binds their channels.
        let ev = &self.shared.ev;
        let sring = map_grant_refs(&self.dom0, d, &[GNTTAB_RESERVED_XENSTORE], false)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let cring = map_grant_refs(&self.dom0, d, &[GNTTAB_RESERVED_CONSOLE], false)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let sport = ev.bind_interdomain(d, store_port).map_err(to_io)?;
        let cport = ev.bind_interdomain(d, console_port).map_err(to_io)?;

        {
            let mut svc = self.shared.lock();
            let conn = svc.xenstored.connect(d);
            svc.stores.insert(
                d,
                StoreConn {
                    conn,
                    ring: sring,
                    port: sport,
                    inbuf: Vec::new(),
                    outbuf: VecDeque::new(),
                    broken: false,
                },
            );
            svc.consoles.insert(
                d,
                ConsoleConn {
                    ring: cring,
                    port: cport,
                    log: Vec::new(),
                    line: Vec::new(),
                },
            );
            svc.names.insert(d, cfg.name.clone());
            write_domain_dir(
                &mut svc.xenstored,
                d,
                cfg,
                store_gfn,
                store_port,
                console_gfn,
                console_port,
            );
            svc.xenstored.introduce_domain(d);
        }
        self.shared.kick();
        Ok(dom)
    }

    /// Run `f` as the code of domain `dom`, on a thread of its own.
    pub fn spawn<F, R>(&self, dom: &SimDomain, f: F) -> JoinHandle<R>
    where
        F: FnOnce(SimDomain) -> R + Send + 'static,
        R: Send + 'static,
    {
        let d = dom.clone();
        let name = format!(
            "d{}-{}",
            d.domid(),
            self.xen.name(d.domid()).unwrap_or_default()
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || f(d))
            .expect("spawn domain thread")
    }

    /// Destroy a domain as `xl destroy` does: dom0 drops its xenstore and
    /// console connections, the hypervisor tears the domain down, xenstored
    /// announces `@releaseDomain`, and its `/local/domain/<id>` goes.
    pub fn destroy_domain(&self, d: DomId) {
        let (sc, cc) = {
            let mut svc = self.shared.lock();
            let sc = svc.stores.remove(&d);
            if let Some(s) = &sc {
                svc.xenstored.disconnect(s.conn);
            }
            (sc, svc.consoles.remove(&d))
        };
        if let Some(s) = sc {
            let _ = self.shared.ev.close(s.port);
            let _ = s.ring.unmap(&self.dom0);
        }
        if let Some(c) = cc {
            let _ = self.shared.ev.close(c.port);
            let _ = c.ring.unmap(&self.dom0);
        }
        self.xen.destroy_domain(d);
        {
            let mut svc = self.shared.lock();
            let _ = svc.xenstored.rm(&format!("/local/domain/{d}"));
            svc.xenstored.release_domain(d);
        }
        self.shared.kick();
    }

    /// Everything domain `d` wrote to its PV console so far.
    ///
    /// The console ring is drained here, under the service lock, rather
    /// than left to the service thread: a write the domain finished before
    /// this call is in the result even if the service thread has not run
    /// since (a kick only schedules it).
    pub fn console_output(&self, d: DomId) -> Vec<u8> {
        let mut guard = self.shared.lock();
        let svc = &mut *guard;
        let Some(cc) = svc.consoles.get_mut(&d) else {
            return Vec::new();
        };
        let name = svc.names.get(&d).map(String::as_str).unwrap_or("?");
        if serve_console(cc, name) {
            let _ = self.shared.ev.send(cc.port);
        }
        cc.log.clone()
    }

    /// Run `f` on xenstored as dom0's tools do (direct access, no ring):
    /// changes fire watches, and the resulting events are delivered to the
    /// domains' rings by the service thread.
    pub fn with_xenstore<R>(&self, f: impl FnOnce(&mut Xenstored) -> R) -> R {
        let r = f(&mut self.shared.lock().xenstored);
        self.shared.kick();
        r
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        self.shared.stop.store(true, AtOrd::SeqCst);
        self.shared.kick();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn to_io(e: crate::abi::Errno) -> io::Error {
    io::Error::other(format!("hypercall failed: {e}"))
}

/// The xenstore directory libxl writes for a new domain, with its
/// permissions: dom0 owns `/local/domain/<id>` and the domain may read it;
/// the domain owns the subdirectories it writes into.
fn write_domain_dir(
    xs: &mut Xenstored,
    d: DomId,
    cfg: &DomainConfig,
    store_gfn: u64,
    store_port: u32,
    console_gfn: u64,
    console_port: u32,
) {
    let base = format!("/local/domain/{d}");
    let ro = [XsPerm::none(0), XsPerm::read(d)];
    let rw = [XsPerm::none(d)];
    let _ = xs.write(&base, b"");
    let _ = xs.set_perms(&base, &ro);
    for (k, v) in [
        ("name", cfg.name.clone()),
        ("domid", d.to_string()),
        ("memory/static-max", (cfg.ram_mib * 1024).to_string()),
        ("memory/target", (cfg.ram_mib * 1024).to_string()),
        ("store/ring-ref", store_gfn.to_string()),
        ("store/port", store_port.to_string()),
        ("console/ring-ref", console_gfn.to_string()),
        ("console/port", console_port.to_string()),
        ("console/type", "xenconsoled".to_string()),
    ] {
        let p = format!("{base}/{k}");
        let _ = xs.write(&p, v.as_bytes());
        let _ = xs.set_perms(&p, &ro);
    }
    for sub in ["memory", "store", "console"] {
        let _ = xs.set_perms(&format!("{base}/{sub}"), &ro);
    }
    for sub in [
        "control", "data", "device", "attr", "error", "drivers", "feature",
    ] {
        let p = format!("{base}/{sub}");
        let _ = xs.write(&p, b"");
        let _ = xs.set_perms(&p, &rw);
    }
}

/// dom0's service thread: sleep until a domain signals its xenstore or
/// console ring (or the toolstack kicks), then serve every ring.
fn service_loop(sh: &Shared) {
    while !sh.stop.load(AtOrd::SeqCst) {
        let mut ports = vec![sh.kick_rx];
        {
            let svc = sh.lock();
            ports.extend(svc.stores.values().map(|s| s.port));
            ports.extend(svc.consoles.values().map(|c| c.port));
        }
        // SCHEDOP_poll takes at most 128 ports; beyond that the periodic
        // deadline below still serves every ring.
        ports.truncate(128);
        let deadline = sh.ev.platform().now_ns() + 50_000_000;
        match sh.ev.wait(&ports, Some(deadline)) {
            Ok(_) => {}
            // dom0 itself is gone: nothing left to serve.
            Err(crate::abi::Errno::ESRCH) => return,
            // A domain was destroyed between collecting the ports and
            // polling (its port is now closed): collect them again.
            Err(_) => continue,
        }
        for &p in &ports {
            sh.ev.clear_pending(p);
        }
        let mut guard = sh.lock();
        let svc = &mut *guard;
        for (d, sc) in svc.stores.iter_mut() {
            if serve_store(&mut svc.xenstored, sc, *d) {
                let _ = sh.ev.send(sc.port);
            }
        }
        for (d, cc) in svc.consoles.iter_mut() {
            if serve_console(cc, svc.names.get(d).map(String::as_str).unwrap_or("?")) {
                let _ = sh.ev.send(cc.port);
            }
        }
    }
}

/// Move bytes between one domain's xenstore ring and xenstored. Returns
/// whether any ring index changed (the domain must be notified).
fn serve_store(xs: &mut Xenstored, sc: &mut StoreConn, d: DomId) -> bool {
    if sc.broken {
        return false;
    }
    let ring = sc.ring.mem();
    let mut changed = false;
    // Requests in.
    let cons = ring.read_u32(REQ_CONS);
    let prod = ring.load_u32(REQ_PROD, Ordering::Acquire);
    let avail = prod.wrapping_sub(cons) as usize;
    if avail > XENSTORE_RING_SIZE {
        log::warn!("xenstored: d{d} request ring index out of range (prod {prod} cons {cons}); connection closed");
        sc.broken = true;
        return false;
    }
    if avail > 0 {
        rmb();
        let mut buf = vec![0u8; avail];
        ring.read_ring(REQ, XENSTORE_RING_SIZE, cons, &mut buf);
        sc.inbuf.extend_from_slice(&buf);
        mb();
        ring.store_u32(REQ_CONS, cons.wrapping_add(avail as u32), Ordering::Release);
        changed = true;
    }
    // Whole messages to xenstored.
    while sc.inbuf.len() >= HEADER_LEN {
        // Frame by length only: xenstored answers an unknown type with
        // ENOSYS; only an oversized payload breaks the stream.
        let h = match Header::parse_frame(&sc.inbuf) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("xenstored: d{d} sent a malformed message ({e}); connection closed");
                sc.broken = true;
                return changed;
            }
        };
        let total = HEADER_LEN + h.len as usize;
        if sc.inbuf.len() < total {
            break;
        }
        let payload: Vec<u8> = sc.inbuf[HEADER_LEN..total].to_vec();
        sc.inbuf.drain(..total);
        xs.handle(sc.conn, h, &payload);
    }
    // Replies and watch events out. Take only what our buffer has room
    // for: the rest waits in xenstored's own capped, counted queue.
    let room = MAX_PENDING_OUTPUT.saturating_sub(sc.outbuf.len());
    for (h, payload) in xs.take_output_limited(sc.conn, room) {
        sc.outbuf.extend(h.encode());
        sc.outbuf.extend(payload);
    }
    if !sc.outbuf.is_empty() {
        let prod = ring.read_u32(RSP_PROD);
        let cons = ring.load_u32(RSP_CONS, Ordering::Acquire);
        let used = prod.wrapping_sub(cons) as usize;
        if used > XENSTORE_RING_SIZE {
            log::warn!("xenstored: d{d} response ring index out of range; connection closed");
            sc.broken = true;
            return changed;
        }
        let n = (XENSTORE_RING_SIZE - used).min(sc.outbuf.len());
        if n > 0 {
            let chunk: Vec<u8> = sc.outbuf.drain(..n).collect();
            ring.write_ring(RSP, XENSTORE_RING_SIZE, prod, &chunk);
            wmb();
            ring.store_u32(RSP_PROD, prod.wrapping_add(n as u32), Ordering::Release);
            changed = true;
        }
    }
    changed
}

/// Drain one domain's console output ring into its log.
fn serve_console(cc: &mut ConsoleConn, name: &str) -> bool {
    let ring = cc.ring.mem();
    let cons = ring.read_u32(OUT_CONS);
    let prod = ring.load_u32(OUT_PROD, Ordering::Acquire);
    let avail = prod.wrapping_sub(cons) as usize;
    if avail == 0 || avail > XENCONS_OUT_SIZE {
        return false;
    }
    rmb();
    let mut buf = vec![0u8; avail];
    ring.read_ring(OUT, XENCONS_OUT_SIZE, cons, &mut buf);
    mb();
    ring.store_u32(OUT_CONS, prod, Ordering::Release);
    if cc.log.len() + buf.len() <= MAX_CONSOLE_LOG {
        cc.log.extend_from_slice(&buf);
    }
    for &b in &buf {
        match b {
            b'\n' => {
                log::info!(target: "console", "[{name}] {}", String::from_utf8_lossy(&cc.line));
                cc.line.clear();
            }
            b'\r' => {}
            _ if cc.line.len() < 4096 => cc.line.push(b),
            _ => {}
        }
    }
    true
}
