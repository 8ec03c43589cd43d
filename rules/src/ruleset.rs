//! [`RuleSet`]: one client's rules (one address family), built from its
//! QubesDB entries, deciding on new flows.
//!
//! # Loading
//!
//! For a client `<ip>` dom0 writes `/qubes-firewall/<ip>/policy` and
//! `/qubes-firewall/<ip>/NNNN` (one rule line each), then commits with an
//! empty write to `/qubes-firewall/<ip>`. [`RuleSet::from_entries`] takes
//! the client and the entries under that directory (keys relative to it:
//! `policy`, `0000`, …) and:
//!
//! * sorts rules by number (QubesDB has no order; numbers can have gaps,
//!   because dom0 skips expired rules and rules of the other family without
//!   renumbering);
//! * requires `policy` (`accept` or `drop`; dom0 always writes `drop`) and
//!   applies it after the last rule;
//! * validates every line ([`Rule::parse`]) and that `dst4`/`dst6` fit the
//!   client's family;
//! * on any error returns a [`RuleError`] naming the client, the key and
//!   the field, and builds nothing: the caller then uses
//!   [`RuleSet::deny_all`] (or calls [`RuleSet::from_entries_or_deny_all`]),
//!   so the client fails closed. No partial rule set ever exists.
//!
//! # Deciding
//!
//! [`RuleSet::decide`] walks the rules in order; the first whose every
//! condition holds gives the verdict (`accept` → [`Verdict::Accept`],
//! `drop` → [`Verdict::Reject`]); if none holds, the policy does. It does
//! not allocate. The conditions, with the Linux (nftables) agent's
//! semantics:
//!
//! * `proto`: the IP protocol (`icmp` is ICMPv6 in an IPv6 set);
//! * `dst4`/`dst6`: destination in the network;
//! * `dstports`: TCP or UDP (only the given `proto` if any) with the
//!   destination port in the range;
//! * `icmptype`: ICMP (ICMPv6) of that type;
//! * `specialtarget=dns`: destination is one of the [`Context`]'s DNS
//!   servers, TCP or UDP (or the given `proto`) to port 53; a `dstports`
//!   other than exactly 53 makes the rule match nothing; with a
//!   destination, both must hold;
//! * `dsthost`: destination among the host's resolved addresses, see
//!   below.
//!
//! # `dsthost`: the resolution hook
//!
//! Resolving names is the firewall's job (it owns the DNS client). A new
//! rule set starts with every `dsthost` name [`HostState::Pending`]; the
//! firewall lists them with [`RuleSet::pending_hosts`], resolves each (A
//! and AAAA: the set keeps the addresses of its own family) and reports
//! back with [`RuleSet::set_resolved`] or [`RuleSet::set_failed`]. Until
//! then the set fails closed *for the flows whose fate depends on the
//! name*: a flow that reaches such a rule (no earlier rule matched it) and
//! meets all of the rule's other conditions is dropped
//! ([`Verdict::Drop`], silently, so the client's retry succeeds once the
//! name is known); if resolution failed it is rejected
//! ([`Verdict::Reject`]). Flows decided by earlier rules, or that the rule
//! could not match whatever the name resolves to, are decided normally.
//! So a pending or failed host can only turn a verdict into a block, never
//! into an accept.
//!
//! This is deliberately narrower than the Linux agent, which on a
//! resolution failure blocks *all* of the client's traffic, and which
//! resolves once when the rules are loaded. Like Linux, no re-resolution
//! happens on its own; the firewall may call `set_resolved` again to
//! refresh, and [`RuleSet::adopt_resolutions`] carries results over to a
//! reloaded set.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::net::IpAddr;

use ipnet::IpNet;

use crate::action::Action;
use crate::error::{RuleError, RuleErrorKind};
use crate::field::Field;
use crate::flow::{proto_number, Context, Decision, Flow, Reason, Verdict};
use crate::host::{HostName, HostState};
use crate::key::RuleKey;
use crate::rule::{Destination, PortRange, Proto, Rule, SpecialTarget};

/// One client's rules for one address family; see the module docs.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// `None` only for [`RuleSet::deny_all`].
    client: Option<IpAddr>,
    policy: Action,
    /// Sorted by key, keys distinct.
    entries: Vec<Entry>,
    /// Distinct `dsthost` names of the rules, in order of first use.
    hosts: Vec<Host>,
}

#[derive(Clone, Debug)]
struct Entry {
    key: RuleKey,
    rule: Rule,
    matcher: Matcher,
}

#[derive(Clone, Debug)]
struct Host {
    name: HostName,
    state: HostState,
}

