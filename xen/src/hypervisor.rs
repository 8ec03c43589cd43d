//! The hypercall boundary: one trait method per hypercall in use.
//!
//! Everything above this trait (grant tables, event channels, rings,
//! xenstore, the drivers, the firewall) is generic over [`Hypervisor`], and
//! has two implementations: the real one in the unikernel (through the
//! hypercall page) and [`crate::sim`], an in-process hypervisor that checks
//! each call as Xen does. Both receive the same ABI structs in the same
//! sequences, so the simulator exercises exactly what the unikernel issues.
//!
//! Each op is an enum naming the sub-operation and borrowing its ABI
//! argument(s) from [`crate::abi`]; "out" fields are written back into those
//! structs, as Xen writes them back into guest memory. Batched ops
//! (`GNTTABOP_copy`, map, unmap) take a slice, and report a status per
//! element besides the hypercall's own return value.
//!
//! The only argument not passed as its ABI struct is `SCHEDOP_poll`'s port
//! list: the ABI struct holds a guest pointer, so the trait takes a slice
//! and the real backend builds the `sched_poll` struct around it.

use crate::abi::event_channel::*;
use crate::abi::grant_table::*;
use crate::abi::hvm::*;
use crate::abi::memory::*;
use crate::abi::sched::*;
use crate::abi::vcpu::*;
use crate::abi::Errno;

/// The result of a hypercall: `Ok(value)` for a non-negative return,
/// `Err(errno)` for `-errno`.
pub type HvResult<T = ()> = Result<T, Errno>;

