//! The QubesDB wire format: `struct qdb_hdr` (72 bytes) followed by
//! `data_len` bytes of value, as `include/qubesdb.h` of qubes-core-qubesdb
//! defines it, with the checks dom0's daemon applies to every header that
//! crosses the vchan (`verify_hdr` in `daemon/db-cmds.c`).
//!
//! Header layout: type (1 byte), path (64 bytes, NUL-terminated and
//! NUL-padded), 3 bytes of padding, `data_len` (u32 little-endian).
//!
//! What [`Header::parse`] accepts, and why:
//! - the type is one of the six that may cross the vchan (dom0 drops the
//!   connection on any other);
//! - the path has a NUL within its 64 bytes, so it is at most 63 bytes
//!   long (dom0 forces a NUL at byte 63 and would silently truncate; a
//!   peer that fills all 64 bytes is not talking QubesDB, so we refuse);
//!   bytes after the NUL and the padding are ignored, as dom0 ignores them
//!   (dom0 itself does not zero its padding);
//! - the path uses only `a-z A-Z 0-9 _ - / . : @`;
//! - `data_len` is below [`MAX_DATA`].
//!
//! Whether the data may contain NUL (never, in a value) and whether a
//! message may carry data at all depend on its type and on the session, so
//! [`check_data`] is applied by the protocol layers, which answer some of
//! those errors instead of dropping the connection.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::WireError;

/// Size of `struct qdb_hdr` on the wire: type (1), path (64), padding (3),
/// `data_len` (u32 little-endian).
pub const HDR_SIZE: usize = 72;

/// `QDB_MAX_PATH`: size of the NUL-padded path field, including the NUL,
/// so a path has at most 63 bytes.
pub const MAX_PATH: usize = 64;

/// `QDB_MAX_DATA`: `data_len` must be below this (at most 3071 bytes).
pub const MAX_DATA: usize = 3072;

/// Offset of the path field in the header.
pub const PATH_OFFSET: usize = 1;

/// Offset of the little-endian `data_len` field in the header.
pub const DATA_LEN_OFFSET: usize = 68;

/// `enum qdb_msg`: the first byte of every header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// `QDB_CMD_READ` (local sockets only).
    CmdRead = 0,
    /// `QDB_CMD_WRITE`: set `path` to the data (both directions).
    CmdWrite = 1,
    /// `QDB_CMD_MULTIREAD`: dump every entry under the path prefix.
    CmdMultiread = 2,
    /// `QDB_CMD_LIST` (local sockets only).
    CmdList = 3,
    /// `QDB_CMD_RM`: delete a key, or every key under a prefix ending in `/`.
    CmdRm = 4,
    /// `QDB_CMD_WATCH` (local sockets only).
    CmdWatch = 5,
    /// `QDB_CMD_UNWATCH` (local sockets only).
    CmdUnwatch = 6,
    /// `QDB_RESP_OK`: success, path copied from the command, no data.
    RespOk = 7,
    /// `QDB_RESP_ERROR_NOENT` (dom0 rejects it on vchan).
    RespErrorNoent = 8,
    /// `QDB_RESP_ERROR`: failure, no data.
    RespError = 9,
    /// `QDB_RESP_READ` (local sockets only).
    RespRead = 10,
    /// `QDB_RESP_MULTIREAD`: one entry of a MULTIREAD answer; an empty path
    /// with no data ends the dump.
    RespMultiread = 11,
    /// `QDB_RESP_LIST` (local sockets only).
    RespList = 12,
    /// `QDB_RESP_WATCH` (local sockets only).
    RespWatch = 13,
}

impl MsgType {
    /// The message type for a header's first byte, or `None` if the byte is
    /// not a QubesDB message type at all.
    pub fn from_u8(byte: u8) -> Option<MsgType> {
        Some(match byte {
            0 => MsgType::CmdRead,
            1 => MsgType::CmdWrite,
            2 => MsgType::CmdMultiread,
            3 => MsgType::CmdList,
            4 => MsgType::CmdRm,
            5 => MsgType::CmdWatch,
            6 => MsgType::CmdUnwatch,
            7 => MsgType::RespOk,
            8 => MsgType::RespErrorNoent,
            9 => MsgType::RespError,
            10 => MsgType::RespRead,
            11 => MsgType::RespMultiread,
            12 => MsgType::RespList,
            13 => MsgType::RespWatch,
            _ => return None,
        })
    }

