"""A small dirk SDK pipeline whose `--explain` output the CLI tests read (run as a program).

Usage: python explain_pipeline.py IMAGE SRC LEVEL NONCE
Mounts the host directory SRC, sets LEVEL in the environment and prints the directory's
main.py and the level from one exec.
"""

import sys

import dirk

image, src, level, nonce = sys.argv[1:5]
with dirk.Connection() as client:
    out = (
        client.container()
        .from_(image)
        .with_mounted_directory("/src", client.host().directory(src))
        .with_env_variable("LEVEL", level)
        .with_exec(["sh", "-c", f"cat /src/main.py; echo level $LEVEL {nonce}"])
        .stdout()
    )
    print(out, end="")
