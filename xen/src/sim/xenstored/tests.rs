//! Wire-level tests of the simulated xenstored: every request type's
//! success and error paths, permissions, watches, transactions, bounds,
//! and malformed input.

use super::*;

const REQ_ID: u32 = 0xabc;

/// A store set up as the simulated toolstack does it: domains 5 and 6 each
/// with `/local/domain/<d>` (`n0 r<d>`), `name` (dom0's), and `data`,
/// `device` owned by the domain (`n<d>`).
fn setup() -> Xenstored {
    let mut xs = Xenstored::new();
    xs.introduce_domain(0);
    for d in [5u16, 6] {
        let base = format!("/local/domain/{d}");
        xs.write(&base, b"").unwrap();
        xs.set_perms(&base, &[Perm::none(0), Perm::read(d)])
            .unwrap();
        xs.write(&format!("{base}/name"), format!("vm{d}").as_bytes())
            .unwrap();
        xs.set_perms(&format!("{base}/name"), &[Perm::none(0), Perm::read(d)])
            .unwrap();
        for sub in ["data", "device"] {
            xs.write(&format!("{base}/{sub}"), b"").unwrap();
            xs.set_perms(&format!("{base}/{sub}"), &[Perm::none(d)])
                .unwrap();
        }
        xs.introduce_domain(d);
    }
    xs.check();
    xs
}

