import json

import pytest

from plugin import DEFAULT_EXPECTED_STATUSES, MAX_BODY_BYTES, HttpHealth, StatusRange, format_latency
from switchyard import ConfigError, Endpoint, Health, Verdict, probe
from switchyard.host import LogLevel
from switchyard.testing import TestHost, configure

TARGET = Endpoint(3, "10.0.0.3:8080")


@pytest.fixture
def host() -> TestHost:
    return TestHost()


def response(status: int, body: bytes = b"", latency_us: int = 0) -> probe.HttpResponse:
    return probe.HttpResponse(status, [], body, latency_us)


def answer(host: TestHost, with_response: probe.HttpResponse) -> list[probe.HttpRequest]:
    """Answers every probe with `with_response`; returns the requests seen."""
    seen: list[probe.HttpRequest] = []

    def handler(request: probe.HttpRequest) -> probe.HttpResponse:
        seen.append(request)
        return with_response

    host.on_http(handler)
    return seen


def verdict(config: str, with_response: probe.HttpResponse) -> Verdict:
    """The verdict of one check against an endpoint answering `with_response`."""
    host = TestHost()
    answer(host, with_response)
    return configure(HttpHealth, config).check(TARGET)


def test_config_defaults() -> None:
    check = configure(HttpHealth, "{}")
    assert check.request == probe.HttpRequest("/healthz", "GET", [], 1_000)
    assert check.expected == DEFAULT_EXPECTED_STATUSES == (StatusRange(200, 399),)
    assert check.body_contains is None
    assert check.degraded_above_ms is None


def test_the_probe_sends_the_configured_request(host: TestHost) -> None:
    seen = answer(host, response(200, latency_us=100))
    check = configure(
        HttpHealth,
        '{"path": "/ready?deep=1", "method": "head", "timeout_ms": 300,'
        ' "headers": {"x-probe": "switchyard", "Host": "api.internal"}}',
    )
    check.check(TARGET)
    check.check(TARGET)
    assert len(seen) == 2, "one probe per check"
    # Sorted by name, so the request is the same on every check.
    assert seen[0] == probe.HttpRequest(
        "/ready?deep=1", "HEAD", [("Host", "api.internal"), ("x-probe", "switchyard")], 300
    )
    assert seen[0] == seen[1]


