//! Every error path of the simulated hypervisor, each checked against the
//! code Xen returns, plus the success paths they guard. These drive the sim
//! through the same guest-side services (`GrantTable`, `EventChannels`,
//! `map_grant_refs`, `grant_copy`) the drivers use.

use std::time::Duration;

use xen::abi::domid::DOMID_SELF;
use xen::abi::event_channel::*;
use xen::abi::grant_table::{
    status, GnttabMapGrantRef, GnttabUnmapGrantRef, GNTMAP_HOST_MAP, GNTMAP_READONLY,
};
use xen::abi::hvm::*;
use xen::abi::memory::*;
use xen::abi::vcpu::VcpuSetSingleshotTimer;
use xen::abi::Errno;
use xen::evtchn::{EventChannels, Wake};
use xen::gnttab::{
    copy_from_grant, copy_to_grant, grant_copy, map_grant_refs, GrantError, GrantTable,
};
use xen::hypervisor::*;
use xen::memory::Gfn;
use xen::sim::{DomainConfig, SimDomain, SimXen};
use xen::GuestMemory;

fn three() -> (SimXen, SimDomain, SimDomain, SimDomain) {
    let x = SimXen::new();
    let d0 = x.create_domain(&DomainConfig::new("dom0")).unwrap();
    let a = x.create_domain(&DomainConfig::new("a")).unwrap();
    let b = x.create_domain(&DomainConfig::new("b")).unwrap();
    (x, d0, a, b)
}

fn map1(d: &SimDomain, granter: u16, r: u32, flags: u32) -> GnttabMapGrantRef {
    let gfn = d.alloc_hole(1).unwrap();
    let mut op = [GnttabMapGrantRef {
        host_addr: gfn.gpa(),
        flags,
        r#ref: r,
        dom: granter,
        ..Default::default()
    }];
    d.grant_table_op(GnttabOp::MapGrantRef(&mut op)).unwrap();
    op[0]
}

#[test]
fn foreign_mapping_aliases_the_granted_page() {
    let (x, _d0, a, b) = three();
    let mut gt = GrantTable::new(a.clone(), 4).unwrap();
    let page = a.alloc_pages(1).unwrap();
    let r = gt.grant(b.domid(), page, false).unwrap();
    assert!(r >= 8, "reserved refs are never handed out");
    let m = map_grant_refs(&b, a.domid(), &[r], false).unwrap();
    a.page(page).unwrap().write_u64(128, 0x1122_3344);
    assert_eq!(m.mem().read_u64(128), 0x1122_3344);
    m.mem().write_u32(4000, 77);
    assert_eq!(a.page(page).unwrap().read_u32(4000), 77);
    // While mapped, Xen marks the entry in use and revocation fails.
    assert_eq!(gt.end_access(r), Err(GrantError::InUse(r)));
    m.unmap(&b).unwrap();
    gt.end_access(r).unwrap();
    assert_eq!(gt.end_access(r), Err(GrantError::NotGranted(r)));
    let c = x.counters(b.domid()).unwrap();
    assert_eq!((c.grant_maps, c.grant_unmaps), (1, 1));
}

