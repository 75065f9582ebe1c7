//! `/v1/plugins/{name}/candidate` and `/v1/plugins/{name}/rollout`: put a
//! candidate version on trial, watch its comparison with the serving one,
//! promote or abort it.

use axum::extract::{Path, Request, State as Extract};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ErrorBody, State};
use crate::plugins::{CandidateOutcome, Rollout, RolloutError, RolloutState};

/// The largest candidate file the API takes (a Python plugin is about 40 MB).
pub const MAX_CANDIDATE_BYTES: usize = 128 * 1024 * 1024;

/// A rollout, running or ended: its phase, the live comparison, and the
/// phases behind it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RolloutView {
    /// The plugin.
    plugin: String,
    /// `shadow`, `canary`, `held`, `promoted`, `rolled-back` or `aborted`.
    #[schema(value_type = String)]
    state: RolloutState,
    /// The current (or last) phase: `shadow`, or `canary 2/5`.
    phase: String,
    /// The share of picks the candidate is called on (shadow) or answers
    /// (canary) in it, in percent.
    share_percent: f64,
    /// The candidate's SHA-256.
    candidate: String,
    /// The serving version it is compared with.
    live: String,
    /// Its file.
    source: String,
    /// When it started, in ms since the Unix epoch.
    started_at_unix_ms: u64,
    /// How long it has run, in ms.
    elapsed_ms: u64,
    /// When and why it ended.
    ended: Option<super::plugins::NoteView>,
    /// `[plugins.rollout.NAME]` as applied.
    #[schema(value_type = Object)]
    settings: serde_json::Value,
    /// The current phase so far: live and candidate side by side.
    #[schema(value_type = Object)]
    comparison: crate::plugins::rollout::Comparison,
    /// The candidate's last fault in the current phase.
    last_fault: Option<super::plugins::NoteView>,
    /// The phases that ended, first first, each with its comparison.
    #[schema(value_type = Vec<Object>)]
    phases: Vec<crate::plugins::rollout::PhaseReport>,
}

/// What became of an uploaded candidate.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CandidateAccepted {
    /// `started`, or `unchanged` (it is the candidate on trial already).
    outcome: String,
    /// The rollout.
    rollout: RolloutView,
}

pub(super) fn view(name: &str, rollout: &Rollout) -> RolloutView {
    let settings = &rollout.settings;
    RolloutView {
        plugin: name.to_string(),
        state: rollout.state(),
        phase: rollout.phase_name(),
        share_percent: rollout.share_percent(),
        candidate: rollout.candidate.hash.clone(),
        live: rollout.live.hash.clone(),
        source: rollout.source.clone(),
        started_at_unix_ms: rollout.started.at_unix_ms,
        elapsed_ms: rollout.elapsed().as_millis() as u64,
        ended: rollout.end().as_ref().map(Into::into),
        settings: serde_json::json!({
            "shadow_percent": settings.shadow_percent,
            "canary_percent": settings.canary_percent,
            "steps": settings.steps,
            "promote_after_calls": settings.promote_after_calls,
            "max_fault_rate": settings.max_fault_rate,
            "max_cost_ratio": settings.max_cost_ratio,
            "max_disagreement": settings.max_disagreement,
            "agreement": settings.agreement,
            "max_error_rate_increase": settings.max_error_rate_increase,
            "max_latency_ratio": settings.max_latency_ratio,
            "auto_promote": settings.auto_promote,
        }),
        comparison: rollout.comparison(),
        last_fault: rollout.last_fault().as_ref().map(Into::into),
        phases: rollout.phases(),
    }
}

/// The plugin's rollout, running or the last one that ended.
#[utoipa::path(get, path = "/v1/plugins/{name}/rollout", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        (status = 404, description = "No such plugin (`no_such_plugin`), or it never had a candidate (`no_rollout`)", body = ErrorBody),
    ))]
pub(super) async fn show(
    Extract(state): State,
    Path(name): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    let slot = state
        .runtime
        .find_slot(&name)
        .ok_or_else(|| super::plugins::no_such_plugin(&name))?;
    let rollout = slot.rollout().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_rollout",
            format!(
                "plugin `{name}` has had no candidate: write one as {} or POST it to /v1/plugins/{name}/candidate",
                state.runtime.candidate_path(&name).display()
            ),
        )
    })?;
    Ok(Json(view(&name, &rollout)))
}

