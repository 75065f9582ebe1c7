"""The values every world shares: endpoints, their live load, and requests."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Endpoint", "Health", "Load", "Priority", "RequestInfo"]


class Health(enum.Enum):
    """What the host currently believes about an endpoint.

    >>> from switchyard import Health
    >>> Health.DEGRADED.is_serving()
    True
    >>> Health.UNHEALTHY.is_serving()
    False
    """

    HEALTHY = "healthy"
    """Passing its checks."""
    DEGRADED = "degraded"
    """Serving, but slow or partly failing."""
    UNHEALTHY = "unhealthy"
    """Failing its checks; not given traffic."""
    UNKNOWN = "unknown"
    """Not checked yet."""

    def is_serving(self) -> bool:
        """Whether an endpoint in this state takes traffic.

        >>> Health.UNKNOWN.is_serving()
        True
        """
        return self is not Health.UNHEALTHY


class Priority(enum.IntEnum):
    """A request's priority class, from `P0` (critical) to `P4` (background).

    An `IntEnum`, so classes compare by importance:

    >>> from switchyard import Priority
    >>> Priority.P0 < Priority.P4
    True
    """

    P0 = 0
    """Critical: the last to be shed."""
    P1 = 1
    """High."""
    P2 = 2
    """Normal, the default."""
    P3 = 3
    """Low."""
    P4 = 4
    """Background: the first to be shed."""


@dataclass(slots=True)
class Endpoint:
    """One eligible endpoint of the pool, as given to `Balancer.set_endpoints`.

    `labels` is a `dict` of the free-form labels the config gives the
    endpoint (the host sends them as pairs with unique names, in the
    config's order, which a `dict` keeps).

    >>> from switchyard import Endpoint
    >>> endpoint = Endpoint(0, "127.0.0.1:8080", weight=3, labels={"rack": "r1"})
    >>> endpoint.weight, endpoint.zone, endpoint.labels["rack"]
    (3, None, 'r1')
    """

    id: int
    """The id a balancer returns from `pick`; stable for the endpoint's life in its pool."""
    address: str
    """`host:port`."""
    weight: int = 1
    """Relative share of traffic; at least 1."""
    zone: str | None = None
    """The endpoint's zone, when the config gives one."""
    labels: dict[str, str] = field(default_factory=dict)
    """Free-form labels from the config."""


@dataclass(slots=True)
class Load:
    """Live statistics of one endpoint, kept by the host; see `switchyard.host.endpoint_load`.

    >>> from switchyard import Health, Load
    >>> load = Load(in_flight=3, health=Health.HEALTHY)
    >>> load.in_flight, load.capacity
    (3, 0)
    """

    in_flight: int = 0
    """Requests the endpoint is serving now."""
    capacity: int = 0
    """The endpoint's maximum in-flight requests; 0 when unlimited."""
    ewma_latency_us: int = 0
    """Moving average of response latency, in microseconds."""
    success_permille: int = 0
    """Share of recent responses that succeeded, in thousandths."""
    health: Health = Health.UNKNOWN
    """The endpoint's health as the host sees it."""


@dataclass(slots=True)
class RequestInfo:
    """What a balancer (or a recovery policy) knows about a request.

    >>> from switchyard import Priority, RequestInfo
    >>> request = RequestInfo(hash=42)
    >>> request.priority, request.attempt
    (<Priority.P2: 2>, 0)
    """

    priority: Priority = Priority.P2
    """The request's priority class."""
    attempt: int = 0
    """0 for the first attempt, 1 for the first retry, and so on."""
    hash: int | None = None
    """The request's hash key (a u64), if any: by its route's `hash_key` (the
    client's address, the path, a header or a cookie; the client's address
    when the header or cookie is missing)."""
