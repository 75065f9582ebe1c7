//! Loaded plugins: one slot per plugin name, holding the version that serves
//! and everything the API shows about it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::bindings;
use super::log::{LogCounts, LogLimits, PluginLog};
use super::state::StoreState;
use crate::engine::{Histogram, HistogramSnapshot, Pool, Recovery, PLUGIN_CALL_BOUNDS_NS};

/// Which contract a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Exports `switchyard:plugin/balancer`.
    Balancer,
    /// Exports `switchyard:plugin/health-check`.
    HealthCheck,
    /// Exports `switchyard:plugin/recovery`.
    Recovery,
}

impl World {
    /// How the API and messages name the world.
    pub fn describe(self) -> &'static str {
        match self {
            World::Balancer => "a balancer",
            World::HealthCheck => "a health check",
            World::Recovery => "a recovery policy",
        }
    }
}

/// What a pool uses a plugin for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The pool's balancer.
    Balancer,
    /// The pool's active health check.
    HealthCheck,
    /// The pool's recovery policy.
    Recovery,
}

impl Role {
    /// The world a plugin in this role must implement.
    pub fn world(self) -> World {
        match self {
            Role::Balancer => World::Balancer,
            Role::HealthCheck => World::HealthCheck,
            Role::Recovery => World::Recovery,
        }
    }

    /// How messages name the role.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Balancer => "balancer",
            Role::HealthCheck => "health check",
            Role::Recovery => "recovery policy",
        }
    }
}

/// The ready-to-instantiate form of a version, by world and contract.
pub enum Prepared {
    /// A balancer: one instance serves many pools.
    Balancer(bindings::balancer::BalancerPluginPre<StoreState>),
    /// A health check: one instance serves many pools.
    HealthCheck(bindings::health::HealthPluginPre<StoreState>),
    /// A recovery policy: one instance serves many pools.
    Recovery(bindings::recovery::RecoveryPluginPre<StoreState>),
    /// A balancer built against contract 0.1: one instance per pool.
    BalancerPerPool(bindings::v0_1::balancer::BalancerPluginPre<StoreState>),
    /// A health check built against contract 0.1: one instance per pool.
    HealthCheckPerPool(bindings::v0_1::health::HealthPluginPre<StoreState>),
    /// A recovery policy built against contract 0.1.1: one instance per pool.
    RecoveryPerPool(bindings::v0_1::recovery::RecoveryPluginPre<StoreState>),
    /// A recovery policy built against contract 0.1.0 (no `grpc-status`).
    RecoveryPerPool0_1_0(bindings::v0_1::recovery_0_1_0::RecoveryPluginPre<StoreState>),
}

impl Prepared {
    /// Whether one instance serves many pools (contract 0.2), rather than
    /// one per pool (0.1).
    pub fn serves_many_pools(&self) -> bool {
        matches!(
            self,
            Prepared::Balancer(_) | Prepared::HealthCheck(_) | Prepared::Recovery(_)
        )
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Prepared::Balancer(_) => "Prepared::Balancer",
            Prepared::HealthCheck(_) => "Prepared::HealthCheck",
            Prepared::Recovery(_) => "Prepared::Recovery",
            Prepared::BalancerPerPool(_) => "Prepared::BalancerPerPool",
            Prepared::HealthCheckPerPool(_) => "Prepared::HealthCheckPerPool",
            Prepared::RecoveryPerPool(_) => "Prepared::RecoveryPerPool",
            Prepared::RecoveryPerPool0_1_0(_) => "Prepared::RecoveryPerPool0_1_0",
        })
    }
}

/// One loaded file's compiled form. Instances re-sync when the slot's version
/// id changes.
#[derive(Debug)]
pub struct PluginVersion {
    /// Unique among all versions this process loaded.
    pub id: u64,
    /// SHA-256 of the file, hex.
    pub hash: String,
    /// Its contract.
    pub world: World,
    /// The contract version its export names (`0.2.1`, `0.1.1`, ...).
    pub contract: String,
    /// What the component imports, by name (`switchyard:plugin/host@0.2.1`,
    /// `wasi:io/streams@0.2.0`, ...), in the file's order.
    pub imports: Vec<String>,
    /// When it started serving.
    pub loaded_at: SystemTime,
    /// Whether the compiled form came from the on-disk cache.
    pub from_cache: bool,
    /// Time to compile (or load from cache) and validate, in µs.
    pub load_micros: u64,
    /// The instantiable form.
    pub prepared: Prepared,
    /// Whether the component imports `request-header`. A pick given the raw
    /// head builds a header map for it only when this is set.
    pub reads_headers: bool,
    consecutive_faults: AtomicU32,
    quarantined: AtomicBool,
    faulted: AtomicBool,
    /// Set when a worker found it could not carry a pool's state into it
    /// after it was swapped in (`PluginSlot::reject_serving`).
    refused_state: AtomicBool,
}

