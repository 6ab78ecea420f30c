"""A session's step events as JSON lines, for the viewers that subscribe to them.

The solver hands every `StepEvent` of a session's jobs to its hub (`Session.events`), on the
event loop; the hub encodes it once and queues the line for each subscriber (the
`GET /sessions/<token>/events` stream). A subscriber's queue is bounded: when a viewer reads
too slowly, output lines are dropped first (state changes only past a larger bound) and
counted, and the next line the viewer gets says how many: a slow viewer never slows the
engine, and never makes it hold more than the bound in memory. With no subscriber, publishing
costs one check.

Secret values never reach a hub: operations (and so step names) never hold them, and exec
output is scrubbed before the solver emits it (`solver/exec_secrets.py`).

The format (one JSON object per line, `type` first) is documented in ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections import deque
from typing import Any

from dirk.solver.job import EventKind, StepEvent

#: Bytes of output lines a subscriber may have queued; past it, output is dropped (counted).
OUTPUT_BOUND = 1024 * 1024
#: Bytes of queued lines past which state changes are dropped too (counted).
HARD_BOUND = 4 * 1024 * 1024
#: Hex digits of the cache key a step's `id` shows (unique within any real session).
ID_DIGITS = 16

#: Stream state of each kind of step event.
STATES: dict[EventKind, str] = {
    "queued": "queued",
    "start": "running",
    "cached": "cached",
    "done": "done",
    "error": "failed",
    "cancelled": "cancelled",
}
_ENDS = frozenset({"done", "error", "cancelled", "cached"})


def step_id(key: str) -> str:
    return key.removeprefix("sha256:")[:ID_DIGITS]


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class Subscriber:
    """One viewer's queue of encoded lines."""

    def __init__(self) -> None:
        self._lines: deque[bytes] = deque()
        self._bytes = 0
        self.dropped_lines = 0
        self.dropped_events = 0
        self._wake = asyncio.Event()
        self.closed = False

    def offer(self, line: bytes, *, output: bool, lines: int = 1) -> None:
        bound = OUTPUT_BOUND if output else HARD_BOUND
        if self._bytes + len(line) > bound:
            if output:
                self.dropped_lines += lines
            else:
                self.dropped_events += 1
            return
        self._lines.append(line)
        self._bytes += len(line)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        """Returns when lines are queued, the hub closed, or after `timeout` seconds."""
        if self._lines or self.closed:
            return
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    def take(self) -> bytes:
        """Everything queued, after a `dropped` line if anything was dropped since the last
        take."""
        parts: list[bytes] = []
        if self.dropped_lines or self.dropped_events:
            parts.append(
                _line(
                    {
                        "type": "dropped",
                        "lines": self.dropped_lines,
                        "events": self.dropped_events,
                        "at": round(time.time(), 3),
                    }
                )
            )
            self.dropped_lines = self.dropped_events = 0
        parts.extend(self._lines)
        self._lines.clear()
        self._bytes = 0
        return b"".join(parts)


class EventHub:
    """The subscribers of one session's events; `publish` is the session's `EventSink`."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        #: Incremental UTF-8 decoders of the output streams of running steps: a character
        #: split between two chunks is sent whole.
        self._decoders: dict[tuple[str, str], codecs.IncrementalDecoder] = {}
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        if self.closed:
            subscriber.close()
        else:
            self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        if not self._subscribers:
            self._decoders.clear()

    def close(self) -> None:
        """The session ended: subscribers get what is queued, then the end of the stream."""
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.close()
        self._subscribers = []
        self._decoders.clear()

    def publish(self, event: StepEvent) -> None:
        if not self._subscribers:
            return
        if event.kind == "stdout" or event.kind == "stderr":
            self._publish_output(event)
            return
        if event.kind == "explain":
            self._offer_all(
                _line(
                    {
                        "type": "explain",
                        "id": step_id(event.key),
                        "name": event.description,
                        "reason": event.data.decode("utf-8", errors="replace"),
                        "at": round(event.at, 3),
                    }
                )
            )
            return
        record: dict[str, Any] = {
            "type": "step",
            "id": step_id(event.key),
            "state": STATES[event.kind],
            "name": event.description,
            "cached": event.kind == "cached",
            "at": round(event.at, 3),
        }
        if event.inputs:
            record["inputs"] = [step_id(key) for key in event.inputs]
        if event.kind in ("done", "cached") and event.duration:
            record["duration"] = round(event.duration, 3)
        if event.kind == "error":
            record["error"] = event.data.decode("utf-8", errors="replace")
        elif event.kind == "cancelled" and event.data:
            record["reason"] = event.data.decode("utf-8", errors="replace")
        if event.kind in _ENDS:
            for stream in ("stdout", "stderr"):
                tail = self._decoders.pop((event.key, stream), None)
                if tail is not None:
                    self._send_output(event, stream, tail.decode(b"", final=True))
        self._offer_all(_line(record))

    def _offer_all(self, line: bytes) -> None:
        for subscriber in self._subscribers:
            subscriber.offer(line, output=False)

    def _publish_output(self, event: StepEvent) -> None:
        stream = event.kind
        decoder = self._decoders.get((event.key, stream))
        if decoder is None:
            decoder = self._decoders[(event.key, stream)] = codecs.getincrementaldecoder("utf-8")(
                errors="replace"
            )
        self._send_output(event, stream, decoder.decode(event.data))

    def _send_output(self, event: StepEvent, stream: str, text: str) -> None:
        if not text:
            return
        line = _line(
            {
                "type": "output",
                "id": step_id(event.key),
                "stream": stream,
                "data": text,
                "at": round(event.at, 3),
            }
        )
        lines = max(1, text.count("\n"))
        for subscriber in self._subscribers:
            subscriber.offer(line, output=True, lines=lines)
