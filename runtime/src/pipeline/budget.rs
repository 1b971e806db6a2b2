//! The per-task byte budget (`max.buffered.bytes`): bytes handed to the sink
//! and not yet settled. Over the budget the task's partitions are paused
//! until commits free room (ARCHITECTURE.md invariant 6: bounded memory).
//!
//! A sink may settle only when it gets more records (an S3 object completes
//! when it is full): pausing it then would wait forever. So when the
//! partitions have been held for a whole `patience` without anything
//! settling, the budget is waived until the buffered bytes fall back under
//! it, and the caller warns that the setting is below what the sink holds.

use std::time::{Duration, Instant};

pub struct ByteBudget {
    limit: u64,
    patience: Duration,
    /// When holding started, or last saw the buffered bytes fall, and how many there were.
    holding_since: Option<(Instant, u64)>,
    waived: bool,
}

/// What the poll loop does with the budget now.
#[derive(Debug, PartialEq, Eq)]
pub enum Budget {
    Free,
    Hold,
    /// Held a whole `patience` with nothing settled: released from now on.
    JustWaived,
}

impl ByteBudget {
    pub fn new(limit: u64, patience: Duration) -> ByteBudget {
        ByteBudget { limit, patience, holding_since: None, waived: false }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn check(&mut self, buffered: u64, now: Instant) -> Budget {
        if buffered <= self.limit {
            self.holding_since = None;
            self.waived = false;
            return Budget::Free;
        }
        if self.waived {
            return Budget::Free;
        }
        match self.holding_since {
            Some((_, before)) if buffered < before => self.holding_since = Some((now, buffered)),
            Some((since, _)) if now.duration_since(since) >= self.patience => {
                self.waived = true;
                return Budget::JustWaived;
            }
            Some(_) => {}
            None => self.holding_since = Some((now, buffered)),
        }
        Budget::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_over_the_limit_while_the_sink_settles() {
        let t = Instant::now();
        let mut b = ByteBudget::new(100, Duration::from_secs(10));
        assert_eq!(b.check(50, t), Budget::Free);
        assert_eq!(b.check(150, t), Budget::Hold);
        // Something settles every few seconds: keep holding.
        assert_eq!(b.check(140, t + Duration::from_secs(8)), Budget::Hold);
        assert_eq!(b.check(130, t + Duration::from_secs(16)), Budget::Hold);
        assert_eq!(b.check(90, t + Duration::from_secs(17)), Budget::Free);
    }

    #[test]
    fn a_sink_that_settles_only_with_more_records_is_released_and_the_budget_rearms() {
        let t = Instant::now();
        let mut b = ByteBudget::new(100, Duration::from_secs(10));
        assert_eq!(b.check(150, t), Budget::Hold);
        assert_eq!(b.check(150, t + Duration::from_secs(9)), Budget::Hold);
        assert_eq!(b.check(150, t + Duration::from_secs(10)), Budget::JustWaived);
        assert_eq!(b.check(400, t + Duration::from_secs(11)), Budget::Free);
        // Back under the limit: the budget applies again.
        assert_eq!(b.check(10, t + Duration::from_secs(12)), Budget::Free);
        assert_eq!(b.check(150, t + Duration::from_secs(13)), Budget::Hold);
    }
}
