//! `public/memory.h`: `memory_op` commands and their arguments.

use super::DomId;

/// `XENMEM_increase_reservation`.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map`.
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_remove_from_physmap`.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;

/// `XENMAPSPACE_shared_info`: map the shared info page (idx 0).
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`: map grant table frame `idx`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`.
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`.
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// `struct xen_add_to_physmap` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// Domain whose physmap changes (`DOMID_SELF`).
    pub domid: DomId,
    /// Number of pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (grant frame number, 0 for shared info).
    pub idx: u64,
    /// GFN where the page must appear.
    pub gpfn: u64,
}

/// `struct xen_remove_from_physmap` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose physmap changes (`DOMID_SELF`).
    pub domid: DomId,
    /// GFN to unmap.
    pub gpfn: u64,
}

/// `struct xen_memory_reservation` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Guest pointer to an array of GFNs.
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// log2 of pages per extent.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    /// Target domain.
    pub domid: DomId,
}

/// `struct xen_memory_map` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// In: capacity of the buffer in entries; out: entries written.
    pub nr_entries: u32,
    /// Guest pointer to an array of E820 entries (20 bytes each, packed).
    pub buffer: u64,
}

/// E820 / memory map entry types.
pub mod e820 {
    /// Usable RAM.
    pub const RAM: u32 = 1;
    /// Reserved.
    pub const RESERVED: u32 = 2;
    /// ACPI reclaimable.
    pub const ACPI: u32 = 3;
    /// ACPI NVS.
    pub const NVS: u32 = 4;
    /// Unusable.
    pub const UNUSABLE: u32 = 5;
}
