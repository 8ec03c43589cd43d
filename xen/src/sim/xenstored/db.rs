//! The node tree, permission checks, transactions, and the tree operations
//! (write, mkdir, rm, set_perms) shared by the wire requests and the
//! toolstack API.
//!
//! # Invariants
//! - The root `/` always exists; every other node under `/` is listed in
//!   its parent's `children` exactly once, and every listed child exists.
//!   Special nodes (`@introduceDomain`, `@releaseDomain`) have no parent
//!   link. Operations check everything that can fail *before* changing the
//!   tree, so a failed operation on the main tree changes nothing.
//! - Every node has at least one permission entry (its owner).
//! - [`Db::owned`] counts, per domain, the nodes whose first permission
//!   entry names it.
//! - Each change to a node gives it a fresh generation number (never
//!   reused); transaction conflicts are detected by comparing them.

use std::collections::BTreeMap;

use super::path::{basename, child_path, parent_of};
use super::{Perm, MAX_NODES_PER_DOMAIN, MAX_NODE_SIZE, MAX_TRANSACTION_NODES};
use crate::abi::DomId;
use crate::store::perm::Access;
use crate::store::wire::XsError;

/// Permission bit: may read (and watch) the node.
pub(super) const READ: u8 = 1;
/// Permission bit: may write the node.
pub(super) const WRITE: u8 = 2;
/// Permission bit: owns the node (may change its permissions).
pub(super) const OWNER: u8 = 4;

/// Bytes xenstored charges for a node besides its value and children
/// (`struct node_hdr`), and per permission entry.
const NODE_HDR_SIZE: usize = 16;
const PERM_SIZE: usize = 8;

fn access_bits(a: Access) -> u8 {
    match a {
        Access::None => 0,
        Access::Read => READ,
        Access::Write => WRITE,
        Access::Both => READ | WRITE,
    }
}

/// Who performs an operation: a domain, privileged if it is dom0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Caller {
    pub(super) domid: DomId,
    pub(super) privileged: bool,
}

impl Caller {
    /// The toolstack in dom0 using the direct API.
    pub(super) const TOOLSTACK: Caller = Caller {
        domid: 0,
        privileged: true,
    };

    /// A connection of domain `domid`.
    pub(super) fn of(domid: DomId) -> Caller {
        Caller {
            domid,
            privileged: domid == 0,
        }
    }

    /// What this caller may do with a node with `perms` (xenstored's
    /// `perm_for_conn`): everything if privileged or the owner; else the
    /// access of its own entry; else the owner entry's access, which is the
    /// default for unlisted domains.
    pub(super) fn perm(self, perms: &[Perm]) -> u8 {
        let Some(owner) = perms.first() else {
            return if self.privileged {
                READ | WRITE | OWNER
            } else {
                0
            };
        };
        if self.privileged || owner.domid == self.domid {
            return READ | WRITE | OWNER;
        }
        let own = perms
            .get(1..)
            .unwrap_or(&[])
            .iter()
            .find(|p| p.domid == self.domid);
        access_bits(own.unwrap_or(owner).access)
    }
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) value: Vec<u8>,
    /// Never empty: the first entry is the owner and the default access.
    pub(super) perms: Vec<Perm>,
    /// Child names in creation order (as xenstored lists them).
    pub(super) children: Vec<String>,
    pub(super) generation: u64,
}

impl Node {
    fn new(perms: Vec<Perm>) -> Node {
        Node {
            value: Vec::new(),
            perms,
            children: Vec::new(),
            generation: 0,
        }
    }

    pub(super) fn owner(&self) -> DomId {
        self.perms.first().map_or(0, |p| p.domid)
    }

    /// Size as xenstored's node-size quota counts it.
    fn size(&self) -> usize {
        NODE_HDR_SIZE
            + PERM_SIZE * self.perms.len()
            + self.value.len()
            + self.children.iter().map(|c| c.len() + 1).sum::<usize>()
    }

