//! Two endpoints over one local control page: the handshake bytes, the
//! notify-bit protocol, close detection and broken connections.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use xen::memory::LocalPages;

use super::*;
use crate::error::IndexKind;

struct Pair {
    _pages: LocalPages,
    ctrl: SharedMem,
    server: Endpoint,
    client: Endpoint,
}

/// A server and a client over one page (orders 10/11) or over a page
/// plus ring pages (orders >= 12).
fn pair(left: u16, right: u16) -> Pair {
    let orders = RingOrders::validate(left, right).unwrap();
    let lp = orders.location(RingId::Left).pages();
    let rp = orders.location(RingId::Right).pages();
    let pages = LocalPages::new(1 + lp + rp);
    let mem = pages.mem();
    let ctrl = mem.sub(0, 4096);
    let lmem = (lp > 0).then(|| mem.sub(4096, lp * 4096));
    let rmem = (rp > 0).then(|| mem.sub(4096 * (1 + lp), rp * 4096));
    Endpoint::init_server_page(&ctrl, orders);
    let (l, r) = Endpoint::ring_buffers(&ctrl, orders, lmem, rmem).unwrap();
    let server = Endpoint::new(Role::Server, ctrl, l, r).unwrap();
    assert_eq!(Endpoint::read_orders(&ctrl), Ok(orders));
    let client = Endpoint::new(Role::Client, ctrl, r, l).unwrap();
    Pair {
        _pages: pages,
        ctrl,
        server,
        client,
    }
}

#[test]
fn server_page_header_is_libxenvchans() {
    let p = pair(10, 11);
    let c = p.ctrl;
    assert_eq!(c.load_u16(LEFT_ORDER, Ordering::SeqCst), 10);
    assert_eq!(c.load_u16(RIGHT_ORDER, Ordering::SeqCst), 11);
    assert_eq!(c.load_u8(CLI_LIVE, Ordering::SeqCst), 2);
    assert_eq!(c.load_u8(SRV_LIVE, Ordering::SeqCst), 1);
    assert_eq!(c.load_u8(CLI_NOTIFY, Ordering::SeqCst), VCHAN_NOTIFY_WRITE);
    assert_eq!(c.load_u8(SRV_NOTIFY, Ordering::SeqCst), 0);
    for off in [LEFT_CONS, LEFT_PROD, RIGHT_CONS, RIGHT_PROD] {
        assert_eq!(c.load_u32(off, Ordering::SeqCst), 0);
    }
    assert_eq!(p.server.peer_state(), PeerState::Waiting);
    assert_eq!(p.client.peer_state(), PeerState::Connected);
    p.client.client_connect();
    assert_eq!(c.load_u8(CLI_LIVE, Ordering::SeqCst), 1);
    assert_eq!(c.load_u8(SRV_NOTIFY, Ordering::SeqCst), VCHAN_NOTIFY_WRITE);
    assert_eq!(p.server.peer_state(), PeerState::Connected);
    assert_eq!((p.server.read_size(), p.server.write_size()), (1024, 2048));
    assert_eq!((p.client.read_size(), p.client.write_size()), (2048, 1024));
}

#[test]
fn grant_list_roundtrip() {
    let p = pair(13, 12);
    for (i, g) in [11u32, 12, 13].into_iter().enumerate() {
        Endpoint::set_grant(&p.ctrl, i, g);
    }
    assert_eq!(Endpoint::read_grants(&p.ctrl, 0, 2), vec![11, 12]);
    assert_eq!(Endpoint::read_grants(&p.ctrl, 2, 1), vec![13]);
}

#[test]
fn notify_bits_follow_io_c() {
    let mut p = pair(12, 12);
    p.client.client_connect();
    // The client asked for WRITE at connect: the server's first write
    // notifies, the second does not.
    assert_eq!(
        p.server.write(b"hello").unwrap(),
        Progress {
            bytes: 5,
            notify: true
        }
    );
    assert!(!p.server.write(b" world").unwrap().notify);
    // The server asked for WRITE at init: likewise for the client.
    assert!(p.client.write(b"abc").unwrap().notify);
    assert!(!p.client.write(b"d").unwrap().notify);
    // A full read asks for nothing; nobody asked for READ.
    let mut buf = [0u8; 11];
    let got = p.client.read(&mut buf).unwrap();
    assert_eq!(got.bytes, 11);
    assert!(!got.notify);
    assert_eq!(&buf, b"hello world");
    // A short read (asking for more than is there) requests WRITE.
    let mut big = [0u8; 100];
    assert_eq!(p.client.read(&mut big).unwrap().bytes, 0);
    assert_eq!(
        p.ctrl.load_u8(SRV_NOTIFY, Ordering::SeqCst),
        VCHAN_NOTIFY_WRITE
    );
    assert!(p.server.write(b"x").unwrap().notify);
    assert_eq!(p.ctrl.load_u8(SRV_NOTIFY, Ordering::SeqCst), 0);
}

