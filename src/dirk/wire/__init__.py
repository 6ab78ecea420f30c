"""GraphQL over HTTP between the SDK and the engine: client transport, server app, errors."""
