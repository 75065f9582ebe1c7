//! Services registering themselves in a pool: register, renew by
//! heartbeat, deregister, list. A registration is an endpoint of the pool
//! while it is renewed within its TTL; it is kept beside the config file,
//! never in it.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::endpoints::body_error;
use super::{ApiError, ErrorBody, State};
use crate::discovery::registrations::{Registration, RegistrationError};

/// A service registering itself.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRegistration {
    /// `host:port` where the service takes requests.
    #[schema(example = "10.0.0.7:8080")]
    address: String,
    /// What the service says of itself; plugins see it as the endpoint's
    /// labels (at most 32 entries, keys up to 64 bytes, values up to 256).
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// How long the registration lives without a heartbeat, in ms (100 to
    /// 86,400,000).
    #[schema(example = 30000)]
    ttl_ms: u64,
}

/// A pool's registrations.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RegistrationsView {
    /// By address.
    registrations: Vec<Registration>,
}

/// Registers a service as an endpoint of a pool, at once (with slow start,
/// if the pool has it). A registration of the same address in the pool is
/// replaced.
#[utoipa::path(post, path = "/v1/pools/{pool}/registrations", tag = "registrations",
    params(("pool" = String, Path, description = "The pool's name")),
    request_body = NewRegistration,
    responses(
        (status = 201, description = "Registered, kept and serving; renew it with PUT before `expires_at_unix_ms`", body = Registration),
        (status = 400, description = "The body is not a registration (`invalid_body`)", body = ErrorBody),
        (status = 404, description = "No such pool (`no_such_pool`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "A field is out of range (`invalid_registration`, `field` names it)", body = ErrorBody),
        (status = 500, description = "It could not be kept (`store_failed`); nothing changed", body = ErrorBody),
    ))]
pub(super) async fn register(
    Extract(state): State,
    Path(pool): Path<String>,
    body: Result<Json<NewRegistration>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(body_error)?;
    let registration = state
        .registrations
        .register(&pool, new.address, new.metadata, new.ttl_ms)
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(registration)).into_response())
}

/// Renews a registration for its TTL from now.
#[utoipa::path(put, path = "/v1/pools/{pool}/registrations/{id}", tag = "registrations",
    params(("pool" = String, Path, description = "The pool's name"),
           ("id" = String, Path, description = "The registration's id")),
    responses(
        (status = 200, description = "Renewed", body = Registration),
        (status = 404, description = "No such pool or registration (it may have lapsed: register again)", body = ErrorBody),
        (status = 500, description = "It could not be kept (`store_failed`)", body = ErrorBody),
    ))]
pub(super) async fn heartbeat(
    Extract(state): State,
    Path((pool, id)): Path<(String, String)>,
) -> Result<Json<Registration>, ApiError> {
    state
        .registrations
        .heartbeat(&pool, &id)
        .await
        .map(Json)
        .map_err(api_error)
}

/// Removes a registration: the endpoint takes no new request, and those in
/// flight finish on it.
#[utoipa::path(delete, path = "/v1/pools/{pool}/registrations/{id}", tag = "registrations",
    params(("pool" = String, Path, description = "The pool's name"),
           ("id" = String, Path, description = "The registration's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such pool or registration", body = ErrorBody),
        (status = 500, description = "It could not be kept (`store_failed`); nothing changed", body = ErrorBody),
    ))]
pub(super) async fn deregister(
    Extract(state): State,
    Path((pool, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .registrations
        .deregister(&pool, &id)
        .await
        .map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A pool's registrations.
#[utoipa::path(get, path = "/v1/pools/{pool}/registrations", tag = "registrations",
    params(("pool" = String, Path, description = "The pool's name")),
    responses(
        (status = 200, description = "The pool's live registrations", body = RegistrationsView),
        (status = 404, description = "No such pool (`no_such_pool`)", body = ErrorBody),
    ))]
pub(super) async fn list(
    Extract(state): State,
    Path(pool): Path<String>,
) -> Result<Json<RegistrationsView>, ApiError> {
    let registrations = state.registrations.list(&pool).await.map_err(api_error)?;
    Ok(Json(RegistrationsView { registrations }))
}

fn api_error(error: RegistrationError) -> ApiError {
    let (status, code, field) = match &error {
        RegistrationError::NoSuchPool(_) => (StatusCode::NOT_FOUND, "no_such_pool", Some("pool")),
        RegistrationError::NoSuchRegistration { .. } => {
            (StatusCode::NOT_FOUND, "no_such_registration", Some("id"))
        }
        RegistrationError::Invalid { field, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_registration",
            Some(*field),
        ),
        RegistrationError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed", None),
        RegistrationError::Apply(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cannot_apply", None),
    };
    let mut api = ApiError::new(status, code, error.to_string());
    api.detail.field = field.map(Into::into);
    api
}
