//! `switchyard plugin check`: loads one plugin file as the host would,
//! configures it, times its calls on synthetic pools, and gives a verdict.
//!
//! The file goes through [`PluginRuntime::load`] and [`PluginRuntime::attach`]
//! exactly as in service (a fresh runtime over a private folder, so the
//! compile is never a cache hit), and its calls go through the engine's own
//! traits: a balancer's `pick` on pools of 10 and 10,000 endpoints, a
//! recovery policy's decision on the same pools, a health check's `check`
//! against a TCP listener on loopback that answers `200 OK`.
//!
//! Verdicts:
//! - `rejected` (exit 1): the host would refuse the file (format, world,
//!   imports, contract, `configure`), or a call faulted while measured (a
//!   trap, a timeout, a pick outside the set, the memory cap), or a p99 is
//!   over the per-call budget. In service such a plugin is quarantined
//!   after `quarantine_after` faults, so it is refused here.
//! - `warn` (exit 0): it works, but a p99 is over half the per-call budget
//!   or an instance uses more than three quarters of the memory cap.
//! - `ok` (exit 0).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::config::PluginsConfig;
use crate::engine::{
    Balancer as _, CheckOutcome, Endpoint, Failure, FailureKind, Health, HealthChecker as _,
    PickRequest, Pool, RecoveryPolicy as _, RequestHeaders, RequestInfo, UpstreamProtocol,
};
use crate::plugins::{LoadOutcome, PluginRuntime, PluginSlot, Role, World};

/// Endpoint counts of the synthetic pools a balancer or recovery policy is
/// timed on.
pub const POOL_SIZES: [u32; 2] = [10, 10_000];
/// Calls timed per pool.
pub const CALLS: u32 = 5_000;
/// Untimed calls per pool first, so the figures are of a warm instance.
pub const WARM_UP_CALLS: u32 = 100;
/// Health checks timed (each a real connection on loopback).
pub const HEALTH_CHECKS: u32 = 200;
/// How long one timed health check may take before it counts as a fault.
pub const HEALTH_CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// What `plugin check` was asked to do.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// The `.wasm` file.
    pub file: PathBuf,
    /// The JSON handed to `configure` (`{}` by default).
    pub config_json: String,
    /// The `[plugins]` settings the file is judged under.
    pub plugins: PluginsConfig,
    /// Where those settings came from, for the report (`defaults`, or the
    /// config file).
    pub settings_from: String,
    /// Timed calls per pool of a balancer or recovery policy ([`CALLS`] by
    /// default); a large count soaks the plugin, as a long run would.
    pub calls: u32,
}

/// Everything `plugin check` found, as printed (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file checked.
    pub file: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The settings it was judged under.
    pub settings: Settings,
    /// `balancer`, `health-check` or `recovery`, once known.
    pub world: Option<String>,
    /// The contract version its export names (`0.2.1`, `0.1.1`).
    pub contract: Option<String>,
    /// What it imports, by name.
    pub imports: Vec<String>,
    /// Time to compile and validate it, µs (never from the cache).
    pub compile_micros: Option<u64>,
    /// The JSON handed to `configure`.
    pub config: String,
    /// Whether `configure` (or `create`) accepted `config`; `None` when the
    /// file did not get that far.
    pub configure_accepted: Option<bool>,
    /// The largest instance's linear memory once set up, bytes.
    pub memory_after_setup_bytes: Option<u64>,
    /// The largest instance's linear memory after the timed calls, bytes.
    pub memory_after_calls_bytes: Option<u64>,
    /// Instances recycled for their memory during the calls
    /// (`recycle_at_percent` of the cap); not faults.
    pub recycles: u64,
    /// One entry per timed series.
    pub measurements: Vec<Measurement>,
    /// A health check's verdicts on the listener (which answers `200 OK`
    /// to anything), by health (`healthy`: 200), with the reason of the
    /// last that was not `healthy`; `None` for the other worlds.
    pub health_verdicts: Option<HealthVerdicts>,
    /// The conclusion.
    pub verdict: Verdict,
}

