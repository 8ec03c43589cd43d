//! `flush`: queued frames → the clients' posted rx buffers, all vifs'
//! grant copies in one hypercall (more only if the pre-sized batch fills),
//! at most one notification per vif.

use alloc::format;

use xen::abi::grant_table::status;
use xen::abi::netif::{
    NetifExtraInfo, NetifExtraInfoGso, NetifRxRequest, NetifRxResponse, NETIF_RSP_ERROR,
    NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, XEN_NETIF_EXTRA_TYPE_GSO,
    XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
};
use xen::abi::PAGE_SIZE;
use xen::frame::offload::{complete_checksum, parse_headers, Segmenter, L3, MAX_HEADER_LEN};
use xen::frame::{Checksum, Frame, Gso, GsoType, MAX_FRAME_LEN, MAX_SEGMENTS};
use xen::gnttab::{copy_to_grant, grant_copy, GrantError};
use xen::memory::pool::PagePool;
use xen::Platform;

use crate::netback::{Netback, RxPkt};
use crate::rx::{csum_flags, decide, slot_bytes, slots_for, Delivery, DropReason, Packer};
use crate::vif::{RxRsp, SegState};

/// Most data slots of one packet (65535 bytes, densely packed).
const MAX_PKT_SLOTS: usize = MAX_FRAME_LEN.div_ceil(PAGE_SIZE);
/// Most copy operations one packet needs: one per source piece plus one
/// per slot boundary it crosses, plus a header.
const MAX_PKT_OPS: usize = 1 + MAX_SEGMENTS + MAX_PKT_SLOTS;

/// Whether a vif's planning can go on.
enum Step {
    Progress,
    Stalled,
}

impl<P: Platform + Clone> Netback<P> {
    /// Copy queued frames into every client's posted rx buffers: one
    /// grant-copy hypercall for all vifs (more only if the pre-sized batch
    /// fills), responses in the slots of the requests they answer, at most
    /// one notification per vif. Frames go back to `pool` after their copy.
    /// A client whose buffers cannot be copied into is disconnected.
    pub fn flush(&mut self, pool: &mut PagePool) {
        for i in 0..self.vifs.len() {
            let busy = self.vifs[i]
                .conn
                .as_ref()
                .is_some_and(|c| c.failed.is_none() && (!c.queue.is_empty() || c.seg.is_some()));
            if busy {
                self.plan_vif(i, pool);
            }
        }
        self.issue(pool);
        for v in &mut self.vifs {
            let Some(c) = v.conn.as_mut() else { continue };
            c.rx_room = core::mem::take(&mut c.rx_refused) && !c.queue.is_full();
            if core::mem::take(&mut c.unpublished) && c.rx.push_responses_and_check_notify() {
                let _ = self.ev.send(c.port);
                v.stats.notifications += 1;
            }
        }
        for i in 0..self.vifs.len() {
            if let Some((why, hostile)) = self.vifs[i].conn.as_mut().and_then(|c| c.failed.take()) {
                self.fail_datapath_as(i, pool, &why, hostile);
            }
        }
    }

    fn batch_full(&self) -> bool {
        let b = &self.batch;
        b.ops.capacity() - b.ops.len() < MAX_PKT_OPS
            || b.pkts.len() == b.pkts.capacity()
            || b.done.len() == b.done.capacity()
            || (b.scratch.len() == b.scratch.capacity()
                && b.scratch_off + MAX_HEADER_LEN > PAGE_SIZE)
    }

