//! `GET /v1/plugins`: every plugin with its serving version, the pools that
//! use it, its calls and faults, and what went wrong last.

use std::time::UNIX_EPOCH;

use axum::extract::State as Extract;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::State;
use crate::plugins::{Note, PluginSlot, World};

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
    /// Calls on the request path since start.
    calls: u64,
    /// Calls that trapped, timed out or answered out of the set.
    faults: u64,
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
pub(super) struct NoteView {
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
    let pools = slot
        .users
        .lock()
        .unwrap()
        .iter()
        .filter(|usage| usage.pool.strong_count() > 0)
        .map(|usage| usage.pool_name.clone())
        .collect();
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
        hash: version.as_ref().map(|v| v.hash.clone()),
        loaded_at_unix_ms: version.as_ref().map(|v| {
            v.loaded_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }),
        load_micros: version.as_ref().map(|v| v.load_micros),
        compiled_from_cache: version.as_ref().map(|v| v.from_cache),
        pools,
        calls: slot.calls(),
        faults: slot.faults(),
        reloads: history.reloads,
        rejected_files: history.rejections,
        last_error: note(&history.last_error),
        last_fault: note(&history.last_fault),
        last_rejected: note(&history.last_rejected),
        fallback: note(&history.fallback),
    }
}
