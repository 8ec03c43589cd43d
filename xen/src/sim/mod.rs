//! An in-process simulated Xen: N domains, each with its own guest memory,
//! grant table, event channels, shared info page and thread, behind the
//! same [`Hypervisor`] and [`GuestMemory`] traits as the real unikernel.
//!
//! Fidelity is the point. Every op is checked the way Xen 4.17 checks it
//! for a PVH guest (wrong domid, read-only grant mapped writable, unknown or
//! revoked ref, copy past the end of a page, send on a closed port, ...),
//! returning Xen's error code, so a bug that Xen would reject fails a test
//! here first. Memory is real shared memory: a foreign grant mapping aliases
//! the granter's page (see [`crate::memory::host`]), and event pending bits
//! are set in the shared info page the guest maps. dom0 runs a real
//! xenstore server speaking the ring protocol and a console backend (see
//! [`host::SimHost`]).
//!
//! All hypervisor state sits behind one mutex; a domain sleeping in
//! `SCHEDOP_poll` waits on its own condition variable, woken when one of its
//! ports becomes pending or its timer is due. Time is the host's monotonic
//! clock in nanoseconds since the simulator started.

pub mod counters;
mod events;
mod grant;
pub mod host;
pub mod memory;
pub mod vif;
pub mod xenstored;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::abi::domid::{DOMID_FIRST_RESERVED, DOMID_SELF};
use crate::abi::event_channel::NR_VIRQS;
use crate::abi::hvm::*;
use crate::abi::memory::*;
use crate::abi::sched::SCHED_POLL_MAX_PORTS;
use crate::abi::{DomId, Errno, EvtchnPort, GrantRef};
use crate::hypervisor::*;
use crate::memory::{Gfn, GuestMemory, SharedMem};

pub use counters::Counters;
pub use host::SimHost;
pub use memory::DomainMemory;

use events::Port;
use grant::GrantState;

/// Parameters of a simulated domain.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// Name (xenstore `name`, console log prefix).
    pub name: String,
    /// RAM in MiB.
    pub ram_mib: usize,
    /// Maximum grant table frames (Xen's default is 64).
    pub max_grant_frames: u32,
}

impl DomainConfig {
    /// A domain called `name` with 16 MiB of RAM.
    pub fn new(name: &str) -> DomainConfig {
        DomainConfig {
            name: name.to_string(),
            ram_mib: 16,
            max_grant_frames: 64,
        }
    }
}

/// One simulated domain as the hypervisor sees it.
pub(crate) struct Dom {
    pub(crate) name: String,
    pub(crate) privileged: bool,
    pub(crate) mem: Arc<DomainMemory>,
    pub(crate) gnt: GrantState,
    pub(crate) ports: Vec<Port>,
    pub(crate) virqs: [Option<EvtchnPort>; NR_VIRQS as usize],
    pub(crate) params: [u64; HVM_NR_PARAMS as usize],
    pub(crate) timer: Option<u64>,
    pub(crate) shared_info_gfn: Option<u64>,
    /// GFNs where Xen-owned pages are placed (for remove_from_physmap).
    pub(crate) xen_placed: HashSet<u64>,
    pub(crate) upcall_vector: Option<u8>,
    /// Bumped whenever one of the domain's ports becomes pending: a poll
    /// on other than exactly one port wakes on any event, as in Xen.
    pub(crate) event_gen: u64,
    pub(crate) shutdown: Option<u32>,
    pub(crate) counters: Counters,
    pub(crate) hv_console: Vec<u8>,
    pub(crate) wake: Arc<Condvar>,
}

/// All hypervisor state.
pub(crate) struct State {
    pub(crate) doms: BTreeMap<DomId, Dom>,
    next_domid: DomId,
}

