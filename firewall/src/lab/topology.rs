//! A whole simulated Qubes host: dom0 (xenstore, QubesDB), sys-net with
//! its internet, the firewall VM, and client AppVMs, wired as Qubes wires
//! them. The `lab` binary and the end-to-end tests build on [`Lab`].
//!
//! Addresses (Qubes' plan): the firewall is `10.138.0.5` toward sys-net
//! (`10.138.0.1`) and `10.137.0.1` toward its clients (`10.137.0.x`);
//! DNS is `10.139.1.1`/`10.139.1.2` (sys-net answers them); IPv6 clients
//! get `fd09:24ef:4179::a89:x`, the firewall `fd00:1::5` on the uplink.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qubesdb::sim::Dom0QubesDb;
use qubesdb::NetConfig;
use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};
use xen::abi::DomId;
use xen::sim::{DomainConfig, SimHost};

use super::fwvm::{FirewallVm, Snapshot};
use super::net::{self, AppVm, AppVmConfig, Internet, InternetConfig};
use crate::platform::{FirewallConfig, Tap, TapDir};

/// The firewall's uplink address.
pub const FW_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 5);
/// The firewall's IPv6 uplink address.
pub const FW_UPLINK_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
/// sys-net's address.
pub const SYSNET_IP: Ipv4Addr = Ipv4Addr::new(10, 138, 0, 1);
/// The firewall's address toward clients.
pub const FW_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 137, 0, 1);
/// The firewall's IPv6 address toward clients.
pub const FW_CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd09, 0x24ef, 0x4179, 0, 0, 0, 0xa89, 1);
/// The primary virtual DNS address.
pub const DNS1: Ipv4Addr = Ipv4Addr::new(10, 139, 1, 1);

/// The IPv6 address of client `10.137.0.n`.
pub fn client_ip6(v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd09,
        0x24ef,
        0x4179,
        0,
        0,
        0,
        0xa89,
        u16::from(v4.octets()[3]),
    )
}

/// One client AppVM.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// Its name.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Whether it has IPv6 too.
    pub ipv6: bool,
    /// Its rule lines (policy `drop`, as dom0 always writes).
    pub rules: Vec<String>,
    /// Qubes' `net.fake-ip`: the address and gateway the client is told
    /// it has (`/mapped-ip/<ip>/visible-ip` and `visible-gateway` in the
    /// firewall's QubesDB); its rules stay keyed by `ip`.
    pub fake_ip: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl ClientSpec {
    /// A client `10.137.0.<n>` with these rules, IPv6 enabled.
    pub fn new(name: &str, n: u8, rules: &[&str]) -> ClientSpec {
        ClientSpec {
            name: name.into(),
            ip: Ipv4Addr::new(10, 137, 0, n),
            ipv6: true,
            rules: rules.iter().map(|s| s.to_string()).collect(),
            fake_ip: None,
        }
    }

    /// The same client, told it is `visible_ip` behind `visible_gateway`
    /// (`net.fake-ip` and `net.fake-gateway`).
    pub fn with_fake_ip(mut self, visible_ip: Ipv4Addr, visible_gateway: Ipv4Addr) -> ClientSpec {
        self.fake_ip = Some((visible_ip, visible_gateway));
        self
    }
}

/// The topology to build.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// The clients.
    pub clients: Vec<ClientSpec>,
    /// The firewall.
    pub firewall: FirewallConfig,
    /// sys-net.
    pub internet: InternetConfig,
    /// Client offloads (netfront features of the AppVMs).
    pub client_features: netfront::Features,
}

impl Default for LabConfig {
    fn default() -> Self {
        let mut firewall = FirewallConfig {
            pool_pages: 2048,
            ..FirewallConfig::default()
        };
        firewall.engine.limits.max_flows = 4096;
        firewall.engine.limits.max_flows_per_client = 512;
        LabConfig {
            clients: Vec::new(),
            firewall,
            internet: InternetConfig::default(),
            client_features: netfront::Features {
                sg: true,
                ..Default::default()
            },
        }
    }
}

/// A running client.
pub struct Client {
    /// What it is.
    pub spec: ClientSpec,
    /// Its domain.
    pub vm: AppVm,
}

/// The running host (see the module doc).
pub struct Lab {
    /// The simulated host.
    pub host: SimHost,
    /// dom0's QubesDB service.
    pub qdb: Dom0QubesDb,
    /// The firewall's domain id.
    pub fw_dom: DomId,
    /// The firewall.
    pub fw: Option<FirewallVm>,
    /// sys-net.
    pub inet: Option<Internet>,
    /// The clients.
    pub clients: Vec<Client>,
    cfg: LabConfig,
}

fn e<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

fn rule_refs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

