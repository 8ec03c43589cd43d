//! The shim's C entry points called from Rust, between two domains of a
//! simulated host, checking the Linux-driver semantics libxenvchan relies
//! on.

use core::ffi::{c_char, c_void};
use core::ptr::null_mut;
use std::ffi::CString;

use super::evtchn::*;
use super::gnt::*;
use super::xs::*;
use super::*;
use crate::sim::{DomainConfig, SimHost};

fn host_with_two() -> (SimHost, SimDomain, SimDomain) {
    let host = SimHost::new().unwrap();
    let a = host.create_domain(&DomainConfig::new("shim-a")).unwrap();
    let b = host.create_domain(&DomainConfig::new("shim-b")).unwrap();
    (host, a, b)
}

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn open_without_a_domain_fails_with_enoent() {
    std::thread::spawn(|| {
        assert!(xs_open(0).is_null());
        assert_eq!(errno(), libc::ENOENT);
        assert!(xenevtchn_open(null_mut(), 0).is_null());
        assert!(xengnttab_open(null_mut(), 0).is_null());
        assert!(xengntshr_open(null_mut(), 0).is_null());
    })
    .join()
    .unwrap();
}

#[test]
fn event_delivery_masks_until_unmask_and_drives_the_fd() {
    let (_host, a, b) = host_with_two();
    let ga = enter_domain(&a).unwrap();
    let ha = xenevtchn_open(null_mut(), 0);
    assert!(!ha.is_null());
    // SAFETY (whole test): handles are live until closed below.
    let pa = unsafe { xenevtchn_bind_unbound_port(ha, b.domid() as u32) };
    assert!(pa > 0);
    drop(ga);
    let _gb = enter_domain(&b).unwrap();
    let hb = xenevtchn_open(null_mut(), 0);
    let pb = unsafe { xenevtchn_bind_interdomain(hb, a.domid() as u32, pa as u32) };
    assert!(pb > 0);
    let fdb = unsafe { xenevtchn_fd(hb) };
    // Xen marks a freshly bound port pending once.
    assert!(readable(fdb, 2000));
    assert_eq!(unsafe { xenevtchn_pending(hb) }, pb);
    assert!(!readable(fdb, 0));
    // While not unmasked, a new event is held back...
    assert_eq!(unsafe { xenevtchn_notify(ha, pa as u32) }, 0);
    assert!(!readable(fdb, 100));
    // ... and delivered once it is.
    assert_eq!(unsafe { xenevtchn_unmask(hb, pb as u32) }, 0);
    assert!(readable(fdb, 2000));
    assert_eq!(unsafe { xenevtchn_pending(hb) }, pb);
    unsafe { xenevtchn_unmask(hb, pb as u32) };
    // Notify in the other direction.
    let fda = unsafe { xenevtchn_fd(ha) };
    assert!(!readable(fda, 0));
    assert_eq!(unsafe { xenevtchn_notify(hb, pb as u32) }, 0);
    assert!(readable(fda, 2000));
    assert_eq!(unsafe { xenevtchn_pending(ha) }, pa);
    // Ports this handle did not bind are not its to use.
    assert_eq!(unsafe { xenevtchn_notify(ha, pa as u32 + 100) }, -1);
    assert_eq!(errno(), libc::ENOTCONN);
    assert_eq!(stats(&b).unwrap().bound_ports, 1);
    assert_eq!(unsafe { xenevtchn_unbind(hb, pb as u32) }, 0);
    assert_eq!(unsafe { xenevtchn_unbind(hb, pb as u32) }, -1);
    assert_eq!(unsafe { xenevtchn_close(hb) }, 0);
    assert_eq!(unsafe { xenevtchn_close(ha) }, 0);
    let s = stats(&b).unwrap();
    assert_eq!((s.evtchn_handles, s.bound_ports), (0, 0));
    assert_eq!(stats(&a).unwrap().evtchn_handles, 0);
    forget_domain(&a);
    forget_domain(&b);
}

