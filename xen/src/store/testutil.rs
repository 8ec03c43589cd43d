//! Test helpers: the server end of the xenstore rings, a tiny in-memory
//! xenstored, and a fake platform that runs it synchronously, so the
//! client, the transport and the blocking facade can be tested without the
//! simulator.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::mem::offset_of;
use core::sync::atomic::Ordering;

use crate::abi::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
use crate::abi::shared_info::SharedInfo;
use crate::abi::xs_wire::{msg, XENSTORE_RING_SIZE};
use crate::abi::{Errno, EvtchnPort};
use crate::hypervisor::*;
use crate::memory::{Gfn, GuestMemory, LocalPages, SharedMem};
use crate::store::wire::{take_cstr, Header, HEADER_LEN};

use crate::store::transport::layout::*;
const RING: u32 = XENSTORE_RING_SIZE as u32;

/// One message: header plus payload.
pub fn message(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        ty,
        req_id,
        tx_id: 0,
        len: payload.len() as u32,
    };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Split a byte stream of whole messages (panics on a partial one: test
/// helper for streams the client produced).
pub fn parse_requests(mut b: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = Header::parse(b).expect("well-formed request header");
        let end = HEADER_LEN + h.len as usize;
        out.push((h, b[HEADER_LEN..end].to_vec()));
        b = &b[end..];
    }
    out
}

/// The xenstored end of the rings.
pub struct ServerRing {
    mem: SharedMem,
}

impl ServerRing {
    /// Serve the page `mem`.
    pub fn new(mem: SharedMem) -> ServerRing {
        ServerRing { mem }
    }

    /// Consume every request byte the guest has published.
    pub fn take_requests(&mut self) -> Vec<u8> {
        let cons = self.mem.read_u32(REQ_CONS);
        let prod = self.mem.load_u32(REQ_PROD, Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        assert!(n <= RING, "guest request indices out of range");
        let mut out = vec![0u8; n as usize];
        for (i, b) in out.iter_mut().enumerate() {
            *b = self
                .mem
                .read_u8(REQ + (cons.wrapping_add(i as u32) & (RING - 1)) as usize);
        }
        self.mem.store_u32(REQ_CONS, prod, Ordering::Release);
        out
    }

    /// Free space in the response ring.
    pub fn space(&self) -> usize {
        let used = self
            .mem
            .read_u32(RSP_PROD)
            .wrapping_sub(self.mem.read_u32(RSP_CONS));
        (RING - used) as usize
    }

    /// Publish `bytes` as responses (must fit).
    pub fn push(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len() <= self.space(),
            "response ring overflow in test"
        );
        let prod = self.mem.read_u32(RSP_PROD);
        for (i, &b) in bytes.iter().enumerate() {
            self.mem
                .write_u8(RSP + (prod.wrapping_add(i as u32) & (RING - 1)) as usize, b);
        }
        self.mem.store_u32(
            RSP_PROD,
            prod.wrapping_add(bytes.len() as u32),
            Ordering::Release,
        );
    }
}

/// A tiny xenstored: a flat map of absolute paths, watches, and
/// transactions that apply at once (no isolation) but can be told to fail
/// their commits with `EAGAIN`.
#[derive(Default)]
pub struct MiniXenstored {
    /// Absolute path to value.
    pub nodes: BTreeMap<String, Vec<u8>>,
    /// Absolute path to permission strings.
    pub perms: BTreeMap<String, Vec<String>>,
    /// (path as given, token).
    pub watches: Vec<(String, String)>,
    /// The client's domid.
    pub domid: u16,
    /// Fail this many commits with `EAGAIN`.
    pub eagain_commits: u32,
    /// Never answer anything.
    pub silent: bool,
    /// Publish at most this many response bytes per step (0 = no limit).
    pub chunk: usize,
    /// Every request received.
    pub log: Vec<(Header, Vec<u8>)>,
    /// Raw bytes to publish before anything else.
    pub inject: Vec<u8>,
    next_tx: u32,
    inbuf: Vec<u8>,
    outbuf: VecDeque<u8>,
}

