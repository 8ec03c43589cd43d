//! The query builder: one question, recursion desired, written into the
//! caller's buffer (no allocation).

use super::header::{self, Header};
use super::name::{Name, MAX_NAME_LEN};
use super::{QType, CLASS_IN};

/// The longest query [`build_query`] writes: header, the longest name,
/// QTYPE and QCLASS. A buffer this long always suffices.
pub const MAX_QUERY_LEN: usize = header::LEN + MAX_NAME_LEN + 4;

/// The caller's buffer cannot hold the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the query needs.
    pub needed: usize,
}

/// Writes a standard query for `name`/`qtype` (class IN) with the given
/// `id` and RD set at the start of `buf`, and returns its length.
///
/// No EDNS OPT record is sent: answers for one host name fit the classic
/// 512-byte UDP limit, and without OPT a server may not use extended
/// response codes or options the reader would have to understand. On
/// error nothing is written.
pub fn build_query(
    buf: &mut [u8],
    id: u16,
    name: &Name,
    qtype: QType,
) -> Result<usize, BufferTooSmall> {
    let wire = name.as_wire();
    let needed = header::LEN + wire.len() + 4;
    let Some(out) = buf.get_mut(..needed) else {
        return Err(BufferTooSmall { needed });
    };
    let (head, question) = out.split_at_mut(header::LEN);
    // Cannot fail: `head` is exactly a header long.
    if let Ok(mut h) = Header::new_checked(head) {
        h.set_id(id);
        h.set_query_flags();
        h.set_question_count(1);
        h.set_answer_count(0);
        h.set_authority_count(0);
        h.set_additional_count(0);
    }
    let (qname, tail) = question.split_at_mut(wire.len());
    qname.copy_from_slice(wire);
    tail[..2].copy_from_slice(&qtype.code().to_be_bytes());
    tail[2..].copy_from_slice(&CLASS_IN.to_be_bytes());
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_and_aaaa() {
        let name = Name::parse("Qubes-OS.org").unwrap();
        let mut buf = [0xaau8; MAX_QUERY_LEN];
        let n = build_query(&mut buf, 0x1234, &name, QType::A).unwrap();
        let want: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
            \x08qubes-os\x03org\x00\x00\x01\x00\x01";
        assert_eq!(&buf[..n], want);
        assert_eq!(buf[n], 0xaa, "nothing written past the query");
        let n = build_query(&mut buf, 0xffff, &name, QType::Aaaa).unwrap();
        assert_eq!(&buf[n - 4..n], b"\x00\x1c\x00\x01");
        assert_eq!(&buf[..2], b"\xff\xff");
    }

    #[test]
    fn buffer_too_small() {
        let name = Name::parse("example.com").unwrap();
        let needed = 12 + 13 + 4;
        let mut buf = [0u8; 64];
        assert_eq!(
            build_query(&mut buf[..needed], 1, &name, QType::A),
            Ok(needed)
        );
        let mut small = [0x55u8; 28];
        assert_eq!(
            build_query(&mut small, 1, &name, QType::A),
            Err(BufferTooSmall { needed })
        );
        assert_eq!(small, [0x55u8; 28], "nothing written on error");
        assert_eq!(
            build_query(&mut [], 1, &name, QType::A),
            Err(BufferTooSmall { needed })
        );
    }

    #[test]
    fn longest_name_fits_max_len() {
        let l63 = "a".repeat(63);
        let longest = std::format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        let name = Name::parse(&longest).unwrap();
        let mut buf = [0u8; MAX_QUERY_LEN];
        assert_eq!(
            build_query(&mut buf, 7, &name, QType::Aaaa),
            Ok(MAX_QUERY_LEN)
        );
    }

    extern crate std;
}
