//! The hostfw configuration file: QubesDB-style `KEY VALUE` lines.
//!
//! The layout mirrors what the firewall VM finds in QubesDB (and, for the
//! clients, in the vif backend keys), so a test can write the same keys
//! dom0 would:
//!
//! ```text
//! # the firewall's own uplink (QubesDB of the firewall VM)
//! /qubes-ip 10.138.0.5
//! /qubes-gateway 10.138.0.1
//! /qubes-primary-dns 10.139.1.1
//! /qubes-secondary-dns 10.139.1.2
//! /qubes-netvm-gateway 10.137.0.1
//! /hostfw/uplink/tap hfw-up
//! /hostfw/uplink/mac 00:16:3e:5e:6c:05
//! # one client (the backend keys `ip` and `mac`, plus its TAP)
//! /hostfw/client/work/tap hfw-c1
//! /hostfw/client/work/ip 10.137.0.2
//! /hostfw/client/work/mac 00:16:3e:5e:6c:00
//! # its rules, exactly as dom0 writes them
//! /qubes-firewall/10.137.0.2/policy drop
//! /qubes-firewall/10.137.0.2/0000 action=accept specialtarget=dns
//! /qubes-firewall/10.137.0.2/0001 action=accept proto=tcp dstports=80-80
//! ```
//!
//! A line is a key (starting with `/`, no spaces, at most 64 bytes as
//! QubesDB allows), one or more blanks, and the value: the rest of the
//! line with surrounding blanks removed (inner spacing is kept exactly, so
//! a rule line with two spaces is refused by the rule parser, as dom0
//! would never write it). `#` starts a comment line; blank lines are
//! skipped. Every error names `file:line` and says why.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rules::RuleSet;

/// QubesDB's longest path (`QDB_MAX_PATH`).
pub const MAX_KEY_LEN: usize = 64;
/// QubesDB's largest value (`QDB_MAX_DATA`).
pub const MAX_VALUE_LEN: usize = 3072;
/// Longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;
/// The uplink MAC when the file names none (locally administered).
pub const DEFAULT_UPLINK_MAC: [u8; 6] = [0x02, 0x16, 0x3e, 0x00, 0x00, 0x05];

/// A configuration error at a place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line, 0 when the error is about the file as a whole.
    pub line: usize,
    /// What was wrong.
    pub why: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.why)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.why)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The uplink: the firewall's side toward "sys-net".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    /// TAP device name.
    pub tap: String,
    /// Our MAC on the uplink.
    pub mac: [u8; 6],
    /// `/qubes-ip`: our address, the NAT address.
    pub ip: Ipv4Addr,
    /// `/qubes-gateway`.
    pub gateway: Ipv4Addr,
    /// `/qubes-ip6`.
    pub ip6: Option<Ipv6Addr>,
    /// `/qubes-gateway6`.
    pub gateway6: Option<Ipv6Addr>,
    /// `/qubes-primary-dns`, `/qubes-secondary-dns`.
    pub dns: Vec<IpAddr>,
    /// `/qubes-netvm-gateway`: our address as the clients see it.
    pub client_gateway: Ipv4Addr,
    /// `/qubes-netvm-gateway6`.
    pub client_gateway6: Option<Ipv6Addr>,
}

/// One client AppVM behind the firewall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The name in `/hostfw/client/<name>/...` (for log lines).
    pub name: String,
    /// TAP device name.
    pub tap: String,
    /// The client's address (the rules' key).
    pub ip: Ipv4Addr,
    /// The client's IPv6 address, if any.
    pub ip6: Option<Ipv6Addr>,
    /// The client's MAC.
    pub mac: [u8; 6],
    /// First line that mentions this client.
    pub line: usize,
}

/// One `/qubes-firewall/<ip>/<key>` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleEntry {
    /// `policy`, `0000`, ... (checked by the rule parser).
    pub key: String,
    /// The value (a rule line, or the policy).
    pub value: String,
    /// Its line.
    pub line: usize,
}

