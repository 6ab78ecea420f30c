"""Loopback servers for the git and HTTP source tests: git's smart HTTP protocol
(`git http-backend` run as a CGI program behind a WSGI server) and plain files, each in a
thread of the test process, optionally requiring an Authorization header."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(app: WsgiApp) -> Iterator[str]:
    """Serve `app` on a free loopback port; yields its base URL; stops it afterwards."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    start_response(
        "401 Unauthorized",
        [("WWW-Authenticate", 'Basic realm="test"'), ("Content-Type", "text/plain")],
    )
    return [b"authorization required\n"]


class Requests:
    """What a server was asked, for tests that prove nothing was fetched."""

    def __init__(self) -> None:
        self.paths: list[str] = []


def git_http_app(
    project_root: Path, authorization: str | None = None, requests: Requests | None = None
) -> WsgiApp:
    """Serves every repository below `project_root` over smart HTTP; with `authorization`,
    only to requests whose Authorization header equals it."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if requests is not None:
            requests.paths.append(environ.get("PATH_INFO", ""))
        if authorization is not None and environ.get("HTTP_AUTHORIZATION") != authorization:
            return _unauthorized(start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(project_root),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
        }
        if environ.get("HTTP_CONTENT_ENCODING"):
            env["HTTP_CONTENT_ENCODING"] = environ["HTTP_CONTENT_ENCODING"]
        result = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if not name:
                continue
            if name.lower() == "status":
                status = value.strip()
            else:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    return app


def files_app(
    files: dict[str, bytes], authorization: str | None = None, requests: Requests | None = None
) -> WsgiApp:
    """Serves `files` (path -> content; edit the dict to change what is served); paths
    absent from it are 404; `/redirect/<path>` redirects to `<path>`."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if requests is not None:
            requests.paths.append(path)
        if path.startswith("/redirect/"):
            start_response("302 Found", [("Location", path.removeprefix("/redirect"))])
            return [b""]
        if authorization is not None and environ.get("HTTP_AUTHORIZATION") != authorization:
            return _unauthorized(start_response)
        content = files.get(path)
        if content is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(content)))],
        )
        return [content]

    return app


class GitRepo:
    """A repository built with the git CLI, for a test to commit to and serve."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
        }
        result = subprocess.run(
            ["git", "-C", str(self.path), *args], env=env, capture_output=True, check=True
        )
        return result.stdout.decode().strip()

    def commit(
        self, files: dict[str, str], message: str, mode: dict[str, int] | None = None
    ) -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if mode and name in mode:
                target.chmod(mode[name])
        self.git("add", "-A")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")


class SshServer:
    """sshd on a loopback port that lets root in with one key (held by an ssh-agent), so
    git remotes can be read as `ssh://root@127.0.0.1:<port>/<path>`."""

    def __init__(self, port: int, agent_socket: Path, known_hosts: str) -> None:
        self.port = port
        self.agent_socket = agent_socket
        #: The `known_hosts` line of the server's host key.
        self.known_hosts = known_hosts

    def url(self, repo: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{repo}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


@contextmanager
def ssh_server(root: Path) -> Iterator[SshServer]:
    """Start sshd and an ssh-agent holding the client key; stop both afterwards."""
    import time

    root.mkdir(parents=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True
        )
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    agent_socket = root / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(agent_socket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, sshd, "sshd")
        deadline = time.monotonic() + 10
        while not agent_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(
            ["ssh-add", "-q", str(root / "client_key")],
            env={**os.environ, "SSH_AUTH_SOCK": str(agent_socket)},
            check=True,
            capture_output=True,
        )
        host_key = (root / "host_key.pub").read_text().split()
        known = f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}"
        yield SshServer(port, agent_socket, known)
    finally:
        for process in (sshd, agent):
            process.terminate()
            process.wait(timeout=10)


@contextmanager
def unix_echo_server(path: Path) -> Iterator[Path]:
    """A unix socket at `path` answering each connection's first message `m` with `echo:m`."""
    import socket

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)
    server.listen()
    stop = threading.Event()

    def serve_forever() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"echo:" + conn.recv(1024))

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        path.unlink(missing_ok=True)
