//! The client's receive ring (us → client): how a frame is delivered,
//! pure decisions and arithmetic the flush uses (no hypercalls, no pool).
//!
//! Frames are packed densely into the client's posted pages: slot `k` of
//! a packet holds bytes `4096 k .. 4096 (k + 1)`, each at offset 0 of its
//! page. Response `i` goes into the ring slot of request `i` (the ring
//! does that by construction); a GSO extra takes the slot after the first
//! data response.

use xen::abi::netif::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED};
use xen::abi::PAGE_SIZE;
use xen::frame::{Checksum, Gso, GsoType};

/// What the client can take, from its feature keys and our configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Multi-slot packets.
    pub sg: bool,
    /// GSO TCPv4 extras.
    pub gso_tcpv4: bool,
    /// GSO TCPv6 extras.
    pub gso_tcpv6: bool,
    /// `NETRXF_csum_blank` on IPv4 frames.
    pub partial_v4: bool,
    /// `NETRXF_csum_blank` on IPv6 frames.
    pub partial_v6: bool,
}

impl Peer {
    fn gso(&self, k: GsoType) -> bool {
        match k {
            GsoType::TcpV4 => self.gso_tcpv4,
            GsoType::TcpV6 => self.gso_tcpv6,
        }
    }
    fn partial(&self, v6: bool) -> bool {
        if v6 {
            self.partial_v6
        } else {
            self.partial_v4
        }
    }
    /// True if whether a partial-checksum frame may go out as it is
    /// depends on its IP version (so the headers must be parsed).
    pub fn partial_depends_on_l3(&self) -> bool {
        self.partial_v4 != self.partial_v6
    }
}

/// Why a frame for a client was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Larger than one page for a client without `feature-sg` (and not a
    /// GSO frame that could be segmented), or a segment that still is.
    TooBig,
    /// A partial checksum the client cannot take could not be completed
    /// (not TCP/UDP, malformed headers).
    Checksum,
    /// A GSO frame that could not be segmented (malformed headers, type
    /// disagreeing with the IP version, not TCP).
    Segmentation,
    /// A frame of no bytes.
    Empty,
}

/// How a frame goes to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// As it is, with these `NETRXF_*` checksum flags and GSO extra.
    Whole {
        /// `NETRXF_csum_blank` / `NETRXF_data_validated`.
        flags: u16,
        /// A GSO extra to add.
        gso: Option<Gso>,
    },
    /// Complete the checksum in software first, then as it is with
    /// `NETRXF_data_validated` (and this GSO extra: a GSO frame whose
    /// checksum was completed over the whole super-packet, as Linux's GRO
    /// hands them on).
    Complete {
        /// A GSO extra to add.
        gso: Option<Gso>,
    },
    /// Segment in software; with `partial` the segments keep partial
    /// checksums (`csum_blank`), otherwise they get full ones.
    Segment {
        /// Keep partial checksums.
        partial: bool,
    },
    /// Not deliverable.
    Drop(DropReason),
}

/// The flags a delivered frame with checksum state `c` carries.
pub fn csum_flags(c: Checksum) -> u16 {
    match c {
        Checksum::Partial => NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED,
        Checksum::Validated => NETRXF_DATA_VALIDATED,
        Checksum::Unverified => 0,
    }
}

