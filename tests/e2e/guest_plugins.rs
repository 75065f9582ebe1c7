//! Plugins written in JavaScript and Python, built by `switchyard plugin
//! build` from the bundled examples and served by the real binary: traffic
//! through each language's balancer, a Python health check and a
//! JavaScript recovery policy at work, a Rust balancer swapped for its
//! Python port under load, a million picks through each language, and the
//! store and state carried across a swap in each language.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Starts the binary over `plugins` with the shared compile cache.
fn start(plugins: &std::path::Path, body: &str) -> Switchyard {
    Switchyard::try_start_full(plugins, "", "", &shared_compile_cache(), body)
        .unwrap_or_else(|error| panic!("switchyard did not start: {error}"))
}

fn endpoints(upstreams: &[&Upstream]) -> String {
    upstreams
        .iter()
        .map(|u| u.endpoint(1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An upstream answering 200, and one answering 503 to everything.
async fn good_and_failing() -> (Upstream, Upstream) {
    let failing = Behaviour {
        status: 503,
        delay: Duration::ZERO,
    };
    (
        Upstream::start("good").await,
        Upstream::with("failing", failing).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_served_through_a_javascript_balancer() {
    let plugins = plugin_dir(&[("js-least-request", "js-least-request")]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         balancer = {{ plugin = \"js-least-request\", config = {{ choice_count = 2 }} }}\n\
         endpoints = [{}]\n",
        endpoints(&upstreams.iter().collect::<Vec<_>>())
    );
    let proxy = start(plugins.path(), &body);
    let client = HttpClient::default();
    let (seen, failures) = client.spread(&proxy.url("/"), 300, 6).await;
    assert!(failures.is_empty(), "{failures:?}");
    // Two random choices of three: every endpoint is picked.
    for name in ["a", "b", "c"] {
        assert!(seen.get(name).copied().unwrap_or(0) > 20, "{seen:?}");
    }
    let plugin = &proxy.plugins(&client).await["js-least-request"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert!(plugin["calls"].as_u64().unwrap() >= 300, "{plugin:#}");
    assert_eq!(plugin["world"], "balancer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_served_through_a_python_balancer_in_weighted_turns() {
    let plugins = plugin_dir(&[("py-round-robin", "py-round-robin")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         balancer = {{ plugin = \"py-round-robin\" }}\n\
         endpoints = [{}, {}]\n",
        a.endpoint(1),
        b.endpoint(3)
    );
    let proxy = start(plugins.path(), &body);
    let client = HttpClient::default();
    let (seen, failures) = client.spread(&proxy.url("/"), 400, 1).await;
    assert!(failures.is_empty(), "{failures:?}");
    // Smooth weighted round robin: 1 in 4 to `a`, on each worker's instance
    // (a worker's turns may be one window short).
    let to_a = seen.get("a").copied().unwrap_or(0);
    assert!((96..=104).contains(&to_a), "{seen:?}");
    let plugin = &proxy.plugins(&client).await["py-round-robin"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_health_check_marks_a_failing_endpoint_down() {
    let plugins = plugin_dir(&[("py-http-health", "py-http-health")]);
    let (good, failing) = good_and_failing().await;
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         health = {{ plugin = \"py-http-health\", interval_ms = 200, timeout_ms = 200, rise = 1, fall = 2, \
         config = {{ path = \"/healthz\" }} }}\n\
         endpoints = [{}]\n",
        endpoints(&[&good, &failing])
    );
    let proxy = start(plugins.path(), &body);
    let client = HttpClient::default();
    let pools = wait_for_pools(&proxy, &client, "the failing endpoint down", |p| {
        let endpoints = &p["pools"][0]["endpoints"];
        endpoints[0]["health"]["active"] == "healthy"
            && endpoints[1]["health"]["active"] == "unhealthy"
    })
    .await;
    let reason = pools["pools"][0]["endpoints"][1]["health"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("503"), "{pools:#}");
    // Traffic goes to the endpoint left.
    let (seen, failures) = client.spread(&proxy.url("/"), 50, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("good"), Some(&50), "{seen:?}");
    let plugin = &proxy.plugins(&client).await["py-http-health"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert_eq!(plugin["world"], "health-check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_recovery_policy_retries_elsewhere() {
    let plugins = plugin_dir(&[("js-retry-backoff", "js-retry-backoff")]);
    let (good, failing) = good_and_failing().await;
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         recovery = {{ plugin = \"js-retry-backoff\", config = {{ attempts = 3, base_delay_ms = 1 }} }}\n\
         endpoints = [{}]\n",
        endpoints(&[&good, &failing])
    );
    let proxy = start(plugins.path(), &body);
    let client = HttpClient::default();
    let (seen, failures) = client.spread(&proxy.url("/"), 60, 2).await;
    // Every 503 was retried on the other endpoint.
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("good"), Some(&60), "{seen:?}");
    assert!(failing.hits() > 0, "the failing endpoint was never tried");
    let retries = metric(&proxy, "switchyard_retries_total").await;
    assert!(retries >= failing.hits(), "{retries} retries");
    let plugin = &proxy.plugins(&client).await["js-retry-backoff"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert_eq!(plugin["world"], "recovery");
}

/// A Rust balancer's file is replaced by the Python port of the same
/// policy while clients keep sending: no request fails, and the Python
/// version serves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_balancer_is_swapped_for_its_python_port_under_load_without_a_failure() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"rr\" }}\nendpoints = [{}]\n",
        endpoints(&upstreams.iter().collect::<Vec<_>>())
    );
    let proxy = start(plugins.path(), &body);
    let client = HttpClient::default();
    let before = proxy.plugins(&client).await["rr"]["hash"].clone();

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (client.clone(), proxy.url("/"), stop.clone());
            tokio::spawn(async move {
                let (mut served, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match client.try_get_with(&url, &[]).await {
                        Ok(reply) if reply.status == 200 => served += 1,
                        Ok(reply) => failed.push(format!("{} {}", reply.status, reply.body)),
                        Err(error) => failed.push(error),
                    }
                }
                (served, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_plugin(plugins.path(), "rr", &plugin_bytes("py-round-robin"));
    let swapped = proxy
        .wait_for_plugin(&client, "rr", "the Python version serving", |p| {
            p["hash"] != before && p["reloads"] == 1
        })
        .await;
    // Traffic keeps flowing through the new version for a while.
    let calls_at_swap = swapped["calls"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut served, mut failed) = (0, Vec::new());
    for load in loads {
        let (n, f) = load.await.unwrap();
        served += n;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(served > 200, "only {served} requests ran");
    let after = &proxy.plugins(&client).await["rr"];
    assert_eq!(after["faults"], 0, "{after:#}");
    assert!(
        after["calls"].as_u64().unwrap() > calls_at_swap + 50,
        "the Python version served too little: {after:#}"
    );
}

/// A million picks through each guest language, half on a pool of 10 and
/// half on one of 10,000, with `plugin check`: no fault, the verdict ok.
/// Each runs with the budget README advises for a language with a
/// garbage collector, whose collections can pause a call past the default
/// 1 ms on a busy machine: 5 ms, and 10 ms for Python, whose picks on
/// 10,000 endpoints have passed 5 ms under a loaded test run.
#[test]
fn a_million_picks_through_each_guest_language_fault_nothing() {
    let settings = tempfile::tempdir().unwrap();
    let config = settings.path().join("switchyard.toml");
    std::fs::write(
        &config,
        "[plugins.limits.js-least-request]
call_timeout_ms = 5

         [plugins.limits.py-round-robin]
call_timeout_ms = 10

         [[pools]]
name = \"web\"
endpoints = [{ address = \"127.0.0.1:9\" }]
",
    )
    .unwrap();
    for plugin in ["js-least-request", "py-round-robin"] {
        let file = built_guest_plugins().join(format!("{plugin}.wasm"));
        let output = std::process::Command::new(BINARY)
            .args(["plugin", "check", "--json", "--calls", "500000"])
            .arg("--plugins-config")
            .arg(&config)
            .arg(&file)
            .output()
            .expect("run switchyard plugin check");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        assert!(output.status.success(), "{report:#}");
        assert_eq!(report["verdict"]["status"], "ok", "{report:#}");
        let measurements = report["measurements"].as_array().unwrap();
        let picks: u64 = measurements
            .iter()
            .map(|m| {
                assert!(m["fault"].is_null(), "{plugin}: {m:#}");
                m["calls"].as_u64().unwrap()
            })
            .sum();
        assert_eq!(picks, 1_000_000, "{plugin}: {report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_port_is_uploaded_as_a_candidate_and_called_beside_the_rust_version() {
    let plugins = plugin_dir(&[("policy", "round-robin")]);
    let upstreams = [Upstream::start("a").await, Upstream::start("b").await];
    let body = format!(
        "[plugins.rollout.policy]\nshadow_percent = 100\ncanary_percent = 0\n\
         promote_after_calls = 1000000\nmax_cost_ratio = 1000\n\n\
         [[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"policy\" }}\nendpoints = [{}]\n",
        endpoints(&upstreams.iter().collect::<Vec<_>>())
    );
    let proxy = start(plugins.path(), &body);
    let client = HttpClient::default();
    // About 19 MB: more than any other write's body may be.
    let python = plugin_bytes("py-round-robin");
    assert!(python.len() > 16 << 20, "{} bytes", python.len());
    let reply = client
        .post(&proxy.control_url("/v1/plugins/policy/candidate"), python)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let (_seen, failures) = client.spread(&proxy.url("/"), 200, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    let rollout: serde_json::Value = serde_json::from_str(
        &client
            .get(&proxy.control_url("/v1/plugins/policy/rollout"))
            .await
            .body,
    )
    .unwrap();
    let comparison = &rollout["comparison"];
    assert_eq!(rollout["state"], "shadow", "{rollout:#}");
    assert_eq!(comparison["candidate_calls"], 200, "{comparison:#}");
    assert_eq!(comparison["candidate_faults"], 0, "{comparison:#}");
    // Turns against turns: the same share of picks for each endpoint.
    let distance = comparison["distribution_disagreement"].as_f64().unwrap();
    assert!(distance < 0.05, "{comparison:#}");
    assert!(
        comparison["cost_micros"]["candidate"]["p50"].as_f64() > Some(0.0),
        "{comparison:#}"
    );
}

/// Another file (another hash: a new version) of the same component.
fn another_build_of(bytes: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    let name = b"switchyard-e2e";
    bytes.extend_from_slice(&[0, name.len() as u8 + 1, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes
}

/// A guest-language balancer that takes turns keeps its place across a
/// swap (its `snapshot` and `restore`) and counts its picks in the pool's
/// store.
async fn turns_carry_across_a_swap(plugin: &str) {
    let plugins = plugin_dir(&[(plugin, plugin)]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"{plugin}\" }}\nendpoints = [{}]\n",
        endpoints(&upstreams.iter().collect::<Vec<_>>())
    );
    // One worker: one instance, so the turns are one sequence.
    let proxy = Switchyard::try_start_full(
        plugins.path(),
        "workers = 1",
        "",
        &shared_compile_cache(),
        &body,
    )
    .unwrap_or_else(|error| panic!("switchyard did not start: {error}"));
    let client = HttpClient::default();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let reply = client
            .try_get_with(&proxy.url("/"), &[])
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", proxy.log_tail()));
        seen.push(reply.upstream().to_string());
    }
    replace_plugin(
        plugins.path(),
        plugin,
        &another_build_of(&plugin_bytes(plugin)),
    );
    proxy
        .wait_for_plugin(&client, plugin, "the new file swapped in", |p| {
            p["reloads"] == 1
        })
        .await;
    for _ in 0..2 {
        seen.push(client.get(&proxy.url("/")).await.upstream().to_string());
    }
    assert_eq!(
        seen,
        ["a", "b", "c", "a"],
        "the place went on across the swap"
    );
    let state = &proxy.plugins(&client).await[plugin];
    assert_eq!(state["faults"], 0, "{state:#}");
    assert_eq!(state["rejected_files"], 0, "{state:#}");
    assert_eq!(
        state["stores"][0]["entries"], 1,
        "the picks counter: {state:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_balancer_keeps_its_place_across_a_swap() {
    turns_carry_across_a_swap("js-turns").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_balancer_keeps_its_place_across_a_swap() {
    turns_carry_across_a_swap("py-turns").await;
}
