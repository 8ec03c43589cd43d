//! Xenstore requests and their encoding.
//!
//! Every request is validated before a byte of it is queued: a NUL inside a
//! path or token would shift the server's view of the fields, and a payload
//! over 4096 bytes makes xenstored drop the connection for good, so both are
//! refused here with a [`RequestError`].

use alloc::vec::Vec;
use core::fmt::Write;

use super::error::RequestError;
use super::perm::Perm;
use super::wire::Header;
use crate::abi::xs_wire::{msg, XENSTORE_PAYLOAD_MAX};
use crate::abi::DomId;

/// A request id, chosen by the client and echoed in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqId(pub u32);

/// A transaction id; [`TxId::NONE`] (0) outside a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u32);

impl TxId {
    /// No transaction.
    pub const NONE: TxId = TxId(0);
}

/// A request to xenstored. Paths are absolute (`/local/...`) or relative to
/// `/local/domain/<own domid>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `XS_READ`: a node's value.
    Read {
        /// Node.
        path: &'a str,
    },
    /// `XS_WRITE`: set a node's value (creating it and missing parents).
    Write {
        /// Node.
        path: &'a str,
        /// Raw value (any bytes).
        value: &'a [u8],
    },
    /// `XS_MKDIR`: create a node with an empty value.
    Mkdir {
        /// Node.
        path: &'a str,
    },
    /// `XS_RM`: remove a node and its subtree.
    Rm {
        /// Node.
        path: &'a str,
    },
    /// `XS_DIRECTORY`: a node's children (leaf names).
    Directory {
        /// Node.
        path: &'a str,
    },
    /// `XS_GET_PERMS`: a node's permission list.
    GetPerms {
        /// Node.
        path: &'a str,
    },
    /// `XS_SET_PERMS`: replace a node's permission list (owner first).
    SetPerms {
        /// Node.
        path: &'a str,
        /// The new list.
        perms: &'a [Perm],
    },
    /// `XS_WATCH`: watch a subtree; events carry `token`.
    Watch {
        /// Subtree.
        path: &'a str,
        /// Token echoed in events.
        token: &'a str,
    },
    /// `XS_UNWATCH`: remove a watch.
    Unwatch {
        /// Subtree.
        path: &'a str,
        /// Token of the watch.
        token: &'a str,
    },
    /// `XS_TRANSACTION_START` (outside any transaction).
    TransactionStart,
    /// `XS_TRANSACTION_END` of the request's transaction.
    TransactionEnd {
        /// Commit (`T`) or abort (`F`).
        commit: bool,
    },
    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    GetDomainPath {
        /// The domain.
        domid: DomId,
    },
    /// `XS_RESET_WATCHES`: drop all our watches and transactions.
    ResetWatches,
}