    /// The children as the DIRECTORY reply carries them: `name\0` each.
    pub(super) fn children_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.children {
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        }
        out
    }
}

/// The committed tree.
#[derive(Debug)]
pub(super) struct Db {
    nodes: BTreeMap<String, Node>,
    generation: u64,
    owned: BTreeMap<DomId, usize>,
}

impl Db {
    /// The tree xenstored starts with: `/`, `/tool/xenstored` and the two
    /// special nodes, all owned by dom0 with no access for others (`n0`).
    pub(super) fn new() -> Db {
        let mut db = Db {
            nodes: BTreeMap::new(),
            generation: 0,
            owned: BTreeMap::new(),
        };
        let n0 = || Node::new(vec![Perm::none(0)]);
        let mut root = n0();
        root.children.push("tool".into());
        let mut tool = n0();
        tool.children.push("xenstored".into());
        db.put("/", root);
        db.put("/tool", tool);
        db.put("/tool/xenstored", n0());
        db.put("@introduceDomain", n0());
        db.put("@releaseDomain", n0());
        db
    }

    pub(super) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Nodes owned by `domid`.
    pub(super) fn owned(&self, domid: DomId) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn count(&mut self, domid: DomId, up: bool) {
        let n = self.owned.entry(domid).or_insert(0);
        if up {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
    }

    /// Store `node` at `path` with a fresh generation.
    pub(super) fn put(&mut self, path: &str, mut node: Node) {
        node.generation = self.next_generation();
        let owner = node.owner();
        if let Some(old) = self.nodes.insert(path.to_string(), node) {
            self.count(old.owner(), false);
        }
        self.count(owner, true);
    }

    /// Remove the node at `path` (not its children).
    pub(super) fn del(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.remove(path)?;
        self.count(old.owner(), false);
        Some(old)
    }

    /// Check the invariants of the module doc (tests only): every node
    /// below `/` is reachable and listed once, every listed child exists,
    /// every node has an owner, and the ownership counts are right.
    #[cfg(test)]
    pub(super) fn check(&self) {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec!["/".to_string()];
        while let Some(p) = stack.pop() {
            let n = self
                .nodes
                .get(&p)
                .unwrap_or_else(|| panic!("listed node {p} missing"));
            assert!(!n.perms.is_empty(), "{p} has no owner");
            assert!(seen.insert(p.clone()), "{p} listed twice");
            for c in &n.children {
                stack.push(child_path(&p, c));
            }
        }
        for (p, n) in &self.nodes {
            assert!(p.starts_with('@') || seen.contains(p), "{p} unreachable");
            assert!(!n.perms.is_empty(), "{p} has no owner");
        }
        let mut owned: BTreeMap<DomId, usize> = BTreeMap::new();
        for n in self.nodes.values() {
            *owned.entry(n.owner()).or_insert(0) += 1;
        }
        for (d, &c) in &self.owned {
            assert_eq!(owned.get(d).copied().unwrap_or(0), c, "owned count of d{d}");
        }
        for (d, &c) in &owned {
            assert_eq!(self.owned(*d), c, "owned count of d{d}");
        }
    }

    /// Paths of the topmost nodes below `/` owned by `domid` (pre-order).
    pub(super) fn owned_roots(&self, domid: DomId) -> Vec<String> {
        let mut roots = Vec::new();
        let mut stack = vec!["/".to_string()];
        while let Some(p) = stack.pop() {
            let Some(n) = self.nodes.get(&p) else {
                continue;
            };
            if p != "/" && n.owner() == domid {
                roots.push(p);
                continue;
            }
            for c in n.children.iter().rev() {
                stack.push(child_path(&p, c));
            }
        }
        roots
    }
}

/// A node a transaction has accessed.
#[derive(Debug)]
struct Touched {
    path: String,
    /// Generation of the committed node at first access (`None`: absent).
    base_gen: Option<u64>,
    /// Its permissions then (for watch filtering at commit).
    base_perms: Option<Vec<Perm>>,
    /// The node as the transaction sees it now.
    node: Option<Node>,
    modified: bool,
    /// A watch event is due at commit; `Some(true)` for an exact one.
    fire: Option<bool>,
}

/// An open transaction: the nodes it accessed, in first-access order, with
/// its own view of them (xenstored's accessed-node list).
#[derive(Debug)]
pub(super) struct Tx {
    touched: Vec<Touched>,
    index: BTreeMap<String, usize>,
    /// An operation failed half-way: commit is refused (`ENOMEM`, as
    /// xenstored does).
    fail: bool,
    node_created: bool,
    owned_delta: BTreeMap<DomId, i64>,
    max_nodes: usize,
}

impl Tx {
    /// A transaction for `caller` (unprivileged ones may access at most
    /// [`MAX_TRANSACTION_NODES`] nodes).
    pub(super) fn new(caller: Caller) -> Tx {
        Tx {
            touched: Vec::new(),
            index: BTreeMap::new(),
            fail: false,
            node_created: false,
            owned_delta: BTreeMap::new(),
            max_nodes: if caller.privileged {
                usize::MAX
            } else {
                MAX_TRANSACTION_NODES
            },
        }
    }

