//! P0's added latency with and without a flood of P4 at saturation.
//!
//! Starts the real `switchyard` binary in front of one upstream (in this
//! process) that takes 20 ms over every answer, in a pool with
//! `max_in_flight = 16` (a queue of 64, P4 waiting at most 50 ms, 25% of the
//! limit reserved from P4), and a route that trusts `x-priority`.
//!
//! 1. **Quiet**: P0 requests at a steady 100/s, one at a time, for
//!    `SECONDS` (default 5).
//! 2. **Flood**: the same P0 requests while 64 connections send P4 requests
//!    back to back, holding the pool at its limit and its queue full.
//!
//! For each phase it prints P0's added latency (`p50`, `p99`: the proxy's
//! own `switchyard_added_latency_seconds{class="p0"}` histogram, from the
//! request's head to its sending, given as the upper bound of the bucket
//! each percentile falls in), P0's latency at the client (p50, p99, with the
//! upstream's 20 ms in it), P0 failures (the target is none), and the P4
//! requests served and shed.
//!
//! `cargo bench -p switchyard --bench overload` (SECONDS=N)

// Only the live binary and upstreams are used here.
#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::live::{start_proxy_with, upstream_with_delay, Proxy};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

const FLOOD_CONNECTIONS: usize = 64;
const P0_INTERVAL: Duration = Duration::from_millis(10);

/// The added-latency histogram's bucket bounds (µs) and cumulative counts.
#[derive(Debug, Default, Clone)]
struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    /// Counts since `before`.
    fn since(&self, before: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|(bound, count)| {
                    let earlier = before
                        .0
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0, |(_, c)| *c);
                    (*bound, count - earlier)
                })
                .collect(),
        )
    }

    /// The upper bound of the bucket the `q` quantile falls in, in µs.
    fn quantile_bound_us(&self, q: f64) -> f64 {
        let total = self.0.last().map_or(0, |(_, c)| *c);
        let wanted = (total as f64 * q).ceil() as u64;
        self.0
            .iter()
            .find(|(_, count)| *count >= wanted)
            .map_or(f64::INFINITY, |(bound, _)| *bound)
    }
}

async fn p0_buckets(client: &HttpClient, proxy: &Proxy) -> Buckets {
    let url = format!("http://{}/metrics", proxy.control);
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    let prefix = "switchyard_added_latency_seconds_bucket{pool=\"web\",class=\"p0\",le=\"";
    Buckets(
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(prefix)?;
                let (le, count) = rest.split_once("\"} ")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>().ok()? * 1e6
                };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect(),
    )
}

#[derive(Debug, Default)]
struct Phase {
    p0_latencies_us: Vec<f64>,
    p0_failures: u64,
    p4_served: u64,
    p4_shed: u64,
    added: Buckets,
}

async fn run_phase(client: &HttpClient, proxy: &Proxy, seconds: u64, flood: bool) -> Phase {
    let url: http::Uri = format!("http://{}/", proxy.proxy).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::new();
    if flood {
        for _ in 0..FLOOD_CONNECTIONS {
            let (client, url, stop, served, shed) = (
                client.clone(),
                url.clone(),
                stop.clone(),
                served.clone(),
                shed.clone(),
            );
            flooders.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(url.clone())
                        .header("x-priority", "p4")
                        .body(Empty::new())
                        .unwrap();
                    let Ok(response) = client.request(request).await else {
                        continue;
                    };
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    match status.as_u16() {
                        200 => served.fetch_add(1, Ordering::Relaxed),
                        503 => shed.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            }));
        }
        // Let the flood fill the pool and its queue.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = p0_buckets(client, proxy).await;
    let mut phase = Phase::default();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut next = Instant::now();
    while Instant::now() < until {
        let request = http::Request::get(url.clone())
            .header("x-priority", "p0")
            .body(Empty::new())
            .unwrap();
        let sent = Instant::now();
        match client.request(request).await {
            Ok(response) if response.status() == 200 => {
                let _ = response.into_body().collect().await;
                phase
                    .p0_latencies_us
                    .push(sent.elapsed().as_secs_f64() * 1e6);
            }
            _ => phase.p0_failures += 1,
        }
        next += P0_INTERVAL;
        tokio::time::sleep_until(next.into()).await;
    }
    phase.added = p0_buckets(client, proxy).await.since(&before);
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        let _ = flooder.await;
    }
    phase.p4_served = served.load(Ordering::Relaxed);
    phase.p4_shed = shed.load(Ordering::Relaxed);
    phase
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Kept to the end: a dropped upstream stops serving.
        let upstreams = [upstream_with_delay("slow", Duration::from_millis(20)).await];
        let plugins = tempfile::tempdir().unwrap();
        let proxy = start_proxy_with(
            &upstreams,
            plugins.path(),
            "max_in_flight = 16\nqueue = { max_len = 64, p4_ms = 50, reserve_percent = 25 }",
            "[[routes]]\npool = \"web\"\npriority_header = \"x-priority\"",
        );
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(FLOOD_CONNECTIONS + 1)
            .build_http();
        println!(
            "{:<8} {:>14} {:>14} {:>12} {:>12} {:>6} {:>10} {:>10}",
            "phase",
            "added p50 ≤µs",
            "added p99 ≤µs",
            "client p50",
            "client p99",
            "P0 fail",
            "P4 served",
            "P4 shed"
        );
        for (name, flood) in [("quiet", false), ("flood", true)] {
            let mut phase = run_phase(&client, &proxy, seconds, flood).await;
            phase.p0_latencies_us.sort_by(f64::total_cmp);
            println!(
                "{:<8} {:>14} {:>14} {:>9.0} µs {:>9.0} µs {:>6} {:>10} {:>10}",
                name,
                phase.added.quantile_bound_us(0.5),
                phase.added.quantile_bound_us(0.99),
                percentile(&phase.p0_latencies_us, 0.5),
                percentile(&phase.p0_latencies_us, 0.99),
                phase.p0_failures,
                phase.p4_served,
                phase.p4_shed
            );
        }
    });
}