#[test]
fn map_checks_domid_readonly_ref_and_flags() {
    let (_x, d0, a, b) = three();
    let mut gt = GrantTable::new(a.clone(), 1).unwrap();
    let page = a.alloc_pages(1).unwrap();
    // Granted to dom0, mapped by b: wrong domid.
    let r0 = gt.grant(d0.domid(), page, false).unwrap();
    assert_eq!(
        map1(&b, a.domid(), r0, GNTMAP_HOST_MAP).status,
        status::GENERAL_ERROR
    );
    // Read-only grant mapped writable.
    let ro = gt.grant(b.domid(), page, true).unwrap();
    assert_eq!(
        map1(&b, a.domid(), ro, GNTMAP_HOST_MAP).status,
        status::GENERAL_ERROR
    );
    let ok = map1(&b, a.domid(), ro, GNTMAP_HOST_MAP | GNTMAP_READONLY);
    assert_eq!(ok.status, status::OKAY);
    // A ref that was never granted, and one beyond the table.
    assert_eq!(
        map1(&b, a.domid(), 300, GNTMAP_HOST_MAP).status,
        status::GENERAL_ERROR
    );
    assert_eq!(
        map1(&b, a.domid(), 512, GNTMAP_HOST_MAP).status,
        status::BAD_GNTREF
    );
    // A revoked ref.
    let rv = gt.grant(b.domid(), page, false).unwrap();
    gt.end_access(rv).unwrap();
    assert_eq!(
        map1(&b, a.domid(), rv, GNTMAP_HOST_MAP).status,
        status::GENERAL_ERROR
    );
    // Mapping kinds a PVH guest may not use, and a nonexistent granter.
    let w = gt.grant(b.domid(), page, false).unwrap();
    assert_eq!(
        map1(&b, a.domid(), w, GNTMAP_HOST_MAP | 1).status,
        status::GENERAL_ERROR
    );
    assert_eq!(map1(&b, 999, w, GNTMAP_HOST_MAP).status, status::BAD_DOMAIN);
    // No host_map bit at all: Xen reports a bad ref.
    assert_eq!(
        map1(&b, a.domid(), w, GNTMAP_READONLY).status,
        status::BAD_GNTREF
    );
    // A host address outside the address space.
    let mut op = [GnttabMapGrantRef {
        host_addr: 1 << 40,
        flags: GNTMAP_HOST_MAP,
        r#ref: w,
        dom: a.domid(),
        ..Default::default()
    }];
    b.grant_table_op(GnttabOp::MapGrantRef(&mut op)).unwrap();
    assert_eq!(op[0].status, status::GENERAL_ERROR);
    // An unaligned address maps its containing page, as on Xen.
    let hole = b.alloc_hole(1).unwrap().gpa();
    let mut op = [GnttabMapGrantRef {
        host_addr: hole + 8,
        flags: GNTMAP_HOST_MAP,
        r#ref: w,
        dom: a.domid(),
        ..Default::default()
    }];
    b.grant_table_op(GnttabOp::MapGrantRef(&mut op)).unwrap();
    assert_eq!(op[0].status, status::OKAY);
    a.page(page).unwrap().write_u8(9, 42);
    assert_eq!(b.page(Gfn::containing(hole)).unwrap().read_u8(9), 42);
    let mut un = [GnttabUnmapGrantRef {
        host_addr: hole + 16,
        handle: op[0].handle,
        ..Default::default()
    }];
    b.grant_table_op(GnttabOp::UnmapGrantRef(&mut un)).unwrap();
    assert_eq!(un[0].status, status::OKAY);
    // Unmap with an unknown handle, and with the wrong address.
    let mut un = [GnttabUnmapGrantRef {
        host_addr: ok.host_addr,
        handle: 12345,
        ..Default::default()
    }];
    b.grant_table_op(GnttabOp::UnmapGrantRef(&mut un)).unwrap();
    assert_eq!(un[0].status, status::BAD_HANDLE);
    let mut un = [GnttabUnmapGrantRef {
        host_addr: ok.host_addr + 4096,
        handle: ok.handle,
        ..Default::default()
    }];
    b.grant_table_op(GnttabOp::UnmapGrantRef(&mut un)).unwrap();
    assert_eq!(un[0].status, status::GENERAL_ERROR);
    let mut un = [GnttabUnmapGrantRef {
        host_addr: ok.host_addr,
        handle: ok.handle,
        ..Default::default()
    }];
    b.grant_table_op(GnttabOp::UnmapGrantRef(&mut un)).unwrap();
    assert_eq!(un[0].status, status::OKAY);
    gt.end_access(ro).unwrap();
}

#[test]
fn map_failure_in_a_batch_leaves_nothing_mapped() {
    let (_x, _d0, a, b) = three();
    let mut gt = GrantTable::new(a.clone(), 1).unwrap();
    let p = a.alloc_pages(2).unwrap();
    let r1 = gt.grant(b.domid(), p, false).unwrap();
    let r2 = gt.grant(b.domid(), p.add(1), true).unwrap();
    let e = map_grant_refs(&b, a.domid(), &[r1, r2], false).unwrap_err();
    assert_eq!(
        e,
        GrantError::Status {
            index: 1,
            status: status::GENERAL_ERROR
        }
    );
    // r1 was mapped then undone: it is revocable again.
    gt.end_access(r1).unwrap();
    gt.end_access(r2).unwrap();
}

