//! `switchyard demo`: three upstream servers of its own on loopback, and a
//! proxy in front of them balanced by the bundled plugins.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Config;

/// A tiny HTTP/1.1 server that answers every request with `name` and echoes
/// the path; it stops when the task is dropped.
pub async fn upstream(listener: TcpListener, name: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let body = format!("{name} {}\n", request.uri().path());
                let name = name.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("x-upstream", name)
                            .body(Full::new(Bytes::from(body)))
                            .expect("valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run(plugins: PathBuf, port: u16, control_port: u16) -> anyhow::Result<()> {
    let mut addresses = Vec::new();
    for index in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addresses.push(listener.local_addr()?);
        tokio::spawn(upstream(listener, format!("upstream-{index}")));
    }
    let has = |name: &str| plugins.join(format!("{name}.wasm")).is_file();
    let web_balancer = if has("round-robin") {
        r#"balancer = { plugin = "round-robin" }"#
    } else {
        tracing::warn!(
            "{} has no round-robin.wasm: pool `web` uses the native round robin",
            plugins.display()
        );
        ""
    };
    let api_balancer = if has("peak-ewma") {
        r#"balancer = { plugin = "peak-ewma", config = { default_rtt_us = 500 } }"#
    } else {
        ""
    };
    let sticky_balancer = if has("consistent-hash") {
        r#"balancer = { plugin = "consistent-hash", config = { header = "x-user" } }"#
    } else {
        ""
    };
    let endpoints = |weights: [u32; 3]| {
        addresses
            .iter()
            .zip(weights)
            .map(|(address, weight)| format!("{{ address = \"{address}\", weight = {weight} }}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        r#"
[proxy]
listen = "127.0.0.1:{port}"
workers = 2

[control]
listen = "127.0.0.1:{control_port}"

[plugins]
dir = "{dir}"

[[pools]]
name = "web"
{web_balancer}
endpoints = [{web}]

[[pools]]
name = "api"
{api_balancer}
endpoints = [{api}]
max_in_flight = 64
queue = {{ max_len = 256, p4_ms = 50 }}

[[pools]]
name = "sticky"
{sticky_balancer}
endpoints = [{api}]

[[routes]]
name = "api"
path_prefix = "/api"
pool = "api"
priority_header = "x-priority"

[[routes]]
path_prefix = "/sticky"
pool = "sticky"

[[routes]]
pool = "web"
"#,
        dir = plugins.display(),
        web = endpoints([2, 1, 1]),
        api = endpoints([1, 1, 1]),
    );
    let config = Config::parse(&text, "demo config")?;
    let server = crate::Server::bind(config).await?;
    print_guide(&plugins, server.proxy_addr(), server.control_addr());
    server.run(crate::shutdown_signal()).await
}

fn print_guide(plugins: &Path, proxy: std::net::SocketAddr, control: std::net::SocketAddr) {
    let tries = [
        (
            format!("for i in $(seq 8); do curl -s http://{proxy}/; done"),
            "pool `web`: smooth weighted round robin, weights 2:1:1",
        ),
        (
            format!("curl -s http://{proxy}/api/users"),
            "pool `api`: peak-EWMA",
        ),
        (
            format!("curl -s -H 'x-priority: p0' http://{proxy}/api/orders"),
            "class P0: first in `api`'s queue when its 64 slots are taken",
        ),
        (
            format!("curl -s -H 'x-user: ada' http://{proxy}/sticky/cart"),
            "pool `sticky`: consistent hash on x-user",
        ),
        (
            format!("curl -s http://{control}/v1/pools"),
            "endpoints and live load",
        ),
        (
            format!("curl -s http://{control}/v1/plugins"),
            "plugin versions, calls, faults",
        ),
        (format!("curl -s http://{control}/metrics"), "Prometheus"),
    ];
    println!("\nSwitchyard demo: three upstreams behind a proxy.\n\nTry:");
    for (command, what) in tries {
        println!("  {command:<62} # {what}");
    }
    println!("\nThe console, live in a browser: http://{control}/");
    println!(
        "\nSwap a strategy live: cp {dir}/random.wasm {dir}/round-robin.wasm\nCtrl-C stops.\n",
        dir = plugins.display()
    );
}
