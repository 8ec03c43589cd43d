//! `qubesdb-dom0`: dom0's QubesDB service for one VM on the real-Xen test
//! bed, playing `qubesdb-daemon <xid> <name>`.
//!
//! ```text
//! qubesdb-dom0 DOMID CONFIG [--control FIFO] [--state FILE]
//! ```
//!
//! - Serves the VM's database over a vchan on port 111, dom0 being the
//!   server, at `/local/domain/0/data/vchan/<DOMID>/111`, rings of 4096
//!   bytes each way, exactly as `libvchan_server_init(xid, 111, 4096,
//!   4096)` in dom0's daemon. The protocol side is the `qubesdb` crate's
//!   daemon model ([`qubesdb::Daemon`]): the dump in reverse order on the
//!   VM's one MULTIREAD, then every change pushed as WRITE/RM.
//! - The database comes from CONFIG (format: [`config`]). On SIGHUP, or a
//!   `reload` line on the control FIFO, the file is read again and the
//!   difference is applied as dom0's tools would (rules: RM the subtree,
//!   `policy`, numbered rules, the empty commit write).
//! - Control FIFO commands (one per line): `reload`, `reload-all` (every
//!   client's rules re-committed even if unchanged), `write KEY [VALUE]`,
//!   `rm PATH`, `status`, `quit`.
//! - `--state FILE`: after every change (ours or the VM's), the whole
//!   database is written there as `KEY = VALUE` lines (atomically), so a
//!   test can wait for what the VM wrote, e.g. `/qubes-firewall-handled/<ip>`.
//! - Log lines go to stderr, prefixed `qubesdb-dom0:`; what the VM writes
//!   is logged as `vm wrote KEY = VALUE`.
//! - When the VM closes the vchan or breaks the protocol, the vchan is
//!   served anew (the database is kept), as dom0's daemon does.

mod config;
mod xenvchan;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use qubesdb::{Daemon, RING_SIZE, VCHAN_PORT};

use config::{apply, Config};
use xenvchan::ServerVchan;

static HUP: AtomicBool = AtomicBool::new(false);
static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::SeqCst);
}

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

struct Logger(Instant);

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let t = self.0.elapsed().as_secs_f64();
            eprintln!("qubesdb-dom0: [{t:8.3}] {} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

struct Args {
    domid: u16,
    config: String,
    control: Option<String>,
    state: Option<String>,
}

fn usage() -> ! {
    eprintln!("usage: qubesdb-dom0 DOMID CONFIG [--control FIFO] [--state FILE]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut pos = Vec::new();
    let (mut control, mut state) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--control" => control = Some(it.next().unwrap_or_else(|| usage())),
            "--state" => state = Some(it.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ if a.starts_with('-') => usage(),
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        usage();
    }
    let domid = pos[0].parse().unwrap_or_else(|_| usage());
    Args {
        domid,
        config: pos[1].clone(),
        control,
        state,
    }
}

/// The service's state.
struct Service {
    args: Args,
    daemon: Daemon,
    config: Config,
    /// The database as last seen, to tell what the VM wrote.
    seen: BTreeMap<String, Vec<u8>>,
}

fn load(path: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Config::parse(&text).map_err(|e| format!("{path}: {e}"))
}

impl Service {
    fn reload(&mut self, force: bool) {
        let new = match load(&self.args.config) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload: {e}; database unchanged");
                return;
            }
        };
        match apply(&mut self.daemon, &self.config, &new, force) {
            Ok(done) if done.is_empty() => log::info!("reload: no change"),
            Ok(done) => log::info!("reload: {done}"),
            Err(e) => log::error!("reload: {e} (applied in part)"),
        }
        self.config = new;
        self.after_change(false);
    }

    /// Log what the VM changed (`vm`) and write the state file.
    fn after_change(&mut self, vm: bool) {
        let now: BTreeMap<String, Vec<u8>> = self
            .daemon
            .db()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect();
        if now == self.seen {
            return;
        }
        if vm {
            for (k, v) in &now {
                if self.seen.get(k) != Some(v) {
                    log::info!("vm wrote {k} = {}", String::from_utf8_lossy(v));
                }
            }
        }
        self.seen = now;
        if let Some(path) = &self.args.state {
            let mut text = String::new();
            for (k, v) in &self.seen {
                text.push_str(&format!("{k} = {}\n", String::from_utf8_lossy(v)));
            }
            let tmp = format!("{path}.tmp");
            if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
                log::warn!("state file {path}: {e}");
            }
        }
    }

    fn command(&mut self, line: &str) -> bool {
        let line = line.trim();
        let (cmd, rest) = match line.split_once(char::is_whitespace) {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        match cmd {
            "" => {}
            "reload" => self.reload(false),
            "reload-all" => self.reload(true),
            "write" => {
                let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                match self.daemon.write(k, v.trim().as_bytes()) {
                    Ok(()) => log::info!("wrote {k}"),
                    Err(e) => log::error!("write {k}: {e}"),
                }
                self.after_change(false);
            }
            "rm" => {
                match self.daemon.rm(rest) {
                    Ok(true) => log::info!("removed {rest}"),
                    Ok(false) => log::info!("rm {rest}: nothing to remove"),
                    Err(e) => log::error!("rm {rest}: {e}"),
                }
                self.after_change(false);
            }
            "status" => self.status(),
            "quit" => return false,
            _ => log::warn!("unknown command {line:?}"),
        }
        true
    }

    fn status(&self) {
        log::info!(
            "status: synced {}, awaiting {} answers, {:?}, {} entries",
            self.daemon.is_synced(),
            self.daemon.pending_acks(),
            self.daemon.stats(),
            self.seen.len()
        );
    }
}

