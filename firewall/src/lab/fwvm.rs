//! The firewall VM on the simulated host: [`Firewall`] running in a
//! [`SimDomain`]'s thread, exactly the code the unikernel runs, with a
//! handle that reads its counters while it runs and stops it.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xen::abi::DomId;
use xen::sim::{SimDomain, SimHost};

use crate::engine::{AddressMap, ClientStats, EngineStats};
use crate::platform::{Firewall, FirewallConfig, Stop, Tap};
use crate::qrexec::QrexecStats;

/// One client as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its counters.
    pub stats: ClientStats,
    /// Its flows in the table (NAT entries).
    pub flows: usize,
    /// Its `net.fake-ip` mapping.
    pub map: AddressMap,
}

/// The firewall's state, copied out of its thread.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Whether the uplink is connected.
    pub uplink_up: bool,
    /// Attached clients.
    pub clients: Vec<ClientRow>,
    /// Engine counters.
    pub engine: EngineStats,
    /// Flows in the table.
    pub flows: usize,
    /// Bytes per tracked flow.
    pub memory_per_flow: usize,
    /// Packet pool pages in use.
    pub pool_in_use: usize,
    /// Loop turns and sleeps.
    pub turns: u64,
    /// Sleeps.
    pub sleeps: u64,
    /// Set once start-up finished (QubesDB synced, drivers started).
    pub started: bool,
    /// The qrexec agent's counters.
    pub qrexec: QrexecStats,
    /// Whether dom0's qrexec daemon did its handshake.
    pub qrexec_ready: bool,
    /// The time dom0 last sent with `qubes.SetDateTime`.
    pub qrexec_time: Option<String>,
    /// Why the loop ended, once it did.
    pub stop: Option<Stop>,
}

impl Snapshot {
    /// The row of the client with this address.
    pub fn client(&self, ip: Ipv4Addr) -> Option<&ClientRow> {
        self.clients.iter().find(|c| c.ip == ip)
    }
}

/// A running firewall VM.
pub struct FirewallVm {
    domid: DomId,
    stop: Arc<AtomicBool>,
    snap: Arc<Mutex<Snapshot>>,
    thread: Option<JoinHandle<Result<Stop, String>>>,
}

fn snapshot<P: xen::Platform + Clone>(fw: &Firewall<P>, started: bool) -> Snapshot {
    let e = fw.engine();
    Snapshot {
        uplink_up: fw.uplink_up(),
        clients: fw
            .clients()
            .map(|(id, ip)| ClientRow {
                ip,
                stats: e.client_stats(id).unwrap_or_default(),
                flows: e.client_flows(id),
                map: e.address_map(id).unwrap_or_default(),
            })
            .collect(),
        engine: e.stats().clone(),
        flows: e.flow_count(),
        memory_per_flow: e.memory_per_flow(),
        pool_in_use: fw.pool().in_use(),
        turns: fw.turns,
        sleeps: fw.sleeps,
        started,
        qrexec: fw.qrexec().stats(),
        qrexec_ready: fw.qrexec().handshaken(),
        qrexec_time: fw.qrexec().last_time().map(String::from),
        stop: None,
    }
}

impl FirewallVm {
    /// Run the firewall in `dom` (whose QubesDB dom0 serves, and whose
    /// uplink vif the toolstack creates).
    pub fn start(
        host: &SimHost,
        dom: &SimDomain,
        cfg: FirewallConfig,
        tap: Option<Tap>,
    ) -> FirewallVm {
        let stop = Arc::new(AtomicBool::new(false));
        let snap = Arc::new(Mutex::new(Snapshot::default()));
        let (stop2, snap2) = (stop.clone(), snap.clone());
        let thread = host.spawn(dom, move |d| -> Result<Stop, String> {
            let me = d.clone();
            let mut fw = Firewall::start(d, cfg).map_err(|e| e.to_string())?;
            if let Some(t) = tap {
                fw.set_tap(t);
            }
            *snap2.lock().unwrap() = snapshot(&fw, true);
            // Copied after every turn, so a reader never sees a state
            // older than the last turn (turns come in batches: cheap).
            let why = fw.run(|fw| {
                *snap2.lock().unwrap() = snapshot(fw, true);
                stop2.load(Ordering::Relaxed)
            });
            let mut last = snapshot(&fw, true);
            last.stop = Some(why);
            *snap2.lock().unwrap() = last;
            // What the unikernel does next.
            if let Some(reason) = why.shutdown_reason() {
                let _ = xen::hypervisor::HypervisorExt::shutdown(&me, reason);
            }
            Ok(why)
        });
        FirewallVm {
            domid: dom.domid(),
            stop,
            snap,
            thread: Some(thread),
        }
    }

    /// The firewall's domain id.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The state after the firewall's latest turn.
    pub fn snapshot(&self) -> Snapshot {
        self.snap.lock().unwrap().clone()
    }

    /// Wait until `pred` holds for a snapshot, or `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Snapshot) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if pred(&self.snapshot()) {
                return true;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) || Instant::now() >= end {
                return pred(&self.snapshot());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait (up to `timeout`) for the firewall's loop to end by itself
    /// (a shutdown request from dom0): why, and its last snapshot.
    pub fn join(mut self, timeout: Duration) -> Result<(Stop, Snapshot), String> {
        let end = Instant::now() + timeout;
        while !self.ended() {
            if Instant::now() >= end {
                return Err("the firewall is still running".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(why))) => Ok((why, self.snapshot())),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err("firewall thread panicked".into()),
            None => Err("already joined".into()),
        }
    }

    /// Stop the firewall and return its last snapshot, or why it failed.
    pub fn stop(mut self) -> Result<Snapshot, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(_))) => Ok(self.snapshot()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err("firewall thread panicked".into()),
            None => Ok(self.snapshot()),
        }
    }

    /// Whether the firewall's thread ended (it failed, or was stopped).
    pub fn ended(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for FirewallVm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
