"""What recording the user's file:line costs a builder call (`dirk.sdk.callsite`).

Failure reports name the lines that built and awaited a failed step, so `with_exec` and every
leaf walk the stack once (other builder calls record nothing). Baseline: the same builder call
with the walk replaced by a no-op, measured in the same run (best of several rounds of CPU time,
interleaved: the machine is shared).
"""

from __future__ import annotations

import time
import timeit
from typing import Any

import dirk.sdk.runtime as runtime
from dirk.sdk.callsite import caller_site
from dirk.sdk.gen.client import Client
from dirk.sdk.runtime import Runner

ROUNDS, NUMBER = 9, 20000


def _per_call(fn: Any) -> float:
    """CPU seconds per call (this process's own time: other processes on the machine do not
    count)."""
    timings = timeit.repeat(fn, number=NUMBER, repeat=3, timer=time.process_time)
    return min(timings) / NUMBER


def main() -> None:
    client: Any = Client(Runner(None))  # type: ignore[arg-type]  # builders never execute
    ctr = client.container().from_("127.0.0.1:5000/busybox:latest")

    def build() -> Any:
        return ctr.with_exec(["true"])

    def other() -> Any:
        return ctr.with_workdir("/src")

    def no_site(skip: int = 3) -> None:
        return None

    with_site = without = float("inf")
    for _ in range(ROUNDS):  # interleaved, so that load on the machine weighs on both alike
        with_site = min(with_site, _per_call(build))
        runtime.caller_site = no_site  # type: ignore[assignment]
        try:
            without = min(without, _per_call(build))
        finally:
            runtime.caller_site = caller_site
    walk = _per_call(caller_site)
    plain = _per_call(other)
    print(f"   with_exec builder, no site recorded : {without * 1e6:6.2f} us (baseline)")
    print(
        f"   with_exec builder, site recorded    : {with_site * 1e6:6.2f} us "
        f"({with_site / without:.2f}x)"
    )
    print(f"   with_workdir builder (records none) : {plain * 1e6:6.2f} us")
    print(f"   the frame walk alone                : {walk * 1e6:6.2f} us ({walk / without:.2f}x)")


if __name__ == "__main__":
    main()
