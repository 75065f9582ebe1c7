use super::*;

const MINIMAL: &str = r#"
[[pools]]
name = "web"
endpoints = [{ address = "127.0.0.1:8081" }]
"#;

#[test]
fn minimal_config_takes_every_default() {
    let config = Config::parse(MINIMAL, "test").unwrap();
    assert_eq!(config.proxy.listen, DEFAULT_PROXY_LISTEN.parse().unwrap());
    assert_eq!(config.plugins.dir, PathBuf::from("plugins"));
    assert_eq!(config.plugins.cache_dir(), PathBuf::from("plugins/.cache"));
    assert_eq!(config.pools[0].endpoints[0].weight, 1);
    assert!(config.pools[0].balancer.is_none());
}

#[test]
fn balancer_config_becomes_json() {
    let config = Config::parse(
        r#"
[[pools]]
name = "web"
balancer = { plugin = "p2c", config = { choices = 2, header = "x-user" } }
endpoints = [{ address = "127.0.0.1:8081" }]
"#,
        "test",
    )
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&config.pools[0].balancer.as_ref().unwrap().config_json()).unwrap();
    assert_eq!(json["choices"], 2);
    assert_eq!(json["header"], "x-user");
}

#[test]
fn unknown_key_names_key_and_line() {
    let error = Config::parse("[proxy]\nlisten = \"127.0.0.1:1\"\nworkerz = 2\n", "test")
        .unwrap_err()
        .to_string();
    assert!(error.contains("workerz"), "{error}");
    assert!(error.contains("line 3"), "{error}");
}

#[test]
fn every_problem_is_reported_with_its_path_and_line() {
    let text = r#"
[[pools]]
name = "web"
endpoints = [
  { address = "127.0.0.1:8081", weight = 0 },
  { address = "nowhere" },
]

[[routes]]
pool = "api"
"#;
    let ConfigError::Invalid { problems, .. } = Config::parse(text, "test").unwrap_err() else {
        panic!("expected validation problems");
    };
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        vec![
            "line 5: `pools[0].endpoints[0].weight`: must be at least 1",
            "line 6: `pools[0].endpoints[1].address`: `nowhere` is not `host:port`",
            "line 10: `routes[0].pool`: no pool is named `api`",
        ]
    );
}

/// Every file in `examples/invalid-configs/` must fail with the message in
/// the `.expected` file beside it.
#[test]
fn invalid_example_configs_give_their_expected_errors() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid-configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", path.display()));
        let error = Config::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", path.display()))
            .to_string();
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                error.contains(line.trim()),
                "{}: expected `{}` in:\n{error}",
                path.display(),
                line.trim()
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} invalid configs found");
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/switchyard.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.pools.len(), 2);
    assert_eq!(config.routes[0].pool, "api");
}

/// The config block in README.md is valid and shows every section.
#[test]
fn the_readme_config_is_valid() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = &readme[readme
        .find("### Config")
        .expect("README has a Config section")..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let config = Config::parse(block, "README.md").unwrap_or_else(|e| panic!("{e}"));
    let pool = &config.pools[0];
    assert!(pool.health.is_some() && pool.recovery.is_some() && pool.balancer.is_some());
    assert!(config.routes.iter().any(|route| route.recovery.is_some()));
    assert_eq!(pool.endpoints[2].tier, 1);
    assert!(pool.discovery.is_some());
}

#[test]
fn a_discovery_table_takes_its_defaults() {
    let config = Config::parse(
        "[[pools]]\nname = \"api\"\ndiscovery = { dns = \"api.internal:8080\" }\n",
        "<inline>",
    )
    .unwrap();
    let discovery = config.pools[0].discovery.as_ref().unwrap();
    assert_eq!(discovery.record, DnsRecordType::A);
    assert_eq!(discovery.max_refresh(), std::time::Duration::from_secs(30));
    assert_eq!(discovery.min_refresh(), std::time::Duration::from_secs(1));
    assert!(discovery.resolvers.is_empty());
}

