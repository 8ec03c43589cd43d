//! One connection's resources (ring pages, grants, event channel) and the
//! data path over them: consuming responses, refilling receive buffers,
//! placing frames in the transmit ring, tearing everything down.
//!
//! The tables here ([`DataPath`]) are sized once, when the driver is
//! built, and reused by every connection: `poll`, `send` and `flush` do not
//! allocate.

use alloc::vec::Vec;

use xen::abi::netif::*;
use xen::abi::{DomId, EvtchnPort, GrantRef, PAGE_SIZE};
use xen::evtchn::EventChannels;
use xen::frame::offload::{self, Segmenter, L3};
use xen::frame::{Checksum, Frame, FrameQueue, GsoType, MAX_SEGMENTS};
use xen::gnttab::GrantTable;
use xen::memory::pool::{LentPage, PagePool, PoolPage};
use xen::memory::Gfn;
use xen::ring::{FrontRing, NetifRx, NetifTx};
use xen::Platform;

use crate::error::{Ring, Violation};
use crate::quarantine::{release, Held, Quarantine};
use crate::rx::{RxAssembler, RxConfig, RxDrop, RxOutcome, RxPacket, RX_RING_SIZE};
use crate::tx::{tx_csum_flags, TxAnswer, TxTracker, TX_RING_SIZE};
use crate::{Features, Stats, STORM_WAKEUPS};

const RX_MASK: u32 = RX_RING_SIZE as u32 - 1;
/// An Ethernet header: the least Linux netback accepts in a first slot.
const ETH_HLEN: usize = 14;
/// How much [`DataPath::pull_head`] copies: enough for the headers Linux
/// netback copies out of the first slots anyway (`XEN_NETBACK_TX_COPY_LEN`).
const PULL_LEN: usize = 128;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Why a connection could not be set up (resources, not the backend's
/// fault).
pub(crate) type SetupError = &'static str;

/// The resources of one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) backend: DomId,
    pub(crate) port: EvtchnPort,
    pub(crate) tx: FrontRing<NetifTx>,
    pub(crate) rx: FrontRing<NetifRx>,
    tx_page: (GrantRef, Gfn),
    rx_page: (GrantRef, Gfn),
    /// What the backend offered.
    pub(crate) theirs: Features,
    /// What both sides do (see [`Features::both`]).
    pub(crate) both: Features,
}

impl Conn {
    /// Allocate, zero and initialise both ring pages, grant them writable
    /// to `backend`, and offer an event channel to it. On failure nothing
    /// stays allocated.
    pub(crate) fn setup<P: Platform + Clone>(
        ev: &EventChannels<P>,
        gt: &mut GrantTable<P>,
        backend: DomId,
        ours: Features,
        theirs: Features,
    ) -> Result<Conn, SetupError> {
        let p = ev.platform();
        let tx_gfn = p.alloc_pages(1).ok_or("no memory for the tx ring")?;
        let Some(rx_gfn) = p.alloc_pages(1) else {
            p.free_pages(tx_gfn, 1);
            return Err("no memory for the rx ring");
        };
        let free_pages = || {
            p.free_pages(tx_gfn, 1);
            p.free_pages(rx_gfn, 1);
        };
        let (Some(tx_mem), Some(rx_mem)) = (p.page(tx_gfn), p.page(rx_gfn)) else {
            free_pages();
            return Err("ring pages not addressable");
        };
        // Fresh pages are zeroed; `init` writes the header.
        tx_mem.fill(0, PAGE_SIZE, 0);
        rx_mem.fill(0, PAGE_SIZE, 0);
        let tx = FrontRing::<NetifTx>::init(tx_mem);
        let rx = FrontRing::<NetifRx>::init(rx_mem);
        let Ok(tx_ref) = gt.grant(backend, tx_gfn, false) else {
            free_pages();
            return Err("no grant reference for the tx ring");
        };
        let Ok(rx_ref) = gt.grant(backend, rx_gfn, false) else {
            // Not published yet: nobody can hold it.
            let _ = gt.end_access(tx_ref);
            free_pages();
            return Err("no grant reference for the rx ring");
        };
        let Ok(port) = ev.alloc_unbound(backend) else {
            let _ = gt.end_access(tx_ref);
            let _ = gt.end_access(rx_ref);
            free_pages();
            return Err("no event channel");
        };
        // The backend always accepts IPv4 partial checksums (Linux netback
        // has no key to refuse them).
        let theirs_eff = Features {
            csum_offload: true,
            ..theirs
        };
        Ok(Conn {
            backend,
            port,
            tx,
            rx,
            tx_page: (tx_ref, tx_gfn),
            rx_page: (rx_ref, rx_gfn),
            theirs,
            both: ours.effective().both(theirs_eff),
        })
    }

