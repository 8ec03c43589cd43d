//! Pieces for hostile-peer tests on the simulated Xen:
//! - [`RawFront`]: a frontend that does the Linux netfront handshake by
//!   hand and then writes whatever it likes into its rings and xenstore
//!   directory (the randomized hostile client);
//! - [`echo_backend`]: our netback in a domain of its own, sending every
//!   frame back to the vif it came from (the firewall with one rule:
//!   reflect);
//! - [`good_client`]: our netfront in a client domain pushing a verified
//!   stream through the echo backend and checking what comes back, to
//!   prove the other interfaces keep forwarding while one peer misbehaves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen::abi::netif::{NetifRxRequest, NetifTxRequest};
use xen::abi::{DomId, EvtchnPort, GrantRef};
use xen::evtchn::EventChannels;
use xen::frame::FrameQueue;
use xen::gnttab::GrantTable;
use xen::memory::pool::PagePool;
use xen::memory::{Gfn, SharedMem};
use xen::ring::{FrontRing, NetifRx, NetifTx, RingEntry};
use xen::sim::SimDomain;
use xen::store::Xenstore;
use xen::xenbus::{self, XenbusState};
use xen::{GuestMemory, Hypervisor};

use crate::traffic::{Checker, GenConfig, Generator, Sizes};

/// Offset of the first ring entry in a shared ring page.
const ENTRIES: usize = 64;

/// A frontend under the test's full control (see the module doc).
pub struct RawFront {
    /// The domain.
    pub d: SimDomain,
    /// Its event channels.
    pub ev: EventChannels<SimDomain>,
    /// Its xenstore connection.
    pub xs: Xenstore<SimDomain>,
    /// Its grant table.
    pub gt: GrantTable<SimDomain>,
    /// The tx ring page.
    pub tx: SharedMem,
    /// The rx ring page.
    pub rx: SharedMem,
    /// The event channel offered to the backend.
    pub port: EvtchnPort,
    /// Data pages granted read-only (tx) / writable (rx) to the backend.
    pub data: Vec<(Gfn, GrantRef)>,
    /// Our frontend directory.
    pub dir: String,
    /// The backend directory.
    pub backend_dir: String,
    /// The backend domain.
    pub backend: DomId,
}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

impl RawFront {
    /// Connect device `devid` as Linux netfront would, offering
    /// scatter-gather, GSO and csum offload, with `pages` data pages
    /// granted to the backend. Waits (up to 10 s) for the backend to be
    /// Connected.
    pub fn connect(d: SimDomain, devid: u32, pages: usize) -> Result<RawFront, String> {
        let ev = EventChannels::new(d.clone()).map_err(ctx("evtchn"))?;
        let mut xs = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
        let mut gt = GrantTable::new(d.clone(), 4).map_err(ctx("gnttab"))?;
        let me = xs.domid().map_err(ctx("domid"))?;
        let dir = format!("/local/domain/{me}/device/vif/{devid}");
        let backend_dir = xs
            .read_string(&format!("{dir}/backend"))
            .map_err(ctx("backend"))?;
        let backend: DomId = xs
            .read_string(&format!("{dir}/backend-id"))
            .map_err(ctx("backend-id"))?
            .parse()
            .map_err(ctx("backend-id"))?;
        let deadline = d.now_ns() + 10_000_000_000;
        xs.watch(&xenbus::state_path(&backend_dir), "raw-be")
            .map_err(ctx("watch"))?;
        while xenbus::read_state(&mut xs, &backend_dir).map_err(ctx("state"))?
            != XenbusState::InitWait
        {
            if xs
                .next_event_for("raw-be", Some(deadline))
                .map_err(ctx("wait"))?
                .is_none()
            {
                return Err("backend never reached InitWait".into());
            }
        }
        let rings = d.alloc_pages(2).ok_or("no ring pages")?;
        let tx = d.page(rings).ok_or("tx page")?;
        let rx = d.page(rings.add(1)).ok_or("rx page")?;
        FrontRing::<NetifTx>::init(tx);
        FrontRing::<NetifRx>::init(rx);
        let tx_ref = gt.grant(backend, rings, false).map_err(ctx("grant"))?;
        let rx_ref = gt
            .grant(backend, rings.add(1), false)
            .map_err(ctx("grant"))?;
        let port = ev.alloc_unbound(backend).map_err(ctx("alloc_unbound"))?;
        let mut data = Vec::new();
        let base = d.alloc_pages(pages).ok_or("no data pages")?;
        for i in 0..pages as u64 {
            let g = gt
                .grant(backend, base.add(i), false)
                .map_err(ctx("grant data"))?;
            data.push((base.add(i), g));
        }
        xs.transaction(|t| {
            t.write(&format!("{dir}/tx-ring-ref"), tx_ref.to_string())?;
            t.write(&format!("{dir}/rx-ring-ref"), rx_ref.to_string())?;
            t.write(&format!("{dir}/event-channel"), port.to_string())?;
            for k in [
                "request-rx-copy",
                "feature-rx-notify",
                "feature-sg",
                "feature-gso-tcpv4",
                "feature-gso-tcpv6",
                "feature-ipv6-csum-offload",
            ] {
                t.write(&format!("{dir}/{k}"), "1")?;
            }
            t.write(&xenbus::state_path(&dir), XenbusState::Connected.as_value())
        })
        .map_err(ctx("publish"))?;
        while xenbus::read_state(&mut xs, &backend_dir).map_err(ctx("state"))?
            != XenbusState::Connected
        {
            if xs
                .next_event_for("raw-be", Some(deadline))
                .map_err(ctx("wait"))?
                .is_none()
            {
                return Err("backend never connected".into());
            }
        }
        Ok(RawFront {
            d,
            ev,
            xs,
            gt,
            tx,
            rx,
            port,
            data,
            dir,
            backend_dir,
            backend,
        })
    }

