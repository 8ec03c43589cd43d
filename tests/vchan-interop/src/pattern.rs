//! The data sent through a vchan: a pseudo-random byte stream that both
//! ends compute, so the receiver checks every byte against what the sender
//! must have sent.
//!
//! Byte `i` of a stream is `table[i % PERIOD]`, a random table of prime
//! length: chunks are copied out of the table and compared with `==`
//! (memcpy/memcmp speed even in debug builds), while a chunk dropped,
//! repeated or misplaced by anything but a multiple of the period shows.

/// Period of the stream (a prime just under 1 MiB).
pub const PERIOD: usize = 1_048_573;
/// Largest chunk handed to a read or write.
pub const MAX_CHUNK: usize = 256 * 1024;

/// A small, fast PRNG (xorshift64*): chunk sizes and table contents.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A chunk size in `1..=MAX_CHUNK`, log-uniform: as many tiny as huge
    /// chunks, so ring wrap-around is hit at every offset.
    pub fn chunk(&mut self) -> usize {
        let bits = (self.next_u64() % 19) as u32; // 2^18 = MAX_CHUNK
        1 + (self.next_u64() % (1u64 << bits)) as usize
    }
}

/// One direction's byte stream.
pub struct Pattern {
    /// The period, followed by its first `MAX_CHUNK` bytes again, so any
    /// chunk is one contiguous slice.
    table: Vec<u8>,
}

impl Pattern {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Pattern {
        let mut rng = Rng::new(seed);
        let mut table = Vec::with_capacity(PERIOD + MAX_CHUNK);
        while table.len() < PERIOD {
            table.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        table.truncate(PERIOD);
        table.extend_from_within(..MAX_CHUNK);
        Pattern { table }
    }

    /// Bytes `offset .. offset + len` of the stream (`len <= MAX_CHUNK`).
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.table[start..start + len]
    }

    /// Check received bytes against the stream at `offset`; the first
    /// differing stream offset on mismatch.
    pub fn verify(&self, offset: u64, got: &[u8]) -> Result<(), u64> {
        let want = self.at(offset, got.len());
        if want == got {
            return Ok(());
        }
        let i = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
        Err(offset + i as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_in_range_and_streams_differ() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!((1..=MAX_CHUNK).contains(&r.chunk()));
        }
        let (a, b) = (Pattern::new(1), Pattern::new(2));
        assert_ne!(a.at(0, 64), b.at(0, 64));
        // Wrapping at the period is seamless.
        let p = PERIOD as u64;
        assert_eq!(a.at(p - 3, 6)[3..], a.at(0, 3)[..]);
        assert_eq!(a.verify(p + 5, a.at(5, 100)), Ok(()));
        let mut bad = a.at(10, 50).to_vec();
        bad[7] ^= 1;
        assert_eq!(a.verify(10, &bad), Err(17));
    }
}
