//! Recovery: failed attempts retried under a policy plugin, within a budget,
//! for requests the host can replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Four keep-alive loops of GETs until stopped; every answer recorded.
fn load(
    client: &HttpClient,
    url: String,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.try_get_with(&url, &[]).await {
                        Ok(reply) if reply.status == 200 => {
                            answers.push(reply.upstream().to_string())
                        }
                        Ok(reply) => {
                            answers.push(format!("FAILED {} {}", reply.status, reply.body.trim()))
                        }
                        Err(error) => answers.push(format!("FAILED {error}")),
                    }
                }
                answers
            })
        })
        .collect()
}

async fn answers(tasks: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_under_load_costs_no_client_error_with_retry_backoff() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         recovery = {{ plugin = \"retry-backoff\", config = {{ attempts = 3, base_delay_ms = 1 }} }}\n\
         endpoints = [{}]\n",
        upstreams.iter().map(|u| u.endpoint(1)).collect::<Vec<_>>().join(", ")
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&client, proxy.url("/"), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    upstreams[2].kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = answers(tasks).await;

    let failures: Vec<_> = answers.iter().filter(|a| a.starts_with("FAILED")).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        answers.len()
    );
    assert!(answers.len() > 100, "only {} requests ran", answers.len());
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    let killed = &pools["pools"][0]["endpoints"][2];
    assert_eq!(killed["eligible"], false, "{killed:#}");
    let metrics = client.get(&proxy.control_url("/metrics")).await.body;
    let retries: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_retries_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(retries > 0, "{metrics}");
    let plugin = &proxy.plugins(&client).await["retry-backoff"];
    assert_eq!(plugin["world"], "recovery");
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert!(plugin["calls"].as_u64().unwrap() >= retries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_errors_stop_once_the_outlier_detector_ejects() {
    let plugins = tempfile::tempdir().unwrap();
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let body =
        format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ consecutive_failures = 3 }}\nendpoints = [{}]\n",
        upstreams.iter().map(|u| u.endpoint(1)).collect::<Vec<_>>().join(", ")
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&client, proxy.url("/"), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    upstreams[2].kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = answers(tasks).await;
    let failed: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.starts_with("FAILED"))
        .map(|(i, _)| i)
        .collect();
    // The killed endpoint fails a few requests (each loop's in-flight one,
    // then refused connections) until three in a row eject it; none after.
    assert!(
        !failed.is_empty(),
        "killing an endpoint without retries failed nothing?"
    );
    assert!(
        failed.len() <= 12,
        "{} failures: {:?}",
        failed.len(),
        failed
    );
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    assert_eq!(pools["pools"][0]["endpoints"][2]["eligible"], false);
    for _ in 0..30 {
        assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_replayed_is_not_retried() {
    let plugins = tempfile::tempdir().unwrap();
    let failing = Upstream::with(
        "failing",
        Behaviour {
            status: 503,
            delay: Duration::ZERO,
        },
    )
    .await;
    let good = Upstream::start("good").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\nrecovery = {{}}\noutlier = {{ enabled = false }}\nendpoints = [{}, {}]\n",
        failing.endpoint(1),
        good.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    // GETs that hit `failing` are retried once on `good` by the native policy.
    for _ in 0..6 {
        let reply = client.get(&proxy.url("/")).await;
        assert_eq!((reply.status, reply.upstream()), (200, "good"));
    }
    // A POST is not idempotent: its 503 reaches the client as the endpoint sent it.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            client
                .post(&proxy.url("/upload"), b"order".to_vec())
                .await
                .status,
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_plugin_ejects_a_failing_endpoint_and_retries_elsewhere() {
    let plugins = plugin_dir(&[("circuit-breaker", "circuit-breaker")]);
    let failing = Upstream::with(
        "failing",
        Behaviour {
            status: 503,
            delay: Duration::ZERO,
        },
    )
    .await;
    let good = Upstream::start("good").await;
    // Native outlier detection off: only the plugin can eject.
    let body = format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ enabled = false }}\n\
         recovery = {{ plugin = \"circuit-breaker\", config = {{ consecutive_failures = 2, open_ms = 60000 }} }}\n\
         endpoints = [{}, {}]\n",
        failing.endpoint(1),
        good.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    for _ in 0..12 {
        let reply = client.get(&proxy.url("/")).await;
        assert_eq!(
            (reply.status, reply.upstream()),
            (200, "good"),
            "{}",
            reply.body
        );
    }
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    let tripped = &pools["pools"][0]["endpoints"][0];
    assert_eq!(tripped["eligible"], false, "{tripped:#}");
    assert!(
        tripped["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("the recovery policy ejected it"),
        "{tripped:#}"
    );
    let hits = failing.hits();
    for _ in 0..10 {
        assert_eq!(client.get(&proxy.url("/")).await.upstream(), "good");
    }
    assert_eq!(failing.hits(), hits, "a tripped endpoint got traffic");
    assert_eq!(proxy.plugins(&client).await["circuit-breaker"]["faults"], 0);
}
