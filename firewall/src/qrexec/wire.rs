//! The qrexec wire format (Qubes 4.2, protocol version 3; version 2 is
//! still understood): an 8-byte header `{ u32 type; u32 len }`
//! (little-endian) and `len` bytes of body, on the control vchan (port
//! 512, the VM serves dom0's `qrexec-daemon`) and on each data vchan (one
//! per service call).
//!
//! Everything here is a checked view over bytes that came from a peer:
//! [`Header::parse`] and [`Message::split`] validate sizes before anything
//! is read, the typed bodies ([`Hello`], [`ExecParams`],
//! [`ServiceParams`], [`ExitCode`]) borrow the body and check its layout,
//! and no view ever copies or panics. The encoders build what the agent
//! sends (and, for the tests, what dom0 sends).

use alloc::vec::Vec;
use core::fmt;

/// Header bytes.
pub const HDR_SIZE: usize = 8;
/// The protocol version we speak (Qubes 4.1 and later).
pub const PROTOCOL_VERSION: u32 = 3;
/// The oldest version we accept (Qubes 3.0 to 4.0).
pub const MIN_VERSION: u32 = 2;
/// Largest data chunk in protocol version 2.
pub const MAX_DATA_CHUNK_V2: usize = 4096;
/// Largest data chunk in protocol version 3 and later.
pub const MAX_DATA_CHUNK_V3: usize = 65536;
/// Longest command line of an exec request (`MAX_QREXEC_CMD_LEN`, with its
/// NUL).
pub const MAX_CMDLINE_LEN: usize = 65535;
/// `struct exec_params` without the command line.
pub const EXEC_PARAMS_SIZE: usize = 8;
/// `struct service_params`.
pub const SERVICE_PARAMS_SIZE: usize = 32;
/// `struct peer_info`.
pub const PEER_INFO_SIZE: usize = 4;
/// The control vchan's port (`VCHAN_BASE_PORT`).
pub const CONTROL_PORT: u32 = 512;
/// Ring sizes of the control vchan (`libvchan_server_init(0, 512, 4096,
/// 4096)`).
pub const CONTROL_RING_SIZE: usize = 4096;
/// Ring sizes of a data vchan as dom0's side creates it.
pub const DATA_RING_SIZE: usize = 65536;
/// Largest body on the control vchan: an exec request with the longest
/// command line.
pub const MAX_CONTROL_BODY: usize = EXEC_PARAMS_SIZE + MAX_CMDLINE_LEN;

/// Message types (`libqrexec/qrexec.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    /// Service stdin (caller to service); empty = EOF.
    DataStdin = 0x190,
    /// Service stdout (service to caller); empty = EOF.
    DataStdout = 0x191,
    /// Service stderr (service to caller).
    DataStderr = 0x192,
    /// The service's exit status (`i32`).
    DataExitCode = 0x193,
    /// Run a command, its stdio over the data vchan.
    ExecCmdline = 0x200,
    /// Run a command, stdio discarded.
    JustExec = 0x201,
    /// Connect to a service call we made.
    ServiceConnect = 0x202,
    /// A service call we made was refused.
    ServiceRefused = 0x203,
    /// Call a service (protocol 2).
    TriggerService = 0x210,
    /// A data connection ended: its port is free again.
    ConnectionTerminated = 0x211,
    /// Call a service (protocol 3).
    TriggerService3 = 0x212,
    /// Call a service (protocol 4, Qubes 4.3).
    TriggerService4 = 0x213,
    /// The handshake: `peer_info`.
    Hello = 0x300,
}

impl MsgType {
    const ALL: [MsgType; 13] = [
        MsgType::DataStdin,
        MsgType::DataStdout,
        MsgType::DataStderr,
        MsgType::DataExitCode,
        MsgType::ExecCmdline,
        MsgType::JustExec,
        MsgType::ServiceConnect,
        MsgType::ServiceRefused,
        MsgType::TriggerService,
        MsgType::ConnectionTerminated,
        MsgType::TriggerService3,
        MsgType::TriggerService4,
        MsgType::Hello,
    ];

    /// The type with this number.
    pub fn from_u32(v: u32) -> Option<MsgType> {
        MsgType::ALL.iter().copied().find(|t| *t as u32 == v)
    }

