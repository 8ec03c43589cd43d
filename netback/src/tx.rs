//! The client's transmit ring (client → us): parsing one packet's chain of
//! request slots. Pure: no hypercalls, no pool, no allocation. It reads
//! slot copies from a [`TxSlots`] source (the [`BackRing`] in the driver,
//! anything in tests and the fuzzer) and returns a [`TxPacket`] or the
//! [`TxError`] that makes the client hostile.
//!
//! A packet is (netif.h, Linux netback `xenvif_tx_build_gops`):
//!
//! ```text
//! request 0   gref offset flags id size = TOTAL bytes
//! [extra]*    only if request 0 has NETTXF_extra_info; more while FLAG_MORE
//! request k   gref offset flags id size = this slot's bytes
//! ```
//!
//! The chain goes on while a data slot has `NETTXF_more_data`. Slot 0
//! holds `total - Σ later sizes` bytes. Every rule Linux netback enforces
//! is enforced here, and every violation is fatal for the vif (the brief
//! for this driver: a client is either correct or disconnected).

use xen::abi::netif::*;
use xen::abi::PAGE_SIZE;
use xen::frame::{Checksum, Gso, GsoType, MAX_SEGMENTS};
use xen::ring::{BackRing, NetifTx};

/// Most extra-info slots one packet may carry: one of each known type.
pub const MAX_EXTRAS: usize = (XEN_NETIF_EXTRA_TYPE_MAX - 1) as usize;

/// Where the parser gets slot copies from. Each call consumes one slot;
/// `None` means no more published slots.
pub trait TxSlots {
    /// The next slot read as a request.
    fn next_request(&mut self) -> Option<NetifTxRequest>;
    /// The next slot read as an extra-info entry.
    fn next_extra(&mut self) -> Option<NetifExtraInfo>;
}

impl TxSlots for BackRing<NetifTx> {
    fn next_request(&mut self) -> Option<NetifTxRequest> {
        BackRing::next_request(self)
    }
    fn next_extra(&mut self) -> Option<NetifExtraInfo> {
        self.next_request_as::<NetifExtraInfo>()
    }
}

/// GSO types the backend advertised (a GSO extra of another type is a
/// protocol violation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffered {
    /// `feature-gso-tcpv4` was written as 1.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6` was written as 1.
    pub gso_tcpv6: bool,
}

/// One data slot of a packet, validated: `offset + len <= 4096`, `len > 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxSlot {
    /// The client's grant of the page holding the bytes.
    pub gref: u32,
    /// Where they start in that page.
    pub offset: u16,
    /// How many (for slot 0: the total minus the later slots).
    pub len: u16,
    /// The request id to echo in this slot's response.
    pub id: u16,
}

/// What a packet is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxKind {
    /// An Ethernet frame to hand on.
    Frame,
    /// A multicast-control request (`MCAST_ADD`/`MCAST_DEL` extra): a dummy
    /// whose slots are answered and whose data is ignored (we do not offer
    /// multicast control, so there is nothing to do with it).
    Control,
}

/// One parsed packet: the slots it consumed, in ring order, are slot 0,
/// then `extras` extra-info slots, then `data()[1..]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPacket {
    slots: [TxSlot; MAX_SEGMENTS],
    nslots: u8,
    /// Extra-info slots right after slot 0 (each answered `NETIF_RSP_NULL`).
    pub extras: u8,
    /// Total bytes (the sum of the data slots' lengths), 1..=65535.
    pub total: u16,
    /// From the flags of slot 0.
    pub csum: Checksum,
    /// From a GSO extra.
    pub gso: Option<Gso>,
    /// Frame or control request.
    pub kind: TxKind,
}

impl TxPacket {
    /// The data slots in order (at least one).
    pub fn data(&self) -> &[TxSlot] {
        &self.slots[..usize::from(self.nslots)]
    }

    /// Ring slots the packet consumed (data plus extras).
    pub fn ring_slots(&self) -> usize {
        usize::from(self.nslots) + usize::from(self.extras)
    }
}

