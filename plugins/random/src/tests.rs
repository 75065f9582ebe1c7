use super::*;
use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};

fn balancer(endpoints: Vec<Endpoint>) -> WeightedRandom {
    let mut balancer = WeightedRandom::configure("{}").unwrap();
    balancer.set_endpoints(endpoints);
    balancer
}

fn weighted(weights: &[u32]) -> Vec<Endpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(id, &weight)| {
            Endpoint::new(id as u32, format!("10.0.0.{id}:80")).with_weight(weight)
        })
        .collect()
}

/// The exact probability the table gives each index: a column is chosen with
/// probability 1/n, then keeps it with threshold/2^32 and passes the rest to
/// its alias.
fn table_shares(columns: &[Column]) -> Vec<f64> {
    let n = columns.len() as f64;
    let mut shares = vec![0.0; columns.len()];
    for (index, column) in columns.iter().enumerate() {
        let keep = column.threshold as f64 / 4_294_967_296.0;
        shares[index] += keep / n;
        shares[column.alias as usize] += (1.0 - keep) / n;
    }
    shares
}

#[test]
fn takes_no_options() {
    assert!(WeightedRandom::configure("{}").is_ok());
    let error = WeightedRandom::configure(r#"{"seed": 3}"#).unwrap_err();
    assert!(error.contains("`seed`"), "{error}");
    assert!(WeightedRandom::configure("[1]")
        .unwrap_err()
        .contains("table"));
    assert!(WeightedRandom::configure("")
        .unwrap_err()
        .contains("not JSON"));
}

#[test]
fn empty_pool_declines() {
    let _host = TestHost::new();
    let mut random = balancer(vec![]);
    assert_eq!(random.pick(&RequestInfo::default()), None);
}

#[test]
fn single_endpoint_is_always_picked() {
    let _host = TestHost::new();
    let mut random = balancer(vec![Endpoint::new(4, "a:80").with_weight(9)]);
    assert_eq!(
        pick_counts(&mut random, 100, &RequestInfo::default())[4],
        100
    );
}

#[test]
fn the_table_is_exact() {
    for weights in [
        vec![1, 1, 1],
        vec![1, 2, 3, 4],
        vec![5, 1, 1],
        vec![1, 1_000_000],
        vec![7, 0, 3, 13, 1, 1, 2, 40, 9],
        vec![u32::MAX, 1, u32::MAX - 1],
    ] {
        let clamped: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
        let total: u64 = clamped.iter().sum();
        let shares = table_shares(&alias_table(&clamped));
        for (index, &weight) in clamped.iter().enumerate() {
            let expected = weight as f64 / total as f64;
            assert!(
                (shares[index] - expected).abs() < 1e-9,
                "{weights:?}: index {index} gets {} instead of {expected}",
                shares[index]
            );
        }
    }
}

#[test]
fn equal_weights_never_use_an_alias() {
    let columns = alias_table(&[3; 7]);
    assert!(
        columns.iter().all(|c| c.threshold == 1 << 32),
        "{columns:?}"
    );
}

#[test]
fn equal_weights_spread_evenly() {
    let _host = TestHost::new();
    let mut random = balancer(endpoints(5));
    let counts = pick_counts(&mut random, 100_000, &RequestInfo::default());
    assert_eq!(counts.len(), 5);
    for (id, &count) in counts.iter().enumerate() {
        assert!(count.abs_diff(20_000) < 800, "endpoint {id}: {counts:?}");
    }
}

#[test]
fn weights_give_proportional_shares() {
    let _host = TestHost::new();
    let mut random = balancer(weighted(&[1, 2, 3, 4]));
    let counts = pick_counts(&mut random, 100_000, &RequestInfo::default());
    for (id, &count) in counts.iter().enumerate() {
        let expected = (id + 1) * 10_000;
        assert!(count.abs_diff(expected) < 800, "endpoint {id}: {counts:?}");
    }
}

#[test]
fn a_tiny_weight_gets_a_tiny_share() {
    let _host = TestHost::new();
    let mut random = balancer(weighted(&[1, 999]));
    let mut counts = pick_counts(&mut random, 100_000, &RequestInfo::default());
    counts.resize(2, 0);
    // 100 expected.
    assert!(counts[0] > 50 && counts[0] < 160, "{counts:?}");
}

#[test]
fn picks_are_not_a_fixed_sequence() {
    let _host = TestHost::new();
    let mut random = balancer(endpoints(2));
    let picks: Vec<_> = (0..64)
        .map(|_| random.pick(&RequestInfo::default()).unwrap())
        .collect();
    // A rotation would alternate; random picks repeat sometimes.
    assert!(picks.windows(2).any(|w| w[0] == w[1]), "{picks:?}");
}

#[test]
fn a_new_set_replaces_the_old() {
    let _host = TestHost::new();
    let mut random = balancer(endpoints(5));
    random.set_endpoints(vec![
        Endpoint::new(8, "x:80").with_weight(3),
        Endpoint::new(9, "y:80"),
    ]);
    let counts = pick_counts(&mut random, 40_000, &RequestInfo::default());
    assert_eq!(counts[..8].iter().sum::<usize>(), 0);
    assert!(counts[8].abs_diff(30_000) < 800, "{counts:?}");
    random.set_endpoints(vec![]);
    assert_eq!(random.pick(&RequestInfo::default()), None);
}
