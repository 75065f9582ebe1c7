//! Pools and routes changed at run time (an admin's): a pool added,
//! changed or removed, the route table replaced whole. Each is an edit of
//! the config file, applied as endpoint changes are: validated and built
//! like a reload, written back atomically, then swapped in. A pool's keys
//! changed are confined to its table, as endpoint changes are; the others
//! touch the whole file.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::endpoints::{body_error, change, read_error, with_version, Changed};
use super::{ApiError, ErrorBody, State};
use crate::config::edit;
use crate::reload::Scope;

type Object = serde_json::Map<String, serde_json::Value>;

/// Adds a pool: a JSON object of the keys a `[[pools]]` table takes
/// (`name`, `endpoints`, `balancer`, `health`, `recovery`, `outlier`, ...).
#[utoipa::path(post, path = "/v1/pools", tag = "pools",
    request_body(content = Object, description = "The pool's keys, as in the config file"),
    responses(
        (status = 201, description = "Added, written to the file and serving", body = Changed),
        (status = 400, description = "The body is not a JSON object (`invalid_body`)", body = ErrorBody),
        (status = 409, description = "A pool has that name (`pool_exists`), or the file is read-only", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version", body = ErrorBody),
        (status = 422, description = "The pool is invalid (`invalid_config`, `field` its key) or cannot be built (`cannot_apply`)", body = ErrorBody),
    ))]
pub(super) async fn add(
    Extract(state): State,
    headers: HeaderMap,
    body: Result<Json<Object>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(pool) = body.map_err(body_error)?;
    change(
        &state,
        &headers,
        StatusCode::CREATED,
        Scope::Whole,
        move |document| edit::add_pool(document, &pool),
    )
    .await
}

/// Changes a pool's keys (`null` removes one): balancer, health, recovery,
/// outlier, thresholds and the rest; not its name or endpoints.
#[utoipa::path(patch, path = "/v1/pools/{pool}", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name")),
    request_body(content = Object, description = "The keys to set, as in the config file"),
    responses(
        (status = 200, description = "Changed, written to the file and serving", body = Changed),
        (status = 400, description = "The body is not a JSON object, or names `name` or `endpoints`", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 409, description = "The file is read-only", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version", body = ErrorBody),
        (status = 422, description = "The change makes the config invalid or cannot be built", body = ErrorBody),
    ))]
pub(super) async fn update(
    Extract(state): State,
    Path(pool): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Object>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(changes) = body.map_err(body_error)?;
    let scope = Scope::Pool(pool.clone());
    change(&state, &headers, StatusCode::OK, scope, move |document| {
        edit::update_pool(document, &pool, &changes)
    })
    .await
}

/// Removes a pool no route leads to; requests in flight finish on it.
#[utoipa::path(delete, path = "/v1/pools/{pool}", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "Removed from the file and from serving", body = Changed),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 409, description = "A route leads to it (`pool_in_use`), or the file is read-only", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version", body = ErrorBody),
        (status = 422, description = "The config would be invalid without it", body = ErrorBody),
    ))]
pub(super) async fn remove(
    Extract(state): State,
    Path(pool): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    change(
        &state,
        &headers,
        StatusCode::OK,
        Scope::Whole,
        move |document| edit::remove_pool(document, &pool),
    )
    .await
}

/// The route table.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RoutesView {
    /// The config's version, also sent as `ETag`.
    version: String,
    /// The routes in order: the first that matches wins.
    #[schema(value_type = Vec<Object>)]
    routes: Vec<serde_json::Value>,
}

/// The route table, in order.
#[utoipa::path(get, path = "/v1/routes", tag = "pools",
    responses((status = 200, description = "The routes, in order", body = RoutesView)))]
pub(super) async fn routes(Extract(state): State) -> Result<Response, ApiError> {
    let (text, version) = state.reloader.read_file().await.map_err(read_error)?;
    let version = super::endpoints::version_tag(&state, &version);
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            e.to_string(),
        )
    })?;
    let routes = match table.get("routes") {
        Some(toml::Value::Array(routes)) => routes
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    };
    Ok(with_version(
        StatusCode::OK,
        &version,
        RoutesView {
            version: version.clone(),
            routes,
        },
    ))
}

/// Replaces the route table whole: a JSON array of routes, each an object
/// of the `[[routes]]` keys (`host`, `path_prefix`, `headers`, `pool`, ...),
/// tried in order.
#[utoipa::path(put, path = "/v1/routes", tag = "pools",
    request_body(content = Vec<Object>, description = "The routes, in order"),
    responses(
        (status = 200, description = "Replaced, written to the file and serving", body = Changed),
        (status = 400, description = "The body is not a JSON array of objects", body = ErrorBody),
        (status = 409, description = "The file is read-only", body = ErrorBody),
        (status = 412, description = "The config changed since the `If-Match` version", body = ErrorBody),
        (status = 422, description = "The table is invalid (a route to no pool, say)", body = ErrorBody),
    ))]
pub(super) async fn replace_routes(
    Extract(state): State,
    headers: HeaderMap,
    body: Result<Json<Vec<Object>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(routes) = body.map_err(body_error)?;
    change(
        &state,
        &headers,
        StatusCode::OK,
        Scope::Whole,
        move |document| edit::replace_routes(document, &routes),
    )
    .await
}
