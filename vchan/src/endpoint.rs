//! One end of a vchan without any I/O: the control page, the ring it reads,
//! the ring it writes, the notify bytes and the liveness bytes.
//!
//! [`Endpoint`] performs no hypercalls. Each operation says, in its
//! [`Progress`], whether the peer must now be sent an event; the caller
//! ([`crate::Vchan`], or a test, or the fuzz target) sends it.
//!
//! # The notify rules (libxenvchan `io.c`)
//!
//! Each side has a notify byte of requests addressed *to it*: the server's
//! is `srv_notify`, the client's `cli_notify`. A side that is about to
//! wait for data ORs [`VCHAN_NOTIFY_WRITE`] ("tell me when you write")
//! into the **peer's** byte, issues a full barrier and re-checks the ring;
//! one about to wait for space ORs [`VCHAN_NOTIFY_READ`] ("tell me when
//! you read"). After producing, a side atomically clears `WRITE` in its
//! **own** byte and notifies iff it was set; after consuming, likewise with
//! `READ`. Whatever the interleaving, either the waiter's re-check sees the
//! new bytes or the other side sees the request and notifies. The peer can
//! write these bytes at will; the worst it achieves is extra or missing
//! events for itself.
//!
//! # Liveness
//!
//! `srv_live` is 1 while the server runs and 0 once it has gone;
//! `cli_live` is 2 until the client connects, then 1, then 0. A side is
//! "open" while the peer's byte is non-zero (libxenvchan's
//! `libxenvchan_is_open`). Data the peer wrote before closing can still be
//! read: a read reports [`VchanError::PeerClosed`] only once the ring is
//! empty.

use core::sync::atomic::Ordering;

use xen::abi::vchan::{VCHAN_NOTIFY_READ, VCHAN_NOTIFY_WRITE};
use xen::memory::{mb, SharedMem};

use crate::error::{ProtocolError, RingId, VchanError};
use crate::layout::*;
use crate::ring::{RingReader, RingWriter};

/// Which end of the vchan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Granted the pages; reads the left ring, writes the right one.
    Server,
    /// Mapped the pages; writes the left ring, reads the right one.
    Client,
}

impl Role {
    /// The ring this end reads.
    pub fn read_ring(self) -> RingId {
        match self {
            Role::Server => RingId::Left,
            Role::Client => RingId::Right,
        }
    }

    /// The ring this end writes.
    pub fn write_ring(self) -> RingId {
        match self {
            Role::Server => RingId::Right,
            Role::Client => RingId::Left,
        }
    }

    /// Offset of this end's own notify byte (requests addressed to it).
    fn own_notify(self) -> usize {
        match self {
            Role::Server => SRV_NOTIFY,
            Role::Client => CLI_NOTIFY,
        }
    }

    /// Offset of the peer's notify byte.
    fn peer_notify(self) -> usize {
        match self {
            Role::Server => CLI_NOTIFY,
            Role::Client => SRV_NOTIFY,
        }
    }

    /// Offset of this end's liveness byte.
    fn own_live(self) -> usize {
        match self {
            Role::Server => SRV_LIVE,
            Role::Client => CLI_LIVE,
        }
    }

    /// Offset of the peer's liveness byte.
    fn peer_live(self) -> usize {
        match self {
            Role::Server => CLI_LIVE,
            Role::Client => SRV_LIVE,
        }
    }
}

/// The peer's state as its liveness byte tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// The client has not connected yet (server side only, `cli_live`
    /// = 2). Counts as open: the server may already write.
    Waiting,
    /// Connected (any non-zero value other than the above, as libxenvchan
    /// treats it).
    Connected,
    /// The peer has closed (its byte is 0).
    Closed,
}

/// The result of a read or write: how many bytes moved, and whether the
/// peer asked to be told (send it an event).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "if `notify` is set the peer must be sent an event"]
pub struct Progress {
    /// Bytes copied.
    pub bytes: usize,
    /// The peer asked for an event about this: send one.
    pub notify: bool,
}

/// One end of a vchan over its control page and ring buffers (see the
/// module doc).
#[derive(Debug)]
pub struct Endpoint {
    role: Role,
    ctrl: SharedMem,
    reader: RingReader,
    writer: RingWriter,
    broken: Option<ProtocolError>,
}

impl Endpoint {
    /// Initialise a freshly allocated control page as a server does:
    /// zero the header and grant list, write the orders, `cli_live = 2`,
    /// `srv_live = 1`, and request `WRITE` notifications from the client.
    /// Grant refs are written afterwards with [`Endpoint::set_grant`].
    pub fn init_server_page(ctrl: &SharedMem, orders: RingOrders) {
        // The whole page: libxenvchan zeroes it, in-page rings included.
        ctrl.fill(0, ctrl.len(), 0);
        ctrl.store_u16(LEFT_ORDER, orders.left(), Ordering::Relaxed);
        ctrl.store_u16(RIGHT_ORDER, orders.right(), Ordering::Relaxed);
        ctrl.store_u8(CLI_LIVE, LIVE_WAITING, Ordering::Relaxed);
        ctrl.store_u8(SRV_LIVE, LIVE_CONNECTED, Ordering::Relaxed);
        ctrl.store_u8(CLI_NOTIFY, VCHAN_NOTIFY_WRITE, Ordering::Relaxed);
        mb();
    }

