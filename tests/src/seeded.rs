//! Seeded randomness for the crash-loop tests: the seed comes from
//! `SLUICE_TEST_SEED` (or the clock) and every test prints it, so a failing
//! run replays with the same kills at the same moments.

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Zero would stay zero for ever; it is replaced by one.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// `SLUICE_TEST_SEED`, or the clock's nanoseconds.
pub fn seed() -> u64 {
    std::env::var("SLUICE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    })
}

/// A count from the environment (a test's full size), else `default`.
pub fn count(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_replays_the_same_numbers_within_bounds() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..100).map(|_| a.below(7)).collect();
        assert_eq!(xs, (0..100).map(|_| b.below(7)).collect::<Vec<_>>());
        assert!(xs.iter().all(|x| *x < 7));
        assert!(xs.iter().collect::<std::collections::BTreeSet<_>>().len() > 1, "not constant: {xs:?}");
        assert_eq!(Rng::new(0).below(1000), Rng::new(1).below(1000), "zero is seeded as one");
    }
}
