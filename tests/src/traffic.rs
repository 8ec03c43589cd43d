//! Verifiable traffic for the vif tests and benchmark: one TCP stream
//! (IPv4, or IPv6 for a share of frames) whose payload byte at stream
//! position `p` is [`pattern`]`(p)`, cut into frames of random sizes.
//!
//! The checker follows the stream: every frame must continue exactly where
//! the previous one ended (TCP sequence number), carry the expected bytes,
//! have a consistent IP length, a valid IP header checksum, and a TCP
//! checksum that verifies (after completing it if the frame says the
//! checksum is partial). Loss, duplication, reordering or corruption fail.
//! Software segmentation on the way is allowed (the stream is the same,
//! only cut finer); GSO metadata, when present, must describe the frame.

use xen::frame::{Checksum, Frame, Gso, GsoType};
use xen::memory::pool::PagePool;

/// Ethernet + IPv4 + TCP header bytes of generated frames.
pub const V4_HEADERS: usize = 14 + 20 + 20;
/// Ethernet + IPv6 + TCP header bytes.
pub const V6_HEADERS: usize = 14 + 40 + 20;
/// The MSS of generated GSO frames.
pub const MSS: u16 = 1448;

/// The stream byte at position `p`.
#[inline]
pub fn pattern(p: u32) -> u8 {
    let x = p.wrapping_mul(0x9E37_79B1);
    (x >> 24) as u8 ^ (p as u8)
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is mapped to a fixed non-zero seed).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x2545_F491_4F6C_DD1D
        } else {
            seed
        })
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// Log-uniform in `lo..=hi` (as many small frames as large ones per
    /// octave, like real traffic mixes).
    pub fn log_range(&mut self, lo: usize, hi: usize) -> usize {
        let (a, b) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((a + (b - a) * u).exp() as usize).clamp(lo, hi)
    }
}

/// How frames are sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Every frame this long.
    Fixed(usize),
    /// Log-uniform between the bounds.
    LogUniform(usize, usize),
}

/// What the sender may produce.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Frame sizes (clamped to `max_len`).
    pub sizes: Sizes,
    /// Longest frame the path can carry (4096 without scatter-gather).
    pub max_len: usize,
    /// Mark frames longer than one MSS as GSO super-packets.
    pub gso: bool,
    /// Leave TCP checksums partial (csum_blank) instead of complete.
    pub partial_csum: bool,
    /// One frame in this many is IPv6 (0: never).
    pub v6_every: u32,
    /// PRNG seed.
    pub seed: u64,
}

/// Generates the stream's frames.
#[derive(Debug)]
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    seq: u32,
    ip_id: u16,
    /// Frames generated.
    pub frames: u64,
    /// Payload bytes generated.
    pub payload_bytes: u64,
    /// Frame bytes generated.
    pub frame_bytes: u64,
}

impl Generator {
    /// A generator starting at stream position 0.
    pub fn new(cfg: GenConfig) -> Generator {
        Generator {
            rng: Rng::new(cfg.seed),
            cfg,
            seq: 0,
            ip_id: 1,
            frames: 0,
            payload_bytes: 0,
            frame_bytes: 0,
        }
    }

    /// The next frame, built in `pool` pages; `None` if the pool is short.
    pub fn next(&mut self, pool: &mut PagePool) -> Option<Frame> {
        let v6 = self.cfg.v6_every != 0 && self.frames % u64::from(self.cfg.v6_every) == 1;
        let hdr = if v6 { V6_HEADERS } else { V4_HEADERS };
        let len = match self.cfg.sizes {
            Sizes::Fixed(n) => n,
            Sizes::LogUniform(a, b) => self.rng.log_range(a, b),
        }
        .clamp(hdr + 1, self.cfg.max_len);
        let payload = len - hdr;
        let pages = len.div_ceil(4096);
        if pool.available() < pages {
            return None;
        }
        let mut f = Frame::new();
        let mut head = [0u8; V6_HEADERS];
        build_headers(&mut head[..hdr], v6, self.seq, payload, self.ip_id);
        // Fill the pages: headers then the stream bytes.
        let mut written = 0usize;
        let mut stream = self.seq;
        while written < len {
            let mut page = pool.alloc().expect("checked availability");
            let n = (len - written).min(4096);
            let buf = &mut pool.bytes_mut(&mut page)[..n];
            let mut i = 0;
            while i < n && written + i < hdr {
                buf[i] = head[written + i];
                i += 1;
            }
            for b in &mut buf[i..] {
                *b = pattern(stream);
                stream = stream.wrapping_add(1);
            }
            f.push(page, 0, n).map_err(|(_, e)| e).expect("fits");
            written += n;
        }
        // TCP checksum: partial (pseudo header only) or complete.
        let l4 = hdr - 20;
        let pseudo = pseudo_sum(&head[..hdr], v6, (payload + 20) as u32);
        if self.cfg.partial_csum {
            let c = fold(pseudo);
            f.write(pool, l4 + 16, &c.to_be_bytes());
            f.csum = Checksum::Partial;
        } else {
            let c = !fold(pseudo + sum_frame(pool, &f, l4));
            f.write(pool, l4 + 16, &c.to_be_bytes());
            f.csum = Checksum::Validated;
        }
        if self.cfg.gso && payload > usize::from(MSS) {
            f.gso = Some(Gso {
                kind: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
                mss: MSS,
            });
        }
        self.seq = self.seq.wrapping_add(payload as u32);
        self.ip_id = self.ip_id.wrapping_add(1);
        self.frames += 1;
        self.payload_bytes += payload as u64;
        self.frame_bytes += len as u64;
        Some(f)
    }
}