    /// Plan vif `i`'s queued frames into the batch while its posted
    /// buffers last.
    fn plan_vif(&mut self, i: usize, pool: &mut PagePool) {
        loop {
            if self.batch_full() {
                self.issue(pool);
            }
            let v = &mut self.vifs[i];
            let Some(c) = v.conn.as_mut() else { return };
            if c.failed.is_some() {
                return;
            }
            if c.seg.is_some() {
                match self.emit_segment(i, pool) {
                    Step::Progress => continue,
                    Step::Stalled => return,
                }
            }
            let Some(front) = c.queue.front() else { return };
            let peer = c.neg.peer;
            let len = front.len();
            let v6 = if front.csum == Checksum::Partial
                && front.gso.is_none()
                && peer.partial_depends_on_l3()
            {
                parse_headers(pool, front).ok().map(|h| h.l3 == L3::V6)
            } else {
                None
            };
            match decide(len, front.csum, front.gso, v6, &peer) {
                Delivery::Drop(r) => {
                    let f = c.queue.pop().expect("front exists");
                    f.free(pool);
                    count_drop(&mut v.stats, r);
                }
                Delivery::Complete { gso } => {
                    if !self.ensure_slots(i, slots_for(len) + usize::from(gso.is_some())) {
                        return;
                    }
                    let v = &mut self.vifs[i];
                    let c = v.conn.as_mut().expect("connected");
                    let mut f = c.queue.pop().expect("front exists");
                    match complete_checksum(pool, &mut f) {
                        Ok(()) => {
                            v.stats.rx_csum_completed += 1;
                            self.emit_whole(i, pool, f, NETRXF_DATA_VALIDATED, gso);
                        }
                        Err(_) => {
                            f.free(pool);
                            v.stats.rx_drops.checksum += 1;
                        }
                    }
                }
                Delivery::Whole { flags, gso } => {
                    if !self.ensure_slots(i, slots_for(len) + usize::from(gso.is_some())) {
                        return;
                    }
                    let c = self.vifs[i].conn.as_mut().expect("connected");
                    let f = c.queue.pop().expect("front exists");
                    self.emit_whole(i, pool, f, flags, gso);
                }
                Delivery::Segment { partial } => {
                    let f = c.queue.pop().expect("front exists");
                    let seg = match Segmenter::new(pool, &f, partial) {
                        Ok(s) => s,
                        Err(_) => {
                            f.free(pool);
                            v.stats.rx_drops.segmentation += 1;
                            continue;
                        }
                    };
                    let h = *seg.headers();
                    let mss = usize::from(f.gso.map_or(1, |g| g.mss));
                    let st = SegState {
                        left: seg.segments_total(),
                        seg,
                        frame: f,
                        partial,
                        emitted: 0,
                        header_len: h.header_len(),
                        payload_len: h.payload_len(),
                        mss,
                    };
                    // The first segment is the longest.
                    let first = st.next_len();
                    if first > MAX_FRAME_LEN || (first > PAGE_SIZE && !peer.sg) {
                        st.frame.free(pool);
                        v.stats.rx_drops.too_big += 1;
                        continue;
                    }
                    v.stats.rx_segmented += 1;
                    c.seg = Some(st);
                }
            }
        }
    }

    /// True if vif `i` has `need` posted rx requests; otherwise asks to be
    /// notified when the client has posted `need` (not merely one more:
    /// with some already posted, `req_cons + 1` is an event index the
    /// client has passed, and its next refill would not notify).
    fn ensure_slots(&mut self, i: usize, need: usize) -> bool {
        let c = self.vifs[i].conn.as_mut().expect("connected");
        if c.rx.unconsumed_requests() as usize >= need {
            return true;
        }
        match c.rx.final_check_for_requests_min(need as u32) {
            Ok(ok) => ok,
            Err(e) => {
                c.failed = Some((format!("rx ring: {e}"), true));
                false
            }
        }
    }