/// `memory_op` sub-operations.
#[derive(Debug)]
pub enum MemoryOp<'a> {
    /// `XENMEM_add_to_physmap`.
    AddToPhysmap(&'a XenAddToPhysmap),
    /// `XENMEM_remove_from_physmap`.
    RemoveFromPhysmap(&'a XenRemoveFromPhysmap),
}

/// `grant_table_op` sub-operations.
#[derive(Debug)]
pub enum GnttabOp<'a> {
    /// `GNTTABOP_map_grant_ref`, batched.
    MapGrantRef(&'a mut [GnttabMapGrantRef]),
    /// `GNTTABOP_unmap_grant_ref`, batched.
    UnmapGrantRef(&'a mut [GnttabUnmapGrantRef]),
    /// `GNTTABOP_copy`, batched.
    Copy(&'a mut [GnttabCopy]),
    /// `GNTTABOP_query_size`.
    QuerySize(&'a mut GnttabQuerySize),
}

/// `event_channel_op` sub-operations.
#[derive(Debug)]
pub enum EvtchnOp<'a> {
    /// `EVTCHNOP_alloc_unbound`.
    AllocUnbound(&'a mut EvtchnAllocUnbound),
    /// `EVTCHNOP_bind_interdomain`.
    BindInterdomain(&'a mut EvtchnBindInterdomain),
    /// `EVTCHNOP_bind_virq`.
    BindVirq(&'a mut EvtchnBindVirq),
    /// `EVTCHNOP_close`.
    Close(&'a EvtchnClose),
    /// `EVTCHNOP_send`.
    Send(&'a EvtchnSend),
    /// `EVTCHNOP_status`.
    Status(&'a mut EvtchnStatus),
    /// `EVTCHNOP_unmask`.
    Unmask(&'a EvtchnUnmask),
}

/// `sched_op` sub-operations.
#[derive(Debug)]
pub enum SchedOp<'a> {
    /// `SCHEDOP_yield`.
    Yield,
    /// `SCHEDOP_block`.
    Block,
    /// `SCHEDOP_shutdown`. Does not return on real Xen.
    Shutdown(&'a SchedShutdown),
    /// `SCHEDOP_poll`: sleep until one of `ports` is pending or the
    /// absolute Xen system time `timeout` (ns, 0 = none) passes.
    Poll {
        /// At most [`SCHED_POLL_MAX_PORTS`] local ports.
        ports: &'a [u32],
        /// Absolute deadline in Xen system time (ns); 0 means none.
        timeout: u64,
    },
}

/// `hvm_op` sub-operations.
#[derive(Debug)]
pub enum HvmOp<'a> {
    /// `HVMOP_set_param`.
    SetParam(&'a XenHvmParam),
    /// `HVMOP_get_param`.
    GetParam(&'a mut XenHvmParam),
    /// `HVMOP_get_time`.
    GetTime(&'a mut XenHvmGetTime),
    /// `HVMOP_set_evtchn_upcall_vector`.
    SetEvtchnUpcallVector(&'a XenHvmEvtchnUpcallVector),
}

/// `vcpu_op` sub-operations (on the calling vCPU).
#[derive(Debug)]
pub enum VcpuOp<'a> {
    /// `VCPUOP_set_singleshot_timer`: `VIRQ_TIMER` fires at the deadline.
    SetSingleshotTimer(&'a VcpuSetSingleshotTimer),
    /// `VCPUOP_stop_singleshot_timer`.
    StopSingleshotTimer,
}

/// `console_io` sub-operations.
#[derive(Debug)]
pub enum ConsoleIoOp<'a> {
    /// `CONSOLEIO_write`: bytes for the hypervisor console (`xl dmesg`).
    Write(&'a [u8]),
}

/// The hypercalls a guest of this project issues.
///
/// Implementations must behave as Xen 4.17 does for a PVH domU, including
/// the error each op returns for bad arguments. Methods take `&self`: a
/// hypercall has no Rust-level exclusive state.
pub trait Hypervisor {
    /// `memory_op`.
    fn memory_op(&self, op: MemoryOp<'_>) -> HvResult;
    /// `grant_table_op`. Per-element status is written into the structs;
    /// the return value reports errors of the call as a whole.
    fn grant_table_op(&self, op: GnttabOp<'_>) -> HvResult;
    /// `event_channel_op`.
    fn event_channel_op(&self, op: EvtchnOp<'_>) -> HvResult;
    /// `sched_op`.
    fn sched_op(&self, op: SchedOp<'_>) -> HvResult;
    /// `hvm_op`.
    fn hvm_op(&self, op: HvmOp<'_>) -> HvResult;
    /// `vcpu_op` on the calling vCPU.
    fn vcpu_op(&self, op: VcpuOp<'_>) -> HvResult;
    /// `console_io`.
    fn console_io(&self, op: ConsoleIoOp<'_>) -> HvResult;

    /// Current Xen system time in ns: the time base of every absolute
    /// timeout. PVH reads it from pvclock without a hypercall; the
    /// simulator from the host's monotonic clock.
    fn now_ns(&self) -> u64;

    /// The shared info page and its GFN, if the platform mapped it already
    /// (the unikernel does at boot, for pvclock). `None` lets
    /// [`crate::evtchn::EventChannels::new`] map it.
    fn shared_info(&self) -> Option<(crate::memory::Gfn, crate::memory::SharedMem)> {
        None
    }
}

/// Convenience wrappers shared by every user of a [`Hypervisor`].
pub trait HypervisorExt: Hypervisor {
    /// `HVMOP_get_param` for `DOMID_SELF`.
    fn get_param(&self, index: u32) -> HvResult<u64> {
        let mut p = XenHvmParam {
            domid: crate::abi::domid::DOMID_SELF,
            index,
            ..Default::default()
        };
        self.hvm_op(HvmOp::GetParam(&mut p))?;
        Ok(p.value)
    }

    /// `SCHEDOP_shutdown` with `reason` (`SHUTDOWN_*`).
    fn shutdown(&self, reason: u32) -> HvResult {
        self.sched_op(SchedOp::Shutdown(&SchedShutdown { reason }))
    }
}

impl<H: Hypervisor + ?Sized> HypervisorExt for H {}