/// NUL-terminate and join.
fn cs(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// Send one request and take everything the connection has queued.
fn raw(xs: &mut Xenstored, c: ConnId, ty: u32, tx: u32, p: &[u8]) -> Vec<(Header, Vec<u8>)> {
    xs.handle(
        c,
        Header {
            ty,
            req_id: REQ_ID,
            tx_id: tx,
            len: p.len() as u32,
        },
        p,
    );
    xs.check();
    xs.take_output(c)
}

/// The reply in `out` (exactly one), checked for the echoed ids, as a
/// result.
fn reply_of(out: &[(Header, Vec<u8>)], ty: u32, tx: u32) -> Result<Vec<u8>, XsError> {
    let replies: Vec<_> = out
        .iter()
        .filter(|(h, _)| h.ty != msg::WATCH_EVENT)
        .collect();
    assert_eq!(replies.len(), 1, "{out:?}");
    let (h, b) = replies[0];
    assert_eq!((h.req_id, h.tx_id, h.len as usize), (REQ_ID, tx, b.len()));
    if h.ty == msg::ERROR {
        assert_eq!(b.last(), Some(&0), "error names are NUL-terminated");
        Err(XsError::from_payload(b).expect("known error name"))
    } else {
        assert_eq!(h.ty, ty);
        Ok(b.clone())
    }
}

/// Send one request and return its reply (own watch events discarded).
fn rq(xs: &mut Xenstored, c: ConnId, ty: u32, tx: u32, p: &[u8]) -> Result<Vec<u8>, XsError> {
    let out = raw(xs, c, ty, tx, p);
    reply_of(&out, ty, tx)
}

fn ok(r: Result<Vec<u8>, XsError>) {
    assert_eq!(r, Ok(b"OK\0".to_vec()));
}

fn read(xs: &mut Xenstored, c: ConnId, path: &str) -> Result<Vec<u8>, XsError> {
    rq(xs, c, msg::READ, 0, &cs(&[path]))
}

fn write(xs: &mut Xenstored, c: ConnId, path: &str, value: &str) -> Result<(), XsError> {
    let mut p = cs(&[path]);
    p.extend_from_slice(value.as_bytes());
    rq(xs, c, msg::WRITE, 0, &p).map(|b| assert_eq!(b, b"OK\0"))
}

fn mkdir(xs: &mut Xenstored, c: ConnId, path: &str) -> Result<(), XsError> {
    rq(xs, c, msg::MKDIR, 0, &cs(&[path])).map(|b| assert_eq!(b, b"OK\0"))
}

fn rm(xs: &mut Xenstored, c: ConnId, path: &str) -> Result<(), XsError> {
    rq(xs, c, msg::RM, 0, &cs(&[path])).map(|b| assert_eq!(b, b"OK\0"))
}

fn dir(xs: &mut Xenstored, c: ConnId, path: &str) -> Result<Vec<String>, XsError> {
    rq(xs, c, msg::DIRECTORY, 0, &cs(&[path])).map(|b| split(&b))
}

/// GET_PERMS as a space-separated string.
fn perms(xs: &mut Xenstored, c: ConnId, path: &str) -> Result<String, XsError> {
    rq(xs, c, msg::GET_PERMS, 0, &cs(&[path])).map(|b| split(&b).join(" "))
}

/// SET_PERMS from a space-separated string.
fn setp(xs: &mut Xenstored, c: ConnId, path: &str, perms: &str) -> Result<(), XsError> {
    let mut parts = vec![path];
    parts.extend(perms.split(' '));
    rq(xs, c, msg::SET_PERMS, 0, &cs(&parts)).map(|b| assert_eq!(b, b"OK\0"))
}

fn watch(xs: &mut Xenstored, c: ConnId, path: &str, token: &str) -> Result<(), XsError> {
    rq(xs, c, msg::WATCH, 0, &cs(&[path, token])).map(|b| assert_eq!(b, b"OK\0"))
}

/// Split NUL-terminated names.
fn split(b: &[u8]) -> Vec<String> {
    assert!(b.is_empty() || b.last() == Some(&0), "{b:?}");
    b.split(|&x| x == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

/// Parse watch events (checking their headers).
fn parse_events(out: &[(Header, Vec<u8>)]) -> Vec<(String, String)> {
    out.iter()
        .map(|(h, b)| {
            assert_eq!(
                (h.ty, h.req_id, h.tx_id, h.len as usize),
                (msg::WATCH_EVENT, 0, 0, b.len())
            );
            let f = cstrings(b);
            assert_eq!(f.len(), 2);
            assert_eq!(f[0].len() + f[1].len() + 2, b.len());
            (
                String::from_utf8(f[0].to_vec()).unwrap(),
                String::from_utf8_lossy(f[1]).into_owned(),
            )
        })
        .collect()
}

/// The watch events queued for `c`.
fn events(xs: &mut Xenstored, c: ConnId) -> Vec<(String, String)> {
    let out = xs.take_output(c);
    parse_events(&out)
}

fn ev(path: &str, token: &str) -> (String, String) {
    (path.to_string(), token.to_string())
}

fn tx_start(xs: &mut Xenstored, c: ConnId) -> u32 {
    let b = rq(xs, c, msg::TRANSACTION_START, 0, b"\0").unwrap();
    assert_eq!(b.last(), Some(&0));
    std::str::from_utf8(&b[..b.len() - 1])
        .unwrap()
        .parse()
        .unwrap()
}

fn tx_end(xs: &mut Xenstored, c: ConnId, tx: u32, commit: bool) -> Result<(), XsError> {
    rq(
        xs,
        c,
        msg::TRANSACTION_END,
        tx,
        if commit { b"T\0" } else { b"F\0" },
    )
    .map(|b| assert_eq!(b, b"OK\0"))
}

fn txw(xs: &mut Xenstored, c: ConnId, tx: u32, path: &str, value: &str) -> Result<(), XsError> {
    let mut p = cs(&[path]);
    p.extend_from_slice(value.as_bytes());
    rq(xs, c, msg::WRITE, tx, &p).map(|b| assert_eq!(b, b"OK\0"))
}

fn txr(xs: &mut Xenstored, c: ConnId, tx: u32, path: &str) -> Result<Vec<u8>, XsError> {
    rq(xs, c, msg::READ, tx, &cs(&[path]))
}

// ---------------------------------------------------------------- basics

#[test]
fn reply_formats_and_header_echo() {
    let mut xs = setup();
    let c = xs.connect(0);
    let out = raw(&mut xs, c, msg::WRITE, 0, b"/a\0hello");
    assert_eq!(
        out,
        vec![(
            Header {
                ty: msg::WRITE,
                req_id: REQ_ID,
                tx_id: 0,
                len: 3
            },
            b"OK\0".to_vec()
        )]
    );
    assert_eq!(read(&mut xs, c, "/a"), Ok(b"hello".to_vec()));
    write(&mut xs, c, "/a/x", "").unwrap();
    write(&mut xs, c, "/a/y", "").unwrap();
    assert_eq!(
        rq(&mut xs, c, msg::DIRECTORY, 0, b"/a\0"),
        Ok(b"x\0y\0".to_vec())
    );
    assert_eq!(rq(&mut xs, c, msg::DIRECTORY, 0, b"/a/x\0"), Ok(Vec::new()));
    assert_eq!(
        rq(&mut xs, c, msg::GET_PERMS, 0, b"/local/domain/5\0"),
        Ok(b"n0\0r5\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::GET_DOMAIN_PATH, 0, b"5\0"),
        Ok(b"/local/domain/5\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::TRANSACTION_START, 0, b"\0"),
        Ok(b"1\0".to_vec())
    );
    let out = raw(&mut xs, c, msg::READ, 0, b"/nope\0");
    assert_eq!(
        out,
        vec![(
            Header {
                ty: msg::ERROR,
                req_id: REQ_ID,
                tx_id: 0,
                len: 7
            },
            b"ENOENT\0".to_vec()
        )]
    );
    assert_eq!(
        dir(&mut xs, c, "/"),
        Ok(vec!["tool".into(), "local".into(), "a".into()])
    );
}

#[test]
fn write_creates_parents_and_keeps_binary_values() {
    let mut xs = setup();
    let c = xs.connect(0);
    write(&mut xs, c, "/x/y/z", "v").unwrap();
    assert_eq!(read(&mut xs, c, "/x"), Ok(Vec::new()));
    assert_eq!(read(&mut xs, c, "/x/y"), Ok(Vec::new()));
    assert_eq!(dir(&mut xs, c, "/x"), Ok(vec!["y".into()]));
    assert_eq!(perms(&mut xs, c, "/x/y/z"), Ok("n0".into()));
    // The value is everything after the path's NUL, NULs included.
    ok(rq(&mut xs, c, msg::WRITE, 0, b"/bin\0a\0b\0"));
    assert_eq!(read(&mut xs, c, "/bin"), Ok(b"a\0b\0".to_vec()));
    // Overwrite keeps children.
    write(&mut xs, c, "/x", "top").unwrap();
    assert_eq!(read(&mut xs, c, "/x"), Ok(b"top".to_vec()));
    assert_eq!(dir(&mut xs, c, "/x"), Ok(vec!["y".into()]));
    // Root's value may be set by dom0.
    write(&mut xs, c, "/", "r").unwrap();
    assert_eq!(read(&mut xs, c, "/"), Ok(b"r".to_vec()));
}

#[test]
fn mkdir_creates_once() {
    let mut xs = setup();
    let c = xs.connect(0);
    let w = xs.connect(0);
    watch(&mut xs, w, "/m", "t").unwrap();
    mkdir(&mut xs, c, "/m/n").unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/m/n", "t")]);
    assert_eq!(read(&mut xs, c, "/m/n"), Ok(Vec::new()));
    write(&mut xs, c, "/m/n", "keep").unwrap();
    events(&mut xs, w);
    mkdir(&mut xs, c, "/m/n").unwrap();
    assert_eq!(read(&mut xs, c, "/m/n"), Ok(b"keep".to_vec()));
    assert_eq!(
        events(&mut xs, w),
        vec![],
        "mkdir of an existing node fires nothing"
    );
}

#[test]
fn rm_semantics() {
    let mut xs = setup();
    let c = xs.connect(0);
    write(&mut xs, c, "/r/a/b", "1").unwrap();
    write(&mut xs, c, "/r/c", "2").unwrap();
    let before = xs.node_count();
    rm(&mut xs, c, "/r").unwrap();
    assert_eq!(xs.node_count(), before - 4);
    assert_eq!(read(&mut xs, c, "/r/a/b"), Err(XsError::Enoent));
    assert!(!dir(&mut xs, c, "/").unwrap().contains(&"r".to_string()));
    // Missing node: fine if the parent exists, else ENOENT.
    rm(&mut xs, c, "/r").unwrap();
    assert_eq!(rm(&mut xs, c, "/r/x"), Err(XsError::Enoent));
    // The root cannot go; a domU may not even try.
    assert_eq!(rm(&mut xs, c, "/"), Err(XsError::Einval));
    let d5 = xs.connect(5);
    assert_eq!(rm(&mut xs, d5, "/"), Err(XsError::Eacces));
}

#[test]
fn get_domain_path_and_is_domain_introduced() {
    let mut xs = setup();
    let c = xs.connect(0);
    let d5 = xs.connect(5);
    assert_eq!(
        rq(&mut xs, d5, msg::GET_DOMAIN_PATH, 0, b"6\0"),
        Ok(b"/local/domain/6\0".to_vec())
    );
    // atoi, as xenstored: junk is 0, negatives wrap.
    assert_eq!(
        rq(&mut xs, c, msg::GET_DOMAIN_PATH, 0, b"abc\0"),
        Ok(b"/local/domain/0\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::GET_DOMAIN_PATH, 0, b"-1\0"),
        Ok(b"/local/domain/4294967295\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::GET_DOMAIN_PATH, 0, b"5"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, c, msg::GET_DOMAIN_PATH, 0, b""),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, c, msg::IS_DOMAIN_INTRODUCED, 0, b"5\0"),
        Ok(b"T\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::IS_DOMAIN_INTRODUCED, 0, b"9\0"),
        Ok(b"F\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::IS_DOMAIN_INTRODUCED, 0, b"32752\0"),
        Ok(b"T\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, c, msg::IS_DOMAIN_INTRODUCED, 0, b"70000\0"),
        Ok(b"F\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, d5, msg::IS_DOMAIN_INTRODUCED, 0, b"5\0"),
        Err(XsError::Eacces)
    );
    assert!(xs.is_domain_introduced(6));
    xs.release_domain(6);
    assert_eq!(
        rq(&mut xs, c, msg::IS_DOMAIN_INTRODUCED, 0, b"6\0"),
        Ok(b"F\0".to_vec())
    );
}

#[test]
fn unknown_and_privileged_types() {
    let mut xs = setup();
    let c = xs.connect(0);
    let d5 = xs.connect(5);
    for ty in [msg::WATCH_EVENT, msg::ERROR, 20, 23, 26, 999, msg::INVALID] {
        assert_eq!(
            rq(&mut xs, c, ty, 0, b"/\0"),
            Err(XsError::Enosys),
            "type {ty}"
        );
        assert_eq!(
            rq(&mut xs, d5, ty, 0, b"/\0"),
            Err(XsError::Enosys),
            "type {ty}"
        );
    }
    for ty in [
        msg::CONTROL,
        msg::INTRODUCE,
        msg::RELEASE,
        msg::RESUME,
        msg::SET_TARGET,
    ] {
        assert_eq!(
            rq(&mut xs, d5, ty, 0, b"5\0"),
            Err(XsError::Eacces),
            "type {ty}"
        );
        assert_eq!(
            rq(&mut xs, c, ty, 0, b"5\0"),
            Err(XsError::Enosys),
            "type {ty}"
        );
    }
}

// ----------------------------------------------------------- permissions

#[test]
fn relative_paths_resolve_to_the_domain_home() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    write(&mut xs, d5, "data/x", "1").unwrap();
    assert_eq!(xs.read("/local/domain/5/data/x"), Ok(b"1".to_vec()));
    assert_eq!(read(&mut xs, d5, "name"), Ok(b"vm5".to_vec()));
    assert_eq!(perms(&mut xs, d5, "data"), Ok("n5".into()));
    assert_eq!(dir(&mut xs, d5, "data"), Ok(vec!["x".into()]));
    let c = xs.connect(0);
    assert_eq!(
        read(&mut xs, c, "name"),
        Err(XsError::Enoent),
        "dom0's home is /local/domain/0"
    );
    write(&mut xs, c, "name", "Domain-0").unwrap();
    assert_eq!(xs.read("/local/domain/0/name"), Ok(b"Domain-0".to_vec()));
    assert_eq!(xs.read("name"), Ok(b"Domain-0".to_vec()));
}

#[test]
fn domu_access_checks() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    // n0 nodes are unreadable; so are missing nodes below them.
    assert_eq!(read(&mut xs, d5, "/tool"), Err(XsError::Eacces));
    assert_eq!(dir(&mut xs, d5, "/"), Err(XsError::Eacces));
    assert_eq!(
        read(&mut xs, d5, "/local/domain/6/name"),
        Err(XsError::Eacces)
    );
    assert_eq!(
        read(&mut xs, d5, "/local/domain/6/nothing"),
        Err(XsError::Eacces)
    );
    assert_eq!(read(&mut xs, d5, "/nothing/at/all"), Err(XsError::Eacces));
    // Below a readable ancestor, a missing node is ENOENT.
    assert_eq!(
        read(&mut xs, d5, "/local/domain/5/nothing"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        read(&mut xs, d5, "data/nothing/deeper"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        dir(&mut xs, d5, "/local/domain/5"),
        Ok(vec!["name".into(), "data".into(), "device".into()])
    );
    // Writes need w on the node, or on the nearest existing ancestor.
    assert_eq!(write(&mut xs, d5, "name", "evil"), Err(XsError::Eacces));
    assert_eq!(
        write(&mut xs, d5, "/local/domain/5/x", "1"),
        Err(XsError::Eacces)
    );
    assert_eq!(
        write(&mut xs, d5, "/local/domain/6/data/x", "1"),
        Err(XsError::Eacces)
    );
    assert_eq!(write(&mut xs, d5, "/newtop/x", "1"), Err(XsError::Eacces));
    assert_eq!(
        mkdir(&mut xs, d5, "/local/domain/5/foo"),
        Err(XsError::Eacces)
    );
    assert_eq!(
        mkdir(&mut xs, d5, "name"),
        Err(XsError::Eacces),
        "existing but not writable"
    );
    assert_eq!(rm(&mut xs, d5, "name"), Err(XsError::Eacces));
    assert_eq!(
        rm(&mut xs, d5, "/local/domain/5/missing"),
        Err(XsError::Eacces)
    );
    assert_eq!(xs.read("/local/domain/5/name"), Ok(b"vm5".to_vec()));
    // Its own data directory is fine.
    write(&mut xs, d5, "data/a/b", "1").unwrap();
    mkdir(&mut xs, d5, "data/c").unwrap();
    rm(&mut xs, d5, "data/missing").unwrap();
    rm(&mut xs, d5, "data/a").unwrap();
    assert_eq!(dir(&mut xs, d5, "data"), Ok(vec!["c".into()]));
    // Another domain cannot see it.
    let d6 = xs.connect(6);
    assert_eq!(
        read(&mut xs, d6, "/local/domain/5/data/c"),
        Err(XsError::Eacces)
    );
    assert_eq!(
        read(&mut xs, d6, "/local/domain/5/data/zz"),
        Err(XsError::Eacces)
    );
}

#[test]
fn new_nodes_inherit_perms_and_belong_to_their_creator() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let d6 = xs.connect(6);
    write(&mut xs, d5, "data/x/y", "1").unwrap();
    assert_eq!(
        xs.get_perms("/local/domain/5/data/x").unwrap(),
        vec![Perm::none(5)]
    );
    assert_eq!(
        xs.get_perms("/local/domain/5/data/x/y").unwrap(),
        vec![Perm::none(5)]
    );
    // Owned by dom0, shared with 5: 5's nodes are 5's, the list is kept.
    xs.write("/shared", b"").unwrap();
    xs.set_perms("/shared", &[Perm::none(0), Perm::both(5)])
        .unwrap();
    write(&mut xs, d5, "/shared/a/b", "1").unwrap();
    assert_eq!(perms(&mut xs, d5, "/shared/a/b"), Ok("n5 b5".into()));
    assert_eq!(perms(&mut xs, d5, "/shared/a"), Ok("n5 b5".into()));
    // The default access letter stays: under [r0 w5], 5 creates [r5 w5],
    // which 6 may read.
    xs.write("/pub", b"").unwrap();
    xs.set_perms("/pub", &[Perm::read(0), Perm::write(5)])
        .unwrap();
    write(&mut xs, d5, "/pub/x", "hi").unwrap();
    assert_eq!(perms(&mut xs, d6, "/pub/x"), Ok("r5 w5".into()));
    assert_eq!(read(&mut xs, d6, "/pub/x"), Ok(b"hi".to_vec()));
    assert_eq!(write(&mut xs, d6, "/pub/x", "no"), Err(XsError::Eacces));
    // dom0's nodes inherit the list unchanged.
    xs.write("/local/domain/5/data/fromdom0", b"").unwrap();
    assert_eq!(
        xs.get_perms("/local/domain/5/data/fromdom0").unwrap(),
        vec![Perm::none(5)]
    );
    xs.write("/shared/t", b"").unwrap();
    assert_eq!(
        xs.get_perms("/shared/t").unwrap(),
        vec![Perm::none(0), Perm::both(5)]
    );
    // data, device; data/x, data/x/y; /shared/a, /shared/a/b; /pub/x;
    // data/fromdom0 (inherits n5).
    assert_eq!(xs.owned_nodes(5), 8);
}

#[test]
fn set_perms_rules() {
    let mut xs = setup();
    let c = xs.connect(0);
    let d5 = xs.connect(5);
    let d6 = xs.connect(6);
    write(&mut xs, d5, "data/x", "v").unwrap();
    assert_eq!(
        read(&mut xs, d6, "/local/domain/5/data/x"),
        Err(XsError::Eacces)
    );
    setp(&mut xs, d5, "data/x", "n5 r6").unwrap();
    assert_eq!(
        read(&mut xs, d6, "/local/domain/5/data/x"),
        Ok(b"v".to_vec())
    );
    assert_eq!(
        perms(&mut xs, d6, "/local/domain/5/data/x"),
        Ok("n5 r6".into())
    );
    // Only the owner (or dom0) may change perms, and a domU may not give a
    // node away.
    assert_eq!(
        setp(&mut xs, d6, "/local/domain/5/data/x", "n6"),
        Err(XsError::Eacces)
    );
    assert_eq!(setp(&mut xs, d5, "data/x", "n6"), Err(XsError::Eperm));
    assert_eq!(setp(&mut xs, d5, "name", "n5"), Err(XsError::Eacces));
    assert_eq!(
        setp(&mut xs, d5, "data/missing", "n5"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        setp(&mut xs, d5, "data/x", "n5 r1 r2 r3 r4 r6"),
        Err(XsError::Enospc)
    );
    setp(&mut xs, d5, "data/x", "n5 r1 r2 r3 r6").unwrap();
    assert_eq!(setp(&mut xs, d5, "data/x", "x5"), Err(XsError::Einval));
    assert_eq!(setp(&mut xs, d5, "data/x", "r"), Err(XsError::Einval));
    assert_eq!(setp(&mut xs, d5, "data/x", "r70000"), Err(XsError::Einval));
    assert_eq!(
        rq(&mut xs, d5, msg::SET_PERMS, 0, b"data/x\0"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::SET_PERMS, 0, b"data/x\0n5"),
        Err(XsError::Einval),
        "unterminated perm ignored"
    );
    ok(rq(&mut xs, d5, msg::SET_PERMS, 0, b"data/x\0n5\0junk"));
    // dom0 may do anything, including changing the owner.
    setp(&mut xs, c, "/local/domain/5/data/x", "b6 n5 r0 r1 r2 r3 r4").unwrap();
    assert_eq!(write(&mut xs, d5, "data/x", "w"), Err(XsError::Eacces));
    write(&mut xs, d6, "/local/domain/5/data/x", "w").unwrap();
    assert_eq!(xs.owned_nodes(6), 3);
    // Special nodes: GET_PERMS and SET_PERMS accept them.
    assert_eq!(perms(&mut xs, c, "@releaseDomain"), Ok("n0".into()));
    assert_eq!(perms(&mut xs, d5, "@releaseDomain"), Err(XsError::Eacces));
    assert_eq!(perms(&mut xs, c, "@nonesuch"), Err(XsError::Enoent));
    setp(&mut xs, c, "@releaseDomain", "n0 r5").unwrap();
    assert_eq!(perms(&mut xs, d5, "@releaseDomain"), Ok("n0 r5".into()));
    assert_eq!(xs.set_perms("/x", &[]), Err(XsError::Einval));
}

// -------------------------------------------------------------- watches

#[test]
fn watch_fires_once_at_registration_after_its_reply() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let out = raw(
        &mut xs,
        d5,
        msg::WATCH,
        0,
        &cs(&["/local/domain/5/data", "abs"]),
    );
    assert_eq!(reply_of(&out[..1], msg::WATCH, 0), Ok(b"OK\0".to_vec()));
    assert_eq!(
        parse_events(&out[1..]),
        vec![ev("/local/domain/5/data", "abs")]
    );
    // Relative: the event path is as given.
    let out = raw(&mut xs, d5, msg::WATCH, 0, &cs(&["data", "rel"]));
    assert_eq!(parse_events(&out[1..]), vec![ev("data", "rel")]);
    // Paths that do not exist, that it cannot read, and special ones.
    let out = raw(&mut xs, d5, msg::WATCH, 0, &cs(&["/tool/none", "t"]));
    assert_eq!(parse_events(&out[1..]), vec![ev("/tool/none", "t")]);
    let out = raw(&mut xs, d5, msg::WATCH, 0, &cs(&["@introduceDomain", "t"]));
    assert_eq!(parse_events(&out[1..]), vec![ev("@introduceDomain", "t")]);
    // tx_id is ignored by WATCH, even a bogus one.
    let out = raw(&mut xs, d5, msg::WATCH, 77, &cs(&["data/q", "t"]));
    assert_eq!(reply_of(&out[..1], msg::WATCH, 77), Ok(b"OK\0".to_vec()));
}

#[test]
fn watches_fire_for_the_node_and_descendants() {
    let mut xs = setup();
    let w = xs.connect(0);
    watch(&mut xs, w, "/a", "t").unwrap();
    events(&mut xs, w);
    xs.write("/a/b/c", b"1").unwrap();
    assert_eq!(
        events(&mut xs, w),
        vec![ev("/a/b/c", "t")],
        "one event, for the node written"
    );
    xs.write("/ab", b"1").unwrap();
    xs.write("/b/a", b"1").unwrap();
    assert_eq!(events(&mut xs, w), vec![]);
    xs.write("/a", b"2").unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/a", "t")]);
    xs.set_perms("/a/b", &[Perm::none(0), Perm::read(5)])
        .unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/a/b", "t")]);
    xs.mkdir("/a/d").unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/a/d", "t")]);
    // A watch on / sees everything.
    watch(&mut xs, w, "/", "root").unwrap();
    events(&mut xs, w);
    xs.write("/zz", b"").unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/zz", "root")]);
    // Every connection with a matching watch gets it, in connection order.
    let w2 = xs.connect(0);
    watch(&mut xs, w2, "/a/b", "u").unwrap();
    events(&mut xs, w2);
    xs.write("/a/b/c", b"3").unwrap();
    assert_eq!(
        events(&mut xs, w),
        vec![ev("/a/b/c", "t"), ev("/a/b/c", "root")]
    );
    assert_eq!(events(&mut xs, w2), vec![ev("/a/b/c", "u")]);
}

#[test]
fn relative_watches_get_relative_paths() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    watch(&mut xs, d5, "data", "rel").unwrap();
    watch(&mut xs, d5, "/local/domain/5/data", "abs").unwrap();
    events(&mut xs, d5);
    xs.write("/local/domain/5/data/x/y", b"1").unwrap();
    assert_eq!(
        events(&mut xs, d5),
        vec![ev("data/x/y", "rel"), ev("/local/domain/5/data/x/y", "abs")]
    );
    // Duplicates are found on the canonical path.
    assert_eq!(watch(&mut xs, d5, "data", "rel"), Err(XsError::Eexist));
    assert_eq!(
        watch(&mut xs, d5, "/local/domain/5/data", "rel"),
        Err(XsError::Eexist)
    );
}

#[test]
fn rm_fires_bottom_up_and_exact_below_the_root() {
    let mut xs = setup();
    let w = xs.connect(0);
    xs.write("/r/a/b", b"").unwrap();
    xs.write("/r/c", b"").unwrap();
    for (p, t) in [
        ("/r", "t1"),
        ("/r/a", "t2"),
        ("/r/a/b", "t3"),
        ("/r/a/b/never", "t4"),
        ("/", "t5"),
    ] {
        watch(&mut xs, w, p, t).unwrap();
    }
    events(&mut xs, w);
    xs.rm("/r").unwrap();
    assert_eq!(
        events(&mut xs, w),
        vec![
            ev("/r/a/b", "t3"),
            ev("/r/a", "t2"),
            ev("/r", "t1"),
            ev("/r", "t5")
        ]
    );
    // RM of a missing node fires nothing.
    xs.rm("/r").unwrap();
    assert_eq!(events(&mut xs, w), vec![]);
}

#[test]
fn events_need_read_access_to_the_node_or_its_parent() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let d6 = xs.connect(6);
    let w0 = xs.connect(0);
    let out = raw(
        &mut xs,
        d6,
        msg::WATCH,
        0,
        &cs(&["/local/domain/5/data", "t"]),
    );
    assert_eq!(
        parse_events(&out[1..]),
        vec![ev("/local/domain/5/data", "t")],
        "initial event regardless"
    );
    watch(&mut xs, w0, "/local/domain/5/data", "t").unwrap();
    write(&mut xs, d5, "data/x", "1").unwrap();
    assert_eq!(events(&mut xs, d6), vec![]);
    assert_eq!(
        events(&mut xs, w0),
        vec![ev("/local/domain/5/data/x", "t")],
        "dom0 sees everything"
    );
    // Gaining read access fires (new perms), and so does losing it (old
    // perms).
    setp(&mut xs, d5, "data/x", "n5 r6").unwrap();
    assert_eq!(events(&mut xs, d6), vec![ev("/local/domain/5/data/x", "t")]);
    setp(&mut xs, d5, "data/x", "n5").unwrap();
    assert_eq!(events(&mut xs, d6), vec![ev("/local/domain/5/data/x", "t")]);
    write(&mut xs, d5, "data/x", "2").unwrap();
    assert_eq!(events(&mut xs, d6), vec![]);
    // A readable parent is enough: for writes and for removals.
    xs.set_perms("/local/domain/5/data", &[Perm::none(5), Perm::read(6)])
        .unwrap();
    events(&mut xs, d6);
    write(&mut xs, d5, "data/x", "3").unwrap();
    assert_eq!(events(&mut xs, d6), vec![ev("/local/domain/5/data/x", "t")]);
    write(&mut xs, d5, "data/x/deep", "3").unwrap();
    assert_eq!(events(&mut xs, d6), vec![], "node n5 and parent data/x n5");
    rm(&mut xs, d5, "data/x").unwrap();
    assert_eq!(events(&mut xs, d6), vec![ev("/local/domain/5/data/x", "t")]);
    events(&mut xs, w0);
}

#[test]
fn own_events_come_before_the_reply() {
    let mut xs = setup();
    let c = xs.connect(0);
    watch(&mut xs, c, "/o", "t").unwrap();
    let out = raw(&mut xs, c, msg::WRITE, 0, b"/o\0v");
    assert_eq!(out.len(), 2);
    assert_eq!(parse_events(&out[..1]), vec![ev("/o", "t")]);
    assert_eq!(reply_of(&out[1..], msg::WRITE, 0), Ok(b"OK\0".to_vec()));
    let tx = tx_start(&mut xs, c);
    txw(&mut xs, c, tx, "/o/p", "1").unwrap();
    let out = raw(&mut xs, c, msg::TRANSACTION_END, tx, b"T\0");
    assert_eq!(parse_events(&out[..1]), vec![ev("/o/p", "t")]);
    assert_eq!(
        reply_of(&out[1..], msg::TRANSACTION_END, tx),
        Ok(b"OK\0".to_vec())
    );
}

#[test]
fn identical_queued_events_coalesce() {
    let mut xs = setup();
    let w = xs.connect(0);
    watch(&mut xs, w, "/d", "t").unwrap();
    watch(&mut xs, w, "@introduceDomain", "i").unwrap();
    events(&mut xs, w);
    xs.write("/d", b"1").unwrap();
    xs.write("/d", b"2").unwrap();
    xs.write("/d/e", b"2").unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/d", "t"), ev("/d/e", "t")]);
    xs.write("/d", b"3").unwrap();
    assert_eq!(events(&mut xs, w), vec![ev("/d", "t")]);
    // Special events are never merged.
    xs.introduce_domain(7);
    xs.introduce_domain(8);
    xs.introduce_domain(8);
    xs.introduce_domain(0);
    assert_eq!(
        events(&mut xs, w),
        vec![ev("@introduceDomain", "i"), ev("@introduceDomain", "i")]
    );
}

#[test]
fn special_watches() {
    let mut xs = setup();
    let w = xs.connect(0);
    let d5 = xs.connect(5);
    watch(&mut xs, w, "@introduceDomain", "in").unwrap();
    watch(&mut xs, w, "@releaseDomain", "out").unwrap();
    watch(&mut xs, d5, "@releaseDomain", "out5").unwrap();
    watch(&mut xs, w, "/", "root").unwrap();
    events(&mut xs, w);
    events(&mut xs, d5);
    xs.introduce_domain(7);
    assert!(xs.is_domain_introduced(7));
    assert_eq!(
        events(&mut xs, w),
        vec![ev("@introduceDomain", "in")],
        "exact: not for watches on /"
    );
    xs.release_domain(7);
    assert_eq!(events(&mut xs, w), vec![ev("@releaseDomain", "out")]);
    assert_eq!(events(&mut xs, d5), vec![], "@releaseDomain is n0");
    xs.release_domain(7);
    assert_eq!(events(&mut xs, w), vec![], "not introduced any more");
    xs.set_perms("@releaseDomain", &[Perm::none(0), Perm::read(5)])
        .unwrap();
    events(&mut xs, w);
    assert_eq!(
        events(&mut xs, d5),
        vec![ev("@releaseDomain", "out5")],
        "set_perms fires too"
    );
    xs.release_domain(6);
    assert_eq!(events(&mut xs, d5), vec![ev("@releaseDomain", "out5")]);
    xs.release_domain(0);
    assert!(xs.is_domain_introduced(0));
}

#[test]
fn release_domain_removes_what_it_owns_and_closes_its_connections() {
    let mut xs = setup();
    let w = xs.connect(0);
    let d6 = xs.connect(6);
    xs.write("/shared", b"").unwrap();
    xs.set_perms("/shared", &[Perm::none(0), Perm::write(6)])
        .unwrap();
    write(&mut xs, d6, "/shared/x/y", "1").unwrap();
    write(&mut xs, d6, "data/y", "1").unwrap();
    watch(&mut xs, d6, "/shared", "mine").unwrap();
    watch(&mut xs, w, "/shared", "t").unwrap();
    watch(&mut xs, w, "/local/domain/6", "t").unwrap();
    events(&mut xs, w);
    xs.release_domain(6);
    xs.check();
    assert_eq!(xs.owned_nodes(6), 0);
    assert!(!xs.exists("/shared/x"));
    assert!(xs.exists("/shared"));
    assert!(!xs.exists("/local/domain/6/data"));
    assert!(xs.exists("/local/domain/6/name"));
    assert_eq!(
        xs.directory("/local/domain/6").unwrap(),
        vec!["name".to_string()]
    );
    assert_eq!(
        events(&mut xs, w),
        vec![
            ev("/local/domain/6/data", "t"),
            ev("/local/domain/6/device", "t"),
            ev("/shared/x", "t")
        ]
    );
    assert_eq!(xs.conn_domid(d6), None);
    xs.handle(
        d6,
        Header {
            ty: msg::READ,
            req_id: 1,
            tx_id: 0,
            len: 2,
        },
        b"/\0",
    );
    assert!(xs.take_output(d6).is_empty());
}

#[test]
fn watch_and_unwatch_errors() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    watch(&mut xs, d5, "data", "t").unwrap();
    assert_eq!(watch(&mut xs, d5, "data", "t"), Err(XsError::Eexist));
    watch(&mut xs, d5, "data", "u").unwrap();
    watch(&mut xs, d5, "data", "").unwrap();
    assert_eq!(
        rq(&mut xs, d5, msg::WATCH, 0, b"data\0"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::WATCH, 0, b"data\0t\0x\0"),
        Err(XsError::Einval)
    );
    ok(rq(&mut xs, d5, msg::WATCH, 0, b"data\0v\0trailing"));
    assert_eq!(watch(&mut xs, d5, "/bad path", "t"), Err(XsError::Einval));
    assert_eq!(watch(&mut xs, d5, "/a//b", "t"), Err(XsError::Einval));
    assert_eq!(watch(&mut xs, d5, "", "t"), Err(XsError::Einval));
    assert_eq!(
        rq(&mut xs, d5, msg::UNWATCH, 0, &cs(&["data", "nope"])),
        Err(XsError::Enoent)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::UNWATCH, 0, b"data\0"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::UNWATCH, 0, &cs(&["/x y", "t"])),
        Err(XsError::Einval)
    );
    // The canonical path is what matches.
    ok(rq(
        &mut xs,
        d5,
        msg::UNWATCH,
        99,
        &cs(&["/local/domain/5/data", "t"]),
    ));
    events(&mut xs, d5);
    xs.write("/local/domain/5/data/z", b"").unwrap();
    let got = events(&mut xs, d5);
    assert_eq!(
        got,
        vec![ev("data/z", "u"), ev("data/z", ""), ev("data/z", "v")]
    );
}

#[test]
fn watch_quota() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let d5b = xs.connect(5);
    for i in 0..MAX_WATCHES_PER_DOMAIN - 1 {
        watch(&mut xs, d5, "data", &format!("t{i}")).unwrap();
    }
    watch(&mut xs, d5b, "data", "last").unwrap();
    assert_eq!(
        watch(&mut xs, d5, "data", "more"),
        Err(XsError::E2big),
        "counted per domain"
    );
    ok(rq(&mut xs, d5, msg::UNWATCH, 0, &cs(&["data", "t0"])));
    watch(&mut xs, d5, "data", "more").unwrap();
    let c = xs.connect(0);
    for i in 0..MAX_WATCHES_PER_DOMAIN + 10 {
        watch(&mut xs, c, "/", &format!("t{i}")).unwrap();
    }
    // RESET_WATCHES drops them all.
    ok(rq(&mut xs, d5, msg::RESET_WATCHES, 0, b"\0"));
    events(&mut xs, d5);
    xs.write("/local/domain/5/data/q", b"").unwrap();
    assert_eq!(events(&mut xs, d5), vec![]);
    assert_eq!(events(&mut xs, d5b).len(), 1);
}

// --------------------------------------------------------- transactions

#[test]
fn transaction_is_isolated_until_commit() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let w = xs.connect(0);
    watch(&mut xs, w, "/local/domain/5/data", "t").unwrap();
    events(&mut xs, w);
    let tx = tx_start(&mut xs, d5);
    assert_eq!(tx, 1);
    txw(&mut xs, d5, tx, "data/t/u", "1").unwrap();
    txw(&mut xs, d5, tx, "data/t/u", "2").unwrap();
    assert_eq!(txr(&mut xs, d5, tx, "data/t/u"), Ok(b"2".to_vec()));
    assert_eq!(
        rq(&mut xs, d5, msg::DIRECTORY, tx, b"data\0"),
        Ok(b"t\0".to_vec())
    );
    assert_eq!(
        rq(&mut xs, d5, msg::GET_PERMS, tx, b"data/t\0"),
        Ok(b"n5\0".to_vec())
    );
    assert_eq!(read(&mut xs, d5, "data/t/u"), Err(XsError::Enoent));
    assert_eq!(xs.read("/local/domain/5/data/t"), Err(XsError::Enoent));
    assert_eq!(events(&mut xs, w), vec![], "no events before commit");
    assert_eq!(xs.owned_nodes(5), 2, "not accounted before commit");
    tx_end(&mut xs, d5, tx, true).unwrap();
    assert_eq!(xs.read("/local/domain/5/data/t/u"), Ok(b"2".to_vec()));
    assert_eq!(
        events(&mut xs, w),
        vec![ev("/local/domain/5/data/t/u", "t")]
    );
    assert_eq!(xs.owned_nodes(5), 4);
    // The transaction is gone.
    assert_eq!(txr(&mut xs, d5, tx, "data/t/u"), Err(XsError::Enoent));
    assert_eq!(tx_end(&mut xs, d5, tx, true), Err(XsError::Enoent));
    assert_eq!(tx_start(&mut xs, d5), 2);
}

#[test]
fn transaction_abort_discards() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let w = xs.connect(0);
    watch(&mut xs, w, "/", "t").unwrap();
    events(&mut xs, w);
    let tx = tx_start(&mut xs, d5);
    txw(&mut xs, d5, tx, "data/a", "1").unwrap();
    ok(rq(&mut xs, d5, msg::RM, tx, b"device\0"));
    ok(rq(&mut xs, d5, msg::SET_PERMS, tx, b"data\0n5\0r6\0"));
    tx_end(&mut xs, d5, tx, false).unwrap();
    assert!(!xs.exists("/local/domain/5/data/a"));
    assert!(xs.exists("/local/domain/5/device"));
    assert_eq!(
        xs.get_perms("/local/domain/5/data").unwrap(),
        vec![Perm::none(5)]
    );
    assert_eq!(events(&mut xs, w), vec![]);
    assert_eq!(txr(&mut xs, d5, tx, "data"), Err(XsError::Enoent));
}

#[test]
fn transaction_conflicts_are_eagain() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    xs.write("/local/domain/5/data/c", b"0").unwrap();
    // A node it read changed.
    let tx = tx_start(&mut xs, d5);
    assert_eq!(txr(&mut xs, d5, tx, "data/c"), Ok(b"0".to_vec()));
    xs.write("/local/domain/5/data/c", b"1").unwrap();
    txw(&mut xs, d5, tx, "data/d", "x").unwrap();
    assert_eq!(tx_end(&mut xs, d5, tx, true), Err(XsError::Eagain));
    assert!(!xs.exists("/local/domain/5/data/d"));
    assert_eq!(
        tx_end(&mut xs, d5, tx, true),
        Err(XsError::Enoent),
        "gone after EAGAIN"
    );
    // A node it found missing appeared.
    let tx = tx_start(&mut xs, d5);
    assert_eq!(txr(&mut xs, d5, tx, "data/m"), Err(XsError::Enoent));
    xs.write("/local/domain/5/data/m", b"").unwrap();
    assert_eq!(tx_end(&mut xs, d5, tx, true), Err(XsError::Eagain));
    // A node it read was removed.
    let tx = tx_start(&mut xs, d5);
    txr(&mut xs, d5, tx, "data/m").unwrap();
    xs.rm("/local/domain/5/data/m").unwrap();
    assert_eq!(tx_end(&mut xs, d5, tx, true), Err(XsError::Eagain));
    // Unrelated changes do not conflict.
    let tx = tx_start(&mut xs, d5);
    assert_eq!(txr(&mut xs, d5, tx, "data/c"), Ok(b"1".to_vec()));
    txw(&mut xs, d5, tx, "data/c", "2").unwrap();
    xs.write("/elsewhere", b"").unwrap();
    xs.write("/local/domain/6/data/c", b"").unwrap();
    tx_end(&mut xs, d5, tx, true).unwrap();
    assert_eq!(xs.read("/local/domain/5/data/c"), Ok(b"2".to_vec()));
    // Two transactions creating siblings both touch the parent: the second
    // to commit conflicts (as in xenstored).
    let d5b = xs.connect(5);
    let t1 = tx_start(&mut xs, d5);
    let t2 = tx_start(&mut xs, d5b);
    txw(&mut xs, d5, t1, "data/s1", "").unwrap();
    txw(&mut xs, d5b, t2, "data/s2", "").unwrap();
    tx_end(&mut xs, d5, t1, true).unwrap();
    assert_eq!(tx_end(&mut xs, d5b, t2, true), Err(XsError::Eagain));
    // A read-only transaction with nothing changed commits.
    let tx = tx_start(&mut xs, d5);
    txr(&mut xs, d5, tx, "data/c").unwrap();
    tx_end(&mut xs, d5, tx, true).unwrap();
}

#[test]
fn transaction_rm_fires_at_commit() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let w = xs.connect(0);
    xs.write("/local/domain/5/data/r/a", b"").unwrap();
    watch(&mut xs, w, "/local/domain/5/data/r", "t").unwrap();
    watch(&mut xs, w, "/local/domain/5/data/r/a", "u").unwrap();
    events(&mut xs, w);
    let tx = tx_start(&mut xs, d5);
    ok(rq(&mut xs, d5, msg::RM, tx, b"data/r\0"));
    assert_eq!(txr(&mut xs, d5, tx, "data/r/a"), Err(XsError::Enoent));
    assert!(xs.exists("/local/domain/5/data/r/a"));
    // Created and removed inside the transaction: no event for anyone.
    txw(&mut xs, d5, tx, "data/tmp", "").unwrap();
    ok(rq(&mut xs, d5, msg::RM, tx, b"data/tmp\0"));
    watch(&mut xs, w, "/local/domain/5/data/tmp", "tmp").unwrap();
    events(&mut xs, w);
    assert_eq!(events(&mut xs, w), vec![]);
    tx_end(&mut xs, d5, tx, true).unwrap();
    assert!(!xs.exists("/local/domain/5/data/r"));
    assert!(!xs.exists("/local/domain/5/data/tmp"));
    assert_eq!(
        events(&mut xs, w),
        vec![
            ev("/local/domain/5/data/r", "t"),
            ev("/local/domain/5/data/r/a", "u")
        ]
    );
    assert_eq!(xs.owned_nodes(5), 2);
}

#[test]
fn transaction_request_errors() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let tx = tx_start(&mut xs, d5);
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_END, tx, b"X\0"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_END, tx, b"T"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_END, tx, b"T\0F\0"),
        Err(XsError::Einval)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_END, 0, b"T\0"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::READ, 42, b"name\0"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::GET_DOMAIN_PATH, 42, b"5\0"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_START, tx, b"\0"),
        Err(XsError::Ebusy)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_START, 42, b"\0"),
        Err(XsError::Enoent)
    );
    // Transaction ids are per connection.
    let other = xs.connect(5);
    assert_eq!(
        rq(&mut xs, other, msg::READ, tx, b"name\0"),
        Err(XsError::Enoent)
    );
    // Still usable after all those errors.
    assert_eq!(txr(&mut xs, d5, tx, "name"), Ok(b"vm5".to_vec()));
    tx_end(&mut xs, d5, tx, true).unwrap();
}