    /// The grant references of the tx and rx ring pages.
    pub(crate) fn ring_refs(&self) -> (GrantRef, GrantRef) {
        (self.tx_page.0, self.rx_page.0)
    }

    /// May a partial checksum over `l3` go to the backend as `csum_blank`?
    fn csum_blank_ok(&self, l3: Option<L3>) -> bool {
        self.both.csum_offload
            && match l3 {
                Some(L3::V4) => true,
                Some(L3::V6) => self.both.ipv6_csum_offload,
                None => false,
            }
    }

    /// May a GSO frame of `kind` go to the backend as one super-packet?
    fn gso_ok(&self, kind: GsoType) -> bool {
        self.both.sg
            && match kind {
                GsoType::TcpV4 => self.both.gso_tcpv4,
                GsoType::TcpV6 => self.both.gso_tcpv6,
            }
    }
}

/// What an outstanding transmit id stands for: segment `seg` of the packet
/// in `packets[pkt]`. The packet's place is its own, not its first slot's
/// id: Linux netback answers the first slot (copied) at once and the others
/// (mapped) only when sys-net's stack frees the packet, so the first id is
/// free again, and reissued, while the packet is still in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxSlot {
    pkt: u16,
    seg: u8,
}

/// A packet in the transmit ring.
#[derive(Debug)]
struct TxPacket {
    frame: Frame,
    grefs: [GrantRef; MAX_SEGMENTS],
    nsegs: u8,
    answered: u8,
    /// Bit `i`: the grant of segment `i` was revoked.
    ended: u32,
    /// The first non-OKAY status among its responses.
    status: i16,
}

/// Counts notifications that brought no work.
#[derive(Debug, Default)]
struct Storm {
    window_start: u64,
    idle: u32,
}

/// The preallocated tables of the data path, reused across connections.
#[derive(Debug)]
pub(crate) struct DataPath {
    rx_bufs: Vec<Option<LentPage>>,
    asm: RxAssembler,
    pub(crate) rx_cfg: RxConfig,
    rx_backlog: bool,
    tx: TxTracker<TxSlot>,
    packets: Vec<Option<TxPacket>>,
    /// Free places in `packets`.
    free_packets: Vec<u16>,
    staging: Vec<Frame>,
    pub(crate) quarantine: Quarantine,
    pub(crate) stats: Stats,
    storm: Storm,
}

impl DataPath {
    pub(crate) fn new() -> DataPath {
        let mut rx_bufs = Vec::with_capacity(RX_RING_SIZE);
        rx_bufs.resize_with(RX_RING_SIZE, || None);
        let mut packets = Vec::with_capacity(TX_RING_SIZE);
        packets.resize_with(TX_RING_SIZE, || None);
        DataPath {
            rx_bufs,
            asm: RxAssembler::new(0),
            rx_cfg: RxConfig::default(),
            rx_backlog: false,
            tx: TxTracker::new(),
            packets,
            free_packets: (0..TX_RING_SIZE as u16).rev().collect(),
            staging: Vec::with_capacity(TX_RING_SIZE),
            quarantine: Quarantine::new(),
            stats: Stats::default(),
            storm: Storm::default(),
        }
    }

    /// Responses wait in the assembler because the receive queue was full.
    pub(crate) fn rx_backlog(&self) -> bool {
        self.rx_backlog
    }