#[test]
fn grant_copy_checks_bounds_domids_and_permissions() {
    let (x, _d0, a, b) = three();
    let mut gt = GrantTable::new(a.clone(), 1).unwrap();
    let pa = a.alloc_pages(1).unwrap();
    let pb = b.alloc_pages(1).unwrap();
    let rw = gt.grant(b.domid(), pa, false).unwrap();
    let ro = gt.grant(b.domid(), pa, true).unwrap();
    b.page(pb).unwrap().write_bytes(10, b"payload!");
    // b copies its bytes into a's page, then back out, in one batch.
    let mut ops = [
        copy_to_grant(pb, 10, a.domid(), rw, 100, 8),
        copy_from_grant(a.domid(), ro, 100, pb, 200, 8),
    ];
    grant_copy(&b, &mut ops).unwrap();
    let mut out = [0u8; 8];
    a.page(pa).unwrap().read_bytes(100, &mut out);
    assert_eq!(&out, b"payload!");
    b.page(pb).unwrap().read_bytes(200, &mut out);
    assert_eq!(&out, b"payload!");
    let c = x.counters(b.domid()).unwrap();
    assert_eq!(
        (c.grant_copies, c.grant_copy_bytes, c.grant_table_op),
        (2, 16, 1)
    );
    // Unknown flag bits are ignored by Xen.
    let mut op = [copy_to_grant(pb, 0, a.domid(), rw, 0, 4)];
    op[0].flags |= 0x80;
    grant_copy(&b, &mut op).unwrap();
    // Past the end of the page, on either side.
    let mut op = [copy_to_grant(pb, 4090, a.domid(), rw, 0, 7)];
    assert!(grant_copy(&b, &mut op).is_err());
    assert_eq!(op[0].status, status::BAD_COPY_ARG);
    let mut op = [copy_to_grant(pb, 0, a.domid(), rw, 4095, 2)];
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(op[0].status, status::BAD_COPY_ARG);
    // Writing through a read-only grant.
    let mut op = [copy_to_grant(pb, 0, a.domid(), ro, 0, 4)];
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(op[0].status, status::GENERAL_ERROR);
    // A frame side with our numeric domid instead of DOMID_SELF.
    let mut op = [copy_to_grant(pb, 0, a.domid(), rw, 0, 4)];
    op[0].source.domid = b.domid();
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(op[0].status, status::PERMISSION_DENIED);
    // A frame that is not our RAM.
    let mut op = [copy_to_grant(Gfn(0x4_0000), 0, a.domid(), rw, 0, 4)];
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(op[0].status, status::BAD_PAGE);
    // Bounds are checked after the grants: a bad ref wins over bad bounds.
    let mut op = [copy_to_grant(pb, 4090, a.domid(), 9999, 0, 7)];
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(op[0].status, status::BAD_GNTREF);
    // Unknown granter, ref beyond the table, ref never granted.
    let mut op = [
        copy_to_grant(pb, 0, 999, rw, 0, 4),
        copy_to_grant(pb, 0, a.domid(), 9999, 0, 4),
        copy_to_grant(pb, 0, a.domid(), 400, 0, 4),
    ];
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(
        [op[0].status, op[1].status, op[2].status],
        [
            status::BAD_DOMAIN,
            status::BAD_GNTREF,
            status::GENERAL_ERROR
        ]
    );
    // Copies pin only while they run: both grants revoke cleanly.
    gt.end_access(rw).unwrap();
    gt.end_access(ro).unwrap();
    // And a revoked ref can no longer be copied to.
    let mut op = [copy_to_grant(pb, 0, a.domid(), rw, 0, 4)];
    grant_copy(&b, &mut op).unwrap_err();
    assert_eq!(op[0].status, status::GENERAL_ERROR);
}

