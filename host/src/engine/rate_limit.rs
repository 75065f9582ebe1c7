//! A route's rate limit: GCRA buckets in a fixed array of atomic cells,
//! shared by every worker.
//!
//! The algorithm is the generic cell rate algorithm (ITU-T I.371; as in
//! Brandur Leach's "Rate limiting, cells, and GCRA" and the `governor`
//! crate). A bucket is one number, its theoretical arrival time (TAT): when
//! the bucket would be empty again if requests came at exactly the rate. With
//! `T = 1 s / per_second` and a tolerance of `burst × T`, a request at `now`
//! is admitted when `max(TAT, now) + T - burst × T <= now`, and the TAT
//! becomes `max(TAT, now) + T`; refused, it is told to wait until
//! `max(TAT, now) + T - burst × T`, and the TAT is left as it was, so
//! refusals cost nothing. Over any window of length `t`, a bucket admits at most
//! `burst + ⌊t / T⌋` requests, and exactly that many when requests keep
//! coming. `T` is rounded up to a whole nanosecond, so the rate enforced is
//! never above the one configured.
//!
//! Every worker updates the same buckets with a compare-and-swap loop on the
//! TAT (lock-free: a thread retries only because another's update went in),
//! so the rate enforced does not depend on how clients' connections spread
//! over the workers, as one bucket per worker would (at `rate / workers`
//! each, a single client gets between that and the rate; at the full rate
//! each, up to `workers × rate`). Time is nanoseconds since the limiter was
//! made, on the monotonic clock (`Instant`), at the instant the proxy read
//! when the request began: the decision reads no clock of its own.
//!
//! Keys: one bucket for the route, or one per client IP address or per
//! value of a request header, hashed (with a seed of this limiter's, so a
//! client cannot aim a value at another's bucket) to one of `keys` cells, a
//! power of two. Memory is that array, 8 bytes a cell, whatever the number of
//! keys seen, and nothing is ever evicted. Keys that hash to one cell share
//! its bucket: a collision can only make the limit stricter for the keys
//! that share it, never looser. Requests without the header share one bucket
//! of their own, as if they all sent the same value.
//!
//! Written here rather than with `governor`: its keyed limiter keeps a
//! `DashMap` of every key seen (sharded locks on the request path, memory
//! that grows until `retain_recent` sweeps it), and its lock-free bucket
//! (`InMemoryState`) cannot be laid in an array of ours, as its update is
//! private to the crate. What would remain to borrow is the arithmetic
//! above.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// What a route's requests are counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// One bucket for the whole route.
    Route,
    /// One per client IP address (the peer's, not `X-Forwarded-For`).
    Client,
    /// One per value of this request header; requests without it share one.
    Header(http::HeaderName),
}

/// A refused request: how long until the same key would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The wait, from the moment of the decision.
    pub wait: Duration,
}

impl Limited {
    /// The `Retry-After` value: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.wait
            .as_nanos()
            .div_ceil(u128::from(NANOS_PER_SECOND))
            .max(1) as u64
    }
}

/// One route's limit and its buckets.
///
/// ```
/// use std::time::Instant;
/// use switchyard::engine::{RateKey, RateLimit};
///
/// // 100 a second per client address, two at once.
/// let limit = RateLimit::new(100, 2, RateKey::Client, 4096);
/// let (now, client) = (Instant::now(), "10.0.0.1".parse().unwrap());
/// assert!(limit.admit(now, client, |_| None).is_ok());
/// assert!(limit.admit(now, client, |_| None).is_ok());
/// let refused = limit.admit(now, client, |_| None).unwrap_err();
/// assert_eq!(refused.wait.as_millis(), 10);
/// assert_eq!(refused.retry_after_secs(), 1);
/// ```
pub struct RateLimit {
    key: RateKey,
    per_second: u32,
    burst: u32,
    /// `T`: nanoseconds between requests at the rate, rounded up.
    interval: u64,
    /// `burst × T`.
    tolerance: u64,
    /// Each bucket's TAT, in nanoseconds since `base`; 0 is a full bucket.
    cells: Box<[AtomicU64]>,
    /// `cells.len() - 1`.
    mask: u64,
    hasher: foldhash::quality::RandomState,
    base: Instant,
    /// The rule it limits, as its builder names it, so a table built anew
    /// can hand these buckets on to the same rule ([`RateLimit::for_rule`]).
    rule: u64,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("key", &self.key)
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .field("cells", &self.cells.len())
            .finish()
    }
}

impl RateLimit {
    /// A limit of `per_second` requests a second with bursts of `burst`
    /// (both at least 1), counted by `key` in `keys` buckets (rounded up to
    /// a power of two; one for [`RateKey::Route`]).
    pub fn new(per_second: u32, burst: u32, key: RateKey, keys: usize) -> Self {
        let per_second = per_second.max(1);
        let burst = burst.max(1);
        let interval = NANOS_PER_SECOND.div_ceil(u64::from(per_second));
        let cells = match key {
            RateKey::Route => 1,
            _ => keys.max(1).next_power_of_two(),
        };
        RateLimit {
            key,
            per_second,
            burst,
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
            cells: (0..cells).map(|_| AtomicU64::new(0)).collect(),
            mask: cells as u64 - 1,
            hasher: foldhash::quality::RandomState::default(),
            base: Instant::now(),
            rule: 0,
        }
    }

