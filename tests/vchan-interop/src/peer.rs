//! One end of a vchan as the exchange sees it, whichever implementation
//! runs it: [`CPeer`] (Debian's libxenvchan through [`crate::ffi`]) or
//! [`RustPeer`] (this project's `vchan` crate).

use std::time::Duration;

use vchan::Vchan;
use xen::evtchn::Wake;
use xen::sim::SimDomain;
use xen::Hypervisor;

use crate::ffi::CVchan;

/// A vchan end, non-blocking, with an explicit wait.
pub trait Peer {
    /// Write as much of `buf` as fits now; `Ok(0)` if the ring is full.
    fn write(&mut self, buf: &[u8]) -> Result<usize, String>;
    /// Read what is there, up to `buf.len()`; `Ok(0)` if nothing is.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String>;
    /// Sleep until the peer's next event or `timeout`; `Ok(false)` on
    /// timeout.
    fn wait(&mut self, timeout: Duration) -> Result<bool, String>;
    /// Whether the peer has not closed.
    fn is_open(&mut self) -> bool;
}

/// libxenvchan's end.
pub struct CPeer(pub CVchan);

impl Peer for CPeer {
    fn write(&mut self, buf: &[u8]) -> Result<usize, String> {
        self.0
            .write(buf)
            .map_err(|_| "libxenvchan_write: -1 (closed)".to_string())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        self.0
            .read(buf)
            .map_err(|_| "libxenvchan_read: -1 (closed)".to_string())
    }
    fn wait(&mut self, timeout: Duration) -> Result<bool, String> {
        self.0
            .wait(timeout)
            .map_err(|e| format!("libxenvchan wait: {e}"))
    }
    fn is_open(&mut self) -> bool {
        self.0.is_open() != 0
    }
}

/// Our end.
pub struct RustPeer {
    /// The vchan.
    pub v: Vchan<SimDomain>,
    /// Its domain (for the clock).
    pub dom: SimDomain,
}

impl Peer for RustPeer {
    fn write(&mut self, buf: &[u8]) -> Result<usize, String> {
        self.v.write(buf).map_err(|e| format!("vchan write: {e}"))
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        self.v.read(buf).map_err(|e| format!("vchan read: {e}"))
    }
    fn wait(&mut self, timeout: Duration) -> Result<bool, String> {
        let deadline = self.dom.now_ns() + timeout.as_nanos() as u64;
        match self.v.wait(Some(deadline)) {
            Ok(w) => Ok(w == Wake::Pending),
            Err(e) => Err(format!("vchan wait: {e}")),
        }
    }
    fn is_open(&mut self) -> bool {
        self.v.is_open()
    }
}
