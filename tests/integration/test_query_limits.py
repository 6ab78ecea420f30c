"""An engine under hostile or careless queries: raw HTTP with valid session tokens.

Too-large documents are refused with an error that names the limit and the variable that
raises it; a heavy query that is allowed does not hold up another session's small one; and
neither large documents nor large answers leave the engine holding their memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


def new_session(engine: RunningEngine) -> str:
    transport = httpx.HTTPTransport(uds=str(engine.info["socket"]))
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as http:
        response = http.post("http://dirk/sessions", json={"workdir": "/tmp"})
        response.raise_for_status()
        return str(response.json()["token"])


def post(engine: RunningEngine, token: str, query: str, timeout: float = 300) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=timeout) as http:
        response = http.post(
            f"http://127.0.0.1:{engine.port}/query", json={"query": query}, auth=(token, "")
        )
        answer: dict[str, Any] = response.json()
        return answer


def aliases(count: int) -> str:
    return "{" + " ".join(f"a{i}: version" for i in range(count)) + "}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def settled_growth(pid: int, before: float, bound: float) -> float:
    """RSS growth over `before` once the engine has let go of a finished answer (it frees the
    answer after the client has it): the first reading under `bound`, or the last after 15 s."""
    deadline = time.monotonic() + 15
    while True:
        grown = rss_mb(pid) - before
        if grown < bound or time.monotonic() > deadline:
            return grown
        time.sleep(0.1)


def error_of(answer: dict[str, Any]) -> str:
    assert answer.get("data") is None, answer
    return str(answer["errors"][0]["message"])


def test_a_hundred_thousand_aliases_are_refused_naming_the_limit(engine: RunningEngine) -> None:
    message = error_of(post(engine, new_session(engine), aliases(100_000)))
    assert "too large" in message
    assert "DIRK_MAX_QUERY_TOKENS" in message
    assert "100000" in message


def test_ten_megabytes_of_fields_are_refused_without_parsing_them_all(
    engine: RunningEngine,
) -> None:
    query = "{" + " version" * 1_300_000 + "}"
    assert len(query) > 10_000_000
    message = error_of(post(engine, new_session(engine), query))
    assert "DIRK_MAX_QUERY_TOKENS" in message


def test_a_field_count_over_the_limit_is_refused(engine: RunningEngine) -> None:
    message = error_of(post(engine, new_session(engine), "{" + " version" * 25_000 + "}"))
    assert "DIRK_MAX_QUERY_FIELDS" in message and "20000" in message


def test_a_query_longer_than_the_limit_is_refused(engine: RunningEngine) -> None:
    padding = "x" * (33 * 1024 * 1024)
    query = f'{{ container {{ withNewFile(path: "/a", contents: "{padding}") {{ id }} }} }}'
    message = error_of(post(engine, new_session(engine), query))
    assert "DIRK_MAX_QUERY_CHARS" in message


def test_a_heavy_query_does_not_hold_up_another_session(engine: RunningEngine) -> None:
    """Session A sends the heaviest query of this shape the limits allow (about 57,000 tokens,
    19,000 fields); session B, started after it, gets its answer first."""
    heavy, light = new_session(engine), new_session(engine)
    order: list[str] = []
    answers: dict[str, dict[str, Any]] = {}
    started = threading.Event()

    def send_heavy() -> None:
        started.set()
        answers["heavy"] = post(engine, heavy, aliases(19_000))
        order.append("heavy")

    worker = threading.Thread(target=send_heavy)
    worker.start()
    started.wait()
    answers["light"] = post(engine, light, "{ version }")
    order.append("light")
    worker.join(300)
    assert order == ["light", "heavy"]
    assert answers["light"]["data"]["version"]
    assert len(answers["heavy"]["data"]) == 19_000


def test_a_heavy_query_already_parsed_takes_turns_with_other_sessions(
    engine: RunningEngine,
) -> None:
    """The same heavy document again (parsed and validated before, so only its execution
    costs): another session's queries, one after the other, are answered while it runs."""
    heavy, light = new_session(engine), new_session(engine)
    query = aliases(19_000)
    assert len(post(engine, heavy, query)["data"]) == 19_000
    order: list[str] = []
    started = threading.Event()

    def send_heavy() -> None:
        started.set()
        assert len(post(engine, heavy, query)["data"]) == 19_000
        order.append("heavy")

    worker = threading.Thread(target=send_heavy)
    worker.start()
    started.wait()
    for n in range(5):
        assert post(engine, light, "{ version }")["data"]["version"]
        order.append(f"light {n}")
    worker.join(300)
    assert order == [f"light {n}" for n in range(5)] + ["heavy"]


def test_large_distinct_queries_do_not_stay_in_memory(engine: RunningEngine) -> None:
    token = new_session(engine)
    post(engine, token, "{ version }")
    before = rss_mb(engine.pid)
    for n in range(20):
        # Distinct texts of 5 MB (a comment is text the parser skips), each a valid query.
        query = f"# {n:02d}{'y' * (5 * 1024 * 1024)}\n{{ version }}"
        answer = post(engine, token, query)
        assert answer["data"]["version"], answer
    grown = settled_growth(engine.pid, before, 100)
    # Before the bound, the document cache kept every one of them, 100 MB of text and more.
    assert grown < 100, f"the engine kept {grown:.0f} MB after 20 distinct 5 MB queries"


def test_a_large_answer_does_not_stay_in_memory(engine: RunningEngine, registry: str) -> None:
    token = new_session(engine)
    query = (
        f'{{ container {{ from(address: "{registry}/busybox:latest") {{ '
        'withExec(args: ["sh", "-c", "head -c 200000000 /dev/zero | tr \\"\\\\0\\" a"]) '
        "{ stdout } } } }"
    )
    post(engine, token, "{ version }")
    before = rss_mb(engine.pid)
    answer = post(engine, token, query)
    stdout = answer["data"]["container"]["from"]["withExec"]["stdout"]
    assert len(stdout) == 200_000_000 and stdout[:3] == "aaa"
    del answer, stdout
    grown = settled_growth(engine.pid, before, 100)
    assert grown < 100, f"the engine kept {grown:.0f} MB after a 200 MB answer"
