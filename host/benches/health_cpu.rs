//! CPU cost of active health checks: 10,000 endpoints checked every second,
//! side by side in one run, in two harnesses.
//!
//! - **binary**: the real `switchyard` binary, once through the bundled
//!   `http-health` plugin (`GET /healthz` per check) and once with the
//!   native TCP connect check (a `health` table without a plugin).
//! - **checker**: a process of this bench's own (the bench run again with
//!   `HEALTH_CPU_CHECKER` set) that does nothing but check: the library's
//!   `spawn_checks` on a runtime of two threads (as the binary's checks
//!   get), judged by the native TCP check, by a native HTTP check making
//!   the exchange `http-health` makes (`NativeHttpCheck` below: `GET
//!   /healthz` over one kept-alive connection per endpoint, the probe
//!   client's settings, 2xx or 3xx healthy), or by `http-health` itself.
//!   The binary has no native HTTP check, so this is where the plugin is
//!   compared with one, with nothing else in the process. Every checker
//!   has a plugin runtime, as the binary has (its epoch ticker is a fixed
//!   cost); the idle case, a checker without checks, measures that cost.
//!
//! Target: `http-health` at most 1.2x the native HTTP check's CPU.
//!
//! Every endpoint is a distinct loopback address `127.0.{i / 250}.{i % 250 + 1}`
//! on the port of one in-process stub (tokio + hyper) bound to `0.0.0.0:0`,
//! which answers every request `200 ok`; Linux routes all of 127.0.0.0/8 to
//! loopback, so the stub accepts connections to any of them. The stub closes
//! at once any connection that is not loopback to loopback. Nothing else is
//! ever connected to.
//!
//! Per case: start the process (`RUST_LOG=warn`), warm up (the first checks
//! are spread over one interval), then measure the child's CPU from
//! `/proc/<pid>/stat` (utime + stime, in clock ticks) over the window: CPU
//! seconds / wall seconds = share of one core. Checks/s come from the
//! plugin's `calls` delta in `GET /v1/plugins` (binary, plugin case) or the
//! checker's own count (checker cases); the stub's requests and accepted
//! connections per second are shown beside them (an HTTP check reuses its
//! connection; a TCP check opens one per check). At the end the endpoints
//! whose active health is `healthy` are counted.
//!
//! The stub runs in this process and shares the machine's cores with the
//! child; its CPU and the machine's overall load are printed beside the
//! table.
//!
//! `cargo bench -p switchyard --bench health_cpu`
//! (HEALTH_ENDPOINTS=N, default 10000, at most 10000;
//! HEALTH_WARMUP_S, default 5; HEALTH_MEASURE_S, default 10; HEALTH_CASES,
//! the cases whose label contains one of its comma-separated parts)

mod common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Endpoints unless `HEALTH_ENDPOINTS` says otherwise.
const DEFAULT_ENDPOINTS: usize = 10_000;
/// Addresses per third octet: 127.0.x.1 ..= 127.0.x.250.
const PER_OCTET: usize = 250;
/// Warm-up unless `HEALTH_WARMUP_S` says otherwise.
const DEFAULT_WARMUP_S: u64 = 5;
/// Measurement window unless `HEALTH_MEASURE_S` says otherwise.
const DEFAULT_MEASURE_S: u64 = 10;
/// How long the binary may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The plugin under test.
const PLUGIN: &str = "http-health";
/// Set in a checker process: which check it runs (`tcp`, `http`, `plugin`).
const CHECKER_ENV: &str = "HEALTH_CPU_CHECKER";
/// The checker process's stub port and plugin folder.
const CHECKER_PORT_ENV: &str = "HEALTH_CPU_PORT";
const CHECKER_PLUGINS_ENV: &str = "HEALTH_CPU_PLUGINS";
/// Probe response bodies are read up to this, as the host's probe does.
const MAX_BODY: usize = 64 * 1024;
/// The check schedule of every case.
const INTERVAL_MS: u64 = 1000;
const TIMEOUT_MS: u64 = 500;
const JITTER_MS: u64 = 100;

/// What the in-process stub counts.
#[derive(Debug, Default)]
struct StubCounters {
    /// Connections accepted (loopback to loopback).
    accepted: AtomicU64,
    /// Requests answered.
    requests: AtomicU64,
    /// Connections closed unanswered because they were not loopback.
    refused: AtomicU64,
    /// `accept` errors (EMFILE and the like).
    accept_errors: AtomicU64,
}

