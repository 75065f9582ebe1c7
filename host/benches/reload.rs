//! "Plugin file written → new version serving": a runtime watches a fresh
//! plugin folder (`switchyard::plugins::watch`, default debounce) and serves
//! a pool with plugin `policy`; each round deploys the other of pin-first /
//! pin-last as `policy.wasm` (written under a temporary name, then renamed)
//! and times, from the rename, until the slot serves the new file's hash AND
//! a pick through the pool returns the new plugin's answer (pin-first → id 0,
//! pin-last → the highest id) without falling back.
//!
//! Round 1 compiles pin-last (the folder's artifact cache is empty); every
//! later round finds its file's compiled form in the cache, so they are
//! reported apart.
//!
//! `cargo bench -p switchyard --bench reload` (rounds: `RELOAD_ROUNDS`, default 30)

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchyard::config::{PluginsConfig, DEFAULT_DEBOUNCE_MS};
use switchyard::engine::{Endpoint, EndpointId, PickRequest, Pool, RequestHeaders, RequestInfo};
use switchyard::plugins::{watch, PluginRuntime, Role};

/// Endpoints in the pool: pin-first picks 0, pin-last picks `ENDPOINTS - 1`.
const ENDPOINTS: u32 = 16;
/// Give up on a round after this long.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the new version is looked for.
const POLL: Duration = Duration::from_micros(100);
/// Quiet time between rounds, so one round's events never reach the next.
const SETTLE: Duration = Duration::from_millis(100);

/// A deployable plugin file.
struct Version {
    label: &'static str,
    bytes: Vec<u8>,
    hash: String,
    expected: EndpointId,
}

impl Version {
    fn new(label: &'static str, path: &Path, expected: EndpointId) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let hash = format!("{:x}", Sha256::digest(&bytes));
        Version {
            label,
            bytes,
            hash,
            expected,
        }
    }
}

/// One round's times, from the rename.
struct Round {
    version: &'static str,
    /// Until the slot's current version had the new hash.
    swapped: Duration,
    /// Until a pick through the pool answered as the new version does.
    serving: Duration,
    from_cache: bool,
    load_micros: u64,
}

