//! The qrexec agent, sans-IO: bytes in, bytes out, events for the caller.
//!
//! Two state machines, one per kind of vchan:
//!
//! - [`Control`]: the control connection to dom0's `qrexec-daemon` (we
//!   serve it on port 512). Our HELLO is queued from the start (the
//!   daemon reads it first, then sends its own); the negotiated version is
//!   the smaller of the two, at least 2. Then the daemon sends exec
//!   requests ([`ControlEvent::Exec`]); for each one the caller connects
//!   a data vchan and runs a [`Session`], and when it is over calls
//!   [`Control::connection_terminated`], so the daemon can reuse the port.
//!   A message we cannot use (a type the daemon should not send, a
//!   malformed body) is reported as [`ControlEvent::Rejected`] and
//!   skipped: the connection stays up. Only a broken stream (a length
//!   beyond any legal message, a bad handshake) is an [`AgentError`],
//!   after which the caller starts a new server.
//!
//! - [`Session`]: one service call on its data vchan (we are its client).
//!   HELLO both ways, then the service: `qubes.WaitForSession` answers
//!   exit code 0 at once (the firewall has no session to wait for);
//!   `qubes.SetDateTime` reads the time dom0 sends on stdin (one line),
//!   reports it ([`SessionEvent::DateTime`]) and answers 0; anything else
//!   is refused with a line on stderr and exit code
//!   [`EXIT_NOT_PROVIDED`]. For `MSG_EXEC_CMDLINE` the answer ends with an
//!   empty stdout (EOF) before the exit code; `MSG_JUST_EXEC` gets only
//!   the exit code, as the Linux agent does.
//!
//! Input is buffered only up to one message (bounded by the channel's
//! limit); output is a byte queue the caller writes to the vchan as space
//! allows ([`Control::output`], [`Control::consume_output`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::wire::{
    self, ExecParams, Hello, Message, MsgType, ServiceParams, WireError, MAX_CONTROL_BODY,
    MAX_DATA_CHUNK_V2, MAX_DATA_CHUNK_V3, MIN_VERSION, PROTOCOL_VERSION,
};

/// Exit code of a refused service (`127`, "command not found", what the
/// Linux agent's multiplexer gives for a service it does not have).
pub const EXIT_NOT_PROVIDED: i32 = 127;
/// Exit code of `qubes.SetDateTime` when dom0 sent no time.
pub const EXIT_NO_TIME: i32 = 1;
/// The most stdin `qubes.SetDateTime` keeps (a time stamp is ~30 bytes).
pub const MAX_TIME_LINE: usize = 256;

/// Why a connection cannot go on (the caller closes it; for the control
/// connection, it serves a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentError {
    /// The stream is broken (a length beyond any legal message, or an
    /// unknown type on a data connection).
    Wire(WireError),
    /// The first message was not a valid HELLO.
    Handshake(WireError),
    /// The peer speaks a protocol older than version 2.
    Version(u32),
    /// A data message arrived before the handshake finished.
    BeforeHello(MsgType),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Wire(e) => write!(f, "broken stream: {e}"),
            AgentError::Handshake(e) => write!(f, "bad HELLO: {e}"),
            AgentError::Version(v) => write!(
                f,
                "peer speaks qrexec protocol {v}, at least {MIN_VERSION} is needed"
            ),
            AgentError::BeforeHello(t) => write!(f, "{t} before the handshake"),
        }
    }
}

impl From<WireError> for AgentError {
    fn from(e: WireError) -> Self {
        AgentError::Wire(e)
    }
}

/// Received bytes, at most one message beyond what was processed.
#[derive(Debug)]
struct Inbox {
    buf: Vec<u8>,
    max_body: usize,
}

impl Inbox {
    fn new(max_body: usize) -> Inbox {
        Inbox {
            buf: Vec::new(),
            max_body,
        }
    }

