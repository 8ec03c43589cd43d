//! Connection tracking and NAT: the flow table.
//!
//! Every flow a client opens is one slab entry, found by two keys: the
//! client-side tuple (outbound packets) and the uplink-side reply tuple
//! (inbound packets: remote -> NAT address and port). Both indexes are
//! hash tables keyed with a secret SipHash key ([`KeyedState`]), so a
//! client cannot aim for collisions.
//!
//! Invariants:
//! - the slab, the free list and both indexes are allocated at full
//!   capacity in [`ConnTrack::new`]: inserting, looking up and removing
//!   never allocate (the per-client counters grow only when a new client
//!   id first appears);
//! - every live slot is in both indexes exactly once, and nothing else is;
//! - no two flows share a reply tuple (NAT ports are unique per
//!   protocol, NAT address, remote address and remote port, as Linux
//!   allocates them);
//! - a client has at most `max_flows_per_client` flows, so one client
//!   filling its quota cannot take another's.
//!
//! Timeouts (Linux nf_conntrack defaults, shortened where a small
//! unikernel should not hold state for days): TCP opening 120 s,
//! established 2 h, closing (FIN seen) 120 s, closed by RST 10 s; UDP 30 s
//! until the remote answers, 180 s after; ICMP echo 30 s. An expired flow
//! is dead at once (lookups ignore it) and its slot is reclaimed by an
//! incremental sweep: [`ConnTrack::expire`] visits a bounded number of
//! slots per call, so the whole table is covered about once a second.

use alloc::vec::Vec;
use core::hash::{BuildHasher, Hash, Hasher};
use core::net::IpAddr;

use hashbrown::HashMap;

use super::hasher::KeyedState;
use super::ClientId;

const NS: u64 = 1_000_000_000;
/// TCP before the handshake completes.
pub const TCP_OPENING_NS: u64 = 120 * NS;
/// TCP established.
pub const TCP_ESTABLISHED_NS: u64 = 2 * 3600 * NS;
/// TCP after a FIN.
pub const TCP_CLOSING_NS: u64 = 120 * NS;
/// TCP after a RST.
pub const TCP_CLOSED_NS: u64 = 10 * NS;
/// UDP before the remote answered.
pub const UDP_UNREPLIED_NS: u64 = 30 * NS;
/// UDP once answered.
pub const UDP_REPLIED_NS: u64 = 180 * NS;
/// ICMP echo.
pub const ICMP_NS: u64 = 30 * NS;
/// How often the sweep runs.
const SWEEP_EVERY_NS: u64 = NS / 10;

const TCP: u8 = 6;
const UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// A flow's 5-tuple as one direction's packets carry it. For ICMP echo
/// the identifier is both ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP: identifier).
    pub sport: u16,
    /// Destination port (ICMP: identifier).
    pub dport: u16,
}

/// The tuple packed into one buffer and hashed with one `write` (13 bytes
/// for IPv4, 38 for IPv6): the keyed hasher then runs two or five
/// compression rounds per lookup instead of one call per field. Equal keys
/// pack equally, so this agrees with `Eq`.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 38];
        b[0] = self.proto;
        b[1..3].copy_from_slice(&self.sport.to_ne_bytes());
        b[3..5].copy_from_slice(&self.dport.to_ne_bytes());
        let n = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                b[5..9].copy_from_slice(&s.octets());
                b[9..13].copy_from_slice(&d.octets());
                13
            }
            (s, d) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    IpAddr::V6(a) => a.octets(),
                };
                b[5..21].copy_from_slice(&v6(s));
                b[21..37].copy_from_slice(&v6(d));
                b[37] = u8::from(s.is_ipv4()) | (u8::from(d.is_ipv4()) << 1);
                38
            }
        };
        state.write(&b[..n]);
    }
}

impl FlowKey {
    /// The tuple of the other direction.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// Which way a packet goes relative to the flow's opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client -> internet.
    Original,
    /// Internet -> client.
    Reply,
}