#[test]
fn transaction_quotas() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let d5b = xs.connect(5);
    let mut ids = Vec::new();
    for _ in 0..MAX_TRANSACTIONS_PER_DOMAIN - 1 {
        ids.push(tx_start(&mut xs, d5));
    }
    ids.push(tx_start(&mut xs, d5b));
    assert_eq!(
        rq(&mut xs, d5, msg::TRANSACTION_START, 0, b"\0"),
        Err(XsError::Enospc)
    );
    tx_end(&mut xs, d5, ids[0], false).unwrap();
    let t = tx_start(&mut xs, d5);
    assert!(!ids[1..].contains(&t), "ids are unique");
    // RESET_WATCHES drops the connection's transactions; disconnecting too.
    ok(rq(&mut xs, d5, msg::RESET_WATCHES, 0, b"\0"));
    assert_eq!(txr(&mut xs, d5, t, "name"), Err(XsError::Enoent));
    xs.disconnect(d5b);
    for _ in 0..MAX_TRANSACTIONS_PER_DOMAIN {
        tx_start(&mut xs, d5);
    }
    // dom0 is not limited.
    let c = xs.connect(0);
    for _ in 0..3 * MAX_TRANSACTIONS_PER_DOMAIN {
        tx_start(&mut xs, c);
    }
}

