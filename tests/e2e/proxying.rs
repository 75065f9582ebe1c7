//! The reverse proxy itself: clean errors, forwarded headers, graceful
//! shutdown, and startup errors that name the culprit.

use std::time::Duration;

use crate::support::*;

fn native_pool(endpoints: &[String]) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
        endpoints.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clean_statuses_with_a_reason() {
    let plugins = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: a port of a listener just closed could be
    // taken meanwhile by another test's process.
    let closed = "127.0.0.1:1";
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_secs(5),
        },
    )
    .await;
    let body = format!(
        "[[pools]]\nname = \"dead\"\nendpoints = [{{ address = \"{closed}\" }}]\n\n\
         [[pools]]\nname = \"slow\"\nendpoints = [{}]\n\n\
         [[pools]]\nname = \"empty\"\n\n\
         [[routes]]\nhost = \"dead.test\"\npool = \"dead\"\n\n\
         [[routes]]\nhost = \"slow.test\"\npool = \"slow\"\n\n\
         [[routes]]\nhost = \"empty.test\"\npool = \"empty\"\n",
        slow.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let cases = [
        ("dead.test", 502, "connect", "cannot connect to endpoint"),
        (
            "slow.test",
            504,
            "timeout",
            "sent no response within 2000 ms",
        ),
        (
            "empty.test",
            503,
            "no_endpoint",
            "no endpoint available in pool `empty`",
        ),
        (
            "other.test",
            404,
            "no_route",
            "no route for host `other.test`",
        ),
    ];
    for (host, status, code, reason) in cases {
        let reply = client.get_with(&proxy.url("/x"), &[("host", host)]).await;
        assert_eq!(reply.status, status, "{host}: {reply:?}");
        assert_eq!(reply.headers["x-switchyard-error"], code, "{host}");
        assert!(
            reply.body.starts_with("switchyard: ") && reply.body.contains(reason),
            "{host}: {}",
            reply.body
        );
    }
    let metrics = client.get(&proxy.control_url("/metrics")).await.body;
    assert!(
        metrics.contains("switchyard_proxy_errors_total{cause=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_adds_client_address_and_drops_hop_by_hop_headers() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&[upstream.endpoint(1)]));
    let client = HttpClient::default();
    let reply = client
        .get_with(
            &proxy.url("/path?q=1"),
            &[
                ("connection", "x-hop"),
                ("x-hop", "secret"),
                ("x-forwarded-for", "10.9.9.9"),
                ("x-app", "kept"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-app"], "kept");
    assert!(
        seen.get("x-hop").is_none(),
        "hop-by-hop header forwarded: {seen:?}"
    );
    assert_eq!(seen["host"], proxy.proxy.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&[upstream.endpoint(1)]));
    // One client connection is served by one worker, whose pool needs one
    // upstream connection for sequential requests, whatever their method.
    let mut client = RawClient::connect(proxy.proxy).await;
    for i in 0..40 {
        let method = if i % 2 == 0 { "GET" } else { "HEAD" };
        let head = client.exchange(method, "/x").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{method} {i}: {head}");
    }
    assert_eq!(upstream.hits(), 40);
    assert_eq!(
        upstream.accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "40 sequential requests should share one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_endpoint_closed_while_idle_is_not_used() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers one request per connection, without `Connection: close`, then
    // closes it: as an endpoint whose keep-alive timeout ran out would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(
        plugins.path(),
        &native_pool(&[format!("{{ address = \"{addr}\" }}")]),
    );
    let client = HttpClient::default();
    for i in 0..10 {
        let reply = client.get(&proxy.url("/x")).await;
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        assert_eq!(reply.body, "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_through_in_both_directions() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&[upstream.endpoint(1)]));
    let client = HttpClient::default();
    let upload = client.post(&proxy.url("/upload"), vec![7u8; 2 << 20]).await;
    assert_eq!(
        (upload.status, upload.body.as_str()),
        (200, "received 2097152")
    );
    let download = client.get(&proxy.url("/download")).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body.len(), BIG_BODY);
    assert!(download.body.bytes().all(|b| b == b'x'));
    // The endpoint is no longer counted as busy once the body has been sent.
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    assert_eq!(pools["pools"][0]["endpoints"][0]["load"]["in_flight"], 0);
    assert_eq!(pools["pools"][0]["endpoints"][0]["load"]["requests"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let plugins = tempfile::tempdir().unwrap();
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(600),
        },
    )
    .await;
    let mut proxy = Switchyard::start(plugins.path(), &native_pool(&[slow.endpoint(1)]));
    let client = HttpClient::default();
    let url = proxy.url("/");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate();
        (status, proxy)
    });
    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status, reply.upstream()), (200, "slow"));
    let (status, proxy) = status.await.unwrap();
    assert!(status.success(), "exit: {status:?}");
    assert!(
        client.try_get_with(&proxy.url("/"), &[]).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_the_pool_and_the_plugin_file() {
    let plugins = plugin_dir(&[("health", "always-healthy"), ("picky", "reject-config")]);
    let missing = Switchyard::try_start(
        plugins.path(),
        "[[pools]]\nname = \"web\"\nbalancer = { plugin = \"nope\" }\nendpoints = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .err()
    .expect("started with a missing plugin");
    assert!(
        missing.contains("pools[0] (`web`).balancer.plugin = \"nope\": no file"),
        "{missing}"
    );
    assert!(missing.contains("nope.wasm"), "{missing}");

    let wrong_world = Switchyard::try_start(
        plugins.path(),
        "[[pools]]\nname = \"web\"\nbalancer = { plugin = \"health\" }\nendpoints = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .err()
    .expect("started with a health check as balancer");
    assert!(
        wrong_world.contains("the file is a health check, but pool `web` uses it as its balancer"),
        "{wrong_world}"
    );

    let refused = Switchyard::try_start(
        plugins.path(),
        "[[pools]]\nname = \"web\"\nbalancer = { plugin = \"picky\", config = { x = 1 } }\nendpoints = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .err()
    .expect("started with a refused config");
    assert!(
        refused.contains("configure refused the config: reject-config refuses every config"),
        "{refused}"
    );

    let bad_config = Switchyard::try_start(
        plugins.path(),
        "[[pools]]\nname = \"web\"\nendpointz = []\n",
    )
    .err()
    .expect("started with an unknown key");
    assert!(
        bad_config.contains("unknown field `endpointz`"),
        "{bad_config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoint_shows_pools_with_live_load_and_metrics() {
    let plugins = plugin_dir(&[("round-robin", "round-robin")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"round-robin\" }}\nendpoints = [{}, {{ address = \"{}\", weight = 2, zone = \"z1\", labels = {{ rack = \"r7\" }} }}]\n",
        a.endpoint(1),
        b.addr
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let (_, failures) = client.spread(&proxy.url("/"), 30, 2).await;
    assert!(failures.is_empty());
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    let pool = &pools["pools"][0];
    assert_eq!(pool["name"], "web");
    assert_eq!(pool["plugin"], "round-robin");
    let endpoints = pool["endpoints"].as_array().unwrap();
    assert_eq!(endpoints[1]["labels"]["rack"], "r7");
    assert_eq!(endpoints[1]["zone"], "z1");
    let requests: u64 = endpoints
        .iter()
        .map(|e| e["load"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 30);
    assert!(endpoints[0]["load"]["ewma_latency_us"].as_u64().unwrap() > 0);

    let plugin = &proxy.plugins(&client).await["round-robin"];
    assert_eq!(plugin["world"], "balancer");
    assert_eq!(plugin["calls"], 30);
    assert_eq!(plugin["faults"], 0);
    assert_eq!(plugin["pools"][0], "web");
    assert_eq!(plugin["hash"].as_str().unwrap().len(), 64);

    let metrics = client.get(&proxy.control_url("/metrics")).await.body;
    assert!(metrics.contains("# TYPE switchyard_requests_total counter"));
    assert!(
        metrics.contains("switchyard_requests_total 30"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_plugin_calls_total{plugin=\"round-robin\"} 30"),
        "{metrics}"
    );
    assert_eq!(client.get(&proxy.control_url("/nope")).await.status, 404);
}
