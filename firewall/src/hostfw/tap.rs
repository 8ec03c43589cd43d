//! One TAP device: opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` and
//! `TUNSETOFFLOAD` (checksum, TSO4, TSO6) by the `tun-rs` crate, then read
//! and written here with `readv`/`writev` straight into and out of pool
//! pages, so a forwarded frame is copied once in (the kernel's copy into
//! our page) and once out.
//!
//! A read lands in up to 16 pages: the vnet header and the frame start in
//! the first page (the frame's first segment begins at offset
//! [`vnet::LEN`]), so a 64 KiB GSO frame needs no second buffer. The pages
//! a read did not fill stay as the device's spares for the next read.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd};

use tun_rs::{DeviceBuilder, Layer, SyncDevice};
use xen::abi::PAGE_SIZE;
use xen::frame::offload::parse_headers;
use xen::frame::{Frame, MAX_FRAME_LEN, MAX_SEGMENTS};
use xen::memory::pool::{PagePool, PoolPage};

use super::vnet::{self, VnetError, VnetHdr};

/// Pages one read can fill: the vnet header plus the largest frame.
pub const READ_PAGES: usize = (vnet::LEN + MAX_FRAME_LEN).div_ceil(PAGE_SIZE);
const _: () = assert!(READ_PAGES <= MAX_SEGMENTS);

/// Why a TAP could not be opened, in words for the operator.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// What one read gave.
pub enum Read {
    /// A frame.
    Frame(Frame),
    /// Nothing to read now.
    Empty,
    /// The pool has no pages for a read.
    NoPages,
    /// A frame that was dropped (its reason).
    Dropped(RxDrop),
}

/// Why a received frame was dropped before the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than a frame can be (65535 bytes).
    TooLong,
    /// The vnet header describes something a frame cannot carry.
    Vnet(VnetError),
}

/// A TAP device.
pub struct Tap {
    name: String,
    dev: SyncDevice,
    spare: Vec<PoolPage>,
}

