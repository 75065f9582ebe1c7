//! The scenario: endpoints and Switchyard started in a scratch folder, load and faults for a set time, then the tally.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::chaos::{self, Endpoints, BALANCERS};
use crate::client::{self, Tally};
use crate::process::Process;
use crate::report::Report;

/// Time the pool runs undisturbed before the first kill, so every endpoint
/// has passed its health checks.
const WARMUP: Duration = Duration::from_secs(2);

/// How long Switchyard may take to print its listening line: it compiles
/// every plugin first, on a machine shared with the load.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the pool may take to answer its first 200 once Switchyard
/// listens: two passed health checks, with room for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lowest port the endpoints are given, above the well-known and most
/// registered services.
const LOWEST_PORT: u16 = 20000;

/// Linux's default start of the ephemeral range, when it cannot be read.
const DEFAULT_EPHEMERAL_LOW: u16 = 32768;

/// Ports tried before giving up on finding free ones.
const PORT_ATTEMPTS: usize = 1000;

/// Plugins the soak needs in `--plugins`, by file stem.
const REQUIRED_PLUGINS: [&str; 6] = [
    "round-robin",
    "least-request",
    "peak-ewma",
    "random",
    "http-health",
    "retry-backoff",
];

/// The balancer plugin's name in the config; the swapper replaces its file.
const BALANCER: &str = "chaos-balancer";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `switchyard` binary under test.
    #[arg(long)]
    switchyard: PathBuf,
    /// Folder with round-robin, least-request, peak-ewma, random,
    /// http-health and retry-backoff `.wasm` files.
    #[arg(long)]
    plugins: PathBuf,
    /// Seconds of load, after the pool first answers.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Endpoint processes in the pool.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Clients, each with one keep-alive connection sending back to back.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Milliseconds between two kills, drawn uniformly from `LOW..HIGH`
    /// (both included) or fixed as `N`.
    #[arg(long, default_value = "1000..3000")]
    kill_every_ms: Span,
    /// Milliseconds a killed endpoint stays down, as `LOW..HIGH` or `N`.
    #[arg(long, default_value = "300..1500")]
    down_ms: Span,
    /// Milliseconds between two balancer swaps; 0: never swap.
    #[arg(long, default_value_t = 3000)]
    swap_every_ms: u64,
    /// Seed of the kill schedule; printed, so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Switchyard's proxy worker threads (`proxy.workers`).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// A `key = value` line added to the `[[pools]]` table, replacing the
    /// soak's own line for that key (`balancer`, `health`, `recovery`).
    #[arg(long, value_name = "LINE")]
    pool_extra: Vec<String>,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// Keep the scratch folder (config, logs, /v1/pools, /metrics).
    #[arg(long)]
    keep_config: bool,
    /// Exit with 1 when the delivered share without mid-body cuts, in
    /// percent, is below this.
    #[arg(long, value_name = "PERCENT")]
    pub min_delivered: Option<f64>,
}

/// A duration in milliseconds drawn uniformly from `low..=high`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    low: u64,
    high: u64,
}

