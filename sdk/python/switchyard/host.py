"""What the host offers every plugin: log, clock, randomness, live load and
the current request's headers.

Inside a built plugin these call into the host; in tests they read the
`switchyard.testing.TestHost` made last.

>>> from switchyard import host
>>> from switchyard.testing import TestHost
>>> test_host = TestHost()
>>> host.info("configured with 3 endpoints")
>>> test_host.logs
[(<LogLevel.INFO: 2>, 'configured with 3 endpoints')]
"""

from __future__ import annotations

import enum

from . import _backend
from .types import Load

__all__ = [
    "LogLevel",
    "debug",
    "endpoint_load",
    "endpoint_load_pair",
    "error",
    "info",
    "log",
    "now_ns",
    "random_below",
    "random_u64",
    "request_header",
    "trace",
    "warn",
]


class LogLevel(enum.IntEnum):
    """How important a log line is; an `IntEnum`, so levels compare.

    >>> from switchyard.host import LogLevel
    >>> LogLevel.WARN > LogLevel.INFO
    True
    """

    TRACE = 0
    """Very detailed tracing."""
    DEBUG = 1
    """Debugging detail."""
    INFO = 2
    """Normal operation."""
    WARN = 3
    """Something looks wrong."""
    ERROR = 4
    """Something failed."""


def log(level: LogLevel, message: str) -> None:
    """Writes a line to the host's log, tagged with the plugin's name.

    The host bounds it: a line is cut at `plugins.log_line_bytes` (1 KiB by
    default), and a plugin's lines, every instance together, are limited to
    `plugins.log_lines_per_second` (50); lines over the rate are dropped,
    counted and summarised.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.log(host.LogLevel.WARN, "endpoint 3 has no zone")
    """
    _backend.current.log(level, message)


def trace(message: str) -> None:
    """`log` at `LogLevel.TRACE`.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.trace("picked 2")
    """
    _backend.current.log(LogLevel.TRACE, message)


def debug(message: str) -> None:
    """`log` at `LogLevel.DEBUG`.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.debug("window is 8")
    """
    _backend.current.log(LogLevel.DEBUG, message)


def info(message: str) -> None:
    """`log` at `LogLevel.INFO`.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.info("configured")
    """
    _backend.current.log(LogLevel.INFO, message)


def warn(message: str) -> None:
    """`log` at `LogLevel.WARN`.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.warn("no endpoint has a zone")
    """
    _backend.current.log(LogLevel.WARN, message)


def error(message: str) -> None:
    """`log` at `LogLevel.ERROR`.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.error("state lost")
    """
    _backend.current.log(LogLevel.ERROR, message)


def now_ns() -> int:
    """Monotonic time in nanoseconds; only differences are meaningful.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> start = host.now_ns()
    >>> test_host.advance(ms=5)
    >>> host.now_ns() - start
    5000000
    """
    return _backend.current.now_ns()


def random_u64() -> int:
    """A random number from 0 to 2**64 - 1.

    Inside a built plugin it comes from a generator inside the plugin
    (wyrand, as the host's own) seeded once from the host's generator: a
    call into the host costs about as much as a whole pick.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> host.random_u64() != host.random_u64()
    True
    """
    return _backend.current.random_u64()


def random_below(bound: int) -> int:
    """A uniformly distributed number in `range(bound)` (0 when `bound` is
    0), by Lemire's multiply-shift from one `random_u64`; `bound` is at most
    2**32 - 1.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> 0 <= host.random_below(10) < 10
    True
    """
    return ((_backend.current.random_u64() >> 32) * bound) >> 32


def endpoint_load(id: int) -> Load | None:
    """The live load of an endpoint of the calling pool, or `None` for an id
    the pool does not have. Constant time: ask for the few endpoints you
    sample.

    >>> from switchyard import Load, host
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> test_host.set_load(4, Load(in_flight=2))
    >>> host.endpoint_load(4).in_flight, host.endpoint_load(5)
    (2, None)
    """
    return _backend.current.endpoint_load(id)


def endpoint_load_pair(first: int, second: int) -> tuple[Load | None, Load | None]:
    """`endpoint_load` of two endpoints in one call into the host: what a
    power-of-two-choices pick needs, at the cost of one call instead of two.

    >>> from switchyard import Load, host
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> test_host.set_load(1, Load(in_flight=3))
    >>> test_host.set_load(2, Load(in_flight=1))
    >>> a, b = host.endpoint_load_pair(1, 2)
    >>> a.in_flight, b.in_flight
    (3, 1)
    >>> host.endpoint_load_pair(1, 9)[1] is None
    True
    """
    return _backend.current.endpoint_load_pair(first, second)


def request_header(name: str) -> str | None:
    """A header of the request being placed, or `None` when absent or outside
    `pick`. Names are case-insensitive; repeated headers are joined by `, `.

    >>> from switchyard import host
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> test_host.set_header("X-Tenant", "blue")
    >>> host.request_header("x-tenant")
    'blue'
    """
    return _backend.current.request_header(name)
