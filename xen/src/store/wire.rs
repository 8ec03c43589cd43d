//! The xenstore wire format, shared by the guest client and the simulated
//! xenstored: the 16-byte `xsd_sockmsg` header, message types, the error
//! names Xen sends as strings, and payload splitting helpers.
//!
//! Parsing functions take bytes that came from the other side of a ring and
//! never panic: every length is checked, and violations are [`WireError`]s.

use crate::abi::xs_wire::{msg, XENSTORE_PAYLOAD_MAX};

/// Bytes in a message header.
pub const HEADER_LEN: usize = 16;

/// A message header (`struct xsd_sockmsg`), in host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `XS_*` message type.
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 for none.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

/// A message that breaks the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer than [`HEADER_LEN`] bytes.
    ShortHeader(usize),
    /// `len` above [`XENSTORE_PAYLOAD_MAX`].
    Oversized(u32),
    /// A type that is not an `XS_*` value.
    UnknownType(u32),
    /// A payload field that must be NUL-terminated is not.
    MissingNul,
    /// A payload that is not valid for its type (e.g. not UTF-8 / ASCII).
    BadPayload,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::ShortHeader(n) => write!(f, "xenstore header truncated ({n} bytes)"),
            WireError::Oversized(n) => write!(f, "xenstore payload of {n} bytes exceeds 4096"),
            WireError::UnknownType(t) => write!(f, "unknown xenstore message type {t}"),
            WireError::MissingNul => write!(f, "xenstore payload field not NUL-terminated"),
            WireError::BadPayload => write!(f, "malformed xenstore payload"),
        }
    }
}

/// Whether `ty` is a message type defined by `xs_wire.h`.
pub fn known_type(ty: u32) -> bool {
    matches!(ty, 0..=19 | 21 | 22 | msg::INVALID)
}

impl Header {
    /// Parse a header from the first 16 bytes of `b`, checking `len` and
    /// the type.
    pub fn parse(b: &[u8]) -> Result<Header, WireError> {
        let h = Header::parse_frame(b)?;
        if !known_type(h.ty) {
            return Err(WireError::UnknownType(h.ty));
        }
        Ok(h)
    }

    /// Parse a header for framing only: the length is checked (a payload
    /// over 4096 bytes breaks the stream), the type is not. xenstored
    /// frames this way and answers an unknown type with `ENOSYS` instead of
    /// dropping the connection.
    pub fn parse_frame(b: &[u8]) -> Result<Header, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::ShortHeader(b.len()));
        }
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        };
        if h.len as usize > XENSTORE_PAYLOAD_MAX {
            return Err(WireError::Oversized(h.len));
        }
        Ok(h)
    }

    /// The 16 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// The errors xenstored reports, sent on the wire as `XS_ERROR` with the
/// name as a NUL-terminated string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsError {
    /// Invalid argument.
    Einval,
    /// Permission denied.
    Eacces,
    /// Already exists.
    Eexist,
    /// Is a directory.
    Eisdir,
    /// No such node.
    Enoent,
    /// Out of memory.
    Enomem,
    /// No space (quota).
    Enospc,
    /// I/O error.
    Eio,
    /// Directory not empty.
    Enotempty,
    /// Not implemented.
    Enosys,
    /// Read-only.
    Erofs,
    /// Busy.
    Ebusy,
    /// Try again (a transaction conflicted).
    Eagain,
    /// Already connected.
    Eisconn,
    /// Too big.
    E2big,
    /// Operation not permitted.
    Eperm,
    /// Quota exceeded (`EQUOTA`, newer xenstored).
    Equota,
}

const XS_ERRORS: &[(XsError, &str)] = &[
    (XsError::Einval, "EINVAL"),
    (XsError::Eacces, "EACCES"),
    (XsError::Eexist, "EEXIST"),
    (XsError::Eisdir, "EISDIR"),
    (XsError::Enoent, "ENOENT"),
    (XsError::Enomem, "ENOMEM"),
    (XsError::Enospc, "ENOSPC"),
    (XsError::Eio, "EIO"),
    (XsError::Enotempty, "ENOTEMPTY"),
    (XsError::Enosys, "ENOSYS"),
    (XsError::Erofs, "EROFS"),
    (XsError::Ebusy, "EBUSY"),
    (XsError::Eagain, "EAGAIN"),
    (XsError::Eisconn, "EISCONN"),
    (XsError::E2big, "E2BIG"),
    (XsError::Eperm, "EPERM"),
    (XsError::Equota, "EQUOTA"),
];

impl XsError {
    /// The name as sent on the wire (`"ENOENT"`).
    pub fn name(self) -> &'static str {
        XS_ERRORS
            .iter()
            .find(|(e, _)| *e == self)
            .map(|(_, n)| *n)
            .unwrap_or("EINVAL")
    }

    /// Parse an `XS_ERROR` payload (`"ENOENT\0"`; the NUL is optional).
    pub fn from_payload(p: &[u8]) -> Option<XsError> {
        let p = p.strip_suffix(b"\0").unwrap_or(p);
        XS_ERRORS
            .iter()
            .find(|(_, n)| n.as_bytes() == p)
            .map(|(e, _)| *e)
    }
}

impl core::fmt::Display for XsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Split a payload of NUL-terminated fields (`a\0b\0`) into its fields.
/// A trailing unterminated remainder is returned as the last field only if
/// `allow_tail` is set (e.g. the value of `XS_WRITE`).
pub fn nul_fields(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = p.strip_suffix(b"\0").unwrap_or(p);
    let empty = body.is_empty() && p.is_empty();
    body.split(|&b| b == 0).filter(move |_| !empty)
}

/// Take the first NUL-terminated field of `p`, returning it and the rest.
pub fn take_cstr(p: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let i = p
        .iter()
        .position(|&b| b == 0)
        .ok_or(WireError::MissingNul)?;
    Ok((&p[..i], &p[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_errors() {
        let h = Header {
            ty: msg::READ,
            req_id: 7,
            tx_id: 3,
            len: 12,
        };
        assert_eq!(Header::parse(&h.encode()), Ok(h));
        assert_eq!(Header::parse(&[0; 15]), Err(WireError::ShortHeader(15)));
        let mut big = h;
        big.len = 4097;
        assert_eq!(
            Header::parse(&big.encode()),
            Err(WireError::Oversized(4097))
        );
        let mut bad = h;
        bad.ty = 20;
        assert_eq!(
            Header::parse(&bad.encode()),
            Err(WireError::UnknownType(20))
        );
        assert_eq!(Header::parse_frame(&bad.encode()), Ok(bad));
        assert_eq!(
            Header::parse_frame(&big.encode()),
            Err(WireError::Oversized(4097))
        );
    }

    #[test]
    fn error_names() {
        assert_eq!(XsError::from_payload(b"ENOENT\0"), Some(XsError::Enoent));
        assert_eq!(XsError::from_payload(b"EAGAIN"), Some(XsError::Eagain));
        assert_eq!(XsError::from_payload(b"EWHAT\0"), None);
        assert_eq!(XsError::Eacces.name(), "EACCES");
    }

    #[test]
    fn fields() {
        let v: Vec<&[u8]> = nul_fields(b"a\0bc\0").collect();
        assert_eq!(v, vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(nul_fields(b"").count(), 0);
        assert_eq!(take_cstr(b"path\0value"), Ok((&b"path"[..], &b"value"[..])));
        assert_eq!(take_cstr(b"nonul"), Err(WireError::MissingNul));
    }
}
