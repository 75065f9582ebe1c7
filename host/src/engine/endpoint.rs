//! Endpoints, the set a pool balances over, and each endpoint's live load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::admission::Admission;
use super::health::Health;

/// An endpoint's id: its index in the pool, stable for its life.
pub type EndpointId = u32;

/// Time constant of the latency average: a sample's weight halves in about
/// 0.7 × this (Finagle's and Linkerd's Peak-EWMA use 10 s).
const LATENCY_DECAY_NS: f64 = 10e9;
/// Weight of each new outcome in the success average (1/16: about the last
/// 16 responses matter).
const SUCCESS_SHIFT: u32 = 4;
/// Fixed-point scale of the success average: 1.0 == 1_000_000.
const SUCCESS_SCALE: u32 = 1_000_000;

/// An endpoint's state as an operator set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Admin {
    /// Takes traffic as its health allows.
    #[default]
    Active,
    /// Takes no new requests; those in flight finish.
    Draining,
    /// Takes no requests.
    Disabled,
}

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Listed in the config file (by hand, or written there by the API).
    #[default]
    Config,
    /// An answer to the pool's DNS `discovery` name.
    Dns,
    /// A service that registered itself through the API.
    Registration,
}

impl Source {
    /// How the API and events name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Dns => "dns",
            Source::Registration => "registration",
        }
    }
}

/// The addresses a hostname in an endpoint's address resolved to at its
/// last answer, kept up to date off the request path and read by a
/// connection without waiting.
#[derive(Debug, Default)]
pub struct ResolvedAddrs {
    addrs: arc_swap::ArcSwapOption<Vec<SocketAddr>>,
}

impl ResolvedAddrs {
    /// The last answer; `None` before the first.
    pub fn get(&self) -> Option<Arc<Vec<SocketAddr>>> {
        self.addrs.load_full()
    }

    /// Replaces the answer.
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        self.addrs.store(Some(Arc::new(addrs)));
    }
}

/// One upstream server of a pool.
#[derive(Debug)]
pub struct Endpoint {
    /// Index in the pool.
    pub id: EndpointId,
    /// `host:port`.
    pub address: String,
    /// The address as a URI authority, parsed once.
    pub authority: http::uri::Authority,
    /// The address as `ip:port`, when it is one.
    pub socket_addr: Option<SocketAddr>,
    /// For an address with a hostname: what the name resolves to, shared
    /// by every endpoint of that address and refreshed on its TTL.
    pub resolved: Option<Arc<ResolvedAddrs>>,
    /// Relative share of traffic.
    pub weight: u32,
    /// Priority tier: 0 is the primary, higher tiers are backups.
    pub tier: u32,
    /// Maximum in-flight requests; 0 is unlimited.
    pub capacity: u32,
    /// Zone, shown to plugins.
    pub zone: Option<String>,
    /// Labels, shown to plugins.
    pub labels: BTreeMap<String, String>,
    /// Whether an operator took it out.
    pub admin: Admin,
    /// Where it came from: discovered endpoints are not in the config file.
    pub source: Source,
    /// Live load, updated by the proxy. Shared with the endpoint of the same
    /// address in a pool rebuilt by a reload, so its figures carry over.
    pub stats: Arc<EndpointStats>,
    /// The active-check verdict, readable without the pool's lock.
    health: AtomicU8,
    /// Held out after a connect failure: lets the proxy skip the pool's
    /// lock for every further failure while the hold lasts.
    held: AtomicBool,
}

impl Endpoint {
    /// Counts a request as started on this endpoint; the guard ends it when
    /// dropped.
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            endpoint: Arc::clone(self),
            admission: None,
        }
    }

    /// The latest active-check verdict, for plugins' `load`.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            h if h == Health::Healthy as u8 => Health::Healthy,
            h if h == Health::Degraded as u8 => Health::Degraded,
            h if h == Health::Unhealthy as u8 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub(crate) fn set_health(&self, health: Health) {
        self.health.store(health as u8, Ordering::Relaxed);
    }

    /// Opens a TCP connection: to its `ip:port`, or to the addresses its
    /// hostname last resolved to (in the order of the answer, the first
    /// that accepts); by the system's resolver only before the first
    /// answer.
    pub async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        if let Some(addr) = self.socket_addr {
            return tokio::net::TcpStream::connect(addr).await;
        }
        if let Some(addrs) = self.resolved.as_ref().and_then(|r| r.get()) {
            if !addrs.is_empty() {
                return tokio::net::TcpStream::connect(&addrs[..]).await;
            }
        }
        tokio::net::TcpStream::connect(self.address.as_str()).await
    }

    /// Whether the endpoint is held out after a connect failure.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    pub(crate) fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Relaxed);
    }

    /// An endpoint; `address` must be `host:port`.
    pub fn new(
        id: EndpointId,
        address: &str,
        weight: u32,
        capacity: u32,
    ) -> Result<Self, http::uri::InvalidUri> {
        Ok(Endpoint {
            id,
            address: address.to_string(),
            authority: address.parse()?,
            socket_addr: address.parse().ok(),
            resolved: None,
            weight: weight.max(1),
            tier: 0,
            capacity,
            zone: None,
            labels: BTreeMap::new(),
            admin: Admin::Active,
            source: Source::Config,
            stats: Arc::default(),
            health: AtomicU8::new(Health::Unknown as u8),
            held: AtomicBool::new(false),
        })
    }
}

