//! One direction of a vchan: a byte ring of `2^order` bytes and its two
//! free-running `u32` indices in the control page.
//!
//! The writer owns `prod`, the reader owns `cons`; each side keeps its own
//! index privately (read from the page once, when attaching) and only ever
//! *stores* it to the page, so a peer scribbling over our index changes
//! nothing we do. The peer's index is loaded once per operation into a
//! local, checked against a window, and only the local is used:
//!
//! * reader, on the peer's `prod`: it must lie in
//!   `[last prod seen, cons + size]` (wrapping), so that the unread bytes
//!   `prod - cons` never exceed the ring and `prod` never moves backwards;
//! * writer, on the peer's `cons`: it must lie in `[last cons seen, prod]`,
//!   so that the bytes in flight `prod - cons` never exceed the ring and
//!   `cons` never moves backwards or past what was produced.
//!
//! A violation is a [`ProtocolError::RingIndex`] naming the value and the
//! window; nothing is copied and no state changes, and the caller treats
//! the connection as broken. With an index inside its window every offset
//! is `index & (size - 1)` and every copy at most `size` bytes split at the
//! end of the ring, so no value the peer writes leads to an access outside
//! the ring buffer.
//!
//! Barriers follow libxenvchan's `io.c`: a full barrier between reading
//! the peer's `cons` and writing data (we must not overwrite bytes it is
//! still reading), a write barrier between the data and publishing `prod`;
//! a read barrier between reading the peer's `prod` and reading data, a
//! full barrier between reading data and publishing `cons`.

use core::sync::atomic::Ordering;

use xen::memory::{mb, rmb, wmb, SharedMem};

use crate::error::{IndexKind, ProtocolError, RingId};
use crate::layout::{MAX_RING_ORDER, MIN_RING_ORDER};

/// Checks shared by both ends: the buffer's size and the control page.
fn ring_size(ctrl: &SharedMem, buf: &SharedMem) -> Option<u32> {
    let len = buf.len();
    let ok = len.is_power_of_two()
        && (1 << MIN_RING_ORDER..=1 << MAX_RING_ORDER).contains(&len)
        && ctrl.len() >= crate::layout::GRANTS;
    ok.then_some(len as u32)
}

/// The reading end of one ring (the server's left ring, the client's
/// right ring).
#[derive(Debug)]
pub struct RingReader {
    ctrl: SharedMem,
    ring: RingId,
    prod_off: usize,
    cons_off: usize,
    buf: SharedMem,
    size: u32,
    /// Our consumer index (the page's copy is write-only for us).
    cons: u32,
    /// The last producer index that passed validation.
    seen_prod: u32,
}

impl RingReader {
    /// Attach to `ring` of the control page `ctrl`, whose bytes are `buf`
    /// (a power of two from 1 KiB to 1 MiB). Our `cons` is read from the
    /// page once, here. `None` if `buf` has a bad size or `ctrl` is shorter
    /// than the header.
    pub fn new(ctrl: SharedMem, ring: RingId, buf: SharedMem) -> Option<RingReader> {
        let size = ring_size(&ctrl, &buf)?;
        let off = ring.offsets();
        let cons = ctrl.load_u32(off.cons, Ordering::Acquire);
        Some(RingReader {
            ctrl,
            ring,
            prod_off: off.prod,
            cons_off: off.cons,
            buf,
            size,
            cons,
            seen_prod: cons,
        })
    }

    /// Ring size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Our consumer index: bytes consumed so far (mod 2^32).
    pub fn cons(&self) -> u32 {
        self.cons
    }

    /// Which ring this is.
    pub fn ring(&self) -> RingId {
        self.ring
    }

    /// Bytes ready to read: loads the peer's `prod` once and validates it.
    pub fn available(&mut self) -> Result<u32, ProtocolError> {
        let prod = self.ctrl.load_u32(self.prod_off, Ordering::Acquire);
        let max = self.cons.wrapping_add(self.size);
        if prod.wrapping_sub(self.seen_prod) > max.wrapping_sub(self.seen_prod) {
            return Err(ProtocolError::RingIndex {
                ring: self.ring,
                index: IndexKind::Prod,
                value: prod,
                min: self.seen_prod,
                max,
            });
        }
        self.seen_prod = prod;
        Ok(prod.wrapping_sub(self.cons))
    }

