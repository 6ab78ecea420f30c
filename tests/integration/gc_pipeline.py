"""A pipeline program for the garbage collector's tests: it builds a chain with random output
and a cache volume, prints what it made, and with `hold` keeps its session open until stdin
says go on, then builds a new step on the same results and prints what it reads there.

    python gc_pipeline.py IMAGE TAG [hold]
"""

from __future__ import annotations

import sys

import anyio

import dirk


async def main(image: str, tag: str, hold: bool) -> None:
    async with dirk.connection():
        chain = (
            dirk.dag.container()
            .from_(image)
            .with_exec(
                [
                    "sh",
                    "-c",
                    f"echo {tag}; head -c 300000 /dev/urandom > /blob; "
                    "od -An -N8 -tx8 /dev/urandom | tr -d ' ' > /token",
                ]
            )
            .with_mounted_cache("/cache", dirk.dag.cache_volume(f"vol-{tag}"))
            .with_exec(["sh", "-c", "cat /token >> /cache/tokens; cat /token"])
        )
        print("made", (await chain.stdout()).strip(), flush=True)
        if not hold:
            return
        await anyio.to_thread.run_sync(sys.stdin.readline)
        later = chain.with_exec(["sh", "-c", "cat /token; wc -c < /blob; cat /cache/tokens"])
        print("read", " ".join((await later.stdout()).split()), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3:] == ["hold"])
