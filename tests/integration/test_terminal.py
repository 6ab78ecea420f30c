"""Interactive shells through a real daemon, driven on a pty as a person would (pexpect).

`dirk run -i` opens a shell in the container a failed exec left and hands the failure on once
it exits; `Container.terminal` from a dirk SDK program on a tty opens a shell and the program
goes on; without a tty both say what to do instead. Nothing stays behind: no container, no
bundle, no runtime state, whichever way a shell ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from dirk.state.layout import StateLayout
from dirk.workers.executor.executor import engine_tag
from tests.integration.leaks import LeakWatch
from tests.integration.sdk_engine import RunningEngine, clean_env, foreground_engine, log_tail
from tests.integration.test_nesting import NESTED_ASK

pytestmark = pytest.mark.integration

TIMEOUT_S = 60


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def daemon(module_daemon: RunningEngine, no_leaks: LeakWatch) -> RunningEngine:
    """The module's engine, with the leak check of each test watching it."""
    no_leaks.watch(module_daemon.state_dir)
    return module_daemon


def _env(daemon: RunningEngine) -> dict[str, str]:
    return clean_env(DIRK_ENGINE=daemon.socket_url, TERM="dumb")


def _program(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(textwrap.dedent(body))
    return path


def _spawn(daemon: RunningEngine, *argv: str) -> pexpect.spawn:
    child = pexpect.spawn(
        argv[0],
        list(argv[1:]),
        env=_env(daemon),
        timeout=TIMEOUT_S,
        dimensions=(30, 100),
    )
    child.logfile_read = sys.stdout.buffer  # shown when a test fails
    return child


def _leftovers(daemon: RunningEngine) -> list[str]:
    """Containers, bundles and runtime state the engine still has; [] when all is clean."""
    run = daemon.state_dir / "run"
    found = [f"bundle {p.name}" for p in (run / "c").iterdir()] if (run / "c").is_dir() else []
    runtimes = run / "runtime"
    if runtimes.is_dir():
        for root in runtimes.iterdir():
            found.extend(f"{root.name} container {c.name}" for c in root.iterdir())
    return found


def _wait_clean(daemon: RunningEngine, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _leftovers(daemon) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(daemon) == []


FAILING_PIPELINE = """
    import sys
    import dirk

    with dirk.Connection() as client:
        ctr = (
            client.container()
            .from_({ref!r})
            .with_env_variable("MARK", "m-{token}")
            .with_workdir("/work")
            .with_exec(["sh", "-c", "echo broken > /tmp/state; exit 3"])
        )
        try:
            ctr.sync()
        except dirk.ExecError as exc:
            print(f"PIPELINE FAILED with {{exc.exit_code}}: {{exc}}", flush=True)
            sys.exit(5)
    print("PIPELINE PASSED")
"""


def test_run_i_opens_a_shell_where_the_exec_failed(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    token = os.urandom(4).hex()
    program = _program(tmp_path, FAILING_PIPELINE.format(ref=busybox_ref, token=token))
    child = _spawn(
        daemon, sys.executable, "-m", "dirk", "run", "-i", "--", sys.executable, str(program)
    )
    try:
        child.expect_exact("exited with code 3: sh")
        child.sendline("cat /tmp/state")
        child.expect_exact("broken")
        child.sendline('echo "[$MARK] [$(pwd)] [$(id -u)]"')
        child.expect_exact(f"[m-{token}] [/work] [0]")
        child.sendline("stty size")
        child.expect_exact("30 100")
        child.sendline("exit")
        child.expect_exact("the shell exited (exit code 0)")
        child.expect_exact("PIPELINE FAILED with 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 5
    _wait_clean(daemon)


def test_run_i_failures_of_a_cached_pipeline_open_again(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    """A failure is never cached: the same failing step opens its shell on the next run too,
    and a client killed while its shell is open leaves no container behind."""
    program = _program(tmp_path, FAILING_PIPELINE.format(ref=busybox_ref, token="again"))
    child = _spawn(
        daemon, sys.executable, "-m", "dirk", "run", "-i", "--", sys.executable, str(program)
    )
    try:
        child.expect_exact("exited with code 3: sh")
        child.sendline("echo shell-$((40 + 2))")
        child.expect_exact("shell-42")
        assert _leftovers(daemon) != [], "the shell's container runs while the shell is open"
        child.kill(9)  # `dirk run` dies: its terminal's websocket and session go with it
    finally:
        child.close(force=True)
    _wait_clean(daemon)


TERMINAL_PROGRAM = """
    import os
    import dirk

    with dirk.Connection() as client:
        base = client.container().from_({ref!r}).with_new_file("/hello", "hi from {token}")
        after = base.terminal(cmd=["sh"]).with_exec(["cat", "/hello"]).stdout()
        print(f"CONTINUED: {{after}}", flush=True)
        flags = "grep -x -e echo -e icanon -e isig | sort"
        os.system(f"stty -a | tr ' ' '\\n' | {{flags}} | tr '\\n' ' '")
"""

ASYNC_TERMINAL_PROGRAM = """
    import asyncio
    import dirk

    async def main() -> None:
        async with dirk.Connection() as client:
            base = client.container().from_({ref!r}).with_env_variable("WHO", "async-{token}")
            ctr = await base.terminal()
            print(f"CONTINUED: {{await ctr.env_variable('WHO')}}", flush=True)

    asyncio.run(main())
"""


def test_container_terminal_from_a_program_on_a_tty(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    token = os.urandom(4).hex()
    program = _program(tmp_path, TERMINAL_PROGRAM.format(ref=busybox_ref, token=token))
    child = _spawn(daemon, sys.executable, str(program))
    try:
        child.expect_exact("Container.terminal: sh")
        child.sendline("cat /hello; echo; touch /made-in-shell")
        child.expect_exact(f"hi from {token}")
        child.sendline("exit 4")
        child.expect_exact("the shell exited (exit code 4)")
        child.expect_exact(f"CONTINUED: hi from {token}")
        child.expect_exact("echo icanon isig")  # the tty has its settings back
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


def test_a_program_terminated_in_a_shell_gives_the_tty_back(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    program = _program(tmp_path, TERMINAL_PROGRAM.format(ref=busybox_ref, token="term"))
    child = _spawn(daemon, sys.executable, str(program))
    try:
        child.expect_exact("Container.terminal: sh")
        child.sendline("echo raw-$((6 * 7))")
        child.expect_exact("raw-42")
        assert not termios.tcgetattr(child.child_fd)[3] & termios.ICANON, "raw in the shell"
        child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF)
        lflag = termios.tcgetattr(child.child_fd)[3]
        assert lflag & termios.ICANON and lflag & termios.ECHO
    finally:
        child.close(force=True)
    _wait_clean(daemon)


def test_container_terminal_from_an_async_program(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    token = os.urandom(4).hex()
    program = _program(tmp_path, ASYNC_TERMINAL_PROGRAM.format(ref=busybox_ref, token=token))
    child = _spawn(daemon, sys.executable, str(program))
    try:
        child.expect_exact("Container.terminal: sh")
        child.sendline("echo in-$WHO")
        child.expect_exact(f"in-async-{token}")
        child.sendline("exit")
        child.expect_exact(f"CONTINUED: async-{token}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


def test_under_run_i_container_terminal_opens_on_dirk_runs_terminal(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    token = os.urandom(4).hex()
    program = _program(tmp_path, TERMINAL_PROGRAM.format(ref=busybox_ref, token=token))
    child = _spawn(
        daemon, sys.executable, "-m", "dirk", "run", "-i", "--", sys.executable, str(program)
    )
    try:
        child.expect_exact("Container.terminal: sh")
        child.sendline("cat /hello; echo")
        child.expect_exact(f"hi from {token}")
        child.sendline("exit")
        child.expect_exact(f"CONTINUED: hi from {token}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


def test_without_a_tty_terminal_and_run_i_say_what_to_do(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    program = _program(tmp_path, TERMINAL_PROGRAM.format(ref=busybox_ref, token="none"))
    done = subprocess.run(
        [sys.executable, str(program)],
        env=_env(daemon),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode != 0
    assert "TerminalError" in done.stderr
    assert "stdin is not a tty" in done.stderr
    assert "dirk run -i" in done.stderr
    assert "CONTINUED" not in done.stdout

    done = subprocess.run(
        [sys.executable, "-m", "dirk", "run", "-i", "--", "true"],
        env=_env(daemon),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 2
    assert "dirk run -i needs a terminal" in done.stderr
    _wait_clean(daemon)


TWO_FAILURES = """
    import asyncio
    import dirk

    async def main() -> None:
        async with dirk.Connection() as client:
            base = client.container().from_({ref!r})
            steps = [base.with_exec(["sh", "-c", f"exit {{code}}"]) for code in (3, 4)]
            results = await asyncio.gather(*(s.sync() for s in steps), return_exceptions=True)
            print("CODES", sorted(r.exit_code for r in results), flush=True)

    asyncio.run(main())
"""


def test_run_i_concurrent_failures_take_turns(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    program = _program(tmp_path, TWO_FAILURES.format(ref=busybox_ref))
    child = _spawn(
        daemon, sys.executable, "-m", "dirk", "run", "-i", "--", sys.executable, str(program)
    )
    try:
        child.expect(r"exit (\d) exited with code (\d): sh")
        first = child.match.group(2)
        child.sendline(f"echo first-shell-{first}")
        child.expect_exact(f"first-shell-{first}")
        child.sendline("exit")
        child.expect_exact("the shell exited (exit code 0)")
        child.expect(r"exit (\d) exited with code (\d): sh")
        second = child.match.group(2)
        assert {first, second} == {b"3", b"4"}
        child.sendline("exit")
        child.expect_exact("CODES [3, 4]")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


DIRECTORY_PROGRAM = """
    import dirk

    with dirk.Connection() as client:
        source = client.host().directory({source!r})
        ctr = client.container().from_({ref!r})
        entries = source.terminal(container=ctr).entries()
        print(f"ENTRIES {{entries}}", flush=True)
"""


def test_directory_terminal_opens_at_src_read_only(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "marker.txt").write_text("marked\n")
    program = _program(tmp_path, DIRECTORY_PROGRAM.format(source=str(source), ref=busybox_ref))
    child = _spawn(daemon, sys.executable, str(program))
    try:
        child.expect_exact("Directory.terminal: sh")
        child.sendline("echo at-$(pwd); cat marker.txt; touch new || echo no-writes")
        child.expect_exact("at-/src")
        child.expect_exact("marked")
        child.expect_exact("no-writes")
        child.sendline("exit")
        child.expect_exact("ENTRIES ['marker.txt']")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        print(log_tail(daemon.log))  # shown when the test fails
    assert child.exitstatus == 0
    _wait_clean(daemon)


def _processes_naming(path: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_an_engine_stopping_ends_an_open_shell(
    busybox_ref: str, tmp_path: Path, no_leaks: LeakWatch
) -> None:
    engines = foreground_engine()
    engine = next(engines)
    program = _program(tmp_path, TERMINAL_PROGRAM.format(ref=busybox_ref, token="stop"))
    child = _spawn(engine, sys.executable, str(program))
    try:
        child.expect_exact("Container.terminal: sh")
        child.sendline("echo shell-up")
        child.expect_exact("shell-up")
        runtime = engine.state_dir / "run" / "runtime"
        assert _processes_naming(runtime) != [], "the shell's runtime runs meanwhile"
        with contextlib.suppress(StopIteration):
            next(engines)  # SIGTERM; checks a clean stop (no mounts left) and exit code 0
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        engines.close()
    assert child.exitstatus != 0
    assert _processes_naming(runtime) == []
    tag = engine_tag(StateLayout(engine.state_dir))
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in namespaces.split() if n.startswith(f"dirk-{tag}-")] == []


SERVICE_PIPELINE = """
    import dirk

    with dirk.Connection() as client:
        web = (
            client.container()
            .from_({ref!r})
            .with_new_file("/www/index.html", "served-{token}")
            .with_exposed_port(8080)
            .as_service(args=["httpd", "-f", "-p", "8080", "-h", "/www"])
        )
        ctr = client.container().from_({ref!r}).with_service_binding("web", web)
        ctr.terminal().sync()
        try:
            ctr.with_exec(["sh", "-c", "wget -qO- http://web:8080/ && exit 9"]).sync()
        except dirk.ExecError as exc:
            print(f"FAILED WITH {{exc.exit_code}}", flush=True)
"""


def test_bound_services_answer_in_terminals_and_failure_shells(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    token = os.urandom(4).hex()
    program = _program(tmp_path, SERVICE_PIPELINE.format(ref=busybox_ref, token=token))
    child = _spawn(
        daemon, sys.executable, "-m", "dirk", "run", "-i", "--", sys.executable, str(program)
    )
    try:
        child.expect_exact("Container.terminal: sh")
        child.sendline("echo; wget -qO- http://web:8080/; echo")
        child.expect_exact(f"served-{token}")
        child.sendline("exit")
        child.expect_exact("exited with code 9: sh")
        child.sendline("echo; wget -qO- http://web:8080/; echo")
        child.expect_exact(f"served-{token}")
        child.sendline("exit")
        child.expect_exact("FAILED WITH 9")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


#: Runs in the shells below: a nested query as the session, with what the shell was given.
NESTED_QUERY = (
    NESTED_ASK
    + """
print("ANSWER", data["data"]["container"]["from"]["withExec"]["stdout"].strip())
"""
)

NESTING_PROGRAM = """
    import dirk

    with dirk.Connection() as client:
        ctr = client.container().from_({python!r}).with_new_file("/nested.py", {script!r})
        ctr.terminal(experimental_privileged_nesting=True).sync()
        shell = ctr.with_default_terminal_cmd(["sh"], experimental_privileged_nesting=True)
        shell.terminal().sync()
        client.directory().terminal(container=ctr, experimental_privileged_nesting=True).sync()
        ctr.terminal().sync()
        print("ALL SHELLS DONE", flush=True)
"""


def test_terminals_given_the_flag_reach_the_engine_as_the_session(
    daemon: RunningEngine, python_ref: str, busybox_ref: str, tmp_path: Path
) -> None:
    """Container.terminal, a default terminal command and Directory.terminal given
    experimentalPrivilegedNesting run a nested pipeline from their shell; without it the
    shell has no session."""
    program = _program(tmp_path, NESTING_PROGRAM.format(python=python_ref, script=NESTED_QUERY))
    child = _spawn(daemon, sys.executable, str(program))
    try:
        for title, run in [
            ("Container.terminal: sh", "c"),
            ("Container.terminal: sh", "d"),
            ("Directory.terminal: sh", "s"),
        ]:
            child.expect_exact(title)
            child.sendline(f"python /nested.py {busybox_ref} {run}-$((6 * 7))")
            child.expect_exact(f"ANSWER nested-{run}-42")
            child.sendline("exit")
        child.expect_exact("Container.terminal: sh")
        child.sendline('echo "session=${DAGGER_SESSION_TOKEN:-none}-$((6 * 7))"')
        child.expect_exact("session=none-42")
        child.sendline("exit")
        child.expect_exact("ALL SHELLS DONE")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


SERVICE_TERMINAL_PROGRAM = """
    import dirk

    with dirk.Connection() as client:
        web = (
            client.container()
            .from_({ref!r})
            .with_env_variable("WHO", "svc-{token}")
            .with_exposed_port(8080)
            .as_service(args=["sh", "-c", {script!r}])
        )
        web.start()
        web.terminal().sync()
        page = (
            client.container()
            .from_({ref!r})
            .with_service_binding("web", web)
            .with_exec(["wget", "-qO-", "http://web:8080/extra.html"])
            .stdout()
        )
        print(f"SERVED {{page.strip()}}", flush=True)
"""


def test_service_terminal_opens_a_shell_in_the_running_service(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    """The shell runs beside the service's command, in its container (its files, its
    processes, its environment); what it writes there the service serves afterwards."""
    token = os.urandom(4).hex()
    script = (
        f"mkdir -p /www && echo page-{token} > /www/index.html && exec httpd -f -p 8080 -h /www"
    )
    program = _program(
        tmp_path, SERVICE_TERMINAL_PROGRAM.format(ref=busybox_ref, token=token, script=script)
    )
    child = _spawn(daemon, sys.executable, str(program))
    try:
        child.expect_exact("Service.terminal: sh")
        child.sendline("cat /www/index.html; echo in-$WHO")
        child.expect_exact(f"page-{token}")
        child.expect_exact(f"in-svc-{token}")
        child.sendline("ps | grep '[h]ttpd -f' >/dev/null && echo 'serv''ing'")
        child.expect_exact("serving")
        child.sendline(f"echo extra-$((6 * 7))-{token} > /www/extra.html; exit 3")
        child.expect_exact("the shell exited (exit code 3)")
        child.expect_exact(f"SERVED extra-42-{token}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    _wait_clean(daemon)


def test_a_program_killed_in_a_service_terminal_leaves_nothing(
    daemon: RunningEngine, busybox_ref: str, tmp_path: Path
) -> None:
    script = "mkdir -p /www && exec httpd -f -p 8080 -h /www"
    program = _program(
        tmp_path, SERVICE_TERMINAL_PROGRAM.format(ref=busybox_ref, token="kill", script=script)
    )
    child = _spawn(daemon, sys.executable, str(program))
    try:
        child.expect_exact("Service.terminal: sh")
        child.sendline("echo shell-$((40 + 2))")
        child.expect_exact("shell-42")
        assert _leftovers(daemon) != [], "the service runs while its shell is open"
        child.kill(9)  # the session ends: the shell and the service go with it
    finally:
        child.close(force=True)
    _wait_clean(daemon)