#[test]
fn event_channel_errors() {
    let (x, _d0, a, b) = three();
    let ea = EventChannels::new(a.clone()).unwrap();
    let eb = EventChannels::new(b.clone()).unwrap();
    // Send / close / unmask on a port that was never allocated.
    assert_eq!(ea.send(5), Err(Errno::EINVAL));
    assert_eq!(ea.close(5), Err(Errno::EINVAL));
    assert_eq!(ea.unmask(5000), Err(Errno::EINVAL));
    // Port 0 is reserved.
    assert_eq!(ea.send(0), Err(Errno::EINVAL));
    // An unprivileged domain cannot allocate ports for others.
    let mut au = EvtchnAllocUnbound {
        dom: b.domid(),
        remote_dom: a.domid(),
        port: 0,
    };
    assert_eq!(
        a.event_channel_op(EvtchnOp::AllocUnbound(&mut au)),
        Err(Errno::EPERM)
    );
    // Binding to a missing domain, a free port, or a port not offered to us.
    assert_eq!(eb.bind_interdomain(999, 1), Err(Errno::ESRCH));
    assert_eq!(eb.bind_interdomain(a.domid(), 50), Err(Errno::EINVAL));
    let for_d0 = ea.alloc_unbound(0).unwrap();
    assert_eq!(eb.bind_interdomain(a.domid(), for_d0), Err(Errno::EINVAL));
    // Sending on an unbound port is accepted and goes nowhere.
    ea.send(for_d0).unwrap();
    assert_eq!(x.counters(a.domid()).unwrap().notifications, 0);
    // A proper pair; binding marks the new local port pending once.
    let pa = ea.alloc_unbound(b.domid()).unwrap();
    let pb = eb.bind_interdomain(a.domid(), pa).unwrap();
    assert!(eb.clear_pending(pb));
    // Binding the same port twice fails: it is no longer unbound.
    assert_eq!(eb.bind_interdomain(a.domid(), pa), Err(Errno::EINVAL));
    ea.send(pa).unwrap();
    assert!(eb.is_pending(pb));
    let st = ea.status(pa).unwrap();
    assert_eq!(
        (st.status, st.u.dom, st.u.port),
        (EVTCHNSTAT_INTERDOMAIN, b.domid(), pb)
    );
    // Closing one end makes the other unbound; sending on it then is a no-op.
    eb.close(pb).unwrap();
    assert_eq!(ea.status(pa).unwrap().status, EVTCHNSTAT_UNBOUND);
    assert_eq!(eb.send(pb), Err(Errno::EINVAL));
    ea.send(pa).unwrap();
    // VIRQs: out of range, bound twice, bound on another vCPU (a global
    // VIRQ is EINVAL there, a per-vCPU one fails the vCPU lookup).
    assert_eq!(ea.bind_virq(NR_VIRQS), Err(Errno::EINVAL));
    let mut bv = EvtchnBindVirq {
        virq: VIRQ_CONSOLE,
        vcpu: 1,
        port: 0,
    };
    assert_eq!(
        a.event_channel_op(EvtchnOp::BindVirq(&mut bv)),
        Err(Errno::EINVAL)
    );
    let mut bv = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 1,
        port: 0,
    };
    assert_eq!(
        a.event_channel_op(EvtchnOp::BindVirq(&mut bv)),
        Err(Errno::ENOENT)
    );
    ea.bind_virq(VIRQ_TIMER).unwrap();
    assert_eq!(ea.bind_virq(VIRQ_TIMER), Err(Errno::EEXIST));
    // Status of another domain's port needs privilege.
    let mut s = EvtchnStatus {
        dom: b.domid(),
        port: 1,
        ..Default::default()
    };
    assert_eq!(
        a.event_channel_op(EvtchnOp::Status(&mut s)),
        Err(Errno::EPERM)
    );
    let mut s = EvtchnStatus {
        dom: 999,
        port: 1,
        ..Default::default()
    };
    assert_eq!(
        a.event_channel_op(EvtchnOp::Status(&mut s)),
        Err(Errno::ESRCH)
    );
    let mut au = EvtchnAllocUnbound {
        dom: 999,
        remote_dom: a.domid(),
        port: 0,
    };
    assert_eq!(
        a.event_channel_op(EvtchnOp::AllocUnbound(&mut au)),
        Err(Errno::ESRCH)
    );
    // Poll limits: too many ports, a port out of range, an unused port,
    // the reserved port 0.
    let many = vec![pa; 129];
    assert_eq!(
        a.sched_op(SchedOp::Poll {
            ports: &many,
            timeout: 1
        }),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        a.sched_op(SchedOp::Poll {
            ports: &[4096],
            timeout: 1
        }),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        a.sched_op(SchedOp::Poll {
            ports: &[300],
            timeout: 1
        }),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        a.sched_op(SchedOp::Poll {
            ports: &[0],
            timeout: 1
        }),
        Err(Errno::EINVAL)
    );
    // A closed port's pending bit is cleared, so a reused port starts idle.
    let p1 = ea.alloc_unbound(b.domid()).unwrap();
    let p2 = eb.bind_interdomain(a.domid(), p1).unwrap();
    eb.send(p2).unwrap();
    assert!(ea.is_pending(p1));
    a.event_channel_op(EvtchnOp::Close(&EvtchnClose { port: p1 }))
        .unwrap();
    assert!(!ea.is_pending(p1));
}

