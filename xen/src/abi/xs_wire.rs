//! `public/io/xs_wire.h`: the xenstore ring page and message header.

/// Bytes in each xenstore ring direction.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Largest payload in either direction.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
/// `server_features` bit: reconnection supported.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features` bit: the `error` field is used.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: connected.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: reconnect in progress.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `error`: no error.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `struct xenstore_domain_interface` (Xen 4.17: 2076 bytes, no `evtchn_port`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct XenstoreDomainInterface {
    /// Requests to xenstored.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Written by the server.
    pub req_cons: u32,
    /// Written by the guest.
    pub req_prod: u32,
    /// Written by the guest.
    pub rsp_cons: u32,
    /// Written by the server.
    pub rsp_prod: u32,
    /// `XENSTORE_SERVER_FEATURE_*`.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`.
    pub error: u32,
}

/// `struct xsd_sockmsg` (16 bytes), followed by `len` payload bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// `XS_*`.
    pub r#type: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0 = none).
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

/// Message types (`enum xsd_sockmsg_type`).
pub mod msg {
    /// `XS_CONTROL` (was `XS_DEBUG`).
    pub const CONTROL: u32 = 0;
    /// `XS_DIRECTORY`.
    pub const DIRECTORY: u32 = 1;
    /// `XS_READ`.
    pub const READ: u32 = 2;
    /// `XS_GET_PERMS`.
    pub const GET_PERMS: u32 = 3;
    /// `XS_WATCH`.
    pub const WATCH: u32 = 4;
    /// `XS_UNWATCH`.
    pub const UNWATCH: u32 = 5;
    /// `XS_TRANSACTION_START`.
    pub const TRANSACTION_START: u32 = 6;
    /// `XS_TRANSACTION_END`.
    pub const TRANSACTION_END: u32 = 7;
    /// `XS_INTRODUCE`.
    pub const INTRODUCE: u32 = 8;
    /// `XS_RELEASE`.
    pub const RELEASE: u32 = 9;
    /// `XS_GET_DOMAIN_PATH`.
    pub const GET_DOMAIN_PATH: u32 = 10;
    /// `XS_WRITE`.
    pub const WRITE: u32 = 11;
    /// `XS_MKDIR`.
    pub const MKDIR: u32 = 12;
    /// `XS_RM`.
    pub const RM: u32 = 13;
    /// `XS_SET_PERMS`.
    pub const SET_PERMS: u32 = 14;
    /// `XS_WATCH_EVENT`.
    pub const WATCH_EVENT: u32 = 15;
    /// `XS_ERROR`.
    pub const ERROR: u32 = 16;
    /// `XS_IS_DOMAIN_INTRODUCED`.
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    /// `XS_RESUME`.
    pub const RESUME: u32 = 18;
    /// `XS_SET_TARGET`.
    pub const SET_TARGET: u32 = 19;
    /// `XS_RESET_WATCHES`.
    pub const RESET_WATCHES: u32 = 21;
    /// `XS_DIRECTORY_PART`.
    pub const DIRECTORY_PART: u32 = 22;
    /// `XS_INVALID`.
    pub const INVALID: u32 = 0xffff;
}
