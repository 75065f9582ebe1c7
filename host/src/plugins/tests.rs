use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::engine::{
    Balancer as _, Endpoint, EndpointSet, PickRequest, RequestHeaders, RequestInfo,
};

/// The component built from the plugin crate at `<workspace>/<crate_path>`
/// with `switchyard plugin build`'s code, once per test run.
fn built_plugin(crate_path: &str) -> Vec<u8> {
    static BUILT: Mutex<Option<HashMap<String, Vec<u8>>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(bytes) = built.get(crate_path) {
        return bytes.clone();
    }
    let out = tempfile::tempdir().unwrap();
    let path = crate::build::build_plugin(&crate::build::BuildRequest {
        crate_dir: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crate_path),
        out_dir: out.path().to_path_buf(),
        target_dir: None,
        allow_install: false,
    })
    .unwrap_or_else(|e| panic!("cannot build {crate_path}: {e:#}"));
    let bytes = std::fs::read(path).unwrap();
    built.insert(crate_path.to_string(), bytes.clone());
    bytes
}

/// A runtime over a fresh plugin folder (its cache inside), with a call
/// budget loose enough for an unoptimised test build.
fn runtime_in(dir: &Path) -> PluginRuntime {
    let config = crate::config::PluginsConfig {
        dir: dir.to_path_buf(),
        call_timeout_ms: 1_000,
        max_instances: 8,
        ..Default::default()
    };
    PluginRuntime::new(&config).unwrap()
}

fn load(runtime: &PluginRuntime, name: &str, bytes: &[u8]) -> Arc<PluginVersion> {
    let path = runtime.dir().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    match runtime.load(&path) {
        Ok(LoadOutcome::Loaded(version)) => version,
        other => panic!("loading {name}: {other:?}"),
    }
}

#[test]
fn plugin_names_are_file_stems_of_wasm_files() {
    assert_eq!(
        plugin_name(Path::new("plugins/p2c.wasm")).as_deref(),
        Some("p2c")
    );
    assert_eq!(
        plugin_name(Path::new("plugins/peak-ewma.wasm")).as_deref(),
        Some("peak-ewma")
    );
    assert_eq!(plugin_name(Path::new("plugins/.p2c.wasm.tmp")), None);
    assert_eq!(plugin_name(Path::new("plugins/readme.md")), None);
    assert_eq!(plugin_name(Path::new("plugins/has space.wasm")), None);
}

#[test]
fn headers_that_are_not_components_are_named() {
    assert!(check_header(b"hello world")
        .unwrap_err()
        .contains("not a WebAssembly file"));
    let core_module = [0, b'a', b's', b'm', 1, 0, 0, 0];
    assert!(check_header(&core_module)
        .unwrap_err()
        .contains("core WebAssembly module"));
    let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
    assert!(check_header(&component).is_ok());
}

