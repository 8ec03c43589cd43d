//! Typed replies and watch events, parsed from message payloads.
//!
//! Each parser knows which request type the payload answers (the client
//! checked that the reply's type matches) and enforces the shape xenstored
//! always sends: NUL-terminated fields, UTF-8 names, `OK\0` for
//! acknowledgements. `XS_READ` values are raw bytes and are not
//! interpreted.

use alloc::string::String;
use alloc::vec::Vec;

use super::error::ProtocolError;
use super::perm::{parse_decimal_u32, Perm};
use super::request::TxId;
use super::wire::take_cstr;
use crate::abi::xs_wire::msg;

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `XS_READ`: the value.
    Value(Vec<u8>),
    /// `XS_DIRECTORY`: child names.
    Children(Vec<String>),
    /// `XS_GET_PERMS`: the list, owner first (never empty).
    Perms(Vec<Perm>),
    /// `OK` to `WRITE`, `MKDIR`, `RM`, `SET_PERMS`, `WATCH`, `UNWATCH`,
    /// `TRANSACTION_END`, `RESET_WATCHES`.
    Ok,
    /// `XS_TRANSACTION_START`: the new (non-zero) transaction id.
    Transaction(TxId),
    /// `XS_GET_DOMAIN_PATH`: the path.
    Path(String),
}

/// A watch firing: `path` changed (or the watch was just registered, or
/// spuriously); re-read what matters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// The node that changed (relative if the watch path was).
    pub path: String,
    /// The token given when the watch was registered.
    pub token: String,
}

/// Parse the success payload of a reply to a request of type `ty`.
pub fn parse_reply(ty: u32, p: &[u8]) -> Result<Reply, ProtocolError> {
    match ty {
        msg::READ => Ok(Reply::Value(p.to_vec())),
        msg::DIRECTORY => {
            let mut names = Vec::new();
            for f in fields(ty, p)? {
                if f.is_empty() {
                    return Err(ProtocolError::BadPayload {
                        ty,
                        what: "empty child name",
                    });
                }
                names.push(utf8(ty, f)?);
            }
            Ok(Reply::Children(names))
        }
        msg::GET_PERMS => {
            let mut perms = Vec::new();
            for f in fields(ty, p)? {
                let perm = Perm::parse(f).map_err(|_| ProtocolError::BadPayload {
                    ty,
                    what: "malformed permission",
                })?;
                perms.push(perm);
            }
            if perms.is_empty() {
                return Err(ProtocolError::BadPayload {
                    ty,
                    what: "empty permission list",
                });
            }
            Ok(Reply::Perms(perms))
        }
        msg::TRANSACTION_START => {
            let id = single(ty, p)?;
            match parse_decimal_u32(id) {
                Some(0) | None => Err(ProtocolError::BadPayload {
                    ty,
                    what: "transaction id not a non-zero u32",
                }),
                Some(n) => Ok(Reply::Transaction(TxId(n))),
            }
        }
        msg::GET_DOMAIN_PATH => Ok(Reply::Path(utf8(ty, single(ty, p)?)?)),
        msg::WRITE
        | msg::MKDIR
        | msg::RM
        | msg::SET_PERMS
        | msg::WATCH
        | msg::UNWATCH
        | msg::TRANSACTION_END
        | msg::RESET_WATCHES => {
            if single(ty, p)? == b"OK" {
                Ok(Reply::Ok)
            } else {
                Err(ProtocolError::BadPayload {
                    ty,
                    what: "acknowledgement is not OK",
                })
            }
        }
        _ => Err(ProtocolError::BadPayload {
            ty,
            what: "not a reply type this client requests",
        }),
    }
}

/// Parse an `XS_WATCH_EVENT` payload: `path\0token\0`, nothing after.
pub fn parse_watch_event(p: &[u8]) -> Result<WatchEvent, ProtocolError> {
    let ty = msg::WATCH_EVENT;
    let (path, rest) = take_cstr(p).map_err(|_| ProtocolError::MissingNul { ty })?;
    let (token, rest) = take_cstr(rest).map_err(|_| ProtocolError::MissingNul { ty })?;
    if !rest.is_empty() {
        return Err(ProtocolError::BadPayload {
            ty,
            what: "bytes after the token",
        });
    }
    Ok(WatchEvent {
        path: utf8(ty, path)?,
        token: utf8(ty, token)?,
    })
}

/// The NUL-terminated fields of `p`: empty, or ending in NUL.
fn fields(ty: u32, p: &[u8]) -> Result<impl Iterator<Item = &[u8]>, ProtocolError> {
    let body = match p.split_last() {
        None => &p[..0],
        Some((0, body)) => body,
        Some(_) => return Err(ProtocolError::MissingNul { ty }),
    };
    Ok(body.split(|&b| b == 0).filter(move |_| !p.is_empty()))
}

/// The one NUL-terminated field that is the whole of `p`.
fn single(ty: u32, p: &[u8]) -> Result<&[u8], ProtocolError> {
    let (f, rest) = take_cstr(p).map_err(|_| ProtocolError::MissingNul { ty })?;
    if !rest.is_empty() {
        return Err(ProtocolError::BadPayload {
            ty,
            what: "bytes after the NUL",
        });
    }
    Ok(f)
}

