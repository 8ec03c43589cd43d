//! The response reader: checks that a message answers the question asked
//! and extracts its addresses, following CNAMEs within the message.
//!
//! The checks come in two groups, and [`ResponseError::is_unmatched`]
//! tells them apart, because the resolver treats them differently:
//! - *is it the answer?* Header present, id, QR, opcode 0, one question
//!   equal to ours. A message failing these may be a spoof or a stray,
//!   so the resolver ignores it and keeps waiting for the real one.
//! - *is the answer usable?* TC clear, RCODE, every record of the
//!   sections read well-formed. The server answered and the answer is
//!   bad: the resolver counts the attempt as failed and asks again.
//!
//! NXDOMAIN and NODATA are answers ([`Response`]), not errors.
//!
//! Work is bounded whatever the input: each pass over the answer section
//! reads ANCOUNT records, each at least 11 bytes of the message (so at most
//! `len / 11` of them), names cost at most 255 bytes and 64 jumps each,
//! and there are at most [`MAX_CNAME_CHAIN`] + 2 passes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::ops::Range;

use super::header::{self, Header};
use super::name::{read_name, skip_name, Name, NameFault, MAX_NAME_LEN};
use super::{QType, CLASS_IN, TYPE_CNAME, TYPE_SOA};

/// Most addresses kept from one response; more are dropped (and
/// [`Answer::overflowed`] says so). Firewall rules name hosts, not
/// address pools: 16 covers any real RRset that fits 512 bytes of UDP
/// (at most 30 A records do).
pub const MAX_ADDRS: usize = 16;

/// Most CNAME links followed from the query name. Resolvers commonly
/// allow about this many; a longer chain in one response is refused as
/// [`ResponseError::CnameChainTooLong`] (it covers loops too).
pub const MAX_CNAME_CHAIN: usize = 8;

/// RCODE 3: the name does not exist.
const RCODE_NXDOMAIN: u8 = 3;

/// A failure response code (RFC 1035 §4.1.1, RFC 6895).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// 1: the server could not parse our query.
    FormErr,
    /// 2: the server failed (upstream unreachable, DNSSEC failure, ...).
    ServFail,
    /// 4: the server does not do this kind of query.
    NotImp,
    /// 5: the server refuses to answer (policy).
    Refused,
    /// Any other nonzero code except NXDOMAIN (3).
    Other(u8),
}

impl Rcode {
    fn from_code(code: u8) -> Rcode {
        match code {
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            other => Rcode::Other(other),
        }
    }
}

/// Why a message is not a usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    // Not the answer to our question (see `is_unmatched`).
    /// Shorter than a header.
    ShortHeader,
    /// Another id.
    IdMismatch,
    /// QR clear: a query, not a response.
    NotResponse,
    /// An opcode other than 0 (standard query).
    Opcode(u8),
    /// Not exactly one question.
    QuestionCount(u16),
    /// The question section is unreadable.
    BadQuestion(NameFault),
    /// The question differs from ours (name, type or class).
    QuestionMismatch,
    // The answer, but unusable.
    /// TC set: the server could not fit the answer in UDP. The resolver
    /// has no TCP; a truncated RRset must not be used (RFC 2181 §9).
    Truncated,
    /// The server reported a failure.
    Server(Rcode),
    /// A name in a record is unreadable.
    BadName(NameFault),
    /// A record runs past the end of the message, or the message ends
    /// before the counted records.
    RecordOverrun,
    /// Record data of the wrong length for its type, or a CNAME/SOA whose
    /// names do not fill its data exactly.
    BadRdata,
    /// More than [`MAX_CNAME_CHAIN`] CNAME links from the query name.
    CnameChainTooLong,
}

impl ResponseError {
    /// Whether the message was not shown to answer our question (wrong
    /// id, not a response, another question, ...): it may be a spoof or a
    /// stray, and does not end the wait for the real answer.
    pub fn is_unmatched(&self) -> bool {
        matches!(
            self,
            ResponseError::ShortHeader
                | ResponseError::IdMismatch
                | ResponseError::NotResponse
                | ResponseError::Opcode(_)
                | ResponseError::QuestionCount(_)
                | ResponseError::BadQuestion(_)
                | ResponseError::QuestionMismatch
        )
    }
}

impl From<NameFault> for ResponseError {
    fn from(fault: NameFault) -> ResponseError {
        ResponseError::BadName(fault)
    }
}

/// The addresses of a positive answer, inline (no allocation).
///
/// Invariant: `len <= MAX_ADDRS`; `addrs[..len]` are distinct, all of the
/// type asked, in the order the records came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    addrs: [IpAddr; MAX_ADDRS],
    len: usize,
    ttl: u32,
    overflowed: bool,
}

