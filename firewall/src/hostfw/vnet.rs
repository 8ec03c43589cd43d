//! The virtio-net header a TAP opened with `IFF_VNET_HDR` puts in front of
//! every frame, and its mapping onto the engine's frame metadata.
//!
//! `struct virtio_net_hdr` (10 bytes, native endian on a legacy TAP, i.e.
//! little endian here): `flags`, `gso_type`, `hdr_len`, `gso_size`,
//! `csum_start`, `csum_offset`. It is the same information netif carries
//! in `NETTXF_csum_blank` / `NETTXF_data_validated` and the GSO extra, so
//! the mapping is the one netfront and netback use:
//!
//! | virtio                         | [`Frame`]                         |
//! |--------------------------------|-----------------------------------|
//! | `NEEDS_CSUM`                   | `csum = Partial` (pseudo-header sum in the checksum field, `csum_start`/`csum_offset` point at it) |
//! | `DATA_VALID`                   | `csum = Validated`                |
//! | neither                        | `csum = Unverified`               |
//! | `GSO_TCPV4` / `GSO_TCPV6`, `gso_size` | `gso = Some(TcpV4/TcpV6, mss)` (always `Partial`) |
//! | `GSO_UDP`, `GSO_UDP_L4`        | not supported: the frame is dropped |
//!
//! Toward a TAP, `csum_start`/`csum_offset` and `hdr_len` are computed
//! from the frame's headers (the engine may have rewritten them).

use xen::frame::offload::{Headers, L4};
use xen::frame::{Checksum, Frame, Gso, GsoType};

/// Bytes of the header (`TUNSETVNETHDRSZ` default).
pub const LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

/// The decoded header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Bytes of headers (Ethernet through TCP) of a GSO frame.
    pub hdr_len: u16,
    /// MSS of a GSO frame.
    pub gso_size: u16,
    /// Where checksumming starts (`NEEDS_CSUM`).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

/// Why a received header cannot be carried by a [`Frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// UDP fragmentation offload / UDP segmentation offload: the engine's
    /// frames carry TCP GSO only.
    UdpGso,
    /// A GSO type this code does not know.
    UnknownGso(u8),
    /// GSO with an MSS of zero.
    ZeroMss,
}

impl VnetHdr {
    /// Decode the first [`LEN`] bytes.
    pub fn decode(b: &[u8; LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Encode into [`LEN`] bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The frame metadata this header describes (received from a TAP).
    pub fn to_meta(&self) -> Result<(Checksum, Option<Gso>), VnetError> {
        let gso = match self.gso_type & !GSO_ECN {
            GSO_NONE => None,
            t @ (GSO_TCPV4 | GSO_TCPV6) => {
                if self.gso_size == 0 {
                    return Err(VnetError::ZeroMss);
                }
                let kind = if t == GSO_TCPV4 {
                    GsoType::TcpV4
                } else {
                    GsoType::TcpV6
                };
                Some(Gso {
                    kind,
                    mss: self.gso_size,
                })
            }
            GSO_UDP | GSO_UDP_L4 => return Err(VnetError::UdpGso),
            t => return Err(VnetError::UnknownGso(t)),
        };
        let csum = if gso.is_some() || self.flags & F_NEEDS_CSUM != 0 {
            Checksum::Partial
        } else if self.flags & F_DATA_VALID != 0 {
            Checksum::Validated
        } else {
            Checksum::Unverified
        };
        Ok((csum, gso))
    }

    /// The header for sending `frame` to a TAP. `headers` are the frame's
    /// parsed headers, needed for a partial checksum or GSO; without them
    /// such a frame cannot be described (`None`: the caller completes the
    /// checksum in software or drops the frame).
    pub fn for_frame(frame: &Frame, headers: Option<&Headers>) -> Option<VnetHdr> {
        let mut h = VnetHdr::default();
        match frame.csum {
            Checksum::Unverified => {}
            Checksum::Validated => h.flags = F_DATA_VALID,
            Checksum::Partial => {
                let hd = headers?;
                let off = hd.checksum_offset()? - hd.l4_offset;
                h.flags = F_NEEDS_CSUM;
                h.csum_start = u16::try_from(hd.l4_offset).ok()?;
                h.csum_offset = off as u16;
            }
        }
        if let Some(g) = frame.gso {
            let hd = headers?;
            if hd.l4 != L4::Tcp || frame.csum != Checksum::Partial {
                return None;
            }
            h.gso_type = match g.kind {
                GsoType::TcpV4 => GSO_TCPV4,
                GsoType::TcpV6 => GSO_TCPV6,
            };
            h.gso_size = g.mss;
            h.hdr_len = u16::try_from(hd.header_len()).ok()?;
        }
        Some(h)
    }
}

/// What a frame needs before [`VnetHdr::for_frame`]: its parsed headers.
pub fn needs_headers(frame: &Frame) -> bool {
    frame.csum == Checksum::Partial || frame.gso.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen::frame::offload::L3;

    #[test]
    fn round_trip_bytes() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 74,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::decode(&h.encode()), h);
        assert_eq!(h.encode()[4..6], 1428u16.to_le_bytes());
    }

