//! The `dsthost` resolver (sans-IO): turns the host names the clients'
//! rules use into addresses, by asking the uplink's DNS servers itself.
//!
//! # Driving it
//!
//! The engine owns one [`Resolver`] and
//! - tells it the DNS servers ([`Resolver::set_servers`], from QubesDB
//!   `/qubes-primary-dns` and `/qubes-secondary-dns`) and the names of
//!   interest, the union over all clients' rule sets ([`Resolver::want`],
//!   [`Resolver::forget`]);
//! - calls [`Resolver::poll`] until it returns `None`, and sends each
//!   [`Query`] it gets as UDP from the uplink address, port
//!   [`Query::src_port`], to `server` port 53;
//! - hands every UDP payload that arrives at the uplink address for a port
//!   [`Resolver::owns_port`] claims to [`Resolver::handle_response`];
//! - applies every [`Update`] (from `handle_response`, and from
//!   [`Resolver::take_update`] after each `poll` round, for timeouts and
//!   expiries) to each client rule set naming the host:
//!   `RuleSet::set_resolved` / `RuleSet::set_failed`. A rule set created
//!   later for a host already known takes [`Resolver::status`];
//! - wakes up at [`Resolver::next_deadline`].
//!
//! Time is a monotonic nanosecond count the engine passes in.
//!
//! # What it does
//!
//! Each name is resolved in *rounds*: one A and one AAAA lookup, both
//! sent at once. A lookup waits [`TIMEOUT_NS`] per attempt, attempt `k`
//! going to server `k mod n` (primary first), and gives up after
//! [`MAX_ATTEMPTS`]. A matched but unusable answer (SERVFAIL, REFUSED,
//! truncated, malformed) ends the attempt at once and the next goes to
//! the next server. When both lookups are done the round gives *one*
//! outcome for the name:
//! - any addresses (of either family) → resolved to all of them (sorted,
//!   de-duplicated; at most 2 × [`dns::MAX_ADDRS`]), refreshed after the
//!   smallest TTL of the round (the address records, their CNAMEs, and
//!   the other family's negative TTL if its NODATA came with an SOA)
//!   clamped to [`MIN_TTL`]..=[`MAX_TTL`] seconds, and within
//!   [`RETRY_AFTER_FAILURE`] if the other family failed;
//! - NXDOMAIN, or NODATA for both families → failed (the name has no
//!   address: rules naming it reject), asked again after the negative
//!   TTL (from the SOA; [`MIN_TTL`] without one, which RFC 2308 says
//!   not to cache) clamped to [`MIN_TTL`]..=[`MAX_NEGATIVE_TTL`];
//! - otherwise (timeouts, server failures) → failed, asked again after
//!   [`RETRY_AFTER_FAILURE`]; but a name that had addresses keeps them
//!   (flows keep working while sys-net's DNS hiccups) until they are
//!   [`MAX_STALE_NS`] past their expiry.
//!
//! Before its first round a name is pending and rules naming it drop
//! silently (fail closed). An [`Update`] is given when what the engine
//! was told changes (first result, new address set, resolved ↔ failed);
//! a refresh giving the same addresses gives none.
//!
//! # Spoofing
//!
//! sys-net is hostile and can forge anything on-path; the checks stop
//! everyone else and keep strays out. A response is accepted only if it
//! reaches the port of an outstanding query (random per query in
//! [`PORT_RANGE`]), comes from the server that query went to, from port
//! 53, and echoes the query's random id and question. Ids and ports come
//! from a SipHash-keyed generator ([`rng`]). Anything else is counted in
//! [`Stats`] and ignored: the real answer can still arrive.
//!
//! # Bounds
//!
//! At most [`MAX_NAMES`] names (more are refused by `want`, and stay
//! pending: fail closed), [`MAX_SERVERS`] servers, [`MAX_OUTSTANDING`]
//! queries in flight (further lookups wait their turn). Memory is
//! O(names × 32 addresses); no work depends on what the network sends
//! beyond one bounded parse per response.
//!
//! When the servers change (another netvm) every name is asked again
//! through the new ones (keeping current addresses meanwhile), and
//! queries in flight to the old ones are re-sent.

pub mod rng;

use alloc::vec::Vec;
use core::net::IpAddr;
use core::ops::RangeInclusive;

use rules::HostName;

use super::dns::{self, build_query, parse_response, Name, QType, Response};
use rng::Rng;

