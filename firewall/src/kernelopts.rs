//! The kernel command line: the options dom0 passes to the unikernel
//! (`qvm-prefs <fw> kernelopts '...'`), compatible with
//! qubes-mirage-firewall's.
//!
//! | option | meaning |
//! |---|---|
//! | `--ipv4=A.B.C.D[/N]` | our uplink address (instead of QubesDB `/qubes-ip`; a prefix length is accepted and not used: the uplink is point to point) |
//! | `--ipv4-gw=A.B.C.D` | the uplink gateway (instead of `/qubes-gateway`) |
//! | `--ipv4-dns=A.B.C.D` | primary DNS (instead of `/qubes-primary-dns`) |
//! | `--ipv4-dns2=A.B.C.D` | secondary DNS (instead of `/qubes-secondary-dns`) |
//! | `--nat-table-size=N` | flows the connection tracker holds (1 ..= [`MAX_NAT_TABLE_SIZE`]) |
//! | `-l SPEC`, `--logs=SPEC` | log levels, mirage style: `info`, `*:info,netback:debug`, ... (repeatable) |
//!
//! Each option takes its value as `--opt=value` or `--opt value` (and
//! `-lLEVEL` for the short one), and a long option may be shortened to an
//! unambiguous prefix, as cmdliner (mirage's parser) allows. An address
//! of `0.0.0.0` means "not set", as in mirage. An option given twice is an
//! error (except `--logs`, which accumulates), as with cmdliner.
//!
//! The command line is split into words as mirage-bootvar does: at
//! whitespace, with `"..."` quoting and `\` escaping the next character.
//!
//! Words without dashes: mirage up to version 3 (mirage-bootvar-xen) took
//! `key=value` words and made them `--key=value` (`-k=value` for a
//! one-letter key); we do the same for our own keys (`ipv4=10.0.0.2`,
//! `l=debug`). Any other word (`root=/dev/mapper/dmroot ro nomodeset
//! console=hvc0 ...`: what dom0 prepends unless the VM has the feature
//! `no-default-kernelopts`) is not ours: it is ignored with a warning,
//! where mirage 4 refuses to boot. An unknown *dashed* option (`--help`,
//! a typo) is an error, since it is in our namespace.
//!
//! Mirage's own runtime options (`--delay`, `--backtrace`,
//! `--randomize-hashtables` and the OCaml GC ones) mean nothing here; they
//! are accepted with a warning so that a mirage `kernelopts` boots
//! unchanged.
//!
//! Pure and allocation-light; runs once at boot. [`parse`] gives the
//! [`KernelOpts`]; [`KernelOpts::apply_to`] overrides QubesDB's network
//! keys, [`LogSpec`] answers the logger, and
//! `platform::FirewallConfig::apply` takes the rest.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use log::{Level, LevelFilter};
use qubesdb::NetConfig;

/// The largest `--nat-table-size` accepted. The flow table is preallocated
/// at start (`engine::Engine::memory_per_flow` bytes per flow), so the
/// kernel main should also check the value against its heap.
pub const MAX_NAT_TABLE_SIZE: usize = 1_000_000;

/// Mirage's default DNS servers, used when the address and gateway come
/// from the command line and neither it nor QubesDB names a DNS server.
pub const DEFAULT_DNS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 139, 1, 1), Ipv4Addr::new(10, 139, 1, 2)];

/// What the command line says (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelOpts {
    /// Network settings that override QubesDB's.
    pub net: NetOverride,
    /// `--nat-table-size`.
    pub nat_table_size: Option<usize>,
    /// `-l` / `--logs`.
    pub logs: LogSpec,
    /// Words and options that were accepted but ignored, for the console
    /// once logging is up.
    pub warnings: Vec<Warning>,
}

/// The uplink settings given on the command line; each one set replaces
/// the QubesDB key it names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOverride {
    /// `--ipv4`: our address (`/qubes-ip`).
    pub ip: Option<Ipv4Addr>,
    /// The prefix length given with `--ipv4`, if any (not used).
    pub prefix_len: Option<u8>,
    /// `--ipv4-gw`: the gateway (`/qubes-gateway`).
    pub gateway: Option<Ipv4Addr>,
    /// `--ipv4-dns` (`/qubes-primary-dns`).
    pub dns: Option<Ipv4Addr>,
    /// `--ipv4-dns2` (`/qubes-secondary-dns`).
    pub dns2: Option<Ipv4Addr>,
}