#[test]
fn every_route_key_parses() {
    let config = Config::parse(
        r#"
[[pools]]
name = "web"
endpoints = [{ address = "127.0.0.1:8081" }]

[[routes]]
host = "*.example.com"
path_prefix = "/api/"
methods = ["GET", "HEAD"]
headers = [{ name = "x-env", exact = "canary" }, { name = "x-debug", absent = true }]
query = [{ name = "v", regex = "[0-9]+" }, { name = "trace", present = true }]
pool = "web"
request_headers = { add = { "x-a" = "1" }, remove = ["x-b"] }
response_headers = { add = { "x-c" = "2" }, remove = ["server"] }
rewrite_prefix = "/v2/"
hash_key = { cookie = "session" }
request_timeout_ms = 500
retries = false

[[routes]]
path_regex = "/users/[0-9]+"
pool = "web"
hash_key = "path"
"#,
        "test",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let route = &config.routes[0];
    assert_eq!(
        route.methods.as_deref(),
        Some(&["GET".to_string(), "HEAD".into()][..])
    );
    assert_eq!(route.headers[1].absent, Some(true));
    assert_eq!(route.request_headers.add["x-a"], "1");
    assert_eq!(
        route.hash_key,
        Some(HashKeyConfig::Field(HashKeyField {
            header: None,
            cookie: Some("session".into())
        }))
    );
    assert_eq!(route.request_timeout_ms, Some(500));
    assert!(!route.retries);
    assert!(config.routes[1].retries, "retries by default");
    assert_eq!(
        config.routes[1].hash_key,
        Some(HashKeyConfig::Named("path".into()))
    );
}

#[test]
fn route_problems_name_their_keys() {
    let text = r#"
[[pools]]
name = "web"
endpoints = [{ address = "127.0.0.1:8081" }]

[[routes]]
host = "*."
path_prefix = "/a"
pool = "web"
methods = ["get", "PURGE"]
query = [{ name = "v", present = false }]
strip_prefix = true
rewrite_prefix = "v2"
hash_key = { header = "x-user", cookie = "s" }
request_timeout_ms = 0
"#;
    let ConfigError::Invalid { problems, .. } = Config::parse(text, "test").unwrap_err() else {
        panic!("expected validation problems");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].host",
            "routes[0].methods[0]",
            "routes[0].query[0].present",
            "routes[0].rewrite_prefix",
            "routes[0].rewrite_prefix",
            "routes[0].hash_key",
            "routes[0].request_timeout_ms",
        ]
    );
}

#[test]
fn rate_limit_keys_parse_and_default() {
    let text = |limit: &str| {
        format!("{MINIMAL}\n[[routes]]\npool = \"web\"\nrate_limit = {{ {limit} }}\n")
    };
    let limit = |limit: &str| {
        Config::parse(&text(limit), "test").unwrap().routes[0]
            .rate_limit
            .clone()
            .unwrap()
    };
    let plain = limit("per_second = 100");
    assert_eq!(plain.burst, None);
    assert_eq!(plain.key, RateKeyConfig::Route);
    assert_eq!(plain.keys, DEFAULT_RATE_LIMIT_KEYS);
    assert_eq!(
        limit("per_second = 5, key = \"client\"").key,
        RateKeyConfig::Client
    );
    assert_eq!(
        limit("per_second = 5, key = \"header:X-Api-Key\"").key,
        RateKeyConfig::Header(http::HeaderName::from_static("x-api-key"))
    );
    for bad in [
        "per_second = 5, key = \"header:\"",
        "per_second = 5, key = \"ip\"",
        "per_second = 5, rate = 3",
        "burst = 5",
    ] {
        assert!(Config::parse(&text(bad), "test").is_err(), "{bad}");
    }
    let ConfigError::Invalid { problems, .. } =
        Config::parse(&text("per_second = 2000000, burst = 0, keys = 0"), "test").unwrap_err()
    else {
        panic!("expected validation problems");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].rate_limit.per_second",
            "routes[0].rate_limit.burst",
            "routes[0].rate_limit.keys"
        ]
    );
}

