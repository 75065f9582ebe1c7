//! Replaying recorded picks through a plugin version: each recorded pick is
//! made again on an instance of its own worker (a worker's instance keeps
//! state from pick to pick, as it did in service), and every host call the
//! plugin makes is answered from the recording.
//!
//! A call the recording has next, with the same arguments, gets its
//! recorded answer. A version that asks something else (another endpoint's
//! load, one more random number) has diverged from the recording; it is
//! answered as well as the recording allows: the last load recorded for
//! that endpoint (an idle, healthy one if none was), a random number from a
//! generator seeded by the recording, the last time seen, no header.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceAny;

use super::bindings::balancer::BalancerPlugin;
use super::bindings::types::{self as wit, Health, Load};
use super::pooled::SharedInstance;
use super::recording::{HostCall, RecordedEndpoint, RecordedLoad, RecordedPick};
use super::registry::{PluginSlot, PluginVersion, Prepared};
use super::retire::Keys;
use super::state::begin_call;
use super::{describe_failure, instantiate, PluginRuntime};

/// Keys of replayed pools; one per worker instance.
static KEYS: Keys = Keys::new();

/// The answers to one replayed pick's host calls.
#[derive(Debug)]
pub struct ReplayFeed {
    /// The calls recorded for this pick, in order.
    calls: VecDeque<HostCall>,
    /// The last load recorded of each endpoint so far.
    loads: HashMap<u32, RecordedLoad>,
    /// The endpoints of the set being served.
    ids: HashSet<u32>,
    /// The headers this pick's recording answered, by name.
    headers: Vec<(String, Option<String>)>,
    now: u64,
    seed: u64,
    /// The pool's store as the recording has shown it so far, which also
    /// answers a version that diverged: entries by (endpoint, name).
    store: HashMap<(Option<u32>, String), i64>,
    /// Set when the version asked what the recording does not have next.
    diverged: bool,
}

impl ReplayFeed {
    fn new(seed: u64) -> Self {
        ReplayFeed {
            calls: VecDeque::new(),
            loads: HashMap::new(),
            ids: HashSet::new(),
            headers: Vec::new(),
            now: 0,
            seed,
            store: HashMap::new(),
            diverged: false,
        }
    }

    /// Readies the answers of `pick`.
    fn begin(&mut self, pick: &RecordedPick) {
        self.calls = pick.calls.iter().cloned().collect();
        self.headers.clear();
        self.diverged = false;
        for call in &pick.calls {
            match call {
                HostCall::EndpointLoad {
                    id,
                    load: Some(load),
                } => {
                    self.loads.insert(*id, *load);
                }
                HostCall::EndpointLoadPair { ids, loads } => {
                    for (id, load) in [(ids.0, loads.0), (ids.1, loads.1)] {
                        if let Some(load) = load {
                            self.loads.insert(id, load);
                        }
                    }
                }
                HostCall::RequestHeader { name, value } => {
                    self.headers.push((name.clone(), value.clone()));
                }
                HostCall::NowNs(_)
                | HostCall::RandomU64(_)
                | HostCall::EndpointLoad { .. }
                | HostCall::StoreGet { .. }
                | HostCall::StoreAdd { .. }
                | HostCall::StoreCompareAndSwap { .. } => {}
            }
        }
    }

    /// The next recorded call, if it is the one asked (`matches`).
    fn next(&mut self, matches: impl Fn(&HostCall) -> bool) -> Option<HostCall> {
        if self.calls.front().is_some_and(matches) {
            return self.calls.pop_front();
        }
        self.diverged = true;
        None
    }

    pub(crate) fn now_ns(&mut self) -> u64 {
        if let Some(HostCall::NowNs(now)) = self.next(|c| matches!(c, HostCall::NowNs(_))) {
            self.now = now;
        }
        self.now
    }

    pub(crate) fn random_u64(&mut self) -> u64 {
        match self.next(|c| matches!(c, HostCall::RandomU64(_))) {
            Some(HostCall::RandomU64(drawn)) => drawn,
            // splitmix64, seeded by the recording: the same divergence
            // draws the same numbers on every replay.
            _ => {
                self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                crate::engine::mix64(self.seed)
            }
        }
    }

    pub(crate) fn endpoint_load(&mut self, id: u32) -> Option<Load> {
        match self.next(|c| matches!(c, HostCall::EndpointLoad { id: asked, .. } if *asked == id)) {
            Some(HostCall::EndpointLoad { load, .. }) => load.map(Load::from),
            _ => self.known_load(id),
        }
    }

