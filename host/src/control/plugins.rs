//! `GET /v1/plugins`: every plugin with its serving version, the pools that
//! use it, its calls and faults, and what went wrong last.

use std::time::UNIX_EPOCH;

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ErrorBody, State};
use crate::plugins::{LoadOutcome, Note, Owner, PluginSlot, World};

/// Every plugin the runtime knows, by name.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PluginsView {
    plugins: Vec<PluginView>,
}

/// One plugin.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PluginView {
    /// The file stem.
    name: String,
    /// The file it is loaded from.
    file: String,
    /// Whether the file is in the folder now.
    file_present: bool,
    /// `active`, `quarantined` or `not-loaded`.
    state: PluginState,
    /// The contract the serving version implements.
    world: Option<WorldView>,
    /// The contract version the serving version was built against.
    contract: Option<String>,
    /// `shared`: one instance serves every pool using it (contract 0.2);
    /// `per-pool`: one instance per pool (0.1).
    instances: Option<&'static str>,
    /// The serving version's SHA-256.
    hash: Option<String>,
    /// When it was swapped in, in ms since the Unix epoch.
    loaded_at_unix_ms: Option<u64>,
    /// How long loading it took, in µs.
    load_micros: Option<u64>,
    /// Whether its compiled artifact came from the cache.
    compiled_from_cache: Option<bool>,
    /// The pools that use it.
    pools: Vec<String>,
    /// Routes with a recovery policy of their own backed by it, by key
    /// (`routes[3]`).
    routes: Vec<String>,
    /// Calls on the request path since start.
    calls: u64,
    /// Calls that trapped, timed out or answered out of the set.
    faults: u64,
    /// How long calls into its export took (`pick`, `check`,
    /// `on-failure`), in µs; `null` before its first call.
    call_micros: Option<CallTimesView>,
    /// Its log lines since start, by what became of them.
    log_lines: LogLinesView,
    /// Instances replaced by fresh ones for the memory they had reached
    /// (`recycle_at_percent` of the cap); not faults.
    recycles: u64,
    /// The store its instances share for each pool or route it serves
    /// (`switchyard:plugin/store`, balancers and recovery policies).
    stores: Vec<StoreView>,
    /// The sandbox it runs in: `[plugins]` with its `[plugins.limits.NAME]`.
    limits: LimitsView,
    /// Versions swapped in after the first.
    reloads: u64,
    /// Files refused.
    rejected_files: u64,
    /// The most recent fault, refusal or warning.
    last_error: Option<NoteView>,
    /// The last fault.
    last_fault: Option<NoteView>,
    /// The last file refused, and why.
    last_rejected: Option<NoteView>,
    /// Set while the last good version from an earlier run serves because
    /// the file in the folder was rejected at start.
    fallback: Option<NoteView>,
    /// Its candidate's rollout, running or the last that ended, in brief
    /// (`GET /v1/plugins/{name}/rollout` has it all).
    rollout: Option<RolloutBrief>,
}

/// A rollout in brief.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RolloutBrief {
    /// `shadow`, `canary`, `held`, `promoted`, `rolled-back` or `aborted`.
    #[schema(value_type = String)]
    state: crate::plugins::RolloutState,
    /// `shadow`, or `canary 2/5`.
    phase: String,
    /// The candidate's SHA-256.
    candidate: String,
    /// Why it ended.
    reason: Option<String>,
}

/// Call timings, in µs. The quantiles are estimated from the histogram's
/// buckets (`switchyard_plugin_call_seconds`: linear within a bucket, never
/// above the maximum); the count and maximum are exact.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CallTimesView {
    /// Calls timed.
    count: u64,
    /// Median, estimated.
    p50: f64,
    /// 99th percentile, estimated.
    p99: f64,
    /// The longest call.
    max: f64,
    /// The mean.
    mean: f64,
}

/// A plugin's log lines by outcome, and the limits applied.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LogLinesView {
    /// Written whole.
    written: u64,
    /// Written cut at `line_bytes`.
    cut: u64,
    /// Dropped over `lines_per_second`, and summarised.
    dropped: u64,
    /// `plugins.log_line_bytes`.
    line_bytes: usize,
    /// `plugins.log_lines_per_second`.
    lines_per_second: u32,
}

