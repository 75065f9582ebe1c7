use std::time::Duration;

use super::*;
use switchyard_sdk::testing::TestHost;
use switchyard_sdk::{EndpointId, FailureKind, Load, RequestInfo};

fn breaker(config: &str) -> CircuitBreaker {
    CircuitBreaker::configure(config).unwrap()
}

fn failure(endpoint: EndpointId, attempt: u32) -> Failure {
    Failure {
        endpoint,
        kind: FailureKind::Status(503),
        request: RequestInfo {
            attempt,
            ..RequestInfo::default()
        },
        method: "GET".into(),
        replayable: true,
        elapsed_ms: 20,
    }
}

fn success(host: &TestHost, id: EndpointId, permille: u16) {
    host.set_load(
        id,
        Load {
            success_permille: permille,
            ..Load::default()
        },
    );
}

const RETRY_ELSEWHERE: Decision = Decision::Retry(Retry {
    delay_ms: 0,
    same_endpoint: false,
});

fn ejected(duration_ms: u32) -> Decision {
    Decision::Eject(Ejection {
        duration_ms,
        retry: Some(Retry {
            delay_ms: 0,
            same_endpoint: false,
        }),
    })
}

fn is_eject(decision: Decision) -> bool {
    matches!(decision, Decision::Eject(_))
}

/// The ejection's length, failing the test unless it is an ejection.
fn open_for(decision: Decision) -> u32 {
    match decision {
        Decision::Eject(ejection) => ejection.duration_ms,
        other => panic!("expected an ejection, got {other:?}"),
    }
}

