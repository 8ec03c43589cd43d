//! [`Rule`]: one rule line, as dom0 writes it under
//! `/qubes-firewall/<ip>/NNNN`, parsed and validated.
//!
//! Syntax (docs `vm-interface`, dom0 `qubes/firewall.py`, Linux agent
//! `qubesagent/firewall.py`): `key=value` options separated by single
//! spaces, each option at most once, `action` always present. dom0 writes
//! them in the order `action`, `dst4`|`dst6`|`dsthost`, `proto`,
//! `specialtarget`, `dstports`, `icmptype`; like the Linux agent this
//! parser accepts any order. `expire=` and `comment=` exist in dom0's API
//! but are never written to QubesDB; they, `dpi=` and any other option are
//! unknown fields, which the Linux agent also rejects.
//!
//! Combinations are checked the way the Linux (nftables) agent would end
//! up treating them: a combination that makes it fail to load the client's
//! rules (`proto=icmp dstports=…`, `icmptype` with `tcp`/`udp` or with
//! `dstports`, `specialtarget=dns` with ICMP) is an error here, so the
//! client fails closed in both. Two destinations in one rule are an error
//! too (the docs forbid it; Linux would silently use one of them).

use core::fmt;
#[cfg(test)]
use core::net::IpAddr;
use core::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::action::Action;
use crate::field::Field;
use crate::host::HostName;
use crate::shown::Shown;

/// The `proto=` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `tcp` (IP protocol 6).
    Tcp,
    /// `udp` (IP protocol 17).
    Udp,
    /// `icmp`: ICMP (protocol 1) in an IPv4 rule set, ICMPv6 (next header
    /// 58) in an IPv6 rule set, as the Linux agent maps it.
    Icmp,
}

impl Proto {
    /// The word dom0 writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `specialtarget=` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialTarget {
    /// `dns`: "DNS traffic to the default DNS servers, TCP and UDP": the
    /// destination is one of the firewall's DNS servers (the
    /// [`crate::Context`]) and the destination port is 53. Combined with
    /// `proto`, only that protocol; with a `dstports` other than exactly 53,
    /// the rule matches nothing (Linux agent); with a destination, both
    /// must hold.
    Dns,
}

/// An inclusive destination port range (`dstports=low-high`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`; `None` if `first > last`.
    pub const fn new(first: u16, last: u16) -> Option<PortRange> {
        if first <= last {
            Some(PortRange { first, last })
        } else {
            None
        }
    }

    /// The single port `port`.
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Lowest port in the range.
    pub const fn first(self) -> u16 {
        self.first
    }

    /// Highest port in the range.
    pub const fn last(self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// Always `low-high`, as dom0 writes it (`443-443` for one port).
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Where a rule's flows go: at most one of `dst4`, `dst6`, `dsthost`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// No destination option: any address.
    Any,
    /// `dst4`: an IPv4 network (host bits, if any, are ignored when
    /// matching, as nftables and iptables do).
    V4(Ipv4Net),
    /// `dst6`: an IPv6 network.
    V6(Ipv6Net),
    /// `dsthost`: a name the firewall resolves (see [`crate::RuleSet`]).
    Host(HostName),
}

/// One parsed, validated rule line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    action: Action,
    dst: Destination,
    proto: Option<Proto>,
    special_target: Option<SpecialTarget>,
    dst_ports: Option<PortRange>,
    icmp_type: Option<u8>,
}

/// What is wrong with one rule line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The line is empty.
    Empty,
    /// A space-separated element is not `key=value`: an empty element
    /// (leading, trailing or doubled space), no `=`, or a second `=`.
    Malformed {
        /// The element (possibly shortened).
        element: Shown,
    },
    /// An option name that is not one of the eight [`Field`]s.
    UnknownField {
        /// The name (possibly shortened).
        name: Shown,
    },
    /// The same option twice.
    DuplicateField {
        /// The repeated option.
        field: Field,
    },
    /// No `action=` option.
    MissingAction,
    /// An option's value does not parse.
    InvalidValue {
        /// The option.
        field: Field,
        /// The value (possibly shortened).
        value: Shown,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// Two options that cannot be combined.
    Conflict {
        /// The option that is not allowed here.
        field: Field,
        /// The option it conflicts with.
        with: Field,
        /// Why.
        reason: &'static str,
    },
}