#[test]
fn transaction_node_limit_fails_the_commit() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    let tx = tx_start(&mut xs, d5);
    let mut first_error = None;
    for i in 0..MAX_TRANSACTION_NODES + 5 {
        match txr(&mut xs, d5, tx, &format!("data/n{i}")) {
            Err(XsError::Enoent) => {}
            Err(e) => {
                first_error = Some((i, e));
                break;
            }
            Ok(v) => panic!("read {v:?}"),
        }
    }
    // The first read touched data/n0 and data: the limit is hit one early.
    assert_eq!(
        first_error,
        Some((MAX_TRANSACTION_NODES - 1, XsError::Enospc))
    );
    assert_eq!(tx_end(&mut xs, d5, tx, true), Err(XsError::Enomem));
}

// --------------------------------------------------------------- bounds

#[test]
fn node_quota() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    // Spread over directories: a child list counts against the node size.
    let mut i = 0;
    while xs.owned_nodes(5) < MAX_NODES_PER_DOMAIN {
        write(&mut xs, d5, &format!("data/g{}/n{}", i / 100, i % 100), "").unwrap();
        i += 1;
    }
    assert_eq!(xs.owned_nodes(5), MAX_NODES_PER_DOMAIN);
    assert_eq!(write(&mut xs, d5, "data/more", ""), Err(XsError::Enospc));
    assert_eq!(mkdir(&mut xs, d5, "data/more"), Err(XsError::Enospc));
    write(&mut xs, d5, "data/g0/n0", "overwrite is fine").unwrap();
    rm(&mut xs, d5, "data/g0/n0").unwrap();
    assert_eq!(
        write(&mut xs, d5, "data/more/two", ""),
        Err(XsError::Enospc),
        "needs two nodes"
    );
    write(&mut xs, d5, "data/more", "").unwrap();
    // In a transaction: refused at creation.
    rm(&mut xs, d5, "data/more").unwrap();
    let tx = tx_start(&mut xs, d5);
    txw(&mut xs, d5, tx, "data/t1", "").unwrap();
    assert_eq!(txw(&mut xs, d5, tx, "data/t2", ""), Err(XsError::Enospc));
    // Nodes it owns created elsewhere meanwhile (dom0 writing under its
    // device directory): refused at commit, before the conflict check.
    xs.write("/local/domain/5/device/x", b"").unwrap();
    assert_eq!(xs.owned_nodes(5), MAX_NODES_PER_DOMAIN);
    assert_eq!(tx_end(&mut xs, d5, tx, true), Err(XsError::Enospc));
    // dom0 is not limited, and may hand nodes to a domain beyond its quota.
    for i in 0..50 {
        xs.write(&format!("/local/domain/5/data/dom0/{i}"), b"")
            .unwrap();
    }
    assert!(xs.owned_nodes(5) > MAX_NODES_PER_DOMAIN);
}

