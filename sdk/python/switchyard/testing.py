"""A stand-in for the host, so a plugin's logic is unit-tested natively with
pytest, without any WebAssembly.

Making a `TestHost` gives the process a fresh host; the `switchyard.host`,
`switchyard.store` and `switchyard.probe` functions then read it. Helpers drive a plugin the
way the host would.

>>> from switchyard import Balancer, RequestInfo
>>> from switchyard.testing import TestHost, endpoints, pick_counts
>>> class First(Balancer):
...     def set_endpoints(self, endpoints): self.ids = [e.id for e in endpoints]
...     def pick(self, request): return self.ids[0] if self.ids else None
>>> _ = TestHost()
>>> balancer = First({})
>>> balancer.set_endpoints(endpoints(3))
>>> pick_counts(balancer, 100)
[100]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from . import _backend
from .balancer import Balancer
from .host import LogLevel
from .probe import HttpRequest, HttpResponse, Refused
from .store import StoreError
from .types import Endpoint, Load, RequestInfo

__all__ = ["TestHost", "configure", "endpoints", "pick_counts"]

_MASK = 2**64 - 1

# The host's defaults: `plugins.store_entries` and `plugins.store_name_bytes`.
STORE_ENTRIES = 4096
STORE_NAME_BYTES = 64

P = TypeVar("P")


class _StandIn:
    """The state a `TestHost` sets and the backend the `switchyard.host` and
    `switchyard.probe` functions call."""

    def __init__(self) -> None:
        self.loads: dict[int, Load] = {}
        self.headers: dict[str, str] = {}
        self.now = 1_000_000_000
        self.rng = 0x9E37_79B9_7F4A_7C15
        self.on_http: Callable[[HttpRequest], HttpResponse] | None = None
        self.on_tcp: Callable[[int], int] | None = None
        self.logs: list[tuple[LogLevel, str]] = []
        self.store: dict[tuple[int | None, str], int] = {}
        self.store_entries = STORE_ENTRIES

    def log(self, level: LogLevel, message: str) -> None:
        self.logs.append((LogLevel(level), message))

    def now_ns(self) -> int:
        return self.now

    def random_u64(self) -> int:
        """splitmix64: tiny, fast, and good enough for tests."""
        self.rng = (self.rng + 0x9E37_79B9_7F4A_7C15) & _MASK
        z = self.rng
        z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & _MASK
        return z ^ (z >> 31)

    def endpoint_load(self, id: int) -> Load | None:
        return self.loads.get(id)

    def endpoint_load_pair(self, first: int, second: int) -> tuple[Load | None, Load | None]:
        return self.loads.get(first), self.loads.get(second)

    def request_header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def http(self, request: HttpRequest) -> HttpResponse:
        if self.on_http is None:
            raise Refused()
        return self.on_http(request)

    def tcp_connect(self, timeout_ms: int) -> int:
        if self.on_tcp is None:
            raise Refused()
        return self.on_tcp(timeout_ms)

    def _entry(self, endpoint: int | None, name: str) -> tuple[int | None, str]:
        if not name or len(name.encode()) > STORE_NAME_BYTES:
            raise StoreError("bad-name")
        key = (endpoint, name)
        if key not in self.store and len(self.store) >= self.store_entries:
            raise StoreError("full")
        return key

    def store_get(self, endpoint: int | None, name: str) -> int:
        return self.store.get((endpoint, name), 0)

    def store_add(self, endpoint: int | None, name: str, delta: int) -> int:
        key = self._entry(endpoint, name)
        value = ((self.store.get(key, 0) + delta + 2**63) & _MASK) - 2**63
        self.store[key] = value
        return value

    def store_compare_and_swap(self, endpoint: int | None, name: str, expected: int, new: int) -> int:
        held = self.store.get((endpoint, name), 0)
        if expected != 0 and (endpoint, name) not in self.store:
            return held
        key = self._entry(endpoint, name)
        if held == expected:
            self.store[key] = new
        return held


class TestHost:
    """The stand-in host. Making one resets the host every `switchyard.host`
    and `switchyard.probe` call reads: no loads, no headers, a fixed clock
    (`now_ns` starts at 1 s) and a fixed random seed, no probe handlers
    (probes raise `Refused`), no logs.

    >>> from switchyard import Load, host
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> test_host.set_load(1, Load(ewma_latency_us=800))
    >>> host.endpoint_load(1).ewma_latency_us
    800
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self) -> None:
        self._state = _StandIn()
        _backend.bind(self._state)

    @property
    def logs(self) -> list[tuple[LogLevel, str]]:
        """The lines logged so far through `switchyard.host`, oldest first.

        >>> from switchyard import host
        >>> test_host = TestHost()
        >>> host.warn("odd")
        >>> test_host.logs
        [(<LogLevel.WARN: 3>, 'odd')]
        """
        return self._state.logs

    def set_store_entries(self, entries: int) -> None:
        """Bounds `switchyard.store` to `entries`, as the host's
        `plugins.store_entries` does (4096 unless set). Objects made under
        one `TestHost` share its store, as every worker's instance shares a
        pool's.

        >>> from switchyard import store
        >>> from switchyard.store import StoreError
        >>> test_host = TestHost()
        >>> test_host.set_store_entries(1)
        >>> store.add(None, "a", 1)
        1
        >>> try:
        ...     store.add(None, "b", 1)
        ... except StoreError as error:
        ...     error.code
        'full'
        """
        self._state.store_entries = entries

    @property
    def store(self) -> dict[tuple[int | None, str], int]:
        """The store's entries by `(endpoint, name)`.

        >>> from switchyard import store
        >>> test_host = TestHost()
        >>> _ = store.add(2, "run", 1)
        >>> test_host.store
        {(2, 'run'): 1}
        """
        return self._state.store

    def set_load(self, id: int, load: Load) -> None:
        """Sets the load `switchyard.host.endpoint_load` reports for `id`.

        >>> from switchyard import Load, host
        >>> test_host = TestHost()
        >>> test_host.set_load(0, Load(in_flight=7))
        >>> host.endpoint_load(0).in_flight
        7
        """
        self._state.loads[id] = load

    def set_header(self, name: str, value: str) -> None:
        """Sets a header of the current request (names are case-insensitive).

        >>> from switchyard import host
        >>> test_host = TestHost()
        >>> test_host.set_header("Cookie", "session=7")
        >>> host.request_header("cookie")
        'session=7'
        """
        self._state.headers[name.lower()] = value

    def clear_headers(self) -> None:
        """Removes every header of the current request.

        >>> from switchyard import host
        >>> test_host = TestHost()
        >>> test_host.set_header("a", "1")
        >>> test_host.clear_headers()
        >>> host.request_header("a") is None
        True
        """
        self._state.headers.clear()

    def advance(self, *, ms: int = 0, ns: int = 0) -> None:
        """Moves the clock forward by `ms` milliseconds plus `ns` nanoseconds.

        >>> from switchyard import host
        >>> test_host = TestHost()
        >>> start = host.now_ns()
        >>> test_host.advance(ms=1, ns=5)
        >>> host.now_ns() - start
        1000005
        """
        self._state.now += ms * 1_000_000 + ns

    def seed(self, seed: int) -> None:
        """Seeds the random generator, for reproducible runs.

        >>> from switchyard import host
        >>> test_host = TestHost()
        >>> test_host.seed(7)
        >>> a = host.random_u64()
        >>> test_host.seed(7)
        >>> host.random_u64() == a
        True
        """
        self._state.rng = (seed | 1) & _MASK

    def on_http(self, handler: Callable[[HttpRequest], HttpResponse]) -> None:
        """Answers `switchyard.probe.http` with `handler`, which returns an
        `HttpResponse` or raises a `switchyard.probe.ProbeError`.

        >>> from switchyard import probe
        >>> test_host = TestHost()
        >>> def timeout(request):
        ...     raise probe.Timeout()
        >>> test_host.on_http(timeout)
        >>> try:
        ...     probe.http(probe.HttpRequest("/"))
        ... except probe.ProbeError as error:
        ...     print(error)
        timed out
        """
        self._state.on_http = handler

    def on_tcp_connect(self, handler: Callable[[int], int]) -> None:
        """Answers `switchyard.probe.tcp_connect` with `handler`, given the
        timeout in ms; it returns the connect time in µs or raises a
        `switchyard.probe.ProbeError`.

        >>> from switchyard import probe
        >>> test_host = TestHost()
        >>> test_host.on_tcp_connect(lambda timeout_ms: 120)
        >>> probe.tcp_connect(500)
        120
        """
        self._state.on_tcp = handler


