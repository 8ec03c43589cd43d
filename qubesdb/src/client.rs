//! The VM side of a QubesDB session, sans-IO: bytes from dom0 in, bytes to
//! dom0 and typed events out.
//!
//! # The session (one per vchan connection)
//! 1. [`Client::new`] (or [`Client::reconnect`] on a new connection) queues
//!    the one `MULTIREAD ""` the VM may send per connection.
//! 2. dom0 answers with `RESP_MULTIREAD <key> = <value>` for every entry
//!    and a `RESP_MULTIREAD ""` end marker. The entries fill a fresh
//!    database; at the end marker it replaces the replica in one step and
//!    the derived views are recomputed, with an event for every difference
//!    (so a reconnect that finds the same database reports nothing but
//!    [`Event::Synced`]).
//! 3. From then on dom0 pushes every change as `WRITE` or `RM`; each is
//!    applied to the replica and answered with `RESP_OK` carrying the same
//!    path, also an RM of a key we do not have (dom0 only forwards an RM
//!    that removed something in its copy, and drops the connection on
//!    `RESP_ERROR_NOENT`; mirage-qubes answers OK too).
//!
//! # Errors: answered, or fatal
//! As in qubes-core-qubesdb's VM daemon (`handle_vchan_data`), a message
//! whose header is bad cannot be skipped, so it breaks the connection; a
//! well-framed command with a bad body is refused with `RESP_ERROR` (path
//! preserved) and the session goes on:
//! - answered with `RESP_ERROR`, reported as [`Event::Rejected`]: a WRITE
//!   whose value contains NUL, a WRITE whose path is not a key (starts with
//!   `/`, does not end with `/`; the C daemon also disconnects here, but
//!   dom0's own database cannot hold such a key, so carrying on is safe),
//!   a WRITE that would exceed the replica's size bound, an RM with data,
//!   an RM whose path does not start with `/`;
//! - fatal ([`Client::receive`] returns the error and every later call
//!   returns [`QdbError::Broken`]): any [`WireError`]
//!   (unknown or local-only type, unterminated or bad path, oversized
//!   length), a dump entry with a NUL in its value or a non-key path or
//!   that overflows the bound, a WRITE or RM before the dump ended, a dump
//!   entry after it, a MULTIREAD from dom0, data on `RESP_OK`,
//!   `RESP_ERROR` or the end marker.
//!
//! After a fatal error the replica and the snapshots are kept (the
//! firewall keeps enforcing the last committed rules) until a reconnect
//! completes a new dump.
//!
//! # Invariants
//! - Nothing here panics on any input bytes.
//! - The decoder holds at most one message; the event queue holds at most
//!   one event of each kind per client or watch, plus at most
//!   [`MAX_DIAGNOSTIC_EVENTS`] diagnostics; the replica is bounded by its
//!   size limit. Output grows by at most one 72-byte answer per incoming
//!   message: stop feeding input while [`Client::wants_input`] is false.
//! - A [`RuleSnapshot`] is only ever created from a commit: an empty write
//!   to `/qubes-firewall/<ip>` (live), or a present, empty
//!   `/qubes-firewall/<ip>` key in a full dump.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::config::{is_client_list_key, is_net_config_key, ClientList, NetConfig};
use crate::db::{check_key, check_rm_path, Db};
use crate::decoder::Decoder;
use crate::error::{QdbError, WireError};
use crate::snapshot::{commit_key_client, is_commit_shaped, RuleSnapshot, FIREWALL_PREFIX};
use crate::wire::{check_data, encode, Frame, MsgType};

/// Output backlog (bytes) above which [`Client::wants_input`] turns false.
pub const MAX_OUTPUT_BACKLOG: usize = 16 * 1024;

/// Pending [`Event::Rejected`] / [`Event::WriteFailed`] events kept; more
/// are counted in [`Stats::dropped_events`] and only logged.
pub const MAX_DIAGNOSTIC_EVENTS: usize = 32;

