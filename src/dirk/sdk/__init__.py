"""The client side: connection, configuration, provisioning and the generated API classes."""
