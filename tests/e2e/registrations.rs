//! Services registering themselves: a registration serves while it is
//! renewed, lapses (drained, removed, an event) when it is not, is kept
//! beside the config file (never in it) across a restart, and a lapsed one
//! is not brought back.

use std::time::{Duration, Instant};

use crate::discovery::addresses;
use crate::support::*;

const JSON: (&str, &str) = ("content-type", "application/json");

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

async fn register(proxy: &Switchyard, address: &str, ttl_ms: u64) -> serde_json::Value {
    let reply = send(
        "POST",
        &proxy.control_url("/v1/pools/api/registrations"),
        &[JSON],
        &format!(
            r#"{{"address": "{address}", "metadata": {{"version": "2"}}, "ttl_ms": {ttl_ms}}}"#
        ),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    json(&reply)
}

async fn heartbeat(proxy: &Switchyard, id: &str) -> Reply {
    send(
        "PUT",
        &proxy.control_url(&format!("/v1/pools/api/registrations/{id}")),
        &[],
        "",
    )
    .await
}

fn config(static_endpoint: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"api\"\nendpoints = [{}]\n",
        static_endpoint.endpoint(1)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_serves_while_renewed_and_lapses_with_an_event() {
    let plugins = plugin_dir(&[]);
    let (a, r, s) = (
        Upstream::start("a").await,
        Upstream::start("r").await,
        Upstream::start("s").await,
    );
    let proxy = Switchyard::start(plugins.path(), &config(&a));
    let client = HttpClient::default();
    let mut events = EventStream::open(&proxy, None).await;

    let registered = register(&proxy, &r.addr.to_string(), 1_500).await;
    let id = registered["id"].as_str().unwrap().to_string();
    assert_eq!(registered["pool"], "api");
    assert_eq!(registered["ttl_ms"], 1_500);
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(
        addresses(&pools, "api", "registration"),
        [r.addr.to_string()]
    );
    assert_eq!(addresses(&pools, "api", "config"), [a.addr.to_string()]);
    let endpoint = pools["pools"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "registration")
        .unwrap();
    assert_eq!(endpoint["labels"]["version"], "2");
    let by_source =
        |source: &str| format!("switchyard_pool_endpoints{{pool=\"api\",source=\"{source}\"}}");
    assert_eq!(metric(&proxy, &by_source("registration")).await, 1);
    assert_eq!(metric(&proxy, &by_source("config")).await, 1);
    let (seen, failures) = client.spread(&proxy.url("/"), 40, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(seen["r"] > 0, "{seen:?}");
    let list = json(
        &client
            .get(&proxy.control_url("/v1/pools/api/registrations"))
            .await,
    );
    assert_eq!(list["registrations"][0]["id"], id.as_str());
    // Never written into the config file.
    let file = std::fs::read_to_string(&proxy.config).unwrap();
    assert!(!file.contains(&r.addr.to_string()), "{file}");

    // Renewed every 200 ms, it outlives its TTL more than twice over.
    let until = Instant::now() + Duration::from_millis(4_000);
    while Instant::now() < until {
        let reply = heartbeat(&proxy, &id).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(
        addresses(&pools, "api", "registration"),
        [r.addr.to_string()]
    );

    // Not renewed, it lapses: removed, with an event.
    let (_, event) = events
        .wait_for("registration", |d| {
            d["id"] == id.as_str() && d["change"] == "lapsed"
        })
        .await;
    assert_eq!(event["data"]["address"], r.addr.to_string());
    let pools = pools_now(&proxy, &client).await;
    assert!(addresses(&pools, "api", "registration").is_empty());
    let (seen, failures) = client.spread(&proxy.url("/"), 20, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("r"), None, "{seen:?}");
    let late = heartbeat(&proxy, &id).await;
    assert_eq!(late.status, 404, "{}", late.body);
    assert_eq!(json(&late)["error"]["code"], "no_such_registration");

    // Deregistered: gone at once.
    let other = register(&proxy, &s.addr.to_string(), 60_000).await;
    let other_id = other["id"].as_str().unwrap();
    let removed = send(
        "DELETE",
        &proxy.control_url(&format!("/v1/pools/api/registrations/{other_id}")),
        &[],
        "",
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let pools = pools_now(&proxy, &client).await;
    assert!(addresses(&pools, "api", "registration").is_empty());

    // Refusals name the field.
    let bad = send(
        "POST",
        &proxy.control_url("/v1/pools/api/registrations"),
        &[JSON],
        r#"{"address": "10.0.0.1", "ttl_ms": 1000}"#,
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(json(&bad)["error"]["field"], "address");
    let nowhere = send(
        "POST",
        &proxy.control_url("/v1/pools/nope/registrations"),
        &[JSON],
        r#"{"address": "10.0.0.1:80", "ttl_ms": 1000}"#,
    )
    .await;
    assert_eq!(nowhere.status, 404, "{}", nowhere.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_live_registrations_and_drops_lapsed_ones() {
    let plugins = plugin_dir(&[]);
    let (a, live, lapsing) = (
        Upstream::start("a").await,
        Upstream::start("live").await,
        Upstream::start("lapsing").await,
    );
    let mut proxy = Switchyard::start(plugins.path(), &config(&a));
    let client = HttpClient::default();
    let kept = register(&proxy, &live.addr.to_string(), 60_000).await;
    let short = register(&proxy, &lapsing.addr.to_string(), 2_000).await;
    let state = proxy.config.with_file_name("switchyard.registrations.json");
    let stored = std::fs::read_to_string(&state).unwrap();
    assert!(stored.contains(kept["id"].as_str().unwrap()), "{stored}");
    assert!(stored.contains(short["id"].as_str().unwrap()), "{stored}");

    // Down for longer than the short one's TTL.
    proxy.crash();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    proxy.crash_and_restart().unwrap();

    let pools = pools_now(&proxy, &client).await;
    assert_eq!(
        addresses(&pools, "api", "registration"),
        [live.addr.to_string()]
    );
    let list = json(
        &client
            .get(&proxy.control_url("/v1/pools/api/registrations"))
            .await,
    );
    let ids: Vec<&str> = list["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept["id"].as_str().unwrap()]);
    let stored = std::fs::read_to_string(&state).unwrap();
    assert!(!stored.contains(short["id"].as_str().unwrap()), "{stored}");
    let (seen, failures) = client.spread(&proxy.url("/"), 20, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(seen["live"] > 0, "{seen:?}");
    // The live one is still renewed by its id.
    assert_eq!(
        heartbeat(&proxy, kept["id"].as_str().unwrap()).await.status,
        200
    );
}
