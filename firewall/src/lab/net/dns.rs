//! A tiny DNS (RFC 1035) codec: the responder sys-net's virtual DNS
//! servers run over a [`Zone`], and the query builder and answer parser the
//! AppVM probes use.
//!
//! Parsing is defensive: every length is checked against the message, a
//! question name may not use compression (no client compresses a
//! question), compression pointers in answers must point backwards and are
//! followed at most [`MAX_POINTERS`] times, and names are limited to 255
//! bytes. A malformed query gets FORMERR when its header is readable and no
//! answer otherwise; a response is never answered.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Query type A.
pub const TYPE_A: u16 = 1;
/// Query type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Response code: no error.
pub const RCODE_NOERROR: u8 = 0;
/// Response code: format error.
pub const RCODE_FORMERR: u8 = 1;
/// Response code: name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Response code: not implemented (opcodes other than QUERY).
pub const RCODE_NOTIMP: u8 = 4;
/// Largest response over UDP without EDNS.
pub const MAX_UDP: usize = 512;
/// Compression pointers followed in one name at most.
pub const MAX_POINTERS: usize = 16;
const HEADER: usize = 12;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// Why a message could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The message ends inside a field.
    Truncated,
    /// A label or name too long, a bad label type, or a pointer loop.
    BadName,
    /// Compression in a question name.
    CompressedQuestion,
    /// Not exactly one question.
    QuestionCount(u16),
    /// A response where a query was expected, or the reverse.
    WrongDirection,
    /// A response to another query (id or question differs).
    Mismatch,
}

impl core::fmt::Display for DnsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DnsError::Truncated => f.write_str("truncated message"),
            DnsError::BadName => f.write_str("malformed name"),
            DnsError::CompressedQuestion => f.write_str("compressed question name"),
            DnsError::QuestionCount(n) => write!(f, "{n} questions"),
            DnsError::WrongDirection => f.write_str("wrong QR bit"),
            DnsError::Mismatch => f.write_str("answer to another query"),
        }
    }
}

/// Names and their addresses, served with one TTL. Names are compared
/// case-insensitively, without the trailing dot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    names: BTreeMap<String, Vec<IpAddr>>,
    /// TTL of every answer, seconds.
    pub ttl: u32,
}

impl Zone {
    /// An empty zone with TTL `ttl`.
    pub fn new(ttl: u32) -> Zone {
        Zone {
            names: BTreeMap::new(),
            ttl,
        }
    }

    /// Add `name` with `addrs` (replacing what it had).
    pub fn insert(&mut self, name: &str, addrs: &[IpAddr]) {
        self.names.insert(normalise(name), addrs.to_vec());
    }

    /// Builder form of [`Zone::insert`].
    pub fn with(mut self, name: &str, addrs: &[IpAddr]) -> Zone {
        self.insert(name, addrs);
        self
    }

    /// The addresses of `name`, `None` if the name does not exist.
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(&normalise(name)).map(|v| v.as_slice())
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn be16(m: &[u8], at: usize) -> Result<u16, DnsError> {
    m.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Truncated)
}

