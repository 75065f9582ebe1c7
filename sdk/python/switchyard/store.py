"""The store the host keeps for a pool: numbers shared by every instance of
the plugin that serves the pool (one per worker thread), kept across new
versions of the plugin.

The host runs one instance of a plugin per worker thread, so what a plugin
keeps on `self` is seen by one worker only. What must be counted across
workers (a breaker's failure streak, a pool-wide budget) belongs here. Each
entry is a signed 64-bit integer named by an optional endpoint id and a
name, 0 until written; every operation is atomic. The store is bounded
(`plugins.store_entries`, 4096 by default; names up to
`plugins.store_name_bytes`, 64 bytes): a full store refuses new entries
with `StoreError("full")` and keeps serving the ones it has.

Balancers and recovery policies have a store; in a health check every call
raises `StoreError("no-pool")`. In tests, `switchyard.testing.TestHost`
stands in for it.

>>> from switchyard import store
>>> from switchyard.testing import TestHost
>>> _ = TestHost()
>>> store.add(3, "failures", 1)
1
>>> store.add(3, "failures", 1)
2
>>> store.get(3, "failures")
2
"""

from __future__ import annotations

from collections.abc import Callable

from . import _backend

__all__ = ["StoreError", "add", "compare_and_swap", "get", "update"]

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


class StoreError(Exception):
    """The store refused an operation. `code` says why: `"full"` (the entry
    could not be made), `"bad-name"` (empty, or longer than
    `plugins.store_name_bytes`) or `"no-pool"` (no store serves the call).

    >>> from switchyard.store import StoreError
    >>> StoreError("full").code
    'full'
    """

    CODES = ("full", "bad-name", "no-pool")

    def __init__(self, code: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown store error `{code}`, expected one of {', '.join(self.CODES)}")
        super().__init__(code)
        self.code = code


def _check(endpoint: int | None, name: str, *values: int) -> None:
    if endpoint is not None and not (isinstance(endpoint, int) and 0 <= endpoint <= 2**32 - 1):
        raise TypeError(f"endpoint must be an endpoint id or None, got {endpoint!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    for value in values:
        if not (isinstance(value, int) and _I64_MIN <= value <= _I64_MAX):
            raise TypeError(f"store values are 64-bit signed integers, got {value!r}")


def get(endpoint: int | None, name: str) -> int:
    """The entry's value; 0 if it was never written.

    >>> from switchyard import store
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> store.get(None, "never-written")
    0
    """
    _check(endpoint, name)
    return _backend.current.store_get(endpoint, name)


def add(endpoint: int | None, name: str, delta: int) -> int:
    """Adds `delta` (wrapping at 64 bits) and returns the new value.

    >>> from switchyard import store
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> store.add(None, "in-use", 5), store.add(None, "in-use", -2)
    (5, 3)
    """
    _check(endpoint, name, delta)
    return _backend.current.store_add(endpoint, name, delta)


def compare_and_swap(endpoint: int | None, name: str, expected: int, new: int) -> int:
    """Sets the entry to `new` if it holds `expected`, and returns the value
    it held: the swap happened if that is `expected`. Of several instances
    racing to change the same value, exactly one wins.

    >>> from switchyard import store
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> store.compare_and_swap(1, "open-until", 0, 5000)
    0
    >>> store.compare_and_swap(1, "open-until", 0, 6000)
    5000
    """
    _check(endpoint, name, expected, new)
    return _backend.current.store_compare_and_swap(endpoint, name, expected, new)


def update(endpoint: int | None, name: str, change: Callable[[int], int]) -> tuple[int, int]:
    """Replaces the entry's value `v` with `change(v)` atomically, retrying
    while another instance changes it first; returns the old and the new
    value. `change` may run more than once.

    >>> from switchyard import store
    >>> from switchyard.testing import TestHost
    >>> _ = TestHost()
    >>> store.update(None, "peak", lambda peak: max(peak, 7))
    (0, 7)
    """
    current = get(endpoint, name)
    while True:
        new = change(current)
        if new == current:
            return current, new
        held = compare_and_swap(endpoint, name, current, new)
        if held == current:
            return current, new
        current = held
