"""`greet NAME...`: print a greeting for each name."""

import sys

from greet import greeting


def main() -> int:
    for name in sys.argv[1:] or ["world"]:
        print(greeting(name))
    return 0
