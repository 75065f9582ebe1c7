//! Requests failed during live plugin reloads under load.
//!
//! Starts the real `switchyard` binary in front of three upstream servers
//! (`a`, `b`, `c`, in this process) with the pool's balancer read from
//! `policy.wasm`, drives it with eight keep-alive load loops, and deploys a
//! new `policy.wasm` `RELOADS` times (default 100): written under a temporary
//! name, then renamed, alternating pin-first (every request to `a`) and
//! pin-last (every request to `c`). After each deploy it waits until a
//! request is answered by the new version's upstream, and times that from
//! the rename.
//!
//! Reports every request the load loops sent, how many failed (a non-200
//! answer or a connection error; the target is none), how many were answered
//! by an upstream neither version picks (the fallback balancer stepping in),
//! and the time from rename to the new version serving.
//!
//! `cargo bench -p switchyard --bench reload_under_load` (RELOADS=N)

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::live::{start_proxy, upstream};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const LOAD_LOOPS: usize = 8;
/// A deploy not serving by then fails the benchmark.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the load loops saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failed: AtomicU64,
    /// Answered by `b`, which neither pin plugin picks.
    by_neither: AtomicU64,
}

/// Writes `bytes` as `dir/policy.wasm` the way a deploy does.
fn deploy(dir: &Path, bytes: &[u8]) {
    let temporary = dir.join(".policy.upload");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, dir.join("policy.wasm")).unwrap();
}

async fn get(client: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> Option<Bytes> {
    let response = client.get(url.parse().ok()?).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    Some(response.into_body().collect().await.ok()?.to_bytes())
}

async fn run(reloads: usize) {
    let first = std::fs::read(common::build("pin-first", "tests/plugins/pin-first")).unwrap();
    let last = std::fs::read(common::build("pin-last", "tests/plugins/pin-last")).unwrap();
    let plugins = tempfile::tempdir().unwrap();
    deploy(plugins.path(), &first);
    let upstreams = [
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    ];
    let proxy = start_proxy(
        &upstreams,
        plugins.path(),
        "balancer = { plugin = \"policy\" }\noutlier = { enabled = false }",
    );
    let url = format!("http://{}/", proxy.proxy);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(get(&client, &url).await.as_deref(), Some(&b"a"[..]));

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..LOAD_LOOPS)
        .map(|_| {
            let (client, url, stop, tally) =
                (client.clone(), url.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let answer = get(&client, &url).await;
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    match answer.as_deref() {
                        None => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(b"b") => {
                            tally.by_neither.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(_) => {}
                    }
                }
            })
        })
        .collect();

    let mut times = Vec::with_capacity(reloads);
    for reload in 0..reloads {
        // Odd deploys are pin-last (→ c), even ones pin-first (→ a).
        let (bytes, expected) = if reload % 2 == 0 {
            (&last, &b"c"[..])
        } else {
            (&first, &b"a"[..])
        };
        let deployed = Instant::now();
        deploy(plugins.path(), bytes);
        loop {
            if get(&client, &url).await.as_deref() == Some(expected) {
                break;
            }
            assert!(
                deployed.elapsed() < DEPLOY_TIMEOUT,
                "reload {reload}: the new version was not serving after {DEPLOY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        times.push(deployed.elapsed().as_secs_f64() * 1e3);
        // Let the watcher's debounce window close before the next deploy, so
        // each deploy is its own reload.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.unwrap();
    }

    let plugins_json = get(&client, &format!("http://{}/v1/plugins", proxy.control))
        .await
        .expect("/v1/plugins answers");
    let plugins_json: serde_json::Value = serde_json::from_slice(&plugins_json).unwrap();
    let slot = &plugins_json["plugins"][0];

    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!("\n{reloads} reloads under {LOAD_LOOPS} keep-alive load loops");
    println!(
        "  requests sent                 {}",
        tally.requests.load(Ordering::Relaxed)
    );
    println!(
        "  failed requests               {}",
        tally.failed.load(Ordering::Relaxed)
    );
    println!(
        "  answered by neither version   {}",
        tally.by_neither.load(Ordering::Relaxed)
    );
    println!(
        "  plugin reloads / faults       {} / {}",
        slot["reloads"], slot["faults"]
    );
    println!(
        "  rename → new version serving  median {:.1} ms  p90 {:.1} ms  max {:.1} ms",
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

fn main() {
    let reloads: usize = std::env::var("RELOADS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(reloads.max(1)));
}
