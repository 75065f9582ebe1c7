//! Endpoints changed at run time — added, changed (weight, capacity, tier,
//! zone, labels, and state: drain or disable) and removed — and the config
//! they are written to. Each change is an edit of the config file,
//! validated like the file, written back atomically (with the changes that
//! came at the same time) and only then applied, so whatever was answered
//! 2xx is in the file. `If-Match` with the version (`ETag`) a client read
//! makes a change fail with 412 if another came first.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as Extract};
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::ConfigWrite;
use super::{ApiError, ControlState, ErrorBody, State};
use crate::config::edit::{self, EditRefused, EndpointFields, PoolEditRefused};
use crate::config::store::StoreError;
use crate::config::{ConfigError, EndpointState};
use crate::reload::{ChangeReport, Edit, EditError, ReloadError, Scope};

/// An endpoint to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEndpoint {
    /// `host:port`.
    #[schema(example = "10.0.0.7:8080")]
    address: String,
    /// Relative share of traffic, at least 1 (default 1).
    weight: Option<u32>,
    /// Maximum in flight; 0 is unlimited (default).
    capacity: Option<u32>,
    /// Priority tier: 0 is the primary (default).
    tier: Option<u32>,
    /// Zone, shown to plugins.
    zone: Option<String>,
    /// Labels, shown to plugins.
    labels: Option<BTreeMap<String, String>>,
    /// `active` (default), `draining` or `disabled`.
    #[schema(value_type = Option<String>, example = "active")]
    state: Option<EndpointState>,
}

/// What a change did: the config's new version and what was rebuilt.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Changed {
    /// The config file's version now, also sent as `ETag`: the file as
    /// written with this change and any applied in the same batch; a next
    /// change sent with it as `If-Match` is applied if no other came
    /// between.
    version: String,
    /// The pools the change rebuilt.
    applied: ChangeReport,
}

/// The config file as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConfigView {
    /// Its version (SHA-256 of the text), also sent as `ETag`.
    version: String,
    /// Its text.
    toml: String,
}

/// The config file's text and version.
#[utoipa::path(get, path = "/v1/config", tag = "config",
    responses(
        (status = 200, description = "The config file and its version (also the `ETag` header)", body = ConfigView),
        (status = 409, description = "The process runs from a config in memory (`no_config_file`)", body = ErrorBody),
    ))]
pub(super) async fn config(Extract(state): State) -> Result<Response, ApiError> {
    let (toml, version) = state.reloader.read_file().await.map_err(read_error)?;
    let version = version_tag(&state, &version);
    Ok(with_version(
        StatusCode::OK,
        &version,
        ConfigView {
            version: version.clone(),
            toml,
        },
    ))
}

/// Adds an endpoint to a pool; it takes traffic at once (with slow start,
/// if the pool has it).
#[utoipa::path(post, path = "/v1/pools/{pool}/endpoints", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name"),
           ("If-Match" = Option<String>, Header, description = "Apply only if the config is still at this version")),
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "Added, written to the file and serving", body = Changed),
        (status = 400, description = "The body is not a valid endpoint (`invalid_body`)", body = ErrorBody),
        (status = 404, description = "No such pool (`no_such_pool`)", body = ErrorBody),
        (status = 409, description = "The address is in the pool already (`endpoint_exists`), or the file is read-only (`read_only`)", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version (`stale_version`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "The change makes the config invalid (`invalid_config`, `field` is its key)", body = ErrorBody),
    ))]
pub(super) async fn add(
    Extract(state): State,
    Path(pool): Path<String>,
    headers: HeaderMap,
    body: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(body_error)?;
    let fields = EndpointFields {
        weight: new.weight,
        capacity: new.capacity,
        tier: new.tier,
        zone: new.zone,
        labels: new.labels,
        state: new.state,
    };
    let scope = Scope::Pool(pool.clone());
    change(
        &state,
        &headers,
        StatusCode::CREATED,
        scope,
        move |document| {
            edit::add_endpoint(document, &pool, &new.address, &fields)
                .map_err(PoolEditRefused::from)
        },
    )
    .await
}

