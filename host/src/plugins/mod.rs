//! The WebAssembly plugin runtime — the only module that knows wasmtime:
//! loading and caching components, the sandbox they run in, per-worker
//! instances, fault accounting, and live reload of the plugin folder.

mod balancer;
pub mod bindings;
mod cache;
mod candidate;
mod health;
mod imports;
mod last_good;
mod log;
pub mod pool_store;
mod pooled;
mod recording;
mod recovery;
mod registry;
mod replay;
mod retire;
pub mod rollout;
mod state;
mod watcher;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config as WasmConfig, Engine, InstanceAllocationStrategy, Store, Trap};

pub use balancer::WasmBalancer;
pub use candidate::{candidate_name, CandidateOutcome, RolloutError, CANDIDATE_SUFFIX};
pub use health::WasmHealthCheck;
pub use log::{LogCounts, LogLimits};
pub use recording::{
    HostCall, Line, RecordedEndpoint, RecordedLoad, RecordedPick, RecordedRequest, Recorder,
    RecorderView, Session,
};
pub use recovery::WasmRecovery;
pub use registry::{Note, Owner, PluginSlot, PluginVersion, PoolUse, Role, World};
pub use replay::{Replayed, Replayer};
pub use rollout::{Rollout, RolloutState};
pub use watcher::{watch, Watcher};

use crate::config::PluginsConfig;
use cache::ArtifactCache;
use registry::Prepared;
use state::StoreState;

/// How often the epoch advances; a call's budget is counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Budget of calls that set an instance up (`configure`, `set-endpoints`),
/// which may build tables over the whole pool.
pub const SETUP_TIMEOUT: Duration = Duration::from_millis(200);

/// Why a plugin file was not taken into service. The message names the
/// plugin, its file, the stage and the cause.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{name}` ({path}): {stage}: {reason}")]
pub struct LoadError {
    /// The plugin name.
    pub name: String,
    /// The file.
    pub path: String,
    /// Which step failed.
    pub stage: &'static str,
    /// The cause.
    pub reason: String,
}

/// What happened to a file the runtime was asked to (re)load.
#[derive(Debug)]
pub enum LoadOutcome {
    /// A new version serves.
    Loaded(Arc<PluginVersion>),
    /// The content is the one already serving (a quarantine, if any, was lifted).
    Unchanged {
        /// Whether a quarantine was lifted.
        lifted_quarantine: bool,
    },
    /// The content is the one refused last time; it was not judged again.
    AlreadyRejected,
}

/// Sandbox and timing settings derived from `[plugins]`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub setup_deadline_ticks: u64,
    pub quarantine_after: u32,
    pub max_instances: u32,
    pub log: LogLimits,
    /// Every plugin's own settings come from here (`[plugins]` and its
    /// `[plugins.limits.NAME]`).
    plugins: crate::config::PluginsConfig,
}

impl Limits {
    /// The settings plugin `name`'s instances run with.
    pub fn of(&self, name: &str) -> PluginLimits {
        PluginLimits::from(self.plugins.limits_of(name))
    }

    /// The bounds of each pool's plugin store.
    pub fn store(&self) -> pool_store::StoreLimits {
        pool_store::StoreLimits {
            entries: self.plugins.store_entries as usize,
            name_bytes: self.plugins.store_name_bytes as usize,
        }
    }
}

/// One plugin's sandbox, as its instances are held to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// The budget of one call, in epoch ticks.
    pub call_deadline_ticks: u64,
    /// The linear-memory cap of one instance, in bytes.
    pub memory_limit: usize,
    /// The linear memory, in bytes, at which an instance is replaced by a
    /// fresh one after its call; `usize::MAX` never.
    pub recycle_at: usize,
    /// The budget of one call, in ms, as configured.
    pub call_timeout_ms: u64,
}

impl From<crate::config::EffectivePluginLimits> for PluginLimits {
    fn from(limits: crate::config::EffectivePluginLimits) -> Self {
        let memory_limit = limits.memory_limit_mib as usize * 1024 * 1024;
        PluginLimits {
            call_deadline_ticks: ticks(Duration::from_millis(limits.call_timeout_ms)),
            call_timeout_ms: limits.call_timeout_ms,
            memory_limit,
            recycle_at: if limits.recycle_at_percent >= 100 {
                usize::MAX
            } else {
                (memory_limit as u64 * u64::from(limits.recycle_at_percent) / 100) as usize
            },
        }
    }
}

