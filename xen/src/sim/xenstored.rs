//! The simulated xenstored: the xenstore database and the per-connection
//! protocol state, sans-IO.
//!
//! The I/O shell ([`super::host`]) moves bytes between each domain's ring
//! page and this module: it frames requests, calls [`Xenstored::handle`],
//! and writes out what [`Xenstored::take_output`] returns (replies and watch
//! events, in order). dom0's toolstack uses the direct API
//! ([`Xenstored::write`], [`Xenstored::set_perms`], ...), whose changes fire
//! watches like requests do. Nothing here blocks, does I/O, or panics on any
//! request bytes.
//!
//! Behaviour follows Xen's C xenstored (`tools/xenstored`, 4.17 and later);
//! where it differs, this doc says so.
//!
//! # Paths
//! Absolute (`/a/b`) or relative to `/local/domain/<caller>`; characters
//! `A-Za-z0-9-/_@`; no `//`, no trailing `/` except `/` itself; at most 3072
//! bytes, and at most 2048 after a `/local/domain/<id>/` prefix (or in all,
//! without one). Anything else is `EINVAL`. Special paths (`@...`) are
//! accepted by WATCH, UNWATCH, GET_PERMS and SET_PERMS only (as
//! xenstored); `@introduceDomain` and `@releaseDomain` exist as nodes owned
//! by dom0 (`n0`), so only dom0 or a domain dom0 gives read access to them
//! receives their events (everyone gets the initial event of a WATCH).
//!
//! # Permissions
//! A node's permission list starts with its owner, whose access letter is
//! also the default for unlisted domains. dom0 (privileged) and the owner
//! may do anything; others get their own entry's access, else the default.
//! Reads (READ, DIRECTORY, DIRECTORY_PART, GET_PERMS) need `r`; WRITE,
//! MKDIR and RM need `w` on the node. A missing node answers `ENOENT` only
//! if the caller has the wanted access on its nearest existing ancestor,
//! else `EACCES` (xenstored's `errno_from_parents`); so creating a node
//! needs `w` on the nearest existing ancestor. New nodes (and missing
//! ancestors, created with empty values) copy that ancestor's permission
//! list; when an unprivileged domain creates them, the first entry's domid
//! becomes the creator's and its access letter stays (xenstored's
//! `construct_node`): under `[n0, r5]` domain 5 creates `[n5, r5]`.
//! SET_PERMS needs ownership (or dom0); an unprivileged owner may not name a
//! different owner (`EPERM`). Not modelled: xenstored's dropping of entries
//! for dead domains (the simulator never reuses a domid).
//!
//! # Watches
//! WATCH `path\0token\0` registers `(path, token)` on the connection
//! (`EEXIST` if already there) and queues one event at once, after the
//! `OK` reply, with the path as given. Afterwards a change of a node fires
//! the watches on that node and on its ancestors (write, mkdir of a new
//! node, set_perms); the event path is the changed node, relative (the
//! `/local/domain/<id>/` prefix stripped) if the watch was registered with
//! a relative path. RM removes the subtree bottom-up: each node below the
//! removed one fires only the watches on exactly that node, and the
//! removed node fires the watches on it and its ancestors (xenstored's
//! `rm_node`); watches on never-existing paths below fire nothing.
//!
//! A connection receives an event only if it may read the changed node or
//! its parent (for a removed node: as they were just before the removal;
//! after SET_PERMS also under the old permissions), as xenstored's
//! `watch_permitted`. For a change committed by a transaction: the node's
//! permissions when the transaction first accessed it, or the committed
//! node's or its parent's.
//!
//! Ordering on a connection is xenstored's: events a request triggers are
//! queued before its reply (they are queued while the request runs; the
//! reply last), except WATCH's initial event, which follows the `OK`. An
//! event identical (path and token) to one still queued is dropped, except
//! for special paths.
//!
//! # Transactions
//! As xenstored: a transaction works on its own copy of each node it
//! accesses, taken at first access; its changes are invisible to others
//! until TRANSACTION_END `T\0`, which fails with `EAGAIN` if any node the
//! transaction accessed (read, written or found missing) has changed in the
//! committed tree since that first access (per-node generation counts), and
//! otherwise writes its changes and fires their watch events in first-access
//! order. `F\0` discards. Either way the transaction is gone afterwards. An
//! unknown `tx_id` is `ENOENT` (WATCH and UNWATCH ignore `tx_id`); a
//! TRANSACTION_START inside a transaction is `EBUSY`.
//!
//! # Bounds (unprivileged domains; dom0 is trusted)
//! [`MAX_NODES_PER_DOMAIN`] owned nodes, [`MAX_NODE_SIZE`] per node,
//! [`MAX_PERMS_PER_NODE`] entries (all `ENOSPC`); [`MAX_WATCHES_PER_DOMAIN`]
//! watches (`E2BIG`); [`MAX_TRANSACTIONS_PER_DOMAIN`] open transactions
//! (`ENOSPC`), each accessing at most [`MAX_TRANSACTION_NODES`] nodes
//! (`ENOSPC`, and the commit fails). Every connection's output queue is
//! bounded: above [`MAX_QUEUED_EVENT_BYTES`] new watch events are dropped,
//! above [`MAX_QUEUED_BYTES`] replies too (a client that never reads its
//! ring has given up anyway); each drop is counted and the first of a
//! series is logged. Values written through the toolstack API are at most
//! 4096 bytes (`E2BIG`), as a request's payload is.
//!
//! The node-size bound counts a node's child list, so an unprivileged
//! domain cannot grow one directory past a few hundred children (as in
//! xenstored).
//!
//! # Privileged and unimplemented requests
//! CONTROL, INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, RESUME and
//! SET_TARGET are dom0's: others get `EACCES`. Of these only
//! IS_DOMAIN_INTRODUCED is implemented; the others answer `ENOSYS` (the
//! simulated toolstack introduces and releases domains through
//! [`Xenstored::introduce_domain`] and [`Xenstored::release_domain`]).
//! Types xenstored does not handle (WATCH_EVENT, ERROR, 20, 23 and above)
//! answer `ENOSYS`. No write rate limiting, no watch-event timeouts.

