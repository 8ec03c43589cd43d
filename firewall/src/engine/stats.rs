//! Counters: why frames were dropped, what each client did.
//!
//! Plain integers bumped on the data path (no allocation, no locking);
//! the platform prints them and the lab turns them into its table.

use core::fmt;

/// Why the engine dropped a frame. Every drop has exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Drop {
    /// Too short, or headers that do not parse.
    Malformed,
    /// An ethertype or IP protocol the firewall does not forward.
    Unsupported,
    /// IP fragments (the firewall forwards only whole packets, as
    /// connection tracking needs the transport header).
    Fragment,
    /// Source routing (IPv4 LSRR/SSRR, IPv6 routing header with segments
    /// left): refused as Linux does with `accept_source_route = 0`.
    SourceRoute,
    /// Ethernet destination neither ours nor broadcast.
    NotOurMac,
    /// A client frame whose Ethernet source is not the client's MAC.
    SpoofedMac,
    /// A client packet whose IP source is not the client's address, or an
    /// uplink packet from a client's or the firewall's own address.
    SpoofedIp,
    /// An ARP packet from a client claiming another address or MAC.
    SpoofedArp,
    /// A packet to the firewall itself that it does not answer.
    ToFirewall,
    /// A packet from one client to another (Qubes blocks inter-VM traffic).
    ClientToClient,
    /// Broadcast or multicast IP destination.
    Multicast,
    /// An uplink packet that belongs to no flow (nothing inbound without
    /// one), or a client TCP segment that is neither a SYN nor part of a
    /// known flow.
    NoFlow,
    /// A packet a flow's TCP state does not allow.
    BadState,
    /// A new flow the client's rules reject (answered with ICMP
    /// administratively prohibited, rate limits permitting).
    Rejected,
    /// A new flow the client's rules drop silently (`dsthost` pending).
    Denied,
    /// The client's flow quota or the global table is full, or no NAT port
    /// is free.
    TableFull,
    /// No uplink configuration, link, or gateway address yet.
    NoUplink,
    /// TTL or hop limit would reach zero (answered with time exceeded).
    TtlExceeded,
    /// Bigger than the outgoing MTU (answered with fragmentation needed or
    /// packet too big).
    TooBig,
    /// The output queue of the interface was full.
    QueueFull,
    /// The packet pool had no page for a generated packet.
    PoolExhausted,
    /// The client is not (or no longer) attached.
    NoClient,
    /// The client's `net.fake-ip` mapping (`/mapped-ip`) is invalid: its
    /// traffic is blocked until dom0 writes a valid one (fail closed).
    BadAddressMap,
}

impl Drop {
    /// Number of reasons.
    pub const COUNT: usize = Drop::BadAddressMap as usize + 1;

    /// All reasons, in order.
    pub const ALL: [Drop; Drop::COUNT] = [
        Drop::Malformed,
        Drop::Unsupported,
        Drop::Fragment,
        Drop::SourceRoute,
        Drop::NotOurMac,
        Drop::SpoofedMac,
        Drop::SpoofedIp,
        Drop::SpoofedArp,
        Drop::ToFirewall,
        Drop::ClientToClient,
        Drop::Multicast,
        Drop::NoFlow,
        Drop::BadState,
        Drop::Rejected,
        Drop::Denied,
        Drop::TableFull,
        Drop::NoUplink,
        Drop::TtlExceeded,
        Drop::TooBig,
        Drop::QueueFull,
        Drop::PoolExhausted,
        Drop::NoClient,
        Drop::BadAddressMap,
    ];

    /// A short name for logs and tables.
    pub const fn name(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::Unsupported => "unsupported",
            Drop::Fragment => "fragment",
            Drop::SourceRoute => "source-route",
            Drop::NotOurMac => "not-our-mac",
            Drop::SpoofedMac => "spoofed-mac",
            Drop::SpoofedIp => "spoofed-ip",
            Drop::SpoofedArp => "spoofed-arp",
            Drop::ToFirewall => "to-firewall",
            Drop::ClientToClient => "client-to-client",
            Drop::Multicast => "multicast",
            Drop::NoFlow => "no-flow",
            Drop::BadState => "bad-state",
            Drop::Rejected => "rejected",
            Drop::Denied => "denied",
            Drop::TableFull => "table-full",
            Drop::NoUplink => "no-uplink",
            Drop::TtlExceeded => "ttl-exceeded",
            Drop::TooBig => "too-big",
            Drop::QueueFull => "queue-full",
            Drop::PoolExhausted => "pool-exhausted",
            Drop::NoClient => "no-client",
            Drop::BadAddressMap => "bad-address-map",
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of the whole engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames forwarded client -> uplink.
    pub forwarded_out: u64,
    /// Frames forwarded uplink -> client.
    pub forwarded_in: u64,
    /// Bytes forwarded client -> uplink.
    pub bytes_out: u64,
    /// Bytes forwarded uplink -> client.
    pub bytes_in: u64,
    /// ICMP errors from the uplink translated to a client.
    pub icmp_errors_translated: u64,
    /// Packets the engine generated (ARP, ICMP, DNS queries).
    pub generated: u64,
    /// Generated ICMP errors suppressed by the rate limit.
    pub icmp_rate_limited: u64,
    /// Flows cut because reloaded rules no longer allow them.
    pub flows_cut_by_reload: u64,
    /// Drops by reason ([`Drop`] as index).
    pub drops: [u64; Drop::COUNT],
}

impl EngineStats {
    /// Count a drop.
    pub fn drop(&mut self, why: Drop) {
        self.drops[why as usize] += 1;
    }

    /// Drops for one reason.
    pub fn drops_for(&self, why: Drop) -> u64 {
        self.drops[why as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Counters of one client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// New flows the rules accepted.
    pub flows_allowed: u64,
    /// New flows the rules rejected or dropped.
    pub flows_denied: u64,
    /// Packets from the client forwarded.
    pub packets_out: u64,
    /// Bytes from the client forwarded.
    pub bytes_out: u64,
    /// Packets to the client forwarded.
    pub packets_in: u64,
    /// Bytes to the client forwarded.
    pub bytes_in: u64,
    /// Frames from the client dropped (any reason).
    pub dropped: u64,
    /// Spoofing attempts (MAC, IP or ARP).
    pub spoofed: u64,
    /// Rule sets applied (the first load included).
    pub rule_loads: u64,
    /// Flows cut by a reload.
    pub flows_cut: u64,
    /// New flows refused because the client's quota was full.
    pub table_full: u64,
}