impl MiniXenstored {
    /// A server for domain `domid`.
    pub fn new(domid: u16) -> MiniXenstored {
        let mut s = MiniXenstored {
            domid,
            next_tx: 1,
            ..Default::default()
        };
        s.nodes
            .insert(s.abs("domid"), format!("{domid}").into_bytes());
        s
    }

    fn abs(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.into()
        } else {
            format!("/local/domain/{}/{p}", self.domid)
        }
    }

    /// Process published requests and publish responses; true if anything
    /// moved.
    pub fn step(&mut self, ring: &mut ServerRing) -> bool {
        let got = ring.take_requests();
        let mut moved = !got.is_empty();
        if self.silent {
            return moved;
        }
        self.inbuf.extend(got);
        while self.inbuf.len() >= HEADER_LEN {
            let h = Header::parse(&self.inbuf).expect("client sent a bad header");
            let end = HEADER_LEN + h.len as usize;
            if self.inbuf.len() < end {
                break;
            }
            let p: Vec<u8> = self.inbuf[HEADER_LEN..end].to_vec();
            self.inbuf.drain(..end);
            self.log.push((h, p.clone()));
            self.handle(h, &p);
        }
        let inject = core::mem::take(&mut self.inject);
        for b in inject.into_iter().rev() {
            self.outbuf.push_front(b);
        }
        let mut n = ring.space().min(self.outbuf.len());
        if self.chunk > 0 {
            n = n.min(self.chunk);
        }
        if n > 0 {
            let bytes: Vec<u8> = self.outbuf.drain(..n).collect();
            ring.push(&bytes);
            moved = true;
        }
        moved
    }

    fn reply(&mut self, h: Header, payload: &[u8]) {
        let r = Header {
            ty: h.ty,
            req_id: h.req_id,
            tx_id: h.tx_id,
            len: payload.len() as u32,
        };
        self.outbuf.extend(r.encode());
        self.outbuf.extend(payload.iter().copied());
    }

    fn error(&mut self, h: Header, name: &str) {
        let r = Header {
            ty: msg::ERROR,
            ..h
        };
        self.reply(r, format!("{name}\0").as_bytes());
    }

    fn event(&mut self, path: &str, token: &str) {
        self.outbuf.extend(message(
            msg::WATCH_EVENT,
            0,
            format!("{path}\0{token}\0").as_bytes(),
        ));
    }

    /// Fire the watches covering absolute path `changed`.
    fn fire(&mut self, changed: &str) {
        let prefix = format!("/local/domain/{}/", self.domid);
        for (wpath, token) in self.watches.clone() {
            let wabs = self.abs(&wpath);
            let covered = changed == wabs || changed.starts_with(&format!("{wabs}/"));
            if covered {
                let shown: String = match wpath.starts_with('/') {
                    true => changed.into(),
                    false => changed.strip_prefix(&prefix).unwrap_or(changed).into(),
                };
                self.event(&shown, &token);
            }
        }
    }

    fn handle(&mut self, h: Header, p: &[u8]) {
        let cstr = |b: &[u8]| {
            let (f, rest) = take_cstr(b).expect("NUL-terminated field");
            (String::from_utf8(f.to_vec()).expect("utf8"), rest.to_vec())
        };
        match h.ty {
            msg::READ => {
                let path = self.abs(&cstr(p).0);
                match self.nodes.get(&path).cloned() {
                    Some(v) => self.reply(h, &v),
                    None => self.error(h, "ENOENT"),
                }
            }
            msg::WRITE | msg::MKDIR => {
                let (path, value) = cstr(p);
                let path = self.abs(&path);
                if h.ty == msg::WRITE || !self.nodes.contains_key(&path) {
                    self.nodes.insert(path.clone(), value);
                }
                self.reply(h, b"OK\0");
                self.fire(&path);
            }
            msg::RM => {
                let path = self.abs(&cstr(p).0);
                let sub = format!("{path}/");
                self.nodes.retain(|k, _| *k != path && !k.starts_with(&sub));
                self.reply(h, b"OK\0");
                self.fire(&path);
            }
            msg::DIRECTORY => {
                let path = self.abs(&cstr(p).0);
                let sub = format!("{path}/");
                let mut names: Vec<String> = self
                    .nodes
                    .keys()
                    .filter_map(|k| k.strip_prefix(&sub))
                    .map(|rest| rest.split('/').next().unwrap_or("").into())
                    .collect();
                names.dedup();
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(n.as_bytes());
                    out.push(0);
                }
                self.reply(h, &out);
            }
            msg::GET_PERMS => {
                let path = self.abs(&cstr(p).0);
                let perms = self.perms.get(&path).cloned();
                let perms = perms.unwrap_or_else(|| vec![format!("n{}", self.domid)]);
                let mut out = Vec::new();
                for s in perms {
                    out.extend_from_slice(s.as_bytes());
                    out.push(0);
                }
                self.reply(h, &out);
            }
            msg::SET_PERMS => {
                let (path, mut rest) = cstr(p);
                let mut list = Vec::new();
                while !rest.is_empty() {
                    let (s, r) = cstr(&rest);
                    list.push(s);
                    rest = r;
                }
                let path = self.abs(&path);
                self.perms.insert(path, list);
                self.reply(h, b"OK\0");
            }
            msg::WATCH => {
                let (path, rest) = cstr(p);
                let (token, _) = cstr(&rest);
                self.watches.push((path.clone(), token.clone()));
                self.reply(h, b"OK\0");
                self.event(&path, &token);
            }
            msg::UNWATCH => {
                let (path, rest) = cstr(p);
                let (token, _) = cstr(&rest);
                match self
                    .watches
                    .iter()
                    .position(|w| *w == (path.clone(), token.clone()))
                {
                    Some(i) => {
                        self.watches.remove(i);
                        self.reply(h, b"OK\0");
                    }
                    None => self.error(h, "ENOENT"),
                }
            }
            msg::TRANSACTION_START => {
                let id = self.next_tx;
                self.next_tx += 1;
                self.reply(h, format!("{id}\0").as_bytes());
            }
            msg::TRANSACTION_END => {
                if p == b"T\0" && self.eagain_commits > 0 {
                    self.eagain_commits -= 1;
                    self.error(h, "EAGAIN");
                } else {
                    self.reply(h, b"OK\0");
                }
            }
            msg::GET_DOMAIN_PATH => {
                let d = cstr(p).0;
                self.reply(h, format!("/local/domain/{d}\0").as_bytes());
            }
            msg::RESET_WATCHES => {
                self.watches.clear();
                self.reply(h, b"OK\0");
            }
            _ => self.error(h, "ENOSYS"),
        }
    }
}