#[test]
fn runtime_rejects_garbage_and_keeps_nothing() {
    let dir = std::env::temp_dir().join(format!("switchyard-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = crate::config::PluginsConfig {
        dir: dir.clone(),
        max_instances: 8,
        ..Default::default()
    };
    let runtime = PluginRuntime::new(&config).unwrap();
    let path = dir.join("junk.wasm");
    std::fs::write(&path, b"\0asm\x0d\0\x01\0 truncated").unwrap();
    let error = runtime.load(&path).unwrap_err();
    assert_eq!(error.stage, "compile");
    assert!(error.to_string().starts_with("plugin `junk` ("), "{error}");
    let slot = runtime.slot("junk");
    assert!(slot.current().is_none());
    assert_eq!(slot.history.lock().unwrap().rejections, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_a_component_importing_request_header_is_said_to_read_headers() {
    let round_robin = built_plugin("plugins/round-robin");
    let consistent_hash = built_plugin("plugins/consistent-hash");
    assert!(!imports_request_header(&round_robin));
    assert!(imports_request_header(&consistent_hash));
    // What does not parse is taken to read them.
    assert!(imports_request_header(b"\0asm\x0d\0\x01\0 truncated"));
    assert!(imports_request_header(
        &consistent_hash[..consistent_hash.len() / 2]
    ));
}

#[test]
fn a_version_from_the_compiled_cache_keeps_its_header_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (crate_path, reads) in [
        ("plugins/round-robin", false),
        ("plugins/consistent-hash", true),
    ] {
        let bytes = built_plugin(crate_path);
        let fresh = load(&runtime_in(dir.path()), "policy", &bytes);
        assert!(!fresh.from_cache, "{crate_path}");
        assert_eq!(fresh.reads_headers, reads, "{crate_path}");
        let cached = load(&runtime_in(dir.path()), "policy", &bytes);
        assert!(cached.from_cache, "{crate_path}");
        assert_eq!(cached.reads_headers, reads, "{crate_path}");
    }
}

#[test]
fn a_header_reading_balancer_sees_raw_headers_as_it_sees_a_map() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    let version = load(&runtime, "maglev", &built_plugin("plugins/consistent-hash"));
    assert!(version.reads_headers);
    let balancer = runtime.balancer("maglev", "web", r#"{"header": "x-tenant"}"#);
    let endpoints = (0..16)
        .map(|id| Arc::new(Endpoint::new(id, &format!("127.0.0.1:{}", 9000 + id), 1, 0).unwrap()))
        .collect();
    let set = Arc::new(EndpointSet::all_eligible(1, endpoints));
    let pick = |hash: u64, headers: RequestHeaders<'_>| {
        let mut request = PickRequest {
            info: RequestInfo {
                hash: Some(hash),
                ..RequestInfo::default()
            },
            headers,
            placement: crate::engine::Placement::NONE,
        };
        balancer.pick(&set, &mut request).unwrap()
    };

    let mut by_tenant = Vec::new();
    for tenant in [
        "blue", "green", "red", "amber", "violet", "teal", "ochre", "grey",
    ] {
        let raw = [
            httparse::Header {
                name: "accept",
                value: b"*/*",
            },
            httparse::Header {
                name: "X-Tenant",
                value: tenant.as_bytes(),
            },
        ];
        let mut map = http::HeaderMap::new();
        map.insert("x-tenant", tenant.parse().unwrap());
        let through_map = pick(1, RequestHeaders::Map(&mut map));
        assert_eq!(map["x-tenant"], tenant, "the map went back to the request");
        // The request's hash differs each time: only the header decides.
        for hash in 2..6 {
            assert_eq!(
                pick(hash, RequestHeaders::Raw(&raw)),
                through_map,
                "tenant {tenant}, hash {hash}"
            );
        }
        by_tenant.push(through_map);
    }
    by_tenant.sort_unstable();
    by_tenant.dedup();
    assert!(by_tenant.len() > 1, "tenants spread: {by_tenant:?}");

    // A repeated header is seen whole, as the map shows it.
    let raw = [
        httparse::Header {
            name: "x-tenant",
            value: b"blue",
        },
        httparse::Header {
            name: "x-tenant",
            value: b"green",
        },
    ];
    let mut map = http::HeaderMap::new();
    map.append("x-tenant", "blue".parse().unwrap());
    map.append("x-tenant", "green".parse().unwrap());
    let mut joined = http::HeaderMap::new();
    joined.insert("x-tenant", "blue, green".parse().unwrap());
    let expected = pick(7, RequestHeaders::Map(&mut joined));
    assert_eq!(pick(8, RequestHeaders::Map(&mut map)), expected);
    assert_eq!(pick(9, RequestHeaders::Raw(&raw)), expected);
    assert_eq!(balancer.slot().faults(), 0);
}

fn endpoint_set(count: u32) -> Arc<EndpointSet> {
    let endpoints = (0..count)
        .map(|id| Arc::new(Endpoint::new(id, &format!("127.0.0.1:{}", 9000 + id), 1, 0).unwrap()))
        .collect();
    Arc::new(EndpointSet::all_eligible(1, endpoints))
}

fn pick_once(
    balancer: &WasmBalancer,
    set: &Arc<EndpointSet>,
) -> Result<u32, crate::engine::PickFault> {
    let mut request = PickRequest {
        info: RequestInfo::default(),
        headers: RequestHeaders::Raw(&[]),
        placement: crate::engine::Placement::NONE,
    };
    balancer.pick(set, &mut request)
}

/// A plugin built against contract 0.2 serves every pool of a thread from
/// one instance, each pool with state of its own.
#[test]
fn one_instance_serves_every_pool_of_a_plugin_on_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    load(
        &runtime,
        "turns",
        &built_plugin("tests/plugins/panicking-balancer"),
    );
    let set = endpoint_set(3);
    let pools: Vec<_> = (0..50)
        .map(|i| runtime.balancer("turns", &format!("pool-{i}"), r#"{"panic": false}"#))
        .collect();
    std::thread::spawn(move || {
        for round in 0..4u32 {
            for balancer in &pools {
                // Each pool takes its own turns, whatever the others did.
                assert_eq!(pick_once(balancer, &set).unwrap(), round % 3);
            }
        }
        assert_eq!(runtime.live_instances(), 1, "one instance for 50 pools");
        drop(pools);
        // The pools' resources are dropped at the instance's next call;
        // the instance itself lives until its thread ends.
        assert_eq!(runtime.slot("turns").faults(), 0);
    })
    .join()
    .unwrap();
}

/// Under the shared-instance model a trap while serving one pool drops the
/// thread's instance, so every pool on it starts again from its config and
/// endpoints; the fault is counted against the pool that trapped only.
#[test]
fn a_trap_in_one_pool_restarts_every_pool_of_the_instance_from_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    load(
        &runtime,
        "turns",
        &built_plugin("tests/plugins/panicking-balancer"),
    );
    let set = endpoint_set(3);
    let calm = runtime.balancer("turns", "calm", r#"{"panic": false}"#);
    let panics = runtime.balancer("turns", "panics", r#"{"panic": true}"#);
    std::thread::spawn(move || {
        assert_eq!(pick_once(&calm, &set).unwrap(), 0);
        assert_eq!(pick_once(&calm, &set).unwrap(), 1);
        match pick_once(&panics, &set) {
            Err(crate::engine::PickFault::Trap(reason)) => {
                assert!(reason.contains("pick trapped"), "{reason}")
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        // `calm` lost its place with the instance, and is served again.
        assert_eq!(pick_once(&calm, &set).unwrap(), 0);
        assert_eq!(pick_once(&calm, &set).unwrap(), 1);
        let slot = runtime.slot("turns");
        assert_eq!(slot.faults(), 1, "only the pool that trapped");
        let note = slot.history.lock().unwrap().last_fault.clone().unwrap();
        assert!(note.message.contains("pool `panics`"), "{}", note.message);
        assert_eq!(runtime.live_instances(), 1);
    })
    .join()
    .unwrap();
}

/// Running out of instances is the host's limit, not the plugin's fault:
/// the pick fails as `HostCapacity` (the pool's fallback serves), no fault
/// is counted, and the plugin is never quarantined.
#[test]
fn running_out_of_instances_is_never_counted_against_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::PluginsConfig {
        dir: dir.path().to_path_buf(),
        call_timeout_ms: 1_000,
        max_instances: 4,
        quarantine_after: 2,
        ..Default::default()
    };
    let runtime = PluginRuntime::new(&config).unwrap();
    load(&runtime, "rr", &built_plugin("plugins/round-robin"));
    let set = endpoint_set(2);
    let balancer = runtime.balancer("rr", "pool", "{}");
    // One instance per thread: six threads holding theirs at once want six.
    let all_picked = std::sync::Barrier::new(6);
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let outcomes: Vec<_> = (0..3).map(|_| pick_once(&balancer, &set)).collect();
                    all_picked.wait();
                    outcomes
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect()
    });
    let served = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let out_of_room: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Err(crate::engine::PickFault::HostCapacity(reason)) => Some(reason),
            Ok(_) => None,
            Err(other) => panic!("{other}"),
        })
        .collect();
    assert_eq!(served, 4 * 3, "the threads that got an instance kept it");
    assert_eq!(out_of_room.len(), 2 * 3, "{outcomes:?}");
    assert!(
        out_of_room[0].contains("plugins.max_instances = 4"),
        "{}",
        out_of_room[0]
    );
    let slot = runtime.slot("rr");
    assert_eq!(slot.faults(), 0);
    assert!(!slot.current().unwrap().is_quarantined());
    assert_eq!(
        runtime.live_instances(),
        0,
        "every thread's instance was freed"
    );
}