/// A TCP flow's state, as far as the firewall tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// SYN sent, no answer yet.
    SynSent,
    /// SYN+ACK seen from the remote.
    SynRecv,
    /// Handshake complete.
    Established,
    /// A FIN seen in one direction.
    FinWait,
    /// FINs seen in both directions.
    TimeWait,
    /// Reset.
    Closed,
}

/// Table limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Flows in all.
    pub max_flows: usize,
    /// Flows per client.
    pub max_flows_per_client: usize,
    /// NAT ports: the lowest port allocated when the client's own port is
    /// taken.
    pub port_min: u16,
    /// The highest.
    pub port_max: u16,
}

impl Default for Limits {
    /// 20,000 flows (the 32 MiB budget's design point), 2,000 per client.
    fn default() -> Self {
        Limits {
            max_flows: 20_000,
            max_flows_per_client: 2_000,
            port_min: 1024,
            port_max: 65535,
        }
    }
}

/// Why a flow could not be inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The client has its quota of flows.
    ClientFull,
    /// The table is full.
    TableFull,
    /// No NAT port is free toward that remote endpoint.
    NoPort,
    /// A flow with this client-side tuple exists.
    Exists,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Flows inserted.
    pub inserted: u64,
    /// Flows that timed out.
    pub expired: u64,
    /// Flows removed otherwise (client gone, reload, clear).
    pub removed: u64,
    /// Inserts refused: client quota.
    pub client_full: u64,
    /// Inserts refused: table full.
    pub table_full: u64,
    /// Inserts refused: no port.
    pub no_port: u64,
}

/// One flow.
#[derive(Clone, Debug)]
pub struct Entry {
    client: ClientId,
    orig: FlowKey,
    reply: FlowKey,
    tcp: TcpState,
    replied: bool,
    fin_orig: bool,
    fin_reply: bool,
    expires: u64,
    /// Packets (original, reply).
    pub packets: [u64; 2],
    /// Bytes (original, reply).
    pub bytes: [u64; 2],
}

impl Entry {
    /// The owning client.
    pub fn client(&self) -> ClientId {
        self.client
    }
    /// The client-side tuple.
    pub fn original(&self) -> &FlowKey {
        &self.orig
    }
    /// The uplink-side reply tuple (remote -> NAT address).
    pub fn reply(&self) -> &FlowKey {
        &self.reply
    }
    /// The NAT address.
    pub fn nat_addr(&self) -> IpAddr {
        self.reply.dst
    }
    /// The NAT port (ICMP: identifier).
    pub fn nat_port(&self) -> u16 {
        self.reply.dport
    }
    /// The TCP state (meaningless for other protocols).
    pub fn tcp_state(&self) -> TcpState {
        self.tcp
    }
    /// When it expires (Xen time, ns).
    pub fn expires(&self) -> u64 {
        self.expires
    }
}

/// A flow's slot number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowId(u32);

/// The table (see the module doc).
pub struct ConnTrack {
    limits: Limits,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_orig: HashMap<FlowKey, u32, KeyedState>,
    by_reply: HashMap<FlowKey, u32, KeyedState>,
    per_client: Vec<u32>,
    port_key: KeyedState,
    sweep_at: usize,
    next_sweep: u64,
    len: usize,
    stats: Stats,
}

impl ConnTrack {
    /// A table with every structure allocated for `limits.max_flows`.
    pub fn new(limits: Limits, seed: [u8; 16]) -> ConnTrack {
        let n = limits.max_flows.max(1);
        let mut port_seed = seed;
        port_seed[0] ^= 0xa5;
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        ConnTrack {
            slots,
            free: (0..n as u32).rev().collect(),
            // Twice the entries: hashbrown rehashes in place (without
            // allocating) only while at most half full, so tombstones left
            // by removals can never make an insert grow the table.
            by_orig: HashMap::with_capacity_and_hasher(2 * n, KeyedState::new(seed)),
            by_reply: HashMap::with_capacity_and_hasher(2 * n, KeyedState::new(seed)),
            per_client: Vec::new(),
            port_key: KeyedState::new(port_seed),
            sweep_at: 0,
            next_sweep: 0,
            len: 0,
            stats: Stats::default(),
            limits,
        }
    }

