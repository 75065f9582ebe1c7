use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use switchyard_sdk::testing::TestHost;

fn target() -> Endpoint {
    Endpoint::new(3, "10.0.0.3:8080")
}

fn check(config: &str) -> HttpHealth {
    HttpHealth::configure(config).unwrap()
}

fn response(status: u16, body: &[u8], latency_us: u32) -> HttpResponse {
    HttpResponse {
        status,
        headers: Vec::new(),
        body: body.to_vec(),
        latency_us,
    }
}

/// Answers every probe with `response` and returns the requests seen.
fn answer(host: &TestHost, answer: HttpResponse) -> Rc<RefCell<Vec<HttpRequest>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&seen);
    host.on_http(move |request| {
        log.borrow_mut().push(request.clone());
        Ok(answer.clone())
    });
    seen
}

/// The verdict of one check against an endpoint answering `response`.
fn verdict(config: &str, answer_with: HttpResponse) -> Verdict {
    let host = TestHost::new();
    answer(&host, answer_with);
    check(config).check(&target())
}

#[test]
fn config_defaults() {
    assert_eq!(
        switchyard_sdk::config::parse::<Config>("{}").unwrap(),
        Config::default()
    );
    let config = Config::default();
    assert_eq!(config.path, "/healthz");
    assert_eq!(config.method, "GET");
    assert!(config.headers.is_empty());
    assert_eq!(
        config.expected_statuses,
        vec![StatusRange {
            first: 200,
            last: 399
        }]
    );
    assert_eq!(config.body_contains, None);
    assert_eq!(config.degraded_above_ms, None);
    assert_eq!(config.timeout_ms, 1_000);
    assert_eq!(
        check("{}").request(),
        &HttpRequest {
            method: "GET".into(),
            path: "/healthz".into(),
            headers: vec![],
            timeout_ms: 1_000,
        }
    );
}

#[test]
fn the_probe_sends_the_configured_request() {
    let host = TestHost::new();
    let seen = answer(&host, response(200, b"", 100));
    let mut health = check(
        r#"{"path": "/ready?deep=1", "method": "head", "timeout_ms": 300,
            "headers": {"x-probe": "switchyard", "Host": "api.internal"}}"#,
    );
    health.check(&target());
    health.check(&target());
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "one probe per check");
    assert_eq!(
        seen[0],
        HttpRequest {
            method: "HEAD".into(),
            path: "/ready?deep=1".into(),
            // Sorted by name, so the request is the same on every check.
            headers: vec![
                ("Host".into(), "api.internal".into()),
                ("x-probe".into(), "switchyard".into()),
            ],
            timeout_ms: 300,
        }
    );
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn status_items_parse_as_numbers_ranges_and_classes() {
    let config: Config = switchyard_sdk::config::parse(
        r#"{"expected_statuses": [204, "200-299", "3xx", "418", " 500 - 503 "]}"#,
    )
    .unwrap();
    let ranges: Vec<(u16, u16)> = config
        .expected_statuses
        .iter()
        .map(|r| (r.first, r.last))
        .collect();
    assert_eq!(
        ranges,
        vec![(204, 204), (200, 299), (300, 399), (418, 418), (500, 503)]
    );
    let shown: Vec<String> = config
        .expected_statuses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["204", "200-299", "300-399", "418", "500-503"]);
}

