//! Values read from xenstore: strict parsers (a client writes its own
//! directory, so anything may be there) and the frontend's connection
//! keys.

use alloc::format;
use alloc::string::String;

/// A key that is missing or does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The key is required and absent.
    Missing(String),
    /// The value does not parse as what the key holds.
    Bad {
        /// The key (relative to the directory read).
        key: String,
        /// The value, lossily decoded, at most 32 characters.
        raw: String,
    },
    /// A value that parses but is refused (the message says why).
    Refused(String),
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyError::Missing(k) => write!(f, "frontend key {k} missing"),
            KeyError::Bad { key, raw } => write!(f, "frontend key {key} = {raw:?} does not parse"),
            KeyError::Refused(m) => f.write_str(m),
        }
    }
}

impl KeyError {
    /// A [`KeyError::Bad`] for `key` holding `v`.
    pub fn bad(key: &str, v: &[u8]) -> KeyError {
        let mut raw = String::from_utf8_lossy(v).into_owned();
        if raw.len() > 32 {
            let mut cut = 32;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
        }
        KeyError::Bad {
            key: key.into(),
            raw,
        }
    }
}

/// A decimal `u32`: 1 to 10 ASCII digits, nothing else, no overflow.
pub fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// A decimal domain id.
pub fn parse_domid(v: &[u8]) -> Option<u16> {
    parse_u32(v).and_then(|n| u16::try_from(n).ok())
}

/// A feature flag: absent is `false`, a decimal number is `!= 0`, anything
/// else does not parse.
pub fn parse_flag(v: Option<&[u8]>) -> Option<bool> {
    match v {
        None => Some(false),
        Some(v) => parse_u32(v).map(|n| n != 0),
    }
}

/// A MAC address `xx:xx:xx:xx:xx:xx` (hex digits, either case).
pub fn parse_mac(v: &[u8]) -> Option<[u8; 6]> {
    let s = core::str::from_utf8(v).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// What the frontend wrote for its (single) queue and its features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontendKeys {
    /// Grant of the tx ring page.
    pub tx_ring_ref: u32,
    /// Grant of the rx ring page.
    pub rx_ring_ref: u32,
    /// The frontend's unbound port.
    pub event_channel: u32,
    /// `feature-rx-notify`.
    pub rx_notify: bool,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// `feature-no-csum-offload`.
    pub no_csum_offload: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum_offload: bool,
}

