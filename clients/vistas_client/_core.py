"""The request core shared by Client and AsyncClient.

Everything but the I/O lives here: URLs and headers, the retry policy, and turning
responses into JSON or exceptions. The two clients only run the loop

    for attempt in 0, 1, ...:
        send -> delay = core.retry_delay(attempt, response or None)
        delay is None -> core.parse(response) (or raise the connection error); else sleep(delay)

with blocking or awaited I/O, so they cannot drift apart in behaviour.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from vistas_client.errors import APIConnectionError, APITimeoutError, error_from_response

log = logging.getLogger("vistas_client")

VERSION = "0.1.0"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Retried: connection errors and timeouts, 408, 429 and 5xx. Every other 4xx is the
    caller's mistake and is raised at once. Every vistas route is idempotent (upserts
    and deletes are keyed by id), so resending a request is always safe.

    The wait is the server's `Retry-After` (seconds) when it sends one, else exponential
    backoff with full jitter: uniform(0, min(max_delay, initial_delay * 2**attempt)),
    which spreads retrying clients out instead of having them return in lockstep
    ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
    """

    max_retries: int = 2
    initial_delay: float = 0.5  # seconds: the cap of the first backoff, doubled per retry
    max_delay: float = 8.0
    # A server asking for a longer pause is not waited out inside one call: the error is raised
    # so that the caller decides (queue the work, tell the user) instead of hanging.
    max_retry_after: float = 60.0

    def __post_init__(self):
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    @staticmethod
    def retryable(status: int) -> bool:
        return status in (408, 429) or status >= 500

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number attempt + 1, or None: do not retry."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0.0, min(self.max_delay, self.initial_delay * 2**attempt))


class RequestCore:
    """Settings and decisions of one client: base URL, headers, timeout, retries."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int | RetryPolicy = 2,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout)
        self.retry = max_retries if isinstance(max_retries, RetryPolicy) else RetryPolicy(max_retries=max_retries)
        self.headers = {"Accept": "application/json", "User-Agent": f"vistas-python/{VERSION}"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def retry_delay(
        self, attempt: int, response: httpx.Response | None, method: str = "", path: str = ""
    ) -> float | None:
        """Seconds to wait before sending again, or None to stop here.

        `response` is None when the request failed to connect or timed out.
        """
        if response is not None and not RetryPolicy.retryable(response.status_code):
            return None  # success, or a client error that resending cannot fix
        delay = self.retry.delay(attempt, _retry_after(response))
        if delay is not None:
            why = "no response" if response is None else f"HTTP {response.status_code}"
            log.info("%s %s: %s, retry %d/%d in %.2fs", method, path, why, attempt + 1, self.retry.max_retries, delay)
        return delay

    @staticmethod
    def parse(response: httpx.Response):
        """2xx -> the JSON body; anything else -> the matching APIError subclass."""
        if response.is_success:
            return response.json() if response.content else None
        raise error_from_response(response)

    def connection_error(self, exc: httpx.TransportError, attempts: int) -> APIConnectionError:
        cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
        what = "did not answer in time" if cls is APITimeoutError else f"could not be reached ({exc!r})"
        return cls(f"{self.base_url} {what} after {attempts} attempt(s); is the vistas server running there?")


def path_segment(value: str) -> str:
    """A collection name or item id as one URL path segment ("a/b c" -> "a%2Fb%20c")."""
    return quote(str(value), safe="")


def _retry_after(response: httpx.Response | None) -> float | None:
    """The Retry-After header in seconds, if present and numeric (HTTP dates are ignored)."""
    if response is None:
        return None
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(0.0, value)
