//! The cost of ONE pick: each bundled balancer through the WASM runtime
//! (`PluginRuntime` + `WasmBalancer`, called through the engine's `Balancer`
//! trait exactly as `Pool::pick` calls it) against the same strategy native
//! (the plugin crate's type through `switchyard_sdk::Balancer`, with a
//! `TestHost` standing in for the host), for pools of 10, 1,000 and 10,000
//! endpoints; plus the host's own `engine::RoundRobin` and the cheapest
//! possible WASM call (`pin-first`, which returns a remembered id).
//!
//! The guest-language ports of two of them are measured beside them:
//! Python's round robin (`examples/python/round-robin`) and JavaScript's
//! least request (`examples/js/least-request`), as `wasm-python` and
//! `wasm-js`: the same policy in three languages, side by side in one run.
//!
//! Benchmark ids read as a table:
//! `pick/<strategy>/<native|wasm|wasm-js|wasm-python|engine>/<size>`.
//! At the end a summary table (native ns, wasm ns, ratio) is printed from the
//! estimates criterion wrote during this run.
//!
//! The plugins are built from source first (see `common::build`).
//!
//! The runtime uses the default `[plugins]` settings, including the
//! production call budget (`PICK_CALL_TIMEOUT_MS` overrides it). Faults
//! during a measurement would rebuild instances inside the timed loop, so
//! they are reported per benchmark and in the summary; a clean run has none.
//!
//! `cargo bench -p switchyard --bench pick -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use switchyard::config::PluginsConfig;
use switchyard::engine::{
    Balancer as _, Endpoint, EndpointSet, InFlightGuard, PickRequest, Pool, RequestHeaders,
    RequestInfo, RoundRobin,
};
use switchyard::plugins::{PluginRuntime, Role, WasmBalancer};
use switchyard_sdk::testing::TestHost;
use switchyard_sdk::Balancer as SdkBalancer;

/// Pool sizes measured.
const SIZES: [u32; 3] = [10, 1_000, 10_000];

/// The group name of the empty-pick floor.
const FLOOR: &str = "wasm call floor";

/// The bundled balancers: (package name, crate path).
const BUNDLED: [(&str, &str); 5] = [
    ("round-robin", "plugins/round-robin"),
    ("least-request", "plugins/least-request"),
    ("peak-ewma", "plugins/peak-ewma"),
    ("consistent-hash", "plugins/consistent-hash"),
    ("random", "plugins/random"),
];

/// The guest-language ports: (package name, project path, the bundled
/// strategy it ports, its benchmark function).
const GUESTS: [(&str, &str, &str, &str); 2] = [
    (
        "py-round-robin",
        "examples/python/round-robin",
        "round-robin",
        "wasm-python",
    ),
    (
        "js-least-request",
        "examples/js/least-request",
        "least-request",
        "wasm-js",
    ),
];

/// The per-call budget unless `PICK_CALL_TIMEOUT_MS` says otherwise.
const CALL_TIMEOUT_MS: u64 = switchyard::config::DEFAULT_CALL_TIMEOUT_MS;

/// consistent-hash's `table_size` for pools its default (65537) cannot serve
/// with ≥ 10 slots per endpoint.
const LARGE_TABLE_SIZE: u32 = 100_003;