    /// Index of `path` in the accessed list, copying it from `db` on first
    /// access.
    fn touch(&mut self, db: &Db, path: &str) -> Result<usize, XsError> {
        if let Some(&i) = self.index.get(path) {
            return Ok(i);
        }
        if self.touched.len() >= self.max_nodes {
            self.fail = true;
            return Err(XsError::Enospc);
        }
        let base = db.get(path);
        self.touched.push(Touched {
            path: path.to_string(),
            base_gen: base.map(|n| n.generation),
            base_perms: base.map(|n| n.perms.clone()),
            node: base.cloned(),
            modified: false,
            fire: None,
        });
        let i = self.touched.len() - 1;
        self.index.insert(path.to_string(), i);
        Ok(i)
    }

    fn delta(&mut self, domid: DomId, by: i64) {
        *self.owned_delta.entry(domid).or_insert(0) += by;
    }

    /// Commit into `db` (xenstored's `finalize_transaction`): `EAGAIN` if
    /// any node the transaction accessed changed since its first access,
    /// else write every modified node and return the watch events due, in
    /// first-access order.
    pub(super) fn commit(self, db: &mut Db, caller: Caller) -> Result<Vec<Fire>, XsError> {
        if self.fail {
            return Err(XsError::Enomem);
        }
        if !caller.privileged && self.node_created {
            for (&d, &delta) in &self.owned_delta {
                if delta > 0 && db.owned(d) as i64 + delta > MAX_NODES_PER_DOMAIN as i64 {
                    return Err(XsError::Enospc);
                }
            }
        }
        if self
            .touched
            .iter()
            .any(|t| db.get(&t.path).map(|n| n.generation) != t.base_gen)
        {
            return Err(XsError::Eagain);
        }
        let mut fires = Vec::new();
        for t in self.touched {
            if !t.modified {
                continue;
            }
            match t.node {
                Some(n) => db.put(&t.path, n),
                None => {
                    db.del(&t.path);
                }
            }
            if let Some(exact) = t.fire {
                // As xenstored: the old permissions, then the committed
                // node's and its parent's; a node gone after the commit is
                // only seen by those who could read it before.
                let mut sets: Vec<Vec<Perm>> = t.base_perms.into_iter().collect();
                if let Some(n) = db.get(&t.path) {
                    sets.push(n.perms.clone());
                    sets.extend(db.get(parent_of(&t.path)).map(|p| p.perms.clone()));
                }
                fires.push(Fire {
                    path: t.path,
                    exact,
                    perm_sets: sets,
                });
            }
        }
        Ok(fires)
    }
}

/// A change that watches may fire for. `exact`: only watches on exactly
/// `path` fire, else watches on `path` and its ancestors. A connection
/// receives the event only if one of `perm_sets` lets it read.
#[derive(Clone, Debug)]
pub(super) struct Fire {
    pub(super) path: String,
    pub(super) exact: bool,
    pub(super) perm_sets: Vec<Vec<Perm>>,
}

/// One operation on the tree, as `caller`, on the committed tree or inside
/// a transaction. Watch events of a committed-tree operation collect in
/// `fires`; inside a transaction they are queued in it until commit.
pub(super) struct Op<'a> {
    pub(super) db: &'a mut Db,
    pub(super) tx: Option<&'a mut Tx>,
    pub(super) caller: Caller,
    pub(super) fires: Vec<Fire>,
}

