"""`{{name}}`: an HTTP health check. Each check sends `GET path` to the
endpoint under check through the host's HTTP probe and judges the answer:
**healthy** on a 2xx or 3xx status, **unhealthy** on any other status or
when the probe gets no answer (refused, timed out, reset, not HTTP). When
the host refuses to send the request (a path it does not accept), the
endpoint is not at fault and the verdict is **unknown**.

The host schedules the checks and applies the pool's `health` table
(`interval_ms`, `timeout_ms`, `rise`, `fall`); this plugin judges one probe.

Config (JSON, every key optional):
- `path` (default `DEFAULT_PATH`): the path requested; starts with `/`.
- `timeout_ms` (default `DEFAULT_TIMEOUT_MS`): the probe's own timeout, at
  least 1; the host caps it at the check's time limit.
"""

from switchyard import ConfigError, Endpoint, HealthCheck, Verdict, config, probe

DEFAULT_PATH = "/healthz"
"""The path requested unless `path` says otherwise."""

DEFAULT_TIMEOUT_MS = 1_000
"""The probe's timeout in milliseconds unless `timeout_ms` says otherwise."""


class HttpGet(HealthCheck):
    """The check for one pool: the request it sends."""

    def __init__(self, options: dict) -> None:
        config.reject_unknown(options, "path", "timeout_ms")
        path = config.string(options, "path", DEFAULT_PATH)
        if not path.startswith("/"):
            raise ConfigError(f"config key `path`: must start with `/`, got {path!r}")
        timeout_ms = config.integer(options, "timeout_ms", DEFAULT_TIMEOUT_MS, minimum=1)
        self.request = probe.HttpRequest(path, timeout_ms=timeout_ms)

    def check(self, target: Endpoint) -> Verdict:
        try:
            response = probe.http(self.request)
        except probe.NotAllowed as error:
            return Verdict.unknown(f"the host refused the probe: {error.why}")
        except probe.ProbeError as error:
            return Verdict.unhealthy(str(error))
        if 200 <= response.status < 400:
            millis = -(-response.latency_us // 1_000)
            return Verdict.healthy(f"{response.status} in {millis} ms")
        return Verdict.unhealthy(f"status {response.status}, expected 200-399")
