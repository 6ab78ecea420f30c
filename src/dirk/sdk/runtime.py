"""What the generated classes stand on: lazy immutable objects and the leaf-call machinery.

An object is a connection's runner plus the chain of calls that made it. Chaining methods
(`with_exec`, `file`, ...) return a new object with one more call and never talk to the
engine. Leaf methods (scalars, lists, `id`, `sync`) send the whole chain as one query; the
runner makes them awaitables in async mode and blocking calls in sync mode.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from dirk.errors import ClientConnectionError, InvalidArgumentError
from dirk.sdk import failures
from dirk.sdk.callsite import caller_site
from dirk.sdk.modes import M
from dirk.sdk.query import Args, Call
from dirk.wire.client import CLOSED_MESSAGE
from dirk.wire.driver import drive

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from dirk.sdk.executor import Executor

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
S = TypeVar("S", bound=str)
ObjT = TypeVar("ObjT", bound="ObjectBase[Any]")

#: The default of an argument the schema requires: never omitted.
REQUIRED: Any = object()

#: Root fields that load an object from its ID: the object's ID is known without asking.
_LOADS_BY_ID = re.compile(r"^(node|load[A-Za-z]+FromID)$")

#: Generated classes by GraphQL type name, so modules need not import each other at run time.
_CLASSES: dict[str, type[ObjectBase[Any]]] = {}


def register(name: str) -> Callable[[type[ObjT]], type[ObjT]]:
    """Class decorator: the class that represents the GraphQL type `name`."""

    def decorate(cls: type[ObjT]) -> type[ObjT]:
        cls._graphql_name = name
        _CLASSES[name] = cls
        return cls

    return decorate


def class_for(name: str) -> type[ObjectBase[Any]]:
    """The class of GraphQL type `name`, its module imported on first use."""
    cls = _CLASSES.get(name)
    if cls is None:
        from dirk.sdk.gen import import_type

        import_type(name)
        cls = _CLASSES[name]
    return cls


class Runner:
    """Runs leaf calls in the connection's mode: returns the coroutine (async mode), or runs it
    to its end and returns its value (sync mode): with blocking I/O in the calling thread
    (`blocking`), or on a portal's event loop thread (a connection with an httpx transport).
    A sync call that is interrupted (Ctrl-C) ends its coroutine: the exception unwinds it
    (blocking) or the portal's task is cancelled."""

    def __init__(
        self, executor: Executor, portal: BlockingPortal | None = None, *, blocking: bool = False
    ) -> None:
        self._executor = executor
        self._portal = portal
        self._blocking = blocking

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def portal(self) -> BlockingPortal | None:
        """The sync mode's event loop; None in async mode."""
        return self._portal

    @property
    def sync(self) -> bool:
        """Whether leaf calls return values (a `with` connection) rather than coroutines."""
        return self._blocking or self._portal is not None

    def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> Coroutine[Any, Any, T] | T:
        if self._blocking:
            if self.executor.closed:
                raise ClientConnectionError(CLOSED_MESSAGE)
            return drive(fn())
        if self.portal is None:
            return fn()
        if self.executor.closed:  # checked here: the portal is gone too
            raise ClientConnectionError(CLOSED_MESSAGE)
        running = self.portal.start_task_soon(fn)
        try:
            result: T = running.result()
        except BaseException:
            running.cancel()  # Ctrl-C: the query must not go on in the background
            raise
        return result

    async def execute(
        self,
        chain: tuple[Call, ...],
        subfields: Sequence[str] = (),
        history: tuple[Call, ...] | None = None,
    ) -> Any:
        """The value `chain` selects, after swapping object arguments for their IDs. With
        `history` (the chain as the user built it, objects loaded back expanded), a failure
        or cancellation is recorded for the program's failure report (`failures`)."""
        if history is None:
            return await self.executor.execute(await resolve_ids(chain, self), subfields)
        with failures.tracked(history):
            return await self.executor.execute(await resolve_ids(chain, self), subfields)

    def value(self, value: T) -> Coroutine[Any, Any, T] | T:
        """An already known value, in the connection's mode."""

        async def known() -> T:
            return value

        return self.run(known)


def _arguments(args: Sequence[tuple[str, Any, Any]]) -> Args:
    """The arguments to send: those left at their schema default (or None) are omitted, as
    Dagger's SDKs do, so the engine applies the defaults."""
    sent = []
    for name, value, default in args:
        if value is None:
            continue
        if default is not REQUIRED and type(value) is type(default) and value == default:
            continue
        if isinstance(value, list | tuple):
            value = tuple(value)  # calls are immutable: a caller's later edit must not leak in
        sent.append((name, value))
    return tuple(sent)


