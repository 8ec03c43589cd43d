/*
 * Layout facts of the Xen public ABI, as the C compiler sees Debian's
 * libxen-dev headers (/usr/include/xen, Xen 4.17).
 *
 * Built and run by xen/tests/abi_layout.rs, which compares every line with
 * the Rust mirrors in xen::abi. Output, one fact per line:
 *
 *   size  <key> <bytes>                  sizeof a struct (or sub-struct)
 *   field <key> <path> <offset> <bytes>  offsetof and sizeof of a member,
 *                                        relative to the struct named <key>
 *   const <NAME> <value>                 a macro or enum value (decimal)
 *
 * <key> is the C struct tag ("gnttab_copy") or, for an anonymous member
 * struct or a union arm, the path to it ("gnttab_copy.source",
 * "evtchn_status.u.interdomain"). Names in const lines are the C spellings.
 *
 * The program only prints: whether a fact matters is decided on the Rust
 * side, which fails when a Rust entry has no line here.
 */

/* The guest ABI this project targets: the newest interface of Xen 4.17.
 * Without it the headers fall back to interface version 0 and the old
 * compat names (e.g. __HYPERVISOR_sched_op becomes sched_op_compat). */
#define __XEN_INTERFACE_VERSION__ 0x00040e00

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <xen/xen.h>
#include <xen/memory.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/version.h>
#include <xen/features.h>
#include <xen/elfnote.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/arch-x86/hvm/start_info.h>
#include <xen/io/ring.h>
#include <xen/io/netif.h>
#include <xen/io/xs_wire.h>
#include <xen/io/console.h>
#include <xen/io/libxenvchan.h>
#include <xen/errno.h> /* default mode: enum xen_errno */

#if !defined(__x86_64__)
#error "the Rust mirrors describe the x86_64 layout: build this on x86_64"
#endif

#define MEMBER(T, f) (((T *)0)->f)

