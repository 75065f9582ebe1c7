//! What happens after a failed attempt: the recovery policy's decision
//! (native or a plugin) and the retry budget the host enforces whatever the
//! policy says.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balancer::RequestInfo;
use super::endpoint::{EndpointId, EndpointSet};

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The endpoint refused the connection.
    ConnectRefused,
    /// The connection was not established in time.
    ConnectTimeout,
    /// The connection broke mid-request.
    Reset,
    /// No response headers in time.
    ResponseTimeout,
    /// The endpoint answered with this status (5xx or 429).
    Status(u16),
    /// A gRPC endpoint answered with this status in a trailers-only
    /// response (unknown, deadline exceeded, resource exhausted, internal,
    /// unavailable or data loss).
    GrpcStatus(u32),
}

impl FailureKind {
    /// The HTTP status of a failure the endpoint answered: its own, or for
    /// a gRPC status the one the gRPC spec pairs with it (for policies
    /// that know only HTTP statuses).
    pub fn http_status(self) -> Option<u16> {
        match self {
            FailureKind::Status(status) => Some(status),
            FailureKind::GrpcStatus(4) => Some(504),
            FailureKind::GrpcStatus(8) => Some(429),
            FailureKind::GrpcStatus(14) => Some(503),
            FailureKind::GrpcStatus(_) => Some(500),
            _ => None,
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The endpoint that failed.
    pub endpoint: EndpointId,
    /// How.
    pub kind: FailureKind,
    /// The request, with the attempt that failed.
    pub request: RequestInfo,
    /// The request's method.
    pub method: String,
    /// Whether the host can send the request again.
    pub replayable: bool,
    /// Time since the request arrived.
    pub elapsed: Duration,
}

/// Send the request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait this long first.
    pub delay: Duration,
    /// Try the same endpoint rather than another.
    pub same_endpoint: bool,
}

/// What to do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it again.
    Retry(Retry),
    /// Eject the endpoint for a while, and maybe retry elsewhere.
    Eject {
        /// How long the endpoint stays out.
        duration: Duration,
        /// Retry afterwards.
        retry: Option<Retry>,
    },
    /// Answer the client: the endpoint's response, or this status.
    GiveUp(Option<u16>),
}

/// A recovery policy as the engine sees it: native or a plugin.
pub trait RecoveryPolicy: Send + Sync + std::fmt::Debug {
    /// Decides about one failed attempt in the pool whose eligible
    /// endpoints are `endpoints` (what a plugin's `endpoint-load` reads).
    /// Must not block.
    fn on_failure(&self, failure: &Failure, endpoints: &Arc<EndpointSet>) -> Decision;
}

/// The native policy, and the fallback for a faulting plugin: retry a
/// replayable request once, on another endpoint, at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetryOnce;

impl RecoveryPolicy for RetryOnce {
    fn on_failure(&self, failure: &Failure, _endpoints: &Arc<EndpointSet>) -> Decision {
        if failure.replayable && failure.request.attempt == 0 {
            Decision::Retry(Retry {
                delay: Duration::ZERO,
                same_endpoint: false,
            })
        } else {
            Decision::GiveUp(None)
        }
    }
}

/// Fixed-point scale of retry tokens: 1 retry = 1000.
const TOKEN: i64 = 1_000;

/// Slices the budget's window is kept in: deposits and withdrawals leave the
/// window one slice at a time.
const WINDOW_SLICES: usize = 10;

/// Retries allowed as a share of the requests over a sliding window, plus a
/// floor per second, as Linkerd's and Finagle's retry budgets (`ttl`,
/// `retry_ratio`, `min_retries_per_second`): over any window, retries are at
/// most `percent` % of the requests that arrived in it plus
/// `floor_per_second` × the window's length in seconds. A burst of failures
/// after a quiet spell can therefore draw on everything the window's traffic
/// earned, while retries can never multiply the load on a failing pool.
///
/// Lock-free: a request is one relaxed add into the current slice. Counts
/// leave the window a slice (a tenth of it) at a time; a slice is reset by
/// the first thread that finds it stale, and an add racing with that reset
/// may be lost, which errs toward fewer retries.
#[derive(Debug)]
pub struct RetryBudget {
    slices: [Slice; WINDOW_SLICES],
    slice_ns: u64,
    per_request: i64,
    reserve: i64,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Slice {
    /// The index of the slice of time these counts belong to, plus one
    /// (0: never used).
    index: AtomicU64,
    deposits: AtomicU64,
    withdrawals: AtomicU64,
}

impl RetryBudget {
    /// A budget of `percent` % of the requests in the last `window`, plus
    /// `floor_per_second` retries a second over it.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # use switchyard::engine::RetryBudget;
    /// let budget = RetryBudget::new(20, 1, Duration::from_secs(10));
    /// let now = Instant::now();
    /// for _ in 0..100 {
    ///     budget.deposit_at(now);
    /// }
    /// // 20 % of 100 requests, and one a second over ten seconds.
    /// assert_eq!((0..40).filter(|_| budget.try_withdraw_at(now)).count(), 30);
    /// ```
    pub fn new(percent: u32, floor_per_second: u32, window: Duration) -> Self {
        let window = window.max(Duration::from_millis(WINDOW_SLICES as u64));
        RetryBudget {
            slices: Default::default(),
            slice_ns: (window.as_nanos() / WINDOW_SLICES as u128) as u64,
            per_request: i64::from(percent) * TOKEN / 100,
            reserve: (i64::from(floor_per_second) as i128
                * TOKEN as i128
                * window.as_millis() as i128
                / 1_000) as i64,
            epoch: Instant::now(),
        }
    }

