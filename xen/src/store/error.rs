//! Errors of the xenstore client.
//!
//! [`StoreError`] is what every client operation returns. Server-side
//! protocol violations are [`ProtocolError`]s, wrapped either as
//! [`StoreError::Protocol`] (this reply was bad, the connection is fine) or
//! [`StoreError::Broken`] (the connection can no longer be used; see the
//! module doc of [`crate::store`] for which is which).

use alloc::string::String;
use core::fmt;

use super::wire::{WireError, XsError};
use crate::abi::Errno;

/// Which ring of the xenstore page an index violation was seen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSide {
    /// The request ring (guest produces, server consumes).
    Req,
    /// The response ring (server produces, guest consumes).
    Rsp,
}

/// A violation of the xenstore protocol by the server, or a corrupted ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A message header that breaks the wire format (payload over 4096
    /// bytes, unknown message type). Breaks the connection.
    Header(WireError),
    /// A reply whose `req_id` names no outstanding request. Breaks the
    /// connection.
    UnknownReqId {
        /// The `req_id` in the header.
        req_id: u32,
        /// The message type in the header.
        ty: u32,
    },
    /// A reply whose type is neither the request's nor `XS_ERROR`. Breaks
    /// the connection.
    TypeMismatch {
        /// The `req_id` in the header.
        req_id: u32,
        /// The type of the request.
        expected: u32,
        /// The type of the reply.
        got: u32,
    },
    /// An `XS_ERROR` reply naming no known error (the name without its
    /// NUL, lossily decoded and truncated to 32 characters). Fails the
    /// request only.
    UnknownErrorName(String),
    /// A payload field that must be NUL-terminated is not. Fails the request
    /// only; in a watch event, breaks the connection.
    MissingNul {
        /// The message type.
        ty: u32,
    },
    /// A path, token or node name that is not UTF-8. Fails the request
    /// only; in a watch event, breaks the connection.
    NotUtf8 {
        /// The message type.
        ty: u32,
    },
    /// A payload of the wrong shape for its type. Fails the request only;
    /// in a watch event, breaks the connection.
    BadPayload {
        /// The message type.
        ty: u32,
        /// What was wrong.
        what: &'static str,
    },
    /// A ring index pair out of range: more than 1024 bytes between the
    /// producer and the consumer, or the consumer ahead of the producer.
    /// Breaks the connection.
    RingIndex {
        /// Which ring.
        ring: RingSide,
        /// The producer index.
        prod: u32,
        /// The consumer index.
        cons: u32,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Header(e) => write!(f, "bad xenstore header: {e}"),
            ProtocolError::UnknownReqId { req_id, ty } => {
                write!(f, "xenstore reply (type {ty}) for unknown req_id {req_id}")
            }
            ProtocolError::TypeMismatch {
                req_id,
                expected,
                got,
            } => write!(
                f,
                "xenstore reply to req_id {req_id} has type {got}, request had type {expected}"
            ),
            ProtocolError::UnknownErrorName(n) => write!(f, "unknown xenstore error {n:?}"),
            ProtocolError::MissingNul { ty } => {
                write!(f, "xenstore message (type {ty}): field not NUL-terminated")
            }
            ProtocolError::NotUtf8 { ty } => {
                write!(f, "xenstore message (type {ty}): name is not UTF-8")
            }
            ProtocolError::BadPayload { ty, what } => {
                write!(f, "xenstore message (type {ty}): {what}")
            }
            ProtocolError::RingIndex { ring, prod, cons } => write!(
                f,
                "xenstore {} ring indices out of range (prod {prod}, cons {cons})",
                match ring {
                    RingSide::Req => "request",
                    RingSide::Rsp => "response",
                }
            ),
        }
    }
}