/// Volatile byte access to memory C would use.
fn peek(p: *mut c_void, off: usize) -> u8 {
    // SAFETY: the tests only pass live shim regions and in-page offsets.
    unsafe { core::ptr::read_volatile((p as *const u8).add(off)) }
}
fn poke(p: *mut c_void, off: usize, v: u8) {
    // SAFETY: as for `peek`.
    unsafe { core::ptr::write_volatile((p as *mut u8).add(off), v) }
}

#[test]
fn shared_pages_alias_and_unmap_notifications_fire() {
    let (_host, a, b) = host_with_two();
    let ea = enter_domain(&a).unwrap();
    let (eva, shr) = (xenevtchn_open(null_mut(), 0), xengntshr_open(null_mut(), 0));
    // SAFETY (whole test): handles live until closed; pointers are live
    // regions of the shim.
    let pa = unsafe { xenevtchn_bind_unbound_port(eva, b.domid() as u32) } as u32;
    let mut r = 0u32;
    let page = unsafe { xengntshr_share_page_notify(shr, b.domid() as u32, &mut r, 1, 100, pa) };
    assert!(!page.is_null());
    let mut refs = [0u32; 2];
    let two = unsafe { xengntshr_share_pages(shr, b.domid() as u32, 2, refs.as_mut_ptr(), 1) };
    assert!(!two.is_null());
    assert_eq!(stats(&a).unwrap().shared_pages, 3);
    drop(ea);

    let gb = enter_domain(&b).unwrap();
    let (evb, tab) = (xenevtchn_open(null_mut(), 0), xengnttab_open(null_mut(), 0));
    let pb = unsafe { xenevtchn_bind_interdomain(evb, a.domid() as u32, pa) } as u32;
    let fdb = unsafe { xenevtchn_fd(evb) };
    assert!(readable(fdb, 2000));
    unsafe { xenevtchn_pending(evb) };
    unsafe { xenevtchn_unmask(evb, pb) };
    let m = unsafe {
        xengnttab_map_grant_ref_notify(
            tab,
            a.domid() as u32,
            r,
            libc::PROT_READ | libc::PROT_WRITE,
            200,
            pb,
        )
    };
    assert!(!m.is_null());
    let m2 = unsafe {
        xengnttab_map_domain_grant_refs(tab, 2, a.domid() as u32, refs.as_ptr(), libc::PROT_READ)
    };
    assert!(!m2.is_null());
    // Real aliasing both ways.
    poke(page, 7, 0x5a);
    assert_eq!(peek(m, 7), 0x5a);
    poke(m, 200, 1);
    poke(page, 100, 1);
    assert_eq!(peek(page, 200), 1);
    poke(two, 4096 + 9, 9);
    assert_eq!(peek(m2, 4096 + 9), 9);
    assert_eq!(stats(&b).unwrap().mapped_pages, 3);
    // A read-only mapping cannot carry a clear-byte notification.
    let bad = unsafe {
        xengnttab_map_grant_ref_notify(tab, a.domid() as u32, r, libc::PROT_READ, 200, pb)
    };
    assert!(bad.is_null());
    assert_eq!(errno(), libc::EINVAL);

    // B unmaps the notify page: the byte is cleared in A's page and A's
    // port fires.
    let fda = unsafe { xenevtchn_fd(eva) };
    assert!(!readable(fda, 0));
    assert_eq!(unsafe { xengnttab_unmap(tab, m, 1) }, 0);
    assert_eq!(peek(page, 200), 0);
    assert!(readable(fda, 2000));
    assert_eq!(unsafe { xenevtchn_pending(eva) }, pa as i32);
    unsafe { xenevtchn_unmask(eva, pa) };
    // Unmapping again, or with the wrong size, fails.
    assert_eq!(unsafe { xengnttab_unmap(tab, m, 1) }, -1);
    assert_eq!(unsafe { xengnttab_unmap(tab, m2, 1) }, -1);

    // A unshares the 2-page region while B still maps it: the revocation
    // is deferred, then completes once B lets go.
    assert_eq!(unsafe { xengntshr_unshare(shr, two, 2) }, 0);
    let s = stats(&a).unwrap();
    assert_eq!((s.shared_pages, s.deferred_pages), (1, 2));
    // libxenvchan_close unmaps ring buffers with munmap.
    assert_eq!(unsafe { libxen_shim_munmap(m2, 2 * 4096) }, 0);
    assert_eq!(unsafe { libxen_shim_munmap(m2, 2 * 4096) }, -1);
    assert_eq!(reclaim(&a), 0);

    // A unshares the notify page: its byte is cleared and B's port fires.
    assert!(!readable(fdb, 0));
    assert_eq!(unsafe { xengntshr_unshare(shr, page, 1) }, 0);
    assert!(readable(fdb, 2000));
    let s = stats(&a).unwrap();
    assert_eq!((s.shared_pages, s.deferred_pages), (0, 0));

    unsafe {
        xengnttab_close(tab);
        xenevtchn_close(evb);
    }
    drop(gb);
    unsafe {
        xengntshr_close(shr);
        xenevtchn_close(eva);
    }
    assert_eq!(stats(&a).unwrap(), ShimStats::default());
    assert_eq!(stats(&b).unwrap(), ShimStats::default());
    forget_domain(&a);
    forget_domain(&b);
}