/// Watches a client may hold.
pub const MAX_WATCHES: usize = 64;

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// MULTIREAD sent, dump in progress; the replica (if any) is stale.
    Syncing,
    /// Dump complete; dom0 pushes changes.
    Live,
}

/// A local watch (see [`Client::add_watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u32);

/// What changed. Events are hints to re-read the current state (the
/// snapshot accessors), not deltas: repeated changes coalesce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A full dump completed: the replica is complete and current.
    Synced,
    /// [`Client::net_config`] changed.
    ConfigChanged,
    /// [`Client::client_list`] changed.
    ClientsChanged,
    /// A new rule snapshot for `client` was committed
    /// ([`Client::rules`]).
    RulesCommitted {
        /// The client address.
        client: IpAddr,
    },
    /// `/qubes-firewall/<client>` was removed: no committed rules remain.
    ClientRemoved {
        /// The client address.
        client: IpAddr,
    },
    /// A key matching this watch was written or removed.
    Watch(WatchId),
    /// dom0 answered one of our writes with `RESP_ERROR`.
    WriteFailed {
        /// The path dom0 echoed.
        path: String,
    },
    /// A message from dom0 was refused with `RESP_ERROR` (not fatal).
    Rejected(QdbError),
}

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received.
    pub messages: u64,
    /// Completed dumps.
    pub syncs: u64,
    /// WRITEs applied (pushed by dom0).
    pub writes: u64,
    /// RMs applied (pushed by dom0).
    pub removes: u64,
    /// Rule commits.
    pub commits: u64,
    /// Messages refused with `RESP_ERROR`.
    pub rejected: u64,
    /// Diagnostic events dropped because too many were pending.
    pub dropped_events: u64,
}

#[derive(Clone, Debug)]
struct Watch {
    id: WatchId,
    path: String,
}

impl Watch {
    /// qubes-core-qubesdb semantics: a path ending in `/` matches every key
    /// under it, any other path matches exactly.
    fn matches(&self, key: &str) -> bool {
        if self.path.ends_with('/') {
            key.starts_with(&self.path)
        } else {
            key == self.path
        }
    }
}

#[derive(Clone, Debug)]
struct Committed {
    /// The commit key as dom0 spelt it.
    key: String,
    snapshot: Arc<RuleSnapshot>,
}

/// Which derived views a batch of key changes touched.
#[derive(Default)]
struct Touched {
    config: bool,
    clients: bool,
}

/// The client state machine (see the module doc).
#[derive(Debug)]
pub struct Client {
    decoder: Decoder,
    out: Vec<u8>,
    out_pos: usize,
    phase: Phase,
    broken: Option<QdbError>,
    db: Db,
    /// The dump being received (empty when live).
    fresh: Db,
    net_config: Arc<NetConfig>,
    clients: Arc<ClientList>,
    rules: BTreeMap<IpAddr, Committed>,
    next_generation: u64,
    watches: Vec<Watch>,
    next_watch: u32,
    events: VecDeque<Event>,
    diagnostics: usize,
    pending_writes: usize,
    stats: Stats,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client for a fresh connection, with the MULTIREAD queued and the
    /// default replica bound ([`crate::db::DEFAULT_LIMIT`]).
    pub fn new() -> Client {
        Client::with_db(Db::new())
    }

    /// Like [`Client::new`] with the replica bounded as `db` (which must be
    /// empty; its bound is what is used).
    pub fn with_db(db: Db) -> Client {
        let db = db.empty_like();
        let mut c = Client {
            decoder: Decoder::new(),
            out: Vec::new(),
            out_pos: 0,
            phase: Phase::Syncing,
            broken: None,
            fresh: db.empty_like(),
            db,
            net_config: Arc::new(NetConfig::default()),
            clients: Arc::new(ClientList::default()),
            rules: BTreeMap::new(),
            next_generation: 1,
            watches: Vec::new(),
            next_watch: 1,
            events: VecDeque::new(),
            diagnostics: 0,
            pending_writes: 0,
            stats: Stats::default(),
        };
        c.send(MsgType::CmdMultiread, "", b"");
        c
    }

