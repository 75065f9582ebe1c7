//! A circuit breaker per endpoint: when an endpoint fails too often, it is
//! tripped open by ejecting it from the pool for a while. The host readmits
//! it when the ejection ends; its next requests are the half-open probe. If
//! it fails again while on probation it trips again, for twice as long, up
//! to `max_open_ms`.
//!
//! On each failed attempt, the endpoint that failed trips open when either
//! - its recent failure share is at least `failure_ratio`:
//!   `1 − success_permille / 1000 ≥ failure_ratio`, with `success_permille`
//!   read from the host (`host::load`) at the failure; or
//! - it has failed `consecutive_failures` times in a row, counted over the
//!   whole pool (see below).
//!
//! Tripping answers `eject` for the open time and, when `retry` is on and
//! the host can replay the request, retries it at once on another endpoint.
//! A failure that does not trip retries the request at once on another
//! endpoint if it was the first attempt and can be replayed, and gives up
//! (`give-up(none)`: the endpoint's own response, or the host's error)
//! otherwise. `retry` only governs the ejecting answer.
//!
//! **Open time.** The first trip opens for `open_ms`. A trip that comes
//! while the endpoint is on probation, that is within one open time after
//! its last ejection ended, is a re-trip: it opens for twice the last open
//! time, up to `max_open_ms`. A trip after probation starts again from
//! `open_ms`. Failures reported while the endpoint is still ejected
//! (requests that were in flight when it was ejected) neither count nor
//! trip again.
//!
//! **Consecutive failures.** Recovery plugins hear of failures only, never
//! of successes, so "in a row" is inferred. A failure continues the
//! endpoint's current run unless one of these shows a success may have come
//! between, in which case it starts a new run of 1:
//! - more than `open_ms` passed since the endpoint's previous failure;
//! - the host reports a success share of at least 90%
//!   ([`HEALTHY_PERMILLE`]): an endpoint that mostly succeeds is not failing
//!   in a row, so sporadic failures of a busy endpoint never add up;
//! - the success share is higher than at the previous failure: only a
//!   success raises it.
//!
//! A sudden outage therefore trips after about `consecutive_failures`
//! failures (the first one or two start the run while the share is still
//! high), a slow trickle of failures is left to `failure_ratio`, and a trip
//! ends the run.
//!
//! The idea is Envoy's outlier detection, which ejects on consecutive
//! failures or a low success rate for `base_ejection_time` times the number
//! of ejections, up to `max_ejection_time`
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier>),
//! and Finagle's and Linkerd's failure accrual, which marks an endpoint dead
//! after 5 consecutive failures, backs off, and probes it again
//! (<https://twitter.github.io/finagle/guide/Clients.html#failure-accrual>);
//! the closed / open / half-open breaker is from M. Nygard, "Release It!".
//!
//! **Pool-wide.** The host runs an instance per worker thread, and failures
//! spread over the workers. The state of each endpoint (its run, its latest
//! failure, its open time and trips) is kept in the pool's store
//! (`switchyard_sdk::store`), shared by every worker's instance: failures
//! on any worker continue one run, and a trip is claimed by a
//! compare-and-swap, so the endpoint is ejected once for the pool, not once
//! per worker. The store outlives versions of the plugin, so a swap keeps an
//! open circuit open and its re-trips doubling; nothing is left in the
//! instance for `snapshot` to carry. Times are kept to the millisecond.
//! An endpoint takes three entries of the store; should the store be full
//! (`plugins.store_entries`, 4096 by default, about 1,300 failing
//! endpoints in one pool), the breaker logs it once and trips by
//! `failure_ratio` alone, for `open_ms`.
//!
//! Config (JSON, every key optional):
//! - `failure_ratio` (default 0.5, [`DEFAULT_FAILURE_RATIO`]): trip when the
//!   recent failure share reaches this; above 0, at most 1, taken to the
//!   nearest thousandth (the resolution of `success_permille`).
//! - `consecutive_failures` (default 5, [`DEFAULT_CONSECUTIVE_FAILURES`]):
//!   also trip after this many failures in a row; at least 1. Set it high to
//!   rely on `failure_ratio` alone.
//! - `open_ms` (default 5000, [`DEFAULT_OPEN_MS`]): how long a first trip
//!   ejects the endpoint; at least 1.
//! - `max_open_ms` (default 60000, [`DEFAULT_MAX_OPEN_MS`]): the longest
//!   ejection re-trips double up to; at least `open_ms`.
//! - `retry` (default true): when tripping, retry a replayable request at
//!   once on another endpoint.
//!
//! ```toml
//! [[pools]]
//! name = "api"
//! recovery = { plugin = "circuit-breaker", config = { failure_ratio = 0.5, consecutive_failures = 5, open_ms = 5000, max_open_ms = 60000 } }
//! endpoints = [{ address = "10.0.0.1:8080" }, { address = "10.0.0.2:8080" }]
//! ```

use serde::Deserialize;
use switchyard_sdk::host::{self, LogLevel};
use switchyard_sdk::store::{self, StoreError};
use switchyard_sdk::{export_recovery, Decision, Ejection, Failure, Recovery, Retry};

