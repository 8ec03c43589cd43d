//! `hostfw`: the firewall engine between Linux TAP devices.
//!
//! ```text
//! hostfw [options] CONFIG
//!   --check            parse CONFIG (and every client's rules), print a summary, exit
//!   --attach           use existing TAP devices only (never create one)
//!   --ready-file PATH  write our pid to PATH once every TAP is open
//!   --batch N          frames read from one TAP per turn (default 64)
//!   --pool-pages N     4 KiB pages in the packet pool (default 8192)
//!   --stats SECS       log the counters every SECS seconds
//!   -v, -q             more (debug) or less (warnings only) logging
//! ```
//!
//! See `docs/hostfw.md`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use firewall::hostfw::{self, Options};

struct Logger(log::LevelFilter);

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(
                e,
                "hostfw: {}: {}",
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn usage() -> ExitCode {
    eprintln!("usage: hostfw [--check] [--attach] [--ready-file PATH] [--batch N] [--pool-pages N] [--stats SECS] [-v|-q] CONFIG");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut check = false;
    let mut level = log::LevelFilter::Info;
    let mut config = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Option<u64> {
            let v = args.next()?;
            match v.parse() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    eprintln!("hostfw: {what} wants a positive number, got {v:?}");
                    None
                }
            }
        };
        match a.as_str() {
            "--check" => check = true,
            "--attach" => opts.attach = true,
            "--ready-file" => match args.next() {
                Some(p) => opts.ready_file = Some(PathBuf::from(p)),
                None => return usage(),
            },
            "--batch" => match num("--batch") {
                Some(n) => opts.batch = n as usize,
                None => return usage(),
            },
            "--pool-pages" => match num("--pool-pages") {
                Some(n) if n <= 65535 => opts.pool_pages = n as usize,
                _ => return usage(),
            },
            "--stats" => match num("--stats") {
                Some(n) => opts.stats_every = Some(Duration::from_secs(n)),
                None => return usage(),
            },
            "-v" => level = log::LevelFilter::Debug,
            "-q" => level = log::LevelFilter::Warn,
            "-h" | "--help" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => {
                eprintln!("hostfw: unknown option {s}");
                return usage();
            }
            s => {
                if config.replace(PathBuf::from(s)).is_some() {
                    return usage();
                }
            }
        }
    }
    let Some(config) = config else {
        return usage();
    };
    opts.config = config;
    log::set_max_level(level);
    let _ = log::set_logger(Box::leak(Box::new(Logger(level))));

    if check {
        let cfg = match hostfw::load_config(&opts.config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("hostfw: {e}");
                return ExitCode::FAILURE;
            }
        };
        for w in &cfg.warnings {
            eprintln!("hostfw: warning: {w}");
        }
        let mut bad = false;
        println!(
            "uplink {} ip {} gateway {} dns {:?}",
            cfg.uplink.tap, cfg.uplink.ip, cfg.uplink.gateway, cfg.uplink.dns
        );
        for c in &cfg.clients {
            match cfg.rule_set(IpAddr::V4(c.ip)) {
                Ok(r) => println!(
                    "client {} tap {} ip {}: {} rules",
                    c.name,
                    c.tap,
                    c.ip,
                    r.len()
                ),
                Err(e) => {
                    eprintln!("hostfw: {e}");
                    bad = true;
                }
            }
        }
        return if bad {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    match hostfw::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostfw: error: {e}");
            ExitCode::FAILURE
        }
    }
}