/// A rule compiled for the set's family: every condition resolved to a
/// cheap test.
#[derive(Clone, Copy, Debug)]
struct Matcher {
    /// `specialtarget=dns` with a `dstports` other than 53: never matches.
    inert: bool,
    proto: ProtoMatch,
    ports: Option<PortRange>,
    icmp_type: Option<u8>,
    /// Destination must be one of the context's DNS servers.
    dns: bool,
    dst: DstMatch,
}

#[derive(Clone, Copy, Debug)]
enum ProtoMatch {
    Any,
    TcpOrUdp,
    Number(u8),
}

#[derive(Clone, Copy, Debug)]
enum DstMatch {
    Any,
    Net(IpNet),
    /// Index into `RuleSet::hosts`.
    Host(usize),
}

/// Result of testing one rule against a flow.
enum Outcome {
    No,
    Yes,
    Pending,
    Failed,
}

impl RuleSet {
    /// The fail-closed rule set: every flow is rejected
    /// ([`Verdict::Reject`], reason [`Reason::DenyAll`]), as the Linux
    /// agent's `[{'action': 'drop'}]` fallback does. Use it for a client
    /// whose rules failed to load, and for a client whose rules have not
    /// arrived yet.
    pub fn deny_all() -> RuleSet {
        RuleSet {
            client: None,
            policy: Action::Drop,
            entries: Vec::new(),
            hosts: Vec::new(),
        }
    }

    /// Builds the rule set of `client` (the `<ip>` of
    /// `/qubes-firewall/<ip>/`, IPv4 or IPv6) from the entries under that
    /// directory, as `(key, value)` with keys relative to it (`policy`,
    /// `0000`, `0001`, …; not the directory's own empty commit entry).
    /// Entry order does not matter. See the module docs for what is
    /// checked.
    pub fn from_entries(client: &str, entries: &[(&str, &str)]) -> Result<RuleSet, RuleError> {
        let client_addr: IpAddr = client
            .parse()
            .map_err(|_| RuleError::new(client, None, RuleErrorKind::BadClient))?;
        RuleSet::build(client, client_addr, entries)
    }

    /// [`RuleSet::from_entries`] for a client address already parsed (e.g.
    /// from the commit key).
    pub fn from_addr_entries(
        client: IpAddr,
        entries: &[(&str, &str)],
    ) -> Result<RuleSet, RuleError> {
        RuleSet::build(&client.to_string(), client, entries)
    }

    /// The checks and the build; `client` is the address as text, for
    /// errors.
    fn build(
        client: &str,
        client_addr: IpAddr,
        entries: &[(&str, &str)],
    ) -> Result<RuleSet, RuleError> {
        let err = |key: Option<&str>, kind| RuleError::new(client, key, kind);

        let mut policy = None;
        let mut lines: Vec<(RuleKey, &str, &str)> = Vec::with_capacity(entries.len());
        for &(key, value) in entries {
            if key == "policy" {
                if policy.is_some() {
                    return Err(err(Some(key), RuleErrorKind::DuplicateKey));
                }
                let action = Action::parse(value)
                    .map_err(|e| err(Some(key), RuleErrorKind::BadPolicy(e)))?;
                policy = Some(action);
            } else if let Some(number) = RuleKey::parse(key) {
                lines.push((number, key, value));
            } else {
                return Err(err(Some(key), RuleErrorKind::UnexpectedKey));
            }
        }
        let policy = policy.ok_or_else(|| err(Some("policy"), RuleErrorKind::MissingPolicy))?;

        // Stable sort; equal numbers can only come from the same key twice
        // (RuleKey::parse is one-to-one).
        lines.sort_by_key(|&(number, _, _)| number);
        if let Some(pair) = lines.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(err(Some(pair[1].1), RuleErrorKind::DuplicateKey));
        }