/// The failure share that trips unless `failure_ratio` says otherwise.
pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;

/// Failures in a row that trip unless `consecutive_failures` says otherwise.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

/// The first ejection's length in ms unless `open_ms` says otherwise.
pub const DEFAULT_OPEN_MS: u32 = 5_000;

/// The longest ejection in ms unless `max_open_ms` says otherwise.
pub const DEFAULT_MAX_OPEN_MS: u32 = 60_000;

/// Whether tripping retries elsewhere unless `retry` says otherwise.
pub const DEFAULT_RETRY: bool = true;

/// A success share, in thousandths, at or above which a failure starts a
/// new run of consecutive failures.
pub const HEALTHY_PERMILLE: u16 = 900;

/// The plugin's config, as given in the pool's `recovery.config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The recent failure share that trips.
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
    /// Failures in a row that trip.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// The first ejection's length in ms.
    #[serde(default = "default_open_ms")]
    pub open_ms: u32,
    /// The longest ejection in ms.
    #[serde(default = "default_max_open_ms")]
    pub max_open_ms: u32,
    /// Retry elsewhere when tripping.
    #[serde(default = "default_retry")]
    pub retry: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            failure_ratio: DEFAULT_FAILURE_RATIO,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            open_ms: DEFAULT_OPEN_MS,
            max_open_ms: DEFAULT_MAX_OPEN_MS,
            retry: DEFAULT_RETRY,
        }
    }
}

/// Serde's default for `failure_ratio`.
fn default_failure_ratio() -> f64 {
    DEFAULT_FAILURE_RATIO
}

/// Serde's default for `consecutive_failures`.
fn default_consecutive_failures() -> u32 {
    DEFAULT_CONSECUTIVE_FAILURES
}

/// Serde's default for `open_ms`.
fn default_open_ms() -> u32 {
    DEFAULT_OPEN_MS
}

/// Serde's default for `max_open_ms`.
fn default_max_open_ms() -> u32 {
    DEFAULT_MAX_OPEN_MS
}

/// Serde's default for `retry`.
fn default_retry() -> bool {
    DEFAULT_RETRY
}

/// `open_ms × 2^(trips − 1)`, at most `max_open_ms`.
fn open_time_ms(open_ms: u32, max_open_ms: u32, trips: u32) -> u32 {
    let doublings = trips.saturating_sub(1);
    if doublings >= 32 {
        return max_open_ms;
    }
    // open_ms < 2^32, so a shift below 32 cannot overflow a u64.
    (u64::from(open_ms) << doublings).min(u64::from(max_open_ms)) as u32
}

/// The store entries of one endpoint (`switchyard_sdk::store`), shared by
/// every worker's instance and kept across versions of the plugin.
mod entry {
    /// Failures in the endpoint's current run; 0 when there is none.
    pub const RUN: &str = "run";
    /// The run's latest failure: when, in ms of the host's clock, shifted
    /// left by [`LAST_SHIFT`], and the success share the host reported then
    /// plus one (0: none reported) in the bits below; 0 when there was none.
    pub const LAST: &str = "last";
    /// The latest ejection: when it ends, in ms, shifted left by
    /// [`OPEN_SHIFT`], and the trips of its streak in the bits below (0
    /// before the first trip). Tripping claims it by compare-and-swap, so of
    /// the workers that see the same failures, one trips.
    pub const OPEN: &str = "open";
    pub const LAST_SHIFT: u32 = 11;
    pub const OPEN_SHIFT: u32 = 16;
}

/// The host's clock in ms.
fn now_ms() -> i64 {
    (host::now_ns() / 1_000_000) as i64
}

/// `(open_until_ms, trips)` of an `open` entry.
fn split_open(open: i64) -> (i64, u32) {
    (open >> entry::OPEN_SHIFT, (open & 0xFFFF) as u32)
}

/// `(at_ms, success_permille)` of a `last` entry.
fn split_last(last: i64) -> (i64, Option<u16>) {
    let permille = (last & ((1 << entry::LAST_SHIFT) - 1)) as u16;
    (last >> entry::LAST_SHIFT, permille.checked_sub(1))
}

/// The policy's state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    /// Failed thousandths at or above which an endpoint trips, 1 to 1000.
    threshold_permille: u16,
    consecutive_failures: u32,
    open_ms: u32,
    max_open_ms: u32,
    retry: bool,
    /// Whether a refusal of the store was logged (once per pool and instance).
    store_refusal_logged: bool,
}

impl CircuitBreaker {
    /// The open time of the `trips`-th trip of a streak (1 for the first):
    /// `open_ms × 2^(trips − 1)`, at most `max_open_ms`.
    pub fn open_time_ms(&self, trips: u32) -> u32 {
        open_time_ms(self.open_ms, self.max_open_ms, trips)
    }

    /// The failed share, in thousandths, at or above which an endpoint trips.
    pub fn threshold_permille(&self) -> u16 {
        self.threshold_permille
    }

