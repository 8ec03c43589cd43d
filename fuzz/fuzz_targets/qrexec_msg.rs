//! Fuzz the qrexec decoders: arbitrary bytes from dom0's daemon on the
//! control connection and from a caller on a data connection, fed in
//! arbitrary chunks, with or without a valid HELLO first. Nothing may
//! panic, and:
//! - after an error the caller drops the connection (we stop feeding);
//! - every exec request has a NUL-free command line and a 16-bit domain;
//! - what a session sends is well formed: HELLO first, stdout/stderr
//!   chunks within the negotiated size, at most one exit code, last;
//! - the wire views agree with the framing they come from.
//!
//! Input layout: byte 0 = flags (bit 0: start with a valid HELLO; bits
//! 1..2: which service the session runs; bits 4..7: number `k` of
//! chunk-size bytes that follow); then `k` chunk sizes; the rest is the
//! stream. Chunk sizes cycle (0 = one byte); `k = 0` feeds it whole.
#![no_main]

use firewall::qrexec::wire::{
    self, ExecParams, Hello, Message, MsgType, ServiceParams, HDR_SIZE, MAX_CONTROL_BODY,
    MAX_DATA_CHUNK_V3,
};
use firewall::qrexec::{Control, ControlEvent, ExecKind, Session};
use libfuzzer_sys::fuzz_target;

const SERVICES: [&str; 4] = [
    "root:QUBESRPC qubes.WaitForSession none",
    "root:QUBESRPC qubes.SetDateTime dom0",
    "user:QUBESRPC qubes.VMShell dom0",
    "user:nogui:ls",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(flags >> 4).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let mut input = Vec::new();
    if flags & 1 != 0 {
        wire::encode_hello(3, &mut input);
    }
    input.extend_from_slice(stream);

    // The views alone.
    if let Ok(m) = Message::parse(stream) {
        assert!(HDR_SIZE + m.body().len() <= stream.len());
        let _ = Hello::parse(&m);
        if let Ok(t) = m.ty() {
            if let Ok(p) = ExecParams::parse(t, m.body()) {
                assert!(!p.cmdline().contains(&0));
            }
            let _ = ServiceParams::parse(t, m.body());
        }
    }

    // The control connection.
    let mut control = Control::new();
    let mut events = Vec::new();
    for chunk in chunks(&input, sizes) {
        if control.receive(chunk, &mut events).is_err() {
            break;
        }
    }
    for e in &events {
        if let ControlEvent::Exec(r) = e {
            assert!(!r.cmdline.contains('\0'));
            control.connection_terminated(r.connect_domain, r.connect_port);
        }
    }
    check_output(control.output(), MAX_CONTROL_BODY);

    // A session.
    let kind = if flags & 8 != 0 {
        ExecKind::JustExec
    } else {
        ExecKind::Cmdline
    };
    let mut s = Session::new(kind, SERVICES[usize::from(flags >> 1) & 3]);
    for chunk in chunks(&input, sizes) {
        if s.receive(chunk).is_err() {
            break;
        }
    }
    let _ = s.peer_closed();
    let out = check_output(s.output(), MAX_DATA_CHUNK_V3);
    assert_eq!(out.first(), Some(&MsgType::Hello));
    let exits = out.iter().filter(|t| **t == MsgType::DataExitCode).count();
    assert!(exits <= 1);
    if exits == 1 {
        assert_eq!(out.last(), Some(&MsgType::DataExitCode));
        assert!(s.is_done() && s.exit_code().is_some());
    }
});

/// `input` cut as the size bytes say.
fn chunks<'a>(input: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = input;
    let mut size = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = match size.next() {
            None => rest.len(),
            Some(0) => 1,
            Some(&n) => usize::from(n),
        };
        let (c, r) = rest.split_at(n.min(rest.len()));
        rest = r;
        Some(c)
    })
}

/// Our own output is whole, known messages within `max` bytes of body.
fn check_output(out: &[u8], max: usize) -> Vec<MsgType> {
    let mut types = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let (m, n) = Message::split(rest, max)
            .expect("our framing")
            .expect("whole messages");
        types.push(m.ty().expect("a known type"));
        rest = &rest[n..];
    }
    types
}
