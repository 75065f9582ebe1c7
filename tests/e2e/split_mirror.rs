//! Traffic split by weight across pools (at random, or sticky by the
//! route's hash key), mirroring a sampled share to another pool without
//! touching the primary, and per-route duration histograms.

use std::time::{Duration, Instant};

use crate::support::*;

async fn upstreams(names: &[&str]) -> Vec<Upstream> {
    let mut started = Vec::new();
    for name in names {
        started.push(Upstream::start(name).await);
    }
    started
}

fn keys(fast_path: bool) -> &'static str {
    if fast_path {
        ""
    } else {
        "fast_path = false"
    }
}

async fn split_90_10(fast_path: bool) {
    let ups = upstreams(&["stable", "canary"]).await;
    let body = format!(
        "[[pools]]\nname = \"stable\"\nendpoints = [{}]\n\n\
         [[pools]]\nname = \"canary\"\nendpoints = [{}]\n\n\
         [[routes]]\nname = \"shop\"\n\
         split = [{{ pool = \"stable\", weight = 90 }}, {{ pool = \"canary\", weight = 10 }}]\n",
        ups[0].endpoint(1),
        ups[1].endpoint(1)
    );
    let plugins = plugin_dir(&[]);
    let proxy = Switchyard::start_with(plugins.path(), keys(fast_path), &body);
    let (seen, failures) = HttpClient::default().spread(&proxy.url("/"), 1000, 8).await;
    assert!(failures.is_empty(), "{failures:?}");
    let canary = seen.get("canary").copied().unwrap_or(0);
    // Binomial(1000, 0.1): mean 100, standard deviation 9.5; ±5 of them.
    assert!((52..=148).contains(&canary), "canary took {canary} of 1000");
    assert_eq!(seen.get("stable").copied().unwrap_or(0) + canary, 1000);
    // The named route's durations.
    let count = metric(
        &proxy,
        "switchyard_route_request_duration_seconds_count{route=\"shop\"}",
    )
    .await;
    assert_eq!(count, 1000);
}

#[tokio::test]
async fn a_split_of_90_10_holds_on_the_fast_path() {
    split_90_10(true).await;
}

#[tokio::test]
async fn a_split_of_90_10_holds_on_hyper_s_path() {
    split_90_10(false).await;
}

#[tokio::test]
async fn a_split_with_a_hash_key_keeps_each_user_on_one_pool() {
    let ups = upstreams(&["stable", "canary"]).await;
    let body = format!(
        "[[pools]]\nname = \"stable\"\nendpoints = [{}]\n\n\
         [[pools]]\nname = \"canary\"\nendpoints = [{}]\n\n\
         [[routes]]\nhash_key = {{ header = \"x-user\" }}\n\
         split = [{{ pool = \"stable\", weight = 80 }}, {{ pool = \"canary\", weight = 20 }}]\n",
        ups[0].endpoint(1),
        ups[1].endpoint(1)
    );
    let plugins = plugin_dir(&[]);
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let mut canary_users = 0;
    for user in 0..200 {
        let user = format!("user-{user}");
        let mut answered = Vec::new();
        for _ in 0..3 {
            let reply = client
                .get_with(&proxy.url("/"), &[("x-user", user.as_str())])
                .await;
            assert_eq!(reply.status, 200);
            answered.push(reply.upstream().to_string());
        }
        answered.dedup();
        assert_eq!(answered.len(), 1, "{user} moved: {answered:?}");
        canary_users += usize::from(answered[0] == "canary");
    }
    // Binomial(200, 0.2): mean 40, standard deviation 5.7.
    assert!(
        (12..=68).contains(&canary_users),
        "{canary_users} of 200 users"
    );
}

/// A primary pool and a mirror pool whose upstream takes `mirror_delay`.
async fn mirrored(
    fast_path: bool,
    percent: u32,
    mirror_delay: Duration,
) -> (Upstream, Upstream, Switchyard, tempfile::TempDir) {
    let primary = Upstream::start("primary").await;
    let shadow = Upstream::with(
        "shadow",
        Behaviour {
            status: 200,
            delay: mirror_delay,
        },
    )
    .await;
    let body = format!(
        "[[pools]]\nname = \"primary\"\nendpoints = [{}]\n\n\
         [[pools]]\nname = \"shadow\"\nendpoints = [{}]\n\n\
         [[routes]]\npool = \"primary\"\nmirror = {{ pool = \"shadow\", percent = {percent} }}\n",
        primary.endpoint(1),
        shadow.endpoint(1)
    );
    let plugins = plugin_dir(&[]);
    let proxy = Switchyard::start_with(plugins.path(), keys(fast_path), &body);
    (primary, shadow, proxy, plugins)
}