#[test]
fn writer_waiting_for_space_is_notified_by_the_reader() {
    let mut p = pair(10, 11);
    p.client.client_connect();
    // Fill the client's ring (left, 1 KiB) and ask for more.
    let data = vec![0x5a; 1500];
    assert_eq!(p.client.write(&data).unwrap().bytes, 1024);
    // The short write requested READ from the server.
    assert_eq!(
        p.ctrl.load_u8(SRV_NOTIFY, Ordering::SeqCst) & VCHAN_NOTIFY_READ,
        VCHAN_NOTIFY_READ
    );
    assert_eq!(p.client.write(&data).unwrap().bytes, 0);
    let mut buf = vec![0u8; 10];
    let got = p.server.read(&mut buf).unwrap();
    assert_eq!(
        got,
        Progress {
            bytes: 10,
            notify: true
        }
    );
    // Cleared: the next read does not notify.
    assert!(!p.server.read(&mut buf).unwrap().notify);
    assert_eq!(p.client.write(&data).unwrap().bytes, 20);
}

#[test]
fn data_ready_and_buffer_space_request_notifications() {
    let mut p = pair(11, 10);
    p.client.client_connect();
    p.ctrl.store_u8(CLI_NOTIFY, 0, Ordering::SeqCst);
    p.ctrl.store_u8(SRV_NOTIFY, 0, Ordering::SeqCst);
    assert_eq!(p.server.data_ready(), Ok(0));
    assert_eq!(
        p.ctrl.load_u8(CLI_NOTIFY, Ordering::SeqCst),
        VCHAN_NOTIFY_WRITE
    );
    assert_eq!(p.server.buffer_space(), Ok(1024));
    assert_eq!(
        p.ctrl.load_u8(CLI_NOTIFY, Ordering::SeqCst),
        VCHAN_NOTIFY_WRITE | VCHAN_NOTIFY_READ
    );
    assert_eq!(p.client.buffer_space(), Ok(2048));
    assert_eq!(
        p.ctrl.load_u8(SRV_NOTIFY, Ordering::SeqCst),
        VCHAN_NOTIFY_READ
    );
}

#[test]
fn close_is_seen_after_the_last_bytes() {
    let mut p = pair(10, 11);
    p.client.client_connect();
    assert_eq!(p.server.write(b"last words").unwrap().bytes, 10);
    p.server.mark_closed();
    assert_eq!(p.ctrl.load_u8(SRV_LIVE, Ordering::SeqCst), 0);
    assert!(!p.client.is_open());
    assert_eq!(p.client.write(b"x"), Err(VchanError::PeerClosed));
    let mut buf = [0u8; 64];
    assert_eq!(p.client.read(&mut buf).unwrap().bytes, 10);
    assert_eq!(&buf[..10], b"last words");
    assert_eq!(p.client.read(&mut buf), Err(VchanError::PeerClosed));
    // The other way round.
    p.client.mark_closed();
    assert_eq!(p.server.peer_state(), PeerState::Closed);
    assert_eq!(p.server.read(&mut buf), Err(VchanError::PeerClosed));
}

#[test]
fn hostile_index_breaks_the_endpoint_for_good() {
    let mut p = pair(12, 13);
    p.client.client_connect();
    // The client claims to have produced more than the left ring holds.
    p.ctrl.store_u32(LEFT_PROD, 4097, Ordering::SeqCst);
    let mut buf = vec![0u8; 8192];
    let e = p.server.read(&mut buf).unwrap_err();
    assert_eq!(
        e,
        VchanError::Protocol(ProtocolError::RingIndex {
            ring: RingId::Left,
            index: IndexKind::Prod,
            value: 4097,
            min: 0,
            max: 4096
        })
    );
    // Even with the index repaired, the endpoint stays broken.
    p.ctrl.store_u32(LEFT_PROD, 0, Ordering::SeqCst);
    assert_eq!(p.server.read(&mut buf), Err(e.clone()));
    assert_eq!(p.server.write(b"x"), Err(e.clone()));
    assert_eq!(p.server.data_ready(), Err(e.clone()));
    assert!(p.server.broken().is_some());
    // The client's view of the right ring: cons ahead of prod.
    p.ctrl.store_u32(RIGHT_CONS, 0, Ordering::SeqCst);
    let mut q = pair(12, 13);
    q.client.client_connect();
    q.ctrl.store_u32(RIGHT_CONS, 5, Ordering::SeqCst);
    assert!(matches!(
        q.server.write(b"abc"),
        Err(VchanError::Protocol(ProtocolError::RingIndex {
            index: IndexKind::Cons,
            value: 5,
            ..
        }))
    ));
}

#[test]
fn bulk_transfer_both_ways_with_wrap() {
    let mut p = pair(10, 11);
    p.client.client_connect();
    let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let b: Vec<u8> = (0..100_000u32).map(|i| (i * 13 + 1) as u8).collect();
    let (mut sa, mut sb, mut ra, mut rb) = (0, 0, Vec::new(), Vec::new());
    let mut buf = vec![0u8; 777];
    let mut step = 0usize;
    while ra.len() < a.len() || rb.len() < b.len() {
        step += 1;
        let chunk = 1 + step % 1500;
        sa += p
            .server
            .write(&a[sa..(sa + chunk).min(a.len())])
            .unwrap()
            .bytes;
        sb += p
            .client
            .write(&b[sb..(sb + chunk).min(b.len())])
            .unwrap()
            .bytes;
        let n = p.client.read(&mut buf[..1 + step % 777]).unwrap().bytes;
        ra.extend_from_slice(&buf[..n]);
        let n = p.server.read(&mut buf[..1 + step % 500]).unwrap().bytes;
        rb.extend_from_slice(&buf[..n]);
    }
    assert_eq!(ra, a);
    assert_eq!(rb, b);
}
