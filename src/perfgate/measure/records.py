"""Raw per-request timelines: what the load client's hot path records.

The client records only the send time and ``(timestamp, raw bytes)`` of each
socket read; everything else (SSE parsing, token counts, metrics) is derived
after the measurement window from these records, so parsing cost never lands
between two timestamps.

All timestamps are ``time.perf_counter()`` seconds on the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from perfgate.schema.status import FaultClass


class ErrorKind(str, Enum):
    """Why a request failed, by class. ``None`` on a record means success."""

    CONNECT = "connect"  # could not open a connection / connection refused
    HTTP_4XX = "http_4xx"  # 4xx other than 429
    HTTP_429 = "http_429"  # throttled
    HTTP_503 = "http_503"  # throttled: service unavailable (a scale-from-zero activator, an overloaded gateway)
    HTTP_5XX = "http_5xx"  # 5xx other than 503
    MID_STREAM = "mid_stream"  # stream started (HTTP 200) and then broke or sent an error event
    TIMEOUT = "timeout"  # request exceeded its deadline
    PROTOCOL = "protocol"  # unparseable response: garbage instead of SSE, missing [DONE]


ERROR_CLASS: Mapping[str, FaultClass] = MappingProxyType({
    ErrorKind.TIMEOUT.value: FaultClass.ENGINE_HUNG,  # no complete answer in time: a stuck engine (or one far too slow)
    ErrorKind.CONNECT.value: FaultClass.SERVER_ERROR,  # nobody listening; a crash when the process is gone (session)
    ErrorKind.HTTP_5XX.value: FaultClass.SERVER_ERROR,
    ErrorKind.MID_STREAM.value: FaultClass.SERVER_ERROR,
    ErrorKind.PROTOCOL.value: FaultClass.SERVER_ERROR,
    ErrorKind.HTTP_4XX.value: FaultClass.CLIENT_ERROR,
    ErrorKind.HTTP_429.value: FaultClass.THROTTLED,  # refused for load: a rate, not a broken engine
    ErrorKind.HTTP_503.value: FaultClass.THROTTLED,
})
"""Each request error kind's fault class (:class:`perfgate.schema.status.FaultClass`; the crash, hang and boot
timeout of the engine process itself are decided from its process state, by the session)."""
THROTTLED_KINDS = frozenset(kind for kind, cls in ERROR_CLASS.items() if cls is FaultClass.THROTTLED)
"""Request errors that are throttling: counted as ``throttled_rate`` and, under the default policy, not a failed
trial (docs/faults.md)."""


def status_kind(status: int | None) -> ErrorKind:
    """The error kind of a response that was not a 200 stream."""
    if status is None:
        return ErrorKind.CONNECT
    if status == 429:
        return ErrorKind.HTTP_429
    if status == 503:
        return ErrorKind.HTTP_503
    if 400 <= status < 500:
        return ErrorKind.HTTP_4XX
    if status >= 500:
        return ErrorKind.HTTP_5XX
    return ErrorKind.PROTOCOL  # 1xx/2xx/3xx other than 200: not a stream we can use


def retry_after_seconds(value: str) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if neither."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@dataclass(slots=True)
class RawRequest:
    """One request as seen on the wire by the client.

    ``chunks`` are the raw reads in arrival order; a read may hold several SSE
    events, part of one, or none of the payload (keep-alive).
    """

    index: int
    scheduled_at: float | None  # when the schedule wanted it sent (None: closed loop)
    sent_at: float  # just before the request was written
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    done_at: float | None = None  # after the last byte (or the failure)
    status: int | None = None  # HTTP status, None if no response
    error: ErrorKind | None = None
    error_detail: str = ""
    warmup: bool = False
    content_type: str | None = None  # the response's Content-Type (lower case), when it sent one
    retry_after_s: float | None = None  # a refusal's Retry-After, in seconds, when it sent one
    throttled_attempts: int = 0  # earlier attempts refused with 429/503 and sent again (the retry policy)

    def timed_out(self, at: float, timeout_s: float, trial_deadline_passed: bool) -> None:
        """Mark this request as a timeout at ``at`` (perf_counter): its own deadline, or the trial's."""
        self.done_at = at
        self.error = ErrorKind.TIMEOUT
        self.error_detail = (f"no complete response when the trial deadline passed ({at - self.sent_at:.1f}s)"
                             if trial_deadline_passed else f"no complete response within {timeout_s:g}s")


@dataclass(slots=True)
class TokenEvent:
    """A parsed SSE event that carried generated content."""

    t: float  # timestamp of the read that completed this event
    n_tokens: int | None  # tokens in this event when the server says so (token_ids), else None
    text: str = ""


@dataclass(slots=True)
class ParsedStream:
    """The SSE stream of one request, parsed after the run.

    ``events`` holds only events with generated content: role-only first chat
    chunks, empty-content chunks and usage-only final chunks are not tokens.
    """

    events: list[TokenEvent] = field(default_factory=list)
    prompt_tokens: int | None = None  # from the usage chunk
    completion_tokens: int | None = None  # from the usage chunk
    saw_done: bool = False
    error: str | None = None  # an error event inside the stream, or a parse failure
