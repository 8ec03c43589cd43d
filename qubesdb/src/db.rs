//! The database itself: a sorted map from key to value, with QubesDB's
//! removal semantics (a path ending in `/` removes every key under it) and
//! a size bound. Used for the VM's replica and for the dom0 model.
//!
//! Invariants: every key passes [`check_key`]; every value passes
//! [`check_data`](crate::wire::check_data) (no NUL, below 3072 bytes);
//! [`Db::size`] is the sum of key and value lengths plus
//! [`ENTRY_OVERHEAD`] per entry and never exceeds the bound given to
//! [`Db::with_limit`].

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::wire::{check_path, MAX_PATH};

/// Bytes charged per entry on top of its key and value, so that many empty
/// values are bounded too.
pub const ENTRY_OVERHEAD: usize = 32;

/// Default size bound: ample for a firewall with many clients and rules
/// (a real database is a few KiB), small enough for a 32 MiB unikernel.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// Whether `path` can be a key (`qubesdb_insert`): it starts with `/`,
/// does not end with `/`, is at most 63 bytes and uses only path bytes.
pub fn check_key(path: &str) -> bool {
    path.starts_with('/')
        && !path.ends_with('/')
        && path.len() < MAX_PATH
        && check_path(path.as_bytes()).is_ok()
}

/// Whether `path` can be the target of an RM: a key, or a prefix ending in
/// `/` (which also starts with `/`).
pub fn check_rm_path(path: &str) -> bool {
    path.starts_with('/') && path.len() < MAX_PATH && check_path(path.as_bytes()).is_ok()
}

/// The write did not fit under the size bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// See the module doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Db {
    map: BTreeMap<String, Box<[u8]>>,
    size: usize,
    limit: usize,
}

impl Default for Db {
    fn default() -> Self {
        Db::new()
    }
}

fn cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl Db {
    /// An empty database bounded by [`DEFAULT_LIMIT`].
    pub fn new() -> Db {
        Db::with_limit(DEFAULT_LIMIT)
    }

    /// An empty database bounded by `limit` bytes (see the module doc).
    pub fn with_limit(limit: usize) -> Db {
        Db {
            map: BTreeMap::new(),
            size: 0,
            limit,
        }
    }

    /// An empty database with the same bound.
    pub fn empty_like(&self) -> Db {
        Db::with_limit(self.limit)
    }

    /// Current accounted size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(|v| &v[..])
    }

    /// Set `key` to `value`. The caller has checked both (see the module
    /// doc); `Err(Full)` leaves the database unchanged. Returns whether the
    /// stored value changed.
    pub fn write(&mut self, key: &str, value: &[u8]) -> Result<bool, Full> {
        let old = self.map.get(key);
        if old.map(|v| &v[..]) == Some(value) {
            return Ok(false);
        }
        let freed = old.map_or(0, |v| cost(key, v));
        let new_size = self.size - freed + cost(key, value);
        if new_size > self.limit {
            return Err(Full);
        }
        self.size = new_size;
        self.map.insert(String::from(key), Box::from(value));
        Ok(true)
    }

    /// Remove `path` (exact key) or, if it ends with `/`, every key that
    /// starts with it. Returns the removed keys, in order.
    pub fn remove(&mut self, path: &str) -> Vec<String> {
        if path.ends_with('/') {
            let keys: Vec<String> = self.keys_under(path).map(String::from).collect();
            for k in &keys {
                self.remove_key(k);
            }
            keys
        } else if self.remove_key(path) {
            alloc::vec![String::from(path)]
        } else {
            Vec::new()
        }
    }

    fn remove_key(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(v) => {
                self.size -= cost(key, &v);
                true
            }
            None => false,
        }
    }

    /// Every `(key, value)` in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &[u8])> + '_ {
        self.map.iter().map(|(k, v)| (k.as_str(), &v[..]))
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    pub fn entries_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.map
            .range::<str, _>((
                core::ops::Bound::Included(prefix),
                core::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), &v[..]))
    }

    /// Every key that starts with `prefix`, in key order.
    pub fn keys_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries_under(prefix).map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn keys_and_rm_paths() {
        for good in ["/a", "/qubes-firewall/10.137.0.5/0000", "/a-b_c.d:e@f"] {
            assert!(check_key(good), "{good}");
            assert!(check_rm_path(good), "{good}");
        }
        for bad in ["", "a", "/a/", "/", "/a b", "-x"] {
            assert!(!check_key(bad), "{bad:?}");
        }
        assert!(check_rm_path("/a/"));
        assert!(check_rm_path("/"));
        assert!(!check_rm_path(""));
        assert!(!check_rm_path("a/"));
        let long = alloc::format!("/{}", "a".repeat(63));
        assert!(!check_key(&long));
        assert!(check_key(&long[..63]));
    }

    #[test]
    fn write_get_and_exact_remove() {
        let mut db = Db::new();
        assert_eq!(db.write("/a", b"1"), Ok(true));
        assert_eq!(db.write("/a", b"1"), Ok(false));
        assert_eq!(db.write("/a", b"2"), Ok(true));
        assert_eq!(db.get("/a"), Some(&b"2"[..]));
        assert_eq!(db.remove("/a"), vec![String::from("/a")]);
        assert!(db.remove("/a").is_empty());
        assert_eq!(db.size(), 0);
    }

    #[test]
    fn prefix_remove_spares_the_base_key_and_neighbours() {
        let mut db = Db::new();
        for k in [
            "/fw/1.2.3.4",
            "/fw/1.2.3.4/policy",
            "/fw/1.2.3.4/0000",
            "/fw/1.2.3.45/0000",
        ] {
            db.write(k, b"x").unwrap();
        }
        let removed = db.remove("/fw/1.2.3.4/");
        assert_eq!(removed, vec!["/fw/1.2.3.4/0000", "/fw/1.2.3.4/policy"]);
        assert!(db.get("/fw/1.2.3.4").is_some());
        assert!(db.get("/fw/1.2.3.45/0000").is_some());
        assert_eq!(db.len(), 2);
    }

    #[test]
    fn entries_under_is_ordered_and_bounded() {
        let mut db = Db::new();
        for k in ["/b", "/a/2", "/a/1", "/a", "/a0"] {
            db.write(k, k.as_bytes()).unwrap();
        }
        let keys: Vec<&str> = db.keys_under("/a/").collect();
        assert_eq!(keys, ["/a/1", "/a/2"]);
        let all: Vec<&str> = db.keys_under("").collect();
        assert_eq!(all, ["/a", "/a/1", "/a/2", "/a0", "/b"]);
    }

    #[test]
    fn size_limit_is_enforced_and_accounted() {
        let mut db = Db::with_limit(2 * ENTRY_OVERHEAD + 10);
        db.write("/a", b"123").unwrap(); // 2 + 3 + 32
        assert_eq!(db.size(), 37);
        assert_eq!(db.write("/bb", b"12345678"), Err(Full)); // would be 37 + 43
        assert_eq!(db.get("/bb"), None);
        assert_eq!(db.size(), 37);
        db.write("/b", b"1").unwrap();
        assert_eq!(db.size(), 37 + 35);
        // Overwriting frees the old value first.
        db.write("/a", b"1").unwrap();
        assert_eq!(db.size(), 35 + 35);
        db.remove("/");
        assert_eq!(db.size(), 0);
    }
}
