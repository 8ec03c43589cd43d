//! [`Field`]: the option names a Qubes rule line may contain.

use core::fmt;

/// One of the eight options dom0 writes in a rule line (docs
/// `vm-interface`, "Firewall rules in 4.x"; the Linux agent's
/// `supported_rule_opts`). Anything else in a rule is an unknown field and
/// fails the whole client's rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `action`: `accept` or `drop`; present in every rule.
    Action,
    /// `dst4`: IPv4 destination network, `a.b.c.d/len` (or a bare address).
    Dst4,
    /// `dst6`: IPv6 destination network, `x:y::z/len` (or a bare address).
    Dst6,
    /// `dsthost`: a DNS name the firewall resolves.
    DstHost,
    /// `proto`: `tcp`, `udp` or `icmp` (ICMPv6 in an IPv6 rule set).
    Proto,
    /// `specialtarget`: only `dns` (the firewall's DNS servers, port 53).
    SpecialTarget,
    /// `dstports`: `low-high` inclusive (or a single port).
    DstPorts,
    /// `icmptype`: decimal ICMP(v6) type, 0 to 255.
    IcmpType,
}

impl Field {
    /// All fields, in the order dom0 writes them.
    pub const ALL: [Field; 8] = [
        Field::Action,
        Field::Dst4,
        Field::Dst6,
        Field::DstHost,
        Field::Proto,
        Field::SpecialTarget,
        Field::DstPorts,
        Field::IcmpType,
    ];

    /// The option name as written in a rule line.
    pub fn name(self) -> &'static str {
        match self {
            Field::Action => "action",
            Field::Dst4 => "dst4",
            Field::Dst6 => "dst6",
            Field::DstHost => "dsthost",
            Field::Proto => "proto",
            Field::SpecialTarget => "specialtarget",
            Field::DstPorts => "dstports",
            Field::IcmpType => "icmptype",
        }
    }

    /// The field with exactly this (lower-case) name, if any.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Position in [`Field::ALL`], for per-field tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_all() {
        for (i, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(Field::from_name(field.name()), Some(field));
            assert_eq!(field.index(), i);
        }
    }

    #[test]
    fn other_names_are_unknown() {
        for name in ["", "Action", "dpi", "expire", "comment", "dstname", "src4"] {
            assert_eq!(Field::from_name(name), None);
        }
    }
}
