//! Endpoint health as the host sees it — active-check verdicts, passive
//! ejections — and the rule that turns it into the eligible set: tiers,
//! failover and the panic threshold. Changes raise alerts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::endpoint::EndpointId;

/// Alerts kept in memory; older ones are dropped.
pub const ALERT_HISTORY: usize = 1_000;

/// What the host believes about an endpoint from its active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Passing its checks.
    Healthy,
    /// Passing, but slow or partly failing; still takes traffic.
    Degraded,
    /// Failing its checks; takes no traffic.
    Unhealthy,
    /// Not checked (yet); takes traffic.
    #[default]
    Unknown,
}

/// Passive outlier detection: ejection from live traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierPolicy {
    /// Consecutive failed responses (connect errors, timeouts, 5xx) that eject.
    pub consecutive_failures: u32,
    /// Ejection time; the n-th ejection of an endpoint lasts n times this.
    pub base_ejection: Duration,
    /// Upper bound of one ejection.
    pub max_ejection: Duration,
    /// At most this share of the pool's endpoints is ejected at once.
    pub max_ejection_percent: u32,
    /// How often success rates are judged.
    pub interval: Duration,
    /// Below this share of successful responses in one interval, an
    /// endpoint is ejected; 0 disables the success-rate check.
    pub min_success_rate: f64,
    /// Responses an endpoint must have had in the interval to be judged.
    pub min_requests: u32,
    /// A passing active check ends an ejection of this detector's at once.
    pub uneject_on_active_success: bool,
}

/// How a pool turns health into eligibility.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// A tier serves while at least this share of its endpoints is available;
    /// below it, traffic moves to the next tier that meets it.
    pub failover_threshold: f64,
    /// When even the serving tier has less than this share available, balance
    /// over all its endpoints rather than overload the few (Envoy's panic mode).
    pub panic_threshold: f64,
    /// Ejection from live traffic; `None` disables it.
    pub outlier: Option<OutlierPolicy>,
    /// An endpoint that comes back ramps from 10% to its full weight over
    /// this time; zero disables slow start.
    pub slow_start: Duration,
    /// After a connect failure an endpoint is held out of the set, panic
    /// mode included: until an active check passes when the pool has them,
    /// for this long when it has none; zero disables the hold.
    pub connect_failure_hold: Duration,
    /// Whether the pool's endpoints are actively checked.
    pub active_checks: bool,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            failover_threshold: 0.5,
            panic_threshold: 0.5,
            outlier: None,
            slow_start: Duration::ZERO,
            connect_failure_hold: Duration::from_secs(1),
            active_checks: false,
        }
    }
}

/// Alert severities, P0 (a pool cannot serve) to P4 (information).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    /// A whole pool without a healthy endpoint.
    P0,
    /// Failover to a backup tier, or panic mode.
    P1,
    /// An endpoint ejected or down; a pool's DNS discovery failing (its
    /// last set kept).
    P2,
    /// A warning that needs no action now: a candidate plugin version
    /// rolled back (the serving one kept every request).
    P3,
    /// Recovery: an endpoint or tier is back; news: a candidate promoted.
    P4,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// When, in ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// How urgent.
    pub severity: Severity,
    /// The pool.
    pub pool: String,
    /// The endpoint, when it concerns one.
    pub endpoint: Option<String>,
    /// What happened.
    pub message: String,
}

/// The bounded alert history, shared by every pool; each alert is also an
/// event on the live stream.
#[derive(Debug, Default)]
pub struct Alerts {
    history: Mutex<VecDeque<Alert>>,
    events: std::sync::Arc<super::events::Events>,
}

impl Alerts {
    /// Alerts published on `events` too.
    pub fn with_events(events: std::sync::Arc<super::events::Events>) -> Self {
        Alerts {
            history: Mutex::default(),
            events,
        }
    }

    /// The live event stream alerts are published on.
    pub fn events(&self) -> &std::sync::Arc<super::events::Events> {
        &self.events
    }

    /// Records an alert and logs it.
    pub fn raise(&self, severity: Severity, pool: &str, endpoint: Option<&str>, message: String) {
        match severity {
            Severity::P0 | Severity::P1 => {
                tracing::error!(?severity, pool, endpoint, "{message}")
            }
            Severity::P2 | Severity::P3 => tracing::warn!(?severity, pool, endpoint, "{message}"),
            Severity::P4 => tracing::info!(?severity, pool, endpoint, "{message}"),
        }
        let alert = Alert {
            at_unix_ms: unix_ms(),
            severity,
            pool: pool.to_string(),
            endpoint: endpoint.map(str::to_string),
            message,
        };
        self.events
            .publish("alert", serde_json::to_value(&alert).unwrap_or_default());
        let mut history = self.history.lock().unwrap();
        if history.len() == ALERT_HISTORY {
            history.pop_front();
        }
        history.push_back(alert);
    }