impl Answer {
    fn new() -> Answer {
        Answer {
            addrs: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); MAX_ADDRS],
            len: 0,
            ttl: u32::MAX,
            overflowed: false,
        }
    }

    fn push(&mut self, addr: IpAddr, ttl: u32) {
        if self.addrs().contains(&addr) {
            self.ttl = self.ttl.min(ttl);
        } else if self.len < MAX_ADDRS {
            self.addrs[self.len] = addr;
            self.len += 1;
            self.ttl = self.ttl.min(ttl);
        } else {
            self.overflowed = true;
        }
    }

    /// The addresses (at least one, at most [`MAX_ADDRS`]).
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs[..self.len]
    }

    /// The smallest TTL, in seconds, of the records used: the kept address
    /// records and the CNAME links leading to them.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Whether more than [`MAX_ADDRS`] distinct addresses were offered
    /// (the rest were dropped).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

/// A well-formed answer to our question.
///
/// The addresses are held inline (about 300 bytes) on purpose: the reader
/// must not allocate, and one response is read at a time.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// The name (or the end of its CNAME chain) has addresses of the type
    /// asked.
    Addresses(Answer),
    /// NXDOMAIN: the name (or a CNAME target) does not exist.
    NxDomain {
        /// How long the server says to believe that, in seconds (RFC 2308:
        /// the smaller of the authority SOA's TTL and MINIMUM), if it gave
        /// an SOA.
        negative_ttl: Option<u32>,
    },
    /// NODATA: the name exists but has no address of the type asked.
    NoData {
        /// As for [`Response::NxDomain`].
        negative_ttl: Option<u32>,
    },
}

/// Reads `msg` as the answer to query `id` for `name`/`qtype` (class IN).
///
/// Address records count only if their owner is `name` or the last name
/// of the CNAME chain from `name` (CNAMEs from the answer section of this
/// message only): by RFC 1034 §3.6.2 a name with a CNAME has no other
/// data, so addresses on an intermediate name would be bogus. Addresses
/// are de-duplicated, at most [`MAX_ADDRS`] kept.
pub fn parse_response(
    msg: &[u8],
    id: u16,
    name: &Name,
    qtype: QType,
) -> Result<Response, ResponseError> {
    let head = Header::new_checked(msg).map_err(|_| ResponseError::ShortHeader)?;
    if head.id() != id {
        return Err(ResponseError::IdMismatch);
    }
    if !head.is_response() {
        return Err(ResponseError::NotResponse);
    }
    if head.opcode() != 0 {
        return Err(ResponseError::Opcode(head.opcode()));
    }
    if head.question_count() != 1 {
        return Err(ResponseError::QuestionCount(head.question_count()));
    }
    let mut qname = [0u8; MAX_NAME_LEN];
    let (qlen, qend) =
        read_name(msg, header::LEN, &mut qname).map_err(ResponseError::BadQuestion)?;
    let fixed = msg
        .get(qend..qend + 4)
        .ok_or(ResponseError::BadQuestion(NameFault::OutOfBounds))?;
    if qname[..qlen] != *name.as_wire()
        || be16(fixed, 0) != qtype.code()
        || be16(fixed, 2) != CLASS_IN
    {
        return Err(ResponseError::QuestionMismatch);
    }
    let answers = Section {
        start: qend + 4,
        count: head.answer_count(),
    };

    if head.is_truncated() {
        return Err(ResponseError::Truncated);
    }
    let nxdomain = match head.rcode() {
        0 => false,
        RCODE_NXDOMAIN => true,
        code => return Err(ResponseError::Server(Rcode::from_code(code))),
    };

    let (target, chain_ttl) = follow_cnames(msg, answers, name)?;
    let mut answer = Answer::new();
    let mut records = answers.records(msg);
    while let Some(rec) = records.next_record()? {
        if rec.class != CLASS_IN || rec.rtype != qtype.code() {
            continue;
        }
        if !owner_is(msg, &rec, target.as_slice())? {
            continue;
        }
        let data = &msg[rec.rdata.clone()];
        let addr = match qtype {
            QType::A => <[u8; 4]>::try_from(data).map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            QType::Aaaa => <[u8; 16]>::try_from(data).map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        }
        .map_err(|_| ResponseError::BadRdata)?;
        answer.push(addr, rec.ttl);
    }
    if !nxdomain && answer.len > 0 {
        answer.ttl = answer.ttl.min(chain_ttl);
        return Ok(Response::Addresses(answer));
    }
    let authority = Section {
        start: records.pos,
        count: head.authority_count(),
    };
    let negative_ttl = negative_ttl(msg, authority)?;
    Ok(if nxdomain {
        Response::NxDomain { negative_ttl }
    } else {
        Response::NoData { negative_ttl }
    })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A TTL as RFC 2181 §8 reads it: values with the top bit set mean 0.
fn ttl_value(raw: u32) -> u32 {
    if raw > i32::MAX as u32 {
        0
    } else {
        raw
    }
}

/// A name in wire form held inline.
struct WireName {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl WireName {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A section of records: where it starts and how many records it counts.
#[derive(Clone, Copy)]
struct Section {
    start: usize,
    count: u16,
}

impl Section {
    fn records(self, msg: &[u8]) -> Records<'_> {
        Records {
            msg,
            pos: self.start,
            left: self.count,
        }
    }
}

/// One resource record, by offsets into the message.
struct Record {
    owner: usize,
    rtype: u16,
    class: u16,
    /// Already read per RFC 2181 §8.
    ttl: u32,
    /// In bounds of the message.
    rdata: Range<usize>,
}

/// Walks a section record by record without collecting anything.
struct Records<'a> {
    msg: &'a [u8],
    /// Where the next record starts (after the last one, once all read).
    pos: usize,
    left: u16,
}

impl Records<'_> {
    fn next_record(&mut self) -> Result<Option<Record>, ResponseError> {
        if self.left == 0 {
            return Ok(None);
        }
        let owner = self.pos;
        let after = skip_name(self.msg, owner)?;
        let fixed = self
            .msg
            .get(after..after + 10)
            .ok_or(ResponseError::RecordOverrun)?;
        let rdlen = usize::from(be16(fixed, 8));
        let rdata = after + 10..after + 10 + rdlen;
        if rdata.end > self.msg.len() {
            return Err(ResponseError::RecordOverrun);
        }
        self.left -= 1;
        self.pos = rdata.end;
        Ok(Some(Record {
            owner,
            rtype: be16(fixed, 0),
            class: be16(fixed, 2),
            ttl: ttl_value(be32(fixed, 4)),
            rdata,
        }))
    }
}