impl NetOverride {
    /// Whether any setting is given.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.gateway.is_none() && self.dns.is_none() && self.dns2.is_none()
    }
}

impl KernelOpts {
    /// Replace QubesDB's network keys in `net` by those given on the
    /// command line. When both the address and the gateway come from the
    /// command line (mirage's "no QubesDB" mode) and no DNS server is
    /// known from either source, mirage's defaults ([`DEFAULT_DNS`]) are
    /// used.
    pub fn apply_to(&self, net: &mut NetConfig) {
        self.net.apply_to(net);
    }
}

impl NetOverride {
    /// See [`KernelOpts::apply_to`].
    pub fn apply_to(&self, net: &mut NetConfig) {
        if let Some(ip) = self.ip {
            net.ip = Some(ip);
        }
        if let Some(gw) = self.gateway {
            net.gateway = Some(gw);
        }
        if let Some(d) = self.dns {
            net.primary_dns = Some(d);
        }
        if let Some(d) = self.dns2 {
            net.secondary_dns = Some(d);
        }
        if self.ip.is_some() && self.gateway.is_some() {
            if net.primary_dns.is_none() {
                net.primary_dns = Some(DEFAULT_DNS[0]);
            }
            if net.secondary_dns.is_none() {
                net.secondary_dns = Some(DEFAULT_DNS[1]);
            }
        }
    }
}

/// Something on the command line that was accepted but has no effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A word that is not one of our options (e.g. a Linux kernel
    /// parameter dom0 prepended).
    ForeignWord(String),
    /// A mirage runtime option that means nothing here.
    MirageOnly(String),
    /// A log source we do not have.
    UnknownLogSource(String),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ForeignWord(w) => write!(
                f,
                "kernel option {w:?}: not a firewall option, ignored (set the VM feature no-default-kernelopts to 1 to keep dom0's Linux options out)"
            ),
            Warning::MirageOnly(o) => {
                write!(f, "kernel option --{o}: a mirage runtime option, ignored")
            }
            Warning::UnknownLogSource(s) => write!(
                f,
                "kernel option --logs: no log source {s:?} (known: {}), ignored",
                SourceList
            ),
        }
    }
}

/// Why the command line was refused. Its `Display` is one console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOptsError {
    /// An unterminated `"` or a trailing `\`.
    Quoting,
    /// A dashed option we do not know (`--help` among them).
    Unknown(String),
    /// A prefix that matches several options.
    Ambiguous {
        /// What was written.
        given: String,
        /// The options it could be.
        candidates: Vec<&'static str>,
    },
    /// An option without its value.
    MissingValue(&'static str),
    /// An option given twice.
    Repeated(&'static str),
    /// A value that does not parse.
    BadValue {
        /// The option (`--ipv4-gw`).
        option: &'static str,
        /// The value as written.
        value: String,
        /// What was wrong with it.
        why: &'static str,
    },
}

impl fmt::Display for KernelOptsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelOptsError::Quoting => {
                write!(f, "kernel options: unterminated quote or trailing backslash")
            }
            KernelOptsError::Unknown(o) => write!(
                f,
                "kernel option {}: unknown option (the firewall takes --ipv4=A.B.C.D[/N], --ipv4-gw=A.B.C.D, --ipv4-dns=A.B.C.D, --ipv4-dns2=A.B.C.D, --nat-table-size=N, -l/--logs=LEVEL)",
                Shown(o)
            ),
            KernelOptsError::Ambiguous { given, candidates } => {
                write!(f, "kernel option {}: ambiguous, could be ", Shown(given))?;
                for (i, c) in candidates.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " or " };
                    write!(f, "{sep}--{c}")?;
                }
                Ok(())
            }
            KernelOptsError::MissingValue(o) => write!(f, "kernel option {}: needs a value", Dash(o)),
            KernelOptsError::Repeated(o) => {
                write!(f, "kernel option {}: given more than once", Dash(o))
            }
            KernelOptsError::BadValue { option, value, why } => {
                write!(f, "kernel option {}={}: {why}", Dash(option), Shown(value))
            }
        }
    }
}

