"""A small dirk SDK pipeline whose progress the CLI tests read (run as a program).

Usage: python progress_pipeline.py IMAGE NONCE [SECRET]
Pulls IMAGE, then runs one exec that prints a few lines (a blank one and a carriage-return
progress bar among them) and, with SECRET, prints the secret in two writes half a second
apart. Prints the exec's stdout on stdout.
"""

import sys

import dirk

image, nonce = sys.argv[1], sys.argv[2]
secret = sys.argv[3] if len(sys.argv) > 3 else ""
script = f"echo go {nonce}; echo; printf 'get 10%%\\rget 100%%\\n'; echo end"
with dirk.Connection() as client:
    ctr = client.container().from_(image)
    if secret:
        ctr = ctr.with_secret_variable("TOKEN", client.set_secret("token", secret))
        script += (
            '; printf "a%s" "$(echo $TOKEN | cut -c1-10)"; sleep 0.5;'
            ' printf "%sb\\n" "$(echo $TOKEN | cut -c11-)"'
        )
    print(ctr.with_exec(["sh", "-c", script]).stdout(), end="")
