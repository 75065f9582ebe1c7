//! Switchyard: a programmable traffic manager. A native host owns the hot
//! path; balancing policy runs as sandboxed, hot-swappable WebAssembly
//! components.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, its defaults and validation.
//! - [`engine`]: routes, pools, endpoints and their live load (plain Rust).
//! - [`plugins`]: the wasmtime runtime — loading, caching, sandboxing,
//!   per-worker instances, faults, live reload. The only module that knows
//!   wasmtime.
//! - [`proxy`]: the HTTP/1.1 reverse proxy.
//! - [`control`]: the control endpoint (JSON API, metrics).
//! - [`metrics`]: counters and the Prometheus exposition.
//! - [`build`]: `switchyard plugin build`.
//! - [`demo`]: `switchyard demo`, with upstreams of its own.
//!
//! [`Server::bind`] then [`Server::run`] is the whole program; tests bind
//! port 0 and read the addresses back.

pub mod build;
pub mod config;
pub mod control;
pub mod demo;
pub mod engine;
pub mod metrics;
pub mod plugins;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use config::Config;
use control::ControlState;
use engine::{
    Alerts, CheckSchedule, Endpoint, HealthChecker, HealthPolicy, OutlierPolicy, Pool, Route,
    Routes, TcpCheck,
};
use metrics::Metrics;
use plugins::{PluginRuntime, Role};
use proxy::Proxy;

/// A configured, bound, not yet serving Switchyard.
#[derive(Debug)]
pub struct Server {
    config: Config,
    checks: Vec<ActiveChecks>,
    _watcher: Option<plugins::Watcher>,
    proxy_listener: std::net::TcpListener,
    control_listener: TcpListener,
    routes: Routes,
    control: Arc<ControlState>,
}

impl Server {
    /// Loads the plugins, builds the pools and routes, and binds both
    /// listeners. Every error names the config key or plugin file at fault.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let folder_ready = ensure_plugin_folder(&config)?;
        let runtime = PluginRuntime::new(&config.plugins)?;
        // Watch before the first load, so no change between the two is missed;
        // a file loaded twice is recognised by its hash.
        let watcher = if config.plugins.watch && folder_ready {
            Some(plugins::watch(
                runtime.clone(),
                Duration::from_millis(config.plugins.debounce_ms),
            )?)
        } else {
            None
        };
        let load_errors = runtime.load_dir();
        let alerts = Arc::new(Alerts::default());
        let (pools, checks) = build_pools(&config, &runtime, &load_errors, &alerts)?;
        for error in &load_errors {
            tracing::warn!("{error}");
        }
        // What serves now configured for every pool: the versions to fall
        // back on if a later start finds their files rejected.
        runtime.keep_serving_as_good();

        let routes = if config.routes.is_empty() {
            Routes::new(
                pools
                    .iter()
                    .map(|pool| Route {
                        host: None,
                        path_prefix: "/".into(),
                        pool: Arc::clone(pool),
                    })
                    .collect(),
            )
        } else {
            Routes::new(
                config
                    .routes
                    .iter()
                    .map(|route| Route {
                        host: route.host.as_ref().map(|h| h.to_ascii_lowercase()),
                        path_prefix: route.path_prefix.clone().unwrap_or_else(|| "/".into()),
                        pool: pools
                            .iter()
                            .find(|p| p.name == route.pool)
                            .cloned()
                            .expect("validated: routes name existing pools"),
                    })
                    .collect(),
            )
        };

