"""The glue between componentize-py's generated bindings (`wit_world`) and
the SDK's own types. Not public: plugin authors never name anything here.

The modules in `guest/` (`balancer`, `health_check`, `recovery`: the names
componentize-py looks for) define the exported resource classes with these
helpers; `balancer_state` and `recovery_state` the classes of the state
exports, which componentize-py looks for in the main module (the build's
generated entry imports them there). Nothing here imports `wit_world`: the bindings' modules are passed
in, and values coming from them are read by shape (enum values, variant
class names), so the conversions are tested natively with fakes.
"""

from __future__ import annotations

import inspect
import json
import traceback
from types import ModuleType
from typing import Any

from . import _backend, _registry
from .config import U32_MAX, ConfigError
from .health import Verdict
from .host import LogLevel
from .probe import HttpRequest, HttpResponse, InvalidResponse, NotAllowed, ProbeError, Refused, Reset, Timeout
from .recovery import Decision, Eject, Failure, FailureKind, GiveUp, Retry
from .store import StoreError
from .types import Endpoint, Health, Load, Priority, RequestInfo

U16_MAX = 2**16 - 1
_MASK = 2**64 - 1

# The generated enums' values, in WIT order, to the SDK's members. Read
# through `_value_`, a plain attribute: `.value` is a descriptor, slower on
# the hot path.
_HEALTH = (Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.UNKNOWN)
_PRIORITY = (Priority.P0, Priority.P1, Priority.P2, Priority.P3, Priority.P4)
_HEALTH_NAME = {Health.HEALTHY: "HEALTHY", Health.DEGRADED: "DEGRADED", Health.UNHEALTHY: "UNHEALTHY", Health.UNKNOWN: "UNKNOWN"}

# The generated variant cases, by class name.
_FAILURE_KIND = {
    "FailureKind_ConnectRefused": FailureKind.CONNECT_REFUSED,
    "FailureKind_ConnectTimeout": FailureKind.CONNECT_TIMEOUT,
    "FailureKind_Reset": FailureKind.RESET,
    "FailureKind_ResponseTimeout": FailureKind.RESPONSE_TIMEOUT,
    "FailureKind_Status": FailureKind.STATUS,
    "FailureKind_GrpcStatus": FailureKind.GRPC_STATUS,
}


# Config and the plugin's class.


def parse_config(text: str) -> dict:
    """The pool's config as a `dict`; `ConfigError` when it is not a JSON object."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"config is not JSON: {error}") from None
    if not isinstance(config, dict):
        shown = text.strip()[:40]
        raise ConfigError(f"config must be a table (a JSON object), got `{shown}`")
    return config


def _describe(cls: type) -> str:
    return f"`{cls.__qualname__}` (module `{cls.__module__}`)"


def find_plugin(base: type) -> type:
    """The one concrete subclass of `base` defined so far (a class that
    another concrete subclass extends does not count); `ConfigError` naming
    the problem otherwise."""
    known = _registry.registered.get(base, [])
    concrete = [cls for cls in known if not inspect.isabstract(cls)]
    leaves = [cls for cls in concrete if not any(other is not cls and issubclass(other, cls) for other in concrete)]
    if len(leaves) == 1:
        return leaves[0]
    name = f"switchyard.{base.__name__}"
    if leaves:
        found = ", ".join(_describe(cls) for cls in leaves)
        raise ConfigError(f"the plugin defines {len(leaves)} subclasses of {name}: {found}; keep one")
    problems = []
    for cls in known:
        missing = ", ".join(f"`{method}`" for method in sorted(getattr(cls, "__abstractmethods__", ())))
        problems.append(f"{_describe(cls)} does not implement {missing}")
    for other, classes in _registry.registered.items():
        if other is not base and classes:
            problems.append(
                f"{_describe(classes[-1])} is a switchyard.{other.__name__}: "
                "is `kind` in pyproject.toml right?"
            )
    detail = f": {'; '.join(problems)}" if problems else ""
    raise ConfigError(f"the plugin defines no concrete subclass of {name}{detail}")


def create(base: type, config: str) -> Any:
    """Builds the plugin's object for one pool; `ConfigError` with the
    message for the operator when the config is refused, whatever the user's
    `__init__` raised."""
    plugin = find_plugin(base)
    options = parse_config(config)
    try:
        return plugin(options)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"{type(error).__name__}: {error}") from None


class Faults:
    """Reports an exception that escaped a plugin's method, the first time
    for each method of one pool's object; later ones are only answered."""

    def __init__(self, plugin: object) -> None:
        self._name = type(plugin).__qualname__
        self._reported: set[str] = set()

    def report(self, method: str, error: BaseException, outcome: str) -> None:
        if method in self._reported:
            return
        self._reported.add(method)
        where = ""
        frames = traceback.extract_tb(error.__traceback__)
        if frames:
            frame = frames[-1]
            where = f" at {frame.filename}:{frame.lineno}"
        _backend.current.log(
            LogLevel.ERROR,
            f"{self._name}.{method} raised {type(error).__name__}: {error}{where}; {outcome} "
            f"(later exceptions of {method} in this pool are not logged)",
        )