/// The `[plugins]` settings a file is judged under.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `defaults`, or the config file they were read from.
    pub source: String,
    /// `plugins.call_timeout_ms`: the budget of one call.
    pub call_timeout_ms: u64,
    /// `plugins.memory_limit_mib`: the linear-memory cap of one instance.
    pub memory_limit_mib: u32,
    /// `plugins.quarantine_after`: consecutive faults before quarantine.
    pub quarantine_after: u32,
}

/// One timed series of calls.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `pick`, `decision` or `check`.
    pub call: String,
    /// Endpoints in the pool.
    pub endpoints: u32,
    /// Calls timed (fewer than asked when a fault stopped the series).
    pub calls: u32,
    /// Median time of one call, ns; `None` when no call was timed.
    pub p50_ns: Option<u64>,
    /// 99th percentile, ns.
    pub p99_ns: Option<u64>,
    /// Slowest call, ns.
    pub max_ns: Option<u64>,
    /// The budget p99 is held to, ns; `None` where the call waits on the
    /// network (a health check), which no CPU budget covers.
    pub budget_ns: Option<u64>,
    /// The first fault, which stops the series.
    pub fault: Option<String>,
}

/// What a health check said of an endpoint that answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthVerdicts {
    /// Verdicts by health: `healthy`, `degraded`, `unhealthy`, `unknown`.
    pub counts: std::collections::BTreeMap<String, u32>,
    /// The reason of the last verdict that was not `healthy`.
    pub last_not_healthy: Option<String>,
}

impl HealthVerdicts {
    fn count(&mut self, health: Health, reason: String) {
        let name = match health {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        };
        *self.counts.entry(name.to_string()).or_default() += 1;
        if health != Health::Healthy {
            self.last_not_healthy = Some(reason);
        }
    }
}

/// The conclusion of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `ok`, `warn` or `rejected`.
    pub status: Status,
    /// Why, for `warn` and `rejected`.
    pub reasons: Vec<String>,
}

/// How a file fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Loads, configures, and its calls fit the budget with room.
    Ok,
    /// Works, but close to a limit.
    Warn,
    /// The host would refuse it, or it faulted.
    Rejected,
}

impl Verdict {
    fn raise(&mut self, status: Status, reason: String) {
        self.status = self.status.max(status);
        self.reasons.push(reason);
    }
}