#[test]
fn poll_sleeps_until_a_send_or_the_deadline() {
    let (x, _d0, a, b) = three();
    let ea = EventChannels::new(a.clone()).unwrap();
    let eb = EventChannels::new(b.clone()).unwrap();
    let pa = ea.alloc_unbound(b.domid()).unwrap();
    let pb = eb.bind_interdomain(a.domid(), pa).unwrap();
    eb.clear_pending(pb);
    // Deadline with nothing pending.
    let t0 = x.now_ns();
    assert_eq!(
        ea.wait(&[pa], Some(t0 + 20_000_000)).unwrap(),
        Wake::Timeout
    );
    assert!(x.now_ns() >= t0 + 20_000_000);
    // A send from another thread wakes the poller.
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        eb.send(pb).unwrap();
    });
    let t1 = x.now_ns();
    assert_eq!(
        ea.wait(&[pa], Some(t1 + 5_000_000_000)).unwrap(),
        Wake::Pending
    );
    assert!(x.now_ns() - t1 < 4_000_000_000);
    assert!(ea.clear_pending(pa));
    t.join().unwrap();
}

#[test]
fn singleshot_timer_raises_virq_timer() {
    let (x, _d0, a, _b) = three();
    let ea = EventChannels::new(a.clone()).unwrap();
    let tp = ea.bind_virq(VIRQ_TIMER).unwrap();
    let deadline = x.now_ns() + 15_000_000;
    a.vcpu_op(VcpuOp::SetSingleshotTimer(&VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline,
        flags: 0,
    }))
    .unwrap();
    assert_eq!(ea.wait(&[tp], None).unwrap(), Wake::Pending);
    assert!(x.now_ns() >= deadline);
    // Stopped timers never fire.
    ea.clear_pending(tp);
    let soon = x.now_ns() + 5_000_000;
    a.vcpu_op(VcpuOp::SetSingleshotTimer(&VcpuSetSingleshotTimer {
        timeout_abs_ns: soon,
        flags: 0,
    }))
    .unwrap();
    a.vcpu_op(VcpuOp::StopSingleshotTimer).unwrap();
    assert_eq!(
        ea.wait(&[tp], Some(x.now_ns() + 30_000_000)).unwrap(),
        Wake::Timeout
    );
}

