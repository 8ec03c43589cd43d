//! ABI layout test: every `#[repr(C)]` mirror in `xen::abi` against the C
//! compiler's view of Debian's `libxen-dev` headers (`/usr/include/xen`).
//!
//! `tests/abi_layout/layout.c` includes the real headers and prints
//! `size`, `field` (offset and size), `const` and `errno` lines. This test
//! builds it with `cc`, runs it, and compares each line with a table built
//! here from `size_of`, `offset_of!` and the Rust constants. It fails,
//! listing every problem at once, when a value differs or when a Rust entry
//! has no C line (so nothing goes unchecked by a typo or a missing print).
//!
//! A second test reads `src/abi/**/*.rs` as text and fails when a
//! `pub struct`, one of its fields, or a `pub const` is missing from the
//! table, so a newly mirrored item cannot escape the comparison.
//!
//! Run: `cargo test -p xen --test abi_layout -- --nocapture` (the summary
//! line says how much was checked). Needs `cc` (gcc) and `libxen-dev`;
//! `XEN_INCLUDE_DIR` may name another directory holding `xen/xen.h`.

use core::mem::{offset_of, size_of};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use xen::abi::console::*;
use xen::abi::domid::*;
use xen::abi::elfnote::*;
use xen::abi::event_channel::*;
use xen::abi::grant_table::{self, *};
use xen::abi::hvm::*;
use xen::abi::memory::{self, *};
use xen::abi::netif::*;
use xen::abi::ring::*;
use xen::abi::sched::*;
use xen::abi::shared_info::*;
use xen::abi::vchan::*;
use xen::abi::vcpu::*;
use xen::abi::version::*;
use xen::abi::xs_wire::{self, *};
use xen::abi::{console_io, hypercall};
use xen::abi::{DomId, Errno, EvtchnPort, GrantHandle, GrantRef, PAGE_SHIFT, PAGE_SIZE};

/// A Rust type and the C object it mirrors.
struct TypeEntry {
    /// The Rust name (`GnttabCopy`).
    rust: &'static str,
    /// The C key printed by `layout.c` (`gnttab_copy`, `gnttab_copy.source`).
    ckey: &'static str,
    /// `size_of` in Rust.
    size: usize,
    /// Every mirrored field, nested ones included.
    fields: Vec<FieldEntry>,
}

/// One field path of a mirrored type.
struct FieldEntry {
    /// The Rust path (`source.u`, `r#type`).
    rust: String,
    /// The C member path, relative to the type's C key.
    cpath: String,
    /// `offset_of!` in Rust.
    offset: usize,
    /// `size_of` of the field's type in Rust.
    size: usize,
}

/// A Rust constant and the C macro or enum value it mirrors.
struct ConstEntry {
    /// The C name printed by `layout.c`.
    cname: &'static str,
    /// The Rust expression, as written in the table.
    rust: &'static str,
    /// Its value.
    value: i128,
}