    #[test]
    fn rx_mapping() {
        let m = |flags, gso_type, gso_size| {
            VnetHdr {
                flags,
                gso_type,
                gso_size,
                ..Default::default()
            }
            .to_meta()
        };
        assert_eq!(m(0, 0, 0), Ok((Checksum::Unverified, None)));
        assert_eq!(m(2, 0, 0), Ok((Checksum::Validated, None)));
        assert_eq!(m(1, 0, 0), Ok((Checksum::Partial, None)));
        assert_eq!(m(3, 0, 0), Ok((Checksum::Partial, None)));
        let g = Gso {
            kind: GsoType::TcpV4,
            mss: 1448,
        };
        assert_eq!(m(1, 1, 1448), Ok((Checksum::Partial, Some(g))));
        assert_eq!(m(1, 0x81, 1448), Ok((Checksum::Partial, Some(g))));
        assert_eq!(m(1, 4, 1428).unwrap().1.unwrap().kind, GsoType::TcpV6);
        assert_eq!(m(1, 1, 0), Err(VnetError::ZeroMss));
        assert_eq!(m(1, 5, 1400), Err(VnetError::UdpGso));
        assert_eq!(m(1, 3, 1400), Err(VnetError::UdpGso));
        assert_eq!(m(1, 9, 1400), Err(VnetError::UnknownGso(9)));
    }

    fn tcp4() -> Headers {
        Headers {
            l3: L3::V4,
            l3_offset: 14,
            l4: L4::Tcp,
            l4_offset: 34,
            payload_offset: 66,
            l4_end: 1000,
            pseudo_dst_offset: 30,
        }
    }

    #[test]
    fn tx_mapping() {
        let mut f = Frame::new();
        assert_eq!(VnetHdr::for_frame(&f, None), Some(VnetHdr::default()));
        f.csum = Checksum::Validated;
        assert_eq!(VnetHdr::for_frame(&f, None).unwrap().flags, F_DATA_VALID);
        f.csum = Checksum::Partial;
        assert_eq!(VnetHdr::for_frame(&f, None), None);
        let h = VnetHdr::for_frame(&f, Some(&tcp4())).unwrap();
        assert_eq!((h.flags, h.csum_start, h.csum_offset), (1, 34, 16));
        f.gso = Some(Gso {
            kind: GsoType::TcpV4,
            mss: 1448,
        });
        assert!(needs_headers(&f));
        let h = VnetHdr::for_frame(&f, Some(&tcp4())).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1448, 66));
        let mut udp = tcp4();
        udp.l4 = L4::Udp;
        udp.payload_offset = 42;
        assert_eq!(VnetHdr::for_frame(&f, Some(&udp)), None);
        f.gso = None;
        let h = VnetHdr::for_frame(&f, Some(&udp)).unwrap();
        assert_eq!((h.csum_start, h.csum_offset), (34, 6));
    }
}
