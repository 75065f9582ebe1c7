"""The stand-in host and the helpers plugin tests use."""

import pytest

from switchyard import Balancer, ConfigError, Endpoint, Load, Recovery, GiveUp, RequestInfo, host, probe
from switchyard.testing import TestHost, configure, endpoints, pick_counts


def test_host_calls_without_a_test_host_say_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"switchyard.host.now_ns: .*TestHost\(\)"):
        host.now_ns()


def test_a_new_test_host_starts_afresh() -> None:
    first = TestHost()
    first.set_load(1, Load(in_flight=4))
    first.set_header("a", "1")
    host.info("old")
    second = TestHost()
    assert host.endpoint_load(1) is None
    assert host.request_header("a") is None
    assert second.logs == []
    assert host.now_ns() == 1_000_000_000


def test_the_clock_moves_only_when_advanced() -> None:
    test_host = TestHost()
    start = host.now_ns()
    assert host.now_ns() == start
    test_host.advance(ms=2)
    test_host.advance(ns=7)
    assert host.now_ns() - start == 2_000_007


def test_random_numbers_are_reproducible_and_64_bit() -> None:
    test_host = TestHost()
    first = [host.random_u64() for _ in range(100)]
    TestHost()
    assert [host.random_u64() for _ in range(100)] == first
    assert len(set(first)) == 100
    assert all(0 <= n < 2**64 for n in first)
    assert any(n >= 2**63 for n in first)
    test_host.seed(7)
    seven = host.random_u64()
    test_host.seed(8)
    assert host.random_u64() != seven


def test_random_below_covers_its_range_evenly() -> None:
    TestHost()
    counts = [0] * 4
    for _ in range(4000):
        counts[host.random_below(4)] += 1
    assert all(800 < count < 1200 for count in counts), counts
    assert host.random_below(0) == 0
    assert host.random_below(1) == 0


def test_loads_pairs_and_headers() -> None:
    test_host = TestHost()
    test_host.set_load(2, Load(in_flight=1, capacity=10))
    assert host.endpoint_load_pair(2, 3) == (Load(in_flight=1, capacity=10), None)
    test_host.set_header("X-Tenant", "blue")
    assert host.request_header("X-TENANT") == "blue"
    test_host.clear_headers()
    assert host.request_header("x-tenant") is None


def test_logs_keep_level_and_order() -> None:
    test_host = TestHost()
    host.trace("a")
    host.debug("b")
    host.info("c")
    host.warn("d")
    host.error("e")
    host.log(host.LogLevel.INFO, "f")
    assert test_host.logs == [
        (host.LogLevel.TRACE, "a"),
        (host.LogLevel.DEBUG, "b"),
        (host.LogLevel.INFO, "c"),
        (host.LogLevel.WARN, "d"),
        (host.LogLevel.ERROR, "e"),
        (host.LogLevel.INFO, "f"),
    ]


def test_probes_are_refused_until_a_handler_answers() -> None:
    test_host = TestHost()
    with pytest.raises(probe.Refused):
        probe.http(probe.HttpRequest("/"))
    with pytest.raises(probe.Refused):
        probe.tcp_connect(100)
    seen: list[probe.HttpRequest] = []

    def answer(request: probe.HttpRequest) -> probe.HttpResponse:
        seen.append(request)
        return probe.HttpResponse(204, latency_us=5)

    test_host.on_http(answer)
    test_host.on_tcp_connect(lambda timeout_ms: timeout_ms // 2)
    assert probe.http(probe.HttpRequest("/ready", method="HEAD")).status == 204
    assert seen == [probe.HttpRequest("/ready", "HEAD", [], 1000)]
    assert probe.tcp_connect(300) == 150


def test_probe_errors_read_as_reasons_and_compare_by_value() -> None:
    assert [str(e) for e in (probe.Refused(), probe.Timeout(), probe.Reset())] == [
        "connection refused",
        "timed out",
        "connection reset",
    ]
    assert str(probe.InvalidResponse("no status")) == "invalid response: no status"
    assert str(probe.NotAllowed("path")) == "not allowed: path"
    assert probe.NotAllowed("a") == probe.NotAllowed("a") != probe.NotAllowed("b")
    assert probe.Timeout() != probe.Reset()


def test_endpoints_are_numbered_from_zero() -> None:
    assert endpoints(2) == [Endpoint(0, "10.0.0.0:80"), Endpoint(1, "10.0.0.1:80")]
    assert endpoints(0) == []


class Alternate(Balancer):
    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.calls = 0

    def pick(self, request: RequestInfo) -> int | None:
        self.calls += 1
        if request.attempt > 0 or self.calls % 2:
            return None
        return 3


def test_pick_counts_skips_declined_picks_and_passes_the_request() -> None:
    balancer = Alternate({})
    balancer.set_endpoints(endpoints(4))
    assert pick_counts(balancer, 10) == [0, 0, 0, 5]
    assert pick_counts(balancer, 10, RequestInfo(attempt=1)) == []


def test_configure_parses_json_as_the_host_does() -> None:
    class Never(Recovery):
        def on_failure(self, failure: object) -> GiveUp:
            return GiveUp()

    assert isinstance(configure(Never), Never)
    with pytest.raises(ConfigError, match="config is not JSON"):
        configure(Never, "{")
    with pytest.raises(ConfigError, match=r"config must be a table \(a JSON object\), got `\[1\]`"):
        configure(Never, "[1]")
    with pytest.raises(ConfigError, match="unknown key `x`; the plugin takes no options"):
        configure(Never, '{"x": 1}')


def test_the_store_is_shared_by_every_object_and_bounded() -> None:
    from switchyard import store
    from switchyard.store import StoreError

    test_host = TestHost()
    test_host.set_store_entries(2)
    assert store.add(1, "run", 1) == 1
    assert store.add(1, "run", 2**63 - 1) == -(2**63), "wraps at 64 bits"
    assert store.compare_and_swap(None, "open", 5, 6) == 0, "a missing entry holds 0"
    assert test_host.store == {(1, "run"): -(2**63)}
    assert store.compare_and_swap(None, "open", 0, 6) == 0
    with pytest.raises(StoreError) as refused:
        store.add(2, "run", 1)
    assert refused.value.code == "full"
    with pytest.raises(StoreError) as refused:
        store.add(None, "x" * 65, 1)
    assert refused.value.code == "bad-name"
    with pytest.raises(TypeError):
        store.add(None, "run", 2**63)
    TestHost()
    assert store.get(1, "run") == 0, "a new TestHost starts empty"