class ObjectBase(Generic[M]):
    """A lazy API object: a chain of calls, evaluated only by leaf methods."""

    __slots__ = ("_chain", "_id", "_id_session", "_origin", "_prefetched", "_runner")
    _graphql_name: ClassVar[str] = ""
    #: Scalar fields fetched together with `id` when objects come in a list.
    _prefetch: ClassVar[tuple[str, ...]] = ("id",)

    def __init__(
        self,
        runner: Runner,
        chain: tuple[Call, ...] = (),
        *,
        id: str | None = None,
        prefetched: Mapping[str, Any] | None = None,
        origin: tuple[Call, ...] = (),
    ) -> None:
        self._runner = runner
        self._chain = chain
        self._id = id
        #: The calls that made the object a leading `node(id:)` of `chain` loads (failure
        #: reports read the whole pipeline); empty when unknown.
        self._origin = origin
        #: The session (executor) that minted `_id` when this object asked for it: an object of
        #: `dirk.dag` outlives its `dirk.connection()` block, its ID does not. None: the ID came
        #: with the chain (`node(id:)`).
        self._id_session: object | None = None
        self._prefetched = dict(prefetched or {})

    def __repr__(self) -> str:
        chain = ".".join(call.field for call in self._chain) or "<root>"
        return f"<{type(self).__name__} {chain}>"

    # --- chaining ----------------------------------------------------------------------------

    def _select(self, field: str, type_name: str, args: Sequence[tuple[str, Any, Any]]) -> Any:
        """A new object of `type_name`: this chain plus one call."""
        cls = class_for(type_name)
        # Only a step that runs a command records where it was built (a failure report names
        # that line); the other calls do not pay for the frame walk.
        site = caller_site(3) if field == "withExec" else None
        call = Call(field, _arguments(args), site=site)
        known = dict(call.args).get("id") if _LOADS_BY_ID.match(field) else None
        return cls(self._runner, (*self._chain, call), id=known, origin=self._origin)

    def _history(self, *more: Call) -> tuple[Call, ...]:
        """The chain as the user built it: an object loaded back is replaced by the calls that
        made it, when known."""
        chain = self._chain
        if self._origin and chain and chain[0].field == "node":
            return (*self._origin, *chain[1:], *more)
        return (*chain, *more)

    def _loaded(
        self,
        type_name: str,
        id: str,
        prefetched: Mapping[str, Any] | None = None,
        origin: tuple[Call, ...] = (),
    ) -> Any:
        """An object of `type_name` re-loaded from its ID (`node(id:)`), the ID already known;
        `origin` is the calls that made it."""
        cls = class_for(type_name)
        chain = (Call("node", (("id", id),), on=type_name),)
        return cls(self._runner, chain, id=id, prefetched=prefetched, origin=origin)

    def _list_arg(self, method: str, name: str, value: Any, item: type | str) -> Any:
        """`value` if it is a list (or tuple) of `item`s, else a `TypeError` that shows the fix:
        GraphQL would quietly turn a lone string into a list of one (`with_exec("echo hi")`
        would look for a program named `echo hi`). An input object type comes by name, so
        that `dirk.sdk.gen.inputs` loads only when a program uses one."""
        if value is None:
            return value
        if isinstance(item, str):
            if not value:
                return value
            from dirk.sdk.gen import inputs

            item = cast(type, getattr(inputs, item))
        where = f"{type(self).__name__}.{method}()"
        kind = "strings" if item is str else f"{item.__name__} objects"
        if not isinstance(value, list | tuple):
            if name == "args" and isinstance(value, str):
                fix = f"{method}({json.dumps(['sh', '-c', value])}) to run it in a shell"
            else:
                fix = f"{name}=[{value!r}]"
            raise TypeError(
                f"{where}: {name} is a list of {kind}, not a {type(value).__name__} "
                f"({value!r}); write {fix}"
            )
        for index, each in enumerate(value):
            if not isinstance(each, item):
                raise TypeError(
                    f"{where}: {name} is a list of {kind}, but {name}[{index}] is {each!r} "
                    f"({type(each).__name__})"
                )
        return value

    def _await(self) -> Generator[Any, None, Any]:
        """`await obj`: the coroutine of `obj.sync()`, in an `async with` connection."""
        if self._runner.sync:
            raise TypeError(
                f"a {type(self).__name__} of a `with` connection (sync mode) cannot be awaited: "
                "call .sync(), or open the connection with `async with`"
            )
        coroutine: Coroutine[Any, Any, Any] = getattr(self, "sync")()  # noqa: B009
        return coroutine.__await__()

    # --- leaves ------------------------------------------------------------------------------

    def _leaf(
        self, field: str, args: Sequence[tuple[str, Any, Any]], convert: Callable[[Any], T]
    ) -> Coroutine[Any, Any, T] | T:
        """A scalar (or list of scalars) field: one query for the whole chain."""
        call = Call(field, _arguments(args), site=caller_site(3))
        if not call.args and field in self._prefetched:
            return self._runner.value(convert(self._prefetched[field]))
        if field == "id" and not call.args:

            async def fetch_id() -> T:
                return convert(await self._fetch_id())

            return self._runner.run(fetch_id)

        async def fetch() -> T:
            chain = (*self._chain, call)
            return convert(await self._runner.execute(chain, history=self._history(call)))

        return self._runner.run(fetch)

    def _leaf_sync(
        self, field: str, args: Sequence[tuple[str, Any, Any]], type_name: str
    ) -> Coroutine[Any, Any, Any] | Any:
        """`sync`: evaluates the chain; returns the object re-loaded from the returned ID."""
        call = Call(field, _arguments(args), site=caller_site(3))

        async def evaluate() -> Any:
            history = self._history(call)
            id = str(await self._runner.execute((*self._chain, call), history=history))
            if not self._has_id() and type_name == self._graphql_name:
                self._id, self._id_session = id, self._runner.executor
            return self._loaded(type_name, id, origin=history)

        return self._runner.run(evaluate)

    def _leaf_objects(
        self, field: str, args: Sequence[tuple[str, Any, Any]], type_name: str
    ) -> Coroutine[Any, Any, list[Any]] | list[Any]:
        """A list of objects: their IDs and scalar fields come in the same query."""
        call = Call(field, _arguments(args), site=caller_site(3))
        cls = class_for(type_name)

        async def fetch() -> list[Any]:
            history = self._history(call)
            items = await self._runner.execute((*self._chain, call), cls._prefetch, history)
            return [
                self._loaded(type_name, str(item["id"]), item, origin=history)
                for item in items or []
            ]

        return self._runner.run(fetch)

    async def _fetch_id(self) -> str:
        """This object's ID, asked once (`{ <chain> { id } }`) and then cached on the object."""
        if self._id is None or not self._has_id():
            self._id = str(await self._runner.execute((*self._chain, Call("id"))))
            self._id_session = self._runner.executor
        return self._id

    def _has_id(self) -> bool:
        """Whether `_id` is known and valid in the current session."""
        return self._id is not None and self._id_session in (None, self._runner.executor)


