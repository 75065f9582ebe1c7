//! Plugin state beyond one instance: the pool's store shared by every
//! worker's instance, and state that survives a swap of the plugin file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// The bytes of a built plugin with a custom section appended: another file
/// (another hash, so a new version is swapped in) of the same code.
fn another_build_of(bytes: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    let name = b"switchyard-e2e";
    bytes.extend_from_slice(&[0, name.len() as u8 + 1, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes
}

/// The breaker's trips in the process's log: `(open ms, trip)` of each.
fn trips(proxy: &Switchyard) -> Vec<(u32, u32)> {
    let log = proxy.stderr.lock().unwrap();
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("endpoint 0 open for ")? + "endpoint 0 open for ".len()..];
            let (ms, rest) = rest.split_once(" ms (trip ")?;
            let (trip, _) = rest.split_once(')')?;
            Some((ms.parse().ok()?, trip.parse().ok()?))
        })
        .collect()
}

fn failing_and_good_pool(failing: &Upstream, good: &Upstream, breaker: &str) -> String {
    // Native outlier detection off: only the plugin ejects.
    format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ enabled = false }}\n\
         recovery = {{ plugin = \"circuit-breaker\", config = {breaker} }}\n\
         endpoints = [{}, {}]\n",
        failing.endpoint(1),
        good.endpoint(1)
    )
}

async fn failing_upstream() -> Upstream {
    Upstream::with(
        "failing",
        Behaviour {
            status: 503,
            delay: Duration::ZERO,
        },
    )
    .await
}

/// With two workers, failures that land on either count toward one run:
/// the endpoint trips once, after about `consecutive_failures` failures in
/// all, where a count per worker would let it fail that many times on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_spread_over_workers_trip_the_endpoint_once_for_the_pool() {
    let plugins = plugin_dir(&[("circuit-breaker", "circuit-breaker")]);
    let failing = failing_upstream().await;
    let good = Upstream::start("good").await;
    // Only the run trips (a ratio of 1 needs every request to fail).
    let body = failing_and_good_pool(
        &failing,
        &good,
        "{ failure_ratio = 1.0, consecutive_failures = 8, open_ms = 60000 }",
    );
    let proxy = Switchyard::start_with(plugins.path(), "workers = 2", &body);
    // A new connection per request, so the workers take turns accepting.
    for _ in 0..60 {
        let reply = HttpClient::default().get(&proxy.url("/")).await;
        assert_eq!(
            (reply.status, reply.upstream()),
            (200, "good"),
            "{}",
            reply.body
        );
    }
    // The host's success share starts at 100% and falls with each failure:
    // the first failure or two start the run while it is still high.
    let hits = failing.hits();
    assert!(
        (8..=10).contains(&hits),
        "the failing endpoint answered {hits} requests"
    );
    assert_eq!(trips(&proxy), vec![(60_000, 1)], "{}", proxy.log_tail());
    let client = HttpClient::default();
    let pools = pools_now(&proxy, &client).await;
    let tripped = &pools["pools"][0]["endpoints"][0];
    assert_eq!(tripped["eligible"], false, "{tripped:#}");
    assert_eq!(tripped["health"]["ejections"], 1, "{tripped:#}");
    let breaker = &proxy.plugins(&client).await["circuit-breaker"];
    assert_eq!(breaker["faults"], 0);
    let stores = breaker["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 1, "{breaker:#}");
    assert_eq!(stores[0]["user"], "pool `web`");
    // A run, the last failure and the open circuit of the failing endpoint.
    assert_eq!(stores[0]["entries"], 3, "{breaker:#}");
    assert_eq!(stores[0]["max_entries"], 4096);
}

/// A swap of the breaker under load keeps what it knows: the open circuit
/// stays open, and the endpoint's next trip, on probation after it is
/// readmitted, doubles the open time as if no swap had happened. No
/// request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_of_the_circuit_breaker_under_load_keeps_its_circuits() {
    let plugins = plugin_dir(&[("circuit-breaker", "circuit-breaker")]);
    let failing = failing_upstream().await;
    let good = Upstream::start("good").await;
    let body = failing_and_good_pool(
        &failing,
        &good,
        "{ failure_ratio = 1.0, consecutive_failures = 2, open_ms = 2000, max_open_ms = 60000 }",
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (HttpClient::default(), proxy.url("/"), stop.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut served = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match client.try_get_with(&url, &[]).await {
                        Ok(reply) if reply.status == 200 => served += 1,
                        Ok(reply) => failed.push(format!("{} {}", reply.status, reply.body.trim())),
                        Err(error) => failed.push(error),
                    }
                }
                (served, failed)
            })
        })
        .collect();

    // The first trip, then the swap while the circuit is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while trips(&proxy).is_empty() {
        assert!(
            Instant::now() < deadline,
            "never tripped\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hits_when_open = failing.hits();
    replace_plugin(
        plugins.path(),
        "circuit-breaker",
        &another_build_of(&plugin_bytes("circuit-breaker")),
    );
    proxy
        .wait_for_plugin(&client, "circuit-breaker", "the new file swapped in", |p| {
            p["reloads"] == 1
        })
        .await;
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(
        pools["pools"][0]["endpoints"][0]["eligible"], false,
        "still open"
    );

    // Readmitted after 2 s, it fails again on probation: trip 2, for 4 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    while trips(&proxy).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "never re-tripped\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for task in loops {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        served += ok;
    }
    assert!(served > 0);
    assert_eq!(
        trips(&proxy),
        vec![(2_000, 1), (4_000, 2)],
        "{}",
        proxy.log_tail()
    );
    assert!(
        failing.hits() > hits_when_open,
        "readmitted between the trips"
    );
    let breaker = &proxy.plugins(&client).await["circuit-breaker"];
    assert_eq!(breaker["faults"], 0, "{breaker:#}");
    assert_eq!(breaker["rejected_files"], 0, "{breaker:#}");
}
