//! [`Vchan`]: an [`Endpoint`] wired to a guest's event channels, grant
//! table and xenstore, set up and torn down as libxenvchan does.
//!
//! # Server (`libxenvchan_server_init`)
//! Allocate an unbound port for the client; allocate, zero and grant the
//! control page (header: orders, `cli_live = 2`, `srv_live = 1`,
//! `cli_notify = WRITE`); allocate and grant the pages of each ring of
//! order >= 12, listing their refs (left first); publish `ring-ref` and
//! `event-channel` in one transaction. The server may write at once; the
//! client shows up as `cli_live` turning 1 (and an event).
//!
//! # Client (`libxenvchan_client_init`)
//! Wait for both keys; bind the port; map the control page; read and check
//! the orders; map the left ring's pages writable and the right ring's
//! read-only; set `cli_live = 1` and `srv_notify = WRITE`; notify.
//!
//! # Close
//! Either side sets its liveness byte to 0 and notifies the peer, as
//! libxenvchan's close (and, for a process that dies, the kernel's unmap
//! notification) does. A client also unmaps everything. A server's pages
//! may still be mapped by the client: it cannot take them back until the
//! client unmaps, so [`Vchan::close`] hands them over in a [`Closed`],
//! whose [`Closed::release`] revokes what it can; a page still mapped stays
//! granted and out of circulation. [`Vchan::close_and_release`] does both,
//! waiting for the client's unmap (it notifies after unmapping) until a
//! deadline.
//!
//! # Waiting
//! [`Vchan::read`] and [`Vchan::write`] never block. After a short read or
//! write the endpoint has asked the peer for an event (see
//! [`crate::endpoint`]), so the caller may sleep in [`Vchan::wait`] (or its
//! own event loop, on [`Vchan::port`]) and retry. `wait` clears the port's
//! pending bit after waking, before the caller looks at the rings again,
//! the race-free order of [`xen::evtchn`].

use alloc::string::String;

use xen::abi::event_channel::EVTCHNSTAT_INTERDOMAIN;
use xen::abi::{DomId, EvtchnPort};
use xen::evtchn::{EventChannels, Wake};
use xen::gnttab::GrantTable;
use xen::store::Xenstore;
use xen::Platform;

pub use crate::closed::Closed;
use crate::closed::{remove_dir, Dir};
use crate::endpoint::{Endpoint, PeerState, Role};
use crate::error::VchanError;
use crate::layout::RingOrders;
use crate::rendezvous::{self, RendezvousPath};
use crate::setup::{build_server_pages, map_client_pages, Mappings};

/// How long blocking helpers sleep before re-checking that the peer's end
/// of the event channel still exists (a peer domain that dies sends no
/// event): 1 s.
pub const LIVENESS_POLL_NS: u64 = 1_000_000_000;

#[derive(Debug)]
enum Side {
    Server(Closed),
    Client(Mappings),
}

/// A libxenvchan-compatible byte stream to another domain (see the module
/// doc). Dropped without [`Vchan::close`], it marks itself closed and
/// notifies the peer (as the kernel does for a dead libxenvchan process);
/// a client unmaps, a server leaks its pages.
pub struct Vchan<P: Platform + Clone> {
    ev: EventChannels<P>,
    port: EvtchnPort,
    peer: DomId,
    orders: RingOrders,
    ep: Endpoint,
    /// `None` once closed.
    side: Option<Side>,
    /// The peer's end of the event channel was found gone.
    peer_gone: bool,
    /// A notification that failed after data had moved: reported by the
    /// next operation rather than hiding the bytes that moved.
    deferred: Option<VchanError>,
}

impl<P: Platform + Clone> core::fmt::Debug for Vchan<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vchan")
            .field("role", &self.ep.role())
            .field("peer", &self.peer)
            .field("port", &self.port)
            .field("orders", &self.orders)
            .finish_non_exhaustive()
    }
}

impl<P: Platform + Clone> Vchan<P> {
    /// Serve a vchan to domain `client`, published under the xenstore
    /// directory `dir` (absolute, or relative to our home), with rings of
    /// at least `read_min` bytes (client to server, the left ring) and
    /// `write_min` bytes (server to client); orders as
    /// [`RingOrders::for_server`]. Returns at once: the server may write
    /// before the client connects ([`Vchan::wait_connected`]).
    pub fn server(
        ev: &EventChannels<P>,
        gnttab: &mut GrantTable<P>,
        store: &mut Xenstore<P>,
        client: DomId,
        dir: &str,
        read_min: usize,
        write_min: usize,
    ) -> Result<Vchan<P>, VchanError> {
        Self::server_in(ev, gnttab, store, client, dir, None, read_min, write_min)
    }

