use std::sync::Arc;

use super::*;

fn endpoints(count: u32) -> Vec<Arc<Endpoint>> {
    (0..count)
        .map(|id| Arc::new(Endpoint::new(id, &format!("127.0.0.1:{}", 9000 + id), 1, 0).unwrap()))
        .collect()
}

#[derive(Debug)]
struct Faulty;

impl Balancer for Faulty {
    fn pick(&self, _: &Arc<EndpointSet>, _: &mut PickRequest<'_>) -> Result<EndpointId, PickFault> {
        Err(PickFault::Timeout("pick ran past its time budget".into()))
    }
}

fn pick_ids(pool: &Pool, times: usize) -> Vec<EndpointId> {
    let mut headers = http::HeaderMap::new();
    (0..times)
        .map(|_| {
            let mut request = PickRequest {
                info: RequestInfo::default(),
                headers: RequestHeaders::Map(&mut headers),
                placement: crate::engine::Placement::NONE,
            };
            pool.pick(&mut request).unwrap().id
        })
        .collect()
}

#[test]
fn native_round_robin_rotates() {
    let pool = Pool::new("web".into(), endpoints(3), None, None);
    assert_eq!(pick_ids(&pool, 6), vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(pool.fallback_picks(), 0);
}

#[test]
fn a_faulting_balancer_falls_back_and_is_counted() {
    let pool = Pool::new(
        "web".into(),
        endpoints(2),
        Some("bad".into()),
        Some(Arc::new(Faulty)),
    );
    assert_eq!(pick_ids(&pool, 4), vec![0, 1, 0, 1]);
    assert_eq!(pool.fallback_picks(), 4);
}

#[test]
fn empty_pool_gives_none() {
    let pool = Pool::new("empty".into(), vec![], None, None);
    let mut headers = http::HeaderMap::new();
    let mut request = PickRequest {
        info: RequestInfo::default(),
        headers: RequestHeaders::Map(&mut headers),
        placement: crate::engine::Placement::NONE,
    };
    assert!(pool.pick(&mut request).is_none());
}

#[test]
fn first_matching_route_wins() {
    let api = Arc::new(Pool::new("api".into(), endpoints(1), None, None));
    let web = Arc::new(Pool::new("web".into(), endpoints(1), None, None));
    let routes = Arc::new(Routes::new(vec![
        Route {
            host: HostMatch::Exact("api.test".into()),
            path: PathMatch::Prefix("/".into()),
            pool: 0,
            max_body_bytes: 0,
            priority: Priority::default(),
            priority_header: None,
            ..Route::default()
        },
        Route {
            host: HostMatch::Any,
            path: PathMatch::Prefix("/static".into()),
            pool: 0,
            max_body_bytes: 0,
            priority: Priority::default(),
            priority_header: None,
            ..Route::default()
        },
        Route {
            host: HostMatch::Any,
            path: PathMatch::Prefix("/".into()),
            pool: 1,
            max_body_bytes: 0,
            priority: Priority::default(),
            priority_header: None,
            ..Route::default()
        },
    ]));
    let routes = Topology {
        routes,
        pools: vec![api, web],
    };
    assert_eq!(routes.find(Some("API.test"), "/x").unwrap().name, "api");
    assert_eq!(
        routes.find(Some("www.test"), "/static/a.css").unwrap().name,
        "api"
    );
    assert_eq!(routes.find(None, "/index.html").unwrap().name, "web");
}

#[test]
fn stats_track_in_flight_success_and_peak_latency() {
    let endpoint = endpoints(1).pop().unwrap();
    let guard = endpoint.start();
    assert_eq!(endpoint.stats.in_flight(), 1);
    endpoint.stats.record(2_000_000, true);
    assert_eq!(endpoint.stats.snapshot().ewma_latency_us, 2_000);
    // A peak replaces the average at once.
    endpoint.stats.record(9_000_000, false);
    let snapshot = endpoint.stats.snapshot();
    assert_eq!(snapshot.ewma_latency_us, 9_000);
    assert!(snapshot.success_permille < 1_000);
    assert_eq!(snapshot.failures, 1);
    drop(guard);
    assert_eq!(endpoint.stats.in_flight(), 0);
}

#[test]
fn active_checks_take_an_endpoint_down_after_fall_and_back_after_rise() {
    let pool = Pool::new("web".into(), endpoints(3), None, None);
    let (rise, fall) = (2, 3);
    pool.apply_check(1, Health::Unhealthy, "refused", rise, fall);
    pool.apply_check(1, Health::Unhealthy, "refused", rise, fall);
    assert!(
        pool.endpoints().is_eligible(1),
        "down before `fall` failures"
    );
    pool.apply_check(1, Health::Unhealthy, "refused", rise, fall);
    assert!(!pool.endpoints().is_eligible(1));
    assert_eq!(pool.endpoints().all[1].health(), Health::Unhealthy);
    let generation = pool.endpoints().generation;
    pool.apply_check(1, Health::Healthy, "200", rise, fall);
    assert!(!pool.endpoints().is_eligible(1), "up before `rise` passes");
    pool.apply_check(1, Health::Healthy, "200", rise, fall);
    assert!(pool.endpoints().is_eligible(1));
    assert!(
        pool.endpoints().generation > generation,
        "balancers must re-sync"
    );
    assert_eq!(pool.health().endpoints[1].reason, "200");
}

#[test]
fn ejection_respects_the_maximum_share_and_expires() {
    let policy = HealthPolicy {
        outlier: Some(OutlierPolicy {
            consecutive_failures: 2,
            base_ejection: std::time::Duration::from_millis(10),
            max_ejection: std::time::Duration::from_millis(100),
            max_ejection_percent: 50,
            interval: std::time::Duration::from_secs(10),
            min_success_rate: 0.0,
            min_requests: 20,
            uneject_on_active_success: true,
        }),
        ..HealthPolicy::default()
    };
    let pool = Pool::with_health(
        "web".into(),
        endpoints(4),
        None,
        None,
        policy,
        Arc::default(),
    );
    let all = pool.endpoints().all.clone();
    for endpoint in &all {
        pool.record_outcome(endpoint, 1_000, false, &crate::engine::Placement::NONE);
        pool.record_outcome(endpoint, 1_000, false, &crate::engine::Placement::NONE);
    }
    // Two consecutive failures each, but at most half of the pool goes.
    assert_eq!(pool.endpoints().eligible, vec![2, 3]);
    pool.readmit_expired(std::time::Instant::now() + std::time::Duration::from_millis(20));
    assert_eq!(pool.endpoints().eligible, vec![0, 1, 2, 3]);
    assert_eq!(pool.health().endpoints[0].ejections, 1);
}

#[test]
fn a_low_success_rate_ejects_once_per_interval() {
    let interval = std::time::Duration::from_millis(50);
    let policy = HealthPolicy {
        outlier: Some(OutlierPolicy {
            consecutive_failures: 1_000,
            base_ejection: std::time::Duration::from_secs(30),
            max_ejection: std::time::Duration::from_secs(30),
            max_ejection_percent: 50,
            interval,
            min_success_rate: 0.5,
            min_requests: 20,
            uneject_on_active_success: true,
        }),
        ..HealthPolicy::default()
    };
    let pool = Pool::with_health(
        "web".into(),
        endpoints(3),
        None,
        None,
        policy,
        Arc::default(),
    );
    let all = pool.endpoints().all.clone();
    for n in 0..40 {
        // Endpoint 0 fails 3 in 4 (never 1,000 in a row); 1 fails 1 in 4;
        // 2 fails every time but serves too few requests to be judged.
        pool.record_outcome(&all[0], 1_000, n % 4 == 0, &crate::engine::Placement::NONE);
        pool.record_outcome(&all[1], 1_000, n % 4 != 0, &crate::engine::Placement::NONE);
        if n < 10 {
            pool.record_outcome(&all[2], 1_000, false, &crate::engine::Placement::NONE);
        }
    }
    let start = std::time::Instant::now();
    pool.tick(start);
    assert_eq!(
        pool.endpoints().eligible,
        vec![0, 1, 2],
        "judged before the interval"
    );
    pool.tick(start + interval * 2);
    assert_eq!(pool.endpoints().eligible, vec![1, 2]);
    let reason = &pool.health().endpoints[0].reason;
    assert!(
        reason.contains("success rate 25%") && reason.contains("30 of 40 failed"),
        "{reason}"
    );
}

#[test]
fn a_returning_endpoint_ramps_its_weight_in_slow_start() {
    let policy = HealthPolicy {
        slow_start: std::time::Duration::from_secs(10),
        ..HealthPolicy::default()
    };
    let mut heavy = Endpoint::new(0, "127.0.0.1:9000", 100, 0).unwrap();
    heavy.tier = 0;
    let all = vec![Arc::new(heavy), endpoints(2).pop().unwrap()];
    let pool = Pool::with_health("web".into(), all, None, None, policy, Arc::default());
    pool.apply_check(0, Health::Unhealthy, "refused", 1, 1);
    assert!(!pool.endpoints().is_eligible(0));
    pool.apply_check(0, Health::Healthy, "200", 1, 1);
    let set = pool.endpoints();
    assert!(set.is_eligible(0));
    assert_eq!(set.weights[0], 10, "starts at a tenth of its weight");
    let generation = set.generation;
    drop(set);
    pool.tick(std::time::Instant::now() + std::time::Duration::from_secs(5));
    let set = pool.endpoints();
    assert!((48..=52).contains(&set.weights[0]), "{}", set.weights[0]);
    assert!(set.generation > generation);
    drop(set);
    pool.tick(std::time::Instant::now() + std::time::Duration::from_secs(11));
    assert_eq!(pool.endpoints().weights[0], 100);
}

#[test]
fn a_discovered_endpoint_joining_a_serving_pool_ramps_and_a_listed_one_does_not() {
    let policy = HealthPolicy {
        slow_start: std::time::Duration::from_secs(10),
        ..HealthPolicy::default()
    };
    let endpoint = |id: u32, address: &str, source: Source| {
        let mut built = Endpoint::new(id, address, 100, 0).unwrap();
        built.source = source;
        Arc::new(built)
    };
    let serving = Pool::with_health(
        "web".into(),
        vec![endpoint(0, "127.0.0.1:9000", Source::Config)],
        None,
        None,
        policy.clone(),
        Arc::default(),
    );
    let rebuilt = Pool::with_health(
        "web".into(),
        vec![
            endpoint(0, "127.0.0.1:9000", Source::Config),
            endpoint(1, "127.0.0.2:9000", Source::Dns),
            endpoint(2, "127.0.0.3:9000", Source::Config),
        ],
        None,
        None,
        policy,
        Arc::default(),
    );
    rebuilt.inherit_health(&serving);
    let set = rebuilt.endpoints();
    assert_eq!(set.weights.as_slice(), [100, 10, 100]);
}

fn outlier_policy(consecutive_failures: u32) -> HealthPolicy {
    HealthPolicy {
        outlier: Some(OutlierPolicy {
            consecutive_failures,
            base_ejection: std::time::Duration::from_secs(30),
            max_ejection: std::time::Duration::from_secs(300),
            max_ejection_percent: 50,
            interval: std::time::Duration::from_secs(10),
            min_success_rate: 0.0,
            min_requests: 20,
            uneject_on_active_success: true,
        }),
        active_checks: true,
        ..HealthPolicy::default()
    }
}

fn checked_pool(count: u32, policy: HealthPolicy) -> Pool {
    Pool::with_health(
        "web".into(),
        endpoints(count),
        None,
        None,
        policy,
        Arc::default(),
    )
}

#[test]
fn a_passing_active_check_ends_an_outlier_ejection_at_once() {
    let pool = checked_pool(4, outlier_policy(2));
    let all = pool.endpoints().all.clone();
    pool.record_outcome(&all[1], 1_000, false, &crate::engine::Placement::NONE);
    pool.record_outcome(&all[1], 1_000, false, &crate::engine::Placement::NONE);
    assert!(!pool.endpoints().is_eligible(1));
    let generation = pool.endpoints().generation;
    pool.apply_check(1, Health::Healthy, "200 in 1 ms", 2, 2);
    assert!(
        pool.endpoints().is_eligible(1),
        "readmitted by one passing check"
    );
    assert!(pool.endpoints().generation > generation);
    let health = &pool.health().endpoints[1];
    assert!(health.ejected_until.is_none());
    assert!(
        health.reason.contains("active check passed"),
        "{}",
        health.reason
    );
}

#[test]
fn an_ejection_stays_when_unejection_is_off_or_the_recovery_policy_asked_for_it() {
    let mut policy = outlier_policy(2);
    if let Some(outlier) = &mut policy.outlier {
        outlier.uneject_on_active_success = false;
    }
    let pool = checked_pool(4, policy);
    let all = pool.endpoints().all.clone();
    pool.record_outcome(&all[1], 1_000, false, &crate::engine::Placement::NONE);
    pool.record_outcome(&all[1], 1_000, false, &crate::engine::Placement::NONE);
    pool.apply_check(1, Health::Healthy, "200", 2, 2);
    assert!(!pool.endpoints().is_eligible(1));

    let pool = checked_pool(4, outlier_policy(2));
    pool.eject(2, Some(std::time::Duration::from_secs(30)), "breaker open");
    pool.apply_check(2, Health::Healthy, "200", 2, 2);
    assert!(
        !pool.endpoints().is_eligible(2),
        "a breaker's ejection is its own"
    );
}

#[test]
fn endpoints_marked_down_do_not_use_up_the_ejection_share() {
    let pool = checked_pool(4, outlier_policy(2));
    let all = pool.endpoints().all.clone();
    // Two endpoints die: ejected, then marked down by their checks.
    for id in [0, 1] {
        pool.record_outcome(&all[id], 1_000, false, &crate::engine::Placement::NONE);
        pool.record_outcome(&all[id], 1_000, false, &crate::engine::Placement::NONE);
        pool.apply_check(id as u32, Health::Unhealthy, "refused", 2, 1);
    }
    // A third dies: it can still be ejected, though half the pool is.
    pool.record_outcome(&all[2], 1_000, false, &crate::engine::Placement::NONE);
    pool.record_outcome(&all[2], 1_000, false, &crate::engine::Placement::NONE);
    assert!(pool.health().endpoints[2].ejected_until.is_some());
    let set = pool.endpoints();
    // One of four available: panic mode, but not over the ejected third.
    assert!(pool.health().panic);
    assert!(set.is_eligible(3));
}

#[test]
fn a_connect_failure_holds_an_endpoint_out_even_in_panic_mode() {
    let pool = checked_pool(4, outlier_policy(1_000));
    let all = pool.endpoints().all.clone();
    for id in [0, 1, 2] {
        pool.apply_check(id, Health::Unhealthy, "500", 2, 1);
    }
    assert!(pool.health().panic);
    assert_eq!(pool.endpoints().eligible, vec![0, 1, 2, 3]);
    pool.record_connect_failure(&all[1], "connection refused");
    assert_eq!(pool.endpoints().eligible, vec![0, 2, 3]);
    assert!(all[1].is_held());
    // Held until a check passes, however long that takes.
    pool.tick(std::time::Instant::now() + std::time::Duration::from_secs(60));
    assert_eq!(pool.endpoints().eligible, vec![0, 2, 3]);
    pool.apply_check(1, Health::Healthy, "200", 2, 1);
    assert_eq!(pool.endpoints().eligible, vec![0, 1, 2, 3]);
    assert!(!all[1].is_held());
}

#[test]
fn without_active_checks_a_connect_failure_hold_runs_out() {
    let policy = HealthPolicy {
        connect_failure_hold: std::time::Duration::from_millis(500),
        ..HealthPolicy::default()
    };
    let pool = checked_pool(3, policy);
    let all = pool.endpoints().all.clone();
    pool.record_connect_failure(&all[0], "connection refused");
    assert_eq!(pool.endpoints().eligible, vec![1, 2]);
    pool.tick(std::time::Instant::now() + std::time::Duration::from_millis(100));
    assert_eq!(pool.endpoints().eligible, vec![1, 2]);
    pool.tick(std::time::Instant::now() + std::time::Duration::from_millis(600));
    assert_eq!(pool.endpoints().eligible, vec![0, 1, 2]);

    let disabled = HealthPolicy {
        connect_failure_hold: std::time::Duration::ZERO,
        ..HealthPolicy::default()
    };
    let pool = checked_pool(3, disabled);
    pool.record_connect_failure(&pool.endpoints().all[0].clone(), "connection refused");
    assert_eq!(pool.endpoints().eligible, vec![0, 1, 2]);
}

#[test]
fn a_cut_response_is_a_failure_of_its_endpoint() {
    let pool = checked_pool(2, outlier_policy(3));
    let all = pool.endpoints().all.clone();
    pool.record_outcome(&all[0], 1_000, true, &crate::engine::Placement::NONE);
    pool.record_cut(&all[0]);
    let load = all[0].stats.snapshot();
    assert_eq!((load.requests, load.failures, load.cuts), (0, 1, 1));
    pool.record_outcome(&all[0], 1_000, false, &crate::engine::Placement::NONE);
    pool.record_cut(&all[0]);
    assert!(
        !pool.endpoints().is_eligible(0),
        "three failures in a row eject"
    );
}

#[test]
fn grpc_failures_pair_with_the_http_statuses_of_the_grpc_spec() {
    use crate::engine::FailureKind;
    assert_eq!(FailureKind::GrpcStatus(14).http_status(), Some(503));
    assert_eq!(FailureKind::GrpcStatus(4).http_status(), Some(504));
    assert_eq!(FailureKind::GrpcStatus(8).http_status(), Some(429));
    assert_eq!(FailureKind::GrpcStatus(13).http_status(), Some(500));
    assert_eq!(FailureKind::Status(502).http_status(), Some(502));
    assert_eq!(FailureKind::Reset.http_status(), None);
}

#[test]
fn only_pools_with_timed_work_are_queued_for_the_ticker() {
    let queue = Arc::new(TickQueue::default());
    let quiet = Arc::new(Pool::new("quiet".into(), endpoints(2), None, None));
    let busy = Arc::new(Pool::new("busy".into(), endpoints(5), None, None));
    queue.register(&quiet);
    queue.register(&busy);
    assert!(queue.take().is_empty(), "nothing to expire yet");

    let now = std::time::Instant::now;
    let later = |ms| std::time::Instant::now() + std::time::Duration::from_millis(ms);
    assert!(busy.eject(0, Some(std::time::Duration::from_millis(10)), "test"));
    // A hold in the same pool does not queue it twice.
    busy.record_connect_failure(&busy.endpoints().all[2].clone(), "refused");
    let queued = queue.take();
    assert_eq!(queued.len(), 1, "queued once");
    let pool = queued[0].upgrade().unwrap();
    assert_eq!(pool.name, "busy");

    // Nothing has run out: queued again for the next tick.
    pool.tick_queued(now());
    assert_eq!(busy.endpoints().eligible, vec![1, 3, 4]);
    assert_eq!(queue.take().len(), 1);
    // The ejection has run out, the hold has not: still queued.
    pool.tick_queued(later(50));
    assert_eq!(busy.endpoints().eligible, vec![0, 1, 3, 4]);
    assert_eq!(queue.take().len(), 1);
    // Both over: readmitted, and no longer queued.
    pool.tick_queued(later(5_000));
    assert_eq!(busy.endpoints().eligible, vec![0, 1, 2, 3, 4]);
    assert!(queue.take().is_empty());
}

#[test]
fn a_header_names_a_class_only_on_a_route_that_trusts_it() {
    assert_eq!(Priority::parse(b"p0"), Some(Priority::P0));
    assert_eq!(Priority::parse(b" P4 "), Some(Priority::P4));
    assert_eq!(Priority::parse(b"3"), Some(Priority::P3));
    for other in [&b"p5"[..], b"urgent", b"", b"p", b"pp1", b"10"] {
        assert_eq!(Priority::parse(other), None, "{other:?}");
    }
    let header = http::HeaderName::from_static("x-priority");
    let mut route = Route {
        host: HostMatch::Any,
        path: PathMatch::Prefix("/".into()),
        pool: 0,
        max_body_bytes: 0,
        priority: Priority::P3,
        priority_header: None,
        ..Route::default()
    };
    let says_p0 = |_: &http::HeaderName| Some(&b"p0"[..]);
    assert_eq!(route.class(says_p0), Priority::P3, "not trusted");
    route.priority_header = Some(header);
    assert_eq!(route.class(says_p0), Priority::P0);
    assert_eq!(route.class(|_| Some(&b"soon"[..])), Priority::P3);
    assert_eq!(route.class(|_| None), Priority::P3);
}