    /// Feed `bytes`, calling `each` for every whole message (which may
    /// return a new body limit for the messages after it); stops at the
    /// first error (of the framing, or returned by `each`).
    fn feed<E: From<WireError>>(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(Message<'_>) -> Result<Option<usize>, E>,
    ) -> Result<(), E> {
        // Whole messages straight from `bytes` while nothing is buffered.
        while self.buf.is_empty() {
            match Message::split(bytes, self.max_body)? {
                Some((m, n)) => {
                    if let Some(limit) = each(m)? {
                        self.max_body = limit;
                    }
                    bytes = &bytes[n..];
                }
                None => break,
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        let r = loop {
            match Message::split(&self.buf[pos..], self.max_body) {
                Ok(Some((m, n))) => {
                    pos += n;
                    match each(m) {
                        Ok(Some(limit)) => self.max_body = limit,
                        Ok(None) => {}
                        Err(e) => break Err(e),
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        };
        self.buf.drain(..pos);
        r
    }
}

// ---- the control connection ---------------------------------------------

/// What an exec request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecKind {
    /// `MSG_EXEC_CMDLINE`: stdio over the data vchan.
    Cmdline,
    /// `MSG_JUST_EXEC`: stdio discarded, exit code only.
    JustExec,
}

/// An exec request from dom0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// Which kind.
    pub kind: ExecKind,
    /// The domain serving the data vchan.
    pub connect_domain: u16,
    /// Its port.
    pub connect_port: u32,
    /// The command line (`user:QUBESRPC service source`), lossily UTF-8.
    pub cmdline: String,
}

/// What the control connection reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlEvent {
    /// The handshake finished with this version.
    Ready {
        /// The negotiated version.
        version: u32,
    },
    /// Run this (connect its data vchan, then a [`Session`]).
    Exec(ExecRequest),
    /// dom0 refused a service call (we never make any).
    Refused {
        /// The request id, lossily UTF-8.
        ident: String,
    },
    /// A message skipped: the connection goes on.
    Rejected(WireError),
    /// `MSG_SERVICE_CONNECT` for a call we never made: skipped.
    UnexpectedConnect,
}

/// The control connection (see the module doc).
#[derive(Debug)]
pub struct Control {
    inbox: Inbox,
    out: Vec<u8>,
    version: Option<u32>,
}

impl Default for Control {
    fn default() -> Self {
        Control::new()
    }
}

impl Control {
    /// A new connection, our HELLO queued.
    pub fn new() -> Control {
        let mut out = Vec::with_capacity(64);
        wire::encode_hello(PROTOCOL_VERSION, &mut out);
        Control {
            inbox: Inbox::new(MAX_CONTROL_BODY),
            out,
            version: None,
        }
    }

    /// The negotiated version, once the handshake is done.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Control::output`] were sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Tell the daemon a data connection is over.
    pub fn connection_terminated(&mut self, domain: u16, port: u32) {
        wire::encode_connection_terminated(u32::from(domain), port, &mut self.out);
    }

    /// Process received bytes; events go to `events`. An error breaks the
    /// connection (events before it were still delivered).
    pub fn receive(
        &mut self,
        bytes: &[u8],
        events: &mut Vec<ControlEvent>,
    ) -> Result<(), AgentError> {
        let version = &mut self.version;
        self.inbox
            .feed(bytes, |m| Self::message(version, m, events).map(|()| None))
    }

    fn message(
        version: &mut Option<u32>,
        m: Message<'_>,
        events: &mut Vec<ControlEvent>,
    ) -> Result<(), AgentError> {
        if version.is_none() {
            let hello = Hello::parse(&m).map_err(AgentError::Handshake)?;
            let v = hello.version.min(PROTOCOL_VERSION);
            if v < MIN_VERSION {
                return Err(AgentError::Version(hello.version));
            }
            *version = Some(v);
            events.push(ControlEvent::Ready { version: v });
            return Ok(());
        }
        let ev = match m.ty() {
            Ok(t @ (MsgType::ExecCmdline | MsgType::JustExec)) => {
                match ExecParams::parse(t, m.body()).and_then(|p| exec_request(t, &p)) {
                    Ok(r) => ControlEvent::Exec(r),
                    Err(e) => ControlEvent::Rejected(e),
                }
            }
            Ok(MsgType::ServiceConnect) => ControlEvent::UnexpectedConnect,
            Ok(t @ MsgType::ServiceRefused) => match ServiceParams::parse(t, m.body()) {
                Ok(p) => ControlEvent::Refused {
                    ident: String::from_utf8_lossy(p.ident()).into_owned(),
                },
                Err(e) => ControlEvent::Rejected(e),
            },
            Ok(t) => ControlEvent::Rejected(WireError::Unexpected(t)),
            Err(e) => ControlEvent::Rejected(e),
        };
        events.push(ev);
        Ok(())
    }
}

fn exec_request(t: MsgType, p: &ExecParams<'_>) -> Result<ExecRequest, WireError> {
    let kind = if t == MsgType::JustExec {
        ExecKind::JustExec
    } else {
        ExecKind::Cmdline
    };
    // Domain ids are 16 bits; anything above cannot be connected to.
    let domain =
        u16::try_from(p.connect_domain).map_err(|_| WireError::BadDomain(p.connect_domain))?;
    Ok(ExecRequest {
        kind,
        connect_domain: domain,
        connect_port: p.connect_port,
        cmdline: String::from_utf8_lossy(p.cmdline()).into_owned(),
    })
}

// ---- commands -------------------------------------------------------------

/// What a command line asks the firewall to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `qubes.WaitForSession`.
    WaitForSession,
    /// `qubes.SetDateTime`.
    SetDateTime,
    /// Anything else: refused. The service name (with its argument), or
    /// the whole command for a plain command line.
    Other(String),
}

impl Command {
    /// Parse `user:[nogui:]QUBESRPC service[+arg] source` (what dom0 sends
    /// for a service call). The service name is what counts; the user,
    /// argument and source are ignored.
    pub fn parse(cmdline: &str) -> Command {
        let rest = cmdline.split_once(':').map_or(cmdline, |(_, r)| r);
        let rest = rest.strip_prefix("nogui:").unwrap_or(rest);
        let Some(call) = rest.strip_prefix("QUBESRPC ") else {
            return Command::Other(String::from(rest));
        };
        let service = call.split(' ').next().unwrap_or("");
        let name = service.split_once('+').map_or(service, |(n, _)| n);
        match name {
            "qubes.WaitForSession" => Command::WaitForSession,
            "qubes.SetDateTime" => Command::SetDateTime,
            _ => Command::Other(String::from(service)),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::WaitForSession => f.write_str("qubes.WaitForSession"),
            Command::SetDateTime => f.write_str("qubes.SetDateTime"),
            Command::Other(s) => write!(f, "{s:?}"),
        }
    }
}

// ---- one service call -----------------------------------------------------

/// The largest data message of a protocol version (v2 before the
/// handshake).
fn chunk_size(version: Option<u32>) -> usize {
    if version.unwrap_or(MIN_VERSION) >= 3 {
        MAX_DATA_CHUNK_V3
    } else {
        MAX_DATA_CHUNK_V2
    }
}

/// What a session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// `qubes.SetDateTime`: the time dom0 sent (one line, as sent).
    DateTime(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's HELLO.
    Hello,
    /// Reading stdin (`qubes.SetDateTime`).
    Stdin,
    /// The answer is queued; input is ignored.
    Done,
}

/// One service call on its data vchan (see the module doc).
#[derive(Debug)]
pub struct Session {
    kind: ExecKind,
    command: Command,
    phase: Phase,
    inbox: Inbox,
    out: Vec<u8>,
    version: Option<u32>,
    stdin: Vec<u8>,
    exit: Option<i32>,
}

impl Session {
    /// A session for `request`, our HELLO queued.
    pub fn new(kind: ExecKind, cmdline: &str) -> Session {
        let mut out = Vec::with_capacity(64);
        wire::encode_hello(PROTOCOL_VERSION, &mut out);
        Session {
            kind,
            command: Command::parse(cmdline),
            phase: Phase::Hello,
            inbox: Inbox::new(MAX_DATA_CHUNK_V3),
            out,
            version: None,
            stdin: Vec::new(),
            exit: None,
        }
    }

    /// What is being run.
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// The exit code sent, once the answer is queued.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit
    }

    /// Whether the answer is queued: once [`Session::output`] is empty,
    /// close the data vchan.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The negotiated version, once the handshake is done.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Session::output`] were sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Process received bytes. An error ends the session without an
    /// answer (close the vchan).
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<SessionEvent>, AgentError> {
        let mut event = None;
        let mut inbox = core::mem::replace(&mut self.inbox, Inbox::new(0));
        let r = inbox.feed(bytes, |m| {
            let before = self.version;
            if let Some(e) = self.message(m)? {
                event = Some(e);
            }
            // The handshake sets the chunk size for what follows.
            Ok::<_, AgentError>((self.version != before).then(|| chunk_size(self.version)))
        });
        self.inbox = inbox;
        r.map(|()| event)
    }

    /// The peer closed the vchan: whatever is pending ends now (stdin at
    /// EOF).
    pub fn peer_closed(&mut self) -> Option<SessionEvent> {
        match self.phase {
            Phase::Stdin => self.finish_set_date_time(),
            Phase::Hello => {
                self.phase = Phase::Done;
                None
            }
            Phase::Done => None,
        }
    }

    fn message(&mut self, m: Message<'_>) -> Result<Option<SessionEvent>, AgentError> {
        if self.phase == Phase::Hello {
            let hello = match Hello::parse(&m) {
                Ok(h) => h,
                Err(e) => {
                    return Err(match m.ty() {
                        Ok(t) if t != MsgType::Hello => AgentError::BeforeHello(t),
                        _ => AgentError::Handshake(e),
                    })
                }
            };
            let v = hello.version.min(PROTOCOL_VERSION);
            if v < MIN_VERSION {
                return Err(AgentError::Version(hello.version));
            }
            self.version = Some(v);
            return Ok(self.start());
        }
        if self.phase == Phase::Done {
            // The answer is out; the vchan closes next.
            return Ok(None);
        }
        match m.ty().map_err(AgentError::Wire)? {
            MsgType::DataStdin if self.phase == Phase::Stdin => {
                if m.body().is_empty() {
                    return Ok(self.finish_set_date_time());
                }
                let room = MAX_TIME_LINE.saturating_sub(self.stdin.len());
                self.stdin
                    .extend_from_slice(&m.body()[..m.body().len().min(room)]);
                if self.stdin.contains(&b'\n') || self.stdin.len() >= MAX_TIME_LINE {
                    return Ok(self.finish_set_date_time());
                }
                Ok(None)
            }
            // Stdin we do not read; stdout/stderr/exit code from a client
            // are logged and ignored by the Linux agent: ignored too.
            MsgType::DataStdin
            | MsgType::DataStdout
            | MsgType::DataStderr
            | MsgType::DataExitCode => Ok(None),
            t => Err(AgentError::Wire(WireError::Unexpected(t))),
        }
    }

    /// The handshake is done: answer, or start reading stdin.
    fn start(&mut self) -> Option<SessionEvent> {
        match self.command {
            Command::WaitForSession => self.answer(0, None),
            Command::SetDateTime => self.phase = Phase::Stdin,
            Command::Other(_) => {
                let msg = format!(
                    "qrexec: {} is not provided by the Qubes firewall unikernel\n",
                    self.command
                );
                self.answer(EXIT_NOT_PROVIDED, Some(&msg));
            }
        }
        None
    }

    fn finish_set_date_time(&mut self) -> Option<SessionEvent> {
        let line = self.stdin.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let line: String = String::from_utf8_lossy(line).trim().into();
        if line.is_empty() {
            self.answer(EXIT_NO_TIME, Some("qrexec: no time given\n"));
            return None;
        }
        self.answer(0, None);
        Some(SessionEvent::DateTime(line))
    }

    /// Queue the answer: stderr (if any), stdout EOF, exit code; only the
    /// exit code for `MSG_JUST_EXEC`.
    fn answer(&mut self, code: i32, stderr: Option<&str>) {
        let chunk = chunk_size(self.version);
        if self.kind == ExecKind::Cmdline {
            if let Some(s) = stderr {
                wire::encode_data(MsgType::DataStderr, s.as_bytes(), chunk, &mut self.out);
            }
            wire::encode_data(MsgType::DataStdout, &[], chunk, &mut self.out);
        }
        wire::encode_exit_code(code, &mut self.out);
        self.exit = Some(code);
        self.phase = Phase::Done;
        self.stdin = Vec::new();
    }
}

#[cfg(test)]
mod tests;