/// Live load of one endpoint. Updated lock-free from every worker; readers may
/// see a sample or two late, which balancing tolerates.
#[derive(Debug)]
pub struct EndpointStats {
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    /// Responses cut off mid-body by the endpoint.
    cuts: AtomicU64,
    /// Failures since the last success.
    failure_streak: AtomicU32,
    /// Outcomes since the success-rate detector last looked.
    window_requests: AtomicU32,
    window_failures: AtomicU32,
    /// Peak-EWMA of latency in ns, as f64 bits.
    latency_ewma_bits: AtomicU64,
    /// When the latency average was last updated, in ns since `epoch`.
    latency_stamp_ns: AtomicU64,
    /// EWMA of success, scaled by `SUCCESS_SCALE`.
    success: AtomicU32,
    epoch: Instant,
}

impl Default for EndpointStats {
    fn default() -> Self {
        EndpointStats {
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            failure_streak: AtomicU32::new(0),
            window_requests: AtomicU32::new(0),
            window_failures: AtomicU32::new(0),
            latency_ewma_bits: AtomicU64::new(0f64.to_bits()),
            latency_stamp_ns: AtomicU64::new(0),
            success: AtomicU32::new(SUCCESS_SCALE),
            epoch: Instant::now(),
        }
    }
}

/// A point-in-time copy of an endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LoadSnapshot {
    /// Requests being served now.
    pub in_flight: u32,
    /// Requests forwarded since start.
    pub requests: u64,
    /// Requests that failed (connect error, timeout, 5xx, a response cut
    /// off mid-body) since start.
    pub failures: u64,
    /// Responses the endpoint cut off mid-body (its head had reached the
    /// client, so the request could not be retried) since start.
    pub cuts: u64,
    /// Peak-EWMA of response latency, in µs.
    pub ewma_latency_us: u32,
    /// Recent success share, in thousandths.
    pub success_permille: u16,
}

impl EndpointStats {
    /// Records one outcome: the time to response headers, and whether it
    /// counted as a success. Returns the failures since the last success.
    pub fn record(&self, latency_ns: u64, success: bool) -> u32 {
        self.window_requests.fetch_add(1, Ordering::Relaxed);
        if !success {
            self.window_failures.fetch_add(1, Ordering::Relaxed);
        }
        let streak = if success {
            if self.failure_streak.load(Ordering::Relaxed) != 0 {
                self.failure_streak.store(0, Ordering::Relaxed);
            }
            0
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.failure_streak.fetch_add(1, Ordering::Relaxed) + 1
        };
        let old = self.success.load(Ordering::Relaxed);
        let target = if success { SUCCESS_SCALE } else { 0 };
        let new = if target >= old {
            old + ((target - old) >> SUCCESS_SHIFT)
        } else {
            old - ((old - target) >> SUCCESS_SHIFT)
        };
        self.success.store(new, Ordering::Relaxed);
        self.observe_latency(latency_ns as f64);
        streak
    }

