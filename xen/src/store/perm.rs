//! Xenstore node permissions.
//!
//! On the wire a permission is a letter and a decimal domid: `n5`, `r0`,
//! `w1`, `b2` (none, read, write, both). A node's list starts with the
//! owner, whose entry's access is also the default for every domain not
//! listed (the owner itself always has full access).

use alloc::string::String;
use core::fmt;

use crate::abi::DomId;

/// What a domain may do with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read (and watch).
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The wire letter.
    pub fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// The access for a wire letter.
    pub fn from_letter(b: u8) -> Option<Access> {
        match b {
            b'n' => Some(Access::None),
            b'r' => Some(Access::Read),
            b'w' => Some(Access::Write),
            b'b' => Some(Access::Both),
            _ => None,
        }
    }
}

/// One entry of a node's permission list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain the entry is about (the owner, for the first entry).
    pub domid: DomId,
    /// What it may do.
    pub access: Access,
}

/// Why a permission string did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermError {
    /// The string is empty.
    Empty,
    /// The first byte is not one of `n`, `r`, `w`, `b`.
    BadLetter(u8),
    /// The domid is missing, not decimal, or above 65535.
    BadDomid,
}

impl fmt::Display for PermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermError::Empty => f.write_str("empty xenstore permission"),
            PermError::BadLetter(b) => write!(f, "xenstore permission letter {:?}", *b as char),
            PermError::BadDomid => f.write_str("xenstore permission domid is not a decimal u16"),
        }
    }
}

impl Perm {
    /// A permission entry.
    pub const fn new(domid: DomId, access: Access) -> Perm {
        Perm { domid, access }
    }

    /// Parse one entry (`b"r0"`, no NUL).
    pub fn parse(s: &[u8]) -> Result<Perm, PermError> {
        let (&letter, digits) = s.split_first().ok_or(PermError::Empty)?;
        let access = Access::from_letter(letter).ok_or(PermError::BadLetter(letter))?;
        let domid = parse_decimal_u16(digits).ok_or(PermError::BadDomid)?;
        Ok(Perm { domid, access })
    }

    /// The wire string (`"r0"`).
    pub fn to_wire(self) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        let _ = write!(s, "{self}");
        s
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

/// A decimal u16 with at least one digit and nothing else (no sign, no
/// spaces).
pub(crate) fn parse_decimal_u16(b: &[u8]) -> Option<u16> {
    parse_decimal_u32(b).and_then(|v| u16::try_from(v).ok())
}

/// A decimal u32 with at least one digit and nothing else.
pub(crate) fn parse_decimal_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 10 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        for (s, p) in [
            ("n5", Perm::new(5, Access::None)),
            ("r0", Perm::new(0, Access::Read)),
            ("w1", Perm::new(1, Access::Write)),
            ("b2", Perm::new(2, Access::Both)),
            ("b65535", Perm::new(65535, Access::Both)),
        ] {
            assert_eq!(Perm::parse(s.as_bytes()), Ok(p));
            assert_eq!(p.to_wire(), s);
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Perm::parse(b""), Err(PermError::Empty));
        assert_eq!(Perm::parse(b"x1"), Err(PermError::BadLetter(b'x')));
        assert_eq!(Perm::parse(b"r"), Err(PermError::BadDomid));
        assert_eq!(Perm::parse(b"r-1"), Err(PermError::BadDomid));
        assert_eq!(Perm::parse(b"r 1"), Err(PermError::BadDomid));
        assert_eq!(Perm::parse(b"r65536"), Err(PermError::BadDomid));
        assert_eq!(Perm::parse(b"r99999999999"), Err(PermError::BadDomid));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_decimal_u32(b"4294967296"), None);
        assert_eq!(parse_decimal_u32(b"007"), Some(7));
        assert_eq!(parse_decimal_u32(b""), None);
        assert_eq!(parse_decimal_u32(b"+1"), None);
    }
}