impl PluginVersion {
    pub(crate) fn new(
        id: u64,
        hash: String,
        world: World,
        prepared: Prepared,
        reads_headers: bool,
        from_cache: bool,
        load_micros: u64,
    ) -> Self {
        PluginVersion {
            id,
            hash,
            world,
            contract: String::new(),
            imports: Vec::new(),
            loaded_at: SystemTime::now(),
            from_cache,
            load_micros,
            prepared,
            reads_headers,
            consecutive_faults: AtomicU32::new(0),
            quarantined: AtomicBool::new(false),
            faulted: AtomicBool::new(false),
            refused_state: AtomicBool::new(false),
        }
    }

    /// Whether this version is set aside for faulting too often.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }
}

/// A timestamped message.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// When, in ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// What.
    pub message: String,
}

impl Note {
    pub(crate) fn now(message: String) -> Self {
        let at_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Note {
            at_unix_ms,
            message,
        }
    }
}

/// What the slot remembers besides the serving version.
#[derive(Debug, Default)]
pub struct SlotHistory {
    /// Whether the file is in the folder now.
    pub file_present: bool,
    /// Versions swapped in after the first.
    pub reloads: u64,
    /// Files refused.
    pub rejections: u64,
    /// Why the last file was refused.
    pub last_rejected: Option<Note>,
    /// The content hash of the last refused file, so the same bytes seen
    /// again (a second event for one write) are not judged twice.
    pub last_rejected_hash: Option<String>,
    /// The last fault.
    pub last_fault: Option<Note>,
    /// The most recent of the two, or a warning about the file.
    pub last_error: Option<Note>,
    /// The content hash of the last version kept as the last good file.
    pub last_good_hash: Option<String>,
    /// Set while the version serving is the last good file, kept from an
    /// earlier run, because the file in the folder was rejected at start:
    /// why, and which version.
    pub fallback: Option<Note>,
}

/// A user of the slot's plugin — a pool, or a route with a recovery
/// policy of its own — so a new version can be checked against its config
/// (and a pool's endpoints) before it serves.
#[derive(Debug, Clone)]
pub struct PoolUse {
    /// Who uses it; the use lasts as long as that does.
    pub owner: Owner,
    /// The user's name: the pool's, or the route's key (`routes[3]`),
    /// which no pool name can be. The key of its resource in the slot's
    /// scratch instance.
    pub pool_name: String,
    /// What the pool uses the plugin for.
    pub role: Role,
    /// The pool's plugin config as JSON.
    pub config_json: Arc<str>,
}

/// What a plugin's use follows: a pool, or the recovery policy a route's
/// entry in the route table holds. A pool dropped by a reload, or a route
/// table replaced, ends the use once the last request holding it is done.
#[derive(Debug, Clone)]
pub enum Owner {
    /// A pool's balancer, health check or recovery policy.
    Pool(Weak<Pool>),
    /// A route's own recovery policy.
    Route(Weak<Recovery>),
}

impl Owner {
    /// Whether the user still exists.
    pub fn is_live(&self) -> bool {
        match self {
            Owner::Pool(pool) => pool.strong_count() > 0,
            Owner::Route(recovery) => recovery.strong_count() > 0,
        }
    }

    /// The pool, while it exists; `None` for a route.
    pub fn pool(&self) -> Option<Arc<Pool>> {
        match self {
            Owner::Pool(pool) => pool.upgrade(),
            Owner::Route(_) => None,
        }
    }
}

impl PoolUse {
    /// How messages name the user: "pool `web`", "route `routes[3]`".
    pub fn describe(&self) -> String {
        match self.owner {
            Owner::Pool(_) => format!("pool `{}`", self.pool_name),
            Owner::Route(_) => format!("route `{}`", self.pool_name),
        }
    }
}