/// One case's figures.
#[derive(Debug)]
struct CaseResult {
    label: &'static str,
    endpoints: usize,
    /// Checks per second: the plugin's `calls` delta or the checker's
    /// count; none for the binary's native check.
    checks_per_s: Option<f64>,
    /// Connections the stub accepted per second in the window.
    stub_conns_per_s: f64,
    /// Requests the stub answered per second in the window.
    stub_requests_per_s: f64,
    /// The child's CPU seconds per wall second, as a share of one core.
    cpu_share: f64,
    /// This process's (the stub's) CPU share in the same window.
    stub_cpu_share: f64,
    /// The whole machine's busy share of all its cores in the window.
    machine_busy: Option<f64>,
    /// Plugin faults during the window (none for a native check).
    faults: Option<u64>,
    /// Plugin faults since the start (none for a native check).
    faults_total: Option<u64>,
    /// Endpoints by `health.active` at the end.
    healthy: usize,
    other_states: Vec<(String, usize)>,
    /// Endpoints whose last transition was judged by the native fallback.
    fallback_reasons: usize,
    /// Stderr lines of the child mentioning "Too many open files".
    emfile_lines: usize,
    stderr_lines: usize,
    last_fault: Option<String>,
}

/// What a case runs and how it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// No checks: the checker's fixed cost.
    Idle,
    Plugin,
    NativeTcp,
    NativeHttp,
}

/// Where the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Harness {
    /// The `switchyard` binary.
    Binary,
    /// A checker process of this bench's own.
    Checker,
}

impl CaseResult {
    /// The child's CPU per check, in µs: by its checks/s, else (the
    /// binary's native check) by the connections the stub accepted.
    fn cpu_per_check_us(&self) -> f64 {
        let rate = self.checks_per_s.unwrap_or(self.stub_conns_per_s);
        if rate > 0.0 {
            self.cpu_share * 1e6 / rate
        } else {
            f64::NAN
        }
    }
}

/// The child, killed on drop: the binary (`control` its control listener)
/// or a checker (`status` its last status line).
struct Switchyard {
    child: Child,
    control: SocketAddr,
    status: Arc<Mutex<Option<CheckerStatus>>>,
    stderr: Arc<Mutex<StderrLog>>,
}

/// A checker's status line: `at_ms=N calls=N faults=N healthy=N`, `at_ms`
/// on the checker's own clock.
#[derive(Debug, Clone, Default)]
struct CheckerStatus {
    at_ms: u64,
    calls: u64,
    faults: u64,
    healthy: usize,
    last_fault: Option<String>,
}

impl CheckerStatus {
    fn parse(line: &str) -> Option<CheckerStatus> {
        let (counts, fault) = match line.split_once(" last_fault=") {
            Some((counts, fault)) => (counts, Some(fault.to_string())),
            None => (line, None),
        };
        let mut status = CheckerStatus {
            last_fault: fault,
            ..CheckerStatus::default()
        };
        for field in counts.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "at_ms" => status.at_ms = value.parse().ok()?,
                "calls" => status.calls = value.parse().ok()?,
                "faults" => status.faults = value.parse().ok()?,
                "healthy" => status.healthy = value.parse().ok()?,
                _ => return None,
            }
        }
        Some(status)
    }
}

