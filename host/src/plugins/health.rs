//! A health-check plugin as the engine sees it. The plugin's `check` runs
//! on a blocking thread (its probes wait on the network), from a small set
//! of instances per pool that are reused between checks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::Store;

use super::bindings::health::HealthPlugin;
use super::bindings::types as wit;
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::state::{begin_call, ProbeClient, ProbeTarget, StoreState};
use super::{describe_failure, set_up, Shared, EPOCH_TICK};
use crate::engine::{CheckFuture, CheckOutcome, Endpoint, Health, HealthChecker, UpstreamProtocol};

/// How long an idle probe connection is kept (longer than any sensible
/// check interval).
const PROBE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A pool's health check backed by a plugin. Cheap to share: the state is
/// behind an `Arc`, so a check can carry it onto a blocking thread.
pub struct WasmHealthCheck {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    slot: Arc<PluginSlot>,
    pool_name: String,
    config_json: Arc<str>,
    idle: Mutex<Vec<HealthInstance>>,
    client: ProbeClient,
}

impl std::fmt::Debug for WasmHealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHealthCheck")
            .field("plugin", &self.inner.slot.name)
            .field("pool", &self.inner.pool_name)
            .finish_non_exhaustive()
    }
}

/// One configured instance of a health plugin.
pub(crate) struct HealthInstance {
    version_id: u64,
    store: Store<StoreState>,
    plugin: HealthPlugin,
}

impl HealthInstance {
    /// Instantiates `version` and configures it with `config_json`.
    pub(crate) fn create(
        shared: &Shared,
        slot: &PluginSlot,
        version: &PluginVersion,
        config_json: &str,
    ) -> Result<HealthInstance, String> {
        let Prepared::HealthCheck(pre) = &version.prepared else {
            return Err(format!(
                "the file is {}, not a health check",
                version.world.describe()
            ));
        };
        let (store, plugin) = set_up(
            shared,
            slot,
            |store| pre.instantiate(store),
            |plugin, store| {
                plugin
                    .switchyard_plugin_health_check()
                    .call_configure(store, config_json)
            },
        )?;
        Ok(HealthInstance {
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
        let client = if protocol.is_plain_http1() {
            ProbeClient::Pooled(Box::new(pooled_client()))
        } else {
            ProbeClient::Dialed(protocol.clone())
        };
        WasmHealthCheck {
            inner: Arc::new(Inner {
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
    /// Runs one check on this (blocking) thread.
    fn check_blocking(
        &self,
        endpoint: &Endpoint,
        deadline: Instant,
        runtime: tokio::runtime::Handle,
    ) -> CheckOutcome {
        let Some(version) = self.slot.current() else {
            return CheckOutcome::Fault("no version loaded".into());
        };
        if version.is_quarantined() {
            return CheckOutcome::Fault("quarantined".into());
        }
        self.slot.count_call();
        let reused = {
            let mut idle = self.idle.lock().unwrap();
            idle.retain(|instance| instance.version_id == version.id);
            idle.pop()
        };
        let mut instance = match reused {
            Some(instance) => instance,
            None => {
                match HealthInstance::create(&self.shared, &self.slot, &version, &self.config_json)
                {
                    Ok(instance) => instance,
                    Err(reason) => return self.fault(&version, reason),
                }
            }
        };
        instance.store.data_mut().probe = Some(ProbeTarget {
            address: endpoint.address.clone(),
            deadline,
            runtime,
            client: self.client.clone(),
        });
        let target = wit::Endpoint {
            id: endpoint.id,
            address: endpoint.address.clone(),
            weight: endpoint.weight,
            zone: endpoint.zone.clone(),
            labels: endpoint
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        // The budget is CPU time, so time spent waiting on probes is free;
        // the check's own timeout bounds the wall time.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(EPOCH_TICK);
        let ticks = (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
        begin_call(&mut instance.store, ticks);
        let result = instance
            .plugin
            .switchyard_plugin_health_check()
            .call_check(&mut instance.store, &target);
        instance.store.data_mut().probe = None;
        match result {
            Ok(verdict) => {
                self.slot.count_success(&version);
                self.idle.lock().unwrap().push(instance);
                let health = match verdict.health {
                    wit::Health::Healthy => Health::Healthy,
                    wit::Health::Degraded => Health::Degraded,
                    wit::Health::Unhealthy => Health::Unhealthy,
                    wit::Health::Unknown => Health::Unknown,
                };
                CheckOutcome::Verdict(health, verdict.reason)
            }
            Err(error) => {
                // A trapped instance cannot be entered again: it is dropped.
                let reason = describe_failure(&instance.store, &error, "check");
                self.fault(&version, reason)
            }
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

impl HealthChecker for WasmHealthCheck {
    fn check(&self, endpoint: Arc<Endpoint>, deadline: Instant) -> CheckFuture {
        let inner = Arc::clone(&self.inner);
        let runtime = tokio::runtime::Handle::current();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.check_blocking(&endpoint, deadline, runtime))
                .await
                .unwrap_or_else(|error| CheckOutcome::Fault(format!("check task failed: {error}")))
        })
    }
}
