//! `libxenevtchn` over the simulator, behaving as Linux's
//! `/dev/xen/evtchn` driver does for one open file.
//!
//! Each handle owns a set of bound ports, each *enabled* or not, a queue of
//! fired ports, and an eventfd that is readable exactly while the queue is
//! non-empty. A helper thread plays the kernel's interrupt handler: it
//! sleeps in `SCHEDOP_poll` on the enabled ports, and for each one found
//! pending it clears the pending bit, disables the port and queues it.
//! `xenevtchn_pending` takes a port off the queue (blocking while it is
//! empty, as a blocking `read` does); `xenevtchn_unmask` enables the port
//! again, so an event that arrived meanwhile (pending bit set again) is
//! delivered at once. The handle wakes its helper through a loopback event
//! channel of its own whenever the set of enabled ports grows.

use core::ffi::{c_int, c_uint, c_void};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::vec::Vec;

use super::{current, lock, set_errno, DomainCtx};
use crate::abi::sched::SCHED_POLL_MAX_PORTS;
use crate::abi::{DomId, Errno, EvtchnPort};
use crate::evtchn::EventChannels;
use crate::sim::SimDomain;
use crate::Hypervisor;

/// How long the helper sleeps at most between two looks at its ports (a
/// safety net only: every change that matters kicks it).
const HELPER_TICK_NS: u64 = 500_000_000;

/// An open event channel handle (`xenevtchn_handle *` in C).
pub struct XenevtchnHandle {
    ctx: Arc<DomainCtx>,
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

/// State shared between a handle and its helper thread.
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    efd: OwnedFd,
    kick_tx: EvtchnPort,
    kick_rx: EvtchnPort,
}

#[derive(Default)]
struct State {
    /// Bound ports and whether delivery is enabled (unmasked).
    ports: BTreeMap<EvtchnPort, bool>,
    /// Fired ports not yet taken by `xenevtchn_pending`.
    queue: VecDeque<EvtchnPort>,
    /// The handle is closing: the helper must exit.
    closing: bool,
    /// The helper exited (domain gone): nothing will be queued any more.
    dead: bool,
}

impl Shared {
    fn kick(&self, ctx: &DomainCtx) {
        ctx.counts.kicks.fetch_add(1, Ordering::Relaxed);
        let _ = ctx.ev.send(self.kick_tx);
    }

    /// Queue `port` and make the fd readable (state lock held).
    fn push(&self, st: &mut State, port: EvtchnPort) {
        if st.queue.is_empty() {
            // SAFETY: plain syscall on our own eventfd with a valid value.
            unsafe { libc::eventfd_write(self.efd.as_raw_fd(), 1) };
        }
        st.queue.push_back(port);
        self.ready.notify_all();
    }

    /// Take the oldest fired port; the fd stops being readable with the
    /// last one (state lock held).
    fn pop(&self, st: &mut State) -> Option<EvtchnPort> {
        let p = st.queue.pop_front()?;
        if st.queue.is_empty() {
            let mut v: libc::eventfd_t = 0;
            // SAFETY: plain syscall on our own non-blocking eventfd, writing
            // into a local.
            unsafe { libc::eventfd_read(self.efd.as_raw_fd(), &mut v) };
        }
        Some(p)
    }
}