/// A pcap writer for the firewall's tap (Ethernet link type).
fn pcap_tap(path: &Path) -> std::io::Result<Tap> {
    let mut w = BufWriter::new(File::create(path)?);
    // Global header: magic, v2.4, GMT offset, accuracy, snaplen, Ethernet.
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    w.flush()?;
    let w = Arc::new(Mutex::new(w));
    Ok(Box::new(move |_iface, dir, frame, pool| {
        // Each frame once: as it leaves the firewall, or when it is
        // received (so dropped frames show too).
        let _ = dir == TapDir::In;
        let bytes = frame.to_vec(pool);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let cap = bytes.len().min(65535);
        let mut w = w.lock().unwrap();
        let _ = w.write_all(&(t.as_secs() as u32).to_le_bytes());
        let _ = w.write_all(&t.subsec_micros().to_le_bytes());
        let _ = w.write_all(&(cap as u32).to_le_bytes());
        let _ = w.write_all(&(bytes.len() as u32).to_le_bytes());
        let _ = w.write_all(&bytes[..cap]);
        let _ = w.flush();
    }))
}

impl Lab {
    /// Build and start everything; returns once every client's link is up.
    pub fn start(cfg: LabConfig, pcap: Option<&Path>) -> Result<Lab, String> {
        let host = SimHost::new().map_err(e("simulated host"))?;
        let mut inet = Internet::start(&host, cfg.internet.clone()).map_err(e("sys-net"))?;
        let mut dc = DomainConfig::new("sys-firewall");
        dc.ram_mib = 32;
        let fw_d = host.create_domain(&dc).map_err(e("firewall domain"))?;
        let fw_dom = fw_d.domid();
        let qdb = Dom0QubesDb::start(&host).map_err(e("dom0 QubesDB"))?;
        qdb.add_vm(fw_dom);
        let clients = cfg.clients.clone();
        let r = qdb.with_db(fw_dom, |d| -> Result<(), String> {
            d.write("/name", b"sys-firewall").map_err(e("qdb"))?;
            d.write("/qubes-vm-type", b"ProxyVM").map_err(e("qdb"))?;
            d.set_net_config(&NetConfig {
                ip: Some(FW_UPLINK_IP),
                netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                gateway: Some(SYSNET_IP),
                primary_dns: Some(DNS1),
                secondary_dns: Some(Ipv4Addr::new(10, 139, 1, 2)),
                netvm_gateway: Some(FW_CLIENT_IP),
                netvm_netmask: Some(Ipv4Addr::new(255, 255, 255, 255)),
                netvm_primary_dns: Some(DNS1),
                netvm_secondary_dns: Some(Ipv4Addr::new(10, 139, 1, 2)),
                ..NetConfig::default()
            })
            .map_err(e("qdb"))?;
            d.write("/qubes-ip6", FW_UPLINK_IP6.to_string().as_bytes())
                .map_err(e("qdb"))?;
            d.write("/qubes-gateway6", b"fd00:1::1").map_err(e("qdb"))?;
            d.write(
                "/qubes-netvm-gateway6",
                FW_CLIENT_IP6.to_string().as_bytes(),
            )
            .map_err(e("qdb"))?;
            let v4: Vec<Ipv4Addr> = clients.iter().map(|c| c.ip).collect();
            let v6: Vec<Ipv6Addr> = clients
                .iter()
                .filter(|c| c.ipv6)
                .map(|c| client_ip6(c.ip))
                .collect();
            d.set_connected_ips(&v4, &v6).map_err(e("qdb"))?;
            for c in &clients {
                if let Some((vis, gw)) = c.fake_ip {
                    d.set_mapped_ip(c.ip, Some(vis), Some(gw))
                        .map_err(e("qdb"))?;
                }
                let lines = rule_refs(&c.rules);
                d.set_client_rules(IpAddr::V4(c.ip), "drop", &lines)
                    .map_err(e("qdb"))?;
                if c.ipv6 {
                    d.set_client_rules(IpAddr::V6(client_ip6(c.ip)), "drop", &lines)
                        .map_err(e("qdb"))?;
                }
            }
            Ok(())
        });
        r.ok_or("no QubesDB for the firewall")??;
        qdb.serve(&host, fw_dom).map_err(e("QubesDB serve"))?;
        inet.attach(&host, fw_dom, 0, &FW_UPLINK_IP.to_string())
            .map_err(e("uplink vif"))?;
        let tap = match pcap {
            Some(p) => Some(pcap_tap(p).map_err(e("pcap file"))?),
            None => None,
        };
        let fw = FirewallVm::start(&host, &fw_d, cfg.firewall.clone(), tap);
        if !fw.wait_for(Duration::from_secs(20), |s| s.started) {
            return Err(match fw.stop() {
                Err(why) => format!("firewall failed to start: {why}"),
                Ok(_) => "firewall did not start".into(),
            });
        }
        let mut lab = Lab {
            host,
            qdb,
            fw_dom,
            fw: Some(fw),
            inet: Some(inet),
            clients: Vec::new(),
            cfg,
        };
        for spec in lab.cfg.clients.clone() {
            lab.start_client(spec)?;
        }
        Ok(lab)
    }