/// Most names resolved at once.
pub const MAX_NAMES: usize = 256;
/// Most queries in flight at once.
pub const MAX_OUTSTANDING: usize = 32;
/// Most DNS servers used (Qubes gives two).
pub const MAX_SERVERS: usize = 4;
/// How long one attempt waits for its answer.
pub const TIMEOUT_NS: u64 = 2 * SECOND;
/// Attempts per lookup and round (with two servers: two each).
pub const MAX_ATTEMPTS: u8 = 4;
/// Shortest refresh interval, seconds: bounds the query rate a zero TTL
/// would cause.
pub const MIN_TTL: u32 = 30;
/// Longest refresh interval, seconds: a day, so a changed address is
/// picked up eventually even under huge TTLs.
pub const MAX_TTL: u32 = 86_400;
/// Longest wait before asking a name that did not exist again, seconds:
/// a host created later is picked up within five minutes.
pub const MAX_NEGATIVE_TTL: u32 = 300;
/// Wait before a new round after one that failed (timeouts, server
/// failures), seconds.
pub const RETRY_AFTER_FAILURE: u32 = 30;
/// How long past their expiry addresses are kept while refreshes fail.
pub const MAX_STALE_NS: u64 = 3600 * SECOND;
/// Source ports of queries (the IANA dynamic range). The engine's NAT
/// should not hand these out on the uplink address, or check
/// [`Resolver::owns_port`] first.
pub const PORT_RANGE: RangeInclusive<u16> = 49152..=65535;

const SECOND: u64 = 1_000_000_000;

/// A query to send: the DNS message is the first `len` bytes of the
/// buffer given to [`Resolver::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// The DNS server to send it to (port 53).
    pub server: IpAddr,
    /// The UDP source port to send it from (on the uplink address).
    pub src_port: u16,
    /// The message length.
    pub len: usize,
}

/// A change the engine must apply to every rule set naming `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// `name` has these addresses (both families; sorted, no duplicates,
    /// never empty): `RuleSet::set_resolved`.
    Resolved {
        /// The host.
        name: HostName,
        /// Its addresses.
        addrs: Vec<IpAddr>,
        /// Seconds until the next refresh (the TTL, clamped).
        ttl: u32,
    },
    /// `name` has no address, or could not be resolved:
    /// `RuleSet::set_failed`.
    Failed {
        /// The host.
        name: HostName,
    },
}

/// What the resolver currently believes about a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<'a> {
    /// No round has finished yet.
    Pending,
    /// These addresses (sorted, no duplicates, never empty).
    Resolved(&'a [IpAddr]),
    /// No address.
    Failed,
}

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queries emitted.
    pub queries: u64,
    /// Well-formed answers accepted (positive or negative).
    pub answers: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
    /// Matched answers that were unusable (server failure, TC, malformed).
    pub bad_answers: u64,
    /// Responses to a port with no query in flight.
    pub unknown_port: u64,
    /// Responses to a query's port from another address or port than the
    /// server it was sent to.
    pub wrong_source: u64,
    /// Responses from the right server and port that do not answer the
    /// query (id, question, not a response, ...).
    pub mismatched: u64,
}

/// One lookup (one type for one name) within a round.
#[derive(Clone, Debug)]
struct Lookup {
    qtype: QType,
    /// Attempts made this round.
    attempts: u8,
    state: LookupState,
}

#[derive(Clone, Debug)]
enum LookupState {
    /// To be sent as soon as possible (since `at`).
    Due {
        at: u64,
    },
    /// Sent; expecting the answer until `deadline`.
    InFlight {
        id: u16,
        port: u16,
        server: IpAddr,
        deadline: u64,
    },
    Done(Outcome),
}

#[derive(Clone, Debug)]
enum Outcome {
    Addrs { addrs: Vec<IpAddr>, ttl: u32 },
    Negative { nxdomain: bool, ttl: Option<u32> },
    Failed,
}

/// What is known about a name, as the engine was told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Pending,
    Resolved,
    Failed,
}

/// One wanted name.
///
/// Invariants: `addrs` is non-empty, sorted and de-duplicated exactly when
/// `known == Resolved`; `round` is `None` exactly between rounds, when
/// `refresh_at` says when the next starts; `host` passes [`Name::parse`].
#[derive(Clone, Debug)]
struct Entry {
    host: HostName,
    known: Known,
    addrs: Vec<IpAddr>,
    /// Seconds of the last round's refresh interval.
    ttl: u32,
    /// When `addrs` expire (they are kept `MAX_STALE_NS` longer while
    /// refreshes fail).
    expires: u64,
    refresh_at: u64,
    round: Option<[Lookup; 2]>,
    /// The engine has not been told the current state yet.
    dirty: bool,
}