#[test]
fn node_size_quota() {
    let mut xs = setup();
    let d5 = xs.connect(5);
    // 16 header + 8 per perm (one here) + value.
    let fits = "v".repeat(MAX_NODE_SIZE - 24);
    write(&mut xs, d5, "data/big", &fits).unwrap();
    let over = "v".repeat(MAX_NODE_SIZE - 23);
    assert_eq!(write(&mut xs, d5, "data/big", &over), Err(XsError::Enospc));
    assert_eq!(write(&mut xs, d5, "data/new", &over), Err(XsError::Enospc));
    assert!(!xs.exists("/local/domain/5/data/new"));
    assert_eq!(
        setp(&mut xs, d5, "data/big", "n5 r6"),
        Err(XsError::Enospc),
        "perms count too"
    );
    assert_eq!(xs.read("/local/domain/5/data/big"), Ok(fits.into_bytes()));
    let c = xs.connect(0);
    write(&mut xs, c, "/huge", &"h".repeat(4000)).unwrap();
    assert_eq!(xs.write("/huge", &[b'h'; 4097]), Err(XsError::E2big));
    xs.write("/huge", &[b'h'; 4096]).unwrap();
}

#[test]
fn output_queue_is_bounded() {
    let mut xs = setup();
    let w = xs.connect(0);
    // 300 watches with 1000-byte tokens: one write queues ~300 KB.
    for i in 0..300 {
        watch(&mut xs, w, "/flood", &format!("{i:04}{}", "t".repeat(996))).unwrap();
    }
    xs.take_output(w);
    for i in 0..10 {
        xs.write(&format!("/flood/{i}"), b"").unwrap();
    }
    assert!(xs.dropped_output(w) > 0);
    assert!(xs.pending_output(w) <= MAX_QUEUED_EVENT_BYTES);
    // Replies still get through (up to the hard cap).
    let out = raw(&mut xs, w, msg::READ, 0, b"/flood/0\0");
    assert_eq!(
        reply_of(&out[out.len() - 1..], msg::READ, 0),
        Ok(Vec::new())
    );
    assert_eq!(xs.pending_output(w), 0);
    // Limited takes return whole messages, at least one.
    xs.write("/flood/x", b"").unwrap();
    let part = xs.take_output_limited(w, 1);
    assert_eq!(part.len(), 1);
    let part = xs.take_output_limited(w, 3 * 1024);
    assert_eq!(part.len(), 2);
    assert_eq!(xs.take_output(w).len(), 300 - 3);
}