impl LineError {
    /// The option the error is about, when there is one.
    pub fn field(&self) -> Option<Field> {
        match self {
            LineError::DuplicateField { field }
            | LineError::InvalidValue { field, .. }
            | LineError::Conflict { field, .. } => Some(*field),
            LineError::MissingAction => Some(Field::Action),
            LineError::Empty | LineError::Malformed { .. } | LineError::UnknownField { .. } => None,
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Empty => f.write_str("empty rule"),
            LineError::Malformed { element } => {
                write!(f, "option {element} is not key=value")
            }
            LineError::UnknownField { name } => write!(f, "unknown field {name}"),
            LineError::DuplicateField { field } => write!(f, "field {field} given twice"),
            LineError::MissingAction => f.write_str("field action missing"),
            LineError::InvalidValue {
                field,
                value,
                expected,
            } => write!(
                f,
                "field {field}: invalid value {value}, expected {expected}"
            ),
            LineError::Conflict {
                field,
                with,
                reason,
            } => write!(f, "field {field} conflicts with field {with}: {reason}"),
        }
    }
}

impl core::error::Error for LineError {}

/// Raw option values of one line, indexed by [`Field::index`].
type Slots<'a> = [Option<&'a str>; Field::ALL.len()];

impl Rule {
    /// Longest number text accepted (leading zeros included).
    const MAX_NUMBER_LEN: usize = 10;

    /// Parses one rule line (see the module documentation for the rules).
    pub fn parse(line: &str) -> Result<Rule, LineError> {
        if line.is_empty() {
            return Err(LineError::Empty);
        }
        let slots = split_options(line)?;
        let get = |field: Field| slots[field.index()];

        let action = match get(Field::Action) {
            None => return Err(LineError::MissingAction),
            Some(v) => Action::parse(v).map_err(|_| invalid(Field::Action, v, "accept or drop"))?,
        };

        let mut dst = Destination::Any;
        let mut dst_field = None;
        for field in [Field::Dst4, Field::Dst6, Field::DstHost] {
            let Some(value) = get(field) else { continue };
            let parsed = match field {
                Field::Dst4 => Destination::V4(parse_net4(value)?),
                Field::Dst6 => Destination::V6(parse_net6(value)?),
                _ => Destination::Host(
                    HostName::parse(value).map_err(|e| invalid(field, value, e.expected()))?,
                ),
            };
            if let Some(first) = dst_field {
                return Err(LineError::Conflict {
                    field,
                    with: first,
                    reason: "a rule has at most one of dst4, dst6, dsthost",
                });
            }
            dst_field = Some(field);
            dst = parsed;
        }

        let proto = match get(Field::Proto) {
            None => None,
            Some("tcp") => Some(Proto::Tcp),
            Some("udp") => Some(Proto::Udp),
            Some("icmp") => Some(Proto::Icmp),
            Some(v) => return Err(invalid(Field::Proto, v, "tcp, udp or icmp")),
        };
        let special_target = match get(Field::SpecialTarget) {
            None => None,
            Some("dns") => Some(SpecialTarget::Dns),
            Some(v) => return Err(invalid(Field::SpecialTarget, v, "dns")),
        };
        let dst_ports = match get(Field::DstPorts) {
            None => None,
            Some(v) => Some(parse_ports(v)?),
        };
        let icmp_type = match get(Field::IcmpType) {
            None => None,
            Some(v) => Some(
                parse_decimal(v, u32::from(u8::MAX))
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| invalid(Field::IcmpType, v, "a decimal number 0-255"))?,
            ),
        };

