import pytest

from plugin import LeastInFlight
from switchyard import ConfigError, Load, RequestInfo
from switchyard.testing import TestHost, configure, endpoints, pick_counts


@pytest.fixture
def host() -> TestHost:
    return TestHost()


def balancer(config: str = "{}", count: int = 3) -> LeastInFlight:
    balancer = configure(LeastInFlight, config)
    balancer.set_endpoints(endpoints(count))
    return balancer


def test_an_idle_pool_is_served_round_robin(host: TestHost) -> None:
    rr = balancer()
    assert [rr.pick(RequestInfo()) for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_the_endpoint_with_fewest_in_flight_wins(host: TestHost) -> None:
    host.set_load(0, Load(in_flight=5))
    host.set_load(1, Load(in_flight=1))
    host.set_load(2, Load(in_flight=3))
    assert pick_counts(balancer(), 9) == [0, 9]


def test_a_window_of_one_is_plain_round_robin(host: TestHost) -> None:
    host.set_load(0, Load(in_flight=100))
    assert pick_counts(balancer('{"window": 1}', count=2), 10) == [5, 5]


def test_an_empty_pool_declines(host: TestHost) -> None:
    assert balancer(count=0).pick(RequestInfo()) is None


def test_bad_config_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match="`window`"):
        configure(LeastInFlight, '{"window": 0}')
    with pytest.raises(ConfigError, match="windw"):
        configure(LeastInFlight, '{"windw": 2}')