/// Text from the command line, control characters escaped (a quoted
/// value may hold a newline), so that a message stays one line.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// An option name with its dashes.
struct Dash<'a>(&'a str);

impl fmt::Display for Dash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() == 1 {
            write!(f, "-{}", self.0)
        } else {
            write!(f, "--{}", self.0)
        }
    }
}

// ---- log levels ---------------------------------------------------------

/// Log sources a `--logs` spec may name, with the `log` target prefix each
/// one stands for. Mirage's `unikernel`, `qubes.db` and `qubes.rexec` are
/// accepted for the corresponding parts.
pub const LOG_SOURCES: &[(&str, &str)] = &[
    ("firewall", "firewall"),
    ("engine", "firewall::engine"),
    ("platform", "firewall::platform"),
    ("qrexec", "firewall::qrexec"),
    ("netback", "netback"),
    ("netfront", "netfront"),
    ("qubesdb", "qubesdb"),
    ("vchan", "vchan"),
    ("xen", "xen"),
    ("rules", "rules"),
    ("unikernel", "firewall"),
    ("qubes.db", "qubesdb"),
    ("qubes.rexec", "firewall::qrexec"),
];

struct SourceList;

impl fmt::Display for SourceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, _)) in LOG_SOURCES.iter().take(10).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name}")?;
        }
        Ok(())
    }
}

/// Log thresholds: a global one and per-source ones (see [`LOG_SOURCES`]).
/// Without any `--logs`, everything at `info`, as mirage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSpec {
    /// `LEVEL` or `*:LEVEL` (the last one given).
    pub global: Option<LevelFilter>,
    /// `SOURCE:LEVEL`, as `log` target prefixes, in the order given (a
    /// later one for the same prefix wins).
    pub sources: Vec<(&'static str, LevelFilter)>,
}

impl LogSpec {
    /// The global threshold (`info` if none given).
    pub fn global(&self) -> LevelFilter {
        self.global.unwrap_or(LevelFilter::Info)
    }

    /// The most verbose threshold anywhere: what `log::set_max_level`
    /// should get.
    pub fn max_level(&self) -> LevelFilter {
        self.sources
            .iter()
            .map(|(_, l)| *l)
            .fold(self.global(), core::cmp::max)
    }

    /// The threshold for a `log` target (module path): the longest source
    /// prefix that matches it at a `::` boundary, else the global one.
    pub fn threshold(&self, target: &str) -> LevelFilter {
        let mut best: Option<(usize, LevelFilter)> = None;
        for (prefix, level) in &self.sources {
            let hit = target == *prefix
                || (target.starts_with(prefix) && target[prefix.len()..].starts_with("::"));
            if hit && best.is_none_or(|(n, _)| prefix.len() >= n) {
                best = Some((prefix.len(), *level));
            }
        }
        best.map_or(self.global(), |(_, l)| l)
    }

    /// Whether a record of `level` from `target` is to be printed.
    pub fn enabled(&self, target: &str, level: Level) -> bool {
        level <= self.threshold(target)
    }

    /// Add one `--logs` value: comma-separated `LEVEL`, `*:LEVEL` or
    /// `SOURCE:LEVEL`.
    fn add(
        &mut self,
        option: &'static str,
        value: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), KernelOptsError> {
        let bad = |why| KernelOptsError::BadValue {
            option,
            value: value.to_string(),
            why,
        };
        if value.is_empty() {
            return Err(bad("no log level"));
        }
        for item in value.split(',') {
            let (source, level) = match item.rsplit_once(':') {
                Some((s, l)) => (Some(s), l),
                None => (None, item),
            };
            let level = parse_level(level).ok_or(bad(
                "not a log level (quiet, app, error, warning, info, debug)",
            ))?;
            match source {
                None | Some("*") => self.global = Some(level),
                Some("") => return Err(bad("empty log source")),
                Some(s) => match LOG_SOURCES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
                    Some((_, prefix)) => self.sources.push((prefix, level)),
                    None => warnings.push(Warning::UnknownLogSource(s.to_string())),
                },
            }
        }
        Ok(())
    }
}