    /// [`Vchan::server`] at the Qubes path for `client` and `port`
    /// (`data/vchan/<client>/<port>`, relative to our home, as
    /// `libvchan_server_init`). Closing also prunes `data/vchan/<client>`
    /// if it became empty.
    pub fn server_qubes(
        ev: &EventChannels<P>,
        gnttab: &mut GrantTable<P>,
        store: &mut Xenstore<P>,
        client: DomId,
        port: u32,
        read_min: usize,
        write_min: usize,
    ) -> Result<Vchan<P>, VchanError> {
        let path = RendezvousPath {
            server: store.domid()?,
            client,
            port,
        };
        let parent = path.client_parent();
        Self::server_in(
            ev,
            gnttab,
            store,
            client,
            &path.relative(),
            Some(parent),
            read_min,
            write_min,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn server_in(
        ev: &EventChannels<P>,
        gnttab: &mut GrantTable<P>,
        store: &mut Xenstore<P>,
        client: DomId,
        dir: &str,
        prune_parent: Option<String>,
        read_min: usize,
        write_min: usize,
    ) -> Result<Vchan<P>, VchanError> {
        let orders = RingOrders::for_server(read_min, write_min)?;
        let me = store.domid()?;
        let port = ev.alloc_unbound(client)?;
        let mut held = Closed::default();
        let built = build_server_pages(ev.platform(), gnttab, client, orders, &mut held).and_then(
            |(ring_ref, ep)| {
                rendezvous::publish(store, dir, me, client, ring_ref, port)?;
                Ok(ep)
            },
        );
        let ep = match built {
            Ok(ep) => ep,
            Err(e) => {
                // Nothing was published or mapped: take it all back.
                if let Err(e2) = held.release_grants(gnttab) {
                    log::warn!("vchan: cleanup after failed server setup: {e2}");
                }
                let _ = ev.close(port);
                return Err(e);
            }
        };
        held.dirs.push(Dir {
            path: dir.into(),
            prune_parent,
        });
        Ok(Vchan {
            ev: ev.clone(),
            port,
            peer: client,
            orders,
            ep,
            side: Some(Side::Server(held)),
            peer_gone: false,
            deferred: None,
        })
    }

    /// Connect to the vchan domain `server` publishes under the xenstore
    /// directory `dir`, waiting for it until Xen time `deadline` (ns;
    /// `None` = forever).
    pub fn client(
        ev: &EventChannels<P>,
        store: &mut Xenstore<P>,
        server: DomId,
        dir: &str,
        deadline: Option<u64>,
    ) -> Result<Vchan<P>, VchanError> {
        let p = ev.platform().clone();
        let (ring_ref, remote_port) =
            rendezvous::wait_for_keys(store, || p.now_ns(), dir, deadline)?;
        let port = ev.bind_interdomain(server, remote_port)?;
        let mut maps = Mappings::default();
        match map_client_pages(&p, server, ring_ref, &mut maps) {
            Ok((orders, ep)) => {
                ep.client_connect();
                let mut v = Vchan {
                    ev: ev.clone(),
                    port,
                    peer: server,
                    orders,
                    ep,
                    side: Some(Side::Client(maps)),
                    peer_gone: false,
                    deferred: None,
                };
                v.notify();
                Ok(v)
            }
            Err(e) => {
                if let Err(e2) = maps.unmap(&p) {
                    log::warn!("vchan: cleanup after failed client setup: {e2}");
                }
                let _ = ev.close(port);
                Err(e)
            }
        }
    }

    /// [`Vchan::client`] at the Qubes path for our domid and `port`
    /// (`/local/domain/<server>/data/vchan/<our domid>/<port>`).
    pub fn client_qubes(
        ev: &EventChannels<P>,
        store: &mut Xenstore<P>,
        server: DomId,
        port: u32,
        deadline: Option<u64>,
    ) -> Result<Vchan<P>, VchanError> {
        let me = store.domid()?;
        let dir = RendezvousPath {
            server,
            client: me,
            port,
        }
        .absolute();
        Self::client(ev, store, server, &dir, deadline)
    }

    // ---- state ------------------------------------------------------------

    /// Our role.
    pub fn role(&self) -> Role {
        self.ep.role()
    }

    /// The peer domain.
    pub fn peer(&self) -> DomId {
        self.peer
    }

    /// Our event channel port: the peer signals it when it wrote or read
    /// what we asked about (for an event loop's wait set). An event loop
    /// that sees it pending clears its pending bit
    /// ([`EventChannels::clear_pending`]) *before* calling
    /// [`Vchan::read`]/[`Vchan::write`] again, as [`Vchan::wait`] does.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// The ring orders.
    pub fn orders(&self) -> RingOrders {
        self.orders
    }

    /// The sans-IO endpoint (for inspection).
    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// The peer's state from its liveness byte (and what
    /// [`Vchan::check_peer`] found).
    pub fn peer_state(&self) -> PeerState {
        if self.side.is_none() || self.peer_gone {
            return PeerState::Closed;
        }
        self.ep.peer_state()
    }

    /// Whether the peer has not closed (`libxenvchan_is_open`; a server
    /// waiting for its client is open).
    pub fn is_open(&self) -> bool {
        self.peer_state() != PeerState::Closed
    }

    /// The slow liveness check of the Qubes wrapper: besides the liveness
    /// byte, ask Xen whether our port is still connected to the peer (a
    /// peer domain that died never clears its byte). One hypercall.
    pub fn check_peer(&mut self) -> Result<PeerState, VchanError> {
        let st = self.peer_state();
        if st == PeerState::Connected {
            let s = self.ev.status(self.port)?;
            if s.status != EVTCHNSTAT_INTERDOMAIN {
                self.peer_gone = true;
                return Ok(PeerState::Closed);
            }
        }
        Ok(st)
    }

    // ---- data -------------------------------------------------------------

    /// Bytes ready to read (asks the peer for a `WRITE` event).
    pub fn data_ready(&mut self) -> Result<usize, VchanError> {
        self.usable()?;
        self.ep.data_ready()
    }

    /// Free space in the ring we write (asks the peer for a `READ` event).
    pub fn buffer_space(&mut self) -> Result<usize, VchanError> {
        self.usable()?;
        self.ep.buffer_space()
    }

    /// Read up to `buf.len()` bytes without blocking; `Ok(0)` if none are
    /// ready (a `WRITE` event is then requested: [`Vchan::wait`] and
    /// retry). [`VchanError::PeerClosed`] once the peer closed and
    /// everything it wrote has been read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        self.usable()?;
        let pr = self.ep.read(buf)?;
        if pr.bytes == 0 && !buf.is_empty() && self.peer_gone {
            return Err(VchanError::PeerClosed);
        }
        if pr.notify {
            self.notify();
        }
        Ok(pr.bytes)
    }

    /// Write as much of `buf` as fits without blocking; `Ok(0)` if the ring
    /// is full (a `READ` event is then requested: [`Vchan::wait`] and
    /// retry). [`VchanError::PeerClosed`] once the peer closed.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, VchanError> {
        self.usable()?;
        if self.peer_gone {
            return Err(VchanError::PeerClosed);
        }
        let pr = self.ep.write(buf)?;
        if pr.notify {
            self.notify();
        }
        Ok(pr.bytes)
    }

