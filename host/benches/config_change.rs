//! Config changes: how long from an API write to the change serving, and
//! from a saved config file to the reload applied.
//!
//! The real `switchyard` binary with one pool over an upstream in this
//! process. An API change is answered only once it serves, so its time is
//! the round trip of `POST` (add an endpoint) and `DELETE` (remove it)
//! in turn; after each add, requests through the proxy must reach the new
//! endpoint. A file save is the config written beside and renamed over,
//! with one endpoint's weight changed; its time runs until `/v1/pools`
//! shows the new weight (polled every millisecond).
//!
//! `cargo bench -p switchyard --bench config_change` (ROUNDS=N, default 200
//! API changes and 50 saves).

// This benchmark builds no plugin: the plugin helpers go unused.
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::live::{start_proxy, upstream};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn send(client: &HttpClient, method: &str, url: &str, body: &str) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (a, b) = (upstream("a").await, upstream("b").await);
        let plugins = tempfile::tempdir().unwrap();
        let proxy = start_proxy(std::slice::from_ref(&a), plugins.path(), "");
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let endpoints = format!("http://{}/v1/pools/web/endpoints", proxy.control);
        let url = format!("http://{}/", proxy.proxy);

        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            let (status, body) = send(
                &client,
                "POST",
                &endpoints,
                &format!("{{\"address\": \"{}\"}}", b.addr),
            )
            .await;
            adds.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 201, "{body}");
            // Serving: of two requests, the round robin sends one to it.
            let mut answered = Vec::new();
            for _ in 0..2 {
                let (_, name) = send(&client, "GET", &url, "").await;
                answered.push(name);
            }
            assert!(answered.iter().any(|n| n == "b"), "{answered:?}");
            let started = Instant::now();
            let (status, body) =
                send(&client, "DELETE", &format!("{endpoints}/{}", b.addr), "").await;
            removes.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "{body}");
        }

        let pools = format!("http://{}/v1/pools", proxy.control);
        let original = std::fs::read_to_string(&proxy.config).unwrap();
        let mut saves = Vec::new();
        for round in 0..(rounds / 4).max(10) {
            let weight = 2 + round % 2;
            let text = original.replace(
                &format!("{{ address = \"{}\" }}", a.addr),
                &format!("{{ address = \"{}\", weight = {weight} }}", a.addr),
            );
            let temporary = proxy.config.with_extension("toml.new");
            std::fs::write(&temporary, text).unwrap();
            let started = Instant::now();
            std::fs::rename(&temporary, &proxy.config).unwrap();
            loop {
                let (_, body) = send(&client, "GET", &pools, "").await;
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                if json["pools"][0]["endpoints"][0]["weight"] == weight {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(10), "the save was not applied");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            saves.push(started.elapsed().as_secs_f64() * 1e3);
        }
        println!("config changes, one pool, the real binary with 2 workers");
        println!("  API add endpoint → answered and serving   {}", summary(&mut adds));
        println!("  API remove endpoint → answered            {}", summary(&mut removes));
        println!(
            "  file saved → reload applied               {}  (includes the watch's 100 ms debounce)",
            summary(&mut saves)
        );
        drop(proxy);
        drop(a.kill);
        drop(b.kill);
    });
}
