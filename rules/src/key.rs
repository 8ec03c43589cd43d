//! [`RuleKey`]: the number in a rule's QubesDB key (`/qubes-firewall/<ip>/NNNN`).
//!
//! dom0 writes `'{:04}'.format(n)`: decimal, zero-padded to four digits,
//! wider only from 10000 on. Numbers are the rule's position in the user's
//! list, so they can have gaps (expired rules, and rules of the other
//! address family, are left out without renumbering). Rules apply in
//! numeric order; QubesDB itself gives no order.

use core::fmt;

/// The position of a rule, from its QubesDB key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey(u32);

impl RuleKey {
    /// Most digits accepted: keeps every key within `u32`.
    const MAX_DIGITS: usize = 9;

    /// Parses a key exactly as dom0 formats it: ASCII digits, at least
    /// four, and no leading zero beyond the padding (`0007`, `0123`,
    /// `10000`; not `7`, `00007`, `+123` or `٠٠٠٧`). Returns `None` for
    /// anything else.
    ///
    /// The strictness makes the key-to-number mapping one-to-one, so two
    /// different keys can never claim the same position.
    pub fn parse(key: &str) -> Option<RuleKey> {
        let bytes = key.as_bytes();
        if bytes.len() < 4 || bytes.len() > Self::MAX_DIGITS {
            return None;
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if bytes.len() > 4 && bytes[0] == b'0' {
            return None;
        }
        let mut n: u32 = 0;
        for &b in bytes {
            // At most 9 digits: cannot overflow u32.
            n = n * 10 + u32::from(b - b'0');
        }
        Some(RuleKey(n))
    }

    /// A key for rule number `n`.
    pub const fn new(n: u32) -> RuleKey {
        RuleKey(n)
    }

    /// The rule number.
    pub const fn number(self) -> u32 {
        self.0
    }
}

/// As dom0 writes it: at least four digits, zero-padded.
impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_dom0_keys() {
        assert_eq!(RuleKey::parse("0000"), Some(RuleKey(0)));
        assert_eq!(RuleKey::parse("0042"), Some(RuleKey(42)));
        assert_eq!(RuleKey::parse("9999"), Some(RuleKey(9999)));
        assert_eq!(RuleKey::parse("10000"), Some(RuleKey(10000)));
        assert_eq!(RuleKey::parse("999999999"), Some(RuleKey(999_999_999)));
    }

    #[test]
    fn rejects_anything_dom0_would_not_write() {
        for bad in [
            "",
            "0",
            "42",
            "042",
            "00042",
            "01000",
            "+042",
            "-042",
            " 042",
            "0042 ",
            "00a0",
            "policy",
            "1000000000",
            "\u{661}\u{662}\u{663}\u{664}", // Arabic-Indic digits
            "0000/0000",
        ] {
            assert_eq!(RuleKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn display_is_the_dom0_spelling() {
        for key in ["0000", "0007", "0123", "9999", "10000", "123456789"] {
            assert_eq!(RuleKey::parse(key).unwrap().to_string(), key);
        }
    }

    #[test]
    fn order_is_numeric() {
        let a = RuleKey::parse("9999").unwrap();
        let b = RuleKey::parse("10000").unwrap();
        assert!(a < b);
        assert!("9999" > "10000"); // what a string sort would get wrong
    }
}
