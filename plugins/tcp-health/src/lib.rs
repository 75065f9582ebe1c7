//! TCP health check: each check opens a TCP connection to the endpoint under
//! check through the host's `probe::tcp_connect`, and closes it. The
//! endpoint is:
//!
//! - **Unhealthy** when the connection is not established; the reason is
//!   the probe's error (`connection refused`, `timed out`,
//!   `connection reset`);
//! - **Degraded** when it connects, but slower than `degraded_above_ms`
//!   (`connected in 120.5 ms, above 100 ms`): it keeps serving, and
//!   balancers that read its health can favour others;
//! - **Healthy** otherwise (`connected in 0.3 ms`).
//!
//! Connect times in reasons are in milliseconds, rounded up to a tenth, so
//! a degraded time never reads as equal to its ceiling. When the host
//! refuses the probe (`probe-error::not-allowed`), the endpoint is not at
//! fault: the verdict is **Unknown** with the host's reason, and a warning
//! is logged once per instance.
//!
//! This is HAProxy's default layer-4 `check` (a server is up when a TCP
//! connection opens: `L4OK`, `L4CON`, `L4TOUT`;
//! <https://docs.haproxy.org/2.8/configuration.html#5.2-check>) and Envoy's
//! TCP health checker with an empty payload, which "only checks that the
//! connection succeeds"
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking>).
//! It proves the endpoint accepts connections, not that it serves well; use
//! `http-health` for that. The host schedules the checks and applies the
//! pool's `health` table (`interval_ms`, `timeout_ms`, `jitter_ms`, `rise`,
//! `fall`).
//!
//! Config (JSON, every key optional):
//! - `timeout_ms` (default 1000, [`DEFAULT_TIMEOUT_MS`]): the connect
//!   timeout, at least 1; the host caps it at the check's own time limit
//!   (the `health` table's `timeout_ms`).
//! - `degraded_above_ms` (default none): a connect-time ceiling in ms; a
//!   slower connection is Degraded. Must be below `timeout_ms`.
//!
//! ```toml
//! [[pools]]
//! name = "db"
//! health = { plugin = "tcp-health", interval_ms = 5000, timeout_ms = 1000, rise = 2, fall = 3, config = { timeout_ms = 500, degraded_above_ms = 50 } }
//! endpoints = [{ address = "10.0.1.1:5432" }, { address = "10.0.1.2:5432" }]
//! ```

use serde::Deserialize;
use switchyard_sdk::host::{self, LogLevel};
use switchyard_sdk::probe::{self, ProbeError};
use switchyard_sdk::{export_health_check, Endpoint, Health, HealthCheck, Verdict};

/// The connect timeout in ms unless `timeout_ms` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u32 = 1_000;

/// The plugin's config, as given in the pool's `health.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The connect timeout in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Connect-time ceiling in ms above which the endpoint is Degraded.
    #[serde(default)]
    pub degraded_above_ms: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            degraded_above_ms: None,
        }
    }
}

/// Serde's default for `timeout_ms`.
fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

/// The health check's state.
#[derive(Debug, Clone)]
pub struct TcpHealth {
    timeout_ms: u32,
    degraded_above_ms: Option<u32>,
    /// Whether the host's refusal to probe was logged already.
    warned_not_allowed: bool,
}

/// A time in µs as milliseconds, rounded up to a tenth: `3 ms`, `0.2 ms`,
/// `100.1 ms`.
pub fn format_latency(latency_us: u32) -> String {
    let tenths = latency_us.div_ceil(100);
    match tenths % 10 {
        0 => format!("{} ms", tenths / 10),
        tenth => format!("{}.{tenth} ms", tenths / 10),
    }
}

impl HealthCheck for TcpHealth {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if config.timeout_ms == 0 {
            return Err("config key `timeout_ms`: must be at least 1".into());
        }
        if let Some(ceiling) = config.degraded_above_ms {
            if ceiling >= config.timeout_ms {
                return Err(format!(
                    "config key `degraded_above_ms`: must be below `timeout_ms` ({}), got {ceiling}",
                    config.timeout_ms
                ));
            }
        }
        Ok(TcpHealth {
            timeout_ms: config.timeout_ms,
            degraded_above_ms: config.degraded_above_ms,
            warned_not_allowed: false,
        })
    }

    fn check(&mut self, _target: &Endpoint) -> Verdict {
        match probe::tcp_connect(self.timeout_ms) {
            Ok(micros) => {
                let took = format_latency(micros);
                match self.degraded_above_ms {
                    Some(ceiling) if u64::from(micros) > u64::from(ceiling) * 1_000 => {
                        Verdict::degraded(format!("connected in {took}, above {ceiling} ms"))
                    }
                    _ => Verdict::healthy(format!("connected in {took}")),
                }
            }
            Err(ProbeError::NotAllowed(why)) => {
                if !self.warned_not_allowed {
                    self.warned_not_allowed = true;
                    host::log(
                        LogLevel::Warn,
                        &format!("the host refuses the TCP probe: {why}"),
                    );
                }
                Verdict {
                    health: Health::Unknown,
                    reason: format!("probe not allowed: {why}"),
                }
            }
            Err(error) => Verdict::unhealthy(error.to_string()),
        }
    }
}

export_health_check!(TcpHealth);

#[cfg(test)]
mod tests;
