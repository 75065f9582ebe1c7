//! A recovery plugin as the engine sees it: like balancers, one instance
//! per worker thread serving every pool (and every route with a policy of
//! its own) through a `pool-recovery` resource each (contract 0.2), or one
//! per pool or route per worker (0.1); a fault is counted and answered by
//! the native `RetryOnce`.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::bindings::recovery::exports::switchyard::plugin::recovery as wit;
use super::bindings::recovery::RecoveryPlugin;
use super::bindings::v0_1::recovery::exports::switchyard::plugin::recovery as wit_0_1;
use super::bindings::v0_1::recovery::RecoveryPlugin as RecoveryPlugin0_1;
use super::bindings::v0_1::recovery_0_1_0::exports::switchyard::plugin::recovery as wit_0_1_0;
use super::bindings::v0_1::recovery_0_1_0::RecoveryPlugin as RecoveryPlugin0_1_0;
use super::pool_store::PoolStore;
use super::pooled::{upgrade, PerThread, SharedInstance, Upgrade};
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::retire::{Keys, Table};
use super::state::{begin_call, serve_store, StoreState};
use super::{describe_failure, set_up, SetUpError, Shared};
use crate::engine::{
    Decision, EndpointSet, Failure, FailureKind, Priority, RecoveryPolicy, Retry, RetryOnce,
};

/// Keys of the pools' recovery policies (see `balancer.rs`).
static KEYS: Keys = Keys::new();

thread_local! {
    /// Contract 0.1: this thread's instance of each pool, by `WasmRecovery::key`.
    static PER_POOL: Table<OwnInstance> = const { Table::new() };
    /// Contract 0.2: this thread's instance of each plugin, by slot index.
    static PER_PLUGIN: PerThread<RecoveryPlugin> = const { PerThread::new() };
}

/// A pool's own instance of a contract 0.1 recovery plugin.
pub(crate) struct OwnInstance {
    version_id: u64,
    store: Store<StoreState>,
    plugin: OwnExports,
}

/// A 0.1 recovery plugin's exports, by the contract it was built against.
enum OwnExports {
    V0_1_1(RecoveryPlugin0_1),
    /// Contract 0.1.0: no `grpc-status` failure kind.
    V0_1_0(RecoveryPlugin0_1_0),
}

impl OwnInstance {
    /// Instantiates `version` and configures it with `config_json`.
    pub(crate) fn create(
        shared: &Shared,
        slot: &PluginSlot,
        version: &PluginVersion,
        config_json: &str,
    ) -> Result<OwnInstance, SetUpError> {
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
            Prepared::RecoveryPerPool(pre) => {
                let (store, plugin) = instantiate!(pre);
                (store, OwnExports::V0_1_1(plugin))
            }
            Prepared::RecoveryPerPool0_1_0(pre) => {
                let (store, plugin) = instantiate!(pre);
                (store, OwnExports::V0_1_0(plugin))
            }
            _ => {
                return Err(SetUpError::Plugin(format!(
                    "the file is {}, not a recovery policy",
                    version.world.describe()
                )))
            }
        };
        Ok(OwnInstance {
            version_id: version.id,
            store,
            plugin,
        })
    }
}

/// Checks that `version` (contract 0.2) accepts a pool's `config_json`, in
/// the slot's scratch instance.
pub(crate) fn check_shared(
    shared: &Shared,
    slot: &PluginSlot,
    version: &PluginVersion,
    pool_name: &str,
    config_json: &str,
) -> Result<(), SetUpError> {
    let Prepared::Recovery(pre) = &version.prepared else {
        return Err(SetUpError::Plugin(format!(
            "the file is {}, not a recovery policy",
            version.world.describe()
        )));
    };
    super::pooled::check_in_scratch(
        shared,
        slot,
        version.id,
        &KEYS,
        pool_name,
        |store| pre.instantiate(store),
        |instance, key| {
            instance
                .pool(shared, key, &Arc::from(config_json))
                .map(drop)
                .map_err(SetUpError::from)
        },
    )
}

/// A pool's (or a route's own) recovery policy backed by a plugin.
pub struct WasmRecovery {
    key: usize,
    /// The store the plugin's instances share for this pool (or route); it
    /// outlives the plugin's versions.
    pool_store: Arc<PoolStore>,
    shared: Arc<Shared>,
    slot: Arc<PluginSlot>,
    /// The pool's name or the route's key (`routes[3]`).
    pool_name: String,
    /// How messages name the user: "pool `web`", "route `routes[3]`".
    user: String,
    config_json: Arc<str>,
}