/// A Logs level name (mirage's: `quiet`, `app`, `error`, `warning`,
/// `info`, `debug`), plus `off`, `warn` and `trace`. `app` (messages the
/// application always shows) has no equivalent: it maps to `error`.
fn parse_level(s: &str) -> Option<LevelFilter> {
    const LEVELS: &[(&str, LevelFilter)] = &[
        ("quiet", LevelFilter::Off),
        ("off", LevelFilter::Off),
        ("app", LevelFilter::Error),
        ("error", LevelFilter::Error),
        ("warning", LevelFilter::Warn),
        ("warn", LevelFilter::Warn),
        ("info", LevelFilter::Info),
        ("debug", LevelFilter::Debug),
        ("trace", LevelFilter::Trace),
    ];
    LEVELS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, l)| *l)
}

// ---- the option table ---------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Opt {
    Ipv4,
    Gw,
    Dns,
    Dns2,
    NatTableSize,
    Logs,
    /// A mirage runtime option we accept and ignore.
    Mirage,
}

/// Long options: name, meaning.
const LONG: &[(&str, Opt)] = &[
    ("ipv4", Opt::Ipv4),
    ("ipv4-gw", Opt::Gw),
    ("ipv4-dns", Opt::Dns),
    ("ipv4-dns2", Opt::Dns2),
    ("nat-table-size", Opt::NatTableSize),
    ("logs", Opt::Logs),
    ("delay", Opt::Mirage),
    ("backtrace", Opt::Mirage),
    ("randomize-hashtables", Opt::Mirage),
    ("allocation-policy", Opt::Mirage),
    ("minor-heap-size", Opt::Mirage),
    ("major-heap-increment", Opt::Mirage),
    ("space-overhead", Opt::Mirage),
    ("max-space-overhead", Opt::Mirage),
    ("gc-verbosity", Opt::Mirage),
    ("gc-window-size", Opt::Mirage),
    ("custom-major-ratio", Opt::Mirage),
    ("custom-minor-ratio", Opt::Mirage),
    ("custom-minor-max-size", Opt::Mirage),
];

/// The long option `name` stands for: exact, else an unambiguous prefix.
fn lookup_long(name: &str, given: &str) -> Result<(&'static str, Opt), KernelOptsError> {
    if let Some(&(n, o)) = LONG.iter().find(|(n, _)| *n == name) {
        return Ok((n, o));
    }
    let matches: Vec<&(&'static str, Opt)> = if name.is_empty() {
        Vec::new()
    } else {
        LONG.iter().filter(|(n, _)| n.starts_with(name)).collect()
    };
    match matches.as_slice() {
        [] => Err(KernelOptsError::Unknown(given.to_string())),
        [(n, o)] => Ok((n, *o)),
        many => Err(KernelOptsError::Ambiguous {
            given: given.to_string(),
            candidates: many.iter().map(|(n, _)| *n).collect(),
        }),
    }
}

// ---- parsing --------------------------------------------------------------

