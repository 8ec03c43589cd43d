//! Typed views of the keys dom0 writes for a network-providing VM (Qubes
//! 4.2, `QubesVM.create_qdb_entries` and `NetVMMixin`):
//!
//! - [`NetConfig`]: our own uplink (`/qubes-ip`, `/qubes-netmask`,
//!   `/qubes-gateway`, `/qubes-primary-dns`, `/qubes-secondary-dns`,
//!   `/qubes-mac`, `/qubes-ip6`, `/qubes-gateway6`) and what we offer to
//!   our clients (`/qubes-netvm-gateway`, `/qubes-netvm-netmask`,
//!   `/qubes-netvm-primary-dns`, `/qubes-netvm-secondary-dns`,
//!   `/qubes-netvm-gateway6`);
//! - [`ClientList`]: `/connected-ips`, `/connected-ips6` and
//!   `/mapped-ip/<real ip>/{visible-ip,visible-gateway}`.
//!
//! Both are parsed from a [`Db`] as a whole and compared as a whole, so a
//! change is reported once per message that changes the view. A key that is
//! present but does not parse is left out of the view and its path recorded
//! in `invalid` (and logged by the client): dom0 is trusted, so this only
//! catches a confused toolstack, and the firewall decides what an
//! incomplete configuration means.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::db::Db;

/// `/qubes-ip`: our IPv4 address on the uplink.
pub const KEY_IP: &str = "/qubes-ip";
/// `/qubes-netmask`: netmask of our uplink address.
pub const KEY_NETMASK: &str = "/qubes-netmask";
/// `/qubes-gateway`: the uplink gateway (our netvm's address).
pub const KEY_GATEWAY: &str = "/qubes-gateway";
/// `/qubes-primary-dns`: first virtual DNS server.
pub const KEY_PRIMARY_DNS: &str = "/qubes-primary-dns";
/// `/qubes-secondary-dns`: second virtual DNS server.
pub const KEY_SECONDARY_DNS: &str = "/qubes-secondary-dns";
/// `/qubes-mac`: our MAC on the uplink.
pub const KEY_MAC: &str = "/qubes-mac";
/// `/qubes-ip6`: our IPv6 address (only with the `ipv6` feature).
pub const KEY_IP6: &str = "/qubes-ip6";
/// `/qubes-gateway6`: the IPv6 uplink gateway (only with `ipv6`).
pub const KEY_GATEWAY6: &str = "/qubes-gateway6";
/// `/qubes-netvm-gateway`: the gateway address our clients use.
pub const KEY_NETVM_GATEWAY: &str = "/qubes-netvm-gateway";
/// `/qubes-netvm-netmask`: the netmask our clients use.
pub const KEY_NETVM_NETMASK: &str = "/qubes-netvm-netmask";
/// `/qubes-netvm-primary-dns`: first DNS address our clients use.
pub const KEY_NETVM_PRIMARY_DNS: &str = "/qubes-netvm-primary-dns";
/// `/qubes-netvm-secondary-dns`: second DNS address our clients use.
pub const KEY_NETVM_SECONDARY_DNS: &str = "/qubes-netvm-secondary-dns";
/// `/qubes-netvm-gateway6`: the IPv6 gateway our clients use.
pub const KEY_NETVM_GATEWAY6: &str = "/qubes-netvm-gateway6";

/// Every key [`NetConfig`] is built from.
pub const NET_CONFIG_KEYS: [&str; 13] = [
    KEY_IP,
    KEY_NETMASK,
    KEY_GATEWAY,
    KEY_PRIMARY_DNS,
    KEY_SECONDARY_DNS,
    KEY_MAC,
    KEY_IP6,
    KEY_GATEWAY6,
    KEY_NETVM_GATEWAY,
    KEY_NETVM_NETMASK,
    KEY_NETVM_PRIMARY_DNS,
    KEY_NETVM_SECONDARY_DNS,
    KEY_NETVM_GATEWAY6,
];