/// Where the fake platform puts things.
pub const SHARED_INFO_GFN: Gfn = Gfn(0x100);
/// The xenstore page.
pub const STORE_GFN: Gfn = Gfn(0x200);
/// The xenstore port.
pub const STORE_PORT: EvtchnPort = 3;

/// A platform with a shared info page and a xenstore page, whose xenstored
/// ([`MiniXenstored`]) runs synchronously whenever the guest notifies it or
/// polls. Time advances 1 ms per poll.
#[derive(Clone)]
pub struct FakePlatform(Rc<FakeInner>);

/// The state behind a [`FakePlatform`].
pub struct FakeInner {
    shared: LocalPages,
    store: LocalPages,
    /// The server.
    pub server: RefCell<MiniXenstored>,
    /// Xen system time.
    pub now: Cell<u64>,
    /// `EVTCHNOP_send` calls on the store port.
    pub sends: Cell<u32>,
    /// `SCHEDOP_poll` calls.
    pub polls: Cell<u32>,
    /// Fail `EVTCHNOP_send` with this.
    pub send_error: Cell<Option<Errno>>,
    /// Run the server only when the guest polls, not when it notifies: a
    /// server that answers later, so the guest really sleeps.
    pub lazy: Cell<bool>,
}

impl FakePlatform {
    /// A fresh platform for domain `domid`.
    pub fn new(domid: u16) -> FakePlatform {
        FakePlatform(Rc::new(FakeInner {
            shared: LocalPages::new(1),
            store: LocalPages::new(1),
            server: RefCell::new(MiniXenstored::new(domid)),
            now: Cell::new(1_000_000),
            sends: Cell::new(0),
            polls: Cell::new(0),
            send_error: Cell::new(None),
            lazy: Cell::new(false),
        }))
    }