/// HVM params a guest may read of itself (`hvm_allow_get_param`).
const GUEST_READABLE_PARAMS: &[u32] = &[
    HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_STORE_PFN,
    HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_VM86_TSS,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_VM_GENERATION_ID_ADDR,
    HVM_PARAM_ALTP2M,
    HVM_PARAM_X87_FIP_WIDTH,
    HVM_PARAM_VM86_TSS_SIZED,
];
/// HVM params a guest may set on itself (`hvm_allow_set_param`).
const GUEST_SETTABLE_PARAMS: &[u32] = &[
    HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_STORE_EVTCHN,
    HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_VM86_TSS,
    HVM_PARAM_VM86_TSS_SIZED,
    HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_VM_GENERATION_ID_ADDR,
    HVM_PARAM_X87_FIP_WIDTH,
];

impl State {
    /// Xen's order for an HVM param op: index (`EINVAL`), domain (`ESRCH`),
    /// then privilege (`EPERM`).
    fn hvm_param_target(&self, caller: DomId, domid: DomId, index: u32) -> HvResult<DomId> {
        if index >= HVM_NR_PARAMS {
            return Err(Errno::EINVAL);
        }
        let d = if domid == DOMID_SELF { caller } else { domid };
        self.dom(d)?;
        if d != caller && !self.dom(caller)?.privileged {
            return Err(Errno::EPERM);
        }
        Ok(d)
    }

    /// Target of a physmap op: `ESRCH` for a missing domain, `EPERM` for
    /// another domain's.
    fn physmap_target(&self, caller: DomId, domid: DomId) -> HvResult<()> {
        let d = if domid == DOMID_SELF { caller } else { domid };
        self.dom(d)?;
        if d != caller {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    pub(crate) fn dom(&self, d: DomId) -> HvResult<&Dom> {
        self.doms.get(&d).ok_or(Errno::ESRCH)
    }
    pub(crate) fn dom_mut(&mut self, d: DomId) -> HvResult<&mut Dom> {
        self.doms.get_mut(&d).ok_or(Errno::ESRCH)
    }
}

pub(crate) struct Core {
    state: Mutex<State>,
    epoch: Instant,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another domain thread must not take the hypervisor
        // down with it: the state stays consistent per operation.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1_000_000_000
    }
}

/// The simulated hypervisor: creates and destroys domains, and answers
/// questions tests ask (counters, shutdown state).
#[derive(Clone)]
pub struct SimXen {
    core: Arc<Core>,
}

impl Default for SimXen {
    fn default() -> Self {
        SimXen::new()
    }
}

impl SimXen {
    /// A hypervisor with no domains.
    pub fn new() -> SimXen {
        SimXen {
            core: Arc::new(Core {
                state: Mutex::new(State {
                    doms: BTreeMap::new(),
                    next_domid: 0,
                }),
                epoch: Instant::now(),
            }),
        }
    }

