//! Broadcast: one request to every eligible endpoint of a pool, through the
//! control endpoint (`POST /v1/pools/{pool}/broadcast`) and through a route
//! with `broadcast = true`, answered with each endpoint's status.

use std::time::Duration;

use crate::support::*;

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// `[[pools]]` `web` over `upstreams`.
fn pool(upstreams: &[&Upstream]) -> String {
    let endpoints: Vec<String> = upstreams.iter().map(|u| u.endpoint(1)).collect();
    format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
        endpoints.join(", ")
    )
}

/// Stops `upstream` and waits until its port refuses connections.
async fn kill(upstream: &Upstream) {
    upstream.kill();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(upstream.addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} still accepts connections", upstream.addr);
}

/// The answer for `upstream` in a broadcast summary.
fn answer<'a>(summary: &'a serde_json::Value, upstream: &Upstream) -> &'a serde_json::Value {
    let address = upstream.addr.to_string();
    summary["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == address.as_str())
        .unwrap_or_else(|| panic!("no answer from {address} in {summary:#}"))
}

/// Each live upstream saw the request once, as sent.
fn saw_once(upstream: &Upstream, method: &str, target: &str, body: &str) {
    assert_eq!(upstream.hits(), 1, "requests to {}", upstream.addr);
    let seen = upstream.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        seen,
        Seen {
            method: method.into(),
            target: target.into(),
            body: body.into(),
        }
    );
    let headers = upstream.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["x-a"], "1");
    assert!(headers.contains_key("x-forwarded-for"), "{headers:?}");
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_endpoint_broadcasts_to_every_endpoint_and_reports_each() {
    let plugins = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let proxy = Switchyard::start(plugins.path(), &pool(&[&a, &b, &c]));
    kill(&c).await;

    let request = r#"{ "method": "PURGE", "path": "/record/cache/x?y=1",
                       "headers": { "x-a": "1" }, "body": "purge me" }"#;
    let url = proxy.control_url("/v1/pools/web/broadcast");
    let reply = send("POST", &url, &[JSON], request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let summary = json(&reply);
    assert_eq!(summary["pool"], "web");
    assert_eq!(summary["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    for live in [&a, &b] {
        let answer = answer(&summary, live);
        assert_eq!(answer["status"], 200, "{summary:#}");
        assert!(answer.get("error").is_none(), "{summary:#}");
        assert!(answer["elapsed_ms"].is_u64(), "{summary:#}");
        saw_once(live, "PURGE", "/record/cache/x?y=1", "purge me");
    }
    let down = answer(&summary, &c);
    assert!(down.get("status").is_none(), "{summary:#}");
    let error = down["error"].as_str().unwrap();
    assert!(error.contains("connection refused"), "{error}");

    // Without a method, POST; an unknown pool is 404.
    let reply = send("POST", &url, &[JSON], r#"{ "path": "/record/again" }"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        a.last_request.lock().unwrap().clone().unwrap().method,
        "POST"
    );
    let missing = proxy.control_url("/v1/pools/nope/broadcast");
    let reply = send("POST", &missing, &[JSON], r#"{ "path": "/" }"#).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(json(&reply)["error"]["code"], "no_such_pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fields_are_refused_by_name() {
    let plugins = tempfile::tempdir().unwrap();
    let a = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &pool(&[&a]));
    let url = proxy.control_url("/v1/pools/web/broadcast");
    let cases = [
        (r#"{ "method": "PURGE" }"#, "path"),
        (r#"{ "path": "cache/x" }"#, "path"),
        (r#"{ "path": 7 }"#, "path"),
        (r#"{ "path": "/", "method": "PU RGE" }"#, "method"),
        (
            r#"{ "path": "/", "headers": { "x a": "1" } }"#,
            "headers.x a",
        ),
        (r#"{ "path": "/", "headers": { "x-a": 1 } }"#, "headers.x-a"),
        (r#"{ "path": "/", "body": [1] }"#, "body"),
        (r#"{ "path": "/", "timeout": 5 }"#, "timeout"),
    ];
    for (body, field) in cases {
        let reply = send("POST", &url, &[JSON], body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let error = json(&reply);
        assert_eq!(error["error"]["code"], "invalid_body", "{body}: {error:#}");
        assert_eq!(error["error"]["field"], field, "{body}: {error:#}");
    }
    let reply = send("POST", &url, &[], r#"{ "path": "/" }"#).await;
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert_eq!(a.hits(), 0, "nothing refused reached the endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_not_broadcast_and_an_operator_may_with_an_audit_entry() {
    use sha2::Digest as _;
    let plugins = tempfile::tempdir().unwrap();
    let a = Upstream::start("a").await;
    let token = |name: &str, role: &str, secret: &str| {
        format!(
            "[[control.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{:x}\"\n",
            sha2::Sha256::digest(secret.as_bytes())
        )
    };
    let tokens = format!(
        "{}{}",
        token("dashboard", "viewer", "view-secret"),
        token("ops", "operator", "op-secret")
    );
    let proxy = Switchyard::try_start_full(plugins.path(), "", &tokens, "", &pool(&[&a]))
        .unwrap_or_else(|e| panic!("{e}"));
    let url = proxy.control_url("/v1/pools/web/broadcast");
    let request = r#"{ "method": "PURGE", "path": "/cache/x" }"#;

    let viewer = ("authorization", "Bearer view-secret");
    let reply = send("POST", &url, &[JSON, viewer], request).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(json(&reply)["error"]["code"], "forbidden");
    assert_eq!(a.hits(), 0);

    let operator = ("authorization", "Bearer op-secret");
    let reply = send("POST", &url, &[JSON, operator], request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(a.hits(), 1);

    let trail = json(&send("GET", &proxy.control_url("/v1/audit"), &[viewer], "").await);
    let entries: Vec<(String, u64)> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"] == "/v1/pools/web/broadcast")
        .map(|e| {
            (
                e["token"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [("dashboard".to_string(), 403), ("ops".to_string(), 200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_route_answers_200_when_all_answered_and_502_when_one_is_down() {
    let plugins = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let routes = "[[routes]]\npath_prefix = \"/record\"\npool = \"web\"\nbroadcast = true\nmax_body_bytes = 64\n";
    let proxy = Switchyard::start(
        plugins.path(),
        &format!("{}\n{routes}", pool(&[&a, &b, &c])),
    );
    let url = proxy.url("/record/cache/x?y=1");
    let headers = [("x-a", "1")];

    let reply = send("PURGE", &url, &headers, "purge me").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(reply.headers.get("x-switchyard-error").is_none());
    let summary = json(&reply);
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(3), Some(0))
    );
    for live in [&a, &b, &c] {
        assert_eq!(answer(&summary, live)["status"], 200, "{summary:#}");
        saw_once(live, "PURGE", "/record/cache/x?y=1", "purge me");
    }

    kill(&c).await;
    let reply = send("PURGE", &url, &headers, "purge me").await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.headers["x-switchyard-error"], "broadcast");
    let summary = json(&reply);
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(answer(&summary, &c)["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!((a.hits(), b.hits()), (2, 2));

    // A body over the route's limit is refused before anything is sent.
    let reply = send("PURGE", &url, &headers, &"x".repeat(65)).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!((a.hits(), b.hits()), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_at_its_capacity_is_reported_refused_not_waited_for() {
    let plugins = tempfile::tempdir().unwrap();
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(1500),
        },
    )
    .await;
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{{ address = \"{}\", capacity = 1 }}]\n",
            slow.addr
        ),
    );
    let busy = {
        let url = proxy.url("/");
        tokio::spawn(async move { send("GET", &url, &[], "").await })
    };
    while slow.load.now.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let url = proxy.control_url("/v1/pools/web/broadcast");
    let reply = send("POST", &url, &[JSON], r#"{ "path": "/cache/x" }"#).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let summary = json(&reply);
    let error = answer(&summary, &slow)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.starts_with("refused for capacity"), "{error}");
    assert_eq!(summary["failed"], 1);
    assert_eq!(busy.await.unwrap().status, 200);
    assert_eq!(
        slow.hits(),
        1,
        "the broadcast never reached the full endpoint"
    );
}
