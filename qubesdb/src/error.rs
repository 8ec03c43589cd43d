//! Errors of the QubesDB protocol.
//!
//! [`WireError`] is a message that breaks the wire format (framing, type,
//! path, length, NUL in a value); [`QdbError`] is everything a session can
//! refuse, including wire errors. Whether an error ends the connection
//! depends on where it is seen, as in qubes-core-qubesdb: the client and
//! the daemon model document which errors they answer with `RESP_ERROR`
//! and carry on, and which break the connection.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use crate::wire::{MsgType, MAX_DATA, MAX_PATH};

/// A message that breaks the QubesDB wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The type byte is not in `enum qdb_msg`.
    UnknownType(u8),
    /// A type that exists but is only valid on local sockets (READ, LIST,
    /// WATCH, UNWATCH, RESP_ERROR_NOENT, RESP_READ, RESP_LIST, RESP_WATCH).
    NotOnVchan(MsgType),
    /// No NUL in the 64-byte path field.
    PathNotTerminated,
    /// A path of this many bytes (we refuse to send one of 64 or more).
    PathTooLong {
        /// Its length.
        len: usize,
    },
    /// A path byte outside `a-z A-Z 0-9 _ - / . : @`.
    PathByte {
        /// Offset in the path.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// A header announcing `data_len >= 3072`.
    DataLenTooLarge {
        /// The announced length.
        len: u32,
    },
    /// A value of this many bytes (we refuse to send one of 3072 or more).
    DataTooLong {
        /// Its length.
        len: usize,
    },
    /// A NUL byte in a value.
    NulInData {
        /// Offset of the first NUL.
        at: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::UnknownType(t) => write!(f, "unknown message type {t}"),
            WireError::NotOnVchan(t) => write!(f, "message type {t} is not allowed on vchan"),
            WireError::PathNotTerminated => {
                write!(f, "path field has no NUL in its {MAX_PATH} bytes")
            }
            WireError::PathTooLong { len } => {
                write!(f, "path of {len} bytes (at most {} allowed)", MAX_PATH - 1)
            }
            WireError::PathByte { at, byte } => {
                write!(f, "forbidden byte {byte:#04x} at offset {at} of the path")
            }
            WireError::DataLenTooLarge { len } => {
                write!(f, "data_len {len} (must be below {MAX_DATA})")
            }
            WireError::DataTooLong { len } => {
                write!(f, "value of {len} bytes (must be below {MAX_DATA})")
            }
            WireError::NulInData { at } => write!(f, "NUL byte at offset {at} of the value"),
        }
    }
}

impl core::error::Error for WireError {}

/// Everything a QubesDB session can refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QdbError {
    /// A message that breaks the wire format. Always breaks the
    /// connection: the byte stream cannot be re-framed.
    Wire(WireError),
    /// A value containing a NUL byte.
    NulInValue {
        /// The message type.
        ty: MsgType,
        /// The key.
        path: String,
        /// Offset of the first NUL.
        at: usize,
    },
    /// Data on a message that must have none (RM, MULTIREAD, RESP_OK,
    /// RESP_ERROR, the end-of-dump marker).
    UnexpectedData {
        /// The message type.
        ty: MsgType,
        /// The path.
        path: String,
        /// How many data bytes it carried.
        len: usize,
    },
    /// A path that cannot name a key for this message: a key starts with
    /// `/` and does not end with `/` (an RM prefix may end with `/`).
    BadKey {
        /// The message type.
        ty: MsgType,
        /// The path.
        path: String,
    },
    /// A message that is well formed but not allowed at this point of the
    /// session (e.g. a WRITE before the dump ended, a second MULTIREAD).
    Unexpected {
        /// The message type.
        ty: MsgType,
        /// The path.
        path: String,
        /// Where in the session it came.
        during: &'static str,
    },
    /// The peer removed a key that does not exist (dom0 treats this as a
    /// de-synchronised database and drops the connection).
    NoEntry {
        /// The path.
        path: String,
    },
    /// Storing this write would exceed the replica's size bound.
    DatabaseFull {
        /// The key.
        path: String,
    },
    /// A local request that needs a synchronised session (e.g. writing
    /// before the initial dump completed).
    NotSynced,
    /// Too many watches.
    TooManyWatches,
    /// The connection broke earlier because of this error; reconnect.
    Broken(Box<QdbError>),
}

impl QdbError {
    /// The original error behind a [`QdbError::Broken`], or `self`.
    pub fn root(&self) -> &QdbError {
        match self {
            QdbError::Broken(inner) => inner.root(),
            other => other,
        }
    }
}

impl From<WireError> for QdbError {
    fn from(e: WireError) -> QdbError {
        QdbError::Wire(e)
    }
}

impl fmt::Display for QdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QdbError::Wire(e) => write!(f, "malformed QubesDB message: {e}"),
            QdbError::NulInValue { ty, path, at } => {
                write!(f, "{ty} {path:?}: NUL byte at offset {at} of the value")
            }
            QdbError::UnexpectedData { ty, path, len } => {
                write!(f, "{ty} {path:?}: carries {len} data bytes, expected none")
            }
            QdbError::BadKey { ty, path } => write!(f, "{ty}: {path:?} is not a valid key"),
            QdbError::Unexpected { ty, path, during } => {
                write!(f, "unexpected {ty} {path:?} {during}")
            }
            QdbError::NoEntry { path } => write!(f, "no entry {path:?} to remove"),
            QdbError::DatabaseFull { path } => {
                write!(f, "database size limit reached writing {path:?}")
            }
            QdbError::NotSynced => write!(f, "QubesDB is not synchronised yet"),
            QdbError::TooManyWatches => write!(f, "too many QubesDB watches"),
            QdbError::Broken(e) => write!(f, "QubesDB connection broken: {e}"),
        }
    }
}

impl core::error::Error for QdbError {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_names_what_was_wrong() {
        let e = QdbError::NulInValue {
            ty: MsgType::CmdWrite,
            path: "/qubes-ip".into(),
            at: 3,
        };
        let s = e.to_string();
        assert!(s.contains("QDB_CMD_WRITE") && s.contains("/qubes-ip") && s.contains('3'));
        let w = QdbError::from(WireError::PathByte { at: 2, byte: b' ' }).to_string();
        assert!(w.contains("0x20") && w.contains("offset 2"), "{w}");
        let b = QdbError::Broken(Box::new(QdbError::NotSynced));
        assert_eq!(b.root(), &QdbError::NotSynced);
        assert!(b.to_string().contains("not synchronised"));
    }
}
