//! Receive-side response parsing: sans-IO, no hypercalls.
//!
//! The backend writes one response per posted receive buffer, **in the
//! ring slot of the request it consumed** (Linux netfront pairs by
//! position: response index == request index), so the response at index
//! `i` describes the buffer we posted at index `i`. We post buffer ids equal
//! to the slot (`i & (size - 1)`, as Linux does), so a response must also
//! echo that id.
//!
//! A packet is: a first data slot (flags carry the checksum state,
//! `more_data`, `extra_info`), then — if `extra_info` — extra-info slots
//! (chained by `XEN_NETIF_EXTRA_FLAG_MORE`), then further data slots while
//! `more_data` is set. [`parse_packet`] validates one packet from a window
//! of consumed responses and says where its bytes are; [`RxAssembler`]
//! keeps the consumed-but-unparsed responses and the posted-buffer table
//! between polls.
//!
//! # What is checked (and what it means)
//!
//! Protocol violations ([`RxError`]: the driver disconnects):
//! - a response at a position where we have no buffer posted, or whose id
//!   is not the id posted there;
//! - a data slot with `status >= 0` and `offset + status > 4096`;
//! - more than 18 data slots, except the Linux allowance below;
//! - a multi-slot packet although we did not advertise `feature-sg`;
//! - `NETRXF_gso_prefix` (never requested), `extra_info` on a slot other
//!   than the first;
//! - extra-info: type 0 or unknown (≥ `XEN_NETIF_EXTRA_TYPE_MAX`), the same
//!   type twice; a GSO extra with a GSO type we did not advertise (or an
//!   unknown one), or MSS 0. Multicast and hash extras are valid types we
//!   never ask for: skipped, as Linux does;
//! - a packet longer than 65535 bytes in all.
//!
//! Not violations ([`RxOutcome::Dropped`], counted):
//! - a negative status (`NETIF_RSP_ERROR`/`DROPPED`) on any data slot: the
//!   backend dropped the packet; the whole chain is consumed;
//! - a packet of 0 bytes in all;
//! - 19 data slots when the first holds at most 256 bytes: Linux netfront
//!   accepts that (`XEN_NETIF_NR_SLOTS_MIN + 1` for a small header slot,
//!   a leftover of old backends that put the header in its own slot); a
//!   [`Frame`](xen::frame::Frame) holds at most 18 segments, so we drop
//!   such a packet instead of disconnecting. Modern Linux netback fills
//!   slots up to whole pages and never needs more than 17.
//!
//! Zero-length data slots are allowed (no segment is made for them).
//! Unlike Linux, a packet whose slots are not all published yet is not an
//! error: [`RxOutcome::Incomplete`] waits for the rest.

use core::fmt;

use xen::abi::netif::*;
use xen::abi::PAGE_SIZE;
use xen::frame::{Checksum, Gso, GsoType, MAX_FRAME_LEN, MAX_SEGMENTS};
use xen::ring::{FrontRing, NetifRx, RingError};

/// Slots in the receive ring.
pub const RX_RING_SIZE: usize = FrontRing::<NetifRx>::SIZE as usize;
const MASK: u32 = RX_RING_SIZE as u32 - 1;

/// Most data slots in a packet we deliver.
pub const MAX_DATA_SLOTS: usize = MAX_SEGMENTS;
/// Linux's allowance: one more data slot if the first is this small.
pub const RX_COPY_THRESHOLD: u16 = 256;
/// Most extra-info slots in a packet (each type at most once).
pub const MAX_EXTRAS: usize = (XEN_NETIF_EXTRA_TYPE_MAX - 1) as usize;
/// The window [`parse_packet`] needs to decide any packet: every extra, the
/// allowed data slots, and one more to see a violation of the limit.
pub const RX_WINDOW: usize = 1 + MAX_EXTRAS + MAX_DATA_SLOTS + 1;

/// What we advertised to the backend, which bounds what it may send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxConfig {
    /// `feature-sg`: multi-slot packets allowed.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
}

/// One consumed response as the parser sees it: a private copy of the
/// slot, and the id of the buffer we posted at that position (`None` if
/// none is posted there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxSlot {
    /// The response (an extra-info slot is reinterpreted from its bytes).
    pub rsp: NetifRxResponse,
    /// The id of the request posted at this position.
    pub posted: Option<u16>,
}

/// Where one data slot's bytes are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataSlot {
    /// Position of the slot in the packet (0 = first slot).
    pub slot: u8,
    /// Offset of the data in the buffer page.
    pub offset: u16,
    /// Bytes (`status`), possibly 0.
    pub len: u16,
}

/// A valid packet: which slots hold data, and its metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// Slots the packet occupies (data and extras).
    pub slots: usize,
    data: [DataSlot; MAX_DATA_SLOTS],
    ndata: usize,
    /// Total bytes.
    pub len: usize,
    /// From the first slot's flags.
    pub csum: Checksum,
    /// From a GSO extra.
    pub gso: Option<Gso>,
}