/// Size of a field's type, named by a projection closure (no value needed).
fn field_size<T, F>(_project: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Build a [`FieldEntry`]: the C path defaults to the Rust path without `r#`.
fn field(segments: &[&str], cpath: Option<&str>, offset: usize, size: usize) -> FieldEntry {
    let rust = segments.join(".");
    let default: Vec<&str> = segments
        .iter()
        .map(|s| s.trim_start_matches("r#"))
        .collect();
    FieldEntry {
        rust,
        cpath: cpath.map_or_else(|| default.join("."), str::to_owned),
        offset,
        size,
    }
}

/// `Type = "c_key" { field, nested.field, rust_field => "c.path", ... }`:
/// one line per field; `=> "..."` when the C member path differs.
macro_rules! types {
    ($( $T:ident = $ckey:literal { $( $($f:ident).+ $(=> $cf:literal)? ),* $(,)? } )*) => {
        vec![$(
            TypeEntry {
                rust: stringify!($T),
                ckey: $ckey,
                size: size_of::<$T>(),
                fields: vec![$(
                    field(
                        &[$(stringify!($f)),+],
                        None $(.or(Some($cf)))?,
                        offset_of!($T, $($f).+),
                        field_size(|s: &$T| &s.$($f).+),
                    )
                ),*],
            },
        )*]
    };
}

/// `"C_NAME" = rust_expr,` one line per constant.
macro_rules! consts {
    ($( $c:literal = $v:expr ),* $(,)?) => {
        vec![$( ConstEntry { cname: $c, rust: stringify!($v), value: $v as i128 } ),*]
    };
}

/// Every mirrored struct of `xen::abi`, with every field.
fn struct_table() -> Vec<TypeEntry> {
    types! {
        // public/xen.h, arch-x86/xen.h: the shared info page.
        VcpuTimeInfo = "vcpu_time_info" {
            version, pad0, tsc_timestamp, system_time, tsc_to_system_mul, tsc_shift, flags, pad1,
        }
        ArchVcpuInfo = "arch_vcpu_info" { cr2, pad }
        VcpuInfo = "vcpu_info" {
            evtchn_upcall_pending, evtchn_upcall_mask, evtchn_pending_sel, arch, time,
        }
        ArchSharedInfo = "arch_shared_info" {
            max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3, p2m_vaddr, p2m_generation,
        }
        SharedInfo = "shared_info" {
            vcpu_info, evtchn_pending, evtchn_mask, wc_version, wc_sec, wc_nsec, wc_sec_hi, arch,
        }
        XenFeatureInfo = "xen_feature_info" { submap_idx, submap }
        // The errno space: Xen's `enum xen_errno` is an int.
        Errno = "xen_errno" {}

        // public/memory.h
        XenAddToPhysmap = "xen_add_to_physmap" { domid, size, space, idx, gpfn }
        XenRemoveFromPhysmap = "xen_remove_from_physmap" { domid, gpfn }
        XenMemoryReservation = "xen_memory_reservation" {
            extent_start, nr_extents, extent_order, mem_flags, domid,
        }
        XenMemoryMap = "xen_memory_map" { nr_entries, buffer }

        // public/grant_table.h
        GrantEntryV1 = "grant_entry_v1" { flags, domid, frame }
        GnttabMapGrantRef = "gnttab_map_grant_ref" {
            host_addr, flags, r#ref, dom, status, handle, dev_bus_addr,
        }
        GnttabUnmapGrantRef = "gnttab_unmap_grant_ref" { host_addr, dev_bus_addr, handle, status }
        // The anonymous struct of `source` and `dest`; `u` is the whole union.
        GnttabCopyPtr = "gnttab_copy.source" { u, domid, offset }
        GnttabCopy = "gnttab_copy" {
            source, source.u, source.domid, source.offset,
            dest, dest.u, dest.domid, dest.offset,
            len, flags, status,
        }
        GnttabQuerySize = "gnttab_query_size" { dom, nr_frames, max_nr_frames, status }
        GnttabSetupTable = "gnttab_setup_table" { dom, nr_frames, status, frame_list }

        // public/event_channel.h
        EvtchnAllocUnbound = "evtchn_alloc_unbound" { dom, remote_dom, port }
        EvtchnBindInterdomain = "evtchn_bind_interdomain" { remote_dom, remote_port, local_port }
        EvtchnBindVirq = "evtchn_bind_virq" { virq, vcpu, port }
        EvtchnBindIpi = "evtchn_bind_ipi" { vcpu, port }
        EvtchnClose = "evtchn_close" { port }
        EvtchnSend = "evtchn_send" { port }
        EvtchnUnmask = "evtchn_unmask" { port }
        EvtchnStatusInterdomain = "evtchn_status.u.interdomain" { dom, port }
        // `u` is compared with the whole C union (the arm must cover it),
        // its members with the `interdomain` arm.
        EvtchnStatus = "evtchn_status" {
            dom, port, status, vcpu,
            u,
            u.dom => "u.interdomain.dom",
            u.port => "u.interdomain.port",
        }

        // public/sched.h, public/vcpu.h
        SchedShutdown = "sched_shutdown" { reason }
        SchedPoll = "sched_poll" { ports, nr_ports, timeout }
        VcpuSetSingleshotTimer = "vcpu_set_singleshot_timer" { timeout_abs_ns, flags }
        VcpuRegisterVcpuInfo = "vcpu_register_vcpu_info" { mfn, offset, rsvd }

        // public/hvm/hvm_op.h, public/arch-x86/hvm/start_info.h
        XenHvmParam = "xen_hvm_param" { domid, pad, index, value }
        XenHvmGetTime = "xen_hvm_get_time" { now }
        XenHvmEvtchnUpcallVector = "xen_hvm_evtchn_upcall_vector" { vcpu, vector }
        HvmStartInfo = "hvm_start_info" {
            magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr, rsdp_paddr,
            memmap_paddr, memmap_entries, reserved,
        }
        HvmMemmapTableEntry = "hvm_memmap_table_entry" { addr, size, r#type, reserved }
        HvmModlistEntry = "hvm_modlist_entry" { paddr, size, cmdline_paddr, reserved }

        // public/io/ring.h: the header of `struct netif_tx_sring` (its size
        // is the offset of `ring`).
        SringHeader = "sring_header" {
            req_prod, req_event, rsp_prod, rsp_event, pvt, pad => "__pad",
        }

        // public/io/netif.h
        NetifTxRequest = "netif_tx_request" { gref, offset, flags, id, size }
        NetifTxResponse = "netif_tx_response" { id, status }
        NetifRxRequest = "netif_rx_request" { id, pad, gref }
        NetifRxResponse = "netif_rx_response" { id, offset, flags, status }
        NetifExtraInfoGso = "netif_extra_info.u.gso" { size, r#type, pad, features }
        // `gso` stands for the whole union `u`, its members for `u.gso`.
        NetifExtraInfo = "netif_extra_info" {
            r#type, flags,
            gso => "u",
            gso.size => "u.gso.size",
            gso.r#type => "u.gso.type",
            gso.pad => "u.gso.pad",
            gso.features => "u.gso.features",
        }

        // public/io/xs_wire.h, public/io/console.h, public/io/libxenvchan.h
        XenstoreDomainInterface = "xenstore_domain_interface" {
            req, rsp, req_cons, req_prod, rsp_cons, rsp_prod, server_features, connection, error,
        }
        XsdSockmsg = "xsd_sockmsg" { r#type, req_id, tx_id, len }
        XenconsInterface = "xencons_interface" {
            r#in, out, in_cons, in_prod, out_cons, out_prod,
        }
        RingShared = "ring_shared" { cons, prod }
        VchanInterface = "vchan_interface" {
            left, right, left_order, right_order, cli_live, srv_live, cli_notify, srv_notify,
        }
    }
}

/// The scalar type aliases of `xen::abi`.
fn alias_table() -> Vec<TypeEntry> {
    types! {
        DomId = "domid_t" {}
        EvtchnPort = "evtchn_port_t" {}
        GrantRef = "grant_ref_t" {}
        GrantHandle = "grant_handle_t" {}
    }
}

/// Size of a ring slot: the union of request and response.
const fn slot(req: usize, rsp: usize) -> usize {
    if req > rsp {
        req
    } else {
        rsp
    }
}

/// Every constant of `xen::abi` that the headers define (or that follows
/// from them: array sizes, derived counts), under its C name.
fn const_table() -> Vec<ConstEntry> {
    let tx_slot = slot(size_of::<NetifTxRequest>(), size_of::<NetifTxResponse>());
    let rx_slot = slot(size_of::<NetifRxRequest>(), size_of::<NetifRxResponse>());
    consts! {
        // public/xen.h
        "__HYPERVISOR_memory_op" = hypercall::MEMORY_OP,
        "__HYPERVISOR_set_timer_op" = hypercall::SET_TIMER_OP,
        "__HYPERVISOR_xen_version" = hypercall::XEN_VERSION,
        "__HYPERVISOR_console_io" = hypercall::CONSOLE_IO,
        "__HYPERVISOR_grant_table_op" = hypercall::GRANT_TABLE_OP,
        "__HYPERVISOR_vcpu_op" = hypercall::VCPU_OP,
        "__HYPERVISOR_sched_op" = hypercall::SCHED_OP,
        "__HYPERVISOR_event_channel_op" = hypercall::EVENT_CHANNEL_OP,
        "__HYPERVISOR_hvm_op" = hypercall::HVM_OP,
        "CONSOLEIO_write" = console_io::CONSOLEIO_WRITE,
        "CONSOLEIO_read" = console_io::CONSOLEIO_READ,
        "DOMID_FIRST_RESERVED" = DOMID_FIRST_RESERVED,
        "DOMID_SELF" = DOMID_SELF,
        "DOMID_IO" = DOMID_IO,
        "DOMID_XEN" = DOMID_XEN,
        "DOMID_COW" = DOMID_COW,
        "DOMID_INVALID" = DOMID_INVALID,
        "DOMID_IDLE" = DOMID_IDLE,
        "VIRQ_TIMER" = VIRQ_TIMER,
        "VIRQ_DEBUG" = VIRQ_DEBUG,
        "VIRQ_CONSOLE" = VIRQ_CONSOLE,
        "VIRQ_DOM_EXC" = VIRQ_DOM_EXC,
        "VIRQ_XENOPROF" = VIRQ_XENOPROF,
        "VIRQ_XENPMU" = VIRQ_XENPMU,
        "NR_VIRQS" = NR_VIRQS,
        "XEN_LEGACY_MAX_VCPUS" = XEN_LEGACY_MAX_VCPUS,
        "XEN_PAGE_SHIFT" = PAGE_SHIFT,
        "XEN_PAGE_SIZE" = PAGE_SIZE,
        // public/version.h, features.h, elfnote.h
        "XENVER_version" = XENVER_VERSION,
        "XENVER_extraversion" = XENVER_EXTRAVERSION,
        "XENVER_get_features" = XENVER_GET_FEATURES,
        "XENFEAT_auto_translated_physmap" = XENFEAT_AUTO_TRANSLATED_PHYSMAP,
        "XENFEAT_hvm_callback_vector" = XENFEAT_HVM_CALLBACK_VECTOR,
        "XENFEAT_hvm_safe_pvclock" = XENFEAT_HVM_SAFE_PVCLOCK,
        "XEN_ELFNOTE_PHYS32_ENTRY" = XEN_ELFNOTE_PHYS32_ENTRY,
        // public/memory.h
        "XENMEM_increase_reservation" = XENMEM_INCREASE_RESERVATION,
        "XENMEM_decrease_reservation" = XENMEM_DECREASE_RESERVATION,
        "XENMEM_populate_physmap" = XENMEM_POPULATE_PHYSMAP,
        "XENMEM_add_to_physmap" = XENMEM_ADD_TO_PHYSMAP,
        "XENMEM_memory_map" = XENMEM_MEMORY_MAP,
        "XENMEM_remove_from_physmap" = XENMEM_REMOVE_FROM_PHYSMAP,
        "XENMAPSPACE_shared_info" = XENMAPSPACE_SHARED_INFO,
        "XENMAPSPACE_grant_table" = XENMAPSPACE_GRANT_TABLE,
        "XENMAPSPACE_gmfn" = XENMAPSPACE_GMFN,
        "XENMAPSPACE_gmfn_range" = XENMAPSPACE_GMFN_RANGE,
        "XENMAPSPACE_gmfn_foreign" = XENMAPSPACE_GMFN_FOREIGN,
        "XENMAPSPACE_dev_mmio" = XENMAPSPACE_DEV_MMIO,
        // The memory map types, as arch-x86/hvm/start_info.h names them.
        "XEN_HVM_MEMMAP_TYPE_RAM" = memory::e820::RAM,
        "XEN_HVM_MEMMAP_TYPE_RESERVED" = memory::e820::RESERVED,
        "XEN_HVM_MEMMAP_TYPE_ACPI" = memory::e820::ACPI,
        "XEN_HVM_MEMMAP_TYPE_NVS" = memory::e820::NVS,
        "XEN_HVM_MEMMAP_TYPE_UNUSABLE" = memory::e820::UNUSABLE,
        // public/grant_table.h
        "GNTTABOP_map_grant_ref" = GNTTABOP_MAP_GRANT_REF,
        "GNTTABOP_unmap_grant_ref" = GNTTABOP_UNMAP_GRANT_REF,
        "GNTTABOP_setup_table" = GNTTABOP_SETUP_TABLE,
        "GNTTABOP_copy" = GNTTABOP_COPY,
        "GNTTABOP_query_size" = GNTTABOP_QUERY_SIZE,
        "GNTTAB_NR_RESERVED_ENTRIES" = GNTTAB_NR_RESERVED_ENTRIES,
        "GNTTAB_RESERVED_CONSOLE" = GNTTAB_RESERVED_CONSOLE,
        "GNTTAB_RESERVED_XENSTORE" = GNTTAB_RESERVED_XENSTORE,
        "GRANT_ENTRIES_PER_FRAME" = GRANT_ENTRIES_PER_FRAME,
        "GTF_type_mask" = GTF_TYPE_MASK,
        "GTF_invalid" = GTF_INVALID,
        "GTF_permit_access" = GTF_PERMIT_ACCESS,
        "GTF_accept_transfer" = GTF_ACCEPT_TRANSFER,
        "GTF_transitive" = GTF_TRANSITIVE,
        "GTF_readonly" = GTF_READONLY,
        "GTF_reading" = GTF_READING,
        "GTF_writing" = GTF_WRITING,
        "GNTMAP_device_map" = GNTMAP_DEVICE_MAP,
        "GNTMAP_host_map" = GNTMAP_HOST_MAP,
        "GNTMAP_readonly" = GNTMAP_READONLY,
        "GNTMAP_application_map" = GNTMAP_APPLICATION_MAP,
        "GNTMAP_contains_pte" = GNTMAP_CONTAINS_PTE,
        "GNTCOPY_source_gref" = GNTCOPY_SOURCE_GREF,
        "GNTCOPY_dest_gref" = GNTCOPY_DEST_GREF,
        "GNTST_okay" = grant_table::status::OKAY,
        "GNTST_general_error" = grant_table::status::GENERAL_ERROR,
        "GNTST_bad_domain" = grant_table::status::BAD_DOMAIN,
        "GNTST_bad_gntref" = grant_table::status::BAD_GNTREF,
        "GNTST_bad_handle" = grant_table::status::BAD_HANDLE,
        "GNTST_bad_virt_addr" = grant_table::status::BAD_VIRT_ADDR,
        "GNTST_bad_dev_addr" = grant_table::status::BAD_DEV_ADDR,
        "GNTST_no_device_space" = grant_table::status::NO_DEVICE_SPACE,
        "GNTST_permission_denied" = grant_table::status::PERMISSION_DENIED,
        "GNTST_bad_page" = grant_table::status::BAD_PAGE,
        "GNTST_bad_copy_arg" = grant_table::status::BAD_COPY_ARG,
        "GNTST_address_too_big" = grant_table::status::ADDRESS_TOO_BIG,
        "GNTST_eagain" = grant_table::status::EAGAIN,
        "GNTST_no_space" = grant_table::status::NO_SPACE,
        // public/event_channel.h
        "EVTCHNOP_bind_interdomain" = EVTCHNOP_BIND_INTERDOMAIN,
        "EVTCHNOP_bind_virq" = EVTCHNOP_BIND_VIRQ,
        "EVTCHNOP_close" = EVTCHNOP_CLOSE,
        "EVTCHNOP_send" = EVTCHNOP_SEND,
        "EVTCHNOP_status" = EVTCHNOP_STATUS,
        "EVTCHNOP_alloc_unbound" = EVTCHNOP_ALLOC_UNBOUND,
        "EVTCHNOP_bind_ipi" = EVTCHNOP_BIND_IPI,
        "EVTCHNOP_bind_vcpu" = EVTCHNOP_BIND_VCPU,
        "EVTCHNOP_unmask" = EVTCHNOP_UNMASK,
        "EVTCHN_2L_NR_CHANNELS" = NR_EVENT_CHANNELS_2L,
        "EVTCHNSTAT_closed" = EVTCHNSTAT_CLOSED,
        "EVTCHNSTAT_unbound" = EVTCHNSTAT_UNBOUND,
        "EVTCHNSTAT_interdomain" = EVTCHNSTAT_INTERDOMAIN,
        "EVTCHNSTAT_pirq" = EVTCHNSTAT_PIRQ,
        "EVTCHNSTAT_virq" = EVTCHNSTAT_VIRQ,
        "EVTCHNSTAT_ipi" = EVTCHNSTAT_IPI,
        // public/sched.h, public/vcpu.h
        "SCHEDOP_yield" = SCHEDOP_YIELD,
        "SCHEDOP_block" = SCHEDOP_BLOCK,
        "SCHEDOP_shutdown" = SCHEDOP_SHUTDOWN,
        "SCHEDOP_poll" = SCHEDOP_POLL,
        "SCHEDOP_shutdown_code" = SCHEDOP_SHUTDOWN_CODE,
        "SHUTDOWN_poweroff" = SHUTDOWN_POWEROFF,
        "SHUTDOWN_reboot" = SHUTDOWN_REBOOT,
        "SHUTDOWN_suspend" = SHUTDOWN_SUSPEND,
        "SHUTDOWN_crash" = SHUTDOWN_CRASH,
        "SHUTDOWN_watchdog" = SHUTDOWN_WATCHDOG,
        "VCPUOP_set_singleshot_timer" = VCPUOP_SET_SINGLESHOT_TIMER,
        "VCPUOP_stop_singleshot_timer" = VCPUOP_STOP_SINGLESHOT_TIMER,
        "VCPUOP_register_vcpu_info" = VCPUOP_REGISTER_VCPU_INFO,
        "VCPU_SSHOTTMR_future" = VCPU_SSHOTTMR_FUTURE,
        // public/hvm/hvm_op.h, params.h, arch-x86/hvm/start_info.h
        "HVMOP_set_param" = HVMOP_SET_PARAM,
        "HVMOP_get_param" = HVMOP_GET_PARAM,
        "HVMOP_get_time" = HVMOP_GET_TIME,
        "HVMOP_set_evtchn_upcall_vector" = HVMOP_SET_EVTCHN_UPCALL_VECTOR,
        "HVM_PARAM_CALLBACK_IRQ" = HVM_PARAM_CALLBACK_IRQ,
        "HVM_PARAM_STORE_PFN" = HVM_PARAM_STORE_PFN,
        "HVM_PARAM_STORE_EVTCHN" = HVM_PARAM_STORE_EVTCHN,
        "HVM_PARAM_CONSOLE_PFN" = HVM_PARAM_CONSOLE_PFN,
        "HVM_PARAM_CONSOLE_EVTCHN" = HVM_PARAM_CONSOLE_EVTCHN,
        "HVM_PARAM_VM86_TSS" = HVM_PARAM_VM86_TSS,
        "HVM_PARAM_ACPI_IOPORTS_LOCATION" = HVM_PARAM_ACPI_IOPORTS_LOCATION,
        "HVM_PARAM_VM_GENERATION_ID_ADDR" = HVM_PARAM_VM_GENERATION_ID_ADDR,
        "HVM_PARAM_ALTP2M" = HVM_PARAM_ALTP2M,
        "HVM_PARAM_X87_FIP_WIDTH" = HVM_PARAM_X87_FIP_WIDTH,
        "HVM_PARAM_VM86_TSS_SIZED" = HVM_PARAM_VM86_TSS_SIZED,
        "HVM_NR_PARAMS" = HVM_NR_PARAMS,
        "XEN_HVM_START_MAGIC_VALUE" = XEN_HVM_START_MAGIC_VALUE,
        // public/io/ring.h, as instantiated by netif.h
        "netif_tx_sring.ring.offset" = SRING_ENTRIES_OFFSET,
        "netif_rx_sring.ring.offset" = SRING_ENTRIES_OFFSET,
        "netif_tx_sring_entry.size" = tx_slot,
        "netif_rx_sring_entry.size" = rx_slot,
        "__CONST_RING_SIZE(netif_tx,4096)" = const_ring_size(PAGE_SIZE, tx_slot),
        "__CONST_RING_SIZE(netif_rx,4096)" = const_ring_size(PAGE_SIZE, rx_slot),
        // public/io/netif.h
        "NETTXF_csum_blank" = NETTXF_CSUM_BLANK,
        "NETTXF_data_validated" = NETTXF_DATA_VALIDATED,
        "NETTXF_more_data" = NETTXF_MORE_DATA,
        "NETTXF_extra_info" = NETTXF_EXTRA_INFO,
        "NETRXF_data_validated" = NETRXF_DATA_VALIDATED,
        "NETRXF_csum_blank" = NETRXF_CSUM_BLANK,
        "NETRXF_more_data" = NETRXF_MORE_DATA,
        "NETRXF_extra_info" = NETRXF_EXTRA_INFO,
        "NETRXF_gso_prefix" = NETRXF_GSO_PREFIX,
        "XEN_NETIF_EXTRA_TYPE_NONE" = XEN_NETIF_EXTRA_TYPE_NONE,
        "XEN_NETIF_EXTRA_TYPE_GSO" = XEN_NETIF_EXTRA_TYPE_GSO,
        "XEN_NETIF_EXTRA_TYPE_MCAST_ADD" = XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        "XEN_NETIF_EXTRA_TYPE_MCAST_DEL" = XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
        "XEN_NETIF_EXTRA_TYPE_HASH" = XEN_NETIF_EXTRA_TYPE_HASH,
        "XEN_NETIF_EXTRA_TYPE_MAX" = XEN_NETIF_EXTRA_TYPE_MAX,
        "XEN_NETIF_EXTRA_FLAG_MORE" = XEN_NETIF_EXTRA_FLAG_MORE,
        "XEN_NETIF_GSO_TYPE_NONE" = XEN_NETIF_GSO_TYPE_NONE,
        "XEN_NETIF_GSO_TYPE_TCPV4" = XEN_NETIF_GSO_TYPE_TCPV4,
        "XEN_NETIF_GSO_TYPE_TCPV6" = XEN_NETIF_GSO_TYPE_TCPV6,
        "NETIF_RSP_DROPPED" = NETIF_RSP_DROPPED,
        "NETIF_RSP_ERROR" = NETIF_RSP_ERROR,
        "NETIF_RSP_OKAY" = NETIF_RSP_OKAY,
        "NETIF_RSP_NULL" = NETIF_RSP_NULL,
        "XEN_NETIF_MAX_TX_SIZE" = XEN_NETIF_MAX_TX_SIZE,
        "XEN_NETIF_NR_SLOTS_MIN" = XEN_NETIF_NR_SLOTS_MIN,
        // public/io/xs_wire.h
        "XENSTORE_RING_SIZE" = XENSTORE_RING_SIZE,
        "XENSTORE_PAYLOAD_MAX" = XENSTORE_PAYLOAD_MAX,
        "XENSTORE_ABS_PATH_MAX" = XENSTORE_ABS_PATH_MAX,
        "XENSTORE_REL_PATH_MAX" = XENSTORE_REL_PATH_MAX,
        "XENSTORE_SERVER_FEATURE_RECONNECTION" = XENSTORE_SERVER_FEATURE_RECONNECTION,
        "XENSTORE_SERVER_FEATURE_ERROR" = XENSTORE_SERVER_FEATURE_ERROR,
        "XENSTORE_CONNECTED" = XENSTORE_CONNECTED,
        "XENSTORE_RECONNECT" = XENSTORE_RECONNECT,
        "XENSTORE_ERROR_NONE" = XENSTORE_ERROR_NONE,
        "XENSTORE_ERROR_COMM" = XENSTORE_ERROR_COMM,
        "XENSTORE_ERROR_RINGIDX" = XENSTORE_ERROR_RINGIDX,
        "XENSTORE_ERROR_PROTO" = XENSTORE_ERROR_PROTO,
        "XS_CONTROL" = xs_wire::msg::CONTROL,
        "XS_DIRECTORY" = xs_wire::msg::DIRECTORY,
        "XS_READ" = xs_wire::msg::READ,
        "XS_GET_PERMS" = xs_wire::msg::GET_PERMS,
        "XS_WATCH" = xs_wire::msg::WATCH,
        "XS_UNWATCH" = xs_wire::msg::UNWATCH,
        "XS_TRANSACTION_START" = xs_wire::msg::TRANSACTION_START,
        "XS_TRANSACTION_END" = xs_wire::msg::TRANSACTION_END,
        "XS_INTRODUCE" = xs_wire::msg::INTRODUCE,
        "XS_RELEASE" = xs_wire::msg::RELEASE,
        "XS_GET_DOMAIN_PATH" = xs_wire::msg::GET_DOMAIN_PATH,
        "XS_WRITE" = xs_wire::msg::WRITE,
        "XS_MKDIR" = xs_wire::msg::MKDIR,
        "XS_RM" = xs_wire::msg::RM,
        "XS_SET_PERMS" = xs_wire::msg::SET_PERMS,
        "XS_WATCH_EVENT" = xs_wire::msg::WATCH_EVENT,
        "XS_ERROR" = xs_wire::msg::ERROR,
        "XS_IS_DOMAIN_INTRODUCED" = xs_wire::msg::IS_DOMAIN_INTRODUCED,
        "XS_RESUME" = xs_wire::msg::RESUME,
        "XS_SET_TARGET" = xs_wire::msg::SET_TARGET,
        "XS_RESET_WATCHES" = xs_wire::msg::RESET_WATCHES,
        "XS_DIRECTORY_PART" = xs_wire::msg::DIRECTORY_PART,
        "XS_INVALID" = xs_wire::msg::INVALID,
        // public/io/console.h (array sizes), public/io/libxenvchan.h
        "XENCONS_IN_SIZE" = XENCONS_IN_SIZE,
        "XENCONS_OUT_SIZE" = XENCONS_OUT_SIZE,
        "VCHAN_NOTIFY_WRITE" = VCHAN_NOTIFY_WRITE,
        "VCHAN_NOTIFY_READ" = VCHAN_NOTIFY_READ,
        // The grant list follows the Rust header directly.
        "vchan_interface.grants.offset" = size_of::<VchanInterface>(),
    }
}

/// `pub const`s of `src/abi` that no public header of Xen 4.17 defines,
/// so the C program cannot check them; each says where its value comes
/// from. The completeness test requires each to still exist.
const NOT_IN_HEADERS: &[(&str, &str)] = &[
    (
        "SCHED_POLL_MAX_PORTS",
        "Xen's SCHEDOP_poll implementation limit (common/sched/core.c), not a header macro",
    ),
    (
        "DOMID_ANY",
        "not defined by Xen 4.17; a later Xen proposal, kept for reference only",
    ),
];

/// The facts printed by `layout.c`.
#[derive(Default)]
struct CFacts {
    /// `size <key> <n>`.
    sizes: BTreeMap<String, usize>,
    /// `field <key> <path> <offset> <size>`, keyed by `"<key> <path>"`.
    fields: BTreeMap<String, (usize, usize)>,
    /// `const <NAME> <value>`.
    consts: BTreeMap<String, i128>,
    /// `errno guest <NAME> <value>`: errnos a guest can see.
    errno_guest: BTreeMap<String, i128>,
    /// `errno all <NAME> <value>`: also the hypervisor-internal ones.
    errno_all: BTreeMap<String, i128>,
}

impl CFacts {
    /// Parse the program's output; any malformed line is an error.
    fn parse(out: &str) -> Result<CFacts, String> {
        let mut f = CFacts::default();
        for (i, line) in out.lines().enumerate() {
            let bad = || format!("layout.c output line {}: malformed: {line:?}", i + 1);
            let w: Vec<&str> = line.split_whitespace().collect();
            let num = |s: &str| s.parse::<usize>().map_err(|_| bad());
            let int = |s: &str| s.parse::<i128>().map_err(|_| bad());
            let dup = match w.as_slice() {
                ["size", key, n] => f.sizes.insert(key.to_string(), num(n)?).is_some(),
                ["field", key, path, off, n] => f
                    .fields
                    .insert(format!("{key} {path}"), (num(off)?, num(n)?))
                    .is_some(),
                ["const", name, v] => f.consts.insert(name.to_string(), int(v)?).is_some(),
                ["errno", "guest", name, v] => {
                    f.errno_guest.insert(name.to_string(), int(v)?).is_some()
                }
                ["errno", "all", name, v] => {
                    f.errno_all.insert(name.to_string(), int(v)?).is_some()
                }
                _ => return Err(bad()),
            };
            if dup {
                return Err(format!(
                    "layout.c output line {}: duplicate: {line:?}",
                    i + 1
                ));
            }
        }
        Ok(f)
    }

    /// Number of facts of every kind.
    fn len(&self) -> usize {
        self.sizes.len()
            + self.fields.len()
            + self.consts.len()
            + self.errno_guest.len()
            + self.errno_all.len()
    }
}

/// What the comparison covered.
#[derive(Default, Debug)]
struct Counts {
    structs: usize,
    aliases: usize,
    fields: usize,
    consts: usize,
    errnos: usize,
}

/// Where `xen/xen.h` is looked for: `$XEN_INCLUDE_DIR` or `/usr/include`.
fn include_dir() -> PathBuf {
    std::env::var_os("XEN_INCLUDE_DIR").map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from)
}

/// Build and run `layout.c`; its standard output.
fn run_layout_program() -> Result<String, String> {
    const INSTALL: &str = "install Debian's libxen-dev and gcc \
        (`apt-get install -y libxen-dev gcc`; the project's setup installs them)";
    let inc = include_dir();
    if !inc.join("xen/xen.h").is_file() {
        return Err(format!(
            "Xen public headers not found: {} does not exist; {INSTALL}",
            inc.join("xen/xen.h").display()
        ));
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/abi_layout/layout.c");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("xen-abi-layout-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let exe = dir.join("layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let result = (|| {
        let build = Command::new(&cc)
            .args(["-std=gnu11", "-O0", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-I{}", inc.display()))
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .output()
            .map_err(|e| format!("cannot run the C compiler `{cc}`: {e}; {INSTALL}"))?;
        if !build.status.success() {
            return Err(format!(
                "`{cc}` failed to build {} ({}):\n{}{INSTALL}",
                src.display(),
                build.status,
                String::from_utf8_lossy(&build.stderr)
            ));
        }
        let run = Command::new(&exe)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if !run.status.success() {
            return Err(format!("{} failed: {}", exe.display(), run.status));
        }
        String::from_utf8(run.stdout).map_err(|e| format!("layout.c output is not UTF-8: {e}"))
    })();
    // Best effort: a leftover temp dir is harmless.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Compare one table of types; push every problem.
fn check_types(
    table: &[TypeEntry],
    c: &CFacts,
    used: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> usize {
    let mut fields = 0;
    for t in table {
        match c.sizes.get(t.ckey) {
            None => problems.push(format!(
                "{}: no C line `size {}` (layout.c does not print it)",
                t.rust, t.ckey
            )),
            Some(&n) if n != t.size => problems.push(format!(
                "{}: size {} in Rust, {} in C (`{}`)",
                t.rust, t.size, n, t.ckey
            )),
            Some(_) => {}
        }
        used.push(format!("size {}", t.ckey));
        for f in &t.fields {
            fields += 1;
            let key = format!("{} {}", t.ckey, f.cpath);
            used.push(format!("field {key}"));
            match c.fields.get(&key) {
                None => problems.push(format!(
                    "{}.{}: no C line `field {key}` (layout.c does not print it)",
                    t.rust, f.rust
                )),
                Some(&(off, size)) => {
                    if off != f.offset {
                        problems.push(format!(
                            "{}.{}: offset {} in Rust, {} in C (`{key}`)",
                            t.rust, f.rust, f.offset, off
                        ));
                    }
                    if size != f.size {
                        problems.push(format!(
                            "{}.{}: size {} in Rust, {} in C (`{key}`)",
                            t.rust, f.rust, f.size, size
                        ));
                    }
                }
            }
        }
    }
    fields
}

/// Compare everything; the counts, or the list of problems.
fn compare(c: &CFacts) -> Result<(Counts, Vec<String>), Vec<String>> {
    let mut problems = Vec::new();
    let mut used = Vec::new();
    let mut counts = Counts::default();

    let structs = struct_table();
    let aliases = alias_table();
    counts.structs = structs.len();
    counts.aliases = aliases.len();
    counts.fields = check_types(&structs, c, &mut used, &mut problems);
    counts.fields += check_types(&aliases, c, &mut used, &mut problems);

    for k in const_table() {
        counts.consts += 1;
        used.push(format!("const {}", k.cname));
        match c.consts.get(k.cname) {
            None => problems.push(format!(
                "{}: no C line `const {}` (layout.c does not print it)",
                k.rust, k.cname
            )),
            Some(&v) if v != k.value => problems.push(format!(
                "{}: {} in Rust, {} in C (`{}`)",
                k.rust, k.value, v, k.cname
            )),
            Some(_) => {}
        }
    }

    // Errno: every name Rust has must be Xen's, with Xen's value; every
    // errno a guest can receive must have a Rust name.
    for n in 0..=4096 {
        if let Some(name) = Errno(n).name() {
            counts.errnos += 1;
            match c.errno_all.get(name) {
                None => problems.push(format!("Errno::{name} ({n}): Xen's errno.h has no {name}")),
                Some(&v) if v != i128::from(n) => {
                    problems.push(format!("Errno::{name}: {n} in Rust, {v} in Xen's errno.h"))
                }
                Some(_) => {}
            }
        }
    }
    for (name, &v) in &c.errno_guest {
        let named = i32::try_from(v).ok().and_then(|n| Errno(n).name());
        if named.is_none() {
            problems.push(format!(
                "Xen errno {name} ({v}) can reach a guest but Errno has no name for it"
            ));
        }
    }

    if problems.is_empty() {
        used.sort();
        let mut unused = Vec::new();
        for k in c.sizes.keys() {
            if used.binary_search(&format!("size {k}")).is_err() {
                unused.push(format!("size {k}"));
            }
        }
        for k in c.fields.keys() {
            if used.binary_search(&format!("field {k}")).is_err() {
                unused.push(format!("field {k}"));
            }
        }
        for k in c.consts.keys() {
            if used.binary_search(&format!("const {k}")).is_err() {
                unused.push(format!("const {k}"));
            }
        }
        Ok((counts, unused))
    } else {
        Err(problems)
    }
}

#[test]
fn rust_mirrors_match_the_xen_headers() {
    let out = run_layout_program().unwrap_or_else(|e| panic!("ABI layout test cannot run: {e}"));
    let c = CFacts::parse(&out).unwrap_or_else(|e| panic!("{e}"));
    match compare(&c) {
        Ok((n, unused)) => {
            println!(
                "abi_layout: {} structs + {} type aliases, {} fields, {} constants and {} errno \
                 values match {} ({} C facts printed)",
                n.structs,
                n.aliases,
                n.fields,
                n.consts,
                n.errnos,
                include_dir().join("xen").display(),
                c.len()
            );
            println!(
                "abi_layout: {} C facts have no Rust counterpart (union arms, \
                 unmirrored values): {}",
                unused.len(),
                unused.join(", ")
            );
        }
        Err(problems) => {
            let mut msg = format!(
                "{} difference(s) between xen::abi and the C headers under {}:\n",
                problems.len(),
                include_dir().join("xen").display()
            );
            for p in &problems {
                let _ = writeln!(msg, "  - {p}");
            }
            panic!("{msg}");
        }
    }
}

/// The facts a perfect C program would print for the Rust tables.
fn facts_from_rust_tables() -> CFacts {
    let mut c = CFacts::default();
    for t in struct_table().into_iter().chain(alias_table()) {
        c.sizes.insert(t.ckey.to_owned(), t.size);
        for f in t.fields {
            c.fields
                .insert(format!("{} {}", t.ckey, f.cpath), (f.offset, f.size));
        }
    }
    for k in const_table() {
        c.consts.insert(k.cname.to_owned(), k.value);
    }
    for n in 0..=4096 {
        if let Some(name) = Errno(n).name() {
            c.errno_all.insert(name.to_owned(), i128::from(n));
            c.errno_guest.insert(name.to_owned(), i128::from(n));
        }
    }
    c
}

/// The comparison itself (no C compiler needed): silent on a perfect
/// match, and names every kind of difference when there is one.
#[test]
fn comparison_reports_every_difference() {
    let perfect = facts_from_rust_tables();
    let (counts, unused) = compare(&perfect).unwrap_or_else(|p| panic!("{p:#?}"));
    assert!(unused.is_empty(), "{unused:?}");
    assert!(counts.structs >= 40 && counts.fields >= 150 && counts.consts >= 150);

    let mut c = facts_from_rust_tables();
    *c.sizes.get_mut("netif_extra_info").unwrap() += 2;
    c.fields.get_mut("gnttab_copy dest.domid").unwrap().0 += 4;
    c.fields.get_mut("vchan_interface srv_notify").unwrap().1 = 2;
    c.fields.remove("evtchn_status u.interdomain.port");
    c.sizes.remove("xsd_sockmsg");
    *c.consts.get_mut("GNTST_eagain").unwrap() = -99;
    c.consts.remove("XS_INVALID");
    *c.errno_all.get_mut("EINVAL").unwrap() = 23;
    c.errno_guest.insert("EFICTIONAL".to_owned(), 4000);
    let problems = compare(&c).expect_err("differences must fail");
    let expect = [
        "NetifExtraInfo: size 8 in Rust, 10 in C",
        "GnttabCopy.dest.domid: offset 24 in Rust, 28 in C",
        "VchanInterface.srv_notify: size 1 in Rust, 2 in C",
        "EvtchnStatus.u.port: no C line `field evtchn_status u.interdomain.port`",
        "XsdSockmsg: no C line `size xsd_sockmsg`",
        "grant_table::status::EAGAIN: -12 in Rust, -99 in C",
        "xs_wire::msg::INVALID: no C line `const XS_INVALID`",
        "Errno::EINVAL: 22 in Rust, 23 in Xen's errno.h",
        "Xen errno EFICTIONAL (4000) can reach a guest but Errno has no name for it",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}

/// A `pub struct` found in the source text, with its named fields.
struct SourceStruct {
    name: String,
    file: PathBuf,
    fields: Vec<String>,
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The identifier at the start of `s`.
fn ident_prefix(s: &str) -> &str {
    let end = s
        .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '#'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The `pub struct`s and `pub const`s of one source file (comments
/// dropped; struct bodies read up to their closing brace).
fn scan_source(path: &Path, structs: &mut Vec<SourceStruct>, consts: &mut Vec<String>) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.strip_prefix("pub const ") {
            let name = ident_prefix(rest);
            // `$name` consts come from a macro (Errno): checked by value.
            if !name.is_empty() && !rest.starts_with('$') && !rest.starts_with("fn ") {
                consts.push(name.to_owned());
            }
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = ident_prefix(rest).to_owned();
            let mut fields = Vec::new();
            if rest[name.len()..].trim_start().starts_with('{') {
                let mut depth = 0i32;
                let mut j = i;
                loop {
                    let l = lines[j];
                    if j > i && depth == 1 {
                        let f = l
                            .strip_prefix("pub(crate) ")
                            .or_else(|| l.strip_prefix("pub "))
                            .unwrap_or(l);
                        let id = ident_prefix(f);
                        if !id.is_empty() && f[id.len()..].trim_start().starts_with(':') {
                            fields.push(id.to_owned());
                        }
                    }
                    depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                    if depth <= 0 || j + 1 == lines.len() {
                        break;
                    }
                    j += 1;
                }
                i = j;
            }
            structs.push(SourceStruct {
                name,
                file: path.to_owned(),
                fields,
            });
        }
        i += 1;
    }
}

#[test]
fn every_abi_struct_field_and_const_is_in_the_layout_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/abi");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut structs = Vec::new();
    let mut consts = Vec::new();
    for f in &files {
        scan_source(f, &mut structs, &mut consts);
    }
    assert!(
        structs.len() >= 40 && consts.len() >= 150,
        "the scan of {} found only {} structs and {} consts: is the parser broken?",
        root.display(),
        structs.len(),
        consts.len()
    );

    let table = struct_table();
    let mut problems = Vec::new();
    for s in &structs {
        let Some(t) = table.iter().find(|t| t.rust == s.name) else {
            problems.push(format!(
                "pub struct {} ({}) is not in struct_table()",
                s.name,
                s.file.display()
            ));
            continue;
        };
        for f in &s.fields {
            let covered = t
                .fields
                .iter()
                .any(|e| e.rust.split('.').next() == Some(f.as_str()));
            if !covered {
                problems.push(format!(
                    "{}.{f} ({}) is not in struct_table()",
                    s.name,
                    s.file.display()
                ));
            }
        }
    }
    for t in &table {
        if !structs.iter().any(|s| s.name == t.rust) {
            problems.push(format!(
                "struct_table() lists {}, which src/abi does not declare",
                t.rust
            ));
        }
    }

    // Constants: by the last segment of the Rust path. A name declared
    // twice (in two modules) must be covered twice.
    let checked = const_table();
    let mut declared: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &consts {
        *declared.entry(c.as_str()).or_default() += 1;
    }
    for (name, &count) in &declared {
        let mut paths: Vec<&str> = checked
            .iter()
            .map(|k| k.rust)
            .filter(|r| r.rsplit("::").next() == Some(*name))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let allowed = NOT_IN_HEADERS.iter().any(|(n, _)| n == name);
        if paths.len() < count && !allowed {
            problems.push(format!(
                "pub const {name} (declared {count}x in src/abi) is not in const_table() \
                 (nor in NOT_IN_HEADERS with a reason)"
            ));
        }
    }
    for (name, _) in NOT_IN_HEADERS {
        if !declared.contains_key(name) {
            problems.push(format!(
                "NOT_IN_HEADERS lists {name}, which src/abi does not declare"
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "{} item(s) of xen::abi escape the layout test:\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
    println!(
        "abi_layout: all {} pub structs and {} pub consts of {} are in the layout table \
         ({} not in the headers: {})",
        structs.len(),
        consts.len(),
        root.display(),
        NOT_IN_HEADERS.len(),
        NOT_IN_HEADERS
            .iter()
            .map(|(n, why)| format!("{n}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
}