    /// Its name in `qrexec.h`.
    pub fn name(self) -> &'static str {
        match self {
            MsgType::DataStdin => "MSG_DATA_STDIN",
            MsgType::DataStdout => "MSG_DATA_STDOUT",
            MsgType::DataStderr => "MSG_DATA_STDERR",
            MsgType::DataExitCode => "MSG_DATA_EXIT_CODE",
            MsgType::ExecCmdline => "MSG_EXEC_CMDLINE",
            MsgType::JustExec => "MSG_JUST_EXEC",
            MsgType::ServiceConnect => "MSG_SERVICE_CONNECT",
            MsgType::ServiceRefused => "MSG_SERVICE_REFUSED",
            MsgType::TriggerService => "MSG_TRIGGER_SERVICE",
            MsgType::ConnectionTerminated => "MSG_CONNECTION_TERMINATED",
            MsgType::TriggerService3 => "MSG_TRIGGER_SERVICE3",
            MsgType::TriggerService4 => "MSG_TRIGGER_SERVICE4",
            MsgType::Hello => "MSG_HELLO",
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a valid qrexec message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header, or than the header says.
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    /// A body longer than this channel allows (the stream cannot be
    /// re-framed safely after it).
    TooLong {
        /// The type number.
        ty: u32,
        /// The length in the header.
        len: u32,
        /// The most allowed.
        max: usize,
    },
    /// A type number qrexec does not define.
    UnknownType(u32),
    /// A body whose length does not fit its type.
    BadLength {
        /// The type.
        ty: MsgType,
        /// Its length.
        len: usize,
    },
    /// A string field without its NUL terminator.
    Unterminated(MsgType),
    /// A known type that this side of this channel must not receive.
    Unexpected(MsgType),
    /// An exec request whose connect domain is not a domain id (16 bits).
    BadDomain(u32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Short { need, have } => {
                write!(f, "short message: {have} of {need} bytes")
            }
            WireError::TooLong { ty, len, max } => match MsgType::from_u32(*ty) {
                Some(t) => write!(f, "{t} of {len} bytes (at most {max} allowed)"),
                None => write!(
                    f,
                    "message type {ty:#x} of {len} bytes (at most {max} allowed)"
                ),
            },
            WireError::UnknownType(t) => write!(f, "unknown message type {t:#x}"),
            WireError::BadLength { ty, len } => write!(f, "{ty} with a body of {len} bytes"),
            WireError::Unterminated(t) => write!(f, "{t} without a NUL-terminated string"),
            WireError::Unexpected(t) => write!(f, "{t} not expected here"),
            WireError::BadDomain(d) => write!(f, "connect domain {d} is not a domain id"),
        }
    }
}

/// A message header (checked only for having 8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    ty: u32,
    len: u32,
}