impl Entry {
    fn update(&self) -> Update {
        match self.known {
            Known::Resolved => Update::Resolved {
                name: self.host.clone(),
                addrs: self.addrs.clone(),
                ttl: self.ttl,
            },
            Known::Pending | Known::Failed => Update::Failed {
                name: self.host.clone(),
            },
        }
    }

    /// Sets what is known, marking the entry dirty if that changes it.
    fn settle(&mut self, known: Known, addrs: Vec<IpAddr>) {
        if known != self.known || addrs != self.addrs {
            self.known = known;
            self.addrs = addrs;
            self.dirty = true;
        }
    }

    /// Ends the round if both lookups are done (see the module
    /// documentation for how outcomes combine).
    fn finish_round(&mut self, now: u64) {
        let Some(round) = &self.round else {
            return;
        };
        let mut addrs = Vec::new();
        let mut positive_ttl = u32::MAX;
        // Only negative answers with an SOA state how long they hold.
        let mut soa_ttl: Option<u32> = None;
        let (mut negatives, mut nxdomain, mut failed) = (0, false, false);
        for lookup in round {
            match &lookup.state {
                LookupState::Done(Outcome::Addrs { addrs: a, ttl }) => {
                    addrs.extend_from_slice(a);
                    positive_ttl = positive_ttl.min(*ttl);
                }
                LookupState::Done(Outcome::Negative { nxdomain: nx, ttl }) => {
                    negatives += 1;
                    nxdomain |= *nx;
                    if let Some(t) = *ttl {
                        soa_ttl = Some(soa_ttl.map_or(t, |s| s.min(t)));
                    }
                }
                LookupState::Done(Outcome::Failed) => failed = true,
                LookupState::Due { .. } | LookupState::InFlight { .. } => return,
            }
        }
        self.round = None;
        let secs = if !addrs.is_empty() {
            addrs.sort_unstable();
            addrs.dedup();
            let ttl = soa_ttl.map_or(positive_ttl, |s| s.min(positive_ttl));
            let mut secs = ttl.clamp(MIN_TTL, MAX_TTL);
            if failed {
                secs = secs.min(RETRY_AFTER_FAILURE);
            }
            self.settle(Known::Resolved, addrs);
            self.ttl = secs;
            self.expires = now.saturating_add(u64::from(secs) * SECOND);
            secs
        } else if nxdomain || negatives == 2 {
            self.settle(Known::Failed, Vec::new());
            soa_ttl.unwrap_or(MIN_TTL).clamp(MIN_TTL, MAX_NEGATIVE_TTL)
        } else {
            let stale_until = self.expires.saturating_add(MAX_STALE_NS);
            if self.known != Known::Resolved || now >= stale_until {
                self.settle(Known::Failed, Vec::new());
            }
            RETRY_AFTER_FAILURE
        };
        self.refresh_at = now.saturating_add(u64::from(secs) * SECOND);
    }
}

/// The resolver. See the module documentation.
#[derive(Debug)]
pub struct Resolver {
    rng: Rng,
    servers: Vec<IpAddr>,
    entries: Vec<Entry>,
    /// Where the next `poll` starts looking, for fairness under the
    /// outstanding limit.
    cursor: usize,
    stats: Stats,
}

impl Resolver {
    /// A resolver with no servers and no names; `seed` keys the generator
    /// of query ids and ports and must be unpredictable (see [`rng`]).
    pub fn new(seed: u64) -> Resolver {
        Resolver {
            rng: Rng::new(seed),
            servers: Vec::new(),
            entries: Vec::new(),
            cursor: 0,
            stats: Stats::default(),
        }
    }

    /// Folds more entropy into the id and port generator.
    pub fn add_entropy(&mut self, extra: u64) {
        self.rng.add_entropy(extra);
    }

    /// Uses these DNS servers (in order of preference; duplicates dropped,
    /// at most [`MAX_SERVERS`]). A change re-sends the queries in flight
    /// and starts a new round for every name (keeping what is known
    /// until it answers); the same list again changes nothing.
    pub fn set_servers(&mut self, servers: &[IpAddr]) {
        let mut list: Vec<IpAddr> = Vec::new();
        for s in servers {
            if !list.contains(s) && list.len() < MAX_SERVERS {
                list.push(*s);
            }
        }
        if list == self.servers {
            return;
        }
        self.servers = list;
        for entry in &mut self.entries {
            match &mut entry.round {
                Some(round) => {
                    for lookup in round {
                        if let LookupState::InFlight { .. } = lookup.state {
                            lookup.state = LookupState::Due { at: 0 };
                        }
                    }
                }
                None => entry.refresh_at = 0,
            }
        }
    }

