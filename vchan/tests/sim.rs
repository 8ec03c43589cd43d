//! Our vchan server and client in two simulated domains, each on its own
//! thread, connected through xenstore, grants and an event channel exactly
//! as two real guests would be.
//!
//! Bulk tests move a deterministic pseudo-random byte stream each way at
//! once, in random chunk sizes, and verify every byte; they print the
//! measured throughput. Others cover both ring placements, the Qubes
//! rendezvous path and its permissions, a client that starts before its
//! server, close from either side, drop without close, and hostile peers
//! (bad indices, bad orders) detected as errors.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vchan::layout::{GRANTS, LEFT_ORDER, LEFT_PROD, RIGHT_ORDER, RIGHT_PROD, SRV_LIVE};
use vchan::{
    IndexKind, PeerState, ProtocolError, RendezvousPath, RingId, Role, Vchan, VchanError,
    QUBESDB_PORT,
};
use xen::abi::DomId;
use xen::evtchn::EventChannels;
use xen::gnttab::GrantTable;
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::{Access, Perm, Xenstore};
use xen::GuestMemory;

type V = Vchan<SimDomain>;

/// Generous per-test deadline for each side (Xen time = host monotonic).
const DEADLINE_NS: u64 = 60_000_000_000;

/// The guest services one domain's code uses.
struct Guest {
    d: SimDomain,
    ev: EventChannels<SimDomain>,
    store: Xenstore<SimDomain>,
    gnttab: GrantTable<SimDomain>,
}

impl Guest {
    fn new(d: SimDomain) -> Guest {
        let ev = EventChannels::new(d.clone()).expect("event channels");
        let store = Xenstore::from_params(ev.clone()).expect("xenstore");
        let gnttab = GrantTable::new(d.clone(), 4).expect("grant table");
        Guest {
            d,
            ev,
            store,
            gnttab,
        }
    }

    fn now(&self) -> u64 {
        xen::Hypervisor::now_ns(&self.d)
    }

    fn deadline(&self) -> Option<u64> {
        Some(self.now() + DEADLINE_NS)
    }
}

/// Two domains of a fresh host: (host, server domain, client domain).
fn host() -> (SimHost, SimDomain, SimDomain) {
    let host = SimHost::new().expect("host");
    let mut cfg = DomainConfig::new("vchan-server");
    cfg.ram_mib = 32;
    let s = host.create_domain(&cfg).expect("server domain");
    cfg.name = "vchan-client".into();
    let c = host.create_domain(&cfg).expect("client domain");
    (host, s, c)
}

/// Run `f` as domain `d`'s code with its services.
fn spawn<R: Send + 'static>(
    host: &SimHost,
    d: &SimDomain,
    f: impl FnOnce(Guest) -> R + Send + 'static,
) -> JoinHandle<R> {
    host.spawn(d, move |d| f(Guest::new(d)))
}

fn join<R>(h: JoinHandle<R>) -> R {
    h.join().expect("domain thread panicked")
}

fn dir_for(server: DomId, client: DomId) -> String {
    RendezvousPath {
        server,
        client,
        port: 4242,
    }
    .absolute()
}

// ---- a deterministic byte stream ------------------------------------------

/// splitmix64: a cheap, well-mixed counter-based generator.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The byte stream `seed`: byte `i` is byte `i % 8` of `mix(seed ^ i / 8)`.
#[derive(Clone, Copy)]
struct Stream(u64);

impl Stream {
    /// The 8 bytes of word `w`.
    fn word(self, w: u64) -> [u8; 8] {
        mix(self.0 ^ w.wrapping_mul(0xA24B_AED4_963E_E407)).to_le_bytes()
    }

    /// Bytes `pos..pos + buf.len()` of the stream.
    fn fill(self, pos: u64, buf: &mut [u8]) {
        // Unaligned head, whole words, tail.
        let head = ((8 - pos % 8) % 8).min(buf.len() as u64) as usize;
        let off = (pos % 8) as usize;
        buf[..head].copy_from_slice(&self.word(pos / 8)[off..off + head]);
        let mut w = (pos + head as u64) / 8;
        let mut words = buf[head..].chunks_exact_mut(8);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.word(w));
            w += 1;
        }
        let tail = words.into_remainder();
        let n = tail.len();
        tail.copy_from_slice(&self.word(w)[..n]);
    }
}