/// Whether `rec`'s owner, decompressed, is `wire`.
fn owner_is(msg: &[u8], rec: &Record, wire: &[u8]) -> Result<bool, ResponseError> {
    let mut owner = [0u8; MAX_NAME_LEN];
    let (len, _) = read_name(msg, rec.owner, &mut owner)?;
    Ok(owner[..len] == *wire)
}

/// Follows the CNAME chain from `name` through the answer section: the
/// name whose addresses count, and the smallest TTL of the links used
/// (`u32::MAX` without links). One pass per link; the first CNAME found
/// for a name is the one followed.
fn follow_cnames(
    msg: &[u8],
    answers: Section,
    name: &Name,
) -> Result<(WireName, u32), ResponseError> {
    let mut current = WireName {
        bytes: [0; MAX_NAME_LEN],
        len: name.as_wire().len(),
    };
    current.bytes[..current.len].copy_from_slice(name.as_wire());
    let mut ttl = u32::MAX;
    let mut links = 0;
    loop {
        let mut next = None;
        let mut records = answers.records(msg);
        while let Some(rec) = records.next_record()? {
            if rec.class != CLASS_IN || rec.rtype != TYPE_CNAME {
                continue;
            }
            if !owner_is(msg, &rec, current.as_slice())? {
                continue;
            }
            let mut target = WireName {
                bytes: [0; MAX_NAME_LEN],
                len: 0,
            };
            let (len, end) = read_name(msg, rec.rdata.start, &mut target.bytes)?;
            if end != rec.rdata.end {
                return Err(ResponseError::BadRdata);
            }
            target.len = len;
            next = Some((target, rec.ttl));
            break;
        }
        let Some((target, link_ttl)) = next else {
            return Ok((current, ttl));
        };
        if links == MAX_CNAME_CHAIN {
            return Err(ResponseError::CnameChainTooLong);
        }
        links += 1;
        ttl = ttl.min(link_ttl);
        current = target;
    }
}

/// The negative TTL from the authority section's SOA records (RFC 2308
/// §5: the smaller of the record's TTL and its MINIMUM field); the
/// smallest if there are several. Validates every record of the section.
fn negative_ttl(msg: &[u8], authority: Section) -> Result<Option<u32>, ResponseError> {
    let mut best: Option<u32> = None;
    let mut records = authority.records(msg);
    while let Some(rec) = records.next_record()? {
        if rec.class != CLASS_IN || rec.rtype != TYPE_SOA {
            continue;
        }
        // MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM.
        let at = skip_name(msg, rec.rdata.start)?;
        let at = skip_name(msg, at)?;
        if at + 20 != rec.rdata.end {
            return Err(ResponseError::BadRdata);
        }
        let minimum = ttl_value(be32(msg, at + 16));
        let ttl = rec.ttl.min(minimum);
        best = Some(best.map_or(ttl, |b| b.min(ttl)));
    }
    Ok(best)
}

#[cfg(test)]
mod tests;
