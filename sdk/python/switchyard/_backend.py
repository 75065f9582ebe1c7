"""Where `switchyard.host`, `switchyard.store` and `switchyard.probe` send their calls: the real
host inside a built plugin, the `switchyard.testing.TestHost` in tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .host import LogLevel
    from .probe import HttpRequest, HttpResponse
    from .types import Load


class Backend(Protocol):
    """What a host offers, in the SDK's own types."""

    def log(self, level: LogLevel, message: str) -> None: ...
    def now_ns(self) -> int: ...
    def random_u64(self) -> int: ...
    def endpoint_load(self, id: int) -> Load | None: ...
    def endpoint_load_pair(self, first: int, second: int) -> tuple[Load | None, Load | None]: ...
    def request_header(self, name: str) -> str | None: ...
    def http(self, request: HttpRequest) -> HttpResponse: ...
    def tcp_connect(self, timeout_ms: int) -> int: ...
    def store_get(self, endpoint: int | None, name: str) -> int: ...
    def store_add(self, endpoint: int | None, name: str, delta: int) -> int: ...
    def store_compare_and_swap(self, endpoint: int | None, name: str, expected: int, new: int) -> int: ...


class Unbound:
    """The backend outside a built plugin and before any `TestHost`: every
    call fails with a message that says what to do."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(
            f"switchyard.host.{name}: no host here; inside a plugin's tests, "
            "create a switchyard.testing.TestHost() first"
        )


current: Backend = Unbound()  # type: ignore[assignment]


def bind(backend: Backend) -> None:
    """Sends every later host and probe call to `backend`."""
    global current
    current = backend