#[test]
fn closing_handles_releases_and_notifies() {
    let (_host, a, b) = host_with_two();
    let ga = enter_domain(&a).unwrap();
    let shr = xengntshr_open(null_mut(), 0);
    let mut r = 0u32;
    // SAFETY (whole test): live handles and regions.
    let page =
        unsafe { xengntshr_share_page_notify(shr, b.domid() as u32, &mut r, 1, 5, u32::MAX) };
    poke(page, 5, 1);
    poke(page, 6, 1);
    drop(ga);
    let gb = enter_domain(&b).unwrap();
    let tab = xengnttab_open(null_mut(), 0);
    let m = unsafe {
        xengnttab_map_grant_ref_notify(tab, a.domid() as u32, r, libc::PROT_WRITE, 6, u32::MAX)
    };
    assert!(!m.is_null());
    // Closing the mapping handle unmaps with notification.
    unsafe { xengnttab_close(tab) };
    assert_eq!(peek(page, 6), 0);
    assert_eq!(peek(page, 5), 1);
    drop(gb);
    unsafe { xengntshr_close(shr) };
    let s = stats(&a).unwrap();
    assert_eq!(
        (s.shared_pages, s.deferred_pages, s.gntshr_handles),
        (0, 0, 0)
    );
    // Addresses the shim never handed out are refused, never unmapped.
    let mut local = [0u8; 4096];
    assert_eq!(
        unsafe { libxen_shim_munmap(local.as_mut_ptr() as *mut c_void, 4096) },
        -1
    );
    assert_eq!(errno(), libc::EINVAL);
    forget_domain(&a);
    forget_domain(&b);
}

/// `xs_read` as a Rust string (the buffer freed as C would).
fn read(h: *mut XsHandle, t: u32, path: &str) -> Option<String> {
    let p = cstr(path);
    let mut len = 0u32;
    // SAFETY: live handle, NUL-terminated path, writable len.
    let v = unsafe { xs_read(h, t, p.as_ptr(), &mut len) };
    if v.is_null() {
        return None;
    }
    // SAFETY: `len` bytes plus a NUL at `v`, allocated with malloc.
    let s = unsafe { core::slice::from_raw_parts(v as *const u8, len as usize + 1) };
    assert_eq!(s[len as usize], 0);
    let out = String::from_utf8(s[..len as usize].to_vec()).unwrap();
    // SAFETY: allocated with malloc by the shim.
    unsafe { libc::free(v) };
    Some(out)
}

