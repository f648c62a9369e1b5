"""Throttling (429, 503): the retry policy of the load client, bounded and honouring Retry-After.

A deployment behind KServe or a gateway sheds load with 429 or 503 (an
activator scaling from zero, a rate limit); that is what its success and
throttling rates under scaling are about, so a throttled request is counted
(``throttled_rate``), not a failed trial (:func:`perfgate.measure.metrics.trial_failure`).
With the ``retry`` policy a throttled request is sent again, at most
``retries`` times, after its Retry-After (capped at :data:`MAX_WAIT_S`) or
an exponential backoff; it is timed from its last attempt (the engine's
latency once it got through) and its throttled attempts are counted on it.
A wait that would pass the trial's deadline is not taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from perfgate.measure.records import THROTTLED_KINDS, RawRequest

BACKOFF_S = 0.25
"""The first backoff without Retry-After; doubled per attempt."""
MAX_WAIT_S = 10.0
"""No single wait is longer, whatever Retry-After asks."""
DEFAULT_RETRIES = 3
"""Retries per request under the ``retry`` policy."""


class ThrottleRetry:
    """A load client's session whose throttled requests are sent again (``retries`` at most each)."""

    def __init__(self, inner, retries: int = DEFAULT_RETRIES, backoff_s: float = BACKOFF_S,
                 max_wait_s: float = MAX_WAIT_S):
        self.inner = inner
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s

    def wait_s(self, rec: RawRequest, attempt: int) -> float:
        if rec.retry_after_s is not None:
            return min(self.max_wait_s, rec.retry_after_s)
        return min(self.max_wait_s, self.backoff_s * 2 ** attempt)

    async def send(self, once: Callable[[], Awaitable[None]], rec: RawRequest, deadline: float | None) -> None:
        """``once`` sends ``rec``'s request; sent again while it is throttled and retries and time are left."""
        loop = asyncio.get_running_loop()
        for attempt in range(self.retries + 1):
            await once()
            if rec.error is None or rec.error.value not in THROTTLED_KINDS or attempt == self.retries:
                return
            wait = self.wait_s(rec, attempt)
            if deadline is not None and loop.time() + wait >= deadline:
                return  # no time left in the trial: it stays throttled
            rec.throttled_attempts += 1
            rec.chunks.clear()
            rec.status = rec.error = rec.done_at = rec.content_type = rec.retry_after_s = None
            rec.error_detail = ""
            await asyncio.sleep(wait)

    async def close(self) -> None:
        await self.inner.close()
