"""OpenTelemetry: an engine with OTEL_EXPORTER_OTLP_ENDPOINT set sends a span per request,
parented to the client's `traceparent`, and a span per step under it, to a small OTLP/HTTP
receiver run by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    """Collects the spans of every OTLP/HTTP protobuf export it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int, name: str, timeout: float = 30) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if s.name == name]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        with self.lock:
            names = sorted({s.name for s in self.spans})
        raise AssertionError(f"no {count} span(s) named {name!r} in {timeout:g} s; got {names}")


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.server.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.server.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def engine(receiver: Receiver) -> Iterator[RunningEngine]:
    yield from foreground_engine(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="50"
    )


def query(engine: RunningEngine, text: str, headers: dict[str, str]) -> dict[str, Any]:
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, trust_env=False, timeout=30) as http:
        token = http.post("http://dirk/sessions", json={"workdir": "/tmp"}).json()["token"]
    with httpx.Client(trust_env=False, timeout=300) as http:
        response = http.post(
            f"http://127.0.0.1:{engine.port}/query",
            json={"query": text, "operationName": "Build"},
            auth=(token, ""),
            headers=headers,
        )
        answer: dict[str, Any] = response.json()
        return answer


def test_requests_and_steps_are_spans_under_the_clients_trace(
    engine: RunningEngine, receiver: Receiver, busybox_ref: str
) -> None:
    pipeline = (
        f'query Build {{ container {{ from(address: "{busybox_ref}") {{ '
        'withExec(args: ["sh", "-c", "echo traced"]) { stdout } } } }'
    )
    headers = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
    assert query(engine, pipeline, headers)["data"]["container"]["from"]["withExec"] == {
        "stdout": "traced\n"
    }
    (request,) = receiver.wait_for(1, "Build")
    assert request.trace_id.hex() == TRACE_ID
    assert request.parent_span_id.hex() == CLIENT_SPAN

    (step,) = receiver.wait_for(1, "sh -c 'echo traced'")
    assert step.trace_id.hex() == TRACE_ID
    assert step.parent_span_id == request.span_id
    attributes = {a.key: a.value for a in step.attributes}
    assert attributes["dirk.cached"].bool_value is False
    assert attributes["dirk.key"].string_value.startswith("sha256:")

    again = query(engine, pipeline, {})  # a new trace of its own: the step is cached now
    assert again["data"]["container"]["from"]["withExec"]["stdout"] == "traced\n"
    requests = receiver.wait_for(2, "Build")
    second = next(r for r in requests if r.trace_id.hex() != TRACE_ID)
    assert second.parent_span_id == b""
