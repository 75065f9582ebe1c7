//! Builds what serves from a config — pools with their plugins and active
//! checks, and the routes — at start, and applies a new config as the
//! difference from the running one: pools added, rebuilt or dropped, their
//! endpoints keeping statistics and health by address, the routes swapped
//! whole. A config that is invalid, or changes what only a restart can,
//! changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::config::store::StoreError;
use crate::config::{
    self, Config, ConfigError, DiscoveryConfig, EndpointState, FieldMatchConfig, HashKeyConfig,
    HeaderEditsConfig, PoolConfig, PriorityClass, RateKeyConfig, RateLimitConfig, RecoveryConfig,
    RouteConfig,
};
use crate::discovery::{self, Found, Update};
use crate::engine::{
    self, Admin, Alerts, CheckSchedule, Endpoint, FieldMatch, FieldTest, HashKey, HeaderEdits,
    HealthChecker, HealthPolicy, HostMatch, Mirror, OutlierPolicy, PathMatch, PathRewrite, Pool,
    Rewrite, Route, Routes, SharedTopology, Source, Split, TcpCheck, Topology,
};
use crate::plugins::{self, PluginRuntime, Role};

mod edits;

pub use edits::{ChangeReport, Edit, Scope, Written};

/// How often draining discovered endpoints are looked at, to remove
/// those with nothing in flight.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// How long a changed config file must be quiet before it is read.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);

/// The version of a config text: its SHA-256, in hex.
fn content_hash(text: &str) -> String {
    crate::config::store::version_of(text)
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The process was started without a config file to read again.
    #[error("no config file to reload: this process was started from a config in memory")]
    NoFile,
    /// The file does not load or validate.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The change touches something read only at start.
    #[error("{0}: needs a restart; nothing was changed")]
    RestartNeeded(String),
    /// A pool could not be built (a plugin missing, or refusing its config).
    #[error("{0}")]
    Build(String),
}

/// What a reload changed, by pool name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Pools that are new.
    pub added: Vec<String>,
    /// Pools rebuilt because their table changed.
    pub changed: Vec<String>,
    /// Pools no longer in the config.
    pub removed: Vec<String>,
    /// Pools left exactly as they were.
    pub unchanged: Vec<String>,
    /// Routes in the new table.
    pub routes: usize,
}

/// What a reload builds before it swaps anything.
#[derive(Default)]
struct Plan {
    /// Every pool of the new config, in its order.
    pools: Vec<Arc<Pool>>,
    /// The pools built anew, with their checks to start.
    started: Vec<(Arc<Pool>, Option<ActiveChecks>)>,
    report: ReloadReport,
    /// Whether the route table stays or is built anew.
    routes: RouteTable,
}

/// What becomes of the route table when a plan is committed.
#[derive(Default)]
enum RouteTable {
    /// The one serving stays, with the routes' own recovery policies: the
    /// rules, the body limit they default to, and the pools' names in
    /// order are as they were.
    #[default]
    Keep,
    /// Built anew, with these recovery policies of the routes (one per
    /// `[[routes]]` entry, by index), made and checked against their
    /// plugins in the plan, so a plugin that refuses a route's config
    /// fails the reload before anything is swapped.
    Build(Vec<Option<Arc<engine::Recovery>>>),
}

/// Why an edit of the config changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum EditError<E> {
    /// The edit itself refused (a pool or endpoint that does not exist, a
    /// field out of range).
    #[error("the change was refused")]
    Edit(E),
    /// The file changed since the version the client read.
    #[error("the config changed since version {current} was read")]
    Stale {
        /// The version now.
        current: String,
    },
    /// The file could not be read or written.
    #[error("{0}")]
    Store(StoreError),
    /// The edited config is invalid or cannot be applied.
    #[error("{0}")]
    Reload(ReloadError),
}

/// A pool's active checks, started when the pool starts serving.
#[derive(Debug)]
struct ActiveChecks {
    checker: Arc<dyn HealthChecker>,
    schedule: CheckSchedule,
}

/// The running config and the check tasks of each pool.
#[derive(Debug)]
struct Applied {
    config: Config,
    checks: HashMap<String, Vec<JoinHandle<()>>>,
    /// The file's text as API edits last wrote it, cut into pools
    /// (`edits.rs`): used while the file still holds it.
    image: Option<edits::Image>,
    /// Endpoints each pool has besides its config's, by source: derived
    /// state, never written to the file, kept across reloads.
    found: HashMap<String, BTreeMap<Source, Vec<Found>>>,
    /// Discovered endpoints gone from their source with requests still in
    /// flight, by pool: kept in the pool as `draining` until those finish.
    draining: HashMap<String, Vec<(Source, Found)>>,
    /// Each pool's DNS discovery task, with the table it was started from.
    discovery: HashMap<String, (DiscoveryConfig, JoinHandle<()>)>,
}

/// An endpoint a pool has besides its config's.
#[derive(Debug, Clone)]
struct Extra {
    source: Source,
    found: Found,
    /// Gone from its source; takes no new requests.
    draining: bool,
}

impl Applied {
    /// The endpoints pool `pool` has besides its config's, in source
    /// order (its DNS answers only while it has `discovery`), then those
    /// draining.
    fn found(&self, pool: &PoolConfig) -> Vec<Extra> {
        let mut extras: Vec<Extra> = self
            .found
            .get(&pool.name)
            .into_iter()
            .flatten()
            .filter(|(source, _)| **source != Source::Dns || pool.discovery.is_some())
            .flat_map(|(source, found)| {
                found.iter().map(|f| Extra {
                    source: *source,
                    found: f.clone(),
                    draining: false,
                })
            })
            .collect();
        let draining = self.draining.get(&pool.name).into_iter().flatten();
        extras.extend(draining.map(|(source, found)| Extra {
            source: *source,
            found: found.clone(),
            draining: true,
        }));
        extras
    }
}

/// Owns what serves: builds it at start, applies reloads one at a time,
/// and publishes each result to the shared topology.
#[derive(Debug)]
pub struct Reloader {
    runtime: PluginRuntime,
    alerts: Arc<Alerts>,
    topology: SharedTopology,
    /// The pools with timed work, for the readmission ticker.
    tick_queue: Arc<engine::TickQueue>,
    /// The hostnames in endpoints' addresses, resolved off the request path.
    hosts: Arc<discovery::hosts::HostCache>,
    file: std::sync::Mutex<Option<PathBuf>>,
    applied: tokio::sync::Mutex<Applied>,
    /// The SHA-256 of the file text last applied, so a watched change that
    /// leaves the content as applied is not applied twice. Written only
    /// with `applied` held; read without it.
    file_hash: std::sync::Mutex<Option<String>>,
    /// API edits waiting for their batch.
    edits: edits::EditQueue,
    /// The fleet the config is shared with, if any: edits are written to
    /// it before the working copy.
    fleet: std::sync::OnceLock<Arc<crate::cluster::Fleet>>,
    /// Where discovery sends new sets of endpoints.
    updates: tokio::sync::mpsc::UnboundedSender<Update>,
    /// Some discovered endpoint is draining: looked at every [`DRAIN_POLL`].
    draining: std::sync::atomic::AtomicBool,
    /// Taken by [`Reloader::apply_discovered`].
    update_receiver: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Update>>>,
}

/// What an edit changed in the config file, line by line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LineChanges {
    /// Lines of the file before that are gone.
    pub removed: Vec<String>,
    /// Lines of the file after that are new.
    pub added: Vec<String>,
}