/// A budget in epoch ticks; the CPU clock then allows one more tick (see
/// `state::CallClock`), so a call is cut off within budget + 1 tick.
fn ticks(budget: Duration) -> u64 {
    (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

pub(crate) struct Shared {
    pub engine: Engine,
    /// Balancers' and recovery policies' imports, all synchronous.
    pub linker: Linker<StoreState>,
    /// Health checks' imports: the probes async, WASI's async version.
    pub async_linker: Linker<StoreState>,
    pub limits: Limits,
    dir: PathBuf,
    cache: ArtifactCache,
    last_good: last_good::LastGood,
    events: Arc<crate::engine::Events>,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    next_version: AtomicU64,
    stop_ticker: Arc<AtomicBool>,
    /// When the last "no instance slot free" was said, in ms since
    /// `started`: said at most every `CAPACITY_NOTICE_EVERY`.
    capacity_noticed: AtomicU64,
    started: Instant,
    /// Instances alive now, of every plugin and world.
    live_instances: Arc<AtomicU32>,
    /// Proxy workers, each holding its own balancer and recovery instances.
    workers: AtomicU32,
    /// Where rollouts' ends are raised.
    alerts: std::sync::OnceLock<Arc<crate::engine::Alerts>>,
    /// Each recording pool's recorder (the latest build of the pool).
    recorders: std::sync::Mutex<BTreeMap<String, std::sync::Weak<Recorder>>>,
}

/// How often running out of instance slots is logged and published.
const CAPACITY_NOTICE_EVERY: Duration = Duration::from_secs(10);

impl Shared {
    /// The host had no instance slot for `plugin` in `pool`: the request
    /// was served by the fallback, nothing is held against the plugin, and
    /// the operator is told what to raise (at most every ten seconds).
    pub(crate) fn capacity_exhausted(&self, plugin: &str, pool: &str, reason: &str) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.capacity_noticed.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= CAPACITY_NOTICE_EVERY.as_millis() as u64;
        if !due
            || self
                .capacity_noticed
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::error!(plugin, pool, "{reason}; the fallback serves meanwhile");
        self.events.publish(
            "plugin-capacity",
            serde_json::json!({ "plugin": plugin, "pool": pool, "reason": reason }),
        );
    }
}

/// The plugin runtime. Cheap to clone; the epoch ticker stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    /// A runtime for the plugins in `config.dir`: the wasmtime engine with
    /// the pooling allocator, epoch interruption, the memory cap, and a
    /// linker offering the host imports and a locked-down WASI.
    pub fn new(config: &PluginsConfig) -> anyhow::Result<Self> {
        PluginRuntime::with_events(config, Arc::default())
    }

    /// The same, publishing loads, rejections, faults and quarantines on
    /// `events`.
    pub fn with_events(
        config: &PluginsConfig,
        events: Arc<crate::engine::Events>,
    ) -> anyhow::Result<Self> {
        // Instances are allocated as they are made and freed as they are
        // dropped, so memory and address space follow the instances the
        // config has live (counted against `max_instances`), not a pool
        // reserved up front for the most it could ever have.
        let mut wasm = WasmConfig::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::OnDemand);
        let engine = Engine::new(&wasm).map_err(|e| {
            anyhow::anyhow!("cannot start the wasmtime engine: {}", error_chain(&e))
        })?;

        // One engine serves both kinds of store: wasmtime decides per store
        // whether its calls must be async (a store whose instance links an
        // async import must), so a compiled component serves both linkers.
        let mut linker = Linker::<StoreState>::new(&engine);
        bindings::common::HostImports::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::store::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        // Contract 0.1's imports under their own names.
        bindings::v0_1::common::HostImports::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        imports::wasi_io::shadow_blocking_io(&mut linker)?;

        let mut async_linker = Linker::<StoreState>::new(&engine);
        bindings::common::HostImports::add_to_linker::<_, HasSelf<_>>(&mut async_linker, |s| s)?;
        bindings::health::switchyard::plugin::probe::add_to_linker::<_, HasSelf<_>>(
            &mut async_linker,
            |s| s,
        )?;
        bindings::store::add_to_linker::<_, HasSelf<_>>(&mut async_linker, |s| s)?;
        bindings::v0_1::common::HostImports::add_to_linker::<_, HasSelf<_>>(
            &mut async_linker,
            |s| s,
        )?;
        bindings::v0_1::health::switchyard::plugin::probe::add_to_linker::<_, HasSelf<_>>(
            &mut async_linker,
            |s| s,
        )?;
        wasmtime_wasi::p2::add_to_linker_async(&mut async_linker)?;
        // A health check waits on its probes only: WASI's waits are answered
        // at once, as every plugin's are.
        imports::wasi_io::shadow_blocking_io(&mut async_linker)?;

        let limits = Limits {
            setup_deadline_ticks: ticks(SETUP_TIMEOUT),
            plugins: config.clone(),
            quarantine_after: config.quarantine_after,
            max_instances: config.max_instances,
            log: LogLimits {
                line_bytes: config.log_line_bytes as usize,
                lines_per_second: config.log_lines_per_second,
            },
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        start_epoch_ticker(engine.clone(), Arc::clone(&stop_ticker))?;
        Ok(PluginRuntime {
            shared: Arc::new(Shared {
                engine,
                linker,
                async_linker,
                limits,
                dir: config.dir.clone(),
                cache: ArtifactCache::new(config.cache_dir()),
                last_good: last_good::LastGood::new(config.cache_dir().join("last-good")),
                events,
                slots: RwLock::new(BTreeMap::new()),
                next_version: AtomicU64::new(1),
                stop_ticker,
                capacity_noticed: AtomicU64::new(0),
                started: Instant::now(),
                live_instances: Arc::new(AtomicU32::new(0)),
                workers: AtomicU32::new(1),
                alerts: std::sync::OnceLock::new(),
                recorders: std::sync::Mutex::default(),
            }),
        })
    }

    /// Tells the runtime how many proxy workers hold balancer and recovery
    /// instances, for the instance counts a new file is checked against.
    pub fn set_workers(&self, workers: u32) {
        self.shared.workers.store(workers.max(1), Ordering::Relaxed);
    }

    /// Where the end of a rollout is raised as an alert.
    pub fn set_alerts(&self, alerts: Arc<crate::engine::Alerts>) {
        let _ = self.shared.alerts.set(alerts);
    }

    /// How many plugin instances are alive now.
    pub fn live_instances(&self) -> u32 {
        self.shared.live_instances.load(Ordering::Relaxed)
    }

    /// Whether plugin `name`'s serving version takes one instance per pool
    /// (built against contract 0.1) rather than serving many from one.
    pub fn serves_per_pool(&self, name: &str) -> bool {
        self.find_slot(name)
            .and_then(|slot| slot.current())
            .is_some_and(|version| !version.prepared.serves_many_pools())
    }

    /// Checks that `config` fits in `plugins.max_instances` with the plugin
    /// versions serving now; the error says what to raise or rebuild.
    pub fn check_capacity(&self, config: &crate::config::Config) -> Result<(), String> {
        let needed = config.plugin_instances_needed(|name| self.serves_per_pool(name));
        let max = self.shared.limits.max_instances;
        if needed <= u64::from(max) {
            return Ok(());
        }
        let named = config.plugin_keys();
        let per_pool = self.per_pool_names(named.iter().map(|(_, name)| *name));
        Err(format!(
            "plugins.max_instances: {}",
            crate::config::too_few_instances(max, needed, &per_pool)
        ))
    }

    /// The names among `names` of plugins served one instance per pool,
    /// each once, quoted.
    fn per_pool_names<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut per_pool: Vec<String> = names
            .filter(|name| self.serves_per_pool(name))
            .map(|name| format!("`{name}`"))
            .collect();
        per_pool.sort();
        per_pool.dedup();
        per_pool
    }

    /// Checks that serving `version` in `slot` keeps the pools attached now
    /// within `plugins.max_instances` (it may take one instance per pool).
    fn check_capacity_with(
        &self,
        slot: &PluginSlot,
        version: &PluginVersion,
    ) -> Result<(), String> {
        let per_pool_now = !version.prepared.serves_many_pools();
        let slots = self.slots();
        let mut uses = Vec::new();
        for each in &slots {
            let users = each.users.lock().unwrap();
            let live = users.iter().filter(|u| u.owner.is_live());
            let checks = live.clone().filter(|u| u.role == Role::HealthCheck).count() as u64;
            let on_path = live.filter(|u| u.role != Role::HealthCheck).count() as u64;
            if on_path > 0 {
                uses.push((each.name.to_string(), false, on_path));
            }
            if checks > 0 {
                uses.push((each.name.to_string(), true, checks));
            }
        }
        let is_per_pool = |name: &str| {
            if name == &*slot.name {
                per_pool_now
            } else {
                self.serves_per_pool(name)
            }
        };
        let needed = crate::config::instances_needed(
            self.shared.workers.load(Ordering::Relaxed),
            uses.iter()
                .map(|(name, checks, pools)| (name.as_str(), *checks, *pools)),
            is_per_pool,
        );
        let max = self.shared.limits.max_instances;
        if needed <= u64::from(max) {
            return Ok(());
        }
        let mut per_pool: Vec<String> = uses
            .iter()
            .filter(|(name, _, _)| is_per_pool(name))
            .map(|(name, _, _)| format!("`{name}`"))
            .collect();
        per_pool.dedup();
        Err(format!(
            "plugins.max_instances: {}",
            crate::config::too_few_instances(max, needed, &per_pool)
        ))
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The slot of `name`, created empty if new.
    pub fn slot(&self, name: &str) -> Arc<PluginSlot> {
        if let Some(slot) = self.shared.slots.read().unwrap().get(name) {
            return Arc::clone(slot);
        }
        let mut slots = self.shared.slots.write().unwrap();
        Arc::clone(slots.entry(name.to_string()).or_insert_with(|| {
            Arc::new(PluginSlot::new(
                name,
                self.shared.dir.join(format!("{name}.wasm")),
                Arc::clone(&self.shared.events),
                self.shared.limits.log,
                self.shared.limits.of(name),
            ))
        }))
    }

    /// Every known slot, by name.
    pub fn slots(&self) -> Vec<Arc<PluginSlot>> {
        self.shared
            .slots
            .read()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    /// A balancer for `pool` backed by plugin `name`. The plugin must already
    /// serve a balancer version (see [`PluginRuntime::load`]).
    pub fn balancer(&self, name: &str, pool_name: &str, config_json: &str) -> Arc<WasmBalancer> {
        Arc::new(WasmBalancer::new(
            Arc::clone(&self.shared),
            self.slot(name),
            pool_name,
            config_json,
        ))
    }

    /// As [`PluginRuntime::balancer`], recording a sample of the picks as
    /// `record` says; the error names why the file cannot be written.
    pub fn recorded_balancer(
        &self,
        name: &str,
        pool_name: &str,
        config_json: &str,
        record: &crate::config::RecordConfig,
    ) -> Result<Arc<WasmBalancer>, String> {
        let recorder = Recorder::start(record, pool_name, name, config_json)
            .map_err(|error| format!("cannot record to {}: {error}", record.file.display()))?;
        let mut balancer = WasmBalancer::new(
            Arc::clone(&self.shared),
            self.slot(name),
            pool_name,
            config_json,
        );
        self.shared
            .recorders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pool_name.to_string(), Arc::downgrade(&recorder));
        balancer.recorder = Some(recorder);
        Ok(Arc::new(balancer))
    }

    /// Pool `pool`'s recording, while it records.
    pub fn recording_of(&self, pool: &str) -> Option<RecorderView> {
        let recorders = self
            .shared
            .recorders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recorders
            .get(pool)?
            .upgrade()
            .map(|recorder| recorder.view())
    }

    /// A health check for `pool` backed by plugin `name`.
    pub fn health_check(
        &self,
        name: &str,
        pool_name: &str,
        config_json: &str,
        protocol: &crate::engine::UpstreamProtocol,
    ) -> Arc<WasmHealthCheck> {
        Arc::new(WasmHealthCheck::new(
            Arc::clone(&self.shared),
            self.slot(name),
            pool_name,
            config_json,
            protocol,
        ))
    }

    /// A recovery policy for `pool` backed by plugin `name`.
    pub fn recovery(&self, name: &str, pool_name: &str, config_json: &str) -> Arc<WasmRecovery> {
        Arc::new(WasmRecovery::new(
            Arc::clone(&self.shared),
            self.slot(name),
            pool_name,
            format!("pool `{pool_name}`"),
            config_json,
        ))
    }

    /// A route's own recovery policy backed by plugin `name`; `route_key`
    /// (`routes[3]`) names it in messages.
    pub fn route_recovery(
        &self,
        name: &str,
        route_key: &str,
        config_json: &str,
    ) -> Arc<WasmRecovery> {
        Arc::new(WasmRecovery::new(
            Arc::clone(&self.shared),
            self.slot(name),
            route_key,
            format!("route `{route_key}`"),
            config_json,
        ))
    }

    /// Records that `pool` uses plugin `name` in `role` with `config_json`,
    /// so new versions are checked against it, and checks the serving
    /// version now.
    pub fn attach(
        &self,
        name: &str,
        role: Role,
        pool: &Arc<crate::engine::Pool>,
        config_json: &str,
    ) -> Result<(), LoadError> {
        self.attach_use(
            name,
            PoolUse {
                owner: Owner::Pool(Arc::downgrade(pool)),
                pool_name: pool.name.clone(),
                role,
                config_json: config_json.into(),
            },
        )
    }

    /// Records that the route at `route_key` (`routes[3]`) has its own
    /// recovery policy, `recovery`, backed by plugin `name` with
    /// `config_json`, as [`PluginRuntime::attach`] records a pool's: new
    /// versions are checked against the route's config too, and the use
    /// ends when the route table holding `recovery` is gone.
    pub fn attach_route(
        &self,
        name: &str,
        route_key: &str,
        recovery: &Arc<crate::engine::Recovery>,
        config_json: &str,
    ) -> Result<(), LoadError> {
        self.attach_use(
            name,
            PoolUse {
                owner: Owner::Route(Arc::downgrade(recovery)),
                pool_name: route_key.to_string(),
                role: Role::Recovery,
                config_json: config_json.into(),
            },
        )
    }

    /// Checks `usage` against plugin `name`'s serving version and records it.
    fn attach_use(&self, name: &str, usage: PoolUse) -> Result<(), LoadError> {
        let slot = self.slot(name);
        if let Some(version) = slot.current() {
            self.check_use(&slot, &version, &usage)?;
        }
        slot.users.lock().unwrap().push(usage);
        Ok(())
    }

    /// The slot of plugin `name`, if the runtime knows it (a file was seen
    /// or a pool names it).
    pub fn find_slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.shared.slots.read().unwrap().get(name).cloned()
    }

    /// Loads plugin `name`'s file again because an operator asked: judged
    /// afresh even if the same content was refused before.
    pub fn reload(&self, name: &str) -> Result<LoadOutcome, LoadError> {
        let slot = self.slot(name);
        slot.history.lock().unwrap().last_rejected_hash = None;
        self.load(&slot.path)
    }

    /// Forgets the pools and routes that no longer exist (dropped by a
    /// reload, once the requests that held them have finished), so new
    /// versions are no longer checked against them.
    pub fn forget_dropped_pools(&self) {
        for slot in self.slots() {
            let mut users = slot.users.lock().unwrap();
            users.retain(|usage| usage.owner.is_live());
            let mut scratch = slot.scratch.lock().unwrap_or_else(|e| e.into_inner());
            if users.is_empty() {
                // No pool uses it: its scratch and shared health instances go.
                *scratch = None;
                slot.checks.clear();
            } else if let Some(scratch) = scratch.as_mut() {
                let live: std::collections::HashSet<&str> =
                    users.iter().map(|usage| usage.pool_name.as_str()).collect();
                scratch.retain_checked(&self.shared, |name| live.contains(name));
            }
        }
    }

    /// Loads every `*.wasm` file of the folder; returns the errors of the
    /// files that did not load.
    pub fn load_dir(&self) -> Vec<LoadError> {
        self.files_named(plugin_name)
            .iter()
            .filter_map(|path| self.load(path).err())
            .collect()
    }

    /// The files of the folder that `name` names, sorted.
    fn files_named(&self, name: fn(&Path) -> Option<String>) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.shared.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| name(path).is_some())
            .collect();
        paths.sort();
        paths
    }

    /// Loads (or reloads) the plugin file at `path`: compiles it (or takes the
    /// cached artifact), checks its world against the pools that use it,
    /// calls `configure` and `set-endpoints` for each of them in a scratch
    /// instance, and only then swaps it in. On any failure the serving
    /// version stays and the slot records why.
    pub fn load(&self, path: &Path) -> Result<LoadOutcome, LoadError> {
        let name = plugin_name(path).ok_or_else(|| LoadError {
            name: path.display().to_string(),
            path: path.display().to_string(),
            stage: "name",
            reason: "a plugin file is named NAME.wasm, NAME of letters, digits, - and _".into(),
        })?;
        let slot = self.slot(&name);
        let bytes = std::fs::read(path);
        let hash = bytes
            .as_ref()
            .ok()
            .map(|bytes| format!("{:x}", Sha256::digest(bytes)));
        let result = match bytes {
            Ok(bytes) => self.try_load(&slot, path, &bytes, hash.clone().unwrap_or_default()),
            Err(error) => Err(LoadError {
                name: slot.name.to_string(),
                path: path.display().to_string(),
                stage: "read",
                reason: error.to_string(),
            }),
        };
        match &result {
            Ok(LoadOutcome::Loaded(version)) => {
                slot.history.lock().unwrap().fallback = None;
                tracing::info!(
                    plugin = &*slot.name,
                    hash = %&version.hash[..12],
                    world = ?version.world,
                    cached = version.from_cache,
                    micros = version.load_micros,
                    "plugin version serving"
                )
            }
            Ok(LoadOutcome::Unchanged { lifted_quarantine }) => {
                if *lifted_quarantine {
                    tracing::info!(
                        plugin = &*slot.name,
                        "same file written again: quarantine lifted"
                    );
                }
            }
            Ok(LoadOutcome::AlreadyRejected) => {}
            Err(error) => {
                slot.reject(error.to_string(), hash);
                if slot.current().is_some() {
                    tracing::warn!("{error}; the loaded version keeps serving");
                } else {
                    tracing::warn!("{error}");
                }
            }
        }
        result
    }

    fn try_load(
        &self,
        slot: &Arc<PluginSlot>,
        path: &Path,
        bytes: &[u8],
        hash: String,
    ) -> Result<LoadOutcome, LoadError> {
        let started = Instant::now();
        let fail = |stage: &'static str, reason: String| LoadError {
            name: slot.name.to_string(),
            path: path.display().to_string(),
            stage,
            reason,
        };
        if slot.history.lock().unwrap().last_rejected_hash.as_deref() == Some(hash.as_str()) {
            return Ok(LoadOutcome::AlreadyRejected);
        }
        check_header(bytes).map_err(|reason| fail("format", reason))?;
        if let Some(current) = slot.current() {
            if current.hash == hash {
                slot.history.lock().unwrap().file_present = true;
                return Ok(LoadOutcome::Unchanged {
                    lifted_quarantine: slot.lift_quarantine(),
                });
            }
        }
        let mut version = self.compile(bytes, hash, &fail)?;

        self.check_capacity_with(slot, &version)
            .map_err(|reason| fail("capacity", reason))?;
        let users = slot.users.lock().unwrap().clone();
        let checked = users
            .iter()
            .try_for_each(|usage| self.check_use(slot, &version, usage));
        // The serving version's scratch instance, kept aside while its
        // pools' state was restored into the new one's, is done with.
        *slot.outgoing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        checked?;
        version.load_micros = started.elapsed().as_micros() as u64;
        let version = Arc::new(version);
        slot.install(Arc::clone(&version));
        if !users.is_empty() {
            self.keep_good(slot, &version.hash, bytes);
        }
        Ok(LoadOutcome::Loaded(version))
    }

    /// Compiles `bytes` (or takes the cached artifact) into a new version,
    /// not yet checked against the pools using it.
    fn compile(
        &self,
        bytes: &[u8],
        hash: String,
        fail: &dyn Fn(&'static str, String) -> LoadError,
    ) -> Result<PluginVersion, LoadError> {
        let (component, from_cache) = self
            .shared
            .cache
            .component(&self.shared.engine, &hash, bytes)
            .map_err(|e| {
                fail(
                    "compile",
                    format!("not a valid component: {}", error_chain(&e)),
                )
            })?;
        let world = world_of(&self.shared.engine, &component).map_err(|r| fail("world", r))?;
        let prepared = self
            .prepare(&component, world)
            .map_err(|r| fail("link", r))?;
        let reads_headers = imports_request_header(bytes);
        let id = self.shared.next_version.fetch_add(1, Ordering::Relaxed);
        let mut version =
            PluginVersion::new(id, hash, world, prepared, reads_headers, from_cache, 0);
        version.contract = contract_version(&self.shared.engine, &component).unwrap_or_default();
        version.imports = component
            .component_type()
            .imports(&self.shared.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(version)
    }

    /// Keeps `bytes`, a version that configured for every pool using it, as
    /// the plugin's last good file (once per content).
    fn keep_good(&self, slot: &PluginSlot, hash: &str, bytes: &[u8]) {
        if slot.history.lock().unwrap().last_good_hash.as_deref() == Some(hash) {
            return;
        }
        match self.shared.last_good.keep(&slot.name, bytes) {
            Ok(()) => slot.history.lock().unwrap().last_good_hash = Some(hash.to_string()),
            Err(error) => tracing::warn!(
                plugin = &*slot.name,
                "cannot keep the last good file in {}: {error}",
                self.shared.last_good.path(&slot.name).display()
            ),
        }
    }

    /// Keeps each serving version that pools use as its plugin's last good
    /// file, once they have all attached (at start): read again from the
    /// folder, and kept only if it is still the content that serves.
    pub fn keep_serving_as_good(&self) {
        for slot in self.slots() {
            let Some(version) = slot.current() else {
                continue;
            };
            if slot.users.lock().unwrap().is_empty()
                || slot.history.lock().unwrap().fallback.is_some()
            {
                continue;
            }
            if let Ok(bytes) = std::fs::read(&slot.path) {
                if format!("{:x}", Sha256::digest(&bytes)) == version.hash {
                    self.keep_good(&slot, &version.hash, &bytes);
                }
            }
        }
    }

    /// Serves plugin `name` from the last file that configured successfully
    /// for every pool using it (kept by an earlier run), because the file in
    /// the folder was rejected for `why`. The version is checked against the
    /// pools attached so far, like any file. Fails when no file was kept or
    /// the kept one is refused too.
    pub fn restore_last_good(&self, name: &str, why: &str) -> Result<Arc<PluginVersion>, String> {
        let slot = self.slot(name);
        let path = self.shared.last_good.path(name);
        let bytes = self.shared.last_good.read(name).ok_or_else(|| {
            format!(
                "no earlier version was kept ({} does not exist)",
                path.display()
            )
        })?;
        let hash = format!("{:x}", Sha256::digest(&bytes));
        match self.try_load(&slot, &path, &bytes, hash.clone()) {
            Ok(_) => {}
            Err(error) => return Err(format!("the version kept is refused too: {error}")),
        }
        let version = slot
            .current()
            .ok_or_else(|| "the version kept did not load".to_string())?;
        let message = format!(
            "serving the last version that configured successfully ({}, kept in {}): the file in the folder was rejected: {why}",
            &hash[..12],
            path.display()
        );
        let mut history = slot.history.lock().unwrap();
        history.last_good_hash = Some(hash);
        history.fallback = Some(registry::Note::now(message.clone()));
        history.last_error = Some(registry::Note::now(message));
        Ok(version)
    }

    /// Checks that `version` can serve `usage`: the right world, and a
    /// scratch instance accepts the pool's config and endpoints.
    fn check_use(
        &self,
        slot: &PluginSlot,
        version: &PluginVersion,
        usage: &PoolUse,
    ) -> Result<(), LoadError> {
        let fail = |stage: &'static str, reason: String| LoadError {
            name: slot.name.to_string(),
            path: slot.path.display().to_string(),
            stage,
            reason,
        };
        if version.world != usage.role.world() {
            return Err(fail(
                "world",
                format!(
                    "the file is {}, but {} uses it as its {}",
                    version.world.describe(),
                    usage.describe(),
                    usage.role.describe()
                ),
            ));
        }
        if !usage.owner.is_live() {
            return Ok(());
        }
        let many = version.prepared.serves_many_pools();
        // Only a balancer is handed its pool's endpoints; a route's use is
        // always a recovery policy.
        let endpoints = || usage.owner.pool().map(|pool| pool.endpoints());
        let checked = match usage.role {
            Role::Balancer => match endpoints() {
                None => Ok(()),
                Some(endpoints) if many => balancer::check_shared(
                    &self.shared,
                    slot,
                    version,
                    &usage.pool_name,
                    &usage.config_json,
                    &endpoints,
                ),
                Some(endpoints) => balancer::OwnInstance::create(
                    &self.shared,
                    slot,
                    version,
                    &usage.config_json,
                    &endpoints,
                )
                .map(drop),
            },
            Role::HealthCheck if many => health::check_shared(
                &self.shared,
                slot,
                version,
                &usage.pool_name,
                &usage.config_json,
            ),
            Role::HealthCheck => state::block_on(health::OwnInstance::create(
                &self.shared,
                slot,
                version,
                &usage.config_json,
            ))
            .map(drop),
            Role::Recovery if many => recovery::check_shared(
                &self.shared,
                slot,
                version,
                &usage.pool_name,
                &usage.config_json,
            ),
            Role::Recovery => {
                recovery::OwnInstance::create(&self.shared, slot, version, &usage.config_json)
                    .map(drop)
            }
        }
        .map_err(String::from);
        checked.map_err(|reason| fail("configure", format!("{}: {reason}", usage.describe())))
    }

    fn prepare(&self, component: &Component, world: World) -> Result<Prepared, String> {
        let linker = match world {
            World::HealthCheck => &self.shared.async_linker,
            World::Balancer | World::Recovery => &self.shared.linker,
        };
        let pre = linker.instantiate_pre(component).map_err(|e| {
            format!(
                "imports something the host does not offer: {}",
                error_chain(&e)
            )
        })?;
        let typed =
            |e: wasmtime::Error| format!("exports do not match the contract: {}", error_chain(&e));
        // Contract 0.1 (free functions) is told from 0.2 (resources) by the
        // version its export names.
        let v0_1 = contract_version(&self.shared.engine, component)
            .is_some_and(|version| version.starts_with("0.1."));
        let v0_1_0 = exports_version(&self.shared.engine, component, "0.1.0");
        Ok(match world {
            World::Balancer if v0_1 => Prepared::BalancerPerPool(
                bindings::v0_1::balancer::BalancerPluginPre::new(pre).map_err(typed)?,
            ),
            World::Balancer => {
                Prepared::Balancer(bindings::balancer::BalancerPluginPre::new(pre).map_err(typed)?)
            }
            World::HealthCheck if v0_1 => Prepared::HealthCheckPerPool(
                bindings::v0_1::health::HealthPluginPre::new(pre).map_err(typed)?,
            ),
            World::HealthCheck => {
                Prepared::HealthCheck(bindings::health::HealthPluginPre::new(pre).map_err(typed)?)
            }
            // Built against contract 0.1.0: served through its types.
            World::Recovery if v0_1_0 => Prepared::RecoveryPerPool0_1_0(
                bindings::v0_1::recovery_0_1_0::RecoveryPluginPre::new(pre).map_err(typed)?,
            ),
            World::Recovery if v0_1 => Prepared::RecoveryPerPool(
                bindings::v0_1::recovery::RecoveryPluginPre::new(pre).map_err(typed)?,
            ),
            World::Recovery => {
                Prepared::Recovery(bindings::recovery::RecoveryPluginPre::new(pre).map_err(typed)?)
            }
        })
    }

    /// Marks the file of `name` as deleted. A version that serves keeps
    /// serving; pools that use it are named in the warning.
    pub fn file_removed(&self, path: &Path) {
        let Some(name) = plugin_name(path) else {
            return;
        };
        let slot = self.slot(&name);
        slot.history.lock().unwrap().file_present = false;
        if slot.current().is_some() {
            let users: Vec<String> = slot
                .users
                .lock()
                .unwrap()
                .iter()
                .map(PoolUse::describe)
                .collect();
            let message = format!(
                "file {} was deleted; the loaded version keeps serving{}",
                path.display(),
                if users.is_empty() {
                    String::new()
                } else {
                    format!(" {}", users.join(", "))
                }
            );
            tracing::warn!(plugin = &*slot.name, "{message}");
            slot.warn(message);
        }
    }
}

