//! The FFI boundary: Debian's libxenvchan, declared from
//! `/usr/include/libxenvchan.h` and wrapped in [`CVchan`], a safe handle
//! for one thread.
//!
//! The C library reaches Xen only through the functions of
//! `xen::memory::libxen_shim`, which bind every handle to the domain the
//! calling thread entered (`libxen_shim::enter_domain`): a [`CVchan`] must
//! be created on a thread that entered its domain.
//!
//! libxenvchan leaves the `blocking` flag of a new `struct libxenvchan`
//! uninitialised (the Qubes wrapper sets it); [`CVchan`] clears it, so
//! `libxenvchan_read`/`libxenvchan_write` never block, and waits itself by
//! polling the event channel fd with a timeout, as Qubes daemons do.
#![allow(unsafe_code)]

use core::ffi::{c_char, c_int, c_void};
use core::ptr::NonNull;
use std::ffi::CString;
use std::io;
use std::time::Duration;

use xen::abi::DomId;

/// `struct libxenvchan`, opaque except for the flag word below.
#[repr(C)]
pub struct Libxenvchan {
    _opaque: [u8; 0],
}

/// Offset of the `int` holding the bitfields `is_server:1`,
/// `server_persist:1`, `blocking:1` in `struct libxenvchan` on x86_64
/// (after the handle union, `ring`, `event` pointers and `event_port`),
/// checked with `offsetof` against Debian's 4.17 header; [`CVchan`]
/// re-checks it at run time through `is_server`.
const FLAGS_OFFSET: usize = 28;
/// `is_server`: bit 0 of the flag word.
const IS_SERVER: u8 = 0x1;
/// `blocking`: bit 2 of the flag word.
const BLOCKING: u8 = 0x4;

unsafe extern "C" {
    fn libxenvchan_server_init(
        logger: *mut c_void,
        domain: c_int,
        xs_path: *const c_char,
        read_min: usize,
        write_min: usize,
    ) -> *mut Libxenvchan;
    fn libxenvchan_client_init(
        logger: *mut c_void,
        domain: c_int,
        xs_path: *const c_char,
    ) -> *mut Libxenvchan;
    fn libxenvchan_close(ctrl: *mut Libxenvchan);
    fn libxenvchan_read(ctrl: *mut Libxenvchan, data: *mut c_void, size: usize) -> c_int;
    fn libxenvchan_write(ctrl: *mut Libxenvchan, data: *const c_void, size: usize) -> c_int;
    fn libxenvchan_wait(ctrl: *mut Libxenvchan) -> c_int;
    fn libxenvchan_fd_for_select(ctrl: *mut Libxenvchan) -> c_int;
    fn libxenvchan_is_open(ctrl: *mut Libxenvchan) -> c_int;
    fn libxenvchan_data_ready(ctrl: *mut Libxenvchan) -> c_int;
    fn libxenvchan_buffer_space(ctrl: *mut Libxenvchan) -> c_int;
}

/// One end of a vchan, run by the real libxenvchan. Not `Send`: it lives
/// on the thread that entered its domain.
#[derive(Debug)]
pub struct CVchan {
    ctrl: NonNull<Libxenvchan>,
}

/// The peer closed and everything it wrote has been read (libxenvchan
/// returned -1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CClosed;

impl CVchan {
    /// `libxenvchan_server_init(NULL, client, path, read_min, write_min)`:
    /// publish a vchan for `client` under the xenstore directory `path`.
    pub fn server(
        client: DomId,
        path: &str,
        read_min: usize,
        write_min: usize,
    ) -> io::Result<CVchan> {
        let p = CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a NULL logger is allowed; `p` is NUL-terminated and
        // outlives the call (libxenvchan copies it).
        let raw = unsafe {
            libxenvchan_server_init(
                core::ptr::null_mut(),
                client.into(),
                p.as_ptr(),
                read_min,
                write_min,
            )
        };
        Self::wrap(raw, true)
    }

    /// `libxenvchan_client_init(NULL, server, path)`: connect to the vchan
    /// `server` published under `path` (which must exist already).
    pub fn client(server: DomId, path: &str) -> io::Result<CVchan> {
        let p = CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: as for `server`.
        let raw =
            unsafe { libxenvchan_client_init(core::ptr::null_mut(), server.into(), p.as_ptr()) };
        Self::wrap(raw, false)
    }

    fn wrap(raw: *mut Libxenvchan, server: bool) -> io::Result<CVchan> {
        let ctrl = NonNull::new(raw).ok_or_else(io::Error::last_os_error)?;
        let v = CVchan { ctrl };
        let flags = v.ctrl.as_ptr().cast::<u8>().wrapping_add(FLAGS_OFFSET);
        // SAFETY: `ctrl` is a live `struct libxenvchan` (88 bytes) that
        // only this thread uses; the flag word lies inside it.
        let f = unsafe { flags.read() };
        assert_eq!(
            f & IS_SERVER != 0,
            server,
            "struct libxenvchan layout differs from the 4.17 header this test was written for"
        );
        // SAFETY: as above.
        unsafe { flags.write(f & !BLOCKING) };
        Ok(v)
    }

    /// `libxenvchan_read`: up to `buf.len()` bytes, `Ok(0)` if none are
    /// ready (an event has then been requested).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, CClosed> {
        // SAFETY: live handle; `buf` is writable for its length.
        let n = unsafe { libxenvchan_read(self.ctrl.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| CClosed)
    }

    /// `libxenvchan_write`: as much of `buf` as fits, `Ok(0)` if the ring is
    /// full (an event has then been requested).
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, CClosed> {
        // SAFETY: live handle; `buf` is readable for its length.
        let n = unsafe { libxenvchan_write(self.ctrl.as_ptr(), buf.as_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| CClosed)
    }

    /// Wait up to `timeout` for the peer's event: poll the fd, then
    /// `libxenvchan_wait` (take the event and unmask). `Ok(false)` on
    /// timeout.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            0 => Ok(false),
            1 => {
                // SAFETY: live handle; the fd is readable, so this does not
                // block.
                if unsafe { libxenvchan_wait(self.ctrl.as_ptr()) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(true)
            }
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// `libxenvchan_fd_for_select`.
    pub fn fd(&self) -> c_int {
        // SAFETY: live handle.
        unsafe { libxenvchan_fd_for_select(self.ctrl.as_ptr()) }
    }

    /// `libxenvchan_is_open`: 0 peer closed, 1 connected, 2 (server) client
    /// not yet connected.
    pub fn is_open(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { libxenvchan_is_open(self.ctrl.as_ptr()) }
    }

    /// `libxenvchan_data_ready`.
    pub fn data_ready(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { libxenvchan_data_ready(self.ctrl.as_ptr()) }
    }

    /// `libxenvchan_buffer_space`.
    pub fn buffer_space(&self) -> i32 {
        // SAFETY: live handle.
        unsafe { libxenvchan_buffer_space(self.ctrl.as_ptr()) }
    }

    /// `libxenvchan_close`.
    pub fn close(self) {
        drop(self)
    }
}

impl Drop for CVchan {
    fn drop(&mut self) {
        // SAFETY: live handle, closed exactly once (here).
        unsafe { libxenvchan_close(self.ctrl.as_ptr()) }
    }
}
