//! A fleet of three instances sharing their config through a real
//! three-member etcd cluster (Debian's `etcd`, on loopback ports).
//!
//! Measures the time from a write on one instance (sent, and answered: its
//! `200` comes once the change is in etcd and serves there) to the change
//! serving on all three (each one's `ETag` at the write's revision, polled
//! back to back), over `WRITES` writes (default 100)
//! made in turn through each instance; and the cost of watching etcd when
//! nothing changes: the CPU time of each fleet instance over 10 idle
//! seconds, beside an instance in no fleet over the same seconds.
//!
//! `cargo bench -p switchyard --bench fleet` (WRITES=N)

// The live proxy helpers; this uses part of them.
#[allow(dead_code)]
mod common;
// The tests' etcd cluster; this uses part of it.
#[allow(dead_code)]
#[path = "../../tests/e2e/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::live::{start_proxy_with, upstream, Proxy};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const IDLE: Duration = Duration::from_secs(10);

async fn request(client: &HttpClient, method: &str, url: &str, body: &str) -> (u16, String) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("the control endpoint answers");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let _ = response.into_body().collect().await;
    (status, etag)
}

/// The CPU time a process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime, fields 14 and 15 of the file (11 and 12 here).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's clock ticks are 100 per second on Linux.
    Duration::from_millis(ticks * 10)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn run(writes: usize) {
    let cluster = etcd::EtcdCluster::start(3);
    let a = upstream("a").await;
    let plugins = tempfile::tempdir().unwrap();
    let fleet: Vec<Proxy> = ["one", "two", "three"]
        .iter()
        .map(|name| {
            let tail = format!(
                "\n[cluster]\netcd = {}\nname = \"{name}\"\n",
                cluster.toml_list()
            );
            start_proxy_with(std::slice::from_ref(&a), plugins.path(), "", &tail)
        })
        .collect();
    let alone = start_proxy_with(std::slice::from_ref(&a), plugins.path(), "", "");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let config = |proxy: &Proxy| format!("http://{}/v1/config", proxy.control);

    // Idle: nothing changes for IDLE, but every instance watches and
    // renews its lease.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<Duration> = fleet.iter().map(|p| cpu_time(p.pid())).collect();
    let alone_before = cpu_time(alone.pid());
    tokio::time::sleep(IDLE).await;
    let idle: Vec<f64> = fleet
        .iter()
        .zip(&before)
        .map(|(p, before)| (cpu_time(p.pid()) - *before).as_secs_f64() / IDLE.as_secs_f64())
        .collect();
    let alone_idle = (cpu_time(alone.pid()) - alone_before).as_secs_f64() / IDLE.as_secs_f64();

    let mut took = Vec::with_capacity(writes);
    let mut whole = Vec::with_capacity(writes);
    for write in 0..writes {
        let writer = &fleet[write % 3];
        let url = format!(
            "http://{}/v1/pools/web/endpoints/{}",
            writer.control, a.addr
        );
        let body = format!("{{\"weight\": {}}}", 1 + write % 9);
        let sent = Instant::now();
        let (status, revision) = request(&client, "PATCH", &url, &body).await;
        assert_eq!(status, 200, "write {write} refused");
        let written = Instant::now();
        for proxy in &fleet {
            loop {
                let (_, tag) = request(&client, "GET", &config(proxy), "").await;
                if tag == revision {
                    break;
                }
                assert!(
                    written.elapsed() < Duration::from_secs(10),
                    "write {write} never arrived"
                );
            }
        }
        took.push(written.elapsed());
        whole.push(sent.elapsed());
    }
    took.sort();
    whole.sort();
    println!(
        "fleet of 3 instances, 3-member etcd on loopback, {writes} writes through each in turn:"
    );
    println!(
        "  write answered -> serving on all three: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&took, 0.5).as_secs_f64() * 1000.0,
        quantile(&took, 0.99).as_secs_f64() * 1000.0,
        took.last().unwrap().as_secs_f64() * 1000.0
    );
    println!(
        "  write sent -> serving on all three: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&whole, 0.5).as_secs_f64() * 1000.0,
        quantile(&whole, 0.99).as_secs_f64() * 1000.0,
        whole.last().unwrap().as_secs_f64() * 1000.0
    );
    println!(
        "  idle for {} s: fleet instances used {} of a core; an instance in no fleet {:.3}%",
        IDLE.as_secs(),
        idle.iter()
            .map(|share| format!("{:.3}%", share * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        alone_idle * 100.0
    );
}

fn main() {
    let writes = std::env::var("WRITES")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(100);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(writes));
}