    /// Create a domain (the first one created is dom0, privileged) with its
    /// memory and an empty grant table and port table. No xenstore or
    /// console is set up here; see [`SimHost::create_domain`].
    pub fn create_domain(&self, cfg: &DomainConfig) -> io::Result<SimDomain> {
        let mut st = self.core.lock();
        let id = st.next_domid;
        if id >= DOMID_FIRST_RESERVED {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let ram_pages = cfg.ram_mib * 256;
        let mem = Arc::new(DomainMemory::new(
            &cfg.name,
            ram_pages,
            cfg.max_grant_frames as usize,
        )?);
        let wake = Arc::new(Condvar::new());
        let dom = Dom {
            name: cfg.name.clone(),
            privileged: id == 0,
            mem: mem.clone(),
            gnt: GrantState::new(cfg.max_grant_frames),
            ports: vec![Port::Reserved],
            virqs: [None; NR_VIRQS as usize],
            params: [0; HVM_NR_PARAMS as usize],
            timer: None,
            shared_info_gfn: None,
            xen_placed: HashSet::new(),
            upcall_vector: None,
            event_gen: 0,
            shutdown: None,
            counters: Counters::default(),
            hv_console: Vec::new(),
            wake: wake.clone(),
        };
        st.doms.insert(id, dom);
        st.next_domid = id + 1;
        Ok(SimDomain {
            core: self.core.clone(),
            id,
            mem,
            wake,
        })
    }

    /// Destroy a domain as Xen does when it dies: its event channels close
    /// (their remote ends become unbound), the foreign pages it mapped are
    /// released (unpinning the granters' entries), and any further
    /// hypercall from it fails with `ESRCH`. Its pages stay alive while
    /// other domains still map them.
    pub fn destroy_domain(&self, d: DomId) {
        let mut st = self.core.lock();
        for h in st.map_handles(d) {
            let _ = st.unmap_one(d, h, None);
        }
        let nports = st.doms.get(&d).map(|x| x.ports.len()).unwrap_or(0);
        for p in 1..nports as EvtchnPort {
            let _ = st.close_port(d, p);
        }
        if let Some(dom) = st.doms.remove(&d) {
            dom.wake.notify_all();
        }
    }

    /// A handle for an existing domain.
    pub fn domain(&self, d: DomId) -> Option<SimDomain> {
        let st = self.core.lock();
        st.doms.get(&d).map(|x| SimDomain {
            core: self.core.clone(),
            id: d,
            mem: x.mem.clone(),
            wake: x.wake.clone(),
        })
    }

    /// Domain ids that exist.
    pub fn domains(&self) -> Vec<DomId> {
        self.core.lock().doms.keys().copied().collect()
    }

    /// A domain's name.
    pub fn name(&self, d: DomId) -> Option<String> {
        self.core.lock().doms.get(&d).map(|x| x.name.clone())
    }

    /// A domain's counters.
    pub fn counters(&self, d: DomId) -> Option<Counters> {
        self.core.lock().doms.get(&d).map(|x| x.counters)
    }

    /// The reason a domain passed to `SCHEDOP_shutdown`, if it did.
    pub fn shutdown_reason(&self, d: DomId) -> Option<u32> {
        self.core.lock().doms.get(&d).and_then(|x| x.shutdown)
    }

    /// What a domain wrote with `console_io` (the hypervisor console).
    pub fn hypervisor_console(&self, d: DomId) -> Vec<u8> {
        self.core
            .lock()
            .doms
            .get(&d)
            .map(|x| x.hv_console.clone())
            .unwrap_or_default()
    }

    /// The toolstack sets an HVM param of a domain (store/console ring).
    pub fn set_param(&self, d: DomId, index: u32, value: u64) -> HvResult {
        let mut st = self.core.lock();
        let dom = st.dom_mut(d)?;
        *dom.params.get_mut(index as usize).ok_or(Errno::EINVAL)? = value;
        Ok(())
    }

    /// The toolstack fills a reserved grant entry of domain `d`.
    pub fn toolstack_grant(&self, d: DomId, r: GrantRef, grantee: DomId, frame: u64) -> HvResult {
        self.core.lock().toolstack_grant(d, r, grantee, frame)
    }

    /// Current simulated Xen system time (ns).
    pub fn now_ns(&self) -> u64 {
        self.core.now_ns()
    }
}

/// A handle through which one domain's code issues hypercalls and reaches
/// its memory. Cheap to clone; `Send`, so a domain's code runs on its own
/// thread.
#[derive(Clone)]
pub struct SimDomain {
    core: Arc<Core>,
    id: DomId,
    mem: Arc<DomainMemory>,
    wake: Arc<Condvar>,
}

impl core::fmt::Debug for SimDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SimDomain(d{})", self.id)
    }
}

impl SimDomain {
    /// This domain's id.
    pub fn domid(&self) -> DomId {
        self.id
    }

    /// The hypervisor this domain runs on.
    pub fn xen(&self) -> SimXen {
        SimXen {
            core: self.core.clone(),
        }
    }

