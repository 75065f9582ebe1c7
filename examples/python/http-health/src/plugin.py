"""HTTP health check: each check sends one HTTP/1.1 request (`GET /healthz`
by default) to the endpoint under check through the host's `probe.http`,
and judges the answer:

- **Unhealthy** when the probe gets no answer (the reason is the probe's
  error: `connection refused`, `timed out`, `connection reset`,
  `invalid response: ...`), when the status is not one of
  `expected_statuses` (`status 503, expected 200-399`), or when
  `body_contains` is set and the body lacks it (`200 but body lacks `ok``);
- **Degraded** when everything matched but the probe took longer than
  `degraded_above_ms` (`200 in 1200.4 ms, above 1000 ms`): the endpoint
  keeps serving, and balancers that read its health can favour others;
- **Healthy** otherwise (`200 in 3 ms`).

Checks run in this order, so a wrong status is reported before a missing
body text, and latency only matters for an answer that passed. Latencies in
reasons are in milliseconds, rounded up to a tenth, so a degraded latency
never reads as equal to its ceiling.

When the host refuses to send the request (`probe.NotAllowed`, for a
method, path or header it does not accept), the endpoint is not at fault:
the verdict is **Unknown** with the host's reason, and a warning is logged
once per pool. Config validation rejects everything this plugin knows to be
unsendable, so this should not happen.

The idea is HAProxy's `option httpchk` with `http-check expect status` /
`http-check expect string`
(<https://docs.haproxy.org/2.8/configuration.html#4.2-option%20httpchk>),
whose default also counts any 2xx or 3xx status as passing, and Envoy's HTTP
health checker with its `expected_statuses` ranges
(<https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto>).
The host schedules the checks and applies the pool's `health` table
(`interval_ms`, `timeout_ms`, `jitter_ms`, `rise`, `fall`); this plugin
judges one probe. It is the Python port of `plugins/http-health`, with the
same config keys and verdict reasons.

Config (JSON, every key optional):
- `path` (default `"/healthz"`, `DEFAULT_PATH`): path and query to request;
  starts with `/`, printable ASCII without spaces or `#`.
- `method` (default `"GET"`, `DEFAULT_METHOD`): `GET` or `HEAD` (any case).
  `HEAD` gets no body, so it cannot be combined with `body_contains`.
- `headers` (default none): a table of extra request headers, such as
  `{ host = "api.internal", accept = "application/json" }`. Names must be
  HTTP tokens and values must not hold control characters; the framing
  headers (`content-length`, `transfer-encoding`, `connection`, ...) are
  refused.
- `expected_statuses` (default `["200-399"]`): the statuses that pass, a list
  whose items are a status (`204`), a range (`"200-299"`, inclusive) or a
  class (`"2xx"`); every status is from 100 to 599.
- `body_contains` (default none): text the body must contain, looked for in
  the first 64 KiB (the host cuts bodies there), byte for byte.
- `degraded_above_ms` (default none): a latency ceiling in ms; a passing
  probe slower than this is Degraded. Must be below `timeout_ms`.
- `timeout_ms` (default 1000, `DEFAULT_TIMEOUT_MS`): the probe's own
  timeout, at least 1; the host caps it at the check's own time limit (the
  `health` table's `timeout_ms`).

```toml
[[pools]]
name = "api"
health = { plugin = "py-http-health", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3, config = { path = "/healthz", expected_statuses = [200, 204], body_contains = "ok", degraded_above_ms = 250 } }
endpoints = [{ address = "10.0.0.1:8080" }, { address = "10.0.0.2:8080" }]
```
"""

from __future__ import annotations

from dataclasses import dataclass

from switchyard import ConfigError, Endpoint, HealthCheck, Verdict, config, host, probe

DEFAULT_PATH = "/healthz"
"""The path requested unless `path` says otherwise."""

DEFAULT_METHOD = "GET"
"""The method used unless `method` says otherwise."""

DEFAULT_TIMEOUT_MS = 1_000
"""The probe's timeout in ms unless `timeout_ms` says otherwise."""

MIN_STATUS = 100
"""The lowest status accepted in `expected_statuses`."""

MAX_STATUS = 599
"""The highest status accepted in `expected_statuses`."""

