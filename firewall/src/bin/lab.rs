//! `lab`: the firewall on a simulated Qubes host (see `--help`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firewall::engine::Drop;
use firewall::lab::fwvm::Snapshot;
use firewall::lab::net::{Outcome, Probe, ProbeResult};
use firewall::lab::topology::{client_ip6, ClientSpec, Lab, LabConfig, DNS1};

const HELP: &str = "\
lab: the Rust Qubes firewall on a simulated Qubes host (no Xen needed)

The simulated host runs dom0 (xenstore, QubesDB), sys-net with an
\"internet\" of smoltcp hosts (HTTP-like servers on 198.51.100.10,
203.0.113.7 and 2001:db8::10, DNS on 10.139.1.1, ping and UDP echo), the
firewall VM (the unikernel's code: netfront uplink, netback per client,
QubesDB rules, NAT) and three AppVMs with different rules:

  work       10.137.0.10  everything allowed
  banking    10.137.0.11  DNS, and HTTPS to 198.51.100.0/24 only
  untrusted  10.137.0.12  everything blocked

Each client runs the same probes (HTTP fetches, DNS, ping, UDP echo, IPv6);
then dom0 edits banking's rules as Qubes Manager does (allowing
203.0.113.0/24) and the probes run again. A live view of the firewall is
printed between phases, and a final table per client at the end.

USAGE: lab [--pcap FILE] [--quiet]

OPTIONS:
  --pcap FILE   write every frame crossing the firewall to FILE (pcap,
                Ethernet; open it with Wireshark)
  --quiet       no per-probe lines, only the tables
  -h, --help    this text

Exit status 0 when every probe got the verdict its client's rules call for.";

struct Args {
    pcap: Option<PathBuf>,
    quiet: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        pcap: None,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quiet" => a.quiet = true,
            "--pcap" => a.pcap = Some(it.next().ok_or("--pcap needs a file name")?.into()),
            o => return Err(format!("unknown option {o} (see --help)")),
        }
    }
    Ok(Some(a))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal")
}

/// The probes every client runs, with whether each is expected to pass
/// per client (work, banking, untrusted) before and after the edit.
fn probes() -> Vec<(Probe, &'static str, [bool; 3], [bool; 3])> {
    vec![
        (
            Probe::fetch(ip("198.51.100.10"), 80, 20_000),
            "http 198.51.100.10:80",
            [true, false, false],
            [true, false, false],
        ),
        (
            Probe::fetch(ip("198.51.100.10"), 443, 100_000),
            "https 198.51.100.10:443",
            [true, true, false],
            [true, true, false],
        ),
        (
            Probe::fetch(ip("203.0.113.7"), 443, 20_000),
            "https 203.0.113.7:443",
            [true, false, false],
            [true, true, false],
        ),
        (
            Probe::dns_a(IpAddr::V4(DNS1), "example.com", &[ip("198.51.100.10")]),
            "dns example.com A",
            [true, true, false],
            [true, true, false],
        ),
        (
            Probe::ping(ip("198.51.100.10"), 56),
            "ping 198.51.100.10",
            [true, false, false],
            [true, false, false],
        ),
        (
            Probe::echo(ip("198.51.100.10"), 7, b"hello"),
            "udp echo 198.51.100.10:7",
            [true, false, false],
            [true, false, false],
        ),
        (
            Probe::fetch(ip("2001:db8::10"), 80, 20_000),
            "http [2001:db8::10]:80",
            [true, false, false],
            [true, false, false],
        ),
    ]
}

fn verdict(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok { .. } => "ok",
        Outcome::Unreachable(e) if e.is_admin_prohibited() => "rejected (ICMP admin-prohibited)",
        Outcome::Unreachable(_) => "unreachable",
        Outcome::Refused => "refused",
        Outcome::Timeout => "no answer",
        Outcome::Wrong(_) => "wrong answer",
    }
}

fn live(s: &Snapshot, t0: Instant) {
    println!(
        "  [{:6.2}s] uplink {} | flows {} | forwarded out {} in {} | dropped {} | pool pages in use {} | loop turns {}",
        t0.elapsed().as_secs_f64(),
        if s.uplink_up { "up" } else { "DOWN" },
        s.flows,
        s.engine.forwarded_out,
        s.engine.forwarded_in,
        s.engine.total_drops(),
        s.pool_in_use,
        s.turns
    );
}