/// Pools dropped by a reload give back their resources on every worker at
/// its next pick, and a plugin left serving no pool holds no instance.
#[test]
fn an_instance_left_serving_no_pool_is_dropped_at_the_next_pick() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    load(&runtime, "rr", &built_plugin("plugins/round-robin"));
    load(
        &runtime,
        "turns",
        &built_plugin("tests/plugins/panicking-balancer"),
    );
    let set = endpoint_set(2);
    let gone = runtime.balancer("rr", "gone", "{}");
    let stays = runtime.balancer("turns", "stays", r#"{"panic": false}"#);
    std::thread::spawn(move || {
        pick_once(&gone, &set).unwrap();
        pick_once(&stays, &set).unwrap();
        assert_eq!(runtime.live_instances(), 2);
        drop(gone);
        pick_once(&stays, &set).unwrap();
        assert_eq!(runtime.live_instances(), 1, "rr serves no pool any more");
    })
    .join()
    .unwrap();
}

/// A plugin that leaks a little per call is renewed from its compiled form
/// before its cap stops it: each recycle is counted, none is a fault, and
/// the pool keeps being served. With recycling off, the same plugin reaches
/// its cap and faults.
#[test]
fn an_instance_that_keeps_growing_is_recycled_before_its_cap() {
    let picks_with = |recycle_at_percent: u32| {
        let dir = tempfile::tempdir().unwrap();
        let mut limits = std::collections::BTreeMap::new();
        limits.insert(
            "drip".to_string(),
            crate::config::PluginLimitsConfig {
                memory_limit_mib: Some(8),
                recycle_at_percent: Some(recycle_at_percent),
                call_timeout_ms: None,
            },
        );
        let config = crate::config::PluginsConfig {
            dir: dir.path().to_path_buf(),
            call_timeout_ms: 1_000,
            max_instances: 8,
            limits,
            ..Default::default()
        };
        let runtime = PluginRuntime::new(&config).unwrap();
        load(&runtime, "drip", &built_plugin("tests/plugins/memory-hog"));
        let balancer = runtime.balancer("drip", "web", r#"{"leak_bytes": 4096}"#);
        let set = endpoint_set(2);
        std::thread::spawn(move || {
            // 4 KiB a pick: 8 MiB are reached after about 1,800 picks.
            let served = (0..6_000)
                .filter(|_| pick_once(&balancer, &set).is_ok())
                .count();
            let slot = runtime.slot("drip");
            (served, slot.recycles(), slot.faults())
        })
        .join()
        .unwrap()
    };
    let (served, recycles, faults) = picks_with(50);
    assert_eq!((served, faults), (6_000, 0));
    // Recycled at 4 MiB once an instance has served 1,000 calls.
    assert!((4..=6).contains(&recycles), "{recycles} recycles");
    let (served, recycles, faults) = picks_with(100);
    assert_eq!(recycles, 0);
    assert!(
        faults > 0 && served < 6_000,
        "{served} served, {faults} faults"
    );
}

/// `[plugins.limits.NAME]` gives one plugin its own sandbox; the others keep
/// `[plugins]`'s.
#[test]
fn a_plugin_with_limits_of_its_own_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::config::PluginsConfig {
        dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.limits.insert(
        "python-rr".into(),
        crate::config::PluginLimitsConfig {
            memory_limit_mib: Some(64),
            call_timeout_ms: Some(3),
            recycle_at_percent: None,
        },
    );
    let runtime = PluginRuntime::new(&config).unwrap();
    let own = runtime.slot("python-rr").limits;
    assert_eq!(own.memory_limit, 64 << 20);
    assert_eq!(own.call_timeout_ms, 3);
    assert_eq!(own.recycle_at, 48 << 20);
    let other = runtime.slot("rust-rr").limits;
    assert_eq!(other.memory_limit, 32 << 20);
    assert_eq!(other.call_timeout_ms, 1);
}

/// Lines in `path` so far.
fn lines_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn a_recording_of_100_000_picks_replays_exactly_through_its_version_and_shows_where_another_differs(
) {
    const PICKS: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    let peak = built_plugin("plugins/peak-ewma");
    load(&runtime, "peak", &peak);
    let record = crate::config::RecordConfig {
        percent: 100.0,
        file: dir.path().join("recordings/web.jsonl"),
        max_bytes: 1 << 30,
    };
    let balancer = runtime
        .recorded_balancer("peak", "web", "{}", &record)
        .unwrap();
    let endpoints: Vec<Arc<Endpoint>> = (0..8)
        .map(|id| Arc::new(Endpoint::new(id, &format!("10.0.0.{id}:80"), 1 + id % 3, 0).unwrap()))
        .collect();
    let everyone = Arc::new(EndpointSet::all_eligible(1, endpoints.clone()));
    let all_but_one = Arc::new(EndpointSet::new(2, endpoints.clone(), (1..8).collect()));

    // Two workers, each its own instance; loads move and the set changes
    // half-way, so the recording holds two generations and varied loads.
    std::thread::scope(|scope| {
        for worker in 0..2u64 {
            let (balancer, endpoints, runtime) = (&balancer, &endpoints, &runtime);
            let (everyone, all_but_one) = (&everyone, &all_but_one);
            scope.spawn(move || {
                for n in 0..PICKS / 2 {
                    // Paced to the writer: an unoptimised build writes
                    // slower than it picks, and a full queue drops.
                    while n % 1000 == 0 && {
                        let view = runtime.recording_of("web").unwrap();
                        view.recorded - view.written > 4_000
                    } {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if n % 500 == 0 {
                        let endpoint = &endpoints[(n / 500 % 8) as usize];
                        endpoint.stats.record((n % 7 + 1) * 300_000, n % 11 != 0);
                    }
                    let set = if n < PICKS / 4 { everyone } else { all_but_one };
                    let mut request = PickRequest {
                        info: RequestInfo {
                            hash: Some(worker << 32 | n),
                            ..RequestInfo::default()
                        },
                        headers: RequestHeaders::Raw(&[]),
                        placement: crate::engine::Placement::NONE,
                    };
                    balancer.pick(set, &mut request).unwrap();
                }
            });
        }
    });
    let recording = runtime.recording_of("web").unwrap();
    assert_eq!((recording.recorded, recording.dropped), (PICKS, 0));
    drop(balancer);
    // The writer drains and ends once its recorder is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines_in(&record.file) < PICKS as usize + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} lines",
            lines_in(&record.file)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let replay = |plugin: &Path| {
        crate::replay::replay(&crate::replay::ReplayRequest {
            recording: record.file.clone(),
            plugin: plugin.to_path_buf(),
            config_json: None,
            examples: 3,
        })
        .unwrap()
    };
    let itself = replay(&dir.path().join("peak.wasm"));
    assert!(itself.same_version, "{itself:#?}");
    assert_eq!(itself.sessions, 1);
    assert_eq!((itself.picks, itself.agreed), (PICKS, PICKS));
    assert_eq!(itself.diverged_calls, 0);
    assert_eq!((itself.faults.recorded, itself.faults.replayed), (0, 0));
    assert!(
        itself.unreadable_lines.is_empty(),
        "{:?}",
        itself.unreadable_lines
    );

    let turns = dir.path().join("turns.wasm");
    std::fs::write(&turns, built_plugin("plugins/round-robin")).unwrap();
    let other = replay(&turns);
    assert!(!other.same_version);
    assert_eq!(other.picks, PICKS);
    assert!(other.agreed < PICKS / 2, "{} agreed", other.agreed);
    assert_eq!(other.differences.len(), 3);
    let first = &other.differences[0];
    assert_ne!(first.recorded, first.replayed);
    assert!(!first.calls.is_empty(), "the inputs that led to it");
    // Round robin never asks the host; peak-EWMA's draws and loads go unused.
    assert_eq!(other.diverged_calls, PICKS);
    assert_eq!(
        other.placements.iter().map(|p| p.replayed).sum::<u64>(),
        PICKS
    );
}

/// The bytes of a built plugin with a custom section appended: a new file
/// (another hash, so another version) of the same code.
fn another_build_of(bytes: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    let name = b"switchyard-test";
    // A custom section: id 0, size, name length, name, no payload.
    bytes.extend_from_slice(&[0, name.len() as u8 + 1, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes
}

/// A pool that uses plugin `name` as its balancer with `config`, attached
/// so new versions are checked against it.
fn attached_pool(runtime: &PluginRuntime, name: &str, config: &str) -> Arc<crate::engine::Pool> {
    let endpoints = (0..3)
        .map(|id| Arc::new(Endpoint::new(id, &format!("127.0.0.1:{}", 9000 + id), 1, 0).unwrap()))
        .collect();
    let pool = Arc::new(crate::engine::Pool::new(
        "web".into(),
        endpoints,
        None,
        None,
    ));
    runtime.attach(name, Role::Balancer, &pool, config).unwrap();
    pool
}

/// A plugin built against contract 0.2.0 (the frozen WIT, no store, no
/// state exports) loads and serves: its imports match 0.2.1's by semver,
/// its `balancer@0.2.0` export is found by the 0.2.1 bindings, and a swap
/// of it carries nothing.
#[test]
fn a_plugin_built_against_0_2_0_keeps_loading_and_serving() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    let bytes = built_plugin("tests/plugins/turns-0-2-0");
    let version = load(&runtime, "turns", &bytes);
    assert_eq!(version.contract, "0.2.0");
    let Prepared::Balancer(pre) = &version.prepared else {
        panic!("served as {:?}", version.prepared);
    };
    assert!(!pre.has_state());
    let balancer = runtime.balancer("turns", "web", "{}");
    let set = endpoint_set(3);
    std::thread::spawn(move || {
        assert_eq!(pick_once(&balancer, &set).unwrap(), 0);
        assert_eq!(pick_once(&balancer, &set).unwrap(), 1);
        load(&runtime, "turns", &another_build_of(&bytes));
        // Nothing carried: the new version starts its turns afresh.
        assert_eq!(pick_once(&balancer, &set).unwrap(), 0);
        assert_eq!(balancer.slot().faults(), 0);
    })
    .join()
    .unwrap();
}

/// A swap carries each pool's state: the worker's instance of the new
/// version restores what the old one's snapshot held.
#[test]
fn state_is_carried_across_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    let bytes = built_plugin("tests/plugins/carry-turns");
    let version = load(&runtime, "turns", &bytes);
    assert_eq!(version.contract, "0.2.1");
    let _pool = attached_pool(&runtime, "turns", "{}");
    let balancer = runtime.balancer("turns", "web", "{}");
    let set = endpoint_set(3);
    std::thread::spawn(move || {
        assert_eq!(pick_once(&balancer, &set).unwrap(), 0);
        assert_eq!(pick_once(&balancer, &set).unwrap(), 1);
        let newer = load(&runtime, "turns", &another_build_of(&bytes));
        // The place goes on where the old version left it.
        assert_eq!(pick_once(&balancer, &set).unwrap(), 2);
        assert_eq!(pick_once(&balancer, &set).unwrap(), 0);
        let slot = runtime.slot("turns");
        assert_eq!(slot.current().unwrap().id, newer.id);
        assert_eq!(slot.faults(), 0);
        assert_eq!(runtime.live_instances(), 2, "the worker's and the scratch");
    })
    .join()
    .unwrap();
}

/// A version that cannot restore the serving version's state is refused
/// when the file is loaded, before it serves, with the plugin's reason.
#[test]
fn a_restore_error_refuses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    let first = load(
        &runtime,
        "turns",
        &built_plugin("tests/plugins/carry-turns"),
    );
    let _pool = attached_pool(&runtime, "turns", "{}");
    let path = runtime.dir().join("turns.wasm");
    std::fs::write(&path, built_plugin("tests/plugins/carry-turns-2")).unwrap();
    let error = runtime.load(&path).unwrap_err();
    assert_eq!(error.stage, "configure");
    assert!(
        error.reason.contains("pool `web`: restore refused the state of the version before: a snapshot of format 1; this version reads format 2"),
        "{error}"
    );
    let slot = runtime.slot("turns");
    assert_eq!(slot.current().unwrap().id, first.id);
    assert_eq!(slot.history.lock().unwrap().rejections, 1);
}

/// A restore that fails on a worker, after the load's checks passed (they
/// see only fresh state): that worker keeps serving its old instance, and
/// the new version is rejected and the one before reinstated. No pick is
/// lost.
#[test]
fn a_restore_error_on_a_worker_reinstates_the_version_before() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    let fresh_carries_nothing = r#"{"empty_when_fresh": true}"#;
    let first = load(
        &runtime,
        "turns",
        &built_plugin("tests/plugins/carry-turns"),
    );
    let _pool = attached_pool(&runtime, "turns", fresh_carries_nothing);
    let balancer = runtime.balancer("turns", "web", fresh_carries_nothing);
    let set = endpoint_set(3);
    let events = Arc::clone(&runtime.shared.events);
    std::thread::spawn(move || {
        assert_eq!(pick_once(&balancer, &set).unwrap(), 0);
        let second = load(&runtime, "turns", &built_plugin("tests/plugins/carry-turns-2"));
        let slot = runtime.slot("turns");
        assert_eq!(slot.current().unwrap().id, second.id);
        // This worker's pool has a place the new format cannot read.
        assert_eq!(pick_once(&balancer, &set).unwrap(), 1, "served by the old instance");
        assert_eq!(slot.current().unwrap().id, first.id, "reinstated");
        assert_eq!(pick_once(&balancer, &set).unwrap(), 2);
        let history = slot.history.lock().unwrap();
        let rejected = history.last_rejected.as_ref().unwrap();
        assert!(
            rejected.message.contains("restore: pool `web`: restore refused the state of the version before: a snapshot of format 1"),
            "{}",
            rejected.message
        );
        assert_eq!(history.rejections, 1);
        drop(history);
        assert_eq!(slot.faults(), 0);
    })
    .join()
    .unwrap();
    let (published, _) = events.since(None);
    assert!(
        published
            .iter()
            .any(|event| event.kind == "plugin" && event.data["event"] == "rejected"),
        "{published:?}"
    );
}