// ---------------------------------------------------- malformed requests

#[test]
fn malformed_payloads_are_einval() {
    let mut xs = setup();
    let c = xs.connect(0);
    let d5 = xs.connect(5);
    for conn in [c, d5] {
        for (ty, p) in [
            (msg::READ, &b""[..]),
            (msg::READ, b"/tool"),
            (msg::READ, b"/tool\0x"),
            (msg::READ, b"/tool\0/a\0"),
            (msg::READ, b"/a b\0"),
            (msg::READ, b"/a/\0"),
            (msg::READ, b"/\xff\0"),
            (msg::READ, b"@introduceDomain\0"),
            (msg::DIRECTORY, b"@x\0"),
            (msg::DIRECTORY, b"\0"),
            (msg::WRITE, b"/nonul"),
            (msg::WRITE, b""),
            (msg::WRITE, b"/a//b\0v"),
            (msg::MKDIR, b"@x\0"),
            (msg::RM, b"/x\0\0"),
            (msg::GET_PERMS, b"bad path\0"),
            (msg::TRANSACTION_END, b""),
            (msg::DIRECTORY_PART, b"/\0"),
            (msg::DIRECTORY_PART, b"/\x000\0\0"),
        ] {
            assert_eq!(
                rq(&mut xs, conn, ty, 0, p),
                Err(XsError::Einval),
                "type {ty} payload {p:?}"
            );
        }
        let long = format!("/{}\0", "a".repeat(3100));
        assert_eq!(
            rq(&mut xs, conn, msg::WRITE, 0, long.as_bytes()),
            Err(XsError::Einval)
        );
        assert_eq!(
            rq(&mut xs, conn, msg::READ, 0, &[b'a'; 5000]),
            Err(XsError::Einval),
            "oversized"
        );
    }
    assert_eq!(xs.write("/a b", b""), Err(XsError::Einval));
    assert_eq!(xs.read("@introduceDomain"), Err(XsError::Einval));
}