    /// Sleep until the peer signals our port or Xen time reaches
    /// `deadline` (ns; `None` = no deadline). The port's pending bit is
    /// cleared on waking, so the caller must look at the rings after each
    /// return. Call it after a short read or write (or `data_ready` /
    /// `buffer_space`), which asked the peer for the event.
    pub fn wait(&mut self, deadline: Option<u64>) -> Result<Wake, VchanError> {
        if self.side.is_none() {
            return Err(VchanError::PeerClosed);
        }
        let w = self.ev.wait(&[self.port], deadline)?;
        if w == Wake::Pending {
            self.ev.clear_pending(self.port);
        }
        Ok(w)
    }

    /// Fill `buf` completely, waiting as needed until `deadline`.
    pub fn read_all(&mut self, buf: &mut [u8], deadline: Option<u64>) -> Result<(), VchanError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read(&mut buf[done..])?;
            done += n;
            if n == 0 {
                self.sleep(deadline)?;
            }
        }
        Ok(())
    }

    /// Write all of `buf`, waiting as needed until `deadline`.
    pub fn write_all(&mut self, buf: &[u8], deadline: Option<u64>) -> Result<(), VchanError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.write(&buf[done..])?;
            done += n;
            if n == 0 {
                self.sleep(deadline)?;
            }
        }
        Ok(())
    }

    /// Server: wait until the client has shown up (`cli_live` no longer
    /// 2). It may have closed again already: what it wrote can still be
    /// read, then reads report [`VchanError::PeerClosed`]. A client is
    /// connected from the start.
    pub fn wait_connected(&mut self, deadline: Option<u64>) -> Result<(), VchanError> {
        while self.peer_state() == PeerState::Waiting {
            self.sleep(deadline)?;
        }
        Ok(())
    }

    /// Server: remove the published xenstore directory now (the Qubes
    /// wrapper does this once its client has connected, so a later client
    /// cannot find a stale one). Closing does it otherwise.
    pub fn remove_rendezvous(&mut self, store: &mut Xenstore<P>) -> Result<(), VchanError> {
        if let Some(Side::Server(held)) = &mut self.side {
            while let Some(d) = held.dirs.last() {
                remove_dir(store, d)?;
                held.dirs.pop();
            }
        }
        Ok(())
    }

    // ---- close ------------------------------------------------------------

    /// Close as libxenvchan does: our liveness byte to 0; a client unmaps
    /// the rings and the control page; notify the peer; close our port.
    /// A server's grants, pages and xenstore directory are returned in the
    /// [`Closed`] for [`Closed::release`] (the client may still map them).
    pub fn close(mut self) -> Result<Closed, VchanError> {
        let side = self.side.take();
        self.ep.mark_closed();
        let mut result = Ok(Closed::default());
        match side {
            Some(Side::Client(mut maps)) => {
                if let Err(e) = maps.unmap(self.ev.platform()) {
                    result = Err(e);
                }
            }
            Some(Side::Server(held)) => result = Ok(held),
            None => {}
        }
        let sent = self.ev.send(self.port);
        let closed = self.ev.close(self.port);
        let r = result?;
        sent?;
        closed?;
        Ok(r)
    }

    /// Close, and for a server also wait (until `deadline`) for the client
    /// to unmap the pages, revoke the grants, free the pages and remove the
    /// xenstore directory. If the client still maps pages at the deadline,
    /// [`VchanError::GrantsInUse`]: those pages stay granted and are never
    /// reused (`deadline` `None` waits as long as it takes). For a client
    /// this is [`Vchan::close`].
    pub fn close_and_release(
        mut self,
        gnttab: &mut GrantTable<P>,
        store: &mut Xenstore<P>,
        deadline: Option<u64>,
    ) -> Result<(), VchanError> {
        if self.role() == Role::Client {
            return self.close().map(drop);
        }
        let Some(Side::Server(mut held)) = self.side.take() else {
            return Ok(());
        };
        self.ep.mark_closed();
        let mut result = self.ev.send(self.port).map_err(VchanError::from);
        if let Err(e) = held.release(gnttab, store) {
            result = result.and(Err(e));
        }
        // The client notifies after unmapping: retry on each event.
        while !held.areas.is_empty() {
            match self.ev.wait(&[self.port], deadline) {
                Ok(Wake::Pending) => {
                    self.ev.clear_pending(self.port);
                    if let Err(e) = held.release_grants(gnttab) {
                        result = result.and(Err(e));
                        break;
                    }
                }
                Ok(Wake::Timeout) => {
                    if !held.release_grants(gnttab).unwrap_or(false) {
                        result = result.and(Err(VchanError::GrantsInUse {
                            grants: held.grants_in_use(),
                        }));
                    }
                    break;
                }
                Err(e) => {
                    result = result.and(Err(e.into()));
                    break;
                }
            }
        }
        if let Err(e) = self.ev.close(self.port) {
            result = result.and(Err(e.into()));
        }
        result
    }

    // ---- machinery ----------------------------------------------------------

    /// Fail fast on a closed vchan or a deferred notify failure.
    fn usable(&mut self) -> Result<(), VchanError> {
        if self.side.is_none() {
            return Err(VchanError::PeerClosed);
        }
        match self.deferred.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Signal the peer; a failure is reported by the next operation.
    fn notify(&mut self) {
        if let Err(e) = self.ev.send(self.port) {
            self.deferred.get_or_insert(e.into());
        }
    }

    /// Sleep until an event, the deadline ([`VchanError::Timeout`]) or the
    /// next liveness poll (then [`Vchan::check_peer`]).
    fn sleep(&mut self, deadline: Option<u64>) -> Result<(), VchanError> {
        let now = self.ev.platform().now_ns();
        if deadline.is_some_and(|d| now >= d) {
            return Err(VchanError::Timeout);
        }
        let poll = now.saturating_add(LIVENESS_POLL_NS);
        let until = deadline.map_or(poll, |d| d.min(poll));
        if self.wait(Some(until))? == Wake::Timeout {
            if self.check_peer()? == PeerState::Closed {
                return Err(VchanError::PeerClosed);
            }
            if deadline.is_some_and(|d| self.ev.platform().now_ns() >= d) {
                return Err(VchanError::Timeout);
            }
        }
        Ok(())
    }
}

impl<P: Platform + Clone> Drop for Vchan<P> {
    fn drop(&mut self) {
        let Some(side) = self.side.take() else {
            return;
        };
        self.ep.mark_closed();
        match side {
            Side::Client(mut maps) => {
                if let Err(e) = maps.unmap(self.ev.platform()) {
                    log::warn!("vchan: unmap at drop: {e}");
                }
            }
            Side::Server(held) => {
                // `held` leaks its pages when dropped (see `Closed`).
                drop(held);
            }
        }
        let _ = self.ev.send(self.port);
        let _ = self.ev.close(self.port);
    }
}
