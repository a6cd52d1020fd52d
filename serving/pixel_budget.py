"""How many image pixels all requests together may hold decoded at full size at once.

The memory of decoding grows with pixels, not bytes: a 35 KB PNG can hold 36 M pixels (36 MB
as greyscale, 144 MB as Pillow's RGB). Each image is decoded holding its pixel count here and
lets it go once reduced and preprocessed, so however many requests decode at once, decoded
full-size images stay within `max_pixels_in_flight` pixels (~4 bytes each at worst).

A weighted semaphore, first come first served: a large image waiting at the head is not
overtaken forever by a stream of small ones. An image larger than the whole budget waits
until it is alone and then takes all of it, so no image can wait forever.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class PixelBudgetTimeout(Exception):
    def __init__(self, pixels: int, waited: float, capacity: int):
        super().__init__(
            f"waited {waited:.1f} s for room to decode {pixels} pixels; other requests are decoding "
            f"large images (max_pixels_in_flight = {capacity}). Retry shortly, or send smaller images."
        )


class PixelBudget:
    """Thread-safe; `with budget.hold(pixels, timeout_s):` around one image's decode."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"the pixel budget must be >= 1, got {capacity}")
        self.capacity = capacity
        self.in_use = 0
        self._waiting: deque[object] = deque()  # tickets, in arrival order
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int, timeout_s: float) -> Iterator[None]:
        taken = self._acquire(pixels, timeout_s)
        try:
            yield
        finally:
            self._release(taken)

    def _acquire(self, pixels: int, timeout_s: float) -> int:
        want = min(max(pixels, 0), self.capacity)
        ticket = object()
        start = time.monotonic()
        with self._cond:
            self._waiting.append(ticket)
            fits = lambda: self._waiting[0] is ticket and self.in_use + want <= self.capacity  # noqa: E731
            if not self._cond.wait_for(fits, timeout=timeout_s):
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the head may have changed
                raise PixelBudgetTimeout(pixels, time.monotonic() - start, self.capacity)
            self._waiting.popleft()
            self.in_use += want
            self._cond.notify_all()  # the next in line may fit too
        return want

    def _release(self, taken: int) -> None:
        with self._cond:
            self.in_use -= taken
            self._cond.notify_all()