    /// Put a whole frame into the batch (its rx requests are there).
    fn emit_whole(&mut self, i: usize, pool: &PagePool, f: Frame, flags: u16, gso: Option<Gso>) {
        let domid = self.vifs[i].info.id.domid;
        let c = self.vifs[i].conn.as_mut().expect("connected");
        let b = &mut self.batch;
        let len = f.len();
        let n = slots_for(len);
        let mut reqs = [NetifRxRequest::default(); MAX_PKT_SLOTS];
        reqs[0] = c.rx.next_request().expect("slots ensured");
        if gso.is_some() {
            // The extra's slot: its buffer stays unused (the frontend
            // reposts it).
            c.rx.next_request().expect("slots ensured");
        }
        for r in reqs.iter_mut().take(n).skip(1) {
            *r = c.rx.next_request().expect("slots ensured");
        }
        let op_start = b.ops.len();
        let mut packer = Packer::new();
        for s in f.segments() {
            let (gfn, off) = (pool.gfn(s.page()), s.offset());
            packer.place(usize::from(s.len()), |slot, doff, skip, m| {
                b.ops.push(copy_to_grant(
                    gfn,
                    off + skip as u16,
                    domid,
                    reqs[slot].gref,
                    doff,
                    m,
                ));
            });
        }
        let rsp_start = c.rsps.len();
        for (k, r) in reqs.iter().enumerate().take(n) {
            let mut fl = if k + 1 < n { NETRXF_MORE_DATA } else { 0 };
            if k == 0 {
                fl |= flags;
                if gso.is_some() {
                    fl |= NETRXF_EXTRA_INFO;
                }
            }
            c.rsps.push(RxRsp::Data(NetifRxResponse {
                id: r.id,
                offset: 0,
                flags: fl,
                status: slot_bytes(len, k) as i16,
            }));
            if k == 0 {
                if let Some(g) = gso {
                    c.rsps.push(RxRsp::Extra(gso_extra(g)));
                }
            }
        }
        b.pkts.push(RxPkt {
            vif: i,
            rsp_start,
            nrsp: c.rsps.len() - rsp_start,
            op_start,
            op_end: b.ops.len(),
            bytes: len,
        });
        b.done.push(f);
    }

    /// Put the next software segment of vif `i`'s GSO frame into the batch.
    fn emit_segment(&mut self, i: usize, pool: &mut PagePool) -> Step {
        let domid = self.vifs[i].info.id.domid;
        let c = self.vifs[i].conn.as_mut().expect("connected");
        let st = c.seg.as_mut().expect("segmenting");
        if st.left == 0 {
            let st = c.seg.take().expect("segmenting");
            self.batch.done.push(st.frame);
            return Step::Progress;
        }
        let n = slots_for(st.next_len());
        if !self.ensure_slots(i, n) {
            return Step::Stalled;
        }
        let b = &mut self.batch;
        if b.scratch.is_empty() || b.scratch_off + MAX_HEADER_LEN > PAGE_SIZE {
            let Some(p) = pool.alloc() else {
                return Step::Stalled;
            };
            b.scratch.push(p);
            b.scratch_off = 0;
        }
        let hoff = b.scratch_off;
        b.scratch_off += MAX_HEADER_LEN;
        let v = &mut self.vifs[i];
        let c = v.conn.as_mut().expect("connected");
        let st = c.seg.as_mut().expect("segmenting");
        let page = b.scratch.last_mut().expect("scratch page");
        let hdr: &mut [u8; MAX_HEADER_LEN] = (&mut pool.bytes_mut(page)
            [hoff..hoff + MAX_HEADER_LEN])
            .try_into()
            .expect("header slot size");
        let plan = st.seg.next(pool, &st.frame, hdr);
        let plan = match plan {
            Some(p) if slots_for(p.len()) <= n => p,
            // Cannot happen for the frame given to the segmenter;
            // reported as a drop rather than assumed.
            _ => {
                let st = c.seg.take().expect("segmenting");
                b.done.push(st.frame);
                v.stats.rx_drops.segmentation += 1;
                return Step::Progress;
            }
        };
        st.left -= 1;
        st.emitted += plan.payload_len;
        let hgfn = pool.gfn(b.scratch.last().expect("scratch page"));
        let mut reqs = [NetifRxRequest::default(); MAX_PKT_SLOTS];
        for r in reqs.iter_mut().take(n) {
            *r = c.rx.next_request().expect("slots ensured");
        }
        let op_start = b.ops.len();
        let mut packer = Packer::new();
        packer.place(plan.header_len, |slot, doff, skip, m| {
            b.ops.push(copy_to_grant(
                hgfn,
                (hoff + skip) as u16,
                domid,
                reqs[slot].gref,
                doff,
                m,
            ));
        });
        for r in plan.ranges() {
            let Some(s) = st.frame.segment(usize::from(r.segment)) else {
                continue;
            };
            let (gfn, off) = (pool.gfn(s.page()), s.offset() + r.offset);
            packer.place(usize::from(r.len), |slot, doff, skip, m| {
                b.ops.push(copy_to_grant(
                    gfn,
                    off + skip as u16,
                    domid,
                    reqs[slot].gref,
                    doff,
                    m,
                ));
            });
        }
        let len = plan.len();
        let flags = csum_flags(if st.partial {
            Checksum::Partial
        } else {
            Checksum::Validated
        });
        let rsp_start = c.rsps.len();
        for (k, r) in reqs.iter().enumerate().take(n) {
            let mut fl = if k + 1 < n { NETRXF_MORE_DATA } else { 0 };
            if k == 0 {
                fl |= flags;
            }
            c.rsps.push(RxRsp::Data(NetifRxResponse {
                id: r.id,
                offset: 0,
                flags: fl,
                status: slot_bytes(len, k) as i16,
            }));
        }
        b.pkts.push(RxPkt {
            vif: i,
            rsp_start,
            nrsp: c.rsps.len() - rsp_start,
            op_start,
            op_end: b.ops.len(),
            bytes: len,
        });
        if st.left == 0 {
            let st = c.seg.take().expect("segmenting");
            b.done.push(st.frame);
        }
        Step::Progress
    }

