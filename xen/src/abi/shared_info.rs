//! `public/xen.h` + `public/arch-x86/xen-x86_64.h`: the shared info page and
//! `vcpu_info`, 64-bit layout. Mirrored for layout only: the page is written
//! by Xen concurrently, so it is accessed by offset through
//! [`crate::memory::SharedMem`], never by reference.

/// vCPU slots in the shared info page.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `struct vcpu_time_info` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Seqlock: odd while Xen updates.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// System time (ns) at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-ns multiplier (32.32 fixed point).
    pub tsc_to_system_mul: u32,
    /// TSC shift before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    /// PV only.
    pub cr2: u64,
    /// Padding.
    pub pad: u64,
}

/// `struct vcpu_info` (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set by Xen when an event became pending; the guest clears it.
    pub evtchn_upcall_pending: u8,
    /// PV only.
    pub evtchn_upcall_mask: u8,
    /// Selector: bit w means look at `evtchn_pending[w]`.
    pub evtchn_pending_sel: u64,
    /// Arch part.
    pub arch: ArchVcpuInfo,
    /// pvclock.
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (48 bytes, PV only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    /// PV only.
    pub max_pfn: u64,
    /// PV only.
    pub pfn_to_mfn_frame_list_list: u64,
    /// PV only.
    pub nmi_reason: u64,
    /// PV only.
    pub p2m_cr3: u64,
    /// PV only.
    pub p2m_vaddr: u64,
    /// PV only.
    pub p2m_generation: u64,
}

/// `struct shared_info` (3136 bytes used of its page).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SharedInfo {
    /// Per-vCPU info.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Pending bits, port p at bit p%64 of word p/64.
    pub evtchn_pending: [u64; 64],
    /// Mask bits, same indexing.
    pub evtchn_mask: [u64; 64],
    /// Wall clock seqlock.
    pub wc_version: u32,
    /// Wall clock seconds (low 32 bits).
    pub wc_sec: u32,
    /// Wall clock nanoseconds.
    pub wc_nsec: u32,
    /// Wall clock seconds (high 32 bits).
    pub wc_sec_hi: u32,
    /// Arch part.
    pub arch: ArchSharedInfo,
}