/// Open the control FIFO read-write, so it never reports end-of-file when
/// a writer goes away.
fn open_control(path: &str) -> io::Result<std::fs::File> {
    let c = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a valid C string; the fd returned is owned by the File.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn install_signals() {
    // SAFETY: the handlers only store to atomics (async-signal-safe); no
    // SA_RESTART, so poll() returns EINTR and the loop sees the flag.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_hup as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut());
        sa.sa_sigaction = on_term as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

fn serve(domid: u16) -> ServerVchan {
    let path = format!("/local/domain/0/data/vchan/{domid}/{VCHAN_PORT}");
    loop {
        match ServerVchan::new(domid, &path, RING_SIZE, RING_SIZE) {
            Ok(v) => {
                log::info!("serving dom{domid} at {path} (rings {RING_SIZE}/{RING_SIZE})");
                return v;
            }
            Err(e) => {
                log::error!("libxenvchan_server_init for dom{domid}: {e}; retrying in 1 s");
                if TERM.load(Ordering::SeqCst) {
                    std::process::exit(1);
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Move bytes both ways until neither moves. Err: the connection is over.
fn pump(svc: &mut Service, v: &mut ServerVchan) -> Result<(), String> {
    let mut buf = vec![0u8; RING_SIZE];
    loop {
        let mut moved = false;
        let n = v.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n > 0 {
            moved = true;
            let r = svc.daemon.receive(&buf[..n]);
            svc.after_change(true);
            r.map_err(|e| format!("protocol: {e}"))?;
        }
        let out = svc.daemon.output();
        if !out.is_empty() {
            let k = v.write(out).map_err(|e| format!("write: {e}"))?;
            if k > 0 {
                moved = true;
                svc.daemon.consume_output(k);
            }
        }
        if !moved {
            return Ok(());
        }
    }
}

fn main() {
    let _ = log::set_logger(Box::leak(Box::new(Logger(Instant::now()))));
    log::set_max_level(log::LevelFilter::Info);
    let args = parse_args();
    let config = load(&args.config).unwrap_or_else(|e| {
        log::error!("{e}");
        std::process::exit(1)
    });
    install_signals();
    let mut control = args.control.as_deref().map(|p| {
        open_control(p).unwrap_or_else(|e| {
            log::error!("control FIFO {p}: {e}");
            std::process::exit(1)
        })
    });
    let mut svc = Service {
        daemon: Daemon::new(),
        config: Config::default(),
        seen: BTreeMap::new(),
        args,
    };
    let first = std::mem::take(&mut svc.config);
    match apply(&mut svc.daemon, &first, &config, false) {
        Ok(done) => log::info!("database: {done}"),
        Err(e) => {
            log::error!("database: {e}");
            std::process::exit(1)
        }
    }
    svc.config = config;
    svc.after_change(false);
    let domid = svc.args.domid;
    let mut v = serve(domid);
    let mut was_synced = false;
    let mut pending = String::new();
    loop {
        if TERM.load(Ordering::SeqCst) {
            log::info!("terminated");
            break;
        }
        if HUP.swap(false, Ordering::SeqCst) {
            log::info!("SIGHUP: reloading {}", svc.args.config);
            svc.reload(false);
        }
        let over = match pump(&mut svc, &mut v) {
            Ok(()) if !v.is_open() => Some("the VM closed the vchan".to_string()),
            Ok(()) => None,
            Err(e) => Some(e),
        };
        if svc.daemon.is_synced() && !was_synced {
            log::info!("dom{domid} connected and synchronised (dump sent)");
            was_synced = true;
        }
        if let Some(why) = over {
            log::warn!("connection over: {why}; serving the vchan again");
            drop(v);
            svc.daemon.reconnect();
            was_synced = false;
            v = serve(domid);
            continue;
        }
        let mut fds = vec![libc::pollfd {
            fd: v.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(c) = &control {
            fds.push(libc::pollfd {
                fd: c.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if r < 0 {
            continue; // EINTR: a signal; the flags are checked above
        }
        if fds[0].revents != 0 {
            if let Err(e) = v.ack() {
                log::warn!("libxenvchan_wait: {e}");
            }
        }
        if let (Some(c), Some(p)) = (control.as_mut(), fds.get(1)) {
            if p.revents != 0 {
                let mut b = [0u8; 4096];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    pending.push_str(&String::from_utf8_lossy(&b[..n]));
                }
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    if !svc.command(&line) {
                        log::info!("quit");
                        let _ = io::stderr().flush();
                        return;
                    }
                }
            }
        }
    }
}
