//! `public/vcpu.h`: vCPU ops used by a single-vCPU guest.

/// `VCPUOP_set_singleshot_timer`.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info`.
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;

/// `VCPU_SSHOTTMR_future` (ignored by current Xen).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

/// `struct vcpu_set_singleshot_timer` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute Xen system time in ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

/// `struct vcpu_register_vcpu_info` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// GFN of the page holding the vcpu_info.
    pub mfn: u64,
    /// Offset within that page.
    pub offset: u32,
    /// Reserved.
    pub rsvd: u32,
}
