//! The packet engine (sans-IO): frames in from an interface, frames out to
//! interfaces. It owns no device: the platform loop hands it each frame a
//! driver received ([`Engine::handle`]), runs its timers ([`Engine::poll`])
//! and queues what it emits ([`Output`]) on the drivers.
//!
//! Every forwarded frame is rewritten in place: the engine reads the
//! headers once into a stack buffer (they may span pool pages), decides,
//! patches the buffer (MACs, NAT address and port, TTL, checksums updated
//! incrementally) and writes back only the header bytes. Payload bytes are
//! never touched, so the only copy of a forwarded packet is the grant copy
//! the drivers make, and GSO super-packets pass whole.
//!
//! Policy (Linux sys-firewall parity, see `docs/engine.md`):
//! - a client sends only from its own MAC and addresses; the uplink never
//!   from a client's or the firewall's own address;
//! - new flows are checked once against the client's rules; replies follow
//!   connection tracking; nothing enters from the uplink without a flow;
//! - client-to-client and client-to-firewall traffic is dropped (the
//!   firewall answers ARP, neighbour discovery and pings only);
//! - `drop` rules answer ICMP administratively prohibited, rate-limited.
//!
//! Submodules each do one job and know nothing of Xen:
//! - [`csum`]: RFC 1071/1624 checksum arithmetic, full and partial;
//! - [`icmp`], [`arp`], [`ndp`]: building and reading ICMP/ICMPv6, ARP
//!   and neighbour discovery packets;
//! - [`ratelimit`]: token buckets for generated packets;
//! - [`hasher`], [`conntrack`]: the keyed flow table, TCP states, NAT
//!   port allocation, per-client caps and expiry;
//! - [`dns`], [`resolver`]: the DNS codec and the `dsthost` resolver;
//! - [`stats`] holds the counters.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rules::RuleSet;
use xen::frame::Frame;
use xen::memory::pool::PagePool;

pub mod arp;
pub mod build;
pub mod conntrack;
pub mod csum;
pub mod dns;
pub mod hasher;
pub mod icmp;
pub mod ndp;
mod path;
pub mod ratelimit;
pub mod resolver;
pub mod stats;

pub use stats::{ClientStats, Drop, EngineStats};

/// A client interface, as the engine numbers them: an index into its
/// client table. Stable while the client is attached; reused afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

/// Where a frame came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Iface {
    /// The netfront toward sys-net.
    Uplink,
    /// One client's netback vif.
    Client(ClientId),
}

/// Where the engine puts the frames it forwards or generates. The platform
/// queues them for the drivers; `Err(frame)` gives a frame back when the
/// queue is full (the engine frees it and counts [`Drop::QueueFull`]).
pub trait Output {
    /// Queue `frame` for `to`.
    fn emit(&mut self, to: Iface, frame: Frame) -> Result<(), Frame>;
}

/// The MAC the firewall uses toward its clients: what the Qubes vif
/// backend presents (`fe:ff:ff:ff:ff:ff`), so clients see the same
/// gateway MAC as behind the Linux sys-firewall.
pub const CLIENT_SIDE_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];

/// The firewall's own uplink configuration (QubesDB `/qubes-ip`,
/// `/qubes-gateway`, `/qubes-primary-dns`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Our IPv4 address toward sys-net: the NAT address.
    pub ip: Ipv4Addr,
    /// sys-net's address: every packet goes there.
    pub gateway: Ipv4Addr,
    /// Our IPv6 address, if IPv6 is enabled.
    pub ip6: Option<Ipv6Addr>,
    /// sys-net's IPv6 address.
    pub gateway6: Option<Ipv6Addr>,
    /// The DNS servers (`specialtarget=dns`, `dsthost` resolution).
    pub dns: Vec<IpAddr>,
}

/// One client, as the toolstack and QubesDB describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client's address (backend `ip` key; the rules' key).
    pub ip: Ipv4Addr,
    /// The client's IPv6 address, if any.
    pub ip6: Option<Ipv6Addr>,
    /// The client's MAC (backend `mac` key).
    pub mac: [u8; 6],
    /// The gateway address the client uses: ours toward clients
    /// (`/qubes-netvm-gateway`).
    pub gateway: Ipv4Addr,
    /// Our IPv6 gateway address toward clients, if any.
    pub gateway6: Option<Ipv6Addr>,
}