/// A small xorshift for chunk sizes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What one side of a bulk exchange measured.
#[derive(Debug)]
struct Stats {
    bytes_each_way: u64,
    elapsed: Duration,
    waits: u64,
}

/// Send `total` bytes of `out` and receive `total` bytes of `inn` at the
/// same time, in random chunk sizes up to `max_chunk`, verifying every
/// byte received.
fn exchange(
    v: &mut V,
    out: Stream,
    inn: Stream,
    total: u64,
    max_chunk: usize,
    seed: u64,
    deadline: Option<u64>,
) -> Result<Stats, String> {
    let start = Instant::now();
    let mut rng = Rng(seed | 1);
    let mut wbuf = vec![0u8; max_chunk];
    let (mut wpos, mut wend) = (0usize, 0usize);
    let mut rbuf = vec![0u8; max_chunk];
    let mut expect = vec![0u8; max_chunk];
    let (mut sent, mut rcvd, mut waits) = (0u64, 0u64, 0u64);
    while sent < total || rcvd < total {
        let mut progress = false;
        if wpos == wend && sent < total {
            let len = (1 + rng.below(max_chunk)).min((total - sent) as usize);
            out.fill(sent, &mut wbuf[..len]);
            (wpos, wend) = (0, len);
        }
        if wpos < wend {
            let n = v
                .write(&wbuf[wpos..wend])
                .map_err(|e| format!("write at {sent}: {e}"))?;
            wpos += n;
            sent += n as u64;
            progress |= n > 0;
        }
        if rcvd < total {
            let len = (1 + rng.below(max_chunk)).min((total - rcvd) as usize);
            let n = v
                .read(&mut rbuf[..len])
                .map_err(|e| format!("read at {rcvd}: {e}"))?;
            if n > 0 {
                inn.fill(rcvd, &mut expect[..n]);
                if rbuf[..n] != expect[..n] {
                    let i = (0..n).find(|&i| rbuf[i] != expect[i]).unwrap_or(0);
                    return Err(format!(
                        "byte {} differs: got {:#04x}, want {:#04x}",
                        rcvd + i as u64,
                        rbuf[i],
                        expect[i]
                    ));
                }
                rcvd += n as u64;
                progress = true;
            }
        }
        if !progress {
            waits += 1;
            if v.wait(deadline).map_err(|e| format!("wait: {e}"))? == xen::evtchn::Wake::Timeout {
                return Err(format!("stalled: sent {sent}, received {rcvd} of {total}"));
            }
        }
    }
    Ok(Stats {
        bytes_each_way: total,
        elapsed: start.elapsed(),
        waits,
    })
}

/// Read until the peer's close is seen; returns the bytes that were left.
fn drain_until_closed(v: &mut V, g: &Guest) -> Result<usize, String> {
    let deadline = g.now() + DEADLINE_NS;
    let mut buf = vec![0u8; 4096];
    let mut left = 0;
    loop {
        match v.read(&mut buf) {
            Ok(0) => {
                if g.now() >= deadline {
                    return Err("peer close not seen".into());
                }
                v.wait(Some(deadline)).map_err(|e| e.to_string())?;
            }
            Ok(n) => left += n,
            Err(VchanError::PeerClosed) => return Ok(left),
            Err(e) => return Err(format!("waiting for close: {e}")),
        }
    }
}

/// Which side closes first in a bulk test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Closer {
    Server,
    Client,
}

