//! Incremental decoder: bytes in chunks of any size (a vchan delivers
//! whatever is in the ring), whole [`Frame`]s out.
//!
//! The decoder holds at most one message: the 72 header bytes, then the
//! header's `data_len` bytes (below 3072, so its buffer is bounded). The
//! header is validated as soon as its 72 bytes are in, before any data is
//! awaited, so a bogus length never makes us wait for or buffer bytes that
//! were never meant as data.
//!
//! After a [`WireError`] the stream cannot be re-framed: the decoder stays
//! failed (every later call returns the same error) until [`Decoder::reset`]
//! starts a new connection.

use alloc::vec::Vec;

use crate::error::WireError;
use crate::wire::{Frame, Header, HDR_SIZE};

/// See the module doc.
#[derive(Debug)]
pub struct Decoder {
    hdr: [u8; HDR_SIZE],
    hdr_fill: usize,
    /// The validated header whose data is being collected.
    current: Option<Header>,
    data: Vec<u8>,
    failed: Option<WireError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder {
            hdr: [0; HDR_SIZE],
            hdr_fill: 0,
            current: None,
            data: Vec::new(),
            failed: None,
        }
    }

    /// Forget everything: a new connection starts.
    pub fn reset(&mut self) {
        *self = Decoder::new();
    }

    /// Whether the decoder is between messages (no partial message held).
    pub fn is_idle(&self) -> bool {
        self.hdr_fill == 0 && self.current.is_none()
    }

    /// The error that stopped the decoder, if any.
    pub fn failed(&self) -> Option<&WireError> {
        self.failed.as_ref()
    }

    /// The next outcome from `input`, advancing it past what was consumed:
    /// a whole message, the error that broke the stream, or `None` once
    /// `input` holds no complete message (a partial one stays buffered).
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Option<Result<Frame, WireError>> {
        while !input.is_empty() {
            let (n, item) = self.decode(input);
            *input = &input[n..];
            match item {
                Some(item) => return Some(item),
                None if n == 0 => return None,
                None => {}
            }
        }
        None
    }

    /// Consume bytes of `input` until one message is complete or `input`
    /// is used up. Returns how many bytes were consumed and, if a message
    /// completed (or the stream broke), the outcome. Call again with the
    /// rest of the input to continue.
    ///
    /// Once failed it consumes nothing and returns the error again.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<Result<Frame, WireError>>) {
        if let Some(e) = &self.failed {
            return (0, Some(Err(e.clone())));
        }
        let mut used = 0;
        if self.current.is_none() {
            let want = HDR_SIZE - self.hdr_fill;
            let n = want.min(input.len());
            self.hdr[self.hdr_fill..self.hdr_fill + n].copy_from_slice(&input[..n]);
            self.hdr_fill += n;
            used += n;
            if self.hdr_fill < HDR_SIZE {
                return (used, None);
            }
            self.hdr_fill = 0;
            match Header::parse(&self.hdr) {
                Ok(h) => {
                    self.data = Vec::with_capacity(h.data_len());
                    self.current = Some(h);
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return (used, Some(Err(e)));
                }
            }
        }
        let want = match &self.current {
            Some(h) => h.data_len() - self.data.len(),
            None => return (used, None),
        };
        let rest = &input[used..];
        let n = want.min(rest.len());
        self.data.extend_from_slice(&rest[..n]);
        used += n;
        if n < want {
            return (used, None);
        }
        match self.current.take() {
            Some(header) => {
                let data = core::mem::take(&mut self.data);
                (used, Some(Ok(Frame { header, data })))
            }
            None => (used, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, encode_unchecked, MsgType};
    use alloc::vec;

    fn stream() -> Vec<u8> {
        let mut v = Vec::new();
        encode(MsgType::RespMultiread, "/a", b"1", &mut v).unwrap();
        encode(MsgType::RespMultiread, "/b", b"", &mut v).unwrap();
        encode(MsgType::RespMultiread, "", b"", &mut v).unwrap();
        v
    }

    fn decode_all(d: &mut Decoder, mut input: &[u8]) -> Vec<Result<Frame, WireError>> {
        let mut out = Vec::new();
        loop {
            let (n, item) = d.decode(input);
            input = &input[n..];
            match item {
                Some(Err(e)) => {
                    out.push(Err(e));
                    return out;
                }
                Some(Ok(f)) => out.push(Ok(f)),
                None if input.is_empty() => return out,
                None => {}
            }
        }
    }

    #[test]
    fn whole_stream_at_once() {
        let mut d = Decoder::new();
        let frames = decode_all(&mut d, &stream());
        assert_eq!(frames.len(), 3);
        let f = frames[0].as_ref().unwrap();
        assert_eq!(f.header.path(), "/a");
        assert_eq!(f.data, b"1");
        assert_eq!(frames[2].as_ref().unwrap().header.path(), "");
        assert!(d.is_idle());
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let s = stream();
        let mut whole = Decoder::new();
        let expected = decode_all(&mut whole, &s);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &s {
            got.extend(decode_all(&mut d, core::slice::from_ref(b)));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let s = stream();
        let expected = decode_all(&mut Decoder::new(), &s);
        for cut in 0..=s.len() {
            let mut d = Decoder::new();
            let mut got = decode_all(&mut d, &s[..cut]);
            got.extend(decode_all(&mut d, &s[cut..]));
            assert_eq!(got, expected, "cut at {cut}");
        }
    }

    #[test]
    fn bad_header_fails_before_any_data_is_awaited() {
        let mut v = Vec::new();
        encode_unchecked(1, b"/a", 5000, &[], &mut v);
        let mut d = Decoder::new();
        let (n, r) = d.decode(&v);
        assert_eq!(n, HDR_SIZE);
        assert_eq!(r, Some(Err(WireError::DataLenTooLarge { len: 5000 })));
        // Stays failed and consumes nothing more.
        assert_eq!(
            d.decode(b"more"),
            (0, Some(Err(WireError::DataLenTooLarge { len: 5000 })))
        );
        d.reset();
        assert!(d.failed().is_none());
        assert_eq!(decode_all(&mut d, &stream()).len(), 3);
    }

    #[test]
    fn partial_message_is_not_idle() {
        let s = stream();
        let mut d = Decoder::new();
        assert_eq!(d.decode(&s[..10]), (10, None));
        assert!(!d.is_idle());
        assert_eq!(d.decode(&s[10..HDR_SIZE]), (HDR_SIZE - 10, None));
        assert!(!d.is_idle(), "header in, data pending");
        let (n, f) = d.decode(&s[HDR_SIZE..]);
        assert_eq!(n, 1);
        assert_eq!(f.unwrap().unwrap().data, vec![b'1']);
        assert!(d.is_idle());
    }
}