    /// Issue the batch: one hypercall, then responses (errors for packets
    /// whose copies failed) into the rings, frames and header pages back
    /// to the pool.
    fn issue(&mut self, pool: &mut PagePool) {
        let b = &mut self.batch;
        let r = grant_copy(self.ev.platform(), &mut b.ops);
        let all_failed = match r {
            Ok(()) | Err(GrantError::Status { .. }) => false,
            Err(e) => {
                log::error!("netback: rx grant copy hypercall failed: {e}");
                true
            }
        };
        let mut last_vif = usize::MAX;
        for p in &b.pkts {
            let v = &mut self.vifs[p.vif];
            let Some(c) = v.conn.as_mut() else { continue };
            if p.vif != last_vif && p.op_end > p.op_start {
                v.stats.grant_copy_calls += 1;
                last_vif = p.vif;
            }
            let ops = &b.ops[p.op_start..p.op_end];
            v.stats.copy_ops += ops.len() as u64;
            let bad = ops.iter().find(|o| o.status != status::OKAY);
            if all_failed || bad.is_some() {
                for r in &mut c.rsps[p.rsp_start..p.rsp_start + p.nrsp] {
                    if let RxRsp::Data(d) = r {
                        d.status = NETIF_RSP_ERROR;
                    }
                }
                v.stats.rx_drops.copy_failed += 1;
                if let (Some(o), None) = (bad, &c.failed) {
                    if !all_failed {
                        c.failed = Some((
                            format!(
                                "rx grant copy into gref {} failed: {}",
                                o.dest.u,
                                status::name(o.status)
                            ),
                            o.status != status::BAD_DOMAIN,
                        ));
                    }
                }
            } else {
                v.stats.rx_frames += 1;
                v.stats.rx_bytes += p.bytes as u64;
                c.rx_progress = true;
            }
        }
        for v in &mut self.vifs {
            let Some(c) = v.conn.as_mut() else { continue };
            if c.rsps.is_empty() {
                continue;
            }
            for r in c.rsps.drain(..) {
                let pushed = match r {
                    RxRsp::Data(d) => c.rx.push_response(&d),
                    RxRsp::Extra(e) => c.rx.push_response_as(&e),
                };
                pushed.expect("a response per consumed request");
            }
            c.unpublished = true;
        }
        for f in b.done.drain(..) {
            f.free(pool);
        }
        for p in b.scratch.drain(..) {
            pool.free(p);
        }
        b.scratch_off = 0;
        b.ops.clear();
        b.pkts.clear();
    }
}

fn gso_extra(g: Gso) -> NetifExtraInfo {
    NetifExtraInfo {
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
    }
}

fn count_drop(s: &mut crate::stats::Stats, r: DropReason) {
    match r {
        DropReason::TooBig => s.rx_drops.too_big += 1,
        DropReason::Checksum => s.rx_drops.checksum += 1,
        DropReason::Segmentation => s.rx_drops.segmentation += 1,
        DropReason::Empty => s.rx_drops.empty += 1,
    }
}
