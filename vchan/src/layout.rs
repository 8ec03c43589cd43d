//! The control page (`struct vchan_interface`): field offsets, the ring
//! orders a server chooses, and the checks a client applies to the orders
//! it finds.
//!
//! The page starts with a 24-byte header (mirrored as
//! [`xen::abi::vchan::VchanInterface`], whose layout is checked against
//! the C header), followed by the `u32` grant refs of the out-of-page ring
//! pages, all left-ring pages first. A ring of order 10 lives in the page
//! at offset 1024, one of order 11 at offset 2048; orders 12 to 20 use
//! `2^(order - 12)` separately granted pages, addressed as one contiguous
//! buffer.

use core::mem::offset_of;

use xen::abi::vchan::{RingShared, VchanInterface};
use xen::abi::PAGE_SIZE;

use crate::error::{ProtocolError, RingId, VchanError};

/// Smallest ring order (log2 of the ring size in bytes): a 1 KiB ring.
pub const MIN_RING_ORDER: u16 = 10;
/// Largest ring order: a 1 MiB ring (256 pages).
pub const MAX_RING_ORDER: u16 = 20;
/// First order whose ring lives in separate, granted pages (4 KiB).
pub const PAGE_RING_ORDER: u16 = 12;
/// Largest ring a server accepts to create (libxenvchan's `MAX_RING_SIZE`).
pub const MAX_RING_SIZE: usize = 1 << MAX_RING_ORDER;

/// `left.cons` (written by the server).
pub const LEFT_CONS: usize = offset_of!(VchanInterface, left) + offset_of!(RingShared, cons);
/// `left.prod` (written by the client).
pub const LEFT_PROD: usize = offset_of!(VchanInterface, left) + offset_of!(RingShared, prod);
/// `right.cons` (written by the client).
pub const RIGHT_CONS: usize = offset_of!(VchanInterface, right) + offset_of!(RingShared, cons);
/// `right.prod` (written by the server).
pub const RIGHT_PROD: usize = offset_of!(VchanInterface, right) + offset_of!(RingShared, prod);
/// `left_order` (u16).
pub const LEFT_ORDER: usize = offset_of!(VchanInterface, left_order);
/// `right_order` (u16).
pub const RIGHT_ORDER: usize = offset_of!(VchanInterface, right_order);
/// `cli_live` (u8): 0 gone, 1 connected, 2 not yet connected.
pub const CLI_LIVE: usize = offset_of!(VchanInterface, cli_live);
/// `srv_live` (u8): 0 gone, 1 alive.
pub const SRV_LIVE: usize = offset_of!(VchanInterface, srv_live);
/// `cli_notify` (u8): notify requests addressed to the client.
pub const CLI_NOTIFY: usize = offset_of!(VchanInterface, cli_notify);
/// `srv_notify` (u8): notify requests addressed to the server.
pub const SRV_NOTIFY: usize = offset_of!(VchanInterface, srv_notify);
/// The grant list (`u32 grants[]`).
pub const GRANTS: usize = core::mem::size_of::<VchanInterface>();

/// Liveness byte value: the side has exited (or not started, for the
/// server's view of a page it has not yet initialised).
pub const LIVE_GONE: u8 = 0;
/// Liveness byte value: connected.
pub const LIVE_CONNECTED: u8 = 1;
/// `cli_live` value: the client has not connected yet.
pub const LIVE_WAITING: u8 = 2;

/// Offsets of one ring's indices in the control page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOffsets {
    /// Offset of `prod`.
    pub prod: usize,
    /// Offset of `cons`.
    pub cons: usize,
}

impl RingId {
    /// Where this ring's indices are.
    pub fn offsets(self) -> RingOffsets {
        match self {
            RingId::Left => RingOffsets {
                prod: LEFT_PROD,
                cons: LEFT_CONS,
            },
            RingId::Right => RingOffsets {
                prod: RIGHT_PROD,
                cons: RIGHT_CONS,
            },
        }
    }
}

/// Where a ring of a given order lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingLocation {
    /// Inside the control page, at this byte offset (orders 10 and 11).
    InControlPage {
        /// Byte offset of the ring in the control page.
        offset: usize,
    },
    /// In this many separate pages, whose grant refs are listed in the
    /// control page's `grants[]` (orders 12 to 20).
    Pages {
        /// Number of 4 KiB pages (`2^(order - 12)`).
        count: usize,
    },
}

impl RingLocation {
    /// Pages to grant for this ring (0 for an in-page ring).
    pub fn pages(self) -> usize {
        match self {
            RingLocation::InControlPage { .. } => 0,
            RingLocation::Pages { count } => count,
        }
    }
}