    /// Turns the success recorded for a response into a failure: the
    /// endpoint cut its body off. Returns the failures since the last
    /// success.
    pub fn record_cut(&self) -> u32 {
        self.cuts.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.window_failures.fetch_add(1, Ordering::Relaxed);
        let old = self.success.load(Ordering::Relaxed);
        self.success
            .store(old - (old >> SUCCESS_SHIFT), Ordering::Relaxed);
        self.failure_streak.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The outcomes since the last call: (requests, failures).
    pub fn take_window(&self) -> (u32, u32) {
        (
            self.window_requests.swap(0, Ordering::Relaxed),
            self.window_failures.swap(0, Ordering::Relaxed),
        )
    }

    /// Forgets the failure streak (the endpoint was readmitted).
    pub fn reset_streak(&self) {
        self.failure_streak.store(0, Ordering::Relaxed);
    }

    /// Peak-EWMA (Finagle's `PeakEwma`): a sample above the average replaces
    /// it at once, so a slowing endpoint is avoided quickly; otherwise the
    /// average decays toward the sample with a weight set by the time since
    /// the last sample.
    fn observe_latency(&self, sample_ns: f64) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.latency_stamp_ns.swap(now, Ordering::Relaxed);
        let old = f64::from_bits(self.latency_ewma_bits.load(Ordering::Relaxed));
        let new = if sample_ns > old || last == 0 {
            sample_ns
        } else {
            let weight = (-((now.saturating_sub(last)) as f64) / LATENCY_DECAY_NS).exp();
            old * weight + sample_ns * (1.0 - weight)
        };
        self.latency_ewma_bits
            .store(new.to_bits(), Ordering::Relaxed);
    }

    /// Counts a request as started if fewer than `capacity` are in flight
    /// (0: no limit). Whether it was.
    pub fn try_begin(&self, capacity: u32) -> bool {
        let started = if capacity == 0 {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |now| {
                    (now < capacity).then_some(now + 1)
                })
                .is_ok()
        };
        if started {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        started
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A copy of every figure.
    pub fn snapshot(&self) -> LoadSnapshot {
        let latency_ns = f64::from_bits(self.latency_ewma_bits.load(Ordering::Relaxed));
        LoadSnapshot {
            in_flight: self.in_flight(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            cuts: self.cuts.load(Ordering::Relaxed),
            ewma_latency_us: (latency_ns / 1_000.0).min(u32::MAX as f64) as u32,
            success_permille: (self.success.load(Ordering::Relaxed) / (SUCCESS_SCALE / 1_000))
                as u16,
        }
    }
}

/// Ends an in-flight request when dropped, however the request ends.
#[derive(Debug)]
pub struct InFlightGuard {
    endpoint: Arc<Endpoint>,
    /// The pool's admission, when it limits requests: told when this one ends.
    admission: Option<Arc<Admission>>,
}

impl InFlightGuard {
    /// A request started by admission on `endpoint` (already counted there).
    pub(super) fn admitted(endpoint: Arc<Endpoint>, admission: Arc<Admission>) -> Self {
        InFlightGuard {
            endpoint,
            admission: Some(admission),
        }
    }

    /// The endpoint serving the request.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.endpoint
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(admission) = &self.admission {
            admission.release();
        }
    }
}

/// The endpoints of a pool and which of them may take traffic, replaced as a
/// whole when either changes. `generation` tells plugin instances to re-sync.
#[derive(Debug)]
pub struct EndpointSet {
    /// Bumped on every change.
    pub generation: u64,
    /// Every endpoint, indexed by id.
    pub all: Vec<Arc<Endpoint>>,
    /// Ids of the endpoints that may take traffic, in id order.
    pub eligible: Vec<EndpointId>,
    eligible_mask: Vec<bool>,
    /// Weights as balancers see them, by id: the configured weight, scaled
    /// down while an endpoint is in slow start.
    pub weights: Vec<u32>,
}

impl EndpointSet {
    /// A set in which every endpoint is eligible.
    pub fn all_eligible(generation: u64, all: Vec<Arc<Endpoint>>) -> Self {
        let eligible: Vec<EndpointId> = all.iter().map(|e| e.id).collect();
        EndpointSet::new(generation, all, eligible)
    }

    /// A set in which the endpoints `eligible` (ids, in id order) may take traffic.
    pub fn new(generation: u64, all: Vec<Arc<Endpoint>>, eligible: Vec<EndpointId>) -> Self {
        let mut eligible_mask = vec![false; all.len()];
        for &id in &eligible {
            eligible_mask[id as usize] = true;
        }
        let weights = all.iter().map(|e| e.weight).collect();
        EndpointSet {
            generation,
            all,
            eligible,
            eligible_mask,
            weights,
        }
    }

    /// The same set with these effective weights (by id).
    pub fn with_weights(mut self, weights: Vec<u32>) -> Self {
        self.weights = weights;
        self
    }

    /// Whether `id` may take traffic. O(1).
    pub fn is_eligible(&self, id: EndpointId) -> bool {
        self.eligible_mask
            .get(id as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The endpoint with this id, eligible or not.
    pub fn get(&self, id: EndpointId) -> Option<&Arc<Endpoint>> {
        self.all.get(id as usize)
    }
}
