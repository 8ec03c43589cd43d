//! Incremental framing of the reply stream.
//!
//! Bytes arrive from the response ring in chunks of any size (a ring read
//! returns at most what the server has produced so far, and a message may
//! wrap around the ring), so a message can be split anywhere, even inside
//! its header. [`Framer`] accumulates bytes until a whole message (16-byte
//! header plus `len` payload bytes) is present. The header is validated as
//! soon as its 16th byte arrives, so an oversized `len` is refused before
//! anything is buffered for it: the buffer never exceeds 4096 bytes.
//!
//! An incomplete header is not an error here: it is a message still
//! arriving ([`Framer::is_idle`] tells whether one is). After a header error
//! the stream has no message boundary to resume from; the framer must not be
//! fed again (the client enforces this).

use alloc::vec::Vec;

use super::wire::{Header, WireError, HEADER_LEN};

/// One complete message from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The validated header.
    pub header: Header,
    /// Exactly `header.len` payload bytes.
    pub payload: Vec<u8>,
}

/// Reassembles messages from byte chunks.
#[derive(Debug, Default)]
pub struct Framer {
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    /// The header of the message whose payload is being collected.
    cur: Option<Header>,
    payload: Vec<u8>,
}

impl Framer {
    /// A framer at a message boundary.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Whether no partial message is buffered.
    pub fn is_idle(&self) -> bool {
        self.hdr_len == 0 && self.cur.is_none()
    }

    /// Consume bytes from the front of `input` until one message is
    /// complete (returned) or `input` is exhausted (`Ok(None)`). Call again
    /// with the remaining input for further messages.
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Message>, WireError> {
        loop {
            match self.cur {
                None => {
                    let take = (HEADER_LEN - self.hdr_len).min(input.len());
                    let (now, rest) = input.split_at(take);
                    self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(now);
                    self.hdr_len += take;
                    *input = rest;
                    if self.hdr_len < HEADER_LEN {
                        return Ok(None);
                    }
                    let h = Header::parse(&self.hdr)?;
                    self.hdr_len = 0;
                    self.payload = Vec::with_capacity(h.len as usize);
                    self.cur = Some(h);
                }
                Some(h) => {
                    let need = h.len as usize - self.payload.len();
                    let take = need.min(input.len());
                    let (now, rest) = input.split_at(take);
                    self.payload.extend_from_slice(now);
                    *input = rest;
                    if self.payload.len() < h.len as usize {
                        return Ok(None);
                    }
                    self.cur = None;
                    let payload = core::mem::take(&mut self.payload);
                    return Ok(Some(Message { header: h, payload }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::xs_wire::msg;

    fn bytes(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            ty,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        };
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn all(f: &mut Framer, mut input: &[u8]) -> Result<Vec<Message>, WireError> {
        let mut out = Vec::new();
        while let Some(m) = f.feed(&mut input)? {
            out.push(m);
        }
        assert!(input.is_empty());
        Ok(out)
    }

    #[test]
    fn whole_and_split_at_every_byte() {
        let mut stream = bytes(msg::READ, 1, b"value");
        stream.extend(bytes(msg::WRITE, 2, b"OK\0"));
        stream.extend(bytes(msg::RM, 3, b""));
        let whole = all(&mut Framer::new(), &stream).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].payload, b"value");
        assert_eq!(whole[2].header.req_id, 3);
        assert!(whole[2].payload.is_empty());
        for cut in 0..=stream.len() {
            let mut f = Framer::new();
            let mut got = all(&mut f, &stream[..cut]).unwrap();
            got.extend(all(&mut f, &stream[cut..]).unwrap());
            assert_eq!(got, whole, "cut at {cut}");
            assert!(f.is_idle());
        }
        // One byte at a time.
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &stream {
            got.extend(all(&mut f, core::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn short_header_waits() {
        let stream = bytes(msg::READ, 1, b"");
        let mut f = Framer::new();
        assert_eq!(all(&mut f, &stream[..15]).unwrap(), vec![]);
        assert!(!f.is_idle());
        assert_eq!(all(&mut f, &stream[15..]).unwrap().len(), 1);
    }

    #[test]
    fn header_errors() {
        let mut h = Header {
            ty: msg::READ,
            req_id: 1,
            tx_id: 0,
            len: 4097,
        };
        let mut f = Framer::new();
        let enc = h.encode();
        let mut input = &enc[..];
        assert_eq!(f.feed(&mut input), Err(WireError::Oversized(4097)));
        h.len = 0;
        h.ty = 20;
        let enc = h.encode();
        let mut input = &enc[..];
        assert_eq!(
            Framer::new().feed(&mut input),
            Err(WireError::UnknownType(20))
        );
        // The largest legal payload is accepted.
        let big = bytes(msg::READ, 1, &[7u8; 4096]);
        assert_eq!(
            all(&mut Framer::new(), &big).unwrap()[0].payload.len(),
            4096
        );
    }
}