def endpoints(count: int) -> list[Endpoint]:
    """`count` endpoints with ids `0..count-1`, weight 1, at `10.0.0.{id}:80`.

    >>> from switchyard.testing import endpoints
    >>> endpoints(3)[2].address
    '10.0.0.2:80'
    """
    return [Endpoint(id, f"10.0.0.{id}:80") for id in range(count)]


def pick_counts(balancer: Balancer, times: int, request: RequestInfo | None = None) -> list[int]:
    """Calls `balancer.pick` `times` times and counts how often each id came
    back, as a list indexed by id (declined picks are not counted).

    >>> from switchyard import Balancer
    >>> from switchyard.testing import pick_counts
    >>> class Second(Balancer):
    ...     def set_endpoints(self, endpoints): pass
    ...     def pick(self, request): return 1
    >>> pick_counts(Second({}), 10)
    [0, 10]
    """
    request = request if request is not None else RequestInfo()
    counts: list[int] = []
    for _ in range(times):
        picked = balancer.pick(request)
        if picked is not None:
            if len(counts) <= picked:
                counts.extend([0] * (picked + 1 - len(counts)))
            counts[picked] += 1
    return counts


def configure(plugin: Callable[[dict], P], config: str = "{}") -> P:
    """Builds `plugin` from a config given as JSON, as the host does: JSON
    that does not parse, or is not an object, raises
    `switchyard.ConfigError` with the message the operator would see.

    >>> from switchyard import Recovery, GiveUp
    >>> from switchyard.testing import configure
    >>> class Never(Recovery):
    ...     def on_failure(self, failure): return GiveUp()
    >>> configure(Never, '{"speed": 1}') # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: config: unknown key `speed`; the plugin takes no options
    """
    from ._guest import parse_config

    return plugin(parse_config(config))

