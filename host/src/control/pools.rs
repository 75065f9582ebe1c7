//! `GET /v1/pools`: every pool with its serving tier and panic mode, and each
//! endpoint's health and live load.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{RawQuery, State as Extract};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::State;
use crate::engine::{Admin, Health, LoadSnapshot, Pool};

/// The pools asked for, in config order.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PoolsView {
    pools: Vec<PoolView>,
    /// When `limit` cut the list short: the `after` that asks for the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Most pools one page may hold.
const MAX_PAGE: usize = 10_000;

/// One pool.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PoolView {
    /// The pool's name.
    name: String,
    /// The balancer plugin's name, or `native round robin`.
    balancer: String,
    /// The balancer plugin's name; none for the native round robin.
    plugin: Option<String>,
    /// Bumped whenever the eligible set or the weights change.
    generation: u64,
    /// The tier serving now (0 is the primary).
    serving_tier: u32,
    /// Whether the serving tier is in panic mode.
    panic: bool,
    /// Picks the native round robin made because the plugin faulted.
    fallback_picks: u64,
    /// Requests in flight, the limit now and the queue, for a pool with
    /// `max_in_flight`, `adaptive_concurrency` or endpoint capacities.
    #[serde(skip_serializing_if = "Option::is_none")]
    admission: Option<AdmissionView>,
    /// What the pool's recording has written, while it records
    /// (`record = { ... }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    recording: Option<crate::plugins::RecorderView>,
    /// Every endpoint, by id.
    endpoints: Vec<EndpointView>,
}

/// A pool's admission figures.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AdmissionView {
    /// Requests in flight in the pool.
    in_flight: u32,
    /// The pool-wide limit now (`max_in_flight` or the adaptive limit);
    /// none when only endpoints' capacities limit the pool.
    limit: Option<u32>,
    /// Requests waiting for room.
    queued: usize,
}

/// One endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EndpointView {
    /// Its index in the pool.
    id: u32,
    /// `host:port`.
    address: String,
    /// Where it came from: `config` (the config file, written there by
    /// hand or by the API), `dns` (the pool's DNS discovery) or
    /// `registration` (a service registered itself); the last two are not
    /// in the config file.
    #[schema(value_type = String, example = "config")]
    source: crate::engine::Source,
    /// Configured weight.
    weight: u32,
    /// Weight as balancers see it now (lower in slow start).
    effective_weight: u32,
    /// Maximum in flight; 0 is unlimited.
    capacity: u32,
    /// Zone, shown to plugins.
    zone: Option<String>,
    /// Labels, shown to plugins.
    labels: BTreeMap<String, String>,
    /// Priority tier.
    tier: u32,
    /// `active`, `draining` (no new requests; some still in flight),
    /// `drained` (draining, none in flight) or `disabled`.
    state: EndpointStateView,
    /// Whether it may take traffic now.
    eligible: bool,
    /// What the host believes about it.
    health: EndpointHealthView,
    /// Its live load.
    load: LoadView,
}

/// An endpoint's state as an operator set it, with `drained` once a
/// draining endpoint has nothing in flight.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum EndpointStateView {
    /// Takes traffic as its health allows.
    Active,
    /// Takes no new requests; some are still in flight.
    Draining,
    /// Draining, and nothing is in flight: safe to stop.
    Drained,
    /// Takes no requests.
    Disabled,
}

/// An endpoint's health.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EndpointHealthView {
    /// The active checks' verdict.
    active: HealthView,
    /// Whether it may take traffic outside panic mode.
    available: bool,
    /// Held out after a connect failure, until a check passes.
    held_after_connect_failure: bool,
    /// Time left of a passive ejection, in ms.
    ejected_for_ms: Option<u64>,
    /// Times ejected since start.
    ejections: u32,
    /// Why the last transition happened.
    reason: String,
    /// When, in ms since the Unix epoch.
    changed_at_unix_ms: u64,
}

/// An active-check verdict.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum HealthView {
    /// Passing its checks.
    Healthy,
    /// Passing, but slow or partly failing.
    Degraded,
    /// Failing its checks.
    Unhealthy,
    /// Not checked (yet).
    Unknown,
}

impl From<Health> for HealthView {
    fn from(health: Health) -> Self {
        match health {
            Health::Healthy => HealthView::Healthy,
            Health::Degraded => HealthView::Degraded,
            Health::Unhealthy => HealthView::Unhealthy,
            Health::Unknown => HealthView::Unknown,
        }
    }
}

