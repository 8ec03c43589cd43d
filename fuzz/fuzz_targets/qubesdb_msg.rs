//! Fuzz the QubesDB decoders: arbitrary bytes from dom0, fed in arbitrary
//! chunks to the VM-side client (in the dump phase or, after a valid end
//! marker, in the live phase), and the same bytes to the dom0 daemon model
//! (which parses what the VM sends). Nothing may panic, and:
//! - `receive` fails only by breaking the endpoint, which then stays
//!   broken and changes nothing;
//! - everything the client sends back decodes as valid QubesDB messages
//!   (answers are always well formed: RESP_OK / RESP_ERROR with no data,
//!   or the one MULTIREAD);
//! - the replica holds only valid keys and NUL-free values, within bound;
//! - the event queue stays bounded.
//!
//! Input layout: byte 0 = flags (bit 0: start live, bits 4..7: number `k`
//! of chunk-size bytes that follow); then `k` chunk sizes; the rest is the
//! stream. Chunk sizes cycle; a size of 0 feeds an empty chunk before one
//! byte. `k = 0` feeds the stream whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qubesdb::db::{check_key, Db};
use qubesdb::decoder::Decoder;
use qubesdb::wire::{check_data, encode, MsgType};
use qubesdb::{Client, Daemon, QdbError};

/// Bound on the replica, small so that the limit is exercised.
const LIMIT: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(flags >> 4).min(rest.len());
    let (sizes, stream) = rest.split_at(k);

    let mut client = Client::with_db(Db::with_limit(LIMIT));
    if flags & 1 != 0 {
        let mut end = Vec::new();
        encode(MsgType::RespMultiread, "", b"", &mut end).expect("end marker");
        client.receive(&end).expect("end marker accepted");
        assert!(client.is_synced());
    }
    let mut daemon = Daemon::new();

    let mut size_iter = sizes.iter().cycle();
    let mut rest = stream;
    let mut client_ok = true;
    let mut daemon_ok = true;
    let mut events = 0usize;
    while !rest.is_empty() {
        let n = match size_iter.next() {
            None => rest.len(),
            Some(0) => {
                client_ok &= feed_client(&mut client, &[], client_ok);
                1
            }
            Some(&s) => usize::from(s),
        };
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        client_ok &= feed_client(&mut client, chunk, client_ok);
        daemon_ok &= feed_daemon(&mut daemon, chunk, daemon_ok);
        while client.poll_event().is_some() {
            events += 1;
        }
        check_output(&mut client);
        let out = daemon.output().len();
        daemon.consume_output(out);
    }
    // Events are bounded by the messages that caused them.
    assert!(events as u64 <= 3 * client.stats().messages + 2);
    for (key, value) in client.db().iter() {
        assert!(check_key(key), "bad key in replica: {key:?}");
        assert!(check_data(value).is_ok(), "bad value in replica");
    }
    assert!(client.db().size() <= LIMIT);
});

/// Feed one chunk; check the broken-state contract.
fn feed_client(c: &mut Client, chunk: &[u8], was_ok: bool) -> bool {
    let before = c.db().clone();
    let r = c.receive(chunk);
    match r {
        Ok(()) => {
            assert!(was_ok && c.broken().is_none());
            true
        }
        Err(QdbError::Broken(inner)) => {
            assert!(!was_ok, "Broken without an earlier error");
            assert_eq!(Some(&*inner), c.broken());
            assert_eq!(c.db(), &before, "broken client changed its replica");
            false
        }
        Err(e) => {
            assert!(was_ok, "a second fatal error");
            assert_eq!(c.broken(), Some(&e));
            assert!(!c.is_synced());
            false
        }
    }
}

fn feed_daemon(d: &mut Daemon, chunk: &[u8], was_ok: bool) -> bool {
    match d.receive(chunk) {
        Ok(()) => {
            assert!(was_ok);
            true
        }
        Err(QdbError::Broken(_)) => {
            assert!(!was_ok);
            false
        }
        Err(e) => {
            assert!(was_ok);
            assert_eq!(d.broken(), Some(&e));
            false
        }
    }
}

/// The client's output must be valid messages of the kinds it may send.
fn check_output(c: &mut Client) {
    let out = c.output().to_vec();
    c.consume_output(out.len());
    let mut dec = Decoder::new();
    let mut pos = 0;
    while pos < out.len() {
        let (n, frame) = dec.decode(&out[pos..]);
        pos += n;
        if let Some(frame) = frame {
            let frame = frame.expect("client produced a malformed message");
            match frame.header.ty() {
                MsgType::RespOk | MsgType::RespError | MsgType::CmdMultiread => {
                    assert!(frame.data.is_empty())
                }
                other => panic!("client sent {other}"),
            }
        }
    }
    assert!(dec.is_idle(), "client output ends mid-message");
}
