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

/// `VCHAN_NOTIFY_WRITE`: "send me an event when you write data". A reader
/// waiting for data sets it in the peer's notify byte; the peer, after
/// writing, clears it in its own byte and sends an event if it was set.
pub const VCHAN_NOTIFY_WRITE: u8 = 0x1;
/// `VCHAN_NOTIFY_READ`: "send me an event when you consume data". A writer
/// waiting for space sets it in the peer's notify byte; the peer, after
/// reading, clears it in its own byte and sends an event if it was set.
pub const VCHAN_NOTIFY_READ: u8 = 0x2;

/// `struct vchan_interface` (24-byte header; the `uint32_t grants[]` list
/// of the out-of-page ring pages follows at offset 24: all left-ring pages
/// first, then the right-ring ones).
///
/// Ring placement by order: 10 = in this page at offset 1024, 11 = in this
/// page at offset 2048, 12 and up = `2^(order - 12)` granted pages.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VchanInterface {
    /// The left ring: the client writes it, the server reads it.
    pub left: RingShared,
    /// The right ring: the server writes it, the client reads it.
    pub right: RingShared,
    /// log2 of the left ring's size in bytes (10, 11, or 12 and up).
    pub left_order: u16,
    /// log2 of the right ring's size in bytes (10, 11, or 12 and up).
    pub right_order: u16,
    /// Client state: 0 exited, 1 connected, 2 not yet connected.
    pub cli_live: u8,
    /// Server state: 0 exited, 1 connected.
    pub srv_live: u8,
    /// `VCHAN_NOTIFY_*` requests addressed to the client: set by the
    /// server, cleared by the client when it acts on them.
    pub cli_notify: u8,
    /// `VCHAN_NOTIFY_*` requests addressed to the server: set by the
    /// client, cleared by the server when it acts on them.
    pub srv_notify: u8,
}
