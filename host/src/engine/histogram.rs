//! Latency histograms with fixed buckets, written lock-free from every
//! worker and rendered as Prometheus histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::Priority;

/// Upper bounds of the request-latency buckets, in ns: from 10 µs, so the
/// added latency is seen well under the P0 class's 0.1 ms target, to 10 s,
/// about three to a decade.
pub const REQUEST_BOUNDS_NS: [u64; 18] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// Upper bounds of the plugin-call buckets, in ns: from 100 ns, since a
/// wasm pick costs about 0.2–2 µs, to 100 ms, far past any call budget,
/// about three to a decade.
pub const PLUGIN_CALL_BOUNDS_NS: [u64; 19] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// Counts of observed durations by bucket, with their sum and maximum.
/// `N` bounds, fixed when it is made; request latencies use
/// [`REQUEST_BOUNDS_NS`] (the default), plugin calls
/// [`PLUGIN_CALL_BOUNDS_NS`]. An observation costs two relaxed atomic adds
/// and a load (a third write only for a new maximum).
#[derive(Debug)]
pub struct Histogram<const N: usize = 18> {
    bounds_ns: &'static [u64; N],
    /// Per bucket (not cumulative).
    buckets: [AtomicU64; N],
    /// Past the last bound.
    over: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// A copy of a histogram: cumulative counts by bound, as Prometheus wants.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot<const N: usize = 18> {
    /// The buckets' upper bounds, in ns.
    pub bounds_ns: &'static [u64; N],
    /// Observations at or below each of `bounds_ns`.
    pub cumulative: [u64; N],
    /// Every observation, `+Inf` included.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
    /// The longest, in seconds (exact, not estimated).
    pub max_seconds: f64,
}

impl Default for Histogram<18> {
    fn default() -> Self {
        Histogram::new(&REQUEST_BOUNDS_NS)
    }
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram with buckets up to each of `bounds_ns` (rising).
    pub fn new(bounds_ns: &'static [u64; N]) -> Self {
        Histogram {
            bounds_ns,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, duration: Duration) {
        let ns = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        self.buckets
            .get(bucket)
            .unwrap_or(&self.over)
            .fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        // A load nearly always; a write only for a new maximum.
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot<N> {
        let mut cumulative = [0; N];
        let mut running = 0;
        for (at, total) in cumulative.iter_mut().enumerate() {
            running += self.buckets[at].load(Ordering::Relaxed);
            *total = running;
        }
        let count = running + self.over.load(Ordering::Relaxed);
        HistogramSnapshot {
            bounds_ns: self.bounds_ns,
            cumulative,
            count,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            max_seconds: self.max_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl<const N: usize> HistogramSnapshot<N> {
    /// The `q` quantile (0 < q ≤ 1) in seconds, estimated from the buckets
    /// as Prometheus's `histogram_quantile` does: linear within the bucket
    /// that holds the rank, from the bucket's lower bound (0 for the first).
    /// Never above the exact maximum; past the last bound it is the
    /// maximum. `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0;
        for (at, &cumulative) in self.cumulative.iter().enumerate() {
            if cumulative as f64 >= rank && cumulative > below {
                let lower = if at == 0 { 0 } else { self.bounds_ns[at - 1] } as f64;
                let upper = self.bounds_ns[at] as f64;
                let share = (rank - below as f64) / (cumulative - below) as f64;
                let estimate = (lower + (upper - lower) * share) / 1e9;
                return Some(estimate.min(self.max_seconds));
            }
            below = cumulative;
        }
        Some(self.max_seconds)
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
        assert_eq!(snapshot.max_seconds, 60.0);
    }

    #[test]
    fn plugin_call_buckets_see_sub_microsecond_calls() {
        let histogram = Histogram::new(&PLUGIN_CALL_BOUNDS_NS);
        histogram.observe(Duration::from_nanos(180));
        histogram.observe(Duration::from_nanos(250));
        histogram.observe(Duration::from_nanos(900));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative[0], 0, "180 ns is above 100 ns");
        assert_eq!(snapshot.cumulative[1], 2, "250 ns is in the 250 ns bucket");
        assert_eq!(snapshot.cumulative[3], 3);
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.max_seconds - 900e-9).abs() < 1e-15);
    }

    #[test]
    fn quantiles_are_estimated_within_buckets_and_capped_at_the_max() {
        let histogram = Histogram::new(&PLUGIN_CALL_BOUNDS_NS);
        assert_eq!(histogram.snapshot().quantile(0.5), None);
        // 98 calls in (250, 500] ns, one of 4 µs, one of 1 s (past the bounds).
        for _ in 0..98 {
            histogram.observe(Duration::from_nanos(300));
        }
        histogram.observe(Duration::from_micros(4));
        histogram.observe(Duration::from_secs(1));
        let snapshot = histogram.snapshot();
        let p50 = snapshot.quantile(0.5).unwrap();
        let p99 = snapshot.quantile(0.99).unwrap();
        let max = snapshot.quantile(1.0).unwrap();
        assert!(p50 > 250e-9 && p50 <= 500e-9, "p50 {p50}");
        assert!(p99 > 2.5e-6 && p99 <= 5e-6, "p99 {p99}");
        assert_eq!(max, 1.0, "past the last bound: the exact maximum");
        assert!(p50 <= p99 && p99 <= snapshot.max_seconds);

        let one = Histogram::new(&PLUGIN_CALL_BOUNDS_NS);
        one.observe(Duration::from_nanos(300));
        let snapshot = one.snapshot();
        assert_eq!(
            snapshot.quantile(0.99),
            Some(300e-9),
            "never above the observed maximum"
        );
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
