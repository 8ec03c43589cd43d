//! The "internet" hosts' HTTP-like service: a request line `GET /<n>`
//! (ended by `\n`, an optional `\r` before it) is answered with exactly `n`
//! bytes of [`pattern`], then the server closes. Anything else is closed
//! without a byte.
//!
//! Each listening endpoint has a pool of sockets, so several connections
//! run at once; a socket whose connection is over goes back to listening.
//! Invariant: every socket of the pool is either listening or serving one
//! connection, so the number of concurrent connections per endpoint is the
//! pool size (further SYNs are reset by smoltcp, as a full backlog would).

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::IpListenEndpoint;

/// The byte at `offset` of every response body (and of ping data): a
/// period of 251 (prime), so a segment lost, repeated or reordered shows.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// Largest body served (64 MiB): bounds a hostile request.
pub const MAX_BODY: u64 = 64 << 20;
/// Longest request line accepted.
const MAX_REQUEST: usize = 256;
const RX: usize = 4096;
const TX: usize = 64 * 1024;

/// Counters of the service (all endpoints together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Connections accepted.
    pub connections: u64,
    /// Well-formed requests.
    pub requests: u64,
    /// Body bytes queued for sending.
    pub bytes: u64,
    /// Malformed or oversized requests (closed without a body).
    pub bad_requests: u64,
}

/// Where one socket of the pool is.
enum Conn {
    Listening,
    Reading(Vec<u8>),
    Sending { next: u64, end: u64 },
    Closing,
}

struct Slot {
    handle: SocketHandle,
    endpoint: IpListenEndpoint,
    conn: Conn,
}

/// The service (see the module doc).
pub struct HttpServer {
    slots: Vec<Slot>,
    stats: HttpStats,
}

/// Parse `GET /<n>` (without the line end).
fn parse_request(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.strip_prefix(b"GET /")?;
    let digits = digits.split(|&c| c == b' ').next()?; // allow " HTTP/1.0"
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (n <= MAX_BODY).then_some(n)
}

impl HttpServer {
    /// `pool` sockets listening on each of `endpoints`.
    pub fn new(
        sockets: &mut SocketSet<'static>,
        endpoints: &[IpListenEndpoint],
        pool: usize,
    ) -> HttpServer {
        let mut slots = Vec::with_capacity(endpoints.len() * pool);
        for &endpoint in endpoints {
            for _ in 0..pool {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; RX]),
                    tcp::SocketBuffer::new(vec![0; TX]),
                );
                // A fresh socket always listens.
                let _ = s.listen(endpoint);
                slots.push(Slot {
                    handle: sockets.add(s),
                    endpoint,
                    conn: Conn::Listening,
                });
            }
        }
        HttpServer {
            slots,
            stats: HttpStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> HttpStats {
        self.stats
    }

    /// Serve every socket once (after each interface poll).
    pub fn serve(&mut self, sockets: &mut SocketSet<'static>) {
        for slot in &mut self.slots {
            let s = sockets.get_mut::<tcp::Socket>(slot.handle);
            serve_one(slot, s, &mut self.stats);
        }
    }
}

fn serve_one(slot: &mut Slot, s: &mut tcp::Socket<'_>, stats: &mut HttpStats) {
    if let Conn::Listening = slot.conn {
        if s.is_listening() {
            return;
        }
        stats.connections += 1;
        slot.conn = Conn::Reading(Vec::new());
    }
    if let Conn::Reading(buf) = &mut slot.conn {
        while s.can_recv() && !buf.contains(&b'\n') {
            let room = MAX_REQUEST + 1 - buf.len();
            let _ = s.recv(|b| {
                let n = b.len().min(room);
                buf.extend_from_slice(&b[..n]);
                (n, ())
            });
            if buf.len() > MAX_REQUEST {
                break;
            }
        }
        if let Some(end) = buf.iter().position(|&c| c == b'\n') {
            match parse_request(&buf[..end]) {
                Some(n) => {
                    stats.requests += 1;
                    stats.bytes += n;
                    slot.conn = Conn::Sending { next: 0, end: n };
                }
                None => {
                    stats.bad_requests += 1;
                    s.close();
                    slot.conn = Conn::Closing;
                }
            }
        } else if buf.len() > MAX_REQUEST || (s.state() != tcp::State::SynReceived && !s.may_recv())
        {
            // A client that closes without a byte made no request at all.
            stats.bad_requests += u64::from(!buf.is_empty());
            s.close();
            slot.conn = Conn::Closing;
        }
    }
    if let Conn::Sending { next, end } = &mut slot.conn {
        while *next < *end && s.can_send() {
            let base = *next;
            let left = *end - base;
            let r = s.send(|b| {
                let n = (b.len() as u64).min(left) as usize;
                for (i, c) in b[..n].iter_mut().enumerate() {
                    *c = pattern(base + i as u64);
                }
                (n, n)
            });
            match r {
                Ok(0) | Err(_) => break,
                Ok(n) => *next += n as u64,
            }
        }
        if *next >= *end || !s.may_send() {
            s.close();
            slot.conn = Conn::Closing;
        }
    }
    if let Conn::Closing = slot.conn {
        // Our FIN is out and acknowledged once we reach TIME-WAIT; the
        // client's side is done then too, so the socket can serve again
        // without waiting out TIME-WAIT (only the lab's clients talk to it).
        if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
            s.abort();
            let _ = s.listen(slot.endpoint);
            slot.conn = Conn::Listening;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(parse_request(b"GET /0"), Some(0));
        assert_eq!(parse_request(b"GET /102400\r"), Some(102400));
        assert_eq!(parse_request(b"GET /5 HTTP/1.0\r"), Some(5));
        for bad in [
            &b"GET /"[..],
            b"GET /-1",
            b"GET /1x",
            b"PUT /1",
            b"GET /99999999999999",
            b"GET /67108865",
        ] {
            assert_eq!(parse_request(bad), None, "{bad:?}");
        }
        assert_eq!(pattern(0), 0);
        assert_eq!(pattern(251), 0);
        assert_eq!(pattern(252), 1);
    }
}
