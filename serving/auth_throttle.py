"""A login throttle for API keys: too many wrong keys from one client address, and that address
is refused (429 `too_many_auth_failures`) until its oldest failure leaves the window.

Without it a guesser gets an answer per key tried as fast as the server answers 401s. The
throttle is per client address (after `trusted_proxies`), not per key: a guesser has no key.
While an address is refused, even a right key gets 429 — otherwise the answer itself (401 or
not) would tell a right guess from a wrong one.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

# As for the rate-limit buckets: anyone can be a new address, so the table is bounded and the
# least recently failing address is forgotten first.
MAX_ADDRESSES = 10_000


class FailedAuth:
    """The times of each address's last `limit` failures. Used from the event loop only."""

    def __init__(self, limit: int, window_s: float, clock=time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, address: str) -> None:
        times = self._failures.pop(address, None) or deque(maxlen=self.limit)
        times.append(self._clock())
        self._failures[address] = times
        if len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)

    def blocked_for(self, address: str) -> float:
        """0 when `address` may try a key; else the seconds until it may again."""
        times = self._failures.get(address)
        if times is None or len(times) < self.limit:
            return 0.0
        wait = times[0] + self.window_s - self._clock()  # `limit` failures, the oldest at times[0]
        return max(wait, 0.0)