fn main() {
    let mut paths = vec![(FLOOR, common::build("pin-first", "tests/plugins/pin-first"))];
    for (name, crate_path) in BUNDLED {
        paths.push((name, common::build(name, crate_path)));
    }
    for (name, project, _, _) in GUESTS {
        paths.push((name, common::build(name, project)));
    }
    assert!(consistent_hash::is_prime(LARGE_TABLE_SIZE));

    let call_timeout_ms = match std::env::var("PICK_CALL_TIMEOUT_MS") {
        Ok(text) => text.parse().expect("PICK_CALL_TIMEOUT_MS: milliseconds"),
        Err(_) => CALL_TIMEOUT_MS,
    };
    eprintln!("bench: plugin call budget {call_timeout_ms} ms");
    let runtime = PluginRuntime::new(&PluginsConfig {
        dir: common::bench_plugin_dir(),
        call_timeout_ms,
        ..PluginsConfig::default()
    })
    .expect("plugin runtime");
    let fleets: Vec<Fleet> = SIZES.iter().map(|&n| Fleet::new(n)).collect();
    // The native strategies read these loads; the WASM ones read the same
    // figures from the endpoints' live stats (see `Fleet`).
    let test_host = TestHost::new();
    for id in 0..*SIZES.iter().max().unwrap() {
        test_host.set_load(id, sdk_load(id));
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let started = SystemTime::now();
    let mut faults = Vec::new();
    let wasm = |label: &str| Wasm {
        runtime: &runtime,
        path: paths.iter().find(|(l, _)| *l == label).unwrap().1.clone(),
    };

    {
        let mut group = criterion.benchmark_group(format!("pick/{FLOOR}"));
        for fleet in &fleets {
            wasm(FLOOR).bench(&mut group, fleet, "{}", "wasm", &mut faults);
        }
        group.finish();
    }
    for (name, _) in BUNDLED {
        let mut group = criterion.benchmark_group(format!("pick/{name}"));
        for fleet in &fleets {
            let config = config_for(name, fleet.size);
            match name {
                "round-robin" => {
                    native::<round_robin::SmoothWeightedRoundRobin>(&mut group, fleet, &config);
                    engine_round_robin(&mut group, fleet);
                }
                "least-request" => {
                    native::<least_request::LeastRequest>(&mut group, fleet, &config)
                }
                "peak-ewma" => native::<peak_ewma::PeakEwma>(&mut group, fleet, &config),
                "consistent-hash" => native::<consistent_hash::Maglev>(&mut group, fleet, &config),
                "random" => native::<random::WeightedRandom>(&mut group, fleet, &config),
                _ => unreachable!("every bundled plugin is listed"),
            }
            wasm(name).bench(&mut group, fleet, &config, "wasm", &mut faults);
            for (guest, _, ports, function) in GUESTS {
                if ports == name {
                    wasm(guest).bench(&mut group, fleet, &config, function, &mut faults);
                }
            }
        }
        group.finish();
    }
    criterion.final_summary();
    print_summary(started, &faults);
}

/// The plugin config of `name` for a pool of `size`: the defaults, except a
/// larger prime table for consistent-hash on the largest pool.
fn config_for(name: &str, size: u32) -> String {
    if name == "consistent-hash" && size >= 10_000 {
        format!(r#"{{"table_size":{LARGE_TABLE_SIZE}}}"#)
    } else {
        "{}".to_string()
    }
}

/// A deterministic, well-spread number per endpoint id.
fn spread(id: u32) -> u64 {
    let mut z = u64::from(id).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A plausible load for endpoint `id`: 0–7 requests in flight, a latency
/// average of 200–2,199 µs.
fn in_flight_of(id: u32) -> u32 {
    (spread(id) % 8) as u32
}

fn latency_us_of(id: u32) -> u32 {
    200 + ((spread(id) >> 16) % 2_000) as u32
}

/// The load the host would report for `id` of a `Fleet`.
fn sdk_load(id: u32) -> switchyard_sdk::Load {
    switchyard_sdk::Load {
        in_flight: in_flight_of(id),
        capacity: 0,
        ewma_latency_us: latency_us_of(id),
        success_permille: 1_000,
        health: switchyard_sdk::Health::Unknown,
    }
}

fn address_of(id: u32) -> String {
    format!("10.{}.{}.{}:8080", id >> 16, (id >> 8) & 0xff, id & 0xff)
}

/// A pool's endpoints with live load: requests held in flight and one
/// latency sample each, matching `sdk_load`.
struct Fleet {
    size: u32,
    endpoints: Vec<Arc<Endpoint>>,
    _in_flight: Vec<InFlightGuard>,
}

impl Fleet {
    fn new(size: u32) -> Self {
        let endpoints: Vec<Arc<Endpoint>> = (0..size)
            .map(|id| Arc::new(Endpoint::new(id, &address_of(id), 1, 0).expect("valid address")))
            .collect();
        let mut in_flight = Vec::new();
        for endpoint in &endpoints {
            endpoint
                .stats
                .record(u64::from(latency_us_of(endpoint.id)) * 1_000, true);
            for _ in 0..in_flight_of(endpoint.id) {
                in_flight.push(endpoint.start());
            }
        }
        Fleet {
            size,
            endpoints,
            _in_flight: in_flight,
        }
    }

    fn sdk_endpoints(&self) -> Vec<switchyard_sdk::Endpoint> {
        self.endpoints
            .iter()
            .map(|e| switchyard_sdk::Endpoint::new(e.id, e.address.clone()).with_weight(e.weight))
            .collect()
    }
}

/// The strategy natively, through the SDK trait, on this thread's `TestHost`.
fn native<B: SdkBalancer>(group: &mut BenchmarkGroup<'_, WallTime>, fleet: &Fleet, config: &str) {
    let mut state: Option<B> = None;
    let mut key = 0u64;
    group.bench_function(BenchmarkId::new("native", fleet.size), |b| {
        let balancer = state.get_or_insert_with(|| {
            let mut balancer = B::configure(config).expect("native configure");
            balancer.set_endpoints(fleet.sdk_endpoints());
            balancer
        });
        b.iter(|| {
            key = key.wrapping_add(1);
            let request = switchyard_sdk::RequestInfo {
                hash: Some(key),
                ..switchyard_sdk::RequestInfo::default()
            };
            black_box(balancer.pick(black_box(&request)))
        });
    });
}

/// The host's own round robin, through the engine's `Balancer` trait.
fn engine_round_robin(group: &mut BenchmarkGroup<'_, WallTime>, fleet: &Fleet) {
    let set = Arc::new(EndpointSet::all_eligible(1, fleet.endpoints.clone()));
    let balancer = RoundRobin::default();
    let mut headers = http::HeaderMap::new();
    group.bench_function(BenchmarkId::new("engine", fleet.size), |b| {
        b.iter(|| {
            let mut request = PickRequest {
                info: RequestInfo::default(),
                headers: RequestHeaders::Map(&mut headers),
                placement: switchyard::engine::Placement::NONE,
            };
            black_box(balancer.pick(black_box(&set), &mut request))
        });
    });
}

/// A plugin served by the runtime, by its file.
struct Wasm<'a> {
    runtime: &'a PluginRuntime,
    path: PathBuf,
}

/// A pool balanced by a plugin, its instance created on this thread.
struct WasmPool {
    _pool: Arc<Pool>,
    set: Arc<EndpointSet>,
    balancer: Arc<WasmBalancer>,
}

impl Wasm<'_> {
    /// The slot name: the file stem.
    fn name(&self) -> &str {
        self.path.file_stem().unwrap().to_str().unwrap()
    }

    /// Loads the plugin (once), builds a pool of `fleet` balanced by it,
    /// attaches it as the server does, and makes the warm-up pick that
    /// instantiates and configures this thread's instance.
    fn pool(&self, fleet: &Fleet, config: &str) -> WasmPool {
        let name = self.name();
        if self.runtime.slot(name).current().is_none() {
            self.runtime
                .load(&self.path)
                .unwrap_or_else(|e| panic!("cannot load {}: {e}", self.path.display()));
        }
        let pool_name = format!("{name}-{}", fleet.size);
        let balancer = self.runtime.balancer(name, &pool_name, config);
        let pool = Arc::new(Pool::new(
            pool_name,
            fleet.endpoints.clone(),
            Some(name.to_string()),
            Some(balancer.clone()),
        ));
        self.runtime
            .attach(name, Role::Balancer, &pool, config)
            .unwrap_or_else(|e| panic!("cannot attach: {e}"));
        let set = Arc::clone(&pool.endpoints());
        let mut headers = http::HeaderMap::new();
        let mut request = PickRequest {
            info: RequestInfo::default(),
            headers: RequestHeaders::Map(&mut headers),
            placement: switchyard::engine::Placement::NONE,
        };
        if let Err(fault) = balancer.pick(&set, &mut request) {
            panic!("warm-up pick of {name} failed: {fault}");
        }
        WasmPool {
            _pool: pool,
            set,
            balancer,
        }
    }

    /// Benchmarks `<function>/<size>`; pushes (slot, size, faults during
    /// it) to `faults`.
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        fleet: &Fleet,
        config: &str,
        function: &str,
        faults: &mut Vec<(String, u32, u64)>,
    ) {
        let slot = self.runtime.slot(self.name());
        let faults_before = slot.faults();
        let mut state: Option<WasmPool> = None;
        let mut headers = http::HeaderMap::new();
        let mut key = 0u64;
        group.bench_function(BenchmarkId::new(function, fleet.size), |b| {
            let pool = state.get_or_insert_with(|| self.pool(fleet, config));
            b.iter(|| {
                key = key.wrapping_add(1);
                let mut request = PickRequest {
                    info: RequestInfo {
                        hash: Some(key),
                        ..RequestInfo::default()
                    },
                    headers: RequestHeaders::Map(&mut headers),
                    placement: switchyard::engine::Placement::NONE,
                };
                black_box(pool.balancer.pick(black_box(&pool.set), &mut request))
            });
        });
        let during = slot.faults() - faults_before;
        if during > 0 {
            eprintln!(
                "WARNING: pick/.../{function}/{}: plugin {} faulted {during} times while measured \
                 (last: {:?}); the figure includes rebuilding its instance",
                fleet.size,
                slot.name,
                slot.history
                    .lock()
                    .unwrap()
                    .last_error
                    .as_ref()
                    .map(|n| &n.message)
            );
        }
        faults.push((slot.name.to_string(), fleet.size, during));
    }
}

