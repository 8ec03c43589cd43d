//! Xenstore path rules: validation and canonicalisation of the paths a
//! client sends, and the string arithmetic on canonical paths (parent,
//! basename, child, "is below").
//!
//! A *canonical* path is either absolute (`/`, `/a/b`) or special (`@name`),
//! contains only `A-Za-z0-9-/_@`, has no `//` and no trailing `/` (except
//! the root itself). Every function below except [`canonicalize`] assumes a
//! canonical path and is total on it (no panics, even on odd input).

use crate::abi::xs_wire::{XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};
use crate::abi::DomId;
use crate::store::wire::XsError;

/// The directory relative paths of domain `domid` resolve against.
pub(super) fn home(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// Whether `b` may appear in a path (xenstored's `valid_chars`).
fn valid_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@')
}

/// Length of a leading `/local/domain/<domid>/` (1 to 5 digits, as
/// xenstored's `%5u`), or 0: the part of a path that does not count
/// against [`XENSTORE_REL_PATH_MAX`].
fn local_prefix_len(name: &str) -> usize {
    const PREFIX: &str = "/local/domain/";
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=5).contains(&digits) && rest.as_bytes().get(digits) == Some(&b'/') {
        PREFIX.len() + digits + 1
    } else {
        0
    }
}

/// Validate a path from a client of domain `domid` and make it canonical
/// (xenstored's `canonicalize` with Xen 4.17's length rule): relative paths
/// get `/local/domain/<domid>/` in front; `@` paths are accepted only if
/// `allow_special` (WATCH, UNWATCH, GET_PERMS, SET_PERMS). The result is at
/// most [`XENSTORE_ABS_PATH_MAX`] bytes, and its part after a
/// `/local/domain/<id>/` prefix (all of it, without such a prefix) at most
/// [`XENSTORE_REL_PATH_MAX`]. Anything else is `EINVAL`.
pub(super) fn canonicalize(
    domid: DomId,
    raw: &[u8],
    allow_special: bool,
) -> Result<String, XsError> {
    if !raw.iter().all(|&b| valid_char(b)) {
        return Err(XsError::Einval);
    }
    if raw.first() == Some(&b'@') && !allow_special {
        return Err(XsError::Einval);
    }
    // Only ASCII is left, so this cannot fail.
    let s = core::str::from_utf8(raw).map_err(|_| XsError::Einval)?;
    let name = match raw.first() {
        Some(b'/') | Some(b'@') => s.to_string(),
        _ => format!("{}/{s}", home(domid)),
    };
    if (name.ends_with('/') && name != "/") || name.contains("//") {
        return Err(XsError::Einval);
    }
    if name.len() > XENSTORE_ABS_PATH_MAX
        || name.len() - local_prefix_len(&name) > XENSTORE_REL_PATH_MAX
    {
        return Err(XsError::Einval);
    }
    Ok(name)
}

/// The parent of a canonical path (xenstored's `get_parent`): `/a/b` ->
/// `/a`, `/a` -> `/`, and `/` for the root and for special `@` paths.
pub(super) fn parent_of(path: &str) -> &str {
    match path.get(1..).and_then(|rest| rest.rfind('/')) {
        Some(i) => path.get(..i + 1).unwrap_or("/"),
        None => "/",
    }
}

/// The last component of a canonical path (`/a/b` -> `b`).
pub(super) fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => path.get(i + 1..).unwrap_or(""),
        None => path,
    }
}

/// The path of child `name` of `parent`.
pub(super) fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `child` is `parent` or below it (xenstored's `is_child`; every
/// path, special ones included, is below `/`).
pub(super) fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return true;
    }
    match child.strip_prefix(parent) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonicalize(5, b"/", false).unwrap(), "/");
        assert_eq!(canonicalize(5, b"/a/b-c_D9", false).unwrap(), "/a/b-c_D9");
        assert_eq!(
            canonicalize(5, b"data/x", false).unwrap(),
            "/local/domain/5/data/x"
        );
        assert_eq!(
            canonicalize(0, b"name", false).unwrap(),
            "/local/domain/0/name"
        );
        assert_eq!(
            canonicalize(5, b"@releaseDomain", true).unwrap(),
            "@releaseDomain"
        );
        assert_eq!(canonicalize(5, b"/a@b", false).unwrap(), "/a@b");
    }

    #[test]
    fn invalid_paths() {
        for bad in [
            &b""[..],
            b"/a/",
            b"a/",
            b"//a",
            b"/a//b",
            b"/a b",
            b"/a.b",
            b"/a\xffb",
            b"/a\0b",
            b"/\xc3\xa9",
            b"@releaseDomain",
            b"@x/",
        ] {
            assert_eq!(canonicalize(5, bad, false), Err(XsError::Einval), "{bad:?}");
        }
        assert_eq!(canonicalize(5, b"@x/", true), Err(XsError::Einval));
    }

    #[test]
    fn length_limits() {
        // Outside /local/domain/<id>/ the whole path counts against 2048.
        let ok = format!("/{}", "a".repeat(2047));
        assert!(canonicalize(0, ok.as_bytes(), false).is_ok());
        let long = format!("/{}", "a".repeat(2048));
        assert_eq!(
            canonicalize(0, long.as_bytes(), false),
            Err(XsError::Einval)
        );
        // Below /local/domain/<id>/ only the rest counts ...
        let rel = "a".repeat(2048);
        assert!(canonicalize(7, rel.as_bytes(), false).is_ok());
        let rel = "a".repeat(2049);
        assert_eq!(canonicalize(7, rel.as_bytes(), false), Err(XsError::Einval));
        // A prefix with more than 5 digits is not a domain prefix.
        let deep = format!("/local/domain/12345/{}", "b".repeat(2040));
        assert!(canonicalize(0, deep.as_bytes(), false).is_ok());
        let deep = format!("/local/domain/123456/{}", "b".repeat(2040));
        assert_eq!(local_prefix_len(&deep), 0);
        assert_eq!(
            canonicalize(0, deep.as_bytes(), false),
            Err(XsError::Einval)
        );
        assert_eq!(local_prefix_len("/local/domain/12345/x"), 20);
        assert_eq!(local_prefix_len("/local/domain/1"), 0);
        assert_eq!(local_prefix_len("/local/domain//x"), 0);
    }

    #[test]
    fn path_arithmetic() {
        assert_eq!(parent_of("/a/b/c"), "/a/b");
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(parent_of("/"), "/");
        assert_eq!(parent_of("@releaseDomain"), "/");
        assert_eq!(parent_of(""), "/");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(basename("/a"), "a");
        assert_eq!(basename("@x"), "@x");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(!is_child("/a", "/a/b"));
        assert!(is_child("@x", "/"));
        assert!(!is_child("@xy", "@x"));
    }
}