    /// Bytes the table holds per flow it can track, for a table of
    /// `max_flows`: the slab entry and its free-list slot, plus both index
    /// tables, whose buckets hashbrown rounds up to the power of two above
    /// 8/7 of the capacity asked for (one control byte per bucket). All of
    /// it is allocated at start.
    pub fn memory_per_flow_for(max_flows: usize) -> usize {
        let n = max_flows.max(1);
        let buckets = (2 * n * 8 / 7).next_power_of_two();
        let index = buckets * (core::mem::size_of::<(FlowKey, u32)>() + 1);
        core::mem::size_of::<Option<Entry>>() + 4 + (2 * index).div_ceil(n)
    }

    /// [`ConnTrack::memory_per_flow_for`] the default limits.
    pub fn memory_per_flow() -> usize {
        Self::memory_per_flow_for(Limits::default().max_flows)
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Flows of `client`.
    pub fn client_flow_count(&self, client: ClientId) -> usize {
        self.per_client.get(client.0 as usize).copied().unwrap_or(0) as usize
    }

    /// The flow for an outbound packet's tuple, if live at `now`.
    pub fn lookup_outbound(&self, key: &FlowKey) -> Option<FlowId> {
        self.by_orig.get(key).map(|&i| FlowId(i))
    }

    /// The flow for an inbound packet's tuple.
    pub fn lookup_inbound(&self, key: &FlowKey) -> Option<FlowId> {
        self.by_reply.get(key).map(|&i| FlowId(i))
    }

    /// If flow `id` has expired at `now`, remove it (its tuple may open a
    /// new flow at once) and return true.
    pub fn reap_if_expired(&mut self, id: FlowId, now: u64) -> bool {
        let expired = self
            .slots
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .is_some_and(|e| now >= e.expires);
        if expired {
            self.remove_slot(id.0, true);
        }
        expired
    }

    /// A flow.
    pub fn entry(&self, id: FlowId) -> Option<&Entry> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    /// Track a new flow of `client` with client-side tuple `orig`,
    /// translated to `nat_addr` and a free port.
    pub fn insert(
        &mut self,
        client: ClientId,
        orig: FlowKey,
        nat_addr: IpAddr,
        now: u64,
    ) -> Result<FlowId, InsertError> {
        if self.by_orig.contains_key(&orig) {
            return Err(InsertError::Exists);
        }
        if self.client_flow_count(client) >= self.limits.max_flows_per_client {
            self.stats.client_full += 1;
            return Err(InsertError::ClientFull);
        }
        if self.free.is_empty() {
            self.stats.table_full += 1;
            return Err(InsertError::TableFull);
        }
        let Some(port) = self.free_port(&orig, nat_addr) else {
            self.stats.no_port += 1;
            return Err(InsertError::NoPort);
        };
        let reply = FlowKey {
            proto: orig.proto,
            src: orig.dst,
            dst: nat_addr,
            sport: if orig.proto == TCP || orig.proto == UDP {
                orig.dport
            } else {
                port
            },
            dport: port,
        };
        let slot = self.free.pop().expect("checked non-empty");
        let tcp = TcpState::SynSent;
        let expires = now + initial_timeout(orig.proto);
        self.slots[slot as usize] = Some(Entry {
            client,
            orig,
            reply,
            tcp,
            replied: false,
            fin_orig: false,
            fin_reply: false,
            expires,
            packets: [0; 2],
            bytes: [0; 2],
        });
        self.by_orig.insert(orig, slot);
        self.by_reply.insert(reply, slot);
        let ci = client.0 as usize;
        if self.per_client.len() <= ci {
            self.per_client.resize(ci + 1, 0);
        }
        self.per_client[ci] += 1;
        self.len += 1;
        self.stats.inserted += 1;
        Ok(FlowId(slot))
    }

    /// Account a packet of flow `id`: state, counters, expiry. False if
    /// the flow has expired (it is removed; the caller treats the packet
    /// as belonging to no flow).
    pub fn on_packet(
        &mut self,
        id: FlowId,
        dir: Dir,
        tcp_flags: Option<u8>,
        len: usize,
        now: u64,
    ) -> bool {
        let Some(e) = self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return false;
        };
        if now >= e.expires {
            self.remove_slot(id.0, true);
            return false;
        }
        let d = usize::from(dir == Dir::Reply);
        e.packets[d] += 1;
        e.bytes[d] += len as u64;
        if dir == Dir::Reply {
            e.replied = true;
        }
        let timeout = match (e.orig.proto, tcp_flags) {
            (TCP, Some(fl)) => {
                e.tcp = tcp_next(e, dir, fl);
                match e.tcp {
                    TcpState::SynSent | TcpState::SynRecv => TCP_OPENING_NS,
                    TcpState::Established => TCP_ESTABLISHED_NS,
                    TcpState::FinWait | TcpState::TimeWait => TCP_CLOSING_NS,
                    TcpState::Closed => TCP_CLOSED_NS,
                }
            }
            (UDP, _) if e.replied => UDP_REPLIED_NS,
            (UDP, _) => UDP_UNREPLIED_NS,
            _ => ICMP_NS,
        };
        e.expires = now + timeout;
        true
    }

