//! Many pools in one process: a plugin has one instance per worker whatever
//! the number of pools using it, running out of instances is refused when
//! a config or a file is loaded, and a trap in one pool behaves as
//! ARCHITECTURE.md says of the shared-instance model.

use std::fmt::Write as _;

use crate::support::*;

/// `count` pools, each with endpoints `first` and `second` and `balancer`,
/// routed by host `pN.test`.
fn many_pools(count: usize, balancer: &str, first: &str, second: &str) -> String {
    let mut body = String::new();
    for i in 0..count {
        let _ = write!(
            body,
            "[[pools]]\nname = \"p{i}\"\nbalancer = {balancer}\nendpoints = [{first}, {second}]\n\n"
        );
    }
    for i in 0..count {
        let _ = write!(
            body,
            "[[routes]]\nhost = \"p{i}.test\"\npool = \"p{i}\"\n\n"
        );
    }
    body
}

/// 2,000 pools with a plugin on 4 workers: every pool is served by its
/// plugin (pin-last sends all to the second endpoint, where the fallback
/// would alternate), with no fault, from one instance per worker.
#[tokio::test]
async fn two_thousand_pools_are_served_by_their_plugin_from_one_instance_per_worker() {
    let plugins = plugin_dir(&[("pin", "pin-last")]);
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let pools = 2_000;
    let body = many_pools(
        pools,
        "{ plugin = \"pin\" }",
        &first.endpoint(1),
        &second.endpoint(1),
    );
    let proxy = Switchyard::try_start_full(plugins.path(), "workers = 4", "", "", &body)
        .unwrap_or_else(|error| panic!("did not start:\n{error}"));
    let proxy = std::sync::Arc::new(proxy);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let proxy = std::sync::Arc::clone(&proxy);
            tokio::spawn(async move {
                let client = HttpClient::default();
                let mut answered = Vec::new();
                for i in (task..pools).step_by(8) {
                    let host = format!("p{i}.test");
                    let reply = client.get_with(&proxy.url("/"), &[("host", &host)]).await;
                    answered.push((i, reply.status, reply.upstream().to_string()));
                }
                answered
            })
        })
        .collect();
    for task in tasks {
        for (pool, status, upstream) in task.await.unwrap() {
            assert_eq!(status, 200, "pool p{pool}");
            assert_eq!(upstream, "second", "pool p{pool} was placed by its plugin");
        }
    }
    assert_eq!(first.hits(), 0);
    assert_eq!(second.hits(), pools as u64);
    let client = HttpClient::default();
    let plugin = &proxy.plugins(&client).await["pin"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert_eq!(plugin["contract"], "0.2.1", "{plugin:#}");
    assert_eq!(plugin["instances"], "shared", "{plugin:#}");
    assert!(
        plugin["calls"].as_u64().unwrap() >= pools as u64,
        "{plugin:#}"
    );
    // At most one per worker, and the one that checked the pools at start.
    let instances = metric(&proxy, "switchyard_plugin_instances").await;
    assert!((1..=5).contains(&instances), "{instances} instances");
}

/// A config needing more instances than `plugins.max_instances` is refused
/// at start, naming the setting and the figure to raise it to.
#[tokio::test]
async fn too_few_plugin_instances_for_the_config_is_refused_at_start_naming_the_setting() {
    let plugins = plugin_dir(&[("rr", "round-robin"), ("turns", "turns-0-1-1")]);
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let (first, second) = (first.endpoint(1), second.endpoint(1));
    // One instance per worker (4) and one to check pools: 5.
    let error = Switchyard::try_start_full(
        plugins.path(),
        "workers = 4",
        "",
        "max_instances = 4",
        &many_pools(3, "{ plugin = \"rr\" }", &first, &second),
    )
    .err()
    .expect("refused");
    assert!(
        error.contains("`plugins.max_instances`: 4 is too few for this config")
            && error.contains("raise it to at least 5"),
        "{error}"
    );
    // A plugin built against contract 0.1 takes one instance per pool per
    // worker: 3 pools × 2 workers + 1. The refusal says which plugin, and
    // that rebuilding it ends that.
    let error = Switchyard::try_start_full(
        plugins.path(),
        "",
        "",
        "max_instances = 6",
        &many_pools(3, "{ plugin = \"turns\" }", &first, &second),
    )
    .err()
    .expect("refused");
    assert!(
        error.contains("plugins.max_instances: 6 is too few for this config")
            && error.contains("`turns` built against contract 0.1")
            && error.contains("raise it to at least 7"),
        "{error}"
    );
}