/// Where a ring of `order` lives, or `None` if the order is outside
/// [`MIN_RING_ORDER`]..=[`MAX_RING_ORDER`] (libxenvchan's client rejects
/// such a control page).
pub fn ring_location(order: u16) -> Option<RingLocation> {
    match order {
        10 => Some(RingLocation::InControlPage { offset: 1024 }),
        11 => Some(RingLocation::InControlPage { offset: 2048 }),
        PAGE_RING_ORDER..=MAX_RING_ORDER => Some(RingLocation::Pages {
            count: 1 << (order - PAGE_RING_ORDER),
        }),
        _ => None,
    }
}

/// The two ring orders of a vchan, valid by construction: both in
/// 10..=20, not both the same in-page order, and their grant list fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOrders {
    left: u16,
    right: u16,
}

impl RingOrders {
    /// The orders libxenvchan's server picks for a server that reads at
    /// least `read_min` bytes at once (the left ring) and writes at least
    /// `write_min` (the right ring): each the smallest page order
    /// (>= 12) that holds it, except that in-page rings are used when they
    /// suffice (left <= 1 KiB and right <= 2 KiB: 10/11; left <= 2 KiB and
    /// right <= 1 KiB: 11/10; else an order-11 left ring, else an order-11
    /// right ring). Above 1 MiB is [`VchanError::RingTooLarge`].
    pub fn for_server(read_min: usize, write_min: usize) -> Result<RingOrders, VchanError> {
        for requested in [read_min, write_min] {
            if requested > MAX_RING_SIZE {
                return Err(VchanError::RingTooLarge { requested });
            }
        }
        const SMALL: usize = 1 << 10;
        const LARGE: usize = 1 << 11;
        let (mut left, mut right) = (page_order(read_min), page_order(write_min));
        if read_min <= SMALL && write_min <= LARGE {
            (left, right) = (10, 11);
        } else if read_min <= LARGE && write_min <= SMALL {
            (left, right) = (11, 10);
        } else if read_min <= LARGE {
            left = 11;
        } else if write_min <= LARGE {
            right = 11;
        }
        Ok(RingOrders { left, right })
    }

    /// Check orders read from a control page, as a client must: each in
    /// 10..=20, not both the same in-page order, and the grant list within
    /// the space the in-page rings leave.
    pub fn validate(left: u16, right: u16) -> Result<RingOrders, ProtocolError> {
        let (l, r) = match (ring_location(left), ring_location(right)) {
            (Some(l), Some(r)) => (l, r),
            _ => return Err(ProtocolError::BadOrders { left, right }),
        };
        if left == right && left < PAGE_RING_ORDER {
            return Err(ProtocolError::BadOrders { left, right });
        }
        let grants = l.pages() + r.pages();
        let limit = grant_limit(left, right);
        if grants > limit {
            return Err(ProtocolError::GrantListTooLong { grants, limit });
        }
        Ok(RingOrders { left, right })
    }

    /// log2 of the left ring's size.
    pub fn left(self) -> u16 {
        self.left
    }

    /// log2 of the right ring's size.
    pub fn right(self) -> u16 {
        self.right
    }

    /// The order of `ring`.
    pub fn order(self, ring: RingId) -> u16 {
        match ring {
            RingId::Left => self.left,
            RingId::Right => self.right,
        }
    }

    /// Where `ring` lives.
    pub fn location(self, ring: RingId) -> RingLocation {
        match ring_location(self.order(ring)) {
            Some(l) => l,
            // Unreachable: both orders were checked on construction.
            None => RingLocation::Pages { count: 0 },
        }
    }

    /// Index in `grants[]` of the first page of `ring` (left pages first).
    pub fn first_grant(self, ring: RingId) -> usize {
        match ring {
            RingId::Left => 0,
            RingId::Right => self.location(RingId::Left).pages(),
        }
    }

    /// Total grant refs in the control page's list.
    pub fn grant_count(self) -> usize {
        self.location(RingId::Left).pages() + self.location(RingId::Right).pages()
    }
}

/// Smallest order >= 12 whose ring holds `size` bytes (`min_order`).
fn page_order(size: usize) -> u16 {
    let mut order = PAGE_RING_ORDER;
    while size > 1 << order {
        order += 1;
    }
    order
}