/// The helper thread: the handle's interrupt handler (see the module doc).
fn helper(ev: EventChannels<SimDomain>, sh: Arc<Shared>) {
    loop {
        let ports: Vec<EvtchnPort> = {
            let st = lock(&sh.state);
            if st.closing {
                return;
            }
            core::iter::once(sh.kick_rx)
                .chain(st.ports.iter().filter(|(_, &on)| on).map(|(&p, _)| p))
                .take(SCHED_POLL_MAX_PORTS)
                .collect()
        };
        let deadline = ev.platform().now_ns() + HELPER_TICK_NS;
        match ev.wait(&ports, Some(deadline)) {
            Ok(_) => {}
            Err(Errno::ESRCH) => {
                // The domain is gone.
                let mut st = lock(&sh.state);
                st.dead = true;
                sh.ready.notify_all();
                return;
            }
            // A port was unbound under our feet: look again.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
        ev.clear_pending(sh.kick_rx);
        let mut st = lock(&sh.state);
        let fired: Vec<EvtchnPort> = st
            .ports
            .iter_mut()
            .filter(|(p, on)| **on && ev.clear_pending(**p))
            .map(|(&p, on)| {
                *on = false;
                p
            })
            .collect();
        for p in fired {
            sh.push(&mut st, p);
        }
    }
}

/// Borrow a handle; `None` (errno `EBADF`) for NULL.
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
unsafe fn handle<'a>(h: *mut XenevtchnHandle) -> Option<&'a XenevtchnHandle> {
    // SAFETY: the caller passes NULL or a pointer from `Box::into_raw`
    // that `xenevtchn_close` has not freed yet.
    let r = unsafe { h.as_ref() };
    if r.is_none() {
        set_errno(libc::EBADF);
    }
    r
}

fn fail(e: Errno) -> c_int {
    set_errno(e.0);
    -1
}

fn domid(d: u32) -> Option<DomId> {
    DomId::try_from(d).ok()
}

/// Open an event channel handle for the calling thread's domain (see
/// [`super::enter_domain`]); NULL with `errno` `ENOENT` if the thread has
/// none.
#[unsafe(no_mangle)]
pub extern "C" fn xenevtchn_open(_logger: *mut c_void, _flags: c_uint) -> *mut XenevtchnHandle {
    let Some(ctx) = current() else {
        set_errno(libc::ENOENT);
        return core::ptr::null_mut();
    };
    match open(ctx) {
        Ok(h) => Box::into_raw(Box::new(h)),
        Err(e) => {
            set_errno(e.0);
            core::ptr::null_mut()
        }
    }
}

fn open(ctx: Arc<DomainCtx>) -> Result<XenevtchnHandle, Errno> {
    // SAFETY: plain syscall creating a fresh descriptor.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EMFILE),
        ));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(fd) };
    let me = ctx.dom.domid();
    let kick_rx = ctx.ev.alloc_unbound(me)?;
    let kick_tx = match ctx.ev.bind_interdomain(me, kick_rx) {
        Ok(p) => p,
        Err(e) => {
            let _ = ctx.ev.close(kick_rx);
            return Err(e);
        }
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        ready: Condvar::new(),
        efd,
        kick_tx,
        kick_rx,
    });
    let (ev, sh) = (ctx.ev.clone(), shared.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("d{me}-evtchn"))
        .spawn(move || helper(ev, sh));
    let helper = match spawned {
        Ok(t) => t,
        Err(_) => {
            let _ = ctx.ev.close(kick_tx);
            let _ = ctx.ev.close(kick_rx);
            return Err(Errno::ENOMEM);
        }
    };
    ctx.counts.evtchn.fetch_add(1, Ordering::SeqCst);
    Ok(XenevtchnHandle {
        ctx,
        shared,
        helper: Some(helper),
    })
}

