//! Keyed hashing for the engine's tables.
//!
//! The flow table is indexed by tuples that clients (and remote hosts)
//! choose: with an unkeyed or weak hash, a hostile client could pick source
//! ports whose keys all land in one probe sequence and turn every lookup
//! into a linear scan. SipHash with a secret 128-bit key, drawn at boot,
//! makes the bucket of a key unpredictable to anyone who does not know the
//! key.
//!
//! [`SipHasher`] is generic over its compression (`C`) and finalisation
//! (`D`) round counts: [`SipHasher13`] (SipHash-1-3, what the tables use, as
//! Rust's std and CPython do for hash tables) and [`SipHasher24`]
//! (SipHash-2-4, the conservative PRF of the original paper; tested against
//! its published vectors). [`KeyedState`] is the [`BuildHasher`] holding
//! the key.
//!
//! Invariant: the output depends only on the key and the concatenation of
//! the bytes written, not on how the writes were split (the hasher buffers
//! a partial word), so [`core::hash::Hash`] impls may write in pieces.

use core::fmt;
use core::hash::{BuildHasher, Hasher};

/// SipHash with `C` compression rounds per 8-byte word and `D`
/// finalisation rounds, keyed with 128 bits.
#[derive(Clone)]
pub struct SipHasher<const C: usize, const D: usize> {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Bytes written but not yet compressed, little-endian, low bytes first.
    tail: u64,
    /// How many bytes `tail` holds (0..8).
    ntail: usize,
    /// Total bytes written (only its low 8 bits enter the final word).
    length: usize,
}

/// SipHash-1-3: the table hasher (fast, adequate against hash flooding).
pub type SipHasher13 = SipHasher<1, 3>;

/// SipHash-2-4: the reference parameters of the SipHash paper.
pub type SipHasher24 = SipHasher<2, 4>;

impl<const C: usize, const D: usize> SipHasher<C, D> {
    /// A hasher keyed with `key` (the two little-endian 64-bit halves
    /// `k0 = key[0..8]`, `k1 = key[8..16]`, as in the reference code).
    pub fn new_with_key(key: &[u8; 16]) -> Self {
        let (k0, k1) = split_key(key);
        Self::new_with_keys(k0, k1)
    }

    fn new_with_keys(k0: u64, k1: u64) -> Self {
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    #[inline]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        for _ in 0..C {
            self.round();
        }
        self.v0 ^= m;
    }
}