        let mut set = RuleSet {
            client: Some(client_addr),
            policy,
            entries: Vec::with_capacity(lines.len()),
            hosts: Vec::new(),
        };
        for (number, key, line) in lines {
            let rule = Rule::parse(line).map_err(|e| err(Some(key), RuleErrorKind::BadRule(e)))?;
            match (rule.family_field(), client_addr) {
                (Some(field @ Field::Dst6), IpAddr::V4(_))
                | (Some(field @ Field::Dst4), IpAddr::V6(_)) => {
                    return Err(err(Some(key), RuleErrorKind::WrongFamily { field }));
                }
                _ => {}
            }
            let matcher = set.compile(&rule);
            set.entries.push(Entry {
                key: number,
                rule,
                matcher,
            });
        }
        Ok(set)
    }

    /// [`RuleSet::from_entries`], falling back to [`RuleSet::deny_all`] on
    /// error (logged as a warning, and returned for the caller to report,
    /// e.g. in `/qubes-iptables-error`).
    pub fn from_entries_or_deny_all(
        client: &str,
        entries: &[(&str, &str)],
    ) -> (RuleSet, Option<RuleError>) {
        match RuleSet::from_entries(client, entries) {
            Ok(set) => (set, None),
            Err(e) => {
                log::warn!("{e}; blocking all traffic from this client");
                (RuleSet::deny_all(), Some(e))
            }
        }
    }

    /// Compiles `rule` for this set's family, registering its host.
    fn compile(&mut self, rule: &Rule) -> Matcher {
        let icmp = match self.client {
            Some(IpAddr::V6(_)) => proto_number::ICMPV6,
            _ => proto_number::ICMP,
        };
        let dns = rule.special_target() == Some(SpecialTarget::Dns);
        let mut ports = rule.dst_ports();
        let mut inert = false;
        if dns {
            // Linux: `if dstports not in ('53', None): continue`.
            match ports {
                None => ports = Some(PortRange::single(53)),
                Some(p) if p == PortRange::single(53) => {}
                Some(_) => inert = true,
            }
        }
        let proto = match rule.proto() {
            Some(Proto::Tcp) => ProtoMatch::Number(proto_number::TCP),
            Some(Proto::Udp) => ProtoMatch::Number(proto_number::UDP),
            Some(Proto::Icmp) => ProtoMatch::Number(icmp),
            // `tcp dport`/`udp dport` rules in Linux.
            None if ports.is_some() => ProtoMatch::TcpOrUdp,
            // `icmp type N` implies the ICMP protocol in nftables.
            None if rule.icmp_type().is_some() => ProtoMatch::Number(icmp),
            None => ProtoMatch::Any,
        };
        let dst = match rule.destination() {
            Destination::Any => DstMatch::Any,
            Destination::V4(net) => DstMatch::Net(IpNet::V4(*net)),
            Destination::V6(net) => DstMatch::Net(IpNet::V6(*net)),
            Destination::Host(name) => DstMatch::Host(self.host_index(name)),
        };
        Matcher {
            inert,
            proto,
            ports,
            icmp_type: rule.icmp_type(),
            dns,
            dst,
        }
    }

    /// Index of `name` in `hosts`, adding it if new (a dotted-quad
    /// literal starts out resolved to itself).
    fn host_index(&mut self, name: &HostName) -> usize {
        if let Some(i) = self.hosts.iter().position(|h| &h.name == name) {
            return i;
        }
        let mut host = Host {
            name: name.clone(),
            state: HostState::Pending,
        };
        if let Some(addr) = name.as_literal() {
            host.state = self.resolution(&[IpAddr::V4(addr)]);
        }
        self.hosts.push(host);
        self.hosts.len() - 1
    }

    /// The state for a resolution result: this family's addresses, sorted
    /// and distinct, or `Failed` if there are none.
    fn resolution(&self, addrs: &[IpAddr]) -> HostState {
        let v6 = matches!(self.client, Some(IpAddr::V6(_)));
        let mut own: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|a| a.is_ipv6() == v6)
            .collect();
        own.sort_unstable();
        own.dedup();
        if own.is_empty() {
            HostState::Failed
        } else {
            HostState::Resolved(own)
        }
    }

    /// The verdict for a new flow. First match wins; no allocation.
    pub fn decide(&self, flow: &Flow, ctx: &Context<'_>) -> Verdict {
        self.explain(flow, ctx).verdict
    }

    /// [`RuleSet::decide`] with the reason (which rule, or the policy).
    pub fn explain(&self, flow: &Flow, ctx: &Context<'_>) -> Decision {
        let Some(client) = self.client else {
            return Decision {
                verdict: Verdict::Reject,
                reason: Reason::DenyAll,
            };
        };
        if flow.src != client {
            return Decision {
                verdict: Verdict::Drop,
                reason: Reason::OtherSource,
            };
        }
        for entry in &self.entries {
            let (verdict, reason) = match self.test(&entry.matcher, flow, ctx) {
                Outcome::No => continue,
                Outcome::Yes => (verdict_of(entry.rule.action()), Reason::Rule(entry.key)),
                Outcome::Pending => (Verdict::Drop, Reason::HostPending(entry.key)),
                Outcome::Failed => (Verdict::Reject, Reason::HostFailed(entry.key)),
            };
            return Decision { verdict, reason };
        }
        Decision {
            verdict: verdict_of(self.policy),
            reason: Reason::Policy,
        }
    }

    /// Tests one compiled rule; the host lookup comes last so that a
    /// pending host only matters to flows that meet everything else.
    fn test(&self, m: &Matcher, flow: &Flow, ctx: &Context<'_>) -> Outcome {
        if m.inert {
            return Outcome::No;
        }
        let t = flow.transport;
        let proto_ok = match m.proto {
            ProtoMatch::Any => true,
            ProtoMatch::TcpOrUdp => matches!(t.protocol(), proto_number::TCP | proto_number::UDP),
            ProtoMatch::Number(n) => t.protocol() == n,
        };
        if !proto_ok {
            return Outcome::No;
        }
        if let Some(range) = m.ports {
            if !t.dst_port().is_some_and(|p| range.contains(p)) {
                return Outcome::No;
            }
        }
        if let Some(ty) = m.icmp_type {
            if t.icmp_type() != Some(ty) {
                return Outcome::No;
            }
        }
        if m.dns && !ctx.dns_servers().contains(&flow.dst) {
            return Outcome::No;
        }
        match m.dst {
            DstMatch::Any => Outcome::Yes,
            DstMatch::Net(net) if net.contains(&flow.dst) => Outcome::Yes,
            DstMatch::Net(_) => Outcome::No,
            DstMatch::Host(i) => match self.hosts.get(i).map(|h| &h.state) {
                Some(HostState::Resolved(addrs)) if addrs.binary_search(&flow.dst).is_ok() => {
                    Outcome::Yes
                }
                Some(HostState::Resolved(_)) => Outcome::No,
                Some(HostState::Pending) => Outcome::Pending,
                // `hosts` always has index i; fail closed regardless.
                Some(HostState::Failed) | None => Outcome::Failed,
            },
        }
    }

    /// The client this set is for; `None` for [`RuleSet::deny_all`].
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// The `policy`, applied when no rule matches.
    pub fn policy(&self) -> Action {
        self.policy
    }

    /// Whether this is [`RuleSet::deny_all`].
    pub fn is_deny_all(&self) -> bool {
        self.client.is_none()
    }

    /// The rules in the order they apply.
    pub fn rules(&self) -> impl Iterator<Item = (RuleKey, &Rule)> + '_ {
        self.entries.iter().map(|e| (e.key, &e.rule))
    }

    /// Number of rules (not counting the policy).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no rules (only the policy).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `other` has the same client, policy and rules (ignoring
    /// host resolution), e.g. to skip a reload whose rules did not change.
    pub fn same_rules(&self, other: &RuleSet) -> bool {
        self.client == other.client
            && self.policy == other.policy
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.key == b.key && a.rule == b.rule)
    }

    /// Every `dsthost` name the rules use (each once) and its state.
    pub fn hosts(&self) -> impl Iterator<Item = (&HostName, &HostState)> + '_ {
        self.hosts.iter().map(|h| (&h.name, &h.state))
    }

    /// The names still to resolve.
    pub fn pending_hosts(&self) -> impl Iterator<Item = &HostName> + '_ {
        self.hosts
            .iter()
            .filter(|h| h.state == HostState::Pending)
            .map(|h| &h.name)
    }

    /// Whether no name is pending (failed ones count as settled).
    pub fn is_resolved(&self) -> bool {
        self.pending_hosts().next().is_none()
    }

    /// The state of `host`, if the rules use it.
    pub fn host_state(&self, host: &str) -> Option<&HostState> {
        self.hosts
            .iter()
            .find(|h| h.name.as_str() == host)
            .map(|h| &h.state)
    }

    /// The resolution hook: `host` resolved to `addrs` (A and AAAA
    /// results together are fine: only this set's family is kept). With
    /// no address of the set's family the host counts as failed, as
    /// `getaddrinfo` for that family fails in the Linux agent. Replaces any
    /// earlier result. Returns whether the rules use `host`.
    pub fn set_resolved(&mut self, host: &str, addrs: &[IpAddr]) -> bool {
        let Some(i) = self.hosts.iter().position(|h| h.name.as_str() == host) else {
            return false;
        };
        let state = self.resolution(addrs);
        log::debug!("dsthost {host}: {state:?}");
        self.hosts[i].state = state;
        true
    }

    /// The resolution hook for a failure (NXDOMAIN, SERVFAIL, timeout):
    /// flows that depend on `host` are rejected from now on. Returns
    /// whether the rules use `host`.
    pub fn set_failed(&mut self, host: &str) -> bool {
        let Some(host) = self.hosts.iter_mut().find(|h| h.name.as_str() == host) else {
            return false;
        };
        host.state = HostState::Failed;
        true
    }

    /// Copies the settled state (resolved or failed) of every host that
    /// `old` also uses, e.g. after a reload, so the new set does not block
    /// while re-resolving. Only sets of the same client adopt anything.
    pub fn adopt_resolutions(&mut self, old: &RuleSet) {
        if self.client != old.client {
            return;
        }
        for host in &mut self.hosts {
            if let Some(state) = old.host_state(host.name.as_str()) {
                if *state != HostState::Pending {
                    host.state = state.clone();
                }
            }
        }
    }
}

fn verdict_of(action: Action) -> Verdict {
    match action {
        Action::Accept => Verdict::Accept,
        Action::Drop => Verdict::Reject,
    }
}

#[cfg(test)]
mod tests;