impl std::fmt::Debug for WasmRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRecovery")
            .field("plugin", &self.slot.name)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Drop for WasmRecovery {
    fn drop(&mut self) {
        KEYS.retire(self.key);
    }
}

/// The failure in a contract's types; `$grpc` says what a gRPC status
/// becomes in it.
macro_rules! wit_failure {
    ($wit:ident, $types:path, $failure:expr, $grpc:expr) => {{
        use $types as types;
        let failure: &Failure = $failure;
        let kind = match failure.kind {
            FailureKind::ConnectRefused => $wit::FailureKind::ConnectRefused,
            FailureKind::ConnectTimeout => $wit::FailureKind::ConnectTimeout,
            FailureKind::Reset => $wit::FailureKind::Reset,
            FailureKind::ResponseTimeout => $wit::FailureKind::ResponseTimeout,
            FailureKind::Status(status) => $wit::FailureKind::Status(status),
            FailureKind::GrpcStatus(code) => ($grpc)(code),
        };
        $wit::Failure {
            endpoint: failure.endpoint,
            kind,
            request: types::RequestInfo {
                priority: match failure.request.priority {
                    Priority::P0 => types::Priority::P0,
                    Priority::P1 => types::Priority::P1,
                    Priority::P2 => types::Priority::P2,
                    Priority::P3 => types::Priority::P3,
                    Priority::P4 => types::Priority::P4,
                },
                attempt: failure.request.attempt,
                hash: failure.request.hash,
            },
            method: failure.method.clone(),
            replayable: failure.replayable,
            elapsed_ms: failure.elapsed.as_millis().min(u128::from(u32::MAX)) as u32,
        }
    }};
}

/// A gRPC status as a contract 0.1.0 policy sees it: the HTTP status the
/// gRPC spec pairs with it.
fn grpc_as_http(code: u32) -> wit_0_1_0::FailureKind {
    let paired = FailureKind::GrpcStatus(code).http_status().unwrap_or(500);
    wit_0_1_0::FailureKind::Status(paired)
}

impl WasmRecovery {
    pub(crate) fn new(
        shared: Arc<Shared>,
        slot: Arc<PluginSlot>,
        pool_name: &str,
        user: String,
        config_json: &str,
    ) -> Self {
        let pool_store = Arc::new(PoolStore::new(shared.limits.store()));
        slot.add_store(user.clone(), &pool_store);
        WasmRecovery {
            key: KEYS.allocate(),
            pool_store,
            shared,
            slot,
            pool_name: pool_name.to_string(),
            user,
            config_json: config_json.into(),
        }
    }

    /// The store the plugin's instances share for this pool (or route).
    pub fn pool_store(&self) -> &Arc<PoolStore> {
        &self.pool_store
    }

    /// The decision of this thread's instance of the plugin (contract 0.2).
    /// A trap drops the instance, with every pool's resource in it.
    fn decide_shared(
        &self,
        entry: &mut Option<SharedInstance<RecoveryPlugin>>,
        version: &PluginVersion,
        failure: &Failure,
        endpoints: &Arc<EndpointSet>,
    ) -> Result<Decision, SetUpError> {
        let Prepared::Recovery(pre) = &version.prepared else {
            return Err(SetUpError::Plugin("not a recovery policy".into()));
        };
        if entry
            .as_ref()
            .is_none_or(|instance| instance.version_id != version.id)
        {
            // Each pool's state is carried into the new version's instance.
            let upgraded = upgrade(
                &self.shared,
                &self.slot,
                version.id,
                &KEYS,
                entry.take(),
                |store| pre.instantiate(store),
            )?;
            *entry = Some(match upgraded {
                Upgrade::Upgraded(instance) => instance,
                Upgrade::KeptOld(old, reason) => {
                    self.slot
                        .reject_serving(version, format!("{}: {reason}", self.user));
                    old
                }
            });
        }
        let instance = entry.as_mut().expect("instance created above");
        serve_store(&mut instance.store, &self.pool_store);
        let decided = (|| {
            let handle = match instance.pool(&self.shared, self.key, &self.config_json) {
                Ok(resource) => resource.handle,
                Err(super::pooled::PoolError::Refused(reason)) => return Err(Refused(reason)),
                Err(super::pooled::PoolError::Trapped(reason)) => return Err(Trapped(reason)),
            };
            let wit_failure = wit_failure!(
                wit,
                super::bindings::types,
                failure,
                wit::FailureKind::GrpcStatus
            );
            instance.store.data_mut().endpoints = Some(Arc::clone(endpoints));
            let started = begin_call(&mut instance.store, self.slot.limits.call_deadline_ticks);
            let decision = instance
                .exports
                .switchyard_plugin_recovery()
                .pool_recovery()
                .call_on_failure(&mut instance.store, handle, &wit_failure);
            self.slot.time_call(started);
            instance.store.data_mut().endpoints = None;
            decision
                .map(|decision| from_wit!(wit, decision))
                .map_err(|e| Trapped(describe_failure(&instance.store, &e, "on-failure")))
        })();
        match decided {
            Ok(decision) => {
                if instance.store.data_mut().served_and_due_for_recycling() {
                    self.slot
                        .count_recycle(instance.store.data().memory_bytes());
                    *entry = None;
                }
                Ok(decision)
            }
            Err(Refused(reason)) => Err(SetUpError::Plugin(reason)),
            Err(Trapped(reason)) => {
                // A trapped component instance cannot be entered again.
                *entry = None;
                Err(SetUpError::Plugin(reason))
            }
        }
    }