    /// Whether this type may cross the vchan between dom0 and a VM. dom0
    /// drops the connection on any other type, so we neither send nor
    /// accept the others.
    pub fn valid_on_vchan(self) -> bool {
        matches!(
            self,
            MsgType::CmdWrite
                | MsgType::CmdMultiread
                | MsgType::CmdRm
                | MsgType::RespOk
                | MsgType::RespError
                | MsgType::RespMultiread
        )
    }

    /// The C name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            MsgType::CmdRead => "QDB_CMD_READ",
            MsgType::CmdWrite => "QDB_CMD_WRITE",
            MsgType::CmdMultiread => "QDB_CMD_MULTIREAD",
            MsgType::CmdList => "QDB_CMD_LIST",
            MsgType::CmdRm => "QDB_CMD_RM",
            MsgType::CmdWatch => "QDB_CMD_WATCH",
            MsgType::CmdUnwatch => "QDB_CMD_UNWATCH",
            MsgType::RespOk => "QDB_RESP_OK",
            MsgType::RespErrorNoent => "QDB_RESP_ERROR_NOENT",
            MsgType::RespError => "QDB_RESP_ERROR",
            MsgType::RespRead => "QDB_RESP_READ",
            MsgType::RespMultiread => "QDB_RESP_MULTIREAD",
            MsgType::RespList => "QDB_RESP_LIST",
            MsgType::RespWatch => "QDB_RESP_WATCH",
        }
    }
}

impl From<MsgType> for u8 {
    fn from(ty: MsgType) -> u8 {
        ty as u8
    }
}

impl core::fmt::Display for MsgType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `byte` may appear in a path (`verify_path` in db-cmds.c).
pub fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'/' | b'.' | b':' | b'@')
}

/// Check a path as dom0 checks the path field of a header: at most
/// `MAX_PATH - 1` bytes, each from the allowed set. The empty path passes
/// (it is the MULTIREAD "everything" request and the end-of-dump marker).
pub fn check_path(path: &[u8]) -> Result<(), WireError> {
    if path.len() >= MAX_PATH {
        return Err(WireError::PathTooLong { len: path.len() });
    }
    match path.iter().position(|&b| !is_path_byte(b)) {
        Some(at) => Err(WireError::PathByte { at, byte: path[at] }),
        None => Ok(()),
    }
}

/// Check a value: no NUL byte anywhere (`verify_data`), and shorter than
/// [`MAX_DATA`].
pub fn check_data(data: &[u8]) -> Result<(), WireError> {
    if data.len() >= MAX_DATA {
        return Err(WireError::DataTooLong { len: data.len() });
    }
    match data.iter().position(|&b| b == 0) {
        Some(at) => Err(WireError::NulInData { at }),
        None => Ok(()),
    }
}

/// A header that passed every check of [`Header::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    ty: MsgType,
    path: String,
    data_len: usize,
}

impl Header {
    /// Parse and validate one header (see the module doc for the checks).
    pub fn parse(raw: &[u8; HDR_SIZE]) -> Result<Header, WireError> {
        let ty = MsgType::from_u8(raw[0]).ok_or(WireError::UnknownType(raw[0]))?;
        if !ty.valid_on_vchan() {
            return Err(WireError::NotOnVchan(ty));
        }
        let field = &raw[PATH_OFFSET..PATH_OFFSET + MAX_PATH];
        let len = field
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::PathNotTerminated)?;
        let path = &field[..len];
        check_path(path)?;
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&raw[DATA_LEN_OFFSET..HDR_SIZE]);
        let data_len = u32::from_le_bytes(len_bytes);
        // u32 -> usize is lossless on every target this crate supports
        // (32 and 64 bit); compare in u64 to be sure.
        if u64::from(data_len) >= MAX_DATA as u64 {
            return Err(WireError::DataLenTooLarge { len: data_len });
        }
        // Every byte passed `is_path_byte`, so the path is ASCII.
        let path = path.iter().map(|&b| char::from(b)).collect();
        Ok(Header {
            ty,
            path,
            data_len: data_len as usize,
        })
    }

    /// The message type.
    pub fn ty(&self) -> MsgType {
        self.ty
    }

    /// The path (ASCII, at most 63 bytes, possibly empty).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Number of data bytes that follow the header (below [`MAX_DATA`]).
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// Take the path out of the header.
    pub fn into_path(self) -> String {
        self.path
    }
}