    /// This domain's memory.
    pub fn memory(&self) -> &DomainMemory {
        &self.mem
    }

    /// Count one hypercall and run `f` on the state, as this domain.
    /// `GNTTABOP_copy`: each chunk of ops is checked and pinned under the
    /// lock, copied without it (so domains copy in parallel, as vCPUs do
    /// on Xen), then unpinned. A chunk lives on the stack: the hypercall
    /// allocates nothing, so it does not show in a guest's allocation
    /// counts.
    fn grant_copy(&self, ops: &mut [crate::abi::grant_table::GnttabCopy]) {
        const CHUNK: usize = grant::COPY_CHUNK;
        for chunk in ops.chunks_mut(CHUNK) {
            let mut prepared: [Option<grant::PreparedCopy>; CHUNK] = Default::default();
            {
                let mut st = self.core.lock();
                for (op, slot) in chunk.iter_mut().zip(prepared.iter_mut()) {
                    match st.prepare_copy(self.id, op) {
                        Ok(p) => {
                            op.status = crate::abi::grant_table::status::OKAY;
                            *slot = Some(p);
                        }
                        Err(e) => op.status = e,
                    }
                }
            }
            let mut moved = [0usize; CHUNK];
            for (p, m) in prepared.iter().zip(moved.iter_mut()) {
                if let Some(p) = p {
                    *m = p.run();
                }
            }
            let mut st = self.core.lock();
            for (p, m) in prepared.iter_mut().zip(moved) {
                if let Some(p) = p.take() {
                    st.finish_copy(self.id, p, m);
                }
            }
        }
    }

    fn call<R>(
        &self,
        count: impl FnOnce(&mut Counters),
        f: impl FnOnce(&mut State) -> HvResult<R>,
    ) -> HvResult<R> {
        let mut st = self.core.lock();
        count(&mut st.dom_mut(self.id)?.counters);
        f(&mut st)
    }