/// The store is a host call like the others: a recorded pick records what
/// it asked the store and was answered, and a replay answers it again, so
/// a version that uses the store replays exactly. The live store counted
/// every pick.
#[test]
fn picks_that_use_the_store_are_recorded_and_replay_exactly() {
    const PICKS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    load(
        &runtime,
        "turns",
        &built_plugin("tests/plugins/carry-turns"),
    );
    let record = crate::config::RecordConfig {
        percent: 100.0,
        file: dir.path().join("recordings/web.jsonl"),
        max_bytes: 1 << 30,
    };
    let balancer = runtime
        .recorded_balancer("turns", "web", "{}", &record)
        .unwrap();
    let set = endpoint_set(3);
    for _ in 0..PICKS {
        pick_once(&balancer, &set).unwrap();
    }
    assert_eq!(balancer.pool_store().get(None, "picks"), PICKS as i64);
    drop(balancer);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines_in(&record.file) < PICKS as usize + 1 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let recorded = std::fs::read_to_string(&record.file).unwrap();
    assert!(recorded.contains("store-add"), "{}", &recorded[..400]);
    let replayed = crate::replay::replay(&crate::replay::ReplayRequest {
        recording: record.file.clone(),
        plugin: dir.path().join("turns.wasm"),
        config_json: None,
        examples: 3,
    })
    .unwrap();
    assert!(replayed.same_version, "{replayed:#?}");
    assert_eq!((replayed.picks, replayed.agreed), (PICKS, PICKS));
    assert_eq!(replayed.diverged_calls, 0);
}

