"""A pipeline on the official Dagger Python SDK (PyPI `dagger-io`) that logs to stderr.

Run by tests/compat/test_dagger_progress.py with `_EXPERIMENTAL_DAGGER_CLI_BIN` naming dirk: the
SDK starts `dirk session` and copies its stderr to `log_output`, where dirk's plain progress
lines must appear. The exec prints a secret in two writes half a second apart.

Usage: python dagger_progress.py IMAGE NONCE SECRET
"""

import sys

import anyio
import dagger


async def main(image: str, nonce: str, secret: str) -> None:
    async with dagger.Connection(dagger.Config(log_output=sys.stderr)) as client:
        token = client.set_secret("token", secret)
        script = (
            f"echo hello {nonce}; "
            'printf "a%s" "$(echo $TOKEN | cut -c1-10)"; sleep 0.5; '
            'printf "%sb\\n" "$(echo $TOKEN | cut -c11-)"'
        )
        out = await (
            client.container()
            .from_(image)
            .with_secret_variable("TOKEN", token)
            .with_exec(["sh", "-c", script])
            .stdout()
        )
        print(out, end="")


anyio.run(main, *sys.argv[1:4])
