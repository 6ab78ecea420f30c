"""Every benchmark, one after the other; each prints its figures against its own baseline.

make bench      (or .venv/bin/python bench/run.py)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The pull benchmark goes last: deleting its large trees slows file creation on these disks
#: for a while afterwards, which would weigh on every benchmark after it.
BENCHES = [
    ("engine core: exec overhead and cached pipeline", ["engine_core.py"]),
    ("through the SDK: cached pipeline and exec overhead", ["sdk.py"]),
    ("progress stream on a cached 200-step pipeline vs progress off", ["progress.py"]),
    ("engine cold start to the first answered query", ["cold_start.py"]),
    ("cache GC of 10,000 entries vs rmtree, and engine latency during it", ["gc.py"]),
    ("failure reports: recording the user's line in a builder call", ["callsite.py"]),
    ("latency to the floor: cached program, dirk run, cold start, one exec", ["latency.py"]),
    ("load: 20 sessions x 50 operations beside the heaviest allowed query", ["load.py"]),
    ("Dockerfile build cold and cached vs docker.io BuildKit", ["dockerfile_build.py"]),
    (
        "20-step pipeline, cached program, one exec vs docker build / docker run",
        ["docker_compare.py"],
    ),
    ("unchanged host tree re-import vs cp -a", ["host_reimport.py"]),
    ("port forwarder (tunnels, host services) vs a direct connection", ["forward.py"]),
    ("a service's first client request (with_service_binding) vs raw crun", ["services.py"]),
    ("image publish vs skopeo copy", ["publish.py"]),
    ("image pull + unpack vs skopeo + umoci", ["pull.py"]),
]


def main() -> int:
    failed = 0
    env = {**os.environ, "TMPDIR": os.environ.get("TMPDIR", "/var/tmp")}
    for title, args in BENCHES:
        script = HERE / args[0]
        if not script.exists():
            continue
        print(f"== {title}", flush=True)
        code = subprocess.call([sys.executable, str(script), *args[1:]], env=env)
        if code:
            print(f"   (failed with exit code {code})")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
