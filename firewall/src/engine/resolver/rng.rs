//! [`Rng`]: the resolver's unpredictable numbers (query ids, source
//! ports), SipHash-2-4 of a counter under a secret key.
//!
//! Why keyed: an off-path attacker who wants to forge an answer must
//! guess the id and the port of an outstanding query; with a PRF of a
//! counter under a key it does not know, seeing some ids and ports (in
//! its own captures, or from sys-net) tells it nothing about the next.
//! The key comes from the seed the engine is built with, so that seed
//! must itself be unpredictable (e.g. from the hypervisor's entropy or a
//! boot-time cycle counter), and [`Rng::add_entropy`] folds in more.

/// A keyed counter-mode generator. Invariant: the key never leaves it.
#[derive(Clone)]
pub struct Rng {
    k0: u64,
    k1: u64,
    counter: u64,
}

impl core::fmt::Debug for Rng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Rng { .. }")
    }
}

/// splitmix64's step: spreads a seed over a 64-bit key word.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SipHash-2-4 (Aumasson and Bernstein) of one 8-byte little-endian
/// message word under the key `(k0, k1)`.
pub fn siphash24(k0: u64, k1: u64, m: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    // The message word, then the final block: the length (8) in the top
    // byte, no tail bytes.
    for block in [m, 8u64 << 56] {
        v[3] ^= block;
        round(&mut v);
        round(&mut v);
        v[0] ^= block;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

impl Rng {
    /// A generator keyed by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut s = seed;
        Rng {
            k0: splitmix(&mut s),
            k1: splitmix(&mut s),
            counter: 0,
        }
    }

    /// Folds `extra` into the key: the output stays unpredictable if
    /// either the old key or `extra` is.
    pub fn add_entropy(&mut self, extra: u64) {
        let next = self.next_u64();
        self.k0 ^= siphash24(self.k1, next, extra);
        self.k1 = self.k1.rotate_left(29) ^ next;
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = siphash24(self.k0, self.k1, self.counter);
        self.counter = self.counter.wrapping_add(1);
        out
    }

    /// The next 16 random bits.
    pub fn next_u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    /// A uniform value in `lo..=hi` (`lo <= hi`); the modulo bias of a
    /// 64-bit draw over a range of at most 2^16 is below 2^-47.
    pub fn in_range(&mut self, lo: u16, hi: u16) -> u16 {
        let span = u64::from(hi - lo) + 1;
        lo + (self.next_u64() % span) as u16
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    #[allow(deprecated)]
    fn siphash_matches_std() {
        use core::hash::Hasher;
        for (k0, k1, m) in [
            (0u64, 0u64, 0u64),
            (
                0x0706_0504_0302_0100,
                0x0f0e_0d0c_0b0a_0908,
                0x0706_0504_0302_0100,
            ),
            (u64::MAX, 1, 0xdead_beef),
        ] {
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write_u64(m);
            assert_eq!(siphash24(k0, k1, m), h.finish());
        }
        // The reference vector for the 8-byte message 00..07 under the key
        // 00..0f (the paper's Appendix A table, entry 8).
        assert_eq!(
            siphash24(
                0x0706_0504_0302_0100,
                0x0f0e_0d0c_0b0a_0908,
                0x0706_0504_0302_0100
            ),
            0x93f5_f579_9a93_2462
        );
    }

    #[test]
    fn seeds_give_different_streams() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(2);
        let mut a2 = Rng::new(1);
        let xs: std::vec::Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: std::vec::Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let zs: std::vec::Vec<u64> = (0..4).map(|_| a2.next_u64()).collect();
        assert_ne!(xs, ys);
        assert_eq!(xs, zs);
        let mut c = Rng::new(1);
        c.add_entropy(99);
        assert_ne!(c.next_u64(), Rng::new(1).next_u64());
        assert_eq!(std::format!("{c:?}"), "Rng { .. }");
    }

    #[test]
    fn ranges() {
        let mut r = Rng::new(7);
        let mut seen_lo = false;
        let mut seen_hi = false;
        for _ in 0..2000 {
            let v = r.in_range(10, 13);
            assert!((10..=13).contains(&v));
            seen_lo |= v == 10;
            seen_hi |= v == 13;
        }
        assert!(seen_lo && seen_hi);
        assert_eq!(r.in_range(5, 5), 5);
        let _ = r.in_range(0, u16::MAX);
        let _ = r.next_u16();
    }
}
