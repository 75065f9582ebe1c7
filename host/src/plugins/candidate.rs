//! Candidate versions: `NAME.canary.wasm` (or a file uploaded through the
//! API, written there) checked like any version, then put on trial in a
//! [`Rollout`] that ends by promoting it, rolling it back, or an abort.
//!
//! The files follow the outcome, so a restart finds what was decided: a
//! promoted candidate's file is renamed to `NAME.wasm`; one rolled back or
//! aborted is moved to `.rolled-back/NAME-HASH.wasm`, out of the watch.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::registry::{Owner, PluginSlot, Role};
use super::rollout::{Judgement, Rollout, RolloutState, JUDGE_EVERY};
use super::{LoadError, PluginRuntime};
use crate::engine::Severity;

/// The suffix of a candidate's file stem: `NAME.canary.wasm`.
pub const CANDIDATE_SUFFIX: &str = ".canary";

/// The plugin name of a candidate's path: NAME of `NAME.canary.wasm`.
pub fn candidate_name(path: &Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let name = stem.strip_suffix(CANDIDATE_SUFFIX)?;
    crate::config::is_valid_name(name).then(|| name.to_string())
}

/// What became of a candidate file.
#[derive(Debug)]
pub enum CandidateOutcome {
    /// A rollout of it started.
    Started(Arc<Rollout>),
    /// It is the candidate already on trial.
    Unchanged(Arc<Rollout>),
}

/// Why an operator's promote or abort was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No plugin by that name.
    #[error("no plugin is named `{0}`")]
    NoSuchPlugin(String),
    /// No rollout is running.
    #[error("plugin `{0}` has no rollout running{1}")]
    NotRunning(String, String),
}

impl PluginRuntime {
    /// The path a candidate of plugin `name` is kept at.
    pub fn candidate_path(&self, name: &str) -> PathBuf {
        self.shared
            .dir
            .join(format!("{name}{CANDIDATE_SUFFIX}.wasm"))
    }

    /// Puts every candidate file of the folder on trial (at start, once
    /// the pools are attached); returns the errors of those refused.
    pub fn load_candidates(&self) -> Vec<LoadError> {
        self.files_named(candidate_name)
            .iter()
            .filter_map(|path| self.load_candidate(path).err())
            .collect()
    }

