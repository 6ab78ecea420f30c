"""The API layer: resolvers that turn Dagger-shaped GraphQL calls into lazy operations.

`build_schema()` gives the executable schema the wire server runs each request against, with
a `RequestContext` (engine + session) as the context value.
"""

from dirk.api.context import RequestContext
from dirk.api.schema import build_schema

__all__ = ["RequestContext", "build_schema"]