        let metrics = Arc::new(Metrics::new(config.proxy.workers));
        let proxy_listener = bind_proxy_listener(config.proxy.listen)
            .with_context(|| format!("cannot listen on proxy.listen = {}", config.proxy.listen))?;
        let control_listener = TcpListener::bind(config.control.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on control.listen = {}",
                    config.control.listen
                )
            })?;
        let control = Arc::new(ControlState {
            pools,
            runtime,
            alerts,
            metrics,
            started: Instant::now(),
        });
        Ok(Server {
            config,
            checks,
            _watcher: watcher,
            proxy_listener,
            control_listener,
            routes,
            control,
        })
    }

    /// The proxy's bound address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_listener.local_addr().expect("bound listener")
    }

    /// The control endpoint's bound address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` completes, then stops accepting and lets
    /// in-flight requests finish within `proxy.shutdown_grace_ms`.
    ///
    /// The proxy runs on `proxy.workers` threads of its own, each with a
    /// single-threaded runtime accepting from the shared listener: a request,
    /// its upstream connection and its plugin instance stay on one thread, so
    /// nothing on the request path wakes another thread. The control API,
    /// health checks and timers run on the caller's runtime.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
        let control = tokio::spawn(control::serve(
            self.control_listener,
            Arc::clone(&self.control),
            wait_for(stop_receiver.clone()),
        ));
        let readmission = tokio::spawn(readmit_ejected(self.control.pools.clone()));
        let check_tasks: Vec<_> = self
            .checks
            .into_iter()
            .flat_map(|checks| engine::spawn_checks(checks.pool, checks.checker, checks.schedule))
            .collect();
        let grace = Duration::from_millis(self.config.proxy.shutdown_grace_ms);
        let (proxy_stop, proxy_stop_receiver) = tokio::sync::watch::channel(false);
        let (done_sender, mut done) = tokio::sync::mpsc::channel::<()>(1);
        let mut workers = Vec::with_capacity(self.config.proxy.workers);
        for worker in 0..self.config.proxy.workers {
            let listener = self
                .proxy_listener
                .try_clone()
                .context("cannot share the proxy listener with a worker")?;
            let proxy = Arc::new(Proxy::new(
                &self.config.proxy,
                self.routes.clone(),
                Arc::clone(&self.control.metrics),
                worker,
            ));
            let stop = wait_for(proxy_stop_receiver.clone());
            let done = done_sender.clone();
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-proxy-{worker}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot start a proxy worker's runtime")?;
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)
                            .context("cannot register the proxy listener")?;
                        proxy::serve(listener, proxy, stop, grace).await;
                        drop(done);
                        anyhow::Ok(())
                    })
                })
                .context("cannot start a proxy worker thread")?;
            workers.push(thread);
        }
        drop(done_sender);
        drop(self.proxy_listener);
        tokio::select! {
            () = shutdown => {}
            // Every worker stopped on its own (none could start its runtime).
            _ = done.recv() => {}
        }
        let _ = proxy_stop.send(true);
        let mut result = Ok(());
        for thread in workers {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => result = Err(error),
                Ok(Err(_)) | Err(_) => {
                    result = Err(anyhow::anyhow!("a proxy worker thread panicked"));
                }
            }
        }
        let _ = stop_sender.send(true);
        let _ = control.await;
        readmission.abort();
        for task in check_tasks {
            task.abort();
        }
        result
    }
}

/// Creates a missing plugin folder. Whether the folder is there to watch: a
/// folder that cannot be created fails the start only when a pool names a
/// plugin.
fn ensure_plugin_folder(config: &Config) -> anyhow::Result<bool> {
    let dir = &config.plugins.dir;
    if dir.is_dir() {
        return Ok(true);
    }
    match std::fs::create_dir_all(dir) {
        Ok(()) => {
            tracing::info!("created the plugin folder {}", dir.display());
            Ok(true)
        }
        Err(error)
            if config
                .pools
                .iter()
                .any(|p| !config::plugin_names(p).is_empty()) =>
        {
            Err(anyhow::anyhow!(
                "plugins.dir = {}: the folder is missing and cannot be created: {error}",
                dir.display()
            ))
        }
        Err(error) => {
            tracing::warn!(
                "plugins.dir = {}: the folder is missing and cannot be created ({error}); no pool names a plugin, so none is loaded or watched",
                dir.display()
            );
            Ok(false)
        }
    }
}