/// A parsed configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file name, for errors.
    pub file: String,
    /// The uplink.
    pub uplink: Uplink,
    /// The clients, in the order of their first line.
    pub clients: Vec<Client>,
    /// Rule entries per client address, as in QubesDB.
    pub rules: BTreeMap<IpAddr, Vec<RuleEntry>>,
    /// Things worth a warning that do not stop the firewall (rules for an
    /// address no client has, a client without rules).
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct ClientKeys {
    line: usize,
    tap: Option<(String, usize)>,
    ip: Option<(Ipv4Addr, usize)>,
    ip6: Option<Ipv6Addr>,
    mac: Option<[u8; 6]>,
}

/// Keys QubesDB holds that hostfw accepts and does not need.
const IGNORED: &[&str] = &[
    "/name",
    "/qubes-vm-type",
    "/qubes-vm-updateable",
    "/qubes-vm-persistence",
    "/qubes-base-template",
    "/qubes-netmask",
    "/qubes-netvm-network",
    "/qubes-netvm-netmask",
    "/qubes-netvm-primary-dns",
    "/qubes-netvm-secondary-dns",
    "/qubes-netvm-network6",
    "/qubes-service/qubes-firewall",
    "/qubes-random-seed",
    "/qubes-debug-mode",
];

/// Parse a MAC `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn valid_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name {s:?} must be 1 to {MAX_IFNAME_LEN} bytes"
        ));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("interface name {s:?} is not valid on Linux"));
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 31
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Config {
    /// Parse the text of a configuration file (`file` names it in errors).
    pub fn parse(file: &str, text: &[u8]) -> Result<Config, ConfigError> {
        let err = |line: usize, why: String| ConfigError {
            file: file.to_string(),
            line,
            why,
        };
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut scalars: BTreeMap<&'static str, (String, usize)> = BTreeMap::new();
        let mut clients: BTreeMap<String, ClientKeys> = BTreeMap::new();
        let mut rules: BTreeMap<IpAddr, Vec<RuleEntry>> = BTreeMap::new();
        let mut committed: BTreeMap<IpAddr, usize> = BTreeMap::new();

        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line =
                std::str::from_utf8(raw).map_err(|_| err(n, "line is not valid UTF-8".into()))?;
            if line.chars().any(|c| c.is_control() && c != '\t') {
                return Err(err(n, "control character in line".into()));
            }
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (key, value) = match t.find([' ', '\t']) {
                Some(p) => (&t[..p], t[p..].trim()),
                None => (t, ""),
            };
            if !key.starts_with('/') {
                return Err(err(
                    n,
                    format!("expected a QubesDB key starting with '/', found {key:?}"),
                ));
            }
            if key.len() > MAX_KEY_LEN {
                return Err(err(
                    n,
                    format!("key is {} bytes, QubesDB allows {MAX_KEY_LEN}", key.len()),
                ));
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(err(
                    n,
                    format!(
                        "value is {} bytes, QubesDB allows {MAX_VALUE_LEN}",
                        value.len()
                    ),
                ));
            }
            if let Some(first) = seen.insert(key.to_string(), n) {
                return Err(err(
                    n,
                    format!("duplicate key {key} (first at line {first})"),
                ));
            }

            if let Some(rest) = key.strip_prefix("/qubes-firewall/") {
                let (addr, sub) = match rest.split_once('/') {
                    Some((a, s)) => (a, Some(s)),
                    None => (rest, None),
                };
                let ip: IpAddr = addr.parse().map_err(|_| {
                    err(
                        n,
                        format!("{addr:?} in {key} is not a client IPv4 or IPv6 address"),
                    )
                })?;
                match sub {
                    None => {
                        // The commit marker dom0 writes last: empty.
                        if !value.is_empty() {
                            return Err(err(
                                n,
                                format!("{key} is the commit marker and must be empty"),
                            ));
                        }
                        committed.insert(ip, n);
                    }
                    Some(k) if k.is_empty() || k.contains('/') => {
                        return Err(err(n, format!("unexpected key {key}")));
                    }
                    Some(k) => rules.entry(ip).or_default().push(RuleEntry {
                        key: k.to_string(),
                        value: value.to_string(),
                        line: n,
                    }),
                }
                continue;
            }

            if let Some(rest) = key.strip_prefix("/hostfw/client/") {
                let Some((name, field)) = rest.split_once('/') else {
                    return Err(err(
                        n,
                        format!("expected /hostfw/client/<name>/{{tap,ip,ip6,mac}}, found {key}"),
                    ));
                };
                if !valid_name(name) {
                    return Err(err(
                        n,
                        format!("client name {name:?}: use 1-31 of a-z A-Z 0-9 - _ ."),
                    ));
                }
                let c = clients.entry(name.to_string()).or_default();
                if c.line == 0 {
                    c.line = n;
                }
                match field {
                    "tap" => {
                        valid_ifname(value).map_err(|e| err(n, e))?;
                        c.tap = Some((value.to_string(), n));
                    }
                    "ip" => {
                        let ip: Ipv4Addr = value
                            .parse()
                            .map_err(|_| err(n, format!("{value:?} is not an IPv4 address")))?;
                        c.ip = Some((ip, n));
                    }
                    "ip6" => {
                        c.ip6 =
                            Some(value.parse().map_err(|_| {
                                err(n, format!("{value:?} is not an IPv6 address"))
                            })?);
                    }
                    "mac" => {
                        let mac = parse_mac(value).ok_or_else(|| {
                            err(n, format!("{value:?} is not a MAC (aa:bb:cc:dd:ee:ff)"))
                        })?;
                        if mac[0] & 1 != 0 {
                            return Err(err(n, format!("{value} is a multicast MAC")));
                        }
                        c.mac = Some(mac);
                    }
                    _ => {
                        return Err(err(
                            n,
                            format!("unknown client key {key} (expected tap, ip, ip6 or mac)"),
                        ))
                    }
                }
                continue;
            }

            let known: &'static str = match key {
                "/qubes-ip" => "/qubes-ip",
                "/qubes-gateway" => "/qubes-gateway",
                "/qubes-ip6" => "/qubes-ip6",
                "/qubes-gateway6" => "/qubes-gateway6",
                "/qubes-primary-dns" => "/qubes-primary-dns",
                "/qubes-secondary-dns" => "/qubes-secondary-dns",
                "/qubes-netvm-gateway" => "/qubes-netvm-gateway",
                "/qubes-netvm-gateway6" => "/qubes-netvm-gateway6",
                "/hostfw/uplink/tap" => "/hostfw/uplink/tap",
                "/hostfw/uplink/mac" => "/hostfw/uplink/mac",
                k if IGNORED.contains(&k) => continue,
                k => return Err(err(n, format!("unknown key {k}"))),
            };
            scalars.insert(known, (value.to_string(), n));
        }

        let get = |k: &str| scalars.get(k).map(|(v, l)| (v.as_str(), *l));
        let v4 = |k: &str, required: bool| -> Result<Option<Ipv4Addr>, ConfigError> {
            match get(k) {
                Some((v, l)) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| err(l, format!("{k}: {v:?} is not an IPv4 address"))),
                None if required => Err(err(0, format!("missing required key {k}"))),
                None => Ok(None),
            }
        };
        let v6 = |k: &str| -> Result<Option<Ipv6Addr>, ConfigError> {
            match get(k) {
                Some((v, l)) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| err(l, format!("{k}: {v:?} is not an IPv6 address"))),
                None => Ok(None),
            }
        };
        let ip = v4("/qubes-ip", true)?.expect("required");
        let gateway = v4("/qubes-gateway", true)?.expect("required");
        let client_gateway = v4("/qubes-netvm-gateway", true)?.expect("required");
        let mut dns = Vec::new();
        for k in ["/qubes-primary-dns", "/qubes-secondary-dns"] {
            if let Some((v, l)) = get(k) {
                let a: IpAddr = v
                    .parse()
                    .map_err(|_| err(l, format!("{k}: {v:?} is not an IP address")))?;
                dns.push(a);
            }
        }
        let tap = match get("/hostfw/uplink/tap") {
            Some((v, l)) => {
                valid_ifname(v).map_err(|e| err(l, e))?;
                v.to_string()
            }
            None => return Err(err(0, "missing required key /hostfw/uplink/tap".into())),
        };
        let mac = match get("/hostfw/uplink/mac") {
            Some((v, l)) => parse_mac(v)
                .filter(|m| m[0] & 1 == 0)
                .ok_or_else(|| err(l, format!("{v:?} is not a unicast MAC (aa:bb:cc:dd:ee:ff)")))?,
            None => DEFAULT_UPLINK_MAC,
        };
        let uplink = Uplink {
            tap,
            mac,
            ip,
            gateway,
            ip6: v6("/qubes-ip6")?,
            gateway6: v6("/qubes-gateway6")?,
            dns,
            client_gateway,
            client_gateway6: v6("/qubes-netvm-gateway6")?,
        };

        let mut out: Vec<Client> = Vec::new();
        for (name, c) in clients {
            let missing = |f: &str| {
                err(
                    c.line,
                    format!("client {name}: missing /hostfw/client/{name}/{f}"),
                )
            };
            let (tap, tap_line) = c.tap.ok_or_else(|| missing("tap"))?;
            let (cip, ip_line) = c.ip.ok_or_else(|| missing("ip"))?;
            let mac = c.mac.ok_or_else(|| missing("mac"))?;
            if tap == uplink.tap {
                return Err(err(
                    tap_line,
                    format!("client {name}: {tap} is the uplink TAP"),
                ));
            }
            if let Some(o) = out.iter().find(|o| o.tap == tap) {
                return Err(err(
                    tap_line,
                    format!("client {name}: TAP {tap} already used by client {}", o.name),
                ));
            }
            if let Some(o) = out.iter().find(|o| o.ip == cip) {
                return Err(err(
                    ip_line,
                    format!(
                        "client {name}: address {cip} already used by client {}",
                        o.name
                    ),
                ));
            }
            if cip == uplink.ip || cip == uplink.client_gateway {
                return Err(err(
                    ip_line,
                    format!("client {name}: address {cip} is the firewall's own"),
                ));
            }
            out.push(Client {
                name,
                tap,
                ip: cip,
                ip6: c.ip6,
                mac,
                line: c.line,
            });
        }
        out.sort_by_key(|c| c.line);

        let mut warnings = Vec::new();
        for (addr, entries) in &rules {
            let owned = out
                .iter()
                .any(|c| IpAddr::V4(c.ip) == *addr || c.ip6.map(IpAddr::V6) == Some(*addr));
            if !owned {
                warnings.push(format!(
                    "{file}:{}: rules for {addr}, which no client has: ignored",
                    entries[0].line
                ));
            }
        }
        for addr in committed.keys() {
            if !rules.contains_key(addr) {
                warnings.push(format!(
                    "{file}:{}: /qubes-firewall/{addr} committed with no rules: that client is blocked",
                    committed[addr]
                ));
            }
        }
        for c in &out {
            if !rules.contains_key(&IpAddr::V4(c.ip)) {
                warnings.push(format!(
                    "{file}:{}: client {} ({}) has no rules: all its traffic is blocked",
                    c.line, c.name, c.ip
                ));
            }
        }
        Ok(Config {
            file: file.to_string(),
            uplink,
            clients: out,
            rules,
            warnings,
        })
    }

    /// The rule set of the client address `ip` (either family), checked
    /// by the `rules` crate; an error names the line of the offending
    /// entry. No entries at all is the deny-all set (fail closed).
    pub fn rule_set(&self, ip: IpAddr) -> Result<RuleSet, ConfigError> {
        let Some(entries) = self.rules.get(&ip) else {
            return Ok(RuleSet::deny_all());
        };
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        RuleSet::from_addr_entries(ip, &pairs).map_err(|e| {
            let line = e
                .key()
                .and_then(|k| entries.iter().find(|x| x.key == k))
                .or(entries.first())
                .map_or(0, |x| x.line);
            ConfigError {
                file: self.file.clone(),
                line,
                why: e.to_string(),
            }
        })
    }

    /// Everything but the rules, for telling whether a reload changed the
    /// topology (which needs a restart).
    pub fn same_topology(&self, other: &Config) -> bool {
        self.uplink == other.uplink && self.clients == other.clients
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# hostfw test config
/qubes-ip 10.138.0.5
/qubes-gateway 10.138.0.1
/qubes-primary-dns 10.139.1.1
/qubes-secondary-dns 10.139.1.2
/qubes-netvm-gateway 10.137.0.1
/hostfw/uplink/tap hfw-up
/hostfw/client/a/tap hfw-c1
/hostfw/client/a/ip 10.137.0.2
/hostfw/client/a/mac 00:16:3e:5e:6c:00
/qubes-firewall/10.137.0.2/policy drop
/qubes-firewall/10.137.0.2/0000 action=accept specialtarget=dns
/qubes-firewall/10.137.0.2/0001 action=accept proto=tcp dstports=80-80
/qubes-firewall/10.137.0.2
";

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse("t.conf", s.as_bytes())
    }

    fn fails_at(s: &str, line: usize, contains: &str) {
        let e = parse(s).expect_err("should fail");
        assert_eq!(e.line, line, "{e}");
        assert!(e.why.contains(contains), "{e}");
        assert!(e.to_string().starts_with("t.conf"), "{e}");
    }

    fn with(extra: &str) -> String {
        format!("{GOOD}{extra}\n")
    }

    #[test]
    fn good_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.uplink.ip, Ipv4Addr::new(10, 138, 0, 5));
        assert_eq!(c.uplink.dns.len(), 2);
        assert_eq!(c.uplink.mac, DEFAULT_UPLINK_MAC);
        assert_eq!(c.clients.len(), 1);
        assert_eq!(c.clients[0].tap, "hfw-c1");
        assert_eq!(c.clients[0].mac, [0, 0x16, 0x3e, 0x5e, 0x6c, 0]);
        let rs = c.rule_set("10.137.0.2".parse().unwrap()).unwrap();
        assert_eq!(rs.len(), 2);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn crlf_comments_and_tabs() {
        let s = GOOD
            .replace('\n', "\r\n")
            .replace("/qubes-ip 10", "/qubes-ip\t 10");
        let c = parse(&format!("  # indented comment\r\n\r\n{s}")).unwrap();
        assert_eq!(c.uplink.ip, Ipv4Addr::new(10, 138, 0, 5));
    }

    #[test]
    fn malformed_lines() {
        let n = GOOD.lines().count() + 1;
        fails_at(&with("qubes-ip 1.2.3.4"), n, "starting with '/'");
        fails_at(&with("/qubes-bogus 1"), n, "unknown key /qubes-bogus");
        fails_at(
            &with("/qubes-ip 10.0.0.1"),
            n,
            "duplicate key /qubes-ip (first at line 2)",
        );
        fails_at(
            &with("/hostfw/client/a/colour red"),
            n,
            "unknown client key",
        );
        fails_at(&with("/hostfw/client/b!c/tap x"), n, "client name");
        fails_at(
            &with("/hostfw/client/b"),
            n,
            "expected /hostfw/client/<name>/",
        );
        fails_at(
            &with("/hostfw/client/b/ip 10.137.0.300"),
            n,
            "not an IPv4 address",
        );
        fails_at(&with("/hostfw/client/b/mac 00:16:3e:5e:6c"), n, "not a MAC");
        fails_at(
            &with("/hostfw/client/b/mac 01:16:3e:5e:6c:00"),
            n,
            "multicast",
        );
        fails_at(
            &with("/hostfw/client/b/tap this-name-is-too-long"),
            n,
            "1 to 15 bytes",
        );
        fails_at(
            &with("/qubes-firewall/not-an-ip/0000 action=accept"),
            n,
            "not a client",
        );
        fails_at(
            &with("/qubes-firewall/10.137.0.2/0000/x action=accept"),
            n,
            "unexpected key",
        );
        fails_at(&with("/qubes-firewall/10.137.0.9 x"), n, "commit marker");
        fails_at(
            &with(&format!("/{} 1", "k".repeat(70))),
            n,
            "QubesDB allows 64",
        );
        fails_at(
            &with(&format!("/name {}", "v".repeat(4000))),
            n,
            "QubesDB allows 3072",
        );
        fails_at(&with("/name a\u{1}b"), n, "control character");
        let mut bad = GOOD.as_bytes().to_vec();
        bad.extend_from_slice(b"/name \xff\xfe\n");
        let e = Config::parse("t.conf", &bad).unwrap_err();
        assert_eq!((e.line, e.why.as_str()), (n, "line is not valid UTF-8"));
    }

    #[test]
    fn bad_values_name_their_line() {
        fails_at(
            &GOOD.replace("/qubes-ip 10.138.0.5", "/qubes-ip ten"),
            2,
            "/qubes-ip",
        );
        fails_at(
            &GOOD.replace("/qubes-primary-dns 10.139.1.1", "/qubes-primary-dns x"),
            4,
            "not an IP",
        );
        fails_at(
            &with("/hostfw/uplink/mac ff:ff:ff:ff:ff:ff"),
            GOOD.lines().count() + 1,
            "unicast",
        );
    }

    #[test]
    fn missing_keys() {
        fails_at(
            &GOOD.replace("/qubes-gateway 10.138.0.1\n", ""),
            0,
            "/qubes-gateway",
        );
        fails_at(
            &GOOD.replace("/hostfw/uplink/tap hfw-up\n", ""),
            0,
            "/hostfw/uplink/tap",
        );
        fails_at(
            &GOOD.replace("/hostfw/client/a/mac 00:16:3e:5e:6c:00\n", ""),
            8,
            "missing /hostfw/client/a/mac",
        );
    }

    #[test]
    fn client_conflicts() {
        let n = GOOD.lines().count();
        fails_at(
            &with("/hostfw/client/b/tap hfw-c1\n/hostfw/client/b/ip 10.137.0.3\n/hostfw/client/b/mac 00:16:3e:5e:6c:01"),
            n + 1,
            "already used by client a",
        );
        fails_at(
            &with("/hostfw/client/b/tap hfw-c2\n/hostfw/client/b/ip 10.137.0.2\n/hostfw/client/b/mac 00:16:3e:5e:6c:01"),
            n + 2,
            "address 10.137.0.2 already used",
        );
        fails_at(
            &with("/hostfw/client/b/tap hfw-up\n/hostfw/client/b/ip 10.137.0.3\n/hostfw/client/b/mac 00:16:3e:5e:6c:01"),
            n + 1,
            "uplink TAP",
        );
        fails_at(
            &with("/hostfw/client/b/tap hfw-c2\n/hostfw/client/b/ip 10.138.0.5\n/hostfw/client/b/mac 00:16:3e:5e:6c:01"),
            n + 2,
            "firewall's own",
        );
    }

    #[test]
    fn rule_errors_name_the_rule_line() {
        // Two spaces: not dom0's syntax.
        let c = parse(&GOOD.replace(
            "0001 action=accept proto=tcp",
            "0001 action=accept  proto=tcp",
        ))
        .unwrap();
        let e = c.rule_set("10.137.0.2".parse().unwrap()).unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        let c = parse(&GOOD.replace("proto=tcp", "proto=sctp")).unwrap();
        let e = c.rule_set("10.137.0.2".parse().unwrap()).unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        let c = parse(&GOOD.replace("/qubes-firewall/10.137.0.2/policy drop\n", "")).unwrap();
        let e = c.rule_set("10.137.0.2".parse().unwrap()).unwrap_err();
        assert!(e.why.contains("policy"), "{e}");
        let c = parse(&with("/qubes-firewall/10.137.0.2/12 action=accept")).unwrap();
        assert!(c.rule_set("10.137.0.2".parse().unwrap()).is_err());
    }

    #[test]
    fn warnings_not_errors() {
        let c = parse(&with("/qubes-firewall/10.137.0.99/policy drop")).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("no client"));
        let c = parse(&GOOD.replace("/qubes-firewall/10.137.0.2/", "/qubes-firewall/10.137.0.7/"))
            .unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("has no rules")));
        assert!(c
            .rule_set("10.137.0.2".parse().unwrap())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn topology() {
        let a = parse(GOOD).unwrap();
        let b = parse(&GOOD.replace("dstports=80-80", "dstports=81-81")).unwrap();
        assert!(a.same_topology(&b));
        let c = parse(&GOOD.replace("10.139.1.2", "10.139.1.3")).unwrap();
        assert!(!a.same_topology(&c));
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("fe:ff:ff:ff:ff:ff"),
            Some([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff])
        );
        assert_eq!(parse_mac("fe:ff:ff:ff:ff:ff:00"), None);
        assert_eq!(parse_mac("fe:ff:ff:ff:ff:f"), None);
        assert_eq!(parse_mac("fe:ff:ff:ff:ff:+f"), None);
        assert_eq!(parse_mac(""), None);
    }
}