/// `/connected-ips`: space-separated IPv4 addresses of our clients.
pub const KEY_CONNECTED_IPS: &str = "/connected-ips";
/// `/connected-ips6`: space-separated IPv6 addresses of our clients.
pub const KEY_CONNECTED_IPS6: &str = "/connected-ips6";
/// Prefix of the `net.fake-ip` entries: `/mapped-ip/<real ip>/...`.
pub const MAPPED_IP_PREFIX: &str = "/mapped-ip/";

/// Whether a change to `key` can change the [`ClientList`].
pub fn is_client_list_key(key: &str) -> bool {
    key == KEY_CONNECTED_IPS || key == KEY_CONNECTED_IPS6 || key.starts_with(MAPPED_IP_PREFIX)
}

/// Whether a change to `key` can change the [`NetConfig`].
pub fn is_net_config_key(key: &str) -> bool {
    NET_CONFIG_KEYS.contains(&key)
}

/// Our network configuration as dom0 wrote it (see the module doc). Every
/// field is `None` when its key is absent (e.g. the VM has no netvm, or
/// IPv6 is off) or malformed (then its key is in `invalid`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// `/qubes-ip`.
    pub ip: Option<Ipv4Addr>,
    /// `/qubes-netmask` (dotted quad, or a prefix length, which the
    /// `net.fake-netmask` feature allows; stored as a mask either way).
    pub netmask: Option<Ipv4Addr>,
    /// `/qubes-gateway`.
    pub gateway: Option<Ipv4Addr>,
    /// `/qubes-primary-dns`.
    pub primary_dns: Option<Ipv4Addr>,
    /// `/qubes-secondary-dns`.
    pub secondary_dns: Option<Ipv4Addr>,
    /// `/qubes-mac`.
    pub mac: Option<[u8; 6]>,
    /// `/qubes-ip6`.
    pub ip6: Option<Ipv6Addr>,
    /// `/qubes-gateway6`.
    pub gateway6: Option<Ipv6Addr>,
    /// `/qubes-netvm-gateway`.
    pub netvm_gateway: Option<Ipv4Addr>,
    /// `/qubes-netvm-netmask`.
    pub netvm_netmask: Option<Ipv4Addr>,
    /// `/qubes-netvm-primary-dns`.
    pub netvm_primary_dns: Option<Ipv4Addr>,
    /// `/qubes-netvm-secondary-dns`.
    pub netvm_secondary_dns: Option<Ipv4Addr>,
    /// `/qubes-netvm-gateway6`.
    pub netvm_gateway6: Option<Ipv6Addr>,
    /// Keys that were present but did not parse.
    pub invalid: Vec<&'static str>,
}

/// The IPv4 uplink, when the keys needed to bring it up are all present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uplink {
    /// Our address.
    pub ip: Ipv4Addr,
    /// Its netmask (`255.255.255.255` when dom0 wrote none).
    pub netmask: Ipv4Addr,
    /// The gateway (sys-net).
    pub gateway: Ipv4Addr,
    /// The virtual DNS servers, in order, those that are set.
    pub dns: [Option<Ipv4Addr>; 2],
}

impl NetConfig {
    /// Parse the configuration keys of `db`.
    pub fn from_db(db: &Db) -> NetConfig {
        let mut invalid = Vec::new();
        let mut v4 = |key: &'static str| parse_key(db, key, &mut invalid, parse_ipv4);
        let ip = v4(KEY_IP);
        let gateway = v4(KEY_GATEWAY);
        let primary_dns = v4(KEY_PRIMARY_DNS);
        let secondary_dns = v4(KEY_SECONDARY_DNS);
        let netvm_gateway = v4(KEY_NETVM_GATEWAY);
        let netvm_primary_dns = v4(KEY_NETVM_PRIMARY_DNS);
        let netvm_secondary_dns = v4(KEY_NETVM_SECONDARY_DNS);
        let netmask = parse_key(db, KEY_NETMASK, &mut invalid, parse_netmask);
        let netvm_netmask = parse_key(db, KEY_NETVM_NETMASK, &mut invalid, parse_netmask);
        let mac = parse_key(db, KEY_MAC, &mut invalid, parse_mac);
        let ip6 = parse_key(db, KEY_IP6, &mut invalid, parse_ipv6);
        let gateway6 = parse_key(db, KEY_GATEWAY6, &mut invalid, parse_ipv6);
        let netvm_gateway6 = parse_key(db, KEY_NETVM_GATEWAY6, &mut invalid, parse_ipv6);
        NetConfig {
            ip,
            netmask,
            gateway,
            primary_dns,
            secondary_dns,
            mac,
            ip6,
            gateway6,
            netvm_gateway,
            netvm_netmask,
            netvm_primary_dns,
            netvm_secondary_dns,
            netvm_gateway6,
            invalid,
        }
    }

