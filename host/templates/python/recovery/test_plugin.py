import pytest

from plugin import RetryElsewhere
from switchyard import ConfigError, Failure, FailureKind, GiveUp, RequestInfo, Retry
from switchyard.testing import configure

ELSEWHERE = Retry(delay_ms=0, same_endpoint=False)


def failure(method: str, replayable: bool, attempt: int) -> Failure:
    return Failure(
        endpoint=0,
        kind=FailureKind.STATUS,
        status=503,
        request=RequestInfo(attempt=attempt),
        method=method,
        replayable=replayable,
        elapsed_ms=2,
    )


def test_an_idempotent_request_is_retried_once_elsewhere() -> None:
    policy = configure(RetryElsewhere)
    assert policy.on_failure(failure("GET", True, 0)) == ELSEWHERE
    assert policy.on_failure(failure("GET", True, 1)) == GiveUp()


def test_a_request_that_cannot_be_replayed_is_not_retried() -> None:
    assert configure(RetryElsewhere).on_failure(failure("POST", False, 0)) == GiveUp()


def test_retries_is_the_number_of_retries() -> None:
    policy = configure(RetryElsewhere, '{"retries": 3}')
    assert policy.on_failure(failure("GET", True, 2)) == ELSEWHERE
    assert policy.on_failure(failure("GET", True, 3)) == GiveUp()
    never = configure(RetryElsewhere, '{"retries": 0}')
    assert never.on_failure(failure("GET", True, 0)) == GiveUp()


def test_bad_config_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match="`retries`"):
        configure(RetryElsewhere, '{"retries": 9}')
