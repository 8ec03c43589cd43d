//! Scripted traffic for an AppVM: [`Probe`]s and what became of them
//! ([`ProbeResult`]).
//!
//! A batch of probes runs concurrently, each with its own smoltcp socket
//! and local port (or echo identifier), so an ICMP error quoting a flow
//! ([`icmperr`]) names exactly one probe, and probes that
//! are silently dropped time out together instead of one after another.
//! A probe ends at its first verdict: data complete, a refusal, an ICMP
//! error about its flow, a wrong answer, or its deadline.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::dns;
use super::http::pattern;
use super::icmperr::{self, IcmpError};

/// One thing to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect to `addr:port`, send `GET /<bytes>`, expect exactly
    /// `bytes` bytes of [`pattern`] and the server's close.
    Fetch {
        /// Server address.
        addr: IpAddr,
        /// Server port.
        port: u16,
        /// Bytes asked for.
        bytes: usize,
    },
    /// A DNS query over UDP.
    Dns {
        /// The server (Qubes: the virtual DNS addresses 10.139.1.1/2).
        server: IpAddr,
        /// The name asked for.
        name: String,
        /// [`dns::TYPE_A`] or [`dns::TYPE_AAAA`] (any type is sent).
        qtype: u16,
        /// What the answer must be.
        expect: DnsExpect,
    },
    /// A UDP datagram to an echo service, expecting it back.
    Echo {
        /// Server address.
        addr: IpAddr,
        /// Server port (7 on the lab's internet).
        port: u16,
        /// The datagram.
        payload: Vec<u8>,
    },
    /// ICMP / ICMPv6 echo with `size` bytes of data.
    Ping {
        /// Target.
        addr: IpAddr,
        /// Data bytes.
        size: usize,
    },
}

impl Probe {
    /// [`Probe::Fetch`].
    pub fn fetch(addr: IpAddr, port: u16, bytes: usize) -> Probe {
        Probe::Fetch { addr, port, bytes }
    }

    /// [`Probe::Dns`] for an A record expected to be exactly `addrs`.
    pub fn dns_a(server: IpAddr, name: &str, addrs: &[IpAddr]) -> Probe {
        Probe::Dns {
            server,
            name: name.into(),
            qtype: dns::TYPE_A,
            expect: DnsExpect::Addrs(addrs.to_vec()),
        }
    }

    /// [`Probe::Dns`] for an AAAA record expected to be exactly `addrs`.
    pub fn dns_aaaa(server: IpAddr, name: &str, addrs: &[IpAddr]) -> Probe {
        Probe::Dns {
            server,
            name: name.into(),
            qtype: dns::TYPE_AAAA,
            expect: DnsExpect::Addrs(addrs.to_vec()),
        }
    }

    /// [`Probe::Dns`] for an A record of a name that must not exist.
    pub fn dns_nxdomain(server: IpAddr, name: &str) -> Probe {
        Probe::Dns {
            server,
            name: name.into(),
            qtype: dns::TYPE_A,
            expect: DnsExpect::NxDomain,
        }
    }

    /// [`Probe::Echo`].
    pub fn echo(addr: IpAddr, port: u16, payload: &[u8]) -> Probe {
        Probe::Echo {
            addr,
            port,
            payload: payload.to_vec(),
        }
    }

    /// [`Probe::Ping`].
    pub fn ping(addr: IpAddr, size: usize) -> Probe {
        Probe::Ping { addr, size }
    }

    /// The remote address.
    pub fn addr(&self) -> IpAddr {
        match self {
            Probe::Fetch { addr, .. } | Probe::Echo { addr, .. } | Probe::Ping { addr, .. } => {
                *addr
            }
            Probe::Dns { server, .. } => *server,
        }
    }
}

/// The answer a DNS probe requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsExpect {
    /// NOERROR with exactly these addresses (in any order; empty: NODATA).
    Addrs(Vec<IpAddr>),
    /// NXDOMAIN.
    NxDomain,
    /// Any NOERROR answer.
    Any,
}

/// What became of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It worked: the bytes received (fetch: body; DNS: the response;
    /// echo: the datagram; ping: the echoed data) and the time from start
    /// to verdict.
    Ok {
        /// Bytes received.
        bytes: usize,
        /// Start to verdict.
        rtt: Duration,
    },
    /// TCP reset during the handshake.
    Refused,
    /// An ICMP error about the probe's flow.
    Unreachable(IcmpError),
    /// Nothing conclusive before the deadline.
    Timeout,
    /// An answer arrived but was not the expected one.
    Wrong(String),
}