/// Prints native ns, wasm ns and their ratio per strategy and size, from the
/// estimates criterion wrote since `started` (the figure criterion prints in
/// the middle of `time: [...]`), with the plugin faults counted while each
/// WASM figure was measured.
fn print_summary(started: SystemTime, faults: &[(String, u32, u64)]) {
    let estimate = |group: &str, function: &str, size: u32| {
        common::estimate_ns(started, group, function, &size.to_string())
    };
    let faults_of = |slot: &str, size: u32| {
        faults
            .iter()
            .find(|(s, n, _)| s == slot && *n == size)
            .map_or_else(|| "-".to_string(), |(_, _, f)| f.to_string())
    };
    let show = |ns: Option<f64>| ns.map_or_else(|| "-".to_string(), |ns| format!("{ns:.1}"));

    // (label, size, native, wasm, faults)
    let mut rows = Vec::new();
    for size in SIZES {
        rows.push((
            format!("{FLOOR} (pin-first)"),
            size,
            None,
            estimate(&format!("pick/{FLOOR}"), "wasm", size),
            faults_of("pin-first", size),
        ));
        rows.push((
            "engine::RoundRobin (host)".to_string(),
            size,
            estimate("pick/round-robin", "engine", size),
            None,
            "-".to_string(),
        ));
        for (name, _) in BUNDLED {
            let group = format!("pick/{name}");
            rows.push((
                name.to_string(),
                size,
                estimate(&group, "native", size),
                estimate(&group, "wasm", size),
                faults_of(name, size),
            ));
            for (guest, _, ports, function) in GUESTS {
                if ports == name {
                    rows.push((
                        format!("{guest} ({function})"),
                        size,
                        estimate(&group, "native", size),
                        estimate(&group, function, size),
                        faults_of(guest, size),
                    ));
                }
            }
        }
    }
    if rows.iter().all(|row| row.2.is_none() && row.3.is_none()) {
        return;
    }
    println!();
    println!("one pick, ns (criterion's estimate):");
    println!(
        "{:<28} {:>7} {:>10} {:>10} {:>11} {:>11}",
        "strategy", "size", "native", "wasm", "wasm/native", "wasm faults"
    );
    for (name, size, native, wasm, faults) in rows {
        let ratio = match (native, wasm) {
            (Some(n), Some(w)) if n > 0.0 => format!("{:.1}x", w / n),
            _ => "-".to_string(),
        };
        println!(
            "{name:<28} {size:>7} {:>10} {:>10} {ratio:>11} {faults:>11}",
            show(native),
            show(wasm)
        );
    }
}