/// Split a command line into words (see the module doc).
pub fn split_words(cmdline: &str) -> Result<Vec<String>, KernelOptsError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = cmdline.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or(KernelOptsError::Quoting)?);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(core::mem::take(&mut cur));
                    in_word = false;
                }
            }
            // A NUL ends a C command line.
            '\0' if !quoted => break,
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(KernelOptsError::Quoting);
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parse the kernel command line (see the module doc).
pub fn parse(cmdline: &str) -> Result<KernelOpts, KernelOptsError> {
    let words = split_words(cmdline)?;
    let mut p = Parser::default();
    let mut i = 0;
    let mut positional = false;
    while i < words.len() {
        let w = words[i].as_str();
        i += 1;
        if positional {
            p.opts.warnings.push(Warning::ForeignWord(w.to_string()));
            continue;
        }
        if w == "--" {
            positional = true;
        } else if let Some(body) = w.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let (name, opt) = lookup_long(name, w)?;
            let value = match inline {
                Some(v) => v,
                None => take_value(&words, &mut i).ok_or(KernelOptsError::MissingValue(name))?,
            };
            p.set(name, opt, value)?;
        } else if let Some(body) = w.strip_prefix('-').filter(|b| !b.is_empty()) {
            let (flag, rest) = body.split_at(body.chars().next().map_or(0, char::len_utf8));
            if flag != "l" {
                return Err(KernelOptsError::Unknown(w.to_string()));
            }
            let value = if rest.is_empty() {
                take_value(&words, &mut i).ok_or(KernelOptsError::MissingValue("l"))?
            } else {
                rest.strip_prefix('=').unwrap_or(rest)
            };
            p.set("l", Opt::Logs, value)?;
        } else if let Some((key, value)) = w.split_once('=') {
            // mirage-bootvar-xen's `key=value` form, for our keys only.
            match key {
                "l" => p.set("l", Opt::Logs, value)?,
                _ => match LONG.iter().find(|(n, _)| *n == key) {
                    Some(&(n, o)) => p.set(n, o, value)?,
                    None => p.opts.warnings.push(Warning::ForeignWord(w.to_string())),
                },
            }
        } else {
            p.opts.warnings.push(Warning::ForeignWord(w.to_string()));
        }
    }
    Ok(p.opts)
}

/// The next word as an option's value, unless it looks like an option
/// (cmdliner's rule).
fn take_value<'a>(words: &'a [String], i: &mut usize) -> Option<&'a str> {
    let w = words.get(*i)?;
    if w.starts_with('-') && w.len() > 1 {
        return None;
    }
    *i += 1;
    Some(w)
}

#[derive(Default)]
struct Parser {
    opts: KernelOpts,
    seen: Vec<Opt>,
}

impl Parser {
    fn set(&mut self, name: &'static str, opt: Opt, value: &str) -> Result<(), KernelOptsError> {
        if opt == Opt::Mirage {
            self.opts
                .warnings
                .push(Warning::MirageOnly(name.to_string()));
            return Ok(());
        }
        if opt != Opt::Logs {
            if self.seen.contains(&opt) {
                return Err(KernelOptsError::Repeated(name));
            }
            self.seen.push(opt);
        }
        let bad = |why| KernelOptsError::BadValue {
            option: name,
            value: value.to_string(),
            why,
        };
        let net = &mut self.opts.net;
        match opt {
            Opt::Ipv4 => {
                let (addr, prefix) = match value.split_once('/') {
                    Some((a, p)) => {
                        let p = parse_decimal(p)
                            .filter(|p| *p <= 32)
                            .ok_or(bad("not a prefix length (0 to 32)"))?;
                        (a, Some(p as u8))
                    }
                    None => (value, None),
                };
                let ip = parse_ipv4(addr).ok_or(bad("not an IPv4 address"))?;
                net.ip = ip;
                net.prefix_len = prefix.filter(|_| ip.is_some());
            }
            Opt::Gw => net.gateway = parse_ipv4(value).ok_or(bad("not an IPv4 address"))?,
            Opt::Dns => net.dns = parse_ipv4(value).ok_or(bad("not an IPv4 address"))?,
            Opt::Dns2 => net.dns2 = parse_ipv4(value).ok_or(bad("not an IPv4 address"))?,
            Opt::NatTableSize => {
                let n = parse_decimal(value).ok_or(bad("not a number"))?;
                if n == 0 || n > MAX_NAT_TABLE_SIZE as u64 {
                    return Err(bad("out of range (1 to 1000000)"));
                }
                self.opts.nat_table_size = Some(n as usize);
            }
            Opt::Logs => self.opts.logs.add(name, value, &mut self.opts.warnings)?,
            Opt::Mirage => {}
        }
        Ok(())
    }
}

/// A dotted quad; `Some(None)` for `0.0.0.0` (mirage's "not set").
fn parse_ipv4(s: &str) -> Option<Option<Ipv4Addr>> {
    let ip: Ipv4Addr = s.parse().ok()?;
    Some(Some(ip).filter(|ip| !ip.is_unspecified()))
}

/// Plain decimal digits (a huge number saturates, to be out of range).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests;