    pub(crate) fn endpoint_load_pair(
        &mut self,
        first: u32,
        second: u32,
    ) -> (Option<Load>, Option<Load>) {
        let asked = (first, second);
        match self.next(|c| matches!(c, HostCall::EndpointLoadPair { ids, .. } if *ids == asked)) {
            Some(HostCall::EndpointLoadPair { loads, .. }) => {
                (loads.0.map(Load::from), loads.1.map(Load::from))
            }
            _ => (self.known_load(first), self.known_load(second)),
        }
    }

    pub(crate) fn request_header(&mut self, name: &str) -> Option<String> {
        match self
            .next(|c| matches!(c, HostCall::RequestHeader { name: asked, .. } if asked == name))
        {
            Some(HostCall::RequestHeader { value, .. }) => value,
            _ => self
                .headers
                .iter()
                .find(|(asked, _)| asked.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.clone()),
        }
    }

    pub(crate) fn store_get(&mut self, endpoint: Option<u32>, name: &str) -> i64 {
        let asked = |c: &HostCall| matches!(c, HostCall::StoreGet { endpoint: e, name: n, .. } if *e == endpoint && n == name);
        let key = (endpoint, name.to_string());
        match self.next(asked) {
            Some(HostCall::StoreGet { value, .. }) => {
                self.store.insert(key, value);
                value
            }
            _ => self.store.get(&key).copied().unwrap_or(0),
        }
    }

    /// The answer to `add`: the recorded one, or (diverged) the store as
    /// the recording left it, with `delta` added.
    pub(crate) fn store_add(
        &mut self,
        endpoint: Option<u32>,
        name: &str,
        delta: i64,
    ) -> Result<i64, String> {
        let asked = |c: &HostCall| {
            matches!(c, HostCall::StoreAdd { endpoint: e, name: n, delta: d, .. }
                if *e == endpoint && n == name && *d == delta)
        };
        let key = (endpoint, name.to_string());
        let answer = match self.next(asked) {
            Some(HostCall::StoreAdd { answer, .. }) => answer,
            _ => Ok(self
                .store
                .get(&key)
                .copied()
                .unwrap_or(0)
                .wrapping_add(delta)),
        };
        if let Ok(value) = answer {
            self.store.insert(key, value);
        }
        answer
    }

    /// The answer to `compare-and-swap`, as `store_add` answers `add`.
    pub(crate) fn store_compare_and_swap(
        &mut self,
        endpoint: Option<u32>,
        name: &str,
        expected: i64,
        new: i64,
    ) -> Result<i64, String> {
        let asked = |c: &HostCall| {
            matches!(c, HostCall::StoreCompareAndSwap { endpoint: e, name: n, expected: x, new: v, .. }
                if *e == endpoint && n == name && *x == expected && *v == new)
        };
        let key = (endpoint, name.to_string());
        let answer = match self.next(asked) {
            Some(HostCall::StoreCompareAndSwap { answer, .. }) => answer,
            _ => Ok(self.store.get(&key).copied().unwrap_or(0)),
        };
        if let Ok(held) = answer {
            self.store
                .insert(key, if held == expected { new } else { held });
        }
        answer
    }

    /// A diverged version's answer for endpoint `id`: its last recorded
    /// load, an idle healthy one if it was never recorded, none if it is
    /// not in the set.
    fn known_load(&self, id: u32) -> Option<Load> {
        if !self.ids.contains(&id) {
            return None;
        }
        Some(self.loads.get(&id).map_or(
            Load {
                in_flight: 0,
                capacity: 0,
                ewma_latency_us: 0,
                success_permille: 1000,
                health: Health::Healthy,
            },
            |load| Load::from(*load),
        ))
    }
}

/// What a replayed pick came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The endpoint picked; none if it declined or faulted.
    pub picked: Option<u32>,
    /// Why the call failed (trap, timeout), or why its answer is not
    /// usable (out of the set).
    pub fault: Option<String>,
    /// What the call cost, in ns.
    pub cost_ns: u64,
    /// Whether the version asked the host what the recording did not have.
    pub diverged: bool,
}

/// One worker's instance, with the replayed pool's resource in it.
struct WorkerInstance {
    instance: SharedInstance<BalancerPlugin>,
    handle: ResourceAny,
    generation: Option<u64>,
}