/// Checks `request.file`. Errors are the checker's own (no temporary
/// folder, no async runtime); everything about the file is in the report.
pub fn check(request: &CheckRequest) -> anyhow::Result<Report> {
    let plugins = &request.plugins;
    let name = crate::plugins::plugin_name(&request.file).unwrap_or_else(|| "checked".into());
    // `[plugins.limits.NAME]` applies to the file as it would in the folder.
    let own = plugins.limits_of(&name);
    let mut report = Report {
        file: request.file.display().to_string(),
        size_bytes: 0,
        settings: Settings {
            source: request.settings_from.clone(),
            call_timeout_ms: own.call_timeout_ms,
            memory_limit_mib: own.memory_limit_mib,
            quarantine_after: plugins.quarantine_after,
        },
        world: None,
        contract: None,
        imports: Vec::new(),
        compile_micros: None,
        config: request.config_json.clone(),
        configure_accepted: None,
        memory_after_setup_bytes: None,
        memory_after_calls_bytes: None,
        recycles: 0,
        measurements: Vec::new(),
        health_verdicts: None,
        verdict: Verdict {
            status: Status::Ok,
            reasons: Vec::new(),
        },
    };
    let bytes = match std::fs::read(&request.file) {
        Ok(bytes) => bytes,
        Err(error) => {
            report
                .verdict
                .raise(Status::Rejected, format!("cannot read the file: {error}"));
            return Ok(report);
        }
    };
    report.size_bytes = bytes.len() as u64;

    // A folder of its own: the file under a valid plugin name, and a cache
    // that is empty, so the compile time is a real one.
    let folder = Scratch::new()?;
    let path = folder.0.join(format!("{name}.wasm"));
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    let runtime = PluginRuntime::new(&PluginsConfig {
        dir: folder.0.clone(),
        cache_dir: Some(folder.0.join(".cache")),
        watch: false,
        ..plugins.clone()
    })?;
    let version = match runtime.load(&path) {
        Ok(LoadOutcome::Loaded(version)) => version,
        Ok(_) => anyhow::bail!("a fresh runtime did not load the file anew"),
        Err(error) => {
            report.verdict.raise(
                Status::Rejected,
                format!("{}: {}", error.stage, error.reason),
            );
            return Ok(report);
        }
    };
    report.world = Some(world_name(version.world).to_string());
    report.contract = Some(version.contract.clone());
    report.imports = version.imports.clone();
    report.compile_micros = Some(version.load_micros);

    let slot = runtime.slot(&name);
    let budget_ns = own.call_timeout_ms * 1_000_000;
    let measured = match version.world {
        World::Balancer => measure_balancer(&runtime, &slot, request, budget_ns, &mut report),
        World::Recovery => measure_recovery(&runtime, &slot, request, budget_ns, &mut report),
        World::HealthCheck => measure_health(&runtime, &slot, request, &mut report)?,
    };
    if let Err(reason) = measured {
        report.configure_accepted = Some(false);
        report.verdict.raise(Status::Rejected, reason);
        return Ok(report);
    }
    report.configure_accepted = Some(true);
    report.memory_after_calls_bytes = Some(slot.memory_high_bytes());
    report.recycles = slot.recycles();
    judge(&mut report);
    Ok(report)
}

/// The verdict from the measurements and memory.
fn judge(report: &mut Report) {
    let measurements = report.measurements.clone();
    for series in &measurements {
        let what = format!("{} on {} endpoint(s)", series.call, series.endpoints);
        if let Some(fault) = &series.fault {
            report.verdict.raise(
                Status::Rejected,
                format!(
                    "{what} faulted after {} timed call(s): {fault}",
                    series.calls
                ),
            );
            continue;
        }
        let (Some(budget), Some(p99)) = (series.budget_ns, series.p99_ns) else {
            continue;
        };
        if p99 > budget {
            report.verdict.raise(
                Status::Rejected,
                format!(
                    "{what}: p99 {} is over the per-call budget of {}",
                    duration(p99),
                    duration(budget)
                ),
            );
        } else if p99 > budget / 2 {
            report.verdict.raise(
                Status::Warn,
                format!(
                    "{what}: p99 {} is over half the per-call budget of {}",
                    duration(p99),
                    duration(budget)
                ),
            );
        }
    }
    let cap = u64::from(report.settings.memory_limit_mib) * 1024 * 1024;
    let high = report.memory_after_calls_bytes.unwrap_or(0);
    if high > cap / 4 * 3 {
        report.verdict.raise(
            Status::Warn,
            format!(
                "an instance uses {} of the {} memory cap (plugins.memory_limit_mib)",
                mebibytes(high),
                mebibytes(cap)
            ),
        );
    }
}

/// A pool of `size` endpoints on addresses no one listens on.
fn pool_of(name: &str, size: u32, listening: Option<&str>) -> Arc<Pool> {
    let endpoints = (0..size)
        .map(|id| {
            let address = listening.map_or_else(
                || format!("10.{}.{}.{}:8080", id >> 16, (id >> 8) & 0xff, id & 0xff),
                str::to_string,
            );
            Arc::new(Endpoint::new(id, &address, 1, 0).expect("a valid address"))
        })
        .collect();
    Arc::new(Pool::new(
        format!("check-{size}"),
        endpoints,
        Some(name.to_string()),
        None,
    ))
}

