//! DNS discovery, measured against a real DNS server (Debian's dnsmasq,
//! on a loopback port, answering from a hosts file it reads again on
//! SIGHUP, every record with TTL 0 so the pool's refresh bounds decide when
//! a name is asked again).
//!
//! - **change → traffic**: the real binary with one pool discovered from a
//!   name with two A records, each a loopback address of its own with a
//!   server of this process. Per round, a third address is added to the
//!   hosts file and dnsmasq told (SIGHUP); the clock runs until a request
//!   through the proxy (one keep-alive client sending one after another)
//!   is answered by the new address. The address is then taken away again
//!   and the next round waits until `/v1/pools` no longer has it, then a
//!   random part of the refresh interval. With the answer's TTL 0, a name
//!   is asked again every `min_refresh_ms`, set here to `refresh_ms`: a
//!   change lands at a uniformly random point of that interval, so the
//!   expected median is about half of it and the maximum the whole of it,
//!   plus the time to apply the new set. `DISCOVERY_PHASE=aligned` leaves
//!   the random wait out: each change then lands just after a refresh (the
//!   one that removed the last round's address), the worst case, whose
//!   time less the interval is what applying a new set costs.
//! - **1,000 names**: the binary with 1,000 pools, each discovered from a
//!   name of its own (two A records each) refreshed every second; after
//!   every pool has its endpoints, the binary's CPU (utime + stime from
//!   `/proc/<pid>/stat`) over the window, beside the same 1,000 pools with
//!   the same endpoints listed in the config (no discovery), and
//!   dnsmasq's own CPU and the questions it answered (its statistics,
//!   logged on SIGUSR1).
//!
//! `cargo bench -p switchyard --bench discovery` (DISCOVERY_ROUNDS=N,
//! default 40 per refresh; DISCOVERY_PHASE=aligned; DISCOVERY_NAMES=N, default 1000;
//! DISCOVERY_MEASURE_S, default 10; DISCOVERY_CASES, `latency`, `cpu` or
//! both, comma-separated)

// This benchmark builds no plugin: the plugin helpers go unused.
#[allow(dead_code)]
mod common;
// The tests' dnsmasq; this uses part of it.
#[allow(dead_code)]
#[path = "../../tests/e2e/dnsmasq.rs"]
mod dnsmasq;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use dnsmasq::Dnsmasq;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The binary, killed when dropped.
struct Binary {
    child: Child,
    proxy: SocketAddr,
    control: SocketAddr,
}

impl Binary {
    fn start(dir: &Path, body: &str) -> Binary {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let config = dir.join("switchyard.toml");
        std::fs::write(
            &config,
            format!(
                "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\n[control]\nlisten = \"127.0.0.1:0\"\n\n\
                 [plugins]\ndir = \"{}\"\n\n{body}",
                plugins.display()
            ),
        )
        .unwrap();
        let (child, proxy, control) = common::live::run_binary(&config);
        Binary {
            child,
            proxy,
            control,
        }
    }

    fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.child.id())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; the name was the second.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second: `getconf CLK_TCK`, else Linux's 100.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A server on `addr` answering every request with its own address in
/// `x-upstream`.
async fn serve(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(
                    move |_request: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("x-upstream", addr.to_string())
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn get(client: &HttpClient, url: &str) -> (String, String) {
    let response = client
        .request(http::Request::get(url).body(Empty::new()).unwrap())
        .await
        .unwrap();
    let upstream = response
        .headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (upstream, String::from_utf8_lossy(&body).into_owned())
}

fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  min {:.1} ms  max {:.1} ms  ({} samples)",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.0),
        at(1.0),
        samples.len()
    )
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Change → traffic on the new endpoint, at refresh `refresh_ms`.
async fn latency(refresh_ms: u64, rounds: u64, aligned: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = |host: u64| -> SocketAddr { format!("127.0.3.{host}:{port}").parse().unwrap() };
    let mut servers = vec![serve(address(1)).await, serve(address(2)).await];
    let base = "127.0.3.1 api.bench.test\n127.0.3.2 api.bench.test\n";
    let dns = Dnsmasq::start(base, "");
    let binary = Binary::start(
        dir.path(),
        &format!(
            "[[pools]]\nname = \"api\"\n\
             discovery = {{ dns = \"api.bench.test:{port}\", refresh_ms = {refresh_ms}, \
             min_refresh_ms = {refresh_ms}, resolvers = [\"{}\"] }}\n",
            dns.resolver()
        ),
    );
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}/", binary.proxy);
    let pools = format!("http://{}/v1/pools", binary.control);
    let endpoints = |body: &str| -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        json["pools"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["address"].as_str().unwrap().to_string())
            .collect()
    };
    loop {
        if endpoints(&get(&client, &pools).await.1).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut samples = Vec::new();
    let mut requests = 0u64;
    for round in 0..rounds {
        let host = 10 + round % 200;
        let new = address(host);
        servers.push(serve(new).await);
        if !aligned {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..refresh_ms))).await;
        }
        let started = Instant::now();
        dns.set_hosts(&format!("{base}127.0.3.{host} api.bench.test\n"));
        loop {
            requests += 1;
            if get(&client, &url).await.0 == new.to_string() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{new} never served"
            );
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        dns.set_hosts(base);
        loop {
            if !endpoints(&get(&client, &pools).await.1).contains(&new.to_string()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        servers.pop().unwrap().abort();
    }
    println!(
        "  refresh {refresh_ms:>5} ms{}: DNS change → first request on the new endpoint  {}  ({requests} requests)",
        if aligned { ", changed just after a refresh" } else { "" },
        summary(&mut samples)
    );
}