        let rule = Rule {
            action,
            dst,
            proto,
            special_target,
            dst_ports,
            icmp_type,
        };
        rule.check_combination()?;
        Ok(rule)
    }

    /// Rejects the combinations listed in the module documentation.
    fn check_combination(&self) -> Result<(), LineError> {
        let conflict = |field, with, reason| {
            Err(LineError::Conflict {
                field,
                with,
                reason,
            })
        };
        if self.dst_ports.is_some() && self.proto == Some(Proto::Icmp) {
            return conflict(
                Field::DstPorts,
                Field::Proto,
                "dstports is valid only with proto tcp or udp",
            );
        }
        if self.icmp_type.is_some() {
            if matches!(self.proto, Some(Proto::Tcp | Proto::Udp)) {
                return conflict(
                    Field::IcmpType,
                    Field::Proto,
                    "icmptype is valid only with proto icmp",
                );
            }
            if self.dst_ports.is_some() {
                return conflict(
                    Field::IcmpType,
                    Field::DstPorts,
                    "icmptype and dstports exclude each other",
                );
            }
            if self.special_target.is_some() {
                return conflict(
                    Field::IcmpType,
                    Field::SpecialTarget,
                    "specialtarget=dns is TCP/UDP traffic, icmptype is ICMP",
                );
            }
        }
        if self.special_target.is_some() && self.proto == Some(Proto::Icmp) {
            return conflict(
                Field::SpecialTarget,
                Field::Proto,
                "specialtarget=dns is valid only with proto tcp or udp",
            );
        }
        Ok(())
    }

    /// `action=`.
    pub fn action(&self) -> Action {
        self.action
    }

    /// `dst4=`, `dst6=` or `dsthost=`, or [`Destination::Any`].
    pub fn destination(&self) -> &Destination {
        &self.dst
    }

    /// `proto=`.
    pub fn proto(&self) -> Option<Proto> {
        self.proto
    }

    /// `specialtarget=`.
    pub fn special_target(&self) -> Option<SpecialTarget> {
        self.special_target
    }

    /// `dstports=`.
    pub fn dst_ports(&self) -> Option<PortRange> {
        self.dst_ports
    }

    /// `icmptype=`.
    pub fn icmp_type(&self) -> Option<u8> {
        self.icmp_type
    }

    /// The field that ties the rule to one address family (`dst4` or
    /// `dst6`), if any.
    pub fn family_field(&self) -> Option<Field> {
        match self.dst {
            Destination::V4(_) => Some(Field::Dst4),
            Destination::V6(_) => Some(Field::Dst6),
            Destination::Any | Destination::Host(_) => None,
        }
    }
}

/// The line dom0 would write for this rule: fields in dom0's order,
/// networks with their prefix length, ports as `low-high`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "action={}", self.action)?;
        match &self.dst {
            Destination::Any => {}
            Destination::V4(net) => write!(f, " dst4={net}")?,
            Destination::V6(net) => write!(f, " dst6={net}")?,
            Destination::Host(host) => write!(f, " dsthost={host}")?,
        }
        if let Some(proto) = self.proto {
            write!(f, " proto={proto}")?;
        }
        if let Some(SpecialTarget::Dns) = self.special_target {
            f.write_str(" specialtarget=dns")?;
        }
        if let Some(ports) = self.dst_ports {
            write!(f, " dstports={ports}")?;
        }
        if let Some(t) = self.icmp_type {
            write!(f, " icmptype={t}")?;
        }
        Ok(())
    }
}

fn invalid(field: Field, value: &str, expected: &'static str) -> LineError {
    LineError::InvalidValue {
        field,
        value: Shown::new(value),
        expected,
    }
}

/// Splits a line into its options, rejecting malformed elements, unknown
/// names and duplicates, in the order they appear.
fn split_options(line: &str) -> Result<Slots<'_>, LineError> {
    let mut slots: Slots<'_> = [None; Field::ALL.len()];
    for element in line.split(' ') {
        let malformed = || LineError::Malformed {
            element: Shown::new(element),
        };
        let (name, value) = element.split_once('=').ok_or_else(malformed)?;
        if name.is_empty() || value.contains('=') {
            return Err(malformed());
        }
        let field = Field::from_name(name).ok_or_else(|| LineError::UnknownField {
            name: Shown::new(name),
        })?;
        let slot = &mut slots[field.index()];
        if slot.is_some() {
            return Err(LineError::DuplicateField { field });
        }
        *slot = Some(value);
    }
    Ok(slots)
}

/// A decimal number of ASCII digits (leading zeros allowed, no sign), at
/// most `max`.
fn parse_decimal(text: &str, max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > Rule::MAX_NUMBER_LEN {
        return None;
    }
    let mut n: u64 = 0;
    for b in text.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        // At most 10 digits: fits u64.
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok().filter(|&n| n <= max)
}

/// `address[/len]`, split.
fn split_prefix(text: &str) -> (&str, Option<&str>) {
    match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    }
}

