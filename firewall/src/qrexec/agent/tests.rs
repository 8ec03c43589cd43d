use super::*;
use crate::qrexec::wire::{encode, encode_exec, encode_hello, Header, MAX_CMDLINE_LEN};
use alloc::vec;
use proptest::prelude::*;

/// Every message in `bytes` (which must hold whole messages only).
fn messages(bytes: &[u8]) -> Vec<(MsgType, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (m, n) = Message::split(rest, usize::MAX)
            .expect("valid framing")
            .expect("whole messages");
        out.push((m.ty().expect("known type"), m.body().to_vec()));
        rest = &rest[n..];
    }
    out
}

fn hello(v: u32) -> Vec<u8> {
    let mut b = Vec::new();
    encode_hello(v, &mut b);
    b
}

fn exec(ty: MsgType, dom: u32, port: u32, cmd: &str) -> Vec<u8> {
    let mut b = Vec::new();
    encode_exec(ty, dom, port, cmd.as_bytes(), &mut b);
    b
}

fn ready_control() -> Control {
    let mut c = Control::new();
    let mut ev = Vec::new();
    c.receive(&hello(3), &mut ev).unwrap();
    assert_eq!(ev, vec![ControlEvent::Ready { version: 3 }]);
    let n = c.output().len();
    c.consume_output(n);
    c
}

// ---- control --------------------------------------------------------------

#[test]
fn control_sends_hello_first_and_negotiates() {
    for (theirs, want) in [(3, 3), (4, 3), (2, 2), (u32::MAX, 3)] {
        let mut c = Control::new();
        assert_eq!(
            messages(c.output()),
            vec![(MsgType::Hello, vec![3, 0, 0, 0])]
        );
        let mut ev = Vec::new();
        // One byte at a time.
        for b in hello(theirs) {
            c.receive(&[b], &mut ev).unwrap();
        }
        assert_eq!(ev, vec![ControlEvent::Ready { version: want }]);
        assert_eq!(c.version(), Some(want));
    }
}

#[test]
fn control_bad_handshakes_are_errors() {
    let mut ev = Vec::new();
    assert_eq!(
        Control::new().receive(&hello(1), &mut ev),
        Err(AgentError::Version(1))
    );
    assert_eq!(
        Control::new().receive(&hello(0), &mut ev),
        Err(AgentError::Version(0))
    );
    let e = Control::new()
        .receive(&exec(MsgType::ExecCmdline, 0, 513, "u:x"), &mut ev)
        .unwrap_err();
    assert!(matches!(e, AgentError::Handshake(_)), "{e:?}");
    let mut short = Vec::new();
    encode(MsgType::Hello, &[3, 0], &mut short);
    assert_eq!(
        Control::new().receive(&short, &mut ev),
        Err(AgentError::Handshake(WireError::BadLength {
            ty: MsgType::Hello,
            len: 2
        }))
    );
    assert!(ev.is_empty());
}

#[test]
fn control_exec_requests() {
    let mut c = ready_control();
    let mut ev = Vec::new();
    let mut bytes = exec(
        MsgType::ExecCmdline,
        0,
        513,
        "root:QUBESRPC qubes.WaitForSession none",
    );
    bytes.extend(exec(
        MsgType::JustExec,
        7,
        600,
        "user:QUBESRPC qubes.VMShell dom0",
    ));
    c.receive(&bytes, &mut ev).unwrap();
    assert_eq!(
        ev,
        vec![
            ControlEvent::Exec(ExecRequest {
                kind: ExecKind::Cmdline,
                connect_domain: 0,
                connect_port: 513,
                cmdline: "root:QUBESRPC qubes.WaitForSession none".into(),
            }),
            ControlEvent::Exec(ExecRequest {
                kind: ExecKind::JustExec,
                connect_domain: 7,
                connect_port: 600,
                cmdline: "user:QUBESRPC qubes.VMShell dom0".into(),
            }),
        ]
    );
    c.connection_terminated(0, 513);
    assert_eq!(
        messages(c.output()),
        vec![(MsgType::ConnectionTerminated, vec![0, 0, 0, 0, 1, 2, 0, 0])]
    );
}