/// A client's `net.fake-ip` mapping (QubesDB `/mapped-ip/<real ip>/...`):
/// the IPv4 address and gateway the client believes it has. The rules,
/// the flow table and the uplink only ever see the real address
/// ([`ClientConfig::ip`]); the engine translates at the client's vif.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressMap {
    /// No mapping (no `visible-ip`, or one equal to the real address).
    #[default]
    Identity,
    /// The client sees itself as `visible_ip` behind `visible_gateway`:
    /// its packets must come from `visible_ip` (rewritten to the real
    /// address), packets to it go to `visible_ip`, and `visible_gateway`
    /// is the firewall's own address for it.
    Mapped {
        /// `visible-ip`.
        visible_ip: Ipv4Addr,
        /// `visible-gateway` (the client's gateway when dom0 wrote none).
        visible_gateway: Ipv4Addr,
    },
    /// dom0 wrote a value that does not parse: fail closed, every frame
    /// from the client is dropped ([`Drop::BadAddressMap`]) until a valid
    /// mapping (or none) replaces it.
    Invalid,
}

/// Tunables.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Flow table limits.
    pub limits: conntrack::Limits,
    /// Key material for the flow table hash, NAT port choice and DNS query
    /// ids (from the platform's entropy: QubesDB `/qubes-random-seed`,
    /// RDRAND, time).
    pub seed: [u8; 16],
    /// Generated ICMP errors per second (all clients together).
    pub icmp_rate: u32,
    /// Burst of generated ICMP errors.
    pub icmp_burst: u32,
    /// MTU of the uplink until the netfront reports it.
    pub uplink_mtu: u16,
    /// MTU toward clients.
    pub client_mtu: u16,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: conntrack::Limits::default(),
            seed: [0x5a; 16],
            icmp_rate: 100,
            icmp_burst: 50,
            uplink_mtu: 1500,
            client_mtu: 1500,
        }
    }
}

/// Why a client could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Another attached client has this address.
    DuplicateAddress(IpAddr),
    /// The address is one of the firewall's own.
    OwnAddress(IpAddr),
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientError::DuplicateAddress(a) => write!(f, "address {a} already attached"),
            ClientError::OwnAddress(a) => write!(f, "address {a} is the firewall's own"),
        }
    }
}

/// The address family of a rule set (QubesDB keys the client's IPv4 and
/// IPv6 rules separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Rules under `/qubes-firewall/<ipv4>`.
    V4,
    /// Rules under `/qubes-firewall/<ipv6>`.
    V6,
}

/// What a rule reload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// Flows kept.
    pub kept: usize,
    /// Flows the new rules no longer allow, cut.
    pub cut: usize,
}

pub(crate) struct Client {
    pub(crate) cfg: ClientConfig,
    pub(crate) map: AddressMap,
    pub(crate) rules_v4: Arc<RuleSet>,
    pub(crate) rules_v6: Arc<RuleSet>,
    pub(crate) stats: ClientStats,
}

impl Client {
    /// The IPv4 address the client believes it has.
    #[inline]
    pub(crate) fn visible_ip(&self) -> Ipv4Addr {
        match self.map {
            AddressMap::Mapped { visible_ip, .. } => visible_ip,
            _ => self.cfg.ip,
        }
    }

    /// The IPv4 gateway the client believes it has.
    #[inline]
    pub(crate) fn visible_gateway(&self) -> Ipv4Addr {
        match self.map {
            AddressMap::Mapped {
                visible_gateway, ..
            } => visible_gateway,
            _ => self.cfg.gateway,
        }
    }

    /// `a` (a flow's client-side address, real) as the client sees it.
    #[inline]
    pub(crate) fn to_visible(&self, a: IpAddr) -> IpAddr {
        match (self.map, a) {
            (AddressMap::Mapped { visible_ip, .. }, IpAddr::V4(r)) if r == self.cfg.ip => {
                IpAddr::V4(visible_ip)
            }
            _ => a,
        }
    }
}