fn write(h: *mut XsHandle, t: u32, path: &str, v: &str) -> bool {
    let p = cstr(path);
    // SAFETY: live handle, NUL-terminated path, `v.len()` bytes.
    unsafe {
        xs_write(
            h,
            t,
            p.as_ptr(),
            v.as_ptr() as *const c_void,
            v.len() as u32,
        )
    }
}

#[test]
fn xenstore_as_the_domain_with_transactions_and_permissions() {
    let (_host, a, b) = host_with_two();
    let (da, db) = (a.domid(), b.domid());
    let ga = enter_domain(&a).unwrap();
    let xa = xs_open(0);
    assert_eq!(read(xa, 0, "domid"), Some(da.to_string()));
    // A transaction publishing two keys readable by B, as libxenvchan does.
    let t = unsafe { xs_transaction_start(xa) };
    assert_ne!(t, 0);
    let perms = [
        XsPermissions {
            id: da as u32,
            perms: 0,
        },
        XsPermissions {
            id: db as u32,
            perms: 1,
        },
    ];
    for key in ["data/vchan/x/ring-ref", "data/vchan/x/event-channel"] {
        assert!(write(xa, t, key, "42"));
        let p = cstr(key);
        // SAFETY: live handle, valid path and 2 entries.
        assert!(unsafe { xs_set_permissions(xa, t, p.as_ptr(), perms.as_ptr(), 2) });
    }
    assert_eq!(read(xa, 0, "data/vchan/x/ring-ref"), None);
    // SAFETY: live handle.
    assert!(unsafe { xs_transaction_end(xa, t, false) });
    assert_eq!(read(xa, 0, "data/vchan/x/ring-ref").as_deref(), Some("42"));
    // A node B may not read.
    assert!(write(xa, 0, "data/private", "s"));
    drop(ga);

    let gb = enter_domain(&b).unwrap();
    let xb = xs_open(0);
    let base = format!("/local/domain/{da}/data/vchan/x");
    assert_eq!(
        read(xb, 0, &format!("{base}/event-channel")).as_deref(),
        Some("42")
    );
    assert_eq!(
        read(xb, 0, &format!("/local/domain/{da}/data/private")),
        None
    );
    assert_eq!(errno(), libc::EACCES);
    assert!(!write(xb, 0, &format!("{base}/ring-ref"), "1"));
    drop(gb);

    // A conflicting transaction fails with EAGAIN.
    let _ga = enter_domain(&a).unwrap();
    // SAFETY: live handle.
    let t = unsafe { xs_transaction_start(xa) };
    assert_eq!(read(xa, t, "data/vchan/x/ring-ref").as_deref(), Some("42"));
    assert!(write(xa, 0, "data/vchan/x/ring-ref", "43"));
    assert!(write(xa, t, "data/vchan/x/ring-ref", "44"));
    // SAFETY: live handle.
    assert!(!unsafe { xs_transaction_end(xa, t, false) });
    assert_eq!(errno(), libc::EAGAIN);
    let p = cstr(&base);
    // SAFETY: live handle, valid path.
    assert!(unsafe { xs_rm(xa, 0, p.as_ptr()) });
    assert_eq!(read(xa, 0, "data/vchan/x/ring-ref"), None);
    assert_eq!(errno(), libc::ENOENT);
    // SAFETY: NULL path is refused.
    assert!(unsafe { xs_read(xa, 0, core::ptr::null::<c_char>(), null_mut()) }.is_null());
    // SAFETY: handles handed back once.
    unsafe {
        xs_close(xa);
        xs_close(xb);
        xs_close(null_mut());
    }
    assert_eq!(stats(&a).unwrap().xs_handles, 0);
    forget_domain(&a);
    forget_domain(&b);
}
