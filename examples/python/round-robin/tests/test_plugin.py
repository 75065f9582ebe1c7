import pytest

from plugin import SmoothWeightedRoundRobin
from switchyard import ConfigError, Endpoint, RequestInfo
from switchyard.testing import TestHost, configure, endpoints, pick_counts


@pytest.fixture(autouse=True)
def host() -> TestHost:
    return TestHost()


def balancer(pool: list[Endpoint]) -> SmoothWeightedRoundRobin:
    rr = configure(SmoothWeightedRoundRobin, "{}")
    rr.set_endpoints(pool)
    return rr


def test_equal_weights_rotate_evenly() -> None:
    rr = balancer(endpoints(3))
    assert [rr.pick(RequestInfo()) for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_weights_are_honoured_and_interleaved() -> None:
    rr = balancer([Endpoint(0, "a:80", weight=5), Endpoint(1, "b:80", weight=1), Endpoint(2, "c:80", weight=1)])
    # NGINX's documented sequence for weights 5, 1, 1.
    assert [rr.pick(RequestInfo()) for _ in range(7)] == [0, 0, 1, 0, 2, 0, 0]
    assert pick_counts(rr, 700) == [500, 100, 100]


def test_ids_need_not_be_dense() -> None:
    rr = balancer([Endpoint(7, "a:80", weight=2), Endpoint(3, "b:80", weight=1)])
    assert [rr.pick(RequestInfo()) for _ in range(6)] == [7, 3, 7, 7, 3, 7]


def test_a_new_endpoint_set_starts_over() -> None:
    rr = balancer(endpoints(3))
    rr.pick(RequestInfo())
    rr.set_endpoints(endpoints(2))
    assert [rr.pick(RequestInfo()) for _ in range(3)] == [0, 1, 0]


def test_empty_pool_declines() -> None:
    assert balancer([]).pick(RequestInfo()) is None


def test_rejects_unknown_options() -> None:
    with pytest.raises(ConfigError, match="speed"):
        configure(SmoothWeightedRoundRobin, '{"speed": 3}')
