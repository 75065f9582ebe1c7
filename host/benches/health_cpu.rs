//! CPU cost of active health checks: the real `switchyard` binary checks a
//! pool of 10,000 endpoints every second, once through the bundled
//! `http-health` plugin (`GET /healthz` per check) and once with the native
//! TCP connect check (a `health` table without a plugin), side by side in one
//! run. Target: the plugin case under 10% of one core.
//!
//! Every endpoint is a distinct loopback address `127.0.{i / 250}.{i % 250 + 1}`
//! on the port of one in-process stub (tokio + hyper) bound to `0.0.0.0:0`,
//! which answers every request `200 ok`; Linux routes all of 127.0.0.0/8 to
//! loopback, so the stub accepts connections to any of them. The stub closes
//! at once any connection that is not loopback to loopback. Nothing else is
//! ever connected to.
//!
//! Per case: write the config, start the binary (`RUST_LOG=warn`), warm up
//! (the first checks are spread over one interval), then measure the child's
//! CPU from `/proc/<pid>/stat` (utime + stime, in clock ticks) over the
//! window: CPU seconds / wall seconds = share of one core. Checks/s come
//! from the `http-health` slot's `calls` delta in `GET /v1/plugins` (plugin
//! case) and, for both cases, from the connections the stub accepted (one
//! per check: the plugin's probe client keeps no idle connections, and the
//! native check opens and closes one). At the end, `GET /v1/pools` counts
//! the endpoints whose `health.active` is `healthy`.
//!
//! The stub runs in this process and shares the machine's cores with the
//! binary; its CPU and the machine's overall load are printed beside the
//! table.
//!
//! `cargo bench -p switchyard --bench health_cpu`
//! (HEALTH_ENDPOINTS=N, default 10000, at most 10000;
//! HEALTH_WARMUP_S, default 5; HEALTH_MEASURE_S, default 10)

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
/// The check schedule of both cases.
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
    /// From the plugin's `calls` delta; none for the native case.
    plugin_checks_per_s: Option<f64>,
    /// Connections the stub accepted per second in the window.
    stub_conns_per_s: f64,
    /// The child's CPU seconds per wall second, as a share of one core.
    cpu_share: f64,
    /// This process's (the stub's) CPU share in the same window.
    stub_cpu_share: f64,
    /// The whole machine's busy share of all its cores in the window.
    machine_busy: Option<f64>,
    /// Plugin faults during the window (none for the native case).
    faults: Option<u64>,
    /// Plugin faults since the start (none for the native case).
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

/// The child, killed on drop.
struct Switchyard {
    child: Child,
    control: SocketAddr,
    stderr: Arc<Mutex<StderrLog>>,
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
    let cases: [(&'static str, Option<&str>); 2] = [
        ("http-health plugin", Some(PLUGIN)),
        ("native TCP check", None),
    ];
    let mut results = Vec::new();
    for (label, plugin) in cases {
        let path = config_dir.path().join(format!(
            "{}.toml",
            if plugin.is_some() { "plugin" } else { "native" }
        ));
        std::fs::write(&path, config(endpoints, port, &plugin_dir, plugin))?;
        eprintln!("health_cpu: {label}: starting switchyard");
        let result = run_case(
            label, plugin, endpoints, &path, &counters, warmup, measure, clk_tck, cores,
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

#[allow(clippy::too_many_arguments)]
fn run_case(
    label: &'static str,
    plugin: Option<&str>,
    endpoints: usize,
    config_path: &Path,
    counters: &StubCounters,
    warmup: Duration,
    measure: Duration,
    clk_tck: f64,
    cores: usize,
) -> anyhow::Result<CaseResult> {
    let mut switchyard = start(config_path)?;
    let pid = switchyard.child.id();
    eprintln!(
        "health_cpu: {label}: pid {pid}, control {}; warming up {} s",
        switchyard.control,
        warmup.as_secs()
    );
    std::thread::sleep(warmup);

    let before = plugin_counters(switchyard.control)?;
    let plugins_before_at = Instant::now();
    let stub_before = counters.accepted.load(Ordering::Relaxed);
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
    let after = plugin_counters(switchyard.control)?;
    let plugins_wall = plugins_before_at.elapsed().as_secs_f64();

    if let Some(status) = switchyard.child.try_wait()? {
        anyhow::bail!("switchyard exited during the window: {status}");
    }
    let pools = control_json(switchyard.control, "/v1/pools")?;
    let mut states: std::collections::BTreeMap<String, usize> = Default::default();
    let mut fallback_reasons = 0;
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
    let healthy = states.remove("healthy").unwrap_or(0);

    let cpu_share = (child_after - child_before) / clk_tck / wall;
    let stub_cpu_share = (self_after - self_before) / clk_tck / wall;
    let machine_busy = match (machine_before, machine_after) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some((busy1 - busy0) / (total1 - total0) * cores as f64)
        }
        _ => None,
    };
    let stub_conns_per_s = (stub_after - stub_before) as f64 / wall;
    let (plugin_checks_per_s, faults, faults_total, last_fault) = match plugin {
        Some(_) => {
            let (before, after) = (
                before.context("no http-health slot before")?,
                after.context("no http-health slot after")?,
            );
            anyhow::ensure!(
                after.state == "active",
                "http-health is {}, not active",
                after.state
            );
            (
                Some((after.calls - before.calls) as f64 / plugins_wall),
                Some(after.faults - before.faults),
                Some(after.faults),
                after.last_fault,
            )
        }
        None => (None, None, None, None),
    };
    let log = switchyard.stderr.lock().unwrap();
    let (emfile_lines, stderr_lines) = (log.emfile, log.lines);
    if log.lines > 0 {
        eprintln!(
            "health_cpu: {label}: switchyard wrote {} stderr lines; first ones:",
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
        plugin_checks_per_s,
        stub_conns_per_s,
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
        "{:<20} {:>9} {:>10} {:>12} {:>10} {:>7} {:>9}",
        "case", "endpoints", "checks/s", "stub conn/s", "CPU % core", "faults", "healthy"
    );
    for r in results {
        println!(
            "{:<20} {:>9} {:>10} {:>12.0} {:>10.2} {:>7} {:>9}",
            r.label,
            r.endpoints,
            r.plugin_checks_per_s
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}")),
            r.stub_conns_per_s,
            r.cpu_share * 100.0,
            r.faults.map_or_else(|| "-".to_string(), |f| f.to_string()),
            format!("{}/{}", r.healthy, r.endpoints),
        );
    }
    if let [plugin, native] = results {
        if native.cpu_share > 0.0 {
            println!(
                "ratio plugin/native CPU: {:.2}x",
                plugin.cpu_share / native.cpu_share
            );
        }
        let verdict = if plugin.cpu_share < 0.10 {
            "under"
        } else {
            "NOT under"
        };
        println!(
            "target: plugin case {verdict} 10% of one core ({:.2}%)",
            plugin.cpu_share * 100.0
        );
    }
    println!();
    println!("checks/s: http-health `calls` delta in /v1/plugins over the window; stub conn/s: connections the in-process stub accepted per second (one per check in both cases)");
    println!("CPU % core: the switchyard process's utime+stime from /proc/<pid>/stat over the window / wall time");
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
