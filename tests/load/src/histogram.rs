//! A lock-free log-linear latency histogram: thousands of client tasks record into it at
//! once without contention beyond one atomic add. 32 sub-buckets per power of two: about 3 %
//! precision from 1 µs to over an hour.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BUCKETS: u64 = 32;
const POWERS: usize = 40;

#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..POWERS * SUB_BUCKETS as usize).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn index(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let power = 63 - u64::from(value.leading_zeros()); // ≥ 5
    let shift = power - 5;
    let sub = (value >> shift) - SUB_BUCKETS; // 0..32
    ((power - 4) * SUB_BUCKETS + sub) as usize
}

/// The lowest value of a bucket.
fn lower_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let power = index / SUB_BUCKETS + 4;
    let sub = index % SUB_BUCKETS;
    (SUB_BUCKETS + sub) << (power - 5)
}

impl Histogram {
    pub(crate) fn record(&self, value: u64) {
        let i = index(value).min(self.buckets.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), as the lower bound of its bucket.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return lower_bound(i);
            }
        }
        self.max()
    }

    pub(crate) fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_bucket_precision() {
        let h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        for (q, expected) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - expected).abs() / expected < 0.04, "q{q}: {got} vs {expected}");
        }
        assert_eq!(h.max(), 10_000);
        for v in [0, 1, 31, 32, 33, 1000, 123_456_789] {
            assert!(lower_bound(index(v)) <= v && v - lower_bound(index(v)) <= v / 30 + 1, "{v}");
        }
    }
}
