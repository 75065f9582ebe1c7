//! What happens after a failed attempt: the recovery policy's decision
//! (native or a plugin) and the retry budget the host enforces whatever the
//! policy says.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::balancer::RequestInfo;
use super::endpoint::EndpointId;

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
    /// Decides about one failed attempt. Must not block.
    fn on_failure(&self, failure: &Failure) -> Decision;
}

/// The native policy, and the fallback for a faulting plugin: retry a
/// replayable request once, on another endpoint, at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetryOnce;

impl RecoveryPolicy for RetryOnce {
    fn on_failure(&self, failure: &Failure) -> Decision {
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

/// Retries allowed as a share of requests, plus a floor per second, as
/// Linkerd's and Finagle's retry budgets: retries cannot multiply load on a
/// failing pool. Lock-free: one relaxed add per request.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicI64,
    per_request: i64,
    floor_per_second: i64,
    cap: i64,
    last_refill_ns: AtomicU64,
    epoch: Instant,
}

impl RetryBudget {
    /// A budget of `percent` % of requests plus `floor_per_second` retries a
    /// second; unused tokens are kept up to ten seconds' worth.
    pub fn new(percent: u32, floor_per_second: u32) -> Self {
        let floor = i64::from(floor_per_second) * TOKEN;
        RetryBudget {
            tokens: AtomicI64::new(floor),
            per_request: i64::from(percent) * TOKEN / 100,
            floor_per_second: floor,
            cap: (floor * 10).max(TOKEN * 10),
            last_refill_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Counts a request: it earns a share of a retry.
    pub fn deposit(&self) {
        if self.per_request > 0 && self.tokens.load(Ordering::Relaxed) < self.cap {
            self.tokens.fetch_add(self.per_request, Ordering::Relaxed);
        }
    }

    /// Takes one retry if the budget has it.
    pub fn try_withdraw(&self) -> bool {
        self.refill();
        if self.tokens.fetch_sub(TOKEN, Ordering::Relaxed) >= TOKEN {
            true
        } else {
            self.tokens.fetch_add(TOKEN, Ordering::Relaxed);
            false
        }
    }

    fn refill(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.last_refill_ns.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(last);
        if elapsed < 100_000_000
            || self
                .last_refill_ns
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let earned = (self.floor_per_second as i128 * elapsed as i128 / 1_000_000_000) as i64;
        let current = self.tokens.load(Ordering::Relaxed);
        if current < self.cap {
            self.tokens
                .fetch_add(earned.min(self.cap - current), Ordering::Relaxed);
        }
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
            RetryOnce.on_failure(&failure(0, true)),
            Decision::Retry(_)
        ));
        assert_eq!(
            RetryOnce.on_failure(&failure(1, true)),
            Decision::GiveUp(None)
        );
        assert_eq!(
            RetryOnce.on_failure(&failure(0, false)),
            Decision::GiveUp(None)
        );
    }

    #[test]
    fn the_budget_allows_its_floor_then_a_share_of_requests() {
        let budget = RetryBudget::new(20, 2);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "the floor is spent");
        for _ in 0..10 {
            budget.deposit();
        }
        // Ten requests at 20 % earn two retries.
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }
}
