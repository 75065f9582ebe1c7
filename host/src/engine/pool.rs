//! A pool: its endpoints, their health, its balancer, and the fallback that
//! stands in for the balancer when it fails.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::admission::{Admission, NotStarted};
use super::balancer::{Balancer, PickRequest, Priority, RoundRobin};
use super::endpoint::{Endpoint, EndpointId, EndpointSet, InFlightGuard};
use super::health::{
    eligibility_with_out, slow_start_weight, unix_ms, Alerts, Eligibility, EndpointHealth, Health,
    HealthPolicy, Severity,
};
use super::histogram::{ClassHistograms, Histogram};
use super::recovery::{RecoveryPolicy, RetryBudget};

/// A named group of endpoints and the strategy that spreads requests over
/// them.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The plugin name, or `None` for the native round robin.
    pub plugin: Option<String>,
    endpoints: ArcSwap<EndpointSet>,
    balancer: Option<Arc<dyn Balancer>>,
    fallback: RoundRobin,
    fallback_picks: AtomicU64,
    policy: HealthPolicy,
    health: Mutex<HealthState>,
    alerts: Arc<Alerts>,
    recovery: Option<Recovery>,
    upstream: UpstreamProtocol,
    /// Some endpoint has an ejection or a timed hold that will run out:
    /// the readmission ticker looks at this pool. Set under the health
    /// lock; with thousands of pools, the ticker skips the others with one
    /// load each.
    expiries_pending: AtomicBool,
    /// Some endpoint may be in slow start: the ticker republishes weights.
    /// Set with `returned_at`, cleared by the ticker when none is.
    ramping: AtomicBool,
    /// When the outlier detector next judges success rates, in ms since
    /// `created`: the ticker passes a pool not due with one load.
    rates_due_ms: AtomicU64,
    created: Instant,
    /// Where the pool queues itself for the readmission ticker, and a weak
    /// handle to itself to queue; set by `TickQueue::register`.
    tick_queue: OnceLock<(Arc<TickQueue>, Weak<Pool>)>,
    /// Whether the pool is in its queue now.
    queued: AtomicBool,
    /// Limits on requests in flight and the queue for the rest; `None`
    /// when neither the pool nor an endpoint sets one.
    admission: Option<Arc<Admission>>,
    /// Time from a request's head to its first attempt's sending, by class:
    /// what the proxy adds (routing, queueing, the pick).
    pub added_latency: ClassHistograms,
    /// Time from a request's head to its response's head, retries and
    /// queueing included.
    pub duration: Histogram,
    /// Copies routes mirrored to this pool, by `MirrorResult`.
    mirrored: [AtomicU64; 3],
}

/// What became of a copy a route mirrored to a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorResult {
    /// Answered, not with a 5xx.
    Sent,
    /// Not sent: the worker had its most copies in flight, or the pool no
    /// eligible endpoint or no room.
    Dropped,
    /// Failed: no connection, no answer in time, or a 5xx.
    Failed,
}

impl MirrorResult {
    /// Every result.
    pub const ALL: [MirrorResult; 3] = [
        MirrorResult::Sent,
        MirrorResult::Dropped,
        MirrorResult::Failed,
    ];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            MirrorResult::Sent => "sent",
            MirrorResult::Dropped => "dropped",
            MirrorResult::Failed => "failed",
        }
    }
}

/// The pools with timed work pending (an ejection or a hold to expire, a
/// slow start to ramp): the readmission ticker visits these and no other,
/// so thousands of quiet pools cost it nothing. A pool queues itself when
/// such work begins and the ticker queues it again while some is left.
#[derive(Debug, Default)]
pub struct TickQueue {
    pending: Mutex<Vec<Weak<Pool>>>,
}

impl TickQueue {
    /// Lets `pool` queue itself here; queues it now if it has timed work
    /// (inherited from the pool it replaced).
    pub fn register(self: &Arc<Self>, pool: &Arc<Pool>) {
        if pool
            .tick_queue
            .set((Arc::clone(self), Arc::downgrade(pool)))
            .is_ok()
        {
            pool.queue_if_pending();
        }
    }