    /// The IPv4 uplink if `/qubes-ip` and `/qubes-gateway` are set (the two
    /// keys mirage's firewall waits for; DNS and netmask are optional).
    pub fn uplink(&self) -> Option<Uplink> {
        Some(Uplink {
            ip: self.ip?,
            netmask: self.netmask.unwrap_or(Ipv4Addr::BROADCAST),
            gateway: self.gateway?,
            dns: [self.primary_dns, self.secondary_dns],
        })
    }

    /// The DNS server addresses our clients were told to use (the
    /// `/qubes-netvm-*-dns` keys), those that are set.
    pub fn client_dns(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        [self.netvm_primary_dns, self.netvm_secondary_dns]
            .into_iter()
            .flatten()
    }
}

/// The `net.fake-ip` mapping of one client (`/mapped-ip/<real ip>/...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MappedIp {
    /// `visible-ip`: the address the client believes it has.
    pub visible_ip: Option<Ipv4Addr>,
    /// `visible-gateway`: the gateway the client believes it has.
    pub visible_gateway: Option<Ipv4Addr>,
}

/// A client's `/mapped-ip/<real ip>/visible-ip` or `visible-gateway` is
/// not an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidMapping;

impl core::fmt::Display for InvalidMapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("visible-ip or visible-gateway is not an IPv4 address")
    }
}

/// Which clients dom0 says are connected to us (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientList {
    /// `/connected-ips`, in dom0's order.
    pub connected_ips: Vec<Ipv4Addr>,
    /// `/connected-ips6`, in dom0's order.
    pub connected_ips6: Vec<Ipv6Addr>,
    /// `/mapped-ip/<real ip>/...`, by real IP.
    pub mapped: BTreeMap<Ipv4Addr, MappedIp>,
    /// Keys that were present but did not parse (whole key, or a
    /// `/mapped-ip/` entry of an unexpected shape).
    pub invalid: Vec<String>,
    /// Real IPs whose `visible-ip` or `visible-gateway` is present but
    /// not an IPv4 address (so the firewall can block that client rather
    /// than guess; the key is also in `invalid`).
    pub invalid_mapped: Vec<Ipv4Addr>,
}

impl ClientList {
    /// Parse the client keys of `db`.
    pub fn from_db(db: &Db) -> ClientList {
        let mut list = ClientList::default();
        if let Some(v) = db.get(KEY_CONNECTED_IPS) {
            match parse_list(v, parse_ipv4) {
                Some(ips) => list.connected_ips = ips,
                None => list.invalid.push(String::from(KEY_CONNECTED_IPS)),
            }
        }
        if let Some(v) = db.get(KEY_CONNECTED_IPS6) {
            match parse_list(v, parse_ipv6) {
                Some(ips) => list.connected_ips6 = ips,
                None => list.invalid.push(String::from(KEY_CONNECTED_IPS6)),
            }
        }
        for (key, value) in db.entries_under(MAPPED_IP_PREFIX) {
            if !list.add_mapped(&key[MAPPED_IP_PREFIX.len()..], value) {
                list.invalid.push(String::from(key));
            }
        }
        list
    }

