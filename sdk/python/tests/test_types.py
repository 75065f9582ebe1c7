"""The SDK's types, base classes and config helpers."""

import pytest

from switchyard import (
    Balancer,
    ConfigError,
    Eject,
    Endpoint,
    Failure,
    FailureKind,
    GiveUp,
    Health,
    HealthCheck,
    Priority,
    Recovery,
    RequestInfo,
    Retry,
    Verdict,
    config,
)


def test_defaults_match_the_rust_sdk() -> None:
    assert Endpoint(1, "a:80") == Endpoint(1, "a:80", 1, None, {})
    assert RequestInfo() == RequestInfo(Priority.P2, 0, None)
    assert Failure(0, FailureKind.RESET).request == RequestInfo()


def test_health_and_priority() -> None:
    assert [h.is_serving() for h in Health] == [True, True, False, True]
    assert sorted([Priority.P3, Priority.P0, Priority.P4]) == [Priority.P0, Priority.P3, Priority.P4]


def test_failure_kinds_with_a_status() -> None:
    assert [kind for kind in FailureKind if kind.is_status()] == [FailureKind.STATUS, FailureKind.GRPC_STATUS]


def test_verdict_constructors() -> None:
    assert Verdict.healthy("a") == Verdict(Health.HEALTHY, "a")
    assert Verdict.degraded("b") == Verdict(Health.DEGRADED, "b")
    assert Verdict.unhealthy("c") == Verdict(Health.UNHEALTHY, "c")
    assert Verdict.unknown("d") == Verdict(Health.UNKNOWN, "d")


def test_decisions_are_values() -> None:
    assert Retry() == Retry(0, False)
    assert Eject(10, Retry(5)) == Eject(10, Retry(5, False))
    assert GiveUp() != GiveUp(503)
    assert len({GiveUp(), GiveUp(None), Retry()}) == 2


def test_a_base_class_cannot_be_made_without_its_methods() -> None:
    class Half(Balancer):
        def pick(self, request: RequestInfo) -> int | None:
            return None

    with pytest.raises(TypeError, match="set_endpoints"):
        Half({})  # type: ignore[abstract]


@pytest.mark.parametrize("base", [Balancer, HealthCheck, Recovery])
def test_the_default_init_takes_no_options(base: type) -> None:
    methods = {"set_endpoints": lambda self, e: None, "pick": lambda self, r: None}
    methods |= {"check": lambda self, t: None, "on_failure": lambda self, f: None}
    plugin = type("Plugin", (base,), methods)
    plugin({})
    with pytest.raises(ConfigError, match="unknown key `speed`"):
        plugin({"speed": 1})


def test_config_helpers_name_the_key() -> None:
    assert config.integer({"n": 3}, "n", default=1, minimum=1, maximum=5) == 3
    assert config.integer({}, "n", default=1) == 1
    for value, message in [
        (True, "must be an integer, got True"),
        (1.5, "must be an integer, got 1.5"),
        ("2", "must be an integer, got '2'"),
        (9, "must be from 1 to 5, got 9"),
        (0, "must be from 1 to 5, got 0"),
    ]:
        with pytest.raises(ConfigError) as error:
            config.integer({"n": value}, "n", default=1, minimum=1, maximum=5)
        assert str(error.value) == f"config key `n`: {message}"
    with pytest.raises(ConfigError, match=r"config key `n`: must be from 0 to 4294967295, got -1"):
        config.integer({"n": -1}, "n", default=1)
    assert config.string({}, "path", default="/") == "/"
    with pytest.raises(ConfigError, match="config key `path`: must be a string, got 5"):
        config.string({"path": 5}, "path", default="/")
    config.reject_unknown({"a": 1, "b": 2}, "a", "b")
    with pytest.raises(ConfigError, match="unknown key `c`, expected `a`, `b`"):
        config.reject_unknown({"a": 1, "c": 2}, "a", "b")
