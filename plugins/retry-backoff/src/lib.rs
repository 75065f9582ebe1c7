//! Retries with capped exponential backoff and full jitter. After a failed
//! attempt, the request is sent again when all of these hold:
//!
//! 1. the host can replay it (`failure.replayable`: idempotent, small body);
//! 2. attempts remain: `failure.request.attempt + 1 < attempts`, where
//!    `attempt` is 0 for the first try, so `attempts` counts the first try
//!    too;
//! 3. the failure's kind is listed in `retry_on`.
//!
//! Otherwise the plugin gives up with `give-up(none)`: the client gets the
//! endpoint's own response when there was one, and the host's error status
//! when there was not.
//!
//! The retry waits a random time, uniform in `0..=min(max_delay_ms,
//! base_delay_ms × 2^attempt)` ms: "full jitter" from Marc Brooker's
//! "Exponential Backoff And Jitter" on the AWS Architecture Blog
//! (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>),
//! which spreads the retries of many clients that failed together instead
//! of sending them back in synchronized waves, and does the least total work
//! of the schemes compared there. Envoy's retry policy backs off the same
//! way ("fully jittered exponential back-off", 25 ms base, cap 10× base) and
//! is where the `retry_on` conditions come from
//! (<https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-retry-on>).
//! The random numbers are the host's (`host::random_below`). The host still
//! enforces its retry budget and the route's deadline.
//!
//! Config (JSON, every key optional):
//! - `attempts` (default 3, [`DEFAULT_ATTEMPTS`]): total attempts including
//!   the first, from 1 (never retry) to [`MAX_ATTEMPTS`].
//! - `base_delay_ms` (default 5, [`DEFAULT_BASE_DELAY_MS`]): the backoff
//!   ceiling of the first retry; each further retry doubles it. 0 retries
//!   at once.
//! - `max_delay_ms` (default 250, [`DEFAULT_MAX_DELAY_MS`]): the most the
//!   ceiling grows to; at least `base_delay_ms`, at most
//!   [`MAX_DELAY_LIMIT_MS`].
//! - `retry_on` (default `["connect-refused", "connect-timeout", "reset",
//!   "5xx"]`): the failures worth retrying, at least one of
//!   `"connect-refused"`, `"connect-timeout"`, `"reset"`,
//!   `"response-timeout"`, `"5xx"`, `"4xx"`, or a status such as `503` or
//!   `429`. `response-timeout` is off by default because the endpoint may
//!   still be working on the request; statuses are only reported for
//!   responses the route counts as failed.
//! - `same_endpoint` (default false): retry on the endpoint that failed
//!   rather than on another.
//!
//! ```toml
//! [[pools]]
//! name = "api"
//! recovery = { plugin = "retry-backoff", config = { attempts = 4, base_delay_ms = 10, max_delay_ms = 500, retry_on = ["connect-refused", "reset", "5xx", 429] } }
//! endpoints = [{ address = "10.0.0.1:8080" }, { address = "10.0.0.2:8080" }]
//! ```

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use switchyard_sdk::{export_recovery, host, Decision, Failure, FailureKind, Recovery, Retry};

/// Total attempts unless `attempts` says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// The largest `attempts` accepted.
pub const MAX_ATTEMPTS: u32 = 10;

/// The first retry's backoff ceiling in ms unless `base_delay_ms` says
/// otherwise.
pub const DEFAULT_BASE_DELAY_MS: u32 = 5;

/// The largest backoff ceiling in ms unless `max_delay_ms` says otherwise.
pub const DEFAULT_MAX_DELAY_MS: u32 = 250;

/// The largest `max_delay_ms` accepted: a minute, far beyond any sensible
/// request deadline, so a larger value is a mistake (seconds for ms).
pub const MAX_DELAY_LIMIT_MS: u32 = 60_000;

/// The failures retried unless `retry_on` says otherwise.
pub const DEFAULT_RETRY_ON: [RetryOn; 4] = [
    RetryOn::ConnectRefused,
    RetryOn::ConnectTimeout,
    RetryOn::Reset,
    RetryOn::ServerError,
];

/// The plugin's config, as given in the pool's `recovery.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Total attempts, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The first retry's backoff ceiling in ms.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u32,
    /// The largest backoff ceiling in ms.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u32,
    /// The failures worth retrying.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Retry on the endpoint that failed rather than another.
    #[serde(default)]
    pub same_endpoint: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            attempts: DEFAULT_ATTEMPTS,
            base_delay_ms: DEFAULT_BASE_DELAY_MS,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
            retry_on: default_retry_on(),
            same_endpoint: false,
        }
    }
}

/// Serde's default for `attempts`.
fn default_attempts() -> u32 {
    DEFAULT_ATTEMPTS
}

/// Serde's default for `base_delay_ms`.
fn default_base_delay_ms() -> u32 {
    DEFAULT_BASE_DELAY_MS
}

/// Serde's default for `max_delay_ms`.
fn default_max_delay_ms() -> u32 {
    DEFAULT_MAX_DELAY_MS
}

/// Serde's default for `retry_on`.
fn default_retry_on() -> Vec<RetryOn> {
    DEFAULT_RETRY_ON.to_vec()
}

/// One item of `retry_on`: a kind of failure worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// `"connect-refused"`.
    ConnectRefused,
    /// `"connect-timeout"`.
    ConnectTimeout,
    /// `"reset"`: the connection broke mid-request.
    Reset,
    /// `"response-timeout"`.
    ResponseTimeout,
    /// `"5xx"`: any status from 500 to 599.
    ServerError,
    /// `"4xx"`: any status from 400 to 499.
    ClientError,
    /// A number: exactly this status.
    Status(u16),
}