/// What was wrong with a chain. Every variant is a protocol violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// The chain (or its extras) was not finished within the published
    /// requests: `slots` were consumed before they ran out.
    Unterminated {
        /// Slots consumed.
        slots: usize,
    },
    /// More than [`MAX_SEGMENTS`] (`XEN_NETIF_NR_SLOTS_MIN`) data slots.
    TooManySlots,
    /// A slot's bytes run past the page.
    BeyondPage {
        /// The slot's offset.
        offset: u16,
        /// Its size.
        size: u16,
    },
    /// The first request's total is smaller than the later slots' sizes.
    BadTotal {
        /// The total in slot 0.
        total: u16,
        /// The sum of the later sizes so far.
        later: u32,
    },
    /// A packet or slot of zero bytes.
    ZeroSize,
    /// An extra-info type that is not GSO, MCAST_ADD/DEL or HASH.
    UnknownExtra(u8),
    /// More extra-info slots than there are types.
    TooManyExtras,
    /// A GSO extra with MSS 0.
    GsoMssZero,
    /// A GSO extra of an unknown type.
    GsoUnknownType(u8),
    /// A GSO extra of a type we did not advertise.
    GsoNotOffered(GsoType),
}

impl core::fmt::Display for TxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TxError::Unterminated { slots } => write!(
                f,
                "tx packet not terminated within the published requests ({slots} slots)"
            ),
            TxError::TooManySlots => {
                write!(f, "tx packet of more than {MAX_SEGMENTS} slots")
            }
            TxError::BeyondPage { offset, size } => {
                write!(f, "tx slot offset {offset} + size {size} crosses the page")
            }
            TxError::BadTotal { total, later } => write!(
                f,
                "tx packet total {total} is not more than its later slots ({later})"
            ),
            TxError::ZeroSize => write!(f, "tx packet or slot of zero bytes"),
            TxError::UnknownExtra(t) => write!(f, "unknown tx extra-info type {t}"),
            TxError::TooManyExtras => write!(f, "more than {MAX_EXTRAS} tx extra-info slots"),
            TxError::GsoMssZero => write!(f, "tx GSO extra with MSS 0"),
            TxError::GsoUnknownType(t) => write!(f, "tx GSO extra of unknown type {t}"),
            TxError::GsoNotOffered(k) => write!(f, "tx GSO {k:?} which was not offered"),
        }
    }
}

fn check_page(offset: u16, size: u16) -> Result<(), TxError> {
    if usize::from(offset) + usize::from(size) > PAGE_SIZE {
        Err(TxError::BeyondPage { offset, size })
    } else {
        Ok(())
    }
}