#[test]
fn hvm_and_memory_op_errors() {
    let (_x, _d0, a, b) = three();
    // The ring params belong to the toolstack.
    let p = XenHvmParam {
        domid: DOMID_SELF,
        index: HVM_PARAM_STORE_PFN,
        value: 5,
        ..Default::default()
    };
    assert_eq!(a.hvm_op(HvmOp::SetParam(&p)), Err(Errno::EPERM));
    let mut g = XenHvmParam {
        domid: DOMID_SELF,
        index: 1000,
        ..Default::default()
    };
    assert_eq!(a.hvm_op(HvmOp::GetParam(&mut g)), Err(Errno::EINVAL));
    let mut g = XenHvmParam {
        domid: b.domid(),
        index: HVM_PARAM_STORE_PFN,
        ..Default::default()
    };
    assert_eq!(a.hvm_op(HvmOp::GetParam(&mut g)), Err(Errno::EPERM));
    let mut g = XenHvmParam {
        domid: 999,
        index: HVM_PARAM_STORE_PFN,
        ..Default::default()
    };
    assert_eq!(a.hvm_op(HvmOp::GetParam(&mut g)), Err(Errno::ESRCH));
    // Params outside the guest-readable list (here HVM_PARAM_IDENT_PT, 12).
    let mut g = XenHvmParam {
        domid: DOMID_SELF,
        index: 12,
        ..Default::default()
    };
    assert_eq!(a.hvm_op(HvmOp::GetParam(&mut g)), Err(Errno::EPERM));
    // A guest may set its own event channel params, not the ring GFNs.
    let p = XenHvmParam {
        domid: DOMID_SELF,
        index: HVM_PARAM_STORE_EVTCHN,
        value: 3,
        ..Default::default()
    };
    a.hvm_op(HvmOp::SetParam(&p)).unwrap();
    let v = XenHvmEvtchnUpcallVector {
        vcpu: 0,
        vector: 0x0f,
    };
    assert_eq!(
        a.hvm_op(HvmOp::SetEvtchnUpcallVector(&v)),
        Err(Errno::EINVAL)
    );
    let mut t = XenHvmGetTime::default();
    a.hvm_op(HvmOp::GetTime(&mut t)).unwrap();
    assert!(t.now > 0);
    // Grant frame beyond the maximum; shared info with a nonzero index; an
    // unsupported space; another domain's physmap; removing what was never
    // added.
    let h = a.alloc_hole(1).unwrap().0;
    let mk = |space, idx| XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn: h,
    };
    assert_eq!(
        a.memory_op(MemoryOp::AddToPhysmap(&mk(XENMAPSPACE_GRANT_TABLE, 64))),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        a.memory_op(MemoryOp::AddToPhysmap(&mk(XENMAPSPACE_SHARED_INFO, 1))),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        a.memory_op(MemoryOp::AddToPhysmap(&mk(XENMAPSPACE_GMFN_FOREIGN, 0))),
        Err(Errno::ENOSYS)
    );
    assert_eq!(
        a.memory_op(MemoryOp::AddToPhysmap(&mk(77, 0))),
        Err(Errno::EINVAL)
    );
    let missing = XenAddToPhysmap {
        domid: 999,
        ..mk(XENMAPSPACE_SHARED_INFO, 0)
    };
    assert_eq!(
        a.memory_op(MemoryOp::AddToPhysmap(&missing)),
        Err(Errno::ESRCH)
    );
    let other = XenAddToPhysmap {
        domid: b.domid(),
        ..mk(XENMAPSPACE_SHARED_INFO, 0)
    };
    assert_eq!(
        a.memory_op(MemoryOp::AddToPhysmap(&other)),
        Err(Errno::EPERM)
    );
    let rm = XenRemoveFromPhysmap {
        domid: DOMID_SELF,
        gpfn: h,
    };
    assert_eq!(
        a.memory_op(MemoryOp::RemoveFromPhysmap(&rm)),
        Err(Errno::ENOENT)
    );
    a.memory_op(MemoryOp::AddToPhysmap(&mk(XENMAPSPACE_GRANT_TABLE, 2)))
        .unwrap();
    a.memory_op(MemoryOp::RemoveFromPhysmap(&rm)).unwrap();
    // The table can grow to its maximum.
    let gt = GrantTable::new(a.clone(), 64).unwrap();
    assert_eq!(gt.capacity(), 64 * 512);
}

#[test]
fn destroyed_domain_releases_channels_and_mappings() {
    let (x, _d0, a, b) = three();
    let ea = EventChannels::new(a.clone()).unwrap();
    let eb = EventChannels::new(b.clone()).unwrap();
    let pa = ea.alloc_unbound(b.domid()).unwrap();
    eb.bind_interdomain(a.domid(), pa).unwrap();
    let mut gt = GrantTable::new(a.clone(), 1).unwrap();
    let page = a.alloc_pages(1).unwrap();
    let r = gt.grant(b.domid(), page, false).unwrap();
    let m = map_grant_refs(&b, a.domid(), &[r], false).unwrap();
    m.mem().write_u8(0, 1);
    assert_eq!(gt.end_access(r), Err(GrantError::InUse(r)));
    x.destroy_domain(b.domid());
    // Its hypercalls fail; its mapping was released; its channel end closed.
    assert_eq!(eb.send(1), Err(Errno::ESRCH));
    gt.end_access(r).unwrap();
    assert_eq!(ea.status(pa).unwrap().status, EVTCHNSTAT_UNBOUND);
    assert!(x.domain(b.domid()).is_none());
}

#[test]
fn second_event_channel_service_reuses_shared_info() {
    let (_x, _d0, a, b) = three();
    let ea = EventChannels::new(a.clone()).unwrap();
    let eb = EventChannels::new(b.clone()).unwrap();
    let pa = ea.alloc_unbound(b.domid()).unwrap();
    let pb = eb.bind_interdomain(a.domid(), pa).unwrap();
    // A second service in the same domain must see the same pending bits.
    let ea2 = EventChannels::new(a.clone()).unwrap();
    assert_eq!(ea2.shared_info_gfn(), ea.shared_info_gfn());
    eb.send(pb).unwrap();
    assert!(ea.is_pending(pa) && ea2.is_pending(pa));
}
