//! What travels through a ring: entries that copy themselves in and out of
//! shared memory, protocols pairing a request and a response type, and the
//! netif entry types.

use core::mem::offset_of;

use crate::abi::netif::{
    NetifExtraInfo, NetifExtraInfoGso, NetifRxRequest, NetifRxResponse, NetifTxRequest,
    NetifTxResponse,
};
use crate::abi::ring::const_ring_size;
use crate::abi::PAGE_SIZE;
use crate::memory::SharedMem;

/// A request or response that lives in a ring slot.
///
/// Implementations copy the entry field by field with the volatile
/// accessors of [`SharedMem`], so that every byte of the slot is read (or
/// written) exactly once and the result is a private copy the peer can no
/// longer change.
///
/// Contract: `read` and `write` touch only bytes `off..off + SIZE`, and
/// `SIZE` is the size of the C struct the entry mirrors. Slots start at
/// `64 + k * slot_size`, so a multi-byte field is naturally aligned there
/// only if the slot size is a multiple of its alignment (true of C structs,
/// whose size is a multiple of their alignment); an entry with odd-sized
/// slots must copy its fields with [`SharedMem::read_bytes`] /
/// [`SharedMem::write_bytes`] instead of `read_u32` and friends. Neither may panic
/// for any slot contents (every bit pattern is a valid entry; checking
/// field values is the protocol layer's job).
pub trait RingEntry: Sized {
    /// Bytes the entry occupies in a slot.
    const SIZE: usize;
    /// Copy the entry at `off` out of `mem`.
    fn read(mem: &SharedMem, off: usize) -> Self;
    /// Copy `self` into `mem` at `off`.
    fn write(&self, mem: &SharedMem, off: usize);
}

/// A ring protocol: the request and response types sharing the slots of one
/// ring (`DEFINE_RING_TYPES(name, req, rsp)`).
///
/// The slot size is the larger of the two entry sizes ([`slot_size`]) and
/// the number of slots follows from it ([`ring_size`]).
pub trait RingProtocol {
    /// What the frontend produces.
    type Req: RingEntry;
    /// What the backend produces.
    type Rsp: RingEntry;
}

/// Bytes per slot of protocol `P`: the size of the union of its request
/// and response.
pub const fn slot_size<P: RingProtocol>() -> usize {
    let req = <P::Req as RingEntry>::SIZE;
    let rsp = <P::Rsp as RingEntry>::SIZE;
    if req > rsp {
        req
    } else {
        rsp
    }
}

/// Slots in a one-page ring of protocol `P` (`__CONST_RING_SIZE`): the
/// largest power of two fitting after the 64-byte header. Zero if an entry
/// does not fit at all (rings refuse to build for such a protocol).
pub const fn ring_size<P: RingProtocol>() -> u32 {
    const_ring_size(PAGE_SIZE, slot_size::<P>()) as u32
}

/// The netif transmit ring (frontend → backend packets): requests are
/// [`NetifTxRequest`]s (or a [`NetifExtraInfo`] in the slot after a request
/// flagged `NETTXF_extra_info`), responses [`NetifTxResponse`]s. 12-byte
/// slots, 256 of them.
#[derive(Clone, Copy, Debug)]
pub enum NetifTx {}

impl RingProtocol for NetifTx {
    type Req = NetifTxRequest;
    type Rsp = NetifTxResponse;
}

/// The netif receive ring (backend → frontend packets): requests are
/// [`NetifRxRequest`]s (empty buffers), responses [`NetifRxResponse`]s (or
/// a [`NetifExtraInfo`] after a response flagged `NETRXF_extra_info`).
/// 8-byte slots, 256 of them.
#[derive(Clone, Copy, Debug)]
pub enum NetifRx {}

impl RingProtocol for NetifRx {
    type Req = NetifRxRequest;
    type Rsp = NetifRxResponse;
}