    /// Every kept alert, oldest first.
    pub fn history(&self) -> Vec<Alert> {
        self.history.lock().unwrap().iter().cloned().collect()
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The host's view of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointHealth {
    /// From active checks.
    pub active: Health,
    /// Consecutive passing checks (for `rise`).
    pub passes: u32,
    /// Consecutive failing checks (for `fall`).
    pub fails: u32,
    /// Out of the eligible set until then (passive ejection).
    pub ejected_until: Option<Instant>,
    /// The ejection was the recovery policy's, not the outlier detector's:
    /// a passing active check does not end it.
    pub ejected_by_recovery: bool,
    /// Held out after a connect failure at this time (even in panic mode).
    pub held_since: Option<Instant>,
    /// Times ejected since start.
    pub ejections: u32,
    /// When it last became available again, for slow start.
    pub returned_at: Option<Instant>,
    /// Why the last transition happened.
    pub reason: String,
    /// When, in ms since the Unix epoch.
    pub changed_at_unix_ms: u64,
}

impl EndpointHealth {
    /// Whether the endpoint may take traffic outside panic mode.
    pub fn is_available(&self, now: Instant) -> bool {
        self.active != Health::Unhealthy && !self.is_ejected(now) && self.held_since.is_none()
    }

    /// Whether a passive ejection keeps it out now.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }
}

/// Which endpoints serve, and in what mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    /// The ids that may take traffic, in id order.
    pub eligible: Vec<EndpointId>,
    /// The tier serving.
    pub tier: u32,
    /// Whether the serving tier is in panic mode (health ignored).
    pub panic: bool,
    /// Whether no endpoint of the pool is available.
    pub none_available: bool,
}

/// Chooses the eligible endpoints from `tiers[id]`, availability and the
/// endpoints held out after a connect failure (`held[id]`, never available).
///
/// The serving tier is the lowest whose available share is at least
/// `failover_threshold`; if none meets it, the tier with the highest share
/// (the lowest on a tie). If the serving tier's share is below
/// `panic_threshold`, all of its endpoints are eligible (panic mode) but
/// those held: panic spreads load over endpoints that may be failing, never
/// over ones that are known to refuse connections.
pub fn eligibility(
    tiers: &[u32],
    available: &[bool],
    held: &[bool],
    policy: &HealthPolicy,
) -> Eligibility {
    eligibility_with_out(tiers, available, held, &vec![false; tiers.len()], policy)
}

/// [`eligibility`], with the endpoints an operator took out (`out[id]`:
/// draining or disabled) left out of everything: they are never eligible
/// and do not count in their tier's share, so taking endpoints out causes
/// no failover and no panic.
pub fn eligibility_with_out(
    tiers: &[u32],
    available: &[bool],
    held: &[bool],
    out: &[bool],
    policy: &HealthPolicy,
) -> Eligibility {
    let mut tier_ids: Vec<u32> = tiers
        .iter()
        .zip(out)
        .filter(|(_, out)| !**out)
        .map(|(tier, _)| *tier)
        .collect();
    tier_ids.sort_unstable();
    tier_ids.dedup();
    let share = |tier: u32| {
        let (up, all) = tiers
            .iter()
            .zip(available)
            .zip(out)
            .filter(|((t, _), out)| **t == tier && !**out)
            .fold((0usize, 0usize), |(up, all), ((_, ok), _)| {
                (up + usize::from(*ok), all + 1)
            });
        if all == 0 {
            0.0
        } else {
            up as f64 / all as f64
        }
    };
    let serving = tier_ids
        .iter()
        .copied()
        .find(|&tier| share(tier) >= policy.failover_threshold)
        .or_else(|| {
            tier_ids
                .iter()
                .copied()
                .fold(None, |best: Option<(u32, f64)>, tier| match best {
                    Some((_, s)) if s >= share(tier) => best,
                    _ => Some((tier, share(tier))),
                })
                .map(|(tier, _)| tier)
        })
        .unwrap_or(0);
    let panic = share(serving) < policy.panic_threshold;
    let eligible = tiers
        .iter()
        .enumerate()
        .filter(|(id, tier)| {
            **tier == serving && !out[*id] && if panic { !held[*id] } else { available[*id] }
        })
        .map(|(id, _)| id as EndpointId)
        .collect();
    Eligibility {
        eligible,
        tier: serving,
        panic,
        none_available: !available.iter().zip(out).any(|(ok, out)| *ok && !*out),
    }
}