fn measure_balancer(
    runtime: &PluginRuntime,
    slot: &Arc<PluginSlot>,
    request: &CheckRequest,
    budget_ns: u64,
    report: &mut Report,
) -> Result<(), String> {
    let name = &*slot.name;
    let mut headers = http::HeaderMap::new();
    for size in POOL_SIZES {
        let pool = pool_of(name, size, None);
        let balancer = runtime.balancer(name, &pool.name, &request.config_json);
        runtime
            .attach(name, Role::Balancer, &pool, &request.config_json)
            .map_err(|error| error.reason)?;
        let set = Arc::clone(&pool.endpoints());
        let mut key = 0u64;
        let series = time_calls("pick", size, request.calls, Some(budget_ns), slot, |_| {
            key = key.wrapping_add(1);
            let mut request = PickRequest {
                info: RequestInfo {
                    hash: Some(key),
                    ..RequestInfo::default()
                },
                headers: RequestHeaders::Map(&mut headers),
                placement: crate::engine::Placement::NONE,
            };
            balancer
                .pick(&set, &mut request)
                .map(drop)
                .map_err(|fault| fault.to_string())
        });
        report.memory_after_setup_bytes.get_or_insert(series.1);
        report.measurements.push(series.0);
    }
    Ok(())
}

fn measure_recovery(
    runtime: &PluginRuntime,
    slot: &Arc<PluginSlot>,
    request: &CheckRequest,
    budget_ns: u64,
    report: &mut Report,
) -> Result<(), String> {
    let name = &*slot.name;
    for size in POOL_SIZES {
        let pool = pool_of(name, size, None);
        let policy = runtime.recovery(name, &pool.name, &request.config_json);
        runtime
            .attach(name, Role::Recovery, &pool, &request.config_json)
            .map_err(|error| error.reason)?;
        let set = Arc::clone(&pool.endpoints());
        let series = time_calls(
            "decision",
            size,
            request.calls,
            Some(budget_ns),
            slot,
            |call| {
                let failure = Failure {
                    endpoint: call % size,
                    kind: if call % 2 == 0 {
                        FailureKind::Status(503)
                    } else {
                        FailureKind::ConnectRefused
                    },
                    request: RequestInfo::default(),
                    method: "GET".to_string(),
                    replayable: true,
                    elapsed: Duration::from_millis(1),
                };
                let faults = slot.faults();
                policy.on_failure(&failure, &set);
                if slot.faults() > faults {
                    return Err(last_fault(slot));
                }
                Ok(())
            },
        );
        report.memory_after_setup_bytes.get_or_insert(series.1);
        report.measurements.push(series.0);
    }
    Ok(())
}

/// Times health checks against a listener on loopback that answers any
/// request with `200 OK`, so a TCP or an HTTP check both find it healthy.
fn measure_health(
    runtime: &PluginRuntime,
    slot: &Arc<PluginSlot>,
    request: &CheckRequest,
    report: &mut Report,
) -> anyhow::Result<Result<(), String>> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime for health checks")?;
    let outcome = tokio.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on loopback for the health checks")?;
        let address = listener.local_addr()?.to_string();
        let server = tokio::spawn(answer_ok(listener));
        let name = &*slot.name;
        let pool = pool_of(name, 1, Some(&address));
        let checker = runtime.health_check(
            name,
            &pool.name,
            &request.config_json,
            &UpstreamProtocol::default(),
        );
        if let Err(error) = runtime.attach(name, Role::HealthCheck, &pool, &request.config_json) {
            server.abort();
            return Ok(Err(error.reason));
        }
        let endpoint = Arc::clone(&pool.endpoints().all[0]);
        let check = || {
            let checker = Arc::clone(&checker);
            let endpoint = Arc::clone(&endpoint);
            async move {
                match checker
                    .check(endpoint, Instant::now() + HEALTH_CHECK_DEADLINE)
                    .await
                {
                    CheckOutcome::Fault(fault) => Err(fault),
                    CheckOutcome::Verdict(health, reason) => Ok((health, reason)),
                }
            }
        };
        // One untimed check sets the instance up.
        let warm = check().await;
        report.memory_after_setup_bytes = Some(slot.memory_high_bytes());
        let mut series = Series::new(HEALTH_CHECKS as usize);
        let mut verdicts = HealthVerdicts::default();
        let mut fault = warm.err();
        while fault.is_none() && series.len() < HEALTH_CHECKS as usize {
            let started = Instant::now();
            let result = check().await;
            series.push(started.elapsed());
            match result {
                Ok((health, reason)) => verdicts.count(health, reason),
                Err(error) => fault = Some(error),
            }
        }
        server.abort();
        report.health_verdicts = Some(verdicts);
        report
            .measurements
            .push(series.measurement("check", 1, None, fault));
        anyhow::Ok(Ok(()))
    })?;
    Ok(outcome)
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// Accepts connections, reads what comes, and answers `200 OK`.
async fn answer_ok(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            let _ =
                tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        });
    }
}