/// Parse one packet from `src`, consuming its slots (on error, the slots
/// read so far are consumed; the caller disconnects the client anyway).
pub fn parse_packet<S: TxSlots + ?Sized>(
    src: &mut S,
    offered: TxOffered,
) -> Result<TxPacket, TxError> {
    let first = src
        .next_request()
        .ok_or(TxError::Unterminated { slots: 0 })?;
    let mut consumed = 1usize;
    let mut pkt = TxPacket {
        slots: [TxSlot::default(); MAX_SEGMENTS],
        nslots: 1,
        extras: 0,
        total: first.size,
        csum: if first.flags & NETTXF_CSUM_BLANK != 0 {
            Checksum::Partial
        } else if first.flags & NETTXF_DATA_VALIDATED != 0 {
            Checksum::Validated
        } else {
            Checksum::Unverified
        },
        gso: None,
        kind: TxKind::Frame,
    };
    if first.size == 0 {
        return Err(TxError::ZeroSize);
    }
    pkt.slots[0] = TxSlot {
        gref: first.gref,
        offset: first.offset,
        len: 0,
        id: first.id,
    };

    if first.flags & NETTXF_EXTRA_INFO != 0 {
        loop {
            let extra = src
                .next_extra()
                .ok_or(TxError::Unterminated { slots: consumed })?;
            consumed += 1;
            if usize::from(pkt.extras) == MAX_EXTRAS {
                return Err(TxError::TooManyExtras);
            }
            pkt.extras += 1;
            match extra.r#type {
                XEN_NETIF_EXTRA_TYPE_GSO => pkt.gso = Some(parse_gso(&extra, offered)?),
                XEN_NETIF_EXTRA_TYPE_MCAST_ADD | XEN_NETIF_EXTRA_TYPE_MCAST_DEL => {
                    pkt.kind = TxKind::Control
                }
                XEN_NETIF_EXTRA_TYPE_HASH => {}
                t => return Err(TxError::UnknownExtra(t)),
            }
            if extra.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                break;
            }
        }
    }

    // The later data slots. `NETTXF_extra_info` on them means nothing
    // (Linux netback ignores it too).
    let mut later: u32 = 0;
    let mut more = first.flags & NETTXF_MORE_DATA != 0;
    while more {
        let req = src
            .next_request()
            .ok_or(TxError::Unterminated { slots: consumed })?;
        consumed += 1;
        if usize::from(pkt.nslots) == MAX_SEGMENTS {
            return Err(TxError::TooManySlots);
        }
        if req.size == 0 {
            return Err(TxError::ZeroSize);
        }
        check_page(req.offset, req.size)?;
        later += u32::from(req.size);
        if later >= u32::from(first.size) {
            return Err(if later == u32::from(first.size) {
                TxError::ZeroSize
            } else {
                TxError::BadTotal {
                    total: first.size,
                    later,
                }
            });
        }
        pkt.slots[usize::from(pkt.nslots)] = TxSlot {
            gref: req.gref,
            offset: req.offset,
            len: req.size,
            id: req.id,
        };
        pkt.nslots += 1;
        more = req.flags & NETTXF_MORE_DATA != 0;
    }
    // `later < total` here, so slot 0 holds at least one byte.
    let first_len = first.size - later as u16;
    check_page(first.offset, first_len)?;
    pkt.slots[0].len = first_len;
    Ok(pkt)
}

