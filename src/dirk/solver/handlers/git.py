"""GitCheckout: the tree of one commit of a git repository (a remote, or the repository in a
directory for `Directory.asGit`).

The key covers the commit and the checkout options (keepGitDir, depth), never the URL, the
ref name or credentials; with includeTags from a remote, also a digest of the remote's
tags (asked when the key is computed, so the key is volatile). A branch or tag is resolved
against the remote (`git ls-remote`) when the key is computed, so the key is volatile and
a moved branch gives a new one; a remote that needs a secret or a service
(`experimentalServiceHost`) was resolved by the API already (keys are computed without the
session's secrets, outside any session). Running it fetches the commit into the remote's cache
repository (with the service started, in the first waiting job's session) and exports it into
a layer (see `dirk.solver.sources`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from dirk.solver.handlers.base import Handler, Key, Step, Workers
from dirk.solver.job import BACKGROUND
from dirk.solver.keys import cache_key
from dirk.solver.ops import GitCheckout
from dirk.solver.results import OpResult
from dirk.solver.service_hosts import served_hosts

#: Commits resolved while keying, by key, for the run that follows (bounded, oldest first).
_RESOLVED_LIMIT = 10_000


class GitCheckoutHandler(Handler[GitCheckout]):
    def __init__(self, workers: Workers) -> None:
        super().__init__(workers)
        self._resolved: dict[str, str] = {}

    async def key(self, op: GitCheckout, input_keys: Sequence[str]) -> Key:
        volatile = False
        if op.include_tags and op.source is None and not op.tags:
            # The remote's tags can move whatever the commit: they are part of the content.
            refs = await self.workers.sources.remote_refs(op.url, op.auth)
            op = attrs.evolve(op, tags=refs.tags_digest())
            volatile = True
        if op.commit:
            return Key(cache_key(op, input_keys), volatile=volatile)
        commit = await self.workers.sources.resolve_git(op)
        key = cache_key(attrs.evolve(op, commit=commit), input_keys)
        if len(self._resolved) >= _RESOLVED_LIMIT:
            self._resolved.pop(next(iter(self._resolved)))
        self._resolved[key] = commit
        return Key(key, volatile=True)

    async def run(self, op: GitCheckout, step: Step) -> OpResult:
        sources = self.workers.sources
        commit = op.commit or self._resolved.get(step.key) or ""
        if not commit:
            commit = await sources.resolve_git(op, step.secret)
        source = step.inputs[op.source] if op.source is not None else None
        jobs = step.jobs()
        job = jobs[0] if jobs else BACKGROUND
        async with served_hosts(self.workers.services, job, op.service) as hosts:
            snapshot = await sources.checkout(op, commit, source, step.secret, hosts)
        return OpResult(step.key, (snapshot,))
