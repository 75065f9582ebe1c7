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
                headers: &mut headers,
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
        headers: &mut headers,
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
