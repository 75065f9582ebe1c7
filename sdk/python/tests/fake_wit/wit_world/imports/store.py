"""The store import, answering from a dict a test reads, with the host's
bounds made small."""

from enum import Enum

from componentize_py_types import Err


class StoreError(Enum):
    FULL = 0
    BAD_NAME = 1
    NO_POOL = 2


entries: dict[tuple[int | None, str], int] = {}
max_entries = 4


def reset() -> None:
    entries.clear()


def _entry(endpoint: int | None, name: str) -> tuple[int | None, str]:
    if not name or len(name) > 64:
        raise Err(StoreError.BAD_NAME)
    key = (endpoint, name)
    if key not in entries and len(entries) >= max_entries:
        raise Err(StoreError.FULL)
    return key


def get(endpoint: int | None, name: str) -> int:
    return entries.get((endpoint, name), 0)


def add(endpoint: int | None, name: str, delta: int) -> int:
    key = _entry(endpoint, name)
    entries[key] = entries.get(key, 0) + delta
    return entries[key]


def compare_and_swap(endpoint: int | None, name: str, expected: int, new: int) -> int:
    key = _entry(endpoint, name)
    held = entries.get(key, 0)
    if held == expected:
        entries[key] = new
    return held