/// Read the frontend's connection keys through `read(key)` (a key
/// relative to the frontend directory; `Ok(None)` if absent, `Err` for a
/// store failure, passed through as `E`).
///
/// Accepts the flat layout and, with `multi-queue-num-queues = 1`, the
/// per-queue keys under `queue-0/` (Windows PV drivers). More queues,
/// `request-rx-copy` other than 1 and unparsable values are refused.
pub fn read_frontend_keys<E>(
    mut read: impl FnMut(&str) -> Result<Option<alloc::vec::Vec<u8>>, E>,
) -> Result<Result<FrontendKeys, KeyError>, E> {
    macro_rules! tri {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(k) => return Ok(Err(k)),
            }
        };
    }
    let mut prefix = "";
    if let Some(v) = read("multi-queue-num-queues")? {
        match parse_u32(&v) {
            Some(1) => {
                if read("tx-ring-ref")?.is_none() {
                    prefix = "queue-0/";
                }
            }
            Some(n) => {
                return Ok(Err(KeyError::Refused(format!(
                    "frontend asks for {n} queues, we offer 1"
                ))))
            }
            None => return Ok(Err(KeyError::bad("multi-queue-num-queues", &v))),
        }
    }
    let mut number = |key: &str| -> Result<Result<u32, KeyError>, E> {
        let k = format!("{prefix}{key}");
        Ok(match read(&k)? {
            None => Err(KeyError::Missing(k)),
            Some(v) => parse_u32(&v).ok_or_else(|| KeyError::bad(&k, &v)),
        })
    };
    let tx_ring_ref = tri!(number("tx-ring-ref")?);
    let rx_ring_ref = tri!(number("rx-ring-ref")?);
    let event_channel = tri!(number("event-channel")?);
    let mut flag = |key: &str| -> Result<Result<bool, KeyError>, E> {
        let v = read(key)?;
        Ok(parse_flag(v.as_deref()).ok_or_else(|| KeyError::bad(key, v.as_deref().unwrap_or(b""))))
    };
    if !tri!(flag("request-rx-copy")?) {
        return Ok(Err(KeyError::Refused(
            "frontend does not request rx-copy (the only receive mode we have)".into(),
        )));
    }
    Ok(Ok(FrontendKeys {
        tx_ring_ref,
        rx_ring_ref,
        event_channel,
        rx_notify: tri!(flag("feature-rx-notify")?),
        sg: tri!(flag("feature-sg")?),
        gso_tcpv4: tri!(flag("feature-gso-tcpv4")?),
        gso_tcpv6: tri!(flag("feature-gso-tcpv6")?),
        no_csum_offload: tri!(flag("feature-no-csum-offload")?),
        ipv6_csum_offload: tri!(flag("feature-ipv6-csum-offload")?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        for bad in [
            &b""[..],
            b"4294967296",
            b"-1",
            b" 1",
            b"1 ",
            b"0x10",
            b"12345678901",
            b"1\0",
        ] {
            assert_eq!(parse_u32(bad), None, "{bad:?}");
        }
        assert_eq!(parse_domid(b"65535"), Some(65535));
        assert_eq!(parse_domid(b"65536"), None);
        assert_eq!(parse_flag(None), Some(false));
        assert_eq!(parse_flag(Some(b"1")), Some(true));
        assert_eq!(parse_flag(Some(b"0")), Some(false));
        assert_eq!(parse_flag(Some(b"yes")), None);
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac(b"00:16:3e:5E:6c:0f"),
            Some([0, 0x16, 0x3e, 0x5e, 0x6c, 0x0f])
        );
        for bad in [
            &b"00:16:3e:5e:6c"[..],
            b"00:16:3e:5e:6c:00:00",
            b"0:16:3e:5e:6c:00",
            b"zz:16:3e:5e:6c:00",
            b"",
        ] {
            assert_eq!(parse_mac(bad), None);
        }
    }

    fn read_from(m: &BTreeMap<&str, &str>) -> Result<FrontendKeys, KeyError> {
        read_frontend_keys(|k: &str| -> Result<Option<Vec<u8>>, ()> {
            Ok(m.get(k).map(|v| v.as_bytes().to_vec()))
        })
        .unwrap()
    }

    fn linux() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("event-channel", "12"),
            ("request-rx-copy", "1"),
            ("feature-rx-notify", "1"),
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("feature-gso-tcpv6", "1"),
            ("feature-ipv6-csum-offload", "1"),
        ])
    }

    #[test]
    fn linux_frontend() {
        let k = read_from(&linux()).unwrap();
        assert_eq!((k.tx_ring_ref, k.rx_ring_ref, k.event_channel), (8, 9, 12));
        assert!(k.rx_notify && k.sg && k.gso_tcpv4 && k.gso_tcpv6 && k.ipv6_csum_offload);
        assert!(!k.no_csum_offload);
        let mut m = linux();
        m.insert("multi-queue-num-queues", "1");
        assert_eq!(read_from(&m).unwrap(), k);
    }

    #[test]
    fn windows_queue_layout() {
        let mut m = linux();
        for key in ["tx-ring-ref", "rx-ring-ref", "event-channel"] {
            m.remove(key);
        }
        m.insert("multi-queue-num-queues", "1");
        m.insert("queue-0/tx-ring-ref", "20");
        m.insert("queue-0/rx-ring-ref", "21");
        m.insert("queue-0/event-channel", "5");
        let k = read_from(&m).unwrap();
        assert_eq!((k.tx_ring_ref, k.rx_ring_ref, k.event_channel), (20, 21, 5));
        m.insert("multi-queue-num-queues", "2");
        assert_eq!(
            read_from(&m).unwrap_err().to_string(),
            "frontend asks for 2 queues, we offer 1"
        );
        m.insert("multi-queue-num-queues", "x");
        assert!(matches!(read_from(&m), Err(KeyError::Bad { .. })));
    }

    #[test]
    fn refusals() {
        let mut m = linux();
        m.insert("tx-ring-ref", "eight");
        assert_eq!(
            read_from(&m).unwrap_err().to_string(),
            "frontend key tx-ring-ref = \"eight\" does not parse"
        );
        let mut m = linux();
        m.remove("event-channel");
        assert_eq!(
            read_from(&m).unwrap_err(),
            KeyError::Missing("event-channel".into())
        );
        let mut m = linux();
        m.remove("request-rx-copy");
        assert!(matches!(read_from(&m), Err(KeyError::Refused(_))));
        let mut m = linux();
        m.insert("feature-sg", "maybe");
        assert!(matches!(read_from(&m), Err(KeyError::Bad { .. })));
        let long = "9".repeat(100);
        let mut m = linux();
        m.insert("rx-ring-ref", &long);
        match read_from(&m).unwrap_err() {
            KeyError::Bad { raw, .. } => assert_eq!(raw.len(), 32),
            e => panic!("{e:?}"),
        }
    }
}
