//! Latency histograms with fixed buckets, written lock-free from every
//! worker and rendered as Prometheus histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::Priority;

/// Upper bounds of the buckets, in µs: from 10 µs, so the added latency is
/// seen well under the P0 class's 0.1 ms target, to 10 s, about three to a
/// decade.
pub const BUCKET_BOUNDS_US: [u64; 18] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 10_000_000,
];

/// Counts of observed durations by bucket, with their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative), and one past the last bound.
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
}

/// A copy of a histogram: cumulative counts by bound, as Prometheus wants.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each of `BUCKET_BOUNDS_US`.
    pub cumulative: [u64; BUCKET_BOUNDS_US.len()],
    /// Every observation, `+Inf` included.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, duration: Duration) {
        let us = duration.as_micros() as u64;
        let bucket = BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; BUCKET_BOUNDS_US.len()];
        let mut running = 0;
        for (at, total) in cumulative.iter_mut().enumerate() {
            running += self.buckets[at].load(Ordering::Relaxed);
            *total = running;
        }
        let count = running + self.buckets[BUCKET_BOUNDS_US.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// One histogram per priority class, each made on its first observation:
/// a pool that never sees a class keeps nothing for it.
#[derive(Debug, Default)]
pub struct ClassHistograms {
    classes: [OnceLock<Box<Histogram>>; 5],
}

impl ClassHistograms {
    /// Counts one duration for `class`.
    pub fn observe(&self, class: Priority, duration: Duration) {
        self.classes[class as usize]
            .get_or_init(Box::default)
            .observe(duration);
    }

    /// The classes observed so far, P0 first.
    pub fn observed(&self) -> impl Iterator<Item = (Priority, &Histogram)> {
        Priority::ALL
            .into_iter()
            .filter_map(|class| Some((class, &**self.classes[class as usize].get()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_micros(51));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative[1], 0);
        assert_eq!(snapshot.cumulative[2], 1, "50 µs is in the 50 µs bucket");
        assert_eq!(snapshot.cumulative[3], 2);
        assert_eq!(snapshot.cumulative[7], 2, "3 ms is above 2.5 ms");
        assert_eq!(snapshot.cumulative[8], 3);
        assert_eq!(snapshot.cumulative[17], 3, "60 s is only in +Inf");
        assert_eq!(snapshot.count, 4);
        assert!((snapshot.sum_seconds - 60.003101).abs() < 1e-9);
    }

    #[test]
    fn classes_are_kept_apart_and_made_on_first_use() {
        let histograms = ClassHistograms::default();
        assert_eq!(histograms.observed().count(), 0);
        histograms.observe(Priority::P4, Duration::from_millis(1));
        histograms.observe(Priority::P0, Duration::from_millis(1));
        histograms.observe(Priority::P0, Duration::from_millis(1));
        let seen: Vec<_> = histograms
            .observed()
            .map(|(class, h)| (class, h.snapshot().count))
            .collect();
        assert_eq!(seen, vec![(Priority::P0, 2), (Priority::P4, 1)]);
    }
}