MAX_BODY_BYTES = 64 * 1024
"""The most bytes of body the host returns, so the longest useful `body_contains`."""

KEYS = ("path", "method", "headers", "expected_statuses", "body_contains", "degraded_above_ms", "timeout_ms")
"""The config keys, in the order documented above."""

FRAMING_HEADERS = frozenset(
    ["connection", "content-length", "expect", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"]
)
"""Headers that would change how the request is framed or the connection is
handled; the probe owns those."""

_TOKEN_PUNCTUATION = frozenset("!#$%&'*+-.^_`|~")

_STATUS_FORMS = 'expected a number such as 204, a range such as "200-299" or a class such as "2xx"'


@dataclass(frozen=True, slots=True)
class StatusRange:
    """An inclusive range of statuses; one item of `expected_statuses`."""

    first: int
    last: int

    def __contains__(self, status: int) -> bool:
        return self.first <= status <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, item: object) -> StatusRange:
        """A range from a number (`204`) or a string: `"204"`, `"200-299"`
        or `"2xx"`; `ValueError` with the reason otherwise."""
        if isinstance(item, int) and not isinstance(item, bool):
            return cls(_status_in_range(item), item)
        if not isinstance(item, str):
            raise ValueError(f"got {item!r}; {_STATUS_FORMS}")
        text = item.strip()
        if text.endswith(("xx", "XX")):
            digit = text[:-2]
            if len(digit) != 1 or digit not in "12345":
                raise ValueError(f"`{text}` is not a status class from 1xx to 5xx")
            found = cls(int(digit) * 100, int(digit) * 100 + 99)
        elif "-" in text:
            first, last = text.split("-", 1)
            found = cls(_parse_status(first), _parse_status(last))
        else:
            status = _parse_status(text)
            found = cls(status, status)
        if found.first > found.last:
            raise ValueError(f"range `{text}` is empty: {found.first} > {found.last}")
        return found


DEFAULT_EXPECTED_STATUSES = (StatusRange(200, 399),)
"""The statuses that pass unless `expected_statuses` says otherwise: any 2xx
or 3xx, as in HAProxy."""


def _status_in_range(status: int) -> int:
    if not MIN_STATUS <= status <= MAX_STATUS:
        raise ValueError(f"status {status} is not from {MIN_STATUS} to {MAX_STATUS}")
    return status