/// CPU of `names` names refreshed every second, beside the same pools
/// listed statically.
fn cpu(names: usize, measure: Duration) {
    let ticks = clock_ticks();
    let address =
        |i: usize, record: usize| format!("127.{}.{}.{}", 10 + record, i / 250, i % 250 + 1);
    let mut hosts = String::new();
    for i in 0..names {
        for record in 0..2 {
            hosts.push_str(&format!("{} n{i}.bench.test\n", address(i, record)));
        }
    }
    let body = |discovery: Option<&str>| {
        let mut text = String::new();
        for i in 0..names {
            match discovery {
                Some(resolver) => text.push_str(&format!(
                    "[[pools]]\nname = \"p{i}\"\ndiscovery = {{ dns = \"n{i}.bench.test:80\", \
                     refresh_ms = 1000, min_refresh_ms = 1000, resolvers = [\"{resolver}\"] }}\n\n"
                )),
                None => text.push_str(&format!(
                    "[[pools]]\nname = \"p{i}\"\nendpoints = [{{ address = \"{}:80\" }}, {{ address = \"{}:80\" }}]\n\n",
                    address(i, 0),
                    address(i, 1)
                )),
            }
        }
        for i in 0..names {
            text.push_str(&format!(
                "[[routes]]\nhost = \"n{i}.bench.test\"\npool = \"p{i}\"\n\n"
            ));
        }
        text
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut results = Vec::new();
    for discovered in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let dns = Dnsmasq::start(&hosts, "");
        let binary = Binary::start(
            dir.path(),
            &body(discovered.then(|| dns.resolver()).as_deref()),
        );
        // Every pool with its two endpoints, then a second of quiet.
        let pools = format!("http://{}/v1/pools?limit=10000", binary.control);
        let started = Instant::now();
        loop {
            let (_, text) = runtime.block_on(get(&client, &pools));
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let full = json["pools"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["endpoints"].as_array().is_some_and(|e| e.len() == 2))
                .count();
            if full == names {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{full} of {names} pools filled"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let filled = started.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let (cpu_before, dns_before, answered_before) =
            (binary.cpu_ticks(), cpu_ticks(dns.pid()), dns.questions());
        let window = Instant::now();
        std::thread::sleep(measure);
        let (cpu_after, dns_after, answered_after) =
            (binary.cpu_ticks(), cpu_ticks(dns.pid()), dns.questions());
        let seconds = window.elapsed().as_secs_f64();
        results.push((
            discovered,
            filled,
            (cpu_after - cpu_before) as f64 / ticks / seconds,
            (dns_after - dns_before) as f64 / ticks / seconds,
            // Less the one SIGUSR1 itself.
            (answered_after - answered_before) as f64 / seconds,
        ));
    }
    println!(
        "  {names} pools, 2 endpoints each, the binary with 2 workers, {:.0} s window:",
        measure.as_secs_f64()
    );
    for (discovered, filled, binary, dns, answered) in &results {
        println!(
            "    {:<34} binary {:>5.1}% of one core   dnsmasq {:>5.1}%   questions {:>7.0}/s   pools filled in {:.1} s",
            if *discovered { "discovered, refreshed every 1 s" } else { "listed in the config (baseline)" },
            binary * 100.0,
            dns * 100.0,
            answered,
            filled.as_secs_f64()
        );
    }
    if let [(_, _, idle, _, _), (_, _, busy, _, answered)] = results[..] {
        if answered > 0.0 {
            println!(
                "    discovery's own cost: {:.1}% of one core, {:.1} µs of CPU per name asked",
                (busy - idle) * 100.0,
                (busy - idle) * 1e6 / answered
            );
        }
    }
}

fn main() {
    let cases = std::env::var("DISCOVERY_CASES").unwrap_or_else(|_| "latency,cpu".into());
    let rounds = env_or("DISCOVERY_ROUNDS", 40);
    let names = env_or("DISCOVERY_NAMES", 1000) as usize;
    let measure = Duration::from_secs(env_or("DISCOVERY_MEASURE_S", 10));
    println!("DNS discovery against dnsmasq on loopback (records with TTL 0)");
    if cases.contains("latency") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let aligned = std::env::var("DISCOVERY_PHASE").is_ok_and(|p| p == "aligned");
        for refresh_ms in [200, 1000] {
            runtime.block_on(latency(refresh_ms, rounds, aligned));
        }
    }
    if cases.contains("cpu") {
        cpu(names, measure);
    }
}
