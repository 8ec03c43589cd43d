//! `lab`: the firewall's code on a simulated Qubes host.
//!
//! For now it boots the simulated host (hypervisor, dom0 with xenstored and
//! the console backend) and runs the two-domain ring exchange that the
//! drivers will be built on, printing what it cost in hypercalls and
//! notifications per message.

use std::process::ExitCode;

use firewall::lab::pingpong;
use xen::sim::SimHost;

const MESSAGES: u64 = 200_000;

fn main() -> ExitCode {
    let host = match SimHost::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("lab: cannot start the simulated host: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("lab: simulated Xen host up (dom0 runs xenstored and the console backend)");
    println!("lab: two domains connect a shared ring through xenstore + grant + event channel");
    let r = match pingpong::run(&host, MESSAGES) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lab: exchange failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, out) in &r.consoles {
        for line in out.lines() {
            println!("  [{name} console] {}", line.trim_end());
        }
    }
    let per = |x: u64| x as f64 / r.messages as f64;
    println!();
    println!("messages exchanged        {:>12}", r.messages);
    println!(
        "elapsed                   {:>12.3} s",
        r.elapsed.as_secs_f64()
    );
    println!("messages per second       {:>12.0}", r.rate());
    println!(
        "                          {:>12} {:>12}",
        "frontend", "backend"
    );
    println!(
        "hypercalls per message    {:>12.4} {:>12.4}",
        per(r.front.hypercalls()),
        per(r.back.hypercalls())
    );
    println!(
        "notifications per message {:>12.4} {:>12.4}",
        per(r.front.notifications),
        per(r.back.notifications)
    );
    println!(
        "polls (sched_op) per msg  {:>12.4} {:>12.4}",
        per(r.front.sched_op),
        per(r.back.sched_op)
    );
    ExitCode::SUCCESS
}