fn split_key(key: &[u8; 16]) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&key[..8]);
    hi.copy_from_slice(&key[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// Little-endian load of up to 8 bytes.
#[inline]
fn load_le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl<const C: usize, const D: usize> Hasher for SipHasher<C, D> {
    fn write(&mut self, mut bytes: &[u8]) {
        self.length = self.length.wrapping_add(bytes.len());
        if self.ntail != 0 {
            let take = (8 - self.ntail).min(bytes.len());
            self.tail |= load_le(&bytes[..take]) << (8 * self.ntail);
            self.ntail += take;
            bytes = &bytes[take..];
            if self.ntail < 8 {
                return;
            }
            let m = self.tail;
            self.compress(m);
            self.tail = 0;
            self.ntail = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.compress(load_le(word));
        }
        let rest = words.remainder();
        self.tail = load_le(rest);
        self.ntail = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut s = self.clone();
        let b = ((self.length as u64 & 0xff) << 56) | self.tail;
        s.compress(b);
        s.v2 ^= 0xff;
        for _ in 0..D {
            s.round();
        }
        s.v0 ^ s.v1 ^ s.v2 ^ s.v3
    }
}

impl<const C: usize, const D: usize> fmt::Debug for SipHasher<C, D> {
    /// The state is derived from the key: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SipHasher<{C}, {D}> {{ .. }}")
    }
}

/// The [`BuildHasher`] of the engine's tables: a secret 128-bit key, fixed
/// for the life of a table (changing it would lose every entry).
#[derive(Clone)]
pub struct KeyedState {
    k0: u64,
    k1: u64,
}

impl KeyedState {
    /// A state keyed with `key`, which should come from a good random
    /// source at boot (an attacker who learns it can flood the tables).
    pub fn new(key: [u8; 16]) -> Self {
        let (k0, k1) = split_key(&key);
        Self { k0, k1 }
    }
}

impl BuildHasher for KeyedState {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

impl fmt::Debug for KeyedState {
    /// Redacted: the key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedState { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    /// The key of the reference test vectors: bytes 00..0f.
    const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// SipHash-2-4 of the messages `00 01 .. (i-1)` for i = 0..64 under
    /// [`KEY`]: the `vectors_sip64` table of the reference implementation
    /// (github.com/veorq/SipHash), as 64-bit little-endian integers. Entry
    /// 15 is the paper's worked example (Appendix A), 0xa129ca6149be45e5.
    const SIP24: [u64; 64] = [
        0x726fdb47dd0e0e31,
        0x74f839c593dc67fd,
        0x0d6c8009d9a94f5a,
        0x85676696d7fb7e2d,
        0xcf2794e0277187b7,
        0x18765564cd99a68d,
        0xcbc9466e58fee3ce,
        0xab0200f58b01d137,
        0x93f5f5799a932462,
        0x9e0082df0ba9e4b0,
        0x7a5dbbc594ddb9f3,
        0xf4b32f46226bada7,
        0x751e8fbc860ee5fb,
        0x14ea5627c0843d90,
        0xf723ca908e7af2ee,
        0xa129ca6149be45e5,
        0x3f2acc7f57c29bdb,
        0x699ae9f52cbe4794,
        0x4bc1b3f0968dd39c,
        0xbb6dc91da77961bd,
        0xbed65cf21aa2ee98,
        0xd0f2cbb02e3b67c7,
        0x93536795e3a33e88,
        0xa80c038ccd5ccec8,
        0xb8ad50c6f649af94,
        0xbce192de8a85b8ea,
        0x17d835b85bbb15f3,
        0x2f2e6163076bcfad,
        0xde4daaaca71dc9a5,
        0xa6a2506687956571,
        0xad87a3535c49ef28,
        0x32d892fad841c342,
        0x7127512f72f27cce,
        0xa7f32346f95978e3,
        0x12e0b01abb051238,
        0x15e034d40fa197ae,
        0x314dffbe0815a3b4,
        0x027990f029623981,
        0xcadcd4e59ef40c4d,
        0x9abfd8766a33735c,
        0x0e3ea96b5304a7d0,
        0xad0c42d6fc585992,
        0x187306c89bc215a9,
        0xd4a60abcf3792b95,
        0xf935451de4f21df2,
        0xa9538f0419755787,
        0xdb9acddff56ca510,
        0xd06c98cd5c0975eb,
        0xe612a3cb9ecba951,
        0xc766e62cfcadaf96,
        0xee64435a9752fe72,
        0xa192d576b245165a,
        0x0a8787bf8ecb74b2,
        0x81b3e73d20b49b6f,
        0x7fa8220ba3b2ecea,
        0x245731c13ca42499,
        0xb78dbfaf3a8d83bd,
        0xea1ad565322a1a0b,
        0x60e61c23a3795013,
        0x6606d7e446282b93,
        0x6ca4ecb15c5f91e1,
        0x9f626da15c9625f3,
        0xe51b38608ef25f57,
        0x958a324ceb064572,
    ];

    /// SipHash-1-3 under [`KEY`] of the same messages, lengths 0..=16. No
    /// official table exists; these were computed with an independent
    /// implementation (a few lines of Python, parameterised by rounds) that
    /// reproduces all of [`SIP24`] with (2, 4) and the zero-key values of
    /// [`sip13_zero_key`], which two unrelated projects publish.
    const SIP13: [u64; 17] = [
        0xabac0158050fc4dc,
        0xc9f49bf37d57ca93,
        0x82cb9b024dc7d44d,
        0x8bf80ab8e7ddf7fb,
        0xcf75576088d38328,
        0xdef9d52f49533b67,
        0xc50d2b50c59f22a7,
        0xd3927d989bb11140,
        0x369095118d299a8e,
        0x25a48eb36c063de4,
        0x79de85ee92ff097f,
        0x70c118c1f94dc352,
        0x78a384b157b4d9a2,
        0x306f760c1229ffa7,
        0x605aa111c0f95d34,
        0xd320d86d2a519956,
        0xcc4fdd1a7d908b66,
    ];

    fn message(len: usize) -> [u8; 64] {
        let mut m = [0u8; 64];
        for (i, b) in m.iter_mut().enumerate() {
            *b = i as u8;
        }
        let _ = len;
        m
    }

    fn hash<const C: usize, const D: usize>(key: &[u8; 16], bytes: &[u8]) -> u64 {
        let mut h = SipHasher::<C, D>::new_with_key(key);
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn sip24_reference_vectors() {
        let m = message(64);
        for (len, &want) in SIP24.iter().enumerate() {
            assert_eq!(hash::<2, 4>(&KEY, &m[..len]), want, "length {len}");
        }
    }

    #[test]
    fn sip13_vectors() {
        let m = message(64);
        for (len, &want) in SIP13.iter().enumerate() {
            assert_eq!(hash::<1, 3>(&KEY, &m[..len]), want, "length {len}");
        }
    }

    #[test]
    fn sip13_zero_key() {
        let zero = [0u8; 16];
        assert_eq!(hash::<1, 3>(&zero, b""), 0xd1fba762150c532c);
        assert_eq!(hash::<1, 3>(&zero, b"siphash"), 0x8264ceeccb16bcbe);
        assert_eq!(hash::<1, 3>(&zero, b"digest-sip_hash"), 0xce31007e34130c0a);
    }

    #[test]
    fn split_writes_match_one_write() {
        let m = message(64);
        for len in 0..64 {
            let whole = hash::<2, 4>(&KEY, &m[..len]);
            for cut in 0..=len {
                for cut2 in cut..=len {
                    let mut h = SipHasher24::new_with_key(&KEY);
                    h.write(&m[..cut]);
                    h.write(&m[cut..cut2]);
                    h.write(&m[cut2..len]);
                    assert_eq!(h.finish(), whole, "len {len} cuts {cut} {cut2}");
                }
            }
        }
    }

    #[test]
    fn finish_does_not_consume() {
        let mut h = SipHasher13::new_with_key(&KEY);
        h.write(b"abc");
        assert_eq!(h.finish(), h.finish());
        h.write(b"def");
        assert_eq!(h.finish(), hash::<1, 3>(&KEY, b"abcdef"));
    }

    #[test]
    fn build_hasher_is_keyed() {
        let a = KeyedState::new(KEY);
        let b = KeyedState::new([7; 16]);
        assert_eq!(a.hash_one(42u64), a.hash_one(42u64));
        assert_ne!(a.hash_one(42u64), b.hash_one(42u64));
        let mut h = a.build_hasher();
        h.write(&[1, 2, 3]);
        assert_eq!(h.finish(), hash::<1, 3>(&KEY, &[1, 2, 3]));
    }

    #[test]
    fn debug_redacts_key() {
        let s = format!(
            "{:?} {:?}",
            KeyedState::new(KEY),
            SipHasher13::new_with_key(&KEY)
        );
        assert_eq!(s, "KeyedState { .. } SipHasher<1, 3> { .. }");
    }
}