impl Request<'_> {
    /// The `XS_*` message type.
    pub fn ty(&self) -> u32 {
        match self {
            Request::Read { .. } => msg::READ,
            Request::Write { .. } => msg::WRITE,
            Request::Mkdir { .. } => msg::MKDIR,
            Request::Rm { .. } => msg::RM,
            Request::Directory { .. } => msg::DIRECTORY,
            Request::GetPerms { .. } => msg::GET_PERMS,
            Request::SetPerms { .. } => msg::SET_PERMS,
            Request::Watch { .. } => msg::WATCH,
            Request::Unwatch { .. } => msg::UNWATCH,
            Request::TransactionStart => msg::TRANSACTION_START,
            Request::TransactionEnd { .. } => msg::TRANSACTION_END,
            Request::GetDomainPath { .. } => msg::GET_DOMAIN_PATH,
            Request::ResetWatches => msg::RESET_WATCHES,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Result<Vec<u8>, RequestError> {
        let mut p = Vec::new();
        match *self {
            Request::Read { path }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path }
            | Request::GetPerms { path } => push_cstr(&mut p, "path", path)?,
            Request::Write { path, value } => {
                push_cstr(&mut p, "path", path)?;
                p.extend_from_slice(value);
            }
            Request::SetPerms { path, perms } => {
                push_cstr(&mut p, "path", path)?;
                for perm in perms {
                    let _ = write!(Bytes(&mut p), "{perm}\0");
                }
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                push_cstr(&mut p, "path", path)?;
                push_cstr(&mut p, "token", token)?;
            }
            Request::TransactionStart | Request::ResetWatches => p.push(0),
            Request::TransactionEnd { commit } => {
                p.extend_from_slice(if commit { b"T\0" } else { b"F\0" })
            }
            Request::GetDomainPath { domid } => {
                let _ = write!(Bytes(&mut p), "{domid}\0");
            }
        }
        if p.len() > XENSTORE_PAYLOAD_MAX {
            return Err(RequestError::TooLarge(p.len()));
        }
        Ok(p)
    }

    /// Append the whole message (header and payload) to `out`. On error
    /// nothing is appended.
    pub fn encode(&self, req_id: ReqId, tx: TxId, out: &mut Vec<u8>) -> Result<(), RequestError> {
        match (self, tx) {
            (Request::TransactionStart, t) if t != TxId::NONE => {
                return Err(RequestError::TxNotAllowed)
            }
            (Request::TransactionEnd { .. }, TxId::NONE) => return Err(RequestError::TxRequired),
            _ => {}
        }
        let p = self.payload()?;
        let h = Header {
            ty: self.ty(),
            req_id: req_id.0,
            tx_id: tx.0,
            len: p.len() as u32,
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(&p);
        Ok(())
    }
}

fn push_cstr(p: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), RequestError> {
    if s.as_bytes().contains(&0) {
        return Err(RequestError::Nul { field });
    }
    p.extend_from_slice(s.as_bytes());
    p.push(0);
    Ok(())
}

/// `core::fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::perm::Access;

    fn enc(r: Request<'_>, tx: u32) -> Result<Vec<u8>, RequestError> {
        let mut v = Vec::new();
        r.encode(ReqId(7), TxId(tx), &mut v).map(|_| v)
    }

    fn payload_of(r: Request<'_>) -> Vec<u8> {
        r.payload().unwrap()
    }

    #[test]
    fn payloads() {
        assert_eq!(payload_of(Request::Read { path: "a/b" }), b"a/b\0");
        assert_eq!(payload_of(Request::Mkdir { path: "a" }), b"a\0");
        assert_eq!(payload_of(Request::Rm { path: "a" }), b"a\0");
        assert_eq!(payload_of(Request::Directory { path: "/" }), b"/\0");
        assert_eq!(payload_of(Request::GetPerms { path: "a" }), b"a\0");
        assert_eq!(
            payload_of(Request::Write {
                path: "a",
                value: b"v\0x"
            }),
            b"a\0v\0x"
        );
        let perms = [Perm::new(5, Access::None), Perm::new(0, Access::Read)];
        assert_eq!(
            payload_of(Request::SetPerms {
                path: "a",
                perms: &perms
            }),
            b"a\0n5\0r0\0"
        );
        assert_eq!(
            payload_of(Request::Watch {
                path: "p",
                token: "t"
            }),
            b"p\0t\0"
        );
        assert_eq!(
            payload_of(Request::Unwatch {
                path: "p",
                token: "t"
            }),
            b"p\0t\0"
        );
        assert_eq!(payload_of(Request::TransactionStart), b"\0");
        assert_eq!(payload_of(Request::TransactionEnd { commit: true }), b"T\0");
        assert_eq!(
            payload_of(Request::TransactionEnd { commit: false }),
            b"F\0"
        );
        assert_eq!(payload_of(Request::GetDomainPath { domid: 12 }), b"12\0");
        assert_eq!(payload_of(Request::ResetWatches), b"\0");
    }

    #[test]
    fn header_is_written() {
        let v = enc(Request::Read { path: "x" }, 3).unwrap();
        let h = Header::parse(&v).unwrap();
        assert_eq!(
            h,
            Header {
                ty: msg::READ,
                req_id: 7,
                tx_id: 3,
                len: 2
            }
        );
        assert_eq!(&v[16..], b"x\0");
    }

    #[test]
    fn refused_requests() {
        assert_eq!(
            enc(Request::Read { path: "a\0b" }, 0),
            Err(RequestError::Nul { field: "path" })
        );
        assert_eq!(
            enc(
                Request::Watch {
                    path: "a",
                    token: "t\0"
                },
                0
            ),
            Err(RequestError::Nul { field: "token" })
        );
        let long = "x".repeat(4096);
        assert_eq!(
            enc(Request::Read { path: &long }, 0),
            Err(RequestError::TooLarge(4097))
        );
        let just = "x".repeat(4095);
        assert!(enc(Request::Read { path: &just }, 0).is_ok());
        assert_eq!(
            enc(
                Request::Write {
                    path: "p",
                    value: &[0; 4095]
                },
                0
            ),
            Err(RequestError::TooLarge(4097))
        );
        assert_eq!(
            enc(Request::TransactionStart, 4),
            Err(RequestError::TxNotAllowed)
        );
        assert_eq!(
            enc(Request::TransactionEnd { commit: true }, 0),
            Err(RequestError::TxRequired)
        );
        // Nothing is appended on error.
        let mut v = vec![1, 2];
        assert!(Request::Read { path: "\0" }
            .encode(ReqId(1), TxId::NONE, &mut v)
            .is_err());
        assert_eq!(v, vec![1, 2]);
    }
}
