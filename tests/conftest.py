"""Fixtures for every test: async tests run on asyncio, like the engine and the SDK."""

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