/// How a rollout can end, as metrics name it.
const ROLLOUT_ENDS: [(super::rollout::RolloutState, &str); 3] = [
    (super::rollout::RolloutState::Promoted, "promoted"),
    (super::rollout::RolloutState::RolledBack, "rolled-back"),
    (super::rollout::RolloutState::Aborted, "aborted"),
];

/// Everything known about one plugin name.
#[derive(Debug)]
pub struct PluginSlot {
    /// The file stem.
    pub name: Arc<str>,
    /// Unique among this process's slots: the index of its per-thread
    /// instances.
    pub(crate) index: usize,
    /// The instance that checks a new version or a new pool against this
    /// plugin (contract 0.2), kept between checks.
    pub(crate) scratch: Mutex<Option<super::pooled::Scratch>>,
    /// While a new version is checked: the serving version's scratch
    /// instance, whose pools' state the new version must be able to restore.
    pub(crate) outgoing: Mutex<Option<super::pooled::Scratch>>,
    /// The shared instances of a health plugin (contract 0.2).
    pub(crate) checks: super::health::SharedChecks,
    /// The file.
    pub path: PathBuf,
    current: ArcSwapOption<PluginVersion>,
    /// The version `current` replaced, reinstated if a worker finds the new
    /// one cannot take a pool's state.
    previous: ArcSwapOption<PluginVersion>,
    calls: AtomicU64,
    faults: AtomicU64,
    /// The largest linear memory any instance of this plugin reached, in
    /// bytes (all of an instance's memories together).
    pub(crate) memory_high: Arc<AtomicU64>,
    /// How long each call into the plugin's export took.
    call_time: Histogram<{ PLUGIN_CALL_BOUNDS_NS.len() }>,
    /// Its log lines, bounded; every instance writes through it.
    pub(crate) log: Arc<PluginLog>,
    /// The sandbox its instances are held to.
    pub limits: super::PluginLimits,
    /// Instances replaced by fresh ones for the memory they had reached.
    recycles: AtomicU64,
    /// History for the API, off the hot path.
    pub history: Mutex<SlotHistory>,
    /// Pools and routes using this plugin.
    pub users: Mutex<Vec<PoolUse>>,
    /// The store of each pool (or route) served by the plugin, by how
    /// messages name the user; a store is gone once its pool is.
    stores: Mutex<Vec<(String, Weak<super::pool_store::PoolStore>)>>,
    /// Where loads, rejections, faults and quarantines are published.
    events: Arc<crate::engine::Events>,
    /// The last rollout of a candidate version, running or ended.
    rollout: ArcSwapOption<super::rollout::Rollout>,
    /// Whether `rollout` is running: the one load a pick pays outside
    /// rollouts.
    rolling: AtomicBool,
    /// Held while a candidate file is judged, so the watch and an upload
    /// of the same file judge it once.
    pub(crate) candidate_loading: Mutex<()>,
    /// Rollouts ended: promoted, rolled back, aborted.
    rollouts_ended: [AtomicU64; 3],
}

