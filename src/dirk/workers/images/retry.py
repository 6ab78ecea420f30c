"""When to ask a registry again, and how long to wait first.

Only idempotent GETs (manifests, blobs, tokens) are retried, and only for failures that a second
try may not meet: a broken or timed-out connection, HTTP 408 and 429, and 500/502/503/504. Other
4xx answers (an unknown tag, a refused login) are final at once. The wait doubles from
`first_delay` up to `max_delay`; a `Retry-After` the registry sends is honoured up to a cap, so a
rate-limited pull neither hammers the registry nor hangs for an hour.
"""

from __future__ import annotations

import email.utils
import logging
import time

import anyio
import attrs

from dirk.errors import ImageError

log = logging.getLogger(__name__)

#: Tries per request, the first included.
RETRY_ATTEMPTS = 4
#: The wait after the first failure; it doubles after each further one.
FIRST_DELAY = 0.2
#: The longest backoff wait.
MAX_DELAY = 1.6
#: The longest wait a registry's Retry-After header can impose.
RETRY_AFTER_CAP = 10.0
#: HTTP statuses that say "try again later" rather than "no".
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@attrs.frozen
class RetryPolicy:
    attempts: int = RETRY_ATTEMPTS
    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `failures` failures in a row (1 for the first)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return min(self.first_delay * 2.0 ** (failures - 1), self.max_delay)


DEFAULT_RETRY = RetryPolicy()


class TransientError(Exception):
    """One failed attempt that may succeed when made again. Never leaves the images package:
    the caller retries, or raises `error` once the attempts are used up."""

    def __init__(self, error: ImageError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class Backoff:
    """The failures in a row of one request or download, and the waits between its attempts.

    A download that made progress since its last failure starts counting afresh (`progressed`),
    so a long blob over a link that breaks now and then still arrives.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.total_failures = 0

    def progressed(self) -> None:
        self.failures = 0

    async def failed(self, failure: TransientError) -> None:
        """Wait before the next attempt; raise the final error when the attempts are used up."""
        self.failures += 1
        self.total_failures += 1
        error = failure.error
        if self.failures >= self.policy.attempts:
            tries = self.total_failures
            raise type(error)(
                f"{error} (gave up after {tries} attempt{'s' if tries > 1 else ''})"
            ) from None
        delay = self.policy.delay(self.failures, failure.retry_after)
        log.warning(
            "%s; trying again in %.1f s (attempt %d of %d)",
            error,
            delay,
            self.failures + 1,
            self.policy.attempts,
        )
        await anyio.sleep(delay)