    /// This limit, for the rule named `rule` (a fingerprint of the route's
    /// config, say).
    pub fn for_rule(mut self, rule: u64) -> Self {
        self.rule = rule;
        self
    }

    /// The rule it limits: what [`RateLimit::for_rule`] named.
    pub fn rule(&self) -> u64 {
        self.rule
    }

    /// Whether `other` limits alike: the same rate, burst, key and buckets.
    pub fn is_like(&self, other: &RateLimit) -> bool {
        self.per_second == other.per_second
            && self.burst == other.burst
            && self.key == other.key
            && self.cells.len() == other.cells.len()
    }

    /// What requests are counted by.
    pub fn key(&self) -> &RateKey {
        &self.key
    }

    /// Requests a second admitted in the long run.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Requests admitted at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Decides a request that arrived `at`, from `client`, with headers
    /// looked up by `header`: admitted, or refused with its wait. The
    /// proxy passes the instant it read when the request began, so the
    /// decision costs no clock read of its own.
    pub fn admit<'a>(
        &self,
        at: Instant,
        client: IpAddr,
        header: impl FnOnce(&http::HeaderName) -> Option<&'a [u8]>,
    ) -> Result<(), Limited> {
        let cell = self.cell(client, header);
        // A request begun before the limiter was made (by a reload) counts
        // as arriving when it was made.
        let now = at.saturating_duration_since(self.base).as_nanos() as u64;
        self.admit_at(cell, now)
    }

    /// The bucket of a request: its cell's index.
    pub fn cell<'a>(
        &self,
        client: IpAddr,
        header: impl FnOnce(&http::HeaderName) -> Option<&'a [u8]>,
    ) -> usize {
        let hash = match &self.key {
            RateKey::Route => return 0,
            // An IPv4 client on a dual-stack socket is the same client.
            RateKey::Client => self.hasher.hash_one(client.to_canonical()),
            RateKey::Header(name) => self.hasher.hash_one(header(name)),
        };
        (hash & self.mask) as usize
    }

    /// Decides a request for bucket `cell` at `now`, in nanoseconds since
    /// the limiter was made.
    pub fn admit_at(&self, cell: usize, now: u64) -> Result<(), Limited> {
        let cell = &self.cells[cell];
        // Relaxed: the TAT is the only thing shared, and each bucket's
        // updates are ordered by its own compare-and-swaps.
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            let allowed_from = next.saturating_sub(self.tolerance);
            if now < allowed_from {
                return Err(Limited {
                    wait: Duration::from_nanos(allowed_from - now),
                });
            }
            match cell.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    const MS: u64 = 1_000_000;
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Requests admitted when one arrives every `step` ns from `from` to
    /// `until` (exclusive).
    fn admitted(limit: &RateLimit, from: u64, until: u64, step: u64) -> u64 {
        (from..until)
            .step_by(step as usize)
            .filter(|&now| limit.admit_at(0, now).is_ok())
            .count() as u64
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limit = RateLimit::new(10, 5, RateKey::Route, 1);
        // The burst at once, then one per 100 ms: at 100, 200, ... 1000 ms.
        assert_eq!(admitted(&limit, 0, 1, 1), 1);
        for _ in 0..4 {
            assert_eq!(limit.admit_at(0, 0), Ok(()));
        }
        assert!(limit.admit_at(0, 0).is_err());
        assert_eq!(admitted(&limit, 0, 1000 * MS + 1, MS), 10);
    }

    #[test]
    fn requests_without_pause_get_exactly_the_burst_and_the_rate() {
        for (per_second, burst) in [(1, 1), (7, 3), (100, 20), (1000, 1), (200, 200)] {
            let limit = RateLimit::new(per_second, burst, RateKey::Route, 1);
            // Every 100 µs for ten seconds.
            let got = admitted(&limit, 0, 10_000 * MS, MS / 10);
            let rate = u64::from(per_second);
            // At 0 the burst; then one each T, up to but not at 10 s.
            let expected = u64::from(burst) + 10 * rate - 1;
            assert_eq!(got, expected, "{per_second}/s burst {burst}");
        }
    }

    #[test]
    fn a_quiet_spell_refills_the_burst_and_no_more() {
        let limit = RateLimit::new(10, 5, RateKey::Route, 1);
        assert_eq!(admitted(&limit, 0, 1, 1), 1);
        while limit.admit_at(0, 0).is_ok() {}
        // Quiet for 10 s: the bucket holds `burst` again, not 100.
        let at = 10_000 * MS;
        let at_once = (0..100).filter(|_| limit.admit_at(0, at).is_ok()).count();
        assert_eq!(at_once, 5);
    }

    #[test]
    fn the_wait_is_until_the_next_admission() {
        let limit = RateLimit::new(2, 1, RateKey::Route, 1);
        assert_eq!(limit.admit_at(0, 0), Ok(()));
        let refused = limit.admit_at(0, 100 * MS).unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(400));
        assert_eq!(refused.retry_after_secs(), 1);
        assert!(limit.admit_at(0, 500 * MS - 1).is_err());
        assert_eq!(limit.admit_at(0, 500 * MS), Ok(()));

        // Less than a second: still 1. More: rounded up.
        let slow = RateLimit::new(1, 1, RateKey::Route, 1);
        assert_eq!(slow.admit_at(0, 0), Ok(()));
        assert_eq!(
            slow.admit_at(0, 999 * MS).unwrap_err().retry_after_secs(),
            1
        );
        let limited = Limited {
            wait: Duration::from_millis(2001),
        };
        assert_eq!(limited.retry_after_secs(), 3);
    }

    #[test]
    fn the_interval_rounds_up_so_the_rate_is_never_exceeded() {
        // 1e9 / 3 is not whole: T is 333,333,334 ns.
        let limit = RateLimit::new(3, 1, RateKey::Route, 1);
        assert_eq!(limit.admit_at(0, 0), Ok(()));
        assert!(limit.admit_at(0, 333_333_333).is_err());
        assert_eq!(limit.admit_at(0, 333_333_334), Ok(()));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let name = http::HeaderName::from_static("x-api-key");
        // Cells enough that three keys are unlikely to collide (about 3 in
        // a million with a random seed).
        let limit = RateLimit::new(1, 2, RateKey::Header(name.clone()), 1 << 20);
        let cell = |value: Option<&'static [u8]>| {
            limit.cell(CLIENT, |asked| {
                assert_eq!(asked, &name);
                value
            })
        };
        let (a, b, none) = (cell(Some(b"a")), cell(Some(b"b")), cell(None));
        assert_eq!(a, cell(Some(b"a")));
        assert!(a != b && a != none && b != none, "{a} {b} {none}");
        for bucket in [a, b, none] {
            assert!(limit.admit_at(bucket, 0).is_ok());
            assert!(limit.admit_at(bucket, 0).is_ok());
            assert!(limit.admit_at(bucket, 0).is_err());
        }

        let clients = RateLimit::new(1, 1, RateKey::Client, 1 << 20);
        let of = |ip: &str| clients.cell(ip.parse().unwrap(), |_| None);
        assert_ne!(of("10.0.0.1"), of("10.0.0.2"));
        assert_eq!(of("10.0.0.1"), of("::ffff:10.0.0.1"));

        let route = RateLimit::new(1, 1, RateKey::Route, 4096);
        assert_eq!(route.cells.len(), 1);
        assert_eq!(route.cell(CLIENT, |_| Some(b"x")), 0);
    }

    #[test]
    fn keys_round_up_to_a_power_of_two() {
        for (asked, cells) in [(0, 1), (1, 1), (3, 4), (4096, 4096), (5000, 8192)] {
            let limit = RateLimit::new(1, 1, RateKey::Client, asked);
            assert_eq!(limit.cells.len(), cells, "{asked}");
        }
    }

    /// Threads racing on one bucket admit exactly what one thread would:
    /// the burst at a frozen instant, then one per interval as it moves.
    #[test]
    fn threads_on_one_bucket_admit_exactly_what_the_math_allows() {
        let threads = 8;
        let limit = Arc::new(RateLimit::new(1000, 50, RateKey::Route, 1));
        let admitted = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (limit, admitted, start) = (
                    Arc::clone(&limit),
                    Arc::clone(&admitted),
                    Arc::clone(&start),
                );
                std::thread::spawn(move || {
                    start.wait();
                    // 10,000 attempts each at each of 101 instants 1 ms
                    // apart (T): the burst at the first, then one each.
                    for step in 0..=100u64 {
                        for _ in 0..10_000 {
                            if limit.admit_at(0, step * MS).is_ok() {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        start.wait();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 50 + 100);
    }

    /// On the real clock, from several threads, the count stays within
    /// what the elapsed time allows.
    #[test]
    fn threads_on_the_real_clock_stay_within_the_bound() {
        let limit = Arc::new(RateLimit::new(2000, 10, RateKey::Route, 1));
        let admitted = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (limit, admitted) = (Arc::clone(&limit), Arc::clone(&admitted));
                std::thread::spawn(move || {
                    while started.elapsed() < Duration::from_millis(100) {
                        if limit.admit(Instant::now(), CLIENT, |_| None).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let admitted = admitted.load(Ordering::Relaxed) as f64;
        // The limiter was made before `started`: its clock is ahead.
        assert!(
            admitted <= 10.0 + 2000.0 * elapsed + 1.0,
            "{admitted} in {elapsed} s"
        );
    }
}
