//! The packet engine (sans-IO): frames in from an interface, frames out to
//! interfaces. It owns no device: the platform loop hands it each frame a
//! driver received and queues what it emits on the drivers.
//!
//! Submodules each do one job and know nothing of Xen:
//! - [`csum`]: RFC 1071/1624 checksum arithmetic, full and partial;
//! - [`icmp`], [`arp`]: building and reading ICMP/ICMPv6 and ARP packets;
//! - [`ratelimit`]: token buckets for generated packets;
//! - [`hasher`], [`conntrack`]: the keyed flow table, TCP states, NAT
//!   port allocation, per-client caps and expiry;
//! - [`dns`], [`resolver`]: the DNS codec and the `dsthost` resolver.

pub mod arp;
pub mod conntrack;
pub mod csum;
pub mod dns;
pub mod hasher;
pub mod icmp;
pub mod ratelimit;
pub mod resolver;

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
