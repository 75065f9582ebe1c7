//! A WASM balancer as the engine sees it: one instance per pool per worker
//! thread, kept in a thread-local table (no locks on the hot path), re-synced
//! lazily when the plugin version or the pool's endpoint set moves.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use wasmtime::{Store, Trap};

use super::bindings::balancer::BalancerPlugin;
use super::bindings::types as wit;
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::retire::{Keys, Table};
use super::state::{begin_call, StoreState};
use super::{describe_failure, set_up, SetUpError, Shared};
use crate::engine::{
    Balancer, EndpointId, EndpointSet, PickFault, PickRequest, Priority, RequestHeaders,
};

/// Keys of the per-thread instance tables.
static KEYS: Keys = Keys::new();

thread_local! {
    /// This thread's instances, by `WasmBalancer::key`.
    static INSTANCES: Table<LiveInstance> = const { Table::new() };
}

/// A pool's balancer backed by a plugin.
pub struct WasmBalancer {
    key: usize,
    shared: Arc<Shared>,
    slot: Arc<PluginSlot>,
    pool_name: String,
    config_json: Arc<str>,
}

impl std::fmt::Debug for WasmBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBalancer")
            .field("plugin", &self.slot.name)
            .field("pool", &self.pool_name)
            .finish_non_exhaustive()
    }
}

/// One instantiated version, configured for one pool.
pub(crate) struct LiveInstance {
    version_id: u64,
    generation: u64,
    store: Store<StoreState>,
    plugin: BalancerPlugin,
}

impl LiveInstance {
    /// Instantiates `version`, configures it with `config_json` and pushes
    /// the eligible endpoints of `set`.
    pub(crate) fn create(
        shared: &Shared,
        slot: &PluginSlot,
        version: &PluginVersion,
        config_json: &str,
        set: &Arc<EndpointSet>,
    ) -> Result<LiveInstance, SetUpError> {
        let Prepared::Balancer(pre) = &version.prepared else {
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
        let mut live = LiveInstance {
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
        let endpoints: Vec<wit::Endpoint> = set
            .eligible
            .iter()
            .filter_map(|&id| set.get(id))
            .map(|endpoint| wit::Endpoint {
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
            .collect();
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
        WasmBalancer {
            key: KEYS.allocate(),
            shared,
            slot,
            pool_name: pool_name.to_string(),
            config_json: config_json.into(),
        }
    }

    /// The plugin's slot.
    pub fn slot(&self) -> &Arc<PluginSlot> {
        &self.slot
    }

    fn fault(&self, version: &PluginVersion, fault: PickFault) -> PickFault {
        self.slot.count_fault(
            version,
            format!("pool `{}`: {fault}", self.pool_name),
            self.shared.limits.quarantine_after,
        );
        fault
    }

    /// The pick on this thread's instance, creating or re-syncing it first.
    fn pick_on(
        &self,
        slot_entry: &mut Option<LiveInstance>,
        version: &PluginVersion,
        set: &Arc<EndpointSet>,
        request: &mut PickRequest<'_>,
    ) -> Result<Option<EndpointId>, PickFault> {
        if slot_entry
            .as_ref()
            .is_none_or(|live| live.version_id != version.id)
        {
            // Drop the old instance first: its pooling slot is freed for the new one.
            *slot_entry = None;
            let live =
                LiveInstance::create(&self.shared, &self.slot, version, &self.config_json, set)
                    .map_err(|error| match error {
                        SetUpError::Capacity(reason) => PickFault::HostCapacity(reason),
                        SetUpError::Plugin(reason) => PickFault::Unavailable(reason),
                    })?;
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
        let info = wit::RequestInfo {
            priority: match request.info.priority {
                Priority::P0 => wit::Priority::P0,
                Priority::P1 => wit::Priority::P1,
                Priority::P2 => wit::Priority::P2,
                Priority::P3 => wit::Priority::P3,
                Priority::P4 => wit::Priority::P4,
            },
            attempt: request.info.attempt,
            hash: request.info.hash,
        };
        lend_headers(
            &mut live.store.data_mut().headers,
            &mut request.headers,
            version.reads_headers,
        );
        begin_call(&mut live.store, self.shared.limits.call_deadline_ticks);
        let result = live
            .plugin
            .switchyard_plugin_balancer()
            .call_pick(&mut live.store, info);
        return_headers(&mut live.store.data_mut().headers, &mut request.headers);
        match result {
            Ok(answer) => Ok(answer),
            Err(error) => {
                let timed_out = live.store.data().clock.interrupted
                    || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
                let reason = describe_failure(&live.store, &error, "pick");
                // A trapped component instance cannot be entered again.
                *slot_entry = None;
                Err(if timed_out {
                    PickFault::Timeout(reason)
                } else {
                    PickFault::Trap(reason)
                })
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
        self.slot.count_call();
        let answer = KEYS.with_instance(&INSTANCES, self.key, |entry| {
            self.pick_on(entry, version, set, request)
        });
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
