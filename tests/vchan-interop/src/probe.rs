//! Watch a vchan's control page and xenstore keys through its life, from
//! the client domain (a read-only mapping of its own, as a debugger
//! would), so that what libxenvchan and our vchan write can be compared
//! field by field: after the server's init, after the client connected,
//! after the first close, after the second.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vchan::Vchan;
use xen::abi::GrantRef;
use xen::gnttab::map_grant_refs;
use xen::memory::libxen_shim;
use xen::memory::SharedMem;
use xen::sim::{DomainConfig, SimDomain, SimHost};

use crate::ffi::CVchan;
use crate::session::{End, Impl, PEER_TIMEOUT};

/// The 24-byte `struct vchan_interface` header and the grant list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// `left.cons`, `left.prod`, `right.cons`, `right.prod`.
    pub indices: [u32; 4],
    /// `left_order`, `right_order`.
    pub orders: (u16, u16),
    /// `cli_live`, `srv_live`.
    pub live: (u8, u8),
    /// `cli_notify`, `srv_notify`.
    pub notify: (u8, u8),
    /// Non-zero grant refs at the start of `grants[]`.
    pub grants: usize,
}

impl Header {
    fn read(m: &SharedMem) -> Header {
        let indices = [m.read_u32(0), m.read_u32(4), m.read_u32(8), m.read_u32(12)];
        let orders = (m.read_u16(16), m.read_u16(18));
        // The grant list ends where the first in-page ring begins.
        let limit = [orders.0, orders.1]
            .iter()
            .filter(|&&o| o < 12)
            .map(|&o| if o == 10 { 1024 } else { 2048 })
            .min()
            .unwrap_or(4096);
        let grants = (0..(limit - 24) / 4)
            .take_while(|i| m.read_u32(24 + 4 * i) != 0)
            .count();
        Header {
            indices,
            orders,
            live: (m.read_u8(20), m.read_u8(21)),
            notify: (m.read_u8(22), m.read_u8(23)),
            grants,
        }
    }
}

/// The rendezvous keys as xenstored holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Whether both values are plain decimal numbers (no sign, padding,
    /// NUL or newline).
    pub decimal: bool,
    /// Each key's permission list, in wire form, with the server's domid
    /// written `S` and the client's `C`.
    pub perms: Vec<String>,
}

/// What the probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The keys after the server's init.
    pub keys: Keys,
    /// After the server's init.
    pub server_init: Header,
    /// After the client's init.
    pub client_connected: Header,
    /// After the first side closed.
    pub first_closed: Header,
    /// After both closed.
    pub both_closed: Header,
}