/// Puts the request body, a plugin component, on trial as plugin `name`'s
/// candidate: kept as `NAME.canary.wasm` in the plugin folder, checked
/// against every pool using the plugin, then compared on live traffic as
/// `[plugins.rollout.NAME]` says. A running rollout of another candidate
/// is aborted for it.
#[utoipa::path(post, path = "/v1/plugins/{name}/candidate", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The candidate component, at most 128 MiB"),
    responses(
        (status = 201, description = "The rollout started", body = CandidateAccepted),
        (status = 200, description = "It is the candidate on trial already", body = CandidateAccepted),
        (status = 400, description = "Not a plugin name, or an unreadable body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No version of the plugin serves (`no_such_plugin`)", body = ErrorBody),
        (status = 413, description = "Over 128 MiB (`too_large`)", body = ErrorBody),
        (status = 422, description = "The candidate was refused (`candidate_rejected`): the serving version keeps every pick", body = ErrorBody),
    ))]
pub(super) async fn upload(
    Extract(state): State,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<CandidateAccepted>), ApiError> {
    if !crate::config::is_valid_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "`{name}` is not a plugin name (letters, digits, `-`, `_`; 1 to 64 characters)"
            ),
        ));
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_CANDIDATE_BYTES)
        .await
        .map_err(|error| {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("a candidate is at most {MAX_CANDIDATE_BYTES} bytes"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", error.to_string())
            }
        })?;
    if state
        .runtime
        .find_slot(&name)
        .is_none_or(|slot| slot.current().is_none())
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_plugin",
            format!(
                "no version of plugin `{name}` serves: a candidate is tried against the serving version (write the first as {name}.wasm)"
            ),
        ));
    }
    let runtime = state.runtime.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let path = runtime.candidate_path(&name);
        // Written whole under another name first: the folder's watch never
        // sees half a file.
        let partial = runtime.dir().join(format!(".{name}.canary.upload"));
        std::fs::write(&partial, &bytes)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        match runtime.load_candidate(&path) {
            Ok(outcome) => Ok((name, outcome)),
            Err(error) => {
                // A refused upload leaves nothing for the watch or a
                // restart to try again.
                if std::fs::read(&path).is_ok_and(|now| now == bytes) {
                    let _ = std::fs::remove_file(&path);
                }
                Err(error.to_string())
            }
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match loaded {
        Ok((name, CandidateOutcome::Started(rollout))) => Ok((
            StatusCode::CREATED,
            Json(CandidateAccepted {
                outcome: "started".into(),
                rollout: view(&name, &rollout),
            }),
        )),
        Ok((name, CandidateOutcome::Unchanged(rollout))) => Ok((
            StatusCode::OK,
            Json(CandidateAccepted {
                outcome: "unchanged".into(),
                rollout: view(&name, &rollout),
            }),
        )),
        Err(reason) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "candidate_rejected",
            reason,
        )),
    }
}

/// Promotes the running candidate now: it serves every pick, and its file
/// becomes `NAME.wasm`.
#[utoipa::path(post, path = "/v1/plugins/{name}/rollout/promote", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "Promoted", body = RolloutView),
        (status = 404, description = "No such plugin (`no_such_plugin`)", body = ErrorBody),
        (status = 409, description = "No rollout is running (`no_rollout_running`)", body = ErrorBody),
    ))]
pub(super) async fn promote(
    Extract(state): State,
    Path(name): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    end_by_operator(&state, name, |runtime, name| {
        runtime.promote_candidate(name)
    })
    .await
}

/// Aborts the running rollout: the serving version keeps every pick, and
/// the candidate's file is moved to `.rolled-back/`.
#[utoipa::path(post, path = "/v1/plugins/{name}/rollout/abort", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "Aborted", body = RolloutView),
        (status = 404, description = "No such plugin (`no_such_plugin`)", body = ErrorBody),
        (status = 409, description = "No rollout is running (`no_rollout_running`)", body = ErrorBody),
    ))]
pub(super) async fn abort(
    Extract(state): State,
    Path(name): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    end_by_operator(&state, name, |runtime, name| {
        runtime.abort_candidate(name, "aborted by an operator")
    })
    .await
}

/// Ends plugin `name`'s rollout by `end` (files are renamed: off the
/// async workers), answering the rollout as it ended.
async fn end_by_operator(
    state: &super::ControlState,
    name: String,
    end: impl FnOnce(
            &crate::plugins::PluginRuntime,
            &str,
        ) -> Result<std::sync::Arc<Rollout>, RolloutError>
        + Send
        + 'static,
) -> Result<Json<RolloutView>, ApiError> {
    let runtime = state.runtime.clone();
    tokio::task::spawn_blocking(move || end(&runtime, &name).map(|rollout| (name, rollout)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map(|(name, rollout)| Json(view(&name, &rollout)))
        .map_err(refused)
}

fn refused(error: RolloutError) -> ApiError {
    match &error {
        RolloutError::NoSuchPlugin(name) => super::plugins::no_such_plugin(name),
        RolloutError::NotRunning(..) => ApiError::new(
            StatusCode::CONFLICT,
            "no_rollout_running",
            error.to_string(),
        ),
    }
}