/// A contract 0.1 plugin serves (one instance per pool); a file that would
/// take more instances than the host allows is refused when it is loaded,
/// the running version keeps serving, and nothing is quarantined.
#[tokio::test]
async fn a_file_that_would_exceed_the_instances_is_refused_at_load_and_nothing_is_quarantined() {
    let plugins = plugin_dir(&[("policy", "turns-0-1-1")]);
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let body = many_pools(
        2,
        "{ plugin = \"policy\" }",
        &first.endpoint(1),
        &second.endpoint(1),
    );
    let proxy = Switchyard::try_start_full(plugins.path(), "", "", "max_instances = 6", &body)
        .unwrap_or_else(|error| panic!("did not start:\n{error}"));
    let client = HttpClient::default();
    let plugin = &proxy.plugins(&client).await["policy"];
    assert_eq!(plugin["contract"], "0.1.1", "{plugin:#}");
    assert_eq!(plugin["instances"], "per-pool", "{plugin:#}");
    // The 0.1 plugin takes turns per pool, each pool in its own instance.
    for pool in ["p0", "p1"] {
        let host = format!("{pool}.test");
        let mut upstreams = Vec::new();
        for _ in 0..4 {
            let reply = client.get_with(&proxy.url("/"), &[("host", &host)]).await;
            assert_eq!(reply.status, 200);
            upstreams.push(reply.upstream().to_string());
        }
        assert!(upstreams.contains(&"first".to_string()), "{upstreams:?}");
        assert!(upstreams.contains(&"second".to_string()), "{upstreams:?}");
    }
    // 2 pools × 2 workers + 1 fit in 6; pinned to a 0.2 build they need 3.
    replace_plugin(plugins.path(), "policy", &plugin_bytes("pin-last"));
    proxy
        .wait_for_plugin(&client, "policy", "the 0.2 build serving", |p| {
            p["reloads"].as_u64() == Some(1)
        })
        .await;
    // Three more pools through a reload would need 5 × 2 + 1 with the 0.1
    // build: writing it back is refused at load.
    let bigger = many_pools(
        5,
        "{ plugin = \"policy\" }",
        &first.endpoint(1),
        &second.endpoint(1),
    );
    proxy.rewrite_config(&bigger);
    wait_for_pools(&proxy, &client, "five pools", |pools| {
        pools["pools"].as_array().is_some_and(|p| p.len() == 5)
    })
    .await;
    replace_plugin(plugins.path(), "policy", &plugin_bytes("turns-0-1-1"));
    let plugin = proxy
        .wait_for_plugin(&client, "policy", "the 0.1 build refused", |p| {
            p["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("capacity"))
        })
        .await;
    let message = plugin["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("plugins.max_instances: 6 is too few")
            && message.contains("`policy` built against contract 0.1")
            && message.contains("raise it to at least 11"),
        "{message}"
    );
    assert_eq!(plugin["state"], "active", "{plugin:#}");
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    // The 0.2 build still places every request.
    for pool in 0..5 {
        let host = format!("p{pool}.test");
        let reply = client.get_with(&proxy.url("/"), &[("host", &host)]).await;
        assert_eq!((reply.status, reply.upstream()), (200, "second"));
    }
}

/// One worker, two pools on one plugin: a trap while serving `wild` drops
/// the worker's instance, so `calm` takes turns again from the start (its
/// state was in that instance) and is still served by the plugin; the
/// fault is counted once, against `wild`.
#[tokio::test]
async fn a_trap_in_one_pool_restarts_the_other_pools_of_the_instance_as_documented() {
    let plugins = plugin_dir(&[("turns", "panicking-balancer")]);
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let body = format!(
        "[[pools]]\nname = \"calm\"\nbalancer = {{ plugin = \"turns\", config = {{ panic = false }} }}\n\
         endpoints = [{first}, {second}]\n\n\
         [[pools]]\nname = \"wild\"\nbalancer = {{ plugin = \"turns\" }}\nendpoints = [{first}, {second}]\n\n\
         [[routes]]\nhost = \"wild.test\"\npool = \"wild\"\n\n\
         [[routes]]\npool = \"calm\"\n",
        first = first.endpoint(1),
        second = second.endpoint(1),
    );
    let proxy = Switchyard::start_with(plugins.path(), "workers = 1", &body);
    let client = HttpClient::default();
    let calm = |count: usize| {
        let client = client.clone();
        let url = proxy.url("/");
        async move {
            let mut seen = Vec::new();
            for _ in 0..count {
                seen.push(client.get(&url).await.upstream().to_string());
            }
            seen
        }
    };
    assert_eq!(calm(3).await, ["first", "second", "first"]);
    let reply = client
        .get_with(&proxy.url("/"), &[("host", "wild.test")])
        .await;
    assert_eq!(
        reply.status, 200,
        "the fallback serves the pool that trapped"
    );
    // `calm` starts again from its config and endpoints.
    assert_eq!(calm(3).await, ["first", "second", "first"]);
    let plugin = &proxy.plugins(&client).await["turns"];
    assert_eq!(plugin["faults"], 1, "{plugin:#}");
    assert_eq!(plugin["state"], "active", "{plugin:#}");
    let message = plugin["last_fault"]["message"].as_str().unwrap();
    assert!(message.contains("pool `wild`"), "{message}");
}

/// One instance holds the state of every pool using the plugin, so the
/// memory cap bounds them together: pools whose state outgrows it are
/// refused at start, naming the setting, not found out on the request path.
/// (A consistent-hash pool's table of 65,537 slots is 256 KiB.)
#[tokio::test]
async fn pools_whose_state_together_outgrows_the_memory_cap_are_refused_at_start() {
    let plugins = plugin_dir(&[("maglev", "consistent-hash")]);
    let first = Upstream::start("first").await;
    let second = Upstream::start("second").await;
    let (first, second) = (first.endpoint(1), second.endpoint(1));
    let error = Switchyard::try_start_full(
        plugins.path(),
        "",
        "",
        "memory_limit_mib = 8",
        &many_pools(40, "{ plugin = \"maglev\" }", &first, &second),
    )
    .err()
    .expect("refused");
    assert!(
        error.contains("plugins.memory_limit_mib = 8")
            && error.contains("one instance holds the state of every pool"),
        "{error}"
    );
    // Ten of them fit, and serve.
    let proxy = Switchyard::try_start_full(
        plugins.path(),
        "",
        "",
        "memory_limit_mib = 8",
        &many_pools(10, "{ plugin = \"maglev\" }", &first, &second),
    )
    .unwrap_or_else(|error| panic!("did not start:\n{error}"));
    let client = HttpClient::default();
    for pool in 0..10 {
        let host = format!("p{pool}.test");
        let reply = client.get_with(&proxy.url("/"), &[("host", &host)]).await;
        assert_eq!(reply.status, 200);
    }
    let plugin = &proxy.plugins(&client).await["maglev"];
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
}
