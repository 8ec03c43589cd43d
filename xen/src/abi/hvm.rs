//! `public/hvm/hvm_op.h`, `public/hvm/params.h` and
//! `public/arch-x86/hvm/start_info.h`.

use super::DomId;

/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_get_time`.
pub const HVMOP_GET_TIME: u32 = 10;
/// `HVMOP_set_evtchn_upcall_vector`.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;

/// `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: GFN of the xenstore ring.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: local port of the xenstore channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`: GFN of the PV console ring.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: local port of the console channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_VM86_TSS`.
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION`.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR`.
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M`.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH`.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED`.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_NR_PARAMS`.
pub const HVM_NR_PARAMS: u32 = 39;

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `struct xen_hvm_param` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    /// `DOMID_SELF`.
    pub domid: DomId,
    /// Padding.
    pub pad: u16,
    /// `HVM_PARAM_*`.
    pub index: u32,
    /// In for set, out for get.
    pub value: u64,
}

/// `struct xen_hvm_get_time` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmGetTime {
    /// Out: Xen system time in ns.
    pub now: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    /// vCPU.
    pub vcpu: u32,
    /// Vector (>= 0x10).
    pub vector: u8,
}

/// `struct hvm_start_info` (56 bytes), pointed to by `ebx` at PVH entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version (1 on Xen 4.17).
    pub version: u32,
    /// `SIF_*`.
    pub flags: u32,
    /// Entries in the module list.
    pub nr_modules: u32,
    /// GPA of the module list.
    pub modlist_paddr: u64,
    /// GPA of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// GPA of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// GPA of the memory map (v1+).
    pub memmap_paddr: u64,
    /// Entries in the memory map (v1+).
    pub memmap_entries: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `struct hvm_memmap_table_entry` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// E820 type.
    pub r#type: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmModlistEntry {
    /// GPA of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// GPA of its command line.
    pub cmdline_paddr: u64,
    /// Must be 0.
    pub reserved: u64,
}
