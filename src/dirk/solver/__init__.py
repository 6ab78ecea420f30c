"""The solver: operations in, snapshots out; each operation computed at most once."""
