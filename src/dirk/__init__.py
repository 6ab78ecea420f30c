"""dirk: CI/CD pipelines as Python code, run in OCI containers by a caching DAG engine."""

__version__ = "0.1.0"
