//! Delivery while endpoints die and return: readmission on the first
//! passing checks, endpoints that refuse connections held out even in panic
//! mode, a retry budget that absorbs a burst, and the chaos soak's short
//! version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

fn endpoint(pools: &serde_json::Value, id: usize) -> &serde_json::Value {
    &pools["pools"][0]["endpoints"][id]
}

/// Sends GETs back to back from one keep-alive client until `stop` is set;
/// counts answers by status.
fn background_traffic(
    proxy: &Switchyard,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let url = proxy.url("/");
    tokio::spawn(async move {
        let client = HttpClient::default();
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match client.try_get_with(&url, &[]).await {
                Ok(reply) if reply.status == 200 => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_that_returns_is_readmitted_within_rise_checks() {
    const INTERVAL_MS: u64 = 200;
    const RISE: u64 = 2;
    let plugins = plugin_dir(&[("http-health", "http-health")]);
    let keep = Upstream::start("keep").await;
    let dying = Upstream::start("dying").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         health = {{ plugin = \"http-health\", interval_ms = {INTERVAL_MS}, timeout_ms = {INTERVAL_MS}, \
         rise = {RISE}, fall = 2, config = {{ path = \"/healthz\" }} }}\n\
         outlier = {{ consecutive_failures = 3 }}\n\
         endpoints = [{}, {}]\n",
        keep.endpoint(1),
        dying.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = background_traffic(&proxy, stop.clone());

    dying.kill();
    // Down by its checks; held out, and ejected if traffic reached it first.
    wait_for_pools(&proxy, &client, "the killed endpoint down", |p| {
        endpoint(p, 1)["health"]["active"] == "unhealthy" && endpoint(p, 1)["eligible"] == false
    })
    .await;
    let back = dying.restarted("back").await;
    let returned = Instant::now();
    let pools = wait_for_pools(&proxy, &client, "the endpoint readmitted", |p| {
        endpoint(p, 1)["eligible"] == true
    })
    .await;
    let readmitted_after = returned.elapsed();
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    // At most one interval until the first check, then `rise` passing
    // checks, with a check's own time on top; an ejection (30 s by
    // default) must not keep it out.
    let bound = Duration::from_millis(RISE * INTERVAL_MS + INTERVAL_MS + 400);
    assert!(
        readmitted_after <= bound,
        "readmitted {} ms after its return, more than {} ms: {:#}",
        readmitted_after.as_millis(),
        bound.as_millis(),
        endpoint(&pools, 1)
    );
    let health = &endpoint(&pools, 1)["health"];
    assert_eq!(
        health["ejected_for_ms"],
        serde_json::Value::Null,
        "{health:#}"
    );
    assert_eq!(health["held_after_connect_failure"], false, "{health:#}");
    // Serving again.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(client.get(&proxy.url("/")).await.upstream().to_string());
    }
    assert!(seen.contains("back"), "{seen:?}");
    drop(back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_endpoints_out_a_third_that_dies_stops_taking_traffic_at_once() {
    let plugins = tempfile::tempdir().unwrap();
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    ];
    let endpoints: Vec<String> = upstreams.iter().map(|u| u.endpoint(1)).collect();
    // No retries: every request that reaches a dead endpoint fails where
    // the client sees it.
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         health = {{ interval_ms = 200, timeout_ms = 100, rise = 2, fall = 2 }}\n\
         outlier = {{ consecutive_failures = 3 }}\n\
         endpoints = [{}]\n",
        endpoints.join(", ")
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    upstreams[0].kill();
    upstreams[1].kill();
    for _ in 0..40 {
        let _ = client.try_get_with(&proxy.url("/"), &[]).await;
    }
    wait_for_pools(&proxy, &client, "a and b down", |p| {
        (0..2).all(|id| endpoint(p, id)["health"]["active"] == "unhealthy")
    })
    .await;

    upstreams[2].kill();
    let mut failed = 0;
    let mut last = Vec::new();
    for n in 0..300 {
        let reply = client.get(&proxy.url("/")).await;
        if reply.status != 200 {
            failed += 1;
        }
        if n >= 200 {
            last.push(reply.upstream().to_string());
        }
    }
    // One refused connection per dead endpoint at most (the requests are
    // sent one at a time): an endpoint is held out at its first refusal,
    // and panic mode (one of four available) does not bring back the
    // endpoints that refuse.
    assert!(
        failed <= 3,
        "{failed} requests failed after the third death"
    );
    assert!(last.iter().all(|u| u == "d"), "{last:?}");
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(pools["pools"][0]["panic"], true, "{pools:#}");
    for id in 0..3 {
        assert_eq!(endpoint(&pools, id)["eligible"], false, "{pools:#}");
    }
    assert_eq!(
        endpoint(&pools, 2)["health"]["held_after_connect_failure"],
        true,
        "{pools:#}"
    );
}

/// Sends `count` GETs at `per_second`, spread over `connections` keep-alive
/// clients; returns the statuses other than 200 with their error codes.
async fn paced(proxy: &Switchyard, count: u64, per_second: u64, connections: u64) -> Vec<String> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, url) = (next.clone(), proxy.url("/"));
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::default();
            let mut failures = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return failures;
                }
                // Request n leaves no earlier than n / rate after the start.
                let due = started + Duration::from_micros(n * 1_000_000 / per_second);
                tokio::time::sleep_until(due.into()).await;
                match client.try_get_with(&url, &[]).await {
                    Ok(reply) if reply.status == 200 => {}
                    Ok(reply) => failures.push(format!(
                        "{} {}",
                        reply.status,
                        reply
                            .headers
                            .get("x-switchyard-error")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                    )),
                    Err(error) => failures.push(error),
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_thousand_refusals_is_absorbed_by_the_default_retry_budget() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let (live, dying) = (
        Upstream::start("live").await,
        Upstream::start("dying").await,
    );
    // Neither ejection nor the hold takes the dead endpoint out, so the
    // round robin keeps sending every other first attempt to it: a burst
    // of refusals only retries can save. The budget is the default one.
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         recovery = {{ plugin = \"retry-backoff\" }}\n\
         outlier = {{ enabled = false }}\n\
         connect_failure_hold_ms = 0\n\
         endpoints = [{}, {}]\n",
        live.endpoint(1),
        dying.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    // Two seconds of traffic at 5,000 requests a second fill the window...
    let failures = paced(&proxy, 10_000, 5_000, 16).await;
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(10)]
    );
    dying.kill();
    // ...that pays for the burst: every first attempt, or every other one,
    // refused (as the round robin interleaves retries) for half a second.
    let retries_before = metric(&proxy, "switchyard_retries_total").await;
    let failures = paced(&proxy, 2_400, 5_000, 16).await;
    let retries = metric(&proxy, "switchyard_retries_total").await - retries_before;
    assert!(
        failures.is_empty(),
        "{} of 2,400 failed ({retries} retries), e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        retries >= 1_000,
        "only {retries} retries: the burst did not happen"
    );
    // Bodiless GETs to a pool with retries stay on the fast path.
    assert!(metric(&proxy, "switchyard_fast_path_requests_total").await >= 12_400);
}

/// The chaos soak of `bench/chaos`, short: four endpoints in processes of
/// their own killed and restarted every 1–3 s, the balancer swapped every
/// 3 s, four clients sending back to back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_soak_delivers_every_request_but_mid_body_cuts() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard-chaos"))
        .args([
            "soak",
            "--duration",
            "15",
            "--seed",
            "7",
            "--json",
            "--switchyard",
        ])
        .arg(BINARY)
        .arg("--plugins")
        .arg(built_plugins())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run switchyard-chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(report["kills"].as_u64().unwrap() >= 4, "{report:#}");
    assert!(report["swaps"].as_u64().unwrap() >= 3, "{report:#}");
    assert!(report["requests"].as_u64().unwrap() >= 10_000, "{report:#}");
    let share = report["delivered_share_without_cuts"].as_f64().unwrap();
    assert!(share >= 99.99, "delivered {share}%: {report:#}");
}