/// A full bulk run: rings for `read_min`/`write_min`, `total` bytes each
/// way, then a close from `closer` that the other side must see.
fn bulk(
    read_min: usize,
    write_min: usize,
    total: u64,
    max_chunk: usize,
    closer: Closer,
) -> (Stats, Stats) {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let sdir = dir.clone();
    let (a, b) = (Stream(0x5e57_0001), Stream(0xc11e_0002));
    let server = spawn(&host, &s, move |mut g| -> Result<Stats, String> {
        let mut v = Vchan::server(
            &g.ev,
            &mut g.gnttab,
            &mut g.store,
            cid,
            &sdir,
            read_min,
            write_min,
        )
        .map_err(|e| format!("server: {e}"))?;
        assert_eq!(v.role(), Role::Server);
        v.wait_connected(g.deadline())
            .map_err(|e| format!("connect: {e}"))?;
        let st = exchange(&mut v, a, b, total, max_chunk, 11, g.deadline())?;
        if closer == Closer::Server {
            let dl = g.deadline();
            v.close_and_release(&mut g.gnttab, &mut g.store, dl)
                .map_err(|e| format!("server close: {e}"))?;
        } else {
            let left = drain_until_closed(&mut v, &g)?;
            assert_eq!(left, 0);
            assert_eq!(v.peer_state(), PeerState::Closed);
            assert_eq!(v.write(b"x"), Err(VchanError::PeerClosed));
            // The client unmapped before notifying: nothing stays in use.
            let free_before = g.gnttab.free_count();
            let now = Some(g.now());
            v.close_and_release(&mut g.gnttab, &mut g.store, now)
                .map_err(|e| format!("server close: {e}"))?;
            assert!(g.gnttab.free_count() > free_before);
        }
        Ok(st)
    });
    let client = spawn(&host, &c, move |mut g| -> Result<Stats, String> {
        let dl = g.deadline();
        let mut v = Vchan::client(&g.ev, &mut g.store, sid, &dir, dl)
            .map_err(|e| format!("client: {e}"))?;
        assert_eq!(v.role(), Role::Client);
        let st = exchange(&mut v, b, a, total, max_chunk, 22, g.deadline())?;
        if closer == Closer::Client {
            let closed = v.close().map_err(|e| format!("client close: {e}"))?;
            assert!(closed.is_released());
        } else {
            let left = drain_until_closed(&mut v, &g)?;
            assert_eq!(left, 0);
            assert!(!v.is_open());
            assert_eq!(v.write(b"x"), Err(VchanError::PeerClosed));
            let closed = v.close().map_err(|e| format!("client close: {e}"))?;
            assert!(closed.is_released());
        }
        Ok(st)
    });
    let (ss, cs) = (join(server), join(client));
    let (ss, cs) = match (ss, cs) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => panic!("server: {a:?}\nclient: {b:?}"),
    };
    // The directory is gone after the server's close.
    let dir = dir_for(sid, cid);
    host.with_xenstore(|xs| assert!(xs.read(&format!("{dir}/ring-ref")).is_err()));
    (ss, cs)
}

fn report(name: &str, orders: &str, (s, c): &(Stats, Stats)) {
    let secs = s.elapsed.max(c.elapsed).as_secs_f64().max(1e-9);
    let mib = s.bytes_each_way as f64 / (1024.0 * 1024.0);
    println!(
        "{name}: orders {orders}: {mib:.0} MiB each way in {secs:.2} s = {:.1} MiB/s each way \
         ({:.1} MiB/s total); waits: server {}, client {}",
        mib / secs,
        2.0 * mib / secs,
        s.waits,
        c.waits
    );
}

#[test]
fn bulk_page_rings_64mib_both_ways() {
    // 65536/65536: qrexec data connection sizes, orders 16/16.
    let r = bulk(65536, 65536, 64 << 20, 100_000, Closer::Server);
    report("bulk_page_rings_64mib_both_ways", "16/16", &r);
}

#[test]
fn bulk_in_page_rings_both_ways() {
    // 1024/2048: both rings inside the control page (orders 10/11).
    let r = bulk(1024, 2048, 4 << 20, 3000, Closer::Client);
    report("bulk_in_page_rings_both_ways", "10/11", &r);
}

#[test]
fn bulk_mixed_placement_both_ways() {
    // An order-11 ring in the page and a 1 MiB ring in 256 pages.
    let r = bulk(2000, 1 << 20, 8 << 20, 300_000, Closer::Server);
    report("bulk_mixed_placement_both_ways", "11/20", &r);
}

