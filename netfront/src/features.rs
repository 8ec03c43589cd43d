//! The offload feature set and the parsers for the xenstore values the
//! handshake reads (feature flags, domids, MAC, MTU).
//!
//! Every parser is strict: a value written by a peer either is exactly what
//! it should be or it is rejected (the caller reports the peer).

/// What a side is willing to do. For us: the configuration; for the
/// backend: what its `feature-*` keys offer.
///
/// Our meaning of each flag (frontend side):
/// - `sg`: multi-slot packets (we advertise `feature-sg`, and send them
///   when the backend offers it too);
/// - `gso_tcpv4` / `gso_tcpv6`: GSO super-packets (need `sg` and the
///   checksum offload of their IP version);
/// - `csum_offload`: partial checksums (`csum_blank`). When false we write
///   `feature-no-csum-offload = 1` and complete checksums in software
///   before transmitting;
/// - `ipv6_csum_offload`: partial checksums over IPv6 too (needs
///   `csum_offload`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Scatter-gather (multi-slot packets).
    pub sg: bool,
    /// GSO TCP over IPv4.
    pub gso_tcpv4: bool,
    /// GSO TCP over IPv6.
    pub gso_tcpv6: bool,
    /// Partial checksums (IPv4 TCP/UDP).
    pub csum_offload: bool,
    /// Partial checksums over IPv6.
    pub ipv6_csum_offload: bool,
}

impl Features {
    /// Everything on.
    pub const ALL: Features = Features {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        csum_offload: true,
        ipv6_csum_offload: true,
    };

    /// The set with its dependencies enforced: IPv6 partial checksums need
    /// partial checksums; GSO needs SG (a super-packet spans pages) and the
    /// partial checksums of its IP version (a super-packet's checksum is
    /// partial by definition; Linux likewise drops TSO without checksum
    /// offload).
    pub fn effective(self) -> Features {
        let ipv6_csum_offload = self.ipv6_csum_offload && self.csum_offload;
        Features {
            sg: self.sg,
            gso_tcpv4: self.gso_tcpv4 && self.sg && self.csum_offload,
            gso_tcpv6: self.gso_tcpv6 && self.sg && ipv6_csum_offload,
            csum_offload: self.csum_offload,
            ipv6_csum_offload,
        }
    }

    /// What both sides have (each flag ANDed), dependencies enforced.
    pub fn both(self, other: Features) -> Features {
        Features {
            sg: self.sg && other.sg,
            gso_tcpv4: self.gso_tcpv4 && other.gso_tcpv4,
            gso_tcpv6: self.gso_tcpv6 && other.gso_tcpv6,
            csum_offload: self.csum_offload && other.csum_offload,
            ipv6_csum_offload: self.ipv6_csum_offload && other.ipv6_csum_offload,
        }
        .effective()
    }
}

/// A decimal `u32`: 1 to 10 ASCII digits and nothing else.
pub fn parse_u32(raw: &[u8]) -> Option<u32> {
    if raw.is_empty() || raw.len() > 10 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.iter().try_fold(0u32, |v, &d| {
        v.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// A feature flag value: a decimal number, non-zero meaning on (as Linux's
/// `xenbus_read_unsigned`, but nothing else may follow the digits).
pub fn parse_flag(raw: &[u8]) -> Option<bool> {
    parse_u32(raw).map(|v| v != 0)
}

/// A domain id a device may name: decimal, below `DOMID_FIRST_RESERVED`.
pub fn parse_domid(raw: &[u8]) -> Option<u16> {
    parse_u32(raw)
        .and_then(|v| u16::try_from(v).ok())
        .filter(|&d| d < xen::abi::domid::DOMID_FIRST_RESERVED)
}

/// A MAC as the toolstack writes it: six two-digit hex bytes separated by
/// colons (`00:16:3e:5e:6c:00`), either case.
pub fn parse_mac(raw: &[u8]) -> Option<[u8; 6]> {
    if raw.len() != 17 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        let at = i * 3;
        if i > 0 && raw[at - 1] != b':' {
            return None;
        }
        let hex = |c: u8| (c as char).to_digit(16);
        *b = (hex(raw[at])? * 16 + hex(raw[at + 1])?) as u8;
    }
    Some(mac)
}

/// An MTU: decimal, 68 (the IPv4 minimum) to 65535.
pub fn parse_mtu(raw: &[u8]) -> Option<u16> {
    parse_u32(raw)
        .and_then(|v| u16::try_from(v).ok())
        .filter(|&m| m >= 68)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_flags() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        for bad in [
            &b""[..],
            b"4294967296",
            b"12345678901",
            b" 1",
            b"1\n",
            b"-1",
            b"0x1",
            b"1a",
        ] {
            assert_eq!(parse_u32(bad), None, "{bad:?}");
        }
        assert_eq!(parse_flag(b"1"), Some(true));
        assert_eq!(parse_flag(b"2"), Some(true));
        assert_eq!(parse_flag(b"0"), Some(false));
        assert_eq!(parse_flag(b"yes"), None);
        assert_eq!(parse_domid(b"3"), Some(3));
        assert_eq!(parse_domid(b"32751"), Some(32751));
        assert_eq!(parse_domid(b"32752"), None); // DOMID_SELF and up
        assert_eq!(parse_domid(b"70000"), None);
    }

    #[test]
    fn macs_and_mtus() {
        assert_eq!(
            parse_mac(b"00:16:3E:5e:6c:0f"),
            Some([0, 0x16, 0x3e, 0x5e, 0x6c, 0x0f])
        );
        for bad in [
            &b"00:16:3e:5e:6c"[..],
            b"00-16-3e-5e-6c-00",
            b"00:16:3e:5e:6c:0g",
            b"0:16:3e:5e:6c:000",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
        assert_eq!(parse_mtu(b"1500"), Some(1500));
        assert_eq!(parse_mtu(b"67"), None);
        assert_eq!(parse_mtu(b"65536"), None);
    }

    #[test]
    fn dependencies_are_enforced() {
        let f = Features {
            sg: false,
            gso_tcpv4: true,
            gso_tcpv6: true,
            csum_offload: false,
            ipv6_csum_offload: true,
        };
        assert_eq!(f.effective(), Features::default());
        assert_eq!(Features::ALL.both(Features::ALL), Features::ALL);
        let no_v6_csum = Features {
            ipv6_csum_offload: false,
            ..Features::ALL
        };
        assert_eq!(
            no_v6_csum.effective(),
            Features {
                gso_tcpv6: false,
                ..no_v6_csum
            }
        );
        let no_csum = Features {
            csum_offload: false,
            ..Features::ALL
        };
        assert_eq!(
            no_csum.effective(),
            Features {
                sg: true,
                ..Features::default()
            }
        );
        let backend = Features {
            gso_tcpv6: false,
            ..Features::ALL
        };
        assert_eq!(
            Features::ALL.both(backend),
            Features {
                gso_tcpv6: false,
                ..Features::ALL
            }
        );
    }
}
