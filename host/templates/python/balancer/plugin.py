"""`{{name}}`: least in flight over a round-robin window. Each pick looks at
the next `window` endpoints in round-robin order, asks the host how many
requests each has in flight, and takes the one with the fewest; a tie goes
to the first in round-robin order, so an idle pool is served round robin.
Looking at a window rather than the whole pool keeps a pick O(`window`) on a
pool of any size. An endpoint the host reports no load for counts as 0 in
flight; an empty pool declines the pick.

Config (JSON, every key optional):
- `window` (default `DEFAULT_WINDOW`): endpoints looked at per pick, from 1
  (plain round robin) to `MAX_WINDOW`.
"""

from switchyard import Balancer, Endpoint, RequestInfo, config, host

DEFAULT_WINDOW = 8
"""Endpoints looked at per pick unless `window` says otherwise."""

MAX_WINDOW = 64
"""The largest `window` accepted; it bounds the work of a pick."""


class LeastInFlight(Balancer):
    """The balancer's state for one pool."""

    def __init__(self, options: dict) -> None:
        config.reject_unknown(options, "window")
        self.window = config.integer(options, "window", DEFAULT_WINDOW, minimum=1, maximum=MAX_WINDOW)
        self.ids: list[int] = []
        self.next = 0
        """Where the next pick's window starts."""

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.ids = [endpoint.id for endpoint in endpoints]
        self.next %= max(len(self.ids), 1)

    def pick(self, request: RequestInfo) -> int | None:
        ids = self.ids
        n = len(ids)
        if n == 0:
            return None
        best, fewest = self.next, None
        for step in range(min(self.window, n)):
            index = (self.next + step) % n
            load = host.endpoint_load(ids[index])
            in_flight = load.in_flight if load is not None else 0
            # Strictly fewer: a tie keeps the earlier in round-robin order.
            if fewest is None or in_flight < fewest:
                best, fewest = index, in_flight
        self.next = (best + 1) % n
        return ids[best]
