//! A health-check plugin as the engine sees it. The plugin's `check` is an
//! async call in the checking task: a probe's wait yields it, and a long
//! computation yields at each epoch tick (`state::CallClock`). A plugin built
//! against contract 0.2 checks every pool that uses it from one small set
//! of instances (`HEALTH_INSTANCES` at most, each pool a `pool-check`
//! resource in them); one built against 0.1 from a set per pool. Instances
//! are reused between checks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::Store;

use super::bindings::health::HealthPlugin;
use super::bindings::types as wit;
use super::bindings::v0_1::health::HealthPlugin as HealthPlugin0_1;
use super::pooled::SharedInstance;
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::retire::Keys;
use super::state::{begin_async_call, block_on, ProbeClient, ProbeTarget, StoreState};
use super::{async_store, describe_failure, SetUpError, Shared, EPOCH_TICK};

/// Instances of a contract 0.2 health plugin at most, shared by every pool
/// using it: as many checks of it run at once; the others wait for one
/// (without holding a thread).
pub const HEALTH_INSTANCES: usize = crate::config::HEALTH_PLUGIN_INSTANCES as usize;

/// Keys of the pools' health checks (see `balancer.rs`).
static KEYS: Keys = Keys::new();

/// The shared instances of one contract 0.2 health plugin: the idle ones,
/// and the permits that bound how many exist.
pub(crate) struct SharedChecks {
    idle: Mutex<Vec<SharedInstance<HealthPlugin>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Default for SharedChecks {
    fn default() -> Self {
        SharedChecks {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(HEALTH_INSTANCES)),
        }
    }
}

impl SharedChecks {
    /// Drops the idle instances (no pool uses the plugin any more).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl std::fmt::Debug for SharedChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedChecks")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
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
    let Prepared::HealthCheck(pre) = &version.prepared else {
        return Err(SetUpError::Plugin(format!(
            "the file is {}, not a health check",
            version.world.describe()
        )));
    };
    super::pooled::check_in_scratch(
        shared,
        slot,
        version.id,
        &KEYS,
        pool_name,
        // Nothing here awaits a probe (none is allowed outside a check):
        // the calls are driven on this thread.
        |store| block_on(pre.instantiate_async(store)),
        |instance, key| {
            instance
                .pool(shared, key, &Arc::from(config_json))
                .map(drop)
                .map_err(SetUpError::from)
        },
    )
}
use crate::engine::{CheckFuture, CheckOutcome, Endpoint, Health, HealthChecker, UpstreamProtocol};

/// How long an idle probe connection is kept (longer than any sensible
/// check interval).
const PROBE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A pool's health check backed by a plugin. Cheap to share: the state is
/// behind an `Arc`, so a check's future can own it.
pub struct WasmHealthCheck {
    inner: Arc<Inner>,
}

struct Inner {
    key: usize,
    shared: Arc<Shared>,
    slot: Arc<PluginSlot>,
    pool_name: String,
    config_json: Arc<str>,
    idle: Mutex<Vec<OwnInstance>>,
    client: Arc<ProbeClient>,
}

impl std::fmt::Debug for WasmHealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHealthCheck")
            .field("plugin", &self.inner.slot.name)
            .field("pool", &self.inner.pool_name)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        KEYS.retire(self.key);
    }
}

/// A pool's own instance of a contract 0.1 health plugin.
pub(crate) struct OwnInstance {
    version_id: u64,
    store: Store<StoreState>,
    plugin: HealthPlugin0_1,
}

impl OwnInstance {
    /// Instantiates `version` and configures it with `config_json`.
    pub(crate) async fn create(
        shared: &Shared,
        slot: &PluginSlot,
        version: &PluginVersion,
        config_json: &str,
    ) -> Result<OwnInstance, SetUpError> {
        let Prepared::HealthCheckPerPool(pre) = &version.prepared else {
            return Err(SetUpError::Plugin(format!(
                "the file is {}, not a health check",
                version.world.describe()
            )));
        };
        let mut store = async_store(shared, slot)?;
        let call = begin_async_call(&mut store, shared.limits.setup_deadline_ticks);
        let plugin = call
            .run(pre.instantiate_async(&mut store))
            .await
            .map_err(|e| SetUpError::Plugin(describe_failure(&store, &e, "instantiate")))?;
        let call = begin_async_call(&mut store, shared.limits.setup_deadline_ticks);
        call.run(
            plugin
                .switchyard_plugin_health_check()
                .call_configure(&mut store, config_json),
        )
        .await
        .map_err(|e| SetUpError::Plugin(describe_failure(&store, &e, "configure")))?
        .map_err(|message| {
            SetUpError::Plugin(format!("configure refused the config: {message}"))
        })?;
        Ok(OwnInstance {
            version_id: version.id,
            store,
            plugin,
        })
    }
}