#[derive(Debug, Default)]
struct StderrLog {
    lines: usize,
    emfile: usize,
    first: Vec<String>,
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={text}: {e}")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    if let Ok(check) = std::env::var(CHECKER_ENV) {
        return checker::run(&check);
    }
    let endpoints: usize = env_number("HEALTH_ENDPOINTS", DEFAULT_ENDPOINTS)?;
    anyhow::ensure!(
        (1..=DEFAULT_ENDPOINTS).contains(&endpoints),
        "HEALTH_ENDPOINTS must be 1..=10000 (addresses stay in 127.0.0.0/18)"
    );
    let warmup = Duration::from_secs(env_number("HEALTH_WARMUP_S", DEFAULT_WARMUP_S)?);
    let measure = Duration::from_secs(env_number("HEALTH_MEASURE_S", DEFAULT_MEASURE_S)?);
    anyhow::ensure!(!measure.is_zero(), "HEALTH_MEASURE_S must be at least 1");

    let built = common::build(PLUGIN, "plugins/http-health");
    let plugin_dir = common::bench_plugin_dir();
    anyhow::ensure!(built.parent() == Some(plugin_dir.as_path()));

    let (clk_tck, clk_source) = clock_ticks();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The stub: its own runtime, two workers (the machine has two cores).
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let counters = Arc::new(StubCounters::default());
    let listener = tokio.block_on(tokio::net::TcpListener::bind("0.0.0.0:0"))?;
    let port = listener.local_addr()?.port();
    tokio.spawn(stub(listener, counters.clone()));
    self_test(port).context("the stub does not answer on 127.0.1.2")?;

    println!(
        "health_cpu: {endpoints} endpoints 127.0.0.1..127.0.{}.{}:{port}, interval {INTERVAL_MS} ms, \
         timeout {TIMEOUT_MS} ms, jitter {JITTER_MS} ms; warm-up {} s, window {} s; \
         {cores} cores; CLK_TCK {clk_tck} ({clk_source}); open-file limit {}",
        (endpoints - 1) / PER_OCTET,
        (endpoints - 1) % PER_OCTET + 1,
        warmup.as_secs(),
        measure.as_secs(),
        open_file_limit().unwrap_or_else(|| "?".into()),
    );

    let config_dir = tempfile::Builder::new()
        .prefix("switchyard-health-cpu-")
        .tempdir()?;
    let cases: [(&'static str, Harness, Check); 6] = [
        ("binary: http-health", Harness::Binary, Check::Plugin),
        ("binary: native TCP", Harness::Binary, Check::NativeTcp),
        ("checker: idle", Harness::Checker, Check::Idle),
        ("checker: native TCP", Harness::Checker, Check::NativeTcp),
        ("checker: native HTTP", Harness::Checker, Check::NativeHttp),
        ("checker: http-health", Harness::Checker, Check::Plugin),
    ];
    let only = std::env::var("HEALTH_CASES").unwrap_or_default();
    let mut results = Vec::new();
    for (label, harness, check) in cases {
        if !only.is_empty() && !only.split(',').any(|part| label.contains(part.trim())) {
            continue;
        }
        eprintln!("health_cpu: {label}: starting");
        let child = match harness {
            Harness::Binary => {
                let path = config_dir.path().join(format!("{check:?}.toml"));
                let plugin = (check == Check::Plugin).then_some(PLUGIN);
                std::fs::write(&path, config(endpoints, port, &plugin_dir, plugin))?;
                start(&path)
            }
            Harness::Checker => start_checker(check, endpoints, port, &plugin_dir),
        }
        .with_context(|| format!("case `{label}`"))?;
        let result = run_case(
            label, harness, check, child, endpoints, &counters, warmup, measure, clk_tck, cores,
        )
        .with_context(|| format!("case `{label}`"))?;
        results.push(result);
    }
    drop(tokio);

    print_table(&results);
    Ok(())
}

/// Clock ticks per second for `/proc/<pid>/stat`: `getconf CLK_TCK`, else
/// the Linux value 100.
fn clock_ticks() -> (f64, &'static str) {
    let from_getconf = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0);
    match from_getconf {
        Some(ticks) => (ticks, "getconf CLK_TCK"),
        None => (100.0, "assumed, the Linux value"),
    }
}

fn open_file_limit() -> Option<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(format!("{} soft / {} hard", fields.get(3)?, fields.get(4)?))
}