async def resolve_ids(chain: tuple[Call, ...], runner: Runner) -> tuple[Call, ...]:
    """The chain with every object argument replaced by its ID string (fetched if needed)."""
    if not any(_has_object(value) for call in chain for _, value in call.args):
        return chain
    pending: dict[int, ObjectBase[Any]] = {}
    for call in chain:
        for _, value in call.args:
            for obj in _objects(value):
                if obj._runner is not runner:
                    raise InvalidArgumentError(
                        f"{obj!r} belongs to another dirk.Connection: IDs are only valid in the "
                        "session that made them; build the object with this connection's client"
                    )
                if not obj._has_id():
                    pending[id(obj)] = obj
    await _fetch_ids(list(pending.values()), runner)

    def swap(value: Any) -> Any:
        if isinstance(value, ObjectBase):
            return value._id
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        return value

    return tuple(
        Call(call.field, tuple((name, swap(value)) for name, value in call.args), call.on)
        for call in chain
    )


async def _fetch_ids(objects: list[ObjectBase[Any]], runner: Runner) -> None:
    """Asks for the IDs concurrently (tasks, or threads in a blocking connection)."""
    if objects:
        await runner.executor.io.gather([obj._fetch_id for obj in objects])


def _has_object(value: Any) -> bool:
    return any(True for _ in _objects(value))


def _objects(value: Any) -> list[ObjectBase[Any]]:
    if isinstance(value, ObjectBase):
        return [value]
    if isinstance(value, tuple):
        return [obj for v in value for obj in _objects(v)]
    return []


# --- converters for leaf values (used by the generated code) ---------------------------------


def as_str(value: Any) -> str:
    return str(value)


def as_int(value: Any) -> int:
    return int(value)


def as_float(value: Any) -> float:
    return float(value)


def as_bool(value: Any) -> bool:
    return bool(value)


def as_none(value: Any) -> None:
    return None


def as_scalar(cls: type[S]) -> Callable[[Any], S]:
    def convert(value: Any) -> S:
        return cls(value)

    return convert


def as_enum(cls: type[E]) -> Callable[[Any], E]:
    def convert(value: Any) -> E:
        return cls(value)

    return convert


def as_optional(convert: Callable[[Any], T]) -> Callable[[Any], T | None]:
    def optional(value: Any) -> T | None:
        return None if value is None else convert(value)

    return optional


def as_list(convert: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    def each(value: Any) -> list[T]:
        return [convert(v) for v in value or []]

    return each