/// Makes `WARM_UP_CALLS` untimed calls, then times up to `calls` of
/// `call(n)`, stopping at the first fault. Returns the series and the
/// plugin's memory after the warm-up.
fn time_calls(
    what: &str,
    endpoints: u32,
    calls: u32,
    budget_ns: Option<u64>,
    slot: &PluginSlot,
    mut call: impl FnMut(u32) -> Result<(), String>,
) -> (Measurement, u64) {
    let mut series = Series::new(calls as usize);
    let mut fault = None;
    for n in 0..WARM_UP_CALLS {
        if let Err(error) = call(n) {
            fault = Some(error);
            break;
        }
    }
    let memory = slot.memory_high_bytes();
    let mut n = WARM_UP_CALLS;
    while fault.is_none() && series.len() < calls as usize {
        // The calling thread's CPU time, as the runtime's budget counts it:
        // time the machine gave to other work is not the plugin's.
        let started = thread_cpu_time();
        let result = call(n);
        series.push(thread_cpu_time().saturating_sub(started));
        fault = result.err();
        n += 1;
    }
    (
        series.measurement(what, endpoints, budget_ns, fault),
        memory,
    )
}

/// Call times, ns.
struct Series(Vec<u64>);

impl Series {
    fn new(capacity: usize) -> Self {
        Series(Vec::with_capacity(capacity))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn push(&mut self, elapsed: Duration) {
        self.0.push(elapsed.as_nanos() as u64);
    }

    fn measurement(
        mut self,
        call: &str,
        endpoints: u32,
        budget_ns: Option<u64>,
        fault: Option<String>,
    ) -> Measurement {
        self.0.sort_unstable();
        Measurement {
            call: call.to_string(),
            endpoints,
            calls: self.0.len() as u32,
            p50_ns: percentile(&self.0, 50),
            p99_ns: percentile(&self.0, 99),
            max_ns: self.0.last().copied(),
            budget_ns,
            fault,
        }
    }
}

/// The `p`th percentile of sorted `values` (nearest rank).
fn percentile(values: &[u64], p: usize) -> Option<u64> {
    let rank = (values.len() * p).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

/// A fault on one line: a trap's wasm backtrace is left out (`--json`
/// keeps it).
fn one_line(fault: &str) -> String {
    match fault.split_once("error while executing at wasm backtrace:") {
        Some((head, backtrace)) => {
            let cause = backtrace
                .lines()
                .last()
                .and_then(|line| line.rsplit_once(">: "))
                .map_or("", |(_, cause)| cause);
            format!("{head}{cause}")
        }
        None => fault.replace('\n', " "),
    }
}

/// The slot's last fault message.
fn last_fault(slot: &PluginSlot) -> String {
    slot.history
        .lock()
        .unwrap()
        .last_fault
        .as_ref()
        .map_or_else(|| "a fault".to_string(), |note| note.message.clone())
}

fn world_name(world: World) -> &'static str {
    match world {
        World::Balancer => "balancer",
        World::HealthCheck => "health-check",
        World::Recovery => "recovery",
    }
}

/// A temporary folder, removed when dropped.
/// A folder of its own under the system's temporary folder, removed when
/// dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("switchyard-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the folder {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Scratch {
    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `1.2 µs`, `3.4 ms`: a duration in ns, shown in the unit that suits it.
pub fn duration(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Report {
    /// The report for a person: one fact a line, the verdict last.
    pub fn to_text(&self) -> String {
        let mut out = format!("plugin check {}\n", self.file);
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("  {label:<10} {value}\n"));
        };
        line("size", format!("{} bytes", self.size_bytes));
        line(
            "settings",
            format!(
                "{}: call_timeout_ms = {}, memory_limit_mib = {}, quarantine_after = {}",
                self.settings.source,
                self.settings.call_timeout_ms,
                self.settings.memory_limit_mib,
                self.settings.quarantine_after
            ),
        );
        if let (Some(world), Some(contract)) = (&self.world, &self.contract) {
            line("world", format!("{world}, contract {contract}"));
            line(
                "imports",
                if self.imports.is_empty() {
                    "none".to_string()
                } else {
                    self.imports.join(", ")
                },
            );
        }
        if let Some(micros) = self.compile_micros {
            line(
                "compile",
                format!("{} (compiled and validated)", duration(micros * 1_000)),
            );
        }
        if let Some(accepted) = self.configure_accepted {
            line(
                "configure",
                format!(
                    "{} {}",
                    self.config,
                    if accepted { "accepted" } else { "refused" }
                ),
            );
        }
        if let (Some(setup), Some(calls)) =
            (self.memory_after_setup_bytes, self.memory_after_calls_bytes)
        {
            line(
                "memory",
                format!(
                    "{} after set-up and warm-up, {} after the timed calls (largest instance; cap {} MiB){}",
                    mebibytes(setup),
                    mebibytes(calls),
                    self.settings.memory_limit_mib,
                    match self.recycles {
                        0 => String::new(),
                        n => format!("; {n} instance(s) recycled for their memory"),
                    }
                ),
            );
        }
        for series in &self.measurements {
            let budget = series.budget_ns.map_or_else(
                || "network included, no budget applies".to_string(),
                |ns| format!("budget {}", duration(ns)),
            );
            let timed = match (series.p50_ns, series.p99_ns, series.max_ns) {
                (Some(p50), Some(p99), Some(max)) => format!(
                    "{} calls, p50 {}, p99 {}, max {} ({budget})",
                    series.calls,
                    duration(p50),
                    duration(p99),
                    duration(max)
                ),
                _ => "no call timed".to_string(),
            };
            line(
                series.call.as_str(),
                format!("{:>6} endpoint(s): {timed}", series.endpoints),
            );
            if let Some(fault) = &series.fault {
                line("", format!("fault: {}", one_line(fault)));
            }
        }
        if let Some(verdicts) = &self.health_verdicts {
            let counts: Vec<String> = verdicts
                .counts
                .iter()
                .map(|(health, count)| format!("{health} {count}"))
                .collect();
            let mut said = format!(
                "{} (of a listener that answers 200 OK)",
                if counts.is_empty() {
                    "none".to_string()
                } else {
                    counts.join(", ")
                }
            );
            if let Some(reason) = &verdicts.last_not_healthy {
                said.push_str(&format!("; last not healthy: {reason}"));
            }
            line("verdicts", said);
        }
        match self.verdict.status {
            Status::Ok => out.push_str("verdict: ok\n"),
            Status::Warn => out.push_str(&format!("verdict: warn: {}\n", self.reasons())),
            Status::Rejected => out.push_str(&format!("verdict: rejected: {}\n", self.reasons())),
        }
        out
    }