    /// Write a tx request into slot `idx` (masked) without publishing.
    pub fn put_tx(&self, idx: u32, req: &NetifTxRequest) {
        let off = ENTRIES + (idx as usize % 256) * 12;
        req.write(&self.tx, off);
    }

    /// Write an rx request into slot `idx` (masked) without publishing.
    pub fn put_rx(&self, idx: u32, req: &NetifRxRequest) {
        let off = ENTRIES + (idx as usize % 256) * 8;
        req.write(&self.rx, off);
    }

    /// Set the tx ring's `req_prod` to anything.
    pub fn set_tx_prod(&self, v: u32) {
        xen::memory::wmb();
        self.tx.write_u32(0, v);
    }

    /// Set the rx ring's `req_prod` to anything.
    pub fn set_rx_prod(&self, v: u32) {
        xen::memory::wmb();
        self.rx.write_u32(0, v);
    }

    /// The tx ring's `req_prod` as last written.
    pub fn tx_prod(&self) -> u32 {
        self.tx.read_u32(0)
    }

    /// The rx ring's `req_prod` as last written.
    pub fn rx_prod(&self) -> u32 {
        self.rx.read_u32(0)
    }

    /// Signal the backend (errors ignored: the port may be closed).
    pub fn notify(&self) {
        let _ = self.ev.send(self.port);
    }

    /// Write `value` at `key` in our frontend directory.
    pub fn write_key(&mut self, key: &str, value: &str) {
        let _ = self.xs.write(&format!("{}/{key}", self.dir), value);
    }

    /// The backend's state as we can read it.
    pub fn backend_state(&mut self) -> XenbusState {
        xenbus::read_state(&mut self.xs, &self.backend_dir).unwrap_or(XenbusState::Unknown)
    }
}

/// What the echo backend did.
#[derive(Debug, Default)]
pub struct EchoStats {
    /// Frames reflected.
    pub frames: AtomicU64,
    /// Vifs that connected.
    pub connected: AtomicU64,
    /// Vifs that went away.
    pub disconnected: AtomicU64,
}