#define SIZE(key, T) printf("size %s %zu\n", key, sizeof(T))
#define SIZE_N(key, n) printf("size %s %zu\n", key, (size_t)(n))
#define FIELD(key, T, f) \
    printf("field %s %s %zu %zu\n", key, #f, offsetof(T, f), sizeof(MEMBER(T, f)))
#define CONST(name) printf("const %s %lld\n", #name, (long long)(name))
#define CONST_AS(name, v) printf("const %s %lld\n", name, (long long)(v))

/* Anonymous member structs and union arms get a type name here. */
typedef __typeof__(MEMBER(struct gnttab_copy, source)) gnttab_copy_ptr_t;
typedef __typeof__(MEMBER(struct evtchn_status, u.interdomain)) evtchn_status_interdomain_t;
typedef __typeof__(MEMBER(struct netif_extra_info, u.gso)) netif_extra_info_gso_t;

static void shared_info_page(void)
{
    SIZE("vcpu_time_info", struct vcpu_time_info);
    FIELD("vcpu_time_info", struct vcpu_time_info, version);
    FIELD("vcpu_time_info", struct vcpu_time_info, pad0);
    FIELD("vcpu_time_info", struct vcpu_time_info, tsc_timestamp);
    FIELD("vcpu_time_info", struct vcpu_time_info, system_time);
    FIELD("vcpu_time_info", struct vcpu_time_info, tsc_to_system_mul);
    FIELD("vcpu_time_info", struct vcpu_time_info, tsc_shift);
    FIELD("vcpu_time_info", struct vcpu_time_info, flags);
    FIELD("vcpu_time_info", struct vcpu_time_info, pad1);

    SIZE("arch_vcpu_info", struct arch_vcpu_info);
    FIELD("arch_vcpu_info", struct arch_vcpu_info, cr2);
    FIELD("arch_vcpu_info", struct arch_vcpu_info, pad);

    SIZE("vcpu_info", struct vcpu_info);
    FIELD("vcpu_info", struct vcpu_info, evtchn_upcall_pending);
    FIELD("vcpu_info", struct vcpu_info, evtchn_upcall_mask);
    FIELD("vcpu_info", struct vcpu_info, evtchn_pending_sel);
    FIELD("vcpu_info", struct vcpu_info, arch);
    FIELD("vcpu_info", struct vcpu_info, time);

    SIZE("arch_shared_info", struct arch_shared_info);
    FIELD("arch_shared_info", struct arch_shared_info, max_pfn);
    FIELD("arch_shared_info", struct arch_shared_info, pfn_to_mfn_frame_list_list);
    FIELD("arch_shared_info", struct arch_shared_info, nmi_reason);
    FIELD("arch_shared_info", struct arch_shared_info, p2m_cr3);
    FIELD("arch_shared_info", struct arch_shared_info, p2m_vaddr);
    FIELD("arch_shared_info", struct arch_shared_info, p2m_generation);

    SIZE("shared_info", struct shared_info);
    FIELD("shared_info", struct shared_info, vcpu_info);
    FIELD("shared_info", struct shared_info, evtchn_pending);
    FIELD("shared_info", struct shared_info, evtchn_mask);
    FIELD("shared_info", struct shared_info, wc_version);
    FIELD("shared_info", struct shared_info, wc_sec);
    FIELD("shared_info", struct shared_info, wc_nsec);
    FIELD("shared_info", struct shared_info, wc_sec_hi);
    FIELD("shared_info", struct shared_info, arch);

    CONST(XEN_LEGACY_MAX_VCPUS);
}

static void xen_h(void)
{
    CONST(__HYPERVISOR_memory_op);
    CONST(__HYPERVISOR_set_timer_op);
    CONST(__HYPERVISOR_xen_version);
    CONST(__HYPERVISOR_console_io);
    CONST(__HYPERVISOR_grant_table_op);
    CONST(__HYPERVISOR_vcpu_op);
    CONST(__HYPERVISOR_sched_op);
    CONST(__HYPERVISOR_event_channel_op);
    CONST(__HYPERVISOR_hvm_op);

    CONST(CONSOLEIO_write);
    CONST(CONSOLEIO_read);

    CONST(DOMID_FIRST_RESERVED);
    CONST(DOMID_SELF);
    CONST(DOMID_IO);
    CONST(DOMID_XEN);
    CONST(DOMID_COW);
    CONST(DOMID_INVALID);
    CONST(DOMID_IDLE);
#ifdef DOMID_ANY
    CONST(DOMID_ANY);
#endif

    CONST(VIRQ_TIMER);
    CONST(VIRQ_DEBUG);
    CONST(VIRQ_CONSOLE);
    CONST(VIRQ_XENOPROF);
    CONST(VIRQ_XENPMU);
    CONST(VIRQ_DOM_EXC);
    CONST(NR_VIRQS);

    /* domid_t, evtchn_port_t, grant_ref_t, grant_handle_t. */
    SIZE("domid_t", domid_t);
    SIZE("evtchn_port_t", evtchn_port_t);
    SIZE("grant_ref_t", grant_ref_t);
    SIZE("grant_handle_t", grant_handle_t);

    CONST(XENVER_version);
    CONST(XENVER_extraversion);
    CONST(XENVER_get_features);
    CONST(XENFEAT_auto_translated_physmap);
    CONST(XENFEAT_hvm_callback_vector);
    CONST(XENFEAT_hvm_safe_pvclock);
    SIZE("xen_feature_info", struct xen_feature_info);
    FIELD("xen_feature_info", struct xen_feature_info, submap_idx);
    FIELD("xen_feature_info", struct xen_feature_info, submap);

    CONST(XEN_ELFNOTE_PHYS32_ENTRY);

    /* io/ring.h: "The PAGE_SIZE for ring protocols and hypercall
     * interfaces is always 4K". */
    CONST(XEN_PAGE_SHIFT);
    CONST_AS("XEN_PAGE_SIZE", 1UL << XEN_PAGE_SHIFT);
}

static void errnos(void)
{
    /* errno.h's "includer provides XEN_ERRNO()" mode gives one line per
     * Xen errno without naming the list here. First the values a guest can
     * see, then (with __XEN__, which only adds the hypervisor-internal
     * EINTR and ERESTART) every value Xen has a name for. */
#define XEN_ERRNO(name, value) printf("errno guest %s %lld\n", #name, (long long)(value));
#include <xen/errno.h>
#define __XEN__
#define XEN_ERRNO(name, value) printf("errno all %s %lld\n", #name, (long long)(value));
#include <xen/errno.h>
#undef __XEN__
    SIZE("xen_errno", enum xen_errno);
}

static void memory_h(void)
{
    CONST(XENMEM_increase_reservation);
    CONST(XENMEM_decrease_reservation);
    CONST(XENMEM_populate_physmap);
    CONST(XENMEM_add_to_physmap);
    CONST(XENMEM_memory_map);
    CONST(XENMEM_remove_from_physmap);

    CONST(XENMAPSPACE_shared_info);
    CONST(XENMAPSPACE_grant_table);
    CONST(XENMAPSPACE_gmfn);
    CONST(XENMAPSPACE_gmfn_range);
    CONST(XENMAPSPACE_gmfn_foreign);
    CONST(XENMAPSPACE_dev_mmio);

    SIZE("xen_add_to_physmap", struct xen_add_to_physmap);
    FIELD("xen_add_to_physmap", struct xen_add_to_physmap, domid);
    FIELD("xen_add_to_physmap", struct xen_add_to_physmap, size);
    FIELD("xen_add_to_physmap", struct xen_add_to_physmap, space);
    FIELD("xen_add_to_physmap", struct xen_add_to_physmap, idx);
    FIELD("xen_add_to_physmap", struct xen_add_to_physmap, gpfn);

    SIZE("xen_remove_from_physmap", struct xen_remove_from_physmap);
    FIELD("xen_remove_from_physmap", struct xen_remove_from_physmap, domid);
    FIELD("xen_remove_from_physmap", struct xen_remove_from_physmap, gpfn);

    SIZE("xen_memory_reservation", struct xen_memory_reservation);
    FIELD("xen_memory_reservation", struct xen_memory_reservation, extent_start);
    FIELD("xen_memory_reservation", struct xen_memory_reservation, nr_extents);
    FIELD("xen_memory_reservation", struct xen_memory_reservation, extent_order);
    FIELD("xen_memory_reservation", struct xen_memory_reservation, mem_flags);
    FIELD("xen_memory_reservation", struct xen_memory_reservation, domid);

    SIZE("xen_memory_map", struct xen_memory_map);
    FIELD("xen_memory_map", struct xen_memory_map, nr_entries);
    FIELD("xen_memory_map", struct xen_memory_map, buffer);
}

static void grant_table_h(void)
{
    CONST(GNTTABOP_map_grant_ref);
    CONST(GNTTABOP_unmap_grant_ref);
    CONST(GNTTABOP_setup_table);
    CONST(GNTTABOP_copy);
    CONST(GNTTABOP_query_size);

    CONST(GNTTAB_NR_RESERVED_ENTRIES);
    CONST(GNTTAB_RESERVED_CONSOLE);
    CONST(GNTTAB_RESERVED_XENSTORE);
    /* Not a macro: v1 entries in one 4 KiB frame. */
    CONST_AS("GRANT_ENTRIES_PER_FRAME", 4096 / sizeof(struct grant_entry_v1));

    CONST(GTF_type_mask);
    CONST(GTF_invalid);
    CONST(GTF_permit_access);
    CONST(GTF_accept_transfer);
    CONST(GTF_transitive);
    CONST(GTF_readonly);
    CONST(GTF_reading);
    CONST(GTF_writing);

    CONST(GNTMAP_device_map);
    CONST(GNTMAP_host_map);
    CONST(GNTMAP_readonly);
    CONST(GNTMAP_application_map);
    CONST(GNTMAP_contains_pte);

    CONST(GNTCOPY_source_gref);
    CONST(GNTCOPY_dest_gref);

    CONST(GNTST_okay);
    CONST(GNTST_general_error);
    CONST(GNTST_bad_domain);
    CONST(GNTST_bad_gntref);
    CONST(GNTST_bad_handle);
    CONST(GNTST_bad_virt_addr);
    CONST(GNTST_bad_dev_addr);
    CONST(GNTST_no_device_space);
    CONST(GNTST_permission_denied);
    CONST(GNTST_bad_page);
    CONST(GNTST_bad_copy_arg);
    CONST(GNTST_address_too_big);
    CONST(GNTST_eagain);
    CONST(GNTST_no_space);

    SIZE("grant_entry_v1", struct grant_entry_v1);
    FIELD("grant_entry_v1", struct grant_entry_v1, flags);
    FIELD("grant_entry_v1", struct grant_entry_v1, domid);
    FIELD("grant_entry_v1", struct grant_entry_v1, frame);

    SIZE("gnttab_map_grant_ref", struct gnttab_map_grant_ref);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, host_addr);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, flags);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, ref);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, dom);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, status);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, handle);
    FIELD("gnttab_map_grant_ref", struct gnttab_map_grant_ref, dev_bus_addr);

    SIZE("gnttab_unmap_grant_ref", struct gnttab_unmap_grant_ref);
    FIELD("gnttab_unmap_grant_ref", struct gnttab_unmap_grant_ref, host_addr);
    FIELD("gnttab_unmap_grant_ref", struct gnttab_unmap_grant_ref, dev_bus_addr);
    FIELD("gnttab_unmap_grant_ref", struct gnttab_unmap_grant_ref, handle);
    FIELD("gnttab_unmap_grant_ref", struct gnttab_unmap_grant_ref, status);

    SIZE("gnttab_copy.source", gnttab_copy_ptr_t);
    FIELD("gnttab_copy.source", gnttab_copy_ptr_t, u);
    FIELD("gnttab_copy.source", gnttab_copy_ptr_t, u.ref);
    FIELD("gnttab_copy.source", gnttab_copy_ptr_t, u.gmfn);
    FIELD("gnttab_copy.source", gnttab_copy_ptr_t, domid);
    FIELD("gnttab_copy.source", gnttab_copy_ptr_t, offset);

    SIZE("gnttab_copy", struct gnttab_copy);
    FIELD("gnttab_copy", struct gnttab_copy, source);
    FIELD("gnttab_copy", struct gnttab_copy, source.u);
    FIELD("gnttab_copy", struct gnttab_copy, source.domid);
    FIELD("gnttab_copy", struct gnttab_copy, source.offset);
    FIELD("gnttab_copy", struct gnttab_copy, dest);
    FIELD("gnttab_copy", struct gnttab_copy, dest.u);
    FIELD("gnttab_copy", struct gnttab_copy, dest.domid);
    FIELD("gnttab_copy", struct gnttab_copy, dest.offset);
    FIELD("gnttab_copy", struct gnttab_copy, len);
    FIELD("gnttab_copy", struct gnttab_copy, flags);
    FIELD("gnttab_copy", struct gnttab_copy, status);

    SIZE("gnttab_query_size", struct gnttab_query_size);
    FIELD("gnttab_query_size", struct gnttab_query_size, dom);
    FIELD("gnttab_query_size", struct gnttab_query_size, nr_frames);
    FIELD("gnttab_query_size", struct gnttab_query_size, max_nr_frames);
    FIELD("gnttab_query_size", struct gnttab_query_size, status);

    SIZE("gnttab_setup_table", struct gnttab_setup_table);
    FIELD("gnttab_setup_table", struct gnttab_setup_table, dom);
    FIELD("gnttab_setup_table", struct gnttab_setup_table, nr_frames);
    FIELD("gnttab_setup_table", struct gnttab_setup_table, status);
    FIELD("gnttab_setup_table", struct gnttab_setup_table, frame_list);
}

