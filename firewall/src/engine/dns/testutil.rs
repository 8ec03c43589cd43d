//! Test helper: builds DNS responses (and broken ones) byte by byte, so
//! tests of the reader and the resolver state exactly what a server sent.

extern crate std;

use std::vec::Vec;

use super::header::Header;
use super::{QType, CLASS_IN, TYPE_CNAME, TYPE_SOA};

/// A name's wire form from dotted text, no checks (so tests can build
/// names the builder refuses).
pub fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Offset of the question name in every message built here: a pointer
/// `PTR_QNAME` to it compresses the query name.
pub const PTR_QNAME: &[u8] = b"\xc0\x0c";

/// A message under construction. Records must be added section by
/// section (answers, then authority).
pub struct Msg {
    /// The message so far.
    pub buf: Vec<u8>,
}

impl Msg {
    /// A NOERROR response header (QR, RD, RA) to `id` with one question
    /// `qname` (wire form) / `qtype`, class IN.
    pub fn response(id: u16, qname: &[u8], qtype: QType) -> Msg {
        let mut buf = std::vec![0u8; 12];
        {
            let mut h = Header::new_checked(&mut buf[..]).unwrap();
            h.set_id(id);
            h.set_flags(0x8180);
            h.set_question_count(1);
        }
        buf.extend_from_slice(qname);
        buf.extend_from_slice(&qtype.code().to_be_bytes());
        buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        Msg { buf }
    }

    /// The response to `query` (as the builder wrote it): same id and
    /// question, no records yet.
    pub fn answering(query: &[u8]) -> Msg {
        let mut buf = query.to_vec();
        buf[2] = 0x81;
        buf[3] = 0x80;
        Msg { buf }
    }

    fn header(&mut self) -> Header<&mut [u8]> {
        Header::new_checked(&mut self.buf[..]).unwrap()
    }

    /// Sets the RCODE.
    pub fn rcode(mut self, code: u8) -> Msg {
        let mut h = self.header();
        let flags = h.flags() & !0xf | u16::from(code);
        h.set_flags(flags);
        self
    }

    /// Sets the flags word.
    pub fn flags(mut self, flags: u16) -> Msg {
        self.header().set_flags(flags);
        self
    }

    fn record(mut self, owner: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> Msg {
        self.buf.extend_from_slice(owner);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self
    }

    /// Appends an answer record of any type and class.
    pub fn answer_raw(self, owner: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> Msg {
        let mut m = self.record(owner, rtype, class, ttl, rdata);
        let mut h = m.header();
        let n = h.answer_count() + 1;
        h.set_answer_count(n);
        m
    }

    /// Appends an A answer.
    pub fn a(self, owner: &[u8], ttl: u32, addr: [u8; 4]) -> Msg {
        self.answer_raw(owner, QType::A.code(), CLASS_IN, ttl, &addr)
    }

    /// Appends an AAAA answer.
    pub fn aaaa(self, owner: &[u8], ttl: u32, addr: [u8; 16]) -> Msg {
        self.answer_raw(owner, QType::Aaaa.code(), CLASS_IN, ttl, &addr)
    }

    /// Appends a CNAME answer (`target` in wire form, possibly with a
    /// pointer).
    pub fn cname(self, owner: &[u8], ttl: u32, target: &[u8]) -> Msg {
        self.answer_raw(owner, TYPE_CNAME, CLASS_IN, ttl, target)
    }

    /// Appends an authority SOA with the given record TTL and MINIMUM.
    pub fn soa(self, owner: &[u8], ttl: u32, minimum: u32) -> Msg {
        let mut rdata = wire("ns.example");
        rdata.extend_from_slice(&wire("hostmaster.example"));
        for v in [1u32, 7200, 3600, 1_209_600, minimum] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        self.authority_raw(owner, TYPE_SOA, ttl, &rdata)
    }

    /// Appends an authority record of any type (class IN).
    pub fn authority_raw(self, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Msg {
        let mut m = self.record(owner, rtype, CLASS_IN, ttl, rdata);
        let mut h = m.header();
        let n = h.authority_count() + 1;
        h.set_authority_count(n);
        m
    }

    /// Sets ANCOUNT (to lie about it).
    pub fn answer_count(mut self, n: u16) -> Msg {
        self.header().set_answer_count(n);
        self
    }
}