/// Our netback reflecting every frame to its sender until `stop`.
pub fn echo_backend(
    d: SimDomain,
    features: netback::Features,
    stop: Arc<AtomicBool>,
    stats: Arc<EchoStats>,
) -> Result<(), String> {
    let ev = EventChannels::new(d.clone()).map_err(ctx("evtchn"))?;
    let mut xs = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
    let mut pool = PagePool::new(&d, 2048).map_err(ctx("pool"))?;
    let mut nb = netback::Netback::new(
        ev.clone(),
        netback::NetbackConfig {
            features,
            ..Default::default()
        },
    );
    nb.start(&mut xs).map_err(ctx("netback start"))?;
    let mut vifs: Vec<netback::VifId> = Vec::new();
    let mut rxq = FrameQueue::with_capacity(256);
    let mut ports = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        xs.handle_notification().map_err(ctx("xenstore"))?;
        while let Some(e) = xs.poll_event() {
            nb.handle_watch(&mut xs, &mut pool, &e);
        }
        while let Some(e) = nb.next_event() {
            match e {
                netback::NetbackEvent::Connected(id) => {
                    vifs.push(id);
                    stats.connected.fetch_add(1, Ordering::SeqCst);
                }
                netback::NetbackEvent::Disconnected(id) => {
                    vifs.retain(|v| *v != id);
                    stats.disconnected.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        nb.tick(&mut xs, &mut pool, d.now_ns());
        let mut moved = false;
        for &id in &vifs {
            // A hostile vif may be disconnected inside poll: that is its
            // problem, not an error of the loop.
            let _ = nb.poll(id, &mut pool, &mut rxq);
            while let Some(f) = rxq.pop() {
                moved = true;
                stats.frames.fetch_add(1, Ordering::Relaxed);
                if let Err(f) = nb.send(id, &mut pool, f) {
                    f.free(&mut pool);
                }
            }
        }
        nb.flush(&mut pool);
        let busy = vifs.iter().any(|&id| nb.needs_poll(id));
        if !moved && !busy {
            ports.clear();
            ports.push(xs.port());
            nb.ports(&mut ports);
            let _ = ev.wait(&ports, Some(d.now_ns() + 2_000_000));
        }
    }
    Ok(())
}

/// Our netfront pushing `frames` verified frames through the echo backend
/// and checking every echo; returns the frames checked.
pub fn good_client(d: SimDomain, frames: u64, timeout: Duration) -> Result<u64, String> {
    let ev = EventChannels::new(d.clone()).map_err(ctx("evtchn"))?;
    let mut xs = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
    let mut gt = GrantTable::new(d.clone(), 8).map_err(ctx("gnttab"))?;
    let mut pool = PagePool::new(&d, 1024).map_err(ctx("pool"))?;
    let mut nf = netfront::Netfront::new(
        ev.clone(),
        netfront::NetfrontConfig {
            devid: 0,
            features: netfront::Features {
                sg: true,
                gso_tcpv4: true,
                gso_tcpv6: true,
                csum_offload: true,
                ipv6_csum_offload: true,
            },
        },
    );
    nf.start(&mut xs).map_err(ctx("netfront start"))?;
    let mut gen = Generator::new(GenConfig {
        sizes: Sizes::LogUniform(60, 20000),
        max_len: 65535,
        gso: true,
        partial_csum: true,
        v6_every: 4,
        seed: u64::from(d.domid()),
    });
    let mut checker = Checker::new();
    let mut rxq = FrameQueue::with_capacity(256);
    let mut pending = None;
    let end = Instant::now() + timeout;
    while checker.stats.frames < frames {
        if Instant::now() > end {
            return Err(format!(
                "good client: {} of {frames} echoes after {timeout:?} (link {:?})",
                checker.stats.frames,
                nf.link()
            ));
        }
        xs.handle_notification().map_err(ctx("xenstore"))?;
        while let Some(e) = xs.poll_event() {
            nf.handle_watch(&mut xs, &mut gt, &mut pool, &e);
        }
        nf.tick(&mut xs, &mut gt, &mut pool);
        let mut moved = false;
        if nf.link() == netfront::LinkState::Up {
            nf.poll(&mut gt, &mut pool, &mut rxq)
                .map_err(|e| format!("good client poll: {e}"))?;
            while let Some(f) = rxq.pop() {
                let r = checker.check(&pool, &f);
                f.free(&mut pool);
                r.map_err(|e| format!("good client echo: {e}"))?;
                moved = true;
            }
            // Keep a bounded window in flight.
            while gen.frames < checker.stats.frames + 64 && pool.available() > 200 {
                let f = match pending.take() {
                    Some(f) => f,
                    None => match gen.next(&mut pool) {
                        Some(f) => f,
                        None => break,
                    },
                };
                if let Err(f) = nf.send(&mut gt, &mut pool, f) {
                    pending = Some(f);
                    break;
                }
                moved = true;
            }
            nf.flush();
        }
        if !moved && !nf.needs_poll() {
            let mut ports = vec![xs.port()];
            ports.extend(nf.port());
            let _ = ev.wait(&ports, Some(d.now_ns() + 2_000_000));
        }
    }
    Ok(checker.stats.frames)
}