    /// The answer to a failure that does not trip.
    fn pass(failure: &Failure) -> Decision {
        if failure.replayable && failure.request.attempt == 0 {
            Decision::Retry(Retry {
                delay_ms: 0,
                same_endpoint: false,
            })
        } else {
            Decision::GiveUp(None)
        }
    }

    /// The answer when the store refused (it is full): judged by the
    /// failure share alone, which needs no memory of earlier failures.
    fn without_store(
        &mut self,
        failure: &Failure,
        permille: Option<u16>,
        error: StoreError,
    ) -> Decision {
        if !self.store_refusal_logged {
            self.store_refusal_logged = true;
            host::log(
                LogLevel::Warn,
                &format!("the pool's store refused the breaker's state ({error}): tripping by failure_ratio alone; raise plugins.store_entries"),
            );
        }
        let failed = permille.map(|p| 1_000 - p);
        if failed.is_some_and(|failed| failed >= self.threshold_permille) {
            self.eject(failure, self.open_ms)
        } else {
            Self::pass(failure)
        }
    }

    fn eject(&self, failure: &Failure, open_ms: u32) -> Decision {
        Decision::Eject(Ejection {
            duration_ms: open_ms,
            retry: (self.retry && failure.replayable).then_some(Retry {
                delay_ms: 0,
                same_endpoint: false,
            }),
        })
    }

    /// The decision, with the endpoint's state in the pool's store.
    fn decide(&mut self, failure: &Failure, permille: Option<u16>) -> Result<Decision, StoreError> {
        let now = now_ms();
        let id = Some(failure.endpoint);
        let open = store::get(id, entry::OPEN);
        let (open_until, trips) = split_open(open);
        if trips > 0 && now < open_until {
            // In flight before the ejection: already accounted for.
            return Ok(Self::pass(failure));
        }

        let last = now << entry::LAST_SHIFT | permille.map_or(0, |p| i64::from(p) + 1);
        let (previous, _) = store::update(id, entry::LAST, |_| last)?;
        let (last_at, last_permille) = split_last(previous);
        let success_between = previous == 0
            || now.saturating_sub(last_at) > i64::from(self.open_ms)
            || permille.is_some_and(|p| p >= HEALTHY_PERMILLE)
            || matches!((last_permille, permille), (Some(before), Some(after)) if after > before);
        let run = if success_between {
            store::update(id, entry::RUN, |_| 1)?.1
        } else {
            store::add(id, entry::RUN, 1)?
        };

        let failed_permille = permille.map(|p| 1_000 - p);
        let ratio_trips = failed_permille.is_some_and(|failed| failed >= self.threshold_permille);
        let run_trips = run >= i64::from(self.consecutive_failures);
        if !ratio_trips && !run_trips {
            return Ok(Self::pass(failure));
        }

        let on_probation =
            trips > 0 && now < open_until.saturating_add(i64::from(self.open_time_ms(trips)));
        let trips = if on_probation {
            (trips + 1).min(0xFFFF)
        } else {
            1
        };
        let open_ms = self.open_time_ms(trips);
        let opened = (now + i64::from(open_ms)) << entry::OPEN_SHIFT | i64::from(trips);
        if store::compare_and_swap(id, entry::OPEN, open, opened)? != open {
            // Another worker's instance tripped it first.
            return Ok(Self::pass(failure));
        }
        store::update(id, entry::RUN, |_| 0)?;
        let why = if ratio_trips {
            format!("success {}‰", permille.unwrap_or(0))
        } else {
            format!("{run} failures in a row")
        };
        host::log(
            LogLevel::Warn,
            &format!(
                "endpoint {} open for {open_ms} ms (trip {trips}): {why}",
                failure.endpoint
            ),
        );
        Ok(self.eject(failure, open_ms))
    }
}

impl Recovery for CircuitBreaker {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        let ratio = config.failure_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(format!(
                "config key `failure_ratio`: must be above 0 and at most 1, got {ratio}"
            ));
        }
        if config.consecutive_failures == 0 {
            return Err("config key `consecutive_failures`: must be at least 1".into());
        }
        if config.open_ms == 0 {
            return Err("config key `open_ms`: must be at least 1".into());
        }
        if config.max_open_ms < config.open_ms {
            return Err(format!(
                "config key `max_open_ms`: must be at least `open_ms` ({}), got {}",
                config.open_ms, config.max_open_ms
            ));
        }
        Ok(CircuitBreaker {
            threshold_permille: ((ratio * 1_000.0).round() as u16).clamp(1, 1_000),
            consecutive_failures: config.consecutive_failures,
            open_ms: config.open_ms,
            max_open_ms: config.max_open_ms,
            retry: config.retry,
            store_refusal_logged: false,
        })
    }

    fn on_failure(&mut self, failure: &Failure) -> Decision {
        let permille = host::load(failure.endpoint).map(|load| load.success_permille.min(1_000));
        match self.decide(failure, permille) {
            Ok(decision) => decision,
            Err(error) => self.without_store(failure, permille, error),
        }
    }
}

export_recovery!(CircuitBreaker);

#[cfg(test)]
mod tests;
