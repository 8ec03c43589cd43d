//! `libxenstore`'s client calls that libxenvchan makes, spoken over the
//! calling domain's xenstore ring, so xenstored resolves relative paths
//! and checks permissions for that domain exactly as for a real guest.
//!
//! The facade [`crate::store::Xenstore`] only offers closure-scoped
//! transactions, while C starts and ends them in separate calls; so this
//! module drives the same sans-IO [`Client`] and [`RingTransport`] itself,
//! one request at a time. One connection per domain is shared by all its
//! `xs` handles (there is one ring per domain); watch events are not
//! needed by these calls and are discarded.

use core::ffi::{c_char, c_uint, c_ulong, c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::vec::Vec;

use super::{current, lock, set_errno, DomainCtx};
use crate::abi::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
use crate::abi::xs_wire::XENSTORE_RING_SIZE;
use crate::abi::{DomId, Errno, EvtchnPort};
use crate::evtchn::{EventChannels, Wake};
use crate::hypervisor::HypervisorExt;
use crate::memory::{Gfn, GuestMemory};
use crate::sim::SimDomain;
use crate::store::wire::XsError;
use crate::store::{
    Access, Client, Incoming, Perm, Reply, Request, RingTransport, StoreError, TxId,
    DEFAULT_TIMEOUT_NS,
};
use crate::Hypervisor;

/// One domain's connection to xenstored over its ring.
pub(super) struct StoreConn {
    port: EvtchnPort,
    ring: RingTransport,
    client: Client,
}

impl StoreConn {
    /// Attach to the ring and port the toolstack gave the domain.
    fn attach(ev: &EventChannels<SimDomain>) -> Result<StoreConn, StoreError> {
        let p = ev.platform();
        let gfn = Gfn(p.get_param(HVM_PARAM_STORE_PFN)?);
        let port = EvtchnPort::try_from(p.get_param(HVM_PARAM_STORE_EVTCHN)?)
            .map_err(|_| Errno::EINVAL)?;
        let page = p.page(gfn).ok_or(Errno::EFAULT)?;
        let ring = RingTransport::new(page).ok_or(Errno::EFAULT)?;
        ev.unmask(port)?;
        Ok(StoreConn {
            port,
            ring,
            client: Client::new(),
        })
    }

    /// Send `req` in transaction `tx` and wait for its reply.
    fn call(
        &mut self,
        ev: &EventChannels<SimDomain>,
        tx: TxId,
        req: &Request<'_>,
    ) -> Result<Reply, StoreError> {
        let deadline = ev.platform().now_ns().saturating_add(DEFAULT_TIMEOUT_NS);
        let id = self.client.request(tx, req)?;
        loop {
            // Clear before looking (see `crate::evtchn`).
            ev.clear_pending(self.port);
            let pumped = self.pump(ev);
            let mut reply = None;
            while let Some(item) = self.client.poll() {
                if let Incoming::Reply { req_id, result } = item {
                    if req_id == id {
                        reply = Some(result);
                    }
                }
            }
            if let Some(r) = reply {
                return r;
            }
            let timed_out = match pumped {
                Ok(()) => ev.wait(&[self.port], Some(deadline))? == Wake::Timeout,
                Err(e) => {
                    self.client.abandon(id);
                    return Err(e);
                }
            };
            if timed_out {
                self.client.abandon(id);
                return Err(StoreError::Timeout);
            }
        }
    }

    /// Move bytes both ways until neither ring moves; notify xenstored
    /// once if an index changed.
    fn pump(&mut self, ev: &EventChannels<SimDomain>) -> Result<(), StoreError> {
        self.client.check()?;
        let mut notify = false;
        let mut buf = [0u8; XENSTORE_RING_SIZE];
        loop {
            let round = self.ring.exchange(&mut self.client, &mut buf)?;
            notify |= round.notify;
            self.client.receive(&buf[..round.read])?;
            if round.idle() {
                break;
            }
        }
        if notify {
            ev.send(self.port)?;
        }
        Ok(())
    }
}

/// An open xenstore handle (`struct xs_handle *` in C).
pub struct XsHandle {
    ctx: Arc<DomainCtx>,
}

/// `struct xs_permissions` of `xenstore_lib.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct XsPermissions {
    /// The domain.
    pub id: c_uint,
    /// `XS_PERM_READ` (1) | `XS_PERM_WRITE` (2), or `XS_PERM_NONE` (0).
    pub perms: c_uint,
}