    /// Write grant ref `gref` at position `i` of the grant list.
    pub fn set_grant(ctrl: &SharedMem, i: usize, gref: u32) {
        ctrl.store_u32(GRANTS + 4 * i, gref, Ordering::Relaxed);
    }

    /// Read the orders from a control page (once) and validate them, as a
    /// client does before mapping the rings.
    pub fn read_orders(ctrl: &SharedMem) -> Result<RingOrders, ProtocolError> {
        let left = ctrl.load_u16(LEFT_ORDER, Ordering::Acquire);
        let right = ctrl.load_u16(RIGHT_ORDER, Ordering::Acquire);
        RingOrders::validate(left, right)
    }

    /// Read the `count` grant refs from `first` on (each read once). With
    /// `first` and `count` from orders that passed
    /// [`Endpoint::read_orders`], the list lies before any in-page ring.
    pub fn read_grants(ctrl: &SharedMem, first: usize, count: usize) -> alloc::vec::Vec<u32> {
        (first..first + count)
            .map(|i| ctrl.load_u32(GRANTS + 4 * i, Ordering::Acquire))
            .collect()
    }

    /// An endpoint over `ctrl`, reading `read_buf` and writing `write_buf`
    /// (the buffers of [`Role::read_ring`] and [`Role::write_ring`]). The
    /// buffer sizes must match the page's orders; `None` if one is not a
    /// power of two from 1 KiB to 1 MiB or `ctrl` is shorter than the
    /// header.
    pub fn new(
        role: Role,
        ctrl: SharedMem,
        read_buf: SharedMem,
        write_buf: SharedMem,
    ) -> Option<Endpoint> {
        Some(Endpoint {
            role,
            reader: RingReader::new(ctrl, role.read_ring(), read_buf)?,
            writer: RingWriter::new(ctrl, role.write_ring(), write_buf)?,
            ctrl,
            broken: None,
        })
    }

    /// The buffers of both rings for `orders`: in-page rings are views of
    /// `ctrl`, page rings come from `left_pages`/`right_pages` (the mapped
    /// or granted ring pages, `None` for an in-page ring). Returns (left,
    /// right), or `None` if a page ring's view is missing or too short.
    pub fn ring_buffers(
        ctrl: &SharedMem,
        orders: RingOrders,
        left_pages: Option<SharedMem>,
        right_pages: Option<SharedMem>,
    ) -> Option<(SharedMem, SharedMem)> {
        let one = |ring: RingId, pages: Option<SharedMem>| -> Option<SharedMem> {
            let size = 1usize << orders.order(ring);
            match orders.location(ring) {
                RingLocation::InControlPage { offset } => Some(ctrl.sub(offset, size)),
                RingLocation::Pages { .. } => {
                    let p = pages?;
                    (p.len() >= size).then(|| p.sub(0, size))
                }
            }
        };
        Some((
            one(RingId::Left, left_pages)?,
            one(RingId::Right, right_pages)?,
        ))
    }

