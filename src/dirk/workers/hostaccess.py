"""Host filesystem access with a session owner's rights, never the engine's.

The engine runs as root; a session belongs to the user who opened it. Every read and write of
the host's files done for a session runs in a worker thread whose *filesystem* credentials are
that user's: Linux keeps fsuid, fsgid and the supplementary groups per thread (the raw
syscalls, not glibc's wrappers, which would change every thread), and a thread whose fsuid is
not 0 loses CAP_DAC_OVERRIDE and the other filesystem capabilities, so the kernel itself
checks each open, stat and mkdir as it would for that user. Files an export creates belong
to the user too. The engine's own state directory is never reachable through the host API,
whoever asks.

Where such a thread must also touch the engine's state (an import writes layers, an export
reads a snapshot), it switches to the engine's credentials for exactly that
(`engine_credentials`, and `owner_credentials` inside it for the host side again).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import platform
import pwd
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import attrs

from dirk.errors import HostPathError, StateError

T = TypeVar("T")

#: Syscall numbers of setfsuid, setfsgid and setgroups (thread-scoped when called raw).
_SYSCALLS = {
    "x86_64": (122, 123, 116),
    "aarch64": (151, 152, 159),
}
_libc = ctypes.CDLL(None, use_errno=True)
#: Threads per session owner doing host I/O at once.
THREADS_PER_USER = 4


@attrs.frozen
class HostUser:
    """Whose rights host access has: uid, primary gid and supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @classmethod
    def engine(cls) -> HostUser:
        """The engine process's own credentials."""
        return cls(os.geteuid(), os.getegid(), tuple(os.getgroups()))

    @classmethod
    def of_uid(cls, uid: int, gid: int | None = None) -> HostUser:
        """A user by uid, with the primary group and supplementary groups the system gives
        that user (a uid without a passwd entry gets `gid`, or its own number, and no groups)."""
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            own = uid if gid is None else gid
            return cls(uid, own, (own,))
        primary = entry.pw_gid if gid is None else gid
        return cls(uid, primary, tuple(os.getgrouplist(entry.pw_name, primary)))


def _syscall_numbers() -> tuple[int, int, int]:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise StateError(
            f"host access with a user's rights is not available on {platform.machine()}: "
            "run the engine on x86_64 or aarch64"
        )
    return numbers


def _set_thread_credentials(user: HostUser) -> None:
    """Filesystem credentials of the calling thread only: groups, gid, then uid (the uid's
    switch away from 0 is what drops the filesystem capabilities)."""
    setfsuid, setfsgid, setgroups = _syscall_numbers()
    groups = (ctypes.c_uint * len(user.groups))(*user.groups)
    if _libc.syscall(setgroups, len(user.groups), groups) != 0:
        raise StateError(f"setgroups for uid {user.uid} failed: {os.strerror(ctypes.get_errno())}")
    _libc.syscall(setfsgid, user.gid)
    _libc.syscall(setfsuid, user.uid)
    # setfsuid/setfsgid report the previous value, never an error: read back to be sure.
    if _libc.syscall(setfsuid, -1) != user.uid or _libc.syscall(setfsgid, -1) != user.gid:
        raise StateError(f"could not take the filesystem credentials of uid {user.uid}")


_current = threading.local()


@contextlib.contextmanager
def engine_credentials() -> Iterator[None]:
    """Within a user's host-access thread: the engine's own credentials for the block (to
    write into the state directory), then the user's again."""
    user: HostUser | None = getattr(_current, "user", None)
    if user is None:
        yield
        return
    _set_thread_credentials(_current.engine)
    try:
        yield
    finally:
        _set_thread_credentials(user)


@contextlib.contextmanager
def owner_credentials() -> Iterator[None]:
    """Within `engine_credentials` in a user's host-access thread: the user's credentials
    again for the block (to read the host side of an import); elsewhere nothing changes."""
    user: HostUser | None = getattr(_current, "user", None)
    if user is None:
        yield
        return
    _set_thread_credentials(user)
    try:
        yield
    finally:
        _set_thread_credentials(_current.engine)


def current_uid() -> int:
    """Whose rights the calling thread's file access has: a host-access thread's user, or the
    engine's own uid anywhere else. Memos of host reads are kept per uid, so one user's read
    never answers another's."""
    user: HostUser | None = getattr(_current, "user", None)
    return os.geteuid() if user is None else user.uid


def _enter_thread(user: HostUser, engine: HostUser) -> None:
    _current.user = user
    _current.engine = engine
    _set_thread_credentials(user)


class HostAccess:
    """Runs host-filesystem work for one user: `for_user` gives every caller for the same
    user the same one (its threads are kept for the engine's life)."""

    def __init__(self, user: HostUser) -> None:
        self.user = user
        self._engine = HostUser.engine()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_user(cls, user: HostUser) -> HostAccess:
        with _registry_lock:
            access = _registry.get(user)
            if access is None:
                access = _registry[user] = cls(user)
            return access

    @property
    def same_as_engine(self) -> bool:
        return self.user.uid == self._engine.uid

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a thread with the user's filesystem credentials."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args)
        if self.same_as_engine:
            return await loop.run_in_executor(None, call)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=THREADS_PER_USER,
                    thread_name_prefix=f"host-{self.user.uid}",
                    initializer=_enter_thread,
                    initargs=(self.user, self._engine),
                )
            pool = self._pool
        return await loop.run_in_executor(pool, call)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


_registry: dict[HostUser, HostAccess] = {}
_registry_lock = threading.Lock()


def refuse_state_path(path: Path, state_root: Path) -> Path:
    """`path` itself, unless it is (or leads through a link into) the engine's state, which
    the host API never exposes, whoever asks."""
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(state_root))
    if real == root or root in real.parents:
        raise HostPathError(
            f"{path}: is inside the engine's state directory ({root}), which the host API "
            "never exposes; copy what you need somewhere else first"
        )
    return path


@contextlib.contextmanager
def entered_as_engine(manager: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """`with manager` whose entry and exit (a mount and its unmount, say) run with the
    engine's credentials, while the block keeps the calling thread's."""
    with engine_credentials():
        value = manager.__enter__()
    try:
        yield value
    except BaseException as exc:
        with engine_credentials():
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
    else:
        with engine_credentials():
            manager.__exit__(None, None, None)
