//! A model of dom0's `qubesdb-daemon <xid> <name>`: the database dom0
//! keeps for one VM, the vchan side of it (sans-IO), and a toolstack-like
//! API that changes the database the way dom0's tools do.
//!
//! # The vchan side (qubes-core-qubesdb `handle_vchan_data`, dom0 end)
//! - Before the VM's MULTIREAD nothing is pushed (changes are simply in the
//!   database, so the dump includes them). The first MULTIREAD is answered
//!   with every entry (in reverse key order for the empty prefix, as dom0
//!   does; in key order for a prefix) and the end marker, after which
//!   every change is pushed as WRITE or RM. A second MULTIREAD is answered
//!   `RESP_ERROR` and breaks the connection. A MULTIREAD with data is
//!   answered `RESP_ERROR` and, like dom0, still counts as the one
//!   MULTIREAD (no dump is sent).
//! - A WRITE from the VM is stored and answered `RESP_OK`; with a NUL in
//!   its value it is answered `RESP_ERROR` (not fatal); with a path that
//!   is not a key it is answered `RESP_ERROR` and breaks the connection.
//! - An RM from the VM with data is answered `RESP_ERROR` (not fatal); one
//!   that removes nothing is answered `RESP_ERROR_NOENT` and breaks the
//!   connection ("database de-synchronization").
//! - `RESP_OK` is counted against the pushed messages awaiting one;
//!   `RESP_ERROR` is counted and logged (with data it is fatal);
//!   `RESP_MULTIREAD` and any type not allowed on vchan are fatal.
//!
//! # The toolstack side
//! [`Daemon::write`] and [`Daemon::rm`] behave like `qubesdb-write` /
//! `qubesdb-rm` on dom0's local socket: the database changes and, once the
//! VM is synchronised, the change is pushed (an RM only if it removed
//! something). The helpers above them write what Qubes 4.2 writes:
//! [`Daemon::set_net_config`], [`Daemon::set_client_rules`] (subtree RM,
//! `policy`, numbered rules, then the empty commit write, as
//! `NetVMMixin.reload_firewall_for_vm`), [`Daemon::set_connected_ips`],
//! [`Daemon::set_mapped_ip`], [`Daemon::remove_client`]. For tests,
//! [`Daemon::inject_raw`] puts arbitrary bytes on the wire.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{self, NetConfig};
use crate::db::{check_key, check_rm_path, Db};
use crate::decoder::Decoder;
use crate::error::{QdbError, WireError};
use crate::snapshot::{commit_key, rules_prefix};
use crate::wire::{check_data, encode, encode_unchecked, Frame, MsgType};

/// Counters of the daemon model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonStats {
    /// Messages received from the VM.
    pub messages: u64,
    /// Messages pushed to the VM (WRITE and RM).
    pub pushed: u64,
    /// `RESP_OK` received.
    pub acks: u64,
    /// `RESP_ERROR` received.
    pub errors_from_vm: u64,
    /// WRITEs from the VM applied.
    pub vm_writes: u64,
    /// Messages from the VM refused with `RESP_ERROR`.
    pub refused: u64,
}

/// The daemon model (see the module doc).
#[derive(Debug)]
pub struct Daemon {
    db: Db,
    decoder: Decoder,
    out: Vec<u8>,
    out_pos: usize,
    /// The VM's MULTIREAD was handled (dom0's `remote_connected`).
    synced: bool,
    broken: Option<QdbError>,
    /// Paths of pushed WRITE/RM not yet answered.
    awaiting: VecDeque<String>,
    stats: DaemonStats,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon::new()
    }
}

impl Daemon {
    /// An empty database, no VM connected yet.
    pub fn new() -> Daemon {
        Daemon {
            db: Db::new(),
            decoder: Decoder::new(),
            out: Vec::new(),
            out_pos: 0,
            synced: false,
            broken: None,
            awaiting: VecDeque::new(),
            stats: DaemonStats::default(),
        }
    }

    /// A new vchan connection: the VM will send a new MULTIREAD. The
    /// database is kept.
    pub fn reconnect(&mut self) {
        self.decoder.reset();
        self.out.clear();
        self.out_pos = 0;
        self.synced = false;
        self.broken = None;
        self.awaiting.clear();
    }