/// Changes an endpoint: any of weight, capacity, tier, zone, labels, and
/// state — `draining` takes no new requests and lets those in flight
/// finish (then the endpoint reports `drained`), `disabled` takes none.
#[utoipa::path(patch, path = "/v1/pools/{pool}/endpoints/{address}", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name"),
           ("address" = String, Path, description = "The endpoint's `host:port`"),
           ("If-Match" = Option<String>, Header, description = "Apply only if the config is still at this version")),
    request_body = EndpointFields,
    responses(
        (status = 200, description = "Changed, written to the file and serving", body = Changed),
        (status = 400, description = "The body is not a valid change (`invalid_body`)", body = ErrorBody),
        (status = 404, description = "No such pool or endpoint", body = ErrorBody),
        (status = 409, description = "The file is read-only (`read_only`)", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "The change makes the config invalid", body = ErrorBody),
    ))]
pub(super) async fn update(
    Extract(state): State,
    Path((pool, address)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<EndpointFields>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(fields) = body.map_err(body_error)?;
    let scope = Scope::Pool(pool.clone());
    change(&state, &headers, StatusCode::OK, scope, move |document| {
        edit::update_endpoint(document, &pool, &address, &fields).map_err(PoolEditRefused::from)
    })
    .await
}

/// Removes an endpoint: it takes no new request at once, and those in
/// flight finish on it.
#[utoipa::path(delete, path = "/v1/pools/{pool}/endpoints/{address}", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name"),
           ("address" = String, Path, description = "The endpoint's `host:port`"),
           ("If-Match" = Option<String>, Header, description = "Apply only if the config is still at this version")),
    responses(
        (status = 200, description = "Removed from the file and from the pool", body = Changed),
        (status = 404, description = "No such pool or endpoint", body = ErrorBody),
        (status = 409, description = "The file is read-only (`read_only`)", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version", body = ErrorBody),
        (status = 422, description = "The change makes the config invalid", body = ErrorBody),
    ))]
pub(super) async fn remove(
    Extract(state): State,
    Path((pool, address)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = Scope::Pool(pool.clone());
    change(&state, &headers, StatusCode::OK, scope, move |document| {
        edit::remove_endpoint(document, &pool, &address).map_err(PoolEditRefused::from)
    })
    .await
}

/// How often a write without `If-Match` is tried again when another
/// instance of the fleet wrote first.
const FLEET_ATTEMPTS: usize = 5;

/// Applies `edit`, which changes what `scope` says, to the config file
/// (only if it is still at the `If-Match` version when its turn comes, when
/// one is sent) and answers `status` with what changed and the new
/// version: every change of the API goes through here.
///
/// In a fleet the version is the shared config's etcd revision; a write
/// without `If-Match` that another instance beat is made again on what
/// that instance wrote, so none is lost.
pub(super) async fn change(
    state: &ControlState,
    headers: &HeaderMap,
    status: StatusCode,
    scope: Scope,
    edit: impl Fn(&mut toml_edit::DocumentMut) -> Result<(), PoolEditRefused> + Send + Sync + 'static,
) -> Result<Response, ApiError> {
    let edit = std::sync::Arc::new(edit);
    let fleet = state.reloader.fleet().cloned();
    let asked = if_match(headers)?;
    // A revision newer than the one served here is on its way: wait for it.
    if let (Some(fleet), Some(tag)) = (&fleet, asked) {
        if let Ok(revision) = tag.trim_matches('"').parse::<i64>() {
            if revision > fleet.revision() {
                fleet
                    .wait_past(revision - 1, std::time::Duration::from_secs(2))
                    .await;
            }
        }
    }
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        let expected = match (&fleet, asked) {
            // A revision this instance does not serve is stale already.
            (Some(fleet), Some(tag)) => Some(
                fleet
                    .version_of_tag(tag)
                    .unwrap_or_else(|| format!("revision {tag}")),
            ),
            (_, asked) => asked.map(str::to_string),
        };
        let made = std::sync::Arc::clone(&edit);
        let once = Edit {
            scope: scope.clone(),
            apply: Box::new(move |document| made(document)),
        };
        let revision_before = fleet.as_ref().map(|fleet| fleet.revision());
        match state.reloader.edit(expected.as_deref(), once).await {
            Err(EditError::Store(StoreError::FleetMoved { .. }))
                if asked.is_none() && attempt < FLEET_ATTEMPTS =>
            {
                // What the other instance wrote arrives here first.
                if let (Some(fleet), Some(before)) = (&fleet, revision_before) {
                    fleet
                        .wait_past(before, std::time::Duration::from_secs(2))
                        .await;
                }
            }
            other => break other.map_err(|error| edit_error(tagged(state, error)))?,
        }
    };
    let tag = version_tag(state, &written.version);
    let body = Changed {
        version: tag.clone(),
        applied: written.applied,
    };
    let mut response = with_version(status, &tag, body);
    response.extensions_mut().insert(ConfigWrite {
        version_before: version_tag(state, &written.version_before),
        version_after: tag,
        changes: written.changes,
    });
    Ok(response)
}