impl Header {
    /// The header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Header, WireError> {
        let h = bytes.get(..HDR_SIZE).ok_or(WireError::Short {
            need: HDR_SIZE,
            have: bytes.len(),
        })?;
        Ok(Header {
            ty: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            len: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        })
    }

    /// A header for `ty` with a body of `len` bytes.
    pub fn new(ty: MsgType, len: u32) -> Header {
        Header { ty: ty as u32, len }
    }

    /// The type number as sent.
    pub fn raw_type(&self) -> u32 {
        self.ty
    }

    /// The type, if it is one qrexec defines.
    pub fn ty(&self) -> Option<MsgType> {
        MsgType::from_u32(self.ty)
    }

    /// The body length the header announces.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the body is empty (EOF for the stdio types).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 8 bytes.
    pub fn to_bytes(&self) -> [u8; HDR_SIZE] {
        let mut b = [0; HDR_SIZE];
        b[..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// A whole message: its header and a view of its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    header: Header,
    body: &'a [u8],
}

impl<'a> Message<'a> {
    /// The first message of a stream, if it is all there: `Ok(None)` while
    /// the header or body is incomplete, [`WireError::TooLong`] as soon as
    /// the header announces more than `max_body` bytes. On success, also
    /// the bytes the message took.
    pub fn split(
        bytes: &'a [u8],
        max_body: usize,
    ) -> Result<Option<(Message<'a>, usize)>, WireError> {
        let Ok(header) = Header::parse(bytes) else {
            return Ok(None);
        };
        if header.len() > max_body {
            return Err(WireError::TooLong {
                ty: header.ty,
                len: header.len,
                max: max_body,
            });
        }
        let end = HDR_SIZE + header.len();
        match bytes.get(HDR_SIZE..end) {
            Some(body) => Ok(Some((Message { header, body }, end))),
            None => Ok(None),
        }
    }

    /// Exactly one message in `bytes` (no limit beyond the slice): a short
    /// header or body is [`WireError::Short`]; bytes after it are
    /// ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, WireError> {
        let header = Header::parse(bytes)?;
        let need = HDR_SIZE.saturating_add(header.len());
        let body = bytes.get(HDR_SIZE..need).ok_or(WireError::Short {
            need,
            have: bytes.len(),
        })?;
        Ok(Message { header, body })
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The type, or [`WireError::UnknownType`].
    pub fn ty(&self) -> Result<MsgType, WireError> {
        self.header
            .ty()
            .ok_or(WireError::UnknownType(self.header.ty))
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

/// `MSG_HELLO`'s body: `peer_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u32,
}

impl Hello {
    /// Check a message as a HELLO (type and exact length, as the Qubes
    /// peers do).
    pub fn parse(m: &Message<'_>) -> Result<Hello, WireError> {
        let ty = m.ty()?;
        if ty != MsgType::Hello {
            return Err(WireError::BadLength {
                ty,
                len: m.body.len(),
            });
        }
        let b: [u8; 4] = m.body.try_into().map_err(|_| WireError::BadLength {
            ty,
            len: m.body.len(),
        })?;
        Ok(Hello {
            version: u32::from_le_bytes(b),
        })
    }
}

/// The body of `MSG_EXEC_CMDLINE`, `MSG_JUST_EXEC` and
/// `MSG_SERVICE_CONNECT`: where to connect the data vchan, and the
/// NUL-terminated command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecParams<'a> {
    /// The domain serving the data vchan.
    pub connect_domain: u32,
    /// Its vchan port.
    pub connect_port: u32,
    cmdline: &'a [u8],
}

impl<'a> ExecParams<'a> {
    /// Check a body of type `ty`: at least the two words and a non-empty,
    /// NUL-terminated string (whatever follows the first NUL is ignored),
    /// at most [`MAX_CMDLINE_LEN`] bytes with the NUL.
    pub fn parse(ty: MsgType, body: &'a [u8]) -> Result<ExecParams<'a>, WireError> {
        let len = body.len();
        if len <= EXEC_PARAMS_SIZE || len > EXEC_PARAMS_SIZE + MAX_CMDLINE_LEN {
            return Err(WireError::BadLength { ty, len });
        }
        let word = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let tail = &body[EXEC_PARAMS_SIZE..];
        let nul = tail
            .iter()
            .position(|b| *b == 0)
            .ok_or(WireError::Unterminated(ty))?;
        Ok(ExecParams {
            connect_domain: word(0),
            connect_port: word(4),
            cmdline: &tail[..nul],
        })
    }

    /// The command line without its NUL.
    pub fn cmdline(&self) -> &'a [u8] {
        self.cmdline
    }
}

/// `MSG_SERVICE_REFUSED`'s body: the 32-byte request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceParams<'a> {
    ident: &'a [u8],
}

impl<'a> ServiceParams<'a> {
    /// Check the body: exactly 32 bytes (the id up to the first NUL).
    pub fn parse(ty: MsgType, body: &'a [u8]) -> Result<ServiceParams<'a>, WireError> {
        if body.len() != SERVICE_PARAMS_SIZE {
            return Err(WireError::BadLength {
                ty,
                len: body.len(),
            });
        }
        let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
        Ok(ServiceParams {
            ident: &body[..end],
        })
    }

    /// The request id.
    pub fn ident(&self) -> &'a [u8] {
        self.ident
    }
}

