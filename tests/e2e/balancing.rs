//! Requests are spread as each bundled strategy promises.

use std::time::Duration;

use crate::support::*;

fn pool(plugin: &str, config: &str, endpoints: &[String]) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"{plugin}\", config = {{ {config} }} }}\nendpoints = [{}]\n",
        endpoints.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_and_honours_weights() {
    let plugins = plugin_dir(&[("round-robin", "round-robin")]);
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let even = Switchyard::start(
        plugins.path(),
        &pool(
            "round-robin",
            "",
            &[a.endpoint(1), b.endpoint(1), c.endpoint(1)],
        ),
    );
    let client = HttpClient::default();
    let (seen, failures) = client.spread(&even.url("/"), 600, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    // Each worker thread rotates its own instance, so each share is exact to
    // within one rotation per worker.
    for name in ["a", "b", "c"] {
        let n = seen[name];
        assert!((198..=202).contains(&n), "{name} got {n} of 600: {seen:?}");
    }
    drop(even);

    let weighted = Switchyard::start(
        plugins.path(),
        &pool("round-robin", "", &[a.endpoint(3), b.endpoint(1)]),
    );
    let (seen, failures) = client.spread(&weighted.url("/"), 800, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        (596..=604).contains(&seen["a"]),
        "weights 3:1 gave {seen:?}"
    );
    assert!(
        (196..=204).contains(&seen["b"]),
        "weights 3:1 gave {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_follows_weights() {
    let plugins = plugin_dir(&[("random", "random")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = Switchyard::start(
        plugins.path(),
        &pool("random", "", &[a.endpoint(4), b.endpoint(1)]),
    );
    let (seen, failures) = HttpClient::default().spread(&proxy.url("/"), 1000, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    // Expected 800:200; six standard deviations is about ±76.
    assert!(
        (724..=876).contains(&seen["a"]),
        "weights 4:1 gave {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_each_key_on_one_endpoint() {
    let plugins = plugin_dir(&[("consistent-hash", "consistent-hash")]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let endpoints: Vec<String> = upstreams.iter().map(|u| u.endpoint(1)).collect();
    let proxy = Switchyard::start(
        plugins.path(),
        &pool("consistent-hash", "header = \"x-user\"", &endpoints),
    );
    let client = HttpClient::default();
    let mut owners = std::collections::HashSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10 {
            let reply = client
                .get_with(&proxy.url("/cart"), &[("x-user", &user)])
                .await;
            assert_eq!(reply.status, 200);
            seen.insert(reply.upstream().to_string());
        }
        assert_eq!(
            seen.len(),
            1,
            "{user} was served by {seen:?}: {:#}\n{}",
            proxy.plugins(&client).await["consistent-hash"],
            proxy.log_tail()
        );
        owners.extend(seen);
    }
    assert_eq!(
        owners.len(),
        3,
        "30 keys should reach all three endpoints: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_aware_strategies_avoid_a_slow_endpoint() {
    let plugins = plugin_dir(&[
        ("least-request", "least-request"),
        ("peak-ewma", "peak-ewma"),
    ]);
    let fast = Upstream::start("fast").await;
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(40),
        },
    )
    .await;
    for plugin in ["least-request", "peak-ewma"] {
        let proxy = Switchyard::start(
            plugins.path(),
            &pool(plugin, "", &[fast.endpoint(1), slow.endpoint(1)]),
        );
        let (seen, failures) = HttpClient::default().spread(&proxy.url("/"), 400, 8).await;
        assert!(failures.is_empty(), "{plugin}: {failures:?}");
        let slow_share = seen.get("slow").copied().unwrap_or(0);
        // Round robin would send 200 to the slow endpoint.
        assert!(
            slow_share < 100,
            "{plugin} sent {slow_share} of 400 to the slow endpoint: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_written_outside_the_workspace_routes_canaries() {
    let plugins = plugin_dir(&[("canary", "canary")]);
    let (a, b, canary) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("canary").await,
    );
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"canary\" }}\n\
         endpoints = [{}, {}, {{ address = \"{}\", labels = {{ track = \"canary\" }} }}]\n",
        a.endpoint(1),
        b.endpoint(1),
        canary.addr
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    for _ in 0..10 {
        assert_eq!(
            client
                .get_with(&proxy.url("/"), &[("x-canary", "1")])
                .await
                .upstream(),
            "canary"
        );
        assert_ne!(client.get(&proxy.url("/")).await.upstream(), "canary");
    }
    let plugin = &proxy.plugins(&client).await["canary"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
}