fn build_headers(h: &mut [u8], v6: bool, seq: u32, payload: usize, id: u16) {
    h[0..6].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
    h[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00]);
    let l4 = if v6 {
        h[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let ip = &mut h[14..54];
        ip.fill(0);
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((payload + 20) as u16).to_be_bytes());
        ip[6] = 6;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0x89, 0, 5]);
        ip[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        54
    } else {
        h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut h[14..34];
        ip.fill(0);
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((payload + 40) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 137, 0, 5]);
        ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
        let c = !fold(sum(ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        34
    };
    let tcp = &mut h[l4..l4 + 20];
    tcp.fill(0);
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH|ACK
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
}

/// One's-complement sum of `data` as big-endian 16-bit words (unfolded).
pub fn sum(data: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = c.remainder() {
        s += u64::from(*b) << 8;
    }
    s
}

/// Fold a sum to 16 bits.
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The pseudo-header sum for TCP over the IP header at `h[14..]`.
fn pseudo_sum(h: &[u8], v6: bool, l4_len: u32) -> u64 {
    let addrs = if v6 { &h[22..54] } else { &h[26..34] };
    sum(addrs) + 6 + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff)
}

/// Sum of the frame's bytes from `from` to the end, as 16-bit words
/// counted from `from` (a segment starting at an odd distance contributes
/// its sum byte-swapped, RFC 1071's byte-order independence).
fn sum_frame(pool: &PagePool, f: &Frame, from: usize) -> u64 {
    let mut s = 0u64;
    let mut pos = 0usize;
    for seg in f.segments() {
        let b = seg.bytes(pool);
        let start = from.saturating_sub(pos).min(b.len());
        let data = &b[start..];
        if !data.is_empty() {
            let part = sum(data);
            if (pos + start - from) % 2 == 1 {
                s += u64::from(fold(part).swap_bytes());
            } else {
                s += part;
            }
        }
        pos += b.len();
    }
    s
}

/// What the checker saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Frames accepted.
    pub frames: u64,
    /// Payload bytes accepted (stream bytes).
    pub payload_bytes: u64,
    /// Frame bytes accepted.
    pub frame_bytes: u64,
    /// Frames that arrived with GSO metadata.
    pub gso_frames: u64,
    /// Frames that arrived with a partial checksum.
    pub partial_frames: u64,
    /// Times the checker resynchronised (after a restart).
    pub resyncs: u64,
}

/// Follows the stream (see the module doc).
#[derive(Debug, Default)]
pub struct Checker {
    next_seq: Option<u32>,
    /// What was accepted so far.
    pub stats: CheckStats,
}

impl Checker {
    /// A checker expecting the stream from position 0.
    pub fn new() -> Checker {
        Checker {
            next_seq: Some(0),
            stats: CheckStats::default(),
        }
    }

    /// Accept the next frame wherever it starts (after a restart lost the
    /// frames in flight).
    pub fn resync(&mut self) {
        self.next_seq = None;
        self.stats.resyncs += 1;
    }