impl Span {
    pub fn draw(&self, rng: &mut fastrand::Rng) -> u64 {
        rng.u64(self.low..=self.high)
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|_| format!("`{text}`: expected `LOW..HIGH` or `N` in milliseconds"))
        };
        let (low, high) = match text.split_once("..") {
            Some((low, high)) => (number(low)?, number(high)?),
            None => (number(text)?, number(text)?),
        };
        if low > high {
            return Err(format!("`{text}`: the low end is above the high end"));
        }
        Ok(Span { low, high })
    }
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    if args.endpoints == 0 || args.clients == 0 || args.duration == 0 {
        bail!("--endpoints, --clients and --duration must be at least 1");
    }
    let pool_extra = pool_extra(&args.pool_extra)?;
    let balancers = read_plugins(&args.plugins)?;
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    // The kill schedule has its own generator from the same seed, so the
    // ports drawn here do not shift it.
    let mut rng = fastrand::Rng::with_seed(seed);

    // Declared first, so dropped last: every process started below is
    // killed before the folder it writes into is removed.
    let scratch = Scratch::create(seed, args.keep_config)?;
    let dir = scratch.path.clone();
    eprintln!("chaos: scratch folder {}", dir.display());

    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins)
        .with_context(|| format!("cannot create {}", plugins.display()))?;
    for name in ["http-health", "retry-backoff"] {
        let file = format!("{name}.wasm");
        std::fs::copy(args.plugins.join(&file), plugins.join(&file))
            .with_context(|| format!("cannot copy {file} into {}", plugins.display()))?;
    }
    let balancer = plugins.join(format!("{BALANCER}.wasm"));
    std::fs::write(&balancer, &balancers[0])
        .with_context(|| format!("cannot write {}", balancer.display()))?;

    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let endpoints =
        Arc::new(Endpoints::start(exe, dir.clone(), free_ports(args.endpoints, &mut rng)?).await?);

    let config_path = dir.join("switchyard.toml");
    let config = config(&plugins, endpoints.ports(), args.workers, &pool_extra);
    std::fs::write(&config_path, config)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let mut switchyard = Switchyard::start(&args.switchyard, &config_path, &dir).await?;
    eprintln!(
        "chaos: switchyard proxy={} control={}",
        switchyard.proxy, switchyard.control
    );
    switchyard.wait_ready().await?;
    eprintln!(
        "chaos: soaking for {} s, seed {seed}, {} endpoints, {} clients",
        args.duration, args.endpoints, args.clients
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut clients = JoinSet::new();
    for _ in 0..args.clients {
        clients.spawn(client::run(switchyard.proxy, deadline));
    }
    let load = async {
        let mut tally = Tally::default();
        while let Some(part) = clients.join_next().await {
            tally.add(part.context("a client task failed")?);
        }
        anyhow::Ok((tally, started.elapsed()))
    };
    let killer = chaos::kill(
        Arc::clone(&endpoints),
        WARMUP,
        args.kill_every_ms,
        args.down_ms,
        seed,
        deadline,
    );
    let swapper = async {
        if args.swap_every_ms == 0 {
            return Ok(0);
        }
        let every = Duration::from_millis(args.swap_every_ms);
        chaos::swap(balancer.clone(), balancers, every, deadline).await
    };
    let (load, kills, swaps) = tokio::select! {
        results = async { tokio::join!(load, killer, swapper) } => results,
        status = switchyard.process.exited() => {
            bail!(
                "switchyard exited during the soak ({status}); its log:\n{}",
                switchyard.log_tail()
            );
        }
    };
    let (tally, elapsed) = load?;
    let swaps = swaps?;

    switchyard.save(
        client::get(switchyard.control, "/v1/pools").await,
        "pools.json",
    );
    let metrics = switchyard.save(
        client::get(switchyard.control, "/metrics").await,
        "metrics.txt",
    );

    switchyard.kill().await;
    endpoints.kill_all().await;

    let metrics = metrics.unwrap_or_default();
    Ok(Report {
        seed,
        duration: elapsed,
        kills,
        swaps,
        tally,
        retries: metrics
            .lines()
            .find_map(|line| line.strip_prefix("switchyard_retries_total "))
            .and_then(|value| value.trim().parse().ok()),
        proxy_errors: metrics
            .lines()
            .filter(|line| line.starts_with("switchyard_proxy_errors_total{"))
            .map(str::to_string)
            .collect(),
        dir,
        kept: args.keep_config,
    })
}

/// Checks that every plugin the soak needs is in `dir`, and reads the
/// balancers in swap order.
fn read_plugins(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let missing: Vec<String> = REQUIRED_PLUGINS
        .iter()
        .map(|name| format!("{name}.wasm"))
        .filter(|file| !dir.join(file).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: missing {}; build them with `switchyard plugin build plugins/round-robin \
             plugins/least-request plugins/peak-ewma plugins/random plugins/http-health \
             plugins/retry-backoff --out {}`",
            dir.display(),
            missing.join(", "),
            dir.display()
        );
    }
    BALANCERS
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.wasm"));
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        })
        .collect()
}

/// Splits each `--pool-extra` line into its key and the line.
fn pool_extra(lines: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    lines
        .iter()
        .map(|line| match line.split_once('=') {
            Some((key, _)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), line.trim().to_string()))
            }
            _ => bail!("--pool-extra `{line}`: expected `key = value`"),
        })
        .collect()
}

