//! Fuzz the xenstore client's receive path: arbitrary bytes from the
//! response ring, fed in arbitrary chunks, with requests of every reply
//! shape outstanding (and one abandoned), must never panic, and the
//! client's invariants must hold:
//! - every reply handed out answers a request that was outstanding;
//! - `receive` fails only with a fatal error, after which the client stays
//!   broken and refuses requests.
//!
//! Input layout: byte 0 = number `k` (mod 16) of chunk-size bytes that
//! follow; the rest is the stream. Chunk sizes cycle; a size of 0 feeds an
//! empty chunk before one byte. `k = 0` feeds the stream whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen::store::{Client, Incoming, Perm, ReqId, Request, StoreError, TxId};

const PERMS: &[Perm] = &[Perm::new(1, xen::store::Access::Read)];

/// Requests covering every reply parser; the index picks one.
fn request(i: usize) -> (TxId, Request<'static>) {
    match i % 13 {
        0 => (TxId::NONE, Request::Read { path: "domid" }),
        1 => (
            TxId(1),
            Request::Write {
                path: "a",
                value: b"v",
            },
        ),
        2 => (TxId::NONE, Request::Mkdir { path: "a" }),
        3 => (TxId::NONE, Request::Rm { path: "a" }),
        4 => (TxId::NONE, Request::Directory { path: "a" }),
        5 => (TxId::NONE, Request::GetPerms { path: "a" }),
        6 => (
            TxId::NONE,
            Request::SetPerms {
                path: "a",
                perms: PERMS,
            },
        ),
        7 => (
            TxId::NONE,
            Request::Watch {
                path: "a",
                token: "t",
            },
        ),
        8 => (
            TxId::NONE,
            Request::Unwatch {
                path: "a",
                token: "t",
            },
        ),
        9 => (TxId::NONE, Request::TransactionStart),
        10 => (TxId(1), Request::TransactionEnd { commit: true }),
        11 => (TxId::NONE, Request::GetDomainPath { domid: 0 }),
        _ => (TxId::NONE, Request::ResetWatches),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, mut stream) = rest.split_at(k);

    let mut c = Client::new();
    let mut issued: Vec<ReqId> = Vec::new();
    for i in 0..13 {
        let (tx, r) = request(i);
        issued.push(c.request(tx, &r).expect("valid request"));
    }
    c.abandon(issued[2]);
    c.consume_output(usize::MAX);

    let mut next = 13;
    let mut size_iter = sizes.iter().cycle();
    while !stream.is_empty() {
        let n = match size_iter.next() {
            None => stream.len(),
            Some(0) => {
                feed(&mut c, &[], &issued);
                1
            }
            Some(&s) => usize::from(s),
        };
        let (chunk, tail) = stream.split_at(n.min(stream.len()));
        stream = tail;
        let answered = feed(&mut c, chunk, &issued);
        if c.broken().is_some() {
            // Broken stays broken.
            assert!(matches!(c.receive(b"x"), Err(StoreError::Broken(_))));
            let (tx, r) = request(0);
            assert!(matches!(c.request(tx, &r), Err(StoreError::Broken(_))));
            return;
        }
        // Keep requests outstanding: replace each answered one.
        for _ in 0..answered {
            let (tx, r) = request(next);
            next += 1;
            issued.push(c.request(tx, &r).expect("valid request"));
            c.consume_output(usize::MAX);
        }
    }
});

/// Feed one chunk, check the invariants, return how many replies came.
fn feed(c: &mut Client, chunk: &[u8], issued: &[ReqId]) -> usize {
    let before: Vec<bool> = issued.iter().map(|&id| c.is_outstanding(id)).collect();
    let r = c.receive(chunk);
    if let Err(e) = &r {
        assert!(e.is_fatal(), "receive returned a non-fatal error: {e}");
    }
    let mut answered = 0;
    while let Some(item) = c.poll() {
        if let Incoming::Reply { req_id, .. } = item {
            let i = issued
                .iter()
                .position(|&id| id == req_id)
                .expect("reply to an issued id");
            assert!(before[i], "reply to a request that was not outstanding");
            assert!(!c.is_outstanding(req_id));
            answered += 1;
        }
    }
    answered
}
