//! [`RuleError`]: why a client's rule set was refused, naming the client,
//! the QubesDB key and the field.

use core::fmt;

use crate::action::ParseActionError;
use crate::field::Field;
use crate::rule::LineError;
use crate::shown::Shown;

/// A client's rules could not be loaded. The caller must then block all of
/// the client's traffic ([`crate::RuleSet::deny_all`]), as the Linux agent
/// does and as the Qubes docs require ("drop all the traffic coming from
/// that SOURCE_IP, regardless of properly parsed rules").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    client: Shown,
    key: Option<Shown>,
    kind: RuleErrorKind,
}

/// What was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// The client (the `<ip>` in `/qubes-firewall/<ip>/`) is not an IPv4 or
    /// IPv6 address.
    BadClient,
    /// No `policy` key (the Linux agent requires it).
    MissingPolicy,
    /// A key that is neither `policy` nor a rule number as dom0 writes it
    /// (4+ digits, zero-padded).
    UnexpectedKey,
    /// The same key (or rule number) twice.
    DuplicateKey,
    /// The `policy` value is not `accept` or `drop`.
    BadPolicy(ParseActionError),
    /// A rule line is malformed.
    BadRule(LineError),
    /// A `dst4` rule in an IPv6 client's set, or `dst6` in an IPv4 one
    /// (dom0 never writes either; the Linux agent refuses both).
    WrongFamily {
        /// `dst4` or `dst6`.
        field: Field,
    },
}

impl RuleError {
    pub(crate) fn new(client: &str, key: Option<&str>, kind: RuleErrorKind) -> RuleError {
        RuleError {
            client: Shown::new(client),
            key: key.map(Shown::new),
            kind,
        }
    }

    /// The client address as given (possibly shortened).
    pub fn client(&self) -> &str {
        self.client.as_str()
    }

    /// The key the error is about (`policy`, `0003`, …), if any
    /// (possibly shortened).
    pub fn key(&self) -> Option<&str> {
        self.key.as_ref().map(Shown::as_str)
    }

    /// The rule field the error is about, if any.
    pub fn field(&self) -> Option<Field> {
        match &self.kind {
            RuleErrorKind::BadRule(e) => e.field(),
            RuleErrorKind::WrongFamily { field } => Some(*field),
            _ => None,
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> &RuleErrorKind {
        &self.kind
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firewall rules for client {}", self.client)?;
        if let Some(key) = &self.key {
            write!(f, ", key {key}")?;
        }
        f.write_str(": ")?;
        match &self.kind {
            RuleErrorKind::BadClient => f.write_str("not an IPv4 or IPv6 address"),
            RuleErrorKind::MissingPolicy => f.write_str("no policy key"),
            RuleErrorKind::UnexpectedKey => {
                f.write_str("unexpected key (expected policy or a rule number like 0000)")
            }
            RuleErrorKind::DuplicateKey => f.write_str("key given twice"),
            RuleErrorKind::BadPolicy(e) => write!(f, "{e}"),
            RuleErrorKind::BadRule(e) => write!(f, "{e}"),
            RuleErrorKind::WrongFamily { field } => write!(
                f,
                "field {field} does not belong in a rule set for an {} client",
                if *field == Field::Dst4 {
                    "IPv6"
                } else {
                    "IPv4"
                }
            ),
        }
    }
}

impl core::error::Error for RuleError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match &self.kind {
            RuleErrorKind::BadPolicy(e) => Some(e),
            RuleErrorKind::BadRule(e) => Some(e),
            _ => None,
        }
    }
}