/// Share of its weight an endpoint gets right after it returns.
const SLOW_START_FLOOR: f64 = 0.1;

/// The weight an endpoint gets `since` after it returned: from 10% of
/// `weight` up to all of it over `slow_start`, at least 1.
pub fn slow_start_weight(weight: u32, since: Duration, slow_start: Duration) -> u32 {
    if slow_start.is_zero() || since >= slow_start {
        return weight;
    }
    let share = (since.as_secs_f64() / slow_start.as_secs_f64()).max(SLOW_START_FLOOR);
    ((f64::from(weight) * share).round() as u32).clamp(1, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_ramps_from_a_tenth_to_the_full_weight() {
        let ramp = Duration::from_secs(10);
        assert_eq!(slow_start_weight(100, Duration::ZERO, ramp), 10);
        assert_eq!(slow_start_weight(100, Duration::from_secs(5), ramp), 50);
        assert_eq!(slow_start_weight(100, ramp, ramp), 100);
        assert_eq!(slow_start_weight(3, Duration::ZERO, ramp), 1);
        assert_eq!(slow_start_weight(100, Duration::ZERO, Duration::ZERO), 100);
    }

    fn policy() -> HealthPolicy {
        HealthPolicy::default()
    }

    #[test]
    fn all_available_serves_the_primary_tier() {
        let e = eligibility(&[0, 0, 1], &[true, true, true], &[false; 3], &policy());
        assert_eq!((e.eligible, e.tier, e.panic), (vec![0, 1], 0, false));
    }

    #[test]
    fn unavailable_endpoints_leave_the_set() {
        let e = eligibility(&[0, 0, 0], &[true, false, true], &[false; 3], &policy());
        assert_eq!((e.eligible, e.tier, e.panic), (vec![0, 2], 0, false));
    }

    #[test]
    fn a_primary_tier_below_the_threshold_fails_over_and_comes_back() {
        let tiers = [0, 0, 1, 1];
        let e = eligibility(&tiers, &[false, false, true, true], &[false; 4], &policy());
        assert_eq!((e.eligible, e.tier, e.panic), (vec![2, 3], 1, false));
        let e = eligibility(&tiers, &[true, true, true, true], &[false; 4], &policy());
        assert_eq!(e.tier, 0);
    }

    #[test]
    fn below_the_panic_threshold_every_endpoint_of_the_tier_serves() {
        let e = eligibility(&[0, 0, 0], &[true, false, false], &[false; 3], &policy());
        assert_eq!((e.eligible, e.tier, e.panic), (vec![0, 1, 2], 0, true));
        let e = eligibility(&[0, 0, 0], &[false, false, false], &[false; 3], &policy());
        assert!(e.none_available && e.panic);
        assert_eq!(e.eligible, vec![0, 1, 2]);
    }

    #[test]
    fn panic_mode_leaves_out_endpoints_that_refuse_connections() {
        // One of four available: panic, over every endpoint but the two
        // that refused a connection.
        let e = eligibility(
            &[0, 0, 0, 0],
            &[true, false, false, false],
            &[false, true, false, true],
            &policy(),
        );
        assert_eq!((e.eligible, e.panic), (vec![0, 2], true));
        // Every endpoint refusing: nothing to send to.
        let e = eligibility(&[0, 0], &[false, false], &[true, true], &policy());
        assert!(e.eligible.is_empty() && e.none_available);
    }

    #[test]
    fn endpoints_taken_out_are_never_eligible_and_cause_no_failover() {
        // Three of four primaries drained: the one left serves alone, with
        // no failover to the backup and no panic.
        let e = eligibility_with_out(
            &[0, 0, 0, 0, 1],
            &[true; 5],
            &[false; 5],
            &[true, true, true, false, false],
            &policy(),
        );
        assert_eq!((e.eligible, e.tier, e.panic), (vec![3], 0, false));
    }

    #[test]
    fn a_zero_panic_threshold_never_panics() {
        let policy = HealthPolicy {
            panic_threshold: 0.0,
            ..HealthPolicy::default()
        };
        let e = eligibility(&[0, 0, 0], &[true, false, false], &[false; 3], &policy);
        assert_eq!((e.eligible, e.panic), (vec![0], false));
    }

    #[test]
    fn alerts_are_bounded() {
        let alerts = Alerts::default();
        for n in 0..ALERT_HISTORY + 5 {
            alerts.raise(Severity::P4, "web", None, format!("alert {n}"));
        }
        let history = alerts.history();
        assert_eq!(history.len(), ALERT_HISTORY);
        assert_eq!(history[0].message, "alert 5");
    }
}
