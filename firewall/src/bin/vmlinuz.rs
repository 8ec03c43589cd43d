//! The firewall unikernel (PVH). For now: the first boot on real Xen, which
//! checks what the simulator believes: console ring, event channels, grant
//! table, xenstore. It logs what it finds and powers off.

#![no_std]
#![no_main]

use xen::abi::sched::SHUTDOWN_POWEROFF;
use xen::console::Console;
use xen::evtchn::EventChannels;
use xen::gnttab::GrantTable;
use xen::pvh::{BootInfo, Pvh};
use xen::store::Xenstore;
use xen::HypervisorExt;

xen::pvh_main!(main);

fn main(boot: &'static BootInfo) -> ! {
    // `selftest=wx|nx|guard`: fault on purpose (tests/kernel/qemu-smoke.sh).
    // First, before anything needs Xen: without Xen main runs only for this.
    if let Some(test) = xen::pvh::selftest::from_cmdline(boot.cmdline()) {
        test();
    }
    let ev = EventChannels::new(Pvh).expect("event channels");
    let console = Console::from_params(ev.clone()).expect("console ring");
    xen::pvh::init_logging(console, log::LevelFilter::Info);
    log::info!(
        "mirage-firewall (rust) {} on Xen {}.{}",
        env!("CARGO_PKG_VERSION"),
        boot.xen_version.0,
        boot.xen_version.1
    );
    log::info!("command line: {:?}", boot.cmdline());
    log::info!(
        "heap: {:#x}..{:#x} ({} KiB)",
        boot.heap_start,
        boot.heap_end,
        (boot.heap_end - boot.heap_start) / 1024
    );
    match GrantTable::new(Pvh, 4) {
        Ok(gt) => log::info!(
            "grant table: {} entries, {} free",
            gt.capacity(),
            gt.free_count()
        ),
        Err(e) => log::error!("grant table: {e}"),
    }
    match Xenstore::from_params(ev.clone()) {
        Ok(mut xs) => {
            let name = xs.read_string("name");
            let domid = xs.domid();
            log::info!("xenstore: name {name:?}, domid {domid:?}");
            let vif = xs.directory("device/vif");
            log::info!("xenstore: device/vif {vif:?}");
            log::info!("FIRST-BOOT OK");
        }
        Err(e) => log::error!("xenstore: {e}"),
    }
    let _ = Pvh.shutdown(SHUTDOWN_POWEROFF);
    xen::pvh::cpu::halt()
}