/// An upstream on loopback that answers each request `200 OK` after `delay`.
async fn slow_upstream(delay: Duration) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let read = match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    head.extend_from_slice(&buffer[..read]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        head.clear();
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

/// A pool of `size` endpoints at `address`, checked by plugin `name`.
fn checked_pool(
    runtime: &PluginRuntime,
    name: &str,
    size: u32,
    address: &str,
) -> (Arc<crate::engine::Pool>, Arc<WasmHealthCheck>) {
    let endpoints = (0..size)
        .map(|id| Arc::new(Endpoint::new(id, address, 1, 0).unwrap()))
        .collect();
    let pool = Arc::new(crate::engine::Pool::new(
        format!("{name}-checked"),
        endpoints,
        None,
        None,
    ));
    runtime
        .attach(name, Role::HealthCheck, &pool, "{}")
        .unwrap();
    let checker = runtime.health_check(
        name,
        &pool.name,
        "{}",
        &crate::engine::UpstreamProtocol::default(),
    );
    (pool, checker)
}

/// Checks `checks` endpoints at once with plugin `name` (built from
/// `crate_path`) against an upstream that answers after `PROBE`: every
/// verdict is healthy, and all of them take about one probe's time.
fn slow_probes_wait_together(crate_path: &str, name: &str, checks: u32) {
    use crate::engine::{CheckOutcome, Health, HealthChecker as _};
    const PROBE: Duration = Duration::from_millis(300);
    // One thread runs everything: the checks, their probes and the
    // upstream, and the blocking pool has one thread. A check that held a
    // thread while its probe waited would make these take a probe time
    // each, one after the other.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(&crate::config::PluginsConfig {
        dir: dir.path().to_path_buf(),
        call_timeout_ms: 1_000,
        ..Default::default()
    })
    .unwrap();
    load(&runtime, name, &built_plugin(crate_path));
    tokio.block_on(async {
        let address = slow_upstream(PROBE).await;
        let (pool, checker) = checked_pool(&runtime, name, checks, &address);
        let check_all =
            || {
                futures_util::future::join_all(pool.endpoints().all.iter().map(|endpoint| {
                    checker.check(Arc::clone(endpoint), Instant::now() + PROBE * 10)
                }))
            };
        // The first round makes the instances.
        check_all().await;
        let started = Instant::now();
        let outcomes = check_all().await;
        let took = started.elapsed();
        for outcome in &outcomes {
            assert!(
                matches!(outcome, CheckOutcome::Verdict(Health::Healthy, _)),
                "{outcome:?}"
            );
        }
        assert!(
            took < PROBE * 2,
            "{} checks of {PROBE:?} each took {took:?}",
            outcomes.len()
        );
    });
}

