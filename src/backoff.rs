//! The one backoff rule of every retry loop: job attempts, provider calls,
//! the LISTEN reconnect and a worker slot whose claims fail.
//!
//! Delay before retry `n` (1-based) is `base * factor^(n-1)`, capped at
//! `max`, then stretched by a random share in `[0, jitter)` so that many
//! clients retrying at once spread out (the cap holds before the jitter, so a
//! capped delay varies too). Callers pick the parameters; this module owns
//! only the arithmetic, which is why it knows nothing of what is retried.

use std::time::Duration;

/// An exponential backoff schedule with a cap and proportional jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// Growth per retry (2.0 doubles).
    pub factor: f64,
    /// Longest delay before jitter.
    pub max: Duration,
    /// Share of the delay added at random, 0.0 (none) to 1.0.
    pub jitter: f64,
}

impl Backoff {
    /// Doubling from `base` up to `max`, with 20% jitter.
    pub const fn doubling(base: Duration, max: Duration) -> Self {
        Self {
            base,
            factor: 2.0,
            max,
            jitter: 0.2,
        }
    }

    /// The same schedule without jitter (deterministic delays).
    pub const fn without_jitter(self) -> Self {
        Self { jitter: 0.0, ..self }
    }

    /// The delay before retry `retry` (1 for the first retry; 0 is treated as 1).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(64) as i32;
        let grown = self.base.as_secs_f64() * self.factor.max(1.0).powi(exp);
        let capped = if grown.is_finite() {
            Duration::from_secs_f64(grown.min(self.max.as_secs_f64()))
        } else {
            self.max
        };
        if self.jitter > 0.0 {
            capped + capped.mul_f64(rand::random::<f64>() * self.jitter.min(1.0))
        } else {
            capped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_factor_and_is_capped() {
        let b = Backoff::doubling(Duration::from_secs(2), Duration::from_secs(60)).without_jitter();
        assert_eq!(b.delay(0), Duration::from_secs(2));
        assert_eq!(b.delay(1), Duration::from_secs(2));
        assert_eq!(b.delay(3), Duration::from_secs(8));
        assert_eq!(b.delay(10), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let b = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(1));
        for retry in 1..20 {
            let plain = b.without_jitter().delay(retry);
            let d = b.delay(retry);
            assert!(d >= plain && d <= plain.mul_f64(1.2), "{d:?} vs {plain:?}");
        }
    }

    #[test]
    fn a_factor_of_one_is_constant() {
        let b = Backoff {
            base: Duration::from_millis(50),
            factor: 1.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        };
        assert_eq!(b.delay(7), Duration::from_millis(50));
    }
}