fn parse_gso(extra: &NetifExtraInfo, offered: TxOffered) -> Result<Gso, TxError> {
    let kind = match extra.gso.r#type {
        XEN_NETIF_GSO_TYPE_TCPV4 => GsoType::TcpV4,
        XEN_NETIF_GSO_TYPE_TCPV6 => GsoType::TcpV6,
        t => return Err(TxError::GsoUnknownType(t)),
    };
    let ok = match kind {
        GsoType::TcpV4 => offered.gso_tcpv4,
        GsoType::TcpV6 => offered.gso_tcpv6,
    };
    if !ok {
        return Err(TxError::GsoNotOffered(kind));
    }
    if extra.gso.size == 0 {
        return Err(TxError::GsoMssZero);
    }
    Ok(Gso {
        kind,
        mss: extra.gso.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Slots as a test frontend writes them.
    #[derive(Clone, Copy)]
    enum S {
        R(NetifTxRequest),
        E(NetifExtraInfo),
    }

    struct Script {
        slots: Vec<S>,
        at: usize,
    }

    impl Script {
        fn new(slots: &[S]) -> Script {
            Script {
                slots: slots.to_vec(),
                at: 0,
            }
        }
        fn take(&mut self) -> Option<S> {
            let s = *self.slots.get(self.at)?;
            self.at += 1;
            Some(s)
        }
    }

    // Reinterpret slots as the other type the way the 12-byte ring slot
    // would (so a test may put a request where an extra is expected).
    fn req_as_extra(r: NetifTxRequest) -> NetifExtraInfo {
        let b = r.gref.to_le_bytes();
        NetifExtraInfo {
            r#type: b[0],
            flags: b[1],
            gso: xen::abi::netif::NetifExtraInfoGso {
                size: u16::from_le_bytes([b[2], b[3]]),
                r#type: r.offset as u8,
                pad: (r.offset >> 8) as u8,
                features: r.flags,
            },
        }
    }
    fn extra_as_req(e: NetifExtraInfo) -> NetifTxRequest {
        NetifTxRequest {
            gref: u32::from_le_bytes([
                e.r#type,
                e.flags,
                e.gso.size as u8,
                (e.gso.size >> 8) as u8,
            ]),
            offset: u16::from(e.gso.r#type) | u16::from(e.gso.pad) << 8,
            flags: e.gso.features,
            id: 0,
            size: 0,
        }
    }

    impl TxSlots for Script {
        fn next_request(&mut self) -> Option<NetifTxRequest> {
            Some(match self.take()? {
                S::R(r) => r,
                S::E(e) => extra_as_req(e),
            })
        }
        fn next_extra(&mut self) -> Option<NetifExtraInfo> {
            Some(match self.take()? {
                S::E(e) => e,
                S::R(r) => req_as_extra(r),
            })
        }
    }

    fn r(gref: u32, offset: u16, flags: u16, id: u16, size: u16) -> S {
        S::R(NetifTxRequest {
            gref,
            offset,
            flags,
            id,
            size,
        })
    }
    fn gso(kind: u8, mss: u16, more: bool) -> S {
        S::E(NetifExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_GSO,
            flags: if more { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 },
            gso: xen::abi::netif::NetifExtraInfoGso {
                size: mss,
                r#type: kind,
                pad: 0,
                features: 0,
            },
        })
    }
    fn extra(ty: u8, more: bool) -> S {
        S::E(NetifExtraInfo {
            r#type: ty,
            flags: if more { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 },
            ..Default::default()
        })
    }

    const ALL: TxOffered = TxOffered {
        gso_tcpv4: true,
        gso_tcpv6: true,
    };
    const MORE: u16 = NETTXF_MORE_DATA;
    const EXTRA: u16 = NETTXF_EXTRA_INFO;

    fn parse(slots: &[S]) -> (Result<TxPacket, TxError>, usize) {
        let mut s = Script::new(slots);
        let r = parse_packet(&mut s, ALL);
        (r, s.at)
    }

    #[test]
    fn single_slot() {
        let (p, used) = parse(&[r(8, 100, NETTXF_DATA_VALIDATED, 3, 60)]);
        let p = p.unwrap();
        assert_eq!(used, 1);
        assert_eq!(p.total, 60);
        assert_eq!(p.csum, Checksum::Validated);
        assert_eq!(p.kind, TxKind::Frame);
        assert_eq!(p.gso, None);
        assert_eq!(
            p.data(),
            &[TxSlot {
                gref: 8,
                offset: 100,
                len: 60,
                id: 3
            }]
        );
        assert_eq!(p.ring_slots(), 1);
    }

    #[test]
    fn checksum_flags() {
        let blank = NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED;
        assert_eq!(
            parse(&[r(1, 0, blank, 0, 60)]).0.unwrap().csum,
            Checksum::Partial
        );
        assert_eq!(
            parse(&[r(1, 0, NETTXF_CSUM_BLANK, 0, 60)]).0.unwrap().csum,
            Checksum::Partial
        );
        assert_eq!(
            parse(&[r(1, 0, 0, 0, 60)]).0.unwrap().csum,
            Checksum::Unverified
        );
    }

    #[test]
    fn multi_slot_with_gso_extra() {
        let slots = [
            r(1, 4000, MORE | EXTRA | NETTXF_CSUM_BLANK, 10, 96 + 4096 + 5),
            gso(XEN_NETIF_GSO_TYPE_TCPV4, 1448, false),
            r(2, 0, MORE | EXTRA, 11, 4096),
            r(3, 7, 0, 12, 5),
            r(99, 0, 0, 13, 60), // next packet, untouched
        ];
        let (p, used) = parse(&slots);
        let p = p.unwrap();
        assert_eq!(used, 4);
        assert_eq!(p.extras, 1);
        assert_eq!(p.ring_slots(), 4);
        assert_eq!(
            p.gso,
            Some(Gso {
                kind: GsoType::TcpV4,
                mss: 1448
            })
        );
        let lens: Vec<u16> = p.data().iter().map(|s| s.len).collect();
        assert_eq!(lens, [96, 4096, 5]);
        let ids: Vec<u16> = p.data().iter().map(|s| s.id).collect();
        assert_eq!(ids, [10, 11, 12]);
        assert_eq!(p.total, 96 + 4096 + 5);
    }

    #[test]
    fn eighteen_slots_ok_nineteen_fatal() {
        let mut s = alloc::vec![r(0, 0, MORE, 0, 18 * 100)];
        for i in 1..18 {
            s.push(r(i, 0, if i < 17 { MORE } else { 0 }, i as u16, 100));
        }
        let p = parse(&s).0.unwrap();
        assert_eq!(p.data().len(), 18);
        assert!(p.data().iter().all(|d| d.len == 100));
        let mut s = alloc::vec![r(0, 0, MORE, 0, 19 * 100)];
        for i in 1..19 {
            s.push(r(i, 0, if i < 18 { MORE } else { 0 }, i as u16, 100));
        }
        assert_eq!(parse(&s).0, Err(TxError::TooManySlots));
    }

    #[test]
    fn unterminated_chains() {
        assert_eq!(parse(&[]).0, Err(TxError::Unterminated { slots: 0 }));
        assert_eq!(
            parse(&[r(1, 0, MORE, 0, 200), r(2, 0, MORE, 1, 100)]).0,
            Err(TxError::Unterminated { slots: 2 })
        );
        assert_eq!(
            parse(&[r(1, 0, EXTRA, 0, 200)]).0,
            Err(TxError::Unterminated { slots: 1 })
        );
        assert_eq!(
            parse(&[
                r(1, 0, EXTRA, 0, 200),
                gso(XEN_NETIF_GSO_TYPE_TCPV4, 1000, true)
            ])
            .0,
            Err(TxError::Unterminated { slots: 2 })
        );
    }

    #[test]
    fn slot_beyond_page() {
        assert_eq!(
            parse(&[r(1, 4000, 0, 0, 97)]).0,
            Err(TxError::BeyondPage {
                offset: 4000,
                size: 97
            })
        );
        assert_eq!(
            parse(&[r(1, 0, MORE, 0, 5000), r(2, 1, 0, 1, 4096)]).0,
            Err(TxError::BeyondPage {
                offset: 1,
                size: 4096
            })
        );
        // The first slot's share is checked too: 904 bytes at 3200.
        assert_eq!(
            parse(&[r(1, 3200, MORE, 0, 1000), r(2, 0, 0, 1, 96)]).0,
            Err(TxError::BeyondPage {
                offset: 3200,
                size: 904
            })
        );
        assert!(parse(&[r(1, 3200, MORE, 0, 992), r(2, 0, 0, 1, 96)])
            .0
            .is_ok());
        assert!(parse(&[r(1, u16::MAX, 0, 0, 1)]).0.is_err());
    }

    #[test]
    fn inconsistent_totals() {
        assert_eq!(
            parse(&[r(1, 0, MORE, 0, 100), r(2, 0, 0, 1, 150)]).0,
            Err(TxError::BadTotal {
                total: 100,
                later: 150
            })
        );
        // Equal: slot 0 would hold nothing.
        assert_eq!(
            parse(&[r(1, 0, MORE, 0, 100), r(2, 0, 0, 1, 100)]).0,
            Err(TxError::ZeroSize)
        );
    }

    #[test]
    fn zero_sizes() {
        assert_eq!(parse(&[r(1, 0, 0, 0, 0)]).0, Err(TxError::ZeroSize));
        assert_eq!(
            parse(&[r(1, 0, MORE, 0, 100), r(2, 0, 0, 1, 0)]).0,
            Err(TxError::ZeroSize)
        );
    }

    #[test]
    fn extras() {
        for bad in [XEN_NETIF_EXTRA_TYPE_NONE, 5, 6, 255] {
            assert_eq!(
                parse(&[r(1, 0, EXTRA, 0, 60), extra(bad, false)]).0,
                Err(TxError::UnknownExtra(bad))
            );
        }
        // Hash extras are accepted and ignored; multicast makes a control
        // request.
        let p = parse(&[
            r(1, 0, EXTRA, 0, 60),
            extra(XEN_NETIF_EXTRA_TYPE_HASH, true),
            gso(XEN_NETIF_GSO_TYPE_TCPV6, 1000, false),
        ])
        .0
        .unwrap();
        assert_eq!(p.extras, 2);
        assert_eq!(p.kind, TxKind::Frame);
        assert_eq!(p.gso.unwrap().kind, GsoType::TcpV6);
        let p = parse(&[
            r(1, 0, EXTRA, 0, 60),
            extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, false),
        ])
        .0
        .unwrap();
        assert_eq!(p.kind, TxKind::Control);
        // A chain of extras longer than the number of types.
        let mut s = alloc::vec![r(1, 0, EXTRA, 0, 60)];
        for _ in 0..MAX_EXTRAS + 1 {
            s.push(extra(XEN_NETIF_EXTRA_TYPE_HASH, true));
        }
        assert_eq!(parse(&s).0, Err(TxError::TooManyExtras));
    }

    #[test]
    fn malformed_gso() {
        assert_eq!(
            parse(&[
                r(1, 0, EXTRA, 0, 60),
                gso(XEN_NETIF_GSO_TYPE_TCPV4, 0, false)
            ])
            .0,
            Err(TxError::GsoMssZero)
        );
        for t in [XEN_NETIF_GSO_TYPE_NONE, 3, 200] {
            assert_eq!(
                parse(&[r(1, 0, EXTRA, 0, 60), gso(t, 1000, false)]).0,
                Err(TxError::GsoUnknownType(t))
            );
        }
        let mut s = Script::new(&[
            r(1, 0, EXTRA, 0, 60),
            gso(XEN_NETIF_GSO_TYPE_TCPV6, 1000, false),
        ]);
        let only_v4 = TxOffered {
            gso_tcpv4: true,
            gso_tcpv6: false,
        };
        assert_eq!(
            parse_packet(&mut s, only_v4),
            Err(TxError::GsoNotOffered(GsoType::TcpV6))
        );
    }

    #[test]
    fn errors_display() {
        let e = TxError::BeyondPage {
            offset: 1,
            size: 4096,
        };
        assert_eq!(
            alloc::format!("{e}"),
            "tx slot offset 1 + size 4096 crosses the page"
        );
    }

    #[test]
    fn over_a_real_ring() {
        use xen::memory::LocalPages;
        use xen::ring::FrontRing;
        let pages = LocalPages::new(1);
        let mut front = FrontRing::<NetifTx>::init(pages.mem());
        let mut back = BackRing::<NetifTx>::attach(pages.mem());
        let S::R(a) = r(1, 0, MORE | EXTRA, 7, 1000) else {
            unreachable!()
        };
        front.push_request(&a).unwrap();
        let S::E(g) = gso(XEN_NETIF_GSO_TYPE_TCPV4, 500, false) else {
            unreachable!()
        };
        front.push_request_as(&g).unwrap();
        let S::R(b) = r(2, 0, 0, 8, 400) else {
            unreachable!()
        };
        front.push_request(&b).unwrap();
        front.push_requests_and_check_notify();
        assert_eq!(back.poll_requests(), Ok(3));
        let p = parse_packet(&mut back, ALL).unwrap();
        assert_eq!(p.ring_slots(), 3);
        assert_eq!(p.data()[0].len, 600);
        assert_eq!(p.gso.unwrap().mss, 500);
        assert_eq!(
            parse_packet(&mut back, ALL),
            Err(TxError::Unterminated { slots: 0 })
        );
    }
}