/// The stub upstream: `200 ok` to every request, on connections from and to
/// loopback only.
async fn stub(listener: tokio::net::TcpListener, counters: Arc<StubCounters>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                if counters.accept_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("health_cpu: stub accept failed: {error}");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let local_loopback = stream.local_addr().is_ok_and(|a| is_loopback(a.ip()));
        if !is_loopback(peer.ip()) || !local_loopback {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: http::Request<hyper::body::Incoming>| {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                async move {
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header(http::header::CONTENT_TYPE, "text/plain")
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .expect("valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) || v6.is_loopback()
        }
    }
}

/// One request to the stub on a loopback address other than 127.0.0.1.
fn self_test(port: u16) -> anyhow::Result<()> {
    let address: SocketAddr = format!("127.0.1.2:{port}").parse()?;
    let (status, body) = http_get(address, "/healthz")?;
    anyhow::ensure!(
        status == 200 && body == b"ok",
        "answered {status} {:?}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// The endpoint addresses: `127.0.{i / 250}.{i % 250 + 1}:port`.
fn endpoint_address(i: usize, port: u16) -> String {
    format!("127.0.{}.{}:{port}", i / PER_OCTET, i % PER_OCTET + 1)
}

fn config(endpoints: usize, port: u16, plugin_dir: &Path, plugin: Option<&str>) -> String {
    let health = match plugin {
        Some(name) => format!(
            "{{ plugin = \"{name}\", interval_ms = {INTERVAL_MS}, timeout_ms = {TIMEOUT_MS}, \
             jitter_ms = {JITTER_MS}, config = {{ path = \"/healthz\" }} }}"
        ),
        None => format!(
            "{{ interval_ms = {INTERVAL_MS}, timeout_ms = {TIMEOUT_MS}, jitter_ms = {JITTER_MS} }}"
        ),
    };
    let mut text = format!(
        r#"[proxy]
listen = "127.0.0.1:0"
workers = 2

[control]
listen = "127.0.0.1:0"

[plugins]
dir = {dir}
max_instances = 2048

[[pools]]
name = "checked"
outlier = {{ enabled = false }}
health = {health}
endpoints = [
"#,
        dir = toml::Value::String(plugin_dir.display().to_string()),
    );
    for i in 0..endpoints {
        text.push_str(&format!(
            "  {{ address = \"{}\" }},\n",
            endpoint_address(i, port)
        ));
    }
    text.push_str("]\n");
    text
}

/// The counters of a case's child now: checks so far (none for the
/// binary's native check), faults, and the last fault.
fn child_counters(
    child: &Switchyard,
    harness: Harness,
    check: Check,
) -> anyhow::Result<Option<CheckerStatus>> {
    match (harness, check) {
        (Harness::Checker, _) => Ok(child.status.lock().unwrap().clone()),
        (Harness::Binary, Check::Plugin) => Ok(plugin_counters(child.control)?.map(|slot| {
            anyhow::ensure!(
                slot.state == "active",
                "{PLUGIN} is {}, not active",
                slot.state
            );
            Ok(CheckerStatus {
                at_ms: 0,
                calls: slot.calls,
                faults: slot.faults,
                healthy: 0,
                last_fault: slot.last_fault,
            })
        }))
        .and_then(Option::transpose),
        (Harness::Binary, _) => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    label: &'static str,
    harness: Harness,
    check: Check,
    mut switchyard: Switchyard,
    endpoints: usize,
    counters: &StubCounters,
    warmup: Duration,
    measure: Duration,
    clk_tck: f64,
    cores: usize,
) -> anyhow::Result<CaseResult> {
    let pid = switchyard.child.id();
    eprintln!(
        "health_cpu: {label}: pid {pid}; warming up {} s",
        warmup.as_secs()
    );
    std::thread::sleep(warmup);

    let before = child_counters(&switchyard, harness, check)?;
    let counters_before_at = Instant::now();
    let stub_before = counters.accepted.load(Ordering::Relaxed);
    let requests_before = counters.requests.load(Ordering::Relaxed);
    let machine_before = machine_ticks();
    let child_before = process_ticks(&format!("/proc/{pid}/stat"))?;
    let self_before = process_ticks("/proc/self/stat")?;
    let started = Instant::now();

    std::thread::sleep(measure);

    let child_after = process_ticks(&format!("/proc/{pid}/stat"))?;
    let self_after = process_ticks("/proc/self/stat")?;
    let wall = started.elapsed().as_secs_f64();
    let machine_after = machine_ticks();
    let stub_after = counters.accepted.load(Ordering::Relaxed);
    let requests_after = counters.requests.load(Ordering::Relaxed);
    let after = child_counters(&switchyard, harness, check)?;
    let counters_wall = counters_before_at.elapsed().as_secs_f64();

    if let Some(status) = switchyard.child.try_wait()? {
        anyhow::bail!("the child exited during the window: {status}");
    }
    let mut states: std::collections::BTreeMap<String, usize> = Default::default();
    let mut fallback_reasons = 0;
    let healthy = match harness {
        Harness::Binary => {
            let pools = control_json(switchyard.control, "/v1/pools")?;
            let listed = pools["pools"][0]["endpoints"]
                .as_array()
                .context("/v1/pools has no endpoints array")?;
            for endpoint in listed {
                let health = &endpoint["health"];
                let active = health["active"].as_str().unwrap_or("?").to_string();
                *states.entry(active).or_default() += 1;
                if health["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("native check"))
                {
                    fallback_reasons += 1;
                }
            }
            anyhow::ensure!(
                listed.len() == endpoints,
                "/v1/pools lists {} endpoints, expected {endpoints}",
                listed.len()
            );
            states.remove("healthy").unwrap_or(0)
        }
        Harness::Checker => {
            let healthy = after.as_ref().map_or(0, |status| status.healthy);
            if healthy < endpoints {
                states.insert("other".into(), endpoints - healthy);
            }
            healthy
        }
    };

    let cpu_share = (child_after - child_before) / clk_tck / wall;
    let stub_cpu_share = (self_after - self_before) / clk_tck / wall;
    let machine_busy = match (machine_before, machine_after) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some((busy1 - busy0) / (total1 - total0) * cores as f64)
        }
        _ => None,
    };
    let stub_conns_per_s = (stub_after - stub_before) as f64 / wall;
    let stub_requests_per_s = (requests_after - requests_before) as f64 / wall;
    let (checks_per_s, faults, faults_total, last_fault) = match (before, after) {
        (Some(before), Some(after)) => (
            Some(
                (after.calls - before.calls) as f64
                    / match harness {
                        // A checker's lines may be stale by a line: its clock.
                        Harness::Checker => (after.at_ms - before.at_ms) as f64 / 1e3,
                        Harness::Binary => counters_wall,
                    },
            ),
            (check == Check::Plugin).then_some(after.faults - before.faults),
            (check == Check::Plugin).then_some(after.faults),
            after.last_fault,
        ),
        _ => (None, None, None, None),
    };
    let log = switchyard.stderr.lock().unwrap();
    let (emfile_lines, stderr_lines) = (log.emfile, log.lines);
    if log.lines > 0 {
        eprintln!(
            "health_cpu: {label}: the child wrote {} stderr lines; first ones:",
            log.lines
        );
        for line in &log.first {
            eprintln!("  {line}");
        }
    }
    drop(log);
    drop(switchyard);
    eprintln!("health_cpu: {label}: done");
    Ok(CaseResult {
        label,
        endpoints,
        checks_per_s,
        stub_conns_per_s,
        stub_requests_per_s,
        cpu_share,
        stub_cpu_share,
        machine_busy,
        faults,
        faults_total,
        healthy,
        other_states: states.into_iter().collect(),
        fallback_reasons,
        emfile_lines,
        stderr_lines,
        last_fault,
    })
}

/// Starts a checker process (this bench again, `HEALTH_CPU_CHECKER=check`)
/// and waits for its first status line.
fn start_checker(
    check: Check,
    endpoints: usize,
    port: u16,
    plugin_dir: &Path,
) -> anyhow::Result<Switchyard> {
    let name = match check {
        Check::Idle => "idle",
        Check::Plugin => "plugin",
        Check::NativeTcp => "tcp",
        Check::NativeHttp => "http",
    };
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHECKER_ENV, name)
        .env(CHECKER_PORT_ENV, port.to_string())
        .env(CHECKER_PLUGINS_ENV, plugin_dir)
        .env("HEALTH_ENDPOINTS", endpoints.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the checker")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let stderr = log_stderr(stderr);
    let status = Arc::new(Mutex::new(None));
    let (first_line, receive) = mpsc::channel();
    {
        let status = status.clone();
        std::thread::spawn(move || {
            let mut first_line = Some(first_line);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(parsed) = CheckerStatus::parse(&line) {
                    *status.lock().unwrap() = Some(parsed);
                }
                if let Some(first) = first_line.take() {
                    let _ = first.send(line);
                }
            }
        });
    }
    let checker = Switchyard {
        child,
        control: "127.0.0.1:0".parse()?,
        status,
        stderr,
    };
    let line = receive.recv_timeout(START_TIMEOUT).map_err(|_| {
        anyhow::anyhow!(
            "no status line; stderr: {}",
            checker.stderr.lock().unwrap().first.join("\n")
        )
    })?;
    anyhow::ensure!(
        CheckerStatus::parse(&line).is_some(),
        "unexpected first line: {line}"
    );
    Ok(checker)
}

/// Keeps count of a child's stderr lines, and the first ten.
fn log_stderr(stderr: std::process::ChildStderr) -> Arc<Mutex<StderrLog>> {
    let log = Arc::new(Mutex::new(StderrLog::default()));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.lines += 1;
                if line.contains("Too many open files") {
                    log.emfile += 1;
                }
                if log.first.len() < 10 {
                    log.first.push(line);
                }
            }
        });
    }
    log
}

