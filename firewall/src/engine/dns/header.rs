//! [`Header`]: a checked, zero-copy view of the 12-byte DNS header
//! (RFC 1035 §4.1.1) over any byte buffer, readable over `&[u8]`,
//! writable over `&mut [u8]`.

/// Length of the header.
pub const LEN: usize = 12;

/// Flag bits in the second 16-bit word.
mod flags {
    /// Query (0) or response (1).
    pub const QR: u16 = 0x8000;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
}

/// The buffer is shorter than a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortHeader;

/// A view of a DNS header at the start of `buffer`.
///
/// Invariant: `buffer.as_ref().len() >= LEN` (only [`Header::new_checked`]
/// builds one), so no accessor can index out of bounds.
#[derive(Clone, Copy, Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Length of the header.
    pub const LEN: usize = LEN;

    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Header<T>, ShortHeader> {
        if buffer.as_ref().len() < LEN {
            Err(ShortHeader)
        } else {
            Ok(Header { buffer })
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// The query id, echoed by the server.
    pub fn id(&self) -> u16 {
        self.word(0)
    }

    /// The second word (QR, opcode, AA, TC, RD, RA, Z, RCODE).
    pub fn flags(&self) -> u16 {
        self.word(2)
    }

    /// QR: a response rather than a query.
    pub fn is_response(&self) -> bool {
        self.flags() & flags::QR != 0
    }

    /// The opcode (0 for a standard query).
    pub fn opcode(&self) -> u8 {
        ((self.flags() >> 11) & 0xf) as u8
    }

    /// TC: the server truncated the message to fit UDP.
    pub fn is_truncated(&self) -> bool {
        self.flags() & flags::TC != 0
    }

    /// RD: recursion desired.
    pub fn recursion_desired(&self) -> bool {
        self.flags() & flags::RD != 0
    }

    /// RA: recursion available.
    pub fn recursion_available(&self) -> bool {
        self.flags() & flags::RA != 0
    }

    /// The 4-bit response code (no EDNS extension: the resolver sends no
    /// OPT record, so a server must not use extended codes).
    pub fn rcode(&self) -> u8 {
        (self.flags() & 0xf) as u8
    }

    /// QDCOUNT.
    pub fn question_count(&self) -> u16 {
        self.word(4)
    }

    /// ANCOUNT.
    pub fn answer_count(&self) -> u16 {
        self.word(6)
    }

    /// NSCOUNT.
    pub fn authority_count(&self) -> u16 {
        self.word(8)
    }

    /// ARCOUNT.
    pub fn additional_count(&self) -> u16 {
        self.word(10)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_word(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the id.
    pub fn set_id(&mut self, id: u16) {
        self.set_word(0, id);
    }

    /// Sets the flags word.
    pub fn set_flags(&mut self, value: u16) {
        self.set_word(2, value);
    }

    /// Sets the flags of a standard recursive query: QR clear, opcode 0,
    /// RD set, everything else clear.
    pub fn set_query_flags(&mut self) {
        self.set_flags(flags::RD);
    }

    /// Sets QDCOUNT.
    pub fn set_question_count(&mut self, n: u16) {
        self.set_word(4, n);
    }

    /// Sets ANCOUNT.
    pub fn set_answer_count(&mut self, n: u16) {
        self.set_word(6, n);
    }

    /// Sets NSCOUNT.
    pub fn set_authority_count(&mut self, n: u16) {
        self.set_word(8, n);
    }

    /// Sets ARCOUNT.
    pub fn set_additional_count(&mut self, n: u16) {
        self.set_word(10, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..LEN {
            assert_eq!(
                Header::new_checked(&[0u8; 16][..n]).err(),
                Some(ShortHeader)
            );
        }
        assert!(Header::new_checked(&[0u8; LEN][..]).is_ok());
    }

    #[test]
    fn fields_round_trip() {
        let mut buf = [0u8; LEN];
        let mut h = Header::new_checked(&mut buf[..]).unwrap();
        h.set_id(0xbeef);
        h.set_query_flags();
        h.set_question_count(1);
        h.set_answer_count(2);
        h.set_authority_count(3);
        h.set_additional_count(4);
        assert_eq!(buf, [0xbe, 0xef, 1, 0, 0, 1, 0, 2, 0, 3, 0, 4]);
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!(h.id(), 0xbeef);
        assert!(h.recursion_desired() && !h.is_response() && !h.is_truncated());
        assert!(!h.recursion_available());
        assert_eq!((h.opcode(), h.rcode()), (0, 0));
        assert_eq!(
            (
                h.question_count(),
                h.answer_count(),
                h.authority_count(),
                h.additional_count()
            ),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn response_flags() {
        // QR, opcode 2, TC, RD, RA, rcode 3.
        let buf = [
            0,
            0,
            0x80 | 0x10 | 0x02 | 0x01,
            0x83,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let h = Header::new_checked(&buf[..]).unwrap();
        assert!(h.is_response() && h.is_truncated() && h.recursion_desired());
        assert!(h.recursion_available());
        assert_eq!((h.opcode(), h.rcode()), (2, 3));
        assert_eq!(h.into_inner().len(), LEN);
    }
}