enum Cmd {
    Close,
    Release,
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Run a vchan of `server` and `client` with the given ring minimums,
/// closed first by `closer`, and record the control page at each step.
pub fn probe(
    host: &SimHost,
    server: Impl,
    client: Impl,
    rings: (usize, usize),
    closer: End,
) -> Result<Trace, String> {
    let srv = host
        .create_domain(&DomainConfig::new("probe-srv"))
        .map_err(err("domain"))?;
    let cli = host
        .create_domain(&DomainConfig::new("probe-cli"))
        .map_err(err("domain"))?;
    let (sid, cid) = (srv.domid(), cli.domid());
    let port = 2000;
    let path = format!("/local/domain/{sid}/data/vchan/{cid}/{port}");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let p = path.clone();
    let st = host.spawn(&srv, move |d| {
        server_side(d, server, cid, &p, port, rings, ready_tx, cmd_rx, done_tx)
    });
    let outcome = (|| {
        ready_rx
            .recv_timeout(PEER_TIMEOUT)
            .map_err(|_| "server never published".to_string())?;
        let (keys, ring_ref) = host.with_xenstore(|xs| {
            let rr = xs.read(&format!("{path}/ring-ref")).unwrap_or_default();
            let ec = xs
                .read(&format!("{path}/event-channel"))
                .unwrap_or_default();
            let decimal = |v: &[u8]| !v.is_empty() && v.iter().all(u8::is_ascii_digit);
            let perms = ["ring-ref", "event-channel"]
                .iter()
                .map(|k| {
                    let list = xs.get_perms(&format!("{path}/{k}")).unwrap_or_default();
                    list.iter()
                        .map(|p| {
                            p.to_string()
                                .replace(&sid.to_string(), "S")
                                .replace(&cid.to_string(), "C")
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            let ring_ref = std::str::from_utf8(&rr)
                .ok()
                .and_then(|s| s.parse::<GrantRef>().ok());
            (
                Keys {
                    decimal: decimal(&rr) && decimal(&ec),
                    perms,
                },
                ring_ref,
            )
        });
        let ring_ref = ring_ref.ok_or("ring-ref unreadable")?;
        let p = path.clone();
        let ct = host.spawn(&cli, move |d| {
            client_side(d, client, sid, &p, port, ring_ref, closer, cmd_tx, done_rx)
        });
        let headers = ct
            .join()
            .map_err(|_| "client side panicked".to_string())??;
        Ok::<_, String>((keys, headers))
    })();
    let served = st.join().map_err(|_| "server side panicked".to_string())?;
    let mut leftovers = Vec::new();
    for (d, i) in [(&srv, server), (&cli, client)] {
        if i == Impl::Libxenvchan {
            libxen_shim::reclaim(d);
            let left = libxen_shim::stats(d).unwrap_or_default();
            libxen_shim::forget_domain(d);
            if left != Default::default() {
                leftovers.push(format!("d{}: libxenvchan left {left:?}", d.domid()));
            }
        }
    }
    host.destroy_domain(sid);
    host.destroy_domain(cid);
    served?;
    if !leftovers.is_empty() {
        return Err(leftovers.join("; "));
    }
    let (keys, h) = outcome?;
    Ok(Trace {
        keys,
        server_init: h[0].clone(),
        client_connected: h[1].clone(),
        first_closed: h[2].clone(),
        both_closed: h[3].clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn server_side(
    d: SimDomain,
    which: Impl,
    client: u16,
    path: &str,
    port: u32,
    rings: (usize, usize),
    ready: mpsc::Sender<()>,
    cmds: mpsc::Receiver<Cmd>,
    done: mpsc::Sender<()>,
) -> Result<(), String> {
    let next = || {
        cmds.recv_timeout(PEER_TIMEOUT)
            .map_err(|_| "no command".to_string())
    };
    match which {
        Impl::Libxenvchan => {
            let _in = libxen_shim::enter_domain(&d).map_err(err("shim"))?;
            let v = CVchan::server(client, path, rings.0, rings.1).map_err(err("server init"))?;
            let _ = ready.send(());
            let Cmd::Close = next()? else {
                return Err("expected close".into());
            };
            v.close();
            let _ = done.send(());
            next()?;
            Ok(())
        }
        Impl::Ours => {
            let ev = xen::evtchn::EventChannels::new(d.clone()).map_err(err("evtchn"))?;
            let mut gt = xen::gnttab::GrantTable::new(d.clone(), 4).map_err(err("gnttab"))?;
            let mut store = xen::store::Xenstore::from_params(ev.clone()).map_err(err("store"))?;
            let v = Vchan::server_qubes(&ev, &mut gt, &mut store, client, port, rings.0, rings.1)
                .map_err(err("server init"))?;
            let _ = ready.send(());
            let Cmd::Close = next()? else {
                return Err("expected close".into());
            };
            let mut closed = v.close().map_err(err("close"))?;
            let _ = done.send(());
            next()?;
            match closed.release(&mut gt, &mut store) {
                Ok(true) => Ok(()),
                Ok(false) => Err("grants still in use after the client unmapped".into()),
                Err(e) => Err(format!("release: {e}")),
            }
        }
    }
}

/// A client end of either kind.
enum Client {
    C(CVchan),
    Ours(Box<Vchan<SimDomain>>),
}

impl Client {
    fn is_open(&self) -> bool {
        match self {
            Client::C(v) => v.is_open() != 0,
            Client::Ours(v) => v.is_open(),
        }
    }
    fn close(self) -> Result<(), String> {
        match self {
            Client::C(v) => {
                v.close();
                Ok(())
            }
            Client::Ours(v) => v.close().map(drop).map_err(err("client close")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn client_side(
    d: SimDomain,
    which: Impl,
    server: u16,
    path: &str,
    port: u32,
    ring_ref: GrantRef,
    closer: End,
    cmds: mpsc::Sender<Cmd>,
    done: mpsc::Receiver<()>,
) -> Result<Vec<Header>, String> {
    let spy = map_grant_refs(&d, server, &[ring_ref], true).map_err(err("spy mapping"))?;
    let page = spy.mem();
    let mut seen = vec![Header::read(&page)];
    let _in = match which {
        Impl::Libxenvchan => Some(libxen_shim::enter_domain(&d).map_err(err("shim"))?),
        Impl::Ours => None,
    };
    let mut services = None;
    let client = match which {
        Impl::Libxenvchan => Client::C(CVchan::client(server, path).map_err(err("client init"))?),
        Impl::Ours => {
            let ev = xen::evtchn::EventChannels::new(d.clone()).map_err(err("evtchn"))?;
            let mut store = xen::store::Xenstore::from_params(ev.clone()).map_err(err("store"))?;
            let deadline = xen::Hypervisor::now_ns(&d) + PEER_TIMEOUT.as_nanos() as u64;
            let v = Vchan::client_qubes(&ev, &mut store, server, port, Some(deadline))
                .map_err(err("client init"))?;
            services = Some((ev, store));
            Client::Ours(Box::new(v))
        }
    };
    seen.push(Header::read(&page));
    let server_closed = || -> Result<(), String> {
        let _ = cmds.send(Cmd::Close);
        done.recv_timeout(PEER_TIMEOUT)
            .map_err(|_| "server did not close".to_string())
    };
    match closer {
        End::Client => {
            client.close()?;
            seen.push(Header::read(&page));
            server_closed()?;
        }
        End::Server => {
            server_closed()?;
            seen.push(Header::read(&page));
            let until = Instant::now() + PEER_TIMEOUT;
            while client.is_open() {
                if Instant::now() > until {
                    return Err("client never saw the server's close".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            client.close()?;
        }
    }
    seen.push(Header::read(&page));
    spy.unmap(&d).map_err(err("spy unmap"))?;
    drop(services);
    let _ = cmds.send(Cmd::Release);
    Ok(seen)
}