/// The proxy's listening socket, shared by every worker: whichever worker is
/// free accepts the next connection.
fn bind_proxy_listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

/// How often ejections that ran out are checked for readmission.
const READMISSION_TICK: Duration = Duration::from_millis(20);

async fn readmit_ejected(pools: Vec<Arc<Pool>>) {
    let mut tick = tokio::time::interval(READMISSION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = std::time::Instant::now();
        for pool in &pools {
            pool.tick(now);
        }
    }
}

fn health_policy(pool: &config::PoolConfig) -> HealthPolicy {
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

async fn wait_for(mut receiver: tokio::sync::watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

/// A pool's active checks, started by [`Server::run`].
#[derive(Debug)]
struct ActiveChecks {
    pool: Arc<Pool>,
    checker: Arc<dyn HealthChecker>,
    schedule: CheckSchedule,
}

/// Makes sure plugin `name` serves, for pool `pool` at config key `key`.
/// When no version serves because the file in the folder was rejected (or is
/// missing), the last version that configured successfully in an earlier
/// run serves instead, with a P1 alert; a plugin never loaded before fails
/// with the reason.
fn require_plugin(
    runtime: &PluginRuntime,
    load_errors: &[plugins::LoadError],
    name: &str,
    key: &str,
    pool: &str,
    alerts: &Alerts,
) -> anyhow::Result<()> {
    let slot = runtime.slot(name);
    if slot.current().is_some() {
        return Ok(());
    }
    let why = load_errors
        .iter()
        .find(|e| e.name == name)
        .map(ToString::to_string)
        .unwrap_or_else(|| format!("no file {}", slot.path.display()));
    fall_back(runtime, name, &why, pool, alerts)
        .map_err(|no_fallback| anyhow::anyhow!("{key} = \"{name}\": {why}; {no_fallback}"))
}

/// Attaches pool `pool` to plugin `name`; when the serving version refuses
/// the pool's config, falls back as [`require_plugin`] does.
fn attach_plugin(
    runtime: &PluginRuntime,
    name: &str,
    role: Role,
    pool: &Arc<Pool>,
    config_json: &str,
    key: &str,
    alerts: &Alerts,
) -> anyhow::Result<()> {
    let Err(error) = runtime.attach(name, role, pool, config_json) else {
        return Ok(());
    };
    let why = error.to_string();
    fall_back(runtime, name, &why, &pool.name, alerts)
        .map_err(|no_fallback| anyhow::anyhow!("{key}: {why}; {no_fallback}"))?;
    runtime
        .attach(name, role, pool, config_json)
        .with_context(|| format!("{key}: the last good version of plugin `{name}`"))
}

/// Serves plugin `name` from its last good file, rejected in the folder for
/// `why`, and raises the P1 alert that says so.
fn fall_back(
    runtime: &PluginRuntime,
    name: &str,
    why: &str,
    pool: &str,
    alerts: &Alerts,
) -> Result<(), String> {
    let version = runtime.restore_last_good(name, why)?;
    alerts.raise(
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

fn build_pools(
    config: &Config,
    runtime: &PluginRuntime,
    load_errors: &[plugins::LoadError],
    alerts: &Arc<Alerts>,
) -> anyhow::Result<(Vec<Arc<Pool>>, Vec<ActiveChecks>)> {
    let mut pools = Vec::new();
    let mut checks = Vec::new();
    for (index, pool_config) in config.pools.iter().enumerate() {
        let key = format!("pools[{index}] (`{}`)", pool_config.name);
        let mut endpoints = Vec::new();
        for (id, endpoint) in pool_config.endpoints.iter().enumerate() {
            let mut built = Endpoint::new(
                id as u32,
                &endpoint.address,
                endpoint.weight,
                endpoint.capacity,
            )
            .with_context(|| format!("{key}.endpoints[{id}].address: `{}`", endpoint.address))?;
            built.zone = endpoint.zone.clone();
            built.tier = endpoint.tier;
            built.labels = endpoint.labels.clone();
            endpoints.push(Arc::new(built));
        }
        let (plugin, balancer) = match &pool_config.balancer {
            Some(balancer) => {
                require_plugin(
                    runtime,
                    load_errors,
                    &balancer.plugin,
                    &format!("{key}.balancer.plugin"),
                    &pool_config.name,
                    alerts,
                )?;
                let wasm: Arc<dyn engine::Balancer> =
                    runtime.balancer(&balancer.plugin, &pool_config.name, &balancer.config_json());
                (Some(balancer.plugin.clone()), Some(wasm))
            }
            None => (None, None),
        };
        let mut pool = Pool::with_health(
            pool_config.name.clone(),
            endpoints,
            plugin,
            balancer,
            health_policy(pool_config),
            Arc::clone(alerts),
        );
        let recovery_json = pool_config
            .recovery
            .as_ref()
            .map(|r| serde_json::to_string(&r.config).unwrap_or_else(|_| "{}".into()));
        if let Some(recovery) = &pool_config.recovery {
            let policy: Arc<dyn engine::RecoveryPolicy> = match &recovery.plugin {
                Some(name) => {
                    require_plugin(
                        runtime,
                        load_errors,
                        name,
                        &format!("{key}.recovery.plugin"),
                        &pool_config.name,
                        alerts,
                    )?;
                    runtime.recovery(
                        name,
                        &pool_config.name,
                        recovery_json.as_deref().unwrap_or("{}"),
                    )
                }
                None => Arc::new(engine::RetryOnce),
            };
            pool = pool.with_recovery(engine::Recovery {
                policy,
                budget: engine::RetryBudget::new(
                    recovery.budget_percent,
                    recovery.min_retries_per_second,
                    Duration::from_millis(recovery.budget_window_ms),
                ),
                max_replay_body: recovery.max_replay_body_bytes,
            });
        }
        let pool = Arc::new(pool);
        if let (Some(recovery), Some(json)) = (&pool_config.recovery, &recovery_json) {
            if let Some(name) = &recovery.plugin {
                attach_plugin(
                    runtime,
                    name,
                    Role::Recovery,
                    &pool,
                    json,
                    &format!("{key}.recovery"),
                    alerts,
                )?;
            }
        }
        if let Some(balancer) = &pool_config.balancer {
            attach_plugin(
                runtime,
                &balancer.plugin,
                Role::Balancer,
                &pool,
                &balancer.config_json(),
                &format!("{key}.balancer"),
                alerts,
            )?;
        }
        if let Some(health) = &pool_config.health {
            let checker: Arc<dyn HealthChecker> = match &health.plugin {
                Some(name) => {
                    require_plugin(
                        runtime,
                        load_errors,
                        name,
                        &format!("{key}.health.plugin"),
                        &pool_config.name,
                        alerts,
                    )?;
                    let config_json =
                        serde_json::to_string(&health.config).unwrap_or_else(|_| "{}".into());
                    attach_plugin(
                        runtime,
                        name,
                        Role::HealthCheck,
                        &pool,
                        &config_json,
                        &format!("{key}.health"),
                        alerts,
                    )?;
                    runtime.health_check(name, &pool_config.name, &config_json)
                }
                None => Arc::new(TcpCheck),
            };
            checks.push(ActiveChecks {
                pool: Arc::clone(&pool),
                checker,
                schedule: CheckSchedule {
                    interval: Duration::from_millis(health.interval_ms),
                    jitter: Duration::from_millis(health.jitter_ms),
                    timeout: Duration::from_millis(health.timeout_ms),
                    rise: health.rise,
                    fall: health.fall,
                },
            });
        }
        pools.push(pool);
    }
    Ok((pools, checks))
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
}