fn parse_net4(text: &str) -> Result<Ipv4Net, LineError> {
    const EXPECTED: &str = "an IPv4 network a.b.c.d/0-32";
    let bad = || invalid(Field::Dst4, text, EXPECTED);
    let (addr, len) = split_prefix(text);
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len = match len {
        None => 32,
        Some(len) => parse_decimal(len, 32).ok_or_else(bad)?,
    };
    // len <= 32 was checked, so both conversions succeed.
    let len = u8::try_from(len).map_err(|_| bad())?;
    Ipv4Net::new(addr, len).map_err(|_| bad())
}

fn parse_net6(text: &str) -> Result<Ipv6Net, LineError> {
    const EXPECTED: &str = "an IPv6 network x:y::z/0-128";
    let bad = || invalid(Field::Dst6, text, EXPECTED);
    let (addr, len) = split_prefix(text);
    let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
    let len = match len {
        None => 128,
        Some(len) => parse_decimal(len, 128).ok_or_else(bad)?,
    };
    let len = u8::try_from(len).map_err(|_| bad())?;
    Ipv6Net::new(addr, len).map_err(|_| bad())
}

/// `low-high` (dom0's form) or a single port (the Linux agent accepts it).
fn parse_ports(text: &str) -> Result<PortRange, LineError> {
    const EXPECTED: &str = "a port range low-high with 0 <= low <= high <= 65535";
    let bad = || invalid(Field::DstPorts, text, EXPECTED);
    let port = |s: &str| parse_decimal(s, u32::from(u16::MAX)).and_then(|n| u16::try_from(n).ok());
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a).ok_or_else(bad)?, port(b).ok_or_else(bad)?),
        None => {
            let p = port(text).ok_or_else(bad)?;
            (p, p)
        }
    };
    PortRange::new(first, last).ok_or_else(bad)
}

