"""Write Switchyard policy plugins — balancers, health checks and recovery
policies — in plain Python, and build them into sandboxed WebAssembly
components that the host loads and swaps live.

A plugin defines one subclass of `Balancer`, `HealthCheck` or `Recovery`
in `src/plugin.py`; `switchyard plugin build` finds it (whatever its name)
and builds it with componentize-py. The same code runs natively, so its
logic is unit-tested with pytest; `switchyard.testing.TestHost` stands in
for the host there.

>>> from switchyard import Balancer, Endpoint, RequestInfo
>>> class First(Balancer):
...     '''Sends every request to the first endpoint.'''
...     def set_endpoints(self, endpoints: list[Endpoint]) -> None:
...         self.ids = [endpoint.id for endpoint in endpoints]
...     def pick(self, request: RequestInfo) -> int | None:
...         return self.ids[0] if self.ids else None

Layout:

- `switchyard.types`: the values shared by every world (endpoints, loads, requests).
- `switchyard.balancer`, `switchyard.health`, `switchyard.recovery`: one base class per world.
- `switchyard.config`: `ConfigError` and helpers that read the config `dict`.
- `switchyard.host`: what the host offers every plugin (log, clock, randomness, load, headers).
- `switchyard.store`: numbers a pool's instances share across worker threads and versions.
- `switchyard.probe`: what the host offers health checks (HTTP and TCP probes).
- `switchyard.testing`: the native stand-in for the host.
- `switchyard._guest` (private): the glue componentize-py calls, with the
  modules in `guest/` that it looks for.
"""

from .balancer import Balancer
from .config import ConfigError
from .health import HealthCheck, Verdict
from .recovery import Decision, Eject, Failure, FailureKind, GiveUp, Recovery, Retry
from .types import Endpoint, Health, Load, Priority, RequestInfo

__all__ = [
    "Balancer",
    "ConfigError",
    "Decision",
    "Eject",
    "Endpoint",
    "Failure",
    "FailureKind",
    "GiveUp",
    "Health",
    "HealthCheck",
    "Load",
    "Priority",
    "Recovery",
    "RequestInfo",
    "Retry",
    "Verdict",
]