/// Decide how a frame of `len` bytes with checksum state `csum` and GSO
/// metadata `gso` goes to `peer`. `v6` is the frame's IP version when
/// known; it is needed only for a non-GSO partial frame when
/// [`Peer::partial_depends_on_l3`] (pass `None` otherwise, and for a frame
/// whose headers do not parse, which then gets its checksum completed, or
/// fails to).
pub fn decide(
    len: usize,
    csum: Checksum,
    gso: Option<Gso>,
    v6: Option<bool>,
    peer: &Peer,
) -> Delivery {
    if len == 0 {
        return Delivery::Drop(DropReason::Empty);
    }
    if let Some(g) = gso {
        let partial_ok = peer.partial(g.kind == GsoType::TcpV6);
        let partial = csum == Checksum::Partial && partial_ok;
        // As Linux netback: a client that wants full checksums gets no
        // GSO (its TSO needs checksum offload), so the super-packet is cut
        // here with every segment's checksum complete.
        if peer.gso(g.kind) && partial_ok && (len <= PAGE_SIZE || peer.sg) {
            return Delivery::Whole {
                flags: csum_flags(csum),
                gso: Some(g),
            };
        }
        return Delivery::Segment { partial };
    }
    if len > PAGE_SIZE && !peer.sg {
        return Delivery::Drop(DropReason::TooBig);
    }
    match csum {
        Checksum::Partial => {
            let ok = match v6 {
                Some(v6) => peer.partial(v6),
                None => peer.partial_v4 && peer.partial_v6,
            };
            if ok {
                Delivery::Whole {
                    flags: csum_flags(Checksum::Partial),
                    gso: None,
                }
            } else {
                Delivery::Complete { gso: None }
            }
        }
        c => Delivery::Whole {
            flags: csum_flags(c),
            gso: None,
        },
    }
}

/// Data slots a packet of `len` bytes fills when packed densely.
pub fn slots_for(len: usize) -> usize {
    len.div_ceil(PAGE_SIZE).max(1)
}

/// Bytes in data slot `k` of a densely packed packet of `len` bytes.
pub fn slot_bytes(len: usize, k: usize) -> usize {
    len.saturating_sub(k * PAGE_SIZE).min(PAGE_SIZE)
}

/// Lays a packet's source pieces end to end into its data slots: each
/// piece is split where it crosses a slot boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packer {
    slot: usize,
    pos: usize,
}

impl Packer {
    /// At the start of slot 0.
    pub fn new() -> Packer {
        Packer::default()
    }

