//! Domain names: [`Name`], a validated name in wire form, and the
//! decompressing reader for names inside a message.
//!
//! Both sides keep names in *uncompressed wire form, ASCII-lowercased*
//! (length-prefixed labels, then the zero root label), so comparing two
//! names is comparing two byte slices, and the case-insensitivity DNS
//! requires (RFC 4343) costs nothing at comparison time.

use core::fmt;

/// Longest name in wire form (RFC 1035 §2.3.4), root label included.
pub const MAX_NAME_LEN: usize = 255;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;
/// Most compression pointers followed in one name. Real compressors need
/// a handful (one per name, plus one per suffix they build on); this only
/// bounds work, since the backward-only rule already excludes loops.
pub const MAX_POINTERS: usize = 64;

/// A name to ask about, checked and held in wire form (lowercased).
///
/// Invariant: `wire[..len]` is a sequence of labels of 1 to 63 bytes from
/// `a-z 0-9 - _`, then a zero byte; `len <= 255`.
#[derive(Clone)]
pub struct Name {
    wire: [u8; MAX_NAME_LEN],
    len: u8,
}

/// Why a text name cannot be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty, or only the root (`.`): no host has that name.
    Empty,
    /// An empty label (`.x`, `x..y`, `x..`).
    EmptyLabel,
    /// A label longer than 63 bytes.
    LabelTooLong,
    /// Longer than 255 bytes in wire form (253 characters without a
    /// trailing dot).
    TooLong,
    /// A character other than letters, digits, `-` and `_`.
    BadCharacter,
}

impl Name {
    /// Checks `text` and converts it to wire form.
    ///
    /// Accepted: letters (either case; stored lowercased), digits, `-`, and
    /// `_` (dom0 allows it in `dsthost`, and DNS itself is 8-bit clean, so
    /// refusing it would fail a rule dom0 accepted), in labels of 1 to 63
    /// bytes, with at most one trailing dot. Hyphen placement is not
    /// checked: it does not matter to DNS.
    pub fn parse(text: &str) -> Result<Name, NameError> {
        let body = text.strip_suffix('.').unwrap_or(text);
        if body.is_empty() {
            return Err(NameError::Empty);
        }
        let mut wire = [0u8; MAX_NAME_LEN];
        let mut len = 0usize;
        for label in body.split('.') {
            let bytes = label.as_bytes();
            if bytes.is_empty() {
                return Err(NameError::EmptyLabel);
            }
            if bytes.len() > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong);
            }
            if !bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(NameError::BadCharacter);
            }
            // The label, its length byte and the root label must fit.
            if len + 1 + bytes.len() + 1 > MAX_NAME_LEN {
                return Err(NameError::TooLong);
            }
            wire[len] = bytes.len() as u8;
            for (dst, src) in wire[len + 1..].iter_mut().zip(bytes) {
                *dst = src.to_ascii_lowercase();
            }
            len += 1 + bytes.len();
        }
        wire[len] = 0;
        len += 1;
        Ok(Name {
            wire,
            len: len as u8,
        })
    }

    /// The name in wire form, lowercased, root label included.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire[..usize::from(self.len)]
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_wire() == other.as_wire()
    }
}

impl Eq for Name {}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name(")?;
        fmt_wire(self.as_wire(), f)?;
        write!(f, ")")
    }
}

/// Writes wire-form labels as dotted text (bytes outside printable ASCII
/// escaped), for diagnostics.
fn fmt_wire(wire: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut rest = wire;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || len > tail.len() {
            break;
        }
        for &b in &tail[..len] {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\{b:03}")?;
            }
        }
        write!(f, ".")?;
        rest = &tail[len..];
    }
    Ok(())
}

/// Why a name inside a message is unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameFault {
    /// A label or pointer runs past the end of the message.
    OutOfBounds,
    /// A compression pointer that does not point strictly before the name
    /// segment it ends (forward, to itself, or into a loop).
    ForwardPointer,
    /// More than [`MAX_POINTERS`] compression pointers.
    TooManyPointers,
    /// Longer than 255 bytes once decompressed.
    TooLong,
    /// A label type other than a plain label or a pointer (the extended
    /// `0b01` and reserved `0b10` types).
    BadLabelType,
}

/// A label's length byte: plain label (`00`), pointer (`11`), other.
enum Label {
    Plain(usize),
    Pointer(u8),
    Bad,
}

fn label(b: u8) -> Label {
    match b >> 6 {
        0b00 => Label::Plain(usize::from(b)),
        0b11 => Label::Pointer(b & 0x3f),
        _ => Label::Bad,
    }
}

