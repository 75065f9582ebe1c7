"""The health-check world: judge one endpoint at a time through host probes."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from . import _registry
from .config import reject_unknown
from .types import Endpoint, Health

__all__ = ["HealthCheck", "Verdict"]


@dataclass(slots=True)
class Verdict:
    """The outcome of one check.

    >>> from switchyard import Health, Verdict
    >>> verdict = Verdict.unhealthy("status 500")
    >>> verdict.health is Health.UNHEALTHY
    True
    """

    health: Health
    """What the check concluded."""
    reason: str
    """Why, in a few words; shown in the API and in alerts."""

    @classmethod
    def healthy(cls, reason: str) -> Verdict:
        """A passing check.

        >>> Verdict.healthy("200 OK").reason
        '200 OK'
        """
        return cls(Health.HEALTHY, reason)

    @classmethod
    def degraded(cls, reason: str) -> Verdict:
        """A check that passed but found the endpoint slow or partly failing.

        >>> Verdict.degraded("slow: 900 ms").health.is_serving()
        True
        """
        return cls(Health.DEGRADED, reason)

    @classmethod
    def unhealthy(cls, reason: str) -> Verdict:
        """A failing check.

        >>> Verdict.unhealthy("connection refused").health.is_serving()
        False
        """
        return cls(Health.UNHEALTHY, reason)

    @classmethod
    def unknown(cls, reason: str) -> Verdict:
        """A check that could not judge the endpoint (not the endpoint's fault).

        >>> Verdict.unknown("probe not allowed").health
        <Health.UNKNOWN: 'unknown'>
        """
        return cls(Health.UNKNOWN, reason)


class HealthCheck(abc.ABC):
    """An active health check for the endpoints of one pool. A plugin
    defines exactly one subclass; the build finds it, whatever its name.

    The host schedules checks (interval, timeout, jitter, rise and fall) and
    calls `check` for one endpoint at a time; the `switchyard.probe`
    functions reach only that endpoint. A check that raises or overruns its
    budget counts against the plugin, not the endpoint: the verdict is
    unknown, with the exception as the reason.

    The host makes one object of your class per pool with `__init__`
    (given the pool's `health.config` as a `dict`); keep what belongs to a
    pool on `self`.

    >>> from switchyard import Endpoint, HealthCheck, Verdict, probe
    >>> class TcpOpen(HealthCheck):
    ...     def check(self, target: Endpoint) -> Verdict:
    ...         try:
    ...             micros = probe.tcp_connect(500)
    ...         except probe.ProbeError as error:
    ...             return Verdict.unhealthy(str(error))
    ...         return Verdict.healthy(f"connected in {micros} µs")
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _registry.register(HealthCheck, cls)

    def __init__(self, config: dict) -> None:
        """Builds the check from the pool's `health.config` (`{}` when the
        pool gives none). Raising `switchyard.ConfigError`, or any
        exception, refuses the config with its message. This default takes
        no options and refuses any key.

        >>> from switchyard import HealthCheck, Verdict, config
        >>> class Path(HealthCheck):
        ...     def __init__(self, options: dict) -> None:
        ...         config.reject_unknown(options, "path")
        ...         self.path = config.string(options, "path", default="/")
        ...     def check(self, target): return Verdict.healthy("")
        >>> Path({"path": "/ready"}).path
        '/ready'
        """
        reject_unknown(config)

    @abc.abstractmethod
    def check(self, target: Endpoint) -> Verdict:
        """Judges one endpoint.

        >>> from switchyard import HealthCheck, Verdict, probe
        >>> class Http(HealthCheck):
        ...     def check(self, target):
        ...         try:
        ...             response = probe.http(probe.HttpRequest("/healthz"))
        ...         except probe.ProbeError as error:
        ...             return Verdict.unhealthy(str(error))
        ...         if response.status == 200:
        ...             return Verdict.healthy("200")
        ...         return Verdict.unhealthy(f"status {response.status}")
        """