mod db;
mod path;
#[cfg(test)]
mod tests;

use core::fmt;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use crate::abi::domid::DOMID_SELF;
use crate::abi::xs_wire::{msg, XENSTORE_PAYLOAD_MAX};
use crate::abi::DomId;
use crate::store::wire::{take_cstr, Header, XsError, HEADER_LEN};
use db::{Caller, Db, Fire, Op, Tx, READ};
use path::{canonicalize, home, is_child};

pub use crate::store::perm::Access;

/// Nodes an unprivileged domain may own (xenstored's default quota).
pub const MAX_NODES_PER_DOMAIN: usize = 1000;
/// Largest node an unprivileged domain may write: 16 bytes of header, 8
/// per permission entry, the value, and each child name plus a NUL.
pub const MAX_NODE_SIZE: usize = 2048;
/// Permission entries an unprivileged domain may give a node.
pub const MAX_PERMS_PER_NODE: usize = 5;
/// Watches an unprivileged domain may hold.
pub const MAX_WATCHES_PER_DOMAIN: usize = 128;
/// Transactions an unprivileged domain may have open.
pub const MAX_TRANSACTIONS_PER_DOMAIN: usize = 10;
/// Nodes an unprivileged domain's transaction may access.
pub const MAX_TRANSACTION_NODES: usize = 1024;
/// Queued output above which a connection's new watch events are dropped.
pub const MAX_QUEUED_EVENT_BYTES: usize = 1 << 20;
/// Queued output above which a connection's replies are dropped too.
pub const MAX_QUEUED_BYTES: usize = 2 << 20;

/// One entry of a node's permission list: a domain and what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain (the owner, in a list's first entry).
    pub domid: DomId,
    /// Its access (in a first entry: the default for unlisted domains).
    pub access: Access,
}