    /// Puts the candidate file at `path` on trial for every pool using its
    /// plugin: compiled, checked against each pool's config and endpoints
    /// like any version, then compared on live traffic. A running rollout
    /// of another candidate is aborted for it. The plugin must serve a
    /// balancer built against contract 0.2 to compare with.
    pub fn load_candidate(&self, path: &Path) -> Result<CandidateOutcome, LoadError> {
        let fail_name = |stage: &'static str, reason: String| LoadError {
            name: path.display().to_string(),
            path: path.display().to_string(),
            stage,
            reason,
        };
        let name = candidate_name(path).ok_or_else(|| {
            fail_name(
                "name",
                "a candidate file is named NAME.canary.wasm, NAME of letters, digits, - and _"
                    .into(),
            )
        })?;
        // Only a plugin that serves has a candidate: no slot is made for a
        // name nothing uses.
        let Some(slot) = self
            .find_slot(&name)
            .filter(|slot| slot.current().is_some())
        else {
            let error = LoadError {
                name: name.clone(),
                path: path.display().to_string(),
                stage: "rollout",
                reason: format!(
                    "no version of `{name}` serves to compare the candidate with: write it as {name}.wasm"
                ),
            };
            tracing::warn!("{error}");
            return Err(error);
        };
        let result = {
            let _judging = slot
                .candidate_loading
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.try_load_candidate(&slot, path)
        };
        if let Err(error) = &result {
            tracing::warn!("{error}; the serving version keeps every pick");
            slot.warn(format!("candidate refused: {error}"));
            slot.publish(serde_json::json!({
                "plugin": &*slot.name, "event": "candidate-rejected", "reason": error.to_string(),
            }));
        }
        result
    }

    fn try_load_candidate(
        &self,
        slot: &Arc<PluginSlot>,
        path: &Path,
    ) -> Result<CandidateOutcome, LoadError> {
        let fail = |stage: &'static str, reason: String| LoadError {
            name: slot.name.to_string(),
            path: path.display().to_string(),
            stage,
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail("read", e.to_string()))?;
        let hash = format!("{:x}", Sha256::digest(&bytes));
        if let Some(running) = slot.running_rollout() {
            if running.candidate.hash == hash {
                return Ok(CandidateOutcome::Unchanged(running));
            }
        }
        super::check_header(&bytes).map_err(|reason| fail("format", reason))?;
        let live = slot.current().ok_or_else(|| {
            fail(
                "rollout",
                format!("no version of `{}` serves any more", slot.name),
            )
        })?;
        if live.world != super::World::Balancer || !live.prepared.serves_many_pools() {
            return Err(fail(
                "rollout",
                format!(
                    "a rollout tries a balancer built against contract 0.2 on live traffic; the serving version is {} (contract {}): swap it whole as {}.wasm",
                    live.world.describe(),
                    live.contract,
                    slot.name
                ),
            ));
        }
        if live.hash == hash {
            return Err(fail(
                "rollout",
                "the candidate is the version already serving".into(),
            ));
        }
        let candidate = self.compile(&bytes, hash, &fail)?;
        if candidate.world != super::World::Balancer || !candidate.prepared.serves_many_pools() {
            return Err(fail(
                "world",
                format!(
                    "the candidate is {} built against contract {}; a rollout needs a balancer built against 0.2 or later",
                    candidate.world.describe(),
                    candidate.contract
                ),
            ));
        }
        let workers = self.shared.workers.load(Ordering::Relaxed);
        let live_instances = self.live_instances();
        if live_instances + workers > self.shared.limits.max_instances {
            return Err(fail(
                "capacity",
                format!(
                    "plugins.max_instances = {} has no room for the candidate's instance on each of {workers} workers ({live_instances} live); raise it",
                    self.shared.limits.max_instances
                ),
            ));
        }
        let users = slot.users.lock().unwrap().clone();
        let mut pools = Vec::new();
        let checked = users.iter().try_for_each(|usage| {
            self.check_use(slot, &candidate, usage)?;
            if let (Role::Balancer, Owner::Pool(pool)) = (usage.role, &usage.owner) {
                if let Some(pool) = pool.upgrade() {
                    pools.push((usage.pool_name.clone(), pool.endpoints().all.len()));
                }
            }
            Ok(())
        });
        // As for a file loaded whole: the serving version's scratch
        // instance was kept aside only for the checks.
        *slot.outgoing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        checked?;
        let rollout = Arc::new(Rollout::new(
            Arc::new(candidate),
            live,
            self.shared.limits.plugins.rollout_of(&slot.name),
            path.display().to_string(),
            pools,
        ));
        if let Some(running) = slot.running_rollout() {
            let reason = format!("replaced by candidate {}", &rollout.candidate.hash[..12]);
            self.end_rollout(slot, &running, RolloutState::Aborted, reason);
        }
        slot.start_rollout(Arc::clone(&rollout));
        tracing::info!(
            plugin = &*slot.name,
            candidate = &rollout.candidate.hash[..12],
            live = &rollout.live.hash[..12],
            phase = rollout.phase_name(),
            share_percent = rollout.share_percent(),
            "rollout started"
        );
        slot.publish(serde_json::json!({
            "plugin": &*slot.name, "event": "rollout-started",
            "candidate": rollout.candidate.hash, "live": rollout.live.hash,
            "phase": rollout.phase_name(),
        }));
        self.spawn_judge(slot, &rollout);
        Ok(CandidateOutcome::Started(rollout))
    }

    /// Judges the rollout every [`JUDGE_EVERY`] until it ends, when a tokio
    /// runtime is at hand (tests without one call `judge_rollout`).
    fn spawn_judge(&self, slot: &Arc<PluginSlot>, rollout: &Arc<Rollout>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (runtime, slot, rollout) = (self.clone(), Arc::clone(slot), Arc::clone(rollout));
        handle.spawn(async move {
            let mut every = tokio::time::interval(JUDGE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let (runtime, slot, rollout) =
                    (runtime.clone(), Arc::clone(&slot), Arc::clone(&rollout));
                // Promotion renames files and may write the last good copy.
                let running =
                    tokio::task::spawn_blocking(move || runtime.judge_rollout(&slot, &rollout))
                        .await
                        .unwrap_or(false);
                if !running {
                    break;
                }
            }
        });
    }

    /// Judges `rollout` of `slot` once: next phase, promotion, rollback, or
    /// nothing yet. Returns whether it still runs.
    pub fn judge_rollout(&self, slot: &Arc<PluginSlot>, rollout: &Arc<Rollout>) -> bool {
        if !rollout.is_running() {
            return false;
        }
        let serving = slot.current();
        if serving
            .as_ref()
            .is_none_or(|serving| serving.id != rollout.live.id)
        {
            let hash = serving.map_or_else(|| "none".into(), |v| v.hash[..12].to_string());
            self.end_rollout(
                slot,
                rollout,
                RolloutState::Aborted,
                format!("the serving version changed to {hash} during the rollout"),
            );
            return false;
        }
        match rollout.judge() {
            Judgement::Wait => true,
            Judgement::Hold => {
                tracing::info!(
                    plugin = &*slot.name,
                    "rollout: every phase passed; held for an operator (auto_promote = false)"
                );
                slot.publish(serde_json::json!({
                    "plugin": &*slot.name, "event": "rollout-held",
                    "candidate": rollout.candidate.hash,
                }));
                true
            }
            Judgement::NextPhase(phase) => {
                tracing::info!(
                    plugin = &*slot.name,
                    phase,
                    share_percent = rollout.share_percent(),
                    "rollout: phase passed, next phase"
                );
                slot.publish(serde_json::json!({
                    "plugin": &*slot.name, "event": "rollout-step",
                    "candidate": rollout.candidate.hash, "phase": phase,
                    "share_percent": rollout.share_percent(),
                }));
                true
            }
            Judgement::Promote(reason) => {
                self.end_rollout(slot, rollout, RolloutState::Promoted, reason);
                false
            }
            Judgement::RollBack(reason) => {
                self.end_rollout(slot, rollout, RolloutState::RolledBack, reason);
                false
            }
        }
    }

    /// Promotes plugin `name`'s running candidate now, whatever its
    /// comparison says.
    pub fn promote_candidate(&self, name: &str) -> Result<Arc<Rollout>, RolloutError> {
        let (slot, rollout) = self.rollout_of(name)?;
        self.end_rollout(
            &slot,
            &rollout,
            RolloutState::Promoted,
            "promoted by an operator".into(),
        );
        Ok(rollout)
    }

    /// Ends plugin `name`'s running rollout: the serving version keeps
    /// every pick.
    pub fn abort_candidate(&self, name: &str, reason: &str) -> Result<Arc<Rollout>, RolloutError> {
        let (slot, rollout) = self.rollout_of(name)?;
        self.end_rollout(&slot, &rollout, RolloutState::Aborted, reason.into());
        Ok(rollout)
    }

    fn rollout_of(&self, name: &str) -> Result<(Arc<PluginSlot>, Arc<Rollout>), RolloutError> {
        let slot = self
            .find_slot(name)
            .ok_or_else(|| RolloutError::NoSuchPlugin(name.into()))?;
        let rollout = slot.running_rollout().ok_or_else(|| {
            let last = slot
                .rollout()
                .and_then(|rollout| rollout.end())
                .map_or_else(String::new, |end| {
                    format!(" (the last one ended: {})", end.message)
                });
            RolloutError::NotRunning(name.into(), last)
        })?;
        Ok((slot, rollout))
    }

    /// The candidate file of a running rollout was deleted: the rollout is
    /// aborted.
    pub fn candidate_removed(&self, path: &Path) {
        let Some(name) = candidate_name(path) else {
            return;
        };
        if let Ok((slot, rollout)) = self.rollout_of(&name) {
            if rollout.source == path.display().to_string() {
                self.end_rollout(
                    &slot,
                    &rollout,
                    RolloutState::Aborted,
                    format!("its file {} was deleted", path.display()),
                );
            }
        }
    }

    /// Ends `rollout` in `state`: a promoted candidate serves every pick
    /// and its file becomes `NAME.wasm`; otherwise its file is moved out
    /// of the folder's watch. Told in the log, an event and an alert.
    fn end_rollout(
        &self,
        slot: &Arc<PluginSlot>,
        rollout: &Arc<Rollout>,
        state: RolloutState,
        reason: String,
    ) {
        // A pool that came during the rollout was checked against the
        // serving version only: the candidate must configure for it too.
        let (state, reason) = match state {
            RolloutState::Promoted => match self.check_candidate_uses(slot, rollout) {
                Ok(()) => (state, reason),
                Err(refused) => (RolloutState::RolledBack, refused),
            },
            _ => (state, reason),
        };
        if !rollout.finish(state, reason.clone()) {
            return;
        }
        slot.rollout_ended(state);
        let candidate = &rollout.candidate;
        let short = &candidate.hash[..12];
        let file = PathBuf::from(&rollout.source);
        let file_is_candidate = std::fs::read(&file)
            .ok()
            .is_some_and(|bytes| format!("{:x}", Sha256::digest(&bytes)) == candidate.hash);
        let (event, severity, message) = match state {
            RolloutState::Promoted => {
                slot.install(Arc::clone(candidate));
                if file_is_candidate {
                    if let Err(error) = std::fs::rename(&file, &slot.path) {
                        tracing::warn!(
                            plugin = &*slot.name,
                            "cannot rename {} to {}: {error}; a restart serves the earlier file",
                            file.display(),
                            slot.path.display()
                        );
                    } else if let Ok(bytes) = std::fs::read(&slot.path) {
                        self.keep_good(slot, &candidate.hash, &bytes);
                    }
                }
                (
                    "rollout-promoted",
                    Severity::P4,
                    format!(
                        "plugin `{}`: candidate {short} promoted: {reason}",
                        slot.name
                    ),
                )
            }
            RolloutState::RolledBack | RolloutState::Aborted => {
                if file_is_candidate {
                    self.set_aside(slot, &file, short);
                }
                let verb = if state == RolloutState::RolledBack {
                    "rolled back"
                } else {
                    "aborted"
                };
                (
                    if state == RolloutState::RolledBack {
                        "rollout-rolled-back"
                    } else {
                        "rollout-aborted"
                    },
                    if state == RolloutState::RolledBack {
                        Severity::P3
                    } else {
                        Severity::P4
                    },
                    format!(
                        "plugin `{}`: candidate {short} {verb}; {} keeps serving: {reason}",
                        slot.name,
                        &rollout.live.hash[..12]
                    ),
                )
            }
            _ => return,
        };
        if state == RolloutState::RolledBack {
            slot.warn(message.clone());
        }
        slot.publish(serde_json::json!({
            "plugin": &*slot.name, "event": event, "candidate": candidate.hash,
            "reason": reason,
        }));
        let pools: Vec<String> = slot
            .users
            .lock()
            .unwrap()
            .iter()
            .filter(|usage| usage.owner.is_live() && usage.role == Role::Balancer)
            .map(|usage| usage.pool_name.clone())
            .collect();
        match self.shared.alerts.get() {
            Some(alerts) => alerts.raise(
                severity,
                pools.first().map_or("", String::as_str),
                None,
                message,
            ),
            None => tracing::warn!("{message}"),
        }
    }

    /// Checks the candidate of `rollout` against every pool and route using
    /// the plugin now.
    fn check_candidate_uses(&self, slot: &PluginSlot, rollout: &Rollout) -> Result<(), String> {
        let users = slot.users.lock().unwrap().clone();
        for usage in &users {
            self.check_use(slot, &rollout.candidate, usage)
                .map_err(|error| format!("not promoted: {}: {}", error.stage, error.reason))?;
        }
        Ok(())
    }

    /// Moves a rolled-back candidate's file to `.rolled-back/`, where the
    /// watch does not look and a restart does not try it again.
    fn set_aside(&self, slot: &PluginSlot, file: &Path, short: &str) {
        let folder = self.shared.dir.join(".rolled-back");
        let target = folder.join(format!("{}-{short}.wasm", slot.name));
        let moved = std::fs::create_dir_all(&folder).and_then(|()| std::fs::rename(file, &target));
        if let Err(error) = moved {
            tracing::warn!(
                plugin = &*slot.name,
                "cannot move {} to {}: {error}; delete it, or a restart tries it again",
                file.display(),
                target.display(),
            );
        }
    }
}