def test_status_items_parse_as_numbers_ranges_and_classes() -> None:
    check = configure(HttpHealth, '{"expected_statuses": [204, "200-299", "3xx", "418", " 500 - 503 "]}')
    assert [(r.first, r.last) for r in check.expected] == [(204, 204), (200, 299), (300, 399), (418, 418), (500, 503)]
    assert [str(r) for r in check.expected] == ["204", "200-299", "300-399", "418", "500-503"]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ('{"paht": "/"}', "paht"),
        ('{"path": "healthz"}', "path"),
        ('{"path": ""}', "path"),
        ('{"path": "/a b"}', "path"),
        ('{"path": "/a\\nb"}', "path"),
        ('{"path": "/ready#frag"}', "path"),
        ('{"path": "/café"}', "path"),
        ('{"path": 5}', "path"),
        ('{"method": "POST"}', "method"),
        ('{"method": "OPTIONS"}', "method"),
        ('{"method": ""}', "method"),
        ('{"headers": ["x-a", "b"]}', "headers"),
        ('{"headers": {"x-a": 1}}', "headers.x-a"),
        ('{"headers": {"bad name": "v"}}', "headers"),
        ('{"headers": {"": "v"}}', "headers"),
        ('{"headers": {"x-a": "v\\r\\nx-injected: 1"}}', "headers"),
        ('{"headers": {"Content-Length": "0"}}', "headers"),
        ('{"headers": {"transfer-encoding": "chunked"}}', "headers"),
        ('{"headers": {"connection": "close"}}', "headers"),
        ('{"expected_statuses": []}', "expected_statuses"),
        ('{"expected_statuses": 200}', "expected_statuses"),
        ('{"expected_statuses": [99]}', "expected_statuses[0]"),
        ('{"expected_statuses": [200, 600]}', "expected_statuses[1]"),
        ('{"expected_statuses": [-200]}', "expected_statuses[0]"),
        ('{"expected_statuses": [200.5]}', "expected_statuses[0]"),
        ('{"expected_statuses": [true]}', "expected_statuses[0]"),
        ('{"expected_statuses": ["299-200"]}', "expected_statuses[0]"),
        ('{"expected_statuses": ["200-"]}', "expected_statuses[0]"),
        ('{"expected_statuses": ["200-700"]}', "expected_statuses[0]"),
        ('{"expected_statuses": ["6xx"]}', "expected_statuses[0]"),
        ('{"expected_statuses": ["ok"]}', "expected_statuses[0]"),
        ('{"body_contains": ""}', "body_contains"),
        ('{"body_contains": 1}', "body_contains"),
        ('{"method": "HEAD", "body_contains": "ok"}', "body_contains"),
        ('{"timeout_ms": 0}', "timeout_ms"),
        ('{"timeout_ms": -1}', "timeout_ms"),
        ('{"timeout_ms": "1s"}', "timeout_ms"),
        ('{"degraded_above_ms": 1000}', "degraded_above_ms"),
        ('{"degraded_above_ms": 300, "timeout_ms": 200}', "degraded_above_ms"),
        ('{"degraded_above_ms": -5}', "degraded_above_ms"),
    ],
)
def test_rejects_bad_config_naming_the_key(config: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        configure(HttpHealth, config)
    assert f"`{key}`" in str(error.value)


def test_rejects_configs_that_are_not_tables_or_too_long() -> None:
    too_long = json.dumps({"body_contains": "a" * (MAX_BODY_BYTES + 1)})
    with pytest.raises(ConfigError, match="`body_contains`: 65537 bytes can never match a body cut at 65536"):
        configure(HttpHealth, too_long)
    with pytest.raises(ConfigError, match="table"):
        configure(HttpHealth, "[]")
    with pytest.raises(ConfigError, match="not JSON"):
        configure(HttpHealth, "{")


@pytest.mark.parametrize(
    "config",
    [
        '{"path": "/"}',
        '{"path": "/a/b?c=d&e=%20"}',
        '{"method": "HEAD"}',
        '{"expected_statuses": [100, 599, "1xx", "5XX", "100-599"]}',
        '{"degraded_above_ms": 999}',
        '{"degraded_above_ms": 0, "timeout_ms": 1}',
        '{"headers": {"X-Trace_ID!": "a\\tb"}}',
        '{"timeout_ms": 4294967295}',
        json.dumps({"body_contains": "a" * MAX_BODY_BYTES}),
    ],
)
def test_accepts_values_at_the_limits(config: str) -> None:
    configure(HttpHealth, config)


@pytest.mark.parametrize("status", [200, 204, 301, 399])
def test_by_default_any_2xx_or_3xx_passes(status: int) -> None:
    assert verdict("{}", response(status, latency_us=3_000)) == Verdict.healthy(f"{status} in 3 ms")


@pytest.mark.parametrize("status", [100, 199, 400, 404, 500, 503])
def test_by_default_other_statuses_fail(status: int) -> None:
    assert verdict("{}", response(status, latency_us=3_000)) == Verdict.unhealthy(
        f"status {status}, expected 200-399"
    )


def test_only_the_listed_statuses_pass() -> None:
    config = '{"expected_statuses": [204, "300-302"]}'
    for status in [204, 300, 301, 302]:
        assert verdict(config, response(status, latency_us=1_000)).health is Health.HEALTHY, status
    for status in [200, 203, 205, 299, 303]:
        assert verdict(config, response(status, latency_us=1_000)) == Verdict.unhealthy(
            f"status {status}, expected 204, 300-302"
        )


def test_body_must_contain_the_text() -> None:
    config = '{"body_contains": "ok"}'
    assert verdict(config, response(200, b'{"status":"ok"}', 2_000)) == Verdict.healthy("200 in 2 ms")
    # At either end of the body, and among bytes that are not UTF-8.
    assert verdict(config, response(200, b"ok")).health is Health.HEALTHY
    assert verdict(config, response(200, b"\xff\xfe ok")).health is Health.HEALTHY
    assert verdict(config, response(200, b'{"status":"o k"}', 2_000)) == Verdict.unhealthy(
        "200 but body lacks `ok`"
    )
    # Byte for byte: case matters.
    assert verdict(config, response(200, b"OK")).health is Health.UNHEALTHY
    assert verdict(config, response(200, b"")).health is Health.UNHEALTHY


def test_a_long_body_text_is_shortened_in_the_reason() -> None:
    found = verdict(json.dumps({"body_contains": "x" * 100}), response(200, b"nothing"))
    assert found.health is Health.UNHEALTHY
    assert found.reason.endswith(f"lacks `{'x' * 40}…`"), found.reason


def test_a_wrong_status_is_reported_before_the_body() -> None:
    found = verdict('{"body_contains": "ok"}', response(500, b"not ok", 1_000))
    assert found == Verdict.unhealthy("status 500, expected 200-399")


def test_head_ignores_the_body() -> None:
    assert verdict('{"method": "HEAD"}', response(200, b"", 1_500)) == Verdict.healthy("200 in 1.5 ms")


def test_slow_but_passing_is_degraded() -> None:
    config = '{"degraded_above_ms": 250}'
    assert verdict(config, response(200, latency_us=250_000)) == Verdict.healthy("200 in 250 ms"), (
        "at the ceiling is not above it"
    )
    assert verdict(config, response(200, latency_us=250_001)) == Verdict.degraded("200 in 250.1 ms, above 250 ms")
    assert verdict(config, response(204, latency_us=900_000)) == Verdict.degraded("204 in 900 ms, above 250 ms")
    # Without a ceiling, any latency is healthy.
    assert verdict("{}", response(200, latency_us=900_000)).health is Health.HEALTHY


def test_a_ceiling_of_zero_degrades_any_measurable_latency() -> None:
    config = '{"degraded_above_ms": 0}'
    assert verdict(config, response(200, latency_us=0)) == Verdict.healthy("200 in 0 ms")
    assert verdict(config, response(200, latency_us=1)) == Verdict.degraded("200 in 0.1 ms, above 0 ms")


def test_slow_and_failing_is_unhealthy_not_degraded() -> None:
    config = '{"degraded_above_ms": 10, "body_contains": "ok"}'
    assert verdict(config, response(503, b"ok", 900_000)).health is Health.UNHEALTHY
    assert verdict(config, response(200, b"no", 900_000)).health is Health.UNHEALTHY


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (probe.Refused(), "connection refused"),
        (probe.Timeout(), "timed out"),
        (probe.Reset(), "connection reset"),
        (probe.InvalidResponse("bad status line"), "invalid response: bad status line"),
    ],
)
def test_probe_errors_are_unhealthy_with_the_error(host: TestHost, error: probe.ProbeError, reason: str) -> None:
    def fail(request: probe.HttpRequest) -> probe.HttpResponse:
        raise error

    host.on_http(fail)
    assert configure(HttpHealth).check(TARGET) == Verdict.unhealthy(reason)
    assert host.logs == [], "an endpoint fault is not logged"


