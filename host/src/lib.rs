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
//! - [`reload`]: builds what serves from a config, and applies a new config
//!   as the difference from the running one.
//! - [`discovery`]: endpoints from DNS and from services registering
//!   themselves, beside the config.
//! - [`control`]: the control endpoint (JSON API, metrics).
//! - [`metrics`]: counters and the Prometheus exposition.
//! - [`build`]: `switchyard plugin build`.
//! - [`check`]: `switchyard plugin check`.
//! - [`templates`]: `switchyard plugin new`, from templates in the binary.
//! - [`demo`]: `switchyard demo`, with upstreams of its own.
//!
//! [`Server::bind`] then [`Server::run`] is the whole program; tests bind
//! port 0 and read the addresses back.

pub mod build;
pub mod check;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod discovery;
pub mod engine;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod replay;
pub mod templates;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use config::Config;
use control::ControlState;
use engine::Alerts;
use metrics::Metrics;
use plugins::PluginRuntime;
use proxy::Proxy;
use reload::Reloader;

/// A configured, bound, not yet serving Switchyard.
#[derive(Debug)]
pub struct Server {
    proxy_config: config::ProxyConfig,
    watch_config: bool,
    config_watch: Option<notify::RecommendedWatcher>,
    _watcher: Option<plugins::Watcher>,
    _certificate_watch: Option<notify::RecommendedWatcher>,
    /// `proxy.listen`, then each of `[[listeners]]`, with its TLS terminator.
    proxy_listeners: Vec<(
        std::net::TcpListener,
        Option<Arc<proxy::tls::TlsTerminator>>,
    )>,
    control_listener: TcpListener,
    reloader: Arc<Reloader>,
    control: Arc<ControlState>,
    fleet: Option<Arc<cluster::Fleet>>,
    fleet_registrations: Option<Arc<cluster::registrations::FleetRegistrations>>,
}

impl Server {
    /// Loads the plugins, builds the pools and routes, and binds both
    /// listeners. Every error names the config key or plugin file at fault.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let folder_ready = ensure_plugin_folder(&config)?;
        let events = Arc::new(engine::Events::default());
        let runtime = PluginRuntime::with_events(&config.plugins, Arc::clone(&events))?;
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
        let alerts = Arc::new(Alerts::with_events(events));
        runtime.set_alerts(Arc::clone(&alerts));
        let proxy_config = config.proxy.clone();
        let listeners = config.listeners.clone();
        let control_listen = config.control.listen;
        let watch_config = config.control.watch_config;
        let tokens = control::Tokens::new(&config.control.tokens);
        let per_endpoint_metrics = config.control.per_endpoint_metrics;
        let audit_path = config.control.audit_log.clone();
        let audit = control::AuditLog::open(audit_path.clone(), config.control.audit_max_bytes)
            .with_context(|| {
                format!(
                    "control.audit_log = {}: cannot open it",
                    audit_path.unwrap_or_default().display()
                )
            })?;
        let reloader = Reloader::start(config, runtime.clone(), &load_errors, Arc::clone(&alerts))?;
        for error in &load_errors {
            tracing::warn!("{error}");
        }
        // What serves now configured for every pool: the versions to fall
        // back on if a later start finds their files rejected.
        runtime.keep_serving_as_good();
        // Candidates are compared in the pools that use their plugin.
        for error in runtime.load_candidates() {
            tracing::warn!("{error}");
        }

