//! Endpoints changed through the API: each change is in the config file
//! (comments kept) before it is acknowledged, serves at once, and a stale
//! `If-Match`, a bad body, an invalid result or a read-only file changes
//! nothing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::*;

const JSON: (&str, &str) = ("content-type", "application/json");

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

fn etag(reply: &Reply) -> String {
    reply.headers["etag"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_added_drained_and_removed_through_the_file() {
    let plugins = tempfile::tempdir().unwrap();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = format!(
        "# The web pool: keep this comment.\n[[pools]]\nname = \"web\"\nendpoints = [\n  {}, # the first\n]\n",
        a.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let endpoints = proxy.control_url("/v1/pools/web/endpoints");

    let config = send("GET", &proxy.control_url("/v1/config"), &[], "").await;
    assert_eq!(config.status, 200);
    let first_version = etag(&config);
    assert_eq!(
        format!("\"{}\"", json(&config)["version"].as_str().unwrap()),
        first_version
    );

    // Added: in the file, serving, with a new version.
    let new = format!("{{\"address\": \"{}\", \"weight\": 2}}", b.addr);
    let added = send(
        "POST",
        &endpoints,
        &[JSON, ("if-match", &first_version)],
        &new,
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let second_version = etag(&added);
    assert_ne!(second_version, first_version);
    let file = std::fs::read_to_string(&proxy.config).unwrap();
    assert!(
        file.contains("# The web pool: keep this comment."),
        "{file}"
    );
    assert!(file.contains("# the first"), "{file}");
    assert!(
        file.contains(&format!("address = \"{}\", weight = 2", b.addr)),
        "{file}"
    );
    let (seen, failures) = client.spread(&proxy.url("/"), 30, 3).await;
    assert!(failures.is_empty(), "{failures:?}");
    // The native round robin takes turns, whatever the weights.
    assert_eq!(seen.get("b"), Some(&15), "{seen:?}");

    // Refused, each with its code, and nothing changes.
    let refusals = [
        (
            "POST",
            endpoints.clone(),
            vec![JSON, ("if-match", first_version.as_str())],
            new.clone(),
            412,
            "stale_version",
            Some("If-Match"),
        ),
        (
            "POST",
            endpoints.clone(),
            vec![JSON],
            new.clone(),
            409,
            "endpoint_exists",
            Some("address"),
        ),
        (
            "POST",
            proxy.control_url("/v1/pools/nope/endpoints"),
            vec![JSON],
            new.clone(),
            404,
            "no_such_pool",
            Some("pool"),
        ),
        (
            "POST",
            endpoints.clone(),
            vec![JSON],
            "{\"address\": \"no-port\"}".into(),
            422,
            "invalid_config",
            Some("pools[0].endpoints[2].address"),
        ),
        (
            "POST",
            endpoints.clone(),
            vec![JSON],
            "{\"adress\": \"x:1\"}".into(),
            400,
            "invalid_body",
            None,
        ),
        (
            "POST",
            endpoints.clone(),
            vec![],
            new.clone(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "PATCH",
            format!("{endpoints}/{}", b.addr),
            vec![JSON],
            "{\"weight\": 0}".into(),
            422,
            "invalid_config",
            Some("pools[0].endpoints[1].weight"),
        ),
        (
            "DELETE",
            format!("{endpoints}/10.9.9.9:80"),
            vec![],
            String::new(),
            404,
            "no_such_endpoint",
            Some("address"),
        ),
    ];
    for (method, url, headers, body, status, code, field) in refusals {
        let reply = send(method, &url, &headers, &body).await;
        let answer = json(&reply);
        assert_eq!(reply.status, status, "{method} {url} {body}: {answer:#}");
        assert_eq!(answer["error"]["code"], code, "{answer:#}");
        assert_eq!(answer["error"]["field"].as_str(), field, "{answer:#}");
    }
    let config = send("GET", &proxy.control_url("/v1/config"), &[], "").await;
    assert_eq!(
        etag(&config),
        second_version,
        "a refused change left the file as it was"
    );

    // Drained: no new request reaches it, and it says so.
    let drained = send(
        "PATCH",
        &format!("{endpoints}/{}", b.addr),
        &[JSON],
        "{\"state\": \"draining\"}",
    )
    .await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    let endpoint = &pools["pools"][0]["endpoints"][1];
    assert_eq!(endpoint["state"], "drained", "{endpoint:#}");
    assert_eq!(endpoint["eligible"], false, "{endpoint:#}");
    let (seen, _) = client.spread(&proxy.url("/"), 20, 2).await;
    assert_eq!(seen.get("a"), Some(&20), "{seen:?}");
    assert!(std::fs::read_to_string(&proxy.config)
        .unwrap()
        .contains("state = \"draining\""));

    // Removed.
    let removed = send("DELETE", &format!("{endpoints}/{}", b.addr), &[], "").await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(!std::fs::read_to_string(&proxy.config)
        .unwrap()
        .contains(&b.addr.to_string()));
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    assert_eq!(pools["pools"][0]["endpoints"].as_array().unwrap().len(), 1);

    // The host's own writes are not applied a second time by the file
    // watch: three changes, three applications.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proxy.stderr.lock().unwrap().clone();
    assert_eq!(log.matches("config applied").count(), 3, "{log}");

    // A read-only file: the API refuses to change it.
    let mut permissions = std::fs::metadata(&proxy.config).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&proxy.config, permissions).unwrap();
    let refused = send("POST", &endpoints, &[JSON], &new).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(json(&refused)["error"]["code"], "read_only");
    let pools: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap();
    assert_eq!(pools["pools"][0]["endpoints"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_reads_and_who_changes() {
    let plugins = tempfile::tempdir().unwrap();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let audit = tempfile::tempdir().unwrap();
    let audit_file = audit.path().join("audit.jsonl");
    let tokens = format!(
        "audit_log = \"{}\"\n{}{}",
        audit_file.display(),
        token_entry("dashboard", "viewer", "view-secret"),
        token_entry("deploy-bot", "operator", "op-secret")
    );
    let proxy = Switchyard::try_start_full(
        plugins.path(),
        "",
        &tokens,
        "",
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
            a.endpoint(1)
        ),
    )
    .unwrap_or_else(|log| panic!("{log}"));
    let pools = proxy.control_url("/v1/pools");
    let viewer = ("authorization", "Bearer view-secret");
    let operator = ("authorization", "Bearer op-secret");

    let anonymous = send("GET", &pools, &[], "").await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(json(&anonymous)["error"]["code"], "unauthorized");
    assert!(anonymous.headers.contains_key("www-authenticate"));
    let wrong = send("GET", &pools, &[("authorization", "Bearer guess")], "").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(send("GET", &pools, &[viewer], "").await.status, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let reply = send("GET", &proxy.control_url(open), &[], "").await;
        assert_eq!(reply.status, 200, "{open} must stay open");
    }

    let new = format!("{{\"address\": \"{}\"}}", b.addr);
    let endpoints = proxy.control_url("/v1/pools/web/endpoints");
    let refused = send("POST", &endpoints, &[JSON, viewer], &new).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let message = json(&refused)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("token `dashboard` is a viewer") && message.contains("needs operator"),
        "{message}"
    );
    let reload = send("POST", &proxy.control_url("/v1/reload"), &[viewer], "").await;
    assert_eq!(reload.status, 403);
    let added = send("POST", &endpoints, &[JSON, operator], &new).await;
    assert_eq!(added.status, 201, "{}", added.body);
    // Pools and routes are an admin's.
    let pool = send(
        "POST",
        &proxy.control_url("/v1/pools"),
        &[JSON, operator],
        "{}",
    )
    .await;
    assert_eq!(pool.status, 403, "{}", pool.body);
    assert!(json(&pool)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("needs admin"));

    // Every write is in the audit trail, refused or accepted, with who,
    // from where, what was asked and the versions around it; reads are not.
    let trail = send("GET", &proxy.control_url("/v1/audit"), &[viewer], "").await;
    assert_eq!(trail.status, 200, "{}", trail.body);
    let entries = json(&trail)["entries"].as_array().unwrap().clone();
    let summary: Vec<(String, u64, String)> = entries
        .iter()
        .map(|e| {
            (
                e["token"].as_str().unwrap_or("-").to_string(),
                e["status"].as_u64().unwrap(),
                e["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "dashboard".to_string(),
                403,
                "/v1/pools/web/endpoints".to_string()
            ),
            ("dashboard".to_string(), 403, "/v1/reload".to_string()),
            (
                "deploy-bot".to_string(),
                201,
                "/v1/pools/web/endpoints".to_string()
            ),
            ("deploy-bot".to_string(), 403, "/v1/pools".to_string()),
        ],
        "{entries:#?}"
    );
    assert_eq!(entries[0]["error"], "forbidden");
    assert_eq!(entries[2]["outcome"], "accepted");
    assert_eq!(entries[2]["request"]["address"], b.addr.to_string());
    assert!(entries[2]["from"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_ne!(entries[2]["version_before"], entries[2]["version_after"]);
    // What changed in the file, line by line.
    let changes = &entries[2]["config_changes"];
    assert!(
        changes["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line.as_str().unwrap().contains(&b.addr.to_string())),
        "{changes:#}"
    );
    assert_eq!(
        format!("\"{}\"", entries[2]["version_after"].as_str().unwrap()),
        added.headers["etag"].to_str().unwrap()
    );
    // The file holds the same, one JSON line each, synced before each answer.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2]["token"], "deploy-bot");
    assert_eq!(lines[3]["error"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lifts_a_quarantine_and_reloads_a_plugin() {
    let plugins = plugin_dir(&[("policy", "panicking-balancer")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"policy\" }}\nendpoints = [{}, {}]\n",
        a.endpoint(1),
        b.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    for _ in 0..15 {
        assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    }
    proxy
        .wait_for_plugin(&client, "policy", "quarantined", |p| {
            p["state"] == "quarantined"
        })
        .await;

    let lifted = send(
        "POST",
        &proxy.control_url("/v1/plugins/policy/unquarantine"),
        &[],
        "",
    )
    .await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert_eq!(json(&lifted)["state"], "active");
    let missing = send(
        "POST",
        &proxy.control_url("/v1/plugins/nope/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(json(&missing)["error"]["code"], "no_such_plugin");

    // A bad file: refused with its reason, the serving version stays.
    let serving = proxy.plugins(&client).await["policy"]["hash"].clone();
    replace_plugin(plugins.path(), "policy", b"not a component");
    let refused = send(
        "POST",
        &proxy.control_url("/v1/plugins/policy/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let message = json(&refused)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("plugin `policy`") && message.contains("format"),
        "{message}"
    );
    assert_eq!(proxy.plugins(&client).await["policy"]["hash"], serving);

    // A good one serves.
    replace_plugin(plugins.path(), "policy", &plugin_bytes("round-robin"));
    let reloaded = send(
        "POST",
        &proxy.control_url("/v1/plugins/policy/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let answer = json(&reloaded);
    assert_ne!(answer["plugin"]["hash"], serving, "{answer:#}");
    assert_eq!(answer["plugin"]["state"], "active");
    let faults = answer["plugin"]["faults"].as_u64().unwrap();
    let (seen, failures) = client.spread(&proxy.url("/"), 20, 2).await;
    assert!(
        failures.is_empty() && seen.len() == 2,
        "{seen:?} {failures:?}"
    );
    assert_eq!(
        proxy.plugins(&client).await["policy"]["faults"]
            .as_u64()
            .unwrap(),
        faults
    );
}

/// A burst of API changes, a crash (SIGKILL) in the middle of it, a restart:
/// every change that was answered 2xx is there, and the file loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_change() {
    let plugins = tempfile::tempdir().unwrap();
    let a = Upstream::start("a").await;
    let audit = tempfile::tempdir().unwrap();
    let audit_file = audit.path().join("audit.jsonl");
    let mut proxy = Switchyard::try_start_full(
        plugins.path(),
        "",
        &format!("audit_log = \"{}\"", audit_file.display()),
        "",
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
            a.endpoint(1)
        ),
    )
    .unwrap_or_else(|log| panic!("{log}"));
    let endpoints = proxy.control_url("/v1/pools/web/endpoints");
    let (progress, mut answered) = tokio::sync::watch::channel(0usize);
    let changes = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for n in 0..200u16 {
            let address = format!("127.0.0.1:{}", 30_000 + n);
            let body = format!("{{\"address\": \"{address}\"}}");
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let request = http::Request::post(&endpoints)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            match client.request(request).await {
                Ok(response) if response.status() == 201 => {
                    acknowledged.push(address);
                    let _ = progress.send(acknowledged.len());
                }
                // The process died: this change may or may not be in.
                _ => break,
            }
        }
        acknowledged
    });
    // Somewhere in the burst, while the next change is on its way.
    let crash_after = 10 + (std::process::id() % 140) as usize;
    answered
        .wait_for(|count| *count >= crash_after)
        .await
        .expect("the burst ended early");
    proxy.crash();
    let acknowledged = changes.await.unwrap();
    assert!(acknowledged.len() >= crash_after);
    assert!(acknowledged.len() < 200, "the crash came after the burst");

    let file = std::fs::read_to_string(&proxy.config).unwrap();
    for address in &acknowledged {
        assert!(
            file.contains(address),
            "{address} was acknowledged but is not in the file"
        );
    }
    // And each has its audit entry, synced before it was answered (the
    // last line may be cut by the crash: it is of no acknowledged change).
    let audited: Vec<serde_json::Value> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for address in &acknowledged {
        assert!(
            audited
                .iter()
                .any(|e| e["status"] == 201 && e["request"]["address"] == address.as_str()),
            "{address} was acknowledged but has no audit entry"
        );
    }
    proxy
        .crash_and_restart()
        .unwrap_or_else(|log| panic!("the file does not load:\n{log}"));
    let pools: serde_json::Value = serde_json::from_str(
        &HttpClient::default()
            .get(&proxy.control_url("/v1/pools"))
            .await
            .body,
    )
    .unwrap();
    let serving: Vec<&str> = pools["pools"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    for address in &acknowledged {
        assert!(
            serving.contains(&address.as_str()),
            "{address} is not serving after the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_health_and_plugin_swaps_arrive_as_events_and_resume() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"rr\" }}\n\
             health = {{ interval_ms = 100, timeout_ms = 100, fall = 1 }}\nendpoints = [{}]\n",
            a.endpoint(1)
        ),
    );
    let mut events = EventStream::open(&proxy, None).await;
    // What happened before the client came: the plugin's first load.
    events
        .wait_for("plugin", |d| d["plugin"] == "rr" && d["event"] == "loaded")
        .await;

    let new = format!("{{\"address\": \"{}\"}}", b.addr);
    let added = send(
        "POST",
        &proxy.control_url("/v1/pools/web/endpoints"),
        &[JSON],
        &new,
    )
    .await;
    assert_eq!(added.status, 201);
    let (config_id, _) = events
        .wait_for("config", |d| d["changed"] == serde_json::json!(["web"]))
        .await;

    replace_plugin(plugins.path(), "rr", &plugin_bytes("pin-first"));
    let (swap_id, _) = events
        .wait_for("plugin", |d| d["plugin"] == "rr" && d["event"] == "loaded")
        .await;
    b.kill();
    let (_, transition) = events
        .wait_for("health", |d| {
            d["endpoint"] == b.addr.to_string() && d["to"] == "unhealthy"
        })
        .await;
    assert!(transition["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("TCP connect"));
    let (_, alert) = events
        .wait_for("alert", |d| {
            d["severity"] == "P2" && d["endpoint"] == b.addr.to_string()
        })
        .await;
    assert!(alert["at_unix_ms"].as_u64().unwrap() > 0);

    // A client that lost its connection after the config change resumes:
    // the swap comes first, from the kept events.
    drop(events);
    let mut resumed = EventStream::open(&proxy, Some(config_id)).await;
    let (first, _, _) = resumed.next().await;
    assert_eq!(first, config_id + 1, "the first missed event comes first");
    let mut id = first;
    while id < swap_id {
        id = resumed.next().await.0;
    }
    assert_eq!(id, swap_id, "every missed event, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_routes_are_added_changed_and_removed_through_the_file() {
    let plugins = tempfile::tempdir().unwrap();
    let (a, c) = (Upstream::start("a").await, Upstream::start("c").await);
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}]\n\n[[routes]]\npool = \"web\"\n",
            a.endpoint(1)
        ),
    );
    let client = HttpClient::default();
    let pools = proxy.control_url("/v1/pools");
    let routes = proxy.control_url("/v1/routes");

    let api = format!(
        "{{\"name\": \"api\", \"endpoints\": [{{\"address\": \"{}\"}}], \"outlier\": {{\"consecutive_failures\": 3}}}}",
        c.addr
    );
    let added = send("POST", &pools, &[JSON], &api).await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(json(&added)["applied"]["added"], serde_json::json!(["api"]));
    let again = send("POST", &pools, &[JSON], &api).await;
    assert_eq!(json(&again)["error"]["code"], "pool_exists");
    let table = "[{\"path_prefix\": \"/api\", \"pool\": \"api\"}, {\"pool\": \"web\"}]";
    let replaced = send("PUT", &routes, &[JSON], table).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(client.get(&proxy.url("/api/x")).await.upstream(), "c");
    assert_eq!(client.get(&proxy.url("/x")).await.upstream(), "a");
    let listed = json(&send("GET", &routes, &[], "").await);
    assert_eq!(listed["routes"][0]["pool"], "api", "{listed:#}");

    // A route to no pool is invalid: nothing changes.
    let bad = send("PUT", &routes, &[JSON], "[{\"pool\": \"nope\"}]").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(json(&bad)["error"]["field"], "routes[0].pool");

    let patched = send(
        "PATCH",
        &format!("{pools}/api"),
        &[JSON],
        "{\"panic_threshold\": 0.2}",
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        json(&patched)["applied"]["changed"],
        serde_json::json!(["api"])
    );
    let renamed = send(
        "PATCH",
        &format!("{pools}/api"),
        &[JSON],
        "{\"name\": \"x\"}",
    )
    .await;
    assert_eq!(renamed.status, 400);

    let in_use = send("DELETE", &format!("{pools}/api"), &[], "").await;
    assert_eq!(in_use.status, 409);
    assert_eq!(json(&in_use)["error"]["code"], "pool_in_use");
    let one_route = send("PUT", &routes, &[JSON], "[{\"pool\": \"web\"}]").await;
    assert_eq!(one_route.status, 200, "{}", one_route.body);
    let removed = send("DELETE", &format!("{pools}/api"), &[], "").await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(
        json(&removed)["applied"]["removed"],
        serde_json::json!(["api"])
    );
    assert_eq!(client.get(&proxy.url("/api/x")).await.upstream(), "a");
    let file = std::fs::read_to_string(&proxy.config).unwrap();
    assert!(!file.contains("\"api\""), "{file}");
}

/// Draining under load: a request in flight when the drain begins finishes;
/// no new request reaches the endpoint; it reports `draining`, then
/// `drained` once nothing is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_the_request_in_flight_finish_and_takes_no_new_one() {
    let plugins = tempfile::tempdir().unwrap();
    let fast = Upstream::start("fast").await;
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(1_500),
        },
    )
    .await;
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}, {}]\n",
            fast.endpoint(1),
            slow.endpoint(1)
        ),
    );
    let client = HttpClient::default();
    // Round robin: of two requests at once, one is on the slow endpoint.
    let url = proxy.url("/");
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while slow.hits() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no request reached the slow endpoint"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = send(
        "PATCH",
        &proxy.control_url(&format!("/v1/pools/web/endpoints/{}", slow.addr)),
        &[JSON],
        "{\"state\": \"draining\"}",
    )
    .await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    let state = |pools: &serde_json::Value| pools["pools"][0]["endpoints"][1]["state"].clone();
    assert_eq!(state(&pools_now(&proxy, &client).await), "draining");
    for _ in 0..20 {
        assert_eq!(client.get(&url).await.upstream(), "fast");
    }
    assert_eq!(
        slow.hits(),
        1,
        "a new request reached the draining endpoint"
    );
    for request in in_flight {
        assert_eq!(
            request.await.unwrap().status,
            200,
            "a request in flight failed"
        );
    }
    wait_for_pools(&proxy, &client, "drained", |p| state(p) == "drained").await;
}