pub(crate) struct Uplink {
    pub(crate) cfg: UplinkConfig,
    /// Our MAC (from the netfront), `None` while the link is down.
    pub(crate) mac: Option<[u8; 6]>,
    pub(crate) mtu: u16,
    pub(crate) arp: arp::ArpResolver,
}

/// The engine (see the module doc).
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) clients: Vec<Option<Client>>,
    /// Every client address (v4 and v6), sorted: the per-packet "is this a
    /// client?" lookups are a binary search, not a scan of the clients.
    by_ip: Vec<(IpAddr, ClientId)>,
    pub(crate) uplink: Option<Uplink>,
    /// Our MAC while the uplink has none configured (link up before the
    /// QubesDB config arrives).
    pub(crate) uplink_mac: Option<[u8; 6]>,
    pub(crate) uplink_mtu: u16,
    pub(crate) flows: conntrack::ConnTrack,
    pub(crate) resolver: resolver::Resolver,
    pub(crate) icmp_limit: ratelimit::TokenBucket,
    pub(crate) stats: EngineStats,
}

impl Engine {
    /// An engine with no uplink and no clients.
    pub fn new(cfg: EngineConfig) -> Engine {
        let flows = conntrack::ConnTrack::new(cfg.limits.clone(), cfg.seed);
        let seed = u64::from_le_bytes([
            cfg.seed[8],
            cfg.seed[9],
            cfg.seed[10],
            cfg.seed[11],
            cfg.seed[12],
            cfg.seed[13],
            cfg.seed[14],
            cfg.seed[15],
        ]);
        let icmp_limit =
            ratelimit::TokenBucket::new(u64::from(cfg.icmp_rate), u64::from(cfg.icmp_burst));
        let uplink_mtu = cfg.uplink_mtu;
        Engine {
            cfg,
            clients: Vec::new(),
            by_ip: Vec::new(),
            uplink: None,
            uplink_mac: None,
            uplink_mtu,
            flows,
            resolver: resolver::Resolver::new(seed),
            icmp_limit,
            stats: EngineStats::default(),
        }
    }

    /// Set (or clear) the uplink configuration. A changed NAT address
    /// drops every flow (they can no longer match); a changed gateway
    /// resolves the new one.
    pub fn set_uplink(&mut self, cfg: Option<UplinkConfig>) {
        match cfg {
            None => {
                if self.uplink.take().is_some() {
                    self.flows.clear();
                }
            }
            Some(cfg) => {
                let mac = self.uplink_mac;
                match &mut self.uplink {
                    Some(up) if up.cfg == cfg => {}
                    Some(up) => {
                        if up.cfg.ip != cfg.ip || up.cfg.ip6 != cfg.ip6 {
                            self.flows.clear();
                        }
                        if up.cfg.gateway != cfg.gateway || up.cfg.ip != cfg.ip {
                            up.arp =
                                arp::ArpResolver::new(cfg.ip, mac.unwrap_or([0; 6]), cfg.gateway);
                        }
                        up.cfg = cfg;
                    }
                    None => {
                        self.uplink = Some(Uplink {
                            arp: arp::ArpResolver::new(cfg.ip, mac.unwrap_or([0; 6]), cfg.gateway),
                            cfg,
                            mac,
                            mtu: self.uplink_mtu,
                        });
                    }
                }
                if let Some(up) = &self.uplink {
                    self.resolver.set_servers(&up.cfg.dns);
                }
            }
        }
    }

    /// The netfront's link came up with `mac` and `mtu`, or went down
    /// (`None`). A new link (sys-net restarted) re-resolves the gateway:
    /// the new sys-net may have another MAC.
    pub fn set_uplink_link(&mut self, link: Option<([u8; 6], u16)>) {
        self.uplink_mac = link.map(|(m, _)| m);
        if let Some((_, mtu)) = link {
            self.uplink_mtu = mtu;
        }
        if let Some(up) = &mut self.uplink {
            up.mac = self.uplink_mac;
            up.mtu = self.uplink_mtu;
            if let Some(mac) = up.mac {
                up.arp = arp::ArpResolver::new(up.cfg.ip, mac, up.cfg.gateway);
            }
        }
    }

