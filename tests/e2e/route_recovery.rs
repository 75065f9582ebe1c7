//! A route's own recovery policy: `recovery` on a `[[routes]]` entry decides
//! the failed attempts of that route's requests in place of its pool's
//! policy, with its own budget, on both proxy paths; a plugin file that
//! refuses a route's config is refused, and a config whose plugin does
//! fails naming the route's key.

use std::time::Duration;

use crate::support::*;

/// An upstream that answers every request 503.
async fn failing() -> Upstream {
    Upstream::with(
        "failing",
        Behaviour {
            status: 503,
            delay: Duration::ZERO,
        },
    )
    .await
}

/// `(status, upstream)` of `count` GETs to `path`.
async fn gets(
    proxy: &Switchyard,
    client: &HttpClient,
    path: &str,
    count: usize,
) -> Vec<(u16, String)> {
    let mut replies = Vec::new();
    for _ in 0..count {
        let reply = client.get(&proxy.url(path)).await;
        replies.push((reply.status, reply.upstream().to_string()));
    }
    replies
}

/// The `[proxy]` keys of each path: the fast path (the default) and hyper's.
const PATHS: [(&str, &str); 2] = [("fast path", ""), ("hyper", "fast_path = false")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_plugin_policy_retries_where_its_pool_has_none() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let (failing, good) = (failing().await, Upstream::start("good").await);
    // The pool has no recovery policy: only the route's retries.
    let body = format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ enabled = false }}\nendpoints = [{}, {}]\n\n\
         [[routes]]\npath_prefix = \"/retried\"\npool = \"web\"\n\
         recovery = {{ plugin = \"retry-backoff\", config = {{ attempts = 3, base_delay_ms = 1 }} }}\n\n\
         [[routes]]\npool = \"web\"\n",
        failing.endpoint(1),
        good.endpoint(1)
    );
    for (path, keys) in PATHS {
        let proxy = Switchyard::start_with(plugins.path(), keys, &body);
        let client = HttpClient::default();
        let retried = gets(&proxy, &client, "/retried", 12).await;
        assert!(
            retried
                .iter()
                .all(|(status, from)| *status == 200 && from == "good"),
            "{path}: {retried:?}"
        );
        let once = gets(&proxy, &client, "/other", 12).await;
        assert!(
            once.iter().any(|(status, _)| *status == 503),
            "{path}: the pool's own requests are not retried: {once:?}"
        );
        assert!(
            metric(&proxy, "switchyard_retries_total").await > 0,
            "{path}"
        );
        let plugin = &proxy.plugins(&client).await["retry-backoff"];
        assert!(plugin["calls"].as_u64().unwrap() > 0, "{path}: {plugin:#}");
        assert_eq!(plugin["faults"], 0, "{path}: {plugin:#}");
        assert_eq!(plugin["routes"], serde_json::json!(["routes[0]"]), "{path}");
        assert_eq!(plugin["pools"], serde_json::json!([]), "{path}");
        let fast = metric(&proxy, "switchyard_fast_path_requests_total").await;
        if keys.is_empty() {
            assert!(fast >= 24, "{path}: only {fast} took the fast path");
        } else {
            assert_eq!(fast, 0, "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_native_policy_and_budget_replace_its_pools_plugin() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let (failing, good) = (failing().await, Upstream::start("good").await);
    // The pool's plugin never retries (one attempt in all); `/once` retries
    // once elsewhere (RetryOnce); `/spent` has a budget of no retries.
    let body = format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ enabled = false }}\n\
         recovery = {{ plugin = \"retry-backoff\", config = {{ attempts = 1 }} }}\n\
         endpoints = [{}, {}]\n\n\
         [[routes]]\npath_prefix = \"/once\"\npool = \"web\"\nrecovery = {{}}\n\n\
         [[routes]]\npath_prefix = \"/spent\"\npool = \"web\"\n\
         recovery = {{ budget_percent = 0, min_retries_per_second = 0 }}\n\n\
         [[routes]]\npool = \"web\"\n",
        failing.endpoint(1),
        good.endpoint(1)
    );
    for (path, keys) in PATHS {
        let proxy = Switchyard::start_with(plugins.path(), keys, &body);
        let client = HttpClient::default();
        let once = gets(&proxy, &client, "/once", 12).await;
        assert!(
            once.iter()
                .all(|(status, from)| *status == 200 && from == "good"),
            "{path}: {once:?}"
        );
        let plugin = &proxy.plugins(&client).await["retry-backoff"];
        assert_eq!(plugin["calls"], 0, "{path}: the route's policy is native");
        let retries = metric(&proxy, "switchyard_retries_total").await;
        assert!(retries > 0, "{path}");
        let spent = gets(&proxy, &client, "/spent", 12).await;
        assert!(
            spent.iter().any(|(status, _)| *status == 503),
            "{path}: a route without budget retried: {spent:?}"
        );
        assert_eq!(metric(&proxy, "switchyard_retries_total").await, retries);
        // The pool's policy decides the rest: asked, and it gives up.
        let rest = gets(&proxy, &client, "/", 12).await;
        assert!(
            rest.iter().any(|(status, _)| *status == 503),
            "{path}: {rest:?}"
        );
        let plugin = &proxy.plugins(&client).await["retry-backoff"];
        assert!(plugin["calls"].as_u64().unwrap() > 0, "{path}: {plugin:#}");
        assert_eq!(metric(&proxy, "switchyard_retries_total").await, retries);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_refuses_a_routes_config_is_refused_and_the_running_version_serves() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let (failing, good) = (failing().await, Upstream::start("good").await);
    // The pool's config (`{}`) is one the circuit breaker takes too; the
    // route's keys are retry-backoff's alone.
    let pool = format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ enabled = false }}\n\
         recovery = {{ plugin = \"retry-backoff\" }}\nendpoints = [{}, {}]\n\n",
        failing.endpoint(1),
        good.endpoint(1)
    );
    let routes = "[[routes]]\npath_prefix = \"/own\"\npool = \"web\"\n\
                  recovery = { plugin = \"retry-backoff\", config = { attempts = 3, base_delay_ms = 1 } }\n\n\
                  [[routes]]\npool = \"web\"\n";
    let proxy = Switchyard::start(plugins.path(), &format!("{pool}{routes}"));
    let client = HttpClient::default();
    replace_plugin(
        plugins.path(),
        "retry-backoff",
        &plugin_bytes("circuit-breaker"),
    );
    let plugin = proxy
        .wait_for_plugin(&client, "retry-backoff", "the file refused", |p| {
            p["rejected_files"] == 1
        })
        .await;
    let message = plugin["last_rejected"]["message"].as_str().unwrap();
    assert!(
        message.contains("route `routes[0]`: configure refused the config"),
        "{message}"
    );
    assert_eq!(plugin["state"], "active");
    assert_eq!(plugin["reloads"], 0);
    // The running version serves the pool and the route as before.
    for path in ["/own", "/"] {
        let replies = gets(&proxy, &client, path, 8).await;
        assert!(
            replies
                .iter()
                .all(|(status, from)| *status == 200 && from == "good"),
            "{path}: {replies:?}"
        );
    }
    assert_eq!(proxy.plugins(&client).await["retry-backoff"]["faults"], 0);

    // Without the route's policy the same file is taken: the route's use
    // ended with the route table that held it.
    let without = "[[routes]]\npath_prefix = \"/own\"\npool = \"web\"\n\n\
                   [[routes]]\npool = \"web\"\n";
    proxy.rewrite_config(&format!("{pool}{without}"));
    let reply = client
        .post(&proxy.control_url("/v1/reload"), Vec::new())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    proxy
        .wait_for_plugin(&client, "retry-backoff", "the route's use gone", |p| {
            p["routes"] == serde_json::json!([])
        })
        .await;
    let reply = client
        .post(
            &proxy.control_url("/v1/plugins/retry-backoff/reload"),
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let plugin = &proxy.plugins(&client).await["retry-backoff"];
    assert_eq!(plugin["reloads"], 1, "{plugin:#}");
    assert_eq!(plugin["pools"], serde_json::json!(["web"]), "{plugin:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_refuses_a_routes_config_fails_start_and_reload_by_its_key() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let good = Upstream::start("good").await;
    let pool = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n\n",
        good.endpoint(1)
    );
    let refused = "[[routes]]\npath_prefix = \"/a\"\npool = \"web\"\n\n\
                   [[routes]]\npool = \"web\"\n\
                   recovery = { plugin = \"retry-backoff\", config = { attempts = 99 } }\n";
    let stderr = match Switchyard::try_start(plugins.path(), &format!("{pool}{refused}")) {
        Ok(_) => panic!("started with a route config the plugin refuses"),
        Err(stderr) => stderr,
    };
    assert!(
        stderr.contains("routes[1].recovery: plugin `retry-backoff`"),
        "{stderr}"
    );
    assert!(stderr.contains("route `routes[1]`"), "{stderr}");
    assert!(stderr.contains("must be from 1 to 10, got 99"), "{stderr}");

    let accepted = refused.replace("attempts = 99", "attempts = 2");
    let proxy = Switchyard::start(plugins.path(), &format!("{pool}{accepted}"));
    let client = HttpClient::default();
    proxy.rewrite_config(&format!("{pool}{refused}"));
    let reply = client
        .post(&proxy.control_url("/v1/reload"), Vec::new())
        .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("routes[1].recovery"), "{}", reply.body);
    assert!(reply.body.contains("got 99"), "{}", reply.body);
    let plugin = &proxy.plugins(&client).await["retry-backoff"];
    assert_eq!(
        plugin["routes"],
        serde_json::json!(["routes[1]"]),
        "{plugin:#}"
    );
    assert_eq!(client.get(&proxy.url("/")).await.upstream(), "good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_0_1_policy_takes_an_instance_per_route_per_worker() {
    let plugins = plugin_dir(&[("eject", "eject-0-1-0")]);
    let (failing, good) = (failing().await, Upstream::start("good").await);
    // Two routes use it, the pool does not: 2 routes × 2 workers + 1 check.
    let body = format!(
        "[[pools]]\nname = \"web\"\noutlier = {{ enabled = false }}\nendpoints = [{}, {}]\n\n\
         [[routes]]\npath_prefix = \"/a\"\npool = \"web\"\nrecovery = {{ plugin = \"eject\" }}\n\n\
         [[routes]]\npool = \"web\"\nrecovery = {{ plugin = \"eject\" }}\n",
        failing.endpoint(1),
        good.endpoint(1)
    );
    let error = Switchyard::try_start_full(plugins.path(), "", "", "max_instances = 4", &body)
        .err()
        .expect("refused");
    assert!(
        error.contains("plugins.max_instances: 4 is too few for this config")
            && error.contains("`eject` built against contract 0.1")
            && error.contains("raise it to at least 5"),
        "{error}"
    );
    let proxy = Switchyard::try_start_full(plugins.path(), "", "", "max_instances = 5", &body)
        .unwrap_or_else(|stderr| panic!("did not start:\n{stderr}"));
    let client = HttpClient::default();
    // The route's policy ejects the endpoint that answered 503; then only
    // `good` answers.
    let mut replies = gets(&proxy, &client, "/a", 4).await;
    replies.extend(gets(&proxy, &client, "/", 6).await);
    let pools = pools_now(&proxy, &client).await;
    let ejected = &pools["pools"][0]["endpoints"][0];
    assert_eq!(ejected["eligible"], false, "{ejected:#}");
    assert!(
        ejected["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("the recovery policy ejected it"),
        "{ejected:#}"
    );
    assert!(
        replies[replies.len() - 6..]
            .iter()
            .all(|(status, from)| *status == 200 && from == "good"),
        "{replies:?}"
    );
    let plugin = &proxy.plugins(&client).await["eject"];
    assert_eq!(plugin["instances"], "per-pool");
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
}
