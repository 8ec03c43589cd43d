//! Committed firewall rules: what was under `/qubes-firewall/<ip>/` when
//! dom0 signalled "rules for `<ip>` are complete".
//!
//! dom0 (`NetVMMixin.reload_firewall_for_vm`) rewrites a client's rules by
//! removing the subtree `/qubes-firewall/<ip>/`, writing `policy` and the
//! numbered rules `0000`, `0001`, ..., and finally writing the empty value
//! to `/qubes-firewall/<ip>`: that empty write is the commit. A
//! [`RuleSnapshot`] is taken at that moment and is immutable; the writes
//! in between never reach the firewall, so it never sees half a rule set.
//!
//! The snapshot keeps the raw entries (relative key, value) in key order;
//! turning them into rules is the `rules` crate's job:
//! [`RuleSnapshot::rule_set`] builds a [`rules::RuleSet`], and
//! [`RuleSnapshot::rule_set_or_deny_all`] fails closed as Qubes requires
//! (any error blocks all of the client's traffic).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use crate::db::Db;

/// Prefix of every firewall key.
pub const FIREWALL_PREFIX: &str = "/qubes-firewall/";

/// The client of a commit key `/qubes-firewall/<ip>` (exactly one segment
/// after the prefix, an IPv4 or IPv6 address), or `None` for any other key.
pub fn commit_key_client(key: &str) -> Option<IpAddr> {
    let seg = key.strip_prefix(FIREWALL_PREFIX)?;
    if seg.is_empty() || seg.contains('/') {
        return None;
    }
    seg.parse().ok()
}

/// Whether `key` is one segment below [`FIREWALL_PREFIX`] (a commit key,
/// whether or not its segment is an address).
pub fn is_commit_shaped(key: &str) -> bool {
    key.strip_prefix(FIREWALL_PREFIX)
        .is_some_and(|seg| !seg.is_empty() && !seg.contains('/'))
}

/// `/qubes-firewall/<ip>`: the key whose empty write commits `client`'s
/// rules.
pub fn commit_key(client: IpAddr) -> String {
    format!("{FIREWALL_PREFIX}{client}")
}

/// `/qubes-firewall/<ip>/`: the subtree holding `client`'s rules.
pub fn rules_prefix(client: IpAddr) -> String {
    format!("{FIREWALL_PREFIX}{client}/")
}

/// A rule entry's value is not UTF-8 (rule lines are ASCII).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotUtf8 {
    /// The relative key (e.g. `0003`).
    pub key: String,
}

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firewall entry {:?} is not UTF-8", self.key)
    }
}

impl core::error::Error for NotUtf8 {}

/// Why a committed snapshot gave no rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// An entry's value is not UTF-8.
    NotUtf8 {
        /// The client.
        client: IpAddr,
        /// The entry.
        error: NotUtf8,
    },
    /// The entries do not form a valid rule set.
    Rules(rules::RuleError),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotUtf8 { client, error } => write!(f, "rules of {client}: {error}"),
            SnapshotError::Rules(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SnapshotError {}

/// A client's committed rule entries (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSnapshot {
    client: IpAddr,
    generation: u64,
    entries: Vec<(String, Box<[u8]>)>,
}

impl RuleSnapshot {
    /// Capture the entries under `/qubes-firewall/<key segment>/` in `db`.
    /// `key` is the commit key as dom0 spelt it (the snapshot is keyed by
    /// the parsed `client`, but the subtree is found by spelling).
    pub fn capture(db: &Db, key: &str, client: IpAddr, generation: u64) -> RuleSnapshot {
        let prefix = format!("{key}/");
        let entries = db
            .entries_under(&prefix)
            .map(|(k, v)| (String::from(&k[prefix.len()..]), Box::from(v)))
            .collect();
        RuleSnapshot {
            client,
            generation,
            entries,
        }
    }

