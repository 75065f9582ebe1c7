//! What trying and recording a balancer adds to a pick: a pool of 100
//! endpoints balanced by `peak-ewma`, alone; with a candidate on trial in
//! shadow on 1%, 10% and 100% of picks (the candidate is the same
//! peak-EWMA, so the added cost is the candidate's own call, the sampling
//! and the comparison); with the candidate answering half the picks
//! (canary); and recording 1% and 100% of its picks. Each pick goes
//! through `WasmBalancer` as `Pool::pick` calls it.
//!
//! At the end a table gives each setting's ns per pick, what it adds over
//! the plugin alone, and that per candidate call or recorded pick.
//!
//! `cargo bench -p switchyard --bench rollout -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion};
use switchyard::config::{PluginsConfig, RolloutConfig};
use switchyard::engine::{
    Balancer as _, Endpoint, PickRequest, Placement, Pool, RequestHeaders, RequestInfo,
};
use switchyard::plugins::{PluginRuntime, Role, WasmBalancer};

/// Endpoints in the pool.
const POOL_SIZE: u32 = 100;

/// The settings measured: (benchmark function, shadow %, canary %,
/// recorded %).
const SETTINGS: [(&str, f64, f64, f64); 8] = [
    ("alone", 0.0, 0.0, 0.0),
    ("shadow-1", 1.0, 0.0, 0.0),
    ("shadow-10", 10.0, 0.0, 0.0),
    ("shadow-100", 100.0, 0.0, 0.0),
    ("canary-50", 0.0, 50.0, 0.0),
    ("record-1", 0.0, 0.0, 1.0),
    ("record-100", 0.0, 0.0, 100.0),
    // The plugin alone again, last: how far the machine drifted meanwhile.
    ("alone-again", 0.0, 0.0, 0.0),
];

/// The group every figure is in.
const GROUP: &str = "rollout/peak-ewma";

fn main() {
    let built = std::fs::read(common::build("peak-ewma", "plugins/peak-ewma")).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let mut rollout = BTreeMap::new();
    for (function, shadow, canary, _) in SETTINGS {
        std::fs::write(folder.path().join(format!("{function}.wasm")), &built).unwrap();
        rollout.insert(
            function.to_string(),
            RolloutConfig {
                shadow_percent: shadow,
                canary_percent: canary,
                steps: 1,
                // Never judged here: the phase stays put while measured.
                promote_after_calls: u64::MAX,
                ..RolloutConfig::default()
            },
        );
    }
    let runtime = PluginRuntime::new(&PluginsConfig {
        dir: folder.path().to_path_buf(),
        cache_dir: Some(common::target_dir().join("bench-plugin-cache")),
        rollout,
        ..PluginsConfig::default()
    })
    .expect("plugin runtime");
    let endpoints: Vec<Arc<Endpoint>> = (0..POOL_SIZE)
        .map(|id| {
            let address = format!("10.0.{}.{}:80", id / 250, id % 250);
            Arc::new(Endpoint::new(id, &address, 1, 0).expect("valid address"))
        })
        .collect();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let started = SystemTime::now();
    let mut group = criterion.benchmark_group(GROUP);
    let mut kept = Vec::new();
    for (function, shadow, canary, recorded) in SETTINGS {
        let record = (recorded > 0.0).then(|| switchyard::config::RecordConfig {
            percent: recorded,
            file: folder.path().join(format!("{function}.jsonl")),
            max_bytes: u64::MAX,
        });
        let (pool, balancer) = pool(&runtime, folder.path(), function, &endpoints, record);
        if shadow > 0.0 || canary > 0.0 {
            // The same round robin with one byte more: another version.
            let mut candidate = built.clone();
            candidate.extend_from_slice(&[0, 2, 1, b'c']);
            let path = folder.path().join(format!("{function}.canary.wasm"));
            std::fs::write(&path, candidate).unwrap();
            runtime.load_candidate(&path).expect("candidate");
        }
        let set = Arc::clone(&pool.endpoints());
        let mut headers = http::HeaderMap::new();
        group.bench_function(BenchmarkId::new(function, POOL_SIZE), |b| {
            b.iter(|| {
                let mut request = PickRequest {
                    info: RequestInfo::default(),
                    headers: RequestHeaders::Map(&mut headers),
                    placement: Placement::NONE,
                };
                black_box(balancer.pick(black_box(&set), &mut request))
            })
        });
        let slot = runtime.slot(function);
        assert_eq!(slot.faults(), 0, "{function}: the live version faulted");
        if let Some(rollout) = slot.rollout() {
            let comparison = rollout.comparison();
            assert_eq!(
                comparison.candidate_faults, 0,
                "{function}: the candidate faulted"
            );
            // In shadow the live version makes every pick; in canary the
            // candidate makes its share instead.
            let picks = slot.calls()
                + if canary > 0.0 {
                    comparison.candidate_calls
                } else {
                    0
                };
            eprintln!(
                "{function}: the candidate made {} calls in {picks} picks ({:.1}%)",
                comparison.candidate_calls,
                100.0 * comparison.candidate_calls as f64 / picks as f64
            );
        }
        if let Some(recording) = runtime.recording_of(function) {
            eprintln!(
                "{function}: {} picks recorded, {} dropped (the writer was behind)",
                recording.recorded, recording.dropped
            );
        }
        kept.push((pool, balancer));
    }
    group.finish();
    criterion.final_summary();
    print_summary(started);
}

/// Loads plugin `name` from `folder`, and makes pool `name` of `endpoints`
/// balanced by it (recording as `record` says), attached as the server
/// attaches it.
fn pool(
    runtime: &PluginRuntime,
    folder: &std::path::Path,
    name: &str,
    endpoints: &[Arc<Endpoint>],
    record: Option<switchyard::config::RecordConfig>,
) -> (Arc<Pool>, Arc<WasmBalancer>) {
    runtime
        .load(&folder.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("cannot load {name}: {e}"));
    let balancer = match record {
        Some(record) => runtime
            .recorded_balancer(name, name, "{}", &record)
            .expect("recording"),
        None => runtime.balancer(name, name, "{}"),
    };
    let pool = Arc::new(Pool::new(
        name.to_string(),
        endpoints.to_vec(),
        Some(name.to_string()),
        Some(balancer.clone()),
    ));
    runtime
        .attach(name, Role::Balancer, &pool, "{}")
        .unwrap_or_else(|e| panic!("cannot attach: {e}"));
    (pool, balancer)
}

fn print_summary(started: SystemTime) {
    let estimate =
        |function: &str| common::estimate_ns(started, GROUP, function, &POOL_SIZE.to_string());
    let Some(alone) = estimate("alone") else {
        return;
    };
    println!();
    println!("one pick of {POOL_SIZE} endpoints, ns (criterion's estimate):");
    println!(
        "{:<12} {:>10} {:>10} {:>32}",
        "setting", "ns/pick", "added", "added per candidate call or record"
    );
    for (function, shadow, _, recorded) in SETTINGS {
        let Some(ns) = estimate(function) else {
            continue;
        };
        // Canary picks swap one call for another: nothing per call to add.
        let share = (shadow + recorded) / 100.0;
        let per_call = if share > 0.0 {
            format!("{:.1}", (ns - alone) / share)
        } else {
            "-".to_string()
        };
        println!(
            "{function:<12} {ns:>10.1} {:>10.1} {per_call:>32}",
            ns - alone
        );
    }
}
