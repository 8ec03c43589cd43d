//! Where a vchan is published in xenstore, and the client's wait for it.
//!
//! A server publishes two keys in one directory: `ring-ref` (the grant ref
//! of the control page) and `event-channel` (its unbound port), both
//! decimal, each readable by the client only (`[n<server>, r<client>]`).
//! Upstream libxenvchan lets the caller name the directory; the Qubes
//! wrapper (`libvchan_server_init`/`libvchan_client_init`) derives it from
//! the two domids and a port number: [`RendezvousPath`].
//!
//! The client may start before the server: it watches
//! `<dir>/event-channel` (the one node it will be allowed to read; the
//! directory itself is not readable for it) and re-reads both keys on each
//! event, as the Qubes wrapper does. A missing key (`ENOENT`), one it may
//! not read yet (`EACCES`: the node exists but its permissions are not set
//! yet, or an ancestor is not readable) or an empty one means "not yet".

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};

use xen::abi::{DomId, EvtchnPort, GrantRef};
use xen::store::wire::XsError;
use xen::store::{Access, Perm, StoreError, Xenstore};
use xen::Platform;

use crate::error::{lossy_prefix, ProtocolError, VchanError};

/// The key holding the control page's grant ref.
pub const RING_REF: &str = "ring-ref";
/// The key holding the server's unbound event channel port.
pub const EVENT_CHANNEL: &str = "event-channel";
/// QubesDB's vchan port (dom0 serves it with 4096/4096-byte rings).
pub const QUBESDB_PORT: u32 = 111;
/// How often a waiting client re-reads the keys even without a watch
/// event (insurance against an event it was not allowed to see).
pub const RECHECK_NS: u64 = 500_000_000;

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
    pub const RING_REF: &'static str = RING_REF;
    /// Key holding the server's unbound event channel port (decimal).
    pub const EVENT_CHANNEL: &'static str = EVENT_CHANNEL;

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

    /// The per-client parent the Qubes wrapper prunes when it is empty:
    /// `data/vchan/<client>` (relative to the server's home).
    pub fn client_parent(&self) -> String {
        format!("data/vchan/{}", self.client)
    }
}

/// The permissions of the two keys: owned by the server, readable by the
/// client, nobody else.
pub fn key_perms(server: DomId, client: DomId) -> [Perm; 2] {
    [
        Perm::new(server, Access::None),
        Perm::new(client, Access::Read),
    ]
}

/// Publish `ring-ref` and `event-channel` under `dir` in one transaction
/// (retried on `EAGAIN`), each with [`key_perms`], as libxenvchan's
/// `init_xs_srv` does.
pub fn publish<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    dir: &str,
    server: DomId,
    client: DomId,
    ring_ref: GrantRef,
    port: EvtchnPort,
) -> Result<(), StoreError> {
    let perms = key_perms(server, client);
    let rr = format!("{dir}/{RING_REF}");
    let ec = format!("{dir}/{EVENT_CHANNEL}");
    store.transaction(|tx| {
        tx.write(&rr, format!("{ring_ref}"))?;
        tx.set_perms(&rr, &perms)?;
        tx.write(&ec, format!("{port}"))?;
        tx.set_perms(&ec, &perms)
    })
}

/// Parse a key's value: `Ok(None)` if empty (not written yet), the number
/// if positive decimal (trailing NULs and whitespace ignored), else
/// [`ProtocolError::BadKey`] (libxenvchan refuses 0 too).
pub fn parse_key(key: &'static str, raw: &[u8]) -> Result<Option<u32>, ProtocolError> {
    let end = raw
        .iter()
        .rposition(|b| !(*b == 0 || b.is_ascii_whitespace()))
        .map_or(0, |i| i + 1);
    let v = &raw[..end];
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || ProtocolError::BadKey {
        key,
        raw: lossy_prefix(raw, 32),
    };
    if !v.iter().all(u8::is_ascii_digit) || v.len() > 10 {
        return Err(bad());
    }
    let n = v
        .iter()
        .try_fold(0u64, |acc, d| Some(acc * 10 + u64::from(d - b'0')))
        .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
        .ok_or_else(bad)?;
    Ok(Some(n as u32))
}

/// Read one key; `Ok(None)` while it is missing, unreadable or empty.
fn read_key<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    dir: &str,
    key: &'static str,
) -> Result<Option<u32>, VchanError> {
    match store.read(&format!("{dir}/{key}")) {
        Ok(v) => Ok(parse_key(key, &v)?),
        Err(StoreError::Xs(XsError::Enoent | XsError::Eacces)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Read both keys once: `Ok(None)` unless both are there.
pub fn read_keys<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    dir: &str,
) -> Result<Option<(GrantRef, EvtchnPort)>, VchanError> {
    let Some(gref) = read_key(store, dir, RING_REF)? else {
        return Ok(None);
    };
    let Some(port) = read_key(store, dir, EVENT_CHANNEL)? else {
        return Ok(None);
    };
    Ok(Some((gref, port)))
}

/// Wait until a server has published both keys under `dir`, or until Xen
/// time `deadline` (ns; `None` = forever): [`VchanError::Timeout`].
pub fn wait_for_keys<P: Platform + Clone>(
    store: &mut Xenstore<P>,
    now: impl Fn() -> u64,
    dir: &str,
    deadline: Option<u64>,
) -> Result<(GrantRef, EvtchnPort), VchanError> {
    static NEXT_TOKEN: AtomicU32 = AtomicU32::new(0);
    let token = format!("vchan-{}", NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
    let path = format!("{dir}/{EVENT_CHANNEL}");
    store.watch(&path, &token)?;
    let r = loop {
        match read_keys(store, dir) {
            Ok(Some(keys)) => break Ok(keys),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let t = now();
        if deadline.is_some_and(|d| t >= d) {
            break Err(VchanError::Timeout);
        }
        let step = t.saturating_add(RECHECK_NS);
        let until = deadline.map_or(step, |d| d.min(step));
        if let Err(e) = store.next_event_for(&token, Some(until)) {
            break Err(e.into());
        }
    };
    // Best effort: a failure here does not undo a successful wait.
    if let Err(e) = store.unwatch(&path, &token) {
        log::debug!("vchan: unwatch {path}: {e}");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qubesdb_rendezvous_path() {
        let path = RendezvousPath {
            server: 0,
            client: 23,
            port: QUBESDB_PORT,
        };
        assert_eq!(path.relative(), "data/vchan/23/111");
        assert_eq!(path.absolute(), "/local/domain/0/data/vchan/23/111");
        assert_eq!(path.client_parent(), "data/vchan/23");
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key(RING_REF, b"8"), Ok(Some(8)));
        assert_eq!(parse_key(RING_REF, b"4294967295\0"), Ok(Some(u32::MAX)));
        assert_eq!(parse_key(RING_REF, b"17 \n"), Ok(Some(17)));
        assert_eq!(parse_key(RING_REF, b""), Ok(None));
        assert_eq!(parse_key(RING_REF, b"\0"), Ok(None));
        for bad in [
            &b"0"[..],
            b"4294967296",
            b"-1",
            b"12a",
            b"99999999999",
            b" 5",
        ] {
            assert!(
                matches!(
                    parse_key(EVENT_CHANNEL, bad),
                    Err(ProtocolError::BadKey {
                        key: "event-channel",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn perms_are_owner_none_client_read() {
        let p = key_perms(0, 7);
        assert_eq!(p[0].to_wire(), "n0");
        assert_eq!(p[1].to_wire(), "r7");
    }
}