fn run_phase(lab: &Lab, phase: usize, quiet: bool) -> Result<usize, String> {
    let mut bad = 0;
    for (ci, c) in lab.clients.iter().enumerate() {
        let list = probes();
        let ps: Vec<Probe> = list.iter().map(|p| p.0.clone()).collect();
        let res: Vec<ProbeResult> =
            c.vm.run(ps, Duration::from_secs(4))
                .map_err(|e| format!("{}: {e}", c.spec.name))?;
        for ((_, name, before, after), r) in list.iter().zip(&res) {
            let want = if phase == 1 { before[ci] } else { after[ci] };
            let ok = r.outcome.is_ok() == want;
            if !ok {
                bad += 1;
            }
            if !quiet || !ok {
                println!(
                    "  {:<10} {:<26} {:<34} {}",
                    c.spec.name,
                    name,
                    verdict(&r.outcome),
                    if ok { "as the rules say" } else { "UNEXPECTED" }
                );
            }
        }
    }
    Ok(bad)
}

fn table(lab: &Lab, s: &Snapshot) {
    println!();
    println!(
        "{:<10} {:<13} {:>7} {:>7} {:>10} {:>10} {:>8} {:>8} {:>7} {:>8}",
        "client",
        "address",
        "allowed",
        "denied",
        "bytes out",
        "bytes in",
        "NAT now",
        "reloads",
        "spoofed",
        "dropped"
    );
    for c in &lab.clients {
        let row = s.client(c.spec.ip);
        let st = row.map(|r| r.stats).unwrap_or_default();
        println!(
            "{:<10} {:<13} {:>7} {:>7} {:>10} {:>10} {:>8} {:>8} {:>7} {:>8}",
            c.spec.name,
            c.spec.ip,
            st.flows_allowed,
            st.flows_denied,
            st.bytes_out,
            st.bytes_in,
            row.map_or(0, |r| r.flows),
            st.rule_loads,
            st.spoofed,
            st.dropped
        );
    }
    println!();
    print!("drops by reason:");
    for d in Drop::ALL {
        let n = s.engine.drops_for(d);
        if n > 0 {
            print!(" {d}={n}");
        }
    }
    println!();
    println!(
        "flows tracked {} ({} bytes each) | ICMP errors generated {} (rate-limited {}) | loop turns {} sleeps {}",
        s.flows, s.memory_per_flow, s.engine.generated, s.engine.icmp_rate_limited, s.turns, s.sleeps
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("lab: {n} probes did not get the verdict their rules call for");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<usize, String> {
    let t0 = Instant::now();
    let cfg = LabConfig {
        clients: vec![
            ClientSpec::new("work", 10, &["action=accept"]),
            ClientSpec::new(
                "banking",
                11,
                &[
                    "action=accept specialtarget=dns",
                    "action=accept dst4=198.51.100.0/24 proto=tcp dstports=443-443",
                ],
            ),
            ClientSpec::new("untrusted", 12, &[]),
        ],
        ..LabConfig::default()
    };
    println!("lab: starting dom0, sys-net, the firewall and 3 AppVMs on the simulated Xen host");
    let lab = Lab::start(cfg, args.pcap.as_deref())?;
    for c in &lab.clients {
        println!(
            "  {:<10} {} / {} rules: {}",
            c.spec.name,
            c.spec.ip,
            client_ip6(c.spec.ip),
            if c.spec.rules.is_empty() {
                "(none: policy drop)".to_string()
            } else {
                c.spec.rules.join("; ")
            }
        );
    }
    lab.wait_fw(Duration::from_secs(10), |s| {
        s.uplink_up && s.clients.len() == 3
    });
    live(&lab.snapshot(), t0);
    println!("\nphase 1: every client probes the internet");
    let mut bad = run_phase(&lab, 1, args.quiet)?;
    live(&lab.snapshot(), t0);
    println!("\nrule edit: banking may now use HTTPS to 203.0.113.0/24 (dom0 rewrites the keys and commits)");
    lab.set_rules(
        lab.clients[1].spec.ip,
        &[
            "action=accept specialtarget=dns",
            "action=accept dst4=198.51.100.0/24 proto=tcp dstports=443-443",
            "action=accept dst4=203.0.113.0/24 proto=tcp dstports=443-443",
        ],
    )?;
    let ip = lab.clients[1].spec.ip;
    lab.wait_fw(Duration::from_secs(5), |s| {
        s.client(ip).is_some_and(|c| c.stats.rule_loads >= 4)
    });
    live(&lab.snapshot(), t0);
    println!("\nphase 2: the same probes again");
    bad += run_phase(&lab, 2, args.quiet)?;
    live(&lab.snapshot(), t0);
    let snap = lab.snapshot();
    table(&lab, &snap);
    if let Some(p) = &args.pcap {
        println!("frames written to {}", p.display());
    }
    lab.stop()?;
    Ok(bad)
}