    /// The pools queued since the last call, each once.
    pub fn take(&self) -> Vec<Weak<Pool>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// How the proxy speaks to a pool's endpoints.
#[derive(Debug, Clone, Default)]
pub struct UpstreamProtocol {
    /// HTTP/2 rather than HTTP/1.1.
    pub http2: bool,
    /// TLS to the endpoints, when set.
    pub tls: Option<UpstreamTls>,
    /// Keeps these connections apart from others to the same address in
    /// the proxy's connection pools; empty for plain HTTP/1.1.
    pub key: String,
}

impl UpstreamProtocol {
    /// Plain HTTP/1.1: what the fast path speaks.
    pub fn is_plain_http1(&self) -> bool {
        !self.http2 && self.tls.is_none()
    }
}

/// TLS to a pool's endpoints.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The roots, verifier and ALPN.
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent and verified; `None`: each endpoint's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
}

/// What a pool does after a failed attempt.
#[derive(Debug)]
pub struct Recovery {
    /// Decides each failure.
    pub policy: Arc<dyn RecoveryPolicy>,
    /// Caps retries.
    pub budget: RetryBudget,
    /// Larger request bodies are streamed, never retried.
    pub max_replay_body: u64,
}

#[derive(Debug)]
struct HealthState {
    endpoints: Vec<EndpointHealth>,
    serving: Eligibility,
    /// When success rates were last judged.
    rates_judged: Instant,
    /// When slow-start weights were last published.
    weights_published: Instant,
}

/// A copy of a pool's health for the API.
#[derive(Debug, Clone)]
pub struct PoolHealthView {
    /// Per endpoint, by id.
    pub endpoints: Vec<EndpointHealth>,
    /// The tier serving now.
    pub tier: u32,
    /// Whether the pool is in panic mode.
    pub panic: bool,
}

impl Pool {
    /// A pool whose endpoints are all eligible, with the default health
    /// policy and an alert history of its own. `balancer` is `None` for the
    /// native round robin.
    pub fn new(
        name: String,
        endpoints: Vec<Arc<Endpoint>>,
        plugin: Option<String>,
        balancer: Option<Arc<dyn Balancer>>,
    ) -> Self {
        Pool::with_health(
            name,
            endpoints,
            plugin,
            balancer,
            HealthPolicy::default(),
            Arc::default(),
        )
    }

    /// A pool with a health policy, raising alerts into `alerts`.
    pub fn with_health(
        name: String,
        endpoints: Vec<Arc<Endpoint>>,
        plugin: Option<String>,
        balancer: Option<Arc<dyn Balancer>>,
        policy: HealthPolicy,
        alerts: Arc<Alerts>,
    ) -> Self {
        let tiers: Vec<u32> = endpoints.iter().map(|e| e.tier).collect();
        let out: Vec<bool> = endpoints
            .iter()
            .map(|e| e.admin != super::endpoint::Admin::Active)
            .collect();
        let serving = eligibility_with_out(
            &tiers,
            &vec![true; tiers.len()],
            &vec![false; tiers.len()],
            &out,
            &policy,
        );
        let set = EndpointSet::new(1, endpoints.clone(), serving.eligible.clone());
        Pool {
            name,
            plugin,
            endpoints: ArcSwap::from_pointee(set),
            balancer,
            fallback: RoundRobin::default(),
            fallback_picks: AtomicU64::new(0),
            health: Mutex::new(HealthState {
                endpoints: vec![EndpointHealth::default(); endpoints.len()],
                serving,
                rates_judged: Instant::now(),
                weights_published: Instant::now(),
            }),
            policy,
            alerts,
            recovery: None,
            upstream: UpstreamProtocol::default(),
            expiries_pending: AtomicBool::new(false),
            ramping: AtomicBool::new(false),
            rates_due_ms: AtomicU64::new(0),
            created: Instant::now(),
            tick_queue: OnceLock::new(),
            queued: AtomicBool::new(false),
            admission: None,
            added_latency: ClassHistograms::default(),
            duration: Histogram::default(),
            mirrored: Default::default(),
        }
    }

    /// Queues the pool for the readmission ticker if it has timed work and
    /// is not queued already.
    fn queue_if_pending(&self) {
        let pending = self.expiries_pending.load(Ordering::Relaxed)
            || (self.ramping.load(Ordering::Relaxed) && !self.policy.slow_start.is_zero());
        if !pending || self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.tick_queue.get() {
            Some((queue, me)) => queue
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(me.clone()),
            None => self.queued.store(false, Ordering::Release),
        }
    }