impl RetryOn {
    /// The names accepted in `retry_on`, besides status numbers.
    pub const NAMES: [&'static str; 6] = [
        "connect-refused",
        "connect-timeout",
        "reset",
        "response-timeout",
        "5xx",
        "4xx",
    ];

    /// Whether a failure of `kind` is one of these.
    pub fn matches(self, kind: FailureKind) -> bool {
        match (self, kind) {
            (RetryOn::ConnectRefused, FailureKind::ConnectRefused)
            | (RetryOn::ConnectTimeout, FailureKind::ConnectTimeout)
            | (RetryOn::Reset, FailureKind::Reset)
            | (RetryOn::ResponseTimeout, FailureKind::ResponseTimeout) => true,
            (RetryOn::ServerError, FailureKind::Status(status)) => (500..=599).contains(&status),
            (RetryOn::ClientError, FailureKind::Status(status)) => (400..=499).contains(&status),
            (RetryOn::Status(wanted), FailureKind::Status(status)) => wanted == status,
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RetryOnVisitor;

        impl Visitor<'_> for RetryOnVisitor {
            type Value = RetryOn;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "one of \"{}\", or a status such as 503",
                    RetryOn::NAMES.join("\", \"")
                )
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RetryOn, E> {
                match u16::try_from(value) {
                    Ok(status) if (100..=599).contains(&status) => Ok(RetryOn::Status(status)),
                    _ => Err(E::custom(format!("status {value} is not from 100 to 599"))),
                }
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RetryOn, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format!("status {value} is not from 100 to 599"))),
                }
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<RetryOn, E> {
                Ok(match name {
                    "connect-refused" => RetryOn::ConnectRefused,
                    "connect-timeout" => RetryOn::ConnectTimeout,
                    "reset" => RetryOn::Reset,
                    "response-timeout" => RetryOn::ResponseTimeout,
                    "5xx" => RetryOn::ServerError,
                    "4xx" => RetryOn::ClientError,
                    _ => {
                        return Err(E::custom(format!(
                            "unknown failure `{name}`, expected one of \"{}\", or a status number such as 503",
                            RetryOn::NAMES.join("\", \"")
                        )))
                    }
                })
            }
        }

        deserializer.deserialize_any(RetryOnVisitor)
    }
}

/// The policy's state: only its config; each decision is independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryBackoff {
    attempts: u32,
    base_delay_ms: u32,
    max_delay_ms: u32,
    retry_on: Vec<RetryOn>,
    same_endpoint: bool,
}

impl RetryBackoff {
    /// The most a retry after failed attempt `attempt` (0 for the first
    /// try) waits: `min(max_delay_ms, base_delay_ms × 2^attempt)`.
    pub fn backoff_ceiling_ms(&self, attempt: u32) -> u32 {
        let max = u64::from(self.max_delay_ms);
        // base < 2^32, so a shift below 32 cannot overflow a u64.
        let ceiling = if attempt < 32 {
            (u64::from(self.base_delay_ms) << attempt).min(max)
        } else if self.base_delay_ms == 0 {
            0
        } else {
            max
        };
        ceiling as u32
    }

    /// Whether a failure of `kind` is worth retrying.
    pub fn retries(&self, kind: FailureKind) -> bool {
        self.retry_on.iter().any(|item| item.matches(kind))
    }
}

impl Recovery for RetryBackoff {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if !(1..=MAX_ATTEMPTS).contains(&config.attempts) {
            return Err(format!(
                "config key `attempts`: must be from 1 to {MAX_ATTEMPTS}, got {}",
                config.attempts
            ));
        }
        if config.max_delay_ms > MAX_DELAY_LIMIT_MS {
            return Err(format!(
                "config key `max_delay_ms`: must be at most {MAX_DELAY_LIMIT_MS}, got {}",
                config.max_delay_ms
            ));
        }
        if config.base_delay_ms > config.max_delay_ms {
            return Err(format!(
                "config key `base_delay_ms`: must be at most `max_delay_ms` ({}), got {}",
                config.max_delay_ms, config.base_delay_ms
            ));
        }
        if config.retry_on.is_empty() {
            return Err(
                "config key `retry_on`: must list at least one failure; to never retry, set `attempts` to 1"
                    .into(),
            );
        }
        Ok(RetryBackoff {
            attempts: config.attempts,
            base_delay_ms: config.base_delay_ms,
            max_delay_ms: config.max_delay_ms,
            retry_on: config.retry_on,
            same_endpoint: config.same_endpoint,
        })
    }

    fn on_failure(&mut self, failure: &Failure) -> Decision {
        let attempt = failure.request.attempt;
        if !failure.replayable
            || attempt.saturating_add(1) >= self.attempts
            || !self.retries(failure.kind)
        {
            return Decision::GiveUp(None);
        }
        // The ceiling is at most MAX_DELAY_LIMIT_MS, so `+ 1` cannot overflow.
        let delay_ms = host::random_below(self.backoff_ceiling_ms(attempt) + 1);
        Decision::Retry(Retry {
            delay_ms,
            same_endpoint: self.same_endpoint,
        })
    }
}

export_recovery!(RetryBackoff);

#[cfg(test)]
mod tests;
