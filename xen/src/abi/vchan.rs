//! `public/io/libxenvchan.h`: the vchan shared control page.

/// `struct ring_shared` (8 bytes): producer and consumer byte counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingShared {
    /// Consumer counter.
    pub cons: u32,
    /// Producer counter.
    pub prod: u32,
}

/// `VCHAN_NOTIFY_WRITE`: notify the writer when data is read.
pub const VCHAN_NOTIFY_WRITE: u8 = 0x1;
/// `VCHAN_NOTIFY_READ`: notify the reader when data is written.
pub const VCHAN_NOTIFY_READ: u8 = 0x2;

/// `struct vchan_interface` (24-byte header; grant refs follow).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VchanInterface {
    /// Ring from the server to the client... (left: `left` ring).
    pub left: RingShared,
    /// The `right` ring.
    pub right: RingShared,
    /// Ring order of the left ring (10, 11, or >= 12).
    pub left_order: u16,
    /// Ring order of the right ring.
    pub right_order: u16,
    /// Client liveness: 0 closed, 1 live, 2 not yet connected.
    pub cli_live: u8,
    /// Server liveness.
    pub srv_live: u8,
    /// Notify bits the client wants.
    pub cli_notify: u8,
    /// Notify bits the server wants.
    pub srv_notify: u8,
}