impl RxPacket {
    /// The data slots in order (zero-length ones included).
    pub fn data(&self) -> &[DataSlot] {
        &self.data[..self.ndata]
    }
}

/// Why a packet was dropped without breaking the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// The backend marked a slot with this negative status.
    Status(i16),
    /// 19 data slots with a small first slot (Linux's allowance, more than
    /// a frame holds).
    TooManySlots,
    /// No bytes at all.
    Empty,
}

/// The outcome of parsing the packet at the head of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// The packet continues beyond the responses published so far.
    Incomplete,
    /// A packet to deliver.
    Packet(RxPacket),
    /// A packet to drop: its slots are consumed, nothing is delivered.
    Dropped {
        /// Slots consumed.
        slots: usize,
        /// Why.
        reason: RxDrop,
    },
}

impl RxOutcome {
    /// Slots the outcome consumes (0 for `Incomplete`).
    pub fn slots(&self) -> usize {
        match self {
            RxOutcome::Incomplete => 0,
            RxOutcome::Packet(p) => p.slots,
            RxOutcome::Dropped { slots, .. } => *slots,
        }
    }
}

/// A receive response that breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxError {
    /// A response at a ring position where no buffer is posted.
    NoBuffer {
        /// Ring index.
        index: u32,
    },
    /// The response's id is not the id posted at its position.
    WrongId {
        /// Ring index.
        index: u32,
        /// Id in the response.
        id: u16,
        /// Id posted there.
        posted: u16,
    },
    /// `offset + status` beyond the page.
    PastPage {
        /// Ring index.
        index: u32,
        /// Offset.
        offset: u16,
        /// Size.
        len: u16,
    },
    /// More data slots than allowed.
    TooManySlots {
        /// Data slots seen when giving up.
        slots: usize,
    },
    /// A multi-slot packet although we did not advertise `feature-sg`.
    NotSg,
    /// `NETRXF_gso_prefix`, which we never requested.
    GsoPrefix {
        /// Ring index.
        index: u32,
    },
    /// `NETRXF_extra_info` on a data slot after the first.
    LateExtra {
        /// Ring index.
        index: u32,
    },
    /// An extra-info type that does not exist.
    UnknownExtra {
        /// The type.
        ty: u8,
    },
    /// The same extra-info type twice in one packet.
    DuplicateExtra {
        /// The type.
        ty: u8,
    },
    /// A GSO extra we did not ask for, of an unknown type, or with MSS 0.
    BadGso {
        /// `gso.type`.
        ty: u8,
        /// `gso.size` (MSS).
        mss: u16,
    },
    /// The data slots add up to more than 65535 bytes.
    TooLong {
        /// The sum.
        len: usize,
    },
}

impl fmt::Display for RxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RxError::NoBuffer { index } => {
                write!(f, "rx response {index:#x} for a slot with no buffer posted")
            }
            RxError::WrongId { index, id, posted } => write!(
                f,
                "rx response {index:#x} has id {id}, the request there had id {posted}"
            ),
            RxError::PastPage { index, offset, len } => write!(
                f,
                "rx response {index:#x}: offset {offset} + size {len} past the page"
            ),
            RxError::TooManySlots { slots } => {
                write!(
                    f,
                    "rx packet with more than {} data slots ({slots} seen)",
                    MAX_DATA_SLOTS
                )
            }
            RxError::NotSg => write!(f, "multi-slot rx packet without feature-sg"),
            RxError::GsoPrefix { index } => {
                write!(f, "rx response {index:#x} has gso_prefix (never requested)")
            }
            RxError::LateExtra { index } => {
                write!(f, "rx response {index:#x}: extra_info on a later slot")
            }
            RxError::UnknownExtra { ty } => write!(f, "rx extra info of unknown type {ty}"),
            RxError::DuplicateExtra { ty } => write!(f, "rx extra info type {ty} twice"),
            RxError::BadGso { ty, mss } => {
                write!(f, "rx GSO extra type {ty} mss {mss} not acceptable")
            }
            RxError::TooLong { len } => write!(f, "rx packet of {len} bytes"),
        }
    }
}

/// Reinterpret a response slot as the extra-info entry it overlays.
pub fn extra_of(rsp: &NetifRxResponse) -> NetifExtraInfo {
    let [t, fl] = rsp.id.to_le_bytes();
    let [gt, pad] = rsp.flags.to_le_bytes();
    NetifExtraInfo {
        r#type: t,
        flags: fl,
        gso: NetifExtraInfoGso {
            size: rsp.offset,
            r#type: gt,
            pad,
            features: rsp.status as u16,
        },
    }
}