    /// A new connection to dom0 (the old one closed or broke): forget the
    /// byte stream and any pending output, clear the broken state and
    /// queue a new MULTIREAD. The replica, the snapshots and the watches
    /// are kept, stale, until the dump completes.
    pub fn reconnect(&mut self) {
        self.decoder.reset();
        self.out.clear();
        self.out_pos = 0;
        self.broken = None;
        self.pending_writes = 0;
        self.phase = Phase::Syncing;
        self.fresh = self.db.empty_like();
        self.send(MsgType::CmdMultiread, "", b"");
    }

    /// Where the session is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the replica is complete and current (live session, not
    /// broken).
    pub fn is_synced(&self) -> bool {
        self.phase == Phase::Live && self.broken.is_none()
    }

    /// The fatal error that broke this connection, if any.
    pub fn broken(&self) -> Option<&QdbError> {
        self.broken.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ----- I/O -----

    /// Bytes waiting to be sent to dom0.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`Client::output`] were sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Whether the caller should read more input now: false while the
    /// output backlog is large (dom0 is not reading our answers), which
    /// bounds the memory one peer can make us use.
    pub fn wants_input(&self) -> bool {
        self.output().len() <= MAX_OUTPUT_BACKLOG
    }

    /// Process bytes received from dom0 (any chunking). On a fatal error
    /// (see the module doc) returns it and breaks the connection; events
    /// and answers produced before it stay available. When already broken,
    /// returns [`QdbError::Broken`] and touches nothing.
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

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        if matches!(e, Event::Rejected(_) | Event::WriteFailed { .. }) {
            self.diagnostics -= 1;
        }
        Some(e)
    }

    // ----- the replica and its views -----

    /// The replica (stale while [`Phase::Syncing`]).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The value of `key`.
    pub fn read(&self, key: &str) -> Option<&[u8]> {
        self.db.get(key)
    }

    /// The value of `key` if it is UTF-8.
    pub fn read_str(&self, key: &str) -> Option<&str> {
        core::str::from_utf8(self.db.get(key)?).ok()
    }

    /// Our network configuration, as of the last change.
    pub fn net_config(&self) -> Arc<NetConfig> {
        self.net_config.clone()
    }

    /// The connected clients dom0 announced, as of the last change.
    pub fn client_list(&self) -> Arc<ClientList> {
        self.clients.clone()
    }

    /// The last committed rules of `client`.
    pub fn rules(&self, client: IpAddr) -> Option<Arc<RuleSnapshot>> {
        self.rules.get(&client).map(|c| c.snapshot.clone())
    }

    /// Every client with committed rules, in address order.
    pub fn committed_clients(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.rules.keys().copied()
    }

    /// Watch `path`: a path ending in `/` watches every key under it, any
    /// other path that key alone. Each write or removal of a matching key
    /// queues [`Event::Watch`] (once until polled). The path need not
    /// exist.
    pub fn add_watch(&mut self, path: &str) -> Result<WatchId, QdbError> {
        if !check_rm_path(path) {
            return Err(QdbError::BadKey {
                ty: MsgType::CmdWatch,
                path: String::from(path),
            });
        }
        if self.watches.len() >= MAX_WATCHES {
            return Err(QdbError::TooManyWatches);
        }
        let id = WatchId(self.next_watch);
        self.next_watch = self.next_watch.wrapping_add(1);
        self.watches.push(Watch {
            id,
            path: String::from(path),
        });
        Ok(id)
    }

    /// Remove a watch; returns whether it existed. A pending event for it
    /// is dropped too.
    pub fn remove_watch(&mut self, id: WatchId) -> bool {
        let before = self.watches.len();
        self.watches.retain(|w| w.id != id);
        self.events.retain(|e| *e != Event::Watch(id));
        self.watches.len() != before
    }