    /// Check one received frame.
    pub fn check(&mut self, pool: &PagePool, f: &Frame) -> Result<(), String> {
        let mut head = [0u8; V6_HEADERS];
        let n = f.read(pool, 0, &mut head);
        if n < V4_HEADERS {
            return Err(format!("frame of {} bytes is too short", f.len()));
        }
        let v6 = match u16::from_be_bytes([head[12], head[13]]) {
            0x0800 => false,
            0x86dd => true,
            t => return Err(format!("ethertype {t:#06x}")),
        };
        let hdr = if v6 { V6_HEADERS } else { V4_HEADERS };
        if n < hdr {
            return Err(format!("frame of {} bytes is too short", f.len()));
        }
        let payload = f.len() - hdr;
        if v6 {
            let pl = usize::from(u16::from_be_bytes([head[18], head[19]]));
            if pl != payload + 20 {
                return Err(format!(
                    "IPv6 payload length {pl}, frame carries {}",
                    payload + 20
                ));
            }
        } else {
            let tl = usize::from(u16::from_be_bytes([head[16], head[17]]));
            if tl != payload + 40 {
                return Err(format!(
                    "IPv4 total length {tl}, frame carries {}",
                    payload + 40
                ));
            }
            if fold(sum(&head[14..34])) != 0xffff {
                return Err("IPv4 header checksum wrong".into());
            }
        }
        let l4 = hdr - 20;
        let seq = u32::from_be_bytes([head[l4 + 4], head[l4 + 5], head[l4 + 6], head[l4 + 7]]);
        match self.next_seq {
            Some(s) if s != seq => {
                return Err(format!(
                    "stream position {seq}, expected {s} (frame {} of {} bytes)",
                    self.stats.frames,
                    f.len()
                ))
            }
            _ => {}
        }
        // Payload bytes.
        let mut pos = 0usize;
        let mut stream = seq;
        for s in f.segments() {
            let b = s.bytes(pool);
            let skip = hdr.saturating_sub(pos).min(b.len());
            for (i, &x) in b[skip..].iter().enumerate() {
                if x != pattern(stream) {
                    return Err(format!(
                        "payload byte {} (stream {stream}) is {x:#04x}, expected {:#04x}",
                        pos + skip + i - hdr,
                        pattern(stream)
                    ));
                }
                stream = stream.wrapping_add(1);
            }
            pos += b.len();
        }
        // TCP checksum.
        let pseudo = pseudo_sum(&head[..hdr], v6, (payload + 20) as u32);
        let field = u16::from_be_bytes([head[l4 + 16], head[l4 + 17]]);
        if f.csum == Checksum::Partial {
            if field != fold(pseudo) {
                return Err(format!(
                    "partial TCP checksum {field:#06x}, pseudo-header sum is {:#06x}",
                    fold(pseudo)
                ));
            }
            self.stats.partial_frames += 1;
        } else if fold(pseudo + sum_frame(pool, f, l4)) != 0xffff {
            return Err(format!("TCP checksum {field:#06x} does not verify"));
        }
        if let Some(g) = f.gso {
            let kind = if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 };
            if g.kind != kind || g.mss == 0 {
                return Err(format!("GSO metadata {g:?} on a {kind:?} frame"));
            }
            self.stats.gso_frames += 1;
        }
        self.next_seq = Some(seq.wrapping_add(payload as u32));
        self.stats.frames += 1;
        self.stats.payload_bytes += payload as u64;
        self.stats.frame_bytes += f.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalRam;

    fn cfg(partial: bool, gso: bool) -> GenConfig {
        GenConfig {
            sizes: Sizes::LogUniform(60, 65535),
            max_len: 65535,
            gso,
            partial_csum: partial,
            v6_every: 3,
            seed: 7,
        }
    }

    #[test]
    fn generated_stream_checks_out() {
        let ram = LocalRam::new(64);
        let mut pool = PagePool::new(&ram, 64).unwrap();
        for (partial, gso) in [(false, false), (true, true)] {
            let mut g = Generator::new(cfg(partial, gso));
            let mut c = Checker::new();
            for _ in 0..300 {
                let f = g.next(&mut pool).unwrap();
                c.check(&pool, &f).unwrap();
                f.free(&mut pool);
            }
            assert_eq!(c.stats.payload_bytes, g.payload_bytes);
            assert_eq!(pool.available(), 64);
            assert!(c.stats.gso_frames > 0 || !gso);
        }
    }

    #[test]
    fn checker_catches_corruption_loss_and_checksums() {
        let ram = LocalRam::new(64);
        let mut pool = PagePool::new(&ram, 64).unwrap();
        let mut g = Generator::new(GenConfig {
            sizes: Sizes::Fixed(3000),
            v6_every: 0,
            ..cfg(false, false)
        });
        let frames: Vec<Frame> = (0..4).map(|_| g.next(&mut pool).unwrap()).collect();
        let mut c = Checker::new();
        c.check(&pool, &frames[0]).unwrap();
        // Loss: frame 2 after frame 0.
        assert!(c.check(&pool, &frames[2]).unwrap_err().contains("expected"));
        c.check(&pool, &frames[1]).unwrap();
        // Corruption of one payload byte.
        let mut f = g.next(&mut pool).unwrap();
        let mut b = [0u8; 1];
        f.read(&pool, 2000, &mut b);
        f.write(&pool, 2000, &[b[0] ^ 1]);
        let mut c2 = Checker::new();
        c2.resync();
        assert!(c2.check(&pool, &f).unwrap_err().contains("payload byte"));
        // A wrong TCP checksum with correct payload.
        f.write(&pool, 2000, &b);
        f.write(&pool, V4_HEADERS - 4, &[0, 0]);
        let mut c3 = Checker::new();
        c3.resync();
        assert!(c3.check(&pool, &f).unwrap_err().contains("checksum"));
        f.free(&mut pool);
        for f in frames {
            f.free(&mut pool);
        }
        assert_eq!(pool.available(), 64);
    }
}