# Values from the host.


def health_from_wit(raw: Any) -> Health:
    return _HEALTH[raw._value_]


def endpoint_from_wit(raw: Any) -> Endpoint:
    labels = raw.labels
    return Endpoint(raw.id, raw.address, raw.weight, raw.zone, dict(labels) if labels else {})


def request_from_wit(raw: Any) -> RequestInfo:
    return RequestInfo(_PRIORITY[raw.priority._value_], raw.attempt, raw.hash)


def load_from_wit(raw: Any) -> Load | None:
    if raw is None:
        return None
    return Load(raw.in_flight, raw.capacity, raw.ewma_latency_us, raw.success_permille, _HEALTH[raw.health._value_])


def failure_from_wit(raw: Any) -> Failure:
    kind = _FAILURE_KIND[type(raw.kind).__name__]
    return Failure(
        endpoint=raw.endpoint,
        kind=kind,
        request=request_from_wit(raw.request),
        method=raw.method,
        replayable=raw.replayable,
        elapsed_ms=raw.elapsed_ms,
        status=raw.kind.value if kind is FailureKind.STATUS else None,
        grpc_status=raw.kind.value if kind is FailureKind.GRPC_STATUS else None,
    )


def probe_error_from_wit(raw: Any) -> ProbeError:
    match type(raw).__name__:
        case "ProbeError_Refused":
            return Refused()
        case "ProbeError_Timeout":
            return Timeout()
        case "ProbeError_Reset":
            return Reset()
        case "ProbeError_InvalidResponse":
            return InvalidResponse(raw.value)
        case _:
            return NotAllowed(raw.value)


# Values to the host.


