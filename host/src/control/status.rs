//! Liveness, readiness, Prometheus metrics and the process's status.

use axum::extract::State as Extract;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::State;
use crate::metrics;

/// Liveness: `ok` while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "status",
    responses((status = 200, description = "The process serves", body = String, content_type = "text/plain")))]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: `ready` once the pools and their plugins are loaded.
///
/// They are before the control endpoint listens, so this answers 200
/// whenever it answers.
#[utoipa::path(get, path = "/readyz", tag = "status",
    responses((status = 200, description = "Pools and plugins are loaded", body = String, content_type = "text/plain")))]
pub(super) async fn readyz() -> &'static str {
    "ready\n"
}

/// Every counter in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
               content_type = "text/plain; version=0.0.4")))]
pub(super) async fn metrics(Extract(state): State) -> impl IntoResponse {
    let text = metrics::render(
        &state.metrics,
        &state.topology.load(),
        &state.runtime,
        state.per_endpoint_metrics,
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The process at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StatusView {
    /// Switchyard's version.
    version: &'static str,
    /// Seconds since the process started serving.
    uptime_seconds: u64,
    /// Requests accepted by the proxy.
    requests: u64,
    /// Pools configured.
    pools: usize,
    /// Plugin names known (loaded or not).
    plugins: usize,
}

/// Version, uptime, requests served and counts of pools and plugins.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    responses((status = 200, description = "Version, uptime and counts", body = StatusView)))]
pub(super) async fn status(Extract(state): State) -> Json<StatusView> {
    Json(StatusView {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        requests: state.metrics.requests(),
        pools: state.topology.load().pools.len(),
        plugins: state.runtime.slots().len(),
    })
}