#[test]
fn checks_waiting_on_slow_probes_wait_together_on_one_thread() {
    // As many as run at once: one per shared instance.
    slow_probes_wait_together(
        "plugins/http-health",
        "http-health",
        health::HEALTH_INSTANCES as u32,
    );
}

#[test]
fn checks_of_a_contract_0_1_plugin_wait_on_their_probes_together_too() {
    // Instances of its own per pool, as many as checks run at once.
    slow_probes_wait_together("tests/plugins/get-0-1-1", "get-0-1-1", 32);
}

#[test]
fn a_looping_check_yields_its_thread_and_is_cut_off_at_its_budget() {
    use crate::engine::{CheckOutcome, HealthChecker as _};
    const TIMEOUT: Duration = Duration::from_millis(100);
    // One thread: a check that never yielded would stop the ticker.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    load(
        &runtime,
        "hostile-health",
        &built_plugin("tests/plugins/hostile-health"),
    );
    tokio.block_on(async {
        // Endpoint 0 is the one hostile-health loops on.
        let (pool, checker) = checked_pool(&runtime, "hostile-health", 1, "127.0.0.1:9");
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let started = Instant::now();
        let outcome = checker
            .check(Arc::clone(&pool.endpoints().all[0]), started + TIMEOUT)
            .await;
        let took = started.elapsed();
        ticker.abort();
        let CheckOutcome::Fault(fault) = outcome else {
            panic!("a looping check gave {outcome:?}");
        };
        assert!(fault.contains("ran past its time budget"), "{fault}");
        assert!(took >= TIMEOUT, "cut off after {took:?}");
        assert!(took < TIMEOUT * 3, "cut off only after {took:?}");
        let ticks = ticks.load(Ordering::Relaxed);
        assert!(ticks >= 5, "the ticker ran {ticks} times in {took:?}");
        let slot = runtime.find_slot("hostile-health").unwrap();
        assert_eq!(slot.faults(), 1);
    });
}

