//! The firewall as a Qubes citizen, on the simulated host: dom0's
//! shutdown requests (`control/shutdown`) end the event loop with the
//! drivers closed, and a qrexec daemon peer (the project's vchan crate in
//! a domain of its own, speaking dom0's side of the protocol) does the
//! handshake and calls `qubes.WaitForSession`, `qubes.SetDateTime` and a
//! service the firewall does not provide.

use std::time::{Duration, Instant};

use firewall::lab::fwvm::FirewallVm;
use firewall::lab::topology::{ClientSpec, Lab, LabConfig};
use firewall::platform::{FirewallConfig, Stop};
use firewall::qrexec::wire::{
    self, ExitCode, Header, Hello, Message, MsgType, CONTROL_PORT, DATA_RING_SIZE, HDR_SIZE,
};
use integration_tests::logcap;
use qubesdb::sim::Dom0QubesDb;
use xen::abi::DomId;
use xen::evtchn::EventChannels;
use xen::gnttab::GrantTable;
use xen::sim::{DomainConfig, SimDomain, SimHost};
use xen::store::Xenstore;
use xen::Hypervisor;

const T: Duration = Duration::from_secs(20);

fn read_key(host: &SimHost, path: &str) -> Option<String> {
    host.with_xenstore(|xs| xs.read(path).ok())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn write_key(host: &SimHost, path: &str, v: &str) {
    host.with_xenstore(|xs| xs.write(path, v.as_bytes()))
        .expect("dom0 writes");
}

fn lab_with_one_client() -> Lab {
    logcap::install();
    let cfg = LabConfig {
        clients: vec![ClientSpec::new("work", 10, &["action=accept"])],
        ..LabConfig::default()
    };
    let lab = Lab::start(cfg, None).expect("lab starts");
    assert!(lab.wait_fw(T, |s| s.uplink_up && s.clients.len() == 1));
    lab
}

// ---- control/shutdown -------------------------------------------------------

#[test]
fn poweroff_closes_the_drivers_and_ends_the_loop() {
    let mut lab = lab_with_one_client();
    let fw = lab.fw_dom;
    let home = format!("/local/domain/{fw}");
    // Announced at start, as Qubes' libxl requires.
    assert_eq!(
        read_key(&lab.host, &format!("{home}/control/feature-poweroff")).as_deref(),
        Some("1")
    );
    assert_eq!(
        read_key(&lab.host, &format!("{home}/control/feature-reboot")).as_deref(),
        Some("1")
    );
    let client = lab.client("work").domid();
    let backend_state = format!("{home}/backend/vif/{client}/0/state");
    let frontend_state = format!("{home}/device/vif/0/state");
    assert_eq!(read_key(&lab.host, &backend_state).as_deref(), Some("4"));
    assert_eq!(read_key(&lab.host, &frontend_state).as_deref(), Some("4"));

    // A request we do not handle: logged, not acknowledged, loop goes on.
    write_key(&lab.host, &format!("{home}/control/shutdown"), "suspend");
    // The watch event reaches the firewall through dom0's service thread,
    // at its own pace: wait for the firewall's answer (the warning), then
    // give it time and more turns to misbehave (acknowledge, stop).
    let end = Instant::now() + T;
    while logcap::warnings_containing("ignoring request \"suspend\"").is_empty() {
        assert!(Instant::now() < end, "no warning about the suspend request");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let turns = lab.snapshot().turns;
    assert!(lab.wait_fw(T, |s| s.turns > turns));
    assert!(!lab.fw.as_ref().unwrap().ended());
    assert_eq!(
        read_key(&lab.host, &format!("{home}/control/shutdown")).as_deref(),
        Some("suspend")
    );

    // Poweroff, as `xl shutdown` / `qvm-shutdown` writes it.
    write_key(&lab.host, &format!("{home}/control/shutdown"), "poweroff");
    let (why, snap) = lab.fw.take().unwrap().join(T).expect("loop ends");
    assert_eq!(why, Stop::Poweroff);
    assert_eq!(snap.stop, Some(Stop::Poweroff));
    // Acknowledged, and the domain shut down with SHUTDOWN_poweroff.
    assert_eq!(
        read_key(&lab.host, &format!("{home}/control/shutdown")).as_deref(),
        Some("")
    );
    assert_eq!(lab.host.xen().shutdown_reason(fw), Some(0));
    // The client's vif went Closing then Closed; the uplink Closed.
    let b = read_key(&lab.host, &backend_state);
    assert!(matches!(b.as_deref(), Some("5" | "6")), "backend {b:?}");
    let f = read_key(&lab.host, &frontend_state);
    assert!(matches!(f.as_deref(), Some("5" | "6")), "frontend {f:?}");
    // The client's netfront follows the backend down (and, being our
    // netfront crate, offers itself again with Initialising, as after a
    // sys-net restart): it is no longer Connected.
    let client_fe = format!("/local/domain/{client}/device/vif/0/state");
    let mut ok = false;
    let end = Instant::now() + T;
    while Instant::now() < end {
        if read_key(&lab.host, &client_fe).as_deref() != Some("4") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(ok, "client frontend {:?}", read_key(&lab.host, &client_fe));
    lab.stop().unwrap();
}

#[test]
fn reboot_and_halt() {
    for (cmd, want, reason) in [("reboot", Stop::Reboot, 1), ("halt", Stop::Poweroff, 0)] {
        let (host, _qdb, fw, vm) = bare_firewall(FirewallConfig::default(), None);
        write_key(&host, &format!("/local/domain/{fw}/control/shutdown"), cmd);
        let (why, snap) = vm.join(T).expect("loop ends");
        assert_eq!(why, want, "{cmd}");
        assert_eq!(snap.stop, Some(want));
        assert_eq!(host.xen().shutdown_reason(fw), Some(reason), "{cmd}");
        assert_eq!(
            read_key(&host, &format!("/local/domain/{fw}/control/shutdown")).as_deref(),
            Some(""),
            "{cmd}"
        );
    }
}

/// A firewall VM with dom0's QubesDB and nothing else (no vifs): quick to
/// start. `first` is created before it (so its domid is known to the
/// firewall's configuration).
fn bare_firewall(
    mut cfg: FirewallConfig,
    first: Option<(&str, &mut Option<SimDomain>)>,
) -> (SimHost, Dom0QubesDb, DomId, FirewallVm) {
    logcap::install();
    let host = SimHost::new().unwrap();
    if let Some((name, slot)) = first {
        let d = host.create_domain(&DomainConfig::new(name)).unwrap();
        cfg.qrexec.daemon = d.domid();
        *slot = Some(d);
    }
    let mut dc = DomainConfig::new("sys-firewall");
    dc.ram_mib = 32;
    let fw_d = host.create_domain(&dc).unwrap();
    let fw = fw_d.domid();
    let qdb = Dom0QubesDb::start(&host).unwrap();
    qdb.add_vm(fw);
    qdb.with_db(fw, |d| d.write("/name", b"sys-firewall").unwrap());
    qdb.serve(&host, fw).unwrap();
    cfg.pool_pages = 256;
    let vm = FirewallVm::start(&host, &fw_d, cfg, None);
    assert!(vm.wait_for(T, |s| s.started));
    (host, qdb, fw, vm)
}

// ---- qrexec ------------------------------------------------------------------

/// A domain's guest services, for the daemon's side.
struct Guest {
    d: SimDomain,
    ev: EventChannels<SimDomain>,
    xs: Xenstore<SimDomain>,
    gt: GrantTable<SimDomain>,
}

impl Guest {
    fn new(d: SimDomain) -> Guest {
        let ev = EventChannels::new(d.clone()).expect("event channels");
        let xs = Xenstore::from_params(ev.clone()).expect("xenstore");
        let gt = GrantTable::new(d.clone(), 4).expect("grant table");
        Guest { d, ev, xs, gt }
    }

    fn deadline(&self) -> Option<u64> {
        Some(self.d.now_ns() + 20_000_000_000)
    }
}

type V = vchan::Vchan<SimDomain>;

/// Read one whole message.
fn recv(v: &mut V, deadline: Option<u64>) -> (MsgType, Vec<u8>) {
    let mut h = [0u8; HDR_SIZE];
    v.read_all(&mut h, deadline).expect("header");
    let hdr = Header::parse(&h).unwrap();
    let mut body = vec![0u8; hdr.len()];
    v.read_all(&mut body, deadline).expect("body");
    (hdr.ty().expect("known type"), body)
}

fn send(v: &mut V, bytes: &[u8], deadline: Option<u64>) {
    v.write_all(bytes, deadline).expect("send");
}

/// One service call from the daemon's side: the request on the control
/// vchan, then (a moment later, as qrexec-client does) the data vchan
/// server, the handshake, `stdin`, and everything the agent answers up to
/// its exit code; then the control connection's
/// `MSG_CONNECTION_TERMINATED`.
fn call(
    g: &mut Guest,
    ctrl: &mut V,
    fw: DomId,
    port: u32,
    kind: MsgType,
    cmdline: &str,
    stdin: &[u8],
) -> Vec<(MsgType, Vec<u8>)> {
    let dl = g.deadline();
    let me = g.d.domid();
    let mut req = Vec::new();
    wire::encode_exec(kind, u32::from(me), port, cmdline.as_bytes(), &mut req);
    send(ctrl, &req, dl);
    std::thread::sleep(Duration::from_millis(20));
    let mut data = V::server_qubes(
        &g.ev,
        &mut g.gt,
        &mut g.xs,
        fw,
        port,
        DATA_RING_SIZE,
        DATA_RING_SIZE,
    )
    .expect("data server");
    data.wait_connected(dl).expect("agent connects");
    let mut hello = Vec::new();
    wire::encode_hello(3, &mut hello);
    send(&mut data, &hello, dl);
    let (t, body) = recv(&mut data, dl);
    assert_eq!(t, MsgType::Hello);
    assert_eq!(body, 3u32.to_le_bytes());
    if !stdin.is_empty() {
        let mut b = Vec::new();
        wire::encode_data(MsgType::DataStdin, stdin, 65536, &mut b);
        wire::encode_data(MsgType::DataStdin, &[], 65536, &mut b);
        // A service that does not read stdin may have answered and closed
        // already: what it sent is still in the ring.
        match data.write_all(&b, dl) {
            Ok(()) | Err(vchan::VchanError::PeerClosed) => {}
            Err(e) => panic!("stdin: {e}"),
        }
    }
    let mut got = Vec::new();
    loop {
        let m = recv(&mut data, dl);
        let last = m.0 == MsgType::DataExitCode;
        got.push(m);
        if last {
            break;
        }
    }
    let (t, body) = recv(ctrl, dl);
    assert_eq!(t, MsgType::ConnectionTerminated);
    let mut want = u32::from(me).to_le_bytes().to_vec();
    want.extend(port.to_le_bytes());
    assert_eq!(body, want);
    data.close_and_release(&mut g.gt, &mut g.xs, dl)
        .expect("data vchan released");
    got
}

fn exit_code(msgs: &[(MsgType, Vec<u8>)]) -> i32 {
    let (t, b) = msgs.last().unwrap();
    assert_eq!(*t, MsgType::DataExitCode);
    ExitCode::parse(b).unwrap().0
}

#[test]
fn qrexec_daemon_handshake_and_services() {
    // dom0's qrexec side in a domain of its own (the simulator's dom0 has
    // no xenstore ring for the vchan crate): the agent serves it instead
    // of domain 0.
    let mut daemon = None;
    let (host, _qdb, fw, vm) = bare_firewall(
        FirewallConfig::default(),
        Some(("qrexec-daemon", &mut daemon)),
    );
    let daemon = daemon.unwrap();
    let fw_ctrl = format!(
        "/local/domain/{fw}/data/vchan/{}/{CONTROL_PORT}",
        daemon.domid()
    );
    let peer = host.spawn(&daemon, move |d| {
        let mut g = Guest::new(d);
        let dl = g.deadline();
        let mut ctrl = V::client_qubes(&g.ev, &mut g.xs, fw, CONTROL_PORT, dl).expect("control");
        // The daemon reads the agent's HELLO first, then sends its own.
        let mut h = [0u8; 12];
        ctrl.read_all(&mut h, dl).unwrap();
        let m = Message::parse(&h).unwrap();
        assert_eq!(Hello::parse(&m).unwrap().version, 3);
        let mut hello = Vec::new();
        wire::encode_hello(3, &mut hello);
        send(&mut ctrl, &hello, dl);

        let wait = call(
            &mut g,
            &mut ctrl,
            fw,
            513,
            MsgType::ExecCmdline,
            "root:QUBESRPC qubes.WaitForSession none",
            b"",
        );
        let date = call(
            &mut g,
            &mut ctrl,
            fw,
            514,
            MsgType::ExecCmdline,
            "root:QUBESRPC qubes.SetDateTime dom0",
            b"2025-03-01T10:00:00+00:00\n",
        );
        let shell = call(
            &mut g,
            &mut ctrl,
            fw,
            515,
            MsgType::ExecCmdline,
            "user:QUBESRPC qubes.VMShell dom0",
            b"echo hi\n",
        );
        // Junk on the control connection is skipped, not fatal.
        let mut junk = Header::new(MsgType::Hello, 0).to_bytes().to_vec();
        junk[0] = 0x42;
        send(&mut ctrl, &junk, dl);
        let again = call(
            &mut g,
            &mut ctrl,
            fw,
            516,
            MsgType::JustExec,
            "root:QUBESRPC qubes.WaitForSession none",
            b"",
        );
        (wait, date, shell, again, ctrl)
    });
    let (wait, date, shell, again, ctrl) = peer.join().expect("daemon thread");

    assert_eq!(
        wait,
        vec![
            (MsgType::DataStdout, vec![]),
            (MsgType::DataExitCode, vec![0; 4])
        ]
    );
    assert_eq!(exit_code(&date), 0);
    assert_eq!(exit_code(&shell), 127);
    assert_eq!(shell[0].0, MsgType::DataStderr);
    assert!(String::from_utf8_lossy(&shell[0].1).contains("qubes.VMShell"));
    assert_eq!(again, vec![(MsgType::DataExitCode, vec![0; 4])]);

    // The rendezvous keys went once the daemon connected.
    assert!(!host.with_xenstore(|xs| xs.exists(&fw_ctrl)));
    assert!(vm.wait_for(T, |s| s.qrexec.served == 3));
    let s = vm.snapshot();
    assert!(s.qrexec_ready);
    assert_eq!(s.qrexec.handshakes, 1);
    assert_eq!(s.qrexec.requests, 4);
    assert_eq!(s.qrexec.refused, 1);
    assert_eq!(s.qrexec.rejected, 1);
    assert_eq!(s.qrexec.resets, 0);
    assert_eq!(s.qrexec_time.as_deref(), Some("2025-03-01T10:00:00+00:00"));

    // The daemon goes away: the agent serves a new control vchan.
    drop(ctrl);
    assert!(vm.wait_for(T, |s| s.qrexec.servers == 2));
    assert!(host.with_xenstore(|xs| xs.exists(&format!("{fw_ctrl}/ring-ref"))));
    vm.stop().unwrap();
}