static void event_channel_h(void)
{
    CONST(EVTCHNOP_bind_interdomain);
    CONST(EVTCHNOP_bind_virq);
    CONST(EVTCHNOP_close);
    CONST(EVTCHNOP_send);
    CONST(EVTCHNOP_status);
    CONST(EVTCHNOP_alloc_unbound);
    CONST(EVTCHNOP_bind_ipi);
    CONST(EVTCHNOP_bind_vcpu);
    CONST(EVTCHNOP_unmask);
    CONST(EVTCHN_2L_NR_CHANNELS);

    CONST(EVTCHNSTAT_closed);
    CONST(EVTCHNSTAT_unbound);
    CONST(EVTCHNSTAT_interdomain);
    CONST(EVTCHNSTAT_pirq);
    CONST(EVTCHNSTAT_virq);
    CONST(EVTCHNSTAT_ipi);

    SIZE("evtchn_alloc_unbound", struct evtchn_alloc_unbound);
    FIELD("evtchn_alloc_unbound", struct evtchn_alloc_unbound, dom);
    FIELD("evtchn_alloc_unbound", struct evtchn_alloc_unbound, remote_dom);
    FIELD("evtchn_alloc_unbound", struct evtchn_alloc_unbound, port);

    SIZE("evtchn_bind_interdomain", struct evtchn_bind_interdomain);
    FIELD("evtchn_bind_interdomain", struct evtchn_bind_interdomain, remote_dom);
    FIELD("evtchn_bind_interdomain", struct evtchn_bind_interdomain, remote_port);
    FIELD("evtchn_bind_interdomain", struct evtchn_bind_interdomain, local_port);

    SIZE("evtchn_bind_virq", struct evtchn_bind_virq);
    FIELD("evtchn_bind_virq", struct evtchn_bind_virq, virq);
    FIELD("evtchn_bind_virq", struct evtchn_bind_virq, vcpu);
    FIELD("evtchn_bind_virq", struct evtchn_bind_virq, port);

    SIZE("evtchn_bind_ipi", struct evtchn_bind_ipi);
    FIELD("evtchn_bind_ipi", struct evtchn_bind_ipi, vcpu);
    FIELD("evtchn_bind_ipi", struct evtchn_bind_ipi, port);

    SIZE("evtchn_close", struct evtchn_close);
    FIELD("evtchn_close", struct evtchn_close, port);

    SIZE("evtchn_send", struct evtchn_send);
    FIELD("evtchn_send", struct evtchn_send, port);

    SIZE("evtchn_unmask", struct evtchn_unmask);
    FIELD("evtchn_unmask", struct evtchn_unmask, port);

    SIZE("evtchn_status.u.interdomain", evtchn_status_interdomain_t);
    FIELD("evtchn_status.u.interdomain", evtchn_status_interdomain_t, dom);
    FIELD("evtchn_status.u.interdomain", evtchn_status_interdomain_t, port);

    SIZE("evtchn_status", struct evtchn_status);
    FIELD("evtchn_status", struct evtchn_status, dom);
    FIELD("evtchn_status", struct evtchn_status, port);
    FIELD("evtchn_status", struct evtchn_status, status);
    FIELD("evtchn_status", struct evtchn_status, vcpu);
    FIELD("evtchn_status", struct evtchn_status, u);
    FIELD("evtchn_status", struct evtchn_status, u.unbound.dom);
    FIELD("evtchn_status", struct evtchn_status, u.interdomain);
    FIELD("evtchn_status", struct evtchn_status, u.interdomain.dom);
    FIELD("evtchn_status", struct evtchn_status, u.interdomain.port);
    FIELD("evtchn_status", struct evtchn_status, u.pirq);
    FIELD("evtchn_status", struct evtchn_status, u.virq);
}

