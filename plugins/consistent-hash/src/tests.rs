use std::collections::{HashMap, HashSet};

use super::*;
use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};

const KEYS: u64 = 10_000;

fn balancer(config: &str, endpoints: Vec<Endpoint>) -> Maglev {
    let mut balancer = Maglev::configure(config).unwrap();
    balancer.set_endpoints(endpoints);
    balancer
}

fn keyed(hash: u64) -> RequestInfo {
    RequestInfo {
        hash: Some(hash),
        ..RequestInfo::default()
    }
}

/// Where each of the keys `0..KEYS` goes.
fn placement(maglev: &mut Maglev) -> Vec<EndpointId> {
    (0..KEYS)
        .map(|key| maglev.pick(&keyed(key)).unwrap())
        .collect()
}

/// How many slots of the table each id owns, indexed by id.
fn slot_counts(maglev: &Maglev, ids: usize) -> Vec<usize> {
    let mut counts = vec![0; ids];
    for &id in &maglev.table {
        counts[id as usize] += 1;
    }
    counts
}

#[test]
fn config_defaults() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    let maglev = Maglev::configure("{}").unwrap();
    assert_eq!(
        (maglev.table_size, maglev.header.as_deref()),
        (65_537, None)
    );
    let maglev = Maglev::configure(r#"{"table_size": 7, "header": "x-user"}"#).unwrap();
    assert_eq!(
        (maglev.table_size, maglev.header.as_deref()),
        (7, Some("x-user"))
    );
    assert!(Maglev::configure(r#"{"table_size": 1000003}"#).is_ok());
    assert!(Maglev::configure(r#"{"header": null}"#).is_ok());
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"size": 7}"#, "size"),
        (r#"{"table_size": 65536}"#, "table_size"),
        (r#"{"table_size": 5}"#, "table_size"),
        (r#"{"table_size": 1}"#, "table_size"),
        (r#"{"table_size": 0}"#, "table_size"),
        (r#"{"table_size": 1000033}"#, "table_size"),
        (r#"{"table_size": "65537"}"#, "table_size"),
        (r#"{"table_size": -7}"#, "table_size"),
        (r#"{"header": 5}"#, "header"),
        (r#"{"header": ""}"#, "header"),
        (r#"{"table_size": 65537, "header": ["a"]}"#, "header"),
    ] {
        let error = Maglev::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    assert!(Maglev::configure("null").unwrap_err().contains("table"));
}

#[test]
fn primes_are_recognised() {
    let primes: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
    assert_eq!(
        primes,
        [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
    );
    assert!(is_prime(65_537) && is_prime(1_000_003) && is_prime(1_000_033));
    assert!(!is_prime(65_535) && !is_prime(1_000_001) && !is_prime(999_999_999));
    assert!(!is_prime(65_537 * 3) && !is_prime(1_009 * 991));
}

#[test]
fn fnv1a_matches_the_reference_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn empty_pool_declines() {
    let _host = TestHost::new();
    let mut maglev = balancer("{}", vec![]);
    assert_eq!(maglev.pick(&keyed(1)), None);
    assert_eq!(maglev.pick(&RequestInfo::default()), None);
    maglev.set_endpoints(endpoints(3));
    maglev.set_endpoints(vec![]);
    assert_eq!(maglev.pick(&keyed(1)), None);
}

#[test]
fn a_key_always_maps_to_the_same_endpoint() {
    let _host = TestHost::new();
    let mut maglev = balancer("{}", endpoints(10));
    let first = placement(&mut maglev);
    assert_eq!(placement(&mut maglev), first);
    // Keys spread over every endpoint.
    assert_eq!(first.iter().collect::<HashSet<_>>().len(), 10);
    // Pushing the same set again changes nothing.
    maglev.set_endpoints(endpoints(10));
    assert_eq!(placement(&mut maglev), first);
}

#[test]
fn the_table_follows_addresses_not_ids_or_order() {
    let _host = TestHost::new();
    let mut maglev = balancer("{}", endpoints(10));
    let by_address = |maglev: &mut Maglev, pool: &[Endpoint]| -> Vec<String> {
        let address: HashMap<_, _> = pool.iter().map(|e| (e.id, e.address.clone())).collect();
        placement(maglev)
            .iter()
            .map(|id| address[id].clone())
            .collect()
    };
    let before = by_address(&mut maglev, &endpoints(10));
    // The same addresses, in reverse order and under other ids.
    let mut pool: Vec<Endpoint> = endpoints(10)
        .into_iter()
        .map(|mut e| {
            e.id += 100;
            e
        })
        .collect();
    pool.reverse();
    maglev.set_endpoints(pool.clone());
    assert_eq!(by_address(&mut maglev, &pool), before);
}

#[test]
fn equal_weights_own_equal_shares_of_the_table() {
    let _host = TestHost::new();
    let maglev = balancer("{}", endpoints(10));
    assert_eq!(maglev.table.len(), 65_537);
    let counts = slot_counts(&maglev, 10);
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "{counts:?}");
}

#[test]
fn removing_one_endpoint_moves_few_other_keys() {
    let _host = TestHost::new();
    let mut maglev = balancer("{}", endpoints(10));
    let before = placement(&mut maglev);
    let mut pool = endpoints(10);
    pool.remove(3);
    maglev.set_endpoints(pool);
    let after = placement(&mut maglev);

    let mut others = 0;
    let mut moved = 0;
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(*new, 3, "a key still goes to the removed endpoint");
        if *old != 3 {
            others += 1;
            moved += usize::from(old != new);
        }
    }
    assert!(others > 8_000, "{others}");
    let disruption = moved as f64 / others as f64;
    assert!(disruption < 0.05, "{moved} of {others} other keys moved");

    // Readmitting it restores the original placement exactly.
    maglev.set_endpoints(endpoints(10));
    assert_eq!(placement(&mut maglev), before);
}

#[test]
fn adding_one_endpoint_takes_its_share_and_moves_few_others() {
    let _host = TestHost::new();
    let mut maglev = balancer("{}", endpoints(10));
    let before = placement(&mut maglev);
    maglev.set_endpoints(endpoints(11));
    let after = placement(&mut maglev);
    let to_new = after.iter().filter(|&&id| id == 10).count();
    // About 1/11 of the keys.
    assert!(to_new.abs_diff(909) < 150, "{to_new}");
    let moved_elsewhere = before
        .iter()
        .zip(&after)
        .filter(|&(old, new)| old != new && *new != 10)
        .count();
    assert!(
        moved_elsewhere < 200,
        "{moved_elsewhere} keys moved between old endpoints"
    );
}

#[test]
fn raising_a_weight_moves_keys_to_that_endpoint() {
    let _host = TestHost::new();
    let mut maglev = balancer("{}", endpoints(10));
    let before = placement(&mut maglev);
    let mut pool = endpoints(10);
    pool[0].weight = 2;
    maglev.set_endpoints(pool);
    let after = placement(&mut maglev);
    // Endpoint 0's share grows from 1/10 to 2/11: about 8% of the keys move.
    let moved = before
        .iter()
        .zip(&after)
        .filter(|&(old, new)| old != new)
        .count();
    let to_heavier = before
        .iter()
        .zip(&after)
        .filter(|&(old, new)| old != new && *new == 0)
        .count();
    assert!(moved.abs_diff(820) < 200, "{moved}");
    assert!(to_heavier * 10 >= moved * 9, "{to_heavier} of {moved}");
}

#[test]
fn weights_give_proportional_shares() {
    let _host = TestHost::new();
    let pool: Vec<Endpoint> = (0..4)
        .map(|id| Endpoint::new(id, format!("10.0.1.{id}:443")).with_weight(id + 1))
        .collect();
    let mut maglev = balancer("{}", pool);
    let slots = slot_counts(&maglev, 4);
    let keys = pick_counts_by_key(&mut maglev);
    for id in 0..4 {
        let share = (id + 1) as f64 / 10.0;
        let slot_share = slots[id] as f64 / 65_537.0;
        assert!((slot_share - share).abs() < 0.005, "slots {slots:?}");
        let key_share = keys[id] as f64 / KEYS as f64;
        assert!((key_share - share).abs() < 0.02, "keys {keys:?}");
    }
}

fn pick_counts_by_key(maglev: &mut Maglev) -> Vec<usize> {
    let mut counts = vec![0; 4];
    for id in placement(maglev) {
        counts[id as usize] += 1;
    }
    counts
}

#[test]
fn extreme_weights_still_fill_the_table() {
    let _host = TestHost::new();
    let pool = vec![
        Endpoint::new(0, "a:80").with_weight(u32::MAX),
        Endpoint::new(1, "b:80").with_weight(1),
        Endpoint::new(2, "c:80").with_weight(0),
    ];
    let maglev = balancer(r#"{"table_size": 1009}"#, pool);
    let slots = slot_counts(&maglev, 3);
    assert_eq!(slots.iter().sum::<usize>(), 1009);
    assert!(slots[0] >= 1007, "{slots:?}");
}

#[test]
fn more_endpoints_than_slots_still_pick_within_the_set() {
    let host = TestHost::new();
    let mut maglev = balancer(r#"{"table_size": 7}"#, endpoints(10));
    let reached: HashSet<_> = placement(&mut maglev).into_iter().collect();
    assert_eq!(reached.len(), 7);
    assert!(reached.iter().all(|&id| id < 10));
    let logs = host.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, LogLevel::Warn);
    assert!(logs[0].1.contains("table_size"), "{logs:?}");
}

#[test]
fn a_configured_header_is_the_key() {
    let host = TestHost::new();
    let mut maglev = balancer(r#"{"header": "X-User"}"#, endpoints(10));
    host.set_header("x-user", "alice");
    let alice = maglev.pick(&keyed(0)).unwrap();
    // The request's own hash no longer matters.
    for hash in 1..200 {
        assert_eq!(maglev.pick(&keyed(hash)), Some(alice));
    }
    assert_eq!(maglev.pick(&RequestInfo::default()), Some(alice));
    // Different users spread over the pool.
    let users: HashSet<_> = (0..1_000)
        .map(|user| {
            host.set_header("x-user", &format!("user-{user}"));
            maglev.pick(&RequestInfo::default()).unwrap()
        })
        .collect();
    assert_eq!(users.len(), 10);
}

#[test]
fn without_the_header_the_request_hash_is_the_key() {
    let host = TestHost::new();
    let mut by_header = balancer(r#"{"header": "x-user"}"#, endpoints(10));
    let mut by_hash = balancer("{}", endpoints(10));
    host.set_header("x-other", "alice");
    assert_eq!(placement(&mut by_header), placement(&mut by_hash));
}

#[test]
fn without_any_key_picks_are_random_and_weighted() {
    let _host = TestHost::new();
    let mut pool = endpoints(4);
    pool[3].weight = 5;
    let mut maglev = balancer("{}", pool);
    let counts = pick_counts(&mut maglev, 80_000, &RequestInfo::default());
    // Shares 1/8, 1/8, 1/8, 5/8.
    for (id, expected) in [(0, 10_000), (1, 10_000), (2, 10_000), (3, 50_000)] {
        assert!(counts[id].abs_diff(expected) < 1_000, "{counts:?}");
    }
}
