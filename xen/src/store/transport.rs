//! The xenstore ring transport: bytes in and out of the shared page.
//!
//! The page (`struct xenstore_domain_interface`) holds two 1024-byte byte
//! rings with free-running `u32` indices; byte `i` lives at `i & 1023`.
//! The guest produces into `req` and consumes from `rsp`; xenstored does
//! the opposite. The transport keeps its own copies of the two indices the
//! guest owns (`req_prod`, `rsp_cons`), read from the page once at attach
//! (they need not start at 0), and reads each index the server owns
//! (`req_cons`, `rsp_prod`) exactly once per operation into a local,
//! rejecting a pair more than 1024 bytes apart (which also covers a
//! consumer ahead of its producer) as [`ProtocolError::RingIndex`].
//!
//! Barriers follow `docs/misc/xenstore-ring.txt` and Linux's `xb_write` /
//! `xb_read`: indices are read before the data (full barrier before
//! writing into `req`, read barrier before reading `rsp`); the data is
//! complete before the index that publishes it (write barrier before
//! `req_prod`, full barrier before `rsp_cons`, whose update lets the server
//! overwrite what was read). The transport performs no hypercalls: each
//! operation says, in [`Transfer::notify`], whether an index moved and the
//! event channel must be signalled.

use core::mem::offset_of;
use core::sync::atomic::Ordering;

use super::client::Client;
use super::error::{ProtocolError, RingSide, StoreError};
use crate::abi::xs_wire::{XenstoreDomainInterface, XENSTORE_RING_SIZE};
use crate::memory::{mb, rmb, wmb, SharedMem};

/// Byte offsets in the xenstore ring page (`struct
/// xenstore_domain_interface`), shared with the simulated xenstored.
pub(crate) mod layout {
    use super::{offset_of, XenstoreDomainInterface};
    /// The request ring.
    pub(crate) const REQ: usize = offset_of!(XenstoreDomainInterface, req);
    /// The response ring.
    pub(crate) const RSP: usize = offset_of!(XenstoreDomainInterface, rsp);
    /// `req_cons` (server writes).
    pub(crate) const REQ_CONS: usize = offset_of!(XenstoreDomainInterface, req_cons);
    /// `req_prod` (guest writes).
    pub(crate) const REQ_PROD: usize = offset_of!(XenstoreDomainInterface, req_prod);
    /// `rsp_cons` (guest writes).
    pub(crate) const RSP_CONS: usize = offset_of!(XenstoreDomainInterface, rsp_cons);
    /// `rsp_prod` (server writes).
    pub(crate) const RSP_PROD: usize = offset_of!(XenstoreDomainInterface, rsp_prod);
    /// `server_features`.
    pub(crate) const SERVER_FEATURES: usize = offset_of!(XenstoreDomainInterface, server_features);
}
use layout::*;
const RING: u32 = XENSTORE_RING_SIZE as u32;

/// What one [`RingTransport::exchange`] round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Request bytes written.
    pub written: usize,
    /// Reply bytes read into the buffer.
    pub read: usize,
    /// An index was updated: signal the xenstore event channel.
    pub notify: bool,
}

impl Round {
    /// Neither ring moved: the exchange is complete for now.
    pub fn idle(&self) -> bool {
        self.written == 0 && self.read == 0
    }
}

/// What one transport operation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes moved.
    pub bytes: usize,
    /// An index was updated: signal the xenstore event channel.
    pub notify: bool,
}

impl Transfer {
    fn moved(bytes: usize) -> Transfer {
        Transfer {
            bytes,
            notify: bytes > 0,
        }
    }
}

/// The guest end of the xenstore rings (see the module doc).
#[derive(Debug)]
pub struct RingTransport {
    mem: SharedMem,
    req_prod: u32,
    rsp_cons: u32,
}

impl RingTransport {
    /// Attach to the xenstore page `mem`; `None` if it is smaller than the
    /// interface struct.
    pub fn new(mem: SharedMem) -> Option<RingTransport> {
        if mem.len() < core::mem::size_of::<XenstoreDomainInterface>() {
            return None;
        }
        let req_prod = mem.load_u32(REQ_PROD, Ordering::Acquire);
        let rsp_cons = mem.load_u32(RSP_CONS, Ordering::Acquire);
        Some(RingTransport {
            mem,
            req_prod,
            rsp_cons,
        })
    }

    /// The page's `server_features` bits (`XENSTORE_SERVER_FEATURE_*`).
    pub fn server_features(&self) -> u32 {
        self.mem.load_u32(SERVER_FEATURES, Ordering::Acquire)
    }

    /// One round between `client` and the rings: write what the client has
    /// queued (and consume it), then read what arrived into `buf`, for the
    /// caller to hand to [`Client::receive`]. A ring index error poisons the
    /// client (the connection is broken) and is returned.
    pub fn exchange(&mut self, client: &mut Client, buf: &mut [u8]) -> Result<Round, StoreError> {
        let w = self.write(client.output()).map_err(|e| client.poison(e))?;
        client.consume_output(w.bytes);
        let r = self.read(buf).map_err(|e| client.poison(e))?;
        Ok(Round {
            written: w.bytes,
            read: r.bytes,
            notify: w.notify || r.notify,
        })
    }

