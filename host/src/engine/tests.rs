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
    };
    assert!(pool.pick(&mut request).is_none());
}

#[test]
fn first_matching_route_wins() {
    let api = Arc::new(Pool::new("api".into(), endpoints(1), None, None));
    let web = Arc::new(Pool::new("web".into(), endpoints(1), None, None));
    let routes = Routes::new(vec![
        Route {
            host: Some("api.test".into()),
            path_prefix: "/".into(),
            pool: api.clone(),
        },
        Route {
            host: None,
            path_prefix: "/static".into(),
            pool: api,
        },
        Route {
            host: None,
            path_prefix: "/".into(),
            pool: web,
        },
    ]);
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
        pool.record_outcome(endpoint, 1_000, false);
        pool.record_outcome(endpoint, 1_000, false);
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
        pool.record_outcome(&all[0], 1_000, n % 4 == 0);
        pool.record_outcome(&all[1], 1_000, n % 4 != 0);
        if n < 10 {
            pool.record_outcome(&all[2], 1_000, false);
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