impl<'a> Op<'a> {
    pub(super) fn new(db: &'a mut Db, tx: Option<&'a mut Tx>, caller: Caller) -> Op<'a> {
        Op {
            db,
            tx,
            caller,
            fires: Vec::new(),
        }
    }

    /// The node at `path` as this operation sees it (recorded as accessed
    /// in a transaction).
    pub(super) fn get(&mut self, path: &str) -> Result<Option<Node>, XsError> {
        match self.tx.as_deref_mut() {
            None => Ok(self.db.get(path).cloned()),
            Some(tx) => {
                let i = tx.touch(self.db, path)?;
                Ok(tx.touched.get(i).and_then(|t| t.node.clone()))
            }
        }
    }

    fn put(&mut self, path: &str, mut node: Node) -> Result<(), XsError> {
        match self.tx.as_deref_mut() {
            None => {
                self.db.put(path, node);
                Ok(())
            }
            Some(tx) => {
                let i = tx.touch(self.db, path)?;
                node.generation = self.db.next_generation();
                let new_owner = node.owner();
                let old_owner = tx
                    .touched
                    .get(i)
                    .and_then(|t| t.node.as_ref())
                    .map(Node::owner);
                if let Some(o) = old_owner {
                    tx.delta(o, -1);
                }
                tx.delta(new_owner, 1);
                if let Some(t) = tx.touched.get_mut(i) {
                    t.node = Some(node);
                    t.modified = true;
                }
                Ok(())
            }
        }
    }

    fn del(&mut self, path: &str) -> Result<(), XsError> {
        match self.tx.as_deref_mut() {
            None => {
                self.db.del(path);
                Ok(())
            }
            Some(tx) => {
                let i = tx.touch(self.db, path)?;
                let old_owner = tx
                    .touched
                    .get(i)
                    .and_then(|t| t.node.as_ref())
                    .map(Node::owner);
                if let Some(o) = old_owner {
                    tx.delta(o, -1);
                }
                if let Some(t) = tx.touched.get_mut(i) {
                    t.node = None;
                    t.modified = true;
                }
                Ok(())
            }
        }
    }

    /// Nodes owned by `domid` as this operation sees the tree.
    fn owned(&self, domid: DomId) -> usize {
        let delta = self
            .tx
            .as_deref()
            .and_then(|t| t.owned_delta.get(&domid))
            .copied()
            .unwrap_or(0);
        (self.db.owned(domid) as i64 + delta).max(0) as usize
    }

    /// A watch event is due for `path`. `sets` computes the permission sets
    /// that may read it (only needed outside transactions: at commit they
    /// are recomputed from the committed tree). Inside a transaction a
    /// non-exact event overrides an exact one, as xenstored's
    /// `queue_watches`.
    fn fire(&mut self, path: &str, exact: bool, sets: impl FnOnce(&Db) -> Vec<Vec<Perm>>) {
        match self.tx.as_deref_mut() {
            None => {
                let perm_sets = sets(self.db);
                self.fires.push(Fire {
                    path: path.to_string(),
                    exact,
                    perm_sets,
                });
            }
            Some(tx) => match tx.index.get(path).and_then(|&i| tx.touched.get_mut(i)) {
                Some(t) => t.fire = Some(t.fire.map_or(exact, |e| e && exact)),
                None => tx.fail = true,
            },
        }
    }

    fn check_size(&self, node: &Node) -> Result<(), XsError> {
        if !self.caller.privileged && node.size() > MAX_NODE_SIZE {
            return Err(XsError::Enospc);
        }
        Ok(())
    }

    /// The node at canonical `path` if the caller has all of `want` on it
    /// (xenstored's `get_node`). A missing node is `ENOENT` if the caller
    /// has some of `want` on the nearest existing ancestor, else `EACCES`,
    /// so that nothing is revealed about places it may not look.
    pub(super) fn get_checked(&mut self, path: &str, want: u8) -> Result<Node, XsError> {
        if let Some(n) = self.get(path)? {
            return if self.caller.perm(&n.perms) & want == want {
                Ok(n)
            } else {
                Err(XsError::Eacces)
            };
        }
        let mut p = path;
        loop {
            p = parent_of(p);
            if let Some(n) = self.get(p)? {
                return Err(if self.caller.perm(&n.perms) & want != 0 {
                    XsError::Enoent
                } else {
                    XsError::Eacces
                });
            }
            if p == "/" {
                return Err(XsError::Eacces);
            }
        }
    }

    /// Create the missing node `path` and any missing ancestors (xenstored's
    /// `construct_node` + `create_node`). New nodes copy the permissions of
    /// the nearest existing ancestor, except that a node created by an
    /// unprivileged domain is owned by it: the first entry's domid becomes
    /// the creator's, its access letter stays. Intermediate nodes get empty
    /// values. Quotas: the caller's owned nodes, and node sizes.
    fn create(&mut self, path: &str, value: &[u8]) -> Result<Node, XsError> {
        let mut missing = vec![path.to_string()];
        let mut parent_path = parent_of(path).to_string();
        let mut parent = loop {
            if let Some(n) = self.get(&parent_path)? {
                break n;
            }
            if parent_path == "/" {
                return Err(XsError::Eio);
            }
            missing.push(parent_path.clone());
            parent_path = parent_of(&parent_path).to_string();
        };
        if !self.caller.privileged
            && self.owned(self.caller.domid) + missing.len() > MAX_NODES_PER_DOMAIN
        {
            return Err(XsError::Enospc);
        }
        let mut perms = parent.perms.clone();
        if !self.caller.privileged {
            if let Some(first) = perms.first_mut() {
                first.domid = self.caller.domid;
            }
        }
        // `missing` runs from `path` up; build top-down.
        missing.reverse();
        let top = missing.first().map(String::as_str).unwrap_or(path);
        parent.children.push(basename(top).to_string());
        self.check_size(&parent)?;
        let mut plan = Vec::with_capacity(missing.len());
        for (i, p) in missing.iter().enumerate() {
            let mut n = Node::new(perms.clone());
            match missing.get(i + 1) {
                Some(next) => n.children.push(basename(next).to_string()),
                None => n.value = value.to_vec(),
            }
            self.check_size(&n)?;
            plan.push((p.as_str(), n));
        }
        self.put(&parent_path, parent)?;
        let mut created = Node::new(perms);
        for (p, n) in plan {
            created = n.clone();
            self.put(p, n)?;
        }
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.node_created = true;
        }
        Ok(created)
    }

    /// Permission sets that may see a change of `path` whose node now has
    /// `perms`: the node's own, then its parent's.
    fn node_and_parent(path: &str, perms: Vec<Perm>) -> impl FnOnce(&Db) -> Vec<Vec<Perm>> + '_ {
        move |db| {
            let mut sets = vec![perms];
            sets.extend(db.get(parent_of(path)).map(|p| p.perms.clone()));
            sets
        }
    }

    /// WRITE: set the value of `path`, creating it and missing ancestors.
    pub(super) fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        let node = match self.get_checked(path, WRITE) {
            Ok(mut node) => {
                node.value = value.to_vec();
                self.check_size(&node)?;
                self.put(path, node.clone())?;
                node
            }
            Err(XsError::Enoent) => self.create(path, value)?,
            Err(e) => return Err(e),
        };
        self.fire(path, false, Self::node_and_parent(path, node.perms));
        Ok(())
    }

    /// MKDIR: create `path` with an empty value if it does not exist (an
    /// existing node is left alone and fires nothing).
    pub(super) fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        match self.get_checked(path, WRITE) {
            Ok(_) => Ok(()),
            Err(XsError::Enoent) => {
                let node = self.create(path, &[])?;
                self.fire(path, false, Self::node_and_parent(path, node.perms));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// RM: remove `path` and its subtree. A missing node is fine if its
    /// parent exists (`ENOENT` otherwise); the root is `EINVAL`.
    pub(super) fn rm(&mut self, path: &str) -> Result<(), XsError> {
        match self.get_checked(path, WRITE) {
            Ok(node) => {
                if path == "/" {
                    return Err(XsError::Einval);
                }
                self.rm_node(path, node)
            }
            Err(XsError::Enoent) => match self.get(parent_of(path))? {
                Some(_) => Ok(()),
                None => Err(XsError::Enoent),
            },
            Err(e) => Err(e),
        }
    }

    /// Remove the existing node `path` (not the root) with its subtree, as
    /// xenstored's `rm_node`: nodes go bottom-up (children before parents),
    /// each firing watches while its permissions are still known. The
    /// removed root fires like a write (watches on it and its ancestors);
    /// each node below fires only watches on exactly that node. Who may see
    /// each event: those who could read the node or its parent.
    pub(super) fn rm_node(&mut self, path: &str, node: Node) -> Result<(), XsError> {
        let parent_path = parent_of(path).to_string();
        let Some(mut parent) = self.get(&parent_path)? else {
            return Err(XsError::Einval);
        };
        struct Frame {
            path: String,
            node: Node,
            parent_perms: Vec<Perm>,
            next: usize,
        }
        let mut stack = vec![Frame {
            path: path.to_string(),
            node,
            parent_perms: parent.perms.clone(),
            next: 0,
        }];
        while let Some(top) = stack.last_mut() {
            if let Some(name) = top.node.children.get(top.next) {
                let child = child_path(&top.path, name);
                let perms = top.node.perms.clone();
                top.next += 1;
                // A listed child that does not exist would be a corrupt
                // tree; skip it rather than fail half-way.
                if let Some(n) = self.get(&child)? {
                    stack.push(Frame {
                        path: child,
                        node: n,
                        parent_perms: perms,
                        next: 0,
                    });
                }
                continue;
            }
            let Some(f) = stack.pop() else { break };
            self.del(&f.path)?;
            let exact = f.path != path;
            let sets = vec![f.node.perms, f.parent_perms];
            self.fire(&f.path, exact, move |_| sets);
        }
        let base = basename(path);
        if let Some(i) = parent.children.iter().position(|c| c == base) {
            parent.children.remove(i);
        }
        self.put(&parent_path, parent)
    }

    /// SET_PERMS on `path` (special nodes allowed): only the owner or a
    /// privileged caller, and an unprivileged owner may not give the node
    /// away (`EPERM`).
    pub(super) fn set_perms(&mut self, path: &str, perms: Vec<Perm>) -> Result<(), XsError> {
        if perms.is_empty() {
            return Err(XsError::Einval);
        }
        let mut node = self.get_checked(path, WRITE | OWNER)?;
        if !self.caller.privileged && perms.first().map(|p| p.domid) != Some(node.owner()) {
            return Err(XsError::Eperm);
        }
        let old = core::mem::replace(&mut node.perms, perms);
        self.check_size(&node)?;
        let new = node.perms.clone();
        self.put(path, node)?;
        self.fire(path, false, move |db| {
            let mut sets = vec![old, new];
            sets.extend(db.get(parent_of(path)).map(|p| p.perms.clone()));
            sets
        });
        Ok(())
    }
}