/// Grant refs that fit between the header and the first in-page ring (or
/// the end of the page).
fn grant_limit(left: u16, right: u16) -> usize {
    let end = match left.min(right) {
        10 => 1024,
        11 => 2048,
        _ => PAGE_SIZE,
    };
    (end - GRANTS) / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_c_header() {
        assert_eq!(
            (LEFT_CONS, LEFT_PROD, RIGHT_CONS, RIGHT_PROD),
            (0, 4, 8, 12)
        );
        assert_eq!((LEFT_ORDER, RIGHT_ORDER), (16, 18));
        assert_eq!(
            (CLI_LIVE, SRV_LIVE, CLI_NOTIFY, SRV_NOTIFY),
            (20, 21, 22, 23)
        );
        assert_eq!(GRANTS, 24);
    }

    #[test]
    fn in_page_orders() {
        assert_eq!(
            ring_location(10),
            Some(RingLocation::InControlPage { offset: 1024 })
        );
        assert_eq!(
            ring_location(11),
            Some(RingLocation::InControlPage { offset: 2048 })
        );
    }

    #[test]
    fn page_orders_count_pages() {
        assert_eq!(ring_location(12), Some(RingLocation::Pages { count: 1 }));
        assert_eq!(ring_location(16), Some(RingLocation::Pages { count: 16 }));
        assert_eq!(ring_location(20), Some(RingLocation::Pages { count: 256 }));
    }

    #[test]
    fn out_of_range_orders_are_rejected() {
        for order in [0, 9, 21, 32, u16::MAX] {
            assert_eq!(ring_location(order), None, "order {order}");
        }
    }

    fn orders(read_min: usize, write_min: usize) -> (u16, u16) {
        let o = RingOrders::for_server(read_min, write_min).unwrap();
        (o.left(), o.right())
    }

    #[test]
    fn server_orders_follow_libxenvchan() {
        assert_eq!(orders(0, 0), (10, 11));
        assert_eq!(orders(1024, 2048), (10, 11));
        assert_eq!(orders(2048, 1024), (11, 10));
        assert_eq!(orders(2048, 2048), (11, 12));
        assert_eq!(orders(4096, 2048), (12, 11));
        assert_eq!(orders(1025, 4096), (11, 12));
        // QubesDB and qrexec control: 4096/4096.
        assert_eq!(orders(4096, 4096), (12, 12));
        // qrexec data: 65536/65536.
        assert_eq!(orders(65536, 65536), (16, 16));
        assert_eq!(orders(4097, 65537), (13, 17));
        assert_eq!(orders(1 << 20, 1 << 20), (20, 20));
        assert_eq!(orders(100, 1 << 20), (11, 20));
        assert_eq!(
            RingOrders::for_server((1 << 20) + 1, 0),
            Err(VchanError::RingTooLarge {
                requested: (1 << 20) + 1
            })
        );
    }

    #[test]
    fn every_server_choice_passes_client_validation() {
        let sizes = [0, 1, 1024, 1025, 2048, 2049, 4096, 4097, 1 << 16, 1 << 20];
        for &r in &sizes {
            for &w in &sizes {
                let o = RingOrders::for_server(r, w).unwrap();
                assert_eq!(RingOrders::validate(o.left(), o.right()), Ok(o), "{r}/{w}");
                assert!(1usize << o.left() >= r && 1usize << o.right() >= w);
            }
        }
    }

    #[test]
    fn client_validation() {
        assert!(RingOrders::validate(10, 11).is_ok());
        assert!(RingOrders::validate(12, 12).is_ok());
        assert!(RingOrders::validate(20, 20).is_ok());
        for (l, r) in [(10, 10), (11, 11), (9, 12), (12, 21), (0, 0)] {
            assert_eq!(
                RingOrders::validate(l, r),
                Err(ProtocolError::BadOrders { left: l, right: r })
            );
        }
        // An order-10 ring leaves room for 250 refs: 256 do not fit.
        assert_eq!(
            RingOrders::validate(10, 20),
            Err(ProtocolError::GrantListTooLong {
                grants: 256,
                limit: 250
            })
        );
        assert!(RingOrders::validate(10, 19).is_ok());
        assert!(RingOrders::validate(11, 20).is_ok());
    }

    #[test]
    fn grant_positions() {
        let o = RingOrders::validate(13, 12).unwrap();
        assert_eq!(o.first_grant(RingId::Left), 0);
        assert_eq!(o.first_grant(RingId::Right), 2);
        assert_eq!(o.grant_count(), 3);
        let o = RingOrders::validate(10, 14).unwrap();
        assert_eq!(o.first_grant(RingId::Right), 0);
        assert_eq!(o.grant_count(), 4);
    }
}
