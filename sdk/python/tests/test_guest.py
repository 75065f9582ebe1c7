"""The glue componentize-py calls, run natively against fake bindings with
the generated shapes (tests/fake_wit)."""

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE / "fake_wit"), str(HERE.parent / "guest")]

from componentize_py_types import Err  # noqa: E402
from wit_world.exports import recovery as wit_recovery  # noqa: E402
from wit_world.imports import host as wit_host  # noqa: E402
from wit_world.imports import probe as wit_probe  # noqa: E402
from wit_world.imports import store as wit_store  # noqa: E402
from wit_world.imports import types as wit  # noqa: E402

import switchyard  # noqa: E402
from switchyard import (  # noqa: E402
    Balancer,
    ConfigError,
    Decision,
    Eject,
    Endpoint,
    Failure,
    FailureKind,
    GiveUp,
    Health,
    HealthCheck,
    Load,
    Priority,
    Recovery,
    RequestInfo,
    Retry,
    Verdict,
    host,
    probe,
)


def glue(name: str) -> ModuleType:
    """A guest module, imported afresh so it binds the fake host."""
    module = importlib.import_module(name)
    return importlib.reload(module)


@pytest.fixture(autouse=True)
def fake_host() -> Iterator[None]:
    """A quiet host, and this file's plugin classes as the only ones defined
    (a test that needs others clears them first)."""
    switchyard._registry.registered.clear()
    switchyard._registry.registered.update({Balancer: [Recorder], HealthCheck: [Probing], Recovery: [Echo]})
    wit_host.reset()
    wit_store.reset()
    wit_probe.answer = None
    wit_probe.sent.clear()
    yield


def wit_endpoint(id: int, **fields: object) -> wit.Endpoint:
    values: dict = {"address": f"10.0.0.{id}:80", "weight": 1, "zone": None, "labels": []} | fields
    return wit.Endpoint(id, **values)


# Balancer.