        let metrics = Arc::new(Metrics::new(proxy_config.workers));
        let mut proxy_listeners = vec![(
            bind_proxy_listener(proxy_config.listen).with_context(|| {
                format!("cannot listen on proxy.listen = {}", proxy_config.listen)
            })?,
            None,
        )];
        let mut terminators = Vec::new();
        for (index, listener) in listeners.iter().enumerate() {
            let key = format!("listeners[{index}]");
            let terminator = match &listener.tls {
                Some(tls) => {
                    let terminator =
                        Arc::new(proxy::tls::TlsTerminator::new(tls, format!("{key}.tls"))?);
                    terminators.push(Arc::clone(&terminator));
                    Some(terminator)
                }
                None => None,
            };
            let tcp = bind_proxy_listener(listener.listen)
                .with_context(|| format!("cannot listen on {key}.listen = {}", listener.listen))?;
            proxy_listeners.push((tcp, terminator));
        }
        let certificate_watch = proxy::tls::watch(terminators, Arc::clone(&alerts))?;
        let control_listener = TcpListener::bind(control_listen)
            .await
            .with_context(|| format!("cannot listen on control.listen = {control_listen}"))?;
        let reloader = Arc::new(reloader);
        let registrations = Arc::new(discovery::registrations::Registry::new(
            Arc::clone(&reloader),
            Arc::clone(alerts.events()),
        ));
        let control = Arc::new(ControlState {
            topology: Arc::clone(reloader.topology()),
            reloader: Arc::clone(&reloader),
            registrations,
            runtime,
            alerts,
            metrics,
            started: Instant::now(),
            tokens,
            audit,
            stopping: tokio::sync::watch::channel(false).0,
            per_endpoint_metrics,
            broadcast: proxy::broadcast::Timeouts::of(&proxy_config),
        });
        Ok(Server {
            proxy_config,
            watch_config,
            config_watch: None,
            _watcher: watcher,
            _certificate_watch: certificate_watch,
            proxy_listeners,
            control_listener,
            reloader,
            control,
            fleet: None,
            fleet_registrations: None,
        })
    }

    /// Shares the pools and routes with `fleet` (`[cluster]`): API writes
    /// go to etcd first, and each revision there is applied here. The
    /// working copy the fleet wrote is then the file to reload from.
    pub fn with_fleet(mut self, fleet: Arc<cluster::Fleet>) -> Self {
        self.reloader.set_fleet(Arc::clone(&fleet));
        fleet.set_server_parts(Arc::clone(&self.control.alerts));
        // The working copy follows etcd, not hands.
        self.watch_config = false;
        self.fleet = Some(fleet);
        self
    }

    /// Reads the config again from `file` on SIGHUP and `POST /v1/reload`,
    /// writes API changes to it, and reloads it when it is saved
    /// (`control.watch_config`). `version` is the version of the text the
    /// server was built from ([`config::store::version_of`]), so a save
    /// made before the watch began is still applied, and the same text is
    /// not applied twice.
    pub fn reload_from(mut self, file: PathBuf, version: String) -> anyhow::Result<Self> {
        let beside = discovery::registrations::FileStore::beside(&file);
        match &self.fleet {
            // A fleet's registrations are in etcd, and in the file too.
            Some(fleet) => {
                let store =
                    cluster::registrations::FleetRegistrations::new(Arc::clone(fleet), beside);
                self.control
                    .registrations
                    .keep_in(Box::new(Arc::clone(&store)));
                self.fleet_registrations = Some(store);
            }
            None => self.control.registrations.keep_in(Box::new(beside)),
        }
        self.reloader.set_file(file, version);
        if self.watch_config {
            self.config_watch = self.reloader.watch_file()?;
        }
        Ok(self)
    }

    /// The proxy's bound address (`proxy.listen`).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_listeners[0]
            .0
            .local_addr()
            .expect("bound listener")
    }

    /// The bound addresses of `[[listeners]]`, in config order, each with
    /// whether it terminates TLS.
    pub fn listener_addrs(&self) -> Vec<(SocketAddr, bool)> {
        self.proxy_listeners[1..]
            .iter()
            .map(|(tcp, tls)| (tcp.local_addr().expect("bound listener"), tls.is_some()))
            .collect()
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
        let discovered = tokio::spawn(Arc::clone(&self.reloader).apply_discovered());
        // A pool whose endpoints all come from its DNS name serves once the
        // name first answered, so the first requests find endpoints: the
        // listeners are bound, and connections wait in their backlog.
        let waiting_since = Instant::now();
        loop {
            let waiting = self.reloader.pools_awaiting_discovery().await;
            if waiting.is_empty() {
                break;
            }
            if waiting_since.elapsed() >= FIRST_ANSWER_WAIT {
                tracing::warn!(
                    pools = ?waiting,
                    "serving before these pools' DNS names answered: they answer 503 until they do"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Registrations kept from an earlier run serve before the API
        // answers; those that lapsed meanwhile are dropped.
        self.control
            .registrations
            .restore()
            .await
            .context("cannot restore the registrations")?;
        let sweeper = tokio::spawn(Arc::clone(&self.control.registrations).sweep());
        if let Some(store) = &self.fleet_registrations {
            tokio::spawn(Arc::clone(store).follow(Arc::clone(&self.control.registrations)));
        }
        let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
        let fleet = self.fleet.clone().map(|fleet| {
            let proxy = self.proxy_addr().to_string();
            (fleet, proxy, self.control_addr().to_string())
        });
        let control = tokio::spawn(control::serve(
            self.control_listener,
            Arc::clone(&self.control),
            wait_for(stop_receiver.clone()),
        ));
        let readmission = tokio::spawn(readmit_ejected(
            Arc::clone(self.reloader.topology()),
            Arc::clone(self.reloader.tick_queue()),
        ));
        let hangups = tokio::spawn(reload_on_hangup(Arc::clone(&self.reloader)));
        if let Some((fleet, proxy, control)) = &fleet {
            fleet.spawn(Arc::clone(&self.reloader), proxy.clone(), control.clone());
        }
        let hostnames = tokio::spawn(Arc::clone(self.reloader.hosts()).refresh());
        let _config_watch = self.config_watch;
        let grace = Duration::from_millis(self.proxy_config.shutdown_grace_ms);
        let (proxy_stop, proxy_stop_receiver) = tokio::sync::watch::channel(false);
        let (done_sender, mut done) = tokio::sync::mpsc::channel::<()>(1);
        let mut workers = Vec::with_capacity(self.proxy_config.workers);
        let connections = Arc::new(tokio::sync::Semaphore::new(
            self.proxy_config.max_connections,
        ));
        for worker in 0..self.proxy_config.workers {
            let mut listeners = Vec::with_capacity(self.proxy_listeners.len());
            for (tcp, tls) in &self.proxy_listeners {
                let tcp = tcp
                    .try_clone()
                    .context("cannot share a proxy listener with a worker")?;
                listeners.push((tcp, tls.as_ref().map(|t| t.acceptor())));
            }
            let proxy = Arc::new(Proxy::new(
                &self.proxy_config,
                Arc::clone(self.reloader.topology()),
                Arc::clone(&self.control.metrics),
                worker,
            ));
            let stop = wait_for(proxy_stop_receiver.clone());
            let done = done_sender.clone();
            let connections = Arc::clone(&connections);
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-proxy-{worker}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot start a proxy worker's runtime")?;
                    runtime.block_on(async move {
                        let mut registered = Vec::with_capacity(listeners.len());
                        for (tcp, tls) in listeners {
                            let tcp = TcpListener::from_std(tcp)
                                .context("cannot register a proxy listener")?;
                            registered.push(proxy::Listener { tcp, tls });
                        }
                        proxy::serve(registered, proxy, connections, stop, grace).await;
                        drop(done);
                        anyhow::Ok(())
                    })
                })
                .context("cannot start a proxy worker thread")?;
            workers.push(thread);
        }
        drop(done_sender);
        drop(self.proxy_listeners);
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
        hangups.abort();
        discovered.abort();
        sweeper.abort();
        hostnames.abort();
        self.reloader.stop().await;
        result
    }
}