    /// The next time [`ConnTrack::expire`] has work, if any flow exists.
    pub fn next_expiry(&self) -> Option<u64> {
        (self.len > 0).then_some(self.next_sweep)
    }

    /// Reclaim expired flows: visit at most `max_work` slots (more if the
    /// table is large, so a sweep covers it in about a second). Returns
    /// how many expired.
    pub fn expire(&mut self, now: u64, max_work: usize) -> usize {
        if now < self.next_sweep || self.len == 0 {
            return 0;
        }
        self.next_sweep = now + SWEEP_EVERY_NS;
        let n = self.slots.len();
        let work = max_work.max(n / 10 + 1).min(n);
        let mut gone = 0;
        for _ in 0..work {
            let i = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % n;
            if self.slots[i].as_ref().is_some_and(|e| now >= e.expires) {
                self.remove_slot(i as u32, true);
                gone += 1;
            }
        }
        gone
    }

    /// Drop every flow of `client`.
    pub fn remove_client(&mut self, client: ClientId) {
        self.retain_client(client, |_| false);
    }

    /// Keep the flows of `client` for which `keep` holds.
    pub fn retain_client(&mut self, client: ClientId, mut keep: impl FnMut(&Entry) -> bool) {
        if self.client_flow_count(client) == 0 {
            return;
        }
        for i in 0..self.slots.len() {
            let cut = match &self.slots[i] {
                Some(e) if e.client == client => !keep(e),
                _ => false,
            };
            if cut {
                self.remove_slot(i as u32, false);
            }
        }
    }

    /// Drop every flow.
    pub fn clear(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                self.remove_slot(i as u32, false);
            }
        }
    }

    fn remove_slot(&mut self, slot: u32, expired: bool) {
        let Some(e) = self.slots[slot as usize].take() else {
            return;
        };
        self.by_orig.remove(&e.orig);
        self.by_reply.remove(&e.reply);
        self.per_client[e.client.0 as usize] -= 1;
        self.free.push(slot);
        self.len -= 1;
        if expired {
            self.stats.expired += 1;
        } else {
            self.stats.removed += 1;
        }
    }

    /// A NAT port for `orig` on `nat`: the client's own if free (as Linux
    /// prefers), else a keyed pseudo-random start in the range, probing a
    /// bounded number of ports.
    fn free_port(&self, orig: &FlowKey, nat: IpAddr) -> Option<u16> {
        let icmp = orig.proto != TCP && orig.proto != UDP;
        let taken = |p: u16| {
            let k = FlowKey {
                proto: orig.proto,
                src: orig.dst,
                dst: nat,
                sport: if icmp { p } else { orig.dport },
                dport: p,
            };
            self.by_reply.contains_key(&k)
        };
        let (lo, hi) = if icmp {
            (0u16, u16::MAX)
        } else {
            (self.limits.port_min, self.limits.port_max)
        };
        if orig.sport >= lo && orig.sport <= hi && !taken(orig.sport) {
            return Some(orig.sport);
        }
        let range = u32::from(hi - lo) + 1;
        let start = (self.port_key.hash_one(orig) % u64::from(range)) as u32;
        (0..range.min(4096))
            .map(|k| lo + ((start + k) % range) as u16)
            .find(|&p| !taken(p))
    }
}