#[test]
fn qubesdb_rendezvous_orders_12_12_and_permissions() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server_qubes(
            &g.ev,
            &mut g.gnttab,
            &mut g.store,
            cid,
            QUBESDB_PORT,
            4096,
            4096,
        )
        .map_err(|e| e.to_string())?;
        assert_eq!((v.orders().left(), v.orders().right()), (12, 12));
        let ctrl = v.endpoint().control_page();
        assert_eq!(ctrl.load_u16(LEFT_ORDER, Ordering::SeqCst), 12);
        assert_eq!(ctrl.load_u16(RIGHT_ORDER, Ordering::SeqCst), 12);
        let (g0, g1) = (
            ctrl.load_u32(GRANTS, Ordering::SeqCst),
            ctrl.load_u32(GRANTS + 4, Ordering::SeqCst),
        );
        assert!(g0 != 0 && g1 != 0 && g0 != g1);
        // The keys, relative to our home, readable by the client only.
        let dir = format!("data/vchan/{cid}/111");
        for key in ["ring-ref", "event-channel"] {
            let perms = g
                .store
                .get_perms(&format!("{dir}/{key}"))
                .map_err(|e| e.to_string())?;
            assert_eq!(
                perms,
                vec![Perm::new(sid, Access::None), Perm::new(cid, Access::Read)]
            );
        }
        let port: u32 = g
            .store
            .read_string(&format!("{dir}/event-channel"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(port, v.port());
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        // As the Qubes wrapper: remove the directory once connected.
        v.remove_rendezvous(&mut g.store)
            .map_err(|e| e.to_string())?;
        assert_eq!(g.store.read_opt(&format!("{dir}/ring-ref")), Ok(None));
        v.write_all(b"hello from dom0", g.deadline())
            .map_err(|e| e.to_string())?;
        let mut reply = [0u8; 9];
        v.read_all(&mut reply, g.deadline())
            .map_err(|e| e.to_string())?;
        assert_eq!(&reply, b"hello vm!");
        assert_eq!(drain_until_closed(&mut v, &g)?, 0);
        let dl = g.deadline();
        v.close_and_release(&mut g.gnttab, &mut g.store, dl)
            .map_err(|e| e.to_string())
    });
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let mut v = Vchan::client_qubes(&g.ev, &mut g.store, sid, QUBESDB_PORT, dl)
            .map_err(|e| e.to_string())?;
        assert_eq!(v.peer(), sid);
        let mut msg = [0u8; 15];
        v.read_all(&mut msg, g.deadline())
            .map_err(|e| e.to_string())?;
        assert_eq!(&msg, b"hello from dom0");
        v.write_all(b"hello vm!", g.deadline())
            .map_err(|e| e.to_string())?;
        let closed = v.close().map_err(|e| e.to_string())?;
        assert!(closed.is_released());
        Ok(())
    });
    let (a, b) = (join(server), join(client));
    assert!(a.is_ok() && b.is_ok(), "server: {a:?}, client: {b:?}");
    // The per-client parent went with the port's directory.
    host.with_xenstore(|xs| {
        assert!(xs
            .read(&format!("/local/domain/{sid}/data/vchan/{cid}"))
            .is_err());
        assert!(xs.read(&format!("/local/domain/{sid}/data")).is_ok());
    });
}

#[test]
fn client_waits_for_a_late_server() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let mut v =
            Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        v.read_all(&mut buf, g.deadline())
            .map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"late!");
        drop(v.close().map_err(|e| e.to_string())?);
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 0, 0)
            .map_err(|e| e.to_string())?;
        // Written before the client connects: cli_live = 2 counts as open.
        v.write_all(b"late!", g.deadline())
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        assert_eq!(drain_until_closed(&mut v, &g)?, 0);
        let dl = g.deadline();
        v.close_and_release(&mut g.gnttab, &mut g.store, dl)
            .map_err(|e| e.to_string())
    });
    let (a, b) = (join(server), join(client));
    assert!(a.is_ok() && b.is_ok(), "server: {a:?}, client: {b:?}");
}

#[test]
fn client_times_out_without_server() {
    let (host, s, c) = host();
    let dir = dir_for(s.domid(), c.domid());
    let sid = s.domid();
    let r = join(spawn(&host, &c, move |mut g| {
        let t0 = g.now();
        let r = Vchan::client(&g.ev, &mut g.store, sid, &dir, Some(t0 + 200_000_000));
        (r.map(|_| ()), g.now() - t0)
    }));
    assert_eq!(r.0, Err(VchanError::Timeout));
    assert!(
        r.1 >= 200_000_000 && r.1 < 5_000_000_000,
        "waited {} ns",
        r.1
    );
}