impl WasmHealthCheck {
    pub(crate) fn new(
        shared: Arc<Shared>,
        slot: Arc<PluginSlot>,
        pool_name: &str,
        config_json: &str,
        protocol: &UpstreamProtocol,
    ) -> Self {
        let client = Arc::new(if protocol.is_plain_http1() {
            ProbeClient::Pooled(Box::new(pooled_client()))
        } else {
            ProbeClient::Dialed(protocol.clone())
        });
        WasmHealthCheck {
            inner: Arc::new(Inner {
                key: KEYS.allocate(),
                shared,
                slot,
                pool_name: pool_name.to_string(),
                config_json: config_json.into(),
                idle: Mutex::new(Vec::new()),
                client,
            }),
        }
    }
}

/// An endpoint in a contract's `Endpoint` type.
macro_rules! wit_target {
    ($types:path, $endpoint:expr) => {{
        use $types as types;
        let endpoint: &Endpoint = $endpoint;
        types::Endpoint {
            id: endpoint.id,
            address: endpoint.address.clone(),
            weight: endpoint.weight,
            zone: endpoint.zone.clone(),
            labels: endpoint
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }};
}

/// The probe client of a plain HTTP/1.1 pool.
fn pooled_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
> {
    {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        // One kept-alive connection per endpoint, as Envoy's HTTP checker
        // reuses by default: a fresh TCP handshake per check cost more than
        // the check. A dead endpoint still fails: the kept connection errors
        // and the retry on a new one is refused.
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(PROBE_IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector)
    }
}

impl Inner {
    /// Runs one check.
    async fn check(&self, endpoint: &Endpoint, deadline: Instant) -> CheckOutcome {
        let Some(version) = self.slot.current() else {
            return CheckOutcome::Fault("no version loaded".into());
        };
        if version.is_quarantined() {
            return CheckOutcome::Fault("quarantined".into());
        }
        self.slot.count_call();
        let probe = ProbeTarget {
            address: endpoint.address.clone(),
            deadline,
            client: Arc::clone(&self.client),
        };
        // The budget is the time the call runs, so time spent waiting on
        // probes is free; the check's own timeout bounds the wall time.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(EPOCH_TICK);
        let ticks = (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
        let verdict = if version.prepared.serves_many_pools() {
            let target = wit_target!(wit, endpoint);
            self.check_shared(&version, probe, &target, ticks).await
        } else {
            let target = wit_target!(
                super::bindings::v0_1::common::switchyard::plugin::types,
                endpoint
            );
            self.check_own(&version, probe, &target, ticks).await
        };
        match verdict {
            Ok((health, reason)) => {
                self.slot.count_success(&version);
                CheckOutcome::Verdict(health, reason)
            }
            Err(SetUpError::Capacity(reason)) => {
                self.shared
                    .capacity_exhausted(&self.slot.name, &self.pool_name, &reason);
                CheckOutcome::Fault(reason)
            }
            Err(SetUpError::Plugin(reason)) => self.fault(&version, reason),
        }
    }

    /// A check in one of the plugin's shared instances (contract 0.2).
    async fn check_shared(
        &self,
        version: &PluginVersion,
        probe: ProbeTarget,
        target: &wit::Endpoint,
        ticks: u64,
    ) -> Result<(Health, String), SetUpError> {
        let Prepared::HealthCheck(pre) = &version.prepared else {
            return Err(SetUpError::Plugin("not a health check".into()));
        };
        let setup = self.shared.limits.setup_deadline_ticks;
        let checks = &self.slot.checks;
        let reused = {
            let mut idle = checks.idle.lock().unwrap();
            idle.retain(|instance| instance.version_id == version.id);
            idle.pop()
        };
        let mut instance = match reused {
            Some(instance) => instance,
            None => {
                let mut store = async_store(&self.shared, &self.slot)?;
                let call = begin_async_call(&mut store, setup);
                let exports = call
                    .run(pre.instantiate_async(&mut store))
                    .await
                    .map_err(|e| SetUpError::Plugin(describe_failure(&store, &e, "instantiate")))?;
                SharedInstance::new_async(version.id, store, exports, &KEYS)
            }
        };
        instance
            .sweep_async(&self.shared, &KEYS)
            .await
            .map_err(SetUpError::Plugin)?;
        let handle = match instance.resource(self.key) {
            Some(handle) => handle,
            None => {
                let call = begin_async_call(&mut instance.store, setup);
                let created = call
                    .run(
                        instance
                            .exports
                            .switchyard_plugin_health_check()
                            .pool_check()
                            .call_create(&mut instance.store, &self.config_json),
                    )
                    .await;
                match created {
                    Ok(Ok(handle)) => {
                        instance.insert_resource(self.key, handle, &self.config_json);
                        handle
                    }
                    Ok(Err(message)) => {
                        checks.idle.lock().unwrap().push(instance);
                        return Err(SetUpError::Plugin(format!(
                            "configure refused the config: {message}"
                        )));
                    }
                    // A trapped instance cannot be entered again: it is dropped.
                    Err(error) => {
                        return Err(SetUpError::Plugin(describe_failure(
                            &instance.store,
                            &error,
                            "create",
                        )))
                    }
                }
            }
        };
        instance.store.data_mut().probe = Some(probe);
        let call = begin_async_call(&mut instance.store, ticks);
        let result = call
            .run(
                instance
                    .exports
                    .switchyard_plugin_health_check()
                    .pool_check()
                    .call_check(&mut instance.store, handle, target),
            )
            .await;
        self.slot.time_call(call.started);
        instance.store.data_mut().probe = None;
        match result {
            Ok(verdict) => {
                if instance.store.data_mut().served_and_due_for_recycling() {
                    // Dropped: the next check makes a fresh one.
                    self.slot
                        .count_recycle(instance.store.data().memory_bytes());
                } else {
                    checks.idle.lock().unwrap().push(instance);
                }
                Ok((health_of(verdict.health), verdict.reason))
            }
            Err(error) => Err(SetUpError::Plugin(describe_failure(
                &instance.store,
                &error,
                "check",
            ))),
        }
    }

    /// A check in one of this pool's own instances (contract 0.1).
    async fn check_own(
        &self,
        version: &PluginVersion,
        probe: ProbeTarget,
        target: &super::bindings::v0_1::common::switchyard::plugin::types::Endpoint,
        ticks: u64,
    ) -> Result<(Health, String), SetUpError> {
        use super::bindings::v0_1::common::switchyard::plugin::types as wit_0_1;
        let reused = {
            let mut idle = self.idle.lock().unwrap();
            idle.retain(|instance| instance.version_id == version.id);
            idle.pop()
        };
        let mut instance = match reused {
            Some(instance) => instance,
            None => {
                OwnInstance::create(&self.shared, &self.slot, version, &self.config_json).await?
            }
        };
        instance.store.data_mut().probe = Some(probe);
        let call = begin_async_call(&mut instance.store, ticks);
        let result = call
            .run(
                instance
                    .plugin
                    .switchyard_plugin_health_check()
                    .call_check(&mut instance.store, target),
            )
            .await;
        self.slot.time_call(call.started);
        instance.store.data_mut().probe = None;
        match result {
            Ok(verdict) => {
                self.idle.lock().unwrap().push(instance);
                let health = match verdict.health {
                    wit_0_1::Health::Healthy => Health::Healthy,
                    wit_0_1::Health::Degraded => Health::Degraded,
                    wit_0_1::Health::Unhealthy => Health::Unhealthy,
                    wit_0_1::Health::Unknown => Health::Unknown,
                };
                Ok((health, verdict.reason))
            }
            // A trapped instance cannot be entered again: it is dropped.
            Err(error) => Err(SetUpError::Plugin(describe_failure(
                &instance.store,
                &error,
                "check",
            ))),
        }
    }

    fn fault(&self, version: &PluginVersion, reason: String) -> CheckOutcome {
        self.slot.count_fault(
            version,
            format!("pool `{}`: {reason}", self.pool_name),
            self.shared.limits.quarantine_after,
        );
        CheckOutcome::Fault(reason)
    }
}

fn health_of(health: wit::Health) -> Health {
    match health {
        wit::Health::Healthy => Health::Healthy,
        wit::Health::Degraded => Health::Degraded,
        wit::Health::Unhealthy => Health::Unhealthy,
        wit::Health::Unknown => Health::Unknown,
    }
}

impl HealthChecker for WasmHealthCheck {
    fn check(&self, endpoint: Arc<Endpoint>, deadline: Instant) -> CheckFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(Detached::new(Box::pin(async move {
            // A shared instance per running check, at most `HEALTH_INSTANCES`:
            // the check waits here for one.
            let _permit = match inner.slot.current() {
                Some(version) if version.prepared.serves_many_pools() => {
                    let permits = Arc::clone(&inner.slot.checks.permits);
                    match tokio::time::timeout_at(deadline.into(), permits.acquire_owned()).await {
                        Ok(Ok(permit)) => Some(permit),
                        _ => {
                            return CheckOutcome::Fault(
                                "no instance of the plugin was free before the check's deadline"
                                    .into(),
                            )
                        }
                    }
                }
                _ => None,
            };
            inner.check(&endpoint, deadline).await
        })))
    }
}

/// A check that, once started, finishes even if its caller stops waiting
/// (past the deadline): the rest becomes a task of its own, so a looping
/// plugin still runs to its cut-off and its fault is counted. A task per
/// check only when that happens, not for every check.
struct Detached {
    check: Option<CheckFuture>,
    started: bool,
}

impl Detached {
    fn new(check: CheckFuture) -> Self {
        Detached {
            check: Some(check),
            started: false,
        }
    }
}

impl std::future::Future for Detached {
    type Output = CheckOutcome;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<CheckOutcome> {
        self.started = true;
        let Some(check) = self.check.as_mut() else {
            return std::task::Poll::Ready(CheckOutcome::Fault("polled after its end".into()));
        };
        let outcome = std::task::ready!(check.as_mut().poll(context));
        self.check = None;
        std::task::Poll::Ready(outcome)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let (true, Some(check)) = (self.started, self.check.take()) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(check);
            }
        }
    }
}