/// `XS_PERM_READ`.
const XS_PERM_READ: c_uint = 1;
/// `XS_PERM_WRITE`.
const XS_PERM_WRITE: c_uint = 2;

/// Run one request on `h`'s domain connection (attached on first use).
fn call(h: &XsHandle, tx: u32, req: &Request<'_>) -> Result<Reply, StoreError> {
    let mut conn = lock(&h.ctx.store);
    if conn.is_none() {
        *conn = Some(StoreConn::attach(&h.ctx.ev)?);
    }
    match conn.as_mut() {
        Some(c) => c.call(&h.ctx.ev, TxId(tx), req),
        None => Err(StoreError::Hypercall(Errno::EFAULT)),
    }
}

/// The `errno` libxenstore reports for an error.
fn errno_of(e: &StoreError) -> i32 {
    match e {
        StoreError::Xs(x) => match x {
            XsError::Einval => libc::EINVAL,
            XsError::Eacces => libc::EACCES,
            XsError::Eexist => libc::EEXIST,
            XsError::Eisdir => libc::EISDIR,
            XsError::Enoent => libc::ENOENT,
            XsError::Enomem => libc::ENOMEM,
            XsError::Enospc => libc::ENOSPC,
            XsError::Eio => libc::EIO,
            XsError::Enotempty => libc::ENOTEMPTY,
            XsError::Enosys => libc::ENOSYS,
            XsError::Erofs => libc::EROFS,
            XsError::Ebusy => libc::EBUSY,
            XsError::Eagain => libc::EAGAIN,
            XsError::Eisconn => libc::EISCONN,
            XsError::E2big => libc::E2BIG,
            XsError::Eperm => libc::EPERM,
            XsError::Equota => libc::EDQUOT,
        },
        StoreError::Hypercall(e) => e.0,
        StoreError::Timeout => libc::ETIMEDOUT,
        _ => libc::EIO,
    }
}

/// Run a request expecting `OK`; the C boolean result.
fn ok_call(h: &XsHandle, tx: u32, req: &Request<'_>) -> bool {
    match call(h, tx, req) {
        Ok(Reply::Ok) => true,
        Ok(_) => {
            set_errno(libc::EIO);
            false
        }
        Err(e) => {
            set_errno(errno_of(&e));
            false
        }
    }
}

/// Borrow a handle and a path argument; `None` (errno set) if either is
/// NULL, or the path is not UTF-8.
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`]; `path` is NULL or a
/// NUL-terminated string.
unsafe fn args<'a>(h: *mut XsHandle, path: *const c_char) -> Option<(&'a XsHandle, &'a str)> {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        set_errno(libc::EBADF);
        return None;
    };
    if path.is_null() {
        set_errno(libc::EINVAL);
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated, per the contract.
    match unsafe { CStr::from_ptr(path) }.to_str() {
        Ok(p) => Some((h, p)),
        Err(_) => {
            set_errno(libc::EINVAL);
            None
        }
    }
}

/// Open a handle for the calling thread's domain; NULL (`ENOENT`) if it
/// has none.
#[unsafe(no_mangle)]
pub extern "C" fn xs_open(_flags: c_ulong) -> *mut XsHandle {
    let Some(ctx) = current() else {
        set_errno(libc::ENOENT);
        return core::ptr::null_mut();
    };
    ctx.counts.xs.fetch_add(1, Ordering::SeqCst);
    Box::into_raw(Box::new(XsHandle { ctx }))
}

/// Close a handle (NULL is accepted).
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`], not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_close(h: *mut XsHandle) {
    if !h.is_null() {
        // SAFETY: per the contract, `h` came from `Box::into_raw` and is
        // handed back exactly once.
        let h = unsafe { Box::from_raw(h) };
        h.ctx.counts.xs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A node's value in a `malloc`ed, NUL-terminated buffer (the caller
/// `free`s it), its length in `*len` if `len` is not NULL; NULL and
/// `errno` on failure.
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`]; `path` is NULL or a
/// NUL-terminated string; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_read(
    h: *mut XsHandle,
    t: u32,
    path: *const c_char,
    len: *mut c_uint,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    let Some((h, path)) = (unsafe { args(h, path) }) else {
        return core::ptr::null_mut();
    };
    let v = match call(h, t, &Request::Read { path }) {
        Ok(Reply::Value(v)) => v,
        Ok(_) => {
            set_errno(libc::EIO);
            return core::ptr::null_mut();
        }
        Err(e) => {
            set_errno(errno_of(&e));
            return core::ptr::null_mut();
        }
    };
    // SAFETY: plain allocation; C frees it with `free`.
    let buf = unsafe { libc::malloc(v.len() + 1) } as *mut u8;
    if buf.is_null() {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    }
    // SAFETY: `buf` has room for the value and the terminator.
    unsafe {
        core::ptr::copy_nonoverlapping(v.as_ptr(), buf, v.len());
        *buf.add(v.len()) = 0;
    }
    if !len.is_null() {
        // SAFETY: non-NULL and writable, per the contract. Values are at
        // most 4 KiB, so the length fits.
        unsafe { *len = v.len() as c_uint };
    }
    buf as *mut c_void
}

/// Set a node's value (`len` bytes at `data`).
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`]; `path` is NULL or a
/// NUL-terminated string; `data` points to `len` readable bytes (or
/// `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_write(
    h: *mut XsHandle,
    t: u32,
    path: *const c_char,
    data: *const c_void,
    len: c_uint,
) -> bool {
    // SAFETY: forwarded contract.
    let Some((h, path)) = (unsafe { args(h, path) }) else {
        return false;
    };
    let value: &[u8] = if len == 0 {
        &[]
    } else if data.is_null() {
        set_errno(libc::EINVAL);
        return false;
    } else {
        // SAFETY: `len` readable bytes at `data`, per the contract.
        unsafe { core::slice::from_raw_parts(data as *const u8, len as usize) }
    };
    ok_call(h, t, &Request::Write { path, value })
}