impl LineChanges {
    /// The lines of `after` not in `before` and of `before` not in `after`,
    /// each counted as often as it stands, in file order.
    pub fn between(before: &str, after: &str) -> Self {
        fn only_in(one: &str, other: &str) -> Vec<String> {
            let mut left: HashMap<&str, usize> = HashMap::new();
            for line in other.lines() {
                *left.entry(line).or_default() += 1;
            }
            one.lines()
                .filter(|line| match left.get_mut(line) {
                    Some(count) if *count > 0 => {
                        *count -= 1;
                        false
                    }
                    _ => true,
                })
                .map(str::to_string)
                .collect()
        }
        LineChanges {
            removed: only_in(before, after),
            added: only_in(after, before),
        }
    }
}

impl Reloader {
    /// Builds the pools and routes of `config` and starts their active
    /// checks. A plugin rejected in the folder serves its last good version
    /// from an earlier run, if one was kept (see [`require_plugin`]).
    pub fn start(
        config: Config,
        runtime: PluginRuntime,
        load_errors: &[plugins::LoadError],
        alerts: Arc<Alerts>,
    ) -> anyhow::Result<Reloader> {
        let tick_queue = Arc::new(engine::TickQueue::default());
        let hosts = Arc::new(discovery::hosts::HostCache::default());
        let builder = Builder {
            runtime: &runtime,
            tick_queue: &tick_queue,
            hosts: &hosts,
            load_errors,
            alerts: &alerts,
            fall_back: true,
        };
        runtime.set_workers(config.proxy.workers as u32);
        runtime
            .check_capacity(&config)
            .map_err(anyhow::Error::msg)?;
        let mut pools = Vec::new();
        let mut checks = HashMap::new();
        for (index, pool_config) in config.pools.iter().enumerate() {
            let (pool, active) = builder.pool(index, pool_config, None, &[])?;
            checks.insert(pool.name.clone(), spawn(&pool, active));
            pools.push(pool);
        }
        let recoveries = builder.route_recoveries(&config)?;
        let routes = Arc::new(routes(&config, &pools, None, recoveries));
        let topology = SharedTopology::default();
        topology.store(Arc::new(Topology { routes, pools }));
        let (updates, update_receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut applied = Applied {
            config,
            checks,
            image: None,
            found: HashMap::new(),
            draining: HashMap::new(),
            discovery: HashMap::new(),
        };
        start_discovery(&mut applied, &alerts, &updates);
        Ok(Reloader {
            runtime,
            alerts,
            topology,
            tick_queue,
            hosts,
            file: std::sync::Mutex::new(None),
            applied: tokio::sync::Mutex::new(applied),
            file_hash: std::sync::Mutex::new(None),
            edits: edits::EditQueue::default(),
            fleet: std::sync::OnceLock::new(),
            updates,
            draining: std::sync::atomic::AtomicBool::new(false),
            update_receiver: std::sync::Mutex::new(Some(update_receiver)),
        })
    }

    /// Reloads from `file` on [`Reloader::reload_file`], whose text at
    /// `version` is what serves now.
    pub fn set_file(&self, file: PathBuf, version: String) {
        *self.file.lock().unwrap() = Some(file);
        *self.file_hash.lock().unwrap() = Some(version);
    }

    /// The pools that list no endpoint and have not had one from their DNS
    /// name yet.
    pub async fn pools_awaiting_discovery(&self) -> Vec<String> {
        let applied = self.applied.lock().await;
        let topology = self.topology.load();
        applied
            .config
            .pools
            .iter()
            .filter(|pool| pool.discovery.is_some() && pool.endpoints.is_empty())
            .filter(|pool| {
                topology
                    .pool(&pool.name)
                    .is_none_or(|serving| serving.endpoints().all.is_empty())
            })
            .map(|pool| pool.name.clone())
            .collect()
    }

    /// The config file reloads read.
    fn config_file(&self) -> Result<PathBuf, ReloadError> {
        self.file.lock().unwrap().clone().ok_or(ReloadError::NoFile)
    }

    /// Shares edits with `fleet`: each is written to etcd before the
    /// working copy, and refused if another instance wrote first.
    pub fn set_fleet(&self, fleet: Arc<crate::cluster::Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// The fleet, if the config is shared.
    pub fn fleet(&self) -> Option<&Arc<crate::cluster::Fleet>> {
        self.fleet.get()
    }

    /// Writes an edited config `text`, edited from version `base`: to the
    /// fleet first, when there is one, then to the file.
    fn write_config(
        &self,
        store: &crate::config::store::ConfigFile,
        base: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        let Some(fleet) = self.fleet.get() else {
            return store.write(text);
        };
        let revision = fleet.commit(base, text)?;
        store.write(text)?;
        fleet.record(&content_hash(text), revision);
        Ok(())
    }

    /// Applies `text`, the fleet's shared config at a new revision in this
    /// instance's working copy, as a reload of the file would: written to
    /// the file, then swapped in. `applied` hears the working copy's
    /// version once it serves (or if it served already).
    pub async fn apply_fleet_text(
        &self,
        text: String,
        applied: impl FnOnce(&str),
    ) -> Result<Option<ReloadReport>, ReloadError> {
        let file = self.config_file()?;
        let mut serving = self.applied.lock().await;
        let hash = content_hash(&text);
        if self.version().as_deref() == Some(hash.as_str()) {
            applied(&hash);
            return Ok(None);
        }
        let next = Config::parse(&text, &file.display().to_string())?;
        let plan = self.plan(&serving, &next)?;
        crate::config::store::ConfigFile::new(file.clone())
            .write(&text)
            .map_err(|e| ReloadError::Build(e.to_string()))?;
        let report = self.commit(&mut serving, next, plan);
        *self.file_hash.lock().unwrap() = Some(hash.clone());
        applied(&hash);
        Ok(Some(report))
    }

    /// The config file's version last applied or written, if known; it
    /// does not wait for a reload or a batch of edits under way.
    pub fn version(&self) -> Option<String> {
        self.file_hash.lock().unwrap().clone()
    }

    /// The topology the proxy and the control endpoint read.
    pub fn topology(&self) -> &SharedTopology {
        &self.topology
    }

    /// The pools with ejections or holds to expire or slow starts to ramp.
    pub fn tick_queue(&self) -> &Arc<engine::TickQueue> {
        &self.tick_queue
    }

    /// The hostnames in endpoints' addresses, to be kept resolved
    /// ([`discovery::hosts::HostCache::refresh`]).
    pub fn hosts(&self) -> &Arc<discovery::hosts::HostCache> {
        &self.hosts
    }

    /// Reads the config file again and applies it.
    pub async fn reload_file(&self) -> Result<ReloadReport, ReloadError> {
        self.reload_file_if(false)
            .await
            .map(Option::unwrap_or_default)
    }

    /// Reads the config file again and applies it, unless `skip_applied`
    /// and its text is the one last applied; `None` when it was skipped.
    async fn reload_file_if(
        &self,
        skip_applied: bool,
    ) -> Result<Option<ReloadReport>, ReloadError> {
        let file = self.config_file()?;
        // Held from the read on: an API edit written meanwhile must not be
        // taken for a change made by hand and undone by the older text.
        let mut applied = self.applied.lock().await;
        let text = std::fs::read_to_string(&file).map_err(|source| {
            ReloadError::Invalid(ConfigError::Read {
                path: file.clone(),
                source,
            })
        })?;
        let hash = content_hash(&text);
        if skip_applied && self.version().as_deref() == Some(hash.as_str()) {
            return Ok(None);
        }
        let next = Config::parse(&text, &file.display().to_string())?;
        let plan = self.plan(&applied, &next)?;
        let report = self.commit(&mut applied, next, plan);
        *self.file_hash.lock().unwrap() = Some(hash);
        Ok(Some(report))
    }

    /// Reloads the file when it changes, until the returned watcher is
    /// dropped: events on its folder (editors replace a file by renaming
    /// over it) are debounced for [`WATCH_DEBOUNCE`], and content already
    /// applied is skipped. Must be called within a tokio runtime.
    pub fn watch_file(self: &Arc<Self>) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
        use notify::Watcher as _;
        let Some(file) = self.file.lock().unwrap().clone() else {
            return Ok(None);
        };
        let folder = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = file.file_name().map(ToOwned::to_owned);
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Reads, the host's own included, change nothing.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                    let _ = sender.send(());
                }
            })
            .context("cannot start watching the config file")?;
        watcher
            .watch(&folder, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", folder.display()))?;
        let reloader = Arc::clone(self);
        tokio::spawn(async move {
            while receiver.recv().await.is_some() {
                // Quiet for the debounce time: the write is over.
                while let Ok(Some(())) = tokio::time::timeout(WATCH_DEBOUNCE, receiver.recv()).await
                {
                }
                if let Err(error) = reloader.reload_file_if(true).await {
                    tracing::error!("the changed config file was not applied: {error}");
                }
            }
        });
        Ok(Some(watcher))
    }

    /// Applies `next` as the difference from the running config: a pool
    /// whose table is unchanged keeps serving as it is (plugin instances,
    /// checks, health); a changed one is rebuilt, its endpoints keeping
    /// their statistics and health by address; the routes are replaced
    /// whole. Requests in flight finish on what they started with. Nothing
    /// changes unless all of it can be built.
    pub async fn apply(&self, next: Config) -> Result<ReloadReport, ReloadError> {
        let mut applied = self.applied.lock().await;
        let plan = self.plan(&applied, &next)?;
        Ok(self.commit(&mut applied, next, plan))
    }

    /// Builds everything `next` changes, swapping nothing yet.
    fn plan(&self, applied: &Applied, next: &Config) -> Result<Plan, ReloadError> {
        self.plan_with(applied, next, &HashSet::new())
    }

    /// Builds everything `next` changes and the pools named in `rebuild`,
    /// swapping nothing yet.
    fn plan_with(
        &self,
        applied: &Applied,
        next: &Config,
        rebuild: &HashSet<String>,
    ) -> Result<Plan, ReloadError> {
        if let Some(what) = restart_needed(&applied.config, next) {
            return Err(ReloadError::RestartNeeded(what));
        }
        self.runtime
            .check_capacity(next)
            .map_err(ReloadError::Build)?;
        let current = self.topology.load_full();
        let builder = Builder {
            runtime: &self.runtime,
            tick_queue: &self.tick_queue,
            hosts: &self.hosts,
            load_errors: &[],
            alerts: &self.alerts,
            fall_back: false,
        };
        let same_rules = applied.config.routes == next.routes
            && applied.config.proxy.max_body_bytes == next.proxy.max_body_bytes;
        let mut plan = Plan::default();
        // By name, once: a change to one of 10,000 pools must not compare
        // every pool with every other.
        let before_by_name: HashMap<&str, &PoolConfig> = applied
            .config
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        let previous_by_name: HashMap<&str, &Arc<Pool>> =
            current.pools.iter().map(|p| (p.name.as_str(), p)).collect();
        for (index, pool_config) in next.pools.iter().enumerate() {
            let before = before_by_name.get(pool_config.name.as_str()).copied();
            let previous = previous_by_name.get(pool_config.name.as_str()).copied();
            match (before, previous) {
                (Some(before), Some(previous))
                    if before == pool_config && !rebuild.contains(&pool_config.name) =>
                {
                    plan.report.unchanged.push(pool_config.name.clone());
                    plan.pools.push(Arc::clone(previous));
                }
                _ => {
                    let (pool, active) = builder
                        .pool(index, pool_config, previous, &applied.found(pool_config))
                        .map_err(|e| ReloadError::Build(format!("{e:#}")))?;
                    if previous.is_some() {
                        plan.report.changed.push(pool.name.clone());
                    } else {
                        plan.report.added.push(pool.name.clone());
                    }
                    plan.started.push((Arc::clone(&pool), active));
                    plan.pools.push(pool);
                }
            }
        }
        let next_names: HashSet<&str> = next.pools.iter().map(|p| p.name.as_str()).collect();
        for pool in &current.pools {
            if !next_names.contains(pool.name.as_str()) {
                plan.report.removed.push(pool.name.clone());
            }
        }
        if !keeps_routes(&current, same_rules, &plan.pools) {
            let recoveries = builder
                .route_recoveries(next)
                .map_err(|e| ReloadError::Build(format!("{e:#}")))?;
            plan.routes = RouteTable::Build(recoveries);
        }
        Ok(plan)
    }

    /// Swaps in what `plan` built for `next`.
    fn commit(&self, applied: &mut Applied, next: Config, plan: Plan) -> ReloadReport {
        let report = self.swap(applied, next, plan);
        // The unchanged pools by count: at 10,000 pools their names would
        // make every kept event a megabyte.
        self.alerts.events().publish(
            "config",
            serde_json::json!({
                "added": report.added,
                "changed": report.changed,
                "removed": report.removed,
                "unchanged": report.unchanged.len(),
                "routes": report.routes,
            }),
        );
        tracing::info!(
            added = ?report.added,
            changed = ?report.changed,
            removed = ?report.removed,
            unchanged = report.unchanged.len(),
            "config applied"
        );
        report
    }

    /// Swaps in what `plan` built for `next`, and starts and stops the
    /// pools' discovery as `next` says.
    fn swap(&self, applied: &mut Applied, next: Config, plan: Plan) -> ReloadReport {
        let Plan {
            pools,
            started,
            mut report,
            routes,
        } = plan;
        let routes = routes_for(&self.topology.load(), routes, &next, &pools);
        report.routes = next.routes.len();
        self.topology.store(Arc::new(Topology { routes, pools }));
        let rebuilt: Vec<Arc<Pool>> = started.iter().map(|(pool, _)| Arc::clone(pool)).collect();
        configure_admission(&next, &rebuilt);

        // The old pools' checks stop; the new pools' start.
        for name in report.changed.iter().chain(&report.removed) {
            for task in applied.checks.remove(name).unwrap_or_default() {
                task.abort();
            }
        }
        for (pool, active) in started {
            applied
                .checks
                .insert(pool.name.clone(), spawn(&pool, active));
        }
        applied.config = next;
        start_discovery(applied, &self.alerts, &self.updates);
        self.runtime.forget_dropped_pools();
        report
    }

    /// Applies the sets of endpoints discovery finds, until the process
    /// ends: the updates waiting are taken together and their pools
    /// rebuilt in one swap, each endpoint that stays keeping its
    /// statistics and health, each new one ramping through slow start,
    /// each gone one taking no new request while those it has finish.
    pub async fn apply_discovered(self: Arc<Self>) {
        let Some(mut receiver) = self.update_receiver.lock().unwrap().take() else {
            return;
        };
        let mut batch = Vec::new();
        loop {
            let draining = self.draining.load(std::sync::atomic::Ordering::Relaxed);
            let result = tokio::select! {
                taken = receiver.recv_many(&mut batch, 1024) => {
                    if taken == 0 {
                        return;
                    }
                    self.set_found(std::mem::take(&mut batch)).await.map(drop)
                }
                () = tokio::time::sleep(DRAIN_POLL), if draining => self.drop_drained().await,
            };
            if let Err(error) = result {
                tracing::error!("discovered endpoints were not applied: {error}");
            }
        }
    }

    /// Sets the endpoints each update's pool has from its source, and
    /// rebuilds the pools whose sets changed. An endpoint gone from the
    /// set with requests in flight stays as `draining` until they finish.
    /// Returns the pools rebuilt.
    pub async fn set_found(&self, updates: Vec<Update>) -> Result<Vec<String>, ReloadError> {
        let mut applied = self.applied.lock().await;
        let mut rebuild = HashSet::new();
        let serving_now = self.topology.load_full();
        for update in updates {
            let Some(pool_config) = applied.config.pool(&update.pool) else {
                continue;
            };
            let before = applied.found(pool_config);
            let sources = applied.found.entry(update.pool.clone()).or_default();
            let current = sources.get(&update.source).map_or(&[][..], Vec::as_slice);
            if current == update.found.as_slice() {
                continue;
            }
            if update.found.is_empty() {
                sources.remove(&update.source);
            } else {
                sources.insert(update.source, update.found);
            }
            let staying: HashSet<String> = sources
                .values()
                .flatten()
                .map(|f| f.address.clone())
                .collect();
            let serving = serving_now.pool(&update.pool);
            let in_flight = |address: &str| {
                serving
                    .and_then(|p| {
                        p.endpoints()
                            .all
                            .iter()
                            .find(|e| e.address == address)
                            .cloned()
                    })
                    .is_some_and(|e| e.stats.in_flight() > 0)
            };
            let draining = applied.draining.entry(update.pool.clone()).or_default();
            draining.retain(|(_, f)| !staying.contains(&f.address));
            for extra in before {
                let address = &extra.found.address;
                let known = draining.iter().any(|(_, f)| &f.address == address);
                if !staying.contains(address) && !known && in_flight(address) {
                    draining.push((extra.source, extra.found));
                }
            }
            rebuild.insert(update.pool);
        }
        applied.draining.retain(|_, list| !list.is_empty());
        self.draining.store(
            !applied.draining.is_empty(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if rebuild.is_empty() {
            return Ok(Vec::new());
        }
        let next = applied.config.clone();
        let plan = self.plan_with(&applied, &next, &rebuild)?;
        let report = self.swap(&mut applied, next, plan);
        Ok(report.changed)
    }

    /// Removes the draining endpoints whose requests have all finished,
    /// each with an event.
    async fn drop_drained(&self) -> Result<(), ReloadError> {
        let mut applied = self.applied.lock().await;
        let current = self.topology.load_full();
        let mut rebuild = HashSet::new();
        for (pool, list) in applied.draining.iter_mut() {
            let serving = current.pool(pool);
            list.retain(|(source, found)| {
                let busy = serving
                    .and_then(|p| {
                        let set = p.endpoints();
                        set.all.iter().find(|e| e.address == found.address).cloned()
                    })
                    .is_some_and(|e| e.stats.in_flight() > 0);
                if !busy {
                    rebuild.insert(pool.clone());
                    self.alerts.events().publish(
                        "discovery",
                        serde_json::json!({
                            "pool": pool,
                            "source": source.as_str(),
                            "endpoint": found.address,
                            "change": "drained",
                        }),
                    );
                }
                busy
            });
        }
        applied.draining.retain(|_, list| !list.is_empty());
        self.draining.store(
            !applied.draining.is_empty(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if rebuild.is_empty() {
            return Ok(());
        }
        let next = applied.config.clone();
        let plan = self.plan_with(&applied, &next, &rebuild)?;
        self.swap(&mut applied, next, plan);
        Ok(())
    }

    /// The config file's text and version.
    pub async fn read_file(&self) -> Result<(String, String), EditError<std::convert::Infallible>> {
        let file = self
            .file
            .lock()
            .unwrap()
            .clone()
            .ok_or(EditError::Reload(ReloadError::NoFile))?;
        crate::config::store::ConfigFile::new(file)
            .read()
            .map_err(EditError::Store)
    }

    /// Stops every active check.
    pub async fn stop(&self) {
        let mut applied = self.applied.lock().await;
        for (_, tasks) in applied.checks.drain() {
            for task in tasks {
                task.abort();
            }
        }
        for (_, (_, task)) in applied.discovery.drain() {
            task.abort();
        }
    }
}

/// Starts the DNS discovery of each pool of the applied config whose
/// `discovery` is new or changed, and stops that of pools that no longer
/// have one (forgetting what it found; a changed name keeps its last set
/// until the new name answers). A pool gone forgets all it found.
fn start_discovery(
    applied: &mut Applied,
    alerts: &Arc<Alerts>,
    updates: &tokio::sync::mpsc::UnboundedSender<Update>,
) {
    let Applied {
        config,
        found,
        draining,
        discovery: tasks,
        ..
    } = applied;
    found.retain(|pool, _| config.pool(pool).is_some());
    draining.retain(|pool, _| config.pool(pool).is_some());
    tasks.retain(|pool, (running, task)| {
        let keep = config
            .pool(pool)
            .and_then(|p| p.discovery.as_ref())
            .is_some_and(|wanted| wanted == running);
        if !keep {
            task.abort();
        }
        keep
    });
    for pool in &config.pools {
        match &pool.discovery {
            Some(wanted) if !tasks.contains_key(&pool.name) => {
                let task = discovery::dns::spawn(
                    pool.name.clone(),
                    wanted.clone(),
                    Arc::clone(alerts),
                    updates.clone(),
                );
                tasks.insert(pool.name.clone(), (wanted.clone(), task));
            }
            Some(_) => {}
            None => {
                if let Some(sources) = found.get_mut(&pool.name) {
                    sources.remove(&Source::Dns);
                }
            }
        }
    }
}

/// What differs between `current` and `next` that only a restart applies:
/// the listeners, the proxy workers and their settings, the plugin runtime.
fn restart_needed(current: &Config, next: &Config) -> Option<String> {
    if current.proxy.listen != next.proxy.listen {
        return Some(format!(
            "proxy.listen changed from {} to {}",
            current.proxy.listen, next.proxy.listen
        ));
    }
    if current.control.listen != next.control.listen {
        return Some(format!(
            "control.listen changed from {} to {}",
            current.control.listen, next.control.listen
        ));
    }
    if current.proxy.workers != next.proxy.workers {
        return Some(format!(
            "proxy.workers changed from {} to {}",
            current.proxy.workers, next.proxy.workers
        ));
    }
    if current.listeners != next.listeners {
        return Some(
            "[[listeners]] changed (listeners are bound at start; their certificate files are read again whenever they change)".into(),
        );
    }
    if current.proxy != next.proxy {
        return Some("[proxy] changed (its timeouts and fast_path are read at start)".into());
    }
    if current.control != next.control {
        return Some("[control] changed (its tokens and watch_config are read at start)".into());
    }
    if current.plugins != next.plugins {
        return Some("[plugins] changed (the plugin runtime is set up at start)".into());
    }
    if current.cluster != next.cluster {
        return Some("[cluster] changed (the fleet is joined at start)".into());
    }
    None
}

/// Starts a pool's active checks, if it has any.
fn spawn(pool: &Arc<Pool>, active: Option<ActiveChecks>) -> Vec<JoinHandle<()>> {
    match active {
        Some(active) => engine::spawn_checks(Arc::clone(pool), active.checker, active.schedule),
        None => Vec::new(),
    }
}

/// The route table of `config` over `pools`, each route with its own
/// recovery policy from `recoveries` (by index); no routes: everything to
/// the only pool (validation allows no routes only with one).
fn routes(
    config: &Config,
    pools: &[Arc<Pool>],
    previous: Option<&Routes>,
    recoveries: Vec<Option<Arc<engine::Recovery>>>,
) -> Routes {
    if config.routes.is_empty() {
        return Routes::new(
            (0..pools.len())
                .map(|index| Route {
                    pool: index,
                    max_body_bytes: config.proxy.max_body_bytes,
                    ..Route::default()
                })
                .collect(),
        );
    }
    let by_name: HashMap<&str, usize> = pools
        .iter()
        .enumerate()
        .map(|(index, p)| (p.name.as_str(), index))
        .collect();
    // A named route's counts carry over to the route of that name.
    let kept: HashMap<&str, &Arc<engine::Histogram>> =
        previous.map(|p| p.named().collect()).unwrap_or_default();
    // A rate limit's buckets carry over to the same `[[routes]]` entry (the
    // n-th of its kind, if it is written twice) with the same limit.
    let mut buckets: HashMap<u64, VecDeque<&Arc<engine::RateLimit>>> = HashMap::new();
    for limit in previous.into_iter().flat_map(Routes::rate_limits) {
        buckets.entry(limit.rule()).or_default().push_back(limit);
    }
    let mut recoveries = recoveries.into_iter();
    Routes::new(
        config
            .routes
            .iter()
            .map(|route| {
                let index = |name: &str| {
                    *by_name
                        .get(name)
                        .expect("validated: routes name existing pools")
                };
                let mut built = route_of(route, &index, config.proxy.max_body_bytes);
                built.recovery = recoveries.next().flatten();
                if let Some(kept) = built.name.as_deref().and_then(|name| kept.get(name)) {
                    built.duration = Some(Arc::clone(kept));
                }
                if let Some(limit) = &built.rate_limit {
                    let same_rule = buckets.get_mut(&limit.rule()).and_then(VecDeque::pop_front);
                    if let Some(kept) = same_rule.filter(|kept| kept.is_like(limit)) {
                        built.rate_limit = Some(Arc::clone(kept));
                    }
                }
                built
            })
            .collect(),
    )
}

/// The engine's route from a validated `[[routes]]` entry.
fn route_of(route: &RouteConfig, index: &dyn Fn(&str) -> usize, max_body_bytes: u64) -> Route {
    let split = (!route.split.is_empty()).then(|| {
        let targets = route
            .split
            .iter()
            .map(|target| (index(&target.pool), target.weight))
            .collect();
        Arc::new(Split::new(targets, route.hash_key.is_some()))
    });
    // A split route's own pool is its first: what the fast path checks the
    // protocol of, and where its settings are looked up.
    let pool = match route.split.first() {
        Some(first) => index(&first.pool),
        None => index(&route.pool),
    };
    let mirror = route.mirror.as_ref().map(|mirror| Mirror {
        pool: index(&mirror.pool),
        per_million: (mirror.percent * 10_000.0).round() as u32,
    });
    let header_name = |name: &str| {
        http::HeaderName::from_bytes(name.as_bytes()).expect("validated: a header name")
    };
    let host = match &route.host {
        None => HostMatch::Any,
        Some(host) => match host.strip_prefix("*.") {
            Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
            None => HostMatch::Exact(host.to_ascii_lowercase()),
        },
    };
    let path = match (&route.path_prefix, &route.path, &route.path_regex) {
        (_, Some(path), _) => PathMatch::Exact(path.clone()),
        (_, _, Some(pattern)) => PathMatch::Regex(
            regex::Regex::new(&config::anchored(pattern)).expect("validated: a regex"),
        ),
        (prefix, _, _) => PathMatch::Prefix(prefix.clone().unwrap_or_else(|| "/".into())),
    };
    let fields = |fields: &[FieldMatchConfig], header: bool| -> Vec<FieldMatch> {
        fields
            .iter()
            .map(|field| FieldMatch {
                name: if header {
                    field.name.to_ascii_lowercase()
                } else {
                    field.name.clone()
                },
                test: match (&field.exact, &field.regex, field.absent) {
                    (Some(exact), _, _) => FieldTest::Exact(exact.as_bytes().to_vec()),
                    (_, Some(pattern), _) => FieldTest::Regex(
                        regex::bytes::Regex::new(&config::anchored(pattern))
                            .expect("validated: a regex"),
                    ),
                    (_, _, Some(true)) => FieldTest::Absent,
                    _ => FieldTest::Present,
                },
            })
            .collect()
    };
    let edits = |edits: &HeaderEditsConfig| HeaderEdits {
        add: edits
            .add
            .iter()
            .map(|(name, value)| {
                let value = http::HeaderValue::from_str(value).expect("validated: a header value");
                (header_name(name), value)
            })
            .collect(),
        remove: edits.remove.iter().map(|name| header_name(name)).collect(),
    };
    let from = || route.path_prefix.clone().unwrap_or_else(|| "/".into());
    let rewrite = Rewrite {
        request_headers: edits(&route.request_headers),
        response_headers: edits(&route.response_headers),
        path: match (&route.rewrite_prefix, route.strip_prefix) {
            (Some(to), _) => PathRewrite::Replace {
                from: from(),
                to: to.clone(),
            },
            (None, true) => PathRewrite::Strip(from()),
            (None, false) => PathRewrite::Keep,
        },
    };
    let hash_key = match route.hash_key.clone().unwrap_or_default() {
        HashKeyConfig::Named(name) if name == "path" => HashKey::Path,
        HashKeyConfig::Named(_) => HashKey::Client,
        HashKeyConfig::Field(field) => match (&field.header, &field.cookie) {
            (Some(header), _) => HashKey::Header(header_name(header)),
            (None, Some(cookie)) => HashKey::Cookie(cookie.clone()),
            (None, None) => HashKey::Client,
        },
    };
    Route {
        host,
        path,
        methods: route.methods.clone().unwrap_or_default(),
        headers: fields(&route.headers, true),
        query: fields(&route.query, false),
        pool,
        max_body_bytes: route.max_body_bytes.unwrap_or(max_body_bytes),
        priority: priority(route.priority),
        priority_header: route.priority_header.as_deref().map(header_name),
        rewrite: (rewrite != Rewrite::default()).then(|| Arc::new(rewrite)),
        hash_key,
        request_timeout: route.request_timeout_ms.map(Duration::from_millis),
        retries: route.retries,
        // Made in the plan, where a plugin may refuse it (`route_recoveries`).
        recovery: None,
        split,
        mirror,
        name: route.name.as_deref().map(Arc::from),
        duration: route.name.as_ref().map(|_| Arc::default()),
        broadcast: route.broadcast,
        rate_limit: route
            .rate_limit
            .as_ref()
            .map(|limit| rate_limit(limit, route)),
    }
}

/// Whether the route table serving in `current` can serve `pools`: the
/// rules and the body limit they default to are the same (`same_rules`)
/// and so are the pools' names in order (a change to pools' endpoints or
/// plugins leaves it as it is).
fn keeps_routes(current: &Topology, same_rules: bool, pools: &[Arc<Pool>]) -> bool {
    let same_pools = current.pools.len() == pools.len()
        && current
            .pools
            .iter()
            .zip(pools)
            .all(|(before, after)| before.name == after.name);
    same_rules && same_pools
}

/// The route table for `next` served by `pools`: the current one, or one
/// built anew as the plan says.
fn routes_for(
    current: &Topology,
    table: RouteTable,
    next: &Config,
    pools: &[Arc<Pool>],
) -> Arc<Routes> {
    match table {
        RouteTable::Keep => Arc::clone(&current.routes),
        RouteTable::Build(recoveries) => {
            Arc::new(routes(next, pools, Some(&current.routes), recoveries))
        }
    }
}

/// The JSON a recovery plugin is configured with.
fn recovery_json(recovery: &RecoveryConfig) -> String {
    serde_json::to_string(&recovery.config).unwrap_or_else(|_| "{}".into())
}

/// The engine's recovery from a `recovery` table, decided by `policy`.
fn recovery_with(
    recovery: &RecoveryConfig,
    policy: Arc<dyn engine::RecoveryPolicy>,
) -> engine::Recovery {
    engine::Recovery {
        policy,
        budget: engine::RetryBudget::new(
            recovery.budget_percent,
            recovery.min_retries_per_second,
            Duration::from_millis(recovery.budget_window_ms),
        ),
        max_replay_body: recovery.max_replay_body_bytes,
    }
}

/// The engine's limit for `route`'s `rate_limit`, with full buckets, named
/// by a fingerprint of the whole entry.
fn rate_limit(config: &RateLimitConfig, route: &RouteConfig) -> Arc<engine::RateLimit> {
    let key = match &config.key {
        RateKeyConfig::Route => engine::RateKey::Route,
        RateKeyConfig::Client => engine::RateKey::Client,
        RateKeyConfig::Header(name) => engine::RateKey::Header(name.clone()),
    };
    // Its debug form holds every key of the entry; the hasher's keys are
    // fixed, so equal entries give equal fingerprints.
    let mut rule = std::hash::DefaultHasher::new();
    format!("{route:?}").hash(&mut rule);
    let limit = engine::RateLimit::new(
        config.per_second,
        config.burst.unwrap_or(config.per_second),
        key,
        config.keys,
    );
    Arc::new(limit.for_rule(rule.finish()))
}

/// The engine's class for a route's `priority`.
fn priority(class: PriorityClass) -> engine::Priority {
    match class {
        PriorityClass::P0 => engine::Priority::P0,
        PriorityClass::P1 => engine::Priority::P1,
        PriorityClass::P2 => engine::Priority::P2,
        PriorityClass::P3 => engine::Priority::P3,
        PriorityClass::P4 => engine::Priority::P4,
    }
}

/// How a pool admits requests; `None` when neither it nor an endpoint
/// limits them.
fn admission_settings(pool: &PoolConfig) -> Option<engine::AdmissionSettings> {
    let limited = pool.max_in_flight.is_some()
        || pool.adaptive_concurrency.is_some()
        || pool.endpoints.iter().any(|e| e.capacity > 0);
    if !limited {
        return None;
    }
    let queue = &pool.queue;
    Some(engine::AdmissionSettings {
        max_in_flight: pool.max_in_flight.unwrap_or(0),
        queue_len: queue.max_len,
        max_wait: [
            queue.p0_ms,
            queue.p1_ms,
            queue.p2_ms,
            queue.p3_ms,
            queue.p4_ms,
        ]
        .map(Duration::from_millis),
        retry_after_s: queue.retry_after_s,
        reserve_percent: queue.reserve_percent,
        adaptive: pool
            .adaptive_concurrency
            .as_ref()
            .map(|a| engine::AdaptiveSettings {
                min_limit: a.min_limit,
                max_limit: a.max_limit,
                initial_limit: a.initial_limit,
                tolerance: a.tolerance,
                smoothing: a.smoothing,
            }),
    })
}

/// Gives the admission each rebuilt pool kept from the pool it replaced
/// the settings of the config now applied.
fn configure_admission(next: &Config, rebuilt: &[Arc<Pool>]) {
    let by_name: HashMap<&str, &PoolConfig> =
        next.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    for pool in rebuilt {
        let (Some(admission), Some(config)) = (pool.admission(), by_name.get(pool.name.as_str()))
        else {
            continue;
        };
        if let Some(settings) = admission_settings(config) {
            if admission.settings() != settings {
                admission.configure(settings);
            }
        }
    }
}

/// The engine's health policy from a pool's table.
fn health_policy(pool: &PoolConfig) -> HealthPolicy {
    let outlier = &pool.outlier;
    HealthPolicy {
        failover_threshold: pool.failover_threshold,
        panic_threshold: pool.panic_threshold,
        slow_start: Duration::from_millis(pool.slow_start_ms),
        connect_failure_hold: Duration::from_millis(pool.connect_failure_hold_ms),
        active_checks: pool.health.is_some(),
        outlier: outlier.enabled.then(|| OutlierPolicy {
            consecutive_failures: outlier.consecutive_failures,
            base_ejection: Duration::from_millis(outlier.base_ejection_ms),
            max_ejection: Duration::from_millis(outlier.max_ejection_ms),
            max_ejection_percent: outlier.max_ejection_percent,
            interval: Duration::from_millis(outlier.interval_ms),
            min_success_rate: outlier.min_success_rate,
            min_requests: outlier.min_requests,
            uneject_on_active_success: outlier.uneject_on_active_success,
        }),
    }
}

/// Builds pools: at start, where a rejected plugin may fall back to its last
/// good version, or in a reload, where it may not (a reload that cannot be
/// built changes nothing instead).
struct Builder<'a> {
    runtime: &'a PluginRuntime,
    tick_queue: &'a Arc<engine::TickQueue>,
    hosts: &'a Arc<discovery::hosts::HostCache>,
    load_errors: &'a [plugins::LoadError],
    alerts: &'a Arc<Alerts>,
    fall_back: bool,
}

impl Builder<'_> {
    /// Builds pool `index` of the config; with `previous` (the pool of that
    /// name serving now), endpoints of the same address keep their
    /// statistics and health.
    /// The endpoints of `found` (discovered: not in the config) follow
    /// those the config lists; one at an address listed is left out.
    fn pool(
        &self,
        index: usize,
        pool_config: &PoolConfig,
        previous: Option<&Arc<Pool>>,
        found: &[Extra],
    ) -> anyhow::Result<(Arc<Pool>, Option<ActiveChecks>)> {
        let key = format!("pools[{index}] (`{}`)", pool_config.name);
        let previous_endpoints = previous.map(|p| p.endpoints().all.clone());
        // An endpoint at an address the serving pool has keeps its figures.
        let carry_stats = |built: &mut Endpoint| {
            let same = previous_endpoints
                .iter()
                .flatten()
                .find(|e| e.address == built.address);
            if let Some(same) = same {
                built.stats = Arc::clone(&same.stats);
            }
        };
        let mut endpoints = Vec::new();
        let mut addresses: HashSet<&str> = HashSet::new();
        for (id, endpoint) in pool_config.endpoints.iter().enumerate() {
            addresses.insert(endpoint.address.as_str());
            let mut built = Endpoint::new(
                id as u32,
                &endpoint.address,
                endpoint.weight,
                endpoint.capacity,
            )
            .with_context(|| format!("{key}.endpoints[{id}].address: `{}`", endpoint.address))?;
            built.zone = endpoint.zone.clone();
            built.tier = endpoint.tier;
            built.resolved = self.hosts.resolved(&endpoint.address);
            built.labels = endpoint.labels.clone();
            built.admin = match endpoint.state {
                EndpointState::Active => Admin::Active,
                EndpointState::Draining => Admin::Draining,
                EndpointState::Disabled => Admin::Disabled,
            };
            carry_stats(&mut built);
            endpoints.push(Arc::new(built));
        }
        for extra in found {
            let endpoint = &extra.found;
            if !addresses.insert(endpoint.address.as_str()) {
                continue;
            }
            let id = endpoints.len() as u32;
            let Ok(mut built) = Endpoint::new(id, &endpoint.address, endpoint.weight, 0) else {
                tracing::warn!(pool = %pool_config.name, "discovered endpoint `{}` is not host:port", endpoint.address);
                continue;
            };
            built.tier = endpoint.tier;
            built.labels = endpoint.labels.clone();
            built.source = extra.source;
            // A registered `host:port` is kept resolved as a listed one is.
            built.resolved = self.hosts.resolved(&endpoint.address);
            if extra.draining {
                built.admin = Admin::Draining;
            }
            carry_stats(&mut built);
            endpoints.push(Arc::new(built));
        }
        let name = &pool_config.name;
        let (plugin, balancer) = match &pool_config.balancer {
            Some(balancer) => {
                self.require(&balancer.plugin, &format!("{key}.balancer.plugin"), name)?;
                let config_json = balancer.config_json();
                let wasm: Arc<dyn engine::Balancer> = match &pool_config.record {
                    Some(record) => self
                        .runtime
                        .recorded_balancer(&balancer.plugin, name, &config_json, record)
                        .map_err(|reason| anyhow::anyhow!("{key}.record.file: {reason}"))?,
                    None => self.runtime.balancer(&balancer.plugin, name, &config_json),
                };
                (Some(balancer.plugin.clone()), Some(wasm))
            }
            None => (None, None),
        };
        let mut pool = Pool::with_health(
            name.clone(),
            endpoints,
            plugin,
            balancer,
            health_policy(pool_config),
            Arc::clone(self.alerts),
        );
        let recovery_json = pool_config.recovery.as_ref().map(recovery_json);
        if let Some(recovery) = &pool_config.recovery {
            let policy: Arc<dyn engine::RecoveryPolicy> = match &recovery.plugin {
                Some(plugin) => {
                    self.require(plugin, &format!("{key}.recovery.plugin"), name)?;
                    self.runtime
                        .recovery(plugin, name, recovery_json.as_deref().unwrap_or("{}"))
                }
                None => Arc::new(engine::RetryOnce),
            };
            pool = pool.with_recovery(recovery_with(recovery, policy));
        }
        pool = pool.with_upstream(crate::proxy::tls::upstream_protocol(pool_config, &key)?);
        if let Some(settings) = admission_settings(pool_config) {
            // The running pool's counts and queue carry over; its settings
            // change when the reload is committed (`configure_admission`).
            let admission = match previous.and_then(|p| p.admission()) {
                Some(running) => Arc::clone(running),
                None => engine::Admission::new(settings),
            };
            pool = pool.with_admission(admission);
        }
        if let Some(previous) = previous {
            pool.inherit_health(previous);
        }
        let pool = Arc::new(pool);
        self.tick_queue.register(&pool);
        if let (Some(recovery), Some(json)) = (&pool_config.recovery, &recovery_json) {
            if let Some(plugin) = &recovery.plugin {
                self.attach(
                    plugin,
                    Role::Recovery,
                    &pool,
                    json,
                    &format!("{key}.recovery"),
                )?;
            }
        }
        if let Some(balancer) = &pool_config.balancer {
            self.attach(
                &balancer.plugin,
                Role::Balancer,
                &pool,
                &balancer.config_json(),
                &format!("{key}.balancer"),
            )?;
        }
        let active = match &pool_config.health {
            Some(health) => {
                let checker: Arc<dyn HealthChecker> = match &health.plugin {
                    Some(plugin) => {
                        self.require(plugin, &format!("{key}.health.plugin"), name)?;
                        let config_json =
                            serde_json::to_string(&health.config).unwrap_or_else(|_| "{}".into());
                        self.attach(
                            plugin,
                            Role::HealthCheck,
                            &pool,
                            &config_json,
                            &format!("{key}.health"),
                        )?;
                        self.runtime
                            .health_check(plugin, name, &config_json, pool.upstream())
                    }
                    None => Arc::new(TcpCheck),
                };
                Some(ActiveChecks {
                    checker,
                    schedule: CheckSchedule {
                        interval: Duration::from_millis(health.interval_ms),
                        jitter: Duration::from_millis(health.jitter_ms),
                        timeout: Duration::from_millis(health.timeout_ms),
                        rise: health.rise,
                        fall: health.fall,
                    },
                })
            }
            None => None,
        };
        Ok((pool, active))
    }

    /// The recovery policies of `config`'s routes that have their own, by
    /// index: each a policy and budget of its own, a plugin's checked
    /// against the route's config and recorded as one of its users (the
    /// use lasting as long as the route table holding the policy).
    fn route_recoveries(
        &self,
        config: &Config,
    ) -> anyhow::Result<Vec<Option<Arc<engine::Recovery>>>> {
        let mut recoveries = Vec::with_capacity(config.routes.len());
        for (index, route) in config.routes.iter().enumerate() {
            let Some(recovery) = &route.recovery else {
                recoveries.push(None);
                continue;
            };
            let key = format!("routes[{index}]");
            // Where an alert about the plugin goes: the route's (first) pool.
            let pool = route.split.first().map_or(&route.pool, |t| &t.pool);
            let json = recovery_json(recovery);
            let Some(plugin) = &recovery.plugin else {
                recoveries.push(Some(Arc::new(recovery_with(
                    recovery,
                    Arc::new(engine::RetryOnce),
                ))));
                continue;
            };
            self.require(plugin, &format!("{key}.recovery.plugin"), pool)?;
            let policy = self.runtime.route_recovery(plugin, &key, &json);
            let built = Arc::new(recovery_with(recovery, policy));
            self.attach_with(plugin, &format!("{key}.recovery"), pool, || {
                self.runtime.attach_route(plugin, &key, &built, &json)
            })?;
            recoveries.push(Some(built));
        }
        Ok(recoveries)
    }

    /// Makes sure plugin `name` serves, for pool `pool` at config key `key`.
    /// At start, when no version serves because the file in the folder was
    /// rejected (or is missing), the last version that configured
    /// successfully in an earlier run serves instead, with a P1 alert; a
    /// plugin never loaded before fails with the reason.
    fn require(&self, name: &str, key: &str, pool: &str) -> anyhow::Result<()> {
        let slot = self.runtime.slot(name);
        if slot.current().is_some() {
            return Ok(());
        }
        // A file written just before the config that names it may not have
        // been loaded by the folder's watcher yet (a Python plugin takes
        // seconds to compile): it is loaded here rather than the config
        // refused. A file refused before is not judged again.
        let mut load_error = None;
        if slot.path.is_file() {
            if let Err(error) = self.runtime.load(&slot.path) {
                load_error = Some(error.to_string());
            }
            if slot.current().is_some() {
                return Ok(());
            }
        }
        let why = load_error
            .or_else(|| {
                self.load_errors
                    .iter()
                    .find(|e| e.name == name)
                    .map(ToString::to_string)
            })
            .unwrap_or_else(|| format!("no file {}", slot.path.display()));
        self.fall_back(name, &why, pool)
            .map_err(|no_fallback| anyhow::anyhow!("{key} = \"{name}\": {why}; {no_fallback}"))
    }

    /// Attaches `pool` to plugin `name`; at start, when the serving version
    /// refuses the pool's config, falls back as [`Builder::require`] does.
    fn attach(
        &self,
        name: &str,
        role: Role,
        pool: &Arc<Pool>,
        config_json: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        self.attach_with(name, key, &pool.name, || {
            self.runtime.attach(name, role, pool, config_json)
        })
    }

    /// Attaches a user to plugin `name` by `attach`, at config key `key`;
    /// at start, when the serving version refuses it, falls back to the
    /// last good version (alerting on pool `pool`) and attaches again.
    fn attach_with(
        &self,
        name: &str,
        key: &str,
        pool: &str,
        attach: impl Fn() -> Result<(), plugins::LoadError>,
    ) -> anyhow::Result<()> {
        let Err(error) = attach() else {
            return Ok(());
        };
        let why = error.to_string();
        self.fall_back(name, &why, pool)
            .map_err(|no_fallback| anyhow::anyhow!("{key}: {why}; {no_fallback}"))?;
        attach().with_context(|| format!("{key}: the last good version of plugin `{name}`"))
    }

    /// Serves plugin `name` from its last good file, rejected in the folder
    /// for `why`, and raises the P1 alert that says so.
    fn fall_back(&self, name: &str, why: &str, pool: &str) -> Result<(), String> {
        if !self.fall_back {
            return Err("a reload does not fall back to an earlier version".into());
        }
        let version = self.runtime.restore_last_good(name, why)?;
        self.alerts.raise(
            engine::Severity::P1,
            pool,
            None,
            format!(
                "plugin `{name}` serves its last good version ({}) from an earlier run: {why}",
                &version.hash[..12]
            ),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_changes_name_what_went_and_what_came() {
        let before = "[[pools]]\nname = \"web\"\nendpoints = [\n  { address = \"a:1\" },\n]\n";
        let after =
            "[[pools]]\nname = \"web\"\nendpoints = [\n  { address = \"a:1\", weight = 2 },\n]\n";
        let changes = LineChanges::between(before, after);
        assert_eq!(changes.removed, ["  { address = \"a:1\" },"]);
        assert_eq!(changes.added, ["  { address = \"a:1\", weight = 2 },"]);
        assert_eq!(LineChanges::between(before, before), LineChanges::default());
    }

    fn config(body: &str) -> Config {
        Config::parse(body, "test").unwrap()
    }

    fn built(config: &Config) -> Vec<Arc<Pool>> {
        config
            .pools
            .iter()
            .map(|pool| Arc::new(Pool::new(pool.name.clone(), Vec::new(), None, None)))
            .collect()
    }

    #[test]
    fn a_rebuilt_table_keeps_the_buckets_of_the_same_entries() {
        let pool = "[[pools]]\nname = \"a\"\nendpoints = [{ address = \"127.0.0.1:1\" }]\n\n";
        let limited = |prefix: &str, per_second: u32| {
            format!(
                "[[routes]]\npath_prefix = \"{prefix}\"\npool = \"a\"\n\
                 rate_limit = {{ per_second = {per_second}, key = \"client\" }}\n\n"
            )
        };
        let before = config(&format!(
            "{pool}{}{}{}",
            limited("/a", 10),
            limited("/a", 10),
            limited("/b", 10)
        ));
        let previous = super::routes(&before, &built(&before), None, Vec::new());
        // A route before them, the two `/a` as they were, `/b` at another rate.
        let after = config(&format!(
            "{pool}[[routes]]\nhost = \"new.test\"\npool = \"a\"\n\n{}{}{}",
            limited("/a", 10),
            limited("/a", 10),
            limited("/b", 20)
        ));
        let rebuilt = super::routes(&after, &built(&after), Some(&previous), Vec::new());
        let (was, now): (Vec<_>, Vec<_>) = (
            previous.rate_limits().collect(),
            rebuilt.rate_limits().collect(),
        );
        assert_eq!(now.len(), 3);
        assert!(Arc::ptr_eq(now[0], was[0]) && Arc::ptr_eq(now[1], was[1]));
        assert!(
            !was.iter().any(|was| Arc::ptr_eq(now[2], was)),
            "/b changed"
        );
        assert_eq!(now[2].per_second(), 20);
    }

    #[test]
    fn the_route_table_is_kept_while_its_rules_and_the_pools_order_are() {
        let pools = "[[pools]]\nname = \"a\"\nendpoints = [{ address = \"127.0.0.1:1\" }]\n\n\
                     [[pools]]\nname = \"b\"\nendpoints = [{ address = \"127.0.0.1:2\" }]\n\n";
        let routes = "[[routes]]\nhost = \"b.test\"\npool = \"b\"\n\n[[routes]]\npool = \"a\"\n";
        let before = config(&format!("{pools}{routes}"));
        let current = Topology {
            routes: Arc::new(super::routes(&before, &built(&before), None, Vec::new())),
            pools: built(&before),
        };
        // As a plan decides, then as its commit does.
        let table_for = |next: &Config| {
            let pools = built(next);
            let table = if keeps_routes(&current, before.routes == next.routes, &pools) {
                RouteTable::Keep
            } else {
                RouteTable::Build(Vec::new())
            };
            routes_for(&current, table, next, &pools)
        };
        // A pool's endpoints changed: same rules, same pools in order.
        let endpoint_changed = config(&format!(
            "{}{routes}",
            pools.replace("127.0.0.1:2", "127.0.0.1:3")
        ));
        let kept = table_for(&endpoint_changed);
        assert!(Arc::ptr_eq(&kept, &current.routes));
        // A rule changed, or the pools moved: built anew, by the new order.
        let rule_changed = config(&format!("{pools}{}", routes.replace("b.test", "c.test")));
        let rebuilt = table_for(&rule_changed);
        assert!(!Arc::ptr_eq(&rebuilt, &current.routes));
        let (first, second) = pools.split_at(pools.find("[[pools]]\nname = \"b\"").unwrap());
        let reordered = config(&format!("{second}{first}{routes}"));
        let rebuilt = table_for(&reordered);
        assert!(!Arc::ptr_eq(&rebuilt, &current.routes));
        let to_b = rebuilt.find_route(Some("b.test"), "/").unwrap();
        assert_eq!(to_b.pool, 0, "`b` is first now");
    }

    #[test]
    fn a_route_with_its_own_recovery_replaces_its_pools() {
        let body = "[[pools]]\nname = \"a\"\nendpoints = [{ address = \"127.0.0.1:1\" }]\n\
                    recovery = { plugin = \"retry-backoff\" }\n\n\
                    [[routes]]\npath = \"/own\"\npool = \"a\"\n\
                    recovery = { budget_percent = 50, max_replay_body_bytes = 10 }\n\n\
                    [[routes]]\npath = \"/none\"\npool = \"a\"\nretries = false\n\n\
                    [[routes]]\npool = \"a\"\n";
        let config = config(body);
        let pool_policy = recovery_with(
            config.pools[0].recovery.as_ref().unwrap(),
            Arc::new(engine::RetryOnce),
        );
        let pool =
            Arc::new(Pool::new("a".into(), Vec::new(), None, None).with_recovery(pool_policy));
        let own = Arc::new(recovery_with(
            config.routes[0].recovery.as_ref().unwrap(),
            Arc::new(engine::RetryOnce),
        ));
        let table = super::routes(
            &config,
            &[Arc::clone(&pool)],
            None,
            vec![Some(Arc::clone(&own)), None, None],
        );
        let decided = |path: &str| {
            let route = table.find_route(None, path).unwrap();
            route.recovery(&pool).map(|r| r as *const engine::Recovery)
        };
        assert_eq!(decided("/own"), Some(Arc::as_ptr(&own)));
        assert_eq!(own.max_replay_body, 10);
        assert_eq!(decided("/none"), None, "retries = false: one attempt");
        assert_eq!(
            decided("/other"),
            pool.recovery().map(|r| r as *const engine::Recovery)
        );
    }
}