async fn mirror_sees_its_share(fast_path: bool) {
    let (primary, shadow, proxy, _plugins) = mirrored(fast_path, 50, Duration::ZERO).await;
    let (seen, failures) = HttpClient::default().spread(&proxy.url("/"), 400, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("primary").copied(), Some(400), "{seen:?}");
    assert_eq!(primary.hits(), 400);
    // The copies are sent after the answers: wait for the last.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = metric(
            &proxy,
            "switchyard_mirror_requests_total{pool=\"shadow\",result=\"sent\"}",
        )
        .await;
        if sent > 0 && sent == shadow.hits() {
            break;
        }
        assert!(Instant::now() < deadline, "copies still in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Binomial(400, 0.5): mean 200, standard deviation 10.
    let copies = shadow.hits();
    assert!((150..=250).contains(&copies), "{copies} copies of 400");
}

#[tokio::test]
async fn a_mirror_sees_its_sampled_share_on_the_fast_path() {
    mirror_sees_its_share(true).await;
}

#[tokio::test]
async fn a_mirror_sees_its_sampled_share_on_hyper_s_path() {
    mirror_sees_its_share(false).await;
}

async fn slow_or_dead_mirror_changes_nothing(fast_path: bool) {
    let (primary, shadow, proxy, _plugins) =
        mirrored(fast_path, 100, Duration::from_millis(2000)).await;
    let client = HttpClient::default();
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let sent = Instant::now();
        let reply = client.get(&proxy.url("/")).await;
        slowest = slowest.max(sent.elapsed());
        assert_eq!((reply.status, reply.upstream()), (200, "primary"));
    }
    assert_eq!(primary.hits(), 100);
    // Every copy waits 2 s at the mirror; a primary that waited for one
    // would take as long.
    assert!(
        slowest < Duration::from_millis(1000),
        "a primary request took {slowest:?}"
    );
    // At most 64 copies in flight per worker: the rest were dropped.
    let dropped = metric(
        &proxy,
        "switchyard_mirror_requests_total{pool=\"shadow\",result=\"dropped\"}",
    )
    .await;
    assert!(dropped > 0, "100 copies to a 2 s mirror and none dropped");

    shadow.kill();
    for _ in 0..50 {
        let reply = client.get(&proxy.url("/")).await;
        assert_eq!((reply.status, reply.upstream()), (200, "primary"));
    }
    assert_eq!(primary.hits(), 150);
}

#[tokio::test]
async fn a_slow_or_dead_mirror_leaves_the_primary_alone_on_the_fast_path() {
    slow_or_dead_mirror_changes_nothing(true).await;
}

#[tokio::test]
async fn a_slow_or_dead_mirror_leaves_the_primary_alone_on_hyper_s_path() {
    slow_or_dead_mirror_changes_nothing(false).await;
}

async fn a_failed_primary_is_not_copied(fast_path: bool) {
    let (primary, shadow, proxy, _plugins) = mirrored(fast_path, 100, Duration::ZERO).await;
    primary.set(Behaviour {
        status: 503,
        delay: Duration::ZERO,
    });
    let client = HttpClient::default();
    for _ in 0..20 {
        assert_eq!(client.get(&proxy.url("/")).await.status, 503);
    }
    primary.set(Behaviour {
        status: 200,
        delay: Duration::ZERO,
    });
    assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    // The one served request's copy arrives; none of the failed ones'.
    let deadline = Instant::now() + Duration::from_secs(10);
    while shadow.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the served request was not copied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shadow.hits(), 1);
}

#[tokio::test]
async fn a_failed_primary_is_not_copied_on_the_fast_path() {
    a_failed_primary_is_not_copied(true).await;
}

#[tokio::test]
async fn a_failed_primary_is_not_copied_on_hyper_s_path() {
    a_failed_primary_is_not_copied(false).await;
}
