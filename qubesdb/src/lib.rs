//! QubesDB client: talks the QubesDB wire protocol to dom0's
//! `qubesdb-daemon` over a vchan (this VM is the client, port 111), keeps a
//! local copy of the database and turns it into typed snapshots (network
//! configuration, per-client firewall rules) for the firewall.
//!
//! dom0 is trusted, but every message is still validated as dom0 validates
//! ours (`verify_hdr` in qubes-core-qubesdb), so a desynchronised stream is
//! an error, not a panic.
//!
//! Status: placeholder for the QubesDB milestone. So far it holds the wire
//! constants of `struct qdb_hdr` and its message types ([`MsgType`]).
#![no_std]
#![deny(unsafe_code)]

/// The vchan port QubesDB uses: dom0 serves it, the VM connects to dom0.
pub const VCHAN_PORT: u32 = 111;

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
}

impl From<MsgType> for u8 {
    fn from(ty: MsgType) -> u8 {
        ty as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
