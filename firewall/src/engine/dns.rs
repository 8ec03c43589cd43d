//! The DNS codec the `dsthost` resolver needs, and no more: building one
//! A or AAAA query, and reading the answer to it.
//!
//! Responses come from sys-net, which is hostile: every byte is untrusted.
//! The reader therefore
//! - never panics and never allocates: it works on the caller's slice,
//!   copies names into fixed 255-byte buffers and keeps at most
//!   [`MAX_ADDRS`] addresses in an inline [`Answer`];
//! - bounds all work: name compression pointers must point strictly before
//!   the start of the name segment that holds them (so every jump goes
//!   further back and no loop is possible), at most [`MAX_POINTERS`] jumps
//!   per name, names at most [`MAX_NAME_LEN`] bytes decompressed, CNAME
//!   chains at most [`MAX_CNAME_CHAIN`] links, each link looked up with
//!   one pass over the answer section;
//! - believes only what answers the question it asked: the header id, one
//!   question equal (ASCII case-insensitively) to the query, and only
//!   address records whose owner is the query name or the end of a CNAME
//!   chain from it inside the same response. Authority and additional
//!   records are never used for addresses (the authority SOA only gives
//!   the negative TTL).
//!
//! Layout: [`name`] (names: text to wire form, decompression), [`header`]
//! (a checked view of the 12-byte header), [`query`] (the builder),
//! [`response`] (the reader). Wire format: RFC 1035 §4, negative caching
//! RFC 2308, TTL and record set rules RFC 2181.

pub mod header;
pub mod name;
pub mod query;
pub mod response;

#[cfg(test)]
pub(crate) mod testutil;

pub use header::{Header, ShortHeader};
pub use name::{Name, NameError, NameFault, MAX_LABEL_LEN, MAX_NAME_LEN, MAX_POINTERS};
pub use query::{build_query, BufferTooSmall, MAX_QUERY_LEN};
pub use response::{
    parse_response, Answer, Rcode, Response, ResponseError, MAX_ADDRS, MAX_CNAME_CHAIN,
};

/// The UDP port DNS servers answer on.
pub const PORT: u16 = 53;

/// Class IN (the Internet), the only one asked or believed.
pub const CLASS_IN: u16 = 1;
/// Record type CNAME (an alias).
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA (start of authority: gives the negative TTL).
pub const TYPE_SOA: u16 = 6;

/// The record types the resolver asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QType {
    /// An IPv4 address (type 1).
    A,
    /// An IPv6 address (type 28).
    Aaaa,
}

impl QType {
    /// Both types, in the order the resolver asks them.
    pub const ALL: [QType; 2] = [QType::A, QType::Aaaa];

    /// The type's number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Aaaa => 28,
        }
    }

    /// The length of the type's record data: one address.
    pub const fn rdata_len(self) -> usize {
        match self {
            QType::A => 4,
            QType::Aaaa => 16,
        }
    }
}