class Recorder(Balancer):
    """Keeps what the glue gives it; picks the endpoint named by the hash."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.endpoints: list[Endpoint] = []
        self.requests: list[RequestInfo] = []

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints

    def pick(self, request: RequestInfo) -> int | None:
        self.requests.append(request)
        return request.hash


def test_create_finds_the_plugin_and_gives_it_the_config_as_a_dict() -> None:
    pool = glue("balancer").PoolBalancer.create('{"window": 2, "zones": ["a"]}')
    assert isinstance(pool._plugin, Recorder)
    assert pool._plugin.config == {"window": 2, "zones": ["a"]}


def test_endpoints_and_requests_are_converted() -> None:
    pool = glue("balancer").PoolBalancer.create("{}")
    pool.set_endpoints([wit_endpoint(4, weight=3, zone="eu-1", labels=[("rack", "r1"), ("gpu", "yes")])])
    assert pool._plugin.endpoints == [Endpoint(4, "10.0.0.4:80", 3, "eu-1", {"rack": "r1", "gpu": "yes"})]
    assert pool.pick(wit.RequestInfo(wit.Priority.P0, 2, 4)) == 4
    assert pool.pick(wit.RequestInfo(wit.Priority.P4, 0, None)) is None
    first, second = pool._plugin.requests
    assert first == RequestInfo(Priority.P0, 2, 4) and first.priority is Priority.P0
    assert second == RequestInfo(Priority.P4, 0, None)


def test_each_pool_has_its_own_object() -> None:
    balancer = glue("balancer")
    a, b = balancer.PoolBalancer.create("{}"), balancer.PoolBalancer.create("{}")
    a.set_endpoints([wit_endpoint(1)])
    assert b._plugin.endpoints == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{", "config is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("", "config is not JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[1, 2]", "config must be a table (a JSON object), got `[1, 2]`"),
        ('"x"', 'config must be a table (a JSON object), got `"x"`'),
    ],
)
def test_a_config_that_is_not_a_json_object_is_refused(config: str, message: str) -> None:
    with pytest.raises(Err) as error:
        glue("balancer").PoolBalancer.create(config)
    assert error.value.value == message


def test_errors_from_init_become_the_refusal() -> None:
    _registry_clear()

    class Picky(Balancer):
        def __init__(self, config: dict) -> None:
            if "window" in config:
                raise ConfigError("config key `window`: must be from 1 to 64, got 0")
            config["missing"]

        def set_endpoints(self, endpoints: list[Endpoint]) -> None: ...
        def pick(self, request: RequestInfo) -> int | None: ...

    balancer = glue("balancer")
    with pytest.raises(Err) as error:
        balancer.PoolBalancer.create('{"window": 0}')
    assert error.value.value == "config key `window`: must be from 1 to 64, got 0"
    with pytest.raises(Err) as error:
        balancer.PoolBalancer.create("{}")
    assert error.value.value == "KeyError: 'missing'"


def _registry_clear() -> None:
    switchyard._registry.registered.clear()


def refusal(module: str) -> str:
    pool = glue(module)
    cls = {"balancer": "PoolBalancer", "health_check": "PoolCheck", "recovery": "PoolRecovery"}[module]
    with pytest.raises(Err) as error:
        getattr(pool, cls).create("{}")
    return error.value.value


def test_no_plugin_class_is_refused_with_what_was_found() -> None:
    _registry_clear()
    assert refusal("balancer") == "the plugin defines no concrete subclass of switchyard.Balancer"

    class Unfinished(Balancer):
        def pick(self, request: RequestInfo) -> int | None: ...

    class Check(HealthCheck):
        def check(self, target: Endpoint) -> Verdict: ...

    message = refusal("balancer")
    assert "`test_no_plugin_class_is_refused_with_what_was_found.<locals>.Unfinished`" in message
    assert "does not implement `set_endpoints`" in message
    assert "is a switchyard.HealthCheck: is `kind` in pyproject.toml right?" in message


def test_two_plugin_classes_are_refused_but_a_subclass_wins_over_its_base() -> None:
    _registry_clear()

    class Base(Balancer):
        def set_endpoints(self, endpoints: list[Endpoint]) -> None: ...
        def pick(self, request: RequestInfo) -> int | None: ...

    class Derived(Base):
        pass

    assert isinstance(glue("balancer").PoolBalancer.create("{}")._plugin, Derived)

    class Other(Base):
        pass

    message = refusal("balancer")
    assert message.startswith("the plugin defines 2 subclasses of switchyard.Balancer: ")
    assert "Derived" in message and "Other" in message and message.endswith("; keep one")


def test_an_exception_from_pick_declines_and_is_logged_once() -> None:
    _registry_clear()

    class Broken(Balancer):
        def set_endpoints(self, endpoints: list[Endpoint]) -> None:
            raise ValueError("bad set")

        def pick(self, request: RequestInfo) -> int | None:
            return 1 // request.attempt

    pool = glue("balancer").PoolBalancer.create("{}")
    pool.set_endpoints([wit_endpoint(0)])
    assert pool.pick(wit.RequestInfo(wit.Priority.P2, 0, None)) is None
    assert pool.pick(wit.RequestInfo(wit.Priority.P2, 0, None)) is None
    assert pool.pick(wit.RequestInfo(wit.Priority.P2, 1, None)) == 1
    levels = [level for level, _ in wit_host.logs]
    assert levels == [wit_host.LogLevel.ERROR, wit_host.LogLevel.ERROR]
    set_line, pick_line = (line for _, line in wit_host.logs)
    assert set_line.startswith("test_an_exception_from_pick_declines_and_is_logged_once.<locals>.Broken.set_endpoints raised ValueError: bad set at ")
    assert "Broken.pick raised ZeroDivisionError: integer division or modulo by zero at " in pick_line
    assert "test_guest.py:" in pick_line and "the pick is declined" in pick_line


@pytest.mark.parametrize("answer", [-1, 2**32, "3", 1.0, True, Endpoint(1, "a:80")])
def test_a_pick_that_is_not_an_id_declines(answer: object) -> None:
    _registry_clear()

    class Wrong(Balancer):
        def set_endpoints(self, endpoints: list[Endpoint]) -> None: ...
        def pick(self, request: RequestInfo) -> int | None:
            return answer  # type: ignore[return-value]

    pool = glue("balancer").PoolBalancer.create("{}")
    assert pool.pick(wit.RequestInfo(wit.Priority.P2, 0, None)) is None
    assert len(wit_host.logs) == 1 and "pick's answer must be an int from 0 to 4294967295" in wit_host.logs[0][1]


def test_ids_at_the_limits_are_answered() -> None:
    _registry_clear()

    class Edge(Balancer):
        def set_endpoints(self, endpoints: list[Endpoint]) -> None: ...
        def pick(self, request: RequestInfo) -> int | None:
            return request.hash

    pool = glue("balancer").PoolBalancer.create("{}")
    assert pool.pick(wit.RequestInfo(wit.Priority.P2, 0, 0)) == 0
    assert pool.pick(wit.RequestInfo(wit.Priority.P2, 0, 2**32 - 1)) == 2**32 - 1


# The host, seen from a plugin inside a component.


def test_host_calls_reach_the_imports_in_the_sdk_types() -> None:
    glue("balancer")
    host.warn("careful")
    host.log(host.LogLevel.TRACE, "fine")
    assert wit_host.logs == [(wit_host.LogLevel.WARN, "careful"), (wit_host.LogLevel.TRACE, "fine")]
    wit_host.now = 77
    assert host.now_ns() == 77
    wit_host.loads[1] = wit.Load(3, 10, 900, 995, wit.Health.DEGRADED)
    assert host.endpoint_load(1) == Load(3, 10, 900, 995, Health.DEGRADED)
    assert host.endpoint_load(2) is None
    assert host.endpoint_load_pair(2, 1) == (None, Load(3, 10, 900, 995, Health.DEGRADED))
    wit_host.headers["x-tenant"] = "blue"
    assert host.request_header("x-tenant") == "blue"


def test_random_numbers_come_from_wyrand_seeded_once_by_the_host() -> None:
    glue("balancer")
    numbers = [host.random_u64() for _ in range(1000)]
    assert wit_host.random_calls == 1
    assert len(set(numbers)) == 1000 and all(0 <= n < 2**64 for n in numbers)
    # wyrand from the host's seed 12345, as computed by the fastrand crate.
    seed = (12345 + 0xA0761D6478BD642F) % 2**64
    product = seed * (seed ^ 0xE7037ED1A0B428DB)
    assert numbers[0] == ((product >> 64) ^ product) % 2**64


def test_probes_outside_a_health_check_are_not_allowed() -> None:
    glue("balancer")
    with pytest.raises(probe.NotAllowed, match="probes are for health checks"):
        probe.http(probe.HttpRequest("/"))
    with pytest.raises(probe.NotAllowed):
        probe.tcp_connect(10)


# Health check.


class Probing(HealthCheck):
    """Probes once and reports what it got."""

    def check(self, target: Endpoint) -> Verdict:
        try:
            response = probe.http(probe.HttpRequest("/ready", "HEAD", [("x-a", "1")], 250))
        except probe.NotAllowed as error:
            return Verdict.unknown(f"not allowed ({error.why})")
        except probe.ProbeError as error:
            return Verdict.unhealthy(f"{target.address}: {type(error).__name__}: {error}")
        return Verdict.degraded(f"{response.status} {response.text} {response.header('A')} {response.latency_us}")


def test_check_sends_the_probe_and_converts_the_verdict() -> None:
    health = glue("health_check")
    wit_probe.answer = wit_probe.HttpResponse(200, [("a", "b")], b"up", 1500)
    verdict = health.PoolCheck.create("{}").check(wit_endpoint(2))
    assert verdict == health.wit.Verdict(wit.Health.DEGRADED, "200 up b 1500")
    assert wit_probe.sent == [wit_probe.HttpRequest("HEAD", "/ready", [("x-a", "1")], 250)]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (wit_probe.ProbeError_Refused(), "10.0.0.2:80: Refused: connection refused"),
        (wit_probe.ProbeError_Timeout(), "10.0.0.2:80: Timeout: timed out"),
        (wit_probe.ProbeError_Reset(), "10.0.0.2:80: Reset: connection reset"),
        (wit_probe.ProbeError_InvalidResponse("no status"), "10.0.0.2:80: InvalidResponse: invalid response: no status"),
    ],
)
def test_probe_errors_are_raised_as_the_sdk_errors(error: object, reason: str) -> None:
    health = glue("health_check")
    wit_probe.answer = Err(error)
    assert health.PoolCheck.create("{}").check(wit_endpoint(2)) == health.wit.Verdict(wit.Health.UNHEALTHY, reason)


def test_a_probe_the_host_refuses_raises_not_allowed() -> None:
    health = glue("health_check")
    wit_probe.answer = Err(wit_probe.ProbeError_NotAllowed("method"))
    verdict = health.PoolCheck.create("{}").check(wit_endpoint(2))
    assert verdict == health.wit.Verdict(wit.Health.UNKNOWN, "not allowed (method)")


def test_tcp_connect_answers_micros_or_raises() -> None:
    glue("health_check")
    wit_probe.answer = 321
    assert probe.tcp_connect(50) == 321
    assert wit_probe.sent == [50]
    wit_probe.answer = Err(wit_probe.ProbeError_Timeout())
    with pytest.raises(probe.Timeout):
        probe.tcp_connect(50)


@pytest.mark.parametrize("health", list(Health))
def test_every_health_converts(health: Health) -> None:
    _registry_clear()

    class Fixed(HealthCheck):
        def check(self, target: Endpoint) -> Verdict:
            return Verdict(health, "fixed")

    module = glue("health_check")
    verdict = module.PoolCheck.create("{}").check(wit_endpoint(0))
    assert verdict.health is getattr(wit.Health, health.name) and verdict.reason == "fixed"


@pytest.mark.parametrize("answer", ["ok", None, Verdict("healthy", "x")])  # type: ignore[arg-type]
def test_an_exception_or_a_wrong_answer_from_check_is_unknown(answer: object) -> None:
    _registry_clear()

    class Broken(HealthCheck):
        def check(self, target: Endpoint) -> Verdict:
            if target.id == 0:
                raise RuntimeError("no luck")
            return answer  # type: ignore[return-value]

    module = glue("health_check")
    pool = module.PoolCheck.create("{}")
    verdict = pool.check(wit_endpoint(0))
    assert verdict == module.wit.Verdict(wit.Health.UNKNOWN, "check raised RuntimeError: no luck")
    verdict = pool.check(wit_endpoint(1))
    assert verdict.health is wit.Health.UNKNOWN and verdict.reason.startswith("check raised TypeError: check returned")
    assert len(wit_host.logs) == 1, "logged once per pool"


# Recovery.


class Echo(Recovery):
    """Keeps the failure; decides what the test set."""

    decision: Decision = GiveUp()

    def on_failure(self, failure: Failure) -> Decision:
        self.failure = failure
        return self.decision


def wit_failure(kind: object) -> wit_recovery.Failure:
    return wit_recovery.Failure(5, kind, wit.RequestInfo(wit.Priority.P1, 1, 9), "PUT", False, 40)


@pytest.mark.parametrize(
    ("kind", "expected", "status", "grpc_status"),
    [
        (wit_recovery.FailureKind_ConnectRefused(), FailureKind.CONNECT_REFUSED, None, None),
        (wit_recovery.FailureKind_ConnectTimeout(), FailureKind.CONNECT_TIMEOUT, None, None),
        (wit_recovery.FailureKind_Reset(), FailureKind.RESET, None, None),
        (wit_recovery.FailureKind_ResponseTimeout(), FailureKind.RESPONSE_TIMEOUT, None, None),
        (wit_recovery.FailureKind_Status(503), FailureKind.STATUS, 503, None),
        (wit_recovery.FailureKind_GrpcStatus(14), FailureKind.GRPC_STATUS, None, 14),
    ],
)
def test_failures_are_converted(kind: object, expected: FailureKind, status: int | None, grpc_status: int | None) -> None:
    pool = glue("recovery").PoolRecovery.create("{}")
    pool.on_failure(wit_failure(kind))
    assert pool._plugin.failure == Failure(
        endpoint=5,
        kind=expected,
        request=RequestInfo(Priority.P1, 1, 9),
        method="PUT",
        replayable=False,
        elapsed_ms=40,
        status=status,
        grpc_status=grpc_status,
    )


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (GiveUp(), wit_recovery.Decision_GiveUp(None)),
        (GiveUp(502), wit_recovery.Decision_GiveUp(502)),
        (Retry(), wit_recovery.Decision_Retry(wit_recovery.Retry(0, False))),
        (Retry(25, same_endpoint=True), wit_recovery.Decision_Retry(wit_recovery.Retry(25, True))),
        (Eject(30_000), wit_recovery.Decision_Eject(wit_recovery.Ejection(30_000, None))),
        (Eject(1, Retry(2)), wit_recovery.Decision_Eject(wit_recovery.Ejection(1, wit_recovery.Retry(2, False)))),
    ],
)
def test_decisions_are_converted(decision: Decision, expected: object) -> None:
    pool = glue("recovery").PoolRecovery.create("{}")
    pool._plugin.decision = decision
    assert pool.on_failure(wit_failure(wit_recovery.FailureKind_Reset())) == expected
    assert wit_host.logs == []


@pytest.mark.parametrize("decision", [None, "retry", Retry(-1), GiveUp(70_000), Eject(2**32)])
def test_a_wrong_decision_gives_up(decision: object) -> None:
    pool = glue("recovery").PoolRecovery.create("{}")
    pool._plugin.decision = decision
    assert pool.on_failure(wit_failure(wit_recovery.FailureKind_Reset())) == wit_recovery.Decision_GiveUp(None)
    assert len(wit_host.logs) == 1 and "Echo.on_failure raised TypeError" in wit_host.logs[0][1]
    assert "the request is given up" in wit_host.logs[0][1]


def test_an_exception_from_on_failure_gives_up_and_is_logged_once() -> None:
    _registry_clear()

    class Broken(Recovery):
        def on_failure(self, failure: Failure) -> Decision:
            raise LookupError(failure.method)

    pool = glue("recovery").PoolRecovery.create("{}")
    for _ in range(3):
        assert pool.on_failure(wit_failure(wit_recovery.FailureKind_Reset())) == wit_recovery.Decision_GiveUp(None)
    assert len(wit_host.logs) == 1 and "raised LookupError: PUT" in wit_host.logs[0][1]


# The store and the state carried across a swap.


def test_store_calls_reach_the_import_and_its_refusals_become_store_errors() -> None:
    from switchyard import store
    from switchyard.store import StoreError

    glue("balancer")
    assert store.add(3, "run", 2) == 2
    assert store.get(3, "run") == 2
    assert store.compare_and_swap(3, "run", 2, 7) == 2
    assert wit_store.entries == {(3, "run"): 7}
    for name in "abc":
        store.add(None, name, 1)
    with pytest.raises(StoreError) as refused:
        store.add(None, "d", 1)
    assert refused.value.code == "full"
    with pytest.raises(StoreError) as refused:
        store.add(None, "", 1)
    assert refused.value.code == "bad-name"


def test_a_health_check_has_no_store() -> None:
    from switchyard import store
    from switchyard.store import StoreError

    glue("health_check")
    assert store.get(None, "x") == 0
    with pytest.raises(StoreError) as refused:
        store.add(None, "x", 1)
    assert refused.value.code == "no-pool"


class Carried(Balancer):
    def __init__(self, config: dict) -> None:
        self.turn = config.get("turn", 0)

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        pass

    def pick(self, request: RequestInfo) -> int | None:
        return None

    def snapshot(self) -> bytes:
        return bytes([self.turn])

    def restore(self, state: bytes) -> None:
        if len(state) != 1:
            raise ValueError(f"expected 1 byte, got {len(state)}")
        self.turn = state[0]


def test_state_is_carried_from_one_pools_object_to_the_next() -> None:
    switchyard._registry.registered[Balancer] = [Carried]
    pools = glue("balancer")
    state = glue("balancer_state").BalancerState()
    old = pools.PoolBalancer.create('{"turn": 5}')
    new = pools.PoolBalancer.create("{}")
    state.restore(new, state.snapshot(old))
    assert new._plugin.turn == 5
    with pytest.raises(Err) as refused:
        state.restore(new, b"\x01\x02")
    assert refused.value.value == "expected 1 byte, got 2"


def test_a_snapshot_that_is_not_bytes_carries_nothing_and_is_logged() -> None:
    class Wrong(Carried):
        def snapshot(self) -> bytes:
            return "five"  # type: ignore[return-value]

    switchyard._registry.registered[Balancer] = [Wrong]
    pools = glue("balancer")
    state = glue("balancer_state").BalancerState()
    assert state.snapshot(pools.PoolBalancer.create("{}")) == b""
    assert "snapshot returned str, not bytes" in wit_host.logs[0][1]


def test_a_plugin_without_state_carries_nothing() -> None:
    pools = glue("recovery")
    state = glue("recovery_state").RecoveryState()
    pool = pools.PoolRecovery.create("{}")
    assert state.snapshot(pool) == b""
    state.restore(pool, b"anything")