/// `MSG_DATA_EXIT_CODE`'s body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl ExitCode {
    /// Check the body: at least 4 bytes (more are ignored, as by
    /// qrexec-client).
    pub fn parse(body: &[u8]) -> Result<ExitCode, WireError> {
        match body.get(..4) {
            Some(b) => Ok(ExitCode(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            None => Err(WireError::BadLength {
                ty: MsgType::DataExitCode,
                len: body.len(),
            }),
        }
    }
}

// ---- encoders -------------------------------------------------------------

/// Append a message of type `ty` with `body`.
///
/// # Panics
/// If `body` is longer than `u32::MAX` bytes (never for what the agent
/// sends: its bodies are bounded by the chunk size).
pub fn encode(ty: MsgType, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("qrexec body under 4 GiB");
    out.extend_from_slice(&Header::new(ty, len).to_bytes());
    out.extend_from_slice(body);
}

/// Append `MSG_HELLO` with `version`.
pub fn encode_hello(version: u32, out: &mut Vec<u8>) {
    encode(MsgType::Hello, &version.to_le_bytes(), out);
}

/// Append `MSG_DATA_EXIT_CODE`.
pub fn encode_exit_code(code: i32, out: &mut Vec<u8>) {
    encode(MsgType::DataExitCode, &code.to_le_bytes(), out);
}

/// Append `MSG_CONNECTION_TERMINATED` for a data connection.
pub fn encode_connection_terminated(domain: u32, port: u32, out: &mut Vec<u8>) {
    let mut b = [0u8; EXEC_PARAMS_SIZE];
    b[..4].copy_from_slice(&domain.to_le_bytes());
    b[4..].copy_from_slice(&port.to_le_bytes());
    encode(MsgType::ConnectionTerminated, &b, out);
}

/// Append an exec request (what dom0's daemon sends; for tests and tools):
/// `ty` with `exec_params` and `cmdline` plus its NUL.
pub fn encode_exec(ty: MsgType, domain: u32, port: u32, cmdline: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(EXEC_PARAMS_SIZE + cmdline.len() + 1);
    body.extend_from_slice(&domain.to_le_bytes());
    body.extend_from_slice(&port.to_le_bytes());
    body.extend_from_slice(cmdline);
    body.push(0);
    encode(ty, &body, out);
}

/// Append stdio data as chunks of at most `chunk` bytes (`data` empty:
/// one empty message, i.e. EOF).
pub fn encode_data(ty: MsgType, data: &[u8], chunk: usize, out: &mut Vec<u8>) {
    if data.is_empty() {
        encode(ty, &[], out);
        return;
    }
    for c in data.chunks(chunk.max(1)) {
        encode(ty, c, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_and_short() {
        let h = Header::new(MsgType::Hello, 4);
        assert_eq!(h.to_bytes(), [0, 3, 0, 0, 4, 0, 0, 0]);
        assert_eq!(Header::parse(&h.to_bytes()), Ok(h));
        assert_eq!(h.ty(), Some(MsgType::Hello));
        for n in 0..HDR_SIZE {
            assert_eq!(
                Header::parse(&h.to_bytes()[..n]),
                Err(WireError::Short {
                    need: HDR_SIZE,
                    have: n
                })
            );
        }
    }

    #[test]
    fn every_type_has_its_number() {
        for t in MsgType::ALL {
            assert_eq!(MsgType::from_u32(t as u32), Some(t));
        }
        assert_eq!(MsgType::from_u32(0x194), None);
        assert_eq!(MsgType::from_u32(0), None);
        assert_eq!(MsgType::ExecCmdline as u32, 0x200);
        assert_eq!(MsgType::ConnectionTerminated as u32, 0x211);
    }

    #[test]
    fn split_waits_for_whole_messages_and_caps_lengths() {
        let mut out = Vec::new();
        encode_hello(3, &mut out);
        encode_exit_code(-1, &mut out);
        for n in 0..12 {
            assert_eq!(Message::split(&out[..n], 64), Ok(None), "{n}");
        }
        let (m, used) = Message::split(&out, 64).unwrap().unwrap();
        assert_eq!(used, 12);
        assert_eq!(Hello::parse(&m), Ok(Hello { version: 3 }));
        let (m, used) = Message::split(&out[12..], 64).unwrap().unwrap();
        assert_eq!(used, 12);
        assert_eq!(m.ty(), Ok(MsgType::DataExitCode));
        assert_eq!(ExitCode::parse(m.body()), Ok(ExitCode(-1)));
        // A too long header is refused at once, before its body arrives.
        let big = Header::new(MsgType::DataStdin, 65537).to_bytes();
        assert_eq!(
            Message::split(&big, MAX_DATA_CHUNK_V3),
            Err(WireError::TooLong {
                ty: 0x190,
                len: 65537,
                max: 65536
            })
        );
        let huge = [0xff; 8];
        assert!(matches!(
            Message::split(&huge, MAX_CONTROL_BODY),
            Err(WireError::TooLong { .. })
        ));
        assert_eq!(
            Message::parse(&huge),
            Err(WireError::Short {
                need: 8 + u32::MAX as usize,
                have: 8
            })
        );
    }

    #[test]
    fn unknown_type_is_typed() {
        let b = [0x94, 0x01, 0, 0, 0, 0, 0, 0];
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.ty(), Err(WireError::UnknownType(0x194)));
        assert_eq!(
            m.ty().unwrap_err().to_string(),
            "unknown message type 0x194"
        );
    }

    #[test]
    fn hello_must_be_exact() {
        for body in [&[][..], &[3, 0, 0], &[3, 0, 0, 0, 0]] {
            let mut out = Vec::new();
            encode(MsgType::Hello, body, &mut out);
            let m = Message::parse(&out).unwrap();
            assert_eq!(
                Hello::parse(&m),
                Err(WireError::BadLength {
                    ty: MsgType::Hello,
                    len: body.len()
                })
            );
        }
        let mut out = Vec::new();
        encode_exit_code(0, &mut out);
        assert!(Hello::parse(&Message::parse(&out).unwrap()).is_err());
    }

    #[test]
    fn exec_params_views() {
        let mut out = Vec::new();
        encode_exec(
            MsgType::ExecCmdline,
            0,
            513,
            b"root:QUBESRPC qubes.WaitForSession dom0",
            &mut out,
        );
        let m = Message::parse(&out).unwrap();
        let p = ExecParams::parse(MsgType::ExecCmdline, m.body()).unwrap();
        assert_eq!((p.connect_domain, p.connect_port), (0, 513));
        assert_eq!(p.cmdline(), b"root:QUBESRPC qubes.WaitForSession dom0");
        // Bytes after the NUL are ignored.
        let mut body = m.body().to_vec();
        body.extend_from_slice(b"junk");
        assert_eq!(
            ExecParams::parse(MsgType::ExecCmdline, &body)
                .unwrap()
                .cmdline(),
            p.cmdline()
        );
        // Too short, unterminated, too long.
        let t = MsgType::JustExec;
        for n in 0..=8 {
            assert_eq!(
                ExecParams::parse(t, &m.body()[..n]),
                Err(WireError::BadLength { ty: t, len: n })
            );
        }
        assert_eq!(
            ExecParams::parse(t, &m.body()[..m.body().len() - 1]),
            Err(WireError::Unterminated(t))
        );
        let long = alloc::vec![b'a'; EXEC_PARAMS_SIZE + MAX_CMDLINE_LEN + 1];
        assert!(matches!(
            ExecParams::parse(t, &long),
            Err(WireError::BadLength { .. })
        ));
    }

    #[test]
    fn service_params_and_exit_code() {
        let mut id = [0u8; 32];
        id[..7].copy_from_slice(b"SOCKET7");
        let p = ServiceParams::parse(MsgType::ServiceRefused, &id).unwrap();
        assert_eq!(p.ident(), b"SOCKET7");
        assert!(ServiceParams::parse(MsgType::ServiceRefused, &id[..31]).is_err());
        let full = [b'x'; 32];
        assert_eq!(
            ServiceParams::parse(MsgType::ServiceRefused, &full)
                .unwrap()
                .ident()
                .len(),
            32
        );
        assert_eq!(ExitCode::parse(&[1, 0, 0, 0, 9]), Ok(ExitCode(1)));
        assert!(ExitCode::parse(&[1, 0, 0]).is_err());
    }

    #[test]
    fn data_chunks() {
        let mut out = Vec::new();
        encode_data(MsgType::DataStdout, b"", 4, &mut out);
        assert_eq!(out, Header::new(MsgType::DataStdout, 0).to_bytes());
        out.clear();
        encode_data(MsgType::DataStderr, b"abcdefghij", 4, &mut out);
        let mut rest = &out[..];
        let mut lens = Vec::new();
        while let Some((m, n)) = Message::split(rest, 4).unwrap() {
            lens.push(m.body().len());
            rest = &rest[n..];
        }
        assert_eq!(lens, [4, 4, 2]);
        out.clear();
        encode_connection_terminated(0, 514, &mut out);
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.ty(), Ok(MsgType::ConnectionTerminated));
        assert_eq!(m.body(), [0, 0, 0, 0, 2, 2, 0, 0]);
    }

    proptest! {
        #[test]
        fn views_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), max in 0usize..80) {
            let _ = Header::parse(&bytes);
            if let Ok(m) = Message::parse(&bytes) {
                prop_assert!(m.body().len() + HDR_SIZE <= bytes.len());
                let _ = Hello::parse(&m);
                if let Ok(t) = m.ty() {
                    let _ = ExecParams::parse(t, m.body());
                    let _ = ServiceParams::parse(t, m.body());
                }
                let _ = ExitCode::parse(m.body());
            }
            match Message::split(&bytes, max) {
                Ok(Some((m, n))) => {
                    prop_assert!(m.body().len() <= max);
                    prop_assert_eq!(n, HDR_SIZE + m.body().len());
                }
                Ok(None) => prop_assert!(bytes.len() < HDR_SIZE || Header::parse(&bytes).unwrap().len() + HDR_SIZE > bytes.len()),
                Err(WireError::TooLong { len, .. }) => prop_assert!(len as usize > max),
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
    }
}