    /// Attach a client with deny-all rules (fail closed until its rules
    /// are committed).
    pub fn add_client(&mut self, cfg: ClientConfig) -> Result<ClientId, ClientError> {
        let v4 = IpAddr::V4(cfg.ip);
        if self.client_by_ip(v4).is_some() {
            return Err(ClientError::DuplicateAddress(v4));
        }
        if let Some(v6) = cfg.ip6 {
            if self.client_by_ip(IpAddr::V6(v6)).is_some() {
                return Err(ClientError::DuplicateAddress(IpAddr::V6(v6)));
            }
        }
        if self.is_uplink_address(v4) {
            return Err(ClientError::OwnAddress(v4));
        }
        let client = Client {
            cfg,
            map: AddressMap::Identity,
            rules_v4: Arc::new(RuleSet::deny_all()),
            rules_v6: Arc::new(RuleSet::deny_all()),
            stats: ClientStats::default(),
        };
        let slot = match self.clients.iter().position(Option::is_none) {
            Some(i) => {
                self.clients[i] = Some(client);
                i
            }
            None => {
                self.clients.push(Some(client));
                self.clients.len() - 1
            }
        };
        let id = ClientId(slot as u32);
        self.by_ip.push((v4, id));
        if let Some(v6) = self.clients[slot].as_ref().and_then(|c| c.cfg.ip6) {
            self.by_ip.push((IpAddr::V6(v6), id));
        }
        self.by_ip.sort_unstable_by_key(|&(ip, _)| ip);
        Ok(id)
    }

    /// Detach a client: its flows go.
    pub fn remove_client(&mut self, id: ClientId) {
        if let Some(slot) = self.clients.get_mut(id.0 as usize) {
            if slot.take().is_some() {
                self.by_ip.retain(|&(_, c)| c != id);
                self.flows.remove_client(id);
                self.refresh_wanted_hosts();
            }
        }
    }

    /// The client with this address (either family).
    pub fn client_by_ip(&self, ip: IpAddr) -> Option<ClientId> {
        self.by_ip
            .binary_search_by_key(&ip, |&(a, _)| a)
            .ok()
            .map(|i| self.by_ip[i].1)
    }

    /// A client's configuration.
    pub fn client_config(&self, id: ClientId) -> Option<&ClientConfig> {
        Some(&self.client(id)?.cfg)
    }

    /// Set a client's `net.fake-ip` mapping (see [`AddressMap`]). A
    /// mapping equal to the real address is [`AddressMap::Identity`]. A
    /// change cuts the client's flows: they were made with the old
    /// visible address, which the client no longer has. Returns whether
    /// anything changed.
    pub fn set_address_map(&mut self, id: ClientId, map: AddressMap) -> bool {
        let Some(c) = self.client_mut(id) else {
            return false;
        };
        let map = match map {
            AddressMap::Mapped { visible_ip, .. } if visible_ip == c.cfg.ip => AddressMap::Identity,
            m => m,
        };
        if c.map == map {
            return false;
        }
        c.map = map;
        let cut = self.flows.client_flow_count(id);
        self.flows.remove_client(id);
        if let Some(c) = self.client_mut(id) {
            c.stats.flows_cut += cut as u64;
        }
        true
    }

    /// A client's `net.fake-ip` mapping.
    pub fn address_map(&self, id: ClientId) -> Option<AddressMap> {
        Some(self.client(id)?.map)
    }

    /// A client's counters.
    pub fn client_stats(&self, id: ClientId) -> Option<ClientStats> {
        Some(self.client(id)?.stats)
    }

    /// A client's current rule set of one family.
    pub fn client_rules(&self, id: ClientId, family: Family) -> Option<&RuleSet> {
        let c = self.client(id)?;
        Some(match family {
            Family::V4 => &c.rules_v4,
            Family::V6 => &c.rules_v6,
        })
    }