    /// Give everything of `conn` back: close the port, revoke the ring
    /// grants and every buffer grant (quarantining what the backend still
    /// holds), free in-flight frames.
    pub(crate) fn teardown<P: Platform + Clone>(
        &mut self,
        conn: Conn,
        ev: &EventChannels<P>,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) {
        let _ = ev.close(conn.port);
        for (gref, gfn) in [conn.tx_page, conn.rx_page] {
            self.release_or_hold(Held::Ring { gref, gfn }, gt, pool);
        }
        for i in 0..self.rx_bufs.len() {
            if let Some(lent) = self.rx_bufs[i].take() {
                self.release_or_hold(Held::Lent(lent), gt, pool);
            }
        }
        self.asm.reset(0);
        self.rx_backlog = false;
        self.tx.drain(|_, _| {});
        for i in 0..self.packets.len() {
            if let Some(pkt) = self.packets[i].take() {
                self.stats.tx_dropped.disconnected += 1;
                self.retire(pkt, gt, pool);
            }
        }
        self.free_packets.clear();
        self.free_packets.extend((0..TX_RING_SIZE as u16).rev());
        self.storm = Storm::default();
        self.stats.disconnects += 1;
    }

    fn release_or_hold<P: Platform + Clone>(
        &mut self,
        h: Held,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) {
        if let Err(h) = release(h, gt, pool) {
            self.quarantine.push(h, &mut self.stats);
        }
    }

    /// Retry the quarantine.
    pub(crate) fn retry_quarantine<P: Platform + Clone>(
        &mut self,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) {
        if !self.quarantine.is_empty() {
            self.quarantine.retry(gt, pool, &mut self.stats);
        }
    }

    // ---- polling ----------------------------------------------------

