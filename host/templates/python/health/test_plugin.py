import pytest

from plugin import HttpGet
from switchyard import ConfigError, Health, Verdict, probe
from switchyard.testing import TestHost, configure, endpoints

TARGET = endpoints(1)[0]


@pytest.fixture
def host() -> TestHost:
    return TestHost()


def answer(status: int) -> probe.HttpResponse:
    return probe.HttpResponse(status, latency_us=1_500)


def test_a_2xx_answer_is_healthy_and_the_configured_path_is_asked(host: TestHost) -> None:
    seen: list[probe.HttpRequest] = []

    def handler(request: probe.HttpRequest) -> probe.HttpResponse:
        seen.append(request)
        return answer(200)

    host.on_http(handler)
    check = configure(HttpGet, '{"path": "/ready", "timeout_ms": 250}')
    assert check.check(TARGET) == Verdict.healthy("200 in 2 ms")
    assert [(r.method, r.path, r.timeout_ms) for r in seen] == [("GET", "/ready", 250)]


def test_a_5xx_answer_is_unhealthy(host: TestHost) -> None:
    host.on_http(lambda request: answer(503))
    assert configure(HttpGet).check(TARGET) == Verdict.unhealthy("status 503, expected 200-399")


def test_no_answer_is_unhealthy_with_the_probe_error(host: TestHost) -> None:
    def refuse(request: probe.HttpRequest) -> probe.HttpResponse:
        raise probe.Refused()

    host.on_http(refuse)
    assert configure(HttpGet).check(TARGET) == Verdict.unhealthy("connection refused")


def test_a_refused_probe_is_unknown(host: TestHost) -> None:
    def not_allowed(request: probe.HttpRequest) -> probe.HttpResponse:
        raise probe.NotAllowed("path")

    host.on_http(not_allowed)
    assert configure(HttpGet).check(TARGET).health is Health.UNKNOWN


def test_bad_config_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match="`path`"):
        configure(HttpGet, '{"path": "healthz"}')
    with pytest.raises(ConfigError, match="`timeout_ms`"):
        configure(HttpGet, '{"timeout_ms": 0}')