static void sched_vcpu_h(void)
{
    CONST(SCHEDOP_yield);
    CONST(SCHEDOP_block);
    CONST(SCHEDOP_shutdown);
    CONST(SCHEDOP_poll);
    CONST(SCHEDOP_shutdown_code);

    CONST(SHUTDOWN_poweroff);
    CONST(SHUTDOWN_reboot);
    CONST(SHUTDOWN_suspend);
    CONST(SHUTDOWN_crash);
    CONST(SHUTDOWN_watchdog);

    SIZE("sched_shutdown", struct sched_shutdown);
    FIELD("sched_shutdown", struct sched_shutdown, reason);

    SIZE("sched_poll", struct sched_poll);
    FIELD("sched_poll", struct sched_poll, ports);
    FIELD("sched_poll", struct sched_poll, nr_ports);
    FIELD("sched_poll", struct sched_poll, timeout);

    CONST(VCPUOP_set_singleshot_timer);
    CONST(VCPUOP_stop_singleshot_timer);
    CONST(VCPUOP_register_vcpu_info);
    CONST(VCPU_SSHOTTMR_future);

    SIZE("vcpu_set_singleshot_timer", struct vcpu_set_singleshot_timer);
    FIELD("vcpu_set_singleshot_timer", struct vcpu_set_singleshot_timer, timeout_abs_ns);
    FIELD("vcpu_set_singleshot_timer", struct vcpu_set_singleshot_timer, flags);

    SIZE("vcpu_register_vcpu_info", struct vcpu_register_vcpu_info);
    FIELD("vcpu_register_vcpu_info", struct vcpu_register_vcpu_info, mfn);
    FIELD("vcpu_register_vcpu_info", struct vcpu_register_vcpu_info, offset);
    FIELD("vcpu_register_vcpu_info", struct vcpu_register_vcpu_info, rsvd);
}

