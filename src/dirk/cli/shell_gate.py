"""Progress views that keep quiet while a shell has the terminal (`dirk run -i`).

A shell puts the terminal in raw mode; a progress line written meanwhile would land in the
middle of it, unformatted. The gate holds the records a view gets while a shell is open and
hands them over, in order, once it has exited.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dirk.progress import View
    from dirk.wire.event_client import EventRecord


class ShellGate:
    """Wraps views (`wrap`) and holds their records back while `shell(True)` is in effect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # records come from the event stream's thread
        self._held: list[tuple[View, EventRecord]] | None = None

    def wrap(self, view: View) -> View:
        return _GatedView(self, view)

    def shell(self, open_: bool) -> None:
        """A shell opened (True) or exited (False)."""
        if open_:
            with self._lock:
                if self._held is None:
                    self._held = []
            return
        self._release()

    def _offer(self, view: View, record: EventRecord) -> bool:
        """Holds `record` back if a shell is open; False: show it now."""
        with self._lock:
            if self._held is None:
                return False
            self._held.append((view, record))
            return True

    def _release(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            for view, record in held:  # under the lock: nothing newer overtakes them
                view.on_record(record)


class _GatedView:
    def __init__(self, gate: ShellGate, view: View) -> None:
        self._gate = gate
        self._view = view

    def on_record(self, record: EventRecord) -> None:
        if not self._gate._offer(self._view, record):
            self._view.on_record(record)

    def close(self) -> None:
        self._gate._release()
        self._view.close()
