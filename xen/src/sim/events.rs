//! Simulated event channels (2-level ABI), checked as Xen 4.17 checks them
//! (`xen/common/event_channel.c`, `event_2l.c`).
//!
//! Pending and mask bits live in the domain's shared info page (a Xen-owned
//! page the guest maps with `XENMAPSPACE_shared_info`), so the guest-side
//! code sees exactly the bits Xen sets. Setting a pending bit wakes the
//! domain's pollers whenever the bit was newly set; the upcall selector and
//! `evtchn_upcall_pending` are raised only for unmasked ports, as in Xen.

use core::mem::offset_of;

use super::{Dom, State};
use crate::abi::domid::DOMID_SELF;
use crate::abi::event_channel::*;
use crate::abi::shared_info::{SharedInfo, VcpuInfo};
use crate::abi::{DomId, Errno, EvtchnPort};
use crate::hypervisor::HvResult;

const PENDING: usize = offset_of!(SharedInfo, evtchn_pending);
const MASK: usize = offset_of!(SharedInfo, evtchn_mask);
const SEL: usize = offset_of!(VcpuInfo, evtchn_pending_sel);
const UPCALL: usize = offset_of!(VcpuInfo, evtchn_upcall_pending);

/// The state of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Port {
    /// Not allocated.
    Free,
    /// Port 0: never handed out.
    Reserved,
    /// Waiting for `remote` to bind.
    Unbound { remote: DomId },
    /// Connected to `rport` of `remote`.
    Interdomain { remote: DomId, rport: EvtchnPort },
    /// Bound to a VIRQ.
    Virq(u32),
}

