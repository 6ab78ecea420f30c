"""Dagger's port rules for tunnels and host services, without an engine."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from dirk.api.tunnels import port_forwards, tunnel_forwards
from dirk.errors import PortForwardError
from dirk.solver.ops import ForwardPort, ServicePort


@attrs.frozen
class _Upstream:
    """What the rules read of a container service: its exposed ports."""

    ports: tuple[ServicePort, ...]


WEB = _Upstream((ServicePort(80), ServicePort(53, "UDP")))


def _rules(upstream: _Upstream, ports: list[dict[str, Any]], native: bool) -> list[ForwardPort]:
    return list(tunnel_forwards(upstream, ports, native))  # type: ignore[arg-type]


def test_without_ports_each_exposed_port_gets_a_free_host_port() -> None:
    assert _rules(WEB, [], False) == [ForwardPort(0, 80), ForwardPort(0, 53, "UDP")]


def test_native_keeps_the_port_numbers_and_explicit_ports_add_to_them() -> None:
    assert _rules(WEB, [], True) == [ForwardPort(80, 80), ForwardPort(53, 53, "UDP")]
    assert _rules(WEB, [{"frontend": 8080, "backend": 80, "protocol": "TCP"}], True) == [
        ForwardPort(80, 80),
        ForwardPort(53, 53, "UDP"),
        ForwardPort(8080, 80),
    ]


def test_explicit_ports_replace_the_default_and_frontend_0_is_random() -> None:
    given = [{"frontend": None, "backend": 80, "protocol": None}, {"frontend": 0, "backend": 81}]
    assert _rules(WEB, given, False) == [ForwardPort(0, 80), ForwardPort(0, 81)]


def test_a_service_with_no_ports_has_nothing_to_tunnel() -> None:
    with pytest.raises(PortForwardError, match="withExposedPort"):
        _rules(_Upstream(()), [], False)


def test_host_service_frontends_default_to_the_backend() -> None:
    assert port_forwards("f", [{"backend": 5432}], random=False) == [ForwardPort(5432, 5432)]
    assert port_forwards(
        "f", [{"frontend": 15432, "backend": 5432, "protocol": "UDP"}], random=False
    ) == [ForwardPort(15432, 5432, "UDP")]
    with pytest.raises(PortForwardError, match=r"backend port 0 is not in 1\.\.65535"):
        port_forwards("f", [{"backend": 0}], random=False)
    with pytest.raises(PortForwardError, match="frontend port 70000"):
        port_forwards("f", [{"frontend": 70000, "backend": 1}], random=False)