/// Read the name at `at`; returns it (dotted, lowercase) and the offset
/// after it in the message.
fn read_name(m: &[u8], mut at: usize, allow_pointers: bool) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *m.get(at).ok_or(DnsError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let after = end.unwrap_or(at + 1);
                return Ok((name, after));
            }
            0x00 => {
                let label = m.get(at + 1..at + 1 + len).ok_or(DnsError::Truncated)?;
                if name.len() + len + 1 > 255 {
                    return Err(DnsError::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                // Non-ASCII bytes become '?': such names are in no zone.
                name.extend(label.iter().map(|&c| {
                    if c.is_ascii() {
                        c.to_ascii_lowercase() as char
                    } else {
                        '?'
                    }
                }));
                at += 1 + len;
            }
            0xc0 => {
                if !allow_pointers {
                    return Err(DnsError::CompressedQuestion);
                }
                let target = (be16(m, at)? & 0x3fff) as usize;
                jumps += 1;
                if jumps > MAX_POINTERS || target >= at {
                    return Err(DnsError::BadName);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) -> Result<(), DnsError> {
    let name = name.trim_end_matches('.');
    if name.len() > 253 {
        return Err(DnsError::BadName);
    }
    for label in name.split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return Err(DnsError::BadName);
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// A parsed question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name, lowercase, without the trailing dot.
    pub name: String,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
}

/// Answer the query `q` from `zone`; `None` when nothing should be sent
/// (a response, or not even a header). A/AAAA questions for a name in the
/// zone get its addresses of that family (none: NODATA), other types of a
/// known name get NODATA, unknown names NXDOMAIN.
pub fn respond(zone: &Zone, q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < HEADER {
        return None;
    }
    let id = be16(q, 0).ok()?;
    let flags = be16(q, 2).ok()?;
    if flags & FLAG_QR != 0 {
        return None;
    }
    let rd = flags & FLAG_RD;
    let opcode = (flags >> 11) & 0xf;
    let header = |out: &mut Vec<u8>, rcode: u8, qd: u16, an: u16| {
        out.extend_from_slice(&id.to_be_bytes());
        let f = FLAG_QR | (opcode << 11) | FLAG_AA | rd | FLAG_RA | u16::from(rcode);
        out.extend_from_slice(&f.to_be_bytes());
        for n in [qd, an, 0, 0] {
            out.extend_from_slice(&n.to_be_bytes());
        }
    };
    let mut out = Vec::with_capacity(MAX_UDP);
    if opcode != 0 {
        header(&mut out, RCODE_NOTIMP, 0, 0);
        return Some(out);
    }
    let question = match parse_question(q) {
        Ok((question, _)) => question,
        Err(_) => {
            header(&mut out, RCODE_FORMERR, 0, 0);
            return Some(out);
        }
    };
    let Some(addrs) = zone.lookup(&question.name) else {
        header(&mut out, RCODE_NXDOMAIN, 1, 0);
        push_question(&mut out, &question);
        return Some(out);
    };
    let matching: Vec<&IpAddr> = addrs
        .iter()
        .filter(|a| {
            matches!(
                (question.qtype, a),
                (TYPE_A, IpAddr::V4(_)) | (TYPE_AAAA, IpAddr::V6(_))
            )
        })
        .filter(|_| question.qclass == CLASS_IN)
        .collect();
    header(&mut out, RCODE_NOERROR, 1, 0);
    push_question(&mut out, &question);
    let mut an = 0u16;
    for a in matching {
        let (ty, rdata): (u16, Vec<u8>) = match a {
            IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
            IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
        };
        if out.len() + 12 + rdata.len() > MAX_UDP {
            let f = be16(&out, 2).unwrap_or(0) | FLAG_TC;
            out[2..4].copy_from_slice(&f.to_be_bytes());
            break;
        }
        out.extend_from_slice(&0xc00cu16.to_be_bytes()); // the question's name
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&zone.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
        an += 1;
    }
    out[6..8].copy_from_slice(&an.to_be_bytes());
    Some(out)
}

fn push_question(out: &mut Vec<u8>, q: &Question) {
    // The name came from a parsed message or a zone: it fits.
    let _ = write_name(out, &q.name);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
}

/// The one question of a message; returns it and the offset after it.
fn parse_question(m: &[u8]) -> Result<(Question, usize), DnsError> {
    let qd = be16(m, 4)?;
    if qd != 1 {
        return Err(DnsError::QuestionCount(qd));
    }
    let (name, at) = read_name(m, HEADER, false)?;
    let qtype = be16(m, at)?;
    let qclass = be16(m, at + 2)?;
    Ok((
        Question {
            name,
            qtype,
            qclass,
        },
        at + 4,
    ))
}

/// A query for `name`, type `qtype`, with id `id` and recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(HEADER + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    for n in [1u16, 0, 0, 0] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    write_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// What a response said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: u8,
    /// A and AAAA records in the answer section, in order.
    pub addrs: Vec<IpAddr>,
    /// TTLs of those records.
    pub ttls: Vec<u32>,
    /// The TC bit.
    pub truncated: bool,
}

/// Parse the response to the query `id` for `name`/`qtype`.
pub fn parse_answer(m: &[u8], id: u16, name: &str, qtype: u16) -> Result<Answer, DnsError> {
    if be16(m, 0)? != id {
        return Err(DnsError::Mismatch);
    }
    let flags = be16(m, 2)?;
    if flags & FLAG_QR == 0 {
        return Err(DnsError::WrongDirection);
    }
    let rcode = (flags & 0xf) as u8;
    let ancount = be16(m, 6)?;
    let mut at = HEADER;
    if be16(m, 4)? > 0 {
        let (q, after) = parse_question(m)?;
        if q.name != normalise(name) || q.qtype != qtype {
            return Err(DnsError::Mismatch);
        }
        at = after;
    }
    let mut answer = Answer {
        rcode,
        addrs: Vec::new(),
        ttls: Vec::new(),
        truncated: flags & FLAG_TC != 0,
    };
    for _ in 0..ancount {
        let (_, after) = read_name(m, at, true)?;
        let ty = be16(m, after)?;
        let ttl_hi = be16(m, after + 4)?;
        let ttl_lo = be16(m, after + 6)?;
        let len = be16(m, after + 8)? as usize;
        let data = m
            .get(after + 10..after + 10 + len)
            .ok_or(DnsError::Truncated)?;
        let addr = match (ty, len) {
            (TYPE_A, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(data);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        };
        if let Some(a) = addr {
            answer.addrs.push(a);
            answer
                .ttls
                .push(u32::from(ttl_hi) << 16 | u32::from(ttl_lo));
        }
        at = after + 10 + len;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone::new(60).with(
            "example.com",
            &[
                "198.51.100.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn a_aaaa_nodata_nxdomain() {
        let z = zone();
        let q = query(7, "Example.COM.", TYPE_A).unwrap();
        let r = respond(&z, &q).unwrap();
        let a = parse_answer(&r, 7, "example.com", TYPE_A).unwrap();
        assert_eq!(a.rcode, RCODE_NOERROR);
        assert_eq!(a.addrs, vec!["198.51.100.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(a.ttls, vec![60]);
        let q = query(8, "example.com", TYPE_AAAA).unwrap();
        let a = parse_answer(&respond(&z, &q).unwrap(), 8, "example.com", TYPE_AAAA).unwrap();
        assert_eq!(a.addrs, vec!["2001:db8::10".parse::<IpAddr>().unwrap()]);
        let q = query(9, "example.com", 16).unwrap(); // TXT: NODATA
        let a = parse_answer(&respond(&z, &q).unwrap(), 9, "example.com", 16).unwrap();
        assert_eq!((a.rcode, a.addrs.len()), (RCODE_NOERROR, 0));
        let q = query(10, "nope.example", TYPE_A).unwrap();
        let a = parse_answer(&respond(&z, &q).unwrap(), 10, "nope.example", TYPE_A).unwrap();
        assert_eq!(a.rcode, RCODE_NXDOMAIN);
        assert_eq!(
            parse_answer(&respond(&z, &q).unwrap(), 11, "nope.example", TYPE_A),
            Err(DnsError::Mismatch)
        );
    }

    #[test]
    fn malformed_queries() {
        let z = zone();
        // Responses and headerless messages get nothing.
        let mut q = query(1, "example.com", TYPE_A).unwrap();
        assert_eq!(respond(&z, &q[..5]), None);
        q[2] |= 0x80;
        assert_eq!(respond(&z, &q), None);
        // Truncated question, two questions, compressed question: FORMERR.
        let q = query(2, "example.com", TYPE_A).unwrap();
        for bad in [
            q[..q.len() - 3].to_vec(),
            {
                let mut b = q.clone();
                b[5] = 2;
                b
            },
            {
                let mut b = q[..12].to_vec();
                b.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                b
            },
            {
                let mut b = q[..12].to_vec();
                b.extend_from_slice(&[0x80, 0, 0, 1, 0, 1]);
                b
            },
        ] {
            let r = respond(&z, &bad).unwrap();
            assert_eq!(r[3] & 0xf, RCODE_FORMERR, "{bad:?}");
        }
        // Other opcodes: NOTIMP.
        let mut b = q.clone();
        b[2] |= 0x10;
        assert_eq!(respond(&z, &b).unwrap()[3] & 0xf, RCODE_NOTIMP);
        // Names that cannot be encoded are refused by the builder.
        assert_eq!(query(1, &"a".repeat(64), TYPE_A), Err(DnsError::BadName));
    }

    #[test]
    fn answer_parser_rejects_pointer_loops_and_short_rdata() {
        let z = zone();
        let q = query(3, "example.com", TYPE_A).unwrap();
        let mut r = respond(&z, &q).unwrap();
        let an = q.len();
        // Point the answer's name at itself.
        r[an..an + 2].copy_from_slice(&((0xc000 | an) as u16).to_be_bytes());
        assert_eq!(
            parse_answer(&r, 3, "example.com", TYPE_A),
            Err(DnsError::BadName)
        );
        let r = respond(&z, &q).unwrap();
        assert_eq!(
            parse_answer(&r[..r.len() - 1], 3, "example.com", TYPE_A),
            Err(DnsError::Truncated)
        );
    }
}