/// The checksum state a first slot's flags announce.
pub fn csum_of(flags: u16) -> Checksum {
    if flags & NETRXF_CSUM_BLANK != 0 {
        Checksum::Partial
    } else if flags & NETRXF_DATA_VALIDATED != 0 {
        Checksum::Validated
    } else {
        Checksum::Unverified
    }
}

/// Parse the packet at the head of `slots` (consecutive consumed
/// responses, `slots[0]` at ring index `first_index`). Pass at least
/// [`RX_WINDOW`] slots when that many are available; fewer may yield
/// [`RxOutcome::Incomplete`].
pub fn parse_packet(
    slots: &[RxSlot],
    first_index: u32,
    cfg: &RxConfig,
) -> Result<RxOutcome, RxError> {
    let Some(first) = slots.first() else {
        return Ok(RxOutcome::Incomplete);
    };
    let index = |pos: usize| first_index.wrapping_add(pos as u32);
    check_slot(first, index(0))?;
    let mut pos = 1;

    // Extras right after the first slot.
    let mut gso = None;
    let mut seen_types = 0u32;
    if first.rsp.flags & NETRXF_EXTRA_INFO != 0 {
        loop {
            let Some(s) = slots.get(pos) else {
                return Ok(RxOutcome::Incomplete);
            };
            if s.posted.is_none() {
                return Err(RxError::NoBuffer { index: index(pos) });
            }
            let e = extra_of(&s.rsp);
            let ty = e.r#type;
            if ty == XEN_NETIF_EXTRA_TYPE_NONE || ty >= XEN_NETIF_EXTRA_TYPE_MAX {
                return Err(RxError::UnknownExtra { ty });
            }
            if seen_types & (1 << ty) != 0 {
                return Err(RxError::DuplicateExtra { ty });
            }
            seen_types |= 1 << ty;
            if ty == XEN_NETIF_EXTRA_TYPE_GSO {
                gso = Some(gso_of(&e, cfg)?);
            }
            pos += 1;
            if e.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                break;
            }
        }
    }

    // Data slots: the first, then the more_data chain.
    let mut data = [DataSlot::default(); MAX_DATA_SLOTS];
    let mut ndata = 0;
    let mut total = 0usize;
    let mut status_drop = None;
    let mut more = first.rsp.flags & NETRXF_MORE_DATA != 0;
    let mut add = |s: &RxSlot, pos: usize, ndata: &mut usize| -> Result<(), RxError> {
        let st = s.rsp.status;
        if st < 0 {
            status_drop.get_or_insert(st);
        } else {
            let len = st as u16;
            if usize::from(s.rsp.offset) + usize::from(len) > PAGE_SIZE {
                return Err(RxError::PastPage {
                    index: index(pos),
                    offset: s.rsp.offset,
                    len,
                });
            }
            total += usize::from(len);
            if let Some(d) = data.get_mut(*ndata) {
                *d = DataSlot {
                    slot: pos as u8,
                    offset: s.rsp.offset,
                    len,
                };
            }
        }
        *ndata += 1;
        Ok(())
    };
    add(first, 0, &mut ndata)?;
    let small_first = (0..=RX_COPY_THRESHOLD as i16).contains(&first.rsp.status);
    let limit = MAX_DATA_SLOTS + usize::from(small_first);
    while more {
        let Some(s) = slots.get(pos) else {
            return Ok(RxOutcome::Incomplete);
        };
        check_slot(s, index(pos))?;
        if s.rsp.flags & NETRXF_EXTRA_INFO != 0 {
            return Err(RxError::LateExtra { index: index(pos) });
        }
        if ndata == limit {
            return Err(RxError::TooManySlots { slots: ndata + 1 });
        }
        add(s, pos, &mut ndata)?;
        more = s.rsp.flags & NETRXF_MORE_DATA != 0;
        pos += 1;
    }
    if ndata > 1 && !cfg.sg {
        return Err(RxError::NotSg);
    }
    if total > MAX_FRAME_LEN {
        return Err(RxError::TooLong { len: total });
    }
    let dropped = |reason| Ok(RxOutcome::Dropped { slots: pos, reason });
    if let Some(st) = status_drop {
        return dropped(RxDrop::Status(st));
    }
    if ndata > MAX_DATA_SLOTS {
        return dropped(RxDrop::TooManySlots);
    }
    if total == 0 {
        return dropped(RxDrop::Empty);
    }
    Ok(RxOutcome::Packet(RxPacket {
        slots: pos,
        data,
        ndata,
        len: total,
        csum: csum_of(first.rsp.flags),
        gso,
    }))
}