def _parse_status(text: str) -> int:
    """One status of a range string, from 100 to 599."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > 65_535:
        raise ValueError(f"`{text}` is not a status; {_STATUS_FORMS}")
    return _status_in_range(int(text))


def format_latency(latency_us: int) -> str:
    """A latency in µs as milliseconds, rounded up to a tenth: `3 ms`,
    `0.2 ms`, `1000.1 ms`."""
    tenths = -(-latency_us // 100)
    whole, tenth = divmod(tenths, 10)
    return f"{whole} ms" if tenth == 0 else f"{whole}.{tenth} ms"


def _shorten(text: str) -> str:
    """At most 40 characters of `text`, for a reason."""
    return text if len(text) <= 40 else text[:40] + "…"


def _is_token(name: str) -> bool:
    """Whether `name` is an HTTP token (RFC 9110, section 5.6.2)."""
    return bool(name) and all(c.isascii() and (c.isalnum() or c in _TOKEN_PUNCTUATION) for c in name)


def _is_control(c: str) -> bool:
    return ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0


def _headers(options: dict) -> list[tuple[str, str]]:
    """The extra headers, checked and sorted by name so every check sends the same request."""
    headers = options.get("headers", {})
    if not isinstance(headers, dict):
        raise ConfigError(f"config key `headers`: must be a table of header names to values, got {headers!r}")
    for name, value in headers.items():
        if not isinstance(value, str):
            raise ConfigError(f"config key `headers.{name}`: must be a string, got {value!r}")
        if not _is_token(name):
            raise ConfigError(f"config key `headers`: {name!r} is not a valid header name")
        if name.lower() in FRAMING_HEADERS:
            raise ConfigError(f"config key `headers`: `{name}` is set by the probe itself")
        if any(_is_control(c) and c != "\t" for c in value):
            raise ConfigError(f"config key `headers`: the value of `{name}` holds a control character")
    return sorted(headers.items())


def _expected_statuses(options: dict) -> tuple[StatusRange, ...]:
    items = options.get("expected_statuses", [str(r) for r in DEFAULT_EXPECTED_STATUSES])
    if not isinstance(items, list):
        raise ConfigError(f"config key `expected_statuses`: must be a list, got {items!r}")
    if not items:
        raise ConfigError("config key `expected_statuses`: must list at least one status")
    ranges = []
    for index, item in enumerate(items):
        try:
            ranges.append(StatusRange.parse(item))
        except ValueError as error:
            raise ConfigError(f"config key `expected_statuses[{index}]`: {error}") from None
    return tuple(ranges)


def _path(options: dict) -> str:
    path = config.string(options, "path", DEFAULT_PATH)
    if not path.startswith("/"):
        raise ConfigError(f"config key `path`: must start with `/`, got `{path}`")
    for c in path:
        if not c.isascii() or _is_control(c) or c in " #":
            raise ConfigError(f"config key `path`: {path!r} may not hold {c!r}; percent-encode it")
    return path


class HttpHealth(HealthCheck):
    """The health check's state for one pool."""

    def __init__(self, options: dict) -> None:
        config.reject_unknown(options, *KEYS)
        method = config.string(options, "method", DEFAULT_METHOD).upper()
        if method not in ("GET", "HEAD"):
            raise ConfigError(f"config key `method`: must be GET or HEAD, got `{method}`")
        body_contains = options.get("body_contains")
        if body_contains is not None and not isinstance(body_contains, str):
            raise ConfigError(f"config key `body_contains`: must be a string, got {body_contains!r}")
        if method == "HEAD" and body_contains is not None:
            raise ConfigError("config key `body_contains`: a HEAD response has no body; use method GET")
        path = _path(options)
        headers = _headers(options)
        self.expected = _expected_statuses(options)
        self.body_contains: bytes | None = None
        if body_contains is not None:
            needle = body_contains.encode()
            if not needle:
                raise ConfigError("config key `body_contains`: must not be empty")
            if len(needle) > MAX_BODY_BYTES:
                raise ConfigError(
                    f"config key `body_contains`: {len(needle)} bytes can never match a body cut at {MAX_BODY_BYTES}"
                )
            self.body_contains = needle
        timeout_ms = config.integer(options, "timeout_ms", DEFAULT_TIMEOUT_MS)
        if timeout_ms == 0:
            raise ConfigError("config key `timeout_ms`: must be at least 1")
        ceiling = options.get("degraded_above_ms")
        if ceiling is not None:
            ceiling = config.integer(options, "degraded_above_ms", 0)
            if ceiling >= timeout_ms:
                raise ConfigError(
                    f"config key `degraded_above_ms`: must be below `timeout_ms` ({timeout_ms}), got {ceiling}"
                )
        self.degraded_above_ms: int | None = ceiling
        self.request = probe.HttpRequest(path, method, headers, timeout_ms)
        """The request each check sends."""
        self.warned_not_allowed = False
        """Whether the host's refusal to send the probe was logged already."""

    def check(self, target: Endpoint) -> Verdict:
        try:
            response = probe.http(self.request)
        except probe.NotAllowed as error:
            if not self.warned_not_allowed:
                self.warned_not_allowed = True
                host.warn(f"the host refuses the probe {self.request.method} {self.request.path}: {error.why}")
            return Verdict.unknown(f"probe not allowed: {error.why}")
        except probe.ProbeError as error:
            return Verdict.unhealthy(str(error))
        return self.judge(response)

    def judge(self, response: probe.HttpResponse) -> Verdict:
        """The verdict on one answer."""
        status = response.status
        if not any(status in expected for expected in self.expected):
            shown = ", ".join(str(expected) for expected in self.expected)
            return Verdict.unhealthy(f"status {status}, expected {shown}")
        if self.body_contains is not None and self.body_contains not in response.body:
            needle = self.body_contains.decode("utf-8", errors="replace")
            return Verdict.unhealthy(f"{status} but body lacks `{_shorten(needle)}`")
        latency = format_latency(response.latency_us)
        ceiling = self.degraded_above_ms
        if ceiling is not None and response.latency_us > ceiling * 1_000:
            return Verdict.degraded(f"{status} in {latency}, above {ceiling} ms")
        return Verdict.healthy(f"{status} in {latency}")
