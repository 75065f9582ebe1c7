use super::*;
use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};

fn balancer(endpoints: Vec<Endpoint>) -> SmoothWeightedRoundRobin {
    let mut balancer = SmoothWeightedRoundRobin::configure("{}").unwrap();
    balancer.set_endpoints(endpoints);
    balancer
}

#[test]
fn equal_weights_rotate_evenly() {
    let _host = TestHost::new();
    let mut rr = balancer(endpoints(3));
    let picks: Vec<_> = (0..6)
        .map(|_| rr.pick(&RequestInfo::default()).unwrap())
        .collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn weights_are_honoured_and_interleaved() {
    let _host = TestHost::new();
    let mut rr = balancer(vec![
        Endpoint::new(0, "a:80").with_weight(5),
        Endpoint::new(1, "b:80").with_weight(1),
        Endpoint::new(2, "c:80").with_weight(1),
    ]);
    let picks: Vec<_> = (0..7)
        .map(|_| rr.pick(&RequestInfo::default()).unwrap())
        .collect();
    // NGINX's documented sequence for weights 5, 1, 1.
    assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(
        pick_counts(&mut rr, 700, &RequestInfo::default()),
        vec![500, 100, 100]
    );
}

#[test]
fn empty_pool_declines() {
    let mut rr = balancer(vec![]);
    assert_eq!(rr.pick(&RequestInfo::default()), None);
}

#[test]
fn rejects_unknown_options() {
    let error = SmoothWeightedRoundRobin::configure(r#"{"speed": 3}"#).unwrap_err();
    assert!(error.contains("speed"), "{error}");
}
