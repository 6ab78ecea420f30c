"""Secrets through the official Dagger Python SDK (PyPI `dagger-io`), as a Dagger user writes
them: `set_secret` + `with_secret_variable`, `secret("env://...")` (the environment of the
program, which `dirk run` hands to the engine) and `with_mounted_secret`.

Run by tests/compat/test_dagger_secrets.py inside `dirk run`. Prints one JSON line of results.

Usage: python dagger_secrets.py IMAGE NONCE VALUE
  VALUE  the secret; the environment must also hold it as COMPAT_API_TOKEN
"""

import json
import sys

import anyio
import dagger

# Upper-casing hex digits shows the command saw the value without printing the value itself.
SHOW = 'echo "token=$TOKEN"; echo "$TOKEN" | tr a-f A-F; echo "$TOKEN" >&2'


async def main(image: str, nonce: str, value: str) -> None:
    out: dict[str, object] = {}
    async with dagger.Connection() as client:
        base = client.container().from_(image).with_env_variable("NONCE", nonce)
        token = client.set_secret("compat-token", value)
        with_token = base.with_secret_variable("TOKEN", token).with_exec(["sh", "-c", SHOW])
        out["stdout"] = await with_token.stdout()
        out["stderr"] = await with_token.stderr()
        out["plaintext"] = await token.plaintext()
        from_env = client.secret("env://COMPAT_API_TOKEN")
        out["env"] = await (
            base.with_secret_variable("TOKEN", from_env).with_exec(["sh", "-c", SHOW]).stdout()
        )
        mounted = base.with_mounted_secret("/run/secrets/token", token, owner="1000").with_exec(
            ["sh", "-c", "stat -c '%u %a' /run/secrets/token; tr a-f A-F < /run/secrets/token"]
        )
        out["mounted"] = await mounted.stdout()
        try:
            await (
                base.with_secret_variable("TOKEN", token)
                .with_exec(["sh", "-c", 'echo "failing with $TOKEN"; exit 4'])
                .sync()
            )
        except dagger.ExecError as error:
            out["exec_error"] = {"stdout": error.stdout, "message": str(error)}
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
