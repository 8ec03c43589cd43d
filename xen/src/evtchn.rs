//! Event channels (2-level ABI): binding, signalling, and waiting.
//!
//! Delivery model: this guest takes no interrupts. Xen sets a port's bit in
//! `shared_info.evtchn_pending`; the guest sleeps in `SCHEDOP_poll` on the
//! ports it cares about, with an absolute deadline, and on waking *clears a
//! port's pending bit before looking at what that port signals* (a ring, a
//! xenstore reply). Clearing first makes the scheme race-free: a
//! notification arriving after the clear sets the bit again and the next
//! poll returns at once, whereas clearing after processing could swallow a
//! notification sent between the final ring check and the clear.
//!
//! The shared info page is mapped by [`EventChannels::new`] into a hole
//! frame with `XENMEM_add_to_physmap`; all ports start masked (nothing
//! assumes the initial mask state), and each bound port is unmasked
//! explicitly. The mask does not matter to `SCHEDOP_poll`, but it keeps Xen
//! from raising upcalls for ports nobody handles.

use core::mem::offset_of;
use core::sync::atomic::Ordering;

use crate::abi::domid::DOMID_SELF;
use crate::abi::event_channel::*;
use crate::abi::memory::{XenAddToPhysmap, XENMAPSPACE_SHARED_INFO};
use crate::abi::sched::SCHED_POLL_MAX_PORTS;
use crate::abi::shared_info::SharedInfo;
use crate::abi::{DomId, Errno, EvtchnPort};
use crate::hypervisor::{EvtchnOp, HvResult, MemoryOp, SchedOp};
use crate::memory::{Gfn, SharedMem};
use crate::Platform;

const PENDING_OFF: usize = offset_of!(SharedInfo, evtchn_pending);
const MASK_OFF: usize = offset_of!(SharedInfo, evtchn_mask);

/// Why [`EventChannels::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// At least one of the ports is pending (nothing was cleared).
    Pending,
    /// The deadline passed with no port pending.
    Timeout,
}

/// The event channel service of one guest: its shared info page and the
/// operations on ports. Cloning is cheap (a platform handle and a view).
#[derive(Clone)]
pub struct EventChannels<P: Platform + Clone> {
    p: P,
    shared: SharedMem,
    gfn: Gfn,
}

