//! Active health checks: one task per endpoint, each on its own interval
//! with jitter, judged by a `HealthChecker` (native TCP, or a plugin) and
//! applied with rise/fall hysteresis. A checker that faults is not a verdict
//! on the endpoint: the native TCP check judges it instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::endpoint::Endpoint;
use super::health::Health;
use super::pool::Pool;

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// A verdict on the endpoint, with its reason.
    Verdict(Health, String),
    /// The checker itself failed (a plugin trapped, overran or could not
    /// run); says nothing about the endpoint.
    Fault(String),
}

/// A boxed check in progress.
pub type CheckFuture = Pin<Box<dyn Future<Output = CheckOutcome> + Send>>;

/// Something that judges one endpoint at a time.
pub trait HealthChecker: Send + Sync + std::fmt::Debug {
    /// Checks `endpoint`, finishing by `deadline`.
    fn check(&self, endpoint: Arc<Endpoint>, deadline: Instant) -> CheckFuture;
}

/// Opens and closes a TCP connection: the native check, and the fallback for
/// a faulting plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpCheck;

impl HealthChecker for TcpCheck {
    fn check(&self, endpoint: Arc<Endpoint>, deadline: Instant) -> CheckFuture {
        Box::pin(async move {
            let started = Instant::now();
            let connect = endpoint.connect();
            match tokio::time::timeout_at(deadline.into(), connect).await {
                Ok(Ok(_stream)) => CheckOutcome::Verdict(
                    Health::Healthy,
                    format!("TCP connect in {} µs", started.elapsed().as_micros()),
                ),
                Ok(Err(error)) => {
                    CheckOutcome::Verdict(Health::Unhealthy, format!("TCP connect: {error}"))
                }
                Err(_) => {
                    CheckOutcome::Verdict(Health::Unhealthy, "TCP connect timed out".to_string())
                }
            }
        })
    }
}

/// When and how a pool's endpoints are checked.
#[derive(Debug, Clone)]
pub struct CheckSchedule {
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// Random extra delay, up to this, added to each interval.
    pub jitter: Duration,
    /// A check still running after this fails.
    pub timeout: Duration,
    /// Passing checks in a row that bring a down endpoint back.
    pub rise: u32,
    /// Failing checks in a row that take an endpoint down.
    pub fall: u32,
}

/// Starts checking every endpoint of `pool`; the tasks end when aborted.
/// The first check of each endpoint is spread at random over one interval,
/// so a large pool is not checked in a burst.
pub fn spawn_checks(
    pool: Arc<Pool>,
    checker: Arc<dyn HealthChecker>,
    schedule: CheckSchedule,
) -> Vec<tokio::task::JoinHandle<()>> {
    let endpoints = pool.endpoints().all.clone();
    endpoints
        .into_iter()
        .map(|endpoint| {
            let (pool, checker, schedule) = (pool.clone(), checker.clone(), schedule.clone());
            tokio::spawn(async move {
                tokio::time::sleep(random_up_to(schedule.interval)).await;
                loop {
                    let (health, reason) = check_once(&*checker, &endpoint, schedule.timeout).await;
                    // Unknown: the check could not judge; not a verdict either way.
                    if health != Health::Unknown {
                        pool.apply_check(
                            endpoint.id,
                            health,
                            &reason,
                            schedule.rise,
                            schedule.fall,
                        );
                    }
                    tokio::time::sleep(schedule.interval + random_up_to(schedule.jitter)).await;
                }
            })
        })
        .collect()
}

/// One check: the checker's verdict, or the native TCP check's when the
/// checker faults or overruns the timeout.
pub async fn check_once(
    checker: &dyn HealthChecker,
    endpoint: &Arc<Endpoint>,
    timeout: Duration,
) -> (Health, String) {
    let deadline = Instant::now() + timeout;
    let outcome =
        tokio::time::timeout_at(deadline.into(), checker.check(endpoint.clone(), deadline))
            .await
            .unwrap_or_else(|_| {
                CheckOutcome::Fault(format!(
                    "check ran past its {} ms timeout",
                    timeout.as_millis()
                ))
            });
    match outcome {
        CheckOutcome::Verdict(health, reason) => (health, reason),
        CheckOutcome::Fault(fault) => {
            // The endpoint gets a fair judgement of its own.
            let fallback_deadline = Instant::now() + timeout;
            match TcpCheck.check(endpoint.clone(), fallback_deadline).await {
                CheckOutcome::Verdict(health, reason) => (
                    health,
                    format!("{reason} (native check; the plugin failed: {fault})"),
                ),
                CheckOutcome::Fault(other) => (Health::Unknown, other),
            }
        }
    }
}

fn random_up_to(limit: Duration) -> Duration {
    if limit.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(fastrand::u64(
        ..=limit.as_nanos().min(u128::from(u64::MAX)) as u64,
    ))
}