/// Checks common to data slots: a buffer posted there, the id echoed, no
/// gso prefix.
fn check_slot(s: &RxSlot, index: u32) -> Result<(), RxError> {
    let posted = s.posted.ok_or(RxError::NoBuffer { index })?;
    if s.rsp.id != posted {
        return Err(RxError::WrongId {
            index,
            id: s.rsp.id,
            posted,
        });
    }
    if s.rsp.flags & NETRXF_GSO_PREFIX != 0 {
        return Err(RxError::GsoPrefix { index });
    }
    Ok(())
}

fn gso_of(e: &NetifExtraInfo, cfg: &RxConfig) -> Result<Gso, RxError> {
    let bad = RxError::BadGso {
        ty: e.gso.r#type,
        mss: e.gso.size,
    };
    let kind = match e.gso.r#type {
        XEN_NETIF_GSO_TYPE_TCPV4 if cfg.gso_tcpv4 => GsoType::TcpV4,
        XEN_NETIF_GSO_TYPE_TCPV6 if cfg.gso_tcpv6 => GsoType::TcpV6,
        _ => return Err(bad),
    };
    if e.gso.size == 0 {
        return Err(bad);
    }
    Ok(Gso {
        kind,
        mss: e.gso.size,
    })
}

/// The receive ring's private side: responses consumed from the ring but
/// not yet turned into packets, and which positions have a buffer posted.
///
/// Sans-IO: the driver posts buffers ([`RxAssembler::post`]), pulls
/// responses in ([`RxAssembler::ingest`]), parses the head packet
/// ([`RxAssembler::next_packet`]) and, once it has taken the packet's
/// buffers, releases its slots ([`RxAssembler::consume`]).
///
/// Invariant: the positions from the parse index up to the ring's request
/// producer all have a buffer posted (the driver posts a slot only after
/// its previous buffer was consumed), so consumed-but-unparsed responses
/// never exceed the ring size.
#[derive(Debug)]
pub struct RxAssembler {
    store: [NetifRxResponse; RX_RING_SIZE],
    posted: [bool; RX_RING_SIZE],
    parse: u32,
    cons: u32,
}

impl Default for RxAssembler {
    fn default() -> Self {
        RxAssembler::new(0)
    }
}

impl RxAssembler {
    /// An empty assembler whose ring starts at index `start`.
    pub fn new(start: u32) -> RxAssembler {
        RxAssembler {
            store: [NetifRxResponse::default(); RX_RING_SIZE],
            posted: [false; RX_RING_SIZE],
            parse: start,
            cons: start,
        }
    }

    /// Forget everything; the ring (re)starts at `start`.
    pub fn reset(&mut self, start: u32) {
        self.posted = [false; RX_RING_SIZE];
        self.parse = start;
        self.cons = start;
    }

    /// Whether a buffer is posted (or its response unparsed) at ring index
    /// `index`; the driver may post there only when not.
    pub fn is_posted(&self, index: u32) -> bool {
        self.posted[(index & MASK) as usize]
    }

    /// Record that a buffer was posted at ring index `index`.
    pub fn post(&mut self, index: u32) {
        self.posted[(index & MASK) as usize] = true;
    }

    /// Responses consumed from the ring and not yet parsed.
    pub fn unparsed(&self) -> u32 {
        self.cons.wrapping_sub(self.parse)
    }

    /// The ring index of the next packet.
    pub fn parse_index(&self) -> u32 {
        self.parse
    }

    /// Poll the ring (validating `rsp_prod`) and copy every available
    /// response in. Returns how many.
    pub fn ingest(&mut self, ring: &mut FrontRing<NetifRx>) -> Result<u32, RingError> {
        ring.poll_responses()?;
        let mut n = 0;
        loop {
            let at = ring.rsp_cons();
            let Some(rsp) = ring.next_response() else {
                break;
            };
            self.store[(at & MASK) as usize] = rsp;
            self.cons = ring.rsp_cons();
            n += 1;
        }
        Ok(n)
    }

    /// Parse the packet at the parse index (nothing consumed).
    pub fn next_packet(&self, cfg: &RxConfig) -> Result<RxOutcome, RxError> {
        let n = (self.unparsed() as usize).min(RX_WINDOW);
        let mut win = [RxSlot::default(); RX_WINDOW];
        for (k, w) in win[..n].iter_mut().enumerate() {
            let i = (self.parse.wrapping_add(k as u32) & MASK) as usize;
            *w = RxSlot {
                rsp: self.store[i],
                posted: self.posted[i].then_some(i as u16),
            };
        }
        parse_packet(&win[..n], self.parse, cfg)
    }

    /// Release the first `slots` unparsed positions (their buffers were
    /// taken by the driver); at most [`RxAssembler::unparsed`].
    pub fn consume(&mut self, slots: usize) {
        let slots = (slots as u32).min(self.unparsed());
        for k in 0..slots {
            self.posted[(self.parse.wrapping_add(k) & MASK) as usize] = false;
        }
        self.parse = self.parse.wrapping_add(slots);
    }
}

#[cfg(test)]
mod tests;