static void hvm_h(void)
{
    CONST(HVMOP_set_param);
    CONST(HVMOP_get_param);
    CONST(HVMOP_get_time);
    CONST(HVMOP_set_evtchn_upcall_vector);

    CONST(HVM_PARAM_CALLBACK_IRQ);
    CONST(HVM_PARAM_STORE_PFN);
    CONST(HVM_PARAM_STORE_EVTCHN);
    CONST(HVM_PARAM_CONSOLE_PFN);
    CONST(HVM_PARAM_CONSOLE_EVTCHN);
    CONST(HVM_PARAM_VM86_TSS);
    CONST(HVM_PARAM_ACPI_IOPORTS_LOCATION);
    CONST(HVM_PARAM_VM_GENERATION_ID_ADDR);
    CONST(HVM_PARAM_ALTP2M);
    CONST(HVM_PARAM_X87_FIP_WIDTH);
    CONST(HVM_PARAM_VM86_TSS_SIZED);
    CONST(HVM_NR_PARAMS);

    CONST(XEN_HVM_START_MAGIC_VALUE);
    CONST(XEN_HVM_MEMMAP_TYPE_RAM);
    CONST(XEN_HVM_MEMMAP_TYPE_RESERVED);
    CONST(XEN_HVM_MEMMAP_TYPE_ACPI);
    CONST(XEN_HVM_MEMMAP_TYPE_NVS);
    CONST(XEN_HVM_MEMMAP_TYPE_UNUSABLE);

    SIZE("xen_hvm_param", struct xen_hvm_param);
    FIELD("xen_hvm_param", struct xen_hvm_param, domid);
    FIELD("xen_hvm_param", struct xen_hvm_param, pad);
    FIELD("xen_hvm_param", struct xen_hvm_param, index);
    FIELD("xen_hvm_param", struct xen_hvm_param, value);

    SIZE("xen_hvm_get_time", struct xen_hvm_get_time);
    FIELD("xen_hvm_get_time", struct xen_hvm_get_time, now);

    SIZE("xen_hvm_evtchn_upcall_vector", struct xen_hvm_evtchn_upcall_vector);
    FIELD("xen_hvm_evtchn_upcall_vector", struct xen_hvm_evtchn_upcall_vector, vcpu);
    FIELD("xen_hvm_evtchn_upcall_vector", struct xen_hvm_evtchn_upcall_vector, vector);

    SIZE("hvm_start_info", struct hvm_start_info);
    FIELD("hvm_start_info", struct hvm_start_info, magic);
    FIELD("hvm_start_info", struct hvm_start_info, version);
    FIELD("hvm_start_info", struct hvm_start_info, flags);
    FIELD("hvm_start_info", struct hvm_start_info, nr_modules);
    FIELD("hvm_start_info", struct hvm_start_info, modlist_paddr);
    FIELD("hvm_start_info", struct hvm_start_info, cmdline_paddr);
    FIELD("hvm_start_info", struct hvm_start_info, rsdp_paddr);
    FIELD("hvm_start_info", struct hvm_start_info, memmap_paddr);
    FIELD("hvm_start_info", struct hvm_start_info, memmap_entries);
    FIELD("hvm_start_info", struct hvm_start_info, reserved);

    SIZE("hvm_memmap_table_entry", struct hvm_memmap_table_entry);
    FIELD("hvm_memmap_table_entry", struct hvm_memmap_table_entry, addr);
    FIELD("hvm_memmap_table_entry", struct hvm_memmap_table_entry, size);
    FIELD("hvm_memmap_table_entry", struct hvm_memmap_table_entry, type);
    FIELD("hvm_memmap_table_entry", struct hvm_memmap_table_entry, reserved);

    SIZE("hvm_modlist_entry", struct hvm_modlist_entry);
    FIELD("hvm_modlist_entry", struct hvm_modlist_entry, paddr);
    FIELD("hvm_modlist_entry", struct hvm_modlist_entry, size);
    FIELD("hvm_modlist_entry", struct hvm_modlist_entry, cmdline_paddr);
    FIELD("hvm_modlist_entry", struct hvm_modlist_entry, reserved);
}