/// Reads the name at `start` in `msg`, following compression pointers,
/// into `out` in wire form, lowercased.
///
/// Returns the decompressed length and the offset just past the name *as
/// written at `start`* (after its first pointer, or after its root
/// label), where the record goes on.
///
/// Safety against hostile messages: every pointer must point strictly
/// before the start of the segment that contains it (the name start, or
/// the previous pointer's target), so segment starts strictly decrease
/// and a loop is impossible; jumps are also capped at [`MAX_POINTERS`],
/// and the output at [`MAX_NAME_LEN`], so the work is bounded by
/// 255 + 2 * 64 bytes read whatever the input.
pub fn read_name(
    msg: &[u8],
    start: usize,
    out: &mut [u8; MAX_NAME_LEN],
) -> Result<(usize, usize), NameFault> {
    let mut pos = start;
    let mut segment = start;
    let mut end = None;
    let mut len = 0usize;
    let mut jumps = 0usize;
    loop {
        let &b = msg.get(pos).ok_or(NameFault::OutOfBounds)?;
        match label(b) {
            Label::Plain(0) => {
                // `len < MAX_NAME_LEN` holds here (room kept for the root).
                out[len] = 0;
                return Ok((len + 1, end.unwrap_or(pos + 1)));
            }
            Label::Plain(n) => {
                let text = msg
                    .get(pos + 1..pos + 1 + n)
                    .ok_or(NameFault::OutOfBounds)?;
                if len + 1 + n + 1 > MAX_NAME_LEN {
                    return Err(NameFault::TooLong);
                }
                out[len] = b;
                for (dst, src) in out[len + 1..len + 1 + n].iter_mut().zip(text) {
                    *dst = src.to_ascii_lowercase();
                }
                len += 1 + n;
                pos += 1 + n;
            }
            Label::Pointer(high) => {
                let &low = msg.get(pos + 1).ok_or(NameFault::OutOfBounds)?;
                let target = usize::from(high) << 8 | usize::from(low);
                if target >= segment {
                    return Err(NameFault::ForwardPointer);
                }
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return Err(NameFault::TooManyPointers);
                }
                end.get_or_insert(pos + 2);
                pos = target;
                segment = target;
            }
            Label::Bad => return Err(NameFault::BadLabelType),
        }
    }
}

