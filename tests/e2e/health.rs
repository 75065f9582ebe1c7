//! Keeping traffic flowing when endpoints fail: passive ejection and
//! readmission, tier failover and return, alerts.

use std::time::Duration;

use crate::support::*;

async fn alerts(proxy: &Switchyard, client: &HttpClient) -> Vec<serde_json::Value> {
    let body: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/alerts")).await.body).unwrap();
    body["alerts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_500s_is_ejected_and_later_readmitted() {
    let plugins = tempfile::tempdir().unwrap();
    let good = [Upstream::start("a").await, Upstream::start("b").await];
    let bad = Upstream::with(
        "bad",
        Behaviour {
            status: 500,
            delay: Duration::ZERO,
        },
    )
    .await;
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         outlier = {{ consecutive_failures = 3, base_ejection_ms = 1500 }}\n\
         endpoints = [{}, {}, {}]\n",
        good[0].endpoint(1),
        good[1].endpoint(1),
        bad.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();

    // Round robin reaches `bad` every third request; three 500s eject it.
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(client.get(&proxy.url("/")).await.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        3,
        "{statuses:?}"
    );
    let pools = pools_now(&proxy, &client).await;
    let ejected = &pools["pools"][0]["endpoints"][2];
    assert_eq!(ejected["eligible"], false, "{ejected:#}");
    assert_eq!(ejected["health"]["ejections"], 1);
    assert!(ejected["health"]["reason"]
        .as_str()
        .unwrap()
        .contains("3 consecutive failures"));
    let hits_at_ejection = bad.hits();
    for _ in 0..20 {
        assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    }
    assert_eq!(
        bad.hits(),
        hits_at_ejection,
        "an ejected endpoint got traffic"
    );

    // After the ejection time it is readmitted.
    wait_for_pools(&proxy, &client, "readmission", |p| {
        p["pools"][0]["endpoints"][2]["eligible"] == true
    })
    .await;
    let alerts = alerts(&proxy, &client).await;
    let messages: Vec<&str> = alerts
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a["severity"] == "P2" && a["message"].as_str().unwrap().contains("ejected")),
        "{messages:?}"
    );
    assert!(alerts.iter().any(|a| a["severity"] == "P4" && a["message"].as_str().unwrap().contains("readmitted")), "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_tier_down_moves_traffic_to_the_backup_tier_and_back() {
    let plugins = tempfile::tempdir().unwrap();
    let primary = Upstream::with(
        "primary",
        Behaviour {
            status: 503,
            delay: Duration::ZERO,
        },
    )
    .await;
    let backup = Upstream::start("backup").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         outlier = {{ consecutive_failures = 2, base_ejection_ms = 1500, max_ejection_percent = 100 }}\n\
         endpoints = [{}, {{ address = \"{}\", tier = 1 }}]\n",
        primary.endpoint(1),
        backup.addr
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    assert_eq!(client.get(&proxy.url("/")).await.status, 503);
    assert_eq!(client.get(&proxy.url("/")).await.status, 503);
    // Two failures ejected the whole primary tier: the backup serves.
    for _ in 0..10 {
        let reply = client.get(&proxy.url("/")).await;
        assert_eq!((reply.status, reply.upstream()), (200, "backup"));
    }
    let pool = &pools_now(&proxy, &client).await["pools"][0];
    assert_eq!(pool["serving_tier"], 1, "{pool:#}");

    // The primary recovers; once readmitted, traffic returns to it.
    primary.set(Behaviour {
        status: 200,
        delay: Duration::ZERO,
    });
    wait_for_pools(&proxy, &client, "back on tier 0", |p| {
        p["pools"][0]["serving_tier"] == 0
    })
    .await;
    for _ in 0..5 {
        assert_eq!(client.get(&proxy.url("/")).await.upstream(), "primary");
    }
    let alerts = alerts(&proxy, &client).await;
    let find = |severity: &str, text: &str| {
        alerts
            .iter()
            .any(|a| a["severity"] == severity && a["message"].as_str().unwrap().contains(text))
    };
    assert!(
        find("P1", "failed over from tier 0 to tier 1"),
        "{alerts:#?}"
    );
    assert!(find("P4", "returned from tier 1 to tier 0"), "{alerts:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_pool_down_is_a_p0_alert_and_panic_mode_keeps_trying() {
    let plugins = tempfile::tempdir().unwrap();
    let dead = [
        Upstream::with(
            "x",
            Behaviour {
                status: 502,
                delay: Duration::ZERO,
            },
        )
        .await,
        Upstream::with(
            "y",
            Behaviour {
                status: 502,
                delay: Duration::ZERO,
            },
        )
        .await,
    ];
    let body = format!(
        "[[pools]]\nname = \"web\"\n\
         outlier = {{ consecutive_failures = 1, base_ejection_ms = 60000, max_ejection_percent = 100 }}\n\
         endpoints = [{}, {}]\n",
        dead[0].endpoint(1),
        dead[1].endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    for _ in 0..4 {
        assert_eq!(client.get(&proxy.url("/")).await.status, 502);
    }
    // Both ejected: rather than refuse, the pool balances over all of them.
    let pool = &pools_now(&proxy, &client).await["pools"][0];
    assert_eq!(pool["panic"], true, "{pool:#}");
    assert_eq!(dead[0].hits() + dead[1].hits(), 4);
    let alerts = alerts(&proxy, &client).await;
    assert!(
        alerts
            .iter()
            .any(|a| a["severity"] == "P0" && a["message"] == "pool `web` has no healthy endpoint"),
        "{alerts:#?}"
    );
}

fn checked_pool(name: &str, health: &str, endpoints: &[String]) -> String {
    format!(
        "[[pools]]\nname = \"{name}\"\nhealth = {{ {health} }}\nendpoints = [{}]\n\n\
         [[routes]]\npath_prefix = \"/{name}\"\npool = \"{name}\"\n\n",
        endpoints.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_is_taken_out_by_active_checks_and_brought_back() {
    let plugins = plugin_dir(&[("http-health", "http-health")]);
    let good = Upstream::start("good").await;
    let hanging = Upstream::start("hanging").await;
    let body = checked_pool(
        "web",
        "plugin = \"http-health\", interval_ms = 100, timeout_ms = 100, rise = 2, fall = 2, \
         config = { path = \"/healthz\" }",
        &[good.endpoint(1), hanging.endpoint(1)],
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "both healthy", |p| {
        p["pools"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["health"]["active"] == "healthy")
    })
    .await;

    hanging.set(Behaviour {
        status: 200,
        delay: Duration::from_secs(10),
    });
    let pools = wait_for_pools(&proxy, &client, "hanging endpoint down", |p| {
        p["pools"][0]["endpoints"][1]["health"]["active"] == "unhealthy"
    })
    .await;
    let reason = pools["pools"][0]["endpoints"][1]["health"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("timed out"), "{reason}");
    for _ in 0..10 {
        assert_eq!(client.get(&proxy.url("/web")).await.upstream(), "good");
    }

    hanging.set(Behaviour {
        status: 200,
        delay: Duration::ZERO,
    });
    wait_for_pools(&proxy, &client, "back up", |p| {
        p["pools"][0]["endpoints"][1]["health"]["active"] == "healthy"
    })
    .await;
    let alerts = alerts(&proxy, &client).await;
    assert!(alerts
        .iter()
        .any(|a| a["severity"] == "P2" && a["message"].as_str().unwrap().contains("is down")));
    assert!(alerts
        .iter()
        .any(|a| a["severity"] == "P4" && a["message"].as_str().unwrap().contains("is up")));
    let plugin = &proxy.plugins(&client).await["http-health"];
    assert_eq!(plugin["world"], "health-check");
    assert_eq!(plugin["faults"], 0, "{plugin:#}");
    assert!(plugin["calls"].as_u64().unwrap() > 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_health_plugin_marks_nothing_down_and_stalls_no_other_check() {
    let plugins = plugin_dir(&[
        ("hostile-health", "hostile-health"),
        ("tcp-health", "tcp-health"),
    ]);
    let hostile_targets = [
        Upstream::start("h0").await,
        Upstream::start("h1").await,
        Upstream::start("h2").await,
    ];
    let other = [Upstream::start("o0").await, Upstream::start("o1").await];
    let mut body = checked_pool(
        "hostile",
        "plugin = \"hostile-health\", interval_ms = 50, timeout_ms = 50, fall = 1",
        &hostile_targets
            .iter()
            .map(|u| u.endpoint(1))
            .collect::<Vec<_>>(),
    );
    body.push_str(&checked_pool(
        "other",
        "plugin = \"tcp-health\", interval_ms = 50, timeout_ms = 50, fall = 2",
        &other.iter().map(|u| u.endpoint(1)).collect::<Vec<_>>(),
    ));
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();

    // The other pool's checks keep working: a dead endpoint there goes down.
    let [o0, o1] = other;
    let o1_address = o1.addr.to_string();
    drop(o1);
    let pools = wait_for_pools(&proxy, &client, "o1 down", |p| {
        p["pools"][1]["endpoints"][1]["health"]["active"] == "unhealthy"
    })
    .await;
    assert_eq!(pools["pools"][1]["endpoints"][1]["address"], o1_address);
    assert_eq!(client.get(&proxy.url("/other")).await.upstream(), "o0");
    drop(o0);

    // Meanwhile the looping and panicking checks were cut off and judged by
    // the native TCP check: every hostile-pool endpoint is up and serving.
    let plugin = proxy
        .wait_for_plugin(&client, "hostile-health", "faults counted", |p| {
            p["faults"].as_u64().unwrap() >= 6
        })
        .await;
    let pools = pools_now(&proxy, &client).await;
    for endpoint in pools["pools"][0]["endpoints"].as_array().unwrap() {
        assert_ne!(endpoint["health"]["active"], "unhealthy", "{endpoint:#}");
        assert_eq!(endpoint["eligible"], true, "{endpoint:#}");
    }
    let reason = pools["pools"][0]["endpoints"][0]["health"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.is_empty() || reason.contains("native check"),
        "{reason}"
    );
    let fault = plugin["last_fault"]["message"].as_str().unwrap();
    assert!(fault.contains("pool `hostile`"), "{fault}");
    let (seen, failures) = client.spread(&proxy.url("/hostile"), 30, 3).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_tcp_check_takes_a_killed_endpoint_out() {
    let plugins = tempfile::tempdir().unwrap();
    let keep = Upstream::start("keep").await;
    let killed = Upstream::start("killed").await;
    let body = checked_pool(
        "web",
        "interval_ms = 50, timeout_ms = 50, fall = 1",
        &[keep.endpoint(1), killed.endpoint(1)],
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    drop(killed);
    let pools = wait_for_pools(&proxy, &client, "killed endpoint down", |p| {
        p["pools"][0]["endpoints"][1]["health"]["active"] == "unhealthy"
    })
    .await;
    let reason = pools["pools"][0]["endpoints"][1]["health"]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("TCP connect"), "{reason}");
    for _ in 0..10 {
        assert_eq!(client.get(&proxy.url("/web")).await.upstream(), "keep");
    }
}