static void ring_netif_h(void)
{
    /* The header every DEFINE_RING_TYPES sring starts with; its size is
     * where the entries begin. Printed from netif_tx_sring, and the same
     * facts of netif_rx_sring as consts so both are compared. */
    SIZE_N("sring_header", offsetof(struct netif_tx_sring, ring));
    FIELD("sring_header", struct netif_tx_sring, req_prod);
    FIELD("sring_header", struct netif_tx_sring, req_event);
    FIELD("sring_header", struct netif_tx_sring, rsp_prod);
    FIELD("sring_header", struct netif_tx_sring, rsp_event);
    FIELD("sring_header", struct netif_tx_sring, pvt);
    FIELD("sring_header", struct netif_tx_sring, pvt.netif.smartpoll_active);
    FIELD("sring_header", struct netif_tx_sring, __pad);
    CONST_AS("netif_tx_sring.ring.offset", offsetof(struct netif_tx_sring, ring));
    CONST_AS("netif_rx_sring.ring.offset", offsetof(struct netif_rx_sring, ring));
    CONST_AS("netif_tx_sring_entry.size", sizeof(union netif_tx_sring_entry));
    CONST_AS("netif_rx_sring_entry.size", sizeof(union netif_rx_sring_entry));
    CONST_AS("__CONST_RING_SIZE(netif_tx,4096)", __CONST_RING_SIZE(netif_tx, 4096));
    CONST_AS("__CONST_RING_SIZE(netif_rx,4096)", __CONST_RING_SIZE(netif_rx, 4096));

    CONST(NETTXF_csum_blank);
    CONST(NETTXF_data_validated);
    CONST(NETTXF_more_data);
    CONST(NETTXF_extra_info);
    CONST(NETRXF_data_validated);
    CONST(NETRXF_csum_blank);
    CONST(NETRXF_more_data);
    CONST(NETRXF_extra_info);
    CONST(NETRXF_gso_prefix);

    CONST(XEN_NETIF_EXTRA_TYPE_NONE);
    CONST(XEN_NETIF_EXTRA_TYPE_GSO);
    CONST(XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
    CONST(XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
    CONST(XEN_NETIF_EXTRA_TYPE_HASH);
    CONST(XEN_NETIF_EXTRA_TYPE_MAX);
    CONST(XEN_NETIF_EXTRA_FLAG_MORE);
    CONST(XEN_NETIF_GSO_TYPE_NONE);
    CONST(XEN_NETIF_GSO_TYPE_TCPV4);
    CONST(XEN_NETIF_GSO_TYPE_TCPV6);

    CONST(NETIF_RSP_DROPPED);
    CONST(NETIF_RSP_ERROR);
    CONST(NETIF_RSP_OKAY);
    CONST(NETIF_RSP_NULL);
    CONST(XEN_NETIF_MAX_TX_SIZE);
    CONST(XEN_NETIF_NR_SLOTS_MIN);

    SIZE("netif_tx_request", struct netif_tx_request);
    FIELD("netif_tx_request", struct netif_tx_request, gref);
    FIELD("netif_tx_request", struct netif_tx_request, offset);
    FIELD("netif_tx_request", struct netif_tx_request, flags);
    FIELD("netif_tx_request", struct netif_tx_request, id);
    FIELD("netif_tx_request", struct netif_tx_request, size);

    SIZE("netif_tx_response", struct netif_tx_response);
    FIELD("netif_tx_response", struct netif_tx_response, id);
    FIELD("netif_tx_response", struct netif_tx_response, status);

    SIZE("netif_rx_request", struct netif_rx_request);
    FIELD("netif_rx_request", struct netif_rx_request, id);
    FIELD("netif_rx_request", struct netif_rx_request, pad);
    FIELD("netif_rx_request", struct netif_rx_request, gref);

    SIZE("netif_rx_response", struct netif_rx_response);
    FIELD("netif_rx_response", struct netif_rx_response, id);
    FIELD("netif_rx_response", struct netif_rx_response, offset);
    FIELD("netif_rx_response", struct netif_rx_response, flags);
    FIELD("netif_rx_response", struct netif_rx_response, status);

    SIZE("netif_extra_info.u.gso", netif_extra_info_gso_t);
    FIELD("netif_extra_info.u.gso", netif_extra_info_gso_t, size);
    FIELD("netif_extra_info.u.gso", netif_extra_info_gso_t, type);
    FIELD("netif_extra_info.u.gso", netif_extra_info_gso_t, pad);
    FIELD("netif_extra_info.u.gso", netif_extra_info_gso_t, features);

    SIZE("netif_extra_info", struct netif_extra_info);
    FIELD("netif_extra_info", struct netif_extra_info, type);
    FIELD("netif_extra_info", struct netif_extra_info, flags);
    FIELD("netif_extra_info", struct netif_extra_info, u);
    FIELD("netif_extra_info", struct netif_extra_info, u.gso);
    FIELD("netif_extra_info", struct netif_extra_info, u.gso.size);
    FIELD("netif_extra_info", struct netif_extra_info, u.gso.type);
    FIELD("netif_extra_info", struct netif_extra_info, u.gso.pad);
    FIELD("netif_extra_info", struct netif_extra_info, u.gso.features);
    FIELD("netif_extra_info", struct netif_extra_info, u.mcast);
    FIELD("netif_extra_info", struct netif_extra_info, u.hash);
    FIELD("netif_extra_info", struct netif_extra_info, u.pad);
}

static void xs_wire_h(void)
{
    CONST(XENSTORE_RING_SIZE);
    CONST(XENSTORE_PAYLOAD_MAX);
    CONST(XENSTORE_ABS_PATH_MAX);
    CONST(XENSTORE_REL_PATH_MAX);
    CONST(XENSTORE_SERVER_FEATURE_RECONNECTION);
    CONST(XENSTORE_SERVER_FEATURE_ERROR);
    CONST(XENSTORE_CONNECTED);
    CONST(XENSTORE_RECONNECT);
    CONST(XENSTORE_ERROR_NONE);
    CONST(XENSTORE_ERROR_COMM);
    CONST(XENSTORE_ERROR_RINGIDX);
    CONST(XENSTORE_ERROR_PROTO);

    CONST(XS_CONTROL);
    CONST(XS_DIRECTORY);
    CONST(XS_READ);
    CONST(XS_GET_PERMS);
    CONST(XS_WATCH);
    CONST(XS_UNWATCH);
    CONST(XS_TRANSACTION_START);
    CONST(XS_TRANSACTION_END);
    CONST(XS_INTRODUCE);
    CONST(XS_RELEASE);
    CONST(XS_GET_DOMAIN_PATH);
    CONST(XS_WRITE);
    CONST(XS_MKDIR);
    CONST(XS_RM);
    CONST(XS_SET_PERMS);
    CONST(XS_WATCH_EVENT);
    CONST(XS_ERROR);
    CONST(XS_IS_DOMAIN_INTRODUCED);
    CONST(XS_RESUME);
    CONST(XS_SET_TARGET);
    CONST(XS_RESET_WATCHES);
    CONST(XS_DIRECTORY_PART);
    CONST(XS_TYPE_COUNT);
    CONST(XS_INVALID);

    SIZE("xenstore_domain_interface", struct xenstore_domain_interface);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, req);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, rsp);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, req_cons);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, req_prod);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, rsp_cons);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, rsp_prod);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, server_features);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, connection);
    FIELD("xenstore_domain_interface", struct xenstore_domain_interface, error);

    SIZE("xsd_sockmsg", struct xsd_sockmsg);
    FIELD("xsd_sockmsg", struct xsd_sockmsg, type);
    FIELD("xsd_sockmsg", struct xsd_sockmsg, req_id);
    FIELD("xsd_sockmsg", struct xsd_sockmsg, tx_id);
    FIELD("xsd_sockmsg", struct xsd_sockmsg, len);
}

