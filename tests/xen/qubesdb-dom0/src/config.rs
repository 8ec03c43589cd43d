//! The service's config file and how a change of it is applied to the
//! database, the way dom0's tools change it.
//!
//! ```text
//! # comments and blank lines are ignored
//! /name mirage-firewall          # an entry: KEY, then the value (rest of the line)
//! /qubes-iptables-error          # an entry with an empty value
//! [client 10.137.0.10]           # a client's firewall rules (IPv4 or IPv6 address)
//! policy drop
//! rule action=accept proto=icmp
//! rule action=accept specialtarget=dns
//! ```
//!
//! Entries come before the first `[client ...]` section. A section's rule
//! lines are written as they are (numbered `0000`, `0001`, ... in file
//! order), so a test can also write rules the firewall must reject.
//! `#` starts a comment only at the start of a line (rule lines never hold
//! one, values might).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use qubesdb::{Daemon, QdbError};

/// One client's rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRules {
    /// The `policy` entry.
    pub policy: String,
    /// Rule lines in order.
    pub rules: Vec<String>,
}

/// A parsed config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Plain entries: key → value.
    pub entries: BTreeMap<String, String>,
    /// Rule sets by client address.
    pub clients: BTreeMap<IpAddr, ClientRules>,
}

/// A config file error: line number (from 1) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line.
    pub line: usize,
    /// Why.
    pub why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl Config {
    /// Parse a config file's text.
    pub fn parse(text: &str) -> Result<Config, ParseError> {
        let mut cfg = Config::default();
        let mut section: Option<IpAddr> = None;
        for (i, raw) in text.lines().enumerate() {
            let err = |why: String| ParseError { line: i + 1, why };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(head) = line.strip_prefix('[') {
                let head = head
                    .strip_suffix(']')
                    .ok_or_else(|| err("section header without ']'".into()))?;
                let addr = head
                    .strip_prefix("client")
                    .map(str::trim)
                    .ok_or_else(|| err(format!("unknown section [{head}]")))?;
                let ip: IpAddr = addr
                    .parse()
                    .map_err(|_| err(format!("bad client address {addr:?}")))?;
                if cfg.clients.contains_key(&ip) {
                    return Err(err(format!("client {ip} given twice")));
                }
                cfg.clients.insert(
                    ip,
                    ClientRules {
                        policy: "drop".into(),
                        rules: Vec::new(),
                    },
                );
                section = Some(ip);
                continue;
            }
            let (word, rest) = match line.split_once(char::is_whitespace) {
                Some((w, r)) => (w, r.trim()),
                None => (line, ""),
            };
            match section {
                None => {
                    if !word.starts_with('/') {
                        return Err(err(format!("an entry key starts with '/': {word:?}")));
                    }
                    cfg.entries.insert(word.into(), rest.into());
                }
                Some(ip) => {
                    let c = cfg.clients.get_mut(&ip).expect("section inserted");
                    match word {
                        "policy" => c.policy = rest.into(),
                        "rule" => c.rules.push(rest.into()),
                        _ => {
                            return Err(err(format!(
                                "in [client {ip}]: expected 'policy' or 'rule', got {word:?}"
                            )))
                        }
                    }
                }
            }
        }
        Ok(cfg)
    }
}

/// What applying a config did (for the log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries written.
    pub written: Vec<String>,
    /// Entries removed.
    pub removed: Vec<String>,
    /// Clients whose rules were (re)committed.
    pub committed: Vec<IpAddr>,
    /// Clients whose rules were removed.
    pub dropped: Vec<IpAddr>,
}

impl Applied {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
            && self.removed.is_empty()
            && self.committed.is_empty()
            && self.dropped.is_empty()
    }
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {:?}, removed {:?}, committed rules of {:?}, dropped rules of {:?}",
            self.written, self.removed, self.committed, self.dropped
        )
    }
}

