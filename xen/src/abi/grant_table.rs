//! `public/grant_table.h`: grant table v1 entries and grant table ops.

use super::{DomId, GrantHandle, GrantRef};

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`.
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`.
pub const GNTTABOP_QUERY_SIZE: u32 = 6;

/// Grant refs below this are reserved (console 0, xenstore 1).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved ref: the console ring page, filled by the toolstack.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// Reserved ref: the xenstore ring page, filled by the toolstack.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;
/// v1 entries per 4 KiB grant table frame.
pub const GRANT_ENTRIES_PER_FRAME: u32 = 512;

/// Entry type mask (bits 1:0).
pub const GTF_TYPE_MASK: u16 = 3;
/// No access.
pub const GTF_INVALID: u16 = 0;
/// `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Page transfer (PV only).
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Transitive grant (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// The grantee may only read.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by Xen while the grantee reads (mapped or copying).
pub const GTF_READING: u16 = 1 << 3;
/// Set by Xen while the grantee writes (mapped writable or copying).
pub const GTF_WRITING: u16 = 1 << 4;

/// `GNTMAP_device_map`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// `GNTMAP_host_map`: the only mapping kind HVM/PVH guests may use.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_application_map`.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `GNTMAP_contains_pte`.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// `GNTCOPY_source_gref`: the source is a grant ref, not a GFN.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the destination is a grant ref, not a GFN.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// Grant operation status codes (`GNTST_*`, `int16_t`).
pub mod status {
    /// Success.
    pub const OKAY: i16 = 0;
    /// General undefined error.
    pub const GENERAL_ERROR: i16 = -1;
    /// Unrecognised domain id.
    pub const BAD_DOMAIN: i16 = -2;
    /// Unrecognised or inappropriate grant ref.
    pub const BAD_GNTREF: i16 = -3;
    /// Unrecognised or inappropriate handle.
    pub const BAD_HANDLE: i16 = -4;
    /// Inappropriate virtual address to map.
    pub const BAD_VIRT_ADDR: i16 = -5;
    /// Inappropriate device address to unmap.
    pub const BAD_DEV_ADDR: i16 = -6;
    /// Out of space in I/O MMU.
    pub const NO_DEVICE_SPACE: i16 = -7;
    /// Not enough privilege for operation.
    pub const PERMISSION_DENIED: i16 = -8;
    /// Specified page was invalid for op.
    pub const BAD_PAGE: i16 = -9;
    /// Copy arguments cross a page boundary.
    pub const BAD_COPY_ARG: i16 = -10;
    /// Page address size too large.
    pub const ADDRESS_TOO_BIG: i16 = -11;
    /// Operation not done; try again.
    pub const EAGAIN: i16 = -12;
    /// Out of space (handles etc.).
    pub const NO_SPACE: i16 = -13;

    /// The symbolic name of a status code.
    pub fn name(st: i16) -> &'static str {
        match st {
            OKAY => "okay",
            GENERAL_ERROR => "general_error",
            BAD_DOMAIN => "bad_domain",
            BAD_GNTREF => "bad_gntref",
            BAD_HANDLE => "bad_handle",
            BAD_VIRT_ADDR => "bad_virt_addr",
            BAD_DEV_ADDR => "bad_dev_addr",
            NO_DEVICE_SPACE => "no_device_space",
            PERMISSION_DENIED => "permission_denied",
            BAD_PAGE => "bad_page",
            BAD_COPY_ARG => "bad_copy_arg",
            ADDRESS_TOO_BIG => "address_too_big",
            EAGAIN => "eagain",
            NO_SPACE => "no_space",
            _ => "unknown",
        }
    }
}

/// `struct grant_entry_v1` (8 bytes), an element of a domain's own grant table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// `GTF_*`.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The GFN being granted.
    pub frame: u32,
}

/// `struct gnttab_map_grant_ref` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// In: guest-physical address where the page appears (HVM/PVH).
    pub host_addr: u64,
    /// In: `GNTMAP_*`.
    pub flags: u32,
    /// In: grant reference in the granter's table.
    pub r#ref: GrantRef,
    /// In: granting domain.
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Out: handle for the unmap.
    pub handle: GrantHandle,
    /// Out: bus address (unused for PVH).
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// In: the guest-physical address used for the map.
    pub host_addr: u64,
    /// In: 0.
    pub dev_bus_addr: u64,
    /// In: the handle from the map.
    pub handle: GrantHandle,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// One side of a grant copy: `union { grant_ref_t ref; xen_pfn_t gmfn; }`
/// stored as a `u64`, plus domid and page offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// The grant ref (if the matching `GNTCOPY_*_gref` flag is set) or the GFN.
    pub u: u64,
    /// The domain: the granter for a gref, `DOMID_SELF` for a GFN.
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
}

/// `struct gnttab_copy` (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// Where to copy from.
    pub source: GnttabCopyPtr,
    /// Where to copy to.
    pub dest: GnttabCopyPtr,
    /// Bytes to copy; `offset + len` must stay within the page on both sides.
    pub len: u16,
    /// `GNTCOPY_*`.
    pub flags: u16,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// `struct gnttab_query_size` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// In: `DOMID_SELF`.
    pub dom: DomId,
    /// Out: current number of frames.
    pub nr_frames: u32,
    /// Out: maximum number of frames.
    pub max_nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// `struct gnttab_setup_table` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// In: `DOMID_SELF`.
    pub dom: DomId,
    /// In: number of frames.
    pub nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Guest pointer to the frame list.
    pub frame_list: u64,
}