impl PluginSlot {
    pub(crate) fn new(
        name: &str,
        path: PathBuf,
        events: Arc<crate::engine::Events>,
        log: LogLimits,
        limits: super::PluginLimits,
    ) -> Self {
        static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);
        let name: Arc<str> = name.into();
        PluginSlot {
            log: Arc::new(PluginLog::new(Arc::clone(&name), log)),
            limits,
            recycles: AtomicU64::new(0),
            call_time: Histogram::new(&PLUGIN_CALL_BOUNDS_NS),
            events,
            name,
            index: NEXT_INDEX.fetch_add(1, Ordering::Relaxed),
            scratch: Mutex::new(None),
            outgoing: Mutex::new(None),
            checks: super::health::SharedChecks::default(),
            path,
            current: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            calls: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            memory_high: Arc::default(),
            history: Mutex::new(SlotHistory::default()),
            users: Mutex::new(Vec::new()),
            rollout: ArcSwapOption::empty(),
            rolling: AtomicBool::new(false),
            candidate_loading: Mutex::new(()),
            rollouts_ended: Default::default(),
            stores: Mutex::new(Vec::new()),
        }
    }

    /// The running rollout, if any.
    pub(crate) fn running_rollout(&self) -> Option<Arc<super::rollout::Rollout>> {
        if !self.rolling.load(Ordering::Relaxed) {
            return None;
        }
        self.rollout
            .load_full()
            .filter(|rollout| rollout.is_running())
    }

    /// The running rollout, if any, without touching its reference count
    /// (the request path's form).
    pub(crate) fn running_rollout_guard(
        &self,
    ) -> Option<arc_swap::Guard<Option<Arc<super::rollout::Rollout>>>> {
        if !self.rolling.load(Ordering::Relaxed) {
            return None;
        }
        let guard = self.rollout.load();
        guard
            .as_ref()
            .is_some_and(|rollout| rollout.is_running())
            .then_some(guard)
    }

    /// The last rollout, running or ended.
    pub fn rollout(&self) -> Option<Arc<super::rollout::Rollout>> {
        self.rollout.load_full()
    }

    /// Starts `rollout`; the one it replaces must have ended.
    pub(crate) fn start_rollout(&self, rollout: Arc<super::rollout::Rollout>) {
        self.rollout.store(Some(rollout));
        self.rolling.store(true, Ordering::Relaxed);
    }

    /// Marks the rollout ended (it was `finish`ed) in `state`.
    pub(crate) fn rollout_ended(&self, state: super::rollout::RolloutState) {
        self.rolling.store(false, Ordering::Relaxed);
        if let Some(index) = ROLLOUT_ENDS.iter().position(|(end, _)| *end == state) {
            self.rollouts_ended[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Rollouts ended so far, by how (`promoted`, `rolled-back`,
    /// `aborted`).
    pub fn rollouts_ended(&self) -> [(&'static str, u64); 3] {
        std::array::from_fn(|index| {
            (
                ROLLOUT_ENDS[index].1,
                self.rollouts_ended[index].load(Ordering::Relaxed),
            )
        })
    }

    /// Publishes a plugin event about it.
    pub(crate) fn publish(&self, data: serde_json::Value) {
        self.events.publish("plugin", data);
    }

    /// An instance of the plugin was replaced by a fresh one for the linear
    /// memory it had reached (`recycle_at_percent` of its cap).
    pub(crate) fn count_recycle(&self, memory_bytes: usize) {
        self.recycles.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            plugin = %self.name,
            memory_mib = memory_bytes / (1024 * 1024),
            "instance recycled for its memory"
        );
    }

    /// How many instances were recycled for their memory.
    pub fn recycles(&self) -> u64 {
        self.recycles.load(Ordering::Relaxed)
    }

    /// The serving version, if any.
    pub fn current(&self) -> Option<Arc<PluginVersion>> {
        self.current.load_full()
    }

    /// The serving version, without touching its reference count.
    pub fn current_guard(&self) -> arc_swap::Guard<Option<Arc<PluginVersion>>> {
        self.current.load()
    }

    pub(crate) fn install(&self, version: Arc<PluginVersion>) {
        self.events.publish(
            "plugin",
            serde_json::json!({ "plugin": &*self.name, "event": "loaded", "hash": version.hash }),
        );
        let previous = self.current.swap(Some(version));
        self.previous.store(previous.clone());
        let mut history = self.history.lock().unwrap();
        history.file_present = true;
        history.last_rejected_hash = None;
        if previous.is_some() {
            history.reloads += 1;
        }
    }

    pub(crate) fn reject(&self, reason: String, hash: Option<String>) {
        self.events.publish(
            "plugin",
            serde_json::json!({ "plugin": &*self.name, "event": "rejected", "reason": reason }),
        );
        let note = Note::now(reason);
        let mut history = self.history.lock().unwrap();
        history.last_rejected_hash = hash;
        history.rejections += 1;
        history.last_rejected = Some(note.clone());
        history.last_error = Some(note);
    }

    /// A worker could not carry a pool's state into `version`, swapped in
    /// already, for `reason`: the version is rejected as a file refused at
    /// load would have been, and the version it replaced serves again (each
    /// worker's instance goes back to it at its next call). Said once per
    /// version, whichever worker finds it first.
    pub(crate) fn reject_serving(&self, version: &PluginVersion, reason: String) {
        if version.refused_state.swap(true, Ordering::Relaxed) {
            return;
        }
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.id == version.id) {
            if let Some(previous) = self.previous.load_full() {
                self.current.compare_and_swap(&*current, Some(previous));
            }
        }
        let message = format!(
            "plugin `{}` ({}): restore: {reason}; the version before it serves again",
            self.name,
            self.path.display()
        );
        tracing::warn!("{message}");
        self.reject(message, Some(version.hash.clone()));
    }

    pub(crate) fn warn(&self, message: String) {
        self.history.lock().unwrap().last_error = Some(Note::now(message));
    }

    /// Counts one call.
    pub fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts how long one call into the plugin's export took (`started`
    /// read just before it).
    pub fn time_call(&self, started: Instant) {
        self.observe_call(started.elapsed());
    }

    /// Counts one call into the plugin's export that took `took`.
    pub fn observe_call(&self, took: std::time::Duration) {
        self.call_time.observe(took);
    }

    /// How long calls took so far.
    pub fn call_times(&self) -> HistogramSnapshot<{ PLUGIN_CALL_BOUNDS_NS.len() }> {
        self.call_time.snapshot()
    }

    /// How its log lines are bounded.
    pub fn log_limits(&self) -> LogLimits {
        self.log.limits()
    }

    /// The plugin's log lines so far, by outcome.
    pub fn log_lines(&self) -> LogCounts {
        self.log.counts()
    }

    /// Counts a successful call: the version's fault streak ends.
    pub fn count_success(&self, version: &PluginVersion) {
        if version.consecutive_faults.load(Ordering::Relaxed) != 0 {
            version.consecutive_faults.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a fault; quarantines `version` when its streak reaches
    /// `quarantine_after`. Returns whether this fault quarantined it.
    pub fn count_fault(
        &self,
        version: &PluginVersion,
        message: String,
        quarantine_after: u32,
    ) -> bool {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let streak = version.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        // The first fault of a version is worth a warning; the rest are
        // counted, and a quarantine warns again.
        if !version.faulted.swap(true, Ordering::Relaxed) {
            tracing::warn!(plugin = &*self.name, "plugin fault: {message}");
        } else {
            tracing::debug!(plugin = &*self.name, "plugin fault: {message}");
        }
        self.events.publish(
            "plugin",
            serde_json::json!({ "plugin": &*self.name, "event": "fault", "reason": message }),
        );
        let note = Note::now(message);
        {
            let mut history = self.history.lock().unwrap();
            history.last_fault = Some(note.clone());
            history.last_error = Some(note);
        }
        if streak >= quarantine_after && !version.quarantined.swap(true, Ordering::Relaxed) {
            self.events.publish(
                "plugin",
                serde_json::json!({ "plugin": &*self.name, "event": "quarantined", "faults": streak }),
            );
            tracing::warn!(
                plugin = &*self.name,
                hash = %version.hash,
                "plugin quarantined after {streak} consecutive faults; \
                 its pools use the native round robin until a new file arrives"
            );
            return true;
        }
        false
    }

    /// Lifts the quarantine of the serving version (the same file was
    /// written again). Returns whether it was quarantined.
    pub fn lift_quarantine(&self) -> bool {
        match self.current() {
            Some(version) => {
                version.consecutive_faults.store(0, Ordering::Relaxed);
                version.quarantined.swap(false, Ordering::Relaxed)
            }
            None => false,
        }
    }

    /// Records the store the plugin's instances share for `user` ("pool
    /// `web`"), for the API.
    pub(crate) fn add_store(&self, user: String, store: &Arc<super::pool_store::PoolStore>) {
        let mut stores = self.stores.lock().unwrap();
        stores.retain(|(_, store)| store.strong_count() > 0);
        stores.push((user, Arc::downgrade(store)));
    }

    /// The stores of the pools and routes the plugin serves now: who uses
    /// each, its entries and the most it may hold.
    pub fn stores(&self) -> Vec<(String, usize, usize)> {
        let mut stores = self.stores.lock().unwrap();
        stores.retain(|(_, store)| store.strong_count() > 0);
        stores
            .iter()
            .filter_map(|(user, store)| {
                let store = store.upgrade()?;
                Some((user.clone(), store.len(), store.limits().entries))
            })
            .collect()
    }

    /// Calls made since start.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Faults since start.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// The largest linear memory any instance of this plugin has had, in
    /// bytes, all of the instance's memories together.
    pub fn memory_high_bytes(&self) -> u64 {
        self.memory_high.load(Ordering::Relaxed)
    }
}