impl Outcome {
    /// True for [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    /// True for an administratively-prohibited ICMP error.
    pub fn is_admin_prohibited(&self) -> bool {
        matches!(self, Outcome::Unreachable(e) if e.is_admin_prohibited())
    }
}

/// A probe and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The probe.
    pub probe: Probe,
    /// Its outcome.
    pub outcome: Outcome,
    /// Bytes received whatever the outcome.
    pub received: usize,
    /// DNS probes: the parsed answer, if one arrived.
    pub answer: Option<dns::Answer>,
}

/// Buffer sizes (the fetch receive buffer is large for throughput).
const TCP_RX: usize = 64 * 1024;
const TCP_TX: usize = 2048;
const DGRAM: usize = 4096;

/// Per-kind progress.
enum Step {
    Fetch {
        sent: bool,
        connected: bool,
    },
    Dns {
        id: u16,
        last: Option<u64>,
    },
    Echo {
        last: Option<u64>,
    },
    Ping {
        /// When each sequence number (1, 2, ...) was sent.
        sent: Vec<u64>,
    },
}

/// A probe in flight.
pub(crate) struct Running {
    probe: Probe,
    handle: SocketHandle,
    /// Local port (echo: identifier).
    local: u16,
    started: u64,
    deadline: u64,
    step: Step,
    received: usize,
    answer: Option<dns::Answer>,
    v6_src: Option<Ipv6Addr>,
}

/// Allocates local ports and echo identifiers so no two probes of a domain
/// share one while in flight (wrapping over a range of 20000).
#[derive(Debug)]
pub(crate) struct Ports {
    next: u16,
}

impl Ports {
    pub(crate) fn new(seed: u16) -> Ports {
        Ports {
            next: 40000 + seed % 20000,
        }
    }

