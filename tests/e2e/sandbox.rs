//! Hostile plugins — looping, memory-hungry, panicking, answering outside the
//! set — never reach a client: every request succeeds, the host stays up, and
//! the faults are counted and explained.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_never_fail_a_request() {
    let hostile = [
        "looping-balancer",
        "memory-hog",
        "panicking-balancer",
        "out-of-set",
    ];
    let plugins = plugin_dir(&hostile.map(|name| (name, name)));
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut body = String::new();
    for name in hostile {
        body.push_str(&format!(
            "[[pools]]\nname = \"{name}\"\nbalancer = {{ plugin = \"{name}\" }}\nendpoints = [{}, {}]\n\n\
             [[routes]]\npath_prefix = \"/{name}\"\npool = \"{name}\"\n\n",
            a.endpoint(1),
            b.endpoint(1)
        ));
    }
    let mut proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    for name in hostile {
        let (seen, failures) = client
            .spread(&proxy.url(&format!("/{name}/x")), 60, 3)
            .await;
        assert!(failures.is_empty(), "{name}: {failures:?}");
        // The native round robin served them all, across both endpoints.
        assert_eq!(seen.values().sum::<usize>(), 60, "{name}: {seen:?}");
        assert_eq!(seen.len(), 2, "{name}: {seen:?}");
    }
    assert!(proxy.is_running());
    assert_eq!(client.get(&proxy.control_url("/healthz")).await.status, 200);

    let report = proxy.plugins(&client).await;
    let expect = [
        ("looping-balancer", "ran past its time budget", true),
        ("memory-hog", "memory cap refused to grow its memory", false),
        ("panicking-balancer", "trapped", true),
        (
            "out-of-set",
            "picked endpoint id 4000000, which is not in the eligible set",
            true,
        ),
    ];
    for (name, reason, quarantined) in expect {
        let plugin = &report[name];
        assert!(plugin["faults"].as_u64().unwrap() > 0, "{name}: {plugin:#}");
        let fault = plugin["last_fault"]["message"].as_str().unwrap_or_default();
        assert!(fault.contains(reason), "{name}: `{fault}` lacks `{reason}`");
        assert!(fault.contains(&format!("pool `{name}`")), "{name}: {fault}");
        if quarantined {
            // Every call faults, so the version is set aside after ten; picks
            // already under way on the other worker may add one each.
            assert_eq!(plugin["state"], "quarantined", "{name}: {plugin:#}");
            let faults = plugin["faults"].as_u64().unwrap();
            assert!((10..=12).contains(&faults), "{name}: {plugin:#}");
        }
    }
    let metrics = client.get(&proxy.control_url("/metrics")).await.body;
    assert!(
        metrics.contains("switchyard_plugin_quarantined{plugin=\"looping-balancer\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_pool_fallback_picks_total{pool=\"out-of-set\"} 60"),
        "{metrics}"
    );
    assert!(proxy
        .stderr
        .lock()
        .unwrap()
        .contains("plugin quarantined after 10 consecutive faults"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_lifts_a_quarantine() {
    let plugins = plugin_dir(&[("policy", "panicking-balancer")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"policy\" }}\nendpoints = [{}, {}]\n",
        a.endpoint(1),
        b.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let (_, failures) = client.spread(&proxy.url("/"), 30, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    proxy
        .wait_for_plugin(&client, "policy", "quarantined", |p| {
            p["state"] == "quarantined"
        })
        .await;
    replace_plugin(plugins.path(), "policy", &plugin_bytes("pin-last"));
    proxy
        .wait_for_plugin(&client, "policy", "active again", |p| {
            p["state"] == "active"
        })
        .await;
    for _ in 0..5 {
        assert_eq!(client.get(&proxy.url("/")).await.upstream(), "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_components_load_but_reach_no_environment_files_or_network() {
    // The plugin imports WASI 0.2 and refuses to configure if it can see an
    // environment variable, an argument, a preopened directory, or open a
    // TCP connection to the address it is given: here, a live upstream. Its
    // picks print and wait on a clock, which must not fail a request.
    let plugins = plugin_dir(&[("wasi-sandbox", "wasi-sandbox")]);
    let target = Upstream::start("target").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"wasi-sandbox\", config = {{ connect_to = \"{}\" }} }}\nendpoints = [{}]\n",
        target.addr,
        target.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    for _ in 0..5 {
        assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    }
    let plugin = &proxy.plugins(&client).await["wasi-sandbox"];
    assert_eq!(plugin["state"], "active", "{plugin:#}");
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert_eq!(
        target.hits(),
        5,
        "only the proxied requests reached the upstream"
    );
    // What it printed, a line to stdout and one to stderr per pick, went to
    // its log; waiting on a clock cost its worker nothing.
    assert_eq!(plugin["log_lines"]["written"], 10, "{plugin:#}");
    let log = proxy.log_tail();
    assert!(log.contains("wasi-sandbox picks, on stderr"), "{log}");
}
