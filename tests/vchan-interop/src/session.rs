//! One vchan session between two fresh simulated domains: connect, move
//! `bytes` each way at once in random chunk sizes, verify every byte, then
//! close from the chosen side while the other side watches for it.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vchan::Vchan;
use xen::abi::DomId;
use xen::evtchn::EventChannels;
use xen::gnttab::GrantTable;
use xen::memory::libxen_shim::{self, ShimStats};
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::Hypervisor;

use crate::ffi::CVchan;
use crate::pattern::{Pattern, Rng, MAX_CHUNK};
use crate::peer::{CPeer, Peer, RustPeer};

/// How long either side waits for the other before failing.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Which implementation runs an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// Debian's libxenvchan (C), through the libxen shim.
    Libxenvchan,
    /// This project's `vchan` crate.
    Ours,
}

/// An end of the vchan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The end that publishes the vchan.
    Server,
    /// The end that connects.
    Client,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who serves.
    pub server: Impl,
    /// Who connects.
    pub client: Impl,
    /// Server's `read_min` (the left ring, client to server).
    pub read_min: usize,
    /// Server's `write_min` (the right ring, server to client).
    pub write_min: usize,
    /// Bytes sent in each direction.
    pub bytes: u64,
    /// Who closes first.
    pub closer: End,
    /// Seed of the streams and chunk sizes.
    pub seed: u64,
    /// The Qubes vchan port number (path component).
    pub port: u32,
}

/// What a session measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// From the client being connected to both ends having received
    /// everything.
    pub elapsed: Duration,
    /// Bytes moved in each direction.
    pub bytes: u64,
    /// Events each end sent (server, client), set-up and close included;
    /// for a libxenvchan end, the shim's own wake-ups are not counted.
    pub events: (u64, u64),
}

impl Outcome {
    /// Throughput of one direction in MiB/s (both ran at once).
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The times one end measured.
struct Times {
    start: Instant,
    end: Instant,
}

/// What each end is told.
#[derive(Clone)]
struct Plan {
    session: Session,
    server: DomId,
    client: DomId,
    path: String,
}

impl Plan {
    /// (seed of what `end` sends, seed of what it receives).
    fn seeds(&self, end: End) -> (u64, u64) {
        let s2c = self.session.seed.wrapping_mul(2).wrapping_add(1);
        let c2s = self.session.seed.wrapping_mul(2).wrapping_add(2);
        match end {
            End::Server => (s2c, c2s),
            End::Client => (c2s, s2c),
        }
    }
}

/// Run `s` on two new domains of `host` (destroyed afterwards). Also
/// checks that every grant, mapping, port and handle of a libxenvchan end
/// was given back and the rendezvous directory removed.
pub fn run(host: &SimHost, s: &Session) -> Result<Outcome, String> {
    let cfg = |name: &str| DomainConfig::new(name);
    let srv = host
        .create_domain(&cfg(&format!("srv-{:?}", s.server).to_lowercase()))
        .map_err(|e| e.to_string())?;
    let cli = host
        .create_domain(&cfg(&format!("cli-{:?}", s.client).to_lowercase()))
        .map_err(|e| e.to_string())?;
    let (sid, cid) = (srv.domid(), cli.domid());
    let plan = Plan {
        session: s.clone(),
        server: sid,
        client: cid,
        path: format!("/local/domain/{sid}/data/vchan/{cid}/{}", s.port),
    };
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let p1 = plan.clone();
    let st = host.spawn(&srv, move |d| server_end(d, &p1, ready_tx));
    let p2 = plan.clone();
    let ct = host.spawn(&cli, move |d| {
        // libxenvchan's client reads the keys once: start after they exist.
        ready_rx
            .recv_timeout(PEER_TIMEOUT)
            .map_err(|_| "server never published".to_string())?;
        client_end(d, &p2)
    });
    let sr = st.join().map_err(|_| "server end panicked".to_string())?;
    let cr = ct.join().map_err(|_| "client end panicked".to_string())?;
    let events = |d: &SimDomain| {
        let sent = host
            .xen()
            .counters(d.domid())
            .unwrap_or_default()
            .notifications;
        sent.saturating_sub(libxen_shim::helper_kicks(d))
    };
    let events = (events(&srv), events(&cli));
    let leftovers = [(&srv, s.server), (&cli, s.client)]
        .into_iter()
        .filter(|(_, i)| *i == Impl::Libxenvchan)
        .map(|(d, _)| check_shim_released(d))
        .collect::<Result<Vec<()>, String>>();
    let dir_left = host.with_xenstore(|xs| xs.exists(&plan.path));
    host.destroy_domain(sid);
    host.destroy_domain(cid);
    let (st, ct) = match (sr, cr) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let why: Vec<String> = [("server", a.err()), ("client", b.err())]
                .into_iter()
                .filter_map(|(end, e)| e.map(|e| format!("{end} ({:?}): {e}", impl_of(s, end))))
                .collect();
            return Err(why.join("; "));
        }
    };
    leftovers?;
    if dir_left {
        return Err(format!("rendezvous directory {} left behind", plan.path));
    }
    Ok(Outcome {
        elapsed: st.end.max(ct.end) - ct.start,
        bytes: s.bytes,
        events,
    })
}