/// One complete message: a validated header and its data (not yet checked
/// for NUL bytes: see [`check_data`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: Header,
    /// Exactly `header.data_len()` bytes.
    pub data: Vec<u8>,
}

/// Append one message to `out`, applying on our side every check the peer
/// applies to what it receives: the type may cross the vchan, the path is
/// short and uses allowed bytes, the data has no NUL and is short. On error
/// `out` is unchanged.
pub fn encode(ty: MsgType, path: &str, data: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    if !ty.valid_on_vchan() {
        return Err(WireError::NotOnVchan(ty));
    }
    check_path(path.as_bytes())?;
    check_data(data)?;
    encode_unchecked(u8::from(ty), path.as_bytes(), data.len() as u32, data, out);
    Ok(())
}

/// Append a header with arbitrary fields and then `data`, with no checks at
/// all: for tests and the simulator's fault injection, which must be able
/// to produce every malformed message. `path` is cut to 64 bytes and padded
/// with NULs (a 64-byte path therefore has no terminator).
pub fn encode_unchecked(ty: u8, path: &[u8], data_len: u32, data: &[u8], out: &mut Vec<u8>) {
    let mut hdr = [0u8; HDR_SIZE];
    hdr[0] = ty;
    let n = path.len().min(MAX_PATH);
    hdr[PATH_OFFSET..PATH_OFFSET + n].copy_from_slice(&path[..n]);
    hdr[DATA_LEN_OFFSET..HDR_SIZE].copy_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&hdr);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn raw(ty: u8, path: &[u8], data_len: u32) -> [u8; HDR_SIZE] {
        let mut v = Vec::new();
        encode_unchecked(ty, path, data_len, &[], &mut v);
        let mut a = [0u8; HDR_SIZE];
        a.copy_from_slice(&v);
        a
    }

    #[test]
    fn header_layout_adds_up() {
        assert_eq!(PATH_OFFSET + MAX_PATH + 3, DATA_LEN_OFFSET);
        assert_eq!(DATA_LEN_OFFSET + 4, HDR_SIZE);
    }

    #[test]
    fn every_byte_round_trips_or_is_rejected() {
        for byte in 0..=u8::MAX {
            match MsgType::from_u8(byte) {
                Some(ty) => {
                    assert!(byte <= 13);
                    assert_eq!(u8::from(ty), byte);
                }
                None => assert!(byte > 13),
            }
        }
    }

    #[test]
    fn numbers_match_enum_qdb_msg() {
        assert_eq!(u8::from(MsgType::CmdWrite), 1);
        assert_eq!(u8::from(MsgType::CmdMultiread), 2);
        assert_eq!(u8::from(MsgType::CmdRm), 4);
        assert_eq!(u8::from(MsgType::RespOk), 7);
        assert_eq!(u8::from(MsgType::RespError), 9);
        assert_eq!(u8::from(MsgType::RespMultiread), 11);
    }

    #[test]
    fn exactly_six_types_are_valid_on_vchan() {
        let valid: [u8; 6] = [1, 2, 4, 7, 9, 11];
        for byte in 0..=13u8 {
            let ty = MsgType::from_u8(byte).unwrap();
            assert_eq!(ty.valid_on_vchan(), valid.contains(&byte), "{ty:?}");
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let mut out = Vec::new();
        encode(MsgType::CmdWrite, "/qubes-ip", b"10.137.0.5", &mut out).unwrap();
        assert_eq!(out.len(), HDR_SIZE + 10);
        assert_eq!(out[0], 1);
        assert_eq!(&out[1..10], b"/qubes-ip");
        assert!(out[10..DATA_LEN_OFFSET].iter().all(|&b| b == 0));
        assert_eq!(&out[DATA_LEN_OFFSET..HDR_SIZE], &10u32.to_le_bytes());
        let mut h = [0u8; HDR_SIZE];
        h.copy_from_slice(&out[..HDR_SIZE]);
        let hdr = Header::parse(&h).unwrap();
        assert_eq!(hdr.ty(), MsgType::CmdWrite);
        assert_eq!(hdr.path(), "/qubes-ip");
        assert_eq!(hdr.data_len(), 10);
        assert_eq!(&out[HDR_SIZE..], b"10.137.0.5");
    }

    #[test]
    fn parse_rejects_unknown_and_local_only_types() {
        assert_eq!(
            Header::parse(&raw(14, b"/a", 0)),
            Err(WireError::UnknownType(14))
        );
        assert_eq!(
            Header::parse(&raw(255, b"/a", 0)),
            Err(WireError::UnknownType(255))
        );
        for ty in [0u8, 3, 5, 6, 8, 10, 12, 13] {
            let t = MsgType::from_u8(ty).unwrap();
            assert_eq!(
                Header::parse(&raw(ty, b"/a", 0)),
                Err(WireError::NotOnVchan(t))
            );
        }
    }

    #[test]
    fn parse_rejects_unterminated_path() {
        let path = [b'a'; MAX_PATH];
        assert_eq!(
            Header::parse(&raw(1, &path, 0)),
            Err(WireError::PathNotTerminated)
        );
        // 63 bytes + NUL is the longest legal path.
        let hdr = Header::parse(&raw(1, &path[..63], 0)).unwrap();
        assert_eq!(hdr.path().len(), 63);
    }

    #[test]
    fn parse_rejects_bad_path_bytes() {
        for (bad, at) in [(&b"/a b"[..], 2), (b"/\xff", 1), (b"*", 0), (b"/a\n", 2)] {
            assert_eq!(
                Header::parse(&raw(1, bad, 0)),
                Err(WireError::PathByte { at, byte: bad[at] }),
                "{bad:?}"
            );
        }
        // Every allowed punctuation character passes.
        assert!(Header::parse(&raw(1, b"/aZ09_-/.:@", 0)).is_ok());
    }

    #[test]
    fn parse_ignores_bytes_after_the_nul_and_the_padding() {
        let mut h = raw(1, b"/a", 0);
        h[4] = b'!';
        h[65] = 0xee;
        h[67] = 0x11;
        assert_eq!(Header::parse(&h).unwrap().path(), "/a");
    }

    #[test]
    fn parse_checks_data_len_limit() {
        assert_eq!(
            Header::parse(&raw(1, b"/a", 3071)).unwrap().data_len(),
            3071
        );
        for len in [3072u32, 3073, u32::MAX] {
            assert_eq!(
                Header::parse(&raw(1, b"/a", len)),
                Err(WireError::DataLenTooLarge { len })
            );
        }
    }

    #[test]
    fn encode_refuses_what_the_peer_would_refuse() {
        let mut out = vec![7u8];
        assert_eq!(
            encode(MsgType::CmdRead, "/a", b"", &mut out),
            Err(WireError::NotOnVchan(MsgType::CmdRead))
        );
        assert_eq!(
            encode(MsgType::CmdWrite, "/a", b"x\0y", &mut out),
            Err(WireError::NulInData { at: 1 })
        );
        let long = "/".repeat(64);
        assert_eq!(
            encode(MsgType::CmdWrite, &long, b"", &mut out),
            Err(WireError::PathTooLong { len: 64 })
        );
        assert_eq!(
            encode(MsgType::CmdWrite, "/a", &[b'x'; MAX_DATA], &mut out),
            Err(WireError::DataTooLong { len: MAX_DATA })
        );
        assert_eq!(
            encode(MsgType::CmdWrite, "/a b", b"", &mut out),
            Err(WireError::PathByte { at: 2, byte: b' ' })
        );
        assert_eq!(out, [7]);
    }

    #[test]
    fn check_data_finds_the_first_nul() {
        assert_eq!(check_data(b""), Ok(()));
        assert_eq!(check_data(b"abc"), Ok(()));
        assert_eq!(check_data(b"ab\0c\0"), Err(WireError::NulInData { at: 2 }));
    }
}
