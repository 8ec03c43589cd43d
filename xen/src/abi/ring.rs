//! `public/io/ring.h`: the header of a generic shared ring page.
//!
//! `DEFINE_RING_TYPES` produces `struct <name>_sring { req_prod, req_event,
//! rsp_prod, rsp_event, pvt (4 bytes), __pad[44], ring[] }`; entries start at
//! offset 64. The number of entries is the largest power of two that fits.

/// The fixed header of every shared ring page (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SringHeader {
    /// Written by the request producer.
    pub req_prod: u32,
    /// Written by the request consumer: notify when `req_prod` passes it.
    pub req_event: u32,
    /// Written by the response producer.
    pub rsp_prod: u32,
    /// Written by the response consumer: notify when `rsp_prod` passes it.
    pub rsp_event: u32,
    /// Private area (netif: `smartpoll_active`).
    pub pvt: [u8; 4],
    /// Padding up to 64 bytes.
    pub pad: [u8; 44],
}

/// Offset of the first ring entry in the page.
pub const SRING_ENTRIES_OFFSET: usize = 64;

/// `__CONST_RING_SIZE`: entries of `entry_size` bytes fitting in a page of
/// `page_size` bytes after the header, rounded down to a power of two.
pub const fn const_ring_size(page_size: usize, entry_size: usize) -> usize {
    let n = (page_size - SRING_ENTRIES_OFFSET) / entry_size;
    if n == 0 {
        0
    } else {
        1usize << (usize::BITS - 1 - n.leading_zeros())
    }
}
