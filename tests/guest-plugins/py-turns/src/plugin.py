"""A balancer for the end-to-end tests of contract 0.2.1 in Python: it takes
turns over the pushed endpoints, counts its picks in the pool's store, and
carries its place to the next version of itself through `snapshot` and
`restore` (format 1: a byte, then the place as a u32)."""

from switchyard import Balancer, Endpoint, RequestInfo, store

FORMAT = 1


class Turns(Balancer):
    def __init__(self, config: dict) -> None:
        super().__init__(config)
        self.ids: list[int] = []
        self.next = 0

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.ids = [endpoint.id for endpoint in endpoints]

    def pick(self, request: RequestInfo) -> int | None:
        if not self.ids:
            return None
        store.add(None, "picks", 1)
        id = self.ids[self.next % len(self.ids)]
        self.next += 1
        return id

    def snapshot(self) -> bytes:
        return bytes([FORMAT]) + self.next.to_bytes(4, "little")

    def restore(self, state: bytes) -> None:
        if len(state) != 5 or state[0] != FORMAT:
            raise ValueError(f"not a snapshot of format {FORMAT}")
        self.next = int.from_bytes(state[1:], "little")