    /// Record `/mapped-ip/<rest>` = `value`; false if it does not parse.
    fn add_mapped(&mut self, rest: &str, value: &[u8]) -> bool {
        let Some((real, field)) = rest.split_once('/') else {
            return false;
        };
        let Some(real) = parse_ipv4(real.as_bytes()) else {
            return false;
        };
        let set: fn(&mut MappedIp, Ipv4Addr) = match field {
            "visible-ip" => |m, a| m.visible_ip = Some(a),
            "visible-gateway" => |m, a| m.visible_gateway = Some(a),
            _ => return false,
        };
        let Some(addr) = parse_ipv4(value) else {
            if !self.invalid_mapped.contains(&real) {
                self.invalid_mapped.push(real);
            }
            return false;
        };
        set(self.mapped.entry(real).or_default(), addr);
        true
    }

    /// The `net.fake-ip` mapping of the client whose real address is
    /// `real`: `Ok(None)` without entries, `Err(InvalidMapping)` if one
    /// of its values does not parse (whatever the other says).
    pub fn mapping(&self, real: Ipv4Addr) -> Result<Option<MappedIp>, InvalidMapping> {
        if self.invalid_mapped.contains(&real) {
            return Err(InvalidMapping);
        }
        Ok(self.mapped.get(&real).copied())
    }

    /// Whether `ip` is in `/connected-ips`.
    pub fn is_connected(&self, ip: Ipv4Addr) -> bool {
        self.connected_ips.contains(&ip)
    }
}

fn parse_key<T>(
    db: &Db,
    key: &'static str,
    invalid: &mut Vec<&'static str>,
    parse: fn(&[u8]) -> Option<T>,
) -> Option<T> {
    let value = db.get(key)?;
    let parsed = parse(value);
    if parsed.is_none() {
        invalid.push(key);
    }
    parsed
}

fn as_str(v: &[u8]) -> Option<&str> {
    core::str::from_utf8(v).ok()
}

/// A dotted-quad IPv4 address, exactly (no spaces).
pub fn parse_ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    as_str(v)?.parse().ok()
}

/// An IPv6 address in any textual form `core` accepts.
pub fn parse_ipv6(v: &[u8]) -> Option<Ipv6Addr> {
    as_str(v)?.parse().ok()
}

/// A netmask: a dotted quad that is a contiguous mask, or a prefix length
/// `0..=32` (the `net.fake-netmask` feature accepts both forms).
pub fn parse_netmask(v: &[u8]) -> Option<Ipv4Addr> {
    let s = as_str(v)?;
    if !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()) {
        let len: u32 = s.parse().ok()?;
        if len > 32 {
            return None;
        }
        let bits = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        return Some(Ipv4Addr::from(bits));
    }
    let mask: Ipv4Addr = s.parse().ok()?;
    let bits = u32::from(mask);
    // Contiguous: the ones form a prefix.
    if bits.leading_ones() + bits.trailing_zeros() == 32 {
        Some(mask)
    } else {
        None
    }
}

/// A MAC address as `xx:xx:xx:xx:xx:xx` (hex digits of either case).
pub fn parse_mac(v: &[u8]) -> Option<[u8; 6]> {
    let s = as_str(v)?;
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(mac)
}

