//! A hand-made vchan server that publishes whatever ring orders it is
//! given, with every ring page it implies granted for real, to compare
//! which control pages libxenvchan's client and ours accept.

use std::sync::mpsc;

use vchan::Vchan;
use xen::abi::DomId;
use xen::evtchn::EventChannels;
use xen::gnttab::GrantTable;
use xen::memory::libxen_shim;
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::{Access, Perm, Xenstore};
use xen::{GuestMemory, Hypervisor};

use crate::ffi::CVchan;
use crate::session::{Impl, PEER_TIMEOUT};

fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Pages a ring of `order` occupies outside the control page.
fn ring_pages(order: u16) -> usize {
    if (12..=20).contains(&order) {
        1 << (order - 12)
    } else {
        0
    }
}

/// Whether `client` accepts a control page with orders `(left, right)`
/// (grants for every page they imply, listed left first). Errors are
/// failures of the test machinery, not refusals.
pub fn accepts(host: &SimHost, client: Impl, orders: (u16, u16)) -> Result<bool, String> {
    let srv = host
        .create_domain(&DomainConfig::new("crafted-srv"))
        .map_err(err("domain"))?;
    let cli = host
        .create_domain(&DomainConfig::new("crafted-cli"))
        .map_err(err("domain"))?;
    let (sid, cid) = (srv.domid(), cli.domid());
    let path = format!("/local/domain/{sid}/data/vchan/{cid}/3000");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let p = path.clone();
    let st = host.spawn(&srv, move |d| serve(d, cid, &p, orders, ready_tx, done_rx));
    let p = path.clone();
    let ct = host.spawn(&cli, move |d| -> Result<bool, String> {
        ready_rx
            .recv_timeout(PEER_TIMEOUT)
            .map_err(|_| "crafted server never published".to_string())?;
        let r = connect(&d, client, sid, &p);
        let _ = done_tx.send(());
        r
    });
    let accepted = ct.join().map_err(|_| "client panicked".to_string())?;
    let served = st.join().map_err(|_| "server panicked".to_string())?;
    let left = if client == Impl::Libxenvchan {
        let s = libxen_shim::stats(&cli).unwrap_or_default();
        libxen_shim::forget_domain(&cli);
        (s != Default::default()).then(|| format!("libxenvchan left {s:?}"))
    } else {
        None
    };
    host.destroy_domain(sid);
    host.destroy_domain(cid);
    served?;
    if let Some(l) = left {
        return Err(l);
    }
    accepted
}

fn connect(d: &SimDomain, client: Impl, server: DomId, path: &str) -> Result<bool, String> {
    match client {
        Impl::Libxenvchan => {
            let _in = libxen_shim::enter_domain(d).map_err(err("shim"))?;
            Ok(CVchan::client(server, path).map(CVchan::close).is_ok())
        }
        Impl::Ours => {
            let ev = EventChannels::new(d.clone()).map_err(err("evtchn"))?;
            let mut store = Xenstore::from_params(ev.clone()).map_err(err("store"))?;
            let deadline = d.now_ns() + PEER_TIMEOUT.as_nanos() as u64;
            match Vchan::client(&ev, &mut store, server, path, Some(deadline)) {
                Ok(v) => {
                    v.close().map(drop).map_err(err("close"))?;
                    Ok(true)
                }
                Err(_) => Ok(false),
            }
        }
    }
}

fn serve(
    d: SimDomain,
    client: DomId,
    path: &str,
    (left, right): (u16, u16),
    ready: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
) -> Result<(), String> {
    let ev = EventChannels::new(d.clone()).map_err(err("evtchn"))?;
    let mut gt = GrantTable::new(d.clone(), 4).map_err(err("gnttab"))?;
    let mut store = Xenstore::from_params(ev.clone()).map_err(err("store"))?;
    let port = ev.alloc_unbound(client).map_err(err("port"))?;
    let ctrl_gfn = d.alloc_pages(1).ok_or("no memory")?;
    let ctrl = d.page(ctrl_gfn).ok_or("no page")?;
    ctrl.write_u16(16, left);
    ctrl.write_u16(18, right);
    ctrl.write_u8(20, 2);
    ctrl.write_u8(21, 1);
    ctrl.write_u8(22, 1);
    let mut grants = vec![gt.grant(client, ctrl_gfn, false).map_err(err("grant"))?];
    let ring_ref = grants[0];
    let mut areas = vec![(ctrl_gfn, 1)];
    let mut slot = 0;
    for order in [left, right] {
        let n = ring_pages(order);
        if n == 0 {
            continue;
        }
        let gfn = d.alloc_pages(n).ok_or("no memory")?;
        areas.push((gfn, n));
        for i in 0..n {
            let r = gt
                .grant(client, gfn.add(i as u64), false)
                .map_err(err("grant"))?;
            grants.push(r);
            // Written wherever the list reaches, even into an in-page ring.
            if 24 + 4 * slot + 4 <= 4096 {
                ctrl.write_u32(24 + 4 * slot, r);
            }
            slot += 1;
        }
    }
    let store_perms = [
        Perm::new(d.domid(), Access::None),
        Perm::new(client, Access::Read),
    ];
    store
        .transaction(|tx| {
            tx.write(&format!("{path}/ring-ref"), ring_ref.to_string())?;
            tx.set_perms(&format!("{path}/ring-ref"), &store_perms)?;
            tx.write(&format!("{path}/event-channel"), port.to_string())?;
            tx.set_perms(&format!("{path}/event-channel"), &store_perms)
        })
        .map_err(err("publish"))?;
    let _ = ready.send(());
    done.recv_timeout(PEER_TIMEOUT)
        .map_err(|_| "client never finished".to_string())?;
    // The client closed (or never connected): take everything back.
    for r in grants {
        gt.end_access(r).map_err(err("end access"))?;
    }
    for (gfn, n) in areas {
        d.free_pages(gfn, n);
    }
    let _ = ev.close(port);
    let _ = store.rm(path);
    Ok(())
}
