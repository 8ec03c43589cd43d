//! Building the shared pages: a server allocates, initialises and grants
//! them; a client maps them. Each step records what it acquired before the
//! next can fail, so the caller can undo exactly that.

use alloc::vec::Vec;

use xen::abi::{DomId, GrantRef, PAGE_SIZE};
use xen::gnttab::{map_grant_refs, ForeignMapping, GrantError, GrantTable};
use xen::memory::SharedMem;
use xen::Platform;

use crate::closed::{Area, Closed};
use crate::endpoint::{Endpoint, Role};
use crate::error::{RingId, VchanError};
use crate::layout::RingOrders;

/// The client's mappings of the server's pages.
#[derive(Debug, Default)]
pub(crate) struct Mappings {
    pub(crate) ctrl: Option<ForeignMapping>,
    pub(crate) left: Option<ForeignMapping>,
    pub(crate) right: Option<ForeignMapping>,
}

impl Mappings {
    /// Unmap everything (rings first, as libxenvchan); the first error.
    pub(crate) fn unmap<P: Platform>(&mut self, p: &P) -> Result<(), VchanError> {
        let mut first = Ok(());
        for m in [self.left.take(), self.right.take(), self.ctrl.take()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = m.unmap(p) {
                if first.is_ok() {
                    first = Err(e.into());
                }
            }
        }
        first
    }
}

/// Allocate, initialise and grant the control page and the ring pages,
/// recording each area in `held` as soon as it is granted (for cleanup).
/// Returns the control page's grant ref and the server endpoint.
pub(crate) fn build_server_pages<P: Platform + Clone>(
    p: &P,
    gnttab: &mut GrantTable<P>,
    client: DomId,
    orders: RingOrders,
    held: &mut Closed,
) -> Result<(GrantRef, Endpoint), VchanError> {
    let ctrl_gfn = p.alloc_pages(1).ok_or(VchanError::NoMemory)?;
    let ctrl = match p.page(ctrl_gfn) {
        Some(m) => m,
        None => {
            p.free_pages(ctrl_gfn, 1);
            return Err(VchanError::NoMemory);
        }
    };
    Endpoint::init_server_page(&ctrl, orders);
    held.areas.push(Area {
        gfn: ctrl_gfn,
        pages: 1,
        grants: Vec::new(),
    });
    let ring_ref = grant_area(gnttab, client, held.areas.len() - 1, held)?[0];
    let mut bufs: [Option<SharedMem>; 2] = [None, None];
    for (slot, ring) in [RingId::Left, RingId::Right].into_iter().enumerate() {
        let n = orders.location(ring).pages();
        if n == 0 {
            continue;
        }
        let gfn = p.alloc_pages(n).ok_or(VchanError::NoMemory)?;
        let mem = match p.pages(gfn, n) {
            Some(m) => m,
            None => {
                p.free_pages(gfn, n);
                return Err(VchanError::NoMemory);
            }
        };
        mem.fill(0, n * PAGE_SIZE, 0);
        held.areas.push(Area {
            gfn,
            pages: n,
            grants: Vec::new(),
        });
        let refs = grant_area(gnttab, client, held.areas.len() - 1, held)?;
        let first = orders.first_grant(ring);
        for (i, r) in refs.iter().enumerate() {
            Endpoint::set_grant(&ctrl, first + i, *r);
        }
        bufs[slot] = Some(mem);
    }
    let (left, right) =
        Endpoint::ring_buffers(&ctrl, orders, bufs[0], bufs[1]).ok_or(VchanError::NoMemory)?;
    let ep = Endpoint::new(Role::Server, ctrl, left, right).ok_or(VchanError::NoMemory)?;
    Ok((ring_ref, ep))
}

/// Grant every page of area `i` of `held` to `client`, writable, recording
/// each ref in the area as it is made. Returns the refs.
fn grant_area<P: Platform + Clone>(
    gnttab: &mut GrantTable<P>,
    client: DomId,
    i: usize,
    held: &mut Closed,
) -> Result<Vec<GrantRef>, VchanError> {
    let area = &mut held.areas[i];
    for k in 0..area.pages {
        let r = gnttab.grant(client, area.gfn.add(k as u64), false)?;
        area.grants.push(r);
    }
    Ok(area.grants.clone())
}

/// Map the control page and the rings of the vchan `server` offers with
/// `ring_ref`, recording each mapping in `maps` (for cleanup). Returns the
/// checked orders and the client endpoint.
pub(crate) fn map_client_pages<P: Platform + Clone>(
    p: &P,
    server: DomId,
    ring_ref: GrantRef,
    maps: &mut Mappings,
) -> Result<(RingOrders, Endpoint), VchanError> {
    let ctrl = map_grant_refs(p, server, &[ring_ref], false)?;
    let cmem = ctrl.mem();
    maps.ctrl = Some(ctrl);
    let orders = Endpoint::read_orders(&cmem)?;
    let mut mem = [None, None];
    for (slot, ring) in [RingId::Left, RingId::Right].into_iter().enumerate() {
        let n = orders.location(ring).pages();
        if n == 0 {
            continue;
        }
        let refs = Endpoint::read_grants(&cmem, orders.first_grant(ring), n);
        // We write the left ring and only read the right one.
        let m = map_grant_refs(p, server, &refs, ring == RingId::Right)?;
        mem[slot] = Some(m.mem());
        match ring {
            RingId::Left => maps.left = Some(m),
            RingId::Right => maps.right = Some(m),
        }
    }
    let (left, right) = Endpoint::ring_buffers(&cmem, orders, mem[0], mem[1])
        .ok_or(VchanError::Grant(GrantError::NoAddressSpace))?;
    let ep = Endpoint::new(Role::Client, cmem, right, left)
        .ok_or(VchanError::Grant(GrantError::NoAddressSpace))?;
    Ok((orders, ep))
}