fn impl_of(s: &Session, end: &str) -> Impl {
    if end == "server" {
        s.server
    } else {
        s.client
    }
}

/// After both ends closed, a libxenvchan domain holds nothing any more.
fn check_shim_released(d: &SimDomain) -> Result<(), String> {
    libxen_shim::reclaim(d);
    let st = libxen_shim::stats(d).unwrap_or_default();
    libxen_shim::forget_domain(d);
    if st == ShimStats::default() {
        Ok(())
    } else {
        Err(format!(
            "d{}: libxenvchan left resources behind: {st:?}",
            d.domid()
        ))
    }
}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The Rust guest services of a domain.
struct Services {
    ev: EventChannels<SimDomain>,
    gt: GrantTable<SimDomain>,
    store: Xenstore<SimDomain>,
}

impl Services {
    fn new(d: &SimDomain) -> Result<Services, String> {
        let ev = EventChannels::new(d.clone()).map_err(ctx("event channels"))?;
        let gt = GrantTable::new(d.clone(), 4).map_err(ctx("grant table"))?;
        let store = Xenstore::from_params(ev.clone()).map_err(ctx("xenstore"))?;
        Ok(Services { ev, gt, store })
    }
}

fn deadline(d: &SimDomain) -> Option<u64> {
    Some(d.now_ns() + PEER_TIMEOUT.as_nanos() as u64)
}

fn server_end(d: SimDomain, plan: &Plan, ready: mpsc::Sender<()>) -> Result<Times, String> {
    let s = &plan.session;
    let (out, inp) = plan.seeds(End::Server);
    match s.server {
        Impl::Libxenvchan => {
            let _in_domain = libxen_shim::enter_domain(&d).map_err(ctx("shim"))?;
            let v = CVchan::server(plan.client, &plan.path, s.read_min, s.write_min)
                .map_err(ctx("libxenvchan_server_init"))?;
            let _ = ready.send(());
            let mut p = CPeer(v);
            let t = exchange(&mut p, s, out, inp)?;
            if s.closer == End::Client {
                await_close(&mut p)?;
            }
            p.0.close();
            Ok(t)
        }
        Impl::Ours => {
            let mut sv = Services::new(&d)?;
            let v = Vchan::server_qubes(
                &sv.ev,
                &mut sv.gt,
                &mut sv.store,
                plan.client,
                s.port,
                s.read_min,
                s.write_min,
            )
            .map_err(ctx("vchan server"))?;
            let _ = ready.send(());
            let mut p = RustPeer { v, dom: d.clone() };
            let t = exchange(&mut p, s, out, inp)?;
            if s.closer == End::Client {
                await_close(&mut p)?;
            }
            p.v.close_and_release(&mut sv.gt, &mut sv.store, deadline(&d))
                .map_err(ctx("vchan close"))?;
            Ok(t)
        }
    }
}