/// The plugin name of a path: the stem of `NAME.wasm` directly in the folder.
pub fn plugin_name(path: &Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    crate::config::is_valid_name(stem).then(|| stem.to_string())
}

/// Rejects what is plainly not a component before the compiler sees it, with
/// a message that says what the file is instead.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(format!(
            "not a WebAssembly file ({} bytes, no `\\0asm` header)",
            bytes.len()
        ));
    }
    if bytes[6..8] == [0, 0] {
        return Err("a core WebAssembly module, not a component: \
                    build it with `switchyard plugin build`"
            .into());
    }
    Ok(())
}

/// Whether any core module of the component, nested ones included, has an
/// import named `request-header` (the `switchyard:plugin/host` function). Read
/// from the file, not the compiled form, so a cached artifact gets the same
/// answer. A file that does not parse is taken to read headers: the answer
/// only spares a pick the building of a header map.
fn imports_request_header(bytes: &[u8]) -> bool {
    let mut parser = wasmparser::Parser::new(0);
    parser.set_features(wasmparser::WasmFeatures::all());
    for payload in parser.parse_all(bytes) {
        let Ok(payload) = payload else {
            return true;
        };
        if let wasmparser::Payload::ImportSection(section) = payload {
            for import in section.into_imports() {
                match import {
                    Ok(import) if import.name == "request-header" => return true,
                    Ok(_) => {}
                    Err(_) => return true,
                }
            }
        }
    }
    false
}