def _check_int(value: object, maximum: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= maximum:
        raise TypeError(f"{what} must be an int from 0 to {maximum}, got {value!r}")


def checked_pick(picked: object) -> int | None:
    """`pick`'s answer, or `TypeError` when it is neither an id nor `None`."""
    if picked is not None:
        _check_int(picked, U32_MAX, "pick's answer")
    return picked  # type: ignore[return-value]


def verdict_to_wit(verdict: object, wit_types: ModuleType, wit_health_check: ModuleType) -> Any:
    if not isinstance(verdict, Verdict):
        raise TypeError(f"check returned {verdict!r}, not a switchyard.Verdict")
    if not isinstance(verdict.health, Health) or not isinstance(verdict.reason, str):
        raise TypeError(f"check returned {verdict!r}: health must be a Health and reason a str")
    return wit_health_check.Verdict(getattr(wit_types.Health, _HEALTH_NAME[verdict.health]), verdict.reason)


def _retry_to_wit(retry: Retry, wit: ModuleType) -> Any:
    _check_int(retry.delay_ms, U32_MAX, "Retry.delay_ms")
    return wit.Retry(retry.delay_ms, bool(retry.same_endpoint))


def decision_to_wit(decision: Decision, wit: ModuleType) -> Any:
    """`decision` as the generated `Decision`; `TypeError` for anything else."""
    if isinstance(decision, GiveUp):
        if decision.status is not None:
            _check_int(decision.status, U16_MAX, "GiveUp.status")
        return wit.Decision_GiveUp(decision.status)
    if isinstance(decision, Retry):
        return wit.Decision_Retry(_retry_to_wit(decision, wit))
    if isinstance(decision, Eject):
        _check_int(decision.duration_ms, U32_MAX, "Eject.duration_ms")
        retry = None if decision.retry is None else _retry_to_wit(decision.retry, wit)
        return wit.Decision_Eject(wit.Ejection(decision.duration_ms, retry))
    raise TypeError(f"on_failure returned {decision!r}, not a Retry, Eject or GiveUp")


# The host, as a backend of `switchyard.host` and `switchyard.probe`.


class WitHost:
    """Sends the SDK's host, store and probe calls to the generated
    imports. `probe` is `None` in the worlds without probes, `store` in the
    world without a store (health checks)."""

    def __init__(
        self, host: ModuleType, probe: ModuleType | None, err: type[Exception], store: ModuleType | None = None
    ) -> None:
        self._host = host
        self._probe = probe
        self._store = store
        self._err = err
        self._levels = tuple(host.LogLevel(level) for level in range(5))
        self._seed: int | None = None

    def log(self, level: LogLevel, message: str) -> None:
        self._host.log(self._levels[level], message)

    def now_ns(self) -> int:
        return self._host.now_ns()

    def random_u64(self) -> int:
        """wyrand (Wang Yi), the generator the host uses, seeded once from it."""
        seed = self._seed
        if seed is None:
            seed = self._host.random_u64()
        seed = (seed + 0xA076_1D64_78BD_642F) & _MASK
        self._seed = seed
        product = seed * (seed ^ 0xE703_7ED1_A0B4_28DB)
        return ((product >> 64) ^ product) & _MASK

    def endpoint_load(self, id: int) -> Load | None:
        return load_from_wit(self._host.endpoint_load(id))

    def endpoint_load_pair(self, first: int, second: int) -> tuple[Load | None, Load | None]:
        a, b = self._host.endpoint_load_pair(first, second)
        return load_from_wit(a), load_from_wit(b)

    def request_header(self, name: str) -> str | None:
        return self._host.request_header(name)

    def http(self, request: HttpRequest) -> HttpResponse:
        if self._probe is None:
            raise NotAllowed("probes are for health checks")
        raw = self._probe.HttpRequest(request.method, request.path, list(request.headers), request.timeout_ms)
        try:
            response = self._probe.http(raw)
        except self._err as error:
            raise probe_error_from_wit(error.value) from None  # type: ignore[attr-defined]
        return HttpResponse(response.status, response.headers, bytes(response.body), response.latency_us)

    def tcp_connect(self, timeout_ms: int) -> int:
        if self._probe is None:
            raise NotAllowed("probes are for health checks")
        try:
            return self._probe.tcp_connect(timeout_ms)
        except self._err as error:
            raise probe_error_from_wit(error.value) from None  # type: ignore[attr-defined]


    def store_get(self, endpoint: int | None, name: str) -> int:
        if self._store is None:
            return 0
        return self._store.get(endpoint, name)

    def store_add(self, endpoint: int | None, name: str, delta: int) -> int:
        if self._store is None:
            raise StoreError("no-pool")
        try:
            return self._store.add(endpoint, name, _wrap_i64(delta))
        except self._err as error:
            raise store_error_from_wit(error.value) from None  # type: ignore[attr-defined]

    def store_compare_and_swap(self, endpoint: int | None, name: str, expected: int, new: int) -> int:
        if self._store is None:
            raise StoreError("no-pool")
        try:
            return self._store.compare_and_swap(endpoint, name, expected, new)
        except self._err as error:
            raise store_error_from_wit(error.value) from None  # type: ignore[attr-defined]


def _wrap_i64(value: int) -> int:
    return ((value + 2**63) & _MASK) - 2**63


def store_error_from_wit(raw: Any) -> StoreError:
    """The generated `store-error` enum value as a `StoreError`."""
    index = getattr(raw, "_value_", raw)
    codes = StoreError.CODES
    return StoreError(codes[index] if isinstance(index, int) and 0 <= index < len(codes) else "no-pool")


def bind_host(host: ModuleType, probe: ModuleType | None, err: type[Exception], store: ModuleType | None = None) -> None:
    """Sends `switchyard.host`, `switchyard.store` and `switchyard.probe`
    to the real host."""
    _backend.bind(WitHost(host, probe, err, store))


# A pool's state across a swap (`balancer-state`, `recovery-state`).


def snapshot(pool: Any) -> bytes:
    """The state of the pool's plugin object (`pool._plugin`), as bytes; a
    plugin that fails gives none, and is logged."""
    try:
        state = pool._plugin.snapshot()
        if not isinstance(state, (bytes, bytearray, memoryview)):
            raise TypeError(f"snapshot returned {type(state).__name__}, not bytes")
        return bytes(state)
    except Exception as error:
        pool._faults.report("snapshot", error, "the pool's state is not carried to the new version")
        return b""


def restore(pool: Any, state: bytes, err: type[Exception]) -> None:
    """Hands an earlier version's state to the pool's plugin object; an
    exception refuses the new version, with its message (`err`)."""
    try:
        pool._plugin.restore(bytes(state))
    except Exception as error:
        raise err(str(error) or type(error).__name__) from None