/// A request the client refuses to send (a caller bug, detected before
/// anything reaches the ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// A path or token contains a NUL byte, which would shift the fields.
    Nul {
        /// Which field.
        field: &'static str,
    },
    /// The payload would exceed 4096 bytes (xenstored would kill the
    /// connection).
    TooLarge(usize),
    /// `TRANSACTION_START` inside a transaction.
    TxNotAllowed,
    /// `TRANSACTION_END` without a transaction id.
    TxRequired,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Nul { field } => write!(f, "xenstore {field} contains a NUL byte"),
            RequestError::TooLarge(n) => {
                write!(f, "xenstore request payload of {n} bytes exceeds 4096")
            }
            RequestError::TxNotAllowed => f.write_str("xenstore transactions do not nest"),
            RequestError::TxRequired => {
                f.write_str("xenstore transaction end without a transaction")
            }
        }
    }
}

/// The error of a xenstore operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// xenstored answered with `XS_ERROR` (`ENOENT`, `EACCES`, ...).
    Xs(XsError),
    /// This reply was malformed; the connection is still usable.
    Protocol(ProtocolError),
    /// The connection is broken by this protocol error; every later
    /// operation fails with it too.
    Broken(ProtocolError),
    /// The request was refused before being sent.
    Request(RequestError),
    /// A hypercall (event channel send or wait) failed.
    Hypercall(Errno),
    /// No reply before the deadline. The request stays on the wire; its
    /// late reply is discarded.
    Timeout,
    /// A value read from the store does not parse as what it should be.
    BadValue {
        /// What the value should have been.
        what: &'static str,
        /// The value, lossily decoded and truncated to 32 characters.
        raw: String,
    },
    /// A transaction still conflicted (`EAGAIN` at commit) after this many
    /// attempts.
    TransactionConflict {
        /// Attempts made.
        attempts: u32,
    },
}

impl StoreError {
    /// Whether the connection is unusable after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Broken(_))
    }

    /// The `BadValue` error for `raw` bytes that should have been `what`.
    pub fn bad_value(what: &'static str, raw: &[u8]) -> StoreError {
        StoreError::BadValue {
            what,
            raw: lossy_prefix(raw, 32),
        }
    }
}

impl From<XsError> for StoreError {
    fn from(e: XsError) -> Self {
        StoreError::Xs(e)
    }
}

impl From<RequestError> for StoreError {
    fn from(e: RequestError) -> Self {
        StoreError::Request(e)
    }
}

impl From<Errno> for StoreError {
    fn from(e: Errno) -> Self {
        StoreError::Hypercall(e)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Xs(e) => write!(f, "xenstore error {e}"),
            StoreError::Protocol(e) => write!(f, "{e}"),
            StoreError::Broken(e) => write!(f, "xenstore connection broken: {e}"),
            StoreError::Request(e) => write!(f, "{e}"),
            StoreError::Hypercall(e) => write!(f, "xenstore hypercall failed: {e}"),
            StoreError::Timeout => f.write_str("xenstore request timed out"),
            StoreError::BadValue { what, raw } => write!(f, "xenstore value {raw:?} is not {what}"),
            StoreError::TransactionConflict { attempts } => {
                write!(f, "xenstore transaction conflicted {attempts} times")
            }
        }
    }
}

/// Up to `max` characters of `b`, invalid UTF-8 replaced: for error
/// messages that quote peer data without holding on to all of it.
pub(crate) fn lossy_prefix(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(b).chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_names_the_problem() {
        let e = StoreError::Broken(ProtocolError::UnknownReqId { req_id: 9, ty: 2 });
        assert!(e.is_fatal());
        assert_eq!(
            e.to_string(),
            "xenstore connection broken: xenstore reply (type 2) for unknown req_id 9"
        );
        assert!(!StoreError::Xs(XsError::Enoent).is_fatal());
        assert_eq!(
            StoreError::Xs(XsError::Enoent).to_string(),
            "xenstore error ENOENT"
        );
        assert_eq!(
            StoreError::bad_value("a domid", b"x\xffy").to_string(),
            "xenstore value \"x\u{fffd}y\" is not a domid"
        );
        assert_eq!(lossy_prefix(b"abcdef", 3), "abc");
    }
}