#[test]
fn rejects_bad_config_naming_the_key() {
    for (config, key) in [
        (r#"{"paht": "/"}"#, "paht"),
        (r#"{"path": "healthz"}"#, "path"),
        (r#"{"path": ""}"#, "path"),
        (r#"{"path": "/a b"}"#, "path"),
        (r#"{"path": "/a\nb"}"#, "path"),
        (r#"{"path": "/ready#frag"}"#, "path"),
        (r#"{"path": "/café"}"#, "path"),
        (r#"{"path": 5}"#, "path"),
        (r#"{"method": "POST"}"#, "method"),
        (r#"{"method": "OPTIONS"}"#, "method"),
        (r#"{"method": ""}"#, "method"),
        (r#"{"headers": ["x-a", "b"]}"#, "headers"),
        (r#"{"headers": {"x-a": 1}}"#, "headers.x-a"),
        (r#"{"headers": {"bad name": "v"}}"#, "headers"),
        (r#"{"headers": {"": "v"}}"#, "headers"),
        (r#"{"headers": {"x-a": "v\r\nx-injected: 1"}}"#, "headers"),
        (r#"{"headers": {"Content-Length": "0"}}"#, "headers"),
        (
            r#"{"headers": {"transfer-encoding": "chunked"}}"#,
            "headers",
        ),
        (r#"{"headers": {"connection": "close"}}"#, "headers"),
        (r#"{"expected_statuses": []}"#, "expected_statuses"),
        (r#"{"expected_statuses": 200}"#, "expected_statuses"),
        (r#"{"expected_statuses": [99]}"#, "expected_statuses[0]"),
        (
            r#"{"expected_statuses": [200, 600]}"#,
            "expected_statuses[1]",
        ),
        (r#"{"expected_statuses": [-200]}"#, "expected_statuses[0]"),
        (r#"{"expected_statuses": [200.5]}"#, "expected_statuses[0]"),
        (
            r#"{"expected_statuses": ["299-200"]}"#,
            "expected_statuses[0]",
        ),
        (r#"{"expected_statuses": ["200-"]}"#, "expected_statuses[0]"),
        (
            r#"{"expected_statuses": ["200-700"]}"#,
            "expected_statuses[0]",
        ),
        (r#"{"expected_statuses": ["6xx"]}"#, "expected_statuses[0]"),
        (r#"{"expected_statuses": ["ok"]}"#, "expected_statuses[0]"),
        (r#"{"body_contains": ""}"#, "body_contains"),
        (r#"{"body_contains": 1}"#, "body_contains"),
        (
            r#"{"method": "HEAD", "body_contains": "ok"}"#,
            "body_contains",
        ),
        (r#"{"timeout_ms": 0}"#, "timeout_ms"),
        (r#"{"timeout_ms": -1}"#, "timeout_ms"),
        (r#"{"timeout_ms": "1s"}"#, "timeout_ms"),
        (r#"{"degraded_above_ms": 1000}"#, "degraded_above_ms"),
        (
            r#"{"degraded_above_ms": 300, "timeout_ms": 200}"#,
            "degraded_above_ms",
        ),
        (r#"{"degraded_above_ms": -5}"#, "degraded_above_ms"),
    ] {
        let error = HttpHealth::configure(config).unwrap_err();
        assert!(error.contains(&format!("`{key}`")), "{config}: {error}");
    }
    let too_long = format!(
        r#"{{"body_contains": "{}"}}"#,
        "a".repeat(MAX_BODY_BYTES + 1)
    );
    assert!(HttpHealth::configure(&too_long)
        .unwrap_err()
        .contains("`body_contains`"));
    assert!(HttpHealth::configure("[]").unwrap_err().contains("table"));
    assert!(HttpHealth::configure("{").unwrap_err().contains("not JSON"));
}

#[test]
fn accepts_values_at_the_limits() {
    for config in [
        r#"{"path": "/"}"#,
        r#"{"path": "/a/b?c=d&e=%20"}"#,
        r#"{"method": "HEAD"}"#,
        r#"{"expected_statuses": [100, 599, "1xx", "5XX", "100-599"]}"#,
        r#"{"degraded_above_ms": 999}"#,
        r#"{"degraded_above_ms": 0, "timeout_ms": 1}"#,
        r#"{"headers": {"X-Trace_ID!": "a\tb"}}"#,
        r#"{"timeout_ms": 4294967295}"#,
    ] {
        assert!(HttpHealth::configure(config).is_ok(), "{config}");
    }
    let longest = format!(r#"{{"body_contains": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    assert!(HttpHealth::configure(&longest).is_ok());
}

#[test]
fn by_default_any_2xx_or_3xx_passes() {
    for status in [200, 204, 301, 399] {
        let verdict = verdict("{}", response(status, b"", 3_000));
        assert_eq!(verdict, Verdict::healthy(format!("{status} in 3 ms")));
    }
    for status in [100, 199, 400, 404, 500, 503] {
        let verdict = verdict("{}", response(status, b"", 3_000));
        assert_eq!(
            verdict,
            Verdict::unhealthy(format!("status {status}, expected 200-399"))
        );
    }
}

#[test]
fn only_the_listed_statuses_pass() {
    let config = r#"{"expected_statuses": [204, "300-302"]}"#;
    for status in [204, 300, 301, 302] {
        assert_eq!(
            verdict(config, response(status, b"", 1_000)).health,
            Health::Healthy,
            "{status}"
        );
    }
    for status in [200, 203, 205, 299, 303] {
        assert_eq!(
            verdict(config, response(status, b"", 1_000)),
            Verdict::unhealthy(format!("status {status}, expected 204, 300-302"))
        );
    }
}

#[test]
fn body_must_contain_the_text() {
    let config = r#"{"body_contains": "ok"}"#;
    assert_eq!(
        verdict(config, response(200, br#"{"status":"ok"}"#, 2_000)),
        Verdict::healthy("200 in 2 ms")
    );
    // At either end of the body, and among bytes that are not UTF-8.
    assert!(verdict(config, response(200, b"ok", 0)).health == Health::Healthy);
    assert!(verdict(config, response(200, b"\xff\xfe ok", 0)).health == Health::Healthy);
    let failed = verdict(config, response(200, b"{\"status\":\"o k\"}", 2_000));
    assert_eq!(failed, Verdict::unhealthy("200 but body lacks `ok`"));
    assert!(failed.reason.contains("body lacks `ok`"));
    // Byte for byte: case matters.
    assert_eq!(
        verdict(config, response(200, b"OK", 0)).health,
        Health::Unhealthy
    );
    assert_eq!(
        verdict(config, response(200, b"", 0)).health,
        Health::Unhealthy
    );
}

#[test]
fn a_long_body_text_is_shortened_in_the_reason() {
    let needle = "x".repeat(100);
    let config = format!(r#"{{"body_contains": "{needle}"}}"#);
    let verdict = verdict(&config, response(200, b"nothing", 0));
    assert_eq!(verdict.health, Health::Unhealthy);
    assert!(
        verdict
            .reason
            .ends_with(&format!("lacks `{}…`", "x".repeat(40))),
        "{}",
        verdict.reason
    );
}

#[test]
fn a_wrong_status_is_reported_before_the_body() {
    let verdict = verdict(
        r#"{"body_contains": "ok"}"#,
        response(500, b"not ok", 1_000),
    );
    assert_eq!(verdict, Verdict::unhealthy("status 500, expected 200-399"));
}

#[test]
fn head_ignores_the_body() {
    let verdict = verdict(r#"{"method": "HEAD"}"#, response(200, b"", 1_500));
    assert_eq!(verdict, Verdict::healthy("200 in 1.5 ms"));
}

#[test]
fn slow_but_passing_is_degraded() {
    let config = r#"{"degraded_above_ms": 250}"#;
    assert_eq!(
        verdict(config, response(200, b"", 250_000)),
        Verdict::healthy("200 in 250 ms"),
        "at the ceiling is not above it"
    );
    assert_eq!(
        verdict(config, response(200, b"", 250_001)),
        Verdict::degraded("200 in 250.1 ms, above 250 ms")
    );
    assert_eq!(
        verdict(config, response(204, b"", 900_000)),
        Verdict::degraded("204 in 900 ms, above 250 ms")
    );
    // Without a ceiling, any latency is healthy.
    assert_eq!(
        verdict("{}", response(200, b"", 900_000)).health,
        Health::Healthy
    );
}

#[test]
fn a_ceiling_of_zero_degrades_any_measurable_latency() {
    let config = r#"{"degraded_above_ms": 0}"#;
    assert_eq!(
        verdict(config, response(200, b"", 0)),
        Verdict::healthy("200 in 0 ms")
    );
    assert_eq!(
        verdict(config, response(200, b"", 1)),
        Verdict::degraded("200 in 0.1 ms, above 0 ms")
    );
}

#[test]
fn slow_and_failing_is_unhealthy_not_degraded() {
    let config = r#"{"degraded_above_ms": 10, "body_contains": "ok"}"#;
    assert_eq!(
        verdict(config, response(503, b"ok", 900_000)).health,
        Health::Unhealthy
    );
    assert_eq!(
        verdict(config, response(200, b"no", 900_000)).health,
        Health::Unhealthy
    );
}

#[test]
fn probe_errors_are_unhealthy_with_the_error() {
    for (error, reason) in [
        (ProbeError::Refused, "connection refused"),
        (ProbeError::Timeout, "timed out"),
        (ProbeError::Reset, "connection reset"),
        (
            ProbeError::InvalidResponse("bad status line".into()),
            "invalid response: bad status line",
        ),
    ] {
        let host = TestHost::new();
        let answer_with = error.clone();
        host.on_http(move |_| Err(answer_with.clone()));
        assert_eq!(
            check("{}").check(&target()),
            Verdict::unhealthy(reason),
            "{error:?}"
        );
        assert!(host.logs().is_empty(), "an endpoint fault is not logged");
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
    host.on_http(|_| Err(ProbeError::NotAllowed("header `x-a` is reserved".into())));
    let mut health = check("{}");
    for _ in 0..3 {
        assert_eq!(
            health.check(&target()),
            Verdict {
                health: Health::Unknown,
                reason: "probe not allowed: header `x-a` is reserved".into(),
            }
        );
    }
    let logs = host.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, LogLevel::Warn);
    assert!(logs[0].1.contains("GET /healthz"), "{logs:?}");
    assert!(logs[0].1.contains("header `x-a` is reserved"), "{logs:?}");
}

#[test]
fn each_check_sees_the_current_answer() {
    let host = TestHost::new();
    let status = Rc::new(RefCell::new(200));
    let current = Rc::clone(&status);
    host.on_http(move |_| Ok(response(*current.borrow(), b"", 1_000)));
    let mut health = check("{}");
    assert_eq!(health.check(&target()).health, Health::Healthy);
    *status.borrow_mut() = 502;
    assert_eq!(health.check(&target()).health, Health::Unhealthy);
    *status.borrow_mut() = 200;
    assert_eq!(health.check(&target()).health, Health::Healthy);
}

#[test]
fn latencies_read_in_milliseconds_rounded_up_to_a_tenth() {
    for (micros, shown) in [
        (0, "0 ms"),
        (1, "0.1 ms"),
        (100, "0.1 ms"),
        (101, "0.2 ms"),
        (999, "1 ms"),
        (3_000, "3 ms"),
        (3_040, "3.1 ms"),
        (1_000_050, "1000.1 ms"),
        (u32::MAX, "4294967.3 ms"),
    ] {
        assert_eq!(format_latency(micros), shown, "{micros} µs");
    }
}
