"""Showing a session's events in one or more views while a program runs.

`watch_events` subscribes to the session's event stream (returning once the engine counts the
subscription, so nothing of a later query is missed) and hands each record to every view;
`Watch.finish` waits for the stream's end when the session is ending (every event seen),
then closes the views (final picture, summary). A view that fails stops showing, nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dirk.wire.event_client import EventStream, subscribe_events

if TYPE_CHECKING:
    from dirk.progress import View
    from dirk.wire.client import EngineAddress
    from dirk.wire.driver import IO
    from dirk.wire.event_client import EventRecord

log = logging.getLogger(__name__)


class Watch:
    def __init__(self, views: Sequence[View]) -> None:
        self.views = list(views)
        self.stream: EventStream | None = None

    def on_record(self, record: EventRecord) -> None:
        for view in list(self.views):
            try:
                view.on_record(record)
            except Exception:
                log.exception("a progress view failed; it shows nothing more")
                self.views.remove(view)

    def finish(self, timeout: float) -> None:
        """Waits up to `timeout` seconds for the stream's end, then closes the views."""
        if self.stream is not None:
            self.stream.finish(timeout)
        for view in self.views:
            try:
                view.close()
            except Exception:
                log.exception("a progress view failed to close")


async def watch_events(
    address: EngineAddress, token: str, views: Sequence[View], *, io: IO | None = None
) -> Watch:
    """Subscribes `views` to a session's events; on failure they are closed (a live view
    gives the terminal back) and the error is raised."""
    watch = Watch(views)
    try:
        if io is None:
            watch.stream = await subscribe_events(address, token, watch.on_record)
        else:
            watch.stream = await subscribe_events(address, token, watch.on_record, io=io)
    except BaseException:
        watch.finish(0)
        raise
    return watch