/// A space-separated list (dom0 joins with single spaces; the empty string
/// is the empty list). `None` if any element does not parse.
fn parse_list<T>(v: &[u8], parse: fn(&[u8]) -> Option<T>) -> Option<Vec<T>> {
    v.split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .map(parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn db(entries: &[(&str, &str)]) -> Db {
        let mut db = Db::new();
        for (k, v) in entries {
            db.write(k, v.as_bytes()).unwrap();
        }
        db
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn full_firewall_config() {
        let d = db(&[
            ("/qubes-ip", "10.137.0.23"),
            ("/qubes-netmask", "255.255.255.255"),
            ("/qubes-gateway", "10.137.0.4"),
            ("/qubes-primary-dns", "10.139.1.1"),
            ("/qubes-secondary-dns", "10.139.1.2"),
            ("/qubes-mac", "00:16:3E:5e:6c:00"),
            ("/qubes-netvm-gateway", "10.137.0.23"),
            ("/qubes-netvm-network", "10.137.0.23"),
            ("/qubes-netvm-netmask", "255.255.255.255"),
            ("/qubes-netvm-primary-dns", "10.139.1.1"),
            ("/qubes-netvm-secondary-dns", "10.139.1.2"),
            ("/qubes-ip6", "fd09:24ef:4179::a89:17"),
            ("/qubes-gateway6", "fd09:24ef:4179::a89:4"),
            ("/qubes-netvm-gateway6", "fd09:24ef:4179::a89:17"),
        ]);
        let c = NetConfig::from_db(&d);
        assert_eq!(c.invalid, Vec::<&str>::new());
        assert_eq!(
            c.uplink(),
            Some(Uplink {
                ip: ip("10.137.0.23"),
                netmask: Ipv4Addr::BROADCAST,
                gateway: ip("10.137.0.4"),
                dns: [Some(ip("10.139.1.1")), Some(ip("10.139.1.2"))],
            })
        );
        assert_eq!(c.mac, Some([0, 0x16, 0x3e, 0x5e, 0x6c, 0]));
        assert_eq!(c.ip6, Some("fd09:24ef:4179::a89:17".parse().unwrap()));
        assert_eq!(c.gateway6, Some("fd09:24ef:4179::a89:4".parse().unwrap()));
        assert_eq!(c.netvm_gateway, Some(ip("10.137.0.23")));
        assert_eq!(c.netvm_gateway6, c.ip6);
        assert_eq!(
            c.client_dns().collect::<Vec<_>>(),
            [ip("10.139.1.1"), ip("10.139.1.2")]
        );
    }

    #[test]
    fn missing_keys_are_none_and_no_uplink() {
        let c = NetConfig::from_db(&db(&[("/qubes-ip", "10.0.0.1")]));
        assert_eq!(c.ip, Some(ip("10.0.0.1")));
        assert_eq!(c.uplink(), None);
        assert_eq!(NetConfig::from_db(&Db::new()), NetConfig::default());
    }

    #[test]
    fn malformed_values_are_recorded() {
        let c = NetConfig::from_db(&db(&[
            ("/qubes-ip", "10.0.0.256"),
            ("/qubes-gateway", " 10.0.0.1"),
            ("/qubes-netmask", "255.0.255.0"),
            ("/qubes-mac", "00:16:3e:5e:6c"),
            ("/qubes-ip6", "10.0.0.1"),
        ]));
        assert_eq!(c.ip, None);
        assert_eq!(c.gateway, None);
        assert_eq!(c.netmask, None);
        assert_eq!(c.mac, None);
        assert_eq!(c.ip6, None);
        assert_eq!(
            c.invalid,
            [
                "/qubes-ip",
                "/qubes-gateway",
                "/qubes-netmask",
                "/qubes-mac",
                "/qubes-ip6"
            ]
        );
    }

    #[test]
    fn netmask_forms() {
        assert_eq!(parse_netmask(b"24"), Some(ip("255.255.255.0")));
        assert_eq!(parse_netmask(b"0"), Some(ip("0.0.0.0")));
        assert_eq!(parse_netmask(b"32"), Some(ip("255.255.255.255")));
        assert_eq!(parse_netmask(b"33"), None);
        assert_eq!(parse_netmask(b"255.255.254.0"), Some(ip("255.255.254.0")));
        assert_eq!(parse_netmask(b"0.0.0.0"), Some(ip("0.0.0.0")));
        assert_eq!(parse_netmask(b"255.255.0.255"), None);
        assert_eq!(parse_netmask(b""), None);
        assert_eq!(parse_netmask(b"\xff"), None);
    }

    #[test]
    fn mac_forms() {
        assert_eq!(
            parse_mac(b"fe:ff:ff:ff:ff:ff"),
            Some([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff])
        );
        for bad in [
            &b"fe:ff:ff:ff:ff"[..],
            b"fe:ff:ff:ff:ff:ff:00",
            b"f:ff:ff:ff:ff:fff",
            b"+f:ff:ff:ff:ff:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn client_list() {
        let l = ClientList::from_db(&db(&[
            ("/connected-ips", "10.137.0.5 10.137.0.9"),
            ("/connected-ips6", ""),
            ("/mapped-ip/10.137.0.5/visible-ip", "10.137.0.5"),
            ("/mapped-ip/10.137.0.5/visible-gateway", "10.137.0.23"),
            ("/mapped-ip/10.137.0.9/visible-ip", "192.168.1.2"),
        ]));
        assert_eq!(l.connected_ips, [ip("10.137.0.5"), ip("10.137.0.9")]);
        assert!(l.connected_ips6.is_empty());
        assert!(l.is_connected(ip("10.137.0.9")));
        assert!(!l.is_connected(ip("10.137.0.10")));
        assert_eq!(
            l.mapped[&ip("10.137.0.5")],
            MappedIp {
                visible_ip: Some(ip("10.137.0.5")),
                visible_gateway: Some(ip("10.137.0.23")),
            }
        );
        assert_eq!(l.mapped[&ip("10.137.0.9")].visible_gateway, None);
        assert!(l.invalid.is_empty());
    }

    #[test]
    fn client_list_errors() {
        let l = ClientList::from_db(&db(&[
            ("/connected-ips", "10.137.0.5 bogus"),
            ("/connected-ips6", "fd09::1  fd09::2"),
            ("/mapped-ip/10.137.0.5", "x"),
            ("/mapped-ip/10.137.0.5/other", "10.0.0.1"),
            ("/mapped-ip/nothere/visible-ip", "10.0.0.1"),
        ]));
        assert!(l.connected_ips.is_empty());
        assert_eq!(l.connected_ips6.len(), 2, "double spaces are tolerated");
        assert_eq!(
            l.invalid,
            vec![
                "/connected-ips",
                "/mapped-ip/10.137.0.5",
                "/mapped-ip/10.137.0.5/other",
                "/mapped-ip/nothere/visible-ip"
            ]
        );
    }

    #[test]
    fn mapped_ip_values_that_do_not_parse_mark_the_client() {
        let l = ClientList::from_db(&db(&[
            ("/mapped-ip/10.137.0.5/visible-ip", "10.137.0.500"),
            ("/mapped-ip/10.137.0.5/visible-gateway", "10.137.0.1"),
            ("/mapped-ip/10.137.0.6/visible-ip", "192.168.0.6"),
            ("/mapped-ip/10.137.0.6/visible-gateway", "fe80::1"),
            ("/mapped-ip/10.137.0.7/visible-ip", " 192.168.0.7"),
            ("/mapped-ip/10.137.0.8/visible-ip", "192.168.0.8"),
            ("/mapped-ip/10.137.0.9/visible-gateway", "\u{ff}"),
            ("/mapped-ip/10.137.0.10/visible-ip", ""),
            ("/mapped-ip/bogus/visible-ip", "192.168.0.1"),
        ]));
        for bad in [
            "10.137.0.5",
            "10.137.0.6",
            "10.137.0.7",
            "10.137.0.9",
            "10.137.0.10",
        ] {
            assert_eq!(l.mapping(ip(bad)), Err(InvalidMapping), "{bad}");
        }
        assert_eq!(
            l.mapping(ip("10.137.0.8")),
            Ok(Some(MappedIp {
                visible_ip: Some(ip("192.168.0.8")),
                visible_gateway: None,
            }))
        );
        assert_eq!(l.mapping(ip("10.137.0.11")), Ok(None));
        assert_eq!(l.invalid.len(), 6);
        // Unknown fields are recorded, but do not mark the client.
        let l = ClientList::from_db(&db(&[("/mapped-ip/10.137.0.5/other", "x")]));
        assert_eq!(l.mapping(ip("10.137.0.5")), Ok(None));
    }

    #[test]
    fn key_classification() {
        assert!(is_net_config_key("/qubes-ip"));
        assert!(!is_net_config_key("/qubes-ip/x"));
        assert!(!is_net_config_key("/qubes-netvm-network"));
        assert!(is_client_list_key("/connected-ips6"));
        assert!(is_client_list_key("/mapped-ip/1.2.3.4/visible-ip"));
        assert!(!is_client_list_key("/qubes-firewall/1.2.3.4"));
    }
}