#[test]
fn directory_too_big_and_directory_part() {
    let mut xs = setup();
    let c = xs.connect(0);
    let names: Vec<String> = (0..300)
        .map(|i| format!("child-with-a-long-name-{i:03}"))
        .collect();
    for n in &names {
        xs.write(&format!("/big/{n}"), b"").unwrap();
    }
    assert_eq!(dir(&mut xs, c, "/big"), Err(XsError::E2big));
    let mut got = Vec::new();
    let mut off = 0usize;
    let mut generation = None;
    loop {
        let b = rq(
            &mut xs,
            c,
            msg::DIRECTORY_PART,
            0,
            &cs(&["/big", &off.to_string()]),
        )
        .unwrap();
        assert!(b.len() <= XENSTORE_PAYLOAD_MAX);
        let (g, rest) = take_cstr(&b).unwrap();
        assert!(generation.is_none() || generation == Some(g.to_vec()));
        generation = Some(g.to_vec());
        let done = rest.ends_with(b"\0\0") || rest == b"\0";
        let names = split(rest.strip_suffix(b"\0").filter(|_| done).unwrap_or(rest));
        off += names.iter().map(|n| n.len() + 1).sum::<usize>();
        got.extend(names);
        if done {
            break;
        }
    }
    assert_eq!(got, names);
    let b = rq(&mut xs, c, msg::DIRECTORY_PART, 0, &cs(&["/big", "999999"])).unwrap();
    assert!(b.ends_with(b"\0\0"));
    let d5 = xs.connect(5);
    assert_eq!(
        rq(&mut xs, d5, msg::DIRECTORY_PART, 0, &cs(&["/big", "0"])),
        Err(XsError::Eacces)
    );
    assert_eq!(
        rq(&mut xs, d5, msg::DIRECTORY_PART, 0, &cs(&["data", "0"])),
        Ok(format!(
            "{}\0\0",
            xs.db.get("/local/domain/5/data").unwrap().generation
        )
        .into_bytes())
    );
}

