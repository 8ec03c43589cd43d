//! Per-domain counters kept by the simulated hypervisor, for tests and
//! benchmarks: how many hypercalls of each kind a domain issued, how many
//! notifications it sent, and how much it copied and mapped through grants.

/// A snapshot of one domain's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `memory_op` calls.
    pub memory_op: u64,
    /// `grant_table_op` calls (a batch counts once).
    pub grant_table_op: u64,
    /// `event_channel_op` calls.
    pub event_channel_op: u64,
    /// `sched_op` calls.
    pub sched_op: u64,
    /// `hvm_op` calls.
    pub hvm_op: u64,
    /// `vcpu_op` calls.
    pub vcpu_op: u64,
    /// `console_io` calls.
    pub console_io: u64,
    /// `EVTCHNOP_send` calls that reached a bound port.
    pub notifications: u64,
    /// `GNTTABOP_copy` elements processed successfully.
    pub grant_copies: u64,
    /// Bytes moved by successful grant copies.
    pub grant_copy_bytes: u64,
    /// Foreign pages mapped successfully.
    pub grant_maps: u64,
    /// Foreign pages unmapped successfully.
    pub grant_unmaps: u64,
}

impl Counters {
    /// Total hypercalls of every kind.
    pub fn hypercalls(&self) -> u64 {
        self.memory_op
            + self.grant_table_op
            + self.event_channel_op
            + self.sched_op
            + self.hvm_op
            + self.vcpu_op
            + self.console_io
    }

    /// The difference `self - earlier`, field by field.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            memory_op: self.memory_op - earlier.memory_op,
            grant_table_op: self.grant_table_op - earlier.grant_table_op,
            event_channel_op: self.event_channel_op - earlier.event_channel_op,
            sched_op: self.sched_op - earlier.sched_op,
            hvm_op: self.hvm_op - earlier.hvm_op,
            vcpu_op: self.vcpu_op - earlier.vcpu_op,
            console_io: self.console_io - earlier.console_io,
            notifications: self.notifications - earlier.notifications,
            grant_copies: self.grant_copies - earlier.grant_copies,
            grant_copy_bytes: self.grant_copy_bytes - earlier.grant_copy_bytes,
            grant_maps: self.grant_maps - earlier.grant_maps,
            grant_unmaps: self.grant_unmaps - earlier.grant_unmaps,
        }
    }
}
