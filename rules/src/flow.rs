//! What a decision is about ([`Flow`], [`Context`]) and what it says
//! ([`Verdict`], [`Decision`], [`Reason`]).
//!
//! Plain data, no allocation: the engine builds a `Flow` from the first
//! packet of a new connection (Qubes rules filter new flows *from* the
//! client; replies of accepted flows are the connection tracker's job).

use core::fmt;
use core::net::IpAddr;

use crate::key::RuleKey;

/// IP protocol numbers the rules know.
pub(crate) mod proto_number {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// The transport part of a flow: what `proto`, `dstports` and `icmptype`
/// look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (protocol 6) to a destination port.
    Tcp {
        /// Destination port.
        dst_port: u16,
    },
    /// UDP (protocol 17) to a destination port.
    Udp {
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP (protocol 1); matched by `proto=icmp` only in an IPv4 rule set.
    Icmp {
        /// ICMP type.
        icmp_type: u8,
    },
    /// ICMPv6 (next header 58); matched by `proto=icmp` only in an IPv6
    /// rule set.
    Icmpv6 {
        /// ICMPv6 type.
        icmp_type: u8,
    },
    /// Any other protocol, by number. Use the variants above for 1, 6, 17
    /// and 58 whenever the header is known: `Other { protocol: 6 }` is
    /// "TCP with unknown ports", which matches `proto=tcp` but no rule
    /// with `dstports` (nor `specialtarget=dns`).
    Other {
        /// IP protocol number (IPv6: the upper-layer next header).
        protocol: u8,
    },
}

impl Transport {
    /// The IP protocol number.
    pub const fn protocol(self) -> u8 {
        match self {
            Transport::Tcp { .. } => proto_number::TCP,
            Transport::Udp { .. } => proto_number::UDP,
            Transport::Icmp { .. } => proto_number::ICMP,
            Transport::Icmpv6 { .. } => proto_number::ICMPV6,
            Transport::Other { protocol } => protocol,
        }
    }

    /// The destination port, for TCP and UDP.
    pub const fn dst_port(self) -> Option<u16> {
        match self {
            Transport::Tcp { dst_port } | Transport::Udp { dst_port } => Some(dst_port),
            _ => None,
        }
    }

    /// The ICMP or ICMPv6 type.
    pub const fn icmp_type(self) -> Option<u8> {
        match self {
            Transport::Icmp { icmp_type } | Transport::Icmpv6 { icmp_type } => Some(icmp_type),
            _ => None,
        }
    }
}

/// A new flow from a client, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address: the client's (after undoing any `/mapped-ip`
    /// translation: dom0 keys the rules by the client's real address).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol and destination port or ICMP type.
    pub transport: Transport,
}

impl Flow {
    /// A flow from `src` to `dst`.
    pub const fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> Flow {
        Flow {
            src,
            dst,
            transport,
        }
    }
}

/// What the firewall knows outside the rules, needed to decide.
///
/// Kept out of the rule set because it is the same for every client and
/// changes on its own schedule (an uplink change rewrites the DNS keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context<'a> {
    dns_servers: &'a [IpAddr],
}

impl<'a> Context<'a> {
    /// A context whose `specialtarget=dns` servers are `dns_servers`:
    /// the firewall VM's own resolvers, i.e. `/qubes-primary-dns` and
    /// `/qubes-secondary-dns` from QubesDB (the Linux agent uses its
    /// resolv.conf, which holds the same addresses). Addresses of either
    /// family; each rule set only ever matches its own family. With no
    /// servers, `specialtarget=dns` rules match nothing (Linux skips them).
    pub const fn new(dns_servers: &'a [IpAddr]) -> Context<'a> {
        Context { dns_servers }
    }

    /// The DNS servers.
    pub const fn dns_servers(&self) -> &'a [IpAddr] {
        self.dns_servers
    }
}

/// What to do with a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Forward it.
    Accept,
    /// Block it and answer with ICMP destination unreachable,
    /// administratively prohibited (ICMPv6: type 1 code 1) — what the
    /// Linux qubes-firewall does for `action=drop`, for `policy=drop` and
    /// for a client whose rules failed to load.
    Reject,
    /// Block it without an answer: used only while a decision cannot be
    /// made yet (a `dsthost` not resolved yet, so the client's retry can
    /// succeed later) or for a flow that is not this rule set's client's.
    Drop,
}

impl Verdict {
    /// Whether the flow may pass.
    pub const fn is_accept(self) -> bool {
        matches!(self, Verdict::Accept)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Drop => "drop",
        })
    }
}

/// Why a verdict was given, for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The rule with this key matched (first match).
    Rule(RuleKey),
    /// No rule matched; the `policy` applied.
    Policy,
    /// The rule set is [`crate::RuleSet::deny_all`] (the client's rules
    /// failed to load, or are not loaded yet).
    DenyAll,
    /// The flow met the rule with this key, whose `dsthost` is not
    /// resolved yet, and matched everything else in it.
    HostPending(RuleKey),
    /// The flow met the rule with this key, whose `dsthost` failed to
    /// resolve, and matched everything else in it.
    HostFailed(RuleKey),
    /// The flow's source is not the rule set's client.
    OtherSource,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule(key) => write!(f, "rule {key}"),
            Reason::Policy => f.write_str("policy"),
            Reason::DenyAll => f.write_str("deny-all rule set"),
            Reason::HostPending(key) => write!(f, "rule {key}: dsthost not resolved yet"),
            Reason::HostFailed(key) => write!(f, "rule {key}: dsthost failed to resolve"),
            Reason::OtherSource => f.write_str("source is not this rule set's client"),
        }
    }
}

/// A verdict and its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_accessors() {
        let t = Transport::Tcp { dst_port: 443 };
        assert_eq!(
            (t.protocol(), t.dst_port(), t.icmp_type()),
            (6, Some(443), None)
        );
        let u = Transport::Udp { dst_port: 53 };
        assert_eq!((u.protocol(), u.dst_port()), (17, Some(53)));
        let i = Transport::Icmp { icmp_type: 8 };
        assert_eq!(
            (i.protocol(), i.dst_port(), i.icmp_type()),
            (1, None, Some(8))
        );
        let i6 = Transport::Icmpv6 { icmp_type: 128 };
        assert_eq!((i6.protocol(), i6.icmp_type()), (58, Some(128)));
        let o = Transport::Other { protocol: 47 };
        assert_eq!(
            (o.protocol(), o.dst_port(), o.icmp_type()),
            (47, None, None)
        );
    }

    #[test]
    fn default_context_has_no_dns_servers() {
        assert!(Context::default().dns_servers().is_empty());
    }
}