#[test]
fn toolstack_api() {
    let mut xs = Xenstored::default();
    assert_eq!(xs.directory("/"), Ok(vec!["tool".to_string()]));
    assert_eq!(xs.directory("/tool"), Ok(vec!["xenstored".to_string()]));
    assert_eq!(xs.get_perms("@introduceDomain"), Ok(vec![Perm::none(0)]));
    xs.write("/a/b", b"v").unwrap();
    assert_eq!(xs.read("/a/b"), Ok(b"v".to_vec()));
    assert_eq!(xs.read("/a/c"), Err(XsError::Enoent));
    assert_eq!(xs.directory("/a/c"), Err(XsError::Enoent));
    assert_eq!(xs.get_perms("/a/c"), Err(XsError::Enoent));
    xs.mkdir("/a/c").unwrap();
    assert!(xs.exists("/a/c"));
    assert!(!xs.exists("bad path"));
    xs.rm("/a").unwrap();
    assert!(!xs.exists("/a"));
    assert_eq!(xs.rm("/"), Err(XsError::Einval));
    assert_eq!(xs.rm("/x/y"), Err(XsError::Enoent));
    assert_eq!(
        xs.set_perms("/missing", &[Perm::none(0)]),
        Err(XsError::Enoent)
    );
    assert_eq!(Perm::parse(b"b7"), Some(Perm::both(7)));
    assert_eq!(Perm::write(3).to_string(), "w3");
    let sp: crate::store::Perm = Perm::read(2).into();
    assert_eq!(Perm::from(sp), Perm::read(2));
    xs.check();
}

// ------------------------------------------------------------- fuzzing

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any sequence of requests (payloads built from protocol-shaped
    /// fragments and junk) from dom0 and a domU: exactly one reply per
    /// request with its ids echoed, every event well-formed, the tree's
    /// invariants kept (checked after each request), and no panic.
    #[test]
    fn arbitrary_requests_never_break_the_store(
        reqs in proptest::collection::vec(
            (
                proptest::bool::ANY,
                proptest::sample::select(vec![0u32, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 21, 22, 23]),
                0u32..3,
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        &b"/a"[..], b"/a/b", b"/local/domain/5/data", b"data", b"data/x", b"device",
                        b"@releaseDomain", b"@introduceDomain", b"/", b"\0", b"\0", b"\0", b"T", b"F",
                        b"n5", b"r0", b"b6", b"w5", b"n0", b"0", b"1", b"5", b"tok", b"//", b" ", b"\xff",
                    ]),
                    0..8,
                ),
            ),
            1..60,
        )
    ) {
        let mut xs = setup();
        let conns = [xs.connect(0), xs.connect(5)];
        let w = xs.connect(0);
        watch(&mut xs, w, "/", "all").unwrap();
        for (dom0, ty, tx, frags) in reqs {
            let conn = conns[usize::from(!dom0)];
            let p = frags.concat();
            let out = raw(&mut xs, conn, ty, tx, &p);
            let replies: Vec<_> = out.iter().filter(|(h, _)| h.ty != msg::WATCH_EVENT).collect();
            proptest::prop_assert_eq!(replies.len(), 1);
            proptest::prop_assert_eq!((replies[0].0.req_id, replies[0].0.tx_id), (REQ_ID, tx));
            let evs: Vec<_> = out.iter().filter(|(h, _)| h.ty == msg::WATCH_EVENT).cloned().collect();
            parse_events(&evs);
        }
        parse_events(&xs.take_output(w));
    }
}