/// Whether a plugin serves.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) enum PluginState {
    /// A version serves.
    Active,
    /// The serving version faulted too often; the native fallback answers.
    Quarantined,
    /// No version was ever loaded.
    NotLoaded,
}

/// Which contract a component implements.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) enum WorldView {
    /// `switchyard:plugin/balancer`.
    Balancer,
    /// `switchyard:plugin/health-check`.
    HealthCheck,
    /// `switchyard:plugin/recovery`.
    Recovery,
}

/// A timestamped message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NoteView {
    /// When, in ms since the Unix epoch.
    at_unix_ms: u64,
    /// What.
    message: String,
}

impl From<&Note> for NoteView {
    fn from(note: &Note) -> Self {
        NoteView {
            at_unix_ms: note.at_unix_ms,
            message: note.message.clone(),
        }
    }
}

/// Every plugin, with its serving version, the pools using it, calls,
/// faults and what went wrong last.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins",
    responses((status = 200, description = "Every plugin, by name", body = PluginsView)))]
pub(super) async fn list(Extract(state): State) -> Json<PluginsView> {
    Json(PluginsView {
        plugins: state
            .runtime
            .slots()
            .iter()
            .map(|slot| view(slot))
            .collect(),
    })
}

fn view(slot: &PluginSlot) -> PluginView {
    let version = slot.current();
    let history = slot.history.lock().unwrap();
    // A pool a reload dropped is gone once its last request is.
    let (mut pools, mut routes) = (Vec::new(), Vec::new());
    for usage in slot.users.lock().unwrap().iter() {
        match &usage.owner {
            _ if !usage.owner.is_live() => {}
            Owner::Pool(_) => pools.push(usage.pool_name.clone()),
            Owner::Route(_) => routes.push(usage.pool_name.clone()),
        }
    }
    let note = |note: &Option<Note>| note.as_ref().map(NoteView::from);
    PluginView {
        name: slot.name.to_string(),
        file: slot.path.display().to_string(),
        file_present: history.file_present,
        state: match &version {
            None => PluginState::NotLoaded,
            Some(v) if v.is_quarantined() => PluginState::Quarantined,
            Some(_) => PluginState::Active,
        },
        world: version.as_ref().map(|v| match v.world {
            World::Balancer => WorldView::Balancer,
            World::HealthCheck => WorldView::HealthCheck,
            World::Recovery => WorldView::Recovery,
        }),
        contract: version.as_ref().map(|v| v.contract.clone()),
        instances: version.as_ref().map(|v| {
            if v.prepared.serves_many_pools() {
                "shared"
            } else {
                "per-pool"
            }
        }),
        hash: version.as_ref().map(|v| v.hash.clone()),
        loaded_at_unix_ms: version.as_ref().map(|v| {
            v.loaded_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }),
        load_micros: version.as_ref().map(|v| v.load_micros),
        compiled_from_cache: version.as_ref().map(|v| v.from_cache),
        pools,
        routes,
        calls: slot.calls(),
        faults: slot.faults(),
        call_micros: call_times(slot),
        log_lines: {
            let (lines, limits) = (slot.log_lines(), slot.log_limits());
            LogLinesView {
                written: lines.written,
                cut: lines.cut,
                dropped: lines.dropped,
                line_bytes: limits.line_bytes,
                lines_per_second: limits.lines_per_second,
            }
        },
        recycles: slot.recycles(),
        stores: slot
            .stores()
            .into_iter()
            .map(|(user, entries, max_entries)| StoreView {
                user,
                entries,
                max_entries,
            })
            .collect(),
        limits: LimitsView {
            memory_limit_mib: (slot.limits.memory_limit / (1024 * 1024)) as u64,
            recycle_at_mib: (slot.limits.recycle_at != usize::MAX)
                .then_some((slot.limits.recycle_at / (1024 * 1024)) as u64),
            call_timeout_ms: slot.limits.call_timeout_ms,
        },
        reloads: history.reloads,
        rejected_files: history.rejections,
        last_error: note(&history.last_error),
        last_fault: note(&history.last_fault),
        last_rejected: note(&history.last_rejected),
        fallback: note(&history.fallback),
        rollout: slot.rollout().map(|rollout| RolloutBrief {
            state: rollout.state(),
            phase: rollout.phase_name(),
            candidate: rollout.candidate.hash.clone(),
            reason: rollout.end().map(|end| end.message),
        }),
    }
}