#[test]
fn a_routes_recovery_plugin_counts_as_one_more_user() {
    let config = Config::parse(
        r#"
[proxy]
workers = 4

[[pools]]
name = "web"
recovery = { plugin = "retry-backoff" }
endpoints = [{ address = "127.0.0.1:8081" }]

[[routes]]
path_prefix = "/a"
pool = "web"
recovery = { plugin = "retry-backoff", config = { attempts = 2 } }

[[routes]]
pool = "web"
recovery = {}
"#,
        "test",
    )
    .unwrap();
    // Contract 0.2: one instance per worker serves the pool and the route,
    // and one checks; 0.1: one per user per worker, and one checks.
    assert_eq!(config.plugin_instances_needed(|_| false), 4 + 1);
    assert_eq!(config.plugin_instances_needed(|_| true), 2 * 4 + 1);
    assert_eq!(
        config.plugin_keys(),
        [
            ("pools[0].recovery.plugin".to_string(), "retry-backoff"),
            ("routes[0].recovery.plugin".to_string(), "retry-backoff"),
        ]
    );
    let route = &config.routes[1];
    let native = route.recovery.as_ref().unwrap();
    assert!(native.plugin.is_none());
    assert_eq!(native.max_replay_body_bytes, 65536);
}

#[test]
fn a_plugin_may_have_limits_of_its_own_and_a_bad_one_is_named_with_its_line() {
    let text = r#"
[plugins]
memory_limit_mib = 16

[plugins.limits.py-rr]
memory_limit_mib = 64
recycle_at_percent = 80

[plugins.limits.js-retry]
call_timeout_ms = 0
recycle_at_percent = 5

[[pools]]
name = "web"
endpoints = [{ address = "127.0.0.1:8081" }]
"#;
    let ConfigError::Invalid { problems, .. } = Config::parse(text, "test").unwrap_err() else {
        panic!("expected validation problems");
    };
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "line 10: `plugins.limits.js-retry.call_timeout_ms`: must be at least 1",
            "line 11: `plugins.limits.js-retry.recycle_at_percent`: must be from 10 to 100 (100: never recycle), got 5",
        ]
    );
    let good = text.replace(
        "call_timeout_ms = 0\nrecycle_at_percent = 5",
        "call_timeout_ms = 4",
    );
    let config = Config::parse(&good, "test").unwrap();
    let own = config.plugins.limits_of("py-rr");
    assert_eq!(
        (
            own.memory_limit_mib,
            own.call_timeout_ms,
            own.recycle_at_percent
        ),
        (64, DEFAULT_CALL_TIMEOUT_MS, 80)
    );
    assert_eq!(config.plugins.limits_of("js-retry").call_timeout_ms, 4);
    assert_eq!(config.plugins.limits_of("other").memory_limit_mib, 16);
}

