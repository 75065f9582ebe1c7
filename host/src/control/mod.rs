//! The control endpoint: a JSON API over pools, plugins, alerts and config
//! reloads, Prometheus metrics, liveness and readiness, on a listener of
//! its own. One module per resource; each handler is registered with its
//! OpenAPI description, so the document at `/v1/openapi.json` lists exactly
//! the routes served.

mod alerts;
mod audit;
mod auth;
mod broadcast;
mod cluster;
mod console;
mod endpoints;
mod error;
mod events;
mod plugins;
mod pool_changes;
mod pools;
mod registrations;
mod reload;
mod rollouts;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use audit::{AuditEntry, AuditLog};
pub use auth::{Caller, Tokens};
pub use error::{ApiError, ErrorBody, ErrorDetail};

use crate::engine::{Alerts, SharedTopology};
use crate::metrics::Metrics;
use crate::plugins::PluginRuntime;
use crate::reload::Reloader;

/// What the control endpoint reads and acts on.
#[derive(Debug)]
pub struct ControlState {
    /// The routes and pools serving now.
    pub topology: SharedTopology,
    /// Applies config reloads.
    pub reloader: Arc<Reloader>,
    /// Services registered in pools.
    pub registrations: Arc<crate::discovery::registrations::Registry>,
    /// The plugin runtime.
    pub runtime: PluginRuntime,
    /// Health alerts of every pool.
    pub alerts: Arc<Alerts>,
    /// Proxy-wide counters.
    pub metrics: Arc<Metrics>,
    /// When the process started serving.
    pub started: Instant,
    /// Who may use the API (`[[control.tokens]]`).
    pub tokens: Tokens,
    /// Every API write.
    pub audit: AuditLog,
    /// Turns `true` when the endpoint shuts down, ending event streams.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// `/metrics` has the per-endpoint series (`control.per_endpoint_metrics`).
    pub per_endpoint_metrics: bool,
    /// The timeouts of `POST /v1/pools/{pool}/broadcast`, from `[proxy]`.
    pub broadcast: crate::proxy::broadcast::Timeouts,
}

/// The shared state as handlers extract it.
type State = axum::extract::State<Arc<ControlState>>;

/// The OpenAPI document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerTokens),
    security(("bearer" = [])),
    info(
        title = "Switchyard control API",
        description = "Pools, endpoints, plugins, alerts and config reloads of one Switchyard process."
    ),
    tags(
        (name = "status", description = "Liveness, readiness, metrics and process status"),
        (name = "pools", description = "Pools, their endpoints' health and load"),
        (name = "registrations", description = "Services registering themselves as endpoints of a pool, renewed by heartbeat"),
        (name = "plugins", description = "Plugin versions, calls and faults"),
        (name = "alerts", description = "Health alerts, P0 to P4"),
        (name = "config", description = "The config file: reading it, reloading it"),
    )
)]
struct ApiDoc;

/// Declares the bearer tokens of `[[control.tokens]]`: reads need a
/// `viewer` token, changes an `operator` one; `/healthz`, `/readyz` and
/// `/metrics` need none.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of [[control.tokens]]: viewer for reads, operator for changes. \
                         Not needed when no tokens are configured (loopback only).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The control API's router and its OpenAPI document, built from the same
/// handler list.
pub fn router(state: Arc<ControlState>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status::healthz))
        .routes(routes!(status::readyz))
        .routes(routes!(status::metrics))
        .routes(routes!(status::status))
        .routes(routes!(auth::session))
        .routes(routes!(pools::list, pool_changes::add))
        .routes(routes!(pools::traffic))
        .routes(routes!(pool_changes::update, pool_changes::remove))
        .routes(routes!(pool_changes::routes, pool_changes::replace_routes))
        .routes(routes!(endpoints::add))
        .routes(routes!(endpoints::update, endpoints::remove))
        .routes(routes!(endpoints::config))
        .routes(routes!(registrations::register, registrations::list))
        .routes(routes!(registrations::heartbeat, registrations::deregister))
        .routes(routes!(broadcast::broadcast))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::reload))
        .routes(routes!(plugins::unquarantine))
        .routes(routes!(rollouts::show))
        .routes(routes!(rollouts::upload))
        .routes(routes!(rollouts::promote))
        .routes(routes!(rollouts::abort))
        .routes(routes!(alerts::list))
        .routes(routes!(events::stream))
        .routes(routes!(reload::reload))
        .routes(routes!(audit::list))
        .routes(routes!(cluster::show))
        .with_state(Arc::clone(&state))
        .split_for_parts();
    api.paths
        .paths
        .insert("/v1/openapi.json".into(), openapi_path_item());
    let document = Arc::new(api.clone());
    let router = router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .route("/", axum::routing::get(console::root))
        .route("/ui/", axum::routing::get(console::index))
        .route("/ui/console.js", axum::routing::get(console::script))
        .route("/ui/console.css", axum::routing::get(console::style))
        .route("/ui/uplot.js", axum::routing::get(console::charts))
        .route("/ui/uplot.css", axum::routing::get(console::charts_style))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::authorize,
        ))
        // Outside the access check, so refusals are recorded too.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            audit::record,
        ));
    (router, api)
}

/// The document's own entry: it is a route like any other.
fn openapi_path_item() -> utoipa::openapi::PathItem {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::response::ResponseBuilder;
    utoipa::openapi::PathItem::new(
        HttpMethod::Get,
        OperationBuilder::new()
            .tag("status")
            .summary(Some("This OpenAPI 3.1 document"))
            .response(
                "200",
                ResponseBuilder::new().description("The document, as JSON"),
            )
            .build(),
    )
}

/// Serves the control API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ControlState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (router, _) = router(Arc::clone(&state));
    // Event streams never end by themselves: they end when shutdown begins,
    // so the graceful shutdown does not wait for them.
    let shutdown = async move {
        shutdown.await;
        let _ = state.stopping.send(true);
    };
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(error) = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("the control endpoint stopped: {error}");
    }
}