/// Whether the component's contract export is of this version (the
/// `@VERSION` of `switchyard:plugin/...`).
fn exports_version(engine: &Engine, component: &Component, version: &str) -> bool {
    contract_version(engine, component).as_deref() == Some(version)
}

/// The contract version the component's export names, if it names one.
fn contract_version(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .exports(engine)
        .find_map(|(name, _)| {
            let (interface, version) = name.rsplit_once('@')?;
            interface
                .starts_with("switchyard:plugin/")
                .then(|| version.to_string())
        })
}

/// Which of the three contracts the component exports.
fn world_of(engine: &Engine, component: &Component) -> Result<World, String> {
    let mut exports = Vec::new();
    for (name, _) in component.component_type().exports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        match interface {
            "switchyard:plugin/balancer" => return Ok(World::Balancer),
            "switchyard:plugin/health-check" => return Ok(World::HealthCheck),
            "switchyard:plugin/recovery" => return Ok(World::Recovery),
            _ => exports.push(name.to_string()),
        }
    }
    Err(format!(
        "exports none of switchyard:plugin/balancer, health-check or recovery (it exports: {})",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    ))
}

/// Names a failed call: a timeout, the memory cap, or the trap itself.
pub(crate) fn describe_failure(
    store: &Store<StoreState>,
    error: &wasmtime::Error,
    call: &str,
) -> String {
    if let Some((ran, ticks)) = store.data().clock.overrun {
        return format!(
            "{call} ran past its time budget and was cut off \
             ({} µs of CPU after the budget, {ticks} ticks over)",
            ran.as_micros()
        );
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return format!("{call} ran past its time budget and was cut off");
    }
    if store.data().memory_refused {
        return format!(
            "{call} trapped after the memory cap refused to grow its memory \
             (plugins.memory_limit_mib = {}: one instance holds the state of every pool \
             it serves; raise it for more or larger pools): {}",
            store.data().memory_limit() / (1024 * 1024),
            error_chain(error)
        );
    }
    format!("{call} trapped: {}", error_chain(error))
}

