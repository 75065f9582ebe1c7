//! A WASM balancer as the engine sees it. A plugin built against contract
//! 0.2 has one instance per worker thread serving every pool that uses it,
//! each pool through its own `pool-balancer` resource (`pooled.rs`); one
//! built against 0.1 has one instance per pool per worker. Either way the
//! instances are thread-local (no locks on the hot path) and re-synced
//! lazily when the plugin version or the pool's endpoint set moves.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use wasmtime::{Store, Trap};

use super::bindings::balancer::BalancerPlugin;
use super::bindings::v0_1::balancer::BalancerPlugin as BalancerPlugin0_1;
use super::pool_store::PoolStore;
use super::pooled::{upgrade, PerThread, PoolError, SharedInstance, Upgrade};
use super::recording::{RecordedEndpoint, RecordedPick, RecordedRequest, Recorder};
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::retire::{Keys, Table};
use super::rollout::{Lane, PhaseStats, Rollout};
use super::state::{begin_call, serve_store, StoreState};
use super::{describe_failure, set_up, SetUpError, Shared};
use crate::engine::{
    Balancer, EndpointId, EndpointSet, Histogram, PickFault, PickRequest, PlacedBy, Placement,
    Priority, RequestHeaders, PLUGIN_CALL_BOUNDS_NS,
};

/// Keys of the pools' balancers: an index of the per-pool instance tables
/// (contract 0.1) and of the pools' resources in shared instances (0.2).
static KEYS: Keys = Keys::new();

thread_local! {
    /// Contract 0.1: this thread's instance of each pool, by `WasmBalancer::key`.
    static PER_POOL: Table<OwnInstance> = const { Table::new() };
    /// Contract 0.2: this thread's instance of each plugin, by slot index.
    static PER_PLUGIN: PerThread<BalancerPlugin> = const { PerThread::new() };
    /// This thread's instance of each plugin's candidate under rollout, by
    /// slot index.
    static CANDIDATES: PerThread<BalancerPlugin> = const { PerThread::new() };
    /// Whether `CANDIDATES` may hold an instance, so picks outside
    /// rollouts look at it only then.
    static HOLDS_CANDIDATES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a call's cost is counted.
#[derive(Clone, Copy)]
enum CostTo<'a> {
    /// The serving version: its slot's timings, and a rollout's phase.
    Live(Option<&'a Histogram<{ PLUGIN_CALL_BOUNDS_NS.len() }>>),
    /// A candidate: its rollout's phase only.
    Candidate(&'a Histogram<{ PLUGIN_CALL_BOUNDS_NS.len() }>),
}

/// A pool's balancer backed by a plugin.
pub struct WasmBalancer {
    key: usize,
    /// The store the plugin's instances share for this pool; it outlives
    /// the plugin's versions.
    pool_store: Arc<PoolStore>,
    shared: Arc<Shared>,
    slot: Arc<PluginSlot>,
    pool_name: String,
    config_json: Arc<str>,
    /// Where a sample of its picks is recorded, if the pool records.
    pub(crate) recorder: Option<Arc<Recorder>>,
}

impl std::fmt::Debug for WasmBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBalancer")
            .field("plugin", &self.slot.name)
            .field("pool", &self.pool_name)
            .finish_non_exhaustive()
    }
}

