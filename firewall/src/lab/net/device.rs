//! [`SmolDevice`]: a smoltcp [`Device`] over the frames a vif driver
//! moves, for the lab's endpoint domains (sys-net's "internet", AppVMs).
//!
//! Receive: the driver's [`Frame`]s are handed to [`SmolDevice::ingest`],
//! which normalises offloads and copies the bytes out (these endpoints are
//! not on the measured data path; the copy lets rx and tx tokens coexist
//! without both borrowing the pool):
//!
//! - a [`Checksum::Partial`] frame has its TCP/UDP checksum completed with
//!   [`offload::complete_checksum`] *before* smoltcp sees it, so smoltcp
//!   keeps verifying every checksum (it never has to be told to trust a
//!   frame; a frame whose checksum cannot be completed is dropped and
//!   counted);
//! - a GSO frame (which a peer should not send, as the endpoints offer no
//!   GSO, but a hostile or buggy one may) is cut in software with
//!   [`offload::segment_to_frames`] into full-checksum segments, counted.
//!
//! Transmit: smoltcp builds each packet in a buffer that is then copied
//! into pool pages, becoming a [`Frame`] with [`Checksum::Unverified`]:
//! smoltcp computes full checksums, so the frame is complete and needs no
//! offload from the peer. Frames wait in
//! [`SmolDevice::take_tx`] for the driver.
//!
//! Invariant: every frame ingested is freed (or its pages handed on) before
//! `ingest` returns; the device never holds pool pages except in its tx
//! queue.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use xen::frame::{offload, Checksum, Frame};
use xen::memory::pool::PagePool;

/// The MTU of every lab vif (Qubes' default).
pub const MTU: usize = 1500;
/// Ethernet header bytes on top of the MTU.
const ETH_HEADER: usize = 14;
/// Frames the device buffers each way before it drops (rx) or refuses to
/// hand smoltcp a tx token (tx).
const QUEUE: usize = 512;

/// Counters of a [`SmolDevice`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames accepted from the driver (after segmentation).
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames whose partial checksum was completed here.
    pub rx_csum_completed: u64,
    /// GSO frames cut in software.
    pub rx_gso_segmented: u64,
    /// Frames dropped: checksum not completable, segmentation failed, or
    /// the rx queue full.
    pub rx_dropped: u64,
    /// Frames dropped by the domain's ingress filter (see
    /// [`SmolDevice::ingest_filtered`]).
    pub rx_filtered: u64,
    /// Frames smoltcp transmitted.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames smoltcp built that were lost because the pool was empty.
    pub tx_dropped: u64,
}

/// The smoltcp device (see the module doc).
#[derive(Debug)]
pub struct SmolDevice {
    pool: PagePool,
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Frame>,
    stats: DeviceStats,
}

impl SmolDevice {
    /// A device whose tx frames come from `pool` (which the domain's driver
    /// shares through [`SmolDevice::pool_mut`]).
    pub fn new(pool: PagePool) -> SmolDevice {
        SmolDevice {
            pool,
            rx: VecDeque::with_capacity(QUEUE),
            tx: VecDeque::with_capacity(QUEUE),
            stats: DeviceStats::default(),
        }
    }

    /// The packet pool (the driver's calls need it too).
    pub fn pool_mut(&mut self) -> &mut PagePool {
        &mut self.pool
    }

    /// The counters.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Take a received frame from the driver: normalise its offloads, copy
    /// it out for smoltcp, free it.
    pub fn ingest(&mut self, frame: Frame) {
        self.ingest_filtered(frame, &mut |_| true);
    }

    /// [`SmolDevice::ingest`], keeping only the (normalised) frames for
    /// which `keep` returns true; the others are counted in
    /// [`DeviceStats::rx_filtered`]. `keep` sees every frame, so it is also
    /// the place to capture or inspect traffic.
    pub fn ingest_filtered(&mut self, mut frame: Frame, keep: &mut dyn FnMut(&[u8]) -> bool) {
        if frame.gso.is_some() {
            let mut segs = Vec::new();
            let r =
                offload::segment_to_frames(&mut self.pool, &frame, false, &mut |f| segs.push(f));
            frame.free(&mut self.pool);
            match r {
                Ok(_) => {
                    self.stats.rx_gso_segmented += 1;
                    for s in segs {
                        self.accept(s, keep);
                    }
                }
                Err(e) => {
                    log::debug!("lab device: dropping GSO frame: {e}");
                    for s in segs {
                        s.free(&mut self.pool);
                    }
                    self.stats.rx_dropped += 1;
                }
            }
            return;
        }
        if frame.csum == Checksum::Partial {
            if let Err(e) = offload::complete_checksum(&self.pool, &mut frame) {
                log::debug!("lab device: dropping partial-checksum frame: {e}");
                frame.free(&mut self.pool);
                self.stats.rx_dropped += 1;
                return;
            }
            self.stats.rx_csum_completed += 1;
        }
        self.accept(frame, keep);
    }

    fn accept(&mut self, frame: Frame, keep: &mut dyn FnMut(&[u8]) -> bool) {
        let bytes = frame.to_vec(&self.pool);
        frame.free(&mut self.pool);
        if !keep(&bytes) {
            self.stats.rx_filtered += 1;
        } else if self.rx.len() >= QUEUE {
            self.stats.rx_dropped += 1;
        } else {
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += bytes.len() as u64;
            self.rx.push_back(bytes);
        }
    }

