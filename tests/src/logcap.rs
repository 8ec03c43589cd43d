//! A `log` backend that keeps every record (with the name of the thread
//! that logged it: simulated domains run on threads named `d<id>-<name>`),
//! so tests can assert what a driver said about a misbehaving peer.

use std::sync::{Mutex, OnceLock};

/// One captured record.
#[derive(Clone, Debug)]
pub struct Record {
    /// The logging thread's name.
    pub thread: String,
    /// Level.
    pub level: log::Level,
    /// The formatted message.
    pub message: String,
}

struct Capture {
    records: Mutex<Vec<Record>>,
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let rec = Record {
            thread: std::thread::current().name().unwrap_or("?").to_string(),
            level: r.level(),
            message: r.args().to_string(),
        };
        if std::env::var_os("LOGCAP_ECHO").is_some() {
            eprintln!("[{} {}] {}", rec.thread, rec.level, rec.message);
        }
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a test that floods the log fails its count assertions
        // anyway; keep memory flat.
        if g.len() < 100_000 {
            g.push(rec);
        }
    }
    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

fn capture() -> &'static Capture {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture {
            records: Mutex::new(Vec::new()),
        }));
        if log::set_logger(c).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
        c
    })
}

/// Install the capture as the process's logger (idempotent).
pub fn install() {
    let _ = capture();
}

/// Records whose message contains `needle`, at warn level or worse.
pub fn warnings_containing(needle: &str) -> Vec<Record> {
    capture()
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| r.level <= log::Level::Warn && r.message.contains(needle))
        .cloned()
        .collect()
}

/// Every record so far (for failure messages).
pub fn all() -> Vec<Record> {
    capture()
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}
