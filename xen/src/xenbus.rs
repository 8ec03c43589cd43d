//! Xenbus device states (`io/xenbus.h`) and reading/writing them.
//!
//! Each end of a split device keeps its state in `<dir>/state` as a decimal
//! string. Reading follows Linux's `xenbus_read_driver_state`: a missing
//! node is [`XenbusState::Unknown`]. A node whose value is not one of the
//! nine states (a peer may write anything to its own directory) is an
//! error, [`StoreError::BadValue`] carrying the raw value, so that a driver
//! can log it and treat the peer as broken rather than silently as
//! `Unknown`.

use alloc::string::String;
use core::fmt;

use crate::store::{StoreError, Xenstore};
use crate::Platform;

/// A xenbus device state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum XenbusState {
    /// 0: not set up (also: key missing).
    Unknown = 0,
    /// 1: being created by the toolstack.
    Initialising = 1,
    /// 2: waiting for information from the peer.
    InitWait = 2,
    /// 3: initialised, waiting for the peer to connect.
    Initialised = 3,
    /// 4: connected.
    Connected = 4,
    /// 5: closing (error or unplug).
    Closing = 5,
    /// 6: closed.
    Closed = 6,
    /// 7: reconfiguring.
    Reconfiguring = 7,
    /// 8: reconfigured.
    Reconfigured = 8,
}

const ALL: [XenbusState; 9] = [
    XenbusState::Unknown,
    XenbusState::Initialising,
    XenbusState::InitWait,
    XenbusState::Initialised,
    XenbusState::Connected,
    XenbusState::Closing,
    XenbusState::Closed,
    XenbusState::Reconfiguring,
    XenbusState::Reconfigured,
];

impl XenbusState {
    /// The state numbered `v`.
    pub fn from_u32(v: u32) -> Option<XenbusState> {
        ALL.get(usize::try_from(v).ok()?).copied()
    }

    /// The number.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Parse a stored value: exactly one decimal digit `0`–`8`.
    pub fn parse(value: &[u8]) -> Option<XenbusState> {
        match value {
            [d @ b'0'..=b'8'] => XenbusState::from_u32(u32::from(d - b'0')),
            _ => None,
        }
    }

    /// The value as stored (`"4"`).
    pub fn as_value(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }

    /// The name (`"Connected"`).
    pub fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_value())
    }
}

/// `<dir>/state`.
pub fn state_path(dir: &str) -> String {
    let mut p = String::with_capacity(dir.len() + 6);
    p.push_str(dir);
    p.push_str("/state");
    p
}

/// Read `<dir>/state`: `Unknown` if missing, [`StoreError::BadValue`] if
/// not a state.
pub fn read_state<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    dir: &str,
) -> Result<XenbusState, StoreError> {
    match store.read_opt(&state_path(dir))? {
        None => Ok(XenbusState::Unknown),
        Some(v) => {
            XenbusState::parse(&v).ok_or_else(|| StoreError::bad_value("a xenbus state", &v))
        }
    }
}

/// Write `<dir>/state`.
pub fn write_state<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    dir: &str,
    state: XenbusState,
) -> Result<(), StoreError> {
    store.write(&state_path(dir), state.as_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evtchn::EventChannels;
    use crate::store::testutil::FakePlatform;
    use alloc::string::ToString;

    #[test]
    fn numbers_values_and_names() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(s.as_u32(), i as u32);
            assert_eq!(XenbusState::from_u32(i as u32), Some(*s));
            assert_eq!(XenbusState::parse(s.as_value().as_bytes()), Some(*s));
        }
        assert_eq!(XenbusState::from_u32(9), None);
        assert_eq!(XenbusState::Connected.as_value(), "4");
        assert_eq!(XenbusState::InitWait.to_string(), "InitWait (2)");
        for bad in [&b""[..], b"9", b"04", b" 4", b"4\0", b"-1", b"x"] {
            assert_eq!(XenbusState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn read_and_write_through_the_store() {
        let p = FakePlatform::new(2);
        let mut xs = Xenstore::from_params(EventChannels::new(p.clone()).unwrap()).unwrap();
        let dir = "device/vif/0";
        assert_eq!(read_state(&mut xs, dir), Ok(XenbusState::Unknown));
        write_state(&mut xs, dir, XenbusState::Initialised).unwrap();
        assert_eq!(xs.read("device/vif/0/state").unwrap(), b"3");
        assert_eq!(read_state(&mut xs, dir), Ok(XenbusState::Initialised));
        xs.write("device/vif/0/state", "banana").unwrap();
        assert_eq!(
            read_state(&mut xs, dir),
            Err(StoreError::BadValue {
                what: "a xenbus state",
                raw: "banana".into()
            })
        );
    }
}