/// Starts the binary and waits for its listening line.
fn start(config_path: &Path) -> anyhow::Result<Switchyard> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start switchyard")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let log = log_stderr(stderr);
    let (first_line, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = first_line.send(lines.next());
        // Drain the rest.
        for line in lines {
            if line.is_err() {
                break;
            }
        }
    });
    let mut switchyard = Switchyard {
        child,
        control: "127.0.0.1:0".parse()?,
        status: Arc::default(),
        stderr: log,
    };
    let line = match receive.recv_timeout(START_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        other => {
            let log = switchyard.stderr.lock().unwrap();
            anyhow::bail!(
                "no listening line ({other:?}); stderr: {}",
                log.first.join("\n")
            );
        }
    };
    let control = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("control="))
        .with_context(|| format!("unexpected first line: {line}"))?;
    switchyard.control = control.parse().with_context(|| format!("line: {line}"))?;
    anyhow::ensure!(
        switchyard.control.ip().is_loopback(),
        "control listens on {}",
        switchyard.control
    );
    Ok(switchyard)
}

/// utime + stime of `/proc/.../stat`, in clock ticks.
fn process_ticks(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| path.to_string())?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat
        .rsplit_once(") ")
        .with_context(|| format!("{path}: {stat}"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<f64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("{path}: field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`; idle and iowait are
/// not busy.
fn machine_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<f64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: f64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// The `http-health` slot's counters in `/v1/plugins`.
#[derive(Debug)]
struct SlotCounters {
    calls: u64,
    faults: u64,
    state: String,
    last_fault: Option<String>,
}

fn plugin_counters(control: SocketAddr) -> anyhow::Result<Option<SlotCounters>> {
    let plugins = control_json(control, "/v1/plugins")?;
    let slot = plugins["plugins"]
        .as_array()
        .context("/v1/plugins has no plugins array")?
        .iter()
        .find(|p| p["name"] == PLUGIN);
    Ok(slot.map(|slot| SlotCounters {
        calls: slot["calls"].as_u64().unwrap_or(0),
        faults: slot["faults"].as_u64().unwrap_or(0),
        state: slot["state"].as_str().unwrap_or("?").to_string(),
        last_fault: match &slot["last_fault"] {
            Value::Null => None,
            other => Some(other.to_string()),
        },
    }))
}

fn control_json(control: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let (status, body) = http_get(control, path)?;
    anyhow::ensure!(status == 200, "GET {path}: status {status}");
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

/// A minimal HTTP/1.1 GET with `Connection: close`; the servers here answer
/// with a content-length body and close. Loopback only.
fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    anyhow::ensure!(
        address.ip().is_loopback(),
        "refusing to connect to {address}"
    );
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line: {head}"))?;
    Ok((status, response[split + 4..].to_vec()))
}

fn print_table(results: &[CaseResult]) {
    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>12} {:>11} {:>10} {:>8} {:>7} {:>11}",
        "case",
        "endpoints",
        "checks/s",
        "stub conn/s",
        "stub req/s",
        "CPU % core",
        "µs/check",
        "faults",
        "healthy"
    );
    for r in results {
        println!(
            "{:<22} {:>9} {:>9} {:>12.0} {:>11.0} {:>10.2} {:>8} {:>7} {:>11}",
            r.label,
            r.endpoints,
            r.checks_per_s
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}")),
            r.stub_conns_per_s,
            r.stub_requests_per_s,
            r.cpu_share * 100.0,
            Some(r.cpu_per_check_us())
                .filter(|us| us.is_finite())
                .map_or_else(|| "-".to_string(), |us| format!("{us:.1}")),
            r.faults.map_or_else(|| "-".to_string(), |f| f.to_string()),
            format!("{}/{}", r.healthy, r.endpoints),
        );
    }
    let find = |label: &str| results.iter().find(|r| r.label == label);
    if let Some(idle) = find("checker: idle") {
        println!();
        println!(
            "checker: idle (no checks, the plugin runtime's fixed cost): {:.2}% of one core; net of it, per check:",
            idle.cpu_share * 100.0
        );
        for r in results.iter().filter(|r| r.label.starts_with("checker: ")) {
            if let Some(rate) = r.checks_per_s.filter(|rate| *rate > 0.0) {
                println!(
                    "  {}: {:.1} µs",
                    r.label,
                    (r.cpu_share - idle.cpu_share) * 1e6 / rate
                );
            }
        }
    }
    let ratio = |of: &str, to: &str| {
        if let (Some(of_case), Some(to_case)) = (find(of), find(to)) {
            println!(
                "{of} / {to}: CPU {:.2}x, CPU per check {:.2}x",
                of_case.cpu_share / to_case.cpu_share,
                of_case.cpu_per_check_us() / to_case.cpu_per_check_us()
            );
        }
    };
    println!();
    ratio("binary: http-health", "binary: native TCP");
    ratio("checker: http-health", "checker: native TCP");
    ratio("checker: native HTTP", "checker: native TCP");
    ratio("checker: http-health", "checker: native HTTP");
    if let (Some(plugin), Some(native)) =
        (find("checker: http-health"), find("checker: native HTTP"))
    {
        let ratio = plugin.cpu_per_check_us() / native.cpu_per_check_us();
        let verdict = if ratio <= 1.2 { "met" } else { "NOT met" };
        println!("target http-health <= 1.2x native HTTP, CPU per check: {verdict} ({ratio:.2}x)");
    }
    println!();
    println!("checks/s: http-health `calls` delta in /v1/plugins (binary) or the checker's own count, over the window; stub conn/s, req/s: connections the in-process stub accepted and requests it answered per second");
    println!("CPU % core: the child's utime+stime from /proc/<pid>/stat over the window / wall time; µs/check: that CPU per check (by checks/s, else by stub conn/s)");
    for r in results {
        let mut notes = vec![format!(
            "stub (this process) {:.2}% of one core",
            r.stub_cpu_share * 100.0
        )];
        if let Some(busy) = r.machine_busy {
            notes.push(format!(
                "machine busy {:.1}% of one core (all processes)",
                busy * 100.0
            ));
        }
        if let Some(total) = r.faults_total {
            notes.push(format!("faults since start {total}"));
        }
        if !r.other_states.is_empty() {
            notes.push(format!("not healthy: {:?}", r.other_states));
        }
        if r.fallback_reasons > 0 {
            notes.push(format!(
                "{} endpoints last changed state on the native fallback check",
                r.fallback_reasons
            ));
        }
        if r.emfile_lines > 0 {
            notes.push(format!(
                "{} stderr lines say `Too many open files`",
                r.emfile_lines
            ));
        }
        notes.push(format!("{} stderr lines (RUST_LOG=warn)", r.stderr_lines));
        if let Some(fault) = &r.last_fault {
            notes.push(format!("last fault: {fault}"));
        }
        println!("{}: {}", r.label, notes.join("; "));
    }
}

