use super::*;
use switchyard_sdk::testing::TestHost;
use switchyard_sdk::RequestInfo;

fn policy(config: &str) -> RetryBackoff {
    RetryBackoff::configure(config).unwrap()
}

fn failure(kind: FailureKind, attempt: u32) -> Failure {
    Failure {
        endpoint: 4,
        kind,
        request: RequestInfo {
            attempt,
            ..RequestInfo::default()
        },
        method: "GET".into(),
        replayable: true,
        elapsed_ms: 12,
    }
}

fn retried(decision: Decision) -> bool {
    matches!(decision, Decision::Retry(_))
}

fn delay(decision: Decision) -> u32 {
    match decision {
        Decision::Retry(retry) => retry.delay_ms,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn config_defaults() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    let config = Config::default();
    assert_eq!(config.attempts, 3);
    assert_eq!(config.base_delay_ms, 5);
    assert_eq!(config.max_delay_ms, 250);
    assert_eq!(
        config.retry_on,
        vec![
            RetryOn::ConnectRefused,
            RetryOn::ConnectTimeout,
            RetryOn::Reset,
            RetryOn::ServerError
        ]
    );
    assert!(!config.same_endpoint);
}

#[test]
fn retry_on_items_parse() {
    let config: Config = switchyard_sdk::config::parse(
        r#"{"retry_on": ["connect-refused", "connect-timeout", "reset",
                         "response-timeout", "5xx", "4xx", 503, 429]}"#,
    )
    .unwrap();
    assert_eq!(
        config.retry_on,
        vec![
            RetryOn::ConnectRefused,
            RetryOn::ConnectTimeout,
            RetryOn::Reset,
            RetryOn::ResponseTimeout,
            RetryOn::ServerError,
            RetryOn::ClientError,
            RetryOn::Status(503),
            RetryOn::Status(429),
        ]
    );
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"retries": 3}"#, "retries"),
        (r#"{"attempts": 0}"#, "attempts"),
        (r#"{"attempts": 11}"#, "attempts"),
        (r#"{"attempts": -1}"#, "attempts"),
        (r#"{"attempts": "3"}"#, "attempts"),
        (r#"{"base_delay_ms": -5}"#, "base_delay_ms"),
        (r#"{"base_delay_ms": 300}"#, "base_delay_ms"),
        (
            r#"{"base_delay_ms": 10, "max_delay_ms": 9}"#,
            "base_delay_ms",
        ),
        (r#"{"max_delay_ms": 60001}"#, "max_delay_ms"),
        (r#"{"max_delay_ms": 2.5}"#, "max_delay_ms"),
        (r#"{"retry_on": []}"#, "retry_on"),
        (r#"{"retry_on": "5xx"}"#, "retry_on"),
        (r#"{"retry_on": ["5xx", "timeout"]}"#, "retry_on[1]"),
        (r#"{"retry_on": ["5XX"]}"#, "retry_on[0]"),
        (r#"{"retry_on": ["503"]}"#, "retry_on[0]"),
        (r#"{"retry_on": [99]}"#, "retry_on[0]"),
        (r#"{"retry_on": ["reset", 600]}"#, "retry_on[1]"),
        (r#"{"retry_on": [-503]}"#, "retry_on[0]"),
        (r#"{"retry_on": [true]}"#, "retry_on[0]"),
        (r#"{"same_endpoint": "yes"}"#, "same_endpoint"),
    ] {
        let error = RetryBackoff::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    let error = RetryBackoff::configure(r#"{"retry_on": ["timeout"]}"#).unwrap_err();
    assert!(
        error.contains("connect-timeout"),
        "lists the names: {error}"
    );
    assert!(RetryBackoff::configure("[]").unwrap_err().contains("table"));
}

#[test]
fn accepts_values_at_the_limits() {
    for config in [
        r#"{"attempts": 1}"#,
        r#"{"attempts": 10}"#,
        r#"{"base_delay_ms": 0, "max_delay_ms": 0}"#,
        r#"{"base_delay_ms": 250}"#,
        r#"{"max_delay_ms": 60000}"#,
        r#"{"retry_on": [100, 599]}"#,
        r#"{"same_endpoint": true}"#,
    ] {
        assert!(RetryBackoff::configure(config).is_ok(), "{config}");
    }
}

#[test]
fn by_default_retries_connect_failures_resets_and_5xx() {
    let _host = TestHost::new();
    let mut rb = policy("{}");
    for kind in [
        FailureKind::ConnectRefused,
        FailureKind::ConnectTimeout,
        FailureKind::Reset,
        FailureKind::Status(500),
        FailureKind::Status(503),
        FailureKind::Status(599),
    ] {
        assert!(retried(rb.on_failure(&failure(kind, 0))), "{kind:?}");
    }
    for kind in [
        FailureKind::ResponseTimeout,
        FailureKind::Status(404),
        FailureKind::Status(429),
        FailureKind::Status(499),
        FailureKind::Status(302),
    ] {
        assert_eq!(
            rb.on_failure(&failure(kind, 0)),
            Decision::GiveUp(None),
            "{kind:?}"
        );
    }
}

#[test]
fn retries_only_what_retry_on_lists() {
    let _host = TestHost::new();
    let mut rb = policy(r#"{"retry_on": [429, "response-timeout"]}"#);
    assert!(retried(
        rb.on_failure(&failure(FailureKind::Status(429), 0))
    ));
    assert!(retried(
        rb.on_failure(&failure(FailureKind::ResponseTimeout, 0))
    ));
    for kind in [
        FailureKind::Status(428),
        FailureKind::Status(430),
        FailureKind::Status(503),
        FailureKind::ConnectRefused,
        FailureKind::ConnectTimeout,
        FailureKind::Reset,
    ] {
        assert_eq!(
            rb.on_failure(&failure(kind, 0)),
            Decision::GiveUp(None),
            "{kind:?}"
        );
    }
    let mut rb = policy(r#"{"retry_on": ["4xx"]}"#);
    for (status, retry) in [
        (399, false),
        (400, true),
        (451, true),
        (499, true),
        (500, false),
    ] {
        assert_eq!(
            retried(rb.on_failure(&failure(FailureKind::Status(status), 0))),
            retry,
            "{status}"
        );
    }
}

#[test]
fn attempts_count_the_first_try() {
    let _host = TestHost::new();
    let mut rb = policy("{}");
    let refused = |attempt| failure(FailureKind::ConnectRefused, attempt);
    // Three attempts: the first try (0) and two retries (1, 2).
    assert!(retried(rb.on_failure(&refused(0))));
    assert!(retried(rb.on_failure(&refused(1))));
    assert_eq!(rb.on_failure(&refused(2)), Decision::GiveUp(None));
    assert_eq!(rb.on_failure(&refused(7)), Decision::GiveUp(None));
    assert_eq!(rb.on_failure(&refused(u32::MAX)), Decision::GiveUp(None));

    let mut once = policy(r#"{"attempts": 1}"#);
    assert_eq!(once.on_failure(&refused(0)), Decision::GiveUp(None));

    let mut ten = policy(r#"{"attempts": 10}"#);
    assert!(retried(ten.on_failure(&refused(8))));
    assert_eq!(ten.on_failure(&refused(9)), Decision::GiveUp(None));
}

#[test]
fn never_retries_what_cannot_be_replayed() {
    let _host = TestHost::new();
    let mut rb = policy(r#"{"attempts": 10, "retry_on": ["connect-refused", "5xx"]}"#);
    for kind in [FailureKind::ConnectRefused, FailureKind::Status(503)] {
        let mut unreplayable = failure(kind, 0);
        unreplayable.replayable = false;
        unreplayable.method = "POST".into();
        assert_eq!(rb.on_failure(&unreplayable), Decision::GiveUp(None));
    }
}

#[test]
fn same_endpoint_is_passed_on() {
    let _host = TestHost::new();
    let kind = FailureKind::Reset;
    match policy("{}").on_failure(&failure(kind, 0)) {
        Decision::Retry(retry) => assert!(!retry.same_endpoint),
        other => panic!("{other:?}"),
    }
    match policy(r#"{"same_endpoint": true}"#).on_failure(&failure(kind, 0)) {
        Decision::Retry(retry) => assert!(retry.same_endpoint),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
    let rb = policy(r#"{"base_delay_ms": 5, "max_delay_ms": 250}"#);
    let ceilings: Vec<u32> = (0..9).map(|a| rb.backoff_ceiling_ms(a)).collect();
    assert_eq!(ceilings, vec![5, 10, 20, 40, 80, 160, 250, 250, 250]);
    // No overflow however far the attempts go.
    let big = policy(r#"{"base_delay_ms": 60000, "max_delay_ms": 60000}"#);
    for attempt in [0, 1, 31, 32, 33, 63, 64, u32::MAX] {
        assert_eq!(big.backoff_ceiling_ms(attempt), 60_000, "{attempt}");
    }
    let zero = policy(r#"{"base_delay_ms": 0}"#);
    for attempt in [0, 5, 40, u32::MAX] {
        assert_eq!(zero.backoff_ceiling_ms(attempt), 0, "{attempt}");
    }
}

#[test]
fn the_delay_is_random_below_the_ceiling_plus_one() {
    // Exactly `host::random_below(ceiling + 1)`: replaying the host's
    // generator from the same seed gives the same delays.
    let host = TestHost::new();
    let mut rb = policy(r#"{"attempts": 10, "base_delay_ms": 7, "max_delay_ms": 100}"#);
    host.seed(42);
    let delays: Vec<u32> = (0..9)
        .map(|attempt| delay(rb.on_failure(&failure(FailureKind::Reset, attempt))))
        .collect();
    host.seed(42);
    let expected: Vec<u32> = [7, 14, 28, 56, 100, 100, 100, 100, 100]
        .iter()
        .map(|&ceiling| host::random_below(ceiling + 1))
        .collect();
    assert_eq!(delays, expected);
}

#[test]
fn full_jitter_spreads_delays_over_the_whole_window() {
    let _host = TestHost::new();
    let mut rb = policy(r#"{"attempts": 10, "base_delay_ms": 20, "max_delay_ms": 150}"#);
    for (attempt, ceiling) in [(0, 20), (1, 40), (2, 80), (3, 150), (8, 150)] {
        let draws = 20_000;
        let mut counts = vec![0usize; ceiling as usize + 1];
        for _ in 0..draws {
            let delay = delay(rb.on_failure(&failure(FailureKind::Status(502), attempt)));
            assert!(delay <= ceiling, "attempt {attempt}: {delay} > {ceiling}");
            counts[delay as usize] += 1;
        }
        // Every value from 0 to the ceiling comes up, about equally often.
        let expected = draws / counts.len();
        for (value, &count) in counts.iter().enumerate() {
            assert!(
                count.abs_diff(expected) <= expected / 2,
                "attempt {attempt}: {value} ms drawn {count} times, expected about {expected}"
            );
        }
        let mean = counts
            .iter()
            .enumerate()
            .map(|(value, &count)| value * count)
            .sum::<usize>() as f64
            / draws as f64;
        let half = f64::from(ceiling) / 2.0;
        assert!(
            (mean - half).abs() < half * 0.05 + 0.5,
            "attempt {attempt}: mean {mean}"
        );
    }
}

#[test]
fn a_zero_base_retries_at_once() {
    let _host = TestHost::new();
    let mut rb = policy(r#"{"base_delay_ms": 0, "attempts": 5}"#);
    for attempt in 0..4 {
        for _ in 0..100 {
            assert_eq!(
                rb.on_failure(&failure(FailureKind::ConnectTimeout, attempt)),
                Decision::Retry(Retry {
                    delay_ms: 0,
                    same_endpoint: false
                })
            );
        }
    }
}