impl Perm {
    /// An entry.
    pub const fn new(domid: DomId, access: Access) -> Perm {
        Perm { domid, access }
    }
    /// `n<domid>`.
    pub const fn none(domid: DomId) -> Perm {
        Perm::new(domid, Access::None)
    }
    /// `r<domid>`.
    pub const fn read(domid: DomId) -> Perm {
        Perm::new(domid, Access::Read)
    }
    /// `w<domid>`.
    pub const fn write(domid: DomId) -> Perm {
        Perm::new(domid, Access::Write)
    }
    /// `b<domid>`.
    pub const fn both(domid: DomId) -> Perm {
        Perm::new(domid, Access::Both)
    }
    /// Parse the wire form (`b"r5"`, no NUL).
    pub fn parse(s: &[u8]) -> Option<Perm> {
        crate::store::Perm::parse(s).ok().map(Perm::from)
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

impl From<crate::store::Perm> for Perm {
    fn from(p: crate::store::Perm) -> Perm {
        Perm::new(p.domid, p.access)
    }
}

impl From<Perm> for crate::store::Perm {
    fn from(p: Perm) -> crate::store::Perm {
        crate::store::Perm::new(p.domid, p.access)
    }
}

/// A client connection: a domain's ring, or a direct dom0 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u32);

#[derive(Debug)]
struct Watch {
    /// Canonical path.
    path: String,
    token: Vec<u8>,
    /// Bytes stripped from event paths (a relative watch's
    /// `/local/domain/<id>/`).
    prefix_len: usize,
}

#[derive(Debug)]
struct Conn {
    domid: DomId,
    watches: Vec<Watch>,
    txs: BTreeMap<u32, Tx>,
    next_tx: u32,
    out: VecDeque<(Header, Vec<u8>)>,
    /// Header and payload bytes in `out`.
    out_bytes: usize,
    /// The payloads of the non-special watch events in `out` (each is
    /// there once: duplicates are dropped without scanning the queue).
    queued_events: HashSet<Vec<u8>>,
    dropped: u64,
    overflow_logged: bool,
}

impl Conn {
    fn new(domid: DomId) -> Conn {
        Conn {
            domid,
            watches: Vec::new(),
            txs: BTreeMap::new(),
            next_tx: 1,
            out: VecDeque::new(),
            out_bytes: 0,
            queued_events: HashSet::new(),
            dropped: 0,
            overflow_logged: false,
        }
    }

    fn overflow(&mut self, what: &str) {
        self.dropped += 1;
        if !self.overflow_logged {
            self.overflow_logged = true;
            log::warn!(
                "xenstored: d{} is not reading its output ({} bytes queued); dropping {what}",
                self.domid,
                self.out_bytes
            );
        }
    }

    fn push_reply(&mut self, h: Header, body: Vec<u8>) {
        let size = HEADER_LEN + body.len();
        if self.out_bytes + size > MAX_QUEUED_BYTES {
            self.overflow("replies");
            return;
        }
        self.out_bytes += size;
        self.out.push_back((h, body));
    }

    fn push_event(&mut self, path: &str, token: &[u8]) {
        let mut body = Vec::with_capacity(path.len() + token.len() + 2);
        body.extend_from_slice(path.as_bytes());
        body.push(0);
        body.extend_from_slice(token);
        body.push(0);
        if body.len() > XENSTORE_PAYLOAD_MAX {
            return;
        }
        let special = path.starts_with('@');
        if !special && self.queued_events.contains(&body) {
            return;
        }
        let size = HEADER_LEN + body.len();
        if self.out_bytes + size > MAX_QUEUED_EVENT_BYTES {
            self.overflow("watch events");
            return;
        }
        self.out_bytes += size;
        if !special {
            self.queued_events.insert(body.clone());
        }
        let h = Header {
            ty: msg::WATCH_EVENT,
            req_id: 0,
            tx_id: 0,
            len: body.len() as u32,
        };
        self.out.push_back((h, body));
    }

    fn pop(&mut self) -> Option<(Header, Vec<u8>)> {
        let m = self.out.pop_front()?;
        self.out_bytes = self.out_bytes.saturating_sub(HEADER_LEN + m.1.len());
        if m.0.ty == msg::WATCH_EVENT {
            self.queued_events.remove(&m.1);
        }
        if self.out.is_empty() {
            self.overflow_logged = false;
        }
        Some(m)
    }
}

/// The xenstore database and every connection's state (see the module
/// doc).
#[derive(Debug)]
pub struct Xenstored {
    db: Db,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u32,
    introduced: BTreeSet<DomId>,
}

impl Default for Xenstored {
    fn default() -> Self {
        Xenstored::new()
    }
}

const OK: &[u8] = b"OK\0";

/// The only argument of a request: the payload is exactly one string and
/// its NUL (xenstored's `onearg`).
fn onearg(p: &[u8]) -> Result<&[u8], XsError> {
    match take_cstr(p) {
        Ok((s, [])) => Ok(s),
        _ => Err(XsError::Einval),
    }
}

/// The NUL-terminated strings a payload starts with; bytes after the last
/// NUL are ignored (xenstored's `get_strings`).
fn cstrings(mut p: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    while let Ok((s, rest)) = take_cstr(p) {
        v.push(s);
        p = rest;
    }
    v
}

/// C's `atoi` as xenstored uses it on domids and offsets: leading blanks,
/// an optional sign, then digits up to the first non-digit; no digits is 0.
/// Saturates instead of overflowing.
fn c_atoi(b: &[u8]) -> i32 {
    let mut it = b
        .iter()
        .copied()
        .skip_while(|c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .peekable();
    let neg = match it.peek() {
        Some(b'-') => {
            it.next();
            true
        }
        Some(b'+') => {
            it.next();
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    for c in it.take_while(u8::is_ascii_digit) {
        v = (v * 10 + i64::from(c - b'0')).min(1 << 32);
    }
    let v = if neg { -v } else { v };
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Deliver watch events for `fires` to every connection allowed to see
/// them, in connection order.
fn deliver(conns: &mut BTreeMap<ConnId, Conn>, fires: &[Fire]) {
    for f in fires {
        for c in conns.values_mut() {
            let caller = Caller::of(c.domid);
            if !f.perm_sets.iter().any(|s| caller.perm(s) & READ != 0) {
                continue;
            }
            let hits: Vec<(String, Vec<u8>)> = c
                .watches
                .iter()
                .filter(|w| {
                    if f.exact {
                        w.path == f.path
                    } else {
                        is_child(&f.path, &w.path)
                    }
                })
                .map(|w| {
                    (
                        f.path.get(w.prefix_len..).unwrap_or(&f.path).to_string(),
                        w.token.clone(),
                    )
                })
                .collect();
            for (p, t) in hits {
                c.push_event(&p, &t);
            }
        }
    }
}

/// A tree request (READ, WRITE, ...) as `op.caller`, inside `op`'s
/// transaction if any. Returns the reply payload.
fn tree_request(op: &mut Op<'_>, ty: u32, p: &[u8]) -> Result<Vec<u8>, XsError> {
    let domid = op.caller.domid;
    match ty {
        msg::READ => {
            let path = canonicalize(domid, onearg(p)?, false)?;
            Ok(op.get_checked(&path, READ)?.value)
        }
        msg::DIRECTORY => {
            let path = canonicalize(domid, onearg(p)?, false)?;
            Ok(op.get_checked(&path, READ)?.children_bytes())
        }
        msg::DIRECTORY_PART => directory_part(op, p),
        msg::GET_PERMS => {
            let path = canonicalize(domid, onearg(p)?, true)?;
            let mut out = Vec::new();
            for perm in op.get_checked(&path, READ)?.perms {
                out.extend_from_slice(perm.to_string().as_bytes());
                out.push(0);
            }
            Ok(out)
        }
        msg::WRITE => {
            let (raw, value) = take_cstr(p).map_err(|_| XsError::Einval)?;
            let path = canonicalize(domid, raw, false)?;
            op.write(&path, value).map(|()| OK.to_vec())
        }
        msg::MKDIR => {
            let path = canonicalize(domid, onearg(p)?, false)?;
            op.mkdir(&path).map(|()| OK.to_vec())
        }
        msg::RM => {
            let path = canonicalize(domid, onearg(p)?, false)?;
            op.rm(&path).map(|()| OK.to_vec())
        }
        msg::SET_PERMS => {
            let fields = cstrings(p);
            let (raw, perms) = match fields.split_first() {
                Some((raw, perms)) if !perms.is_empty() => (*raw, perms),
                _ => return Err(XsError::Einval),
            };
            if !op.caller.privileged && perms.len() > MAX_PERMS_PER_NODE {
                return Err(XsError::Enospc);
            }
            let perms = perms
                .iter()
                .map(|s| Perm::parse(s).ok_or(XsError::Einval))
                .collect::<Result<Vec<_>, _>>()?;
            let path = canonicalize(domid, raw, true)?;
            op.set_perms(&path, perms).map(|()| OK.to_vec())
        }
        _ => Err(XsError::Enosys),
    }
}

/// DIRECTORY_PART `path\0offset\0`: the node's generation and NUL, then
/// as many child names (each with its NUL) from byte `offset` of the
/// child list as fit in a payload, then one more NUL if the list ended
/// (xenstored's `send_directory_part`).
fn directory_part(op: &mut Op<'_>, p: &[u8]) -> Result<Vec<u8>, XsError> {
    if p.iter().filter(|&&b| b == 0).count() != 2 {
        return Err(XsError::Einval);
    }
    let (raw, rest) = take_cstr(p).map_err(|_| XsError::Einval)?;
    let (off, _) = take_cstr(rest).map_err(|_| XsError::Einval)?;
    let path = canonicalize(op.caller.domid, raw, false)?;
    let node = op.get_checked(&path, READ)?;
    let children = node.children_bytes();
    let off = c_atoi(off) as u32 as usize;
    let mut out = node.generation.to_string().into_bytes();
    out.push(0);
    let Some(rest) = children.get(off..).filter(|r| !r.is_empty()) else {
        out.push(0);
        return Ok(out);
    };
    let maxlen = XENSTORE_PAYLOAD_MAX - out.len() - 1;
    let mut len = 0;
    while len < rest.len() {
        let tail = rest.get(len..).unwrap_or(&[]);
        let name_len = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        if len + name_len >= maxlen {
            break;
        }
        len += name_len + 1;
    }
    let len = len.min(rest.len());
    out.extend_from_slice(rest.get(..len).unwrap_or(&[]));
    if len == rest.len() {
        out.push(0);
    }
    Ok(out)
}

impl Xenstored {
    /// A fresh store: `/` and `/tool/xenstored` and the special nodes, all
    /// owned by dom0 with no access for others; no domain introduced.
    pub fn new() -> Xenstored {
        Xenstored {
            db: Db::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            introduced: BTreeSet::new(),
        }
    }

    /// Open a connection for domain `domid` (its ring, or for dom0 one of
    /// any number of direct connections). dom0's connections are
    /// privileged.
    pub fn connect(&mut self, domid: DomId) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn = self.next_conn.wrapping_add(1);
        self.conns.insert(id, Conn::new(domid));
        id
    }

    /// Close a connection: its watches, transactions and queued output go.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// The domain a connection belongs to, if it is open.
    pub fn conn_domid(&self, conn: ConnId) -> Option<DomId> {
        self.conns.get(&conn).map(|c| c.domid)
    }

    /// Handle one request (`h.len` is not consulted: `payload` is the
    /// payload). The reply, with the request's `req_id` and `tx_id` and its
    /// type or `XS_ERROR` with `E...\0`, is queued on the connection's
    /// output after any watch events the request triggered (see the module
    /// doc); events for other connections go to theirs. A request on a
    /// closed connection is dropped.
    pub fn handle(&mut self, conn: ConnId, h: Header, payload: &[u8]) {
        let Some(domid) = self.conn_domid(conn) else {
            log::warn!("xenstored: request on closed connection {conn:?} dropped");
            return;
        };
        let caller = Caller::of(domid);
        let mut fires = Vec::new();
        let mut initial = None;
        let result = if payload.len() > XENSTORE_PAYLOAD_MAX {
            Err(XsError::Einval)
        } else {
            self.dispatch(conn, caller, h, payload, &mut fires, &mut initial)
        };
        deliver(&mut self.conns, &fires);
        let (ty, body) = match result {
            Ok(body) if body.len() <= XENSTORE_PAYLOAD_MAX => (h.ty, body),
            Ok(_) => (msg::ERROR, b"E2BIG\0".to_vec()),
            Err(e) => {
                let mut b = e.name().as_bytes().to_vec();
                b.push(0);
                (msg::ERROR, b)
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            let len = body.len() as u32;
            c.push_reply(
                Header {
                    ty,
                    req_id: h.req_id,
                    tx_id: h.tx_id,
                    len,
                },
                body,
            );
            if let Some((path, token)) = initial {
                c.push_event(&path, &token);
            }
        }
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        caller: Caller,
        h: Header,
        p: &[u8],
        fires: &mut Vec<Fire>,
        initial: &mut Option<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>, XsError> {
        use msg::*;
        let privileged_only = matches!(
            h.ty,
            CONTROL | INTRODUCE | RELEASE | IS_DOMAIN_INTRODUCED | RESUME | SET_TARGET
        );
        let known = privileged_only
            || matches!(
                h.ty,
                DIRECTORY
                    | READ
                    | GET_PERMS
                    | WATCH
                    | UNWATCH
                    | TRANSACTION_START
                    | TRANSACTION_END
                    | GET_DOMAIN_PATH
                    | WRITE
                    | MKDIR
                    | RM
                    | SET_PERMS
                    | RESET_WATCHES
                    | DIRECTORY_PART
            );
        if !known {
            return Err(XsError::Enosys);
        }
        if privileged_only && !caller.privileged {
            return Err(XsError::Eacces);
        }
        match h.ty {
            WATCH => return self.watch(conn, caller, p, initial),
            UNWATCH => return self.unwatch(conn, caller, p),
            _ => {}
        }
        let tx = match h.tx_id {
            0 => None,
            id if self
                .conns
                .get(&conn)
                .is_some_and(|c| c.txs.contains_key(&id)) =>
            {
                Some(id)
            }
            _ => return Err(XsError::Enoent),
        };
        match h.ty {
            TRANSACTION_START => self.tx_start(conn, caller, tx),
            TRANSACTION_END => {
                let commit = match onearg(p)? {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(XsError::Einval),
                };
                let id = tx.ok_or(XsError::Enoent)?;
                let t = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| c.txs.remove(&id))
                    .ok_or(XsError::Enoent)?;
                if commit {
                    fires.extend(t.commit(&mut self.db, caller)?);
                }
                Ok(OK.to_vec())
            }
            RESET_WATCHES => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.watches.clear();
                    c.txs.clear();
                }
                Ok(OK.to_vec())
            }
            GET_DOMAIN_PATH => {
                let d = c_atoi(onearg(p)?) as u32;
                Ok(format!("/local/domain/{d}\0").into_bytes())
            }
            IS_DOMAIN_INTRODUCED => {
                let d = c_atoi(onearg(p)?) as u32;
                let yes = d == u32::from(DOMID_SELF)
                    || DomId::try_from(d).is_ok_and(|d| self.introduced.contains(&d));
                Ok(if yes {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                })
            }
            CONTROL | INTRODUCE | RELEASE | RESUME | SET_TARGET => Err(XsError::Enosys),
            ty => {
                let Xenstored { db, conns, .. } = self;
                let t = match tx {
                    Some(id) => conns.get_mut(&conn).and_then(|c| c.txs.get_mut(&id)),
                    None => None,
                };
                let mut op = Op::new(db, t, caller);
                let r = tree_request(&mut op, ty, p);
                fires.append(&mut op.fires);
                r
            }
        }
    }

    fn tx_start(
        &mut self,
        conn: ConnId,
        caller: Caller,
        tx: Option<u32>,
    ) -> Result<Vec<u8>, XsError> {
        if tx.is_some() {
            return Err(XsError::Ebusy);
        }
        if !caller.privileged {
            let open: usize = self
                .conns
                .values()
                .filter(|c| c.domid == caller.domid)
                .map(|c| c.txs.len())
                .sum();
            if open >= MAX_TRANSACTIONS_PER_DOMAIN {
                return Err(XsError::Enospc);
            }
        }
        let c = self.conns.get_mut(&conn).ok_or(XsError::Einval)?;
        let id = loop {
            let id = c.next_tx;
            c.next_tx = c.next_tx.wrapping_add(1);
            if id != 0 && !c.txs.contains_key(&id) {
                break id;
            }
        };
        c.txs.insert(id, Tx::new(caller));
        Ok(format!("{id}\0").into_bytes())
    }

    fn watch(
        &mut self,
        conn: ConnId,
        caller: Caller,
        p: &[u8],
        initial: &mut Option<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>, XsError> {
        let (raw, token) = match cstrings(p)[..] {
            [raw, token] => (raw, token),
            _ => return Err(XsError::Einval),
        };
        let relative = !matches!(raw.first(), Some(b'/') | Some(b'@'));
        let path = canonicalize(caller.domid, raw, true)?;
        let held: usize = self
            .conns
            .values()
            .filter(|c| c.domid == caller.domid)
            .map(|c| c.watches.len())
            .sum();
        let c = self.conns.get_mut(&conn).ok_or(XsError::Einval)?;
        if c.watches.iter().any(|w| w.path == path && w.token == token) {
            return Err(XsError::Eexist);
        }
        if !caller.privileged && held >= MAX_WATCHES_PER_DOMAIN {
            return Err(XsError::E2big);
        }
        let prefix_len = if relative {
            home(caller.domid).len() + 1
        } else {
            0
        };
        *initial = Some((
            path.get(prefix_len..).unwrap_or(&path).to_string(),
            token.to_vec(),
        ));
        c.watches.push(Watch {
            path,
            token: token.to_vec(),
            prefix_len,
        });
        Ok(OK.to_vec())
    }

    fn unwatch(&mut self, conn: ConnId, caller: Caller, p: &[u8]) -> Result<Vec<u8>, XsError> {
        let (raw, token) = match cstrings(p)[..] {
            [raw, token] => (raw, token),
            _ => return Err(XsError::Einval),
        };
        let path = canonicalize(caller.domid, raw, true)?;
        let c = self.conns.get_mut(&conn).ok_or(XsError::Einval)?;
        let i = c
            .watches
            .iter()
            .position(|w| w.path == path && w.token == token)
            .ok_or(XsError::Enoent)?;
        c.watches.remove(i);
        Ok(OK.to_vec())
    }

    /// Everything queued for a connection (replies and watch events, in
    /// order), removing it from the queue. Empty for a closed connection.
    pub fn take_output(&mut self, conn: ConnId) -> Vec<(Header, Vec<u8>)> {
        self.take_output_limited(conn, usize::MAX)
    }

    /// Like [`take_output`](Self::take_output), but only whole messages
    /// totalling at most `max_bytes` (headers included), except that the
    /// first message is always taken: for a shell with limited room.
    pub fn take_output_limited(
        &mut self,
        conn: ConnId,
        max_bytes: usize,
    ) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get_mut(&conn) else {
            return out;
        };
        let mut total = 0usize;
        while let Some((_, body)) = c.out.front() {
            let size = HEADER_LEN + body.len();
            if !out.is_empty() && total + size > max_bytes {
                break;
            }
            total += size;
            out.extend(c.pop());
        }
        out
    }

    /// Bytes (headers included) queued for a connection.
    pub fn pending_output(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.out_bytes)
    }

    /// Messages dropped because a connection's output queue was full.
    pub fn dropped_output(&self, conn: ConnId) -> u64 {
        self.conns.get(&conn).map_or(0, |c| c.dropped)
    }

    /// Run a tree operation as the toolstack and fire its watches.
    fn as_toolstack<R>(
        &mut self,
        f: impl FnOnce(&mut Op<'_>) -> Result<R, XsError>,
    ) -> Result<R, XsError> {
        let mut op = Op::new(&mut self.db, None, Caller::TOOLSTACK);
        let r = f(&mut op);
        let fires = core::mem::take(&mut op.fires);
        deliver(&mut self.conns, &fires);
        r
    }

    /// Toolstack: write `value` at `path` (absolute, or relative to
    /// `/local/domain/0`), creating missing ancestors with empty values and
    /// the permissions of the nearest existing one.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        if value.len() > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::E2big);
        }
        let path = canonicalize(0, path.as_bytes(), false)?;
        self.as_toolstack(|op| op.write(&path, value))
    }

    /// Toolstack: create `path` (empty) unless it exists.
    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes(), false)?;
        self.as_toolstack(|op| op.mkdir(&path))
    }