/// The temporary plugin folder, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::var("RELOAD_ROUNDS") {
        Ok(text) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("RELOAD_ROUNDS={text}: {e}"))?,
        Err(_) => 30,
    };
    anyhow::ensure!(rounds >= 1, "RELOAD_ROUNDS must be at least 1");
    let versions = [
        Version::new(
            "pin-first",
            &common::build("pin-first", "tests/plugins/pin-first"),
            0,
        ),
        Version::new(
            "pin-last",
            &common::build("pin-last", "tests/plugins/pin-last"),
            ENDPOINTS - 1,
        ),
    ];

    let dir = TempDir(std::env::temp_dir().join(format!(
        "switchyard-reload-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    )));
    std::fs::create_dir_all(&dir.0)?;
    let target = dir.0.join("policy.wasm");
    std::fs::write(&target, &versions[0].bytes)?;

    // As `Server::bind` then `Server::run` do: load the folder, build and
    // attach the pool, then watch.
    let debounce = Duration::from_millis(DEFAULT_DEBOUNCE_MS);
    let runtime = PluginRuntime::new(&PluginsConfig {
        dir: dir.0.clone(),
        debounce_ms: DEFAULT_DEBOUNCE_MS,
        ..PluginsConfig::default()
    })?;
    let errors = runtime.load_dir();
    anyhow::ensure!(errors.is_empty(), "initial load: {errors:?}");
    let endpoints = (0..ENDPOINTS)
        .map(|id| Endpoint::new(id, &format!("127.0.0.1:{}", 20_000 + id), 1, 0).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let balancer = runtime.balancer("policy", "bench", "{}");
    let pool = Arc::new(Pool::new(
        "bench".into(),
        endpoints,
        Some("policy".into()),
        Some(balancer),
    ));
    runtime.attach("policy", Role::Balancer, &pool, "{}")?;
    let slot = runtime.slot("policy");
    anyhow::ensure!(
        pick(&pool) == Some(versions[0].expected),
        "pin-first does not serve at start"
    );

    let tokio = tokio::runtime::Runtime::new()?;
    let _in_tokio = tokio.enter();
    let _watcher = watch(runtime.clone(), debounce)?;
    std::thread::sleep(SETTLE);

    println!(
        "reload: {rounds} rounds, debounce {} ms, pool of {ENDPOINTS}, folder {}",
        debounce.as_millis(),
        dir.0.display()
    );
    let temporary = dir.0.join(".policy.wasm.tmp");
    let mut results = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let version = &versions[round % 2];
        std::fs::write(&temporary, &version.bytes)?;
        let started = Instant::now();
        std::fs::rename(&temporary, &target)?;
        let mut swapped = None;
        let serving = loop {
            let elapsed = started.elapsed();
            if swapped.is_none() && slot.current().is_some_and(|v| v.hash == version.hash) {
                swapped = Some(elapsed);
            }
            if swapped.is_some() && pick(&pool) == Some(version.expected) {
                break started.elapsed();
            }
            if elapsed > ROUND_TIMEOUT {
                anyhow::bail!(
                    "round {round}: {} not serving after {ROUND_TIMEOUT:?}; last error: {:?}",
                    version.label,
                    slot.history.lock().unwrap().last_error
                );
            }
            std::thread::sleep(POLL);
        };
        let current = slot.current().expect("a version serves");
        results.push(Round {
            version: version.label,
            swapped: swapped.expect("set before serving"),
            serving,
            from_cache: current.from_cache,
            load_micros: current.load_micros,
        });
        std::thread::sleep(SETTLE);
    }
    anyhow::ensure!(
        slot.faults() == 0 && pool.fallback_picks() == 0,
        "the plugin faulted {} times ({} fallback picks)",
        slot.faults(),
        pool.fallback_picks()
    );

    println!(
        "{:>5} {:<9} {:>6} {:>10} {:>11} {:>11}",
        "round", "version", "cached", "load ms", "swapped ms", "serving ms"
    );
    for (index, round) in results.iter().enumerate() {
        println!(
            "{:>5} {:<9} {:>6} {:>10.2} {:>11.2} {:>11.2}",
            index + 1,
            round.version,
            if round.from_cache { "yes" } else { "no" },
            round.load_micros as f64 / 1e3,
            ms(round.swapped),
            ms(round.serving)
        );
    }
    println!();
    println!("file renamed → new version serving (slot has the new hash and a pick answers as it does), ms:");
    println!(
        "{:<24} {:>3} {:>8} {:>8} {:>8} {:>8}",
        "", "n", "min", "median", "p90", "max"
    );
    summary("first (cold compile)", &results[..1]);
    summary("cached (rounds 2..)", &results[1..]);
    if results[0].from_cache {
        println!("note: round 1 came from the artifact cache");
    }
    let compiled_later = results[1..].iter().filter(|r| !r.from_cache).count();
    if compiled_later > 0 {
        println!("note: {compiled_later} later rounds compiled (not from the artifact cache)");
    }
    println!();
    println!("of which until the slot swapped (before the first pick instantiates it), ms:");
    summary_of(
        "first (cold compile)",
        &results[..1].iter().map(|r| r.swapped).collect::<Vec<_>>(),
    );
    summary_of(
        "cached (rounds 2..)",
        &results[1..].iter().map(|r| r.swapped).collect::<Vec<_>>(),
    );
    Ok(())
}

/// One pick through the pool; `None` if it fell back to the round robin.
fn pick(pool: &Pool) -> Option<EndpointId> {
    let mut headers = http::HeaderMap::new();
    let mut request = PickRequest {
        info: RequestInfo::default(),
        headers: RequestHeaders::Map(&mut headers),
        placement: switchyard::engine::Placement::NONE,
    };
    let fallbacks = pool.fallback_picks();
    let endpoint = pool.pick(&mut request)?;
    (pool.fallback_picks() == fallbacks).then_some(endpoint.id)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn summary(label: &str, rounds: &[Round]) {
    summary_of(label, &rounds.iter().map(|r| r.serving).collect::<Vec<_>>());
}

/// Prints min / median / p90 / max of `times` (nearest-rank percentiles).
fn summary_of(label: &str, times: &[Duration]) {
    if times.is_empty() {
        println!("{label:<24} {:>3} (no rounds)", 0);
        return;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank =
        |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2
    };
    println!(
        "{label:<24} {:>3} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        sorted.len(),
        ms(sorted[0]),
        ms(median),
        ms(rank(0.9)),
        ms(sorted[sorted.len() - 1])
    );
}
