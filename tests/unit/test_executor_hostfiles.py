"""resolv.conf and hosts for containers in their own network namespace."""

from __future__ import annotations

from dirk.workers.executor.hostfiles import container_resolv_conf, hosts_file


def test_a_routable_resolver_is_copied_as_is() -> None:
    text = "search example.org\nnameserver 10.255.255.53\noptions ndots:2\n"
    assert container_resolv_conf(text) == text


def test_a_loopback_stub_is_replaced_by_its_upstream_with_a_note() -> None:
    text = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
    upstream = "# systemd\nnameserver 192.0.2.53\nnameserver ::1\n"
    out = container_resolv_conf(text, upstream)
    lines = out.splitlines()
    assert lines[0].startswith("# dirk: the host uses a loopback resolver (127.0.0.53)")
    assert "nameserver 127.0.0.53" not in out
    assert [line for line in lines if line.startswith("nameserver")] == ["nameserver 192.0.2.53"]
    assert "options edns0 trust-ad" in lines and "search lan" in lines


def test_no_upstream_falls_back_to_public_resolvers_like_docker() -> None:
    out = container_resolv_conf("nameserver 127.0.0.1\n", "")
    assert "nameserver 8.8.8.8" in out and "nameserver 127.0.0.1" not in out
    assert out.startswith("# dirk:")


def test_only_loopback_lines_are_dropped_when_others_remain() -> None:
    out = container_resolv_conf("nameserver ::1\nnameserver 10.0.0.2\n")
    assert out.splitlines()[1:] == ["nameserver 10.0.0.2"]


def test_hosts_names_the_container() -> None:
    assert hosts_file("builder", "10.89.0.7").endswith("10.89.0.7\tbuilder\n")
    assert "127.0.0.1\tlocalhost\n" in hosts_file("builder", None)
    assert hosts_file("builder", None).endswith("127.0.1.1\tbuilder\n")