    /// Build a snapshot from entries directly (tests, and callers that
    /// have rules from elsewhere). Entries are sorted by key.
    pub fn from_entries(client: IpAddr, generation: u64, entries: &[(&str, &str)]) -> RuleSnapshot {
        let mut entries: Vec<(String, Box<[u8]>)> = entries
            .iter()
            .map(|(k, v)| (String::from(*k), Box::from(v.as_bytes())))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        RuleSnapshot {
            client,
            generation,
            entries,
        }
    }

    /// The client address the rules filter (traffic *from* it).
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// Counts commits seen by this client instance: a later commit has a
    /// larger number, even if its entries are identical.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of entries (`policy` included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries at all (no `policy` either).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(relative key, value)` in key order, e.g. `("0000", b"action=accept")`,
    /// `("policy", b"drop")`.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), &v[..]))
    }

    /// The value of one relative key.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i].1[..])
    }

    /// The `policy` value, if any.
    pub fn policy(&self) -> Option<&[u8]> {
        self.get("policy")
    }

    /// The entries as strings, or the first key whose value is not UTF-8.
    pub fn str_entries(&self) -> Result<Vec<(&str, &str)>, NotUtf8> {
        self.entries
            .iter()
            .map(|(k, v)| match core::str::from_utf8(v) {
                Ok(s) => Ok((k.as_str(), s)),
                Err(_) => Err(NotUtf8 { key: k.clone() }),
            })
            .collect()
    }

    /// The client's rule set, or why the entries are not one.
    pub fn rule_set(&self) -> Result<rules::RuleSet, SnapshotError> {
        let entries = self.str_entries().map_err(|error| SnapshotError::NotUtf8 {
            client: self.client,
            error,
        })?;
        rules::RuleSet::from_addr_entries(self.client, &entries).map_err(SnapshotError::Rules)
    }

    /// [`RuleSnapshot::rule_set`], or on any error the fail-closed
    /// [`rules::RuleSet::deny_all`] (with the error, logged here, for the
    /// caller to report, e.g. in `/qubes-iptables-error`).
    pub fn rule_set_or_deny_all(&self) -> (rules::RuleSet, Option<SnapshotError>) {
        match self.rule_set() {
            Ok(set) => (set, None),
            Err(e) => {
                log::warn!("{e}; blocking all traffic from {}", self.client);
                (rules::RuleSet::deny_all(), Some(e))
            }
        }
    }

    /// Whether `other` holds the same entries (ignoring generation).
    pub fn same_entries(&self, other: &RuleSnapshot) -> bool {
        self.client == other.client && self.entries == other.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn commit_keys() {
        assert_eq!(
            commit_key_client("/qubes-firewall/10.137.0.5"),
            Some(v4("10.137.0.5"))
        );
        assert_eq!(
            commit_key_client("/qubes-firewall/fd09:24ef:4179::a89:5"),
            Some(v4("fd09:24ef:4179::a89:5"))
        );
        for not in [
            "/qubes-firewall/",
            "/qubes-firewall/10.137.0.5/",
            "/qubes-firewall/10.137.0.5/policy",
            "/qubes-firewall/host",
            "/qubes-firewallx/10.137.0.5",
            "/qubes-firewall",
        ] {
            assert_eq!(commit_key_client(not), None, "{not}");
        }
        assert!(is_commit_shaped("/qubes-firewall/host"));
        assert!(!is_commit_shaped("/qubes-firewall/1.2.3.4/0000"));
        assert_eq!(commit_key(v4("10.137.0.5")), "/qubes-firewall/10.137.0.5");
        assert_eq!(rules_prefix(v4("fd09::5")), "/qubes-firewall/fd09::5/");
    }

    #[test]
    fn capture_takes_only_the_subtree() {
        let mut db = Db::new();
        for (k, v) in [
            ("/qubes-firewall/10.137.0.5", ""),
            ("/qubes-firewall/10.137.0.5/policy", "drop"),
            ("/qubes-firewall/10.137.0.5/0001", "action=drop proto=icmp"),
            (
                "/qubes-firewall/10.137.0.5/0000",
                "action=accept proto=tcp dstports=443-443",
            ),
            ("/qubes-firewall/10.137.0.50/0000", "action=accept"),
            ("/qubes-ip", "10.137.0.23"),
        ] {
            db.write(k, v.as_bytes()).unwrap();
        }
        let s = RuleSnapshot::capture(&db, "/qubes-firewall/10.137.0.5", v4("10.137.0.5"), 7);
        assert_eq!(s.generation(), 7);
        assert_eq!(s.client(), v4("10.137.0.5"));
        let keys: Vec<&str> = s.entries().map(|(k, _)| k).collect();
        assert_eq!(keys, ["0000", "0001", "policy"]);
        assert_eq!(s.policy(), Some(&b"drop"[..]));
        assert_eq!(s.get("0001"), Some(&b"action=drop proto=icmp"[..]));
        assert_eq!(s.get("0002"), None);
        let strs = s.str_entries().unwrap();
        assert_eq!(
            strs[0],
            ("0000", "action=accept proto=tcp dstports=443-443")
        );
        let again = RuleSnapshot::from_entries(
            v4("10.137.0.5"),
            9,
            &[
                ("policy", "drop"),
                ("0000", "action=accept proto=tcp dstports=443-443"),
                ("0001", "action=drop proto=icmp"),
            ],
        );
        assert!(s.same_entries(&again));
        assert_ne!(s, again, "generation differs");
    }

    #[test]
    fn committed_entries_build_a_rule_set() {
        let s = RuleSnapshot::from_entries(
            v4("10.137.0.5"),
            1,
            &[
                ("policy", "drop"),
                ("0000", "action=accept proto=tcp dstports=443-443"),
                ("0002", "action=accept specialtarget=dns"),
            ],
        );
        let set = s.rule_set().unwrap();
        assert_eq!(set.client(), Some(v4("10.137.0.5")));
        assert_eq!(set.len(), 2);
        assert_eq!(set.policy(), rules::Action::Drop);
        let (set2, err) = s.rule_set_or_deny_all();
        assert!(err.is_none());
        assert!(set2.same_rules(&set));
    }

    #[test]
    fn bad_entries_fail_closed() {
        // No policy; an unknown key; a malformed rule; an empty commit.
        for entries in [
            &[("0000", "action=accept")][..],
            &[("policy", "drop"), ("comment", "x")],
            &[("policy", "drop"), ("0000", "action=maybe")],
            &[],
        ] {
            let s = RuleSnapshot::from_entries(v4("10.137.0.5"), 1, entries);
            let (set, err) = s.rule_set_or_deny_all();
            assert!(set.is_deny_all(), "{entries:?}");
            assert!(matches!(err, Some(SnapshotError::Rules(_))), "{entries:?}");
        }
        let mut db = Db::new();
        db.write("/qubes-firewall/1.2.3.4/policy", b"dr\xffop")
            .unwrap();
        db.write("/qubes-firewall/1.2.3.4/0000", b"action=\xff")
            .unwrap();
        let s = RuleSnapshot::capture(&db, "/qubes-firewall/1.2.3.4", v4("1.2.3.4"), 1);
        let (set, err) = s.rule_set_or_deny_all();
        assert!(set.is_deny_all());
        assert!(matches!(err, Some(SnapshotError::NotUtf8 { .. })));
        assert!(alloc::string::ToString::to_string(&err.unwrap()).contains("0000"));
    }

    #[test]
    fn non_utf8_values_are_reported_by_key() {
        let mut db = Db::new();
        db.write("/qubes-firewall/1.2.3.4/0000", b"action=\xff")
            .unwrap();
        let s = RuleSnapshot::capture(&db, "/qubes-firewall/1.2.3.4", v4("1.2.3.4"), 1);
        assert_eq!(s.str_entries(), Err(NotUtf8 { key: "0000".into() }));
    }
}
