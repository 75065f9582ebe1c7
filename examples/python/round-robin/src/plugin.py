"""Smooth weighted round robin: over any window of `sum(weights)` picks, each
endpoint is chosen exactly `weight` times, interleaved rather than in bursts
(the algorithm of NGINX's `ngx_http_upstream_round_robin`).

Config: none. Each pick is O(n) in the pool's size; for pools with equal
weights the pick degenerates to a counter, which is O(1).
"""

from switchyard import Balancer, Endpoint, RequestInfo


class SmoothWeightedRoundRobin(Balancer):
    """The balancer's state for one pool."""

    def __init__(self, config: dict) -> None:
        super().__init__(config)  # takes no options
        self.set_endpoints([])

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.ids = [endpoint.id for endpoint in endpoints]
        self.weights = [max(endpoint.weight, 1) for endpoint in endpoints]
        self.current = [0] * len(endpoints)
        self.total = sum(self.weights)
        self.uniform = len(set(self.weights)) <= 1
        self.next = 0

    def pick(self, request: RequestInfo) -> int | None:
        ids = self.ids
        if not ids:
            return None
        if self.uniform:
            index = self.next % len(ids)
            self.next = index + 1
            return ids[index]
        current, weights = self.current, self.weights
        best = 0
        for index in range(len(ids)):
            current[index] += weights[index]
            if current[index] > current[best]:
                best = index
        current[best] -= self.total
        return ids[best]