#[test]
fn control_skips_what_it_cannot_use_and_goes_on() {
    let mut c = ready_control();
    let mut ev = Vec::new();
    let mut bytes = Vec::new();
    // Unknown type.
    bytes.extend(Header::new(MsgType::Hello, 0).to_bytes());
    bytes[0] = 0x99;
    // A data message on the control connection.
    encode(MsgType::DataStdout, b"hi", &mut bytes);
    // A second HELLO.
    bytes.extend(hello(3));
    // Exec bodies: too short, unterminated, domain out of range.
    encode(MsgType::ExecCmdline, &[0; 8], &mut bytes);
    encode(MsgType::ExecCmdline, b"\0\0\0\0\x01\x02\0\0abc", &mut bytes);
    bytes.extend(exec(MsgType::ExecCmdline, 70000, 513, "u:x"));
    // SERVICE_CONNECT for nothing, SERVICE_REFUSED good and bad.
    bytes.extend(exec(MsgType::ServiceConnect, 0, 513, "SOCKET3"));
    let mut id = [0u8; 32];
    id[..7].copy_from_slice(b"SOCKET9");
    encode(MsgType::ServiceRefused, &id, &mut bytes);
    encode(MsgType::ServiceRefused, &id[..4], &mut bytes);
    // And then a good request.
    bytes.extend(exec(MsgType::ExecCmdline, 0, 514, "u:QUBESRPC a b"));
    c.receive(&bytes, &mut ev).unwrap();
    use ControlEvent::*;
    assert_eq!(
        ev,
        vec![
            Rejected(WireError::UnknownType(0x399)),
            Rejected(WireError::Unexpected(MsgType::DataStdout)),
            Rejected(WireError::Unexpected(MsgType::Hello)),
            Rejected(WireError::BadLength {
                ty: MsgType::ExecCmdline,
                len: 8
            }),
            Rejected(WireError::Unterminated(MsgType::ExecCmdline)),
            Rejected(WireError::BadDomain(70000)),
            UnexpectedConnect,
            Refused {
                ident: "SOCKET9".into()
            },
            Rejected(WireError::BadLength {
                ty: MsgType::ServiceRefused,
                len: 4
            }),
            Exec(ExecRequest {
                kind: ExecKind::Cmdline,
                connect_domain: 0,
                connect_port: 514,
                cmdline: "u:QUBESRPC a b".into()
            }),
        ]
    );
    // Nothing was answered on the control connection for those.
    assert!(c.output().is_empty());
}

#[test]
fn control_oversized_length_breaks_the_stream() {
    let mut c = ready_control();
    let mut ev = Vec::new();
    let h = Header::new(MsgType::ExecCmdline, (MAX_CONTROL_BODY + 1) as u32);
    assert_eq!(
        c.receive(&h.to_bytes(), &mut ev),
        Err(AgentError::Wire(WireError::TooLong {
            ty: 0x200,
            len: (MAX_CONTROL_BODY + 1) as u32,
            max: MAX_CONTROL_BODY
        }))
    );
    // The longest legal one is fine, even byte by byte... in big chunks.
    let mut c = ready_control();
    let cmd = "u:".to_string() + &"x".repeat(MAX_CMDLINE_LEN - 3);
    let bytes = exec(MsgType::ExecCmdline, 0, 513, &cmd);
    for chunk in bytes.chunks(1000) {
        c.receive(chunk, &mut ev).unwrap();
    }
    assert!(matches!(&ev[..], [ControlEvent::Exec(r)] if r.cmdline == cmd));
}

#[test]
fn control_events_before_an_error_are_delivered() {
    let mut c = ready_control();
    let mut ev = Vec::new();
    let mut bytes = exec(MsgType::ExecCmdline, 0, 513, "u:QUBESRPC a b");
    bytes.extend(Header::new(MsgType::DataStdin, u32::MAX).to_bytes());
    assert!(c.receive(&bytes, &mut ev).is_err());
    assert_eq!(ev.len(), 1);
}

// ---- commands -------------------------------------------------------------

#[test]
fn command_lines() {
    use Command::*;
    for (line, want) in [
        ("root:QUBESRPC qubes.WaitForSession none", WaitForSession),
        ("DEFAULT:QUBESRPC qubes.WaitForSession dom0", WaitForSession),
        ("root:nogui:QUBESRPC qubes.SetDateTime dom0", SetDateTime),
        ("root:QUBESRPC qubes.SetDateTime+x dom0", SetDateTime),
        ("root:QUBESRPC qubes.SetDateTime", SetDateTime),
        (
            "root:QUBESRPC qubes.WaitForSessionX dom0",
            Other("qubes.WaitForSessionX".into()),
        ),
        (
            "user:QUBESRPC qubes.VMShell+arg dom0",
            Other("qubes.VMShell+arg".into()),
        ),
        ("user:ls -l", Other("ls -l".into())),
        ("qubes.WaitForSession", Other("qubes.WaitForSession".into())),
        ("", Other(String::new())),
    ] {
        assert_eq!(Command::parse(line), want, "{line}");
    }
}

// ---- sessions -------------------------------------------------------------