    fn take(&mut self) -> u16 {
        let p = self.next;
        self.next = if p >= 59999 { 40000 } else { p + 1 };
        p
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Running {
    /// Open the probe's socket. `v6_src` is our IPv6 address (needed to
    /// checksum ICMPv6 echo requests).
    pub(crate) fn start(
        probe: Probe,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        ports: &mut Ports,
        now: u64,
        timeout: Duration,
        v6_src: Option<Ipv6Addr>,
    ) -> Result<Running, ProbeResult> {
        let local = ports.take();
        let fail = |probe: &Probe, why: String| ProbeResult {
            probe: probe.clone(),
            outcome: Outcome::Wrong(why),
            received: 0,
            answer: None,
        };
        let (handle, step) = match &probe {
            Probe::Fetch { addr, port, .. } => {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_RX]),
                    tcp::SocketBuffer::new(vec![0; TCP_TX]),
                );
                let remote = IpEndpoint::new(IpAddress::from(*addr), *port);
                if let Err(e) = s.connect(iface.context(), remote, local) {
                    return Err(fail(&probe, format!("connect: {e}")));
                }
                (
                    sockets.add(s),
                    Step::Fetch {
                        sent: false,
                        connected: false,
                    },
                )
            }
            Probe::Dns { .. } | Probe::Echo { .. } => {
                let mut s = udp::Socket::new(
                    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; DGRAM]),
                    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; DGRAM]),
                );
                if let Err(e) = s.bind(local) {
                    return Err(fail(&probe, format!("bind: {e}")));
                }
                let step = match probe {
                    Probe::Dns { .. } => Step::Dns {
                        id: local,
                        last: None,
                    },
                    _ => Step::Echo { last: None },
                };
                (sockets.add(s), step)
            }
            Probe::Ping { .. } => {
                let mut s = icmp::Socket::new(
                    icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; DGRAM]),
                    icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; DGRAM]),
                );
                if let Err(e) = s.bind(icmp::Endpoint::Ident(local)) {
                    return Err(fail(&probe, format!("bind: {e}")));
                }
                (sockets.add(s), Step::Ping { sent: Vec::new() })
            }
        };
        Ok(Running {
            probe,
            handle,
            local,
            started: now,
            deadline: now.saturating_add(ns(timeout)),
            step,
            received: 0,
            answer: None,
            v6_src,
        })
    }

    /// The socket (the runner removes it when the probe is done).
    pub(crate) fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// True if the probe's socket is a TCP socket (it may linger).
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self.probe, Probe::Fetch { .. })
    }

    /// True if `e` is about this probe's flow.
    fn matches(&self, e: &IcmpError) -> bool {
        let (proto, dst_port) = match &self.probe {
            Probe::Fetch { port, .. } => (icmperr::PROTO_TCP, *port),
            Probe::Dns { .. } => (icmperr::PROTO_UDP, 53),
            Probe::Echo { port, .. } => (icmperr::PROTO_UDP, *port),
            Probe::Ping { addr, .. } => (
                if addr.is_ipv6() {
                    icmperr::PROTO_ICMPV6
                } else {
                    icmperr::PROTO_ICMP
                },
                0,
            ),
        };
        e.flow.proto == proto
            && e.flow.dst == self.probe.addr()
            && e.flow.src_port == self.local
            && e.flow.dst_port == dst_port
    }

    /// Advance; `Some` is the verdict. `errors` are the ICMP errors
    /// received since the last step.
    pub(crate) fn step(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: u64,
        errors: &[IcmpError],
    ) -> Option<ProbeResult> {
        let verdict = self.advance(sockets, now, errors);
        let verdict = verdict.or_else(|| (now >= self.deadline).then_some(Outcome::Timeout));
        verdict.map(|outcome| ProbeResult {
            probe: self.probe.clone(),
            outcome,
            received: self.received,
            answer: self.answer.take(),
        })
    }

    fn ok(&self, bytes: usize, now: u64) -> Outcome {
        Outcome::Ok {
            bytes,
            rtt: Duration::from_nanos(now.saturating_sub(self.started)),
        }
    }

    fn advance(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: u64,
        errors: &[IcmpError],
    ) -> Option<Outcome> {
        if let Some(e) = errors.iter().find(|e| self.matches(e)) {
            return Some(Outcome::Unreachable(*e));
        }
        let remote_addr = IpAddress::from(self.probe.addr());
        match (&self.probe, &mut self.step) {
            (Probe::Fetch { bytes, .. }, Step::Fetch { sent, connected }) => {
                let want = *bytes;
                let s = sockets.get_mut::<tcp::Socket>(self.handle);
                let st = s.state();
                if !*connected && st != tcp::State::SynSent && st != tcp::State::Closed {
                    *connected = true;
                }
                if !*connected && st == tcp::State::Closed {
                    return Some(Outcome::Refused);
                }
                if *connected && !*sent && s.can_send() {
                    let req = format!("GET /{want}\r\n");
                    match s.send_slice(req.as_bytes()) {
                        Ok(n) if n == req.len() => *sent = true,
                        _ => return Some(Outcome::Wrong("request did not fit".into())),
                    }
                }
                let mut bad = None;
                while s.can_recv() {
                    let base = self.received;
                    let r = s.recv(|buf| {
                        if let Some(i) =
                            (0..buf.len()).find(|&i| buf[i] != pattern((base + i) as u64))
                        {
                            bad = Some(base + i);
                        }
                        (buf.len(), buf.len())
                    });
                    match r {
                        Ok(n) => self.received += n,
                        Err(_) => break,
                    }
                    if bad.is_some() {
                        break;
                    }
                }
                if let Some(at) = bad {
                    s.abort();
                    return Some(Outcome::Wrong(format!("wrong byte at offset {at}")));
                }
                if self.received > want {
                    s.abort();
                    return Some(Outcome::Wrong(format!(
                        "{} bytes, more than the {want} asked",
                        self.received
                    )));
                }
                if *connected && !s.may_recv() {
                    // The server closed (FIN) or reset.
                    s.close();
                    return Some(if self.received == want {
                        self.ok(self.received, now)
                    } else {
                        Outcome::Wrong(format!(
                            "connection ended after {} of {want} bytes",
                            self.received
                        ))
                    });
                }
                None
            }
            (
                Probe::Dns {
                    name,
                    qtype,
                    expect,
                    ..
                },
                Step::Dns { id, last },
            ) => {
                let s = sockets.get_mut::<udp::Socket>(self.handle);
                let remote = IpEndpoint::new(remote_addr, 53);
                if due(*last, now) {
                    let q = match dns::query(*id, name, *qtype) {
                        Ok(q) => q,
                        Err(e) => return Some(Outcome::Wrong(format!("query: {e}"))),
                    };
                    if s.send_slice(&q, remote).is_ok() {
                        *last = Some(now);
                    }
                }
                let mut buf = [0u8; DGRAM];
                while let Ok((n, meta)) = s.recv_slice(&mut buf) {
                    if meta.endpoint != remote {
                        continue;
                    }
                    let Ok(a) = dns::parse_answer(&buf[..n], *id, name, *qtype) else {
                        continue;
                    };
                    self.received = n;
                    let verdict = match expect {
                        DnsExpect::NxDomain if a.rcode == dns::RCODE_NXDOMAIN => None,
                        DnsExpect::Any if a.rcode == dns::RCODE_NOERROR => None,
                        DnsExpect::Addrs(want) if a.rcode == dns::RCODE_NOERROR => {
                            let (mut got, mut want) = (a.addrs.clone(), want.clone());
                            got.sort();
                            want.sort();
                            (got != want).then(|| format!("answer {got:?}, expected {want:?}"))
                        }
                        _ => Some(format!("rcode {} ({:?})", a.rcode, a.addrs)),
                    };
                    self.answer = Some(a);
                    return Some(match verdict {
                        None => self.ok(n, now),
                        Some(w) => Outcome::Wrong(w),
                    });
                }
                None
            }
            (Probe::Echo { port, payload, .. }, Step::Echo { last }) => {
                let s = sockets.get_mut::<udp::Socket>(self.handle);
                let remote = IpEndpoint::new(remote_addr, *port);
                if due(*last, now) && s.send_slice(payload, remote).is_ok() {
                    *last = Some(now);
                }
                let mut buf = [0u8; DGRAM];
                while let Ok((n, meta)) = s.recv_slice(&mut buf) {
                    if meta.endpoint != remote {
                        continue;
                    }
                    self.received = n;
                    return Some(if buf[..n] == payload[..] {
                        self.ok(n, now)
                    } else {
                        Outcome::Wrong(format!("echoed {n} bytes that differ"))
                    });
                }
                None
            }
            (Probe::Ping { addr, size }, Step::Ping { sent }) => {
                let s = sockets.get_mut::<icmp::Socket>(self.handle);
                let data: Vec<u8> = (0..*size).map(|i| pattern(i as u64)).collect();
                if due(sent.last().copied(), now) {
                    let seq = sent.len() as u16 + 1;
                    let packet = match echo_request(*addr, self.v6_src, self.local, seq, &data) {
                        Ok(p) => p,
                        Err(w) => return Some(Outcome::Wrong(w)),
                    };
                    if s.send_slice(&packet, remote_addr).is_ok() {
                        sent.push(now);
                    }
                }
                let reply_type = if addr.is_ipv6() { 129 } else { 0 };
                while let Ok((pkt, from)) = s.recv() {
                    if from != remote_addr || pkt.len() < 8 || pkt[0] != reply_type {
                        continue;
                    }
                    let ident = u16::from_be_bytes([pkt[4], pkt[5]]);
                    let seq = u16::from_be_bytes([pkt[6], pkt[7]]);
                    if ident != self.local || seq == 0 || usize::from(seq) > sent.len() {
                        continue;
                    }
                    self.received = pkt.len() - 8;
                    let same = pkt[8..] == data[..];
                    let sent = sent[usize::from(seq) - 1];
                    return Some(if same {
                        Outcome::Ok {
                            bytes: data.len(),
                            rtt: Duration::from_nanos(now.saturating_sub(sent)),
                        }
                    } else {
                        Outcome::Wrong("echo reply data differs".into())
                    });
                }
                None
            }
            _ => Some(Outcome::Wrong("internal: probe and step disagree".into())),
        }
    }
}