/// An endpoint's live load.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LoadView {
    /// Requests being served now.
    in_flight: u32,
    /// Requests forwarded since start.
    requests: u64,
    /// Requests that failed (connect error, timeout, 5xx, cut mid-body).
    failures: u64,
    /// Responses it cut off mid-body.
    cuts: u64,
    /// Peak-EWMA of response latency, in µs.
    ewma_latency_us: u32,
    /// Recent success share, in thousandths.
    success_permille: u16,
}

impl From<LoadSnapshot> for LoadView {
    fn from(load: LoadSnapshot) -> Self {
        LoadView {
            in_flight: load.in_flight,
            requests: load.requests,
            failures: load.failures,
            cuts: load.cuts,
            ewma_latency_us: load.ewma_latency_us,
            success_permille: load.success_permille,
        }
    }
}

/// Every pool (or those asked for), with its serving tier, panic mode and
/// each endpoint's health and live load. With thousands of pools, ask for
/// pages: `limit`, then `after` = the `next` of the page before.
#[utoipa::path(get, path = "/v1/pools", tag = "pools",
    params(
        ("name_prefix" = Option<String>, Query, description = "Only pools whose name starts with this"),
        ("after" = Option<String>, Query, description = "Only pools after the one of this name, in config order (the `next` of the page before)"),
        ("limit" = Option<usize>, Query, description = "At most this many pools (1 to 10000); `next` says where the rest begins"),
    ),
    responses(
        (status = 200, description = "The pools asked for, in config order", body = PoolsView),
        (status = 400, description = "A query parameter is unknown or invalid, or `after` names no pool (`invalid_query`, with `field`)", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(
    Extract(state): State,
    RawQuery(query): RawQuery,
) -> Result<Json<PoolsView>, ApiError> {
    let query = PoolQuery::parse(query.as_deref().unwrap_or(""))?;
    let topology = state.topology.load();
    let mut pools = topology.pools.iter().peekable();
    if let Some(after) = &query.after {
        if !topology.pools.iter().any(|pool| &pool.name == after) {
            let mut error = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("no pool is named `{after}` (removed since the page before? start again without `after`)"),
            );
            error.detail.field = Some("after".into());
            return Err(error);
        }
        for pool in pools.by_ref() {
            if &pool.name == after {
                break;
            }
        }
    }
    let matching = pools.filter(|pool| {
        query
            .name_prefix
            .as_deref()
            .is_none_or(|prefix| pool.name.starts_with(prefix))
    });
    let mut page = Vec::new();
    let mut next = None;
    for pool in matching {
        if page.len() == query.limit {
            next = page.last().map(|last: &PoolView| last.name.clone());
            break;
        }
        page.push(view(pool, &state.runtime));
    }
    Ok(Json(PoolsView { pools: page, next }))
}

/// The query of `GET /v1/pools`.
struct PoolQuery {
    name_prefix: Option<String>,
    after: Option<String>,
    limit: usize,
}

impl PoolQuery {
    fn parse(raw: &str) -> Result<Self, ApiError> {
        let invalid = |field: &str, message: String| {
            let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message);
            error.detail.field = Some(field.into());
            error
        };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| invalid("query", format!("the query does not parse: {e}")))?;
        let mut query = PoolQuery {
            name_prefix: None,
            after: None,
            limit: usize::MAX,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "name_prefix" => query.name_prefix = Some(value),
                "after" => query.after = Some(value),
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_PAGE).contains(limit))
                        .ok_or_else(|| {
                            invalid(
                                "limit",
                                format!("`{value}` is not a number from 1 to {MAX_PAGE}"),
                            )
                        })?;
                }
                other => {
                    return Err(invalid(
                        other,
                        format!("unknown query parameter `{other}` (name_prefix, after, limit)"),
                    ))
                }
            }
        }
        Ok(query)
    }
}

