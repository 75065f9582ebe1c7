use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::*;
use switchyard_sdk::testing::TestHost;

fn target() -> Endpoint {
    Endpoint::new(1, "10.0.0.1:5432")
}

fn check(config: &str) -> TcpHealth {
    TcpHealth::configure(config).unwrap()
}

/// The verdict of one check against an endpoint that connects in `micros`.
fn connects_in(config: &str, micros: u32) -> Verdict {
    let host = TestHost::new();
    host.on_tcp_connect(move |_| Ok(micros));
    check(config).check(&target())
}

#[test]
fn config_defaults() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    assert_eq!(Config::default().timeout_ms, 1_000);
    assert_eq!(Config::default().degraded_above_ms, None);
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"timeout": 5}"#, "timeout"),
        (r#"{"path": "/"}"#, "path"),
        (r#"{"timeout_ms": 0}"#, "timeout_ms"),
        (r#"{"timeout_ms": -1}"#, "timeout_ms"),
        (r#"{"timeout_ms": "1s"}"#, "timeout_ms"),
        (r#"{"timeout_ms": 4294967296}"#, "timeout_ms"),
        (r#"{"degraded_above_ms": 1000}"#, "degraded_above_ms"),
        (
            r#"{"timeout_ms": 100, "degraded_above_ms": 150}"#,
            "degraded_above_ms",
        ),
        (r#"{"degraded_above_ms": 1.5}"#, "degraded_above_ms"),
    ] {
        let error = TcpHealth::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    assert!(TcpHealth::configure("[]").unwrap_err().contains("table"));
    assert!(TcpHealth::configure(r#"{"timeout_ms": 1}"#).is_ok());
    assert!(TcpHealth::configure(r#"{"degraded_above_ms": 999}"#).is_ok());
    assert!(TcpHealth::configure(r#"{"degraded_above_ms": null}"#).is_ok());
}

#[test]
fn probes_with_the_configured_timeout() {
    let host = TestHost::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&seen);
    host.on_tcp_connect(move |timeout_ms| {
        log.borrow_mut().push(timeout_ms);
        Ok(10)
    });
    check("{}").check(&target());
    check(r#"{"timeout_ms": 250}"#).check(&target());
    assert_eq!(*seen.borrow(), vec![1_000, 250]);
}

#[test]
fn a_connection_is_healthy_with_its_time() {
    assert_eq!(
        connects_in("{}", 300),
        Verdict::healthy("connected in 0.3 ms")
    );
    assert_eq!(
        connects_in("{}", 999_999),
        Verdict::healthy("connected in 1000 ms")
    );
}

#[test]
fn a_slow_connection_is_degraded() {
    let config = r#"{"degraded_above_ms": 100}"#;
    assert_eq!(
        connects_in(config, 100_000),
        Verdict::healthy("connected in 100 ms"),
        "at the ceiling is not above it"
    );
    assert_eq!(
        connects_in(config, 100_001),
        Verdict::degraded("connected in 100.1 ms, above 100 ms")
    );
    assert_eq!(
        connects_in(config, 120_450),
        Verdict::degraded("connected in 120.5 ms, above 100 ms")
    );
    assert_eq!(connects_in(config, 99_999).health, Health::Healthy);
}

#[test]
fn probe_errors_are_unhealthy_with_the_error() {
    for (error, reason) in [
        (ProbeError::Refused, "connection refused"),
        (ProbeError::Timeout, "timed out"),
        (ProbeError::Reset, "connection reset"),
        (
            ProbeError::InvalidResponse("odd".into()),
            "invalid response: odd",
        ),
    ] {
        let host = TestHost::new();
        let answer = error.clone();
        host.on_tcp_connect(move |_| Err(answer.clone()));
        let verdict = check(r#"{"degraded_above_ms": 5}"#).check(&target());
        assert_eq!(verdict, Verdict::unhealthy(reason), "{error:?}");
        assert!(host.logs().is_empty());
    }
    // No handler at all: the stand-in host refuses.
    let _host = TestHost::new();
    assert_eq!(
        check("{}").check(&target()),
        Verdict::unhealthy("connection refused")
    );
}

#[test]
fn a_probe_the_host_refuses_is_unknown_and_warned_once() {
    let host = TestHost::new();
    host.on_tcp_connect(|_| Err(ProbeError::NotAllowed("no target".into())));
    let mut health = check("{}");
    for _ in 0..3 {
        let verdict = health.check(&target());
        assert_eq!(verdict.health, Health::Unknown);
        assert_eq!(verdict.reason, "probe not allowed: no target");
    }
    let logs = host.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, LogLevel::Warn);
    assert!(logs[0].1.contains("no target"));
}

#[test]
fn each_check_probes_afresh() {
    let host = TestHost::new();
    let up = Rc::new(Cell::new(true));
    let state = Rc::clone(&up);
    host.on_tcp_connect(move |_| {
        if state.get() {
            Ok(500)
        } else {
            Err(ProbeError::Refused)
        }
    });
    let mut health = check("{}");
    assert_eq!(health.check(&target()).health, Health::Healthy);
    up.set(false);
    assert_eq!(health.check(&target()).health, Health::Unhealthy);
    up.set(true);
    assert_eq!(health.check(&target()).health, Health::Healthy);
}

#[test]
fn times_read_in_milliseconds_rounded_up_to_a_tenth() {
    for (micros, shown) in [
        (0, "0 ms"),
        (1, "0.1 ms"),
        (250, "0.3 ms"),
        (1_000, "1 ms"),
        (12_345, "12.4 ms"),
    ] {
        assert_eq!(format_latency(micros), shown, "{micros} µs");
    }
}