    fn reasons(&self) -> String {
        let reasons: Vec<String> = self.verdict.reasons.iter().map(|r| one_line(r)).collect();
        reasons.join("; ")
    }

    /// The exit code: 1 when the host would refuse the file, else 0.
    pub fn exit_code(&self) -> i32 {
        match self.verdict.status {
            Status::Ok | Status::Warn => 0,
            Status::Rejected => 1,
        }
    }
}

/// Reads the `[plugins]` settings of the config file at `path`.
pub fn plugins_settings(path: &Path) -> anyhow::Result<PluginsConfig> {
    let config = crate::config::Config::load(path)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("--plugins-config {}", path.display()))?;
    Ok(config.plugins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), Some(50));
        assert_eq!(percentile(&values, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    fn report_with(p99_ns: u64, fault: Option<&str>, memory_mib: u64) -> Report {
        Report {
            file: "p.wasm".into(),
            size_bytes: 1,
            settings: Settings {
                source: "defaults".into(),
                call_timeout_ms: 1,
                memory_limit_mib: 32,
                quarantine_after: 10,
            },
            world: Some("balancer".into()),
            contract: Some("0.2.1".into()),
            imports: Vec::new(),
            compile_micros: Some(1),
            config: "{}".into(),
            configure_accepted: Some(true),
            memory_after_setup_bytes: Some(memory_mib << 20),
            memory_after_calls_bytes: Some(memory_mib << 20),
            recycles: 0,
            measurements: vec![Measurement {
                call: "pick".into(),
                endpoints: 10,
                calls: 5_000,
                p50_ns: Some(p99_ns / 2),
                p99_ns: Some(p99_ns),
                max_ns: Some(p99_ns),
                budget_ns: Some(1_000_000),
                fault: fault.map(str::to_string),
            }],
            health_verdicts: None,
            verdict: Verdict {
                status: Status::Ok,
                reasons: Vec::new(),
            },
        }
    }

    fn judged(mut report: Report) -> (Status, Vec<String>) {
        judge(&mut report);
        (report.verdict.status, report.verdict.reasons)
    }

    #[test]
    fn the_verdict_holds_p99_to_the_budget_and_memory_to_the_cap() {
        assert_eq!(judged(report_with(4_000, None, 1)).0, Status::Ok);
        let (status, reasons) = judged(report_with(600_000, None, 1));
        assert_eq!(status, Status::Warn);
        assert!(
            reasons[0].contains("over half the per-call budget"),
            "{reasons:?}"
        );
        let (status, reasons) = judged(report_with(1_200_000, None, 1));
        assert_eq!(status, Status::Rejected);
        assert!(
            reasons[0].contains("over the per-call budget"),
            "{reasons:?}"
        );
        let (status, reasons) = judged(report_with(4_000, None, 30));
        assert_eq!(status, Status::Warn);
        assert!(
            reasons[0].contains("of the 32.0 MiB memory cap"),
            "{reasons:?}"
        );
        let (status, reasons) = judged(report_with(4_000, Some("pick trapped"), 1));
        assert_eq!(status, Status::Rejected);
        assert!(reasons[0].ends_with("faulted after 5000 timed call(s): pick trapped"));
    }

    #[test]
    fn a_trap_is_shown_without_its_backtrace() {
        let fault = "pick trapped: error while executing at wasm backtrace:\n    0:   0x1393 - <unknown>!<wasm function 29>: wasm trap: wasm `unreachable` instruction executed";
        assert_eq!(
            one_line(fault),
            "pick trapped: wasm trap: wasm `unreachable` instruction executed"
        );
    }

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration(900), "900 ns");
        assert_eq!(duration(1_500), "1.5 µs");
        assert_eq!(duration(2_000_000), "2.00 ms");
    }
}
