"""Contents of the /etc files every container gets: resolv.conf, hosts and hostname."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
#: Where systemd-resolved keeps the upstream servers behind its 127.0.0.53 stub.
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
#: Docker's fallback when the host only knows loopback resolvers.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def container_resolv_conf(host_text: str, upstream_text: str = "") -> str:
    """The host's resolv.conf for a container in its own network namespace.

    A loopback nameserver (a local stub such as systemd-resolved's 127.0.0.53) is the
    container's own loopback inside its namespace, where nothing listens: such lines are
    replaced by the stub's upstream servers, else by Docker's public fallback.
    """
    lines: list[str] = []
    dropped: list[str] = []
    for line in host_text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and _is_loopback(fields[1]):
            dropped.append(fields[1])
            continue
        lines.append(line)
    if not dropped:
        return host_text if host_text.endswith("\n") or not host_text else host_text + "\n"
    if any(line.split()[:1] == ["nameserver"] for line in lines):
        note = f"# dirk: dropped loopback nameserver(s) {', '.join(dropped)}: unreachable here"
        return "\n".join([note, *lines]) + "\n"
    upstream = [
        line.split()[1]
        for line in upstream_text.splitlines()
        if line.split()[:1] == ["nameserver"]
        and len(line.split()) > 1
        and not _is_loopback(line.split()[1])
    ]
    if upstream:
        note = (
            f"# dirk: the host uses a loopback resolver ({', '.join(dropped)}), unreachable "
            f"from a container's network namespace; using its upstream servers from "
            f"{RESOLVED_UPSTREAM}"
        )
        servers = upstream
    else:
        note = (
            f"# dirk: the host uses a loopback resolver ({', '.join(dropped)}), unreachable "
            "from a container's network namespace, and no upstream is known; using public "
            "resolvers as Docker does"
        )
        servers = list(FALLBACK_NAMESERVERS)
    return "\n".join([note, *lines, *(f"nameserver {s}" for s in servers)]) + "\n"


def read_host_resolv_conf() -> str:
    """The resolv.conf every container gets on this host (computed once per engine)."""
    try:
        host_text = HOST_RESOLV_CONF.read_text()
    except OSError:
        host_text = ""
    try:
        upstream = RESOLVED_UPSTREAM.read_text()
    except OSError:
        upstream = ""
    return container_resolv_conf(host_text, upstream)


def hosts_file(hostname: str, address: str | None, extra: Sequence[tuple[str, str]] = ()) -> str:
    """/etc/hosts naming the container after `hostname` (at its bridge address if it has one),
    then one line per `extra` (name, address): the services it is bound to, each name once
    (the first wins, as the resolver's first match does)."""
    own = address or "127.0.1.1"
    seen = {hostname}
    lines = []
    for name, peer in extra:
        if name not in seen:
            seen.add(name)
            lines.append(f"{peer}\t{name}\n")
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        f"{own}\t{hostname}\n"
    ) + "".join(lines)