fn initial_timeout(proto: u8) -> u64 {
    match proto {
        TCP => TCP_OPENING_NS,
        UDP => UDP_UNREPLIED_NS,
        _ => ICMP_NS,
    }
}

fn tcp_next(e: &mut Entry, dir: Dir, fl: u8) -> TcpState {
    if fl & TCP_RST != 0 {
        return TcpState::Closed;
    }
    if fl & TCP_FIN != 0 {
        match dir {
            Dir::Original => e.fin_orig = true,
            Dir::Reply => e.fin_reply = true,
        }
    }
    if e.fin_orig && e.fin_reply {
        return TcpState::TimeWait;
    }
    if e.fin_orig || e.fin_reply {
        return TcpState::FinWait;
    }
    match (e.tcp, dir) {
        (TcpState::SynSent, Dir::Reply) if fl & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK => {
            TcpState::SynRecv
        }
        (TcpState::SynRecv, Dir::Original) if fl & TCP_ACK != 0 => TcpState::Established,
        (TcpState::Closed, Dir::Original) if fl & TCP_SYN != 0 => TcpState::SynSent,
        (s, _) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figure reported per flow counts what the tables really hold:
    /// the index tables' capacities as hashbrown sized them.
    #[test]
    fn memory_per_flow_counts_the_real_tables() {
        for n in [100, 2000, 20_000] {
            let t = ConnTrack::new(
                Limits {
                    max_flows: n,
                    ..Limits::default()
                },
                [7; 16],
            );
            let buckets = |cap: usize| (cap + 1).next_power_of_two();
            let per = core::mem::size_of::<(FlowKey, u32)>() + 1;
            let index = (buckets(t.by_orig.capacity()) + buckets(t.by_reply.capacity())) * per;
            let real = t.slots.capacity() * core::mem::size_of::<Option<Entry>>()
                + t.free.capacity() * 4
                + index;
            let claimed = ConnTrack::memory_per_flow_for(n) * n;
            assert!(
                claimed >= real && claimed <= real + real / 50,
                "{n}: claimed {claimed}, real {real}"
            );
        }
    }
    use proptest::prelude::*;

    fn key(sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            proto: TCP,
            src: "10.137.0.10".parse().unwrap(),
            dst: "198.51.100.10".parse().unwrap(),
            sport,
            dport,
        }
    }
    const NAT: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(10, 138, 0, 5));

    fn table(max: usize, per: usize) -> ConnTrack {
        ConnTrack::new(
            Limits {
                max_flows: max,
                max_flows_per_client: per,
                ..Limits::default()
            },
            [7; 16],
        )
    }

    #[test]
    fn both_lookups_find_the_flow_and_ports_stay_unique() {
        let mut t = table(16, 16);
        let a = t.insert(ClientId(0), key(4000, 80), NAT, 0).unwrap();
        // Another client with the same port to the same place.
        let mut k2 = key(4000, 80);
        k2.src = "10.137.0.11".parse().unwrap();
        let b = t.insert(ClientId(1), k2, NAT, 0).unwrap();
        let (ea, eb) = (t.entry(a).unwrap().clone(), t.entry(b).unwrap().clone());
        assert_eq!(ea.nat_port(), 4000, "own port kept when free");
        assert_ne!(ea.nat_port(), eb.nat_port());
        assert_eq!(t.lookup_outbound(&key(4000, 80)), Some(a));
        assert_eq!(t.lookup_inbound(ea.reply()), Some(a));
        assert_eq!(t.lookup_inbound(eb.reply()), Some(b));
        assert_eq!(
            t.insert(ClientId(0), key(4000, 80), NAT, 0),
            Err(InsertError::Exists)
        );
    }

    #[test]
    fn quotas_are_per_client_and_nothing_grows() {
        let mut t = table(64, 8);
        let caps = (
            t.by_orig.capacity(),
            t.by_reply.capacity(),
            t.slots.capacity(),
        );
        for p in 0..20 {
            let r = t.insert(ClientId(0), key(1000 + p, 80), NAT, 0);
            assert_eq!(r.is_ok(), p < 8);
        }
        assert_eq!(t.stats().client_full, 12);
        let mut k = key(1, 80);
        k.src = "10.137.0.11".parse().unwrap();
        for p in 0..8 {
            k.sport = 2000 + p;
            t.insert(ClientId(1), k, NAT, 0).unwrap();
        }
        assert_eq!(
            (
                t.client_flow_count(ClientId(0)),
                t.client_flow_count(ClientId(1))
            ),
            (8, 8)
        );
        assert_eq!(
            caps,
            (
                t.by_orig.capacity(),
                t.by_reply.capacity(),
                t.slots.capacity()
            )
        );
    }

    #[test]
    fn port_exhaustion_is_bounded() {
        let mut t = ConnTrack::new(
            Limits {
                max_flows: 64,
                max_flows_per_client: 64,
                port_min: 5000,
                port_max: 5009,
            },
            [1; 16],
        );
        for p in 0..10 {
            t.insert(ClientId(0), key(10 + p, 80), NAT, 0).unwrap();
        }
        assert_eq!(
            t.insert(ClientId(0), key(99, 80), NAT, 0),
            Err(InsertError::NoPort)
        );
        // Another remote port has its own port space.
        assert!(t.insert(ClientId(0), key(99, 443), NAT, 0).is_ok());
    }

    #[test]
    fn tcp_states_and_timeouts() {
        let mut t = table(4, 4);
        let f = t.insert(ClientId(0), key(1, 80), NAT, 0).unwrap();
        assert!(t.on_packet(f, Dir::Original, Some(TCP_SYN), 60, 0));
        assert!(t.on_packet(f, Dir::Reply, Some(TCP_SYN | TCP_ACK), 60, 1));
        assert!(t.on_packet(f, Dir::Original, Some(TCP_ACK), 60, 2));
        assert_eq!(t.entry(f).unwrap().tcp_state(), TcpState::Established);
        assert_eq!(t.entry(f).unwrap().expires(), 2 + TCP_ESTABLISHED_NS);
        assert!(t.on_packet(f, Dir::Original, Some(TCP_FIN | TCP_ACK), 60, 3));
        assert_eq!(t.entry(f).unwrap().tcp_state(), TcpState::FinWait);
        assert!(t.on_packet(f, Dir::Reply, Some(TCP_FIN | TCP_ACK), 60, 4));
        assert_eq!(t.entry(f).unwrap().tcp_state(), TcpState::TimeWait);
        assert!(t.on_packet(f, Dir::Reply, Some(TCP_RST), 60, 5));
        assert_eq!(t.entry(f).unwrap().expires(), 5 + TCP_CLOSED_NS);
        // Expired: reaped on sight, and the next packet finds it gone.
        let g = t.insert(ClientId(0), key(2, 80), NAT, 0).unwrap();
        assert!(!t.reap_if_expired(g, TCP_OPENING_NS - 1));
        assert!(t.reap_if_expired(g, TCP_OPENING_NS));
        assert!(t.lookup_outbound(&key(2, 80)).is_none());
        assert!(!t.on_packet(f, Dir::Original, Some(TCP_ACK), 60, 5 + TCP_CLOSED_NS));
        assert_eq!(t.len(), 0);
        assert!(t.lookup_outbound(&key(1, 80)).is_none());
    }

    #[test]
    fn udp_lives_longer_once_answered_and_the_sweep_reclaims() {
        let mut t = table(8, 8);
        let mut k = key(53, 53);
        k.proto = UDP;
        let f = t.insert(ClientId(0), k, NAT, 0).unwrap();
        t.on_packet(f, Dir::Original, None, 60, 0);
        assert_eq!(t.entry(f).unwrap().expires(), UDP_UNREPLIED_NS);
        t.on_packet(f, Dir::Reply, None, 60, 1);
        assert_eq!(t.entry(f).unwrap().expires(), 1 + UDP_REPLIED_NS);
        assert_eq!(t.expire(UDP_REPLIED_NS, 100), 0);
        assert_eq!(t.expire(2 + UDP_REPLIED_NS + SWEEP_EVERY_NS, 100), 1);
        assert!(t.is_empty());
        assert_eq!(t.stats().expired, 1);
    }

    #[test]
    fn retain_cuts_only_what_is_denied() {
        let mut t = table(8, 8);
        t.insert(ClientId(0), key(1, 80), NAT, 0).unwrap();
        t.insert(ClientId(0), key(2, 443), NAT, 0).unwrap();
        t.insert(ClientId(1), key(3, 80), NAT, 0).unwrap();
        t.retain_client(ClientId(0), |e| e.original().dport == 443);
        assert_eq!(t.client_flow_count(ClientId(0)), 1);
        assert_eq!(t.client_flow_count(ClientId(1)), 1);
        t.remove_client(ClientId(1));
        assert_eq!(t.len(), 1);
        assert!(ConnTrack::memory_per_flow() < 512);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u16, u16),
        Packet(u8, u16, bool),
        Expire(u16),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u16..20, 0u16..3).prop_map(|(c, s, d)| Op::Insert(c, s, d)),
            (0u8..3, 0u16..20, any::<bool>()).prop_map(|(c, s, r)| Op::Packet(c, s, r)),
            (0u16..200).prop_map(Op::Expire),
            (0u8..3).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Random operations keep both indexes consistent with the slab,
        /// the per-client counts right and the caps respected.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..200)) {
            let mut t = ConnTrack::new(Limits { max_flows: 24, max_flows_per_client: 10, port_min: 1024, port_max: 1040 }, [3; 16]);
            let mut now = 0u64;
            let k = |c: u8, s: u16, d: u16| FlowKey {
                proto: if s % 2 == 0 { TCP } else { UDP },
                src: IpAddr::V4(core::net::Ipv4Addr::new(10, 137, 0, c)),
                dst: "198.51.100.10".parse().unwrap(),
                sport: s,
                dport: 80 + d,
            };
            for o in ops {
                now += NS;
                match o {
                    Op::Insert(c, s, d) => { let _ = t.insert(ClientId(c.into()), k(c, s, d), NAT, now); }
                    Op::Packet(c, s, r) => {
                        if let Some(f) = t.lookup_outbound(&k(c, s, 0)) {
                            let dir = if r { Dir::Reply } else { Dir::Original };
                            t.on_packet(f, dir, Some(TCP_ACK), 100, now);
                        }
                    }
                    Op::Expire(dt) => { now += u64::from(dt) * NS; t.expire(now, 64); }
                    Op::Remove(c) => t.remove_client(ClientId(c.into())),
                }
                let live: Vec<_> = t.slots.iter().flatten().collect();
                prop_assert_eq!(live.len(), t.len());
                prop_assert_eq!(t.by_orig.len(), t.len());
                prop_assert_eq!(t.by_reply.len(), t.len());
                prop_assert!(t.len() <= 24);
                for e in &live {
                    prop_assert!(t.lookup_outbound(e.original()).is_some());
                    prop_assert!(t.lookup_inbound(e.reply()).is_some());
                }
                for c in 0..3u32 {
                    let n = live.iter().filter(|e| e.client() == ClientId(c)).count();
                    prop_assert_eq!(n, t.client_flow_count(ClientId(c)));
                    prop_assert!(n <= 10);
                }
            }
        }
    }
}