    /// Place the next `len` source bytes. `emit(slot, dest_offset,
    /// src_skip, n)` is called for each part: `n` bytes starting `src_skip`
    /// bytes into the piece go to `dest_offset` in data slot `slot`.
    pub fn place(&mut self, len: usize, mut emit: impl FnMut(usize, u16, usize, u16)) {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE_SIZE - self.pos);
            emit(self.slot, self.pos as u16, done, n as u16);
            done += n;
            self.pos += n;
            if self.pos == PAGE_SIZE {
                self.slot += 1;
                self.pos = 0;
            }
        }
    }

    /// Bytes placed so far.
    pub fn placed(&self) -> usize {
        self.slot * PAGE_SIZE + self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const ALL: Peer = Peer {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        partial_v4: true,
        partial_v6: true,
    };
    const V4: Gso = Gso {
        kind: GsoType::TcpV4,
        mss: 1448,
    };
    const V6: Gso = Gso {
        kind: GsoType::TcpV6,
        mss: 1428,
    };

    #[test]
    fn flags_for_checksum_states() {
        assert_eq!(csum_flags(Checksum::Partial), 0x3);
        assert_eq!(csum_flags(Checksum::Validated), NETRXF_DATA_VALIDATED);
        assert_eq!(csum_flags(Checksum::Unverified), 0);
    }

    #[test]
    fn gso_whole_only_with_feature_partial_and_room() {
        let p = Checksum::Partial;
        assert_eq!(
            decide(30000, p, Some(V4), None, &ALL),
            Delivery::Whole {
                flags: 3,
                gso: Some(V4)
            }
        );
        let no_v6 = Peer {
            gso_tcpv6: false,
            ..ALL
        };
        assert_eq!(
            decide(30000, p, Some(V6), None, &no_v6),
            Delivery::Segment { partial: true }
        );
        assert_eq!(
            decide(30000, p, Some(V4), None, &no_v6),
            Delivery::Whole {
                flags: 3,
                gso: Some(V4)
            }
        );
        let no_sg = Peer { sg: false, ..ALL };
        assert_eq!(
            decide(30000, p, Some(V4), None, &no_sg),
            Delivery::Segment { partial: true }
        );
        assert_eq!(
            decide(3000, p, Some(V4), None, &no_sg),
            Delivery::Whole {
                flags: 3,
                gso: Some(V4)
            }
        );
        let no_csum = Peer {
            partial_v4: false,
            partial_v6: false,
            ..ALL
        };
        // No GSO without checksum offload (Linux parity): cut here, every
        // segment's checksum complete.
        assert_eq!(
            decide(30000, p, Some(V4), None, &no_csum),
            Delivery::Segment { partial: false }
        );
        let no_csum_no_gso = Peer {
            gso_tcpv4: false,
            ..no_csum
        };
        assert_eq!(
            decide(30000, p, Some(V4), None, &no_csum_no_gso),
            Delivery::Segment { partial: false }
        );
        // A GSO frame with a full checksum goes whole, as it is.
        assert_eq!(
            decide(30000, Checksum::Validated, Some(V4), None, &ALL),
            Delivery::Whole {
                flags: NETRXF_DATA_VALIDATED,
                gso: Some(V4)
            }
        );
        let v4_only = Peer {
            partial_v6: false,
            gso_tcpv6: false,
            ..ALL
        };
        assert_eq!(
            decide(30000, p, Some(V6), None, &v4_only),
            Delivery::Segment { partial: false }
        );
        assert_eq!(
            decide(0, Checksum::Unverified, None, None, &ALL),
            Delivery::Drop(DropReason::Empty)
        );
    }

    #[test]
    fn plain_frames() {
        let no_sg = Peer { sg: false, ..ALL };
        assert_eq!(
            decide(4097, Checksum::Unverified, None, None, &no_sg),
            Delivery::Drop(DropReason::TooBig)
        );
        assert_eq!(
            decide(4096, Checksum::Validated, None, None, &no_sg),
            Delivery::Whole {
                flags: NETRXF_DATA_VALIDATED,
                gso: None
            }
        );
        let v4_only = Peer {
            partial_v6: false,
            ..ALL
        };
        assert!(v4_only.partial_depends_on_l3());
        assert!(!ALL.partial_depends_on_l3());
        assert_eq!(
            decide(100, Checksum::Partial, None, Some(true), &v4_only),
            Delivery::Complete { gso: None }
        );
        assert_eq!(
            decide(100, Checksum::Partial, None, Some(false), &v4_only),
            Delivery::Whole {
                flags: 3,
                gso: None
            }
        );
        assert_eq!(
            decide(100, Checksum::Partial, None, None, &v4_only),
            Delivery::Complete { gso: None }
        );
        assert_eq!(
            decide(100, Checksum::Partial, None, None, &ALL),
            Delivery::Whole {
                flags: 3,
                gso: None
            }
        );
    }

    #[test]
    fn dense_packing() {
        assert_eq!(slots_for(1), 1);
        assert_eq!(slots_for(4096), 1);
        assert_eq!(slots_for(4097), 2);
        assert_eq!(slots_for(65535), 16);
        assert_eq!(slot_bytes(65535, 15), 65535 - 15 * 4096);
        assert_eq!(slot_bytes(5000, 0), 4096);
        assert_eq!(slot_bytes(5000, 2), 0);
        let mut p = Packer::new();
        let mut out = Vec::new();
        for len in [54usize, 4000, 100, 8192] {
            p.place(len, |s, d, k, n| out.push((s, d, k, n)));
        }
        assert_eq!(
            out,
            [
                (0, 0, 0, 54),
                (0, 54, 0, 4000),
                (0, 4054, 0, 42),
                (1, 0, 42, 58),
                (1, 58, 0, 4038),
                (2, 0, 4038, 4096),
                (3, 0, 8134, 58),
            ]
        );
        assert_eq!(p.placed(), 54 + 4000 + 100 + 8192);
    }
}
