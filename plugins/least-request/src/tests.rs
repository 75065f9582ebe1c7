use super::*;
use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};
use switchyard_sdk::Load;

fn balancer(config: &str, endpoints: Vec<Endpoint>) -> LeastRequest {
    let mut balancer = LeastRequest::configure(config).unwrap();
    balancer.set_endpoints(endpoints);
    balancer
}

fn in_flight(host: &TestHost, id: EndpointId, in_flight: u32) {
    host.set_load(
        id,
        Load {
            in_flight,
            ..Load::default()
        },
    );
}

#[test]
fn config_defaults_to_two_choices() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    assert_eq!(LeastRequest::configure("{}").unwrap().choice_count, 2);
    let config: Config = switchyard_sdk::config::parse(r#"{"choice_count": 5}"#).unwrap();
    assert_eq!(config.choice_count, 5);
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"choices": 3}"#, "choices"),
        (r#"{"choice_count": "two"}"#, "choice_count"),
        (r#"{"choice_count": -1}"#, "choice_count"),
        (r#"{"choice_count": 1}"#, "choice_count"),
        (r#"{"choice_count": 0}"#, "choice_count"),
        (r#"{"choice_count": 33}"#, "choice_count"),
    ] {
        let error = LeastRequest::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    assert!(LeastRequest::configure("[]").unwrap_err().contains("table"));
    assert!(LeastRequest::configure("{")
        .unwrap_err()
        .contains("not JSON"));
    assert!(LeastRequest::configure(r#"{"choice_count": 32}"#).is_ok());
}

#[test]
fn empty_pool_declines() {
    let _host = TestHost::new();
    let mut lr = balancer("{}", vec![]);
    assert_eq!(lr.pick(&RequestInfo::default()), None);
}

#[test]
fn single_endpoint_is_picked_however_loaded() {
    let host = TestHost::new();
    in_flight(&host, 7, 1_000);
    let mut lr = balancer("{}", vec![Endpoint::new(7, "a:80")]);
    assert_eq!(pick_counts(&mut lr, 50, &RequestInfo::default())[7], 50);
}

#[test]
fn of_two_the_less_loaded_always_wins() {
    let host = TestHost::new();
    in_flight(&host, 0, 5);
    in_flight(&host, 1, 1);
    let mut lr = balancer("{}", endpoints(2));
    assert_eq!(
        pick_counts(&mut lr, 1_000, &RequestInfo::default()),
        vec![0, 1_000]
    );
    // Load changes are seen on the very next pick.
    in_flight(&host, 0, 0);
    assert_eq!(
        pick_counts(&mut lr, 1_000, &RequestInfo::default()),
        vec![1_000]
    );
}

#[test]
fn unknown_load_counts_as_idle() {
    let host = TestHost::new();
    in_flight(&host, 0, 3);
    // Endpoint 1 has no load at the host.
    let mut lr = balancer("{}", endpoints(2));
    assert_eq!(
        pick_counts(&mut lr, 500, &RequestInfo::default()),
        vec![0, 500]
    );
}

#[test]
fn load_is_divided_by_weight() {
    let host = TestHost::new();
    let pool = vec![
        Endpoint::new(0, "a:80").with_weight(3),
        Endpoint::new(1, "b:80"),
    ];
    // (5 + 1) / 3 = 2 beats (2 + 1) / 1 = 3.
    in_flight(&host, 0, 5);
    in_flight(&host, 1, 2);
    let mut lr = balancer("{}", pool);
    assert_eq!(
        pick_counts(&mut lr, 500, &RequestInfo::default()),
        vec![500]
    );
    // (9 + 1) / 3 = 3.33 loses to (2 + 1) / 1 = 3.
    in_flight(&host, 0, 9);
    assert_eq!(
        pick_counts(&mut lr, 500, &RequestInfo::default()),
        vec![0, 500]
    );
}

#[test]
fn huge_loads_and_weights_do_not_overflow() {
    let host = TestHost::new();
    let pool = vec![
        Endpoint::new(0, "a:80").with_weight(u32::MAX),
        Endpoint::new(1, "b:80").with_weight(u32::MAX - 1),
    ];
    in_flight(&host, 0, u32::MAX);
    in_flight(&host, 1, u32::MAX);
    let mut lr = balancer("{}", pool);
    // Same load, endpoint 0 is heavier.
    assert_eq!(
        pick_counts(&mut lr, 100, &RequestInfo::default()),
        vec![100]
    );
}

#[test]
fn two_choices_follow_the_p2c_distribution() {
    // Endpoint i has i requests in flight. With two distinct samples of ten,
    // i wins when it is sampled with a busier endpoint:
    // P(i) = 2 (9 - i) / 90.
    let host = TestHost::new();
    for id in 0..10 {
        in_flight(&host, id, id);
    }
    let mut lr = balancer("{}", endpoints(10));
    let picks = 90_000;
    let counts = pick_counts(&mut lr, picks, &RequestInfo::default());
    assert_eq!(
        counts.len(),
        9,
        "the busiest endpoint must never win: {counts:?}"
    );
    for (id, &count) in counts.iter().enumerate() {
        let expected = 2 * (9 - id) * picks / 90;
        let slack = expected / 10 + 100;
        assert!(
            count.abs_diff(expected) <= slack,
            "endpoint {id}: {count} vs {expected}"
        );
    }
}

#[test]
fn samples_are_distinct() {
    // With three of four sampled, at most one endpoint is left out, so the
    // two busiest can never win; with repeated samples they could.
    let host = TestHost::new();
    for (id, load) in [(0, 3), (1, 1), (2, 2), (3, 4)] {
        in_flight(&host, id, load);
    }
    let mut lr = balancer(r#"{"choice_count": 3}"#, endpoints(4));
    let mut counts = pick_counts(&mut lr, 4_000, &RequestInfo::default());
    counts.resize(4, 0);
    assert_eq!((counts[0], counts[3]), (0, 0), "{counts:?}");
    // The least loaded wins unless left out (1 in 4).
    assert!(counts[1].abs_diff(3_000) < 200, "{counts:?}");
}

#[test]
fn choice_count_beyond_the_pool_scans_it_whole() {
    let host = TestHost::new();
    for (id, load) in [(0, 4), (1, 2), (2, 0), (3, 7)] {
        in_flight(&host, id, load);
    }
    let mut lr = balancer(r#"{"choice_count": 8}"#, endpoints(4));
    assert_eq!(
        pick_counts(&mut lr, 200, &RequestInfo::default()),
        vec![0, 0, 200]
    );
}

#[test]
fn idle_pool_spreads_evenly() {
    // Ties go to the first sample, which is random.
    let _host = TestHost::new();
    let mut lr = balancer("{}", endpoints(5));
    let counts = pick_counts(&mut lr, 50_000, &RequestInfo::default());
    assert_eq!(counts.len(), 5);
    for (id, &count) in counts.iter().enumerate() {
        assert!(count.abs_diff(10_000) < 500, "endpoint {id}: {counts:?}");
    }
}

#[test]
fn weights_count_on_an_idle_pool() {
    // Endpoint 0 weighs 2 and wins every sample it is in: P = 2/10.
    let _host = TestHost::new();
    let mut pool = endpoints(10);
    pool[0].weight = 2;
    let mut lr = balancer("{}", pool);
    let counts = pick_counts(&mut lr, 50_000, &RequestInfo::default());
    assert!(counts[0].abs_diff(10_000) < 600, "{counts:?}");
}

#[test]
fn a_new_set_replaces_the_old() {
    let _host = TestHost::new();
    let mut lr = balancer("{}", endpoints(5));
    lr.set_endpoints(vec![Endpoint::new(10, "x:80"), Endpoint::new(11, "y:80")]);
    let counts = pick_counts(&mut lr, 1_000, &RequestInfo::default());
    assert_eq!(counts[..10].iter().sum::<usize>(), 0);
    assert_eq!(counts[10] + counts[11], 1_000);
    lr.set_endpoints(vec![]);
    assert_eq!(lr.pick(&RequestInfo::default()), None);
}