    /// Mark the client connected, as libxenvchan's client does once the
    /// rings are mapped: `cli_live = 1` and request `WRITE` notifications
    /// from the server. The caller then notifies the server.
    pub fn client_connect(&self) {
        self.ctrl
            .store_u8(CLI_LIVE, LIVE_CONNECTED, Ordering::SeqCst);
        self.ctrl
            .store_u8(SRV_NOTIFY, VCHAN_NOTIFY_WRITE, Ordering::SeqCst);
        mb();
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The control page.
    pub fn control_page(&self) -> SharedMem {
        self.ctrl
    }

    /// Size of the ring this end reads.
    pub fn read_size(&self) -> usize {
        self.reader.size() as usize
    }

    /// Size of the ring this end writes.
    pub fn write_size(&self) -> usize {
        self.writer.size() as usize
    }

    /// The protocol violation that broke this endpoint, if any.
    pub fn broken(&self) -> Option<&ProtocolError> {
        self.broken.as_ref()
    }

    /// The peer's state, from its liveness byte (read once).
    pub fn peer_state(&self) -> PeerState {
        match self.ctrl.load_u8(self.role.peer_live(), Ordering::Acquire) {
            LIVE_GONE => PeerState::Closed,
            LIVE_WAITING if self.role == Role::Server => PeerState::Waiting,
            _ => PeerState::Connected,
        }
    }

    /// Whether the peer has not closed (libxenvchan's `is_open`).
    pub fn is_open(&self) -> bool {
        self.peer_state() != PeerState::Closed
    }

    /// Set our liveness byte to 0: the peer sees the vchan closed. The
    /// caller then notifies the peer.
    pub fn mark_closed(&self) {
        mb();
        self.ctrl
            .store_u8(self.role.own_live(), LIVE_GONE, Ordering::SeqCst);
        mb();
    }

    /// Ask the peer for an event on `bits` (`VCHAN_NOTIFY_*`), before
    /// re-checking the ring and sleeping.
    pub fn request_notify(&self, bits: u8) {
        self.ctrl.or_u8(self.role.peer_notify(), bits);
        mb();
    }

    /// Clear `bit` in our own notify byte; true if the peer had asked for
    /// it (so it must be notified).
    fn take_notify(&self, bit: u8) -> bool {
        mb();
        self.ctrl.and_u8(self.role.own_notify(), !bit) & bit != 0
    }

    fn check(&self) -> Result<(), VchanError> {
        match &self.broken {
            Some(e) => Err(VchanError::Protocol(e.clone())),
            None => Ok(()),
        }
    }

    fn fail<T>(&mut self, e: ProtocolError) -> Result<T, VchanError> {
        self.broken = Some(e.clone());
        Err(VchanError::Protocol(e))
    }

    /// Bytes ready to read. Requests a `WRITE` notification first, as
    /// libxenvchan does (a caller that looks at this may wait on it).
    pub fn data_ready(&mut self) -> Result<usize, VchanError> {
        self.check()?;
        self.request_notify(VCHAN_NOTIFY_WRITE);
        match self.reader.available() {
            Ok(n) => Ok(n as usize),
            Err(e) => self.fail(e),
        }
    }

    /// Free space in the ring we write. Requests a `READ` notification
    /// first, as libxenvchan does.
    pub fn buffer_space(&mut self) -> Result<usize, VchanError> {
        self.check()?;
        self.request_notify(VCHAN_NOTIFY_READ);
        match self.writer.space() {
            Ok(n) => Ok(n as usize),
            Err(e) => self.fail(e),
        }
    }

    /// Non-blocking read of up to `dst.len()` bytes. When fewer bytes than
    /// asked are ready, a `WRITE` notification is requested (and the ring
    /// re-checked), so the caller may sleep on the event channel after a
    /// short read. `bytes == 0` means nothing is ready yet; once the peer
    /// has closed and the ring is empty, [`VchanError::PeerClosed`].
    pub fn read(&mut self, dst: &mut [u8]) -> Result<Progress, VchanError> {
        self.check()?;
        if dst.is_empty() {
            return Ok(Progress::default());
        }
        let mut avail = self.available()?;
        if avail < dst.len() {
            self.request_notify(VCHAN_NOTIFY_WRITE);
            avail = self.available()?;
        }
        if avail == 0 {
            if self.is_open() {
                return Ok(Progress::default());
            }
            // The peer may have written its last bytes just before
            // closing: look once more, after seeing it closed.
            mb();
            if self.available()? == 0 {
                return Err(VchanError::PeerClosed);
            }
        }
        let bytes = match self.reader.read(dst) {
            Ok(n) => n,
            Err(e) => return self.fail(e),
        };
        let notify = self.take_notify(VCHAN_NOTIFY_READ);
        Ok(Progress { bytes, notify })
    }

    /// Non-blocking write of as much of `src` as fits. When less space than
    /// `src.len()` is free, a `READ` notification is requested (and the
    /// ring re-checked), so the caller may sleep after a short write.
    /// [`VchanError::PeerClosed`] once the peer has closed.
    pub fn write(&mut self, src: &[u8]) -> Result<Progress, VchanError> {
        self.check()?;
        if !self.is_open() {
            return Err(VchanError::PeerClosed);
        }
        if src.is_empty() {
            return Ok(Progress::default());
        }
        let mut space = self.space()?;
        if space < src.len() {
            self.request_notify(VCHAN_NOTIFY_READ);
            space = self.space()?;
        }
        if space == 0 {
            return Ok(Progress::default());
        }
        let bytes = match self.writer.write(src) {
            Ok(n) => n,
            Err(e) => return self.fail(e),
        };
        let notify = self.take_notify(VCHAN_NOTIFY_WRITE);
        Ok(Progress { bytes, notify })
    }

    fn available(&mut self) -> Result<usize, VchanError> {
        match self.reader.available() {
            Ok(n) => Ok(n as usize),
            Err(e) => self.fail(e),
        }
    }

    fn space(&mut self) -> Result<usize, VchanError> {
        match self.writer.space() {
            Ok(n) => Ok(n as usize),
            Err(e) => self.fail(e),
        }
    }
}

#[cfg(test)]
mod tests;