/// VIRQs bound per vCPU (the others are global, vCPU 0 only).
fn is_per_vcpu_virq(virq: u32) -> bool {
    matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

fn split(port: EvtchnPort) -> (usize, u64) {
    ((port / 64) as usize, 1u64 << (port % 64))
}

impl Dom {
    /// The state of a usable port (allocated, not reserved).
    pub(crate) fn port(&self, port: EvtchnPort) -> Option<Port> {
        self.ports
            .get(port as usize)
            .copied()
            .filter(|p| !matches!(p, Port::Free | Port::Reserved))
    }

    fn free_port(&mut self) -> HvResult<EvtchnPort> {
        if let Some(i) = self.ports.iter().position(|p| *p == Port::Free) {
            return Ok(i as EvtchnPort);
        }
        if self.ports.len() < NR_EVENT_CHANNELS_2L as usize {
            self.ports.push(Port::Free);
            return Ok(self.ports.len() as EvtchnPort - 1);
        }
        Err(Errno::ENOSPC)
    }

    /// Xen's `evtchn_2l_set_pending`.
    pub(crate) fn set_pending(&mut self, port: EvtchnPort) {
        let si = self.mem.xen.page(super::memory::XEN_SHARED_INFO_PAGE);
        let (w, b) = split(port);
        if si.or_u64(PENDING + 8 * w, b) & b != 0 {
            return;
        }
        self.event_gen = self.event_gen.wrapping_add(1);
        let masked = si.load_u64(MASK + 8 * w, core::sync::atomic::Ordering::SeqCst) & b != 0;
        if !masked && si.or_u64(SEL, 1 << w) & (1 << w) == 0 {
            si.store_u8(UPCALL, 1, core::sync::atomic::Ordering::SeqCst);
        }
        self.wake.notify_all();
    }

    pub(crate) fn is_pending(&self, port: EvtchnPort) -> bool {
        let si = self.mem.xen.page(super::memory::XEN_SHARED_INFO_PAGE);
        let (w, b) = split(port);
        si.load_u64(PENDING + 8 * w, core::sync::atomic::Ordering::SeqCst) & b != 0
    }

    pub(crate) fn upcall_pending(&self) -> bool {
        let si = self.mem.xen.page(super::memory::XEN_SHARED_INFO_PAGE);
        si.load_u8(UPCALL, core::sync::atomic::Ordering::SeqCst) != 0
    }

    /// Fire the one-shot timer if its deadline has passed.
    pub(crate) fn fire_timer(&mut self, now: u64) {
        if let Some(t) = self.timer {
            if now >= t {
                self.timer = None;
                if let Some(p) = self.virqs[VIRQ_TIMER as usize] {
                    self.set_pending(p);
                }
            }
        }
    }
}

impl State {
    /// Resolve a target domain: it must exist (`ESRCH`), then the caller
    /// must be it or privileged (`EPERM`, XSM's `XSM_TARGET`).
    fn resolve(&self, caller: DomId, dom: DomId) -> HvResult<DomId> {
        let d = if dom == DOMID_SELF { caller } else { dom };
        if !self.doms.contains_key(&d) {
            return Err(Errno::ESRCH);
        }
        if d != caller && !self.dom(caller)?.privileged {
            return Err(Errno::EPERM);
        }
        Ok(d)
    }

    pub(crate) fn alloc_unbound(&mut self, caller: DomId, a: &mut EvtchnAllocUnbound) -> HvResult {
        let d = self.resolve(caller, a.dom)?;
        let remote = if a.remote_dom == DOMID_SELF {
            caller
        } else {
            a.remote_dom
        };
        let dom = self.dom_mut(d)?;
        let port = dom.free_port()?;
        dom.ports[port as usize] = Port::Unbound { remote };
        a.port = port;
        Ok(())
    }

    pub(crate) fn bind_interdomain(
        &mut self,
        caller: DomId,
        b: &mut EvtchnBindInterdomain,
    ) -> HvResult {
        let rdom = if b.remote_dom == DOMID_SELF {
            caller
        } else {
            b.remote_dom
        };
        let rport = b.remote_port;
        match self.doms.get(&rdom) {
            None => return Err(Errno::ESRCH),
            Some(r) => match r.port(rport) {
                Some(Port::Unbound { remote }) if remote == caller => {}
                _ => return Err(Errno::EINVAL),
            },
        }
        let local = self.dom_mut(caller)?.free_port()?;
        // Binding to our own unbound port must not reuse it as the local end.
        if rdom == caller && local == rport {
            return Err(Errno::EINVAL);
        }
        self.dom_mut(caller)?.ports[local as usize] = Port::Interdomain {
            remote: rdom,
            rport,
        };
        self.dom_mut(rdom)?.ports[rport as usize] = Port::Interdomain {
            remote: caller,
            rport: local,
        };
        // Xen marks the new local port pending, in case the peer signalled
        // before the bind.
        self.dom_mut(caller)?.set_pending(local);
        b.local_port = local;
        Ok(())
    }

    pub(crate) fn bind_virq(&mut self, caller: DomId, b: &mut EvtchnBindVirq) -> HvResult {
        if b.virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if b.vcpu != 0 {
            // Global VIRQs may only be bound on vCPU 0; per-vCPU ones fail
            // the vCPU lookup.
            return Err(if is_per_vcpu_virq(b.virq) {
                Errno::ENOENT
            } else {
                Errno::EINVAL
            });
        }
        let dom = self.dom_mut(caller)?;
        if dom.virqs[b.virq as usize].is_some() {
            return Err(Errno::EEXIST);
        }
        let port = dom.free_port()?;
        dom.ports[port as usize] = Port::Virq(b.virq);
        dom.virqs[b.virq as usize] = Some(port);
        b.port = port;
        Ok(())
    }

    /// Close `port` of domain `d` (also used when a domain dies).
    pub(crate) fn close_port(&mut self, d: DomId, port: EvtchnPort) -> HvResult {
        let st = self.dom(d)?.port(port).ok_or(Errno::EINVAL)?;
        match st {
            Port::Interdomain { remote, rport } => {
                if let Some(r) = self.doms.get_mut(&remote) {
                    if r.ports.get(rport as usize)
                        == Some(&Port::Interdomain {
                            remote: d,
                            rport: port,
                        })
                    {
                        r.ports[rport as usize] = Port::Unbound { remote: d };
                    }
                }
            }
            Port::Virq(v) => self.dom_mut(d)?.virqs[v as usize] = None,
            _ => {}
        }
        let dom = self.dom_mut(d)?;
        dom.ports[port as usize] = Port::Free;
        // Xen's evtchn_free clears the pending bit: a reused port starts idle.
        let (w, b) = split(port);
        dom.mem
            .xen
            .page(super::memory::XEN_SHARED_INFO_PAGE)
            .and_u64(PENDING + 8 * w, !b);
        Ok(())
    }

    pub(crate) fn send(&mut self, caller: DomId, port: EvtchnPort) -> HvResult {
        match self.dom(caller)?.port(port) {
            Some(Port::Interdomain { remote, rport }) => {
                self.dom_mut(caller)?.counters.notifications += 1;
                if let Some(r) = self.doms.get_mut(&remote) {
                    r.set_pending(rport);
                }
                Ok(())
            }
            // Sending on an unbound port is accepted and goes nowhere.
            Some(Port::Unbound { .. }) => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    pub(crate) fn status(&mut self, caller: DomId, s: &mut EvtchnStatus) -> HvResult {
        let d = if s.dom == DOMID_SELF { caller } else { s.dom };
        let dom = self.dom(d)?;
        if s.port as usize >= dom.ports.len() {
            return Err(Errno::EINVAL);
        }
        self.resolve(caller, d)?;
        let dom = self.dom(d)?;
        s.vcpu = 0;
        s.u = Default::default();
        s.status = match dom
            .ports
            .get(s.port as usize)
            .copied()
            .unwrap_or(Port::Free)
        {
            Port::Free | Port::Reserved => EVTCHNSTAT_CLOSED,
            Port::Unbound { remote } => {
                s.u.dom = remote;
                EVTCHNSTAT_UNBOUND
            }
            Port::Interdomain { remote, rport } => {
                s.u.dom = remote;
                s.u.port = rport;
                EVTCHNSTAT_INTERDOMAIN
            }
            Port::Virq(v) => {
                s.u.dom = v as u16;
                s.u.port = 0;
                EVTCHNSTAT_VIRQ
            }
        };
        Ok(())
    }

    pub(crate) fn unmask(&mut self, caller: DomId, port: EvtchnPort) -> HvResult {
        if port >= NR_EVENT_CHANNELS_2L {
            return Err(Errno::EINVAL);
        }
        let dom = self.dom_mut(caller)?;
        if port as usize >= dom.ports.len() {
            return Err(Errno::EINVAL);
        }
        // An unused port inside the table is accepted and left alone.
        if dom.port(port).is_none() {
            return Ok(());
        }
        let si = dom.mem.xen.page(super::memory::XEN_SHARED_INFO_PAGE);
        let (w, b) = split(port);
        if si.and_u64(MASK + 8 * w, !b) & b != 0 && dom.is_pending(port) {
            // Re-raise the upcall for a port that became pending while masked.
            if si.or_u64(SEL, 1 << w) & (1 << w) == 0 {
                si.store_u8(UPCALL, 1, core::sync::atomic::Ordering::SeqCst);
            }
            dom.wake.notify_all();
        }
        Ok(())
    }
}
