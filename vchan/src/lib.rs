//! vchan: libxenvchan-compatible byte streams between two domains (server
//! and client) over one shared control page, two byte rings, one event
//! channel and two XenStore keys, built on the `xen` crate.
//!
//! It must interoperate with Debian's libxenvchan (C): QubesDB and qrexec
//! peers in dom0 use it. Every index the peer can write is read once,
//! checked against the ring size, and only then used.
//!
//! Status: placeholder for the vchan milestone. So far it holds the ring
//! order rules ([`ring_location`]) and the XenStore rendezvous path
//! ([`RendezvousPath`]).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use xen::abi::DomId;

/// Smallest ring order (log2 of the ring size in bytes): a 1 KiB ring.
pub const MIN_RING_ORDER: u16 = 10;
/// Largest ring order a client accepts: a 1 MiB ring.
pub const MAX_RING_ORDER: u16 = 20;
/// First order whose ring lives in separate, granted pages (4 KiB).
pub const PAGE_RING_ORDER: u16 = 12;

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

/// The XenStore directory where a vchan server publishes `ring-ref` and
/// `event-channel` for one client and port (the Qubes vchan wrapper's
/// convention: `/local/domain/<server>/data/vchan/<client>/<port>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RendezvousPath {
    /// The domain that serves the vchan and owns the directory.
    pub server: DomId,
    /// The domain allowed to connect.
    pub client: DomId,
    /// The vchan port (e.g. 111 for QubesDB).
    pub port: u32,
}

impl RendezvousPath {
    /// Key holding the grant ref of the control page (decimal).
    pub const RING_REF: &'static str = "ring-ref";
    /// Key holding the server's unbound event channel port (decimal).
    pub const EVENT_CHANNEL: &'static str = "event-channel";

    /// The directory relative to the server's home, as the server writes
    /// it: `data/vchan/<client>/<port>`.
    pub fn relative(&self) -> String {
        format!("data/vchan/{}/{}", self.client, self.port)
    }

    /// The absolute directory, as the client reads it:
    /// `/local/domain/<server>/data/vchan/<client>/<port>`.
    pub fn absolute(&self) -> String {
        format!("/local/domain/{}/{}", self.server, self.relative())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn qubesdb_rendezvous_path() {
        let path = RendezvousPath {
            server: 0,
            client: 23,
            port: 111,
        };
        assert_eq!(path.relative(), "data/vchan/23/111");
        assert_eq!(path.absolute(), "/local/domain/0/data/vchan/23/111");
    }
}
