//! The server end of a vchan in dom0, run by Debian's libxenvchan
//! (`libxenvchan.so.4.17`, from the toolstack in the dom0 image; linked
//! against `libxen-dev`'s copy on the build host).
//!
//! Every read is sized by `libxenvchan_data_ready` and every write by
//! `libxenvchan_buffer_space`, so the library's `blocking` flag (which
//! `libxenvchan_server_init` leaves uninitialised) never matters: neither
//! call has to wait. Those two calls also set the notify bits that make the
//! peer signal us when it writes or consumes, so polling
//! [`ServerVchan::fd`] sees every change.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::ptr::NonNull;

#[repr(C)]
struct Libxenvchan {
    _opaque: [u8; 0],
}

#[link(name = "xenvchan")]
unsafe extern "C" {
    fn libxenvchan_server_init(
        logger: *mut c_void,
        domain: c_int,
        xs_path: *const c_char,
        read_min: usize,
        write_min: usize,
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

/// A vchan this process serves to one client domain.
#[derive(Debug)]
pub struct ServerVchan {
    ctrl: NonNull<Libxenvchan>,
}

impl ServerVchan {
    /// Publish a vchan for `client` at the xenstore directory `path`
    /// (`ring-ref`, `event-channel`), rings of at least `read_min` and
    /// `write_min` bytes.
    pub fn new(client: u16, path: &str, read_min: usize, write_min: usize) -> io::Result<Self> {
        let p = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a NULL logger is allowed (the library then logs
        // nothing); `p` is a valid C string that outlives the call.
        let ctrl = unsafe {
            libxenvchan_server_init(
                std::ptr::null_mut(),
                c_int::from(client),
                p.as_ptr(),
                read_min,
                write_min,
            )
        };
        NonNull::new(ctrl)
            .map(|ctrl| ServerVchan { ctrl })
            .ok_or_else(io::Error::last_os_error)
    }

    /// The event channel's fd: readable when the client signalled; then
    /// call [`ServerVchan::ack`].
    pub fn fd(&self) -> c_int {
        // SAFETY: `ctrl` is a live handle from `libxenvchan_server_init`.
        unsafe { libxenvchan_fd_for_select(self.ctrl.as_ptr()) }
    }

    /// Consume the pending notification (`libxenvchan_wait`: reads the
    /// port from the fd and unmasks it). Only after `fd()` polled readable,
    /// otherwise it blocks.
    pub fn ack(&mut self) -> io::Result<()> {
        // SAFETY: live handle.
        if unsafe { libxenvchan_wait(self.ctrl.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the client has not closed (a client not yet connected
    /// counts as open).
    pub fn is_open(&self) -> bool {
        // SAFETY: live handle.
        unsafe { libxenvchan_is_open(self.ctrl.as_ptr()) != 0 }
    }

    /// Read what the client wrote (up to `buf.len()`); 0 if nothing.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: live handle.
        let ready = unsafe { libxenvchan_data_ready(self.ctrl.as_ptr()) };
        let n = usize::try_from(ready).unwrap_or(0).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: `buf` has room for `n` bytes; `n` bytes are ready, so the
        // call copies them and returns without waiting.
        let r = unsafe { libxenvchan_read(self.ctrl.as_ptr(), buf.as_mut_ptr().cast(), n) };
        usize::try_from(r).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "vchan closed"))
    }

    /// Write as much of `data` as fits now.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // SAFETY: live handle.
        let space = unsafe { libxenvchan_buffer_space(self.ctrl.as_ptr()) };
        let n = usize::try_from(space).unwrap_or(0).min(data.len());
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: `data` holds `n` bytes and there is room for them, so the
        // call copies them without waiting.
        let r = unsafe { libxenvchan_write(self.ctrl.as_ptr(), data.as_ptr().cast(), n) };
        usize::try_from(r).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "vchan closed"))
    }
}

impl Drop for ServerVchan {
    fn drop(&mut self) {
        // SAFETY: live handle, closed exactly once.
        unsafe { libxenvchan_close(self.ctrl.as_ptr()) }
    }
}