    /// Publish `key` = `value` to dom0 (e.g. `/qubes-iptables-error`): it
    /// is applied to the replica at once, as the VM daemon does, and sent
    /// as a WRITE; dom0's `RESP_ERROR`, if any, comes back as
    /// [`Event::WriteFailed`]. Only in a live session.
    pub fn write(&mut self, key: &str, value: &[u8]) -> Result<(), QdbError> {
        if let Some(e) = &self.broken {
            return Err(QdbError::Broken(Box::new(e.clone())));
        }
        if self.phase != Phase::Live {
            return Err(QdbError::NotSynced);
        }
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
        encode(MsgType::CmdWrite, key, value, &mut self.out)?;
        self.pending_writes += 1;
        let mut touched = Touched::default();
        self.key_written(key, value, &mut touched);
        self.refresh(touched);
        Ok(())
    }

    // ----- internals -----

    fn fail(&mut self, e: QdbError) -> QdbError {
        log::error!("qubesdb: {e}; the connection must be re-established");
        self.broken = Some(e.clone());
        e
    }

    /// Queue a message whose fields are known to be valid.
    fn send(&mut self, ty: MsgType, path: &str, data: &[u8]) {
        if let Err(e) = encode(ty, path, data, &mut self.out) {
            // Unreachable: paths come from validated headers or constants.
            log::error!("qubesdb: cannot encode {ty} {path:?}: {e}");
        }
    }

    fn push_event(&mut self, e: Event) {
        match &e {
            Event::RulesCommitted { client } | Event::ClientRemoved { client } => {
                let c = *client;
                self.events.retain(|x| {
                    !matches!(x, Event::RulesCommitted { client } | Event::ClientRemoved { client }
                        if *client == c)
                });
                self.events.push_back(e);
            }
            Event::Rejected(_) | Event::WriteFailed { .. } => {
                if self.diagnostics >= MAX_DIAGNOSTIC_EVENTS {
                    self.stats.dropped_events += 1;
                } else {
                    self.diagnostics += 1;
                    self.events.push_back(e);
                }
            }
            _ => {
                if !self.events.contains(&e) {
                    self.events.push_back(e);
                }
            }
        }
    }

    /// Refuse a well-framed message: answer `RESP_ERROR`, report, go on.
    fn reject(&mut self, path: &str, e: QdbError) {
        log::warn!("qubesdb: refused: {e}");
        self.send(MsgType::RespError, path, b"");
        self.stats.rejected += 1;
        self.push_event(Event::Rejected(e));
    }

    fn handle(&mut self, frame: Frame) -> Result<(), QdbError> {
        let Frame { header, data } = frame;
        let ty = header.ty();
        let path = header.into_path();
        match (ty, self.phase) {
            (MsgType::RespOk, _) => {
                if !data.is_empty() {
                    return Err(unexpected_data(ty, path, data.len()));
                }
                if self.pending_writes > 0 {
                    self.pending_writes -= 1;
                } else {
                    log::debug!("qubesdb: spurious RESP_OK for {path:?}");
                }
                Ok(())
            }
            (MsgType::RespError, _) => {
                if !data.is_empty() {
                    return Err(unexpected_data(ty, path, data.len()));
                }
                log::warn!("qubesdb: dom0 answered RESP_ERROR for {path:?}");
                if self.pending_writes > 0 {
                    self.pending_writes -= 1;
                    self.push_event(Event::WriteFailed { path });
                }
                Ok(())
            }
            (MsgType::RespMultiread, Phase::Syncing) => self.dump_entry(path, data),
            (MsgType::CmdWrite, Phase::Live) => {
                self.pushed_write(path, data);
                Ok(())
            }
            (MsgType::CmdRm, Phase::Live) => {
                self.pushed_rm(path, data);
                Ok(())
            }
            (MsgType::RespMultiread, Phase::Live) => Err(QdbError::Unexpected {
                ty,
                path,
                during: "after the dump ended",
            }),
            (MsgType::CmdWrite | MsgType::CmdRm, Phase::Syncing) => Err(QdbError::Unexpected {
                ty,
                path,
                during: "before the dump ended",
            }),
            (MsgType::CmdMultiread, _) => Err(QdbError::Unexpected {
                ty,
                path,
                during: "from dom0 (the VM serves no dumps)",
            }),
            // The decoder lets only the six vchan types through.
            (other, _) => Err(QdbError::Wire(WireError::NotOnVchan(other))),
        }
    }