    /// `SCHEDOP_poll` as `do_poll`: every listed port must be usable;
    /// return when one is pending, at the deadline, or (unless exactly one
    /// port is listed) when any event reaches the domain.
    fn poll(&self, ports: &[u32], timeout: u64) -> HvResult {
        if ports.len() > SCHED_POLL_MAX_PORTS {
            return Err(Errno::EINVAL);
        }
        let mut st = self.core.lock();
        let gen0 = {
            let dom = st.dom(self.id)?;
            if ports.iter().any(|&p| dom.port(p).is_none()) {
                return Err(Errno::EINVAL);
            }
            dom.event_gen
        };
        loop {
            let now = self.core.now_ns();
            let dom = st.dom_mut(self.id)?;
            dom.fire_timer(now);
            if ports.iter().any(|&p| dom.is_pending(p))
                || (ports.len() != 1 && dom.event_gen != gen0)
            {
                return Ok(());
            }
            if timeout != 0 && now >= timeout {
                return Ok(());
            }
            let wake_at = [Some(timeout).filter(|&t| t != 0), dom.timer]
                .into_iter()
                .flatten()
                .min();
            st = match wake_at {
                Some(t) => {
                    self.wake
                        .wait_timeout(st, Duration::from_nanos(t.saturating_sub(now)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    fn block(&self) -> HvResult {
        let mut st = self.core.lock();
        loop {
            let now = self.core.now_ns();
            let dom = st.dom_mut(self.id)?;
            dom.fire_timer(now);
            if dom.upcall_pending() {
                return Ok(());
            }
            st = match dom.timer {
                Some(t) => {
                    self.wake
                        .wait_timeout(st, Duration::from_nanos(t.saturating_sub(now)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

impl Hypervisor for SimDomain {
    fn memory_op(&self, op: MemoryOp<'_>) -> HvResult {
        let id = self.id;
        self.call(
            |c| c.memory_op += 1,
            |st| match op {
                MemoryOp::AddToPhysmap(a) => {
                    st.physmap_target(id, a.domid)?;
                    match a.space {
                        XENMAPSPACE_SHARED_INFO => {
                            if a.idx != 0 {
                                return Err(Errno::EINVAL);
                            }
                            let dom = st.dom_mut(id)?;
                            if !dom.mem.in_space(a.gpfn) {
                                return Err(Errno::EINVAL);
                            }
                            if let Some(old) = dom.shared_info_gfn.take() {
                                let _ = dom.mem.space.clear((old << 12) as usize, 1);
                                dom.xen_placed.remove(&old);
                            }
                            dom.mem
                                .space
                                .place(
                                    (a.gpfn << 12) as usize,
                                    &dom.mem.xen,
                                    memory::XEN_SHARED_INFO_PAGE,
                                    1,
                                )
                                .map_err(|_| Errno::EINVAL)?;
                            dom.shared_info_gfn = Some(a.gpfn);
                            dom.xen_placed.insert(a.gpfn);
                            Ok(())
                        }
                        XENMAPSPACE_GRANT_TABLE => st.map_grant_frame(id, a.idx, a.gpfn),
                        // Only possible through add_to_physmap_batch.
                        XENMAPSPACE_GMFN_FOREIGN => Err(Errno::ENOSYS),
                        // Moving the guest's own RAM is not simulated.
                        XENMAPSPACE_GMFN | XENMAPSPACE_GMFN_RANGE => Err(Errno::EOPNOTSUPP),
                        _ => Err(Errno::EINVAL),
                    }
                }
                MemoryOp::RemoveFromPhysmap(r) => {
                    st.physmap_target(id, r.domid)?;
                    let dom = st.dom_mut(id)?;
                    // A Xen page or a RAM page can be removed; a hole cannot.
                    if !dom.xen_placed.remove(&r.gpfn) && !dom.mem.is_ram(r.gpfn) {
                        return Err(Errno::ENOENT);
                    }
                    if dom.shared_info_gfn == Some(r.gpfn) {
                        dom.shared_info_gfn = None;
                    }
                    dom.mem
                        .space
                        .clear((r.gpfn << 12) as usize, 1)
                        .map_err(|_| Errno::EINVAL)
                }
            },
        )
    }

    fn grant_table_op(&self, op: GnttabOp<'_>) -> HvResult {
        let id = self.id;
        if let GnttabOp::Copy(ops) = op {
            self.call(|c| c.grant_table_op += 1, |_| Ok(()))?;
            self.grant_copy(ops);
            return Ok(());
        }
        self.call(
            |c| c.grant_table_op += 1,
            |st| match op {
                GnttabOp::MapGrantRef(ops) => st.map_grant_refs(id, ops),
                GnttabOp::UnmapGrantRef(ops) => st.unmap_grant_refs(id, ops),
                GnttabOp::Copy(_) => Ok(()),
                GnttabOp::QuerySize(q) => st.query_size(id, q),
            },
        )
    }

    fn event_channel_op(&self, op: EvtchnOp<'_>) -> HvResult {
        let id = self.id;
        self.call(
            |c| c.event_channel_op += 1,
            |st| match op {
                EvtchnOp::AllocUnbound(a) => st.alloc_unbound(id, a),
                EvtchnOp::BindInterdomain(b) => st.bind_interdomain(id, b),
                EvtchnOp::BindVirq(b) => st.bind_virq(id, b),
                EvtchnOp::Close(c) => st.close_port(id, c.port),
                EvtchnOp::Send(s) => st.send(id, s.port),
                EvtchnOp::Status(s) => st.status(id, s),
                EvtchnOp::Unmask(u) => st.unmask(id, u.port),
            },
        )
    }

    fn sched_op(&self, op: SchedOp<'_>) -> HvResult {
        self.call(|c| c.sched_op += 1, |_| Ok(()))?;
        match op {
            SchedOp::Yield => {
                std::thread::yield_now();
                Ok(())
            }
            SchedOp::Block => self.block(),
            SchedOp::Shutdown(s) => {
                let mut st = self.core.lock();
                st.dom_mut(self.id)?.shutdown = Some(s.reason);
                Ok(())
            }
            SchedOp::Poll { ports, timeout } => self.poll(ports, timeout),
        }
    }

    fn hvm_op(&self, op: HvmOp<'_>) -> HvResult {
        let id = self.id;
        let now = self.core.now_ns();
        self.call(
            |c| c.hvm_op += 1,
            |st| match op {
                HvmOp::GetParam(p) => {
                    let d = st.hvm_param_target(id, p.domid, p.index)?;
                    if d == id && !GUEST_READABLE_PARAMS.contains(&p.index) {
                        return Err(Errno::EPERM);
                    }
                    p.value = st.dom(d)?.params[p.index as usize];
                    Ok(())
                }
                HvmOp::SetParam(p) => {
                    let d = st.hvm_param_target(id, p.domid, p.index)?;
                    // The ring GFNs belong to the toolstack; a guest may set
                    // only the few params Xen lets it set.
                    if d == id && !GUEST_SETTABLE_PARAMS.contains(&p.index) {
                        return Err(Errno::EPERM);
                    }
                    st.dom_mut(d)?.params[p.index as usize] = p.value;
                    Ok(())
                }
                HvmOp::GetTime(t) => {
                    t.now = now;
                    Ok(())
                }
                HvmOp::SetEvtchnUpcallVector(v) => {
                    if v.vector < 0x10 {
                        return Err(Errno::EINVAL);
                    }
                    if v.vcpu != 0 {
                        return Err(Errno::ENOENT);
                    }
                    st.dom_mut(id)?.upcall_vector = Some(v.vector);
                    Ok(())
                }
            },
        )
    }

    fn vcpu_op(&self, op: VcpuOp<'_>) -> HvResult {
        let id = self.id;
        self.call(
            |c| c.vcpu_op += 1,
            |st| {
                let dom = st.dom_mut(id)?;
                match op {
                    VcpuOp::SetSingleshotTimer(t) => dom.timer = Some(t.timeout_abs_ns),
                    VcpuOp::StopSingleshotTimer => dom.timer = None,
                }
                dom.wake.notify_all();
                Ok(())
            },
        )
    }

    fn console_io(&self, op: ConsoleIoOp<'_>) -> HvResult {
        let id = self.id;
        self.call(
            |c| c.console_io += 1,
            |st| match op {
                ConsoleIoOp::Write(b) => {
                    st.dom_mut(id)?.hv_console.extend_from_slice(b);
                    Ok(())
                }
            },
        )
    }

    fn now_ns(&self) -> u64 {
        self.core.now_ns()
    }

    /// Where the domain mapped shared info, once it has: every later
    /// `EventChannels::new` reuses that mapping instead of moving the page
    /// (which would leave earlier users looking at an empty frame, on Xen
    /// as here).
    fn shared_info(&self) -> Option<(Gfn, SharedMem)> {
        let gfn = self.core.lock().doms.get(&self.id)?.shared_info_gfn?;
        self.mem.page(Gfn(gfn)).map(|m| (Gfn(gfn), m))
    }
}

impl GuestMemory for SimDomain {
    fn alloc_pages(&self, n: usize) -> Option<Gfn> {
        self.mem.alloc_pages(n)
    }
    fn free_pages(&self, gfn: Gfn, n: usize) {
        self.mem.free_pages(gfn, n)
    }
    fn alloc_hole(&self, n: usize) -> Option<Gfn> {
        self.mem.alloc_hole(n)
    }
    fn free_hole(&self, gfn: Gfn, n: usize) {
        self.mem.free_hole(gfn, n)
    }
    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        self.mem.pages(gfn, n)
    }
}