/// The store a plugin's instances share for one pool or route.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StoreView {
    /// Who it serves: "pool `web`", "route `routes[3]`".
    user: String,
    /// Entries it holds.
    entries: usize,
    /// The most it may hold (`plugins.store_entries`); a full store refuses
    /// new entries.
    max_entries: usize,
}

/// One plugin's sandbox settings.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LimitsView {
    /// The linear-memory cap of one instance.
    memory_limit_mib: u64,
    /// The memory at which an instance is recycled; `null`: never.
    recycle_at_mib: Option<u64>,
    /// The budget of one call.
    call_timeout_ms: u64,
}

fn call_times(slot: &PluginSlot) -> Option<CallTimesView> {
    let times = slot.call_times();
    let micros = |seconds: f64| (seconds * 1e9).round() / 1e3;
    Some(CallTimesView {
        p50: micros(times.quantile(0.5)?),
        p99: micros(times.quantile(0.99)?),
        max: micros(times.max_seconds),
        mean: micros(times.sum_seconds / times.count as f64),
        count: times.count,
    })
}

/// What a reload of a plugin's file did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PluginReloaded {
    /// `loaded` (a new version serves) or `unchanged` (the content serving;
    /// a quarantine, if any, was lifted).
    outcome: String,
    /// The plugin as it stands now.
    plugin: PluginView,
}

/// Loads a plugin's file again, as when it is written: compiled, checked
/// against every pool that uses it, and swapped in; a file that fails
/// leaves the serving version and says why.
#[utoipa::path(post, path = "/v1/plugins/{name}/reload", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name, the stem of NAME.wasm")),
    responses(
        (status = 200, description = "Loaded, or unchanged", body = PluginReloaded),
        (status = 404, description = "No such plugin and no such file (`no_such_plugin`)", body = ErrorBody),
        (status = 422, description = "The file was refused (`plugin_rejected`): the serving version stays", body = ErrorBody),
    ))]
pub(super) async fn reload(
    Extract(state): State,
    Path(name): Path<String>,
) -> Result<Json<PluginReloaded>, ApiError> {
    let known = state.runtime.find_slot(&name).is_some()
        || crate::config::is_valid_name(&name)
            && state.runtime.dir().join(format!("{name}.wasm")).is_file();
    if !known {
        return Err(no_such_plugin(&name));
    }
    let runtime = state.runtime.clone();
    let loaded = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || runtime.reload(&name))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
    };
    let outcome = match loaded {
        Ok(LoadOutcome::Loaded(_)) => "loaded",
        Ok(LoadOutcome::Unchanged { .. } | LoadOutcome::AlreadyRejected) => "unchanged",
        Err(error) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_rejected",
                error.to_string(),
            ))
        }
    };
    let slot = state.runtime.slot(&name);
    Ok(Json(PluginReloaded {
        outcome: outcome.into(),
        plugin: view(&slot),
    }))
}

/// Lifts a plugin's quarantine: the serving version answers picks again
/// (its fault streak starts over).
#[utoipa::path(post, path = "/v1/plugins/{name}/unquarantine", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The plugin as it stands now", body = PluginView),
        (status = 404, description = "No such plugin (`no_such_plugin`)", body = ErrorBody),
        (status = 409, description = "No version is loaded (`not_loaded`)", body = ErrorBody),
    ))]
pub(super) async fn unquarantine(
    Extract(state): State,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    let slot = state
        .runtime
        .find_slot(&name)
        .ok_or_else(|| no_such_plugin(&name))?;
    if slot.current().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_loaded",
            format!("plugin `{name}` has no version loaded: there is nothing to lift"),
        ));
    }
    if slot.lift_quarantine() {
        tracing::info!(plugin = %name, "quarantine lifted through the API");
    }
    Ok(Json(view(&slot)))
}

pub(super) fn no_such_plugin(name: &str) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_plugin",
        format!(
            "no plugin is named `{name}`, and there is no file {name}.wasm in the plugin folder"
        ),
    );
    error.detail.field = Some("name".into());
    error
}