/// Makes recorded picks again through one loaded balancer version.
pub struct Replayer {
    runtime: PluginRuntime,
    slot: Arc<PluginSlot>,
    version: Arc<PluginVersion>,
    config: String,
    workers: HashMap<u32, WorkerInstance>,
    feed: Option<Box<ReplayFeed>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("plugin", &self.slot.name)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// A replayer of plugin `name`'s serving version, which must be a
    /// balancer built against contract 0.2.
    pub fn replayer(&self, name: &str) -> Result<Replayer, String> {
        let slot = self
            .find_slot(name)
            .ok_or_else(|| format!("plugin `{name}` is not loaded"))?;
        let version = slot
            .current()
            .ok_or_else(|| format!("plugin `{name}` is not loaded"))?;
        if !matches!(version.prepared, Prepared::Balancer(_)) {
            return Err(format!(
                "replay makes a balancer's picks again; the file is {} built against contract {}",
                version.world.describe(),
                version.contract
            ));
        }
        Ok(Replayer {
            runtime: self.clone(),
            slot,
            version,
            config: "{}".into(),
            workers: HashMap::new(),
            feed: None,
        })
    }
}

impl Replayer {
    /// Starts a recorded session: fresh instances, made with `config`;
    /// divergent random numbers drawn from `seed`.
    pub fn start_session(&mut self, config: &str, seed: u64) {
        self.workers.clear();
        self.config = config.to_string();
        self.feed = Some(Box::new(ReplayFeed::new(seed)));
    }

    /// Makes `pick` again on its worker's instance, the eligible endpoints
    /// being `set` (of `pick.generation`).
    pub fn pick(&mut self, pick: &RecordedPick, set: &[RecordedEndpoint]) -> Replayed {
        let fault = |reason: String| Replayed {
            picked: None,
            fault: Some(reason),
            cost_ns: 0,
            diverged: false,
        };
        let shared = &self.runtime.shared;
        let Prepared::Balancer(pre) = &self.version.prepared else {
            return fault("not a balancer".into());
        };
        let worker = match self.workers.entry(pick.worker) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let made = instantiate(shared, &self.slot, |store| pre.instantiate(store))
                    .map_err(String::from)
                    .and_then(|(mut store, exports)| {
                        begin_call(&mut store, shared.limits.setup_deadline_ticks);
                        let created = exports
                            .switchyard_plugin_balancer()
                            .pool_balancer()
                            .call_create(&mut store, &self.config);
                        match created {
                            Ok(Ok(handle)) => Ok(WorkerInstance {
                                instance: SharedInstance::new(
                                    self.version.id,
                                    store,
                                    exports,
                                    &KEYS,
                                ),
                                handle,
                                generation: None,
                            }),
                            Ok(Err(message)) => {
                                Err(format!("configure refused the config: {message}"))
                            }
                            Err(error) => Err(describe_failure(&store, &error, "create")),
                        }
                    });
                match made {
                    Ok(worker) => entry.insert(worker),
                    Err(reason) => return fault(reason),
                }
            }
        };
        let store = &mut worker.instance.store;
        let exports = worker.instance.exports.switchyard_plugin_balancer();
        if worker.generation != Some(pick.generation) {
            let endpoints: Vec<wit::Endpoint> = set.iter().map(Into::into).collect();
            begin_call(store, shared.limits.setup_deadline_ticks);
            if let Err(error) =
                exports
                    .pool_balancer()
                    .call_set_endpoints(&mut *store, worker.handle, &endpoints)
            {
                let reason = describe_failure(store, &error, "set-endpoints");
                self.workers.remove(&pick.worker);
                return fault(reason);
            }
            worker.generation = Some(pick.generation);
        }
        let mut feed = self
            .feed
            .take()
            .unwrap_or_else(|| Box::new(ReplayFeed::new(0)));
        feed.ids = set.iter().map(|e| e.id).collect();
        feed.begin(pick);
        store.data_mut().replay = Some(feed);
        begin_call(store, self.slot.limits.call_deadline_ticks);
        let started = Instant::now();
        let answer =
            exports
                .pool_balancer()
                .call_pick(&mut *store, worker.handle, pick.request.into());
        let cost_ns = started.elapsed().as_nanos() as u64;
        let feed = store.data_mut().replay.take();
        let diverged = feed
            .as_ref()
            .is_some_and(|f| f.diverged || !f.calls.is_empty());
        self.feed = feed;
        match answer {
            Ok(Some(id)) if set.iter().any(|e| e.id == id) => Replayed {
                picked: Some(id),
                fault: None,
                cost_ns,
                diverged,
            },
            Ok(Some(id)) => Replayed {
                picked: Some(id),
                fault: Some(format!(
                    "picked endpoint id {id}, which is not in the eligible set"
                )),
                cost_ns,
                diverged,
            },
            Ok(None) => Replayed {
                picked: None,
                fault: None,
                cost_ns,
                diverged,
            },
            Err(error) => {
                let reason = describe_failure(store, &error, "pick");
                // A trapped instance cannot be entered again.
                self.workers.remove(&pick.worker);
                Replayed {
                    picked: None,
                    fault: Some(reason),
                    cost_ns,
                    diverged,
                }
            }
        }
    }
}