    /// The servers in use.
    pub fn servers(&self) -> &[IpAddr] {
        &self.servers
    }

    /// Adds names to resolve (already wanted ones are left alone; IPv4
    /// literals, which rule sets settle themselves, are skipped). Returns
    /// how many could not be added because [`MAX_NAMES`] are wanted
    /// already: those stay pending in the rule sets (dropped silently).
    pub fn want<'a>(&mut self, names: impl IntoIterator<Item = &'a HostName>) -> usize {
        let mut refused = 0;
        for host in names {
            if host.as_literal().is_some() || self.index(host.as_str()).is_some() {
                continue;
            }
            if self.entries.len() >= MAX_NAMES || Name::parse(host.as_str()).is_err() {
                refused += 1;
                continue;
            }
            self.entries.push(Entry {
                host: host.clone(),
                known: Known::Pending,
                addrs: Vec::new(),
                ttl: 0,
                expires: 0,
                refresh_at: 0,
                round: None,
                dirty: false,
            });
        }
        refused
    }

    /// Stops resolving `name` (no rule set uses it any more); answers to
    /// its queries in flight will be ignored. Returns whether it was
    /// wanted.
    pub fn forget(&mut self, name: &str) -> bool {
        match self.index(name) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether `name` is wanted.
    pub fn is_wanted(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// How many names are wanted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no name is wanted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What is known about `name`, if it is wanted.
    pub fn status(&self, name: &str) -> Option<Status<'_>> {
        let e = &self.entries[self.index(name)?];
        Some(match e.known {
            Known::Pending => Status::Pending,
            Known::Resolved => Status::Resolved(&e.addrs),
            Known::Failed => Status::Failed,
        })
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a query is in flight from `port`, i.e. whether UDP to the
    /// uplink address at `port` is the resolver's.
    pub fn owns_port(&self, port: u16) -> bool {
        self.in_flight().any(|(_, _, p, _)| p == port)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.host.as_str() == name)
    }

    /// `(entry, lookup, port, server)` of every query in flight.
    fn in_flight(&self) -> impl Iterator<Item = (usize, usize, u16, IpAddr)> + '_ {
        self.entries.iter().enumerate().flat_map(|(i, e)| {
            e.round.iter().flat_map(move |round| {
                round
                    .iter()
                    .enumerate()
                    .filter_map(move |(j, l)| match l.state {
                        LookupState::InFlight { port, server, .. } => Some((i, j, port, server)),
                        _ => None,
                    })
            })
        })
    }

    /// Runs the timers due at `now`: rounds to start, attempts that timed
    /// out, addresses too stale to keep.
    fn advance(&mut self, now: u64) {
        for entry in &mut self.entries {
            if entry.round.is_none() && now >= entry.refresh_at {
                entry.round = Some(QType::ALL.map(|qtype| Lookup {
                    qtype,
                    attempts: 0,
                    state: LookupState::Due { at: now },
                }));
            }
            if let Some(round) = &mut entry.round {
                let mut timed_out = false;
                for lookup in round.iter_mut() {
                    if let LookupState::InFlight { deadline, .. } = lookup.state {
                        if now >= deadline {
                            self.stats.timeouts += 1;
                            timed_out = true;
                            lookup.state = next_attempt(lookup.attempts, now);
                        }
                    }
                }
                if timed_out {
                    entry.finish_round(now);
                }
            }
            if entry.known == Known::Resolved && now >= entry.expires.saturating_add(MAX_STALE_NS) {
                entry.settle(Known::Failed, Vec::new());
            }
        }
    }

    /// The next query to send at `now`, written into `buf` (which should
    /// hold [`dns::MAX_QUERY_LEN`] bytes; if it cannot hold the query,
    /// nothing is sent and `None` returned). Call until `None`, then drain
    /// [`Resolver::take_update`].
    pub fn poll(&mut self, now: u64, buf: &mut [u8]) -> Option<Query> {
        self.advance(now);
        if self.servers.is_empty() || self.in_flight().count() >= MAX_OUTSTANDING {
            return None;
        }
        let n = self.entries.len();
        let (i, j) = (0..n).find_map(|k| {
            let i = (self.cursor + k) % n;
            let round = self.entries[i].round.as_ref()?;
            let j = round
                .iter()
                .position(|l| matches!(l.state, LookupState::Due { at } if at <= now))?;
            Some((i, j))
        })?;
        let port = self.fresh_port();
        let id = self.rng.next_u16();
        let servers = self.servers.len();
        let entry = &mut self.entries[i];
        let lookup = &mut entry.round.as_mut()?[j];
        let server = self.servers[usize::from(lookup.attempts) % servers];
        let name = Name::parse(entry.host.as_str()).ok()?;
        let len = build_query(buf, id, &name, lookup.qtype).ok()?;
        lookup.attempts += 1;
        lookup.state = LookupState::InFlight {
            id,
            port,
            server,
            deadline: now.saturating_add(TIMEOUT_NS),
        };
        self.cursor = (i + 1) % n;
        self.stats.queries += 1;
        Some(Query {
            server,
            src_port: port,
            len,
        })
    }

    /// A random port in [`PORT_RANGE`] no query in flight uses.
    fn fresh_port(&mut self) -> u16 {
        let (lo, hi) = (*PORT_RANGE.start(), *PORT_RANGE.end());
        let mut port = self.rng.in_range(lo, hi);
        // At most MAX_OUTSTANDING ports are taken out of 16384, so this
        // ends within MAX_OUTSTANDING + 1 steps.
        while self.owns_port(port) {
            port = if port == hi { lo } else { port + 1 };
        }
        port
    }

    /// Reads a UDP payload from `src`:`src_port` to the uplink address at
    /// `dst_port`. Returns the update it settles, if any. Anything that is
    /// not the answer to a query in flight is counted and ignored.
    pub fn handle_response(
        &mut self,
        src: IpAddr,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
        now: u64,
    ) -> Option<Update> {
        let Some((i, j, _, server)) = self.in_flight().find(|&(_, _, p, _)| p == dst_port) else {
            self.stats.unknown_port += 1;
            return None;
        };
        if src != server || src_port != dns::PORT {
            self.stats.wrong_source += 1;
            return None;
        }
        let entry = &mut self.entries[i];
        let name = Name::parse(entry.host.as_str()).ok()?;
        let lookup = &mut entry.round.as_mut()?[j];
        let LookupState::InFlight { id, .. } = lookup.state else {
            return None;
        };
        match parse_response(payload, id, &name, lookup.qtype) {
            Err(e) if e.is_unmatched() => {
                self.stats.mismatched += 1;
                return None;
            }
            Err(_) => {
                self.stats.bad_answers += 1;
                lookup.state = next_attempt(lookup.attempts, now);
            }
            Ok(response) => {
                self.stats.answers += 1;
                lookup.state = LookupState::Done(match response {
                    Response::Addresses(a) => Outcome::Addrs {
                        addrs: a.addrs().to_vec(),
                        ttl: a.ttl(),
                    },
                    Response::NxDomain { negative_ttl } => Outcome::Negative {
                        nxdomain: true,
                        ttl: negative_ttl,
                    },
                    Response::NoData { negative_ttl } => Outcome::Negative {
                        nxdomain: false,
                        ttl: negative_ttl,
                    },
                });
            }
        }
        entry.finish_round(now);
        if entry.dirty {
            entry.dirty = false;
            return Some(entry.update());
        }
        None
    }

    /// The next update not yet handed out (from timeouts, failed rounds,
    /// stale addresses dropped), each name's latest state once.
    pub fn take_update(&mut self) -> Option<Update> {
        let entry = self.entries.iter_mut().find(|e| e.dirty)?;
        entry.dirty = false;
        Some(entry.update())
    }

    /// When `poll` next has something to do: `Some(t)` with `t <= now`
    /// means at once (including: an update waits in `take_update`);
    /// `None`: nothing until a call changes the state.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.entries.iter().any(|e| e.dirty) {
            return Some(0);
        }
        let can_send = !self.servers.is_empty() && self.in_flight().count() < MAX_OUTSTANDING;
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        for e in &self.entries {
            match &e.round {
                None if !self.servers.is_empty() => at(e.refresh_at),
                None => {}
                Some(round) => {
                    for l in round {
                        match l.state {
                            LookupState::InFlight { deadline, .. } => at(deadline),
                            LookupState::Due { at: t } if can_send => at(t),
                            _ => {}
                        }
                    }
                }
            }
            if e.known == Known::Resolved {
                at(e.expires.saturating_add(MAX_STALE_NS));
            }
        }
        next
    }
}

/// The state after an attempt that failed (`attempts` made so far): due
/// again now, or the lookup failed if that was the last.
fn next_attempt(attempts: u8, now: u64) -> LookupState {
    if attempts >= MAX_ATTEMPTS {
        LookupState::Done(Outcome::Failed)
    } else {
        LookupState::Due { at: now }
    }
}

#[cfg(test)]
mod tests;