#[test]
fn a_health_check_from_the_compiled_cache_checks_as_a_fresh_one() {
    use crate::engine::{CheckOutcome, Health, HealthChecker as _};
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bytes = built_plugin("plugins/http-health");
    for cached in [false, true] {
        let runtime = runtime_in(dir.path());
        assert_eq!(load(&runtime, "http-health", &bytes).from_cache, cached);
        tokio.block_on(async {
            let address = slow_upstream(Duration::ZERO).await;
            let (pool, checker) = checked_pool(&runtime, "http-health", 1, &address);
            let endpoint = Arc::clone(&pool.endpoints().all[0]);
            let outcome = checker
                .check(endpoint, Instant::now() + Duration::from_secs(5))
                .await;
            assert!(
                matches!(outcome, CheckOutcome::Verdict(Health::Healthy, _)),
                "cached {cached}: {outcome:?}"
            );
        });
    }
}

#[test]
fn a_looping_check_its_caller_stopped_waiting_for_is_still_cut_off_and_counted() {
    use crate::engine::HealthChecker as _;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path());
    load(
        &runtime,
        "hostile-health",
        &built_plugin("tests/plugins/hostile-health"),
    );
    tokio.block_on(async {
        let (pool, checker) = checked_pool(&runtime, "hostile-health", 1, "127.0.0.1:9");
        let check = checker.check(
            Arc::clone(&pool.endpoints().all[0]),
            Instant::now() + Duration::from_millis(100),
        );
        // The caller gives up first, as `check_once` does at the deadline.
        let gave_up = tokio::time::timeout(Duration::from_millis(20), check).await;
        assert!(gave_up.is_err());
        let slot = runtime.find_slot("hostile-health").unwrap();
        let started = Instant::now();
        while slot.faults() == 0 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(slot.faults(), 1);
    });
}