/// A checker process: the library's active checks over the bench's
/// endpoints and nothing else, printing its status line five times a
/// second.
mod checker {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context as _;
    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Empty};
    use switchyard::engine::{
        spawn_checks, CheckFuture, CheckOutcome, CheckSchedule, Endpoint, Health, HealthChecker,
        Pool, TcpCheck, UpstreamProtocol,
    };
    use switchyard::plugins::{PluginRuntime, Role};

    use super::{
        endpoint_address, env_number, CHECKER_PLUGINS_ENV, CHECKER_PORT_ENV, DEFAULT_ENDPOINTS,
        INTERVAL_MS, JITTER_MS, MAX_BODY, PLUGIN, TIMEOUT_MS,
    };

    /// The binary's checks run on a runtime of this many threads.
    const THREADS: usize = 2;

    /// The exchange `http-health` makes through the host's probe, natively:
    /// `GET /healthz` over one kept-alive connection per endpoint (the
    /// probe client's settings), the headers and up to 64 KiB of body
    /// read, healthy on 2xx or 3xx.
    #[derive(Debug)]
    struct NativeHttpCheck {
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Empty<Bytes>,
        >,
    }

    impl NativeHttpCheck {
        fn new() -> Self {
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_max_idle_per_host(1)
                    .pool_idle_timeout(Duration::from_secs(120))
                    .pool_timer(hyper_util::rt::TokioTimer::new())
                    .build(connector);
            NativeHttpCheck { client }
        }
    }

    impl HealthChecker for NativeHttpCheck {
        fn check(&self, endpoint: Arc<Endpoint>, deadline: Instant) -> CheckFuture {
            let client = self.client.clone();
            Box::pin(async move {
                let started = Instant::now();
                let exchange = async {
                    let request =
                        http::Request::get(format!("http://{}/healthz", endpoint.address))
                            .body(Empty::new())
                            .map_err(|e| e.to_string())?;
                    let response = client.request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let headers: Vec<(String, String)> = response
                        .headers()
                        .iter()
                        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                        .collect();
                    let mut body = Vec::new();
                    let mut stream = response.into_body();
                    while body.len() < MAX_BODY {
                        match stream.frame().await {
                            Some(Ok(frame)) => {
                                if let Some(data) = frame.data_ref() {
                                    body.extend_from_slice(data);
                                }
                            }
                            Some(Err(error)) => return Err(error.to_string()),
                            None => break,
                        }
                    }
                    Ok::<_, String>((status, headers, body))
                };
                match tokio::time::timeout_at(deadline.into(), exchange).await {
                    Ok(Ok((status, _, _))) if (200..400).contains(&status) => {
                        CheckOutcome::Verdict(
                            Health::Healthy,
                            format!(
                                "{status} in {:.1} ms",
                                started.elapsed().as_secs_f64() * 1e3
                            ),
                        )
                    }
                    Ok(Ok((status, _, _))) => {
                        CheckOutcome::Verdict(Health::Unhealthy, format!("status {status}"))
                    }
                    Ok(Err(error)) => CheckOutcome::Verdict(Health::Unhealthy, error),
                    Err(_) => CheckOutcome::Verdict(Health::Unhealthy, "timed out".into()),
                }
            })
        }
    }

    /// Counts the checks of the checker it wraps.
    #[derive(Debug)]
    struct Counted<C> {
        inner: C,
        calls: Arc<AtomicU64>,
    }

    impl<C: HealthChecker> HealthChecker for Counted<C> {
        fn check(&self, endpoint: Arc<Endpoint>, deadline: Instant) -> CheckFuture {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.check(endpoint, deadline)
        }
    }

    pub fn run(check: &str) -> anyhow::Result<()> {
        let endpoints: usize = env_number("HEALTH_ENDPOINTS", DEFAULT_ENDPOINTS)?;
        let port: u16 = env_number(CHECKER_PORT_ENV, 0)?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .enable_all()
            .build()?;
        let _entered = tokio.enter();
        let pool = Arc::new(Pool::new(
            "checked".into(),
            (0..endpoints)
                .map(|i| {
                    Arc::new(
                        Endpoint::new(i as u32, &endpoint_address(i, port), 1, 0)
                            .expect("a valid address"),
                    )
                })
                .collect(),
            None,
            None,
        ));
        let calls = Arc::new(AtomicU64::new(0));
        // A plugin runtime in every case, as the binary has one whatever
        // its checks: its epoch ticker is a fixed cost, the idle case's.
        let dir = std::env::var(CHECKER_PLUGINS_ENV).context(CHECKER_PLUGINS_ENV)?;
        let runtime = PluginRuntime::new(&switchyard::config::PluginsConfig {
            dir: dir.into(),
            max_instances: 2048,
            ..Default::default()
        })?;
        let checker: Option<Arc<dyn HealthChecker>> = match check {
            "idle" => None,
            "tcp" => Some(Arc::new(Counted {
                inner: TcpCheck,
                calls: calls.clone(),
            })),
            "http" => Some(Arc::new(Counted {
                inner: NativeHttpCheck::new(),
                calls: calls.clone(),
            })),
            "plugin" => {
                runtime
                    .load(&runtime.dir().join(format!("{PLUGIN}.wasm")))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                runtime
                    .attach(PLUGIN, Role::HealthCheck, &pool, "{\"path\": \"/healthz\"}")
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Some(runtime.health_check(
                    PLUGIN,
                    &pool.name,
                    "{\"path\": \"/healthz\"}",
                    &UpstreamProtocol::default(),
                ))
            }
            other => anyhow::bail!("{}: unknown check `{other}`", super::CHECKER_ENV),
        };
        let _tasks = checker.map(|checker| {
            spawn_checks(
                Arc::clone(&pool),
                checker,
                CheckSchedule {
                    interval: Duration::from_millis(INTERVAL_MS),
                    jitter: Duration::from_millis(JITTER_MS),
                    timeout: Duration::from_millis(TIMEOUT_MS),
                    rise: 2,
                    fall: 3,
                },
            )
        });
        let slot = (check == "plugin")
            .then(|| runtime.find_slot(PLUGIN))
            .flatten();
        let started = Instant::now();
        loop {
            let at_ms = started.elapsed().as_millis();
            let healthy = pool
                .endpoints()
                .all
                .iter()
                .filter(|endpoint| endpoint.health() == Health::Healthy)
                .count();
            match &slot {
                Some(slot) => {
                    let history = slot.history.lock().unwrap();
                    let fault = history.last_fault.as_ref().map(|note| note.message.clone());
                    drop(history);
                    println!(
                        "at_ms={at_ms} calls={} faults={} healthy={healthy}{}",
                        slot.calls(),
                        slot.faults(),
                        fault.map_or_else(String::new, |f| format!(" last_fault={f}"))
                    );
                }
                None => println!(
                    "at_ms={at_ms} calls={} faults=0 healthy={healthy}",
                    calls.load(Ordering::Relaxed)
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