fn view(pool: &Pool, runtime: &crate::plugins::PluginRuntime) -> PoolView {
    let set = pool.endpoints();
    let health = pool.health();
    let now = Instant::now();
    let endpoints = set
        .all
        .iter()
        .map(|endpoint| {
            let state = &health.endpoints[endpoint.id as usize];
            EndpointView {
                id: endpoint.id,
                address: endpoint.address.clone(),
                source: endpoint.source,
                weight: endpoint.weight,
                effective_weight: set.weights[endpoint.id as usize],
                capacity: endpoint.capacity,
                zone: endpoint.zone.clone(),
                labels: endpoint.labels.clone(),
                tier: endpoint.tier,
                state: match endpoint.admin {
                    Admin::Active => EndpointStateView::Active,
                    Admin::Draining if endpoint.stats.in_flight() == 0 => {
                        EndpointStateView::Drained
                    }
                    Admin::Draining => EndpointStateView::Draining,
                    Admin::Disabled => EndpointStateView::Disabled,
                },
                eligible: set.is_eligible(endpoint.id),
                health: EndpointHealthView {
                    active: state.active.into(),
                    available: state.is_available(now),
                    held_after_connect_failure: state.held_since.is_some(),
                    ejected_for_ms: state
                        .ejected_until
                        .filter(|until| *until > now)
                        .map(|until| (until - now).as_millis() as u64),
                    ejections: state.ejections,
                    reason: state.reason.clone(),
                    changed_at_unix_ms: state.changed_at_unix_ms,
                },
                load: endpoint.stats.snapshot().into(),
            }
        })
        .collect();
    PoolView {
        name: pool.name.clone(),
        balancer: pool
            .plugin
            .clone()
            .unwrap_or_else(|| "native round robin".into()),
        plugin: pool.plugin.clone(),
        generation: set.generation,
        serving_tier: health.tier,
        panic: health.panic,
        fallback_picks: pool.fallback_picks(),
        recording: runtime.recording_of(&pool.name),
        admission: pool.admission().map(|admission| {
            let view = admission.view();
            AdmissionView {
                in_flight: view.in_flight,
                limit: view.limit,
                queued: view.queued,
            }
        }),
        endpoints,
    }
}

/// A pool's traffic so far: counters and histograms since start, which a
/// reader samples and differences for rates and recent percentiles (the
/// console's charts).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TrafficView {
    /// The pool.
    pool: String,
    /// When it was read, in ms since the Unix epoch.
    at_unix_ms: u64,
    /// Attempts forwarded to its endpoints (now in the pool).
    requests: u64,
    /// Of them, failed (connect errors, resets, timeouts, 5xx).
    failures: u64,
    /// Time from a request's head to its response's head.
    duration: HistogramView,
    /// Requests by class: the time each spent before it was sent.
    classes: Vec<ClassTrafficView>,
}

/// A histogram as cumulative counts by bound.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HistogramView {
    /// The buckets' upper bounds, in seconds.
    bounds_seconds: Vec<f64>,
    /// Observations at or below each bound.
    cumulative: Vec<u64>,
    /// Every observation.
    count: u64,
}

/// One class's requests.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClassTrafficView {
    /// `p0` to `p4`.
    class: &'static str,
    /// Requests of the class sent so far.
    requests: u64,
}

/// A pool's requests, failures, response-time histogram and requests by
/// class, since start.
#[utoipa::path(get, path = "/v1/pools/{pool}/traffic", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool's traffic so far", body = TrafficView),
        (status = 404, description = "No such pool (`no_such_pool`)", body = super::error::ErrorBody),
    ))]
pub(super) async fn traffic(
    Extract(state): State,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<TrafficView>, ApiError> {
    let topology = state.topology.load();
    let pool = topology.pool(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_pool",
            format!("no pool is named `{name}`"),
        )
    })?;
    let (mut requests, mut failures) = (0, 0);
    for endpoint in pool.endpoints().all.iter() {
        let load = endpoint.stats.snapshot();
        requests += load.requests;
        failures += load.failures;
    }
    let duration = pool.duration.snapshot();
    Ok(Json(TrafficView {
        pool: pool.name.clone(),
        at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        requests,
        failures,
        duration: HistogramView {
            bounds_seconds: duration
                .bounds_ns
                .iter()
                .map(|ns| *ns as f64 / 1e9)
                .collect(),
            cumulative: duration.cumulative.to_vec(),
            count: duration.count,
        },
        classes: pool
            .added_latency
            .observed()
            .map(|(class, histogram)| ClassTrafficView {
                class: class.name(),
                requests: histogram.snapshot().count,
            })
            .collect(),
    }))
}