/// Skips the name at `start` without following pointers (for records
/// whose owner does not matter) and returns the offset past it. Checks
/// only what skipping needs: labels inside the message, a known label
/// type, at most 255 bytes in place.
pub fn skip_name(msg: &[u8], start: usize) -> Result<usize, NameFault> {
    let mut pos = start;
    loop {
        if pos - start >= MAX_NAME_LEN {
            return Err(NameFault::TooLong);
        }
        let &b = msg.get(pos).ok_or(NameFault::OutOfBounds)?;
        match label(b) {
            Label::Plain(0) => return Ok(pos + 1),
            Label::Plain(n) => {
                if pos + 1 + n > msg.len() {
                    return Err(NameFault::OutOfBounds);
                }
                pos += 1 + n;
            }
            Label::Pointer(_) => {
                if pos + 2 > msg.len() {
                    return Err(NameFault::OutOfBounds);
                }
                return Ok(pos + 2);
            }
            Label::Bad => return Err(NameFault::BadLabelType),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    fn read(msg: &[u8], start: usize) -> Result<(Vec<u8>, usize), NameFault> {
        let mut out = [0u8; MAX_NAME_LEN];
        let (len, end) = read_name(msg, start, &mut out)?;
        Ok((out[..len].to_vec(), end))
    }

    #[test]
    fn parse_to_wire_form() {
        let n = Name::parse("Example.COM").unwrap();
        assert_eq!(n.as_wire(), b"\x07example\x03com\x00");
        assert_eq!(n, Name::parse("example.com.").unwrap());
        assert_eq!(Name::parse("a").unwrap().as_wire(), b"\x01a\x00");
        assert_eq!(
            Name::parse("_dmarc.x-y.z9").unwrap().as_wire(),
            b"\x06_dmarc\x03x-y\x02z9\x00"
        );
        assert_eq!(format!("{n:?}"), "Name(example.com.)");
    }

    #[test]
    fn parse_rejects() {
        use NameError::*;
        let label64 = "a".repeat(64);
        let cases: &[(&str, NameError)] = &[
            ("", Empty),
            (".", Empty),
            (".a", EmptyLabel),
            ("a..b", EmptyLabel),
            ("a..", EmptyLabel),
            (&label64, LabelTooLong),
            ("a b", BadCharacter),
            ("a/b", BadCharacter),
            ("é.x", BadCharacter),
            ("a*.x", BadCharacter),
        ];
        for (text, err) in cases {
            assert_eq!(Name::parse(text), Err(*err), "{text:?}");
        }
        assert!(Name::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn length_limit_is_255_in_wire_form() {
        // 4 labels of 63 = 4 * 64 = 256 bytes + root: too long.
        let l63 = "a".repeat(63);
        let four = [l63.as_str(); 4].join(".");
        assert_eq!(Name::parse(&four), Err(NameError::TooLong));
        // 3 * 64 + (1 + 61) + 1 = 255: the longest, 253 characters.
        let longest = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(longest.len(), 253);
        assert_eq!(Name::parse(&longest).unwrap().as_wire().len(), 255);
        assert!(Name::parse(&format!("{longest}.")).is_ok());
        let over = format!("{l63}.{l63}.{l63}.{}", "b".repeat(62));
        assert_eq!(Name::parse(&over), Err(NameError::TooLong));
    }

    #[test]
    fn reads_plain_and_compressed() {
        // offset 0: "\x03foo\x03com\x00", offset 9: "\x03www" + ptr(0)
        let mut msg = b"\x03Foo\x03com\x00".to_vec();
        msg.extend_from_slice(b"\x03WWW\xc0\x00");
        msg.extend_from_slice(b"\xc0\x09");
        assert_eq!(read(&msg, 0).unwrap(), (b"\x03foo\x03com\x00".to_vec(), 9));
        assert_eq!(
            read(&msg, 9).unwrap(),
            (b"\x03www\x03foo\x03com\x00".to_vec(), 15)
        );
        // A pointer to a pointer.
        assert_eq!(
            read(&msg, 15).unwrap(),
            (b"\x03www\x03foo\x03com\x00".to_vec(), 17)
        );
        assert_eq!(skip_name(&msg, 0), Ok(9));
        assert_eq!(skip_name(&msg, 9), Ok(15));
        assert_eq!(skip_name(&msg, 15), Ok(17));
    }

    #[test]
    fn pointers_must_go_back() {
        // To itself.
        assert_eq!(read(b"\xc0\x00", 0), Err(NameFault::ForwardPointer));
        // Forward.
        assert_eq!(read(b"\xc0\x02\x00", 0), Err(NameFault::ForwardPointer));
        // Backward from the pointer but into the same segment: a loop
        // ("\x01a" then a pointer to the "\x01a").
        assert_eq!(
            read(b"\x00\x01a\xc0\x01", 1),
            Err(NameFault::ForwardPointer)
        );
        // Two segments pointing at each other: 0 -> 4 would be forward.
        let msg = b"\x01a\xc0\x04\x01b\xc0\x00";
        assert_eq!(read(msg, 0), Err(NameFault::ForwardPointer));
        assert_eq!(read(msg, 4), Err(NameFault::ForwardPointer));
    }

    #[test]
    fn faults() {
        assert_eq!(read(b"", 0), Err(NameFault::OutOfBounds));
        assert_eq!(read(b"\x03ab", 0), Err(NameFault::OutOfBounds));
        assert_eq!(read(b"\x01a", 0), Err(NameFault::OutOfBounds));
        assert_eq!(read(b"\x00\xc0", 1), Err(NameFault::OutOfBounds));
        assert_eq!(read(b"\x40", 0), Err(NameFault::BadLabelType));
        assert_eq!(read(b"\x80", 0), Err(NameFault::BadLabelType));
        assert_eq!(skip_name(b"\x40", 0), Err(NameFault::BadLabelType));
        assert_eq!(skip_name(b"\x02a", 0), Err(NameFault::OutOfBounds));
        assert_eq!(skip_name(b"\xc0", 0), Err(NameFault::OutOfBounds));
        assert_eq!(skip_name(b"", 0), Err(NameFault::OutOfBounds));
    }

    #[test]
    fn too_long_decompressed() {
        // Five 63-byte labels in place: 320 bytes.
        let mut msg = Vec::new();
        for _ in 0..5 {
            msg.push(63);
            msg.extend_from_slice(&[b'x'; 63]);
        }
        msg.push(0);
        assert_eq!(read(&msg, 0), Err(NameFault::TooLong));
        assert_eq!(skip_name(&msg, 0), Err(NameFault::TooLong));
        // Short in place, long through pointers: each name adds a label in
        // front of the previous one.
        let mut msg = b"\x3f".to_vec();
        msg.extend_from_slice(&[b'y'; 63]);
        msg.push(0);
        let mut prev = 0usize;
        let mut starts = Vec::new();
        for _ in 0..4 {
            let here = msg.len();
            msg.push(63);
            msg.extend_from_slice(&[b'z'; 63]);
            msg.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
            starts.push(here);
            prev = here;
        }
        assert_eq!(read(&msg, starts[1]).unwrap().0.len(), 3 * 64 + 1);
        assert_eq!(read(&msg, starts[2]), Err(NameFault::TooLong));
    }

    #[test]
    fn pointer_count_is_bounded() {
        // A root at 0, then a chain of pointers, each to the one before.
        let mut msg = b"\x00".to_vec();
        let mut prev = 0usize;
        let mut last = 0;
        for _ in 0..=MAX_POINTERS {
            last = msg.len();
            msg.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
            prev = last;
        }
        assert_eq!(read(&msg, last), Err(NameFault::TooManyPointers));
        // One fewer jump is fine.
        let before = last - 2;
        assert_eq!(read(&msg, before).unwrap().0, b"\x00".to_vec());
    }

    #[test]
    fn lowercases_and_keeps_odd_bytes() {
        let msg = b"\x03A.\xff\x00";
        let (wire, _) = read(msg, 0).unwrap();
        assert_eq!(wire, b"\x03a.\xff\x00".to_vec());
        let mut s = String::new();
        struct W<'a>(&'a [u8]);
        impl fmt::Display for W<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_wire(self.0, f)
            }
        }
        use core::fmt::Write;
        write!(s, "{}", W(&wire)).unwrap();
        assert_eq!(s, "a\\046\\255.");
    }
}