impl RingEntry for NetifTxRequest {
    const SIZE: usize = core::mem::size_of::<NetifTxRequest>();
    fn read(mem: &SharedMem, off: usize) -> Self {
        NetifTxRequest {
            gref: mem.read_u32(off + offset_of!(NetifTxRequest, gref)),
            offset: mem.read_u16(off + offset_of!(NetifTxRequest, offset)),
            flags: mem.read_u16(off + offset_of!(NetifTxRequest, flags)),
            id: mem.read_u16(off + offset_of!(NetifTxRequest, id)),
            size: mem.read_u16(off + offset_of!(NetifTxRequest, size)),
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_u32(off + offset_of!(NetifTxRequest, gref), self.gref);
        mem.write_u16(off + offset_of!(NetifTxRequest, offset), self.offset);
        mem.write_u16(off + offset_of!(NetifTxRequest, flags), self.flags);
        mem.write_u16(off + offset_of!(NetifTxRequest, id), self.id);
        mem.write_u16(off + offset_of!(NetifTxRequest, size), self.size);
    }
}

impl RingEntry for NetifTxResponse {
    const SIZE: usize = core::mem::size_of::<NetifTxResponse>();
    fn read(mem: &SharedMem, off: usize) -> Self {
        NetifTxResponse {
            id: mem.read_u16(off + offset_of!(NetifTxResponse, id)),
            status: mem.read_u16(off + offset_of!(NetifTxResponse, status)) as i16,
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_u16(off + offset_of!(NetifTxResponse, id), self.id);
        mem.write_u16(
            off + offset_of!(NetifTxResponse, status),
            self.status as u16,
        );
    }
}

impl RingEntry for NetifRxRequest {
    const SIZE: usize = core::mem::size_of::<NetifRxRequest>();
    fn read(mem: &SharedMem, off: usize) -> Self {
        NetifRxRequest {
            id: mem.read_u16(off + offset_of!(NetifRxRequest, id)),
            pad: mem.read_u16(off + offset_of!(NetifRxRequest, pad)),
            gref: mem.read_u32(off + offset_of!(NetifRxRequest, gref)),
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_u16(off + offset_of!(NetifRxRequest, id), self.id);
        mem.write_u16(off + offset_of!(NetifRxRequest, pad), self.pad);
        mem.write_u32(off + offset_of!(NetifRxRequest, gref), self.gref);
    }
}

impl RingEntry for NetifRxResponse {
    const SIZE: usize = core::mem::size_of::<NetifRxResponse>();
    fn read(mem: &SharedMem, off: usize) -> Self {
        NetifRxResponse {
            id: mem.read_u16(off + offset_of!(NetifRxResponse, id)),
            offset: mem.read_u16(off + offset_of!(NetifRxResponse, offset)),
            flags: mem.read_u16(off + offset_of!(NetifRxResponse, flags)),
            status: mem.read_u16(off + offset_of!(NetifRxResponse, status)) as i16,
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        mem.write_u16(off + offset_of!(NetifRxResponse, id), self.id);
        mem.write_u16(off + offset_of!(NetifRxResponse, offset), self.offset);
        mem.write_u16(off + offset_of!(NetifRxResponse, flags), self.flags);
        mem.write_u16(
            off + offset_of!(NetifRxResponse, status),
            self.status as u16,
        );
    }
}

/// Copied as its GSO arm, which covers all 8 bytes of the union, so the
/// bytes of the other arms (multicast address, hash) survive a round trip
/// and can be reinterpreted from the copy.
impl RingEntry for NetifExtraInfo {
    const SIZE: usize = core::mem::size_of::<NetifExtraInfo>();
    fn read(mem: &SharedMem, off: usize) -> Self {
        let g = off + offset_of!(NetifExtraInfo, gso);
        NetifExtraInfo {
            r#type: mem.read_u8(off + offset_of!(NetifExtraInfo, r#type)),
            flags: mem.read_u8(off + offset_of!(NetifExtraInfo, flags)),
            gso: NetifExtraInfoGso {
                size: mem.read_u16(g + offset_of!(NetifExtraInfoGso, size)),
                r#type: mem.read_u8(g + offset_of!(NetifExtraInfoGso, r#type)),
                pad: mem.read_u8(g + offset_of!(NetifExtraInfoGso, pad)),
                features: mem.read_u16(g + offset_of!(NetifExtraInfoGso, features)),
            },
        }
    }
    fn write(&self, mem: &SharedMem, off: usize) {
        let g = off + offset_of!(NetifExtraInfo, gso);
        mem.write_u8(off + offset_of!(NetifExtraInfo, r#type), self.r#type);
        mem.write_u8(off + offset_of!(NetifExtraInfo, flags), self.flags);
        mem.write_u16(g + offset_of!(NetifExtraInfoGso, size), self.gso.size);
        mem.write_u8(g + offset_of!(NetifExtraInfoGso, r#type), self.gso.r#type);
        mem.write_u8(g + offset_of!(NetifExtraInfoGso, pad), self.gso.pad);
        mem.write_u16(
            g + offset_of!(NetifExtraInfoGso, features),
            self.gso.features,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::LocalPages;

    fn roundtrip<E: RingEntry + PartialEq + core::fmt::Debug>(e: E) {
        let p = LocalPages::new(1);
        let m = p.mem();
        m.fill(0, 64, 0xAA);
        e.write(&m, 16);
        assert_eq!(E::read(&m, 16), e);
        // Nothing outside `16..16 + SIZE` was touched.
        let mut b = [0u8; 64];
        m.read_bytes(0, &mut b);
        assert!(b[..16].iter().all(|&x| x == 0xAA));
        assert!(b[16 + E::SIZE..].iter().all(|&x| x == 0xAA));
    }

    #[test]
    fn netif_entry_sizes_match_the_c_structs() {
        assert_eq!(NetifTxRequest::SIZE, 12);
        assert_eq!(NetifTxResponse::SIZE, 4);
        assert_eq!(NetifRxRequest::SIZE, 8);
        assert_eq!(NetifRxResponse::SIZE, 8);
        assert_eq!(NetifExtraInfo::SIZE, 8);
    }

    #[test]
    fn netif_rings_have_256_slots() {
        assert_eq!(slot_size::<NetifTx>(), 12);
        assert_eq!(ring_size::<NetifTx>(), 256);
        assert_eq!(slot_size::<NetifRx>(), 8);
        assert_eq!(ring_size::<NetifRx>(), 256);
        // An extra-info entry fits in either ring's slots.
        assert!(NetifExtraInfo::SIZE <= slot_size::<NetifTx>());
        assert!(NetifExtraInfo::SIZE <= slot_size::<NetifRx>());
    }

    #[test]
    fn netif_entries_roundtrip_and_stay_in_their_bytes() {
        roundtrip(NetifTxRequest {
            gref: 0x0102_0304,
            offset: 0x0506,
            flags: 0x0708,
            id: 0x090A,
            size: 0x0B0C,
        });
        roundtrip(NetifTxResponse {
            id: 0xBEEF,
            status: -2,
        });
        roundtrip(NetifRxRequest {
            id: 7,
            pad: 0x1234,
            gref: 0xFFFF_FFFF,
        });
        roundtrip(NetifRxResponse {
            id: 1,
            offset: 2,
            flags: 3,
            status: -1,
        });
        roundtrip(NetifExtraInfo {
            r#type: 1,
            flags: 1,
            gso: NetifExtraInfoGso {
                size: 1448,
                r#type: 2,
                pad: 9,
                features: 0x8001,
            },
        });
    }

    #[test]
    fn netif_tx_request_wire_layout() {
        let p = LocalPages::new(1);
        let m = p.mem();
        NetifTxRequest {
            gref: 0x0403_0201,
            offset: 0x0605,
            flags: 0x0807,
            id: 0x0A09,
            size: 0x0C0B,
        }
        .write(&m, 0);
        let mut b = [0u8; 12];
        m.read_bytes(0, &mut b);
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn extra_info_keeps_every_union_byte() {
        let p = LocalPages::new(1);
        let m = p.mem();
        // A multicast arm: type, flags, 6-byte MAC.
        m.write_bytes(0, &[2, 0, 0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]);
        let e = NetifExtraInfo::read(&m, 0);
        e.write(&m, 100);
        let mut b = [0u8; 8];
        m.read_bytes(100, &mut b);
        assert_eq!(b, [2, 0, 0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]);
    }
}
