"""Telemetry is on only when the standard OTLP variables ask for it, and costs no import when
it is off."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dirk.engine.telemetry import enabled


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
    ],
)
def test_the_standard_variables_turn_it_on_and_off(env: dict[str, str], on: bool) -> None:
    assert enabled(env) is on


def test_off_it_imports_nothing_of_opentelemetry() -> None:
    program = (
        "import sys\n"
        "from dirk.engine.telemetry import from_environment\n"
        "assert from_environment({}) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