fn utf8(ty: u32, b: &[u8]) -> Result<String, ProtocolError> {
    core::str::from_utf8(b)
        .map(String::from)
        .map_err(|_| ProtocolError::NotUtf8 { ty })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::perm::Access;

    fn bad(ty: u32, what: &'static str) -> Result<Reply, ProtocolError> {
        Err(ProtocolError::BadPayload { ty, what })
    }

    #[test]
    fn good_replies() {
        assert_eq!(
            parse_reply(msg::READ, b"a\0\xff"),
            Ok(Reply::Value(b"a\0\xff".to_vec()))
        );
        assert_eq!(parse_reply(msg::READ, b""), Ok(Reply::Value(vec![])));
        assert_eq!(
            parse_reply(msg::DIRECTORY, b"a\0bc\0"),
            Ok(Reply::Children(vec!["a".into(), "bc".into()]))
        );
        assert_eq!(
            parse_reply(msg::DIRECTORY, b""),
            Ok(Reply::Children(vec![]))
        );
        assert_eq!(
            parse_reply(msg::GET_PERMS, b"n5\0r0\0"),
            Ok(Reply::Perms(vec![
                Perm::new(5, Access::None),
                Perm::new(0, Access::Read)
            ]))
        );
        assert_eq!(
            parse_reply(msg::TRANSACTION_START, b"42\0"),
            Ok(Reply::Transaction(TxId(42)))
        );
        assert_eq!(
            parse_reply(msg::GET_DOMAIN_PATH, b"/local/domain/3\0"),
            Ok(Reply::Path("/local/domain/3".into()))
        );
        for ty in [
            msg::WRITE,
            msg::MKDIR,
            msg::RM,
            msg::SET_PERMS,
            msg::WATCH,
            msg::UNWATCH,
        ] {
            assert_eq!(parse_reply(ty, b"OK\0"), Ok(Reply::Ok));
        }
        assert_eq!(parse_reply(msg::TRANSACTION_END, b"OK\0"), Ok(Reply::Ok));
        assert_eq!(parse_reply(msg::RESET_WATCHES, b"OK\0"), Ok(Reply::Ok));
    }

    #[test]
    fn missing_nuls() {
        let nul = |ty| Err(ProtocolError::MissingNul { ty });
        assert_eq!(parse_reply(msg::DIRECTORY, b"a\0b"), nul(msg::DIRECTORY));
        assert_eq!(parse_reply(msg::GET_PERMS, b"r0"), nul(msg::GET_PERMS));
        assert_eq!(
            parse_reply(msg::TRANSACTION_START, b"4"),
            nul(msg::TRANSACTION_START)
        );
        assert_eq!(
            parse_reply(msg::GET_DOMAIN_PATH, b"/local"),
            nul(msg::GET_DOMAIN_PATH)
        );
        assert_eq!(parse_reply(msg::WRITE, b"OK"), nul(msg::WRITE));
        assert_eq!(parse_reply(msg::WRITE, b""), nul(msg::WRITE));
    }

    #[test]
    fn bad_contents() {
        assert_eq!(
            parse_reply(msg::DIRECTORY, b"a\0\0"),
            bad(msg::DIRECTORY, "empty child name")
        );
        assert_eq!(
            parse_reply(msg::DIRECTORY, b"\xff\0"),
            Err(ProtocolError::NotUtf8 { ty: msg::DIRECTORY })
        );
        assert_eq!(
            parse_reply(msg::GET_PERMS, b"q0\0"),
            bad(msg::GET_PERMS, "malformed permission")
        );
        assert_eq!(
            parse_reply(msg::GET_PERMS, b""),
            bad(msg::GET_PERMS, "empty permission list")
        );
        let tx = "transaction id not a non-zero u32";
        assert_eq!(
            parse_reply(msg::TRANSACTION_START, b"0\0"),
            bad(msg::TRANSACTION_START, tx)
        );
        assert_eq!(
            parse_reply(msg::TRANSACTION_START, b"x\0"),
            bad(msg::TRANSACTION_START, tx)
        );
        assert_eq!(
            parse_reply(msg::GET_DOMAIN_PATH, b"/a\0/b\0"),
            bad(msg::GET_DOMAIN_PATH, "bytes after the NUL")
        );
        assert_eq!(
            parse_reply(msg::GET_DOMAIN_PATH, b"\xc3\0"),
            Err(ProtocolError::NotUtf8 {
                ty: msg::GET_DOMAIN_PATH
            })
        );
        assert_eq!(
            parse_reply(msg::RM, b"NO\0"),
            bad(msg::RM, "acknowledgement is not OK")
        );
        assert_eq!(
            parse_reply(msg::INTRODUCE, b"OK\0"),
            bad(msg::INTRODUCE, "not a reply type this client requests")
        );
    }

    #[test]
    fn watch_events() {
        assert_eq!(
            parse_watch_event(b"/a/b\0tok\0"),
            Ok(WatchEvent {
                path: "/a/b".into(),
                token: "tok".into()
            })
        );
        let ty = msg::WATCH_EVENT;
        assert_eq!(
            parse_watch_event(b"/a/b"),
            Err(ProtocolError::MissingNul { ty })
        );
        assert_eq!(
            parse_watch_event(b"/a/b\0tok"),
            Err(ProtocolError::MissingNul { ty })
        );
        assert_eq!(
            parse_watch_event(b""),
            Err(ProtocolError::MissingNul { ty })
        );
        assert_eq!(
            parse_watch_event(b"/a\0t\0x"),
            Err(ProtocolError::BadPayload {
                ty,
                what: "bytes after the token"
            })
        );
        assert_eq!(
            parse_watch_event(b"/\xff\0t\0"),
            Err(ProtocolError::NotUtf8 { ty })
        );
        assert_eq!(
            parse_watch_event(b"/a\0\xff\0"),
            Err(ProtocolError::NotUtf8 { ty })
        );
    }
}
