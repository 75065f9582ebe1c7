use super::*;
use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};
use switchyard_sdk::Load;

fn balancer(config: &str, endpoints: Vec<Endpoint>) -> PeakEwma {
    let mut balancer = PeakEwma::configure(config).unwrap();
    balancer.set_endpoints(endpoints);
    balancer
}

fn set(host: &TestHost, id: EndpointId, ewma_latency_us: u32, in_flight: u32) {
    host.set_load(
        id,
        Load {
            in_flight,
            ewma_latency_us,
            ..Load::default()
        },
    );
}

/// Counts picks, padded with zeros to `len` ids.
fn counts(balancer: &mut PeakEwma, times: usize, len: usize) -> Vec<usize> {
    let mut counts = pick_counts(balancer, times, &RequestInfo::default());
    counts.resize(len, 0);
    counts
}

#[test]
fn config_defaults() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    assert_eq!(PeakEwma::configure("{}").unwrap().default_rtt_us, 1000);
    let ewma = PeakEwma::configure(r#"{"default_rtt_us": 250}"#).unwrap();
    assert_eq!(ewma.default_rtt_us, 250);
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"rtt": 3}"#, "rtt"),
        (r#"{"default_rtt_us": "1ms"}"#, "default_rtt_us"),
        (r#"{"default_rtt_us": 1.5}"#, "default_rtt_us"),
        (r#"{"default_rtt_us": 5000000000}"#, "default_rtt_us"),
        (r#"{"default_rtt_us": 0}"#, "default_rtt_us"),
    ] {
        let error = PeakEwma::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    assert!(PeakEwma::configure("7").unwrap_err().contains("table"));
}

#[test]
fn empty_pool_declines() {
    let _host = TestHost::new();
    let mut ewma = balancer("{}", vec![]);
    assert_eq!(ewma.pick(&RequestInfo::default()), None);
}

#[test]
fn single_endpoint_is_picked_however_slow() {
    let host = TestHost::new();
    set(&host, 3, 9_000_000, 500);
    let mut ewma = balancer("{}", vec![Endpoint::new(3, "a:80")]);
    assert_eq!(counts(&mut ewma, 50, 4)[3], 50);
}

#[test]
fn of_two_idle_endpoints_the_faster_wins() {
    let host = TestHost::new();
    set(&host, 0, 2_000, 0);
    set(&host, 1, 500, 0);
    let mut ewma = balancer("{}", endpoints(2));
    assert_eq!(counts(&mut ewma, 1_000, 2), vec![0, 1_000]);
}

#[test]
fn cost_is_latency_times_load() {
    let host = TestHost::new();
    // 500 × (5 + 1) = 3000 loses to 2000 × (0 + 1) = 2000.
    set(&host, 0, 500, 5);
    set(&host, 1, 2_000, 0);
    let mut ewma = balancer("{}", endpoints(2));
    assert_eq!(counts(&mut ewma, 1_000, 2), vec![0, 1_000]);
    // 500 × (3 + 1) = 2000 beats 2000 × (1 + 1) = 4000.
    set(&host, 0, 500, 3);
    set(&host, 1, 2_000, 1);
    assert_eq!(counts(&mut ewma, 1_000, 2), vec![1_000, 0]);
}

#[test]
fn a_new_endpoint_is_costed_at_the_default_rtt() {
    let host = TestHost::new();
    // Endpoint 0 has no samples yet: it costs 1000, so it beats a 1500 µs
    // endpoint (not starved)...
    set(&host, 0, 0, 0);
    set(&host, 1, 1_500, 0);
    let mut ewma = balancer("{}", endpoints(2));
    assert_eq!(counts(&mut ewma, 500, 2), vec![500, 0]);
    // ...but not a 800 µs one (not flooded).
    set(&host, 1, 800, 0);
    assert_eq!(counts(&mut ewma, 500, 2), vec![0, 500]);
    // Its in-flight requests count too: 1000 × 2 loses to 1500.
    set(&host, 0, 0, 1);
    set(&host, 1, 1_500, 0);
    assert_eq!(counts(&mut ewma, 500, 2), vec![0, 500]);
}

#[test]
fn default_rtt_is_configurable() {
    let host = TestHost::new();
    set(&host, 0, 0, 0);
    set(&host, 1, 1_500, 0);
    let mut ewma = balancer(r#"{"default_rtt_us": 5000}"#, endpoints(2));
    assert_eq!(counts(&mut ewma, 500, 2), vec![0, 500]);
}

#[test]
fn unknown_load_counts_as_a_new_idle_endpoint() {
    let host = TestHost::new();
    // Endpoint 0 has no load at the host: cost 1000.
    set(&host, 1, 1_200, 0);
    let mut ewma = balancer("{}", endpoints(2));
    assert_eq!(counts(&mut ewma, 500, 2), vec![500, 0]);
    set(&host, 1, 900, 0);
    assert_eq!(counts(&mut ewma, 500, 2), vec![0, 500]);
}

#[test]
fn cost_is_divided_by_weight() {
    let host = TestHost::new();
    let pool = vec![
        Endpoint::new(0, "a:80").with_weight(4),
        Endpoint::new(1, "b:80"),
    ];
    // 1000 × 4 / 4 = 1000 beats 1000 × 2 / 1 = 2000.
    set(&host, 0, 1_000, 3);
    set(&host, 1, 1_000, 1);
    let mut ewma = balancer("{}", pool);
    assert_eq!(counts(&mut ewma, 500, 2), vec![500, 0]);
    // 1000 × 10 / 4 = 2500 loses to 2000.
    set(&host, 0, 1_000, 9);
    assert_eq!(counts(&mut ewma, 500, 2), vec![0, 500]);
}

#[test]
fn extreme_values_do_not_overflow() {
    let host = TestHost::new();
    let pool = vec![
        Endpoint::new(0, "a:80").with_weight(u32::MAX),
        Endpoint::new(1, "b:80").with_weight(u32::MAX - 1),
    ];
    set(&host, 0, u32::MAX, u32::MAX);
    set(&host, 1, u32::MAX, u32::MAX);
    let mut ewma = balancer("{}", pool);
    assert_eq!(counts(&mut ewma, 100, 2), vec![100, 0]);
}

#[test]
fn two_choices_follow_the_p2c_distribution() {
    // Endpoint i costs (i + 1) ms; it wins when sampled with a slower one:
    // P(i) = 2 (9 - i) / 90, and the slowest never wins.
    let host = TestHost::new();
    for id in 0..10 {
        set(&host, id, (id + 1) * 1_000, 0);
    }
    let mut ewma = balancer("{}", endpoints(10));
    let picks = 90_000;
    let counts = counts(&mut ewma, picks, 10);
    assert_eq!(counts[9], 0, "{counts:?}");
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
fn equal_costs_spread_evenly() {
    let host = TestHost::new();
    for id in 0..4 {
        set(&host, id, 700, 2);
    }
    let mut ewma = balancer("{}", endpoints(4));
    let counts = counts(&mut ewma, 40_000, 4);
    for (id, &count) in counts.iter().enumerate() {
        assert!(count.abs_diff(10_000) < 500, "endpoint {id}: {counts:?}");
    }
}

#[test]
fn a_new_set_replaces_the_old() {
    let _host = TestHost::new();
    let mut ewma = balancer("{}", endpoints(5));
    ewma.set_endpoints(vec![Endpoint::new(20, "x:80"), Endpoint::new(21, "y:80")]);
    let counts = counts(&mut ewma, 1_000, 22);
    assert_eq!(counts[..20].iter().sum::<usize>(), 0);
    assert_eq!(counts[20] + counts[21], 1_000);
}