/// A reader blocked in `read_all` wakes for the last bytes and the close.
#[test]
fn close_wakes_a_blocked_reader_after_the_last_bytes() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 4096, 4096)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(100));
        v.write_all(b"0123456789", g.deadline())
            .map_err(|e| e.to_string())?;
        let dl = g.deadline();
        v.close_and_release(&mut g.gnttab, &mut g.store, dl)
            .map_err(|e| e.to_string())
    });
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let mut v =
            Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 100];
        let t0 = g.now();
        assert_eq!(
            v.read_all(&mut buf, g.deadline()),
            Err(VchanError::PeerClosed)
        );
        assert!(
            g.now() - t0 < 1_000_000_000,
            "woken by the close event, not a poll"
        );
        assert_eq!(&buf[..10], b"0123456789");
        assert_eq!(v.peer_state(), PeerState::Closed);
        drop(v.close().map_err(|e| e.to_string())?);
        Ok(())
    });
    let (a, b) = (join(server), join(client));
    assert!(a.is_ok() && b.is_ok(), "server: {a:?}, client: {b:?}");
}

/// Dropping a vchan without closing it still tells the peer, as the
/// kernel's unmap notification does for a dead libxenvchan process.
#[test]
fn drop_without_close_signals_the_peer() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 1024, 1024)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        assert_eq!(drain_until_closed(&mut v, &g)?, 3);
        // The client unmapped before notifying: everything comes back now.
        let now = Some(g.now());
        v.close_and_release(&mut g.gnttab, &mut g.store, now)
            .map_err(|e| e.to_string())
    });
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let mut v =
            Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        v.write_all(b"bye", g.deadline())
            .map_err(|e| e.to_string())?;
        drop(v);
        Ok(())
    });
    let (a, b) = (join(server), join(client));
    assert!(a.is_ok() && b.is_ok(), "server: {a:?}, client: {b:?}");
}

/// A server that closes while its client still maps the pages keeps them
/// granted (out of circulation) and says so; a later release succeeds.
#[test]
fn server_close_keeps_pages_the_client_still_maps() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 8192, 4096)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        let mut closed = v.close().map_err(|e| e.to_string())?;
        // Control page + 2 + 1 ring pages, all still mapped by the client.
        assert_eq!(closed.release(&mut g.gnttab, &mut g.store), Ok(false));
        assert_eq!(closed.grants_in_use(), 4);
        // The client unmaps when it sees the close; poll until it has.
        let deadline = g.deadline().unwrap();
        while !closed
            .release(&mut g.gnttab, &mut g.store)
            .map_err(|e| e.to_string())?
        {
            if g.now() > deadline {
                return Err("client never unmapped".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(closed.is_released());
        Ok(())
    });
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let mut v =
            Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        assert_eq!(drain_until_closed(&mut v, &g)?, 0);
        std::thread::sleep(Duration::from_millis(50));
        drop(v.close().map_err(|e| e.to_string())?);
        Ok(())
    });
    let (a, b) = (join(server), join(client));
    assert!(a.is_ok() && b.is_ok(), "server: {a:?}, client: {b:?}");
}

#[test]
fn server_close_deadline_reports_grants_in_use() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<VchanError, String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 1024, 2048)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        let dl = Some(g.now() + 100_000_000);
        let free = g.gnttab.free_count();
        let e = v
            .close_and_release(&mut g.gnttab, &mut g.store, dl)
            .unwrap_err();
        // The one control page grant stays active.
        assert_eq!(g.gnttab.free_count(), free);
        Ok(e)
    });
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let v = Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        // Ignore the close for a while, still mapping the page.
        std::thread::sleep(Duration::from_millis(800));
        assert!(!v.is_open());
        drop(v.close().map_err(|e| e.to_string())?);
        Ok(())
    });
    let (a, b) = (join(server), join(client));
    assert_eq!(a, Ok(VchanError::GrantsInUse { grants: 1 }));
    assert!(b.is_ok(), "client: {b:?}");
}