    /// Start one client AppVM and attach it to the firewall.
    pub fn start_client(&mut self, spec: ClientSpec) -> Result<(), String> {
        let mut vc = AppVmConfig::qubes(&spec.name, spec.ip.octets());
        if let Some((vis, gw)) = spec.fake_ip {
            // What dom0 tells a net.fake-ip client: its /qubes-ip and
            // /qubes-gateway are the visible ones.
            vc.ipv4 = Ipv4Cidr::new(vis, 24);
            vc.gateway = gw;
        }
        vc.features = self.cfg.client_features;
        if spec.ipv6 {
            vc.ipv6 = Some((Ipv6Cidr::new(client_ip6(spec.ip), 64), FW_CLIENT_IP6));
        }
        let _ = Ipv4Cidr::new(spec.ip, 24);
        let vm = AppVm::start(&self.host, vc).map_err(e("AppVM"))?;
        let mut ips = spec.ip.to_string();
        if spec.ipv6 {
            ips = format!("{ips} {}", client_ip6(spec.ip));
        }
        net::attach(&self.host, vm.domid(), self.fw_dom, 0, &ips).map_err(e("client vif"))?;
        vm.wait_link_up(Duration::from_secs(20))
            .map_err(e("client link"))?;
        self.clients.push(Client { spec, vm });
        Ok(())
    }

    /// Stop a client (domain destroyed, vif removed as libxl does).
    pub fn stop_client(&mut self, name: &str) -> Result<(), String> {
        let i = self
            .clients
            .iter()
            .position(|c| c.spec.name == name)
            .ok_or("no such client")?;
        let c = self.clients.remove(i);
        let dom = c.vm.domid();
        let spec = xen::sim::vif::VifSpec::new(dom, self.fw_dom, 0);
        let _ = xen::sim::vif::detach_vif(&self.host, &spec, true);
        c.vm.stop(&self.host).map_err(e("stop AppVM"))?;
        xen::sim::vif::remove_vif(&self.host, &spec);
        Ok(())
    }

    /// The client called `name`.
    pub fn client(&self, name: &str) -> &AppVm {
        &self
            .clients
            .iter()
            .find(|c| c.spec.name == name)
            .expect("known client")
            .vm
    }

    /// Replace a client's rules the way Qubes Manager / `qvm-firewall`
    /// does: dom0 rewrites the rule keys and commits with an empty write.
    pub fn set_rules(&self, ip: Ipv4Addr, rules: &[&str]) -> Result<(), String> {
        let has6 = self.cfg.clients.iter().any(|c| c.ip == ip && c.ipv6);
        self.qdb
            .with_db(self.fw_dom, |d| -> Result<(), String> {
                d.set_client_rules(IpAddr::V4(ip), "drop", rules)
                    .map_err(e("qdb"))?;
                if has6 {
                    d.set_client_rules(IpAddr::V6(client_ip6(ip)), "drop", rules)
                        .map_err(e("qdb"))?;
                }
                Ok(())
            })
            .ok_or("no QubesDB for the firewall")?
    }

    /// Write (`Some`) or remove (`None`) a client's `net.fake-ip` keys
    /// (`/mapped-ip/<ip>/visible-ip` and `visible-gateway`), as dom0 does.
    pub fn set_fake_ip(
        &self,
        ip: Ipv4Addr,
        fake: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Result<(), String> {
        self.qdb
            .with_db(self.fw_dom, |d| {
                d.set_mapped_ip(ip, fake.map(|f| f.0), fake.map(|f| f.1))
                    .map_err(e("qdb"))
            })
            .ok_or("no QubesDB for the firewall")?
    }

    /// Write any key of the firewall's QubesDB (malformed values for tests).
    pub fn write_qubesdb(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.qdb
            .with_db(self.fw_dom, |d| d.write(key, value).map_err(e("qdb")))
            .ok_or("no QubesDB for the firewall")?
    }

    /// Restart sys-net (new domain, vifs re-attached).
    pub fn restart_sysnet(&mut self) -> Result<(), String> {
        let inet = self.inet.take().ok_or("no sys-net")?;
        self.inet = Some(inet.restart(&self.host).map_err(e("sys-net restart"))?);
        Ok(())
    }

    /// The firewall's latest state.
    pub fn snapshot(&self) -> Snapshot {
        self.fw.as_ref().map(|f| f.snapshot()).unwrap_or_default()
    }

    /// Wait until the firewall's state satisfies `pred`.
    pub fn wait_fw(&self, timeout: Duration, pred: impl Fn(&Snapshot) -> bool) -> bool {
        self.fw.as_ref().is_some_and(|f| f.wait_for(timeout, pred))
    }

    /// Stop everything; the firewall's final snapshot.
    pub fn stop(mut self) -> Result<Snapshot, String> {
        let snap = match self.fw.take() {
            Some(f) => f.stop()?,
            None => Snapshot::default(),
        };
        for c in self.clients.drain(..) {
            let _ = c.vm.stop(&self.host);
        }
        if let Some(i) = self.inet.take() {
            let _ = i.stop(&self.host);
        }
        Ok(snap)
    }
}
