"""Greetings, the package the example pipeline ships."""


def greeting(name: str) -> str:
    return f"Hello, {name.strip() or 'world'}!"
