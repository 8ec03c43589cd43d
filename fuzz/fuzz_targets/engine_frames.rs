//! Fuzz the firewall engine with frames from both sides: a sequence of
//! arbitrary frames, each from the uplink or from one of two clients,
//! through `Engine::handle`, with timers run in between. The engine is set
//! up as in production (uplink configured and resolved, two clients with
//! allow-all rules, the second with a `net.fake-ip` mapping), so well-formed prefixes reach NAT and connection
//! tracking. Nothing may panic, every frame the engine emits is at least
//! an Ethernet header, and every pool page comes back.
//!
//! Input: chunks of `[side, len, bytes...]`; `side` bit 0-1 picks the
//! interface, bit 2 patches the Ethernet header (addresses, IPv4 or IPv6
//! ethertype) so the IP layers get exercised, bit 3 runs the timers.
#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};

use firewall::engine::{
    AddressMap, ClientConfig, ClientId, Engine, EngineConfig, Family, Iface, Output, UplinkConfig,
    CLIENT_SIDE_MAC,
};
use libfuzzer_sys::fuzz_target;
use xen::frame::Frame;
use xen::memory::pool::PagePool;
use xen::memory::LocalRam;

const UP_MAC: [u8; 6] = [0, 0x16, 0x3e, 0x5e, 0x6c, 0];
const GW_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 1];
const VM_MAC: [u8; 6] = [0, 0x16, 0x3e, 0x5e, 0x6c, 0];
const POOL_PAGES: usize = 512;

struct Sink(Vec<Frame>);

impl Output for Sink {
    fn emit(&mut self, _to: Iface, frame: Frame) -> Result<(), Frame> {
        if self.0.len() >= 64 {
            return Err(frame);
        }
        self.0.push(frame);
        Ok(())
    }
}

struct Bed {
    pool: PagePool,
    engine: Engine,
    clients: [ClientId; 2],
    now: u64,
}

thread_local! {
    static RAM: &'static LocalRam = Box::leak(Box::new(LocalRam::new(POOL_PAGES)));
    static POOL: RefCell<Option<PagePool>> = const { RefCell::new(None) };
}

fn bed() -> Bed {
    let pool = POOL
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| RAM.with(|r| PagePool::new(*r, POOL_PAGES).expect("pool")));
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_uplink(Some(UplinkConfig {
        ip: Ipv4Addr::new(10, 138, 0, 5),
        gateway: Ipv4Addr::new(10, 138, 0, 1),
        ip6: Some("fd00:1::5".parse().unwrap()),
        gateway6: None,
        dns: vec![IpAddr::V4(Ipv4Addr::new(10, 139, 1, 1))],
    }));
    engine.set_uplink_link(Some((UP_MAC, 1500)));
    let mut clients = [ClientId(0); 2];
    for (i, c) in clients.iter_mut().enumerate() {
        let ip = Ipv4Addr::new(10, 137, 0, 10 + i as u8);
        *c = engine
            .add_client(ClientConfig {
                ip,
                ip6: Some(format!("fd09::{}", 10 + i).parse().unwrap()),
                mac: VM_MAC,
                gateway: Ipv4Addr::new(10, 137, 0, 1),
                gateway6: Some("fd09::1".parse().unwrap()),
            })
            .expect("client");
        let rules = rules::RuleSet::from_entries(
            &ip.to_string(),
            &[("policy", "drop"), ("0000", "action=accept")],
        )
        .expect("rules");
        engine.set_rules(*c, Family::V4, rules);
    }
    // The second client has a net.fake-ip mapping, so the visible-address
    // rewrites are exercised too.
    engine.set_address_map(
        clients[1],
        AddressMap::Mapped {
            visible_ip: Ipv4Addr::new(192, 168, 7, 11),
            visible_gateway: Ipv4Addr::new(192, 168, 7, 1),
        },
    );
    Bed {
        pool,
        engine,
        clients,
        now: 1_000_000_000,
    }
}

fn resolve(b: &mut Bed, out: &mut Sink) {
    b.engine.poll(b.now, &mut b.pool, out);
    let mut reply = [0u8; 42];
    reply[0..6].copy_from_slice(&UP_MAC);
    reply[6..12].copy_from_slice(&GW_MAC);
    reply[12..14].copy_from_slice(&[8, 6]);
    reply[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    reply[22..28].copy_from_slice(&GW_MAC);
    reply[28..32].copy_from_slice(&[10, 138, 0, 1]);
    reply[32..38].copy_from_slice(&UP_MAC);
    reply[38..42].copy_from_slice(&[10, 138, 0, 5]);
    if let Ok(f) = Frame::from_bytes(&mut b.pool, &reply) {
        b.engine.handle(b.now, Iface::Uplink, f, &mut b.pool, out);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = bed();
    let mut out = Sink(Vec::new());
    resolve(&mut b, &mut out);
    let mut rest = data;
    while rest.len() >= 2 {
        let side = rest[0];
        let len = usize::from(rest[1]) * 6;
        rest = &rest[2..];
        let n = len.min(rest.len());
        let mut bytes = rest[..n].to_vec();
        rest = &rest[n..];
        let from = match side & 3 {
            0 | 3 => Iface::Uplink,
            1 => Iface::Client(b.clients[0]),
            _ => Iface::Client(b.clients[1]),
        };
        if side & 4 != 0 && bytes.len() >= 14 {
            let (dst, src) = match from {
                Iface::Uplink => (UP_MAC, GW_MAC),
                Iface::Client(_) => (CLIENT_SIDE_MAC, VM_MAC),
            };
            bytes[0..6].copy_from_slice(&dst);
            bytes[6..12].copy_from_slice(&src);
            let v6 = side & 0x10 != 0;
            bytes[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[8, 0] });
            if let Some(b14) = bytes.get_mut(14) {
                *b14 = if v6 { 0x60 } else { 0x45 };
            }
        }
        b.now += u64::from(side >> 5) * 1_000_000_000;
        if bytes.is_empty() {
            continue;
        }
        if let Ok(f) = Frame::from_bytes(&mut b.pool, &bytes) {
            b.engine.handle(b.now, from, f, &mut b.pool, &mut out);
        }
        if side & 8 != 0 {
            b.engine.poll(b.now, &mut b.pool, &mut out);
        }
        for f in out.0.drain(..) {
            assert!(f.len() >= 14, "emitted a runt frame");
            f.free(&mut b.pool);
        }
    }
    for f in out.0.drain(..) {
        f.free(&mut b.pool);
    }
    assert_eq!(b.pool.in_use(), 0, "pool pages leaked");
    POOL.with(|p| *p.borrow_mut() = Some(b.pool));
});