    /// Consume both rings' responses, deliver received frames to `rx`
    /// while it has room, refill the receive ring (one notification at
    /// most), and account for a notification that brought no work.
    pub(crate) fn poll<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        ev: &EventChannels<P>,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        rx: &mut FrameQueue,
        woke: bool,
    ) -> Result<(), Violation> {
        let mut work = self.poll_tx(conn, gt, pool)?;
        work |= self.poll_rx(conn, gt, pool, rx)?;
        if self.refill(conn, gt, pool) && conn.rx.push_requests_and_check_notify() {
            let _ = ev.send(conn.port);
            self.stats.notifications_sent += 1;
        }
        if self.quarantine.over_limit() {
            return Err(Violation::PagesHeld {
                pages: self.quarantine.len(),
            });
        }
        if woke {
            self.stats.wakeups += 1;
        }
        if work {
            self.storm.idle = 0;
        } else if woke {
            self.stats.idle_wakeups += 1;
            let now = ev.platform().now_ns();
            if now.saturating_sub(self.storm.window_start) > NS_PER_SEC {
                self.storm = Storm {
                    window_start: now,
                    idle: 0,
                };
            }
            self.storm.idle += 1;
            if self.storm.idle > STORM_WAKEUPS {
                return Err(Violation::EventStorm {
                    wakeups: self.storm.idle,
                });
            }
        }
        Ok(())
    }

    fn poll_tx<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) -> Result<bool, Violation> {
        let ring_err = |e| Violation::Ring(Ring::Tx, e);
        let mut work = false;
        loop {
            conn.tx.poll_responses().map_err(ring_err)?;
            while let Some(rsp) = conn.tx.next_response() {
                work = true;
                match self.tx.on_response(rsp).map_err(Violation::Tx)? {
                    TxAnswer::Extra => {}
                    TxAnswer::Data { value, status, .. } => {
                        self.tx_answered(value, status, gt, pool)
                    }
                }
            }
            if !conn.tx.final_check_for_responses().map_err(ring_err)? {
                return Ok(work);
            }
        }
    }

    fn tx_answered<P: Platform + Clone>(
        &mut self,
        slot: TxSlot,
        status: i16,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) {
        let head = usize::from(slot.pkt);
        let Some(pkt) = self.packets.get_mut(head).and_then(Option::as_mut) else {
            return;
        };
        let seg = usize::from(slot.seg);
        if gt.end_access(pkt.grefs[seg]).is_ok() {
            pkt.ended |= 1 << seg;
        }
        pkt.answered += 1;
        if status != NETIF_RSP_OKAY && pkt.status == NETIF_RSP_OKAY {
            pkt.status = status;
        }
        if pkt.answered < pkt.nsegs {
            return;
        }
        let Some(pkt) = self.packets[head].take() else {
            return;
        };
        self.free_packets.push(slot.pkt);
        match pkt.status {
            NETIF_RSP_OKAY => {}
            NETIF_RSP_DROPPED => self.stats.tx_dropped.backend_dropped += 1,
            _ => self.stats.tx_dropped.backend_error += 1,
        }
        self.retire(pkt, gt, pool);
    }

    /// Free a finished packet's pages; a page whose grant the backend still
    /// holds goes to quarantine.
    fn retire<P: Platform + Clone>(
        &mut self,
        pkt: TxPacket,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) {
        let TxPacket {
            mut frame,
            grefs,
            ended,
            ..
        } = pkt;
        while let Some(seg) = frame.pop() {
            let i = frame.num_segments();
            let page = seg.into_page();
            if ended & (1 << i) != 0 || gt.end_access(grefs[i]).is_ok() {
                pool.free(page);
            } else {
                self.quarantine.push(
                    Held::Granted {
                        gref: grefs[i],
                        page,
                    },
                    &mut self.stats,
                );
            }
        }
    }

    fn poll_rx<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        rx: &mut FrameQueue,
    ) -> Result<bool, Violation> {
        let ring_err = |e| Violation::Ring(Ring::Rx, e);
        let mut work = false;
        loop {
            work |= self.asm.ingest(&mut conn.rx).map_err(ring_err)? > 0;
            self.deliver(gt, pool, rx)?;
            if self.rx_backlog {
                // The caller polls again (`needs_poll`) once `rx` drains.
                return Ok(work);
            }
            if !conn.rx.final_check_for_responses().map_err(ring_err)? {
                return Ok(work);
            }
        }
    }

    /// Turn parsed packets into frames while `rx` has room.
    fn deliver<P: Platform + Clone>(
        &mut self,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        rx: &mut FrameQueue,
    ) -> Result<(), Violation> {
        loop {
            self.rx_backlog = false;
            if self.asm.unparsed() == 0 {
                return Ok(());
            }
            if rx.is_full() {
                self.rx_backlog = true;
                return Ok(());
            }
            let out = self.asm.next_packet(&self.rx_cfg).map_err(Violation::Rx)?;
            let first = self.asm.parse_index();
            match out {
                RxOutcome::Incomplete => return Ok(()),
                RxOutcome::Dropped { slots, reason } => {
                    self.recycle(first, slots, gt, pool);
                    let d = &mut self.stats.rx_dropped;
                    match reason {
                        RxDrop::Status(_) => d.backend_status += 1,
                        RxDrop::TooManySlots => d.too_many_slots += 1,
                        RxDrop::Empty => d.empty += 1,
                    }
                }
                RxOutcome::Packet(p) => {
                    if let Some(f) = self.take_frame(first, &p, gt, pool) {
                        self.stats.rx_frames += 1;
                        self.stats.rx_bytes += f.len() as u64;
                        if let Err(f) = rx.push(f) {
                            // Unreachable: room was checked above.
                            f.free(pool);
                        }
                    }
                }
            }
            self.asm.consume(out.slots());
        }
    }

    /// Revoke the buffers of `slots` positions from ring index `first`
    /// and free them (a dropped packet).
    fn recycle<P: Platform + Clone>(
        &mut self,
        first: u32,
        slots: usize,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) {
        for k in 0..slots {
            let i = (first.wrapping_add(k as u32) & RX_MASK) as usize;
            if let Some(lent) = self.rx_bufs[i].take() {
                self.release_or_hold(Held::Lent(lent), gt, pool);
            }
        }
    }

    /// Revoke the buffers of packet `p` and build its frame from them (no
    /// copy). `None` if a buffer could not be revoked (quarantined; the
    /// packet is dropped).
    fn take_frame<P: Platform + Clone>(
        &mut self,
        first: u32,
        p: &RxPacket,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) -> Option<Frame> {
        let mut f = Frame::new();
        f.csum = p.csum;
        f.gso = p.gso;
        let mut ok = true;
        let mut data = p.data().iter().peekable();
        for k in 0..p.slots {
            let i = (first.wrapping_add(k as u32) & RX_MASK) as usize;
            let d = data.next_if(|d| usize::from(d.slot) == k);
            let Some(lent) = self.rx_bufs[i].take() else {
                ok = false;
                continue;
            };
            let page = match gt.reclaim(pool, lent) {
                Ok(page) => page,
                Err((lent, _)) => {
                    self.quarantine.push(Held::Lent(lent), &mut self.stats);
                    ok = false;
                    continue;
                }
            };
            match d {
                Some(d) if ok && d.len > 0 => {
                    if let Err((page, _)) = f.push(page, usize::from(d.offset), usize::from(d.len))
                    {
                        pool.free(page);
                        ok = false;
                    }
                }
                _ => pool.free(page),
            }
        }
        if ok {
            Some(f)
        } else {
            f.free(pool);
            self.stats.rx_dropped.page_busy += 1;
            None
        }
    }

    /// Post a zeroed pool page (lent writable) in every free receive slot
    /// whose previous buffer is back. Returns whether any was posted.
    pub(crate) fn refill<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
    ) -> bool {
        let mut pushed = false;
        while !conn.rx.is_full() {
            let at = conn.rx.req_prod_pvt();
            let i = (at & RX_MASK) as usize;
            if self.asm.is_posted(at) || self.rx_bufs[i].is_some() {
                break;
            }
            // Zeroed: the backend may read what it can write, and a pool
            // page may hold another client's packet.
            let Some(page) = pool.alloc_zeroed() else {
                break;
            };
            let lent = match gt.lend_writable(pool, page, conn.backend) {
                Ok(lent) => lent,
                Err((page, _)) => {
                    pool.free(page);
                    break;
                }
            };
            let req = NetifRxRequest {
                id: i as u16,
                pad: 0,
                gref: lent.gref(),
            };
            if conn.rx.push_request(&req).is_err() {
                // Unreachable: the ring is not full.
                self.release_or_hold(Held::Lent(lent), gt, pool);
                break;
            }
            self.rx_bufs[i] = Some(lent);
            self.asm.post(at);
            pushed = true;
        }
        pushed
    }

    // ---- transmit ---------------------------------------------------

    /// Place `frame` in the transmit ring (unpublished). `Err(frame)` when
    /// the ring, the ids or the grant references are short for now: retry
    /// later. Frames that can never be sent are dropped and counted.
    pub(crate) fn send<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        mut frame: Frame,
    ) -> Result<(), Frame> {
        if frame.is_empty() {
            self.stats.tx_dropped.empty += 1;
            frame.free(pool);
            return Ok(());
        }
        let l3 = if frame.csum == Checksum::Partial || frame.gso.is_some() {
            offload::parse_headers(pool, &frame).ok().map(|h| h.l3)
        } else {
            None
        };
        let csum_ok = conn.csum_blank_ok(l3);
        if let Some(g) = frame.gso {
            if !(frame.csum == Checksum::Partial && csum_ok && conn.gso_ok(g.kind)) {
                return self.send_segmented(conn, gt, pool, frame, csum_ok);
            }
        } else if frame.csum == Checksum::Partial && !csum_ok {
            if offload::complete_checksum(pool, &mut frame).is_err() {
                self.stats.tx_dropped.malformed += 1;
                frame.free(pool);
                return Ok(());
            }
            self.stats.tx_csum_completed += 1;
        }
        if frame.num_segments() > 1 && !conn.both.sg {
            let Some(f) = self.linearize(pool, frame) else {
                return Ok(());
            };
            frame = f;
        }
        let first = frame.segment(0).map_or(0, |s| usize::from(s.len()));
        if first < ETH_HLEN && frame.len() >= ETH_HLEN && frame.num_segments() > 1 {
            let Some(f) = self.pull_head(pool, frame) else {
                return Ok(());
            };
            frame = f;
        }
        self.queue(conn, gt, pool, frame)
    }

    /// Linux netback drops a packet whose first slot is shorter than an
    /// Ethernet header: copy the first [`PULL_LEN`] bytes into a page of
    /// their own, followed by the rest of the original segments.
    fn pull_head(&mut self, pool: &mut PagePool, mut frame: Frame) -> Option<Frame> {
        let n = frame.len().min(PULL_LEN);
        let Some(mut head) = pool.alloc() else {
            self.stats.tx_dropped.no_resources += 1;
            frame.free(pool);
            return None;
        };
        frame.read(pool, 0, &mut pool.bytes_mut(&mut head)[..n]);
        let mut segs: [Option<(PoolPage, usize, usize)>; MAX_SEGMENTS] = Default::default();
        for i in (0..frame.num_segments()).rev() {
            if let Some(s) = frame.pop() {
                let (o, l) = (usize::from(s.offset()), usize::from(s.len()));
                segs[i] = Some((s.into_page(), o, l));
            }
        }
        let mut f = Frame::new();
        f.csum = frame.csum;
        f.gso = frame.gso;
        let mut ok = f.push(head, 0, n).map_err(|(p, _)| pool.free(p)).is_ok();
        let mut skip = n;
        for (page, o, l) in segs.into_iter().flatten() {
            if skip >= l || !ok {
                skip -= skip.min(l);
                pool.free(page);
            } else {
                if let Err((page, _)) = f.push(page, o + skip, l - skip) {
                    pool.free(page);
                    ok = false;
                }
                skip = 0;
            }
        }
        if !ok {
            self.stats.tx_dropped.no_resources += 1;
            f.free(pool);
            return None;
        }
        self.stats.tx_head_pulled += 1;
        Some(f)
    }

    /// A backend without GSO (or SG, or the checksum offload the
    /// super-packet needs): cut the frame into segments in software (new
    /// pages; the degraded path) and send those.
    fn send_segmented<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        frame: Frame,
        partial: bool,
    ) -> Result<(), Frame> {
        let seg = match Segmenter::new(pool, &frame, partial) {
            Ok(s) => s,
            Err(_) => {
                self.stats.tx_dropped.malformed += 1;
                frame.free(pool);
                return Ok(());
            }
        };
        let mss = frame.gso.map_or(0, |g| usize::from(g.mss));
        let pages_each = (seg.headers().header_len() + mss).div_ceil(PAGE_SIZE);
        let slots = seg.segments_total() * pages_each;
        if (pages_each > 1 && !conn.both.sg) || slots > TX_RING_SIZE {
            self.stats.tx_dropped.too_big += 1;
            frame.free(pool);
            return Ok(());
        }
        if slots > conn.tx.free_requests() as usize || slots > self.tx.available() {
            return Err(frame);
        }
        let mut staging = core::mem::take(&mut self.staging);
        let r = offload::segment_to_frames(pool, &frame, partial, &mut |f| staging.push(f));
        frame.free(pool);
        if r.is_err() {
            self.stats.tx_dropped.no_resources += 1;
            for f in staging.drain(..) {
                f.free(pool);
            }
        } else {
            self.stats.tx_segmented += 1;
        }
        for f in staging.drain(..) {
            if let Err(f) = self.queue(conn, gt, pool, f) {
                self.stats.tx_dropped.no_resources += 1;
                f.free(pool);
            }
        }
        self.staging = staging;
        Ok(())
    }

    /// Copy a multi-page frame into one page (backend without SG).
    fn linearize(&mut self, pool: &mut PagePool, frame: Frame) -> Option<Frame> {
        let len = frame.len();
        if len > PAGE_SIZE {
            self.stats.tx_dropped.too_big += 1;
            frame.free(pool);
            return None;
        }
        let Some(mut page) = pool.alloc() else {
            self.stats.tx_dropped.no_resources += 1;
            frame.free(pool);
            return None;
        };
        frame.read(pool, 0, &mut pool.bytes_mut(&mut page)[..len]);
        let mut f = Frame::new();
        f.csum = frame.csum;
        f.gso = frame.gso;
        frame.free(pool);
        if let Err((page, _)) = f.push(page, 0, len) {
            pool.free(page);
            self.stats.tx_dropped.too_big += 1;
            return None;
        }
        self.stats.tx_linearized += 1;
        Some(f)
    }

    /// Grant the frame's pages read-only and write its slots.
    fn queue<P: Platform + Clone>(
        &mut self,
        conn: &mut Conn,
        gt: &mut GrantTable<P>,
        pool: &mut PagePool,
        frame: Frame,
    ) -> Result<(), Frame> {
        let n = frame.num_segments();
        let gso = frame.gso;
        let slots = n + usize::from(gso.is_some());
        // A packet holds at least one id until its place is free, so there
        // is a place whenever there are ids (checked all the same).
        if (conn.tx.free_requests() as usize) < slots
            || self.tx.available() < n
            || self.free_packets.is_empty()
        {
            return Err(frame);
        }
        let mut frame = frame;
        scrub(pool, &mut frame);
        let mut gfns = [Gfn(0); MAX_SEGMENTS];
        for (g, s) in gfns.iter_mut().zip(frame.segments()) {
            *g = pool.gfn(s.page());
        }
        let mut grefs = [0 as GrantRef; MAX_SEGMENTS];
        for i in 0..n {
            match gt.grant(conn.backend, gfns[i], true) {
                Ok(r) => grefs[i] = r,
                Err(_) => {
                    // Not published yet, so normally revocable at once.
                    let stuck = grefs[..i].iter().any(|&r| gt.end_access(r).is_err());
                    if stuck {
                        // Someone guessed a reference and mapped it: the
                        // pages cannot be reused.
                        let pkt = TxPacket {
                            frame,
                            grefs,
                            nsegs: n as u8,
                            answered: 0,
                            ended: 0,
                            status: NETIF_RSP_OKAY,
                        };
                        self.stats.tx_dropped.no_resources += 1;
                        self.retire(pkt, gt, pool);
                        return Ok(());
                    }
                    return Err(frame);
                }
            }
        }
        // Cannot fail: checked above.
        let place = self.free_packets.pop().unwrap_or_default();
        let mut ids = [0u16; MAX_SEGMENTS];
        for (i, id) in ids[..n].iter_mut().enumerate() {
            let slot = TxSlot {
                pkt: place,
                seg: i as u8,
            };
            // Cannot fail: availability was checked.
            *id = self.tx.alloc(slot).unwrap_or_default();
        }
        let head = ids[0];
        let mut segs = frame.segments();
        if let Some(s0) = segs.next() {
            let mut flags = tx_csum_flags(frame.csum);
            if n > 1 {
                flags |= NETTXF_MORE_DATA;
            }
            if gso.is_some() {
                flags |= NETTXF_EXTRA_INFO;
            }
            let _ = conn.tx.push_request(&NetifTxRequest {
                gref: grefs[0],
                offset: s0.offset(),
                flags,
                id: head,
                size: frame.len() as u16,
            });
        }
        if let Some(g) = gso {
            let _ = conn.tx.push_request_as(&NetifExtraInfo {
                r#type: XEN_NETIF_EXTRA_TYPE_GSO,
                flags: 0,
                gso: NetifExtraInfoGso {
                    size: g.mss,
                    r#type: match g.kind {
                        GsoType::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
                        GsoType::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
                    },
                    pad: 0,
                    features: 0,
                },
            });
            self.tx.sent_extra();
        }
        for (i, s) in segs.enumerate() {
            let i = i + 1;
            let _ = conn.tx.push_request(&NetifTxRequest {
                gref: grefs[i],
                offset: s.offset(),
                flags: if i + 1 < n { NETTXF_MORE_DATA } else { 0 },
                id: ids[i],
                size: s.len(),
            });
        }
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += frame.len() as u64;
        self.packets[usize::from(place)] = Some(TxPacket {
            frame,
            grefs,
            nsegs: n as u8,
            answered: 0,
            ended: 0,
            status: NETIF_RSP_OKAY,
        });
        Ok(())
    }
}

/// The backend can read the whole page of a read-only grant, not just the
/// segment: clear what lies around each segment (a pool page may hold
/// bytes of an earlier packet, possibly another client's), as far as the
/// page's dirty extent says it may be non-zero.
fn scrub(pool: &mut PagePool, frame: &mut Frame) {
    for i in 0..frame.num_segments() {
        if let Some(s) = frame.segment_mut(i) {
            s.scrub_outside(pool);
        }
    }
}
