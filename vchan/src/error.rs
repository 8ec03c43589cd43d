//! Errors of the vchan crate.
//!
//! [`VchanError`] is what every operation returns. What the peer did wrong
//! is a [`ProtocolError`] naming the offending values; an index violation
//! *breaks* the connection: the endpoint remembers it and every later
//! read or write returns the same error (nothing is copied once an index
//! has been found out of range, so a hostile peer never causes an
//! out-of-bounds access, only a dead connection).

use alloc::string::String;
use core::fmt;

use xen::abi::Errno;
use xen::gnttab::GrantError;
use xen::store::StoreError;

/// One of the two byte rings of a vchan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingId {
    /// The left ring: the client writes it, the server reads it.
    Left,
    /// The right ring: the server writes it, the client reads it.
    Right,
}

impl RingId {
    /// `"left"` or `"right"`.
    pub fn name(self) -> &'static str {
        match self {
            RingId::Left => "left",
            RingId::Right => "right",
        }
    }
}

/// Which free-running index of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// `prod`: bytes produced so far (written by the ring's writer).
    Prod,
    /// `cons`: bytes consumed so far (written by the ring's reader).
    Cons,
}

impl IndexKind {
    /// `"prod"` or `"cons"`.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Prod => "prod",
            IndexKind::Cons => "cons",
        }
    }
}

/// A violation of the vchan protocol by the peer (or a corrupted control
/// page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// An index written by the peer lies outside the window the protocol
    /// allows (wrapping `u32` arithmetic): a `prod` must lie in
    /// `[last prod seen, our cons + size]`, a `cons` in
    /// `[last cons seen, our prod]`. Covers "more bytes than the ring
    /// holds", "consumer ahead of producer" and "index moved backwards".
    /// Breaks the connection.
    RingIndex {
        /// Which ring.
        ring: RingId,
        /// Which index (always the peer's).
        index: IndexKind,
        /// The value read (once).
        value: u32,
        /// Lowest allowed value.
        min: u32,
        /// Highest allowed value (wrapping: `min + (max - min)`).
        max: u32,
    },
    /// Ring orders a client must refuse: outside 10..=20, or both the same
    /// in-page order (they would overlap).
    BadOrders {
        /// `left_order` as read.
        left: u16,
        /// `right_order` as read.
        right: u16,
    },
    /// The grant list of the orders would run into an in-page ring or past
    /// the end of the control page.
    GrantListTooLong {
        /// Grant refs the orders need.
        grants: usize,
        /// Most refs that fit.
        limit: usize,
    },
    /// A xenstore key that should hold a positive decimal number does not.
    BadKey {
        /// The key (`ring-ref` or `event-channel`).
        key: &'static str,
        /// The value, lossily decoded and truncated to 32 characters.
        raw: String,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::RingIndex {
                ring,
                index,
                value,
                min,
                max,
            } => write!(
                f,
                "vchan {} ring {} {value:#x} outside the allowed window [{min:#x}, {max:#x}]",
                ring.name(),
                index.name()
            ),
            ProtocolError::BadOrders { left, right } => write!(
                f,
                "vchan ring orders left {left} right {right} are invalid \
                 (each must be 10..=20, not both the same order below 12)"
            ),
            ProtocolError::GrantListTooLong { grants, limit } => write!(
                f,
                "vchan control page lists {grants} grant refs but only {limit} fit"
            ),
            ProtocolError::BadKey { key, raw } => {
                write!(
                    f,
                    "vchan xenstore key {key} = {raw:?} is not a positive number"
                )
            }
        }
    }
}

/// The error of a vchan operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VchanError {
    /// An event channel or memory hypercall failed with this errno.
    Hypercall(Errno),
    /// Granting, mapping or revoking a page failed.
    Grant(GrantError),
    /// A xenstore operation failed.
    Store(StoreError),
    /// The deadline passed first.
    Timeout,
    /// The peer broke the protocol (see [`ProtocolError`]).
    Protocol(ProtocolError),
    /// The peer closed the vchan (its liveness byte is 0, or its end of the
    /// event channel is gone) and no data is left to read.
    PeerClosed,
    /// A requested ring size is above 1 MiB (libxenvchan's limit).
    RingTooLarge {
        /// The size asked for, in bytes.
        requested: usize,
    },
    /// No free pages for the control page or a ring.
    NoMemory,
    /// The peer still had pages mapped when the deadline of a server close
    /// passed: this many grants stay active and their pages stay out of
    /// circulation (leaked rather than reused while the peer can write
    /// them).
    GrantsInUse {
        /// Grants left active.
        grants: usize,
    },
}

impl From<Errno> for VchanError {
    fn from(e: Errno) -> Self {
        VchanError::Hypercall(e)
    }
}

impl From<GrantError> for VchanError {
    fn from(e: GrantError) -> Self {
        VchanError::Grant(e)
    }
}

impl From<StoreError> for VchanError {
    fn from(e: StoreError) -> Self {
        VchanError::Store(e)
    }
}

impl From<ProtocolError> for VchanError {
    fn from(e: ProtocolError) -> Self {
        VchanError::Protocol(e)
    }
}

impl fmt::Display for VchanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VchanError::Hypercall(e) => write!(f, "vchan hypercall failed: {e}"),
            VchanError::Grant(e) => write!(f, "vchan: {e}"),
            VchanError::Store(e) => write!(f, "vchan: {e}"),
            VchanError::Timeout => f.write_str("vchan: deadline passed"),
            VchanError::Protocol(e) => write!(f, "{e}"),
            VchanError::PeerClosed => f.write_str("vchan peer closed the connection"),
            VchanError::RingTooLarge { requested } => {
                write!(
                    f,
                    "vchan ring of {requested} bytes requested, at most 1 MiB"
                )
            }
            VchanError::NoMemory => f.write_str("vchan: out of pages"),
            VchanError::GrantsInUse { grants } => write!(
                f,
                "vchan peer still maps the pages of {grants} grants; they stay out of circulation"
            ),
        }
    }
}

/// Up to `max` characters of `b`, invalid UTF-8 replaced.
pub(crate) fn lossy_prefix(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(b).chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_names_the_values() {
        let e = ProtocolError::RingIndex {
            ring: RingId::Left,
            index: IndexKind::Prod,
            value: 0x5000,
            min: 0x100,
            max: 0x500,
        };
        assert_eq!(
            e.to_string(),
            "vchan left ring prod 0x5000 outside the allowed window [0x100, 0x500]"
        );
        let e = VchanError::Protocol(ProtocolError::BadOrders { left: 9, right: 21 });
        assert!(e.to_string().contains("left 9 right 21"));
        let e = ProtocolError::BadKey {
            key: "ring-ref",
            raw: lossy_prefix(b"12x\xff", 32),
        };
        assert!(e.to_string().contains("ring-ref"), "{e}");
        assert_eq!(
            VchanError::GrantsInUse { grants: 3 }.to_string(),
            "vchan peer still maps the pages of 3 grants; they stay out of circulation"
        );
        assert_eq!(
            VchanError::from(Errno::EINVAL).to_string(),
            "vchan hypercall failed: EINVAL"
        );
    }

    #[test]
    fn lossy_prefix_truncates() {
        assert_eq!(lossy_prefix(b"abcdef", 3), "abc");
        assert_eq!(lossy_prefix(b"a\xffb", 8), "a\u{fffd}b");
    }
}