/// Change the database from `old` to `new` as dom0's tools would: entries
/// written or removed one by one; a client's rules, when they changed (or
/// always, with `force`), by the whole reload sequence of
/// `reload_firewall_for_vm` (RM the subtree, `policy`, numbered rules, the
/// empty commit write); a client that is gone has its rules removed.
pub fn apply(
    daemon: &mut Daemon,
    old: &Config,
    new: &Config,
    force: bool,
) -> Result<Applied, QdbError> {
    let mut done = Applied::default();
    for (k, v) in &new.entries {
        if old.entries.get(k) != Some(v) {
            daemon.write(k, v.as_bytes())?;
            done.written.push(k.clone());
        }
    }
    for k in old.entries.keys() {
        if !new.entries.contains_key(k) && daemon.rm(k)? {
            done.removed.push(k.clone());
        }
    }
    for (ip, c) in &new.clients {
        if force || old.clients.get(ip) != Some(c) {
            let rules: Vec<&str> = c.rules.iter().map(String::as_str).collect();
            daemon.set_client_rules(*ip, &c.policy, &rules)?;
            done.committed.push(*ip);
        }
    }
    for ip in old.clients.keys() {
        if !new.clients.contains_key(ip) {
            daemon.remove_client(*ip)?;
            done.dropped.push(*ip);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qubesdb::Client;

    /// What the daemon has queued goes to the client.
    fn deliver(d: &mut Daemon, c: &mut Client) {
        let out = d.output().to_vec();
        d.consume_output(out.len());
        c.receive(&out).unwrap();
    }

    const FILE: &str = "\
# the firewall's own keys
/name mirage-firewall
/qubes-ip 10.99.0.2
/qubes-iptables-error
/qubes-random-seed a b  c

[client 10.137.0.10]
policy drop
rule action=accept proto=icmp
rule action=accept specialtarget=dns
[client fd09:24ef:4179::a89:a]
rule action=drop
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_entries_and_sections() {
        let c = Config::parse(FILE).unwrap();
        assert_eq!(c.entries["/name"], "mirage-firewall");
        assert_eq!(c.entries["/qubes-iptables-error"], "");
        assert_eq!(c.entries["/qubes-random-seed"], "a b  c");
        let r = &c.clients[&ip("10.137.0.10")];
        assert_eq!(r.policy, "drop");
        assert_eq!(
            r.rules,
            [
                "action=accept proto=icmp",
                "action=accept specialtarget=dns"
            ]
        );
        let r6 = &c.clients[&ip("fd09:24ef:4179::a89:a")];
        assert_eq!(r6.policy, "drop");
        assert_eq!(r6.rules, ["action=drop"]);
    }

    #[test]
    fn rejects_bad_lines() {
        for (text, line) in [
            ("name x\n", 1),
            ("/a b\n[client 1.2.3]\n", 2),
            ("[client 1.2.3.4]\nfoo bar\n", 2),
            ("[client 1.2.3.4\n", 1),
            ("[server 1.2.3.4]\n", 1),
            ("[client 1.2.3.4]\n[client 1.2.3.4]\n", 2),
        ] {
            assert_eq!(Config::parse(text).unwrap_err().line, line, "{text:?}");
        }
    }

    /// The daemon's pushes reach a synced client as Qubes' would: a
    /// changed rule set arrives as one committed snapshot.
    #[test]
    fn apply_pushes_changes_to_a_synced_client() {
        let mut d = Daemon::new();
        let first = Config::parse(FILE).unwrap();
        let done = apply(&mut d, &Config::default(), &first, false).unwrap();
        assert_eq!(done.committed.len(), 2);
        assert_eq!(done.written.len(), 4);

        let mut c = Client::new();
        // one MULTIREAD, the dump, the end marker
        let to_dom0 = c.output().to_vec();
        c.consume_output(to_dom0.len());
        d.receive(&to_dom0).unwrap();
        deliver(&mut d, &mut c);
        assert!(c.is_synced());
        let snap = c.rules(ip("10.137.0.10")).unwrap();
        assert_eq!(snap.rule_set_or_deny_all().0.len(), 2);

        // unchanged: nothing; force: both re-committed
        assert!(apply(&mut d, &first, &first, false).unwrap().is_empty());
        let text = FILE.replace("rule action=accept proto=icmp\n", "");
        let second = Config::parse(&text).unwrap();
        let done = apply(&mut d, &first, &second, false).unwrap();
        assert_eq!(done.committed, [ip("10.137.0.10")]);
        deliver(&mut d, &mut c);
        let snap = c.rules(ip("10.137.0.10")).unwrap();
        assert_eq!(snap.rule_set_or_deny_all().0.len(), 1);

        // an entry and a client gone
        let third = Config::parse("/name mirage-firewall\n").unwrap();
        let done = apply(&mut d, &second, &third, false).unwrap();
        assert_eq!(done.removed.len(), 3);
        assert_eq!(done.dropped.len(), 2);
    }
}
