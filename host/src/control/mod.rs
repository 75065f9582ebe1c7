//! The control endpoint: JSON status of pools and plugins, Prometheus
//! metrics and liveness, on a listener of its own.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::engine::{Alerts, SharedTopology};
use crate::metrics::{self, Metrics};
use crate::plugins::PluginRuntime;

/// What the control endpoint reads.
#[derive(Debug)]
pub struct ControlState {
    /// The routes and pools serving now.
    pub topology: SharedTopology,
    /// Applies config reloads.
    pub reloader: Arc<crate::reload::Reloader>,
    /// The plugin runtime.
    pub runtime: PluginRuntime,
    /// Health alerts of every pool.
    pub alerts: Arc<Alerts>,
    /// Proxy-wide counters.
    pub metrics: Arc<Metrics>,
    /// When the process started serving.
    pub started: Instant,
}

/// Serves the control API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ControlState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                let service = service_fn(move |request| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(handle(&state, request).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}

async fn handle(state: &ControlState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().trim_end_matches('/');
    match (request.method(), path) {
        (&Method::POST, "/v1/reload") => reload(state).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            metrics::render(&state.metrics, &state.topology.load().pools, &state.runtime),
            "text/plain; version=0.0.4",
        ),
        (&Method::GET, "/v1/status") => json_response(StatusCode::OK, &status(state)),
        (&Method::GET, "/v1/pools") => json_response(StatusCode::OK, &pools(state)),
        (&Method::GET, "/v1/plugins") => json_response(StatusCode::OK, &plugins(state)),
        (&Method::GET, "/v1/alerts") => {
            json_response(StatusCode::OK, &json!({ "alerts": state.alerts.history() }))
        }
        (
            _,
            "/healthz" | "/metrics" | "/v1/status" | "/v1/pools" | "/v1/plugins" | "/v1/alerts",
        ) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": format!("{} is read-only: use GET", path) }),
        ),
        (_, "/v1/reload") => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "/v1/reload takes POST" }),
        ),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "error": format!("no such endpoint: {path}"),
                "endpoints": ["/healthz", "/metrics", "/v1/status", "/v1/pools", "/v1/plugins", "/v1/alerts", "POST /v1/reload"],
            }),
        ),
    }
}

/// `POST /v1/reload`: the config file read again and applied; what changed,
/// or why nothing did.
async fn reload(state: &ControlState) -> Response<Full<Bytes>> {
    use crate::reload::ReloadError;
    match state.reloader.reload_file().await {
        Ok(report) => json_response(StatusCode::OK, &json!({ "reloaded": report })),
        Err(error) => {
            let (status, code) = match &error {
                ReloadError::NoFile => (StatusCode::CONFLICT, "no_config_file"),
                ReloadError::RestartNeeded(_) => (StatusCode::CONFLICT, "restart_needed"),
                ReloadError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
                ReloadError::Build(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cannot_apply"),
            };
            json_response(
                status,
                &json!({ "error": { "code": code, "message": error.to_string() } }),
            )
        }
    }
}

fn status(state: &ControlState) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "requests": state.metrics.requests(),
        "pools": state.topology.load().pools.len(),
        "plugins": state.runtime.slots().len(),
    })
}

fn pools(state: &ControlState) -> Value {
    let topology = state.topology.load();
    let pools: Vec<Value> = topology
        .pools
        .iter()
        .map(|pool| {
            let set = pool.endpoints();
            let health = pool.health();
            let now = std::time::Instant::now();
            let endpoints: Vec<Value> = set
                .all
                .iter()
                .map(|endpoint| {
                    let state = &health.endpoints[endpoint.id as usize];
                    let ejected_for_ms = state
                        .ejected_until
                        .filter(|until| *until > now)
                        .map(|until| (until - now).as_millis() as u64);
                    json!({
                        "id": endpoint.id,
                        "address": endpoint.address,
                        "weight": endpoint.weight,
                        "effective_weight": set.weights[endpoint.id as usize],
                        "capacity": endpoint.capacity,
                        "zone": endpoint.zone,
                        "labels": endpoint.labels,
                        "tier": endpoint.tier,
                        "eligible": set.is_eligible(endpoint.id),
                        "health": {
                            "active": state.active,
                            "available": state.is_available(now),
                            "held_after_connect_failure": state.held_since.is_some(),
                            "ejected_for_ms": ejected_for_ms,
                            "ejections": state.ejections,
                            "reason": state.reason,
                            "changed_at_unix_ms": state.changed_at_unix_ms,
                        },
                        "load": endpoint.stats.snapshot(),
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "balancer": pool.plugin.as_deref().unwrap_or("native round robin"),
                "plugin": pool.plugin,
                "generation": set.generation,
                "serving_tier": health.tier,
                "panic": health.panic,
                "fallback_picks": pool.fallback_picks(),
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({ "pools": pools })
}

fn plugins(state: &ControlState) -> Value {
    let plugins: Vec<Value> = state
        .runtime
        .slots()
        .iter()
        .map(|slot| {
            let version = slot.current();
            let history = slot.history.lock().unwrap();
            // A pool a reload dropped is gone once its last request is.
            let users: Vec<String> = slot
                .users
                .lock()
                .unwrap()
                .iter()
                .filter(|u| u.pool.strong_count() > 0)
                .map(|u| u.pool_name.clone())
                .collect();
            let state = match &version {
                None => "not-loaded",
                Some(v) if v.is_quarantined() => "quarantined",
                Some(_) => "active",
            };
            json!({
                "name": &*slot.name,
                "file": slot.path.display().to_string(),
                "file_present": history.file_present,
                "state": state,
                "world": version.as_ref().map(|v| v.world),
                "hash": version.as_ref().map(|v| v.hash.clone()),
                "loaded_at_unix_ms": version.as_ref().map(|v| v.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)),
                "load_micros": version.as_ref().map(|v| v.load_micros),
                "compiled_from_cache": version.as_ref().map(|v| v.from_cache),
                "pools": users,
                "calls": slot.calls(),
                "faults": slot.faults(),
                "reloads": history.reloads,
                "rejected_files": history.rejections,
                "last_error": history.last_error,
                "last_fault": history.last_fault,
                "last_rejected": history.last_rejected,
                "fallback": history.fallback,
            })
        })
        .collect();
    json!({ "plugins": plugins })
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_default();
    body.push('\n');
    text(status, body, "application/json")
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
