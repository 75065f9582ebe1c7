"""`{{name}}`: retry elsewhere, for requests that can be sent again. After a
failed attempt of a request the host can replay (an idempotent method with a
small body), the request is sent again at once to another endpoint, up to
`retries` times; any other failure is answered with the endpoint's own
response, or the host's error status when there is none. The host still
enforces its retry budget and the route's deadline.

Config (JSON, every key optional):
- `retries` (default `DEFAULT_RETRIES`): retries per request, from 0 (never
  retry) to `MAX_RETRIES`.
"""

from switchyard import Decision, Failure, GiveUp, Recovery, Retry, config

DEFAULT_RETRIES = 1
"""Retries per request unless `retries` says otherwise."""

MAX_RETRIES = 5
"""The largest `retries` accepted."""


class RetryElsewhere(Recovery):
    """The policy for one pool."""

    def __init__(self, options: dict) -> None:
        config.reject_unknown(options, "retries")
        self.retries = config.integer(options, "retries", DEFAULT_RETRIES, maximum=MAX_RETRIES)

    def on_failure(self, failure: Failure) -> Decision:
        # `attempt` counts from 0: the first try failed when it is 0.
        if failure.replayable and failure.request.attempt < self.retries:
            return Retry(delay_ms=0, same_endpoint=False)
        return GiveUp()