impl<P: Platform + Clone> EventChannels<P> {
    /// Map the shared info page (unless the platform already has it) and
    /// mask every port.
    pub fn new(p: P) -> HvResult<Self> {
        if let Some((gfn, shared)) = p.shared_info() {
            for w in 0..64 {
                shared.store_u64(MASK_OFF + 8 * w, u64::MAX, Ordering::SeqCst);
            }
            return Ok(EventChannels { p, shared, gfn });
        }
        let gfn = p.alloc_hole(1).ok_or(Errno::ENOMEM)?;
        p.memory_op(MemoryOp::AddToPhysmap(&XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn: gfn.0,
        }))?;
        let shared = p.page(gfn).ok_or(Errno::EFAULT)?;
        for w in 0..64 {
            shared.store_u64(MASK_OFF + 8 * w, u64::MAX, Ordering::SeqCst);
        }
        Ok(EventChannels { p, shared, gfn })
    }

    /// The platform this service runs on.
    pub fn platform(&self) -> &P {
        &self.p
    }

    /// The GFN where shared info is mapped.
    pub fn shared_info_gfn(&self) -> Gfn {
        self.gfn
    }

    /// The shared info page (read-only use: pvclock, wall clock).
    pub fn shared_info(&self) -> SharedMem {
        self.shared
    }

    /// Allocate a port that `remote` may bind to, unmasked.
    pub fn alloc_unbound(&self, remote: DomId) -> HvResult<EvtchnPort> {
        let mut a = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: remote,
            port: 0,
        };
        self.p.event_channel_op(EvtchnOp::AllocUnbound(&mut a))?;
        self.unmask(a.port)?;
        Ok(a.port)
    }

    /// Bind to `remote`'s unbound port `remote_port`, unmasked. Xen marks
    /// the new port pending once, in case the peer signalled before.
    pub fn bind_interdomain(&self, remote: DomId, remote_port: EvtchnPort) -> HvResult<EvtchnPort> {
        let mut b = EvtchnBindInterdomain {
            remote_dom: remote,
            remote_port,
            local_port: 0,
        };
        self.p.event_channel_op(EvtchnOp::BindInterdomain(&mut b))?;
        self.unmask(b.local_port)?;
        Ok(b.local_port)
    }

    /// Bind a VIRQ on vCPU 0, unmasked.
    pub fn bind_virq(&self, virq: u32) -> HvResult<EvtchnPort> {
        let mut b = EvtchnBindVirq {
            virq,
            vcpu: 0,
            port: 0,
        };
        self.p.event_channel_op(EvtchnOp::BindVirq(&mut b))?;
        self.unmask(b.port)?;
        Ok(b.port)
    }

    /// Close a port (the remote end of an interdomain channel becomes
    /// unbound). Masks it and clears its pending bit first.
    pub fn close(&self, port: EvtchnPort) -> HvResult {
        if port < NR_EVENT_CHANNELS_2L {
            self.mask(port);
            self.clear_pending(port);
        }
        self.p
            .event_channel_op(EvtchnOp::Close(&EvtchnClose { port }))
    }

    /// Signal the remote end of `port`.
    pub fn send(&self, port: EvtchnPort) -> HvResult {
        self.p
            .event_channel_op(EvtchnOp::Send(&EvtchnSend { port }))
    }

    /// `EVTCHNOP_status` of one of our ports.
    pub fn status(&self, port: EvtchnPort) -> HvResult<EvtchnStatus> {
        let mut s = EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        };
        self.p.event_channel_op(EvtchnOp::Status(&mut s))?;
        Ok(s)
    }

    /// Unmask a port through Xen (which re-raises it if pending).
    pub fn unmask(&self, port: EvtchnPort) -> HvResult {
        self.p
            .event_channel_op(EvtchnOp::Unmask(&EvtchnUnmask { port }))
    }

    /// Mask a port (guest-side bit).
    pub fn mask(&self, port: EvtchnPort) {
        if let Some((w, b)) = split(port) {
            self.shared.or_u64(MASK_OFF + 8 * w, b);
        }
    }

    /// Is `port` pending?
    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        match split(port) {
            Some((w, b)) => self.shared.load_u64(PENDING_OFF + 8 * w, Ordering::SeqCst) & b != 0,
            None => false,
        }
    }

    /// Clear `port`'s pending bit; returns whether it was set. Call this
    /// *before* examining what the port signals.
    pub fn clear_pending(&self, port: EvtchnPort) -> bool {
        match split(port) {
            Some((w, b)) => self.shared.and_u64(PENDING_OFF + 8 * w, !b) & b != 0,
            None => false,
        }
    }

    /// Sleep until one of `ports` is pending or Xen system time reaches
    /// `deadline` (ns; `None` = no deadline). Pending bits are left set:
    /// the caller clears each with [`EventChannels::clear_pending`] before
    /// handling it.
    ///
    /// At most 128 ports (`SCHEDOP_poll`'s limit); more is `EINVAL`.
    pub fn wait(&self, ports: &[EvtchnPort], deadline: Option<u64>) -> HvResult<Wake> {
        if ports.len() > SCHED_POLL_MAX_PORTS {
            return Err(Errno::EINVAL);
        }
        loop {
            if ports.iter().any(|&p| self.is_pending(p)) {
                return Ok(Wake::Pending);
            }
            if let Some(d) = deadline {
                if self.p.now_ns() >= d {
                    return Ok(Wake::Timeout);
                }
            }
            self.p.sched_op(SchedOp::Poll {
                ports,
                timeout: deadline.unwrap_or(0),
            })?;
        }
    }
}

fn split(port: EvtchnPort) -> Option<(usize, u64)> {
    if port < NR_EVENT_CHANNELS_2L {
        Some(((port / 64) as usize, 1u64 << (port % 64)))
    } else {
        None
    }
}
