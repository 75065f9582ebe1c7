//! Keeping traffic flowing when endpoints fail: passive ejection and
//! readmission, tier failover and return, alerts.

use std::time::{Duration, Instant};

use crate::support::*;

async fn pools(proxy: &Switchyard, client: &HttpClient) -> serde_json::Value {
    serde_json::from_str(&client.get(&proxy.control_url("/v1/pools")).await.body).unwrap()
}

async fn alerts(proxy: &Switchyard, client: &HttpClient) -> Vec<serde_json::Value> {
    let body: serde_json::Value =
        serde_json::from_str(&client.get(&proxy.control_url("/v1/alerts")).await.body).unwrap();
    body["alerts"].as_array().unwrap().clone()
}

/// Waits (up to 30 s) until `/v1/pools` satisfies `check`.
async fn wait_for_pools(
    proxy: &Switchyard,
    client: &HttpClient,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pools = pools(proxy, client).await;
        if check(&pools) {
            return pools;
        }
        assert!(
            Instant::now() < deadline,
            "never reached: {what}; last: {pools:#}\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let pools = pools(&proxy, &client).await;
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
    let pool = &pools(&proxy, &client).await["pools"][0];
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
    let pool = &pools(&proxy, &client).await["pools"][0];
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