    /// Whether the VM's MULTIREAD was handled (changes are pushed).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The fatal error that broke the connection, if any.
    pub fn broken(&self) -> Option<&QdbError> {
        self.broken.as_ref()
    }

    /// Pushed messages the VM has not answered yet.
    pub fn pending_acks(&self) -> usize {
        self.awaiting.len()
    }

    /// Counters.
    pub fn stats(&self) -> DaemonStats {
        self.stats
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The value of `key`.
    pub fn read(&self, key: &str) -> Option<&[u8]> {
        self.db.get(key)
    }

    // ----- I/O -----

    /// Bytes waiting to be sent to the VM.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`Daemon::output`] were sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Process bytes from the VM. A fatal error breaks the connection (see
    /// the module doc) and is returned; afterwards [`QdbError::Broken`].
    pub fn receive(&mut self, mut input: &[u8]) -> Result<(), QdbError> {
        if let Some(e) = &self.broken {
            return Err(QdbError::Broken(Box::new(e.clone())));
        }
        while let Some(item) = self.decoder.next_frame(&mut input) {
            let frame = item.map_err(|e| self.fail(QdbError::Wire(e)))?;
            self.stats.messages += 1;
            if let Err(e) = self.handle(frame) {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: QdbError) -> QdbError {
        log::warn!("qubesdb-daemon model: {e}; closing the connection");
        self.broken = Some(e.clone());
        e
    }

    fn send(&mut self, ty: MsgType, path: &str, data: &[u8]) {
        if let Err(e) = encode(ty, path, data, &mut self.out) {
            log::error!("qubesdb-daemon model: cannot encode {ty} {path:?}: {e}");
        }
    }

    fn refuse(&mut self, ty: MsgType, path: &str, why: &str) {
        log::warn!("qubesdb-daemon model: refused {ty} {path:?}: {why}");
        self.stats.refused += 1;
        self.send(MsgType::RespError, path, b"");
    }

    fn handle(&mut self, frame: Frame) -> Result<(), QdbError> {
        let Frame { header, data } = frame;
        let ty = header.ty();
        let path = header.into_path();
        match ty {
            MsgType::CmdWrite => {
                if let Err(WireError::NulInData { .. }) = check_data(&data) {
                    self.refuse(ty, &path, "NUL in value");
                    return Ok(());
                }
                if !check_key(&path) || self.db.write(&path, &data).is_err() {
                    self.refuse(ty, &path, "cannot store");
                    return Err(QdbError::BadKey { ty, path });
                }
                self.stats.vm_writes += 1;
                self.send(MsgType::RespOk, &path, b"");
                Ok(())
            }
            MsgType::CmdMultiread => {
                if self.synced {
                    self.send(MsgType::RespError, &path, b"");
                    return Err(QdbError::Unexpected {
                        ty,
                        path,
                        during: "after the first MULTIREAD",
                    });
                }
                if !data.is_empty() {
                    self.refuse(ty, &path, "MULTIREAD with data");
                } else {
                    self.dump(&path);
                }
                self.synced = true;
                Ok(())
            }
            MsgType::CmdRm => {
                if !data.is_empty() {
                    self.refuse(ty, &path, "RM with data");
                    return Ok(());
                }
                if !check_rm_path(&path) || self.db.remove(&path).is_empty() {
                    // Not a vchan type for *us* to accept, but dom0 does
                    // send it here before closing.
                    let noent = u8::from(MsgType::RespErrorNoent);
                    encode_unchecked(noent, path.as_bytes(), 0, b"", &mut self.out);
                    return Err(QdbError::NoEntry { path });
                }
                self.send(MsgType::RespOk, &path, b"");
                Ok(())
            }
            MsgType::RespOk | MsgType::RespError => {
                if ty == MsgType::RespError {
                    if !data.is_empty() {
                        return Err(QdbError::UnexpectedData {
                            ty,
                            path,
                            len: data.len(),
                        });
                    }
                    log::warn!("qubesdb-daemon model: VM answered RESP_ERROR for {path:?}");
                    self.stats.errors_from_vm += 1;
                } else {
                    self.stats.acks += 1;
                }
                match self.awaiting.pop_front() {
                    Some(p) if p == path => {}
                    Some(p) => log::warn!(
                        "qubesdb-daemon model: answer for {path:?}, expected one for {p:?}"
                    ),
                    None => log::debug!("qubesdb-daemon model: unsolicited {ty} {path:?}"),
                }
                Ok(())
            }
            MsgType::RespMultiread => Err(QdbError::Unexpected {
                ty,
                path,
                during: "(dom0 never requests a dump)",
            }),
            other => Err(QdbError::Wire(WireError::NotOnVchan(other))),
        }
    }

    /// Answer a MULTIREAD of `prefix`.
    fn dump(&mut self, prefix: &str) {
        let entries: Vec<(String, Vec<u8>)> = if prefix.is_empty() {
            self.db
                .iter()
                .rev()
                .map(|(k, v)| (k.to_owned(), v.to_vec()))
                .collect()
        } else {
            self.db
                .entries_under(prefix)
                .map(|(k, v)| (k.to_owned(), v.to_vec()))
                .collect()
        };
        for (k, v) in &entries {
            self.send(MsgType::RespMultiread, k, v);
        }
        self.send(MsgType::RespMultiread, "", b"");
    }

    // ----- toolstack -----

    /// Set `key` to `value` (like `qubesdb-write` in dom0); pushed to the
    /// VM once it is synchronised.
    pub fn write(&mut self, key: &str, value: &[u8]) -> Result<(), QdbError> {
        if !check_key(key) {
            return Err(QdbError::BadKey {
                ty: MsgType::CmdWrite,
                path: String::from(key),
            });
        }
        check_data(value)?;
        self.db
            .write(key, value)
            .map_err(|_| QdbError::DatabaseFull {
                path: String::from(key),
            })?;
        if self.synced && self.broken.is_none() {
            self.send(MsgType::CmdWrite, key, value);
            self.awaiting.push_back(String::from(key));
            self.stats.pushed += 1;
        }
        Ok(())
    }

    /// Remove `path` (a key, or every key under a prefix ending in `/`).
    /// Returns whether anything was removed; only then is the RM pushed.
    pub fn rm(&mut self, path: &str) -> Result<bool, QdbError> {
        if !check_rm_path(path) {
            return Err(QdbError::BadKey {
                ty: MsgType::CmdRm,
                path: String::from(path),
            });
        }
        if self.db.remove(path).is_empty() {
            return Ok(false);
        }
        if self.synced && self.broken.is_none() {
            self.send(MsgType::CmdRm, path, b"");
            self.awaiting.push_back(String::from(path));
            self.stats.pushed += 1;
        }
        Ok(true)
    }

    /// Append `bytes` to the output as they are: malformed messages for
    /// tests. Nothing is validated or recorded.
    pub fn inject_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Append one message with arbitrary header fields (see
    /// [`crate::wire::encode_unchecked`]).
    pub fn inject_message(&mut self, ty: u8, path: &[u8], data: &[u8]) {
        encode_unchecked(ty, path, data.len() as u32, data, &mut self.out);
    }

    /// Write the configuration keys as `create_qdb_entries` does: every
    /// field that is set is written (in dom0's order: the netvm-side keys
    /// first, then our own); every field that is `None` is removed if
    /// present. `invalid` is ignored.
    pub fn set_net_config(&mut self, cfg: &NetConfig) -> Result<(), QdbError> {
        use config::*;
        let mac = cfg.mac.map(|m| {
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )
        });
        let fields: [(&str, Option<String>); 13] = [
            (KEY_NETVM_GATEWAY, cfg.netvm_gateway.map(|a| a.to_string())),
            (
                KEY_NETVM_GATEWAY6,
                cfg.netvm_gateway6.map(|a| a.to_string()),
            ),
            (KEY_NETVM_NETMASK, cfg.netvm_netmask.map(|a| a.to_string())),
            (
                KEY_NETVM_PRIMARY_DNS,
                cfg.netvm_primary_dns.map(|a| a.to_string()),
            ),
            (
                KEY_NETVM_SECONDARY_DNS,
                cfg.netvm_secondary_dns.map(|a| a.to_string()),
            ),
            (KEY_MAC, mac),
            (KEY_IP, cfg.ip.map(|a| a.to_string())),
            (KEY_NETMASK, cfg.netmask.map(|a| a.to_string())),
            (KEY_GATEWAY, cfg.gateway.map(|a| a.to_string())),
            (KEY_PRIMARY_DNS, cfg.primary_dns.map(|a| a.to_string())),
            (KEY_SECONDARY_DNS, cfg.secondary_dns.map(|a| a.to_string())),
            (KEY_IP6, cfg.ip6.map(|a| a.to_string())),
            (KEY_GATEWAY6, cfg.gateway6.map(|a| a.to_string())),
        ];
        for (key, value) in fields {
            match value {
                Some(v) => self.write(key, v.as_bytes())?,
                None => {
                    self.rm(key)?;
                }
            }
        }
        Ok(())
    }

    /// Reload `client`'s rules as dom0 does: RM `/qubes-firewall/<ip>/`,
    /// write `policy`, write each rule as `0000`, `0001`, ..., then write
    /// the empty value to `/qubes-firewall/<ip>` (the commit).
    pub fn set_client_rules(
        &mut self,
        client: IpAddr,
        policy: &str,
        rules: &[&str],
    ) -> Result<(), QdbError> {
        let numbered: Vec<(String, &str)> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("{i:04}"), *r))
            .collect();
        let mut entries: Vec<(&str, &str)> = Vec::with_capacity(numbered.len() + 1);
        entries.push(("policy", policy));
        entries.extend(numbered.iter().map(|(k, v)| (k.as_str(), *v)));
        self.set_client_entries(client, &entries)
    }

    /// The general form of [`Daemon::set_client_rules`]: RM the subtree,
    /// write each `(relative key, value)` in the order given, then the
    /// commit. Lets tests write gaps, odd keys or malformed rules.
    pub fn set_client_entries(
        &mut self,
        client: IpAddr,
        entries: &[(&str, &str)],
    ) -> Result<(), QdbError> {
        let prefix = rules_prefix(client);
        self.rm(&prefix)?;
        for (k, v) in entries {
            self.write(&format!("{prefix}{k}"), v.as_bytes())?;
        }
        self.write(&commit_key(client), b"")
    }

    /// Write `/connected-ips` and `/connected-ips6` (space-separated, as
    /// `reload_connected_ips`).
    pub fn set_connected_ips(&mut self, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<(), QdbError> {
        let join4: Vec<String> = v4.iter().map(|a| a.to_string()).collect();
        let join6: Vec<String> = v6.iter().map(|a| a.to_string()).collect();
        self.write(config::KEY_CONNECTED_IPS, join4.join(" ").as_bytes())?;
        self.write(config::KEY_CONNECTED_IPS6, join6.join(" ").as_bytes())
    }

    /// Write (or, for `None`, remove) `/mapped-ip/<real>/visible-ip` and
    /// `visible-gateway`, as `set_mapped_ip_info_for_vm`.
    pub fn set_mapped_ip(
        &mut self,
        real: Ipv4Addr,
        visible_ip: Option<Ipv4Addr>,
        visible_gateway: Option<Ipv4Addr>,
    ) -> Result<(), QdbError> {
        let base = format!("{}{real}", config::MAPPED_IP_PREFIX);
        for (field, value) in [
            ("visible-ip", visible_ip),
            ("visible-gateway", visible_gateway),
        ] {
            let key = format!("{base}/{field}");
            match value {
                Some(a) => self.write(&key, a.to_string().as_bytes())?,
                None => {
                    self.rm(&key)?;
                }
            }
        }
        Ok(())
    }

    /// Forget a client entirely: its rules subtree and commit key and its
    /// `/mapped-ip/` entries. (Qubes 4.2 leaves these keys behind when a
    /// client stops and only rewrites `/connected-ips`; the model removes
    /// them so tests can exercise [`crate::Event::ClientRemoved`].) The
    /// caller updates `/connected-ips` with [`Daemon::set_connected_ips`].
    pub fn remove_client(&mut self, client: IpAddr) -> Result<(), QdbError> {
        self.rm(&rules_prefix(client))?;
        self.rm(&commit_key(client))?;
        if let IpAddr::V4(v4) = client {
            self.rm(&format!("{}{v4}/", config::MAPPED_IP_PREFIX))?;
        }
        Ok(())
    }
}