    /// Toolstack: remove `path` and everything below it (fine if it is
    /// missing but its parent exists).
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes(), false)?;
        self.as_toolstack(|op| op.rm(&path))
    }

    /// Toolstack: replace the permission list of `path` (special nodes
    /// included). `perms` must not be empty.
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes(), true)?;
        self.as_toolstack(|op| op.set_perms(&path, perms.to_vec()))
    }

    /// Toolstack: the value at `path`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        let path = canonicalize(0, path.as_bytes(), false)?;
        self.db
            .get(&path)
            .map(|n| n.value.clone())
            .ok_or(XsError::Enoent)
    }

    /// Toolstack: the child names of `path`, in creation order.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        let path = canonicalize(0, path.as_bytes(), false)?;
        self.db
            .get(&path)
            .map(|n| n.children.clone())
            .ok_or(XsError::Enoent)
    }

    /// Toolstack: the permission list of `path` (special nodes included).
    pub fn get_perms(&self, path: &str) -> Result<Vec<Perm>, XsError> {
        let path = canonicalize(0, path.as_bytes(), true)?;
        self.db
            .get(&path)
            .map(|n| n.perms.clone())
            .ok_or(XsError::Enoent)
    }

    /// Toolstack: whether `path` exists.
    pub fn exists(&self, path: &str) -> bool {
        canonicalize(0, path.as_bytes(), true).is_ok_and(|p| self.db.get(&p).is_some())
    }

    /// Nodes in the store (special nodes included).
    pub fn node_count(&self) -> usize {
        self.db.len()
    }

    /// Nodes owned by `domid`.
    pub fn owned_nodes(&self, domid: DomId) -> usize {
        self.db.owned(domid)
    }

    /// Check the tree's invariants (tests only).
    #[cfg(test)]
    fn check(&self) {
        self.db.check();
    }

    /// Toolstack: xenstored learns of domain `domid` (`XS_INTRODUCE`).
    /// Watches on `@introduceDomain` fire, except for dom0 or a domain
    /// already introduced. No node is created: the toolstack writes
    /// `/local/domain/<id>` with the permissions it wants.
    pub fn introduce_domain(&mut self, domid: DomId) {
        if self.introduced.insert(domid) && domid != 0 {
            self.fire_special("@introduceDomain");
        }
    }

    /// Toolstack: domain `domid` is gone (`XS_RELEASE`, or xenstored seeing
    /// it die). As xenstored: its connections close (so its own watches do
    /// not fire), every node it still owns is removed with its subtree
    /// (firing watches as RM does), and, if it was introduced, watches on
    /// `@releaseDomain` fire. dom0 cannot be released.
    pub fn release_domain(&mut self, domid: DomId) {
        if domid == 0 {
            log::warn!("xenstored: refusing to release dom0");
            return;
        }
        self.conns.retain(|_, c| c.domid != domid);
        for root in self.db.owned_roots(domid) {
            let r = self.as_toolstack(|op| match op.get(&root)? {
                Some(n) => op.rm_node(&root, n),
                None => Ok(()),
            });
            if let Err(e) = r {
                log::warn!("xenstored: removing {root} of released d{domid} failed: {e}");
            }
        }
        if self.introduced.remove(&domid) {
            self.fire_special("@releaseDomain");
        }
    }

    /// Whether `domid` has been introduced and not released.
    pub fn is_domain_introduced(&self, domid: DomId) -> bool {
        self.introduced.contains(&domid)
    }

    /// Fire the watches on special node `name`, for those who may read it
    /// or `/`.
    fn fire_special(&mut self, name: &str) {
        let Some(node) = self.db.get(name) else {
            log::warn!("xenstored: special node {name} missing");
            return;
        };
        let mut perm_sets = vec![node.perms.clone()];
        perm_sets.extend(self.db.get("/").map(|r| r.perms.clone()));
        deliver(
            &mut self.conns,
            &[Fire {
                path: name.to_string(),
                exact: true,
                perm_sets,
            }],
        );
    }
}