/// `count` loopback ports free at the time of the call, all held at once so
/// none comes twice, and drawn from below the kernel's ephemeral range: a
/// port bind(0) gives could be taken, while its endpoint is down, by one of
/// the proxy's own outgoing connections (or a connection to itself), and
/// the endpoint could not come back.
fn free_ports(count: usize, rng: &mut fastrand::Rng) -> anyhow::Result<Vec<u16>> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW);
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..PORT_ATTEMPTS {
        if listeners.len() == count {
            break;
        }
        let listener = if ephemeral > LOWEST_PORT {
            TcpListener::bind(("127.0.0.1", rng.u16(LOWEST_PORT..ephemeral)))
        } else {
            TcpListener::bind("127.0.0.1:0")
        };
        if let Ok(listener) = listener {
            listeners.push(listener);
        }
    }
    if listeners.len() < count {
        bail!("cannot find {count} free loopback ports");
    }
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// The Switchyard config of the soak: one pool of the endpoints, behind the
/// swapped balancer, HTTP health checks and retries.
fn config(plugins: &Path, ports: &[u16], workers: usize, extra: &[(String, String)]) -> String {
    let endpoints: Vec<String> = ports
        .iter()
        .map(|port| format!("{{ address = \"127.0.0.1:{port}\" }}"))
        .collect();
    let mut pool: Vec<(String, String)> = [
        ("name", "name = \"chaos\"".to_string()),
        (
            "balancer",
            format!("balancer = {{ plugin = \"{BALANCER}\" }}"),
        ),
        (
            "endpoints",
            format!("endpoints = [{}]", endpoints.join(", ")),
        ),
        (
            "health",
            // A check may not outlast its interval.
            "health = { plugin = \"http-health\", interval_ms = 200, timeout_ms = 200, \
             rise = 2, fall = 2, config = { path = \"/healthz\" } }"
                .to_string(),
        ),
        (
            "recovery",
            "recovery = { plugin = \"retry-backoff\", config = { attempts = 4 } }".to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, line)| (key.to_string(), line))
    .collect();
    for (key, line) in extra {
        match pool.iter_mut().find(|(own, _)| own == key) {
            Some(own) => own.1 = line.clone(),
            None => pool.push((key.clone(), line.clone())),
        }
    }

    // A JSON string is a valid TOML basic string.
    let dir = serde_json::to_string(&plugins.to_string_lossy()).expect("a string serializes");
    let mut text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = {workers}\n\n\
         [control]\nlisten = \"127.0.0.1:0\"\n\n\
         [plugins]\ndir = {dir}\n\n\
         [[pools]]\n"
    );
    for (_, line) in pool {
        let _ = writeln!(text, "{line}");
    }
    text
}

/// The soak's scratch folder, removed on drop unless kept.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn create(seed: u64, keep: bool) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("switchyard-chaos-{}-{seed}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch { path, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The Switchyard process under test.
#[derive(Debug)]
struct Switchyard {
    process: Process,
    proxy: SocketAddr,
    control: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
}

impl Switchyard {
    /// Starts `binary run --config config` and reads its addresses from its
    /// first line, `switchyard listening proxy=ADDR control=ADDR`.
    async fn start(binary: &Path, config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join("switchyard.log");
        let log_file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let (process, stdout) = Process::spawn(
            Command::new(binary)
                .arg("run")
                .arg("--config")
                .arg(config)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log_file),
        )
        .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line()).await;
        // Drained so that later output never blocks the proxy on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let mut switchyard = Switchyard {
            process,
            proxy: SocketAddr::from(([0, 0, 0, 0], 0)),
            control: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir: dir.to_path_buf(),
            log,
        };
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(_) => bail!(
                "switchyard exited before listening; its log:\n{}",
                switchyard.log_tail()
            ),
            Err(_) => bail!(
                "switchyard did not listen within {STARTUP_TIMEOUT:?}; its log:\n{}",
                switchyard.log_tail()
            ),
        };
        let address = |key: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .and_then(|address| address.parse().ok())
                .with_context(|| format!("no `{key}ADDR` in switchyard's first line `{line}`"))
        };
        switchyard.proxy = address("proxy=")?;
        switchyard.control = address("control=")?;
        Ok(switchyard)
    }

    /// Waits until the pool answers a request with 200.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let last = match client::get(self.proxy, "/").await {
                Ok((StatusCode::OK, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(error) => format!("{error:#}"),
            };
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "the pool did not answer 200 within {READY_TIMEOUT:?} (last: {last}); \
                     switchyard's log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a control endpoint's answer into the scratch folder and
    /// returns its body; a failure is reported and leaves `None`.
    fn save(&self, answer: anyhow::Result<(StatusCode, String)>, file: &str) -> Option<String> {
        match answer {
            Ok((StatusCode::OK, body)) => {
                let path = self.dir.join(file);
                if let Err(error) = std::fs::write(&path, &body) {
                    eprintln!("chaos: cannot write {}: {error}", path.display());
                }
                Some(body)
            }
            Ok((status, _)) => {
                eprintln!("chaos: control answered {status} for {file}");
                None
            }
            Err(error) => {
                eprintln!("chaos: cannot fetch {file}: {error:#}");
                None
            }
        }
    }

    /// The last lines of the log, for an error message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn kill(self) {
        self.process.kill().await;
    }
}