fn session(kind: ExecKind, cmd: &str, peer_version: u32) -> Session {
    let mut s = Session::new(kind, cmd);
    assert_eq!(
        messages(s.output()),
        vec![(MsgType::Hello, vec![3, 0, 0, 0])]
    );
    let n = s.output().len();
    s.consume_output(n);
    assert_eq!(s.receive(&hello(peer_version)), Ok(None));
    s
}

fn stdin(data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    encode(MsgType::DataStdin, data, &mut b);
    b
}

#[test]
fn wait_for_session_answers_zero_at_once() {
    let s = session(
        ExecKind::Cmdline,
        "root:QUBESRPC qubes.WaitForSession none",
        3,
    );
    assert!(s.is_done());
    assert_eq!(s.exit_code(), Some(0));
    assert_eq!(s.version(), Some(3));
    assert_eq!(
        messages(s.output()),
        vec![
            (MsgType::DataStdout, vec![]),
            (MsgType::DataExitCode, vec![0, 0, 0, 0])
        ]
    );
}

#[test]
fn set_date_time_reads_one_line() {
    let mut s = session(ExecKind::Cmdline, "root:QUBESRPC qubes.SetDateTime dom0", 3);
    assert!(!s.is_done());
    assert!(s.output().is_empty());
    assert_eq!(s.receive(&stdin(b"2025-03-01T")), Ok(None));
    assert_eq!(
        s.receive(&stdin(b"10:00:00+00:00\nignored")),
        Ok(Some(SessionEvent::DateTime(
            "2025-03-01T10:00:00+00:00".into()
        )))
    );
    assert!(s.is_done());
    assert_eq!(
        messages(s.output()),
        vec![
            (MsgType::DataStdout, vec![]),
            (MsgType::DataExitCode, vec![0, 0, 0, 0])
        ]
    );
    // Later input is ignored.
    assert_eq!(s.receive(&stdin(b"more\n")), Ok(None));
    assert_eq!(s.receive(&stdin(b"")), Ok(None));
}

#[test]
fn set_date_time_at_eof() {
    // Text without a newline, then EOF.
    let mut s = session(ExecKind::Cmdline, "root:QUBESRPC qubes.SetDateTime dom0", 3);
    assert_eq!(s.receive(&stdin(b" 2025-03-01 ")), Ok(None));
    assert_eq!(
        s.receive(&stdin(b"")),
        Ok(Some(SessionEvent::DateTime("2025-03-01".into())))
    );
    assert_eq!(s.exit_code(), Some(0));
    // Nothing at all.
    let mut s = session(ExecKind::Cmdline, "root:QUBESRPC qubes.SetDateTime dom0", 3);
    assert_eq!(s.receive(&stdin(b"")), Ok(None));
    assert_eq!(s.exit_code(), Some(EXIT_NO_TIME));
    assert_eq!(messages(s.output())[0].0, MsgType::DataStderr);
    // The peer closing counts as EOF.
    let mut s = session(ExecKind::Cmdline, "root:QUBESRPC qubes.SetDateTime dom0", 3);
    assert_eq!(s.receive(&stdin(b"noon")), Ok(None));
    assert_eq!(s.peer_closed(), Some(SessionEvent::DateTime("noon".into())));
    // A flood without a newline stops at the bound.
    let mut s = session(ExecKind::Cmdline, "root:QUBESRPC qubes.SetDateTime dom0", 3);
    let ev = s.receive(&stdin(&[b'9'; 1000])).unwrap();
    assert!(matches!(ev, Some(SessionEvent::DateTime(t)) if t.len() == MAX_TIME_LINE));
}

#[test]
fn other_services_are_refused_cleanly() {
    let s = session(ExecKind::Cmdline, "user:QUBESRPC qubes.VMShell dom0", 3);
    assert_eq!(s.exit_code(), Some(EXIT_NOT_PROVIDED));
    let m = messages(s.output());
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].0, MsgType::DataStderr);
    let text = String::from_utf8(m[0].1.clone()).unwrap();
    assert!(text.contains("\"qubes.VMShell\" is not provided"), "{text}");
    assert_eq!(m[1], (MsgType::DataStdout, vec![]));
    assert_eq!(m[2], (MsgType::DataExitCode, 127i32.to_le_bytes().to_vec()));
    // MSG_JUST_EXEC: only the exit code.
    let s = session(ExecKind::JustExec, "user:xterm", 3);
    assert_eq!(
        messages(s.output()),
        vec![(MsgType::DataExitCode, 127i32.to_le_bytes().to_vec())]
    );
}