/// Create a node with an empty value.
///
/// # Safety
/// As for [`xs_rm`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_mkdir(h: *mut XsHandle, t: u32, path: *const c_char) -> bool {
    // SAFETY: forwarded contract.
    let Some((h, path)) = (unsafe { args(h, path) }) else {
        return false;
    };
    ok_call(h, t, &Request::Mkdir { path })
}

/// Remove a node and its subtree.
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`]; `path` is NULL or a
/// NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_rm(h: *mut XsHandle, t: u32, path: *const c_char) -> bool {
    // SAFETY: forwarded contract.
    let Some((h, path)) = (unsafe { args(h, path) }) else {
        return false;
    };
    ok_call(h, t, &Request::Rm { path })
}

/// Replace a node's permissions with `num` entries, owner first.
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`]; `path` is NULL or a
/// NUL-terminated string; `perms` points to `num` readable entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_set_permissions(
    h: *mut XsHandle,
    t: u32,
    path: *const c_char,
    perms: *const XsPermissions,
    num: c_uint,
) -> bool {
    // SAFETY: forwarded contract.
    let Some((h, path)) = (unsafe { args(h, path) }) else {
        return false;
    };
    if num == 0 || perms.is_null() {
        set_errno(libc::EINVAL);
        return false;
    }
    // SAFETY: `num` readable entries, per the contract; copied at once.
    let raw = unsafe { core::slice::from_raw_parts(perms, num as usize) };
    let mut list = Vec::with_capacity(raw.len());
    for p in raw {
        let Ok(domid) = DomId::try_from(p.id) else {
            set_errno(libc::EINVAL);
            return false;
        };
        let access = match p.perms & (XS_PERM_READ | XS_PERM_WRITE) {
            0 => Access::None,
            XS_PERM_READ => Access::Read,
            XS_PERM_WRITE => Access::Write,
            _ => Access::Both,
        };
        list.push(Perm::new(domid, access));
    }
    ok_call(h, t, &Request::SetPerms { path, perms: &list })
}

/// Start a transaction; its id, or 0 (`XBT_NULL`) with `errno`.
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_transaction_start(h: *mut XsHandle) -> u32 {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        set_errno(libc::EBADF);
        return 0;
    };
    match call(h, 0, &Request::TransactionStart) {
        Ok(Reply::Transaction(TxId(id))) => id,
        Ok(_) => {
            set_errno(libc::EIO);
            0
        }
        Err(e) => {
            set_errno(errno_of(&e));
            0
        }
    }
}

/// Commit (or, if `abort`, discard) transaction `t`; false with `errno`
/// `EAGAIN` if it conflicted and must be redone.
///
/// # Safety
/// `h` is NULL or a live handle from [`xs_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xs_transaction_end(h: *mut XsHandle, t: u32, abort: bool) -> bool {
    // SAFETY: `h` is NULL or live, per the contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        set_errno(libc::EBADF);
        return false;
    };
    ok_call(h, t, &Request::TransactionEnd { commit: !abort })
}
