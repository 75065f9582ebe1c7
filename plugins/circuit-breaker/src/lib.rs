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
//! - it has failed `consecutive_failures` times in a row, as seen by this
//!   instance (see below).
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
//! `open_ms`. Failures reported while this instance believes the endpoint
//! is still ejected (requests that were in flight when it was ejected)
//! neither count nor trip again.
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
//! Each worker thread keeps its own state per pool, so each keeps its own
//! counts and may eject an endpoint on its own; the success share is the
//! host's, shared by all. State is kept per endpoint id and forgotten once
//! it could no longer change a decision.
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

use std::collections::HashMap;

use serde::Deserialize;
use switchyard_sdk::host::{self, LogLevel};
use switchyard_sdk::{export_recovery, Decision, Ejection, EndpointId, Failure, Recovery, Retry};

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

/// How many endpoints' state is kept before forgotten state is pruned.
const PRUNE_AT_LEAST: usize = 64;

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

/// What this instance knows of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EndpointState {
    /// Failures in the current run; 0 when there is none.
    run: u32,
    /// When the run's latest failure came, by `host::now_ns`.
    last_failure_ns: u64,
    /// The success share the host reported then.
    last_permille: Option<u16>,
    /// Trips in the current streak: 0 before the first, 1 after it, and one
    /// more for each re-trip on probation.
    trips: u32,
    /// When the latest ejection ends.
    open_until_ns: u64,
    /// The latest ejection's length in ms.
    open_ms: u32,
}

impl EndpointState {
    /// Whether this state could still change a decision at `now_ns`; once
    /// not, it is as good as no state at all.
    fn matters(&self, now_ns: u64, open_ns: u64) -> bool {
        let run_alive = self.run > 0 && now_ns.saturating_sub(self.last_failure_ns) <= open_ns;
        let on_probation =
            self.trips > 0 && now_ns < self.open_until_ns.saturating_add(ms_to_ns(self.open_ms));
        run_alive || on_probation
    }
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

fn ms_to_ns(ms: u32) -> u64 {
    u64::from(ms) * 1_000_000
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
    endpoints: HashMap<EndpointId, EndpointState>,
    /// Prune forgotten state when `endpoints` grows to this.
    prune_at: usize,
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

    /// Drops the state of endpoints it no longer matters for, when there is
    /// a lot of it; amortized O(1) per failure.
    fn prune(&mut self, now_ns: u64) {
        if self.endpoints.len() < self.prune_at {
            return;
        }
        let open_ns = ms_to_ns(self.open_ms);
        self.endpoints
            .retain(|_, state| state.matters(now_ns, open_ns));
        self.prune_at = (self.endpoints.len() * 2).max(PRUNE_AT_LEAST);
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
            endpoints: HashMap::new(),
            prune_at: PRUNE_AT_LEAST,
        })
    }

    fn on_failure(&mut self, failure: &Failure) -> Decision {
        let now = host::now_ns();
        self.prune(now);
        let open_ns = ms_to_ns(self.open_ms);
        let id = failure.endpoint;
        let permille = host::load(id).map(|load| load.success_permille.min(1_000));
        let state = self.endpoints.entry(id).or_default();

        if state.trips > 0 && now < state.open_until_ns {
            // In flight before the ejection: already accounted for.
            return Self::pass(failure);
        }

        let success_between = now.saturating_sub(state.last_failure_ns) > open_ns
            || permille.is_some_and(|p| p >= HEALTHY_PERMILLE)
            || matches!((state.last_permille, permille), (Some(before), Some(after)) if after > before);
        state.run = if state.run == 0 || success_between {
            1
        } else {
            state.run.saturating_add(1)
        };
        state.last_failure_ns = now;
        state.last_permille = permille;

        let failed_permille = permille.map(|p| 1_000 - p);
        let ratio_trips = failed_permille.is_some_and(|failed| failed >= self.threshold_permille);
        let run_trips = state.run >= self.consecutive_failures;
        if !ratio_trips && !run_trips {
            return Self::pass(failure);
        }

        let on_probation =
            state.trips > 0 && now < state.open_until_ns.saturating_add(ms_to_ns(state.open_ms));
        let trips = if on_probation {
            state.trips.saturating_add(1)
        } else {
            1
        };
        let open_ms = open_time_ms(self.open_ms, self.max_open_ms, trips);
        let why = if ratio_trips {
            format!("success {}‰", permille.unwrap_or(0))
        } else {
            format!("{} failures in a row", state.run)
        };
        state.run = 0;
        state.trips = trips;
        state.open_ms = open_ms;
        state.open_until_ns = now.saturating_add(ms_to_ns(open_ms));

        host::log(
            LogLevel::Warn,
            &format!("endpoint {id} open for {open_ms} ms (trip {trips}): {why}"),
        );
        Decision::Eject(Ejection {
            duration_ms: open_ms,
            retry: (self.retry && failure.replayable).then_some(Retry {
                delay_ms: 0,
                same_endpoint: false,
            }),
        })
    }
}

export_recovery!(CircuitBreaker);

#[cfg(test)]
mod tests;
