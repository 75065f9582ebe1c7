//! A recovery plugin as the engine sees it: one instance per pool per worker
//! thread, like balancers; a fault is counted and answered by the native
//! `RetryOnce`.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::bindings::recovery::exports::switchyard::plugin::recovery as wit;
use super::bindings::recovery::RecoveryPlugin;
use super::bindings::recovery_0_1_0::exports::switchyard::plugin::recovery as wit_0_1_0;
use super::bindings::recovery_0_1_0::RecoveryPlugin as RecoveryPlugin0_1_0;
use super::bindings::types;
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::retire::{Keys, Table};
use super::state::{begin_call, StoreState};
use super::{describe_failure, set_up, SetUpError, Shared};
use crate::engine::{Decision, Failure, FailureKind, Priority, RecoveryPolicy, Retry, RetryOnce};

/// Keys of the per-thread instance tables.
static KEYS: Keys = Keys::new();

thread_local! {
    /// This thread's instances, by `WasmRecovery::key`.
    static INSTANCES: Table<RecoveryInstance> = const { Table::new() };
}

/// One configured instance of a recovery plugin.
pub(crate) struct RecoveryInstance {
    version_id: u64,
    store: Store<StoreState>,
    plugin: Exports,
}

/// A recovery plugin's exports, by the contract it was built against.
enum Exports {
    Current(RecoveryPlugin),
    /// Contract 0.1.0: no `grpc-status` failure kind.
    V0_1_0(RecoveryPlugin0_1_0),
}

impl RecoveryInstance {
    /// Instantiates `version` and configures it with `config_json`.
    pub(crate) fn create(
        shared: &Shared,
        slot: &PluginSlot,
        version: &PluginVersion,
        config_json: &str,
    ) -> Result<RecoveryInstance, SetUpError> {
        // The same steps for either contract's bindings.
        macro_rules! instantiate {
            ($pre:expr) => {
                set_up(
                    shared,
                    slot,
                    |store| $pre.instantiate(store),
                    |plugin, store| {
                        plugin
                            .switchyard_plugin_recovery()
                            .call_configure(store, config_json)
                    },
                )?
            };
        }
        let (store, plugin) = match &version.prepared {
            Prepared::Recovery(pre) => {
                let (store, plugin) = instantiate!(pre);
                (store, Exports::Current(plugin))
            }
            Prepared::Recovery0_1_0(pre) => {
                let (store, plugin) = instantiate!(pre);
                (store, Exports::V0_1_0(plugin))
            }
            _ => {
                return Err(SetUpError::Plugin(format!(
                    "the file is {}, not a recovery policy",
                    version.world.describe()
                )))
            }
        };
        Ok(RecoveryInstance {
            version_id: version.id,
            store,
            plugin,
        })
    }
}

/// A pool's recovery policy backed by a plugin.
pub struct WasmRecovery {
    key: usize,
    shared: Arc<Shared>,
    slot: Arc<PluginSlot>,
    pool_name: String,
    config_json: Arc<str>,
}

impl std::fmt::Debug for WasmRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRecovery")
            .field("plugin", &self.slot.name)
            .field("pool", &self.pool_name)
            .finish_non_exhaustive()
    }
}

impl Drop for WasmRecovery {
    fn drop(&mut self) {
        KEYS.retire(self.key);
    }
}

impl WasmRecovery {
    pub(crate) fn new(
        shared: Arc<Shared>,
        slot: Arc<PluginSlot>,
        pool_name: &str,
        config_json: &str,
    ) -> Self {
        WasmRecovery {
            key: KEYS.allocate(),
            shared,
            slot,
            pool_name: pool_name.to_string(),
            config_json: config_json.into(),
        }
    }