def test_with_no_handler_the_test_host_refuses(host: TestHost) -> None:
    assert configure(HttpHealth).check(TARGET) == Verdict.unhealthy("connection refused")


def test_a_probe_the_host_refuses_is_unknown_and_warned_once(host: TestHost) -> None:
    def refuse(request: probe.HttpRequest) -> probe.HttpResponse:
        raise probe.NotAllowed("header `x-a` is reserved")

    host.on_http(refuse)
    check = configure(HttpHealth)
    for _ in range(3):
        assert check.check(TARGET) == Verdict(Health.UNKNOWN, "probe not allowed: header `x-a` is reserved")
    assert len(host.logs) == 1, host.logs
    level, line = host.logs[0]
    assert level is LogLevel.WARN
    assert "GET /healthz" in line and "header `x-a` is reserved" in line


def test_each_check_sees_the_current_answer(host: TestHost) -> None:
    status = [200]
    host.on_http(lambda request: response(status[0], latency_us=1_000))
    check = configure(HttpHealth)
    assert check.check(TARGET).health is Health.HEALTHY
    status[0] = 502
    assert check.check(TARGET).health is Health.UNHEALTHY
    status[0] = 200
    assert check.check(TARGET).health is Health.HEALTHY


@pytest.mark.parametrize(
    ("micros", "shown"),
    [
        (0, "0 ms"),
        (1, "0.1 ms"),
        (100, "0.1 ms"),
        (101, "0.2 ms"),
        (999, "1 ms"),
        (3_000, "3 ms"),
        (3_040, "3.1 ms"),
        (1_000_050, "1000.1 ms"),
        (2**32 - 1, "4294967.3 ms"),
    ],
)
def test_latencies_read_in_milliseconds_rounded_up_to_a_tenth(micros: int, shown: str) -> None:
    assert format_latency(micros) == shown
