"""The host's imports, answering from module state a test sets."""

from enum import Enum

from . import types


class LogLevel(Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


logs: list[tuple[LogLevel, str]] = []
loads: dict[int, types.Load] = {}
headers: dict[str, str] = {}
now = 0
random_calls = 0


def reset() -> None:
    global now, random_calls
    logs.clear()
    loads.clear()
    headers.clear()
    now = 0
    random_calls = 0


def log(level: LogLevel, message: str) -> None:
    assert isinstance(level, LogLevel)
    logs.append((level, message))


def now_ns() -> int:
    return now


def random_u64() -> int:
    global random_calls
    random_calls += 1
    return 12345


def endpoint_load(id: int) -> types.Load | None:
    return loads.get(id)


def endpoint_load_pair(first: int, second: int) -> tuple[types.Load | None, types.Load | None]:
    return loads.get(first), loads.get(second)


def request_header(name: str) -> str | None:
    return headers.get(name)