/// Close a handle: unbind its ports, stop its helper. NULL is accepted.
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`], not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_close(h: *mut XenevtchnHandle) -> c_int {
    if h.is_null() {
        return 0;
    }
    // SAFETY: per the contract, `h` came from `Box::into_raw` and is
    // handed back exactly once.
    let mut h = unsafe { Box::from_raw(h) };
    let ports: Vec<EvtchnPort> = {
        let mut st = lock(&h.shared.state);
        st.closing = true;
        st.queue.clear();
        core::mem::take(&mut st.ports).into_keys().collect()
    };
    h.shared.kick(&h.ctx);
    if let Some(t) = h.helper.take() {
        let _ = t.join();
    }
    for p in &ports {
        let _ = h.ctx.ev.close(*p);
    }
    let _ = h.ctx.ev.close(h.shared.kick_tx);
    let _ = h.ctx.ev.close(h.shared.kick_rx);
    h.ctx.counts.ports.fetch_sub(ports.len(), Ordering::SeqCst);
    h.ctx.counts.evtchn.fetch_sub(1, Ordering::SeqCst);
    0
}

/// The handle's file descriptor: readable while a fired port is queued.
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_fd(h: *mut XenevtchnHandle) -> c_int {
    // SAFETY: forwarded contract.
    match unsafe { handle(h) } {
        Some(h) => h.shared.efd.as_raw_fd(),
        None => -1,
    }
}

/// Add a freshly bound port (enabled, as Linux binds it) and wake the
/// helper to watch it.
fn add_port(h: &XenevtchnHandle, port: EvtchnPort) -> c_int {
    lock(&h.shared.state).ports.insert(port, true);
    h.ctx.counts.ports.fetch_add(1, Ordering::SeqCst);
    h.shared.kick(&h.ctx);
    port as c_int
}

/// `EVTCHNOP_send` on a port bound by this handle (`ENOTCONN` otherwise).
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_notify(h: *mut XenevtchnHandle, port: u32) -> c_int {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { handle(h) }) else {
        return -1;
    };
    if !lock(&h.shared.state).ports.contains_key(&port) {
        return fail(Errno(libc::ENOTCONN));
    }
    match h.ctx.ev.send(port) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// Allocate a port that `domid` may bind to; returns it or -1.
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_bind_unbound_port(h: *mut XenevtchnHandle, domid: u32) -> c_int {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { handle(h) }) else {
        return -1;
    };
    let Some(d) = self::domid(domid) else {
        return fail(Errno::EINVAL);
    };
    match h.ctx.ev.alloc_unbound(d) {
        Ok(p) => add_port(h, p),
        Err(e) => fail(e),
    }
}

/// Bind to `domid`'s unbound `remote_port`; returns the local port or -1.
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_bind_interdomain(
    h: *mut XenevtchnHandle,
    domid: u32,
    remote_port: u32,
) -> c_int {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { handle(h) }) else {
        return -1;
    };
    let Some(d) = self::domid(domid) else {
        return fail(Errno::EINVAL);
    };
    match h.ctx.ev.bind_interdomain(d, remote_port) {
        Ok(p) => add_port(h, p),
        Err(e) => fail(e),
    }
}

/// Close a port bound by this handle (`ENOTCONN` otherwise).
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_unbind(h: *mut XenevtchnHandle, port: u32) -> c_int {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { handle(h) }) else {
        return -1;
    };
    {
        let mut st = lock(&h.shared.state);
        if st.ports.remove(&port).is_none() {
            return fail(Errno(libc::ENOTCONN));
        }
        st.queue.retain(|&p| p != port);
        if st.queue.is_empty() {
            let mut v: libc::eventfd_t = 0;
            // SAFETY: plain syscall on our own non-blocking eventfd.
            unsafe { libc::eventfd_read(h.shared.efd.as_raw_fd(), &mut v) };
        }
    }
    h.ctx.counts.ports.fetch_sub(1, Ordering::SeqCst);
    match h.ctx.ev.close(port) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// The next fired port, blocking until there is one; -1 (`EIO`) if the
/// domain is gone.
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_pending(h: *mut XenevtchnHandle) -> c_int {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { handle(h) }) else {
        return -1;
    };
    let mut st = lock(&h.shared.state);
    loop {
        if let Some(p) = h.shared.pop(&mut st) {
            return p as c_int;
        }
        if st.dead || st.closing {
            return fail(Errno::EIO);
        }
        st = h.shared.ready.wait(st).unwrap_or_else(|p| p.into_inner());
    }
}

/// Re-enable delivery on a port of this handle (unknown ports are
/// ignored, as the Linux driver ignores them).
///
/// # Safety
/// `h` is NULL or a live handle from [`xenevtchn_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xenevtchn_unmask(h: *mut XenevtchnHandle, port: u32) -> c_int {
    // SAFETY: forwarded contract.
    let Some(h) = (unsafe { handle(h) }) else {
        return -1;
    };
    let changed = match lock(&h.shared.state).ports.get_mut(&port) {
        Some(on) if !*on => {
            *on = true;
            true
        }
        _ => false,
    };
    if changed {
        h.shared.kick(&h.ctx);
    }
    0
}