static void console_vchan_h(void)
{
    /* console.h has no macro for the ring sizes: they are the arrays'. */
    CONST_AS("XENCONS_IN_SIZE", sizeof(MEMBER(struct xencons_interface, in)));
    CONST_AS("XENCONS_OUT_SIZE", sizeof(MEMBER(struct xencons_interface, out)));

    SIZE("xencons_interface", struct xencons_interface);
    FIELD("xencons_interface", struct xencons_interface, in);
    FIELD("xencons_interface", struct xencons_interface, out);
    FIELD("xencons_interface", struct xencons_interface, in_cons);
    FIELD("xencons_interface", struct xencons_interface, in_prod);
    FIELD("xencons_interface", struct xencons_interface, out_cons);
    FIELD("xencons_interface", struct xencons_interface, out_prod);

    CONST(VCHAN_NOTIFY_WRITE);
    CONST(VCHAN_NOTIFY_READ);

    SIZE("ring_shared", struct ring_shared);
    FIELD("ring_shared", struct ring_shared, cons);
    FIELD("ring_shared", struct ring_shared, prod);

    SIZE("vchan_interface", struct vchan_interface);
    FIELD("vchan_interface", struct vchan_interface, left);
    FIELD("vchan_interface", struct vchan_interface, right);
    FIELD("vchan_interface", struct vchan_interface, left_order);
    FIELD("vchan_interface", struct vchan_interface, right_order);
    FIELD("vchan_interface", struct vchan_interface, cli_live);
    FIELD("vchan_interface", struct vchan_interface, srv_live);
    FIELD("vchan_interface", struct vchan_interface, cli_notify);
    FIELD("vchan_interface", struct vchan_interface, srv_notify);
    /* The flexible grant list starts where the Rust header ends. */
    CONST_AS("vchan_interface.grants.offset", offsetof(struct vchan_interface, grants));
}

int main(void)
{
    xen_h();
    errnos();
    shared_info_page();
    memory_h();
    grant_table_h();
    event_channel_h();
    sched_vcpu_h();
    hvm_h();
    ring_netif_h();
    xs_wire_h();
    console_vchan_h();
    return ferror(stdout) ? 1 : 0;
}