    /// The ticker's visit to a queued pool: its timed work, then queued
    /// again if some is left.
    pub fn tick_queued(&self, now: Instant) {
        self.queued.store(false, Ordering::Release);
        self.readmit_expired(now);
        self.advance_slow_start(now);
        self.queue_if_pending();
    }

    /// The same pool, recovering failed attempts with `recovery`.
    pub fn with_recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// The same pool, admitting requests by `admission`.
    pub fn with_admission(mut self, admission: Arc<Admission>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// How the pool limits requests in flight; `None`: it does not.
    pub fn admission(&self) -> Option<&Arc<Admission>> {
        self.admission.as_ref()
    }

    /// Starts a request on `picked`, or, when `picked` is at its capacity,
    /// on the least loaded eligible endpoint with room. `None`: the pool has
    /// no room, or others wait ahead; [`Pool::wait_for_room`] queues it.
    pub fn try_start(&self, picked: &Arc<Endpoint>, class: Priority) -> Option<InFlightGuard> {
        match &self.admission {
            None => Some(picked.start()),
            Some(admission) => admission.try_start(&self.endpoints.load(), picked, class, false),
        }
    }

    /// Queues a request of `class` that found no room, until it starts on
    /// an endpoint `pick` chooses, is shed, or `deadline` passes.
    pub async fn wait_for_room(
        &self,
        class: Priority,
        deadline: Instant,
        pick: impl FnMut() -> Option<Arc<Endpoint>>,
    ) -> Result<InFlightGuard, NotStarted> {
        let Some(admission) = &self.admission else {
            return Err(NotStarted::NoEndpoint);
        };
        admission
            .wait_for_room(class, deadline, || self.endpoints.load_full(), pick)
            .await
    }

    /// Counts a copy a route mirrored here.
    pub fn count_mirror(&self, result: MirrorResult) {
        self.mirrored[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Copies routes mirrored here, by result.
    pub fn mirrored(&self, result: MirrorResult) -> u64 {
        self.mirrored[result as usize].load(Ordering::Relaxed)
    }

    /// Moves the adaptive concurrency limit, if the pool has one.
    pub fn adjust_concurrency(&self) {
        if let Some(admission) = &self.admission {
            admission.adjust();
        }
    }

    /// The same pool, speaking `upstream` to its endpoints.
    pub fn with_upstream(mut self, upstream: UpstreamProtocol) -> Self {
        self.upstream = upstream;
        self
    }

    /// How the proxy speaks to the endpoints.
    pub fn upstream(&self) -> &UpstreamProtocol {
        &self.upstream
    }

    /// How the pool recovers failed attempts; `None`: it does not retry.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.endpoints.load()
    }

    /// Picks an endpoint for a request: the pool's balancer, or the native
    /// round robin when there is none or it faults. `None` only when no
    /// endpoint is eligible.
    pub fn pick(&self, request: &mut PickRequest<'_>) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        if set.eligible.is_empty() {
            return None;
        }
        let id = match &self.balancer {
            Some(balancer) => match balancer.pick(&set, request) {
                Ok(id) => id,
                Err(_fault) => {
                    request.placement = super::Placement::NONE;
                    self.fallback_picks.fetch_add(1, Ordering::Relaxed);
                    self.fallback.pick(&set, request).ok()?
                }
            },
            None => self.fallback.pick(&set, request).ok()?,
        };
        set.get(id).cloned()
    }

    /// Picks the native round robin made because the balancer faulted.
    pub fn fallback_picks(&self) -> u64 {
        self.fallback_picks.load(Ordering::Relaxed)
    }

    /// Records the outcome of one forwarded attempt and ejects the endpoint
    /// when it reaches the outlier policy's failure streak. `placement`
    /// says who placed it, during a rollout of the pool's balancer.
    pub fn record_outcome(
        &self,
        endpoint: &Endpoint,
        latency_ns: u64,
        success: bool,
        placement: &super::Placement,
    ) {
        placement.record(latency_ns, success);
        if let Some(admission) = &self.admission {
            admission.sample(latency_ns);
        }
        let streak = endpoint.stats.record(latency_ns, success);
        if let Some(outlier) = &self.policy.outlier {
            if !success && streak == outlier.consecutive_failures {
                self.eject(endpoint.id, None, &format!("{streak} consecutive failures"));
            }
        }
    }

    /// Records that the endpoint cut a response off mid-body: a failure of a
    /// response first recorded as a success, which counts toward its
    /// failure streak as any other.
    pub fn record_cut(&self, endpoint: &Endpoint) {
        let streak = endpoint.stats.record_cut();
        if let Some(outlier) = &self.policy.outlier {
            if streak == outlier.consecutive_failures {
                self.eject(endpoint.id, None, &format!("{streak} consecutive failures"));
            }
        }
    }

    /// Holds an endpoint out of the set, panic mode included, after a
    /// connection to it failed (`why`): until an active check passes, or for
    /// the policy's hold in a pool without active checks. Takes the pool's
    /// lock only for the first failure of a hold.
    pub fn record_connect_failure(&self, endpoint: &Endpoint, why: &str) {
        if self.policy.connect_failure_hold.is_zero() || endpoint.is_held() {
            return;
        }
        let now = Instant::now();
        let mut state = self.health.lock().unwrap();
        let Some(health) = state.endpoints.get_mut(endpoint.id as usize) else {
            return;
        };
        if health.held_since.is_some() {
            return;
        }
        let was_available = health.is_available(now);
        health.held_since = Some(now);
        self.expiries_pending.store(true, Ordering::Relaxed);
        self.queue_if_pending();
        endpoint.set_held(true);
        let until = if self.policy.active_checks {
            "until an active check passes".to_string()
        } else {
            format!("for {} ms", self.policy.connect_failure_hold.as_millis())
        };
        health.reason = format!("held out {until}: {why}");
        health.changed_at_unix_ms = unix_ms();
        if was_available {
            self.alerts.raise(
                Severity::P2,
                &self.name,
                Some(&endpoint.address),
                format!("endpoint {} held out {until}: {why}", endpoint.address),
            );
        }
        self.rebuild(&mut state, now);
    }

    /// Ejects an endpoint for `duration` (the recovery policy's), or by
    /// default for the outlier policy's growing ejection time, unless that
    /// would eject more than the policy's share of the pool. Endpoints that
    /// active checks mark down are not counted in that share. Returns
    /// whether it was ejected.
    pub fn eject(&self, id: EndpointId, duration: Option<Duration>, reason: &str) -> bool {
        let now = Instant::now();
        let mut state = self.health.lock().unwrap();
        let count = state.endpoints.len();
        // An endpoint the active checks mark down is out whatever its
        // ejection: it does not use up the share of ejections.
        let ejected_now = state
            .endpoints
            .iter()
            .filter(|h| h.is_ejected(now) && h.active != Health::Unhealthy)
            .count();
        let Some(health) = state.endpoints.get(id as usize) else {
            return false;
        };
        if health.ejected_until.is_some_and(|until| until > now) {
            return false;
        }
        let max_percent = self
            .policy
            .outlier
            .as_ref()
            .map_or(100, |o| o.max_ejection_percent);
        if (ejected_now + 1) * 100 > count * max_percent as usize {
            tracing::debug!(pool = %self.name, "not ejecting endpoint {id}: {max_percent}% of the pool is ejected");
            return false;
        }
        let ejections = health.ejections + 1;
        let by_recovery = duration.is_some();
        let duration = duration.unwrap_or_else(|| match &self.policy.outlier {
            Some(outlier) => (outlier.base_ejection * ejections).min(outlier.max_ejection),
            None => Duration::from_secs(30),
        });
        let address = self.endpoints.load().all[id as usize].address.clone();
        let health = &mut state.endpoints[id as usize];
        health.ejected_until = Some(now + duration);
        self.expiries_pending.store(true, Ordering::Relaxed);
        self.queue_if_pending();
        health.ejected_by_recovery = by_recovery;
        health.ejections = ejections;
        health.reason = format!("ejected for {} ms: {reason}", duration.as_millis());
        health.changed_at_unix_ms = unix_ms();
        self.alerts.raise(
            Severity::P2,
            &self.name,
            Some(&address),
            format!(
                "endpoint {address} ejected for {} ms: {reason}",
                duration.as_millis()
            ),
        );
        self.rebuild(&mut state, now);
        true
    }

    /// Applies an active-check verdict, with `rise`/`fall` hysteresis: an
    /// endpoint goes down after `fall` failed checks in a row and up after
    /// `rise` passing ones. A check that could not run is not a verdict.
    ///
    /// A passing check also ends a hold after a connect failure (the
    /// endpoint accepts connections again) and, when the outlier policy says
    /// so, an outlier ejection: an endpoint that came back serves again
    /// within one check rather than after its ejection time.
    pub fn apply_check(&self, id: EndpointId, verdict: Health, reason: &str, rise: u32, fall: u32) {
        let now = Instant::now();
        let mut state = self.health.lock().unwrap();
        let Some(health) = state.endpoints.get_mut(id as usize) else {
            return;
        };
        let was_available = health.is_available(now);
        let passed = verdict != Health::Unhealthy;
        if passed {
            health.passes += 1;
            health.fails = 0;
        } else {
            health.fails += 1;
            health.passes = 0;
        }
        let set = self.endpoints.load_full();
        let endpoint = &set.all[id as usize];
        let address = endpoint.address.as_str();
        let next = match (health.active, verdict) {
            (Health::Unhealthy, _) if passed && health.passes < rise => Health::Unhealthy,
            (Health::Healthy | Health::Degraded | Health::Unknown, Health::Unhealthy)
                if health.fails < fall =>
            {
                health.active
            }
            (_, verdict) => verdict,
        };
        let was = health.active;
        if next != was {
            health.active = next;
            endpoint.set_health(next);
            health.reason = reason.to_string();
            health.changed_at_unix_ms = unix_ms();
            // Every transition is an event; the ones that need attention
            // are alerts too.
            self.alerts.events().publish(
                "health",
                serde_json::json!({
                    "pool": self.name,
                    "endpoint": address,
                    "from": was,
                    "to": next,
                    "reason": reason,
                }),
            );
            match (was, next) {
                (_, Health::Unhealthy) => self.alerts.raise(
                    Severity::P2,
                    &self.name,
                    Some(address),
                    format!("endpoint {address} is down: {reason}"),
                ),
                (Health::Unhealthy, _) => self.alerts.raise(
                    Severity::P4,
                    &self.name,
                    Some(address),
                    format!("endpoint {address} is up: {reason}"),
                ),
                _ => {}
            }
        }
        let health = &mut state.endpoints[id as usize];
        let was_held = health.held_since.is_some();
        if passed {
            health.held_since = None;
            endpoint.set_held(false);
            let uneject = self
                .policy
                .outlier
                .as_ref()
                .is_some_and(|o| o.uneject_on_active_success);
            if uneject && health.is_ejected(now) && !health.ejected_by_recovery {
                health.ejected_until = None;
                endpoint.stats.reset_streak();
                health.reason = format!("active check passed, ejection ended: {reason}");
                health.changed_at_unix_ms = unix_ms();
                self.alerts.raise(
                    Severity::P4,
                    &self.name,
                    Some(address),
                    format!("endpoint {address} readmitted: an active check passed: {reason}"),
                );
            }
        }
        let available = health.is_available(now);
        if available && !was_available {
            health.returned_at = Some(now);
            self.ramping.store(true, Ordering::Relaxed);
            self.queue_if_pending();
        }
        if available != was_available || next != was || was_held != health.held_since.is_some() {
            self.rebuild(&mut state, now);
        }
    }

    /// Periodic work: readmits endpoints whose ejection ran out and, once
    /// per outlier interval, ejects endpoints whose success rate fell below
    /// the policy's minimum.
    pub fn tick(&self, now: Instant) {
        self.readmit_expired(now);
        self.advance_slow_start(now);
        self.judge_success_rates(now);
    }

    /// Once per outlier interval, ejects endpoints whose success rate in
    /// that interval fell below the policy's minimum. A pool not due is
    /// passed with one load.
    pub fn judge_success_rates(&self, now: Instant) {
        let Some(outlier) = &self.policy.outlier else {
            return;
        };
        if outlier.min_success_rate <= 0.0 {
            return;
        }
        let since_created = now.saturating_duration_since(self.created).as_millis() as u64;
        if since_created < self.rates_due_ms.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut state = self.health.lock().unwrap();
            if now.saturating_duration_since(state.rates_judged) < outlier.interval {
                let due = state.rates_judged + outlier.interval;
                let due_ms = due.saturating_duration_since(self.created).as_millis() as u64;
                self.rates_due_ms.store(due_ms, Ordering::Relaxed);
                return;
            }
            state.rates_judged = now;
            let due_ms = since_created + outlier.interval.as_millis() as u64;
            self.rates_due_ms.store(due_ms, Ordering::Relaxed);
        }
        let set = self.endpoints.load_full();
        for endpoint in &set.all {
            let (requests, failures) = endpoint.stats.take_window();
            if requests < outlier.min_requests.max(1) {
                continue;
            }
            // A cut response counts as a failure of a request already counted.
            let failures = failures.min(requests);
            let rate = f64::from(requests - failures) / f64::from(requests);
            if rate < outlier.min_success_rate {
                self.eject(
                    endpoint.id,
                    None,
                    &format!(
                        "success rate {:.0}% over the last {} ms ({failures} of {requests} failed)",
                        rate * 100.0,
                        outlier.interval.as_millis()
                    ),
                );
            }
        }
    }