    /// Copy up to `dst.len()` ready bytes into `dst` and publish the new
    /// `cons`. Returns the number of bytes read (0 if none are ready).
    pub fn read(&mut self, dst: &mut [u8]) -> Result<usize, ProtocolError> {
        let avail = self.available()? as usize;
        let n = avail.min(dst.len());
        if n == 0 {
            return Ok(0);
        }
        rmb();
        let start = (self.cons & (self.size - 1)) as usize;
        let first = n.min(self.size as usize - start);
        self.buf.read_bytes(start, &mut dst[..first]);
        if first < n {
            self.buf.read_bytes(0, &mut dst[first..n]);
        }
        mb();
        // `n <= size <= 2^20`, so the cast is exact.
        self.cons = self.cons.wrapping_add(n as u32);
        self.ctrl
            .store_u32(self.cons_off, self.cons, Ordering::Release);
        Ok(n)
    }
}

/// The writing end of one ring (the server's right ring, the client's
/// left ring).
#[derive(Debug)]
pub struct RingWriter {
    ctrl: SharedMem,
    ring: RingId,
    prod_off: usize,
    cons_off: usize,
    buf: SharedMem,
    size: u32,
    /// Our producer index (the page's copy is write-only for us).
    prod: u32,
    /// The last consumer index that passed validation.
    seen_cons: u32,
}

impl RingWriter {
    /// Attach to `ring` of the control page `ctrl`, whose bytes are `buf`
    /// (a power of two from 1 KiB to 1 MiB). Our `prod` is read from the
    /// page once, here. `None` if `buf` has a bad size or `ctrl` is shorter
    /// than the header.
    pub fn new(ctrl: SharedMem, ring: RingId, buf: SharedMem) -> Option<RingWriter> {
        let size = ring_size(&ctrl, &buf)?;
        let off = ring.offsets();
        let prod = ctrl.load_u32(off.prod, Ordering::Acquire);
        Some(RingWriter {
            ctrl,
            ring,
            prod_off: off.prod,
            cons_off: off.cons,
            buf,
            size,
            prod,
            // Until the first check, anything up to a full ring behind us
            // is acceptable.
            seen_cons: prod.wrapping_sub(size),
        })
    }

    /// Ring size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Our producer index: bytes produced so far (mod 2^32).
    pub fn prod(&self) -> u32 {
        self.prod
    }

    /// Which ring this is.
    pub fn ring(&self) -> RingId {
        self.ring
    }

    /// Free bytes: loads the peer's `cons` once and validates it.
    pub fn space(&mut self) -> Result<u32, ProtocolError> {
        let cons = self.ctrl.load_u32(self.cons_off, Ordering::Acquire);
        if cons.wrapping_sub(self.seen_cons) > self.prod.wrapping_sub(self.seen_cons) {
            return Err(ProtocolError::RingIndex {
                ring: self.ring,
                index: IndexKind::Cons,
                value: cons,
                min: self.seen_cons,
                max: self.prod,
            });
        }
        self.seen_cons = cons;
        Ok(self.size - self.prod.wrapping_sub(cons))
    }

    /// Copy as much of `src` as fits into the ring and publish the new
    /// `prod`. Returns the number of bytes written (0 if the ring is full).
    pub fn write(&mut self, src: &[u8]) -> Result<usize, ProtocolError> {
        let space = self.space()? as usize;
        let n = space.min(src.len());
        if n == 0 {
            return Ok(0);
        }
        mb();
        let start = (self.prod & (self.size - 1)) as usize;
        let first = n.min(self.size as usize - start);
        self.buf.write_bytes(start, &src[..first]);
        if first < n {
            self.buf.write_bytes(0, &src[first..n]);
        }
        wmb();
        // `n <= size <= 2^20`, so the cast is exact.
        self.prod = self.prod.wrapping_add(n as u32);
        self.ctrl
            .store_u32(self.prod_off, self.prod, Ordering::Release);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