    /// Queue hand-made frame bytes for transmission, bypassing smoltcp (for
    /// spoofing tests). False if the pool or the queue is full.
    pub fn inject(&mut self, bytes: &[u8]) -> bool {
        if self.tx.len() >= QUEUE {
            return false;
        }
        match Frame::from_bytes(&mut self.pool, bytes) {
            Ok(f) => {
                self.tx.push_back(f);
                true
            }
            Err(_) => false,
        }
    }

    /// The next frame to hand the driver.
    pub fn take_tx(&mut self) -> Option<Frame> {
        self.tx.pop_front()
    }

    /// Give back a frame the driver refused (ring full): it goes first.
    pub fn untake_tx(&mut self, frame: Frame) {
        self.tx.push_front(frame);
    }

    /// True if received frames wait for smoltcp.
    pub fn has_rx(&self) -> bool {
        !self.rx.is_empty()
    }

    /// True if frames wait for the driver.
    pub fn has_tx(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Free everything queued (the link went down).
    pub fn clear(&mut self) {
        self.rx.clear();
        while let Some(f) = self.tx.pop_front() {
            f.free(&mut self.pool);
        }
    }
}

impl Device for SmolDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.tx.len() >= QUEUE {
            return None;
        }
        let buf = self.rx.pop_front()?;
        Some((
            RxToken { buf },
            TxToken {
                pool: &mut self.pool,
                tx: &mut self.tx,
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.tx.len() >= QUEUE {
            return None;
        }
        Some(TxToken {
            pool: &mut self.pool,
            tx: &mut self.tx,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + ETH_HEADER;
        caps.max_burst_size = None;
        // Checksums stay on (the default: compute and verify): partial
        // checksums are completed in `ingest`.
        caps
    }
}

/// A received frame's bytes.
pub struct RxToken {
    buf: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.buf)
    }
}

/// Room for one frame smoltcp builds, in a pool page.
pub struct TxToken<'a> {
    pool: &'a mut PagePool,
    tx: &'a mut VecDeque<Frame>,
    stats: &'a mut DeviceStats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // Build in a local buffer, then copy into pages: a frame longer than
        // a page (never with this MTU) still works, and an empty pool still
        // lets smoltcp run its closure (the frame is then lost, as on a
        // congested wire).
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        match Frame::from_bytes(self.pool, &buf) {
            Ok(frame) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
                self.tx.push_back(frame);
            }
            Err(_) => self.stats.tx_dropped += 1,
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{RxToken as _, TxToken as _};
    use xen::frame::{Gso, GsoType};
    use xen::sim::{DomainConfig, SimXen};

    /// An Ethernet/IPv4/UDP frame 10.0.0.1:1000 → 10.0.0.2:2000 with the
    /// UDP checksum field holding only the pseudo-header sum.
    fn partial_udp(payload: &[u8]) -> Vec<u8> {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut f = vec![0u8; 14 + ip_len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = offload::ipv4_header_checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let udp = &mut f[34..];
        udp[0..2].copy_from_slice(&1000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&2000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        udp[8..].copy_from_slice(payload);
        f
    }

    /// A device on a domain of its own (keep the hypervisor alive: the
    /// domain's memory goes with it).
    fn device() -> (SimXen, SmolDevice) {
        let xen = SimXen::new();
        let d = xen.create_domain(&DomainConfig::new("dev")).unwrap();
        let dev = SmolDevice::new(PagePool::new(&d, 64).unwrap());
        (xen, dev)
    }

    #[test]
    fn partial_checksums_are_completed_before_smoltcp_sees_them() {
        let (_xen, mut dev) = device();
        let bytes = partial_udp(b"hello");
        let mut frame = Frame::from_bytes(dev.pool_mut(), &bytes).unwrap();
        frame.csum = Checksum::Partial;
        dev.ingest(frame);
        assert_eq!(dev.stats().rx_csum_completed, 1);
        let (rx, _tx) = dev.receive(Instant::from_millis(0)).unwrap();
        let got = rx.consume(|b| b.to_vec());
        let udp = smoltcp::wire::UdpPacket::new_checked(&got[34..]).unwrap();
        let (s, d) = (
            smoltcp::wire::IpAddress::v4(10, 0, 0, 1),
            smoltcp::wire::IpAddress::v4(10, 0, 0, 2),
        );
        assert!(udp.verify_checksum(&s, &d));
    }

    #[test]
    fn gso_frames_are_segmented_and_tx_builds_pool_frames() {
        let (_xen, mut dev) = device();
        let avail = dev.pool_mut().available();
        // Not a TCP frame: segmentation fails, the frame is dropped and no
        // page leaks.
        let mut frame = Frame::from_bytes(dev.pool_mut(), &partial_udp(&[0; 3000])).unwrap();
        frame.gso = Some(Gso {
            kind: GsoType::TcpV4,
            mss: 1000,
        });
        dev.ingest(frame);
        assert_eq!(dev.stats().rx_dropped, 1);
        assert_eq!(dev.pool_mut().available(), avail);
        let tok = dev.transmit(Instant::from_millis(0)).unwrap();
        tok.consume(60, |b| b.fill(7));
        let f = dev.take_tx().unwrap();
        assert_eq!(f.to_vec(dev.pool_mut()), vec![7u8; 60]);
        f.free(dev.pool_mut());
        assert_eq!(dev.pool_mut().available(), avail);
    }
}