/// A server that writes a producer index beyond the ring: the client's
/// read fails with the values named, and keeps failing.
#[test]
fn hostile_server_index_breaks_the_client() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 4096, 4096)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        v.endpoint()
            .control_page()
            .store_u32(RIGHT_PROD, 0x0010_0000, Ordering::SeqCst);
        assert_eq!(drain_until_closed(&mut v, &g)?, 0);
        let dl = g.deadline();
        v.close_and_release(&mut g.gnttab, &mut g.store, dl)
            .map_err(|e| e.to_string())
    });
    let client = spawn(&host, &c, move |mut g| -> Result<VchanError, String> {
        let dl = g.deadline();
        let mut v =
            Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let deadline = g.deadline().unwrap();
        let e = loop {
            match v.read(&mut buf) {
                Ok(0) => {
                    let _ = v.wait(Some((g.now() + 10_000_000).min(deadline)));
                }
                Ok(n) => return Err(format!("read {n} bytes from a hostile ring")),
                Err(e) => break e,
            }
            if g.now() > deadline {
                return Err("hostile index not detected".into());
            }
        };
        assert_eq!(v.read(&mut buf), Err(e.clone()));
        assert_eq!(v.write(b"x"), Err(e.clone()));
        assert_eq!(
            v.endpoint().broken().cloned().map(VchanError::Protocol),
            Some(e.clone())
        );
        drop(v.close().map_err(|e| e.to_string())?);
        Ok(e)
    });
    let (a, b) = (join(server), join(client));
    assert!(a.is_ok(), "server: {a:?}");
    assert_eq!(
        b,
        Ok(VchanError::Protocol(ProtocolError::RingIndex {
            ring: RingId::Right,
            index: IndexKind::Prod,
            value: 0x0010_0000,
            min: 0,
            max: 4096
        }))
    );
}

/// A client that writes a producer index beyond the ring: the server's
/// read fails, without panicking or touching memory outside the ring.
#[test]
fn hostile_client_index_breaks_the_server() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<VchanError, String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 1024, 2048)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let e = loop {
            match v.read(&mut buf) {
                Ok(_) => {
                    v.wait(g.deadline()).map_err(|e| e.to_string())?;
                }
                Err(e) => break e,
            }
        };
        let dl = g.deadline();
        v.close_and_release(&mut g.gnttab, &mut g.store, dl)
            .map_err(|e| e.to_string())?;
        Ok(e)
    });
    let client = spawn(&host, &c, move |mut g| -> Result<(), String> {
        let dl = g.deadline();
        let mut v =
            Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
        v.write_all(b"fine", g.deadline())
            .map_err(|e| e.to_string())?;
        // Claim far more than the 1 KiB ring holds, and wake the server.
        let ctrl = v.endpoint().control_page();
        ctrl.store_u32(LEFT_PROD, 0xdead_0000, Ordering::SeqCst);
        g.ev.send(v.port()).map_err(|e| e.to_string())?;
        assert_eq!(drain_until_closed(&mut v, &g)?, 0);
        drop(v.close().map_err(|e| e.to_string())?);
        Ok(())
    });
    let (a, b) = (join(server), join(client));
    assert!(b.is_ok(), "client: {b:?}");
    let e = a.expect("server");
    assert!(
        matches!(
            e,
            VchanError::Protocol(ProtocolError::RingIndex {
                ring: RingId::Left,
                index: IndexKind::Prod,
                ..
            })
        ),
        "{e:?}"
    );
}