#[test]
fn session_handshake_errors() {
    let mut s = Session::new(ExecKind::Cmdline, "u:QUBESRPC qubes.WaitForSession x");
    assert_eq!(
        s.receive(&stdin(b"early")),
        Err(AgentError::BeforeHello(MsgType::DataStdin))
    );
    let mut s = Session::new(ExecKind::Cmdline, "u:x");
    assert_eq!(s.receive(&hello(1)), Err(AgentError::Version(1)));
    let mut s = Session::new(ExecKind::Cmdline, "u:x");
    let mut b = Header::new(MsgType::Hello, 0).to_bytes().to_vec();
    b[1] = 0x77;
    assert_eq!(
        s.receive(&b),
        Err(AgentError::Handshake(WireError::UnknownType(0x7700)))
    );
    // The peer went away before its HELLO: done, nothing sent.
    let mut s = Session::new(ExecKind::Cmdline, "u:x");
    assert_eq!(s.peer_closed(), None);
    assert!(s.is_done());
    assert_eq!(s.exit_code(), None);
}

#[test]
fn session_stream_errors() {
    // Unknown type while reading stdin.
    let mut s = session(ExecKind::Cmdline, "u:QUBESRPC qubes.SetDateTime dom0", 3);
    let mut b = Header::new(MsgType::DataStdin, 0).to_bytes().to_vec();
    b[0] = 0x94;
    assert_eq!(
        s.receive(&b),
        Err(AgentError::Wire(WireError::UnknownType(0x194)))
    );
    // A control message on a data connection.
    let mut s = session(ExecKind::Cmdline, "u:QUBESRPC qubes.SetDateTime dom0", 3);
    assert_eq!(
        s.receive(&exec(MsgType::ExecCmdline, 0, 1, "x")),
        Err(AgentError::Wire(WireError::Unexpected(
            MsgType::ExecCmdline
        )))
    );
    // Chunk limits: 64 KiB in v3, 4 KiB in v2.
    let mut s = session(ExecKind::Cmdline, "u:QUBESRPC qubes.SetDateTime dom0", 3);
    let big = Header::new(MsgType::DataStdin, 65537).to_bytes();
    assert!(matches!(
        s.receive(&big),
        Err(AgentError::Wire(WireError::TooLong { max: 65536, .. }))
    ));
    let mut s = session(ExecKind::Cmdline, "u:QUBESRPC qubes.SetDateTime dom0", 2);
    assert_eq!(s.version(), Some(2));
    let big = Header::new(MsgType::DataStdin, 4097).to_bytes();
    assert!(matches!(
        s.receive(&big),
        Err(AgentError::Wire(WireError::TooLong { max: 4096, .. }))
    ));
    // Data types a service never gets are ignored, as by the Linux agent.
    let mut s = session(ExecKind::Cmdline, "u:QUBESRPC qubes.SetDateTime dom0", 3);
    let mut b = Vec::new();
    encode(MsgType::DataStdout, b"x", &mut b);
    encode(MsgType::DataStderr, b"x", &mut b);
    wire::encode_exit_code(3, &mut b);
    assert_eq!(s.receive(&b), Ok(None));
    assert!(!s.is_done());
}

proptest! {
    /// Arbitrary bytes from the daemon, in arbitrary chunks, after a
    /// handshake or not: no panic, the buffer stays bounded, and an error
    /// stays an error.
    #[test]
    fn control_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        chunk in 1usize..64,
        handshake in any::<bool>(),
    ) {
        let mut c = if handshake { ready_control() } else { Control::new() };
        let mut ev = Vec::new();
        for part in bytes.chunks(chunk) {
            if c.receive(part, &mut ev).is_err() {
                break;
            }
            prop_assert!(c.inbox.buf.len() <= MAX_CONTROL_BODY + wire::HDR_SIZE);
        }
        for e in &ev {
            if let ControlEvent::Exec(r) = e {
                prop_assert!(!r.cmdline.contains('\0'));
            }
        }
    }

    /// The same for a session: whatever comes, what it sends is well
    /// formed (HELLO first, at most one exit code, last).
    #[test]
    fn session_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        chunk in 1usize..64,
        which in 0usize..3,
    ) {
        let cmd = ["u:QUBESRPC qubes.WaitForSession none", "u:QUBESRPC qubes.SetDateTime dom0", "u:QUBESRPC x y"][which];
        let mut s = Session::new(ExecKind::Cmdline, cmd);
        let mut input = hello(3);
        input.extend(bytes);
        for part in input.chunks(chunk) {
            if s.receive(part).is_err() {
                break;
            }
        }
        let _ = s.peer_closed();
        let out = messages(s.output());
        prop_assert_eq!(out[0].0, MsgType::Hello);
        let exits = out.iter().filter(|(t, _)| *t == MsgType::DataExitCode).count();
        prop_assert!(exits <= 1);
        if exits == 1 {
            prop_assert_eq!(out.last().unwrap().0, MsgType::DataExitCode);
        }
    }
}
