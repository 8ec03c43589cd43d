//! `public/event_channel.h`: event channel ops (2-level ABI) and VIRQs.

use super::{DomId, EvtchnPort};

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`.
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status`.
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`.
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`.
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u32 = 9;

/// Ports available to a 64-bit guest with the 2-level ABI.
pub const NR_EVENT_CHANNELS_2L: u32 = 4096;

/// `EVTCHNSTAT_closed`.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `VIRQ_TIMER`: the per-vCPU one-shot timer fired.
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG`.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE`.
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC`: a domain died (dom0).
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_XENOPROF` (per vCPU).
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_XENPMU` (per vCPU).
pub const VIRQ_XENPMU: u32 = 13;
/// Number of VIRQs.
pub const NR_VIRQS: u32 = 24;

/// `struct evtchn_alloc_unbound` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// In: `DOMID_SELF`.
    pub dom: DomId,
    /// In: the domain allowed to bind.
    pub remote_dom: DomId,
    /// Out: the new local port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// In: the domain that allocated the unbound port.
    pub remote_dom: DomId,
    /// In: its port.
    pub remote_port: EvtchnPort,
    /// Out: our new local port.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// In: `VIRQ_*`.
    pub virq: u32,
    /// In: vCPU.
    pub vcpu: u32,
    /// Out: port.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_ipi` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// In: vCPU.
    pub vcpu: u32,
    /// Out: port.
    pub port: EvtchnPort,
}

/// `struct evtchn_close` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    /// The local port.
    pub port: EvtchnPort,
}

/// `struct evtchn_send` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    /// The local port.
    pub port: EvtchnPort,
}

/// `struct evtchn_unmask` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    /// The local port.
    pub port: EvtchnPort,
}

/// The `interdomain` arm of the `evtchn_status` union.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatusInterdomain {
    /// The remote domain.
    pub dom: DomId,
    /// The remote port.
    pub port: EvtchnPort,
}

/// `struct evtchn_status` (24 bytes). The C union at offset 16 is kept as
/// its largest arm ([`EvtchnStatusInterdomain`]); for `unbound` only `dom`
/// is meaningful, for `virq` the first 4 bytes hold the VIRQ number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// In: domain (`DOMID_SELF`).
    pub dom: DomId,
    /// In: port.
    pub port: EvtchnPort,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: vCPU notified.
    pub vcpu: u32,
    /// Out: the union.
    pub u: EvtchnStatusInterdomain,
}