/// Whether `addr` is in the rule's fixed network (`dst4`/`dst6`); false
/// for any other destination and across address families.
#[cfg(test)]
fn net_contains(dst: &Destination, addr: &IpAddr) -> bool {
    match (dst, addr) {
        (Destination::V4(net), IpAddr::V4(a)) => net.contains(a),
        (Destination::V6(net), IpAddr::V6(a)) => net.contains(a),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    fn parse(line: &str) -> Rule {
        Rule::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &str) -> LineError {
        match Rule::parse(line) {
            Ok(rule) => panic!("{line:?} parsed as {rule:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn documentation_examples() {
        // docs vm-interface, "Example valid rules".
        let r = parse("action=accept dst4=8.8.8.8 proto=udp dstports=53-53");
        assert_eq!(r.action(), Action::Accept);
        assert_eq!(
            r.destination(),
            &Destination::V4("8.8.8.8/32".parse().unwrap())
        );
        assert_eq!(r.proto(), Some(Proto::Udp));
        assert_eq!(r.dst_ports(), Some(PortRange::single(53)));

        let r = parse("action=drop dst6=2a00:1450:4000::/37 proto=tcp");
        assert_eq!(r.action(), Action::Drop);
        assert_eq!(
            r.destination(),
            &Destination::V6("2a00:1450:4000::/37".parse().unwrap())
        );
        assert_eq!(r.proto(), Some(Proto::Tcp));

        let r = parse("action=accept specialtarget=dns");
        assert_eq!(r.special_target(), Some(SpecialTarget::Dns));
        assert_eq!(r.proto(), None);

        let r = parse("action=drop proto=tcp specialtarget=dns");
        assert_eq!(r.special_target(), Some(SpecialTarget::Dns));
        assert_eq!(r.proto(), Some(Proto::Tcp));

        let r = parse("action=drop");
        assert_eq!(r.destination(), &Destination::Any);
        assert_eq!(r.to_string(), "action=drop");
    }

    #[test]
    fn dom0_lines() {
        // As qubes-core-admin's Rule.rule renders them.
        let cases = [
            "action=accept dsthost=qubes-os.org",
            "action=accept dsthost=qubes-os.org proto=tcp dstports=443-443",
            "action=accept dst4=192.168.0.0/24",
            "action=accept dst4=10.137.0.0/16 proto=tcp dstports=22-22",
            "action=drop dst6=2000::/3 proto=udp dstports=1-1024",
            "action=drop proto=icmp icmptype=8",
            "action=drop proto=icmp",
            "action=accept proto=udp specialtarget=dns dstports=53-53",
            "action=accept dsthost=yum.qubes-os.org proto=udp dstports=443-1024",
            "action=accept dst4=1.2.3.0/24 proto=tcp dstports=80-80",
            "action=accept",
        ];
        for line in cases {
            assert_eq!(parse(line).to_string(), line);
        }
    }

    #[test]
    fn any_order_and_single_ports_are_accepted() {
        let r = parse("proto=tcp dstports=443 action=accept dsthost=qubes-os.org");
        assert_eq!(
            r.to_string(),
            "action=accept dsthost=qubes-os.org proto=tcp dstports=443-443"
        );
    }

    #[test]
    fn networks_keep_host_bits_but_match_the_network() {
        let r = parse("action=accept dst4=10.1.2.3/8");
        assert_eq!(r.to_string(), "action=accept dst4=10.1.2.3/8");
        assert!(net_contains(
            r.destination(),
            &"10.200.0.1".parse().unwrap()
        ));
        assert!(!net_contains(r.destination(), &"11.0.0.1".parse().unwrap()));
        assert!(!net_contains(r.destination(), &"::1".parse().unwrap()));
        let r = parse("action=accept dst4=0.0.0.0/0");
        assert!(net_contains(r.destination(), &"255.1.2.3".parse().unwrap()));
        let r = parse("action=accept dst6=::/0");
        assert!(net_contains(
            r.destination(),
            &"2001:db8::1".parse().unwrap()
        ));
        assert!(!net_contains(r.destination(), &"1.2.3.4".parse().unwrap()));
        let r = parse("action=accept dst6=::ffff:1.2.3.4");
        assert_eq!(r.to_string(), "action=accept dst6=::ffff:1.2.3.4/128");
        let r = parse("action=accept dst4=10.0.0.0/008");
        assert_eq!(r.to_string(), "action=accept dst4=10.0.0.0/8");
    }

    #[test]
    fn limits_are_inclusive() {
        assert_eq!(
            parse("action=accept proto=tcp dstports=0-65535").dst_ports(),
            PortRange::new(0, 65535)
        );
        assert_eq!(
            parse("action=accept proto=icmp icmptype=255").icmp_type(),
            Some(255)
        );
        assert_eq!(
            parse("action=accept proto=icmp icmptype=0").icmp_type(),
            Some(0)
        );
        // icmptype or dstports without proto: Linux matches ICMP resp.
        // TCP and UDP; the combination is kept.
        assert_eq!(parse("action=accept icmptype=3").proto(), None);
        assert_eq!(parse("action=accept dstports=80-80").proto(), None);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(err(""), LineError::Empty);
        for line in [
            " action=accept",
            "action=accept ",
            "action=accept  proto=tcp",
            "action=accept\tproto=tcp",
            "action",
            "action=accept proto",
            "=accept",
            "action=accept=drop",
            "action=accept proto=tcp=udp",
        ] {
            assert!(
                matches!(err(line), LineError::Malformed { .. }),
                "{line:?}: {}",
                err(line)
            );
        }
        assert_eq!(err("proto=tcp"), LineError::MissingAction);
        assert_eq!(
            err("action=accept action=drop"),
            LineError::DuplicateField {
                field: Field::Action
            }
        );
        assert_eq!(
            err("action=accept proto=tcp proto=tcp"),
            LineError::DuplicateField {
                field: Field::Proto
            }
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        for (line, name) in [
            ("action=accept dpi=NO", "dpi"),
            ("action=accept expire=1463292452", "expire"),
            ("action=accept comment=x", "comment"),
            ("action=accept dstname=qubes-os.org", "dstname"),
            ("action=accept Proto=tcp", "Proto"),
            ("action=accept src4=1.2.3.4/32", "src4"),
        ] {
            match err(line) {
                LineError::UnknownField { name: n } => assert_eq!(n.as_str(), name),
                other => panic!("{line:?}: {other}"),
            }
        }
    }

    #[test]
    fn every_field_rejects_bad_values() {
        let cases: &[(&str, Field)] = &[
            ("action=reject", Field::Action),
            ("action=", Field::Action),
            ("action=ACCEPT", Field::Action),
            ("action=accept dst4=", Field::Dst4),
            ("action=accept dst4=1.2.3/24", Field::Dst4),
            ("action=accept dst4=1.2.3.4/33", Field::Dst4),
            ("action=accept dst4=1.2.3.4/", Field::Dst4),
            ("action=accept dst4=1.2.3.4/-1", Field::Dst4),
            ("action=accept dst4=1.2.3.4/2_4", Field::Dst4),
            ("action=accept dst4=1.2.3.4/24/24", Field::Dst4),
            ("action=accept dst4=01.2.3.4/32", Field::Dst4),
            ("action=accept dst4=::1/128", Field::Dst4),
            ("action=accept dst4=256.0.0.0/8", Field::Dst4),
            ("action=accept dst6=1.2.3.4/32", Field::Dst6),
            ("action=accept dst6=2000::/129", Field::Dst6),
            ("action=accept dst6=fe80::1%eth0/128", Field::Dst6),
            ("action=accept dst6=", Field::Dst6),
            ("action=accept dsthost=", Field::DstHost),
            ("action=accept dsthost=.", Field::DstHost),
            ("action=accept dsthost=a..b", Field::DstHost),
            ("action=accept dsthost=Qubes-OS.org", Field::DstHost),
            ("action=accept proto=sctp", Field::Proto),
            ("action=accept proto=TCP", Field::Proto),
            ("action=accept proto=6", Field::Proto),
            ("action=accept proto=", Field::Proto),
            ("action=accept specialtarget=ntp", Field::SpecialTarget),
            ("action=accept specialtarget=", Field::SpecialTarget),
            ("action=accept proto=tcp dstports=", Field::DstPorts),
            ("action=accept proto=tcp dstports=80-", Field::DstPorts),
            ("action=accept proto=tcp dstports=-80", Field::DstPorts),
            ("action=accept proto=tcp dstports=443-80", Field::DstPorts),
            ("action=accept proto=tcp dstports=1-65536", Field::DstPorts),
            ("action=accept proto=tcp dstports=1-2-3", Field::DstPorts),
            ("action=accept proto=tcp dstports=http", Field::DstPorts),
            ("action=accept proto=tcp dstports=+80", Field::DstPorts),
            (
                "action=accept proto=tcp dstports=99999999999",
                Field::DstPorts,
            ),
            ("action=accept proto=icmp icmptype=256", Field::IcmpType),
            ("action=accept proto=icmp icmptype=-1", Field::IcmpType),
            ("action=accept proto=icmp icmptype=", Field::IcmpType),
            ("action=accept proto=icmp icmptype=echo", Field::IcmpType),
        ];
        for (line, field) in cases {
            let e = err(line);
            assert!(
                matches!(e, LineError::InvalidValue { field: f, .. } if f == *field),
                "{line:?}: {e}"
            );
            assert_eq!(e.field(), Some(*field));
            assert!(e.to_string().contains(field.name()), "{e}");
        }
    }

    #[test]
    fn conflicting_fields_are_errors() {
        let cases: &[(&str, Field, Field)] = &[
            (
                "action=accept dst4=1.2.3.4/32 dst6=::1/128",
                Field::Dst6,
                Field::Dst4,
            ),
            (
                "action=accept dst4=1.2.3.4/32 dsthost=qubes-os.org",
                Field::DstHost,
                Field::Dst4,
            ),
            (
                "action=accept proto=icmp dstports=1-2",
                Field::DstPorts,
                Field::Proto,
            ),
            (
                "action=accept proto=tcp icmptype=8",
                Field::IcmpType,
                Field::Proto,
            ),
            (
                "action=accept dstports=1-2 icmptype=8",
                Field::IcmpType,
                Field::DstPorts,
            ),
            (
                "action=accept specialtarget=dns icmptype=8",
                Field::IcmpType,
                Field::SpecialTarget,
            ),
            (
                "action=drop proto=icmp specialtarget=dns",
                Field::SpecialTarget,
                Field::Proto,
            ),
        ];
        for (line, field, other) in cases {
            match err(line) {
                LineError::Conflict { field: f, with, .. } => {
                    assert_eq!((f, with), (*field, *other), "{line:?}");
                }
                e => panic!("{line:?}: {e}"),
            }
        }
    }

    #[test]
    fn error_messages_are_bounded_and_escaped() {
        let long = std::format!("action=accept dsthost={}", "a.".repeat(2000));
        let e = err(&long).to_string();
        assert!(e.len() < 300, "{e}");
        let e = err("action=accept proto=\u{1b}[31m").to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn port_range_contains() {
        let r = PortRange::new(80, 443).unwrap();
        assert!(r.contains(80) && r.contains(443) && r.contains(100));
        assert!(!r.contains(79) && !r.contains(444));
        assert_eq!(PortRange::new(2, 1), None);
        assert_eq!(r.to_string(), "80-443");
    }
}