/// A hand-built control page with orders a client must refuse: the client
/// reports them, and leaves nothing mapped (the server can revoke).
#[test]
fn client_rejects_bad_orders_and_unmaps() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let cases: Vec<(u16, u16, ProtocolError)> = vec![
        (
            10,
            10,
            ProtocolError::BadOrders {
                left: 10,
                right: 10,
            },
        ),
        (9, 12, ProtocolError::BadOrders { left: 9, right: 12 }),
        (
            12,
            21,
            ProtocolError::BadOrders {
                left: 12,
                right: 21,
            },
        ),
        (
            10,
            20,
            ProtocolError::GrantListTooLong {
                grants: 256,
                limit: 250,
            },
        ),
    ];
    let n = cases.len();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<usize>();
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        for (i, (left, right, _)) in cases.into_iter().enumerate() {
            let page = g.d.alloc_pages(1).ok_or("no memory")?;
            let ctrl = g.d.page(page).ok_or("no page")?;
            ctrl.store_u16(LEFT_ORDER, left, Ordering::SeqCst);
            ctrl.store_u16(RIGHT_ORDER, right, Ordering::SeqCst);
            ctrl.store_u8(SRV_LIVE, 1, Ordering::SeqCst);
            let gref = g
                .gnttab
                .grant(cid, page, false)
                .map_err(|e| e.to_string())?;
            let port = g.ev.alloc_unbound(cid).map_err(|e| e.to_string())?;
            let dir = format!("data/vchan/{cid}/{}", 5000 + i);
            vchan::rendezvous::publish(&mut g.store, &dir, sid, cid, gref, port)
                .map_err(|e| e.to_string())?;
            // Once the client has been and gone, it holds nothing: the
            // grant can be revoked and our port is unbound again.
            let done = done_rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            assert_eq!(done, i);
            g.gnttab
                .end_access(gref)
                .map_err(|e| format!("case {i}: {e}"))?;
            let st = g.ev.status(port).map_err(|e| e.to_string())?;
            assert_eq!(
                st.status,
                xen::abi::event_channel::EVTCHNSTAT_UNBOUND,
                "case {i}"
            );
            let _ = g.ev.close(port);
            g.store.rm(&dir).map_err(|e| e.to_string())?;
            g.d.free_pages(page, 1);
        }
        Ok(())
    });
    let client = spawn(&host, &c, move |mut g| -> Vec<Result<(), VchanError>> {
        (0..n)
            .map(|i| {
                let dir = format!("/local/domain/{sid}/data/vchan/{cid}/{}", 5000 + i);
                let dl = g.deadline();
                let r = Vchan::client(&g.ev, &mut g.store, sid, &dir, dl).map(drop);
                done_tx.send(i).expect("server gone");
                r
            })
            .collect()
    });
    let results = join(client);
    let srv = join(server);
    let want: Vec<Result<(), VchanError>> = [
        ProtocolError::BadOrders {
            left: 10,
            right: 10,
        },
        ProtocolError::BadOrders { left: 9, right: 12 },
        ProtocolError::BadOrders {
            left: 12,
            right: 21,
        },
        ProtocolError::GrantListTooLong {
            grants: 256,
            limit: 250,
        },
    ]
    .into_iter()
    .map(|e| Err(VchanError::Protocol(e)))
    .collect();
    assert_eq!(results, want);
    assert!(srv.is_ok(), "server: {srv:?}");
}

/// A server domain that dies without closing (no liveness byte change, no
/// event): a client blocked in `read_all` notices through the event
/// channel status poll (the Qubes wrapper's check) within a second or so.
#[test]
fn client_notices_a_dead_server_domain() {
    let (host, s, c) = host();
    let (sid, cid) = (s.domid(), c.domid());
    let dir = dir_for(sid, cid);
    let cdir = dir.clone();
    let server = spawn(&host, &s, move |mut g| -> Result<(), String> {
        let mut v = Vchan::server(&g.ev, &mut g.gnttab, &mut g.store, cid, &dir, 4096, 4096)
            .map_err(|e| e.to_string())?;
        v.wait_connected(g.deadline()).map_err(|e| e.to_string())?;
        v.write_all(b"ab", g.deadline())
            .map_err(|e| e.to_string())?;
        // Die: no close, no drop.
        std::mem::forget(v);
        Ok(())
    });
    let client = spawn(
        &host,
        &c,
        move |mut g| -> Result<(VchanError, u64), String> {
            let dl = g.deadline();
            let mut v =
                Vchan::client(&g.ev, &mut g.store, sid, &cdir, dl).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 3];
            let t0 = g.now();
            let e = v.read_all(&mut buf, None).unwrap_err();
            assert_eq!(&buf[..2], b"ab");
            assert_eq!(v.peer_state(), PeerState::Closed);
            Ok((e, g.now() - t0))
        },
    );
    assert_eq!(join(server), Ok(()));
    std::thread::sleep(Duration::from_millis(100));
    host.destroy_domain(sid);
    let (e, waited) = join(client).expect("client");
    assert_eq!(e, VchanError::PeerClosed);
    assert!(waited < 10_000_000_000, "took {waited} ns");
}