#[test]
fn a_plugin_may_have_rollout_settings_and_a_bad_one_is_named_with_its_line() {
    let text = r#"
[plugins.rollout.p2c]
shadow_percent = 5
canary_percent = 40
steps = 4
agreement = "exact"

[plugins.rollout.hash]
shadow_percent = 0
canary_percent = 0
max_cost_ratio = 0.5
max_fault_rate = 2

[[pools]]
name = "web"
endpoints = [{ address = "127.0.0.1:8081" }]
"#;
    let ConfigError::Invalid { problems, .. } = Config::parse(text, "test").unwrap_err() else {
        panic!("expected validation problems");
    };
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "line 10: `plugins.rollout.hash.canary_percent`: a rollout needs a shadow phase or canary steps: shadow_percent or canary_percent above 0",
            "line 12: `plugins.rollout.hash.max_fault_rate`: must be from 0 to 1, got 2",
            "line 11: `plugins.rollout.hash.max_cost_ratio`: must be at least 1, got 0.5",
        ]
    );
    let good = text.replace(
        "canary_percent = 0\nmax_cost_ratio = 0.5\nmax_fault_rate = 2",
        "canary_percent = 10",
    );
    let config = Config::parse(&good, "test").unwrap();
    let p2c = config.plugins.rollout_of("p2c");
    assert_eq!(p2c.agreement, crate::config::Agreement::Exact);
    let shares: Vec<f64> = (1..=4).map(|step| p2c.canary_share(step)).collect();
    assert_eq!(shares, [10.0, 20.0, 30.0, 40.0]);
    assert_eq!(p2c.promote_after_calls, 1000, "the default");
    assert_eq!(config.plugins.rollout_of("other"), Default::default());
}

#[test]
fn a_pool_may_record_its_balancers_picks_and_a_bad_recording_is_named_with_its_line() {
    let text = r#"
[[pools]]
name = "web"
balancer = { plugin = "peak-ewma" }
record = { percent = 1, file = "recordings/web.jsonl" }
endpoints = [{ address = "127.0.0.1:8081" }]

[[pools]]
name = "native"
record = { percent = 0, file = "native.jsonl", max_bytes = 10 }
endpoints = [{ address = "127.0.0.1:8082" }]
"#;
    let ConfigError::Invalid { problems, .. } = Config::parse(text, "test").unwrap_err() else {
        panic!("expected validation problems");
    };
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "line 10: `pools[1].record`: records a balancer plugin's picks, and the pool has none (`balancer = { plugin = ... }`)",
            "line 10: `pools[1].record.percent`: must be above 0 and at most 100, got 0",
            "line 10: `pools[1].record.max_bytes`: must be at least 4096, got 10",
            "line 1: `routes`: with 2 pools, [[routes]] must say which requests go where",
        ]
    );
    let good = text.replace("\n[[pools]]\nname = \"native\"\nrecord = { percent = 0, file = \"native.jsonl\", max_bytes = 10 }\nendpoints = [{ address = \"127.0.0.1:8082\" }]\n", "");
    let config = Config::parse(&good, "test").unwrap();
    let record = config.pools[0].record.as_ref().unwrap();
    assert_eq!(record.max_bytes, crate::config::DEFAULT_RECORD_MAX_BYTES);
    assert_eq!(record.file, std::path::Path::new("recordings/web.jsonl"));
}

#[test]
fn a_cluster_table_is_checked_key_by_key() {
    let text = format!(
        "{MINIMAL}\n[cluster]\netcd = [\"127.0.0.1:2379\", \"https://10.0.0.2:2379\"]\nprefix = \"fleet/\"\nlease_ttl_ms = 1000\nheartbeat_ms = 800\nuser = \"switchyard\"\n"
    );
    let error = Config::parse(&text, "test").unwrap_err().to_string();
    for expected in [
        "line 7: `cluster.etcd[0]`: `127.0.0.1:2379` must be http://host:port",
        "`cluster.etcd[1]`: `https://10.0.0.2:2379` is https: set cluster.tls",
        "line 8: `cluster.prefix`: `fleet/` must start with `/`",
        "line 9: `cluster.lease_ttl_ms`: must be at least 2000, got 1000",
        "line 10: `cluster.heartbeat_ms`: must be from 1 to half of lease_ttl_ms",
        "line 11: `cluster.user`: `user` and `password_file` go together",
    ] {
        assert!(error.contains(expected), "{expected}\nnot in:\n{error}");
    }
    let fine = format!("{MINIMAL}\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n");
    let config = Config::parse(&fine, "test").unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(
        (cluster.prefix.as_str(), cluster.heartbeat_ms),
        ("/switchyard", 1_000)
    );
}