    /// The shared state.
    pub fn inner(&self) -> &FakeInner {
        &self.0
    }

    /// The xenstore page.
    pub fn store_page(&self) -> SharedMem {
        self.0.store.mem()
    }

    /// Run the server once and raise the store port if anything moved.
    pub fn run_server(&self) {
        let mut ring = ServerRing::new(self.0.store.mem());
        if self.0.server.borrow_mut().step(&mut ring) {
            let off = offset_of!(SharedInfo, evtchn_pending) + 8 * (STORE_PORT as usize / 64);
            self.0.shared.mem().or_u64(off, 1 << (STORE_PORT % 64));
        }
    }
}

impl GuestMemory for FakePlatform {
    fn alloc_pages(&self, _n: usize) -> Option<Gfn> {
        None
    }
    fn free_pages(&self, _gfn: Gfn, _n: usize) {}
    fn alloc_hole(&self, _n: usize) -> Option<Gfn> {
        Some(SHARED_INFO_GFN)
    }
    fn free_hole(&self, _gfn: Gfn, _n: usize) {}
    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        match (gfn, n) {
            (SHARED_INFO_GFN, 1) => Some(self.0.shared.mem()),
            (STORE_GFN, 1) => Some(self.0.store.mem()),
            _ => None,
        }
    }
}

impl Hypervisor for FakePlatform {
    fn memory_op(&self, _op: MemoryOp<'_>) -> HvResult {
        Ok(())
    }
    fn grant_table_op(&self, _op: GnttabOp<'_>) -> HvResult {
        Err(Errno::ENOSYS)
    }
    fn event_channel_op(&self, op: EvtchnOp<'_>) -> HvResult {
        match op {
            EvtchnOp::Send(s) if s.port == STORE_PORT => {
                if let Some(e) = self.0.send_error.get() {
                    return Err(e);
                }
                self.0.sends.set(self.0.sends.get() + 1);
                if !self.0.lazy.get() {
                    self.run_server();
                }
                Ok(())
            }
            EvtchnOp::Send(_) => Err(Errno::EINVAL),
            _ => Ok(()),
        }
    }
    fn sched_op(&self, op: SchedOp<'_>) -> HvResult {
        if let SchedOp::Poll { .. } = op {
            self.0.polls.set(self.0.polls.get() + 1);
            self.0.now.set(self.0.now.get() + 1_000_000);
            self.run_server();
        }
        Ok(())
    }
    fn hvm_op(&self, op: HvmOp<'_>) -> HvResult {
        match op {
            HvmOp::GetParam(p) if p.index == HVM_PARAM_STORE_PFN => {
                p.value = STORE_GFN.0;
                Ok(())
            }
            HvmOp::GetParam(p) if p.index == HVM_PARAM_STORE_EVTCHN => {
                p.value = u64::from(STORE_PORT);
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }
    fn vcpu_op(&self, _op: VcpuOp<'_>) -> HvResult {
        Ok(())
    }
    fn console_io(&self, _op: ConsoleIoOp<'_>) -> HvResult {
        Ok(())
    }
    fn now_ns(&self) -> u64 {
        self.0.now.get()
    }
}
