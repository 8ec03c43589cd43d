//! `poll`: the client's tx ring → frames, one batched grant copy per poll,
//! and the event-storm accounting.

use alloc::format;

use xen::abi::netif::{NetifTxResponse, NETIF_RSP_NULL, NETIF_RSP_OKAY};
use xen::abi::PAGE_SIZE;
use xen::frame::{Frame, FrameQueue, MAX_SEGMENTS};
use xen::gnttab::{copy_from_grant, grant_copy, GrantError};
use xen::memory::pool::PagePool;
use xen::Platform;

use crate::error::NetbackError;
use crate::netback::{Netback, TxPending};
use crate::tx::{parse_packet, TxKind};
use crate::vif::VifId;

/// Why a tx batch ended.
enum Outcome {
    Done,
    Blocked,
    /// Disconnect: why, and whether the client is hostile (rather than
    /// gone).
    Failed(alloc::string::String, bool),
}

impl<P: Platform + Clone> Netback<P> {
    /// Take the frames the client `id` queued in its tx ring (as many as
    /// `rx` has room for and the pool allows, with one grant-copy
    /// hypercall), answer their slots, and note new rx buffers. A vif that
    /// is not connected is ignored. A client breaking the protocol is
    /// disconnected (see [`NetbackEvent`](crate::NetbackEvent)); that is
    /// not an error of this call.
    pub fn poll(
        &mut self,
        id: VifId,
        pool: &mut PagePool,
        rx: &mut FrameQueue,
    ) -> Result<(), NetbackError> {
        let Some(i) = self.index(id) else {
            return Ok(());
        };
        let (window, limit, now) = (self.cfg.storm_window_ns, self.cfg.storm_wakeups, self.now);
        let Some(c) = self.vifs[i].conn.as_mut() else {
            return Ok(());
        };
        // Clear before looking (evtchn module doc).
        let woke = self.ev.clear_pending(c.port);
        let mut work = false;

        // New rx buffers?
        match c.rx.poll_requests() {
            Ok(_) => {
                let seen = c.rx.req_cons().wrapping_add(c.rx.unconsumed_requests());
                if seen != c.rx_seen {
                    c.rx_seen = seen;
                    work = true;
                }
            }
            Err(e) => {
                self.fail_datapath(i, pool, &format!("rx ring: {e}"));
                return Ok(());
            }
        }

        // Requests?
        let pending = match c.tx.poll_requests() {
            Ok(n) => n,
            Err(e) => {
                self.fail_datapath(i, pool, &format!("tx ring: {e}"));
                return Ok(());
            }
        };
        c.tx_more = false;
        if pending > 0 {
            work = true;
            match self.tx_batch(i, pool, rx) {
                Ok(Outcome::Done) => {
                    let c = self.vifs[i].conn.as_mut().expect("connected");
                    c.tx_blocked = false;
                    match c.tx.final_check_for_requests() {
                        Ok(more) => c.tx_more = more,
                        Err(e) => {
                            self.fail_datapath(i, pool, &format!("tx ring: {e}"));
                            return Ok(());
                        }
                    }
                }
                Ok(Outcome::Blocked) => {
                    let v = &mut self.vifs[i];
                    v.stats.tx_backpressure += 1;
                    v.conn.as_mut().expect("connected").tx_blocked = true;
                }
                Ok(Outcome::Failed(why, hostile)) => {
                    self.fail_datapath_as(i, pool, &why, hostile);
                    return Ok(());
                }
                Err(e) => {
                    // Our hypercall failed as a whole: requests were
                    // consumed and cannot be answered, so the vif goes too.
                    self.fail_datapath_as(i, pool, &format!("{e}"), false);
                    return Err(e);
                }
            }
        } else {
            let c = self.vifs[i].conn.as_mut().expect("connected");
            c.tx_blocked = false;
            match c.tx.final_check_for_requests() {
                Ok(more) => c.tx_more = more,
                Err(e) => {
                    self.fail_datapath(i, pool, &format!("tx ring: {e}"));
                    return Ok(());
                }
            }
        }

        if woke && !work {
            let v = &mut self.vifs[i];
            v.stats.idle_wakeups += 1;
            let c = v.conn.as_mut().expect("connected");
            if now.wrapping_sub(c.storm_start) >= window {
                c.storm_start = now;
                c.idle = 0;
            }
            c.idle += 1;
            if c.idle > limit {
                let why = format!(
                    "event storm: more than {limit} wakeups without work in {} ms",
                    window / 1_000_000
                );
                self.fail_datapath(i, pool, &why);
            }
        }
        Ok(())
    }