    /// Copy as much of `data` into the request ring as there is space for
    /// and publish it. A message may go out in several calls.
    pub fn write(&mut self, data: &[u8]) -> Result<Transfer, ProtocolError> {
        let prod = self.req_prod;
        let cons = self.mem.load_u32(REQ_CONS, Ordering::Acquire);
        let used = prod.wrapping_sub(cons);
        if used > RING {
            return Err(ProtocolError::RingIndex {
                ring: RingSide::Req,
                prod,
                cons,
            });
        }
        let n = ((RING - used) as usize).min(data.len());
        if n == 0 {
            return Ok(Transfer::default());
        }
        // The server's `req_cons` must be read before we reuse the space it
        // freed.
        mb();
        self.mem
            .write_ring(REQ, XENSTORE_RING_SIZE, prod, &data[..n]);
        // The bytes must be visible before the index that publishes them.
        wmb();
        self.req_prod = prod.wrapping_add(n as u32);
        self.mem
            .store_u32(REQ_PROD, self.req_prod, Ordering::Release);
        Ok(Transfer::moved(n))
    }

    /// Copy up to `buf.len()` available bytes out of the response ring and
    /// release their space.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Transfer, ProtocolError> {
        let cons = self.rsp_cons;
        let prod = self.mem.load_u32(RSP_PROD, Ordering::Acquire);
        let avail = prod.wrapping_sub(cons);
        if avail > RING {
            return Err(ProtocolError::RingIndex {
                ring: RingSide::Rsp,
                prod,
                cons,
            });
        }
        let n = (avail as usize).min(buf.len());
        if n == 0 {
            return Ok(Transfer::default());
        }
        // The data must not be read before `rsp_prod`.
        rmb();
        self.mem
            .read_ring(RSP, XENSTORE_RING_SIZE, cons, &mut buf[..n]);
        // The reads must finish before the server may overwrite the bytes.
        mb();
        self.rsp_cons = cons.wrapping_add(n as u32);
        self.mem
            .store_u32(RSP_CONS, self.rsp_cons, Ordering::Release);
        Ok(Transfer::moved(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::xs_wire::msg;
    use crate::memory::LocalPages;
    use crate::store::client::{Client, Incoming};
    use crate::store::reply::{Reply, WatchEvent};
    use crate::store::request::{Request, TxId};
    use crate::store::testutil::{message, parse_requests, ServerRing};

    fn pump(t: &mut RingTransport, c: &mut Client) -> Vec<Incoming> {
        let w = t.write(c.output()).unwrap();
        c.consume_output(w.bytes);
        let mut buf = [0u8; 64];
        loop {
            let r = t.read(&mut buf).unwrap();
            if r.bytes == 0 {
                break;
            }
            c.receive(&buf[..r.bytes]).unwrap();
        }
        core::iter::from_fn(|| c.poll()).collect()
    }

    #[test]
    fn short_page_is_refused() {
        let p = LocalPages::new(1);
        assert!(RingTransport::new(p.mem().sub(0, 2000)).is_none());
        assert!(RingTransport::new(p.mem()).is_some());
    }

    #[test]
    fn request_and_reply_through_the_rings() {
        let page = LocalPages::new(1);
        let mut t = RingTransport::new(page.mem()).unwrap();
        let mut srv = ServerRing::new(page.mem());
        let mut c = Client::new();
        let id = c
            .request(TxId::NONE, &Request::Read { path: "domid" })
            .unwrap();
        let w = t.write(c.output()).unwrap();
        assert_eq!(
            w,
            Transfer {
                bytes: 22,
                notify: true
            }
        );
        c.consume_output(w.bytes);
        assert_eq!(
            t.write(c.output()).unwrap(),
            Transfer {
                bytes: 0,
                notify: false
            }
        );
        let reqs = parse_requests(&srv.take_requests());
        assert_eq!(reqs[0].1, b"domid\0");
        srv.push(&message(msg::READ, id.0, b"7"));
        assert_eq!(
            pump(&mut t, &mut c),
            vec![Incoming::Reply {
                req_id: id,
                result: Ok(Reply::Value(b"7".to_vec()))
            }]
        );
        assert_eq!(page.mem().read_u32(RSP_CONS), 17);
        assert_eq!(page.mem().read_u32(REQ_PROD), 22);
    }

    #[test]
    fn indices_start_anywhere_and_wrap() {
        let page = LocalPages::new(1);
        let m = page.mem();
        let start = u32::MAX - 500;
        for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
            m.write_u32(off, start);
        }
        let mut t = RingTransport::new(m).unwrap();
        let mut srv = ServerRing::new(m);
        let mut c = Client::new();
        let mut ids = Vec::new();
        // Many rounds, each request and reply crossing the ring end and the
        // u32 wrap at some point.
        for i in 0..40u32 {
            let path = format!("some/longer/path/{i}");
            let id = c
                .request(TxId::NONE, &Request::Read { path: &path })
                .unwrap();
            ids.push(id);
            pump(&mut t, &mut c);
            let reqs = parse_requests(&srv.take_requests());
            assert_eq!(reqs[0].1, format!("{path}\0").as_bytes());
            let value = vec![b'a' + (i % 26) as u8; 100 + i as usize];
            srv.push(&message(msg::READ, id.0, &value));
            let got = pump(&mut t, &mut c);
            assert_eq!(
                got,
                vec![Incoming::Reply {
                    req_id: id,
                    result: Ok(Reply::Value(value))
                }]
            );
        }
        assert!(m.read_u32(REQ_PROD) < start, "request index wrapped");
        assert!(m.read_u32(RSP_CONS) < start, "response index wrapped");
    }

    #[test]
    fn large_request_goes_out_in_pieces_as_space_frees() {
        let page = LocalPages::new(1);
        let mut t = RingTransport::new(page.mem()).unwrap();
        let mut srv = ServerRing::new(page.mem());
        let mut c = Client::new();
        let value = vec![b'x'; 3000];
        let id = c
            .request(
                TxId::NONE,
                &Request::Write {
                    path: "big",
                    value: &value,
                },
            )
            .unwrap();
        let total = c.output().len();
        let mut received = Vec::new();
        let mut rounds = 0;
        while !c.output().is_empty() {
            let w = t.write(c.output()).unwrap();
            assert!(w.bytes <= 1024);
            c.consume_output(w.bytes);
            // Full now: nothing more fits until the server consumes.
            if !c.output().is_empty() {
                assert_eq!(t.write(c.output()).unwrap().bytes, 0);
            }
            received.extend(srv.take_requests());
            rounds += 1;
        }
        assert_eq!(received.len(), total);
        assert!(rounds >= 3);
        let reqs = parse_requests(&received);
        assert_eq!(reqs[0].0.req_id, id.0);
        assert_eq!(&reqs[0].1[4..], &value[..]);
    }

    #[test]
    fn replies_in_chunks_out_of_order_with_events() {
        let page = LocalPages::new(1);
        let mut t = RingTransport::new(page.mem()).unwrap();
        let mut srv = ServerRing::new(page.mem());
        let mut c = Client::new();
        let a = c.request(TxId::NONE, &Request::Read { path: "a" }).unwrap();
        let b = c
            .request(
                TxId::NONE,
                &Request::Watch {
                    path: "w",
                    token: "tk",
                },
            )
            .unwrap();
        pump(&mut t, &mut c);
        let mut stream = message(msg::WATCH, b.0, b"OK\0");
        stream.extend(message(msg::WATCH_EVENT, 0, b"w\0tk\0"));
        stream.extend(message(msg::READ, a.0, &[b'v'; 2000]));
        // The server publishes a few bytes at a time; the client reads
        // whatever is there each time.
        let mut got = Vec::new();
        for chunk in stream.chunks(13) {
            srv.push(chunk);
            got.extend(pump(&mut t, &mut c));
        }
        assert_eq!(
            got,
            vec![
                Incoming::Reply {
                    req_id: b,
                    result: Ok(Reply::Ok)
                },
                Incoming::Watch(WatchEvent {
                    path: "w".into(),
                    token: "tk".into()
                }),
                Incoming::Reply {
                    req_id: a,
                    result: Ok(Reply::Value(vec![b'v'; 2000]))
                },
            ]
        );
    }

    #[test]
    fn bad_server_indices_are_refused() {
        let page = LocalPages::new(1);
        let m = page.mem();
        let mut t = RingTransport::new(m).unwrap();
        let mut buf = [0u8; 16];
        // Server claims 1025 bytes of responses.
        m.write_u32(RSP_PROD, 1025);
        assert_eq!(
            t.read(&mut buf),
            Err(ProtocolError::RingIndex {
                ring: RingSide::Rsp,
                prod: 1025,
                cons: 0
            })
        );
        // Producer behind the consumer.
        m.write_u32(RSP_PROD, u32::MAX);
        assert!(t.read(&mut buf).is_err());
        // Exactly 1024 is fine.
        m.write_u32(RSP_PROD, 1024);
        assert_eq!(t.read(&mut buf).unwrap().bytes, 16);
        // Server consumed requests we never produced.
        m.write_u32(REQ_CONS, 5);
        assert_eq!(
            t.write(b"x"),
            Err(ProtocolError::RingIndex {
                ring: RingSide::Req,
                prod: 0,
                cons: 5
            })
        );
        // A server that rewrites our own index does not move us.
        m.write_u32(REQ_CONS, 0);
        m.write_u32(REQ_PROD, 4000);
        assert_eq!(t.write(b"xy").unwrap().bytes, 2);
        assert_eq!(m.read_u32(REQ_PROD), 2);
    }

    #[test]
    fn server_features_are_readable() {
        let page = LocalPages::new(1);
        page.mem().write_u32(SERVER_FEATURES, 3);
        assert_eq!(RingTransport::new(page.mem()).unwrap().server_features(), 3);
    }
}