    /// Attached clients.
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| ClientId(i as u32))
    }

    /// Flows a client has in the table (its NAT entries).
    pub fn client_flows(&self, id: ClientId) -> usize {
        self.flows.client_flow_count(id)
    }

    /// Flows in the table.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Bytes one tracked flow costs.
    pub fn memory_per_flow(&self) -> usize {
        conntrack::ConnTrack::memory_per_flow_for(self.cfg.limits.max_flows)
    }

    /// The configuration the engine was made with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Engine counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The flow table's counters.
    pub fn flow_stats(&self) -> conntrack::Stats {
        self.flows.stats()
    }

    /// Swap a client's rule set of one family, atomically between two
    /// packets: flows the new rules deny are cut, the others survive, and
    /// `dsthost` resolutions of the old set carry over.
    pub fn set_rules(&mut self, id: ClientId, family: Family, rules: RuleSet) -> Reload {
        let Some(c) = self.clients.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return Reload::default();
        };
        let mut rules = rules;
        {
            let old = match family {
                Family::V4 => &c.rules_v4,
                Family::V6 => &c.rules_v6,
            };
            rules.adopt_resolutions(old);
        }
        let rules = Arc::new(rules);
        match family {
            Family::V4 => c.rules_v4 = rules,
            Family::V6 => c.rules_v6 = rules,
        }
        c.stats.rule_loads += 1;
        let r = self.recheck_flows(id);
        self.refresh_wanted_hosts();
        r
    }

    /// Run timers: gateway ARP, DNS queries, flow expiry.
    pub fn poll<O: Output>(&mut self, now: u64, pool: &mut PagePool, out: &mut O) {
        self.poll_timers(now, pool, out);
    }

    /// The next time [`Engine::poll`] has work (Xen time, ns).
    pub fn next_deadline(&self) -> Option<u64> {
        let mut d = self.flows.next_expiry();
        let mut take = |x: Option<u64>| {
            if let Some(x) = x {
                d = Some(d.map_or(x, |d: u64| d.min(x)));
            }
        };
        if let Some(up) = &self.uplink {
            if up.mac.is_some() {
                take(up.arp.next_deadline());
                take(self.resolver.next_deadline());
            }
        }
        d
    }

    pub(crate) fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(id.0 as usize)?.as_ref()
    }

    pub(crate) fn client_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        self.clients.get_mut(id.0 as usize)?.as_mut()
    }

    /// Whether `ip` is one of the firewall's uplink addresses.
    pub(crate) fn is_uplink_address(&self, ip: IpAddr) -> bool {
        self.uplink.as_ref().is_some_and(|u| match ip {
            IpAddr::V4(a) => u.cfg.ip == a,
            IpAddr::V6(a) => u.cfg.ip6 == Some(a),
        })
    }

    /// Tell the resolver every `dsthost` any client's rules name.
    fn refresh_wanted_hosts(&mut self) {
        let names = self
            .clients
            .iter()
            .flatten()
            .flat_map(|c| c.rules_v4.hosts().chain(c.rules_v6.hosts()))
            .map(|(h, _)| h);
        self.resolver.want(names);
    }

    /// Re-check every flow of `id` against its current rules.
    fn recheck_flows(&mut self, id: ClientId) -> Reload {
        let Some(c) = self.clients.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return Reload::default();
        };
        let dns: Vec<IpAddr> = self
            .uplink
            .as_ref()
            .map(|u| u.cfg.dns.clone())
            .unwrap_or_default();
        let ctx = rules::Context::new(&dns);
        let (v4, v6) = (c.rules_v4.clone(), c.rules_v6.clone());
        let mut r = Reload::default();
        self.flows.retain_client(id, |e| {
            let flow = path::rules_flow(e.original());
            let set = if flow.src.is_ipv4() { &v4 } else { &v6 };
            let keep = set.decide(&flow, &ctx).is_accept();
            if keep {
                r.kept += 1;
            } else {
                r.cut += 1;
            }
            keep
        });
        c.stats.flows_cut += r.cut as u64;
        self.stats.flows_cut_by_reload += r.cut as u64;
        r
    }
}

#[cfg(test)]
mod tests;