    fn decide(
        &self,
        entry: &mut Option<RecoveryInstance>,
        version: &PluginVersion,
        failure: &Failure,
    ) -> Result<Decision, SetUpError> {
        if entry
            .as_ref()
            .is_none_or(|live| live.version_id != version.id)
        {
            *entry = None;
            *entry = Some(RecoveryInstance::create(
                &self.shared,
                &self.slot,
                version,
                &self.config_json,
            )?);
        }
        let live = entry.as_mut().expect("created above");
        let request = types::RequestInfo {
            priority: match failure.request.priority {
                Priority::P0 => types::Priority::P0,
                Priority::P1 => types::Priority::P1,
                Priority::P2 => types::Priority::P2,
                Priority::P3 => types::Priority::P3,
                Priority::P4 => types::Priority::P4,
            },
            attempt: failure.request.attempt,
            hash: failure.request.hash,
        };
        let elapsed_ms = failure.elapsed.as_millis().min(u128::from(u32::MAX)) as u32;
        begin_call(&mut live.store, self.shared.limits.call_deadline_ticks);
        // The same call in either contract's types; only what a gRPC
        // status becomes differs.
        macro_rules! ask {
            ($wit:ident, $plugin:expr, $grpc:expr) => {{
                let kind = match failure.kind {
                    FailureKind::ConnectRefused => $wit::FailureKind::ConnectRefused,
                    FailureKind::ConnectTimeout => $wit::FailureKind::ConnectTimeout,
                    FailureKind::Reset => $wit::FailureKind::Reset,
                    FailureKind::ResponseTimeout => $wit::FailureKind::ResponseTimeout,
                    FailureKind::Status(status) => $wit::FailureKind::Status(status),
                    FailureKind::GrpcStatus(code) => ($grpc)(code),
                };
                let wit_failure = $wit::Failure {
                    endpoint: failure.endpoint,
                    kind,
                    request,
                    method: failure.method.clone(),
                    replayable: failure.replayable,
                    elapsed_ms,
                };
                $plugin
                    .switchyard_plugin_recovery()
                    .call_on_failure(&mut live.store, &wit_failure)
                    .map(|decision| from_wit!($wit, decision))
            }};
        }
        let decision = match &live.plugin {
            Exports::Current(plugin) => ask!(wit, plugin, wit::FailureKind::GrpcStatus),
            // A gRPC status reaches it as the HTTP status paired with it.
            Exports::V0_1_0(plugin) => ask!(wit_0_1_0, plugin, |code| {
                let paired = FailureKind::GrpcStatus(code).http_status().unwrap_or(500);
                wit_0_1_0::FailureKind::Status(paired)
            }),
        };
        match decision {
            Ok(decision) => Ok(decision),
            Err(error) => {
                let reason = describe_failure(&live.store, &error, "on-failure");
                *entry = None;
                Err(SetUpError::Plugin(reason))
            }
        }
    }
}

/// The engine's decision from a plugin's, in either contract's types (the
/// same shape).
macro_rules! from_wit {
    ($wit:ident, $decision:expr) => {{
        let retry = |retry: $wit::Retry| Retry {
            delay: Duration::from_millis(u64::from(retry.delay_ms)),
            same_endpoint: retry.same_endpoint,
        };
        match $decision {
            $wit::Decision::Retry(r) => Decision::Retry(retry(r)),
            $wit::Decision::Eject(ejection) => Decision::Eject {
                duration: Duration::from_millis(u64::from(ejection.duration_ms)),
                retry: ejection.retry.map(retry),
            },
            $wit::Decision::GiveUp(status) => Decision::GiveUp(status),
        }
    }};
}
use from_wit;

impl RecoveryPolicy for WasmRecovery {
    fn on_failure(&self, failure: &Failure) -> Decision {
        let Some(version) = self.slot.current() else {
            return RetryOnce.on_failure(failure);
        };
        if version.is_quarantined() {
            return RetryOnce.on_failure(failure);
        }
        self.slot.count_call();
        let decided = KEYS.with_instance(&INSTANCES, self.key, |entry| {
            self.decide(entry, &version, failure)
        });
        match decided {
            Ok(decision) => {
                self.slot.count_success(&version);
                decision
            }
            Err(SetUpError::Capacity(reason)) => {
                self.shared
                    .capacity_exhausted(&self.slot.name, &self.pool_name, &reason);
                RetryOnce.on_failure(failure)
            }
            Err(SetUpError::Plugin(reason)) => {
                self.slot.count_fault(
                    &version,
                    format!("pool `{}`: {reason}", self.pool_name),
                    self.shared.limits.quarantine_after,
                );
                RetryOnce.on_failure(failure)
            }
        }
    }
}