#[test]
fn config_defaults() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    let config = Config::default();
    assert_eq!(config.failure_ratio, 0.5);
    assert_eq!(config.consecutive_failures, 5);
    assert_eq!(config.open_ms, 5_000);
    assert_eq!(config.max_open_ms, 60_000);
    assert!(config.retry);
    assert_eq!(breaker("{}").threshold_permille(), 500);
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"min_requests": 10}"#, "min_requests"),
        (r#"{"failure_ratio": 0}"#, "failure_ratio"),
        (r#"{"failure_ratio": 0.0}"#, "failure_ratio"),
        (r#"{"failure_ratio": -0.5}"#, "failure_ratio"),
        (r#"{"failure_ratio": 1.01}"#, "failure_ratio"),
        (r#"{"failure_ratio": 50}"#, "failure_ratio"),
        (r#"{"failure_ratio": "half"}"#, "failure_ratio"),
        (r#"{"consecutive_failures": 0}"#, "consecutive_failures"),
        (r#"{"consecutive_failures": -1}"#, "consecutive_failures"),
        (r#"{"open_ms": 0}"#, "open_ms"),
        (r#"{"open_ms": "5s"}"#, "open_ms"),
        (r#"{"max_open_ms": 4999}"#, "max_open_ms"),
        (r#"{"open_ms": 70000, "max_open_ms": 60000}"#, "max_open_ms"),
        (r#"{"retry": "yes"}"#, "retry"),
    ] {
        let error = CircuitBreaker::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    assert!(CircuitBreaker::configure("[]")
        .unwrap_err()
        .contains("table"));
}

#[test]
fn the_ratio_is_taken_to_the_nearest_thousandth() {
    for (ratio, threshold) in [
        ("1", 1_000),
        ("1.0", 1_000),
        ("0.3", 300),
        ("0.7", 700),
        ("0.0004", 1),
        ("0.0006", 1),
        ("0.1234", 123),
        ("0.1236", 124),
    ] {
        let config = format!(r#"{{"failure_ratio": {ratio}}}"#);
        assert_eq!(breaker(&config).threshold_permille(), threshold, "{ratio}");
    }
}

#[test]
fn a_lone_failure_retries_the_first_attempt_elsewhere() {
    let host = TestHost::new();
    success(&host, 2, 1_000);
    let mut cb = breaker("{}");
    assert_eq!(cb.on_failure(&failure(2, 0)), RETRY_ELSEWHERE);
    // Later attempts, and requests that cannot be replayed, give up.
    assert_eq!(cb.on_failure(&failure(2, 1)), Decision::GiveUp(None));
    let mut unreplayable = failure(2, 0);
    unreplayable.replayable = false;
    assert_eq!(cb.on_failure(&unreplayable), Decision::GiveUp(None));
    assert!(host.logs().is_empty());
}

#[test]
fn trips_when_the_failure_share_reaches_the_ratio() {
    let host = TestHost::new();
    let mut cb = breaker("{}");
    // 499 failed thousandths: closed.
    success(&host, 1, 501);
    assert_eq!(cb.on_failure(&failure(1, 0)), RETRY_ELSEWHERE);
    // 500: open.
    success(&host, 7, 500);
    assert_eq!(cb.on_failure(&failure(7, 0)), ejected(5_000));
    // Far below: open too, and on any attempt.
    success(&host, 8, 0);
    assert_eq!(cb.on_failure(&failure(8, 4)), ejected(5_000));
}

#[test]
fn the_ratio_boundary_is_exact_for_decimal_ratios() {
    // 0.3 × 1000 is 300.00000000000006 in floating point; 700‰ success must
    // still trip and 701‰ must not.
    let host = TestHost::new();
    let mut cb = breaker(r#"{"failure_ratio": 0.3}"#);
    success(&host, 1, 701);
    assert_eq!(cb.on_failure(&failure(1, 0)), RETRY_ELSEWHERE);
    success(&host, 2, 700);
    assert!(is_eject(cb.on_failure(&failure(2, 0))));
}

#[test]
fn a_ratio_of_one_trips_only_at_zero_success() {
    let host = TestHost::new();
    let mut cb = breaker(r#"{"failure_ratio": 1, "consecutive_failures": 1000}"#);
    success(&host, 1, 1);
    assert_eq!(cb.on_failure(&failure(1, 0)), RETRY_ELSEWHERE);
    success(&host, 2, 0);
    assert!(is_eject(cb.on_failure(&failure(2, 0))));
}

#[test]
fn tripping_retries_elsewhere_only_when_allowed_and_replayable() {
    let host = TestHost::new();
    success(&host, 1, 0);
    let mut unreplayable = failure(1, 0);
    unreplayable.replayable = false;
    assert_eq!(
        breaker("{}").on_failure(&unreplayable),
        Decision::Eject(Ejection {
            duration_ms: 5_000,
            retry: None
        })
    );
    // Another endpoint: every value on this thread shares the pool's store,
    // where endpoint 1 is open now.
    success(&host, 3, 0);
    assert_eq!(
        breaker(r#"{"retry": false}"#).on_failure(&failure(3, 0)),
        Decision::Eject(Ejection {
            duration_ms: 5_000,
            retry: None
        })
    );
    // `retry` only governs ejections: a failure that does not trip still
    // retries its first attempt elsewhere.
    success(&host, 2, 1_000);
    assert_eq!(
        breaker(r#"{"retry": false}"#).on_failure(&failure(2, 0)),
        RETRY_ELSEWHERE
    );
}

#[test]
fn a_sudden_outage_trips_after_consecutive_failures() {
    // The host's success share falls with each failure, as an average of
    // recent outcomes does, but stays above the 50% ratio throughout.
    let host = TestHost::new();
    let mut cb = breaker("{}");
    let mut decisions = Vec::new();
    for permille in [880, 820, 770, 720, 680] {
        success(&host, 3, permille);
        decisions.push(cb.on_failure(&failure(3, 0)));
        host.advance(Duration::from_millis(10));
    }
    assert_eq!(decisions[..4], [RETRY_ELSEWHERE; 4]);
    assert_eq!(decisions[4], ejected(5_000));
    let logs = host.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, LogLevel::Warn);
    assert_eq!(
        logs[0].1,
        "endpoint 3 open for 5000 ms (trip 1): 5 failures in a row"
    );
}

#[test]
fn failures_count_in_a_row_without_load_too() {
    // The host reports no load for the endpoint: only the run can trip.
    let _host = TestHost::new();
    let mut cb = breaker(r#"{"consecutive_failures": 3}"#);
    assert_eq!(cb.on_failure(&failure(9, 0)), RETRY_ELSEWHERE);
    assert_eq!(cb.on_failure(&failure(9, 1)), Decision::GiveUp(None));
    assert_eq!(cb.on_failure(&failure(9, 0)), ejected(5_000));
}

#[test]
fn one_consecutive_failure_trips_at_once() {
    let host = TestHost::new();
    success(&host, 1, 1_000);
    let mut cb = breaker(r#"{"consecutive_failures": 1}"#);
    assert_eq!(cb.on_failure(&failure(1, 0)), ejected(5_000));
}

#[test]
fn a_quiet_gap_longer_than_open_ms_restarts_the_run() {
    let host = TestHost::new();
    success(&host, 1, 800);
    let mut cb = breaker("{}");
    for _ in 0..4 {
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
        host.advance(Duration::from_millis(100));
    }
    // 4 in the run; a gap of exactly open_ms still continues it.
    host.advance(Duration::from_millis(4_900));
    assert!(is_eject(cb.on_failure(&failure(1, 0))));

    let host = TestHost::new();
    success(&host, 1, 800);
    let mut cb = breaker("{}");
    for _ in 0..4 {
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    // Just over open_ms: the next failure is the first of a new run.
    host.advance(Duration::from_millis(5_001));
    for _ in 0..4 {
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    assert!(is_eject(cb.on_failure(&failure(1, 0))));
}

#[test]
fn sporadic_failures_of_a_mostly_healthy_endpoint_never_add_up() {
    let host = TestHost::new();
    success(&host, 1, HEALTHY_PERMILLE);
    let mut cb = breaker("{}");
    for _ in 0..100 {
        assert_eq!(cb.on_failure(&failure(1, 0)), RETRY_ELSEWHERE);
    }
    // Just below the mark the failures count, the last one at the mark
    // being the first of the run.
    success(&host, 1, HEALTHY_PERMILLE - 1);
    for _ in 0..3 {
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    assert!(is_eject(cb.on_failure(&failure(1, 0))));
}

#[test]
fn a_rising_success_share_proves_a_success_and_restarts_the_run() {
    let host = TestHost::new();
    let mut cb = breaker("{}");
    for permille in [800, 750, 700, 650] {
        success(&host, 1, permille);
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    // The share rose since the last failure: a success came between, so
    // this is failure 1 of a new run, not failure 5.
    success(&host, 1, 660);
    assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    for permille in [650, 640, 630] {
        success(&host, 1, permille);
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    // An unchanged share proves nothing: the run goes on to 5.
    assert!(is_eject(cb.on_failure(&failure(1, 0))));
}

#[test]
fn re_trips_on_probation_double_the_open_time_up_to_the_cap() {
    let host = TestHost::new();
    success(&host, 5, 100);
    let mut cb = breaker("{}");
    let mut opened = Vec::new();
    for _ in 0..6 {
        let open_ms = open_for(cb.on_failure(&failure(5, 0)));
        opened.push(open_ms);
        // Readmitted exactly when the ejection ends; the half-open probe
        // fails at once.
        host.advance(Duration::from_millis(u64::from(open_ms)));
    }
    assert_eq!(opened, vec![5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
    let logs = host.logs();
    assert!(logs[1].1.contains("(trip 2): success 100‰"), "{logs:?}");
}

#[test]
fn a_trip_after_probation_starts_again_from_open_ms() {
    let host = TestHost::new();
    success(&host, 5, 100);
    let mut cb = breaker("{}");
    assert_eq!(open_for(cb.on_failure(&failure(5, 0))), 5_000);
    // Open 5 s, then on probation for another 5 s.
    host.advance(Duration::from_millis(5_000 + 4_999));
    assert_eq!(open_for(cb.on_failure(&failure(5, 0))), 10_000);
    host.advance(Duration::from_millis(10_000 + 10_000));
    // Probation ended exactly now: a fresh streak.
    assert_eq!(open_for(cb.on_failure(&failure(5, 0))), 5_000);
}

#[test]
fn failures_while_open_neither_count_nor_re_trip() {
    let host = TestHost::new();
    success(&host, 4, 0);
    let mut cb = breaker("{}");
    assert_eq!(open_for(cb.on_failure(&failure(4, 0))), 5_000);
    // Requests that were in flight when it was ejected fail later.
    for _ in 0..10 {
        host.advance(Duration::from_millis(100));
        assert_eq!(cb.on_failure(&failure(4, 0)), RETRY_ELSEWHERE);
        assert_eq!(cb.on_failure(&failure(4, 1)), Decision::GiveUp(None));
    }
    host.advance(Duration::from_millis(3_999));
    assert_eq!(cb.on_failure(&failure(4, 0)), RETRY_ELSEWHERE);
    // Readmitted: the next failure re-trips, once, for twice as long.
    host.advance(Duration::from_millis(1));
    assert_eq!(open_for(cb.on_failure(&failure(4, 0))), 10_000);
    assert_eq!(host.logs().len(), 2);
}

#[test]
fn a_trip_ends_the_run() {
    let host = TestHost::new();
    success(&host, 1, 800);
    let mut cb = breaker(r#"{"consecutive_failures": 3, "open_ms": 100}"#);
    for _ in 0..2 {
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    assert!(is_eject(cb.on_failure(&failure(1, 0))));
    host.advance(Duration::from_millis(100));
    // Readmitted: two more failures are not enough, three are.
    for _ in 0..2 {
        assert!(!is_eject(cb.on_failure(&failure(1, 0))));
    }
    assert_eq!(open_for(cb.on_failure(&failure(1, 0))), 200);
}

#[test]
fn endpoints_are_judged_apart() {
    let host = TestHost::new();
    success(&host, 1, 800);
    success(&host, 2, 800);
    let mut cb = breaker("{}");
    for _ in 0..4 {
        cb.on_failure(&failure(1, 0));
    }
    // Endpoint 2's failures do not continue endpoint 1's run...
    for _ in 0..4 {
        assert!(!is_eject(cb.on_failure(&failure(2, 0))));
    }
    // ...nor does its ejection double endpoint 1's.
    assert_eq!(open_for(cb.on_failure(&failure(2, 0))), 5_000);
    assert_eq!(open_for(cb.on_failure(&failure(1, 0))), 5_000);
}

#[test]
fn max_open_equal_to_open_never_doubles() {
    let host = TestHost::new();
    success(&host, 1, 0);
    let mut cb = breaker(r#"{"open_ms": 1000, "max_open_ms": 1000}"#);
    for _ in 0..5 {
        assert_eq!(open_for(cb.on_failure(&failure(1, 0))), 1_000);
        host.advance(Duration::from_millis(1_000));
    }
}

#[test]
fn long_streaks_do_not_overflow() {
    let host = TestHost::new();
    success(&host, 1, 0);
    let mut cb = breaker(r#"{"open_ms": 1, "max_open_ms": 4294967295}"#);
    let mut last = 0;
    for trip in 0..40u32 {
        let open_ms = open_for(cb.on_failure(&failure(1, 0)));
        let expected = if trip < 32 { 1u32 << trip } else { u32::MAX };
        assert_eq!(open_ms, expected, "trip {}", trip + 1);
        assert!(open_ms >= last);
        last = open_ms;
        host.advance(Duration::from_millis(u64::from(open_ms)));
    }
    assert_eq!(cb.open_time_ms(u32::MAX), u32::MAX);
    assert_eq!(cb.open_time_ms(0), 1);
}

#[test]
fn failures_spread_over_workers_trip_once_for_the_pool() {
    let host = TestHost::new();
    success(&host, 1, 800);
    // Two workers' instances: values made on one thread share its store.
    let mut workers = [breaker("{}"), breaker("{}")];
    let mut decisions = Vec::new();
    for failure_number in 0..5 {
        let worker = &mut workers[failure_number % 2];
        decisions.push(worker.on_failure(&failure(1, 0)));
    }
    assert!(
        decisions[..4].iter().all(|d| !is_eject(*d)),
        "{decisions:?}"
    );
    assert_eq!(open_for(decisions[4]), 5_000);
    // The other worker sees the endpoint open, and does not trip again.
    assert_eq!(workers[1].on_failure(&failure(1, 0)), RETRY_ELSEWHERE);
    assert_eq!(host.logs().len(), 1);
}

#[test]
fn a_new_instance_keeps_an_open_circuit_open_and_doubling() {
    let host = TestHost::new();
    success(&host, 2, 0);
    let mut old = breaker("{}");
    assert_eq!(open_for(old.on_failure(&failure(2, 0))), 5_000);
    // A new version's instance: the state is in the store, not in `old`.
    let mut new = breaker("{}");
    host.advance(Duration::from_millis(1_000));
    assert_eq!(new.on_failure(&failure(2, 0)), RETRY_ELSEWHERE);
    host.advance(Duration::from_millis(4_000));
    assert_eq!(open_for(new.on_failure(&failure(2, 0))), 10_000);
}

#[test]
fn each_failing_endpoint_takes_three_entries_of_the_store() {
    let host = TestHost::new();
    let mut cb = breaker(r#"{"consecutive_failures": 1000}"#);
    for id in 0..1_000 {
        cb.on_failure(&failure(id, 0));
    }
    assert_eq!(host.store_len(), 2_000, "a run and a last failure each");
    success(&host, 7, 0);
    assert!(is_eject(cb.on_failure(&failure(7, 0))));
    assert_eq!(host.store_len(), 2_001, "and an open time once tripped");
}

#[test]
fn a_full_store_leaves_the_failure_ratio_alone_to_trip() {
    let host = TestHost::new();
    host.set_store_entries(0);
    success(&host, 1, 800);
    success(&host, 2, 100);
    let mut cb = breaker(r#"{"consecutive_failures": 1}"#);
    // No run can be kept: a mostly healthy endpoint is not tripped...
    assert_eq!(cb.on_failure(&failure(1, 0)), RETRY_ELSEWHERE);
    // ...a failing one is, for `open_ms`, and the refusal is said once.
    assert_eq!(open_for(cb.on_failure(&failure(2, 0))), 5_000);
    assert_eq!(open_for(cb.on_failure(&failure(2, 0))), 5_000);
    let logs = host.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].1.contains("store_entries"), "{logs:?}");
}