/// The eligible endpoints of `set` in a contract's `Endpoint` type (0.2 and
/// 0.1 have the same shape in different generated types).
macro_rules! wit_endpoints {
    ($types:path, $set:expr) => {{
        use $types as types;
        let set: &EndpointSet = $set;
        set.eligible
            .iter()
            .filter_map(|&id| set.get(id))
            .map(|endpoint| types::Endpoint {
                id: endpoint.id,
                address: endpoint.address.clone(),
                weight: set.weights[endpoint.id as usize],
                zone: endpoint.zone.clone(),
                labels: endpoint
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect::<Vec<types::Endpoint>>()
    }};
}

/// The request in a contract's `RequestInfo` type.
macro_rules! wit_request {
    ($types:path, $info:expr) => {{
        use $types as types;
        let info: &crate::engine::RequestInfo = $info;
        types::RequestInfo {
            priority: match info.priority {
                Priority::P0 => types::Priority::P0,
                Priority::P1 => types::Priority::P1,
                Priority::P2 => types::Priority::P2,
                Priority::P3 => types::Priority::P3,
                Priority::P4 => types::Priority::P4,
            },
            attempt: info.attempt,
            hash: info.hash,
        }
    }};
}

/// A failed `pick` call, as a fault: a timeout or a trap.
fn call_fault(store: &Store<StoreState>, error: &wasmtime::Error) -> PickFault {
    let timed_out =
        store.data().clock.interrupted || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
    let reason = describe_failure(store, error, "pick");
    if timed_out {
        PickFault::Timeout(reason)
    } else {
        PickFault::Trap(reason)
    }
}

fn set_up_fault(error: SetUpError) -> PickFault {
    match error {
        SetUpError::Capacity(reason) => PickFault::HostCapacity(reason),
        SetUpError::Plugin(reason) => PickFault::Unavailable(reason),
    }
}

/// Points a shared instance's store at the pool being served, for
/// `endpoint-load` (a pointer compare when it already is).
fn serve_set(store: &mut Store<StoreState>, set: &Arc<EndpointSet>) {
    let state = store.data_mut();
    if !state
        .endpoints
        .as_ref()
        .is_some_and(|current| Arc::ptr_eq(current, set))
    {
        state.endpoints = Some(Arc::clone(set));
    }
}

/// Pushes the eligible endpoints of `set` to a pool's resource.
fn push_endpoints(
    shared: &Shared,
    instance: &mut SharedInstance<BalancerPlugin>,
    handle: wasmtime::component::ResourceAny,
    set: &EndpointSet,
) -> Result<(), String> {
    let endpoints = wit_endpoints!(super::bindings::types, set);
    begin_call(&mut instance.store, shared.limits.setup_deadline_ticks);
    instance
        .exports
        .switchyard_plugin_balancer()
        .pool_balancer()
        .call_set_endpoints(&mut instance.store, handle, &endpoints)
        .map_err(|e| describe_failure(&instance.store, &e, "set-endpoints"))
}

/// Checks that `version` (contract 0.2) serves a pool with `config_json`
/// and the endpoints of `set`, in the slot's scratch instance: `create` and
/// `set-endpoints` on a resource that is dropped afterwards.
pub(crate) fn check_shared(
    shared: &Shared,
    slot: &PluginSlot,
    version: &PluginVersion,
    pool_name: &str,
    config_json: &str,
    set: &Arc<EndpointSet>,
) -> Result<(), SetUpError> {
    let Prepared::Balancer(pre) = &version.prepared else {
        return Err(SetUpError::Plugin(format!(
            "the file is {}, not a balancer",
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
            serve_set(&mut instance.store, set);
            let handle = instance
                .pool(shared, key, &Arc::from(config_json))
                .map_err(SetUpError::from)?
                .handle;
            push_endpoints(shared, instance, handle, set).map_err(SetUpError::Plugin)
        },
    )
}

/// A pool's own instance of a contract 0.1 plugin.
pub(crate) struct OwnInstance {
    version_id: u64,
    generation: u64,
    store: Store<StoreState>,
    plugin: BalancerPlugin0_1,
}

impl OwnInstance {
    /// Instantiates `version`, configures it with `config_json` and pushes
    /// the eligible endpoints of `set`.
    pub(crate) fn create(
        shared: &Shared,
        slot: &PluginSlot,
        version: &PluginVersion,
        config_json: &str,
        set: &Arc<EndpointSet>,
    ) -> Result<OwnInstance, SetUpError> {
        let Prepared::BalancerPerPool(pre) = &version.prepared else {
            return Err(SetUpError::Plugin(format!(
                "the file is {}, not a balancer",
                version.world.describe()
            )));
        };
        let (mut store, plugin) = set_up(
            shared,
            slot,
            |store| pre.instantiate(store),
            |plugin, store| {
                plugin
                    .switchyard_plugin_balancer()
                    .call_configure(store, config_json)
            },
        )?;
        store.data_mut().endpoints = Some(Arc::clone(set));
        let mut live = OwnInstance {
            version_id: version.id,
            generation: 0,
            store,
            plugin,
        };
        live.sync_endpoints(shared, set)
            .map_err(SetUpError::Plugin)?;
        Ok(live)
    }

    fn sync_endpoints(&mut self, shared: &Shared, set: &Arc<EndpointSet>) -> Result<(), String> {
        let endpoints = wit_endpoints!(
            super::bindings::v0_1::common::switchyard::plugin::types,
            set
        );
        self.store.data_mut().endpoints = Some(Arc::clone(set));
        begin_call(&mut self.store, shared.limits.setup_deadline_ticks);
        self.plugin
            .switchyard_plugin_balancer()
            .call_set_endpoints(&mut self.store, &endpoints)
            .map_err(|e| describe_failure(&self.store, &e, "set-endpoints"))?;
        self.generation = set.generation;
        Ok(())
    }
}

impl Drop for WasmBalancer {
    fn drop(&mut self) {
        KEYS.retire(self.key);
    }
}

impl WasmBalancer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        slot: Arc<PluginSlot>,
        pool_name: &str,
        config_json: &str,
    ) -> Self {
        let pool_store = Arc::new(PoolStore::new(shared.limits.store()));
        slot.add_store(format!("pool `{pool_name}`"), &pool_store);
        WasmBalancer {
            key: KEYS.allocate(),
            pool_store,
            shared,
            slot,
            pool_name: pool_name.to_string(),
            config_json: config_json.into(),
            recorder: None,
        }
    }

    /// The plugin's slot.
    pub fn slot(&self) -> &Arc<PluginSlot> {
        &self.slot
    }

    /// The store the plugin's instances share for this pool.
    pub fn pool_store(&self) -> &Arc<PoolStore> {
        &self.pool_store
    }

    fn fault(&self, version: &PluginVersion, fault: PickFault) -> PickFault {
        self.slot.count_fault(
            version,
            format!("pool `{}`: {fault}", self.pool_name),
            self.shared.limits.quarantine_after,
        );
        fault
    }

    /// The pick on this thread's instance of the plugin (contract 0.2),
    /// creating it, or this pool's resource in it, or re-syncing the
    /// pool's endpoints first. A trap drops the instance, with every
    /// pool's resource in it: each is made again at its pool's next pick.
    fn pick_shared(
        &self,
        entry: &mut Option<SharedInstance<BalancerPlugin>>,
        version: &PluginVersion,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
        cost: CostTo<'_>,
    ) -> Result<Option<EndpointId>, PickFault> {
        let Prepared::Balancer(pre) = &version.prepared else {
            return Err(PickFault::Unavailable("not a balancer".into()));
        };
        if entry
            .as_ref()
            .is_none_or(|instance| instance.version_id != version.id)
        {
            // The serving version carries each pool's state from the one
            // before; a candidate on trial starts afresh beside it.
            let old = match cost {
                CostTo::Live(_) => entry.take(),
                CostTo::Candidate(_) => {
                    *entry = None;
                    None
                }
            };
            let upgraded = upgrade(&self.shared, &self.slot, version.id, &KEYS, old, |store| {
                pre.instantiate(store)
            })
            .map_err(set_up_fault)?;
            *entry = Some(match upgraded {
                Upgrade::Upgraded(instance) => instance,
                Upgrade::KeptOld(old, reason) => {
                    self.slot
                        .reject_serving(version, format!("pool `{}`: {reason}", self.pool_name));
                    old
                }
            });
        }
        let instance = entry.as_mut().expect("instance created above");
        let answer = self.pick_in(instance, set, request, version, cost);
        match answer {
            // A trapped component instance cannot be entered again.
            Err(PickFault::Trap(_) | PickFault::Timeout(_)) => *entry = None,
            Ok(_) if instance.store.data_mut().served_and_due_for_recycling() => {
                // The next pick makes a fresh instance, and each pool's
                // resource in it again, before the cap would stop this one.
                self.slot
                    .count_recycle(instance.store.data().memory_bytes());
                *entry = None;
            }
            _ => {}
        }
        answer
    }

    fn pick_in(
        &self,
        instance: &mut SharedInstance<BalancerPlugin>,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
        version: &PluginVersion,
        cost: CostTo<'_>,
    ) -> Result<Option<EndpointId>, PickFault> {
        // Retired pools' resources were dropped by `PerThread::with`.
        serve_set(&mut instance.store, set);
        serve_store(&mut instance.store, &self.pool_store);
        let resource = instance
            .pool(&self.shared, self.key, &self.config_json)
            .map_err(|error| match error {
                PoolError::Refused(reason) => PickFault::Unavailable(reason),
                PoolError::Trapped(reason) => PickFault::Trap(reason),
            })?;
        let (handle, synced) = (resource.handle, resource.generation == set.generation);
        if !synced {
            push_endpoints(&self.shared, instance, handle, set).map_err(PickFault::Trap)?;
            instance.mark_synced(self.key, set.generation);
        }
        let info = wit_request!(super::bindings::types, &request.info);
        // The serving version's picks are recorded, never a candidate's.
        let recorder = match (cost, &self.recorder) {
            (CostTo::Live(_), Some(recorder)) if recorder.sample() => Some(recorder),
            _ => None,
        };
        let recorded_request = recorder.map(|_| RecordedRequest::from(&info));
        if recorder.is_some() {
            instance.store.data_mut().recording = Some(Vec::new());
        }
        lend_headers(
            &mut instance.store.data_mut().headers,
            &mut request.headers,
            version.reads_headers,
        );
        let started = begin_call(&mut instance.store, self.slot.limits.call_deadline_ticks);
        let result = instance
            .exports
            .switchyard_plugin_balancer()
            .pool_balancer()
            .call_pick(&mut instance.store, handle, info);
        let took = started.elapsed();
        match cost {
            CostTo::Live(phase) => {
                self.slot.observe_call(took);
                if let Some(phase) = phase {
                    phase.observe(took);
                }
            }
            CostTo::Candidate(phase) => phase.observe(took),
        }
        return_headers(&mut instance.store.data_mut().headers, &mut request.headers);
        let result = result.map_err(|error| call_fault(&instance.store, &error));
        if let (Some(recorder), Some(request)) = (recorder, recorded_request) {
            let cost_ns = took.as_nanos() as u64;
            let calls = instance
                .store
                .data_mut()
                .recording
                .take()
                .unwrap_or_default();
            recorder.offer(RecordedPick {
                version: recorder
                    .first_of_version(version.id)
                    .then(|| version.hash.clone()),
                worker: super::recording::worker_id(),
                generation: set.generation,
                endpoints: recorder.first_of_generation(set.generation).then(|| {
                    wit_endpoints!(super::bindings::types, set)
                        .iter()
                        .map(RecordedEndpoint::from)
                        .collect()
                }),
                request,
                calls,
                picked: result.as_ref().ok().copied().flatten(),
                fault: result.as_ref().err().map(ToString::to_string),
                cost_ns,
            });
        }
        result
    }

    /// The pick on this pool's own instance (contract 0.1), creating or
    /// re-syncing it first.
    fn pick_own(
        &self,
        slot_entry: &mut Option<OwnInstance>,
        version: &PluginVersion,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
    ) -> Result<Option<EndpointId>, PickFault> {
        if slot_entry
            .as_ref()
            .is_none_or(|live| live.version_id != version.id)
        {
            // Drop the old instance first: its slot is freed for the new one.
            *slot_entry = None;
            let live =
                OwnInstance::create(&self.shared, &self.slot, version, &self.config_json, set)
                    .map_err(set_up_fault)?;
            *slot_entry = Some(live);
        }
        let live = slot_entry.as_mut().expect("instance created above");
        if live.generation != set.generation {
            if let Err(reason) = live.sync_endpoints(&self.shared, set) {
                *slot_entry = None;
                return Err(PickFault::Trap(reason));
            }
        }
        let live = slot_entry.as_mut().expect("instance kept above");
        let info = wit_request!(
            super::bindings::v0_1::common::switchyard::plugin::types,
            &request.info
        );
        lend_headers(
            &mut live.store.data_mut().headers,
            &mut request.headers,
            version.reads_headers,
        );
        let started = begin_call(&mut live.store, self.slot.limits.call_deadline_ticks);
        let result = live
            .plugin
            .switchyard_plugin_balancer()
            .call_pick(&mut live.store, info);
        self.slot.time_call(started);
        return_headers(&mut live.store.data_mut().headers, &mut request.headers);
        match result {
            Ok(answer) => Ok(answer),
            Err(error) => {
                let fault = call_fault(&live.store, &error);
                // A trapped component instance cannot be entered again.
                *slot_entry = None;
                Err(fault)
            }
        }
    }
}

/// Puts the request's headers in the store's map for one `pick`. A map is
/// lent by swapping, without copying; raw headers are copied in only for a
/// plugin that reads them (`reads`), so for others the map stays empty and
/// nothing is allocated.
fn lend_headers(store_map: &mut HeaderMap, headers: &mut RequestHeaders<'_>, reads: bool) {
    match headers {
        RequestHeaders::Map(map) => std::mem::swap(store_map, map),
        RequestHeaders::Raw(raw) if reads => fill_from_raw(store_map, raw),
        RequestHeaders::Raw(_) => {}
    }
}

/// Undoes [`lend_headers`] after the call, whatever its outcome: a lent map
/// goes back, copied headers are cleared (the map keeps its capacity for the
/// next pick).
fn return_headers(store_map: &mut HeaderMap, headers: &mut RequestHeaders<'_>) {
    match headers {
        RequestHeaders::Map(map) => std::mem::swap(store_map, map),
        RequestHeaders::Raw(_) if !store_map.is_empty() => store_map.clear(),
        RequestHeaders::Raw(_) => {}
    }
}

/// Fills `map` with the headers of a parsed head, keeping every value of a
/// repeated name. A name or value that is not valid is skipped.
fn fill_from_raw(map: &mut HeaderMap, raw: &[httparse::Header<'_>]) {
    map.clear();
    for header in raw {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            continue;
        };
        map.append(name, value);
    }
}

impl Balancer for WasmBalancer {
    fn pick(
        &self,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
    ) -> Result<EndpointId, PickFault> {
        let guard = self.slot.current_guard();
        let Some(version) = guard.as_ref() else {
            return Err(PickFault::Unavailable("no version loaded".into()));
        };
        if version.is_quarantined() {
            return Err(PickFault::Unavailable("quarantined".into()));
        }
        match self.slot.running_rollout_guard() {
            Some(rollout) => {
                let rollout = rollout.as_ref().expect("a running rollout");
                self.pick_in_rollout(rollout, version, set, request)
            }
            None => {
                if HOLDS_CANDIDATES.get() {
                    self.drop_candidate();
                }
                self.pick_live(version, set, request, None)
            }
        }
    }
}

impl WasmBalancer {
    /// The serving version's pick, its cost also counted in a rollout's
    /// phase (`phase_cost`).
    fn pick_live(
        &self,
        version: &Arc<PluginVersion>,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
        phase_cost: Option<&Histogram<{ PLUGIN_CALL_BOUNDS_NS.len() }>>,
    ) -> Result<EndpointId, PickFault> {
        self.slot.count_call();
        let answer = if version.prepared.serves_many_pools() {
            PER_PLUGIN.with(|table| {
                table.with(self.slot.index, &self.shared, &KEYS, |entry| {
                    if entry
                        .as_ref()
                        .is_none_or(|instance| instance.version_id != version.id)
                    {
                        self.adopt_candidate(entry, version.id);
                    }
                    self.pick_shared(entry, version, set, request, CostTo::Live(phase_cost))
                })
            })
        } else {
            KEYS.with_instance(&PER_POOL, self.key, |entry| {
                self.pick_own(entry, version, set, request)
            })
        };
        match answer {
            Ok(Some(id)) if set.is_eligible(id) => {
                self.slot.count_success(version);
                Ok(id)
            }
            Ok(Some(id)) => Err(self.fault(version, PickFault::OutOfSet(id))),
            Ok(None) => Err(self.fault(version, PickFault::Declined)),
            Err(PickFault::HostCapacity(reason)) => {
                self.shared
                    .capacity_exhausted(&self.slot.name, &self.pool_name, &reason);
                Err(PickFault::HostCapacity(reason))
            }
            Err(fault) => Err(self.fault(version, fault)),
        }
    }

    /// A pick while a candidate is on trial: the live version's, the
    /// candidate's, or the live one's with the candidate's compared after
    /// it (so the request waits for no more than the candidate's call).
    fn pick_in_rollout(
        &self,
        rollout: &Rollout,
        version: &Arc<PluginVersion>,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
    ) -> Result<EndpointId, PickFault> {
        let (lane, stats) = rollout.lane();
        match lane {
            // Costs are compared on the picks both sides make.
            Lane::Live => self.pick_live(version, set, request, None),
            Lane::LiveCompared => {
                let picked = self.pick_live(version, set, request, Some(&stats.live_cost));
                if picked.is_ok() {
                    request.placement =
                        Placement::by(Arc::<PhaseStats>::clone(&stats), PlacedBy::Live);
                }
                picked
            }
            Lane::Shadow => {
                let picked = self.pick_live(version, set, request, Some(&stats.live_cost));
                let shadow = self.pick_candidate(rollout, &stats, set, request);
                if let (Ok(live), Ok(candidate)) = (&picked, shadow) {
                    rollout.compare(&stats, &self.pool_name, *live, candidate);
                }
                picked
            }
            Lane::Candidate => {
                let picked = self.pick_candidate(rollout, &stats, set, request)?;
                request.placement =
                    Placement::by(Arc::<PhaseStats>::clone(&stats), PlacedBy::Candidate);
                Ok(picked)
            }
        }
    }

    /// The candidate's pick, on this thread's instance of it. Its faults
    /// count against the rollout, never the serving version.
    fn pick_candidate(
        &self,
        rollout: &Rollout,
        stats: &PhaseStats,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
    ) -> Result<EndpointId, PickFault> {
        stats.candidate_calls.fetch_add(1, Ordering::Relaxed);
        HOLDS_CANDIDATES.set(true);
        let answer = CANDIDATES.with(|table| {
            table.with(self.slot.index, &self.shared, &KEYS, |entry| {
                self.pick_shared(
                    entry,
                    &rollout.candidate,
                    set,
                    request,
                    CostTo::Candidate(&stats.candidate_cost),
                )
            })
        });
        let fault = match answer {
            Ok(Some(id)) if set.is_eligible(id) => return Ok(id),
            Ok(Some(id)) => PickFault::OutOfSet(id),
            Ok(None) => PickFault::Declined,
            Err(PickFault::HostCapacity(reason)) => {
                self.shared
                    .capacity_exhausted(&self.slot.name, &self.pool_name, &reason);
                return Err(PickFault::HostCapacity(reason));
            }
            Err(fault) => fault,
        };
        rollout.count_fault(stats, &self.pool_name, &fault);
        Err(fault)
    }

    /// Moves this thread's instance of a promoted candidate into the live
    /// table, warm, with its pools' state.
    fn adopt_candidate(&self, entry: &mut Option<SharedInstance<BalancerPlugin>>, version_id: u64) {
        if !HOLDS_CANDIDATES.get() {
            return;
        }
        let adopted = CANDIDATES.with(|table| {
            table.with(self.slot.index, &self.shared, &KEYS, |candidate| {
                candidate.take_if(|instance| instance.version_id == version_id)
            })
        });
        if adopted.is_some() {
            *entry = adopted;
        }
    }

    /// Drops this thread's instance of the plugin's ended candidate.
    fn drop_candidate(&self) {
        let held = CANDIDATES.with(|table| {
            table.with(self.slot.index, &self.shared, &KEYS, |candidate| {
                *candidate = None;
            });
            table.any()
        });
        HOLDS_CANDIDATES.set(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> [httparse::Header<'static>; 4] {
        [
            httparse::Header {
                name: "x-tenant",
                value: b"blue",
            },
            httparse::Header {
                name: "bad name",
                value: b"dropped",
            },
            httparse::Header {
                name: "X-Tenant",
                value: b"green",
            },
            httparse::Header {
                name: "x-bad-value",
                value: b"line\nbreak",
            },
        ]
    }

    #[test]
    fn raw_headers_fill_the_map_keeping_repeats_and_skipping_invalid_ones() {
        let mut map = HeaderMap::new();
        map.insert("stale", HeaderValue::from_static("left from before"));
        fill_from_raw(&mut map, &raw());
        let tenants: Vec<_> = map.get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["blue", "green"]);
        assert_eq!(map.len(), 2, "{map:?}");
    }

    #[test]
    fn raw_headers_are_copied_only_for_a_plugin_that_reads_them() {
        let raw = raw();
        let mut store_map = HeaderMap::new();
        let mut headers = RequestHeaders::Raw(&raw);
        lend_headers(&mut store_map, &mut headers, false);
        assert!(store_map.is_empty());
        assert_eq!(store_map.capacity(), 0, "nothing allocated");
        return_headers(&mut store_map, &mut headers);

        lend_headers(&mut store_map, &mut headers, true);
        assert_eq!(store_map.len(), 2);
        let capacity = store_map.capacity();
        return_headers(&mut store_map, &mut headers);
        assert!(store_map.is_empty());
        assert_eq!(store_map.capacity(), capacity, "kept for the next pick");
    }

    #[test]
    fn a_lent_map_goes_back_to_the_request() {
        let mut request_map = HeaderMap::new();
        request_map.insert("x-tenant", HeaderValue::from_static("blue"));
        let mut store_map = HeaderMap::new();
        let mut headers = RequestHeaders::Map(&mut request_map);
        lend_headers(&mut store_map, &mut headers, false);
        assert_eq!(store_map["x-tenant"], "blue");
        return_headers(&mut store_map, &mut headers);
        assert!(store_map.is_empty());
        assert_eq!(request_map["x-tenant"], "blue");
    }
}