    /// The decision of this pool's own instance (contract 0.1).
    fn decide_own(
        &self,
        entry: &mut Option<OwnInstance>,
        version: &PluginVersion,
        failure: &Failure,
        endpoints: &Arc<EndpointSet>,
    ) -> Result<Decision, SetUpError> {
        if entry
            .as_ref()
            .is_none_or(|live| live.version_id != version.id)
        {
            *entry = None;
            *entry = Some(OwnInstance::create(
                &self.shared,
                &self.slot,
                version,
                &self.config_json,
            )?);
        }
        let live = entry.as_mut().expect("created above");
        live.store.data_mut().endpoints = Some(Arc::clone(endpoints));
        let started = begin_call(&mut live.store, self.slot.limits.call_deadline_ticks);
        let decision = match &live.plugin {
            OwnExports::V0_1_1(plugin) => {
                let wit_failure = wit_failure!(
                    wit_0_1,
                    super::bindings::v0_1::common::switchyard::plugin::types,
                    failure,
                    wit_0_1::FailureKind::GrpcStatus
                );
                plugin
                    .switchyard_plugin_recovery()
                    .call_on_failure(&mut live.store, &wit_failure)
                    .map(|decision| from_wit!(wit_0_1, decision))
            }
            // A gRPC status reaches it as the HTTP status paired with it.
            OwnExports::V0_1_0(plugin) => {
                let wit_failure = wit_failure!(
                    wit_0_1_0,
                    super::bindings::v0_1::common::switchyard::plugin::types,
                    failure,
                    grpc_as_http
                );
                plugin
                    .switchyard_plugin_recovery()
                    .call_on_failure(&mut live.store, &wit_failure)
                    .map(|decision| from_wit!(wit_0_1_0, decision))
            }
        };
        self.slot.time_call(started);
        live.store.data_mut().endpoints = None;
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

/// Why a call into a shared instance failed: the plugin refused the pool's
/// config (the instance is fine) or trapped (it is not).
enum CallError {
    Refused(String),
    Trapped(String),
}
use CallError::{Refused, Trapped};

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
    fn on_failure(&self, failure: &Failure, endpoints: &Arc<EndpointSet>) -> Decision {
        let Some(version) = self.slot.current() else {
            return RetryOnce.on_failure(failure, endpoints);
        };
        if version.is_quarantined() {
            return RetryOnce.on_failure(failure, endpoints);
        }
        self.slot.count_call();
        let decided = if version.prepared.serves_many_pools() {
            PER_PLUGIN.with(|table| {
                table.with(self.slot.index, &self.shared, &KEYS, |entry| {
                    self.decide_shared(entry, &version, failure, endpoints)
                })
            })
        } else {
            KEYS.with_instance(&PER_POOL, self.key, |entry| {
                self.decide_own(entry, &version, failure, endpoints)
            })
        };
        match decided {
            Ok(decision) => {
                self.slot.count_success(&version);
                decision
            }
            Err(SetUpError::Capacity(reason)) => {
                self.shared
                    .capacity_exhausted(&self.slot.name, &self.pool_name, &reason);
                RetryOnce.on_failure(failure, endpoints)
            }
            Err(SetUpError::Plugin(reason)) => {
                self.slot.count_fault(
                    &version,
                    format!("{}: {reason}", self.user),
                    self.shared.limits.quarantine_after,
                );
                RetryOnce.on_failure(failure, endpoints)
            }
        }
    }
}
