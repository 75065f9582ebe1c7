"""The recovery world: decide what happens after a failed attempt."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import TypeAlias

from . import _registry
from .config import reject_unknown
from .types import RequestInfo

__all__ = ["Decision", "Eject", "Failure", "FailureKind", "GiveUp", "Recovery", "Retry"]


class FailureKind(enum.Enum):
    """How an attempt failed. More kinds may come: keep a default branch.

    >>> from switchyard import FailureKind
    >>> FailureKind.STATUS.is_status(), FailureKind.RESET.is_status()
    (True, False)
    """

    CONNECT_REFUSED = "connect-refused"
    """The endpoint refused the connection."""
    CONNECT_TIMEOUT = "connect-timeout"
    """The connection was not established in time."""
    RESET = "reset"
    """The connection broke mid-request."""
    RESPONSE_TIMEOUT = "response-timeout"
    """The endpoint did not answer in time."""
    STATUS = "status"
    """The endpoint answered with `Failure.status` (one the route counts as failed)."""
    GRPC_STATUS = "grpc-status"
    """A gRPC endpoint answered the call with `Failure.grpc_status` in a
    trailers-only response: 2 unknown, 4 deadline exceeded, 8 resource
    exhausted, 13 internal, 14 unavailable, 15 data loss."""

    def is_status(self) -> bool:
        """Whether the endpoint answered at all (with an HTTP or a gRPC status).

        >>> FailureKind.GRPC_STATUS.is_status()
        True
        """
        return self is FailureKind.STATUS or self is FailureKind.GRPC_STATUS


@dataclass(slots=True)
class Failure:
    """One failed attempt, as the host reports it.

    `status` is set exactly when `kind` is `FailureKind.STATUS`, and
    `grpc_status` exactly when it is `FailureKind.GRPC_STATUS`.

    >>> from switchyard import Failure, FailureKind
    >>> failure = Failure(2, FailureKind.STATUS, method="GET", status=503)
    >>> failure.status, failure.request.attempt, failure.replayable
    (503, 0, True)
    """

    endpoint: int
    """The id of the endpoint that failed."""
    kind: FailureKind
    """How it failed."""
    request: RequestInfo = field(default_factory=RequestInfo)
    """The request, with the attempt number that failed."""
    method: str = "GET"
    """The request's method."""
    replayable: bool = True
    """Whether the host can send the request again (idempotent, small body)."""
    elapsed_ms: int = 0
    """Time since the request arrived, in milliseconds."""
    status: int | None = None
    """The HTTP status the endpoint answered with, for `FailureKind.STATUS`."""
    grpc_status: int | None = None
    """The gRPC status the endpoint answered with, for `FailureKind.GRPC_STATUS`."""


@dataclass(slots=True, frozen=True)
class Retry:
    """Decision: send the request again.

    >>> from switchyard import Retry
    >>> Retry(delay_ms=10)
    Retry(delay_ms=10, same_endpoint=False)
    """

    delay_ms: int = 0
    """Wait this long first, in milliseconds."""
    same_endpoint: bool = False
    """Try the same endpoint rather than another."""


@dataclass(slots=True, frozen=True)
class Eject:
    """Decision: take the endpoint out of the eligible set for a while, and
    maybe retry the request elsewhere.

    >>> from switchyard import Eject, Retry
    >>> Eject(30_000, retry=Retry()).retry is not None
    True
    """

    duration_ms: int
    """How long the endpoint stays out, in milliseconds."""
    retry: Retry | None = None
    """Retry the request on another endpoint after ejecting."""


@dataclass(slots=True, frozen=True)
class GiveUp:
    """Decision: answer the client with the endpoint's own response, or with
    `status` when set.

    >>> from switchyard import GiveUp
    >>> GiveUp(503) == GiveUp(status=503)
    True
    """

    status: int | None = None
    """The status to answer with instead of the endpoint's own response."""


Decision: TypeAlias = Retry | Eject | GiveUp
"""What the host should do with a failed attempt. The host still enforces
its retry budget, the route's deadline, and never replays a request it
cannot.

>>> from switchyard import Decision, GiveUp, Retry
>>> def decide(attempt: int) -> Decision:
...     return Retry() if attempt == 0 else GiveUp()
>>> decide(1)
GiveUp(status=None)
"""


class Recovery(abc.ABC):
    """A recovery policy for one pool. A plugin defines exactly one
    subclass; the build finds it, whatever its name.

    For each pool that uses the plugin, on each worker thread, the host
    makes one object of your class with `__init__` (given the pool's
    `recovery.config` as a `dict`) and asks it about every failed attempt
    in that pool. An exception from `on_failure` gives up (logged once per
    pool).

    >>> from switchyard import Decision, Failure, GiveUp, Recovery, Retry
    >>> class RetryOnce(Recovery):
    ...     '''Retries once elsewhere, then gives up.'''
    ...     def on_failure(self, failure: Failure) -> Decision:
    ...         if failure.replayable and failure.request.attempt == 0:
    ...             return Retry(delay_ms=0, same_endpoint=False)
    ...         return GiveUp()
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _registry.register(Recovery, cls)

    def __init__(self, config: dict) -> None:
        """Builds the policy from the pool's `recovery.config` (`{}` when
        the pool gives none). Raising `switchyard.ConfigError`, or any
        exception, refuses the config with its message. This default takes
        no options and refuses any key.

        >>> from switchyard import GiveUp, Recovery, config
        >>> class Budget(Recovery):
        ...     def __init__(self, options: dict) -> None:
        ...         config.reject_unknown(options, "retries")
        ...         self.retries = config.integer(options, "retries", default=1, maximum=5)
        ...     def on_failure(self, failure): return GiveUp()
        >>> Budget({"retries": 3}).retries
        3
        """
        reject_unknown(config)

    @abc.abstractmethod
    def on_failure(self, failure: Failure) -> Decision:
        """Decides what to do with one failed attempt.

        >>> from switchyard import Eject, FailureKind, GiveUp, Recovery
        >>> class EjectRefusing(Recovery):
        ...     def on_failure(self, failure):
        ...         match failure.kind:
        ...             case FailureKind.CONNECT_REFUSED:
        ...                 return Eject(duration_ms=10_000)
        ...             case _:
        ...                 return GiveUp()
        """

    def snapshot(self) -> bytes:
        """The pool's state, carried to the next version of the plugin when
        its file is swapped, as `Balancer.snapshot` does for a balancer. The
        default carries nothing. State every worker shares is better kept
        in `switchyard.store`, which outlives versions by itself.

        >>> from switchyard import GiveUp, Recovery
        >>> class Budget(Recovery):
        ...     spent = 2
        ...     def on_failure(self, failure): return GiveUp()
        ...     def snapshot(self) -> bytes:
        ...         return self.spent.to_bytes(2, "little")
        >>> Budget({}).snapshot()
        b'\\x02\\x00'
        """
        return b""

    def restore(self, state: bytes) -> None:
        """Takes over the pool's state from an earlier version's `snapshot`
        (never called with empty bytes); raising refuses the new version,
        with the message shown. The default ignores it.

        >>> from switchyard import GiveUp, Recovery
        >>> class Budget(Recovery):
        ...     spent = 0
        ...     def on_failure(self, failure): return GiveUp()
        ...     def restore(self, state: bytes) -> None:
        ...         self.spent = int.from_bytes(state, "little")
        >>> budget = Budget({})
        >>> budget.restore(b"\\x05\\x00")
        >>> budget.spent
        5
        """
