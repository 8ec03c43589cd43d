//! Test packets: Ethernet + IPv4/IPv6 + TCP/UDP with real checksums, and a
//! checksum verifier independent of `xen::frame::offload`.

/// Ones' complement sum of `data` added to `sum` (not folded).
pub fn sum(mut sum: u64, data: &[u8]) -> u64 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Fold to 16 bits.
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Offsets of an Ethernet/IP/L4 packet built here.
struct Layout {
    v6: bool,
    l4: usize,
    proto: u8,
}

fn layout(p: &[u8]) -> Layout {
    let v6 = u16::from_be_bytes([p[12], p[13]]) == 0x86dd;
    if v6 {
        Layout {
            v6,
            l4: 14 + 40,
            proto: p[14 + 6],
        }
    } else {
        Layout {
            v6,
            l4: 14 + usize::from(p[14] & 0xf) * 4,
            proto: p[14 + 9],
        }
    }
}

fn pseudo(p: &[u8], l: &Layout) -> u64 {
    let l4_len = p.len() - l.l4;
    let mut s = if l.v6 {
        sum(0, &p[14 + 8..14 + 40])
    } else {
        sum(0, &p[14 + 12..14 + 20])
    };
    s += u64::from(l.proto);
    s += l4_len as u64;
    s
}

fn csum_field(l: &Layout) -> usize {
    l.l4 + if l.proto == TCP { 16 } else { 6 }
}

/// Whether the L4 checksum of `p` is complete and right.
pub fn l4_checksum_ok(p: &[u8]) -> bool {
    let l = layout(p);
    fold(sum(pseudo(p, &l), &p[l.l4..])) == 0xffff
}

/// Replace the L4 checksum by the pseudo-header sum (CHECKSUM_PARTIAL).
pub fn make_partial(p: &mut [u8]) {
    let l = layout(p);
    let f = csum_field(&l);
    let v = fold(pseudo(p, &l));
    p[f..f + 2].copy_from_slice(&v.to_be_bytes());
}

/// Whether the L4 checksum field holds the pseudo-header sum.
pub fn is_partial(p: &[u8]) -> bool {
    let l = layout(p);
    let f = csum_field(&l);
    u16::from_be_bytes([p[f], p[f + 1]]) == fold(pseudo(p, &l))
}

fn finish(mut p: Vec<u8>) -> Vec<u8> {
    let l = layout(&p);
    let f = csum_field(&l);
    p[f..f + 2].fill(0);
    let mut c = !fold(sum(pseudo(&p, &l), &p[l.l4..]));
    if l.proto == UDP && c == 0 {
        c = 0xffff;
    }
    p[f..f + 2].copy_from_slice(&c.to_be_bytes());
    p
}

fn payload(n: usize, seed: u8) -> impl Iterator<Item = u8> {
    (0..n).map(move |i| (i as u8).wrapping_mul(31).wrapping_add(seed))
}

fn eth(v6: bool) -> Vec<u8> {
    let mut p = vec![
        0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    p.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    p
}

fn ipv4(p: &mut Vec<u8>, proto: u8, l4_len: usize) {
    let start = p.len();
    let total = (20 + l4_len) as u16;
    p.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    p[start + 2..start + 4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[10, 137, 0, 5, 93, 184, 216, 34]);
    let c = !fold(sum(0, &p[start..start + 20]));
    p[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

fn ipv6(p: &mut Vec<u8>, proto: u8, l4_len: usize) {
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(l4_len as u16).to_be_bytes());
    p.extend_from_slice(&[proto, 64]);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    p.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22,
    ]);
}

fn tcp_header(p: &mut Vec<u8>) {
    // ports 40000 -> 443, seq 1000, ack 1, data offset 5, ACK|PSH.
    p.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0, 0, 0x03, 0xe8, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
}

/// A TCP/IPv4 packet with `n` payload bytes and a full checksum.
pub fn tcp4(n: usize, seed: u8) -> Vec<u8> {
    let mut p = eth(false);
    ipv4(&mut p, TCP, 20 + n);
    tcp_header(&mut p);
    p.extend(payload(n, seed));
    finish(p)
}

/// A TCP/IPv6 packet with `n` payload bytes and a full checksum.
pub fn tcp6(n: usize, seed: u8) -> Vec<u8> {
    let mut p = eth(true);
    ipv6(&mut p, TCP, 20 + n);
    tcp_header(&mut p);
    p.extend(payload(n, seed));
    finish(p)
}

/// A UDP/IPv4 packet with `n` payload bytes and a full checksum.
pub fn udp4(n: usize, seed: u8) -> Vec<u8> {
    let mut p = eth(false);
    ipv4(&mut p, UDP, 8 + n);
    let len = (8 + n) as u16;
    p.extend_from_slice(&[0xd4, 0x31, 0x00, 0x35]);
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend(payload(n, seed));
    finish(p)
}

/// The TCP payload of a packet built here.
pub fn tcp_payload(p: &[u8]) -> &[u8] {
    let l = layout(p);
    let doff = usize::from(p[l.l4 + 12] >> 4) * 4;
    &p[l.l4 + doff..]
}

/// Arbitrary bytes (not IP).
pub fn raw(n: usize, seed: u8) -> Vec<u8> {
    payload(n, seed).collect()
}