    fn dump_entry(&mut self, path: String, data: Vec<u8>) -> Result<(), QdbError> {
        let ty = MsgType::RespMultiread;
        if path.is_empty() {
            if !data.is_empty() {
                return Err(unexpected_data(ty, path, data.len()));
            }
            self.finish_dump();
            return Ok(());
        }
        if let Err(e) = check_data(&data) {
            return Err(value_error(ty, path, e));
        }
        if !check_key(&path) {
            return Err(QdbError::BadKey { ty, path });
        }
        if self.fresh.write(&path, &data).is_err() {
            return Err(QdbError::DatabaseFull { path });
        }
        Ok(())
    }

    fn finish_dump(&mut self) {
        let fresh = core::mem::replace(&mut self.fresh, self.db.empty_like());
        let old = core::mem::replace(&mut self.db, fresh);
        self.phase = Phase::Live;
        self.stats.syncs += 1;
        log::info!(
            "qubesdb: synchronised ({} entries, {} bytes)",
            self.db.len(),
            self.db.size()
        );

        // Watches: every key added, changed or removed.
        let mut changed: BTreeSet<&str> = BTreeSet::new();
        for (k, v) in self.db.iter() {
            if old.get(k) != Some(v) {
                changed.insert(k);
            }
        }
        for (k, _) in old.iter() {
            if self.db.get(k).is_none() {
                changed.insert(k);
            }
        }
        let fired: Vec<WatchId> = self
            .watches
            .iter()
            .filter(|w| changed.iter().any(|k| w.matches(k)))
            .map(|w| w.id)
            .collect();
        for id in fired {
            self.push_event(Event::Watch(id));
        }

        self.refresh(Touched {
            config: true,
            clients: true,
        });

        // Rules: every present, empty commit key is a commit.
        let mut found: BTreeMap<IpAddr, String> = BTreeMap::new();
        for (key, value) in self.db.entries_under(FIREWALL_PREFIX) {
            if let Some(ip) = commit_key_client(key) {
                if value.is_empty() {
                    found.insert(ip, String::from(key));
                } else {
                    log::warn!("qubesdb: {key} holds a value; not a commit");
                }
            }
        }
        let gone: Vec<IpAddr> = self
            .rules
            .keys()
            .filter(|ip| !found.contains_key(ip))
            .copied()
            .collect();
        for ip in gone {
            self.rules.remove(&ip);
            self.push_event(Event::ClientRemoved { client: ip });
        }
        for (ip, key) in found {
            let snap = RuleSnapshot::capture(&self.db, &key, ip, self.next_generation);
            let same = self
                .rules
                .get(&ip)
                .is_some_and(|c| c.key == key && c.snapshot.same_entries(&snap));
            if !same {
                self.commit(ip, key, snap);
            }
        }
        self.push_event(Event::Synced);
    }

    fn commit(&mut self, ip: IpAddr, key: String, snap: RuleSnapshot) {
        log::info!(
            "qubesdb: rules committed for {ip} ({} entries, generation {})",
            snap.len(),
            snap.generation()
        );
        self.next_generation += 1;
        self.stats.commits += 1;
        self.rules.insert(
            ip,
            Committed {
                key,
                snapshot: Arc::new(snap),
            },
        );
        self.push_event(Event::RulesCommitted { client: ip });
    }