/// The version a client sees for the config file's `version`: in a fleet,
/// the shared config's revision.
pub(super) fn version_tag(state: &ControlState, version: &str) -> String {
    match state.reloader.fleet() {
        Some(fleet) => fleet.tag_of(version),
        None => version.to_string(),
    }
}

/// An edit's error with the versions it names as the client sees them.
fn tagged(state: &ControlState, error: EditError<PoolEditRefused>) -> EditError<PoolEditRefused> {
    match error {
        EditError::Stale { current } => EditError::Stale {
            current: version_tag(state, &current),
        },
        EditError::Store(StoreError::FleetMoved { .. }) => EditError::Stale {
            current: version_tag(state, &state.reloader.version().unwrap_or_default()),
        },
        other => other,
    }
}

/// A JSON answer with the config version as `ETag`.
pub(super) fn with_version(status: StatusCode, version: &str, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

fn if_match(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get(IF_MATCH) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            field(
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    "If-Match is not text",
                ),
                "If-Match",
            )
        }),
    }
}

fn field(mut error: ApiError, name: &str) -> ApiError {
    error.detail.field = Some(name.into());
    error
}

pub(super) fn body_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with `content-type: application/json`",
        ),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not valid: {}", other.body_text()),
        ),
    }
}

fn edit_error(error: EditError<PoolEditRefused>) -> ApiError {
    match error {
        EditError::Edit(refused) => {
            let (status, code, name) = match &refused {
                PoolEditRefused::Endpoint(EditRefused::NoSuchPool(_)) => {
                    (StatusCode::NOT_FOUND, "no_such_pool", "pool")
                }
                PoolEditRefused::Endpoint(EditRefused::NoSuchEndpoint { .. }) => {
                    (StatusCode::NOT_FOUND, "no_such_endpoint", "address")
                }
                PoolEditRefused::Endpoint(EditRefused::EndpointExists { .. }) => {
                    (StatusCode::CONFLICT, "endpoint_exists", "address")
                }
                PoolEditRefused::PoolExists(_) => (StatusCode::CONFLICT, "pool_exists", "name"),
                PoolEditRefused::PoolInUse(_) => (StatusCode::CONFLICT, "pool_in_use", "pool"),
                PoolEditRefused::NotATable(_) => (StatusCode::BAD_REQUEST, "invalid_body", "body"),
            };
            field(ApiError::new(status, code, refused.to_string()), name)
        }
        EditError::Stale { current } => field(
            ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "stale_version",
                format!("the config changed since it was read; it is at version \"{current}\" now: read it again and retry"),
            ),
            "If-Match",
        ),
        EditError::Store(error @ StoreError::ReadOnly { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "read_only", error.to_string())
        }
        EditError::Store(error @ StoreError::FleetUnavailable(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "fleet_unavailable",
            format!("{error}; this instance serves the last revision it applied, and writes are refused until etcd answers"),
        ),
        EditError::Store(StoreError::FleetMoved { revision }) => field(
            ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "stale_version",
                format!("another instance of the fleet changed the config since revision {revision}: read it again and retry"),
            ),
            "If-Match",
        ),
        EditError::Store(error) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_failed", error.to_string())
        }
        EditError::Reload(error) => {
            let (status, code) = match &error {
                ReloadError::NoFile => (StatusCode::CONFLICT, "no_config_file"),
                ReloadError::RestartNeeded(_) => (StatusCode::CONFLICT, "restart_needed"),
                ReloadError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
                ReloadError::Build(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cannot_apply"),
            };
            let key = match &error {
                ReloadError::Invalid(ConfigError::Invalid { problems, .. }) => {
                    problems.first().map(|p| p.key.clone())
                }
                _ => None,
            };
            let mut api = ApiError::new(status, code, error.to_string());
            api.detail.field = key;
            api
        }
    }
}

/// The same mapping for reading the file.
pub(super) fn read_error(error: EditError<std::convert::Infallible>) -> ApiError {
    match error {
        EditError::Edit(never) => match never {},
        EditError::Stale { current } => edit_error(EditError::Stale { current }),
        EditError::Store(store) => edit_error(EditError::Store(store)),
        EditError::Reload(reload) => edit_error(EditError::Reload(reload)),
    }
}