fn client_end(d: SimDomain, plan: &Plan) -> Result<Times, String> {
    let s = &plan.session;
    let (out, inp) = plan.seeds(End::Client);
    match s.client {
        Impl::Libxenvchan => {
            let _in_domain = libxen_shim::enter_domain(&d).map_err(ctx("shim"))?;
            let v =
                CVchan::client(plan.server, &plan.path).map_err(ctx("libxenvchan_client_init"))?;
            let mut p = CPeer(v);
            let t = exchange(&mut p, s, out, inp)?;
            if s.closer == End::Server {
                await_close(&mut p)?;
            }
            p.0.close();
            Ok(t)
        }
        Impl::Ours => {
            let mut sv = Services::new(&d)?;
            let v = Vchan::client_qubes(&sv.ev, &mut sv.store, plan.server, s.port, deadline(&d))
                .map_err(ctx("vchan client"))?;
            let mut p = RustPeer { v, dom: d.clone() };
            let t = exchange(&mut p, s, out, inp)?;
            if s.closer == End::Server {
                await_close(&mut p)?;
            }
            p.v.close().map(drop).map_err(ctx("vchan close"))?;
            Ok(t)
        }
    }
}

/// Send `s.bytes` of stream `out` while receiving and checking as many of
/// stream `inp`, both in random chunk sizes, sleeping only when neither
/// direction moves.
fn exchange(p: &mut impl Peer, s: &Session, out: u64, inp: u64) -> Result<Times, String> {
    let (tx, rx) = (Pattern::new(out), Pattern::new(inp));
    let mut rng = Rng::new(out ^ 0x5eed);
    let mut buf = vec![0u8; MAX_CHUNK];
    let (mut sent, mut got, mut chunk_left) = (0u64, 0u64, 0usize);
    let start = Instant::now();
    while sent < s.bytes || got < s.bytes {
        let mut progress = false;
        if sent < s.bytes {
            if chunk_left == 0 {
                chunk_left = rng.chunk().min((s.bytes - sent) as usize);
            }
            let n = p.write(tx.at(sent, chunk_left))?;
            if n > chunk_left {
                return Err(format!("write of {chunk_left} bytes claims {n}"));
            }
            sent += n as u64;
            chunk_left -= n;
            progress |= n > 0;
        }
        if got < s.bytes {
            let want = rng.chunk().min((s.bytes - got) as usize);
            let n = p.read(&mut buf[..want])?;
            if n > want {
                return Err(format!("read of {want} bytes claims {n}"));
            }
            rx.verify(got, &buf[..n])
                .map_err(|off| format!("received byte {off} differs from what was sent"))?;
            got += n as u64;
            progress |= n > 0;
        }
        if !progress && !p.wait(PEER_TIMEOUT)? {
            return Err(format!(
                "no event for {PEER_TIMEOUT:?} (sent {sent}, received {got} of {})",
                s.bytes
            ));
        }
    }
    Ok(Times {
        start,
        end: Instant::now(),
    })
}

/// Wait for the peer's close, then check that reading and writing report
/// it (as libxenvchan does: -1 once closed and drained).
fn await_close(p: &mut impl Peer) -> Result<(), String> {
    let until = Instant::now() + PEER_TIMEOUT;
    while p.is_open() {
        if Instant::now() >= until {
            return Err("the peer's close was never seen".into());
        }
        p.wait(PEER_TIMEOUT)?;
    }
    let mut b = [0u8; 1];
    match p.read(&mut b) {
        Err(_) => {}
        Ok(n) => {
            return Err(format!(
                "read after the peer closed returned Ok({n}), not an error"
            ))
        }
    }
    match p.write(b"x") {
        Err(_) => Ok(()),
        Ok(n) => Err(format!(
            "write after the peer closed returned Ok({n}), not an error"
        )),
    }
}