/// A new store for `slot`'s plugin, instantiated by `instantiate` under the
/// set-up budget, if the host has an instance to spare (`max_instances`).
/// Every world's instances start here.
pub(crate) fn instantiate<P>(
    shared: &Shared,
    slot: &PluginSlot,
    instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<P>,
) -> Result<(Store<StoreState>, P), SetUpError> {
    let mut store = state::new_store(&shared.engine, store_state(shared, slot)?);
    state::begin_call(&mut store, shared.limits.setup_deadline_ticks);
    let plugin = instantiate(&mut store)
        .map_err(|e| SetUpError::Plugin(describe_failure(&store, &e, "instantiate")))?;
    Ok((store, plugin))
}

/// The state of a new store for `slot`'s plugin, if the host has an
/// instance to spare (`max_instances`).
fn store_state(shared: &Shared, slot: &PluginSlot) -> Result<StoreState, SetUpError> {
    let count = state::InstanceCount::take(&shared.live_instances, shared.limits.max_instances)
        .ok_or_else(|| {
            SetUpError::Capacity(format!(
                "the host's plugin instances are all in use (plugins.max_instances = {}); raise it",
                shared.limits.max_instances
            ))
        })?;
    let mut state = StoreState::new(
        Arc::clone(&slot.name),
        Arc::clone(&slot.log),
        slot.limits.memory_limit,
    );
    state.recycle_at = slot.limits.recycle_at;
    state.count = Some(count);
    state.memory_high = Some(Arc::clone(&slot.memory_high));
    Ok(state)
}