    /// Republishes weights of endpoints in slow start, in steps of a tenth
    /// of the ramp (at least 100 ms), so balancers re-sync only that often.
    fn advance_slow_start(&self, now: Instant) {
        let ramp = self.policy.slow_start;
        if ramp.is_zero() || !self.ramping.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.health.lock().unwrap();
        if state.endpoints.iter().all(|h| h.returned_at.is_none()) {
            self.ramping.store(false, Ordering::Relaxed);
            return;
        }
        let step = (ramp / 10).max(Duration::from_millis(100));
        if now.saturating_duration_since(state.weights_published) < step {
            return;
        }
        state.weights_published = now;
        self.rebuild(&mut state, now);
    }

    /// Readmits endpoints whose ejection, or hold after a connect failure
    /// in a pool without active checks, has run out. Called periodically.
    pub fn readmit_expired(&self, now: Instant) {
        if !self.expiries_pending.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.health.lock().unwrap();
        let set = self.endpoints.load_full();
        let mut readmitted = false;
        let mut still_pending = false;
        let hold = self.policy.connect_failure_hold;
        for (id, health) in state.endpoints.iter_mut().enumerate() {
            let hold_over = !self.policy.active_checks
                && health
                    .held_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= hold);
            if hold_over {
                health.held_since = None;
                set.all[id].set_held(false);
                health.reason = format!(
                    "hold after a connect failure over after {} ms",
                    hold.as_millis()
                );
                health.changed_at_unix_ms = unix_ms();
                readmitted = true;
            }
            if health.ejected_until.is_some_and(|until| until <= now) {
                health.ejected_until = None;
                health.returned_at = Some(now);
                self.ramping.store(true, Ordering::Relaxed);
                health.reason = "readmitted after ejection".into();
                health.changed_at_unix_ms = unix_ms();
                set.all[id].stats.reset_streak();
                let address = &set.all[id].address;
                self.alerts.raise(
                    Severity::P4,
                    &self.name,
                    Some(address),
                    format!("endpoint {address} readmitted after ejection"),
                );
                readmitted = true;
            }
            // A hold ends by a check when there are checks, not by time.
            still_pending |= health.ejected_until.is_some()
                || (!self.policy.active_checks && health.held_since.is_some());
        }
        self.expiries_pending
            .store(still_pending, Ordering::Relaxed);
        if readmitted {
            self.rebuild(&mut state, now);
        }
    }

    /// Recomputes the eligible set; on a change, publishes a new set (with a
    /// new generation, so plugin instances re-sync) and raises pool alerts.
    fn rebuild(&self, state: &mut HealthState, now: Instant) {
        let current = self.endpoints.load_full();
        let tiers: Vec<u32> = current.all.iter().map(|e| e.tier).collect();
        let available: Vec<bool> = state
            .endpoints
            .iter()
            .map(|h| h.is_available(now))
            .collect();
        let held: Vec<bool> = state
            .endpoints
            .iter()
            .map(|h| h.held_since.is_some())
            .collect();
        let out: Vec<bool> = current
            .all
            .iter()
            .map(|e| e.admin != super::endpoint::Admin::Active)
            .collect();
        let next = eligibility_with_out(&tiers, &available, &held, &out, &self.policy);
        let before = std::mem::replace(&mut state.serving, next.clone());
        if next.none_available && !before.none_available {
            self.alerts.raise(
                Severity::P0,
                &self.name,
                None,
                format!("pool `{}` has no healthy endpoint", self.name),
            );
        } else if !next.none_available && before.none_available {
            self.alerts.raise(
                Severity::P4,
                &self.name,
                None,
                format!("pool `{}` has a healthy endpoint again", self.name),
            );
        }
        if next.tier != before.tier {
            let (severity, what) = if next.tier > before.tier {
                (Severity::P1, "failed over")
            } else {
                (Severity::P4, "returned")
            };
            self.alerts.raise(
                severity,
                &self.name,
                None,
                format!(
                    "pool `{}` {what} from tier {} to tier {}",
                    self.name, before.tier, next.tier
                ),
            );
        }
        if next.panic && !before.panic && !next.none_available {
            self.alerts.raise(
                Severity::P1,
                &self.name,
                None,
                format!(
                    "pool `{}` in panic mode: under {:.0}% of tier {} available, balancing over all of it",
                    self.name,
                    self.policy.panic_threshold * 100.0,
                    next.tier
                ),
            );
        }
        let weights = self.effective_weights(state, &current, now);
        if next.eligible != current.eligible || weights != current.weights {
            self.endpoints.store(Arc::new(
                EndpointSet::new(current.generation + 1, current.all.clone(), next.eligible)
                    .with_weights(weights),
            ));
        }
    }

    /// Configured weights, scaled down for endpoints in slow start; ends a
    /// slow start that has run its course.
    fn effective_weights(
        &self,
        state: &mut HealthState,
        set: &EndpointSet,
        now: Instant,
    ) -> Vec<u32> {
        let ramp = self.policy.slow_start;
        set.all
            .iter()
            .zip(state.endpoints.iter_mut())
            .map(|(endpoint, health)| match health.returned_at {
                Some(at) if !ramp.is_zero() && now.saturating_duration_since(at) < ramp => {
                    slow_start_weight(endpoint.weight, now.saturating_duration_since(at), ramp)
                }
                _ => {
                    health.returned_at = None;
                    endpoint.weight
                }
            })
            .collect()
    }

    /// Takes over the health of `previous`'s endpoints (the pool of the
    /// same name this one replaces in a reload) for its endpoints of the
    /// same address: active verdicts, ejections, holds and slow starts carry
    /// over, and the eligible set follows. A discovered endpoint new to the
    /// pool starts its slow start.
    pub fn inherit_health(&self, previous: &Pool) {
        // What it inherits may include ejections, holds and slow starts.
        self.expiries_pending.store(true, Ordering::Relaxed);
        self.ramping.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let old_set = previous.endpoints.load_full();
        let old_health = previous.health.lock().unwrap().endpoints.clone();
        let mut state = self.health.lock().unwrap();
        let set = self.endpoints.load_full();
        for endpoint in &set.all {
            let Some(old) = old_set.all.iter().find(|e| e.address == endpoint.address) else {
                // A discovered endpoint joining a serving pool ramps up.
                if endpoint.source != super::endpoint::Source::Config {
                    state.endpoints[endpoint.id as usize].returned_at = Some(now);
                }
                continue;
            };
            let health = old_health[old.id as usize].clone();
            endpoint.set_health(health.active);
            endpoint.set_held(health.held_since.is_some());
            state.endpoints[endpoint.id as usize] = health;
        }
        self.rebuild(&mut state, now);
    }

    /// A copy of the pool's health.
    pub fn health(&self) -> PoolHealthView {
        let state = self.health.lock().unwrap();
        PoolHealthView {
            endpoints: state.endpoints.clone(),
            tier: state.serving.tier,
            panic: state.serving.panic,
        }
    }
}