/// How long a start waits for the first answer of the DNS names that are
/// all some pool's endpoints.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(3);

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
        Err(error) if !config.plugin_keys().is_empty() => Err(anyhow::anyhow!(
            "plugins.dir = {}: the folder is missing and cannot be created: {error}",
            dir.display()
        )),
        Err(error) => {
            tracing::warn!(
                "plugins.dir = {}: the folder is missing and cannot be created ({error}); no pool or route names a plugin, so none is loaded or watched",
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
/// How often every pool is asked whether its success rates are due for
/// judgement (each pool judges once per its outlier interval).
const SUCCESS_RATE_TICK: Duration = Duration::from_millis(100);

/// Readmits ejected and held endpoints when their time runs out and ramps
/// slow starts, visiting only the pools queued with such work, and judges
/// success rates every `SUCCESS_RATE_TICK`.
async fn readmit_ejected(topology: engine::SharedTopology, queue: Arc<engine::TickQueue>) {
    let mut tick = tokio::time::interval(READMISSION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut judged = std::time::Instant::now();
    loop {
        tick.tick().await;
        let now = std::time::Instant::now();
        for pool in queue.take() {
            if let Some(pool) = pool.upgrade() {
                pool.tick_queued(now);
            }
        }
        if now.duration_since(judged) >= SUCCESS_RATE_TICK {
            judged = now;
            for pool in &topology.load().pools {
                pool.judge_success_rates(now);
                pool.adjust_concurrency();
            }
        }
    }
}

async fn wait_for(mut receiver: tokio::sync::watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

/// Reloads the config file on every SIGHUP, logging what changed or why
/// nothing did.
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload through POST /v1/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            if let Err(error) = reloader.reload_file().await {
                tracing::error!("SIGHUP: the config was not reloaded: {error}");
            }
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
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