/// Datagram probes (DNS, echo, ping) send again after this long without
/// an answer, as resolvers and `ping` do: a first packet may be lost while
/// a neighbour is resolved (smoltcp drops a reply it cannot address yet).
pub const RETRY: Duration = Duration::from_secs(1);

fn due(last: Option<u64>, now: u64) -> bool {
    last.is_none_or(|t| now.saturating_sub(t) >= ns(RETRY))
}

/// An echo request (ICMP or ICMPv6) with identifier `ident`, sequence
/// `seq` and `data`, checksummed.
fn echo_request(
    dst: IpAddr,
    v6_src: Option<Ipv6Addr>,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let mut p = vec![0u8; 8 + data.len()];
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..].copy_from_slice(data);
    let sum = match dst {
        IpAddr::V4(_) => {
            p[0] = 8;
            xen::frame::offload::checksum_add(0, &p)
        }
        IpAddr::V6(d) => {
            let src = v6_src.ok_or("ping over IPv6 without an IPv6 address")?;
            p[0] = 128;
            let mut s = xen::frame::offload::checksum_add(0, &src.octets());
            s = xen::frame::offload::checksum_add(s, &d.octets());
            s = xen::frame::offload::checksum_add(s, &(p.len() as u32).to_be_bytes());
            s = xen::frame::offload::checksum_add(s, &[0, 0, 0, icmperr::PROTO_ICMPV6]);
            xen::frame::offload::checksum_add(s, &p)
        }
    };
    let c = !xen::frame::offload::fold(sum);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(p)
}