    /// Counts a request that arrived at `now`: it earns a share of a retry.
    pub fn deposit_at(&self, now: Instant) {
        if self.per_request > 0 {
            self.current(now).deposits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request arriving now.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Takes one retry at `now` if the window has one left.
    pub fn try_withdraw_at(&self, now: Instant) -> bool {
        let index = self.index(now);
        let (mut deposits, mut withdrawals) = (0i64, 0i64);
        for slice in &self.slices {
            let at = slice.index.load(Ordering::Relaxed);
            // Slices of this window only: the current one and the nine before it.
            if at != 0 && at <= index + 1 && at + WINDOW_SLICES as u64 > index + 1 {
                deposits += slice.deposits.load(Ordering::Relaxed) as i64;
                withdrawals += slice.withdrawals.load(Ordering::Relaxed) as i64;
            }
        }
        let balance = self.reserve + deposits * self.per_request - withdrawals * TOKEN;
        if balance < TOKEN {
            return false;
        }
        self.current(now)
            .withdrawals
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Takes one retry now if the window has one left.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    fn index(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64 / self.slice_ns
    }

    /// The slice counting `now`, reset first if it still holds an older one.
    fn current(&self, now: Instant) -> &Slice {
        let index = self.index(now);
        let slice = &self.slices[(index % WINDOW_SLICES as u64) as usize];
        let seen = slice.index.load(Ordering::Relaxed);
        if seen != index + 1
            && seen < index + 1
            && slice
                .index
                .compare_exchange(seen, index + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slice.deposits.store(0, Ordering::Relaxed);
            slice.withdrawals.store(0, Ordering::Relaxed);
        }
        slice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(attempt: u32, replayable: bool) -> Failure {
        Failure {
            endpoint: 0,
            kind: FailureKind::ConnectRefused,
            request: RequestInfo {
                attempt,
                ..RequestInfo::default()
            },
            method: "GET".into(),
            replayable,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn retry_once_retries_only_the_first_replayable_attempt() {
        assert!(matches!(
            RetryOnce.on_failure(
                &failure(0, true),
                &Arc::new(EndpointSet::all_eligible(0, Vec::new()))
            ),
            Decision::Retry(_)
        ));
        assert_eq!(
            RetryOnce.on_failure(
                &failure(1, true),
                &Arc::new(EndpointSet::all_eligible(0, Vec::new()))
            ),
            Decision::GiveUp(None)
        );
        assert_eq!(
            RetryOnce.on_failure(
                &failure(0, false),
                &Arc::new(EndpointSet::all_eligible(0, Vec::new()))
            ),
            Decision::GiveUp(None)
        );
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn withdrawn(budget: &RetryBudget, now: Instant, tries: usize) -> usize {
        (0..tries).filter(|_| budget.try_withdraw_at(now)).count()
    }

    #[test]
    fn an_idle_budget_allows_its_floor_over_the_whole_window() {
        let budget = RetryBudget::new(20, 10, Duration::from_secs(10));
        let start = Instant::now();
        // Ten a second over ten seconds: a burst of 100, then nothing.
        assert_eq!(withdrawn(&budget, start, 500), 100);
        assert_eq!(withdrawn(&budget, at(start, 5_000), 10), 0);
    }

    #[test]
    fn the_budget_is_a_share_of_the_requests_in_the_window() {
        let budget = RetryBudget::new(20, 0, Duration::from_secs(10));
        let start = Instant::now();
        // 5,000 requests a second for two seconds earn 2,000 retries: a burst
        // of 1,000 failures is absorbed whole, 2,000 exactly, not one more.
        for ms in 0..2_000 {
            for _ in 0..5 {
                budget.deposit_at(at(start, ms));
            }
        }
        assert_eq!(withdrawn(&budget, at(start, 2_000), 1_000), 1_000);
        assert_eq!(withdrawn(&budget, at(start, 2_100), 5_000), 1_000);
    }

    #[test]
    fn deposits_and_withdrawals_leave_the_window() {
        let budget = RetryBudget::new(50, 0, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..100 {
            budget.deposit_at(start);
        }
        assert_eq!(withdrawn(&budget, at(start, 1_000), 100), 50);
        // Still inside the window: spent.
        assert_eq!(withdrawn(&budget, at(start, 9_000), 100), 0);
        // The deposits have left with the first slice, and the retries with
        // the second: new requests earn retries again.
        for _ in 0..10 {
            budget.deposit_at(at(start, 11_500));
        }
        assert_eq!(withdrawn(&budget, at(start, 11_500), 100), 5);
    }

    #[test]
    fn the_rate_is_the_share_plus_the_floor_over_any_window() {
        let budget = RetryBudget::new(10, 2, Duration::from_secs(10));
        let start = Instant::now();
        let mut granted = Vec::new();
        // A steady 100 requests a second for 60 s, each failing and asking
        // for a retry: once the first window has passed, retries settle at
        // 10 + 2 a second.
        for second in 0..60u64 {
            let now = at(start, second * 1_000);
            for _ in 0..100 {
                budget.deposit_at(now);
            }
            granted.push(withdrawn(&budget, now, 100));
        }
        let steady: usize = granted[30..40].iter().sum();
        assert_eq!(steady, 120, "{granted:?}");
    }
}