impl Tap {
    /// Create (or attach to) the TAP `name` with vnet headers and
    /// offloads, non-blocking. With `attach`, the device must already
    /// exist in this network namespace.
    pub fn open(name: &str, attach: bool) -> Result<Tap, OpenError> {
        if std::fs::metadata("/dev/net/tun").is_err() {
            return Err(OpenError(
                "no /dev/net/tun: the tun driver is missing (modprobe tun), or this container has no access to it".into(),
            ));
        }
        if attach && std::fs::metadata(format!("/sys/class/net/{name}")).is_err() {
            return Err(OpenError(format!(
                "TAP device {name}: no such device in this network namespace (create it with `ip tuntap add dev {name} mode tap vnet_hdr`, or drop --attach to let hostfw create it)"
            )));
        }
        let dev = DeviceBuilder::new()
            .name(name)
            .layer(Layer::L2)
            .offload(true)
            .build_sync()
            .map_err(|e| OpenError(describe(name, &e)))?;
        if !dev.tcp_gso() {
            return Err(OpenError(format!(
                "TAP device {name}: the kernel refused IFF_VNET_HDR/TUNSETOFFLOAD"
            )));
        }
        dev.set_nonblocking(true)
            .map_err(|e| OpenError(format!("TAP device {name}: O_NONBLOCK: {e}")))?;
        Ok(Tap {
            name: name.to_string(),
            dev,
            spare: Vec::with_capacity(READ_PAGES),
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor, for poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }

    /// The device's MTU.
    pub fn mtu(&self) -> Option<u16> {
        self.dev.mtu().ok()
    }

    /// Give the spare pages back (before the pool goes away).
    pub fn release(&mut self, pool: &mut PagePool) {
        for p in self.spare.drain(..) {
            pool.free(p);
        }
    }

    /// Read one frame (non-blocking).
    pub fn read(&mut self, pool: &mut PagePool) -> io::Result<Read> {
        while self.spare.len() < READ_PAGES {
            match pool.alloc() {
                Some(p) => self.spare.push(p),
                None => return Ok(Read::NoPages),
            }
        }
        let n = {
            let mut pages = self.spare.iter_mut();
            let mut iov: [IoSliceMut<'_>; READ_PAGES] = std::array::from_fn(|_| {
                IoSliceMut::new(pool.bytes_mut(pages.next().expect("READ_PAGES spares")))
            });
            match rustix::io::readv(self.dev.as_fd(), &mut iov) {
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => return Ok(Read::Empty),
                Err(rustix::io::Errno::INTR) => return Ok(Read::Empty),
                Err(e) => return Err(e.into()),
            }
        };
        if n < vnet::LEN + 14 {
            return Ok(Read::Dropped(RxDrop::Runt));
        }
        if n - vnet::LEN > MAX_FRAME_LEN {
            return Ok(Read::Dropped(RxDrop::TooLong));
        }
        let hdr = {
            let mut b = [0u8; vnet::LEN];
            b.copy_from_slice(&pool.bytes(&self.spare[0])[..vnet::LEN]);
            VnetHdr::decode(&b)
        };
        let (csum, gso) = match hdr.to_meta() {
            Ok(m) => m,
            Err(e) => return Ok(Read::Dropped(RxDrop::Vnet(e))),
        };
        let used = n.div_ceil(PAGE_SIZE);
        let mut frame = Frame::new();
        frame.csum = csum;
        frame.gso = gso;
        for (i, page) in self.spare.drain(..used).enumerate() {
            let start = i * PAGE_SIZE;
            let end = (start + PAGE_SIZE).min(n);
            let off = if i == 0 { vnet::LEN } else { 0 };
            let len = end - start - off;
            if let Err((page, _)) = frame.push(page, off, len) {
                // Cannot happen (sizes checked above); keep the page.
                pool.free(page);
            }
        }
        Ok(Read::Frame(frame))
    }

    /// Write one frame (non-blocking). The frame's pages go back to the
    /// pool whatever happens. `Ok(false)`: the frame could not be
    /// described to the kernel (malformed headers on a partial checksum),
    /// or the device's queue was full: dropped.
    pub fn write(&mut self, pool: &mut PagePool, frame: Frame) -> io::Result<bool> {
        let headers = if vnet::needs_headers(&frame) {
            parse_headers(pool, &frame).ok()
        } else {
            None
        };
        let Some(hdr) = VnetHdr::for_frame(&frame, headers.as_ref()) else {
            frame.free(pool);
            return Ok(false);
        };
        let hb = hdr.encode();
        let r = {
            let mut iov: [IoSlice<'_>; MAX_SEGMENTS + 1] = [IoSlice::new(&[]); MAX_SEGMENTS + 1];
            iov[0] = IoSlice::new(&hb);
            let mut k = 1;
            for s in frame.segments() {
                iov[k] = IoSlice::new(s.bytes(pool));
                k += 1;
            }
            rustix::io::writev(self.dev.as_fd(), &iov[..k])
        };
        frame.free(pool);
        match r {
            Ok(_) => Ok(true),
            // A full TAP queue, or the kernel refused this one frame (bad
            // GSO header): drop it, like a full ring.
            Err(
                rustix::io::Errno::AGAIN | rustix::io::Errno::INVAL | rustix::io::Errno::NOBUFS,
            ) => Ok(false),
            // The interface is down (e.g. not yet configured in its
            // namespace): the kernel drops, so do we.
            Err(rustix::io::Errno::IO) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// An open error in words: which device, and what to do about it.
fn describe(name: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc_eperm) if libc_eperm == rustix::io::Errno::PERM.raw_os_error()
            || libc_eperm == rustix::io::Errno::ACCESS.raw_os_error() =>
        {
            format!("TAP device {name}: no permission ({e}): run hostfw as root, or with CAP_NET_ADMIN, or pre-create the TAP with `ip tuntap add dev {name} mode tap vnet_hdr user <you>`")
        }
        Some(x) if x == rustix::io::Errno::BUSY.raw_os_error() => {
            format!("TAP device {name}: busy ({e}): another process holds it")
        }
        Some(x) if x == rustix::io::Errno::INVAL.raw_os_error() => format!(
            "TAP device {name}: refused ({e}): the name exists as another kind of device, or as a TAP without vnet_hdr"
        ),
        Some(x) if x == rustix::io::Errno::NOENT.raw_os_error()
            || x == rustix::io::Errno::NODEV.raw_os_error() =>
        {
            format!("TAP device {name}: missing ({e}): /dev/net/tun or the tun driver is not available")
        }
        _ => format!("TAP device {name}: {e}"),
    }
}
