//! [`HostName`]: the value of `dsthost=`, and [`HostState`]: what the
//! firewall has learned about it.
//!
//! dom0 accepts a `dsthost` made of `a-z 0-9 - . _` (`qubes/firewall.py`,
//! `DstHost`), turning IP literals into `dst4`/`dst6` itself. It does not
//! check the name's shape, so names like `.`, `.example` or `a..b` reach
//! the firewall (qubes-issues#6290: the Linux agent crashed on them, where
//! blocking was expected). This crate checks the DNS shape too (labels of 1
//! to 63 bytes, at most 253 bytes, one optional trailing dot) and rejects
//! the rule otherwise, which fails the client's rule set closed.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

/// A syntactically valid `dsthost` name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

/// Why a `dsthost` value is not a usable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostNameError {
    /// Empty, or only a dot.
    Empty,
    /// A byte outside `a-z 0-9 - . _` (dom0's set; upper case included).
    BadCharacter,
    /// An empty label (`.x`, `x..y`, `x..`).
    EmptyLabel,
    /// A label longer than 63 bytes.
    LabelTooLong,
    /// More than 253 bytes (not counting a trailing dot).
    TooLong,
}

impl HostNameError {
    /// What a valid name looks like, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            HostNameError::Empty => "a non-empty DNS name",
            HostNameError::BadCharacter => "a DNS name of a-z, 0-9, '-', '.', '_'",
            HostNameError::EmptyLabel => "a DNS name without empty labels",
            HostNameError::LabelTooLong => "a DNS name with labels of at most 63 bytes",
            HostNameError::TooLong => "a DNS name of at most 253 bytes",
        }
    }
}

impl HostName {
    /// Longest name, without a trailing dot (RFC 1035 wire limit).
    pub const MAX_LEN: usize = 253;
    /// Longest label.
    pub const MAX_LABEL: usize = 63;

    /// Checks `name` (see the module documentation).
    pub fn parse(name: &str) -> Result<HostName, HostNameError> {
        let body = name.strip_suffix('.').unwrap_or(name);
        if body.is_empty() {
            return Err(HostNameError::Empty);
        }
        let allowed =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_');
        if !name.bytes().all(allowed) {
            return Err(HostNameError::BadCharacter);
        }
        if body.len() > Self::MAX_LEN {
            return Err(HostNameError::TooLong);
        }
        for label in body.split('.') {
            if label.is_empty() {
                return Err(HostNameError::EmptyLabel);
            }
            if label.len() > Self::MAX_LABEL {
                return Err(HostNameError::LabelTooLong);
            }
        }
        Ok(HostName(String::from(name)))
    }

    /// The name as dom0 wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, when the name is a dotted-quad IPv4 literal.
    ///
    /// dom0 never writes one (it turns literals into `dst4`), but the
    /// Linux agent's `getaddrinfo` would accept it as itself, so a rule set
    /// treats such a name as already resolved rather than asking DNS.
    pub fn as_literal(&self) -> Option<Ipv4Addr> {
        self.0.parse().ok()
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a rule set knows about one `dsthost` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostState {
    /// Not resolved yet. A flow that reaches a rule naming this host (and
    /// matches its other conditions) is dropped silently
    /// ([`crate::Verdict::Drop`]), so the client retries and succeeds once
    /// the name is resolved.
    Pending,
    /// Resolved to these addresses of the rule set's family (sorted, no
    /// duplicates, never empty).
    Resolved(Vec<IpAddr>),
    /// Resolution failed, or gave no address of the rule set's family (the
    /// Linux agent's `getaddrinfo` for that family fails then too). A flow
    /// that reaches a rule naming this host is rejected
    /// ([`crate::Verdict::Reject`]), as the Linux agent's drop-all would.
    Failed,
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn accepts_dom0_names() {
        for name in [
            "qubes-os.org",
            "yum.qubes-os.org",
            "ripe.net",
            "localhost",
            "_dmarc.example.com",
            "example.com.",
            "a",
            "1.2.3.4",
            "xn--bcher-kva.example",
        ] {
            let host = HostName::parse(name).unwrap();
            assert_eq!(host.as_str(), name);
            assert_eq!(host.to_string(), name);
        }
    }

    #[test]
    fn rejects_names_that_cannot_resolve() {
        use HostNameError::*;
        let label64 = "a".repeat(64);
        let long = ["abcdefghi"; 26].join("."); // 259 bytes
        let cases: &[(&str, HostNameError)] = &[
            ("", Empty),
            (".", Empty),
            (".anything", EmptyLabel),
            ("anything..", EmptyLabel),
            ("anything..anything", EmptyLabel),
            ("Qubes-OS.org", BadCharacter),
            ("qubes os.org", BadCharacter),
            ("qubes/os", BadCharacter),
            ("::1", BadCharacter),
            ("é.example", BadCharacter),
            (&label64, LabelTooLong),
            (&long, TooLong),
        ];
        for (name, err) in cases {
            assert_eq!(HostName::parse(name), Err(*err), "{name:?}");
        }
        assert!(HostName::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn literal_detection() {
        let lit = HostName::parse("10.1.2.3").unwrap();
        assert_eq!(lit.as_literal(), Some(Ipv4Addr::new(10, 1, 2, 3)));
        for name in ["1.2.3", "01.2.3.4", "example.com", "1.2.3.4."] {
            assert_eq!(HostName::parse(name).unwrap().as_literal(), None);
        }
    }
}
