//! `POST /v1/reload`: the config file read again and applied as the
//! difference from the running one.

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ErrorBody, State};
use crate::reload::{ReloadError, ReloadReport};

/// What a reload changed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Reloaded {
    reloaded: ReloadReport,
}

/// Reads the config file again and applies the difference from the
/// running config; nothing changes when it is invalid or needs a restart.
#[utoipa::path(post, path = "/v1/reload", tag = "config",
    responses(
        (status = 200, description = "Applied: the pools added, changed, removed and unchanged", body = Reloaded),
        (status = 409, description = "Nothing changed: the change needs a restart (`restart_needed`), or there is no file (`no_config_file`)", body = ErrorBody),
        (status = 422, description = "Nothing changed: the file is invalid (`invalid_config`, every problem with its key and line) or cannot be applied (`cannot_apply`)", body = ErrorBody),
    ))]
pub(super) async fn reload(Extract(state): State) -> Result<Json<Reloaded>, ApiError> {
    match state.reloader.reload_file().await {
        Ok(reloaded) => Ok(Json(Reloaded { reloaded })),
        Err(error) => {
            let (status, code) = match &error {
                ReloadError::NoFile => (StatusCode::CONFLICT, "no_config_file"),
                ReloadError::RestartNeeded(_) => (StatusCode::CONFLICT, "restart_needed"),
                ReloadError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
                ReloadError::Build(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cannot_apply"),
            };
            Err(ApiError::new(status, code, error.to_string()))
        }
    }
}
