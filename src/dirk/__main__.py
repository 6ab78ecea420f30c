"""`python -m dirk`: the `dirk` command."""

from dirk.cli.main import main

if __name__ == "__main__":
    main(prog_name="dirk")