/// A new async store for `slot`'s plugin (a health check's), not yet
/// instantiated: its caller runs `instantiate_async` under the set-up budget
/// (`state::begin_async_call`).
pub(crate) fn async_store(
    shared: &Shared,
    slot: &PluginSlot,
) -> Result<Store<StoreState>, SetUpError> {
    Ok(state::new_store(&shared.engine, store_state(shared, slot)?))
}

/// A new store for `slot`'s plugin (contract 0.1), instantiated and
/// configured by `configure`, both under the set-up budget.
pub(crate) fn set_up<P>(
    shared: &Shared,
    slot: &PluginSlot,
    instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<P>,
    configure: impl FnOnce(&P, &mut Store<StoreState>) -> wasmtime::Result<Result<(), String>>,
) -> Result<(Store<StoreState>, P), SetUpError> {
    let (mut store, plugin) = self::instantiate(shared, slot, instantiate)?;
    state::begin_call(&mut store, shared.limits.setup_deadline_ticks);
    configure(&plugin, &mut store)
        .map_err(|e| SetUpError::Plugin(describe_failure(&store, &e, "configure")))?
        .map_err(|message| {
            SetUpError::Plugin(format!("configure refused the config: {message}"))
        })?;
    Ok((store, plugin))
}

/// Why an instance could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetUpError {
    /// The plugin's doing: it trapped, timed out or refused its config.
    Plugin(String),
    /// The host's: no instance slot was free. Never counted against the
    /// plugin.
    Capacity(String),
}

impl From<SetUpError> for String {
    fn from(error: SetUpError) -> String {
        match error {
            SetUpError::Plugin(reason) | SetUpError::Capacity(reason) => reason,
        }
    }
}

/// An error with its causes on one line.
pub(crate) fn error_chain(error: &wasmtime::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn start_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("switchyard-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .context("cannot start the epoch ticker")?;
    Ok(())
}

#[cfg(test)]
mod tests;