    fn pushed_write(&mut self, path: String, data: Vec<u8>) {
        let ty = MsgType::CmdWrite;
        if let Err(e) = check_data(&data) {
            let e = value_error(ty, path.clone(), e);
            return self.reject(&path, e);
        }
        if !check_key(&path) {
            let e = QdbError::BadKey {
                ty,
                path: path.clone(),
            };
            return self.reject(&path, e);
        }
        if self.db.write(&path, &data).is_err() {
            let e = QdbError::DatabaseFull { path: path.clone() };
            return self.reject(&path, e);
        }
        self.send(MsgType::RespOk, &path, b"");
        self.stats.writes += 1;
        log::debug!("qubesdb: write {path}");
        let mut touched = Touched::default();
        self.key_written(&path, &data, &mut touched);
        self.refresh(touched);
    }

    fn pushed_rm(&mut self, path: String, data: Vec<u8>) {
        let ty = MsgType::CmdRm;
        if !data.is_empty() {
            let e = unexpected_data(ty, path.clone(), data.len());
            return self.reject(&path, e);
        }
        if !check_rm_path(&path) {
            let e = QdbError::BadKey {
                ty,
                path: path.clone(),
            };
            return self.reject(&path, e);
        }
        let removed = self.db.remove(&path);
        if removed.is_empty() {
            log::warn!("qubesdb: rm {path}: not in the replica (answered OK)");
        }
        self.send(MsgType::RespOk, &path, b"");
        self.stats.removes += 1;
        log::debug!("qubesdb: rm {path} ({} keys)", removed.len());
        let mut touched = Touched::default();
        for key in &removed {
            self.key_removed(key, &mut touched);
        }
        self.refresh(touched);
    }

    fn fire_watches(&mut self, key: &str) {
        let fired: Vec<WatchId> = self
            .watches
            .iter()
            .filter(|w| w.matches(key))
            .map(|w| w.id)
            .collect();
        for id in fired {
            self.push_event(Event::Watch(id));
        }
    }

    fn key_written(&mut self, key: &str, value: &[u8], touched: &mut Touched) {
        self.fire_watches(key);
        touched.config |= is_net_config_key(key);
        touched.clients |= is_client_list_key(key);
        match commit_key_client(key) {
            Some(ip) if value.is_empty() => {
                let snap = RuleSnapshot::capture(&self.db, key, ip, self.next_generation);
                self.commit(ip, String::from(key), snap);
            }
            Some(_) => log::warn!("qubesdb: non-empty write to {key}; not a commit"),
            None if is_commit_shaped(key) && value.is_empty() => {
                log::warn!("qubesdb: commit {key} does not name an IP address; ignored");
            }
            None => {}
        }
    }

    fn key_removed(&mut self, key: &str, touched: &mut Touched) {
        self.fire_watches(key);
        touched.config |= is_net_config_key(key);
        touched.clients |= is_client_list_key(key);
        if let Some(ip) = commit_key_client(key) {
            if self.rules.get(&ip).is_some_and(|c| c.key == key) {
                log::info!("qubesdb: rules of {ip} removed");
                self.rules.remove(&ip);
                self.push_event(Event::ClientRemoved { client: ip });
            }
        }
    }

    fn refresh(&mut self, touched: Touched) {
        if touched.config {
            let new = NetConfig::from_db(&self.db);
            if *self.net_config != new {
                if !new.invalid.is_empty() {
                    log::warn!("qubesdb: malformed configuration keys: {:?}", new.invalid);
                }
                self.net_config = Arc::new(new);
                self.push_event(Event::ConfigChanged);
            }
        }
        if touched.clients {
            let new = ClientList::from_db(&self.db);
            if *self.clients != new {
                if !new.invalid.is_empty() {
                    log::warn!("qubesdb: malformed client keys: {:?}", new.invalid);
                }
                self.clients = Arc::new(new);
                self.push_event(Event::ClientsChanged);
            }
        }
    }
}

fn unexpected_data(ty: MsgType, path: String, len: usize) -> QdbError {
    QdbError::UnexpectedData { ty, path, len }
}

fn value_error(ty: MsgType, path: String, e: WireError) -> QdbError {
    match e {
        WireError::NulInData { at } => QdbError::NulInValue { ty, path, at },
        other => QdbError::Wire(other),
    }
}
