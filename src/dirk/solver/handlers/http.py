"""HttpFetch: a file downloaded over HTTP, at /<name> of an otherwise empty filesystem.

The key covers the content (the sha256 of the bytes), the name and the permissions, never
the URL: the file is downloaded into the blob store when the key is computed (a volatile
key), unless a `checksum` names content the store already holds (a fixed key, no download).
A download that needs a secret header or a service (`experimentalServiceHost`) was made by
the API already. Running it copies the stored blob into a layer, downloading it again only if
it is gone (starting the service again for that, in the first waiting job's session).
"""

from __future__ import annotations

from collections.abc import Sequence

from dirk.solver.handlers.base import Handler, Key, Step, Workers
from dirk.solver.keys import cache_key
from dirk.solver.ops import HttpFetch
from dirk.solver.results import OpResult
from dirk.solver.service_hosts import served_hosts

_DIGESTS_LIMIT = 10_000


class HttpFetchHandler(Handler[HttpFetch]):
    def __init__(self, workers: Workers) -> None:
        super().__init__(workers)
        self._digests: dict[str, HttpFetch] = {}

    async def key(self, op: HttpFetch, input_keys: Sequence[str]) -> Key:
        if op.digest:
            return Key(cache_key(op, input_keys))
        keyed, volatile = await self.workers.sources.keyed_http(op)
        key = cache_key(keyed, input_keys)
        if len(self._digests) >= _DIGESTS_LIMIT:
            self._digests.pop(next(iter(self._digests)))
        self._digests[key] = keyed
        return Key(key, volatile=volatile)

    async def run(self, op: HttpFetch, step: Step) -> OpResult:
        sources = self.workers.sources
        keyed = op if op.digest else self._digests.get(step.key)
        if keyed is None:
            keyed, _ = await sources.keyed_http(op, step.secret)
        if keyed.service is None or sources.http.has(keyed.digest):
            return OpResult(step.key, (await sources.fetched_file(keyed, step.secret),))
        async with served_hosts(self.workers.services, step.jobs()[0], keyed.service) as hosts:
            return OpResult(step.key, (await sources.fetched_file(keyed, step.secret, hosts),))
