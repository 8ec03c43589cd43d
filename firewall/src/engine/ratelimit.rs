//! Token buckets for packets the firewall generates (ICMP errors, ARP
//! replies), so a flood of offending packets cannot make it flood back.
//!
//! Integer arithmetic only: the level is kept in *nano-tokens* (one token
//! is `1e9` units; each nanosecond adds `rate_per_s` units), so refill is
//! exact with no floats and no division on the fast path. Every product
//! saturates and the level is capped at `burst` tokens, so huge gaps
//! (or `u64::MAX` timestamps) just fill the bucket. If time goes
//! backwards the bucket takes the new time as its reference without
//! refilling: the most a clock step can give away is one burst.

/// Units per token.
const SCALE: u64 = 1_000_000_000;

/// A token bucket: `burst` tokens at most, refilled at `rate_per_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate_per_s: u64,
    cap: u64,
    level: u64,
    last_ns: Option<u64>,
}

impl TokenBucket {
    /// A full bucket. `rate_per_s` 0 never refills; `burst` 0 never allows.
    pub const fn new(rate_per_s: u64, burst: u64) -> TokenBucket {
        let cap = burst.saturating_mul(SCALE);
        TokenBucket {
            rate_per_s,
            cap,
            level: cap,
            last_ns: None,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        if let Some(last) = self.last_ns {
            if now_ns > last {
                let add = (now_ns - last).saturating_mul(self.rate_per_s);
                self.level = self.level.saturating_add(add).min(self.cap);
            }
        }
        self.last_ns = Some(now_ns);
    }

    /// Take one token at time `now_ns` if there is one.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        self.allow_n(now_ns, 1)
    }

    /// Take `n` tokens at once if there are that many.
    pub fn allow_n(&mut self, now_ns: u64, n: u64) -> bool {
        self.refill(now_ns);
        let need = n.saturating_mul(SCALE);
        if need <= self.level && need <= self.cap {
            self.level -= need;
            true
        } else {
            false
        }
    }

    /// Whole tokens available at `now_ns` (refills, takes nothing).
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        self.level / SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 5);
        for _ in 0..5 {
            assert!(b.allow(0));
        }
        assert!(!b.allow(0));
        // 10/s: one token per 100 ms.
        assert!(!b.allow(S / 10 - 1));
        assert!(b.allow(S / 10));
        assert!(!b.allow(S / 10));
        assert_eq!(b.available(S / 10 + 3 * S / 10), 3);
    }

    #[test]
    fn capped_at_burst_and_huge_gaps() {
        let mut b = TokenBucket::new(1000, 3);
        assert!(b.allow(0));
        assert_eq!(b.available(u64::MAX), 3);
        let mut b = TokenBucket::new(u64::MAX, u64::MAX);
        assert!(b.allow(5));
        assert!(b.allow(u64::MAX));
    }

    #[test]
    fn time_going_backwards_gives_nothing_extra() {
        let mut b = TokenBucket::new(1, 1);
        assert!(b.allow(100 * S));
        assert!(!b.allow(50 * S));
        assert!(!b.allow(50 * S + S / 2));
        assert!(b.allow(51 * S));
    }

    #[test]
    fn degenerate_buckets() {
        let mut b = TokenBucket::new(0, 2);
        assert!(b.allow(0) && b.allow(0));
        assert!(!b.allow(u64::MAX));
        let mut b = TokenBucket::new(100, 0);
        assert!(!b.allow(0));
        assert!(!b.allow(10 * S));
        let mut b = TokenBucket::new(1, 2);
        assert!(!b.allow_n(0, 3));
        assert!(b.allow_n(0, 2));
    }
}