    /// Parse, copy and answer one batch of vif `i`'s tx requests.
    fn tx_batch(
        &mut self,
        i: usize,
        pool: &mut PagePool,
        out: &mut FrameQueue,
    ) -> Result<Outcome, NetbackError> {
        let room = out.capacity().saturating_sub(out.len());
        let reserve = self.cfg.pool_reserve + MAX_SEGMENTS;
        let domid = self.vifs[i].info.id.domid;
        let s = &mut self.txs;
        s.ops.clear();
        s.pkts.clear();
        s.rsps.clear();
        debug_assert!(s.pages.is_empty());
        let v = &mut self.vifs[i];
        let c = v.conn.as_mut().expect("connected");
        let offered = c.neg.offered;
        let mut outcome = Outcome::Done;
        while c.tx.unconsumed_requests() > 0 {
            if s.pkts.len() >= room || pool.available() < reserve {
                outcome = Outcome::Blocked;
                break;
            }
            let pkt = match parse_packet(&mut c.tx, offered) {
                Ok(p) => p,
                Err(e) => {
                    outcome = Outcome::Failed(format!("{e}"), true);
                    break;
                }
            };
            // One response per consumed slot, in ring order.
            let data = pkt.data();
            s.rsps.push(NetifTxResponse {
                id: data[0].id,
                status: NETIF_RSP_OKAY,
            });
            for _ in 0..pkt.extras {
                s.rsps.push(NetifTxResponse {
                    id: 0,
                    status: NETIF_RSP_NULL,
                });
            }
            for d in &data[1..] {
                s.rsps.push(NetifTxResponse {
                    id: d.id,
                    status: NETIF_RSP_OKAY,
                });
            }
            if pkt.kind == TxKind::Control {
                v.stats.tx_control += 1;
                continue;
            }
            for d in data {
                let mut page = pool.alloc().expect("pool reserve checked");
                let gfn = pool.gfn_for_write(&mut page, usize::from(d.offset), usize::from(d.len));
                s.ops.push(copy_from_grant(
                    domid, d.gref, d.offset, gfn, d.offset, d.len,
                ));
                s.pages.push(page);
            }
            s.pkts.push(TxPending {
                nslots: data.len() as u8,
                csum: pkt.csum,
                gso: pkt.gso,
            });
        }

        let mut copy = Ok(());
        if !s.ops.is_empty() && matches!(outcome, Outcome::Done | Outcome::Blocked) {
            copy = grant_copy(self.ev.platform(), &mut s.ops);
            v.stats.grant_copy_calls += 1;
            v.stats.copy_ops += s.ops.len() as u64;
        }
        let mut err = Ok(());
        match copy {
            Ok(()) => {}
            Err(GrantError::Status { index, status }) => {
                let op = &s.ops[index];
                outcome = Outcome::Failed(
                    format!(
                        "tx grant copy from gref {} failed: {}",
                        op.source.u,
                        xen::abi::grant_table::status::name(status)
                    ),
                    status != xen::abi::grant_table::status::BAD_DOMAIN,
                );
            }
            Err(e) => {
                outcome = Outcome::Failed(format!("tx grant copy hypercall failed: {e}"), false);
                err = Err(NetbackError::Hypercall(e));
            }
        }
        if let Outcome::Failed(..) = outcome {
            for p in s.pages.drain(..) {
                pool.free(p);
            }
            err?;
            return Ok(outcome);
        }

        // Frames, in order; segments mirror the slots.
        let mut pages = s.pages.drain(..);
        let mut op = 0;
        for p in &s.pkts {
            let mut f = Frame::new();
            f.csum = p.csum;
            f.gso = p.gso;
            let mut ok = true;
            for _ in 0..p.nslots {
                let page = pages.next().expect("one page per op");
                let o = &s.ops[op];
                op += 1;
                debug_assert!(usize::from(o.dest.offset) + usize::from(o.len) <= PAGE_SIZE);
                if let Err((page, _)) = f.push(page, usize::from(o.dest.offset), usize::from(o.len))
                {
                    pool.free(page);
                    ok = false;
                }
            }
            let len = f.len() as u64;
            if !ok {
                f.free(pool);
                continue;
            }
            match out.push(f) {
                Ok(()) => {
                    v.stats.tx_frames += 1;
                    v.stats.tx_bytes += len;
                }
                Err(f) => f.free(pool),
            }
        }
        drop(pages);

        for r in &s.rsps {
            c.tx.push_response(r)
                .expect("a response per consumed request");
        }
        if c.tx.push_responses_and_check_notify() {
            let _ = self.ev.send(c.port);
            v.stats.notifications += 1;
        }
        Ok(outcome)
    }
}
