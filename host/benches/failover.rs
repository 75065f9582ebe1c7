//! Failover: how long traffic keeps reaching an endpoint after it dies.
//!
//! Each round starts the real `switchyard` binary in front of three upstream
//! servers (in this process), drives it with eight keep-alive load loops,
//! then kills one upstream — listener and open connections, as when a
//! process dies — and records every answer with its time.
//!
//! - Without retries (passive outlier detection only): the time from the
//!   first failed request to the last one, i.e. until traffic has fully
//!   moved off the dead endpoint, and how many requests failed.
//! - With `retry-backoff`: failed requests seen by clients (the target is
//!   none), and the time from the kill to the alert that took the endpoint
//!   out (held at its first refused connection, or ejected).
//!
//! `cargo bench -p switchyard --bench failover` (ROUNDS=N, default 10).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::live::{start_proxy, upstream};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const LOAD_LOOPS: usize = 8;

/// One answer: when it arrived and whether it succeeded.
type Answer = (Instant, bool);

struct Round {
    failures: usize,
    requests: usize,
    first_to_last_failure: Option<Duration>,
    kill_to_ejection_ms: Option<i64>,
}

async fn round(recovery: &str) -> Round {
    let upstreams = [
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    ];
    let proxy = start_proxy(&upstreams, &common::bench_plugin_dir(), recovery);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}/", proxy.proxy);
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..LOAD_LOOPS)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers: Vec<Answer> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let ok = match client.get(url.parse().unwrap()).await {
                        Ok(response) => {
                            let ok = response.status() == 200;
                            let _ = response.into_body().collect().await;
                            ok
                        }
                        Err(_) => false,
                    };
                    answers.push((Instant::now(), ok));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed_at = SystemTime::now();
    let _ = upstreams[2].kill.send(true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for task in loops {
        answers.extend(task.await.unwrap());
    }
    let failed: Vec<Instant> = answers
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(at, _)| *at)
        .collect();
    let first_to_last_failure = match (failed.iter().min(), failed.iter().max()) {
        (Some(first), Some(last)) => Some(*last - *first),
        _ => None,
    };
    let alerts = client
        .get(
            format!("http://{}/v1/alerts", proxy.control)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let alerts: serde_json::Value = serde_json::from_slice(&alerts).unwrap();
    let killed_ms = killed_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let kill_to_ejection_ms = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|alert| {
            let message = alert["message"].as_str()?;
            // Ejected by the outlier detector, or held out at its first
            // refused connection, whichever came first.
            (message.contains("ejected") || message.contains("held out"))
                .then(|| alert["at_unix_ms"].as_i64().unwrap() - killed_ms)
        });
    Round {
        failures: failed.len(),
        requests: answers.len(),
        first_to_last_failure,
        kill_to_ejection_ms,
    }
}

fn summary(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "median {:.2}  max {:.2}",
        values[values.len() / 2],
        values[values.len() - 1]
    )
}

fn main() {
    common::build("retry-backoff", "plugins/retry-backoff");
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let modes = [
        ("passive detection, no retries", "outlier = { consecutive_failures = 5 }"),
        (
            "passive detection + retry-backoff",
            "outlier = { consecutive_failures = 5 }\nrecovery = { plugin = \"retry-backoff\", config = { attempts = 3, base_delay_ms = 1 } }",
        ),
    ];
    println!("\n{rounds} rounds each; 3 upstreams, 8 keep-alive load loops, one upstream killed\n");
    for (name, recovery) in modes {
        let mut windows = Vec::new();
        let mut ejections = Vec::new();
        let (mut failures, mut requests) = (Vec::new(), 0usize);
        for _ in 0..rounds {
            let round = runtime.block_on(round(recovery));
            requests += round.requests;
            failures.push(round.failures as f64);
            if let Some(window) = round.first_to_last_failure {
                windows.push(window.as_secs_f64() * 1e3);
            }
            if let Some(ms) = round.kill_to_ejection_ms {
                ejections.push(ms as f64);
            }
        }
        println!("{name}:");
        println!("  requests per round          {}", requests / rounds.max(1));
        println!("  failed requests per round   {}", summary(&mut failures));
        println!("  first → last failure, ms    {}", summary(&mut windows));
        println!(
            "  kill → taken out (ejection or hold alert), ms   {}  (alert timestamps have 1 ms resolution)",
            summary(&mut ejections)
        );
    }
}
